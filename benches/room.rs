//! One presenter and N viewers in a live room: server CPU per forwarded
//! packet, loss, join-to-first-keyframe and memory per viewer; a join storm;
//! and the machine's floor (SRTP-protect and send one packet on loopback).
//!
//!     cargo bench --bench room -- [--viewers 50,200,500] [--window 10] [--runs 1]
//!         [--stream hd|light] [--json FILE] [--storm N --within SECONDS] [--no-floor]
//!         [--janus] [--single-socket] [--str0m] [--no-staffroom]
//!         [--clients light|full|counting|mixed] [--callgrind]
//!
//! - `--clients`: the viewers are light viewers (`support/light_viewer.rs`,
//!   the default), the tests' full client, counting viewers
//!   (`support/counting_viewer.rs`: ICE and DTLS, then RTP counted per SSRC
//!   from the clear header, no decryption, batched receives on one thread;
//!   `COUNTING_THREADS`, `COUNTING_PACE_MS`), or `mixed`: light and counting
//!   viewers alternately, whose packets in the window must agree within 1 %.
//! - `--no-staffroom` runs only the other servers (`--janus`, `--single-socket`).
//! - `--callgrind` runs each server under `valgrind --tool=callgrind` and
//!   prints its instructions per forwarded packet next to the floor's
//!   (`support/instructions.rs`, `scripts/bench-instructions.sh`).
//!
//! The server is the real `staffroom` binary in its own process (SQLite in a
//! temporary folder), so its CPU time (user + system, from /proc/PID/stat)
//! and resident memory are its own. The presenter and the viewers are clients
//! built on the same WebRTC crate (tests/rooms/client.rs), all in this
//! process, on loopback. The presenter sends a 720p-like stream (130 VP8
//! packets of 1,150 bytes and 50 Opus packets a second, a keyframe every 2 s;
//! `--stream light` for the tests' 33 small VP8 packets); viewers count what
//! arrives but do not decode.

#[allow(dead_code)]
#[path = "../tests/rooms/client.rs"]
mod client;
#[path = "support/counting_viewer.rs"]
mod counting_viewer;
#[path = "support/instructions.rs"]
mod instructions;
#[path = "support/janus.rs"]
mod janus;
#[path = "support/light_viewer.rs"]
mod light_viewer;
#[path = "support/single_socket.rs"]
mod single_socket;
#[path = "support/str0m_socket.rs"]
mod str0m_socket;

use std::{
    io::{BufRead, BufReader, Write},
    process::{Child, Stdio},
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
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
    // STAFFROOM_BIN runs another build of the server (an older commit's, to
    // find when a cost changed) with this bench.
    let bin = std::env::var("STAFFROOM_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_staffroom").to_string());
    let mut child = instructions::command(&bin)
        .env("STAFFROOM_ADDR", "127.0.0.1:0")
        .env("STAFFROOM_RTC_PORT", "0")
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

/// How the viewers arrive.
#[derive(Clone, Copy)]
enum Arrival {
    /// 25 at a time, each batch once the previous one has its welcome.
    Batches,
    /// All of them, evenly spread over this long, without waiting for anyone.
    Storm(Duration),
}

/// One run's figures.
struct Outcome {
    server: &'static str,
    mode: &'static str,
    viewers: usize,
    forwarded_per_s: f64,
    cpu_us_per_packet: f64,
    /// The bench process's own CPU (the publisher and all viewers) per packet.
    clients_us_per_packet: f64,
    loss_pct: f64,
    gaps_pct: f64,
    got_both: usize,
    key_ms: [f64; 3],
    first_ms: [f64; 3],
    kib_per_viewer: f64,
    /// Each viewer's packets in the window, in the order of the viewers given.
    window_packets: Vec<u64>,
    /// The counting viewers' threads' CPU per packet, if there are any.
    counting_us_per_packet: Option<f64>,
    /// Instructions of the server in the window, under `--callgrind`.
    instructions: Option<instructions::Window>,
}

impl Outcome {
    fn row(&self, floor_us: Option<f64>) -> String {
        format!(
            "| {:<9} | {:<6} | {:>5} | {:>9.0} | {:>8.2} | {:>6} | {:>7.2} | {:>6.2} % | {:>5}/{:<5} | {:>6.0} | {:>6.0} | {:>6.0} | {:>6.0} | {:>7.0} |",
            self.server,
            self.mode,
            self.viewers,
            self.forwarded_per_s,
            self.cpu_us_per_packet,
            floor_us.map(|f| format!("{:.1}×", self.cpu_us_per_packet / f)).unwrap_or_else(|| "-".into()),
            self.clients_us_per_packet,
            self.loss_pct,
            self.got_both,
            self.viewers,
            self.first_ms[1],
            self.key_ms[0],
            self.key_ms[1],
            self.key_ms[2],
            self.kib_per_viewer,
        )
    }

    fn json(&self, stream: &str, floor_us: Option<f64>) -> serde_json::Value {
        serde_json::json!({
            "server": self.server,
            "mode": self.mode,
            "stream": stream,
            "viewers": self.viewers,
            "forwarded_per_s": self.forwarded_per_s,
            "cpu_us_per_packet": self.cpu_us_per_packet,
            "clients_cpu_us_per_packet": self.clients_us_per_packet,
            "floor_us_per_packet": floor_us,
            "loss_pct": self.loss_pct,
            "gaps_pct": self.gaps_pct,
            "got_both_tracks": self.got_both,
            "join_to_first_packet_ms": {"p50": self.first_ms[0], "p95": self.first_ms[1], "p99": self.first_ms[2]},
            "join_to_first_keyframe_ms": {"p50": self.key_ms[0], "p95": self.key_ms[1], "p99": self.key_ms[2]},
            "kib_per_viewer": self.kib_per_viewer,
            "counting_threads_cpu_us_per_packet": self.counting_us_per_packet,
            "instructions_per_packet": self.instructions.as_ref().map(|w| w.per_packet()),
        })
    }
}

fn millis(sorted: &[Duration]) -> [f64; 3] {
    [0.5, 0.95, 0.99].map(|p| percentile(sorted, p).as_secs_f64() * 1e3)
}

/// Which client the viewers are: `light_viewer.rs` (the default), the
/// full `webrtc`-crate client of the tests (`--clients full`), the
/// counting viewer (`counting_viewer.rs`, `--clients counting`), or light
/// and counting viewers alternately (`--clients mixed`, which compares
/// their counts).
#[derive(Clone, Copy, PartialEq)]
enum Clients {
    Light,
    Full,
    Counting,
    Mixed,
}

impl Clients {
    /// The client of the `i`-th viewer.
    fn of(self, i: usize) -> Clients {
        match self {
            Clients::Mixed if i.is_multiple_of(2) => Clients::Light,
            Clients::Mixed => Clients::Counting,
            other => other,
        }
    }

    /// The threads of the counting viewers, if this needs them.
    fn pool(self) -> Option<Arc<counting_viewer::Pool>> {
        matches!(self, Clients::Counting | Clients::Mixed).then(counting_viewer::Pool::new)
    }
}

/// A viewer that joined a Staffroom room.
enum Viewer {
    Full(client::Client),
    Light(light_viewer::LightViewer, Instant, tokio::task::JoinHandle<()>),
    Counting(counting_viewer::CountingViewer, Instant, tokio::task::JoinHandle<()>),
}

impl Viewer {
    fn counted(&self) -> (Arc<Mutex<client::Received>>, Instant) {
        match self {
            Viewer::Full(c) => (c.received.clone(), c.joined_at),
            Viewer::Light(v, at, _) => (v.received.clone(), *at),
            Viewer::Counting(v, at, _) => (v.received.clone(), *at),
        }
    }

    fn client(&self) -> Clients {
        match self {
            Viewer::Full(_) => Clients::Full,
            Viewer::Light(..) => Clients::Light,
            Viewer::Counting(..) => Clients::Counting,
        }
    }

    fn leave(&self) {
        match self {
            Viewer::Full(c) => c.send(serde_json::json!({"v": 1, "type": "leave"})),
            Viewer::Light(_, _, signalling) | Viewer::Counting(_, _, signalling) => signalling.abort(),
        }
    }
}

/// A viewer that joined, or `None` if it could not (the client gives up
/// after 10 s without a welcome, which an overloaded server can cause).
fn join_viewer(
    http: &reqwest::Client,
    url: &str,
    session: i64,
    token: &str,
    clients: Clients,
    pool: Option<Arc<counting_viewer::Pool>>,
) -> impl std::future::Future<Output = Option<Viewer>> + 'static {
    let (http, url, token) = (http.clone(), url.to_string(), token.to_string());
    let task = tokio::spawn(async move {
        let token = room_token(&http, &url, session, &token).await;
        match (clients, pool) {
            (Clients::Light, _) => {
                let (viewer, at, signalling) = light_viewer::join_staffroom(&url, session, &token).await?;
                return Some(Viewer::Light(viewer, at, signalling));
            }
            (Clients::Counting, Some(pool)) => {
                let make = async move {
                    let viewer = counting_viewer::CountingViewer::new(&pool, "127.0.0.1");
                    let ops = viewer.ops.clone();
                    (viewer, ops)
                };
                let (viewer, at, signalling) = light_viewer::join_staffroom_as(&url, session, &token, make).await?;
                return Some(Viewer::Counting(viewer, at, signalling));
            }
            _ => {}
        }
        let mut c = client::connect(&url, session, Some(&token)).await;
        c.join().await;
        Some(Viewer::Full(c))
    });
    async move { task.await.ok().flatten() }
}

async fn run(
    viewers: usize,
    window: Duration,
    stream: client::Stream,
    arrival: Arrival,
    clients_kind: Clients,
) -> Outcome {
    let dir = tempfile::tempdir().unwrap();
    // Migrations first (the server applies them), then the seed.
    let server = start(dir.path());
    let (session, tokens) = seed(dir.path(), viewers).await;
    let http = reqwest::Client::new();

    let mut presenter =
        client::connect(&server.url, session, Some(&room_token(&http, &server.url, session, &tokens[0]).await)).await;
    presenter.join().await;
    presenter.publish_stream(stream);
    presenter.expect("the answer", |m| m["type"] == "answer").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_before = rss_kib(server.pid);

    let pool = clients_kind.pool();
    let join = |i: usize, t: &String| join_viewer(&http, &server.url, session, t, clients_kind.of(i), pool.clone());
    let mut clients = Vec::with_capacity(viewers);
    match arrival {
        Arrival::Batches => {
            for (c, chunk) in tokens[1..].chunks(25).enumerate() {
                let joins = chunk.iter().enumerate().map(|(i, t)| join(c * 25 + i, t));
                clients.extend(futures::future::join_all(joins).await.into_iter().flatten());
            }
        }
        Arrival::Storm(within) => {
            let start = tokio::time::Instant::now();
            let joins = tokens[1..].iter().enumerate().map(|(i, t)| {
                let at = start + within.mul_f64(i as f64 / viewers as f64);
                let join = &join;
                async move {
                    tokio::time::sleep_until(at).await;
                    join(i, t).await
                }
            });
            clients.extend(futures::future::join_all(joins).await.into_iter().flatten());
        }
    }
    let counted: Vec<(Arc<Mutex<client::Received>>, Instant)> = clients.iter().map(Viewer::counted).collect();
    let kinds: Vec<Clients> = clients.iter().map(Viewer::client).collect();
    let mode = match arrival {
        Arrival::Batches => "steady",
        Arrival::Storm(_) => "storm",
    };
    let probe = Probe { pid: server.pid, rss_before, pool: pool.as_deref() };
    let outcome = measure("staffroom", mode, probe, &presenter.sent, &counted, viewers, window).await;
    compare_mixed(&outcome, &kinds);
    for c in &clients {
        c.leave();
    }
    drop(clients);
    drop(server);
    outcome
}

/// Runs `join(i)` once per viewer `i`, 25 at a time, each in its own task;
/// keeps those that joined (a task that panics is a viewer that gave up).
async fn in_batches<T, F, Fut>(viewers: usize, join: F) -> Vec<T>
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let mut joined = Vec::with_capacity(viewers);
    for chunk in (0..viewers).collect::<Vec<_>>().chunks(25) {
        let joins = chunk.iter().map(|&i| tokio::spawn(join(i)));
        joined.extend(futures::future::join_all(joins).await.into_iter().flatten());
    }
    joined
}

/// A viewer of Janus or of the prototype, whichever client it is.
enum Subscriber {
    Full(client::MediaPeer),
    Light(light_viewer::LightViewer),
    Counting(counting_viewer::CountingViewer),
}

impl Subscriber {
    fn received(&self) -> Arc<Mutex<client::Received>> {
        match self {
            Subscriber::Full(p) => p.received.clone(),
            Subscriber::Light(v) => v.received.clone(),
            Subscriber::Counting(v) => v.received.clone(),
        }
    }

    fn client(&self) -> Clients {
        match self {
            Subscriber::Full(_) => Clients::Full,
            Subscriber::Light(_) => Clients::Light,
            Subscriber::Counting(_) => Clients::Counting,
        }
    }
}

type Subscribing = futures::future::BoxFuture<'static, (Subscriber, Instant)>;

/// Measures N subscribers (each `subscribe(i)`) of a server already publishing `sent`.
#[allow(clippy::too_many_arguments)]
async fn measure_subscribers(
    server: &'static str,
    pid: u32,
    viewers: usize,
    window: Duration,
    sent: &AtomicU64,
    pool: Option<&counting_viewer::Pool>,
    subscribe: impl Fn(usize) -> Subscribing,
) -> Outcome {
    let rss_before = rss_kib(pid);
    let subscribers = in_batches(viewers, subscribe).await;
    let counted: Vec<janus::Counted> = subscribers.iter().map(|(s, at)| (s.received(), *at)).collect();
    let kinds: Vec<Clients> = subscribers.iter().map(|(s, _)| s.client()).collect();
    let outcome = measure(server, "steady", Probe { pid, rss_before, pool }, sent, &counted, viewers, window).await;
    compare_mixed(&outcome, &kinds);
    outcome
}

/// The same room on Janus: one publisher with the same stream, N subscribers
/// to its feed, 25 joining at a time.
async fn run_janus(viewers: usize, window: Duration, stream: client::Stream, clients: Clients) -> Outcome {
    let dir = tempfile::tempdir().unwrap();
    let server = janus::start(dir.path(), 18088).await;
    let (presenter, feed) = janus::publish(&server.url, stream).await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let pool = clients.pool();
    let subscribe = |i: usize| -> Subscribing {
        let (url, feed, pool) = (server.url.clone(), feed.clone(), pool.clone());
        Box::pin(async move {
            match (clients.of(i), pool) {
                (Clients::Light, _) => {
                    let (v, at) = janus::subscribe_light(url, feed).await;
                    (Subscriber::Light(v), at)
                }
                (Clients::Counting, Some(pool)) => {
                    let (v, at) = janus::subscribe_counting(url, feed, pool).await;
                    (Subscriber::Counting(v), at)
                }
                _ => {
                    let (p, at) = janus::subscribe_owned(url, feed).await;
                    (Subscriber::Full(p), at)
                }
            }
        })
    };
    measure_subscribers("janus", server.pid, viewers, window, &presenter.sent, pool.as_deref(), subscribe).await
}

/// The same room on the single-socket prototype (`support/single_socket.rs`).
async fn run_single_socket(viewers: usize, window: Duration, stream: client::Stream, clients: Clients) -> Outcome {
    run_prototype("--serve-single-socket", "1-socket", viewers, window, stream, clients).await
}

/// The same on the str0m prototype (`support/str0m_socket.rs`, issue 14).
async fn run_str0m(viewers: usize, window: Duration, stream: client::Stream, clients: Clients) -> Outcome {
    run_prototype("--serve-str0m", "str0m", viewers, window, stream, clients).await
}

/// A prototype in a child process of this bench (`room SERVE`), with the
/// same HTTP signalling: one publisher, N viewers, 25 joining at a time.
async fn run_prototype(
    serve: &str,
    name: &'static str,
    viewers: usize,
    window: Duration,
    stream: client::Stream,
    clients: Clients,
) -> Outcome {
    let mut child = instructions::command(std::env::current_exe().unwrap().to_str().unwrap())
        .arg(serve)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("the prototype starts");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let server = Server { url: line.trim().to_string(), pid: child.id(), child };
    let presenter = client::MediaPeer::new("127.0.0.1:0").await;
    presenter.publish(stream).await;
    single_socket::publish(&server.url, &presenter).await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let pool = clients.pool();
    let subscribe = |i: usize| -> Subscribing {
        let (url, pool) = (server.url.clone(), pool.clone());
        Box::pin(async move {
            let joined_at = Instant::now();
            let subscriber = match (clients.of(i), pool) {
                (Clients::Light, _) => {
                    let viewer = light_viewer::LightViewer::new("127.0.0.1").await;
                    single_socket::subscribe_light(&url, &viewer.ops).await;
                    Subscriber::Light(viewer)
                }
                (Clients::Counting, Some(pool)) => {
                    let viewer = counting_viewer::CountingViewer::new(&pool, "127.0.0.1");
                    single_socket::subscribe_light(&url, &viewer.ops).await;
                    Subscriber::Counting(viewer)
                }
                _ => {
                    let peer = client::MediaPeer::new("127.0.0.1:0").await;
                    single_socket::subscribe(&url, &peer).await;
                    Subscriber::Full(peer)
                }
            };
            (subscriber, joined_at)
        })
    };
    measure_subscribers(name, server.pid, viewers, window, &presenter.sent, pool.as_deref(), subscribe).await
}

/// What [`measure`] watches besides the viewers: the server's process, its
/// memory before the viewers joined, and the counting viewers' threads.
struct Probe<'a> {
    pid: u32,
    rss_before: f64,
    pool: Option<&'a counting_viewer::Pool>,
}

/// Under `--clients mixed`, the light and counting viewers' packets in the
/// same window, side by side; they must agree within 1 %.
fn compare_mixed(outcome: &Outcome, kinds: &[Clients]) {
    let mean = |kind: Clients| {
        let of: Vec<u64> =
            outcome.window_packets.iter().zip(kinds).filter(|(_, k)| **k == kind).map(|(n, _)| *n).collect();
        (of.len(), of.iter().sum::<u64>() as f64 / of.len().max(1) as f64)
    };
    let ((light, light_mean), (counting, counting_mean)) = (mean(Clients::Light), mean(Clients::Counting));
    if light == 0 || counting == 0 {
        return;
    }
    let differ = 100.0 * (counting_mean - light_mean) / light_mean.max(1.0);
    // The counting threads' CPU per packet a counting viewer counted.
    let all: u64 = outcome.window_packets.iter().sum();
    let per_counted =
        outcome.counting_us_per_packet.unwrap_or(0.0) * all as f64 / (counting_mean * counting as f64).max(1.0);
    println!(
        "|   {}: {light} light viewers {light_mean:.1} packets each in the window, {counting} counting viewers {counting_mean:.1}: {differ:+.2} %; counting threads {per_counted:.3} CPU-µs per packet they counted",
        outcome.server
    );
    assert!(differ.abs() < 1.0, "counting and light viewers disagree by {differ:.2} % (more than 1 %)");
}

/// Waits for every viewer's first keyframe (60 s at most) and a 2 s settle,
/// then measures a steady window of `window`.
#[allow(clippy::too_many_arguments)]
async fn measure(
    server: &'static str,
    mode: &'static str,
    probe: Probe<'_>,
    sent: &AtomicU64,
    clients: &[(Arc<Mutex<client::Received>>, Instant)],
    viewers: usize,
    window: Duration,
) -> Outcome {
    let Probe { pid, rss_before, pool } = probe;
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline && clients.iter().any(|c| c.0.lock().unwrap().first_keyframe.is_none()) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let since_join = |pick: fn(&client::Received) -> Option<Instant>| {
        let mut v: Vec<Duration> =
            clients.iter().filter_map(|(r, at)| pick(&r.lock().unwrap()).map(|t| t.duration_since(*at))).collect();
        v.sort();
        v
    };
    let firsts = since_join(|r| r.first_packet);
    let keys = since_join(|r| r.first_keyframe);
    tokio::time::sleep(Duration::from_secs(2)).await;

    let totals = || {
        clients.iter().fold((0, 0), |(p, g), (r, _)| {
            let r = r.lock().unwrap();
            (p + r.packets_of("audio") + r.packets_of("video"), g + r.gaps)
        })
    };
    let each = || -> Vec<u64> { clients.iter().map(|(r, _)| r.lock().unwrap().packets.values().sum()).collect() };
    let counting_cpu = || pool.map(|p| p.cpu_seconds()).unwrap_or(0.0);
    let me = std::process::id();
    let (cpu0, sent0, mine0) = (cpu_seconds(pid), sent.load(Ordering::Relaxed), cpu_seconds(me));
    let (each0, counting0) = (each(), counting_cpu());
    let (got0, gaps0) = totals();
    let zeroed = instructions::zero(pid).then(|| (got0, totals().0));
    tokio::time::sleep(window).await;
    let (cpu1, sent1, mine1) = (cpu_seconds(pid), sent.load(Ordering::Relaxed), cpu_seconds(me));
    let (each1, counting1) = (each(), counting_cpu());
    let (got1, gaps1) = totals();
    let instructions =
        instructions::dump(pid).map(|n| instructions::Window::new(n, zeroed.unwrap(), (got1, totals().0)));
    let rss_after = rss_kib(pid);
    let got_both = clients
        .iter()
        .filter(|(r, _)| {
            let r = r.lock().unwrap();
            r.packets_of("audio") > 0 && r.packets_of("video") > 0
        })
        .count();

    let forwarded = got1 - got0;
    // Viewers that failed to join count as receiving nothing.
    let expected = (sent1 - sent0) * viewers as u64;
    Outcome {
        server,
        mode,
        viewers,
        forwarded_per_s: forwarded as f64 / window.as_secs_f64(),
        cpu_us_per_packet: (cpu1 - cpu0) * 1e6 / forwarded.max(1) as f64,
        clients_us_per_packet: (mine1 - mine0) * 1e6 / forwarded.max(1) as f64,
        loss_pct: (100.0 * (1.0 - forwarded as f64 / expected.max(1) as f64)).max(0.0),
        gaps_pct: 100.0 * (gaps1 - gaps0) as f64 / expected.max(1) as f64,
        got_both,
        key_ms: millis(&keys),
        first_ms: millis(&firsts),
        kib_per_viewer: (rss_after - rss_before) / viewers as f64,
        window_packets: each1.iter().zip(&each0).map(|(b, a)| b - a).collect(),
        counting_us_per_packet: pool.map(|_| (counting1 - counting0) * 1e6 / forwarded.max(1) as f64),
        instructions,
    }
}

/// What the floor does: an SRTP context (the server's own crate) sealing a
/// 1,200-byte RTP packet at a time, and a socket sending it to a loopback
/// sink that is never read (the kernel drops what overflows its buffer,
/// after the sender has paid for the send).
struct FloorSender {
    srtp: rtc::srtp::context::Context,
    plain: Vec<u8>,
    seq: u16,
    socket: std::net::UdpSocket,
    _sink: std::net::UdpSocket,
    to: std::net::SocketAddr,
}

impl FloorSender {
    fn new(profile: rtc::srtp::protection_profile::ProtectionProfile) -> FloorSender {
        use rtc::srtp::context::Context;
        let provider = rtc::crypto::default_provider().expect("a crypto provider");
        let key = vec![7u8; profile.key_len()];
        let salt = vec![9u8; profile.salt_len()];
        let srtp = Context::new(&key, &salt, profile, None, None, provider.crypto()).expect("an SRTP context");
        let sink = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let to = sink.local_addr().unwrap();
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut plain = vec![0u8; 1200];
        plain[0] = 0x80;
        plain[1] = 96;
        plain[8..12].copy_from_slice(&0x1234_5678u32.to_be_bytes());
        FloorSender { srtp, plain, seq: 0, socket, _sink: sink, to }
    }

    fn protect(&mut self) -> bytes::BytesMut {
        self.seq = self.seq.wrapping_add(1);
        self.plain[2..4].copy_from_slice(&self.seq.to_be_bytes());
        self.plain[4..8].copy_from_slice(&(u32::from(self.seq) * 3000).to_be_bytes());
        self.srtp.encrypt_rtp(&self.plain).expect("SRTP protects")
    }

    /// `packets` packets, one `send_to` each.
    fn send_to(&mut self, packets: u32) {
        for _ in 0..packets {
            let p = self.protect();
            let _ = self.socket.send_to(&p, self.to);
        }
    }

    /// `packets` packets (rounded down to 32s), 32 a `sendmmsg`.
    fn sendmmsg(&mut self, packets: u32) {
        let fd = std::os::fd::AsRawFd::as_raw_fd(&self.socket);
        let addr = libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: self.to.port().to_be(),
            sin_addr: libc::in_addr { s_addr: u32::from(std::net::Ipv4Addr::LOCALHOST).to_be() },
            sin_zero: [0; 8],
        };
        for _ in 0..packets / 32 {
            let mut batch: Vec<_> = (0..32).map(|_| self.protect()).collect();
            let mut iovs: Vec<libc::iovec> =
                batch.iter_mut().map(|p| libc::iovec { iov_base: p.as_mut_ptr().cast(), iov_len: p.len() }).collect();
            let mut msgs: Vec<libc::mmsghdr> = iovs
                .iter_mut()
                .map(|iov| {
                    // SAFETY: an all-zero msghdr is valid; the fields set point to live locals.
                    let mut m: libc::mmsghdr = unsafe { std::mem::zeroed() };
                    m.msg_hdr.msg_name = (&addr as *const libc::sockaddr_in).cast_mut().cast();
                    m.msg_hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_in>() as u32;
                    m.msg_hdr.msg_iov = iov;
                    m.msg_hdr.msg_iovlen = 1;
                    m
                })
                .collect();
            // SAFETY: msgs, iovs, batch and addr outlive the call.
            unsafe { libc::sendmmsg(fd, msgs.as_mut_ptr(), msgs.len() as u32, 0) };
        }
    }
}

/// The machine's floor: SRTP-protect a 1,200-byte RTP packet with the
/// server's own SRTP crate and send it to a loopback UDP socket, one
/// `send_to` per packet, or 32 per `sendmmsg`. Returns the calling thread's
/// CPU-µs per packet for each.
fn srtp_floor(profile: rtc::srtp::protection_profile::ProtectionProfile, packets: u32) -> (f64, f64) {
    let mut floor = FloorSender::new(profile);
    let t0 = thread_cpu_seconds();
    floor.send_to(packets);
    let send_to = (thread_cpu_seconds() - t0) * 1e6 / f64::from(packets);
    let t0 = thread_cpu_seconds();
    floor.sendmmsg(packets);
    let sendmmsg = (thread_cpu_seconds() - t0) * 1e6 / f64::from(packets / 32 * 32);
    (send_to, sendmmsg)
}

/// User + system CPU time of the calling thread, in seconds.
fn thread_cpu_seconds() -> f64 {
    // SAFETY: getrusage fills the struct it is given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut usage) };
    let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
    t(usage.ru_utime) + t(usage.ru_stime)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

#[tokio::main]
async fn main() {
    if std::env::args().any(|a| a == "--serve-single-socket") {
        // The prototype runs on its own thread and runtime, in this child process.
        return tokio::task::spawn_blocking(single_socket::serve).await.unwrap();
    }
    if let Some(packets) = std::env::args().skip_while(|a| a != "--floor-only").nth(1) {
        // The floor alone, for instructions::floor (under callgrind).
        let mut floor = FloorSender::new(rtc::srtp::protection_profile::ProtectionProfile::AeadAes128Gcm);
        return floor.send_to(packets.parse().expect("--floor-only packets"));
    }
    if std::env::args().any(|a| a == "--serve-str0m") {
        return tokio::task::spawn_blocking(str0m_socket::serve).await.unwrap();
    }
    // A viewer that cannot join panics in its own task: one line, not a backtrace.
    std::panic::set_hook(Box::new(|info| eprintln!("viewer gave up: {}", info.payload_as_str().unwrap_or("?"))));
    let argv: Vec<String> = std::env::args().collect();
    let arg = |name: &str| argv.iter().position(|a| a == name).and_then(|i| argv.get(i + 1)).cloned();
    let viewers: Vec<usize> = arg("--viewers")
        .unwrap_or_else(|| "50,200,500".into())
        .split(',')
        .filter(|n| !n.trim().is_empty())
        .map(|n| n.trim().parse().expect("--viewers 50,200,500"))
        .collect();
    let window = Duration::from_secs(arg("--window").map(|w| w.parse().expect("--window seconds")).unwrap_or(10));
    let runs: usize = arg("--runs").map(|r| r.parse().expect("--runs count")).unwrap_or(1);
    let stream_name = arg("--stream").unwrap_or_else(|| "hd".into());
    let stream = match stream_name.as_str() {
        "hd" => client::Stream::Hd,
        "light" => client::Stream::Light,
        other => panic!("--stream hd|light, not {other}"),
    };
    let storm: Option<usize> = arg("--storm").map(|n| n.parse().expect("--storm viewers"));
    let within = Duration::from_secs_f64(arg("--within").map(|w| w.parse().expect("--within seconds")).unwrap_or(10.0));
    let mut json = arg("--json").map(|f| std::fs::File::create(&f).unwrap_or_else(|e| panic!("{f}: {e}")));

    let floor = if argv.iter().any(|a| a == "--no-floor") {
        None
    } else {
        use rtc::srtp::protection_profile::ProtectionProfile;
        // GCM is what Staffroom and its peers negotiate (the ratio uses it);
        // CM-HMAC-SHA1-80 is the profile every WebRTC stack supports.
        let mut negotiated = 0.0;
        println!("SRTP floor (1,200-byte RTP, loopback UDP, median of 3 × 200,000, CPU-µs/packet):");
        for (name, profile) in [
            ("AEAD-AES-128-GCM", ProtectionProfile::AeadAes128Gcm),
            ("AES-128-CM-HMAC-SHA1-80", ProtectionProfile::Aes128CmHmacSha1_80),
        ] {
            let floors: Vec<(f64, f64)> = (0..3).map(|_| srtp_floor(profile, 200_000)).collect();
            let send_to = median(floors.iter().map(|f| f.0).collect());
            let sendmmsg = median(floors.iter().map(|f| f.1).collect());
            println!("  {name:<24} protect + send_to {send_to:.2}, protect + sendmmsg (32 a call) {sendmmsg:.2}");
            if let Some(f) = &mut json {
                let line = serde_json::json!({"server": "floor", "profile": name, "send_to_us_per_packet": send_to, "sendmmsg_us_per_packet": sendmmsg});
                writeln!(f, "{line}").unwrap();
            }
            if matches!(profile, ProtectionProfile::AeadAes128Gcm) {
                negotiated = send_to;
            }
        }
        println!();
        Some(negotiated)
    };

    println!("| server    | mode   | N     | fwd pkt/s | CPU µs/pkt | × floor | clients µs/pkt | loss | both tracks | 1st pkt p95 ms | key p50 ms | key p95 | key p99 | KiB/viewer |");
    println!("|-----------|--------|-------|-----------|------------|---------|----------------|------|-------------|----------------|------------|---------|---------|------------|");
    let mut plan: Vec<(usize, Arrival)> = viewers.iter().map(|&n| (n, Arrival::Batches)).collect();
    if let Some(n) = storm {
        plan.push((n, Arrival::Storm(within)));
    }
    let with_janus = argv.iter().any(|a| a == "--janus");
    let with_single_socket = argv.iter().any(|a| a == "--single-socket");
    let with_str0m = argv.iter().any(|a| a == "--str0m");
    let clients = match arg("--clients").as_deref() {
        None | Some("light") => Clients::Light,
        Some("full") => Clients::Full,
        Some("counting") => Clients::Counting,
        Some("mixed") => Clients::Mixed,
        Some(other) => panic!("--clients light|full|counting|mixed, not {other}"),
    };
    let with_staffroom = !argv.iter().any(|a| a == "--no-staffroom");
    if argv.iter().any(|a| a == "--callgrind") {
        instructions::enable(std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/target/bench/callgrind")));
    }
    let mut counted_instructions = vec![];
    for (n, arrival) in plan {
        for _ in 0..runs {
            let mut outcomes = vec![];
            if with_staffroom {
                outcomes.push(run(n, window, stream, arrival, clients).await);
            }
            if with_janus && matches!(arrival, Arrival::Batches) {
                outcomes.push(run_janus(n, window, stream, clients).await);
            }
            if with_single_socket && matches!(arrival, Arrival::Batches) {
                outcomes.push(run_single_socket(n, window, stream, clients).await);
            }
            if with_str0m && matches!(arrival, Arrival::Batches) {
                outcomes.push(run_str0m(n, window, stream, clients).await);
            }
            for outcome in &outcomes {
                println!("{}", outcome.row(floor));
                if let Some(us) = outcome.counting_us_per_packet {
                    println!(
                        "|   {}: the counting viewers' threads {us:.3} CPU-µs per forwarded packet",
                        outcome.server
                    );
                }
                if let Some(f) = &mut json {
                    writeln!(f, "{}", outcome.json(&stream_name, floor)).unwrap();
                }
            }
            counted_instructions.extend(outcomes.iter().filter(|o| o.instructions.is_some()).map(|o| {
                let w = o.instructions.as_ref().unwrap();
                (o.server, o.viewers, w.per_packet(), w.uncertainty / w.packets.max(1.0))
            }));
            for theirs in outcomes.iter().skip(1).filter(|_| with_staffroom) {
                let ours = &outcomes[0];
                println!(
                    "|   Staffroom / {}: CPU µs/pkt {:.2}×, memory per viewer {:.2}×",
                    theirs.server,
                    ours.cpu_us_per_packet / theirs.cpu_us_per_packet,
                    ours.kib_per_viewer / theirs.kib_per_viewer
                );
            }
        }
    }
    if !counted_instructions.is_empty() {
        instructions_table(&counted_instructions, &stream_name, window, json.as_mut());
    }
}

/// The `--callgrind` table: each server's instructions per forwarded packet
/// next to the floor's, measured the same way (`support/instructions.rs`).
fn instructions_table(
    rows: &[(&str, usize, f64, f64)],
    stream: &str,
    window: Duration,
    mut json: Option<&mut std::fs::File>,
) {
    let floor = instructions::floor(20_000);
    println!();
    println!("Instructions per forwarded packet under callgrind ({stream} stream, {} s window):", window.as_secs());
    println!("| server    | viewers | instructions/packet | floor instructions/packet | ratio |");
    println!("|-----------|---------|---------------------|---------------------------|-------|");
    for (server, viewers, per_packet, uncertainty) in rows {
        println!(
            "| {server:<9} | {viewers:>7} | {per_packet:>12.0} ± {:.1} % | {floor:>25.0} | {:>4.1}× |",
            uncertainty * 100.0,
            per_packet / floor
        );
        if let Some(f) = json.as_deref_mut() {
            let line = serde_json::json!({"server": server, "viewers": viewers, "stream": stream,
                "instructions_per_packet": per_packet, "uncertainty": uncertainty, "floor_instructions_per_packet": floor});
            writeln!(f, "{line}").unwrap();
        }
    }
}
