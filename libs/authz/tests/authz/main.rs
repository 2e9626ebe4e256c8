//! ic-authz against the repository's policies: one test binary.

mod opa;
mod policies;
