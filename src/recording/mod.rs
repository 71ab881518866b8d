//! Recordings of live sessions and their replay.
//!
//! A host starts a recording in the room; the room hands each main-room
//! track's RTP to a [`Recorder`], which writes one WebM file per track
//! (`webm.rs`, frames rebuilt in `track.rs`) and a timeline of what happened
//! (`timeline.jsonl`). Files are playable while written and after a crash;
//! [`recover`] finishes the ones a crash left open. The replay page reads the
//! manifest here, streams the files with range requests, and reports what
//! was watched. See docs/recording.md.

pub mod download;
pub mod recorder;
pub mod served;
pub mod track;
pub mod webm;

use std::{
    collections::HashMap,
    path::{Path as FsPath, PathBuf},
    sync::{Mutex, OnceLock},
    time::Instant,
};

use axum::{
    extract::{Request, State},
    http::StatusCode,
    response::{IntoResponse, Response},
};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::Row;
use tower::ServiceExt;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

pub use recorder::Recorder;

use crate::{
    auth::User,
    db::Db,
    http::{
        error::{ApiError, ApiResult, ErrorBody},
        extract::{AuthUser, Json, Path},
    },
    programme, AppState,
};

/// The timeline's file name in a recording's directory.
pub const TIMELINE: &str = "timeline.jsonl";

#[derive(Debug, thiserror::Error)]
pub enum RecordingError {
    #[error("only the session's registered participants can watch this recording")]
    NoAccess,
    #[error("{0}")]
    BadSegment(String),
    #[error("too many watch reports: wait a moment")]
    TooManyReports,
    #[error("this recording is still running: stop it in the room first")]
    StillRecording,
}

impl From<RecordingError> for ApiError {
    fn from(e: RecordingError) -> Self {
        match e {
            RecordingError::NoAccess => ApiError::forbidden(e.to_string()),
            RecordingError::BadSegment(m) => ApiError::invalid("segments", m),
            RecordingError::TooManyReports => ApiError::TooManyRequests(e.to_string()),
            RecordingError::StillRecording => ApiError::Conflict { field: None, message: e.to_string() },
        }
    }
}

/// A recording in a session's list.
#[derive(Serialize, ToSchema)]
pub struct RecordingSummary {
    pub id: String,
    pub session_id: i64,
    /// `recording` (running), `ready`, or `recovered` (finished after a server crash).
    pub status: String,
    /// Unix ms.
    pub started_at: i64,
    pub duration_ms: Option<i64>,
    /// Disk space used, for organisers (null for everyone else).
    pub bytes: Option<i64>,
    /// The replay page.
    pub replay_url: String,
    /// The single-file download: `none` (no ffmpeg on the server), `working`, `ready`, `empty` (nothing was
    /// recorded: nobody was on stage) or `failed`.
    pub download_status: String,
    /// Percent done while `working`.
    pub download_progress: i64,
    /// Set once `ready`.
    pub download_url: Option<String>,
    /// Who may watch: `participants` (the session's registrants, presenters
    /// and organisers) or `everyone` signed in.
    pub open_to: String,
}

/// One recorded track: a WebM file placed on the recording's clock.
#[derive(Serialize, ToSchema)]
pub struct RecordedTrack {
    pub file: String,
    pub url: String,
    pub participant_id: String,
    pub name: String,
    /// `audio` or `video`.
    pub kind: String,
    /// Where the file starts, in ms from the recording's start.
    pub start_ms: i64,
    pub duration_ms: Option<i64>,
}

/// Everything the replay page needs.
#[derive(Serialize, ToSchema)]
pub struct RecordingDetail {
    #[serde(flatten)]
    pub summary: RecordingSummary,
    pub session_title: String,
    pub tracks: Vec<RecordedTrack>,
    /// Timeline events in order, each with `t` (ms from the start) and
    /// `type` (docs/recording.md lists them).
    #[schema(value_type = Vec<Object>)]
    pub timeline: Vec<Value>,
    /// Unique ms of this recording you have watched.
    pub watched_ms: i64,
}

fn summary(row: &sqlx::any::AnyRow, organiser: bool) -> Result<RecordingSummary, sqlx::Error> {
    let id: String = row.try_get("id")?;
    let download_status: String = row.try_get("download_status")?;
    Ok(RecordingSummary {
        replay_url: format!("/replay.html?id={id}"),
        download_url: (download_status == "ready").then(|| format!("/api/recordings/{id}/download")),
        download_status,
        download_progress: row.try_get("download_progress")?,
        open_to: row.try_get("open_to")?,
        id,
        session_id: row.try_get("session_id")?,
        status: row.try_get("status")?,
        started_at: row.try_get("started_at")?,
        duration_ms: row.try_get("duration_ms")?,
        bytes: if organiser { Some(row.try_get("bytes")?) } else { None },
    })
}

const RECORDING_SELECT: &str =
    "select id, session_id, status, started_at, duration_ms, bytes, download_status, download_progress, open_to
     from recordings";

/// Who `user` is to a session's recordings.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Viewer {
    Organiser,
    /// A presenter or confirmed registrant.
    Participant,
    /// Anyone else signed in: sees only recordings opened to everyone.
    Other,
}

async fn viewer(db: &Db, user: &User, session_id: i64) -> ApiResult<Viewer> {
    programme::visible(db, session_id, Some(user)).await?;
    if user.is_organiser {
        return Ok(Viewer::Organiser);
    }
    if programme::is_presenter(db, session_id, user.id).await? {
        return Ok(Viewer::Participant);
    }
    let status: Option<String> =
        sqlx::query_scalar("select status from registrations where session_id = $1 and user_id = $2")
            .bind(session_id)
            .bind(user.id)
            .fetch_optional(&db.read)
            .await?;
    Ok(if status.as_deref() == Some("confirmed") { Viewer::Participant } else { Viewer::Other })
}

/// The recording's row, if `user` may see it; `bool`: they are an organiser.
async fn load(db: &Db, user: &User, id: &str) -> ApiResult<(sqlx::any::AnyRow, bool)> {
    let row = sqlx::query(&format!("{RECORDING_SELECT} where id = $1"))
        .bind(id)
        .fetch_optional(&db.read)
        .await?
        .ok_or(ApiError::NotFound("recording"))?;
    let viewer = viewer(db, user, row.try_get("session_id")?).await?;
    if viewer == Viewer::Other && row.try_get::<String, _>("open_to")? != "everyone" {
        return Err(RecordingError::NoAccess.into());
    }
    Ok((row, viewer == Viewer::Organiser))
}

/// A session's recordings, newest first: all of them for its participants,
/// those opened to everyone for anyone else signed in.
#[utoipa::path(security(("bearer" = []), ("cookie" = [])), get, path = "/api/sessions/{id}/recordings", tag = "recordings",
    responses((status = 200, body = Vec<RecordingSummary>), (status = 404, body = ErrorBody)))]
async fn list(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    Path(id): Path<i64>,
) -> ApiResult<Json<Vec<RecordingSummary>>> {
    let viewer = viewer(&state.db, &user, id).await?;
    let rows = sqlx::query(&format!("{RECORDING_SELECT} where session_id = $1 order by started_at desc"))
        .bind(id)
        .fetch_all(&state.db.read)
        .await?;
    let mut out = vec![];
    for row in &rows {
        if viewer != Viewer::Other || row.try_get::<String, _>("open_to")? == "everyone" {
            out.push(summary(row, viewer == Viewer::Organiser)?);
        }
    }
    Ok(Json(out))
}

#[derive(Deserialize, ToSchema)]
pub struct Access {
    /// `participants` or `everyone` (signed in).
    pub open_to: String,
}

/// Open a recording to everyone signed in, or back to the session's participants (organisers).
#[utoipa::path(security(("bearer" = []), ("cookie" = [])), put, path = "/api/recordings/{id}/access", tag = "recordings", request_body = Access,
    responses((status = 200, body = RecordingSummary), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 422, body = ErrorBody)))]
async fn set_access(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    Path(id): Path<String>,
    Json(body): Json<Access>,
) -> ApiResult<Json<RecordingSummary>> {
    let (_, organiser) = load(&state.db, &user, &id).await?;
    if !organiser {
        return Err(ApiError::forbidden("only organisers can change who may watch a recording"));
    }
    if body.open_to != "participants" && body.open_to != "everyone" {
        return Err(ApiError::invalid("open_to", "open_to must be participants or everyone"));
    }
    let mut tx = state.db.begin().await?;
    sqlx::query("update recordings set open_to = $1 where id = $2")
        .bind(&body.open_to)
        .bind(&id)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    tracing::info!(recording = %id, open_to = %body.open_to, by = user.id, "recording access changed");
    let (row, _) = load(&state.db, &user, &id).await?;
    Ok(Json(summary(&row, true)?))
}

/// A recording: its tracks, its timeline, and how much of it you watched.
#[utoipa::path(security(("bearer" = []), ("cookie" = [])), get, path = "/api/recordings/{id}", tag = "recordings",
    responses((status = 200, body = RecordingDetail), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn detail(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    Path(id): Path<String>,
) -> ApiResult<Json<RecordingDetail>> {
    let (row, organiser) = load(&state.db, &user, &id).await?;
    let summary = summary(&row, organiser)?;
    let session_title = programme::load(&state.db, summary.session_id).await?.map(|s| s.title).unwrap_or_default();
    let tracks = sqlx::query(
        "select file, participant_id, name, kind, start_ms, duration_ms from recording_tracks
         where recording_id = $1 order by start_ms, file",
    )
    .bind(&id)
    .fetch_all(&state.db.read)
    .await?
    .iter()
    .map(|r| {
        let file: String = r.try_get("file")?;
        Ok(RecordedTrack {
            url: format!("/api/recordings/{id}/files/{file}"),
            file,
            participant_id: r.try_get::<i64, _>("participant_id")?.to_string(),
            name: r.try_get("name")?,
            kind: r.try_get("kind")?,
            start_ms: r.try_get("start_ms")?,
            duration_ms: r.try_get("duration_ms")?,
        })
    })
    .collect::<Result<Vec<_>, sqlx::Error>>()?;
    let timeline = read_timeline(&state.settings.recordings_dir.join(&id));
    let watched_ms = watched(&state.db, &id, user.id).await?;
    Ok(Json(RecordingDetail { summary, session_title, tracks, timeline, watched_ms }))
}

/// The timeline's events; a line a crash tore is skipped.
pub fn read_timeline(dir: &FsPath) -> Vec<Value> {
    std::fs::read_to_string(dir.join(TIMELINE))
        .map(|text| text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect())
        .unwrap_or_default()
}

/// One recorded file, with range requests (seeking). Only files the
/// recording lists are served, to people who may watch it.
#[utoipa::path(security(("bearer" = []), ("cookie" = [])), get, path = "/api/recordings/{id}/files/{file}", tag = "recordings",
    responses((status = 200, description = "the WebM file", content_type = "video/webm"),
              (status = 206, description = "the requested range", content_type = "video/webm"),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 416, body = ErrorBody, description = "the range is outside the file")))]
async fn file(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    Path((id, file)): Path<(String, String)>,
    request: Request,
) -> ApiResult<Response> {
    load(&state.db, &user, &id).await?;
    let listed: Option<String> =
        sqlx::query_scalar("select file from recording_tracks where recording_id = $1 and file = $2")
            .bind(&id)
            .bind(&file)
            .fetch_optional(&state.db.read)
            .await?;
    let listed = listed.ok_or(ApiError::NotFound("file"))?;
    let path = state.settings.recordings_dir.join(&id).join(&listed);
    let served = tower_http::services::ServeFile::new(path) // video/webm, from the extension
        .oneshot(request)
        .await
        .map_err(|e| anyhow::anyhow!("serving a recording failed: {e}"))?;
    // What reaches the person bounds their replay credit: count it.
    let first_byte = match served.status() {
        StatusCode::OK => Some(0),
        StatusCode::PARTIAL_CONTENT => {
            served.headers().get(axum::http::header::CONTENT_RANGE).and_then(|v| v.to_str().ok()).and_then(range_start)
        }
        _ => None,
    };
    let mut response = match first_byte {
        Some(start) => served.map(|body| {
            axum::body::Body::new(served::Counted::new(
                state.db.clone(),
                &id,
                user.id,
                &listed,
                start,
                axum::body::Body::new(body),
            ))
        }),
        None => served.into_response(),
    };
    // Media is personal data: never in a shared cache.
    response
        .headers_mut()
        .insert(axum::http::header::CACHE_CONTROL, axum::http::HeaderValue::from_static("private, max-age=3600"));
    Ok(response)
}

/// The first byte of a `Content-Range: bytes a-b/len` answer.
fn range_start(value: &str) -> Option<u64> {
    value.strip_prefix("bytes ")?.split('-').next()?.trim().parse().ok()
}

/// The recording as one WebM file (presenter view, voices mixed), once made.
#[utoipa::path(security(("bearer" = []), ("cookie" = [])), get, path = "/api/recordings/{id}/download", tag = "recordings",
    responses((status = 200, description = "the WebM file, as an attachment", content_type = "video/webm"),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody, description = "unknown, or not made yet")))]
async fn download_file(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    Path(id): Path<String>,
    request: Request,
) -> ApiResult<Response> {
    let (row, _) = load(&state.db, &user, &id).await?;
    let status: String = row.try_get("download_status")?;
    if status != "ready" {
        // Made in the background after the recording stops (when the server has ffmpeg).
        return Err(ApiError::NotFound("download"));
    }
    let session_id: i64 = row.try_get("session_id")?;
    let title = programme::load(&state.db, session_id).await?.map(|s| s.title).unwrap_or_else(|| "recording".into());
    let name: String =
        title.chars().map(|c| if c.is_ascii_alphanumeric() || c == ' ' || c == '-' { c } else { '_' }).collect();
    let path = state.settings.recordings_dir.join(&id).join(download::FILE);
    let served = tower_http::services::ServeFile::new(path)
        .oneshot(request)
        .await
        .map_err(|e| anyhow::anyhow!("serving a download failed: {e}"))?;
    let mut response = served.into_response();
    let disposition = format!("attachment; filename=\"{}.webm\"", name.trim());
    if let Ok(value) = axum::http::HeaderValue::from_str(&disposition) {
        response.headers_mut().insert(axum::http::header::CONTENT_DISPOSITION, value);
    }
    Ok(response)
}

/// Delete a finished recording and its files (organisers).
#[utoipa::path(security(("bearer" = []), ("cookie" = [])), delete, path = "/api/recordings/{id}", tag = "recordings",
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn delete(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let (row, organiser) = load(&state.db, &user, &id).await?;
    if !organiser {
        return Err(ApiError::forbidden("only organisers can delete recordings"));
    }
    let status: String = row.try_get("status")?;
    if status == "recording" {
        return Err(RecordingError::StillRecording.into());
    }
    let mut tx = state.db.begin().await?;
    for table in ["replay_segments", "replay_served", "recording_tracks"] {
        sqlx::query(&format!("delete from {table} where recording_id = $1")).bind(&id).execute(&mut *tx).await?;
    }
    sqlx::query("delete from recordings where id = $1").bind(&id).execute(&mut *tx).await?;
    tx.commit().await?;
    let dir = state.settings.recordings_dir.join(&id);
    if let Err(e) = std::fs::remove_dir_all(&dir) {
        tracing::warn!(recording = %id, error = %e, "recording deleted, but its files were not removed");
    }
    tracing::info!(recording = %id, by = user.id, "recording deleted");
    Ok(StatusCode::NO_CONTENT)
}

/// A stretch of the recording that played, in ms on its clock.
#[derive(Deserialize, Serialize, ToSchema, Clone, Copy, Debug, PartialEq)]
pub struct Segment {
    pub start_ms: i64,
    pub end_ms: i64,
}

#[derive(Deserialize, ToSchema)]
pub struct WatchReport {
    /// At most 100. A segment that grows while it plays is sent again with
    /// the same start: it only ever extends.
    pub segments: Vec<Segment>,
}

#[derive(Serialize, ToSchema)]
pub struct Watched {
    /// Unique ms of the recording you have watched, overlaps counted once.
    pub watched_ms: i64,
}

/// Segments in one report.
const MAX_SEGMENTS: usize = 100;

/// Reports per person and recording in a minute.
const REPORTS_PER_MINUTE: u32 = 60;

/// Per person and recording: when their minute began, and reports in it.
type ReportCounts = HashMap<(i64, String), (Instant, u32)>;

fn allow_report(user: i64, recording: &str) -> bool {
    static LIMITS: OnceLock<Mutex<ReportCounts>> = OnceLock::new();
    let mut limits = LIMITS.get_or_init(Default::default).lock().unwrap_or_else(|e| e.into_inner());
    let now = Instant::now();
    limits.retain(|_, (since, _)| now.duration_since(*since).as_secs() < 60);
    let (_, count) = limits.entry((user, recording.to_string())).or_insert((now, 0));
    *count += 1;
    *count <= REPORTS_PER_MINUTE
}

/// Report what played. Idempotent: the same segments again change nothing.
#[utoipa::path(security(("bearer" = []), ("cookie" = [])), post, path = "/api/recordings/{id}/watched", tag = "recordings", request_body = WatchReport,
    responses((status = 200, body = Watched), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 422, body = ErrorBody), (status = 429, body = ErrorBody)))]
async fn report(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    Path(id): Path<String>,
    Json(body): Json<WatchReport>,
) -> ApiResult<Json<Watched>> {
    let (row, _) = load(&state.db, &user, &id).await?;
    let duration: Option<i64> = row.try_get("duration_ms")?;
    validate_segments(&body.segments, duration)?;
    if !allow_report(user.id, &id) {
        return Err(RecordingError::TooManyReports.into());
    }
    let now = chrono::Utc::now().timestamp_millis();
    // Only what exists can have played: the whole recording once finished,
    // what has been written so far while it runs.
    let started_at: i64 = row.try_get("started_at")?;
    let exists_ms = duration.unwrap_or_else(|| now.saturating_sub(started_at).max(0));
    let segments: Vec<Segment> = body.segments.iter().filter_map(|s| s.clip(exists_ms)).collect();
    // And only what the server sent this person can have played: each
    // segment is cut to the stretches their served bytes hold.
    let _writing = served::lock(&id, user.id).await;
    let delivered = served::Delivered::load(&state.db, &id, user.id).await?;
    let tracks = served::tracks(&state.db, &id).await?;
    let dir = state.settings.recordings_dir.join(&id);
    let credit = served::credit(&dir, tracks, &delivered.ranges, exists_ms, duration.is_some()).await;
    let reported = union_ms(segments.clone());
    let segments = within(&segments, &credit);
    tracing::debug!(recording = %id, user = user.id, reported_ms = reported, believed_ms = union_ms(segments.clone()),
        served = ?delivered.ranges, "watch report cut to what was served");
    let mut tx = state.db.begin().await?;
    delivered.save(&mut tx, now).await?;
    for s in &segments {
        sqlx::query(
            "insert into replay_segments (recording_id, user_id, start_ms, end_ms, updated_at) values ($1, $2, $3, $4, $5)
             on conflict (recording_id, user_id, start_ms) do update
             set end_ms = case when excluded.end_ms > replay_segments.end_ms then excluded.end_ms else replay_segments.end_ms end,
                 updated_at = excluded.updated_at",
        )
        .bind(&id)
        .bind(user.id)
        .bind(s.start_ms)
        .bind(s.end_ms)
        .bind(now)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    delivered.forget();
    Ok(Json(Watched { watched_ms: watched(&state.db, &id, user.id).await? }))
}

/// The parts of `segments` inside `credit` (merged stretches), each stored
/// under its own start. At most as many as a report may send: if a
/// patchy delivery cuts them into more, the shortest go (less credit, never
/// more rows than a report allows).
fn within(segments: &[Segment], credit: &[(i64, i64)]) -> Vec<Segment> {
    let mut parts: Vec<Segment> = segments
        .iter()
        .flat_map(|s| served::intersect(&[(s.start_ms, s.end_ms)], credit))
        .map(|(start_ms, end_ms)| Segment { start_ms, end_ms })
        .collect();
    if parts.len() > MAX_SEGMENTS {
        parts.sort_by_key(|s| std::cmp::Reverse(s.end_ms - s.start_ms));
        parts.truncate(MAX_SEGMENTS);
    }
    parts
}

fn validate_segments(segments: &[Segment], duration: Option<i64>) -> Result<(), RecordingError> {
    if segments.is_empty() || segments.len() > MAX_SEGMENTS {
        return Err(RecordingError::BadSegment("send between 1 and 100 segments".into()));
    }
    // A little slack past the end: players round.
    let end = duration.map(|d| d + 2_000).unwrap_or(i64::MAX);
    for s in segments {
        if s.start_ms < 0 || s.end_ms <= s.start_ms {
            return Err(RecordingError::BadSegment(format!(
                "a segment must start at 0 or later and end after it starts (got {}..{})",
                s.start_ms, s.end_ms
            )));
        }
        if s.end_ms > end {
            return Err(RecordingError::BadSegment(format!("a segment ends after the recording ({} ms)", end - 2_000)));
        }
    }
    Ok(())
}

impl Segment {
    /// The part of the segment inside a recording `length_ms` long, if any.
    pub fn clip(self, length_ms: i64) -> Option<Segment> {
        let (start_ms, end_ms) = (self.start_ms.max(0), self.end_ms.min(length_ms));
        (end_ms > start_ms).then_some(Segment { start_ms, end_ms })
    }
}

/// Unique ms watched by one person: the union of their segments, within
/// the recording (its length once finished; stored segments were already
/// clipped to what existed when they were reported).
pub async fn watched(db: &Db, recording: &str, user: i64) -> Result<i64, sqlx::Error> {
    let rows = sqlx::query(
        "select s.start_ms, s.end_ms, r.duration_ms from replay_segments s join recordings r on r.id = s.recording_id
         where s.recording_id = $1 and s.user_id = $2",
    )
    .bind(recording)
    .bind(user)
    .fetch_all(&db.read)
    .await?;
    let mut segments = vec![];
    for r in &rows {
        let segment = Segment { start_ms: r.try_get("start_ms")?, end_ms: r.try_get("end_ms")? };
        let length: Option<i64> = r.try_get("duration_ms")?;
        segments.extend(segment.clip(length.unwrap_or(i64::MAX)));
    }
    Ok(union_ms(segments))
}

/// The length of the union of segments; saturates rather than overflowing.
pub fn union_ms(mut segments: Vec<Segment>) -> i64 {
    segments.sort_by_key(|s| s.start_ms);
    let (mut total, mut reach) = (0i64, i64::MIN);
    for s in segments {
        let start = s.start_ms.max(reach);
        if s.end_ms > start {
            total = total.saturating_add(s.end_ms.saturating_sub(start));
        }
        reach = reach.max(s.end_ms);
    }
    total
}

/// Finishes recordings a crash left running: each track file is cut to its
/// last whole cluster and given its index and duration; the recording is
/// marked `recovered`. Runs at start, before the server takes requests.
pub async fn recover(db: &Db, root: &FsPath) -> anyhow::Result<()> {
    let open =
        sqlx::query("select id, started_at from recordings where status = 'recording'").fetch_all(&db.read).await?;
    for row in open {
        let id: String = row.try_get("id")?;
        let started_at: i64 = row.try_get("started_at")?;
        let dir: PathBuf = root.join(&id);
        let tracks = sqlx::query("select file, start_ms from recording_tracks where recording_id = $1")
            .bind(&id)
            .fetch_all(&db.read)
            .await?;
        let mut end = 0i64;
        for track in tracks {
            let file: String = track.try_get("file")?;
            let start_ms: i64 = track.try_get("start_ms")?;
            let path = dir.join(&file);
            let repaired = tokio::task::spawn_blocking(move || webm::recover(&path)).await?;
            let duration = match repaired {
                Ok(webm::Recovered::Finished(d)) | Ok(webm::Recovered::Repaired { duration_ms: d, .. }) => d,
                Ok(webm::Recovered::Unusable) => 0,
                Err(e) => {
                    tracing::warn!(recording = %id, %file, error = %e, "a recorded track could not be recovered");
                    0
                }
            };
            let bytes = std::fs::metadata(dir.join(&file)).map(|m| m.len() as i64).unwrap_or(0);
            recorder::set_track(db, &id, &file, duration, bytes).await?;
            end = end.max(start_ms + duration);
        }
        recorder::finish_row(db, &dir, &id, "recovered", started_at + end, end).await?;
        tracing::warn!(recording = %id, duration_ms = end, "recording recovered after an unclean stop");
    }
    Ok(())
}

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(detail, delete))
        .routes(routes!(file))
        .routes(routes!(download_file))
        .routes(routes!(set_access))
        .routes(routes!(report))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(start_ms: i64, end_ms: i64) -> Segment {
        Segment { start_ms, end_ms }
    }

    #[test]
    fn overlapping_segments_count_once() {
        assert_eq!(union_ms(vec![seg(0, 10_000), seg(5_000, 15_000), seg(30_000, 31_000)]), 16_000);
        assert_eq!(union_ms(vec![seg(0, 10_000), seg(0, 10_000)]), 10_000);
        assert_eq!(union_ms(vec![seg(2_000, 3_000), seg(0, 10_000)]), 10_000);
        assert_eq!(union_ms(vec![]), 0);
        assert_eq!(union_ms(vec![seg(i64::MIN, i64::MAX), seg(0, i64::MAX)]), i64::MAX, "saturates, never overflows");
    }

    #[test]
    fn a_segment_is_clipped_to_the_recording() {
        assert_eq!(seg(-5, 20_000).clip(10_000), Some(seg(0, 10_000)));
        assert_eq!(seg(0, i64::MAX).clip(3_000), Some(seg(0, 3_000)));
        assert_eq!(seg(i64::MAX - 1, i64::MAX).clip(3_000), None);
        assert_eq!(seg(2_000, 2_500).clip(10_000), Some(seg(2_000, 2_500)));
    }

    #[test]
    fn a_reported_segment_keeps_only_the_stretches_that_were_served() {
        let credit = [(0, 3_000), (5_000, 8_000)];
        assert_eq!(within(&[seg(1_000, 10_000)], &credit), vec![seg(1_000, 3_000), seg(5_000, 8_000)]);
        assert_eq!(within(&[seg(3_000, 5_000)], &credit), vec![]);
        assert_eq!(within(&[seg(0, 10_000)], &[]), vec![]);
        // A patchy delivery cannot turn one report into more rows than a report may send.
        let patchy: Vec<(i64, i64)> = (0..300).map(|i| (i * 10, i * 10 + 1 + i % 2)).collect();
        let parts = within(&[seg(0, 3_000)], &patchy);
        assert_eq!(parts.len(), MAX_SEGMENTS);
        assert!(parts.iter().all(|s| s.end_ms - s.start_ms == 2), "the longest are kept");
    }

    #[test]
    fn a_partial_answer_names_its_first_byte() {
        assert_eq!(range_start("bytes 0-99/1000"), Some(0));
        assert_eq!(range_start("bytes 500-999/1000"), Some(500));
        assert_eq!(range_start("bytes */1000"), None);
    }

    #[test]
    fn bad_segments_are_refused() {
        assert!(validate_segments(&[seg(-1, 5)], Some(10_000)).is_err());
        assert!(validate_segments(&[seg(5, 5)], Some(10_000)).is_err());
        assert!(validate_segments(&[seg(0, 60_000)], Some(10_000)).is_err());
        assert!(validate_segments(&[], Some(10_000)).is_err());
        assert!(validate_segments(&[seg(0, 10_500)], Some(10_000)).is_ok());
    }
}
