//! The identity extension point: a gateway plugs in how callers are identified; the
//! result is forwarded as `X-User-ID`, `X-User-Roles`, `X-User-Email`. Identity headers
//! sent by the client are always removed first, so they cannot be forged through a
//! gateway.

use std::{future::Future, pin::Pin};

use axum::{
    extract::Request,
    response::{IntoResponse, Response},
};
use http::{HeaderMap, HeaderValue, header};
use ic_http::{ApiError, ErrorCode, Identity, headers::name};

/// The future an [`IdentityProvider`] returns.
pub type IdentityFuture<'a> = Pin<Box<dyn Future<Output = Result<Identity, ApiError>> + Send + 'a>>;

/// Identifies the caller of a request.
pub trait IdentityProvider: std::fmt::Debug + Send + Sync + 'static {
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

/// Drops client-sent identity headers. Runs first in a gateway, before anything (the
/// request context, its log line) can read them.
pub fn strip_identity_headers(headers: &mut HeaderMap) {
    // One pass over the names first: clients seldom send any.
    if !headers.keys().any(|n| n.as_str().starts_with("x-user-")) {
        return;
    }
    for name in [name::X_USER_ID, name::X_USER_ROLES, name::X_USER_EMAIL] {
        headers.remove(name);
    }
}

/// The identity stage: identifies the caller (or answers the provider's error) and
/// forwards the identity headers to `next`.
pub async fn identify<F, Fut>(
    provider: &dyn IdentityProvider,
    mut request: Request,
    next: F,
) -> Response
where
    F: FnOnce(Request) -> Fut,
    Fut: Future<Output = Response>,
{
    match attach_identity(provider, &mut request).await {
        Ok(()) => next(request).await,
        Err(err) => err.into_response(),
    }
}

/// The [`identify`] stage without its `next`: the caller's identity headers set on
/// `request` (any the client sent dropped), or the provider's error.
pub async fn attach_identity(
    provider: &dyn IdentityProvider,
    request: &mut Request,
) -> Result<(), ApiError> {
    strip_identity_headers(request.headers_mut());
    let identity = provider.identify(request.headers()).await?;
    let headers = request.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&identity.user_id) {
        headers.insert(name::X_USER_ID, v);
    }
    if let Ok(v) = HeaderValue::from_str(&identity.roles.join(",")) {
        headers.insert(name::X_USER_ROLES, v);
    }
    if let Some(v) = identity
        .email
        .as_deref()
        .and_then(|e| HeaderValue::from_str(e).ok())
    {
        headers.insert(name::X_USER_EMAIL, v);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ic_http::headers::{X_USER_EMAIL, X_USER_ID, X_USER_ROLES};

    #[test]
    fn client_identity_headers_are_dropped() {
        let mut headers = HeaderMap::new();
        headers.insert(X_USER_ID, HeaderValue::from_static("admin"));
        headers.insert(X_USER_ROLES, HeaderValue::from_static("admin"));
        headers.insert(X_USER_EMAIL, HeaderValue::from_static("a@b.c"));
        headers.insert("accept", HeaderValue::from_static("*/*"));
        strip_identity_headers(&mut headers);
        assert_eq!(headers.len(), 1);
    }

    #[tokio::test]
    async fn anonymous_forwards_the_public_identity_and_refuses_bearer_tokens() {
        let seen = identify(
            &Anonymous,
            http::Request::get("/")
                .header(X_USER_ID, "admin")
                .body(axum::body::Body::empty())
                .unwrap(),
            |request| async move {
                let h = request.headers();
                format!("{:?} {:?}", h.get(X_USER_ID), h.get(X_USER_ROLES)).into_response()
            },
        )
        .await;
        let body = axum::body::to_bytes(seen.into_body(), 256).await.unwrap();
        assert_eq!(&body[..], br#"Some("anonymous") Some("public")"#);
        let refused = identify(
            &Anonymous,
            http::Request::get("/")
                .header(header::AUTHORIZATION, "Bearer x")
                .body(axum::body::Body::empty())
                .unwrap(),
            |_| async { unreachable!("a bearer token must not pass") },
        )
        .await;
        assert_eq!(refused.status(), 401);
    }
}
