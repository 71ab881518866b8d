//! Calendar subscriptions: a private iCalendar feed per person (the sessions
//! they have a place at, are waiting for, or present) and, for organisers,
//! one for the whole programme and one per series. Outlook and Google
//! Calendar subscribe to the feed's URL and fetch it again on their own, so
//! the feed always says what is true now: each session under a stable UID,
//! its SEQUENCE raised by every change of time, title or description, and
//! STATUS:CANCELLED once it is cancelled.
//!
//! The URL carries an unguessable token (32 random bytes) and no sign-in, as
//! calendar clients cannot sign in; resetting it replaces the token, so the
//! old URL answers 404 from then on.

use axum::{
    extract::State,
    http::{header, StatusCode},
    response::IntoResponse,
};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sqlx::Row;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    auth::User,
    db::{self, Db},
    http::{
        error::{ApiError, ApiResult, ErrorBody},
        extract::{AuthUser, Json, Path},
    },
    mail::ics::{self, FeedEntry, FeedStatus},
    programme, AppState,
};

/// Sessions that ended longer ago than this leave the feeds.
const KEEP_PAST_DAYS: i64 = 90;
/// At most this many sessions in one feed.
const MAX_ENTRIES: i64 = 1000;

/// What a feed holds.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Scope {
    /// The sessions a person attends or presents.
    Mine,
    /// Every published session (organisers).
    Programme,
    /// The sessions of one series (organisers).
    Series(String),
}

impl Scope {
    fn key(&self) -> String {
        match self {
            Scope::Mine => "mine".into(),
            Scope::Programme => "programme".into(),
            Scope::Series(name) => format!("series:{name}"),
        }
    }

    fn parse(key: &str) -> Option<Scope> {
        match key {
            "mine" => Some(Scope::Mine),
            "programme" => Some(Scope::Programme),
            _ => key.strip_prefix("series:").filter(|s| !s.is_empty()).map(|s| Scope::Series(s.to_string())),
        }
    }

    fn title(&self) -> String {
        match self {
            Scope::Mine => "Staffroom: my sessions".into(),
            Scope::Programme => "Staffroom: the whole programme".into(),
            Scope::Series(name) => format!("Staffroom: {name}"),
        }
    }
}

/// One feed as its owner sees it.
#[derive(Debug, Serialize, ToSchema)]
pub struct Feed {
    /// `mine`, `programme` or `series:<name>`: what to send to reset it.
    pub scope: String,
    /// The calendar's name, as the calendar app will show it.
    pub title: String,
    /// The HTTPS address to paste into Outlook or Google Calendar ("From URL").
    pub url: String,
    /// The same address as `webcal://`, which opens the calendar app to subscribe.
    pub webcal_url: String,
}

fn new_token() -> String {
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn feed(state: &AppState, scope: &Scope, token: &str) -> Feed {
    let url = format!("{}/calendar/{token}.ics", state.public_url);
    let webcal_url = match url.split_once("://") {
        Some((_, rest)) => format!("webcal://{rest}"),
        None => url.clone(),
    };
    Feed { scope: scope.key(), title: scope.title(), url, webcal_url }
}

/// The scopes `user` may subscribe to: their own, and for organisers the
/// programme and each series that has a session.
async fn scopes_for(db: &Db, user: &User) -> Result<Vec<Scope>, sqlx::Error> {
    let mut scopes = vec![Scope::Mine];
    if user.is_organiser {
        scopes.push(Scope::Programme);
        let series: Vec<String> = sqlx::query_scalar(
            "select distinct series from sessions where series is not null and series <> '' order by series",
        )
        .fetch_all(&db.read)
        .await?;
        scopes.extend(series.into_iter().map(Scope::Series));
    }
    Ok(scopes)
}

/// `user`'s token for `scope`: the existing one, or a new one (`reset`
/// replaces it, and with it every URL handed out before).
async fn token_for(db: &Db, user_id: i64, scope: &Scope, reset: bool) -> Result<String, sqlx::Error> {
    let key = scope.key();
    let mut tx = db.begin().await?;
    if reset {
        sqlx::query("update calendar_feeds set token = $1, created_at = $2 where user_id = $3 and scope = $4")
            .bind(new_token())
            .bind(db::now())
            .bind(user_id)
            .bind(&key)
            .execute(&mut *tx)
            .await?;
    }
    sqlx::query(
        "insert into calendar_feeds (user_id, scope, token, created_at) values ($1, $2, $3, $4)
         on conflict (user_id, scope) do nothing",
    )
    .bind(user_id)
    .bind(&key)
    .bind(new_token())
    .bind(db::now())
    .execute(&mut *tx)
    .await?;
    let token: String = sqlx::query_scalar("select token from calendar_feeds where user_id = $1 and scope = $2")
        .bind(user_id)
        .bind(&key)
        .fetch_one(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(token)
}

/// My calendar feeds: my sessions, and for organisers the whole programme and
/// each series. Each address is made the first time it is asked for.
#[utoipa::path(get, path = "/api/me/calendars", tag = "calendar",
    responses((status = 200, body = [Feed]), (status = 401, body = ErrorBody)))]
async fn my_feeds(State(state): State<AppState>, AuthUser(user): AuthUser) -> ApiResult<Json<Vec<Feed>>> {
    let mut feeds = vec![];
    for scope in scopes_for(&state.db, &user).await? {
        let token = token_for(&state.db, user.id, &scope, false).await?;
        feeds.push(feed(&state, &scope, &token));
    }
    Ok(Json(feeds))
}

#[derive(Deserialize, ToSchema)]
pub struct ResetInput {
    /// The feed's `scope`, as listed.
    pub scope: String,
}

/// Reset a feed's address: the old one stops working at once (404), so a
/// link shared by mistake can be taken back. Calendars subscribed to it must
/// subscribe again with the new address.
#[utoipa::path(post, path = "/api/me/calendars/reset", tag = "calendar", request_body = ResetInput,
    responses((status = 200, body = Feed), (status = 401, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn reset(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    Json(input): Json<ResetInput>,
) -> ApiResult<Json<Feed>> {
    // Only the scopes this person is offered: a teacher cannot name an organiser's feed.
    let offered = scopes_for(&state.db, &user).await?;
    let scope = Scope::parse(input.scope.trim())
        .filter(|s| offered.contains(s))
        .ok_or_else(|| ApiError::invalid("scope", "no such calendar feed: use a scope from GET /api/me/calendars"))?;
    let token = token_for(&state.db, user.id, &scope, true).await?;
    tracing::info!(user = user.id, scope = %scope.key(), "calendar feed address reset");
    Ok(Json(feed(&state, &scope, &token)))
}

/// The sessions in a feed, soonest first. Drafts never appear; sessions that
/// ended more than [`KEEP_PAST_DAYS`] ago leave it.
async fn entries(state: &AppState, owner: &User, scope: &Scope) -> Result<Vec<FeedEntry>, sqlx::Error> {
    let since = db::now() - KEEP_PAST_DAYS * 86_400;
    let select = "select s.id, s.title, s.description, s.starts_at, s.ends_at, s.status, s.ics_sequence,
        (select r.status from registrations r where r.session_id = s.id and r.user_id = $1) as place
        from sessions s where s.status <> 'draft' and s.ends_at > $2";
    let filter = match scope {
        Scope::Mine => {
            " and (exists (select 1 from registrations r where r.session_id = s.id and r.user_id = $1 and r.status <> 'cancelled')
                or exists (select 1 from session_presenters p where p.session_id = s.id and p.user_id = $1))"
        }
        Scope::Programme => "",
        Scope::Series(_) => " and s.series = $3",
    };
    let sql = format!("{select}{filter} order by s.starts_at, s.id limit {MAX_ENTRIES}");
    let mut query = sqlx::query(&sql).bind(owner.id).bind(since);
    if let Scope::Series(name) = scope {
        query = query.bind(name);
    }
    let host = url::Url::parse(&state.public_url).ok().and_then(|u| u.host_str().map(str::to_string));
    let host = host.unwrap_or_else(|| "staffroom".into());
    query
        .fetch_all(&state.db.read)
        .await?
        .iter()
        .map(|r| {
            let id: i64 = r.try_get("id")?;
            let waiting = r.try_get::<Option<String>, _>("place")?.as_deref() == Some("waitlisted");
            let status = match r.try_get::<String, _>("status")?.as_str() {
                "cancelled" => FeedStatus::Cancelled,
                _ if waiting && *scope == Scope::Mine => FeedStatus::Tentative,
                _ => FeedStatus::Confirmed,
            };
            Ok(FeedEntry {
                uid: format!("session-{id}@{host}"),
                sequence: r.try_get::<i64, _>("ics_sequence")?.max(0) as u32,
                title: r.try_get("title")?,
                description: r.try_get("description")?,
                starts_at: programme::at(r.try_get("starts_at")?),
                ends_at: programme::at(r.try_get("ends_at")?),
                url: format!("{}/session.html?id={id}", state.public_url),
                status,
            })
        })
        .collect()
}

/// A calendar feed, for calendar apps: `text/calendar`, no sign-in (the
/// token in the address is the key). An unknown or reset token answers 404,
/// as does an organiser's feed once its owner is no longer an organiser.
#[utoipa::path(get, path = "/calendar/{file}", tag = "calendar",
    params(("file" = String, Path, description = "<token>.ics")),
    responses((status = 200, content_type = "text/calendar", body = String), (status = 404, body = ErrorBody)))]
async fn serve(State(state): State<AppState>, Path(file): Path<String>) -> ApiResult<impl IntoResponse> {
    let token = file.strip_suffix(".ics").unwrap_or(&file);
    // Tokens are 64 hex digits: anything else is not looked up at all.
    if token.len() != 64 || !token.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ApiError::NotFound("calendar feed"));
    }
    let row = sqlx::query("select user_id, scope from calendar_feeds where token = $1")
        .bind(token)
        .fetch_optional(&state.db.read)
        .await?
        .ok_or(ApiError::NotFound("calendar feed"))?;
    let owner =
        crate::auth::load_user(&state.db, row.try_get("user_id")?).await?.ok_or(ApiError::NotFound("calendar feed"))?;
    let scope = Scope::parse(&row.try_get::<String, _>("scope")?)
        .filter(|s| *s == Scope::Mine || owner.is_organiser)
        .ok_or(ApiError::NotFound("calendar feed"))?;
    let entries = entries(&state, &owner, &scope).await?;
    let text = ics::render_feed(&scope.title(), state.settings.time_zone, &entries);
    Ok((
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "text/calendar; charset=utf-8"),
            (header::CONTENT_DISPOSITION, "inline; filename=\"staffroom.ics\""),
            // Private to its owner; calendar apps fetch it again on their own schedule.
            (header::CACHE_CONTROL, "private, no-cache"),
        ],
        text,
    ))
}

/// Revokes every feed of a removed account, in the removal's transaction:
/// their addresses answer 404 from then on.
pub async fn forget(tx: &mut db::Tx, user_id: i64) -> Result<(), sqlx::Error> {
    sqlx::query("delete from calendar_feeds where user_id = $1").bind(user_id).execute(&mut **tx).await?;
    Ok(())
}

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(my_feeds)).routes(routes!(reset)).routes(routes!(serve))
}
