//! Queries. Reads take any executor; writes take the caller's transaction.

pub mod categories;
pub mod featured;
pub mod services;
