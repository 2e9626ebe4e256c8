//! `cargo xtask up` / `down` / `migrate`: the platform running natively, data under
//! `.dev/` (gitignored), on ports that do not collide with system services.

use std::{
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use ic_testkit::{
    NatsServer, PostgresServer,
    process::{self, Signal},
};
use serde_json::{Value, json};

use crate::{cargo, deps, dev_issuer, run, workspace_root};

/// Postgres port of the local stack (not 5432, so a system Postgres can coexist; below
/// the kernel's ephemeral range, 32768-60999, so a connection's local port or a test's
/// free port can never hold it while `up` starts, as 55432 once did during the suite).
pub const PG_PORT: u16 = 15432;
/// NATS port of the local stack (not 4222; below the ephemeral range too).
pub const NATS_PORT: u16 = 14222;
/// services-api port (the spec's).
pub const SERVICES_API_PORT: u16 = 8080;
/// content-api port (the spec's).
pub const CONTENT_API_PORT: u16 = 8081;
/// public-gateway port (the spec's).
pub const PUBLIC_GATEWAY_PORT: u16 = 8000;
/// admin-gateway port (the spec's).
pub const ADMIN_GATEWAY_PORT: u16 = 8001;
/// broadcaster port (the spec's) and its metrics port.
pub const BROADCASTER_PORT: u16 = 8002;
/// broadcaster metrics port (the spec's).
pub const BROADCASTER_METRICS_PORT: u16 = 7777;
/// The demo webhook receiver's port.
pub const RECEIVER_PORT: u16 = 8090;
/// The demo subscription's secret (development only).
pub const DEMO_WEBHOOK_SECRET: &str = "whsec_ZGVtby1zZWNyZXQtZm9yLWxvY2FsLWRldmVsb3BtZW50";
/// The database of the platform.
pub const DATABASE: &str = "international_center";

fn dev_dir() -> PathBuf {
    workspace_root().join(".dev")
}

fn database_url() -> String {
    format!("postgres://postgres@127.0.0.1:{PG_PORT}/{DATABASE}")
}

async fn create_database() -> anyhow::Result<()> {
    use sqlx::Connection;
    let mut conn =
        sqlx::PgConnection::connect(&format!("postgres://postgres@127.0.0.1:{PG_PORT}/postgres"))
            .await?;
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
            .bind(DATABASE)
            .fetch_one(&mut conn)
            .await?;
    if !exists {
        sqlx::raw_sql("CREATE DATABASE international_center")
            .execute(&mut conn)
            .await?;
    }
    let mut conn = sqlx::PgConnection::connect(&database_url()).await?;
    let applied = ic_migrations::up_all(&mut conn).await?;
    for a in applied {
        eprintln!("    applied {}/{:04}_{}", a.schema, a.version, a.name);
    }
    Ok(())
}

struct Service {
    name: &'static str,
    child: Child,
    log: PathBuf,
}

impl Drop for Service {
    fn drop(&mut self) {
        // SIGTERM first so the service drains and flushes its outbox.
        process::stop(&mut self.child, Signal::TERM, Duration::from_secs(10));
    }
}

fn log_tail(path: &PathBuf) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(25)..].join("\n")
}

fn spawn_service(name: &'static str, env: &[(&str, String)]) -> anyhow::Result<Service> {
    spawn(name, &PathBuf::from(name), env, false)
}

/// Starts `binary` (relative to the debug target directory); its output goes to
/// `.dev/logs/<name>.log`, or to this terminal when `to_terminal`.
fn spawn(
    name: &'static str,
    binary: &std::path::Path,
    env: &[(&str, String)],
    to_terminal: bool,
) -> anyhow::Result<Service> {
    let logs = dev_dir().join("logs");
    std::fs::create_dir_all(&logs)?;
    let log = logs.join(format!("{name}.log"));
    let file = std::fs::File::create(&log)?;
    let target = crate::target_dir().join("debug").join(binary);
    let mut cmd = Command::new(&target);
    cmd.envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .env("ENVIRONMENT", "development")
        .env("LOG_FORMAT", "pretty");
    if to_terminal {
        cmd.stdout(Stdio::inherit()).stderr(file);
    } else {
        cmd.stdout(file.try_clone()?).stderr(file);
    }
    let child = cmd.spawn().with_context(|| format!("starting {name}"))?;
    process::write_pid_file(&dev_dir().join(format!("{name}.pid")), child.id(), &target)?;
    Ok(Service { name, child, log })
}

async fn wait_ready(service: &mut Service, url: &str) -> anyhow::Result<()> {
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(res) = client.get(url).send().await
            && res.status().is_success()
        {
            return Ok(());
        }
        if let Ok(Some(status)) = service.child.try_wait() {
            bail!(
                "{} exited ({status}); its log:\n{}",
                service.name,
                log_tail(&service.log)
            );
        }
        if Instant::now() > deadline {
            bail!(
                "{} not ready after 60 s; its log:\n{}",
                service.name,
                log_tail(&service.log)
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The binaries `up` runs.
fn build_services() -> anyhow::Result<()> {
    eprintln!("==> building the services");
    let mut build = cargo();
    build.args([
        "build",
        "--package",
        "services-api",
        "--package",
        "content-api",
        "--package",
        "public-gateway",
        "--package",
        "broadcaster",
        "--package",
        "admin-gateway",
        "--bins",
        "--example",
        "webhook_receiver",
    ]);
    run(build, "cargo build")?;
    Ok(())
}

/// Runs the platform until Ctrl-C; `build` false skips building the binaries (the
/// suite's run of `up`, whose binaries are those of the build under test).
pub fn up(build: bool) -> anyhow::Result<()> {
    deps::ensure_packages(&deps::UP_PACKAGES)?;
    if build {
        build_services()?;
    }

    let dev = dev_dir();
    std::fs::create_dir_all(&dev)?;
    eprintln!(
        "==> starting PostgreSQL on {PG_PORT} and nats-server on {NATS_PORT} (data in .dev/)"
    );
    let _postgres = PostgresServer::start_at(&dev.join("postgres"), PG_PORT);
    let nats = NatsServer::start_at(&dev.join("nats"), NATS_PORT);
    if let Some(pid) = nats.pid() {
        process::write_pid_file(
            &dev.join("nats-server.pid"),
            pid,
            &ic_testkit::find_binary("nats-server"),
        )?;
    }

    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        eprintln!("==> applying migrations");
        create_database().await?;
        let nats_url = format!("nats://127.0.0.1:{NATS_PORT}");
        let mut services_api = spawn_service(
            "services-api",
            &[
                ("SERVICES_API_PORT", SERVICES_API_PORT.to_string()),
                ("DATABASE_URL", database_url()),
                ("NATS_URL", nats_url.clone()),
            ],
        )?;
        let base = format!("http://127.0.0.1:{SERVICES_API_PORT}");
        wait_ready(&mut services_api, &format!("{base}/health/ready")).await?;
        // Files: content-api with the file store under .dev/, scanned by clamd when it
        // is installed (Debian's clamav-daemon; skipped scans otherwise).
        let clamd = deps::installed("clamd").then(ic_testkit::storage::ClamdServer::start);
        let blobs = dev.join("content-api").join("blobs");
        std::fs::create_dir_all(&blobs)?;
        let mut content_env = vec![
            ("CONTENT_API_PORT", CONTENT_API_PORT.to_string()),
            ("DATABASE_URL", database_url()),
            ("NATS_URL", nats_url.clone()),
            (
                "BLOB_STORE_URL",
                format!("file://{}", std::fs::canonicalize(&blobs)?.display()),
            ),
        ];
        match &clamd {
            Some(clamd) => content_env.push(("CLAMD_ADDRESS", clamd.address())),
            None => eprintln!(
                "    clamd is not installed: uploads are recorded as `skipped` scans (apt-get install clamav-daemon to scan)"
            ),
        }
        let mut content_api = spawn_service("content-api", &content_env)?;
        let content = format!("http://127.0.0.1:{CONTENT_API_PORT}");
        wait_ready(&mut content_api, &format!("{content}/health/ready")).await?;
        let mut public_gateway = spawn_service(
            "public-gateway",
            &[
                ("PUBLIC_GATEWAY_PORT", PUBLIC_GATEWAY_PORT.to_string()),
                ("SERVICES_API_URL", base.clone()),
            ],
        )?;
        let gateway = format!("http://127.0.0.1:{PUBLIC_GATEWAY_PORT}");
        wait_ready(&mut public_gateway, &format!("{gateway}/health")).await?;
        // Staff: admin-gateway, with the development issuer standing in for Authentik.
        let issuer = dev_issuer::load_or_create(&dev_dir().join("issuer"))?;
        let _issuer_keys = dev_issuer::serve(&issuer).await?;
        let mut admin_gateway = spawn_service(
            "admin-gateway",
            &[
                ("ADMIN_GATEWAY_PORT", ADMIN_GATEWAY_PORT.to_string()),
                ("SERVICES_API_URL", base.clone()),
                ("NATS_URL", nats_url.clone()),
                ("AUTHENTIK_ISSUER_URL", dev_issuer::issuer_url()),
                (
                    "AUTHENTIK_ADMIN_AUDIENCE",
                    dev_issuer::DEV_AUDIENCE.to_owned(),
                ),
            ],
        )?;
        let admin = format!("http://127.0.0.1:{ADMIN_GATEWAY_PORT}");
        wait_ready(&mut admin_gateway, &format!("{admin}/health")).await?;
        // The demo subscription: every event, signed, to a receiver printing here.
        let receiver = spawn(
            "webhook-receiver",
            &PathBuf::from("examples").join("webhook_receiver"),
            &[
                ("WEBHOOK_RECEIVER_PORT", RECEIVER_PORT.to_string()),
                ("WEBHOOK_SECRET", DEMO_WEBHOOK_SECRET.to_owned()),
            ],
            true,
        )?;
        let mut broadcaster = spawn_service(
            "broadcaster",
            &[
                ("BROADCASTER_PORT", BROADCASTER_PORT.to_string()),
                (
                    "BROADCASTER_METRICS_PORT",
                    BROADCASTER_METRICS_PORT.to_string(),
                ),
                ("NATS_URL", nats_url.clone()),
                (
                    "WEBHOOK_URL",
                    format!("http://127.0.0.1:{RECEIVER_PORT}/webhooks"),
                ),
                ("WEBHOOK_SECRET", DEMO_WEBHOOK_SECRET.to_owned()),
                // The demo receiver is on loopback, which the SSRF guard refuses.
                ("BROADCASTER_ALLOW_PRIVATE_TARGETS", "true".to_owned()),
            ],
        )?;
        let broadcaster_url = format!("http://127.0.0.1:{BROADCASTER_PORT}");
        wait_ready(&mut broadcaster, &format!("{broadcaster_url}/health")).await?;
        let marker = dev_dir().join("demo-data-loaded");
        if !marker.exists() {
            eprintln!("==> loading demo data (through admin-gateway, as the user demo-loader)");
            let token = dev_issuer::token(&issuer, "demo-loader", &["admin"], 600);
            load_demo_data(&admin, &token).await?;
            load_demo_files(&admin, &token).await?;
            std::fs::write(&marker, "")?;
        }
        print_banner(&base, &content, &gateway, &admin, &broadcaster_url);
        tokio::signal::ctrl_c().await?;
        eprintln!("\n==> stopping");
        drop(broadcaster);
        drop(receiver);
        drop(admin_gateway);
        drop(public_gateway);
        drop(content_api);
        drop(clamd);
        drop(services_api);
        Ok::<(), anyhow::Error>(())
    })?;
    Ok(())
}

fn print_banner(base: &str, content: &str, gateway: &str, admin: &str, broadcaster: &str) {
    let issuer = dev_issuer::issuer_url();
    println!(
        "\nThe platform is running (Ctrl-C stops it; data stays in .dev/):\n\
         \n  public-gateway {gateway}   (anonymous entry: the public API, /services alias)\
         \n  admin-gateway  {admin}   (staff entry: bearer tokens, Rego policy, per-user limits, audit; {admin}/openapi.json)\
         \n  dev issuer     {issuer}   (stands in for Authentik; `cargo xtask token` prints a token)\
         \n  services-api   {base}   (health {base}/health/ready, metrics {base}/metrics)\
         \n  content-api    {content}   (files in .dev/content-api/blobs; health {content}/health/ready)\
         \n  PostgreSQL     postgres://postgres@127.0.0.1:{PG_PORT}/{DATABASE}\
         \n  broadcaster    {broadcaster}   (subscriptions {broadcaster}/subscriptions, dead letters {broadcaster}/dead-letters, metrics :{BROADCASTER_METRICS_PORT}/metrics)\
         \n  webhooks       http://127.0.0.1:{RECEIVER_PORT}/webhooks   (a demo receiver: each delivery is printed below, signature checked)\
         \n  NATS           nats://127.0.0.1:{NATS_PORT}   (JetStream streams IC_EVENTS, IC_AUDIT, IC_DELIVERIES, IC_DEAD_LETTERS)\
         \n\nTry:\
         \n  curl -s {gateway}/api/v1/services?limit=3\
         \n  curl -s '{gateway}/services/search?q=clinics'\
         \n  curl -s {gateway}/api/v1/content   (then …/content/<id>/download)\
         \n  TOKEN=$(cargo xtask token --roles services-manager --user editor-1)\
         \n  curl -s -X POST {admin}/admin/api/v1/services -H \"Authorization: Bearer $TOKEN\" -H 'content-type: application/json' \\\
         \n       -d \"{{\\\"title\\\":\\\"Travel vaccinations $(date +%s)\\\",\\\"description\\\":\\\"Vaccines and advice before you travel.\\\",\\\"delivery_mode\\\":\\\"outpatient_service\\\"}}\"\
         \n  (repeatable: the title, and so the slug, carries the time; without a token, or with --roles content-manager, admin-gateway answers 401 / 403)\n"
    );
}

async fn post(
    client: &reqwest::Client,
    url: &str,
    token: &str,
    body: Value,
) -> anyhow::Result<Value> {
    let res = client
        .post(url)
        .bearer_auth(token)
        .json(&body)
        .send()
        .await?;
    let status = res.status();
    let value: Value = res.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        bail!("POST {url} answered {status}: {value}");
    }
    Ok(value)
}

/// A few public files, uploaded as the admin UI would (multipart, through admin-gateway).
async fn load_demo_files(admin: &str, token: &str) -> anyhow::Result<()> {
    let client = reqwest::Client::new();
    let files: [(&str, &str, &[u8], &str); 2] = [
        (
            "visiting-hours.md",
            "text/markdown",
            b"# Visiting hours\n\nEvery day from 10:00 to 20:00. Children's ward: parents at any time.\n",
            "visiting,hours",
        ),
        (
            "patient-rights.txt",
            "text/plain",
            b"Every patient has the right to information, privacy and respect.\n",
            "rights",
        ),
    ];
    for (name, mime, bytes, tags) in files {
        let (boundary, body) = ic_testkit::multipart::form(
            name,
            Some(mime),
            bytes,
            &[("access_level", "public"), ("tags", tags)],
        );
        let res = client
            .post(format!("{admin}/admin/api/v1/content/upload"))
            .bearer_auth(token)
            .header(
                "content-type",
                ic_testkit::multipart::content_type(&boundary),
            )
            .body(body)
            .send()
            .await?;
        if res.status() != reqwest::StatusCode::ACCEPTED {
            anyhow::bail!(
                "uploading the demo file {name}: {} {}",
                res.status(),
                res.text().await.unwrap_or_default()
            );
        }
    }
    Ok(())
}

/// A handful of categories, ~20 services across the three delivery modes, two featured
/// categories; loaded through admin-gateway (`admin`, with `token`) so events and audit
/// records are produced.
async fn load_demo_data(base: &str, token: &str) -> anyhow::Result<()> {
    let client = reqwest::Client::new();
    let categories = [
        ("Primary Care", 1),
        ("Cardiology", 2),
        ("Pediatrics", 3),
        ("Diagnostics & Imaging", 4),
        ("Rehabilitation", 5),
    ];
    let mut ids = Vec::new();
    for (name, order) in categories {
        let c = post(
            &client,
            &format!("{base}/admin/api/v1/services/categories"),
            token,
            json!({"name": name, "order_number": order}),
        )
        .await?;
        ids.push(c["category_id"].as_str().unwrap_or_default().to_owned());
    }
    let services: [(&str, &str, usize, &str); 20] = [
        (
            "General Consultation",
            "A consultation with a general practitioner for any health concern.",
            0,
            "outpatient_service",
        ),
        (
            "Annual Health Check",
            "A full yearly check-up with blood tests and a clinic review.",
            0,
            "outpatient_service",
        ),
        (
            "Home Doctor Visit",
            "A doctor visits you at home when you cannot travel to the clinic.",
            0,
            "mobile_service",
        ),
        (
            "Vaccinations",
            "Routine and travel vaccinations for adults.",
            0,
            "outpatient_service",
        ),
        (
            "Cardiac Consultation",
            "Assessment of heart health by a cardiologist.",
            1,
            "outpatient_service",
        ),
        (
            "Echocardiography",
            "Ultrasound imaging of the heart.",
            1,
            "outpatient_service",
        ),
        (
            "Holter Monitoring",
            "24-hour heart rhythm recording, fitted at home.",
            1,
            "mobile_service",
        ),
        (
            "Cardiac Surgery Stay",
            "Inpatient care before and after heart surgery.",
            1,
            "inpatient_service",
        ),
        (
            "Well-Child Visits",
            "Growth and development checks for children.",
            2,
            "outpatient_service",
        ),
        (
            "Pediatric Home Care",
            "Nursing care for children at home.",
            2,
            "mobile_service",
        ),
        (
            "Neonatal Intensive Care",
            "Specialised inpatient care for newborns.",
            2,
            "inpatient_service",
        ),
        (
            "Childhood Vaccinations",
            "The national vaccination schedule for children.",
            2,
            "outpatient_service",
        ),
        (
            "X-Ray Imaging",
            "Digital radiography with same-day results.",
            3,
            "outpatient_service",
        ),
        (
            "MRI Scan",
            "Magnetic resonance imaging for detailed diagnostics.",
            3,
            "outpatient_service",
        ),
        (
            "Mobile Ultrasound",
            "Ultrasound examinations at the patient's bedside or home.",
            3,
            "mobile_service",
        ),
        (
            "Laboratory Tests",
            "Blood and urine tests at our laboratory clinics.",
            3,
            "outpatient_service",
        ),
        (
            "Physiotherapy",
            "Exercise-based therapy to restore movement.",
            4,
            "outpatient_service",
        ),
        (
            "Home Rehabilitation",
            "Therapists help you recover at home after a hospital stay.",
            4,
            "mobile_service",
        ),
        (
            "Stroke Rehabilitation Ward",
            "Inpatient rehabilitation after a stroke.",
            4,
            "inpatient_service",
        ),
        (
            "Occupational Therapy",
            "Support to regain everyday skills after illness or injury.",
            4,
            "outpatient_service",
        ),
    ];
    for (i, (title, description, cat, mode)) in services.iter().enumerate() {
        let s = post(
            &client,
            &format!("{base}/admin/api/v1/services"),
            token,
            json!({"title": title, "description": description, "category_id": ids[*cat], "delivery_mode": mode, "order_number": i}),
        )
        .await?;
        // Leave one draft so the publishing workflow has something to show.
        if i != 19 {
            let id = s["service_id"].as_str().unwrap_or_default();
            post(
                &client,
                &format!("{base}/admin/api/v1/services/{id}/publish"),
                token,
                Value::Null,
            )
            .await?;
        }
    }
    for (pos, cat) in [(1, 0), (2, 1)] {
        post(
            &client,
            &format!("{base}/admin/api/v1/services/featured-categories"),
            token,
            json!({"category_id": ids[cat], "feature_position": pos}),
        )
        .await?;
    }
    Ok(())
}

/// Stops what a killed `up` left behind; `--wipe` deletes `.dev/`.
pub fn down(wipe: bool) -> anyhow::Result<()> {
    let dev = dev_dir();
    for entry in std::fs::read_dir(&dev)
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
    {
        let path = entry.path();
        if path.extension().is_some_and(|e| e == "pid") {
            // Only a process still running the program `up` started is signalled: after
            // a reboot or a clean stop, the pid may be anyone's.
            match process::signal_pid_file(&path, Signal::TERM) {
                Ok(true) => eprintln!("stopped {}", path.display()),
                Ok(false) => {}
                Err(err) => eprintln!("could not stop {}: {err}", path.display()),
            }
            let _ = std::fs::remove_file(&path);
        }
    }
    let pg_data = dev.join("postgres").join("data");
    if pg_data.join("postmaster.pid").exists() {
        let pg_ctl = ic_testkit::find_binary("pg_ctl");
        let _ = Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(pg_ctl)
            .arg("-D")
            .arg(&pg_data)
            .args(["-m", "fast", "stop"])
            .status();
    }
    if wipe && dev.exists() {
        std::fs::remove_dir_all(&dev).context("removing .dev/")?;
        eprintln!("removed .dev/");
    }
    Ok(())
}

/// `cargo xtask migrate ARGS`: the migrate tool against the local stack's database.
pub fn migrate(args: &[String]) -> anyhow::Result<()> {
    let mut cmd = cargo();
    cmd.args([
        "run",
        "--quiet",
        "--package",
        "ic-migrations",
        "--bin",
        "migrate",
        "--",
    ])
    .args(args)
    .env(
        "DATABASE_URL",
        std::env::var("DATABASE_URL").unwrap_or_else(|_| database_url()),
    );
    run(cmd, "migrate")
}
