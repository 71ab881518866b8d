//! Reflections on record entries, and the evidence of impact behind them.
//!
//! A reflection is private to its owner: the only routes that read one are
//! under `/api/me/`, keyed by the owner, so an organiser (or anyone else)
//! asking for someone's entry gets 404. Evidence is a link, or a file of a
//! small set of document and image types, checked by its first bytes as well
//! as its name, kept under `<data>/evidence/` with a random name.

use std::{collections::HashMap, path::Path as FsPath};

use axum::{
    body::Body,
    extract::{Query, State},
    http::{header, StatusCode},
    response::{IntoResponse, Response},
};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use sqlx::Row;
use tokio::io::AsyncWriteExt;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::{check_length, entries};
use crate::{
    db::{self, Db},
    http::{
        error::{ApiError, ApiResult, ErrorBody},
        extract::{AuthUser, Json, Path},
    },
    programme::at,
    AppState,
};

/// The most any one reflection field may hold.
pub const MAX_FIELD: usize = 4000;
/// The largest evidence file.
pub const MAX_FILE: u64 = crate::http::MAX_UPLOAD;
/// Evidence items per entry.
const MAX_EVIDENCE: i64 = 20;

/// What you took from it: written when you leave or finish a replay, and
/// the impact later.
#[derive(Clone, Debug, Default, Serialize, ToSchema)]
pub struct Reflection {
    /// What I learned.
    pub learned: String,
    /// What I will keep doing in my practice.
    pub keep_doing: String,
    /// What I will grow (do more of, develop).
    pub to_grow: String,
    /// What I will change.
    pub to_change: String,
    /// Later: the impact on my practice and my pupils.
    pub impact: String,
    pub updated_at: chrono::DateTime<chrono::Utc>,
}

/// A reflection's fields; each one left out keeps what is stored, so the
/// impact can be added months after the rest.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReflectionInput {
    pub learned: Option<String>,
    pub keep_doing: Option<String>,
    pub to_grow: Option<String>,
    pub to_change: Option<String>,
    pub impact: Option<String>,
}

/// A link or a file that shows the impact.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct Evidence {
    pub id: i64,
    /// link or file
    pub kind: String,
    /// The link, or where to download the file.
    pub url: String,
    pub file_name: Option<String>,
    pub content_type: Option<String>,
    pub bytes: Option<i64>,
    pub created_at: chrono::DateTime<chrono::Utc>,
}

pub(crate) async fn load_for_user(db: &Db, user_id: i64) -> ApiResult<HashMap<i64, Reflection>> {
    let rows = sqlx::query(
        "select r.entry_id, r.learned, r.keep_doing, r.to_grow, r.to_change, r.impact, r.updated_at
         from record_reflections r join record_entries e on e.id = r.entry_id where e.user_id = $1",
    )
    .bind(user_id)
    .fetch_all(&db.read)
    .await?;
    rows.iter()
        .map(|r| {
            Ok((
                r.try_get("entry_id")?,
                Reflection {
                    learned: r.try_get("learned")?,
                    keep_doing: r.try_get("keep_doing")?,
                    to_grow: r.try_get("to_grow")?,
                    to_change: r.try_get("to_change")?,
                    impact: r.try_get("impact")?,
                    updated_at: at(r.try_get("updated_at")?),
                },
            ))
        })
        .collect::<Result<_, sqlx::Error>>()
        .map_err(Into::into)
}

pub(crate) async fn evidence_for_user(db: &Db, user_id: i64) -> ApiResult<HashMap<i64, Vec<Evidence>>> {
    let rows = sqlx::query(
        "select v.id, v.entry_id, v.kind, v.url, v.file_name, v.content_type, v.bytes, v.created_at
         from record_evidence v join record_entries e on e.id = v.entry_id where e.user_id = $1 order by v.id",
    )
    .bind(user_id)
    .fetch_all(&db.read)
    .await?;
    let mut out: HashMap<i64, Vec<Evidence>> = HashMap::new();
    for r in rows {
        let id: i64 = r.try_get("id")?;
        let kind: String = r.try_get("kind")?;
        let url: Option<String> = r.try_get("url")?;
        out.entry(r.try_get("entry_id")?).or_default().push(Evidence {
            id,
            url: if kind == "file" { format!("/api/me/record/evidence/{id}") } else { url.unwrap_or_default() },
            kind,
            file_name: r.try_get("file_name")?,
            content_type: r.try_get("content_type")?,
            bytes: r.try_get("bytes")?,
            created_at: at(r.try_get("created_at")?),
        });
    }
    Ok(out)
}

/// The files kept for an entry, to remove from disk once its rows are gone.
pub(crate) async fn stored_files(db: &Db, entry_id: i64) -> ApiResult<Vec<String>> {
    Ok(sqlx::query_scalar("select stored_as from record_evidence where entry_id = $1 and stored_as is not null")
        .bind(entry_id)
        .fetch_all(&db.read)
        .await?)
}

/// Removes evidence files whose rows were deleted. A file left behind by a
/// failure here is unreachable (no row names it), never a dangling row.
pub async fn delete_files(data_dir: &FsPath, files: Vec<String>) {
    for f in files {
        let path = evidence_dir(data_dir).join(&f);
        if let Err(e) = tokio::fs::remove_file(&path).await {
            tracing::warn!(error = %e, file = %path.display(), "failed to delete an evidence file");
        }
    }
}

fn evidence_dir(data_dir: &FsPath) -> std::path::PathBuf {
    data_dir.join("evidence")
}

async fn save_reflection(db: &Db, entry_id: i64, input: &ReflectionInput) -> ApiResult<()> {
    let fields = [
        ("learned", &input.learned),
        ("keep_doing", &input.keep_doing),
        ("to_grow", &input.to_grow),
        ("to_change", &input.to_change),
        ("impact", &input.impact),
    ];
    for (name, value) in fields {
        if let Some(v) = value {
            check_length(name, v, MAX_FIELD)?;
        }
    }
    let t = db::now();
    let mut tx = db.begin().await?;
    sqlx::query(
        "insert into record_reflections (entry_id, created_at, updated_at) values ($1, $2, $2)
         on conflict (entry_id) do nothing",
    )
    .bind(entry_id)
    .bind(t)
    .execute(&mut *tx)
    .await?;
    for (name, value) in fields {
        if let Some(v) = value {
            // `name` is one of the five column names above, never input.
            sqlx::query(&format!("update record_reflections set {name} = $1, updated_at = $2 where entry_id = $3"))
                .bind(v.trim())
                .bind(t)
                .bind(entry_id)
                .execute(&mut *tx)
                .await?;
        }
    }
    tx.commit().await?;
    Ok(())
}

/// Writes (or adds to) your reflection on an entry.
#[utoipa::path(security(("bearer" = []), ("cookie" = [])), put, path = "/api/me/record/entries/{id}/reflection", tag = "record", request_body = ReflectionInput,
    responses((status = 200, body = entries::Entry), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn reflect(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    Path(id): Path<i64>,
    Json(input): Json<ReflectionInput>,
) -> ApiResult<Json<entries::Entry>> {
    entries::owned(&state.db, user.id, id).await?;
    save_reflection(&state.db, id, &input).await?;
    Ok(Json(entries::load_one(&state.db, user.id, id).await?))
}

/// Reflects on a session you have just left or replayed: its entry is made
/// from your attendance first, so the prompt works the moment you leave.
#[utoipa::path(security(("bearer" = []), ("cookie" = [])), put, path = "/api/me/record/sessions/{id}/reflection", tag = "record", request_body = ReflectionInput,
    responses((status = 200, body = entries::Entry), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn reflect_on_session(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    Path(session_id): Path<i64>,
    Json(input): Json<ReflectionInput>,
) -> ApiResult<Json<entries::Entry>> {
    entries::sync(&state.db, user.id).await?;
    let id: i64 = sqlx::query_scalar("select id from record_entries where user_id = $1 and session_id = $2")
        .bind(user.id)
        .bind(session_id)
        .fetch_optional(&state.db.read)
        .await?
        .ok_or(ApiError::NotFound("record entry for this session (attend or replay it first)"))?;
    save_reflection(&state.db, id, &input).await?;
    Ok(Json(entries::load_one(&state.db, user.id, id).await?))
}

/// Deletes your reflection on an entry (the entry stays).
#[utoipa::path(security(("bearer" = []), ("cookie" = [])), delete, path = "/api/me/record/entries/{id}/reflection", tag = "record",
    responses((status = 204), (status = 404, body = ErrorBody)))]
async fn forget(State(state): State<AppState>, AuthUser(user): AuthUser, Path(id): Path<i64>) -> ApiResult<StatusCode> {
    entries::owned(&state.db, user.id, id).await?;
    let mut tx = state.db.begin().await?;
    sqlx::query("delete from record_reflections where entry_id = $1").bind(id).execute(&mut *tx).await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LinkInput {
    /// An http or https address.
    pub url: String,
}

async fn evidence_room(db: &Db, entry_id: i64) -> ApiResult<()> {
    let n: i64 = sqlx::query_scalar("select count(*) from record_evidence where entry_id = $1")
        .bind(entry_id)
        .fetch_one(&db.read)
        .await?;
    if n >= MAX_EVIDENCE {
        return Err(ApiError::conflict(
            "evidence",
            format!("an entry holds at most {MAX_EVIDENCE} pieces of evidence"),
        ));
    }
    Ok(())
}

async fn one_evidence(db: &Db, user_id: i64, entry_id: i64, id: i64) -> ApiResult<Evidence> {
    evidence_for_user(db, user_id)
        .await?
        .remove(&entry_id)
        .and_then(|list| list.into_iter().find(|e| e.id == id))
        .ok_or(ApiError::NotFound("evidence"))
}

/// Adds a link as evidence (a blog post, a shared document, a video).
#[utoipa::path(security(("bearer" = []), ("cookie" = [])), post, path = "/api/me/record/entries/{id}/evidence", tag = "record", request_body = LinkInput,
    responses((status = 201, body = Evidence),
              (status = 403, body = ErrorBody, description = "the email address is not verified yet"),
              (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn add_link(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    Path(id): Path<i64>,
    Json(input): Json<LinkInput>,
) -> ApiResult<(StatusCode, Json<Evidence>)> {
    user.require_verified()?;
    entries::owned(&state.db, user.id, id).await?;
    let url = input.url.trim();
    check_length("url", url, 2000)?;
    let parsed = url::Url::parse(url).map_err(|e| ApiError::invalid("url", format!("not a web address: {e}")))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
        return Err(ApiError::invalid("url", "evidence links must start with https:// or http://"));
    }
    evidence_room(&state.db, id).await?;
    let mut tx = state.db.begin().await?;
    let evidence: i64 = sqlx::query_scalar(
        "insert into record_evidence (entry_id, kind, url, created_at) values ($1, 'link', $2, $3) returning id",
    )
    .bind(id)
    .bind(parsed.as_str())
    .bind(db::now())
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(one_evidence(&state.db, user.id, id, evidence).await?)))
}

/// The file types evidence may be, by extension, with the first bytes a file
/// of that type starts with (a renamed program is refused). The download
/// operations list the same types in the OpenAPI document: keep them in step.
const TYPES: &[(&str, &str, &[u8])] = &[
    ("pdf", "application/pdf", b"%PDF-"),
    ("png", "image/png", b"\x89PNG\r\n\x1a\n"),
    ("jpg", "image/jpeg", b"\xff\xd8\xff"),
    ("jpeg", "image/jpeg", b"\xff\xd8\xff"),
    ("docx", "application/vnd.openxmlformats-officedocument.wordprocessingml.document", b"PK\x03\x04"),
    ("pptx", "application/vnd.openxmlformats-officedocument.presentationml.presentation", b"PK\x03\x04"),
    ("xlsx", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", b"PK\x03\x04"),
    ("txt", "text/plain; charset=utf-8", b""),
];

fn allowed_list() -> String {
    TYPES.iter().map(|t| t.0).collect::<Vec<_>>().join(", ")
}

#[derive(Deserialize, utoipa::IntoParams)]
pub struct FileQuery {
    /// The file's name, e.g. `lesson-plan.pdf`: its extension must be allowed.
    pub name: String,
}

/// Uploads a file as evidence: the request body is the file itself. PDF,
/// PNG, JPEG, Word, PowerPoint, Excel or plain text, at most 10 MiB.
#[utoipa::path(security(("bearer" = []), ("cookie" = [])), post, path = "/api/me/record/entries/{id}/evidence/file", tag = "record", params(FileQuery),
    request_body(content = Vec<u8>, content_type = "application/octet-stream"),
    responses((status = 201, body = Evidence),
        (status = 403, body = ErrorBody, description = "the email address is not verified yet"),
        (status = 404, body = ErrorBody), (status = 413, body = ErrorBody), (status = 415, body = ErrorBody)))]
async fn add_file(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    Path(id): Path<i64>,
    Query(query): Query<FileQuery>,
    body: Body,
) -> ApiResult<(StatusCode, Json<Evidence>)> {
    user.require_verified()?;
    entries::owned(&state.db, user.id, id).await?;
    let name = query.name.trim().rsplit(['/', '\\']).next().unwrap_or_default().to_string();
    check_length("name", &name, 200)?;
    let ext = name.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase()).unwrap_or_default();
    let Some(&(_, content_type, magic)) = TYPES.iter().find(|t| t.0 == ext) else {
        return Err(ApiError::Unsupported(format!(
            "evidence files must be one of: {} (\"{name}\" is not)",
            allowed_list()
        )));
    };
    evidence_room(&state.db, id).await?;
    let quota = state.settings.evidence_quota_bytes;
    let used = evidence_bytes(&state.db, user.id).await?;
    let over_quota = || {
        ApiError::TooLarge(format!(
            "your evidence files may take {} MiB in all and take {:.1} MiB already: delete some to add this one",
            quota >> 20,
            used as f64 / (1 << 20) as f64
        ))
    };
    if used >= quota {
        return Err(over_quota());
    }
    let dir = evidence_dir(&state.settings.data_dir);
    tokio::fs::create_dir_all(&dir)
        .await
        .map_err(|e| anyhow::anyhow!(e).context("failed to create the evidence folder"))?;
    let stored_as = format!("{}.{ext}", uuid::Uuid::new_v4().simple());
    let path = dir.join(&stored_as);
    let cap = if quota - used < MAX_FILE { Cap { bytes: quota - used, refusal: over_quota() } } else { Cap::file() };
    let written = receive(body, &path, magic, ext == "txt", cap).await;
    let bytes = match written {
        Ok(b) => b,
        Err(e) => {
            let _ = tokio::fs::remove_file(&path).await;
            return Err(e);
        }
    };
    let mut tx = state.db.begin().await?;
    let evidence: i64 = sqlx::query_scalar(
        "insert into record_evidence (entry_id, kind, file_name, content_type, bytes, stored_as, created_at)
         values ($1, 'file', $2, $3, $4, $5, $6) returning id",
    )
    .bind(id)
    .bind(&name)
    .bind(content_type)
    .bind(bytes as i64)
    .bind(&stored_as)
    .bind(db::now())
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(one_evidence(&state.db, user.id, id, evidence).await?)))
}

/// The bytes of the person's evidence files, against their quota
/// (`STAFFROOM_EVIDENCE_QUOTA_MB`). Two uploads at once may each fit alone
/// and pass it together by at most one file (10 MiB): a bound, not an
/// accounting.
async fn evidence_bytes(db: &Db, user_id: i64) -> ApiResult<u64> {
    // PostgreSQL sums bigints as numeric, which `Any` cannot read: cast back.
    let used: i64 = sqlx::query_scalar(
        "select cast(coalesce(sum(v.bytes), 0) as bigint) from record_evidence v
         join record_entries e on e.id = v.entry_id where e.user_id = $1",
    )
    .bind(user_id)
    .fetch_one(&db.read)
    .await?;
    Ok(used.max(0) as u64)
}

/// Where an upload stops, and what it is told then.
struct Cap {
    bytes: u64,
    refusal: ApiError,
}

impl Cap {
    fn file() -> Cap {
        Cap {
            bytes: MAX_FILE,
            refusal: ApiError::TooLarge(format!("evidence files are at most {} MiB", MAX_FILE >> 20)),
        }
    }
}

/// Streams the body to `path`, stopping at `cap` (at most [`MAX_FILE`]),
/// and checks that it starts with `magic` (or, for text, that it is UTF-8
/// without NULs).
async fn receive(body: Body, path: &FsPath, magic: &[u8], text: bool, cap: Cap) -> ApiResult<u64> {
    let fail = |e: std::io::Error| ApiError::Internal(anyhow::anyhow!(e).context("failed to write an evidence file"));
    let mut file = tokio::fs::File::create(path).await.map_err(fail)?;
    let mut stream = body.into_data_stream();
    let mut total: u64 = 0;
    let mut head = Vec::new();
    let mut text_check = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| ApiError::Malformed(format!("the upload broke off: {e}")))?;
        total += chunk.len() as u64;
        if total > cap.bytes {
            return Err(cap.refusal);
        }
        if head.len() < 16 {
            head.extend_from_slice(&chunk[..chunk.len().min(16 - head.len())]);
        }
        if text {
            text_check.extend_from_slice(&chunk);
        }
        file.write_all(&chunk).await.map_err(fail)?;
    }
    file.flush().await.map_err(fail)?;
    if total == 0 {
        return Err(ApiError::invalid("file", "the file is empty"));
    }
    let looks_right = if text {
        std::str::from_utf8(&text_check).map(|s| !s.contains('\0')).unwrap_or(false)
    } else {
        head.starts_with(magic)
    };
    if !looks_right {
        return Err(ApiError::Unsupported("the file's contents do not match its name's type".into()));
    }
    Ok(total)
}

/// Downloads a file you attached as evidence.
#[utoipa::path(security(("bearer" = []), ("cookie" = [])), get, path = "/api/me/record/evidence/{id}", tag = "record",
    responses((status = 200, description = "the file, as the type it was uploaded as", content(
        (Vec<u8> = "application/pdf"), (Vec<u8> = "image/png"), (Vec<u8> = "image/jpeg"),
        (Vec<u8> = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"),
        (Vec<u8> = "application/vnd.openxmlformats-officedocument.presentationml.presentation"),
        (Vec<u8> = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"),
        (String = "text/plain"))), (status = 404, body = ErrorBody)))]
async fn download(State(state): State<AppState>, AuthUser(user): AuthUser, Path(id): Path<i64>) -> ApiResult<Response> {
    serve_file(&state, id, Reader::Owner(user.id)).await
}

/// Who is asking for an evidence file.
pub(crate) enum Reader {
    /// Its owner.
    Owner(i64),
    /// Anyone holding the share token of its entry.
    Share(String),
}

/// Sends evidence file `id` when `reader` may see it; "not found" otherwise.
pub(crate) async fn serve_file(state: &AppState, id: i64, reader: Reader) -> ApiResult<Response> {
    const SELECT: &str = "select v.file_name, v.content_type, v.stored_as from record_evidence v
         join record_entries e on e.id = v.entry_id where v.id = $1 and v.kind = 'file'";
    let by_owner = format!("{SELECT} and e.user_id = $2");
    let by_share = format!("{SELECT} and e.shared_as = $2");
    let row = match reader {
        Reader::Owner(user) => sqlx::query(&by_owner).bind(id).bind(user),
        Reader::Share(token) => sqlx::query(&by_share).bind(id).bind(token),
    }
    .fetch_optional(&state.db.read)
    .await?
    .ok_or(ApiError::NotFound("evidence"))?;
    let name: String = row.try_get("file_name")?;
    let content_type: String = row.try_get("content_type")?;
    let stored_as: String = row.try_get("stored_as")?;
    let bytes = tokio::fs::read(evidence_dir(&state.settings.data_dir).join(&stored_as))
        .await
        .map_err(|e| anyhow::anyhow!(e).context("failed to read an evidence file"))?;
    let disposition = format!("attachment; filename=\"{}\"", name.replace(['"', '\\', '\r', '\n'], "_"));
    Ok(([(header::CONTENT_TYPE, content_type), (header::CONTENT_DISPOSITION, disposition)], bytes).into_response())
}

/// Deletes a piece of evidence (and its file).
#[utoipa::path(security(("bearer" = []), ("cookie" = [])), delete, path = "/api/me/record/evidence/{id}", tag = "record",
    responses((status = 204), (status = 404, body = ErrorBody)))]
async fn remove(State(state): State<AppState>, AuthUser(user): AuthUser, Path(id): Path<i64>) -> ApiResult<StatusCode> {
    let stored: Option<Option<String>> = sqlx::query_scalar(
        "select v.stored_as from record_evidence v join record_entries e on e.id = v.entry_id where v.id = $1 and e.user_id = $2",
    )
    .bind(id)
    .bind(user.id)
    .fetch_optional(&state.db.read)
    .await?;
    let stored = stored.ok_or(ApiError::NotFound("evidence"))?;
    let mut tx = state.db.begin().await?;
    sqlx::query("delete from record_evidence where id = $1").bind(id).execute(&mut *tx).await?;
    tx.commit().await?;
    delete_files(&state.settings.data_dir, stored.into_iter().collect()).await;
    Ok(StatusCode::NO_CONTENT)
}

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(reflect, forget))
        .routes(routes!(reflect_on_session))
        .routes(routes!(add_link))
        .routes(routes!(add_file))
        .routes(routes!(download, remove))
}
