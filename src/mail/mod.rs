//! Mail: a durable outbox written in the same transaction as the change that
//! causes each email, and a worker that delivers it (see [`worker`], and
//! docs/mail.md for what is guaranteed).

pub mod address;
pub mod ics;
pub mod templates;
mod transport;
pub mod worker;

use axum::extract::State;
use serde::Serialize;
use sqlx::Row;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    db::{self, Db, Tx},
    http::{
        error::{ApiError, ApiResult, ErrorBody},
        extract::{AuthUser, Json, Path},
    },
    AppState,
};

/// An email ready to queue.
#[derive(Clone, Debug)]
pub struct Email {
    pub kind: &'static str,
    pub to_email: String,
    pub to_name: String,
    pub subject: String,
    pub text: String,
    pub html: String,
    /// The iCalendar attachment and its method.
    pub ics: Option<(String, ics::Method)>,
    pub session_id: Option<i64>,
    pub batch_id: Option<i64>,
}

/// Which queue a message waits in. Transactional mail is claimed and paced on
/// its own, so a verification email never waits behind thousands of invitations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lane {
    /// Verification, password reset, confirmations, reminders, replay-ready.
    Transactional,
    /// Invitations: many at once, and nobody is waiting on any one of them.
    Bulk,
}

impl Lane {
    pub fn of(kind: &str) -> Lane {
        if kind == "invitation" {
            Lane::Bulk
        } else {
            Lane::Transactional
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Lane::Transactional => "transactional",
            Lane::Bulk => "bulk",
        }
    }
}

/// Queues `email` inside the caller's transaction: it is sent if and only if
/// the transaction commits. Call `state.mail_wake.notify_one()` after commit.
pub async fn enqueue(tx: &mut Tx, email: &Email) -> Result<(), sqlx::Error> {
    enqueue_many(tx, std::slice::from_ref(email)).await
}

/// Rows per multi-row insert: 13 parameters each stays far below SQLite's limit.
const INSERT_CHUNK: usize = 200;

/// Queues many emails with a few multi-row inserts (an invitation batch of
/// thousands is a handful of statements, not thousands of round trips).
///
/// Each row's Message-ID is `<row id.install id@domain>`, written in the same
/// transaction: the row id is only known after the insert, so the insert
/// carries a unique placeholder that the update right after replaces.
pub async fn enqueue_many(tx: &mut Tx, emails: &[Email]) -> Result<(), sqlx::Error> {
    let now = db::now();
    for chunk in emails.chunks(INSERT_CHUNK) {
        let rows: Vec<String> = (0..chunk.len())
            .map(|i| {
                let p: Vec<String> = (1..=13).map(|k| format!("${}", i * 13 + k)).collect();
                format!("({}, 'queued', {}, {})", p[..12].join(", "), p[12], p[12])
            })
            .collect();
        let sql = format!(
            "insert into outbox (message_id, kind, lane, to_email, to_name, subject, text_body, html_body, ics, ics_method,
                                 session_id, batch_id, status, next_attempt_at, created_at)
             values {}
             returning id",
            rows.join(", ")
        );
        let mut query = sqlx::query_scalar::<_, i64>(&sql);
        for email in chunk {
            query = query
                .bind(format!("{PENDING_ID}{}", uuid::Uuid::new_v4()))
                .bind(email.kind)
                .bind(Lane::of(email.kind).as_str())
                .bind(&email.to_email)
                .bind(&email.to_name)
                .bind(&email.subject)
                .bind(&email.text)
                .bind(&email.html)
                .bind(email.ics.as_ref().map(|(text, _)| text.as_str()))
                .bind(email.ics.as_ref().map(|(_, m)| m.as_str()))
                .bind(email.session_id)
                .bind(email.batch_id)
                .bind(now);
        }
        let ids = query.fetch_all(&mut **tx).await?;
        let (Some(first), Some(last)) = (ids.iter().min(), ids.iter().max()) else { continue };
        sqlx::query(&format!(
            "update outbox set message_id = {MESSAGE_ID_SQL}
             where id >= $1 and id <= $2 and message_id like '{PENDING_ID}%'"
        ))
        .bind(first)
        .bind(last)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

/// The prefix of a Message-ID placeholder, replaced before the transaction
/// that inserts it commits.
const PENDING_ID: &str = "pending:";

/// The Message-ID of an outbox row, from its id and this installation's value.
const MESSAGE_ID_SQL: &str = "'<' || cast(id as text) || '.' || (select install_id from mail_install where id = 1)
    || '@' || (select domain from mail_install where id = 1) || '>'";

/// How far delivery of a set of emails has got.
#[derive(Debug, Default, Serialize, ToSchema, PartialEq, Eq, Clone, Copy)]
pub struct Progress {
    pub queued: i64,
    pub sent: i64,
    pub failed: i64,
    /// Not sent because the person opted out after it was queued; only shown
    /// when there are some.
    #[serde(skip_serializing_if = "is_zero")]
    pub skipped: i64,
}

fn is_zero(n: &i64) -> bool {
    *n == 0
}

/// Delivery progress of one invitation batch.
pub async fn batch_progress(db: &Db, batch_id: i64) -> Result<Progress, sqlx::Error> {
    let rows = sqlx::query("select status, count(*) as n from outbox where batch_id = $1 group by status")
        .bind(batch_id)
        .fetch_all(&db.read)
        .await?;
    let mut p = Progress::default();
    for row in rows {
        let n: i64 = row.try_get("n")?;
        match row.try_get::<String, _>("status")?.as_str() {
            "sent" => p.sent += n,
            "failed" => p.failed += n,
            "skipped" => p.skipped += n,
            _ => p.queued += n,
        }
    }
    Ok(p)
}

/// A message that could not be delivered, for the organiser to see.
#[derive(Debug, Serialize, ToSchema)]
pub struct FailedMessage {
    pub to_email: String,
    pub subject: String,
    pub error: String,
    pub attempts: i64,
}

/// Permanent failures for one session's mail.
pub async fn session_failures(db: &Db, session_id: i64) -> Result<Vec<FailedMessage>, sqlx::Error> {
    let rows = sqlx::query(
        "select to_email, subject, last_error, attempts from outbox
         where session_id = $1 and status = 'failed' order by id limit 500",
    )
    .bind(session_id)
    .fetch_all(&db.read)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(FailedMessage {
                to_email: r.try_get("to_email")?,
                subject: r.try_get("subject")?,
                error: r.try_get::<Option<String>, _>("last_error")?.unwrap_or_default(),
                attempts: r.try_get("attempts")?,
            })
        })
        .collect()
}

/// Emails about a session that could not be delivered (organisers): bounced
/// for good, or out of retries.
#[utoipa::path(security(("bearer" = []), ("cookie" = [])), get, path = "/api/sessions/{id}/mail-failures", tag = "invitations",
    responses((status = 200, body = [FailedMessage]), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn failures(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    Path(id): Path<i64>,
) -> ApiResult<Json<Vec<FailedMessage>>> {
    user.require_organiser()?;
    crate::programme::load(&state.db, id).await?.ok_or(ApiError::NotFound("session"))?;
    Ok(Json(session_failures(&state.db, id).await?))
}

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(failures))
}
