//! The messages between the parts of a room: what handlers and the engine's
//! callbacks send the room's actor, and what the actor sends each
//! connection's writer. Shared here so `peer`, `ws` and the actor depend on
//! these types rather than on each other.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot, Notify};

use super::{
    protocol::{ClientMessage, History, ServerMessage},
    room::{ConnId, Effect, Identity, LeaveReason, ParticipantId, TrackId},
};
use crate::{media::IncomingTrack, programme::Schedule, recording::Recorder};

#[derive(Debug)]
pub enum Outgoing {
    Message(ServerMessage),
    Close(u16, &'static str),
}

/// How many messages may wait for one connection's writer. A reader that
/// falls this far behind (a stalled laptop, a client that never reads) is
/// cut off rather than let the server's memory grow for it.
pub const OUTBOX_CAPACITY: usize = 1024;

/// A connection's outbound queue: bounded, never blocking the sender.
#[derive(Clone, Debug)]
pub struct Outbox {
    tx: mpsc::Sender<Outgoing>,
    cut: Arc<Notify>,
}

/// The writer's end of an [`Outbox`].
pub struct OutboxReader {
    pub rx: mpsc::Receiver<Outgoing>,
    /// Notified when the queue overflowed: the writer closes the connection.
    pub cut: Arc<Notify>,
}

impl Outbox {
    pub fn new(capacity: usize) -> (Outbox, OutboxReader) {
        let (tx, rx) = mpsc::channel(capacity);
        let cut = Arc::new(Notify::new());
        (Outbox { tx, cut: cut.clone() }, OutboxReader { rx, cut })
    }

    /// Queues `item`; if the queue is full the connection is cut off (the
    /// item is dropped: the writer is about to close anyway).
    pub fn send(&self, item: Outgoing) -> Result<(), ()> {
        match self.tx.try_send(item) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.cut.notify_one();
                Err(())
            }
            Err(mpsc::error::TrySendError::Closed(_)) => Err(()),
        }
    }
}

pub enum RoomCommand {
    Join {
        identity: Identity,
        conn: ConnId,
        out: Outbox,
        /// Stored chat, questions and polls, sent right after `welcome`.
        history: History,
        /// The room went live before (the database says so).
        live: bool,
        /// The session's times now (a reschedule reaches a running room with the next join).
        schedule: Schedule,
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
        track: IncomingTrack,
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

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JoinError {
    /// The room was closing as the join arrived: try again (a new room starts).
    Closing,
    /// The live part of the session is over.
    Ended,
}
