use std::process::ExitCode;

use public_gateway::App;

/// mimalloc: request handling allocates many small, short-lived buffers, where it is
/// markedly faster than glibc's allocator (measured by `cargo xtask bench gateway`).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    // reqwest and sqlx use rustls without a default crypto provider (shared/STACK.md).
    let _ = rustls::crypto::ring::default_provider().install_default();
    #[allow(clippy::disallowed_methods)] // the one place this binary reads its environment
    ic_config::run_service::<App>(std::env::vars().collect()).await
}
