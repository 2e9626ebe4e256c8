//! A real OpenID provider (node's `oidc-provider`, installed by `cargo xtask test`, its
//! module in `IC_TEST_OIDC_PROVIDER`) laid out as Authentik is: admin-gateway, given only
//! the issuer's URL, discovers its keys and admits the JWT access token it issues by
//! client credentials, with the `groups` claim as roles.

use std::{
    io::{BufRead, BufReader},
    path::Path,
    process::{Child, Command, Stdio},
};

use http::Method;

use crate::common::{Recorder, Stack};

struct Provider(Child);

impl Drop for Provider {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_provider(port: u16) -> Provider {
    #[allow(clippy::disallowed_methods)] // the harness's module path
    let module = std::env::var("IC_TEST_OIDC_PROVIDER")
        .expect("IC_TEST_OIDC_PROVIDER is set by `cargo xtask test`");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/oidc/provider.mjs");
    let mut child = Command::new("node")
        .arg(script)
        .arg(port.to_string())
        .env("OIDC_PROVIDER_MODULE", module)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("node runs");
    let mut ready = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut ready)
        .unwrap();
    assert_eq!(ready.trim(), "ready", "the provider started");
    Provider(child)
}

#[tokio::test]
async fn a_token_of_a_real_openid_provider_is_admitted_given_only_its_issuer() {
    let port = ic_testkit::free_port();
    let _provider = start_provider(port);
    let issuer = format!("http://127.0.0.1:{port}/application/o/admin/");
    ic_telemetry::install_crypto_provider();
    let client = reqwest::Client::new();
    let issued: serde_json::Value = client
        .post(format!("{issuer}token"))
        .basic_auth("ic-admin-client", Some("ic-admin-secret"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("grant_type=client_credentials&scope=admin")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = issued["access_token"].as_str().expect("an access token");

    let upstream = Recorder::start().await;
    let stack = Stack::start(
        &upstream.url(),
        &[
            ("AUTHENTIK_ISSUER_URL", &issuer),
            // Only the issuer: the keys are discovered from it.
            ("AUTHENTIK_JWKS_URL", ""),
        ],
    )
    .await;
    let (res, _) = stack
        .call(Method::GET, "/admin/api/v1/services", Some(token), None)
        .await;
    assert_eq!(res.status(), 200);
    let seen = &upstream.seen()[0];
    assert_eq!(seen.headers["x-user-id"], "ic-admin-client");
    assert_eq!(seen.headers["x-user-roles"], "admin");
    // The same token with one character of its signature changed is refused.
    let mut forged = token.to_owned();
    let last = forged.pop().unwrap();
    forged.push(if last == 'A' { 'B' } else { 'A' });
    let (res, _) = stack
        .call(Method::GET, "/admin/api/v1/services", Some(&forged), None)
        .await;
    assert_eq!(res.status(), 401);
    stack.stop().await;
}
