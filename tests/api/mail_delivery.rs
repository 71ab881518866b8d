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

async fn each_message_id_is_made_from_its_outbox_row_and_survives_a_retry(backend: Backend) {
    let mut app = spawn_app_with(backend, &[("MAIL_RETRY_BASE_MS", "300")]).await;
    app.smtp.stop();
    app.sign_up_unverified("Ann", "ann@oak.sch.uk").await;
    // The first attempt fails against a stopped server; the retry goes out.
    let deadline = std::time::Instant::now() + StdDuration::from_secs(10);
    loop {
        let attempts: i64 = sqlx::query_scalar("select attempts from outbox where to_email = 'ann@oak.sch.uk'")
            .fetch_one(&app.state.db.read)
            .await
            .unwrap();
        if attempts >= 1 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no delivery attempt");
        tokio::time::sleep(StdDuration::from_millis(50)).await;
    }
    app.smtp.restart();
    let mail = app.mail_to("ann@oak.sch.uk", "Confirm your email").await;
    let (id, stored, attempts): (i64, String, i64) =
        sqlx::query_as("select id, message_id, attempts from outbox where to_email = 'ann@oak.sch.uk'")
            .fetch_one(&app.state.db.read)
            .await
            .unwrap();
    assert!(attempts >= 2, "the message was retried ({attempts} attempts)");
    let install: String =
        sqlx::query_scalar("select install_id from mail_install").fetch_one(&app.state.db.read).await.unwrap();
    assert_eq!(install.len(), 16, "{install}");
    assert_eq!(stored, format!("<{id}.{install}@staffroom.localhost>"));
    // mail-parser gives the id without its angle brackets.
    assert_eq!(format!("<{}>", mail.message_id), stored);
}
both_backends!(each_message_id_is_made_from_its_outbox_row_and_survives_a_retry);

async fn a_verification_email_is_not_held_up_by_hundreds_of_queued_invitations(backend: Backend) {
    // 1,200 a minute: the bulk lane's 80 % sends 300 invitations in about 19 s.
    let app = spawn_app_with(backend, &[("MAIL_PER_MINUTE", "1200")]).await;
    let organiser = app.organiser().await;
    let id = app.session(&organiser, "Crowded", 1000, Duration::days(7)).await;
    app.drain_outbox().await;
    let before = app.smtp.messages().len();
    let text: String = (0..300).map(|i| format!("t{i}@oak.sch.uk\n")).collect();
    let (_, batch) =
        app.post(&format!("/api/sessions/{id}/invitations"), Some(&organiser), json!({"text": text})).await;
    assert_eq!(batch["invited"], 300);
    app.wait_for_mail("the first invitations", |m| m.len() >= before + 10).await;

    // Timed from the sign-up's answer, when its mail is committed (hashing
    // the password is not the mail's delay).
    app.sign_up("Vera", "vera@oak.sch.uk").await;
    let queued_at = std::time::Instant::now();
    let mail = app.wait_for_mail("the verification", |m| m.iter().any(|m| m.to == "vera@oak.sch.uk")).await;
    let waited = queued_at.elapsed();
    let invitations = mail.iter().filter(|m| m.subject == "Invitation: Crowded").count();
    eprintln!("the verification took {waited:?}, with {invitations} of 300 invitations delivered");
    assert!(invitations < 300, "the invitations finished first");
    assert!(waited < StdDuration::from_secs(5), "the verification waited {waited:?}");
    // Each row is in its lane from the start (no need to wait for the rest).
    let lanes: Vec<(String, String, i64)> =
        sqlx::query_as("select kind, lane, count(*) from outbox group by kind, lane order by kind")
            .fetch_all(&app.state.db.read)
            .await
            .unwrap();
    for (kind, lane, _) in &lanes {
        assert_eq!(lane, if kind == "invitation" { "bulk" } else { "transactional" }, "{lanes:?}");
    }
}
both_backends!(a_verification_email_is_not_held_up_by_hundreds_of_queued_invitations);

async fn an_invitation_is_skipped_when_its_recipient_opts_out_after_the_worker_claimed_it(backend: Backend) {
    // 60 a minute: the bulk lane sends one invitation about every 1.25 s, and
    // claims all three at once, so the third is the worker's before anyone opts out.
    let app = spawn_app_with(backend, &[("MAIL_PER_MINUTE", "60")]).await;
    let organiser = app.organiser().await;
    let id = app.session(&organiser, "Second thoughts", 10, Duration::days(7)).await;
    app.drain_outbox().await;
    let (_, batch) = app
        .post(
            &format!("/api/sessions/{id}/invitations"),
            Some(&organiser),
            json!({"text": "a@oak.sch.uk\nb@oak.sch.uk\nc@oak.sch.uk"}),
        )
        .await;
    assert_eq!(batch["invited"], 3);
    let first = app.mail_to("a@oak.sch.uk", "Invitation: Second thoughts").await;
    let status: String = sqlx::query_scalar("select status from outbox where to_email = 'c@oak.sch.uk'")
        .fetch_one(&app.state.db.read)
        .await
        .unwrap();
    assert_eq!(status, "sending", "the worker holds the last invitation");

    // c opts out with the link from their own invitation (made the same way).
    let link = staffroom::registration::invitations::opt_out_url(&app.state, "c@oak.sch.uk");
    assert!(first.text.contains("/opt-out.html?token="), "every invitation has an opt-out link");
    let token = link.split("token=").nth(1).unwrap();
    let (status, body) = app.post("/api/opt-out", None, json!({"token": token})).await;
    assert_eq!(status, reqwest::StatusCode::OK, "{body}");

    app.drain_outbox().await;
    let (status, error): (String, Option<String>) =
        sqlx::query_as("select status, last_error from outbox where to_email = 'c@oak.sch.uk'")
            .fetch_one(&app.state.db.read)
            .await
            .unwrap();
    assert_eq!((status.as_str(), error.as_deref()), ("skipped", Some("recipient opted out")));
    app.mail_to("b@oak.sch.uk", "Invitation: Second thoughts").await;
    tokio::time::sleep(StdDuration::from_millis(1500)).await;
    assert!(!app.smtp.messages().iter().any(|m| m.to == "c@oak.sch.uk"), "the opted-out address got mail");
    let (_, b) = app.get(&format!("/api/invitation-batches/{}", batch["id"]), Some(&organiser)).await;
    assert_eq!(b["progress"], json!({"queued": 0, "sent": 2, "failed": 0, "skipped": 1}));
    assert_eq!(b["done"], true);
}
both_backends!(an_invitation_is_skipped_when_its_recipient_opts_out_after_the_worker_claimed_it);

async fn with_the_file_transport_a_decoded_txt_beside_each_eml_holds_the_link_that_verifies(backend: Backend) {
    // A blank SMTP host means no SMTP server: mail goes to files, as by default.
    let app = spawn_app_with(backend, &[("SMTP_HOST", " ")]).await;
    let token = app.sign_up_unverified("Tom Long-Name", "tom@oak.sch.uk").await;
    app.drain_outbox().await;
    let dir = app.data_dir.path().join("outbox-files");
    let (id, message_id): (i64, String) = sqlx::query_as("select id, message_id from outbox where kind = 'verify'")
        .fetch_one(&app.state.db.read)
        .await
        .unwrap();
    let install: String =
        sqlx::query_scalar("select install_id from mail_install").fetch_one(&app.state.db.read).await.unwrap();
    let eml = dir.join(format!("{id:08}.{install}.eml"));
    let txt = dir.join(format!("{id:08}.{install}.txt"));
    let raw = std::fs::read_to_string(&eml).unwrap();
    let text = std::fs::read_to_string(&txt).unwrap();
    assert!(text.contains("To: Tom Long-Name <tom@oak.sch.uk>"), "{text}");
    assert!(text.contains(&format!("Message-ID: {message_id}")), "{text}");
    assert!(raw.contains(&format!("Message-ID: {message_id}")), "{raw}");

    let prefix = format!("{}/verify.html?token=", app.url);
    let start = text.find(&prefix).unwrap_or_else(|| panic!("no verification link in:\n{text}"));
    let link = text[start..].split_whitespace().next().unwrap();
    // The .eml holds it only quoted-printable: copied from there it would not work.
    assert!(!raw.contains(link), "the .eml was expected to hold the link encoded");
    // Following it: the page loads, and the token it carries verifies the account.
    let page = app.client.get(link).send().await.unwrap();
    assert_eq!(page.status(), reqwest::StatusCode::OK);
    let verify_token = link.split("token=").nth(1).unwrap();
    let (status, user) = app.post("/api/auth/verify", None, json!({"token": verify_token})).await;
    assert_eq!(status, reqwest::StatusCode::OK, "{user}");
    assert_eq!(user["email_verified"], true);
    let (_, me) = app.get("/api/me", Some(&token)).await;
    assert_eq!(me["email_verified"], true, "{me}");
    // Nothing is left half-written.
    let names: Vec<String> =
        std::fs::read_dir(&dir).unwrap().flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
    assert!(names.iter().all(|n| !n.ends_with(".tmp")), "{names:?}");
}
both_backends!(with_the_file_transport_a_decoded_txt_beside_each_eml_holds_the_link_that_verifies);

async fn a_mail_file_already_written_is_marked_sent_and_not_written_again(backend: Backend) {
    use std::os::unix::fs::MetadataExt;
    let app = spawn_app_with(backend, &[("SMTP_HOST", " ")]).await;
    app.sign_up_unverified("Ann", "ann@oak.sch.uk").await;
    app.drain_outbox().await;
    let (id, install): (i64, String) =
        sqlx::query_as("select o.id, i.install_id from outbox o, mail_install i where o.to_email = 'ann@oak.sch.uk'")
            .fetch_one(&app.state.db.read)
            .await
            .unwrap();
    let eml = app.data_dir.path().join("outbox-files").join(format!("{id:08}.{install}.eml"));
    let inode = std::fs::metadata(&eml).unwrap().ino();
    // The database as a backup taken before the send left it (or a process
    // killed between the rename and the mark): the row is due again.
    let mut tx = app.state.db.begin().await.unwrap();
    sqlx::query("update outbox set status = 'queued', sent_at = null, next_attempt_at = 0 where id = $1")
        .bind(id)
        .execute(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    app.state.mail_wake.notify_one();
    app.drain_outbox().await;
    let (status, attempts): (String, i64) = sqlx::query_as("select status, attempts from outbox where id = $1")
        .bind(id)
        .fetch_one(&app.state.db.read)
        .await
        .unwrap();
    assert_eq!((status.as_str(), attempts), ("sent", 2), "the worker took the row again and marked it sent");
    assert_eq!(std::fs::metadata(&eml).unwrap().ino(), inode, "the file was written again");
    let files = std::fs::read_dir(eml.parent().unwrap()).unwrap().count();
    assert_eq!(files, 2, "one .eml and its .txt");
}
both_backends!(a_mail_file_already_written_is_marked_sent_and_not_written_again);
