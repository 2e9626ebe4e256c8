//! The platform's SQL migrations, embedded, and the runner behind the `migrate` tool.
//!
//! Each migration runs in its own transaction under `lock_timeout`/`statement_timeout`;
//! concurrent runners are serialised by a Postgres advisory lock held on the runner's
//! connection; applied versions and their checksums are kept in
//! `public.ic_schema_migrations`. Contract: `shared/spec/operations.md`, "Migrations".

use std::{fmt::Write as _, time::Duration};

use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlx::{AssertSqlSafe, Connection, PgConnection, Row};

include!(concat!(env!("OUT_DIR"), "/migrations.rs"));

/// One embedded migration.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    /// The Postgres schema it belongs to.
    pub schema: &'static str,
    /// Version (ordering).
    pub version: i64,
    /// Name from the file name.
    pub name: &'static str,
    /// Forward SQL.
    pub up: &'static str,
    /// Reverse SQL.
    pub down: &'static str,
}

impl Migration {
    /// SHA-256 of the forward SQL, hex.
    pub fn checksum(&self) -> String {
        hex::encode(Sha256::digest(self.up.as_bytes()))
    }
}

/// The schemas migrations exist for.
pub fn schemas() -> Vec<&'static str> {
    let mut out: Vec<_> = MIGRATIONS.iter().map(|m| m.schema).collect();
    out.dedup();
    out
}

/// The embedded migrations of one schema, by version.
pub fn migrations_of(schema: &str) -> Vec<&'static Migration> {
    MIGRATIONS.iter().filter(|m| m.schema == schema).collect()
}

/// The committed schema snapshot (`<schema>/schema.snapshot`), if any.
pub fn snapshot_of(schema: &str) -> Option<&'static str> {
    SNAPSHOTS
        .iter()
        .find(|(s, _)| *s == schema)
        .map(|(_, text)| *text)
}

static SNAPSHOTS: &[(&str, &str)] = &[
    ("content", include_str!("../content/schema.snapshot")),
    ("services", include_str!("../services/schema.snapshot")),
];

/// Key of the advisory lock that serialises runners.
pub const ADVISORY_LOCK_KEY: i64 = 0x1c_6d16_7261_7465;

/// A failure of the runner.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    /// The database refused something.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// A migration failed; names it.
    #[error("migration {schema}/{version:04}_{name} failed: {source}")]
    Migration {
        /// Schema.
        schema: &'static str,
        /// Version.
        version: i64,
        /// Name.
        name: &'static str,
        /// The database error.
        source: sqlx::Error,
    },
    /// An applied migration differs from the embedded one.
    #[error("migration {schema}/{version} was changed after it was applied (checksum mismatch)")]
    Checksum {
        /// Schema.
        schema: String,
        /// Version.
        version: i64,
    },
    /// An applied version has no embedded file (newer binary needed).
    #[error("schema {schema} has version {version} applied, which this binary does not know")]
    Unknown {
        /// Schema.
        schema: String,
        /// Version.
        version: i64,
    },
    /// The schema name is not one of ours.
    #[error("unknown schema {0:?}")]
    UnknownSchema(String),
}

/// One applied (or reverted) migration in a run's summary.
#[derive(Debug, Clone, Serialize)]
pub struct Applied {
    /// Schema.
    pub schema: &'static str,
    /// Version.
    pub version: i64,
    /// Name.
    pub name: &'static str,
    /// Milliseconds it took.
    pub duration_ms: u64,
}

/// The status of one embedded migration.
#[derive(Debug, Clone, Serialize)]
pub struct MigrationStatus {
    /// Schema.
    pub schema: &'static str,
    /// Version.
    pub version: i64,
    /// Name.
    pub name: &'static str,
    /// When it was applied, if it was.
    pub applied_on: Option<chrono::DateTime<chrono::Utc>>,
}

fn check_schema(schema: &str) -> Result<&'static str, MigrateError> {
    schemas()
        .into_iter()
        .find(|s| *s == schema)
        .ok_or_else(|| MigrateError::UnknownSchema(schema.to_owned()))
}

/// Takes the advisory lock (waits for a concurrent runner to finish).
pub async fn lock(conn: &mut PgConnection) -> Result<(), MigrateError> {
    sqlx::query("SELECT pg_advisory_lock($1)")
        .bind(ADVISORY_LOCK_KEY)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Releases the advisory lock.
pub async fn unlock(conn: &mut PgConnection) -> Result<(), MigrateError> {
    sqlx::query("SELECT pg_advisory_unlock($1)")
        .bind(ADVISORY_LOCK_KEY)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

async fn ensure_history(conn: &mut PgConnection) -> Result<(), MigrateError> {
    sqlx::raw_sql(
        "CREATE TABLE IF NOT EXISTS public.ic_schema_migrations (
            schema_name text NOT NULL,
            version     bigint NOT NULL,
            name        text NOT NULL,
            checksum    text NOT NULL,
            applied_on  timestamptz NOT NULL DEFAULT now(),
            duration_ms bigint NOT NULL,
            PRIMARY KEY (schema_name, version)
        )",
    )
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Versions applied to `schema`, with their checksums.
pub async fn applied(
    conn: &mut PgConnection,
    schema: &str,
) -> Result<Vec<(i64, String, chrono::DateTime<chrono::Utc>)>, MigrateError> {
    ensure_history(conn).await?;
    let rows = sqlx::query(
        "SELECT version, checksum, applied_on FROM public.ic_schema_migrations WHERE schema_name = $1 ORDER BY version",
    )
    .bind(schema)
    .fetch_all(&mut *conn)
    .await?;
    rows.iter()
        .map(|r| {
            Ok((
                r.try_get("version")?,
                r.try_get("checksum")?,
                r.try_get("applied_on")?,
            ))
        })
        .collect()
}

/// Checks that every applied migration is embedded unchanged.
pub async fn verify_history(conn: &mut PgConnection, schema: &str) -> Result<(), MigrateError> {
    let embedded = migrations_of(schema);
    for (version, checksum, _) in applied(conn, schema).await? {
        match embedded.iter().find(|m| m.version == version) {
            None => {
                return Err(MigrateError::Unknown {
                    schema: schema.to_owned(),
                    version,
                });
            }
            Some(m) if m.checksum() != checksum => {
                return Err(MigrateError::Checksum {
                    schema: schema.to_owned(),
                    version,
                });
            }
            Some(_) => {}
        }
    }
    Ok(())
}

/// Embedded migrations of `schema` not applied yet.
pub async fn pending(
    conn: &mut PgConnection,
    schema: &str,
) -> Result<Vec<&'static Migration>, MigrateError> {
    let done: Vec<i64> = applied(conn, schema)
        .await?
        .into_iter()
        .map(|(v, _, _)| v)
        .collect();
    Ok(migrations_of(schema)
        .into_iter()
        .filter(|m| !done.contains(&m.version))
        .collect())
}

/// Status of every embedded migration of `schema`.
pub async fn status(
    conn: &mut PgConnection,
    schema: &str,
) -> Result<Vec<MigrationStatus>, MigrateError> {
    let schema = check_schema(schema)?;
    let done = applied(conn, schema).await?;
    Ok(migrations_of(schema)
        .into_iter()
        .map(|m| MigrationStatus {
            schema,
            version: m.version,
            name: m.name,
            applied_on: done
                .iter()
                .find(|(v, _, _)| *v == m.version)
                .map(|(_, _, at)| *at),
        })
        .collect())
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

async fn run_in_tx(
    conn: &mut PgConnection,
    m: &'static Migration,
    sql: &'static str,
    statement_timeout: Duration,
    record: bool,
) -> Result<Applied, MigrateError> {
    let started = std::time::Instant::now();
    let wrap = |source| MigrateError::Migration {
        schema: m.schema,
        version: m.version,
        name: m.name,
        source,
    };
    let mut tx = conn.begin().await?;
    sqlx::raw_sql(AssertSqlSafe(format!(
        "SET LOCAL lock_timeout = '10s'; SET LOCAL statement_timeout = '{}ms'",
        millis(statement_timeout).max(1)
    )))
    .execute(&mut *tx)
    .await?;
    sqlx::raw_sql(AssertSqlSafe(sql))
        .execute(&mut *tx)
        .await
        .map_err(wrap)?;
    let duration_ms = millis(started.elapsed());
    if record {
        sqlx::query(
            "INSERT INTO public.ic_schema_migrations (schema_name, version, name, checksum, duration_ms) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(m.schema)
        .bind(m.version)
        .bind(m.name)
        .bind(m.checksum())
        .bind(i64::try_from(duration_ms).unwrap_or(i64::MAX))
        .execute(&mut *tx)
        .await?;
    } else {
        sqlx::query(
            "DELETE FROM public.ic_schema_migrations WHERE schema_name = $1 AND version = $2",
        )
        .bind(m.schema)
        .bind(m.version)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(Applied {
        schema: m.schema,
        version: m.version,
        name: m.name,
        duration_ms,
    })
}

/// Applies every pending migration of `schema`, each in its own transaction. The caller
/// holds the advisory lock.
pub async fn up(
    conn: &mut PgConnection,
    schema: &str,
    statement_timeout: Duration,
) -> Result<Vec<Applied>, MigrateError> {
    let schema = check_schema(schema)?;
    verify_history(conn, schema).await?;
    sqlx::raw_sql(AssertSqlSafe(format!(
        "CREATE SCHEMA IF NOT EXISTS {schema}"
    )))
    .execute(&mut *conn)
    .await?;
    let mut done = Vec::new();
    for m in pending(conn, schema).await? {
        done.push(run_in_tx(conn, m, m.up, statement_timeout, true).await?);
    }
    Ok(done)
}

/// Reverts the last `steps` applied migrations of `schema`.
pub async fn down(
    conn: &mut PgConnection,
    schema: &str,
    steps: usize,
    statement_timeout: Duration,
) -> Result<Vec<Applied>, MigrateError> {
    let schema = check_schema(schema)?;
    verify_history(conn, schema).await?;
    let mut versions: Vec<i64> = applied(conn, schema)
        .await?
        .into_iter()
        .map(|(v, _, _)| v)
        .collect();
    versions.reverse();
    let mut done = Vec::new();
    for version in versions.into_iter().take(steps) {
        let m = migrations_of(schema)
            .into_iter()
            .find(|m| m.version == version)
            .ok_or_else(|| MigrateError::Unknown {
                schema: schema.to_owned(),
                version,
            })?;
        done.push(run_in_tx(conn, m, m.down, statement_timeout, false).await?);
    }
    Ok(done)
}

/// Drops `schema` with everything in it and forgets its history (development only; the
/// binary enforces that).
pub async fn reset(conn: &mut PgConnection, schema: &str) -> Result<(), MigrateError> {
    let schema = check_schema(schema)?;
    ensure_history(conn).await?;
    let mut tx = conn.begin().await?;
    sqlx::raw_sql(AssertSqlSafe(format!(
        "DROP SCHEMA IF EXISTS {schema} CASCADE"
    )))
    .execute(&mut *tx)
    .await?;
    sqlx::query("DELETE FROM public.ic_schema_migrations WHERE schema_name = $1")
        .bind(schema)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(())
}

/// Number of tables (in any schema) whose name contains "audit" (must be 0: audit lives
/// in Loki).
pub async fn count_audit_tables(conn: &mut PgConnection) -> Result<i64, MigrateError> {
    Ok(sqlx::query_scalar(
        "SELECT count(*) FROM information_schema.tables
         WHERE table_name ILIKE '%audit%' AND table_schema NOT IN ('pg_catalog', 'information_schema')",
    )
    .fetch_one(conn)
    .await?)
}

/// A canonical text description of the live `schema`: tables, columns, constraints,
/// indexes. Compared with the committed snapshot by `migrate validate`.
pub async fn fingerprint(conn: &mut PgConnection, schema: &str) -> Result<String, MigrateError> {
    let mut lines: Vec<String> = Vec::new();
    let columns = sqlx::query(
        "SELECT table_name, column_name, data_type, is_nullable, coalesce(column_default, ''), coalesce(generation_expression, '')
         FROM information_schema.columns WHERE table_schema = $1",
    )
    .bind(schema)
    .fetch_all(&mut *conn)
    .await?;
    for r in &columns {
        lines.push(format!(
            "column {}.{} {} nullable={} default={} generated={}",
            r.try_get::<String, _>(0)?,
            r.try_get::<String, _>(1)?,
            r.try_get::<String, _>(2)?,
            r.try_get::<String, _>(3)?,
            r.try_get::<String, _>(4)?,
            r.try_get::<String, _>(5)?,
        ));
    }
    let constraints = sqlx::query(
        "SELECT c.conrelid::regclass::text, c.conname, pg_get_constraintdef(c.oid)
         FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace WHERE n.nspname = $1",
    )
    .bind(schema)
    .fetch_all(&mut *conn)
    .await?;
    for r in &constraints {
        lines.push(format!(
            "constraint {} {} {}",
            r.try_get::<String, _>(0)?,
            r.try_get::<String, _>(1)?,
            r.try_get::<String, _>(2)?
        ));
    }
    let indexes = sqlx::query("SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = $1")
        .bind(schema)
        .fetch_all(&mut *conn)
        .await?;
    for r in &indexes {
        lines.push(format!(
            "index {} {}",
            r.try_get::<String, _>(0)?,
            r.try_get::<String, _>(1)?
        ));
    }
    lines.sort();
    let mut out = String::new();
    for line in lines {
        let _ = writeln!(out, "{line}");
    }
    Ok(out)
}

/// The result of comparing the live schema with its snapshot.
#[derive(Debug, Clone, Serialize)]
pub struct Validation {
    /// Whether they are identical.
    pub compliant: bool,
    /// Lines in the live schema but not in the snapshot (`+`) and the reverse (`-`).
    pub diff: Vec<String>,
}

/// Compares the live `schema` with the committed snapshot.
pub async fn validate(conn: &mut PgConnection, schema: &str) -> Result<Validation, MigrateError> {
    let schema = check_schema(schema)?;
    let live = fingerprint(conn, schema).await?;
    let expected = snapshot_of(schema).unwrap_or_default();
    let live_lines: Vec<&str> = live.lines().collect();
    let expected_lines: Vec<&str> = expected.lines().collect();
    let mut diff: Vec<String> = live_lines
        .iter()
        .filter(|l| !expected_lines.contains(l))
        .map(|l| format!("+ {l}"))
        .collect();
    diff.extend(
        expected_lines
            .iter()
            .filter(|l| !live_lines.contains(l))
            .map(|l| format!("- {l}")),
    );
    Ok(Validation {
        compliant: diff.is_empty(),
        diff,
    })
}

/// Applies every schema's pending migrations under the advisory lock (what tests and
/// `cargo xtask` use).
pub async fn up_all(conn: &mut PgConnection) -> Result<Vec<Applied>, MigrateError> {
    lock(conn).await?;
    let mut done = Vec::new();
    let mut result = Ok(());
    for schema in schemas() {
        match up(conn, schema, Duration::from_secs(60)).await {
            Ok(applied) => done.extend(applied),
            Err(err) => {
                result = Err(err);
                break;
            }
        }
    }
    unlock(conn).await?;
    result.map(|()| done)
}
