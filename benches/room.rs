//! One presenter and N viewers in a live room: server CPU per forwarded
//! packet, loss, join-to-first-packet and memory per viewer.
//!
//!     cargo bench --bench room -- [--viewers 50,200,500] [--window 10]
//!
//! The server is the real `staffroom` binary in its own process (SQLite in a
//! temporary folder), so its CPU time (user + system, from /proc/PID/stat)
//! and resident memory are its own. The presenter and the viewers are clients
//! built on the same WebRTC crate (tests/rooms/client.rs), all in this
//! process, on loopback. The presenter sends 33 VP8 and 50 Opus packets a
//! second; viewers count what arrives but do not decode.

#[allow(dead_code)]
#[path = "../tests/rooms/client.rs"]
mod client;

use std::{
    io::{BufRead, BufReader},
    process::{Child, Command, Stdio},
    sync::atomic::Ordering,
    time::{Duration, Instant},
};

use staffroom::{
    auth::{password, tokens::fingerprint, tokens::Keys, tokens::Purpose},
    db::Db,
};

const SECRET: &str = "room-bench-secret-room-bench-secret";

struct Server {
    child: Child,
    url: String,
    pid: u32,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(dir: &std::path::Path) -> Server {
    let mut child = Command::new(env!("CARGO_BIN_EXE_staffroom"))
        .env("STAFFROOM_ADDR", "127.0.0.1:0")
        .env("STAFFROOM_DATA_DIR", dir)
        .env("STAFFROOM_JWT_SECRET", SECRET)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("the staffroom binary starts");
    let stdout = child.stdout.take().unwrap();
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).unwrap();
    let url = line.split("open ").nth(1).expect("the server prints its URL").trim().trim_end_matches('/').to_string();
    let pid = child.id();
    Server { child, url, pid }
}

/// User + system CPU time of the process, in seconds.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    ticks / 100.0 // USER_HZ is 100 on Linux
}

fn rss_kib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// Accounts, a live session with a presenter, and N confirmed registrants;
/// returns the session id and session tokens (presenter first).
async fn seed(dir: &std::path::Path, viewers: usize) -> (i64, Vec<String>) {
    let db = Db::connect(&format!("sqlite://{}?mode=rwc", dir.join("staffroom.db").display())).await.unwrap();
    let keys = Keys::from_secret(SECRET.as_bytes());
    let hash = password::hash("benchmark password".into()).await.unwrap();
    let now = chrono::Utc::now().timestamp();
    let mut tx = db.begin().await.unwrap();
    let mut ids = vec![];
    for i in 0..=viewers {
        let id: i64 = sqlx::query_scalar(
            "insert into users (email, name, stage, password_hash, email_verified_at, created_at, updated_at)
             values ($1, $2, 'ect', $3, $4, $4, $4) returning id",
        )
        .bind(format!("p{i}@bench.test"))
        .bind(if i == 0 { "Presenter".to_string() } else { format!("Viewer {i}") })
        .bind(&hash)
        .bind(now)
        .fetch_one(&mut *tx)
        .await
        .unwrap();
        ids.push(id);
    }
    let session: i64 = sqlx::query_scalar(
        "insert into sessions (title, kind, starts_at, ends_at, capacity, status, created_by, created_at, updated_at, live_at)
         values ('Bench', 'webinar', $1, $2, 100000, 'published', $3, $4, $4, 1) returning id",
    )
    .bind(now + 600)
    .bind(now + 4200)
    .bind(ids[0])
    .bind(now)
    .fetch_one(&mut *tx)
    .await
    .unwrap();
    sqlx::query("insert into session_presenters (session_id, user_id) values ($1, $2)")
        .bind(session)
        .bind(ids[0])
        .execute(&mut *tx)
        .await
        .unwrap();
    for (i, id) in ids.iter().enumerate().skip(1) {
        sqlx::query(
            "insert into registrations (session_id, user_id, status, queued_at, ics_uid, created_at, updated_at)
             values ($1, $2, 'confirmed', $3, $4, $5, $5)",
        )
        .bind(session)
        .bind(id)
        .bind(i as i64)
        .bind(format!("bench-{i}"))
        .bind(now)
        .execute(&mut *tx)
        .await
        .unwrap();
    }
    tx.commit().await.unwrap();
    let tokens = ids
        .iter()
        .map(|id| keys.sign(Purpose::Session, &id.to_string(), chrono::Duration::hours(1), Some(fingerprint(&hash))))
        .collect();
    (session, tokens)
}

async fn room_token(http: &reqwest::Client, url: &str, session: i64, token: &str) -> String {
    let res = http.post(format!("{url}/api/sessions/{session}/join")).bearer_auth(token).send().await.unwrap();
    let body: serde_json::Value = res.json().await.unwrap();
    body["token"].as_str().unwrap_or_else(|| panic!("no room token: {body}")).to_string()
}

async fn run(viewers: usize, window: Duration) {
    let dir = tempfile::tempdir().unwrap();
    // Migrations first (the server applies them), then the seed.
    let server = start(dir.path());
    let (session, tokens) = seed(dir.path(), viewers).await;
    let http = reqwest::Client::new();

    let mut presenter =
        client::connect(&server.url, session, Some(&room_token(&http, &server.url, session, &tokens[0]).await)).await;
    presenter.join().await;
    presenter.publish();
    presenter.expect("the answer", |m| m["type"] == "answer").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_before = rss_kib(server.pid);

    let mut clients = Vec::with_capacity(viewers);
    for chunk in tokens[1..].chunks(25) {
        let joins = chunk.iter().map(|t| {
            let (http, url) = (&http, &server.url);
            async move {
                let token = room_token(http, url, session, t).await;
                let mut c = client::connect(url, session, Some(&token)).await;
                c.join().await;
                c
            }
        });
        clients.extend(futures::future::join_all(joins).await);
    }
    // Everyone's first packet, or 60 s.
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline && clients.iter().any(|c| c.received.lock().unwrap().first_packet.is_none()) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut firsts: Vec<Duration> = clients
        .iter()
        .filter_map(|c| c.received.lock().unwrap().first_packet.map(|t| t.duration_since(c.joined_at)))
        .collect();
    firsts.sort();
    let reached = firsts.len();
    tokio::time::sleep(Duration::from_secs(2)).await;

    let total = |c: &client::Client| {
        let r = c.received.lock().unwrap();
        r.packets_of("audio") + r.packets_of("video")
    };
    let (cpu0, sent0) = (cpu_seconds(server.pid), presenter.sent.load(Ordering::Relaxed));
    let got0: u64 = clients.iter().map(total).sum();
    tokio::time::sleep(window).await;
    let (cpu1, sent1) = (cpu_seconds(server.pid), presenter.sent.load(Ordering::Relaxed));
    let got1: u64 = clients.iter().map(total).sum();
    let rss_after = rss_kib(server.pid);

    let forwarded = got1 - got0;
    let expected = (sent1 - sent0) * viewers as u64;
    let loss = 100.0 * (1.0 - forwarded as f64 / expected.max(1) as f64);
    let cpu_us = (cpu1 - cpu0) * 1e6 / forwarded.max(1) as f64;
    println!(
        "| {viewers:>5} | {:>9.0} | {:>8.2} | {:>6.2} % | {:>5}/{:<5} | {:>7.0} ms | {:>7.0} ms | {:>7.0} ms | {:>8.0} KiB |",
        forwarded as f64 / window.as_secs_f64(),
        cpu_us,
        loss.max(0.0),
        reached,
        viewers,
        percentile(&firsts, 0.5).as_secs_f64() * 1e3,
        percentile(&firsts, 0.95).as_secs_f64() * 1e3,
        percentile(&firsts, 0.99).as_secs_f64() * 1e3,
        (rss_after - rss_before) / viewers as f64,
    );
    for c in &clients {
        c.send(serde_json::json!({"v": 1, "type": "leave"}));
    }
    drop(server);
}

#[tokio::main]
async fn main() {
    let argv: Vec<String> = std::env::args().collect();
    let arg = |name: &str| argv.iter().position(|a| a == name).and_then(|i| argv.get(i + 1)).cloned();
    let viewers: Vec<usize> = arg("--viewers")
        .unwrap_or_else(|| "50,200,500".into())
        .split(',')
        .map(|n| n.trim().parse().expect("--viewers 50,200,500"))
        .collect();
    let window = Duration::from_secs(arg("--window").map(|w| w.parse().expect("--window seconds")).unwrap_or(10));
    println!("| viewers | forwarded/s | CPU µs/pkt | loss | got media | join→1st p50 | p95 | p99 | RSS/viewer |");
    println!("|---------|-------------|------------|------|-----------|--------------|-----|-----|------------|");
    for n in viewers {
        run(n, window).await;
    }
}
