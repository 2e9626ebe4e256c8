//! The `APP_API_TOKEN` guard: with a token configured, a backend answers 401 to any
//! request whose `dapr-api-token` header does not match it (constant-time), so identity
//! headers cannot be forged by a caller that reaches the backend directly.

use axum::{
    extract::{Request, State},
    middleware::Next,
    response::{IntoResponse, Response},
};

use crate::{ApiError, ErrorCode, Secret, headers::DAPR_API_TOKEN};

/// Paths probes and scrapers reach without the token (they carry no identity).
pub const OPEN_PATHS: [&str; 4] = ["/health", "/healthz", "/health/ready", "/metrics"];

/// Middleware state: the expected token, or `None` to accept every caller.
#[derive(Debug, Clone, Default)]
pub struct AppToken(pub Option<Secret>);

/// Middleware (`from_fn_with_state(AppToken(..), require_app_token)`).
pub async fn require_app_token(
    State(token): State<AppToken>,
    request: Request,
    next: Next,
) -> Response {
    if let Some(expected) = &token.0 {
        let presented = request.headers().get(DAPR_API_TOKEN).map(|v| v.as_bytes());
        let open = OPEN_PATHS.contains(&request.uri().path());
        if !open && !presented.is_some_and(|p| expected.matches(p)) {
            return ApiError::new(ErrorCode::Unauthorized, "missing or invalid dapr-api-token")
                .into_response();
        }
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use axum::{Router, body::Body, middleware::from_fn_with_state, routing::get};
    use tower::ServiceExt;

    use super::*;

    async fn status(token: Option<&str>, path: &str, presented: Option<&str>) -> u16 {
        let app = Router::new()
            .route("/x", get(|| async { "ok" }))
            .route("/health", get(|| async { "ok" }))
            .layer(from_fn_with_state(
                AppToken(token.map(Secret::new)),
                require_app_token,
            ));
        let mut req = http::Request::get(path);
        if let Some(p) = presented {
            req = req.header(DAPR_API_TOKEN, p);
        }
        app.oneshot(req.body(Body::empty()).unwrap())
            .await
            .unwrap()
            .status()
            .as_u16()
    }

    #[tokio::test]
    async fn with_a_token_only_matching_requests_pass_and_health_stays_open() {
        assert_eq!(status(Some("s3cret"), "/x", None).await, 401);
        assert_eq!(status(Some("s3cret"), "/x", Some("wrong")).await, 401);
        assert_eq!(status(Some("s3cret"), "/x", Some("s3cret")).await, 200);
        assert_eq!(status(Some("s3cret"), "/health", None).await, 200);
        assert_eq!(status(None, "/x", None).await, 200);
    }
}
