//! The images `cargo xtask test` builds (`cargo xtask images`, names in `IC_TEST_IMAGES`)
//! run for real with podman: each small, non-root, without a shell, labelled, passing
//! hadolint; migrate's migrates an empty database; every service runs with a read-only
//! root filesystem and answers its own healthcheck; a request through the public-gateway
//! container reaches the services-api container.

mod common;

use std::{process::Command, time::Duration};

use common::text;
use serde_json::Value;
use sqlx::PgPool;

/// Largest image accepted (the 25 MB).
const MAX_IMAGE_BYTES: u64 = 25_000_000;

#[allow(clippy::disallowed_methods)] // tests read the harness's settings
fn harness(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is set by `cargo xtask test`"))
}

/// (binary, image) of every image built.
fn images() -> Vec<(String, String)> {
    harness("IC_TEST_IMAGES")
        .split(',')
        .map(|image| {
            let binary = image
                .rsplit('/')
                .next()
                .and_then(|b| b.split(':').next())
                .unwrap()
                .to_owned();
            (binary, image.to_owned())
        })
        .collect()
}

fn podman() -> Command {
    let mut cmd = Command::new("podman");
    cmd.args(["--runtime", "runc"]);
    cmd
}

/// `podman run` with this machine's limits, host networking and a read-only root.
fn run_args() -> [&'static str; 8] {
    [
        "--read-only",
        "--ulimit",
        "nofile=1024:1024",
        "--ulimit",
        "nproc=4096:4096",
        "--network",
        "host",
        "--rm",
    ]
}

#[test]
fn every_image_is_small_runs_as_1001_has_no_shell_and_is_labelled() {
    let all = images();
    assert_eq!(all.len(), 6, "five services and migrate: {all:?}");
    for (binary, image) in all {
        let out = podman()
            .args(["image", "inspect", &image])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", text(&out));
        let inspected: Value = serde_json::from_slice(&out.stdout).unwrap();
        let info = &inspected[0];
        let size = info["Size"].as_u64().unwrap();
        assert!(size <= MAX_IMAGE_BYTES, "{image}: {size} bytes");
        assert_eq!(info["Config"]["User"], "1001:1001", "{image}");
        for label in ["source", "revision", "version", "created", "title"] {
            let value = &info["Config"]["Labels"][format!("org.opencontainers.image.{label}")];
            assert!(
                value
                    .as_str()
                    .is_some_and(|v| !v.is_empty() && v != "unknown"),
                "{image}: label {label} = {value}"
            );
        }
        if binary != "migrate" {
            assert_eq!(
                info["Healthcheck"]["Test"],
                serde_json::json!(["CMD", format!("/usr/local/bin/{binary}"), "healthcheck"]),
                "{image}"
            );
        }
        let shell = podman()
            .arg("run")
            .args(run_args())
            .args(["--entrypoint", "/bin/sh", &image, "-c", "true"])
            .output()
            .unwrap();
        assert!(!shell.status.success(), "{image} has a shell");
    }
}

#[test]
fn every_containerfile_passes_hadolint() {
    let python = std::path::PathBuf::from(harness("IC_TEST_PYTHON"));
    let hadolint = python.parent().unwrap().join("hadolint");
    for dir in common::IMAGE_DIRS {
        let file = common::root().join(dir).join("Containerfile");
        let out = Command::new(&hadolint).arg(&file).output().unwrap();
        assert!(out.status.success(), "{}: {}", file.display(), text(&out));
    }
}

fn database_url(pool: &PgPool) -> String {
    ic_testkit::database_url(pool.connect_options().get_database().unwrap())
}

#[sqlx::test(migrations = false)]
async fn the_migrate_image_migrates_an_empty_database_and_backs_up_for_staging(pool: PgPool) {
    let (_, image) = images().into_iter().find(|(b, _)| b == "migrate").unwrap();
    let out = podman()
        .arg("run")
        .args(run_args())
        .args(["--env", &format!("DATABASE_URL={}", database_url(&pool))])
        .args([&image, "up", "--output", "json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let summary: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    assert_eq!(
        summary["postgresMigrationStatus"],
        "success",
        "{}",
        text(&out)
    );
    assert_eq!(summary["schemaValidationResult"], "compliant");
    assert_eq!(summary["auditTablesCheck"], 0);
    for schema in ["services", "content"] {
        let tables: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = $1",
        )
        .bind(schema)
        .fetch_one(&pool)
        .await
        .unwrap();
        assert!(tables > 0, "{schema} has no tables");
    }
    // Staging's careful approach in the image: a verified backup (the image's own
    // pg_dump and pg_restore), validation, and a summary the deploy gate passes.
    let out = podman()
        .arg("run")
        .args(run_args())
        .args(["--tmpfs", "/tmp"])
        .args(["--env", &format!("DATABASE_URL={}", database_url(&pool))])
        .args(["--env", "ENVIRONMENT=staging"])
        .args(["--env", "MIGRATION_BACKUP_DIR=/tmp/backups"])
        .args([&image, "up", "--output", "json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let summary: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    assert_eq!(summary["approach"], "careful", "{}", text(&out));
    assert_eq!(
        summary["migrationBackupStatus"],
        "verified",
        "{}",
        text(&out)
    );
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), &out.stdout).unwrap();
    let gate = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(["deploy", "gate"])
        .arg(file.path())
        .output()
        .unwrap();
    assert!(gate.status.success(), "{}", text(&gate));
}

/// A detached container, removed on drop.
struct Container(String);

impl Drop for Container {
    fn drop(&mut self) {
        let _ = podman()
            .args(["rm", "--force", "--time", "2", &self.0])
            .output();
    }
}

fn start(image: &str, env: &[(&str, String)]) -> Container {
    let mut cmd = podman();
    cmd.args(["run", "--detach"])
        .args(run_args())
        .args(["--tmpfs", "/tmp:rw,size=64m"]);
    for (name, value) in env {
        cmd.args(["--env", &format!("{name}={value}")]);
    }
    let out = cmd.arg(image).output().unwrap();
    assert!(out.status.success(), "{image}: {}", text(&out));
    Container(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// Waits until `<binary> healthcheck` run inside the container succeeds.
async fn healthy(container: &Container, binary: &str) {
    let id = container.0.clone();
    let binary = binary.to_owned();
    ic_testkit::eventually(
        Duration::from_secs(30),
        "the container's healthcheck",
        || {
            let id = id.clone();
            let binary = binary.clone();
            async move {
                let out = podman()
                    .args([
                        "exec",
                        &id,
                        &format!("/usr/local/bin/{binary}"),
                        "healthcheck",
                    ])
                    .output()
                    .ok()?;
                out.status.success().then_some(())
            }
        },
    )
    .await;
}

/// The user id the container's main process runs as.
fn process_uid(container: &Container) -> String {
    let out = podman()
        .args(["inspect", "--format", "{{.State.Pid}}", &container.0])
        .output()
        .unwrap();
    let pid = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap()
        .to_owned()
}

#[sqlx::test(migrations = false)]
async fn every_service_runs_read_only_as_1001_and_the_gateway_container_reaches_services_api(
    pool: PgPool,
) {
    ic_telemetry::install_crypto_provider();
    let mut conn = pool.acquire().await.unwrap();
    ic_migrations::up_all(&mut conn).await.unwrap();
    drop(conn);
    let database = database_url(&pool);
    let nats = harness("NATS_URL");
    let image = |binary: &str| {
        images()
            .into_iter()
            .find(|(b, _)| b == binary)
            .map(|(_, image)| image)
            .unwrap()
    };
    let services_port = ic_testkit::free_port();
    let gateway_port = ic_testkit::free_port();
    let closed = ic_testkit::free_port();
    let runs: Vec<(&str, Vec<(&str, String)>)> = vec![
        (
            "services-api",
            vec![
                ("SERVICES_API_PORT", services_port.to_string()),
                ("DATABASE_URL", database.clone()),
                ("NATS_URL", nats.clone()),
            ],
        ),
        (
            "content-api",
            vec![
                ("CONTENT_API_PORT", ic_testkit::free_port().to_string()),
                ("DATABASE_URL", database.clone()),
                ("NATS_URL", nats.clone()),
                ("BLOB_STORE_URL", "file:///tmp/blobs".to_owned()),
            ],
        ),
        (
            "public-gateway",
            vec![
                ("PUBLIC_GATEWAY_PORT", gateway_port.to_string()),
                (
                    "SERVICES_API_URL",
                    format!("http://localhost:{services_port}"),
                ),
            ],
        ),
        (
            "admin-gateway",
            vec![
                ("ADMIN_GATEWAY_PORT", ic_testkit::free_port().to_string()),
                (
                    "AUTHENTIK_ISSUER_URL",
                    format!("http://127.0.0.1:{closed}/application/o/admin/"),
                ),
                (
                    "AUTHENTIK_ADMIN_AUDIENCE",
                    "international-center-admin".to_owned(),
                ),
                ("NATS_URL", nats.clone()),
            ],
        ),
        (
            "broadcaster",
            vec![
                ("BROADCASTER_PORT", ic_testkit::free_port().to_string()),
                (
                    "BROADCASTER_METRICS_PORT",
                    ic_testkit::free_port().to_string(),
                ),
                ("NATS_URL", nats.clone()),
            ],
        ),
    ];
    let mut containers = Vec::new();
    for (binary, env) in &runs {
        let container = start(&image(binary), env);
        healthy(&container, binary).await;
        assert_eq!(process_uid(&container), "1001", "{binary}");
        containers.push(container);
    }
    let body: Value = reqwest::get(format!(
        "http://127.0.0.1:{gateway_port}/api/v1/services?limit=1"
    ))
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert!(body["services"].is_array(), "{body}");
    assert!(
        body["pagination"]["total_items"].as_i64().unwrap() >= 0,
        "{body}"
    );
}

/// Reads one HTTP request (headers and a `Content-Length` body) and answers 200.
async fn read_request(socket: &mut tokio::net::TcpStream) -> Option<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = socket.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buf).to_string();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length = head
                .lines()
                .find_map(|l| {
                    let (name, value) = l.split_once(':')?;
                    name.eq_ignore_ascii_case("content-length")
                        .then(|| value.trim().parse::<usize>().ok())?
                })
                .unwrap_or(0);
            if body.len() >= length {
                let _ = socket
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                    .await;
                return Some(text);
            }
        }
    }
}

#[tokio::test]
async fn the_broadcaster_container_delivers_a_signed_webhook_to_the_host() {
    let nats = ic_testkit::NatsServer::start();
    let receiver = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let receiver_port = receiver.local_addr().unwrap().port();
    let (sender, mut received) = tokio::sync::mpsc::channel::<String>(8);
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = receiver.accept().await {
            if let Some(request) = read_request(&mut socket).await {
                let _ = sender.send(request).await;
            }
        }
    });
    let (_, image) = images()
        .into_iter()
        .find(|(b, _)| b == "broadcaster")
        .unwrap();
    let container = start(
        &image,
        &[
            ("BROADCASTER_PORT", ic_testkit::free_port().to_string()),
            (
                "BROADCASTER_METRICS_PORT",
                ic_testkit::free_port().to_string(),
            ),
            ("NATS_URL", nats.url()),
            (
                "WEBHOOK_URL",
                format!("http://127.0.0.1:{receiver_port}/hook"),
            ),
            (
                "WEBHOOK_SECRET",
                "whsec_ZGVtby1zZWNyZXQtZm9yLWxvY2FsLWRldmVsb3BtZW50".to_owned(),
            ),
            ("BROADCASTER_ALLOW_PRIVATE_TARGETS", "true".to_owned()),
        ],
    );
    healthy(&container, "broadcaster").await;
    let client = async_nats::connect(nats.url()).await.unwrap();
    let js = async_nats::jetstream::new(client);
    ic_events::streams::ensure(&js).await.unwrap();
    let event = ic_events::CloudEvent::new(
        "services-api",
        "services",
        "service",
        "created",
        "7d1c2b3a-0000-4000-8000-000000000001",
        serde_json::json!({"title": "From a container"}),
    );
    js.publish(
        "ic.services.service.created",
        serde_json::to_vec(&event).unwrap().into(),
    )
    .await
    .unwrap()
    .await
    .unwrap();
    let request = tokio::time::timeout(Duration::from_secs(30), received.recv())
        .await
        .expect("a delivery within 30 s")
        .unwrap();
    let lower = request.to_ascii_lowercase();
    assert!(request.starts_with("POST /hook "), "{request}");
    for header in [
        "webhook-id:",
        "webhook-timestamp:",
        "webhook-signature: v1,",
    ] {
        assert!(lower.contains(header), "{header} missing: {request}");
    }
    assert!(request.contains(&event.id.to_string()), "{request}");
}
