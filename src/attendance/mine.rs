//! A participant's own attendance across the programme: one entry per
//! session they attended live or by replay, with the CPD minutes credited.
//! The first piece of the professional record (issue 7); entries are derived
//! from the durable events each time, so they can never disagree with them.

use axum::extract::State;
use serde::Serialize;
use sqlx::Row;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::{report, How, Status};
use crate::{
    db::Db,
    http::{
        error::{ApiResult, ErrorBody},
        extract::{AuthUser, Json},
    },
    programme, AppState,
};

/// One attended session in your record.
#[derive(Serialize, ToSchema)]
#[schema(as = AttendedSession)]
pub struct Entry {
    pub session_id: i64,
    pub title: String,
    pub presenters: Vec<String>,
    pub starts_at: chrono::DateTime<chrono::Utc>,
    pub status: Status,
    pub how: Option<How>,
    pub minutes_live: i64,
    pub minutes_in_groups: i64,
    pub minutes_replayed: i64,
    /// The larger of live and replayed minutes, at most the scheduled
    /// length: watching the replay of what you attended adds nothing.
    pub minutes_credited: i64,
    /// The breakout groups you were in.
    pub groups: Vec<String>,
}

#[derive(Serialize, ToSchema)]
pub struct MyAttendance {
    pub total_minutes_credited: i64,
    /// Newest first.
    pub entries: Vec<Entry>,
}

/// Your attended sessions (live or by replay) and the CPD minutes credited.
#[utoipa::path(security(("bearer" = []), ("cookie" = [])), get, path = "/api/me/attendance", tag = "attendance",
    responses((status = 200, body = MyAttendance), (status = 401, body = ErrorBody)))]
async fn mine(State(state): State<AppState>, AuthUser(user): AuthUser) -> ApiResult<Json<MyAttendance>> {
    let entries = attended(&state.db, user.id).await?;
    Ok(Json(MyAttendance { total_minutes_credited: entries.iter().map(|e| e.minutes_credited).sum(), entries }))
}

/// Every session `user_id` attended live or by replay (not absent), newest
/// first: what the professional record's session entries are made from.
pub async fn attended(db: &Db, user_id: i64) -> ApiResult<Vec<Entry>> {
    let ids: Vec<i64> = sqlx::query_scalar(
        "select session_id from room_events where user_id = $1
         union select r.session_id from replay_segments s join recordings r on r.id = s.recording_id where s.user_id = $1",
    )
    .bind(user_id)
    .fetch_all(&db.read)
    .await?;
    let now = chrono::Utc::now().timestamp_millis();
    let mut entries = vec![];
    for id in ids {
        let Some(session) = programme::load(db, id).await? else { continue };
        let built = report::build(db, &session, now).await?;
        let Some(me) = built.people.into_iter().find(|p| p.user_id == user_id) else { continue };
        if me.status == Status::Absent {
            continue;
        }
        let groups: Vec<String> = sqlx::query(
            "select distinct group_name from breakout_moves
             where session_id = $1 and user_id = $2 and group_name is not null order by group_name",
        )
        .bind(id)
        .bind(user_id)
        .fetch_all(&db.read)
        .await?
        .iter()
        .map(|r| r.try_get("group_name"))
        .collect::<Result<_, _>>()?;
        entries.push(Entry {
            session_id: id,
            title: session.title.clone(),
            presenters: session.presenters.iter().map(|p| p.name.clone()).collect(),
            starts_at: session.starts_at,
            status: me.status,
            how: me.how,
            minutes_live: me.minutes_live,
            minutes_in_groups: me.minutes_in_groups,
            minutes_replayed: me.minutes_replayed,
            minutes_credited: me.minutes_live.max(me.minutes_replayed).min(built.scheduled_minutes),
            groups,
        });
    }
    entries.sort_by(|a, b| b.starts_at.cmp(&a.starts_at));
    Ok(entries)
}

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(mine))
}
