//! The room task: one per live room, the only owner of its state. WebSocket
//! handlers and the engine's callbacks send it [`RoomCommand`]s; it applies
//! them to [`RoomState`] and carries out the resulting effects.

use std::{
    collections::{HashMap, HashSet},
    path::PathBuf,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use tokio::sync::{mpsc, oneshot};
use tracing::Instrument;
use webrtc::media_stream::track_remote::TrackRemote;

use super::{
    engine::{self, Engine, Forwarder, ForwarderCommand},
    peer::{self, Peer, PeerCommand, PeerContext},
    protocol::{Action, ClientMessage, ErrorCode, History, ServerMessage},
    room::{
        Attendance, ConnId, Effect, Identity, LeaveReason, MediaKind, ParticipantId, PublishRefusal, RoomState, TrackId,
    },
};
use crate::{
    db::Db,
    interaction::{chat, polls, questions, InteractionError},
    recording::Recorder,
};

/// What the connection's writer sends to the client.
#[derive(Debug)]
pub enum Outgoing {
    Message(ServerMessage),
    Close(u16, &'static str),
}

pub type Outbox = mpsc::UnboundedSender<Outgoing>;

pub enum RoomCommand {
    Join {
        identity: Identity,
        conn: ConnId,
        out: Outbox,
        /// Stored chat, questions and polls, sent right after `welcome`.
        history: History,
        /// The room went live before (the database says so).
        live: bool,
        reply: oneshot::Sender<Result<(), JoinError>>,
    },
    /// Messages prepared off the room task (after a database write), to send now.
    Deliver(Vec<Effect>),
    /// A saved breakout plan, loaded for the host who asked to open it.
    OpenPlan {
        by: ParticipantId,
        plan: crate::breakout::Plan,
    },
    Client {
        participant: ParticipantId,
        conn: ConnId,
        message: ClientMessage,
    },
    Leave {
        participant: ParticipantId,
        conn: ConnId,
        reason: LeaveReason,
    },
    TrackArrived {
        participant: ParticipantId,
        conn: ConnId,
        remote: Arc<dyn TrackRemote>,
        kind: Option<MediaKind>,
        mime_type: Option<String>,
        /// The audio-level extension's id in the publisher's offer.
        audio_level_ext: Option<u8>,
    },
    /// The session is set to record from going live (a host just did).
    RecordAutomatically {
        by: ParticipantId,
    },
    /// A recording a host asked for has started (or could not).
    RecordingStarted {
        by: ParticipantId,
        result: Result<Recorder, String>,
    },
    /// The loudest audio level on a track since the last report.
    AudioLevel {
        track: TrackId,
        level: u8,
    },
    TrackEnded {
        track: TrackId,
    },
    SubscriberReady {
        participant: ParticipantId,
        conn: ConnId,
        track: TrackId,
    },
    /// Close the room for everyone; `done` once their leaves are stored.
    End {
        done: oneshot::Sender<()>,
    },
    /// The subscriber's decoder asked for a keyframe of this track.
    KeyframeWanted {
        participant: ParticipantId,
        conn: ConnId,
        track: TrackId,
    },
}

#[derive(Debug)]
pub enum JoinError {
    /// The room was closing as the join arrived: try again (a new room starts).
    Closing,
}

/// Every live room of this server, by session id.
pub struct Rooms {
    db: Db,
    engine: Arc<Engine>,
    recordings_dir: PathBuf,
    heartbeat: Duration,
    rooms: Mutex<HashMap<i64, (u64, mpsc::UnboundedSender<RoomCommand>)>>,
    next_id: AtomicU64,
}

impl Rooms {
    pub fn new(db: Db, engine: Engine, recordings_dir: PathBuf, heartbeat: Duration) -> Rooms {
        Rooms {
            db,
            engine: Arc::new(engine),
            recordings_dir,
            heartbeat,
            rooms: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
        }
    }

    pub fn next_conn(&self) -> ConnId {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    fn room(self: &Arc<Self>, session_id: i64) -> mpsc::UnboundedSender<RoomCommand> {
        let mut rooms = self.rooms.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, tx)) = rooms.get(&session_id) {
            if !tx.is_closed() {
                return tx.clone();
            }
        }
        let generation = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::unbounded_channel();
        rooms.insert(session_id, (generation, tx.clone()));
        let room = RoomTask {
            session_id,
            generation,
            rooms: self.clone(),
            state: RoomState::default(),
            members: HashMap::new(),
            forwarders: HashMap::new(),
            records: spawn_recorder(self.db.clone(), session_id, self.heartbeat),
            tx: tx.clone(),
            chat_throttle: chat::Throttle::default(),
            recording: Recording::Off,
        };
        tokio::spawn(room.run(rx).instrument(tracing::info_span!("room", session = session_id)));
        tx
    }

    /// Enters `session_id`'s room, starting it if nobody is in.
    pub async fn join(
        self: &Arc<Self>,
        session_id: i64,
        identity: Identity,
        conn: ConnId,
        out: Outbox,
        history: History,
        live: bool,
    ) -> Result<(), JoinError> {
        for _ in 0..3 {
            let (reply, answer) = oneshot::channel();
            let command = RoomCommand::Join {
                identity: identity.clone(),
                conn,
                out: out.clone(),
                history: history.clone(),
                live,
                reply,
            };
            if self.room(session_id).send(command).is_err() {
                continue;
            }
            match answer.await {
                Ok(Err(JoinError::Closing)) | Err(_) => continue,
                Ok(result) => return result,
            }
        }
        Err(JoinError::Closing)
    }

    /// Passes a command to the room, if it is still running.
    pub fn send(&self, session_id: i64, command: RoomCommand) {
        let rooms = self.rooms.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, tx)) = rooms.get(&session_id) {
            let _ = tx.send(command);
        }
    }

    /// Ends every room (at shutdown), so that everyone in one is recorded as
    /// having left with reason `ended` and told so (close code 4010).
    pub async fn end_all(&self) {
        let rooms: Vec<_> = {
            let rooms = self.rooms.lock().unwrap_or_else(|e| e.into_inner());
            rooms.values().map(|(_, tx)| tx.clone()).collect()
        };
        let mut waiting = vec![];
        for tx in rooms {
            let (done, ended) = oneshot::channel();
            if tx.send(RoomCommand::End { done }).is_ok() {
                waiting.push(ended);
            }
        }
        let all = futures_util::future::join_all(waiting);
        if tokio::time::timeout(Duration::from_secs(10), all).await.is_err() {
            tracing::warn!("some rooms did not end within 10 seconds");
        }
    }

    fn closed(&self, session_id: i64, generation: u64) {
        let mut rooms = self.rooms.lock().unwrap_or_else(|e| e.into_inner());
        if rooms.get(&session_id).is_some_and(|(g, _)| *g == generation) {
            rooms.remove(&session_id);
        }
    }
}

struct Member {
    conn: ConnId,
    out: Outbox,
    peer: Peer,
}

struct RoomTask {
    session_id: i64,
    generation: u64,
    rooms: Arc<Rooms>,
    state: RoomState,
    members: HashMap<ParticipantId, Member>,
    forwarders: HashMap<TrackId, Forwarder>,
    records: mpsc::UnboundedSender<Record>,
    /// For callbacks (peer tasks, forwarders) to reach this task.
    tx: mpsc::UnboundedSender<RoomCommand>,
    chat_throttle: chat::Throttle,
    recording: Recording,
}

/// The room's recording, if a host started one (see `crate::recording`).
enum Recording {
    Off,
    Starting,
    On { recorder: Recorder, tracks: HashSet<TrackId> },
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

impl RoomTask {
    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<RoomCommand>) {
        tracing::info!("room opened");
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                command = rx.recv() => {
                    let Some(command) = command else { break };
                    self.handle(command).await;
                    if self.state.is_empty() {
                        // Nobody left: stop taking commands, turn away joins
                        // that raced in (they retry into a fresh room), and end.
                        self.rooms.closed(self.session_id, self.generation);
                        self.stop_recording(None).await;
                        rx.close();
                        while let Some(command) = rx.recv().await {
                            if let RoomCommand::Join { reply, .. } = command {
                                let _ = reply.send(Err(JoinError::Closing));
                            }
                        }
                        break;
                    }
                }
                _ = tick.tick() => {
                    let fx = self.state.tick(Instant::now(), now_ms());
                    self.apply(fx).await;
                }
            }
        }
        tracing::info!("room closed");
    }

    async fn handle(&mut self, command: RoomCommand) {
        match command {
            RoomCommand::Join { identity, conn, out, history, live, reply } => {
                let participant = identity.user_id;
                let ctx = PeerContext {
                    participant,
                    conn,
                    may_publish: identity.grants.publish,
                    out: out.clone(),
                    room: self.tx.clone(),
                };
                // The peer task builds its connection itself, so a slow build never
                // holds up the room.
                let peer = peer::spawn(ctx, self.rooms.engine.clone());
                // A rejoin replaces the earlier connection: close it first, so
                // the effects below only ever meet the new one.
                if let Some(old) = self.members.remove(&participant) {
                    let _ =
                        old.out.send(Outgoing::Close(super::protocol::close::REPLACED, "joined again from elsewhere"));
                    let _ = old.peer.send(PeerCommand::Close);
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
                    let _ = m.peer.send(PeerCommand::Client(message));
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
            RoomCommand::TrackArrived { participant, conn, remote, kind, mime_type, audio_level_ext } => {
                let (kind, mime_type) = match (kind, mime_type) {
                    (Some(kind), Some(mime_type)) => (kind, mime_type),
                    (kind, mime_type) => {
                        tracing::warn!(
                            participant,
                            ?kind,
                            ?mime_type,
                            "a track without a known kind or codec: not forwarded"
                        );
                        engine::drain(remote);
                        return;
                    }
                };
                match self.state.publish(participant, conn, kind, &mime_type) {
                    Ok((track, fx)) => {
                        tracing::info!(participant, %track, %mime_type, "track published");
                        let room = self.tx.clone();
                        let ended = track.clone();
                        tracing::debug!(participant, %track, ?audio_level_ext, "audio level extension");
                        let level = audio_level_ext.map(|extension_id| {
                            let (room, track) = (self.tx.clone(), track.clone());
                            engine::LevelReport {
                                extension_id,
                                report: Box::new(move |level| {
                                    let _ = room.send(RoomCommand::AudioLevel { track: track.clone(), level });
                                }),
                            }
                        });
                        let forwarder = engine::spawn_forwarder(track.clone(), remote, level, move || {
                            let _ = room.send(RoomCommand::TrackEnded { track: ended });
                        });
                        self.forwarders.insert(track.clone(), forwarder);
                        self.apply(fx).await;
                        self.record_track(&track);
                    }
                    Err(refusal) => {
                        engine::drain(remote);
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

    /// Runs `work` (database writes) off the room task, then delivers its
    /// effects through the room; a refusal goes back to `who` as an `error`.
    fn off_task<F>(&self, who: ParticipantId, work: F)
    where
        F: std::future::Future<Output = Result<Vec<Effect>, InteractionError>> + Send + 'static,
    {
        let room = self.tx.clone();
        tokio::spawn(async move {
            let fx = match work.await {
                Ok(fx) => fx,
                Err(e) => {
                    if let InteractionError::Database(db) = &e {
                        tracing::error!(error = ?db, "interaction failed");
                    }
                    let message = match &e {
                        InteractionError::Database(_) => "that could not be saved; try again".to_string(),
                        other => other.to_string(),
                    };
                    vec![Effect::Send(who, ServerMessage::error(ErrorCode::from(&e), message))]
                }
            };
            let _ = room.send(RoomCommand::Deliver(fx));
        });
    }

    /// Chat, questions, hands and polls. Permissions come from the token's
    /// grants; the rules and storage live in `crate::interaction`.
    async fn act(&mut self, who: ParticipantId, action: Action) {
        let Some(identity) = self.state.identity(who).cloned() else { return };
        let host = identity.grants.host;
        let db = self.rooms.db.clone();
        let sid = self.session_id;
        let all = |message| Effect::Broadcast { except: None, message };
        match action {
            Action::Hand { raised } => {
                let fx = self.state.set_hand(who, raised, now_ms());
                self.apply(fx).await;
            }
            Action::HandLower { participant_id } => {
                if !host {
                    return self.refuse(who, InteractionError::NotHost("lower hands"));
                }
                let Ok(target) = participant_id.parse::<ParticipantId>() else {
                    return self.refuse(who, InteractionError::NotFound("participant"));
                };
                let fx = self.state.set_hand(target, false, now_ms());
                self.apply(fx).await;
            }
            Action::Chat { body } => {
                // A message that would be refused anyway does not use up the allowance.
                let checked = crate::interaction::clean_text("message", &body, chat::MAX_CHARS);
                if let Err(e) = checked.and_then(|_| self.chat_throttle.check(who, Instant::now())) {
                    return self.refuse(who, e);
                }
                // Chat inside a breakout group stays in the group.
                let space = self.state.space_of(who);
                self.off_task(who, async move {
                    let message = chat::post(&db, sid, who, &body, space).await?;
                    Ok(vec![Effect::ToSpace(space, ServerMessage::Chat { message })])
                });
            }
            Action::ChatDelete { id } => self.off_task(who, async move {
                chat::delete(&db, sid, id, who, host).await?;
                Ok(vec![all(ServerMessage::ChatDeleted { id })])
            }),
            Action::Ask { body } => {
                if let Err(e) = self.chat_throttle.check(who, Instant::now()) {
                    return self.refuse(who, e);
                }
                self.off_task(who, async move {
                    let question = questions::ask(&db, sid, who, &body).await?;
                    Ok(vec![all(ServerMessage::Question { question })])
                });
            }
            Action::Upvote { id } => self.off_task(who, async move {
                let question = questions::upvote(&db, sid, id, who).await?;
                Ok(vec![all(ServerMessage::Question { question })])
            }),
            Action::QuestionAnswered { id, answered } => self.off_task(who, async move {
                let question = questions::set_answered(&db, sid, id, answered, host).await?;
                Ok(vec![all(ServerMessage::Question { question })])
            }),
            Action::QuestionHighlight { id } => self.off_task(who, async move {
                // Both the newly highlighted question and the one it replaces change.
                let before: Vec<i64> =
                    questions::list(&db, sid, who).await?.into_iter().filter(|q| q.highlighted).map(|q| q.id).collect();
                questions::highlight(&db, sid, id, host).await?;
                let mut fx = vec![];
                for qid in before.into_iter().chain(id) {
                    let mut question = questions::load(&db, sid, qid).await?;
                    question.you_voted = None;
                    fx.push(all(ServerMessage::Question { question }));
                }
                Ok(fx)
            }),
            Action::QuestionDelete { id } => self.off_task(who, async move {
                questions::delete(&db, sid, id, who, host).await?;
                Ok(vec![all(ServerMessage::QuestionDeleted { id })])
            }),
            Action::PollCreate { question, options, multiple, anonymous, open } => {
                if !host {
                    return self.refuse(who, InteractionError::NotHost("create polls"));
                }
                self.off_task(who, async move {
                    let input = polls::PollInput { question, options, multiple, anonymous };
                    let poll = polls::create(&db, sid, who, &input, open).await?;
                    let results = polls::results(&db, sid, poll.id).await?;
                    let announce = ServerMessage::Poll { poll };
                    Ok(vec![
                        if open { all(announce) } else { Effect::ToHosts(announce) },
                        Effect::ToHosts(ServerMessage::PollResults { results }),
                    ])
                });
            }
            Action::PollOpen { id } | Action::PollClose { id } | Action::PollReveal { id } => {
                let step = match action {
                    Action::PollOpen { .. } => Some(polls::PollStatus::Open),
                    Action::PollClose { .. } => Some(polls::PollStatus::Closed),
                    _ => None,
                };
                self.off_task(who, async move {
                    let poll = match step {
                        Some(to) => polls::set_status(&db, sid, id, to, host).await?,
                        None => polls::reveal(&db, sid, id, host).await?,
                    };
                    let results = polls::results(&db, sid, id).await?;
                    let revealed = poll.revealed;
                    let mut fx = vec![all(ServerMessage::Poll { poll })];
                    let results = ServerMessage::PollResults { results };
                    fx.push(if revealed { all(results) } else { Effect::ToHosts(results) });
                    Ok(fx)
                });
            }
            Action::BreakoutOpen { plan } => {
                let fx = self.state.breakout_open(who, &plan, now_ms());
                self.apply(fx).await;
            }
            Action::BreakoutMove { participant_id, group } => {
                let target = participant_id.parse::<ParticipantId>().unwrap_or(-1);
                let fx = self.state.breakout_move(who, target, group, now_ms());
                self.apply(fx).await;
            }
            Action::BreakoutVisit { group } => {
                let fx = self.state.breakout_move(who, who, group, now_ms());
                self.apply(fx).await;
            }
            Action::BreakoutChoose { group } => {
                let fx = self.state.breakout_choose(who, group, now_ms());
                self.apply(fx).await;
            }
            Action::BreakoutOpenSaved => {
                if !host {
                    return self.refuse(who, InteractionError::NotHost("open breakout groups"));
                }
                let room = self.tx.clone();
                tokio::spawn(async move {
                    let command = match crate::breakout::saved_plan(&db, sid).await {
                        Ok(Some(plan)) => RoomCommand::OpenPlan { by: who, plan },
                        Ok(None) => RoomCommand::Deliver(vec![Effect::Send(
                            who,
                            ServerMessage::error(ErrorCode::NotFound, "no breakout plan was saved for this session"),
                        )]),
                        Err(e) => {
                            tracing::error!(error = ?e, "failed to load the breakout plan");
                            RoomCommand::Deliver(vec![Effect::Send(
                                who,
                                ServerMessage::error(ErrorCode::Internal, "the saved plan could not be loaded"),
                            )])
                        }
                    };
                    let _ = room.send(command);
                });
            }
            Action::BreakoutLeave => {
                let fx = self.state.breakout_leave(who, now_ms());
                self.apply(fx).await;
            }
            Action::BreakoutExtend { minutes } => {
                let fx = self.state.breakout_extend(who, minutes, now_ms());
                self.apply(fx).await;
            }
            Action::BreakoutClose => {
                let fx = self.state.breakout_close(who, now_ms());
                self.apply(fx).await;
            }
            Action::BreakoutBroadcast { text } => {
                let fx = self.state.breakout_broadcast(who, &text);
                self.apply(fx).await;
            }
            Action::BreakoutHelp => {
                let fx = self.state.breakout_help(who);
                self.apply(fx).await;
            }
            Action::RecordStart => self.start_recording(who),
            Action::RecordStop => {
                if !host {
                    return self.refuse(who, InteractionError::NotHost("stop recording"));
                }
                if !matches!(self.recording, Recording::On { .. }) {
                    return self.refuse(who, InteractionError::WrongState("the session is not being recorded"));
                }
                self.stop_recording(Some(who)).await;
            }
            Action::Chapter { title } => {
                if !host {
                    return self.refuse(who, InteractionError::NotHost("mark chapters"));
                }
                let title = match crate::interaction::clean_text("title", &title, 120) {
                    Ok(t) => t,
                    Err(e) => return self.refuse(who, e),
                };
                let Recording::On { recorder, .. } = &self.recording else {
                    return self
                        .refuse(who, InteractionError::WrongState("chapters can only be marked while recording"));
                };
                let t_ms = recorder.elapsed_ms();
                recorder.event(serde_json::json!({"type": "chapter", "title": title, "by": identity.name}));
                let fx = vec![Effect::ToHosts(ServerMessage::Chapter { title, t_ms })];
                self.apply(fx).await;
            }
            control @ (Action::GoLive
            | Action::EndSession
            | Action::StageInvite { .. }
            | Action::StageAccept
            | Action::StageDecline
            | Action::StageRemove { .. }
            | Action::Mute { .. }
            | Action::Unmute { .. }
            | Action::Remove { .. }) => self.control(who, control).await,
            Action::Vote { poll_id, options } => self.off_task(who, async move {
                let results = polls::vote(&db, sid, poll_id, who, &options).await?;
                let revealed = polls::load(&db, sid, poll_id).await?.revealed;
                let results = ServerMessage::PollResults { results };
                Ok(vec![
                    Effect::Send(who, ServerMessage::Voted { poll_id }),
                    if revealed { all(results) } else { Effect::ToHosts(results) },
                ])
            }),
        }
    }

    /// Everyone leaves with reason `ended` and is closed with 4010; returns
    /// once their attendance is written.
    async fn end(&mut self, reason: &'static str) {
        self.stop_recording(None).await;
        let outs: Vec<Outbox> = self.members.values().map(|m| m.out.clone()).collect();
        let fx = self.state.end(now_ms());
        self.apply(fx).await;
        for out in outs {
            let _ = out.send(Outgoing::Close(super::protocol::close::ENDED, reason));
        }
        let (flushed, written) = oneshot::channel();
        let _ = self.records.send(Record::Flush(flushed));
        let _ = written.await;
        tracing::info!("room ended");
    }

    /// Stage, mutes and removals: the rules are in `RoomState`.
    async fn control(&mut self, who: ParticipantId, action: Action) {
        let target = |id: &str| id.parse::<ParticipantId>().unwrap_or(-1);
        let fx = match action {
            Action::StageInvite { participant_id } => self.state.stage_invite(who, target(&participant_id)),
            Action::StageAccept => self.state.stage_accept(who),
            Action::StageDecline => self.state.stage_decline(who),
            Action::StageRemove { participant_id } => self.state.stage_remove(who, target(&participant_id)),
            Action::Mute { participant_id, kind } => self.state.mute(who, target(&participant_id), &kind),
            Action::Unmute { kind } => self.state.unmute(who, &kind),
            Action::Remove { participant_id, bar } => self.state.remove(who, target(&participant_id), bar, now_ms()),
            Action::GoLive => {
                let fx = self.state.go_live(who);
                let went_live = fx.iter().any(|e| matches!(e, Effect::WentLive));
                self.apply(fx).await;
                if went_live {
                    self.record_if_automatic(who);
                }
                return;
            }
            Action::EndSession => {
                if !self.state.identity(who).is_some_and(|i| i.grants.host) {
                    return self.refuse(who, InteractionError::NotHost("end the session"));
                }
                // Recorded first, so nobody can enter between the goodbye and the mark.
                if let Err(e) = mark_phase(&self.rooms.db, self.session_id, "ended_at").await {
                    tracing::error!(error = ?e, "failed to mark the session ended");
                }
                self.broadcast(ServerMessage::Phase { phase: "ended" });
                self.end("the host ended the session").await;
                return;
            }
            _ => return,
        };
        self.apply(fx).await;
    }

    fn refuse(&self, who: ParticipantId, e: InteractionError) {
        self.send_to(who, ServerMessage::error(ErrorCode::from(&e), e.to_string()));
    }

    /// The session records itself from going live when its organiser said so.
    fn record_if_automatic(&self, host: ParticipantId) {
        let (db, sid, room) = (self.rooms.db.clone(), self.session_id, self.tx.clone());
        tokio::spawn(async move {
            match crate::programme::load(&db, sid).await {
                Ok(Some(session)) if session.record_automatically => {
                    let _ = room.send(RoomCommand::RecordAutomatically { by: host });
                }
                Ok(_) => {}
                Err(e) => tracing::error!(error = ?e, "could not read whether to record automatically"),
            }
        });
    }

    /// A host asked to record: the row and directory are made off the room task.
    fn start_recording(&mut self, who: ParticipantId) {
        if !self.state.identity(who).is_some_and(|i| i.grants.host) {
            return self.refuse(who, InteractionError::NotHost("start recording"));
        }
        if !matches!(self.recording, Recording::Off) {
            return self.refuse(who, InteractionError::WrongState("the session is already being recorded"));
        }
        self.recording = Recording::Starting;
        let (db, dir, sid, room) =
            (self.rooms.db.clone(), self.rooms.recordings_dir.clone(), self.session_id, self.tx.clone());
        tokio::spawn(async move {
            let result = Recorder::start(&db, &dir, sid, who).await.map_err(|e| {
                tracing::error!(error = ?e, "a recording could not start");
                "the recording could not start; try again".to_string()
            });
            let _ = room.send(RoomCommand::RecordingStarted { by: who, result });
        });
    }

    fn recording_started(&mut self, by: ParticipantId, result: Result<Recorder, String>) {
        match result {
            Err(message) => {
                self.recording = Recording::Off;
                self.send_to(by, ServerMessage::error(ErrorCode::Internal, message));
            }
            Ok(recorder) => {
                let recording_id = recorder.id.clone();
                let participants = self.state.participants();
                recorder.event(serde_json::json!({"type": "participants", "participants": participants}));
                self.recording = Recording::On { recorder, tracks: HashSet::new() };
                for (track, ..) in self.state.main_room_tracks() {
                    self.record_track(&track);
                }
                self.broadcast(ServerMessage::Recording { on: true, recording_id });
            }
        }
    }

    /// Records `track` if a recording runs and the track is on the main stage.
    fn record_track(&mut self, track: &TrackId) {
        let Recording::On { recorder, tracks } = &mut self.recording else { return };
        let Some((_, owner, kind, mime)) = self.state.main_room_tracks().into_iter().find(|(t, ..)| t == track) else {
            return;
        };
        let (Some(forwarder), Some(identity)) = (self.forwarders.get(track), self.state.identity(owner)) else {
            return;
        };
        // A video file starts at a keyframe: the writer asks the publisher for
        // one (through the forwarder) until one arrives. A single request is
        // not enough: a browser may drop one that comes just after a keyframe
        // it sent (seen with Chrome when someone joined a moment before).
        let asker = forwarder.clone();
        let ask: crate::recording::track::AskKeyframe = Box::new(move || {
            let _ = asker.send(ForwarderCommand::RequestKeyframe);
        });
        if let Some(packets) = recorder.track(owner, &identity.name, kind.as_str(), &mime, ask) {
            let _ = forwarder.send(ForwarderCommand::Record(Some(packets)));
            tracks.insert(track.clone());
        }
    }

    /// Stops the recording, if one runs: its files are finished before this returns.
    async fn stop_recording(&mut self, by: Option<ParticipantId>) {
        let Recording::On { recorder, tracks } = std::mem::replace(&mut self.recording, Recording::Off) else {
            return;
        };
        for track in &tracks {
            if let Some(f) = self.forwarders.get(track) {
                let _ = f.send(ForwarderCommand::Record(None));
            }
        }
        let recording_id = recorder.id.clone();
        if let Some(by) = by.and_then(|p| self.state.identity(p)) {
            recorder.event(serde_json::json!({"type": "stopped_by", "name": by.name}));
        }
        self.broadcast(ServerMessage::Recording { on: false, recording_id: recording_id.clone() });
        if by.is_some() {
            // Finished off the room task; everyone hears when it can be replayed.
            let room = self.tx.clone();
            tokio::spawn(async move {
                recorder.stop().await;
                let replay_url = format!("/replay.html?id={recording_id}");
                let saved = ServerMessage::RecordingSaved { recording_id, replay_url };
                let _ = room.send(RoomCommand::Deliver(vec![Effect::Broadcast { except: None, message: saved }]));
            });
        } else {
            // The room is closing: finish before it goes.
            recorder.stop().await;
        }
    }

    /// Adds what the main room saw to the recording's timeline: chat,
    /// questions, polls, who is on stage and speaking, tracks coming and going.
    fn note(&self, message: &ServerMessage) {
        let Recording::On { recorder, .. } = &self.recording else { return };
        let wanted = matches!(
            message,
            ServerMessage::Chat { .. }
                | ServerMessage::ChatDeleted { .. }
                | ServerMessage::Question { .. }
                | ServerMessage::QuestionDeleted { .. }
                | ServerMessage::Poll { .. }
                | ServerMessage::PollResults { .. }
                | ServerMessage::ParticipantJoined { .. }
                | ServerMessage::ParticipantLeft { .. }
                | ServerMessage::ParticipantUpdated { .. }
                | ServerMessage::TrackPublished { .. }
                | ServerMessage::TrackUnpublished { .. }
                | ServerMessage::ActiveSpeaker { group: None, .. }
                | ServerMessage::Breakout { .. }
                | ServerMessage::Phase { .. }
        );
        if wanted {
            match serde_json::to_value(message) {
                Ok(value) => recorder.event(value),
                Err(e) => tracing::warn!(error = %e, "a timeline event could not be written"),
            }
        }
    }

    fn broadcast(&self, message: ServerMessage) {
        self.note(&message);
        for m in self.members.values() {
            let _ = m.out.send(Outgoing::Message(message.clone()));
        }
    }

    fn send_to(&self, participant: ParticipantId, message: ServerMessage) {
        if let Some(m) = self.members.get(&participant) {
            let _ = m.out.send(Outgoing::Message(message));
        }
    }

    async fn apply(&mut self, effects: Vec<Effect>) {
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
                    if let (Some(m), Some(f)) = (self.members.get(&subscriber), self.forwarders.get(&track.id)) {
                        let _ = m.peer.send(PeerCommand::Subscribe { track, forwarder: f.clone() });
                    }
                }
                Effect::Unsubscribe { subscriber, track } => {
                    if let Some(m) = self.members.get(&subscriber) {
                        let _ = m.peer.send(PeerCommand::Unsubscribe { track });
                    }
                }
                Effect::StopTrack(track) => {
                    if let Some(f) = self.forwarders.remove(&track) {
                        let _ = f.send(ForwarderCommand::Stop);
                    }
                }
                Effect::RequestKeyframe(track) => {
                    if let Some(f) = self.forwarders.get(&track) {
                        let _ = f.send(ForwarderCommand::RequestKeyframe);
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
                            let _ = m.peer.send(PeerCommand::Close);
                        }
                    }
                }
                Effect::PauseTrack { track, paused } => {
                    if let Some(f) = self.forwarders.get(&track) {
                        let _ = f.send(ForwarderCommand::Pause(paused));
                    }
                }
                Effect::AllowPublish { participant, allowed } => {
                    if let Some(m) = self.members.get(&participant) {
                        let _ = m.peer.send(PeerCommand::AllowPublish(allowed));
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
                Effect::RecordMove { user_id, group, at } => {
                    let _ = self.records.send(Record::Move { user_id, group, at });
                }
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
                Effect::WentLive => {
                    let (db, session_id) = (self.rooms.db.clone(), self.session_id);
                    tokio::spawn(async move {
                        if let Err(e) = mark_phase(&db, session_id, "live_at").await {
                            tracing::error!(error = ?e, "failed to mark the session live");
                        }
                    });
                }
                Effect::Bar(user_id) => {
                    let (db, session_id) = (self.rooms.db.clone(), self.session_id);
                    tokio::spawn(async move {
                        if let Err(e) = bar(&db, session_id, user_id).await {
                            tracing::error!(user = user_id, error = ?e, "failed to bar a removed participant");
                        }
                    });
                }
                Effect::Record(attendance) => {
                    let _ = self.records.send(Record::Attendance(attendance));
                }
            }
        }
    }
}

/// Sets `live_at` or `ended_at` (our own column names) once.
async fn mark_phase(db: &Db, session_id: i64, column: &'static str) -> Result<(), sqlx::Error> {
    let mut tx = db.begin().await?;
    sqlx::query(&format!("update sessions set {column} = coalesce({column}, $1) where id = $2"))
        .bind(now_ms())
        .bind(session_id)
        .execute(&mut *tx)
        .await?;
    tx.commit().await
}

/// Whether the room went live, and whether it has ended.
pub async fn phase_of(db: &Db, session_id: i64) -> Result<(bool, bool), sqlx::Error> {
    let row: Option<(Option<i64>, Option<i64>)> =
        sqlx::query_as("select live_at, ended_at from sessions where id = $1")
            .bind(session_id)
            .fetch_optional(&db.read)
            .await?;
    let (live, ended) = row.unwrap_or((None, None));
    Ok((live.is_some(), ended.is_some()))
}

async fn bar(db: &Db, session_id: i64, user_id: i64) -> Result<(), sqlx::Error> {
    let mut tx = db.begin().await?;
    sqlx::query("insert into room_bars (session_id, user_id, at) values ($1, $2, $3) on conflict do nothing")
        .bind(session_id)
        .bind(user_id)
        .bind(now_ms())
        .execute(&mut *tx)
        .await?;
    tx.commit().await
}

/// Whether a host removed and barred this person from the session.
pub async fn is_barred(db: &Db, session_id: i64, user_id: i64) -> Result<bool, sqlx::Error> {
    let n: i64 = sqlx::query_scalar("select count(*) from room_bars where session_id = $1 and user_id = $2")
        .bind(session_id)
        .bind(user_id)
        .fetch_one(&db.read)
        .await?;
    Ok(n > 0)
}

enum Record {
    Attendance(Attendance),
    /// A move between the main room and a breakout group.
    Move {
        user_id: ParticipantId,
        group: Option<String>,
        at: i64,
    },
    /// Answered once everything sent before it is written.
    Flush(oneshot::Sender<()>),
}

/// Writes attendance in order, off the room task so a slow database never
/// holds up signalling; and, while the room is open, its heartbeat every
/// `heartbeat` (removed when the room closes: see [`close_unclosed_rooms`]).
fn spawn_recorder(db: Db, session_id: i64, heartbeat: Duration) -> mpsc::UnboundedSender<Record> {
    let (tx, mut rx) = mpsc::unbounded_channel::<Record>();
    tokio::spawn(async move {
        let mut beat = tokio::time::interval(heartbeat);
        beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let record = tokio::select! {
                record = rx.recv() => match record {
                    Some(record) => record,
                    None => break,
                },
                _ = beat.tick() => {
                    if let Err(e) = write_heartbeat(&db, session_id, Some(now_ms())).await {
                        tracing::error!(session = session_id, error = %e, "failed to write the room's heartbeat");
                    }
                    continue;
                }
            };
            if let Err(e) = write_record(&db, session_id, record).await {
                tracing::error!(session = session_id, error = %e, "failed to record a room event");
            }
        }
        // The room closed in order: its leaves are written, no heartbeat is needed.
        if let Err(e) = write_heartbeat(&db, session_id, None).await {
            tracing::error!(session = session_id, error = %e, "failed to clear the room's heartbeat");
        }
    });
    tx
}

async fn write_record(db: &Db, session_id: i64, record: Record) -> Result<(), sqlx::Error> {
    match record {
        Record::Attendance(a) => {
            let kind = if a.left.is_some() { "leave" } else { "join" };
            sqlx::query("insert into room_events (session_id, user_id, kind, reason, at) values ($1, $2, $3, $4, $5)")
                .bind(session_id)
                .bind(a.user_id)
                .bind(kind)
                .bind(a.left.map(|r| r.as_str()))
                .bind(a.at)
                .execute(&db.write)
                .await?;
        }
        Record::Move { user_id, group, at } => {
            sqlx::query("insert into breakout_moves (session_id, user_id, group_name, at) values ($1, $2, $3, $4)")
                .bind(session_id)
                .bind(user_id)
                .bind(group)
                .bind(at)
                .execute(&db.write)
                .await?;
        }
        Record::Flush(done) => {
            let _ = done.send(());
        }
    }
    Ok(())
}

/// Writes (`Some(at)`) or clears (`None`) a room's heartbeat.
async fn write_heartbeat(db: &Db, session_id: i64, at: Option<i64>) -> Result<(), sqlx::Error> {
    let mut tx = db.begin().await?;
    match at {
        Some(at) => {
            sqlx::query(
                "insert into room_heartbeats (session_id, at) values ($1, $2)
                 on conflict (session_id) do update set at = excluded.at",
            )
            .bind(session_id)
            .bind(at)
            .execute(&mut *tx)
            .await?
        }
        None => {
            sqlx::query("delete from room_heartbeats where session_id = $1").bind(session_id).execute(&mut *tx).await?
        }
    };
    tx.commit().await
}

/// At start-up, before any room opens: a heartbeat still stored means the
/// server stopped without closing that room. Everyone whose last event there
/// is a join gets a leave (reason `server_restart`) at the last heartbeat
/// (or at their join, if that came later), so attendance never runs on.
pub async fn close_unclosed_rooms(db: &Db) -> Result<(), sqlx::Error> {
    let beats = sqlx::query("select session_id, at from room_heartbeats").fetch_all(&db.read).await?;
    for beat in beats {
        let session_id: i64 = sqlx::Row::try_get(&beat, "session_id")?;
        let last_beat: i64 = sqlx::Row::try_get(&beat, "at")?;
        let events = sqlx::query("select user_id, kind, at from room_events where session_id = $1 order by at, id")
            .bind(session_id)
            .fetch_all(&db.read)
            .await?;
        let mut open: HashMap<i64, Option<i64>> = HashMap::new();
        for e in &events {
            let user: i64 = sqlx::Row::try_get(e, "user_id")?;
            let kind: String = sqlx::Row::try_get(e, "kind")?;
            let at: i64 = sqlx::Row::try_get(e, "at")?;
            open.insert(user, (kind == "join").then_some(at));
        }
        let mut tx = db.begin().await?;
        let mut closed = 0;
        for (user, joined) in open {
            let Some(joined) = joined else { continue };
            sqlx::query(
                "insert into room_events (session_id, user_id, kind, reason, at) values ($1, $2, 'leave', 'server_restart', $3)",
            )
            .bind(session_id)
            .bind(user)
            .bind(last_beat.max(joined))
            .execute(&mut *tx)
            .await?;
            closed += 1;
        }
        sqlx::query("delete from room_heartbeats where session_id = $1").bind(session_id).execute(&mut *tx).await?;
        tx.commit().await?;
        tracing::warn!(session = session_id, closed, last_beat, "closed a room an unclean stop left open");
    }
    Ok(())
}
