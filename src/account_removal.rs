//! Removing an account: it touches registration (places given up), the
//! record (deleted with its files) and auth (the row anonymised, tokens
//! revoked), so it lives here, above all three, and none of them imports
//! another to do it.

use axum::{extract::State, http::StatusCode, response::IntoResponse};
use axum_extra::extract::cookie::{Cookie, CookieJar};
use serde::Deserialize;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    auth::{self, password},
    calendar, db,
    http::{
        error::{ApiError, ApiResult, ErrorBody},
        extract::{AuthUser, Json, SESSION_COOKIE},
    },
    record, registration, AppState,
};

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RemoveAccount {
    /// Your password, to confirm.
    pub password: String,
}

/// Removes your account (docs/record.md, "Removing an account"): places at
/// sessions still to come are given up (the waiting list moves up), your
/// professional record (entries, needs and priorities, reflections,
/// evidence files, certificates) is deleted, and the account row is
/// anonymised so organisers' past attendance figures still add up without
/// naming you. Every session signed in anywhere ends.
#[utoipa::path(security(("bearer" = []), ("cookie" = [])), delete, path = "/api/me", tag = "accounts", request_body = RemoveAccount,
    responses((status = 204), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn remove_me(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    jar: CookieJar,
    Json(body): Json<RemoveAccount>,
) -> ApiResult<impl IntoResponse> {
    let hash: String = sqlx::query_scalar("select password_hash from users where id = $1")
        .bind(user.id)
        .fetch_one(&state.db.read)
        .await?;
    if !password::verify(body.password, Some(hash)).await? {
        return Err(ApiError::forbidden("the password is wrong: the account is not removed"));
    }
    let upcoming: Vec<i64> = sqlx::query_scalar(
        "select r.id from registrations r join sessions s on s.id = r.session_id
         where r.user_id = $1 and r.status in ('confirmed', 'waitlisted') and s.ends_at > $2 and s.ended_at is null",
    )
    .bind(user.id)
    .bind(db::now())
    .fetch_all(&state.db.read)
    .await?;
    for registration in upcoming {
        registration::cancel(&state, registration, &user).await?;
    }
    let mut tx = state.db.begin().await?;
    let files = record::forget(&mut tx, user.id).await?;
    calendar::forget(&mut tx, user.id).await?;
    auth::anonymise(&mut tx, user.id).await?;
    tx.commit().await?;
    record::delete_files(&state.settings.data_dir, files).await;
    tracing::info!(user = user.id, "account removed");
    Ok((StatusCode::NO_CONTENT, jar.remove(Cookie::build(SESSION_COOKIE).path("/"))))
}

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(remove_me))
}
