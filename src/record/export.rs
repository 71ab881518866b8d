//! Taking your record elsewhere: a spreadsheet (CSV), a complete JSON copy
//! of everything you own here, and xAPI 1.0.3 statements for a school's
//! learning record store. Formats and the xAPI mapping are described in
//! docs/record-exports.md.
//!
//! Every export is brought up to date with attendance first and holds only
//! the caller's own rows: there is no way to name another person.

use std::collections::HashMap;

use axum::{
    extract::State,
    http::header,
    response::{IntoResponse, Response},
};
use chrono::{DateTime, SecondsFormat, Utc};
use chrono_tz::Tz;
use serde::Serialize;
use serde_json::{json, Value};
use sqlx::Row;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use super::{
    entries::{self, Entry, Kind},
    goals::{self, Goal, GoalKind},
    summary::{self, Summary},
};
use crate::{
    attendance::{self, Interval},
    auth::{Stage, User},
    db::Db,
    http::error::{ApiResult, ErrorBody},
    http::extract::AuthUser,
    AppState,
};

/// The public page that confirms a certificate of attendance, by its id.
pub fn certificate_url(public_url: &str, id: &str) -> String {
    format!("{public_url}/certificate.html?id={id}")
}

/// Evidence files are served under a path on this server; a spreadsheet
/// opened elsewhere needs the whole address.
fn absolute(public_url: &str, url: &str) -> String {
    if url.starts_with('/') {
        format!("{public_url}{url}")
    } else {
        url.to_string()
    }
}

/// Everything an export needs, read once.
struct Loaded {
    entries: Vec<Entry>,
    goals: Vec<Goal>,
    zone: Tz,
}

async fn load(state: &AppState, user: &User) -> ApiResult<Loaded> {
    entries::sync(&state.db, user.id).await?;
    Ok(Loaded {
        entries: entries::load_all(&state.db, user.id).await?,
        goals: goals::load(&state.db, user.id).await?,
        zone: user.zone(state.settings.time_zone),
    })
}

fn attachment(content_type: &str, file_name: &str, body: Vec<u8>) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type.to_string()),
            (header::CONTENT_DISPOSITION, format!("attachment; filename=\"{file_name}\"")),
        ],
        body,
    )
        .into_response()
}

fn goal_titles(entry: &Entry, goals: &[Goal], kind: GoalKind) -> String {
    goals
        .iter()
        .filter(|g| g.kind == kind && entry.goal_ids.contains(&g.id))
        .map(|g| g.title.as_str())
        .collect::<Vec<_>>()
        .join("; ")
}

/// The CSV's columns, in order.
pub const CSV_COLUMNS: [&str; 16] = [
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
    "certificate_url",
];

fn csv_row(e: &Entry, goals: &[Goal], zone: Tz, public_url: &str) -> Vec<String> {
    let r = e.reflection.as_ref();
    let reflection =
        |f: fn(&super::reflections::Reflection) -> &String| crate::http::csv::cell(r.map(f).map_or("", |s| s));
    let evidence = e
        .evidence
        .iter()
        .map(|v| v.file_name.clone().unwrap_or_else(|| absolute(public_url, &v.url)))
        .collect::<Vec<_>>()
        .join("; ");
    vec![
        summary::local_day(e, zone).to_string(),
        e.kind.as_str().to_string(),
        crate::http::csv::cell(&e.title),
        crate::http::csv::cell(&e.provider),
        e.minutes.to_string(),
        e.how.clone().unwrap_or_default(),
        e.status.clone().unwrap_or_default(),
        crate::http::csv::cell(&goal_titles(e, goals, GoalKind::Need)),
        crate::http::csv::cell(&goal_titles(e, goals, GoalKind::Priority)),
        reflection(|r| &r.learned),
        reflection(|r| &r.keep_doing),
        reflection(|r| &r.to_grow),
        reflection(|r| &r.to_change),
        reflection(|r| &r.impact),
        crate::http::csv::cell(&evidence),
        e.certificate_id.as_deref().map(|id| certificate_url(public_url, id)).unwrap_or_default(),
    ]
}

/// Your record as a spreadsheet: one row per entry, newest first, dates in
/// your time zone. Cells that a spreadsheet would run as a formula are
/// prefixed with an apostrophe.
#[utoipa::path(security(("bearer" = []), ("cookie" = [])), get, path = "/api/me/record.csv", tag = "record",
    responses((status = 200, content_type = "text/csv", body = String), (status = 401, body = ErrorBody)))]
async fn record_csv(State(state): State<AppState>, AuthUser(user): AuthUser) -> ApiResult<Response> {
    let loaded = load(&state, &user).await?;
    let mut out = csv::Writer::from_writer(Vec::new());
    out.write_record(CSV_COLUMNS).map_err(anyhow::Error::from)?;
    for e in &loaded.entries {
        out.write_record(csv_row(e, &loaded.goals, loaded.zone, &state.public_url)).map_err(anyhow::Error::from)?;
    }
    let body = out.into_inner().map_err(|e| anyhow::anyhow!("failed to write the record CSV: {e}"))?;
    Ok(attachment("text/csv; charset=utf-8", "staffroom-record.csv", body))
}

/// What names the JSON export, so a reader can tell it from anything else.
pub const FORMAT: &str = "staffroom-record";
/// Raised when a field changes meaning or goes; new fields may appear
/// without a new version.
pub const VERSION: i64 = 1;

/// Who the record belongs to.
#[derive(Serialize, ToSchema)]
pub struct Profile {
    pub name: String,
    pub email: String,
    pub school: String,
    pub stage: Stage,
    /// The zone dates in this export are read in: yours, else the programme's.
    pub time_zone: String,
}

/// A certificate of attendance, and where anyone can check it.
#[derive(Serialize, ToSchema)]
pub struct CertificateRef {
    pub id: String,
    pub entry_id: i64,
    pub session_id: Option<i64>,
    pub url: String,
}

/// Everything you own in Staffroom's professional record.
#[derive(Serialize, ToSchema)]
pub struct RecordExport {
    /// Always "staffroom-record".
    pub format: String,
    /// The format's version: 1.
    pub version: i64,
    pub exported_at: DateTime<Utc>,
    pub profile: Profile,
    /// Your needs and priorities.
    pub goals: Vec<Goal>,
    /// Newest first, each with its links (`goal_ids`), reflection, evidence
    /// (files as their metadata and download address) and certificate.
    pub entries: Vec<Entry>,
    pub certificates: Vec<CertificateRef>,
    pub summary: Summary,
}

/// Your whole record as one JSON document: profile, needs and priorities,
/// every entry with its reflection and evidence, certificates and the
/// summary. Evidence files are listed, not included: each `url` downloads one.
#[utoipa::path(security(("bearer" = []), ("cookie" = [])), get, path = "/api/me/record.json", tag = "record",
    responses((status = 200, body = RecordExport), (status = 401, body = ErrorBody)))]
async fn record_json(State(state): State<AppState>, AuthUser(user): AuthUser) -> ApiResult<Response> {
    let Loaded { mut entries, goals, zone } = load(&state, &user).await?;
    for e in &mut entries {
        for v in &mut e.evidence {
            v.url = absolute(&state.public_url, &v.url);
        }
    }
    let certificates = entries
        .iter()
        .filter_map(|e| {
            let id = e.certificate_id.clone()?;
            Some(CertificateRef {
                url: certificate_url(&state.public_url, &id),
                id,
                entry_id: e.id,
                session_id: e.session_id,
            })
        })
        .collect();
    let export = RecordExport {
        format: FORMAT.into(),
        version: VERSION,
        exported_at: Utc::now(),
        profile: Profile {
            name: user.name.clone(),
            email: user.email.clone(),
            school: user.school.clone(),
            stage: user.stage,
            time_zone: zone.name().to_string(),
        },
        summary: summary::summarise(&entries, &goals, zone, summary::today(zone)),
        goals,
        entries,
        certificates,
    };
    let body = serde_json::to_vec_pretty(&export).map_err(anyhow::Error::from)?;
    Ok(attachment("application/json", "staffroom-record.json", body))
}

// ------------------------------------------------------------------ xAPI

pub const VERB_ATTENDED: &str = "http://adlnet.gov/expapi/verbs/attended";
pub const VERB_TERMINATED: &str = "http://adlnet.gov/expapi/verbs/terminated";
pub const VERB_COMPLETED: &str = "http://adlnet.gov/expapi/verbs/completed";
pub const ACTIVITY_MEETING: &str = "http://adlnet.gov/expapi/activities/meeting";
pub const ACTIVITY_COURSE: &str = "http://adlnet.gov/expapi/activities/course";
pub const VIDEO_PROFILE: &str = "https://w3id.org/xapi/video";
pub const VIDEO_TYPE: &str = "https://w3id.org/xapi/video/activity-type/video";
pub const EXT_PLAYED_SEGMENTS: &str = "https://w3id.org/xapi/video/extensions/played-segments";
pub const EXT_PROGRESS: &str = "https://w3id.org/xapi/video/extensions/progress";
pub const EXT_TIME: &str = "https://w3id.org/xapi/video/extensions/time";
pub const EXT_LENGTH: &str = "https://w3id.org/xapi/video/extensions/length";
pub const EXT_SESSION_ID: &str = "https://w3id.org/xapi/video/extensions/session-id";
pub const EXT_COMPLETION_THRESHOLD: &str = "https://w3id.org/xapi/video/extensions/completion-threshold";
const PLATFORM: &str = "Staffroom";
const LANGUAGE: &str = "en-GB";

/// An ISO 8601 duration of whole and part seconds: `PT52M`, `PT1H30M`,
/// `PT12.5S`, and `PT0S` for nothing.
pub fn iso_duration(ms: i64) -> String {
    let ms = ms.max(0);
    let (h, m, s, frac) = (ms / 3_600_000, ms / 60_000 % 60, ms / 1000 % 60, ms % 1000);
    let mut out = String::from("PT");
    if h > 0 {
        out += &format!("{h}H");
    }
    if m > 0 {
        out += &format!("{m}M");
    }
    if s > 0 || frac > 0 {
        out += &seconds(s * 1000 + frac);
        out.push('S');
    }
    if out == "PT" {
        out += "0S";
    }
    out
}

/// Ms as seconds with at most 3 decimals and no trailing zeros: "12.5", "600".
pub fn seconds(ms: i64) -> String {
    let (whole, frac) = (ms / 1000, ms % 1000);
    if frac == 0 {
        whole.to_string()
    } else {
        format!("{whole}.{frac:03}").trim_end_matches('0').to_string()
    }
}

/// The Video Profile's played-segments: each merged stretch watched as
/// `from[.]to`, joined by `[,]`, in seconds: `0[.]12.5[,]20[.]30`.
pub fn played_segments(merged: &[Interval]) -> String {
    merged.iter().map(|i| format!("{}[.]{}", seconds(i.start), seconds(i.end))).collect::<Vec<_>>().join("[,]")
}

/// A share from 0 to 1 with at most 3 decimals, rounded down so 99.9 %
/// never reads as complete.
fn fraction(part: i64, whole: i64) -> f64 {
    if whole <= 0 {
        return 0.0;
    }
    (part.clamp(0, whole) * 1000 / whole) as f64 / 1000.0
}

fn timestamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// Statement ids are UUID v5s of a name made of the server, the person, the
/// entry and what the statement says, so exporting twice gives the same ids
/// and a learning record store keeps one copy.
fn statement_id(public_url: &str, user_id: i64, entry_id: i64, what: &str) -> String {
    Uuid::new_v5(&Uuid::NAMESPACE_URL, format!("{public_url}/xapi/{user_id}/{entry_id}/{what}").as_bytes()).to_string()
}

/// One person's watching of one finished recording.
#[derive(Clone, Debug)]
pub struct Watching {
    pub recording_id: String,
    pub session_id: i64,
    pub length_ms: i64,
    /// Merged: sorted, not overlapping.
    pub watched: Vec<Interval>,
    /// When they last reported watching (Unix ms), if ever.
    pub last_at: Option<i64>,
}

/// What `user_id` watched of each finished recording, by session.
async fn watching(db: &Db, user_id: i64) -> ApiResult<HashMap<i64, Vec<Watching>>> {
    let rows = sqlx::query(
        "select r.id, r.session_id, r.duration_ms, s.start_ms, s.end_ms, s.updated_at
         from replay_segments s join recordings r on r.id = s.recording_id
         where s.user_id = $1 and r.duration_ms is not null order by r.session_id, r.started_at, r.id",
    )
    .bind(user_id)
    .fetch_all(&db.read)
    .await?;
    let mut by_recording: Vec<(Watching, Vec<Interval>)> = vec![];
    for r in rows {
        let id: String = r.try_get("id")?;
        let segment = Interval { start: r.try_get("start_ms")?, end: r.try_get("end_ms")? };
        let at: i64 = r.try_get("updated_at")?;
        match by_recording.last_mut() {
            Some((w, segments)) if w.recording_id == id => {
                segments.push(segment);
                w.last_at = w.last_at.max(Some(at).filter(|&a| a > 0));
            }
            _ => by_recording.push((
                Watching {
                    recording_id: id,
                    session_id: r.try_get("session_id")?,
                    length_ms: r.try_get("duration_ms")?,
                    watched: vec![],
                    last_at: Some(at).filter(|&a| a > 0),
                },
                vec![segment],
            )),
        }
    }
    let mut out: HashMap<i64, Vec<Watching>> = HashMap::new();
    for (mut w, segments) in by_recording {
        // Only what was watched of what exists counts, as in the attendance report.
        let length = w.length_ms;
        w.watched = attendance::merge(
            segments
                .into_iter()
                .map(|i| Interval { start: i.start.max(0), end: i.end.min(length) })
                .filter(|i| i.end > i.start)
                .collect(),
        );
        out.entry(w.session_id).or_default().push(w);
    }
    Ok(out)
}

/// Everything a statement is built from.
pub struct Statements<'a> {
    pub public_url: &'a str,
    pub user_id: i64,
    pub name: &'a str,
    pub email: &'a str,
    /// The share of a recording that counts as attended, 1–100.
    pub thresholds: &'a HashMap<i64, u8>,
}

impl Statements<'_> {
    fn actor(&self) -> Value {
        json!({"objectType": "Agent", "name": self.name, "mbox": format!("mailto:{}", self.email)})
    }

    fn verb(id: &str, display: &str) -> Value {
        json!({"id": id, "display": {LANGUAGE: display}})
    }

    fn session_iri(&self, session_id: i64) -> String {
        format!("{}/session.html?id={session_id}", self.public_url)
    }

    /// The live attendance of a session: `attended` a meeting, for the live minutes.
    pub fn attended(&self, e: &Entry, session_id: i64) -> Value {
        json!({
            "id": statement_id(self.public_url, self.user_id, e.id, "attended"),
            "actor": self.actor(),
            "verb": Self::verb(VERB_ATTENDED, "attended"),
            "object": {
                "objectType": "Activity",
                "id": self.session_iri(session_id),
                "definition": {"name": {LANGUAGE: e.title}, "type": ACTIVITY_MEETING},
            },
            "result": {
                "duration": iso_duration(e.minutes_live * 60_000),
                "completion": e.status.as_deref() == Some("attended") && e.how.as_deref() == Some("live"),
            },
            "context": {"platform": PLATFORM, "language": LANGUAGE},
            "timestamp": timestamp(e.occurred_at),
        })
    }

    /// Watching a recording, as the Video Profile's `terminated`: what was
    /// played, how much of it, and for how long in all.
    pub fn watched(&self, e: &Entry, session_id: i64, w: &Watching) -> Value {
        let watched_ms = attendance::total_ms(&w.watched);
        let what = format!("replay/{}", w.recording_id);
        let threshold = self.thresholds.get(&session_id).copied().unwrap_or(attendance::DEFAULT_THRESHOLD);
        let mut context_extensions = json!({
            EXT_LENGTH: w.length_ms as f64 / 1000.0,
            EXT_SESSION_ID: statement_id(self.public_url, self.user_id, e.id, &format!("{what}/session")),
        });
        if threshold < 100 {
            context_extensions[EXT_COMPLETION_THRESHOLD] = json!(f64::from(threshold) / 100.0);
        }
        let at = w.last_at.and_then(DateTime::from_timestamp_millis).unwrap_or(e.occurred_at);
        json!({
            "id": statement_id(self.public_url, self.user_id, e.id, &what),
            "actor": self.actor(),
            "verb": Self::verb(VERB_TERMINATED, "terminated"),
            "object": {
                "objectType": "Activity",
                "id": format!("{}/replay.html?id={}", self.public_url, w.recording_id),
                "definition": {"name": {LANGUAGE: format!("{} (recording)", e.title)}, "type": VIDEO_TYPE},
            },
            "result": {
                "duration": iso_duration(watched_ms),
                "extensions": {
                    EXT_PLAYED_SEGMENTS: played_segments(&w.watched),
                    EXT_PROGRESS: fraction(watched_ms, w.length_ms),
                    EXT_TIME: w.watched.last().map_or(0, |i| i.end) as f64 / 1000.0,
                },
            },
            "context": {
                "platform": PLATFORM,
                "language": LANGUAGE,
                "contextActivities": {
                    "category": [{"id": VIDEO_PROFILE, "objectType": "Activity"}],
                    "parent": [{"id": self.session_iri(session_id), "objectType": "Activity"}],
                },
                "extensions": context_extensions,
            },
            "timestamp": timestamp(at),
        })
    }

    /// Other CPD added by hand: `completed`, for its minutes.
    pub fn completed(&self, e: &Entry) -> Value {
        let mut definition = json!({"name": {LANGUAGE: e.title}});
        match e.kind {
            Kind::Course => definition["type"] = json!(ACTIVITY_COURSE),
            Kind::Coaching => definition["type"] = json!(ACTIVITY_MEETING),
            _ => {}
        }
        json!({
            "id": statement_id(self.public_url, self.user_id, e.id, "completed"),
            "actor": self.actor(),
            "verb": Self::verb(VERB_COMPLETED, "completed"),
            "object": {
                "objectType": "Activity",
                "id": format!("{}/api/me/record/entries/{}", self.public_url, e.id),
                "definition": definition,
            },
            "result": {"duration": iso_duration(e.minutes * 60_000), "completion": true},
            "context": {"platform": PLATFORM, "language": LANGUAGE},
            "timestamp": timestamp(e.occurred_at),
        })
    }
}

async fn thresholds(db: &Db, session_ids: &[i64]) -> ApiResult<HashMap<i64, u8>> {
    let mut out = HashMap::new();
    for &id in session_ids {
        let percent: Option<i64> = sqlx::query_scalar("select attendance_threshold from sessions where id = $1")
            .bind(id)
            .fetch_optional(&db.read)
            .await?;
        let t = percent.and_then(|p| attendance::Threshold::parse(p).ok()).unwrap_or_default();
        out.insert(id, t.percent());
    }
    Ok(out)
}

/// Your record as xAPI 1.0.3 statements, oldest first, to send to a learning
/// record store: `attended` for live attendance, Video Profile `terminated`
/// for each recording watched, `completed` for CPD added by hand. Ids are
/// stable, so sending the file again adds nothing twice.
#[utoipa::path(security(("bearer" = []), ("cookie" = [])), get, path = "/api/me/record/xapi.json", tag = "record",
    responses((status = 200, body = [Object]), (status = 401, body = ErrorBody)))]
async fn record_xapi(State(state): State<AppState>, AuthUser(user): AuthUser) -> ApiResult<Response> {
    let loaded = load(&state, &user).await?;
    let mut watching = watching(&state.db, user.id).await?;
    let session_ids: Vec<i64> = loaded.entries.iter().filter_map(|e| e.session_id).collect();
    let thresholds = thresholds(&state.db, &session_ids).await?;
    let make = Statements {
        public_url: &state.public_url,
        user_id: user.id,
        name: &user.name,
        email: &user.email,
        thresholds: &thresholds,
    };
    let mut statements = vec![];
    for e in loaded.entries.iter().rev() {
        match e.session_id {
            Some(session_id) => {
                if e.minutes_live > 0 {
                    statements.push(make.attended(e, session_id));
                }
                for w in watching.remove(&session_id).unwrap_or_default() {
                    statements.push(make.watched(e, session_id, &w));
                }
            }
            None => statements.push(make.completed(e)),
        }
    }
    let body = serde_json::to_vec_pretty(&statements).map_err(anyhow::Error::from)?;
    Ok(attachment("application/json", "staffroom-xapi.json", body))
}

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(record_csv)).routes(routes!(record_json)).routes(routes!(record_xapi))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_are_iso_8601_in_hours_minutes_and_seconds() {
        assert_eq!(iso_duration(52 * 60_000), "PT52M");
        assert_eq!(iso_duration(90 * 60_000), "PT1H30M");
        assert_eq!(iso_duration(12_500), "PT12.5S");
        assert_eq!(iso_duration(3_600_000 + 1), "PT1H0.001S");
        assert_eq!(iso_duration(0), "PT0S");
    }

    #[test]
    fn played_segments_are_seconds_joined_the_video_profile_way() {
        let merged = attendance::merge(vec![
            Interval { start: 20_000, end: 30_000 },
            Interval { start: 0, end: 12_500 },
            Interval { start: 5_000, end: 10_000 },
        ]);
        assert_eq!(played_segments(&merged), "0[.]12.5[,]20[.]30");
        assert_eq!(played_segments(&[]), "");
        assert_eq!(seconds(1_230), "1.23");
    }

    #[test]
    fn progress_is_rounded_down_to_three_decimals() {
        assert_eq!(fraction(30, 40), 0.75);
        assert_eq!(fraction(999_999, 1_000_000), 0.999);
        assert_eq!(fraction(50, 40), 1.0);
        assert_eq!(fraction(5, 0), 0.0);
    }

    #[test]
    fn statement_ids_are_stable_and_differ_by_what_they_say() {
        let a = statement_id("https://cpd.example", 1, 7, "attended");
        assert_eq!(a, statement_id("https://cpd.example", 1, 7, "attended"));
        assert_ne!(a, statement_id("https://cpd.example", 1, 7, "replay/r1"));
        assert_ne!(a, statement_id("https://cpd.example", 2, 7, "attended"));
        assert_eq!(Uuid::parse_str(&a).unwrap().get_version_num(), 5);
    }
}
