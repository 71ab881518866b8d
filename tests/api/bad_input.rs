use chrono::Duration;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::{
    both_backends,
    helpers::{spawn_app, Backend, TestApp},
};

async fn raw(app: &TestApp, path: &str, token: &str, body: &'static str) -> (StatusCode, Value) {
    let res = app
        .client
        .post(format!("{}{path}", app.url))
        .bearer_auth(token)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    (res.status(), res.json().await.unwrap())
}

fn session_body(start_in_days: i64, hours: i64, capacity: i64) -> Value {
    let start = chrono::Utc::now() + Duration::days(start_in_days);
    json!({"title": "A session", "kind": "webinar", "starts_at": start.to_rfc3339(),
           "ends_at": (start + Duration::hours(hours)).to_rfc3339(), "capacity": capacity})
}

async fn bad_input_gets_a_json_error_naming_the_problem_and_nothing_stored_is_lost(backend: Backend) {
    let app = spawn_app(backend).await;
    let organiser = app.organiser().await;
    let id = app.session(&organiser, "Kept safe", 10, Duration::days(3)).await;

    let (status, e) = raw(&app, "/api/sessions", &organiser, "{\"title\": ").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(e["error"].as_str().unwrap().contains("malformed JSON"), "{e}");

    let (status, e) = app.post("/api/sessions", Some(&organiser), json!({"kind": "webinar"})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(e["field"], "title", "{e}");

    let (status, e) = app
        .post(
            "/api/auth/signup",
            None,
            json!({"name": "Ann", "email": "ann.oak.sch.uk", "password": "correct horse", "stage": "ect"}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(e["field"], "email");
    assert!(e["error"].as_str().unwrap().contains('@'));

    let (status, e) = app.post("/api/sessions", Some(&organiser), session_body(2, 1, -1)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(e["field"], "capacity");

    let (status, e) = app.post("/api/sessions", Some(&organiser), session_body(2, -1, 10)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(e["field"], "ends_at");
    assert!(e["error"].as_str().unwrap().contains("is before the start"));

    let mut bad_time = session_body(2, 1, 10);
    bad_time["starts_at"] = json!("next tuesday");
    let (status, e) = app.post("/api/sessions", Some(&organiser), bad_time).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(e["field"], "starts_at");

    let (status, e) = app.post("/api/sessions/999999/registration", Some(&organiser), json!({})).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(e["error"], "session not found");
    let (status, e) = app.get("/api/sessions/not-a-number", None).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(e["field"], "path");
    let (status, _) = app.get("/api/no-such-thing", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let (status, e) =
        app.post(&format!("/api/sessions/{id}/invitations"), Some(&organiser), json!({"text": "   \n  "})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(e["field"], "text");

    let (status, e) = app
        .post(
            "/api/auth/signup",
            None,
            json!({"name": "Ann", "email": "ann@oak.sch.uk", "password": "short", "stage": "ect"}),
        )
        .await;
    assert_eq!((status, e["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("password")));
    let (status, e) = app
        .post(
            "/api/auth/signup",
            None,
            json!({"name": "Ann", "email": "ann@oak.sch.uk", "password": "long enough", "stage": "wizard"}),
        )
        .await;
    assert_eq!((status, e["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("stage")));
    let (status, e) = app
        .post("/api/auth/signup", None, json!({"name": "Ann", "email": "ann@oak.sch.uk", "password": "long enough", "stage": "ect", "time_zone": "Mars/Olympus"}))
        .await;
    assert_eq!((status, e["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("time_zone")));

    // A failed edit leaves the session as it was.
    let (status, _) =
        app.request(Method::PUT, &format!("/api/sessions/{id}"), Some(&organiser), Some(session_body(2, 1, 0))).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (_, kept) = app.get(&format!("/api/sessions/{id}"), None).await;
    assert_eq!((kept["title"].as_str(), kept["capacity"].as_i64()), (Some("Kept safe"), Some(10)));
}
both_backends!(bad_input_gets_a_json_error_naming_the_problem_and_nothing_stored_is_lost);

async fn errors_from_the_framework_are_json_too(backend: Backend) {
    let app = spawn_app(backend).await;
    let organiser = app.organiser().await;
    let (status, e) = app.request(Method::DELETE, "/api/sessions", Some(&organiser), None).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert!(e["error"].as_str().unwrap().contains("not allowed"), "{e}");
    // Announce a 5 MiB body and send none: the server must answer from the headers.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut socket = tokio::net::TcpStream::connect(app.url.trim_start_matches("http://")).await.unwrap();
    let head = format!(
        "POST /api/sessions/1/invitations HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {organiser}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        5 * 1024 * 1024
    );
    socket.write_all(head.as_bytes()).await.unwrap();
    let mut answer = String::new();
    socket.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("\"error\":\"the request body is too large"), "{answer}");
}
both_backends!(errors_from_the_framework_are_json_too);
