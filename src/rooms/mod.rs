//! Live rooms: a selective forwarding unit (SFU) for each session.
//!
//! `POST /api/sessions/{id}/join` hands a signed-in person a short-lived room
//! token; the token opens the signalling WebSocket (`ws.rs`, protocol in
//! `protocol.rs` and `docs/signalling.md`). `registry.rs` keeps one actor
//! per room (`actor.rs`), which applies the rules in `room.rs`, carries out
//! participants' actions (`actions.rs`) and the recorder's taps
//! (`capture.rs`), and hands durable facts to the attendance journal; the
//! messages between these parts are in `command.rs`. Media is the engine's
//! (`crate::media`): `peer.rs` opens each participant's connection and
//! turns its events into messages and commands; the room never touches a
//! socket or a packet.

mod actions;
mod actor;
mod capture;
pub mod command;
mod limits;
pub mod peer;
pub mod protocol;
pub mod registry;
pub mod room;
pub mod ws;

use axum::{
    extract::{ws::WebSocketUpgrade, State},
    response::Response,
};
use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

pub use registry::Rooms;

use crate::{
    attendance::journal,
    auth::tokens::Grants,
    http::{
        error::{ApiError, ApiResult, ErrorBody},
        extract::{AuthUser, Json, Path},
    },
    programme::{self, Status},
    AppState,
};

pub use crate::programme::OPENS_BEFORE_MINUTES;

/// How long a room token may wait before it is used to connect.
pub const TOKEN_TTL: chrono::Duration = chrono::Duration::minutes(2);

/// Everything a client needs to enter the room.
#[derive(Serialize, ToSchema)]
pub struct RoomTicket {
    /// The room token: send it in the WebSocket's `join` message (not in the URL).
    pub token: String,
    pub expires_at: DateTime<Utc>,
    /// The signalling WebSocket's path, e.g. `/api/rooms/42/ws`.
    pub ws_path: String,
    /// Your id inside the room.
    pub participant_id: String,
    pub grants: Grants,
}

/// A room token for this session, if you may enter: confirmed registrants
/// receive, presenters also publish (co-hosts also go live, record and run
/// breakouts), organisers also host.
#[utoipa::path(security(("bearer" = []), ("cookie" = [])), post, path = "/api/sessions/{id}/join", tag = "rooms",
    responses((status = 200, body = RoomTicket),
              (status = 401, body = ErrorBody, description = "sign in first"),
              (status = 403, body = ErrorBody, description = "not registered, or the email address is not verified yet (the error says why)"),
              (status = 404, body = ErrorBody), (status = 409, body = ErrorBody, description = "the session was cancelled")))]
async fn join(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    Path(id): Path<i64>,
) -> ApiResult<Json<RoomTicket>> {
    user.require_verified()?;
    let session = programme::visible(&state.db, id, Some(&user)).await?;
    if session.status == Status::Cancelled {
        return Err(ApiError::Conflict { field: None, message: "this session was cancelled".into() });
    }
    let schedule = programme::schedule::load(&state.db, id).await?.ok_or(ApiError::NotFound("session"))?;
    if state.rooms.ended_at(id, &schedule).await?.is_some() {
        return Err(ApiError::Conflict { field: None, message: "this session has ended".into() });
    }
    let opens = session.starts_at - chrono::Duration::minutes(OPENS_BEFORE_MINUTES);
    if Utc::now() < opens {
        return Err(ApiError::Conflict {
            field: None,
            message: format!(
                "the room opens {OPENS_BEFORE_MINUTES} minutes before the start, at {} UTC",
                opens.format("%H:%M on %-d %B")
            ),
        });
    }
    if journal::is_barred(&state.db, id, user.id).await? {
        return Err(ApiError::forbidden("a host removed you from this session"));
    }
    let grants = if user.is_organiser {
        Grants { publish: true, subscribe: true, host: true, cohost: false }
    } else if let Some(presenter) = session.presenters.iter().find(|p| p.id == user.id) {
        Grants { publish: true, subscribe: true, host: false, cohost: presenter.cohost }
    } else {
        let status: Option<String> =
            sqlx::query_scalar("select status from registrations where session_id = $1 and user_id = $2")
                .bind(id)
                .bind(user.id)
                .fetch_optional(&state.db.read)
                .await?;
        match status.as_deref() {
            Some("confirmed") => Grants { publish: false, subscribe: true, host: false, cohost: false },
            Some("waitlisted") => {
                return Err(ApiError::forbidden("you are on the waiting list: only confirmed places can join"))
            }
            _ => return Err(ApiError::forbidden("register for this session to join")),
        }
    };
    let token = state.keys.sign_room(user.id, id, &user.name, grants, TOKEN_TTL);
    tracing::info!(session = id, user = user.id, ?grants, "room token issued");
    Ok(Json(RoomTicket {
        token,
        expires_at: Utc::now() + TOKEN_TTL,
        ws_path: format!("/api/rooms/{id}/ws"),
        participant_id: user.id.to_string(),
        grants,
    }))
}

/// The signalling WebSocket (see docs/signalling.md). The room token comes
/// in the first message (`join`), never in the URL, which access logs and
/// tracing spans keep. A bad token is answered with close code 4001
/// (invalid or expired) or 4003 (another session's), because browsers
/// cannot read an HTTP status.
#[utoipa::path(get, path = "/api/rooms/{id}/ws", tag = "rooms",
    responses((status = 101, description = "switching to the signalling protocol")))]
async fn signalling(State(state): State<AppState>, Path(id): Path<i64>, upgrade: WebSocketUpgrade) -> Response {
    // Frames beyond this are a protocol error (close 1009); up to it, an
    // oversized message gets an `error` reply and the connection stays.
    upgrade.max_message_size(4 * protocol::MAX_MESSAGE_BYTES).on_upgrade(move |socket| ws::serve(state, id, socket))
}

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(join)).routes(routes!(signalling))
}
