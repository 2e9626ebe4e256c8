//! Authorization through the gateway: the default policy as a decision table over roles
//! and route families, and `OPA_URL` mode against a local server speaking OPA's data API
//! (allow, deny with its reason, down and malformed: 503, never an allow).

use axum::{Json, Router, http::StatusCode, response::IntoResponse, routing::post};
use http::Method;
use serde_json::{Value, json};

use crate::common::{Recorder, Stack};

#[tokio::test]
async fn the_default_policy_decides_each_role_and_route_family() {
    let upstream = Recorder::start().await;
    let stack = Stack::start(&upstream.url(), &[]).await;
    let id = "7b1c6a52-0d5e-4a4e-9a51-1c3f4a2b9e10";
    let families = [
        ("services", "/admin/api/v1/services".to_owned()),
        ("content", "/admin/api/v1/content".to_owned()),
        (
            "services audit",
            format!("/admin/api/v1/services/{id}/audit"),
        ),
        ("content audit", format!("/admin/api/v1/content/{id}/audit")),
    ];
    // Per role: which families it may read.
    let table: [(&[&str], [bool; 4]); 6] = [
        (&["admin"], [true, true, true, true]),
        (&["services-manager"], [true, false, false, false]),
        (&["content-manager"], [false, true, false, false]),
        (&["audit-viewer"], [false, false, true, true]),
        (
            &["services-manager", "audit-viewer"],
            [true, false, true, true],
        ),
        (&["public"], [false, false, false, false]),
    ];
    let mut forwarded = 0;
    for (roles, allowed) in table {
        let token = stack.token("u-1", roles);
        for ((family, path), allow) in families.iter().zip(allowed) {
            let (res, _) = stack.call(Method::GET, path, Some(&token), None).await;
            let expected = if allow { 200 } else { 403 };
            assert_eq!(res.status(), expected, "{roles:?} on {family}");
            if allow {
                forwarded += 1;
            } else {
                assert_eq!(
                    res.headers()["www-authenticate"],
                    "Bearer error=\"insufficient_scope\""
                );
                let body: Value = res.json().await.unwrap();
                assert_eq!(body["error"]["code"], "FORBIDDEN");
                assert!(
                    body["error"]["message"].as_str().unwrap().contains("need"),
                    "the policy's reason: {body}"
                );
            }
        }
    }
    assert_eq!(
        upstream.seen().len(),
        forwarded,
        "denied requests never reach a backend"
    );
    // Outside the two families nothing is allowed, not even to an admin.
    let admin = stack.token("u-1", &["admin"]);
    let (res, _) = stack
        .call(Method::GET, "/admin/api/v1/users", Some(&admin), None)
        .await;
    assert_eq!(res.status(), 403);
    // Allowed by the policy yet not a route: 404, and 405 with the route's methods.
    let (res, _) = stack
        .call(
            Method::GET,
            "/admin/api/v1/services/a/b/c",
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(res.status(), 404);
    let (res, _) = stack
        .call(
            Method::GET,
            &format!("/admin/api/v1/services/{id}/publish"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(res.status(), 405);
    assert_eq!(res.headers()["allow"], "POST, OPTIONS");
    let (res, _) = stack
        .call(
            Method::OPTIONS,
            &format!("/admin/api/v1/services/{id}"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(res.status(), 204);
    assert_eq!(res.headers()["allow"], "GET, HEAD, PUT, DELETE, OPTIONS");
    let decisions = stack.metric("authz_decisions_total{result=\"deny\"}").await;
    assert!(decisions >= 14.0, "{decisions}");
    stack.stop().await;
}

/// How the stand-in OPA answers.
#[derive(Clone, Copy)]
enum Opa {
    Allow,
    Deny,
    Malformed,
}

async fn fake_opa(mode: Opa) -> String {
    let router = Router::new().route(
        ic_authz::OPA_DATA_PATH,
        post(move |Json(body): Json<Value>| async move {
            assert!(body["input"]["user"]["id"].is_string(), "{body}");
            assert!(body["input"]["request"]["route"].is_string(), "{body}");
            match mode {
                Opa::Allow => Json(json!({"result": {"allow": true, "reason": "opa says yes"}}))
                    .into_response(),
                Opa::Deny => Json(json!({"result": {"allow": false, "reason": "opa says no"}}))
                    .into_response(),
                Opa::Malformed => (StatusCode::OK, "{\"result\": 42}").into_response(),
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await });
    url
}

#[tokio::test]
async fn an_opa_server_decides_when_configured_and_no_decision_is_503() {
    let upstream = Recorder::start().await;
    let down = format!("http://127.0.0.1:{}", ic_testkit::free_port());
    for (opa, expected, reason) in [
        (fake_opa(Opa::Allow).await, 200, None),
        (fake_opa(Opa::Deny).await, 403, Some("opa says no")),
        (fake_opa(Opa::Malformed).await, 503, None),
        (down, 503, None),
    ] {
        let stack = Stack::start(&upstream.url(), &[("OPA_URL", &opa)]).await;
        let token = stack.token("u-1", &["admin"]);
        let (res, _) = stack
            .call(Method::GET, "/admin/api/v1/services", Some(&token), None)
            .await;
        assert_eq!(res.status(), expected, "{opa}");
        let (ready, _) = stack.get_json("/health/ready").await;
        assert_eq!(
            ready,
            if expected == 503 { 503 } else { 200 },
            "no decision path is not ready"
        );
        if expected != 200 {
            let body: Value = res.json().await.unwrap();
            let code = if expected == 403 {
                "FORBIDDEN"
            } else {
                "SERVICE_UNAVAILABLE"
            };
            assert_eq!(body["error"]["code"], code);
            if let Some(reason) = reason {
                assert!(body["error"]["message"].as_str().unwrap().contains(reason));
            }
        }
        stack.stop().await;
    }
    let forwarded = upstream
        .seen()
        .into_iter()
        .filter(|s| s.uri != "/health")
        .count();
    assert_eq!(
        forwarded, 1,
        "only the allowed request was forwarded (readiness aside)"
    );
}
