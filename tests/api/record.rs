//! The professional record: entries made from attendance, needs and
//! priorities, private reflections, manual entries and evidence.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::{
    attendance::modelled_session,
    both_backends,
    helpers::{spawn_app, Backend, TestApp},
};

async fn sign_in(app: &TestApp, email: &str) -> String {
    let (status, body) = app.post("/api/auth/signin", None, json!({"email": email, "password": "correct horse"})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["token"].as_str().unwrap().to_string()
}

async fn record(app: &TestApp, token: &str) -> Value {
    let (status, body) = app.get("/api/me/record", Some(token)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

async fn put(app: &TestApp, path: &str, token: &str, body: Value) -> (StatusCode, Value) {
    app.request(Method::PUT, path, Some(token), Some(body)).await
}

async fn upload(app: &TestApp, token: &str, entry: i64, name: &str, bytes: Vec<u8>) -> (StatusCode, Value) {
    let res = app
        .client
        .post(format!("{}/api/me/record/entries/{entry}/evidence/file?name={name}", app.url))
        .bearer_auth(token)
        .header("content-type", "application/octet-stream")
        .body(bytes)
        .send()
        .await
        .unwrap();
    let status = res.status();
    (status, res.json().await.unwrap_or(Value::Null))
}

const MAX_FILE: usize = 10 * 1024 * 1024;

/// A POST over a bare connection, for what reqwest cannot do: announce a body
/// and wait for the answer before sending it, or keep writing a body the
/// server has already refused. The body is written by its own task, whose
/// errors (the server hanging up once it has answered) are ignored; the
/// answer is read meanwhile. Returns the final status and the JSON body.
pub(crate) async fn raw_post(
    app: &TestApp,
    path: &str,
    token: &str,
    head: &str,
    body: Option<Vec<u8>>,
) -> (u16, Value) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = app.url.trim_start_matches("http://");
    let (mut rx, mut tx) = tokio::net::TcpStream::connect(addr).await.unwrap().into_split();
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/octet-stream\r\n{head}\r\n"
    );
    tx.write_all(request.as_bytes()).await.unwrap();
    let writer = tokio::spawn(async move {
        if let Some(body) = body {
            let _ = tx.write_all(&body).await;
        }
        tx
    });
    let read = async {
        let mut buf = Vec::new();
        let mut piece = [0u8; 8192];
        loop {
            let text = String::from_utf8_lossy(&buf).to_string();
            // Skip interim answers such as "100 Continue".
            if let Some(end) = text.find("\r\n\r\n") {
                let status: u16 = text[9..12].parse().unwrap();
                if (100..200).contains(&status) {
                    buf.drain(..end + 4);
                    continue;
                }
                let length: usize = text[..end]
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse().unwrap())
                    })
                    .expect("a content-length on the answer");
                if buf.len() >= end + 4 + length {
                    let body = &buf[end + 4..end + 4 + length];
                    let content_type = text[..end].lines().find_map(|l| {
                        l.to_ascii_lowercase().strip_prefix("content-type:").map(|v| v.trim().to_string())
                    });
                    crate::helpers::contract::check(&Method::POST, path, status, content_type.as_deref(), body);
                    return (status, serde_json::from_slice(body).unwrap_or(Value::Null));
                }
            }
            let n = rx.read(&mut piece).await.unwrap();
            assert!(n > 0, "the server hung up without a full answer: {text}");
            buf.extend_from_slice(&piece[..n]);
        }
    };
    let answer = tokio::time::timeout(std::time::Duration::from_secs(30), read).await.expect("an answer within 30 s");
    writer.abort();
    answer
}

async fn an_attended_session_becomes_one_entry_that_follows_attendance(backend: Backend) {
    let app = spawn_app(backend).await;
    let s = modelled_session(&app).await;
    let mine = record(&app, &s.attendee).await;
    assert_eq!(mine["total_minutes"], 48);
    let entries = mine["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 1, "{mine}");
    let e = &entries[0];
    assert_eq!((e["kind"].as_str(), e["session_id"].as_i64()), (Some("session"), Some(s.id)));
    assert_eq!((e["title"].as_str(), e["provider"].as_str()), (Some("Adaptive teaching"), Some("Priya Presenter")));
    assert_eq!(
        (e["minutes"].as_i64(), e["how"].as_str(), e["status"].as_str()),
        (Some(48), Some("live"), Some("attended"))
    );
    assert_eq!((e["minutes_in_groups"].as_i64(), &e["groups"]), (Some(10), &json!(["Group 1"])));
    assert_eq!((&e["reflection"], &e["goal_ids"], &e["evidence"]), (&Value::Null, &json!([]), &json!([])));
    // Reading again makes no second entry.
    let again = record(&app, &s.attendee).await;
    assert_eq!(again["entries"].as_array().unwrap().len(), 1);
    assert_eq!(again["entries"][0]["id"], e["id"]);

    // Dan only watched the replay: 30 minutes, by replay.
    let dan = sign_in(&app, "dan@oak.sch.uk").await;
    let theirs = record(&app, &dan).await;
    let d = &theirs["entries"][0];
    assert_eq!(
        (d["minutes"].as_i64(), d["how"].as_str(), d["status"].as_str()),
        (Some(30), Some("replay"), Some("attended"))
    );
    // Cat was in for the last 10 minutes: partly. The organiser lowers the
    // threshold to 15 %: the session is settled again, and her same entry
    // follows, now attended.
    let cat = sign_in(&app, "cat@oak.sch.uk").await;
    let c = record(&app, &cat).await["entries"][0].clone();
    assert_eq!((c["status"].as_str(), c["minutes"].as_i64()), (Some("partly"), Some(10)), "{c}");
    let (status, body) =
        put(&app, &format!("/api/sessions/{}/attendance-threshold", s.id), &s.organiser, json!({"percent": 15})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let theirs = record(&app, &cat).await;
    assert_eq!(theirs["entries"].as_array().unwrap().len(), 1);
    let again = &theirs["entries"][0];
    assert_eq!(
        (&again["id"], again["status"].as_str(), again["minutes"].as_i64()),
        (&c["id"], Some("attended"), Some(10))
    );

    // Eve was absent: nothing. Signed out: 401.
    let eve = sign_in(&app, "eve@oak.sch.uk").await;
    assert_eq!(record(&app, &eve).await["entries"], json!([]));
    assert_eq!(app.get("/api/me/record", None).await.0, StatusCode::UNAUTHORIZED);
}
both_backends!(an_attended_session_becomes_one_entry_that_follows_attendance);

async fn needs_and_priorities_link_to_entries_and_another_persons_need_is_refused(backend: Backend) {
    let app = spawn_app(backend).await;
    let s = modelled_session(&app).await;
    let ann = &s.attendee;
    let entry = record(&app, ann).await["entries"][0]["id"].as_i64().unwrap();

    let (status, need) =
        app.post("/api/me/goals", Some(ann), json!({"kind": "need", "title": "  Adaptive   teaching "})).await;
    assert_eq!(status, StatusCode::CREATED, "{need}");
    assert_eq!(need["title"], "Adaptive teaching", "spaces tidied");
    let (_, priority) = app
        .post("/api/me/goals", Some(ann), json!({"kind": "priority", "title": "Reading across the curriculum"}))
        .await;
    let (status, body) =
        app.post("/api/me/goals", Some(ann), json!({"kind": "need", "title": "adaptive TEACHING"})).await;
    assert_eq!((status, body["field"].as_str()), (StatusCode::CONFLICT, Some("title")), "{body}");
    let (status, _) = app.post("/api/me/goals", Some(ann), json!({"kind": "need", "title": "  "})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (status, _) = app.post("/api/me/goals", Some(ann), json!({"kind": "wish", "title": "Calm"})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);

    let ids = json!([need["id"], priority["id"]]);
    let (status, linked) =
        put(&app, &format!("/api/me/record/entries/{entry}/goals"), ann, json!({"goal_ids": ids})).await;
    assert_eq!(status, StatusCode::OK, "{linked}");
    assert_eq!(linked["goal_ids"], ids);

    // Ben's need is not Ann's to link: refused, and Ann's links stay.
    let ben = sign_in(&app, "ben@oak.sch.uk").await;
    let (_, bens) = app.post("/api/me/goals", Some(&ben), json!({"kind": "need", "title": "Behaviour"})).await;
    let (status, body) =
        put(&app, &format!("/api/me/record/entries/{entry}/goals"), ann, json!({"goal_ids": [need["id"], bens["id"]]}))
            .await;
    assert_eq!((status, body["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("goal_ids")), "{body}");
    assert_eq!(record(&app, ann).await["entries"][0]["goal_ids"], ids);
    // Nor can Ben link Ann's entry, rename or delete her need.
    let (status, _) = put(&app, &format!("/api/me/record/entries/{entry}/goals"), &ben, json!({"goal_ids": []})).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let path = format!("/api/me/goals/{}", need["id"]);
    let (status, _) = app.request(Method::PATCH, &path, Some(&ben), Some(json!({"title": "Mine now"}))).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = app.request(Method::DELETE, &path, Some(&ben), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(app.get("/api/me/goals", Some(&ben)).await.1.as_array().unwrap().len(), 1);

    // Renaming keeps the link; deleting unlinks and keeps the entry.
    let (status, renamed) =
        app.request(Method::PATCH, &path, Some(ann), Some(json!({"title": "Adaptive teaching in maths"}))).await;
    assert_eq!((status, renamed["title"].as_str()), (StatusCode::OK, Some("Adaptive teaching in maths")));
    let (status, _) = app.request(Method::DELETE, &path, Some(ann), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let mine = record(&app, ann).await;
    assert_eq!(mine["entries"][0]["goal_ids"], json!([priority["id"]]));
    assert_eq!(mine["goals"].as_array().unwrap().len(), 1);
}
both_backends!(needs_and_priorities_link_to_entries_and_another_persons_need_is_refused);

async fn reflections_are_private_to_their_owner(backend: Backend) {
    let app = spawn_app(backend).await;
    let s = modelled_session(&app).await;
    let ann = &s.attendee;
    let entry = record(&app, ann).await["entries"][0]["id"].as_i64().unwrap();
    let path = format!("/api/me/record/entries/{entry}/reflection");
    let (status, e) = put(
        &app,
        &path,
        ann,
        json!({"learned": "Pre-teach vocabulary to the whole class", "keep_doing": "Cold calling", "to_grow": "Scaffolds", "to_change": "Fewer worksheets"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{e}");
    assert_eq!(e["reflection"]["learned"], "Pre-teach vocabulary to the whole class");
    // The impact comes weeks later; the rest stays.
    let (_, e) = put(&app, &path, ann, json!({"impact": "Year 4 used the new words in their writing"})).await;
    assert_eq!(e["reflection"]["learned"], "Pre-teach vocabulary to the whole class");
    assert_eq!(e["reflection"]["impact"], "Year 4 used the new words in their writing");

    // Too long: refused by field, and what was stored stays.
    let (status, body) = put(&app, &path, ann, json!({"learned": "x".repeat(4001)})).await;
    assert_eq!((status, body["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("learned")), "{body}");
    let (_, e) = app.get(&format!("/api/me/record/entries/{entry}"), Some(ann)).await;
    assert_eq!(e["reflection"]["learned"], "Pre-teach vocabulary to the whole class");

    // The organiser cannot read or write it, and their report never carries it.
    for token in [&s.organiser, &s.presenter] {
        let (status, body) = app.get(&format!("/api/me/record/entries/{entry}"), Some(token)).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
        let (status, _) = put(&app, &path, token, json!({"learned": "overwritten"})).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let (status, _) = app.request(Method::DELETE, &path, Some(token), None).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }
    let report = app.get_text(&format!("/api/sessions/{}/attendance", s.id), &s.organiser).await;
    let csv = app.get_text(&format!("/api/sessions/{}/attendance.csv", s.id), &s.organiser).await;
    assert!(report.contains("Ann") && !report.contains("vocabulary") && !csv.contains("vocabulary"));
    let (_, e) = app.get(&format!("/api/me/record/entries/{entry}"), Some(ann)).await;
    assert_eq!(e["reflection"]["learned"], "Pre-teach vocabulary to the whole class");

    // Prompted on leaving: reflecting by session makes the entry if needed.
    let dan = sign_in(&app, "dan@oak.sch.uk").await;
    let (status, e) =
        put(&app, &format!("/api/me/record/sessions/{}/reflection", s.id), &dan, json!({"learned": "Retrieval first"}))
            .await;
    assert_eq!((status, e["reflection"]["learned"].as_str()), (StatusCode::OK, Some("Retrieval first")), "{e}");
    let eve = sign_in(&app, "eve@oak.sch.uk").await;
    let (status, _) =
        put(&app, &format!("/api/me/record/sessions/{}/reflection", s.id), &eve, json!({"learned": "?"})).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "Eve never attended");

    // Ann may delete her reflection; the entry stays.
    let (status, _) = app.request(Method::DELETE, &path, Some(ann), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let mine = record(&app, ann).await;
    assert_eq!((mine["entries"][0]["reflection"].clone(), mine["total_minutes"].as_i64()), (Value::Null, Some(48)));
}
both_backends!(reflections_are_private_to_their_owner);

async fn manual_entries_carry_time_and_evidence_within_type_and_size_limits(backend: Backend) {
    let app = spawn_app(backend).await;
    let s = modelled_session(&app).await;
    let ann = &s.attendee;
    let (_, need) =
        app.post("/api/me/goals", Some(ann), json!({"kind": "need", "title": "Behaviour management"})).await;
    let course = json!({"kind": "course", "title": "NPQ module 1", "provider": "Ambition", "date": "2026-10-05", "minutes": 90, "goal_ids": [need["id"]]});
    let (status, manual) = app.post("/api/me/record/entries", Some(ann), course.clone()).await;
    assert_eq!(status, StatusCode::CREATED, "{manual}");
    assert_eq!((manual["kind"].as_str(), manual["minutes"].as_i64()), (Some("course"), Some(90)));
    assert_eq!(manual["goal_ids"], json!([need["id"]]));
    assert!(manual["occurred_at"].as_str().unwrap().starts_with("2026-10-05"));
    let id = manual["id"].as_i64().unwrap();

    // Bad input: a clear error by field, and nothing added.
    let ben = sign_in(&app, "ben@oak.sch.uk").await;
    let (_, bens) = app.post("/api/me/goals", Some(&ben), json!({"kind": "need", "title": "Behaviour"})).await;
    let future = (chrono::Utc::now() + chrono::Duration::days(30)).format("%Y-%m-%d").to_string();
    for (change, field) in [
        (json!({"kind": "session"}), "kind"),
        (json!({"minutes": 0}), "minutes"),
        (json!({"minutes": 100000}), "minutes"),
        (json!({"title": " "}), "title"),
        (json!({"date": future}), "date"),
        (json!({"date": "5 October"}), "date"),
        (json!({"goal_ids": [bens["id"]]}), "goal_ids"),
    ] {
        let mut body = course.clone();
        body.as_object_mut().unwrap().extend(change.as_object().unwrap().clone());
        let (status, err) = app.post("/api/me/record/entries", Some(ann), body).await;
        assert_eq!((status, err["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some(field)), "{change}: {err}");
    }
    let mine = record(&app, ann).await;
    assert_eq!((mine["entries"].as_array().unwrap().len(), mine["total_minutes"].as_i64()), (2, Some(138)));

    // A session entry's time is attendance: not edited, not deleted.
    let session_entry =
        mine["entries"].as_array().unwrap().iter().find(|e| e["kind"] == "session").unwrap()["id"].clone();
    let (status, _) = put(&app, &format!("/api/me/record/entries/{session_entry}"), ann, course.clone()).await;
    assert_eq!(status, StatusCode::CONFLICT);
    let (status, _) =
        app.request(Method::DELETE, &format!("/api/me/record/entries/{session_entry}"), Some(ann), None).await;
    assert_eq!(status, StatusCode::CONFLICT);
    // A manual one is edited.
    let mut edited = course.clone();
    edited["minutes"] = json!(120);
    let (status, e) = put(&app, &format!("/api/me/record/entries/{id}"), ann, edited).await;
    assert_eq!((status, e["minutes"].as_i64()), (StatusCode::OK, Some(120)), "{e}");

    // Evidence: a link, and a PDF.
    let ev = format!("/api/me/record/entries/{id}/evidence");
    let (status, link) = app.post(&ev, Some(ann), json!({"url": "https://example.org/my-blog/behaviour"})).await;
    assert_eq!((status, link["kind"].as_str()), (StatusCode::CREATED, Some("link")), "{link}");
    for bad in ["javascript:alert(1)", "ftp://example.org/x", "not a link"] {
        let (status, err) = app.post(&ev, Some(ann), json!({"url": bad})).await;
        assert_eq!((status, err["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("url")), "{bad}");
    }
    let pdf = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n".to_vec();
    let (status, file) = upload(&app, ann, id, "lesson%20plan.pdf", pdf.clone()).await;
    assert_eq!(status, StatusCode::CREATED, "{file}");
    assert_eq!((file["file_name"].as_str(), file["bytes"].as_i64()), (Some("lesson plan.pdf"), Some(pdf.len() as i64)));
    let res =
        app.client.get(format!("{}{}", app.url, file["url"].as_str().unwrap())).bearer_auth(ann).send().await.unwrap();
    assert_eq!(res.headers()["content-type"], "application/pdf");
    assert!(res.headers()["content-disposition"].to_str().unwrap().contains("lesson plan.pdf"));
    assert_eq!(res.bytes().await.unwrap().to_vec(), pdf);
    // Someone else gets nothing of it.
    let res =
        app.client.get(format!("{}{}", app.url, file["url"].as_str().unwrap())).bearer_auth(&ben).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    let (status, _) = upload(&app, &ben, id, "mine.pdf", pdf.clone()).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Forbidden types, a disguised file, an empty one, a huge one.
    let (status, err) = upload(&app, ann, id, "setup.exe", b"MZ\x90\x00".to_vec()).await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{err}");
    assert!(err["error"].as_str().unwrap().contains("pdf"), "{err}");
    let (status, _) = upload(&app, ann, id, "photo.png", b"MZ\x90\x00 not a png".to_vec()).await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let (status, _) = upload(&app, ann, id, "notes.txt", vec![]).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    // Too large, announced in the headers: the answer comes before any of
    // the body is sent (as curl does for big uploads, with 100-continue).
    let path = format!("/api/me/record/entries/{id}/evidence/file?name=big.pdf");
    let head = format!("Content-Length: {}\r\nExpect: 100-continue\r\n", MAX_FILE + 1);
    let (status, err) = raw_post(&app, &path, ann, &head, None).await;
    assert_eq!(status, 413, "{err}");
    assert_eq!(err["error"], "evidence files are at most 10 MiB", "{err}");
    // Too large, found while streaming a chunked body with no length.
    let mut chunked = Vec::new();
    let chunk = [b'a'; 64 * 1024];
    chunked.extend_from_slice(b"5\r\n%PDF-\r\n");
    for _ in 0..=MAX_FILE / chunk.len() {
        chunked.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        chunked.extend_from_slice(&chunk);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let (status, err) = raw_post(&app, &path, ann, "Transfer-Encoding: chunked\r\n", Some(chunked)).await;
    assert_eq!(status, 413, "{err}");
    assert_eq!(err["error"], "evidence files are at most 10 MiB", "{err}");
    let stored = std::fs::read_dir(app.data_dir.path().join("evidence")).unwrap().count();
    assert_eq!(stored, 1, "refused uploads leave no file behind");
    let e = app.get(&format!("/api/me/record/entries/{id}"), Some(ann)).await.1;
    assert_eq!(e["evidence"].as_array().unwrap().len(), 2, "{e}");

    // Deleting the manual entry removes its evidence, file and all.
    let (status, _) = app.request(Method::DELETE, &format!("/api/me/record/entries/{id}"), Some(ann), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(std::fs::read_dir(app.data_dir.path().join("evidence")).unwrap().count(), 0);
    let mine = record(&app, ann).await;
    assert_eq!((mine["entries"].as_array().unwrap().len(), mine["total_minutes"].as_i64()), (1, Some(48)));
    let n: i64 =
        sqlx::query_scalar("select count(*) from record_evidence").fetch_one(&app.state.db.read).await.unwrap();
    assert_eq!(n, 0);
}
both_backends!(manual_entries_carry_time_and_evidence_within_type_and_size_limits);

async fn removing_an_account_deletes_its_record_and_anonymises_its_attendance(backend: Backend) {
    let app = spawn_app(backend).await;
    let s = modelled_session(&app).await;
    let ann = &s.attendee;
    let entry = record(&app, ann).await["entries"][0]["id"].as_i64().unwrap();
    let (_, need) = app.post("/api/me/goals", Some(ann), json!({"kind": "need", "title": "Behaviour"})).await;
    put(&app, &format!("/api/me/record/entries/{entry}/goals"), ann, json!({"goal_ids": [need["id"]]})).await;
    put(&app, &format!("/api/me/record/entries/{entry}/reflection"), ann, json!({"learned": "Routines"})).await;
    let (status, _) = upload(&app, ann, entry, "plan.txt", b"Plan".to_vec()).await;
    assert_eq!(status, StatusCode::CREATED);
    // A full session tomorrow: Ann has the one place, Ben waits.
    let tomorrow = app.session(&s.organiser, "Tomorrow", 1, chrono::Duration::days(1)).await;
    app.post(&format!("/api/sessions/{tomorrow}/registration"), Some(ann), json!({})).await;
    let ben = sign_in(&app, "ben@oak.sch.uk").await;
    let (_, waiting) = app.post(&format!("/api/sessions/{tomorrow}/registration"), Some(&ben), json!({})).await;
    assert_eq!(waiting["status"], "waitlisted", "{waiting}");

    let (status, body) = app.request(Method::DELETE, "/api/me", Some(ann), Some(json!({"password": "wrong"}))).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(record(&app, ann).await["entries"][0]["reflection"]["learned"], "Routines", "nothing removed");

    let (status, body) =
        app.request(Method::DELETE, "/api/me", Some(ann), Some(json!({"password": "correct horse"}))).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    assert_eq!(app.get("/api/me/record", Some(ann)).await.0, StatusCode::UNAUTHORIZED, "signed out everywhere");
    let (status, _) =
        app.post("/api/auth/signin", None, json!({"email": "ann@oak.sch.uk", "password": "correct horse"})).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    for table in ["record_entries", "record_goals", "record_links", "record_reflections", "record_evidence"] {
        let n: i64 =
            sqlx::query_scalar(&format!("select count(*) from {table}")).fetch_one(&app.state.db.read).await.unwrap();
        assert_eq!(n, 0, "{table} is empty");
    }
    assert_eq!(std::fs::read_dir(app.data_dir.path().join("evidence")).unwrap().count(), 0);
    // Ben moves up into the place Ann gave up.
    let (_, mine) = app.get("/api/me/sessions", Some(&ben)).await;
    let t = mine.as_array().unwrap().iter().find(|x| x["id"] == tomorrow).unwrap();
    assert_eq!(t["my_registration"]["status"], "confirmed", "{t}");
    // The organiser's figures still add up, without her name or school.
    let report = app.get(&format!("/api/sessions/{}/attendance", s.id), Some(&s.organiser)).await.1;
    let removed = report["people"].as_array().unwrap().iter().find(|p| p["name"] == "Removed account").unwrap();
    assert_eq!((removed["minutes_live"].as_i64(), removed["school"].as_str()), (Some(48), Some("")));
    assert!(!report.to_string().contains("ann@oak.sch.uk") && !report.to_string().contains("\"Ann\""));
}
both_backends!(removing_an_account_deletes_its_record_and_anonymises_its_attendance);

async fn a_shared_entry_is_shown_to_anyone_with_its_link_until_sharing_stops(backend: Backend) {
    let app = spawn_app(backend).await;
    let s = modelled_session(&app).await;
    let ann = &s.attendee;
    let entry = record(&app, ann).await["entries"][0]["id"].as_i64().unwrap();
    let (_, need) = app.post("/api/me/goals", Some(ann), json!({"kind": "need", "title": "Adaptive teaching"})).await;
    put(&app, &format!("/api/me/record/entries/{entry}/goals"), ann, json!({"goal_ids": [need["id"]]})).await;
    put(&app, &format!("/api/me/record/entries/{entry}/reflection"), ann, json!({"learned": "Chunk the task"})).await;
    upload(&app, ann, entry, "plan.txt", b"Lesson plan".to_vec()).await;
    // Private to begin with.
    assert_eq!(record(&app, ann).await["entries"][0]["shared_token"], Value::Null);

    let (status, shared) = app.post(&format!("/api/me/record/entries/{entry}/share"), Some(ann), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{shared}");
    let token = shared["shared_token"].as_str().unwrap().to_string();
    assert_eq!(token.len(), 32);
    let (_, again) = app.post(&format!("/api/me/record/entries/{entry}/share"), Some(ann), json!({})).await;
    assert_eq!(again["shared_token"], token.as_str(), "sharing twice keeps the link");

    // Anyone with the link, signed in or not, sees that entry and nothing else.
    let (status, seen) = app.get(&format!("/api/shared/{token}"), None).await;
    assert_eq!(status, StatusCode::OK, "{seen}");
    assert_eq!((seen["holder_name"].as_str(), seen["title"].as_str()), (Some("Ann"), Some("Adaptive teaching")));
    assert_eq!((seen["minutes"].as_i64(), seen["reflection"]["learned"].as_str()), (Some(48), Some("Chunk the task")));
    assert_eq!(seen["goals"], json!([{"kind": "need", "title": "Adaptive teaching"}]));
    assert!(!seen.to_string().contains("oak.sch.uk"), "no email: {seen}");
    let file = seen["evidence"][0]["url"].as_str().unwrap();
    assert!(file.starts_with(&format!("/api/shared/{token}/evidence/")), "{file}");
    let res = app.client.get(format!("{}{file}", app.url)).send().await.unwrap();
    assert_eq!(res.bytes().await.unwrap().as_ref(), b"Lesson plan");
    // Ben cannot share Ann's entry; a made-up token finds nothing.
    let ben = sign_in(&app, "ben@oak.sch.uk").await;
    let (status, _) = app.post(&format!("/api/me/record/entries/{entry}/share"), Some(&ben), json!({})).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(app.get(&format!("/api/shared/{}", "0".repeat(32)), None).await.0, StatusCode::NOT_FOUND);

    // Stopping: the link, and its files, are gone.
    let (status, stopped) =
        app.request(Method::DELETE, &format!("/api/me/record/entries/{entry}/share"), Some(ann), None).await;
    assert_eq!((status, &stopped["shared_token"]), (StatusCode::OK, &Value::Null));
    assert_eq!(app.get(&format!("/api/shared/{token}"), None).await.0, StatusCode::NOT_FOUND);
    let res = app.client.get(format!("{}{file}", app.url)).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
}
both_backends!(a_shared_entry_is_shown_to_anyone_with_its_link_until_sharing_stops);
