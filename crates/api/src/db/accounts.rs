//! Account classes and owners (`api_accounts`): every account created through the
//! API is a `customer` account (with its customer) or a `house` account (no
//! customer), fixed by the first create and never changed by a later one. An
//! account the API never created (fees', payroll's) has no row and counts as house.

use store::{Store, on_pool};

/// What an account is to the API.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AccountClass {
    /// A customer's own account.
    Customer(String),
    /// settle's own money: settlement, corporate, lender, suspense, operating…
    House,
}

impl AccountClass {
    pub fn name(&self) -> &'static str {
        match self {
            AccountClass::Customer(_) => "customer",
            AccountClass::House => "house",
        }
    }

    pub fn customer(&self) -> Option<&str> {
        match self {
            AccountClass::Customer(customer) => Some(customer),
            AccountClass::House => None,
        }
    }

    fn from_row(class: &str, customer_id: Option<String>) -> Result<AccountClass, sqlx::Error> {
        match (class, customer_id) {
            ("customer", Some(customer)) => Ok(AccountClass::Customer(customer)),
            ("house", None) => Ok(AccountClass::House),
            (class, _) => Err(sqlx::Error::Decode(
                format!("api_accounts holds class {class:?} with a mismatched owner").into(),
            )),
        }
    }
}

/// The class the API recorded for an account, if it recorded one.
pub async fn account_class(
    store: &Store,
    account_id: &str,
) -> Result<Option<AccountClass>, sqlx::Error> {
    let row: Option<(String, Option<String>)> = on_pool!(
        store,
        sqlx::query_as::<_, (String, Option<String>)>(
            "SELECT class, customer_id FROM api_accounts WHERE account_id = $1"
        )
        .bind(account_id),
        fetch_optional
    )?;
    row.map(|(class, customer)| AccountClass::from_row(&class, customer))
        .transpose()
}

/// The customer an account belongs to, if any.
pub async fn owner_of(store: &Store, account_id: &str) -> Result<Option<String>, sqlx::Error> {
    Ok(account_class(store, account_id)
        .await?
        .and_then(|class| class.customer().map(str::to_owned)))
}

/// Records `class` for `account_id` unless the id already has one; returns the
/// class the id holds afterwards (the first claim wins, across processes).
pub async fn claim_account(
    store: &Store,
    account_id: &str,
    class: &AccountClass,
    now_ms: i64,
) -> Result<AccountClass, sqlx::Error> {
    on_pool!(
        store,
        sqlx::query(
            "INSERT INTO api_accounts (account_id, class, customer_id, created_at_ms)
             VALUES ($1, $2, $3, $4) ON CONFLICT (account_id) DO NOTHING"
        )
        .bind(account_id)
        .bind(class.name())
        .bind(class.customer())
        .bind(now_ms),
        execute
    )?;
    Ok(account_class(store, account_id)
        .await?
        .unwrap_or_else(|| class.clone()))
}

/// Moves a customer account from `from` to `to`; false if it is not `from`'s
/// (any more).
pub async fn change_owner(
    store: &Store,
    account_id: &str,
    from: &str,
    to: &str,
) -> Result<bool, sqlx::Error> {
    let done = on_pool!(
        store,
        sqlx::query(
            "UPDATE api_accounts SET customer_id = $1
             WHERE account_id = $2 AND class = 'customer' AND customer_id = $3"
        )
        .bind(to)
        .bind(account_id)
        .bind(from),
        execute
    )?;
    Ok(done == 1)
}

pub async fn accounts_of(
    store: &Store,
    customer_id: &str,
    limit: i64,
) -> Result<Vec<String>, sqlx::Error> {
    let rows: Vec<(String,)> = on_pool!(
        store,
        sqlx::query_as::<_, (String,)>(
            "SELECT account_id FROM api_accounts WHERE customer_id = $1
             ORDER BY account_id LIMIT $2"
        )
        .bind(customer_id)
        .bind(limit),
        fetch_all
    )?;
    Ok(rows.into_iter().map(|(id,)| id).collect())
}
