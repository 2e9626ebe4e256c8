//! The access log: every access is recorded off the response path, the analytics sum
//! them correctly, and a full buffer drops entries (counted) instead of blocking.

mod common;

use std::time::Duration;

use common::{Store, TestApp, pdf};
use http::Method;
use sqlx::PgPool;

#[sqlx::test(migrations = false)]
async fn every_access_is_logged_and_the_analytics_add_up(pool: PgPool) {
    let app = TestApp::new(pool, Store::File).await;
    let bytes = pdf(10_000, 20);
    let id = app.available("a.pdf", &bytes).await;
    let other = app.available("b.pdf", &pdf(500, 21)).await;
    let url = format!("/api/v1/content/{id}/download");
    let visitor = |n: &str| {
        vec![
            ("x-forwarded-for", n.to_owned()),
            ("user-agent", "tests/1.0".to_owned()),
        ]
    };
    for ip in ["203.0.113.1", "203.0.113.2", "203.0.113.1"] {
        let headers = visitor(ip);
        let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        assert_eq!(app.get_with(&url, &headers).await.status, 200);
    }
    let res = app
        .get_with(
            &url,
            &[
                ("range", "bytes=0-9"),
                ("x-user-id", "reader-1"),
                ("referer", "https://example.org/page"),
            ],
        )
        .await;
    assert_eq!(res.status, 206);
    let etag = res.header("etag").unwrap().to_owned();
    assert_eq!(
        app.get_with(&url, &[("if-none-match", &etag)]).await.status,
        304
    );
    assert_eq!(app.get(&format!("/api/v1/content/{id}")).await.status, 200);
    assert_eq!(
        app.get(&format!("/api/v1/content/{other}/download"))
            .await
            .status,
        200
    );

    // Six accesses of `id`: four downloads with bytes, a 304, a view.
    let log = ic_testkit::eventually(Duration::from_secs(10), "six accesses logged", || async {
        let res = app
            .admin(
                Method::GET,
                &format!("/admin/api/v1/content/{id}/access-log"),
                None,
            )
            .await;
        (res.body["analytics"]["total_accesses"] == 6).then_some(res.body)
    })
    .await;
    let analytics = &log["analytics"];
    assert_eq!(analytics["total_bytes_served"], 3 * 10_000 + 10, "{log}");
    // 203.0.113.1, 203.0.113.2, reader-1, and the two requests without any identity.
    assert_eq!(analytics["unique_visitors"], 3, "{log}");
    assert!((analytics["cache_hit_rate"].as_f64().unwrap() - 1.0 / 6.0).abs() < 1e-9);
    let rows = log["access_log"].as_array().unwrap();
    assert_eq!(rows.len(), 6);
    let ranged = rows.iter().find(|r| r["http_status_code"] == 206).unwrap();
    assert_eq!(ranged["bytes_served"], 10);
    assert_eq!(ranged["user_id"], "reader-1");
    assert_eq!(ranged["referer_url"], "https://example.org/page");
    assert_eq!(ranged["storage_backend"], "local");
    let first = rows
        .iter()
        .find(|r| r["client_ip"] == "203.0.113.2")
        .unwrap();
    assert_eq!(first["user_agent"], "tests/1.0");
    assert_eq!(first["access_type"], "download");
    assert_eq!(log["pagination"]["total_items"], 6);

    let views = app
        .admin(
            Method::GET,
            &format!("/admin/api/v1/content/{id}/access-log?access_type=view&limit=1"),
            None,
        )
        .await;
    assert_eq!(
        views.body["analytics"]["total_accesses"], 1,
        "{}",
        views.body
    );

    let all = app
        .admin(Method::GET, "/admin/api/v1/content/analytics?granularity=hour&start_date=2026-01-01T00:00:00Z&end_date=2026-01-02T00:00:00Z", None)
        .await;
    assert_eq!(all.status, 200, "{}", all.body);
    assert_eq!(all.body["summary"]["total_accesses"], 0);
    assert_eq!(all.body["access_patterns"].as_array().unwrap().len(), 24);

    let all = app
        .admin(
            Method::GET,
            "/admin/api/v1/content/analytics?granularity=day",
            None,
        )
        .await;
    assert_eq!(all.status, 200, "{}", all.body);
    let summary = &all.body["summary"];
    assert_eq!(summary["total_accesses"], 7);
    assert_eq!(summary["downloads"], 6);
    assert_eq!(summary["views"], 1);
    assert_eq!(all.body["top_content"][0]["content_id"], id.as_str());
    assert_eq!(all.body["top_content"][0]["accesses"], 6);
    assert_eq!(all.body["top_content"][1]["content_id"], other.as_str());
    let per_day: i64 = all.body["access_patterns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["accesses"].as_i64().unwrap())
        .sum();
    assert_eq!(per_day, 7);
}

#[sqlx::test(migrations = false)]
async fn a_full_buffer_drops_entries_and_counts_them_without_slowing_downloads(pool: PgPool) {
    let mut options = common::Options::new(Store::File);
    options.access_log_buffer = 2;
    options.write_access_log = false;
    let app = TestApp::with(pool, options).await;
    let id = app.available("d.pdf", &pdf(1000, 22)).await;
    for _ in 0..5 {
        let res = app.get(&format!("/api/v1/content/{id}/download")).await;
        assert_eq!(res.status, 200);
    }
    let metrics = app.metrics.http.render();
    assert!(
        metrics.contains("content_access_log_entries_total{result=\"dropped\"} 3"),
        "{metrics}"
    );
}

#[sqlx::test(migrations = false)]
async fn analytics_queries_are_validated(pool: PgPool) {
    let app = TestApp::new(pool, Store::File).await;
    let id = app.available("v.pdf", &pdf(1000, 23)).await;
    for (path, field) in [
        (format!("/admin/api/v1/content/{id}/access-log?limit=201"), "limit"),
        (format!("/admin/api/v1/content/{id}/access-log?start_date=last-week"), "start_date"),
        (format!("/admin/api/v1/content/{id}/access-log?access_type=stream"), "access_type"),
        (
            format!("/admin/api/v1/content/{id}/access-log?start_date=2026-05-02&end_date=2026-05-01"),
            "end_date",
        ),
        ("/admin/api/v1/content/analytics?granularity=minute".to_owned(), "granularity"),
        (
            "/admin/api/v1/content/analytics?granularity=hour&start_date=2026-01-01&end_date=2026-03-01".to_owned(),
            "start_date",
        ),
    ] {
        assert_eq!(
            app.admin(Method::GET, &path, None)
                .await
                .error(400, "VALIDATION_ERROR")
                .as_deref(),
            Some(field),
            "{path}"
        );
    }
    app.admin(
        Method::GET,
        "/admin/api/v1/content/00000000-0000-4000-8000-000000000000/access-log",
        None,
    )
    .await
    .error(404, "NOT_FOUND");
}
