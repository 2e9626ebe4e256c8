//! Uploads on both stores: a clean file becomes available and downloads byte for byte;
//! too large and wrongly typed uploads leave nothing behind; identical bytes share one
//! object; file names are neutralised.

mod common;

use common::{PNG, TestApp, pdf};
use http::Method;

async fn a_clean_upload_becomes_available_and_downloads_exactly(app: TestApp) {
    let bytes = pdf(300 * 1024, 1);
    let res = app
        .upload(
            "Annual report.pdf",
            Some("application/pdf"),
            &bytes,
            &[
                ("access_level", "public"),
                ("tags", "[\"reports\", \"2026\"]"),
                ("alt_text", "The report"),
            ],
        )
        .await;
    assert_eq!(res.status, 202, "{}", res.body);
    for key in [
        "content_id",
        "original_filename",
        "file_size",
        "mime_type",
        "upload_status",
        "upload_correlation_id",
        "estimated_processing_time",
        "created_on",
    ] {
        assert!(!res.body[key].is_null(), "202 lacks {key}: {}", res.body);
    }
    assert_eq!(res.body["upload_status"], "processing");
    assert_eq!(res.body["file_size"], bytes.len());
    assert_eq!(res.body["mime_type"], "application/pdf");
    let id = res.body["content_id"].as_str().unwrap().to_owned();

    let status = app.wait_status(&id, "available").await;
    assert_eq!(status["processing_details"]["virus_scan_status"], "clean");
    assert_eq!(status["processing_details"]["storage_verified"], true);
    assert!(status["processing_attempts"].as_i64().unwrap() >= 1);

    let res = app.get(&format!("/api/v1/content/{id}/download")).await;
    assert_eq!(res.status, 200);
    assert!(res.bytes == bytes, "downloaded bytes differ");
    let admin = app
        .admin(Method::GET, &format!("/admin/api/v1/content/{id}"), None)
        .await;
    let hash = admin.body["content_hash"].as_str().unwrap();
    assert_eq!(res.header("etag"), Some(format!("\"{hash}\"").as_str()));
    assert_eq!(res.header("x-content-hash"), Some(hash));
    assert_eq!(res.header("content-type"), Some("application/pdf"));
    assert_eq!(
        res.header("content-length"),
        Some(bytes.len().to_string().as_str())
    );
    assert_eq!(
        res.header("cache-control"),
        Some("public, max-age=31536000, immutable")
    );
    assert!(
        res.header("content-security-policy")
            .unwrap()
            .starts_with("default-src 'none'")
    );
    assert_eq!(res.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(res.header("accept-ranges"), Some("bytes"));
    assert_eq!(
        res.header("content-disposition"),
        Some("attachment; filename=\"Annual report.pdf\"; filename*=UTF-8''Annual%20report.pdf")
    );
    let storage_path = admin.body["storage_path"].as_str().unwrap();
    assert!(
        storage_path.starts_with("content/")
            && storage_path.ends_with(&format!("/{id}/{hash}.pdf")),
        "{storage_path}"
    );
    assert_eq!(app.objects().await, vec![storage_path.to_owned()]);

    let meta = app.get(&format!("/api/v1/content/{id}")).await;
    assert_eq!(meta.status, 200);
    assert_eq!(
        meta.body["download_url"],
        format!("/api/v1/content/{id}/download")
    );
    assert_eq!(meta.body["tags"], serde_json::json!(["reports", "2026"]));
    let list = app.get("/api/v1/content?tags=reports").await;
    assert_eq!(list.body["pagination"]["total_items"], 1, "{}", list.body);
}

async fn an_upload_over_the_limit_is_413_and_leaves_nothing_behind(app: TestApp) {
    // The limit is 1 MiB: 1.5 MiB is refused while streaming.
    let res = app
        .upload(
            "big.pdf",
            Some("application/pdf"),
            &pdf(1536 * 1024, 2),
            &[],
        )
        .await;
    assert_eq!(res.error(413, "PAYLOAD_TOO_LARGE").as_deref(), Some("file"));
    assert_eq!(app.rows().await, 0);
    assert!(app.objects().await.is_empty(), "{:?}", app.objects().await);
}

async fn spoofed_types_are_415_and_leave_nothing_behind(app: TestApp) {
    let mut elf = b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0\x02\0\x3e\0\x01\0\0\0".to_vec();
    elf.resize(4096, 0);
    let html = b"<!DOCTYPE html><html><body><script>alert(document.cookie)</script></body></html>";
    for (name, declared, bytes) in [
        ("image.pdf", Some("application/pdf"), PNG),
        ("report.pdf", Some("application/pdf"), &elf[..]),
        ("report.pdf", None, &elf[..]),
        ("notes.txt", Some("text/plain"), &html[..]),
        ("page.html", None, &html[..]),
    ] {
        let res = app.upload(name, declared, bytes, &[]).await;
        assert_eq!(
            res.error(415, "UNSUPPORTED_MEDIA_TYPE").as_deref(),
            Some("file"),
            "{name} {declared:?}"
        );
    }
    assert_eq!(app.rows().await, 0);
    assert!(app.objects().await.is_empty());
}

async fn identical_bytes_are_stored_once(app: TestApp) {
    let bytes = pdf(64 * 1024, 3);
    let first = app.available("a.pdf", &bytes).await;
    let second = app.available("b.pdf", &bytes).await;
    assert_ne!(first, second);
    let path = |id: String| {
        let app = &app;
        async move {
            app.admin(Method::GET, &format!("/admin/api/v1/content/{id}"), None)
                .await
                .body["storage_path"]
                .as_str()
                .unwrap()
                .to_owned()
        }
    };
    assert_eq!(path(first.clone()).await, path(second.clone()).await);
    assert_eq!(app.objects().await.len(), 1, "{:?}", app.objects().await);
    for id in [first, second] {
        let res = app.get(&format!("/api/v1/content/{id}/download")).await;
        assert!(res.bytes == bytes);
    }
}

async fn file_names_are_neutralised(app: TestApp) {
    let res = app
        .upload(
            "../../etc/pass\u{202e}wd\t.txt",
            Some("text/plain"),
            b"plain words\n",
            &[("access_level", "public")],
        )
        .await;
    assert_eq!(res.status, 202, "{}", res.body);
    assert_eq!(res.body["original_filename"], "passwd.txt");
    let id = res.body["content_id"].as_str().unwrap().to_owned();
    app.wait_status(&id, "available").await;
    let res = app.get(&format!("/api/v1/content/{id}/download")).await;
    assert_eq!(
        res.header("content-disposition"),
        Some("attachment; filename=\"passwd.txt\"; filename*=UTF-8''passwd.txt")
    );
    for path in app.objects().await {
        assert!(path.starts_with("content/"), "{path}");
        assert!(!path.contains(".."), "{path}");
    }
}

on_both_stores!(
    a_clean_upload_becomes_available_and_downloads_exactly,
    an_upload_over_the_limit_is_413_and_leaves_nothing_behind,
    spoofed_types_are_415_and_leave_nothing_behind,
    identical_bytes_are_stored_once,
    file_names_are_neutralised,
);
