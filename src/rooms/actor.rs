//! The room's actor: one task per live room, the only owner of its state.
//! It takes [`RoomCommand`]s, applies them to [`RoomState`] (the rules) and
//! carries out the resulting effects: messages to connections, commands to
//! the media engine's connections and sources, durable facts to the attendance journal.
//!
//! The live part has an end even when no host presses End: the room closes
//! itself at the scheduled end plus the session's grace, and a room left
//! empty after the scheduled end closes for good once it has been empty for
//! a while (docs/attendance.md).

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
    time::{Duration, Instant},
};

use tokio::sync::mpsc;

use super::{
    command::{JoinError, Outbox, Outgoing, RoomCommand},
    peer,
    protocol::{close, ClientMessage, ErrorCode, ServerMessage},
    registry::Rooms,
    room::{Attendance, Effect, MediaKind, ParticipantId, PublishRefusal, RoomState, TrackId},
};
use crate::{
    attendance::journal::{Fact, Journal},
    interaction::chat,
    media::{self, Connection, Source},
    programme::Schedule,
    recording::Recorder,
};

pub(super) struct Member {
    pub(super) conn: u64,
    pub(super) out: Outbox,
    pub(super) peer: Connection,
}

pub(super) struct RoomTask {
    pub(super) session_id: i64,
    pub(super) generation: u64,
    pub(super) rooms: Arc<Rooms>,
    pub(super) state: RoomState,
    pub(super) members: HashMap<ParticipantId, Member>,
    /// Published tracks, as the engine forwards them.
    pub(super) sources: HashMap<TrackId, Source>,
    pub(super) journal: Journal,
    /// For callbacks (peer tasks, forwarders) to reach this task.
    pub(super) tx: mpsc::UnboundedSender<RoomCommand>,
    pub(super) chat_throttle: chat::Throttle,
    pub(super) recording: Recording,
    /// The session's times, as of the latest join.
    pub(super) schedule: Option<Schedule>,
    /// When the room last became empty after the scheduled end.
    pub(super) empty_since: Option<i64>,
    /// The live part is over (or the server is stopping): close when empty, admit nobody.
    pub(super) ended: bool,
}

/// The room's recording, if a host started one (see `crate::recording`).
pub(super) enum Recording {
    Off,
    Starting,
    On { recorder: Recorder, tracks: HashSet<TrackId> },
}

pub(super) fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

impl RoomTask {
    pub(super) fn new(
        session_id: i64,
        generation: u64,
        rooms: Arc<Rooms>,
        tx: mpsc::UnboundedSender<RoomCommand>,
    ) -> Self {
        RoomTask {
            session_id,
            generation,
            journal: Journal::open(rooms.db.clone(), session_id, rooms.heartbeat),
            rooms,
            state: RoomState::default(),
            members: HashMap::new(),
            sources: HashMap::new(),
            tx,
            chat_throttle: chat::Throttle::default(),
            recording: Recording::Off,
            schedule: None,
            empty_since: None,
            ended: false,
        }
    }

    pub(super) async fn run(mut self, mut rx: mpsc::UnboundedReceiver<RoomCommand>) {
        tracing::info!("room opened");
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                command = rx.recv() => {
                    let Some(command) = command else { break };
                    self.handle(command).await;
                }
                _ = tick.tick() => {
                    let fx = self.state.tick(Instant::now(), now_ms());
                    self.apply(fx).await;
                    self.keep_time().await;
                }
            }
            if self.state.is_empty() && self.may_close(now_ms()).await {
                // Nobody left: stop taking commands, turn away joins that
                // raced in (they retry into a fresh room, or are told the
                // session has ended), and close.
                self.rooms.closed(self.session_id, self.generation);
                self.stop_recording(None).await;
                rx.close();
                let refusal = if self.ended { JoinError::Ended } else { JoinError::Closing };
                while let Some(command) = rx.recv().await {
                    if let RoomCommand::Join { reply, .. } = command {
                        let _ = reply.send(Err(refusal));
                    }
                }
                break;
            }
        }
        // Dropping the journal writes what is left and clears the heartbeat.
        tracing::info!("room closed");
    }

    /// Ends the live part at the scheduled end plus the grace, for whoever is still in.
    async fn keep_time(&mut self) {
        let Some(schedule) = self.schedule else { return };
        if !self.ended && now_ms() >= schedule.closes_at() {
            tracing::info!(closes_at = schedule.closes_at(), "the session's time is over");
            self.finish(schedule.closes_at(), "the session's time is over").await;
        }
    }

    /// Whether an empty room may close now. Before the scheduled end it may
    /// (people rejoin into a fresh room). After it, the room waits a while
    /// for someone to come back; once it has been empty that long, the live
    /// part is over for good.
    async fn may_close(&mut self, now: i64) -> bool {
        let Some(schedule) = self.schedule.filter(|s| !self.ended && now >= s.ends_at) else {
            return true;
        };
        let since = *self.empty_since.get_or_insert(now);
        if now - since < self.rooms.empty_room_end.as_millis() as i64 {
            return false;
        }
        tracing::info!(since, ends_at = schedule.ends_at, "the room stayed empty after the scheduled end");
        self.finish(since, "the session has ended").await;
        true
    }

    /// The live part is over at `at`: stored first (so nobody can enter
    /// between the goodbye and the mark), then everyone is told and closed.
    pub(super) async fn finish(&mut self, at: i64, reason: &'static str) {
        self.ended = true;
        self.journal.write(Fact::Ended { at });
        self.journal.flush().await;
        self.broadcast(ServerMessage::Phase { phase: "ended" });
        self.end(reason).await;
    }

    pub(super) async fn handle(&mut self, command: RoomCommand) {
        match command {
            RoomCommand::Join { identity, conn, out, history, live, schedule, reply } => {
                if self.ended {
                    let _ = reply.send(Err(JoinError::Ended));
                    return;
                }
                self.schedule = Some(schedule);
                self.empty_since = None;
                let participant = identity.user_id;
                let peer = peer::open(
                    &self.rooms.media,
                    participant,
                    conn,
                    identity.grants.publish,
                    out.clone(),
                    self.tx.clone(),
                );
                // A rejoin replaces the earlier connection: close it first, so
                // the effects below only ever meet the new one.
                if let Some(old) = self.members.remove(&participant) {
                    let _ = old.out.send(Outgoing::Close(close::REPLACED, "joined again from elsewhere"));
                    old.peer.close();
                }
                let fx = self.state.join(identity, conn, now_ms(), live);
                self.members.insert(participant, Member { conn, out, peer });
                tracing::info!(participant, conn, "joined");
                let _ = reply.send(Ok(()));
                self.apply(fx).await;
                self.send_to(participant, ServerMessage::History(history));
                if let Recording::On { recorder, .. } = &self.recording {
                    let recording_id = recorder.id.clone();
                    self.send_to(participant, ServerMessage::Recording { on: true, recording_id });
                }
            }
            RoomCommand::Deliver(fx) => self.apply(fx).await,
            RoomCommand::OpenPlan { by, plan } => {
                let fx = self.state.breakout_open(by, &plan, now_ms());
                self.apply(fx).await;
            }
            RoomCommand::Client { participant, conn, message: ClientMessage::Action(action) } => {
                if self.state.is_current(participant, conn) {
                    self.act(participant, action).await;
                }
            }
            RoomCommand::Client { participant, conn, message } => {
                if let Some(m) = self.members.get(&participant).filter(|m| m.conn == conn) {
                    peer::signal(&m.peer, message);
                }
            }
            RoomCommand::Leave { participant, conn, reason } => {
                let fx = self.state.leave(participant, conn, reason, now_ms());
                if !fx.is_empty() {
                    tracing::info!(participant, conn, reason = reason.as_str(), "left");
                }
                self.apply(fx).await;
            }
            RoomCommand::AudioLevel { track, level } => {
                tracing::trace!(%track, level, "audio level");
                let fx = self.state.audio_level(&track, level, Instant::now());
                self.apply(fx).await;
            }
            RoomCommand::TrackArrived { participant, conn, track } => {
                let media::IncomingTrack { source, kind, mime_type, audio_level_ext } = track;
                let (kind, mime_type) = match (kind, mime_type) {
                    (Some(kind), Some(mime_type)) => (kind, mime_type),
                    (kind, mime_type) => {
                        // Not accepted: the engine discards its packets.
                        tracing::warn!(
                            participant,
                            ?kind,
                            ?mime_type,
                            "a track without a known kind or codec: not forwarded"
                        );
                        return;
                    }
                };
                let kind = match kind {
                    media::Kind::Audio => MediaKind::Audio,
                    media::Kind::Video => MediaKind::Video,
                };
                match self.state.publish(participant, conn, kind, &mime_type) {
                    Ok((track, fx)) => {
                        tracing::info!(participant, %track, %mime_type, ?audio_level_ext, "track published");
                        source.accept(&track, audio_level_ext.is_some());
                        self.sources.insert(track.clone(), source);
                        self.apply(fx).await;
                        self.record_track(&track);
                    }
                    Err(refusal) => {
                        if refusal == PublishRefusal::NotAllowed {
                            tracing::info!(participant, "media refused: no publish grant");
                            self.send_to(
                                participant,
                                ServerMessage::error(
                                    ErrorCode::PublishNotAllowed,
                                    "you may not publish in this session: your media was refused",
                                ),
                            );
                        }
                    }
                }
            }
            RoomCommand::TrackEnded { track } => {
                let fx = self.state.unpublish(&track);
                self.apply(fx).await;
            }
            RoomCommand::RecordingStarted { by, result } => self.recording_started(by, result),
            RoomCommand::RecordAutomatically { by } => {
                if matches!(self.recording, Recording::Off) {
                    self.start_recording(by);
                }
            }
            RoomCommand::End { done } => {
                self.end("the room has ended").await;
                let _ = done.send(());
            }
            RoomCommand::KeyframeWanted { participant, conn, track } => {
                if self.state.is_current(participant, conn) {
                    let fx = self.state.keyframe_wanted(participant, &track, Instant::now());
                    self.apply(fx).await;
                }
            }
            RoomCommand::SubscriberReady { participant, conn, track } => {
                if self.state.is_current(participant, conn) {
                    let fx = self.state.subscriber_ready(participant, &track, Instant::now());
                    self.apply(fx).await;
                }
            }
        }
    }

    /// Everyone leaves with reason `ended` and is closed with 4010; returns
    /// once their attendance is written.
    pub(super) async fn end(&mut self, reason: &'static str) {
        self.stop_recording(None).await;
        let outs: Vec<Outbox> = self.members.values().map(|m| m.out.clone()).collect();
        let fx = self.state.end(now_ms());
        self.apply(fx).await;
        for out in outs {
            let _ = out.send(Outgoing::Close(close::ENDED, reason));
        }
        self.journal.flush().await;
        tracing::info!("room ended");
    }

    pub(super) fn broadcast(&self, message: ServerMessage) {
        self.note(&message);
        for m in self.members.values() {
            let _ = m.out.send(Outgoing::Message(message.clone()));
        }
    }

    pub(super) fn send_to(&self, participant: ParticipantId, message: ServerMessage) {
        if let Some(m) = self.members.get(&participant) {
            let _ = m.out.send(Outgoing::Message(message));
        }
    }

    pub(super) async fn apply(&mut self, effects: Vec<Effect>) {
        for effect in effects {
            match effect {
                Effect::Send(to, message) => self.send_to(to, message),
                Effect::ToHosts(message) => {
                    for host in self.state.hosts() {
                        self.send_to(host, message.clone());
                    }
                }
                Effect::Broadcast { except, message } => {
                    self.note(&message);
                    for (id, m) in &self.members {
                        if Some(*id) != except {
                            let _ = m.out.send(Outgoing::Message(message.clone()));
                        }
                    }
                }
                Effect::Subscribe { subscriber, track } => {
                    if let (Some(m), Some(source)) = (self.members.get(&subscriber), self.sources.get(&track.id)) {
                        let kind = if track.kind == "audio" { media::Kind::Audio } else { media::Kind::Video };
                        let local = media::LocalTrack {
                            name: track.id,
                            stream: track.participant_id,
                            kind,
                            mime_type: track.mime_type,
                        };
                        m.peer.subscribe(source, local);
                    }
                }
                Effect::Unsubscribe { subscriber, track } => {
                    if let Some(m) = self.members.get(&subscriber) {
                        m.peer.unsubscribe(&track);
                    }
                }
                Effect::StopTrack(track) => {
                    if let Some(source) = self.sources.remove(&track) {
                        source.stop();
                    }
                }
                Effect::RequestKeyframe(track) => {
                    if let Some(source) = self.sources.get(&track) {
                        source.request_keyframe();
                    }
                }
                Effect::Disconnect { participant, conn, code, reason } => {
                    if let Some(m) = self.members.get(&participant).filter(|m| m.conn == conn) {
                        let _ = m.out.send(Outgoing::Close(code, reason));
                    }
                }
                Effect::ClosePeer { participant, conn } => {
                    if self.members.get(&participant).is_some_and(|m| m.conn == conn) {
                        if let Some(m) = self.members.remove(&participant) {
                            m.peer.close();
                        }
                    }
                }
                Effect::PauseTrack { track, paused } => {
                    if let Some(source) = self.sources.get(&track) {
                        source.pause(paused);
                    }
                }
                Effect::AllowPublish { participant, allowed } => {
                    if let Some(m) = self.members.get(&participant) {
                        m.peer.allow_publish(allowed);
                    }
                }
                Effect::ToSpace(space, message) => {
                    if space.is_none() {
                        self.note(&message);
                    }
                    for id in self.state.in_space(space) {
                        self.send_to(id, message.clone());
                    }
                }
                Effect::RecordMove { user_id, group, at } => self.journal.write(Fact::Move { user_id, group, at }),
                Effect::ChatHistory { to, space } => {
                    let (db, session_id, room) = (self.rooms.db.clone(), self.session_id, self.tx.clone());
                    tokio::spawn(async move {
                        match chat::recent(&db, session_id, space, chat::HISTORY).await {
                            Ok(chat) => {
                                let message = ServerMessage::ChatHistory { group: space, chat };
                                let fx = to.into_iter().map(|p| Effect::Send(p, message.clone())).collect();
                                let _ = room.send(RoomCommand::Deliver(fx));
                            }
                            Err(e) => {
                                tracing::error!(error = ?e, ?space, "failed to load a space's chat for people moving in")
                            }
                        }
                    });
                }
                Effect::WentLive => self.journal.write(Fact::Live { at: now_ms() }),
                Effect::Bar(user_id) => self.journal.write(Fact::Bar { user_id, at: now_ms() }),
                Effect::Record(Attendance { user_id, left, at }) => self.journal.write(match left {
                    None => Fact::Join { user_id, at },
                    Some(reason) => Fact::Leave { user_id, reason: reason.as_str(), at },
                }),
            }
        }
    }
}
