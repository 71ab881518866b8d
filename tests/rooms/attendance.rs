//! Attendance from real joins and leaves through the live room: a reconnect
//! is one presence, a breakout move counts as group time, a short visit is
//! partly attended, and the room's end closes everyone.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use staffroom::attendance::{group_ms, presence, LiveWindow, Move, RoomEvent};

use crate::{
    client::connect,
    helpers::{spawn_app, spawn_app_with, Backend},
    room_token, session_with_people,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attendance_follows_real_joins_a_reconnect_and_the_end_of_the_room() {
    let app = spawn_app(Backend::Sqlite).await;
    let (id, organiser, _, attendees) = session_with_people(&app, &["Ann", "Ben"]).await;
    // A two-second session: 75 % is 1.5 s of presence.
    let mut tx = app.state.db.begin().await.unwrap();
    sqlx::query("update sessions set ends_at = starts_at + 2 where id = $1").bind(id).execute(&mut *tx).await.unwrap();
    tx.commit().await.unwrap();

    let mut host = connect(&app.url, id, Some(&room_token(&app, id, &organiser).await)).await;
    host.join().await;
    let mut ann = connect(&app.url, id, Some(&room_token(&app, id, &attendees[0]).await)).await;
    ann.join().await;
    let mut ben = connect(&app.url, id, Some(&room_token(&app, id, &attendees[1]).await)).await;
    ben.join().await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    ben.send(json!({"v": 1, "type": "leave"}));
    host.expect("Ben leaving", |m| m["type"] == "participant_left" && m["reason"] == "left").await;

    tokio::time::sleep(Duration::from_millis(1000)).await;
    // Ann's laptop reconnects: the room replaces her connection.
    let mut ann_again = connect(&app.url, id, Some(&room_token(&app, id, &attendees[0]).await)).await;
    ann_again.join().await;
    assert_eq!(ann.closed().await.0, 4009);

    // A breakout: Ann in the only group for a moment, then back.
    host.send(json!({"v": 1, "type": "breakout_open", "random_groups": 1, "minutes": 5, "return_seconds": 1}));
    ann_again.expect("the group", |m| m["type"] == "breakout" && m["breakout"]["open"] == true).await;
    let opened = Instant::now();
    tokio::time::sleep(Duration::from_millis(500)).await;
    host.send(json!({"v": 1, "type": "breakout_close"}));
    ann_again.expect("the return", |m| m["type"] == "breakout_timer" && m["event"] == "closed").await;
    let in_group = opened.elapsed();
    tokio::time::sleep(Duration::from_millis(500)).await;

    host.send(json!({"v": 1, "type": "end_session"}));
    assert_eq!(ann_again.closed().await.0, 4010);

    // The events are written off the room task: wait for the last.
    let deadline = Instant::now() + Duration::from_secs(10);
    let ann_id: i64 = sqlx::query_scalar("select id from users where email = 'ann@oak.sch.uk'")
        .fetch_one(&app.state.db.read)
        .await
        .unwrap();
    let shape = loop {
        let rows: Vec<(String, Option<String>)> = sqlx::query_as(
            "select kind, reason from room_events where session_id = $1 and user_id = $2 order by at, id",
        )
        .bind(id)
        .bind(ann_id)
        .fetch_all(&app.state.db.read)
        .await
        .unwrap();
        if rows.len() == 4 || Instant::now() > deadline {
            break rows;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let shape: Vec<(&str, Option<&str>)> = shape.iter().map(|(k, r)| (k.as_str(), r.as_deref())).collect();
    assert_eq!(shape, [("join", None), ("leave", Some("dropped")), ("join", None), ("leave", Some("ended"))]);

    let (status, report) = app.get(&format!("/api/sessions/{id}/attendance"), Some(&organiser)).await;
    assert_eq!(status, 200, "{report}");
    let person = |name: &str| -> Value {
        report["people"].as_array().unwrap().iter().find(|p| p["name"] == name).cloned().unwrap()
    };
    let ann = person("Ann");
    assert_eq!((ann["status"].as_str(), ann["how"].as_str()), (Some("attended"), Some("live")), "{ann}");
    assert_eq!(ann["minutes_live"], 0, "two seconds are 0 whole minutes");
    let span = ann["left_at"].as_i64().unwrap() - ann["joined_at"].as_i64().unwrap();
    assert!(span >= 2_000, "present from the first join to the end: {span} ms");
    let ben = person("Ben");
    assert_eq!((ben["status"].as_str(), ben["how"].as_str()), (Some("partly"), Some("live")), "{ben}");
    assert!(ben["left_at"].as_i64().unwrap() - ben["joined_at"].as_i64().unwrap() < 1_500, "{ben}");

    // The group time, from the moves the room recorded, by the same rules.
    let events: Vec<(String, i64)> =
        sqlx::query_as("select kind, at from room_events where session_id = $1 and user_id = $2 order by at, id")
            .bind(id)
            .bind(ann_id)
            .fetch_all(&app.state.db.read)
            .await
            .unwrap();
    let events: Vec<RoomEvent> =
        events.iter().map(|(k, at)| if k == "join" { RoomEvent::Join(*at) } else { RoomEvent::Leave(*at) }).collect();
    let moves: Vec<(Option<String>, i64)> = sqlx::query_as(
        "select group_name, at from breakout_moves where session_id = $1 and user_id = $2 order by at, id",
    )
    .bind(id)
    .bind(ann_id)
    .fetch_all(&app.state.db.read)
    .await
    .unwrap();
    assert_eq!(moves.iter().map(|(g, _)| g.is_some()).collect::<Vec<_>>(), [true, false], "{moves:?}");
    let moves: Vec<Move> = moves.iter().map(|(g, at)| Move { at: *at, in_group: g.is_some() }).collect();
    let window = LiveWindow { live_at: Some(1), close: ann["left_at"].as_i64().unwrap() };
    let presence = presence(&events, window);
    assert_eq!(presence.len(), 1, "the reconnect is one presence: {presence:?}");
    let in_groups = group_ms(&moves, &presence);
    assert!(
        (500..=in_group.as_millis() as i64 + 200).contains(&in_groups),
        "{in_groups} ms in the group, {in_group:?} between the group opening and the return"
    );
    assert_eq!(ann["minutes_in_groups"], 0);

    // Host, Ann, Ben arrive; Ben leaves; Ann's reconnect changes nothing;
    // the end closes everyone at once.
    let present: Vec<i64> =
        report["timeline"].as_array().unwrap().iter().map(|s| s["present"].as_i64().unwrap()).collect();
    assert_eq!(present, [1, 2, 3, 2, 0], "{}", report["timeline"]);
    let last = report["timeline"].as_array().unwrap().last().unwrap()["at"].as_i64().unwrap();
    assert_eq!(Some(last), ann["left_at"].as_i64(), "the end of the room closes the series");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_killed_mid_session_closes_everyones_attendance_at_its_last_heartbeat() {
    let mut app = spawn_app(Backend::Sqlite).await;
    let (id, organiser, _, attendees) = session_with_people(&app, &["Ann"]).await;
    let (mut server, in_process_url) = crate::serve_process(&mut app, &[("ROOM_HEARTBEAT_MS", "300")]).await;
    let mut host = connect(&app.url, id, Some(&room_token(&app, id, &organiser).await)).await;
    host.join().await;
    let mut ann = connect(&app.url, id, Some(&room_token(&app, id, &attendees[0]).await)).await;
    ann.join().await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let killed_at = chrono::Utc::now().timestamp_millis();
    server.kill().expect("SIGKILL");
    server.wait().unwrap();

    // Back up: the room's open joins are closed at its last heartbeat, within one beat of the kill.
    app.url = in_process_url;
    app.restart().await;
    let leaves = sqlx::query("select user_id, at from room_events where session_id = $1 and reason = 'server_restart'")
        .bind(id)
        .fetch_all(&app.state.db.read)
        .await
        .unwrap();
    assert_eq!(leaves.len(), 2, "the host and Ann");
    for leave in &leaves {
        let at: i64 = sqlx::Row::try_get(leave, "at").unwrap();
        assert!((killed_at - 1000..=killed_at).contains(&at), "closed at {at}, killed at {killed_at}");
    }
    let remaining: i64 =
        sqlx::query_scalar("select count(*) from room_heartbeats").fetch_one(&app.state.db.read).await.unwrap();
    assert_eq!(remaining, 0, "the heartbeat is cleared once handled");
    // The report no longer runs on: Ann left when the server died.
    let (_, report) = app.get(&format!("/api/sessions/{id}/attendance"), Some(&organiser)).await;
    let ann_row = report["people"].as_array().unwrap().iter().find(|p| p["name"] == "Ann").unwrap().clone();
    let left = ann_row["left_at"].as_i64().unwrap_or_else(|| panic!("{report}"));
    assert!((killed_at - 1000..=killed_at).contains(&left), "{ann_row}");
    // Nothing more happens on a second start.
    app.restart().await;
    let again: i64 =
        sqlx::query_scalar("select count(*) from room_events where session_id = $1 and reason = 'server_restart'")
            .bind(id)
            .fetch_one(&app.state.db.read)
            .await
            .unwrap();
    assert_eq!(again, 2);
}

/// Ann's rows in `room_events`, as (kind, reason), once there are `n` of them.
async fn events_of(
    app: &crate::helpers::TestApp,
    session_id: i64,
    email: &str,
    n: usize,
) -> Vec<(String, Option<String>)> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let rows: Vec<(String, Option<String>)> = sqlx::query_as(
            "select e.kind, e.reason from room_events e join users u on u.id = e.user_id
             where e.session_id = $1 and u.email = $2 order by e.at, e.id",
        )
        .bind(session_id)
        .bind(email)
        .fetch_all(&app.state.db.read)
        .await
        .unwrap();
        if rows.len() >= n || Instant::now() > deadline {
            return rows;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn someone_left_in_the_room_past_the_scheduled_end_and_the_grace_is_closed_out_and_not_credited_beyond_it() {
    let app = spawn_app_with(Backend::Sqlite, &[("LIVE_GRACE_MS", "4000")]).await;
    let organiser = app.organiser().await;
    // Ann signs up first: hashing her password on a loaded machine can take
    // seconds, and the session's few seconds must not run out before she registers.
    let ann = app.sign_up("Ann", "ann@oak.sch.uk").await;
    // Started ten minutes ago; ends a few whole seconds from now (the programme keeps seconds).
    let now = chrono::Utc::now();
    let ends = chrono::DateTime::from_timestamp(now.timestamp() + 4, 0).unwrap();
    let (status, body) = app
        .post(
            "/api/sessions",
            Some(&organiser),
            json!({"title": "Running over", "description": "", "kind": "masterclass", "capacity": 10,
                   "starts_at": (now - chrono::Duration::minutes(10)).to_rfc3339(), "ends_at": ends.to_rfc3339(),
                   "status": "published", "confirm_past": true}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let id = body["id"].as_i64().unwrap();
    let (status, body) = app.post(&format!("/api/sessions/{id}/registration"), Some(&ann), json!({})).await;
    assert_eq!(status, 201, "{body}");

    // The host takes the room live the way a host does, then goes; Ann stays on.
    let mut host = connect(&app.url, id, Some(&room_token(&app, id, &organiser).await)).await;
    host.join().await;
    host.send(json!({"v": 1, "type": "go_live"}));
    host.expect("the room going live", |m| m["type"] == "phase" && m["phase"] == "live").await;
    let mut ann_room = connect(&app.url, id, Some(&room_token(&app, id, &ann).await)).await;
    ann_room.join().await;
    host.send(json!({"v": 1, "type": "leave"}));
    ann_room.expect("the host leaving", |m| m["type"] == "participant_left").await;

    // At the scheduled end plus the grace the room closes itself and says so.
    let closes_at = ends.timestamp_millis() + 4000;
    ann_room.expect("the end", |m| m["type"] == "phase" && m["phase"] == "ended").await;
    let (code, reason) = ann_room.closed().await;
    let closed = chrono::Utc::now().timestamp_millis();
    assert_eq!(code, 4010, "{reason}");
    assert_eq!(reason, "the session's time is over");
    assert!(closed >= closes_at, "closed at {closed}, before the end and grace at {closes_at}");
    assert_eq!(events_of(&app, id, "ann@oak.sch.uk", 2).await.last().unwrap().1.as_deref(), Some("ended"));

    // Coming back is refused with a clear message, over HTTP and on the socket.
    let (status, body) = app.post(&format!("/api/sessions/{id}/join"), Some(&ann), json!({})).await;
    assert_eq!((status.as_u16(), body["error"].as_str()), (409, Some("this session has ended")), "{body}");

    // Attendance stops at the close, and a join lost in a crash would too.
    let (_, report) = app.get(&format!("/api/sessions/{id}/attendance"), Some(&organiser)).await;
    let row = report["people"].as_array().unwrap().iter().find(|p| p["name"] == "Ann").unwrap().clone();
    assert!(row["left_at"].as_i64().unwrap() <= closes_at, "{row}");
    let ended_at: Option<i64> = sqlx::query_scalar("select ended_at from sessions where id = $1")
        .bind(id)
        .fetch_one(&app.state.db.read)
        .await
        .unwrap();
    assert_eq!(ended_at, Some(closes_at), "the live part is marked over at the close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_journal_write_that_fails_is_retried_and_the_attendance_is_complete() {
    let app = spawn_app(Backend::Sqlite).await;
    let (id, organiser, _, attendees) = crate::session_in_lobby(&app, &["Ann"]).await;
    // A real database error on every attendance write while the fault row is
    // there, as a full disk or a lock held too long would give.
    for sql in [
        "create table journal_fault (x integer)",
        "insert into journal_fault values (1)",
        "create trigger journal_fault before insert on room_events when exists (select 1 from journal_fault)
         begin select raise(abort, 'simulated journal failure'); end",
    ] {
        sqlx::query(sql).execute(&app.state.db.write).await.unwrap();
    }
    let mut host = connect(&app.url, id, Some(&room_token(&app, id, &organiser).await)).await;
    host.join().await;
    host.send(json!({"v": 1, "type": "go_live"}));
    host.expect("the room going live", |m| m["type"] == "phase" && m["phase"] == "live").await;
    let mut ann = connect(&app.url, id, Some(&room_token(&app, id, &attendees[0]).await)).await;
    ann.join().await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    ann.send(json!({"v": 1, "type": "leave"}));
    host.expect("Ann leaving", |m| m["type"] == "participant_left").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let stored: i64 = sqlx::query_scalar("select count(*) from room_events where session_id = $1")
        .bind(id)
        .fetch_one(&app.state.db.read)
        .await
        .unwrap();
    assert_eq!(stored, 0, "nothing could be written while the fault lasted");

    // The fault clears: what was held back is written, in order, once.
    sqlx::query("delete from journal_fault").execute(&app.state.db.write).await.unwrap();
    host.send(json!({"v": 1, "type": "end_session"}));
    assert_eq!(host.closed().await.0, 4010);
    let ann_rows = events_of(&app, id, "ann@oak.sch.uk", 2).await;
    let ann_rows: Vec<(&str, Option<&str>)> = ann_rows.iter().map(|(k, r)| (k.as_str(), r.as_deref())).collect();
    assert_eq!(ann_rows, [("join", None), ("leave", Some("left"))]);
    let host_rows = events_of(&app, id, "organiser@staffroom.test", 2).await;
    assert_eq!(host_rows.len(), 2, "{host_rows:?}");
    let (live_at, ended_at): (Option<i64>, Option<i64>) =
        sqlx::query_as("select live_at, ended_at from sessions where id = $1")
            .bind(id)
            .fetch_one(&app.state.db.read)
            .await
            .unwrap();
    assert!(live_at.is_some() && ended_at.is_some(), "the live and end marks were kept too");
    let (_, report) = app.get(&format!("/api/sessions/{id}/attendance"), Some(&organiser)).await;
    let row = report["people"].as_array().unwrap().iter().find(|p| p["name"] == "Ann").unwrap().clone();
    let span = row["left_at"].as_i64().unwrap() - row["joined_at"].as_i64().unwrap();
    assert!(span >= 1_500, "Ann's presence is all there: {row}");
}
