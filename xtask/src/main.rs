//! `cargo xtask <verb>`: the developer entry points (`shared/spec/operations.md`).
//!
//! - `up`: the platform running natively with demo data (Ctrl-C stops it).
//! - `down [--wipe]`: stops what a killed `up` left running; `--wipe` deletes `.dev/`.
//! - `test [ARGS]`: fmt, clippy `-D warnings`, then the whole suite against real
//!   servers started here on free ports.
//! - `bench`: the benchmarks, printed as ratios against a peer measured in the same run.
//! - `images`: every service's container image (and migrate's), built here with podman
//!   from the release binaries and a runtime base of this machine's Debian files.
//! - `fuzz [ITERATIONS] [SEED]`: the engine's property tests (arbitrary bytes and read
//!   splits, `libs/h1/src/properties.rs`) run long, in release (`test` runs 300 cases).
//! - `migrate ARGS`: the `migrate` tool against the `up` database.
//! - `token [--roles a,b] [--user id] [--ttl s]`: a token of the development issuer, for
//!   admin-gateway (port 8001) under `up`.
//! - `deploy gate|wait|smoke|audit`: the deploy workflow's decisions (`deploy.rs`).
#![allow(clippy::disallowed_methods)] // xtask is a binary: it reads and sets child environments

mod bench;
mod deploy;
mod deps;
mod dev_issuer;
mod images;
mod up;

use std::{
    path::{Path, PathBuf},
    process::{Command, ExitCode},
};

use anyhow::{Context, bail};

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_owned()
}

/// The cargo target directory (honours `CARGO_TARGET_DIR`).
fn target_dir() -> PathBuf {
    std::env::var("CARGO_TARGET_DIR")
        .map_or_else(|_| workspace_root().join("target"), PathBuf::from)
}

fn cargo() -> Command {
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.current_dir(workspace_root());
    cmd
}

fn run(mut cmd: Command, what: &str) -> anyhow::Result<()> {
    let status = cmd.status().with_context(|| format!("running {what}"))?;
    if !status.success() {
        bail!("{what} failed ({status})");
    }
    Ok(())
}

fn main() -> ExitCode {
    ic_telemetry::install_crypto_provider();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (verb, rest) = args
        .split_first()
        .map_or(("help", &[][..]), |(v, r)| (v.as_str(), r));
    let result = match verb {
        "up" => up::up(rest.iter().any(|a| a == "--no-build")),
        "down" => up::down(rest.iter().any(|a| a == "--wipe")),
        "test" => test(rest),
        "bench" => bench::bench(rest),
        "images" => images::images(),
        "fuzz" => fuzz(rest),
        "migrate" => up::migrate(rest),
        "token" => dev_issuer::print_token(rest, &workspace_root().join(".dev")),
        "deploy" => deploy::deploy(rest),
        _ => {
            eprintln!(
                "usage: cargo xtask <up [--no-build] | down [--wipe] | test [test args] | bench | images | fuzz [iterations] [seed] | migrate <args> | token [--roles a,b] [--user id] [--ttl s] | deploy <gate|wait|smoke|audit> ...>\n\
                 see README.md"
            );
            return ExitCode::from(if verb == "help" || verb == "--help" {
                0
            } else {
                2
            });
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("xtask {verb}: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// The engine's property tests, long: `ITERATIONS` cases each (5,000,000 by default) from
/// `SEED` (fresh unless given; each property prints its own to replay a failure).
fn fuzz(args: &[String]) -> anyhow::Result<()> {
    let iterations = args.first().map_or("5000000", String::as_str);
    let mut cmd = cargo();
    cmd.args([
        "test",
        "--release",
        "--locked",
        "--package",
        "ic-h1",
        "--lib",
        "properties",
        "--",
        "--nocapture",
    ])
    .env("IC_FUZZ_ITERATIONS", iterations);
    if let Some(seed) = args.get(1) {
        cmd.env("IC_FUZZ_SEED", seed);
    }
    eprintln!("==> the engine's property tests, {iterations} cases each (release)");
    run(cmd, "the property tests")
}

/// fmt, clippy, then every test against harness-started servers.
fn test(extra: &[String]) -> anyhow::Result<()> {
    eprintln!("==> cargo fmt --check");
    let mut fmt = cargo();
    fmt.args(["fmt", "--all", "--", "--check"]);
    run(fmt, "cargo fmt --check (run `cargo fmt --all`)")?;

    eprintln!("==> cargo clippy -D warnings");
    let mut clippy = cargo();
    clippy.args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--locked",
        "--",
        "-D",
        "warnings",
    ]);
    run(clippy, "cargo clippy")?;

    deps::ensure_packages(&deps::TEST_PACKAGES)?;
    let python = deps::python_venv(
        &target_dir().join("ic-test-venv"),
        &deps::TEST_PYTHON_PACKAGES,
    )?;
    // checkov pins versions (packaging) that schemathesis' pytest refuses: a venv of its own.
    let checkov = deps::python_venv(&target_dir().join("ic-checkov-venv"), &["checkov"])?
        .with_file_name("checkov");
    let node = deps::npm_packages(&target_dir().join("ic-test-node"), &deps::TEST_NPM_PACKAGES)?;
    eprintln!("==> starting PostgreSQL, nats-server, clamd and Azurite on free ports");
    let postgres = ic_testkit::PostgresServer::start();
    let nats = ic_testkit::NatsServer::start();
    let clamd = ic_testkit::storage::ClamdServer::start();
    let azurite =
        ic_testkit::storage::AzuriteServer::start(&ic_testkit::storage::azurite_bin(&node));
    eprintln!(
        "    postgres {}  nats {}  clamd {}  azurite {}",
        postgres.url("postgres"),
        nats.url(),
        clamd.address(),
        azurite.endpoint()
    );

    eprintln!("==> building the container images (podman)");
    let images = images::build()?;

    let nextest = cargo()
        .args(["nextest", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    let mut tests = cargo();
    if nextest {
        tests.args([
            "nextest",
            "run",
            "--workspace",
            "--locked",
            "--no-fail-fast",
        ]);
    } else {
        tests.args(["test", "--workspace", "--locked", "--no-fail-fast"]);
    }
    tests
        .args(extra)
        .env("DATABASE_URL", postgres.url("postgres"))
        .env("NATS_URL", nats.url())
        .env("IC_TEST_PYTHON", &python)
        .env("IC_TEST_CHECKOV", &checkov)
        .env("IC_TEST_CLAMD_ADDRESS", clamd.address())
        .env("IC_TEST_AZURITE_ENDPOINT", azurite.endpoint())
        .env("IC_TEST_IMAGES", images.join(","))
        .env(
            "IC_TEST_OIDC_PROVIDER",
            node.join("node_modules/oidc-provider/lib/index.js"),
        )
        .env("RUST_BACKTRACE", "1");
    eprintln!(
        "==> running the test suite ({})",
        if nextest { "nextest" } else { "cargo test" }
    );
    run(tests, "the test suite")
}
