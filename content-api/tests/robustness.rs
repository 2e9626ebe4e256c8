//! Bad input gets the error envelope naming the field, never a 500, and writes nothing.

mod common;

use common::{Store, TestApp, pdf};
use http::{Method, Request};
use serde_json::json;
use sqlx::PgPool;

#[sqlx::test(migrations = false)]
async fn bad_ids_paging_filters_and_bodies_are_400_naming_the_field(pool: PgPool) {
    let app = TestApp::new(pool, Store::File).await;
    for (path, field) in [
        ("/api/v1/content/not-a-uuid", "id"),
        ("/api/v1/content/not-a-uuid/download", "id"),
        ("/api/v1/content?page=0", "page"),
        ("/api/v1/content?limit=1000", "limit"),
        ("/api/v1/content?category=spaceship", "category"),
        ("/api/v1/content?page=x", "page"),
    ] {
        assert_eq!(
            app.get(path)
                .await
                .error(400, "VALIDATION_ERROR")
                .as_deref(),
            Some(field),
            "{path}"
        );
    }
    for (path, field) in [
        ("/admin/api/v1/content?status=lost", "status"),
        ("/admin/api/v1/content?access_level=secret", "access_level"),
        (
            "/admin/api/v1/content?include_deleted=maybe",
            "include_deleted",
        ),
        ("/admin/api/v1/content/123/status", "id"),
        (
            "/admin/api/v1/content/00000000-0000-0000-0000-000000000000/audit?start=yesterday",
            "start",
        ),
    ] {
        assert_eq!(
            app.admin(Method::GET, path, None)
                .await
                .error(400, "VALIDATION_ERROR")
                .as_deref(),
            Some(field),
            "{path}"
        );
    }
    let id = app.available("x.pdf", &pdf(1000, 11)).await;
    let url = format!("/admin/api/v1/content/{id}");
    for (body, field) in [
        (json!({"storage_path": "elsewhere"}), "storage_path"),
        (json!({"access_level": "secret"}), "access_level"),
        (json!({"tags": "not-a-list"}), "tags"),
        (json!({"alt_text": "a\u{0}b"}), "alt_text"),
        (json!({"tags": ["x".repeat(51)]}), "tags"),
        (json!({}), "body"),
    ] {
        let res = app.admin(Method::PUT, &url, Some(body.clone())).await;
        assert_eq!(
            res.error(400, "VALIDATION_ERROR").as_deref(),
            Some(field),
            "{body}"
        );
    }
    let res = app
        .admin(
            Method::PUT,
            &url,
            Some(json!({"description": "Now described", "access_level": "internal"})),
        )
        .await;
    assert_eq!(res.status, 200, "{}", res.body);
    assert_eq!(res.body["description"], "Now described");
    assert_eq!(res.body["access_level"], "internal");
    // Unknown ids are 404 everywhere.
    let unknown = "00000000-0000-4000-8000-000000000000";
    for (method, suffix) in [
        (Method::GET, ""),
        (Method::PUT, ""),
        (Method::DELETE, ""),
        (Method::GET, "/status"),
        (Method::GET, "/virus-scans"),
        (Method::POST, "/reprocess"),
        (Method::POST, "/virus-scan"),
    ] {
        let body = (method == Method::PUT).then(|| json!({"description": "x"}));
        app.admin(
            method.clone(),
            &format!("/admin/api/v1/content/{unknown}{suffix}"),
            body,
        )
        .await
        .error(404, "NOT_FOUND");
    }
}

#[sqlx::test(migrations = false)]
async fn malformed_uploads_are_400_and_store_nothing(pool: PgPool) {
    let app = TestApp::new(pool, Store::File).await;
    // Not multipart at all.
    let res = app
        .request(
            Method::POST,
            "/admin/api/v1/content/upload",
            Some(json!({"file": "x"})),
            &[("x-user-id", "u")],
        )
        .await;
    assert_eq!(res.error(400, "VALIDATION_ERROR").as_deref(), Some("body"));
    // No file part; an unknown field; a bad enum; bad tags; an empty file.
    for (fields, file, field) in [
        (vec![("unexpected", "1")], Some(pdf(100, 12)), "body"),
        (
            vec![("access_level", "secret")],
            Some(pdf(100, 13)),
            "access_level",
        ),
        (
            vec![("content_category", "spaceship")],
            Some(pdf(100, 14)),
            "content_category",
        ),
        (vec![("tags", "[1,2]")], Some(pdf(100, 15)), "tags"),
        (vec![], Some(Vec::new()), "file"),
    ] {
        let res = app
            .upload("f.pdf", None, file.as_deref().unwrap_or_default(), &fields)
            .await;
        assert_eq!(
            res.error(400, "VALIDATION_ERROR").as_deref(),
            Some(field),
            "{fields:?}"
        );
    }
    let (boundary, body) = common::multipart("f.pdf", None, b"", &[("alt_text", "only metadata")]);
    // The same form without its file part.
    let without_file = String::from_utf8_lossy(&body)
        .split(&format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"file\""
        ))
        .next()
        .unwrap()
        .to_owned()
        + &format!("--{boundary}--\r\n");
    let request = Request::builder()
        .method(Method::POST)
        .uri("/admin/api/v1/content/upload")
        .header("x-user-id", "u")
        .header(
            "content-type",
            format!("multipart/form-data; boundary={boundary}"),
        )
        .body(axum::body::Body::from(without_file))
        .unwrap();
    assert_eq!(
        app.send(request)
            .await
            .error(400, "VALIDATION_ERROR")
            .as_deref(),
        Some("file")
    );
    // A body cut short mid-file.
    let (boundary, mut body) = common::multipart("cut.pdf", None, &pdf(200_000, 16), &[]);
    body.truncate(150_000);
    let request = Request::builder()
        .method(Method::POST)
        .uri("/admin/api/v1/content/upload")
        .header("x-user-id", "u")
        .header(
            "content-type",
            format!("multipart/form-data; boundary={boundary}"),
        )
        .body(axum::body::Body::from(body))
        .unwrap();
    assert_eq!(
        app.send(request)
            .await
            .error(400, "VALIDATION_ERROR")
            .as_deref(),
        Some("body")
    );
    // Without a caller: 401.
    let res = app
        .request(Method::GET, "/admin/api/v1/content", None, &[])
        .await;
    res.error(401, "UNAUTHORIZED");
    assert_eq!(app.rows().await, 0);
    assert!(app.objects().await.is_empty(), "{:?}", app.objects().await);
}
