//! The gateway kit: every cross-cutting concern of the gateways as a layer with its own
//! tests, so a gateway's `app()` reads as its pipeline (`shared/spec/gateways.md`).
//!
//! - [`path`]: normalisation (decoding, `//`, `.`, `..`) and refusal of escaping or
//!   ambiguous paths.
//! - [`routes`]: the route allowlist, methods, aliases.
//! - [`cors`], [`security`]: CORS and security headers.
//! - [`client_ip`], [`rate_limit`]: the client's IP behind trusted proxies, GCRA limits.
//! - [`hygiene`]: hop-by-hop and client identity headers, removed once, first.
//! - [`identity`]: the identity extension point (anonymous by default).
//! - [`bearer`], [`jwks`]: the verifier of the issuer's (Authentik's) JWT bearer tokens
//!   and the issuer's cached signing keys.
//! - [`proxy`]: the streaming reverse proxy, direct or through a Dapr sidecar, on the
//!   engine's pooled HTTP/1.1 client ([`ic_h1::client`]).
//! - [`route_check`]: normalisation, aliases, the allowlist and the body limit, before
//!   any upstream call.
//! - [`local`]: what a gateway answers itself (health, metrics, its OpenAPI document, a
//!   plain OPTIONS).
//! - [`settings`]: the configuration both gateways read alike.
//! - [`serve`]: a [`serve::Pipeline`] served by the engine's HTTP/1.1 server
//!   ([`ic_h1::server`]) with graceful shutdown; what the server refuses becomes the
//!   error envelope.
//!
//! Each concern is a stage: a plain function taking the request and the `next` stage, so
//! a gateway composes them as ordinary async calls (no boxed layers). Each stage is built
//! from steps a gateway can also call one by one, as public-gateway does: every level of
//! futures nested in each other copies the futures inside it as the request's future is
//! built (`cargo xtask bench gateway` measured it).

pub mod bearer;
pub mod client_ip;
pub mod cors;
pub mod hygiene;
pub mod identity;
pub mod jwks;
pub mod local;
pub mod path;
pub mod proxy;
pub mod rate_limit;
pub mod route_check;
pub mod routes;
pub mod security;
pub mod serve;
pub mod settings;
