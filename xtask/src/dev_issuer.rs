//! The development token issuer of `cargo xtask up`: an RSA key pair kept under
//! `.dev/issuer/` (made on first use), its JWKS and OpenID configuration served on
//! [`DEV_ISSUER_PORT`] at Authentik's paths, and `cargo xtask token` printing a token
//! admin-gateway accepts. Development only: the key never leaves `.dev/`.

use std::path::Path;

use anyhow::Context;
use ic_testkit::jwt::{JwksServer, RsaIssuer, claims};

/// Where the development issuer serves its keys.
pub const DEV_ISSUER_PORT: u16 = 9400;
/// The audience of development tokens (`AUTHENTIK_ADMIN_AUDIENCE`).
pub const DEV_AUDIENCE: &str = "international-center-admin";
/// The key id.
const KID: &str = "dev-1";

/// The development issuer's URL (Authentik's shape).
pub fn issuer_url() -> String {
    format!("http://127.0.0.1:{DEV_ISSUER_PORT}/application/o/admin/")
}

/// The key pair of `.dev/issuer/`, made and saved on first use.
pub fn load_or_create(dir: &Path) -> anyhow::Result<RsaIssuer> {
    let key = dir.join("signing-key.pk8");
    if let Ok(der) = std::fs::read(&key) {
        return RsaIssuer::from_pkcs8(&der, KID)
            .map_err(|e| anyhow::anyhow!("{}: {e} (delete it to make a new one)", key.display()));
    }
    std::fs::create_dir_all(dir)?;
    let issuer = RsaIssuer::generate(KID);
    std::fs::write(&key, issuer.pkcs8()).with_context(|| format!("writing {}", key.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(issuer)
}

/// Serves the issuer's discovery document and JWKS (in the current runtime).
pub async fn serve(issuer: &RsaIssuer) -> anyhow::Result<JwksServer> {
    JwksServer::start_on(DEV_ISSUER_PORT, vec![issuer.jwk()])
        .await
        .with_context(|| format!("serving the development issuer on port {DEV_ISSUER_PORT}"))
}

/// A token of the development issuer for `user` with `roles`, valid `ttl` seconds.
pub fn token(issuer: &RsaIssuer, user: &str, roles: &[&str], ttl: i64) -> String {
    issuer.token(&claims(&issuer_url(), DEV_AUDIENCE, user, roles, ttl))
}

/// `cargo xtask token [--roles a,b] [--user id] [--ttl seconds]`: prints a token.
pub fn print_token(args: &[String], dev: &Path) -> anyhow::Result<()> {
    let mut roles = "admin".to_owned();
    let mut user = "dev-admin".to_owned();
    let mut ttl: i64 = 3600;
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        let mut value = |name: &str| {
            args.next()
                .cloned()
                .with_context(|| format!("{name} needs a value"))
        };
        match arg.as_str() {
            "--roles" => roles = value("--roles")?,
            "--user" => user = value("--user")?,
            "--ttl" => ttl = value("--ttl")?.parse().context("--ttl takes seconds")?,
            other => anyhow::bail!(
                "unknown argument {other}; usage: cargo xtask token [--roles admin,services-manager] [--user id] [--ttl seconds]"
            ),
        }
    }
    let roles: Vec<&str> = roles
        .split(',')
        .map(str::trim)
        .filter(|r| !r.is_empty())
        .collect();
    let issuer = load_or_create(&dev.join("issuer"))?;
    println!("{}", token(&issuer, &user, &roles, ttl));
    Ok(())
}
