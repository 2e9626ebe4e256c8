//! `cargo xtask bench gateway`: public-gateway against nginx and haproxy proxying the
//! same trivial upstream (an nginx answering a fixed JSON body). Each proxy runs pinned
//! to CPU 1; wrk and the upstream share CPU 0, so every proxy gets the same CPU budget.
//! Latency is measured with one connection (what the proxy adds to a request), throughput
//! with 64. Every proxy runs for the whole benchmark and they are measured in turns, three
//! rounds, each figure the median of its rounds: a slow moment of the machine then lands
//! on every proxy instead of on whichever happened to run then. A bare proxy built like
//! the gateway (the engine's server and client) adding the same headers ("proxy floor")
//! shows what the pipeline itself costs, and nginx configured to do the gateway's work
//! ("nginx as a gateway": rate limit, CORS, security headers, allowlist, request id)
//! what that work costs nginx.
//! Then nginx, the floor and the gateway once more under callgrind: user-space
//! instructions per request, repeatable to about 1 % where req/s on this shared VM swings
//! by ±20 %, so small changes show. Also the gateway's peak resident memory while it
//! streams a 200 MiB response.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use ic_testkit::{find_binary, free_port};

use super::wrk::{Figures, wrk_on};
use crate::{cargo, deps, run};

/// Seconds of each throughput and latency measurement.
const SECONDS: u64 = 5;
/// Rounds of turns; each figure is the median over them.
pub(super) const ROUNDS: usize = 3;
pub(super) const PROXY_CPU: &str = "1";
pub(super) const CLIENT_CPU: &str = "0";

pub(super) struct Process(pub(super) Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub(super) fn pinned(cpu: &str, binary: &Path) -> Command {
    let mut cmd = Command::new("taskset");
    cmd.args(["-c", cpu])
        .arg(binary)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    cmd
}

pub(super) fn wait_port(port: u16) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            bail!("nothing listens on {port}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// Writes an nginx configuration under `dir/name`; the arguments that run it.
fn nginx_args(dir: &Path, name: &str, server: &str) -> anyhow::Result<[PathBuf; 4]> {
    let prefix = dir.join(name);
    std::fs::create_dir_all(prefix.join("logs"))?;
    let conf = prefix.join("nginx.conf");
    std::fs::write(
        &conf,
        format!(
            "worker_processes 1;\ndaemon off;\nmaster_process off;\nerror_log {p}/logs/error.log;\npid {p}/nginx.pid;\n\
             events {{ worker_connections 4096; }}\nhttp {{\n access_log off;\n keepalive_requests 100000;\n{server}\n}}\n",
            p = prefix.display()
        ),
    )?;
    Ok(["-p".into(), prefix, "-c".into(), conf])
}

pub(super) fn nginx(dir: &Path, name: &str, cpu: &str, server: &str) -> anyhow::Result<Process> {
    let child = pinned(cpu, &find_binary("nginx"))
        .args(nginx_args(dir, name, server)?)
        .spawn()
        .context("starting nginx")?;
    Ok(Process(child))
}

/// The nginx proxy's `server` block, listening on `port`.
fn nginx_proxy(port: u16, upstream: u16) -> String {
    format!(
        " upstream u {{ server 127.0.0.1:{upstream}; keepalive 128; }}\n\
         server {{ listen 127.0.0.1:{port}; location / {{ proxy_pass http://u; proxy_http_version 1.1; proxy_set_header Connection \"\"; }} }}"
    )
}

/// nginx configured to do public-gateway's work, as far as nginx can: a per-IP
/// `limit_req` zone (the gateway's bench limit, 1,000,000 a minute), the CORS origin
/// `map` and headers, the same security headers, the route allowlist as locations (404
/// elsewhere, reads only), a request id sent up and echoed, and the `X-Forwarded-*`
/// headers. What it cannot do without modules: W3C trace context, RateLimit headers, path
/// normalisation beyond its own, the error envelope.
fn nginx_gateway(port: u16, upstream: u16) -> String {
    const ROUTES: &str = r"^/api/v1/(services(/[^/]+|/slug/[^/]+|/featured|/categories|/categories/[^/]+/services|/search)?|content(/[^/]+(/download|/preview)?)?)$";
    let security = [
        ("X-Content-Type-Options", "nosniff"),
        ("X-Frame-Options", "DENY"),
        (
            "Content-Security-Policy",
            "\"default-src 'self'; frame-ancestors 'none'\"",
        ),
        ("Strict-Transport-Security", "max-age=31536000"),
        ("Referrer-Policy", "strict-origin-when-cross-origin"),
        (
            "Permissions-Policy",
            "\"accelerometer=(), camera=(), geolocation=(), gyroscope=(), magnetometer=(), microphone=(), payment=(), usb=()\"",
        ),
        ("Cross-Origin-Opener-Policy", "same-origin"),
        ("Cross-Origin-Resource-Policy", "cross-origin"),
        ("X-Permitted-Cross-Domain-Policies", "none"),
        ("Access-Control-Allow-Origin", "$cors_origin"),
        ("Vary", "Origin"),
        (
            "Access-Control-Expose-Headers",
            "\"ETag, X-Correlation-ID, X-Request-ID, RateLimit-Limit, RateLimit-Remaining, RateLimit-Reset, Retry-After\"",
        ),
        ("X-Request-ID", "$request_id"),
        ("X-Correlation-ID", "$request_id"),
    ]
    .iter()
    .map(|(name, value)| format!("  add_header {name} {value} always;\n"))
    .collect::<String>();
    format!(
        " server_tokens off;\n\
         limit_req_zone $binary_remote_addr zone=perip:10m rate=16666r/s;\n\
         map $http_origin $cors_origin {{ default \"\"; \"http://localhost:3000\" $http_origin; \"http://127.0.0.1:3000\" $http_origin; }}\n\
         upstream u {{ server 127.0.0.1:{upstream}; keepalive 128; }}\n\
         server {{\n listen 127.0.0.1:{port};\n\
         location ~ \"{ROUTES}\" {{\n\
          limit_except GET HEAD OPTIONS {{ deny all; }}\n\
          limit_req zone=perip burst=1000000 nodelay;\n\
          proxy_pass http://u;\n proxy_http_version 1.1;\n proxy_set_header Connection \"\";\n\
          proxy_set_header X-Request-ID $request_id;\n proxy_set_header X-Correlation-ID $request_id;\n\
          proxy_set_header X-Forwarded-For $remote_addr;\n proxy_set_header X-Forwarded-Proto $scheme;\n proxy_set_header X-Forwarded-Host $host;\n\
          proxy_set_header X-User-ID anonymous;\n proxy_set_header X-User-Roles public;\n\
         {security} }}\n\
         location / {{ return 404; }}\n}}"
    )
}

/// Seconds of the run whose instructions are counted.
const COUNTED_SECONDS: u64 = 5;

/// `program` to be run under callgrind, its counts written to `out` (dumps: `out.1`, ...).
fn callgrind(out: &Path, program: &Path) -> Command {
    let mut cmd = Command::new(find_binary("valgrind"));
    cmd.arg("--tool=callgrind")
        .arg(format!("--callgrind-out-file={}", out.display()))
        .arg(program)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    cmd
}

/// The requests wrk completed against `url` in `seconds` with 64 connections.
fn wrk_requests(url: &str, seconds: u64) -> anyhow::Result<u64> {
    let out = Command::new(find_binary("wrk"))
        .args(["-t1", "-c64", &format!("-d{seconds}s"), url])
        .output()
        .context("running wrk")?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() || text.contains("Non-2xx") {
        bail!("wrk failed or saw errors:\n{text}");
    }
    text.lines()
        .find(|l| l.contains(" requests in "))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .filter(|n| *n > 0)
        .context("wrk completed no requests")
}

/// User-space instructions per request of a proxy started by `proxy` (under
/// [`callgrind`], writing to `out`) on `port`: counted over a 64-connection run after a
/// warm-up. Unlike req/s on a shared VM (which swings by ±20 % between runs), this is
/// repeatable to about 1 %, so small changes show.
fn instructions_per_request(mut proxy: Command, out: &Path, port: u16) -> anyhow::Result<f64> {
    let child = Process(proxy.spawn().context("starting a proxy under callgrind")?);
    let pid = child.0.id().to_string();
    wait_port(port)?;
    let url = format!("http://127.0.0.1:{port}/api/v1/services");
    wrk_requests(&url, 2)?;
    let control = |what: &str| -> anyhow::Result<()> {
        let status = Command::new(find_binary("callgrind_control"))
            .args([what, &pid])
            .stdout(Stdio::null())
            .status()
            .context("running callgrind_control")?;
        if !status.success() {
            bail!("callgrind_control {what} failed");
        }
        Ok(())
    };
    control("-z")?;
    let requests = wrk_requests(&url, COUNTED_SECONDS)?;
    control("-d")?;
    let dump = PathBuf::from(format!("{}.1", out.display()));
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let total = std::fs::read_to_string(&dump).ok().and_then(|text| {
            text.lines()
                .find(|l| l.starts_with("totals:") || l.starts_with("summary:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|n| n.parse::<f64>().ok())
        });
        if let Some(total) = total {
            return Ok(total / requests as f64);
        }
        if Instant::now() > deadline {
            bail!("callgrind wrote no counts to {}", dump.display());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn haproxy(dir: &Path, port: u16, upstream: u16) -> anyhow::Result<Process> {
    let conf = dir.join("haproxy.cfg");
    std::fs::write(
        &conf,
        format!(
            "global\n  nbthread 1\n  maxconn 8192\ndefaults\n  mode http\n  timeout connect 2s\n  timeout client 30s\n  timeout server 30s\n  http-reuse always\n\
             frontend f\n  bind 127.0.0.1:{port}\n  default_backend b\nbackend b\n  server u 127.0.0.1:{upstream}\n"
        ),
    )?;
    let child = pinned(PROXY_CPU, &find_binary("haproxy"))
        .arg("-f")
        .arg(&conf)
        .arg("-db")
        .spawn()
        .context("starting haproxy")?;
    Ok(Process(child))
}

/// Waits for every target and warms it, then measures them in turns, [`ROUNDS`] rounds
/// (a slow moment of the machine lands on every target, not on one).
pub(super) fn measure_in_rounds(targets: &mut [Target]) -> anyhow::Result<()> {
    for target in targets.iter() {
        wait_port(target.port)?;
        target.warm()?;
    }
    for round in 1..=ROUNDS {
        eprintln!("==> round {round} of {ROUNDS}");
        for target in targets.iter_mut() {
            target.measure()?;
            eprintln!(
                "    {}: {:.0} req/s",
                target.name,
                target.throughput.last().map_or(0.0, |f| f.rps)
            );
        }
    }
    Ok(())
}

/// One proxy under test and its figures of each round.
pub(super) struct Target {
    pub(super) name: &'static str,
    pub(super) port: u16,
    /// The path requested (`/api/v1/services` unless set).
    pub(super) path: String,
    /// Headers every request carries.
    headers: Vec<String>,
    latency: Vec<Figures>,
    throughput: Vec<Figures>,
}

impl Target {
    pub(super) fn new(name: &'static str, port: u16) -> Self {
        Self {
            name,
            port,
            path: "/api/v1/services".to_owned(),
            headers: Vec::new(),
            latency: Vec::new(),
            throughput: Vec::new(),
        }
    }

    /// Requests `path` instead.
    pub(super) fn with_path(mut self, path: &str) -> Self {
        path.clone_into(&mut self.path);
        self
    }

    /// Every request carries `header` (`Name: value`).
    pub(super) fn with_header(mut self, header: &str) -> Self {
        self.headers.push(header.to_owned());
        self
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}{}", self.port, self.path)
    }

    /// A short run before measuring (connections, caches, the allocator's pools).
    fn warm(&self) -> anyhow::Result<()> {
        wrk_on(Some(CLIENT_CPU), &self.url(), 2, 8, 1, &self.headers).map(drop)
    }

    /// One turn: latency with one connection, throughput with 64.
    fn measure(&mut self) -> anyhow::Result<()> {
        let url = self.url();
        self.latency.push(wrk_on(
            Some(CLIENT_CPU),
            &url,
            SECONDS,
            1,
            1,
            &self.headers,
        )?);
        self.throughput.push(wrk_on(
            Some(CLIENT_CPU),
            &url,
            SECONDS,
            64,
            1,
            &self.headers,
        )?);
        Ok(())
    }

    pub(super) fn rps(&self) -> f64 {
        median(self.throughput.iter().map(|f| f.rps))
    }

    pub(super) fn p50_ms(&self) -> f64 {
        median(self.latency.iter().map(|f| f.p50_ms))
    }

    pub(super) fn p99_ms(&self) -> f64 {
        median(self.latency.iter().map(|f| f.p99_ms))
    }
}

/// The median of `values` (NaN when there are none).
pub(super) fn median(values: impl Iterator<Item = f64>) -> f64 {
    let mut values: Vec<f64> = values.collect();
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
}

/// A kiB figure of `/proc/<pid>/status` (`field` such as `VmRSS:` or `VmHWM:`).
pub(super) fn status_kib(pid: u32, field: &str) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}

/// The peak resident memory of `pid`.
pub(super) fn peak_rss_kib(pid: u32) -> Option<u64> {
    status_kib(pid, "VmHWM:")
}

pub fn gateway() -> anyhow::Result<()> {
    deps::ensure_packages(&[
        ("wrk", "wrk"),
        ("nginx", "nginx"),
        ("haproxy", "haproxy"),
        ("valgrind", "valgrind"),
    ])?;
    eprintln!("==> building public-gateway (release)");
    let mut build = cargo();
    build.args([
        "build",
        "--release",
        "--package",
        "public-gateway",
        "--bin",
        "public-gateway",
        "--package",
        "ic-h1",
        "--example",
        "bare_proxy",
    ]);
    run(build, "cargo build --release")?;
    let dir: PathBuf =
        std::env::temp_dir().join(format!("ic-bench-gateway-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let big = dir.join("big.bin");
    let file = std::fs::File::create(&big)?;
    file.set_len(200 * 1024 * 1024)?;

    let upstream = free_port();
    let _upstream = nginx(
        &dir,
        "upstream",
        CLIENT_CPU,
        &format!(
            " server {{ listen 127.0.0.1:{upstream}; location / {{ default_type application/json; return 200 '{{\"services\":[]}}'; }}\n\
             location = /api/v1/services/big {{ alias {}; }} }}",
            big.display()
        ),
    )?;
    wait_port(upstream)?;

    let nginx_port = free_port();
    let _nginx = nginx(&dir, "proxy", PROXY_CPU, &nginx_proxy(nginx_port, upstream))?;
    let nginx_gateway_port = free_port();
    let _nginx_gateway = nginx(
        &dir,
        "gateway",
        PROXY_CPU,
        &nginx_gateway(nginx_gateway_port, upstream),
    )?;
    let haproxy_port = free_port();
    let _haproxy = haproxy(&dir, haproxy_port, upstream)?;
    let floor_port = free_port();
    let floor_binary = crate::target_dir()
        .join("release")
        .join("examples")
        .join("bare_proxy");
    let _floor = Process(
        pinned(PROXY_CPU, &floor_binary)
            .arg(floor_port.to_string())
            .arg(format!("http://127.0.0.1:{upstream}"))
            .spawn()
            .context("starting bare_proxy")?,
    );
    let gateway_binary = crate::target_dir().join("release").join("public-gateway");
    let gateway_env = |cmd: &mut Command, port: u16| {
        cmd.env("PUBLIC_GATEWAY_PORT", port.to_string())
            .env("SERVICES_API_URL", format!("http://127.0.0.1:{upstream}"))
            .env("PUBLIC_RATE_LIMIT_PER_MINUTE", "1000000")
            .env("RUST_LOG", "warn");
    };
    let gateway_port = free_port();
    let mut gateway = pinned(PROXY_CPU, &gateway_binary);
    gateway_env(&mut gateway, gateway_port);
    let gateway = Process(gateway.spawn().context("starting public-gateway")?);
    let mut targets = vec![
        Target::new("direct (no proxy)", upstream),
        Target::new("nginx", nginx_port),
        Target::new("nginx as a gateway", nginx_gateway_port),
        Target::new("haproxy", haproxy_port),
        Target::new("proxy floor", floor_port),
        Target::new("public-gateway", gateway_port),
    ];
    measure_in_rounds(&mut targets)?;
    eprintln!("==> user-space instructions per request, under callgrind");
    let port = free_port();
    let mut cmd = callgrind(&dir.join("callgrind.nginx"), &find_binary("nginx"));
    cmd.args(nginx_args(&dir, "counted", &nginx_proxy(port, upstream))?);
    let nginx_instructions = instructions_per_request(cmd, &dir.join("callgrind.nginx"), port)?;
    let port = free_port();
    let mut cmd = callgrind(&dir.join("callgrind.floor"), &floor_binary);
    cmd.arg(port.to_string())
        .arg(format!("http://127.0.0.1:{upstream}"));
    let floor_instructions = instructions_per_request(cmd, &dir.join("callgrind.floor"), port)?;
    let port = free_port();
    let mut cmd = callgrind(&dir.join("callgrind.gateway"), &gateway_binary);
    gateway_env(&mut cmd, port);
    let gateway_instructions = instructions_per_request(cmd, &dir.join("callgrind.gateway"), port)?;

    eprintln!("==> streaming 200 MiB through public-gateway");
    let out = Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{size_download}"])
        .arg(format!(
            "http://127.0.0.1:{gateway_port}/api/v1/services/big"
        ))
        .output()
        .context("running curl")?;
    let size = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    if size != (200 * 1024 * 1024).to_string() {
        bail!("the 200 MiB download through the gateway returned {size} bytes");
    }
    let peak = peak_rss_kib(gateway.0.id());
    let _ = std::fs::remove_dir_all(&dir);

    let direct = targets[0].p50_ms();
    let direct99 = targets[0].p99_ms();
    println!(
        "\ngateway (proxy pinned to 1 CPU; wrk and upstream on the other; latency with 1 connection, throughput with 64; medians of {ROUNDS} interleaved rounds)"
    );
    println!(
        "  {:<20} {:>10} {:>14} {:>14} {:>12} {:>12}",
        "", "req/s", "added p50 us", "added p99 us", "p50 ms", "p99 ms"
    );
    for target in &targets {
        println!(
            "  {:<20} {:>10.0} {:>14.0} {:>14.0} {:>12.3} {:>12.3}",
            target.name,
            target.rps(),
            (target.p50_ms() - direct) * 1000.0,
            (target.p99_ms() - direct99) * 1000.0,
            target.p50_ms(),
            target.p99_ms()
        );
    }
    let by = |n: &str| {
        targets
            .iter()
            .find(|t| t.name == n)
            .map_or(f64::NAN, Target::rps)
    };
    println!(
        "  public-gateway / nginx: {:.2}x   public-gateway / nginx as a gateway: {:.2}x   public-gateway / haproxy: {:.2}x   (target >= 1.0x nginx, added p50 <= 150 us)",
        by("public-gateway") / by("nginx"),
        by("public-gateway") / by("nginx as a gateway"),
        by("public-gateway") / by("haproxy")
    );
    println!(
        "  nginx as a gateway / nginx: {:.2}x   (what public-gateway's work costs nginx)",
        by("nginx as a gateway") / by("nginx")
    );
    // The same ratio within each round: how far the machine's swings move it.
    let rounds = |n: &str| {
        targets
            .iter()
            .find(|t| t.name == n)
            .map(|t| t.throughput.iter().map(|f| f.rps).collect::<Vec<_>>())
            .unwrap_or_default()
    };
    let by_round: Vec<String> = rounds("public-gateway")
        .iter()
        .zip(rounds("nginx"))
        .map(|(gateway, nginx)| format!("{:.2}x", gateway / nginx))
        .collect();
    println!(
        "  public-gateway / nginx within each round: {}",
        by_round.join(", ")
    );
    println!(
        "  proxy floor / nginx: {:.2}x   public-gateway / proxy floor: {:.2}x   (proxy floor: the engine's server and client, no pipeline, same headers; libs/h1/examples/bare_proxy.rs)",
        by("proxy floor") / by("nginx"),
        by("public-gateway") / by("proxy floor")
    );
    println!(
        "  user-space instructions per request (callgrind, 64 connections): nginx {nginx_instructions:.0}, proxy floor {floor_instructions:.0}, public-gateway {gateway_instructions:.0}   public-gateway / nginx: {:.2}x   public-gateway / proxy floor: {:.2}x   (repeatable to ~1 %, unlike req/s here)",
        gateway_instructions / nginx_instructions,
        gateway_instructions / floor_instructions
    );
    if let Some(kib) = peak {
        println!(
            "  public-gateway peak RSS after streaming 200 MiB: {:.1} MiB",
            kib as f64 / 1024.0
        );
    }
    Ok(())
}
