//! One task per participant owns their peer connection: it applies the
//! client's offers, answers and candidates, adds and removes the tracks the
//! room sends them, renegotiates, and tells the room when a track reaches a
//! subscriber (so a keyframe can be asked for).

use std::{collections::BTreeMap, sync::Arc};

use rtc::rtp_transceiver::{RTCRtpTransceiverDirection, RTCRtpTransceiverInit};
use tokio::sync::mpsc;
use tracing::Instrument;
use webrtc::{
    media_stream::track_local::{static_rtp::TrackLocalStaticRTP, TrackLocal, TrackLocalEvent},
    peer_connection::{PeerConnection, RTCIceCandidateInit, RTCPeerConnectionState, RTCSessionDescription},
    rtp_transceiver::RtpTransceiver,
};

use super::{
    command::{Outbox, Outgoing, RoomCommand},
    engine::{self, Engine, Forwarder, ForwarderCommand, PeerEvent},
    protocol::{close, Candidate, ClientMessage, ErrorCode, ServerMessage, TrackInfo},
    room::{ConnId, LeaveReason, MediaKind, ParticipantId, TrackId},
};

pub enum PeerCommand {
    /// An offer, answer or candidate from the client.
    Client(ClientMessage),
    Subscribe {
        track: TrackInfo,
        forwarder: Forwarder,
    },
    Unsubscribe {
        track: TrackId,
    },
    /// Brought on stage (true) or taken off it (false).
    AllowPublish(bool),
    Close,
}

pub type Peer = mpsc::UnboundedSender<PeerCommand>;

pub struct PeerContext {
    pub participant: ParticipantId,
    pub conn: ConnId,
    pub may_publish: bool,
    pub out: Outbox,
    pub room: mpsc::UnboundedSender<RoomCommand>,
}

struct Sending {
    local: Arc<TrackLocalStaticRTP>,
    ssrc: u32,
    mime_type: String,
    transceiver: Arc<dyn RtpTransceiver>,
    forwarder: Forwarder,
    attached: bool,
}

struct PeerTask {
    ctx: PeerContext,
    pc: Arc<dyn PeerConnection>,
    engine: Arc<Engine>,
    sending: BTreeMap<TrackId, Sending>,
    connected: bool,
    /// Our offer awaits the client's answer.
    offer_outstanding: bool,
    /// Tracks were added or removed since our last offer.
    dirty: bool,
}

/// Starts the participant's task; it builds the peer connection first (on
/// failure the client is told with close code 4011 and counted as dropped).
pub fn spawn(ctx: PeerContext, engine: Arc<Engine>) -> Peer {
    let (tx, rx) = mpsc::unbounded_channel();
    let span = tracing::info_span!("peer", participant = ctx.participant, conn = ctx.conn);
    tokio::spawn(
        async move {
            let (events_tx, events) = mpsc::unbounded_channel();
            let pc = match engine.peer(events_tx).await {
                Ok(pc) => pc,
                Err(e) => {
                    tracing::error!(participant = ctx.participant, error = ?e, "no media connection for a participant");
                    let _ = ctx.out.send(Outgoing::Close(close::SERVER_ERROR, "no media connection could be made"));
                    let _ = ctx.room.send(RoomCommand::Leave {
                        participant: ctx.participant,
                        conn: ctx.conn,
                        reason: LeaveReason::Dropped,
                    });
                    return;
                }
            };
            let task = PeerTask {
                ctx,
                pc,
                engine,
                sending: BTreeMap::new(),
                connected: false,
                offer_outstanding: false,
                dirty: false,
            };
            task.run(rx, events).await
        }
        .instrument(span),
    );
    tx
}

impl PeerTask {
    async fn run(
        mut self,
        mut commands: mpsc::UnboundedReceiver<PeerCommand>,
        mut events: mpsc::UnboundedReceiver<PeerEvent>,
    ) {
        loop {
            tokio::select! {
                command = commands.recv() => match command {
                    Some(PeerCommand::Client(message)) => self.client(message).await,
                    Some(PeerCommand::Subscribe { track, forwarder }) => self.subscribe(track, forwarder).await,
                    Some(PeerCommand::Unsubscribe { track }) => self.unsubscribe(&track).await,
                    Some(PeerCommand::AllowPublish(allowed)) => self.ctx.may_publish = allowed,
                    Some(PeerCommand::Close) | None => break,
                },
                Some(event) = events.recv() => self.event(event).await,
            }
        }
        for (_, s) in std::mem::take(&mut self.sending) {
            let _ = s.forwarder.send(ForwarderCommand::Detach { subscriber: (self.ctx.participant, self.ctx.conn) });
        }
        if let Err(e) = self.pc.close().await {
            tracing::debug!(participant = self.ctx.participant, error = %e, "closing a peer connection failed");
        }
    }

    fn send(&self, message: ServerMessage) {
        let _ = self.ctx.out.send(Outgoing::Message(message));
    }

    fn error(&self, code: ErrorCode, message: impl Into<String>) {
        self.send(ServerMessage::error(code, message));
    }

    async fn client(&mut self, message: ClientMessage) {
        match message {
            ClientMessage::Offer { sdp } => self.offer(sdp).await,
            ClientMessage::Answer { sdp } => self.answer(sdp).await,
            ClientMessage::Candidate { candidate: Some(c) } => {
                let init = RTCIceCandidateInit {
                    candidate: c.candidate,
                    sdp_mid: c.sdp_mid,
                    sdp_mline_index: c.sdp_mline_index,
                    username_fragment: c.username_fragment,
                    url: None,
                };
                if let Err(e) = self.pc.add_ice_candidate(init).await {
                    self.error(ErrorCode::BadCandidate, format!("the candidate was refused: {e}"));
                }
            }
            ClientMessage::Candidate { candidate: None } => {}
            // The room task handles these; they never reach the peer.
            ClientMessage::Join { .. } | ClientMessage::Leave | ClientMessage::Action(_) => {}
        }
    }

    async fn offer(&mut self, sdp: String) {
        // The server is the impolite peer: a client offer that crosses ours is
        // ignored (the client rolls its own back when ours reaches it).
        if self.offer_outstanding {
            tracing::debug!(participant = self.ctx.participant, "glare: the client's offer crossed ours");
            self.error(ErrorCode::Glare, "answer the server's offer first, then offer again");
            return;
        }
        let applied = match RTCSessionDescription::offer(sdp) {
            Ok(desc) => self.pc.set_remote_description(desc).await,
            Err(e) => Err(e),
        };
        if let Err(e) = applied {
            self.error(ErrorCode::BadSdp, format!("the offer could not be applied: {e}"));
            self.back_to_stable().await;
            return;
        }
        // Media the client wants to send arrives on transceivers that receive.
        // Without the publish grant those are switched off before answering,
        // so the answer refuses them and nothing flows.
        let mut refused = 0;
        if !self.ctx.may_publish {
            for t in self.pc.get_transceivers().await {
                if matches!(
                    t.direction().await,
                    Ok(RTCRtpTransceiverDirection::Recvonly | RTCRtpTransceiverDirection::Sendrecv)
                ) && t.set_direction(RTCRtpTransceiverDirection::Inactive).await.is_ok()
                {
                    refused += 1;
                }
            }
        }
        let answered = async {
            let answer = self.pc.create_answer(None).await?;
            self.pc.set_local_description(answer).await?;
            Ok::<_, webrtc::error::Error>(self.pc.local_description().await)
        }
        .await;
        match answered {
            Ok(Some(desc)) => self.send(ServerMessage::Answer { sdp: self.engine.announce_sdp(desc.sdp) }),
            Ok(None) => self.error(ErrorCode::BadSdp, "no answer could be made for this offer"),
            Err(e) => {
                self.error(ErrorCode::BadSdp, format!("no answer could be made for this offer: {e}"));
                self.back_to_stable().await;
            }
        }
        if refused > 0 {
            self.error(ErrorCode::PublishNotAllowed, "you may not publish in this session: your media was refused");
        }
        self.attach_ready().await;
        if self.dirty {
            self.negotiate().await;
        }
    }

    async fn answer(&mut self, sdp: String) {
        if !self.offer_outstanding {
            self.error(ErrorCode::BadSdp, "no offer from the server awaits an answer");
            return;
        }
        // Checked first: the crate changes the signalling state before it
        // matches m-lines, so a wrong description would be half-applied.
        let ours = self.pc.pending_local_description().await.map(|d| d.sdp).unwrap_or_default();
        let applied = match engine::answer_mismatch(&ours, &sdp) {
            Some(why) => Err(format!("this is not an answer to the server's offer: {why}")),
            None => match RTCSessionDescription::answer(sdp) {
                Ok(desc) => self.pc.set_remote_description(desc).await,
                Err(e) => Err(e),
            }
            .map_err(|e| format!("the answer could not be applied: {e}")),
        };
        self.offer_outstanding = false;
        if let Err(why) = applied {
            // Waiting for another answer would stall every later change for
            // this participant: our offer is withdrawn and made again.
            tracing::debug!(participant = self.ctx.participant, %why, "a bad answer: offering again");
            self.error(ErrorCode::BadSdp, why);
            self.back_to_stable().await;
            self.dirty = true;
        } else {
            self.attach_ready().await;
        }
        if self.dirty {
            self.negotiate().await;
        }
    }

    /// Rolls back whichever half of an exchange is pending, so that a failed
    /// one leaves the connection ready to negotiate again.
    async fn back_to_stable(&mut self) {
        let rollback = if self.pc.pending_local_description().await.is_some() {
            RTCSessionDescription::rollback(None).map(|r| (r, true))
        } else if self.pc.pending_remote_description().await.is_some() {
            RTCSessionDescription::rollback(None).map(|r| (r, false))
        } else {
            return;
        };
        let done = match rollback {
            Ok((r, true)) => self.pc.set_local_description(r).await,
            Ok((r, false)) => self.pc.set_remote_description(r).await,
            Err(e) => Err(e),
        };
        if let Err(e) = done {
            tracing::warn!(participant = self.ctx.participant, error = %e, "failed to roll back a negotiation");
        }
    }

    /// Offers the current set of tracks, unless an offer is already out (then
    /// the answer to it triggers the next one).
    async fn negotiate(&mut self) {
        if self.offer_outstanding {
            return;
        }
        self.dirty = false;
        let offered = async {
            let offer = self.pc.create_offer(None).await?;
            self.pc.set_local_description(offer).await?;
            Ok::<_, webrtc::error::Error>(self.pc.local_description().await)
        }
        .await;
        match offered {
            Ok(Some(desc)) => {
                self.offer_outstanding = true;
                self.send(ServerMessage::Offer { sdp: self.engine.announce_sdp(desc.sdp) });
            }
            // Still to be offered: the next exchange tries again.
            Ok(None) => {
                self.dirty = true;
                tracing::warn!(participant = self.ctx.participant, "no local offer after setting it")
            }
            Err(e) => {
                self.dirty = true;
                tracing::warn!(participant = self.ctx.participant, error = %e, "failed to make an offer")
            }
        }
    }

    async fn subscribe(&mut self, track: TrackInfo, forwarder: Forwarder) {
        let Some(codec) = engine::codec_for(&track.mime_type) else {
            tracing::warn!(track = %track.id, mime = %track.mime_type, "no codec to send this track with");
            return;
        };
        let kind = if track.kind == "audio" { MediaKind::Audio } else { MediaKind::Video };
        let (local, ssrc) = engine::local_track(&track.participant_id, &track.id, kind, codec);
        let init = RTCRtpTransceiverInit { direction: RTCRtpTransceiverDirection::Sendonly, ..Default::default() };
        match self.pc.add_transceiver_from_track(local.clone(), Some(init)).await {
            Ok(transceiver) => {
                self.sending.insert(
                    track.id.clone(),
                    Sending { local, ssrc, mime_type: track.mime_type, transceiver, forwarder, attached: false },
                );
                self.dirty = true;
                self.negotiate().await;
            }
            Err(e) => {
                tracing::warn!(participant = self.ctx.participant, track = %track.id, error = %e, "failed to add a track")
            }
        }
    }

    async fn unsubscribe(&mut self, track: &str) {
        let Some(s) = self.sending.remove(track) else { return };
        let _ = s.forwarder.send(ForwarderCommand::Detach { subscriber: (self.ctx.participant, self.ctx.conn) });
        if let Ok(Some(sender)) = s.transceiver.sender().await {
            if let Err(e) = self.pc.remove_track(&sender).await {
                tracing::debug!(track, error = %e, "failed to remove a track");
            }
        }
        self.dirty = true;
        self.negotiate().await;
    }

    /// Hands each negotiated, not yet attached track to its forwarder once
    /// the connection is up, and tells the room it can ask for a keyframe.
    async fn attach_ready(&mut self) {
        if !self.connected || self.offer_outstanding {
            return;
        }
        for (track_id, s) in self.sending.iter_mut().filter(|(_, s)| !s.attached) {
            if !matches!(s.transceiver.mid().await, Ok(Some(_))) {
                continue;
            }
            // What we registered, unless the negotiation settled on another number.
            let mut payload_type = engine::payload_type_for(&s.mime_type).unwrap_or(0);
            if let Ok(Some(sender)) = s.transceiver.sender().await {
                if let Ok(params) = sender.get_parameters().await {
                    if let Some(c) = params
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
            let _ = s.forwarder.send(ForwarderCommand::Attach {
                subscriber: (self.ctx.participant, self.ctx.conn),
                local: s.local.clone(),
                ssrc: s.ssrc,
                payload_type,
            });
            // Bound now: watch the subscriber's feedback on it for keyframe requests.
            let (local, room, participant, conn, track) =
                (s.local.clone(), self.ctx.room.clone(), self.ctx.participant, self.ctx.conn, track_id.clone());
            tokio::spawn(async move {
                while let Some(event) = local.poll().await {
                    let TrackLocalEvent::OnRtcpPacket(packets) = event else { continue };
                    if packets.iter().any(|p| engine::is_keyframe_request(p.as_ref())) {
                        let command = RoomCommand::KeyframeWanted { participant, conn, track: track.clone() };
                        if room.send(command).is_err() {
                            break;
                        }
                    }
                }
            });
            let _ = self.ctx.room.send(RoomCommand::SubscriberReady {
                participant: self.ctx.participant,
                conn: self.ctx.conn,
                track: track_id.clone(),
            });
        }
    }

    async fn event(&mut self, event: PeerEvent) {
        match event {
            PeerEvent::Candidate(event) => match event.candidate.to_json() {
                Ok(init) => self.send(ServerMessage::Candidate {
                    candidate: Candidate {
                        candidate: init.candidate,
                        sdp_mid: init.sdp_mid,
                        sdp_mline_index: init.sdp_mline_index,
                        username_fragment: init.username_fragment,
                    },
                }),
                Err(e) => tracing::debug!(error = %e, "a local candidate could not be serialised"),
            },
            PeerEvent::Track(remote) => {
                let kind = engine::kind_of(webrtc::media_stream::Track::kind(&*remote).await);
                let ssrc = webrtc::media_stream::Track::ssrcs(&*remote).await.first().copied();
                let mime_type = match ssrc {
                    Some(ssrc) => webrtc::media_stream::Track::codec(&*remote, ssrc).await.map(|c| c.mime_type),
                    None => None,
                };
                // The publisher chose the audio-level extension's id in its offer.
                let audio_level_ext = match kind {
                    Some(MediaKind::Audio) => self
                        .pc
                        .remote_description()
                        .await
                        .and_then(|d| engine::extmap_id(&d.sdp, engine::AUDIO_LEVEL_URI)),
                    _ => None,
                };
                let _ = self.ctx.room.send(RoomCommand::TrackArrived {
                    participant: self.ctx.participant,
                    conn: self.ctx.conn,
                    remote,
                    kind,
                    mime_type,
                    audio_level_ext,
                });
            }
            PeerEvent::State(state) => {
                tracing::debug!(participant = self.ctx.participant, %state, "peer connection state");
                if state == RTCPeerConnectionState::Connected {
                    self.connected = true;
                    self.attach_ready().await;
                }
            }
        }
    }
}
