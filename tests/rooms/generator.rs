//! The benchmark's load generator, checked: with the 720p-like stream
//! (`Stream::Hd`) every subscriber counts both tracks, a keyframe, and next
//! to no loss, so the bench's figures rest on counting that works. Half the
//! subscribers are the bench's light viewers (`benches/support/light_viewer.rs`),
//! half the full client.

use std::{
    sync::{atomic::Ordering, Arc, Mutex},
    time::{Duration, Instant},
};

use crate::{
    client::{connect, Received, Stream, HD_PAYLOAD},
    helpers::{spawn_app, Backend},
    light_viewer, room_token, session_with_people,
};

fn counts(r: &Mutex<Received>) -> (u64, u64) {
    let r = r.lock().unwrap();
    (r.packets_of("audio") + r.packets_of("video"), r.gaps)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_subscriber_of_the_hd_stream_counts_both_tracks_with_under_one_percent_loss() {
    let app = spawn_app(Backend::Sqlite).await;
    let (id, _, presenter, attendees) = session_with_people(&app, &["Ann", "Ben", "Cat", "Dev"]).await;

    let mut priya = connect(&app.url, id, Some(&room_token(&app, id, &presenter).await)).await;
    priya.join().await;
    priya.publish_stream(Stream::Hd);
    priya.expect("the answer to the presenter's offer", |m| m["type"] == "answer").await;

    let (mut full, mut light, mut viewers): (Vec<_>, Vec<_>, Vec<Arc<Mutex<Received>>>) = (vec![], vec![], vec![]);
    for (i, token) in attendees.iter().enumerate() {
        let token = room_token(&app, id, token).await;
        if i % 2 == 0 {
            let mut c = connect(&app.url, id, Some(&token)).await;
            c.join().await;
            viewers.push(c.received.clone());
            full.push(c);
        } else {
            let joined = light_viewer::join_staffroom(&app.url, id, &token).await.expect("a light viewer joins");
            viewers.push(joined.0.received.clone());
            light.push(joined);
        }
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline && viewers.iter().any(|r| r.lock().unwrap().first_keyframe.is_none()) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let sent0 = priya.sent.load(Ordering::Relaxed);
    let before: Vec<(u64, u64)> = viewers.iter().map(|r| counts(r)).collect();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let sent = priya.sent.load(Ordering::Relaxed) - sent0;
    // Three seconds of 30 frames of 4 or 5 video packets and 50 audio
    // packets: over 500. Two thirds of that leaves room for a busy CI
    // machine and is still well above the light stream's 250.
    assert!(sent >= 3 * (120 + 50) * 2 / 3, "the HD stream's rate: {sent} packets in 3 s");

    for (i, (viewer, (got0, gaps0))) in viewers.iter().zip(before).enumerate() {
        let (got1, gaps1) = counts(viewer);
        let r = viewer.lock().unwrap();
        assert!(r.packets_of("audio") > 0 && r.packets_of("video") > 0, "subscriber {i} got both tracks: {r:?}");
        assert!(r.first_keyframe.is_some(), "subscriber {i} got a keyframe");
        assert_eq!(r.bad_vp8, 0, "VP8 payload descriptors arrive as sent");
        assert!(r.bytes > r.packets_of("video") * HD_PAYLOAD as u64 / 2, "full-size video packets");
        let loss = 1.0 - (got1 - got0) as f64 / sent as f64;
        assert!(loss < 0.01, "subscriber {i} lost {:.2} % ({} of {sent})", loss * 100.0, got1 - got0);
        assert!(((gaps1 - gaps0) as f64) < 0.01 * sent as f64, "subscriber {i}: {} sequence gaps", gaps1 - gaps0);
    }
}
