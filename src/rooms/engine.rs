//! Everything that touches the media engine (`webrtc` 0.21): building peer
//! connections, the event handler, local tracks, and the per-track forwarder.
//! The room's rules live in `room.rs` and never see these types.

use std::{
    collections::VecDeque,
    net::SocketAddr,
    sync::{
        atomic::{AtomicU32, Ordering},
        Arc,
    },
};

use anyhow::Context;
use rtc::{
    ice::mdns::MulticastDnsMode,
    interceptor::{Attribute, Interceptor, Packet, Slot, StreamInfo, TaggedPacket},
    media_stream::MediaStreamTrack,
    rtcp::payload_feedbacks::{full_intra_request::FullIntraRequest, picture_loss_indication::PictureLossIndication},
    rtp_transceiver::rtp_sender::{
        RTCPFeedback, RTCRtpCodec, RTCRtpCodecParameters, RTCRtpCodingParameters, RTCRtpEncodingParameters,
        RtpCodecKind,
    },
    sansio,
};
use tokio::sync::mpsc;
use webrtc::{
    media_stream::{
        track_local::{static_rtp::TrackLocalStaticRTP, TrackLocal},
        track_remote::{TrackRemote, TrackRemoteEvent},
    },
    peer_connection::{
        register_default_interceptors, MediaEngine, PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler,
        RTCIceCandidateType, RTCPeerConnectionIceEvent, RTCPeerConnectionState, Registry, SettingEngineBuilder,
    },
};

use super::room::{ConnId, MediaKind, ParticipantId, TrackId};
use crate::settings::RtcSettings;

pub const VP8: &str = "video/VP8";
pub const OPUS: &str = "audio/opus";
pub const VP8_PAYLOAD_TYPE: u8 = 96;
/// RFC 6464: the sender's audio level in each audio packet, 0 (loudest) to
/// 127 (silence) −dBov. Browsers send it when it is negotiated.
pub const AUDIO_LEVEL_URI: &str = "urn:ietf:params:rtp-hdrext:ssrc-audio-level";
pub const OPUS_PAYLOAD_TYPE: u8 = 111;

/// Registers the room's codecs and the audio-level header extension (for
/// the active speaker).
pub fn register_media(media: &mut MediaEngine) -> Result<(), webrtc::error::Error> {
    for (codec, kind) in codecs() {
        media.register_codec(codec, kind)?;
    }
    media.register_header_extension(
        rtc::rtp_transceiver::rtp_sender::RTCRtpHeaderExtensionCapability { uri: AUDIO_LEVEL_URI.into() },
        RtpCodecKind::Audio,
        None,
    )
}

/// The id an SDP gives to a header extension (`a=extmap:ID URI`).
pub fn extmap_id(sdp: &str, uri: &str) -> Option<u8> {
    sdp.lines().find_map(|line| {
        let rest = line.trim().strip_prefix("a=extmap:")?;
        let (id, rest) = rest.split_once(' ')?;
        let id = id.split('/').next()?;
        (rest.split_whitespace().next() == Some(uri)).then(|| id.parse().ok()).flatten()
    })
}

/// Why `answer` cannot be the answer to `offer`, if it cannot. An answer has
/// the offer's m-lines, in the offer's order (RFC 8829, 5.3.1), and takes a
/// DTLS role: `a=setup:actpass` belongs to offers only (RFC 5763, 5). A
/// description that fails this is usually an offer sent as an answer; the
/// crate would half-apply it (the signalling state changes before the m-lines
/// are matched), so it is checked before it is applied.
pub fn answer_mismatch(offer: &str, answer: &str) -> Option<String> {
    let mids = |sdp: &str| -> Vec<String> {
        sdp.lines().filter_map(|l| l.trim().strip_prefix("a=mid:")).map(|m| m.trim().to_string()).collect()
    };
    let (offered, answered) = (mids(offer), mids(answer));
    if offered != answered {
        return Some(format!("its m-lines {answered:?} are not those of the offer {offered:?}"));
    }
    answer
        .lines()
        .any(|l| l.trim() == "a=setup:actpass")
        .then(|| "it says a=setup:actpass, which only an offer may".to_string())
}

/// The codecs a room speaks. An SFU forwards what it receives, so every
/// subscriber must decode what the publisher sends: one codec per kind, the
/// ones every browser has.
pub fn codecs() -> [(RTCRtpCodecParameters, RtpCodecKind); 2] {
    let feedback = |typ: &str, parameter: &str| RTCPFeedback { typ: typ.into(), parameter: parameter.into() };
    [
        (
            RTCRtpCodecParameters {
                rtp_codec: RTCRtpCodec {
                    mime_type: VP8.into(),
                    clock_rate: 90_000,
                    channels: 0,
                    sdp_fmtp_line: String::new(),
                    rtcp_feedback: vec![
                        feedback("goog-remb", ""),
                        feedback("ccm", "fir"),
                        feedback("nack", ""),
                        feedback("nack", "pli"),
                    ],
                },
                payload_type: VP8_PAYLOAD_TYPE,
            },
            RtpCodecKind::Video,
        ),
        (
            RTCRtpCodecParameters {
                rtp_codec: RTCRtpCodec {
                    mime_type: OPUS.into(),
                    clock_rate: 48_000,
                    channels: 2,
                    sdp_fmtp_line: "minptime=10;useinbandfec=1".into(),
                    rtcp_feedback: vec![],
                },
                payload_type: OPUS_PAYLOAD_TYPE,
            },
            RtpCodecKind::Audio,
        ),
    ]
}

pub fn codec_for(mime_type: &str) -> Option<RTCRtpCodec> {
    codecs().into_iter().map(|(c, _)| c.rtp_codec).find(|c| c.mime_type.eq_ignore_ascii_case(mime_type))
}

pub fn payload_type_for(mime_type: &str) -> Option<u8> {
    codecs()
        .into_iter()
        .map(|(c, _)| c)
        .find(|c| c.rtp_codec.mime_type.eq_ignore_ascii_case(mime_type))
        .map(|c| c.payload_type)
}

pub fn kind_of(kind: RtpCodecKind) -> Option<MediaKind> {
    match kind {
        RtpCodecKind::Audio => Some(MediaKind::Audio),
        RtpCodecKind::Video => Some(MediaKind::Video),
        _ => None,
    }
}

/// Builds peer connections with the configured sockets and addresses.
pub struct Engine {
    settings: RtcSettings,
    /// Where the next port search starts, so consecutive connections spread
    /// over the range instead of all probing its first port.
    next_port: AtomicU32,
}

impl Engine {
    pub fn new(settings: RtcSettings) -> Engine {
        let span = u32::from(settings.port_max.saturating_sub(settings.port_min)) + 1;
        let start = rand::random::<u32>() % span;
        Engine { settings, next_port: AtomicU32::new(start) }
    }

    /// A peer connection bound to one free port of the range; its events
    /// arrive on `events`, host candidates already carrying the public address.
    pub async fn peer(&self, events: mpsc::UnboundedSender<PeerEvent>) -> anyhow::Result<Arc<dyn PeerConnection>> {
        let handler: Arc<dyn PeerConnectionEventHandler> =
            Arc::new(Handler { events, public_ip: self.settings.public_ip.map(|ip| ip.to_string()) });
        let span = u32::from(self.settings.port_max.saturating_sub(self.settings.port_min)) + 1;
        let mut last_error = None;
        for _ in 0..span.min(64) {
            let offset = self.next_port.fetch_add(1, Ordering::Relaxed) % span;
            let port = self.settings.port_min + offset as u16;
            let addr = SocketAddr::new(self.settings.bind_ip, port);
            match self.build(addr, handler.clone()).await {
                Ok(pc) => return Ok(pc),
                Err(e) => last_error = Some(e),
            }
        }
        Err(last_error.unwrap_or_else(|| anyhow::anyhow!("empty port range")))
            .context("failed to bind a media socket in STAFFROOM_RTC_PORT_MIN..MAX")
    }

    async fn build(
        &self,
        addr: SocketAddr,
        handler: Arc<dyn PeerConnectionEventHandler>,
    ) -> anyhow::Result<Arc<dyn PeerConnection>> {
        let mut media = MediaEngine::default();
        register_media(&mut media).context("failed to set up the media engine")?;
        let registry = register_default_interceptors(Registry::new(), &mut media)
            .context("failed to set up interceptors")?
            .with(Slot::from(14_000), KeyframeRequests::default());
        // mDNS candidates need multicast, which an isolated network does not have.
        // (`with_nat_1to1_ips` is stored but not used by webrtc 0.21.1, so
        // the public address is put into candidates by `Handler` and
        // `announce_sdp` instead.)
        // A browser's candidates often reach us first as peer-reflexive ones
        // (its checks arrive before its trickled candidates, or its host
        // addresses are hidden); waiting the default second before choosing
        // such a pair only delays the first packet.
        // When answering, the server is always the DTLS server (`setup:passive`).
        // The default (`active`) breaks a renegotiation the client starts after
        // answering the server's first offer (an attendee brought on stage): the
        // client is already the DTLS client, and a browser refuses an answer
        // that would swap the roles ("Failed to set SSL role").
        let settings = SettingEngineBuilder::new()
            .with_answering_dtls_role(rtc::peer_connection::transport::RTCDtlsRole::Server)
            .with_multicast_dns_mode(MulticastDnsMode::Disabled)
            .with_prflx_acceptance_min_wait(Some(std::time::Duration::ZERO));
        let pc = PeerConnectionBuilder::new()
            .with_media_engine(media)
            .with_setting_engine(settings.build())
            .with_interceptor_registry(registry)
            .with_handler(handler)
            .with_udp_addrs(vec![addr])
            .build()
            .await
            .with_context(|| format!("failed to build a peer connection on {addr}"))?;
        Ok(Arc::new(pc))
    }
}

/// What a peer connection tells its owner.
pub enum PeerEvent {
    Candidate(RTCPeerConnectionIceEvent),
    Track(Arc<dyn TrackRemote>),
    State(RTCPeerConnectionState),
}

impl Engine {
    /// The SDP with each host candidate's address replaced by the public
    /// one, when there is one.
    pub fn announce_sdp(&self, sdp: String) -> String {
        match self.settings.public_ip {
            None => sdp,
            Some(ip) => announce_sdp(&sdp, &ip.to_string()),
        }
    }
}

fn announce_sdp(sdp: &str, ip: &str) -> String {
    let mut out = String::with_capacity(sdp.len());
    for line in sdp.split_inclusive('\n') {
        let body = line.trim_end_matches(['\r', '\n']);
        let ending = &line[body.len()..];
        match body.strip_prefix("a=candidate:") {
            Some(candidate) => {
                let mut fields: Vec<&str> = candidate.split(' ').collect();
                if fields.len() >= 8 && fields[6] == "typ" && fields[7] == "host" {
                    fields[4] = ip;
                }
                out.push_str("a=candidate:");
                out.push_str(&fields.join(" "));
                out.push_str(ending);
            }
            None => out.push_str(line),
        }
    }
    out
}

/// Turns engine callbacks into messages for the peer task: no room state is
/// touched from the engine's tasks.
struct Handler {
    events: mpsc::UnboundedSender<PeerEvent>,
    public_ip: Option<String>,
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Handler {
    async fn on_ice_candidate(&self, mut event: RTCPeerConnectionIceEvent) {
        if let Some(ip) = &self.public_ip {
            if event.candidate.typ == RTCIceCandidateType::Host {
                event.candidate.address = ip.clone();
            }
        }
        let _ = self.events.send(PeerEvent::Candidate(event));
    }
    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        let _ = self.events.send(PeerEvent::State(state));
    }
    async fn on_track(&self, track: Arc<dyn TrackRemote>) {
        let _ = self.events.send(PeerEvent::Track(track));
    }
}

/// A local track carrying one published track to one subscriber, with its own SSRC.
pub fn local_track(
    publisher: &str,
    track: &str,
    kind: MediaKind,
    codec: RTCRtpCodec,
) -> (Arc<TrackLocalStaticRTP>, u32) {
    let ssrc = rand::random::<u32>();
    let kind = match kind {
        MediaKind::Audio => RtpCodecKind::Audio,
        MediaKind::Video => RtpCodecKind::Video,
    };
    let track = TrackLocalStaticRTP::new(MediaStreamTrack::new(
        publisher.to_string(),
        track.to_string(),
        track.to_string(),
        kind,
        vec![RTCRtpEncodingParameters {
            rtp_coding_parameters: RTCRtpCodingParameters { ssrc: Some(ssrc), ..Default::default() },
            codec,
            ..Default::default()
        }],
    ));
    (Arc::new(track), ssrc)
}

/// Commands to a track's forwarder.
pub enum ForwarderCommand {
    /// Start sending to this subscriber's local track, rewriting SSRC and
    /// payload type. A subscriber is a connection, not a person: a rejoin's
    /// new connection must not be detached by the old one's goodbye.
    Attach {
        subscriber: (ParticipantId, ConnId),
        local: Arc<TrackLocalStaticRTP>,
        ssrc: u32,
        payload_type: u8,
    },
    Detach {
        subscriber: (ParticipantId, ConnId),
    },
    /// A host muted (true) or the publisher unmuted (false) this track:
    /// while paused nothing is forwarded, whatever the publisher sends.
    Pause(bool),
    /// Send a PLI to the publisher.
    RequestKeyframe,
    /// Hand a copy of every forwarded packet to a recording (`None` stops:
    /// dropping the sender is what ends the recorded file).
    Record(Option<mpsc::Sender<rtc::rtp::Packet>>),
    Stop,
}

pub type Forwarder = mpsc::UnboundedSender<ForwarderCommand>;

/// Packets queued for one subscriber before newer ones are dropped (about a
/// second of 720p video).
const SUBSCRIBER_QUEUE: usize = 256;

/// One subscriber's copy of a track: its own queue and task, so a slow
/// subscriber loses packets instead of holding up everyone else.
struct Downtrack {
    queue: mpsc::Sender<rtc::rtp::Packet>,
    dropped: u64,
}

fn spawn_downtrack(track_id: TrackId, local: Arc<TrackLocalStaticRTP>, ssrc: u32, payload_type: u8) -> Downtrack {
    let (queue, mut packets) = mpsc::channel::<rtc::rtp::Packet>(SUBSCRIBER_QUEUE);
    tokio::spawn(async move {
        while let Some(mut p) = packets.recv().await {
            p.header.ssrc = ssrc;
            p.header.payload_type = payload_type;
            // Extension ids were negotiated with the publisher, not the
            // subscriber: drop them rather than send wrong ones.
            p.header.extension = false;
            p.header.extensions.clear();
            p.header.extensions_padding = 0;
            if let Err(e) = local.write_rtp(p).await {
                tracing::debug!(track = %track_id, error = %e, "a subscriber's track stopped taking packets");
                break;
            }
        }
    });
    Downtrack { queue, dropped: 0 }
}

/// Spawns the task that owns one published track: it reads the publisher's
/// RTP and hands a copy to each attached subscriber, never decoding.
/// `ended` is called once when the publisher's track ends.
/// Packets between two audio-level reports (50 a second for Opus: 200 ms).
const LEVEL_EVERY: u32 = 10;

/// Where a forwarder reports the publisher's audio level: the negotiated
/// extension id, and a callback taking the loudest level (0 loudest,
/// 127 silence) seen since the last report.
pub struct LevelReport {
    pub extension_id: u8,
    pub report: Box<dyn Fn(u8) + Send>,
}

pub fn spawn_forwarder(
    track_id: TrackId,
    remote: Arc<dyn TrackRemote>,
    level: Option<LevelReport>,
    ended: impl FnOnce() + Send + 'static,
) -> Forwarder {
    let (tx, mut rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut subscribers: Vec<((ParticipantId, ConnId), Downtrack)> = vec![];
        let media_ssrc = remote.ssrcs().await.first().copied().unwrap_or(0);
        let mut received: u64 = 0;
        let mut paused = false;
        let mut record: Option<mpsc::Sender<rtc::rtp::Packet>> = None;
        let (mut loudest, mut since_report) = (127u8, 0u32);
        loop {
            tokio::select! {
                event = remote.poll() => match event {
                    Some(TrackRemoteEvent::OnRtpPacket(packet)) => {
                        received += 1;
                        if paused {
                            continue;
                        }
                        if let Some(l) = &level {
                            if let Some(ext) = packet.header.get_extension(l.extension_id) {
                                loudest = loudest.min(ext.first().map_or(127, |b| b & 0x7f));
                            }
                            since_report += 1;
                            if since_report >= LEVEL_EVERY {
                                (l.report)(loudest);
                                (loudest, since_report) = (127, 0);
                            }
                        }
                        if let Some(r) = &record {
                            if let Err(mpsc::error::TrySendError::Closed(_)) = r.try_send(packet.clone()) {
                                record = None;
                            }
                        }
                        for (_, sub) in subscribers.iter_mut() {
                            if sub.queue.try_send(packet.clone()).is_err() {
                                sub.dropped += 1;
                            }
                        }
                    }
                    Some(TrackRemoteEvent::OnEnded) | None => break,
                    Some(_) => {}
                },
                command = rx.recv() => match command {
                    Some(ForwarderCommand::Attach { subscriber, local, ssrc, payload_type }) => {
                        subscribers.retain(|(s, _)| *s != subscriber);
                        subscribers.push((subscriber, spawn_downtrack(track_id.clone(), local, ssrc, payload_type)));
                    }
                    Some(ForwarderCommand::Detach { subscriber }) => {
                        if let Some((_, d)) = subscribers.iter().find(|(s, _)| *s == subscriber) {
                            tracing::debug!(track = %track_id, subscriber = subscriber.0, dropped = d.dropped, "detached");
                        }
                        subscribers.retain(|(s, _)| *s != subscriber);
                    }
                    Some(ForwarderCommand::Pause(p)) => paused = p,
                    Some(ForwarderCommand::Record(r)) => record = r,
                    Some(ForwarderCommand::RequestKeyframe) => {
                        let pli = PictureLossIndication { sender_ssrc: 0, media_ssrc };
                        if let Err(e) = remote.write_rtcp(vec![Box::new(pli)]).await {
                            tracing::debug!(track = %track_id, error = %e, "keyframe request not sent");
                        }
                    }
                    Some(ForwarderCommand::Stop) | None => break,
                },
            }
        }
        tracing::debug!(track = %track_id, received, "forwarder stopped");
        ended();
    });
    tx
}

/// Reads and discards a refused track, so the engine's queue for it never fills.
pub fn drain(remote: Arc<dyn TrackRemote>) {
    tokio::spawn(async move { while remote.poll().await.is_some() {} });
}

#[cfg(test)]
mod tests {
    #[test]
    fn extension_ids_are_read_from_the_sdp() {
        let sdp = "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level\r\n\
                   a=extmap:3/sendrecv http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time\r\n";
        assert_eq!(super::extmap_id(sdp, super::AUDIO_LEVEL_URI), Some(1));
        assert_eq!(super::extmap_id(sdp, "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"), Some(3));
        assert_eq!(super::extmap_id(sdp, "urn:nothing"), None);
    }

    #[test]
    fn an_answer_must_have_the_offers_m_lines_and_a_dtls_role() {
        let offer = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=setup:actpass\r\na=mid:0\r\n\
                     m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=setup:actpass\r\na=mid:1\r\n";
        let answer = offer.replace("actpass", "active");
        assert_eq!(super::answer_mismatch(offer, &answer), None);
        // An offer sent back as if it were the answer: it adds an m-line of its own.
        let crossed = format!("{offer}m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=setup:actpass\r\na=mid:2\r\n");
        assert!(super::answer_mismatch(offer, &crossed).unwrap().contains("not those of the offer"));
        // The same m-lines, but still open about the DTLS role: an offer too.
        assert!(super::answer_mismatch(offer, offer).unwrap().contains("actpass"));
        let reordered =
            answer.replace("a=mid:0", "a=mid:x").replace("a=mid:1", "a=mid:0").replace("a=mid:x", "a=mid:1");
        assert!(super::answer_mismatch(offer, &reordered).is_some());
    }

    #[test]
    fn host_candidates_in_sdp_announce_the_public_address() {
        let sdp = "v=0\r\na=candidate:1 1 udp 2130706431 10.0.0.5 50001 typ host\r\n\
                   a=candidate:2 1 udp 1694498815 198.51.100.1 50001 typ srflx raddr 10.0.0.5 rport 50001\r\nm=audio\r\n";
        let out = super::announce_sdp(sdp, "203.0.113.9");
        assert!(out.contains("a=candidate:1 1 udp 2130706431 203.0.113.9 50001 typ host\r\n"), "{out}");
        assert!(out.contains("198.51.100.1 50001 typ srflx raddr 10.0.0.5"), "{out}");
        assert!(out.starts_with("v=0\r\n") && out.ends_with("m=audio\r\n"));
    }
}

/// A picture loss indication or full intra request: "send me a keyframe".
pub fn is_keyframe_request(packet: &dyn rtc::rtcp::Packet) -> bool {
    let any = packet.as_any();
    any.is::<PictureLossIndication>() || any.is::<FullIntraRequest>()
}

/// Last in the interceptor chain: passes inbound keyframe requests (PLI,
/// FIR) on to the application, which alone knows who can answer them (the
/// publisher, for an SFU); the other interceptors have already acted on the
/// rest. As in the crate's rtcp-processing example.
#[derive(Default)]
pub struct KeyframeRequests {
    read: VecDeque<TaggedPacket>,
    write: VecDeque<TaggedPacket>,
}

impl sansio::Protocol<TaggedPacket, TaggedPacket, ()> for KeyframeRequests {
    type Rout = TaggedPacket;
    type Wout = TaggedPacket;
    type Eout = ();
    type Error = rtc::shared::error::Error;
    type Time = std::time::Instant;

    fn handle_read(&mut self, mut msg: TaggedPacket) -> Result<(), Self::Error> {
        if let Packet::Rtcp(packets) = &msg.message.packet {
            let requests: Vec<Box<dyn rtc::rtcp::Packet>> =
                packets.iter().filter(|p| is_keyframe_request(p.as_ref())).cloned().collect();
            if requests.is_empty() {
                return Ok(());
            }
            msg.message.packet = Packet::Rtcp(requests);
            msg.message.add(Attribute::DeliverToApplication);
        }
        self.read.push_back(msg);
        Ok(())
    }
    fn poll_read(&mut self) -> Option<Self::Rout> {
        self.read.pop_front()
    }
    fn handle_write(&mut self, msg: TaggedPacket) -> Result<(), Self::Error> {
        self.write.push_back(msg);
        Ok(())
    }
    fn poll_write(&mut self) -> Option<Self::Wout> {
        self.write.pop_front()
    }
}

impl Interceptor for KeyframeRequests {
    fn bind_local_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_local_stream(&mut self, _info: &StreamInfo) {}
    fn bind_remote_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_remote_stream(&mut self, _info: &StreamInfo) {}
}
