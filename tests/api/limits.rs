//! Limits on what one person may store: an evidence quota
//! (STAFFROOM_EVIDENCE_QUOTA_MB), a number of entries added by hand, and
//! bounded profile and entry fields, each answered with a JSON error.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::{
    both_backends,
    helpers::{spawn_app, spawn_app_with, Backend, TestApp},
    record::raw_post,
};

const KIB: usize = 1024;

fn entry(title: &str) -> Value {
    json!({"kind": "reading", "title": title, "date": "2026-01-10", "minutes": 30})
}

/// Uploads `kib` KiB of text as evidence on `entry`; the status and the JSON body.
async fn upload(app: &TestApp, token: &str, entry: i64, kib: usize) -> (u16, Value) {
    let path = format!("/api/me/record/entries/{entry}/evidence/file?name=notes.txt");
    let body = vec![b'a'; kib * KIB];
    raw_post(app, &path, token, &format!("Content-Length: {}\r\n", body.len()), Some(body)).await
}

async fn evidence_files_stop_at_the_quota_and_a_refused_upload_leaves_nothing_behind(backend: Backend) {
    let app = spawn_app_with(backend, &[("EVIDENCE_QUOTA_MB", "1")]).await;
    let ann = app.sign_up("Ann", "ann@oak.sch.uk").await;
    let (status, e) = app.post("/api/me/record/entries", Some(&ann), entry("Reading")).await;
    assert_eq!(status, StatusCode::CREATED, "{e}");
    let id = e["id"].as_i64().unwrap();

    assert_eq!(upload(&app, &ann, id, 700).await.0, 201);
    // 700 KiB of the 1 MiB used: 400 more would pass it.
    let (status, err) = upload(&app, &ann, id, 400).await;
    assert_eq!(status, 413, "{err}");
    let error = err["error"].as_str().unwrap();
    assert!(error.contains("may take 1 MiB in all") && error.contains("0.7 MiB already"), "{error}");
    assert_eq!(upload(&app, &ann, id, 300).await.0, 201, "what fits is still taken");
    assert_eq!(upload(&app, &ann, id, 100).await.0, 413);
    let stored = std::fs::read_dir(app.data_dir.path().join("evidence")).unwrap().count();
    assert_eq!(stored, 2, "refused uploads leave no file behind");

    // Someone else has their own quota; deleting evidence makes room again.
    let ben = app.sign_up("Ben", "ben@oak.sch.uk").await;
    let (_, e) = app.post("/api/me/record/entries", Some(&ben), entry("Reading")).await;
    assert_eq!(upload(&app, &ben, e["id"].as_i64().unwrap(), 700).await.0, 201);
    let (_, mine) = app.get(&format!("/api/me/record/entries/{id}"), Some(&ann)).await;
    let first = mine["evidence"][0]["id"].as_i64().unwrap();
    let (status, _) = app.request(Method::DELETE, &format!("/api/me/record/evidence/{first}"), Some(&ann), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(upload(&app, &ann, id, 400).await.0, 201);
}
both_backends!(evidence_files_stop_at_the_quota_and_a_refused_upload_leaves_nothing_behind);

async fn a_person_adds_at_most_500_entries_by_hand(backend: Backend) {
    let app = spawn_app(backend).await;
    let ann = app.sign_up("Ann", "ann@oak.sch.uk").await;
    let mut last = 0;
    for i in 0..500 {
        let (status, e) = app.post("/api/me/record/entries", Some(&ann), entry(&format!("Reading {i}"))).await;
        assert_eq!(status, StatusCode::CREATED, "{e}");
        last = e["id"].as_i64().unwrap();
    }
    let (status, err) = app.post("/api/me/record/entries", Some(&ann), entry("One too many")).await;
    assert_eq!(status, StatusCode::CONFLICT, "{err}");
    assert_eq!(err["field"], "entries");
    assert!(err["error"].as_str().unwrap().contains("at most 500 entries added by hand"), "{err}");
    let (status, _) = app.request(Method::DELETE, &format!("/api/me/record/entries/{last}"), Some(&ann), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(app.post("/api/me/record/entries", Some(&ann), entry("Room again")).await.0, StatusCode::CREATED);
}
both_backends!(a_person_adds_at_most_500_entries_by_hand);

async fn profile_and_entry_fields_are_bounded(backend: Backend) {
    let app = spawn_app(backend).await;
    let ann = app.sign_up("Ann", "ann@oak.sch.uk").await;
    for (body, field) in [(json!({"school": "s".repeat(201)}), "school"), (json!({"name": "n".repeat(121)}), "name")] {
        let (status, err) = app.request(Method::PATCH, "/api/me", Some(&ann), Some(body)).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{err}");
        assert_eq!(err["field"], field, "{err}");
    }
    let (status, me) =
        app.request(Method::PATCH, "/api/me", Some(&ann), Some(json!({"school": "s".repeat(200)}))).await;
    assert_eq!((status, me["school"].as_str().map(str::len)), (StatusCode::OK, Some(200)));

    let mut too_many_links = entry("Reading");
    too_many_links["goal_ids"] = json!((1..=51).collect::<Vec<i64>>());
    let (status, err) = app.post("/api/me/record/entries", Some(&ann), too_many_links).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{err}");
    assert_eq!(err["field"], "goal_ids", "{err}");
    let (status, err) = app.post("/api/me/record/entries", Some(&ann), entry(&"t".repeat(201))).await;
    assert_eq!((status, err["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("title")), "{err}");
}
both_backends!(profile_and_entry_fields_are_bounded);
