use chrono::Duration;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::{
    both_backends,
    helpers::{spawn_app, Backend, TestApp},
};

async fn wait_until_sent(app: &TestApp, batch: i64, organiser: &str) -> Value {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let (_, b) = app.get(&format!("/api/invitation-batches/{batch}"), Some(organiser)).await;
        if b["done"] == true {
            return b;
        }
        assert!(std::time::Instant::now() < deadline, "batch never finished: {b}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

async fn invitations_from_a_csv_report_bad_lines_and_skip_duplicates_and_registrants(backend: Backend) {
    let app = spawn_app(backend).await;
    let organiser = app.organiser().await;
    let id = app.session(&organiser, "Early reading", 30, Duration::days(7)).await;
    let reg = app.sign_up("Reg Istered", "reg@elm.sch.uk").await;
    app.post(&format!("/api/sessions/{id}/registration"), Some(&reg), json!({})).await;
    let csv = "email,name,school\n\
               ann@oak.sch.uk,Ann Jones,Oak Primary\n\
               not-an-address,Bob,Elm\n\
               reg@elm.sch.uk,Reg,Elm\n\
               ANN@oak.sch.uk,Ann again,Oak Primary\n\
               cat@ash.sch.uk,Cat,Ash Academy\n\
               dan@,Dan,Elm\n";
    let (status, batch) =
        app.post(&format!("/api/sessions/{id}/invitations"), Some(&organiser), json!({"text": csv})).await;
    assert_eq!(status, StatusCode::CREATED, "{batch}");
    assert_eq!(batch["invited"], 2);
    let rejected: Vec<(i64, String)> = batch["report"]["rejected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["line"].as_i64().unwrap(), r["reason"].as_str().unwrap().to_string()))
        .collect();
    assert_eq!(rejected.iter().map(|r| r.0).collect::<Vec<_>>(), [3, 7]);
    assert!(rejected[0].1.contains("no @"), "{rejected:?}");
    let skipped: Vec<(i64, String)> = batch["report"]["skipped"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["line"].as_i64().unwrap(), r["reason"].as_str().unwrap().to_string()))
        .collect();
    assert_eq!(skipped, [(4, "already registered".to_string()), (5, "listed twice; invited once".to_string())]);

    let done = wait_until_sent(&app, batch["id"].as_i64().unwrap(), &organiser).await;
    assert_eq!(done["progress"], json!({"queued": 0, "sent": 2, "failed": 0}));
    let invitation = app.mail_to("ann@oak.sch.uk", "Invitation: Early reading").await;
    assert!(invitation.text.contains("Hello Ann Jones"));
    assert!(app.smtp.messages().iter().all(|m| m.to != "reg@elm.sch.uk" || !m.subject.starts_with("Invitation")));

    // Inviting the same list again invites nobody twice.
    let (_, again) = app.post(&format!("/api/sessions/{id}/invitations"), Some(&organiser), json!({"text": csv})).await;
    assert_eq!(again["invited"], 0);
}
both_backends!(invitations_from_a_csv_report_bad_lines_and_skip_duplicates_and_registrants);

async fn an_invited_teacher_signs_up_and_registers_through_the_personal_link(backend: Backend) {
    let app = spawn_app(backend).await;
    let organiser = app.organiser().await;
    let id = app.session(&organiser, "Coaching for mentors", 12, Duration::days(7)).await;
    app.post(
        &format!("/api/sessions/{id}/invitations"),
        Some(&organiser),
        json!({"text": "Ann Jones <ann@oak.sch.uk>"}),
    )
    .await;
    let invitation = app.mail_to("ann@oak.sch.uk", "Invitation").await;
    let link = invitation.link(&format!("{}/invite.html?token=", app.url));
    let token = link.split("token=").nth(1).unwrap();

    let (status, view) = app.get(&format!("/api/invitations/{token}"), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (view["email"].as_str(), view["name"].as_str(), view["has_account"].as_bool()),
        (Some("ann@oak.sch.uk"), Some("Ann Jones"), Some(false))
    );
    assert_eq!(view["session"]["title"], "Coaching for mentors");
    assert_eq!(
        app.post(&format!("/api/invitations/{token}/accept"), None, json!({})).await.0,
        StatusCode::UNAUTHORIZED
    );

    let ann = app.sign_up("Ann Jones", "ann@oak.sch.uk").await;
    let (status, mine) = app.post(&format!("/api/invitations/{token}/accept"), Some(&ann), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{mine}");
    assert_eq!(mine["status"], "confirmed");
    let (_, view) = app.get(&format!("/api/invitations/{token}"), Some(&ann)).await;
    assert_eq!(view["accepted"], true);
    assert_eq!(view["session"]["my_registration"]["status"], "confirmed");
    app.mail_to("ann@oak.sch.uk", "You're registered: Coaching for mentors").await;
}
both_backends!(an_invited_teacher_signs_up_and_registers_through_the_personal_link);

async fn an_opted_out_address_is_never_invited_again(backend: Backend) {
    let app = spawn_app(backend).await;
    let organiser = app.organiser().await;
    let first = app.session(&organiser, "First", 12, Duration::days(7)).await;
    let second = app.session(&organiser, "Second", 12, Duration::days(8)).await;
    app.post(
        &format!("/api/sessions/{first}/invitations"),
        Some(&organiser),
        json!({"text": "ann@oak.sch.uk\nbob@oak.sch.uk"}),
    )
    .await;
    let mail = app.mail_to("ann@oak.sch.uk", "Invitation: First").await;
    assert!(mail.html.contains("Opt out"));
    let link = mail.link(&format!("{}/opt-out.html?token=", app.url));
    let (status, body) = app.post("/api/opt-out", None, json!({"token": link.split("token=").nth(1).unwrap()})).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["email"], "ann@oak.sch.uk");
    let (status, _) = app.post("/api/opt-out", None, json!({"token": "forged"})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);

    let (_, batch) = app
        .post(
            &format!("/api/sessions/{second}/invitations"),
            Some(&organiser),
            json!({"text": "ann@oak.sch.uk, bob@oak.sch.uk"}),
        )
        .await;
    assert_eq!(batch["invited"], 1);
    assert_eq!(batch["report"]["skipped"][0]["reason"], "opted out of invitations");
    app.mail_to("bob@oak.sch.uk", "Invitation: Second").await;
    app.drain_outbox().await;
    assert!(app.smtp.messages().iter().all(|m| !(m.to == "ann@oak.sch.uk" && m.subject == "Invitation: Second")));
}
both_backends!(an_opted_out_address_is_never_invited_again);

async fn five_thousand_invitations_return_at_once_and_report_progress(backend: Backend) {
    let app = spawn_app(backend).await;
    let organiser = app.organiser().await;
    let id = app.session(&organiser, "Big webinar", 5000, Duration::days(7)).await;
    let text: String = (0..5000).map(|i| format!("teacher{i}@school{}.sch.uk,Teacher {i}\n", i % 50)).collect();
    let started = std::time::Instant::now();
    let (status, batch) =
        app.post(&format!("/api/sessions/{id}/invitations"), Some(&organiser), json!({"text": text})).await;
    let took = started.elapsed();
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(batch["invited"], 5000);
    // Sending has barely begun when the answer comes back.
    let p = &batch["progress"];
    assert_eq!(p["queued"].as_i64().unwrap() + p["sent"].as_i64().unwrap(), 5000);
    assert!(p["queued"].as_i64().unwrap() > 0);
    eprintln!("5,000 invitations accepted in {took:?}");
}
both_backends!(five_thousand_invitations_return_at_once_and_report_progress);

async fn an_organiser_reads_the_progress_of_a_batch_while_it_is_delivered_until_all_are_sent(backend: Backend) {
    // 1,200 a minute gives the bulk lane 16 a second: 60 invitations take a
    // few seconds, long enough to be read half-way.
    let app = crate::helpers::spawn_app_with(backend, &[("MAIL_PER_MINUTE", "1200")]).await;
    let organiser = app.organiser().await;
    let id = app.session(&organiser, "Progress webinar", 100, Duration::days(7)).await;
    let text: String = (0..60).map(|i| format!("teacher{i}@school.sch.uk\n")).collect();
    let (status, batch) =
        app.post(&format!("/api/sessions/{id}/invitations"), Some(&organiser), json!({"text": text})).await;
    assert_eq!(status, StatusCode::CREATED, "{batch}");
    let batch_id = batch["id"].as_i64().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let mut readings: Vec<(i64, i64, i64)> = vec![];
    let last = loop {
        let (status, b) = app.get(&format!("/api/invitation-batches/{batch_id}"), Some(&organiser)).await;
        assert_eq!(status, StatusCode::OK, "{b}");
        let p = &b["progress"];
        let (queued, sent, failed) =
            (p["queued"].as_i64().unwrap(), p["sent"].as_i64().unwrap(), p["failed"].as_i64().unwrap());
        assert_eq!(queued + sent + failed, 60, "every invitation is counted once: {b}");
        if let Some(&(_, before, _)) = readings.last() {
            assert!(sent >= before, "sent never goes back: {readings:?} then {sent}");
        }
        readings.push((queued, sent, failed));
        if b["done"] == true {
            break b;
        }
        assert!(std::time::Instant::now() < deadline, "the batch never finished: {readings:?}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert!(
        readings.iter().any(|&(queued, sent, _)| queued > 0 && sent > 0),
        "progress was seen part-way, not only at the start and the end: {readings:?}"
    );
    assert_eq!(last["progress"], json!({"queued": 0, "sent": 60, "failed": 0}));
    assert_eq!(app.smtp.messages().iter().filter(|m| m.subject == "Invitation: Progress webinar").count(), 60);
}
both_backends!(an_organiser_reads_the_progress_of_a_batch_while_it_is_delivered_until_all_are_sent);
