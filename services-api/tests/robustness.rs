//! No client input produces a 500 or a panic: a deterministic battery of hostile paths,
//! query strings and bodies against every route.

mod common;

use axum::body::Body;
use common::{ADMIN, TestApp};
use serde_json::{Value, json};
use sqlx::PgPool;

/// Deterministic pseudo-random numbers (no test flakiness from seeds).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 33
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[(self.next() as usize) % items.len()]
    }
}

const SEGMENTS: &[&str] = &[
    "",
    "%00",
    "..%2F..%2Fetc",
    "not-a-uuid",
    "00000000-0000-0000-0000-000000000000",
    "6f1c2a64-3b7e-4a0e-9a57-1d1f7c1ab001",
    "%F0%9F%92%A9",
    "%FF%FE",
    "-1",
    "99999999999999999999",
    "1",
    "2",
    "3",
    "slug-like-thing",
    "'%20OR%201%3D1--",
];

const QUERY_VALUES: &[&str] = &[
    "",
    "0",
    "-1",
    "1",
    "100",
    "101",
    "abc",
    "%00",
    "%FF",
    "1e3",
    "NaN",
    "true",
    "maybe",
    "draft",
    "published",
    "mobile_service",
    "2026-01-01T00:00:00Z",
    "not-a-date",
    "%22%27%5C",
    "a%20%26%20b%20%7C%20!c",
];

const QUERY_KEYS: &[&str] = &[
    "page",
    "limit",
    "q",
    "category_id",
    "delivery_mode",
    "status",
    "include_deleted",
    "start",
    "end",
];

fn hostile_values() -> Vec<Value> {
    vec![
        Value::Null,
        json!(true),
        json!(-1),
        json!(2_147_483_648i64),
        json!(1e308),
        json!(""),
        json!("\u{0000}"),
        json!("x".repeat(20_000)),
        json!("https://\u{0000}.example.org"),
        json!("javascript:alert(1)"),
        json!("日本語のタイトル"),
        json!([]),
        json!({}),
        json!({"nested": [1, 2, {"deeper": null}]}),
    ]
}

#[sqlx::test(migrations = false)]
async fn no_hostile_input_produces_a_server_error(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let category = app.create_category("Existing").await;
    let service = app.published(json!({"title": "Existing service"})).await;
    let templates = [
        "/api/v1/services",
        "/api/v1/services/{}",
        "/api/v1/services/slug/{}",
        "/api/v1/services/featured",
        "/api/v1/services/categories",
        "/api/v1/services/categories/{}/services",
        "/api/v1/services/search",
        "/admin/api/v1/services",
        "/admin/api/v1/services/{}",
        "/admin/api/v1/services/{}/publish",
        "/admin/api/v1/services/{}/archive",
        "/admin/api/v1/services/{}/audit",
        "/admin/api/v1/services/categories",
        "/admin/api/v1/services/categories/{}",
        "/admin/api/v1/services/categories/{}/audit",
        "/admin/api/v1/services/featured-categories",
        "/admin/api/v1/services/featured-categories/{}",
    ];
    let ids = [
        service["service_id"].as_str().unwrap().to_owned(),
        category["category_id"].as_str().unwrap().to_owned(),
    ];
    let fields = [
        "title",
        "description",
        "slug",
        "long_description_url",
        "category_id",
        "image_url",
        "order_number",
        "delivery_mode",
        "name",
        "feature_position",
        "unknown",
    ];
    let methods = ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD"];
    let mut rng = Lcg(0x1c_2026);
    let mut requests = 0;
    for round in 0..600u32 {
        let template = rng.pick(&templates);
        let segment = if round.is_multiple_of(5) {
            rng.pick(&ids).as_str()
        } else {
            rng.pick(SEGMENTS)
        };
        let mut path = template.replace("{}", segment);
        if rng.next().is_multiple_of(2) {
            let pairs: Vec<String> = (0..1 + rng.next() % 3)
                .map(|_| format!("{}={}", rng.pick(QUERY_KEYS), rng.pick(QUERY_VALUES)))
                .collect();
            path = format!("{path}?{}", pairs.join("&"));
        }
        let method = *rng.pick(&methods);
        let mut body = json!({"title": "T", "description": "D", "delivery_mode": "mobile_service", "name": "N"});
        for _ in 0..1 + rng.next() % 3 {
            let field = *rng.pick(&fields);
            body[field] = rng.pick(&hostile_values()).clone();
        }
        let raw = match rng.next() % 6 {
            0 => "{\"title\": ".to_owned(),
            1 => "[".repeat(5000),
            2 => "\u{0}\u{1}binary".to_owned(),
            _ => body.to_string(),
        };
        let Ok(request) = http::Request::builder()
            .method(method)
            .uri(&path)
            .header(
                "content-type",
                if rng.next().is_multiple_of(8) {
                    "text/plain"
                } else {
                    "application/json"
                },
            )
            .header("x-user-id", ADMIN)
            .body(Body::from(raw.clone()))
        else {
            continue; // a URI the HTTP layer itself would refuse never reaches the app
        };
        requests += 1;
        let res = app.send(request).await;
        assert!(
            res.status.as_u16() < 500,
            "{method} {path} with {raw:.200} answered {}: {}",
            res.status,
            res.body
        );
        if res.status.as_u16() >= 400 && method != "HEAD" {
            assert!(
                res.body["error"]["code"].is_string(),
                "{method} {path}: not an envelope: {}",
                res.body
            );
        }
    }
    assert!(requests > 500, "the battery ran ({requests} requests)");
}
