//! Queries. Reads take any executor; writes take the caller's transaction.

pub mod access_log;
pub mod backends;
pub mod content;
pub mod scans;
