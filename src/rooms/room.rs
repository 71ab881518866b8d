//! The room's rules, with no media engine in sight: who is in, who publishes
//! which track, who receives what, when a keyframe is asked for, and what is
//! recorded. Every input returns [`Effect`]s for the room task to carry out,
//! so breakouts and recordings can attach here and the engine can be swapped.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    time::{Duration, Instant},
};

use super::protocol::{close, ErrorCode, ParticipantInfo, RaisedHand, ServerMessage, TrackInfo};
use crate::auth::tokens::Grants;
use crate::breakout::{BreakoutError, Breakouts, GroupId, Plan, TimerEvent};

/// A participant is a person: their user id. Joining again replaces the
/// earlier connection instead of adding a duplicate.
pub type ParticipantId = i64;
pub type TrackId = String;
/// One WebSocket connection of a participant; a rejoin gets a new one, so a
/// late message from the replaced connection can be told apart.
pub type ConnId = u64;

/// Keyframe requests for one track are at most this frequent: each costs
/// the publisher a large frame.
pub const KEYFRAME_INTERVAL: Duration = Duration::from_millis(500);

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    pub user_id: i64,
    pub name: String,
    pub grants: Grants,
}

impl Identity {
    pub fn info(&self) -> ParticipantInfo {
        ParticipantInfo {
            id: self.user_id.to_string(),
            name: self.name.clone(),
            grants: self.grants,
            on_stage: false,
            muted: vec![],
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MediaKind {
    Audio,
    Video,
}

impl MediaKind {
    pub fn as_str(self) -> &'static str {
        match self {
            MediaKind::Audio => "audio",
            MediaKind::Video => "video",
        }
    }

    pub fn parse(s: &str) -> Option<MediaKind> {
        match s {
            "audio" => Some(MediaKind::Audio),
            "video" => Some(MediaKind::Video),
            _ => None,
        }
    }
}

/// Why someone left; stored with the leave.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LeaveReason {
    /// Said goodbye (`leave`).
    Left,
    /// The connection went away without a goodbye, or was replaced by a rejoin.
    Dropped,
    /// A host removed them.
    Removed,
    /// The room closed for everyone.
    Ended,
}

impl LeaveReason {
    pub fn as_str(self) -> &'static str {
        match self {
            LeaveReason::Left => "left",
            LeaveReason::Dropped => "dropped",
            LeaveReason::Removed => "removed",
            LeaveReason::Ended => "ended",
        }
    }
}

/// A durable attendance fact, written as it happens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attendance {
    pub user_id: i64,
    /// `None` for a join.
    pub left: Option<LeaveReason>,
    /// Unix milliseconds.
    pub at: i64,
}

/// What the room task must do after an input.
#[derive(Debug)]
pub enum Effect {
    Send(ParticipantId, ServerMessage),
    /// To everyone in the room except `except`.
    Broadcast {
        except: Option<ParticipantId>,
        message: ServerMessage,
    },
    /// To every host in the room.
    ToHosts(ServerMessage),
    /// Start sending `track` to `subscriber` (engine: add a local track, renegotiate).
    Subscribe {
        subscriber: ParticipantId,
        track: TrackInfo,
    },
    /// Stop sending `track` to `subscriber`.
    Unsubscribe {
        subscriber: ParticipantId,
        track: TrackId,
    },
    /// The publisher's track is gone: stop forwarding it.
    StopTrack(TrackId),
    /// Ask the publisher of this video track for a keyframe.
    RequestKeyframe(TrackId),
    /// Close this connection (replaced by a rejoin).
    Disconnect {
        participant: ParticipantId,
        conn: ConnId,
        code: u16,
        reason: &'static str,
    },
    /// Drop this participant's media connection.
    ClosePeer {
        participant: ParticipantId,
        conn: ConnId,
    },
    Record(Attendance),
    /// Stop (true) or resume (false) forwarding a track: a host's mute.
    PauseTrack {
        track: TrackId,
        paused: bool,
    },
    /// The participant may now publish (on stage) or no longer.
    AllowPublish {
        participant: ParticipantId,
        allowed: bool,
    },
    /// Bar this person from the session for good (written to the database).
    Bar(ParticipantId),
    /// The room went live: remember it (written to the database).
    WentLive,
    /// To everyone in one space (a breakout group, or the main room).
    ToSpace(Option<GroupId>, ServerMessage),
    /// Someone moved between the main room and a group (written durably).
    RecordMove {
        user_id: ParticipantId,
        group: Option<String>,
        at: i64,
    },
    /// Show these people, who have just arrived in `space`, what was said
    /// there before (read from the database off the room task).
    ChatHistory {
        to: Vec<ParticipantId>,
        space: Option<GroupId>,
    },
}

/// Before a host goes live, attendees wait in the lobby and receive nothing;
/// presenters and hosts are backstage, seeing and hearing each other.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Phase {
    #[default]
    Lobby,
    Live,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Lobby => "lobby",
            Phase::Live => "live",
        }
    }
}

/// Why media was not accepted for publishing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PublishRefusal {
    NotInRoom,
    NotAllowed,
}

struct Member {
    identity: Identity,
    conn: ConnId,
    /// An attendee brought on stage by a host.
    on_stage: bool,
    /// Asked on stage, not yet answered.
    invited: bool,
    /// Kinds a host muted.
    muted: BTreeSet<&'static str>,
    /// Where they are: a breakout group, or `None` for the main room. Media
    /// flows only within a space.
    space: Option<GroupId>,
    /// What the peer task was last told about publishing.
    publish_allowed: bool,
}

impl Member {
    fn new(identity: Identity, conn: ConnId, space: Option<GroupId>) -> Member {
        let mut m = Member {
            identity,
            conn,
            on_stage: false,
            invited: false,
            muted: BTreeSet::new(),
            space,
            publish_allowed: false,
        };
        m.publish_allowed = m.may_publish();
        m
    }

    /// Presenters and hosts always; attendees on stage, or in a breakout group
    /// (a small meeting where everyone may speak and show video).
    fn may_publish(&self) -> bool {
        self.identity.grants.publish || self.on_stage || self.space.is_some()
    }

    fn info(&self) -> ParticipantInfo {
        ParticipantInfo { on_stage: self.on_stage, muted: self.muted.iter().copied().collect(), ..self.identity.info() }
    }
}

fn refusal(to: ParticipantId, code: ErrorCode, message: &str) -> Vec<Effect> {
    vec![Effect::Send(to, ServerMessage::error(code, message))]
}

struct Published {
    owner: ParticipantId,
    info: TrackInfo,
    kind: MediaKind,
}

#[derive(Default)]
pub struct RoomState {
    members: BTreeMap<ParticipantId, Member>,
    tracks: BTreeMap<TrackId, Published>,
    subscriptions: BTreeSet<(ParticipantId, TrackId)>,
    next_track: u64,
    keyframes: KeyframeLimiter,
    /// Raised hands in the order they went up: (participant, Unix ms).
    hands: Vec<(ParticipantId, i64)>,
    phase: Phase,
    speakers: ActiveSpeaker,
    breakouts: Breakouts,
    /// The stage of people whose connection dropped (Unix ms of the drop),
    /// kept for [`REJOIN_GRACE_MS`] so a quick reconnect finds them on stage.
    dropped: HashMap<ParticipantId, i64>,
    /// Host mutes of people who are out of the room. A host's mute holds
    /// until a host lifts it: leaving and joining again must not undo it.
    held_mutes: HashMap<ParticipantId, BTreeSet<&'static str>>,
}

/// How long a dropped participant's place on stage waits for them to reconnect.
pub const REJOIN_GRACE_MS: i64 = 120_000;

/// Levels are −dBov: 0 is the loudest, 127 silence. Speech sits around 20–40.
pub const SPEAKING_LEVEL: u8 = 50;
/// A new speaker takes over only after the current one has been quiet this
/// long, or speaks this much louder: no flicker between two people talking.
pub const SPEAKER_HOLD: Duration = Duration::from_millis(1000);
const LOUDER_BY: u8 = 10;

/// The latest level of each audio track, and who was last announced.
#[derive(Default)]
struct ActiveSpeaker {
    levels: HashMap<TrackId, (u8, Instant)>,
    /// Per space: the main room and each breakout group has its own speaker.
    current: HashMap<Option<GroupId>, (ParticipantId, Instant)>,
}

impl RoomState {
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    pub fn conn_of(&self, participant: ParticipantId) -> Option<ConnId> {
        self.members.get(&participant).map(|m| m.conn)
    }

    pub fn is_current(&self, participant: ParticipantId, conn: ConnId) -> bool {
        self.conn_of(participant) == Some(conn)
    }

    pub fn identity(&self, participant: ParticipantId) -> Option<&Identity> {
        self.members.get(&participant).map(|m| &m.identity)
    }

    pub fn hosts(&self) -> Vec<ParticipantId> {
        self.members.iter().filter(|(_, m)| m.identity.grants.host).map(|(id, _)| *id).collect()
    }

    fn hand_queue(&self) -> ServerMessage {
        let queue = self
            .hands
            .iter()
            .filter_map(|(id, at)| {
                let m = self.members.get(id)?;
                Some(RaisedHand { participant_id: id.to_string(), name: m.identity.name.clone(), at: *at })
            })
            .collect();
        ServerMessage::Hands { queue }
    }

    /// Raises or lowers `participant`'s hand; hosts see the queue, oldest first.
    pub fn set_hand(&mut self, participant: ParticipantId, raised: bool, now_ms: i64) -> Vec<Effect> {
        if !self.members.contains_key(&participant) {
            return vec![];
        }
        let was = self.hands.iter().any(|(id, _)| *id == participant);
        match (was, raised) {
            (false, true) => self.hands.push((participant, now_ms)),
            (true, false) => self.hands.retain(|(id, _)| *id != participant),
            _ => {}
        }
        vec![Effect::Send(participant, ServerMessage::Hand { raised }), Effect::ToHosts(self.hand_queue())]
    }

    /// The member `by` if they are a host; otherwise the refusal to send them.
    fn host(&self, by: ParticipantId, what: &str) -> Result<(), Vec<Effect>> {
        match self.members.get(&by) {
            Some(m) if m.identity.grants.host => Ok(()),
            _ => Err(refusal(by, ErrorCode::NotHost, &format!("only hosts can {what}"))),
        }
    }

    /// The member `by` if they may run the session (a host or a co-host: go
    /// live, record, breakout groups); otherwise the refusal to send them.
    fn runner(&self, by: ParticipantId, what: &str) -> Result<(), Vec<Effect>> {
        match self.members.get(&by) {
            Some(m) if m.identity.grants.runs_room() => Ok(()),
            _ => Err(refusal(by, ErrorCode::NotHost, &format!("only hosts and co-hosts can {what}"))),
        }
    }

    fn updated(&self, participant: ParticipantId) -> Vec<Effect> {
        match self.members.get(&participant) {
            Some(m) => vec![Effect::Broadcast {
                except: None,
                message: ServerMessage::ParticipantUpdated { participant: m.info() },
            }],
            None => vec![],
        }
    }

    fn tracks_of(&self, participant: ParticipantId, kind: Option<MediaKind>) -> Vec<TrackId> {
        self.tracks
            .iter()
            .filter(|(_, t)| t.owner == participant && kind.is_none_or(|k| t.kind == k))
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// A host asks an attendee on stage.
    pub fn stage_invite(&mut self, by: ParticipantId, target: ParticipantId) -> Vec<Effect> {
        if let Err(fx) = self.host(by, "bring people on stage") {
            return fx;
        }
        let host_name = self.members.get(&by).map(|m| m.identity.name.clone()).unwrap_or_default();
        let Some(m) = self.members.get_mut(&target) else {
            return refusal(by, ErrorCode::NotFound, "that participant is not in the room");
        };
        if m.may_publish() {
            return refusal(by, ErrorCode::WrongState, "that participant is already on stage");
        }
        m.invited = true;
        vec![Effect::Send(target, ServerMessage::StageInvited { by: host_name })]
    }

    /// The invited attendee accepts: they may publish from now on.
    pub fn stage_accept(&mut self, who: ParticipantId) -> Vec<Effect> {
        let Some(m) = self.members.get_mut(&who).filter(|m| m.invited) else {
            return refusal(who, ErrorCode::WrongState, "no host has asked you on stage");
        };
        m.invited = false;
        m.on_stage = true;
        m.publish_allowed = true;
        let mut fx = vec![Effect::AllowPublish { participant: who, allowed: true }];
        fx.extend(self.updated(who));
        fx
    }

    pub fn stage_decline(&mut self, who: ParticipantId) -> Vec<Effect> {
        let Some(m) = self.members.get_mut(&who).filter(|m| m.invited) else {
            return refusal(who, ErrorCode::WrongState, "no host has asked you on stage");
        };
        m.invited = false;
        vec![Effect::ToHosts(ServerMessage::StageDeclined { participant_id: who.to_string() })]
    }

    /// A host takes an attendee off stage: their media stops for everyone.
    pub fn stage_remove(&mut self, by: ParticipantId, target: ParticipantId) -> Vec<Effect> {
        if let Err(fx) = self.host(by, "take people off stage") {
            return fx;
        }
        match self.members.get_mut(&target) {
            Some(m) if m.on_stage => {
                m.on_stage = false;
                m.publish_allowed = m.may_publish();
            }
            Some(_) => return refusal(by, ErrorCode::WrongState, "that participant is not an attendee on stage"),
            None => return refusal(by, ErrorCode::NotFound, "that participant is not in the room"),
        }
        let allowed = self.members.get(&target).is_some_and(|m| m.publish_allowed);
        let mut fx = vec![Effect::AllowPublish { participant: target, allowed }];
        if !allowed {
            for track in self.tracks_of(target, None) {
                fx.extend(self.unpublish(&track));
            }
        }
        fx.extend(self.updated(target));
        fx
    }

    /// A host mutes someone's audio or video: the server stops forwarding it.
    pub fn mute(&mut self, by: ParticipantId, target: ParticipantId, kind: &str) -> Vec<Effect> {
        if let Err(fx) = self.host(by, "mute people") {
            return fx;
        }
        let Some(kind) = MediaKind::parse(kind) else {
            return refusal(by, ErrorCode::BadMessage, "kind is audio or video");
        };
        let host_name = self.members.get(&by).map(|m| m.identity.name.clone()).unwrap_or_default();
        let Some(m) = self.members.get_mut(&target) else {
            return refusal(by, ErrorCode::NotFound, "that participant is not in the room");
        };
        m.muted.insert(kind.as_str());
        let mut fx: Vec<Effect> = self
            .tracks_of(target, Some(kind))
            .into_iter()
            .map(|track| Effect::PauseTrack { track, paused: true })
            .collect();
        fx.push(Effect::Send(target, ServerMessage::Muted { kind: kind.as_str(), by: host_name }));
        fx.extend(self.updated(target));
        fx
    }

    /// A host lifts a mute. A host's mute is hard: the person muted cannot
    /// lift it themselves (they are told so, and may raise a hand to ask),
    /// or a mute would be no more than advice.
    pub fn unmute(&mut self, by: ParticipantId, target: ParticipantId, kind: &str) -> Vec<Effect> {
        let Some(kind) = MediaKind::parse(kind) else {
            return refusal(by, ErrorCode::BadMessage, "kind is audio or video");
        };
        let what = match kind {
            MediaKind::Audio => "microphone",
            MediaKind::Video => "camera",
        };
        let Some(by_member) = self.members.get(&by) else { return vec![] };
        let (host, host_name) = (by_member.identity.grants.host, by_member.identity.name.clone());
        if !host {
            if target != by {
                return refusal(by, ErrorCode::NotHost, "only hosts can unmute people");
            }
            if by_member.muted.contains(kind.as_str()) {
                let message =
                    format!("a host muted your {what}: only a host can turn it back on (raise your hand to ask)");
                return refusal(by, ErrorCode::MutedByHost, &message);
            }
            return refusal(by, ErrorCode::WrongState, &format!("your {what} is not muted by a host"));
        }
        let Some(m) = self.members.get_mut(&target) else {
            return refusal(by, ErrorCode::NotFound, "that participant is not in the room");
        };
        if !m.muted.remove(kind.as_str()) {
            return refusal(by, ErrorCode::WrongState, &format!("that participant's {what} is not muted"));
        }
        let mut fx = vec![Effect::Send(target, ServerMessage::Unmuted { kind: kind.as_str(), by: host_name })];
        for track in self.tracks_of(target, Some(kind)) {
            fx.push(Effect::PauseTrack { track: track.clone(), paused: false });
            if kind == MediaKind::Video {
                fx.push(Effect::RequestKeyframe(track));
            }
        }
        fx.extend(self.updated(target));
        fx
    }

    /// A host removes someone; with `bar`, they cannot come back this session.
    pub fn remove(&mut self, by: ParticipantId, target: ParticipantId, bar: bool, now_ms: i64) -> Vec<Effect> {
        if let Err(fx) = self.host(by, "remove people") {
            return fx;
        }
        if by == target {
            return refusal(by, ErrorCode::WrongState, "use leave to leave the room");
        }
        let Some(conn) = self.conn_of(target) else {
            return refusal(by, ErrorCode::NotFound, "that participant is not in the room");
        };
        let mut fx = vec![Effect::Disconnect {
            participant: target,
            conn,
            code: close::REMOVED,
            reason: "a host removed you from this session",
        }];
        if bar {
            fx.push(Effect::Bar(target));
        }
        fx.extend(self.leave(target, conn, LeaveReason::Removed, now_ms));
        fx
    }

    /// A forwarder's report of the loudest level on an audio track since its
    /// last report. Announces a new active speaker when one clearly takes over.
    pub fn audio_level(&mut self, track: &str, level: u8, now: Instant) -> Vec<Effect> {
        let Some(t) = self.tracks.get(track) else { return vec![] };
        let owner = t.owner;
        if self.members.get(&owner).is_none_or(|m| m.muted.contains("audio")) {
            return vec![];
        }
        self.speakers.levels.insert(track.to_string(), (level, now));
        let space = self.space_of(owner);
        let in_space = |p: ParticipantId| self.members.get(&p).is_some_and(|m| m.space == space);
        // The loudest fresh, speaking track in the owner's space.
        let loudest = self
            .speakers
            .levels
            .iter()
            .filter(|(_, (l, at))| *l <= SPEAKING_LEVEL && now.duration_since(*at) < Duration::from_millis(600))
            .filter_map(|(id, (l, _))| self.tracks.get(id).map(|t| (t.owner, *l)))
            .filter(|(p, _)| in_space(*p))
            .min_by_key(|(_, l)| *l);
        let Some((candidate, candidate_level)) = loudest else { return vec![] };
        let take_over = match self.speakers.current.get(&space).copied() {
            None => true,
            Some((current, _)) if current == candidate => {
                self.speakers.current.insert(space, (current, now));
                false
            }
            Some((current, last_heard)) => {
                let current_level = self
                    .speakers
                    .levels
                    .iter()
                    .filter(|(id, (_, at))| {
                        self.tracks.get(*id).is_some_and(|t| t.owner == current)
                            && now.duration_since(*at) < Duration::from_millis(600)
                    })
                    .map(|(_, (l, _))| *l)
                    .min()
                    .unwrap_or(127);
                let quiet = current_level > SPEAKING_LEVEL;
                (quiet && now.duration_since(last_heard) >= SPEAKER_HOLD)
                    || (!quiet && candidate_level.saturating_add(LOUDER_BY) < current_level)
                    || !in_space(current)
            }
        };
        if !take_over {
            return vec![];
        }
        self.speakers.current.insert(space, (candidate, now));
        let message = ServerMessage::ActiveSpeaker { participant_id: candidate.to_string(), group: space };
        let mut fx = vec![Effect::ToSpace(space, message.clone())];
        if space.is_some() {
            // Hosts see at a glance who is talking in each group.
            fx.push(Effect::ToHosts(message));
        }
        fx
    }

    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// Whether this member receives what is published now: everyone once
    /// live; before that only those backstage (who may publish).
    fn receives(&self, m: &Member) -> bool {
        m.identity.grants.subscribe && (self.phase == Phase::Live || m.may_publish())
    }

    /// Whether `sub` gets `track`: they receive at all, and they are in the
    /// same space as its publisher (breakout groups never hear each other).
    fn sees(&self, sub: ParticipantId, m: &Member, track: &Published) -> bool {
        track.owner != sub
            && self.receives(m)
            && self.members.get(&track.owner).is_some_and(|owner| owner.space == m.space)
    }

    /// Brings spaces, publishing rights and subscriptions in line with the
    /// breakout state: the one place a move, an opening or a return changes media.
    fn resync(&mut self, now_ms: i64) -> Vec<Effect> {
        let mut fx = vec![];
        let mut silenced = vec![];
        let mut arrived: BTreeMap<Option<GroupId>, Vec<ParticipantId>> = BTreeMap::new();
        let ids: Vec<ParticipantId> = self.members.keys().copied().collect();
        for id in ids {
            let space = self.breakouts.space_of(id);
            let group = space.and_then(|g| self.breakouts.group_name(g)).map(str::to_string);
            let Some(m) = self.members.get_mut(&id) else { continue };
            if m.space != space {
                m.space = space;
                fx.push(Effect::RecordMove { user_id: id, group, at: now_ms });
                arrived.entry(space).or_default().push(id);
            }
            let allowed = m.may_publish();
            if allowed != m.publish_allowed {
                m.publish_allowed = allowed;
                fx.push(Effect::AllowPublish { participant: id, allowed });
                if !allowed {
                    silenced.push(id);
                }
            }
        }
        // One read per space, however many arrive in it (closing the groups moves everyone).
        fx.extend(arrived.into_iter().map(|(space, to)| Effect::ChatHistory { to, space }));
        for id in silenced {
            for track in self.tracks_of(id, None) {
                fx.extend(self.unpublish(&track));
            }
        }
        let mut desired = BTreeSet::new();
        for (sid, m) in &self.members {
            for (tid, t) in &self.tracks {
                if self.sees(*sid, m, t) {
                    desired.insert((*sid, tid.clone()));
                }
            }
        }
        let stale: Vec<(ParticipantId, TrackId)> = self.subscriptions.difference(&desired).cloned().collect();
        for (sub, track) in stale {
            self.subscriptions.remove(&(sub, track.clone()));
            fx.push(Effect::Unsubscribe { subscriber: sub, track });
        }
        let fresh: Vec<(ParticipantId, TrackId)> = desired.difference(&self.subscriptions).cloned().collect();
        for (sub, track) in fresh {
            if let Some(t) = self.tracks.get(&track) {
                fx.push(Effect::Subscribe { subscriber: sub, track: t.info.clone() });
            }
            self.subscriptions.insert((sub, track));
        }
        fx
    }

    fn breakout_view(&self) -> ServerMessage {
        ServerMessage::Breakout { breakout: self.breakouts.view(|p| self.members.contains_key(&p)) }
    }

    fn breakout_refusal(by: ParticipantId, e: BreakoutError) -> Vec<Effect> {
        let code = match e {
            BreakoutError::AlreadyOpen
            | BreakoutError::NotOpen
            | BreakoutError::LeaveNotAllowed
            | BreakoutError::ChoosingNotAllowed => ErrorCode::WrongState,
            BreakoutError::BadPlan(_) => ErrorCode::BadMessage,
            BreakoutError::UnknownGroup(_) | BreakoutError::UnknownParticipant => ErrorCode::NotFound,
        };
        refusal(by, code, &e.to_string())
    }

    /// Applies a breakout change: on success, media follows and everyone
    /// sees the new state.
    fn breakout_change(&mut self, by: ParticipantId, now_ms: i64, change: Result<(), BreakoutError>) -> Vec<Effect> {
        if let Err(e) = change {
            return Self::breakout_refusal(by, e);
        }
        let mut fx = self.resync(now_ms);
        fx.push(Effect::Broadcast { except: None, message: self.breakout_view() });
        fx
    }

    /// A host opens breakout groups: attendees are placed by the plan.
    pub fn breakout_open(&mut self, by: ParticipantId, plan: &Plan, now_ms: i64) -> Vec<Effect> {
        if let Err(fx) = self.runner(by, "open breakout groups") {
            return fx;
        }
        let attendees: Vec<ParticipantId> =
            self.members.iter().filter(|(_, m)| !m.identity.grants.publish).map(|(id, _)| *id).collect();
        let opened = self.breakouts.open(plan, &attendees, now_ms);
        self.breakout_change(by, now_ms, opened)
    }

    /// A host moves someone to a group (`None`: the main room); a host moving
    /// themselves is a visit.
    pub fn breakout_move(
        &mut self,
        by: ParticipantId,
        target: ParticipantId,
        group: Option<GroupId>,
        now_ms: i64,
    ) -> Vec<Effect> {
        if let Err(fx) = self.runner(by, "move people between groups") {
            return fx;
        }
        if !self.members.contains_key(&target) {
            return Self::breakout_refusal(by, BreakoutError::UnknownParticipant);
        }
        let moved = self.breakouts.move_to(target, group);
        self.breakout_change(by, now_ms, moved)
    }

    /// A participant picks their own group, when the host allows it.
    pub fn breakout_choose(&mut self, who: ParticipantId, group: GroupId, now_ms: i64) -> Vec<Effect> {
        let chosen = self.breakouts.choose(who, group);
        self.breakout_change(who, now_ms, chosen)
    }

    pub fn breakout_leave(&mut self, who: ParticipantId, now_ms: i64) -> Vec<Effect> {
        let left = self.breakouts.leave_group(who);
        self.breakout_change(who, now_ms, left)
    }

    pub fn breakout_extend(&mut self, by: ParticipantId, minutes: f64, now_ms: i64) -> Vec<Effect> {
        if let Err(fx) = self.runner(by, "change the breakout timer") {
            return fx;
        }
        let extended = self.breakouts.extend(minutes, now_ms);
        self.breakout_change(by, now_ms, extended)
    }

    /// A host closes the groups: everyone sees the return countdown.
    pub fn breakout_close(&mut self, by: ParticipantId, now_ms: i64) -> Vec<Effect> {
        if let Err(fx) = self.runner(by, "close breakout groups") {
            return fx;
        }
        let closed = self.breakouts.close(now_ms);
        self.breakout_change(by, now_ms, closed)
    }

    /// A host's text to every group (and the main room).
    pub fn breakout_broadcast(&mut self, by: ParticipantId, text: &str) -> Vec<Effect> {
        if let Err(fx) = self.runner(by, "broadcast to groups") {
            return fx;
        }
        let text = text.trim();
        if text.is_empty() || text.chars().count() > 500 {
            return refusal(by, ErrorCode::BadMessage, "a broadcast is 1 to 500 characters");
        }
        let from = self.members.get(&by).map(|m| m.identity.name.clone()).unwrap_or_default();
        vec![Effect::Broadcast {
            except: None,
            message: ServerMessage::BreakoutMessage { text: text.to_string(), from },
        }]
    }

    /// Someone in a group asks for a host.
    pub fn breakout_help(&mut self, who: ParticipantId) -> Vec<Effect> {
        let Some(group) = self.members.get(&who).and_then(|m| m.space) else {
            return refusal(who, ErrorCode::WrongState, "you are not in a breakout group");
        };
        let name = self.members.get(&who).map(|m| m.identity.name.clone()).unwrap_or_default();
        let group_name = self.breakouts.group_name(group).unwrap_or_default().to_string();
        vec![Effect::ToHosts(ServerMessage::HelpRequested { participant_id: who.to_string(), name, group, group_name })]
    }

    /// The space `p` is in, for messages that stay there (group chat).
    pub fn space_of(&self, p: ParticipantId) -> Option<GroupId> {
        self.members.get(&p).and_then(|m| m.space)
    }

    /// The published tracks of the main room (what a recording takes):
    /// (track, owner, kind, mime type).
    pub fn main_room_tracks(&self) -> Vec<(TrackId, ParticipantId, MediaKind, String)> {
        self.tracks
            .iter()
            .filter(|(_, t)| self.space_of(t.owner).is_none())
            .map(|(id, t)| (id.clone(), t.owner, t.kind, t.info.mime_type.clone()))
            .collect()
    }

    /// Everyone in the room as the protocol shows them.
    pub fn participants(&self) -> Vec<ParticipantInfo> {
        self.members.values().map(Member::info).collect()
    }

    /// Members of a space.
    pub fn in_space(&self, space: Option<GroupId>) -> Vec<ParticipantId> {
        self.members.iter().filter(|(_, m)| m.space == space).map(|(id, _)| *id).collect()
    }

    /// A host takes the room live: the lobby starts receiving what is on
    /// stage, each person only what their space sees (groups opened in the
    /// lobby stay apart).
    pub fn go_live(&mut self, by: ParticipantId, now_ms: i64) -> Vec<Effect> {
        if let Err(fx) = self.runner(by, "take the room live") {
            return fx;
        }
        if self.phase == Phase::Live {
            return refusal(by, ErrorCode::WrongState, "the room is already live");
        }
        self.phase = Phase::Live;
        let mut fx =
            vec![Effect::WentLive, Effect::Broadcast { except: None, message: ServerMessage::Phase { phase: "live" } }];
        fx.extend(self.resync(now_ms));
        fx
    }

    /// `live`: the room is known to have gone live already (from the database).
    pub fn join(&mut self, identity: Identity, conn: ConnId, now_ms: i64, live: bool) -> Vec<Effect> {
        if live {
            self.phase = Phase::Live;
        }
        let mut fx = vec![];
        let id = identity.user_id;
        if let Some(old) = self.conn_of(id) {
            fx.push(Effect::Disconnect {
                participant: id,
                conn: old,
                code: super::protocol::close::REPLACED,
                reason: "joined again from elsewhere",
            });
            fx.extend(self.leave(id, old, LeaveReason::Dropped, now_ms));
        }
        fx.push(Effect::Record(Attendance { user_id: id, left: None, at: now_ms }));
        let is_host = identity.grants.host;
        // Back to their group after a reconnect; late joiners land in the main room.
        let mut member = Member::new(identity, conn, self.breakouts.space_of(id));
        // A host's mutes hold whenever they come back; their place on stage
        // only after a dropped connection, within the grace.
        member.muted = self.held_mutes.remove(&id).unwrap_or_default();
        self.dropped.retain(|_, at| now_ms - *at <= REJOIN_GRACE_MS);
        if self.dropped.remove(&id).is_some() {
            member.on_stage = true;
            if member.may_publish() && !member.publish_allowed {
                member.publish_allowed = true;
                fx.push(Effect::AllowPublish { participant: id, allowed: true });
            }
        }
        let participants = self.members.values().map(Member::info).collect();
        let tracks: Vec<TrackInfo> = self.tracks.values().map(|t| t.info.clone()).collect();
        let phase = self.phase.as_str();
        fx.push(Effect::Send(id, ServerMessage::Welcome { you: member.info(), participants, tracks, phase }));
        fx.push(Effect::Broadcast {
            except: Some(id),
            message: ServerMessage::ParticipantJoined { participant: member.info() },
        });
        let visible: Vec<TrackInfo> =
            self.tracks.values().filter(|t| self.sees(id, &member, t)).map(|t| t.info.clone()).collect();
        for track in visible {
            self.subscriptions.insert((id, track.id.clone()));
            fx.push(Effect::Subscribe { subscriber: id, track });
        }
        let (space, in_group) = (member.space, member.space.is_some());
        self.members.insert(id, member);
        if in_group {
            let group = space.and_then(|g| self.breakouts.group_name(g)).map(str::to_string);
            fx.push(Effect::RecordMove { user_id: id, group, at: now_ms });
            // `history` after `welcome` has the main room's chat: the group's comes on its own.
            fx.push(Effect::ChatHistory { to: vec![id], space });
        }
        let space = self.space_of(id);
        if let Some((speaker, _)) = self.speakers.current.get(&space).filter(|(p, _)| self.members.contains_key(p)) {
            fx.push(Effect::Send(
                id,
                ServerMessage::ActiveSpeaker { participant_id: speaker.to_string(), group: space },
            ));
        }
        if self.breakouts.is_open() {
            fx.push(Effect::Send(id, self.breakout_view()));
            fx.push(Effect::Broadcast { except: Some(id), message: self.breakout_view() });
        }
        if is_host && !self.hands.is_empty() {
            fx.push(Effect::Send(id, self.hand_queue()));
        }
        fx
    }

    /// A leave from a connection that is no longer current changes nothing.
    pub fn leave(&mut self, participant: ParticipantId, conn: ConnId, reason: LeaveReason, now_ms: i64) -> Vec<Effect> {
        if !self.is_current(participant, conn) {
            return vec![];
        }
        let mut fx = vec![];
        if let Some(m) = self.members.remove(&participant) {
            if reason == LeaveReason::Dropped && m.on_stage {
                self.dropped.insert(participant, now_ms);
            }
            if !m.muted.is_empty() {
                self.held_mutes.insert(participant, m.muted);
            }
        }
        let owned: Vec<TrackId> =
            self.tracks.iter().filter(|(_, t)| t.owner == participant).map(|(id, _)| id.clone()).collect();
        for track in owned {
            fx.extend(self.unpublish(&track));
        }
        self.subscriptions.retain(|(sub, _)| *sub != participant);
        if self.hands.iter().any(|(id, _)| *id == participant) {
            self.hands.retain(|(id, _)| *id != participant);
            fx.push(Effect::ToHosts(self.hand_queue()));
        }
        fx.push(Effect::ClosePeer { participant, conn });
        fx.push(Effect::Record(Attendance { user_id: participant, left: Some(reason), at: now_ms }));
        fx.push(Effect::Broadcast {
            except: None,
            message: ServerMessage::ParticipantLeft {
                participant_id: participant.to_string(),
                reason: reason.as_str(),
            },
        });
        fx
    }

    /// The room closes for everyone (the host ended it, or the server stops).
    pub fn end(&mut self, now_ms: i64) -> Vec<Effect> {
        let members: Vec<(ParticipantId, ConnId)> = self.members.iter().map(|(id, m)| (*id, m.conn)).collect();
        members.into_iter().flat_map(|(id, conn)| self.leave(id, conn, LeaveReason::Ended, now_ms)).collect()
    }

    /// A participant's connection brought in a new track. Refused (and never
    /// forwarded) without the publish grant.
    pub fn publish(
        &mut self,
        participant: ParticipantId,
        conn: ConnId,
        kind: MediaKind,
        mime_type: &str,
    ) -> Result<(TrackId, Vec<Effect>), PublishRefusal> {
        let member = match self.members.get(&participant) {
            Some(m) if m.conn == conn => m,
            _ => return Err(PublishRefusal::NotInRoom),
        };
        if !member.may_publish() {
            return Err(PublishRefusal::NotAllowed);
        }
        let muted = member.muted.contains(kind.as_str());
        self.next_track += 1;
        let id = format!("t{}", self.next_track);
        let info = TrackInfo {
            id: id.clone(),
            participant_id: participant.to_string(),
            kind: kind.as_str(),
            mime_type: mime_type.to_string(),
        };
        let mut fx =
            vec![Effect::Broadcast { except: None, message: ServerMessage::TrackPublished { track: info.clone() } }];
        let published = Published { owner: participant, info: info.clone(), kind };
        let subscribers: Vec<ParticipantId> =
            self.members.iter().filter(|(sub, m)| self.sees(**sub, m, &published)).map(|(sub, _)| *sub).collect();
        for sub in subscribers {
            self.subscriptions.insert((sub, id.clone()));
            fx.push(Effect::Subscribe { subscriber: sub, track: info.clone() });
        }
        self.tracks.insert(id.clone(), published);
        if muted {
            fx.push(Effect::PauseTrack { track: id.clone(), paused: true });
        }
        Ok((id, fx))
    }

    pub fn unpublish(&mut self, track: &str) -> Vec<Effect> {
        if self.tracks.remove(track).is_none() {
            return vec![];
        }
        self.keyframes.forget(track);
        self.speakers.levels.remove(track);
        let mut fx = vec![Effect::StopTrack(track.to_string())];
        let subscribers: Vec<ParticipantId> =
            self.subscriptions.iter().filter(|(_, t)| t == track).map(|(s, _)| *s).collect();
        for sub in subscribers {
            self.subscriptions.remove(&(sub, track.to_string()));
            fx.push(Effect::Unsubscribe { subscriber: sub, track: track.to_string() });
        }
        fx.push(Effect::Broadcast {
            except: None,
            message: ServerMessage::TrackUnpublished { track_id: track.to_string() },
        });
        fx
    }

    /// The subscriber's connection is now able to receive `track`: a video
    /// decoder there needs a keyframe to start, so ask for one (rate-limited).
    pub fn subscriber_ready(&mut self, subscriber: ParticipantId, track: &str, now: Instant) -> Vec<Effect> {
        self.keyframe_wanted(subscriber, track, now)
    }

    /// A subscriber's decoder asked for a keyframe (PLI/FIR): pass it to the
    /// publisher, under the same limit, so one struggling viewer cannot make
    /// the publisher send nothing but keyframes.
    pub fn keyframe_wanted(&mut self, subscriber: ParticipantId, track: &str, now: Instant) -> Vec<Effect> {
        if !self.subscriptions.contains(&(subscriber, track.to_string())) {
            return vec![];
        }
        match self.tracks.get(track) {
            Some(t) if t.kind == MediaKind::Video && self.keyframes.request(track, now) => {
                vec![Effect::RequestKeyframe(track.to_string())]
            }
            _ => vec![],
        }
    }

    /// Called periodically: sends keyframe requests held back by the limit.
    pub fn tick(&mut self, now: Instant, now_ms: i64) -> Vec<Effect> {
        let mut fx: Vec<Effect> = self.keyframes.due(now).into_iter().map(Effect::RequestKeyframe).collect();
        if let Some(event) = self.breakouts.tick(now_ms) {
            let name = match event {
                TimerEvent::Warning => "warning",
                TimerEvent::Returning => "returning",
                TimerEvent::Closed => "closed",
            };
            if event == TimerEvent::Closed {
                fx.extend(self.resync(now_ms));
            }
            fx.push(Effect::Broadcast { except: None, message: ServerMessage::BreakoutTimer { event: name } });
            fx.push(Effect::Broadcast { except: None, message: self.breakout_view() });
        }
        fx
    }
}

/// At most one keyframe request per track per [`KEYFRAME_INTERVAL`]; a
/// request inside the interval is remembered and sent when it ends, so a
/// subscriber arriving just after another still gets its keyframe.
#[derive(Default)]
struct KeyframeLimiter {
    tracks: HashMap<TrackId, (Instant, bool)>,
}

impl KeyframeLimiter {
    fn request(&mut self, track: &str, now: Instant) -> bool {
        match self.tracks.get_mut(track) {
            Some((last, pending)) if now.duration_since(*last) < KEYFRAME_INTERVAL => {
                *pending = true;
                false
            }
            Some((last, pending)) => {
                *last = now;
                *pending = false;
                true
            }
            None => {
                self.tracks.insert(track.to_string(), (now, false));
                true
            }
        }
    }

    fn due(&mut self, now: Instant) -> Vec<TrackId> {
        let mut due = vec![];
        for (track, (last, pending)) in self.tracks.iter_mut() {
            if *pending && now.duration_since(*last) >= KEYFRAME_INTERVAL {
                *last = now;
                *pending = false;
                due.push(track.clone());
            }
        }
        due
    }

    fn forget(&mut self, track: &str) {
        self.tracks.remove(track);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn person(id: i64, publish: bool) -> Identity {
        Identity {
            user_id: id,
            name: format!("P{id}"),
            grants: Grants { publish, subscribe: true, host: false, cohost: false },
        }
    }

    /// A room with a host (participant 1, connection 10) and `people`
    /// (id, may publish) on connections id × 10.
    fn hosted(live: bool, people: &[(i64, bool)]) -> RoomState {
        let mut room = RoomState::default();
        let mut host = person(1, true);
        host.grants.host = true;
        room.join(host, 10, 0, live);
        for &(id, publish) in people {
            room.join(person(id, publish), id as u64 * 10, 0, live);
        }
        room
    }

    fn subscribes(fx: &[Effect]) -> Vec<(ParticipantId, String)> {
        fx.iter()
            .filter_map(|e| match e {
                Effect::Subscribe { subscriber, track } => Some((*subscriber, track.id.clone())),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn every_subscriber_receives_a_published_track_and_late_joiners_too() {
        let mut room = RoomState::default();
        room.join(person(1, true), 10, 0, true);
        room.join(person(2, false), 20, 0, true);
        let (track, fx) = room.publish(1, 10, MediaKind::Video, "video/VP8").unwrap();
        assert_eq!(subscribes(&fx), vec![(2, track.clone())]);
        let fx = room.join(person(3, false), 30, 0, true);
        assert_eq!(subscribes(&fx), vec![(3, track.clone())]);
        let welcome = fx.iter().find_map(|e| match e {
            Effect::Send(3, ServerMessage::Welcome { participants, tracks, .. }) => {
                Some((participants.len(), tracks.len()))
            }
            _ => None,
        });
        assert_eq!(welcome, Some((2, 1)));
    }

    #[test]
    fn a_dropped_attendee_on_stage_comes_back_on_stage_and_still_muted_within_the_grace() {
        let mut room = hosted(true, &[(2, false)]);
        room.stage_invite(1, 2);
        room.stage_accept(2);
        room.mute(1, 2, "audio");
        let you = |fx: &[Effect]| {
            fx.iter().find_map(|e| match e {
                Effect::Send(2, ServerMessage::Welcome { you, .. }) => Some((you.on_stage, you.muted.clone())),
                _ => None,
            })
        };
        room.leave(2, 20, LeaveReason::Dropped, 1_000);
        let fx = room.join(person(2, false), 21, 1_000 + REJOIN_GRACE_MS, true);
        assert_eq!(you(&fx), Some((true, vec!["audio"])), "back on stage, still muted");
        assert!(fx.iter().any(|e| matches!(e, Effect::AllowPublish { participant: 2, allowed: true })));
        // Too late, or after leaving on purpose: an attendee again, and the
        // host's mute still holds (only a host lifts it).
        room.leave(2, 21, LeaveReason::Dropped, 2_000);
        let fx = room.join(person(2, false), 22, 2_001 + REJOIN_GRACE_MS, true);
        assert_eq!(you(&fx), Some((false, vec!["audio"])));
        room.stage_invite(1, 2);
        room.stage_accept(2);
        room.leave(2, 22, LeaveReason::Left, 3_000);
        assert_eq!(you(&room.join(person(2, false), 23, 3_001, true)), Some((false, vec!["audio"])));
        room.unmute(1, 2, "audio");
        room.leave(2, 23, LeaveReason::Left, 4_000);
        assert_eq!(you(&room.join(person(2, false), 24, 4_001, true)), Some((false, vec![])));
    }

    #[test]
    fn a_hosts_mute_holds_until_a_host_lifts_it() {
        let mut room = hosted(true, &[(2, true), (3, false)]);
        let (track, _) = room.publish(2, 20, MediaKind::Audio, "audio/opus").unwrap();
        let fx = room.mute(1, 2, "audio");
        assert!(fx.iter().any(|e| matches!(e, Effect::PauseTrack { track: t, paused: true } if *t == track)));
        let refused = |fx: &[Effect], to: ParticipantId| {
            fx.iter().find_map(|e| match e {
                Effect::Send(p, ServerMessage::Error { code, message }) if *p == to => Some((*code, message.clone())),
                _ => None,
            })
        };
        // The person muted cannot lift it, and nothing resumes.
        let fx = room.unmute(2, 2, "audio");
        let (code, message) = refused(&fx, 2).expect("a refusal");
        assert_eq!(code, ErrorCode::MutedByHost);
        assert!(message.contains("only a host") && message.contains("raise your hand"), "{message}");
        assert!(!fx.iter().any(|e| matches!(e, Effect::PauseTrack { .. })));
        assert_eq!(room.members[&2].muted.iter().copied().collect::<Vec<_>>(), vec!["audio"]);
        // Nor can another attendee.
        assert_eq!(refused(&room.unmute(3, 2, "audio"), 3).map(|r| r.0), Some(ErrorCode::NotHost));
        // They may still raise a hand to ask.
        assert!(room.set_hand(2, true, 5).iter().any(|e| matches!(e, Effect::ToHosts(ServerMessage::Hands { .. }))));
        // A host lifts it: forwarding resumes and the person is told.
        let fx = room.unmute(1, 2, "audio");
        assert!(fx.iter().any(|e| matches!(e, Effect::PauseTrack { track: t, paused: false } if *t == track)));
        assert!(fx.iter().any(|e| matches!(e, Effect::Send(2, ServerMessage::Unmuted { kind: "audio", .. }))));
        assert!(room.members[&2].muted.is_empty());
        // Lifting it twice says it is not muted.
        assert_eq!(refused(&room.unmute(1, 2, "audio"), 1).map(|r| r.0), Some(ErrorCode::WrongState));
    }

    #[test]
    fn raised_hands_queue_in_order_for_hosts_and_leave_with_their_owner() {
        let mut room = hosted(true, &[(2, false), (3, false)]);
        room.set_hand(3, true, 100);
        let fx = room.set_hand(2, true, 200);
        let queue = fx.iter().find_map(|e| match e {
            Effect::ToHosts(ServerMessage::Hands { queue }) => {
                Some(queue.iter().map(|h| h.participant_id.clone()).collect::<Vec<_>>())
            }
            _ => None,
        });
        assert_eq!(queue, Some(vec!["3".to_string(), "2".to_string()]));
        assert!(fx.iter().any(|e| matches!(e, Effect::Send(2, ServerMessage::Hand { raised: true }))));
        let fx = room.leave(3, 30, LeaveReason::Left, 300);
        let queue = fx.iter().find_map(|e| match e {
            Effect::ToHosts(ServerMessage::Hands { queue }) => Some(queue.len()),
            _ => None,
        });
        assert_eq!(queue, Some(1));
    }

    #[test]
    fn the_lobby_receives_nothing_until_a_host_goes_live_while_backstage_sees_all() {
        let mut room = hosted(false, &[(2, true), (3, false)]);
        let (track, fx) = room.publish(2, 20, MediaKind::Video, "video/VP8").unwrap();
        assert_eq!(subscribes(&fx), vec![(1, track.clone())], "only backstage receives before going live");
        assert!(room.go_live(3, 0).iter().any(|e| matches!(e, Effect::Send(3, ServerMessage::Error { .. }))));
        let fx = room.go_live(1, 0);
        assert_eq!(subscribes(&fx), vec![(3, track.clone())]);
        assert!(fx.iter().any(|e| matches!(e, Effect::WentLive)));
        assert_eq!(room.phase(), Phase::Live);
        let fx = room.join(person(4, false), 40, 0, false);
        assert_eq!(subscribes(&fx), vec![(4, track)], "a live room stays live for later joiners");
    }

    #[test]
    fn groups_opened_in_the_lobby_stay_apart_when_the_room_goes_live() {
        let mut room = hosted(false, &[(2, false), (3, false), (4, false)]);
        let group = |name: &str, members: &[&str]| crate::breakout::GroupPlan {
            name: name.into(),
            task: String::new(),
            members: members.iter().map(|m| m.to_string()).collect(),
        };
        let plan = Plan {
            groups: vec![group("A", &["2", "3"]), group("B", &["4"])],
            random_groups: None,
            people_per_group: None,
            minutes: 10.0,
            allow_leave: false,
            return_seconds: None,
            self_select: false,
        };
        room.breakout_open(1, &plan, 0);
        let (in_a, fx) = room.publish(2, 20, MediaKind::Video, "video/VP8").unwrap();
        assert_eq!(subscribes(&fx), vec![(3, in_a.clone())], "in the lobby, only the group hears its member");
        let fx = room.go_live(1, 0);
        assert!(fx.iter().any(|e| matches!(e, Effect::WentLive)));
        assert_eq!(subscribes(&fx), vec![], "going live subscribes nobody outside group A to its track");
        let (on_stage, fx) = room.publish(1, 10, MediaKind::Video, "video/VP8").unwrap();
        assert_eq!(subscribes(&fx), vec![], "the main room's host is not heard in the groups");
        // Closing counts down, then everyone is back in the main room and hears
        // the stage (an attendee's group microphone goes: they are off stage).
        let mut fx = room.breakout_close(1, 0);
        fx.extend(room.tick(Instant::now(), 60_000));
        let mut back = subscribes(&fx);
        back.sort();
        assert_eq!(back, vec![(2, on_stage.clone()), (3, on_stage.clone()), (4, on_stage)]);
        assert!(fx.iter().any(|e| matches!(e, Effect::StopTrack(t) if *t == in_a)));
    }

    #[test]
    fn the_active_speaker_follows_the_loudest_voice_without_flickering() {
        let mut room = RoomState::default();
        room.join(person(1, true), 10, 0, true);
        room.join(person(2, true), 20, 0, true);
        let (a, _) = room.publish(1, 10, MediaKind::Audio, "audio/opus").unwrap();
        let (b, _) = room.publish(2, 20, MediaKind::Audio, "audio/opus").unwrap();
        let speaker = |fx: Vec<Effect>| {
            fx.into_iter().find_map(|e| match e {
                Effect::ToSpace(None, ServerMessage::ActiveSpeaker { participant_id, .. }) => Some(participant_id),
                _ => None,
            })
        };
        let t0 = Instant::now();
        assert_eq!(speaker(room.audio_level(&a, 127, t0)), None, "silence names nobody");
        assert_eq!(speaker(room.audio_level(&a, 30, t0)).as_deref(), Some("1"));
        // Someone else talking about as loudly does not take over at once...
        assert_eq!(speaker(room.audio_level(&b, 28, t0 + Duration::from_millis(200))), None);
        assert_eq!(speaker(room.audio_level(&a, 32, t0 + Duration::from_millis(300))), None);
        // ...but does once the first has been quiet for the hold time.
        room.audio_level(&a, 120, t0 + Duration::from_millis(400));
        assert_eq!(speaker(room.audio_level(&b, 28, t0 + Duration::from_millis(1400))).as_deref(), Some("2"));
        // Much louder takes over at once.
        assert_eq!(speaker(room.audio_level(&a, 5, t0 + Duration::from_millis(1500))).as_deref(), Some("1"));
    }

    #[test]
    fn media_from_someone_without_the_publish_grant_is_refused() {
        let mut room = RoomState::default();
        room.join(person(2, false), 20, 0, true);
        assert_eq!(room.publish(2, 20, MediaKind::Audio, "audio/opus").unwrap_err(), PublishRefusal::NotAllowed);
        assert_eq!(room.publish(2, 99, MediaKind::Audio, "audio/opus").unwrap_err(), PublishRefusal::NotInRoom);
    }

    #[test]
    fn a_publisher_leaving_unpublishes_and_is_recorded() {
        let mut room = RoomState::default();
        room.join(person(1, true), 10, 0, true);
        room.join(person(2, false), 20, 0, true);
        let (track, _) = room.publish(1, 10, MediaKind::Video, "video/VP8").unwrap();
        // A leave from a stale connection is ignored.
        assert!(room.leave(1, 11, LeaveReason::Left, 5).is_empty());
        let fx = room.leave(1, 10, LeaveReason::Left, 5);
        assert!(fx.iter().any(|e| matches!(e, Effect::StopTrack(t) if *t == track)));
        assert!(fx.iter().any(|e| matches!(e, Effect::Unsubscribe { subscriber: 2, .. })));
        assert!(fx
            .iter()
            .any(|e| matches!(e, Effect::Record(Attendance { user_id: 1, left: Some(LeaveReason::Left), at: 5 }))));
        assert!(!room.is_empty());
    }

    #[test]
    fn ending_the_room_records_everyone_as_ended() {
        let mut room = RoomState::default();
        room.join(person(1, true), 10, 0, true);
        room.join(person(2, false), 20, 0, true);
        let fx = room.end(9);
        let ended = fx
            .iter()
            .filter(|e| matches!(e, Effect::Record(Attendance { left: Some(LeaveReason::Ended), at: 9, .. })))
            .count();
        assert_eq!(ended, 2);
        assert!(room.is_empty());
    }

    #[test]
    fn joining_again_replaces_the_earlier_connection_without_a_duplicate() {
        let mut room = RoomState::default();
        room.join(person(1, true), 10, 0, true);
        let fx = room.join(person(1, true), 11, 1, true);
        assert!(fx.iter().any(|e| matches!(e, Effect::Disconnect { participant: 1, conn: 10, .. })));
        assert!(fx.iter().any(|e| matches!(e, Effect::Record(Attendance { left: Some(LeaveReason::Dropped), .. }))));
        assert_eq!(room.conn_of(1), Some(11));
        assert_eq!(room.members.len(), 1);
    }

    #[test]
    fn keyframe_requests_are_rate_limited_but_not_lost() {
        let mut room = RoomState::default();
        room.join(person(1, true), 10, 0, true);
        room.join(person(2, false), 20, 0, true);
        room.join(person(3, false), 30, 0, true);
        let (video, _) = room.publish(1, 10, MediaKind::Video, "video/VP8").unwrap();
        let (audio, _) = room.publish(1, 10, MediaKind::Audio, "audio/opus").unwrap();
        let t0 = Instant::now();
        assert_eq!(room.subscriber_ready(2, &video, t0).len(), 1);
        assert!(room.subscriber_ready(3, &video, t0 + Duration::from_millis(10)).is_empty());
        assert!(room.subscriber_ready(2, &audio, t0).is_empty(), "audio needs no keyframe");
        assert!(room.tick(t0 + Duration::from_millis(100), 0).is_empty());
        let later = room.tick(t0 + KEYFRAME_INTERVAL, 0);
        assert!(matches!(later.as_slice(), [Effect::RequestKeyframe(t)] if *t == video));
        assert!(room.tick(t0 + KEYFRAME_INTERVAL * 3, 0).is_empty());
    }
}
