//! Per-user rate limits, and the per-IP pre-limit on signature checks.

use http::Method;
use ic_testkit::jwt::{RsaIssuer, claims};

use crate::common::{AUDIENCE, Recorder, Stack};

#[tokio::test]
async fn one_users_requests_past_the_limit_are_429_while_another_user_passes() {
    let upstream = Recorder::start().await;
    let stack = Stack::start(&upstream.url(), &[("ADMIN_RATE_LIMIT_PER_MINUTE", "3")]).await;
    let ada = stack.token("ada", &["admin"]);
    for n in 0..3 {
        let (res, _) = stack
            .call(Method::GET, "/admin/api/v1/services", Some(&ada), None)
            .await;
        assert_eq!(res.status(), 200, "request {n}");
        assert_eq!(res.headers()["ratelimit-limit"], "3");
        assert_eq!(res.headers()["x-ratelimit-limit"], "3");
        assert_eq!(
            res.headers()["ratelimit-remaining"].to_str().unwrap(),
            (2 - n).to_string()
        );
    }
    let (res, _) = stack
        .call(Method::GET, "/admin/api/v1/services", Some(&ada), None)
        .await;
    assert_eq!(res.status(), 429);
    let retry: u64 = res.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    assert_eq!(res.headers()["ratelimit-remaining"], "0");
    assert!(res.headers().contains_key("ratelimit-reset"));
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["error"]["code"], "RATE_LIMITED");
    // Another user of the same IP is not limited by ada's use.
    let grace = stack.token("grace", &["admin"]);
    let (res, _) = stack
        .call(Method::GET, "/admin/api/v1/services", Some(&grace), None)
        .await;
    assert_eq!(res.status(), 200);
    assert_eq!(upstream.seen().len(), 4);
    stack.stop().await;
}

#[tokio::test]
async fn a_flood_of_garbage_tokens_from_one_ip_is_stopped_before_signature_checks() {
    let upstream = Recorder::start().await;
    let stack = Stack::start(&upstream.url(), &[("AUTH_VERIFY_PER_MINUTE", "5")]).await;
    // Well-formed tokens under the known kid, signed by another key: each would cost a
    // signature check.
    let forger = RsaIssuer::generate(&stack.issuer.kid);
    let mut statuses = Vec::new();
    for n in 0..30 {
        let mut c = claims(&stack.jwks.issuer(), AUDIENCE, "eve", &["admin"], 300);
        c["jti"] = serde_json::json!(n);
        let (res, _) = stack
            .call(
                Method::GET,
                "/admin/api/v1/services",
                Some(&forger.token(&c)),
                None,
            )
            .await;
        statuses.push(res.status().as_u16());
    }
    assert_eq!(
        statuses.iter().filter(|s| **s == 401).count(),
        5,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 429).count(),
        25,
        "{statuses:?}"
    );
    let checked = stack
        .metric("auth_token_verifications_total{result=\"invalid\"}")
        .await;
    assert_eq!(
        checked, 5.0,
        "the verification counter stays flat past the pre-limit"
    );
    let refused = stack.metric("auth_prelimit_refusals_total").await;
    assert_eq!(refused, 25.0);
    assert!(upstream.seen().is_empty());
    stack.stop().await;
}

#[tokio::test]
async fn two_gateways_sharing_redis_enforce_one_limit_per_user() {
    let redis = ic_testkit::RedisServer::start();
    let upstream = Recorder::start().await;
    let redis_url = redis.url();
    let limit = ("ADMIN_RATE_LIMIT_PER_MINUTE", "4");
    let first = Stack::start(
        &upstream.url(),
        &[limit, ("RATE_LIMIT_REDIS_URL", &redis_url)],
    )
    .await;
    // The second trusts the first's issuer (its JWKS) so one token works on both.
    let (issuer, jwks_url) = (first.jwks.issuer(), first.jwks.jwks_url());
    let second = Stack::start(
        &upstream.url(),
        &[
            limit,
            ("RATE_LIMIT_REDIS_URL", &redis_url),
            ("AUTHENTIK_ISSUER_URL", &issuer),
            ("AUTHENTIK_JWKS_URL", &jwks_url),
        ],
    )
    .await;
    let ada = first.token("ada", &["admin"]);
    let mut statuses = Vec::new();
    for n in 0..6 {
        let stack = if n % 2 == 0 { &first } else { &second };
        let (res, _) = stack
            .call(Method::GET, "/admin/api/v1/services", Some(&ada), None)
            .await;
        statuses.push(res.status().as_u16());
    }
    assert_eq!(
        statuses,
        [200, 200, 200, 200, 429, 429],
        "one budget across both gateways"
    );
    first.stop().await;
    second.stop().await;
}
