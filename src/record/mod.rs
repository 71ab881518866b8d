//! The professional record (docs/record.md): each participant's portfolio
//! of learning, which they own and organisers never read.
//!
//! - `entries`: one entry per attended session, made by the server from
//!   attendance, and entries added by hand for other CPD;
//! - `goals`: their development needs and their school's priorities, and the
//!   links from entries to them;
//! - `reflections`: what they learned and will keep, grow and change, and
//!   later the impact, with evidence (links and files);
//! - `sharing`: one entry shown to whoever holds its link, until stopped;
//! - `summary`: minutes by need, priority, term, kind and month;
//! - `export`: the record as CSV, as complete JSON, and as xAPI statements
//!   (docs/record-exports.md).
//! - `certificates`: certificates of attendance for attended sessions,
//!   signed Open Badges 3.0 credentials (`credential`) baked into a
//!   printable SVG (`certificate_svg`), with public verification.
//!
//! Every route is under `/api/me/`: a row is only ever read or changed by
//! its owner, and one that is not yours answers 404 exactly like one that
//! does not exist. Two exceptions are deliberate, each needing something
//! only the owner can hand out: a certificate's public facts (under
//! `/api/certificates/`) confirmed from its number or file, and an entry its
//! owner chose to share (under `/api/shared/`), read with its random link.

pub mod certificate_svg;
pub mod certificates;
pub mod credential;
pub mod entries;
pub mod export;
pub mod goals;
pub mod reflections;
pub mod sharing;
pub mod summary;

use utoipa_axum::router::OpenApiRouter;

use crate::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    entries::router()
        .merge(goals::router())
        .merge(reflections::router())
        .merge(summary::router())
        .merge(export::router())
        .merge(certificates::router())
        .merge(sharing::router())
}

/// Counts characters, not bytes, so a limit reads the same in any script.
pub(crate) fn check_length(field: &str, value: &str, max: usize) -> crate::http::error::ApiResult<()> {
    let n = value.chars().count();
    if n > max {
        return Err(crate::http::error::ApiError::invalid(
            field,
            format!("{field} must be at most {max} characters (it has {n})"),
        ));
    }
    Ok(())
}

/// Deletes everything of `user_id`'s record inside `tx` (when their account
/// is removed) and returns the evidence files to delete once it commits.
pub async fn forget(tx: &mut crate::db::Tx, user_id: i64) -> Result<Vec<String>, sqlx::Error> {
    let files: Vec<String> = sqlx::query_scalar(
        "select v.stored_as from record_evidence v join record_entries e on e.id = v.entry_id
         where e.user_id = $1 and v.stored_as is not null",
    )
    .bind(user_id)
    .fetch_all(&mut **tx)
    .await?;
    // Links, reflections and evidence rows go with their entries (on delete cascade).
    for sql in [
        "delete from record_entries where user_id = $1",
        "delete from record_goals where user_id = $1",
        "delete from certificates where user_id = $1",
    ] {
        sqlx::query(sql).bind(user_id).execute(&mut **tx).await?;
    }
    Ok(files)
}

pub use reflections::delete_files;
