//! content-api's process: the crypto provider, then configuration → telemetry → build → run
//! (the same steps in every service; startup itself is in `startup.rs`).

use std::process::ExitCode;

use content_api::{SERVICE_NAME, config::Config, startup::App};

/// mimalloc, as in every service (measured by `cargo xtask bench gateway`).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    ic_telemetry::install_crypto_provider();
    #[allow(clippy::disallowed_methods)] // the one place this binary reads its environment
    let config = match Config::from_env(std::env::vars().collect()) {
        Ok(config) => config,
        Err(err) => return err.exit(SERVICE_NAME),
    };
    // `<binary> healthcheck`: the container's HEALTHCHECK (the image has no curl).
    if std::env::args().nth(1).as_deref() == Some("healthcheck") {
        return ic_http::serve::healthcheck(config.backend.host, config.backend.port);
    }
    let _telemetry = ic_telemetry::init(&config.telemetry());
    let app = match App::build(config).await {
        Ok(app) => app,
        Err(err) => return ic_telemetry::failed_to_start(err),
    };
    ic_telemetry::exit_code(app.run_until_stopped().await)
}
