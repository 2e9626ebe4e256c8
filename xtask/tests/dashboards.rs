//! The Grafana dashboards against the running services, so the two cannot drift: the
//! five service binaries run (real Postgres and NATS from the harness, a fake Loki so the
//! audit shipper runs, a webhook receiver), take some traffic, and are scraped; every
//! metric a dashboard queries is in the `/metrics` output of the service its `job`
//! names, with every label the query filters or groups by; `promtool check metrics` is
//! clean on each; each dashboard's job is scraped by observability/prometheus.yml, and
//! the provisioning points Grafana at the dashboards compose mounts.

mod common;

use std::{
    collections::{BTreeMap, BTreeSet},
    process::{Child, Command, Stdio},
    time::Duration,
};

use common::{SERVICES, binary, root};
use serde_json::Value;
use sqlx::PgPool;

/// A running service, killed when dropped.
struct Service(Child);

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn(name: &str, vars: &[(&str, String)]) -> Service {
    Service(
        Command::new(binary(name))
            .env_clear()
            .env("HOST", "127.0.0.1")
            .env("LOG_FORMAT", "json")
            .env("RUST_LOG", "warn")
            .envs(vars.iter().map(|(k, v)| (*k, v.as_str())))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

async fn get(url: &str) -> Option<(u16, String)> {
    ic_telemetry::install_crypto_provider();
    let res = reqwest::get(url).await.ok()?;
    let status = res.status().as_u16();
    Some((status, res.text().await.ok()?))
}

async fn wait_up(url: &str) {
    ic_testkit::eventually(Duration::from_secs(30), url, || async {
        get(url).await.filter(|(s, _)| *s == 200).map(drop)
    })
    .await;
}

/// Sample name → the label names its samples carry, from the classic text format.
fn series(text: &str) -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            // A family without samples yet is still exported.
            let name = rest.split(' ').next().unwrap_or_default();
            out.entry(name.to_owned()).or_default();
            continue;
        }
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let name_end = line.find(['{', ' ']).unwrap_or(line.len());
        let labels = out.entry(line[..name_end].to_owned()).or_default();
        if line[name_end..].starts_with('{') {
            // name="value" pairs; values may hold braces and commas (route templates).
            let mut rest = &line[name_end + 1..];
            while let Some(eq) = rest.find('=') {
                let label = rest[..eq].trim_start_matches(',').trim();
                labels.insert(label.to_owned());
                let mut chars = rest[eq + 2..].char_indices();
                let mut end = 0;
                while let Some((i, c)) = chars.next() {
                    match c {
                        '\\' => {
                            chars.next();
                        }
                        '"' => {
                            end = eq + 2 + i + 1;
                            break;
                        }
                        _ => {}
                    }
                }
                rest = &rest[end..];
                if rest.starts_with('}') {
                    break;
                }
            }
        }
    }
    out
}

/// Each selector of a PromQL expression (`name{matchers}`): the metric and the label
/// names it matches on.
fn selectors(expr: &str) -> Vec<(String, BTreeMap<String, String>)> {
    let mut out = Vec::new();
    let bytes = expr.as_bytes();
    for (open, _) in expr.match_indices('{') {
        let start = expr[..open]
            .rfind(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
            .map_or(0, |i| i + 1);
        let name = &expr[start..open];
        assert!(
            !name.is_empty() && !bytes[start].is_ascii_digit(),
            "a selector without a metric name in {expr}"
        );
        let close = expr[open..].find('}').unwrap() + open;
        let matchers = expr[open + 1..close]
            .split(',')
            .filter(|m| !m.trim().is_empty())
            .map(|m| {
                let cut = m.find(['=', '!']).unwrap();
                let value = m[cut..]
                    .trim_start_matches(['=', '!', '~'])
                    .trim_matches('"');
                (m[..cut].trim().to_owned(), value.to_owned())
            })
            .collect();
        out.push((name.to_owned(), matchers));
    }
    out
}

/// The labels of each `by (...)` clause.
fn grouping(expr: &str) -> Vec<String> {
    expr.match_indices("by (")
        .flat_map(|(i, _)| {
            let inside = &expr[i + 4..i + 4 + expr[i + 4..].find(')').unwrap()];
            inside.split(',').map(|l| l.trim().to_owned())
        })
        .collect()
}

/// Every (dashboard file, panel title, expression).
fn dashboard_queries() -> Vec<(String, String, String)> {
    let dir = root().join("grafana/dashboards");
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let file = path.file_name().unwrap().to_string_lossy().into_owned();
        let dashboard: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap())
            .unwrap_or_else(|e| panic!("{file}: {e}"));
        for panel in dashboard["panels"].as_array().unwrap() {
            for target in panel["targets"].as_array().into_iter().flatten() {
                out.push((
                    file.clone(),
                    panel["title"].as_str().unwrap().to_owned(),
                    target["expr"].as_str().unwrap().to_owned(),
                ));
            }
        }
    }
    out
}

#[test]
fn there_is_one_dashboard_per_service_scraped_and_provisioned() {
    let files: BTreeSet<String> = std::fs::read_dir(root().join("grafana/dashboards"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let expected: BTreeSet<String> = SERVICES.iter().map(|s| format!("{s}.json")).collect();
    assert_eq!(files, expected);
    let prometheus: serde_yaml::Value = serde_yaml::from_str(
        &std::fs::read_to_string(root().join("observability/prometheus.yml")).unwrap(),
    )
    .unwrap();
    let jobs: BTreeSet<&str> = prometheus["scrape_configs"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|c| c["job_name"].as_str().unwrap())
        .collect();
    for service in SERVICES {
        assert!(
            jobs.contains(service),
            "prometheus.yml scrapes no job {service}"
        );
    }
    // Every query names its service's job, so a panel never mixes services.
    for (file, title, expr) in dashboard_queries() {
        let service = file.trim_end_matches(".json");
        for (metric, matchers) in selectors(&expr) {
            assert_eq!(
                matchers.get("job").map(String::as_str),
                Some(service),
                "{file} / {title}: {metric} must select job=\"{service}\""
            );
        }
    }
    // The provider's path is where compose mounts the dashboards.
    let provider: serde_yaml::Value = serde_yaml::from_str(
        &std::fs::read_to_string(root().join("grafana/provisioning/dashboards/dashboards.yaml"))
            .unwrap(),
    )
    .unwrap();
    let path = provider["providers"][0]["options"]["path"]
        .as_str()
        .unwrap();
    let compose = std::fs::read_to_string(root().join("compose.yaml")).unwrap();
    assert!(
        compose.contains(&format!("./grafana/dashboards:{path}:ro")),
        "compose.yaml mounts grafana/dashboards at {path}"
    );
}

#[sqlx::test(migrations = false)]
async fn every_dashboard_query_names_metrics_the_running_services_export(pool: PgPool) {
    let mut conn = pool.acquire().await.unwrap();
    ic_migrations::up_all(&mut conn).await.unwrap();
    drop(conn);
    let database_url = ic_testkit::database_url(pool.connect_options().get_database().unwrap());
    #[allow(clippy::disallowed_methods)] // the harness's NATS
    let nats_url = std::env::var("NATS_URL").expect("NATS_URL is set by `cargo xtask test`");
    let loki = ic_testkit::fake_loki::FakeLoki::start().await;
    let (receiver, _) = ic_testkit::counting_server().await;
    let blobs = tempfile::tempdir().unwrap();
    let ports: BTreeMap<&str, u16> = SERVICES
        .iter()
        .map(|s| (*s, ic_testkit::free_port()))
        .chain([("broadcaster-metrics", ic_testkit::free_port())])
        .collect();
    let url = |name: &str| format!("http://127.0.0.1:{}", ports[name]);
    let backend = |port_variable: &'static str, port: u16| -> Vec<(&'static str, String)> {
        vec![
            (port_variable, port.to_string()),
            ("DATABASE_URL", database_url.clone()),
            ("NATS_URL", nats_url.clone()),
            ("LOKI_URL", loki.url()),
        ]
    };
    let _services_api = spawn(
        "services-api",
        &backend("SERVICES_API_PORT", ports["services-api"]),
    );
    let mut content = backend("CONTENT_API_PORT", ports["content-api"]);
    content.push((
        "BLOB_STORE_URL",
        format!("file://{}", blobs.path().display()),
    ));
    let _content_api = spawn("content-api", &content);
    let _public_gateway = spawn(
        "public-gateway",
        &[
            ("PUBLIC_GATEWAY_PORT", ports["public-gateway"].to_string()),
            ("SERVICES_API_URL", url("services-api")),
            ("CONTENT_API_URL", url("content-api")),
        ],
    );
    let _admin_gateway = spawn(
        "admin-gateway",
        &[
            ("ADMIN_GATEWAY_PORT", ports["admin-gateway"].to_string()),
            ("SERVICES_API_URL", url("services-api")),
            ("CONTENT_API_URL", url("content-api")),
            ("NATS_URL", nats_url.clone()),
            ("LOKI_URL", loki.url()),
            // An issuer that is not there: tokens are refused, the metrics still exist.
            (
                "AUTHENTIK_ISSUER_URL",
                format!(
                    "http://127.0.0.1:{}/application/o/ic/",
                    ic_testkit::free_port()
                ),
            ),
            ("AUTHENTIK_ADMIN_AUDIENCE", "ic-admin".into()),
        ],
    );
    let _broadcaster = spawn(
        "broadcaster",
        &[
            ("BROADCASTER_PORT", ports["broadcaster"].to_string()),
            (
                "BROADCASTER_METRICS_PORT",
                ports["broadcaster-metrics"].to_string(),
            ),
            ("NATS_URL", nats_url.clone()),
            ("LOKI_URL", loki.url()),
            ("WEBHOOK_URL", format!("{receiver}/webhooks")),
            (
                "WEBHOOK_SECRET",
                "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".into(),
            ),
            ("BROADCASTER_ALLOW_PRIVATE_TARGETS", "true".into()),
        ],
    );
    for service in SERVICES {
        wait_up(&format!("{}/health", url(service))).await;
    }
    // Some traffic through each gateway (refused ones too: no token, a bad one).
    let public = url("public-gateway");
    for path in ["/api/v1/services", "/api/v1/categories", "/api/v1/content"] {
        get(&format!("{public}{path}")).await;
    }
    let admin = url("admin-gateway");
    get(&format!("{admin}/api/v1/admin/services")).await;

    let scrape_urls = [
        ("services-api", format!("{}/metrics", url("services-api"))),
        ("content-api", format!("{}/metrics", url("content-api"))),
        (
            "public-gateway",
            format!("{}/metrics", url("public-gateway")),
        ),
        ("admin-gateway", format!("{}/metrics", url("admin-gateway"))),
        (
            "broadcaster",
            format!("{}/metrics", url("broadcaster-metrics")),
        ),
    ];
    let mut exported: BTreeMap<&str, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
    for (service, scrape) in scrape_urls {
        let (status, text) = get(&scrape).await.unwrap();
        assert_eq!(status, 200, "{scrape}");
        ic_testkit::promtool_check_metrics(&text).unwrap_or_else(|e| panic!("{service}: {e}"));
        exported.insert(service, series(&text));
    }

    let queries = dashboard_queries();
    assert!(queries.len() >= 40, "{} queries", queries.len());
    let mut failures = Vec::new();
    for (file, title, expr) in &queries {
        let service = file.trim_end_matches(".json");
        let metrics = &exported[service];
        let mut labels_in_expr = BTreeSet::from(["le".to_owned()]);
        for (metric, matchers) in selectors(expr) {
            match metrics.get(&metric) {
                None => failures.push(format!("{file} / {title}: {service} exports no {metric}")),
                Some(labels) => {
                    labels_in_expr.extend(labels.iter().cloned());
                    for label in matchers.keys().filter(|l| *l != "job") {
                        if !labels.contains(label) {
                            failures.push(format!(
                                "{file} / {title}: {metric} has no label {label} (it has {labels:?})"
                            ));
                        }
                    }
                }
            }
        }
        for label in grouping(expr) {
            if !labels_in_expr.contains(&label) {
                failures.push(format!(
                    "{file} / {title}: grouped by {label}, which none of its metrics has"
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn the_query_parser_finds_selectors_labels_and_groupings() {
    let expr = r#"histogram_quantile(0.95, sum by (le, route) (rate(x_bucket{job="a",status=~"5.."}[$__rate_interval]))) / sum(y_total{job="a"})"#;
    let found = selectors(expr);
    assert_eq!(found.len(), 2);
    assert_eq!(found[0].0, "x_bucket");
    assert_eq!(found[0].1["status"], "5..");
    assert_eq!(found[1].0, "y_total");
    assert_eq!(grouping(expr), ["le", "route"]);
    let text = "# TYPE http_server_requests_total counter\nhttp_server_requests_total{method=\"GET\",route=\"/a/{id},b\",status=\"200\"} 1\n# TYPE empty_total counter\n";
    let parsed = series(text);
    assert_eq!(
        parsed["http_server_requests_total"],
        BTreeSet::from(["method".into(), "route".into(), "status".into()])
    );
    assert!(parsed["empty_total"].is_empty());
}
