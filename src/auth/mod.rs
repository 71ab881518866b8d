//! Accounts: sign-up, email verification, sign-in and out, password reset,
//! and the profile. Roles: everyone is a participant; organisers manage the
//! programme; presenters are assigned per session (see `programme`).

pub mod password;
pub mod throttle;
pub mod tokens;

use std::net::SocketAddr;

use axum::{
    extract::{ConnectInfo, State},
    http::StatusCode,
    response::IntoResponse,
};
use axum_extra::extract::cookie::{Cookie, CookieJar, SameSite};
use chrono::Duration;
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};
use sqlx::Row;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    db::{self, Db},
    http::{
        error::{ApiError, ApiResult},
        extract::{AuthUser, Json, MaybeUser, SESSION_COOKIE},
    },
    mail::{self, address::EmailAddress, templates},
    AppState,
};
use throttle::MailAction;
use tokens::{fingerprint, Purpose};

const SESSION_TTL_DAYS: i64 = 14;

/// A professional stage, used to suggest sessions and in the record.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    Trainee,
    /// Newly qualified / early-career teacher.
    #[serde(alias = "nqt")]
    Ect,
    Teacher,
    MiddleLeader,
    SeniorLeader,
    Other,
}

impl Stage {
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Trainee => "trainee",
            Stage::Ect => "ect",
            Stage::Teacher => "teacher",
            Stage::MiddleLeader => "middle_leader",
            Stage::SeniorLeader => "senior_leader",
            Stage::Other => "other",
        }
    }
    fn parse(s: &str) -> Stage {
        serde_json::from_value(serde_json::Value::String(s.into())).unwrap_or(Stage::Other)
    }
}

/// A signed-in person, as loaded for each request.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct User {
    pub id: i64,
    pub email: String,
    pub name: String,
    pub school: String,
    pub stage: Stage,
    /// IANA zone; null means the programme's zone.
    pub time_zone: Option<String>,
    pub is_organiser: bool,
    pub email_verified: bool,
    #[serde(skip)]
    pub session_fingerprint: String,
    /// Session tokens issued in an older generation are refused (see
    /// `tokens::Claims::gen`): sign-out, a password reset and removing the
    /// account raise it.
    #[serde(skip)]
    pub token_generation: i64,
}

impl User {
    pub fn zone(&self, default: Tz) -> Tz {
        self.time_zone.as_deref().and_then(|z| z.parse().ok()).unwrap_or(default)
    }
    /// Registering, joining a room and adding to the record need a confirmed
    /// address: an account made with someone else's address (or a made-up
    /// one) can then neither take places nor fill the disk.
    pub fn require_verified(&self) -> ApiResult<()> {
        if self.email_verified {
            Ok(())
        } else {
            Err(ApiError::forbidden(
                "verify your email address first: follow the link in the email we sent you (you can ask for it again)",
            ))
        }
    }
    pub fn require_organiser(&self) -> ApiResult<()> {
        if self.is_organiser {
            Ok(())
        } else {
            Err(ApiError::forbidden("only organisers can do this"))
        }
    }
}

const USER_COLUMNS: &str =
    "id, email, name, school, stage, time_zone, is_organiser, email_verified_at, password_hash, token_generation";

fn user_from_row(row: &sqlx::any::AnyRow) -> Result<User, sqlx::Error> {
    let hash: String = row.try_get("password_hash")?;
    Ok(User {
        id: row.try_get("id")?,
        email: row.try_get("email")?,
        name: row.try_get("name")?,
        school: row.try_get("school")?,
        stage: Stage::parse(&row.try_get::<String, _>("stage")?),
        time_zone: row.try_get("time_zone")?,
        is_organiser: row.try_get::<i64, _>("is_organiser")? != 0,
        email_verified: row.try_get::<Option<i64>, _>("email_verified_at")?.is_some(),
        session_fingerprint: fingerprint(&hash),
        token_generation: row.try_get("token_generation")?,
    })
}

pub async fn load_user(db: &Db, id: i64) -> Result<Option<User>, sqlx::Error> {
    let row = sqlx::query(&format!("select {USER_COLUMNS} from users where id = $1"))
        .bind(id)
        .fetch_optional(&db.read)
        .await?;
    row.as_ref().map(user_from_row).transpose()
}

pub async fn find_user_by_email(db: &Db, email: &str) -> Result<Option<User>, sqlx::Error> {
    let row = sqlx::query(&format!("select {USER_COLUMNS} from users where email = $1"))
        .bind(email.to_lowercase())
        .fetch_optional(&db.read)
        .await?;
    row.as_ref().map(user_from_row).transpose()
}

/// Creates an account inside `tx` and queues its verification email.
/// Used by sign-up and by the organiser command.
pub async fn insert_user(
    state: &AppState,
    tx: &mut db::Tx,
    new: &NewAccount,
    password_hash: &str,
    is_organiser: bool,
) -> ApiResult<i64> {
    let now = db::now();
    let inserted = sqlx::query(
        "insert into users (email, name, school, stage, time_zone, password_hash, is_organiser, created_at, updated_at)
         values ($1, $2, $3, $4, $5, $6, $7, $8, $8) returning id",
    )
    .bind(new.email.as_str())
    .bind(&new.name)
    .bind(&new.school)
    .bind(new.stage.as_str())
    .bind(new.time_zone.as_deref())
    .bind(password_hash)
    .bind(is_organiser as i64)
    .bind(now)
    .fetch_one(&mut **tx)
    .await;
    let id: i64 = match inserted {
        Ok(row) => row.try_get("id")?,
        Err(e) if db::is_unique_violation(&e) => {
            return Err(ApiError::conflict("email", "an account with this email already exists; sign in instead"))
        }
        Err(e) => return Err(e.into()),
    };
    queue_verification(state, tx, id, new.email.as_str(), &new.name).await?;
    Ok(id)
}

async fn queue_verification(state: &AppState, tx: &mut db::Tx, id: i64, email: &str, name: &str) -> ApiResult<()> {
    let token = state.keys.sign(Purpose::Verify, &id.to_string(), Duration::days(7), Some(fingerprint(email)));
    let link = format!("{}/verify.html?token={token}", state.public_url);
    mail::enqueue(tx, &templates::verify_email(email, name, &link)).await?;
    Ok(())
}

/// A validated sign-up.
pub struct NewAccount {
    pub email: EmailAddress,
    pub name: String,
    pub school: String,
    pub stage: Stage,
    pub time_zone: Option<String>,
}

#[derive(Deserialize, ToSchema)]
pub struct SignUp {
    pub name: String,
    pub email: String,
    pub password: String,
    #[serde(default)]
    pub school: String,
    pub stage: Stage,
    /// IANA time zone, e.g. Europe/London; defaults to the programme's.
    #[serde(default)]
    pub time_zone: Option<String>,
}

pub fn parse_name(field: &str, name: &str) -> ApiResult<String> {
    let name = name.trim();
    if name.is_empty() {
        return Err(ApiError::invalid(field, "name is required"));
    }
    if name.chars().count() > 120 {
        return Err(ApiError::invalid(field, "name must be at most 120 characters"));
    }
    Ok(name.to_string())
}

fn parse_time_zone(zone: Option<&str>) -> ApiResult<Option<String>> {
    match zone.map(str::trim).filter(|z| !z.is_empty()) {
        None => Ok(None),
        Some(z) => z.parse::<Tz>().map(|tz| Some(tz.name().to_string())).map_err(|_| {
            ApiError::invalid("time_zone", format!("unknown time zone {z:?}; use a name like Europe/London"))
        }),
    }
}

/// The school or organisation: free text, bounded like every profile field
/// (it is printed in organisers' reports and exports).
fn parse_school(school: &str) -> ApiResult<String> {
    let school = school.trim();
    if school.chars().count() > 200 {
        return Err(ApiError::invalid("school", "school must be at most 200 characters"));
    }
    Ok(school.to_string())
}

impl SignUp {
    fn parse(&self) -> ApiResult<NewAccount> {
        let school = parse_school(&self.school)?;
        Ok(NewAccount {
            email: EmailAddress::parse("email", &self.email)?,
            name: parse_name("name", &self.name)?,
            school,
            stage: self.stage,
            time_zone: parse_time_zone(self.time_zone.as_deref())?,
        })
    }
}

/// What sign-up and sign-in return: the person and a bearer token for the API.
#[derive(Serialize, ToSchema)]
pub struct SignedIn {
    pub user: User,
    pub token: String,
}

fn session_for(state: &AppState, jar: CookieJar, user: User) -> (CookieJar, Json<SignedIn>) {
    let token = state.keys.sign_session(
        user.id,
        user.session_fingerprint.clone(),
        user.token_generation,
        Duration::days(SESSION_TTL_DAYS),
    );
    let cookie = Cookie::build((SESSION_COOKIE, token.clone()))
        .path("/")
        .http_only(true)
        .secure(state.public_url.starts_with("https://"))
        .same_site(SameSite::Lax)
        .max_age(time_days(SESSION_TTL_DAYS))
        .build();
    (jar.add(cookie), Json(SignedIn { user, token }))
}

fn time_days(days: i64) -> time::Duration {
    time::Duration::days(days)
}

/// Refuses a request that would mail `who` once too often, from this
/// address or this client (see [`throttle::MailThrottle`]).
fn throttle(state: &AppState, action: MailAction, who: &str, peer: SocketAddr) -> ApiResult<()> {
    state.mail_throttle.hit(action, who, peer.ip()).map_err(|wait| {
        tracing::warn!(?action, ip = %peer.ip(), "throttled");
        let what = match action {
            MailAction::SignUp => "too many sign-ups for this address or from this network",
            MailAction::ResendVerification => "the verification email has been sent several times already",
            MailAction::PasswordReset => "too many password-reset emails for this address or from this network",
        };
        ApiError::throttled(what, wait)
    })
}

/// Create an account; a verification link is emailed. Sign-ups are limited
/// per address and per client IP (429 with Retry-After).
#[utoipa::path(post, path = "/api/auth/signup", tag = "accounts", request_body = SignUp,
    responses((status = 201, body = SignedIn), (status = 409, body = crate::http::error::ErrorBody),
        (status = 422, body = crate::http::error::ErrorBody), (status = 429, body = crate::http::error::ErrorBody)))]
async fn signup(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    jar: CookieJar,
    Json(body): Json<SignUp>,
) -> ApiResult<impl IntoResponse> {
    let new = body.parse()?;
    password::check_strength("password", &body.password)?;
    throttle(&state, MailAction::SignUp, new.email.as_str(), peer)?;
    let hash = password::hash(body.password).await?;
    let mut tx = state.db.begin().await?;
    let id = insert_user(&state, &mut tx, &new, &hash, false).await?;
    tx.commit().await?;
    state.mail_wake.notify_one();
    let user = load_user(&state.db, id).await?.ok_or(ApiError::NotFound("account"))?;
    tracing::info!(user = id, "account created");
    let (jar, body) = session_for(&state, jar, user);
    Ok((StatusCode::CREATED, jar, body))
}

#[derive(Deserialize, ToSchema)]
pub struct SignIn {
    pub email: String,
    pub password: String,
}

/// Sign in. Unknown email and wrong password get the same answer; repeated
/// failures are slowed per account and per address.
#[utoipa::path(post, path = "/api/auth/signin", tag = "accounts", request_body = SignIn,
    responses((status = 200, body = SignedIn), (status = 401, body = crate::http::error::ErrorBody), (status = 429, body = crate::http::error::ErrorBody)))]
async fn signin(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    jar: CookieJar,
    Json(body): Json<SignIn>,
) -> ApiResult<impl IntoResponse> {
    let email = body.email.trim().to_lowercase();
    if let Some(wait) = state.throttle.wait(&email, peer.ip()) {
        return Err(ApiError::throttled("too many failed sign-ins", wait));
    }
    let found = sqlx::query("select id, password_hash from users where email = $1")
        .bind(&email)
        .fetch_optional(&state.db.read)
        .await?;
    let (id, hash) = match found {
        Some(row) => (Some(row.try_get::<i64, _>("id")?), Some(row.try_get::<String, _>("password_hash")?)),
        None => (None, None),
    };
    if !password::verify(body.password, hash).await? {
        state.throttle.failed(&email, peer.ip());
        return Err(ApiError::BadCredentials);
    }
    state.throttle.succeeded(&email);
    let id = id.ok_or(ApiError::BadCredentials)?;
    let user = load_user(&state.db, id).await?.ok_or(ApiError::BadCredentials)?;
    Ok(session_for(&state, jar, user))
}

/// Sign out: clears the session cookie and ends every session token of the
/// account on the server (raising its token generation), so a bearer token
/// or cookie kept anywhere answers 401 from then on. The generation is per
/// account rather than per token: signing out on one device signs out on
/// all of them, which is also what someone who fears a copied token wants.
/// A token that no longer works only has its cookie cleared; by cookie, the
/// CSRF header is needed as for any change (a cross-site form must not end
/// your sessions).
#[utoipa::path(security((), ("bearer" = []), ("cookie" = [])), post, path = "/api/auth/signout", tag = "accounts",
    responses((status = 204), (status = 403, body = crate::http::error::ErrorBody)))]
async fn signout(
    State(state): State<AppState>,
    signed_in: Result<MaybeUser, ApiError>,
    jar: CookieJar,
) -> ApiResult<impl IntoResponse> {
    match signed_in {
        Ok(MaybeUser(Some(user))) => {
            end_sessions(&state.db, user.id).await?;
            tracing::info!(user = user.id, "signed out: every session token of the account ended");
        }
        Ok(MaybeUser(None)) | Err(ApiError::Unauthorized) => {}
        Err(e) => return Err(e),
    }
    Ok((StatusCode::NO_CONTENT, jar.remove(Cookie::build(SESSION_COOKIE).path("/"))))
}

/// Voids every session token `user_id` holds (see [`User::token_generation`]).
async fn end_sessions(db: &Db, user_id: i64) -> Result<(), sqlx::Error> {
    let mut tx = db.begin().await?;
    sqlx::query("update users set token_generation = token_generation + 1, updated_at = $1 where id = $2")
        .bind(db::now())
        .bind(user_id)
        .execute(&mut *tx)
        .await?;
    tx.commit().await
}

#[derive(Deserialize, ToSchema)]
pub struct TokenBody {
    pub token: String,
}

/// Confirm an email address with the token from the verification link.
#[utoipa::path(post, path = "/api/auth/verify", tag = "accounts", request_body = TokenBody,
    responses((status = 200, body = User), (status = 422, body = crate::http::error::ErrorBody)))]
async fn verify(State(state): State<AppState>, Json(body): Json<TokenBody>) -> ApiResult<Json<User>> {
    let bad = || ApiError::invalid("token", "this verification link is invalid or has expired; ask for a new one");
    let claims = state.keys.verify(body.token.trim(), Purpose::Verify).ok_or_else(bad)?;
    let id: i64 = claims.sub.parse().map_err(|_| bad())?;
    let user = load_user(&state.db, id).await?.ok_or_else(bad)?;
    if claims.fp.as_deref() != Some(fingerprint(&user.email).as_str()) {
        return Err(bad());
    }
    let mut tx = state.db.begin().await?;
    sqlx::query("update users set email_verified_at = coalesce(email_verified_at, $1), updated_at = $1 where id = $2")
        .bind(db::now())
        .bind(id)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(Json(load_user(&state.db, id).await?.ok_or_else(bad)?))
}

/// Send the verification email again: a few times an hour per account and
/// per client IP (429 with Retry-After).
#[utoipa::path(security(("bearer" = []), ("cookie" = [])), post, path = "/api/auth/verify/resend", tag = "accounts",
    responses((status = 202), (status = 409, body = crate::http::error::ErrorBody), (status = 429, body = crate::http::error::ErrorBody)))]
async fn resend_verification(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    AuthUser(user): AuthUser,
) -> ApiResult<StatusCode> {
    if user.email_verified {
        return Err(ApiError::conflict("email", "this address is already verified"));
    }
    throttle(&state, MailAction::ResendVerification, &user.email, peer)?;
    let mut tx = state.db.begin().await?;
    queue_verification(&state, &mut tx, user.id, &user.email, &user.name).await?;
    tx.commit().await?;
    state.mail_wake.notify_one();
    Ok(StatusCode::ACCEPTED)
}

#[derive(Deserialize, ToSchema)]
pub struct ResetRequest {
    pub email: String,
}

/// Ask for a password-reset link. Always 202, whether or not the account
/// exists; limited per address and per client IP alike (429 with
/// Retry-After), so the limit says nothing about which accounts exist.
#[utoipa::path(post, path = "/api/auth/password-reset", tag = "accounts", request_body = ResetRequest,
    responses((status = 202), (status = 422, body = crate::http::error::ErrorBody), (status = 429, body = crate::http::error::ErrorBody)))]
async fn request_reset(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Json(body): Json<ResetRequest>,
) -> ApiResult<StatusCode> {
    let email = EmailAddress::parse("email", &body.email)?;
    throttle(&state, MailAction::PasswordReset, email.as_str(), peer)?;
    if let Some(user) = find_user_by_email(&state.db, email.as_str()).await? {
        let hash: String = sqlx::query_scalar("select password_hash from users where id = $1")
            .bind(user.id)
            .fetch_one(&state.db.read)
            .await?;
        let token = state.keys.sign(Purpose::Reset, &user.id.to_string(), Duration::hours(2), Some(fingerprint(&hash)));
        let link = format!("{}/reset.html?token={token}", state.public_url);
        let mut tx = state.db.begin().await?;
        mail::enqueue(&mut tx, &templates::reset_password(&user.email, &user.name, &link)).await?;
        tx.commit().await?;
        state.mail_wake.notify_one();
    }
    Ok(StatusCode::ACCEPTED)
}

#[derive(Deserialize, ToSchema)]
pub struct ResetConfirm {
    pub token: String,
    pub password: String,
}

/// Set a new password with the token from the reset link. The link works once:
/// the new password changes the fingerprint it carries. Signs in.
#[utoipa::path(post, path = "/api/auth/password-reset/confirm", tag = "accounts", request_body = ResetConfirm,
    responses((status = 200, body = SignedIn), (status = 422, body = crate::http::error::ErrorBody)))]
async fn confirm_reset(
    State(state): State<AppState>,
    jar: CookieJar,
    Json(body): Json<ResetConfirm>,
) -> ApiResult<impl IntoResponse> {
    let bad = || ApiError::invalid("token", "this reset link is invalid, used or expired; ask for a new one");
    password::check_strength("password", &body.password)?;
    let claims = state.keys.verify(body.token.trim(), Purpose::Reset).ok_or_else(bad)?;
    let id: i64 = claims.sub.parse().map_err(|_| bad())?;
    let current: Option<String> = sqlx::query_scalar("select password_hash from users where id = $1")
        .bind(id)
        .fetch_optional(&state.db.read)
        .await?;
    let current = current.ok_or_else(bad)?;
    if claims.fp.as_deref() != Some(fingerprint(&current).as_str()) {
        return Err(bad());
    }
    let hash = password::hash(body.password).await?;
    let mut tx = state.db.begin().await?;
    // Following the emailed link proves the address too.
    sqlx::query(
        "update users set password_hash = $1, email_verified_at = coalesce(email_verified_at, $2),
             token_generation = token_generation + 1, updated_at = $2
         where id = $3 and password_hash = $4",
    )
    .bind(&hash)
    .bind(db::now())
    .bind(id)
    .bind(&current)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    let user = load_user(&state.db, id).await?.ok_or_else(bad)?;
    if user.session_fingerprint != fingerprint(&hash) {
        return Err(bad());
    }
    Ok(session_for(&state, jar, user))
}

/// The signed-in person.
#[utoipa::path(security(("bearer" = []), ("cookie" = [])), get, path = "/api/me", tag = "accounts", responses((status = 200, body = User), (status = 401, body = crate::http::error::ErrorBody)))]
async fn me(AuthUser(user): AuthUser) -> Json<User> {
    Json(user)
}

#[derive(Deserialize, ToSchema)]
pub struct ProfileUpdate {
    pub name: Option<String>,
    pub school: Option<String>,
    pub stage: Option<Stage>,
    /// IANA zone; an empty string returns to the programme's zone.
    pub time_zone: Option<String>,
}

/// Change name, school, stage or time zone.
#[utoipa::path(security(("bearer" = []), ("cookie" = [])), patch, path = "/api/me", tag = "accounts", request_body = ProfileUpdate,
    responses((status = 200, body = User), (status = 422, body = crate::http::error::ErrorBody)))]
async fn update_me(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    Json(body): Json<ProfileUpdate>,
) -> ApiResult<Json<User>> {
    let name = match &body.name {
        Some(n) => parse_name("name", n)?,
        None => user.name.clone(),
    };
    let school = match &body.school {
        Some(s) => parse_school(s)?,
        None => user.school.clone(),
    };
    let stage = body.stage.unwrap_or(user.stage);
    let time_zone = match &body.time_zone {
        Some(z) => parse_time_zone(Some(z))?,
        None => user.time_zone.clone(),
    };
    let mut tx = state.db.begin().await?;
    sqlx::query("update users set name = $1, school = $2, stage = $3, time_zone = $4, updated_at = $5 where id = $6")
        .bind(&name)
        .bind(&school)
        .bind(stage.as_str())
        .bind(time_zone.as_deref())
        .bind(db::now())
        .bind(user.id)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(Json(load_user(&state.db, user.id).await?.ok_or(ApiError::Unauthorized)?))
}

/// Anonymises the account row inside `tx`, as removing an account does:
/// the row stays so organisers' past attendance figures still add up, it no
/// longer names the person, and every token it was issued stops working.
pub async fn anonymise(tx: &mut db::Tx, user_id: i64) -> Result<(), sqlx::Error> {
    sqlx::query(
        "update users set name = 'Removed account', email = $1, school = '', password_hash = '', time_zone = null,
             is_organiser = 0, email_verified_at = null, token_generation = token_generation + 1, updated_at = $2
         where id = $3",
    )
    .bind(format!("removed-{user_id}@removed.invalid"))
    .bind(db::now())
    .bind(user_id)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(signup))
        .routes(routes!(signin))
        .routes(routes!(signout))
        .routes(routes!(verify))
        .routes(routes!(resend_verification))
        .routes(routes!(request_reset))
        .routes(routes!(confirm_reset))
        .routes(routes!(me, update_me))
}
