//! Live-room tests: join tokens over HTTP (on SQLite and PostgreSQL), then
//! signalling and media with real WebRTC peers built on the server's own
//! crate (on SQLite only: these will run in a network namespace without
//! PostgreSQL).

#[allow(dead_code)]
#[path = "../api/helpers.rs"]
mod helpers;

mod attendance;
mod breakouts;
#[allow(dead_code)] // The hostile-attendee tests use all of it, these most.
mod client;
mod controls;
mod generator;
mod interaction;
mod join;
mod lifecycle;
#[allow(dead_code)] // The bench uses all of it, the tests some.
#[path = "../../benches/support/light_viewer.rs"]
mod light_viewer;
mod media;
mod people;
mod recording;
mod settle;
mod signalling;

use helpers::TestApp;
pub use people::{make_presenter, room_token, session_in_lobby, session_with_people};

/// Stops the in-process server and runs the server binary on the same
/// database as its own process (so a test can kill it); `app.url` points at
/// it until the caller puts back the returned in-process URL.
pub async fn serve_process(app: &mut TestApp, env: &[(&str, &str)]) -> (std::process::Child, String) {
    app.shutdown().await;
    let port = helpers::free_port();
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_staffroom"))
        .env("STAFFROOM_ADDR", format!("127.0.0.1:{port}"))
        .env("STAFFROOM_RTC_PORT", "0")
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
