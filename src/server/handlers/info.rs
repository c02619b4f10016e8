//! `GET /health`, `GET /metrics`, `GET /v1/models`, `GET /v1/models/{id}`, and the 404
//! fallback.

use crate::api::{ModelCard, ModelList};
use crate::server::state::AppState;
use crate::Error;
use axum::extract::{Path, State};
use axum::http::{header, Uri};
use axum::response::IntoResponse;
use axum::Json;

/// 200 once the model is loaded; 503 (`model_loading`) before.
pub async fn health(State(state): State<AppState>) -> Result<impl IntoResponse, Error> {
    state.backend()?;
    Ok(Json(
        serde_json::json!({"status": "ok", "model": state.config().model_id}),
    ))
}

pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics().render(state.gauges()),
    )
}

fn card(state: &AppState) -> ModelCard {
    ModelCard {
        id: state.config().model_id.clone(),
        object: "model",
        created: state.created(),
        owned_by: "wick",
    }
}

/// Lists the served model, also while it loads (clients pick the id before using it).
pub async fn list_models(State(state): State<AppState>) -> Json<ModelList> {
    Json(ModelList {
        object: "list",
        data: vec![card(&state)],
    })
}

pub async fn get_model(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<ModelCard>, Error> {
    if id != state.config().model_id {
        return Err(Error::ModelNotFound(id));
    }
    Ok(Json(card(&state)))
}

pub async fn not_found(uri: Uri) -> Error {
    Error::RouteNotFound(uri.path().to_owned())
}
