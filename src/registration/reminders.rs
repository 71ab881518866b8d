//! Reminders 24 hours and 1 hour before a session, once each; and after it,
//! one email with the replay link to each registrant who never joined.
//!
//! "Once" survives restarts because the mark (`reminded_24h_at`,
//! `reminded_1h_at`) is set by a conditional update in the same transaction
//! that queues the email: whoever flips the mark sends, nobody else.

use std::time::Duration;

use sqlx::Row;
use tokio::sync::watch;

use super::{session_and_person, Person};
use crate::{db, mail, mail::templates, AppState};

/// Seconds before the start when each reminder is due.
pub const DAY_AHEAD: i64 = 24 * 3600;
pub const HOUR_AHEAD: i64 = 3600;

/// Runs until `stop` turns true, looking for due reminders every interval.
pub async fn run(state: AppState, mut stop: watch::Receiver<bool>) {
    loop {
        match send_due(&state, db::now()).await {
            Ok(0) => {}
            Ok(n) => {
                tracing::info!(count = n, "reminders queued");
                state.mail_wake.notify_one();
            }
            Err(e) => tracing::error!(error = ?e, "failed to queue reminders"),
        }
        match send_follow_ups(&state, db::now()).await {
            Ok(0) => {}
            Ok(n) => {
                tracing::info!(count = n, "replay follow-ups queued");
                state.mail_wake.notify_one();
            }
            Err(e) => tracing::error!(error = ?e, "failed to queue replay follow-ups"),
        }
        tokio::select! {
            _ = tokio::time::sleep(state.settings.reminder_interval.max(Duration::from_millis(50))) => {}
            _ = stop.changed() => {}
        }
        if *stop.borrow() {
            return;
        }
    }
}

/// Queues every reminder due at `now`; returns how many.
pub async fn send_due(state: &AppState, now: i64) -> anyhow::Result<usize> {
    let mut sent = 0;
    // The hour reminder first: someone inside the last hour gets only that one.
    // Claiming the hour reminder also settles the day-before one.
    let kinds = [
        ("reminded_1h_at", "reminded_1h_at = $1, reminded_24h_at = coalesce(reminded_24h_at, $1)", HOUR_AHEAD, true),
        ("reminded_24h_at", "reminded_24h_at = $1", DAY_AHEAD, false),
    ];
    for (column, set, lead, soon) in kinds {
        let due = sqlx::query(&format!(
            "select r.id, r.session_id from registrations r join sessions s on s.id = r.session_id
             where r.status = 'confirmed' and r.{column} is null and s.status = 'published'
               and s.starts_at > $1 and s.starts_at <= $2
             order by s.starts_at limit 1000"
        ))
        .bind(now)
        .bind(now + lead)
        .fetch_all(&state.db.read)
        .await?;
        for row in due {
            let claim =
                format!("update registrations set {set} where id = $2 and {column} is null and status = 'confirmed'");
            let sent_one =
                claim_and_send(state, &row, &claim, now, |facts, to| templates::reminder(facts, to, soon)).await?;
            sent += usize::from(sent_one);
        }
    }
    Ok(sent)
}

/// Queues the replay email for every confirmed registrant of a session that
/// is over (ended by a host, or past its scheduled end) who never joined the
/// room, once the session has a finished recording; returns how many.
pub async fn send_follow_ups(state: &AppState, now: i64) -> anyhow::Result<usize> {
    let due = sqlx::query(
        "select r.id, r.session_id,
                (select rec.id from recordings rec where rec.session_id = r.session_id
                   and rec.status in ('ready', 'recovered') order by rec.started_at desc limit 1) as recording_id
         from registrations r join sessions s on s.id = r.session_id
         where r.status = 'confirmed' and r.followed_up_at is null and s.status = 'published'
           and (s.ended_at is not null or s.ends_at <= $1)
           and exists (select 1 from recordings rec where rec.session_id = r.session_id
                         and rec.status in ('ready', 'recovered'))
           and not exists (select 1 from room_events e where e.session_id = r.session_id
                             and e.user_id = r.user_id and e.kind = 'join')
         limit 1000",
    )
    .bind(now)
    .fetch_all(&state.db.read)
    .await?;
    let mut sent = 0;
    for row in due {
        let recording_id: String = row.try_get("recording_id")?;
        let replay_url = format!("{}/replay.html?id={recording_id}", state.public_url);
        let claim = "update registrations set followed_up_at = $1 where id = $2 and followed_up_at is null";
        let sent_one =
            claim_and_send(state, &row, claim, now, |facts, to| templates::follow_up(facts, to, &replay_url));
        sent += usize::from(sent_one.await?);
    }
    Ok(sent)
}

/// For one due row (`id` of the registration, `session_id`): sets its mark
/// with `claim` (binding `now` and the id) and, if this call set it, queues
/// the email in the same transaction. Whoever sets the mark sends; nobody else.
async fn claim_and_send(
    state: &AppState,
    row: &sqlx::any::AnyRow,
    claim: &str,
    now: i64,
    email: impl FnOnce(&templates::SessionFacts<'_>, &templates::Recipient<'_>) -> mail::Email,
) -> anyhow::Result<bool> {
    let registration_id: i64 = row.try_get("id")?;
    let session_id: i64 = row.try_get("session_id")?;
    let mut tx = state.db.begin().await?;
    let claimed = sqlx::query(claim).bind(now).bind(registration_id).execute(&mut *tx).await?;
    if claimed.rows_affected() != 1 {
        return Ok(false);
    }
    let Some((s, person)) = session_and_person(&mut tx, session_id, registration_id).await? else {
        return Ok(false);
    };
    let email = email(&s.facts(state), &Person::recipient(&person, state));
    mail::enqueue(&mut tx, &email).await?;
    tx.commit().await?;
    Ok(true)
}
