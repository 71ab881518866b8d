//! Password hashing with Argon2id, off the async runtime.

use argon2::{
    password_hash::{rand_core::OsRng, PasswordHash, PasswordHasher, PasswordVerifier, SaltString},
    Argon2,
};

use crate::http::error::{ApiError, ApiResult};

pub const MIN_LEN: usize = 8;
pub const MAX_LEN: usize = 256;

/// Checks the length rules; says which field is wrong.
pub fn check_strength(field: &str, password: &str) -> ApiResult<()> {
    let n = password.chars().count();
    if n < MIN_LEN {
        return Err(ApiError::invalid(field, format!("password must be at least {MIN_LEN} characters")));
    }
    if n > MAX_LEN {
        return Err(ApiError::invalid(field, format!("password must be at most {MAX_LEN} characters")));
    }
    Ok(())
}

pub async fn hash(password: String) -> anyhow::Result<String> {
    tokio::task::spawn_blocking(move || {
        let salt = SaltString::generate(&mut OsRng);
        Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| anyhow::anyhow!("failed to hash a password: {e}"))
    })
    .await?
}

/// Verifies `password` against `hash`. With no hash (unknown account) it still
/// spends the same time, so response timing does not reveal which accounts exist.
pub async fn verify(password: String, hash: Option<String>) -> anyhow::Result<bool> {
    tokio::task::spawn_blocking(move || {
        let stand_in;
        let encoded = match &hash {
            Some(h) => h.as_str(),
            None => {
                stand_in = Argon2::default()
                    .hash_password(b"no such account", &SaltString::generate(&mut OsRng))
                    .map(|h| h.to_string())
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
                stand_in.as_str()
            }
        };
        let parsed = PasswordHash::new(encoded).map_err(|e| anyhow::anyhow!("stored hash is unreadable: {e}"))?;
        Ok(hash.is_some() && Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok())
    })
    .await?
}
