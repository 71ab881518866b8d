use std::{collections::HashMap, time::Duration as StdDuration};

use chrono::Duration;
use serde_json::json;

use crate::{
    both_backends,
    helpers::{spawn_app_with, Backend},
};

async fn when_the_smtp_server_goes_down_mid_batch_every_message_still_arrives_exactly_once(backend: Backend) {
    // 300 a minute: a batch of 40 takes about 8 s, time enough to pull the plug.
    let mut app = spawn_app_with(backend, &[("MAIL_PER_MINUTE", "300"), ("MAIL_RETRY_BASE_MS", "300")]).await;
    let organiser = app.organiser().await;
    let id = app.session(&organiser, "Resilience", 100, Duration::days(7)).await;
    app.drain_outbox().await;
    let before = app.smtp.messages().len();
    let text: String = (0..40).map(|i| format!("t{i}@oak.sch.uk\n")).collect();
    let (_, batch) =
        app.post(&format!("/api/sessions/{id}/invitations"), Some(&organiser), json!({"text": text})).await;
    assert_eq!(batch["invited"], 40);

    app.wait_for_mail("the first few invitations", |m| m.len() >= before + 5).await;
    app.smtp.stop();
    let during = app.smtp.messages().len() - before;
    assert!(during < 40, "the batch finished before the server went down");
    tokio::time::sleep(StdDuration::from_millis(1500)).await;
    let (_, mid) = app.get(&format!("/api/invitation-batches/{}", batch["id"]), Some(&organiser)).await;
    assert!(mid["progress"]["queued"].as_i64().unwrap() > 0, "{mid}");
    assert_eq!(mid["progress"]["failed"], 0, "a server outage is not a permanent failure");

    app.smtp.restart();
    let deadline = std::time::Instant::now() + StdDuration::from_secs(60);
    loop {
        let (_, b) = app.get(&format!("/api/invitation-batches/{}", batch["id"]), Some(&organiser)).await;
        if b["done"] == true {
            assert_eq!(b["progress"], json!({"queued": 0, "sent": 40, "failed": 0}));
            break;
        }
        assert!(std::time::Instant::now() < deadline, "delivery did not resume: {b}");
        tokio::time::sleep(StdDuration::from_millis(200)).await;
    }
    let mut per_address: HashMap<String, usize> = HashMap::new();
    for m in app.smtp.messages().iter().filter(|m| m.subject == "Invitation: Resilience") {
        *per_address.entry(m.to.clone()).or_default() += 1;
    }
    assert_eq!(per_address.len(), 40);
    assert!(per_address.values().all(|&n| n == 1), "duplicates: {per_address:?}");
}
both_backends!(when_the_smtp_server_goes_down_mid_batch_every_message_still_arrives_exactly_once);

async fn mail_that_runs_out_of_retries_is_shown_to_the_organiser_as_failed(backend: Backend) {
    let mut app = spawn_app_with(backend, &[("MAIL_MAX_ATTEMPTS", "2"), ("MAIL_RETRY_BASE_MS", "100")]).await;
    let organiser = app.organiser().await;
    let id = app.session(&organiser, "Unlucky", 10, Duration::days(7)).await;
    app.drain_outbox().await;
    app.smtp.stop();
    let (_, batch) =
        app.post(&format!("/api/sessions/{id}/invitations"), Some(&organiser), json!({"text": "ann@oak.sch.uk"})).await;
    app.drain_outbox().await;
    let (_, b) = app.get(&format!("/api/invitation-batches/{}", batch["id"]), Some(&organiser)).await;
    assert_eq!(b["progress"], json!({"queued": 0, "sent": 0, "failed": 1}));
    let (status, failures) = app.get(&format!("/api/sessions/{id}/mail-failures"), Some(&organiser)).await;
    assert_eq!(status, reqwest::StatusCode::OK);
    assert_eq!(failures[0]["to_email"], "ann@oak.sch.uk");
    assert_eq!(failures[0]["attempts"], 2);
    assert!(!failures[0]["error"].as_str().unwrap().is_empty());
    // The mail server is down: Bob cannot get his verification link, and needs none here.
    let teacher = app.sign_up_unverified("Bob", "bob@oak.sch.uk").await;
    assert_eq!(
        app.get(&format!("/api/sessions/{id}/mail-failures"), Some(&teacher)).await.0,
        reqwest::StatusCode::FORBIDDEN
    );
}
both_backends!(mail_that_runs_out_of_retries_is_shown_to_the_organiser_as_failed);
