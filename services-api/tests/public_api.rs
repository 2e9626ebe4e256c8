//! Public reads: visibility, paging, filters, ETags, search, categories, featured.

mod common;

use common::TestApp;
use http::Method;
use serde_json::json;
use sqlx::PgPool;

#[sqlx::test(migrations = false)]
async fn only_published_live_services_in_live_categories_are_listed_in_order(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let cat = app.create_category("Cardiology").await;
    let cat_id = cat["category_id"].as_str().unwrap();
    app.published(json!({"title": "Zeta care", "order_number": 1}))
        .await;
    app.published(json!({"title": "Alpha care", "order_number": 1}))
        .await;
    app.published(json!({"title": "First", "order_number": 0, "category_id": cat_id}))
        .await;
    app.create_service(json!({"title": "Draft only"})).await;
    let deleted = app.published(json!({"title": "Deleted one"})).await;
    let res = app
        .admin(
            Method::DELETE,
            &format!(
                "/admin/api/v1/services/{}",
                deleted["service_id"].as_str().unwrap()
            ),
            None,
        )
        .await;
    assert_eq!(res.status, 204);

    let res = app.get("/api/v1/services").await;
    assert_eq!(res.status, 200, "{}", res.body);
    let titles: Vec<&str> = res.body["services"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["title"].as_str().unwrap())
        .collect();
    assert_eq!(titles, ["First", "Alpha care", "Zeta care"]);
    assert_eq!(
        res.body["pagination"],
        json!({"page": 1, "limit": 20, "total_items": 3, "total_pages": 1, "has_next": false, "has_previous": false})
    );
    let first = &res.body["services"][0];
    assert_eq!(first["category_name"], "Cardiology");
    assert!(
        first.get("publishing_status").is_none(),
        "list items omit the status"
    );
    for key in [
        "service_id",
        "title",
        "description",
        "slug",
        "long_description_url",
        "category_id",
        "image_url",
        "delivery_mode",
        "created_on",
    ] {
        assert!(first.get(key).is_some(), "missing {key}");
    }

    // Deleting the category hides nothing: its services move to the default category.
    let res = app
        .admin(
            Method::DELETE,
            &format!("/admin/api/v1/services/categories/{cat_id}"),
            None,
        )
        .await;
    assert_eq!(res.status, 204);
    let res = app.get("/api/v1/services").await;
    assert_eq!(res.body["pagination"]["total_items"], 3);
}

#[sqlx::test(migrations = false)]
async fn paging_edges_are_validated_and_past_the_end_is_empty(pool: PgPool) {
    let app = TestApp::new(pool).await;
    for i in 0..5 {
        app.published(json!({"title": format!("Service {i}")}))
            .await;
    }
    let res = app.get("/api/v1/services?page=2&limit=2").await;
    assert_eq!(res.body["services"].as_array().unwrap().len(), 2);
    assert_eq!(res.body["pagination"]["total_pages"], 3);
    assert_eq!(res.body["pagination"]["has_next"], true);
    assert_eq!(res.body["pagination"]["has_previous"], true);

    let res = app.get("/api/v1/services?page=9&limit=2").await;
    assert_eq!(res.status, 200);
    assert_eq!(res.body["services"], json!([]));
    assert_eq!(res.body["pagination"]["total_items"], 5);
    assert_eq!(res.body["pagination"]["has_next"], false);

    for (query, field) in [
        ("page=0", "page"),
        ("limit=0", "limit"),
        ("limit=101", "limit"),
        ("page=abc", "page"),
        ("limit=-5", "limit"),
        ("page=99999999999", "page"),
        ("category_id=not-a-uuid", "category_id"),
        ("delivery_mode=teleport", "delivery_mode"),
    ] {
        let res = app.get(&format!("/api/v1/services?{query}")).await;
        assert_eq!(
            res.error(400, "VALIDATION_ERROR").as_deref(),
            Some(field),
            "{query}"
        );
    }
}

#[sqlx::test(migrations = false)]
async fn filters_by_category_and_delivery_mode(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let cat = app.create_category("Imaging").await;
    let cat_id = cat["category_id"].as_str().unwrap();
    app.published(
        json!({"title": "Mobile X-ray", "delivery_mode": "mobile_service", "category_id": cat_id}),
    )
    .await;
    app.published(
        json!({"title": "MRI", "delivery_mode": "outpatient_service", "category_id": cat_id}),
    )
    .await;
    app.published(json!({"title": "Ward care", "delivery_mode": "inpatient_service"}))
        .await;

    let res = app
        .get(&format!("/api/v1/services?category_id={cat_id}"))
        .await;
    assert_eq!(res.body["pagination"]["total_items"], 2);
    let res = app
        .get("/api/v1/services?delivery_mode=mobile_service")
        .await;
    assert_eq!(res.body["services"][0]["title"], "Mobile X-ray");
    assert_eq!(res.body["pagination"]["total_items"], 1);
    let res = app
        .get(&format!(
            "/api/v1/services?category_id={cat_id}&delivery_mode=inpatient_service"
        ))
        .await;
    assert_eq!(res.body["pagination"]["total_items"], 0);

    let res = app
        .get(&format!(
            "/api/v1/services/categories/{cat_id}/services?limit=1"
        ))
        .await;
    assert_eq!(res.status, 200);
    assert_eq!(res.body["services"][0]["title"], "MRI");
    assert_eq!(res.body["pagination"]["total_items"], 2);
    let res = app
        .get("/api/v1/services/categories/6f1c2a64-3b7e-4a0e-9a57-1d1f7c1ab001/services")
        .await;
    res.error(404, "NOT_FOUND");
}

#[sqlx::test(migrations = false)]
async fn single_service_by_id_and_slug_and_404s(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let cat = app.create_category("Dermatology").await;
    let s = app
        .published(json!({"title": "Skin Check", "category_id": cat["category_id"], "image_url": "https://img.example.org/skin.png"}))
        .await;
    let id = s["service_id"].as_str().unwrap();
    let res = app.get(&format!("/api/v1/services/{id}")).await;
    assert_eq!(res.status, 200);
    assert_eq!(res.body["slug"], "skin-check");
    assert_eq!(res.body["category_name"], "Dermatology");
    assert_eq!(res.body["category_slug"], "dermatology");
    assert_eq!(res.body["publishing_status"], "published");
    assert!(
        res.body.get("created_by").is_none(),
        "public views hide admin fields"
    );
    let res = app.get("/api/v1/services/slug/skin-check").await;
    assert_eq!(res.body["service_id"], id);

    let draft = app.create_service(json!({"title": "Hidden"})).await;
    let res = app
        .get(&format!(
            "/api/v1/services/{}",
            draft["service_id"].as_str().unwrap()
        ))
        .await;
    res.error(404, "NOT_FOUND");
    app.get("/api/v1/services/slug/hidden")
        .await
        .error(404, "NOT_FOUND");
    app.get("/api/v1/services/slug/NOT%20A%20SLUG")
        .await
        .error(404, "NOT_FOUND");
    let res = app.get("/api/v1/services/not-a-uuid").await;
    assert_eq!(res.error(400, "VALIDATION_ERROR").as_deref(), Some("id"));
}

#[sqlx::test(migrations = false)]
async fn public_gets_send_etags_and_answer_if_none_match_with_304(pool: PgPool) {
    let app = TestApp::new(pool).await;
    app.published(json!({"title": "Cached"})).await;
    let res = app.get("/api/v1/services").await;
    assert_eq!(res.header("cache-control"), Some("public, max-age=60"));
    let etag = res.header("etag").unwrap().to_owned();
    let res = app
        .request(
            Method::GET,
            "/api/v1/services",
            None,
            &[("if-none-match", &etag)],
        )
        .await;
    assert_eq!(res.status, 304);
    assert!(res.bytes.is_empty());
    assert_eq!(res.header("etag"), Some(etag.as_str()));

    app.published(json!({"title": "Another"})).await;
    let res = app
        .request(
            Method::GET,
            "/api/v1/services",
            None,
            &[("if-none-match", &etag)],
        )
        .await;
    assert_eq!(res.status, 200, "a change gives a new ETag");
    assert_ne!(res.header("etag"), Some(etag.as_str()));
    let res = app.get("/api/v1/services/categories").await;
    assert!(res.header("etag").is_some());
}

#[sqlx::test(migrations = false)]
async fn search_ranks_title_matches_first_stems_and_survives_operators(pool: PgPool) {
    let app = TestApp::new(pool).await;
    app.published(json!({"title": "Physiotherapy", "description": "Sessions held at our clinic, clinic after clinic."})).await;
    app.published(json!({"title": "Walk-in Clinic", "description": "No appointment needed."}))
        .await;
    app.published(json!({"title": "Nutrition", "description": "Diet advice."}))
        .await;
    app.create_service(json!({"title": "Draft clinic"})).await;

    let res = app.get("/api/v1/services/search?q=clinics").await;
    assert_eq!(res.status, 200, "{}", res.body);
    let titles: Vec<&str> = res.body["services"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["title"].as_str().unwrap())
        .collect();
    assert_eq!(
        titles,
        ["Walk-in Clinic", "Physiotherapy"],
        "title match first, stemmed, drafts hidden"
    );
    assert_eq!(res.body["query"], "clinics");
    assert_eq!(res.body["search_metadata"]["total_matches"], 2);
    assert!(
        res.body["search_metadata"]["search_time_ms"]
            .as_f64()
            .unwrap()
            >= 0.0
    );

    for q in [
        "%22unterminated",
        "clinic%20%26%20%7C%20!%20(",
        "%27%3B%20DROP%20TABLE%20services%3B--",
        "-clinic",
        "or",
        "the",
        "%E2%9D%A4",
        "a%3A*%20%3C-%3E%20b",
    ] {
        let res = app.get(&format!("/api/v1/services/search?q={q}")).await;
        assert_eq!(res.status, 200, "q={q}: {}", res.body);
    }
    let res = app.get("/api/v1/services/search").await;
    assert_eq!(res.error(400, "VALIDATION_ERROR").as_deref(), Some("q"));
    let res = app
        .get(&format!("/api/v1/services/search?q={}", "a".repeat(201)))
        .await;
    assert_eq!(res.error(400, "VALIDATION_ERROR").as_deref(), Some("q"));
    let res = app.get("/api/v1/services/search?q=a%00b").await;
    assert_eq!(res.error(400, "VALIDATION_ERROR").as_deref(), Some("q"));
    let res = app.get("/api/v1/services/search?q=clinic&limit=51").await;
    assert_eq!(res.error(400, "VALIDATION_ERROR").as_deref(), Some("limit"));
}

#[sqlx::test(migrations = false)]
async fn categories_exclude_the_default_and_count_published_services(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let b = app
        .admin(
            Method::POST,
            "/admin/api/v1/services/categories",
            Some(json!({"name": "B", "order_number": 2})),
        )
        .await
        .body;
    let a = app
        .admin(
            Method::POST,
            "/admin/api/v1/services/categories",
            Some(json!({"name": "A", "order_number": 1})),
        )
        .await
        .body;
    app.published(json!({"title": "One", "category_id": b["category_id"]}))
        .await;
    app.create_service(json!({"title": "Two", "category_id": b["category_id"]}))
        .await;
    let res = app.get("/api/v1/services/categories").await;
    let cats = res.body["categories"].as_array().unwrap();
    assert_eq!(cats.len(), 2);
    assert_eq!(cats[0]["category_id"], a["category_id"]);
    assert_eq!(cats[1]["service_count"], 1);

    let res = app.get("/admin/api/v1/services/categories").await;
    let cats = res.body["categories"].as_array().unwrap();
    assert_eq!(cats.len(), 3);
    assert!(cats.iter().any(|c| c["is_default_unassigned"] == true));
}

#[sqlx::test(migrations = false)]
async fn featured_lists_categories_by_position_with_their_published_services(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let c1 = app.create_category("Primary care").await;
    let c2 = app.create_category("Pediatrics").await;
    app.published(json!({"title": "Check-up", "category_id": c1["category_id"]}))
        .await;
    app.create_service(json!({"title": "Unpublished", "category_id": c1["category_id"]}))
        .await;
    for (cat, pos) in [(&c2, 1), (&c1, 2)] {
        let res = app
            .admin(
                Method::POST,
                "/admin/api/v1/services/featured-categories",
                Some(json!({"category_id": cat["category_id"], "feature_position": pos})),
            )
            .await;
        assert_eq!(res.status, 201, "{}", res.body);
    }
    let res = app.get("/api/v1/services/featured").await;
    let featured = res.body["featured_categories"].as_array().unwrap();
    assert_eq!(featured.len(), 2);
    assert_eq!(featured[0]["name"], "Pediatrics");
    assert_eq!(featured[0]["feature_position"], 1);
    assert_eq!(featured[0]["services"], json!([]));
    assert_eq!(featured[1]["slug"], "primary-care");
    assert_eq!(featured[1]["services"].as_array().unwrap().len(), 1);
}

#[sqlx::test(migrations = false)]
async fn services_of_a_deleted_category_are_never_public(pool: PgPool) {
    let app = TestApp::new(pool.clone()).await;
    let cat = app.create_category("Vanishing").await;
    let s = app
        .published(json!({"title": "Orphan", "category_id": cat["category_id"]}))
        .await;
    // Not through the API (which moves services first): the guard must hold on its own.
    sqlx::query("UPDATE services.service_categories SET is_deleted = true, deleted_on = now() WHERE category_id = $1::uuid")
        .bind(cat["category_id"].as_str().unwrap())
        .execute(&pool)
        .await
        .unwrap();
    assert_eq!(
        app.get("/api/v1/services").await.body["pagination"]["total_items"],
        0
    );
    app.get(&format!(
        "/api/v1/services/{}",
        s["service_id"].as_str().unwrap()
    ))
    .await
    .error(404, "NOT_FOUND");
    app.get("/api/v1/services/slug/orphan")
        .await
        .error(404, "NOT_FOUND");
    assert_eq!(
        app.get("/api/v1/services/search?q=orphan").await.body["search_metadata"]["total_matches"],
        0
    );
}
