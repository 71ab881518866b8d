//! Registration: a free place at a session, or a place on its waiting list.
//!
//! Every change of place runs in one write transaction that first touches the
//! session row (`lock_session`), so concurrent registrations for one session are
//! serialised on PostgreSQL as they are on SQLite, and capacity is never
//! exceeded. The emails each change causes are queued in the same transaction.

pub mod invitations;
pub mod reminders;

use axum::{
    extract::State,
    http::{header, StatusCode},
    response::IntoResponse,
};
use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::Row;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    auth::User,
    db::{self, Db, Tx},
    http::{
        error::{ApiError, ApiResult, ErrorBody},
        extract::{AuthUser, Json, Path},
    },
    mail::{self, templates},
    programme::{self, Session, Status},
    AppState,
};

#[derive(Clone, Copy, Debug, Serialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum RegStatus {
    Confirmed,
    Waitlisted,
    Cancelled,
}

impl RegStatus {
    fn parse(s: &str) -> RegStatus {
        match s {
            "confirmed" => RegStatus::Confirmed,
            "waitlisted" => RegStatus::Waitlisted,
            _ => RegStatus::Cancelled,
        }
    }
}

/// The caller's own registration for a session.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct Mine {
    pub id: i64,
    pub status: RegStatus,
    /// 1-based place on the waiting list, when waitlisted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub waitlist_position: Option<i64>,
}

/// Now in Unix milliseconds: waiting-list order.
fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

/// 1-based place on the waiting list of the registration `id` queued at `queued_at`.
async fn position_in(
    ex: &mut sqlx::AnyConnection,
    session_id: i64,
    id: i64,
    queued_at: i64,
) -> Result<i64, sqlx::Error> {
    let ahead: i64 = sqlx::query_scalar(
        "select count(*) from registrations where session_id = $1 and status = 'waitlisted'
         and (queued_at < $2 or (queued_at = $2 and id < $3))",
    )
    .bind(session_id)
    .bind(queued_at)
    .bind(id)
    .fetch_one(ex)
    .await?;
    Ok(ahead + 1)
}

/// Sets `my_registration` on each session for `user_id`.
pub async fn fill_mine(db: &Db, user_id: i64, sessions: &mut [Session]) -> Result<(), sqlx::Error> {
    let mut conn = db.read.acquire().await?;
    for s in sessions {
        let row = sqlx::query("select id, status, queued_at from registrations where session_id = $1 and user_id = $2")
            .bind(s.id)
            .bind(user_id)
            .fetch_optional(&mut *conn)
            .await?;
        s.my_registration = match row {
            None => None,
            Some(r) => {
                let id: i64 = r.try_get("id")?;
                let status = RegStatus::parse(&r.try_get::<String, _>("status")?);
                let waitlist_position = if status == RegStatus::Waitlisted {
                    Some(position_in(&mut conn, s.id, id, r.try_get("queued_at")?).await?)
                } else {
                    None
                };
                (status != RegStatus::Cancelled).then_some(Mine { id, status, waitlist_position })
            }
        };
    }
    Ok(())
}

/// Takes the session's row lock for the rest of the transaction.
async fn lock_session(tx: &mut Tx, session_id: i64) -> Result<bool, sqlx::Error> {
    let r = sqlx::query("update sessions set updated_at = updated_at where id = $1")
        .bind(session_id)
        .execute(&mut **tx)
        .await?;
    Ok(r.rows_affected() == 1)
}

/// What the emails about one session need, read inside the transaction.
struct SessionMail {
    id: i64,
    title: String,
    description: String,
    starts_at: i64,
    ends_at: i64,
    capacity: i64,
    status: String,
    sequence: i64,
    /// When a host (or the room closing itself) ended the live part, in Unix ms.
    ended_at: Option<i64>,
}

impl SessionMail {
    /// Over by the clock or by a host's end: no place can be taken or given up.
    fn is_over(&self, now: i64) -> bool {
        self.ended_at.is_some() || self.ends_at <= now
    }
}

async fn session_mail(tx: &mut Tx, session_id: i64) -> Result<Option<SessionMail>, sqlx::Error> {
    let row = sqlx::query(
        "select id, title, description, starts_at, ends_at, capacity, status, ics_sequence, ended_at from sessions where id = $1",
    )
    .bind(session_id)
    .fetch_optional(&mut **tx)
    .await?;
    row.map(|r| {
        Ok(SessionMail {
            id: r.try_get("id")?,
            title: r.try_get("title")?,
            description: r.try_get("description")?,
            starts_at: r.try_get("starts_at")?,
            ends_at: r.try_get("ends_at")?,
            capacity: r.try_get("capacity")?,
            status: r.try_get("status")?,
            sequence: r.try_get("ics_sequence")?,
            ended_at: r.try_get("ended_at")?,
        })
    })
    .transpose()
}

impl SessionMail {
    fn facts(&self, state: &AppState) -> templates::SessionFacts<'_> {
        templates::SessionFacts {
            id: self.id,
            title: &self.title,
            description: &self.description,
            starts_at: programme::at(self.starts_at),
            ends_at: programme::at(self.ends_at),
            url: format!("{}/session.html?id={}", state.public_url, self.id),
        }
    }
}

/// A registrant as the mail needs them.
struct Person {
    registration_id: i64,
    uid: String,
    email: String,
    name: String,
    zone: Option<String>,
}

impl Person {
    fn recipient<'a>(&'a self, state: &AppState) -> templates::Recipient<'a> {
        templates::Recipient {
            email: &self.email,
            name: &self.name,
            zone: self.zone.as_deref().and_then(|z| z.parse().ok()).unwrap_or(state.settings.time_zone),
        }
    }
}

fn sender_address(state: &AppState) -> String {
    let from = &state.settings.mail_from;
    match (from.find('<'), from.rfind('>')) {
        (Some(a), Some(b)) if a < b => from[a + 1..b].to_string(),
        _ => from.trim().to_string(),
    }
}

fn calendar<'a>(p: &'a Person, sequence: i64, organiser: &'a str) -> templates::CalendarEntry<'a> {
    templates::CalendarEntry { uid: &p.uid, sequence: sequence.max(0) as u32, organiser_email: organiser }
}

const PERSON_SELECT: &str = "select r.id, r.ics_uid, u.email, u.name, u.time_zone
    from registrations r join users u on u.id = r.user_id";

fn person_from_row(r: &sqlx::any::AnyRow) -> Result<Person, sqlx::Error> {
    Ok(Person {
        registration_id: r.try_get("id")?,
        uid: r.try_get("ics_uid")?,
        email: r.try_get("email")?,
        name: r.try_get("name")?,
        zone: r.try_get("time_zone")?,
    })
}

/// Everyone registered for a session with one of `statuses`.
async fn people(tx: &mut Tx, session_id: i64, statuses: &str) -> Result<Vec<Person>, sqlx::Error> {
    // `statuses` is one of our own literal lists, never user input.
    let rows =
        sqlx::query(&format!("{PERSON_SELECT} where r.session_id = $1 and r.status in ({statuses}) order by r.id"))
            .bind(session_id)
            .fetch_all(&mut **tx)
            .await?;
    rows.iter().map(person_from_row).collect()
}

async fn person(tx: &mut Tx, registration_id: i64) -> Result<Option<Person>, sqlx::Error> {
    let row = sqlx::query(&format!("{PERSON_SELECT} where r.id = $1"))
        .bind(registration_id)
        .fetch_optional(&mut **tx)
        .await?;
    row.as_ref().map(person_from_row).transpose()
}

/// The session and the registrant, for an email about one registration.
async fn session_and_person(
    tx: &mut Tx,
    session_id: i64,
    registration_id: i64,
) -> Result<Option<(SessionMail, Person)>, sqlx::Error> {
    let Some(s) = session_mail(tx, session_id).await? else {
        return Ok(None);
    };
    Ok(person(tx, registration_id).await?.map(|p| (s, p)))
}

/// Reminder columns for a place taken now: no "tomorrow" reminder for a session
/// that starts within a day (the confirmation says as much), and so on.
fn reminders_already_due(starts_at: i64, now: i64) -> (Option<i64>, Option<i64>) {
    let lead = starts_at - now;
    ((lead <= reminders::DAY_AHEAD).then_some(now), (lead <= reminders::HOUR_AHEAD).then_some(now))
}

/// Registers `user` for a session, or puts them on the waiting list when it is
/// full. Registering again is harmless and returns the existing place.
pub async fn register(state: &AppState, session_id: i64, user: &User) -> ApiResult<(Mine, bool)> {
    user.require_verified()?;
    let mut tx = state.db.begin().await?;
    if !lock_session(&mut tx, session_id).await? {
        return Err(ApiError::NotFound("session"));
    }
    let s = session_mail(&mut tx, session_id).await?.ok_or(ApiError::NotFound("session"))?;
    let existing =
        sqlx::query("select id, status, queued_at from registrations where session_id = $1 and user_id = $2")
            .bind(session_id)
            .bind(user.id)
            .fetch_optional(&mut *tx)
            .await?;
    if let Some(r) = &existing {
        let id: i64 = r.try_get("id")?;
        let status = RegStatus::parse(&r.try_get::<String, _>("status")?);
        if status != RegStatus::Cancelled {
            let waitlist_position = match status {
                RegStatus::Waitlisted => Some(position_in(&mut tx, session_id, id, r.try_get("queued_at")?).await?),
                _ => None,
            };
            return Ok((Mine { id, status, waitlist_position }, false));
        }
    }
    if s.status != Status::Published.as_str() {
        return Err(ApiError::conflict("session", "this session is not open for registration"));
    }
    let now = db::now();
    if s.is_over(now) {
        return Err(ApiError::conflict("session", "this session has already ended"));
    }
    let confirmed: i64 =
        sqlx::query_scalar("select count(*) from registrations where session_id = $1 and status = 'confirmed'")
            .bind(session_id)
            .fetch_one(&mut *tx)
            .await?;
    let status = if confirmed < s.capacity { RegStatus::Confirmed } else { RegStatus::Waitlisted };
    let status_text = if status == RegStatus::Confirmed { "confirmed" } else { "waitlisted" };
    let queued_at = now_ms();
    // A new UID for each (re)registration: a cancelled event stays cancelled in calendars.
    let uid = format!("registration-{}@staffroom", uuid::Uuid::new_v4());
    let (r24, r1) = reminders_already_due(s.starts_at, now);
    let id: i64 = match &existing {
        Some(r) => {
            let id: i64 = r.try_get("id")?;
            sqlx::query(
                "update registrations set status = $1, queued_at = $2, ics_uid = $3, reminded_24h_at = $4,
                        reminded_1h_at = $5, updated_at = $6 where id = $7",
            )
            .bind(status_text)
            .bind(queued_at)
            .bind(&uid)
            .bind(r24)
            .bind(r1)
            .bind(now)
            .bind(id)
            .execute(&mut *tx)
            .await?;
            id
        }
        None => sqlx::query_scalar(
            "insert into registrations (session_id, user_id, status, queued_at, ics_uid, reminded_24h_at, reminded_1h_at,
                                        created_at, updated_at)
             values ($1, $2, $3, $4, $5, $6, $7, $8, $8) returning id",
        )
        .bind(session_id)
        .bind(user.id)
        .bind(status_text)
        .bind(queued_at)
        .bind(&uid)
        .bind(r24)
        .bind(r1)
        .bind(now)
        .fetch_one(&mut *tx)
        .await?,
    };
    let person = Person {
        registration_id: id,
        uid,
        email: user.email.clone(),
        name: user.name.clone(),
        zone: user.time_zone.clone(),
    };
    let facts = s.facts(state);
    let to = person.recipient(state);
    let organiser = sender_address(state);
    let (email, waitlist_position) = match status {
        RegStatus::Confirmed => {
            (templates::confirmation(&facts, &to, &calendar(&person, s.sequence, &organiser)), None)
        }
        _ => {
            let position = position_in(&mut tx, session_id, id, queued_at).await?;
            (templates::waitlisted(&facts, &to, position), Some(position))
        }
    };
    mail::enqueue(&mut tx, &email).await?;
    tx.commit().await?;
    state.mail_wake.notify_one();
    tracing::info!(session = session_id, user = user.id, ?status, "registered");
    Ok((Mine { id, status, waitlist_position }, true))
}

/// Cancels a registration and gives the freed place to the waiting list.
pub async fn cancel(state: &AppState, registration_id: i64, by: &User) -> ApiResult<()> {
    let owner = sqlx::query("select session_id, user_id, status from registrations where id = $1")
        .bind(registration_id)
        .fetch_optional(&state.db.read)
        .await?
        .ok_or(ApiError::NotFound("registration"))?;
    let session_id: i64 = owner.try_get("session_id")?;
    let user_id: i64 = owner.try_get("user_id")?;
    if user_id != by.id && !by.is_organiser {
        return Err(ApiError::forbidden("this registration belongs to someone else"));
    }
    let mut tx = state.db.begin().await?;
    lock_session(&mut tx, session_id).await?;
    let s = session_mail(&mut tx, session_id).await?.ok_or(ApiError::NotFound("session"))?;
    // Giving up a place afterwards would rewrite who was registered, and hand
    // the place to someone waiting for a session that is over.
    if s.is_over(db::now()) {
        return Err(ApiError::conflict("registration", "this session has ended: its places can no longer change"));
    }
    let changed = sqlx::query(
        "update registrations set status = 'cancelled', updated_at = $1 where id = $2 and status <> 'cancelled'",
    )
    .bind(db::now())
    .bind(registration_id)
    .execute(&mut *tx)
    .await?;
    if changed.rows_affected() == 0 {
        return Err(ApiError::conflict("registration", "this registration is already cancelled"));
    }
    let person = person(&mut tx, registration_id).await?.ok_or(ApiError::NotFound("registration"))?;
    let organiser = sender_address(state);
    let email = templates::cancelled(
        &s.facts(state),
        &person.recipient(state),
        &calendar(&person, s.sequence + 1, &organiser),
        false,
    );
    mail::enqueue(&mut tx, &email).await?;
    promote_waitlist(state, &mut tx, session_id).await?;
    tx.commit().await?;
    state.mail_wake.notify_one();
    tracing::info!(registration = registration_id, by = by.id, "registration cancelled");
    Ok(())
}

/// Fills free places from the head of the waiting list, emailing each person
/// promoted. Call inside a transaction that holds the session lock.
pub async fn promote_waitlist(state: &AppState, tx: &mut Tx, session_id: i64) -> ApiResult<()> {
    let s = session_mail(tx, session_id).await?.ok_or(ApiError::NotFound("session"))?;
    if s.status != Status::Published.as_str() {
        return Ok(());
    }
    let confirmed: i64 =
        sqlx::query_scalar("select count(*) from registrations where session_id = $1 and status = 'confirmed'")
            .bind(session_id)
            .fetch_one(&mut **tx)
            .await?;
    let free = s.capacity - confirmed;
    if free <= 0 {
        return Ok(());
    }
    let heads: Vec<i64> = sqlx::query_scalar(
        "select id from registrations where session_id = $1 and status = 'waitlisted' order by queued_at, id limit $2",
    )
    .bind(session_id)
    .bind(free)
    .fetch_all(&mut **tx)
    .await?;
    if heads.is_empty() {
        return Ok(());
    }
    let now = db::now();
    let (r24, r1) = reminders_already_due(s.starts_at, now);
    for id in &heads {
        sqlx::query(
            "update registrations set status = 'confirmed', reminded_24h_at = $1, reminded_1h_at = $2, updated_at = $3 where id = $4",
        )
        .bind(r24)
        .bind(r1)
        .bind(now)
        .bind(id)
        .execute(&mut **tx)
        .await?;
    }
    let organiser = sender_address(state);
    for id in &heads {
        let Some(p) = person(tx, *id).await? else {
            continue;
        };
        let email = templates::promoted(&s.facts(state), &p.recipient(state), &calendar(&p, s.sequence, &organiser));
        mail::enqueue(tx, &email).await?;
        tracing::info!(registration = p.registration_id, session = session_id, "promoted from the waiting list");
    }
    Ok(())
}

/// The session's time (`moved`), title or description changed (its SEQUENCE
/// was already raised): send every confirmed registrant the update, and
/// re-arm their reminders when the time moved.
pub async fn session_changed(state: &AppState, tx: &mut Tx, session_id: i64, moved: bool) -> ApiResult<()> {
    let s = session_mail(tx, session_id).await?.ok_or(ApiError::NotFound("session"))?;
    if moved {
        let (r24, r1) = reminders_already_due(s.starts_at, db::now());
        sqlx::query("update registrations set reminded_24h_at = $1, reminded_1h_at = $2 where session_id = $3")
            .bind(r24)
            .bind(r1)
            .bind(session_id)
            .execute(&mut **tx)
            .await?;
    }
    if s.status != Status::Published.as_str() {
        return Ok(());
    }
    let organiser = sender_address(state);
    for p in people(tx, session_id, "'confirmed'").await? {
        let email =
            templates::changed(&s.facts(state), &p.recipient(state), &calendar(&p, s.sequence, &organiser), moved);
        mail::enqueue(tx, &email).await?;
    }
    Ok(())
}

/// The session was cancelled (its SEQUENCE already raised): everyone with a
/// place or on the waiting list gets a calendar CANCEL.
pub async fn session_cancelled(state: &AppState, tx: &mut Tx, session_id: i64) -> ApiResult<()> {
    let s = session_mail(tx, session_id).await?.ok_or(ApiError::NotFound("session"))?;
    let organiser = sender_address(state);
    for p in people(tx, session_id, "'confirmed', 'waitlisted'").await? {
        let email =
            templates::cancelled(&s.facts(state), &p.recipient(state), &calendar(&p, s.sequence, &organiser), true);
        mail::enqueue(tx, &email).await?;
    }
    Ok(())
}

/// Register for a session; when it is full, join the waiting list.
#[utoipa::path(security(("bearer" = []), ("cookie" = [])), post, path = "/api/sessions/{id}/registration", tag = "registration",
    responses((status = 201, body = Mine), (status = 200, body = Mine, description = "already registered"),
              (status = 403, body = ErrorBody, description = "the email address is not verified yet"),
              (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn register_me(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    Path(id): Path<i64>,
) -> ApiResult<(StatusCode, Json<Mine>)> {
    programme::visible(&state.db, id, Some(&user)).await?;
    let (mine, created) = register(&state, id, &user).await?;
    Ok((if created { StatusCode::CREATED } else { StatusCode::OK }, Json(mine)))
}

/// Cancel my place (or my spot on the waiting list) for a session.
#[utoipa::path(security(("bearer" = []), ("cookie" = [])), delete, path = "/api/sessions/{id}/registration", tag = "registration",
    responses((status = 204), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody, description = "the session has ended: its places can no longer change")))]
async fn cancel_mine(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    Path(id): Path<i64>,
) -> ApiResult<StatusCode> {
    let reg: Option<i64> = sqlx::query_scalar(
        "select id from registrations where session_id = $1 and user_id = $2 and status <> 'cancelled'",
    )
    .bind(id)
    .bind(user.id)
    .fetch_optional(&state.db.read)
    .await?;
    cancel(&state, reg.ok_or(ApiError::NotFound("registration"))?, &user).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Cancel a registration by id: your own, or any (organisers).
#[utoipa::path(security(("bearer" = []), ("cookie" = [])), delete, path = "/api/registrations/{id}", tag = "registration",
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn cancel_by_id(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    Path(id): Path<i64>,
) -> ApiResult<StatusCode> {
    cancel(&state, id, &user).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A session in My sessions, with the caller's part in it.
#[derive(Serialize, ToSchema)]
pub struct MySession {
    #[serde(flatten)]
    pub session: Session,
    /// You present this session.
    pub presenting: bool,
    /// Once the session is over, for a confirmed place: whether you were in
    /// the live room at all (false: you missed it). Null before the end, and
    /// for presenters.
    pub attended: Option<bool>,
    /// Once the session is over: the replay page of its newest finished
    /// recording, for presenters and confirmed places (who may watch it).
    pub replay_url: Option<String>,
}

/// My sessions: every session I present, have a place for or am waiting
/// for, soonest first, each with where it is in its life.
#[utoipa::path(security(("bearer" = []), ("cookie" = [])), get, path = "/api/me/sessions", tag = "registration", responses((status = 200, body = [MySession])))]
async fn my_sessions(State(state): State<AppState>, AuthUser(user): AuthUser) -> ApiResult<Json<Vec<MySession>>> {
    let rows = sqlx::query(
        "select s.id, (select count(*) from session_presenters p where p.session_id = s.id and p.user_id = $1) as presenting
         from sessions s
         where exists (select 1 from registrations r where r.session_id = s.id and r.user_id = $1 and r.status <> 'cancelled')
            or exists (select 1 from session_presenters p where p.session_id = s.id and p.user_id = $1)
         order by s.starts_at, s.id",
    )
    .bind(user.id)
    .fetch_all(&state.db.read)
    .await?;
    let mut sessions = Vec::with_capacity(rows.len());
    let mut presenting = Vec::with_capacity(rows.len());
    for row in &rows {
        if let Some(s) = programme::load(&state.db, row.try_get("id")?).await? {
            sessions.push(s);
            presenting.push(row.try_get::<i64, _>("presenting")? > 0);
        }
    }
    programme::fill_life(&state, &mut sessions).await?;
    fill_mine(&state.db, user.id, &mut sessions).await?;
    let mut out = Vec::with_capacity(sessions.len());
    for (session, presenting) in sessions.into_iter().zip(presenting) {
        let confirmed = session.my_registration.as_ref().is_some_and(|m| m.status == RegStatus::Confirmed);
        let (mut attended, mut replay_url) = (None, None);
        if session.life.is_over() && (presenting || confirmed) {
            let recording: Option<String> = sqlx::query_scalar(
                "select id from recordings where session_id = $1 and status <> 'recording' order by started_at desc limit 1",
            )
            .bind(session.id)
            .fetch_optional(&state.db.read)
            .await?;
            replay_url = recording.map(|id| format!("/replay.html?id={id}"));
            if !presenting {
                let joins: i64 = sqlx::query_scalar(
                    "select count(*) from room_events where session_id = $1 and user_id = $2 and kind = 'join'",
                )
                .bind(session.id)
                .bind(user.id)
                .fetch_one(&state.db.read)
                .await?;
                attended = Some(joins > 0);
            }
        }
        out.push(MySession { session, presenting, attended, replay_url });
    }
    Ok(Json(out))
}

/// A registrant, for organisers.
#[derive(Debug, Serialize, ToSchema)]
pub struct Registrant {
    pub registration_id: i64,
    pub name: String,
    pub email: String,
    pub school: String,
    pub stage: String,
    pub status: RegStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub waitlist_position: Option<i64>,
    pub registered_at: DateTime<Utc>,
}

async fn registrants(db: &Db, session_id: i64) -> Result<Vec<Registrant>, sqlx::Error> {
    let rows = sqlx::query(
        "select r.id, r.status, r.created_at, u.name, u.email, u.school, u.stage from registrations r
         join users u on u.id = r.user_id
         where r.session_id = $1 and r.status <> 'cancelled'
         order by case r.status when 'confirmed' then 0 else 1 end, r.queued_at, r.id",
    )
    .bind(session_id)
    .fetch_all(&db.read)
    .await?;
    let mut position = 0;
    rows.iter()
        .map(|r| {
            let status = RegStatus::parse(&r.try_get::<String, _>("status")?);
            let waitlist_position = (status == RegStatus::Waitlisted).then(|| {
                position += 1;
                position
            });
            Ok(Registrant {
                registration_id: r.try_get("id")?,
                name: r.try_get("name")?,
                email: r.try_get("email")?,
                school: r.try_get("school")?,
                stage: r.try_get("stage")?,
                status,
                waitlist_position,
                registered_at: programme::at(r.try_get("created_at")?),
            })
        })
        .collect()
}

async fn require_organiser_of(state: &AppState, user: &User, session_id: i64) -> ApiResult<()> {
    user.require_organiser()?;
    programme::load(&state.db, session_id).await?.ok_or(ApiError::NotFound("session"))?;
    Ok(())
}

/// Registrants and the waiting list of a session (organisers).
#[utoipa::path(security(("bearer" = []), ("cookie" = [])), get, path = "/api/sessions/{id}/registrations", tag = "registration",
    responses((status = 200, body = [Registrant]), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn list_registrants(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    Path(id): Path<i64>,
) -> ApiResult<Json<Vec<Registrant>>> {
    require_organiser_of(&state, &user, id).await?;
    Ok(Json(registrants(&state.db, id).await?))
}

/// The same list as CSV (organisers).
#[utoipa::path(security(("bearer" = []), ("cookie" = [])), get, path = "/api/sessions/{id}/registrations.csv", tag = "registration",
    responses((status = 200, content_type = "text/csv", body = String), (status = 403, body = ErrorBody)))]
async fn registrants_csv(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    Path(id): Path<i64>,
) -> ApiResult<impl IntoResponse> {
    require_organiser_of(&state, &user, id).await?;
    let mut out = csv::Writer::from_writer(Vec::new());
    let write = |out: &mut csv::Writer<Vec<u8>>, rec: &[String]| out.write_record(rec).map_err(anyhow::Error::from);
    write(
        &mut out,
        &["name", "email", "school", "stage", "status", "waitlist_position", "registered_at"].map(String::from),
    )?;
    for r in registrants(&state.db, id).await? {
        let status = if r.status == RegStatus::Confirmed { "confirmed" } else { "waitlisted" };
        write(
            &mut out,
            &[
                crate::http::csv::cell(&r.name),
                r.email,
                crate::http::csv::cell(&r.school),
                r.stage,
                status.into(),
                r.waitlist_position.map(|p| p.to_string()).unwrap_or_default(),
                r.registered_at.to_rfc3339(),
            ],
        )?;
    }
    let body = out.into_inner().map_err(|e| anyhow::anyhow!("failed to write CSV: {e}"))?;
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()),
            (header::CONTENT_DISPOSITION, format!("attachment; filename=\"session-{id}-registrants.csv\"")),
        ],
        body,
    ))
}

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(register_me, cancel_mine))
        .routes(routes!(cancel_by_id))
        .routes(routes!(my_sessions))
        .routes(routes!(list_registrants))
        .routes(routes!(registrants_csv))
        .merge(invitations::router())
}
