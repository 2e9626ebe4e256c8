//! Admin writes: validation, slugs, conflicts, workflow, categories, featured rules.

mod common;

use common::{ADMIN, TestApp};
use http::Method;
use serde::Deserialize;
use serde_json::json;
use sqlx::PgPool;

const DEFAULT_CATEGORY: &str = "00000000-0000-4000-8000-000000000001";
const UNKNOWN: &str = "6f1c2a64-3b7e-4a0e-9a57-1d1f7c1ab001";

#[sqlx::test(migrations = false)]
async fn a_new_service_is_a_draft_in_the_default_category_with_a_generated_slug(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let s = app
        .create_service(json!({"title": "Crème Brûlée Clinic"}))
        .await;
    assert_eq!(s["publishing_status"], "draft");
    assert_eq!(s["category_id"], DEFAULT_CATEGORY);
    assert_eq!(s["category_name"], "Unassigned");
    assert_eq!(s["slug"], "creme-brulee-clinic");
    assert_eq!(s["created_by"], ADMIN);
    assert_eq!(s["is_deleted"], false);
    let res = app
        .get(&format!(
            "/admin/api/v1/services/{}",
            s["service_id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(res.status, 200);
    assert_eq!(res.body, s);
}

#[sqlx::test(migrations = false)]
async fn slugs_are_unique_among_live_services_and_reusable_after_delete(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let first = app.create_service(json!({"title": "Dialysis"})).await;
    let res = app
        .admin(
            Method::POST,
            "/admin/api/v1/services",
            Some(
                json!({"title": "Dialysis", "description": "d", "delivery_mode": "mobile_service"}),
            ),
        )
        .await;
    assert_eq!(res.error(409, "CONFLICT").as_deref(), Some("slug"));
    let second = app.create_service(json!({"title": "Other"})).await;
    let res = app
        .admin(
            Method::PUT,
            &format!(
                "/admin/api/v1/services/{}",
                second["service_id"].as_str().unwrap()
            ),
            Some(json!({"slug": "dialysis"})),
        )
        .await;
    assert_eq!(res.error(409, "CONFLICT").as_deref(), Some("slug"));
    let res = app
        .admin(
            Method::DELETE,
            &format!(
                "/admin/api/v1/services/{}",
                first["service_id"].as_str().unwrap()
            ),
            None,
        )
        .await;
    assert_eq!(res.status, 204);
    app.create_service(json!({"title": "Dialysis"})).await;

    app.create_category("Cardiology").await;
    let res = app
        .admin(
            Method::POST,
            "/admin/api/v1/services/categories",
            Some(json!({"name": "cardiology!"})),
        )
        .await;
    assert_eq!(res.error(409, "CONFLICT").as_deref(), Some("slug"));
}

#[sqlx::test(migrations = false)]
async fn malformed_bodies_are_400_envelopes_naming_the_field(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let ok = json!({"title": "T", "description": "D", "delivery_mode": "mobile_service"});
    let with = |k: &str, v: serde_json::Value| {
        let mut b = ok.clone();
        b[k] = v;
        b
    };
    let cases = [
        (with("title", json!(5)), "title"),
        (with("title", json!("x".repeat(256))), "title"),
        (with("title", json!("")), "title"),
        (
            with("description", json!("d".repeat(10_001))),
            "description",
        ),
        (with("delivery_mode", json!("teleport")), "delivery_mode"),
        (with("category_id", json!("not-a-uuid")), "category_id"),
        (with("order_number", json!(1.5)), "order_number"),
        (
            with("order_number", json!(99_999_999_999i64)),
            "order_number",
        ),
        (
            with("image_url", json!("http://insecure.example.org/a.png")),
            "image_url",
        ),
        (
            with("long_description_url", json!("/relative")),
            "long_description_url",
        ),
        (with("slug", json!("Not A Slug")), "slug"),
        (with("unknown", json!(1)), "unknown"),
        (
            json!({"description": "D", "delivery_mode": "mobile_service"}),
            "title",
        ),
        (json!([1, 2]), "body"),
        (with("title", json!("bad\u{0000}title")), "title"),
    ];
    for (body, field) in cases {
        let res = app
            .admin(Method::POST, "/admin/api/v1/services", Some(body.clone()))
            .await;
        assert_eq!(
            res.error(400, "VALIDATION_ERROR").as_deref(),
            Some(field),
            "{body}"
        );
    }
    let raw = |body: &'static str, ct: &'static str| {
        http::Request::post("/admin/api/v1/services")
            .header("x-user-id", ADMIN)
            .header("content-type", ct)
            .body(axum::body::Body::from(body))
            .unwrap()
    };
    let res = app.send(raw("{\"title\": ", "application/json")).await;
    assert_eq!(res.error(400, "VALIDATION_ERROR").as_deref(), Some("body"));
    let res = app.send(raw("{}", "text/plain")).await;
    res.error(415, "UNSUPPORTED_MEDIA_TYPE");
    let huge = Box::leak(format!("{{\"title\": \"{}\"}}", "x".repeat(70_000)).into_boxed_str());
    let res = app.send(raw(huge, "application/json")).await;
    res.error(413, "PAYLOAD_TOO_LARGE");
    let res = app
        .admin(
            Method::PUT,
            "/admin/api/v1/services/not-a-uuid",
            Some(json!({"title": "x"})),
        )
        .await;
    assert_eq!(res.error(400, "VALIDATION_ERROR").as_deref(), Some("id"));
    let res = app
        .admin(Method::GET, "/admin/api/v1/services?status=gone", None)
        .await;
    assert_eq!(
        res.error(400, "VALIDATION_ERROR").as_deref(),
        Some("status")
    );
    let res = app
        .admin(
            Method::GET,
            "/admin/api/v1/services?include_deleted=maybe",
            None,
        )
        .await;
    assert_eq!(
        res.error(400, "VALIDATION_ERROR").as_deref(),
        Some("include_deleted")
    );
    let written: i64 = sqlx::query_scalar("SELECT count(*) FROM services.services")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(written, 0, "no rejected request wrote anything");
}

#[sqlx::test(migrations = false)]
async fn writes_without_an_identity_are_401(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let res = app
        .request(
            Method::POST,
            "/admin/api/v1/services",
            Some(json!({"title": "T", "description": "D", "delivery_mode": "mobile_service"})),
            &[],
        )
        .await;
    res.error(401, "UNAUTHORIZED");
}

#[sqlx::test(migrations = false)]
async fn partial_updates_change_only_what_is_given_and_null_clears_urls(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let s = app
        .create_service(json!({"title": "Imaging", "image_url": "https://img.example.org/a.png", "order_number": 3}))
        .await;
    let path = format!(
        "/admin/api/v1/services/{}",
        s["service_id"].as_str().unwrap()
    );
    let res = app
        .admin(
            Method::PUT,
            &path,
            Some(json!({"image_url": null, "description": "New text"})),
        )
        .await;
    assert_eq!(res.status, 200, "{}", res.body);
    assert_eq!(res.body["image_url"], serde_json::Value::Null);
    assert_eq!(res.body["description"], "New text");
    assert_eq!(res.body["title"], "Imaging");
    assert_eq!(res.body["order_number"], 3);
    assert_eq!(
        res.body["slug"], "imaging",
        "the slug is kept when the title is not changed"
    );
    assert_eq!(res.body["modified_by"], ADMIN);
    let res = app.admin(Method::PUT, &path, Some(json!({}))).await;
    assert_eq!(res.error(400, "VALIDATION_ERROR").as_deref(), Some("body"));
    let res = app
        .admin(
            Method::PUT,
            &path,
            Some(json!({"publishing_status": "published"})),
        )
        .await;
    assert_eq!(
        res.error(400, "VALIDATION_ERROR").as_deref(),
        Some("publishing_status")
    );
    let res = app
        .admin(Method::PUT, &path, Some(json!({"category_id": UNKNOWN})))
        .await;
    assert_eq!(
        res.error(422, "BUSINESS_RULE_VIOLATION").as_deref(),
        Some("category_id")
    );
    let res = app
        .admin(
            Method::PUT,
            &format!("/admin/api/v1/services/{UNKNOWN}"),
            Some(json!({"title": "x"})),
        )
        .await;
    res.error(404, "NOT_FOUND");
}

#[sqlx::test(migrations = false)]
async fn status_transitions_follow_the_workflow_and_same_state_is_409(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let s = app.create_service(json!({"title": "Workflow"})).await;
    let id = s["service_id"].as_str().unwrap();
    let publish = format!("/admin/api/v1/services/{id}/publish");
    let archive = format!("/admin/api/v1/services/{id}/archive");

    let res = app.admin(Method::POST, &publish, None).await;
    assert_eq!(res.status, 200, "{}", res.body);
    assert_eq!(res.body["previous_status"], "draft");
    assert_eq!(res.body["current_status"], "published");
    assert_eq!(res.body["published_by"], ADMIN);
    assert!(res.body["published_at"].is_string());
    assert_eq!(res.body["service_id"], id);

    app.admin(Method::POST, &publish, None)
        .await
        .error(409, "CONFLICT");
    let res = app.admin(Method::POST, &archive, None).await;
    assert_eq!(res.body["previous_status"], "published");
    assert_eq!(res.body["current_status"], "archived");
    assert_eq!(res.body["archived_by"], ADMIN);
    assert_eq!(
        app.get(&format!("/api/v1/services/{id}")).await.status,
        404,
        "archived is not public"
    );
    app.admin(Method::POST, &archive, None)
        .await
        .error(409, "CONFLICT");
    let res = app.admin(Method::POST, &publish, None).await;
    assert_eq!(res.body["previous_status"], "archived");

    let draft = app
        .create_service(json!({"title": "Straight to archive"}))
        .await;
    let res = app
        .admin(
            Method::POST,
            &format!(
                "/admin/api/v1/services/{}/archive",
                draft["service_id"].as_str().unwrap()
            ),
            None,
        )
        .await;
    assert_eq!(res.body["previous_status"], "draft");

    app.admin(
        Method::POST,
        &format!("/admin/api/v1/services/{UNKNOWN}/publish"),
        None,
    )
    .await
    .error(404, "NOT_FOUND");
}

#[sqlx::test(migrations = false)]
async fn delete_is_soft_idempotent_and_hides_from_default_lists(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let s = app.create_service(json!({"title": "Gone soon"})).await;
    let path = format!(
        "/admin/api/v1/services/{}",
        s["service_id"].as_str().unwrap()
    );
    assert_eq!(app.admin(Method::DELETE, &path, None).await.status, 204);
    assert_eq!(
        app.admin(Method::DELETE, &path, None).await.status,
        204,
        "idempotent"
    );
    let res = app.get(&path).await;
    assert_eq!(res.body["is_deleted"], true);
    assert_eq!(res.body["deleted_by"], ADMIN);
    assert_eq!(
        app.get("/admin/api/v1/services").await.body["pagination"]["total_items"],
        0
    );
    assert_eq!(
        app.get("/admin/api/v1/services?include_deleted=true")
            .await
            .body["pagination"]["total_items"],
        1
    );
    app.admin(Method::PUT, &path, Some(json!({"title": "back"})))
        .await
        .error(404, "NOT_FOUND");
    app.admin(Method::POST, &format!("{path}/publish"), None)
        .await
        .error(404, "NOT_FOUND");
    app.admin(
        Method::DELETE,
        &format!("/admin/api/v1/services/{UNKNOWN}"),
        None,
    )
    .await
    .error(404, "NOT_FOUND");
}

#[sqlx::test(migrations = false)]
async fn admin_list_filters_by_status_and_category(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let cat = app.create_category("Filtered").await;
    app.published(json!({"title": "P1", "category_id": cat["category_id"]}))
        .await;
    app.create_service(json!({"title": "D1", "category_id": cat["category_id"]}))
        .await;
    app.create_service(json!({"title": "D2"})).await;
    assert_eq!(
        app.get("/admin/api/v1/services?status=draft").await.body["pagination"]["total_items"],
        2
    );
    assert_eq!(
        app.get("/admin/api/v1/services?status=published")
            .await
            .body["services"][0]["title"],
        "P1"
    );
    let res = app
        .get(&format!(
            "/admin/api/v1/services?category_id={}&status=draft",
            cat["category_id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(res.body["services"][0]["title"], "D1");
    assert_eq!(res.body["pagination"]["total_items"], 1);
}

#[sqlx::test(migrations = false)]
async fn deleting_a_category_moves_its_services_to_the_default_one_atomically(pool: PgPool) {
    let app = TestApp::new(pool.clone()).await;
    let cat = app.create_category("Closing").await;
    let cat_id = cat["category_id"].as_str().unwrap();
    let a = app
        .published(json!({"title": "A", "category_id": cat_id}))
        .await;
    app.create_service(json!({"title": "B", "category_id": cat_id}))
        .await;
    let res = app
        .admin(
            Method::POST,
            "/admin/api/v1/services/featured-categories",
            Some(json!({"category_id": cat_id, "feature_position": 1})),
        )
        .await;
    assert_eq!(res.status, 201);

    assert_eq!(
        app.admin(
            Method::DELETE,
            &format!("/admin/api/v1/services/categories/{cat_id}"),
            None
        )
        .await
        .status,
        204
    );
    let moved: i64 =
        sqlx::query_scalar("SELECT count(*) FROM services.services WHERE category_id = $1::uuid")
            .bind(DEFAULT_CATEGORY)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(moved, 2);
    let res = app
        .get(&format!(
            "/admin/api/v1/services/{}",
            a["service_id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(res.body["category_name"], "Unassigned");
    assert_eq!(
        app.get("/api/v1/services/featured").await.body["featured_categories"],
        json!([])
    );
    app.get(&format!("/admin/api/v1/services/categories/{cat_id}"))
        .await
        .error(404, "NOT_FOUND");
    app.admin(
        Method::PUT,
        &format!("/admin/api/v1/services/categories/{cat_id}"),
        Some(json!({"name": "x"})),
    )
    .await
    .error(404, "NOT_FOUND");
    assert_eq!(
        app.admin(
            Method::DELETE,
            &format!("/admin/api/v1/services/categories/{cat_id}"),
            None
        )
        .await
        .status,
        204
    );
    // The slug is free again.
    app.create_category("Closing").await;
}

#[sqlx::test(migrations = false)]
async fn the_default_category_can_be_neither_deleted_nor_featured(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let res = app
        .admin(
            Method::DELETE,
            &format!("/admin/api/v1/services/categories/{DEFAULT_CATEGORY}"),
            None,
        )
        .await;
    res.error(422, "BUSINESS_RULE_VIOLATION");
    let res = app
        .admin(
            Method::POST,
            "/admin/api/v1/services/featured-categories",
            Some(json!({"category_id": DEFAULT_CATEGORY, "feature_position": 1})),
        )
        .await;
    res.error(422, "BUSINESS_RULE_VIOLATION");
    let res = app
        .admin(
            Method::PUT,
            &format!("/admin/api/v1/services/categories/{DEFAULT_CATEGORY}"),
            Some(json!({"order_number": 9})),
        )
        .await;
    assert_eq!(
        res.status, 200,
        "the default category can be renamed or reordered"
    );
}

#[sqlx::test(migrations = false)]
async fn featured_positions_and_categories_conflict_until_removed(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let a = app.create_category("Feat A").await;
    let b = app.create_category("Feat B").await;
    let c = app.create_category("Feat C").await;
    let feature = |cat: &serde_json::Value, pos: i64| json!({"category_id": cat["category_id"], "feature_position": pos});
    let url = "/admin/api/v1/services/featured-categories";
    let res = app.admin(Method::POST, url, Some(feature(&a, 1))).await;
    assert_eq!(res.status, 201);
    assert_eq!(res.body["feature_position"], 1);
    assert_eq!(res.body["name"], "Feat A");
    assert_eq!(
        app.admin(Method::POST, url, Some(feature(&b, 1)))
            .await
            .error(409, "CONFLICT")
            .as_deref(),
        Some("feature_position")
    );
    assert_eq!(
        app.admin(Method::POST, url, Some(feature(&a, 2)))
            .await
            .error(409, "CONFLICT")
            .as_deref(),
        Some("category_id")
    );
    for pos in [0, 3, -1] {
        let res = app.admin(Method::POST, url, Some(feature(&b, pos))).await;
        assert_eq!(
            res.error(400, "VALIDATION_ERROR").as_deref(),
            Some("feature_position")
        );
    }
    app.admin(
        Method::POST,
        url,
        Some(json!({"category_id": UNKNOWN, "feature_position": 2})),
    )
    .await
    .error(422, "BUSINESS_RULE_VIOLATION");
    assert_eq!(
        app.admin(Method::POST, url, Some(feature(&b, 2)))
            .await
            .status,
        201
    );
    assert_eq!(
        app.get(url).await.body["featured_categories"]
            .as_array()
            .unwrap()
            .len(),
        2
    );

    assert_eq!(
        app.admin(Method::DELETE, &format!("{url}/1"), None)
            .await
            .status,
        204
    );
    assert_eq!(
        app.admin(Method::DELETE, &format!("{url}/1"), None)
            .await
            .status,
        204,
        "idempotent"
    );
    app.admin(Method::DELETE, &format!("{url}/7"), None)
        .await
        .error(400, "VALIDATION_ERROR");
    app.admin(Method::DELETE, &format!("{url}/one"), None)
        .await
        .error(400, "VALIDATION_ERROR");
    assert_eq!(
        app.admin(Method::POST, url, Some(feature(&c, 1)))
            .await
            .status,
        201
    );

    let deleted = app.create_category("Feat D").await;
    app.admin(
        Method::DELETE,
        &format!(
            "/admin/api/v1/services/categories/{}",
            deleted["category_id"].as_str().unwrap()
        ),
        None,
    )
    .await;
    app.admin(Method::DELETE, &format!("{url}/1"), None).await;
    let res = app
        .admin(Method::POST, url, Some(feature(&deleted, 1)))
        .await;
    assert_eq!(
        res.error(422, "BUSINESS_RULE_VIOLATION").as_deref(),
        Some("category_id")
    );
}

#[sqlx::test(migrations = false)]
async fn unknown_routes_are_404_and_wrong_methods_405_in_the_envelope(pool: PgPool) {
    let app = TestApp::new(pool).await;
    app.get("/api/v2/nothing").await.error(404, "NOT_FOUND");
    app.admin(Method::DELETE, "/api/v1/services", None)
        .await
        .error(405, "METHOD_NOT_ALLOWED");
    app.admin(Method::PATCH, "/admin/api/v1/services", None)
        .await
        .error(405, "METHOD_NOT_ALLOWED");
}

#[sqlx::test(migrations = false)]
async fn constraint_races_map_to_409_by_constraint_name(pool: PgPool) {
    // The handlers check first; these inserts take the path a concurrent writer would,
    // straight into the unique constraints.
    let app = TestApp::new(pool.clone()).await;
    let a = app.create_category("Race A").await;
    let b = app.create_category("Race B").await;
    let id =
        |v: &serde_json::Value| uuid::Uuid::parse_str(v["category_id"].as_str().unwrap()).unwrap();
    let mut tx = pool.begin().await.unwrap();
    services_api::db::featured::insert(&mut tx, uuid::Uuid::now_v7(), id(&a), 1, "t")
        .await
        .unwrap();
    let position =
        services_api::db::featured::insert(&mut tx, uuid::Uuid::now_v7(), id(&b), 1, "t")
            .await
            .unwrap_err();
    drop(tx);
    let mut tx = pool.begin().await.unwrap();
    services_api::db::featured::insert(&mut tx, uuid::Uuid::now_v7(), id(&a), 1, "t")
        .await
        .unwrap();
    let category =
        services_api::db::featured::insert(&mut tx, uuid::Uuid::now_v7(), id(&a), 2, "t")
            .await
            .unwrap_err();
    drop(tx);
    let new = services_api::domain::inputs::CreateCategory::deserialize(json!({"name": "Race A"}))
        .unwrap()
        .validate()
        .unwrap();
    let mut tx = pool.begin().await.unwrap();
    let slug = services_api::db::categories::insert(&mut tx, uuid::Uuid::now_v7(), &new, "t")
        .await
        .unwrap_err();
    drop(tx);
    for (err, field) in [
        (position, "feature_position"),
        (category, "category_id"),
        (slug, "slug"),
    ] {
        let api = ic_http::ApiError::from(services_api::error::Error::from(err));
        assert_eq!(api.code(), ic_http::ErrorCode::Conflict);
        assert_eq!(api.envelope()["error"]["details"]["field"], field);
    }
}

#[sqlx::test(migrations = false)]
async fn a_category_delete_records_each_moved_service_and_moves_deleted_ones_too(pool: PgPool) {
    let app = TestApp::new(pool.clone()).await;
    let cat = app.create_category("Moving").await;
    let cat_id = cat["category_id"].as_str().unwrap();
    let live = app
        .create_service(json!({"title": "Live", "category_id": cat_id}))
        .await;
    let gone = app
        .create_service(json!({"title": "Gone", "category_id": cat_id}))
        .await;
    app.admin(
        Method::DELETE,
        &format!(
            "/admin/api/v1/services/{}",
            gone["service_id"].as_str().unwrap()
        ),
        None,
    )
    .await;
    app.wait_relayed().await;
    let res = app
        .request(
            Method::DELETE,
            &format!("/admin/api/v1/services/categories/{cat_id}"),
            None,
            &[
                ("x-user-id", "remover"),
                ("x-correlation-id", "8d3f6c1e-2b4a-4c5d-9e6f-7a8b9c0d1e2f"),
            ],
        )
        .await;
    assert_eq!(res.status, 204);
    let left: i64 =
        sqlx::query_scalar("SELECT count(*) FROM services.services WHERE category_id = $1::uuid")
            .bind(cat_id)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(left, 0, "no service points at the deleted category");
    let res = app
        .get(&format!(
            "/admin/api/v1/services/{}",
            live["service_id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(res.body["modified_by"], "remover");
    app.wait_relayed().await;
    let events = common::events_with_correlation(
        &app.jetstream,
        uuid::Uuid::parse_str("8d3f6c1e-2b4a-4c5d-9e6f-7a8b9c0d1e2f").unwrap(),
    )
    .await;
    let subjects: Vec<&str> = events.iter().map(|(s, _)| s.as_str()).collect();
    assert_eq!(
        subjects
            .iter()
            .filter(|s| **s == "ic.services.service.updated")
            .count(),
        2,
        "{subjects:?}"
    );
    assert_eq!(
        subjects
            .iter()
            .filter(|s| **s == "ic.services.category.deleted")
            .count(),
        1,
        "{subjects:?}"
    );
}

#[sqlx::test(migrations = false)]
async fn the_default_category_is_recognised_by_its_flag(pool: PgPool) {
    let app = TestApp::new(pool.clone()).await;
    // Whatever its id, the flagged category is the default one.
    let res = app.get("/admin/api/v1/services/categories").await;
    let default = res.body["categories"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["is_default_unassigned"] == true)
        .unwrap()
        .clone();
    let res = app
        .admin(
            Method::DELETE,
            &format!(
                "/admin/api/v1/services/categories/{}",
                default["category_id"].as_str().unwrap()
            ),
            None,
        )
        .await;
    res.error(422, "BUSINESS_RULE_VIOLATION");
    app.get(&format!(
        "/api/v1/services/categories/{}/services",
        default["category_id"].as_str().unwrap()
    ))
    .await
    .error(404, "NOT_FOUND");
}
