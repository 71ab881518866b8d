//! Every capability's routes, merged: the one place that knows them all.
//! It sits above the capabilities (and `http`, the shared layer they use),
//! so no capability imports another just to be reachable.

#[cfg(test)]
mod schema_names;

use axum::Router;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;

use crate::{
    account_removal, attendance, auth, breakout, calendar, http, interaction, mail, programme, record, recording,
    registration, rooms, AppState,
};

/// The OpenAPI document served at `/api/openapi.json`; the API tests check
/// every response they receive against it.
pub fn openapi() -> utoipa::openapi::OpenApi {
    http::document(api()).1
}

pub fn router(state: AppState) -> Router {
    http::finish(api(), state)
}

fn api() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(http::ApiDoc::openapi())
        .merge(auth::router())
        .merge(account_removal::router())
        .merge(programme::router())
        .merge(registration::router())
        .merge(calendar::router())
        .merge(mail::router())
        .merge(interaction::polls::router())
        .merge(rooms::router())
        .merge(breakout::router())
        .merge(recording::router())
        .merge(attendance::router())
        .merge(record::router())
}
