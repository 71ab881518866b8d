//! The room's rules, with no media engine in sight: who is in, who publishes
//! which track, who receives what, when a keyframe is asked for, and what is
//! recorded. Every input returns [`Effect`]s for the room task to carry out,
//! so breakouts and recordings can attach here and the engine can be swapped.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    time::{Duration, Instant},
};

use super::protocol::{ParticipantInfo, RaisedHand, ServerMessage, TrackInfo};
use crate::auth::tokens::Grants;

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
        ParticipantInfo { id: self.user_id.to_string(), name: self.name.clone(), grants: self.grants }
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

    pub fn join(&mut self, identity: Identity, conn: ConnId, now_ms: i64) -> Vec<Effect> {
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
        let participants = self.members.values().map(|m| m.identity.info()).collect();
        let tracks: Vec<TrackInfo> = self.tracks.values().map(|t| t.info.clone()).collect();
        fx.push(Effect::Send(id, ServerMessage::Welcome { you: identity.info(), participants, tracks }));
        fx.push(Effect::Broadcast {
            except: Some(id),
            message: ServerMessage::ParticipantJoined { participant: identity.info() },
        });
        if identity.grants.subscribe {
            for (track_id, t) in &self.tracks {
                self.subscriptions.insert((id, track_id.clone()));
                fx.push(Effect::Subscribe { subscriber: id, track: t.info.clone() });
            }
        }
        let is_host = identity.grants.host;
        self.members.insert(id, Member { identity, conn });
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
        self.members.remove(&participant);
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
        if !member.identity.grants.publish {
            return Err(PublishRefusal::NotAllowed);
        }
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
        for (sub, m) in &self.members {
            if *sub != participant && m.identity.grants.subscribe {
                self.subscriptions.insert((*sub, id.clone()));
                fx.push(Effect::Subscribe { subscriber: *sub, track: info.clone() });
            }
        }
        self.tracks.insert(id.clone(), Published { owner: participant, info, kind });
        Ok((id, fx))
    }

    pub fn unpublish(&mut self, track: &str) -> Vec<Effect> {
        if self.tracks.remove(track).is_none() {
            return vec![];
        }
        self.keyframes.forget(track);
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
    pub fn tick(&mut self, now: Instant) -> Vec<Effect> {
        self.keyframes.due(now).into_iter().map(Effect::RequestKeyframe).collect()
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
        Identity { user_id: id, name: format!("P{id}"), grants: Grants { publish, subscribe: true, host: false } }
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
        room.join(person(1, true), 10, 0);
        room.join(person(2, false), 20, 0);
        let (track, fx) = room.publish(1, 10, MediaKind::Video, "video/VP8").unwrap();
        assert_eq!(subscribes(&fx), vec![(2, track.clone())]);
        let fx = room.join(person(3, false), 30, 0);
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
    fn raised_hands_queue_in_order_for_hosts_and_leave_with_their_owner() {
        let mut room = RoomState::default();
        let mut host = person(1, true);
        host.grants.host = true;
        room.join(host, 10, 0);
        room.join(person(2, false), 20, 0);
        room.join(person(3, false), 30, 0);
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
    fn media_from_someone_without_the_publish_grant_is_refused() {
        let mut room = RoomState::default();
        room.join(person(2, false), 20, 0);
        assert_eq!(room.publish(2, 20, MediaKind::Audio, "audio/opus").unwrap_err(), PublishRefusal::NotAllowed);
        assert_eq!(room.publish(2, 99, MediaKind::Audio, "audio/opus").unwrap_err(), PublishRefusal::NotInRoom);
    }

    #[test]
    fn a_publisher_leaving_unpublishes_and_is_recorded() {
        let mut room = RoomState::default();
        room.join(person(1, true), 10, 0);
        room.join(person(2, false), 20, 0);
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
        room.join(person(1, true), 10, 0);
        room.join(person(2, false), 20, 0);
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
        room.join(person(1, true), 10, 0);
        let fx = room.join(person(1, true), 11, 1);
        assert!(fx.iter().any(|e| matches!(e, Effect::Disconnect { participant: 1, conn: 10, .. })));
        assert!(fx.iter().any(|e| matches!(e, Effect::Record(Attendance { left: Some(LeaveReason::Dropped), .. }))));
        assert_eq!(room.conn_of(1), Some(11));
        assert_eq!(room.members.len(), 1);
    }

    #[test]
    fn keyframe_requests_are_rate_limited_but_not_lost() {
        let mut room = RoomState::default();
        room.join(person(1, true), 10, 0);
        room.join(person(2, false), 20, 0);
        room.join(person(3, false), 30, 0);
        let (video, _) = room.publish(1, 10, MediaKind::Video, "video/VP8").unwrap();
        let (audio, _) = room.publish(1, 10, MediaKind::Audio, "audio/opus").unwrap();
        let t0 = Instant::now();
        assert_eq!(room.subscriber_ready(2, &video, t0).len(), 1);
        assert!(room.subscriber_ready(3, &video, t0 + Duration::from_millis(10)).is_empty());
        assert!(room.subscriber_ready(2, &audio, t0).is_empty(), "audio needs no keyframe");
        assert!(room.tick(t0 + Duration::from_millis(100)).is_empty());
        let later = room.tick(t0 + KEYFRAME_INTERVAL);
        assert!(matches!(later.as_slice(), [Effect::RequestKeyframe(t)] if *t == video));
        assert!(room.tick(t0 + KEYFRAME_INTERVAL * 3).is_empty());
    }
}
