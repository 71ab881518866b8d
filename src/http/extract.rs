//! Request extractors: JSON bodies whose errors use [`ApiError`], and the
//! signed-in person.

use axum::{
    extract::{FromRequest, FromRequestParts, Request},
    http::{request::Parts, Method},
    response::{IntoResponse, Response},
};
use axum_extra::extract::CookieJar;
use serde::{de::DeserializeOwned, Serialize};

use super::error::ApiError;
use crate::{
    auth::{tokens::Purpose, User},
    AppState,
};

/// The cookie that carries the session token for the pages.
pub const SESSION_COOKIE: &str = "staffroom_session";
/// Cookie-authenticated requests that change state must carry this header.
/// A cross-site form or image cannot set a custom header, so this stops CSRF.
pub const CSRF_HEADER: &str = "x-staffroom-csrf";

/// `axum::Json`, but a bad body becomes a JSON [`ApiError`] naming the field.
pub struct Json<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Json<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let axum::Json(value) = axum::Json::<T>::from_request(req, state).await?;
        Ok(Json(value))
    }
}

impl<T: Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

/// `axum::extract::Path`, with errors as JSON [`ApiError`]s.
#[derive(axum::extract::FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct Path<T>(pub T);

/// `axum::extract::Query`, with errors as JSON [`ApiError`]s.
#[derive(axum::extract::FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct Query<T>(pub T);

/// The signed-in person, from a bearer token or the session cookie.
pub struct AuthUser(pub User);

/// The signed-in person, if any.
pub struct MaybeUser(pub Option<User>);

impl FromRequestParts<AppState> for AuthUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        match MaybeUser::from_request_parts(parts, state).await? {
            MaybeUser(Some(user)) => Ok(AuthUser(user)),
            MaybeUser(None) => Err(ApiError::Unauthorized),
        }
    }
}

impl FromRequestParts<AppState> for MaybeUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let bearer = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::to_string);
        let token = match bearer {
            Some(t) => t,
            None => {
                let jar = CookieJar::from_headers(&parts.headers);
                let Some(cookie) = jar.get(SESSION_COOKIE) else {
                    return Ok(MaybeUser(None));
                };
                let safe = matches!(parts.method, Method::GET | Method::HEAD | Method::OPTIONS);
                if !safe && !parts.headers.contains_key(CSRF_HEADER) {
                    return Err(ApiError::forbidden(format!(
                        "requests signed in by cookie must send the {CSRF_HEADER} header"
                    )));
                }
                cookie.value().to_string()
            }
        };
        let Some(claims) = state.keys.verify(&token, Purpose::Session) else {
            return Err(ApiError::Unauthorized);
        };
        let id: i64 = claims.sub.parse().map_err(|_| ApiError::Unauthorized)?;
        let user = crate::auth::load_user(&state.db, id).await?.ok_or(ApiError::Unauthorized)?;
        // A password change voids every older session, and signing out every
        // token of an older generation: both are read from the row loaded
        // here anyway, so revocation costs no extra query.
        if claims.fp.as_deref() != Some(user.session_fingerprint.as_str()) || claims.gen != user.token_generation {
            return Err(ApiError::Unauthorized);
        }
        Ok(MaybeUser(Some(user)))
    }
}
