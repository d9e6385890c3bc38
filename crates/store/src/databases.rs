//! One pool per database per process: components that are configured with the
//! same URL (the core, payroll, the API and the channel default to one database
//! on PostgreSQL) share a pool and one lease connection, so a process's
//! connection budget is `connections_max + 1` per database, however many
//! components use it.

use std::collections::HashMap;

use crate::{Leases, Store, StoreError, StoreOptions};

/// The databases a process has open, by URL.
pub struct Databases {
    options: StoreOptions,
    open: HashMap<String, (Store, Leases)>,
}

impl Databases {
    pub fn new(options: StoreOptions) -> Databases {
        Databases {
            options,
            open: HashMap::new(),
        }
    }

    /// The store and leases of `url`, opened (and its connections reserved) on
    /// first use.
    pub async fn open(&mut self, url: &str) -> Result<(Store, Leases), StoreError> {
        if let Some((store, leases)) = self.open.get(url) {
            return Ok((store.clone(), leases.clone()));
        }
        let store = Store::connect_with(url, &self.options).await?;
        store.reserve_connections().await?;
        let leases = Leases::new(&store);
        self.open
            .insert(url.to_owned(), (store.clone(), leases.clone()));
        Ok((store, leases))
    }

    /// Closes every pool (after the roles stopped).
    pub async fn close(&self) {
        for (store, _) in self.open.values() {
            store.close().await;
        }
    }
}
