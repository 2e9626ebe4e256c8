//! The identity extension point: a gateway plugs in how callers are identified; the
//! result is forwarded as `X-User-ID`, `X-User-Roles`, `X-User-Email`, `X-User-Name`.
//! Identity headers sent by the client are always removed first, so they cannot be
//! forged through a gateway. [`Anonymous`] is everyone as `anonymous`; [`SignedIn`] is
//! the bearer token's user when a token is sent, anonymous otherwise.

use std::{future::Future, net::IpAddr, pin::Pin, sync::Arc};

use axum::{
    extract::Request,
    response::{IntoResponse, Response},
};
use http::{HeaderMap, HeaderValue, header};
use ic_http::{ApiError, ErrorCode, Identity, headers::name};

use crate::bearer::{AuthError, Verifier};

/// The future of an [`IdentityProvider`] that has to wait (a key fetch, say).
pub type IdentityFuture<'a> = Pin<Box<dyn Future<Output = Result<Identity, Response>> + Send + 'a>>;

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
    /// `X-User-Name`.
    pub name: Option<HeaderValue>,
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
            name: identity.name.as_deref().map(value).transpose()?,
        })
    }

    /// Sets them on a request's headers, replacing any there.
    pub fn write(self, headers: &mut HeaderMap) {
        headers.insert(name::X_USER_ID, self.user_id);
        headers.insert(name::X_USER_ROLES, self.roles);
        // Never a client's: an identity without one forwards none.
        for (header, value) in [
            (name::X_USER_EMAIL, self.email),
            (name::X_USER_NAME, self.name),
        ] {
            match value {
                Some(value) => headers.insert(header, value),
                None => headers.remove(header),
            };
        }
    }

    /// The anonymous caller: `anonymous`, role `public`.
    pub fn anonymous() -> Self {
        Self {
            user_id: HeaderValue::from_static("anonymous"),
            roles: HeaderValue::from_static("public"),
            email: None,
            name: None,
        }
    }
}

/// Identifies the caller of a request.
pub trait IdentityProvider: std::fmt::Debug + Send + Sync + 'static {
    /// The caller of a request from `client`, or the error to answer with (401 for a
    /// bad token).
    fn identify<'a>(&'a self, headers: &'a HeaderMap, client: IpAddr) -> Identification<'a>;
}

/// The public gateway's default: everyone is `anonymous` with role `public`. A bearer
/// token is never ignored: without a verifier to check it, it is refused (401) rather
/// than silently downgraded to anonymous.
#[derive(Debug, Clone, Copy, Default)]
pub struct Anonymous;

impl IdentityProvider for Anonymous {
    fn identify<'a>(&'a self, headers: &'a HeaderMap, _: IpAddr) -> Identification<'a> {
        if headers.contains_key(header::AUTHORIZATION) {
            return Identification::Now(Err(ApiError::new(
                ErrorCode::Unauthorized,
                "this gateway cannot verify bearer tokens; send the request without one",
            )));
        }
        Identification::Now(Ok(IdentityHeaders::anonymous()))
    }
}

/// Anonymous without an `Authorization` header; with one, the user of a valid bearer
/// token, and 401 for anything else (never silently anonymous).
#[derive(Debug, Clone)]
pub struct SignedIn(pub Arc<Verifier>);

impl IdentityProvider for SignedIn {
    fn identify<'a>(&'a self, headers: &'a HeaderMap, client: IpAddr) -> Identification<'a> {
        if !headers.contains_key(header::AUTHORIZATION) {
            return Identification::Now(Ok(IdentityHeaders::anonymous()));
        }
        Identification::Later(Box::pin(async move {
            let refused = match self.0.authenticate(headers, client).await {
                Ok(verified) => return Ok(verified.identity),
                Err(AuthError::Missing) => {
                    AuthError::Invalid("only bearer tokens are accepted in Authorization".into())
                }
                Err(err) => err,
            };
            Err(refused.into_response(self.0.realm()))
        }))
    }
}

/// The identity stage: the caller's identity headers set on `request` (replacing any the
/// client sent; the gateway's hygiene stage, [`crate::hygiene::sanitize`], has removed
/// them and the hop-by-hop ones already), or the provider's answer instead (401).
pub async fn attach_identity(
    provider: &dyn IdentityProvider,
    request: &mut Request,
    client: IpAddr,
) -> Result<(), Response> {
    let identified = match provider.identify(request.headers(), client) {
        Identification::Now(headers) => headers.map_err(IntoResponse::into_response)?,
        Identification::Later(identity) => {
            IdentityHeaders::of(&identity.await?).map_err(IntoResponse::into_response)?
        }
    };
    identified.write(request.headers_mut());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOCAL: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);
    use ic_http::headers::{X_USER_EMAIL, X_USER_ID, X_USER_ROLES};

    #[tokio::test]
    async fn anonymous_forwards_the_public_identity_and_refuses_bearer_tokens() {
        let mut request = http::Request::get("/")
            .header(X_USER_ID, "admin")
            .header(X_USER_EMAIL, "forged@x.y")
            .body(axum::body::Body::empty())
            .unwrap();
        attach_identity(&Anonymous, &mut request, LOCAL)
            .await
            .unwrap();
        let h = request.headers();
        assert_eq!(h[X_USER_ID], "anonymous");
        assert_eq!(h[X_USER_ROLES], "public");
        assert!(
            h.get(X_USER_EMAIL).is_none(),
            "no e-mail but the identity's"
        );
        let mut request = http::Request::get("/")
            .header(header::AUTHORIZATION, "Bearer x")
            .body(axum::body::Body::empty())
            .unwrap();
        let refused = attach_identity(&Anonymous, &mut request, LOCAL)
            .await
            .unwrap_err();
        assert_eq!(refused.status(), 401);
    }

    /// A provider that has to wait, as a token verifier does.
    #[derive(Debug)]
    struct Later(Identity);

    impl IdentityProvider for Later {
        fn identify<'a>(&'a self, _: &'a HeaderMap, _: IpAddr) -> Identification<'a> {
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
            name: Some("ada".to_owned()),
        });
        let mut request = http::Request::get("/")
            .header(X_USER_EMAIL, "forged@x.y")
            .body(axum::body::Body::empty())
            .unwrap();
        attach_identity(&provider, &mut request, LOCAL)
            .await
            .unwrap();
        let h = request.headers();
        assert_eq!(h[X_USER_ID], "u-1");
        assert_eq!(h[X_USER_ROLES], "admin,editor");
        assert_eq!(h[X_USER_EMAIL], "a@b.c", "the client's forged one replaced");
        // A client naming the identity headers in `Connection` cannot have them removed
        // after they are set: hygiene runs first, once.
        let mut request = http::Request::get("/")
            .header(header::CONNECTION, "x-user-id, x-user-roles")
            .body(axum::body::Body::empty())
            .unwrap();
        crate::hygiene::sanitize(request.headers_mut());
        attach_identity(&provider, &mut request, LOCAL)
            .await
            .unwrap();
        assert_eq!(request.headers()[X_USER_ID], "u-1");
        assert_eq!(request.headers()[X_USER_ROLES], "admin,editor");
        assert!(request.headers().get(header::CONNECTION).is_none());
        let broken = Later(Identity {
            user_id: "u-1\n".to_owned(),
            roles: Vec::new(),
            email: None,
            name: None,
        });
        let mut request = http::Request::get("/")
            .body(axum::body::Body::empty())
            .unwrap();
        let err = attach_identity(&broken, &mut request, LOCAL)
            .await
            .unwrap_err();
        assert_eq!(err.status(), 401);
        assert!(request.headers().get(X_USER_ID).is_none());
    }
}
