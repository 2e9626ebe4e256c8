//! Virus scanning with the harness's real clamd: the EICAR test file ends `failed` with
//! an `infected` scan and is never served; rescans are queued and recorded.

mod common;

use common::{Store, TestApp, pdf};
use http::Method;
use ic_testkit::storage::{EICAR, EICAR_SIGNATURE};
use sqlx::PgPool;

#[sqlx::test(migrations = false)]
async fn the_eicar_file_fails_with_an_infected_scan_and_is_never_served(pool: PgPool) {
    let app = TestApp::new(pool, Store::File).await;
    let res = app
        .upload(
            "eicar.txt",
            Some("text/plain"),
            EICAR,
            &[("access_level", "public")],
        )
        .await;
    assert_eq!(res.status, 202, "{}", res.body);
    let id = res.body["content_id"].as_str().unwrap().to_owned();
    let status = app.wait_status(&id, "failed").await;
    assert_eq!(
        status["processing_details"]["virus_scan_status"],
        "infected"
    );
    assert!(
        status["error_message"]
            .as_str()
            .unwrap()
            .contains(EICAR_SIGNATURE),
        "{status}"
    );
    let scans = app
        .admin(
            Method::GET,
            &format!("/admin/api/v1/content/{id}/virus-scans"),
            None,
        )
        .await;
    let scan = &scans.body["virus_scans"][0];
    assert_eq!(scan["scan_status"], "infected");
    assert_eq!(scan["scanner_engine"], "clamav");
    assert!(
        scan["scanner_version"]
            .as_str()
            .unwrap()
            .starts_with("ClamAV")
    );
    assert!(
        scan["threats_detected"][0]
            .as_str()
            .unwrap()
            .contains(EICAR_SIGNATURE),
        "{scan}"
    );
    for suffix in ["", "/download"] {
        app.get(&format!("/api/v1/content/{id}{suffix}"))
            .await
            .error(404, "NOT_FOUND");
    }
    // A rescan is queued and scans again, with the same verdict.
    let res = app
        .admin(
            Method::POST,
            &format!("/admin/api/v1/content/{id}/virus-scan"),
            None,
        )
        .await;
    assert_eq!(res.status, 202, "{}", res.body);
    ic_testkit::eventually(
        std::time::Duration::from_secs(30),
        "a second scan",
        || async {
            let scans = app
                .admin(
                    Method::GET,
                    &format!("/admin/api/v1/content/{id}/virus-scans"),
                    None,
                )
                .await;
            (scans.body["virus_scans"].as_array().unwrap().len() == 2).then_some(())
        },
    )
    .await;
    app.wait_status(&id, "failed").await;
}

#[sqlx::test(migrations = false)]
async fn without_a_scanner_files_are_recorded_as_skipped(pool: PgPool) {
    let mut options = common::Options::new(Store::File);
    options.clamd = None;
    let app = TestApp::with(pool, options).await;
    let id = app.available("s.pdf", &pdf(1000, 9)).await;
    let scans = app
        .admin(
            Method::GET,
            &format!("/admin/api/v1/content/{id}/virus-scans"),
            None,
        )
        .await;
    assert_eq!(scans.body["virus_scans"][0]["scan_status"], "skipped");
}

#[sqlx::test(migrations = false)]
async fn a_scanner_that_is_down_is_retried_and_the_file_waits_in_processing(pool: PgPool) {
    let mut options = common::Options::new(Store::File);
    // Nothing listens there.
    options.clamd = Some(format!("127.0.0.1:{}", ic_testkit::free_port()));
    let app = TestApp::with(pool, options).await;
    let res = app.upload("w.pdf", None, &pdf(1000, 10), &[]).await;
    let id = res.body["content_id"].as_str().unwrap().to_owned();
    let status = ic_testkit::eventually(
        std::time::Duration::from_secs(30),
        "two attempts",
        || async {
            let res = app
                .admin(
                    Method::GET,
                    &format!("/admin/api/v1/content/{id}/status"),
                    None,
                )
                .await;
            (res.body["processing_attempts"].as_i64() >= Some(2)).then_some(res.body)
        },
    )
    .await;
    assert_eq!(status["upload_status"], "processing");
    assert!(
        status["error_message"]
            .as_str()
            .unwrap()
            .contains("will retry"),
        "{status}"
    );
    let queue = app
        .admin(Method::GET, "/admin/api/v1/content/processing-queue", None)
        .await;
    assert_eq!(queue.body["processing"], 1, "{}", queue.body);
}
