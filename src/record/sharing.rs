//! Sharing one entry: reflections are private until their owner shares an
//! entry, say with a mentor or for a performance review. Sharing makes a
//! random link that shows that entry (with its reflection, its needs and
//! priorities, and its evidence) to whoever holds it, and nothing else of
//! the record; stopping clears the token, so the old link answers 404.

use axum::{extract::State, response::Response};
use serde::Serialize;
use sqlx::Row;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::{
    entries::{self, Entry, Kind},
    goals::GoalKind,
    reflections::{serve_file, Evidence, Reader, Reflection},
};
use crate::{
    db,
    http::{
        error::{ApiError, ApiResult, ErrorBody},
        extract::{AuthUser, Json, Path},
    },
    AppState,
};

/// Starts sharing an entry of yours (the same link again if it is shared).
#[utoipa::path(security(("bearer" = []), ("cookie" = [])), post, path = "/api/me/record/entries/{id}/share", tag = "record",
    responses((status = 200, body = Entry), (status = 404, body = ErrorBody)))]
async fn share(State(state): State<AppState>, AuthUser(user): AuthUser, Path(id): Path<i64>) -> ApiResult<Json<Entry>> {
    entries::owned(&state.db, user.id, id).await?;
    sqlx::query(
        "update record_entries set shared_as = $1, updated_at = $2 where id = $3 and user_id = $4 and shared_as is null",
    )
    .bind(uuid::Uuid::new_v4().simple().to_string())
    .bind(db::now())
    .bind(id)
    .bind(user.id)
    .execute(&state.db.write)
    .await?;
    Ok(Json(entries::load_one(&state.db, user.id, id).await?))
}

/// Stops sharing an entry: its link stops working.
#[utoipa::path(security(("bearer" = []), ("cookie" = [])), delete, path = "/api/me/record/entries/{id}/share", tag = "record",
    responses((status = 200, body = Entry), (status = 404, body = ErrorBody)))]
async fn unshare(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    Path(id): Path<i64>,
) -> ApiResult<Json<Entry>> {
    entries::owned(&state.db, user.id, id).await?;
    sqlx::query("update record_entries set shared_as = null, updated_at = $1 where id = $2 and user_id = $3")
        .bind(db::now())
        .bind(id)
        .bind(user.id)
        .execute(&state.db.write)
        .await?;
    Ok(Json(entries::load_one(&state.db, user.id, id).await?))
}

/// A need or priority the shared entry serves.
#[derive(Serialize, ToSchema)]
pub struct SharedGoal {
    pub kind: GoalKind,
    pub title: String,
}

/// What a shared link shows: one entry, and whose it is.
#[derive(Serialize, ToSchema)]
pub struct SharedEntry {
    pub holder_name: String,
    pub kind: Kind,
    pub title: String,
    pub provider: String,
    pub occurred_at: chrono::DateTime<chrono::Utc>,
    pub minutes: i64,
    pub how: Option<String>,
    pub status: Option<String>,
    pub goals: Vec<SharedGoal>,
    pub reflection: Option<Reflection>,
    /// Links as they are; files at `/api/shared/{token}/evidence/{id}`.
    pub evidence: Vec<Evidence>,
    pub certificate_id: Option<String>,
}

/// The entry behind a share link; no sign-in needed.
#[utoipa::path(get, path = "/api/shared/{token}", tag = "record",
    responses((status = 200, body = SharedEntry), (status = 404, body = ErrorBody)))]
async fn shared(State(state): State<AppState>, Path(token): Path<String>) -> ApiResult<Json<SharedEntry>> {
    let row = sqlx::query(
        "select e.id, e.user_id, u.name from record_entries e join users u on u.id = e.user_id where e.shared_as = $1",
    )
    .bind(&token)
    .fetch_optional(&state.db.read)
    .await?
    .ok_or(ApiError::NotFound("shared entry"))?;
    let (id, user_id): (i64, i64) = (row.try_get("id")?, row.try_get("user_id")?);
    let entry = entries::load_one(&state.db, user_id, id).await?;
    let goals = super::goals::load(&state.db, user_id)
        .await?
        .into_iter()
        .filter(|g| entry.goal_ids.contains(&g.id))
        .map(|g| SharedGoal { kind: g.kind, title: g.title })
        .collect();
    let evidence = entry
        .evidence
        .into_iter()
        .map(|mut v| {
            if v.kind == "file" {
                v.url = format!("/api/shared/{token}/evidence/{}", v.id);
            }
            v
        })
        .collect();
    Ok(Json(SharedEntry {
        holder_name: row.try_get("name")?,
        kind: entry.kind,
        title: entry.title,
        provider: entry.provider,
        occurred_at: entry.occurred_at,
        minutes: entry.minutes,
        how: entry.how,
        status: entry.status,
        goals,
        reflection: entry.reflection,
        evidence,
        certificate_id: entry.certificate_id,
    }))
}

/// A file of a shared entry's evidence.
#[utoipa::path(get, path = "/api/shared/{token}/evidence/{id}", tag = "record",
    responses((status = 200, description = "the file, as the type it was uploaded as", content(
        (Vec<u8> = "application/pdf"), (Vec<u8> = "image/png"), (Vec<u8> = "image/jpeg"),
        (Vec<u8> = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"),
        (Vec<u8> = "application/vnd.openxmlformats-officedocument.presentationml.presentation"),
        (Vec<u8> = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"),
        (String = "text/plain"))), (status = 404, body = ErrorBody)))]
async fn shared_file(State(state): State<AppState>, Path((token, id)): Path<(String, i64)>) -> ApiResult<Response> {
    serve_file(&state, id, Reader::Share(token)).await
}

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(share, unshare)).routes(routes!(shared)).routes(routes!(shared_file))
}
