//! The kit's integration tests, one binary: the body limit against a real upstream, and
//! the bearer-token verifier against key sets served over HTTP.

mod bearer;
mod body_limit;
