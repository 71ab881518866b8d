//! Calendar subscriptions: the feed a calendar app fetches, read by a
//! third-party iCalendar parser (the `ical` crate), as sessions change.

use chrono::{DateTime, Duration, Utc};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::{
    both_backends,
    helpers::{spawn_app_with, Backend, TestApp},
};

/// One VEVENT of a feed, as the parser read it.
#[derive(Debug)]
struct FeedEvent {
    uid: String,
    sequence: u32,
    summary: String,
    status: String,
    dtstart: String,
    dtstart_tzid: String,
}

/// A TEXT value as written (RFC 5545 3.3.11): the parser leaves the escapes in.
fn unescape(text: &str) -> String {
    let mut out = String::new();
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match (c, c == '\\') {
            (_, true) => match chars.next() {
                Some('n') | Some('N') => out.push('\n'),
                Some(other) => out.push(other),
                None => {}
            },
            (c, false) => out.push(c),
        }
    }
    out
}

/// Fetches a feed as a calendar app would (no sign-in) and parses it.
async fn fetch_feed(app: &TestApp, url: &str) -> (String, Vec<FeedEvent>) {
    let res = app.client.get(url).send().await.expect("the server answers");
    assert_eq!(res.status(), StatusCode::OK, "{url}");
    let kind = res.headers()[reqwest::header::CONTENT_TYPE].to_str().unwrap().to_string();
    assert!(kind.starts_with("text/calendar"), "{kind}");
    let text = res.text().await.unwrap();
    let mut parser = ical::IcalParser::new(std::io::BufReader::new(text.as_bytes()));
    let cal = parser.next().expect("one VCALENDAR").expect("a valid VCALENDAR");
    let value = |props: &[ical::property::Property], name: &str| {
        props.iter().find(|p| p.name == name).and_then(|p| p.value.clone()).unwrap_or_default()
    };
    let zone = cal.timezones.first().map(|z| value(&z.properties, "TZID")).unwrap_or_default();
    let events = cal
        .events
        .iter()
        .map(|e| {
            let start = e.properties.iter().find(|p| p.name == "DTSTART").expect("a DTSTART");
            let tzid = start.params.iter().flatten().find(|(k, _)| k == "TZID").map(|(_, v)| v.join(","));
            FeedEvent {
                uid: value(&e.properties, "UID"),
                sequence: value(&e.properties, "SEQUENCE").parse().expect("a numeric SEQUENCE"),
                summary: unescape(&value(&e.properties, "SUMMARY")),
                status: value(&e.properties, "STATUS"),
                dtstart: start.value.clone().unwrap_or_default(),
                dtstart_tzid: tzid.unwrap_or_default(),
            }
        })
        .collect();
    (zone, events)
}

async fn my_feed(app: &TestApp, token: &str) -> Value {
    let (status, feeds) = app.get("/api/me/calendars", Some(token)).await;
    assert_eq!(status, StatusCode::OK, "{feeds}");
    feeds.as_array().unwrap().iter().find(|f| f["scope"] == "mine").expect("a feed of my sessions").clone()
}

fn london(t: DateTime<Utc>) -> String {
    t.with_timezone(&chrono_tz::Europe::London).format("%Y%m%dT%H%M%S").to_string()
}

async fn edit(app: &TestApp, organiser: &str, id: i64, title: &str, start: DateTime<Utc>) {
    let (status, body) = app
        .request(
            Method::PUT,
            &format!("/api/sessions/{id}"),
            Some(organiser),
            Some(json!({"title": title, "description": "A session for the tests.", "kind": "masterclass",
                        "series": "Early Career", "starts_at": start.to_rfc3339(),
                        "ends_at": (start + Duration::hours(1)).to_rfc3339(), "capacity": 10})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

async fn a_person_s_feed_follows_a_rename_a_reschedule_and_a_cancellation_under_one_uid(backend: Backend) {
    let app = spawn_app_with(backend, &[("TIME_ZONE", "Europe/London")]).await;
    let organiser = app.organiser().await;
    let ann = app.sign_up("Ann", "ann@oak.sch.uk").await;
    let attending = app.session(&organiser, "Phonics catch-up", 10, Duration::days(4)).await;
    app.session(&organiser, "Not Ann's session", 10, Duration::days(5)).await;
    // Ann presents one session and registers for another.
    let start = Utc::now() + Duration::days(3);
    let (status, presented) = app
        .post(
            "/api/sessions",
            Some(&organiser),
            json!({"title": "Ann's masterclass", "kind": "masterclass", "presenters": ["ann@oak.sch.uk"],
                   "starts_at": start.to_rfc3339(), "ends_at": (start + Duration::hours(1)).to_rfc3339(),
                   "capacity": 10, "status": "published"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{presented}");
    let (status, _) = app.post(&format!("/api/sessions/{attending}/registration"), Some(&ann), json!({})).await;
    assert_eq!(status, StatusCode::CREATED);
    let confirmation = app.mail_to("ann@oak.sch.uk", "You're registered").await.calendar();

    let feed = my_feed(&app, &ann).await;
    let url = feed["url"].as_str().unwrap();
    assert!(url.starts_with(&format!("{}/calendar/", app.url)) && url.ends_with(".ics"), "{feed}");
    assert_eq!(feed["webcal_url"].as_str().unwrap(), url.replacen("http://", "webcal://", 1));

    let (zone, events) = fetch_feed(&app, url).await;
    assert_eq!(zone, "Europe/London", "the feed defines the programme's time zone");
    let summaries: Vec<&str> = events.iter().map(|e| e.summary.as_str()).collect();
    assert_eq!(summaries, ["Ann's masterclass", "Phonics catch-up"], "presenting and registered, soonest first");
    let before = events.iter().find(|e| e.summary == "Phonics catch-up").unwrap();
    assert_eq!((before.status.as_str(), before.dtstart_tzid.as_str()), ("CONFIRMED", "Europe/London"));
    let (_, session) = app.get(&format!("/api/sessions/{attending}"), None).await;
    let starts: DateTime<Utc> = session["starts_at"].as_str().unwrap().parse().unwrap();
    assert_eq!(before.dtstart, london(starts));

    // A rename raises SEQUENCE in the feed and mails an update with the new title.
    edit(&app, &organiser, attending, "Phonics, caught up", starts).await;
    let update = app.mail_to("ann@oak.sch.uk", "Updated: Phonics, caught up").await.calendar();
    assert_eq!((update.method.as_str(), update.uid.as_str()), ("REQUEST", confirmation.uid.as_str()));
    assert_eq!(unescape(&update.summary), "Phonics, caught up");
    assert!(update.sequence > confirmation.sequence);
    let (_, events) = fetch_feed(&app, url).await;
    let renamed = events.iter().find(|e| e.uid == before.uid).expect("the same UID");
    assert_eq!(renamed.summary, "Phonics, caught up");
    assert!(renamed.sequence > before.sequence);

    // A reschedule: new local time, higher again.
    let later = starts + Duration::days(2) + Duration::minutes(30);
    edit(&app, &organiser, attending, "Phonics, caught up", later).await;
    app.mail_to("ann@oak.sch.uk", "New time: Phonics, caught up").await;
    let (_, events) = fetch_feed(&app, url).await;
    let moved = events.iter().find(|e| e.uid == before.uid).expect("the same UID");
    assert_eq!(moved.dtstart, london(later));
    assert!(moved.sequence > renamed.sequence);

    // A cancellation: the event stays, says CANCELLED, higher again.
    let (status, _) = app.post(&format!("/api/sessions/{attending}/cancel"), Some(&organiser), json!({})).await;
    assert_eq!(status, StatusCode::OK);
    let (_, events) = fetch_feed(&app, url).await;
    let cancelled = events.iter().find(|e| e.uid == before.uid).expect("the same UID");
    assert_eq!(cancelled.status, "CANCELLED");
    assert!(cancelled.sequence > moved.sequence);
    let other = events.iter().find(|e| e.summary == "Ann's masterclass").unwrap();
    assert_eq!((other.status.as_str(), other.sequence), ("CONFIRMED", 0), "the other session is untouched");
}
both_backends!(a_person_s_feed_follows_a_rename_a_reschedule_and_a_cancellation_under_one_uid);

async fn a_reset_feed_address_answers_404_and_no_token_shows_another_person_s_sessions(backend: Backend) {
    let app = spawn_app_with(backend, &[]).await;
    let organiser = app.organiser().await;
    let ann = app.sign_up("Ann", "ann@oak.sch.uk").await;
    let ben = app.sign_up("Ben", "ben@elm.sch.uk").await;
    let anns = app.session(&organiser, "Ann's choice", 10, Duration::days(2)).await;
    let bens = app.session(&organiser, "Ben's choice", 10, Duration::days(3)).await;
    app.post(&format!("/api/sessions/{anns}/registration"), Some(&ann), json!({})).await;
    app.post(&format!("/api/sessions/{bens}/registration"), Some(&ben), json!({})).await;

    let ann_feed = my_feed(&app, &ann).await;
    let ben_feed = my_feed(&app, &ben).await;
    assert_ne!(ann_feed["url"], ben_feed["url"]);
    assert_eq!(my_feed(&app, &ann).await["url"], ann_feed["url"], "the address stays until it is reset");
    let titles = |events: Vec<FeedEvent>| events.into_iter().map(|e| e.summary).collect::<Vec<_>>();
    assert_eq!(titles(fetch_feed(&app, ann_feed["url"].as_str().unwrap()).await.1), ["Ann's choice"]);
    assert_eq!(titles(fetch_feed(&app, ben_feed["url"].as_str().unwrap()).await.1), ["Ben's choice"]);

    // Resetting revokes the old address at once.
    let (status, fresh) = app.post("/api/me/calendars/reset", Some(&ann), json!({"scope": "mine"})).await;
    assert_eq!(status, StatusCode::OK, "{fresh}");
    assert_ne!(fresh["url"], ann_feed["url"]);
    let old = app.client.get(ann_feed["url"].as_str().unwrap()).send().await.unwrap();
    assert_eq!(old.status(), StatusCode::NOT_FOUND);
    let body: Value = old.json().await.unwrap();
    assert!(body["error"].as_str().unwrap_or_default().contains("calendar feed"), "{body}");
    assert_eq!(titles(fetch_feed(&app, fresh["url"].as_str().unwrap()).await.1), ["Ann's choice"]);
    assert_eq!(my_feed(&app, &ann).await["url"], fresh["url"]);
    assert_eq!(titles(fetch_feed(&app, ben_feed["url"].as_str().unwrap()).await.1), ["Ben's choice"], "Ben's is kept");

    // Made-up tokens, and feeds a teacher may not have.
    for path in ["/calendar/0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef.ics", "/calendar/x.ics"] {
        let res = app.client.get(format!("{}{path}", app.url)).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::NOT_FOUND, "{path}");
    }
    let (status, _) = app.post("/api/me/calendars/reset", Some(&ann), json!({"scope": "programme"})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (status, _) = app.get("/api/me/calendars", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // Organisers get the whole programme and one feed per series.
    let (_, feeds) = app.get("/api/me/calendars", Some(&organiser)).await;
    let scopes: Vec<&str> = feeds.as_array().unwrap().iter().map(|f| f["scope"].as_str().unwrap()).collect();
    assert_eq!(scopes, ["mine", "programme", "series:Early Career"]);
    let series = &feeds[2];
    assert_eq!(series["title"], "Staffroom: Early Career");
    assert_eq!(titles(fetch_feed(&app, series["url"].as_str().unwrap()).await.1), ["Ann's choice", "Ben's choice"]);

    // A removed account's feed is gone with it.
    let (status, body) =
        app.request(Method::DELETE, "/api/me", Some(&ben), Some(json!({"password": "correct horse"}))).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    let gone = app.client.get(ben_feed["url"].as_str().unwrap()).send().await.unwrap();
    assert_eq!(gone.status(), StatusCode::NOT_FOUND);
}
both_backends!(a_reset_feed_address_answers_404_and_no_token_shows_another_person_s_sessions);
