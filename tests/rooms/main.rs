//! Live-room tests: join tokens over HTTP (on SQLite and PostgreSQL), then
//! signalling and media with real WebRTC peers built on the server's own
//! crate (on SQLite only: these will run in a network namespace without
//! PostgreSQL).

#[allow(dead_code)]
#[path = "../api/helpers.rs"]
mod helpers;

mod attendance;
mod breakouts;
mod client;
mod controls;
mod generator;
mod hostile;
mod interaction;
mod join;
#[allow(dead_code)] // The bench uses all of it, the tests some.
#[path = "../../benches/support/light_viewer.rs"]
mod light_viewer;
mod media;
mod recording;
mod signalling;

use reqwest::StatusCode;
use serde_json::{json, Value};

use helpers::TestApp;

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

/// Stops the in-process server and runs the server binary on the same
/// database as its own process (so a test can kill it); `app.url` points at
/// it until the caller puts back the returned in-process URL.
pub async fn serve_process(app: &mut TestApp, env: &[(&str, &str)]) -> (std::process::Child, String) {
    app.shutdown().await;
    let port = helpers::free_port();
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_staffroom"))
        .env("STAFFROOM_ADDR", format!("127.0.0.1:{port}"))
        .env("STAFFROOM_DATA_DIR", app.data_dir.path())
        .env(
            "STAFFROOM_DATABASE_URL",
            format!("sqlite://{}?mode=rwc", app.data_dir.path().join("staffroom.db").display()),
        )
        .env("STAFFROOM_JWT_SECRET", "test-secret-test-secret-test-secret")
        .env("RUST_LOG", "warn")
        .envs(env.iter().map(|(k, v)| (format!("STAFFROOM_{k}"), v.to_string())))
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("the staffroom binary starts");
    let in_process_url = std::mem::replace(&mut app.url, format!("http://127.0.0.1:{port}"));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while app.client.get(format!("{}/healthz", app.url)).send().await.is_err() {
        assert!(std::time::Instant::now() < deadline, "the server process came up");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    (child, in_process_url)
}
