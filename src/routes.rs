//! Every capability's routes, merged: the one place that knows them all.
//! It sits above the capabilities (and `http`, the shared layer they use),
//! so no capability imports another just to be reachable.

use axum::Router;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;

use crate::{
    account_removal, attendance, auth, breakout, calendar, http, interaction, mail, programme, record, recording,
    registration, rooms, AppState,
};

pub fn router(state: AppState) -> Router {
    let api = OpenApiRouter::with_openapi(http::ApiDoc::openapi())
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
        .merge(record::router());
    http::finish(api, state)
}
