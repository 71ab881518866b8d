//! Polls: prepared before the session or made live; single or multiple
//! choice; optionally anonymous. Each person votes once (the ballot's primary
//! key guarantees it). Hosts see results live; attendees once revealed.
//!
//! An anonymous poll stores who voted (the ballot) and what was chosen (a
//! count per option, `poll_tallies`) with nothing joining them: no user, no
//! time, no row per vote on the count side. A promise that "nobody sees who
//! chose what" that a database backup could break would be no promise.

use axum::{extract::State, http::header, http::StatusCode, response::IntoResponse};
use serde::{Deserialize, Serialize};
use sqlx::Row;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::{clean_text, now_ms, InteractionError};
use crate::{
    auth::User,
    db::{self, Db},
    http::{
        error::{ApiError, ApiResult, ErrorBody},
        extract::{AuthUser, Json, Path},
    },
    programme, AppState,
};

pub const MAX_OPTIONS: usize = 10;

#[derive(Clone, Debug, Deserialize, ToSchema)]
pub struct PollInput {
    pub question: String,
    /// Two to ten choices.
    pub options: Vec<String>,
    /// Several options may be chosen.
    #[serde(default)]
    pub multiple: bool,
    /// Nobody, hosts included, sees who chose what.
    #[serde(default)]
    pub anonymous: bool,
}

#[derive(Clone, Debug, Serialize, ToSchema, PartialEq, Eq)]
pub struct PollOption {
    pub id: i64,
    pub label: String,
}

#[derive(Clone, Copy, Debug, Serialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum PollStatus {
    Draft,
    Open,
    Closed,
}

#[derive(Clone, Debug, Serialize, ToSchema, PartialEq, Eq)]
pub struct Poll {
    pub id: i64,
    pub question: String,
    pub options: Vec<PollOption>,
    pub multiple: bool,
    pub anonymous: bool,
    pub status: PollStatus,
    /// Attendees see the results.
    pub revealed: bool,
}

#[derive(Clone, Debug, Serialize, ToSchema, PartialEq, Eq)]
pub struct OptionCount {
    pub option_id: i64,
    pub label: String,
    pub votes: i64,
}

#[derive(Clone, Debug, Serialize, ToSchema, PartialEq, Eq)]
pub struct PollResults {
    pub poll_id: i64,
    /// People who voted.
    pub ballots: i64,
    pub counts: Vec<OptionCount>,
}

impl PollInput {
    fn validate(&self) -> Result<(String, Vec<String>), InteractionError> {
        let question = clean_text("question", &self.question, 300)?;
        let mut options = vec![];
        for o in &self.options {
            let label = clean_text("option", o, 200)?;
            if options.contains(&label) {
                return Err(InteractionError::BadChoice(format!("the option {label:?} is listed twice")));
            }
            options.push(label);
        }
        if options.len() < 2 || options.len() > MAX_OPTIONS {
            return Err(InteractionError::BadChoice(format!("a poll has 2 to {MAX_OPTIONS} options")));
        }
        Ok((question, options))
    }
}

pub async fn load(db: &Db, session_id: i64, poll_id: i64) -> Result<Poll, InteractionError> {
    let row = sqlx::query(
        "select id, question, multiple, anonymous, status, revealed from polls where id = $1 and session_id = $2",
    )
    .bind(poll_id)
    .bind(session_id)
    .fetch_optional(&db.read)
    .await?
    .ok_or(InteractionError::NotFound("poll"))?;
    let options = sqlx::query("select id, label from poll_options where poll_id = $1 order by position")
        .bind(poll_id)
        .fetch_all(&db.read)
        .await?
        .iter()
        .map(|r| Ok(PollOption { id: r.try_get("id")?, label: r.try_get("label")? }))
        .collect::<Result<Vec<_>, sqlx::Error>>()?;
    Ok(Poll {
        id: row.try_get("id")?,
        question: row.try_get("question")?,
        options,
        multiple: row.try_get::<i64, _>("multiple")? != 0,
        anonymous: row.try_get::<i64, _>("anonymous")? != 0,
        status: match row.try_get::<String, _>("status")?.as_str() {
            "open" => PollStatus::Open,
            "closed" => PollStatus::Closed,
            _ => PollStatus::Draft,
        },
        revealed: row.try_get::<i64, _>("revealed")? != 0,
    })
}

/// Creates a poll, as a draft or opened at once.
pub async fn create(
    db: &Db,
    session_id: i64,
    by: i64,
    input: &PollInput,
    open_now: bool,
) -> Result<Poll, InteractionError> {
    let (question, options) = input.validate()?;
    let now = now_ms();
    let mut tx = db.begin().await?;
    let id: i64 = sqlx::query_scalar(
        "insert into polls (session_id, created_by, question, multiple, anonymous, status, created_at, opened_at)
         values ($1, $2, $3, $4, $5, $6, $7, $8) returning id",
    )
    .bind(session_id)
    .bind(by)
    .bind(&question)
    .bind(input.multiple as i64)
    .bind(input.anonymous as i64)
    .bind(if open_now { "open" } else { "draft" })
    .bind(now)
    .bind(open_now.then_some(now))
    .fetch_one(&mut *tx)
    .await?;
    for (position, label) in options.iter().enumerate() {
        sqlx::query("insert into poll_options (poll_id, position, label) values ($1, $2, $3)")
            .bind(id)
            .bind(position as i64)
            .bind(label)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    load(db, session_id, id).await
}

/// Moves a poll along: draft → open → closed. Hosts only.
pub async fn set_status(
    db: &Db,
    session_id: i64,
    poll_id: i64,
    to: PollStatus,
    is_host: bool,
) -> Result<Poll, InteractionError> {
    if !is_host {
        return Err(InteractionError::NotHost("run polls"));
    }
    let poll = load(db, session_id, poll_id).await?;
    let (sql, from) = match to {
        PollStatus::Open => ("update polls set status = 'open', opened_at = $1 where id = $2", PollStatus::Draft),
        PollStatus::Closed => ("update polls set status = 'closed', closed_at = $1 where id = $2", PollStatus::Open),
        PollStatus::Draft => return Err(InteractionError::WrongState("a poll cannot go back to draft")),
    };
    if poll.status != from {
        return Err(InteractionError::WrongState(match to {
            PollStatus::Open => "only a draft poll can be opened",
            _ => "only an open poll can be closed",
        }));
    }
    let mut tx = db.begin().await?;
    sqlx::query(sql).bind(now_ms()).bind(poll_id).execute(&mut *tx).await?;
    tx.commit().await?;
    load(db, session_id, poll_id).await
}

/// Shows the results to everyone. Hosts only.
pub async fn reveal(db: &Db, session_id: i64, poll_id: i64, is_host: bool) -> Result<Poll, InteractionError> {
    if !is_host {
        return Err(InteractionError::NotHost("reveal poll results"));
    }
    load(db, session_id, poll_id).await?;
    let mut tx = db.begin().await?;
    sqlx::query("update polls set revealed = 1 where id = $1").bind(poll_id).execute(&mut *tx).await?;
    tx.commit().await?;
    load(db, session_id, poll_id).await
}

/// Casts `user_id`'s one ballot.
pub async fn vote(
    db: &Db,
    session_id: i64,
    poll_id: i64,
    user_id: i64,
    option_ids: &[i64],
) -> Result<PollResults, InteractionError> {
    let poll = load(db, session_id, poll_id).await?;
    if poll.status != PollStatus::Open {
        return Err(InteractionError::WrongState("this poll is not open for votes"));
    }
    let mut chosen: Vec<i64> = option_ids.to_vec();
    chosen.sort_unstable();
    chosen.dedup();
    if chosen.is_empty() {
        return Err(InteractionError::BadChoice("choose an option".into()));
    }
    if !poll.multiple && chosen.len() > 1 {
        return Err(InteractionError::BadChoice("this poll takes one choice".into()));
    }
    if let Some(bad) = chosen.iter().find(|id| !poll.options.iter().any(|o| o.id == **id)) {
        return Err(InteractionError::BadChoice(format!("option {bad} is not in this poll")));
    }
    let mut tx = db.begin().await?;
    // The ballot and the choices commit together: a refused ballot counts nothing.
    let ballot = sqlx::query("insert into poll_ballots (poll_id, user_id, at) values ($1, $2, $3)")
        .bind(poll_id)
        .bind(user_id)
        .bind(now_ms())
        .execute(&mut *tx)
        .await;
    match ballot {
        Ok(_) => {}
        Err(e) if db::is_unique_violation(&e) => return Err(InteractionError::AlreadyVoted),
        Err(e) => return Err(e.into()),
    }
    if poll.anonymous {
        // Every option's count is rewritten, chosen or not: on PostgreSQL a
        // row keeps the id of the transaction that last wrote it (`xmin`),
        // the same as the ballot's, so writing only the chosen counts would
        // name the last person to choose each option.
        for option in &poll.options {
            sqlx::query(
                "insert into poll_tallies (option_id, poll_id, votes) values ($1, $2, $3)
                 on conflict (option_id) do update set votes = poll_tallies.votes + excluded.votes",
            )
            .bind(option.id)
            .bind(poll_id)
            .bind(i64::from(chosen.contains(&option.id)))
            .execute(&mut *tx)
            .await?;
        }
    } else {
        for option in &chosen {
            sqlx::query("insert into poll_choices (poll_id, user_id, option_id) values ($1, $2, $3)")
                .bind(poll_id)
                .bind(user_id)
                .bind(option)
                .execute(&mut *tx)
                .await?;
        }
    }
    tx.commit().await?;
    results(db, session_id, poll_id).await
}

pub async fn results(db: &Db, session_id: i64, poll_id: i64) -> Result<PollResults, InteractionError> {
    let poll = load(db, session_id, poll_id).await?;
    let ballots: i64 = sqlx::query_scalar("select count(*) from poll_ballots where poll_id = $1")
        .bind(poll_id)
        .fetch_one(&db.read)
        .await?;
    // Anonymous polls keep only a count per option; named ones a row per choice.
    let votes = if poll.anonymous {
        "select o.id, coalesce(t.votes, 0) as votes from poll_options o
         left join poll_tallies t on t.option_id = o.id where o.poll_id = $1"
    } else {
        "select o.id, (select count(*) from poll_choices c where c.option_id = o.id) as votes
         from poll_options o where o.poll_id = $1"
    };
    let votes = sqlx::query(votes)
        .bind(poll_id)
        .fetch_all(&db.read)
        .await?
        .iter()
        .map(|r| Ok((r.try_get::<i64, _>("id")?, r.try_get::<i64, _>("votes")?)))
        .collect::<Result<std::collections::HashMap<i64, i64>, sqlx::Error>>()?;
    let counts = poll
        .options
        .iter()
        .map(|o| OptionCount { option_id: o.id, label: o.label.clone(), votes: votes.get(&o.id).copied().unwrap_or(0) })
        .collect();
    Ok(PollResults { poll_id, ballots, counts })
}

pub async fn list(db: &Db, session_id: i64) -> Result<Vec<Poll>, InteractionError> {
    let ids: Vec<i64> = sqlx::query_scalar("select id from polls where session_id = $1 order by id")
        .bind(session_id)
        .fetch_all(&db.read)
        .await?;
    let mut out = vec![];
    for id in ids {
        out.push(load(db, session_id, id).await?);
    }
    Ok(out)
}

/// The polls of this session that `user_id` has voted in.
pub async fn voted_in(db: &Db, session_id: i64, user_id: i64) -> Result<Vec<i64>, sqlx::Error> {
    sqlx::query_scalar(
        "select b.poll_id from poll_ballots b join polls p on p.id = b.poll_id
         where p.session_id = $1 and b.user_id = $2 order by b.poll_id",
    )
    .bind(session_id)
    .bind(user_id)
    .fetch_all(&db.read)
    .await
}

/// Organisers, and the session's presenters, prepare and export polls.
async fn require_runner(state: &AppState, user: &User, session_id: i64) -> ApiResult<()> {
    programme::load(&state.db, session_id).await?.ok_or(ApiError::NotFound("session"))?;
    if user.is_organiser || programme::is_presenter(&state.db, session_id, user.id).await? {
        Ok(())
    } else {
        Err(ApiError::forbidden("only the session's presenters and organisers can prepare polls"))
    }
}

/// Prepare a poll before the session (organisers and the session's presenters).
#[utoipa::path(security(("bearer" = []), ("cookie" = [])), post, path = "/api/sessions/{id}/polls", tag = "interaction", request_body = PollInput,
    responses((status = 201, body = Poll), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn prepare(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    Path(id): Path<i64>,
    Json(input): Json<PollInput>,
) -> ApiResult<(StatusCode, Json<Poll>)> {
    require_runner(&state, &user, id).await?;
    Ok((StatusCode::CREATED, Json(create(&state.db, id, user.id, &input, false).await?)))
}

/// The session's polls (organisers and the session's presenters).
#[utoipa::path(security(("bearer" = []), ("cookie" = [])), get, path = "/api/sessions/{id}/polls", tag = "interaction",
    responses((status = 200, body = [Poll]), (status = 403, body = ErrorBody)))]
async fn index(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    Path(id): Path<i64>,
) -> ApiResult<Json<Vec<Poll>>> {
    require_runner(&state, &user, id).await?;
    Ok(Json(list(&state.db, id).await?))
}

/// A poll's results as CSV: the counts, then (unless anonymous) each ballot.
#[utoipa::path(security(("bearer" = []), ("cookie" = [])), get, path = "/api/sessions/{id}/polls/{poll_id}/results.csv", tag = "interaction",
    responses((status = 200, content_type = "text/csv", body = String), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn export(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    Path((id, poll_id)): Path<(i64, i64)>,
) -> ApiResult<impl IntoResponse> {
    require_runner(&state, &user, id).await?;
    let poll = load(&state.db, id, poll_id).await?;
    let totals = results(&state.db, id, poll_id).await?;
    // Two tables in one file, of different widths.
    let mut out = csv::WriterBuilder::new().flexible(true).from_writer(Vec::new());
    let mut write = |rec: &[&str]| out.write_record(rec).map_err(anyhow::Error::from);
    let cell = crate::http::csv::cell;
    write(&["question", &cell(&poll.question)])?;
    write(&["ballots", &totals.ballots.to_string()])?;
    write(&["option", "votes"])?;
    for c in &totals.counts {
        write(&[&cell(&c.label), &c.votes.to_string()])?;
    }
    if !poll.anonymous {
        write(&[""])?;
        write(&["name", "email", "choice"])?;
        let rows = sqlx::query(
            "select u.name, u.email, o.label from poll_choices c join users u on u.id = c.user_id
             join poll_options o on o.id = c.option_id where c.poll_id = $1 order by u.name, o.position",
        )
        .bind(poll_id)
        .fetch_all(&state.db.read)
        .await?;
        for r in rows {
            let (name, email, label): (String, String, String) =
                (r.try_get("name")?, r.try_get("email")?, r.try_get("label")?);
            write(&[&cell(&name), &cell(&email), &cell(&label)])?;
        }
    }
    let body = out.into_inner().map_err(|e| anyhow::anyhow!("failed to write CSV: {e}"))?;
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()),
            (header::CONTENT_DISPOSITION, format!("attachment; filename=\"poll-{poll_id}.csv\"")),
        ],
        body,
    ))
}

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(prepare, index)).routes(routes!(export))
}
