//! A prototype of the single-socket design, for the room bench (issue 4):
//! every peer connection of a room on one UDP socket, driven by one loop on
//! one thread, with the `rtc` crate's sans-I/O peer connections (the same
//! core the `webrtc` crate wraps in a task and a socket per peer).
//!
//! It is not the product's SFU: one publisher, viewers of it, no rooms, no
//! permissions. It exists to measure what the design saves against the
//! per-connection one, with the same clients, stream and interceptors.
//!
//! - Datagrams are routed by source address; an unknown address is learnt
//!   from the ICE username of its first STUN request (`server:client`, the
//!   server part chosen here for each peer).
//! - A publisher's RTP packet is handed to every viewer's connection in a
//!   loop (no channel, no task per viewer); what they produce is sent with
//!   `sendmmsg`, up to 64 datagrams a call.
//! - Timers: each connection's next deadline is kept and checked every 5 ms
//!   (and at least every 100 ms).
//! - A viewer's keyframe request, or a viewer connecting, asks the
//!   publisher for a keyframe, at most every 300 ms.
//!
//! Signalling is plain HTTP: `POST /publish` and `POST /subscribe` take the
//! client's offer SDP and answer with the SDP of the answer.

use std::{
    collections::HashMap,
    net::SocketAddr,
    os::fd::AsRawFd,
    time::{Duration, Instant},
};

use axum::{extract::State, routing::post, Router};
use bytes::BytesMut;
use rtc::{
    interceptor::{Registry, Slot},
    media_stream::MediaStreamTrack,
    peer_connection::{
        configuration::setting_engine::SettingEngineBuilder,
        event::{RTCPeerConnectionEvent, RTCTrackEvent},
        message::{RTCMessage, TaggedRTCMessage},
        sdp::RTCSessionDescription,
        state::RTCPeerConnectionState,
        transport::RTCDtlsRole,
        RTCPeerConnection,
    },
    rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication,
    rtp_transceiver::rtp_sender::{RTCRtpCodingParameters, RTCRtpEncodingParameters, RtpCodecKind},
    sansio::Protocol,
    shared::{TaggedBytesMut, TransportContext, TransportProtocol},
};
use staffroom::media::{codec as engine, interceptors};

use super::light_viewer::{add_host_candidate, peer_connection};
use tokio::{
    io::Interest,
    net::UdpSocket,
    sync::{mpsc, oneshot},
};

enum Role {
    Publisher,
    Viewer,
}

/// A track a viewer receives: the local track's id, its SSRC and the
/// payload type the viewer's answer gave the codec.
#[derive(Clone)]
struct Outbound {
    track: String,
    ssrc: u32,
    payload_type: u8,
}

struct Peer {
    pc: RTCPeerConnection,
    role: Role,
    deadline: Instant,
    connected: bool,
    video: Option<Outbound>,
    audio: Option<Outbound>,
}

pub enum Command {
    Publish(String, oneshot::Sender<Result<String, String>>),
    Subscribe(String, oneshot::Sender<Result<String, String>>),
}

/// The child process's entry (`room --serve-single-socket`): prints
/// `http://127.0.0.1:PORT` and serves until killed. One thread for all.
pub fn serve() {
    serve_with(Sfu::new);
}

/// Which connection a datagram is for: by its source address, or, for an
/// unknown address, by the ICE username of its first STUN request
/// (`server:client`, the server part chosen for each peer and entered in
/// `by_ufrag`), which teaches the address.
#[derive(Default)]
pub struct Routes {
    by_addr: HashMap<SocketAddr, usize>,
    pub by_ufrag: HashMap<String, usize>,
}

impl Routes {
    pub fn route(&mut self, data: &[u8], from: SocketAddr) -> Option<usize> {
        if let Some(&idx) = self.by_addr.get(&from) {
            return Some(idx);
        }
        let idx = *self.by_ufrag.get(stun_username(data)?.split(':').next()?)?;
        self.by_addr.insert(from, idx);
        Some(idx)
    }
}

/// Keyframe requests to the publisher: wanted when a viewer connects or
/// asks, sent at most every 300 ms.
pub struct Keyframes {
    pub wanted: bool,
    last: Instant,
}

impl Default for Keyframes {
    fn default() -> Keyframes {
        Keyframes { wanted: false, last: Instant::now() }
    }
}

impl Keyframes {
    /// Whether to ask now (and if so, the request counts as made).
    pub fn due(&mut self) -> bool {
        if !self.wanted || self.last.elapsed() < Duration::from_millis(300) {
            return false;
        }
        self.wanted = false;
        self.last = Instant::now();
        true
    }
}

/// What a prototype's loop does with its inputs (this one's, and
/// `str0m_socket.rs`'s on str0m): [`serve_with`] runs the loop.
pub trait Engine {
    /// A datagram as the connections produce it.
    type Datagram: std::ops::Deref<Target = [u8]>;
    fn command(&mut self, command: Command);
    /// Every 5 ms: the connections whose deadline has passed.
    fn timers(&mut self);
    fn datagram(&mut self, data: &[u8], from: SocketAddr);
    /// After each wake-up, before the datagrams go out.
    fn ask_keyframe(&mut self);
    /// What the connections produced since the last flush.
    fn out(&mut self) -> &mut Vec<(Self::Datagram, SocketAddr)>;
}

/// What both prototypes run: the UDP socket, the HTTP signalling on the
/// same thread, and one loop that hands `engine` (made with the socket's
/// address) every signalling request, datagram and timer tick, and sends
/// what it produced.
pub fn serve_with<E: Engine>(engine: impl FnOnce(SocketAddr) -> E) {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let http = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (tx, rx) = mpsc::unbounded_channel();
        let app = Router::new()
            .route(
                "/publish",
                post(|State(tx): State<mpsc::UnboundedSender<Command>>, sdp: String| ask(tx, sdp, Command::Publish)),
            )
            .route(
                "/subscribe",
                post(|State(tx): State<mpsc::UnboundedSender<Command>>, sdp: String| ask(tx, sdp, Command::Subscribe)),
            )
            .with_state(tx);
        println!("http://{}", http.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(http, app).await.unwrap() });
        run(engine(socket.local_addr().unwrap()), socket, rx).await;
    });
}

async fn run(mut engine: impl Engine, socket: UdpSocket, mut commands: mpsc::UnboundedReceiver<Command>) {
    let mut tick = tokio::time::interval(Duration::from_millis(5));
    let mut buf = vec![0u8; 2048];
    loop {
        tokio::select! {
            Some(command) = commands.recv() => engine.command(command),
            _ = tick.tick() => engine.timers(),
            Ok(()) = socket.readable() => {
                loop {
                    match socket.try_recv_from(&mut buf) {
                        Ok((n, from)) => engine.datagram(&buf[..n], from),
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                        Err(_) => break,
                    }
                }
            }
        }
        engine.ask_keyframe();
        flush(&socket, engine.out()).await;
    }
}

async fn ask(
    tx: mpsc::UnboundedSender<Command>,
    sdp: String,
    command: fn(String, oneshot::Sender<Result<String, String>>) -> Command,
) -> Result<String, (axum::http::StatusCode, String)> {
    let (reply, answer) = oneshot::channel();
    let _ = tx.send(command(sdp, reply));
    let bad = |e: String| (axum::http::StatusCode::BAD_REQUEST, e);
    answer.await.map_err(|e| bad(e.to_string()))?.map_err(bad)
}

struct Sfu {
    local: SocketAddr,
    peers: Vec<Peer>,
    routes: Routes,
    publisher: Option<usize>,
    /// The publisher's video SSRC, to ask for keyframes.
    publisher_video: Option<u32>,
    /// Payload types of the publisher's VP8 and Opus.
    publisher_pts: (u8, u8),
    keyframes: Keyframes,
    out: Vec<(BytesMut, SocketAddr)>,
}

impl Sfu {
    fn new(local: SocketAddr) -> Sfu {
        Sfu {
            local,
            peers: vec![],
            routes: Routes::default(),
            publisher: None,
            publisher_video: None,
            publisher_pts: (engine::VP8_PAYLOAD_TYPE, engine::OPUS_PAYLOAD_TYPE),
            keyframes: Keyframes::default(),
            out: Vec::with_capacity(1024),
        }
    }

    fn command(&mut self, command: Command) {
        let (sdp, reply, role) = match command {
            Command::Publish(sdp, reply) => (sdp, reply, Role::Publisher),
            Command::Subscribe(sdp, reply) => (sdp, reply, Role::Viewer),
        };
        let _ = reply.send(self.add_peer(sdp, role).map_err(|e| e.to_string()));
    }

    fn add_peer(&mut self, offer: String, role: Role) -> anyhow::Result<String> {
        let idx = self.peers.len();
        let ufrag = format!("sfu{idx:08x}");
        let settings = SettingEngineBuilder::new()
            .with_answering_dtls_role(RTCDtlsRole::Server)
            .with_multicast_dns_mode(rtc::ice::mdns::MulticastDnsMode::Disabled)
            .with_prflx_acceptance_min_wait(Some(Duration::ZERO))
            .with_ice_credentials(ufrag.clone(), format!("{ufrag}-password-0123456789"));
        let keyframes = Registry::new().with(Slot::from(14_000), interceptors::KeyframeRequests::default());
        let mut pc = peer_connection(settings, keyframes)?;
        let now = Instant::now();
        let mut tracks = vec![];
        if matches!(role, Role::Viewer) {
            for (codec, kind) in engine::codecs() {
                let ssrc = rand::random::<u32>();
                let id = format!("{kind}-{idx}");
                let track = MediaStreamTrack::new(
                    format!("presenter-{idx}"),
                    id.clone(),
                    id.clone(),
                    kind,
                    vec![RTCRtpEncodingParameters {
                        rtp_coding_parameters: RTCRtpCodingParameters { ssrc: Some(ssrc), ..Default::default() },
                        codec: codec.rtp_codec.clone(),
                        ..Default::default()
                    }],
                );
                pc.add_track(track)?;
                tracks.push((kind, id, ssrc, codec.rtp_codec.mime_type.clone()));
            }
        }
        pc.set_remote_description(now, RTCSessionDescription::offer(offer)?)?;
        add_host_candidate(&mut pc, self.local)?;
        let answer = pc.create_answer(None)?;
        pc.set_local_description(now, answer)?;
        let sdp = pc.local_description().map(|d| d.sdp.clone()).unwrap_or_default();
        let pt = |mime: &str| payload_type(&sdp, mime.split('/').nth(1).unwrap_or(mime));
        let mut peer = Peer { pc, role, deadline: now, connected: false, video: None, audio: None };
        for (kind, track, ssrc, mime) in tracks {
            let out = Outbound { track, ssrc, payload_type: pt(&mime).unwrap_or(0) };
            match kind {
                RtpCodecKind::Video => peer.video = Some(out),
                _ => peer.audio = Some(out),
            }
        }
        if matches!(peer.role, Role::Publisher) {
            self.publisher = Some(idx);
            self.publisher_pts = (
                pt(engine::VP8).unwrap_or(engine::VP8_PAYLOAD_TYPE),
                pt(engine::OPUS).unwrap_or(engine::OPUS_PAYLOAD_TYPE),
            );
        }
        self.peers.push(peer);
        self.routes.by_ufrag.insert(ufrag, idx);
        self.drive(idx, Instant::now());
        Ok(sdp)
    }

    fn datagram(&mut self, data: &[u8], from: SocketAddr) {
        let Some(idx) = self.routes.route(data, from) else { return };
        let now = Instant::now();
        let msg = TaggedBytesMut {
            now,
            transport: TransportContext {
                local_addr: self.local,
                peer_addr: from,
                ecn: None,
                transport_protocol: TransportProtocol::UDP,
            },
            message: BytesMut::from(data),
        };
        if self.peers[idx].pc.handle_read(msg).is_ok() {
            self.drive(idx, now);
        }
    }

    /// Drains one connection: what it sends, its events, what it read
    /// (a publisher's media is fanned out here); then its next deadline.
    fn drive(&mut self, idx: usize, now: Instant) {
        let mut media = vec![];
        {
            let peer = &mut self.peers[idx];
            while let Some(w) = peer.pc.poll_write() {
                self.out.push((w.message, w.transport.peer_addr));
            }
            while let Some(event) = peer.pc.poll_event() {
                match event {
                    RTCPeerConnectionEvent::OnConnectionStateChangeEvent(RTCPeerConnectionState::Connected) => {
                        peer.connected = true;
                        self.keyframes.wanted = true;
                    }
                    RTCPeerConnectionEvent::OnTrack(RTCTrackEvent::OnOpen(init)) => {
                        if let Some(receiver) = peer.pc.rtp_receiver(init.receiver_id) {
                            let track = receiver.track();
                            if track.kind() == RtpCodecKind::Video {
                                self.publisher_video = track.ssrcs().last();
                            }
                        }
                    }
                    _ => {}
                }
            }
            while let Some(TaggedRTCMessage { message, .. }) = peer.pc.poll_read() {
                match message {
                    RTCMessage::RtpPacket(_, packet) if matches!(peer.role, Role::Publisher) => media.push(packet),
                    RTCMessage::RtcpPacket(_, packets)
                        if packets.iter().any(|p| interceptors::is_keyframe_request(p.as_ref())) =>
                    {
                        self.keyframes.wanted = true;
                    }
                    _ => {}
                }
            }
            peer.deadline = peer
                .pc
                .poll_timeout()
                .unwrap_or(now + Duration::from_millis(100))
                .min(now + Duration::from_millis(100));
        }
        for packet in media {
            self.fan_out(packet, now);
        }
    }

    /// One publisher packet to every connected viewer, in a loop.
    fn fan_out(&mut self, packet: rtc::rtp::Packet, now: Instant) {
        let video = packet.header.payload_type == self.publisher_pts.0;
        for peer in self.peers.iter_mut() {
            let Some(out) = (if video { &peer.video } else { &peer.audio }) else { continue };
            if !peer.connected {
                continue;
            }
            let mut copy = packet.clone();
            copy.header.ssrc = out.ssrc;
            copy.header.payload_type = out.payload_type;
            copy.header.extension = false;
            copy.header.extensions.clear();
            let message = TaggedRTCMessage { now, message: RTCMessage::RtpPacket(out.track.clone(), copy) };
            if peer.pc.handle_write(message).is_ok() {
                while let Some(w) = peer.pc.poll_write() {
                    self.out.push((w.message, w.transport.peer_addr));
                }
            }
        }
    }

    fn timers(&mut self) {
        let now = Instant::now();
        for idx in 0..self.peers.len() {
            if self.peers[idx].deadline <= now {
                let _ = self.peers[idx].pc.handle_timeout(now);
                self.drive(idx, now);
            }
        }
    }

    fn ask_keyframe(&mut self) {
        let (Some(publisher), Some(media_ssrc)) = (self.publisher, self.publisher_video) else { return };
        if !self.keyframes.due() {
            return;
        }
        let pc = &mut self.peers[publisher].pc;
        let receivers: Vec<_> = pc.get_receivers().collect();
        for id in receivers {
            if let Some(mut receiver) = pc.rtp_receiver(id) {
                if receiver.track().ssrcs().any(|s| s == media_ssrc) {
                    let pli = PictureLossIndication { sender_ssrc: 0, media_ssrc };
                    let _ = receiver.write_rtcp(Instant::now(), vec![Box::new(pli)]);
                }
            }
        }
        self.drive(publisher, Instant::now());
    }
}

impl Engine for Sfu {
    type Datagram = BytesMut;
    fn command(&mut self, command: Command) {
        Sfu::command(self, command);
    }
    fn timers(&mut self) {
        Sfu::timers(self);
    }
    fn datagram(&mut self, data: &[u8], from: SocketAddr) {
        Sfu::datagram(self, data, from);
    }
    fn ask_keyframe(&mut self) {
        Sfu::ask_keyframe(self);
    }
    fn out(&mut self) -> &mut Vec<(BytesMut, SocketAddr)> {
        &mut self.out
    }
}

/// Sends `out`, 64 datagrams a `sendmmsg`, waiting for the socket when its
/// buffer is full; leaves `out` empty.
async fn flush<B: std::ops::Deref<Target = [u8]>>(socket: &UdpSocket, out: &mut Vec<(B, SocketAddr)>) {
    let mut sent = 0;
    while sent < out.len() {
        let batch = &out[sent..(sent + 64).min(out.len())];
        if socket.writable().await.is_err() {
            break;
        }
        match socket.try_io(Interest::WRITABLE, || sendmmsg(socket.as_raw_fd(), batch)) {
            Ok(n) => sent += n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(_) => sent += 1, // A datagram the kernel refuses is dropped, as a network would.
        }
    }
    out.clear();
}

fn sendmmsg<B: std::ops::Deref<Target = [u8]>>(fd: i32, batch: &[(B, SocketAddr)]) -> std::io::Result<usize> {
    // Every peer of the prototype is on 127.0.0.1 (IPv4).
    let addrs: Vec<libc::sockaddr_in> = batch
        .iter()
        .map(|(_, to)| {
            let ip = match to.ip() {
                std::net::IpAddr::V4(ip) => ip,
                std::net::IpAddr::V6(_) => std::net::Ipv4Addr::LOCALHOST,
            };
            libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: to.port().to_be(),
                sin_addr: libc::in_addr { s_addr: u32::from(ip).to_be() },
                sin_zero: [0; 8],
            }
        })
        .collect();
    let mut iovs: Vec<libc::iovec> = batch
        .iter()
        .map(|(data, _)| libc::iovec { iov_base: data.as_ptr() as *mut libc::c_void, iov_len: data.len() })
        .collect();
    let mut msgs: Vec<libc::mmsghdr> = iovs
        .iter_mut()
        .zip(&addrs)
        .map(|(iov, addr)| {
            // SAFETY: an all-zero mmsghdr is valid; the fields set point to locals that outlive the call.
            let mut m: libc::mmsghdr = unsafe { std::mem::zeroed() };
            m.msg_hdr.msg_name = (addr as *const libc::sockaddr_in).cast_mut().cast();
            m.msg_hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_in>() as u32;
            m.msg_hdr.msg_iov = iov;
            m.msg_hdr.msg_iovlen = 1;
            m
        })
        .collect();
    // SAFETY: msgs, iovs, addrs and batch outlive the call.
    let n = unsafe { libc::sendmmsg(fd, msgs.as_mut_ptr(), msgs.len() as u32, 0) };
    if n < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// The USERNAME of a STUN message (RFC 8489), if `data` is one that has it.
fn stun_username(data: &[u8]) -> Option<&str> {
    if data.len() < 20 || data[0] > 1 || data[4..8] != [0x21, 0x12, 0xA4, 0x42] {
        return None;
    }
    let mut at = 20;
    while at + 4 <= data.len() {
        let kind = u16::from_be_bytes([data[at], data[at + 1]]);
        let len = usize::from(u16::from_be_bytes([data[at + 2], data[at + 3]]));
        let value = data.get(at + 4..at + 4 + len)?;
        if kind == 0x0006 {
            return std::str::from_utf8(value).ok();
        }
        at += 4 + len.div_ceil(4) * 4;
    }
    None
}

/// The payload type an SDP gives `codec` (`a=rtpmap:PT VP8/90000`).
pub fn payload_type(sdp: &str, codec: &str) -> Option<u8> {
    sdp.lines().find_map(|l| {
        let (pt, rest) = l.trim().strip_prefix("a=rtpmap:")?.split_once(' ')?;
        rest.to_ascii_lowercase().starts_with(&format!("{}/", codec.to_ascii_lowercase())).then(|| pt.parse().ok())?
    })
}

/// Client side, for the bench: offers as a publisher with `peer`'s tracks
/// and applies the answer.
pub async fn publish(url: &str, peer: &super::client::MediaPeer) {
    offer_and_apply(url, "publish", peer).await;
}

/// Client side: a viewer's recvonly offer for one video and one audio track.
pub async fn subscribe(url: &str, peer: &super::client::MediaPeer) {
    use rtc::rtp_transceiver::{RTCRtpTransceiverDirection, RTCRtpTransceiverInit};
    for kind in [RtpCodecKind::Video, RtpCodecKind::Audio] {
        let init = RTCRtpTransceiverInit { direction: RTCRtpTransceiverDirection::Recvonly, ..Default::default() };
        peer.pc.add_transceiver_from_kind(kind, Some(init)).await.unwrap();
    }
    offer_and_apply(url, "subscribe", peer).await;
}

/// Client side: a light viewer (`light_viewer.rs`) or a counting viewer
/// (`counting_viewer.rs`), through its `ops`, offers to receive.
pub async fn subscribe_light(url: &str, ops: &super::light_viewer::Ops) {
    let offer = ops.offer().await;
    ops.apply_answer(answer_to(url, "subscribe", offer).await);
}

async fn answer_to(url: &str, path: &str, offer: String) -> String {
    let res = reqwest::Client::new().post(format!("{url}/{path}")).body(offer).send().await.unwrap();
    let status = res.status();
    let answer = res.text().await.unwrap();
    assert!(status.is_success(), "the prototype refused the offer: {answer}");
    answer
}

async fn offer_and_apply(url: &str, path: &str, peer: &super::client::MediaPeer) {
    let offer = peer.pc.create_offer(None).await.unwrap();
    peer.pc.set_local_description(offer).await.unwrap();
    let sdp = peer.pc.local_description().await.unwrap().sdp;
    let answer = answer_to(url, path, sdp).await;
    peer.pc
        .set_remote_description(webrtc::peer_connection::RTCSessionDescription::answer(answer).unwrap())
        .await
        .expect("the prototype's answer applies");
}
