//! Host controls with real media: bringing an attendee on stage, muting on
//! the server, and removing someone for good.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::{
    client::{connect, Client},
    helpers::{spawn_app, Backend},
    room_token, session_with_people,
};

fn packets_on(client: &Client, track: &str) -> u64 {
    client.received.lock().unwrap().packets.get(track).copied().unwrap_or(0)
}

async fn until(what: &str, within: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A live session's room with its organiser as host and two attendees in it.
struct Three {
    id: i64,
    host: Client,
    ann: Client,
    ann_id: Value,
    ben: Client,
    ben_id: Value,
    attendees: Vec<String>,
}

async fn host_ann_and_ben(app: &crate::helpers::TestApp) -> Three {
    let (id, organiser, _, attendees) = session_with_people(app, &["Ann", "Ben"]).await;
    let mut host = connect(&app.url, id, Some(&room_token(app, id, &organiser).await)).await;
    host.join().await;
    let mut ann = connect(&app.url, id, Some(&room_token(app, id, &attendees[0]).await)).await;
    let ann_id = ann.join().await["you"]["id"].clone();
    let mut ben = connect(&app.url, id, Some(&room_token(app, id, &attendees[1]).await)).await;
    let ben_id = ben.join().await["you"]["id"].clone();
    Three { id, host, ann, ann_id, ben, ben_id, attendees }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_brings_an_attendee_on_stage_mutes_them_on_the_server_and_removes_someone_for_good() {
    let app = spawn_app(Backend::Sqlite).await;
    let Three { id, mut host, mut ann, ann_id, mut ben, ben_id, attendees } = host_ann_and_ben(&app).await;

    // Only hosts invite; an attendee cannot invite themselves up.
    ben.send(json!({"v": 1, "type": "stage_invite", "participant_id": ben_id}));
    assert_eq!(ben.error().await["code"], "not_host");
    ann.send(json!({"v": 1, "type": "stage_accept"}));
    assert_eq!(ann.error().await["code"], "wrong_state");

    host.send(json!({"v": 1, "type": "stage_invite", "participant_id": ann_id}));
    ann.expect("the invitation", |m| m["type"] == "stage_invited").await;
    ann.send(json!({"v": 1, "type": "stage_accept"}));
    let update = ben.expect("Ann on stage", |m| m["type"] == "participant_updated").await;
    assert_eq!(
        (update["participant"]["id"].clone(), update["participant"]["on_stage"].clone()),
        (ann_id.clone(), json!(true))
    );
    ann.publish();
    let audio: Value = ben
        .expect("Ann's audio", |m| {
            m["type"] == "track_published" && m["track"]["kind"] == "audio" && m["track"]["participant_id"] == ann_id
        })
        .await;
    let audio = audio["track"]["id"].as_str().unwrap().to_string();
    until("Ann's audio at Ben", Duration::from_secs(10), || packets_on(&ben, &audio) >= 20).await;

    // A host's mute stops the packets at the server, whatever Ann sends.
    host.send(json!({"v": 1, "type": "mute", "participant_id": ann_id, "kind": "audio"}));
    let muted = ann.expect("being muted", |m| m["type"] == "muted").await;
    assert_eq!(muted["kind"], "audio");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let at_mute = packets_on(&ben, &audio);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(packets_on(&ben, &audio) - at_mute <= 2, "Opus at 50 packets/s kept flowing while muted");
    // The mute is the host's: Ann cannot lift it herself, however she asks.
    ann.send(json!({"v": 1, "type": "unmute", "kind": "audio"}));
    let refusal = ann.error().await;
    assert_eq!(refusal["code"], "muted_by_host", "{refusal}");
    assert!(refusal["message"].as_str().unwrap().contains("only a host"), "{refusal}");
    ann.send(json!({"v": 1, "type": "unmute", "participant_id": ann_id, "kind": "audio"}));
    assert_eq!(ann.error().await["code"], "muted_by_host");
    ben.send(json!({"v": 1, "type": "unmute", "participant_id": ann_id, "kind": "audio"}));
    assert_eq!(ben.error().await["code"], "not_host");
    let still = packets_on(&ben, &audio);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(packets_on(&ben, &audio) - still <= 2, "Ann's own unmute let her audio through");
    // A host lifts it: Ann is told, and her audio reaches Ben again.
    host.send(json!({"v": 1, "type": "unmute", "participant_id": ann_id, "kind": "audio"}));
    let unmuted = ann.expect("the host's unmute", |m| m["type"] == "unmuted").await;
    assert_eq!(unmuted["kind"], "audio");
    let resumed = packets_on(&ben, &audio);
    until("Ann's audio again", Duration::from_secs(5), || packets_on(&ben, &audio) >= resumed + 20).await;

    // Taken off stage, her tracks are withdrawn.
    host.send(json!({"v": 1, "type": "stage_remove", "participant_id": ann_id}));
    ben.expect("Ann's audio withdrawn", |m| m["type"] == "track_unpublished" && m["track_id"] == audio).await;

    // Removed and barred: Ben's connection closes, and neither a new join nor
    // a token issued before the removal brings him back.
    let spare = room_token(&app, id, &attendees[1]).await;
    host.send(json!({"v": 1, "type": "remove", "participant_id": ben_id, "bar": true}));
    let (code, reason) = ben.closed().await;
    assert_eq!(code, 4012, "{reason}");
    host.expect("Ben gone", |m| m["type"] == "participant_left" && m["reason"] == "removed").await;
    let (status, body) = app.post(&format!("/api/sessions/{id}/join"), Some(&attendees[1]), json!({})).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(body["error"].as_str().unwrap().contains("removed"), "{body}");
    let (code, _) = connect(&app.url, id, Some(&spare)).await.refused().await;
    assert_eq!(code, 4012);
    let reasons: Vec<String> =
        sqlx::query_scalar("select reason from room_events where kind = 'leave' and reason is not null")
            .fetch_all(&app.state.db.read)
            .await
            .unwrap();
    assert!(reasons.contains(&"removed".to_string()), "{reasons:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attendees_wait_in_the_lobby_until_a_host_goes_live_and_end_session_closes_the_room() {
    let app = spawn_app(Backend::Sqlite).await;
    let (id, organiser, presenter, attendees) = crate::session_in_lobby(&app, &["Ann"]).await;
    let mut priya = connect(&app.url, id, Some(&room_token(&app, id, &presenter).await)).await;
    assert_eq!(priya.join().await["phase"], "lobby");
    priya.publish();
    let mut host = connect(&app.url, id, Some(&room_token(&app, id, &organiser).await)).await;
    host.join().await;
    let mut ann = connect(&app.url, id, Some(&room_token(&app, id, &attendees[0]).await)).await;
    assert_eq!(ann.join().await["phase"], "lobby");

    // Backstage, the host sees the presenter; the lobby receives nothing.
    until("the presenter backstage", Duration::from_secs(10), || {
        host.received.lock().unwrap().packets_of("video") >= 10
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(ann.received.lock().unwrap().packets_of("video"), 0);

    ann.send(json!({"v": 1, "type": "go_live"}));
    assert_eq!(ann.error().await["code"], "not_host");
    host.send(json!({"v": 1, "type": "go_live"}));
    ann.expect("going live", |m| m["type"] == "phase" && m["phase"] == "live").await;
    until("the presenter in the lobby", Duration::from_secs(10), || {
        let r = ann.received.lock().unwrap();
        r.packets_of("video") >= 10 && r.packets_of("audio") >= 10
    })
    .await;

    // Ending closes every connection, and the room stays shut.
    host.send(json!({"v": 1, "type": "end_session"}));
    let (code, _) = ann.closed().await;
    assert_eq!(code, 4010);
    assert_eq!(priya.closed().await.0, 4010);
    let (status, body) = app.post(&format!("/api/sessions/{id}/join"), Some(&attendees[0]), json!({})).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(body["error"], "this session has ended");
    let ended: i64 = sqlx::query_scalar("select count(*) from room_events where kind = 'leave' and reason = 'ended'")
        .fetch_one(&app.state.db.read)
        .await
        .unwrap();
    assert_eq!(ended, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_attendee_whose_connection_drops_comes_back_on_stage_still_muted_and_can_publish() {
    let app = spawn_app(Backend::Sqlite).await;
    let Three { id, host, mut ann, ann_id, mut ben, attendees, .. } = host_ann_and_ben(&app).await;
    host.send(json!({"v": 1, "type": "stage_invite", "participant_id": ann_id}));
    ann.expect("the invitation", |m| m["type"] == "stage_invited").await;
    ann.send(json!({"v": 1, "type": "stage_accept"}));
    host.send(json!({"v": 1, "type": "mute", "participant_id": ann_id, "kind": "audio"}));
    ann.expect("being muted", |m| m["type"] == "muted").await;

    // Her connection drops (no `leave`): she reconnects as she was.
    drop(ann);
    ben.expect("Ann gone", |m| m["type"] == "participant_left" && m["reason"] == "dropped").await;
    let mut ann = connect(&app.url, id, Some(&room_token(&app, id, &attendees[0]).await)).await;
    let welcome = ann.join().await;
    assert_eq!(welcome["you"]["on_stage"], true, "{welcome}");
    assert_eq!(welcome["you"]["muted"], json!(["audio"]));
    let back = ben.expect("Ann back", |m| m["type"] == "participant_joined").await;
    assert_eq!(back["participant"]["on_stage"], true);
    // She may publish again without a new invitation: her video reaches Ben.
    ann.publish();
    let video = ben
        .expect("Ann's video", |m| {
            m["type"] == "track_published" && m["track"]["kind"] == "video" && m["track"]["participant_id"] == ann_id
        })
        .await;
    let video = video["track"]["id"].as_str().unwrap().to_string();
    until("Ann's video at Ben", Duration::from_secs(10), || packets_on(&ben, &video) >= 20).await;
}
