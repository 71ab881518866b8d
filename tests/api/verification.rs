//! A confirmed email address is needed to register for a session, join its
//! room and add to the record: until then each answers 403 with a JSON error
//! saying so; after following the emailed link each works.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::{
    attendance::exec,
    both_backends,
    helpers::{spawn_app, Backend, TestApp},
};

fn unverified(answer: (StatusCode, Value), what: &str) {
    let (status, body) = answer;
    assert_eq!(status, StatusCode::FORBIDDEN, "{what}: {body}");
    let error = body["error"].as_str().unwrap_or_else(|| panic!("{what}: a JSON error: {body}"));
    assert!(error.starts_with("verify your email address first"), "{what}: {error}");
}

fn manual_entry() -> Value {
    json!({"kind": "course", "title": "Phonics refresher", "date": "2026-01-10", "minutes": 90})
}

async fn upload(app: &TestApp, token: &str, entry: i64) -> (StatusCode, Value) {
    let res = app
        .client
        .post(format!("{}/api/me/record/entries/{entry}/evidence/file?name=plan.txt", app.url))
        .bearer_auth(token)
        .body("A lesson plan")
        .send()
        .await
        .unwrap();
    (res.status(), res.json().await.unwrap_or(Value::Null))
}

async fn an_unverified_account_can_neither_register_join_nor_add_to_its_record_until_it_follows_the_link(
    backend: Backend,
) {
    let app = spawn_app(backend).await;
    let organiser = app.organiser().await;
    let id = app.session(&organiser, "Retrieval practice", 30, chrono::Duration::minutes(10)).await;
    let ann = app.sign_up_unverified("Ann", "ann@oak.sch.uk").await;
    // Presenters join without registering: the check is on joining itself.
    exec(&app, format!("insert into session_presenters (session_id, user_id) select {id}, id from users where email = 'ann@oak.sch.uk'")).await;

    unverified(app.post(&format!("/api/sessions/{id}/registration"), Some(&ann), json!({})).await, "registering");
    unverified(app.post(&format!("/api/sessions/{id}/join"), Some(&ann), json!({})).await, "joining");
    unverified(app.post("/api/me/record/entries", Some(&ann), manual_entry()).await, "adding an entry");
    // Evidence is refused before the entry is even looked up.
    unverified(
        app.post("/api/me/record/entries/1/evidence", Some(&ann), json!({"url": "https://example.org/plan"})).await,
        "adding a link",
    );
    unverified(upload(&app, &ann, 1).await, "uploading a file");
    let registrations: i64 =
        sqlx::query_scalar("select count(*) from registrations").fetch_one(&app.state.db.read).await.unwrap();
    assert_eq!(registrations, 0);

    app.verify_email("ann@oak.sch.uk").await;
    let (status, body) = app.post(&format!("/api/sessions/{id}/registration"), Some(&ann), json!({})).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, body) = app.post(&format!("/api/sessions/{id}/join"), Some(&ann), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, entry) = app.post("/api/me/record/entries", Some(&ann), manual_entry()).await;
    assert_eq!(status, StatusCode::CREATED, "{entry}");
    let entry = entry["id"].as_i64().unwrap();
    let (status, body) = app
        .post(
            &format!("/api/me/record/entries/{entry}/evidence"),
            Some(&ann),
            json!({"url": "https://example.org/plan"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, body) = upload(&app, &ann, entry).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
}
both_backends!(an_unverified_account_can_neither_register_join_nor_add_to_its_record_until_it_follows_the_link);
