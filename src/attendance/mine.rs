//! A participant's own attendance across the programme: one entry per
//! session they attended live or by replay, with the CPD minutes credited.
//! The first piece of the professional record (issue 7). Read from the
//! settled results (`settle.rs`) and the person's own replay segments; a
//! session still running shows the person's live part so far.

use std::collections::HashMap;

use axum::extract::State;
use serde::Serialize;
use sqlx::Row;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::{minutes, settle, How, Status};
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
    /// Whether the figures are settled (the live part ended); while the
    /// session runs they are so far, and may still grow.
    pub settled: bool,
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
    let now = chrono::Utc::now().timestamp_millis();
    let results = settle::person_results(db, user_id, now).await?;
    let mut groups: HashMap<i64, Vec<String>> = HashMap::new();
    for row in sqlx::query(
        "select distinct session_id, group_name from breakout_moves
         where user_id = $1 and group_name is not null order by session_id, group_name",
    )
    .bind(user_id)
    .fetch_all(&db.read)
    .await?
    {
        groups.entry(row.try_get("session_id")?).or_default().push(row.try_get("group_name")?);
    }
    let mut entries = vec![];
    for r in results.into_iter().filter(|r| r.status != Status::Absent) {
        let Some(session) = programme::load(db, r.session_id).await? else { continue };
        entries.push(Entry {
            session_id: r.session_id,
            title: session.title.clone(),
            presenters: session.presenters.iter().map(|p| p.name.clone()).collect(),
            starts_at: session.starts_at,
            status: r.status,
            how: r.how,
            minutes_live: minutes(r.live.live_ms),
            minutes_in_groups: minutes(r.live.group_ms),
            minutes_replayed: minutes(r.replayed_ms),
            minutes_credited: r.minutes_credited(),
            groups: groups.remove(&r.session_id).unwrap_or_default(),
            settled: r.settled,
        });
    }
    entries.sort_by_key(|e| std::cmp::Reverse(e.starts_at));
    Ok(entries)
}

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(mine))
}
