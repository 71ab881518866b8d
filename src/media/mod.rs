//! The media engine: every participant's WebRTC connection, all of them on
//! one UDP port, driven by our own loop over the `rtc` crate's sans-I/O
//! peer connections. It forwards RTP and never decodes it.
//!
//! It knows nothing of rooms, people or permissions. Its interface is
//! narrow: [`Media::open`] makes a [`Connection`] for one participant;
//! the room passes it the client's signalling, says which tracks it may
//! receive ([`Connection::subscribe`]) and whether it may publish; what the
//! client publishes arrives as a [`Source`] in [`MediaEvent::Track`], which
//! the room accepts (giving it a name) or ignores. Everything the engine has
//! to say comes back as [`MediaEvent`]s through the connection's [`Sink`].
//!
//! - `udp.rs`: the socket, batched receives and sends (`recvmmsg`, `sendmmsg`);
//! - `worker.rs`: the loop that owns the connections, routes datagrams,
//!   fans out packets and runs the timers;
//! - `connection.rs`: one connection's negotiation (offers, answers,
//!   renegotiation, the publish grant);
//! - `codec.rs`, `interceptors.rs`: what every connection speaks.
//!
//! docs/media-engine.md explains the threads and a packet's path.

pub mod codec;
mod connection;
pub mod interceptors;
mod udp;
mod worker;

use std::{
    net::{IpAddr, SocketAddr},
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
};

use anyhow::Context;
use tokio::sync::mpsc;

use crate::settings::RtcSettings;

/// Audio or video.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Audio,
    Video,
}

/// A trickled ICE candidate from the client.
#[derive(Clone, Debug)]
pub struct CandidateInit {
    pub candidate: String,
    pub sdp_mid: Option<String>,
    pub sdp_mline_index: Option<u16>,
    pub username_fragment: Option<String>,
}

/// What the client says about its connection.
#[derive(Debug)]
pub enum ClientSignal {
    Offer(String),
    Answer(String),
    Candidate(CandidateInit),
}

/// Why something the client sent was not applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("answer the server's offer first, then offer again")]
    Glare,
    #[error("{0}")]
    BadSdp(String),
    #[error("the candidate was refused: {0}")]
    BadCandidate(String),
    #[error("you may not publish in this session: your media was refused")]
    PublishNotAllowed,
}

/// A track the room sends to a connection.
#[derive(Clone, Debug)]
pub struct LocalTrack {
    /// The room's name for the track; events about it carry this name.
    pub name: String,
    /// The stream it belongs to (the publisher), as the client will see it.
    pub stream: String,
    pub kind: Kind,
    pub mime_type: String,
}

/// A track a client started to publish.
#[derive(Debug)]
pub struct IncomingTrack {
    pub source: Source,
    pub kind: Option<Kind>,
    pub mime_type: Option<String>,
    /// The audio-level header extension's id, if the client negotiated it.
    pub audio_level_ext: Option<u8>,
}

/// What the engine tells the owner of a connection.
#[derive(Debug)]
pub enum MediaEvent {
    /// Send the client this offer (tracks were added or removed).
    Offer(String),
    /// Send the client this answer to its offer.
    Answer(String),
    Refused(Refusal),
    /// The client publishes a track: accept it with [`Source::accept`] or
    /// drop it (its packets are then discarded).
    Track(IncomingTrack),
    /// An accepted track of this connection ended.
    TrackEnded(String),
    /// A subscribed track is negotiated and flowing to the client: a good
    /// moment to ask its publisher for a keyframe.
    SubscriberReady(String),
    /// The client's decoder asked for a keyframe of a subscribed track.
    KeyframeWanted(String),
    /// The loudest audio level (0 loudest, 127 silence) on an accepted
    /// track since the last report, about five times a second.
    AudioLevel(String, u8),
    /// No connection could be made (the engine could not set one up).
    Failed,
}

/// Where a connection's events go. Called on the engine's thread: it must
/// not block.
pub type Sink = Box<dyn Fn(MediaEvent) + Send>;

type ConnectionId = u64;
type SourceId = u64;

enum Command {
    Open { id: ConnectionId, may_publish: bool, sink: Sink },
    Signal(ConnectionId, ClientSignal),
    AllowPublish(ConnectionId, bool),
    Subscribe { conn: ConnectionId, source: SourceId, track: LocalTrack },
    Unsubscribe { conn: ConnectionId, name: String },
    Close(ConnectionId),
    Accept { source: SourceId, name: String, levels: bool },
    Pause(SourceId, bool),
    RequestKeyframe(SourceId),
    Record(SourceId, Option<mpsc::Sender<rtc::rtp::Packet>>),
    Stop(SourceId),
}

#[derive(Clone, Debug)]
struct Worker {
    commands: mpsc::UnboundedSender<Command>,
}

impl Worker {
    fn send(&self, command: Command) {
        // A worker stops only with the process.
        let _ = self.commands.send(command);
    }
}

/// The engine: its socket, its worker thread.
pub struct Media {
    worker: Worker,
    local: SocketAddr,
    announced: SocketAddr,
    ids: Arc<AtomicU64>,
}

impl Media {
    /// Binds the media socket (`bind_ip:port`; port 0 lets the system choose)
    /// and starts the worker thread.
    pub fn start(settings: &RtcSettings) -> anyhow::Result<Media> {
        let socket = udp::bind(SocketAddr::new(settings.bind_ip, settings.port))
            .with_context(|| format!("failed to bind the media port {}:{}", settings.bind_ip, settings.port))?;
        let local = socket.local_addr()?;
        let ip: IpAddr = match (settings.public_ip, settings.bind_ip) {
            (Some(ip), _) => ip,
            (None, ip) if !ip.is_unspecified() => ip,
            (None, _) => anyhow::bail!(
                "media bound to every interface needs STAFFROOM_RTC_PUBLIC_IP: the address browsers reach"
            ),
        };
        let announced = SocketAddr::new(ip, local.port());
        let ids = Arc::new(AtomicU64::new(1));
        let worker = worker::spawn(socket, announced, ids.clone())?;
        tracing::info!(%local, %announced, "media engine listening");
        Ok(Media { worker, local, announced, ids })
    }

    /// The bound address of the media socket.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// The address announced to clients in candidates.
    pub fn announced_addr(&self) -> SocketAddr {
        self.announced
    }

    /// A new connection for one participant; `may_publish` says whether the
    /// media it offers is taken or refused.
    pub fn open(&self, may_publish: bool, sink: Sink) -> Connection {
        let id = self.ids.fetch_add(1, Ordering::Relaxed);
        self.worker.send(Command::Open { id, may_publish, sink });
        Connection { id, worker: self.worker.clone() }
    }
}

/// One participant's connection. Closed by [`Connection::close`].
#[derive(Debug)]
pub struct Connection {
    id: ConnectionId,
    worker: Worker,
}

impl Connection {
    pub fn signal(&self, signal: ClientSignal) {
        self.worker.send(Command::Signal(self.id, signal));
    }

    /// Brought on stage (true) or taken off it (false): applies to the
    /// client's next offer.
    pub fn allow_publish(&self, allowed: bool) {
        self.worker.send(Command::AllowPublish(self.id, allowed));
    }

    /// Sends `source` to this connection as `track` (renegotiating).
    pub fn subscribe(&self, source: &Source, track: LocalTrack) {
        self.worker.send(Command::Subscribe { conn: self.id, source: source.id, track });
    }

    pub fn unsubscribe(&self, name: &str) {
        self.worker.send(Command::Unsubscribe { conn: self.id, name: name.to_string() });
    }

    /// Closes the connection; its accepted tracks end.
    pub fn close(&self) {
        self.worker.send(Command::Close(self.id));
    }
}

/// A published track, as the engine forwards it.
#[derive(Clone, Debug)]
pub struct Source {
    id: SourceId,
    worker: Worker,
}

impl Source {
    /// Forwards this track from now on under `name`; `levels` asks for
    /// [`MediaEvent::AudioLevel`] reports.
    pub fn accept(&self, name: &str, levels: bool) {
        self.worker.send(Command::Accept { source: self.id, name: name.to_string(), levels });
    }

    /// While paused nothing is forwarded, whatever the publisher sends.
    pub fn pause(&self, paused: bool) {
        self.worker.send(Command::Pause(self.id, paused));
    }

    /// Sends the publisher a picture loss indication.
    pub fn request_keyframe(&self) {
        self.worker.send(Command::RequestKeyframe(self.id));
    }

    /// Hands a copy of every forwarded packet to `tap` (`None` stops;
    /// dropping the receiver stops too).
    pub fn record(&self, tap: Option<mpsc::Sender<rtc::rtp::Packet>>) {
        self.worker.send(Command::Record(self.id, tap));
    }

    /// Stops forwarding this track for good.
    pub fn stop(&self) {
        self.worker.send(Command::Stop(self.id));
    }
}
