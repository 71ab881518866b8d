//! The signalling WebSocket: waits for `join` with the room token, admits
//! it, then relays the client's messages to the room task and the room's messages
//! back. Bad input gets an `error` message and the connection stays open.

use std::time::{Duration, Instant};

use axum::extract::ws::{CloseFrame, Message, WebSocket};
use futures_util::{stream::SplitSink, SinkExt, StreamExt};

use super::{
    command::{JoinError, Outbox, OutboxReader, Outgoing, RoomCommand, OUTBOX_CAPACITY},
    limits::{Allowance, Verdict},
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
/// The server pings each client this often (browsers answer on their own).
const PING_EVERY: Duration = Duration::from_secs(15);
/// A client heard nothing from (no message, no pong) for this long is gone.
const SILENCE: Duration = Duration::from_secs(45);
/// A single write that takes longer than this means the client is not reading.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

type Sink = SplitSink<WebSocket, Message>;

async fn close(mut sink: Sink, code: u16, reason: &str) {
    let frame = CloseFrame { code, reason: reason.into() };
    let _ = sink.send(Message::Close(Some(frame))).await;
}

async fn send(sink: &mut Sink, message: &ServerMessage) -> bool {
    sink.send(Message::Text(message.to_json().into())).await.is_ok()
}

/// Waits for `join`, the client's first message, and returns the room token
/// it carries. Anything else first gets `error not_joined`; no `join` within
/// [`JOIN_TIMEOUT`] closes with 4008. `None`: the client went away or was
/// closed.
async fn first_join(
    sink: &mut Sink,
    stream: &mut futures_util::stream::SplitStream<WebSocket>,
) -> Option<Option<String>> {
    let deadline = tokio::time::sleep(JOIN_TIMEOUT);
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            _ = &mut deadline => {
                let frame = CloseFrame { code: close::NO_JOIN, reason: "send join first".into() };
                let _ = sink.send(Message::Close(Some(frame))).await;
                return None;
            }
            message = stream.next() => {
                let reply = match message {
                    None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return None,
                    Some(Ok(Message::Text(text))) => match protocol::parse(&text) {
                        Ok(ClientMessage::Join { token }) => return Some(token),
                        Ok(_) => ServerMessage::error(ErrorCode::NotJoined, "send join first"),
                        Err((code, message)) => ServerMessage::error(code, message),
                    },
                    Some(Ok(Message::Binary(_))) => ServerMessage::error(ErrorCode::BadMessage, "messages are JSON text"),
                    Some(Ok(_)) => continue,
                };
                if !send(sink, &reply).await {
                    return None;
                }
            }
        }
    }
}

pub async fn serve(state: AppState, session_id: i64, socket: WebSocket) {
    let (mut sink, mut stream) = socket.split();
    // The token comes in `join`: a URL's query ends up in access logs.
    let Some(token) = first_join(&mut sink, &mut stream).await else { return };
    let claims = match token.as_deref().map(|t| state.keys.verify_room(t)) {
        Some(Ok(claims)) => claims,
        Some(Err(Refusal::Expired)) => {
            return close(sink, close::BAD_TOKEN, "the room token has expired: ask for a new one").await
        }
        _ => return close(sink, close::BAD_TOKEN, "a valid room token is needed in join").await,
    };
    if claims.sid != session_id {
        return close(sink, close::WRONG_ROOM, "this room token is for another session").await;
    }
    let Ok(user_id) = claims.sub.parse::<i64>() else {
        return close(sink, close::BAD_TOKEN, "a valid room token is needed in join").await;
    };
    let identity = Identity { user_id, name: claims.name, grants: claims.grants };
    // A token issued before a removal must not bring the person back.
    if journal::is_barred(&state.db, session_id, user_id).await.unwrap_or(false) {
        return close(sink, close::REMOVED, "a host removed you from this session").await;
    }
    let schedule = match crate::programme::schedule::load(&state.db, session_id).await {
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

    let history = match history(&state.db, session_id, user_id, identity.grants.host).await {
        Ok(h) => h,
        Err(e) => {
            tracing::error!(session = session_id, error = ?e, "failed to load the room's history");
            History::default()
        }
    };
    let (out, outgoing) = Outbox::new(OUTBOX_CAPACITY);
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
    let mut writer_done = false;

    let mut reason = LeaveReason::Dropped;
    let mut goodbye = (1000, "goodbye");
    let mut allowance = Allowance::new(Instant::now());
    let mut heard = Instant::now();
    let mut idle = tokio::time::interval(PING_EVERY);
    loop {
        let message = tokio::select! {
            message = stream.next() => match message {
                Some(message) => message,
                None => break,
            },
            // The writer stopped: the client is not reading (or is gone).
            _ = &mut writer => {
                writer_done = true;
                break;
            }
            _ = idle.tick() => {
                if heard.elapsed() > SILENCE {
                    tracing::info!(session = session_id, user = user_id, "no word from the client: closing");
                    goodbye = (close::TOO_SLOW, "no answer to pings");
                    break;
                }
                continue;
            }
        };
        heard = Instant::now();
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
            Ok(Message::Text(text)) => {
                let parsed = protocol::parse(&text);
                let verdict = match &parsed {
                    Ok(message) => allowance.check(message, heard),
                    Err(_) => allowance.check_unparsed(heard),
                };
                match verdict {
                    Verdict::Pass => {}
                    Verdict::Drop { tell: false } => continue,
                    Verdict::Drop { tell: true } => {
                        let message = "too many messages: slow down (some were dropped)";
                        let _ = out.send(Outgoing::Message(ServerMessage::error(ErrorCode::TooFast, message)));
                        continue;
                    }
                    Verdict::Disconnect => {
                        tracing::warn!(
                            session = session_id,
                            user = user_id,
                            "a client kept flooding the room: closing"
                        );
                        goodbye = (close::TOO_MANY_MESSAGES, "too many messages");
                        break;
                    }
                }
                match parsed {
                    Ok(ClientMessage::Leave) => {
                        reason = LeaveReason::Left;
                        break;
                    }
                    Ok(ClientMessage::Join { .. }) => {
                        ServerMessage::error(ErrorCode::AlreadyJoined, "already in the room")
                    }
                    Ok(message) => {
                        state.rooms.send(session_id, RoomCommand::Client { participant: user_id, conn, message });
                        continue;
                    }
                    Err((code, message)) => ServerMessage::error(code, message),
                }
            }
            Ok(Message::Binary(_)) => {
                if allowance.check_unparsed(heard) != Verdict::Pass {
                    continue;
                }
                ServerMessage::error(ErrorCode::BadMessage, "messages are JSON text")
            }
            Ok(_) => continue,
        };
        let _ = out.send(Outgoing::Message(error));
    }
    state.rooms.send(session_id, RoomCommand::Leave { participant: user_id, conn, reason });
    let _ = out.send(Outgoing::Close(goodbye.0, goodbye.1));
    drop(out);
    if !writer_done && tokio::time::timeout(Duration::from_secs(2), &mut writer).await.is_err() {
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

/// Sends what the room queued, pings the client every [`PING_EVERY`], and
/// gives up on a client that does not read: a write that stalls for
/// [`WRITE_TIMEOUT`], or a queue that overflowed ([`OUTBOX_CAPACITY`]).
async fn write(mut sink: Sink, mut outgoing: OutboxReader) {
    let mut ping = tokio::time::interval(PING_EVERY);
    ping.tick().await;
    loop {
        let sent = tokio::select! {
            item = outgoing.rx.recv() => match item {
                Some(Outgoing::Message(message)) => {
                    tokio::time::timeout(WRITE_TIMEOUT, send(&mut sink, &message)).await.unwrap_or(false)
                }
                Some(Outgoing::Close(code, reason)) => {
                    let _ = tokio::time::timeout(WRITE_TIMEOUT, close(sink, code, reason)).await;
                    return;
                }
                None => break,
            },
            _ = outgoing.cut.notified() => {
                tracing::warn!("a client fell too far behind reading: closing");
                let _ = tokio::time::timeout(WRITE_TIMEOUT, close(sink, close::TOO_SLOW, "too slow to read")).await;
                return;
            }
            _ = ping.tick() => {
                tokio::time::timeout(WRITE_TIMEOUT, sink.send(Message::Ping(Vec::new().into()))).await.is_ok_and(|r| r.is_ok())
            }
        };
        if !sent {
            tracing::info!("a write to a client stalled or failed: closing");
            return;
        }
    }
    let _ = tokio::time::timeout(WRITE_TIMEOUT, sink.close()).await;
}
