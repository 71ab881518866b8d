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
