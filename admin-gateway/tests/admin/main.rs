//! admin-gateway served for real: authentication (the attack battery), authorization
//! (embedded policy and an OPA server), per-user limits, audit records on `IC_AUDIT`,
//! the OpenAPI document, with a recording upstream or a real services-api.

mod audit;
mod authentication;
mod authorization;
mod common;
mod document;
mod limits;
mod oidc;
