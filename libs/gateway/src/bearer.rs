//! Bearer-token authentication (`shared/spec/gateways.md`, "Authentication"): the
//! verifier of Authentik's JWT access tokens, used by admin-gateway for every admin
//! request and by public-gateway when a token is sent.
//!
//! In order, cheapest first:
//! 1. `Authorization: Bearer <token>`, once; a token of at most 8 KiB, three base64url
//!    segments.
//! 2. A token already verified (the cache: the token itself as the key, looked up by a
//!    randomly seeded hash and compared whole; bounded, each entry expiring with its
//!    token and all of them dropped when the key set changes) is admitted without a
//!    signature check.
//! 3. Otherwise the client IP's pre-limit ([`VerifierConfig::verify_per_minute`]) is
//!    charged before any signature work, so a flood of garbage tokens burns no CPU.
//! 4. The header: `alg` must be the one bound to the key named by `kid` (a plain lookup:
//!    `jku`, `x5u`, `jwk` and `x5c` are refused, never fetched); any `crit` is refused.
//!    An unknown `kid` asks the key store for a refresh (single flight, rate-limited).
//! 5. Signature, then `exp` and `nbf` with the clock skew, `iss` equal to the issuer,
//!    `aud` containing the audience, `sub` present (the library's lax defaults off).
//!
//! Failures are 401 in the error envelope with an RFC 6750 `WWW-Authenticate`; the
//! pre-limit's refusal is 429.

use std::{
    borrow::Cow,
    collections::HashMap,
    net::IpAddr,
    sync::{Arc, Mutex, PoisonError},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderValue, header};
use ic_http::{ApiError, ErrorCode, Identity};
use jsonwebtoken::{Algorithm, Validation};
use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family},
    registry::Registry,
};
use serde::Deserialize;

use ic_config::{ConfigError, Env, Environment};
use tokio_util::sync::CancellationToken;

use crate::{
    client_ip::rate_key,
    jwks::{KeySet, KeySource, KeyStore},
    rate_limit::{Decision, Gcra},
};

/// The largest token accepted.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;

/// What a verifier checks tokens against.
#[derive(Debug, Clone)]
pub struct VerifierConfig {
    /// `iss` must equal this (`AUTHENTIK_ISSUER_URL`).
    pub issuer: String,
    /// `aud` must contain this (`AUTHENTIK_ADMIN_AUDIENCE`).
    pub audience: String,
    /// Allowed clock skew for `exp` and `nbf` (`JWT_CLOCK_SKEW_SECONDS`, default 60).
    pub clock_skew: Duration,
    /// Signature checks per client IP and minute (`AUTH_VERIFY_PER_MINUTE`, default 600),
    /// charged before the check; tokens already verified are not charged.
    pub verify_per_minute: u32,
    /// Verified tokens remembered (default 10,000).
    pub cache_entries: usize,
    /// The realm named in `WWW-Authenticate`.
    pub realm: &'static str,
}

impl VerifierConfig {
    /// The defaults of the spec for `issuer` and `audience`.
    pub fn new(issuer: impl Into<String>, audience: impl Into<String>) -> Self {
        Self {
            issuer: issuer.into(),
            audience: audience.into(),
            clock_skew: Duration::from_secs(60),
            verify_per_minute: 600,
            cache_entries: 10_000,
            realm: "international-center",
        }
    }
}

/// A verified caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// `sub`, `groups`, `email`, `preferred_username`.
    pub identity: Identity,
    /// `exp`.
    pub expires: u64,
}

/// Why a request is not authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthError {
    /// No bearer token (RFC 6750 §3.1: no error code then).
    Missing,
    /// A token that is not accepted, and why (for the caller and the log).
    Invalid(Cow<'static, str>),
    /// The client IP's pre-limit is spent.
    Limited(Decision),
}

impl AuthError {
    /// The status it is answered with.
    pub fn status(&self) -> http::StatusCode {
        match self {
            Self::Limited(_) => http::StatusCode::TOO_MANY_REQUESTS,
            _ => http::StatusCode::UNAUTHORIZED,
        }
    }

    /// The answer: 401 with `WWW-Authenticate`, or 429 with the limit's headers.
    pub fn into_response(self, realm: &str) -> Response {
        let (message, challenge) = match self {
            Self::Limited(decision) => {
                let mut response = Decision::refusal();
                decision.write_headers(response.headers_mut());
                return response;
            }
            Self::Missing => (
                Cow::Borrowed("a bearer token is required (Authorization: Bearer <token>)"),
                format!("Bearer realm=\"{realm}\""),
            ),
            Self::Invalid(why) => {
                let challenge = format!(
                    "Bearer realm=\"{realm}\", error=\"invalid_token\", error_description=\"{}\"",
                    why.replace(['"', '\\'], "'")
                );
                (
                    Cow::Owned(format!("invalid bearer token: {why}")),
                    challenge,
                )
            }
        };
        let mut response = ApiError::new(ErrorCode::Unauthorized, message).into_response();
        if let Ok(value) = HeaderValue::try_from(challenge) {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, value);
        }
        response
    }
}

fn invalid(why: &'static str) -> AuthError {
    AuthError::Invalid(Cow::Borrowed(why))
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: &'static str,
}

/// The key set generation the entries were verified with, and the verified tokens.
/// (Keyed by the token itself: a hash of it as the key would cost a SHA-256 per request,
/// measured at a fifth of admin-gateway's instructions, and a weaker hash could collide.)
type TokenCache = (
    u64,
    HashMap<Box<str>, Verified, foldhash::fast::RandomState>,
);

/// Verifies bearer tokens (see the module documentation).
#[derive(Debug)]
pub struct Verifier {
    config: VerifierConfig,
    keys: Arc<KeyStore>,
    pre_limit: Gcra,
    /// Verified tokens, for the key set generation they were verified with.
    cache: Mutex<TokenCache>,
    verifications: Family<ResultLabel, Counter>,
    cache_hits: Counter,
    pre_limited: Counter,
}

/// The claims read from a verified token.
#[derive(Deserialize)]
struct Claims {
    // Optional here so that a missing one is named by the validation, which requires
    // both.
    #[serde(default)]
    sub: Option<String>,
    #[serde(default)]
    exp: Option<u64>,
    #[serde(default)]
    groups: Vec<String>,
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    preferred_username: Option<String>,
}

/// Longest user id, e-mail or name forwarded; longest role.
const MAX_CLAIM_LEN: usize = 255;
const MAX_ROLE_LEN: usize = 64;
const MAX_ROLES: usize = 64;

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn printable(value: &str, max: usize) -> bool {
    !value.is_empty() && value.len() <= max && !value.chars().any(char::is_control)
}

impl Verifier {
    /// A verifier of tokens signed by `keys`.
    pub fn new(config: VerifierConfig, keys: Arc<KeyStore>) -> Self {
        Self {
            pre_limit: Gcra::new(config.verify_per_minute, Duration::from_secs(60)),
            config,
            keys,
            cache: Mutex::default(),
            verifications: Family::default(),
            cache_hits: Counter::default(),
            pre_limited: Counter::default(),
        }
    }

    /// The key store.
    pub fn keys(&self) -> &Arc<KeyStore> {
        &self.keys
    }

    /// The realm of its challenges.
    pub fn realm(&self) -> &'static str {
        self.config.realm
    }

    /// Registers `auth_token_verifications_total{result}` (signature checks made),
    /// `auth_token_cache_hits_total`, `auth_prelimit_refusals_total` and the key
    /// store's metrics.
    pub fn register(&self, registry: &mut Registry) {
        // Every result at zero from the start, so dashboards and alerts see the series.
        for result in ["valid", "invalid"] {
            let _ = self.verifications.get_or_create(&ResultLabel { result });
        }
        registry.register(
            "auth_token_verifications",
            "Bearer tokens whose signature was checked, by result (valid, invalid)",
            self.verifications.clone(),
        );
        registry.register(
            "auth_token_cache_hits",
            "Requests admitted by a token verified earlier (no signature check)",
            self.cache_hits.clone(),
        );
        registry.register(
            "auth_prelimit_refusals",
            "Tokens refused by the per-IP limit before any signature check",
            self.pre_limited.clone(),
        );
        self.keys.register(registry);
    }

    /// Authenticates a request from `client` by its `Authorization` header.
    pub async fn authenticate(
        &self,
        headers: &HeaderMap,
        client: IpAddr,
    ) -> Result<Verified, AuthError> {
        let token = bearer_token(headers)?;
        self.verify(token, client).await
    }

    /// Verifies one token sent by `client`.
    pub async fn verify(&self, token: &str, client: IpAddr) -> Result<Verified, AuthError> {
        let now = now_secs();
        let keys = self.keys.current();
        // A token equal to one verified before has its shape too.
        if let Some(verified) = self.cached(token, keys.generation, now) {
            self.cache_hits.inc();
            return Ok(verified);
        }
        check_shape(token)?;
        let decision = self.pre_limit.check(&rate_key(client), Instant::now());
        if !decision.allowed {
            self.pre_limited.inc();
            return Err(AuthError::Limited(decision));
        }
        let header = jsonwebtoken::decode_header(token)
            .map_err(|_| invalid("the token header is not a JWS header with a known alg"))?;
        if header.crit.is_some() {
            return Err(invalid("critical header parameters are not supported"));
        }
        if header.jku.is_some()
            || header.x5u.is_some()
            || header.jwk.is_some()
            || header.x5c.is_some()
        {
            return Err(invalid("keys are not taken from the token"));
        }
        let kid = header
            .kid
            .as_deref()
            .ok_or(invalid("the token names no key (kid)"))?;
        let keys = match keys.get(kid) {
            Some(_) => keys,
            None => {
                self.keys.refresh_for_unknown_kid(keys.generation).await;
                self.keys.current()
            }
        };
        let result = self.check_signature_and_claims(token, kid, header.alg, &keys);
        let label = if result.is_ok() { "valid" } else { "invalid" };
        self.verifications
            .get_or_create(&ResultLabel { result: label })
            .inc();
        let verified = result?;
        self.remember(token, keys.generation, verified.clone());
        Ok(verified)
    }

    fn check_signature_and_claims(
        &self,
        token: &str,
        kid: &str,
        alg: Algorithm,
        keys: &KeySet,
    ) -> Result<Verified, AuthError> {
        let key = keys
            .get(kid)
            .ok_or(invalid("the token names an unknown key"))?;
        if alg != key.algorithm {
            return Err(invalid("the token's algorithm is not the one of its key"));
        }
        let mut validation = Validation::new(key.algorithm);
        validation.leeway = self.config.clock_skew.as_secs();
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.set_issuer(&[&self.config.issuer]);
        validation.set_audience(&[&self.config.audience]);
        let data =
            jsonwebtoken::decode::<Claims>(token, &key.decoding, &validation).map_err(|err| {
                use jsonwebtoken::errors::ErrorKind as K;
                invalid(match err.kind() {
                    K::InvalidSignature => "the signature does not verify",
                    K::ExpiredSignature => "the token has expired",
                    K::ImmatureSignature => "the token is not valid yet (nbf)",
                    K::InvalidIssuer => "the token is from another issuer",
                    K::InvalidAudience => "the token is not for this audience",
                    K::MissingRequiredClaim(_) => {
                        "a required claim (exp, iss, aud, sub) is missing"
                    }
                    K::InvalidAlgorithm => "the token's algorithm is not allowed",
                    _ => "the token is malformed",
                })
            })?;
        let claims = data.claims;
        let (Some(sub), Some(expires)) = (claims.sub, claims.exp) else {
            return Err(invalid("a required claim (exp, iss, aud, sub) is missing"));
        };
        if !printable(&sub, MAX_CLAIM_LEN) {
            return Err(invalid("the subject (sub) is empty or unprintable"));
        }
        if claims.groups.len() > MAX_ROLES
            || claims
                .groups
                .iter()
                .any(|g| !printable(g, MAX_ROLE_LEN) || g.contains(','))
        {
            return Err(invalid("the groups claim cannot be forwarded"));
        }
        let optional = |value: Option<String>| value.filter(|v| printable(v, MAX_CLAIM_LEN));
        Ok(Verified {
            identity: Identity {
                user_id: sub,
                roles: claims.groups,
                email: optional(claims.email),
                name: optional(claims.preferred_username),
            },
            expires,
        })
    }

    fn cached(&self, token: &str, generation: u64, now: u64) -> Option<Verified> {
        let skew = self.config.clock_skew.as_secs();
        let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        let (cached_generation, entries) = &mut *cache;
        if *cached_generation != generation {
            // The keys changed: a token of a removed key must be checked again.
            entries.clear();
            *cached_generation = generation;
            return None;
        }
        // Once valid, a token stays valid until it expires (its `nbf` has passed).
        let verified = entries.get(token)?;
        if verified.expires.saturating_add(skew) < now {
            entries.remove(token);
            return None;
        }
        Some(verified.clone())
    }

    fn remember(&self, token: &str, generation: u64, verified: Verified) {
        let now = now_secs();
        let skew = self.config.clock_skew.as_secs();
        let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        let (cached_generation, entries) = &mut *cache;
        if *cached_generation != generation {
            entries.clear();
            *cached_generation = generation;
        }
        if entries.len() >= self.config.cache_entries {
            entries.retain(|_, e| e.expires.saturating_add(skew) >= now);
            if entries.len() >= self.config.cache_entries {
                // Still full of live tokens: they will be verified again when used.
                entries.clear();
            }
        }
        entries.insert(token.into(), verified);
    }
}

/// The authentication settings both gateways read (`shared/spec/gateways.md`):
/// `AUTHENTIK_ISSUER_URL`, `AUTHENTIK_ADMIN_AUDIENCE`, the key source
/// (`AUTH_JWKS_FILE`, else `AUTHENTIK_JWKS_URL`, else discovery from the issuer),
/// `JWT_CLOCK_SKEW_SECONDS`, `JWT_ALGORITHMS`, `JWKS_REFRESH_SECONDS`,
/// `AUTH_VERIFY_PER_MINUTE`.
#[derive(Debug, Clone)]
pub struct AuthSettings {
    /// Where the keys come from.
    pub source: KeySource,
    /// What tokens are checked against.
    pub verifier: VerifierConfig,
    /// The algorithms a key may be bound to (default RS256, ES256).
    pub algorithms: Vec<Algorithm>,
    /// How often the keys are refreshed (default 300 s).
    pub refresh_every: Duration,
}

impl AuthSettings {
    /// The settings, or `None` when `AUTHENTIK_ISSUER_URL` is not set. Outside
    /// development the issuer and the JWKS URL must be https.
    pub fn from_env(vars: &Env, environment: Environment) -> Result<Option<Self>, ConfigError> {
        let Some(issuer) = vars.raw("AUTHENTIK_ISSUER_URL") else {
            for dependent in [
                "AUTHENTIK_JWKS_URL",
                "AUTH_JWKS_FILE",
                "AUTHENTIK_ADMIN_AUDIENCE",
            ] {
                if vars.raw(dependent).is_some() {
                    return Err(ConfigError::Missing {
                        name: "AUTHENTIK_ISSUER_URL".into(),
                        expected: format!("the token issuer's URL (needed with {dependent})"),
                    });
                }
            }
            return Ok(None);
        };
        let http_allowed = environment == Environment::Development;
        let url = |name: &str, value: &str| -> Result<String, ConfigError> {
            match url::Url::parse(value) {
                Ok(u)
                    if (u.scheme() == "https" || (http_allowed && u.scheme() == "http"))
                        && u.host_str().is_some() =>
                {
                    Ok(value.to_owned())
                }
                _ => Err(ConfigError::invalid(
                    name,
                    if http_allowed {
                        "an http(s) URL"
                    } else {
                        "an https URL (http is accepted in development only)"
                    },
                )),
            }
        };
        let issuer = url("AUTHENTIK_ISSUER_URL", issuer)?;
        let audience = vars
            .raw("AUTHENTIK_ADMIN_AUDIENCE")
            .ok_or_else(|| ConfigError::Missing {
                name: "AUTHENTIK_ADMIN_AUDIENCE".into(),
                expected: "the audience (aud) of admin tokens, e.g. the Authentik client id".into(),
            })?
            .to_owned();
        let source = if let Some(file) = vars.raw("AUTH_JWKS_FILE") {
            KeySource::File(file.into())
        } else if let Some(jwks) = vars.raw("AUTHENTIK_JWKS_URL") {
            KeySource::Url(url("AUTHENTIK_JWKS_URL", jwks)?)
        } else {
            KeySource::Discovery {
                issuer: issuer.clone(),
            }
        };
        let skew: u64 = vars.parse_or("JWT_CLOCK_SKEW_SECONDS", "seconds (0-300)", 60)?;
        if skew > 300 {
            return Err(ConfigError::invalid(
                "JWT_CLOCK_SKEW_SECONDS",
                "seconds (0-300)",
            ));
        }
        let expected_algorithms =
            "a comma list of RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, EdDSA";
        let algorithms = vars
            .raw("JWT_ALGORITHMS")
            .unwrap_or("RS256,ES256")
            .split(',')
            .map(|a| match a.trim().parse::<Algorithm>() {
                Ok(Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512) | Err(_) => {
                    Err(ConfigError::invalid("JWT_ALGORITHMS", expected_algorithms))
                }
                Ok(alg) => Ok(alg),
            })
            .collect::<Result<Vec<_>, _>>()?;
        let verify_per_minute: u32 = vars.parse_or(
            "AUTH_VERIFY_PER_MINUTE",
            "a number of signature checks per client IP and minute (1-1000000)",
            600,
        )?;
        if !(1..=1_000_000).contains(&verify_per_minute) {
            return Err(ConfigError::invalid(
                "AUTH_VERIFY_PER_MINUTE",
                "a number of signature checks per client IP and minute (1-1000000)",
            ));
        }
        let refresh: u64 = vars.parse_or("JWKS_REFRESH_SECONDS", "seconds (30-86400)", 300)?;
        if !(30..=86_400).contains(&refresh) {
            return Err(ConfigError::invalid(
                "JWKS_REFRESH_SECONDS",
                "seconds (30-86400)",
            ));
        }
        let mut verifier = VerifierConfig::new(issuer, audience);
        verifier.clock_skew = Duration::from_secs(skew);
        verifier.verify_per_minute = verify_per_minute;
        Ok(Some(Self {
            source,
            verifier,
            algorithms,
            refresh_every: Duration::from_secs(refresh),
        }))
    }

    /// The verifier, its keys loaded once (a failure is logged: readiness reports it
    /// and unknown `kid`s retry) and refreshed periodically until `token` is cancelled.
    pub async fn start(self, token: CancellationToken) -> Arc<Verifier> {
        let keys = Arc::new(KeyStore::new(
            self.source,
            self.algorithms,
            Duration::from_secs(5),
        ));
        if let Err(err) = keys.refresh().await {
            tracing::error!(error = %err, "no signing keys yet; tokens are refused until a refresh succeeds");
        }
        keys.spawn_periodic_refresh(self.refresh_every, token);
        Arc::new(Verifier::new(self.verifier, keys))
    }
}

/// The token of `Authorization: Bearer <token>` (scheme case-insensitive, RFC 6750
/// §2.1). No header, or another scheme, is [`AuthError::Missing`].
pub fn bearer_token(headers: &HeaderMap) -> Result<&str, AuthError> {
    let mut values = headers.get_all(header::AUTHORIZATION).iter();
    let Some(value) = values.next() else {
        return Err(AuthError::Missing);
    };
    if values.next().is_some() {
        return Err(invalid("more than one Authorization header"));
    }
    let value = value
        .to_str()
        .map_err(|_| invalid("the Authorization header is not ASCII"))?;
    let (scheme, token) = value.split_once(' ').unwrap_or((value, ""));
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(AuthError::Missing);
    }
    let token = token.trim_matches(' ');
    if token.is_empty() {
        return Err(invalid("the bearer token is empty"));
    }
    Ok(token)
}

/// At most [`MAX_TOKEN_BYTES`], three non-empty base64url segments.
fn check_shape(token: &str) -> Result<(), AuthError> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(invalid("the token is larger than 8 KiB"));
    }
    let mut segments = 0;
    for segment in token.split('.') {
        segments += 1;
        let base64url = segment
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if segment.is_empty() || !base64url {
            return Err(invalid("the token is not three base64url segments"));
        }
    }
    if segments != 3 {
        return Err(invalid("the token is not three base64url segments"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bearer_token_is_read_as_rfc_6750_says() {
        let headers = |values: &[&str]| {
            let mut map = HeaderMap::new();
            for v in values {
                map.append(header::AUTHORIZATION, HeaderValue::from_str(v).unwrap());
            }
            map
        };
        assert_eq!(bearer_token(&headers(&["Bearer a.b.c"])), Ok("a.b.c"));
        assert_eq!(bearer_token(&headers(&["bearer  a.b.c"])), Ok("a.b.c"));
        assert_eq!(bearer_token(&headers(&[])), Err(AuthError::Missing));
        assert_eq!(
            bearer_token(&headers(&["Basic dXNlcjpwYXNz"])),
            Err(AuthError::Missing)
        );
        assert!(matches!(
            bearer_token(&headers(&["Bearer "])),
            Err(AuthError::Invalid(_))
        ));
        assert!(matches!(
            bearer_token(&headers(&["Bearer a.b.c", "Bearer d.e.f"])),
            Err(AuthError::Invalid(_))
        ));
    }

    #[test]
    fn only_three_base64url_segments_within_8_kib_are_tokens() {
        assert!(check_shape("aGVhZA.Ym9keQ.c2ln").is_ok());
        for bad in [
            "a.b", "a.b.c.d", "a..c", "a.b.", "a+b.c.d", "a.b=.c", "a.b.c d",
        ] {
            assert!(check_shape(bad).is_err(), "{bad}");
        }
        let big = format!("a.{}.c", "b".repeat(MAX_TOKEN_BYTES));
        assert!(check_shape(&big).is_err());
    }

    #[test]
    fn the_challenge_names_the_error_only_for_a_token_sent() {
        let missing = AuthError::Missing.into_response("r");
        assert_eq!(missing.status(), 401);
        assert_eq!(
            missing.headers()[header::WWW_AUTHENTICATE],
            "Bearer realm=\"r\""
        );
        let invalid = AuthError::Invalid("it \"expired\"".into()).into_response("r");
        assert_eq!(
            invalid.headers()[header::WWW_AUTHENTICATE],
            "Bearer realm=\"r\", error=\"invalid_token\", error_description=\"it 'expired'\""
        );
    }
}
