//! Delivery on both stores: ranges (first, last, suffix, past the end, several), the
//! ETag's 304, HEAD, and who may see what.

mod common;

use common::{TestApp, pdf};
use http::Method;

async fn ranges_are_served_exactly(app: TestApp) {
    let bytes = pdf(100_000, 4);
    let id = app.available("r.pdf", &bytes).await;
    let url = format!("/api/v1/content/{id}/download");
    for (range, expected, content_range) in [
        ("bytes=0-99", &bytes[..100], "bytes 0-99/100000"),
        ("bytes=99900-", &bytes[99_900..], "bytes 99900-99999/100000"),
        ("bytes=-10", &bytes[99_990..], "bytes 99990-99999/100000"),
        (
            "bytes=50000-50000",
            &bytes[50_000..50_001],
            "bytes 50000-50000/100000",
        ),
    ] {
        let res = app.get_with(&url, &[("range", range)]).await;
        assert_eq!(res.status, 206, "{range}");
        assert!(res.bytes == expected, "{range}: bytes differ");
        assert_eq!(res.header("content-range"), Some(content_range), "{range}");
        assert_eq!(
            res.header("content-length"),
            Some(expected.len().to_string().as_str())
        );
    }

    let res = app.get_with(&url, &[("range", "bytes=100000-")]).await;
    assert_eq!(res.status, 416);
    assert_eq!(res.header("content-range"), Some("bytes */100000"));

    // Several ranges: multipart/byteranges with each part's bytes.
    let res = app.get_with(&url, &[("range", "bytes=0-9,-5")]).await;
    assert_eq!(res.status, 206);
    let ct = res.header("content-type").unwrap().to_owned();
    let boundary = ct.strip_prefix("multipart/byteranges; boundary=").unwrap();
    assert_eq!(
        res.header("content-length").unwrap(),
        res.bytes.len().to_string()
    );
    let text = String::from_utf8_lossy(&res.bytes).to_string();
    assert_eq!(
        text.matches(&format!("--{boundary}")).count(),
        3,
        "two parts and the end"
    );
    assert!(text.contains("Content-Range: bytes 0-9/100000"));
    assert!(text.contains("Content-Range: bytes 99995-99999/100000"));
    let first = find(&res.bytes, b"Content-Range: bytes 0-9/100000\r\n\r\n").unwrap() + 35;
    assert_eq!(&res.bytes[first..first + 10], &bytes[..10]);
    let last = find(
        &res.bytes,
        b"Content-Range: bytes 99995-99999/100000\r\n\r\n",
    )
    .unwrap()
        + 43;
    assert_eq!(&res.bytes[last..last + 5], &bytes[99_995..]);

    // Unparseable ranges are ignored (RFC 9110): the whole file.
    let res = app.get_with(&url, &[("range", "lines=1-2")]).await;
    assert_eq!(res.status, 200);
    assert_eq!(res.bytes.len(), 100_000);
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

async fn the_etag_answers_304_and_head_sends_no_body(app: TestApp) {
    let id = app.available("e.pdf", &pdf(5000, 5)).await;
    let url = format!("/api/v1/content/{id}/download");
    let etag = app.get(&url).await.header("etag").unwrap().to_owned();
    let res = app.get_with(&url, &[("if-none-match", &etag)]).await;
    assert_eq!(res.status, 304);
    assert!(res.bytes.is_empty());
    assert_eq!(res.header("etag"), Some(etag.as_str()));
    let res = app.get_with(&url, &[("if-none-match", "\"other\"")]).await;
    assert_eq!(res.status, 200);
    let res = app.request(Method::HEAD, &url, None, &[]).await;
    assert_eq!(res.status, 200);
    assert!(res.bytes.is_empty());
    assert_eq!(res.header("content-length"), Some("5000"));
    // `If-Range` with another validator: the whole file, not the range.
    let res = app
        .get_with(&url, &[("range", "bytes=0-9"), ("if-range", "\"stale\"")])
        .await;
    assert_eq!(res.status, 200);
    assert_eq!(res.bytes.len(), 5000);
}

async fn deleted_restricted_and_internal_files_are_hidden_from_the_public(app: TestApp) {
    let public = app.available("p.pdf", &pdf(2000, 6)).await;
    // Restricted and internal files, made available.
    let mut ids = Vec::new();
    for level in ["restricted", "internal"] {
        let res = app
            .upload(
                &format!("{level}.pdf"),
                None,
                &pdf(2000, 7 + ids.len() as u8),
                &[("access_level", level)],
            )
            .await;
        assert_eq!(res.status, 202, "{}", res.body);
        let id = res.body["content_id"].as_str().unwrap().to_owned();
        app.wait_status(&id, "available").await;
        ids.push(id);
    }
    let (restricted, internal) = (&ids[0], &ids[1]);
    for id in [restricted, internal] {
        for suffix in ["", "/download"] {
            app.get(&format!("/api/v1/content/{id}{suffix}"))
                .await
                .error(404, "NOT_FOUND");
        }
    }
    // A signed-in caller reads internal files (cached privately), never restricted ones.
    let res = app
        .get_with(
            &format!("/api/v1/content/{internal}/download"),
            &[("x-user-id", "reader")],
        )
        .await;
    assert_eq!(res.status, 200);
    assert_eq!(res.header("cache-control"), Some("private, max-age=3600"));
    app.get_with(
        &format!("/api/v1/content/{restricted}"),
        &[("x-user-id", "reader")],
    )
    .await
    .error(404, "NOT_FOUND");
    // Soft delete: gone publicly at once, still there for admins, the object kept.
    let res = app
        .admin(
            Method::DELETE,
            &format!("/admin/api/v1/content/{public}"),
            None,
        )
        .await;
    assert_eq!(res.status, 204);
    app.get(&format!("/api/v1/content/{public}/download"))
        .await
        .error(404, "NOT_FOUND");
    let res = app
        .admin(
            Method::GET,
            &format!("/admin/api/v1/content/{public}"),
            None,
        )
        .await;
    assert_eq!(res.body["is_deleted"], true);
    assert_eq!(app.objects().await.len(), 3);
    let list = app.get("/api/v1/content").await;
    assert_eq!(list.body["pagination"]["total_items"], 0, "{}", list.body);
}

on_both_stores!(
    ranges_are_served_exactly,
    the_etag_answers_304_and_head_sends_no_body,
    deleted_restricted_and_internal_files_are_hidden_from_the_public,
);
