use std::process::ExitCode;

use broadcaster::{App, config::Config};

/// mimalloc: request handling allocates many small, short-lived buffers, where it is
/// markedly faster than glibc's allocator (measured by `cargo xtask bench gateway`).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    let _ = rustls::crypto::ring::default_provider().install_default();
    #[allow(clippy::disallowed_methods)] // the one place this binary reads its environment
    let config = match Config::from_env(std::env::vars().collect()) {
        Ok(config) => config,
        Err(err) => {
            eprintln!("broadcaster: configuration error: {err}");
            return ExitCode::from(ic_config::EXIT_CONFIG);
        }
    };
    let _telemetry = ic_telemetry::init(&config.telemetry());
    let app = match App::build(config).await {
        Ok(app) => app,
        Err(err) => {
            tracing::error!(error = %err, "broadcaster failed to start");
            return ExitCode::FAILURE;
        }
    };
    match app.run_until_stopped().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!(error = %err, "broadcaster stopped with an error");
            ExitCode::FAILURE
        }
    }
}
