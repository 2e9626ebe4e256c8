//! `cargo xtask bench`: each figure is printed next to a peer measured in the same run,
//! on the same machine, and as a ratio (`shared/spec`: speed is measured, not asserted).

mod admin_gateway;
mod broadcaster;
mod content;
mod gateway;
mod services_list;
mod wrk;

use anyhow::bail;

/// Runs the benchmark named first in `args`, or all of them.
pub fn bench(args: &[String]) -> anyhow::Result<()> {
    match args.first().map(String::as_str) {
        None => {
            services_list::services_list()?;
            gateway::gateway()?;
            admin_gateway::admin_gateway()?;
            broadcaster::broadcaster()?;
            content::content()
        }
        Some("services-list") => services_list::services_list(),
        Some("gateway") => gateway::gateway(),
        Some("admin-gateway") => admin_gateway::admin_gateway(),
        Some("broadcaster") => broadcaster::broadcaster(),
        Some("content") => content::content(),
        Some(other) => {
            bail!(
                "unknown benchmark {other:?} (available: services-list, gateway, admin-gateway, broadcaster, content)"
            )
        }
    }
}
