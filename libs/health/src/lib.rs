//! `GET /health`, `/healthz` (liveness, never touches a dependency) and
//! `GET /health/ready` (readiness: every dependency checked concurrently with a
//! timeout; 503 when a critical one is down, 200 `degraded` when only optional ones are).
//!
//! Contract: `shared/spec/README.md`, "Health".

use std::{future::Future, pin::Pin, sync::Arc, time::Duration};

use axum::{
    Json, Router,
    extract::State,
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::get,
};
use ic_http::RequestContext;
use serde::Serialize;
use serde_json::{Map, Value, json};

/// Whether a failing dependency makes the service unready or only degraded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Criticality {
    /// Down → 503 `not_ready`.
    Critical,
    /// Down → 200 `degraded`.
    Optional,
}

type CheckFuture = Pin<Box<dyn Future<Output = Result<(), String>> + Send>>;
type CheckFn = dyn Fn() -> CheckFuture + Send + Sync;

/// One dependency check: a name, its criticality and an async probe returning a short
/// human message on failure.
#[derive(Clone)]
pub struct Check {
    name: &'static str,
    criticality: Criticality,
    probe: Arc<CheckFn>,
}

impl std::fmt::Debug for Check {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Check")
            .field("name", &self.name)
            .field("criticality", &self.criticality)
            .finish_non_exhaustive()
    }
}

impl Check {
    /// A check from an async closure.
    pub fn new<F, Fut>(name: &'static str, criticality: Criticality, probe: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), String>> + Send + 'static,
    {
        Self {
            name,
            criticality,
            probe: Arc::new(move || Box::pin(probe())),
        }
    }

    /// Runs the probe once (no timeout): `Err` carries its message.
    pub async fn run(&self) -> Result<(), String> {
        (self.probe)().await
    }
}

/// What the health endpoints report about the service itself.
#[derive(Debug, Clone)]
pub struct HealthInfo {
    /// Service (crate) name.
    pub service: &'static str,
    /// Service version.
    pub version: &'static str,
    /// development | staging | production.
    pub environment: String,
    /// The Dapr app id (equal to the crate name).
    pub dapr_app_id: &'static str,
}

impl HealthInfo {
    /// A service's own facts: its Dapr app id is its crate name (`shared/spec/README.md`).
    pub fn new(service: &'static str, version: &'static str, environment: &str) -> Self {
        Self {
            service,
            version,
            environment: environment.to_owned(),
            dapr_app_id: service,
        }
    }
}

/// State of the health routes.
#[derive(Debug, Clone)]
pub struct Health {
    info: Arc<HealthInfo>,
    checks: Arc<Vec<Check>>,
    timeout: Duration,
    extra: Arc<Map<String, Value>>,
}

/// Overall readiness.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Readiness {
    /// Every dependency answered.
    Ready,
    /// Only optional dependencies failed.
    Degraded,
    /// A critical dependency failed.
    NotReady,
}

impl Health {
    /// Health state with the given checks, each bounded by `timeout`.
    pub fn new(info: HealthInfo, checks: Vec<Check>, timeout: Duration) -> Self {
        Self {
            info: Arc::new(info),
            checks: Arc::new(checks),
            timeout,
            extra: Arc::default(),
        }
    }

    /// Adds a static field to the liveness body (e.g. a gateway's `middleware_status`).
    #[must_use]
    pub fn with_liveness_field(mut self, key: &str, value: Value) -> Self {
        Arc::make_mut(&mut self.extra).insert(key.to_owned(), value);
        self
    }

    /// Runs every check concurrently and returns the overall status and the per-check
    /// report.
    pub async fn readiness(&self) -> (Readiness, Value) {
        let runs = self.checks.iter().map(|check| async move {
            let started = std::time::Instant::now();
            let outcome = match tokio::time::timeout(self.timeout, (check.probe)()).await {
                Ok(result) => result,
                Err(_) => Err(format!("timed out after {} ms", self.timeout.as_millis())),
            };
            (check, outcome, started.elapsed())
        });
        let results = futures::future::join_all(runs).await;
        let mut status = Readiness::Ready;
        let mut report = Map::new();
        for (check, outcome, elapsed) in results {
            let (state, message) = match outcome {
                Ok(()) => ("up", None),
                Err(message) => {
                    status = match (status, check.criticality) {
                        (_, Criticality::Critical) | (Readiness::NotReady, _) => {
                            Readiness::NotReady
                        }
                        _ => Readiness::Degraded,
                    };
                    ("down", Some(message))
                }
            };
            report.insert(
                check.name.to_owned(),
                json!({
                    "status": state,
                    "critical": check.criticality == Criticality::Critical,
                    "duration_ms": u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX),
                    "message": message,
                }),
            );
        }
        (status, Value::Object(report))
    }

    /// The routes: `/health`, `/healthz`, `/health/ready`.
    pub fn router<S>(self) -> Router<S> {
        Router::new()
            .route("/health", get(liveness))
            .route("/healthz", get(liveness))
            .route("/health/ready", get(readiness))
            .with_state(self)
    }

    /// The routes of a worker whose `/health` is its readiness (the broadcaster:
    /// `shared/spec/broadcaster.md`): `/health` and `/health/ready` report readiness,
    /// `/healthz` liveness.
    pub fn worker_router<S>(self) -> Router<S> {
        Router::new()
            .route("/health", get(readiness))
            .route("/healthz", get(liveness))
            .route("/health/ready", get(readiness))
            .with_state(self)
    }
}

async fn liveness(State(health): State<Health>, ctx: RequestContext) -> Json<Value> {
    let mut body = json!({
        "status": "healthy",
        "timestamp": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "service": health.info.service,
        "version": health.info.version,
        "environment": health.info.environment,
        "dapr_app_id": health.info.dapr_app_id,
        "correlation_id": ctx.correlation_id,
    });
    if let Value::Object(map) = &mut body {
        map.extend(health.extra.iter().map(|(k, v)| (k.clone(), v.clone())));
    }
    Json(body)
}

async fn readiness(State(health): State<Health>, ctx: RequestContext) -> Response {
    let (status, checks) = health.readiness().await;
    let code = if status == Readiness::NotReady {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    let body = json!({
        "status": status,
        "service": health.info.service,
        "version": health.info.version,
        "timestamp": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "correlation_id": ctx.correlation_id,
        "checks": checks,
    });
    (code, Json(body)).into_response()
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};

    use axum::body::Body;
    use tower::ServiceExt;

    use super::*;

    fn info() -> HealthInfo {
        HealthInfo {
            service: "t",
            version: "0",
            environment: "development".into(),
            dapr_app_id: "t",
        }
    }

    async fn get_json(app: &Router, path: &str) -> (u16, Value) {
        let res = app
            .clone()
            .oneshot(axum::http::Request::get(path).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = res.status().as_u16();
        let bytes = axum::body::to_bytes(res.into_body(), 1 << 20)
            .await
            .unwrap();
        (status, serde_json::from_slice(&bytes).unwrap())
    }

    #[tokio::test]
    async fn liveness_never_runs_a_check() {
        let touched = Arc::new(AtomicBool::new(false));
        let flag = touched.clone();
        let health = Health::new(
            info(),
            vec![Check::new("db", Criticality::Critical, move || {
                flag.store(true, Ordering::SeqCst);
                async { Ok(()) }
            })],
            Duration::from_secs(1),
        );
        let app: Router = health.router();
        for path in ["/health", "/healthz"] {
            let (status, body) = get_json(&app, path).await;
            assert_eq!(status, 200);
            assert_eq!(body["status"], "healthy");
            assert_eq!(body["dapr_app_id"], "t");
        }
        assert!(!touched.load(Ordering::SeqCst));
    }

    #[tokio::test]
    async fn critical_failure_is_503_optional_failure_is_degraded_and_slow_checks_time_out() {
        let app: Router = Health::new(
            info(),
            vec![
                Check::new("db", Criticality::Critical, || async { Ok(()) }),
                Check::new("cache", Criticality::Optional, || async {
                    Err("refused".into())
                }),
            ],
            Duration::from_millis(200),
        )
        .router();
        let (status, body) = get_json(&app, "/health/ready").await;
        assert_eq!((status, body["status"].as_str()), (200, Some("degraded")));
        assert_eq!(body["checks"]["cache"]["message"], "refused");

        let app: Router = Health::new(
            info(),
            vec![Check::new("db", Criticality::Critical, || async {
                tokio::time::sleep(Duration::from_secs(5)).await;
                Ok(())
            })],
            Duration::from_millis(50),
        )
        .router();
        let (status, body) = get_json(&app, "/health/ready").await;
        assert_eq!((status, body["status"].as_str()), (503, Some("not_ready")));
        assert!(
            body["checks"]["db"]["message"]
                .as_str()
                .unwrap()
                .contains("timed out")
        );
    }
}
