//! The operating routes on `BROADCASTER_PORT` (`shared/spec/broadcaster.md`, "Operating
//! it"): subscriptions and dead letters, behind `BROADCASTER_ADMIN_TOKEN` when set.

pub mod dead_letters;
pub mod subscriptions;

use axum::{
    extract::{Request, State},
    middleware::Next,
    response::{IntoResponse, Response},
};
use http::header;
use ic_http::{ApiError, ErrorCode, Secret};

/// Middleware: `Authorization: Bearer <BROADCASTER_ADMIN_TOKEN>` (constant-time), when a
/// token is configured.
pub async fn require_admin_token(
    State(token): State<Option<Secret>>,
    request: Request,
    next: Next,
) -> Response {
    let Some(expected) = token else {
        return next.run(request).await;
    };
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if presented.is_some_and(|p| expected.matches(p.as_bytes())) {
        next.run(request).await
    } else {
        let mut response = ApiError::new(
            ErrorCode::Unauthorized,
            "the operating routes need Authorization: Bearer <BROADCASTER_ADMIN_TOKEN>",
        )
        .into_response();
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            http::HeaderValue::from_static("Bearer"),
        );
        response
    }
}
