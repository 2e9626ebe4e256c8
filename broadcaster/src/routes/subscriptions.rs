//! `GET /subscriptions`: the configuration without secrets, with counters and breakers.

use axum::{Json, Router, extract::State, routing::get};
use serde_json::{Value, json};

use crate::AppState;

/// The routes.
pub fn router() -> Router<AppState> {
    Router::new().route("/subscriptions", get(list_subscriptions))
}

async fn list_subscriptions(State(state): State<AppState>) -> Json<Value> {
    Json(json!({
        "subscriptions": state.endpoints.iter().map(|e| e.report()).collect::<Vec<_>>(),
    }))
}
