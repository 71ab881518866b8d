use reqwest::StatusCode;
use serde_json::json;

use crate::{
    both_backends,
    helpers::{spawn_app, Backend},
    session_with_people,
};

async fn registrants_presenters_and_organisers_get_room_tokens_with_their_grants(backend: Backend) {
    let app = spawn_app(backend).await;
    let (id, organiser, presenter, attendees) = session_with_people(&app, &["Ann"]).await;
    let path = format!("/api/sessions/{id}/join");
    let grants = |token: &str| {
        let claims = app.state.keys.verify_room(token).unwrap();
        assert_eq!(claims.sid, id);
        (claims.grants.publish, claims.grants.subscribe, claims.grants.host)
    };

    let (status, ann) = app.post(&path, Some(&attendees[0]), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{ann}");
    assert_eq!(grants(ann["token"].as_str().unwrap()), (false, true, false));
    assert_eq!(ann["ws_path"], format!("/api/rooms/{id}/ws"));
    assert_eq!(ann["grants"], json!({"publish": false, "subscribe": true, "host": false, "cohost": false}));
    let expires = chrono::DateTime::parse_from_rfc3339(ann["expires_at"].as_str().unwrap()).unwrap();
    let ttl = expires.signed_duration_since(chrono::Utc::now());
    assert!(ttl > chrono::Duration::seconds(60) && ttl <= chrono::Duration::seconds(121), "{ttl}");

    let (_, priya) = app.post(&path, Some(&presenter), json!({})).await;
    assert_eq!(grants(priya["token"].as_str().unwrap()), (true, true, false));
    let (_, olivia) = app.post(&path, Some(&organiser), json!({})).await;
    assert_eq!(grants(olivia["token"].as_str().unwrap()), (true, true, true));
    let claims = app.state.keys.verify_room(olivia["token"].as_str().unwrap()).unwrap();
    assert_eq!(claims.name, "Olivia Organiser");
}
both_backends!(registrants_presenters_and_organisers_get_room_tokens_with_their_grants);

async fn people_who_may_not_enter_are_told_why(backend: Backend) {
    let app = spawn_app(backend).await;
    let organiser = app.organiser().await;
    let full = app.session(&organiser, "One seat", 1, chrono::Duration::minutes(20)).await;
    let ann = app.sign_up("Ann", "ann@oak.sch.uk").await;
    let bob = app.sign_up("Bob", "bob@oak.sch.uk").await;
    let path = format!("/api/sessions/{full}/join");

    let (status, body) = app.post(&path, Some(&ann), json!({})).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(body["error"], "register for this session to join");
    assert_eq!(app.post(&path, None, json!({})).await.0, StatusCode::UNAUTHORIZED);

    // Ann takes the seat, Bob waits: waiting is not a place in the room.
    app.post(&format!("/api/sessions/{full}/registration"), Some(&ann), json!({})).await;
    app.post(&format!("/api/sessions/{full}/registration"), Some(&bob), json!({})).await;
    let (status, body) = app.post(&path, Some(&bob), json!({})).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(body["error"].as_str().unwrap().contains("waiting list"), "{body}");
    assert_eq!(app.post(&path, Some(&ann), json!({})).await.0, StatusCode::OK);

    let (status, body) = app.post("/api/sessions/999999/join", Some(&ann), json!({})).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");

    // Too early: the room opens half an hour before the start.
    let later = app.session(&organiser, "Next week", 10, chrono::Duration::days(7)).await;
    let (status, body) = app.post(&format!("/api/sessions/{later}/join"), Some(&organiser), json!({})).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(body["error"].as_str().unwrap().contains("opens 30 minutes before the start"), "{body}");

    let (status, _) = app.post(&format!("/api/sessions/{full}/cancel"), Some(&organiser), json!({})).await;
    assert!(status.is_success(), "{status}");
    let (status, body) = app.post(&path, Some(&ann), json!({})).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(body["error"], "this session was cancelled");
}
both_backends!(people_who_may_not_enter_are_told_why);

async fn the_join_route_is_in_the_openapi_document(backend: Backend) {
    let app = spawn_app(backend).await;
    let (_, doc) = app.get("/api/openapi.json", None).await;
    assert!(doc["paths"]["/api/sessions/{id}/join"]["post"].is_object());
    assert!(doc["paths"]["/api/rooms/{id}/ws"]["get"].is_object());
}
both_backends!(the_join_route_is_in_the_openapi_document);
