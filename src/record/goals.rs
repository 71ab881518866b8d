//! Development needs ("behaviour management") and school priorities
//! ("reading across the curriculum"): a participant's own, entered by them,
//! and the links from record entries to them.

use axum::{extract::State, http::StatusCode};
use serde::{Deserialize, Serialize};
use sqlx::Row;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::{check_length, entries};
use crate::{
    db::{self, Db, Tx},
    http::{
        error::{ApiError, ApiResult, ErrorBody},
        extract::{AuthUser, Json, Path},
    },
    AppState,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum GoalKind {
    /// One of your own development needs.
    Need,
    /// One of your school's priorities.
    Priority,
}

impl GoalKind {
    pub fn as_str(self) -> &'static str {
        match self {
            GoalKind::Need => "need",
            GoalKind::Priority => "priority",
        }
    }
}

/// A development need or a school priority.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct Goal {
    pub id: i64,
    pub kind: GoalKind,
    pub title: String,
}

/// Your needs and priorities, needs first, each in the order you added them.
pub async fn load(db: &Db, user_id: i64) -> ApiResult<Vec<Goal>> {
    let rows = sqlx::query("select id, kind, title from record_goals where user_id = $1 order by kind, id")
        .bind(user_id)
        .fetch_all(&db.read)
        .await?;
    rows.iter()
        .map(|r| {
            let kind: String = r.try_get("kind")?;
            Ok(Goal {
                id: r.try_get("id")?,
                kind: if kind == "need" { GoalKind::Need } else { GoalKind::Priority },
                title: r.try_get("title")?,
            })
        })
        .collect::<Result<_, sqlx::Error>>()
        .map_err(Into::into)
}

/// Replaces the links of entry `entry_id` (already checked to be the
/// user's). Every goal must be the user's own: someone else's, or one that
/// does not exist, is refused and nothing changes.
pub(crate) async fn set_links(tx: &mut Tx, user_id: i64, entry_id: i64, goal_ids: &[i64]) -> ApiResult<()> {
    let mut ids = goal_ids.to_vec();
    ids.sort_unstable();
    ids.dedup();
    for &goal in &ids {
        let mine: Option<i64> = sqlx::query_scalar("select id from record_goals where id = $1 and user_id = $2")
            .bind(goal)
            .bind(user_id)
            .fetch_optional(&mut **tx)
            .await?;
        if mine.is_none() {
            return Err(ApiError::invalid("goal_ids", format!("{goal} is not one of your needs or priorities")));
        }
    }
    sqlx::query("delete from record_links where entry_id = $1").bind(entry_id).execute(&mut **tx).await?;
    for goal in ids {
        sqlx::query("insert into record_links (entry_id, goal_id) values ($1, $2)")
            .bind(entry_id)
            .bind(goal)
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GoalInput {
    pub kind: GoalKind,
    pub title: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GoalRename {
    pub title: String,
}

fn clean_title(title: &str) -> ApiResult<String> {
    let title = title.split_whitespace().collect::<Vec<_>>().join(" ");
    if title.is_empty() {
        return Err(ApiError::invalid("title", "give it a title, such as \"behaviour management\""));
    }
    check_length("title", &title, 120)?;
    Ok(title)
}

const MAX_GOALS: i64 = 100;

/// Your development needs and your school's priorities.
#[utoipa::path(security(("bearer" = []), ("cookie" = [])), get, path = "/api/me/goals", tag = "record", responses((status = 200, body = [Goal])))]
async fn list(State(state): State<AppState>, AuthUser(user): AuthUser) -> ApiResult<Json<Vec<Goal>>> {
    Ok(Json(load(&state.db, user.id).await?))
}

/// Adds a development need or a school priority.
#[utoipa::path(security(("bearer" = []), ("cookie" = [])), post, path = "/api/me/goals", tag = "record", request_body = GoalInput,
    responses((status = 201, body = Goal), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn create(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    Json(input): Json<GoalInput>,
) -> ApiResult<(StatusCode, Json<Goal>)> {
    let title = clean_title(&input.title)?;
    let mut tx = state.db.begin().await?;
    let count: i64 = sqlx::query_scalar("select count(*) from record_goals where user_id = $1")
        .bind(user.id)
        .fetch_one(&mut *tx)
        .await?;
    if count >= MAX_GOALS {
        return Err(ApiError::invalid("title", format!("you have {MAX_GOALS} needs and priorities already")));
    }
    let taken: Option<i64> =
        sqlx::query_scalar("select id from record_goals where user_id = $1 and kind = $2 and lower(title) = lower($3)")
            .bind(user.id)
            .bind(input.kind.as_str())
            .bind(&title)
            .fetch_optional(&mut *tx)
            .await?;
    if taken.is_some() {
        return Err(ApiError::conflict("title", format!("you already have the {} \"{title}\"", input.kind.as_str())));
    }
    let at = db::now();
    let id: i64 = sqlx::query_scalar(
        "insert into record_goals (user_id, kind, title, created_at, updated_at) values ($1, $2, $3, $4, $4) returning id",
    )
    .bind(user.id)
    .bind(input.kind.as_str())
    .bind(&title)
    .bind(at)
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(Goal { id, kind: input.kind, title })))
}

/// Renames a need or priority (its links stay).
#[utoipa::path(security(("bearer" = []), ("cookie" = [])), patch, path = "/api/me/goals/{id}", tag = "record", request_body = GoalRename,
    responses((status = 200, body = Goal), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn rename(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    Path(id): Path<i64>,
    Json(input): Json<GoalRename>,
) -> ApiResult<Json<Goal>> {
    let title = clean_title(&input.title)?;
    let goal = load(&state.db, user.id).await?.into_iter().find(|g| g.id == id).ok_or(ApiError::NotFound("goal"))?;
    let mut tx = state.db.begin().await?;
    let clash: Option<i64> = sqlx::query_scalar(
        "select id from record_goals where user_id = $1 and kind = $2 and lower(title) = lower($3) and id <> $4",
    )
    .bind(user.id)
    .bind(goal.kind.as_str())
    .bind(&title)
    .bind(id)
    .fetch_optional(&mut *tx)
    .await?;
    if clash.is_some() {
        return Err(ApiError::conflict("title", format!("you already have the {} \"{title}\"", goal.kind.as_str())));
    }
    sqlx::query("update record_goals set title = $1, updated_at = $2 where id = $3 and user_id = $4")
        .bind(&title)
        .bind(db::now())
        .bind(id)
        .bind(user.id)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(Json(Goal { title, ..goal }))
}

/// Deletes a need or priority; entries linked to it stay, unlinked.
#[utoipa::path(security(("bearer" = []), ("cookie" = [])), delete, path = "/api/me/goals/{id}", tag = "record",
    responses((status = 204), (status = 404, body = ErrorBody)))]
async fn remove(State(state): State<AppState>, AuthUser(user): AuthUser, Path(id): Path<i64>) -> ApiResult<StatusCode> {
    let mut tx = state.db.begin().await?;
    // Its links go with it (on delete cascade).
    let gone = sqlx::query("delete from record_goals where id = $1 and user_id = $2")
        .bind(id)
        .bind(user.id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    if gone == 0 {
        return Err(ApiError::NotFound("goal"));
    }
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Links {
    /// Every need and priority the entry serves (replaces the old list).
    pub goal_ids: Vec<i64>,
}

/// Links an entry of yours to your needs and priorities.
#[utoipa::path(security(("bearer" = []), ("cookie" = [])), put, path = "/api/me/record/entries/{id}/goals", tag = "record", request_body = Links,
    responses((status = 200, body = entries::Entry), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn link(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    Path(id): Path<i64>,
    Json(input): Json<Links>,
) -> ApiResult<Json<entries::Entry>> {
    entries::owned(&state.db, user.id, id).await?;
    let mut tx = state.db.begin().await?;
    set_links(&mut tx, user.id, id, &input.goal_ids).await?;
    tx.commit().await?;
    Ok(Json(entries::load_one(&state.db, user.id, id).await?))
}

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list, create)).routes(routes!(rename, remove)).routes(routes!(link))
}
