//! The token issuer's signing keys (`shared/spec/gateways.md`, "Authentication"): a JWKS
//! read from `AUTHENTIK_JWKS_URL`, from the `jwks_uri` discovered at
//! `AUTHENTIK_ISSUER_URL` + `.well-known/openid-configuration`, or from a file
//! (`AUTH_JWKS_FILE`). The keys are cached; a refresh replaces them only with a set that
//! has usable keys, so a failing refresh keeps the last good ones. A token naming an
//! unknown `kid` asks for a refresh: one fetch at a time (single flight) and at most one
//! per [`KeyStore::MIN_REFRESH_INTERVAL`].
//!
//! Each key is bound to one algorithm when it is loaded — its JWK `alg`, else the one its
//! type implies (RSA → RS256, EC P-256 → ES256) — and only if that algorithm is allowed.
//! HMAC keys, RSA keys under 2048 bits, encryption keys and keys without a `kid` are
//! never loaded.

use std::{
    collections::HashMap,
    path::PathBuf,
    sync::{Arc, Mutex, PoisonError, RwLock},
    time::{Duration, Instant},
};

use ic_health::{Check, Criticality};
use jsonwebtoken::{
    Algorithm, DecodingKey,
    jwk::{AlgorithmParameters, EllipticCurve, Jwk, PublicKeyUse},
};
use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge},
    registry::Registry,
};
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

/// Where the keys come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// A JWKS document at this URL (`AUTHENTIK_JWKS_URL`).
    Url(String),
    /// The `jwks_uri` of the issuer's OpenID configuration (`AUTHENTIK_ISSUER_URL`).
    Discovery {
        /// The issuer, e.g. `https://auth.example.org/application/o/admin/`.
        issuer: String,
    },
    /// A JWKS file, read again at each refresh (`AUTH_JWKS_FILE`).
    File(PathBuf),
}

impl KeySource {
    /// Where the OpenID configuration of `issuer` is (OpenID Connect Discovery §4).
    pub fn discovery_url(issuer: &str) -> String {
        format!(
            "{}/.well-known/openid-configuration",
            issuer.trim_end_matches('/')
        )
    }
}

/// Why a key set could not be had.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum JwksError {
    /// The document could not be fetched or read.
    #[error("fetching {what}: {message}")]
    Fetch {
        /// The JWKS or the OpenID configuration.
        what: &'static str,
        /// What went wrong.
        message: String,
    },
    /// The document is not what it should be.
    #[error("{0}")]
    Invalid(String),
}

/// A key, bound to the one algorithm it verifies.
#[derive(Clone)]
pub struct Key {
    /// The verification key.
    pub decoding: DecodingKey,
    /// The only algorithm accepted with it.
    pub algorithm: Algorithm,
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Key")
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

/// One loaded key set.
#[derive(Debug, Default)]
pub struct KeySet {
    keys: HashMap<String, Arc<Key>>,
    /// Increases with every key set that replaces the previous one.
    pub generation: u64,
}

impl KeySet {
    /// The key named `kid`.
    pub fn get(&self, kid: &str) -> Option<&Arc<Key>> {
        self.keys.get(kid)
    }

    /// How many usable keys there are.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// No usable key.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

/// The usable keys of a JWKS document, each bound to its algorithm; keys that cannot be
/// used (see the module documentation) are skipped with a log line. A document without
/// any usable key is an error.
pub fn parse_jwks(
    document: &[u8],
    allowed: &[Algorithm],
) -> Result<HashMap<String, Arc<Key>>, JwksError> {
    #[derive(Deserialize)]
    struct Document {
        keys: Vec<serde_json::Value>,
    }
    let document: Document = serde_json::from_slice(document)
        .map_err(|e| JwksError::Invalid(format!("not a JWKS document: {e}")))?;
    let mut keys = HashMap::new();
    for value in document.keys {
        match usable_key(value, allowed) {
            Ok((kid, key)) => {
                keys.insert(kid, Arc::new(key));
            }
            Err(why) => tracing::warn!(reason = why, "JWKS key skipped"),
        }
    }
    if keys.is_empty() {
        return Err(JwksError::Invalid(
            "the JWKS has no usable signing key (RS256/ES256 with a kid)".into(),
        ));
    }
    Ok(keys)
}

fn usable_key(value: serde_json::Value, allowed: &[Algorithm]) -> Result<(String, Key), String> {
    let jwk: Jwk = serde_json::from_value(value).map_err(|e| format!("unreadable JWK: {e}"))?;
    let kid = jwk.common.key_id.clone().ok_or("a key without kid")?;
    if matches!(&jwk.common.public_key_use, Some(u) if *u != PublicKeyUse::Signature) {
        return Err(format!("key {kid} is not a signing key"));
    }
    let implied = match &jwk.algorithm {
        AlgorithmParameters::RSA(rsa) => {
            // base64url: 4 characters per 3 bytes; 2048 bits are 256 bytes.
            if rsa.n.trim_end_matches('=').len() * 3 / 4 < 256 {
                return Err(format!("RSA key {kid} is shorter than 2048 bits"));
            }
            Algorithm::RS256
        }
        AlgorithmParameters::EllipticCurve(ec) => match ec.curve {
            EllipticCurve::P256 => Algorithm::ES256,
            EllipticCurve::P384 => Algorithm::ES384,
            _ => return Err(format!("EC key {kid} on an unsupported curve")),
        },
        AlgorithmParameters::OctetKeyPair(_) => Algorithm::EdDSA,
        _ => return Err(format!("key {kid}: symmetric or unknown key type")),
    };
    let algorithm = match jwk.common.key_algorithm {
        Some(alg) => Algorithm::try_from(alg)
            .map_err(|_| format!("key {kid}: algorithm {alg:?} is not for signatures"))?,
        None => implied,
    };
    if !allowed.contains(&algorithm) || !same_family(algorithm, implied) {
        return Err(format!(
            "key {kid}: algorithm {algorithm:?} not allowed for its key type"
        ));
    }
    let decoding = DecodingKey::from_jwk(&jwk).map_err(|e| format!("key {kid}: {e}"))?;
    Ok((
        kid,
        Key {
            decoding,
            algorithm,
        },
    ))
}

fn same_family(a: Algorithm, b: Algorithm) -> bool {
    use Algorithm::{ES256, ES384, EdDSA, PS256, PS384, PS512, RS256, RS384, RS512};
    let family = |alg| match alg {
        RS256 | RS384 | RS512 | PS256 | PS384 | PS512 => 1,
        ES256 | ES384 => 2,
        EdDSA => 3,
        _ => 0,
    };
    family(a) != 0 && family(a) == family(b)
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: &'static str,
}

/// What readiness and `/health` say of the keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyStatus {
    /// Usable keys loaded.
    pub keys: usize,
    /// Since the last successful load.
    pub age: Option<Duration>,
    /// The last refresh's error, when the last refresh failed.
    pub last_error: Option<String>,
}

#[derive(Debug, Default)]
struct Health {
    loaded_at: Option<Instant>,
    last_error: Option<String>,
    /// The JWKS URL found by discovery.
    discovered: Option<String>,
}

/// The cached keys of the issuer, refreshed as the module documentation says.
#[derive(Debug)]
pub struct KeyStore {
    source: KeySource,
    allowed: Vec<Algorithm>,
    http: reqwest::Client,
    current: RwLock<Arc<KeySet>>,
    /// Held while fetching (single flight); the time of the last fetch on an unknown kid.
    refreshing: tokio::sync::Mutex<Option<Instant>>,
    health: Mutex<Health>,
    min_interval: Duration,
    fetches: Family<ResultLabel, Counter>,
    loaded: Gauge,
}

/// The largest JWKS or OpenID configuration document read.
const MAX_DOCUMENT_BYTES: usize = 1024 * 1024;

impl KeyStore {
    /// An unknown `kid` triggers at most one fetch per this interval.
    pub const MIN_REFRESH_INTERVAL: Duration = Duration::from_secs(30);

    /// A store with no keys yet; [`KeyStore::refresh`] loads them. `allowed`: the
    /// signature algorithms a key may be bound to (HMAC and `none` are never).
    pub fn new(source: KeySource, allowed: Vec<Algorithm>, timeout: Duration) -> Self {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .redirect(reqwest::redirect::Policy::limited(3))
            .build()
            .unwrap_or_default();
        Self {
            source,
            allowed: allowed
                .into_iter()
                .filter(|a| !matches!(a, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512))
                .collect(),
            http,
            current: RwLock::default(),
            refreshing: tokio::sync::Mutex::new(None),
            health: Mutex::default(),
            min_interval: Self::MIN_REFRESH_INTERVAL,
            fetches: Family::default(),
            loaded: Gauge::default(),
        }
    }

    /// The same store with another minimum interval between fetches on unknown `kid`s
    /// (tests).
    pub fn with_min_refresh_interval(mut self, interval: Duration) -> Self {
        self.min_interval = interval;
        self
    }

    /// Registers `auth_jwks_fetches_total{result}` and `auth_jwks_keys`.
    pub fn register(&self, registry: &mut Registry) {
        for result in ["ok", "error"] {
            let _ = self.fetches.get_or_create(&ResultLabel { result });
        }
        registry.register(
            "auth_jwks_fetches",
            "Fetches of the token issuer's key set, by result (ok, error)",
            self.fetches.clone(),
        );
        registry.register(
            "auth_jwks_keys",
            "Usable signing keys loaded",
            self.loaded.clone(),
        );
    }

    /// The key set in use.
    pub fn current(&self) -> Arc<KeySet> {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// What readiness reports.
    pub fn status(&self) -> KeyStatus {
        let health = self.health.lock().unwrap_or_else(PoisonError::into_inner);
        KeyStatus {
            keys: self.current().len(),
            age: health.loaded_at.map(|at| at.elapsed()),
            last_error: health.last_error.clone(),
        }
    }

    /// Fetches and installs the key set now; on failure the last good keys stay.
    pub async fn refresh(&self) -> Result<(), JwksError> {
        let _single_flight = self.refreshing.lock().await;
        self.fetch_and_install().await
    }

    /// Called by a token naming a `kid` absent from key set `seen` (its generation): a
    /// fetch unless another caller's fetch has already replaced that set, or one was
    /// made within the minimum interval. Concurrent callers wait for the one fetch.
    pub async fn refresh_for_unknown_kid(&self, seen: u64) {
        let mut last = self.refreshing.lock().await;
        if self.current().generation != seen {
            return;
        }
        if last.is_some_and(|at| at.elapsed() < self.min_interval) {
            return;
        }
        *last = Some(Instant::now());
        if let Err(err) = self.fetch_and_install().await {
            tracing::warn!(error = %err, "key refresh for an unknown kid failed; last good keys kept");
        }
    }

    /// Refreshes every `every` until `token` is cancelled (the first load is the
    /// caller's: [`KeyStore::refresh`]).
    pub fn spawn_periodic_refresh(self: &Arc<Self>, every: Duration, token: CancellationToken) {
        let store = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = token.cancelled() => return,
                    () = tokio::time::sleep(every) => {}
                }
                let Some(store) = store.upgrade() else { return };
                if let Err(err) = store.refresh().await {
                    tracing::warn!(error = %err, "periodic key refresh failed; last good keys kept");
                }
            }
        });
    }

    async fn fetch_and_install(&self) -> Result<(), JwksError> {
        let fetched = match self.load().await {
            Ok(document) => parse_jwks(&document, &self.allowed),
            Err(err) => Err(err),
        };
        let mut health = self.health.lock().unwrap_or_else(PoisonError::into_inner);
        match fetched {
            Ok(keys) => {
                self.fetches
                    .get_or_create(&ResultLabel { result: "ok" })
                    .inc();
                let mut current = self.current.write().unwrap_or_else(PoisonError::into_inner);
                let generation = current.generation + 1;
                self.loaded
                    .set(i64::try_from(keys.len()).unwrap_or(i64::MAX));
                *current = Arc::new(KeySet { keys, generation });
                health.loaded_at = Some(Instant::now());
                health.last_error = None;
                Ok(())
            }
            Err(err) => {
                self.fetches
                    .get_or_create(&ResultLabel { result: "error" })
                    .inc();
                if matches!(err, JwksError::Fetch { .. }) {
                    // The JWKS may have moved: discover it again next time.
                    health.discovered = None;
                }
                health.last_error = Some(err.to_string());
                Err(err)
            }
        }
    }

    async fn load(&self) -> Result<Vec<u8>, JwksError> {
        match &self.source {
            KeySource::File(path) => tokio::fs::read(path).await.map_err(|e| JwksError::Fetch {
                what: "the JWKS file",
                message: e.to_string(),
            }),
            KeySource::Url(url) => self.get(url, "the JWKS").await,
            KeySource::Discovery { issuer } => {
                let known = self
                    .health
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .discovered
                    .clone();
                let jwks_uri = match known {
                    Some(uri) => uri,
                    None => {
                        let uri = self.discover(issuer).await?;
                        self.health
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .discovered = Some(uri.clone());
                        uri
                    }
                };
                self.get(&jwks_uri, "the JWKS").await
            }
        }
    }

    /// The `jwks_uri` of `issuer`'s OpenID configuration, whose `issuer` must be the
    /// configured one (OpenID Connect Discovery §4.3).
    async fn discover(&self, issuer: &str) -> Result<String, JwksError> {
        #[derive(Deserialize)]
        struct Configuration {
            issuer: String,
            jwks_uri: String,
        }
        let document = self
            .get(
                &KeySource::discovery_url(issuer),
                "the OpenID configuration",
            )
            .await?;
        let configuration: Configuration = serde_json::from_slice(&document).map_err(|e| {
            JwksError::Invalid(format!("the OpenID configuration is unreadable: {e}"))
        })?;
        if configuration.issuer != issuer {
            return Err(JwksError::Invalid(format!(
                "the OpenID configuration names issuer {:?}, not {issuer:?}",
                configuration.issuer
            )));
        }
        Ok(configuration.jwks_uri)
    }

    async fn get(&self, url: &str, what: &'static str) -> Result<Vec<u8>, JwksError> {
        let fetch_error = |message: String| JwksError::Fetch { what, message };
        let mut response = self
            .http
            .get(url)
            .header(http::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| fetch_error(without_url(&e)))?;
        if !response.status().is_success() {
            return Err(fetch_error(format!("answered {}", response.status())));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| fetch_error(without_url(&e)))?
        {
            if body.len() + chunk.len() > MAX_DOCUMENT_BYTES {
                return Err(fetch_error("larger than 1 MiB".into()));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }
}

fn without_url(err: &reqwest::Error) -> String {
    if err.is_timeout() {
        "timed out".into()
    } else if err.is_connect() {
        "unreachable".into()
    } else {
        err.to_string()
    }
}

/// Readiness checks of the keys: `jwks` (usable keys loaded; `criticality` says what
/// having none means: critical for admin-gateway, which can admit nobody without them)
/// and `jwks_refresh` (optional: the last refresh failed, the last good keys are in use).
pub fn readiness_checks(store: &Arc<KeyStore>, criticality: Criticality) -> [Check; 2] {
    let loaded = store.clone();
    let refreshed = store.clone();
    [
        Check::new("jwks", criticality, move || {
            let status = loaded.status();
            async move {
                match (status.keys, status.last_error) {
                    (0, Some(error)) => Err(format!("no signing keys: {error}")),
                    (0, None) => Err("no signing keys loaded yet".to_owned()),
                    _ => Ok(()),
                }
            }
        }),
        Check::new("jwks_refresh", Criticality::Optional, move || {
            let status = refreshed.status();
            async move {
                match (status.last_error, status.age) {
                    (Some(error), Some(age)) => Err(format!(
                        "refresh failing ({error}); keys loaded {} s ago still in use",
                        age.as_secs()
                    )),
                    (Some(error), None) => Err(error),
                    (None, _) => Ok(()),
                }
            }
        }),
    ]
}
