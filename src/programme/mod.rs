//! The programme: sessions (masterclasses, webinars, coaching, workshops),
//! their audiences, series and presenters. Organisers create, edit, publish
//! and cancel; everyone browses what is published.

mod life;
pub mod schedule;

use std::collections::HashMap;

use axum::{extract::State, http::StatusCode};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::{any::AnyRow, Row};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    auth::User,
    db::{self, Db, Tx},
    http::{
        error::{ApiError, ApiResult, ErrorBody},
        extract::{AuthUser, Json, MaybeUser, Path, Query},
    },
    registration, AppState,
};

pub use life::{fill_life, Life, OPENS_BEFORE_MINUTES};
pub use schedule::Schedule;

#[derive(Clone, Copy, Debug, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
#[schema(as = SessionKind)]
pub enum Kind {
    Masterclass,
    Webinar,
    Coaching,
    Workshop,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Masterclass => "masterclass",
            Kind::Webinar => "webinar",
            Kind::Coaching => "coaching",
            Kind::Workshop => "workshop",
        }
    }
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
#[schema(as = SessionStatus)]
pub enum Status {
    Draft,
    Published,
    Cancelled,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Draft => "draft",
            Status::Published => "published",
            Status::Cancelled => "cancelled",
        }
    }
    fn parse(s: &str) -> Status {
        match s {
            "published" => Status::Published,
            "cancelled" => Status::Cancelled,
            _ => Status::Draft,
        }
    }
}

#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct Presenter {
    pub id: i64,
    pub name: String,
    /// An organiser made them co-host: they may take the room live, record
    /// and run breakout groups.
    pub cohost: bool,
    /// The account's address: shown to organisers only, so that the edit
    /// form can send the presenters back unchanged.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
}

/// A session as shown in the programme.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct Session {
    pub id: i64,
    pub title: String,
    pub description: String,
    pub kind: Kind,
    pub series: Option<String>,
    pub subject: Option<String>,
    pub phase: Option<String>,
    pub audiences: Vec<String>,
    pub presenters: Vec<Presenter>,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    pub capacity: i64,
    pub registered: i64,
    pub waitlisted: i64,
    pub seats_left: i64,
    pub status: Status,
    /// Recording starts by itself when a host takes the room live.
    pub record_automatically: bool,
    /// Where the session is in its life: upcoming, open (the room is open),
    /// live, ended, settled. See [`Life`].
    pub life: Life,
    /// A finished recording exists (who may watch it is the recording's own rule).
    pub replay_ready: bool,
    /// The caller's own registration, when signed in and registered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub my_registration: Option<registration::Mine>,
    #[serde(skip)]
    pub ics_sequence: i64,
    /// The journal's marks (Unix ms), from which `life` is worked out.
    #[serde(skip)]
    live_at: Option<i64>,
    #[serde(skip)]
    ended_at: Option<i64>,
    #[serde(skip)]
    live_grace_ms: i64,
    #[serde(skip)]
    recordings_running: i64,
}

const SESSION_SELECT: &str = "select s.id, s.title, s.description, s.kind, s.series, s.subject, s.phase,
        s.starts_at, s.ends_at, s.capacity, s.status, s.ics_sequence, s.record_automatically,
        s.live_at, s.ended_at, s.live_grace_ms,
        (select count(*) from recordings c where c.session_id = s.id and c.status = 'recording') as recordings_running,
        (select count(*) from recordings c where c.session_id = s.id and c.status <> 'recording') as recordings_ready,
        (select count(*) from registrations r where r.session_id = s.id and r.status = 'confirmed') as registered,
        (select count(*) from registrations r where r.session_id = s.id and r.status = 'waitlisted') as waitlisted
    from sessions s";

fn session_from_row(row: &AnyRow) -> Result<Session, sqlx::Error> {
    let capacity: i64 = row.try_get("capacity")?;
    let registered: i64 = row.try_get("registered")?;
    Ok(Session {
        id: row.try_get("id")?,
        title: row.try_get("title")?,
        description: row.try_get("description")?,
        kind: serde_json::from_value(serde_json::Value::String(row.try_get("kind")?)).unwrap_or(Kind::Webinar),
        series: row.try_get("series")?,
        subject: row.try_get("subject")?,
        phase: row.try_get("phase")?,
        audiences: vec![],
        presenters: vec![],
        starts_at: at(row.try_get("starts_at")?),
        ends_at: at(row.try_get("ends_at")?),
        capacity,
        registered,
        waitlisted: row.try_get("waitlisted")?,
        seats_left: (capacity - registered).max(0),
        status: Status::parse(&row.try_get::<String, _>("status")?),
        record_automatically: row.try_get::<i64, _>("record_automatically")? != 0,
        // Worked out by `fill_life`, which needs the rooms.
        life: Life::Upcoming,
        replay_ready: row.try_get::<i64, _>("recordings_ready")? > 0,
        my_registration: None,
        ics_sequence: row.try_get("ics_sequence")?,
        live_at: row.try_get("live_at")?,
        ended_at: row.try_get("ended_at")?,
        live_grace_ms: row.try_get("live_grace_ms")?,
        recordings_running: row.try_get("recordings_running")?,
    })
}

pub fn at(secs: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(secs, 0).unwrap_or_default()
}

/// Fills audiences and presenters for a list of sessions with two queries.
async fn fill_details(db: &Db, sessions: &mut [Session]) -> Result<(), sqlx::Error> {
    if sessions.is_empty() {
        return Ok(());
    }
    let ids = sessions.iter().map(|s| s.id.to_string()).collect::<Vec<_>>().join(",");
    let mut audiences: HashMap<i64, Vec<String>> = HashMap::new();
    // The ids are integers we formatted ourselves, so inlining them is safe.
    for row in sqlx::query(&format!(
        "select session_id, audience from session_audiences where session_id in ({ids}) order by audience"
    ))
    .fetch_all(&db.read)
    .await?
    {
        audiences.entry(row.try_get("session_id")?).or_default().push(row.try_get("audience")?);
    }
    let mut presenters: HashMap<i64, Vec<Presenter>> = HashMap::new();
    for row in sqlx::query(&format!(
        "select p.session_id, p.cohost, u.id, u.name from session_presenters p join users u on u.id = p.user_id
         where p.session_id in ({ids}) order by u.name"
    ))
    .fetch_all(&db.read)
    .await?
    {
        presenters.entry(row.try_get("session_id")?).or_default().push(Presenter {
            id: row.try_get("id")?,
            name: row.try_get("name")?,
            cohost: row.try_get::<i64, _>("cohost")? != 0,
            email: None,
        });
    }
    for s in sessions {
        s.audiences = audiences.remove(&s.id).unwrap_or_default();
        s.presenters = presenters.remove(&s.id).unwrap_or_default();
    }
    Ok(())
}

/// Loads one session with its details, whatever its status.
pub async fn load(db: &Db, id: i64) -> Result<Option<Session>, sqlx::Error> {
    let Some(row) = sqlx::query(&format!("{SESSION_SELECT} where s.id = $1")).bind(id).fetch_optional(&db.read).await?
    else {
        return Ok(None);
    };
    let mut sessions = vec![session_from_row(&row)?];
    fill_details(db, &mut sessions).await?;
    Ok(sessions.pop())
}

/// Loads one session with its life worked out, as the API returns it.
pub async fn load_live(state: &AppState, id: i64) -> ApiResult<Session> {
    let mut session = load(&state.db, id).await?.ok_or(ApiError::NotFound("session"))?;
    fill_life(state, std::slice::from_mut(&mut session)).await?;
    Ok(session)
}

pub async fn is_presenter(db: &Db, session_id: i64, user_id: i64) -> Result<bool, sqlx::Error> {
    let n: i64 = sqlx::query_scalar("select count(*) from session_presenters where session_id = $1 and user_id = $2")
        .bind(session_id)
        .bind(user_id)
        .fetch_one(&db.read)
        .await?;
    Ok(n > 0)
}

/// A session anyone may see: published or cancelled ones, and drafts for
/// organisers and the session's presenters.
pub async fn visible(db: &Db, id: i64, user: Option<&User>) -> ApiResult<Session> {
    let session = load(db, id).await?.ok_or(ApiError::NotFound("session"))?;
    if session.status == Status::Draft {
        let allowed = match user {
            Some(u) => u.is_organiser || is_presenter(db, id, u.id).await?,
            None => false,
        };
        if !allowed {
            return Err(ApiError::NotFound("session"));
        }
    }
    Ok(session)
}

#[derive(Deserialize, IntoParams)]
pub struct ProgrammeQuery {
    /// e.g. ect, leaders
    pub audience: Option<String>,
    pub subject: Option<String>,
    pub series: Option<String>,
    /// Sessions starting at or after this time (RFC 3339).
    pub from: Option<DateTime<Utc>>,
    /// Sessions starting before this time (RFC 3339).
    pub to: Option<DateTime<Utc>>,
    /// Organisers only: include drafts, cancelled and past sessions.
    #[serde(default)]
    pub all: bool,
    /// Published sessions that are over instead, newest first (at most 50).
    #[serde(default)]
    pub past: bool,
}

/// The programme: published sessions that have not ended, soonest first
/// (with `past`, those that have, newest first).
#[utoipa::path(security((), ("bearer" = []), ("cookie" = [])), get, path = "/api/sessions", tag = "programme", params(ProgrammeQuery),
    responses((status = 200, body = [Session]), (status = 403, body = ErrorBody)))]
async fn list(
    State(state): State<AppState>,
    MaybeUser(user): MaybeUser,
    Query(q): Query<ProgrammeQuery>,
) -> ApiResult<Json<Vec<Session>>> {
    let mut sql = format!("{SESSION_SELECT} where 1 = 1");
    let mut texts: Vec<String> = vec![];
    let mut ints: Vec<i64> = vec![];
    let next = |texts: &Vec<String>, ints: &Vec<i64>| texts.len() + ints.len() + 1;
    if q.all {
        user.as_ref().ok_or(ApiError::Unauthorized)?.require_organiser()?;
    } else if q.past {
        // Over early (a host ended it) or started: `fill_life` says which are over.
        sql.push_str(&format!(
            " and s.status = 'published' and (s.ended_at is not null or s.starts_at <= {})",
            db::now()
        ));
    } else {
        // A room running past its scheduled end is still on; one a host ended is not.
        sql.push_str(&format!(
            " and s.status = 'published' and s.ended_at is null and (s.ends_at > {} or s.live_at is not null)",
            db::now()
        ));
    }
    // Text parameters are bound first, then integers, so numbering stays simple.
    for (col, value) in [("series", &q.series), ("subject", &q.subject)] {
        if let Some(v) = value.as_deref().map(str::trim).filter(|v| !v.is_empty()) {
            sql.push_str(&format!(" and lower(s.{col}) = lower(${})", next(&texts, &ints)));
            texts.push(v.to_string());
        }
    }
    if let Some(a) = q.audience.as_deref().map(str::trim).filter(|v| !v.is_empty()) {
        sql.push_str(&format!(
            " and exists (select 1 from session_audiences a where a.session_id = s.id and a.audience = ${})",
            next(&texts, &ints)
        ));
        texts.push(a.to_lowercase());
    }
    for (op, value) in [(">=", q.from), ("<", q.to)] {
        if let Some(t) = value {
            sql.push_str(&format!(" and s.starts_at {op} ${}", next(&texts, &ints)));
            ints.push(t.timestamp());
        }
    }
    sql.push_str(if q.past {
        " order by s.starts_at desc, s.id desc limit 200"
    } else {
        " order by s.starts_at, s.id limit 500"
    });
    let mut query = sqlx::query(&sql);
    for t in &texts {
        query = query.bind(t);
    }
    for i in &ints {
        query = query.bind(*i);
    }
    let rows = query.fetch_all(&state.db.read).await?;
    let mut sessions = rows.iter().map(session_from_row).collect::<Result<Vec<_>, _>>()?;
    fill_life(&state, &mut sessions).await?;
    if !q.all {
        sessions.retain(|s| s.life.is_over() == q.past);
        sessions.truncate(if q.past { 50 } else { 500 });
    }
    fill_details(&state.db, &mut sessions).await?;
    if let Some(u) = &user {
        registration::fill_mine(&state.db, u.id, &mut sessions).await?;
    }
    Ok(Json(sessions))
}

/// Presenters' addresses, for organisers only (the edit form sends them back).
async fn fill_presenter_emails(db: &Db, session: &mut Session) -> Result<(), sqlx::Error> {
    for p in &mut session.presenters {
        p.email = crate::auth::load_user(db, p.id).await?.map(|u| u.email);
    }
    Ok(())
}

/// One session, with the caller's registration if any.
#[utoipa::path(security((), ("bearer" = []), ("cookie" = [])), get, path = "/api/sessions/{id}", tag = "programme",
    responses((status = 200, body = Session), (status = 404, body = ErrorBody)))]
async fn show(
    State(state): State<AppState>,
    MaybeUser(user): MaybeUser,
    Path(id): Path<i64>,
) -> ApiResult<Json<Session>> {
    let mut session = visible(&state.db, id, user.as_ref()).await?;
    fill_life(&state, std::slice::from_mut(&mut session)).await?;
    if let Some(u) = &user {
        registration::fill_mine(&state.db, u.id, std::slice::from_mut(&mut session)).await?;
        if u.is_organiser {
            fill_presenter_emails(&state.db, &mut session).await?;
        }
    }
    Ok(Json(session))
}

/// What an organiser sends to create or replace a session.
#[derive(Deserialize, ToSchema)]
pub struct SessionInput {
    pub title: String,
    #[serde(default)]
    pub description: String,
    pub kind: Kind,
    pub series: Option<String>,
    pub subject: Option<String>,
    pub phase: Option<String>,
    #[serde(default)]
    pub audiences: Vec<String>,
    /// Presenters' account email addresses.
    #[serde(default)]
    pub presenters: Vec<String>,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    pub capacity: i64,
    /// Draft (default) or published.
    #[serde(default)]
    pub status: Option<Status>,
    /// Start recording by itself when a host takes the room live (default false).
    #[serde(default)]
    pub record_automatically: bool,
    /// Publishing a session whose start has passed is refused (422, field
    /// `confirm_past`) unless this is true: a date in the past is more often
    /// a slip than a wish to list a session nobody can attend from the start.
    #[serde(default)]
    pub confirm_past: bool,
}

/// A session input checked against the rules.
struct Valid {
    title: String,
    description: String,
    kind: Kind,
    series: Option<String>,
    subject: Option<String>,
    phase: Option<String>,
    audiences: Vec<String>,
    presenter_ids: Vec<i64>,
    starts_at: i64,
    ends_at: i64,
    capacity: i64,
    record_automatically: bool,
}

fn optional_text(v: &Option<String>) -> Option<String> {
    v.as_deref().map(str::trim).filter(|s| !s.is_empty()).map(str::to_string)
}

impl SessionInput {
    async fn validate(&self, db: &Db) -> ApiResult<Valid> {
        let title = self.title.trim();
        if title.is_empty() {
            return Err(ApiError::invalid("title", "title is required"));
        }
        if title.chars().count() > 200 {
            return Err(ApiError::invalid("title", "title must be at most 200 characters"));
        }
        if self.description.chars().count() > 10_000 {
            return Err(ApiError::invalid("description", "description must be at most 10,000 characters"));
        }
        if self.capacity < 1 || self.capacity > 100_000 {
            return Err(ApiError::invalid("capacity", "capacity must be between 1 and 100,000"));
        }
        check_times(self.starts_at, self.ends_at)?;
        let mut audiences: Vec<String> =
            self.audiences.iter().map(|a| a.trim().to_lowercase()).filter(|a| !a.is_empty()).collect();
        audiences.sort();
        audiences.dedup();
        if audiences.iter().any(|a| a.chars().count() > 60) {
            return Err(ApiError::invalid("audiences", "an audience tag must be at most 60 characters"));
        }
        let mut presenter_ids = vec![];
        for email in &self.presenters {
            let user = crate::auth::find_user_by_email(db, email.trim()).await?.ok_or_else(|| {
                ApiError::invalid(
                    "presenters",
                    format!("no account has the address {:?}; ask them to sign up first", email.trim()),
                )
            })?;
            if !presenter_ids.contains(&user.id) {
                presenter_ids.push(user.id);
            }
        }
        Ok(Valid {
            title: title.to_string(),
            description: self.description.trim().to_string(),
            kind: self.kind,
            series: optional_text(&self.series),
            subject: optional_text(&self.subject),
            phase: optional_text(&self.phase),
            audiences,
            presenter_ids,
            starts_at: self.starts_at.timestamp(),
            ends_at: self.ends_at.timestamp(),
            capacity: self.capacity,
            record_automatically: self.record_automatically,
        })
    }
}

/// A time as the error messages show it.
fn shown(t: DateTime<Utc>) -> String {
    t.format("%H:%M UTC on %-d %B %Y").to_string()
}

/// The end must come after the start, at most 12 hours later; each message
/// says which of these is wrong, with the times as they were understood.
fn check_times(starts_at: DateTime<Utc>, ends_at: DateTime<Utc>) -> ApiResult<()> {
    if ends_at < starts_at {
        return Err(ApiError::invalid(
            "ends_at",
            format!(
                "the end ({}) is before the start ({}): choose an end after the start",
                shown(ends_at),
                shown(starts_at)
            ),
        ));
    }
    if ends_at == starts_at {
        return Err(ApiError::invalid("ends_at", "the end is the same as the start: choose an end after the start"));
    }
    let length = ends_at - starts_at;
    if length > chrono::Duration::hours(12) {
        let (h, m) = (length.num_hours(), length.num_minutes() % 60);
        return Err(ApiError::invalid(
            "ends_at",
            format!(
                "a session can last at most 12 hours; this one would last {h} hours{}",
                if m > 0 { format!(" {m} minutes") } else { String::new() }
            ),
        ));
    }
    Ok(())
}

/// Publishing a session that has already started needs the organiser to say
/// they mean it (see [`SessionInput::confirm_past`]).
fn check_past_start(starts_at: DateTime<Utc>, confirmed: bool) -> ApiResult<()> {
    if starts_at < Utc::now() && !confirmed {
        return Err(ApiError::invalid(
            "confirm_past",
            format!(
                "this session's start ({}) has already passed: check the date, or confirm that you want to publish it anyway",
                shown(starts_at)
            ),
        ));
    }
    Ok(())
}

async fn write_details(tx: &mut Tx, id: i64, v: &Valid) -> Result<(), sqlx::Error> {
    sqlx::query("update sessions set record_automatically = $1 where id = $2")
        .bind(v.record_automatically as i64)
        .bind(id)
        .execute(&mut **tx)
        .await?;
    sqlx::query("delete from session_audiences where session_id = $1").bind(id).execute(&mut **tx).await?;
    for a in &v.audiences {
        sqlx::query("insert into session_audiences (session_id, audience) values ($1, $2)")
            .bind(id)
            .bind(a)
            .execute(&mut **tx)
            .await?;
    }
    // Presenters who stay keep their row, and with it their co-host grant.
    let before: Vec<i64> = sqlx::query_scalar("select user_id from session_presenters where session_id = $1")
        .bind(id)
        .fetch_all(&mut **tx)
        .await?;
    for gone in before.iter().filter(|p| !v.presenter_ids.contains(p)) {
        sqlx::query("delete from session_presenters where session_id = $1 and user_id = $2")
            .bind(id)
            .bind(gone)
            .execute(&mut **tx)
            .await?;
    }
    for p in v.presenter_ids.iter().filter(|p| !before.contains(p)) {
        sqlx::query("insert into session_presenters (session_id, user_id) values ($1, $2)")
            .bind(id)
            .bind(p)
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

/// Create a session (organisers).
#[utoipa::path(security(("bearer" = []), ("cookie" = [])), post, path = "/api/sessions", tag = "programme", request_body = SessionInput,
    responses((status = 201, body = Session), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn create(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    Json(input): Json<SessionInput>,
) -> ApiResult<(StatusCode, Json<Session>)> {
    user.require_organiser()?;
    let v = input.validate(&state.db).await?;
    let status = match input.status {
        None | Some(Status::Draft) => Status::Draft,
        Some(Status::Published) => Status::Published,
        Some(Status::Cancelled) => return Err(ApiError::invalid("status", "a new session cannot start cancelled")),
    };
    if status == Status::Published {
        check_past_start(input.starts_at, input.confirm_past)?;
    }
    let now = db::now();
    let mut tx = state.db.begin().await?;
    let id: i64 = sqlx::query_scalar(
        "insert into sessions (title, description, kind, series, subject, phase, starts_at, ends_at, capacity, status,
                               created_by, created_at, updated_at, live_grace_ms)
         values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $12, $13) returning id",
    )
    .bind(&v.title)
    .bind(&v.description)
    .bind(v.kind.as_str())
    .bind(&v.series)
    .bind(&v.subject)
    .bind(&v.phase)
    .bind(v.starts_at)
    .bind(v.ends_at)
    .bind(v.capacity)
    .bind(status.as_str())
    .bind(user.id)
    .bind(now)
    .bind(i64::try_from(state.settings.live_grace.as_millis()).unwrap_or(i64::MAX))
    .fetch_one(&mut *tx)
    .await?;
    write_details(&mut tx, id, &v).await?;
    tx.commit().await?;
    tracing::info!(session = id, organiser = user.id, "session created");
    Ok((StatusCode::CREATED, Json(load_live(&state, id).await?)))
}

/// Replace a session's details (organisers). A change of time, title or
/// description sends every registrant a calendar update with a higher
/// SEQUENCE (and shows in the calendar feeds); more places promote
/// people from the waiting list.
#[utoipa::path(security(("bearer" = []), ("cookie" = [])), put, path = "/api/sessions/{id}", tag = "programme", request_body = SessionInput,
    responses((status = 200, body = Session), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody, description = "the session changed status after it was read (e.g. cancelled a moment ago)"), (status = 422, body = ErrorBody)))]
async fn update(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    Path(id): Path<i64>,
    Json(input): Json<SessionInput>,
) -> ApiResult<Json<Session>> {
    user.require_organiser()?;
    let before = load(&state.db, id).await?.ok_or(ApiError::NotFound("session"))?;
    if before.status == Status::Cancelled {
        return Err(ApiError::conflict("status", "this session is cancelled and can no longer be changed"));
    }
    let v = input.validate(&state.db).await?;
    let status = match input.status {
        None => before.status,
        Some(Status::Cancelled) => {
            return Err(ApiError::invalid("status", "cancel a session with POST /api/sessions/{id}/cancel"))
        }
        Some(s) => s,
    };
    let moved = v.starts_at != before.starts_at.timestamp() || v.ends_at != before.ends_at.timestamp();
    // What a calendar shows: a change to any of it raises SEQUENCE and sends
    // an update, so calendars never keep an old time or an old title.
    let changed = moved || v.title != before.title || v.description != before.description;
    // Publishing now, or moving a published session, to a start already past.
    if status == Status::Published && (before.status != Status::Published || moved) {
        check_past_start(input.starts_at, input.confirm_past)?;
    }
    let mut tx = state.db.begin().await?;
    let updated = sqlx::query(
        "update sessions set title = $1, description = $2, kind = $3, series = $4, subject = $5, phase = $6,
                starts_at = $7, ends_at = $8, capacity = $9, status = $10, ics_sequence = ics_sequence + $11, updated_at = $12
         where id = $13 and status = $14",
    )
    .bind(&v.title)
    .bind(&v.description)
    .bind(v.kind.as_str())
    .bind(&v.series)
    .bind(&v.subject)
    .bind(&v.phase)
    .bind(v.starts_at)
    .bind(v.ends_at)
    .bind(v.capacity)
    .bind(status.as_str())
    .bind(changed as i64)
    .bind(db::now())
    .bind(id)
    .bind(before.status.as_str())
    .execute(&mut *tx)
    .await?;
    if updated.rows_affected() == 0 {
        return Err(changed_meanwhile(&state.db, id, "your changes were not saved").await);
    }
    write_details(&mut tx, id, &v).await?;
    if changed {
        registration::session_changed(&state, &mut tx, id, moved).await?;
    }
    registration::promote_waitlist(&state, &mut tx, id).await?;
    tx.commit().await?;
    state.mail_wake.notify_one();
    tracing::info!(session = id, moved, changed, "session updated");
    Ok(Json(load_live(&state, id).await?))
}

#[derive(Deserialize, IntoParams)]
pub struct PublishQuery {
    /// Publish even though the start has passed (otherwise 422, field `confirm_past`).
    #[serde(default)]
    pub confirm_past: bool,
}

/// A status change is conditional on the status it was decided on (`where
/// status = $read`): otherwise an edit or a publish that read the session
/// just before a cancellation committed would quietly bring it back. This is
/// the 409 for when the status moved in between.
async fn changed_meanwhile(db: &Db, id: i64, consequence: &str) -> ApiError {
    let now = match load(db, id).await {
        Ok(Some(s)) => s.status,
        Ok(None) => return ApiError::NotFound("session"),
        Err(e) => return e.into(),
    };
    let what = match now {
        Status::Cancelled => "this session was cancelled a moment ago".to_string(),
        other => format!("this session's status changed a moment ago (it is now {})", other.as_str()),
    };
    ApiError::conflict("status", format!("{what}: {consequence}. Reload it and try again"))
}

/// Publish a draft (organisers).
#[utoipa::path(security(("bearer" = []), ("cookie" = [])), post, path = "/api/sessions/{id}/publish", tag = "programme", params(PublishQuery),
    responses((status = 200, body = Session), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody),
              (status = 422, body = ErrorBody, description = "the start has passed and `confirm_past` was not given")))]
async fn publish(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    Path(id): Path<i64>,
    Query(q): Query<PublishQuery>,
) -> ApiResult<Json<Session>> {
    user.require_organiser()?;
    let session = load(&state.db, id).await?.ok_or(ApiError::NotFound("session"))?;
    if session.status == Status::Cancelled {
        return Err(ApiError::conflict("status", "a cancelled session cannot be published"));
    }
    if session.status != Status::Published {
        check_past_start(session.starts_at, q.confirm_past)?;
    }
    let mut tx = state.db.begin().await?;
    let published =
        sqlx::query("update sessions set status = 'published', updated_at = $1 where id = $2 and status = $3")
            .bind(db::now())
            .bind(id)
            .bind(session.status.as_str())
            .execute(&mut *tx)
            .await?;
    if published.rows_affected() == 0 {
        return Err(changed_meanwhile(&state.db, id, "it was not published").await);
    }
    tx.commit().await?;
    Ok(Json(load_live(&state, id).await?))
}

/// Cancel a session (organisers): every registrant gets a calendar CANCEL.
#[utoipa::path(security(("bearer" = []), ("cookie" = [])), post, path = "/api/sessions/{id}/cancel", tag = "programme",
    responses((status = 200, body = Session), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn cancel(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    Path(id): Path<i64>,
) -> ApiResult<Json<Session>> {
    user.require_organiser()?;
    let session = load(&state.db, id).await?.ok_or(ApiError::NotFound("session"))?;
    if session.status == Status::Cancelled {
        return Err(ApiError::conflict("status", "this session is already cancelled"));
    }
    let mut tx = state.db.begin().await?;
    // Two cancellations at once must not mail everyone twice.
    let cancelled = sqlx::query(
        "update sessions set status = 'cancelled', ics_sequence = ics_sequence + 1, updated_at = $1
         where id = $2 and status = $3",
    )
    .bind(db::now())
    .bind(id)
    .bind(session.status.as_str())
    .execute(&mut *tx)
    .await?;
    if cancelled.rows_affected() == 0 {
        return Err(changed_meanwhile(&state.db, id, "it was not cancelled again").await);
    }
    registration::session_cancelled(&state, &mut tx, id).await?;
    tx.commit().await?;
    state.mail_wake.notify_one();
    tracing::info!(session = id, "session cancelled");
    Ok(Json(load_live(&state, id).await?))
}

#[derive(Deserialize, ToSchema)]
pub struct CohostInput {
    /// True: the presenter may take the room live, record and run breakout
    /// groups. False: a plain presenter again.
    pub cohost: bool,
}

/// Make a presenter a co-host, or a plain presenter again (organisers). The
/// grant goes into the room token they get next; a token already issued
/// keeps what it said until it expires (two minutes), and a room already
/// entered keeps it until they rejoin.
#[utoipa::path(put, path = "/api/sessions/{id}/presenters/{user_id}/cohost", tag = "programme",
    request_body = CohostInput,
    responses((status = 200, body = Session), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody, description = "no such session, or that person does not present it"),
              (status = 409, body = ErrorBody)))]
async fn set_cohost(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    Path((id, presenter)): Path<(i64, i64)>,
    Json(input): Json<CohostInput>,
) -> ApiResult<Json<Session>> {
    user.require_organiser()?;
    let session = load(&state.db, id).await?.ok_or(ApiError::NotFound("session"))?;
    if session.status == Status::Cancelled {
        return Err(ApiError::conflict("status", "this session is cancelled and can no longer be changed"));
    }
    let mut tx = state.db.begin().await?;
    let changed = sqlx::query("update session_presenters set cohost = $1 where session_id = $2 and user_id = $3")
        .bind(input.cohost as i64)
        .bind(id)
        .bind(presenter)
        .execute(&mut *tx)
        .await?;
    if changed.rows_affected() == 0 {
        return Err(ApiError::NotFound("presenter"));
    }
    tx.commit().await?;
    tracing::info!(session = id, presenter, cohost = input.cohost, by = user.id, "co-host grant changed");
    let mut session = load_live(&state, id).await?;
    fill_presenter_emails(&state.db, &mut session).await?;
    Ok(Json(session))
}

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(show, update))
        .routes(routes!(publish))
        .routes(routes!(cancel))
        .routes(routes!(set_cohost))
}
