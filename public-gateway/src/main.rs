//! public-gateway's process: the crypto provider, then configuration → telemetry → build → run
//! (the same steps in every service; startup itself is in `startup.rs`).

use std::process::ExitCode;

use ic_config::Env;
use ic_secrets::Prepared;
use public_gateway::{
    SERVICE_NAME,
    config::{self, Config},
    startup::App,
};

/// mimalloc: request handling allocates many small, short-lived buffers, where it is
/// markedly faster than glibc's allocator (measured by `cargo xtask bench gateway`).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    ic_telemetry::install_crypto_provider();
    #[allow(clippy::disallowed_methods)] // the one place this binary reads its environment
    let vars: Env = std::env::vars().collect();
    // `<binary> healthcheck`: the container's HEALTHCHECK (the image has no curl).
    let healthcheck = std::env::args().nth(1).as_deref() == Some("healthcheck");
    let prepared = ic_secrets::prepare(
        SERVICE_NAME,
        vars,
        healthcheck,
        config::PORT,
        config::SECRETS,
        Config::from_env,
    );
    let (config, secrets) = match prepared.await {
        Prepared::Run(config, secrets) => (config, secrets),
        Prepared::Exit(code) => return code,
    };
    let _telemetry = ic_telemetry::init(&config.telemetry());
    secrets.log();
    let app = match App::build(config).await {
        Ok(app) => app,
        Err(err) => return ic_telemetry::failed_to_start(err),
    };
    ic_telemetry::exit_code(app.run_until_stopped().await)
}
