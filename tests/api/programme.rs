use chrono::Duration;
use reqwest::StatusCode;
use serde_json::json;

use crate::{
    both_backends,
    helpers::{spawn_app, Backend},
};

async fn an_organiser_creates_a_draft_and_publishes_it_to_the_programme(backend: Backend) {
    let app = spawn_app(backend).await;
    let organiser = app.organiser().await;
    let presenter = app.sign_up("Dr Amara Okafor", "amara@ioe.ac.uk").await;
    let start = chrono::Utc::now() + Duration::days(5);
    let (status, draft) = app
        .post(
            "/api/sessions",
            Some(&organiser),
            json!({
                "title": "Retrieval practice", "kind": "webinar", "series": "Early Career", "subject": "Science",
                "audiences": ["ECT", "teacher"], "presenters": ["amara@ioe.ac.uk"],
                "starts_at": start.to_rfc3339(), "ends_at": (start + Duration::hours(1)).to_rfc3339(), "capacity": 30
            }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{draft}");
    assert_eq!(draft["status"], "draft");
    assert_eq!(draft["audiences"], json!(["ect", "teacher"]));
    assert_eq!(draft["presenters"][0]["name"], "Dr Amara Okafor");
    let id = draft["id"].as_i64().unwrap();

    // Drafts are invisible to the public, visible to their presenter.
    let (_, public) = app.get("/api/sessions", None).await;
    assert_eq!(public.as_array().unwrap().len(), 0);
    assert_eq!(app.get(&format!("/api/sessions/{id}"), None).await.0, StatusCode::NOT_FOUND);
    assert_eq!(app.get(&format!("/api/sessions/{id}"), Some(&presenter)).await.0, StatusCode::OK);

    let (status, published) = app.post(&format!("/api/sessions/{id}/publish"), Some(&organiser), json!({})).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(published["status"], "published");
    let (_, public) = app.get("/api/sessions", None).await;
    assert_eq!(public[0]["title"], "Retrieval practice");
    assert_eq!(public[0]["seats_left"], 30);
}
both_backends!(an_organiser_creates_a_draft_and_publishes_it_to_the_programme);

async fn only_organisers_manage_the_programme(backend: Backend) {
    let app = spawn_app(backend).await;
    let organiser = app.organiser().await;
    let teacher = app.sign_up("Ann", "ann@oak.sch.uk").await;
    let id = app.session(&organiser, "Phonics", 10, Duration::days(2)).await;
    let start = chrono::Utc::now() + Duration::days(2);
    let body = json!({"title": "Mine now", "kind": "webinar", "starts_at": start.to_rfc3339(),
                      "ends_at": (start + Duration::hours(1)).to_rfc3339(), "capacity": 5});
    let (status, err) = app.post("/api/sessions", Some(&teacher), body.clone()).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(err["error"].as_str().unwrap().contains("organisers"));
    assert_eq!(app.post("/api/sessions", None, body.clone()).await.0, StatusCode::UNAUTHORIZED);
    let put = app.request(reqwest::Method::PUT, &format!("/api/sessions/{id}"), Some(&teacher), Some(body)).await;
    assert_eq!(put.0, StatusCode::FORBIDDEN);
    assert_eq!(
        app.post(&format!("/api/sessions/{id}/cancel"), Some(&teacher), json!({})).await.0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(app.get(&format!("/api/sessions/{id}/registrations"), Some(&teacher)).await.0, StatusCode::FORBIDDEN);
    assert_eq!(app.get("/api/sessions?all=true", Some(&teacher)).await.0, StatusCode::FORBIDDEN);
}
both_backends!(only_organisers_manage_the_programme);

async fn the_programme_filters_by_audience_subject_series_and_dates(backend: Backend) {
    let app = spawn_app(backend).await;
    let organiser = app.organiser().await;
    let mk =
        |title: &'static str, audiences: serde_json::Value, subject: &'static str, series: &'static str, days: i64| {
            let start = chrono::Utc::now() + Duration::days(days);
            json!({"title": title, "kind": "webinar", "audiences": audiences, "subject": subject, "series": series,
               "starts_at": start.to_rfc3339(), "ends_at": (start + Duration::hours(1)).to_rfc3339(),
               "capacity": 20, "status": "published"})
        };
    for body in [
        mk("ECT maths", json!(["ect"]), "Maths", "Early Career", 1),
        mk("Leaders maths", json!(["leaders"]), "Maths", "Leading Learning", 2),
        mk("ECT English", json!(["ect"]), "English", "Early Career", 10),
    ] {
        assert_eq!(app.post("/api/sessions", Some(&organiser), body).await.0, StatusCode::CREATED);
    }
    let titles = |v: serde_json::Value| {
        v.as_array().unwrap().iter().map(|s| s["title"].as_str().unwrap().to_string()).collect::<Vec<_>>()
    };
    assert_eq!(titles(app.get("/api/sessions?audience=ect", None).await.1), ["ECT maths", "ECT English"]);
    assert_eq!(titles(app.get("/api/sessions?subject=maths", None).await.1), ["ECT maths", "Leaders maths"]);
    assert_eq!(
        titles(app.get("/api/sessions?series=Early%20Career&audience=ect&subject=English", None).await.1),
        ["ECT English"]
    );
    let to = (chrono::Utc::now() + Duration::days(5)).to_rfc3339().replace('+', "%2B");
    assert_eq!(titles(app.get(&format!("/api/sessions?to={to}"), None).await.1), ["ECT maths", "Leaders maths"]);
}
both_backends!(the_programme_filters_by_audience_subject_series_and_dates);

async fn put(
    app: &crate::helpers::TestApp,
    path: &str,
    token: &str,
    body: serde_json::Value,
) -> (StatusCode, serde_json::Value) {
    app.request(reqwest::Method::PUT, path, Some(token), Some(body)).await
}

/// A session body starting `starts_in` from now and lasting `length`.
fn timed(title: &str, starts_in: Duration, length: Duration, status: &str) -> serde_json::Value {
    let start = chrono::Utc::now() + starts_in;
    json!({"title": title, "kind": "webinar", "capacity": 20, "status": status,
           "starts_at": start.to_rfc3339(), "ends_at": (start + length).to_rfc3339()})
}

async fn publishing_a_session_whose_start_has_passed_needs_an_explicit_confirmation(backend: Backend) {
    let app = spawn_app(backend).await;
    let organiser = app.organiser().await;
    let past = Duration::days(-2000);

    // Created published: refused, saying why and how to go ahead; nothing is stored.
    let (status, err) =
        app.post("/api/sessions", Some(&organiser), timed("Old", past, Duration::hours(1), "published")).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{err}");
    assert_eq!(err["field"], "confirm_past");
    assert!(err["error"].as_str().unwrap().contains("has already passed"), "{err}");
    assert_eq!(app.get("/api/sessions?all=true", Some(&organiser)).await.1, json!([]));
    let mut confirmed = timed("Old, on purpose", past, Duration::hours(1), "published");
    confirmed["confirm_past"] = json!(true);
    let (status, body) = app.post("/api/sessions", Some(&organiser), confirmed).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["status"], "published");

    // A draft in the past is fine; publishing it needs the confirmation.
    let (status, draft) =
        app.post("/api/sessions", Some(&organiser), timed("Draft", past, Duration::hours(1), "draft")).await;
    assert_eq!(status, StatusCode::CREATED, "{draft}");
    let id = draft["id"].as_i64().unwrap();
    let (status, err) = app.post(&format!("/api/sessions/{id}/publish"), Some(&organiser), json!({})).await;
    assert_eq!((status, err["field"].clone()), (StatusCode::UNPROCESSABLE_ENTITY, json!("confirm_past")), "{err}");
    let (status, err) =
        put(&app, &format!("/api/sessions/{id}"), &organiser, timed("Draft", past, Duration::hours(1), "published"))
            .await;
    assert_eq!((status, err["field"].clone()), (StatusCode::UNPROCESSABLE_ENTITY, json!("confirm_past")), "{err}");
    let (status, body) =
        app.post(&format!("/api/sessions/{id}/publish?confirm_past=true"), Some(&organiser), json!({})).await;
    assert_eq!((status, body["status"].clone()), (StatusCode::OK, json!("published")), "{body}");

    // A future session publishes with no question asked.
    let (status, body) = app
        .post("/api/sessions", Some(&organiser), timed("Next week", Duration::days(7), Duration::hours(1), "published"))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["life"], "upcoming");
}
both_backends!(publishing_a_session_whose_start_has_passed_needs_an_explicit_confirmation);

async fn session_times_are_checked_with_messages_that_say_what_is_wrong(backend: Backend) {
    let app = spawn_app(backend).await;
    let organiser = app.organiser().await;
    let soon = Duration::days(3);
    for (length, says) in [
        (Duration::hours(-7), "is before the start"),
        (Duration::zero(), "is the same as the start"),
        (Duration::hours(17), "this one would last 17 hours"),
        (Duration::minutes(12 * 60 + 30), "this one would last 12 hours 30 minutes"),
    ] {
        let (status, err) = app.post("/api/sessions", Some(&organiser), timed("Times", soon, length, "draft")).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{err}");
        assert_eq!(err["field"], "ends_at");
        let message = err["error"].as_str().unwrap();
        assert!(message.contains(says), "{length}: {message}");
        if length < Duration::zero() {
            assert!(!message.contains("12 hours"), "an end before the start is not called too long: {message}");
        }
    }
    let (status, body) =
        app.post("/api/sessions", Some(&organiser), timed("Times", soon, Duration::hours(12), "draft")).await;
    assert_eq!(status, StatusCode::CREATED, "twelve hours exactly is allowed: {body}");
}
both_backends!(session_times_are_checked_with_messages_that_say_what_is_wrong);

async fn an_organiser_makes_a_presenter_a_co_host_whose_room_token_carries_it(backend: Backend) {
    let app = spawn_app(backend).await;
    let organiser = app.organiser().await;
    let presenter = app.sign_up("Priya Presenter", "priya@hillside.sch.uk").await;
    let teacher = app.sign_up("Ann Teacher", "ann@hillside.sch.uk").await;
    let mut body = timed("Co-hosted", Duration::minutes(10), Duration::hours(1), "published");
    body["presenters"] = json!(["priya@hillside.sch.uk"]);
    let (status, session) = app.post("/api/sessions", Some(&organiser), body.clone()).await;
    assert_eq!(status, StatusCode::CREATED, "{session}");
    let (id, priya) = (session["id"].as_i64().unwrap(), session["presenters"][0]["id"].as_i64().unwrap());
    assert_eq!(session["presenters"][0]["cohost"], false);
    let path = format!("/api/sessions/{id}/presenters/{priya}/cohost");

    // Only organisers grant it, and only to the session's presenters.
    assert_eq!(put(&app, &path, &teacher, json!({"cohost": true})).await.0, StatusCode::FORBIDDEN);
    assert_eq!(put(&app, &path, &presenter, json!({"cohost": true})).await.0, StatusCode::FORBIDDEN);
    let (_, me) = app.get("/api/me", Some(&teacher)).await;
    let stranger = format!("/api/sessions/{id}/presenters/{}/cohost", me["id"]);
    assert_eq!(put(&app, &stranger, &organiser, json!({"cohost": true})).await.0, StatusCode::NOT_FOUND);

    let (status, updated) = put(&app, &path, &organiser, json!({"cohost": true})).await;
    assert_eq!(status, StatusCode::OK, "{updated}");
    assert_eq!(updated["presenters"][0]["cohost"], true);
    assert_eq!(app.get(&format!("/api/sessions/{id}"), None).await.1["presenters"][0]["cohost"], true);
    let (status, ticket) = app.post(&format!("/api/sessions/{id}/join"), Some(&presenter), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{ticket}");
    assert_eq!(ticket["grants"], json!({"publish": true, "subscribe": true, "host": false, "cohost": true}));

    // Editing the session keeps the grant; taking it back removes it from the next token.
    body["title"] = json!("Co-hosted, renamed");
    let (status, edited) = put(&app, &format!("/api/sessions/{id}"), &organiser, body).await;
    assert_eq!(status, StatusCode::OK, "{edited}");
    assert_eq!(edited["presenters"][0]["cohost"], true);
    assert_eq!(put(&app, &path, &organiser, json!({"cohost": false})).await.0, StatusCode::OK);
    let (_, ticket) = app.post(&format!("/api/sessions/{id}/join"), Some(&presenter), json!({})).await;
    assert_eq!(ticket["grants"]["cohost"], false);
}
both_backends!(an_organiser_makes_a_presenter_a_co_host_whose_room_token_carries_it);

/// Holds what a session's status change must wait for, so the test can line
/// requests up: on SQLite the one write connection, on PostgreSQL the
/// session's row (a lock only: nothing is changed).
async fn hold_session(app: &crate::helpers::TestApp, backend: Backend, id: i64) -> staffroom::db::Tx {
    let mut tx = app.state.db.begin().await.unwrap();
    if matches!(backend, Backend::Postgres) {
        sqlx::query("select id from sessions where id = $1 for update").bind(id).execute(&mut *tx).await.unwrap();
    }
    tx
}

/// Until `n` requests wait behind [`hold_session`]. PostgreSQL shows its
/// waiters; SQLite's wait is inside the connection pool, so there the test
/// gives each request time to read the session and queue.
async fn waiting(app: &crate::helpers::TestApp, backend: Backend, n: i64) {
    if matches!(backend, Backend::Sqlite) {
        return tokio::time::sleep(std::time::Duration::from_millis(800 * n as u64)).await;
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let waiting: i64 = sqlx::query_scalar(
            "select count(*) from pg_stat_activity where datname = current_database() and wait_event_type = 'Lock'",
        )
        .fetch_one(&app.state.db.read)
        .await
        .unwrap();
        if waiting >= n {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "{waiting} of {n} requests queued");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// Cancels session `id` and runs `other` so that `other` reads the session
/// while the cancellation is under way and writes after it committed.
async fn cancelled_before(
    app: &crate::helpers::TestApp,
    backend: Backend,
    id: i64,
    organiser: &str,
    other: impl std::future::Future<Output = (StatusCode, serde_json::Value)>,
) -> ((StatusCode, serde_json::Value), (StatusCode, serde_json::Value)) {
    let cancel = format!("/api/sessions/{id}/cancel");
    let hold = hold_session(app, backend, id).await;
    let (cancelled, other, ()) = tokio::join!(
        app.post(&cancel, Some(organiser), json!({})),
        async {
            waiting(app, backend, 1).await;
            other.await
        },
        async {
            waiting(app, backend, 2).await;
            hold.commit().await.unwrap();
        },
    );
    (cancelled, other)
}

async fn an_edit_or_a_publish_that_read_the_session_before_a_cancellation_committed_does_not_undo_it(backend: Backend) {
    let app = spawn_app(backend).await;
    let organiser = app.organiser().await;
    let id = app.session(&organiser, "Adaptive teaching", 30, Duration::days(3)).await;
    let (_, before) = app.get(&format!("/api/sessions/{id}"), Some(&organiser)).await;
    let mut edit = json!({
        "title": "Adaptive teaching in practice", "description": "Edited.", "kind": "masterclass",
        "series": "Early Career", "subject": "Behaviour", "audiences": ["ect"],
        "starts_at": before["starts_at"], "ends_at": before["ends_at"], "capacity": 30
    });
    let sessions = format!("/api/sessions/{id}");

    // The edit reads the session (published) while the cancellation is under
    // way, and writes after the cancellation committed.
    let put = app.request(reqwest::Method::PUT, &sessions, Some(&organiser), Some(edit.clone()));
    let (cancelled, edited) = cancelled_before(&app, backend, id, &organiser, put).await;
    assert_eq!(cancelled.0, StatusCode::OK, "{}", cancelled.1);
    assert_eq!(edited.0, StatusCode::CONFLICT, "{}", edited.1);
    let message = edited.1["error"].as_str().unwrap();
    assert!(message.contains("was cancelled a moment ago") && message.contains("not saved"), "{message}");
    let (_, now) = app.get(&sessions, Some(&organiser)).await;
    assert_eq!((now["status"].as_str(), now["title"].as_str()), (Some("cancelled"), Some("Adaptive teaching")));

    // The same for publishing a draft.
    edit["title"] = json!("Metacognition");
    let (_, draft) = app.post("/api/sessions", Some(&organiser), edit).await;
    let draft = draft["id"].as_i64().unwrap();
    let publish_path = format!("/api/sessions/{draft}/publish");
    let publish = app.post(&publish_path, Some(&organiser), json!({}));
    let (cancelled, published) = cancelled_before(&app, backend, draft, &organiser, publish).await;
    assert_eq!(cancelled.0, StatusCode::OK, "{}", cancelled.1);
    assert_eq!(published.0, StatusCode::CONFLICT, "{}", published.1);
    assert!(published.1["error"].as_str().unwrap().contains("not published"), "{}", published.1);
    let (_, now) = app.get(&format!("/api/sessions/{draft}"), Some(&organiser)).await;
    assert_eq!(now["status"], "cancelled");
}
both_backends!(an_edit_or_a_publish_that_read_the_session_before_a_cancellation_committed_does_not_undo_it);
