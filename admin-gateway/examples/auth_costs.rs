//! What authentication and authorization cost per request, measured in-process (release:
//! `cargo xtask bench admin-gateway` runs it): the median microseconds of a bearer token's
//! first verification (RS256 signature and claims), of a token already verified (the
//! cache), and of one policy decision by the compiled-in Rego policies (regorus).
//! Prints one line: `jwt_verify_us=… jwt_cached_us=… policy_us=…` (the policies of
//! `ADMIN_POLICIES_DIR` when set, to compare a policy with the default).

use std::{
    net::{IpAddr, Ipv4Addr},
    sync::Arc,
    time::{Duration, Instant},
};

use admin_gateway::{config::Authorization, startup::authorizer};
use ic_authz::{Input, Request, User};
use ic_gateway::{
    bearer::{Verifier, VerifierConfig},
    jwks::{KeySource, KeyStore},
};
use ic_testkit::jwt::{self, RsaIssuer, claims};
use jsonwebtoken::Algorithm;

const CLIENT: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const ISSUER: &str = "https://auth.example.org/application/o/admin/";

fn median(mut samples: Vec<f64>) -> f64 {
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    ic_telemetry::install_crypto_provider();
    let issuer = RsaIssuer::generate("k1");
    let dir = std::env::temp_dir().join(format!("ic-auth-costs-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("jwks.json");
    std::fs::write(&file, jwt::jwks(&[issuer.jwk()]).to_string()).unwrap();
    let keys = KeyStore::new(
        KeySource::File(file),
        vec![Algorithm::RS256],
        Duration::from_secs(1),
    );
    keys.refresh().await.unwrap();
    let mut config = VerifierConfig::new(ISSUER, "ic-admin");
    config.verify_per_minute = 1_000_000;
    let verifier = Verifier::new(config, Arc::new(keys));

    // First verifications: every token is new.
    let tokens: Vec<String> = (0..400)
        .map(|n| {
            let mut c = claims(ISSUER, "ic-admin", "ada", &["admin"], 3600);
            c["jti"] = serde_json::json!(n);
            issuer.token(&c)
        })
        .collect();
    let mut first = Vec::new();
    for token in &tokens {
        let started = Instant::now();
        verifier.verify(token, CLIENT).await.unwrap();
        first.push(started.elapsed().as_secs_f64() * 1e6);
    }
    // The same tokens again: remembered.
    let mut cached = Vec::new();
    for _ in 0..10 {
        for token in &tokens {
            let started = Instant::now();
            verifier.verify(token, CLIENT).await.unwrap();
            cached.push(started.elapsed().as_secs_f64() * 1e6);
        }
    }
    // Policy decisions, in batches of 1,000 (one is too short to time alone).
    #[allow(clippy::disallowed_methods)] // a measuring tool's one setting
    let policies_dir = std::env::var_os("ADMIN_POLICIES_DIR").map(Into::into);
    let policies = authorizer(&Authorization::Embedded(policies_dir)).unwrap();
    let input = Input {
        user: User {
            id: "ada".into(),
            roles: vec!["admin".into()],
            email: Some("ada@example.org".into()),
        },
        request: Request {
            method: "GET".into(),
            path: "/admin/api/v1/services".into(),
            route: "/admin/api/v1/services".into(),
        },
    };
    let mut decisions = Vec::new();
    for _ in 0..20 {
        let started = Instant::now();
        for _ in 0..1000 {
            assert!(policies.decide(&input).await.unwrap().allow);
        }
        decisions.push(started.elapsed().as_secs_f64() * 1e6 / 1000.0);
    }
    let _ = std::fs::remove_dir_all(&dir);
    println!(
        "jwt_verify_us={:.1} jwt_cached_us={:.2} policy_us={:.2}",
        median(first),
        median(cached),
        median(decisions)
    );
}
