//! `cargo xtask bench services-list`: `GET /api/v1/services?limit=20` over 10,000 services (wrk, fixed
//! concurrency) against pgbench running the same SQL on the same database.

use std::{
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use ic_testkit::{NatsServer, PostgresServer, find_binary, free_port};

use super::wrk::{CONCURRENCY, Figures, wrk};
use crate::{cargo, deps, run};

/// Seconds each measurement runs.
const SECONDS: u64 = 10;
/// Services in the catalogue.
const SERVICES: i64 = 10_000;

/// The SQL services-api runs for the first page (`PUBLIC_PAGE_SQL` and
/// `PUBLIC_COUNT_SQL` with the filters unset), written for pgbench: one transaction is
/// both statements, as one request is.
const PGBENCH_SQL: &str = "SELECT s.service_id, s.title, s.description, s.slug, s.long_description_url, s.category_id, \
c.name AS category_name, c.slug AS category_slug, s.image_url, s.order_number, s.delivery_mode, \
s.publishing_status, s.created_on, s.created_by, s.modified_on, s.modified_by, s.is_deleted, \
s.deleted_on, s.deleted_by \
FROM services.services s JOIN services.service_categories c ON c.category_id = s.category_id \
WHERE s.publishing_status = 'published' AND NOT s.is_deleted AND NOT c.is_deleted \
AND (NULL::uuid IS NULL OR s.category_id = NULL::uuid) AND (NULL::text IS NULL OR s.delivery_mode = NULL::text) \
ORDER BY s.order_number, s.title, s.service_id LIMIT 20 OFFSET 0;
SELECT count(*) FROM services.services s JOIN services.service_categories c ON c.category_id = s.category_id \
WHERE s.publishing_status = 'published' AND NOT s.is_deleted AND NOT c.is_deleted \
AND (NULL::uuid IS NULL OR s.category_id = NULL::uuid) AND (NULL::text IS NULL OR s.delivery_mode = NULL::text);
";

/// `cargo xtask bench services-list`.
pub fn services_list() -> anyhow::Result<()> {
    deps::ensure_packages(&[
        ("initdb", "postgresql"),
        ("pgbench", "postgresql-contrib"),
        ("nats-server", "nats-server"),
        ("wrk", "wrk"),
    ])?;
    eprintln!("==> building services-api (release)");
    let mut build = cargo();
    build.args([
        "build",
        "--release",
        "--package",
        "services-api",
        "--package",
        "public-gateway",
    ]);
    run(build, "cargo build --release")?;

    let postgres = PostgresServer::start();
    let nats = NatsServer::start();
    let url = postgres.url("postgres");
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(seed(&url))?;

    let port = free_port();
    let binary = crate::target_dir().join("release").join("services-api");
    let mut api = Command::new(&binary)
        .env("SERVICES_API_PORT", port.to_string())
        .env("DATABASE_URL", &url)
        .env("DATABASE_MAX_CONNECTIONS", CONCURRENCY.to_string())
        .env("NATS_URL", nats.url())
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("starting {}", binary.display()))?;
    let ready = runtime.block_on(wait_ready(port));
    let result = ready.and_then(|()| {
        let target = format!("http://127.0.0.1:{port}/api/v1/services?limit=20");
        eprintln!("==> warm-up");
        wrk(&target, 2)?;
        eprintln!("==> wrk: GET /api/v1/services?limit=20, {CONCURRENCY} connections, {SECONDS} s");
        let api = wrk(&target, SECONDS)?;
        eprintln!("==> pgbench: the same SQL, {CONCURRENCY} clients, {SECONDS} s");
        let pg = pgbench(&url, SECONDS)?;
        eprintln!("==> wrk through public-gateway");
        let gateway_port = free_port();
        let mut gateway = Command::new(crate::target_dir().join("release").join("public-gateway"))
            .env("PUBLIC_GATEWAY_PORT", gateway_port.to_string())
            .env("SERVICES_API_URL", format!("http://127.0.0.1:{port}"))
            .env("PUBLIC_RATE_LIMIT_PER_MINUTE", "1000000")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting public-gateway")?;
        let through = tokio::runtime::Runtime::new()?
            .block_on(wait_ready(gateway_port))
            .and_then(|()| {
                let via = format!("http://127.0.0.1:{gateway_port}/api/v1/services?limit=20");
                wrk(&via, 2)?;
                wrk(&via, SECONDS)
            });
        let _ = gateway.kill();
        let _ = gateway.wait();
        Ok((api, pg, through?))
    });
    let _ = api.kill();
    let _ = api.wait();
    let (api, pg, through) = result?;
    println!(
        "\nservices-list ({SERVICES} services, {CONCURRENCY} concurrent, {SECONDS} s each, 2 cores shared by client and server)"
    );
    println!(
        "  {:<34} {:>10} {:>10} {:>10}",
        "", "req/s", "p50 ms", "p99 ms"
    );
    println!(
        "  {:<34} {:>10.0} {:>10.2} {:>10.2}",
        "services-api GET (wrk)", api.rps, api.p50_ms, api.p99_ms
    );
    println!(
        "  {:<34} {:>10.0} {:>10.2} {:>10.2}",
        "pgbench, same SQL", pg.rps, pg.p50_ms, pg.p99_ms
    );
    println!(
        "  {:<34} {:>10.0} {:>10.2} {:>10.2}",
        "through public-gateway (wrk)", through.rps, through.p50_ms, through.p99_ms
    );
    println!(
        "  ratio services-api / pgbench: {:.2}x (target >= 0.5x); through the gateway / direct: {:.2}x",
        api.rps / pg.rps,
        through.rps / api.rps
    );
    Ok(())
}

async fn seed(url: &str) -> anyhow::Result<()> {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(url).await?;
    ic_migrations::up_all(&mut conn).await?;
    sqlx::raw_sql(
        "INSERT INTO services.service_categories (category_id, name, slug, order_number, created_by)
         SELECT gen_random_uuid(), 'Category ' || i, 'category-' || i, i, 'bench' FROM generate_series(1, 20) i;
         INSERT INTO services.services (service_id, title, description, slug, category_id, order_number, delivery_mode,
                                        publishing_status, created_by)
         SELECT gen_random_uuid(), 'Service ' || i, 'Description of service ' || i || ' with some clinic words.',
                'service-' || i, (SELECT category_id FROM services.service_categories ORDER BY name OFFSET (i % 20) LIMIT 1),
                i % 100, (ARRAY['mobile_service','outpatient_service','inpatient_service'])[1 + i % 3],
                CASE WHEN i % 10 = 0 THEN 'draft' ELSE 'published' END, 'bench'
         FROM generate_series(1, 10000) i;
         ANALYZE;",
    )
    .execute(&mut conn)
    .await?;
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM services.services")
        .fetch_one(&mut conn)
        .await?;
    if n != SERVICES {
        bail!("seeded {n} services, expected {SERVICES}");
    }
    Ok(())
}

pub(super) async fn wait_ready(port: u16) -> anyhow::Result<()> {
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Ok(res) = client
            .get(format!("http://127.0.0.1:{port}/health/ready"))
            .send()
            .await
            && res.status().is_success()
        {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("the service on {port} did not become ready")
}

fn pgbench(url: &str, seconds: u64) -> anyhow::Result<Figures> {
    let dir = tempfile_dir()?;
    let script = dir.join("list.sql");
    std::fs::write(&script, PGBENCH_SQL)?;
    let out = Command::new(find_binary("pgbench"))
        .current_dir(&dir)
        .args([
            "-n",
            "-M",
            "prepared",
            "-c",
            &CONCURRENCY.to_string(),
            "-j",
            "2",
            "-T",
            &seconds.to_string(),
            "-l",
            "-f",
        ])
        .arg(&script)
        .arg(url)
        .output()
        .context("running pgbench")?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!(
            "pgbench failed: {}{}",
            text,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let rps = text
        .lines()
        .find(|l| l.starts_with("tps ="))
        .and_then(|l| l.split_whitespace().nth(2))
        .and_then(|v| v.parse().ok())
        .context("pgbench printed no tps")?;
    // Per-transaction log lines: client_id transaction_no time_us script_no epoch epoch_us
    let mut latencies: Vec<f64> = Vec::new();
    for entry in std::fs::read_dir(&dir)?.filter_map(Result::ok) {
        if entry
            .file_name()
            .to_string_lossy()
            .starts_with("pgbench_log")
        {
            for line in std::fs::read_to_string(entry.path())?.lines() {
                if let Some(us) = line
                    .split_whitespace()
                    .nth(2)
                    .and_then(|v| v.parse::<f64>().ok())
                {
                    latencies.push(us / 1000.0);
                }
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    if latencies.is_empty() {
        bail!("pgbench wrote no transaction log");
    }
    latencies.sort_by(f64::total_cmp);
    let pct = |p: f64| latencies[((latencies.len() - 1) as f64 * p) as usize];
    Ok(Figures {
        rps,
        p50_ms: pct(0.50),
        p99_ms: pct(0.99),
    })
}

fn tempfile_dir() -> anyhow::Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("ic-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
