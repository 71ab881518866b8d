//! The shared lower layer of the HTTP surface: the error type, extractors,
//! CSV cells, and [`finish`], which serves `web/` and the OpenAPI document
//! around the capabilities' routes and adds the shared layers. Each
//! capability owns its routes; `crate::routes`, one floor up, merges them,
//! so arrows run one way: capabilities use `http`, never the reverse.

pub mod csv;
pub mod error;
pub mod extract;
mod openapi;

use std::path::PathBuf;

use axum::{
    extract::State,
    http::{header, HeaderValue, StatusCode},
    response::IntoResponse,
    routing::get,
    Router,
};
use serde::Serialize;
use tower_http::{services::ServeDir, set_header::SetResponseHeaderLayer, trace::TraceLayer};
use utoipa::{
    openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme},
    Modify, OpenApi,
};
use utoipa_axum::router::OpenApiRouter;

use crate::AppState;
use error::ApiError;

#[derive(OpenApi)]
#[openapi(
    info(title = "Staffroom", description = "Professional-learning webinars for teachers: programme, accounts, registration, invitations, live rooms."),
    modifiers(&Security),
    tags((name = "accounts"), (name = "programme"), (name = "registration"), (name = "invitations"), (name = "calendar"), (name = "rooms"), (name = "interaction"), (name = "recordings"), (name = "attendance"), (name = "record"))
)]
pub struct ApiDoc;

struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            openapi::BEARER_SCHEME,
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).bearer_format("JWT").build()),
        );
        components.add_security_scheme(
            openapi::COOKIE_SCHEME,
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::new(extract::SESSION_COOKIE))),
        );
    }
}

/// The `web/` folder: next to the binary's crate in development, or
/// `STAFFROOM_WEB_DIR` when installed elsewhere.
fn web_dir() -> PathBuf {
    std::env::var_os("STAFFROOM_WEB_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("web"))
}

/// Splits the merged routes from their OpenAPI document, adding to the
/// document the answers every operation can give (see `openapi.rs`).
pub fn document(api: OpenApiRouter<AppState>) -> (Router<AppState>, utoipa::openapi::OpenApi) {
    let (router, document) = api.split_for_parts();
    (router, openapi::add_shared_responses(document))
}

/// The whole site around `api`, the capabilities' routes merged: the
/// OpenAPI document, a JSON 404 for unknown API paths, `web/` for the rest,
/// and the shared layers.
pub fn finish(api: OpenApiRouter<AppState>, state: AppState) -> Router {
    let (api, openapi) = document(api);
    let openapi_json = openapi.to_pretty_json().unwrap_or_default();
    Router::new()
        .route("/healthz", get(healthz))
        .route(
            "/api/openapi.json",
            get(move || async move { ([(header::CONTENT_TYPE, "application/json")], openapi_json) }),
        )
        .merge(api)
        .route("/api/{*rest}", axum::routing::any(|| async { ApiError::NotFound("API route") }))
        .fallback_service(ServeDir::new(web_dir()).append_index_html_on_directories(true))
        // Bodies read by extractors (JSON, forms) stop at MAX_BODY; the few
        // handlers that stream a body (evidence files) set their own limit.
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
        .layer(axum::middleware::from_fn(refuse_announced_oversize))
        .layer(axum::middleware::from_fn(json_errors))
        .layer(SetResponseHeaderLayer::overriding(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")))
        .layer(SetResponseHeaderLayer::overriding(header::REFERRER_POLICY, HeaderValue::from_static("same-origin")))
        // The request span names the path, not the query: links carry
        // tokens there (verification, reset, invitations, shared entries).
        .layer(TraceLayer::new_for_http().make_span_with(|req: &axum::http::Request<_>| {
            tracing::debug_span!("request", method = %req.method(), path = %req.uri().path(), version = ?req.version())
        }))
        .with_state(state)
}

/// Largest request body accepted (a CSV of 20,000 invitations fits).
const MAX_BODY: usize = 4 * 1024 * 1024;

/// Largest file a streamed upload takes (evidence files): the route streams
/// it to disk under this cap, and its announced length is checked here.
pub const MAX_UPLOAD: u64 = 10 * 1024 * 1024;

/// Answers 413 from the headers when `Content-Length` announces more than
/// the route takes, before a byte of the body is read: a client sending
/// nothing after such headers gets its answer instead of a wait.
async fn refuse_announced_oversize(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let streamed = req.uri().path().ends_with("/evidence/file");
    let limit = if streamed { MAX_UPLOAD } else { MAX_BODY as u64 };
    let announced = req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if announced.is_some_and(|n| n > limit) {
        if streamed {
            return ApiError::TooLarge(format!("evidence files are at most {} MiB", limit >> 20)).into_response();
        }
        return StatusCode::PAYLOAD_TOO_LARGE.into_response();
    }
    next.run(req).await
}

/// Errors produced by the framework itself (405, 413, …) become JSON bodies
/// like every other API error.
async fn json_errors(req: axum::extract::Request, next: axum::middleware::Next) -> axum::response::Response {
    let is_api = req.uri().path().starts_with("/api/");
    let res = next.run(req).await;
    let status = res.status();
    let is_json = res
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !is_api || is_json || !(status.is_client_error() || status.is_server_error()) {
        return res;
    }
    let error = match status {
        StatusCode::METHOD_NOT_ALLOWED => "this method is not allowed on this path".to_string(),
        StatusCode::PAYLOAD_TOO_LARGE => format!("the request body is too large (at most {} MiB)", MAX_BODY >> 20),
        other => other.canonical_reason().unwrap_or("request failed").to_lowercase(),
    };
    (status, axum::Json(error::ErrorBody { error, field: None })).into_response()
}

#[derive(Serialize)]
struct Health {
    status: &'static str,
    database: &'static str,
}

async fn healthz(State(state): State<AppState>) -> impl IntoResponse {
    if state.db.is_reachable().await {
        (StatusCode::OK, axum::Json(Health { status: "ok", database: "reachable" }))
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, axum::Json(Health { status: "degraded", database: "unreachable" }))
    }
}
