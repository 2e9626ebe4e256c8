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

/// The future of an [`IdentityProvider`] that has to wait (a key fetch, say).
pub type IdentityFuture<'a> = Pin<Box<dyn Future<Output = Result<Identity, ApiError>> + Send + 'a>>;

/// What an [`IdentityProvider`] says of a request.
pub enum Identification<'a> {
    /// Known at once, as the headers to forward (or the error to answer with).
    Now(Result<IdentityHeaders, ApiError>),
    /// Known once this completes.
    Later(IdentityFuture<'a>),
}

/// The identity headers a gateway forwards.
#[derive(Debug, Clone)]
pub struct IdentityHeaders {
    /// `X-User-ID`.
    pub user_id: HeaderValue,
    /// `X-User-Roles`, comma-separated.
    pub roles: HeaderValue,
    /// `X-User-Email`.
    pub email: Option<HeaderValue>,
}

impl IdentityHeaders {
    /// An identity's headers. A value that cannot be a header (a control character in a
    /// claim, say) is refused: a gateway never forwards an identity it cannot spell.
    pub fn of(identity: &Identity) -> Result<Self, ApiError> {
        let value = |text: &str| {
            HeaderValue::from_str(text).map_err(|_| {
                ApiError::new(
                    ErrorCode::Unauthorized,
                    "the identity cannot be forwarded as headers",
                )
            })
        };
        Ok(Self {
            user_id: value(&identity.user_id)?,
            roles: value(&identity.roles.join(","))?,
            email: identity.email.as_deref().map(value).transpose()?,
        })
    }

    fn write(self, headers: &mut HeaderMap) {
        headers.insert(name::X_USER_ID, self.user_id);
        headers.insert(name::X_USER_ROLES, self.roles);
        if let Some(email) = self.email {
            headers.insert(name::X_USER_EMAIL, email);
        }
    }
}

/// Identifies the caller of a request.
pub trait IdentityProvider: std::fmt::Debug + Send + Sync + 'static {
    /// The caller, or the error to answer with (401 for a bad token).
    fn identify<'a>(&'a self, headers: &'a HeaderMap) -> Identification<'a>;
}

/// The public gateway's default: everyone is `anonymous` with role `public`. A bearer
/// token is never ignored: without a verifier to check it, it is refused (401) rather
/// than silently downgraded to anonymous.
#[derive(Debug, Clone, Copy, Default)]
pub struct Anonymous;

impl IdentityProvider for Anonymous {
    fn identify<'a>(&'a self, headers: &'a HeaderMap) -> Identification<'a> {
        if headers.contains_key(header::AUTHORIZATION) {
            return Identification::Now(Err(ApiError::new(
                ErrorCode::Unauthorized,
                "this gateway cannot verify bearer tokens; send the request without one",
            )));
        }
        Identification::Now(Ok(IdentityHeaders {
            user_id: HeaderValue::from_static("anonymous"),
            roles: HeaderValue::from_static("public"),
            email: None,
        }))
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
/// `request` (any the client sent dropped, and the hop-by-hop ones), or the provider's
/// error.
pub async fn attach_identity(
    provider: &dyn IdentityProvider,
    request: &mut Request,
) -> Result<(), ApiError> {
    // Hop-by-hop first: a name the client lists in `Connection` must not remove the
    // identity headers set here when the proxy strips them.
    crate::proxy::strip_hop_by_hop(request.headers_mut());
    strip_identity_headers(request.headers_mut());
    let identified = match provider.identify(request.headers()) {
        Identification::Now(headers) => headers?,
        Identification::Later(identity) => IdentityHeaders::of(&identity.await?)?,
    };
    identified.write(request.headers_mut());
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

    /// A provider that has to wait, as a token verifier does.
    #[derive(Debug)]
    struct Later(Identity);

    impl IdentityProvider for Later {
        fn identify<'a>(&'a self, _: &'a HeaderMap) -> Identification<'a> {
            Identification::Later(Box::pin(async move {
                tokio::task::yield_now().await;
                Ok(self.0.clone())
            }))
        }
    }

    #[tokio::test]
    async fn an_identity_known_later_is_forwarded_whole_and_one_unspellable_is_refused() {
        let provider = Later(Identity {
            user_id: "u-1".to_owned(),
            roles: vec!["admin".to_owned(), "editor".to_owned()],
            email: Some("a@b.c".to_owned()),
        });
        let mut request = http::Request::get("/")
            .header(X_USER_EMAIL, "forged@x.y")
            .body(axum::body::Body::empty())
            .unwrap();
        attach_identity(&provider, &mut request).await.unwrap();
        let h = request.headers();
        assert_eq!(h[X_USER_ID], "u-1");
        assert_eq!(h[X_USER_ROLES], "admin,editor");
        assert_eq!(h[X_USER_EMAIL], "a@b.c", "the client's forged one replaced");
        // A client naming the identity headers in `Connection` cannot have the proxy strip
        // them afterwards.
        let mut request = http::Request::get("/")
            .header(header::CONNECTION, "x-user-id, x-user-roles")
            .body(axum::body::Body::empty())
            .unwrap();
        attach_identity(&provider, &mut request).await.unwrap();
        crate::proxy::strip_hop_by_hop(request.headers_mut());
        assert_eq!(request.headers()[X_USER_ID], "u-1");
        assert_eq!(request.headers()[X_USER_ROLES], "admin,editor");
        let broken = Later(Identity {
            user_id: "u-1\n".to_owned(),
            roles: Vec::new(),
            email: None,
        });
        let mut request = http::Request::get("/")
            .body(axum::body::Body::empty())
            .unwrap();
        let err = attach_identity(&broken, &mut request).await.unwrap_err();
        assert_eq!(err.into_response().status(), 401);
        assert!(request.headers().get(X_USER_ID).is_none());
    }
}
