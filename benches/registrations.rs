//! Registration throughput: N existing accounts register concurrently over
//! HTTP against the real server (in-process, SQLite file or PostgreSQL), each
//! registration writing its confirmation or waiting-list email to the outbox.
//!
//!     cargo bench --bench registrations -- [--backend sqlite|postgres|both]
//!         [--registrations 10000] [--concurrency 64] [--sessions 20] [--runs 1]
//!
//! Sign-up cost is excluded: accounts are inserted directly, sharing one
//! Argon2 hash, and their session tokens are minted with the server's key.

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use futures::StreamExt;
use staffroom::{
    auth::{password, tokens::fingerprint, tokens::Purpose},
    settings::Settings,
    App, AppState,
};

struct Args {
    backends: Vec<String>,
    registrations: usize,
    concurrency: usize,
    sessions: usize,
    runs: usize,
}

fn args() -> Args {
    let mut a = Args {
        backends: vec!["sqlite".into(), "postgres".into()],
        registrations: 10_000,
        concurrency: 64,
        sessions: 20,
        runs: 1,
    };
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < argv.len() {
        let value = argv.get(i + 1).cloned().unwrap_or_default();
        match argv[i].as_str() {
            "--backend" => {
                a.backends = if value == "both" { vec!["sqlite".into(), "postgres".into()] } else { vec![value] };
                i += 1;
            }
            "--registrations" => {
                a.registrations = value.parse().expect("--registrations N");
                i += 1;
            }
            "--concurrency" => {
                a.concurrency = value.parse().expect("--concurrency N");
                i += 1;
            }
            "--runs" => {
                a.runs = value.parse().expect("--runs N");
                i += 1;
            }
            "--sessions" => {
                a.sessions = value.parse().expect("--sessions N");
                i += 1;
            }
            _ => {} // cargo bench passes --bench
        }
        i += 1;
    }
    a
}

async fn database_url(backend: &str, dir: &std::path::Path) -> String {
    match backend {
        "sqlite" => format!("sqlite://{}?mode=rwc", dir.join("bench.db").display()),
        "postgres" => {
            let base =
                std::env::var("STAFFROOM_TEST_PG").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into());
            let name = format!("staffroom_bench_{}", std::process::id());
            let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&format!("{base}/test"))
                .await
                .expect("PostgreSQL on 127.0.0.1:5432");
            let _ = sqlx::Executor::execute(&mut conn, format!("drop database if exists {name}").as_str()).await;
            sqlx::Executor::execute(&mut conn, format!("create database {name}").as_str()).await.unwrap();
            format!("{base}/{name}")
        }
        other => panic!("unknown backend {other}"),
    }
}

/// Inserts `n` verified participants and `sessions` published sessions; returns tokens and session ids.
async fn seed(state: &AppState, n: usize, sessions: usize, capacity: i64) -> (Vec<String>, Vec<i64>) {
    let hash = password::hash("benchmark password".into()).await.unwrap();
    let now = chrono::Utc::now().timestamp();
    let mut tx = state.db.begin().await.unwrap();
    let organiser: i64 = sqlx::query_scalar(
        "insert into users (email, name, stage, password_hash, is_organiser, email_verified_at, created_at, updated_at)
         values ('organiser@bench.test', 'Organiser', 'other', $1, 1, $2, $2, $2) returning id",
    )
    .bind(&hash)
    .bind(now)
    .fetch_one(&mut *tx)
    .await
    .unwrap();
    let mut ids = Vec::with_capacity(sessions);
    for s in 0..sessions {
        let start = now + 7 * 86_400 + s as i64 * 3600;
        let id: i64 = sqlx::query_scalar(
            "insert into sessions (title, description, kind, starts_at, ends_at, capacity, status, created_by, created_at, updated_at)
             values ($1, 'Benchmark session', 'webinar', $2, $3, $4, 'published', $5, $6, $6) returning id",
        )
        .bind(format!("Session {s}"))
        .bind(start)
        .bind(start + 3600)
        .bind(capacity)
        .bind(organiser)
        .bind(now)
        .fetch_one(&mut *tx)
        .await
        .unwrap();
        ids.push(id);
    }
    let mut tokens = Vec::with_capacity(n);
    for i in 0..n {
        let id: i64 = sqlx::query_scalar(
            "insert into users (email, name, school, stage, password_hash, email_verified_at, created_at, updated_at)
             values ($1, $2, 'Bench Academy', 'ect', $3, $4, $4, $4) returning id",
        )
        .bind(format!("teacher{i}@bench.test"))
        .bind(format!("Teacher {i}"))
        .bind(&hash)
        .bind(now)
        .fetch_one(&mut *tx)
        .await
        .unwrap();
        tokens.push(state.keys.sign(
            Purpose::Session,
            &id.to_string(),
            chrono::Duration::hours(2),
            Some(fingerprint(&hash)),
        ));
    }
    tx.commit().await.unwrap();
    (tokens, ids)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// One run; returns registrations per second.
async fn run(backend: &str, a: &Args) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let url = database_url(backend, dir.path()).await;
    let vars: HashMap<&str, String> = [
        ("STAFFROOM_ADDR", "127.0.0.1:0".to_string()),
        ("STAFFROOM_DATA_DIR", dir.path().display().to_string()),
        ("STAFFROOM_DATABASE_URL", url),
        ("STAFFROOM_JWT_SECRET", "bench-secret-bench-secret-bench-secret".into()),
    ]
    .into_iter()
    .collect();
    let settings = Settings::from_lookup(|k| vars.get(k).cloned()).unwrap();
    let app = App::build(settings).await.unwrap();
    let base = format!("http://127.0.0.1:{}", app.port());
    let state = app.state().clone();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run(async {
        let _ = stopped.await;
    }));

    // 80 % of the registrations fit; the rest go to waiting lists.
    let capacity = ((a.registrations as f64 * 0.8) / a.sessions as f64).ceil() as i64;
    let (tokens, sessions) = seed(&state, a.registrations, a.sessions, capacity).await;
    let client = reqwest::Client::builder().pool_max_idle_per_host(a.concurrency).build().unwrap();

    let started = Instant::now();
    let mut latencies: Vec<Duration> = futures::stream::iter(tokens.iter().enumerate())
        .map(|(i, token)| {
            let client = &client;
            let url = format!("{base}/api/sessions/{}/registration", sessions[i % sessions.len()]);
            async move {
                let t = Instant::now();
                let res = client.post(url).bearer_auth(token).send().await.expect("request");
                assert_eq!(res.status(), reqwest::StatusCode::CREATED, "{}", res.text().await.unwrap_or_default());
                t.elapsed()
            }
        })
        .buffer_unordered(a.concurrency)
        .collect()
        .await;
    let wall = started.elapsed();
    latencies.sort();

    let outbox: i64 = sqlx::query_scalar("select count(*) from outbox where kind in ('confirmation', 'waitlisted')")
        .fetch_one(&state.db.read)
        .await
        .unwrap();
    let confirmed: i64 = sqlx::query_scalar("select count(*) from registrations where status = 'confirmed'")
        .fetch_one(&state.db.read)
        .await
        .unwrap();
    assert_eq!(outbox as usize, a.registrations, "every registration queued its email");
    println!(
        "| {backend:<8} | {:>6} | {:>4} | {:>7.2} s | {:>7.0}/s | {:>6.1} ms | {:>6.1} ms | {:>6.1} ms | {:>6} |",
        a.registrations,
        a.concurrency,
        wall.as_secs_f64(),
        a.registrations as f64 / wall.as_secs_f64(),
        percentile(&latencies, 0.5).as_secs_f64() * 1e3,
        percentile(&latencies, 0.95).as_secs_f64() * 1e3,
        percentile(&latencies, 0.99).as_secs_f64() * 1e3,
        confirmed,
    );
    let _ = stop.send(());
    let _ = server.await;
    a.registrations as f64 / wall.as_secs_f64()
}

#[tokio::main]
async fn main() {
    let a = args();
    println!("| backend  |  regs  | conc |    wall   |  throughput |    p50    |    p95    |    p99    | confirmed |");
    println!("|----------|--------|------|-----------|-------------|-----------|-----------|-----------|-----------|");
    let mut medians = vec![];
    for backend in a.backends.clone() {
        let mut rates = vec![];
        for _ in 0..a.runs {
            rates.push(run(&backend, &a).await);
        }
        rates.sort_by(f64::total_cmp);
        medians.push((backend, rates[rates.len() / 2]));
    }
    println!();
    for (backend, rate) in &medians {
        println!(
            "median over {} run(s), {backend}: {rate:.0} registrations/s ({:.2} s for {})",
            a.runs,
            a.registrations as f64 / rate,
            a.registrations
        );
    }
    if let [(_, sqlite), (_, postgres)] = medians.as_slice() {
        println!("ratio sqlite/postgres: {:.2}", sqlite / postgres);
    }
}
