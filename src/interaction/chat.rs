//! Room-wide chat: stored, length-limited, rate-limited per person; hosts can
//! remove a message (it stays in the database, marked, and is never shown).

use std::{
    collections::{HashMap, VecDeque},
    time::{Duration, Instant},
};

use serde::Serialize;
use sqlx::Row;
use utoipa::ToSchema;

use super::{clean_text, now_ms, InteractionError};
use crate::db::Db;

pub const MAX_CHARS: usize = 1000;
/// How many earlier messages someone joining, or moving into a space, is shown.
pub const HISTORY: i64 = 100;
/// At most this many messages per person in [`WINDOW`].
pub const BURST: usize = 5;
pub const WINDOW: Duration = Duration::from_secs(10);

#[derive(Clone, Debug, Serialize, ToSchema, PartialEq, Eq)]
pub struct ChatMessage {
    pub id: i64,
    pub author_id: i64,
    pub author_name: String,
    /// Plain text: clients must show it as text, never as HTML.
    pub body: String,
    /// Unix milliseconds.
    pub at: i64,
}

/// Per-person flood control, owned by the room.
#[derive(Default)]
pub struct Throttle {
    sent: HashMap<i64, VecDeque<Instant>>,
}

impl Throttle {
    /// Records a message from `user` at `now`, or refuses it.
    pub fn check(&mut self, user: i64, now: Instant) -> Result<(), InteractionError> {
        let times = self.sent.entry(user).or_default();
        while times.front().is_some_and(|t| now.duration_since(*t) >= WINDOW) {
            times.pop_front();
        }
        if times.len() >= BURST {
            return Err(InteractionError::TooFast);
        }
        times.push_back(now);
        Ok(())
    }
}

/// Stores a chat message; `group` is the breakout group it was said in
/// (`None`: the main room).
pub async fn post(
    db: &Db,
    session_id: i64,
    user_id: i64,
    body: &str,
    group: Option<u32>,
) -> Result<ChatMessage, InteractionError> {
    let body = clean_text("message", body, MAX_CHARS)?;
    let at = now_ms();
    let mut tx = db.begin().await?;
    let id: i64 = sqlx::query_scalar(
        "insert into chat_messages (session_id, user_id, body, at, breakout_group) values ($1, $2, $3, $4, $5)
         returning id",
    )
    .bind(session_id)
    .bind(user_id)
    .bind(&body)
    .bind(at)
    .bind(group.map(i64::from))
    .fetch_one(&mut *tx)
    .await?;
    let author_name: String =
        sqlx::query_scalar("select name from users where id = $1").bind(user_id).fetch_one(&mut *tx).await?;
    tx.commit().await?;
    Ok(ChatMessage { id, author_id: user_id, author_name, body, at })
}

/// Removes a message from view (hosts only).
pub async fn delete(db: &Db, session_id: i64, message_id: i64, by: i64, is_host: bool) -> Result<(), InteractionError> {
    if !is_host {
        return Err(InteractionError::NotHost("remove chat messages"));
    }
    let mut tx = db.begin().await?;
    let r = sqlx::query(
        "update chat_messages set deleted_at = $1, deleted_by = $2
         where id = $3 and session_id = $4 and deleted_at is null",
    )
    .bind(now_ms())
    .bind(by)
    .bind(message_id)
    .bind(session_id)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    if r.rows_affected() == 0 {
        return Err(InteractionError::NotFound("message"));
    }
    Ok(())
}

/// The latest `limit` visible messages said in `group` (`None`: the main
/// room), oldest first: for someone joining, or moving into that space.
pub async fn recent(db: &Db, session_id: i64, group: Option<u32>, limit: i64) -> Result<Vec<ChatMessage>, sqlx::Error> {
    let select = "select c.id, c.user_id, u.name, c.body, c.at from chat_messages c join users u on u.id = c.user_id
         where c.session_id = $1 and c.deleted_at is null";
    let rows = match group {
        None => {
            sqlx::query(&format!("{select} and c.breakout_group is null order by c.id desc limit $2"))
                .bind(session_id)
                .bind(limit)
                .fetch_all(&db.read)
                .await?
        }
        Some(g) => {
            sqlx::query(&format!("{select} and c.breakout_group = $2 order by c.id desc limit $3"))
                .bind(session_id)
                .bind(i64::from(g))
                .bind(limit)
                .fetch_all(&db.read)
                .await?
        }
    };
    let mut out = rows
        .iter()
        .map(|r| {
            Ok(ChatMessage {
                id: r.try_get("id")?,
                author_id: r.try_get("user_id")?,
                author_name: r.try_get("name")?,
                body: r.try_get("body")?,
                at: r.try_get("at")?,
            })
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()?;
    out.reverse();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_is_refused_and_the_window_recovers() {
        let mut t = Throttle::default();
        let start = Instant::now();
        for _ in 0..BURST {
            t.check(1, start).unwrap();
        }
        assert!(matches!(t.check(1, start), Err(InteractionError::TooFast)));
        t.check(2, start).unwrap();
        t.check(1, start + WINDOW).unwrap();
    }
}
