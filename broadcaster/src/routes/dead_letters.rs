//! Dead letters: `GET /dead-letters?subscription_id&limit`,
//! `POST /dead-letters/{seq}/replay`, `POST /dead-letters/replay?subscription_id`.

use axum::{
    Json, Router,
    extract::State,
    http::StatusCode,
    routing::{get, post},
};
use ic_http::{
    ApiError,
    extract::{Path, Query},
};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::{
    AppState,
    dead_letters::{self, MAX_LIST, ReplayError},
    error::BroadcasterError,
};

/// The routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/dead-letters", get(list_dead_letters))
        .route("/dead-letters/replay", post(replay_dead_letters))
        .route("/dead-letters/{seq}/replay", post(replay_dead_letter))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    subscription_id: Option<String>,
    limit: Option<usize>,
}

fn known_subscription(state: &AppState, id: Option<&str>) -> Result<(), ApiError> {
    match id {
        Some(id) if state.endpoints.get(id).is_none() => Err(ApiError::validation(
            "subscription_id",
            format!("no subscription {id:?} is configured"),
        )),
        _ => Ok(()),
    }
}

async fn list_dead_letters(
    State(state): State<AppState>,
    Query(query): Query<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    let limit = query.limit.unwrap_or(50);
    if !(1..=MAX_LIST).contains(&limit) {
        return Err(ApiError::validation(
            "limit",
            format!("must be 1 to {MAX_LIST}"),
        ));
    }
    known_subscription(&state, query.subscription_id.as_deref())?;
    let letters = dead_letters::list(&state.js, query.subscription_id.as_deref(), limit)
        .await
        .map_err(ApiError::unavailable)?;
    Ok(Json(
        json!({ "dead_letters": letters, "count": letters.len() }),
    ))
}

async fn replay_dead_letter(
    State(state): State<AppState>,
    Path(seq): Path<u64>,
) -> Result<(StatusCode, Json<Value>), BroadcasterError> {
    if seq == 0 {
        return Err(BroadcasterError::Invalid(ApiError::validation(
            "seq",
            "stream sequences start at 1",
        )));
    }
    let endpoints = state.endpoints.clone();
    let letter = dead_letters::replay(&state.js, seq, |id| endpoints.get(id).is_some()).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({ "replayed": [letter.sequence], "webhook_id": letter.webhook_id })),
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReplayQuery {
    subscription_id: Option<String>,
}

async fn replay_dead_letters(
    State(state): State<AppState>,
    Query(query): Query<ReplayQuery>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    known_subscription(&state, query.subscription_id.as_deref())?;
    let letters = dead_letters::list(&state.js, query.subscription_id.as_deref(), MAX_LIST)
        .await
        .map_err(ApiError::unavailable)?;
    let mut replayed = Vec::new();
    let mut skipped = Vec::new();
    let endpoints = state.endpoints.clone();
    for letter in letters {
        match dead_letters::replay(&state.js, letter.sequence, |id| endpoints.get(id).is_some())
            .await
        {
            Ok(done) => replayed.push(done.sequence),
            Err(err) => {
                let reason = match &err {
                    ReplayError::Nats(source) => {
                        tracing::warn!(sequence = letter.sequence, error = %source, "replay failed");
                        "NATS unavailable".to_owned()
                    }
                    other => other.to_string(),
                };
                skipped.push(json!({ "sequence": letter.sequence, "reason": reason }));
            }
        }
    }
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({ "replayed": replayed, "skipped": skipped })),
    ))
}
