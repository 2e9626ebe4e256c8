//! Storage operations on both stores: the backends with health and statistics, and the
//! lifecycle of objects no live row names (reported, dry run, cleaned).

mod common;

use bytes::Bytes;
use common::{TestApp, pdf};
use http::Method;
use serde_json::json;

async fn storage_backends_report_their_health_and_statistics(app: TestApp) {
    let id = app.available("s.pdf", &pdf(3000, 30)).await;
    let _twin = app.available("twin.pdf", &pdf(3000, 30)).await;
    let res = app
        .admin(Method::GET, "/admin/api/v1/content/storage-backends", None)
        .await;
    assert_eq!(res.status, 200, "{}", res.body);
    let backends = res.body["storage_backends"].as_array().unwrap();
    assert_eq!(backends.len(), 1, "{}", res.body);
    let backend = &backends[0];
    assert_eq!(backend["is_active"], true);
    assert!(
        ["local-filesystem", "azure-blob"].contains(&backend["backend_type"].as_str().unwrap()),
        "{backend}"
    );
    assert_eq!(backend["statistics"]["files"], 2);
    assert_eq!(backend["statistics"]["total_bytes"], 6000);
    assert_eq!(backend["statistics"]["stored_objects"], 1);
    assert_eq!(backend["statistics"]["stored_bytes"], 3000);
    assert!(
        !backend["base_url"].as_str().unwrap().contains("Eby8"),
        "no key"
    );
    let backend_id = backend["backend_id"].as_str().unwrap();
    let res = app
        .admin(
            Method::POST,
            &format!("/admin/api/v1/content/storage-backends/{backend_id}/health-check"),
            None,
        )
        .await;
    assert_eq!(res.status, 200, "{}", res.body);
    assert!(["healthy", "degraded"].contains(&res.body["health_status"].as_str().unwrap()));
    for step in ["write_ms", "read_ms", "delete_ms"] {
        assert!(res.body["timings"][step].as_f64().unwrap() >= 0.0);
    }
    // The probe leaves nothing behind; the backend remembers the check.
    assert_eq!(app.objects().await.len(), 1);
    let res = app
        .admin(Method::GET, "/admin/api/v1/content/storage-backends", None)
        .await;
    assert!(!res.body["storage_backends"][0]["last_health_check"].is_null());
    app.admin(
        Method::POST,
        &format!("/admin/api/v1/content/storage-backends/{id}/health-check"),
        None,
    )
    .await
    .error(404, "NOT_FOUND");
}

async fn orphans_are_reported_and_cleaned_after_a_dry_run(app: TestApp) {
    let kept = app.available("kept.pdf", &pdf(2000, 31)).await;
    // Shared bytes: one of the two rows deleted, the object still named by the other.
    let shared = pdf(2500, 32);
    let _live_twin = app.available("twin-a.pdf", &shared).await;
    let deleted_twin = app.available("twin-b.pdf", &shared).await;
    let gone = app.available("gone.pdf", &pdf(1500, 33)).await;
    for id in [&deleted_twin, &gone] {
        let res = app
            .admin(Method::DELETE, &format!("/admin/api/v1/content/{id}"), None)
            .await;
        assert_eq!(res.status, 204);
    }
    app.store
        .put(
            "staging/left-behind",
            Bytes::from_static(b"an upload never committed"),
        )
        .await
        .unwrap();
    let orphaned = app
        .admin(
            Method::GET,
            "/admin/api/v1/content/lifecycle/orphaned?older_than_days=0",
            None,
        )
        .await;
    assert_eq!(orphaned.status, 200, "{}", orphaned.body);
    assert_eq!(orphaned.body["total_count"], 2, "{}", orphaned.body);
    assert_eq!(orphaned.body["total_bytes"], 1500 + 25);
    let kinds: Vec<&str> = orphaned.body["orphaned"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["unreferenced", "staging"]);
    // Nothing is that old yet.
    let old = app
        .admin(
            Method::GET,
            "/admin/api/v1/content/lifecycle/orphaned?older_than_days=1",
            None,
        )
        .await;
    assert_eq!(old.body["total_count"], 0);

    let before = app.objects().await;
    let dry = app
        .admin(
            Method::POST,
            "/admin/api/v1/content/lifecycle/cleanup",
            Some(json!({"older_than_days": 0})),
        )
        .await;
    assert_eq!(dry.status, 200, "{}", dry.body);
    assert_eq!(dry.body["dry_run"], true);
    assert_eq!(dry.body["would_delete"], 2);
    assert_eq!(dry.body["files_deleted"], 0);
    assert_eq!(app.objects().await, before, "a dry run deletes nothing");

    let done = app
        .admin(
            Method::POST,
            "/admin/api/v1/content/lifecycle/cleanup",
            Some(json!({"older_than_days": 0, "dry_run": false, "storage_backend": app.store.name()})),
        )
        .await;
    assert_eq!(done.status, 200, "{}", done.body);
    assert_eq!(done.body["files_deleted"], 2, "{}", done.body);
    assert_eq!(done.body["storage_reclaimed"], 1500 + 25);
    assert_eq!(done.body["errors"], json!([]));
    assert_eq!(
        app.objects().await.len(),
        2,
        "kept and the shared object stay"
    );
    for id in [&kept, &_live_twin] {
        assert_eq!(
            app.get(&format!("/api/v1/content/{id}/download"))
                .await
                .status,
            200
        );
    }
    let after = app
        .admin(
            Method::GET,
            "/admin/api/v1/content/lifecycle/orphaned?older_than_days=0",
            None,
        )
        .await;
    assert_eq!(after.body["total_count"], 0);
}

on_both_stores!(
    storage_backends_report_their_health_and_statistics,
    orphans_are_reported_and_cleaned_after_a_dry_run,
);

#[sqlx::test(migrations = false)]
async fn lifecycle_requests_are_validated(pool: sqlx::PgPool) {
    let app = TestApp::new(pool, common::Store::File).await;
    for (body, field) in [
        (json!({}), "older_than_days"),
        (json!({"older_than_days": -1}), "older_than_days"),
        (json!({"older_than_days": 5000}), "older_than_days"),
        (
            json!({"older_than_days": 1, "storage_backend": "s3-somewhere"}),
            "storage_backend",
        ),
        (json!({"older_than_days": 1, "dry_run": "no"}), "dry_run"),
        (json!({"older_than_days": 1, "force": true}), "force"),
    ] {
        let res = app
            .admin(
                Method::POST,
                "/admin/api/v1/content/lifecycle/cleanup",
                Some(body.clone()),
            )
            .await;
        assert_eq!(
            res.error(400, "VALIDATION_ERROR").as_deref(),
            Some(field),
            "{body}"
        );
    }
    app.admin(
        Method::GET,
        "/admin/api/v1/content/lifecycle/orphaned?older_than_days=x",
        None,
    )
    .await
    .error(400, "VALIDATION_ERROR");
    app.admin(
        Method::POST,
        "/admin/api/v1/content/storage-backends/nope/health-check",
        None,
    )
    .await
    .error(400, "VALIDATION_ERROR");
}

/// A cleanup asked to take everything, run while an upload is being written, leaves that
/// upload alone: it completes and is stored whole.
#[sqlx::test(migrations = false)]
async fn a_cleanup_leaves_uploads_in_flight_alone(pool: sqlx::PgPool) {
    let mut options = common::Options::new(common::Store::File);
    options.max_upload_bytes = 64 * 1024 * 1024;
    let app = TestApp::with(pool, options).await;
    let bytes = pdf(12 * 1024 * 1024, 34);
    let (boundary, body) =
        common::multipart("slow.pdf", None, &bytes, &[("access_level", "public")]);
    let (first, rest) = body.split_at(10 * 1024 * 1024);
    let (sender, receiver) = futures::channel::mpsc::unbounded::<Result<Bytes, std::io::Error>>();
    sender
        .unbounded_send(Ok(Bytes::copy_from_slice(first)))
        .unwrap();
    let request = http::Request::builder()
        .method(Method::POST)
        .uri("/admin/api/v1/content/upload")
        .header("x-user-id", common::ADMIN)
        .header(
            "content-type",
            ic_testkit::multipart::content_type(&boundary),
        )
        .body(axum::body::Body::from_stream(receiver))
        .unwrap();
    let router = app.router.clone();
    let upload = tokio::spawn(async move { ic_testkit::app::call(&router, request).await });
    // The first 8 MiB part is on disk, in staging.
    ic_testkit::eventually(
        std::time::Duration::from_secs(10),
        "a partial upload",
        || async {
            let res = app
                .admin(
                    Method::GET,
                    "/admin/api/v1/content/lifecycle/orphaned?older_than_days=0",
                    None,
                )
                .await;
            let staged = std::fs::read_dir(match &app.blob_config {
                content_api::config::BlobStoreConfig::File(dir) => dir.join("staging"),
                content_api::config::BlobStoreConfig::Azure { .. } => unreachable!(),
            })
            .map(|d| d.count())
            .unwrap_or(0);
            (staged > 0).then_some(res)
        },
    )
    .await;
    let cleaned = app
        .admin(
            Method::POST,
            "/admin/api/v1/content/lifecycle/cleanup",
            Some(json!({"older_than_days": 0, "dry_run": false})),
        )
        .await;
    assert_eq!(cleaned.body["files_processed"], 0, "{}", cleaned.body);
    sender
        .unbounded_send(Ok(Bytes::copy_from_slice(rest)))
        .unwrap();
    drop(sender);
    let res = upload.await.unwrap();
    assert_eq!(res.status, 202, "{}", res.body);
    let id = res.body["content_id"].as_str().unwrap().to_owned();
    app.wait_status(&id, "available").await;
    let downloaded = app.get(&format!("/api/v1/content/{id}/download")).await;
    assert_eq!(downloaded.status, 200);
    assert_eq!(downloaded.bytes.len(), bytes.len(), "stored whole");
    assert!(downloaded.bytes == bytes, "stored exactly");
}
