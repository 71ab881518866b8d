//! The delivery worker: claims due outbox rows, sends them (as `.eml` files
//! when no SMTP server is configured, else over SMTP), and marks each one sent
//! once. Failures are retried with exponential backoff; permanent SMTP
//! rejections and messages out of attempts are marked failed for organisers.
//! What is and is not guaranteed is set out in docs/mail.md.
//!
//! - Two lanes, each claimed and paced by its own task: transactional mail
//!   never waits behind a batch of invitations, and the bulk lane uses at most
//!   [`BULK_SHARE`] of the rate, so the rest is always free for the other.
//! - A claim is a lease that the worker renews every [`HEARTBEAT`] while it
//!   lives; a claim not renewed for [`LEASE_SECS`] belongs to a process that
//!   is gone, and any worker takes it over.
//! - Before sending a row it may have sent already (a crash came before it
//!   was marked), the worker checks: a file that exists is marked sent; over
//!   SMTP the hand-off was recorded just before the body went, and a row
//!   whose hand-off was not confirmed is sent again with the same Message-ID.
//! - Opt-outs are checked at send time: an invitation to an address that
//!   opted out after it was queued is marked skipped.

use std::{
    sync::Mutex,
    time::{Duration, Instant},
};

use lettre::message::{header, Attachment, Mailbox, MultiPart, SinglePart};
use lettre::Message;
use sqlx::Row;
use tokio::sync::{watch, Notify};

use super::{
    transport::{Files, SendError, SmtpSession, Transport},
    Lane,
};
use crate::{
    db::{self, Db},
    settings::Settings,
    AppState,
};

/// Rows claimed at once per lane; the lease covers them all while they wait.
const BATCH: i64 = 50;
/// A claim not renewed for this long is taken over.
pub const LEASE_SECS: i64 = 15;
/// How often a live worker renews its claims: three renewals per lease, so one
/// slow write does not lose a claim.
pub const HEARTBEAT: Duration = Duration::from_secs(5);
/// The bulk lane's share of `STAFFROOM_MAIL_PER_MINUTE` (numerator, denominator).
pub const BULK_SHARE: (u32, u32) = (4, 5);

struct Claimed {
    id: i64,
    kind: String,
    message_id: String,
    to_email: String,
    to_name: String,
    subject: String,
    text: String,
    html: String,
    ics: Option<String>,
    ics_method: Option<String>,
    attempts: i64,
    /// Set when an earlier attempt got as far as the SMTP body.
    handoff_started_at: Option<i64>,
}

/// Evenly spaced send slots, shared by whoever holds it.
struct Pacer {
    gap: Duration,
    next: Mutex<Instant>,
}

impl Pacer {
    fn new(gap: Duration) -> Pacer {
        Pacer { gap, next: Mutex::new(Instant::now()) }
    }

    async fn wait(&self) {
        let slot = {
            let mut next = self.next.lock().unwrap_or_else(|e| e.into_inner());
            let slot = (*next).max(Instant::now());
            *next = slot + self.gap;
            slot
        };
        tokio::time::sleep_until(slot.into()).await;
    }
}

/// How one lane sends: files need nothing of their own, SMTP a connection
/// (boxed: it is large, and lives as long as the lane).
enum Sender<'a> {
    Files(&'a Files),
    Smtp(Box<SmtpSession<'a>>),
}

struct Worker {
    state: AppState,
    transport: Transport,
    /// This process's name on its claims.
    id: String,
    /// Every message, in either lane, takes a slot here: the total stays
    /// within the configured rate.
    shared: Pacer,
}

/// Runs until `stop` turns true.
pub async fn run(state: AppState, stop: watch::Receiver<bool>) {
    let install_id = match identity(&state.db, &state.settings).await {
        Ok(id) => id,
        Err(e) => {
            tracing::error!(error = ?e, "mail worker cannot read the install id; mail stays queued");
            return;
        }
    };
    let transport = match Transport::new(&state.settings, &install_id, &state.public_url) {
        Ok(t) => t,
        Err(e) => {
            tracing::error!(error = ?e, "mail worker cannot start; mail stays queued");
            return;
        }
    };
    let gap = Duration::from_secs(60) / state.settings.mail_per_minute.max(1);
    let worker = Worker { state, transport, id: uuid::Uuid::new_v4().simple().to_string(), shared: Pacer::new(gap) };
    let wake = [Notify::new(), Notify::new()];
    tokio::join!(
        worker.heartbeat(stop.clone()),
        worker.fan_out_wakes(&wake, stop.clone()),
        worker.lane(Lane::Transactional, &wake[0], stop.clone()),
        worker.lane(Lane::Bulk, &wake[1], stop),
    );
}

/// Reads this installation's id and records the sender's domain for the
/// Message-IDs of rows queued from now on.
async fn identity(db: &Db, settings: &Settings) -> Result<String, sqlx::Error> {
    if let Ok(from) = settings.mail_from.parse::<Mailbox>() {
        let mut tx = db.begin().await?;
        sqlx::query("update mail_install set domain = $1 where id = 1 and domain <> $1")
            .bind(from.email.domain())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
    }
    sqlx::query_scalar("select install_id from mail_install where id = 1").fetch_one(&db.read).await
}

impl Worker {
    /// Renews this worker's claims until it stops: a claim is ours for as
    /// long as we are alive, and no longer than [`LEASE_SECS`] after.
    async fn heartbeat(&self, mut stop: watch::Receiver<bool>) {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(HEARTBEAT) => {}
                _ = stop.changed() => {}
            }
            if *stop.borrow() {
                return;
            }
            let renewed = async {
                let mut tx = self.state.db.begin().await?;
                sqlx::query("update outbox set locked_until = $1 where claimed_by = $2 and status = 'sending'")
                    .bind(db::now() + LEASE_SECS)
                    .bind(&self.id)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await
            };
            if let Err(e) = renewed.await {
                tracing::error!(error = ?e, "failed to renew the mail claims");
            }
        }
    }

    /// One notification wakes both lanes: the enqueuer does not know which
    /// lane its mail is in.
    async fn fan_out_wakes(&self, lanes: &[Notify; 2], mut stop: watch::Receiver<bool>) {
        loop {
            tokio::select! {
                _ = self.state.mail_wake.notified() => lanes.iter().for_each(Notify::notify_one),
                _ = stop.changed() => {}
            }
            if *stop.borrow() {
                return;
            }
        }
    }

    async fn lane(&self, lane: Lane, wake: &Notify, mut stop: watch::Receiver<bool>) {
        let settings = &self.state.settings;
        let own = match lane {
            Lane::Transactional => None,
            Lane::Bulk => Some(Pacer::new(self.shared.gap * BULK_SHARE.1 / BULK_SHARE.0)),
        };
        let mut sender = match &self.transport {
            Transport::Smtp(s) => Sender::Smtp(Box::new(SmtpSession::new(s))),
            Transport::Files(f) => Sender::Files(f),
        };
        loop {
            if *stop.borrow() {
                return;
            }
            let claimed = match claim(&self.state.db, lane, &self.id).await {
                Ok(c) => c,
                Err(e) => {
                    tracing::error!(error = ?e, lane = lane.as_str(), "failed to claim outbox rows");
                    Vec::new()
                }
            };
            if claimed.is_empty() {
                if let Sender::Smtp(s) = &mut sender {
                    s.close().await;
                }
                tokio::select! {
                    _ = wake.notified() => {}
                    _ = tokio::time::sleep(settings.mail_poll) => {}
                    _ = stop.changed() => {}
                }
                continue;
            }
            let mut rest = claimed.into_iter();
            while let Some(msg) = rest.next() {
                if *stop.borrow() {
                    // Hand the untried rows back, so a restart sends them at once.
                    let ids: Vec<i64> = std::iter::once(msg.id).chain(rest.by_ref().map(|m| m.id)).collect();
                    if let Err(e) = release(&self.state.db, &ids, &self.id, Duration::ZERO).await {
                        tracing::error!(error = ?e, "failed to release claimed mail on shutdown");
                    }
                    break;
                }
                let outcome = match self.deliver(&msg, own.as_ref(), &mut sender).await {
                    Ok(()) => Ok(()),
                    Err(SendError::Permanent(e)) => {
                        tracing::warn!(outbox = msg.id, error = %e, "mail refused for good");
                        finish(&self.state.db, msg.id, &self.id, "failed", Some(&e)).await
                    }
                    Err(e) => {
                        let wait = backoff(settings, msg.attempts);
                        let unconfirmed = matches!(e, SendError::Unconfirmed(_));
                        tracing::warn!(outbox = msg.id, attempts = msg.attempts, error = %e, retry_in = ?wait, "mail delivery failed; will retry");
                        let give_up = msg.attempts >= settings.mail_max_attempts;
                        let ids: Vec<i64> = rest.by_ref().map(|m| m.id).collect();
                        let r =
                            retry_later(&self.state.db, msg.id, &self.id, &e.to_string(), wait, give_up, unconfirmed)
                                .await;
                        // The server is down: hand the rest of the batch back untouched.
                        let released = release(&self.state.db, &ids, &self.id, wait).await;
                        r.and(released)
                    }
                };
                if let Err(e) = outcome {
                    tracing::error!(outbox = msg.id, error = ?e, "failed to record a delivery outcome");
                }
            }
        }
    }

    /// Delivers one claimed row and records it sent (or skipped); a failure
    /// is returned for the caller to record.
    async fn deliver(&self, msg: &Claimed, own: Option<&Pacer>, sender: &mut Sender<'_>) -> Result<(), SendError> {
        let db = &self.state.db;
        let recorded = |r: Result<(), sqlx::Error>| {
            r.map_err(|e| SendError::Transient(format!("failed to record the outcome: {e}")))
        };
        if let Sender::Files(files) = sender {
            if files.delivered(msg.id).await {
                tracing::info!(outbox = msg.id, file = %files.eml_path(msg.id).display(), "found already written; marked sent");
                return recorded(finish(db, msg.id, &self.id, "sent", None).await);
            }
        }
        if let Some(own) = own {
            own.wait().await;
        }
        self.shared.wait().await;
        // Checked after the wait, as close to the send as it can be; a
        // skipped row costs its slot.
        if msg.kind == "invitation"
            && opted_out(db, &msg.to_email).await.map_err(|e| SendError::Transient(e.to_string()))?
        {
            tracing::info!(outbox = msg.id, "not sent: the recipient opted out after it was queued");
            return recorded(finish(db, msg.id, &self.id, "skipped", Some("recipient opted out")).await);
        }
        let message = build(&self.state.settings, msg).map_err(SendError::Permanent)?;
        match sender {
            Sender::Files(files) => {
                files.write(msg.id, &message, decoded(&self.state.settings, msg), &msg.text).await?;
            }
            Sender::Smtp(smtp) => {
                if msg.handoff_started_at.is_some() {
                    tracing::warn!(
                        outbox = msg.id,
                        message_id = %msg.message_id,
                        "sending again a message whose hand-off to the SMTP server was never confirmed; \
                         if the server had taken it, the receiver gets a duplicate with the same Message-ID"
                    );
                }
                smtp.send(&message, || record_handoff(db, msg.id, &self.id)).await?;
            }
        }
        // Delivered but not recorded: for a file the next attempt finds it;
        // over SMTP it is a resend with the same Message-ID.
        finish(db, msg.id, &self.id, "sent", None)
            .await
            .map_err(|e| SendError::Unconfirmed(format!("delivered, but recording it failed: {e}")))
    }
}

fn backoff(settings: &Settings, attempts: i64) -> Duration {
    let doublings = (attempts.max(1) - 1).min(16) as u32;
    (settings.mail_retry_base * 2u32.pow(doublings)).min(Duration::from_secs(3600))
}

/// The rows `worker` may send now in `lane`: due ones, and ones whose
/// claimant stopped renewing its lease. The condition is repeated outside
/// the subquery so that, on PostgreSQL, a row another worker claimed while
/// this statement waited for its lock is re-checked and left alone.
async fn claim(db: &Db, lane: Lane, worker: &str) -> Result<Vec<Claimed>, sqlx::Error> {
    let now = db::now();
    let due = "((status = 'queued' and next_attempt_at <= $4) or (status = 'sending' and locked_until < $4))";
    let mut tx = db.begin().await?;
    let rows = sqlx::query(&format!(
        "update outbox set status = 'sending', claimed_by = $1, locked_until = $2, attempts = attempts + 1
         where id in (select id from outbox where lane = $3 and {due} order by id limit $5) and {due}
         returning id, kind, message_id, to_email, to_name, subject, text_body, html_body, ics, ics_method,
                   attempts, handoff_started_at"
    ))
    .bind(worker)
    .bind(now + LEASE_SECS)
    .bind(lane.as_str())
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
                kind: r.try_get("kind")?,
                message_id: r.try_get("message_id")?,
                to_email: r.try_get("to_email")?,
                to_name: r.try_get("to_name")?,
                subject: r.try_get("subject")?,
                text: r.try_get("text_body")?,
                html: r.try_get("html_body")?,
                ics: r.try_get("ics")?,
                ics_method: r.try_get("ics_method")?,
                attempts: r.try_get("attempts")?,
                handoff_started_at: r.try_get("handoff_started_at")?,
            })
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()?;
    claimed.sort_by_key(|c| c.id);
    Ok(claimed)
}

async fn opted_out(db: &Db, email: &str) -> Result<bool, sqlx::Error> {
    let n: i64 =
        sqlx::query_scalar("select count(*) from opt_outs where email = $1").bind(email).fetch_one(&db.read).await?;
    Ok(n > 0)
}

/// Records that the body is about to go. Fails if this worker no longer
/// holds the row, so a worker that lost its claim never sends.
async fn record_handoff(db: &Db, id: i64, worker: &str) -> Result<(), sqlx::Error> {
    let mut tx = db.begin().await?;
    let done = sqlx::query(
        "update outbox set handoff_started_at = $1 where id = $2 and claimed_by = $3 and status = 'sending'",
    )
    .bind(db::now())
    .bind(id)
    .bind(worker)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    if done.rows_affected() == 1 {
        Ok(())
    } else {
        Err(sqlx::Error::RowNotFound)
    }
}

/// Records a final outcome: `sent`, `failed` or `skipped`.
async fn finish(db: &Db, id: i64, worker: &str, status: &str, error: Option<&str>) -> Result<(), sqlx::Error> {
    let mut tx = db.begin().await?;
    let done = sqlx::query(
        "update outbox set status = $1, sent_at = case when $1 = 'sent' then $2 else sent_at end,
                           locked_until = null, last_error = $3
         where id = $4 and claimed_by = $5 and status = 'sending'",
    )
    .bind(status)
    .bind(db::now())
    .bind(error)
    .bind(id)
    .bind(worker)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    if done.rows_affected() == 0 {
        tracing::warn!(outbox = id, status, "the claim had been taken over; the outcome is left to the new claimant");
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
async fn retry_later(
    db: &Db,
    id: i64,
    worker: &str,
    error: &str,
    wait: Duration,
    give_up: bool,
    unconfirmed: bool,
) -> Result<(), sqlx::Error> {
    let mut tx = db.begin().await?;
    // A refusal before or at the final dot means the server does not have
    // it: the hand-off mark goes. An unanswered body keeps it.
    sqlx::query(
        "update outbox set status = $1, next_attempt_at = $2, locked_until = null, last_error = $3,
                           handoff_started_at = case when $4 = 1 then handoff_started_at else null end
         where id = $5 and claimed_by = $6 and status = 'sending'",
    )
    .bind(if give_up { "failed" } else { "queued" })
    .bind(db::now() + wait.as_secs() as i64)
    .bind(error)
    .bind(i64::from(unconfirmed))
    .bind(id)
    .bind(worker)
    .execute(&mut *tx)
    .await?;
    tx.commit().await
}

/// Returns claimed rows that were never tried, without counting an attempt.
async fn release(db: &Db, ids: &[i64], worker: &str, wait: Duration) -> Result<(), sqlx::Error> {
    if ids.is_empty() {
        return Ok(());
    }
    let mut tx = db.begin().await?;
    for id in ids {
        sqlx::query(
            "update outbox set status = 'queued', attempts = attempts - 1, next_attempt_at = $1, locked_until = null
             where id = $2 and claimed_by = $3 and status = 'sending'",
        )
        .bind(db::now() + wait.as_secs() as i64)
        .bind(id)
        .bind(worker)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await
}

/// The readable twin of a written `.eml`: headers a person looks for and the
/// text body as written, so links can be copied (the `.eml` body is
/// quoted-printable, where long lines break with `=`).
fn decoded(settings: &Settings, msg: &Claimed) -> String {
    let to = if msg.to_name.is_empty() { msg.to_email.clone() } else { format!("{} <{}>", msg.to_name, msg.to_email) };
    let mut out =
        format!("From: {}\nTo: {to}\nSubject: {}\nMessage-ID: {}\n", settings.mail_from, msg.subject, msg.message_id);
    if let Some(method) = &msg.ics_method {
        out.push_str(&format!("Attachment: invite.ics (calendar {method})\n"));
    }
    out.push('\n');
    out.push_str(&msg.text);
    if !msg.text.ends_with('\n') {
        out.push('\n');
    }
    out
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
