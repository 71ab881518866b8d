//! The signalling WebSocket: admits a room token, waits for `join`, then
//! relays the client's messages to the room task and the room's messages
//! back. Bad input gets an `error` message and the connection stays open.

use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket};
use futures_util::{stream::SplitSink, SinkExt, StreamExt};
use tokio::sync::mpsc;

use super::{
    command::{JoinError, Outgoing, RoomCommand},
    protocol::{self, close, ClientMessage, ErrorCode, History, ServerMessage},
    room::{Identity, LeaveReason},
};
use crate::{
    attendance::journal,
    auth::tokens::Refusal,
    db::Db,
    interaction::{chat, polls, questions, InteractionError},
    AppState,
};

/// How long a connection may stay open without sending `join`.
const JOIN_TIMEOUT: Duration = Duration::from_secs(10);

type Sink = SplitSink<WebSocket, Message>;

async fn close(mut sink: Sink, code: u16, reason: &str) {
    let frame = CloseFrame { code, reason: reason.into() };
    let _ = sink.send(Message::Close(Some(frame))).await;
}

async fn send(sink: &mut Sink, message: &ServerMessage) -> bool {
    sink.send(Message::Text(message.to_json().into())).await.is_ok()
}

pub async fn serve(state: AppState, session_id: i64, token: Option<String>, socket: WebSocket) {
    let (mut sink, mut stream) = socket.split();
    let claims = match token.as_deref().map(|t| state.keys.verify_room(t)) {
        Some(Ok(claims)) => claims,
        Some(Err(Refusal::Expired)) => {
            return close(sink, close::BAD_TOKEN, "the room token has expired: ask for a new one").await
        }
        _ => return close(sink, close::BAD_TOKEN, "a valid room token is needed").await,
    };
    if claims.sid != session_id {
        return close(sink, close::WRONG_ROOM, "this room token is for another session").await;
    }
    let Ok(user_id) = claims.sub.parse::<i64>() else {
        return close(sink, close::BAD_TOKEN, "a valid room token is needed").await;
    };
    let identity = Identity { user_id, name: claims.name, grants: claims.grants };
    // A token issued before a removal must not bring the person back.
    if journal::is_barred(&state.db, session_id, user_id).await.unwrap_or(false) {
        return close(sink, close::REMOVED, "a host removed you from this session").await;
    }
    let schedule = match journal::schedule(&state.db, session_id).await {
        Ok(Some(schedule)) => schedule,
        Ok(None) => return close(sink, close::WRONG_ROOM, "there is no such session").await,
        Err(e) => {
            tracing::error!(session = session_id, error = ?e, "failed to read the session's schedule");
            return close(sink, close::SERVER_ERROR, "the room could not be entered: try again").await;
        }
    };
    match state.rooms.ended_at(session_id, &schedule).await {
        Ok(None) => {}
        Ok(Some(_)) => return close(sink, close::ENDED, "this session has ended").await,
        Err(e) => {
            tracing::error!(session = session_id, error = ?e, "failed to check whether the session has ended");
            return close(sink, close::SERVER_ERROR, "the room could not be entered: try again").await;
        }
    }
    let live = schedule.live_at.is_some();

    // Until `join`, only this handler talks to the client.
    let deadline = tokio::time::sleep(JOIN_TIMEOUT);
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            _ = &mut deadline => return close(sink, close::NO_JOIN, "send join first").await,
            message = stream.next() => {
                let reply = match message {
                    None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return,
                    Some(Ok(Message::Text(text))) => match protocol::parse(&text) {
                        Ok(ClientMessage::Join) => break,
                        Ok(_) => ServerMessage::error(ErrorCode::NotJoined, "send join first"),
                        Err((code, message)) => ServerMessage::error(code, message),
                    },
                    Some(Ok(Message::Binary(_))) => ServerMessage::error(ErrorCode::BadMessage, "messages are JSON text"),
                    Some(Ok(_)) => continue,
                };
                if !send(&mut sink, &reply).await {
                    return;
                }
            }
        }
    }

    let history = match history(&state.db, session_id, user_id, identity.grants.host).await {
        Ok(h) => h,
        Err(e) => {
            tracing::error!(session = session_id, error = ?e, "failed to load the room's history");
            History::default()
        }
    };
    let (out, outgoing) = mpsc::unbounded_channel();
    let conn = state.rooms.next_conn();
    match state.rooms.join(session_id, identity, conn, out.clone(), history, live, schedule).await {
        Ok(()) => {}
        Err(JoinError::Ended) => return close(sink, close::ENDED, "this session has ended").await,
        Err(e) => {
            tracing::warn!(session = session_id, user = user_id, error = ?e, "could not enter the room");
            return close(sink, close::SERVER_ERROR, "the room could not be entered: try again").await;
        }
    }
    let mut writer = tokio::spawn(write(sink, outgoing));

    let mut reason = LeaveReason::Dropped;
    let mut goodbye = (1000, "goodbye");
    while let Some(message) = stream.next().await {
        let error = match message {
            Ok(Message::Close(_)) => break,
            Err(e) => {
                // The WebSocket layer refuses frames over its limit; say so
                // with the standard code rather than a plain goodbye.
                if e.to_string().contains("too long") {
                    goodbye = (1009, "message too big");
                }
                break;
            }
            Ok(Message::Text(text)) => match protocol::parse(&text) {
                Ok(ClientMessage::Leave) => {
                    reason = LeaveReason::Left;
                    break;
                }
                Ok(ClientMessage::Join) => ServerMessage::error(ErrorCode::AlreadyJoined, "already in the room"),
                Ok(message) => {
                    state.rooms.send(session_id, RoomCommand::Client { participant: user_id, conn, message });
                    continue;
                }
                Err((code, message)) => ServerMessage::error(code, message),
            },
            Ok(Message::Binary(_)) => ServerMessage::error(ErrorCode::BadMessage, "messages are JSON text"),
            Ok(_) => continue,
        };
        let _ = out.send(Outgoing::Message(error));
    }
    state.rooms.send(session_id, RoomCommand::Leave { participant: user_id, conn, reason });
    let _ = out.send(Outgoing::Close(goodbye.0, goodbye.1));
    drop(out);
    if tokio::time::timeout(Duration::from_secs(2), &mut writer).await.is_err() {
        writer.abort();
    }
}

/// What a joining participant sees of the stored interaction: the latest
/// chat, every question, and the polls (drafts and live results for hosts;
/// for others, results once revealed).
async fn history(db: &Db, session_id: i64, user_id: i64, host: bool) -> Result<History, InteractionError> {
    let polls: Vec<polls::Poll> = polls::list(db, session_id)
        .await?
        .into_iter()
        .filter(|p| host || p.status != polls::PollStatus::Draft)
        .collect();
    let mut poll_results = vec![];
    for p in polls.iter().filter(|p| host || p.revealed) {
        poll_results.push(polls::results(db, session_id, p.id).await?);
    }
    Ok(History {
        chat: chat::recent(db, session_id, None, chat::HISTORY).await?,
        questions: questions::list(db, session_id, user_id).await?,
        polls,
        poll_results,
        voted: polls::voted_in(db, session_id, user_id).await?,
    })
}

async fn write(mut sink: Sink, mut outgoing: mpsc::UnboundedReceiver<Outgoing>) {
    while let Some(item) = outgoing.recv().await {
        match item {
            Outgoing::Message(message) => {
                if !send(&mut sink, &message).await {
                    return;
                }
            }
            Outgoing::Close(code, reason) => return close(sink, code, reason).await,
        }
    }
    let _ = sink.close().await;
}
