//! `migrate`: applies, reverts, inspects and validates the platform's schemas.
//! Contract: `shared/spec/operations.md`, "Migrations".

use std::{
    path::{Path, PathBuf},
    process::ExitCode,
    time::{Duration, Instant},
};

use anyhow::{Context, anyhow, bail};
use clap::{Parser, Subcommand, ValueEnum};
use ic_migrations as m;
use sha2::{Digest, Sha256};
use sqlx::{Connection, PgConnection};

#[derive(Parser, Debug)]
#[command(
    name = "migrate",
    about = "Database migrations of the International Center platform"
)]
struct Cli {
    /// Postgres URL (also DATABASE_CONNECTION_STRING).
    #[arg(long, global = true, env = "DATABASE_URL")]
    database_url: Option<String>,
    /// development | staging | production: chooses the approach.
    #[arg(
        long,
        global = true,
        env = "ENVIRONMENT",
        default_value = "development"
    )]
    environment: Environment,
    /// Overrides the environment's approach.
    #[arg(long, global = true, env = "MIGRATION_APPROACH")]
    approach: Option<Approach>,
    /// Bounds the whole run, e.g. `30s`, `5m` (default per approach).
    #[arg(long, global = true, env = "MIGRATION_TIMEOUT", value_parser = parse_duration)]
    timeout: Option<Duration>,
    /// Approves a production run (also MIGRATION_APPROVED=true).
    #[arg(long, global = true)]
    approve: bool,
    #[arg(long, global = true, env = "MIGRATION_APPROVED", hide = true)]
    approved_env: Option<String>,
    /// Where backups are written.
    #[arg(
        long,
        global = true,
        env = "MIGRATION_BACKUP_DIR",
        default_value = "backups"
    )]
    backup_dir: PathBuf,
    /// text or json (the summary the pipeline reads).
    #[arg(long, global = true, default_value = "text")]
    output: Output,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Apply pending migrations.
    Up(SchemaArg),
    /// Revert the last N migrations.
    Down {
        #[command(flatten)]
        schema: SchemaArg,
        /// How many to revert.
        #[arg(long, default_value_t = 1)]
        steps: usize,
    },
    /// Show applied and pending migrations.
    Status(SchemaArg),
    /// Compare the live schema with the committed snapshot.
    Validate(SchemaArg),
    /// Count tables whose name contains "audit" (must be 0).
    CheckAuditTables,
    /// pg_dump (custom format), verified with pg_restore --list, with a sha256 file.
    Backup(SchemaArg),
    /// Drop and re-apply a schema (development only).
    Reset(SchemaArg),
    /// Print the live schema's canonical description (to refresh the snapshot).
    Snapshot(SchemaArg),
}

#[derive(clap::Args, Debug)]
struct SchemaArg {
    /// services | content | all
    #[arg(long, default_value = "all")]
    schema: String,
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
enum Environment {
    Development,
    Staging,
    Production,
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
enum Approach {
    Aggressive,
    Careful,
    Conservative,
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
enum Output {
    Text,
    Json,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = num
        .parse()
        .map_err(|_| format!("expected a duration like 30s or 5m, got {s:?}"))?;
    let seconds = |factor: u64| {
        n.checked_mul(factor)
            .map(Duration::from_secs)
            .ok_or_else(|| format!("duration {s:?} is too long"))
    };
    match unit {
        "ms" => Ok(Duration::from_millis(n)),
        "" | "s" => seconds(1),
        "m" => seconds(60),
        "h" => seconds(3600),
        _ => Err(format!("expected a duration like 30s or 5m, got {s:?}")),
    }
}

/// The machine-readable summary (`--output json`).
#[derive(Debug, Default, serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct Summary {
    postgres_migration_status: &'static str,
    schema_validation_result: &'static str,
    audit_tables_check: Option<i64>,
    migration_backup_status: &'static str,
    applied: Vec<m::Applied>,
    #[serde(rename = "duration_ms")]
    duration_ms: u64,
    environment: &'static str,
    approach: Option<Approach>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    diff: Vec<String>,
}

impl Cli {
    fn approach(&self) -> Approach {
        self.approach.unwrap_or(match self.environment {
            Environment::Development => Approach::Aggressive,
            Environment::Staging => Approach::Careful,
            Environment::Production => Approach::Conservative,
        })
    }

    fn timeout(&self) -> Duration {
        self.timeout.unwrap_or(match self.approach() {
            Approach::Aggressive => Duration::from_secs(30),
            Approach::Careful => Duration::from_secs(300),
            Approach::Conservative => Duration::from_secs(900),
        })
    }

    fn approved(&self) -> bool {
        self.approve
            || self
                .approved_env
                .as_deref()
                .is_some_and(|v| v.eq_ignore_ascii_case("true"))
    }

    fn schemas(arg: &SchemaArg) -> anyhow::Result<Vec<&'static str>> {
        if arg.schema == "all" {
            return Ok(m::schemas());
        }
        m::schemas()
            .into_iter()
            .find(|s| *s == arg.schema)
            .map(|s| vec![s])
            .ok_or_else(|| {
                anyhow!(
                    "unknown schema {:?} (expected {} or all)",
                    arg.schema,
                    m::schemas().join(", ")
                )
            })
    }
}

fn env_name(e: Environment) -> &'static str {
    match e {
        Environment::Development => "development",
        Environment::Staging => "staging",
        Environment::Production => "production",
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    ic_telemetry::install_crypto_provider();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => {
            let code = if err.use_stderr() { 2 } else { 0 };
            let _ = err.print();
            return ExitCode::from(code);
        }
    };
    #[allow(clippy::disallowed_methods)] // binaries read their environment
    let url = cli
        .database_url
        .clone()
        .or_else(|| std::env::var("DATABASE_CONNECTION_STRING").ok());
    let Some(url) = url else {
        eprintln!("DATABASE_URL is not set (expected postgres://user:password@host:port/database)");
        return ExitCode::from(2);
    };
    let started = Instant::now();
    let mut summary = Summary {
        postgres_migration_status: "failed",
        schema_validation_result: "skipped",
        migration_backup_status: "skipped",
        environment: env_name(cli.environment),
        approach: Some(cli.approach()),
        ..Default::default()
    };
    let timeout = cli.timeout();
    let outcome = match tokio::time::timeout(timeout, run(&cli, &url, &mut summary)).await {
        Ok(result) => result,
        Err(_) => Err(anyhow!(
            "migration run timed out after {} s",
            timeout.as_secs_f64()
        )),
    };
    summary.duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    if let Err(err) = &outcome {
        summary.postgres_migration_status = "failed";
        summary.error = Some(format!("{err:#}"));
    }
    if cli.output == Output::Json {
        println!(
            "{}",
            serde_json::to_string_pretty(&summary).unwrap_or_default()
        );
    }
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("migrate: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn say(cli: &Cli, text: impl AsRef<str>) {
    if cli.output == Output::Text {
        println!("{}", text.as_ref());
    } else {
        eprintln!("{}", text.as_ref());
    }
}

async fn run(cli: &Cli, url: &str, summary: &mut Summary) -> anyhow::Result<()> {
    let mut conn = PgConnection::connect(url)
        .await
        .context("connecting to Postgres")?;
    match &cli.command {
        Command::CheckAuditTables => {
            let n = m::count_audit_tables(&mut conn).await?;
            summary.audit_tables_check = Some(n);
            summary.postgres_migration_status = "success";
            say(cli, n.to_string());
            if n != 0 {
                bail!(
                    "{n} table(s) with \"audit\" in their name exist; audit records belong in Loki"
                );
            }
        }
        Command::Status(arg) => {
            for schema in Cli::schemas(arg)? {
                for s in m::status(&mut conn, schema).await? {
                    say(
                        cli,
                        format!(
                            "{}/{:04}_{} {}",
                            s.schema,
                            s.version,
                            s.name,
                            s.applied_on
                                .map_or("pending".to_owned(), |t| format!("applied {t}"))
                        ),
                    );
                }
            }
            summary.postgres_migration_status = "success";
        }
        Command::Snapshot(arg) => {
            for schema in Cli::schemas(arg)? {
                print!("{}", m::fingerprint(&mut conn, schema).await?);
            }
            summary.postgres_migration_status = "success";
        }
        Command::Validate(arg) => {
            let compliant = validate_all(cli, &mut conn, &Cli::schemas(arg)?, summary).await?;
            summary.postgres_migration_status = "success";
            if !compliant {
                bail!("schema is non-compliant with the committed snapshot");
            }
        }
        Command::Backup(arg) => {
            let existing = existing_schemas(&mut conn, &Cli::schemas(arg)?).await?;
            backup(cli, url, &existing, summary).await?;
            summary.postgres_migration_status = "success";
        }
        Command::Reset(arg) => {
            if cli.environment != Environment::Development {
                bail!("reset is allowed in development only");
            }
            m::lock(&mut conn).await?;
            for schema in Cli::schemas(arg)? {
                m::reset(&mut conn, schema).await?;
                summary
                    .applied
                    .extend(m::up(&mut conn, schema, cli.timeout()).await?);
                say(cli, format!("{schema}: reset and re-applied"));
            }
            m::unlock(&mut conn).await?;
            summary.postgres_migration_status = "success";
        }
        Command::Down { schema, steps } => {
            // Production needs approval whatever approach is forced; development and
            // staging may go down freely.
            if (cli.environment == Environment::Production
                || cli.approach() == Approach::Conservative)
                && !cli.approved()
            {
                bail!(
                    "down in production needs approval: pass --approve or set MIGRATION_APPROVED=true"
                );
            }
            m::lock(&mut conn).await?;
            for schema in Cli::schemas(schema)?.into_iter().rev() {
                let reverted = m::down(&mut conn, schema, *steps, cli.timeout()).await?;
                for a in &reverted {
                    say(
                        cli,
                        format!(
                            "reverted {}/{:04}_{} ({} ms)",
                            a.schema, a.version, a.name, a.duration_ms
                        ),
                    );
                }
                summary.applied.extend(reverted);
            }
            m::unlock(&mut conn).await?;
            summary.postgres_migration_status = "success";
        }
        Command::Up(arg) => {
            let schemas = Cli::schemas(arg)?;
            m::lock(&mut conn).await?;
            let result = up(cli, url, &mut conn, &schemas, summary).await;
            m::unlock(&mut conn).await.ok();
            result?;
            summary.postgres_migration_status = "success";
        }
    }
    Ok(())
}

async fn up(
    cli: &Cli,
    url: &str,
    conn: &mut PgConnection,
    schemas: &[&'static str],
    summary: &mut Summary,
) -> anyhow::Result<()> {
    let approach = cli.approach();
    if approach == Approach::Conservative {
        say(cli, "plan:");
        for schema in schemas {
            for p in m::pending(conn, schema).await? {
                say(
                    cli,
                    format!("  apply {}/{:04}_{}", p.schema, p.version, p.name),
                );
            }
        }
        if !cli.approved() {
            bail!(
                "production migrations need approval: pass --approve or set MIGRATION_APPROVED=true"
            );
        }
    }
    if approach != Approach::Aggressive {
        // Validate before: applied files unchanged, and with nothing pending the live
        // schema must already match its snapshot (drift is caught before touching it).
        for schema in schemas {
            m::verify_history(conn, schema).await?;
            if m::pending(conn, schema).await?.is_empty() {
                let v = m::validate(conn, schema).await?;
                if !v.compliant {
                    summary.schema_validation_result = "non-compliant";
                    summary.diff.extend(v.diff);
                    bail!("schema {schema} drifted from its snapshot before migrating");
                }
            }
        }
        let existing = existing_schemas(conn, schemas).await?;
        backup(cli, url, &existing, summary).await?;
    }
    for schema in schemas {
        let applied = match m::up(conn, schema, cli.timeout()).await {
            Ok(applied) => applied,
            // Dropping a schema is for development data only, whatever approach is forced.
            Err(err)
                if approach == Approach::Aggressive
                    && cli.environment == Environment::Development =>
            {
                say(
                    cli,
                    format!("{schema}: {err}; resetting the schema and re-applying once"),
                );
                m::reset(conn, schema).await?;
                m::up(conn, schema, cli.timeout()).await?
            }
            Err(err) => return Err(err.into()),
        };
        for a in &applied {
            say(
                cli,
                format!(
                    "applied {}/{:04}_{} ({} ms)",
                    a.schema, a.version, a.name, a.duration_ms
                ),
            );
        }
        summary.applied.extend(applied);
    }
    let compliant = validate_all(cli, conn, schemas, summary).await?;
    let audit_tables = m::count_audit_tables(conn).await?;
    summary.audit_tables_check = Some(audit_tables);
    if approach != Approach::Aggressive {
        if !compliant {
            bail!("schema is non-compliant with the committed snapshot after applying");
        }
        if audit_tables != 0 {
            bail!("{audit_tables} audit table(s) found; audit records belong in Loki");
        }
    }
    Ok(())
}

async fn validate_all(
    cli: &Cli,
    conn: &mut PgConnection,
    schemas: &[&'static str],
    summary: &mut Summary,
) -> anyhow::Result<bool> {
    let mut compliant = true;
    for schema in schemas {
        let v = m::validate(conn, schema).await?;
        say(
            cli,
            format!(
                "{schema}: {}",
                if v.compliant {
                    "compliant"
                } else {
                    "non-compliant"
                }
            ),
        );
        for line in &v.diff {
            say(cli, format!("  {line}"));
        }
        compliant &= v.compliant;
        summary.diff.extend(v.diff);
    }
    summary.schema_validation_result = if compliant {
        "compliant"
    } else {
        "non-compliant"
    };
    Ok(compliant)
}

/// The schemas among `schemas` that exist (pg_dump fails on a pattern matching nothing,
/// which a first deployment would hit).
async fn existing_schemas(
    conn: &mut PgConnection,
    schemas: &[&'static str],
) -> anyhow::Result<Vec<&'static str>> {
    let present: Vec<String> =
        sqlx::query_scalar("SELECT nspname::text FROM pg_namespace WHERE nspname = ANY($1)")
            .bind(schemas)
            .fetch_all(&mut *conn)
            .await?;
    Ok(schemas
        .iter()
        .copied()
        .filter(|s| present.iter().any(|p| p == s))
        .collect())
}

fn pg_tool(name: &str) -> PathBuf {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .map(|e| e.path().join("bin").join(name))
        .filter(|p| p.exists())
        .collect();
    versions.sort();
    versions.pop().unwrap_or_else(|| PathBuf::from(name))
}

async fn backup(
    cli: &Cli,
    url: &str,
    schemas: &[&'static str],
    summary: &mut Summary,
) -> anyhow::Result<()> {
    summary.migration_backup_status = "failed";
    std::fs::create_dir_all(&cli.backup_dir)
        .with_context(|| format!("creating {}", cli.backup_dir.display()))?;
    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%S%.3fZ");
    let file = cli
        .backup_dir
        .join(format!("international_center-{stamp}.dump"));
    let mut cmd = tokio::process::Command::new(pg_tool("pg_dump"));
    cmd.arg("--format=custom")
        .arg("--no-owner")
        .arg(format!("--file={}", file.display()));
    for schema in schemas {
        cmd.arg(format!("--schema={schema}"));
    }
    // The password goes through the environment, never the command line (`ps` shows it).
    let mut parsed = url::Url::parse(url).context("DATABASE_URL is not a URL")?;
    if let Some(password) = parsed.password() {
        cmd.env("PGPASSWORD", percent_decode(password));
    }
    let _ = parsed.set_password(None);
    cmd.arg("--schema=public").arg(format!("--dbname={parsed}"));
    let out = cmd.output().await.context("running pg_dump")?;
    if !out.status.success() {
        bail!(
            "pg_dump failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    verify_backup(&file).await?;
    let digest = hex::encode(Sha256::digest(std::fs::read(&file)?));
    let name = file
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default()
        .to_owned();
    std::fs::write(
        file.with_extension("dump.sha256"),
        format!("{digest}  {name}\n"),
    )?;
    summary.migration_backup_status = "verified";
    say(
        cli,
        format!("backup {} verified (sha256 {digest})", file.display()),
    );
    Ok(())
}

fn percent_decode(value: &str) -> String {
    url::form_urlencoded::parse(format!("p={}", value.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

async fn verify_backup(file: &Path) -> anyhow::Result<()> {
    let out = tokio::process::Command::new(pg_tool("pg_restore"))
        .arg("--list")
        .arg(file)
        .output()
        .await
        .context("running pg_restore --list")?;
    let listing = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() || !listing.contains("TABLE") {
        bail!(
            "backup verification failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_in_the_documented_forms() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("45"), Ok(Duration::from_secs(45)));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("5 weeks").is_err());
        assert!(parse_duration("99999999999999999999h").is_err());
        assert!(parse_duration(&format!("{}h", u64::MAX / 60)).is_err());
    }
}
