//! `OPA_URL` mode against a local stand-in for an OPA server: it implements OPA's data
//! API (`POST /v1/data/<path>` with `{"input": …}` → `{"result": …}`), deciding with the
//! repository's policies, or answering as a broken server would.

use std::{net::SocketAddr, path::Path, sync::Arc, time::Duration};

use axum::{Json, Router, http::StatusCode, response::IntoResponse, routing::post};
use ic_authz::{Authorizer, AuthzError, Input, OPA_DATA_PATH, OpaClient, Policies, Request, User};
use serde_json::{Value, json};

/// How the stand-in answers.
#[derive(Clone, Copy)]
enum Opa {
    /// As OPA would, from `policies/`.
    Policies,
    /// 500.
    Failing,
    /// 200 with a document that is no decision.
    Malformed,
    /// 200 without `result` (OPA's answer for an undefined document).
    Undefined,
}

async fn fake_opa(mode: Opa) -> SocketAddr {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../policies");
    let policies = Arc::new(Policies::load_dir(&dir).unwrap());
    let router = Router::new().route(
        OPA_DATA_PATH,
        post(move |Json(body): Json<Value>| {
            let policies = policies.clone();
            async move {
                match mode {
                    Opa::Policies => {
                        let input = &body["input"];
                        let decision = policies
                            .decide(&Input {
                                user: User {
                                    id: input["user"]["id"].as_str().unwrap().into(),
                                    roles: input["user"]["roles"]
                                        .as_array()
                                        .unwrap()
                                        .iter()
                                        .map(|r| r.as_str().unwrap().to_owned())
                                        .collect(),
                                    email: None,
                                },
                                request: Request {
                                    method: input["request"]["method"].as_str().unwrap().into(),
                                    path: input["request"]["path"].as_str().unwrap().into(),
                                    route: input["request"]["route"].as_str().unwrap().into(),
                                },
                            })
                            .unwrap();
                        Json(
                            json!({"result": {"allow": decision.allow, "reason": decision.reason}}),
                        )
                        .into_response()
                    }
                    Opa::Failing => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
                    Opa::Malformed => Json(json!({"result": {"allow": "yes"}})).into_response(),
                    Opa::Undefined => Json(json!({})).into_response(),
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    addr
}

fn input(roles: &[&str], path: &str) -> Input {
    Input {
        user: User {
            id: "u-1".into(),
            roles: roles.iter().map(|r| (*r).to_owned()).collect(),
            email: Some("u@example.org".into()),
        },
        request: Request {
            method: "POST".into(),
            path: path.into(),
            route: path.into(),
        },
    }
}

fn opa(addr: SocketAddr) -> Authorizer {
    ic_telemetry::install_crypto_provider();
    Authorizer::Opa(OpaClient::new(
        &format!("http://{addr}/"),
        Duration::from_secs(2),
    ))
}

#[tokio::test]
async fn an_opa_server_allows_and_denies_with_its_reason() {
    let authorizer = opa(fake_opa(Opa::Policies).await);
    let allowed = authorizer
        .decide(&input(&["services-manager"], "/admin/api/v1/services"))
        .await
        .unwrap();
    assert!(allowed.allow);
    let denied = authorizer
        .decide(&input(&["content-manager"], "/admin/api/v1/services"))
        .await
        .unwrap();
    assert!(!denied.allow);
    assert_eq!(
        denied.reason,
        "services routes need admin or services-manager"
    );
}

#[tokio::test]
async fn no_decision_from_opa_is_an_error_never_an_allow() {
    let down = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        addr
    };
    for (what, addr) in [
        ("down", down),
        ("failing", fake_opa(Opa::Failing).await),
        ("malformed", fake_opa(Opa::Malformed).await),
        ("undefined", fake_opa(Opa::Undefined).await),
    ] {
        let decided = opa(addr)
            .decide(&input(&["admin"], "/admin/api/v1/services"))
            .await;
        assert!(
            matches!(decided, Err(AuthzError::Eval { .. })),
            "{what}: {decided:?}"
        );
    }
}
