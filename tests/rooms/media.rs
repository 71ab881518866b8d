use std::time::{Duration, Instant};

use crate::{
    client::{connect, Client},
    helpers::{spawn_app, Backend},
    room_token, session_with_people,
};

/// Waits until `client` has received RTP for `n` audio and `n` video packets.
async fn receives_both(client: &Client, n: u64, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        {
            let r = client.received.lock().unwrap();
            if r.packets_of("audio") >= n && r.packets_of("video") >= n && r.keyframes > 0 {
                return true;
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_attendees_receive_the_presenters_video_and_audio() {
    let app = spawn_app(Backend::Sqlite).await;
    let (id, _, presenter, attendees) = session_with_people(&app, &["Ann", "Ben", "Cat"]).await;

    let mut priya = connect(&app.url, id, Some(&room_token(&app, id, &presenter).await)).await;
    priya.join().await;
    priya.publish();
    priya.expect("the answer to the presenter's offer", |m| m["type"] == "answer").await;
    let video =
        priya.expect("the video published", |m| m["type"] == "track_published" && m["track"]["kind"] == "video").await;
    assert_eq!(video["track"]["mime_type"], "video/VP8");
    // Both tracks are in the room before anyone joins (they arrive independently).
    priya.expect("the audio published", |m| m["type"] == "track_published" && m["track"]["kind"] == "audio").await;

    let mut viewers = vec![];
    for token in &attendees {
        let mut c = connect(&app.url, id, Some(&room_token(&app, id, token).await)).await;
        let welcome = c.join().await;
        assert_eq!(welcome["tracks"].as_array().unwrap().len(), 2, "{welcome}");
        viewers.push(c);
    }
    for (i, viewer) in viewers.iter().enumerate() {
        assert!(
            receives_both(viewer, 20, Duration::from_secs(10)).await,
            "attendee {i} received {:?}",
            viewer.received.lock().unwrap()
        );
    }
    let mut firsts = vec![];
    for viewer in &viewers {
        let r = viewer.received.lock().unwrap();
        assert_eq!(r.bad_vp8, 0, "VP8 payloads arrive as sent");
        assert_eq!(r.kinds.len(), 2, "one audio and one video track: {:?}", r.kinds);
        assert!(r.kinds.contains_key(video["track"]["id"].as_str().unwrap()), "track ids match the announcement");
        firsts.push(r.first_packet.unwrap().duration_since(viewer.joined_at));
    }
    // The presenter only sends a keyframe when asked: the viewers decoding
    // one proves their keyframe requests reached it.
    let asked = priya.keyframe_requests.load(std::sync::atomic::Ordering::Relaxed);
    assert!(asked >= 1);
    println!("join-to-first-packet per attendee: {firsts:?}");

    // Over a steady window every viewer gets (nearly) every packet sent.
    let total = |c: &Client| {
        let r = c.received.lock().unwrap();
        r.packets_of("audio") + r.packets_of("video")
    };
    let sent_before = priya.sent.load(std::sync::atomic::Ordering::Relaxed);
    let before: Vec<u64> = viewers.iter().map(total).collect();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let sent = priya.sent.load(std::sync::atomic::Ordering::Relaxed) - sent_before;
    for (viewer, before) in viewers.iter().zip(before) {
        let got = total(viewer) - before;
        assert!(got as f64 >= sent as f64 * 0.9, "sent {sent}, a viewer got {got}");
    }

    // A viewer's decoder asking for a keyframe reaches the presenter too
    // (after the rate limit's window).
    tokio::time::sleep(Duration::from_millis(600)).await;
    let before = priya.keyframe_requests.load(std::sync::atomic::Ordering::Relaxed);
    let keyframes = viewers[1].received.lock().unwrap().keyframes;
    viewers[1].request_keyframe().await;
    let deadline = Instant::now() + Duration::from_secs(5);
    while priya.keyframe_requests.load(std::sync::atomic::Ordering::Relaxed) == before
        || viewers[1].received.lock().unwrap().keyframes == keyframes
    {
        assert!(Instant::now() < deadline, "the viewer's keyframe request was not answered");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_attendee_without_the_publish_grant_cannot_publish() {
    let app = spawn_app(Backend::Sqlite).await;
    let (id, _, _, attendees) = session_with_people(&app, &["Ann", "Ben"]).await;
    let mut ann = connect(&app.url, id, Some(&room_token(&app, id, &attendees[0]).await)).await;
    ann.join().await;
    let mut ben = connect(&app.url, id, Some(&room_token(&app, id, &attendees[1]).await)).await;
    ben.join().await;

    ben.publish();
    let error = ben.expect("the refusal", |m| m["type"] == "error").await;
    assert_eq!(error["code"], "publish_not_allowed", "{error}");
    let answer = ben.expect("the answer", |m| m["type"] == "answer").await;
    let sdp = answer["sdp"].as_str().unwrap();
    assert!(!sdp.contains("a=recvonly"), "the answer accepts none of Ben's media:\n{sdp}");

    tokio::time::sleep(Duration::from_secs(2)).await;
    let seen = ann.drain();
    assert!(!seen.iter().any(|m| m["type"] == "track_published"), "{seen:?}");
    assert!(ann.received.lock().unwrap().packets.is_empty());
    // The room goes on.
    ben.send(serde_json::json!({"v": 1, "type": "leave"}));
    ann.expect("Ben's leaving", |m| m["type"] == "participant_left").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attendees_already_waiting_receive_each_presenter_as_they_start_and_stop() {
    let app = spawn_app(Backend::Sqlite).await;
    let (id, organiser, presenter, attendees) = session_with_people(&app, &["Ann", "Ben"]).await;
    let mut viewers = vec![];
    for token in &attendees {
        let mut c = connect(&app.url, id, Some(&room_token(&app, id, token).await)).await;
        c.join().await;
        viewers.push(c);
    }

    let mut priya = connect(&app.url, id, Some(&room_token(&app, id, &presenter).await)).await;
    priya.join().await;
    priya.publish();
    for (i, viewer) in viewers.iter().enumerate() {
        assert!(
            receives_both(viewer, 10, Duration::from_secs(10)).await,
            "attendee {i}: {:?}",
            viewer.received.lock().unwrap()
        );
    }

    // A second presenter starts on connections that are already up: the
    // server renegotiates them and they receive four tracks.
    let mut olivia = connect(&app.url, id, Some(&room_token(&app, id, &organiser).await)).await;
    olivia.join().await;
    olivia.publish();
    let deadline = Instant::now() + Duration::from_secs(10);
    for (i, viewer) in viewers.iter().enumerate() {
        loop {
            let flowing = {
                let r = viewer.received.lock().unwrap();
                r.packets.len() == 4 && r.packets.values().all(|n| *n >= 5)
            };
            if flowing {
                break;
            }
            assert!(Instant::now() < deadline, "attendee {i}: {:?}", viewer.received.lock().unwrap());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    // Each presenter receives the other.
    assert!(receives_both(&priya, 5, Duration::from_secs(10)).await, "{:?}", priya.received.lock().unwrap());

    // Priya leaves: her tracks are withdrawn for everyone.
    priya.send(serde_json::json!({"v": 1, "type": "leave"}));
    for viewer in viewers.iter_mut() {
        let mut gone = 0;
        while gone < 2 {
            viewer.expect("Priya's tracks withdrawn", |m| m["type"] == "track_unpublished").await;
            gone += 1;
        }
        viewer.expect("Priya's leaving", |m| m["type"] == "participant_left").await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_connection_uses_the_one_configured_port_and_announces_the_public_address() {
    use rtc::{
        peer_connection::{configuration::media_engine::MediaEngine, RTCPeerConnectionBuilder},
        rtp_transceiver::{rtp_sender::RtpCodecKind, RTCRtpTransceiverDirection, RTCRtpTransceiverInit},
    };
    use staffroom::{
        media::{ClientSignal, Media, MediaEvent},
        settings::RtcSettings,
    };

    let port = crate::helpers::free_udp_port();
    let media = Media::start(&RtcSettings {
        bind_ip: "127.0.0.1".parse().unwrap(),
        port,
        public_ip: Some("203.0.113.9".parse().unwrap()),
    })
    .expect("the media port binds");
    assert_eq!(media.local_addr().port(), port);
    // The port is the engine's for as long as it runs.
    assert!(std::net::UdpSocket::bind(("127.0.0.1", port)).is_err(), "the media port is held");
    let mut candidates = vec![];
    for _ in 0..3 {
        let mut engine = MediaEngine::default();
        staffroom::media::codec::register(&mut engine).unwrap();
        let mut client = RTCPeerConnectionBuilder::new().with_media_engine(engine).build(Instant::now()).unwrap();
        let init = RTCRtpTransceiverInit { direction: RTCRtpTransceiverDirection::Recvonly, ..Default::default() };
        client.add_transceiver_from_kind(RtpCodecKind::Audio, Some(init)).unwrap();
        let offer = client.create_offer(None).unwrap();
        let (tx, mut events) = tokio::sync::mpsc::unbounded_channel();
        let connection = media.open(false, Box::new(move |e| drop(tx.send(e))));
        connection.signal(ClientSignal::Offer(offer.sdp));
        let answer = tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                if let Some(MediaEvent::Answer(sdp)) = events.recv().await {
                    return sdp;
                }
            }
        })
        .await
        .expect("an answer");
        let lines: Vec<String> = answer.lines().filter(|l| l.starts_with("a=candidate:")).map(str::to_string).collect();
        assert!(!lines.is_empty(), "a host candidate: {answer}");
        for line in &lines {
            assert!(line.contains(&format!(" 203.0.113.9 {port} typ host")), "{line}");
        }
        candidates.push(lines);
        connection.close();
    }
    assert!(candidates.windows(2).all(|w| w[0] == w[1]), "every connection announces the same port: {candidates:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_active_speaker_follows_the_audio_level_publishers_send() {
    let app = spawn_app(Backend::Sqlite).await;
    let (id, organiser, presenter, attendees) = session_with_people(&app, &["Ann"]).await;
    let mut priya = connect(&app.url, id, Some(&room_token(&app, id, &presenter).await)).await;
    let priya_id = priya.join().await["you"]["id"].clone();
    let mut olivia = connect(&app.url, id, Some(&room_token(&app, id, &organiser).await)).await;
    let olivia_id = olivia.join().await["you"]["id"].clone();
    let mut ann = connect(&app.url, id, Some(&room_token(&app, id, &attendees[0]).await)).await;
    ann.join().await;

    priya.loudness.store(30, std::sync::atomic::Ordering::Relaxed);
    priya.publish();
    olivia.publish();
    let first = ann.expect("an active speaker", |m| m["type"] == "active_speaker").await;
    assert_eq!(first["participant_id"], priya_id);

    // Priya stops, Olivia starts: after the hold time Olivia is named.
    priya.loudness.store(127, std::sync::atomic::Ordering::Relaxed);
    olivia.loudness.store(20, std::sync::atomic::Ordering::Relaxed);
    let next =
        ann.expect("the next speaker", |m| m["type"] == "active_speaker" && m["participant_id"] == olivia_id).await;
    assert_eq!(next["participant_id"], olivia_id);
}
