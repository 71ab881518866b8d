//! Record entries: one per attended session, kept in step with attendance,
//! and entries a participant adds by hand for other CPD.
//!
//! Session entries are stored (not only derived) so that reflections, links
//! and certificates have something durable to hang on. They are brought up to
//! date from the settled attendance results whenever the record is read: a
//! session attended live this morning and replayed tonight shows the larger
//! credit. An entry is
//! never removed by that: the record does not lose what it once showed.

use std::collections::HashMap;

use axum::{extract::State, http::StatusCode};
use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use sqlx::Row;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::{check_length, reflections::Evidence, reflections::Reflection};
use crate::{
    attendance,
    db::{self, Db},
    http::{
        error::{ApiError, ApiResult, ErrorBody},
        extract::{AuthUser, Json, Path},
    },
    programme, AppState,
};

/// What kind of learning an entry records.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = EntryKind)]
pub enum Kind {
    /// A programme session attended live or by replay (made by the server).
    Session,
    Course,
    Reading,
    Coaching,
    Other,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Session => "session",
            Kind::Course => "course",
            Kind::Reading => "reading",
            Kind::Coaching => "coaching",
            Kind::Other => "other",
        }
    }

    fn parse(s: &str) -> Kind {
        match s {
            "session" => Kind::Session,
            "course" => Kind::Course,
            "reading" => Kind::Reading,
            "coaching" => Kind::Coaching,
            _ => Kind::Other,
        }
    }
}

/// One entry in your professional record.
#[derive(Clone, Debug, Serialize, ToSchema)]
#[schema(as = RecordEntry)]
pub struct Entry {
    pub id: i64,
    pub kind: Kind,
    /// The session, for a session entry.
    pub session_id: Option<i64>,
    pub title: String,
    /// The presenters, or who ran the course.
    pub provider: String,
    pub occurred_at: DateTime<Utc>,
    /// CPD minutes credited.
    pub minutes: i64,
    /// live or replay, for a session entry.
    pub how: Option<String>,
    /// attended or partly, for a session entry (against the session's threshold).
    pub status: Option<String>,
    pub minutes_live: i64,
    pub minutes_in_groups: i64,
    pub minutes_replayed: i64,
    /// Breakout groups joined.
    pub groups: Vec<String>,
    /// The needs and priorities this entry is linked to.
    pub goal_ids: Vec<i64>,
    pub reflection: Option<Reflection>,
    pub evidence: Vec<Evidence>,
    /// The certificate of attendance, once issued.
    pub certificate_id: Option<String>,
    /// While you share the entry: the token in its public link
    /// (`/shared.html?token=…`).
    pub shared_token: Option<String>,
    /// For a session entry: whether its attendance is settled (the live
    /// part ended). Until then its figures are so far, and no certificate
    /// is issued. Null for an entry added by hand.
    pub settled: Option<bool>,
}

/// Brings `user_id`'s session entries up to date with their attendance
/// (the settled results, their replay credit, and the live part so far of a
/// session still running): new attended sessions get an entry; changed
/// credit is rewritten. Writes only what changed, so reading the record is
/// usually read-only.
pub async fn sync(db: &Db, user_id: i64) -> ApiResult<()> {
    let attended = attendance::mine::attended(db, user_id).await?;
    let stored: HashMap<i64, (i64, Option<String>, Option<String>, String, i64, i64, i64)> = sqlx::query(
        "select session_id, minutes, how, status, groups, minutes_live, minutes_in_groups, minutes_replayed
         from record_entries where user_id = $1 and session_id is not null",
    )
    .bind(user_id)
    .fetch_all(&db.read)
    .await?
    .iter()
    .map(|r| {
        Ok((
            r.try_get("session_id")?,
            (
                r.try_get("minutes")?,
                r.try_get("how")?,
                r.try_get("status")?,
                r.try_get("groups")?,
                r.try_get("minutes_live")?,
                r.try_get("minutes_in_groups")?,
                r.try_get("minutes_replayed")?,
            ),
        ))
    })
    .collect::<Result<_, sqlx::Error>>()?;
    let mut changes = vec![];
    for a in attended {
        let how = a.how.map(|h| h.as_str().to_string());
        let status = Some(a.status.as_str().to_string());
        let groups = a.groups.join("\n");
        let now_values =
            (a.minutes_credited, how, status, groups, a.minutes_live, a.minutes_in_groups, a.minutes_replayed);
        match stored.get(&a.session_id) {
            Some(old) if *old == now_values => {}
            old => changes.push((old.is_none(), a, now_values)),
        }
    }
    if changes.is_empty() {
        return Ok(());
    }
    let at = db::now();
    let mut tx = db.begin().await?;
    for (new, a, (minutes, how, status, groups, live, in_groups, replayed)) in changes {
        let sql = if new {
            // `on conflict do nothing`: two tabs reading at once make one entry.
            "insert into record_entries (user_id, kind, session_id, title, provider, occurred_at, minutes, how,
                 status, groups, minutes_live, minutes_in_groups, minutes_replayed, created_at, updated_at)
             values ($1, 'session', $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $13)
             on conflict (user_id, session_id) do nothing"
        } else {
            "update record_entries set title = $3, provider = $4, occurred_at = $5, minutes = $6, how = $7,
                 status = $8, groups = $9, minutes_live = $10, minutes_in_groups = $11, minutes_replayed = $12,
                 updated_at = $13
             where user_id = $1 and session_id = $2"
        };
        sqlx::query(sql)
            .bind(user_id)
            .bind(a.session_id)
            .bind(&a.title)
            .bind(a.presenters.join(", "))
            .bind(a.starts_at.timestamp())
            .bind(minutes)
            .bind(how)
            .bind(status)
            .bind(groups)
            .bind(live)
            .bind(in_groups)
            .bind(replayed)
            .bind(at)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(())
}

const ENTRY_COLUMNS: &str = "e.id, e.kind, e.session_id, e.title, e.provider, e.occurred_at, e.minutes, e.how,
    e.status, e.minutes_live, e.minutes_in_groups, e.minutes_replayed, e.groups, e.shared_as, s.settled_at";

/// All of `user_id`'s entries, newest first, with their links, reflections,
/// evidence and certificates (five queries, whatever the number of entries).
pub async fn load_all(db: &Db, user_id: i64) -> ApiResult<Vec<Entry>> {
    let rows = sqlx::query(&format!(
        "select {ENTRY_COLUMNS} from record_entries e left join sessions s on s.id = e.session_id
         where e.user_id = $1 order by e.occurred_at desc, e.id desc"
    ))
    .bind(user_id)
    .fetch_all(&db.read)
    .await?;
    let mut entries = rows.iter().map(entry_from_row).collect::<Result<Vec<_>, _>>()?;
    let mut links: HashMap<i64, Vec<i64>> = HashMap::new();
    for row in sqlx::query(
        "select l.entry_id, l.goal_id from record_links l join record_entries e on e.id = l.entry_id
         where e.user_id = $1 order by l.goal_id",
    )
    .bind(user_id)
    .fetch_all(&db.read)
    .await?
    {
        links.entry(row.try_get("entry_id")?).or_default().push(row.try_get("goal_id")?);
    }
    let mut reflections = super::reflections::load_for_user(db, user_id).await?;
    let mut evidence = super::reflections::evidence_for_user(db, user_id).await?;
    let certificates: HashMap<i64, String> = sqlx::query(
        "select e.id as entry_id, c.id from certificates c
         join record_entries e on e.user_id = c.user_id and e.session_id = c.session_id where c.user_id = $1",
    )
    .bind(user_id)
    .fetch_all(&db.read)
    .await?
    .iter()
    .map(|r| Ok((r.try_get("entry_id")?, r.try_get("id")?)))
    .collect::<Result<_, sqlx::Error>>()?;
    for e in &mut entries {
        e.goal_ids = links.remove(&e.id).unwrap_or_default();
        e.reflection = reflections.remove(&e.id);
        e.evidence = evidence.remove(&e.id).unwrap_or_default();
        e.certificate_id = certificates.get(&e.id).cloned();
    }
    Ok(entries)
}

/// One of `user_id`'s entries; someone else's is "not found".
pub async fn load_one(db: &Db, user_id: i64, id: i64) -> ApiResult<Entry> {
    load_all(db, user_id).await?.into_iter().find(|e| e.id == id).ok_or(ApiError::NotFound("record entry"))
}

/// Checks that entry `id` is `user_id`'s and returns its kind.
pub(crate) async fn owned(db: &Db, user_id: i64, id: i64) -> ApiResult<Kind> {
    let kind: Option<String> = sqlx::query_scalar("select kind from record_entries where id = $1 and user_id = $2")
        .bind(id)
        .bind(user_id)
        .fetch_optional(&db.read)
        .await?;
    kind.map(|k| Kind::parse(&k)).ok_or(ApiError::NotFound("record entry"))
}

fn entry_from_row(r: &sqlx::any::AnyRow) -> Result<Entry, sqlx::Error> {
    let groups: String = r.try_get("groups")?;
    Ok(Entry {
        id: r.try_get("id")?,
        kind: Kind::parse(r.try_get("kind")?),
        session_id: r.try_get("session_id")?,
        title: r.try_get("title")?,
        provider: r.try_get("provider")?,
        occurred_at: programme::at(r.try_get("occurred_at")?),
        minutes: r.try_get("minutes")?,
        how: r.try_get("how")?,
        status: r.try_get("status")?,
        minutes_live: r.try_get("minutes_live")?,
        minutes_in_groups: r.try_get("minutes_in_groups")?,
        minutes_replayed: r.try_get("minutes_replayed")?,
        groups: groups.lines().map(str::to_string).collect(),
        goal_ids: vec![],
        reflection: None,
        evidence: vec![],
        certificate_id: None,
        shared_token: r.try_get("shared_as")?,
        settled: match r.try_get::<Option<i64>, _>("session_id")? {
            Some(_) => Some(r.try_get::<Option<i64>, _>("settled_at")?.is_some()),
            None => None,
        },
    })
}

/// Your whole record, up to date with your attendance.
#[derive(Serialize, ToSchema)]
pub struct Record {
    pub total_minutes: i64,
    /// Newest first.
    pub entries: Vec<Entry>,
    pub goals: Vec<super::goals::Goal>,
    /// The same as `GET /api/me/record/summary`, from the same entries, so
    /// a page showing both brings attendance up to date once.
    pub summary: super::summary::Summary,
}

/// Your professional record: every entry (attended sessions and your own),
/// with links, reflections and evidence, and your needs and priorities.
#[utoipa::path(security(("bearer" = []), ("cookie" = [])), get, path = "/api/me/record", tag = "record",
    responses((status = 200, body = Record), (status = 401, body = ErrorBody)))]
async fn record(State(state): State<AppState>, AuthUser(user): AuthUser) -> ApiResult<Json<Record>> {
    sync(&state.db, user.id).await?;
    let entries = load_all(&state.db, user.id).await?;
    let goals = super::goals::load(&state.db, user.id).await?;
    let zone = user.zone(state.settings.time_zone);
    let summary = super::summary::summarise(&entries, &goals, zone, super::summary::today(zone));
    Ok(Json(Record { total_minutes: entries.iter().map(|e| e.minutes).sum(), entries, goals, summary }))
}

/// One entry of your record.
#[utoipa::path(security(("bearer" = []), ("cookie" = [])), get, path = "/api/me/record/entries/{id}", tag = "record",
    responses((status = 200, body = Entry), (status = 404, body = ErrorBody)))]
async fn entry(State(state): State<AppState>, AuthUser(user): AuthUser, Path(id): Path<i64>) -> ApiResult<Json<Entry>> {
    Ok(Json(load_one(&state.db, user.id, id).await?))
}

/// Other CPD, added by hand.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ManualInput {
    /// course, reading, coaching or other.
    pub kind: Kind,
    pub title: String,
    #[serde(default)]
    pub provider: String,
    /// The day it happened (YYYY-MM-DD).
    pub date: NaiveDate,
    pub minutes: i64,
    /// Needs and priorities of yours to link it to.
    #[serde(default)]
    pub goal_ids: Vec<i64>,
}

/// The most a single entry may credit: a fortnight's full-time course.
const MAX_MINUTES: i64 = 10 * 8 * 60;
/// Entries one person may add by hand: decades of CPD, but not a way to
/// fill the database (each entry can also carry evidence).
pub const MAX_MANUAL_ENTRIES: i64 = 500;
/// Needs and priorities one entry may be linked to.
const MAX_GOAL_LINKS: usize = 50;

impl ManualInput {
    fn check(&self) -> ApiResult<()> {
        if self.kind == Kind::Session {
            return Err(ApiError::invalid(
                "kind",
                "session entries come from attendance: use course, reading, coaching or other",
            ));
        }
        if self.title.trim().is_empty() {
            return Err(ApiError::invalid("title", "give the entry a title"));
        }
        check_length("title", self.title.trim(), 200)?;
        check_length("provider", self.provider.trim(), 200)?;
        if self.goal_ids.len() > MAX_GOAL_LINKS {
            return Err(ApiError::invalid(
                "goal_ids",
                format!("an entry links to at most {MAX_GOAL_LINKS} needs and priorities"),
            ));
        }
        if !(1..=MAX_MINUTES).contains(&self.minutes) {
            return Err(ApiError::invalid("minutes", format!("minutes must be from 1 to {MAX_MINUTES}")));
        }
        let today = Utc::now().date_naive();
        if self.date > today + chrono::Duration::days(1) {
            return Err(ApiError::invalid("date", "the date is in the future: record CPD once it has happened"));
        }
        if self.date < NaiveDate::from_ymd_opt(1950, 1, 1).unwrap_or_default() {
            return Err(ApiError::invalid("date", "the date is too far in the past"));
        }
        Ok(())
    }

    fn occurred_at(&self) -> i64 {
        self.date.and_hms_opt(12, 0, 0).unwrap_or_default().and_utc().timestamp()
    }
}

/// Adds other CPD (a course, reading, coaching) to your record.
#[utoipa::path(security(("bearer" = []), ("cookie" = [])), post, path = "/api/me/record/entries", tag = "record", request_body = ManualInput,
    responses((status = 201, body = Entry),
              (status = 403, body = ErrorBody, description = "the email address is not verified yet"),
              (status = 409, body = ErrorBody, description = "the record already holds the most entries added by hand"),
              (status = 422, body = ErrorBody)))]
async fn create(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    Json(input): Json<ManualInput>,
) -> ApiResult<(StatusCode, Json<Entry>)> {
    user.require_verified()?;
    input.check()?;
    let added: i64 = sqlx::query_scalar("select count(*) from record_entries where user_id = $1 and kind <> 'session'")
        .bind(user.id)
        .fetch_one(&state.db.read)
        .await?;
    if added >= MAX_MANUAL_ENTRIES {
        return Err(ApiError::conflict(
            "entries",
            format!("your record holds at most {MAX_MANUAL_ENTRIES} entries added by hand: delete some to add more"),
        ));
    }
    let mut tx = state.db.begin().await?;
    let at = db::now();
    let id: i64 = sqlx::query_scalar(
        "insert into record_entries (user_id, kind, title, provider, occurred_at, minutes, created_at, updated_at)
         values ($1, $2, $3, $4, $5, $6, $7, $7) returning id",
    )
    .bind(user.id)
    .bind(input.kind.as_str())
    .bind(input.title.trim())
    .bind(input.provider.trim())
    .bind(input.occurred_at())
    .bind(input.minutes)
    .bind(at)
    .fetch_one(&mut *tx)
    .await?;
    super::goals::set_links(&mut tx, user.id, id, &input.goal_ids).await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(load_one(&state.db, user.id, id).await?)))
}

/// Changes an entry you added by hand (session entries follow attendance).
#[utoipa::path(security(("bearer" = []), ("cookie" = [])), put, path = "/api/me/record/entries/{id}", tag = "record", request_body = ManualInput,
    responses((status = 200, body = Entry), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn update(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    Path(id): Path<i64>,
    Json(input): Json<ManualInput>,
) -> ApiResult<Json<Entry>> {
    if owned(&state.db, user.id, id).await? == Kind::Session {
        return Err(ApiError::conflict("kind", "a session entry's time comes from attendance and cannot be edited"));
    }
    input.check()?;
    let mut tx = state.db.begin().await?;
    sqlx::query(
        "update record_entries set kind = $1, title = $2, provider = $3, occurred_at = $4, minutes = $5, updated_at = $6
         where id = $7 and user_id = $8",
    )
    .bind(input.kind.as_str())
    .bind(input.title.trim())
    .bind(input.provider.trim())
    .bind(input.occurred_at())
    .bind(input.minutes)
    .bind(db::now())
    .bind(id)
    .bind(user.id)
    .execute(&mut *tx)
    .await?;
    super::goals::set_links(&mut tx, user.id, id, &input.goal_ids).await?;
    tx.commit().await?;
    Ok(Json(load_one(&state.db, user.id, id).await?))
}

/// Deletes an entry you added by hand, with its reflection and evidence.
#[utoipa::path(security(("bearer" = []), ("cookie" = [])), delete, path = "/api/me/record/entries/{id}", tag = "record",
    responses((status = 204), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn remove(State(state): State<AppState>, AuthUser(user): AuthUser, Path(id): Path<i64>) -> ApiResult<StatusCode> {
    if owned(&state.db, user.id, id).await? == Kind::Session {
        return Err(ApiError::conflict(
            "kind",
            "a session entry is your attendance and stays in the record: delete its reflection or evidence instead",
        ));
    }
    let files = super::reflections::stored_files(&state.db, id).await?;
    let mut tx = state.db.begin().await?;
    sqlx::query("delete from record_entries where id = $1 and user_id = $2")
        .bind(id)
        .bind(user.id)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    super::reflections::delete_files(&state.settings.data_dir, files).await;
    Ok(StatusCode::NO_CONTENT)
}

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(record)).routes(routes!(create)).routes(routes!(entry, update, remove))
}
