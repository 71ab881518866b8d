//! The signalling protocol: versioned JSON text frames, `{"v":1,"type":...}`.
//! `docs/signalling.md` is the reference; this module is its parser.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{
    auth::tokens::Grants,
    interaction::{
        chat::ChatMessage,
        polls::{Poll, PollResults},
        questions::Question,
    },
};

/// The protocol version this server speaks.
pub const VERSION: u64 = 1;
/// Largest text message we read (an SDP with many candidates is ~10 KiB).
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;

/// WebSocket close codes (4000–4999 is the range for applications).
pub mod close {
    /// The token (in `join`) is missing, forged, expired or not a room token.
    pub const BAD_TOKEN: u16 = 4001;
    /// The token is valid but for another session.
    pub const WRONG_ROOM: u16 = 4003;
    /// The same person joined again from elsewhere; this connection is replaced.
    pub const REPLACED: u16 = 4009;
    /// The first message was not `join` within the allowed time.
    pub const NO_JOIN: u16 = 4008;
    /// The room has ended for everyone (the server is stopping; later, a host ends it).
    pub const ENDED: u16 = 4010;
    /// The server could not set up this participant's media.
    pub const SERVER_ERROR: u16 = 4011;
    /// A host removed this participant.
    pub const REMOVED: u16 = 4012;
    /// The client kept sending faster than its allowance after being told
    /// (`error` with code `too_fast`); it may reconnect and slow down.
    pub const TOO_MANY_MESSAGES: u16 = 4029;
    /// The client did not read what the server sent (its queue filled up,
    /// a write stalled, or it stopped answering pings).
    pub const TOO_SLOW: u16 = 4030;
}

/// What a client may send.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientMessage {
    /// The room token comes in `join`, not in the URL: URLs end up in access
    /// logs, proxies and tracing spans.
    Join {
        token: Option<String>,
    },
    Offer {
        sdp: String,
    },
    Answer {
        sdp: String,
    },
    /// A trickled candidate; `None` is the end-of-candidates marker.
    Candidate {
        candidate: Option<Candidate>,
    },
    Leave,
    /// Everything that is not media negotiation: chat, questions, hands, polls.
    Action(Action),
}

/// What people do in the room besides media (see docs/signalling.md).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Action {
    Chat {
        body: String,
    },
    ChatDelete {
        id: i64,
    },
    Ask {
        body: String,
    },
    Upvote {
        id: i64,
    },
    QuestionAnswered {
        id: i64,
        answered: bool,
    },
    QuestionHighlight {
        id: Option<i64>,
    },
    QuestionDelete {
        id: i64,
    },
    Hand {
        raised: bool,
    },
    HandLower {
        participant_id: String,
    },
    PollCreate {
        question: String,
        options: Vec<String>,
        #[serde(default)]
        multiple: bool,
        #[serde(default)]
        anonymous: bool,
        #[serde(default)]
        open: bool,
    },
    PollOpen {
        id: i64,
    },
    PollClose {
        id: i64,
    },
    PollReveal {
        id: i64,
    },
    Vote {
        poll_id: i64,
        options: Vec<i64>,
    },
    GoLive,
    EndSession,
    /// Hosts: start recording what is on stage (docs/recording.md).
    RecordStart,
    RecordStop,
    /// Hosts: mark a chapter in the running recording ("Part 2: feedback").
    Chapter {
        title: String,
    },
    BreakoutOpen {
        #[serde(flatten)]
        plan: crate::breakout::Plan,
    },
    BreakoutMove {
        participant_id: String,
        /// A group id, or null for the main room.
        group: Option<u32>,
    },
    BreakoutVisit {
        group: Option<u32>,
    },
    BreakoutLeave,
    BreakoutChoose {
        group: u32,
    },
    /// Open the plan saved for this session before it started.
    BreakoutOpenSaved,
    BreakoutExtend {
        minutes: f64,
    },
    BreakoutClose,
    BreakoutBroadcast {
        text: String,
    },
    BreakoutHelp,
    StageInvite {
        participant_id: String,
    },
    StageAccept,
    StageDecline,
    StageRemove {
        participant_id: String,
    },
    Mute {
        participant_id: String,
        kind: String,
    },
    /// Hosts lift a mute; `participant_id` left out means yourself, which
    /// only a host may do (anyone else is told `muted_by_host`).
    Unmute {
        #[serde(default)]
        participant_id: Option<String>,
        kind: String,
    },
    Remove {
        participant_id: String,
        #[serde(default)]
        bar: bool,
    },
}

/// The `type`s that are [`Action`]s.
const ACTION_TYPES: &[&str] = &[
    "chat",
    "chat_delete",
    "ask",
    "upvote",
    "question_answered",
    "question_highlight",
    "question_delete",
    "hand",
    "hand_lower",
    "poll_create",
    "poll_open",
    "poll_close",
    "poll_reveal",
    "vote",
    "go_live",
    "end_session",
    "record_start",
    "record_stop",
    "chapter",
    "breakout_open",
    "breakout_move",
    "breakout_visit",
    "breakout_leave",
    "breakout_choose",
    "breakout_open_saved",
    "breakout_extend",
    "breakout_close",
    "breakout_broadcast",
    "breakout_help",
    "stage_invite",
    "stage_accept",
    "stage_decline",
    "stage_remove",
    "mute",
    "unmute",
    "remove",
];

/// A trickled ICE candidate, as `RTCIceCandidate.toJSON()` gives it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Candidate {
    pub candidate: String,
    #[serde(default)]
    pub sdp_mid: Option<String>,
    #[serde(default, rename = "sdpMLineIndex")]
    pub sdp_mline_index: Option<u16>,
    #[serde(default)]
    pub username_fragment: Option<String>,
}

/// Why a message was refused; `code` in the `error` message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// Not JSON, not an object, a field missing or of the wrong type, or binary.
    BadMessage,
    /// Larger than [`MAX_MESSAGE_BYTES`].
    TooLarge,
    /// `v` is missing or not a version this server speaks.
    UnsupportedVersion,
    /// `type` names no message this server knows.
    UnknownType,
    /// `join` must come first, and only once.
    NotJoined,
    AlreadyJoined,
    /// The SDP could not be parsed or applied.
    BadSdp,
    /// The candidate could not be parsed or applied.
    BadCandidate,
    /// An offer arrived while the server's own offer awaits an answer:
    /// answer the server's offer, then offer again.
    Glare,
    /// Media offered without the publish grant: refused, not forwarded.
    PublishNotAllowed,
    /// You tried to unmute what a host muted: only a host can lift it.
    MutedByHost,
    /// Interaction refusals: see [`crate::interaction::InteractionError`].
    Empty,
    TooLong,
    TooFast,
    NotHost,
    NotFound,
    AlreadyVoted,
    WrongState,
    BadChoice,
    /// The server failed; the message was not stored.
    Internal,
}

impl From<&crate::interaction::InteractionError> for ErrorCode {
    fn from(e: &crate::interaction::InteractionError) -> Self {
        use crate::interaction::InteractionError as E;
        match e {
            E::Empty(_) => ErrorCode::Empty,
            E::TooLong { .. } => ErrorCode::TooLong,
            E::TooFast => ErrorCode::TooFast,
            E::NotFound(_) => ErrorCode::NotFound,
            E::NotHost(_) | E::NotRunner(_) => ErrorCode::NotHost,
            E::AlreadyVoted => ErrorCode::AlreadyVoted,
            E::WrongState(_) => ErrorCode::WrongState,
            E::BadChoice(_) => ErrorCode::BadChoice,
            E::Database(_) => ErrorCode::Internal,
        }
    }
}

/// What the server sends.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMessage {
    Welcome {
        you: ParticipantInfo,
        participants: Vec<ParticipantInfo>,
        tracks: Vec<TrackInfo>,
        /// `lobby` (attendees wait; presenters are backstage) or `live`.
        phase: &'static str,
    },
    /// The room went live (or ended).
    Phase {
        phase: &'static str,
    },
    Offer {
        sdp: String,
    },
    Answer {
        sdp: String,
    },
    Candidate {
        candidate: Candidate,
    },
    ParticipantJoined {
        participant: ParticipantInfo,
    },
    ParticipantLeft {
        participant_id: String,
        reason: &'static str,
    },
    TrackPublished {
        track: TrackInfo,
    },
    TrackUnpublished {
        track_id: String,
    },
    Error {
        code: ErrorCode,
        message: String,
    },
    Chat {
        message: ChatMessage,
    },
    ChatDeleted {
        id: i64,
    },
    Question {
        question: Question,
    },
    QuestionDeleted {
        id: i64,
    },
    /// Raised hands, oldest first: to hosts.
    Hands {
        queue: Vec<RaisedHand>,
    },
    /// Your own hand, after you (or a host) changed it.
    Hand {
        raised: bool,
    },
    Poll {
        poll: Poll,
    },
    PollResults {
        results: PollResults,
    },
    Voted {
        poll_id: i64,
    },
    /// Stored chat, questions and polls: right after `welcome`.
    History(History),
    /// The latest chat of the space you have just moved into (a breakout
    /// group, or the main room when `group` is null), oldest first: it
    /// replaces the chat shown for the space you left.
    ChatHistory {
        group: Option<crate::breakout::GroupId>,
        chat: Vec<ChatMessage>,
    },
    /// A host asks you on stage: answer `stage_accept` or `stage_decline`.
    StageInvited {
        by: String,
    },
    /// To hosts: the invited attendee said no.
    StageDeclined {
        participant_id: String,
    },
    /// Someone's stage or mute state changed.
    ParticipantUpdated {
        participant: ParticipantInfo,
    },
    /// The breakout groups, whenever they change (open, moves, timer, return).
    Breakout {
        breakout: crate::breakout::View,
    },
    /// A host's broadcast to every group.
    BreakoutMessage {
        text: String,
        from: String,
    },
    /// `warning` (a minute left), `returning` (the countdown to the main
    /// room started), `closed` (everyone is back).
    BreakoutTimer {
        event: &'static str,
    },
    /// To hosts: someone in a group asks for help.
    HelpRequested {
        participant_id: String,
        name: String,
        group: u32,
        group_name: String,
    },
    /// The session is being recorded (`on`), or recording stopped.
    Recording {
        on: bool,
        recording_id: String,
    },
    /// A stopped recording is finished and can be replayed.
    RecordingSaved {
        recording_id: String,
        replay_url: String,
    },
    /// To hosts: a chapter was marked `t_ms` into the recording.
    Chapter {
        title: String,
        t_ms: i64,
    },
    /// Who is speaking now in a space (the main room, or a breakout group),
    /// from the audio level publishers send.
    ActiveSpeaker {
        participant_id: String,
        group: Option<u32>,
    },
    /// A host muted your `kind`; it stays muted until a host lifts it.
    Muted {
        kind: &'static str,
        by: String,
    },
    /// A host lifted the mute on your `kind`: you may turn it on again.
    Unmuted {
        kind: &'static str,
        by: String,
    },
}

/// Stored interaction a joining participant needs; sent right after `welcome`.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct History {
    /// The latest messages, oldest first.
    pub chat: Vec<ChatMessage>,
    pub questions: Vec<Question>,
    /// Drafts only for hosts.
    pub polls: Vec<Poll>,
    /// For hosts every poll's; for others, revealed polls' only.
    pub poll_results: Vec<PollResults>,
    /// Polls this person has voted in.
    pub voted: Vec<i64>,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct RaisedHand {
    pub participant_id: String,
    pub name: String,
    /// Unix milliseconds.
    pub at: i64,
}

impl ServerMessage {
    pub fn error(code: ErrorCode, message: impl Into<String>) -> ServerMessage {
        ServerMessage::Error { code, message: message.into() }
    }

    /// The wire form: the message with `"v": 1` added.
    pub fn to_json(&self) -> String {
        let mut value = serde_json::to_value(self).unwrap_or(Value::Null);
        if let Value::Object(map) = &mut value {
            map.insert("v".into(), VERSION.into());
        }
        value.to_string()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ParticipantInfo {
    /// Stable for a person within a room (their user id), so a reconnect is
    /// the same participant.
    pub id: String,
    pub name: String,
    pub grants: Grants,
    /// An attendee a host brought on stage: they may publish.
    pub on_stage: bool,
    /// Kinds (`audio`, `video`) a host muted and no host has unmuted yet.
    pub muted: Vec<&'static str>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TrackInfo {
    /// Also the `id` of the `MediaStreamTrack` the subscriber receives.
    pub id: String,
    pub participant_id: String,
    /// `audio` or `video`.
    pub kind: &'static str,
    /// e.g. `video/VP8`, `audio/opus`.
    pub mime_type: String,
}

/// Parses one text frame. Never panics; every refusal says what is wrong.
pub fn parse(text: &str) -> Result<ClientMessage, (ErrorCode, String)> {
    if text.len() > MAX_MESSAGE_BYTES {
        return Err((ErrorCode::TooLarge, format!("messages are limited to {MAX_MESSAGE_BYTES} bytes")));
    }
    let value: Value =
        serde_json::from_str(text).map_err(|e| (ErrorCode::BadMessage, format!("not valid JSON: {e}")))?;
    let Value::Object(map) = value else {
        return Err((ErrorCode::BadMessage, "a message is a JSON object".into()));
    };
    match map.get("v").and_then(Value::as_u64) {
        Some(VERSION) => {}
        Some(v) => return Err((ErrorCode::UnsupportedVersion, format!("version {v} is not supported; use 1"))),
        None => return Err((ErrorCode::UnsupportedVersion, "every message carries \"v\": 1".into())),
    }
    let Some(kind) = map.get("type").and_then(Value::as_str) else {
        return Err((ErrorCode::BadMessage, "every message carries a \"type\" string".into()));
    };
    let sdp = || -> Result<String, (ErrorCode, String)> {
        match map.get("sdp").and_then(Value::as_str) {
            Some(s) if !s.trim().is_empty() => Ok(s.to_string()),
            _ => Err((ErrorCode::BadMessage, format!("{kind} needs an \"sdp\" string"))),
        }
    };
    Ok(match kind {
        "join" => ClientMessage::Join { token: map.get("token").and_then(Value::as_str).map(str::to_string) },
        "leave" => ClientMessage::Leave,
        "offer" => ClientMessage::Offer { sdp: sdp()? },
        "answer" => ClientMessage::Answer { sdp: sdp()? },
        "candidate" => match map.get("candidate") {
            None | Some(Value::Null) => ClientMessage::Candidate { candidate: None },
            Some(c) => {
                let candidate: Candidate = serde_json::from_value(c.clone())
                    .map_err(|e| (ErrorCode::BadCandidate, format!("candidate: {e}")))?;
                if candidate.candidate.is_empty() {
                    ClientMessage::Candidate { candidate: None }
                } else {
                    ClientMessage::Candidate { candidate: Some(candidate) }
                }
            }
        },
        action if ACTION_TYPES.contains(&action) => {
            let action: Action = serde_json::from_value(Value::Object(map.clone()))
                .map_err(|e| (ErrorCode::BadMessage, format!("{action}: {e}")))?;
            ClientMessage::Action(action)
        }
        other => {
            let shown: String = other.chars().take(40).collect();
            return Err((ErrorCode::UnknownType, format!("unknown message type {shown:?}")));
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn well_formed_messages_parse() {
        assert_eq!(parse(r#"{"v":1,"type":"join"}"#), Ok(ClientMessage::Join { token: None }));
        assert_eq!(
            parse(r#"{"v":1,"type":"join","token":"a.b.c"}"#),
            Ok(ClientMessage::Join { token: Some("a.b.c".into()) })
        );
        assert_eq!(parse(r#"{"v":1,"type":"offer","sdp":"v=0"}"#), Ok(ClientMessage::Offer { sdp: "v=0".into() }));
        let c = parse(r#"{"v":1,"type":"candidate","candidate":{"candidate":"candidate:1 1 udp 1 127.0.0.1 5000 typ host","sdpMid":"0","sdpMLineIndex":0}}"#).unwrap();
        let ClientMessage::Candidate { candidate: Some(c) } = c else { panic!("{c:?}") };
        assert_eq!((c.sdp_mid.as_deref(), c.sdp_mline_index), (Some("0"), Some(0)));
        assert_eq!(
            parse(r#"{"v":1,"type":"candidate","candidate":null}"#),
            Ok(ClientMessage::Candidate { candidate: None })
        );
    }

    #[test]
    fn bad_messages_say_what_is_wrong() {
        let code = |t: &str| parse(t).unwrap_err().0;
        assert_eq!(code("not json"), ErrorCode::BadMessage);
        assert_eq!(code("[1,2]"), ErrorCode::BadMessage);
        assert_eq!(code(r#"{"type":"join"}"#), ErrorCode::UnsupportedVersion);
        assert_eq!(code(r#"{"v":2,"type":"join"}"#), ErrorCode::UnsupportedVersion);
        assert_eq!(code(r#"{"v":1}"#), ErrorCode::BadMessage);
        assert_eq!(code(r#"{"v":1,"type":"dance"}"#), ErrorCode::UnknownType);
        assert_eq!(code(r#"{"v":1,"type":"offer"}"#), ErrorCode::BadMessage);
        assert_eq!(code(r#"{"v":1,"type":"candidate","candidate":{"sdpMid":"0"}}"#), ErrorCode::BadCandidate);
        assert_eq!(
            code(&format!(r#"{{"v":1,"type":"offer","sdp":"{}"}}"#, "a".repeat(MAX_MESSAGE_BYTES))),
            ErrorCode::TooLarge
        );
    }

    #[test]
    fn interaction_messages_parse_and_bad_fields_are_named() {
        assert_eq!(
            parse(r#"{"v":1,"type":"chat","body":"hello"}"#),
            Ok(ClientMessage::Action(Action::Chat { body: "hello".into() }))
        );
        assert_eq!(
            parse(r#"{"v":1,"type":"vote","poll_id":3,"options":[7]}"#),
            Ok(ClientMessage::Action(Action::Vote { poll_id: 3, options: vec![7] }))
        );
        assert_eq!(
            parse(r#"{"v":1,"type":"question_highlight","id":null}"#),
            Ok(ClientMessage::Action(Action::QuestionHighlight { id: None }))
        );
        let (code, message) = parse(r#"{"v":1,"type":"upvote","id":"x"}"#).unwrap_err();
        assert_eq!(code, ErrorCode::BadMessage);
        assert!(message.starts_with("upvote:"), "{message}");
    }

    #[test]
    fn server_messages_carry_the_version_and_type() {
        let json: Value =
            serde_json::from_str(&ServerMessage::TrackUnpublished { track_id: "t1".into() }.to_json()).unwrap();
        assert_eq!(json, serde_json::json!({"v": 1, "type": "track_unpublished", "track_id": "t1"}));
    }
}
