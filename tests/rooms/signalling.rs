use std::time::Duration;

use serde_json::json;
use staffroom::auth::tokens::Grants;
use tokio_tungstenite::tungstenite::Message;

use crate::{
    client::connect,
    helpers::{spawn_app, Backend},
    room_token, session_with_people,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_forged_expired_or_foreign_token_is_refused_with_a_close_code() {
    let app = spawn_app(Backend::Sqlite).await;
    let (id, organiser, _, attendees) = session_with_people(&app, &["Ann"]).await;
    let other = app.session(&organiser, "Another session", 30, chrono::Duration::minutes(25)).await;
    app.post(&format!("/api/sessions/{other}/registration"), Some(&attendees[0]), json!({})).await;

    let (code, _) = connect(&app.url, id, None).await.refused().await;
    assert_eq!(code, 4001);
    let (code, _) = connect(&app.url, id, Some("not.a.token")).await.refused().await;
    assert_eq!(code, 4001);
    // A session token is not a room token.
    let (code, _) = connect(&app.url, id, Some(&attendees[0])).await.refused().await;
    assert_eq!(code, 4001);

    let grants = Grants { publish: false, subscribe: true, host: false, cohost: false };
    let expired = app.state.keys.sign_room(1, id, "Ann", grants, chrono::Duration::seconds(-1));
    let (code, reason) = connect(&app.url, id, Some(&expired)).await.refused().await;
    assert_eq!(code, 4001);
    assert!(reason.contains("expired"), "{reason}");

    let foreign = room_token(&app, other, &attendees[0]).await;
    let (code, reason) = connect(&app.url, id, Some(&foreign)).await.refused().await;
    assert_eq!(code, 4003);
    assert!(reason.contains("another session"), "{reason}");

    // The right token still opens the room.
    let token = room_token(&app, id, &attendees[0]).await;
    let mut ann = connect(&app.url, id, Some(&token)).await;
    let welcome = ann.join().await;
    assert_eq!(welcome["you"]["name"], "Ann");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_messages_get_an_error_and_the_room_goes_on() {
    let app = spawn_app(Backend::Sqlite).await;
    let (id, _, presenter, attendees) = session_with_people(&app, &["Ann", "Ben"]).await;
    let mut ann = connect(&app.url, id, Some(&room_token(&app, id, &attendees[0]).await)).await;

    // Before join, only join is accepted.
    ann.send(json!({"v": 1, "type": "offer", "sdp": "v=0"}));
    assert_eq!(ann.error().await["code"], "not_joined");
    let welcome = ann.join().await;
    assert_eq!(welcome["participants"], json!([]));
    assert_eq!(welcome["you"]["grants"]["publish"], false);

    let cases = [
        (Message::Text("{not json".into()), "bad_message"),
        (Message::Text("[1, 2, 3]".into()), "bad_message"),
        (Message::Text(r#"{"type":"join"}"#.into()), "unsupported_version"),
        (Message::Text(r#"{"v":7,"type":"join"}"#.into()), "unsupported_version"),
        (Message::Text(r#"{"v":1,"type":"teleport"}"#.into()), "unknown_type"),
        (Message::Text(r#"{"v":1,"type":"join"}"#.into()), "already_joined"),
        (Message::Text(r#"{"v":1,"type":"offer"}"#.into()), "bad_message"),
        (Message::Text(r#"{"v":1,"type":"offer","sdp":"this is not SDP"}"#.into()), "bad_sdp"),
        (Message::Text(r#"{"v":1,"type":"answer","sdp":"v=0"}"#.into()), "bad_sdp"),
        (Message::Text(r#"{"v":1,"type":"candidate","candidate":{"sdpMid":"0"}}"#.into()), "bad_candidate"),
        (Message::Text(format!(r#"{{"v":1,"type":"offer","sdp":"{}"}}"#, "x".repeat(100_000)).into()), "too_large"),
        (Message::Binary(vec![1, 2, 3].into()), "bad_message"),
    ];
    for (message, code) in cases {
        let shown = format!("{message:?}").chars().take(80).collect::<String>();
        ann.send_raw(message);
        let error = ann.error().await;
        assert_eq!(error["code"], code, "{shown} gave {error}");
        assert!(!error["message"].as_str().unwrap().is_empty());
    }

    // The room goes on: others come and go and Ann hears of it.
    let mut ben = connect(&app.url, id, Some(&room_token(&app, id, &attendees[1]).await)).await;
    let welcome = ben.join().await;
    assert_eq!(welcome["participants"].as_array().unwrap().len(), 1);
    let joined = ann.expect("Ben's arrival", |m| m["type"] == "participant_joined").await;
    assert_eq!(joined["participant"]["name"], "Ben");
    let mut priya = connect(&app.url, id, Some(&room_token(&app, id, &presenter).await)).await;
    priya.join().await;
    priya.send(json!({"v": 1, "type": "leave"}));
    let left = ann.expect("Priya's leaving", |m| m["type"] == "participant_left").await;
    assert_eq!(left["reason"], "left");
    assert_eq!(priya.closed().await.0, 1000);
    assert!(ann.closed.lock().unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_join_and_leave_is_written_with_its_reason() {
    let app = spawn_app(Backend::Sqlite).await;
    let (id, _, _, attendees) = session_with_people(&app, &["Ann", "Ben"]).await;
    let mut ann = connect(&app.url, id, Some(&room_token(&app, id, &attendees[0]).await)).await;
    ann.join().await;
    let mut ben = connect(&app.url, id, Some(&room_token(&app, id, &attendees[1]).await)).await;
    ben.join().await;
    ann.send(json!({"v": 1, "type": "leave"}));
    ann.closed().await;
    // Ben vanishes without a goodbye.
    drop(ben);

    let ann_id: i64 = sqlx::query_scalar("select id from users where email = 'ann@oak.sch.uk'")
        .fetch_one(&app.state.db.read)
        .await
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let rows = loop {
        let rows: Vec<(i64, String, Option<String>, i64)> =
            sqlx::query_as("select user_id, kind, reason, at from room_events where session_id = $1 order by at, id")
                .bind(id)
                .fetch_all(&app.state.db.read)
                .await
                .unwrap();
        if rows.len() == 4 || std::time::Instant::now() > deadline {
            break rows;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let shape: Vec<(bool, &str, Option<&str>)> =
        rows.iter().map(|(u, k, r, _)| (*u == ann_id, k.as_str(), r.as_deref())).collect();
    assert_eq!(
        shape,
        [(true, "join", None), (false, "join", None), (true, "leave", Some("left")), (false, "leave", Some("dropped"))]
    );
    let now = chrono::Utc::now().timestamp_millis();
    assert!(rows.iter().all(|r| (now - r.3).abs() < 60_000), "times are Unix milliseconds");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joining_again_replaces_the_earlier_connection_and_a_huge_frame_only_ends_its_own() {
    let app = spawn_app(Backend::Sqlite).await;
    let (id, _, _, attendees) = session_with_people(&app, &["Ann", "Ben"]).await;
    let mut ann = connect(&app.url, id, Some(&room_token(&app, id, &attendees[0]).await)).await;
    ann.join().await;
    let mut ben = connect(&app.url, id, Some(&room_token(&app, id, &attendees[1]).await)).await;
    ben.join().await;

    // Ben's laptop reconnects: the old connection is closed, not duplicated.
    let mut ben_again = connect(&app.url, id, Some(&room_token(&app, id, &attendees[1]).await)).await;
    let welcome = ben_again.join().await;
    let (code, _) = ben.closed().await;
    assert_eq!(code, 4009);
    let names: Vec<&str> =
        welcome["participants"].as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["Ann"]);
    assert_eq!(
        welcome["you"]["id"],
        ann.expect("Ben's return", |m| m["type"] == "participant_joined").await["participant"]["id"]
    );

    // A frame beyond the WebSocket limit ends that connection only.
    ben_again.send_raw(Message::Text("x".repeat(2 * 1024 * 1024).into()));
    let (code, _) = ben_again.closed().await;
    assert_eq!(code, 1009);
    let replaced = ann.expect("Ben's first connection replaced", |m| m["type"] == "participant_left").await;
    assert_eq!(replaced["reason"], "dropped");
    let left = ann.expect("Ben dropped", |m| m["type"] == "participant_left").await;
    assert_eq!(left["reason"], "dropped");
    ann.send(json!({"v": 1, "type": "teleport"}));
    assert_eq!(ann.error().await["code"], "unknown_type", "Ann's connection goes on");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_the_server_stops_everyone_in_a_room_is_told_and_recorded_as_ended() {
    let mut app = spawn_app(Backend::Sqlite).await;
    let (id, _, presenter, attendees) = session_with_people(&app, &["Ann"]).await;
    let mut ann = connect(&app.url, id, Some(&room_token(&app, id, &attendees[0]).await)).await;
    ann.join().await;
    let mut priya = connect(&app.url, id, Some(&room_token(&app, id, &presenter).await)).await;
    priya.join().await;

    tokio::time::timeout(Duration::from_secs(15), app.shutdown()).await.expect("the server stops with rooms open");
    for client in [&mut ann, &mut priya] {
        let (code, reason) = client.closed().await;
        assert_eq!((code, reason.as_str()), (4010, "the room has ended"));
    }
    let reasons: Vec<Option<String>> =
        sqlx::query_scalar("select reason from room_events where session_id = $1 and kind = 'leave' order by id")
            .bind(id)
            .fetch_all(&app.state.db.read)
            .await
            .unwrap();
    assert_eq!(reasons, [Some("ended".to_string()), Some("ended".to_string())]);
}

/// What the server logs, kept for the test to read.
#[derive(Clone, Default)]
struct Logs(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_room_token_travels_in_join_not_in_the_url_and_no_log_line_holds_it() {
    // Requests as the tracing layer logs them (their span and events), and the rooms'.
    let logs = Logs::default();
    let writer = logs.clone();
    let _ = tracing_subscriber::fmt()
        .with_env_filter("tower_http=debug,staffroom::http=debug,staffroom::rooms=debug")
        .with_writer(move || writer.clone())
        .try_init();
    let app = spawn_app(Backend::Sqlite).await;
    let (id, _, _, attendees) = session_with_people(&app, &["Ann", "Ben"]).await;

    // A token in the URL opens nothing: it must come in `join`.
    let token = room_token(&app, id, &attendees[0]).await;
    let ws = app.url.replace("http://", "ws://");
    let (mut socket, _) =
        tokio_tungstenite::connect_async(format!("{ws}/api/rooms/{id}/ws?token={token}")).await.unwrap();
    use futures::{SinkExt, StreamExt};
    socket.send(Message::Text(json!({"v": 1, "type": "join"}).to_string().into())).await.unwrap();
    let close = loop {
        match tokio::time::timeout(Duration::from_secs(10), socket.next()).await.expect("the server answers") {
            Some(Ok(Message::Close(frame))) => break frame.map(|f| u16::from(f.code)),
            Some(Ok(Message::Text(text))) => panic!("a token in the URL was let in: {text}"),
            Some(Ok(_)) => continue,
            other => panic!("the connection ended without a close frame: {other:?}"),
        }
    };
    assert_eq!(close, Some(4001));

    // In `join`, it does.
    let ben_token = room_token(&app, id, &attendees[1]).await;
    let mut ben = connect(&app.url, id, Some(&ben_token)).await;
    assert_eq!(ben.join().await["you"]["name"], "Ben");
    ben.send(json!({"v": 1, "type": "leave"}));
    ben.closed().await;

    let logs = String::from_utf8_lossy(&logs.0.lock().unwrap()).to_string();
    assert!(logs.contains("/api/rooms/"), "the requests were logged: {logs}");
    for t in [&token, &ben_token] {
        assert!(!logs.contains(t.as_str()), "a room token is in the logs: {logs}");
    }
}
