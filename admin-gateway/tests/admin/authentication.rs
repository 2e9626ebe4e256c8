//! Authentication through the gateway: every attack of the battery is 401 and never
//! reaches a backend; the security headers are on every 401; readiness needs keys.

use std::sync::atomic::Ordering;

use http::Method;
use ic_testkit::jwt::attack_battery;

use crate::common::{Recorder, Stack, assert_admin_security_headers};

#[tokio::test]
async fn every_attack_is_401_with_a_challenge_and_never_reaches_a_backend() {
    let upstream = Recorder::start().await;
    let stack = Stack::start(&upstream.url(), &[]).await;
    let (evil, evil_hits) = ic_testkit::counting_server().await;
    let battery = attack_battery(&stack.issuer, &stack.jwks.issuer(), "ic-admin", 60, &evil);
    assert!(battery.len() >= 25);
    for (name, token) in &battery {
        let (res, _) = stack
            .call(Method::GET, "/admin/api/v1/services", Some(token), None)
            .await;
        assert_eq!(res.status(), 401, "{name}");
        let challenge = res.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(
            challenge.starts_with("Bearer realm=") && challenge.contains("error=\"invalid_token\""),
            "{name}: {challenge}"
        );
        assert_admin_security_headers(res.headers(), name);
        let body: serde_json::Value = res.json().await.unwrap();
        assert_eq!(body["error"]["code"], "UNAUTHORIZED", "{name}");
    }
    // No token at all: the challenge without an error code (RFC 6750 §3.1).
    let (res, _) = stack
        .call(Method::DELETE, "/admin/api/v1/services/x", None, None)
        .await;
    assert_eq!(res.status(), 401);
    assert_eq!(
        res.headers()["www-authenticate"],
        "Bearer realm=\"international-center\""
    );
    assert_admin_security_headers(res.headers(), "no token");
    assert!(upstream.seen().is_empty(), "no attack reached a backend");
    assert_eq!(evil_hits.load(Ordering::SeqCst), 0, "jku/x5u never fetched");

    // The real token goes through, as its user.
    let token = stack.token("ada", &["admin"]);
    let (res, _) = stack
        .call(
            Method::GET,
            "/admin/api/v1/services?page=1",
            Some(&token),
            None,
        )
        .await;
    assert_eq!(res.status(), 200);
    assert_admin_security_headers(res.headers(), "200");
    let seen = upstream.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].uri, "/admin/api/v1/services?page=1");
    assert_eq!(seen[0].headers["x-user-id"], "ada");
    assert_eq!(seen[0].headers["x-user-roles"], "admin");
    assert_eq!(seen[0].headers["x-user-email"], "ada@example.org");
    assert_eq!(seen[0].headers["x-user-name"], "ada");
    stack.stop().await;
}

#[tokio::test]
async fn identity_headers_sent_by_the_client_are_replaced_by_the_tokens() {
    let upstream = Recorder::start().await;
    let stack = Stack::start(&upstream.url(), &[]).await;
    let token = stack.token("ada", &["services-manager"]);
    let res = stack
        .http
        .get(format!("{}/admin/services", stack.url))
        .bearer_auth(&token)
        .header("x-user-id", "root")
        .header("x-user-roles", "admin")
        .header("x-user-email", "root@evil")
        .header("x-user-name", "root")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "the alias /admin/services");
    let seen = &upstream.seen()[0];
    assert_eq!(seen.uri, "/admin/api/v1/services");
    assert_eq!(seen.headers["x-user-id"], "ada");
    assert_eq!(seen.headers["x-user-roles"], "services-manager");
    let emails: Vec<_> = seen.headers.get_all("x-user-email").iter().collect();
    assert_eq!(emails, ["ada@example.org"], "the token's, not the client's");
    assert_eq!(seen.headers["x-user-name"], "ada");
    stack.stop().await;
}

#[tokio::test]
async fn health_metrics_and_the_document_need_no_token_and_readiness_needs_keys() {
    let upstream = Recorder::start().await;
    let stack = Stack::start(&upstream.url(), &[]).await;
    for path in [
        "/health",
        "/healthz",
        "/health/ready",
        "/metrics",
        "/openapi.json",
    ] {
        let res = stack
            .http
            .get(format!("{}{path}", stack.url))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200, "{path}");
        assert_admin_security_headers(res.headers(), path);
    }
    // NATS connects in the background: ready once it has.
    let ready: serde_json::Value = ic_testkit::eventually(
        std::time::Duration::from_secs(10),
        "the audit sink connected",
        || async {
            let (_, ready) = stack.get_json("/health/ready").await;
            (ready["checks"]["audit"]["status"] == "up").then_some(ready)
        },
    )
    .await;
    for check in ["jwks", "opa", "audit"] {
        assert_eq!(ready["checks"][check]["status"], "up", "{check}: {ready}");
    }
    let (_, live) = stack.get_json("/health").await;
    for part in ["cors", "rate_limit", "auth", "opa", "audit", "telemetry"] {
        assert!(
            live["middleware_status"][part].is_string(),
            "{part}: {live}"
        );
    }
    stack.stop().await;

    // An issuer whose keys cannot be had: not ready (no one could be admitted).
    let jwks = ic_testkit::jwt::JwksServer::start(Vec::new()).await;
    jwks.set_down(true);
    let stack = Stack::with_env(
        ic_testkit::jwt::RsaIssuer::generate("k"),
        jwks.clone(),
        [
            ("HOST", "127.0.0.1".to_owned()),
            ("ADMIN_GATEWAY_PORT", "0".to_owned()),
            ("AUTHENTIK_ISSUER_URL", jwks.issuer()),
            ("AUTHENTIK_ADMIN_AUDIENCE", "ic-admin".to_owned()),
            ("SERVICES_API_URL", upstream.url()),
            ("NATS_URL", crate::common::nats_url()),
        ]
        .into_iter()
        .collect(),
    )
    .await;
    let (status, ready) = stack.get_json("/health/ready").await;
    assert_eq!(status, 503);
    assert_eq!(ready["status"], "not_ready");
    assert_eq!(ready["checks"]["jwks"]["status"], "down", "{ready}");
    stack.stop().await;
}

#[tokio::test]
async fn a_key_published_later_is_fetched_once_for_fifty_requests_and_a_dead_jwks_keeps_the_last_keys()
 {
    let upstream = Recorder::start().await;
    let stack = Stack::start(&upstream.url(), &[]).await;
    let fetched = stack.jwks.fetches();
    // A rotated key, published after the gateway started; 50 requests name it at once.
    let rotated = ic_testkit::jwt::RsaIssuer::generate("dev-2");
    stack.jwks.set_keys(vec![stack.issuer.jwk(), rotated.jwk()]);
    let token = rotated.token(&ic_testkit::jwt::claims(
        &stack.jwks.issuer(),
        crate::common::AUDIENCE,
        "ada",
        &["admin"],
        300,
    ));
    let requests =
        (0..50).map(|_| stack.call(Method::GET, "/admin/api/v1/services", Some(&token), None));
    for (res, _) in futures::future::join_all(requests).await {
        assert_eq!(res.status(), 200);
    }
    assert_eq!(
        stack.jwks.fetches() - fetched,
        1,
        "one JWKS fetch for 50 requests"
    );

    // The JWKS server goes down: the keys already loaded keep working.
    stack.jwks.set_down(true);
    let stranger = ic_testkit::jwt::RsaIssuer::generate("dev-3");
    let unknown = stranger.token(&ic_testkit::jwt::claims(
        &stack.jwks.issuer(),
        crate::common::AUDIENCE,
        "eve",
        &["admin"],
        300,
    ));
    let (res, _) = stack
        .call(Method::GET, "/admin/api/v1/services", Some(&unknown), None)
        .await;
    assert_eq!(res.status(), 401, "an unknown kid while the JWKS is down");
    let fresh = stack.token("grace", &["admin"]);
    let (res, _) = stack
        .call(Method::GET, "/admin/api/v1/services", Some(&fresh), None)
        .await;
    assert_eq!(res.status(), 200, "the last good keys still verify");
    stack.stop().await;
}

#[tokio::test]
async fn a_preflight_is_answered_before_authentication_with_credentials_allowed() {
    let upstream = Recorder::start().await;
    let stack = Stack::start(
        &upstream.url(),
        &[("ADMIN_WEBSITE_ORIGINS", "https://admin.example.org")],
    )
    .await;
    let res = stack
        .http
        .request(
            Method::OPTIONS,
            format!("{}/admin/api/v1/services", stack.url),
        )
        .header("origin", "https://admin.example.org")
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "authorization, content-type",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204, "no token needed for a preflight");
    let h = res.headers();
    assert_eq!(
        h["access-control-allow-origin"],
        "https://admin.example.org"
    );
    assert_eq!(h["access-control-allow-credentials"], "true");
    assert!(
        h["access-control-allow-methods"]
            .to_str()
            .unwrap()
            .contains("DELETE")
    );
    assert!(
        h["access-control-allow-headers"]
            .to_str()
            .unwrap()
            .contains("Authorization")
    );
    assert_admin_security_headers(h, "preflight");
    // Another origin gets no CORS headers; an actual request from ours carries them, 401 too.
    let res = stack
        .http
        .get(format!("{}/admin/api/v1/services", stack.url))
        .header("origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert!(res.headers().get("access-control-allow-origin").is_none());
    let res = stack
        .http
        .get(format!("{}/admin/api/v1/services", stack.url))
        .header("origin", "https://admin.example.org")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    assert_eq!(
        res.headers()["access-control-allow-origin"],
        "https://admin.example.org"
    );
    assert!(upstream.seen().is_empty());
    stack.stop().await;
}

/// `admin-gateway healthcheck` (the image's HEALTHCHECK) probes the gateway's own `/health`.
#[tokio::test]
async fn the_healthcheck_command_probes_the_gateways_own_health() {
    let upstream = Recorder::start().await;
    let stack = Stack::start(&upstream.url(), &[]).await;
    let port: u16 = stack.url.rsplit(':').next().unwrap().parse().unwrap();
    let env = [
        ("AUTHENTIK_ISSUER_URL", stack.jwks.issuer()),
        (
            "AUTHENTIK_ADMIN_AUDIENCE",
            crate::common::AUDIENCE.to_owned(),
        ),
    ];
    let binary = env!("CARGO_BIN_EXE_admin-gateway");
    tokio::task::spawn_blocking(move || {
        ic_testkit::assert_healthcheck(binary, "ADMIN_GATEWAY_PORT", port, &env)
    })
    .await
    .unwrap();
    stack.stop().await;
}
