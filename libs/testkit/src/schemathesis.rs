//! schemathesis (from the harness's venv) against a running service's OpenAPI document.

use std::path::Path;

/// Runs `schemathesis run` on `openapi_url` with `checks` (`all`, or a comma list),
/// `max_examples` cases an operation, a fixed seed and each request given
/// `timeout_seconds`; `headers` (`Name: value`) go on every request. Panics with
/// schemathesis' report when it found failures.
pub async fn assert_conforms(
    python: impl AsRef<Path>,
    openapi_url: &str,
    checks: &str,
    max_examples: u32,
    timeout_seconds: u32,
    headers: &[String],
) {
    let reports = tempfile::tempdir().expect("a report directory");
    let mut command = tokio::process::Command::new(python.as_ref());
    command
        .args(["-m", "schemathesis.cli", "run", openapi_url])
        .args(["--checks", checks])
        .args(["--max-examples", &max_examples.to_string()])
        .args(["--seed", "20261207"])
        // One worker: this Python (3.11.7) raises "AST constructor recursion depth
        // mismatch" when hypothesis compiles in several threads (CPython gh-106905).
        .args(["--workers", "1"])
        .args(["--no-color", "--generation-database", "none"])
        .args(["--request-timeout", &timeout_seconds.to_string()])
        .arg("--report-dir")
        .arg(reports.path())
        .current_dir(reports.path());
    for header in headers {
        command.args(["--header", header]);
    }
    let run = command.output().await.expect("schemathesis runs");
    let output = format!(
        "{}{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(
        run.status.success(),
        "schemathesis found failures:\n{output}"
    );
}
