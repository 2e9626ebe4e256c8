//! Pure rules: subscriptions, signatures, the retry schedule, the circuit breaker and
//! the SSRF guard (no I/O).

pub mod breaker;
pub mod retry;
pub mod signing;
pub mod ssrf;
pub mod subscription;
