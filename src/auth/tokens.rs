//! Signed tokens (HS256 JWTs). Each carries a purpose as its audience, so a
//! password-reset token can never be used as a session, and so on.

use std::path::Path;

use anyhow::Context;
use jsonwebtoken::{decode, encode, DecodingKey, EncodingKey, Header, Validation};
use rand::RngCore;
use serde::{Deserialize, Serialize};

/// What a token may be used for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Purpose {
    /// A signed-in browser or API client.
    Session,
    /// The link in the verification email.
    Verify,
    /// The link in the password-reset email.
    Reset,
    /// The opt-out link at the foot of an invitation.
    OptOut,
}

impl Purpose {
    fn audience(self) -> &'static str {
        match self {
            Purpose::Session => "session",
            Purpose::Verify => "verify",
            Purpose::Reset => "reset",
            Purpose::OptOut => "opt-out",
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Claims {
    /// A user id, or an email address for opt-out links.
    pub sub: String,
    pub aud: String,
    pub exp: i64,
    pub iat: i64,
    /// A fingerprint that voids the token when it changes (the password hash for
    /// resets and sessions, the address for verification).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fp: Option<String>,
}

pub struct Keys {
    encoding: EncodingKey,
    decoding: DecodingKey,
}

impl Keys {
    pub fn from_secret(secret: &[u8]) -> Keys {
        Keys { encoding: EncodingKey::from_secret(secret), decoding: DecodingKey::from_secret(secret) }
    }

    /// Uses the configured secret, or the one persisted in `data_dir/jwt-secret`,
    /// creating it on first start. The secret is never logged.
    pub fn load_or_create(configured: Option<&str>, data_dir: &Path) -> anyhow::Result<Keys> {
        if let Some(secret) = configured {
            return Ok(Keys::from_secret(secret.as_bytes()));
        }
        let path = data_dir.join("jwt-secret");
        if let Ok(secret) = std::fs::read_to_string(&path) {
            if secret.trim().len() >= 32 {
                return Ok(Keys::from_secret(secret.trim().as_bytes()));
            }
        }
        std::fs::create_dir_all(data_dir).with_context(|| format!("failed to create {}", data_dir.display()))?;
        let mut bytes = [0u8; 32];
        rand::thread_rng().fill_bytes(&mut bytes);
        let secret: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        write_private(&path, &secret).with_context(|| format!("failed to write {}", path.display()))?;
        tracing::info!(path = %path.display(), "generated a new token signing secret");
        Ok(Keys::from_secret(secret.as_bytes()))
    }

    pub fn sign(&self, purpose: Purpose, sub: &str, ttl: chrono::Duration, fp: Option<String>) -> String {
        let now = chrono::Utc::now().timestamp();
        let claims = Claims {
            sub: sub.to_string(),
            aud: purpose.audience().to_string(),
            exp: now + ttl.num_seconds(),
            iat: now,
            fp,
        };
        encode(&Header::default(), &claims, &self.encoding).expect("HS256 signing cannot fail")
    }

    /// Checks signature, expiry and purpose.
    pub fn verify(&self, token: &str, purpose: Purpose) -> Option<Claims> {
        let mut validation = Validation::default();
        validation.set_audience(&[purpose.audience()]);
        validation.leeway = 0;
        decode::<Claims>(token, &self.decoding, &validation).ok().map(|d| d.claims)
    }
}

fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)?.write_all(contents.as_bytes())
}

/// A short fingerprint of a secret-bearing value (e.g. the password hash), so a
/// token can be voided by changing it without putting the value in the token.
pub fn fingerprint(value: &str) -> String {
    // FNV-1a is enough: the token is signed, this only has to change with the value.
    let mut h: u64 = 0xcbf29ce484222325;
    for b in value.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    format!("{h:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_only_works_for_its_purpose() {
        let keys = Keys::from_secret(b"0123456789abcdef0123456789abcdef");
        let t = keys.sign(Purpose::Reset, "7", chrono::Duration::hours(1), None);
        assert_eq!(keys.verify(&t, Purpose::Reset).unwrap().sub, "7");
        assert!(keys.verify(&t, Purpose::Session).is_none());
    }

    #[test]
    fn an_expired_token_is_refused() {
        let keys = Keys::from_secret(b"0123456789abcdef0123456789abcdef");
        let t = keys.sign(Purpose::Session, "7", chrono::Duration::seconds(-5), None);
        assert!(keys.verify(&t, Purpose::Session).is_none());
    }
}
