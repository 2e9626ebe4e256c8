//! Crash safety with the real binary, killed with SIGKILL: during an upload (no row
//! stuck in `processing`, the cut-off bytes reported and cleaned by the lifecycle
//! endpoints) and during processing (the job finishes after the restart).

mod common;

use std::{
    io::Write,
    net::TcpStream,
    path::Path,
    process::{Child, Command, Stdio},
    time::Duration,
};

use common::{migrate, multipart, pdf};
use ic_testkit::{NatsServer, process::Signal};
use serde_json::Value;
use sqlx::PgPool;

/// A content-api process.
struct Process {
    child: Child,
    port: u16,
}

impl Process {
    fn spawn(pool: &PgPool, nats: &NatsServer, blobs: &Path, clamd: &str) -> Self {
        let port = ic_testkit::free_port();
        let url = ic_testkit::database_url(pool.connect_options().get_database().unwrap());
        let child = Command::new(env!("CARGO_BIN_EXE_content-api"))
            .env_clear()
            .env("CONTENT_API_PORT", port.to_string())
            .env("HOST", "127.0.0.1")
            .env("DATABASE_URL", url)
            .env("NATS_URL", nats.url())
            .env("BLOB_STORE_URL", format!("file://{}", blobs.display()))
            .env("CLAMD_ADDRESS", clamd)
            .env("CONTENT_MAX_UPLOAD_BYTES", (200 * 1024 * 1024).to_string())
            .env("CONTENT_PROCESSING_ACK_WAIT_SECONDS", "3")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("the content-api binary starts");
        Self { child, port }
    }

    async fn ready(self) -> Self {
        let url = format!("http://127.0.0.1:{}/health/ready", self.port);
        ic_testkit::eventually(Duration::from_secs(30), "content-api ready", || async {
            let res = reqwest::get(&url).await.ok()?;
            (res.status() == 200).then_some(())
        })
        .await;
        self
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    async fn admin(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut request = reqwest::Client::new()
            .request(method, self.url(path))
            .header("x-user-id", "operator");
        if let Some(body) = body {
            request = request.json(&body);
        }
        request.send().await.unwrap().json().await.unwrap()
    }

    fn kill_9(&mut self) {
        ic_testkit::process::signal(self.child.id(), Signal::KILL).expect("SIGKILL");
        let _ = self.child.wait();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn files_under(dir: &Path) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let meta = entry.metadata().unwrap();
            if meta.is_dir() {
                out.extend(files_under(&entry.path()));
            } else {
                out.push((entry.path().display().to_string(), meta.len()));
            }
        }
    }
    out
}

#[sqlx::test(migrations = false)]
async fn killed_during_an_upload_it_leaves_no_row_and_reports_the_cut_off_bytes(pool: PgPool) {
    ic_telemetry::install_crypto_provider();
    migrate(&pool).await;
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let blobs = dir.path().join("blobs");
    let clamd = common::harness("IC_TEST_CLAMD_ADDRESS");
    let mut process = Process::spawn(&pool, &nats, &blobs, &clamd).ready().await;

    // A 64 MiB upload of which 20 MiB are sent, then the process is killed.
    let (boundary, body) = multipart(
        "big.pdf",
        Some("application/pdf"),
        &pdf(64 * 1024 * 1024, 40),
        &[],
    );
    let mut socket = TcpStream::connect(("127.0.0.1", process.port)).unwrap();
    write!(
        socket,
        "POST /admin/api/v1/content/upload HTTP/1.1\r\nHost: x\r\nX-User-ID: editor\r\n\
         Content-Type: multipart/form-data; boundary={boundary}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .unwrap();
    socket.write_all(&body[..20 * 1024 * 1024]).unwrap();
    let staging = blobs.join("staging");
    ic_testkit::eventually(
        Duration::from_secs(20),
        "bytes written to staging",
        || async {
            files_under(&staging)
                .iter()
                .any(|(_, len)| *len > 0)
                .then_some(())
        },
    )
    .await;
    process.kill_9();
    drop(socket);

    let process = Process::spawn(&pool, &nats, &blobs, &clamd).ready().await;
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM content.content")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(rows, 0, "no row, so none stuck in processing");
    let orphaned = process
        .admin(
            reqwest::Method::GET,
            "/admin/api/v1/content/lifecycle/orphaned?older_than_days=0",
            None,
        )
        .await;
    assert_eq!(orphaned["total_count"], 1, "{orphaned}");
    assert_eq!(orphaned["orphaned"][0]["kind"], "partial_upload");
    assert!(orphaned["total_bytes"].as_u64().unwrap() > 0);
    let cleaned = process
        .admin(
            reqwest::Method::POST,
            "/admin/api/v1/content/lifecycle/cleanup",
            Some(serde_json::json!({"older_than_days": 0, "dry_run": false})),
        )
        .await;
    assert_eq!(cleaned["files_deleted"], 1, "{cleaned}");
    assert!(files_under(&blobs).is_empty(), "{:?}", files_under(&blobs));
}

#[sqlx::test(migrations = false)]
async fn killed_during_processing_the_job_is_finished_after_the_restart(pool: PgPool) {
    ic_telemetry::install_crypto_provider();
    migrate(&pool).await;
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let blobs = dir.path().join("blobs");
    // A scanner that accepts connections and never answers: the job hangs mid-scan.
    let hanging = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hanging_address = hanging.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = hanging.accept().await {
            held.push(socket);
        }
    });
    let mut process = Process::spawn(&pool, &nats, &blobs, &hanging_address)
        .ready()
        .await;
    let bytes = pdf(200_000, 41);
    let (boundary, body) = multipart("p.pdf", None, &bytes, &[("access_level", "public")]);
    let accepted: Value = reqwest::Client::new()
        .post(process.url("/admin/api/v1/content/upload"))
        .header("x-user-id", "editor")
        .header(
            "content-type",
            format!("multipart/form-data; boundary={boundary}"),
        )
        .body(body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = accepted["content_id"]
        .as_str()
        .expect("202 with an id")
        .to_owned();
    let status_path = format!("/admin/api/v1/content/{id}/status");
    ic_testkit::eventually(Duration::from_secs(20), "an attempt under way", || async {
        let status = process
            .admin(reqwest::Method::GET, &status_path, None)
            .await;
        (status["processing_attempts"] == 1).then_some(())
    })
    .await;
    process.kill_9();

    let process = Process::spawn(
        &pool,
        &nats,
        &blobs,
        &common::harness("IC_TEST_CLAMD_ADDRESS"),
    )
    .ready()
    .await;
    let status = ic_testkit::eventually(Duration::from_secs(30), "the job finished", || async {
        let status = process
            .admin(reqwest::Method::GET, &status_path, None)
            .await;
        (status["upload_status"] == "available").then_some(status)
    })
    .await;
    assert_eq!(status["processing_attempts"], 2, "{status}");
    assert_eq!(status["processing_details"]["virus_scan_status"], "clean");
    let downloaded = reqwest::get(process.url(&format!("/api/v1/content/{id}/download")))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert!(downloaded == bytes);
}
