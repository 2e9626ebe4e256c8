//! Header names shared by services, gateways and the broadcaster (defined once).

/// Correlation id: a UUID accepted from the caller or generated, echoed on every response.
pub use ic_telemetry::X_CORRELATION_ID;
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
/// The caller's user name (`preferred_username`), set by the gateways.
pub const X_USER_NAME: &str = "x-user-name";
/// The shared secret a Dapr sidecar (or a gateway) presents to a backend.
pub const DAPR_API_TOKEN: &str = "dapr-api-token";

/// The same names (and the trace context's) as [`http::HeaderName`]s built at compile
/// time, for the per-request paths: a map lookup or insert by `&str` parses the name
/// every time.
pub mod name {
    use http::HeaderName;

    /// [`super::X_CORRELATION_ID`].
    pub const X_CORRELATION_ID: HeaderName = HeaderName::from_static(super::X_CORRELATION_ID);
    /// [`super::X_REQUEST_ID`].
    pub const X_REQUEST_ID: HeaderName = HeaderName::from_static(super::X_REQUEST_ID);
    /// [`super::X_TRACE_ID`].
    pub const X_TRACE_ID: HeaderName = HeaderName::from_static(super::X_TRACE_ID);
    /// [`super::X_USER_ID`].
    pub const X_USER_ID: HeaderName = HeaderName::from_static(super::X_USER_ID);
    /// [`super::X_USER_ROLES`].
    pub const X_USER_ROLES: HeaderName = HeaderName::from_static(super::X_USER_ROLES);
    /// [`super::X_USER_EMAIL`].
    pub const X_USER_EMAIL: HeaderName = HeaderName::from_static(super::X_USER_EMAIL);
    /// [`super::X_USER_NAME`].
    pub const X_USER_NAME: HeaderName = HeaderName::from_static(super::X_USER_NAME);
    /// [`super::DAPR_API_TOKEN`].
    pub const DAPR_API_TOKEN: HeaderName = HeaderName::from_static(super::DAPR_API_TOKEN);
    /// W3C `traceparent`.
    pub const TRACEPARENT: HeaderName = HeaderName::from_static(ic_telemetry::TRACEPARENT);
    /// W3C `tracestate`.
    pub const TRACESTATE: HeaderName = HeaderName::from_static(ic_telemetry::TRACESTATE);
}
