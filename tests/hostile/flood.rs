//! A hostile attendee: one client floods the room with signalling messages
//! and another never reads its socket, while the room goes on and
//! registrations run elsewhere.

use std::time::{Duration, Instant};

use futures::SinkExt;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

use crate::{
    client::connect,
    helpers::{spawn_app, Backend, TestApp},
    room_token, session_with_people,
};

/// Registers `n` new people for `session` one after another; the time each took.
async fn registrations(app: &TestApp, session: i64, n: usize, tag: &str) -> Vec<Duration> {
    let mut took = vec![];
    for i in 0..n {
        let token = app.sign_up(&format!("Teacher {i}"), &format!("t{i}-{tag}@elm.sch.uk")).await;
        let start = Instant::now();
        let (status, body) = app.post(&format!("/api/sessions/{session}/registration"), Some(&token), json!({})).await;
        took.push(start.elapsed());
        assert_eq!(status, 201, "registration {i} answered {status}: {body}");
    }
    took
}

fn p95(mut took: Vec<Duration>) -> Duration {
    took.sort();
    took[(took.len() * 95).div_ceil(100) - 1]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flooding_attendee_is_throttled_then_disconnected_while_the_room_and_registrations_go_on() {
    let app = spawn_app(Backend::Sqlite).await;
    let (id, organiser, presenter, attendees) = session_with_people(&app, &["Ann", "Ben", "Cat", "Dan"]).await;
    let other = app.session(&organiser, "Another session", 1000, chrono::Duration::days(2)).await;
    let mut priya = connect(&app.url, id, Some(&room_token(&app, id, &presenter).await)).await;
    priya.join().await;
    priya.publish();
    let mut cat = connect(&app.url, id, Some(&room_token(&app, id, &attendees[2]).await)).await;
    cat.join().await;
    let mut dan = connect(&app.url, id, Some(&room_token(&app, id, &attendees[3]).await)).await;
    dan.join().await;
    // Ben joins and then never reads a byte.
    let ws = app.url.replace("http://", "ws://");
    let ben_token = room_token(&app, id, &attendees[1]).await;
    let (mut ben, _) = tokio_tungstenite::connect_async(format!("{ws}/api/rooms/{id}/ws")).await.unwrap();
    let join = json!({"v": 1, "type": "join", "token": ben_token});
    ben.send(Message::Text(join.to_string().into())).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    while cat.received.lock().unwrap().packets.len() < 2 {
        assert!(Instant::now() < deadline, "Cat receives the presenter's two tracks");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The same registrations without an attacker, for comparison.
    let quiet = p95(registrations(&app, other, 50, "quiet").await);

    // Ann floods, 2,000 messages a second, while the registrations run;
    // each time she is cut off she comes straight back and goes on.
    let flood =
        tokio::spawn({
            let (url, token) = (app.url.clone(), attendees[0].clone());
            async move {
                let http = reqwest::Client::new();
                let start = Instant::now();
                let (mut sent, mut closes, mut told) = (0u64, vec![], 0);
                while start.elapsed() < Duration::from_secs(8) {
                    let ticket: serde_json::Value = http
                        .post(format!("{url}/api/sessions/{id}/join"))
                        .bearer_auth(&token)
                        .json(&json!({}))
                        .send()
                        .await
                        .unwrap()
                        .json()
                        .await
                        .unwrap();
                    let mut ann = connect(&url, id, ticket["token"].as_str()).await;
                    ann.join().await;
                    let commands = ann.sender();
                    'flood: while start.elapsed() < Duration::from_secs(8) {
                        for _ in 0..20 {
                            sent += 1;
                            let message = if sent % 2 == 0 {
                                json!({"v": 1, "type": "chat", "body": format!("spam {sent}")})
                            } else {
                                json!({"v": 1, "type": "hand", "raised": sent % 4 == 1})
                            };
                            if commands.send(message).is_err() || ann.is_closed() {
                                break 'flood;
                            }
                        }
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                    // (Chat's own pace says too_fast too; this is the connection's allowance.)
                    if ann.drain().iter().any(|m| {
                        m["code"] == "too_fast" && m["message"].as_str().unwrap_or_default().contains("slow down")
                    }) {
                        told += 1;
                    }
                    if start.elapsed() < Duration::from_secs(8) {
                        closes.push(ann.closed().await);
                    }
                }
                (sent, closes, told)
            }
        });
    let busy = p95(registrations(&app, other, 50, "busy").await);
    let (sent, closes, told) = flood.await.unwrap();
    assert!(sent > 2_000, "the flood really ran: {sent} messages");
    assert!(!closes.is_empty() && told > 0, "told to slow down ({told}), then cut off: {closes:?}");
    assert!(closes.iter().all(|(code, reason)| (*code, reason.as_str()) == (4029, "too many messages")), "{closes:?}");

    // The room went on: Dan's chat reaches Cat, and the presenter's media still flows.
    dan.send(json!({"v": 1, "type": "chat", "body": "Can everyone still hear Priya?"}));
    cat.expect("Dan's chat", |m| m["type"] == "chat" && m["message"]["body"] == "Can everyone still hear Priya?").await;
    let before: u64 = cat.received.lock().unwrap().packets.values().sum();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after: u64 = cat.received.lock().unwrap().packets.values().sum();
    assert!(after > before + 20, "media still reaches Cat: {before} then {after}");
    let stored: i64 = sqlx::query_scalar(
        "select count(*) from chat_messages c join users u on u.id = c.user_id where u.email = 'ann@oak.sch.uk'",
    )
    .fetch_one(&app.state.db.read)
    .await
    .unwrap();
    assert!(stored <= 40, "the flood's chat was throttled before it reached the database: {stored} stored");
    eprintln!("registration p95: {quiet:?} quiet, {busy:?} under the flood ({sent} messages sent)");
    assert!(
        busy <= quiet * 3 + Duration::from_millis(250),
        "registrations kept their pace: p95 {busy:?} under the flood against {quiet:?} without"
    );
    drop(ben);
}
