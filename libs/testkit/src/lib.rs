//! Test support shared by the integration tests of every crate.
//!
//! The suite runs against real servers started by `cargo xtask test` (their URLs in
//! `DATABASE_URL` and `NATS_URL`). Tests that must stop and restart a dependency start
//! a private instance with [`NatsServer`] or [`PostgresServer`]; both find their binaries
//! the way the harness does (`PATH`, `/usr/sbin`, `/usr/lib/postgresql/*/bin`).

pub mod app;
pub mod browser;
pub mod dapr;
pub mod fake_loki;
pub mod jwt;
pub mod multipart;
pub mod nats;
pub mod process;
pub mod schemathesis;
pub mod storage;

use std::{
    future::Future,
    net::{Ipv4Addr, TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

/// A free loopback TCP port (bound then released).
pub fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// Polls `check` until it yields `Some`, or panics with `what` after `timeout`.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn port_open(port: u16) -> bool {
    TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_ok()
}

fn wait_port(port: u16, open: bool, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while port_open(port) != open {
        assert!(
            Instant::now() < deadline,
            "{what} did not {} port {port}",
            if open { "open" } else { "close" }
        );
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// The URL of database `name` on the harness's PostgreSQL (`DATABASE_URL` with its
/// database replaced): for binaries a test starts against its own database.
pub fn database_url(name: &str) -> String {
    #[allow(clippy::disallowed_methods)] // tests read the harness's URL
    let base = std::env::var("DATABASE_URL").expect("DATABASE_URL is set by `cargo xtask test`");
    let (prefix, _) = base
        .rsplit_once('/')
        .expect("DATABASE_URL names a database");
    format!("{prefix}/{name}")
}

/// Finds a server binary on `PATH` or in the usual Debian places.
pub fn find_binary(name: &str) -> PathBuf {
    let mut candidates: Vec<PathBuf> = vec![
        PathBuf::from("/usr/sbin").join(name),
        PathBuf::from("/usr/bin").join(name),
    ];
    if let Ok(entries) = std::fs::read_dir("/usr/lib/postgresql") {
        let mut versions: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .map(|e| e.path().join("bin").join(name))
            .collect();
        versions.sort();
        versions.reverse();
        candidates.splice(0..0, versions);
    }
    #[allow(clippy::disallowed_methods)] // test support locates binaries like a shell
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            candidates.push(dir.join(name));
        }
    }
    candidates
        .into_iter()
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!("{name} not found; run the suite with `cargo xtask test`, which installs it")
        })
}

/// Where a server keeps its data: a temporary directory removed on drop, or a kept one.
#[derive(Debug)]
enum DataDir {
    Temp(tempfile::TempDir),
    Kept(PathBuf),
}

impl DataDir {
    fn temp() -> Self {
        Self::Temp(tempfile::tempdir().expect("temp dir"))
    }

    fn path(&self) -> &Path {
        match self {
            Self::Temp(t) => t.path(),
            Self::Kept(p) => p,
        }
    }
}

fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

/// A nats-server with JetStream on a loopback port, with its own store.
#[derive(Debug)]
pub struct NatsServer {
    port: u16,
    dir: DataDir,
    child: Option<Child>,
}

impl NatsServer {
    /// Starts a private one on a free port and waits until it accepts connections.
    pub fn start() -> Self {
        let mut server = Self {
            port: free_port(),
            dir: DataDir::temp(),
            child: None,
        };
        server.run();
        server
    }

    /// Starts one keeping its store in `dir` (created if needed), on `port`.
    pub fn start_at(dir: &Path, port: u16) -> Self {
        std::fs::create_dir_all(dir).expect("create nats dir");
        let mut server = Self {
            port,
            dir: DataDir::Kept(dir.to_owned()),
            child: None,
        };
        server.run();
        server
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    fn run(&mut self) {
        let log = self.dir.path().join("nats.log");
        let child = Command::new(find_binary("nats-server"))
            .args([
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-js",
                "-sd",
            ])
            .arg(self.dir.path().join("jetstream"))
            .arg("-l")
            .arg(&log)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn nats-server");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while !port_open(self.port) {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                panic!("nats-server exited with {status}:\n{}", log_tail(&log));
            }
            assert!(
                Instant::now() < deadline,
                "nats-server did not open port {}:\n{}",
                self.port,
                log_tail(&log)
            );
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// The server's process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// `nats://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Kills the server (as a crash would).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        wait_port(self.port, false, "nats-server");
    }

    /// Starts it again on the same port with the same store.
    pub fn restart(&mut self) {
        self.stop();
        self.run();
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A private redis-server on a free port, no persistence.
#[derive(Debug)]
pub struct RedisServer {
    port: u16,
    child: Option<Child>,
}

impl RedisServer {
    /// Starts one and waits until it accepts connections.
    pub fn start() -> Self {
        let mut server = Self {
            port: free_port(),
            child: None,
        };
        server.run();
        server
    }

    fn run(&mut self) {
        let child = Command::new(find_binary("redis-server"))
            .args([
                "--bind",
                "127.0.0.1",
                "--port",
                &self.port.to_string(),
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn redis-server");
        self.child = Some(child);
        wait_port(self.port, true, "redis-server");
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kills it.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        wait_port(self.port, false, "redis-server");
    }

    /// Starts it again on the same port (empty).
    pub fn restart(&mut self) {
        self.stop();
        self.run();
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// Runs a Postgres tool, as the `postgres` user when we are root (Postgres refuses root).
fn pg_command(tool: &str) -> Command {
    let binary = find_binary(tool);
    if is_root() {
        let mut cmd = Command::new("runuser");
        cmd.args(["-u", "postgres", "--"]).arg(binary);
        cmd
    } else {
        Command::new(binary)
    }
}

/// A PostgreSQL cluster on a loopback port (trust auth, user `postgres`).
#[derive(Debug)]
pub struct PostgresServer {
    port: u16,
    dir: DataDir,
}

impl PostgresServer {
    /// A private cluster on a free port: initdb + start; waits until it accepts
    /// connections.
    pub fn start() -> Self {
        Self::init_and_run(DataDir::temp(), free_port())
    }

    /// A cluster kept in `dir` (initialised on first use), on `port`.
    pub fn start_at(dir: &Path, port: u16) -> Self {
        std::fs::create_dir_all(dir).expect("create postgres dir");
        Self::init_and_run(DataDir::Kept(dir.to_owned()), port)
    }

    fn init_and_run(dir: DataDir, port: u16) -> Self {
        if is_root() {
            let status = Command::new("chown")
                .arg("-R")
                .arg("postgres")
                .arg(dir.path())
                .status();
            assert!(status.is_ok_and(|s| s.success()), "chown to postgres");
        }
        let data = dir.path().join("data");
        if !data.join("PG_VERSION").exists() {
            let out = pg_command("initdb")
                .args([
                    "-U",
                    "postgres",
                    "--auth=trust",
                    "-E",
                    "UTF8",
                    "--locale=C.UTF-8",
                    "--no-sync",
                    "-D",
                ])
                .arg(&data)
                .output()
                .expect("run initdb");
            assert!(
                out.status.success(),
                "initdb failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let server = Self { port, dir };
        server.run();
        server
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn run(&self) {
        let log = self.dir.path().join("postgres.log");
        let out = pg_command("pg_ctl")
            .arg("-D")
            .arg(self.data())
            .arg("-l")
            .arg(&log)
            .arg("-o")
            .arg(format!(
                "-p {} -c listen_addresses=127.0.0.1 -k {} -c fsync=off -c max_connections=300",
                self.port,
                self.dir.path().display()
            ))
            .args(["-w", "start"])
            .output()
            .expect("run pg_ctl start");
        assert!(
            out.status.success(),
            "pg_ctl start failed: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            log_tail(&log)
        );
        wait_port(self.port, true, "postgres");
    }

    /// `postgres://postgres@127.0.0.1:<port>/<database>`.
    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// Stops the server immediately.
    pub fn stop(&self) {
        let _ = pg_command("pg_ctl")
            .arg("-D")
            .arg(self.data())
            .args(["-m", "immediate", "-w", "stop"])
            .output();
        wait_port(self.port, false, "postgres");
    }

    /// Starts it again on the same port with the same data.
    pub fn start_again(&self) {
        self.run();
    }

    /// The cluster's directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for PostgresServer {
    fn drop(&mut self) {
        let _ = pg_command("pg_ctl")
            .arg("-D")
            .arg(self.data())
            .args(["-m", "immediate", "-w", "stop"])
            .output();
    }
}

/// Runs `promtool check metrics` (Debian's `prometheus` package, which the harness
/// installs) over a `/metrics` answer in the classic text format: `Err` with promtool's
/// findings when it has any.
pub fn promtool_check_metrics(text: &str) -> Result<(), String> {
    use std::io::Write;
    let mut child = Command::new(find_binary("promtool"))
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian package prometheus) runs");
    child
        .stdin
        .take()
        .expect("piped")
        .write_all(text.as_bytes())
        .expect("promtool reads its input");
    let out = child.wait_with_output().expect("promtool ends");
    let findings = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.success() && findings.trim().is_empty() {
        Ok(())
    } else {
        Err(format!(
            "promtool check metrics ({}):\n{findings}",
            out.status
        ))
    }
}

/// Runs a service `binary` with only `name=value` in its environment and checks the
/// spec's answer to a malformed variable: one line on stderr naming it, exit code 2.
pub fn assert_config_error(binary: &str, name: &str, value: &str) {
    let output = Command::new(binary)
        .env_clear()
        .env(name, value)
        .output()
        .expect("the service binary runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{name}={value}: {stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "{name}: {stderr}");
    assert!(stderr.contains(name), "{name}: {stderr}");
}

/// Runs `binary healthcheck` with `env` (and nothing else of this process's
/// environment): its exit code and stderr.
pub fn run_healthcheck(binary: &str, env: &[(&str, String)]) -> (Option<i32>, String) {
    let output = Command::new(binary)
        .arg("healthcheck")
        .env_clear()
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .expect("the service binary runs");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// `binary healthcheck` exits 0 against a service answering on `port` (set through
/// `port_variable`, with `env` for the rest of its configuration) and 1, naming
/// `/health`, against a port where nothing listens.
pub fn assert_healthcheck(
    binary: &str,
    port_variable: &'static str,
    port: u16,
    env: &[(&'static str, String)],
) {
    let with_port = |port: u16| {
        let mut vars = env.to_vec();
        vars.push((port_variable, port.to_string()));
        vars.push(("HOST", "127.0.0.1".to_owned()));
        vars
    };
    let (code, stderr) = run_healthcheck(binary, &with_port(port));
    assert_eq!(code, Some(0), "healthy: {stderr}");
    let (code, stderr) = run_healthcheck(binary, &with_port(free_port()));
    assert_eq!(code, Some(1), "nothing listens: {stderr}");
    assert!(stderr.contains("/health"), "{stderr}");
}

/// A loopback HTTP server answering 200 to anything and counting what reached it (in the
/// current tokio runtime): for what must never be contacted. Its URL and the count.
pub async fn counting_server() -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    let hits: std::sync::Arc<std::sync::atomic::AtomicUsize> = std::sync::Arc::default();
    let counted = hits.clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a loopback port");
    let url = format!("http://{}", listener.local_addr().expect("its address"));
    let router = axum::Router::new().fallback(move || {
        counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        async { axum::http::StatusCode::OK }
    });
    tokio::spawn(async move { axum::serve(listener, router).await });
    (url, hits)
}
