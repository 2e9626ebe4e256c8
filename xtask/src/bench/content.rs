//! `cargo xtask bench content`: content-api's downloads against nginx serving the same
//! object files from disk (sendfile), and a streamed 1 GiB upload against `cp` of the
//! same bytes to the same disk, with content-api's resident memory growth.
//!
//! content-api and nginx each run pinned to CPU 1, wrk to CPU 0; they are measured in
//! turns, three rounds, each figure the median of its rounds. content-api's downloads are
//! the real thing: visibility query, access-log entry, headers, the object streamed from
//! the store.

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use ic_testkit::{NatsServer, PostgresServer, free_port};
use serde_json::Value;

use super::{
    gateway::{
        CLIENT_CPU, PROXY_CPU, Process, ROUNDS, median, nginx, peak_rss_kib, pinned, status_kib,
        wait_port,
    },
    services_list::wait_ready,
    wrk::{Figures, wrk_on},
};
use crate::{cargo, deps, run};

const MIB: usize = 1024 * 1024;
/// Seconds of each measurement.
const SECONDS: u64 = 5;

/// Random-looking bytes behind a PDF header (so the upload is accepted as a PDF).
fn pdf_like(len: usize, seed: u64) -> Vec<u8> {
    let mut out = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n".to_vec();
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

fn multipart_head(boundary: &str, name: &str) -> String {
    format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"access_level\"\r\n\r\npublic\r\n\
         --{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n\
         Content-Type: application/pdf\r\n\r\n"
    )
}

/// Uploads `body_file` (streamed) and waits until it is available; its storage path.
async fn upload(port: u16, name: &str, file: &Path) -> anyhow::Result<(String, Duration)> {
    let boundary = "ic-bench-boundary-8d2c";
    let head = multipart_head(boundary, name);
    let tail = format!("\r\n--{boundary}--\r\n");
    let len = std::fs::metadata(file)?.len() + (head.len() + tail.len()) as u64;
    let source = tokio::fs::File::open(file).await?;
    use futures::StreamExt as _;
    let stream = futures::stream::once(async move { Ok(bytes::Bytes::from(head)) })
        .chain(tokio_util::io::ReaderStream::with_capacity(source, MIB))
        .chain(futures::stream::once(async move {
            Ok(bytes::Bytes::from(tail))
        }));
    let client = reqwest::Client::new();
    let started = Instant::now();
    let res = client
        .post(format!(
            "http://127.0.0.1:{port}/admin/api/v1/content/upload"
        ))
        .header("x-user-id", "bench")
        .header(
            "content-type",
            format!("multipart/form-data; boundary={boundary}"),
        )
        .header("content-length", len)
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await?;
    let took = started.elapsed();
    let status = res.status();
    let body: Value = res.json().await?;
    if status != reqwest::StatusCode::ACCEPTED {
        bail!("upload of {name}: {status} {body}");
    }
    let id = body["content_id"]
        .as_str()
        .context("content_id")?
        .to_owned();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let record: Value = client
            .get(format!("http://127.0.0.1:{port}/admin/api/v1/content/{id}"))
            .header("x-user-id", "bench")
            .send()
            .await?
            .json()
            .await?;
        if record["upload_status"] == "available" {
            let path = record["storage_path"].as_str().context("storage_path")?;
            return Ok((format!("{id}|{path}"), took));
        }
        if Instant::now() > deadline {
            bail!("{name} did not become available: {record}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

struct Download {
    name: String,
    connections: usize,
    content_api: Vec<Figures>,
    nginx: Vec<Figures>,
}

pub fn content() -> anyhow::Result<()> {
    deps::ensure_packages(&[
        ("initdb", "postgresql"),
        ("nats-server", "nats-server"),
        ("wrk", "wrk"),
        ("nginx", "nginx"),
    ])?;
    eprintln!("==> building content-api (release)");
    let mut build = cargo();
    build.args([
        "build",
        "--release",
        "--package",
        "content-api",
        "--bin",
        "content-api",
    ]);
    run(build, "cargo build --release")?;

    let dir: PathBuf =
        std::env::temp_dir().join(format!("ic-bench-content-{}", std::process::id()));
    let blobs = dir.join("blobs");
    std::fs::create_dir_all(&blobs)?;
    let postgres = PostgresServer::start();
    let nats = NatsServer::start();
    let url = postgres.url("postgres");
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        use sqlx::Connection;
        let mut conn = sqlx::PgConnection::connect(&url).await?;
        ic_migrations::up_all(&mut conn).await?;
        Ok::<(), anyhow::Error>(())
    })?;

    let port = free_port();
    let binary = crate::target_dir().join("release").join("content-api");
    let mut api = pinned(PROXY_CPU, &binary);
    api.env("CONTENT_API_PORT", port.to_string())
        .env("DATABASE_URL", &url)
        .env("DATABASE_MAX_CONNECTIONS", "16")
        .env("NATS_URL", nats.url())
        .env("BLOB_STORE_URL", format!("file://{}", blobs.display()))
        .env("CONTENT_MAX_UPLOAD_BYTES", (2 * 1024 * MIB).to_string())
        .env("RUST_LOG", "warn");
    let api = Process(api.spawn().context("starting content-api")?);
    let pid = api.0.id();
    runtime.block_on(wait_ready(port))?;

    let mut files = Vec::new();
    for (name, size, seed) in [("one.pdf", MIB, 1), ("hundred.pdf", 100 * MIB, 2)] {
        let path = dir.join(name);
        std::fs::write(&path, pdf_like(size, seed))?;
        let (id_path, _) = runtime.block_on(upload(port, name, &path))?;
        let (id, storage) = id_path.split_once('|').context("id|path")?;
        files.push((name, size, id.to_owned(), blobs.join(storage)));
    }
    let nginx_port = free_port();
    let locations: String = files
        .iter()
        .map(|(name, _, _, object)| {
            format!(" location = /{name} {{ alias {}; }}", object.display())
        })
        .collect();
    let _nginx = nginx(
        &dir,
        "files",
        PROXY_CPU,
        &format!(
            " sendfile on; tcp_nopush on; default_type application/pdf;\n server {{ listen 127.0.0.1:{nginx_port};{locations} }}"
        ),
    )?;
    wait_port(nginx_port)?;

    let mut downloads: Vec<Download> = files
        .iter()
        .map(|(_, size, _, _)| Download {
            name: format!("{} MiB", size / MIB),
            connections: if *size > 10 * MIB { 4 } else { 16 },
            content_api: Vec::new(),
            nginx: Vec::new(),
        })
        .collect();
    for ((name, _, id, _), download) in files.iter().zip(&mut downloads) {
        let api_url = format!("http://127.0.0.1:{port}/api/v1/content/{id}/download");
        let nginx_url = format!("http://127.0.0.1:{nginx_port}/{name}");
        for url in [&api_url, &nginx_url] {
            wrk_on(Some(CLIENT_CPU), url, 2, download.connections, 1, &[])?;
        }
        for round in 1..=ROUNDS {
            eprintln!("==> {} downloads, round {round} of {ROUNDS}", download.name);
            download.content_api.push(wrk_on(
                Some(CLIENT_CPU),
                &api_url,
                SECONDS,
                download.connections,
                1,
                &[],
            )?);
            download.nginx.push(wrk_on(
                Some(CLIENT_CPU),
                &nginx_url,
                SECONDS,
                download.connections,
                1,
                &[],
            )?);
        }
    }

    eprintln!("==> uploading 1 GiB (streamed) and copying it with cp");
    let big = dir.join("big.pdf");
    {
        use std::io::Write as _;
        let block = pdf_like(MIB, 3);
        let mut out = std::io::BufWriter::new(std::fs::File::create(&big)?);
        for i in 0..1024u32 {
            let mut chunk = block.clone();
            if i > 0 {
                chunk[..4].copy_from_slice(&i.to_le_bytes());
            }
            out.write_all(&chunk)?;
        }
        out.flush()?;
    }
    // Reset the peak-RSS mark (VmHWM) so the upload's own peak is measured.
    let _ = std::fs::write(format!("/proc/{pid}/clear_refs"), "5");
    let rss_before = status_kib(pid, "VmRSS:").unwrap_or(0);
    let (_, upload_took) = runtime.block_on(upload(port, "big.pdf", &big))?;
    let peak = peak_rss_kib(pid).unwrap_or(0);
    let started = Instant::now();
    let status = Command::new("cp")
        .arg(&big)
        .arg(blobs.join("cp-copy.bin"))
        .status()?;
    let cp_took = started.elapsed();
    if !status.success() {
        bail!("cp failed");
    }
    drop(api);
    let _ = std::fs::remove_dir_all(&dir);

    println!(
        "\ncontent downloads (content-api and nginx each pinned to one core, wrk on the other; median of {ROUNDS} rounds of {SECONDS} s)"
    );
    println!(
        "  {:<10} {:>5} {:>14} {:>14} {:>12} {:>12} {:>8}",
        "file", "conn", "content-api/s", "nginx/s", "api MiB/s", "nginx MiB/s", "ratio"
    );
    for (download, (_, size, _, _)) in downloads.iter().zip(&files) {
        let api = median(download.content_api.iter().map(|f| f.rps));
        let ngx = median(download.nginx.iter().map(|f| f.rps));
        let mib = *size as f64 / MIB as f64;
        println!(
            "  {:<10} {:>5} {:>14.1} {:>14.1} {:>12.0} {:>12.0} {:>7.2}x",
            download.name,
            download.connections,
            api,
            ngx,
            api * mib,
            ngx * mib,
            api / ngx
        );
    }
    println!("  target: content-api >= 0.7x nginx");
    let gib = 1024.0;
    println!(
        "\n1 GiB upload: content-api {:.1} s ({:.0} MiB/s, hashed and stored), cp {:.1} s ({:.0} MiB/s) -> {:.2}x cp's time",
        upload_took.as_secs_f64(),
        gib / upload_took.as_secs_f64(),
        cp_took.as_secs_f64(),
        gib / cp_took.as_secs_f64(),
        upload_took.as_secs_f64() / cp_took.as_secs_f64()
    );
    println!(
        "  content-api resident memory: {:.1} MiB before, peak {:.1} MiB during -> growth {:.1} MiB (target <= 64 MiB)",
        rss_before as f64 / 1024.0,
        peak as f64 / 1024.0,
        peak.saturating_sub(rss_before) as f64 / 1024.0
    );
    drop(postgres);
    drop(nats);
    Ok(())
}
