//! Attendance from the durable rows: a session modelled minute by minute
//! (a drop and rejoin, a double connection, a breakout move, a join never
//! closed, replay segments overlapping and out of order), checked against
//! the report, the threshold and the CSV.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::{
    both_backends,
    helpers::{spawn_app, Backend, TestApp},
};

pub(crate) const T0: i64 = 1_800_000_000_000;
pub(crate) const MIN: i64 = 60_000;

/// Runs one statement in its own transaction: tests build history row by row.
pub(crate) async fn exec(app: &TestApp, sql: String) {
    let mut tx = app.state.db.begin().await.unwrap();
    sqlx::query(&sql).execute(&mut *tx).await.unwrap();
    tx.commit().await.unwrap();
}

pub(crate) async fn user_id(app: &TestApp, email: &str) -> i64 {
    sqlx::query_scalar("select id from users where email = $1").bind(email).fetch_one(&app.state.db.read).await.unwrap()
}

/// Joins and leaves at minutes after T0 (a leave carries its reason).
pub(crate) async fn events(app: &TestApp, session: i64, user: i64, rows: &[(&str, Option<&str>, f64)]) {
    for (kind, reason, minute) in rows {
        let reason = reason.map(|r| format!("'{r}'")).unwrap_or("null".into());
        let at = T0 + (minute * MIN as f64) as i64;
        exec(
            app,
            format!(
                "insert into room_events (session_id, user_id, kind, reason, at) values ({session}, {user}, '{kind}', {reason}, {at})"
            ),
        )
        .await;
    }
}

/// Models a session held from T0 to T0 + 60 min: scheduled then (the
/// programme keeps seconds), live at T0 and ended at its scheduled end.
pub(crate) async fn went_live_for_an_hour_at_t0(app: &TestApp, id: i64) {
    let (start, end) = (T0, T0 + 60 * MIN);
    let sql = format!(
        "update sessions set starts_at = {}, ends_at = {}, live_at = {start}, ended_at = {end} where id = {id}",
        start / 1000,
        end / 1000
    );
    exec(app, sql).await;
}

pub(crate) struct Modelled {
    pub id: i64,
    pub organiser: String,
    pub presenter: String,
    pub attendee: String,
}

/// An hour's session that went live at T0 and ended at T0 + 60 min:
/// - Ann: dropped at 20 and rejoined in the same ms, dropped at 30, back at
///   32, left at 50: 48 min; in Group 1 from 35 to 45;
/// - Ben: two connections, 10 to 40 and 15 to 55: 45 min, exactly 75 %;
/// - Cat: joined at 50 and was never closed: runs to the end, 10 min;
/// - Dan: never came, watched 30 of the 40-min recording (segments
///   overlapping and out of order, and a recording still running ignored);
/// - Eve: registered, nothing.
pub(crate) async fn modelled_session(app: &TestApp) -> Modelled {
    let organiser = app.organiser().await;
    let id = app.session(&organiser, "Adaptive teaching", 30, chrono::Duration::days(1)).await;
    let presenter = app.sign_up("Priya Presenter", "priya@staffroom.test").await;
    exec(app, format!("insert into session_presenters (session_id, user_id) select {id}, id from users where email = 'priya@staffroom.test'")).await;
    let mut attendee = String::new();
    for name in ["Ann", "Ben", "Cat", "Dan", "=Eve"] {
        let email = format!("{}@oak.sch.uk", name.trim_start_matches('=').to_lowercase());
        let token = app.sign_up(name, &email).await;
        let (status, body) = app.post(&format!("/api/sessions/{id}/registration"), Some(&token), json!({})).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        if name == "Ann" {
            attendee = token;
        }
    }
    went_live_for_an_hour_at_t0(app, id).await;
    let ann = user_id(app, "ann@oak.sch.uk").await;
    events(
        app,
        id,
        ann,
        &[
            ("join", None, 0.0),
            ("leave", Some("dropped"), 20.0),
            ("join", None, 20.0),
            ("leave", Some("dropped"), 30.0),
            ("join", None, 32.0),
            ("leave", Some("left"), 50.0),
        ],
    )
    .await;
    for (group, minute) in [("'Group 1'", 35), ("null", 45)] {
        exec(
            app,
            format!(
                "insert into breakout_moves (session_id, user_id, group_name, at) values ({id}, {ann}, {group}, {})",
                T0 + minute * MIN
            ),
        )
        .await;
    }
    let ben = user_id(app, "ben@oak.sch.uk").await;
    events(
        app,
        id,
        ben,
        &[("join", None, 10.0), ("join", None, 15.0), ("leave", Some("dropped"), 40.0), ("leave", Some("left"), 55.0)],
    )
    .await;
    let cat = user_id(app, "cat@oak.sch.uk").await;
    events(app, id, cat, &[("join", None, 50.0)]).await;

    let dan = user_id(app, "dan@oak.sch.uk").await;
    exec(app, format!("insert into recordings (id, session_id, status, started_at, duration_ms) values ('rec1', {id}, 'ready', {T0}, {})", 40 * MIN)).await;
    exec(
        app,
        format!("insert into recordings (id, session_id, status, started_at) values ('rec2', {id}, 'recording', {T0})"),
    )
    .await;
    for (rec, start, end) in [("rec1", 20, 35), ("rec1", 0, 10), ("rec1", 5, 15), ("rec1", 30, 32), ("rec2", 0, 50)] {
        exec(
            app,
            format!(
                "insert into replay_segments (recording_id, user_id, start_ms, end_ms, updated_at) values ('{rec}', {dan}, {}, {}, 0)",
                start * MIN,
                end * MIN
            ),
        )
        .await;
    }
    Modelled { id, organiser, presenter, attendee }
}

fn person<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["people"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == name)
        .unwrap_or_else(|| panic!("{name} in {report}"))
}

fn row(report: &Value, name: &str) -> (i64, i64, i64, String, Value) {
    let p = person(report, name);
    (
        p["minutes_live"].as_i64().unwrap(),
        p["minutes_in_groups"].as_i64().unwrap(),
        p["minutes_replayed"].as_i64().unwrap(),
        p["status"].as_str().unwrap().to_string(),
        p["how"].clone(),
    )
}

async fn attendance_merges_rejoins_double_connections_groups_and_replays(backend: Backend) {
    let app = spawn_app(backend).await;
    let s = modelled_session(&app).await;
    let (status, report) = app.get(&format!("/api/sessions/{}/attendance", s.id), Some(&s.organiser)).await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!(report["threshold_percent"], 75);
    assert_eq!(report["scheduled_minutes"], 60);
    let names: Vec<&str> = report["people"].as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["=Eve", "Ann", "Ben", "Cat", "Dan"]);
    assert_eq!(row(&report, "Ann"), (48, 10, 0, "attended".into(), json!("live")));
    assert_eq!(row(&report, "Ben"), (45, 0, 0, "attended".into(), json!("live")));
    assert_eq!(row(&report, "Cat"), (10, 0, 0, "partly".into(), json!("live")));
    assert_eq!(row(&report, "Dan"), (0, 0, 30, "attended".into(), json!("replay")));
    assert_eq!(row(&report, "=Eve"), (0, 0, 0, "absent".into(), Value::Null));
    let ann = person(&report, "Ann");
    assert_eq!((ann["joined_at"].as_i64(), ann["left_at"].as_i64()), (Some(T0), Some(T0 + 50 * MIN)));
    assert_eq!(person(&report, "Cat")["left_at"].as_i64(), Some(T0 + 60 * MIN), "closed at the session's end");
    assert_eq!(ann["school"], "Oak Primary");

    let steps: Vec<(i64, i64)> = report["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| ((s["at"].as_i64().unwrap() - T0) / MIN, s["present"].as_i64().unwrap()))
        .collect();
    // At 50 Ann leaves as Cat arrives: no change, no point.
    assert_eq!(steps, [(0, 1), (10, 2), (30, 1), (32, 2), (55, 1), (60, 0)]);

    // The presenter may read it too.
    let (status, _) = app.get(&format!("/api/sessions/{}/attendance", s.id), Some(&s.presenter)).await;
    assert_eq!(status, StatusCode::OK);

    // Ann's own record has the session, credited with her live minutes and her group.
    let (status, mine) = app.get("/api/me/attendance", Some(&s.attendee)).await;
    assert_eq!(status, StatusCode::OK, "{mine}");
    assert_eq!(mine["total_minutes_credited"], 48);
    let entry = &mine["entries"][0];
    assert_eq!(entry["title"], "Adaptive teaching");
    assert_eq!(entry["presenters"], json!(["Priya Presenter"]));
    assert_eq!((entry["status"].as_str(), entry["how"].as_str()), (Some("attended"), Some("live")));
    assert_eq!((entry["minutes_live"].as_i64(), entry["minutes_in_groups"].as_i64()), (Some(48), Some(10)));
    assert_eq!(entry["groups"], json!(["Group 1"]));
    // The presenter attended nothing; signed out, there is no record to read.
    let (_, theirs) = app.get("/api/me/attendance", Some(&s.presenter)).await;
    assert_eq!(theirs, json!({"total_minutes_credited": 0, "entries": []}));
    let (status, _) = app.get("/api/me/attendance", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}
both_backends!(attendance_merges_rejoins_double_connections_groups_and_replays);

async fn the_threshold_decides_attended_or_partly_at_the_boundary(backend: Backend) {
    let app = spawn_app(backend).await;
    let s = modelled_session(&app).await;
    let path = format!("/api/sessions/{}/attendance-threshold", s.id);
    let (status, body) = app.request(Method::PUT, &path, Some(&s.organiser), Some(json!({"percent": 80}))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["threshold_percent"], 80);
    let (_, report) = app.get(&format!("/api/sessions/{}/attendance", s.id), Some(&s.organiser)).await;
    assert_eq!(report["threshold_percent"], 80);
    // Ann's 48 of 60 is exactly 80 %; Ben's 45 is not any more.
    assert_eq!(row(&report, "Ann").3, "attended");
    assert_eq!(row(&report, "Ben").3, "partly");
    // Dan's 30 of 40 replayed is 75 %.
    assert_eq!((row(&report, "Dan").3, row(&report, "Dan").4), ("partly".to_string(), json!("replay")));

    for bad in [json!({"percent": 0}), json!({"percent": 101}), json!({"percent": "most"}), json!({})] {
        let (status, body) = app.request(Method::PUT, &path, Some(&s.organiser), Some(bad.clone())).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}: {body}");
        assert_eq!(body["field"], "percent", "{body}");
    }
    let (_, report) = app.get(&format!("/api/sessions/{}/attendance", s.id), Some(&s.organiser)).await;
    assert_eq!(report["threshold_percent"], 80, "refused changes change nothing");
}
both_backends!(the_threshold_decides_attended_or_partly_at_the_boundary);

async fn only_organisers_and_presenters_see_attendance(backend: Backend) {
    let app = spawn_app(backend).await;
    let s = modelled_session(&app).await;
    let (status, body) = app.get(&format!("/api/sessions/{}/attendance", s.id), Some(&s.attendee)).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(body["error"].as_str().unwrap().contains("organisers"), "{body}");
    let (status, _) = app.get(&format!("/api/sessions/{}/attendance.csv", s.id), Some(&s.attendee)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = app.get(&format!("/api/sessions/{}/attendance", s.id), None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, body) = app.get("/api/sessions/999999/attendance", Some(&s.organiser)).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    // Presenters read, but only organisers set the threshold.
    let path = format!("/api/sessions/{}/attendance-threshold", s.id);
    let (status, _) = app.request(Method::PUT, &path, Some(&s.presenter), Some(json!({"percent": 50}))).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = app
        .request(
            Method::PUT,
            "/api/sessions/999999/attendance-threshold",
            Some(&s.organiser),
            Some(json!({"percent": 50})),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}
both_backends!(only_organisers_and_presenters_see_attendance);

async fn the_attendance_csv_has_the_same_rows_with_formulas_defused(backend: Backend) {
    let app = spawn_app(backend).await;
    let s = modelled_session(&app).await;
    let csv = app.get_text(&format!("/api/sessions/{}/attendance.csv", s.id), &s.organiser).await;
    let mut reader = csv::Reader::from_reader(csv.as_bytes());
    let header: Vec<String> = reader.headers().unwrap().iter().map(String::from).collect();
    assert_eq!(
        header,
        [
            "name",
            "school",
            "joined_at",
            "left_at",
            "minutes_live",
            "minutes_in_groups",
            "minutes_replayed",
            "status",
            "how"
        ]
    );
    let rows: Vec<Vec<String>> = reader.records().map(|r| r.unwrap().iter().map(String::from).collect()).collect();
    assert_eq!(rows.len(), 5);
    assert_eq!(rows[0][0], "'=Eve", "a name starting with = is not a formula");
    assert_eq!(rows[0][7..], ["absent", ""]);
    let ann = &rows[1];
    assert_eq!(ann[0], "Ann");
    let joined = chrono::DateTime::parse_from_rfc3339(&ann[2]).unwrap();
    assert_eq!(joined.timestamp_millis(), T0);
    assert_eq!(ann[4..], ["48", "10", "0", "attended", "live"]);
    assert_eq!(rows[4][4..], ["0", "0", "30", "attended", "replay"]);
}
both_backends!(the_attendance_csv_has_the_same_rows_with_formulas_defused);
