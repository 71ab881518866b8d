//! Invitations: an organiser pastes addresses or uploads a CSV (email, name,
//! school); each valid, new address gets a personal link that registers in one
//! click. Bad lines are reported one by one and the rest still go out.
//! People can opt out with the link in every invitation; the worker and this
//! module both refuse to mail an opted-out address again.

use std::collections::HashSet;

use axum::{extract::State, http::StatusCode};
use chrono::{DateTime, Duration, Utc};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sqlx::Row;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::Mine;
use crate::{
    auth::tokens::Purpose,
    db::{self, Db},
    http::{
        error::{ApiError, ApiResult, ErrorBody},
        extract::{AuthUser, Json, MaybeUser, Path},
    },
    mail::{self, address::EmailAddress, templates, Progress},
    programme::{self, Session, Status},
    AppState,
};

/// At most this many lines in one batch.
pub const MAX_LINES: usize = 20_000;

#[derive(Deserialize, ToSchema)]
pub struct InviteInput {
    /// Pasted addresses (one per line, or separated by commas), or the text of a
    /// CSV file with columns email, name, school (a header row is optional).
    pub text: String,
}

/// A line that could not be used.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct Rejected {
    pub line: usize,
    pub text: String,
    pub reason: String,
}

/// An address left out on purpose.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct Skipped {
    pub line: usize,
    pub email: String,
    pub reason: String,
}

#[derive(Debug, Default, Serialize, Deserialize, ToSchema)]
pub struct Report {
    pub rejected: Vec<Rejected>,
    pub skipped: Vec<Skipped>,
}

/// One batch of invitations and how far its sending has got.
#[derive(Debug, Serialize, ToSchema)]
pub struct Batch {
    pub id: i64,
    pub session_id: i64,
    /// Invitations created (and emails queued) by this batch.
    pub invited: i64,
    pub progress: Progress,
    pub done: bool,
    pub report: Report,
    pub created_at: DateTime<Utc>,
}

/// One usable line of the input.
#[derive(Debug, PartialEq, Eq)]
pub struct Invitee {
    pub line: usize,
    pub email: EmailAddress,
    pub name: String,
    pub school: String,
}

/// Splits "Ann Smith <ann@school.org>" into name and address.
fn split_mailbox(field: &str) -> (String, String) {
    match (field.find('<'), field.rfind('>')) {
        (Some(a), Some(b)) if a < b => {
            (field[..a].trim().trim_matches('"').to_string(), field[a + 1..b].trim().to_string())
        }
        _ => (String::new(), field.trim().to_string()),
    }
}

/// Parses pasted text or CSV into invitees and rejected lines.
pub fn parse(text: &str) -> Result<(Vec<Invitee>, Vec<Rejected>), ApiError> {
    let mut invitees = vec![];
    let mut rejected = vec![];
    // Column positions of email, name, school; a header row may reorder them.
    let mut columns = (0usize, 1usize, 2usize);
    let mut first = true;
    // Line by line, so each report names the line a person sees in their file.
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        if raw.trim().is_empty() {
            continue;
        }
        if invitees.len() + rejected.len() >= MAX_LINES {
            return Err(ApiError::invalid("text", format!("at most {MAX_LINES} lines at a time; split the list")));
        }
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .trim(csv::Trim::All)
            .from_reader(raw.as_bytes());
        let record = match reader.records().next() {
            Some(Ok(r)) => r,
            Some(Err(e)) => {
                rejected.push(Rejected { line, text: raw.to_string(), reason: format!("unreadable CSV: {e}") });
                continue;
            }
            None => continue,
        };
        let fields: Vec<&str> = record.iter().collect();
        if fields.iter().all(|f| f.is_empty()) {
            continue;
        }
        let lower: Vec<String> = fields.iter().map(|f| f.to_lowercase()).collect();
        if std::mem::take(&mut first) && lower.iter().any(|f| f == "email" || f == "e-mail" || f == "email address") {
            let find = |names: &[&str]| lower.iter().position(|f| names.contains(&f.as_str()));
            columns = (
                find(&["email", "e-mail", "email address"]).unwrap_or(0),
                find(&["name", "full name"]).unwrap_or(usize::MAX),
                find(&["school", "organisation", "organization"]).unwrap_or(usize::MAX),
            );
            continue;
        }
        let original = fields.join(", ");
        // A pasted line of several addresses: each field is an address.
        let several = fields.len() > 1 && fields.iter().filter(|f| !f.is_empty()).all(|f| f.contains('@'));
        let entries: Vec<(String, String, String)> = if several {
            fields
                .iter()
                .filter(|f| !f.is_empty())
                .map(|f| {
                    let (name, email) = split_mailbox(f);
                    (email, name, String::new())
                })
                .collect()
        } else {
            let get = |i: usize| fields.get(i).map(|s| s.to_string()).unwrap_or_default();
            let (mailbox_name, email) = split_mailbox(&get(columns.0));
            let name = Some(get(columns.1)).filter(|n| !n.is_empty()).unwrap_or(mailbox_name);
            vec![(email, name, get(columns.2))]
        };
        for (email, name, school) in entries {
            match EmailAddress::try_parse(&email) {
                Ok(email) => invitees.push(Invitee {
                    line,
                    email,
                    name: name.chars().take(120).collect(),
                    school: school.chars().take(200).collect(),
                }),
                Err(reason) => rejected.push(Rejected { line, text: original.clone(), reason }),
            }
        }
    }
    Ok((invitees, rejected))
}

fn new_token() -> String {
    let mut bytes = [0u8; 24];
    rand::thread_rng().fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn opt_out_url(state: &AppState, email: &str) -> String {
    let token = state.keys.sign(Purpose::OptOut, email, Duration::days(3650), None);
    format!("{}/opt-out.html?token={token}", state.public_url)
}

/// Rows per multi-row insert or `in (...)` list.
const INSERT_CHUNK: usize = 200;

/// The addresses among `invitees` that opted out, in a few queries.
async fn opted_out_among(tx: &mut db::Tx, invitees: &[Invitee]) -> Result<HashSet<String>, sqlx::Error> {
    let mut out = HashSet::new();
    for chunk in invitees.chunks(INSERT_CHUNK) {
        let params: Vec<String> = (1..=chunk.len()).map(|k| format!("${k}")).collect();
        let sql = format!("select email from opt_outs where email in ({})", params.join(", "));
        let mut query = sqlx::query_scalar::<_, String>(&sql);
        for inv in chunk {
            query = query.bind(inv.email.as_str());
        }
        out.extend(query.fetch_all(&mut **tx).await?);
    }
    Ok(out)
}

/// Invite people to a session (organisers). Returns at once; the emails go out
/// in the background, and the batch shows progress.
#[utoipa::path(security(("bearer" = []), ("cookie" = [])), post, path = "/api/sessions/{id}/invitations", tag = "invitations", request_body = InviteInput,
    responses((status = 201, body = Batch), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody, description = "the session has ended"), (status = 422, body = ErrorBody)))]
async fn invite(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    Path(session_id): Path<i64>,
    Json(input): Json<InviteInput>,
) -> ApiResult<(StatusCode, Json<Batch>)> {
    user.require_organiser()?;
    let session = programme::load_live(&state, session_id).await?;
    if session.status == Status::Cancelled {
        return Err(ApiError::conflict("session", "this session is cancelled"));
    }
    if session.life.is_over() {
        return Err(ApiError::conflict("session", "this session has ended: there is nothing left to invite people to"));
    }
    let (invitees, rejected) = parse(&input.text)?;
    if invitees.is_empty() && rejected.is_empty() {
        return Err(ApiError::invalid(
            "text",
            "no addresses found: paste one address per line, or a CSV with an email column",
        ));
    }
    let mut report = Report { rejected, skipped: vec![] };
    let facts = templates::SessionFacts {
        id: session.id,
        title: &session.title,
        description: &session.description,
        starts_at: session.starts_at,
        ends_at: session.ends_at,
        url: String::new(),
    };
    let now = db::now();
    let mut tx = state.db.begin().await?;
    let batch_id: i64 = sqlx::query_scalar(
        "insert into invitation_batches (session_id, created_by, created_at) values ($1, $2, $3) returning id",
    )
    .bind(session_id)
    .bind(user.id)
    .bind(now)
    .fetch_one(&mut *tx)
    .await?;
    let invited_before: HashSet<String> = sqlx::query_scalar("select email from invitations where session_id = $1")
        .bind(session_id)
        .fetch_all(&mut *tx)
        .await?
        .into_iter()
        .collect();
    let registered: HashSet<String> = sqlx::query_scalar(
        "select u.email from registrations r join users u on u.id = r.user_id
         where r.session_id = $1 and r.status <> 'cancelled'",
    )
    .bind(session_id)
    .fetch_all(&mut *tx)
    .await?
    .into_iter()
    .collect();
    let opted_out = opted_out_among(&mut tx, &invitees).await?;
    let mut seen = HashSet::new();
    let mut rows: Vec<(Invitee, String)> = vec![];
    for inv in invitees {
        let email = inv.email.as_str().to_string();
        let reason = if !seen.insert(email.clone()) {
            Some("listed twice; invited once")
        } else if registered.contains(&email) {
            Some("already registered")
        } else if invited_before.contains(&email) {
            Some("already invited to this session")
        } else if opted_out.contains(&email) {
            Some("opted out of invitations")
        } else {
            None
        };
        match reason {
            Some(reason) => report.skipped.push(Skipped { line: inv.line, email, reason: reason.into() }),
            None => rows.push((inv, new_token())),
        }
    }
    for chunk in rows.chunks(INSERT_CHUNK) {
        let values: Vec<String> = (0..chunk.len())
            .map(|i| {
                let p: Vec<String> = (1..=7).map(|k| format!("${}", i * 7 + k)).collect();
                format!("({})", p.join(", "))
            })
            .collect();
        let sql = format!(
            "insert into invitations (batch_id, session_id, email, name, school, token, created_at) values {}",
            values.join(", ")
        );
        let mut query = sqlx::query(&sql);
        for (inv, token) in chunk {
            query = query
                .bind(batch_id)
                .bind(session_id)
                .bind(inv.email.as_str())
                .bind(&inv.name)
                .bind(&inv.school)
                .bind(token)
                .bind(now);
        }
        query.execute(&mut *tx).await?;
    }
    let emails: Vec<mail::Email> = rows
        .iter()
        .map(|(inv, token)| {
            let to =
                templates::Recipient { email: inv.email.as_str(), name: &inv.name, zone: state.settings.time_zone };
            let accept = format!("{}/invite.html?token={token}", state.public_url);
            templates::invitation(&facts, &to, &accept, &opt_out_url(&state, inv.email.as_str()), batch_id)
        })
        .collect();
    mail::enqueue_many(&mut tx, &emails).await?;
    let invited = rows.len();
    sqlx::query("update invitation_batches set report = $1 where id = $2")
        .bind(serde_json::to_string(&report).map_err(anyhow::Error::from)?)
        .bind(batch_id)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    state.mail_wake.notify_one();
    tracing::info!(
        session = session_id,
        batch = batch_id,
        invited,
        rejected = report.rejected.len(),
        skipped = report.skipped.len(),
        "invitations queued"
    );
    Ok((StatusCode::CREATED, Json(load_batch(&state.db, batch_id).await?.ok_or(ApiError::NotFound("batch"))?)))
}

async fn load_batch(db: &Db, id: i64) -> Result<Option<Batch>, sqlx::Error> {
    let Some(row) = sqlx::query(
        "select b.id, b.session_id, b.report, b.created_at,
                (select count(*) from invitations i where i.batch_id = b.id) as invited
         from invitation_batches b where b.id = $1",
    )
    .bind(id)
    .fetch_optional(&db.read)
    .await?
    else {
        return Ok(None);
    };
    let progress = mail::batch_progress(db, id).await?;
    Ok(Some(Batch {
        id,
        session_id: row.try_get("session_id")?,
        invited: row.try_get("invited")?,
        done: progress.queued == 0,
        progress,
        report: serde_json::from_str(&row.try_get::<String, _>("report")?).unwrap_or_default(),
        created_at: programme::at(row.try_get("created_at")?),
    }))
}

/// The invitation batches of a session, newest first (organisers).
#[utoipa::path(security(("bearer" = []), ("cookie" = [])), get, path = "/api/sessions/{id}/invitations", tag = "invitations",
    responses((status = 200, body = [Batch]), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn batches(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    Path(session_id): Path<i64>,
) -> ApiResult<Json<Vec<Batch>>> {
    user.require_organiser()?;
    programme::load(&state.db, session_id).await?.ok_or(ApiError::NotFound("session"))?;
    let ids: Vec<i64> = sqlx::query_scalar("select id from invitation_batches where session_id = $1 order by id desc")
        .bind(session_id)
        .fetch_all(&state.db.read)
        .await?;
    let mut out = vec![];
    for id in ids {
        out.extend(load_batch(&state.db, id).await?);
    }
    Ok(Json(out))
}

/// One batch with its sending progress (organisers).
#[utoipa::path(security(("bearer" = []), ("cookie" = [])), get, path = "/api/invitation-batches/{id}", tag = "invitations",
    responses((status = 200, body = Batch), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn batch(State(state): State<AppState>, AuthUser(user): AuthUser, Path(id): Path<i64>) -> ApiResult<Json<Batch>> {
    user.require_organiser()?;
    Ok(Json(load_batch(&state.db, id).await?.ok_or(ApiError::NotFound("invitation batch"))?))
}

/// What an invitation link shows before it is accepted.
#[derive(Debug, Serialize, ToSchema)]
pub struct InvitationView {
    pub session: Session,
    pub email: String,
    pub name: String,
    pub school: String,
    /// Whether an account with this address exists (sign in rather than sign up).
    pub has_account: bool,
    pub accepted: bool,
}

async fn find_invitation(db: &Db, token: &str) -> ApiResult<(i64, i64, String, String, String, bool)> {
    let row = sqlx::query("select id, session_id, email, name, school, accepted_at from invitations where token = $1")
        .bind(token)
        .fetch_optional(&db.read)
        .await?
        .ok_or(ApiError::NotFound("invitation"))?;
    Ok((
        row.try_get("id")?,
        row.try_get("session_id")?,
        row.try_get("email")?,
        row.try_get("name")?,
        row.try_get("school")?,
        row.try_get::<Option<i64>, _>("accepted_at")?.is_some(),
    ))
}

/// The invitation behind a personal link.
#[utoipa::path(security((), ("bearer" = []), ("cookie" = [])), get, path = "/api/invitations/{token}", tag = "invitations",
    responses((status = 200, body = InvitationView), (status = 404, body = ErrorBody)))]
async fn show_invitation(
    State(state): State<AppState>,
    MaybeUser(user): MaybeUser,
    Path(token): Path<String>,
) -> ApiResult<Json<InvitationView>> {
    let (_, session_id, email, name, school, accepted) = find_invitation(&state.db, &token).await?;
    let mut session = programme::load_live(&state, session_id).await?;
    if let Some(u) = &user {
        super::fill_mine(&state.db, u.id, std::slice::from_mut(&mut session)).await?;
    }
    let has_account = crate::auth::find_user_by_email(&state.db, &email).await?.is_some();
    Ok(Json(InvitationView { session, email, name, school, has_account, accepted }))
}

/// Accept an invitation: registers the signed-in person in one click.
#[utoipa::path(security(("bearer" = []), ("cookie" = [])), post, path = "/api/invitations/{token}/accept", tag = "invitations",
    responses((status = 200, body = Mine), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody, description = "the email address is not verified yet"),
              (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn accept(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    Path(token): Path<String>,
) -> ApiResult<Json<Mine>> {
    let (id, session_id, invited, ..) = find_invitation(&state.db, &token).await?;
    let mut user = user;
    // The invitation's link was mailed to its address: holding it proves that
    // address as the verification link would, so its owner need not wait for one.
    if !user.email_verified && user.email.eq_ignore_ascii_case(invited.trim()) {
        let mut tx = state.db.begin().await?;
        sqlx::query(
            "update users set email_verified_at = coalesce(email_verified_at, $1), updated_at = $1 where id = $2",
        )
        .bind(db::now())
        .bind(user.id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        user.email_verified = true;
    }
    let (mine, _) = super::register(&state, session_id, &user).await?;
    let mut tx = state.db.begin().await?;
    sqlx::query("update invitations set accepted_at = coalesce(accepted_at, $1) where id = $2")
        .bind(db::now())
        .bind(id)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(Json(mine))
}

#[derive(Deserialize, ToSchema)]
pub struct OptOutInput {
    /// The token from the opt-out link.
    pub token: String,
}

#[derive(Serialize, ToSchema)]
pub struct OptedOut {
    pub email: String,
}

/// Opt out of all future invitations (the link at the foot of each one).
#[utoipa::path(post, path = "/api/opt-out", tag = "invitations", request_body = OptOutInput,
    responses((status = 200, body = OptedOut), (status = 422, body = ErrorBody)))]
async fn opt_out(State(state): State<AppState>, Json(input): Json<OptOutInput>) -> ApiResult<Json<OptedOut>> {
    let claims = state
        .keys
        .verify(input.token.trim(), Purpose::OptOut)
        .ok_or_else(|| ApiError::invalid("token", "this opt-out link is not valid"))?;
    let email = claims.sub.to_lowercase();
    let mut tx = state.db.begin().await?;
    sqlx::query("insert into opt_outs (email, created_at) values ($1, $2) on conflict (email) do nothing")
        .bind(&email)
        .bind(db::now())
        .execute(&mut *tx)
        .await?;
    // Invitations still waiting in the outbox are not sent either.
    sqlx::query(
        "update outbox set status = 'failed', last_error = 'recipient opted out', locked_until = null
         where to_email = $1 and kind = 'invitation' and status = 'queued'",
    )
    .bind(&email)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    tracing::info!("an address opted out of invitations");
    Ok(Json(OptedOut { email }))
}

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(invite, batches))
        .routes(routes!(batch))
        .routes(routes!(show_invitation))
        .routes(routes!(accept))
        .routes(routes!(opt_out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_csv_with_a_header_and_bad_lines_is_read_line_by_line() {
        let text =
            "school,email,name\nOak Primary,ann@oak.sch.uk,Ann\nElm,not-an-address,Bob\n\nElm,cat@elm.sch.uk,Cat\n";
        let (ok, bad) = parse(text).unwrap();
        assert_eq!(ok.len(), 2);
        assert_eq!(
            (ok[0].email.as_str(), ok[0].name.as_str(), ok[0].school.as_str()),
            ("ann@oak.sch.uk", "Ann", "Oak Primary")
        );
        assert_eq!(ok[1].line, 5);
        assert_eq!(bad.len(), 1);
        assert_eq!(bad[0].line, 3);
        assert!(bad[0].reason.contains("no @"));
    }

    #[test]
    fn pasted_addresses_may_share_a_line_or_carry_names() {
        let (ok, bad) = parse("a@x.org, b@y.org\nCat Jones <cat@z.org>\n").unwrap();
        assert!(bad.is_empty());
        let emails: Vec<_> = ok.iter().map(|i| i.email.as_str()).collect();
        assert_eq!(emails, ["a@x.org", "b@y.org", "cat@z.org"]);
        assert_eq!(ok[2].name, "Cat Jones");
    }
}
