//! The identity extension point: a gateway plugs in how callers are identified; the
//! result is forwarded as `X-User-ID`, `X-User-Roles`, `X-User-Email`. Identity headers
//! sent by the client are always removed first, so they cannot be forged through a
//! gateway.

use std::{future::Future, pin::Pin, sync::Arc};

use axum::{
    extract::{Request, State},
    middleware::Next,
    response::{IntoResponse, Response},
};
use http::{HeaderMap, HeaderValue, header};
use ic_http::{
    ApiError, ErrorCode, Identity,
    headers::{X_USER_EMAIL, X_USER_ID, X_USER_ROLES},
};

/// The future an [`IdentityProvider`] returns.
pub type IdentityFuture<'a> = Pin<Box<dyn Future<Output = Result<Identity, ApiError>> + Send + 'a>>;

/// Identifies the caller of a request.
pub trait IdentityProvider: Send + Sync + 'static {
    /// The caller, or the error to answer with (401 for a bad token).
    fn identify<'a>(&'a self, headers: &'a HeaderMap) -> IdentityFuture<'a>;
}

/// The public gateway's default: everyone is `anonymous` with role `public`. A bearer
/// token is never ignored: without a verifier to check it, it is refused (401) rather
/// than silently downgraded to anonymous.
#[derive(Debug, Clone, Copy, Default)]
pub struct Anonymous;

impl IdentityProvider for Anonymous {
    fn identify<'a>(&'a self, headers: &'a HeaderMap) -> IdentityFuture<'a> {
        Box::pin(async move {
            if headers.contains_key(header::AUTHORIZATION) {
                return Err(ApiError::new(
                    ErrorCode::Unauthorized,
                    "this gateway cannot verify bearer tokens; send the request without one",
                ));
            }
            Ok(Identity {
                user_id: "anonymous".to_owned(),
                roles: vec!["public".to_owned()],
                email: None,
            })
        })
    }
}

/// Middleware state.
#[derive(Clone)]
pub struct Identify(pub Arc<dyn IdentityProvider>);

impl std::fmt::Debug for Identify {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Identify(..)")
    }
}

/// Middleware, outermost in a gateway: drops client-sent identity headers before anything
/// (the request context, its log line) can read them.
pub async fn strip_identity_headers(mut request: Request, next: Next) -> Response {
    for name in [X_USER_ID, X_USER_ROLES, X_USER_EMAIL] {
        request.headers_mut().remove(name);
    }
    next.run(request).await
}

/// Middleware: strips client-sent identity headers, identifies, forwards the identity.
pub async fn identify(
    State(provider): State<Identify>,
    mut request: Request,
    next: Next,
) -> Response {
    for name in [X_USER_ID, X_USER_ROLES, X_USER_EMAIL] {
        request.headers_mut().remove(name);
    }
    let identity = match provider.0.identify(request.headers()).await {
        Ok(identity) => identity,
        Err(err) => return err.into_response(),
    };
    let headers = request.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&identity.user_id) {
        headers.insert(X_USER_ID, v);
    }
    if let Ok(v) = HeaderValue::from_str(&identity.roles.join(",")) {
        headers.insert(X_USER_ROLES, v);
    }
    if let Some(v) = identity
        .email
        .as_deref()
        .and_then(|e| HeaderValue::from_str(e).ok())
    {
        headers.insert(X_USER_EMAIL, v);
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use axum::{Router, body::Body, middleware::from_fn, routing::get};
    use tower::ServiceExt;

    use super::*;

    #[tokio::test]
    async fn client_identity_headers_never_reach_what_runs_inside() {
        let app = Router::new()
            .route(
                "/",
                get(|headers: HeaderMap| async move {
                    format!(
                        "{}",
                        headers.contains_key(X_USER_ID)
                            || headers.contains_key(X_USER_ROLES)
                            || headers.contains_key(X_USER_EMAIL)
                    )
                }),
            )
            .layer(from_fn(strip_identity_headers));
        let response = app
            .oneshot(
                http::Request::get("/")
                    .header(X_USER_ID, "admin")
                    .header(X_USER_ROLES, "admin")
                    .header(X_USER_EMAIL, "a@b.c")
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        let body = axum::body::to_bytes(response.into_body(), 64)
            .await
            .unwrap();
        assert_eq!(&body[..], b"false");
    }
}
