//! Certificates of attendance (docs/certificates.md): for a session the
//! participant attended, a signed Open Badges 3.0 credential, a printable
//! SVG with that credential baked in, and a public page where anyone given
//! the certificate number can confirm it.
//!
//! The stored row is the authority: verification checks the signature with
//! the stored key *and* that the credential is the one stored under its
//! number, so a credential re-signed with some other key, or an edited copy,
//! never passes. The public answer carries only what the certificate prints.

use axum::{
    extract::State,
    http::{header, StatusCode},
    response::IntoResponse,
};
use chrono::{DateTime, Utc};
use rand::Rng;
use serde::{Deserialize, Serialize};
use sqlx::Row;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::{
    certificate_svg,
    credential::{self, Facts, ISSUER_NAME},
    entries::{self, Kind},
};
use crate::{
    attendance::{settle, Status},
    db::{self, Db},
    http::{
        error::{ApiError, ApiResult, ErrorBody},
        extract::{AuthUser, Json, Path},
    },
    programme::at,
    AppState,
};

/// A stored certificate.
struct Stored {
    id: String,
    user_id: i64,
    holder_name: String,
    session_title: String,
    session_starts_at: i64,
    presenters: String,
    minutes: i64,
    credential: String,
    issued_at: i64,
}

const COLUMNS: &str =
    "id, user_id, holder_name, session_title, session_starts_at, presenters, minutes, credential, issued_at";

fn stored_from_row(r: &sqlx::any::AnyRow) -> Result<Stored, sqlx::Error> {
    Ok(Stored {
        id: r.try_get("id")?,
        user_id: r.try_get("user_id")?,
        holder_name: r.try_get("holder_name")?,
        session_title: r.try_get("session_title")?,
        session_starts_at: r.try_get("session_starts_at")?,
        presenters: r.try_get("presenters")?,
        minutes: r.try_get("minutes")?,
        credential: r.try_get("credential")?,
        issued_at: r.try_get("issued_at")?,
    })
}

/// A certificate number: 32 lowercase hex digits. Anything else cannot
/// exist, and is "not found" without a query.
fn is_certificate_number(id: &str) -> bool {
    id.len() == 32 && id.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

async fn load(db: &Db, id: &str) -> ApiResult<Option<Stored>> {
    if !is_certificate_number(id) {
        return Ok(None);
    }
    let row = sqlx::query(&format!("select {COLUMNS} from certificates where id = $1"))
        .bind(id)
        .fetch_optional(&db.read)
        .await?;
    Ok(row.as_ref().map(stored_from_row).transpose()?)
}

/// Certificate `id` if `user_id` holds it; anyone else's is "not found".
async fn load_held(db: &Db, user_id: i64, id: &str) -> ApiResult<Stored> {
    load(db, id).await?.filter(|c| c.user_id == user_id).ok_or(ApiError::NotFound("certificate"))
}

/// What anyone with the certificate number may see: what the certificate
/// itself prints, nothing from the holder's account or record.
#[derive(Debug, Serialize, ToSchema)]
pub struct PublicCertificate {
    pub holder_name: String,
    pub session_title: String,
    pub session_starts_at: DateTime<Utc>,
    /// CPD minutes credited.
    pub minutes: i64,
    pub issued_at: DateTime<Utc>,
    pub issuer_name: String,
}

impl From<&Stored> for PublicCertificate {
    fn from(c: &Stored) -> Self {
        PublicCertificate {
            holder_name: c.holder_name.clone(),
            session_title: c.session_title.clone(),
            session_starts_at: at(c.session_starts_at),
            minutes: c.minutes,
            issued_at: at(c.issued_at),
            issuer_name: ISSUER_NAME.into(),
        }
    }
}

/// Your certificate, with where to check it and where to download it.
#[derive(Serialize, ToSchema)]
pub struct IssuedCertificate {
    /// The certificate number.
    pub id: String,
    #[serde(flatten)]
    pub certificate: PublicCertificate,
    /// The public page that confirms it (printed on the certificate).
    pub verification_url: String,
    /// The printable certificate, with the credential baked in.
    pub svg_url: String,
    /// The Open Badges 3.0 credential as a compact JWS (VC-JWT).
    pub credential_url: String,
}

fn issued(state: &AppState, c: &Stored) -> IssuedCertificate {
    IssuedCertificate {
        id: c.id.clone(),
        certificate: c.into(),
        verification_url: credential::verification_url(&state.public_url, &c.id),
        svg_url: format!("/api/me/certificates/{}/certificate.svg", c.id),
        credential_url: format!("/api/me/certificates/{}/credential.jwt", c.id),
    }
}

fn new_certificate_number() -> String {
    rand::thread_rng().gen::<[u8; 16]>().iter().map(|b| format!("{b:02x}")).collect()
}

/// The name to print on a certificate, as its holder confirms it.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IssueInput {
    /// Your name as it should appear on the certificate (1 to 120
    /// characters): your account's name, confirmed or corrected. It is
    /// signed into the credential and never changes afterwards.
    pub holder_name: String,
}

/// The longest name a certificate prints: the same bound as an account's name.
const MAX_HOLDER_NAME: usize = 120;

impl IssueInput {
    /// The confirmed name, trimmed, with runs of spaces made one; refused
    /// when empty, too long, or holding control characters (a name on a
    /// certificate is one printed line).
    fn holder_name(&self) -> ApiResult<String> {
        if self.holder_name.chars().any(char::is_control) {
            return Err(ApiError::invalid(
                "holder_name",
                "the name must be one line of text, without control characters",
            ));
        }
        let name = self.holder_name.split_whitespace().collect::<Vec<_>>().join(" ");
        if name.is_empty() {
            return Err(ApiError::invalid("holder_name", "confirm the name to print on the certificate"));
        }
        let n = name.chars().count();
        if n > MAX_HOLDER_NAME {
            return Err(ApiError::invalid(
                "holder_name",
                format!("the name on a certificate must be at most {MAX_HOLDER_NAME} characters (it has {n})"),
            ));
        }
        Ok(name)
    }
}

/// Issues the certificate of attendance for one of your session entries,
/// in the name you confirm: 201 the first time, then 200 with the same
/// certificate (its name as first issued). Only once the session's
/// attendance is settled (409 before), from the settled result.
#[utoipa::path(security(("bearer" = []), ("cookie" = [])), post, path = "/api/me/record/entries/{id}/certificate", tag = "record", request_body = IssueInput,
    responses((status = 201, body = IssuedCertificate), (status = 200, body = IssuedCertificate),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn issue(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    Path(entry_id): Path<i64>,
    Json(input): Json<IssueInput>,
) -> ApiResult<(StatusCode, Json<IssuedCertificate>)> {
    let holder_name = input.holder_name()?;
    // Up to date first: a replay watched tonight may have made it attended.
    entries::sync(&state.db, user.id).await?;
    let entry = entries::load_one(&state.db, user.id, entry_id).await?;
    let session_id = match (entry.kind, entry.session_id) {
        (Kind::Session, Some(id)) => id,
        _ => {
            return Err(ApiError::conflict(
                "entry",
                "certificates of attendance are for Staffroom sessions: an entry you added yourself has no \
                 attendance for Staffroom to certify",
            ))
        }
    };
    if let Some(id) = &entry.certificate_id {
        return Ok((StatusCode::OK, Json(issued(&state, &load_held(&state.db, user.id, id).await?))));
    }
    // The settled result is the authority, not the entry's copy of it.
    let result = settle::person_result(&state.db, session_id, user.id, chrono::Utc::now().timestamp_millis())
        .await?
        .ok_or(ApiError::NotFound("record entry"))?;
    if !result.settled {
        return Err(ApiError::conflict(
            "entry",
            "this session is still running: a certificate is issued once its attendance is settled, when the live \
             part ends",
        ));
    }
    if result.status != Status::Attended {
        return Err(ApiError::conflict(
            "entry",
            format!(
                "you attended part of this session ({} minutes): a certificate needs attendance that meets the \
                 session's threshold, live or by watching the replay",
                result.minutes_credited()
            ),
        ));
    }
    let key = credential::current_key(&state.db, &state.settings.cert_key_file).await?;
    let id = new_certificate_number();
    let issued_at = db::now();
    let facts = Facts {
        id: &id,
        holder_name: &holder_name,
        session_id,
        session_title: &entry.title,
        session_starts_at: entry.occurred_at.timestamp(),
        presenters: &entry.provider,
        minutes: result.minutes_credited(),
        issued_at,
    };
    let jwt = credential::sign(&key, &state.public_url, &credential::payload(&state.public_url, &facts))?;
    let mut tx = state.db.begin().await?;
    // Two clicks at once: the second insert does nothing and both answer
    // with the first certificate.
    let inserted = sqlx::query(
        "insert into certificates (id, user_id, session_id, holder_name, session_title, session_starts_at,
             presenters, minutes, credential, issued_at)
         values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
         on conflict (user_id, session_id) do nothing",
    )
    .bind(&id)
    .bind(user.id)
    .bind(session_id)
    .bind(facts.holder_name)
    .bind(facts.session_title)
    .bind(facts.session_starts_at)
    .bind(facts.presenters)
    .bind(facts.minutes)
    .bind(&jwt)
    .bind(issued_at)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    tx.commit().await?;
    let row = sqlx::query(&format!("select {COLUMNS} from certificates where user_id = $1 and session_id = $2"))
        .bind(user.id)
        .bind(session_id)
        .fetch_one(&state.db.read)
        .await?;
    let stored = stored_from_row(&row)?;
    let status = if inserted == 1 { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, Json(issued(&state, &stored))))
}

fn attachment(content_type: &'static str, file_name: String, body: String) -> axum::response::Response {
    (
        [
            (header::CONTENT_TYPE, content_type.to_string()),
            (header::CONTENT_DISPOSITION, format!("attachment; filename=\"{file_name}\"")),
            (header::CACHE_CONTROL, "private, no-store".to_string()),
        ],
        body,
    )
        .into_response()
}

/// Your printable certificate (A4 landscape SVG) with the signed credential
/// baked in, so the file itself can be verified.
#[utoipa::path(security(("bearer" = []), ("cookie" = [])), get, path = "/api/me/certificates/{id}/certificate.svg", tag = "record",
    responses((status = 200, content_type = "image/svg+xml", body = String), (status = 404, body = ErrorBody)))]
async fn svg(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    Path(id): Path<String>,
) -> ApiResult<axum::response::Response> {
    let c = load_held(&state.db, user.id, &id).await?;
    let verification_url = credential::verification_url(&state.public_url, &c.id);
    let document = certificate_svg::render(&certificate_svg::Page {
        id: &c.id,
        holder_name: &c.holder_name,
        session_title: &c.session_title,
        session_starts_at: c.session_starts_at,
        presenters: &c.presenters,
        minutes: c.minutes,
        issued_at: c.issued_at,
        verification_url: &verification_url,
        credential: &c.credential,
        zone: user.zone(state.settings.time_zone),
    });
    Ok(attachment("image/svg+xml", format!("staffroom-certificate-{}.svg", c.id), document))
}

/// Your credential on its own: the compact JWS (VC-JWT) that wallets and
/// Open Badges verifiers read (OB 3.0 asks for text/plain and `.jwt`).
#[utoipa::path(security(("bearer" = []), ("cookie" = [])), get, path = "/api/me/certificates/{id}/credential.jwt", tag = "record",
    responses((status = 200, content_type = "text/plain", body = String), (status = 404, body = ErrorBody)))]
async fn jwt(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    Path(id): Path<String>,
) -> ApiResult<axum::response::Response> {
    let c = load_held(&state.db, user.id, &id).await?;
    Ok(attachment("text/plain; charset=utf-8", format!("staffroom-certificate-{}.jwt", c.id), c.credential))
}

/// Confirms a certificate by its number, for anyone: only what the
/// certificate prints.
#[utoipa::path(get, path = "/api/certificates/{id}", tag = "record",
    responses((status = 200, body = PublicCertificate), (status = 404, body = ErrorBody)))]
async fn public(State(state): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<PublicCertificate>> {
    let c = load(&state.db, &id).await?.ok_or(ApiError::NotFound("certificate"))?;
    Ok(Json((&c).into()))
}

/// An issuer public key as a JWK: what a credential's `kid` points at, so
/// anyone can check a signature without trusting the key in the token.
#[utoipa::path(get, path = "/api/certificates/keys/{kid}", tag = "record",
    responses((status = 200, body = Object), (status = 404, body = ErrorBody)))]
async fn key(State(state): State<AppState>, Path(kid): Path<String>) -> ApiResult<Json<serde_json::Value>> {
    credential::public_jwk(&state.db, &kid).await?.map(Json).ok_or(ApiError::NotFound("key"))
}

/// A credential to check: the `.jwt` file's text, or the whole certificate SVG.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VerifyInput {
    pub credential: String,
}

#[derive(Serialize, ToSchema)]
pub struct Verified {
    pub valid: bool,
    /// The certificate number.
    pub id: String,
    pub certificate: PublicCertificate,
}

/// Checks a certificate file for anyone: the signature against the issuer
/// key it names (as stored here), and that it is, unchanged, a certificate
/// issued here. 422 says why a credential is not valid.
#[utoipa::path(post, path = "/api/certificates/verify", tag = "record", request_body = VerifyInput,
    responses((status = 200, body = Verified), (status = 422, body = ErrorBody)))]
async fn verify(State(state): State<AppState>, Json(input): Json<VerifyInput>) -> ApiResult<Json<Verified>> {
    let invalid = |why: String| ApiError::invalid("credential", why);
    let jwt = credential::extract(&input.credential).ok_or_else(|| {
        invalid("no credential found: give the text of the .jwt file, or the whole certificate SVG".into())
    })?;
    let (id, payload) = credential::verify_signature(&state.db, jwt).await?.map_err(invalid)?;
    let c = load(&state.db, &id)
        .await?
        .ok_or_else(|| invalid(format!("no certificate number {id} was issued here, though the signature is ours")))?;
    // The signature is ours; the credential must also be the one stored
    // under its number, saying what the row says.
    let stored = credential::unverified_payload(&c.credential)
        .ok_or_else(|| anyhow::anyhow!("stored credential {} does not decode", c.id))?;
    let subject = &payload["credentialSubject"];
    let says_row = subject["identifier"][0]["identityHash"] == c.holder_name.as_str()
        && subject["achievement"]["name"] == c.session_title.as_str()
        && payload["nbf"] == c.issued_at;
    if payload != stored || !says_row {
        return Err(invalid(format!("this credential is not the one issued as certificate {id}")));
    }
    Ok(Json(Verified { valid: true, id: c.id.clone(), certificate: (&c).into() }))
}

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(issue))
        .routes(routes!(svg))
        .routes(routes!(jwt))
        .routes(routes!(public))
        .routes(routes!(key))
        .routes(routes!(verify))
}
