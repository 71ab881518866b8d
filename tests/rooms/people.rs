//! Sessions with people in them, made through the API, for the room tests
//! (shared with the hostile-attendee tests in `tests/hostile`).

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::TestApp;

/// A published session starting in 20 minutes that a host has already taken
/// live, with a presenter and a confirmed registrant per name in
/// `attendees`; returns (session id, organiser, presenter, attendee tokens).
pub async fn session_with_people(app: &TestApp, attendees: &[&str]) -> (i64, String, String, Vec<String>) {
    let (id, organiser, presenter, tokens) = session_in_lobby(app, attendees).await;
    let mut tx = app.state.db.begin().await.unwrap();
    sqlx::query("update sessions set live_at = 1 where id = $1").bind(id).execute(&mut *tx).await.unwrap();
    tx.commit().await.unwrap();
    (id, organiser, presenter, tokens)
}

/// The same, before anyone went live: attendees wait in the lobby.
pub async fn session_in_lobby(app: &TestApp, attendees: &[&str]) -> (i64, String, String, Vec<String>) {
    let organiser = app.organiser().await;
    let id = app.session(&organiser, "Questioning in maths", 30, chrono::Duration::minutes(20)).await;
    let presenter = app.sign_up("Priya Presenter", "priya@staffroom.test").await;
    make_presenter(app, id, "priya@staffroom.test").await;
    let mut tokens = vec![];
    for name in attendees {
        let token = app.sign_up(name, &format!("{}@oak.sch.uk", name.to_lowercase())).await;
        let (status, body) = app.post(&format!("/api/sessions/{id}/registration"), Some(&token), json!({})).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        tokens.push(token);
    }
    (id, organiser, presenter, tokens)
}

pub async fn make_presenter(app: &TestApp, session_id: i64, email: &str) {
    let mut tx = app.state.db.begin().await.unwrap();
    sqlx::query("insert into session_presenters (session_id, user_id) select $1, id from users where email = $2")
        .bind(session_id)
        .bind(email)
        .execute(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();
}

/// The room token for `session_id`, asserting it is granted.
pub async fn room_token(app: &TestApp, session_id: i64, session_token: &str) -> String {
    let (status, body): (StatusCode, Value) =
        app.post(&format!("/api/sessions/{session_id}/join"), Some(session_token), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["token"].as_str().unwrap().to_string()
}
