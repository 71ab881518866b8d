//! The codecs a room speaks, and what the engine reads from and writes into
//! SDP: header-extension ids, the answer check, the announced address.

use rtc::{
    peer_connection::configuration::media_engine::MediaEngine,
    rtp_transceiver::rtp_sender::{
        RTCPFeedback, RTCRtpCodec, RTCRtpCodecParameters, RTCRtpHeaderExtensionCapability, RtpCodecKind,
    },
};

pub const VP8: &str = "video/VP8";
pub const OPUS: &str = "audio/opus";
pub const VP8_PAYLOAD_TYPE: u8 = 96;
/// RFC 6464: the sender's audio level in each audio packet, 0 (loudest) to
/// 127 (silence) −dBov. Browsers send it when it is negotiated.
pub const AUDIO_LEVEL_URI: &str = "urn:ietf:params:rtp-hdrext:ssrc-audio-level";
pub const OPUS_PAYLOAD_TYPE: u8 = 111;

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

/// Registers the room's codecs and the audio-level header extension (for
/// the active speaker) with a peer connection's media engine.
pub fn register(media: &mut MediaEngine) -> Result<(), rtc::shared::error::Error> {
    for (codec, kind) in codecs() {
        media.register_codec(codec, kind)?;
    }
    media.register_header_extension(
        RTCRtpHeaderExtensionCapability { uri: AUDIO_LEVEL_URI.into() },
        RtpCodecKind::Audio,
        None,
    )
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
}
