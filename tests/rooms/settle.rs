//! Settled attendance through the real paths, on both databases: a session
//! made over HTTP, taken live and ended in a real room by a host, with
//! attendees joining, leaving and moving into a group over the signalling
//! WebSocket. Its results are stored at the end, the record and a
//! certificate read them, a threshold correction settles it again and is
//! listed, and settling twice stores the same rows once. A certificate's
//! name is the one its holder confirmed, frozen on issue.

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use staffroom::attendance::{group_ms, journal, presence, settle, total_ms, LiveWindow, Move, RoomEvent};

use crate::{
    both_backends,
    client::connect,
    helpers::{spawn_app, spawn_app_with, Backend, TestApp},
    room_token,
};

/// A published session starting in a second and lasting `seconds`, made
/// over HTTP; returns its id.
async fn short_session(app: &TestApp, organiser: &str, seconds: i64) -> i64 {
    let start = chrono::Utc::now() + chrono::Duration::seconds(1);
    let (status, body) = app
        .post(
            "/api/sessions",
            Some(organiser),
            json!({
                "title": "Retrieval practice", "description": "A few seconds long.", "kind": "webinar",
                "audiences": ["ect"], "starts_at": start.to_rfc3339(),
                "ends_at": (start + chrono::Duration::seconds(seconds)).to_rfc3339(),
                "capacity": 30, "status": "published"
            }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    body["id"].as_i64().unwrap()
}

async fn register(app: &TestApp, session: i64, token: &str) {
    let (status, body) = app.post(&format!("/api/sessions/{session}/registration"), Some(token), json!({})).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
}

fn person(report: &Value, name: &str) -> Value {
    report["people"].as_array().unwrap().iter().find(|p| p["name"] == name).cloned().unwrap_or_else(|| {
        panic!("{name} in {report}");
    })
}

fn session_entry(record: &Value, session: i64) -> Value {
    record["entries"].as_array().unwrap().iter().find(|e| e["session_id"] == session).cloned().unwrap_or_else(|| {
        panic!("an entry for session {session} in {record}");
    })
}

/// The stored results, as rows of text, to compare before and after.
async fn stored_results(
    app: &TestApp,
    session: i64,
) -> Vec<(i64, i64, i64, Option<i64>, Option<i64>, i64, String, i64)> {
    sqlx::query_as(
        "select user_id, live_ms, group_ms, joined_at, left_at, threshold_percent, live_status, settled_at
         from attendance_results where session_id = $1 order by user_id",
    )
    .bind(session)
    .fetch_all(&app.state.db.read)
    .await
    .unwrap()
}

/// (live_at, ended_at, settled_at) as stored.
async fn marks(app: &TestApp, session: i64) -> (Option<i64>, Option<i64>, Option<i64>) {
    sqlx::query_as("select live_at, ended_at, settled_at from sessions where id = $1")
        .bind(session)
        .fetch_one(&app.state.db.read)
        .await
        .unwrap()
}

/// Ann's live and group ms by the rules of docs/attendance.md, applied by
/// hand to the joins, leaves and moves the room stored.
async fn by_the_rules(app: &TestApp, session: i64, user: i64, window: LiveWindow) -> (i64, i64) {
    let events: Vec<(String, i64)> =
        sqlx::query_as("select kind, at from room_events where session_id = $1 and user_id = $2 order by at, id")
            .bind(session)
            .bind(user)
            .fetch_all(&app.state.db.read)
            .await
            .unwrap();
    let events: Vec<RoomEvent> =
        events.iter().map(|(k, at)| if k == "join" { RoomEvent::Join(*at) } else { RoomEvent::Leave(*at) }).collect();
    let moves: Vec<(Option<String>, i64)> = sqlx::query_as(
        "select group_name, at from breakout_moves where session_id = $1 and user_id = $2 order by at, id",
    )
    .bind(session)
    .bind(user)
    .fetch_all(&app.state.db.read)
    .await
    .unwrap();
    let moves: Vec<Move> = moves.iter().map(|(g, at)| Move { at: *at, in_group: g.is_some() }).collect();
    let intervals = presence(&events, window);
    (total_ms(&intervals), group_ms(&moves, &intervals))
}

async fn a_sessions_results_are_settled_at_its_end_read_by_the_record_and_a_certificate_and_corrected_by_the_organiser(
    backend: Backend,
) {
    let app = spawn_app(backend).await;
    let organiser = app.organiser().await;
    let ann = app.sign_up("Ann", "ann@oak.sch.uk").await;
    let ben = app.sign_up("Ben", "ben@oak.sch.uk").await;
    let eve = app.sign_up("Eve", "eve@oak.sch.uk").await;
    // Four seconds scheduled: attended at 75 % is 3 s of presence.
    let id = short_session(&app, &organiser, 4).await;
    for token in [&ann, &ben, &eve] {
        register(&app, id, token).await;
    }

    let mut host = connect(&app.url, id, Some(&room_token(&app, id, &organiser).await)).await;
    host.join().await;
    host.send(json!({"v": 1, "type": "go_live"}));
    host.expect("going live", |m| m["type"] == "phase" && m["phase"] == "live").await;
    let live = Instant::now();
    let mut ann_room = connect(&app.url, id, Some(&room_token(&app, id, &ann).await)).await;
    ann_room.join().await;
    let mut ben_room = connect(&app.url, id, Some(&room_token(&app, id, &ben).await)).await;
    ben_room.join().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    ben_room.send(json!({"v": 1, "type": "leave"}));
    host.expect("Ben leaving", |m| m["type"] == "participant_left" && m["reason"] == "left").await;

    // Ann in the only group for a moment, then back.
    host.send(json!({"v": 1, "type": "breakout_open", "random_groups": 1, "minutes": 5, "return_seconds": 1}));
    ann_room.expect("the group", |m| m["type"] == "breakout" && m["breakout"]["open"] == true).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    host.send(json!({"v": 1, "type": "breakout_close"}));
    ann_room.expect("the return", |m| m["type"] == "breakout_timer" && m["event"] == "closed").await;

    // While it runs: Ann's entry is there (so she can reflect), not settled,
    // and no certificate is issued yet.
    let (status, record) = app.get("/api/me/record", Some(&ann)).await;
    assert_eq!(status, StatusCode::OK, "{record}");
    let entry = session_entry(&record, id);
    assert_eq!(entry["settled"], false, "{entry}");
    let ann_entry = entry["id"].as_i64().unwrap();
    let certificate = format!("/api/me/record/entries/{ann_entry}/certificate");
    let (status, body) = app.post(&certificate, Some(&ann), json!({"holder_name": "Ann O'Neill"})).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(body["error"].as_str().unwrap().contains("still running"), "{body}");
    assert_eq!(marks(&app, id).await.2, None, "not settled while it runs");

    // Past 75 % of the schedule, the host ends it for everyone.
    tokio::time::sleep(Duration::from_millis(3_300).saturating_sub(live.elapsed())).await;
    host.send(json!({"v": 1, "type": "end_session"}));
    assert_eq!(ann_room.closed().await.0, 4010);
    let (live_at, ended_at, settled_at) = marks(&app, id).await;
    let (live_at, ended_at) = (live_at.unwrap(), ended_at.expect("the end is stored before anyone is told"));
    assert!(settled_at.is_some(), "settled with the end");

    // The stored results: the host, and the three registrants (Eve never came).
    let rows = stored_results(&app, id).await;
    assert_eq!(rows.len(), 4, "{rows:?}");
    let user = |email: &str| {
        let email = email.to_string();
        let db = app.state.db.read.clone();
        async move {
            sqlx::query_scalar::<_, i64>("select id from users where email = $1")
                .bind(email)
                .fetch_one(&db)
                .await
                .unwrap()
        }
    };
    let (ann_id, ben_id) = (user("ann@oak.sch.uk").await, user("ben@oak.sch.uk").await);
    let window = LiveWindow { live_at: Some(live_at), close: ended_at };
    let row = |id: i64| rows.iter().find(|r| r.0 == id).cloned().unwrap();
    let (ann_live, ann_groups) = by_the_rules(&app, id, ann_id, window).await;
    assert_eq!((row(ann_id).1, row(ann_id).2), (ann_live, ann_groups), "Ann's result is the rules applied to the rows");
    assert!(ann_live >= 3_000, "Ann was in from near the start to the end: {ann_live} ms");
    assert!(ann_groups >= 300 && ann_groups < ann_live, "{ann_groups} ms in the group");
    assert_eq!((row(ann_id).6.as_str(), row(ann_id).5), ("attended", 75));
    let (ben_live, _) = by_the_rules(&app, id, ben_id, window).await;
    assert_eq!(row(ben_id).1, ben_live);
    assert!(ben_live > 0 && ben_live < 1_500, "{ben_live} ms");
    assert_eq!(row(ben_id).6, "partly");

    // The organiser's report shows the stored results.
    let (status, report) = app.get(&format!("/api/sessions/{id}/attendance"), Some(&organiser)).await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!(report["settled_at"].as_i64(), settled_at);
    let a = person(&report, "Ann");
    assert_eq!(
        (a["status"].as_str(), a["how"].as_str(), a["live_ms"].as_i64()),
        (Some("attended"), Some("live"), Some(ann_live))
    );
    assert_eq!(
        (a["minutes_live"].as_i64(), a["group_ms"].as_i64()),
        (Some(0), Some(ann_groups)),
        "seconds are 0 whole minutes"
    );
    assert_eq!(person(&report, "Ben")["status"], "partly");
    assert_eq!(
        (person(&report, "Eve")["status"].as_str(), person(&report, "Eve")["live_ms"].as_i64()),
        (Some("absent"), Some(0))
    );
    assert_eq!(report["corrections"], json!([]));

    // Settling again (a second end mark, as a late join attempt or a reader
    // would make) stores nothing new: the same rows, once.
    let facts = {
        let mut conn = app.state.db.read.acquire().await.unwrap();
        settle::session_facts(&mut conn, id).await.unwrap().unwrap()
    };
    assert!(!settle::settle_if_due(&app.state.db, &facts, chrono::Utc::now().timestamp_millis()).await.unwrap());
    journal::mark_ended(&app.state.db, id, ended_at + 5_000).await.unwrap();
    let (a, b) = tokio::join!(
        journal::mark_ended(&app.state.db, id, ended_at + 6_000),
        journal::mark_ended(&app.state.db, id, ended_at + 7_000)
    );
    a.unwrap();
    b.unwrap();
    assert_eq!(stored_results(&app, id).await, rows, "settling twice stores the same rows once");
    assert_eq!(marks(&app, id).await, (Some(live_at), Some(ended_at), settled_at));

    // The record reads them: Ann attended, settled; Ben partly; Eve has no entry.
    let entry = session_entry(&app.get("/api/me/record", Some(&ann)).await.1, id);
    assert_eq!(
        (entry["status"].as_str(), entry["how"].as_str(), &entry["settled"]),
        (Some("attended"), Some("live"), &json!(true))
    );
    let ben_record = app.get("/api/me/record", Some(&ben)).await.1;
    let ben_entry = session_entry(&ben_record, id);
    assert_eq!(ben_entry["status"], "partly");
    assert_eq!(app.get("/api/me/record", Some(&eve)).await.1["entries"], json!([]));

    // A certificate, in the name Ann confirms (not her account's "Ann").
    for (bad, why) in [("   ", "empty"), (&*"A".repeat(121), "too long"), ("Ann\nO'Neill", "two lines")] {
        let (status, body) = app.post(&certificate, Some(&ann), json!({"holder_name": bad})).await;
        assert_eq!(
            (status, body["field"].as_str()),
            (StatusCode::UNPROCESSABLE_ENTITY, Some("holder_name")),
            "{why}: {body}"
        );
    }
    let (status, body) = app.post(&certificate, Some(&ann), json!({})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "the name must be confirmed: {body}");
    let (status, cert) = app.post(&certificate, Some(&ann), json!({"holder_name": "  Ann   O'Neill "})).await;
    assert_eq!(status, StatusCode::CREATED, "{cert}");
    assert_eq!((cert["holder_name"].as_str(), cert["minutes"].as_i64()), (Some("Ann O'Neill"), Some(0)));
    let (status, body) = app
        .post(
            &format!("/api/me/record/entries/{}/certificate", ben_entry["id"]),
            Some(&ben),
            json!({"holder_name": "Ben"}),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "Ben attended in part: {body}");

    // Renaming herself changes nothing on it: not the public page, not the
    // signed credential, not asking again with another name.
    let (status, me) = app.request(Method::PATCH, "/api/me", Some(&ann), Some(json!({"name": "Ann Smith"}))).await;
    assert_eq!((status, me["name"].as_str()), (StatusCode::OK, Some("Ann Smith")), "{me}");
    let number = cert["id"].as_str().unwrap();
    let (_, public) = app.get(&format!("/api/certificates/{number}"), None).await;
    assert_eq!(public["holder_name"], "Ann O'Neill", "{public}");
    let (status, again) = app.post(&certificate, Some(&ann), json!({"holder_name": "Ann Smith"})).await;
    assert_eq!(
        (status, again["id"].as_str(), again["holder_name"].as_str()),
        (StatusCode::OK, Some(number), Some("Ann O'Neill"))
    );
    let jwt = app
        .client
        .get(format!("{}{}", app.url, cert["credential_url"].as_str().unwrap()))
        .bearer_auth(&ann)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let (status, verified) = app.post("/api/certificates/verify", None, json!({"credential": jwt})).await;
    assert_eq!(status, StatusCode::OK, "{verified}");
    assert_eq!(verified["certificate"]["holder_name"], "Ann O'Neill");

    // A late correction: the organiser lowers the threshold to 1 %. The
    // session is settled again, the change is listed, and Ben's entry follows.
    let path = format!("/api/sessions/{id}/attendance-threshold");
    let (status, body) = app.request(Method::PUT, &path, Some(&organiser), Some(json!({"percent": 1}))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, report) = app.get(&format!("/api/sessions/{id}/attendance"), Some(&organiser)).await;
    let corrections = report["corrections"].as_array().unwrap();
    assert_eq!(corrections.len(), 1, "{report}");
    let c = &corrections[0];
    assert_eq!(
        (c["by_name"].as_str(), c["old_percent"].as_i64(), c["new_percent"].as_i64(), c["resettled"].as_bool()),
        (Some("Olivia Organiser"), Some(75), Some(1), Some(true))
    );
    assert!(c["at"].as_i64().unwrap() > settled_at.unwrap());
    assert_eq!(person(&report, "Ben")["status"], "attended");
    let after = stored_results(&app, id).await;
    assert_eq!(after.len(), rows.len());
    for (old, new) in rows.iter().zip(&after) {
        assert_eq!((old.0, old.1, old.2, old.3, old.4), (new.0, new.1, new.2, new.3, new.4), "the same live facts");
        assert_eq!(new.5, 1, "settled against the new threshold");
    }
    assert_eq!(session_entry(&app.get("/api/me/record", Some(&ben)).await.1, id)["status"], "attended");
    // Setting the same threshold again is no correction.
    app.request(Method::PUT, &path, Some(&organiser), Some(json!({"percent": 1}))).await;
    let (_, report) = app.get(&format!("/api/sessions/{id}/attendance"), Some(&organiser)).await;
    assert_eq!(report["corrections"].as_array().unwrap().len(), 1);
}
both_backends!(
    a_sessions_results_are_settled_at_its_end_read_by_the_record_and_a_certificate_and_corrected_by_the_organiser
);

async fn a_session_whose_server_stopped_before_its_end_is_settled_when_first_read_after_its_time_ran_out(
    backend: Backend,
) {
    // Half a second of grace after a two-second session.
    let mut app = spawn_app_with(backend, &[("LIVE_GRACE_MS", "500")]).await;
    let organiser = app.organiser().await;
    let ann = app.sign_up("Ann", "ann@oak.sch.uk").await;
    let id = short_session(&app, &organiser, 2).await;
    register(&app, id, &ann).await;
    let mut host = connect(&app.url, id, Some(&room_token(&app, id, &organiser).await)).await;
    host.join().await;
    host.send(json!({"v": 1, "type": "go_live"}));
    host.expect("going live", |m| m["type"] == "phase" && m["phase"] == "live").await;
    let mut ann_room = connect(&app.url, id, Some(&room_token(&app, id, &ann).await)).await;
    ann_room.join().await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    // The server stops mid-session: the rooms close without an end mark.
    app.restart().await;
    assert_eq!(marks(&app, id).await.1, None, "no end was stored");
    let (ends_at, grace): (i64, i64) = sqlx::query_as("select ends_at, live_grace_ms from sessions where id = $1")
        .bind(id)
        .fetch_one(&app.state.db.read)
        .await
        .unwrap();
    let closes_at = ends_at * 1000 + grace;
    let wait = closes_at - chrono::Utc::now().timestamp_millis();
    tokio::time::sleep(Duration::from_millis(wait.max(0) as u64 + 100)).await;

    // Nobody enters again; Ann reads her record, and that settles it.
    let entry = session_entry(&app.get("/api/me/record", Some(&ann)).await.1, id);
    assert_eq!(entry["settled"], true, "{entry}");
    let (live_at, ended_at, settled_at) = marks(&app, id).await;
    assert_eq!(ended_at, Some(closes_at), "over when its time ran out");
    assert!(settled_at.is_some());
    let ann_id: i64 = sqlx::query_scalar("select id from users where email = 'ann@oak.sch.uk'")
        .fetch_one(&app.state.db.read)
        .await
        .unwrap();
    let window = LiveWindow { live_at, close: closes_at };
    let (live_ms, _) = by_the_rules(&app, id, ann_id, window).await;
    let rows = stored_results(&app, id).await;
    assert_eq!(rows.iter().find(|r| r.0 == ann_id).unwrap().1, live_ms, "{rows:?}");
    assert!(live_ms > 0, "Ann was present until the stop");
}
both_backends!(a_session_whose_server_stopped_before_its_end_is_settled_when_first_read_after_its_time_ran_out);
