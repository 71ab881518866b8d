//! A room client built on the same WebRTC crate as the server: it speaks the
//! signalling protocol over a real WebSocket, answers the server's offers,
//! trickles candidates, publishes generated VP8 and Opus, and counts what it
//! receives.

use std::{
    collections::{HashMap, VecDeque},
    sync::{
        atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use futures::{SinkExt, StreamExt};
use rtc::{
    interceptor::Slot,
    media_stream::MediaStreamTrack,
    rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication,
    rtp_transceiver::{
        rtp_sender::{RTCRtpCodingParameters, RTCRtpEncodingParameters, RtpCodecKind},
        RTCRtpTransceiverDirection, RTCRtpTransceiverInit,
    },
};
use serde_json::{json, Value};
use staffroom::media::{codec as engine, interceptors::KeyframeRequests};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::{protocol::CloseFrame, Message};
use webrtc::{
    media_stream::{
        track_local::{static_rtp::TrackLocalStaticRTP, TrackLocal, TrackLocalEvent},
        track_remote::{TrackRemote, TrackRemoteEvent},
    },
    peer_connection::{
        register_default_interceptors, MediaEngine, PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler,
        RTCIceCandidateInit, RTCPeerConnectionIceEvent, RTCSessionDescription, Registry, SettingEngineBuilder,
    },
};

/// What one client has received over media.
#[derive(Default, Debug)]
pub struct Received {
    /// RTP packets per track id (the server's track id is the track's id).
    pub packets: HashMap<String, u64>,
    pub kinds: HashMap<String, &'static str>,
    /// Video packets that start a VP8 keyframe.
    pub keyframes: u64,
    /// Video packets whose VP8 payload descriptor is not what was sent.
    pub bad_vp8: u64,
    /// RTP payload bytes, all tracks.
    pub bytes: u64,
    /// Packets missing from the sequence numbers seen, all tracks.
    pub gaps: u64,
    pub first_packet: Option<Instant>,
    /// The first video packet that starts a keyframe: when a decoder could start.
    pub first_keyframe: Option<Instant>,
    /// The highest sequence number seen per track, for the gaps.
    last_seq: HashMap<String, u16>,
}

impl Received {
    /// Counts one RTP packet of track `id` (`kind` "video" or "audio") that arrived at `now`.
    pub fn count(&mut self, id: &str, kind: &'static str, packet: &rtc::rtp::Packet, now: Instant) {
        let seq = packet.header.sequence_number;
        self.first_packet.get_or_insert(now);
        *self.packets.entry(id.to_string()).or_default() += 1;
        self.kinds.entry(id.to_string()).or_insert(kind);
        self.bytes += packet.payload.len() as u64;
        let last_seq = self.last_seq.get(id).copied();
        if let Some(last) = last_seq {
            // Ahead by less than half the sequence space: anything skipped is lost.
            let ahead = seq.wrapping_sub(last);
            if (2..0x8000).contains(&ahead) {
                self.gaps += u64::from(ahead - 1);
            }
        }
        if last_seq.is_none_or(|last| seq.wrapping_sub(last) < 0x8000) {
            self.last_seq.insert(id.to_string(), seq);
        }
        if kind == "video" {
            // Sent: 0x10 on a frame's first packet, 0x00 on the rest (HD stream).
            if packet.payload.first().is_none_or(|b| b & !0x10 != 0) {
                self.bad_vp8 += 1;
            }
            if is_vp8_keyframe(&packet.payload) {
                self.keyframes += 1;
                self.first_keyframe.get_or_insert(now);
            }
        }
    }

    pub fn packets_of(&self, kind: &str) -> u64 {
        self.packets.iter().filter(|(t, _)| self.kinds.get(*t) == Some(&kind)).map(|(_, n)| n).sum()
    }
}

/// What a publishing client sends.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Stream {
    /// 33 small VP8 packets and 50 Opus packets a second, keyframes only when
    /// asked: cheap, for the functional tests.
    #[default]
    Light,
    /// 720p-like, about 1.3 Mbps: 30 VP8 frames a second of 4 or 5 packets of
    /// 1,150 bytes (130 packets/s), a 30-packet keyframe every 2 s and on
    /// request, and 50 Opus packets a second: for the benchmarks.
    Hd,
}

/// VP8 payload bytes per packet of the [`Stream::Hd`] stream.
pub const HD_PAYLOAD: usize = 1150;

enum Command {
    Raw(Message),
    Publish(Source),
    PublishOnOffer(Stream, Crossing),
}

/// What a publishing client sends: generated media, or a real clip.
pub enum Source {
    Generated(Stream),
    Clip(Arc<Clip>),
}

/// A real encoded clip to publish, made by ffmpeg: VP8 frames at 30 a second
/// and 20 ms Opus packets.
pub struct Clip {
    pub video: Vec<bytes::Bytes>,
    pub audio: Vec<bytes::Bytes>,
    /// Until this is notified, the publisher sends only the first keyframe
    /// and audio packet over and over (so the tracks are up and flowing);
    /// then it plays the clip from its start.
    pub go: tokio::sync::Notify,
}

impl Clip {
    /// Encodes `seconds` of a test pattern and a tone with ffmpeg (a keyframe
    /// every second) and reads the frames back.
    pub fn make(dir: &std::path::Path, seconds: u32) -> Clip {
        use rtc::media::io::{ivf_reader::IVFReader, ogg_reader::OggReader};
        let (ivf, ogg) = (dir.join("clip.ivf"), dir.join("clip.ogg"));
        let t = seconds.to_string();
        let status = std::process::Command::new("ffmpeg")
            .args(["-v", "error", "-y", "-f", "lavfi", "-t", &t, "-i", "testsrc=size=320x240:rate=30"])
            .args(["-f", "lavfi", "-t", &t, "-i", "sine=frequency=440:sample_rate=48000"])
            .args(["-map", "0:v", "-c:v", "libvpx", "-g", "30", "-b:v", "300k", "-deadline", "realtime"])
            .arg(&ivf)
            .args(["-map", "1:a", "-c:a", "libopus", "-page_duration", "20000", "-ac", "2"])
            .arg(&ogg)
            .status()
            .expect("ffmpeg runs (Debian's ffmpeg: .ci/run installs it)");
        assert!(status.success(), "ffmpeg encoded the clip");
        let (mut reader, _) = IVFReader::new(std::fs::File::open(&ivf).unwrap()).unwrap();
        let mut video = vec![];
        while let Ok((frame, _)) = reader.parse_next_frame() {
            video.push(frame.freeze());
        }
        let (mut reader, _) = OggReader::new(std::fs::File::open(&ogg).unwrap(), true).unwrap();
        let mut audio = vec![];
        while let Ok((page, _)) = reader.parse_next_page() {
            if !page.starts_with(b"OpusTags") {
                audio.push(page.freeze());
            }
        }
        Clip { video, audio, go: tokio::sync::Notify::new() }
    }
}

/// How a publish made when the server's next offer arrives meets that offer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Crossing {
    /// Our offer goes out before we take in the server's: the two cross
    /// (glare). We are the polite peer: ours is rolled back, and made again
    /// once the server's is answered.
    Offer,
    /// Our offer goes out as if it were the answer to the server's, and the
    /// server's is never applied: what a page did that labelled descriptions
    /// by the code path that made them.
    OfferAsAnswer,
}

pub struct Client {
    /// The room token `join` carries.
    token: Option<String>,
    commands: mpsc::UnboundedSender<Command>,
    messages: mpsc::UnboundedReceiver<Value>,
    /// Non-media messages seen so far and not yet taken by `expect`.
    seen: VecDeque<Value>,
    pub received: Arc<Mutex<Received>>,
    /// Keyframe requests (PLI) that reached this client's published video.
    pub keyframe_requests: Arc<AtomicU32>,
    /// RTP packets this client has published (audio and video).
    pub sent: Arc<AtomicU64>,
    /// The audio level its published audio carries: 0 loudest, 127 silence.
    pub loudness: Arc<AtomicU8>,
    pub closed: Arc<Mutex<Option<(u16, String)>>>,
    pub joined_at: Instant,
    /// The video track received, to ask its sender for a keyframe.
    video: VideoSlot,
}

type VideoSlot = Arc<Mutex<Option<Arc<dyn TrackRemote>>>>;

/// Connects to the signalling socket; `None` for the token leaves it out.
/// Sends JSON messages on a client's socket from anywhere.
pub struct Sender(mpsc::UnboundedSender<Command>);

impl Sender {
    pub fn send(&self, value: Value) -> Result<(), ()> {
        self.0.send(Command::Raw(Message::Text(value.to_string().into()))).map_err(|_| ())
    }
}

pub async fn connect(base_url: &str, session_id: i64, token: Option<&str>) -> Client {
    // The token goes in `join` (see `Client::join`), never in the URL.
    let url = format!("{}/api/rooms/{session_id}/ws", base_url.replace("http://", "ws://"));
    let (socket, _) = tokio_tungstenite::connect_async(url).await.expect("the WebSocket upgrade succeeds");
    let (commands, command_rx) = mpsc::unbounded_channel();
    let (message_tx, messages) = mpsc::unbounded_channel();
    let received = Arc::new(Mutex::new(Received::default()));
    let keyframe_requests = Arc::new(AtomicU32::new(0));
    let sent = Arc::new(AtomicU64::new(0));
    let loudness = Arc::new(AtomicU8::new(127));
    let closed = Arc::new(Mutex::new(None));
    let video = Arc::new(Mutex::new(None));
    tokio::spawn(drive(
        socket,
        command_rx,
        message_tx,
        (received.clone(), video.clone()),
        (keyframe_requests.clone(), sent.clone(), loudness.clone()),
        closed.clone(),
    ));
    Client {
        token: token.map(str::to_string),
        commands,
        messages,
        seen: VecDeque::new(),
        received,
        keyframe_requests,
        sent,
        loudness,
        closed,
        joined_at: Instant::now(),
        video,
    }
}

impl Client {
    pub fn send(&self, value: Value) {
        let _ = self.commands.send(Command::Raw(Message::Text(value.to_string().into())));
    }

    /// Whether the server has closed the connection.
    pub fn is_closed(&self) -> bool {
        self.closed.lock().unwrap().is_some()
    }

    /// A handle that sends messages from another task.
    pub fn sender(&self) -> Sender {
        Sender(self.commands.clone())
    }

    pub fn send_raw(&self, message: Message) {
        let _ = self.commands.send(Command::Raw(message));
    }

    /// Sends `join` with the room token and returns the welcome.
    pub async fn join(&mut self) -> Value {
        self.send_join();
        self.expect("welcome", |m| m["type"] == "welcome").await
    }

    /// Sends `join` with the room token (if any), without waiting.
    pub fn send_join(&mut self) {
        self.joined_at = Instant::now();
        let mut join = json!({"v": 1, "type": "join"});
        if let Some(token) = &self.token {
            join["token"] = token.as_str().into();
        }
        self.send(join);
    }

    /// Sends `join` and waits for the server to close the connection
    /// instead: the close code and reason.
    pub async fn refused(&mut self) -> (u16, String) {
        self.send_join();
        self.closed().await
    }

    /// Adds a VP8 and an Opus track, offers them, and streams generated media.
    pub fn publish(&self) {
        self.publish_stream(Stream::Light);
    }

    /// As [`Client::publish`], with the given stream.
    pub fn publish_stream(&self, stream: Stream) {
        let _ = self.commands.send(Command::Publish(Source::Generated(stream)));
    }

    /// Adds a VP8 and an Opus track, offers them, and plays `clip` once, in real time.
    pub fn publish_clip(&self, clip: Arc<Clip>) {
        let _ = self.commands.send(Command::Publish(Source::Clip(clip)));
    }

    /// Publishes when the server's next offer arrives, meeting it as `crossing` says.
    pub fn publish_on_next_offer(&self, crossing: Crossing) {
        let _ = self.commands.send(Command::PublishOnOffer(Stream::Light, crossing));
    }

    /// Asks the sender of the received video for a keyframe, as a decoder
    /// that lost its reference frame does.
    pub async fn request_keyframe(&self) {
        let track = self.video.lock().unwrap().clone().expect("a video track received");
        let media_ssrc = track.ssrcs().await[0];
        track.write_rtcp(vec![Box::new(PictureLossIndication { sender_ssrc: 0, media_ssrc })]).await.unwrap();
    }

    /// Waits for a server message matching `pred`, skipping (but keeping) others.
    pub async fn expect(&mut self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        if let Some(i) = self.seen.iter().position(&pred) {
            return self.seen.remove(i).unwrap();
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            match tokio::time::timeout_at(deadline, self.messages.recv()).await {
                Ok(Some(m)) if pred(&m) => return m,
                Ok(Some(m)) => self.seen.push_back(m),
                Ok(None) => panic!(
                    "the connection closed ({:?}) while waiting for {what}; seen {:?}",
                    self.closed.lock().unwrap(),
                    self.seen
                ),
                Err(_) => panic!("timed out waiting for {what}; seen {:?}", self.seen),
            }
        }
    }

    /// The next error message.
    pub async fn error(&mut self) -> Value {
        self.expect("an error", |m| m["type"] == "error").await
    }

    /// Waits for the server to close the socket; returns the close code and reason.
    pub async fn closed(&mut self) -> (u16, String) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(c) = self.closed.lock().unwrap().clone() {
                return c;
            }
            assert!(Instant::now() < deadline, "the server did not close the connection");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// All messages seen so far (kept and new), without waiting.
    pub fn drain(&mut self) -> Vec<Value> {
        while let Ok(m) = self.messages.try_recv() {
            self.seen.push_back(m);
        }
        self.seen.iter().cloned().collect()
    }
}

enum Event {
    Candidate(RTCPeerConnectionIceEvent),
    Track(Arc<dyn TrackRemote>),
}

struct Handler(mpsc::UnboundedSender<Event>);

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Handler {
    async fn on_ice_candidate(&self, event: RTCPeerConnectionIceEvent) {
        let _ = self.0.send(Event::Candidate(event));
    }
    async fn on_track(&self, track: Arc<dyn TrackRemote>) {
        let _ = self.0.send(Event::Track(track));
    }
}

async fn peer(events: mpsc::UnboundedSender<Event>) -> Arc<dyn PeerConnection> {
    peer_on(events, "127.0.0.1:0").await
}

async fn peer_on(events: mpsc::UnboundedSender<Event>, addr: &str) -> Arc<dyn PeerConnection> {
    let mut media = MediaEngine::default();
    for (codec, kind) in engine::codecs() {
        media.register_codec(codec, kind).unwrap();
    }
    let level =
        rtc::rtp_transceiver::rtp_sender::RTCRtpHeaderExtensionCapability { uri: engine::AUDIO_LEVEL_URI.into() };
    media.register_header_extension(level, RtpCodecKind::Audio, None).unwrap();
    let registry = register_default_interceptors(Registry::new(), &mut media).unwrap();
    // Last in the chain: hands keyframe requests to the application.
    let registry = registry.with(Slot::from(14_000), KeyframeRequests::default());
    let settings = SettingEngineBuilder::new().with_multicast_dns_mode(rtc::ice::mdns::MulticastDnsMode::Disabled);
    let pc = PeerConnectionBuilder::new()
        .with_media_engine(media)
        .with_setting_engine(settings.build())
        .with_interceptor_registry(registry)
        .with_handler(Arc::new(Handler(events)))
        .with_udp_addrs(vec![addr.to_string()])
        .build()
        .await
        .expect("a client peer connection");
    Arc::new(pc)
}

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn drive(
    socket: Socket,
    mut commands: mpsc::UnboundedReceiver<Command>,
    messages: mpsc::UnboundedSender<Value>,
    (received, video): (Arc<Mutex<Received>>, VideoSlot),
    (keyframe_requests, sent, loudness): (Arc<AtomicU32>, Arc<AtomicU64>, Arc<AtomicU8>),
    closed: Arc<Mutex<Option<(u16, String)>>>,
) {
    let (mut sink, mut stream) = socket.split();
    let (event_tx, mut events) = mpsc::unbounded_channel();
    let mut pc: Option<Arc<dyn PeerConnection>> = None;
    let stop = Arc::new(AtomicBool::new(false));
    // Our offer awaits the server's answer.
    let mut offering = false;
    let mut on_offer: Option<(Stream, Crossing)> = None;
    let counters = (keyframe_requests, sent, loudness);
    loop {
        tokio::select! {
            frame = stream.next() => {
                let text = match frame {
                    Some(Ok(Message::Text(t))) => t.to_string(),
                    Some(Ok(Message::Close(frame))) => {
                        let (code, reason) = frame.map(|f: CloseFrame| (u16::from(f.code), f.reason.to_string())).unwrap_or((1005, String::new()));
                        *closed.lock().unwrap() = Some((code, reason));
                        break;
                    }
                    Some(Ok(_)) => continue,
                    None | Some(Err(_)) => {
                        closed.lock().unwrap().get_or_insert((1006, String::new()));
                        break;
                    }
                };
                let m: Value = serde_json::from_str(&text).expect("the server sends JSON");
                assert_eq!(m["v"], 1, "every server message carries the version: {m}");
                match m["type"].as_str() {
                    Some("offer") => {
                        let pc = match &pc { Some(pc) => pc.clone(), None => { let p = peer(event_tx.clone()).await; pc = Some(p.clone()); p } };
                        if let Some((stream, crossing)) = on_offer.take() {
                            let mut ours = publish(&pc, Source::Generated(stream), &counters, &stop).await;
                            offering = true;
                            if crossing == Crossing::OfferAsAnswer {
                                let sdp = pc.local_description().await.unwrap().sdp;
                                ours = Message::Text(json!({"v": 1, "type": "answer", "sdp": sdp}).to_string().into());
                            }
                            let _ = sink.send(ours).await;
                            if crossing == Crossing::OfferAsAnswer {
                                continue;
                            }
                        }
                        // The polite peer: on a collision, drop our offer, take the
                        // server's, and offer again afterwards.
                        let reoffer = offering;
                        if offering {
                            pc.set_local_description(RTCSessionDescription::rollback(None).unwrap()).await.expect("our offer rolls back");
                            offering = false;
                        }
                        let sdp = m["sdp"].as_str().unwrap().to_string();
                        pc.set_remote_description(RTCSessionDescription::offer(sdp).unwrap()).await.expect("the server's offer applies");
                        let answer = pc.create_answer(None).await.unwrap();
                        pc.set_local_description(answer).await.unwrap();
                        let sdp = pc.local_description().await.unwrap().sdp;
                        let _ = sink.send(Message::Text(json!({"v": 1, "type": "answer", "sdp": sdp}).to_string().into())).await;
                        if reoffer {
                            let _ = sink.send(offer(&pc).await).await;
                            offering = true;
                        }
                    }
                    Some("answer") => {
                        offering = false;
                        if let Some(pc) = &pc {
                            let sdp = m["sdp"].as_str().unwrap().to_string();
                            pc.set_remote_description(RTCSessionDescription::answer(sdp).unwrap()).await.expect("the server's answer applies");
                        }
                        let _ = messages.send(m);
                    }
                    Some("candidate") => {
                        if let Some(pc) = &pc {
                            let init: RTCIceCandidateInit = serde_json::from_value(m["candidate"].clone()).unwrap();
                            let _ = pc.add_ice_candidate(init).await;
                        }
                    }
                    _ => { let _ = messages.send(m); }
                }
            }
            command = commands.recv() => match command {
                Some(Command::Raw(message)) => { let _ = sink.send(message).await; }
                Some(Command::Publish(source)) => {
                    let p = match &pc { Some(pc) => pc.clone(), None => { let p = peer(event_tx.clone()).await; pc = Some(p.clone()); p } };
                    let _ = sink.send(publish(&p, source, &counters, &stop).await).await;
                    offering = true;
                }
                Some(Command::PublishOnOffer(stream, crossing)) => on_offer = Some((stream, crossing)),
                None => break,
            },
            Some(event) = events.recv() => match event {
                Event::Candidate(e) => {
                    if let Ok(init) = e.candidate.to_json() {
                        let _ = sink.send(Message::Text(json!({"v": 1, "type": "candidate", "candidate": init}).to_string().into())).await;
                    }
                }
                Event::Track(track) => {
                    if track.kind().await == RtpCodecKind::Video {
                        *video.lock().unwrap() = Some(track.clone());
                    }
                    tokio::spawn(count(track, received.clone()));
                }
            },
        }
    }
    stop.store(true, Ordering::Relaxed);
    if let Some(pc) = pc {
        let _ = pc.close().await;
    }
}

type Counters = (Arc<AtomicU32>, Arc<AtomicU64>, Arc<AtomicU8>);

/// Adds a VP8 and an Opus track, starts generating media on them, and
/// returns the offer to send (already set as the local description).
async fn publish(pc: &Arc<dyn PeerConnection>, source: Source, counters: &Counters, stop: &Arc<AtomicBool>) -> Message {
    let (keyframe_requests, sent, loudness) = counters;
    let (video, video_ssrc) = local(RtpCodecKind::Video, engine::VP8);
    let (audio, audio_ssrc) = local(RtpCodecKind::Audio, engine::OPUS);
    for track in [&video, &audio] {
        let init = RTCRtpTransceiverInit { direction: RTCRtpTransceiverDirection::Sendonly, ..Default::default() };
        pc.add_transceiver_from_track(track.clone() as Arc<dyn TrackLocal>, Some(init)).await.unwrap();
    }
    let message = offer(pc).await;
    let local_sdp = pc.local_description().await.map(|d| d.sdp).unwrap_or_default();
    let level = engine::extmap_id(&local_sdp, engine::AUDIO_LEVEL_URI).map(|id| (id, loudness.clone()));
    match source {
        Source::Clip(clip) => {
            tokio::spawn(play_clip(clip, (video, video_ssrc), (audio, audio_ssrc), sent.clone()));
        }
        Source::Generated(stream) => {
            let counters = (keyframe_requests.clone(), sent.clone());
            tokio::spawn(generate(stream, video, video_ssrc, (audio, audio_ssrc, level), counters, stop.clone()));
        }
    }
    message
}

async fn offer(pc: &Arc<dyn PeerConnection>) -> Message {
    let offer = pc.create_offer(None).await.unwrap();
    pc.set_local_description(offer).await.unwrap();
    let sdp = pc.local_description().await.unwrap().sdp;
    Message::Text(json!({"v": 1, "type": "offer", "sdp": sdp}).to_string().into())
}

/// The negotiated audio-level extension id, and the level to send.
type AudioLevel = (u8, Arc<AtomicU8>);

fn local(kind: RtpCodecKind, mime: &str) -> (Arc<TrackLocalStaticRTP>, u32) {
    let ssrc = rand::random::<u32>();
    let track = TrackLocalStaticRTP::new(MediaStreamTrack::new(
        "client-stream".into(),
        format!("client-{mime}"),
        format!("client-{mime}"),
        kind,
        vec![RTCRtpEncodingParameters {
            rtp_coding_parameters: RTCRtpCodingParameters { ssrc: Some(ssrc), ..Default::default() },
            codec: engine::codec_for(mime).unwrap(),
            ..Default::default()
        }],
    ));
    (Arc::new(track), ssrc)
}

/// A VP8 RTP payload: the payload descriptor (S=1, partition 0), then a frame
/// header; a keyframe carries the start code and a 320x240 size.
pub fn vp8_payload(keyframe: bool) -> Vec<u8> {
    let mut p = vec![0x10];
    if keyframe {
        p.extend_from_slice(&[0x50, 0x01, 0x00, 0x9d, 0x01, 0x2a, 0x40, 0x01, 0xf0, 0x00]);
    } else {
        p.extend_from_slice(&[0x51, 0x01, 0x00]);
    }
    p.extend(std::iter::repeat_n(0x5a, 200));
    p
}

fn is_vp8_keyframe(payload: &[u8]) -> bool {
    payload.len() > 6 && payload[0] & 0x10 != 0 && payload[1] & 0x01 == 0 && payload[4..7] == [0x9d, 0x01, 0x2a]
}

/// An [`Stream::Hd`] VP8 packet: the payload descriptor (S=1 on a frame's
/// first packet), a frame header on that first packet, and filler up to
/// [`HD_PAYLOAD`] bytes.
fn vp8_hd_payload(first: bool, keyframe: bool) -> Vec<u8> {
    let mut p = if first { vp8_payload(keyframe) } else { vec![0x00] };
    p.truncate(HD_PAYLOAD);
    p.resize(HD_PAYLOAD, 0x5a);
    p
}

/// Sends 30 video frames and 50 audio frames a second. With the light
/// stream, a keyframe goes out first and then only when someone asks (PLI),
/// so a subscriber that decodes anything proves the server routed its
/// keyframe request; the HD stream also sends one every 2 s, as encoders do.
async fn generate(
    stream: Stream,
    video: Arc<TrackLocalStaticRTP>,
    video_ssrc: u32,
    (audio, audio_ssrc, level): (Arc<TrackLocalStaticRTP>, u32, Option<AudioLevel>),
    (keyframe_requests, sent): (Arc<AtomicU32>, Arc<AtomicU64>),
    stop: Arc<AtomicBool>,
) {
    let asked = Arc::new(AtomicBool::new(true));
    {
        let video = video.clone();
        let asked = asked.clone();
        tokio::spawn(async move {
            while let Some(event) = video.poll().await {
                let TrackLocalEvent::OnRtcpPacket(packets) = event else { continue };
                if packets.iter().any(|p| p.as_any().is::<PictureLossIndication>()) {
                    keyframe_requests.fetch_add(1, Ordering::Relaxed);
                    asked.store(true, Ordering::Relaxed);
                }
            }
        });
    }
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    let (mut video_seq, mut audio_seq) = (0u16, 0u16);
    let mut n: u32 = 0;
    let mut frame: u32 = 0;
    while !stop.load(Ordering::Relaxed) {
        tick.tick().await;
        n += 1;
        if n.is_multiple_of(2) {
            let mut packet = rtc::rtp::Packet {
                header: rtc::rtp::header::Header {
                    version: 2,
                    marker: true,
                    payload_type: engine::OPUS_PAYLOAD_TYPE,
                    sequence_number: audio_seq,
                    timestamp: u32::from(audio_seq).wrapping_mul(960),
                    ssrc: audio_ssrc,
                    ..Default::default()
                },
                // An Opus TOC byte (CELT, 20 ms) and a few bytes of frame.
                payload: bytes::Bytes::from_static(&[0xfc, 0xff, 0xfe, 0x01, 0x02, 0x03]),
            };
            if let Some((id, loudness)) = &level {
                // RFC 6464: the voice-activity bit, then the level.
                let l = loudness.load(Ordering::Relaxed);
                packet.header.extension = true;
                packet.header.extension_profile = 0xBEDE;
                let _ = packet.header.set_extension(*id, bytes::Bytes::from(vec![if l < 127 { 0x80 | l } else { l }]));
            }
            if audio.write_rtp(packet).await.is_ok() {
                audio_seq = audio_seq.wrapping_add(1);
                sent.fetch_add(1, Ordering::Relaxed);
            }
        }
        if n.is_multiple_of(3) {
            let periodic = stream == Stream::Hd && frame.is_multiple_of(60);
            let keyframe = asked.swap(false, Ordering::Relaxed) || periodic;
            let packets = match (stream, keyframe) {
                (Stream::Light, _) => 1,
                (Stream::Hd, true) => 30,
                (Stream::Hd, false) => 4 + u32::from(frame.is_multiple_of(3)),
            };
            let mut ok = true;
            for i in 0..packets {
                let payload = match stream {
                    Stream::Light => vp8_payload(keyframe),
                    Stream::Hd => vp8_hd_payload(i == 0, keyframe),
                };
                let packet = rtc::rtp::Packet {
                    header: rtc::rtp::header::Header {
                        version: 2,
                        marker: i + 1 == packets,
                        payload_type: engine::VP8_PAYLOAD_TYPE,
                        sequence_number: video_seq,
                        timestamp: match stream {
                            Stream::Light => u32::from(video_seq).wrapping_mul(3000),
                            Stream::Hd => frame.wrapping_mul(3000),
                        },
                        ssrc: video_ssrc,
                        ..Default::default()
                    },
                    payload: bytes::Bytes::from(payload),
                };
                if video.write_rtp(packet).await.is_ok() {
                    video_seq = video_seq.wrapping_add(1);
                    sent.fetch_add(1, Ordering::Relaxed);
                } else {
                    ok = false;
                    break;
                }
            }
            if !ok && keyframe {
                asked.store(true, Ordering::Relaxed);
            }
            frame = frame.wrapping_add(1);
        }
    }
}

/// Sends a clip's frames at their times: VP8 at 30 frames a second (RTP
/// clock 90 kHz), Opus every 20 ms (48 kHz), once `clip.go` says so; until
/// then its first frames, so the tracks are up before the clip starts.
async fn play_clip(
    clip: Arc<Clip>,
    (video, video_ssrc): (Arc<TrackLocalStaticRTP>, u32),
    (audio, audio_ssrc): (Arc<TrackLocalStaticRTP>, u32),
    sent: Arc<AtomicU64>,
) {
    use rtc::rtp::{codec::vp8::Vp8Payloader, packetizer::Payloader};
    let header = |pt, seq, ts, ssrc, marker| rtc::rtp::header::Header {
        version: 2,
        marker,
        payload_type: pt,
        sequence_number: seq,
        timestamp: ts,
        ssrc,
        ..Default::default()
    };
    // Until `go`: the first keyframe every 40 ms and the first audio packet every 20 ms.
    let (mut vts, mut ats, mut vseq, mut aseq) = (0u32, 0u32, 0u16, 0u16);
    let mut payloader = Vp8Payloader::default();
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    let go = clip.go.notified();
    tokio::pin!(go);
    let mut n = 0u32;
    loop {
        tokio::select! {
            _ = &mut go => break,
            _ = tick.tick() => {
                n += 1;
                let h = header(engine::OPUS_PAYLOAD_TYPE, aseq, ats, audio_ssrc, true);
                let _ = audio.write_rtp(rtc::rtp::Packet { header: h, payload: clip.audio[0].clone() }).await;
                (aseq, ats) = (aseq.wrapping_add(1), ats.wrapping_add(960));
                if n.is_multiple_of(2) {
                    let parts = payloader.payload(1100, &clip.video[0]).unwrap();
                    let count = parts.len();
                    for (i, part) in parts.into_iter().enumerate() {
                        let h = header(engine::VP8_PAYLOAD_TYPE, vseq, vts, video_ssrc, i + 1 == count);
                        let _ = video.write_rtp(rtc::rtp::Packet { header: h, payload: part }).await;
                        vseq = vseq.wrapping_add(1);
                    }
                    vts = vts.wrapping_add(3600);
                }
            }
        }
    }
    let (vbase, abase) = (vts, ats);
    let start = tokio::time::Instant::now();
    let (mut v, mut a) = (0usize, 0usize);
    while v < clip.video.len() || a < clip.audio.len() {
        let video_at = Duration::from_micros(v as u64 * 1_000_000 / 30);
        let audio_at = Duration::from_millis(a as u64 * 20);
        if v < clip.video.len() && (a >= clip.audio.len() || video_at <= audio_at) {
            tokio::time::sleep_until(start + video_at).await;
            let parts = payloader.payload(1100, &clip.video[v]).unwrap();
            let n = parts.len();
            for (i, part) in parts.into_iter().enumerate() {
                let h =
                    header(engine::VP8_PAYLOAD_TYPE, vseq, vbase.wrapping_add(v as u32 * 3000), video_ssrc, i + 1 == n);
                if video.write_rtp(rtc::rtp::Packet { header: h, payload: part }).await.is_ok() {
                    sent.fetch_add(1, Ordering::Relaxed);
                }
                vseq = vseq.wrapping_add(1);
            }
            v += 1;
        } else {
            tokio::time::sleep_until(start + audio_at).await;
            let h = header(engine::OPUS_PAYLOAD_TYPE, aseq, abase.wrapping_add(a as u32 * 960), audio_ssrc, true);
            if audio.write_rtp(rtc::rtp::Packet { header: h, payload: clip.audio[a].clone() }).await.is_ok() {
                sent.fetch_add(1, Ordering::Relaxed);
            }
            aseq = aseq.wrapping_add(1);
            a += 1;
        }
    }
}

async fn count(track: Arc<dyn TrackRemote>, received: Arc<Mutex<Received>>) {
    let id = track.track_id().await;
    let kind = match track.kind().await {
        RtpCodecKind::Video => "video",
        _ => "audio",
    };
    received.lock().unwrap().kinds.insert(id.clone(), kind);
    while let Some(event) = track.poll().await {
        if let TrackRemoteEvent::OnRtpPacket(packet) = event {
            received.lock().unwrap().count(&id, kind, &packet, Instant::now());
        }
    }
}

/// A peer connection outside the room protocol, for driving another server
/// (the bench drives Janus with it): the caller carries the SDP; this
/// publishes the same generated stream and counts what it receives the same way.
#[allow(dead_code)] // Used by benches/room.rs only.
pub struct MediaPeer {
    pub pc: Arc<dyn PeerConnection>,
    pub received: Arc<Mutex<Received>>,
    /// RTP packets published (audio and video).
    pub sent: Arc<AtomicU64>,
    /// Local ICE candidates as gathered, to trickle to the server.
    pub candidates: mpsc::UnboundedReceiver<RTCIceCandidateInit>,
    stop: Arc<AtomicBool>,
}

#[allow(dead_code)] // Used by benches/room.rs only.
impl MediaPeer {
    /// A peer whose one UDP socket is bound to `addr` (e.g. "127.0.0.1:0").
    pub async fn new(addr: &str) -> MediaPeer {
        let (event_tx, mut events) = mpsc::unbounded_channel();
        let pc = peer_on(event_tx, addr).await;
        let received = Arc::new(Mutex::new(Received::default()));
        let (candidate_tx, candidates) = mpsc::unbounded_channel();
        let counted = received.clone();
        tokio::spawn(async move {
            while let Some(event) = events.recv().await {
                match event {
                    Event::Candidate(e) => {
                        if let Ok(init) = e.candidate.to_json() {
                            let _ = candidate_tx.send(init);
                        }
                    }
                    Event::Track(track) => {
                        tokio::spawn(count(track, counted.clone()));
                    }
                }
            }
        });
        MediaPeer {
            pc,
            received,
            sent: Arc::new(AtomicU64::new(0)),
            candidates,
            stop: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Adds a send-only VP8 and Opus track and starts generating `stream`
    /// (packets written before the connection is up are dropped); the caller
    /// then offers.
    pub async fn publish(&self, stream: Stream) {
        let (video, video_ssrc) = local(RtpCodecKind::Video, engine::VP8);
        let (audio, audio_ssrc) = local(RtpCodecKind::Audio, engine::OPUS);
        for track in [&video, &audio] {
            let init = RTCRtpTransceiverInit { direction: RTCRtpTransceiverDirection::Sendonly, ..Default::default() };
            self.pc.add_transceiver_from_track(track.clone() as Arc<dyn TrackLocal>, Some(init)).await.unwrap();
        }
        let keyframe_requests = Arc::new(AtomicU32::new(0));
        tokio::spawn(generate(
            stream,
            video,
            video_ssrc,
            (audio, audio_ssrc, None),
            (keyframe_requests, self.sent.clone()),
            self.stop.clone(),
        ));
    }
}

impl Drop for MediaPeer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let pc = self.pc.clone();
        tokio::spawn(async move {
            let _ = pc.close().await;
        });
    }
}
