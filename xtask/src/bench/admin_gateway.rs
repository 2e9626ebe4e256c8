//! `cargo xtask bench admin-gateway`: admin-gateway with a valid RS256 token and an
//! allowing policy against public-gateway on the same trivial upstream, in one run, as
//! the gateway bench measures (each gateway pinned to CPU 1, wrk and the upstream on CPU
//! 0; throughput with 64 connections, latency with one; interleaved rounds, medians).
//! The difference is the cost of authentication, authorization and the audit record.
//! Then, in-process (`admin-gateway/examples/auth_costs.rs`, release): a token's first
//! verification, a verified token's lookup, and one policy decision, in microseconds.

use std::{path::PathBuf, process::Command};

use anyhow::Context;
use ic_testkit::{
    NatsServer, free_port,
    jwt::{self, RsaIssuer, claims},
};

use super::gateway::{
    CLIENT_CPU, PROXY_CPU, Process, ROUNDS, Target, measure_in_rounds, nginx, pinned, wait_port,
};
use crate::{cargo, deps, run};

const ISSUER: &str = "https://auth.example.org/application/o/admin/";
const AUDIENCE: &str = "ic-admin";

pub fn admin_gateway() -> anyhow::Result<()> {
    deps::ensure_packages(&[
        ("wrk", "wrk"),
        ("nginx", "nginx"),
        ("nats-server", "nats-server"),
    ])?;
    eprintln!("==> building admin-gateway, public-gateway and auth_costs (release)");
    let mut build = cargo();
    build.args([
        "build",
        "--release",
        "--package",
        "public-gateway",
        "--bin",
        "public-gateway",
        "--package",
        "admin-gateway",
        "--bin",
        "admin-gateway",
        "--example",
        "auth_costs",
    ]);
    run(build, "cargo build --release")?;
    let release = crate::target_dir().join("release");
    let dir: PathBuf = std::env::temp_dir().join(format!("ic-bench-admin-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;

    let upstream = free_port();
    let _upstream = nginx(
        &dir,
        "upstream",
        CLIENT_CPU,
        &format!(
            " server {{ listen 127.0.0.1:{upstream}; location / {{ default_type application/json; return 200 '{{\"services\":[]}}'; }} }}"
        ),
    )?;
    wait_port(upstream)?;
    // Audit records go to a real JetStream, as in production.
    let nats = NatsServer::start();

    let issuer = RsaIssuer::generate("bench-1");
    let jwks = dir.join("jwks.json");
    std::fs::write(&jwks, jwt::jwks(&[issuer.jwk()]).to_string())?;
    let token = issuer.token(&claims(
        ISSUER,
        AUDIENCE,
        "bench-admin",
        &["admin"],
        24 * 3600,
    ));

    let public_port = free_port();
    let _public = Process(
        pinned(PROXY_CPU, &release.join("public-gateway"))
            .env("PUBLIC_GATEWAY_PORT", public_port.to_string())
            .env("SERVICES_API_URL", format!("http://127.0.0.1:{upstream}"))
            .env("PUBLIC_RATE_LIMIT_PER_MINUTE", "1000000")
            .env("RUST_LOG", "warn")
            .spawn()
            .context("starting public-gateway")?,
    );
    let admin_port = free_port();
    let _admin = Process(
        pinned(PROXY_CPU, &release.join("admin-gateway"))
            .env("ADMIN_GATEWAY_PORT", admin_port.to_string())
            .env("SERVICES_API_URL", format!("http://127.0.0.1:{upstream}"))
            .env("AUTHENTIK_ISSUER_URL", ISSUER)
            .env("AUTHENTIK_ADMIN_AUDIENCE", AUDIENCE)
            .env("AUTH_JWKS_FILE", &jwks)
            .env("ADMIN_RATE_LIMIT_PER_MINUTE", "1000000")
            .env("NATS_URL", nats.url())
            .env("RUST_LOG", "warn")
            .spawn()
            .context("starting admin-gateway")?,
    );
    let authorization = format!("Authorization: Bearer {token}");
    let mut targets = vec![
        Target::new("public-gateway", public_port),
        Target::new("admin-gateway", admin_port)
            .with_path("/admin/api/v1/services")
            .with_header(&authorization),
    ];
    measure_in_rounds(&mut targets)?;
    eprintln!("==> authentication and authorization in-process (examples/auth_costs.rs)");
    let costs = Command::new(release.join("examples").join("auth_costs"))
        .output()
        .context("running auth_costs")?;
    let costs = String::from_utf8_lossy(&costs.stdout).trim().to_owned();
    let _ = std::fs::remove_dir_all(&dir);

    let (public, admin) = (&targets[0], &targets[1]);
    println!(
        "\nadmin-gateway (gateways pinned to 1 CPU; wrk and upstream on the other; latency with 1 connection, throughput with 64; medians of {ROUNDS} interleaved rounds)"
    );
    println!(
        "  {:<28} {:>10} {:>12} {:>12}",
        "", "req/s", "p50 ms", "p99 ms"
    );
    for target in &targets {
        println!(
            "  {:<28} {:>10.0} {:>12.3} {:>12.3}",
            format!("{} {}", target.name, target.path),
            target.rps(),
            target.p50_ms(),
            target.p99_ms()
        );
    }
    println!(
        "  admin-gateway / public-gateway: {:.2}x req/s   added p50: {:.0} us   (target >= 0.8x, <= 50 us: authentication + authorization + audit record)",
        admin.rps() / public.rps(),
        (admin.p50_ms() - public.p50_ms()) * 1000.0
    );
    println!(
        "  in-process medians: {costs}   (a token's signature is checked once, then it is looked up, whole, until it expires)"
    );
    Ok(())
}
