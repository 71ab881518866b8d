//! The organiser's attendance report for a session (JSON and CSV), and the
//! session's threshold. Reads the durable rows, hands them to the pure
//! functions in the parent module.

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

use super::{group_ms, minutes, presence, status, timeline, Credit, How, Move, RoomEvent, Status, Step, Threshold};
use crate::{
    auth::User,
    db::Db,
    http::{
        error::{ApiError, ApiResult, ErrorBody},
        extract::{AuthUser, Json, Path},
    },
    programme,
    recording::{union_ms, Segment},
    AppState,
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
    /// Unique minutes watched of the session's recordings.
    pub minutes_replayed: i64,
    pub status: Status,
    /// Which time earned the status: `live` or `replay` (null when absent).
    pub how: Option<How>,
}

/// The organiser's report (docs/attendance.md states the rules).
#[derive(Serialize, ToSchema)]
pub struct AttendanceReport {
    pub threshold_percent: u8,
    pub scheduled_minutes: i64,
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

async fn threshold_of(db: &Db, session_id: i64) -> ApiResult<Threshold> {
    let percent: i64 = sqlx::query_scalar("select attendance_threshold from sessions where id = $1")
        .bind(session_id)
        .fetch_one(&db.read)
        .await?;
    // The column only ever holds what `Threshold::parse` accepted.
    Ok(Threshold::parse(percent).unwrap_or_default())
}

/// Builds the report from the session's rows, as of `now` (Unix ms).
pub async fn build(db: &Db, session: &programme::Session, now: i64) -> ApiResult<AttendanceReport> {
    let id = session.id;
    let threshold = threshold_of(db, id).await?;
    let window = super::journal::schedule(db, id).await?.ok_or(ApiError::NotFound("session"))?.window(now);
    let scheduled_ms = (session.ends_at - session.starts_at).num_milliseconds().max(0);

    let mut events: HashMap<i64, Vec<RoomEvent>> = HashMap::new();
    for row in sqlx::query("select user_id, kind, at from room_events where session_id = $1 order by at, id")
        .bind(id)
        .fetch_all(&db.read)
        .await?
    {
        let at: i64 = row.try_get("at")?;
        let kind: String = row.try_get("kind")?;
        let event = if kind == "join" { RoomEvent::Join(at) } else { RoomEvent::Leave(at) };
        events.entry(row.try_get("user_id")?).or_default().push(event);
    }
    let mut moves: HashMap<i64, Vec<Move>> = HashMap::new();
    for row in sqlx::query("select user_id, group_name, at from breakout_moves where session_id = $1 order by at, id")
        .bind(id)
        .fetch_all(&db.read)
        .await?
    {
        let group: Option<String> = row.try_get("group_name")?;
        moves
            .entry(row.try_get("user_id")?)
            .or_default()
            .push(Move { at: row.try_get("at")?, in_group: group.is_some() });
    }
    // Only finished recordings have a length to measure against.
    let durations: Vec<i64> =
        sqlx::query_scalar("select duration_ms from recordings where session_id = $1 and duration_ms is not null")
            .bind(id)
            .fetch_all(&db.read)
            .await?;
    let recorded_ms: i64 = durations.iter().fold(0i64, |a, d| a.saturating_add(*d));
    let mut segments: HashMap<(i64, String), Vec<Segment>> = HashMap::new();
    for row in sqlx::query(
        "select s.user_id, s.recording_id, s.start_ms, s.end_ms, r.duration_ms from replay_segments s
         join recordings r on r.id = s.recording_id
         where r.session_id = $1 and r.duration_ms is not null",
    )
    .bind(id)
    .fetch_all(&db.read)
    .await?
    {
        // Only what was watched of what exists counts (docs/attendance.md).
        let segment = Segment { start_ms: row.try_get("start_ms")?, end_ms: row.try_get("end_ms")? };
        if let Some(segment) = segment.clip(row.try_get("duration_ms")?) {
            segments.entry((row.try_get("user_id")?, row.try_get("recording_id")?)).or_default().push(segment);
        }
    }
    let mut replayed: HashMap<i64, i64> = HashMap::new();
    for ((user, _), segs) in segments {
        let total = replayed.entry(user).or_default();
        *total = total.saturating_add(union_ms(segs));
    }

    let people_rows = sqlx::query(
        "select id, name, school from users where id in (
             select user_id from registrations where session_id = $1 and status = 'confirmed'
             union select user_id from room_events where session_id = $1
             union select s.user_id from replay_segments s join recordings r on r.id = s.recording_id
                   where r.session_id = $1)
         order by id",
    )
    .bind(id)
    .fetch_all(&db.read)
    .await?;
    let mut people = vec![];
    let mut present = vec![];
    for row in people_rows {
        let user_id: i64 = row.try_get("id")?;
        let intervals = presence(events.get(&user_id).map(Vec::as_slice).unwrap_or_default(), window);
        let live_ms = super::total_ms(&intervals);
        let in_groups = group_ms(moves.get(&user_id).map(Vec::as_slice).unwrap_or_default(), &intervals);
        let replayed_ms = replayed.get(&user_id).copied().unwrap_or(0);
        let (status, how) = status(Credit { live_ms, scheduled_ms, replayed_ms, recorded_ms }, threshold);
        people.push(PersonAttendance {
            user_id,
            name: row.try_get("name")?,
            school: row.try_get("school")?,
            joined_at: intervals.first().map(|i| i.start),
            left_at: intervals.last().map(|i| i.end),
            minutes_live: minutes(live_ms),
            minutes_in_groups: minutes(in_groups),
            minutes_replayed: minutes(replayed_ms),
            status,
            how,
        });
        present.push(intervals);
    }
    // By name in byte order, the same on every database whatever its collation.
    people.sort_by(|a, b| (&a.name, a.user_id).cmp(&(&b.name, b.user_id)));
    Ok(AttendanceReport {
        threshold_percent: threshold.percent(),
        scheduled_minutes: minutes(scheduled_ms),
        people,
        timeline: timeline(&present),
    })
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
    let mut tx = state.db.begin().await?;
    sqlx::query("update sessions set attendance_threshold = $1 where id = $2")
        .bind(i64::from(threshold.percent()))
        .bind(id)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    tracing::info!(session = id, percent = threshold.percent(), by = user.id, "attendance threshold changed");
    Ok(Json(ThresholdOutput { threshold_percent: threshold.percent() }))
}

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(show)).routes(routes!(show_csv)).routes(routes!(set_threshold))
}
