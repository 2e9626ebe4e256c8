//! HTTP plumbing every service shares.
//!
//! - [`ApiError`]: the error envelope of `shared/spec/README.md` ("Errors").
//! - [`context`]: correlation id, request id, trace context and caller identity per
//!   request, the request span and log line, and the response echo headers.
//! - [`extract`]: `Json`, `Path` and `Query` extractors whose rejections are envelopes
//!   naming the offending field.
//! - [`app_token`]: the `APP_API_TOKEN` / `dapr-api-token` guard.
//! - [`etag`]: strong ETags, `Cache-Control` and `If-None-Match` → 304 for public GETs.
//! - [`paging`]: page/limit validation and the pagination object.
//! - [`serve`]: graceful serving on SIGTERM / Ctrl-C.
//! - [`validate`]: free-text checks (length, control characters).

pub mod app_token;
pub mod context;
mod error;
pub mod etag;
pub mod extract;
pub mod headers;
pub mod paging;
mod secret;
pub mod serve;
pub mod validate;

pub use context::{Identity, RequestContext};
pub use error::{
    ApiError, ErrorCode, fallback_method_not_allowed, fallback_not_found, guard_panics, panic_guard,
};
pub use secret::Secret;
