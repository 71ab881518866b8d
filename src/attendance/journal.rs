//! The room journal: every durable fact of a live room (joins, leaves, moves
//! between groups, going live, the end, bars, and the room's heartbeat)
//! goes through one writer per room. Attendance is rebuilt from these rows,
//! so none may be lost: facts are written in order, in batches, each batch
//! in one transaction, and a batch that fails is retried (with backoff)
//! until it is stored. A retried transaction either wrote everything or
//! nothing, so a retry never duplicates a row.
//!
//! The room's actor only queues facts ([`Journal::write`]) and never waits
//! on the database, except where the order matters to people: the end is
//! flushed before the room says goodbye ([`Journal::flush`]). Storing the
//! end also settles the session's attendance, in the same transaction
//! (`settle.rs`).

use std::{collections::HashMap, time::Duration};

use sqlx::Row;
use tokio::sync::{mpsc, oneshot};

use crate::db::{Db, Tx};

/// One durable fact of a room. Times are Unix ms.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fact {
    Join {
        user_id: i64,
        at: i64,
    },
    /// `reason` is one of the room's leave reasons (`left`, `dropped`, `removed`, `ended`, ...).
    Leave {
        user_id: i64,
        reason: &'static str,
        at: i64,
    },
    /// A move between the main room (`group: None`) and a breakout group.
    Move {
        user_id: i64,
        group: Option<String>,
        at: i64,
    },
    /// A host took the room live: only the first mark counts.
    Live {
        at: i64,
    },
    /// The live part is over (a host ended it, or its time ran out): only the first mark counts.
    Ended {
        at: i64,
    },
    /// A host removed this person and barred them from coming back.
    Bar {
        user_id: i64,
        at: i64,
    },
}

enum Entry {
    Fact(Fact),
    /// Answered once every fact queued before it is stored.
    Flush(oneshot::Sender<()>),
}

/// At most this many facts in one transaction.
const MAX_BATCH: usize = 256;
/// The first retry after a failed write; it doubles up to [`MAX_RETRY_DELAY`].
const FIRST_RETRY_DELAY: Duration = Duration::from_millis(50);
const MAX_RETRY_DELAY: Duration = Duration::from_secs(5);

/// A room's journal: cheap to clone, never blocks the sender.
#[derive(Clone)]
pub struct Journal {
    tx: mpsc::UnboundedSender<Entry>,
}

impl Journal {
    /// Starts the writer for `session_id`'s room. While any clone of the
    /// journal is alive the room's heartbeat is stored every `heartbeat`;
    /// when the last one is dropped the remaining facts are written and the
    /// heartbeat removed (the room closed in order: see [`close_unclosed_rooms`]).
    pub fn open(db: Db, session_id: i64, heartbeat: Duration) -> Journal {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(db, session_id, heartbeat, rx));
        Journal { tx }
    }

    pub fn write(&self, fact: Fact) {
        // The writer lives as long as any sender: it cannot have gone.
        let _ = self.tx.send(Entry::Fact(fact));
    }

    /// Returns once everything written before it is stored.
    pub async fn flush(&self) {
        let (done, stored) = oneshot::channel();
        if self.tx.send(Entry::Flush(done)).is_ok() {
            let _ = stored.await;
        }
    }
}

async fn run(db: Db, session_id: i64, heartbeat: Duration, mut rx: mpsc::UnboundedReceiver<Entry>) {
    let mut beat = tokio::time::interval(heartbeat);
    beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut open = true;
    while open {
        let mut batch = vec![];
        let mut flushes = vec![];
        let mut beat_at = None;
        tokio::select! {
            entry = rx.recv() => match entry {
                Some(entry) => take(entry, &mut batch, &mut flushes),
                None => open = false,
            },
            _ = beat.tick() => beat_at = Some(now_ms()),
        }
        // Everything already queued goes in the same transaction.
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(entry) => take(entry, &mut batch, &mut flushes),
                Err(mpsc::error::TryRecvError::Empty) => break,
                Err(mpsc::error::TryRecvError::Disconnected) => {
                    open = false;
                    break;
                }
            }
        }
        // Closed in order: the leaves are in this batch, no heartbeat is needed.
        let heartbeat = if open { beat_at.map(Heartbeat::Beat) } else { Some(Heartbeat::Clear) };
        if !batch.is_empty() || heartbeat.is_some() {
            store(&db, session_id, &batch, heartbeat).await;
        }
        for done in flushes {
            let _ = done.send(());
        }
    }
}

fn take(entry: Entry, batch: &mut Vec<Fact>, flushes: &mut Vec<oneshot::Sender<()>>) {
    match entry {
        Entry::Fact(fact) => batch.push(fact),
        Entry::Flush(done) => flushes.push(done),
    }
}

#[derive(Clone, Copy)]
enum Heartbeat {
    Beat(i64),
    Clear,
}

/// Writes one batch, retrying until the database takes it.
async fn store(db: &Db, session_id: i64, batch: &[Fact], heartbeat: Option<Heartbeat>) {
    let mut delay = FIRST_RETRY_DELAY;
    for attempt in 1u32.. {
        match commit(db, session_id, batch, heartbeat).await {
            Ok(()) => {
                if attempt > 1 {
                    tracing::info!(
                        session = session_id,
                        attempt,
                        facts = batch.len(),
                        "room journal written after retrying"
                    );
                }
                return;
            }
            Err(e) => {
                tracing::warn!(session = session_id, attempt, facts = batch.len(), error = %e,
                    "failed to write the room journal; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(MAX_RETRY_DELAY);
            }
        }
    }
}

async fn commit(db: &Db, session_id: i64, batch: &[Fact], heartbeat: Option<Heartbeat>) -> Result<(), sqlx::Error> {
    let mut tx = db.begin().await?;
    for fact in batch {
        write_fact(&mut tx, session_id, fact).await?;
    }
    match heartbeat {
        Some(Heartbeat::Beat(at)) => {
            sqlx::query(
                "insert into room_heartbeats (session_id, at) values ($1, $2)
                 on conflict (session_id) do update set at = excluded.at",
            )
            .bind(session_id)
            .bind(at)
            .execute(&mut *tx)
            .await?;
        }
        Some(Heartbeat::Clear) => {
            sqlx::query("delete from room_heartbeats where session_id = $1").bind(session_id).execute(&mut *tx).await?;
        }
        None => {}
    }
    tx.commit().await
}

async fn write_fact(tx: &mut Tx, session_id: i64, fact: &Fact) -> Result<(), sqlx::Error> {
    let event = |user_id: i64, kind: &'static str, reason: Option<&'static str>, at: i64| {
        sqlx::query("insert into room_events (session_id, user_id, kind, reason, at) values ($1, $2, $3, $4, $5)")
            .bind(session_id)
            .bind(user_id)
            .bind(kind)
            .bind(reason)
            .bind(at)
    };
    let query = match fact {
        Fact::Join { user_id, at } => event(*user_id, "join", None, *at),
        Fact::Leave { user_id, reason, at } => event(*user_id, "leave", Some(*reason), *at),
        Fact::Move { user_id, group, at } => {
            sqlx::query("insert into breakout_moves (session_id, user_id, group_name, at) values ($1, $2, $3, $4)")
                .bind(session_id)
                .bind(*user_id)
                .bind(group.clone())
                .bind(*at)
        }
        Fact::Live { at } => {
            sqlx::query("update sessions set live_at = coalesce(live_at, $1) where id = $2").bind(*at).bind(session_id)
        }
        Fact::Ended { at } => {
            sqlx::query("update sessions set ended_at = coalesce(ended_at, $1) where id = $2")
                .bind(*at)
                .bind(session_id)
                .execute(&mut **tx)
                .await?;
            // The results are stored with the end, in this transaction: every
            // fact before the end is in (the journal writes in order), and
            // anything after it lies outside the live window.
            super::settle::settle_in(tx, session_id, now_ms()).await?;
            return Ok(());
        }
        Fact::Bar { user_id, at } => {
            sqlx::query("insert into room_bars (session_id, user_id, at) values ($1, $2, $3) on conflict do nothing")
                .bind(session_id)
                .bind(*user_id)
                .bind(*at)
        }
    };
    query.execute(&mut **tx).await?;
    Ok(())
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Marks the session ended at `at`, outside any room (a room that is not
/// running cannot do it): only the first mark counts. Settles the session
/// in the same transaction, if it is not settled yet.
pub async fn mark_ended(db: &Db, session_id: i64, at: i64) -> Result<(), sqlx::Error> {
    let mut tx = db.begin().await?;
    write_fact(&mut tx, session_id, &Fact::Ended { at }).await?;
    tx.commit().await
}

/// The last join or leave stored for the session's room, if any: (at, was a join).
pub async fn last_event(db: &Db, session_id: i64) -> Result<Option<(i64, bool)>, sqlx::Error> {
    let row: Option<(i64, String)> =
        sqlx::query_as("select at, kind from room_events where session_id = $1 order by at desc, id desc limit 1")
            .bind(session_id)
            .fetch_optional(&db.read)
            .await?;
    Ok(row.map(|(at, kind)| (at, kind == "join")))
}

/// Whether a host removed and barred this person from the session.
pub async fn is_barred(db: &Db, session_id: i64, user_id: i64) -> Result<bool, sqlx::Error> {
    let n: i64 = sqlx::query_scalar("select count(*) from room_bars where session_id = $1 and user_id = $2")
        .bind(session_id)
        .bind(user_id)
        .fetch_one(&db.read)
        .await?;
    Ok(n > 0)
}

/// At start-up, before any room opens: a heartbeat still stored means the
/// server stopped without closing that room. Everyone whose last event there
/// is a join gets a leave (reason `server_restart`) at the last heartbeat
/// (or at their join, if that came later), so attendance never runs on.
pub async fn close_unclosed_rooms(db: &Db) -> Result<(), sqlx::Error> {
    let beats = sqlx::query("select session_id, at from room_heartbeats").fetch_all(&db.read).await?;
    for beat in beats {
        let session_id: i64 = beat.try_get("session_id")?;
        let last_beat: i64 = beat.try_get("at")?;
        let events = sqlx::query("select user_id, kind, at from room_events where session_id = $1 order by at, id")
            .bind(session_id)
            .fetch_all(&db.read)
            .await?;
        let mut open: HashMap<i64, Option<i64>> = HashMap::new();
        for e in &events {
            let user: i64 = e.try_get("user_id")?;
            let kind: String = e.try_get("kind")?;
            let at: i64 = e.try_get("at")?;
            open.insert(user, (kind == "join").then_some(at));
        }
        let mut tx = db.begin().await?;
        let mut closed = 0;
        for (user_id, joined) in open {
            let Some(joined) = joined else { continue };
            let leave = Fact::Leave { user_id, reason: "server_restart", at: last_beat.max(joined) };
            write_fact(&mut tx, session_id, &leave).await?;
            closed += 1;
        }
        sqlx::query("delete from room_heartbeats where session_id = $1").bind(session_id).execute(&mut *tx).await?;
        tx.commit().await?;
        tracing::warn!(session = session_id, closed, last_beat, "closed a room an unclean stop left open");
    }
    Ok(())
}
