//! `cargo xtask images`: every service's image, and migrate's, built here with podman
//! from local parts (no image registry is reachable): the release binaries built once by
//! cargo and stripped, on a runtime base assembled from this machine's Debian files —
//! what distroless/cc holds: the C runtime the binaries link, the dynamic loader, CA
//! certificates, `/etc/passwd` with UID 1001, `nsswitch.conf` and a `/tmp`. The
//! Containerfiles are the ones GitHub's runners build from source with public bases;
//! here they get `BINARY_FROM=prebuilt` and `RUNTIME_IMAGE` as build arguments.

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context, bail};

use crate::{cargo, deps, run, target_dir, workspace_root};

/// (directory of the Containerfile, cargo package, binary) of every image.
pub const IMAGES: [(&str, &str, &str); 6] = [
    ("services-api", "services-api", "services-api"),
    ("content-api", "content-api", "content-api"),
    ("public-gateway", "public-gateway", "public-gateway"),
    ("admin-gateway", "admin-gateway", "admin-gateway"),
    ("broadcaster", "broadcaster", "broadcaster"),
    ("migrations", "ic-migrations", "migrate"),
];

/// The local runtime base (distroless/cc's contents from this machine's files).
pub const RUNTIME_BASE: &str = "localhost/international-center/runtime-base:debian12";

/// The local tag of `binary`'s image.
pub fn image_name(binary: &str) -> String {
    format!("localhost/international-center/{binary}:dev")
}

/// `podman` with the runtime that works on this machine's cgroup setup.
pub fn podman() -> Command {
    let mut cmd = Command::new("podman");
    cmd.args(["--runtime", "runc"]);
    cmd
}

/// Builds every image; returns their names.
pub fn build() -> anyhow::Result<Vec<String>> {
    deps::ensure_packages(&[
        ("podman", "podman"),
        ("runc", "runc"),
        ("strip", "binutils"),
        ("pg_dump", "postgresql-client"),
    ])?;
    eprintln!("==> building the release binaries");
    let mut build = cargo();
    build.args(["build", "--release", "--locked"]);
    for (_, package, binary) in IMAGES {
        build.args(["--package", package, "--bin", binary]);
    }
    run(build, "cargo build --release")?;

    let root = target_dir().join("images");
    let context = root.join("context");
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(context.join("out"))?;
    let release = target_dir().join("release");
    let mut binaries = Vec::new();
    for (_, _, binary) in IMAGES {
        let staged = context.join("out").join(binary);
        let mut strip = Command::new("strip");
        strip
            .arg("--strip-all")
            .arg("-o")
            .arg(&staged)
            .arg(release.join(binary));
        run(strip, "strip")?;
        binaries.push(staged);
    }

    let mut base_libraries = BTreeSet::new();
    for binary in &binaries {
        base_libraries.extend(linked_libraries(binary)?);
    }
    stage_pg_tools(&context.join("out").join("pgtools"), &base_libraries)?;

    eprintln!("==> assembling the runtime base from this machine's files");
    let base = root.join("runtime");
    runtime_rootfs(&base.join("rootfs"), &base_libraries)?;
    std::fs::write(base.join("Containerfile"), "FROM scratch\nCOPY rootfs/ /\n")?;
    let mut cmd = podman();
    cmd.args([
        "build",
        "--quiet",
        "--format",
        "docker",
        "--tag",
        RUNTIME_BASE,
    ])
    .arg(&base);
    run(cmd, "podman build (runtime base)")?;

    let revision = git_revision();
    let created = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let mut names = Vec::new();
    for (dir, _, binary) in IMAGES {
        let name = image_name(binary);
        eprintln!("==> {name}");
        let mut cmd = podman();
        cmd.args(["build", "--quiet", "--format", "docker"])
            .args(["--build-arg", &format!("RUNTIME_IMAGE={RUNTIME_BASE}")])
            .args(["--build-arg", "BINARY_FROM=prebuilt"])
            .args([
                "--build-arg",
                &format!("VERSION={}", env!("CARGO_PKG_VERSION")),
            ])
            .args(["--build-arg", &format!("REVISION={revision}")])
            .args(["--build-arg", &format!("CREATED={created}")])
            .args(["--tag", &name])
            .arg("--file")
            .arg(workspace_root().join(dir).join("Containerfile"))
            .arg(&context);
        run(cmd, &format!("podman build {name}"))?;
        names.push(name);
    }
    Ok(names)
}

/// `cargo xtask images`: builds them and prints each one's size.
pub fn images() -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let names = build()?;
    println!(
        "\nimages (built in {:.0} s, release binaries included)",
        started.elapsed().as_secs_f64()
    );
    for name in names {
        println!("  {name:<60} {:>6.1} MB", size_bytes(&name)? as f64 / 1e6);
    }
    Ok(())
}

/// An image's size in bytes, as podman reports it.
pub fn size_bytes(name: &str) -> anyhow::Result<u64> {
    let out = podman()
        .args(["image", "inspect", "--format", "{{.Size}}", name])
        .output()
        .context("podman image inspect")?;
    if !out.status.success() {
        bail!("podman image inspect {name} failed");
    }
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .context("an image size")
}

fn git_revision() -> String {
    Command::new("git")
        .args(["rev-parse", "HEAD"])
        .current_dir(workspace_root())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map_or_else(
            || "unknown".to_owned(),
            |o| String::from_utf8_lossy(&o.stdout).trim().to_owned(),
        )
}

/// The shared libraries (and the loader) `binary` needs, as `ldd` lists them.
fn linked_libraries(binary: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let out = Command::new("ldd").arg(binary).output().context("ldd")?;
    if !out.status.success() {
        bail!("ldd {} failed", binary.display());
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| {
            let path = match line.split_once("=>") {
                Some((_, rest)) => rest.split_whitespace().next(),
                None => line.split_whitespace().next(),
            }?;
            path.starts_with('/').then(|| PathBuf::from(path))
        })
        .collect())
}

/// pg_dump and pg_restore (migrate's backups) with the libraries they link that the
/// runtime base lacks (`in_base`), under `out` at their own paths: what the migrate
/// Containerfile's `pgtools-builder` stage collects on GitHub from Debian's
/// postgresql-client-15. (A library in both layers would count twice in the image.)
fn stage_pg_tools(out: &Path, in_base: &BTreeSet<PathBuf>) -> anyhow::Result<()> {
    for tool in ["pg_dump", "pg_restore"] {
        // The real binary (/usr/lib/postgresql/<version>/bin), not Debian's perl wrapper.
        let binary = ic_testkit::find_binary(tool);
        let mut files = vec![binary.clone()];
        files.extend(
            linked_libraries(&binary)?
                .into_iter()
                .filter(|library| !in_base.contains(library)),
        );
        for file in files {
            let target = out.join(file.strip_prefix("/")?);
            std::fs::create_dir_all(target.parent().context("a directory")?)?;
            std::fs::copy(std::fs::canonicalize(&file)?, &target)
                .with_context(|| format!("copying {}", file.display()))?;
        }
    }
    Ok(())
}

/// Writes distroless/cc's contents under `rootfs`, with `libraries` (those the binaries
/// link).
fn runtime_rootfs(rootfs: &Path, libraries: &BTreeSet<PathBuf>) -> anyhow::Result<()> {
    for library in libraries {
        let target = rootfs.join(library.strip_prefix("/")?);
        std::fs::create_dir_all(target.parent().context("a library directory")?)?;
        // The file itself, not the symlink ldd may name.
        std::fs::copy(std::fs::canonicalize(library)?, &target)
            .with_context(|| format!("copying {}", library.display()))?;
    }
    let certificates = Path::new("/etc/ssl/certs/ca-certificates.crt");
    if !certificates.exists() {
        deps::ensure_packages(&[("update-ca-certificates", "ca-certificates")])?;
    }
    let etc = rootfs.join("etc");
    std::fs::create_dir_all(etc.join("ssl/certs"))?;
    std::fs::copy(certificates, etc.join("ssl/certs/ca-certificates.crt"))?;
    std::fs::write(
        etc.join("passwd"),
        "root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:1001:1001:nonroot:/home/nonroot:/sbin/nologin\n",
    )?;
    std::fs::write(etc.join("group"), "root:x:0:\nnonroot:x:1001:\n")?;
    std::fs::write(etc.join("nsswitch.conf"), "hosts: files dns\n")?;
    std::fs::create_dir_all(rootfs.join("home/nonroot"))?;
    let tmp = rootfs.join("tmp");
    std::fs::create_dir_all(&tmp)?;
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o1777))?;
    Ok(())
}
