//! The `migrate` binary against real PostgreSQL: approaches, backups, validation, the
//! audit-table check, the advisory lock and the timeout.

use std::{
    process::{Command, Output, Stdio},
    time::Duration,
};

use serde_json::Value;
use sqlx::{Connection, PgConnection, PgPool};

fn url_of(pool: &PgPool) -> String {
    ic_testkit::database_url(
        pool.connect_options()
            .get_database()
            .expect("test database name"),
    )
}

fn migrate(url: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_migrate"));
    cmd.env_remove("ENVIRONMENT")
        .env_remove("MIGRATION_APPROACH")
        .env_remove("MIGRATION_APPROVED")
        .env_remove("MIGRATION_TIMEOUT")
        .env("DATABASE_URL", url)
        .args(args);
    cmd
}

fn run(url: &str, args: &[&str]) -> Output {
    migrate(url, args).output().expect("run migrate")
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `migrate up --environment staging --output json` with a fresh backup directory.
fn staging_up(url: &str) -> (Output, tempfile::TempDir) {
    let backups = tempfile::tempdir().unwrap();
    let dir = backups.path().to_str().unwrap().to_owned();
    let out = run(
        url,
        &[
            "up",
            "--environment",
            "staging",
            "--output",
            "json",
            "--backup-dir",
            &dir,
        ],
    );
    (out, backups)
}

fn summary(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|_| panic!("JSON summary expected: {}", text(out)))
}

#[sqlx::test(migrations = false)]
async fn development_applies_everything_and_the_json_summary_has_every_field(pool: PgPool) {
    let url = url_of(&pool);
    let out = run(&url, &["up", "--output", "json"]);
    assert!(out.status.success(), "{}", text(&out));
    let s = summary(&out);
    for key in [
        "postgresMigrationStatus",
        "schemaValidationResult",
        "auditTablesCheck",
        "migrationBackupStatus",
        "applied",
        "duration_ms",
    ] {
        assert!(s.get(key).is_some(), "summary lacks {key}: {s}");
    }
    assert_eq!(s["postgresMigrationStatus"], "success");
    assert_eq!(
        s["schemaValidationResult"], "compliant",
        "the committed snapshot matches: {s}"
    );
    assert_eq!(s["auditTablesCheck"], 0);
    assert_eq!(
        s["applied"].as_array().unwrap().len(),
        ic_migrations::MIGRATIONS.len()
    );
    let again = summary(&run(&url, &["up", "--output", "json"]));
    assert_eq!(
        again["applied"],
        serde_json::json!([]),
        "a second run applies nothing"
    );
    let status = text(&run(&url, &["status"]));
    assert!(status.contains("services/0002_outbox applied"), "{status}");
}

#[sqlx::test(migrations = false)]
async fn check_audit_tables_prints_zero_and_fails_when_one_appears(pool: PgPool) {
    let url = url_of(&pool);
    assert!(run(&url, &["up"]).status.success());
    let out = run(&url, &["check-audit-tables"]);
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "0");
    sqlx::query("CREATE TABLE public.service_audit_log (id int)")
        .execute(&pool)
        .await
        .unwrap();
    let out = run(&url, &["check-audit-tables"]);
    assert!(!out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "1");
}

#[sqlx::test(migrations = false)]
async fn production_refuses_without_approval_and_runs_with_a_verified_backup(pool: PgPool) {
    let url = url_of(&pool);
    let backups = tempfile::tempdir().unwrap();
    let dir = backups.path().to_str().unwrap();
    let out = run(
        &url,
        &["up", "--environment", "production", "--backup-dir", dir],
    );
    assert!(!out.status.success());
    let said = text(&out);
    assert!(
        said.contains("plan:") && said.contains("apply services/0001_services_catalogue"),
        "{said}"
    );
    assert!(said.contains("approval"), "{said}");
    let schema: Option<String> =
        sqlx::query_scalar("SELECT nspname::text FROM pg_namespace WHERE nspname = 'services'")
            .fetch_optional(&pool)
            .await
            .unwrap();
    assert_eq!(schema, None, "nothing was applied");

    let out = migrate(
        &url,
        &[
            "up",
            "--environment",
            "production",
            "--backup-dir",
            dir,
            "--output",
            "json",
        ],
    )
    .env("MIGRATION_APPROVED", "true")
    .output()
    .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let s = summary(&out);
    assert_eq!(s["migrationBackupStatus"], "verified");
    assert_eq!(s["schemaValidationResult"], "compliant");
    assert_eq!(s["approach"], "conservative");

    let out = run(
        &url,
        &["down", "--environment", "production", "--backup-dir", dir],
    );
    assert!(
        !out.status.success(),
        "down in production needs approval too"
    );
}

#[sqlx::test(migrations = false)]
async fn staging_takes_and_verifies_a_backup(pool: PgPool) {
    let url = url_of(&pool);
    assert!(run(&url, &["up"]).status.success());
    sqlx::query("INSERT INTO services.service_categories (category_id, name, slug, created_by) VALUES (gen_random_uuid(), 'Kept', 'kept', 't')")
        .execute(&pool)
        .await
        .unwrap();
    let (out, backups) = staging_up(&url);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(summary(&out)["migrationBackupStatus"], "verified");
    let files: Vec<_> = std::fs::read_dir(backups.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    let dump = files
        .iter()
        .find(|p| p.extension().is_some_and(|e| e == "dump"))
        .expect("a dump file");
    let sha = files
        .iter()
        .find(|p| p.to_string_lossy().ends_with(".sha256"))
        .expect("a sha256 file");
    let listed = Command::new(ic_testkit::find_binary("pg_restore"))
        .arg("--list")
        .arg(dump)
        .output()
        .unwrap();
    let listing = String::from_utf8_lossy(&listed.stdout);
    assert!(listing.contains("service_categories"), "{listing}");
    let digest = std::fs::read_to_string(sha).unwrap();
    let actual = Command::new("sha256sum").arg(dump).output().unwrap();
    assert_eq!(
        digest.split_whitespace().next(),
        String::from_utf8_lossy(&actual.stdout)
            .split_whitespace()
            .next(),
        "the recorded checksum is the dump's"
    );
}

#[sqlx::test(migrations = false)]
async fn development_resets_and_reapplies_after_a_failing_migration_and_staging_does_not(
    pool: PgPool,
) {
    let url = url_of(&pool);
    assert!(run(&url, &["up"]).status.success());
    let broken = |pool: PgPool| async move {
        // Revert down to (and including) 0002, the outbox.
        let steps = ic_migrations::migrations_of("services")
            .iter()
            .filter(|m| m.version >= 2)
            .count()
            .to_string();
        let out = run(&url_of(&pool), &["down", "--steps", &steps]);
        assert!(out.status.success(), "{}", text(&out));
        // Something in the way of migration 0002.
        sqlx::query("CREATE TABLE services.outbox (x int)")
            .execute(&pool)
            .await
            .unwrap();
    };
    broken(pool.clone()).await;
    let backups = tempfile::tempdir().unwrap();
    let out = run(
        &url,
        &[
            "up",
            "--environment",
            "staging",
            "--backup-dir",
            backups.path().to_str().unwrap(),
        ],
    );
    assert!(!out.status.success());
    let said = text(&out);
    assert!(
        said.contains("services/0002_outbox failed") && said.contains("already exists"),
        "{said}"
    );

    let out = run(&url, &["up"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("resetting the schema and re-applying once"));
    let out = run(&url, &["validate", "--schema", "services"]);
    assert!(out.status.success(), "{}", text(&out));
}

#[sqlx::test(migrations = false)]
async fn validate_reports_non_compliant_after_a_manual_schema_change(pool: PgPool) {
    let url = url_of(&pool);
    assert!(run(&url, &["up"]).status.success());
    let out = run(&url, &["validate", "--schema", "services"]);
    assert!(out.status.success());
    assert!(text(&out).contains("services: compliant"));
    sqlx::query("ALTER TABLE services.services ADD COLUMN sneaky integer")
        .execute(&pool)
        .await
        .unwrap();
    let out = run(
        &url,
        &["validate", "--schema", "services", "--output", "json"],
    );
    assert!(!out.status.success());
    let s = summary(&out);
    assert_eq!(s["schemaValidationResult"], "non-compliant");
    assert!(s["diff"].to_string().contains("services.sneaky"), "{s}");
}

async fn hold_lock(url: &str) -> PgConnection {
    let mut conn = PgConnection::connect(url).await.unwrap();
    sqlx::query("SELECT pg_advisory_lock($1)")
        .bind(ic_migrations::ADVISORY_LOCK_KEY)
        .execute(&mut conn)
        .await
        .unwrap();
    conn
}

#[sqlx::test(migrations = false)]
async fn the_timeout_bounds_the_whole_run(pool: PgPool) {
    let url = url_of(&pool);
    let _lock = hold_lock(&url).await;
    let out = run(&url, &["up", "--timeout", "1s", "--output", "json"]);
    assert!(!out.status.success());
    let s = summary(&out);
    assert_eq!(s["postgresMigrationStatus"], "failed");
    assert!(s["error"].as_str().unwrap().contains("timed out"), "{s}");
}

#[sqlx::test(migrations = false)]
async fn concurrent_runs_are_serialized_by_the_advisory_lock(pool: PgPool) {
    let url = url_of(&pool);
    let mut lock = hold_lock(&url).await;
    let mut child = migrate(&url, &["up"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    ic_testkit::eventually(Duration::from_secs(20), "migrate to wait on the advisory lock", || {
        let pool = pool.clone();
        async move {
            let waiting: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND wait_event = 'advisory' AND datname = current_database()",
            )
            .fetch_one(&pool)
            .await
            .unwrap();
            (waiting == 1).then_some(())
        }
    })
    .await;
    assert!(
        child.try_wait().unwrap().is_none(),
        "the second runner waits while the lock is held"
    );
    let applied: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'services'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(applied, 0, "nothing applied while waiting");
    sqlx::query("SELECT pg_advisory_unlock($1)")
        .bind(ic_migrations::ADVISORY_LOCK_KEY)
        .execute(&mut lock)
        .await
        .unwrap();
    let status = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success());
}

#[test]
fn a_missing_database_url_is_a_one_line_error_with_exit_code_2() {
    let out = Command::new(env!("CARGO_BIN_EXE_migrate"))
        .env_remove("DATABASE_URL")
        .env_remove("DATABASE_CONNECTION_STRING")
        .arg("status")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("DATABASE_URL") && err.lines().count() == 1,
        "{err}"
    );
}

#[sqlx::test(migrations = false)]
async fn production_never_drops_a_schema_and_down_needs_approval_whatever_the_approach(
    pool: PgPool,
) {
    let url = url_of(&pool);
    assert!(run(&url, &["up"]).status.success());
    sqlx::query("INSERT INTO services.service_categories (category_id, name, slug, created_by) VALUES (gen_random_uuid(), 'Precious', 'precious', 't')")
        .execute(&pool)
        .await
        .unwrap();
    let steps = ic_migrations::migrations_of("services")
        .iter()
        .filter(|m| m.version >= 2)
        .count()
        .to_string();
    assert!(run(&url, &["down", "--steps", &steps]).status.success());
    sqlx::query("CREATE TABLE services.outbox (x int)")
        .execute(&pool)
        .await
        .unwrap();
    let backups = tempfile::tempdir().unwrap();
    let dir = backups.path().to_str().unwrap();
    let out = migrate(
        &url,
        &[
            "up",
            "--environment",
            "production",
            "--approach",
            "aggressive",
            "--backup-dir",
            dir,
        ],
    )
    .env("MIGRATION_APPROVED", "true")
    .output()
    .unwrap();
    assert!(!out.status.success(), "the failing migration fails the run");
    assert!(!text(&out).contains("resetting"), "{}", text(&out));
    let kept: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM services.service_categories WHERE slug = 'precious'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(kept, 1, "production data survives");
    let out = run(
        &url,
        &[
            "down",
            "--environment",
            "production",
            "--approach",
            "aggressive",
        ],
    );
    assert!(!out.status.success());
    assert!(text(&out).contains("approval"), "{}", text(&out));
}

#[sqlx::test(migrations = false)]
async fn careful_runs_refuse_a_drifted_schema_before_touching_it(pool: PgPool) {
    let url = url_of(&pool);
    assert!(run(&url, &["up"]).status.success());
    sqlx::query("ALTER TABLE services.services ADD COLUMN drift integer")
        .execute(&pool)
        .await
        .unwrap();
    let (out, _backups) = staging_up(&url);
    assert!(!out.status.success());
    let s = summary(&out);
    assert_eq!(s["schemaValidationResult"], "non-compliant");
    assert!(s["error"].as_str().unwrap().contains("drifted"), "{s}");
}

/// Every schema's migrations are reversible: all of them reverted leave the schema empty,
/// and applied again it matches its committed snapshot.
#[sqlx::test(migrations = false)]
async fn every_schema_goes_down_to_nothing_and_up_again_to_its_snapshot(pool: PgPool) {
    let mut conn = pool.acquire().await.unwrap();
    ic_migrations::up_all(&mut conn).await.unwrap();
    for schema in ic_migrations::schemas() {
        let steps = ic_migrations::migrations_of(schema).len();
        let reverted = ic_migrations::down(&mut conn, schema, steps, Duration::from_secs(60))
            .await
            .unwrap_or_else(|e| panic!("{schema} down: {e}"));
        assert_eq!(reverted.len(), steps, "{schema}");
        let tables: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = $1",
        )
        .bind(schema)
        .fetch_one(&mut *conn)
        .await
        .unwrap();
        assert_eq!(tables, 0, "{schema} keeps tables after going down");
        ic_migrations::up(&mut conn, schema, Duration::from_secs(60))
            .await
            .unwrap_or_else(|e| panic!("{schema} up again: {e}"));
        let validation = ic_migrations::validate(&mut conn, schema).await.unwrap();
        assert!(validation.compliant, "{schema}: {:?}", validation.diff);
    }
}
