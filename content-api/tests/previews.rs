//! Previews on both stores: a thumbnail made during processing, others made on first
//! request (once, even when asked concurrently) and kept in the store.

mod common;

use std::io::Cursor;

use common::{TestApp, pdf};
use http::Method;

fn png(width: u32, height: u32) -> Vec<u8> {
    let image = image::RgbImage::from_fn(width, height, |x, y| {
        image::Rgb([(x % 256) as u8, (y % 256) as u8, 120])
    });
    let mut out = Cursor::new(Vec::new());
    image::DynamicImage::ImageRgb8(image)
        .write_to(&mut out, image::ImageFormat::Png)
        .unwrap();
    out.into_inner()
}

fn size_of(bytes: &[u8]) -> (u32, u32) {
    let image = image::load_from_memory(bytes).expect("a decodable image");
    (image.width(), image.height())
}

async fn previews_are_made_once_and_kept(app: TestApp) {
    let id = app.available("photo.png", &png(800, 600)).await;
    let record = app
        .admin(Method::GET, &format!("/admin/api/v1/content/{id}"), None)
        .await
        .body;
    let hash = record["content_hash"].as_str().unwrap().to_owned();
    assert_eq!(
        record["processing_details"]["thumbnail_generated"], true,
        "{record}"
    );
    assert_eq!(record["processing_details"]["image"]["width"], 800);
    let status = app
        .admin(
            Method::GET,
            &format!("/admin/api/v1/content/{id}/status"),
            None,
        )
        .await
        .body;
    assert_eq!(status["processing_details"]["thumbnail_generated"], true);
    assert!(
        app.objects()
            .await
            .contains(&format!("previews/{hash}/small.webp")),
        "{:?}",
        app.objects().await
    );
    let meta = app.get(&format!("/api/v1/content/{id}")).await;
    assert_eq!(
        meta.body["preview_url"],
        format!("/api/v1/content/{id}/preview")
    );

    let url = format!("/api/v1/content/{id}/preview");
    let small = app.get(&format!("{url}?size=small")).await;
    assert_eq!(small.status, 200, "{}", small.body);
    assert_eq!(small.header("content-type"), Some("image/webp"));
    assert_eq!(size_of(&small.bytes), (160, 120));

    let medium = app.get(&format!("{url}?size=medium&format=png")).await;
    assert_eq!(medium.status, 200);
    assert_eq!(medium.header("content-type"), Some("image/png"));
    assert_eq!(size_of(&medium.bytes), (480, 360));
    assert_eq!(
        medium.header("cache-control"),
        Some("public, max-age=31536000, immutable")
    );
    assert_eq!(medium.header("x-content-type-options"), Some("nosniff"));
    assert!(
        app.objects()
            .await
            .contains(&format!("previews/{hash}/medium.png"))
    );
    let again = app.get(&format!("{url}?size=medium&format=png")).await;
    assert!(again.bytes == medium.bytes);
    let etag = again.header("etag").unwrap().to_owned();
    let not_modified = app
        .get_with(
            &format!("{url}?size=medium&format=png"),
            &[("if-none-match", &etag)],
        )
        .await;
    assert_eq!(not_modified.status, 304);

    // Four concurrent first requests: one image made, four identical answers.
    let large = format!("{url}?size=large&format=jpeg");
    let answers = futures::future::join_all((0..4).map(|_| app.get(&large))).await;
    for answer in &answers {
        assert_eq!(answer.status, 200);
        assert!(answer.bytes == answers[0].bytes);
    }
    assert_eq!(size_of(&answers[0].bytes), (800, 600), "never scaled up");
    assert_eq!(
        app.objects()
            .await
            .iter()
            .filter(|p| p.starts_with("previews/"))
            .count(),
        3
    );
    // Made on request: medium.png and large.jpeg, once each; the rest from the store.
    let metrics = app.metrics.http.render();
    assert!(
        metrics.contains("content_previews_total{result=\"generated\"} 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains("content_previews_total{result=\"cached\"} 5"),
        "{metrics}"
    );
}

on_both_stores!(previews_are_made_once_and_kept);

#[sqlx::test(migrations = false)]
async fn previews_exist_for_images_only_and_their_queries_are_validated(pool: sqlx::PgPool) {
    let app = TestApp::new(pool, common::Store::File).await;
    let doc = app.available("d.pdf", &pdf(1000, 50)).await;
    app.get(&format!("/api/v1/content/{doc}/preview"))
        .await
        .error(422, "BUSINESS_RULE_VIOLATION");
    let img = app.available("i.png", &png(20, 20)).await;
    for (query, field) in [
        ("size=huge", "size"),
        ("format=bmp", "format"),
        ("zoom=2", "zoom"),
    ] {
        assert_eq!(
            app.get(&format!("/api/v1/content/{img}/preview?{query}"))
                .await
                .error(400, "VALIDATION_ERROR")
                .as_deref(),
            Some(field),
            "{query}"
        );
    }
    app.get("/api/v1/content/00000000-0000-4000-8000-000000000000/preview")
        .await
        .error(404, "NOT_FOUND");
}
