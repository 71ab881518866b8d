//! The delivery worker: claims due outbox rows, sends them with lettre (SMTP,
//! or `.eml` files when no SMTP server is configured), and marks each one sent
//! exactly once. Failures are retried with exponential backoff; permanent SMTP
//! rejections and messages out of attempts are marked failed for organisers.
//!
//! A claim is a lease (`locked_until`): if the process dies mid-send the row
//! becomes due again when the lease runs out, so nothing is lost.

use std::time::{Duration, Instant};

use anyhow::Context;
use lettre::{
    message::{header, Attachment, Mailbox, MultiPart, SinglePart},
    transport::smtp::{authentication::Credentials, client::Tls, client::TlsParameters},
    AsyncFileTransport, AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor,
};
use sqlx::Row;
use tokio::sync::watch;

use crate::{
    db::{self, Db},
    settings::{MailTransport, Settings, SmtpTls},
    AppState,
};

const BATCH: i64 = 50;
const LEASE_SECS: i64 = 120;

enum Transport {
    Smtp(AsyncSmtpTransport<Tokio1Executor>),
    Files(AsyncFileTransport<Tokio1Executor>),
}

/// Why one delivery did not happen.
#[derive(Debug, thiserror::Error)]
enum SendError {
    /// The server refused the message for good (5xx), or it cannot be built.
    #[error("{0}")]
    Permanent(String),
    /// The server is unreachable or said "try later"; the rest of the batch waits too.
    #[error("{0}")]
    Transient(String),
}

impl Transport {
    fn new(settings: &Settings) -> anyhow::Result<Transport> {
        Ok(match &settings.mail {
            MailTransport::Files(dir) => {
                std::fs::create_dir_all(dir).with_context(|| format!("failed to create {}", dir.display()))?;
                Transport::Files(AsyncFileTransport::new(dir))
            }
            MailTransport::Smtp(smtp) => {
                let mut builder = match smtp.tls {
                    SmtpTls::None => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&smtp.host),
                    SmtpTls::StartTls => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&smtp.host)
                        .tls(Tls::Required(TlsParameters::new(smtp.host.clone())?)),
                    SmtpTls::Tls => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&smtp.host)
                        .tls(Tls::Wrapper(TlsParameters::new(smtp.host.clone())?)),
                };
                builder = builder.port(smtp.port).timeout(Some(Duration::from_secs(20)));
                if let (Some(user), Some(pass)) = (&smtp.username, &smtp.password) {
                    builder = builder.credentials(Credentials::new(user.clone(), pass.clone()));
                }
                Transport::Smtp(builder.build())
            }
        })
    }

    async fn send(&self, message: Message) -> Result<(), SendError> {
        match self {
            Transport::Files(t) => t.send(message).await.map(|_| ()).map_err(|e| SendError::Transient(e.to_string())),
            Transport::Smtp(t) => match t.send(message).await {
                Ok(_) => Ok(()),
                Err(e) if e.is_permanent() => Err(SendError::Permanent(e.to_string())),
                Err(e) => Err(SendError::Transient(e.to_string())),
            },
        }
    }
}

struct Claimed {
    id: i64,
    message_id: String,
    to_email: String,
    to_name: String,
    subject: String,
    text: String,
    html: String,
    ics: Option<String>,
    ics_method: Option<String>,
    attempts: i64,
}

/// Runs until `stop` turns true.
pub async fn run(state: AppState, mut stop: watch::Receiver<bool>) {
    let transport = match Transport::new(&state.settings) {
        Ok(t) => t,
        Err(e) => {
            tracing::error!(error = ?e, "mail worker cannot start; mail stays queued");
            return;
        }
    };
    let gap = Duration::from_secs(60) / state.settings.mail_per_minute.max(1);
    let mut next_send = Instant::now();
    loop {
        if *stop.borrow() {
            return;
        }
        let claimed = match claim(&state.db).await {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = ?e, "failed to claim outbox rows");
                Vec::new()
            }
        };
        if claimed.is_empty() {
            tokio::select! {
                _ = state.mail_wake.notified() => {}
                _ = tokio::time::sleep(state.settings.mail_poll) => {}
                _ = stop.changed() => {}
            }
            continue;
        }
        let mut rest = claimed.into_iter();
        while let Some(msg) = rest.next() {
            // Rate limit: at most mail_per_minute, evenly spaced.
            tokio::time::sleep_until(next_send.into()).await;
            next_send = Instant::now().max(next_send) + gap;
            let result = match build(&state.settings, &msg) {
                Ok(m) => transport.send(m).await,
                Err(e) => Err(SendError::Permanent(e)),
            };
            let outcome = match result {
                Ok(()) => mark_sent(&state.db, msg.id).await,
                Err(SendError::Permanent(e)) => {
                    tracing::warn!(outbox = msg.id, error = %e, "mail refused for good");
                    mark_failed(&state.db, msg.id, &e).await
                }
                Err(SendError::Transient(e)) => {
                    let wait = backoff(&state.settings, msg.attempts);
                    tracing::warn!(outbox = msg.id, attempts = msg.attempts, error = %e, retry_in = ?wait, "mail delivery failed; will retry");
                    let give_up = msg.attempts >= state.settings.mail_max_attempts;
                    let ids: Vec<i64> = rest.by_ref().map(|m| m.id).collect();
                    let r = retry_later(&state.db, msg.id, &e, wait, give_up).await;
                    // The server is down: hand the rest of the batch back untouched.
                    let released = release(&state.db, &ids, wait).await;
                    r.and(released)
                }
            };
            if let Err(e) = outcome {
                tracing::error!(outbox = msg.id, error = ?e, "failed to record a delivery outcome");
            }
        }
    }
}

fn backoff(settings: &Settings, attempts: i64) -> Duration {
    let doublings = (attempts.max(1) - 1).min(16) as u32;
    (settings.mail_retry_base * 2u32.pow(doublings)).min(Duration::from_secs(3600))
}

async fn claim(db: &Db) -> Result<Vec<Claimed>, sqlx::Error> {
    let now = db::now();
    let mut tx = db.begin().await?;
    let rows = sqlx::query(
        "update outbox set status = 'sending', locked_until = $1, attempts = attempts + 1
         where id in (select id from outbox
                      where (status = 'queued' and next_attempt_at <= $2)
                         or (status = 'sending' and locked_until < $2)
                      order by id limit $3)
         returning id, message_id, to_email, to_name, subject, text_body, html_body, ics, ics_method, attempts",
    )
    .bind(now + LEASE_SECS)
    .bind(now)
    .bind(BATCH)
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    let mut claimed = rows
        .iter()
        .map(|r| {
            Ok(Claimed {
                id: r.try_get("id")?,
                message_id: r.try_get("message_id")?,
                to_email: r.try_get("to_email")?,
                to_name: r.try_get("to_name")?,
                subject: r.try_get("subject")?,
                text: r.try_get("text_body")?,
                html: r.try_get("html_body")?,
                ics: r.try_get("ics")?,
                ics_method: r.try_get("ics_method")?,
                attempts: r.try_get("attempts")?,
            })
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()?;
    claimed.sort_by_key(|c| c.id);
    Ok(claimed)
}

async fn mark_sent(db: &Db, id: i64) -> Result<(), sqlx::Error> {
    let mut tx = db.begin().await?;
    sqlx::query(
        "update outbox set status = 'sent', sent_at = $1, locked_until = null, last_error = null where id = $2",
    )
    .bind(db::now())
    .bind(id)
    .execute(&mut *tx)
    .await?;
    tx.commit().await
}

async fn mark_failed(db: &Db, id: i64, error: &str) -> Result<(), sqlx::Error> {
    let mut tx = db.begin().await?;
    sqlx::query("update outbox set status = 'failed', locked_until = null, last_error = $1 where id = $2")
        .bind(error)
        .bind(id)
        .execute(&mut *tx)
        .await?;
    tx.commit().await
}

async fn retry_later(db: &Db, id: i64, error: &str, wait: Duration, give_up: bool) -> Result<(), sqlx::Error> {
    let mut tx = db.begin().await?;
    sqlx::query(
        "update outbox set status = $1, next_attempt_at = $2, locked_until = null, last_error = $3 where id = $4",
    )
    .bind(if give_up { "failed" } else { "queued" })
    .bind(db::now() + wait.as_secs() as i64)
    .bind(error)
    .bind(id)
    .execute(&mut *tx)
    .await?;
    tx.commit().await
}

/// Returns claimed rows that were never tried, without counting an attempt.
async fn release(db: &Db, ids: &[i64], wait: Duration) -> Result<(), sqlx::Error> {
    if ids.is_empty() {
        return Ok(());
    }
    let mut tx = db.begin().await?;
    for id in ids {
        sqlx::query(
            "update outbox set status = 'queued', attempts = attempts - 1, next_attempt_at = $1, locked_until = null
             where id = $2 and status = 'sending'",
        )
        .bind(db::now() + wait.as_secs() as i64)
        .bind(id)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await
}

fn build(settings: &Settings, msg: &Claimed) -> Result<Message, String> {
    let from: Mailbox = settings.mail_from.parse().map_err(|e| format!("bad sender address: {e}"))?;
    let address = msg.to_email.parse().map_err(|e| format!("bad recipient address: {e}"))?;
    let to = Mailbox::new((!msg.to_name.is_empty()).then(|| msg.to_name.clone()), address);
    let alternative = MultiPart::alternative()
        .singlepart(SinglePart::plain(msg.text.clone()))
        .singlepart(SinglePart::html(msg.html.clone()));
    let body = match (&msg.ics, &msg.ics_method) {
        (Some(ics), Some(method)) => {
            let calendar_type = header::ContentType::parse(&format!("text/calendar; charset=utf-8; method={method}"))
                .map_err(|e| e.to_string())?;
            let file_type =
                header::ContentType::parse("application/ics; name=\"invite.ics\"").map_err(|e| e.to_string())?;
            MultiPart::mixed()
                .multipart(alternative.singlepart(SinglePart::builder().header(calendar_type).body(ics.clone())))
                .singlepart(Attachment::new("invite.ics".into()).body(ics.clone(), file_type))
        }
        _ => alternative,
    };
    Message::builder()
        .from(from)
        .to(to)
        .subject(&msg.subject)
        .message_id(Some(msg.message_id.clone()))
        .multipart(body)
        .map_err(|e| format!("failed to build the message: {e}"))
}
