//! A light viewer for the room bench: one `rtc` sans-I/O peer connection,
//! its own UDP socket, one task. It completes ICE and DTLS and counts every
//! RTP packet exactly as the full client does (`client::Received::count`),
//! without the `webrtc` crate's per-peer driver, track tasks and channels,
//! so that a few hundred viewers leave most of the two cores to the server
//! under test.
//!
//! Signalling is the caller's, through [`Ops`]: [`Ops::answer`] answers an
//! offer (Staffroom, Janus), [`Ops::offer`] makes a receive-only offer for
//! one video and one audio track (the single-socket prototype). The
//! counting viewer (`counting_viewer.rs`) reuses all of it for its handshake.

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use bytes::BytesMut;
use rtc::{
    interceptor::Registry,
    peer_connection::{
        configuration::{
            interceptor_registry::register_default_interceptors, media_engine::MediaEngine,
            setting_engine::SettingEngineBuilder, RTCConfigurationBuilder,
        },
        event::{RTCPeerConnectionEvent, RTCTrackEvent},
        message::{RTCMessage, TaggedRTCMessage},
        sdp::RTCSessionDescription,
        transport::{CandidateConfig, CandidateHostConfig, RTCIceCandidate, RTCIceCandidateInit},
        RTCPeerConnection, RTCPeerConnectionBuilder,
    },
    rtp_transceiver::{rtp_sender::RtpCodecKind, RTCRtpTransceiverDirection, RTCRtpTransceiverInit},
    sansio::Protocol,
    shared::{TaggedBytesMut, TransportContext, TransportProtocol},
};
use staffroom::media::codec as engine;
use tokio::{
    net::UdpSocket,
    sync::{mpsc, oneshot},
};

use super::client::Received;

/// What signalling asks of a viewer's peer connection.
pub enum Op {
    Answer(String, oneshot::Sender<String>),
    Offer(oneshot::Sender<String>),
    Apply(String),
    Candidate(RTCIceCandidateInit),
}

/// The way to a viewer's peer connection, whatever drives it (a light
/// viewer's task, or a counting viewer's thread, `counting_viewer.rs`).
#[derive(Clone)]
pub struct Ops(Arc<dyn Fn(Op) + Send + Sync>);

impl Ops {
    pub fn new(send: impl Fn(Op) + Send + Sync + 'static) -> Ops {
        Ops(Arc::new(send))
    }

    fn send(&self, op: Op) {
        (self.0)(op)
    }

    /// Applies a remote offer; returns the answer's SDP (with this viewer's candidate).
    pub async fn answer(&self, offer: String) -> String {
        let (tx, rx) = oneshot::channel();
        self.send(Op::Answer(offer, tx));
        rx.await.expect("the viewer answers")
    }

    /// A receive-only offer for one video and one audio track.
    pub async fn offer(&self) -> String {
        let (tx, rx) = oneshot::channel();
        self.send(Op::Offer(tx));
        rx.await.expect("the viewer offers")
    }

    /// Applies the answer to [`Ops::offer`].
    pub fn apply_answer(&self, answer: String) {
        self.send(Op::Apply(answer));
    }
}

pub struct LightViewer {
    pub received: Arc<Mutex<Received>>,
    pub ops: Ops,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for LightViewer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl LightViewer {
    /// A viewer whose socket is bound to `ip` (any port).
    pub async fn new(ip: &str) -> LightViewer {
        let socket = UdpSocket::bind(format!("{ip}:0")).await.expect("a viewer socket");
        let settings = SettingEngineBuilder::new().with_multicast_dns_mode(rtc::ice::mdns::MulticastDnsMode::Disabled);
        let pc = peer_connection(settings, Registry::new()).expect("a viewer peer connection");
        let received = Arc::new(Mutex::new(Received::default()));
        let (ops, op_rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(run(pc, socket, op_rx, received.clone()));
        let ops: mpsc::UnboundedSender<Op> = ops;
        LightViewer {
            received,
            ops: Ops::new(move |op| {
                let _ = ops.send(op);
            }),
            task,
        }
    }
}

/// A sans-I/O peer connection with the room's codecs, the default
/// interceptors after `registry`'s, and `settings`.
pub fn peer_connection(settings: SettingEngineBuilder, registry: Registry) -> anyhow::Result<RTCPeerConnection> {
    let mut media = MediaEngine::default();
    engine::register(&mut media)?;
    let registry = register_default_interceptors(registry, &mut media)?;
    Ok(RTCPeerConnectionBuilder::new()
        .with_configuration(RTCConfigurationBuilder::new().build())
        .with_setting_engine(settings.build())
        .with_media_engine(media)
        .with_interceptor_registry(registry)
        .build(Instant::now())?)
}

/// Adds the one host candidate `local`, and the end of candidates.
pub fn add_host_candidate(pc: &mut RTCPeerConnection, local: SocketAddr) -> anyhow::Result<()> {
    let host = CandidateHostConfig {
        base_config: CandidateConfig {
            network: "udp".to_owned(),
            address: local.ip().to_string(),
            port: local.port(),
            component: 1,
            ..Default::default()
        },
        ..Default::default()
    }
    .new_candidate_host()?;
    pc.add_local_candidate(RTCIceCandidate::from(&host).to_json()?)?;
    pc.add_local_candidate(RTCIceCandidateInit::default())?;
    Ok(())
}

/// This viewer's host candidate, once.
fn host_candidate(pc: &mut RTCPeerConnection, local: SocketAddr, added: &mut bool) {
    if !std::mem::replace(added, true) {
        add_host_candidate(pc, local).expect("a host candidate");
    }
}

/// Does what signalling asks (`op`) of `pc`, whose socket is `local`.
pub fn op(pc: &mut RTCPeerConnection, local: SocketAddr, added: &mut bool, op: Op) {
    let now = Instant::now();
    let sdp = |pc: &RTCPeerConnection| pc.local_description().map(|d| d.sdp.clone()).unwrap_or_default();
    match op {
        Op::Answer(offer, reply) => {
            pc.set_remote_description(now, RTCSessionDescription::offer(offer).unwrap()).expect("the offer applies");
            host_candidate(pc, local, added);
            let answer = pc.create_answer(None).unwrap();
            pc.set_local_description(now, answer).unwrap();
            let _ = reply.send(sdp(pc));
        }
        Op::Offer(reply) => {
            for kind in [RtpCodecKind::Video, RtpCodecKind::Audio] {
                let init =
                    RTCRtpTransceiverInit { direction: RTCRtpTransceiverDirection::Recvonly, ..Default::default() };
                pc.add_transceiver_from_kind(kind, Some(init)).unwrap();
            }
            host_candidate(pc, local, added);
            let offer = pc.create_offer(None).unwrap();
            pc.set_local_description(now, offer).unwrap();
            let _ = reply.send(sdp(pc));
        }
        Op::Apply(answer) => {
            pc.set_remote_description(now, RTCSessionDescription::answer(answer).unwrap()).expect("the answer applies");
        }
        Op::Candidate(c) => {
            let _ = pc.add_remote_candidate(c);
        }
    }
}

async fn run(
    mut pc: RTCPeerConnection,
    socket: UdpSocket,
    mut ops: mpsc::UnboundedReceiver<Op>,
    received: Arc<Mutex<Received>>,
) {
    let local = socket.local_addr().unwrap();
    let mut kinds: HashMap<String, &'static str> = HashMap::new();
    let mut candidate_added = false;
    let mut buf = vec![0u8; 2048];
    let mut writes = vec![];
    loop {
        drain(&mut pc, &mut kinds, &received, &mut writes, |_, _, _, _| {});
        for w in writes.drain(..) {
            let _ = socket.send_to(&w.message, w.transport.peer_addr).await;
        }
        let deadline = pc.poll_timeout().unwrap_or_else(|| Instant::now() + Duration::from_secs(1));
        tokio::select! {
            biased;
            o = ops.recv() => match o {
                Some(o) => op(&mut pc, local, &mut candidate_added, o),
                None => break,
            },
            r = socket.recv_from(&mut buf) => {
                let Ok((n, from)) = r else { break };
                let _ = pc.handle_read(datagram(&buf[..n], local, from, Instant::now()));
            }
            _ = tokio::time::sleep_until(deadline.into()) => {
                let _ = pc.handle_timeout(Instant::now());
            }
        }
    }
    let _ = pc.close();
}

/// Drains `pc`: the datagrams it wants sent go to `writes`; the tracks it
/// opens are noted in `kinds`; the RTP packets it read are counted in
/// `received` (exactly as the full client counts them), and each is shown to
/// `counted` with its track, kind and the counts so far.
pub fn drain(
    pc: &mut RTCPeerConnection,
    kinds: &mut HashMap<String, &'static str>,
    received: &Mutex<Received>,
    writes: &mut Vec<TaggedBytesMut>,
    mut counted: impl FnMut(&str, &'static str, &rtc::rtp::Packet, &Received),
) {
    while let Some(w) = pc.poll_write() {
        writes.push(w);
    }
    while let Some(event) = pc.poll_event() {
        if let RTCPeerConnectionEvent::OnTrack(RTCTrackEvent::OnOpen(init)) = event {
            if let Some(receiver) = pc.rtp_receiver(init.receiver_id) {
                let kind = if receiver.track().kind() == RtpCodecKind::Video { "video" } else { "audio" };
                kinds.insert(init.track_id.clone(), kind);
            }
        }
    }
    let mut packets = vec![];
    while let Some(TaggedRTCMessage { now, message }) = pc.poll_read() {
        if let RTCMessage::RtpPacket(track, packet) = message {
            packets.push((track, packet, now));
        }
    }
    if !packets.is_empty() {
        let mut r = received.lock().unwrap();
        for (track, packet, now) in &packets {
            let kind = kinds.get(track).copied().unwrap_or(if packet.header.payload_type == engine::VP8_PAYLOAD_TYPE {
                "video"
            } else {
                "audio"
            });
            r.count(track, kind, packet, *now);
            counted(track, kind, packet, &r);
        }
    }
}

/// A datagram from `from` to the socket `local`, for `handle_read`.
pub fn datagram(data: &[u8], local: SocketAddr, from: SocketAddr, now: Instant) -> TaggedBytesMut {
    TaggedBytesMut {
        now,
        transport: TransportContext {
            local_addr: local,
            peer_addr: from,
            ecn: None,
            transport_protocol: TransportProtocol::UDP,
        },
        message: BytesMut::from(data),
    }
}

/// A viewer of a Staffroom room: the signalling WebSocket with `room_token`,
/// `join`, then every offer of the server answered and its candidates
/// added, until the returned task is aborted. `None` if it got no welcome
/// within 10 s.
pub async fn join_staffroom(
    url: &str,
    session: i64,
    room_token: &str,
) -> Option<(LightViewer, Instant, tokio::task::JoinHandle<()>)> {
    join_staffroom_as(url, session, room_token, async {
        let viewer = LightViewer::new("127.0.0.1").await;
        let ops = viewer.ops.clone();
        (viewer, ops)
    })
    .await
}

/// [`join_staffroom`] with any viewer: `viewer` makes it (once the
/// WebSocket is open) and the way to its peer connection.
pub async fn join_staffroom_as<V>(
    url: &str,
    session: i64,
    room_token: &str,
    viewer: impl std::future::Future<Output = (V, Ops)>,
) -> Option<(V, Instant, tokio::task::JoinHandle<()>)> {
    use futures::{SinkExt, StreamExt};
    use serde_json::{json, Value};
    use tokio_tungstenite::tungstenite::Message;
    let ws_url = format!("{}/api/rooms/{session}/ws", url.replace("http://", "ws://"));
    let (socket, _) = tokio_tungstenite::connect_async(ws_url).await.ok()?;
    let (mut sink, mut stream) = socket.split();
    let (viewer, ops) = viewer.await;
    let joined_at = Instant::now();
    let join = json!({"v": 1, "type": "join", "token": room_token});
    sink.send(Message::Text(join.to_string().into())).await.ok()?;
    let (welcomed, welcome) = oneshot::channel();
    let task = tokio::spawn(async move {
        let mut welcomed = Some(welcomed);
        while let Some(Ok(frame)) = stream.next().await {
            let Message::Text(text) = frame else { continue };
            let Ok(m) = serde_json::from_str::<Value>(&text) else { continue };
            match m["type"].as_str() {
                Some("welcome") => {
                    if let Some(w) = welcomed.take() {
                        let _ = w.send(());
                    }
                }
                Some("offer") => {
                    let (tx, rx) = oneshot::channel();
                    ops.send(Op::Answer(m["sdp"].as_str().unwrap_or_default().to_string(), tx));
                    let Ok(sdp) = rx.await else { break };
                    let answer = json!({"v": 1, "type": "answer", "sdp": sdp});
                    if sink.send(Message::Text(answer.to_string().into())).await.is_err() {
                        break;
                    }
                }
                Some("candidate") => {
                    if let Ok(c) = serde_json::from_value::<RTCIceCandidateInit>(m["candidate"].clone()) {
                        ops.send(Op::Candidate(c));
                    }
                }
                _ => {}
            }
        }
    });
    match tokio::time::timeout(Duration::from_secs(10), welcome).await {
        Ok(Ok(())) => Some((viewer, joined_at, task)),
        _ => {
            task.abort();
            None
        }
    }
}
