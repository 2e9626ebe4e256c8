//! compose.yaml against the code, so the two cannot drift: podman-compose accepts it with
//! `.env.example`; every image it builds has its Containerfile; every variable it gives a
//! service is one that service documents in its README configuration table, and every
//! variable a table documents is read somewhere in the code; every `${VAR}` it uses has
//! a value in `.env.example`; each sidecar serves its app's port.

mod common;

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
    process::Command,
};

use common::{documented, root};
use serde_yaml::Value;

/// The platform's own services in compose.yaml and the README section documenting each.
const OURS: [&str; 6] = common::IMAGES;

fn compose() -> Value {
    serde_yaml::from_str(&std::fs::read_to_string(root().join("compose.yaml")).unwrap()).unwrap()
}

fn environment(service: &Value) -> BTreeMap<String, String> {
    service["environment"]
        .as_mapping()
        .map(|m| {
            m.iter()
                .map(|(k, v)| {
                    (
                        k.as_str().unwrap().to_owned(),
                        v.as_str()
                            .map(str::to_owned)
                            .unwrap_or_else(|| serde_yaml::to_string(v).unwrap().trim().to_owned()),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn podman_compose_accepts_compose_yaml_with_the_example_env() {
    #[allow(clippy::disallowed_methods)]
    let python = PathBuf::from(std::env::var("IC_TEST_PYTHON").expect("IC_TEST_PYTHON"));
    let podman_compose = python.parent().unwrap().join("podman-compose");
    let out = Command::new(podman_compose)
        .args(["--env-file", ".env.example", "-f", "compose.yaml", "config"])
        .current_dir(root())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn every_variable_given_to_a_service_is_one_it_documents_and_reads() {
    let compose = compose();
    let docs = documented();
    for name in OURS {
        let service = &compose["services"][name];
        assert!(service.is_mapping(), "compose.yaml has no {name}");
        let table = docs
            .get(name)
            .unwrap_or_else(|| panic!("README has no configuration table for {name}"));
        for variable in environment(service).keys() {
            assert!(
                table.contains(variable),
                "{name} is given {variable}, which its README table does not document"
            );
        }
        let containerfile = service["build"]["dockerfile"].as_str().unwrap();
        assert!(
            root().join(containerfile).exists(),
            "{name}: {containerfile} is missing"
        );
        let image = service["image"].as_str().unwrap();
        let binary = image.rsplit('/').next().unwrap().split(':').next().unwrap();
        let text = std::fs::read_to_string(root().join(containerfile)).unwrap();
        assert!(
            text.contains(&format!("/usr/local/bin/{binary}")),
            "{containerfile} does not install {binary}"
        );
    }
}

/// Every `.rs` file of the workspace outside `target/`, concatenated.
fn sources() -> String {
    fn walk(dir: &Path, out: &mut String) {
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            let path = entry.path();
            let name = entry.file_name();
            if name == "target" || name == ".git" || name == ".dev" || name == "node_modules" {
                continue;
            }
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push_str(&std::fs::read_to_string(&path).unwrap_or_default());
            }
        }
    }
    let mut out = String::new();
    walk(&root(), &mut out);
    out
}

#[test]
fn every_documented_variable_is_read_by_the_code() {
    let code = sources();
    for (section, names) in documented() {
        for name in names {
            // Read by its exact name, or through the `AZURE_` family content-api passes
            // through to object_store.
            let read = code.contains(&format!("\"{name}\""))
                || (name.starts_with("AZURE_") && code.contains("\"AZURE_\""));
            assert!(
                read,
                "README documents {name} for {section}, but no code reads it"
            );
        }
    }
}

#[test]
fn every_reference_has_a_value_and_each_sidecar_serves_its_apps_port() {
    let text = std::fs::read_to_string(root().join("compose.yaml")).unwrap();
    let example = std::fs::read_to_string(root().join(".env.example")).unwrap();
    let defined: BTreeSet<&str> = example
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| l.split_once('=').map(|(k, _)| k.trim()))
        .collect();
    for reference in text.split("${").skip(1) {
        let name = reference.split('}').next().unwrap();
        assert!(
            defined.contains(name),
            "compose.yaml uses ${{{name}}}, which .env.example does not set"
        );
    }
    let compose = compose();
    for name in OURS.iter().filter(|n| **n != "migrate") {
        let sidecar = &compose["services"][format!("{name}-dapr")];
        let command: Vec<&str> = sidecar["command"]
            .as_sequence()
            .unwrap_or_else(|| panic!("{name} has no sidecar"))
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        let after = |flag: &str| {
            command
                .iter()
                .position(|c| *c == flag)
                .and_then(|i| command.get(i + 1))
                .copied()
                .unwrap()
        };
        assert_eq!(
            after("--app-id"),
            *name,
            "the Dapr app id is the crate name"
        );
        let env = environment(&compose["services"][*name]);
        let port_variable = format!("{}_PORT", name.to_ascii_uppercase().replace('-', "_"));
        assert_eq!(
            env.get(&port_variable).map(String::as_str),
            Some(after("--app-port")),
            "{name}'s sidecar and {port_variable}"
        );
        assert_eq!(
            sidecar["network_mode"].as_str(),
            Some(format!("service:{name}").as_str())
        );
    }
}

/// The secrets of each service come from its sidecar's secret store, never from its own
/// environment: it names the store compose's component defines, and its sidecar holds
/// each secret under the component's prefix.
#[test]
fn each_service_reads_its_secrets_from_its_sidecars_store() {
    let component: Value = serde_yaml::from_str(
        &std::fs::read_to_string(root().join("components/secretstore.yaml")).unwrap(),
    )
    .unwrap();
    let store = component["metadata"]["name"].as_str().unwrap();
    assert_eq!(component["spec"]["type"], "secretstores.local.env");
    let prefix = component["spec"]["metadata"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "prefix")
        .and_then(|m| m["value"].as_str())
        .unwrap();
    let compose = compose();
    // The secrets each service is given in compose (a subset of what it may read;
    // APP_API_TOKEN is one local.env refuses to serve, so it stays in the environment).
    for (name, secrets) in [
        ("services-api", &["DATABASE_URL"][..]),
        (
            "content-api",
            &["DATABASE_URL", "AZURE_STORAGE_ACCOUNT_KEY"][..],
        ),
        ("public-gateway", &[][..]),
        ("admin-gateway", &[][..]),
        ("broadcaster", &["WEBHOOK_SECRET"][..]),
    ] {
        let env = environment(&compose["services"][name]);
        assert_eq!(
            env.get("DAPR_SECRET_STORE").map(String::as_str),
            Some(store),
            "{name}"
        );
        assert_eq!(
            env.get("DAPR_GRPC_PORT").map(String::as_str),
            Some("50001"),
            "{name}"
        );
        let sidecar = environment(&compose["services"][format!("{name}-dapr")]);
        for secret in secrets {
            assert!(
                !env.contains_key(*secret),
                "{name} is given {secret} in its environment"
            );
            assert!(
                sidecar.contains_key(&format!("{prefix}{secret}")),
                "{name}'s sidecar does not hold {secret}"
            );
        }
    }
}
