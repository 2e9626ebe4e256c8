//! Headless Chromium (Debian's `chromium`, installed by `cargo xtask test`), for tests
//! that need a real browser's behaviour (CORS enforcement).

use std::{
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use crate::find_binary;

/// Loads `url` in a fresh headless Chromium profile, lets its scripts run for up to
/// `budget` of virtual time, and returns the serialised DOM. Blocking: call it from
/// `tokio::task::spawn_blocking`.
pub fn dump_dom(url: &str, budget: Duration) -> String {
    let profile = tempfile::tempdir().expect("a profile directory");
    let mut child = Command::new(find_binary("chromium"))
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            // This machine has no internet: without these Chromium keeps dialling out.
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(format!("--virtual-time-budget={}", budget.as_millis()))
        .arg("--dump-dom")
        .arg(url)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromium starts");
    // A hung browser must fail the test, not hang the suite.
    let deadline = Instant::now() + budget + Duration::from_secs(60);
    loop {
        match child.try_wait().expect("waiting for chromium") {
            Some(_) => break,
            None if Instant::now() > deadline => {
                let _ = child.kill();
                panic!("chromium did not finish loading {url}");
            }
            None => std::thread::sleep(Duration::from_millis(50)),
        }
    }
    let output = child.wait_with_output().expect("chromium's output");
    String::from_utf8_lossy(&output.stdout).into_owned()
}
