//! Mail across a `kill -9`: the real server binary, started as a child
//! process, is killed while it delivers a few hundred invitations, then
//! started again. Every invitation arrives, none is written twice, and what
//! the dead process had claimed goes out within 30 s of the restart
//! (docs/mail.md). Once with the file transport, once over SMTP (aiosmtpd),
//! each on SQLite and PostgreSQL.

#[allow(dead_code)]
#[path = "api/helpers.rs"]
mod helpers;

use std::{
    collections::{HashMap, HashSet},
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use serde_json::{json, Value};

use helpers::{free_port, spawn_app_with, Backend, TestApp};

const INVITATIONS: usize = 300;

#[derive(Clone, Copy, PartialEq)]
enum Via {
    Files,
    Smtp,
}

/// The server binary as a child process; killed when dropped.
struct Server {
    child: Child,
    url: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    async fn start(app: &TestApp, via: Via, log: &Path) -> Server {
        let port = free_port();
        let log = std::fs::File::create(log).unwrap();
        let mut command = Command::new(env!("CARGO_BIN_EXE_staffroom"));
        command
            .env("STAFFROOM_ADDR", format!("127.0.0.1:{port}"))
            .env("STAFFROOM_RTC_PORT", "0")
            .env("STAFFROOM_DATA_DIR", app.data_dir.path())
            .env("STAFFROOM_DATABASE_URL", &app.state.settings.database_url)
            .env("STAFFROOM_JWT_SECRET", "test-secret-test-secret-test-secret")
            // The bulk lane's 80 %: about 16 invitations a second.
            .env("STAFFROOM_MAIL_PER_MINUTE", "1200")
            .env("STAFFROOM_MAIL_POLL_MS", "200")
            .env("STAFFROOM_MAIL_RETRY_BASE_MS", "200")
            .env("RUST_LOG", "info,sqlx=warn")
            .env_remove("STAFFROOM_PUBLIC_URL")
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log));
        match via {
            Via::Files => command.env_remove("STAFFROOM_SMTP_HOST"),
            Via::Smtp => command
                .env("STAFFROOM_SMTP_HOST", "127.0.0.1")
                .env("STAFFROOM_SMTP_PORT", app.smtp.port.to_string())
                .env("STAFFROOM_SMTP_TLS", "none"),
        };
        let server = Server {
            child: command.spawn().expect("the staffroom binary starts"),
            url: format!("http://127.0.0.1:{port}"),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while app.client.get(format!("{}/healthz", server.url)).send().await.is_err() {
            assert!(Instant::now() < deadline, "the server process came up");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        server
    }

    fn kill(mut self) {
        // SIGKILL: nothing is flushed, released or marked.
        self.child.kill().expect("SIGKILL");
        self.child.wait().unwrap();
    }
}

/// An outbox row as the killed process left it.
#[derive(Debug, Clone)]
struct Row {
    id: i64,
    message_id: String,
    status: String,
    handoff_started_at: Option<i64>,
}

async fn invitation_rows(app: &TestApp) -> Vec<Row> {
    let rows: Vec<(i64, String, String, Option<i64>)> = sqlx::query_as(
        "select id, message_id, status, handoff_started_at from outbox where kind = 'invitation' order by id",
    )
    .fetch_all(&app.state.db.read)
    .await
    .unwrap();
    rows.into_iter()
        .map(|(id, message_id, status, handoff_started_at)| Row { id, message_id, status, handoff_started_at })
        .collect()
}

fn eml_files(dir: &Path) -> HashMap<String, u64> {
    let Ok(entries) = std::fs::read_dir(dir) else { return HashMap::new() };
    entries
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".eml"))
        .map(|e| (e.file_name().to_string_lossy().into_owned(), e.metadata().unwrap().ino()))
        .collect()
}

/// A session, an in-process server stopped, and the binary started on the
/// same database and data dir; invites [`INVITATIONS`] people through it.
async fn invite_through_the_binary(backend: Backend, via: Via) -> (TestApp, Server, Value, String) {
    let extra: &[(&str, &str)] = if via == Via::Files { &[("SMTP_HOST", " ")] } else { &[] };
    let mut app = spawn_app_with(backend, extra).await;
    let organiser = app.organiser().await;
    let id = app.session(&organiser, "Crash course", 1000, chrono::Duration::days(7)).await;
    app.drain_outbox().await;
    app.shutdown().await;
    let server = Server::start(&app, via, &app.data_dir.path().join("first.log")).await;
    app.url = server.url.clone();
    let text: String = (0..INVITATIONS).map(|i| format!("t{i}@oak.sch.uk\n")).collect();
    let (status, batch) =
        app.post(&format!("/api/sessions/{id}/invitations"), Some(&organiser), json!({"text": text})).await;
    assert_eq!(status, reqwest::StatusCode::CREATED, "{batch}");
    assert_eq!(batch["invited"], INVITATIONS);
    (app, server, batch, organiser)
}

/// Waits until `pred` holds, for at most `limit`.
async fn wait_until(what: &str, limit: Duration, mut pred: impl AsyncFnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !pred().await {
        assert!(start.elapsed() < limit, "timed out after {limit:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    start.elapsed()
}

/// After the restart: the rows the dead process held go out within 30 s,
/// and then the whole batch. Returns how long the held rows took.
async fn held_rows_go_out_after_restart(app: &TestApp, held: &[i64], batch: &Value, organiser: &str) -> Duration {
    let took = wait_until("the dead process's claims to be sent", Duration::from_secs(30), async || {
        let rows = invitation_rows(app).await;
        rows.iter().filter(|r| held.contains(&r.id)).all(|r| r.status == "sent")
    })
    .await;
    wait_until("the whole batch", Duration::from_secs(60), async || {
        let (_, b) = app.get(&format!("/api/invitation-batches/{}", batch["id"]), Some(organiser)).await;
        b["done"] == true
    })
    .await;
    let (_, b) = app.get(&format!("/api/invitation-batches/{}", batch["id"]), Some(organiser)).await;
    assert_eq!(b["progress"], json!({"queued": 0, "sent": INVITATIONS, "failed": 0}));
    took
}

async fn a_server_killed_while_writing_mail_files_writes_each_once_after_restart(backend: Backend) {
    let (app, server, batch, organiser) = invite_through_the_binary(backend, Via::Files).await;
    let dir: PathBuf = app.data_dir.path().join("outbox-files");
    let before = eml_files(&dir).len();
    wait_until("the first invitations", Duration::from_secs(30), async || eml_files(&dir).len() >= before + 60).await;
    server.kill();

    let at_kill = eml_files(&dir);
    let rows = invitation_rows(&app).await;
    let held: Vec<i64> = rows.iter().filter(|r| r.status == "sending").map(|r| r.id).collect();
    let delivered = at_kill.len() - before;
    eprintln!("killed with {delivered} invitations written and {} claimed by the dead process", held.len());
    assert!(delivered < INVITATIONS, "the batch finished before the kill");
    assert!(!held.is_empty(), "the dead process held no claims");

    let restarted = Server::start(&app, Via::Files, &app.data_dir.path().join("second.log")).await;
    let mut app = app;
    app.url = restarted.url.clone();
    let took = held_rows_go_out_after_restart(&app, &held, &batch, &organiser).await;
    eprintln!("the {} held invitations were all written {took:?} after the restart", held.len());

    // Exactly one file per row, named after it, carrying its Message-ID;
    // every file there at the kill is the very same file (not rewritten).
    let after = eml_files(&dir);
    let install: String =
        sqlx::query_scalar("select install_id from mail_install").fetch_one(&app.state.db.read).await.unwrap();
    let sent: i64 = sqlx::query_scalar("select count(*) from outbox where status = 'sent'")
        .fetch_one(&app.state.db.read)
        .await
        .unwrap();
    assert_eq!(after.len() as i64, sent, "one file per message sent");
    let mut ids = HashSet::new();
    for row in invitation_rows(&app).await {
        let name = format!("{:08}.{install}.eml", row.id);
        let raw = std::fs::read_to_string(dir.join(&name)).unwrap_or_else(|_| panic!("no {name}"));
        assert!(raw.contains(&format!("Message-ID: {}", row.message_id)), "{name}");
        assert!(ids.insert(row.message_id.clone()), "{} used twice", row.message_id);
        assert!(dir.join(name.replace(".eml", ".txt")).exists(), "{name} has no .txt");
    }
    for (name, inode) in &at_kill {
        assert_eq!(after.get(name), Some(inode), "{name} was written again after the restart");
    }
    let leftovers: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    // In development (a loopback public URL) each file is logged with its first link.
    let log = std::fs::read_to_string(app.data_dir.path().join("second.log")).unwrap();
    assert!(
        log.lines().any(|l| l.contains("mail written") && l.contains(".txt") && l.contains("/invite.html?token=")),
        "{log}"
    );
    drop(restarted);
}
both_backends!(a_server_killed_while_writing_mail_files_writes_each_once_after_restart);

async fn a_server_killed_while_sending_over_smtp_delivers_every_invitation_and_duplicates_only_unconfirmed_ones(
    backend: Backend,
) {
    let (app, server, batch, organiser) = invite_through_the_binary(backend, Via::Smtp).await;
    let before = app.smtp.messages().len();
    wait_until("the first invitations", Duration::from_secs(30), async || app.smtp.messages().len() >= before + 60)
        .await;
    server.kill();

    let at_kill = invitation_rows(&app).await;
    let held: Vec<i64> = at_kill.iter().filter(|r| r.status == "sending").map(|r| r.id).collect();
    // The window: handed to the server, no reply recorded.
    let in_window: HashSet<String> = at_kill
        .iter()
        .filter(|r| r.status == "sending" && r.handoff_started_at.is_some())
        .map(|r| r.message_id.clone())
        .collect();
    let delivered = app.smtp.messages().len() - before;
    eprintln!(
        "killed with {delivered} invitations received, {} claimed by the dead process, {} of them in the hand-off window",
        held.len(),
        in_window.len()
    );
    assert!(delivered < INVITATIONS, "the batch finished before the kill");
    assert!(!held.is_empty(), "the dead process held no claims");
    assert!(in_window.len() <= 1, "one lane hands over one message at a time: {in_window:?}");

    let restarted = Server::start(&app, Via::Smtp, &app.data_dir.path().join("second.log")).await;
    let mut app = app;
    app.url = restarted.url.clone();
    let took = held_rows_go_out_after_restart(&app, &held, &batch, &organiser).await;
    eprintln!("the {} held invitations were all sent {took:?} after the restart", held.len());

    let mut received: HashMap<String, usize> = HashMap::new();
    for m in app.smtp.messages().iter().filter(|m| m.subject == "Invitation: Crash course") {
        *received.entry(format!("<{}>", m.message_id)).or_default() += 1;
    }
    let rows = invitation_rows(&app).await;
    for row in &rows {
        let n = received.get(&row.message_id).copied().unwrap_or(0);
        assert!(n >= 1, "{} never arrived", row.message_id);
        // A second copy only where the kill fell between the hand-off and its reply,
        // and then with the same Message-ID, so the receiver can drop it.
        assert!(n == 1 || (n == 2 && in_window.contains(&row.message_id)), "{} arrived {n} times", row.message_id);
    }
    assert_eq!(received.len(), INVITATIONS, "only the batch's Message-IDs arrived");
    let duplicates = received.values().filter(|&&n| n > 1).count();
    eprintln!("{duplicates} duplicate(s), each with its original Message-ID");
    drop(restarted);
}
both_backends!(a_server_killed_while_sending_over_smtp_delivers_every_invitation_and_duplicates_only_unconfirmed_ones);
