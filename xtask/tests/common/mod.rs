//! What the xtask tests share: the repository, the README's configuration tables, the
//! services' names, ports and health paths as the code has them, this build's binaries.
#![allow(dead_code)] // each test file uses part of it

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
    process::Output,
};

/// The five services (Dapr app ids = crate names).
pub const SERVICES: [&str; 5] = [
    "services-api",
    "content-api",
    "public-gateway",
    "admin-gateway",
    "broadcaster",
];

/// The images: the five services and migrate.
pub const IMAGES: [&str; 6] = [
    "services-api",
    "content-api",
    "public-gateway",
    "admin-gateway",
    "broadcaster",
    "migrate",
];

/// The directories holding each image's Containerfile.
pub const IMAGE_DIRS: [&str; 6] = [
    "services-api",
    "content-api",
    "public-gateway",
    "admin-gateway",
    "broadcaster",
    "migrations",
];

pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

/// A process's stdout and stderr.
pub fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A binary of this build (the test runner builds every package's binaries with its
/// tests: `<target>/debug/deps/<this test>` → `<target>/debug/<name>`).
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let debug = exe.parent().and_then(Path::parent).unwrap();
    let path = debug.join(name);
    assert!(
        path.exists(),
        "{} is not built (run the whole workspace's tests)",
        path.display()
    );
    path
}

/// The backticked environment-variable names of a text (`UPPER_CASE` only).
pub fn backticked_variables(text: &str) -> BTreeSet<String> {
    text.split('`')
        .skip(1)
        .step_by(2)
        .filter(|chunk| {
            !chunk.is_empty()
                && chunk
                    .bytes()
                    .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
                && chunk.as_bytes()[0].is_ascii_uppercase()
        })
        .map(str::to_owned)
        .collect()
}

/// The variables of each `## Configuration (<name>)` section of the README (in a table,
/// the first column's; elsewhere every backticked name).
pub fn documented() -> BTreeMap<String, BTreeSet<String>> {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in readme.lines() {
        if let Some(heading) = line.strip_prefix("## ") {
            current = heading
                .strip_prefix("Configuration (")
                .and_then(|h| h.strip_suffix(')'))
                .map(str::to_owned);
            continue;
        }
        let Some(section) = &current else { continue };
        let text = match line.strip_prefix('|') {
            Some(row) => row.split('|').next().unwrap_or_default(),
            None => line,
        };
        out.entry(section.clone())
            .or_default()
            .extend(backticked_variables(text));
    }
    out
}

/// A service's port variable and default, as its `config.rs` declares them (`PORT`).
pub fn port_of(service: &str) -> (String, u16) {
    let config = std::fs::read_to_string(root().join(service).join("src/config.rs")).unwrap();
    let declared = config
        .split("pub const PORT: Port = Port {")
        .nth(1)
        .unwrap_or_else(|| panic!("{service}/src/config.rs declares no PORT"));
    let field = |name: &str| {
        declared
            .split(name)
            .nth(1)
            .unwrap()
            .split(',')
            .next()
            .unwrap()
            .trim()
            .trim_matches('"')
            .to_owned()
    };
    (field("variable:"), field("default:").parse().unwrap())
}

/// The health and metrics paths every service serves (`ic_http::app_token::OPEN_PATHS`).
pub fn health_paths() -> Vec<String> {
    let code = std::fs::read_to_string(root().join("libs/http/src/app_token.rs")).unwrap();
    let line = code
        .lines()
        .find(|l| l.starts_with("pub const OPEN_PATHS"))
        .unwrap();
    line.split('"')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect()
}
