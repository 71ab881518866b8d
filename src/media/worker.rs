//! The worker: one thread, one loop, every connection on the media socket.
//!
//! - A datagram is routed by its source address; a new address is learnt
//!   from the ICE username of its first STUN request (`server:client`, the
//!   server half chosen here for each connection).
//! - A publisher's RTP packet is handed to each subscribed connection in a
//!   loop (no channel, no task per subscriber); what the connections
//!   produce is sent with `sendmmsg`.
//! - Timers: one heap of each connection's next deadline.

use std::{
    cmp::Reverse,
    collections::{BinaryHeap, HashMap},
    net::SocketAddr,
    os::fd::AsRawFd,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use bytes::BytesMut;
use rtc::{
    peer_connection::{
        certificate::{CertificateParams, RTCCertificate},
        event::{RTCPeerConnectionEvent, RTCTrackEvent, RTCTrackEventInit},
        message::{RTCMessage, TaggedRTCMessage},
        state::RTCPeerConnectionState,
    },
    rtcp::payload_feedbacks::{full_intra_request::FullIntraRequest, picture_loss_indication::PictureLossIndication},
    rtp_transceiver::{rtp_sender::RtpCodecKind, RTCRtpReceiverId},
    sansio::Protocol,
    shared::{TaggedBytesMut, TransportContext, TransportProtocol},
};
use tokio::{io::Interest, net::UdpSocket, sync::mpsc};

use super::{
    codec,
    connection::{Action, Connection},
    udp, Command, ConnectionId, IncomingTrack, Kind, MediaEvent, Source, SourceId, Worker,
};

/// The longest a connection goes without `handle_timeout` (its own
/// deadlines may be later; writes can bring them forward unseen).
const MAX_IDLE: Duration = Duration::from_millis(200);
/// Packets between two audio-level reports (50 a second for Opus: 200 ms).
const LEVEL_EVERY: u32 = 10;
/// Addresses one connection may be reached from (a client that changes
/// networks); a flood of spoofed ones cannot grow the table beyond this.
const ADDRS_PER_CONNECTION: usize = 8;

/// Starts the worker thread on `socket`.
pub(super) fn spawn(socket: std::net::UdpSocket, announced: SocketAddr, ids: Arc<AtomicU64>) -> anyhow::Result<Worker> {
    let provider = rtc::crypto::default_provider()?;
    // One certificate for every connection: a client checks the
    // fingerprint in the SDP, which is the same for all.
    let certificate = RTCCertificate::generate(
        provider.crypto(),
        rtc::crypto::SignatureScheme::EcdsaP256Sha256,
        CertificateParams::new(vec!["staffroom".to_owned()])?,
    )?;
    let (tx, rx) = mpsc::unbounded_channel();
    // Weak: the worker stops once the engine and every handle are gone.
    let me = tx.downgrade();
    let worker = Worker { commands: tx };
    std::thread::Builder::new().name("media".into()).spawn(move || {
        let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
            Ok(r) => r,
            Err(e) => return tracing::error!(error = %e, "the media worker could not start"),
        };
        runtime.block_on(async move {
            match UdpSocket::from_std(socket) {
                Ok(socket) => Loop::new(socket, announced, certificate, ids, me).run(rx).await,
                Err(e) => tracing::error!(error = %e, "the media worker could not use its socket"),
            }
        })
    })?;
    Ok(worker)
}

/// A published track as the worker forwards it.
struct Forward {
    owner: ConnectionId,
    receiver: RTCRtpReceiverId,
    /// The publisher's SSRC (for keyframe requests), from its packets.
    media_ssrc: u32,
    /// Set by the room's accept; until then packets are discarded.
    name: Option<String>,
    audio_level_ext: Option<u8>,
    level: Option<Level>,
    paused: bool,
    record: Option<mpsc::Sender<rtc::rtp::Packet>>,
    downstream: Vec<Downstream>,
}

struct Level {
    extension_id: u8,
    loudest: u8,
    since_report: u32,
}

/// One subscriber's copy: SSRC and payload type as negotiated with it.
struct Downstream {
    conn: ConnectionId,
    ssrc: u32,
    payload_type: u8,
}

struct Loop {
    socket: UdpSocket,
    announced: SocketAddr,
    certificate: RTCCertificate,
    ids: Arc<AtomicU64>,
    me: mpsc::WeakUnboundedSender<Command>,
    conns: HashMap<ConnectionId, Connection>,
    by_addr: HashMap<SocketAddr, ConnectionId>,
    by_ufrag: HashMap<String, ConnectionId>,
    forwards: HashMap<SourceId, Forward>,
    timers: BinaryHeap<Reverse<(Instant, ConnectionId)>>,
    out: Vec<(BytesMut, SocketAddr)>,
}

impl Loop {
    fn new(
        socket: UdpSocket,
        announced: SocketAddr,
        certificate: RTCCertificate,
        ids: Arc<AtomicU64>,
        me: mpsc::WeakUnboundedSender<Command>,
    ) -> Loop {
        Loop {
            socket,
            announced,
            certificate,
            ids,
            me,
            conns: HashMap::new(),
            by_addr: HashMap::new(),
            by_ufrag: HashMap::new(),
            forwards: HashMap::new(),
            timers: BinaryHeap::new(),
            out: Vec::with_capacity(1024),
        }
    }

    async fn run(mut self, mut commands: mpsc::UnboundedReceiver<Command>) {
        let mut bufs = udp::RecvBuffers::new();
        loop {
            let next = self.timers.peek().map_or_else(|| Instant::now() + MAX_IDLE, |Reverse((at, _))| *at);
            tokio::select! {
                command = commands.recv() => match command {
                    Some(command) => {
                        self.command(command);
                        while let Ok(command) = commands.try_recv() {
                            self.command(command);
                        }
                    }
                    None => break,
                },
                ready = self.socket.readable() => {
                    if ready.is_err() {
                        break;
                    }
                    // A bounded number of batches, then commands and timers get a turn.
                    for _ in 0..16 {
                        let fd = self.socket.as_raw_fd();
                        match self.socket.try_io(Interest::READABLE, || udp::recv_batch(fd, &mut bufs)) {
                            Ok(n) => {
                                let now = Instant::now();
                                for i in 0..n {
                                    if let Some((data, from)) = bufs.get(i) {
                                        self.datagram(now, data, from);
                                    }
                                }
                                self.flush().await;
                            }
                            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                            Err(e) => {
                                tracing::debug!(error = %e, "media socket read failed");
                                break;
                            }
                        }
                    }
                }
                _ = tokio::time::sleep_until(next.into()) => self.timers(Instant::now()),
            }
            self.flush().await;
        }
    }

    fn command(&mut self, command: Command) {
        let now = Instant::now();
        match command {
            Command::Open { id, may_publish, sink } => {
                let ufrag = format!("{:016x}", rand::random::<u64>());
                let password = format!("{:032x}", rand::random::<u128>());
                match Connection::peer_connection(now, self.certificate.clone(), self.announced, &ufrag, password) {
                    Ok(pc) => {
                        self.by_ufrag.insert(ufrag.clone(), id);
                        self.conns.insert(id, Connection::new(pc, ufrag, may_publish, sink));
                        self.drive(id, now);
                    }
                    Err(e) => {
                        tracing::error!(error = ?e, "no media connection could be made");
                        sink(MediaEvent::Failed);
                    }
                }
            }
            Command::Signal(id, signal) => {
                if let Some(conn) = self.conns.get_mut(&id) {
                    let actions = conn.signal(now, signal);
                    self.apply(id, actions);
                    self.drive(id, now);
                }
            }
            Command::AllowPublish(id, allowed) => {
                if let Some(conn) = self.conns.get_mut(&id) {
                    conn.allow_publish(allowed);
                }
            }
            Command::Subscribe { conn: id, source, track } => {
                if let Some(conn) = self.conns.get_mut(&id) {
                    conn.subscribe(now, source, track);
                    self.drive(id, now);
                }
            }
            Command::Unsubscribe { conn: id, name } => {
                if let Some(conn) = self.conns.get_mut(&id) {
                    let actions = conn.unsubscribe(now, &name);
                    self.apply(id, actions);
                    self.drive(id, now);
                }
            }
            Command::Close(id) => self.close(id),
            Command::Accept { source, name, levels } => {
                if let Some(f) = self.forwards.get_mut(&source) {
                    f.level = f.audio_level_ext.filter(|_| levels).map(|extension_id| Level {
                        extension_id,
                        loudest: 127,
                        since_report: 0,
                    });
                    f.name = Some(name);
                }
            }
            Command::Pause(source, paused) => {
                if let Some(f) = self.forwards.get_mut(&source) {
                    f.paused = paused;
                }
            }
            Command::Record(source, tap) => {
                if let Some(f) = self.forwards.get_mut(&source) {
                    f.record = tap;
                }
            }
            Command::RequestKeyframe(source) => self.request_keyframe(source, now),
            Command::Stop(source) => {
                self.forwards.remove(&source);
            }
        }
    }

    fn datagram(&mut self, now: Instant, data: &[u8], from: SocketAddr) {
        let id = match self.by_addr.get(&from) {
            Some(&id) => id,
            None => {
                let Some(&id) = udp::stun_username(data).and_then(|u| self.by_ufrag.get(u.split(':').next()?)) else {
                    return;
                };
                let Some(conn) = self.conns.get_mut(&id) else { return };
                if conn.addrs.len() >= ADDRS_PER_CONNECTION {
                    return;
                }
                conn.addrs.push(from);
                self.by_addr.insert(from, id);
                id
            }
        };
        let Some(conn) = self.conns.get_mut(&id) else { return };
        let message = TaggedBytesMut {
            now,
            transport: TransportContext {
                local_addr: self.announced,
                peer_addr: from,
                ecn: None,
                transport_protocol: TransportProtocol::UDP,
            },
            message: BytesMut::from(data),
        };
        if let Err(e) = conn.pc.handle_read(message) {
            tracing::trace!(error = %e, "a datagram was not taken");
        }
        self.drive(id, now);
    }

    /// Drains one connection: what it sends, its events, what it read (a
    /// publisher's media is fanned out here); then its next deadline.
    fn drive(&mut self, id: ConnectionId, now: Instant) {
        let Some(conn) = self.conns.get_mut(&id) else { return };
        while let Some(w) = conn.pc.poll_write() {
            self.out.push((w.message, w.transport.peer_addr));
        }
        let (mut actions, mut opened, mut closed) = (vec![], vec![], vec![]);
        while let Some(event) = conn.pc.poll_event() {
            match event {
                RTCPeerConnectionEvent::OnConnectionStateChangeEvent(state) => {
                    tracing::debug!(ufrag = %conn.ufrag, %state, "media connection state");
                    if state == RTCPeerConnectionState::Connected && !conn.connected {
                        actions.extend(conn.connected());
                    }
                }
                RTCPeerConnectionEvent::OnTrack(RTCTrackEvent::OnOpen(init)) => opened.push(init),
                RTCPeerConnectionEvent::OnTrack(RTCTrackEvent::OnClose(track)) => closed.push(track),
                _ => {}
            }
        }
        let mut media = vec![];
        while let Some(TaggedRTCMessage { message, .. }) = conn.pc.poll_read() {
            match message {
                RTCMessage::RtpPacket(track, packet) => {
                    if let Some(&source) = conn.incoming.get(&track) {
                        media.push((source, packet));
                    }
                }
                RTCMessage::RtcpPacket(_, packets) => {
                    for ssrc in packets.iter().filter_map(|p| keyframe_request(p.as_ref())) {
                        if let Some(name) = conn.sent_as(ssrc) {
                            (conn.sink)(MediaEvent::KeyframeWanted(name.to_string()));
                        }
                    }
                }
                _ => {}
            }
        }
        // Written after the reads: a datagram read can make the connection send.
        while let Some(w) = conn.pc.poll_write() {
            self.out.push((w.message, w.transport.peer_addr));
        }
        let next = conn.pc.poll_timeout().map_or(now + MAX_IDLE, |t| t.min(now + MAX_IDLE));
        if conn.wake.is_none_or(|w| next < w) {
            conn.wake = Some(next);
            self.timers.push(Reverse((next, id)));
        }
        for init in opened {
            self.track_opened(id, init);
        }
        for track in closed {
            if let Some(source) = self.conns.get_mut(&id).and_then(|c| c.incoming.remove(&track)) {
                self.end(source);
            }
        }
        self.apply(id, actions);
        for (source, packet) in media {
            self.fan_out(source, packet, now);
        }
    }

    fn apply(&mut self, id: ConnectionId, actions: Vec<Action>) {
        for action in actions {
            match action {
                Action::Attach { source, name, ssrc, payload_type } => match self.forwards.get_mut(&source) {
                    Some(f) => {
                        f.downstream.retain(|d| d.conn != id);
                        f.downstream.push(Downstream { conn: id, ssrc, payload_type });
                    }
                    None => tracing::debug!(track = %name, "a subscription to a track that has ended"),
                },
                Action::Detach { source } => {
                    if let Some(f) = self.forwards.get_mut(&source) {
                        f.downstream.retain(|d| d.conn != id);
                    }
                }
            }
        }
    }

    fn track_opened(&mut self, id: ConnectionId, init: RTCTrackEventInit) {
        let Some(conn) = self.conns.get_mut(&id) else { return };
        // The crate opens a track again after a renegotiation: it is the same track.
        if conn.incoming.contains_key(&init.track_id) {
            return;
        }
        let Some(receiver) = conn.pc.rtp_receiver(init.receiver_id) else { return };
        let track = receiver.track();
        let kind = match track.kind() {
            RtpCodecKind::Audio => Some(Kind::Audio),
            RtpCodecKind::Video => Some(Kind::Video),
            _ => None,
        };
        let ssrc = track.ssrcs().next();
        let mime_type = ssrc.and_then(|s| track.codec(s)).map(|c| c.mime_type.clone());
        // The publisher chose the audio-level extension's id in its offer.
        let audio_level_ext = match kind {
            Some(Kind::Audio) => {
                conn.pc.remote_description().and_then(|d| codec::extmap_id(&d.sdp, codec::AUDIO_LEVEL_URI))
            }
            _ => None,
        };
        let source = self.ids.fetch_add(1, Ordering::Relaxed);
        conn.incoming.insert(init.track_id.clone(), source);
        self.forwards.insert(
            source,
            Forward {
                owner: id,
                receiver: init.receiver_id,
                media_ssrc: ssrc.unwrap_or(0),
                name: None,
                audio_level_ext,
                level: None,
                paused: false,
                record: None,
                downstream: vec![],
            },
        );
        // The engine is still in use: this is its own loop running.
        let Some(commands) = self.me.upgrade() else { return };
        let track = IncomingTrack {
            source: Source { id: source, worker: Worker { commands } },
            kind,
            mime_type,
            audio_level_ext,
        };
        (conn.sink)(MediaEvent::Track(track));
    }

    /// A publisher's track ended: its owner hears of it if it was accepted.
    fn end(&mut self, source: SourceId) {
        let Some(f) = self.forwards.remove(&source) else { return };
        if let (Some(name), Some(conn)) = (f.name, self.conns.get(&f.owner)) {
            (conn.sink)(MediaEvent::TrackEnded(name));
        }
    }

    /// One publisher packet to every subscriber of its track.
    fn fan_out(&mut self, source: SourceId, packet: rtc::rtp::Packet, now: Instant) {
        let Some(f) = self.forwards.get_mut(&source) else { return };
        let Some(name) = &f.name else { return };
        f.media_ssrc = packet.header.ssrc;
        if f.paused {
            return;
        }
        if let Some(level) = &mut f.level {
            if let Some(ext) = packet.header.get_extension(level.extension_id) {
                level.loudest = level.loudest.min(ext.first().map_or(127, |b| b & 0x7f));
            }
            level.since_report += 1;
            if level.since_report >= LEVEL_EVERY {
                if let Some(owner) = self.conns.get(&f.owner) {
                    (owner.sink)(MediaEvent::AudioLevel(name.clone(), level.loudest));
                }
                (level.loudest, level.since_report) = (127, 0);
            }
        }
        if let Some(tap) = &f.record {
            if let Err(mpsc::error::TrySendError::Closed(_)) = tap.try_send(packet.clone()) {
                f.record = None;
            }
        }
        for d in &f.downstream {
            let Some(conn) = self.conns.get_mut(&d.conn) else { continue };
            let mut copy = packet.clone();
            copy.header.ssrc = d.ssrc;
            copy.header.payload_type = d.payload_type;
            // Extension ids were negotiated with the publisher, not the
            // subscriber: dropped rather than sent wrong.
            copy.header.extension = false;
            copy.header.extensions.clear();
            copy.header.extensions_padding = 0;
            let message = TaggedRTCMessage { now, message: RTCMessage::RtpPacket(String::new(), copy) };
            if conn.pc.handle_write(message).is_ok() {
                while let Some(w) = conn.pc.poll_write() {
                    self.out.push((w.message, w.transport.peer_addr));
                }
            }
        }
    }

    fn request_keyframe(&mut self, source: SourceId, now: Instant) {
        let Some(f) = self.forwards.get(&source) else { return };
        let (owner, receiver, known) = (f.owner, f.receiver, f.media_ssrc);
        let Some(conn) = self.conns.get_mut(&owner) else { return };
        let Some(mut r) = conn.pc.rtp_receiver(receiver) else { return };
        let media_ssrc = if known != 0 { known } else { r.track().ssrcs().next().unwrap_or(0) };
        let pli = PictureLossIndication { sender_ssrc: 0, media_ssrc };
        if let Err(e) = r.write_rtcp(now, vec![Box::new(pli)]) {
            tracing::debug!(error = %e, "keyframe request not sent");
        }
        self.drive(owner, now);
    }

    fn close(&mut self, id: ConnectionId) {
        let Some(mut conn) = self.conns.remove(&id) else { return };
        // Tells the client (DTLS close_notify) rather than let its consent checks time out.
        let _ = conn.pc.close();
        while let Some(w) = conn.pc.poll_write() {
            self.out.push((w.message, w.transport.peer_addr));
        }
        for addr in &conn.addrs {
            self.by_addr.remove(addr);
        }
        self.by_ufrag.remove(&conn.ufrag);
        for s in conn.sending.values() {
            if let Some(f) = self.forwards.get_mut(&s.source) {
                f.downstream.retain(|d| d.conn != id);
            }
        }
        for source in conn.incoming.values() {
            if let Some(Forward { name: Some(name), .. }) = self.forwards.remove(source) {
                (conn.sink)(MediaEvent::TrackEnded(name));
            }
        }
    }

    fn timers(&mut self, now: Instant) {
        while let Some(&Reverse((at, id))) = self.timers.peek() {
            if at > now {
                break;
            }
            self.timers.pop();
            let Some(conn) = self.conns.get_mut(&id) else { continue };
            if conn.wake != Some(at) {
                continue;
            }
            conn.wake = None;
            if let Err(e) = conn.pc.handle_timeout(now) {
                tracing::trace!(error = %e, "a connection's timer failed");
            }
            self.drive(id, now);
        }
    }

    /// Sends what the connections produced, waiting for the socket when its
    /// buffer is full.
    async fn flush(&mut self) {
        let fd = self.socket.as_raw_fd();
        let mut sent = 0;
        while sent < self.out.len() {
            match self.socket.try_io(Interest::WRITABLE, || udp::send_batch(fd, &self.out[sent..])) {
                Ok(n) => sent += n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    if self.socket.writable().await.is_err() {
                        break;
                    }
                }
                // A datagram the kernel refuses (an unreachable address) is dropped, as a network would.
                Err(_) => sent += 1,
            }
        }
        self.out.clear();
    }
}

/// The SSRC a picture loss indication or full intra request asks a keyframe of.
fn keyframe_request(packet: &dyn rtc::rtcp::Packet) -> Option<u32> {
    let any = packet.as_any();
    if let Some(pli) = any.downcast_ref::<PictureLossIndication>() {
        return Some(pli.media_ssrc);
    }
    any.downcast_ref::<FullIntraRequest>().and_then(|fir| fir.fir.first().map(|e| e.ssrc))
}
