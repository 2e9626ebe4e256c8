//! CORS as a real browser enforces it: headless Chromium loads a page from an allowed
//! origin and from another one; both fetch `/api/v1/services` through the gateway (served
//! over TCP) in front of a real services-api.

mod common;

use std::{net::SocketAddr, time::Duration};

use axum::{Router, response::Html, routing::get};
use ic_config::Env;
use public_gateway::{App, config::Config};

/// A page whose script fetches the services list through the gateway and writes the
/// outcome into the DOM (`dump_dom` returns it).
async fn serve_page(gateway_port: u16) -> SocketAddr {
    let page = format!(
        r#"<!doctype html><html><body><p id="out">pending</p><script>
fetch("http://127.0.0.1:{gateway_port}/api/v1/services", {{
  headers: {{
    "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
    "If-None-Match": "\"not-this-one\""
  }}
}})
  .then(r => r.json().then(j => [r, j]))
  .then(([r, j]) => {{
    document.getElementById("out").textContent = "read:" + j.services[0].title
      + " etag:" + (r.headers.get("etag") ? "yes" : "no")
      + " correlation:" + (r.headers.get("x-correlation-id") ? "yes" : "no")
      + " trace:" + (r.headers.get("x-trace-id") || "none");
  }})
  .catch(e => {{ document.getElementById("out").textContent = "blocked:" + e.name; }});
</script></body></html>"#
    );
    let router = Router::new().route("/", get(move || async move { Html(page) }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    addr
}

async fn load(url: String) -> String {
    tokio::task::spawn_blocking(move || {
        ic_testkit::browser::dump_dom(&url, Duration::from_secs(10))
    })
    .await
    .unwrap()
}

#[sqlx::test(migrations = false)]
async fn a_page_from_an_allowed_origin_reads_the_api_and_another_origin_is_blocked(
    pool: sqlx::PgPool,
) {
    let backend_addr = common::services_api_with(&pool, "Browser check", "browser-check").await;

    let gateway_port = ic_testkit::free_port();
    let allowed = serve_page(gateway_port).await;
    let other = serve_page(gateway_port).await;
    let env: Env = [
        ("SERVICES_API_URL", format!("http://{backend_addr}")),
        ("PUBLIC_GATEWAY_PORT", gateway_port.to_string()),
        ("PUBLIC_WEBSITE_ORIGINS", format!("http://{allowed}")),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    ic_telemetry::install_crypto_provider();
    let app = App::build(Config::from_env(env).unwrap()).await.unwrap();
    let token = app.shutdown_token();
    let server = tokio::spawn(app.run_until_stopped());

    let dom = load(format!("http://{allowed}/")).await;
    assert!(
        dom.contains("read:Browser check"),
        "the allowed origin reads the list: {dom}"
    );
    // Its trace context and validator were let through the preflight, and the page
    // reads the validator and the ids.
    assert!(
        dom.contains("etag:yes correlation:yes trace:0af7651916cd43dd8448eb211c80319c"),
        "the page sends traceparent and If-None-Match and reads ETag and the ids: {dom}"
    );
    let dom = load(format!("http://{other}/")).await;
    assert!(
        dom.contains("blocked:TypeError"),
        "another origin is blocked by the browser: {dom}"
    );

    token.cancel();
    server.await.unwrap().unwrap();
}
