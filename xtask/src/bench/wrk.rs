//! wrk, the HTTP load generator every HTTP benchmark uses, and the figures it reports.

use std::process::Command;

use anyhow::{Context, bail};
use ic_testkit::find_binary;

/// Connections (HTTP for wrk, database for pgbench); the API's pool gets as many.
pub(crate) const CONCURRENCY: usize = 16;

/// Throughput and latency of one measurement.
pub(crate) struct Figures {
    pub(crate) rps: f64,
    pub(crate) p50_ms: f64,
    pub(crate) p99_ms: f64,
}

fn parse_ms(value: &str) -> Option<f64> {
    let value = value.trim();
    let (num, factor) = if let Some(v) = value.strip_suffix("us") {
        (v, 0.001)
    } else if let Some(v) = value.strip_suffix("ms") {
        (v, 1.0)
    } else if let Some(v) = value.strip_suffix('s') {
        (v, 1000.0)
    } else {
        (value, 1.0)
    };
    num.parse::<f64>().ok().map(|n| n * factor)
}

pub(crate) fn wrk(target: &str, seconds: u64) -> anyhow::Result<Figures> {
    wrk_on(None, target, seconds, CONCURRENCY, 2, &[])
}

/// wrk with `connections` over `threads`, optionally pinned to `cpus` (taskset list),
/// each request carrying `headers` (`Name: value`).
pub(crate) fn wrk_on(
    cpus: Option<&str>,
    target: &str,
    seconds: u64,
    connections: usize,
    threads: usize,
    headers: &[String],
) -> anyhow::Result<Figures> {
    let mut cmd = match cpus {
        Some(list) => {
            let mut c = Command::new("taskset");
            c.args(["-c", list]).arg(find_binary("wrk"));
            c
        }
        None => Command::new(find_binary("wrk")),
    };
    let out = cmd
        .args([
            &format!("-t{threads}"),
            &format!("-c{connections}"),
            &format!("-d{seconds}s"),
            "--latency",
        ])
        .args(headers.iter().flat_map(|h| ["-H", h.as_str()]))
        .arg(target)
        .output()
        .context("running wrk")?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() || text.contains("Non-2xx") {
        bail!("wrk failed or saw errors:\n{text}");
    }
    let field = |prefix: &str| {
        text.lines()
            .find(|l| l.trim_start().starts_with(prefix))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(parse_ms)
    };
    let rps = text
        .lines()
        .find(|l| l.starts_with("Requests/sec:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .context("wrk printed no Requests/sec")?;
    Ok(Figures {
        rps,
        p50_ms: field("50%").context("wrk printed no p50")?,
        p99_ms: field("99%").context("wrk printed no p99")?,
    })
}
