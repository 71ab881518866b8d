//! Q&A: questions apart from chat, one upvote per person, and the host marks
//! a question answered or highlights one (at most one highlighted at a time).

use serde::Serialize;
use sqlx::Row;
use utoipa::ToSchema;

use super::{clean_text, now_ms, InteractionError};
use crate::db::{self, Db};

pub const MAX_CHARS: usize = 500;

#[derive(Clone, Debug, Serialize, ToSchema, PartialEq, Eq)]
pub struct Question {
    pub id: i64,
    pub author_id: i64,
    pub author_name: String,
    pub body: String,
    /// Unix milliseconds.
    pub at: i64,
    pub votes: i64,
    pub answered: bool,
    pub highlighted: bool,
    /// Whether the person asking for the list has upvoted it (lists only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub you_voted: Option<bool>,
}

const SELECT: &str = "select q.id, q.user_id, u.name, q.body, q.at, q.answered_at, q.highlighted,
        (select count(*) from question_votes v where v.question_id = q.id) as votes
    from questions q join users u on u.id = q.user_id";

fn from_row(r: &sqlx::any::AnyRow) -> Result<Question, sqlx::Error> {
    Ok(Question {
        id: r.try_get("id")?,
        author_id: r.try_get("user_id")?,
        author_name: r.try_get("name")?,
        body: r.try_get("body")?,
        at: r.try_get("at")?,
        votes: r.try_get("votes")?,
        answered: r.try_get::<Option<i64>, _>("answered_at")?.is_some(),
        highlighted: r.try_get::<i64, _>("highlighted")? != 0,
        you_voted: None,
    })
}

pub async fn load(db: &Db, session_id: i64, id: i64) -> Result<Question, InteractionError> {
    let row = sqlx::query(&format!("{SELECT} where q.id = $1 and q.session_id = $2 and q.deleted_at is null"))
        .bind(id)
        .bind(session_id)
        .fetch_optional(&db.read)
        .await?;
    row.as_ref().map(from_row).transpose()?.ok_or(InteractionError::NotFound("question"))
}

pub async fn ask(db: &Db, session_id: i64, user_id: i64, body: &str) -> Result<Question, InteractionError> {
    let body = clean_text("question", body, MAX_CHARS)?;
    let mut tx = db.begin().await?;
    let id: i64 = sqlx::query_scalar(
        "insert into questions (session_id, user_id, body, at) values ($1, $2, $3, $4) returning id",
    )
    .bind(session_id)
    .bind(user_id)
    .bind(&body)
    .bind(now_ms())
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    load(db, session_id, id).await
}

/// Adds the person's upvote; a second upvote by the same person changes nothing.
pub async fn upvote(
    db: &Db,
    session_id: i64,
    question_id: i64,
    user_id: i64,
) -> Result<Option<Question>, InteractionError> {
    load(db, session_id, question_id).await?;
    // A repeated upvote changes nothing: answered from the read pool, so
    // clicking again never queues a write or a broadcast.
    let voted: i64 = sqlx::query_scalar("select count(*) from question_votes where question_id = $1 and user_id = $2")
        .bind(question_id)
        .bind(user_id)
        .fetch_one(&db.read)
        .await?;
    if voted > 0 {
        return Ok(None);
    }
    let mut tx = db.begin().await?;
    let inserted = sqlx::query("insert into question_votes (question_id, user_id, at) values ($1, $2, $3)")
        .bind(question_id)
        .bind(user_id)
        .bind(now_ms())
        .execute(&mut *tx)
        .await;
    match inserted {
        Ok(_) => tx.commit().await?,
        Err(e) if db::is_unique_violation(&e) => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    load(db, session_id, question_id).await.map(Some)
}

/// Marks a question answered (or not) — hosts only.
pub async fn set_answered(
    db: &Db,
    session_id: i64,
    question_id: i64,
    answered: bool,
    is_host: bool,
) -> Result<Question, InteractionError> {
    if !is_host {
        return Err(InteractionError::NotHost("mark questions answered"));
    }
    load(db, session_id, question_id).await?;
    let mut tx = db.begin().await?;
    sqlx::query("update questions set answered_at = $1 where id = $2")
        .bind(answered.then(now_ms))
        .bind(question_id)
        .execute(&mut *tx)
        .await?;
    if answered {
        // An answered question no longer needs the spotlight.
        sqlx::query("update questions set highlighted = 0 where id = $1").bind(question_id).execute(&mut *tx).await?;
    }
    tx.commit().await?;
    load(db, session_id, question_id).await
}

/// Highlights one question (un-highlighting any other), or clears it — hosts only.
pub async fn highlight(
    db: &Db,
    session_id: i64,
    question_id: Option<i64>,
    is_host: bool,
) -> Result<Option<Question>, InteractionError> {
    if !is_host {
        return Err(InteractionError::NotHost("highlight questions"));
    }
    if let Some(id) = question_id {
        load(db, session_id, id).await?;
    }
    let mut tx = db.begin().await?;
    sqlx::query("update questions set highlighted = 0 where session_id = $1 and highlighted = 1")
        .bind(session_id)
        .execute(&mut *tx)
        .await?;
    if let Some(id) = question_id {
        sqlx::query("update questions set highlighted = 1 where id = $1").bind(id).execute(&mut *tx).await?;
    }
    tx.commit().await?;
    match question_id {
        Some(id) => Ok(Some(load(db, session_id, id).await?)),
        None => Ok(None),
    }
}

/// Removes a question from view: its author or a host.
pub async fn delete(
    db: &Db,
    session_id: i64,
    question_id: i64,
    by: i64,
    is_host: bool,
) -> Result<(), InteractionError> {
    let q = load(db, session_id, question_id).await?;
    if q.author_id != by && !is_host {
        return Err(InteractionError::NotHost("remove other people's questions"));
    }
    let mut tx = db.begin().await?;
    sqlx::query("update questions set deleted_at = $1, deleted_by = $2, highlighted = 0 where id = $3")
        .bind(now_ms())
        .bind(by)
        .bind(question_id)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(())
}

/// Every visible question: the highlighted one first, then open questions by
/// votes, then answered ones; `you_voted` is filled for `viewer`.
pub async fn list(db: &Db, session_id: i64, viewer: i64) -> Result<Vec<Question>, sqlx::Error> {
    let rows = sqlx::query(&format!(
        "{SELECT} where q.session_id = $1 and q.deleted_at is null
         order by q.highlighted desc, case when q.answered_at is null then 0 else 1 end, votes desc, q.id"
    ))
    .bind(session_id)
    .fetch_all(&db.read)
    .await?;
    let mine: Vec<i64> = sqlx::query_scalar(
        "select v.question_id from question_votes v join questions q on q.id = v.question_id
         where q.session_id = $1 and v.user_id = $2",
    )
    .bind(session_id)
    .bind(viewer)
    .fetch_all(&db.read)
    .await?;
    rows.iter()
        .map(|r| {
            let mut q = from_row(r)?;
            q.you_voted = Some(mine.contains(&q.id));
            Ok(q)
        })
        .collect()
}
