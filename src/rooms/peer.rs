//! A participant's media connection as the room sees it: the client's
//! negotiation messages go to the engine's connection, and the engine's
//! events come back as messages for the client (offers, answers, refusals,
//! straight to its outbox) or as commands for the room (tracks, keyframe
//! requests, audio levels).

use tokio::sync::mpsc;

use super::{
    command::{Outbox, Outgoing, RoomCommand},
    protocol::{close, ClientMessage, ErrorCode, ServerMessage},
    room::{ConnId, LeaveReason, ParticipantId},
};
use crate::media::{CandidateInit, ClientSignal, Connection, Media, MediaEvent, Refusal};

/// Opens the engine's connection for one participant's connection.
pub fn open(
    media: &Media,
    participant: ParticipantId,
    conn: ConnId,
    may_publish: bool,
    out: Outbox,
    room: mpsc::UnboundedSender<RoomCommand>,
) -> Connection {
    let sink = move |event: MediaEvent| {
        let to_room = |command: RoomCommand| {
            let _ = room.send(command);
        };
        let to_client = |message: ServerMessage| {
            let _ = out.send(Outgoing::Message(message));
        };
        match event {
            MediaEvent::Offer(sdp) => to_client(ServerMessage::Offer { sdp }),
            MediaEvent::Answer(sdp) => to_client(ServerMessage::Answer { sdp }),
            MediaEvent::Refused(refusal) => to_client(ServerMessage::error(code(&refusal), refusal.to_string())),
            MediaEvent::Track(track) => to_room(RoomCommand::TrackArrived { participant, conn, track }),
            MediaEvent::TrackEnded(track) => to_room(RoomCommand::TrackEnded { track }),
            MediaEvent::SubscriberReady(track) => to_room(RoomCommand::SubscriberReady { participant, conn, track }),
            MediaEvent::KeyframeWanted(track) => to_room(RoomCommand::KeyframeWanted { participant, conn, track }),
            MediaEvent::AudioLevel(track, level) => to_room(RoomCommand::AudioLevel { track, level }),
            MediaEvent::Failed => {
                let _ = out.send(Outgoing::Close(close::SERVER_ERROR, "no media connection could be made"));
                to_room(RoomCommand::Leave { participant, conn, reason: LeaveReason::Dropped });
            }
        }
    };
    media.open(may_publish, Box::new(sink))
}

/// Passes the client's offer, answer or candidate to its connection.
pub fn signal(connection: &Connection, message: ClientMessage) {
    match message {
        ClientMessage::Offer { sdp } => connection.signal(ClientSignal::Offer(sdp)),
        ClientMessage::Answer { sdp } => connection.signal(ClientSignal::Answer(sdp)),
        ClientMessage::Candidate { candidate: Some(c) } => connection.signal(ClientSignal::Candidate(CandidateInit {
            candidate: c.candidate,
            sdp_mid: c.sdp_mid,
            sdp_mline_index: c.sdp_mline_index,
            username_fragment: c.username_fragment,
        })),
        // The end of the client's candidates, and what the room itself handles.
        ClientMessage::Candidate { candidate: None }
        | ClientMessage::Join { .. }
        | ClientMessage::Leave
        | ClientMessage::Action(_) => {}
    }
}

fn code(refusal: &Refusal) -> ErrorCode {
    match refusal {
        Refusal::Glare => ErrorCode::Glare,
        Refusal::BadSdp(_) => ErrorCode::BadSdp,
        Refusal::BadCandidate(_) => ErrorCode::BadCandidate,
        Refusal::PublishNotAllowed => ErrorCode::PublishNotAllowed,
    }
}
