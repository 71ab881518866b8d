//! One participant's connection: applies the client's offers, answers and
//! candidates, adds and removes the tracks it is sent, and renegotiates.
//! The server is the impolite peer: an offer from the client that crosses
//! the server's own is refused, and the client rolls its own back.
//!
//! What concerns other connections (a sink to add to a source, a source
//! that opened) is returned to the worker as [`Action`]s.

use std::{
    collections::{BTreeMap, HashMap},
    net::SocketAddr,
    time::Instant,
};

use rtc::{
    media_stream::MediaStreamTrack,
    peer_connection::{
        certificate::RTCCertificate,
        configuration::{
            interceptor_registry::register_default_interceptors, media_engine::MediaEngine,
            setting_engine::SettingEngineBuilder, RTCConfigurationBuilder,
        },
        sdp::RTCSessionDescription,
        transport::{CandidateConfig, CandidateHostConfig, RTCDtlsRole, RTCIceCandidate, RTCIceCandidateInit},
        RTCPeerConnection, RTCPeerConnectionBuilder,
    },
    rtp_transceiver::{
        rtp_sender::{RTCRtpCodingParameters, RTCRtpEncodingParameters, RtpCodecKind},
        RTCRtpTransceiverDirection, RTCRtpTransceiverId, RTCRtpTransceiverInit,
    },
};

use super::{codec, interceptors, ClientSignal, Kind, LocalTrack, MediaEvent, Refusal, Sink, SourceId};

/// A track this connection sends.
pub struct Sending {
    pub source: SourceId,
    transceiver: RTCRtpTransceiverId,
    pub ssrc: u32,
    mime_type: String,
    /// Handed to the source's fan-out.
    pub attached: bool,
}

/// What the worker must do for a connection.
pub enum Action {
    /// Start fanning `source` out to this connection.
    Attach {
        source: SourceId,
        name: String,
        ssrc: u32,
        payload_type: u8,
    },
    Detach {
        source: SourceId,
    },
}

pub struct Connection {
    pub pc: RTCPeerConnection,
    pub sink: Sink,
    pub ufrag: String,
    /// Addresses the client's datagrams came from.
    pub addrs: Vec<SocketAddr>,
    may_publish: bool,
    pub connected: bool,
    /// Our offer awaits the client's answer.
    offer_outstanding: bool,
    /// Tracks were added or removed since our last offer.
    dirty: bool,
    /// What this connection is sent, by the room's name for it.
    pub sending: BTreeMap<String, Sending>,
    /// Tracks the client publishes: the engine's track id → the source.
    pub incoming: HashMap<String, SourceId>,
    /// When the worker will next call `handle_timeout`.
    pub wake: Option<Instant>,
}

impl Connection {
    pub fn new(pc: RTCPeerConnection, ufrag: String, may_publish: bool, sink: Sink) -> Connection {
        Connection {
            pc,
            sink,
            ufrag,
            addrs: vec![],
            may_publish,
            connected: false,
            offer_outstanding: false,
            dirty: false,
            sending: BTreeMap::new(),
            incoming: HashMap::new(),
            wake: None,
        }
    }
    /// A peer connection with the room's codecs and interceptors, ICE
    /// credentials `ufrag`/`password`, and one host candidate: `announced`.
    pub fn peer_connection(
        now: Instant,
        certificate: RTCCertificate,
        announced: SocketAddr,
        ufrag: &str,
        password: String,
    ) -> anyhow::Result<RTCPeerConnection> {
        let mut media = MediaEngine::default();
        codec::register(&mut media)?;
        let registry = register_default_interceptors(interceptors::registry(), &mut media)?;
        // When answering, the server is always the DTLS server
        // (`setup:passive`): a client that answered the server's first offer
        // is already the DTLS client, and a browser refuses an answer that
        // would swap the roles ("Failed to set SSL role").
        // A browser's checks often reach us before its trickled candidates:
        // choosing such a peer-reflexive pair at once saves a second.
        let settings = SettingEngineBuilder::new()
            .with_answering_dtls_role(RTCDtlsRole::Server)
            .with_multicast_dns_mode(rtc::ice::mdns::MulticastDnsMode::Disabled)
            .with_prflx_acceptance_min_wait(Some(std::time::Duration::ZERO))
            .with_ice_credentials(ufrag.to_string(), password);
        let mut pc = RTCPeerConnectionBuilder::new()
            .with_configuration(RTCConfigurationBuilder::new().with_certificates(vec![certificate]).build())
            .with_setting_engine(settings.build())
            .with_media_engine(media)
            .with_interceptor_registry(registry)
            .build(now)?;
        let host = CandidateHostConfig {
            base_config: CandidateConfig {
                network: "udp".to_owned(),
                address: announced.ip().to_string(),
                port: announced.port(),
                component: 1,
                ..Default::default()
            },
            ..Default::default()
        }
        .new_candidate_host()?;
        pc.add_local_candidate(RTCIceCandidate::from(&host).to_json()?)?;
        pc.add_local_candidate(RTCIceCandidateInit::default())?;
        Ok(pc)
    }

    fn refuse(&self, refusal: Refusal) {
        (self.sink)(MediaEvent::Refused(refusal));
    }

    pub fn allow_publish(&mut self, allowed: bool) {
        self.may_publish = allowed;
    }

    pub fn signal(&mut self, now: Instant, signal: ClientSignal) -> Vec<Action> {
        match signal {
            ClientSignal::Offer(sdp) => self.offer(now, sdp),
            ClientSignal::Answer(sdp) => self.answer(now, sdp),
            ClientSignal::Candidate(c) => {
                let init = RTCIceCandidateInit {
                    candidate: c.candidate,
                    sdp_mid: c.sdp_mid,
                    sdp_mline_index: c.sdp_mline_index,
                    username_fragment: c.username_fragment,
                    url: None,
                };
                if let Err(e) = self.pc.add_remote_candidate(init) {
                    self.refuse(Refusal::BadCandidate(e.to_string()));
                }
                vec![]
            }
        }
    }

    fn offer(&mut self, now: Instant, sdp: String) -> Vec<Action> {
        if self.offer_outstanding {
            tracing::debug!(ufrag = %self.ufrag, "glare: the client's offer crossed ours");
            self.refuse(Refusal::Glare);
            return vec![];
        }
        if let Err(e) = RTCSessionDescription::offer(sdp).and_then(|d| self.pc.set_remote_description(now, d)) {
            self.refuse(Refusal::BadSdp(format!("the offer could not be applied: {e}")));
            self.back_to_stable(now);
            return vec![];
        }
        // Media the client wants to send arrives on transceivers that
        // receive. Without the publish grant those are switched off before
        // answering, so the answer refuses them and nothing flows.
        let mut refused = 0;
        if !self.may_publish {
            let ids: Vec<_> = self.pc.get_transceivers().collect();
            for id in ids {
                if let Some(mut t) = self.pc.rtp_transceiver(id) {
                    if matches!(
                        t.direction(),
                        RTCRtpTransceiverDirection::Recvonly | RTCRtpTransceiverDirection::Sendrecv
                    ) {
                        t.set_direction(RTCRtpTransceiverDirection::Inactive);
                        refused += 1;
                    }
                }
            }
        }
        let answered = self.pc.create_answer(None).and_then(|a| self.pc.set_local_description(now, a));
        match answered.map(|()| self.pc.local_description()) {
            Ok(Some(desc)) => (self.sink)(MediaEvent::Answer(desc.sdp)),
            Ok(None) => self.refuse(Refusal::BadSdp("no answer could be made for this offer".into())),
            Err(e) => {
                self.refuse(Refusal::BadSdp(format!("no answer could be made for this offer: {e}")));
                self.back_to_stable(now);
            }
        }
        if refused > 0 {
            self.refuse(Refusal::PublishNotAllowed);
        }
        let actions = self.attach_ready();
        if self.dirty {
            self.negotiate(now);
        }
        actions
    }

    fn answer(&mut self, now: Instant, sdp: String) -> Vec<Action> {
        if !self.offer_outstanding {
            self.refuse(Refusal::BadSdp("no offer from the server awaits an answer".into()));
            return vec![];
        }
        // Checked first: a wrong description would be half-applied (the
        // signalling state changes before the m-lines are matched).
        let ours = self.pc.pending_local_description().map(|d| d.sdp).unwrap_or_default();
        let applied = match codec::answer_mismatch(&ours, &sdp) {
            Some(why) => Err(format!("this is not an answer to the server's offer: {why}")),
            None => RTCSessionDescription::answer(sdp)
                .and_then(|d| self.pc.set_remote_description(now, d))
                .map_err(|e| format!("the answer could not be applied: {e}")),
        };
        self.offer_outstanding = false;
        let mut actions = vec![];
        if let Err(why) = applied {
            // Waiting for another answer would stall every later change:
            // our offer is withdrawn and made again.
            tracing::debug!(ufrag = %self.ufrag, %why, "a bad answer: offering again");
            self.refuse(Refusal::BadSdp(why));
            self.back_to_stable(now);
            self.dirty = true;
        } else {
            actions = self.attach_ready();
        }
        if self.dirty {
            self.negotiate(now);
        }
        actions
    }

    /// Rolls back whichever half of an exchange is pending, so that a
    /// failed one leaves the connection ready to negotiate again.
    fn back_to_stable(&mut self, now: Instant) {
        let done = if self.pc.pending_local_description().is_some() {
            RTCSessionDescription::rollback(None).and_then(|r| self.pc.set_local_description(now, r))
        } else if self.pc.pending_remote_description().is_some() {
            RTCSessionDescription::rollback(None).and_then(|r| self.pc.set_remote_description(now, r))
        } else {
            return;
        };
        if let Err(e) = done {
            tracing::warn!(ufrag = %self.ufrag, error = %e, "failed to roll back a negotiation");
        }
    }

    /// Offers the current set of tracks, unless an offer is already out
    /// (then the answer to it triggers the next one).
    fn negotiate(&mut self, now: Instant) {
        if self.offer_outstanding {
            return;
        }
        self.dirty = false;
        let offered = self.pc.create_offer(None).and_then(|o| self.pc.set_local_description(now, o));
        match offered.map(|()| self.pc.local_description()) {
            Ok(Some(desc)) => {
                self.offer_outstanding = true;
                (self.sink)(MediaEvent::Offer(desc.sdp));
            }
            Ok(None) => {
                self.dirty = true;
                tracing::warn!(ufrag = %self.ufrag, "no local offer after setting it");
            }
            Err(e) => {
                self.dirty = true;
                tracing::warn!(ufrag = %self.ufrag, error = %e, "failed to make an offer");
            }
        }
    }

    pub fn subscribe(&mut self, now: Instant, source: SourceId, track: LocalTrack) {
        let Some(codec) = codec::codec_for(&track.mime_type) else {
            tracing::warn!(track = %track.name, mime = %track.mime_type, "no codec to send this track with");
            return;
        };
        if self.sending.contains_key(&track.name) {
            return;
        }
        let ssrc = rand::random::<u32>();
        let kind = match track.kind {
            Kind::Audio => RtpCodecKind::Audio,
            Kind::Video => RtpCodecKind::Video,
        };
        let local = MediaStreamTrack::new(
            track.stream.clone(),
            track.name.clone(),
            track.name.clone(),
            kind,
            vec![RTCRtpEncodingParameters {
                rtp_coding_parameters: RTCRtpCodingParameters { ssrc: Some(ssrc), ..Default::default() },
                codec,
                ..Default::default()
            }],
        );
        let init = RTCRtpTransceiverInit { direction: RTCRtpTransceiverDirection::Sendonly, ..Default::default() };
        match self.pc.add_transceiver_from_track(local, Some(init)) {
            Ok(transceiver) => {
                let sending = Sending { source, transceiver, ssrc, mime_type: track.mime_type, attached: false };
                self.sending.insert(track.name, sending);
                self.dirty = true;
                self.negotiate(now);
            }
            Err(e) => tracing::warn!(ufrag = %self.ufrag, track = %track.name, error = %e, "failed to add a track"),
        }
    }

    pub fn unsubscribe(&mut self, now: Instant, name: &str) -> Vec<Action> {
        let Some(s) = self.sending.remove(name) else { return vec![] };
        let sender = self.pc.rtp_transceiver(s.transceiver).and_then(|t| t.sender());
        if let Some(sender) = sender {
            if let Err(e) = self.pc.remove_track(sender) {
                tracing::debug!(track = name, error = %e, "failed to remove a track");
            }
        }
        self.dirty = true;
        self.negotiate(now);
        vec![Action::Detach { source: s.source }]
    }

    /// The connection is up.
    pub fn connected(&mut self) -> Vec<Action> {
        self.connected = true;
        self.attach_ready()
    }

    /// Hands each negotiated, not yet attached track to its source once
    /// the connection is up, and tells the owner it can ask for a keyframe.
    fn attach_ready(&mut self) -> Vec<Action> {
        if !self.connected || self.offer_outstanding {
            return vec![];
        }
        let mut actions = vec![];
        for (name, s) in self.sending.iter_mut().filter(|(_, s)| !s.attached) {
            if !self.pc.rtp_transceiver(s.transceiver).is_some_and(|t| t.mid().is_some()) {
                continue;
            }
            // What we registered, unless the negotiation settled on another number.
            let mut payload_type = codec::payload_type_for(&s.mime_type).unwrap_or(0);
            if let Some(sender) = self.pc.rtp_transceiver(s.transceiver).and_then(|t| t.sender()) {
                if let Some(mut sender) = self.pc.rtp_sender(sender) {
                    if let Some(c) = sender
                        .get_parameters()
                        .rtp_parameters
                        .codecs
                        .iter()
                        .find(|c| c.rtp_codec.mime_type.eq_ignore_ascii_case(&s.mime_type))
                    {
                        payload_type = c.payload_type;
                    }
                }
            }
            s.attached = true;
            actions.push(Action::Attach { source: s.source, name: name.clone(), ssrc: s.ssrc, payload_type });
            (self.sink)(MediaEvent::SubscriberReady(name.clone()));
        }
        actions
    }

    /// The room's name of the track this connection sends with `ssrc`.
    pub fn sent_as(&self, ssrc: u32) -> Option<&str> {
        self.sending.iter().find(|(_, s)| s.ssrc == ssrc).map(|(name, _)| name.as_str())
    }
}
