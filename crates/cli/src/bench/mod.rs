//! `settle bench …`: measurements that compare ours with a baseline in the same
//! run, one JSON line per scenario on stdout.

pub mod all;
pub mod ledger;
pub mod plot;
