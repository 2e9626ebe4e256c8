//! A real services-api behind the gateway in tests.

use std::net::SocketAddr;

/// Migrates the test database, adds one published service (`title`, `slug`) and serves
/// services-api on a free loopback port (NATS from `cargo xtask test`).
pub async fn services_api_with(pool: &sqlx::PgPool, title: &str, slug: &str) -> SocketAddr {
    let mut conn = pool.acquire().await.unwrap();
    ic_migrations::up_all(&mut conn).await.expect("migrations");
    drop(conn);
    sqlx::query(
        "INSERT INTO services.services (service_id, title, description, slug, category_id, delivery_mode, publishing_status, created_by)
         VALUES (gen_random_uuid(), $1, 'Seen through the gateway.', $2, '00000000-0000-4000-8000-000000000001', 'mobile_service', 'published', 't')",
    )
    .bind(title)
    .bind(slug)
    .execute(pool)
    .await
    .unwrap();
    #[allow(clippy::disallowed_methods)]
    let nats_url = std::env::var("NATS_URL").expect("NATS_URL from cargo xtask test");
    let nats = async_nats::ConnectOptions::new()
        .retry_on_initial_connect()
        .connect(nats_url)
        .await
        .unwrap();
    let backend = services_api::development_app(pool.clone(), nats);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, backend).await });
    addr
}
