//! Token issuers for tests and the development stack (`cargo xtask token`): RSA (RS256)
//! and EC (ES256) signing keys, their JWKS, and JWTs signed by hand, so a test can build
//! any header and any claims — the malformed and hostile ones included — rather than only
//! what a JWT library agrees to write.

use std::time::{SystemTime, UNIX_EPOCH};

use aws_lc_rs::{
    encoding::AsDer,
    hmac,
    rand::SystemRandom,
    rsa::{KeyPair as RsaKeyPair, KeySize},
    signature::{self, EcdsaKeyPair, KeyPair as _},
};
use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use serde_json::{Value, json};

/// base64url without padding, as in JWS.
pub fn b64(bytes: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// `b64(header).b64(claims)`: the signing input of a JWS.
pub fn signing_input(header: &Value, claims: &Value) -> String {
    format!("{}.{}", b64(header.to_string()), b64(claims.to_string()))
}

/// Seconds since the epoch.
pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// Claims as Authentik issues them: `iss`, `sub`, `aud`, `exp` (`lifetime` seconds from
/// now), `iat`, `nbf`, `groups`, `email`, `preferred_username`.
pub fn claims(issuer: &str, audience: &str, user: &str, groups: &[&str], lifetime: i64) -> Value {
    let now = now();
    json!({
        "iss": issuer,
        "sub": user,
        "aud": audience,
        "exp": now + lifetime,
        "iat": now,
        "nbf": now,
        "groups": groups,
        "email": format!("{user}@example.org"),
        "preferred_username": user,
    })
}

/// An RS256 signing key.
pub struct RsaIssuer {
    key: RsaKeyPair,
    /// Its key id.
    pub kid: String,
}

impl std::fmt::Debug for RsaIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RsaIssuer").field("kid", &self.kid).finish()
    }
}

impl RsaIssuer {
    /// A new 2048-bit key.
    pub fn generate(kid: &str) -> Self {
        Self {
            key: RsaKeyPair::generate(KeySize::Rsa2048).expect("an RSA key"),
            kid: kid.to_owned(),
        }
    }

    /// A key from its PKCS#8 DER form.
    pub fn from_pkcs8(der: &[u8], kid: &str) -> Result<Self, String> {
        Ok(Self {
            key: RsaKeyPair::from_pkcs8(der).map_err(|e| e.to_string())?,
            kid: kid.to_owned(),
        })
    }

    /// The private key as PKCS#8 DER.
    pub fn pkcs8(&self) -> Vec<u8> {
        self.key
            .as_der()
            .expect("a PKCS#8 encoding")
            .as_ref()
            .to_vec()
    }

    /// The public key as a JWK (`kty` RSA, `use` sig, `alg` RS256).
    pub fn jwk(&self) -> Value {
        let public = self.key.public_key();
        json!({
            "kty": "RSA",
            "kid": self.kid,
            "use": "sig",
            "alg": "RS256",
            "n": b64(public.modulus().big_endian_without_leading_zero()),
            "e": b64(public.exponent().big_endian_without_leading_zero()),
        })
    }

    /// The public modulus's bytes (the HS256-confusion attack uses the key as a secret).
    pub fn public_der(&self) -> Vec<u8> {
        self.key.public_key().as_ref().to_vec()
    }

    /// Signs `header` and `claims` with RS256, whatever the header says.
    pub fn sign(&self, header: &Value, claims: &Value) -> String {
        let input = signing_input(header, claims);
        let mut signature = vec![0; self.key.public_modulus_len()];
        self.key
            .sign(
                &signature::RSA_PKCS1_SHA256,
                &SystemRandom::new(),
                input.as_bytes(),
                &mut signature,
            )
            .expect("an RS256 signature");
        format!("{input}.{}", b64(signature))
    }

    /// A well-formed RS256 token for `claims`.
    pub fn token(&self, claims: &Value) -> String {
        self.sign(
            &json!({"alg": "RS256", "typ": "JWT", "kid": self.kid}),
            claims,
        )
    }
}

/// An ES256 signing key.
pub struct EcIssuer {
    key: EcdsaKeyPair,
    /// Its key id.
    pub kid: String,
}

impl std::fmt::Debug for EcIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EcIssuer").field("kid", &self.kid).finish()
    }
}

impl EcIssuer {
    /// A new P-256 key.
    pub fn generate(kid: &str) -> Self {
        let alg = &signature::ECDSA_P256_SHA256_FIXED_SIGNING;
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(alg, &SystemRandom::new()).expect("an EC key");
        Self {
            key: EcdsaKeyPair::from_pkcs8(alg, pkcs8.as_ref()).expect("the EC key"),
            kid: kid.to_owned(),
        }
    }

    /// The public key as a JWK (`kty` EC, `crv` P-256, `alg` ES256).
    pub fn jwk(&self) -> Value {
        // Uncompressed point: 0x04 || x || y.
        let point = self.key.public_key().as_ref();
        json!({
            "kty": "EC",
            "kid": self.kid,
            "use": "sig",
            "alg": "ES256",
            "crv": "P-256",
            "x": b64(&point[1..33]),
            "y": b64(&point[33..65]),
        })
    }

    /// Signs `header` and `claims` with ES256, whatever the header says.
    pub fn sign(&self, header: &Value, claims: &Value) -> String {
        let input = signing_input(header, claims);
        let signature = self
            .key
            .sign(&SystemRandom::new(), input.as_bytes())
            .expect("an ES256 signature");
        format!("{input}.{}", b64(signature.as_ref()))
    }

    /// A well-formed ES256 token for `claims`.
    pub fn token(&self, claims: &Value) -> String {
        self.sign(
            &json!({"alg": "ES256", "typ": "JWT", "kid": self.kid}),
            claims,
        )
    }
}

/// An HS256 token signed with `secret`, whatever the header says.
pub fn hs256(secret: &[u8], header: &Value, claims: &Value) -> String {
    let input = signing_input(header, claims);
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
    format!("{input}.{}", b64(hmac::sign(&key, input.as_bytes())))
}

/// A JWKS document of `keys`.
pub fn jwks(keys: &[Value]) -> Value {
    json!({ "keys": keys })
}

/// The hostile and malformed tokens every verifier must refuse (`shared/spec/gateways.md`,
/// "Authentication"), by name. `known` is the issuer's real key (its `kid` is in the
/// JWKS), `skew` the verifier's clock skew in seconds, and `evil_url` a server that must
/// never be contacted (named by `jku` and `x5u`).
pub fn attack_battery(
    known: &RsaIssuer,
    issuer: &str,
    audience: &str,
    skew: i64,
    evil_url: &str,
) -> Vec<(&'static str, String)> {
    let good = claims(issuer, audience, "mallory", &["admin"], 300);
    let with = |key: &str, value: Value| {
        let mut c = good.clone();
        c[key] = value;
        c
    };
    let without = |key: &str| {
        let mut c = good.clone();
        c.as_object_mut().expect("claims").remove(key);
        c
    };
    let foreign = RsaIssuer::generate(&known.kid);
    let stranger = RsaIssuer::generate("stranger");
    let ec = EcIssuer::generate(&known.kid);
    let header = |alg: &str| json!({"alg": alg, "typ": "JWT", "kid": known.kid});
    let valid = known.token(&good);
    let (valid_head, _) = valid.rsplit_once('.').expect("a JWS");
    let other = known.token(&with("groups", json!(["public"])));
    let (_, other_signature) = other.rsplit_once('.').expect("a JWS");
    let mut oversize = good.clone();
    oversize["padding"] = json!("x".repeat(9 * 1024));
    let mut crit = header("RS256");
    crit["crit"] = json!(["exp"]);
    crit["exp"] = json!(now() + 60);
    let mut jku = json!({"alg": "RS256", "typ": "JWT", "kid": stranger.kid});
    jku["jku"] = json!(format!("{evil_url}/jwks.json"));
    let mut jku_known = header("RS256");
    jku_known["jku"] = json!(format!("{evil_url}/jwks.json"));
    let mut x5u = header("RS256");
    x5u["x5u"] = json!(format!("{evil_url}/cert.pem"));
    let mut embedded = json!({"alg": "RS256", "typ": "JWT", "kid": stranger.kid});
    embedded["jwk"] = stranger.jwk();
    vec![
        (
            "alg none",
            format!("{}.", signing_input(&header("none"), &good)),
        ),
        (
            "alg none with a signature",
            format!("{}.c2ln", signing_input(&header("none"), &good)),
        ),
        (
            "alg None, capitalised",
            format!("{}.", signing_input(&header("None"), &good)),
        ),
        (
            "HS256 with the RSA public key as the secret",
            hs256(&known.public_der(), &header("HS256"), &good),
        ),
        (
            "HS256 with the JWK as the secret",
            hs256(known.jwk().to_string().as_bytes(), &header("HS256"), &good),
        ),
        (
            "any HS256 token (Authentik without a signing key)",
            hs256(
                b"client-secret",
                &json!({"alg": "HS256", "typ": "JWT"}),
                &good,
            ),
        ),
        (
            "RS256 from a foreign key under the known kid",
            foreign.token(&good),
        ),
        ("an unknown kid", stranger.token(&good)),
        (
            "no kid",
            known.sign(&json!({"alg": "RS256", "typ": "JWT"}), &good),
        ),
        ("jku naming another key set", stranger.sign(&jku, &good)),
        ("jku next to the known kid", known.sign(&jku_known, &good)),
        ("x5u naming a certificate", known.sign(&x5u, &good)),
        ("an embedded jwk", stranger.sign(&embedded, &good)),
        (
            "expired past the clock skew",
            known.token(&with("exp", json!(now() - skew - 30))),
        ),
        (
            "nbf in the future past the clock skew",
            known.token(&with("nbf", json!(now() + skew + 60))),
        ),
        ("exp missing", known.token(&without("exp"))),
        ("iss missing", known.token(&without("iss"))),
        ("aud missing", known.token(&without("aud"))),
        ("sub missing", known.token(&without("sub"))),
        (
            "a wrong iss",
            known.token(&with("iss", json!("https://evil.example/application/o/x/"))),
        ),
        (
            "aud without ours",
            known.token(&with("aud", json!(["another-app", "a-third"]))),
        ),
        ("a crit header", known.sign(&crit, &good)),
        ("larger than 8 KiB", known.token(&oversize)),
        ("trailing segments", format!("{valid}.c2ln")),
        ("malformed base64", valid.replacen('.', ".*", 1)),
        (
            "an ES256 token claiming RS256",
            ec.sign(&header("RS256"), &good),
        ),
        ("the signature stripped", format!("{valid_head}.")),
        (
            "another token's signature",
            format!("{valid_head}.{other_signature}"),
        ),
        (
            "RS512 with an RS256 key",
            known.sign(&header("RS512"), &good),
        ),
        ("an empty sub", known.token(&with("sub", json!("")))),
        (
            "exp as a string",
            known.token(&with("exp", json!((now() + 300).to_string()))),
        ),
        (
            "a group that would forge a second role",
            known.token(&with("groups", json!(["public,admin"]))),
        ),
    ]
}

/// An issuer's key server as Authentik lays it out: the OpenID configuration at
/// `/application/o/<slug>/.well-known/openid-configuration` and the JWKS at
/// `/application/o/<slug>/jwks/`. A test changes its keys, takes it down and counts
/// the JWKS fetches.
#[derive(Clone)]
pub struct JwksServer {
    keys: std::sync::Arc<std::sync::Mutex<Vec<Value>>>,
    fetches: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    down: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// `http://127.0.0.1:<port>`.
    pub base: String,
}

impl std::fmt::Debug for JwksServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwksServer")
            .field("base", &self.base)
            .finish()
    }
}

impl JwksServer {
    /// Serves `keys` on a free loopback port (in the current tokio runtime).
    pub async fn start(keys: Vec<Value>) -> Self {
        Self::start_on(0, keys).await.expect("a loopback port")
    }

    /// Serves `keys` on loopback `port` (0: any free one).
    pub async fn start_on(port: u16, keys: Vec<Value>) -> std::io::Result<Self> {
        use axum::{Json, Router, http::StatusCode, response::IntoResponse, routing::get};
        use std::sync::atomic::Ordering;
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
        let base = format!("http://{}", listener.local_addr()?);
        let server = Self {
            keys: std::sync::Arc::new(std::sync::Mutex::new(keys)),
            fetches: std::sync::Arc::default(),
            down: std::sync::Arc::default(),
            base,
        };
        let served = server.clone();
        let configured = server.clone();
        let router = Router::new()
            .route(
                "/application/o/admin/jwks/",
                get(move || {
                    let server = served.clone();
                    async move {
                        server.fetches.fetch_add(1, Ordering::SeqCst);
                        // Slow enough for concurrent callers to pile up behind one fetch.
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        if server.down.load(Ordering::SeqCst) {
                            return StatusCode::SERVICE_UNAVAILABLE.into_response();
                        }
                        Json(jwks(&server.keys.lock().expect("keys"))).into_response()
                    }
                }),
            )
            .route(
                "/application/o/admin/.well-known/openid-configuration",
                get(move || {
                    let issuer = configured.issuer();
                    let jwks_uri = configured.jwks_url();
                    async move { Json(json!({"issuer": issuer, "jwks_uri": jwks_uri})) }
                }),
            );
        tokio::spawn(async move { axum::serve(listener, router).await });
        Ok(server)
    }

    /// The issuer, Authentik's shape: `<base>/application/o/admin/`.
    pub fn issuer(&self) -> String {
        format!("{}/application/o/admin/", self.base)
    }

    /// The JWKS URL.
    pub fn jwks_url(&self) -> String {
        format!("{}/application/o/admin/jwks/", self.base)
    }

    /// JWKS fetches so far.
    pub fn fetches(&self) -> usize {
        self.fetches.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Replaces the published keys.
    pub fn set_keys(&self, keys: Vec<Value>) {
        *self.keys.lock().expect("keys") = keys;
    }

    /// Takes the JWKS down (503) or brings it back.
    pub fn set_down(&self, down: bool) {
        self.down.store(down, std::sync::atomic::Ordering::SeqCst);
    }
}
