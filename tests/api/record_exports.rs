//! The record's summary and exports, on a modelled record: one session
//! attended live, one caught up on by replay only, and a course added by
//! hand, linked to needs and a priority, with a reflection, evidence and a
//! certificate. Another person's record sits beside it and must never leak.

use chrono::{DateTime, Datelike, Duration, NaiveDate, TimeZone, Utc};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::{
    attendance::{exec, user_id},
    both_backends,
    helpers::{spawn_app, Backend, TestApp},
};

const MIN: i64 = 60_000;

/// Noon UTC `days` ago: the same day in any zone near London.
fn days_ago(days: i64) -> DateTime<Utc> {
    let day = Utc::now().date_naive() - Duration::days(days);
    Utc.from_utc_datetime(&day.and_hms_opt(12, 0, 0).unwrap())
}

/// An hour's session that started (and went live) at `at`.
async fn past_session(app: &TestApp, organiser: &str, title: &str, at: DateTime<Utc>) -> i64 {
    let id = app.session(organiser, title, 30, Duration::days(1)).await;
    let (start, live) = (at.timestamp(), at.timestamp_millis());
    exec(
        app,
        format!(
            "update sessions set starts_at = {start}, ends_at = {}, live_at = {live}, ended_at = {} where id = {id}",
            start + 3600,
            live + 60 * MIN
        ),
    )
    .await;
    id
}

async fn put(app: &TestApp, path: &str, token: &str, body: Value) -> Value {
    let (status, body) = app.request(Method::PUT, path, Some(token), Some(body)).await;
    assert_eq!(status, StatusCode::OK, "PUT {path}: {body}");
    body
}

async fn goal(app: &TestApp, token: &str, kind: &str, title: &str) -> i64 {
    let (status, body) = app.post("/api/me/goals", Some(token), json!({"kind": kind, "title": title})).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    body["id"].as_i64().unwrap()
}

struct Modelled {
    ann: String,
    ben: String,
    live_at: DateTime<Utc>,
    replay_at: DateTime<Utc>,
    course_at: DateTime<Utc>,
    live_session: i64,
    replay_session: i64,
    course_entry: i64,
    live_entry: i64,
}

/// Ann's record:
/// - "Adaptive teaching", 40 days ago: joined at 0, left at 52 of the hour:
///   52 minutes live (attended); linked to her need "Behaviour management";
///   a reflection, a link and a certificate;
/// - "Oracy in science", 100 days ago: never there, watched 0–10, 5–15 and
///   20–35 of its 40-minute recording: 30 minutes by replay; unlinked;
/// - a 90-minute course, 10 days ago, added by hand with a formula for a
///   title, linked to both needs and her priority.
///
/// Ben attended "Adaptive teaching" for 10 minutes and added his own reading.
async fn modelled_record(app: &TestApp) -> Modelled {
    let organiser = app.organiser().await;
    let ann = app.sign_up("Ann Archer", "ann@oak.sch.uk").await;
    let ben = app.sign_up("Ben Baker", "ben@elm.sch.uk").await;
    let (ann_id, ben_id) = (user_id(app, "ann@oak.sch.uk").await, user_id(app, "ben@elm.sch.uk").await);
    let (live_at, replay_at, course_at) = (days_ago(40), days_ago(100), days_ago(10));

    let live_session = past_session(app, &organiser, "Adaptive teaching", live_at).await;
    let t0 = live_at.timestamp_millis();
    for (user, kind, minute) in [(ann_id, "join", 0), (ann_id, "leave", 52), (ben_id, "join", 5), (ben_id, "leave", 15)]
    {
        exec(
            app,
            format!(
                "insert into room_events (session_id, user_id, kind, reason, at) values ({live_session}, {user}, '{kind}', null, {})",
                t0 + minute * MIN
            ),
        )
        .await;
    }

    let replay_session = past_session(app, &organiser, "Oracy in science", replay_at).await;
    exec(
        app,
        format!(
            "insert into recordings (id, session_id, status, started_at, duration_ms) values ('recB', {replay_session}, 'ready', {}, {})",
            replay_at.timestamp_millis(),
            40 * MIN
        ),
    )
    .await;
    for (start, end) in [(20, 35), (0, 10), (5, 15)] {
        exec(
            app,
            format!(
                "insert into replay_segments (recording_id, user_id, start_ms, end_ms, updated_at) values ('recB', {ann_id}, {}, {}, {})",
                start * MIN,
                end * MIN,
                (replay_at + Duration::days(2)).timestamp_millis()
            ),
        )
        .await;
    }

    let behaviour = goal(app, &ann, "need", "Behaviour management").await;
    let questioning = goal(app, &ann, "need", "Questioning").await;
    let reading = goal(app, &ann, "priority", "Reading across the curriculum").await;
    let (status, course) = app
        .post(
            "/api/me/record/entries",
            Some(&ann),
            json!({"kind": "course", "title": "=HYPERLINK(\"http://evil.example\")", "provider": "Local authority",
                   "date": course_at.date_naive(), "minutes": 90}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{course}");
    let course_entry = course["id"].as_i64().unwrap();
    put(
        app,
        &format!("/api/me/record/entries/{course_entry}/goals"),
        &ann,
        json!({"goal_ids": [behaviour, questioning, reading]}),
    )
    .await;

    let (_, record) = app.get("/api/me/record", Some(&ann)).await;
    let entry_of = |session: i64| {
        record["entries"].as_array().unwrap().iter().find(|e| e["session_id"] == session).unwrap()["id"]
            .as_i64()
            .unwrap()
    };
    let live_entry = entry_of(live_session);
    put(app, &format!("/api/me/record/entries/{live_entry}/goals"), &ann, json!({"goal_ids": [behaviour]})).await;
    put(
        app,
        &format!("/api/me/record/entries/{live_entry}/reflection"),
        &ann,
        json!({"learned": "Chunk instructions", "keep_doing": "Cold calling", "to_grow": "Wait time",
               "to_change": "-fewer worksheets", "impact": "Calmer starts to lessons"}),
    )
    .await;
    let (status, body) = app
        .post(
            &format!("/api/me/record/entries/{live_entry}/evidence"),
            Some(&ann),
            json!({"url": "https://oak.example/plans/adaptive"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    exec(
        app,
        format!(
            "insert into certificates (id, user_id, session_id, holder_name, session_title, session_starts_at, minutes,
                 credential, issued_at)
             values ('c0ffee00c0ffee00c0ffee00c0ffee00', {ann_id}, {live_session}, 'Ann Archer', 'Adaptive teaching',
                 {}, 52, 'x.y.z', {})",
            live_at.timestamp(),
            live_at.timestamp()
        ),
    )
    .await;

    let ben_goal = goal(app, &ben, "need", "Ben's secret need").await;
    let (status, body) = app
        .post(
            "/api/me/record/entries",
            Some(&ben),
            json!({"kind": "reading", "title": "Ben's own reading", "date": days_ago(3).date_naive(),
                   "minutes": 45, "goal_ids": [ben_goal]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    Modelled { ann, ben, live_at, replay_at, course_at, live_session, replay_session, course_entry, live_entry }
}

/// The term a day falls in, written out independently of the server.
fn term(day: NaiveDate) -> (String, String) {
    let (season, start) = match day.month() {
        1..=3 => ("Spring", day.year() - 1),
        4..=8 => ("Summer", day.year() - 1),
        _ => ("Autumn", day.year()),
    };
    (format!("{season} {}", day.year()), format!("{start}/{:02}", (start + 1) % 100))
}

async fn the_summary_adds_up_by_need_priority_term_kind_and_month(backend: Backend) {
    let app = spawn_app(backend).await;
    let m = modelled_record(&app).await;
    let (status, s) = app.get("/api/me/record/summary", Some(&m.ann)).await;
    assert_eq!(status, StatusCode::OK, "{s}");
    assert_eq!((s["total_minutes"].as_i64(), s["total_entries"].as_i64()), (Some(172), Some(3)));
    assert_eq!(s["time_zone"], "Europe/London");

    let goals = |totals: &Value| -> Vec<(String, i64, i64)> {
        totals["goals"]
            .as_array()
            .unwrap()
            .iter()
            .map(|g| {
                (
                    g["title"].as_str().unwrap().to_string(),
                    g["minutes"].as_i64().unwrap(),
                    g["entries"].as_i64().unwrap(),
                )
            })
            .collect()
    };
    // The course is linked to both needs: it counts in full under each.
    assert_eq!(goals(&s["by_need"]), [("Behaviour management".into(), 142, 2), ("Questioning".into(), 90, 1)]);
    assert_eq!(
        (s["by_need"]["unlinked_minutes"].as_i64(), s["by_need"]["unlinked_entries"].as_i64()),
        (Some(30), Some(1))
    );
    assert_eq!(goals(&s["by_priority"]), [("Reading across the curriculum".into(), 90, 1)]);
    assert_eq!(s["by_priority"]["unlinked_minutes"], 82);

    let kinds: Vec<(String, i64)> = s["by_kind"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| (k["kind"].as_str().unwrap().to_string(), k["minutes"].as_i64().unwrap()))
        .collect();
    assert_eq!(
        kinds,
        [
            ("session_live".into(), 52),
            ("session_replay".into(), 30),
            ("course".into(), 90),
            ("reading".into(), 0),
            ("coaching".into(), 0),
            ("other".into(), 0)
        ]
    );

    let mut expected_terms: Vec<((String, String), i64)> = vec![];
    for (at, minutes) in [(m.course_at, 90), (m.live_at, 52), (m.replay_at, 30)] {
        let t = term(at.date_naive());
        match expected_terms.iter_mut().find(|(k, _)| *k == t) {
            Some((_, total)) => *total += minutes,
            None => expected_terms.push((t, minutes)),
        }
    }
    let terms: Vec<((String, String), i64)> = s["by_term"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            let key = (t["label"].as_str().unwrap().to_string(), t["academic_year"].as_str().unwrap().to_string());
            (key, t["minutes"].as_i64().unwrap())
        })
        .collect();
    assert_eq!(terms, expected_terms, "newest first");

    let months = s["timeline"].as_array().unwrap();
    assert_eq!(months.len(), 12, "{months:?}");
    let this_month = Utc::now().format("%Y-%m").to_string();
    assert_eq!(months[11]["month"], this_month.as_str());
    let month_of = |at: DateTime<Utc>| at.format("%Y-%m").to_string();
    for m_ in months {
        let key = m_["month"].as_str().unwrap();
        let expected: i64 = [(m.course_at, 90), (m.live_at, 52), (m.replay_at, 30)]
            .iter()
            .filter(|(at, _)| month_of(*at) == key)
            .map(|(_, minutes)| minutes)
            .sum();
        assert_eq!(m_["minutes"].as_i64(), Some(expected), "{key}");
    }
    assert_eq!(months.iter().map(|m| m["minutes"].as_i64().unwrap()).sum::<i64>(), 172);
    assert!(months.iter().any(|m| m["minutes"] == 0), "empty months are included");

    // Ben's summary is his alone.
    let (_, theirs) = app.get("/api/me/record/summary", Some(&m.ben)).await;
    assert_eq!(theirs["total_minutes"], 45 + 10);
    assert_eq!(goals(&theirs["by_need"]), [("Ben's secret need".into(), 45, 1)]);

    // The whole record carries the same summary, for a page showing both.
    let (_, whole) = app.get("/api/me/record", Some(&m.ann)).await;
    assert_eq!(whole["summary"], s);
}
both_backends!(the_summary_adds_up_by_need_priority_term_kind_and_month);

async fn the_csv_has_one_row_per_entry_with_formula_cells_defused(backend: Backend) {
    let app = spawn_app(backend).await;
    let m = modelled_record(&app).await;
    let res = app.client.get(format!("{}/api/me/record.csv", app.url)).bearer_auth(&m.ann).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert!(res.headers()["content-type"].to_str().unwrap().starts_with("text/csv"));
    let disposition = res.headers()["content-disposition"].to_str().unwrap().to_string();
    assert!(disposition.starts_with("attachment;") && disposition.contains(".csv"), "{disposition}");
    let text = res.text().await.unwrap();
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let headers: Vec<String> = reader.headers().unwrap().iter().map(str::to_string).collect();
    assert_eq!(
        headers,
        [
            "date",
            "kind",
            "title",
            "provider",
            "minutes",
            "how",
            "status",
            "needs",
            "priorities",
            "learned",
            "keep_doing",
            "to_grow",
            "to_change",
            "impact",
            "evidence",
            "certificate_url"
        ]
    );
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), 3, "{text}");
    let col = |row: &csv::StringRecord, name: &str| row[headers.iter().position(|h| h == name).unwrap()].to_string();
    // Newest first: the course, then the live session, then the replay.
    let course = &rows[0];
    assert_eq!(col(course, "date"), m.course_at.date_naive().to_string());
    assert_eq!(col(course, "kind"), "course");
    assert_eq!(col(course, "title"), "'=HYPERLINK(\"http://evil.example\")", "the formula is defused");
    assert_eq!(col(course, "minutes"), "90");
    assert_eq!(col(course, "needs"), "Behaviour management; Questioning");
    assert_eq!(col(course, "priorities"), "Reading across the curriculum");
    let live = &rows[1];
    assert_eq!(
        (col(live, "title"), col(live, "minutes"), col(live, "how"), col(live, "status")),
        ("Adaptive teaching".into(), "52".into(), "live".into(), "attended".into())
    );
    assert_eq!(col(live, "provider"), "", "no presenters");
    assert_eq!(col(live, "learned"), "Chunk instructions");
    assert_eq!(col(live, "to_change"), "'-fewer worksheets");
    assert_eq!(col(live, "impact"), "Calmer starts to lessons");
    assert_eq!(col(live, "evidence"), "https://oak.example/plans/adaptive");
    assert!(col(live, "certificate_url").ends_with("/certificate.html?id=c0ffee00c0ffee00c0ffee00c0ffee00"));
    assert!(col(live, "certificate_url").starts_with("http"));
    let replay = &rows[2];
    assert_eq!((col(replay, "minutes"), col(replay, "how")), ("30".into(), "replay".into()));
    assert_eq!((col(replay, "needs"), col(replay, "certificate_url")), (String::new(), String::new()));
    assert!(!text.contains("Ben"), "nothing of Ben's: {text}");
}
both_backends!(the_csv_has_one_row_per_entry_with_formula_cells_defused);

async fn the_json_export_holds_everything_owned_and_nothing_of_anyone_else(backend: Backend) {
    let app = spawn_app(backend).await;
    let m = modelled_record(&app).await;
    let res = app.client.get(format!("{}/api/me/record.json", app.url)).bearer_auth(&m.ann).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert!(res.headers()["content-disposition"].to_str().unwrap().starts_with("attachment;"));
    let doc: Value = res.json().await.unwrap();
    assert_eq!((doc["format"].as_str(), doc["version"].as_i64()), (Some("staffroom-record"), Some(1)));
    assert!(DateTime::parse_from_rfc3339(doc["exported_at"].as_str().unwrap()).is_ok());
    assert_eq!(
        doc["profile"],
        json!({"name": "Ann Archer", "email": "ann@oak.sch.uk", "school": "Oak Primary", "stage": "ect",
               "time_zone": "Europe/London"})
    );
    let goals: Vec<&str> = doc["goals"].as_array().unwrap().iter().map(|g| g["title"].as_str().unwrap()).collect();
    assert_eq!(goals, ["Behaviour management", "Questioning", "Reading across the curriculum"]);
    let entries = doc["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 3);
    let live = entries.iter().find(|e| e["id"] == m.live_entry).unwrap();
    assert_eq!(live["session_id"], m.live_session);
    assert_eq!(live["reflection"]["learned"], "Chunk instructions");
    assert_eq!(live["reflection"]["impact"], "Calmer starts to lessons");
    assert_eq!(live["evidence"][0]["url"], "https://oak.example/plans/adaptive");
    assert_eq!(live["certificate_id"], "c0ffee00c0ffee00c0ffee00c0ffee00");
    assert_eq!(live["goal_ids"].as_array().unwrap().len(), 1);
    let course = entries.iter().find(|e| e["id"] == m.course_entry).unwrap();
    assert_eq!((course["kind"].as_str(), course["minutes"].as_i64()), (Some("course"), Some(90)));
    assert_eq!(course["goal_ids"].as_array().unwrap().len(), 3);
    assert!(entries.iter().any(|e| e["session_id"] == m.replay_session && e["how"] == "replay"));
    let cert = &doc["certificates"][0];
    assert_eq!((cert["entry_id"].as_i64(), cert["session_id"].as_i64()), (Some(m.live_entry), Some(m.live_session)));
    assert!(cert["url"].as_str().unwrap().ends_with("/certificate.html?id=c0ffee00c0ffee00c0ffee00c0ffee00"));
    assert_eq!(doc["summary"]["total_minutes"], 172);

    let text = doc.to_string();
    for theirs in ["Ben", "ben@elm.sch.uk", "secret", "Ben's own reading"] {
        assert!(!text.contains(theirs), "{theirs} leaked into Ann's export");
    }
    // And Ben's export holds his reading and his 10 live minutes, nothing of Ann's.
    let (_, bens) = app.get("/api/me/record.json", Some(&m.ben)).await;
    assert_eq!(bens["profile"]["email"], "ben@elm.sch.uk");
    assert_eq!(bens["entries"].as_array().unwrap().len(), 2);
    let text = bens.to_string();
    for anns in ["Ann", "ann@oak.sch.uk", "Behaviour management", "Chunk instructions", "HYPERLINK", "Oracy", "c0ffee"]
    {
        assert!(!text.contains(anns), "{anns} leaked into Ben's export");
    }
}
both_backends!(the_json_export_holds_everything_owned_and_nothing_of_anyone_else);

// ------------------------------------------------------------ xAPI checks

/// An absolute IRI: a scheme, then something after it.
fn absolute_iri(s: &str) -> bool {
    url::Url::parse(s).map(|u| !u.cannot_be_a_base() || u.scheme() == "mailto" || u.scheme() == "urn").unwrap_or(false)
        && !s.contains(' ')
}

/// A language map: RFC 5646-looking keys to strings, at least one.
fn language_map(v: &Value) -> bool {
    v.as_object().is_some_and(|m| {
        !m.is_empty()
            && m.iter().all(|(k, v)| {
                v.is_string()
                    && k.split('-')
                        .all(|p| !p.is_empty() && p.len() <= 8 && p.chars().all(|c| c.is_ascii_alphanumeric()))
            })
    })
}

/// An ISO 8601 duration (`P[nY][nM][nW][nD][T[nH][nM][n[.n]S]]`) in ms,
/// for the time part; None if it does not match.
fn iso_duration_ms(s: &str) -> Option<i64> {
    let rest = s.strip_prefix('P')?;
    let (date, time) = match rest.split_once('T') {
        Some((d, t)) if !t.is_empty() => (d, Some(t)),
        Some(_) => return None,
        None => (rest, None),
    };
    if !date.is_empty() {
        return None; // we only ever write time parts
    }
    let mut ms = 0f64;
    let mut number = String::new();
    // Units in order (H, M, S), each at most once, a number before each,
    // and a fraction only on the seconds.
    let mut next_unit = 0;
    let mut seen = false;
    for c in time?.chars() {
        if c.is_ascii_digit() || (c == '.' && !number.contains('.')) {
            number.push(c);
            continue;
        }
        let (position, unit) = match c {
            'H' => (0, 3_600_000.0),
            'M' => (1, 60_000.0),
            'S' => (2, 1000.0),
            _ => return None,
        };
        if number.is_empty() || position < next_unit || (number.contains('.') && c != 'S') {
            return None;
        }
        ms += number.parse::<f64>().ok()? * unit;
        number.clear();
        next_unit = position + 1;
        seen = true;
    }
    (number.is_empty() && seen).then_some(ms.round() as i64)
}

/// The xAPI 1.0.3 statement rules we rely on.
fn check_statement(s: &Value) {
    let id = s["id"].as_str().expect("an id");
    assert!(uuid::Uuid::parse_str(id).is_ok() && id.len() == 36, "id is a UUID: {id}");

    let actor = &s["actor"];
    assert_eq!(actor["objectType"], "Agent");
    let ifis = ["mbox", "mbox_sha1sum", "openid", "account"].iter().filter(|k| actor.get(**k).is_some()).count();
    assert_eq!(ifis, 1, "an Agent has exactly one inverse functional identifier: {actor}");
    assert!(actor["mbox"].as_str().unwrap().starts_with("mailto:"), "{actor}");
    assert!(actor["name"].is_string());

    assert!(absolute_iri(s["verb"]["id"].as_str().unwrap()), "{}", s["verb"]);
    assert!(language_map(&s["verb"]["display"]), "{}", s["verb"]);

    let object = &s["object"];
    assert_eq!(object["objectType"], "Activity");
    assert!(absolute_iri(object["id"].as_str().unwrap()), "{object}");
    assert!(language_map(&object["definition"]["name"]), "{object}");
    if let Some(t) = object["definition"].get("type") {
        assert!(absolute_iri(t.as_str().unwrap()));
    }

    let duration = s["result"]["duration"].as_str().unwrap();
    assert!(iso_duration_ms(duration).is_some(), "{duration} is an ISO 8601 duration");
    for ext in [&s["result"]["extensions"], &s["context"]["extensions"]] {
        if let Some(map) = ext.as_object() {
            assert!(map.keys().all(|k| absolute_iri(k)), "extension keys are IRIs: {ext}");
        }
    }
    assert!(DateTime::parse_from_rfc3339(s["timestamp"].as_str().unwrap()).is_ok(), "{}", s["timestamp"]);
    assert_eq!(s["context"]["platform"], "Staffroom");
}

#[test]
fn the_duration_check_accepts_iso_8601_and_refuses_the_rest() {
    assert_eq!(iso_duration_ms("PT52M"), Some(52 * MIN));
    assert_eq!(iso_duration_ms("PT1H30M"), Some(90 * MIN));
    assert_eq!(iso_duration_ms("PT12.5S"), Some(12_500));
    for bad in ["52M", "PT", "PTM", "PT5M1H", "PT1.5M", "P5M", "PT5X", "PT5"] {
        assert_eq!(iso_duration_ms(bad), None, "{bad}");
    }
}

async fn xapi_statements_follow_the_spec_and_the_video_profile(backend: Backend) {
    let app = spawn_app(backend).await;
    let m = modelled_record(&app).await;
    let res = app.client.get(format!("{}/api/me/record/xapi.json", app.url)).bearer_auth(&m.ann).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let statements: Vec<Value> = res.json().await.unwrap();
    assert_eq!(statements.len(), 3, "{statements:#?}");
    for s in &statements {
        check_statement(s);
        assert_eq!(s["actor"]["mbox"], "mailto:ann@oak.sch.uk");
        assert_eq!(s["actor"]["name"], "Ann Archer");
    }
    let by_verb = |verb: &str| statements.iter().find(|s| s["verb"]["id"] == verb).unwrap_or_else(|| panic!("{verb}"));

    let live = by_verb("http://adlnet.gov/expapi/verbs/attended");
    assert_eq!(live["verb"]["display"]["en-GB"], "attended");
    assert!(live["object"]["id"].as_str().unwrap().ends_with(&format!("/session.html?id={}", m.live_session)));
    assert_eq!(live["object"]["definition"]["name"]["en-GB"], "Adaptive teaching");
    assert_eq!(live["object"]["definition"]["type"], "http://adlnet.gov/expapi/activities/meeting");
    assert_eq!(iso_duration_ms(live["result"]["duration"].as_str().unwrap()), Some(52 * MIN));
    assert_eq!(live["result"]["duration"], "PT52M");
    assert_eq!(DateTime::parse_from_rfc3339(live["timestamp"].as_str().unwrap()).unwrap(), m.live_at);

    let video = by_verb("http://adlnet.gov/expapi/verbs/terminated");
    assert_eq!(video["object"]["definition"]["type"], "https://w3id.org/xapi/video/activity-type/video");
    assert!(video["object"]["id"].as_str().unwrap().ends_with("/replay.html?id=recB"));
    // 0–10, 5–15 and 20–35 minutes merge to 0–15 and 20–35: 30 of 40 minutes.
    let result = &video["result"];
    assert_eq!(result["extensions"]["https://w3id.org/xapi/video/extensions/played-segments"], "0[.]900[,]1200[.]2100");
    assert_eq!(result["extensions"]["https://w3id.org/xapi/video/extensions/progress"], 0.75);
    assert_eq!(iso_duration_ms(result["duration"].as_str().unwrap()), Some(30 * MIN));
    let context = &video["context"];
    assert_eq!(context["extensions"]["https://w3id.org/xapi/video/extensions/length"], 2400.0);
    let session_id = context["extensions"]["https://w3id.org/xapi/video/extensions/session-id"].as_str().unwrap();
    assert!(uuid::Uuid::parse_str(session_id).is_ok());
    assert_eq!(context["contextActivities"]["category"][0]["id"], "https://w3id.org/xapi/video");
    assert!(context["contextActivities"]["parent"][0]["id"]
        .as_str()
        .unwrap()
        .ends_with(&format!("/session.html?id={}", m.replay_session)));
    let watched_at = DateTime::parse_from_rfc3339(video["timestamp"].as_str().unwrap()).unwrap();
    assert_eq!(watched_at, m.replay_at + Duration::days(2), "when the replay was last watched");

    let course = by_verb("http://adlnet.gov/expapi/verbs/completed");
    assert_eq!(course["result"]["duration"], "PT1H30M");
    assert_eq!(course["object"]["definition"]["type"], "http://adlnet.gov/expapi/activities/course");
    assert!(course["object"]["id"].as_str().unwrap().ends_with(&format!("/api/me/record/entries/{}", m.course_entry)));

    // Ids are stable: exporting again gives the same statements the same ids.
    let ids = |list: &[Value]| list.iter().map(|s| s["id"].as_str().unwrap().to_string()).collect::<Vec<_>>();
    let (_, again) = app.get("/api/me/record/xapi.json", Some(&m.ann)).await;
    assert_eq!(ids(again.as_array().unwrap()), ids(&statements));
    let mut unique = ids(&statements);
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 3);

    // Ben's statements: his 10 live minutes and his reading, as him.
    let (_, bens) = app.get("/api/me/record/xapi.json", Some(&m.ben)).await;
    let bens = bens.as_array().unwrap();
    assert_eq!(bens.len(), 2);
    for s in bens {
        check_statement(s);
        assert_eq!(s["actor"]["mbox"], "mailto:ben@elm.sch.uk");
        assert!(!ids(&statements).contains(&s["id"].as_str().unwrap().to_string()));
    }
    let text = Value::Array(bens.clone()).to_string();
    assert!(!text.contains("ann@") && !text.contains("recB") && !text.contains("HYPERLINK"), "{text}");
    assert!(text.contains("\"PT10M\""), "{text}");
}
both_backends!(xapi_statements_follow_the_spec_and_the_video_profile);

async fn signed_out_there_is_no_record_to_export(backend: Backend) {
    let app = spawn_app(backend).await;
    for path in ["/api/me/record/summary", "/api/me/record.csv", "/api/me/record.json", "/api/me/record/xapi.json"] {
        let (status, body) = app.get(path, None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{path}");
        assert!(body["error"].is_string(), "{path}: {body}");
    }
}
both_backends!(signed_out_there_is_no_record_to_export);
