//! `cargo xtask deploy gate | wait | smoke | audit`: what decides a deployment
//! (`.github/workflows/deploy.yml`, `docs/deployment.md`), as commands the suite tests
//! instead of shell inside YAML.
//!
//! - `gate SUMMARY.json|-`: passes only the migration summary `migrate up --output json`
//!   prints for a good run: `success`, `compliant`, 0 audit tables.
//! - `wait [--timeout 300s] [--interval 2s] URL...`: until every URL answers 200
//!   (`/health/ready`), else fails naming those that did not and their last answer.
//! - `smoke --public URL --admin URL [--token T]`: requests through both gateways;
//!   every failed check is named.
//! - `audit --loki URL --environment E --outcome O [--detail K=V ...]`: the deployment's
//!   audit record, pushed to Loki (job `deployments`).

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::{Value, json};

const USAGE: &str = "usage: cargo xtask deploy <gate SUMMARY.json|- | wait [--timeout 300s] [--interval 2s] URL... | smoke --public URL --admin URL [--token T] | audit --loki URL --environment E --outcome O [--detail key=value ...]>";

/// Runs one deploy command.
pub fn deploy(args: &[String]) -> anyhow::Result<()> {
    let Some((command, rest)) = args.split_first() else {
        bail!("{USAGE}");
    };
    let runtime = tokio::runtime::Runtime::new()?;
    match command.as_str() {
        "gate" => {
            let [source] = rest else { bail!("{USAGE}") };
            let text = if source == "-" {
                std::io::read_to_string(std::io::stdin())?
            } else {
                std::fs::read_to_string(source).with_context(|| format!("reading {source}"))?
            };
            let passed = gate(&text)?;
            println!("migration gate passed: {passed}");
            Ok(())
        }
        "wait" => {
            let mut flags = Flags::parse(rest, &["--timeout", "--interval"])?;
            let timeout = flags.duration("--timeout", Duration::from_secs(300))?;
            let interval = flags.duration("--interval", Duration::from_secs(2))?;
            if flags.positional.is_empty() {
                bail!("{USAGE}");
            }
            runtime.block_on(wait(&flags.positional, timeout, interval))
        }
        "smoke" => {
            let mut flags = Flags::parse(rest, &["--public", "--admin", "--token"])?;
            let public = flags.required("--public")?;
            let admin = flags.required("--admin")?;
            let token = flags.take("--token").or_else(|| {
                std::env::var("SMOKE_ADMIN_TOKEN")
                    .ok()
                    .filter(|t| !t.is_empty())
            });
            let report = runtime.block_on(smoke(&public, &admin, token.as_deref()));
            for line in &report.passed {
                println!("ok      {line}");
            }
            for line in &report.failed {
                println!("FAILED  {line}");
            }
            if report.failed.is_empty() {
                println!("smoke tests passed ({} checks)", report.passed.len());
                Ok(())
            } else {
                bail!(
                    "{} smoke check(s) failed: {}",
                    report.failed.len(),
                    report.failed.join("; ")
                )
            }
        }
        "audit" => {
            let mut flags =
                Flags::parse(rest, &["--loki", "--environment", "--outcome", "--detail"])?;
            let loki = flags.required("--loki")?;
            let environment = flags.required("--environment")?;
            let outcome = flags.required("--outcome")?;
            let details = flags.all("--detail");
            let record = deployment_record(&environment, &outcome, &details)?;
            runtime.block_on(push_to_loki(&loki, &record))?;
            println!("deployment audit record pushed to {loki}: {record}");
            Ok(())
        }
        _ => bail!("{USAGE}"),
    }
}

/// `--name value` flags (each named in `known`, some repeatable) and positional words.
struct Flags {
    values: Vec<(String, String)>,
    positional: Vec<String>,
}

impl Flags {
    fn parse(args: &[String], known: &[&str]) -> anyhow::Result<Self> {
        let mut values = Vec::new();
        let mut positional = Vec::new();
        let mut it = args.iter();
        while let Some(arg) = it.next() {
            if arg.starts_with("--") {
                if !known.contains(&arg.as_str()) {
                    bail!("unknown option {arg}\n{USAGE}");
                }
                let value = it.next().with_context(|| format!("{arg} needs a value"))?;
                values.push((arg.clone(), value.clone()));
            } else {
                positional.push(arg.clone());
            }
        }
        Ok(Self { values, positional })
    }

    fn take(&mut self, name: &str) -> Option<String> {
        let i = self.values.iter().position(|(n, _)| n == name)?;
        Some(self.values.remove(i).1)
    }

    fn all(&mut self, name: &str) -> Vec<String> {
        std::iter::from_fn(|| self.take(name)).collect()
    }

    fn required(&mut self, name: &str) -> anyhow::Result<String> {
        self.take(name)
            .with_context(|| format!("{name} is required\n{USAGE}"))
    }

    fn duration(&mut self, name: &str, default: Duration) -> anyhow::Result<Duration> {
        match self.take(name) {
            None => Ok(default),
            Some(text) => parse_duration(&text).with_context(|| format!("{name} {text}")),
        }
    }
}

/// `300s`, `5m`, `2` (seconds), `500ms`.
fn parse_duration(text: &str) -> anyhow::Result<Duration> {
    let digits = text.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let n: u64 = digits
        .parse()
        .with_context(|| format!("expected a duration like 30s or 5m, got {text:?}"))?;
    Ok(match &text[digits.len()..] {
        "ms" => Duration::from_millis(n),
        "" | "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(
            n.checked_mul(60)
                .with_context(|| format!("{text:?} is too long"))?,
        ),
        other => bail!("unknown duration unit {other:?} in {text:?}"),
    })
}

/// The migration gate: `Ok` with a one-line description of a good summary, else why not.
pub fn gate(summary: &str) -> anyhow::Result<String> {
    let summary: Value = serde_json::from_str(summary.trim())
        .context("the migration summary is not JSON (expected `migrate up --output json`)")?;
    let field = |name: &str| summary.get(name).filter(|v| !v.is_null());
    let mut problems = Vec::new();
    match field("postgresMigrationStatus").and_then(Value::as_str) {
        Some("success") => {}
        Some(other) => problems.push(format!(
            "postgresMigrationStatus is {other:?}{}",
            field("error")
                .and_then(Value::as_str)
                .map(|e| format!(" ({e})"))
                .unwrap_or_default()
        )),
        None => problems.push("postgresMigrationStatus is missing".to_owned()),
    }
    match field("schemaValidationResult").and_then(Value::as_str) {
        Some("compliant") => {}
        Some(other) => problems.push(format!("schemaValidationResult is {other:?}")),
        None => problems.push("schemaValidationResult is missing".to_owned()),
    }
    match field("auditTablesCheck").map(Value::as_i64) {
        Some(Some(0)) => {}
        Some(Some(n)) => problems.push(format!(
            "auditTablesCheck is {n}: audit records belong in Loki, never in tables"
        )),
        Some(None) => problems.push("auditTablesCheck is not a number".to_owned()),
        None => problems.push("auditTablesCheck is missing".to_owned()),
    }
    if !problems.is_empty() {
        bail!("migration gate failed: {}", problems.join("; "));
    }
    let applied = field("applied")
        .and_then(Value::as_array)
        .map_or(0, Vec::len);
    Ok(format!(
        "success, compliant, 0 audit tables ({applied} migration(s) applied, environment {}, approach {})",
        field("environment").and_then(Value::as_str).unwrap_or("?"),
        field("approach").and_then(Value::as_str).unwrap_or("?"),
    ))
}

/// Waits until every URL answers 200.
pub async fn wait(urls: &[String], timeout: Duration, interval: Duration) -> anyhow::Result<()> {
    let client = reqwest::Client::builder()
        .timeout(interval.max(Duration::from_secs(2)))
        .build()?;
    let started = Instant::now();
    let deadline = started + timeout;
    let mut last: Vec<Option<String>> = vec![Some("not asked yet".into()); urls.len()];
    loop {
        for (url, state) in urls.iter().zip(last.iter_mut()) {
            if state.is_none() {
                continue;
            }
            *state = match client.get(url).send().await {
                Ok(res) if res.status().as_u16() == 200 => {
                    println!(
                        "ready after {:.1} s: {url}",
                        started.elapsed().as_secs_f64()
                    );
                    None
                }
                Ok(res) => Some(format!("answered {}", res.status().as_u16())),
                Err(err) if err.is_connect() => Some("connection refused".into()),
                Err(err) if err.is_timeout() => Some("no answer in time".into()),
                Err(err) => Some(err.to_string()),
            };
        }
        if last.iter().all(Option::is_none) {
            return Ok(());
        }
        let now = Instant::now();
        if now >= deadline {
            let waiting: Vec<String> = urls
                .iter()
                .zip(&last)
                .filter_map(|(url, state)| state.as_ref().map(|s| format!("{url} ({s})")))
                .collect();
            bail!(
                "not ready after {} s: {}",
                timeout.as_secs(),
                waiting.join(", ")
            );
        }
        tokio::time::sleep(interval.min(deadline - now)).await;
    }
}

/// What the smoke tests found.
#[derive(Debug, Default)]
pub struct Smoke {
    /// Checks that passed, named.
    pub passed: Vec<String>,
    /// Checks that failed, named, with what was wrong.
    pub failed: Vec<String>,
}

/// One check: a GET through a gateway and what its answer must be.
struct Check<'a> {
    name: &'a str,
    url: String,
    token: Option<&'a str>,
    status: u16,
    /// The error envelope's code a refusal must carry.
    error_code: Option<&'a str>,
    /// A top-level field the JSON body must have.
    field: Option<&'a str>,
    /// Headers the answer must carry.
    headers: &'a [&'a str],
}

/// Requests through both gateways: health and readiness, public reads of services,
/// categories and files, the error envelope of an unknown route, the security and
/// correlation headers, and on the admin side that a request without a token is refused
/// (and, with `token`, that an admin read succeeds).
pub async fn smoke(public: &str, admin: &str, token: Option<&str>) -> Smoke {
    let public = public.trim_end_matches('/');
    let admin = admin.trim_end_matches('/');
    let get = |name, url: String, status, field| Check {
        name,
        url,
        token: None,
        status,
        error_code: None,
        field,
        headers: &[],
    };
    let mut checks = vec![
        get(
            "public-gateway /health",
            format!("{public}/health"),
            200,
            Some("status"),
        ),
        get(
            "public-gateway /health/ready",
            format!("{public}/health/ready"),
            200,
            Some("checks"),
        ),
        Check {
            headers: &["x-correlation-id", "x-content-type-options", "etag"],
            ..get(
                "public-gateway lists services (services-api)",
                format!("{public}/api/v1/services?limit=1"),
                200,
                Some("pagination"),
            )
        },
        get(
            "public-gateway lists categories (services-api)",
            format!("{public}/api/v1/services/categories"),
            200,
            None,
        ),
        get(
            "public-gateway lists files (content-api)",
            format!("{public}/api/v1/content?limit=1"),
            200,
            Some("pagination"),
        ),
        Check {
            error_code: Some("NOT_FOUND"),
            ..get(
                "public-gateway refuses an unknown route with the error envelope",
                format!("{public}/api/v1/no-such-route"),
                404,
                None,
            )
        },
        get(
            "admin-gateway /health",
            format!("{admin}/health"),
            200,
            Some("status"),
        ),
        get(
            "admin-gateway /health/ready",
            format!("{admin}/health/ready"),
            200,
            Some("checks"),
        ),
        Check {
            error_code: Some("UNAUTHORIZED"),
            headers: &["www-authenticate"],
            ..get(
                "admin-gateway refuses a request without a token",
                format!("{admin}/admin/api/v1/services"),
                401,
                None,
            )
        },
    ];
    if let Some(token) = token {
        checks.push(Check {
            token: Some(token),
            ..get(
                "admin-gateway lists services for an admin (services-api)",
                format!("{admin}/admin/api/v1/services?limit=1"),
                200,
                None,
            )
        });
        checks.push(Check {
            token: Some(token),
            ..get(
                "admin-gateway lists files for an admin (content-api)",
                format!("{admin}/admin/api/v1/content?limit=1"),
                200,
                None,
            )
        });
    }
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("an HTTP client");
    let mut report = Smoke::default();
    for check in checks {
        match run_check(&client, &check).await {
            Ok(()) => report.passed.push(check.name.to_owned()),
            Err(why) => report.failed.push(format!("{}: {why}", check.name)),
        }
    }
    report
}

async fn run_check(client: &reqwest::Client, check: &Check<'_>) -> Result<(), String> {
    let mut request = client.get(&check.url);
    if let Some(token) = check.token {
        request = request.bearer_auth(token);
    }
    let res = request
        .send()
        .await
        .map_err(|e| format!("GET {} failed: {e}", check.url))?;
    let status = res.status().as_u16();
    let headers = res.headers().clone();
    let body: Value = res.json().await.unwrap_or(Value::Null);
    let code = body["error"]["code"].as_str();
    if status != check.status {
        return Err(format!(
            "GET {} answered {status}{} (expected {})",
            check.url,
            code.map(|c| format!(" {c}")).unwrap_or_default(),
            check.status
        ));
    }
    if let Some(expected) = check.error_code
        && code != Some(expected)
    {
        return Err(format!("GET {}: no {expected} error envelope", check.url));
    }
    if let Some(field) = check.field
        && body.get(field).is_none()
    {
        return Err(format!(
            "GET {}: the JSON answer has no {field:?}",
            check.url
        ));
    }
    for header in check.headers {
        if !headers.contains_key(*header) {
            return Err(format!("GET {}: no {header} header", check.url));
        }
    }
    Ok(())
}

/// The deployment's audit record (what was deployed where, by whom, and how it ended).
pub fn deployment_record(
    environment: &str,
    outcome: &str,
    details: &[String],
) -> anyhow::Result<Value> {
    const OUTCOMES: [&str; 4] = ["success", "rolled_back", "failed", "gate_refused"];
    if !OUTCOMES.contains(&outcome) {
        bail!("--outcome must be one of {}", OUTCOMES.join(", "));
    }
    let mut record = json!({
        "audit_id": uuid::Uuid::now_v7().to_string(),
        "audit_timestamp": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "entity_type": "deployment",
        "operation_type": "DEPLOY",
        "environment": environment,
        "outcome": outcome,
        "service": "deploy-pipeline",
    });
    for detail in details {
        let (key, value) = detail
            .split_once('=')
            .filter(|(key, _)| !key.is_empty())
            .with_context(|| format!("--detail {detail}: expected key=value"))?;
        if record.get(key).is_some() {
            bail!("--detail {key}=…: {key} is set by the command itself");
        }
        record[key] = Value::String(value.to_owned());
    }
    Ok(record)
}

/// Pushes `record` to Loki's push API as one line of the stream `job="deployments"`.
pub async fn push_to_loki(loki: &str, record: &Value) -> anyhow::Result<()> {
    let nanos = chrono::Utc::now()
        .timestamp_nanos_opt()
        .context("the clock is out of range")?;
    let body = json!({
        "streams": [{
            "stream": {
                "job": "deployments",
                "environment": record["environment"],
                "outcome": record["outcome"],
            },
            "values": [[nanos.to_string(), record.to_string()]],
        }]
    });
    let mut request = reqwest::Client::new()
        .post(format!("{}/loki/api/v1/push", loki.trim_end_matches('/')))
        .json(&body)
        .timeout(Duration::from_secs(10));
    if let (Ok(user), Ok(key)) = (
        std::env::var("LOKI_USERNAME"),
        std::env::var("LOKI_API_KEY"),
    ) {
        request = request.basic_auth(user, Some(key));
    }
    if let Ok(tenant) = std::env::var("LOKI_TENANT_ID") {
        request = request.header("X-Scope-OrgID", tenant);
    }
    let res = request.send().await.context("pushing to Loki")?;
    if !res.status().is_success() {
        bail!("Loki answered {}", res.status());
    }
    Ok(())
}
