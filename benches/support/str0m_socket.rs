//! The single-socket prototype again, on str0m instead of `rtc` (issue 14:
//! "measure the alternative core once"), for the room bench: the same
//! design, signalling and features as `single_socket.rs`, so that the two
//! cores are compared on one stream, one set of viewers, one window.
//!
//! - One UDP socket, one thread, one loop (`single_socket::serve_with`:
//!   the same HTTP signalling, `POST /publish` and `POST /subscribe`, offer
//!   in, answer out). Every peer is a str0m `Rtc` in RTP mode.
//! - Datagrams are routed by source address; an unknown address is learnt
//!   from the ICE username of its first STUN request (`server:client`, the
//!   server part chosen here for each peer).
//! - A publisher's RTP packet (`Event::RtpPacket`) is written to every
//!   connected viewer's send stream with the viewer's own SSRC and payload
//!   type (`StreamTx::write_rtp`, the payload shared, not copied), then that
//!   `Rtc` is drained; what the connections produce goes out with
//!   `sendmmsg`, 64 datagrams a call (`single_socket::flush`).
//! - The publisher's sequence numbers and timestamps are kept, as in the
//!   `rtc` prototype; only the rollover counter is rebased to 0 for each
//!   viewer (str0m takes extended sequence numbers, and a viewer's SRTP
//!   starts at rollover 0).
//! - Timers: each connection's next deadline is kept and checked every 5 ms
//!   (and at least every 100 ms).
//! - A viewer's keyframe request, or a viewer connecting, asks the
//!   publisher for a keyframe (PLI), at most every 300 ms.
//!
//! `STR0M_LOG=FILE` in the bench's environment writes str0m's debug log.
//!
//! What str0m does per forwarded packet and per viewer, against `rtc`:
//! no interceptor chain (sender reports and receiver-report handling are
//! built into its send stream), no copy of the payload before sealing, and
//! resends only by RTX (RFC 4588): a viewer that offers no RTX, as the
//! bench's viewers do not (the room's codecs have none), gets no NACK
//! responder and str0m keeps no resend cache for it.

use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use super::single_socket::{self, Command, Engine, Keyframes, Routes};
use staffroom::media::codec as engine;
use str0m::{
    change::SdpOffer,
    media::{KeyframeRequestKind, Mid},
    net::{DatagramSend, Protocol, Receive},
    rtp::{RtpPacket, RtpWrite, Ssrc},
    Candidate, Event, IceCreds, Input, Output, Rtc,
};

/// A track a viewer receives: its send stream's SSRC, the payload type its
/// answer gave the codec, and the rollover counter of the first packet
/// forwarded to it (subtracted from the publisher's extended sequence number).
struct Outbound {
    ssrc: Ssrc,
    payload_type: u8,
    rollover_base: Option<u64>,
}

struct Peer {
    rtc: Rtc,
    publisher: bool,
    deadline: Instant,
    connected: bool,
    video: Option<Outbound>,
    audio: Option<Outbound>,
}

/// The child process's entry (`room --serve-str0m`): prints
/// `http://127.0.0.1:PORT` and serves until killed. One thread for all.
pub fn serve() {
    str0m::crypto::from_feature_flags().install_process_default();
    // STR0M_LOG=FILE: str0m's and dimpl's debug log (the SRTP profile each
    // DTLS handshake chose, ICE states, each peer's offer and answer).
    if let Ok(path) = std::env::var("STR0M_LOG") {
        let file = std::fs::File::create(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        tracing_subscriber::fmt()
            .with_writer(std::sync::Mutex::new(file))
            .with_ansi(false)
            .with_env_filter("str0m=debug,dimpl=debug,room=debug")
            .init();
    }
    single_socket::serve_with(Sfu::new);
}

struct Sfu {
    local: SocketAddr,
    peers: Vec<Peer>,
    routes: Routes,
    publisher: Option<usize>,
    /// The publisher's video m-line, to ask for keyframes.
    publisher_video: Option<Mid>,
    /// The payload type of the publisher's VP8.
    publisher_vp8: u8,
    keyframes: Keyframes,
    out: Vec<(DatagramSend, SocketAddr)>,
}

impl Sfu {
    fn new(local: SocketAddr) -> Sfu {
        Sfu {
            local,
            peers: vec![],
            routes: Routes::default(),
            publisher: None,
            publisher_video: None,
            publisher_vp8: engine::VP8_PAYLOAD_TYPE,
            keyframes: Keyframes::default(),
            out: Vec::with_capacity(1024),
        }
    }

    fn add_peer(&mut self, offer: &str, publisher: bool) -> anyhow::Result<String> {
        let idx = self.peers.len();
        let ufrag = format!("sfu{idx:08x}");
        let now = Instant::now();
        // The room's codecs only: VP8 and Opus, at the offer's payload types.
        let mut rtc = Rtc::builder()
            .set_rtp_mode(true)
            .clear_codecs()
            .enable_vp8(true)
            .enable_opus(true, false)
            .set_local_ice_credentials(IceCreds { ufrag: ufrag.clone(), pass: format!("{ufrag}-password-0123456789") })
            .build(now);
        rtc.add_local_candidate(Candidate::host(self.local, "udp")?);
        let answer = rtc.sdp_api().accept_offer(SdpOffer::from_sdp_string(offer)?)?.to_sdp_string();
        tracing::debug!("offer: {offer}\nanswer: {answer}");
        let pt = |codec: &str| single_socket::payload_type(&answer, codec);
        let mut peer = Peer { rtc, publisher, deadline: now, connected: false, video: None, audio: None };
        for (video, mid) in media_lines(&answer) {
            if publisher {
                if video {
                    self.publisher_video = Some(mid);
                }
                continue;
            }
            let Some(ssrc) = peer.rtc.direct_api().stream_tx_by_mid(mid, None).map(|s| s.ssrc()) else { continue };
            let codec = if video { "VP8" } else { "opus" };
            let out = Outbound { ssrc, payload_type: pt(codec).unwrap_or(0), rollover_base: None };
            if video {
                peer.video = Some(out);
            } else {
                peer.audio = Some(out);
            }
        }
        if publisher {
            self.publisher = Some(idx);
            self.publisher_vp8 = pt("VP8").unwrap_or(engine::VP8_PAYLOAD_TYPE);
        }
        self.peers.push(peer);
        self.routes.by_ufrag.insert(ufrag, idx);
        self.drive(idx, now);
        Ok(answer)
    }

    /// Drains one connection until its next timeout (str0m's contract after
    /// every input or write): what it sends, its events (a publisher's media
    /// is fanned out here), a timeout that is already due handled once.
    fn drive(&mut self, idx: usize, now: Instant) {
        let mut media = vec![];
        let mut timed_out = false;
        let peer = &mut self.peers[idx];
        loop {
            match peer.rtc.poll_output() {
                Ok(Output::Transmit(t)) => self.out.push((t.contents, t.destination)),
                Ok(Output::Event(event)) => match event {
                    Event::Connected => {
                        peer.connected = true;
                        self.keyframes.wanted = true;
                    }
                    Event::RtpPacket(packet) if peer.publisher => media.push(packet),
                    Event::KeyframeRequest(_) => self.keyframes.wanted = true,
                    _ => {}
                },
                Ok(Output::Timeout(at)) => {
                    if at <= now && !std::mem::replace(&mut timed_out, true) {
                        let _ = peer.rtc.handle_input(Input::Timeout(now));
                        continue;
                    }
                    peer.deadline = at.min(now + Duration::from_millis(100));
                    break;
                }
                Err(_) => {
                    peer.deadline = now + Duration::from_millis(100);
                    break;
                }
            }
        }
        for packet in media {
            self.fan_out(&packet, now);
        }
    }

    /// One publisher packet to every connected viewer, in a loop.
    fn fan_out(&mut self, packet: &RtpPacket, now: Instant) {
        let video = *packet.header.payload_type == self.publisher_vp8;
        for idx in 0..self.peers.len() {
            let peer = &mut self.peers[idx];
            if !peer.connected {
                continue;
            }
            let Some(out) = (if video { peer.video.as_mut() } else { peer.audio.as_mut() }) else { continue };
            let extended = *packet.seq_no;
            let base = *out.rollover_base.get_or_insert(extended & !0xFFFF);
            let Some(seq) = extended.checked_sub(base) else { continue };
            let write = RtpWrite::new(
                out.payload_type.into(),
                seq.into(),
                packet.header.timestamp,
                packet.timestamp,
                packet.payload.clone(),
            )
            .marker(packet.header.marker)
            .nackable(true);
            let ssrc = out.ssrc;
            if let Some(stream) = peer.rtc.direct_api().stream_tx(&ssrc) {
                stream.write_rtp(write);
            }
            self.drive(idx, now);
        }
    }
}

impl Engine for Sfu {
    type Datagram = DatagramSend;

    fn command(&mut self, command: Command) {
        let (sdp, reply, publisher) = match command {
            Command::Publish(sdp, reply) => (sdp, reply, true),
            Command::Subscribe(sdp, reply) => (sdp, reply, false),
        };
        let _ = reply.send(self.add_peer(&sdp, publisher).map_err(|e| e.to_string()));
    }

    fn timers(&mut self) {
        let now = Instant::now();
        for idx in 0..self.peers.len() {
            if self.peers[idx].deadline <= now {
                self.drive(idx, now);
            }
        }
    }

    fn datagram(&mut self, data: &[u8], from: SocketAddr) {
        let Some(idx) = self.routes.route(data, from) else { return };
        let now = Instant::now();
        let Ok(receive) = Receive::new(Protocol::Udp, from, self.local, data) else { return };
        if self.peers[idx].rtc.handle_input(Input::Receive(now, receive)).is_ok() {
            self.drive(idx, now);
        }
    }

    fn ask_keyframe(&mut self) {
        let (Some(publisher), Some(mid)) = (self.publisher, self.publisher_video) else { return };
        if !self.keyframes.due() {
            return;
        }
        if let Some(stream) = self.peers[publisher].rtc.direct_api().stream_rx_by_mid(mid, None) {
            stream.request_keyframe(KeyframeRequestKind::Pli);
        }
        self.drive(publisher, Instant::now());
    }

    fn out(&mut self) -> &mut Vec<(DatagramSend, SocketAddr)> {
        &mut self.out
    }
}

/// The m-lines of an SDP, in order: (is it video, its mid).
fn media_lines(sdp: &str) -> Vec<(bool, Mid)> {
    let mut video = false;
    sdp.lines()
        .filter_map(|l| {
            let l = l.trim();
            if let Some(m) = l.strip_prefix("m=") {
                video = m.starts_with("video");
            }
            l.strip_prefix("a=mid:").map(|mid| (video, Mid::from(mid.trim())))
        })
        .collect()
}
