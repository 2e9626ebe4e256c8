//! Header names shared by services, gateways and the broadcaster (defined once).

/// Correlation id: a UUID accepted from the caller or generated, echoed on every response.
pub const X_CORRELATION_ID: &str = "x-correlation-id";
/// Request id of one hop.
pub const X_REQUEST_ID: &str = "x-request-id";
/// The trace id, echoed for humans reading responses.
pub const X_TRACE_ID: &str = "x-trace-id";
/// The caller's user id, set by the gateways.
pub const X_USER_ID: &str = "x-user-id";
/// The caller's roles, comma separated, set by the gateways.
pub const X_USER_ROLES: &str = "x-user-roles";
/// The caller's e-mail, set by the gateways.
pub const X_USER_EMAIL: &str = "x-user-email";
/// The shared secret a Dapr sidecar (or a gateway) presents to a backend.
pub const DAPR_API_TOKEN: &str = "dapr-api-token";
