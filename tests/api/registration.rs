use chrono::Duration;
use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::{
    both_backends,
    helpers::{spawn_app, Backend},
};

async fn registration_fills_the_seats_then_the_waiting_list_and_a_cancel_promotes_the_first(backend: Backend) {
    let app = spawn_app(backend).await;
    let organiser = app.organiser().await;
    let id = app.session(&organiser, "Calm classrooms", 2, Duration::days(3)).await;
    let ann = app.sign_up("Ann", "ann@oak.sch.uk").await;
    let bob = app.sign_up("Bob", "bob@oak.sch.uk").await;
    let cat = app.sign_up("Cat", "cat@oak.sch.uk").await;
    let dan = app.sign_up("Dan", "dan@oak.sch.uk").await;
    let path = format!("/api/sessions/{id}/registration");

    let (status, first) = app.post(&path, Some(&ann), json!({})).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(first["status"], "confirmed");
    // Registering twice is harmless.
    let (status, again) = app.post(&path, Some(&ann), json!({})).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(again["id"], first["id"]);
    assert_eq!(app.post(&path, Some(&bob), json!({})).await.1["status"], "confirmed");
    let (_, c) = app.post(&path, Some(&cat), json!({})).await;
    assert_eq!((c["status"].as_str(), c["waitlist_position"].as_i64()), (Some("waitlisted"), Some(1)));
    let (_, d) = app.post(&path, Some(&dan), json!({})).await;
    assert_eq!(d["waitlist_position"], 2);

    let (_, session) = app.get(&format!("/api/sessions/{id}"), Some(&dan)).await;
    assert_eq!((session["seats_left"].as_i64(), session["waitlisted"].as_i64()), (Some(0), Some(2)));
    assert_eq!(session["my_registration"]["waitlist_position"], 2);
    let waiting = app.mail_to("cat@oak.sch.uk", "On the waiting list").await;
    assert!(waiting.text.contains("position 1"));
    assert!(waiting.ics.is_none());

    // Ann cancels: Cat is promoted and told, Dan moves up.
    let (status, _) = app.request(Method::DELETE, &path, Some(&ann), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (_, mine) = app.get(&format!("/api/sessions/{id}"), Some(&cat)).await;
    assert_eq!(mine["my_registration"]["status"], "confirmed");
    let (_, mine) = app.get(&format!("/api/sessions/{id}"), Some(&dan)).await;
    assert_eq!(mine["my_registration"]["waitlist_position"], 1);
    let promoted = app.mail_to("cat@oak.sch.uk", "A place came free").await;
    let cal = promoted.calendar();
    assert_eq!((cal.method.as_str(), cal.summary.as_str()), ("REQUEST", "Calm classrooms"));
    let cancel = app.mail_to("ann@oak.sch.uk", "Cancelled: Calm classrooms").await;
    let confirmation = app.mail_to("ann@oak.sch.uk", "You're registered").await;
    assert_eq!(cancel.calendar().method, "CANCEL");
    assert_eq!(cancel.calendar().uid, confirmation.calendar().uid);
    assert!(cancel.calendar().sequence > confirmation.calendar().sequence);

    // The organiser sees who is coming and who waits, and can export it.
    let (_, list) = app.get(&format!("/api/sessions/{id}/registrations"), Some(&organiser)).await;
    let rows: Vec<(String, String)> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["email"].as_str().unwrap().into(), r["status"].as_str().unwrap().into()))
        .collect();
    assert_eq!(
        rows,
        [("bob@oak.sch.uk", "confirmed"), ("cat@oak.sch.uk", "confirmed"), ("dan@oak.sch.uk", "waitlisted")]
            .map(|(a, b)| (a.to_string(), b.to_string()))
    );
    let csv = app
        .client
        .get(format!("{}/api/sessions/{id}/registrations.csv", app.url))
        .bearer_auth(&organiser)
        .send()
        .await
        .unwrap();
    assert!(csv.headers()["content-type"].to_str().unwrap().starts_with("text/csv"));
    let text = csv.text().await.unwrap();
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let records: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(records.len(), 3);
    assert_eq!(&records[2][1], "dan@oak.sch.uk");
    assert_eq!(&records[2][4], "waitlisted");
    assert_eq!(&records[2][5], "1");
}
both_backends!(registration_fills_the_seats_then_the_waiting_list_and_a_cancel_promotes_the_first);

async fn the_confirmation_carries_a_calendar_invitation_with_the_join_link(backend: Backend) {
    let app = spawn_app_with_london(backend).await;
    let organiser = app.organiser().await;
    let id = app.session(&organiser, "Behaviour, calmly", 50, Duration::days(3)).await;
    let ann = app.sign_up("Ann Jones", "ann@oak.sch.uk").await;
    app.post(&format!("/api/sessions/{id}/registration"), Some(&ann), json!({})).await;
    let mail = app.mail_to("ann@oak.sch.uk", "You're registered: Behaviour, calmly").await;
    // <row id.install id@the sender's domain> (docs/mail.md).
    assert!(mail.message_id.ends_with("@staffroom.localhost"), "{}", mail.message_id);
    assert!(mail.text.contains(&format!("{}/session.html?id={id}", app.url)));
    assert!(mail.html.contains("Open the session page"));
    assert_eq!(mail.ics_content_type.as_deref(), Some("text/calendar; method=REQUEST"));
    assert!(mail.attachment_names.iter().any(|n| n == "invite.ics"), "{:?}", mail.attachment_names);
    let cal = mail.calendar();
    assert_eq!(cal.method, "REQUEST");
    assert!(cal.uid.starts_with("registration-"));
    let (_, session) = app.get(&format!("/api/sessions/{id}"), None).await;
    let start = chrono::DateTime::parse_from_rfc3339(session["starts_at"].as_str().unwrap()).unwrap();
    assert_eq!(cal.dtstart, start.format("%Y%m%dT%H%M%SZ").to_string());
    // The letter gives the time in the reader's zone (the programme's, London).
    let local = start.with_timezone(&chrono_tz::Europe::London);
    assert!(mail.text.contains(&local.format("%H:%M").to_string()), "{}", mail.text);
}
both_backends!(the_confirmation_carries_a_calendar_invitation_with_the_join_link);

async fn spawn_app_with_london(backend: Backend) -> crate::helpers::TestApp {
    crate::helpers::spawn_app_with(backend, &[("TIME_ZONE", "Europe/London")]).await
}

async fn a_new_time_sends_an_update_with_the_same_uid_and_a_higher_sequence(backend: Backend) {
    let app = spawn_app(backend).await;
    let organiser = app.organiser().await;
    let id = app.session(&organiser, "Phonics catch-up", 10, Duration::days(4)).await;
    let ann = app.sign_up("Ann", "ann@oak.sch.uk").await;
    app.post(&format!("/api/sessions/{id}/registration"), Some(&ann), json!({})).await;
    let first = app.mail_to("ann@oak.sch.uk", "You're registered").await.calendar();

    let start = chrono::Utc::now() + Duration::days(6);
    let (status, updated) = app
        .request(
            Method::PUT,
            &format!("/api/sessions/{id}"),
            Some(&organiser),
            Some(json!({"title": "Phonics catch-up", "kind": "workshop", "starts_at": start.to_rfc3339(),
                        "ends_at": (start + Duration::minutes(90)).to_rfc3339(), "capacity": 10})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{updated}");
    let update = app.mail_to("ann@oak.sch.uk", "New time: Phonics catch-up").await.calendar();
    assert_eq!(update.method, "REQUEST");
    assert_eq!(update.uid, first.uid);
    assert!(update.sequence > first.sequence);
    assert_eq!(update.dtstart, start.format("%Y%m%dT%H%M%SZ").to_string());

    // Cancelling the session sends a CANCEL for the same event, higher again.
    let (status, _) = app.post(&format!("/api/sessions/{id}/cancel"), Some(&organiser), json!({})).await;
    assert_eq!(status, StatusCode::OK);
    let cancel = app.mail_to("ann@oak.sch.uk", "Cancelled: Phonics catch-up").await.calendar();
    assert_eq!(cancel.method, "CANCEL");
    assert_eq!(cancel.uid, first.uid);
    assert!(cancel.sequence > update.sequence);
    let (_, programme) = app.get("/api/sessions", None).await;
    assert!(programme.as_array().unwrap().is_empty());
    let (status, _) = app.post(&format!("/api/sessions/{id}/registration"), Some(&ann), json!({})).await;
    assert_eq!(status, StatusCode::OK, "an existing place is still reported");
}
both_backends!(a_new_time_sends_an_update_with_the_same_uid_and_a_higher_sequence);

async fn reminders_go_out_once_each_even_across_restarts(backend: Backend) {
    let mut app = spawn_app(backend).await;
    let organiser = app.organiser().await;
    let tomorrow = app.session(&organiser, "Tomorrow's masterclass", 10, Duration::hours(20)).await;
    let ann = app.sign_up("Ann", "ann@oak.sch.uk").await;
    app.post(&format!("/api/sessions/{tomorrow}/registration"), Some(&ann), json!({})).await;
    // Registered inside the day: the confirmation stands in for the day-before reminder.
    app.drain_outbox().await;
    tokio::time::sleep(std::time::Duration::from_millis(600)).await;
    assert!(app.smtp.messages().iter().all(|m| !m.subject.starts_with("Tomorrow")));

    // Move it to start in 30 hours, then let the clock "pass": the session now
    // starts in 50 minutes, so the hour reminder is due (and only it).
    let start = chrono::Utc::now() + Duration::hours(30);
    app.request(
        Method::PUT,
        &format!("/api/sessions/{tomorrow}"),
        Some(&organiser),
        Some(json!({"title": "Tomorrow's masterclass", "kind": "masterclass", "starts_at": start.to_rfc3339(),
                    "ends_at": (start + Duration::hours(1)).to_rfc3339(), "capacity": 10})),
    )
    .await;
    let sent = staffroom::registration::reminders::send_due(&app.state, (start - Duration::hours(23)).timestamp())
        .await
        .unwrap();
    assert_eq!(sent, 1);
    app.mail_to("ann@oak.sch.uk", "Tomorrow: Tomorrow's masterclass").await;

    app.restart().await;
    let again = staffroom::registration::reminders::send_due(&app.state, (start - Duration::hours(23)).timestamp())
        .await
        .unwrap();
    assert_eq!(again, 0, "the day-before reminder is not sent twice after a restart");
    let soon = staffroom::registration::reminders::send_due(&app.state, (start - Duration::minutes(50)).timestamp())
        .await
        .unwrap();
    assert_eq!(soon, 1);
    app.restart().await;
    assert_eq!(
        staffroom::registration::reminders::send_due(&app.state, (start - Duration::minutes(10)).timestamp())
            .await
            .unwrap(),
        0
    );
    app.mail_to("ann@oak.sch.uk", "Starting soon: Tomorrow's masterclass").await;
    app.mail_to("ann@oak.sch.uk", "Tomorrow: Tomorrow's masterclass").await;
}
both_backends!(reminders_go_out_once_each_even_across_restarts);

async fn nobody_can_cancel_someone_elses_registration(backend: Backend) {
    let app = spawn_app(backend).await;
    let organiser = app.organiser().await;
    let id = app.session(&organiser, "Mentoring", 5, Duration::days(2)).await;
    let ann = app.sign_up("Ann", "ann@oak.sch.uk").await;
    let bob = app.sign_up("Bob", "bob@oak.sch.uk").await;
    let (_, reg) = app.post(&format!("/api/sessions/{id}/registration"), Some(&ann), json!({})).await;
    let reg_id = reg["id"].as_i64().unwrap();
    let (status, body) = app.request(Method::DELETE, &format!("/api/registrations/{reg_id}"), Some(&bob), None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(body["error"].as_str().unwrap().contains("someone else"));
    let (_, mine) = app.get(&format!("/api/sessions/{id}"), Some(&ann)).await;
    assert_eq!(mine["my_registration"]["status"], "confirmed", "the place is kept");
    // The organiser may.
    assert_eq!(
        app.request(Method::DELETE, &format!("/api/registrations/{reg_id}"), Some(&organiser), None).await.0,
        StatusCode::NO_CONTENT
    );
    let (_, my) = app.get("/api/me/sessions", Some(&ann)).await;
    assert!(my.as_array().unwrap().is_empty());
}
both_backends!(nobody_can_cancel_someone_elses_registration);

async fn concurrent_registrations_never_exceed_capacity(backend: Backend) {
    let app = spawn_app(backend).await;
    let organiser = app.organiser().await;
    let id = app.session(&organiser, "Popular", 5, Duration::days(2)).await;
    let mut tokens = vec![];
    for i in 0..20 {
        tokens.push(app.sign_up(&format!("Teacher {i}"), &format!("t{i}@oak.sch.uk")).await);
    }
    let path = format!("/api/sessions/{id}/registration");
    let results = futures::future::join_all(tokens.iter().map(|t| app.post(&path, Some(t), json!({})))).await;
    let confirmed = results.iter().filter(|(_, b)| b["status"] == "confirmed").count();
    let mut positions: Vec<i64> = results.iter().filter_map(|(_, b)| b["waitlist_position"].as_i64()).collect();
    positions.sort();
    assert_eq!(confirmed, 5);
    assert_eq!(positions, (1..=15).collect::<Vec<_>>());
}
both_backends!(concurrent_registrations_never_exceed_capacity);

async fn registrants_who_missed_the_session_get_one_email_with_the_replay_link(backend: Backend) {
    let mut app = spawn_app(backend).await;
    let organiser = app.organiser().await;
    let id = app.session(&organiser, "Adaptive teaching", 10, Duration::hours(1)).await;
    let ann = app.sign_up("Ann", "ann@oak.sch.uk").await;
    let ben = app.sign_up("Ben", "ben@oak.sch.uk").await;
    for token in [&ann, &ben] {
        app.post(&format!("/api/sessions/{id}/registration"), Some(token), json!({})).await;
    }
    app.drain_outbox().await;
    // Ann came to the live session, Ben did not; a host ended it; its recording is ready.
    let db = &app.state.db;
    let mut tx = db.begin().await.unwrap();
    let now = chrono::Utc::now().timestamp_millis();
    sqlx::query(
        "insert into room_events (session_id, user_id, kind, reason, at)
         select $1, id, 'join', null, $2 from users where email = 'ann@oak.sch.uk'",
    )
    .bind(id)
    .bind(now)
    .execute(&mut *tx)
    .await
    .unwrap();
    sqlx::query("update sessions set ended_at = $1 where id = $2").bind(now).bind(id).execute(&mut *tx).await.unwrap();
    tx.commit().await.unwrap();
    // No recording yet: nothing to send.
    let sent = staffroom::registration::reminders::send_follow_ups(&app.state, staffroom::db::now()).await.unwrap();
    assert_eq!(sent, 0);
    let mut tx = db.begin().await.unwrap();
    sqlx::query(
        "insert into recordings (id, session_id, status, started_at, stopped_at, duration_ms)
         values ('00112233445566778899aabbccddeeff', $1, 'ready', $2, $2, 60000)",
    )
    .bind(id)
    .bind(now)
    .execute(&mut *tx)
    .await
    .unwrap();
    tx.commit().await.unwrap();

    // The reminders worker finds it on its own (every 200 ms in tests).
    let mail = app.mail_to("ben@oak.sch.uk", "The replay of Adaptive teaching").await;
    let link = mail.link("/replay.html?id=");
    assert!(link.ends_with("/replay.html?id=00112233445566778899aabbccddeeff"), "{link}");
    assert!(mail.text.contains("We missed you"), "{}", mail.text);
    // Once only, even across a restart; and never to Ann, who came.
    app.restart().await;
    assert_eq!(staffroom::registration::reminders::send_follow_ups(&app.state, staffroom::db::now()).await.unwrap(), 0);
    app.drain_outbox().await;
    let replays: Vec<_> =
        app.smtp.messages().into_iter().filter(|m| m.subject.starts_with("The replay of")).map(|m| m.to).collect();
    assert_eq!(replays, vec!["ben@oak.sch.uk".to_string()]);
}

both_backends!(registrants_who_missed_the_session_get_one_email_with_the_replay_link);
