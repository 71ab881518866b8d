//! The organiser's attendance report for a session (JSON and CSV), and the
//! session's threshold. Once a session is settled its rows are the stored
//! results (`settle.rs`), the ones the record and certificates read; while
//! it runs they are counted from the durable rows as of now. A threshold
//! change re-settles and is kept as a correction, listed in the report.

use std::collections::HashMap;

use axum::{
    extract::State,
    http::header,
    response::{IntoResponse, Response},
};
use serde::{Deserialize, Serialize};
use sqlx::Row;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::{minutes, timeline, How, Status, Step, Threshold};
use crate::{
    auth::User,
    db::Db,
    http::{
        error::{ApiError, ApiResult, ErrorBody},
        extract::{AuthUser, Json, Path},
    },
    programme, AppState,
};

/// One person's attendance of a session.
#[derive(Serialize, ToSchema)]
pub struct PersonAttendance {
    pub user_id: i64,
    pub name: String,
    pub school: String,
    /// First moment present while live (Unix ms), if ever.
    pub joined_at: Option<i64>,
    /// Last moment present while live (Unix ms), if ever.
    pub left_at: Option<i64>,
    /// Merged live presence, main room and groups, whole minutes rounded down.
    pub minutes_live: i64,
    /// The part of `minutes_live` spent in breakout groups.
    pub minutes_in_groups: i64,
    /// Live presence in exact ms: the status is decided on these, not on the rounded minutes.
    pub live_ms: i64,
    /// The part of `live_ms` spent in breakout groups.
    pub group_ms: i64,
    /// Unique minutes watched of the session's recordings.
    pub minutes_replayed: i64,
    pub status: Status,
    /// Which time earned the status: `live` or `replay` (null when absent).
    pub how: Option<How>,
}

/// A change of the session's threshold: who, when, from and to.
#[derive(Serialize, ToSchema)]
pub struct Correction {
    /// When it was made (Unix ms).
    pub at: i64,
    pub by_user_id: i64,
    pub by_name: String,
    pub old_percent: i64,
    pub new_percent: i64,
    /// Whether the session's results were already settled, and so were settled again.
    pub resettled: bool,
}

/// The organiser's report (docs/attendance.md states the rules).
#[derive(Serialize, ToSchema)]
pub struct AttendanceReport {
    pub threshold_percent: u8,
    pub scheduled_minutes: i64,
    /// When each person's result was stored (Unix ms), once the live part
    /// ended; null while the session runs (the rows are then as of now).
    pub settled_at: Option<i64>,
    /// Every change of the threshold, oldest first.
    pub corrections: Vec<Correction>,
    /// Confirmed registrants, and anyone who joined the room or watched a recording, by name.
    pub people: Vec<PersonAttendance>,
    /// People present over time, one point per change.
    pub timeline: Vec<Step>,
}

#[derive(Deserialize, ToSchema)]
pub struct ThresholdInput {
    /// Whole percent of the scheduled time (and of a recording's length) that counts as attended: 1 to 100.
    pub percent: i64,
}

#[derive(Serialize, ToSchema)]
pub struct ThresholdOutput {
    pub threshold_percent: u8,
}

/// Organisers and the session's presenters may read attendance.
async fn require_reader(db: &Db, user: &User, session_id: i64) -> ApiResult<programme::Session> {
    let session = programme::load(db, session_id).await?.ok_or(ApiError::NotFound("session"))?;
    if !user.is_organiser && !programme::is_presenter(db, session_id, user.id).await? {
        return Err(ApiError::forbidden("only organisers and the session's presenters can see attendance"));
    }
    Ok(session)
}

/// Builds the report as of `now` (Unix ms), settling the session first if it is due.
pub async fn build(db: &Db, session: &programme::Session, now: i64) -> ApiResult<AttendanceReport> {
    let (facts, results, present) =
        super::settle::session_results(db, session.id, now).await?.ok_or(ApiError::NotFound("session"))?;
    let mut names: HashMap<i64, (String, String)> = HashMap::new();
    for row in sqlx::query(
        "select id, name, school from users where id in (
             select user_id from attendance_results where session_id = $1
             union select user_id from registrations where session_id = $1
             union select user_id from room_events where session_id = $1
             union select s.user_id from replay_segments s join recordings r on r.id = s.recording_id
                   where r.session_id = $1)",
    )
    .bind(session.id)
    .fetch_all(&db.read)
    .await?
    {
        names.insert(row.try_get("id")?, (row.try_get("name")?, row.try_get("school")?));
    }
    let mut people: Vec<PersonAttendance> = results
        .into_iter()
        .map(|r| {
            let (name, school) = names.get(&r.user_id).cloned().unwrap_or_default();
            PersonAttendance {
                user_id: r.user_id,
                name,
                school,
                joined_at: r.live.joined_at,
                left_at: r.live.left_at,
                minutes_live: minutes(r.live.live_ms),
                minutes_in_groups: minutes(r.live.group_ms),
                live_ms: r.live.live_ms,
                group_ms: r.live.group_ms,
                minutes_replayed: minutes(r.replayed_ms),
                status: r.status,
                how: r.how,
            }
        })
        .collect();
    // By name in byte order, the same on every database whatever its collation.
    people.sort_by(|a, b| (&a.name, a.user_id).cmp(&(&b.name, b.user_id)));
    Ok(AttendanceReport {
        threshold_percent: facts.threshold.percent(),
        scheduled_minutes: minutes(facts.scheduled_ms),
        settled_at: facts.settled_at,
        corrections: corrections(db, session.id).await?,
        people,
        timeline: timeline(&present),
    })
}

async fn corrections(db: &Db, session_id: i64) -> ApiResult<Vec<Correction>> {
    let rows = sqlx::query(
        "select c.at, c.by_user_id, u.name, c.old_percent, c.new_percent, c.resettled
         from attendance_corrections c join users u on u.id = c.by_user_id
         where c.session_id = $1 order by c.at, c.id",
    )
    .bind(session_id)
    .fetch_all(&db.read)
    .await?;
    let mut out = vec![];
    for r in rows {
        out.push(Correction {
            at: r.try_get("at")?,
            by_user_id: r.try_get("by_user_id")?,
            by_name: r.try_get("name")?,
            old_percent: r.try_get("old_percent")?,
            new_percent: r.try_get("new_percent")?,
            resettled: r.try_get::<i64, _>("resettled")? != 0,
        });
    }
    Ok(out)
}

/// Who attended a session, for how long, and who caught up on the replay
/// (organisers and the session's presenters).
#[utoipa::path(security(("bearer" = []), ("cookie" = [])), get, path = "/api/sessions/{id}/attendance", tag = "attendance",
    responses((status = 200, body = AttendanceReport), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn show(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    Path(id): Path<i64>,
) -> ApiResult<Json<AttendanceReport>> {
    let session = require_reader(&state.db, &user, id).await?;
    Ok(Json(build(&state.db, &session, chrono::Utc::now().timestamp_millis()).await?))
}

fn rfc3339(ms: Option<i64>) -> String {
    ms.and_then(chrono::DateTime::from_timestamp_millis).map(|t| t.to_rfc3339()).unwrap_or_default()
}

/// The same rows as CSV, times in RFC 3339 (organisers and the session's presenters).
#[utoipa::path(security(("bearer" = []), ("cookie" = [])), get, path = "/api/sessions/{id}/attendance.csv", tag = "attendance",
    responses((status = 200, content_type = "text/csv", body = String), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody)))]
async fn show_csv(State(state): State<AppState>, AuthUser(user): AuthUser, Path(id): Path<i64>) -> ApiResult<Response> {
    let session = require_reader(&state.db, &user, id).await?;
    let report = build(&state.db, &session, chrono::Utc::now().timestamp_millis()).await?;
    let mut out = csv::Writer::from_writer(Vec::new());
    let header_row = [
        "name",
        "school",
        "joined_at",
        "left_at",
        "minutes_live",
        "minutes_in_groups",
        "minutes_replayed",
        "status",
        "how",
    ];
    out.write_record(header_row).map_err(anyhow::Error::from)?;
    for p in &report.people {
        out.write_record([
            crate::http::csv::cell(&p.name),
            crate::http::csv::cell(&p.school),
            rfc3339(p.joined_at),
            rfc3339(p.left_at),
            p.minutes_live.to_string(),
            p.minutes_in_groups.to_string(),
            p.minutes_replayed.to_string(),
            p.status.as_str().to_string(),
            p.how.map(How::as_str).unwrap_or_default().to_string(),
        ])
        .map_err(anyhow::Error::from)?;
    }
    let body = out.into_inner().map_err(|e| anyhow::anyhow!("failed to write CSV: {e}"))?;
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()),
            (header::CONTENT_DISPOSITION, format!("attachment; filename=\"session-{id}-attendance.csv\"")),
        ],
        body,
    )
        .into_response())
}

/// Set the share of the scheduled time that counts as attended (organisers).
#[utoipa::path(security(("bearer" = []), ("cookie" = [])), put, path = "/api/sessions/{id}/attendance-threshold", tag = "attendance", request_body = ThresholdInput,
    responses((status = 200, body = ThresholdOutput), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 422, body = ErrorBody)))]
async fn set_threshold(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    Path(id): Path<i64>,
    Json(body): Json<ThresholdInput>,
) -> ApiResult<Json<ThresholdOutput>> {
    user.require_organiser()?;
    programme::load(&state.db, id).await?.ok_or(ApiError::NotFound("session"))?;
    let threshold = Threshold::parse(body.percent).map_err(|m| ApiError::invalid("percent", m))?;
    let now = chrono::Utc::now().timestamp_millis();
    // A session due to settle is settled under the old threshold first, so
    // that the change is a correction of stored results, recorded as such.
    super::settle::facts(&state.db, id, now).await?;
    let mut tx = state.db.begin().await?;
    let old: i64 = sqlx::query_scalar("select attendance_threshold from sessions where id = $1")
        .bind(id)
        .fetch_one(&mut *tx)
        .await?;
    if old != i64::from(threshold.percent()) {
        sqlx::query("update sessions set attendance_threshold = $1 where id = $2")
            .bind(i64::from(threshold.percent()))
            .bind(id)
            .execute(&mut *tx)
            .await?;
        let resettled = super::settle::resettle_in(&mut tx, id, now).await?;
        sqlx::query(
            "insert into attendance_corrections (session_id, by_user_id, at, old_percent, new_percent, resettled)
             values ($1, $2, $3, $4, $5, $6)",
        )
        .bind(id)
        .bind(user.id)
        .bind(now)
        .bind(old)
        .bind(i64::from(threshold.percent()))
        .bind(i64::from(resettled))
        .execute(&mut *tx)
        .await?;
        tracing::info!(
            session = id,
            old,
            percent = threshold.percent(),
            by = user.id,
            resettled,
            "attendance threshold changed"
        );
    }
    tx.commit().await?;
    Ok(Json(ThresholdOutput { threshold_percent: threshold.percent() }))
}

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(show)).routes(routes!(show_csv)).routes(routes!(set_threshold))
}
