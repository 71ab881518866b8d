//! The professional record (docs/record.md): each participant's portfolio
//! of learning, which they own and organisers never read.
//!
//! - `entries`: one entry per attended session, made by the server from
//!   attendance, and entries added by hand for other CPD;
//! - `goals`: their development needs and their school's priorities, and the
//!   links from entries to them;
//! - `reflections`: what they learned and will keep, grow and change, and
//!   later the impact, with evidence (links and files);
//! - `certificates`: certificates of attendance for attended sessions,
//!   signed Open Badges 3.0 credentials (`credential`) baked into a
//!   printable SVG (`certificate_svg`), with public verification.
//!
//! Every route is under `/api/me/`: a row is only ever read or changed by
//! its owner, and one that is not yours answers 404 exactly like one that
//! does not exist. The one exception is deliberate: a certificate's public
//! facts (under `/api/certificates/`) can be confirmed by anyone who was
//! given its number or file.

pub mod certificate_svg;
pub mod certificates;
pub mod credential;
pub mod entries;
pub mod goals;
pub mod reflections;

use utoipa_axum::router::OpenApiRouter;

use crate::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    entries::router().merge(goals::router()).merge(reflections::router()).merge(certificates::router())
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

pub(crate) fn now() -> i64 {
    chrono::Utc::now().timestamp()
}
