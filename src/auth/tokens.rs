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
    /// Entry to one live room (see [`RoomClaims`]).
    Room,
}

impl Purpose {
    fn audience(self) -> &'static str {
        match self {
            Purpose::Session => "session",
            Purpose::Verify => "verify",
            Purpose::Reset => "reset",
            Purpose::OptOut => "opt-out",
            Purpose::Room => "room",
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
    /// Session tokens only: the account's token generation when the token was
    /// issued. Signing out raises the account's generation, so a token still
    /// held somewhere (a copied bearer token, a stolen cookie) stops working
    /// at once. Absent means 0, the generation of an account never signed out.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub gen: i64,
}

fn is_zero(n: &i64) -> bool {
    *n == 0
}

/// What a room token lets its holder do once inside.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Grants {
    /// May send camera, microphone and screen.
    pub publish: bool,
    /// May receive what others publish.
    pub subscribe: bool,
    /// May run the room: stage, mutes, removals, and ending it.
    pub host: bool,
    /// A presenter an organiser made co-host: may take the room live, record
    /// and run breakout groups, but not remove people or end the session.
    /// Absent in older tokens, so it defaults to false.
    #[serde(default)]
    pub cohost: bool,
}

impl Grants {
    /// Whether the holder may take the room live, record and run breakout
    /// groups: hosts and co-hosts.
    pub fn runs_room(&self) -> bool {
        self.host || self.cohost
    }
}

/// A room token: short-lived, for one session, carrying who enters and with
/// which grants, so the signalling socket needs no database lookup to admit.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RoomClaims {
    /// The user id.
    pub sub: String,
    pub aud: String,
    pub exp: i64,
    pub iat: i64,
    /// The session (room) this token opens, and no other.
    pub sid: i64,
    /// The display name shown to others in the room.
    pub name: String,
    pub grants: Grants,
}

/// Why a token was refused: an expired one deserves a different answer
/// ("ask for a new one") from a forged or foreign one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    Expired,
    Invalid,
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
        self.sign_claims(purpose, sub, ttl, fp, 0)
    }

    /// Signs a session token for `user_id` in token generation `generation`
    /// (see [`Claims::gen`]), voided also when `fp` (the password's
    /// fingerprint) changes.
    pub fn sign_session(&self, user_id: i64, fp: String, generation: i64, ttl: chrono::Duration) -> String {
        self.sign_claims(Purpose::Session, &user_id.to_string(), ttl, Some(fp), generation)
    }

    fn sign_claims(&self, purpose: Purpose, sub: &str, ttl: chrono::Duration, fp: Option<String>, gen: i64) -> String {
        let now = chrono::Utc::now().timestamp();
        let claims = Claims {
            sub: sub.to_string(),
            aud: purpose.audience().to_string(),
            exp: now + ttl.num_seconds(),
            iat: now,
            fp,
            gen,
        };
        encode(&Header::default(), &claims, &self.encoding).expect("HS256 signing cannot fail")
    }

    /// Signs a room token for `session_id`, valid for `ttl`.
    pub fn sign_room(
        &self,
        user_id: i64,
        session_id: i64,
        name: &str,
        grants: Grants,
        ttl: chrono::Duration,
    ) -> String {
        let now = chrono::Utc::now().timestamp();
        let claims = RoomClaims {
            sub: user_id.to_string(),
            aud: Purpose::Room.audience().to_string(),
            exp: now + ttl.num_seconds(),
            iat: now,
            sid: session_id,
            name: name.to_string(),
            grants,
        };
        encode(&Header::default(), &claims, &self.encoding).expect("HS256 signing cannot fail")
    }

    /// Checks a room token's signature, expiry and purpose (not its session:
    /// the caller compares `sid` with the room it is asked to open).
    pub fn verify_room(&self, token: &str) -> Result<RoomClaims, Refusal> {
        let mut validation = Validation::default();
        validation.set_audience(&[Purpose::Room.audience()]);
        validation.leeway = 0;
        decode::<RoomClaims>(token, &self.decoding, &validation).map(|d| d.claims).map_err(|e| match e.kind() {
            jsonwebtoken::errors::ErrorKind::ExpiredSignature => Refusal::Expired,
            _ => Refusal::Invalid,
        })
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
    fn a_room_token_carries_its_session_and_grants_and_nothing_else_accepts_it() {
        let keys = Keys::from_secret(b"0123456789abcdef0123456789abcdef");
        let grants = Grants { publish: true, subscribe: true, host: false, cohost: false };
        let t = keys.sign_room(7, 42, "Ann", grants, chrono::Duration::minutes(2));
        let claims = keys.verify_room(&t).unwrap();
        assert_eq!((claims.sub.as_str(), claims.sid, claims.name.as_str(), claims.grants), ("7", 42, "Ann", grants));
        assert!(keys.verify(&t, Purpose::Session).is_none());
        let session = keys.sign(Purpose::Session, "7", chrono::Duration::hours(1), None);
        assert_eq!(keys.verify_room(&session).unwrap_err(), Refusal::Invalid);
        let old = keys.sign_room(7, 42, "Ann", grants, chrono::Duration::seconds(-5));
        assert_eq!(keys.verify_room(&old).unwrap_err(), Refusal::Expired);
    }

    #[test]
    fn a_session_token_carries_its_generation_and_an_older_token_reads_as_generation_zero() {
        let keys = Keys::from_secret(b"0123456789abcdef0123456789abcdef");
        let t = keys.sign_session(7, "fp".into(), 3, chrono::Duration::hours(1));
        let claims = keys.verify(&t, Purpose::Session).unwrap();
        assert_eq!((claims.sub.as_str(), claims.fp.as_deref(), claims.gen), ("7", Some("fp"), 3));
        let old = keys.sign(Purpose::Session, "7", chrono::Duration::hours(1), Some("fp".into()));
        assert_eq!(keys.verify(&old, Purpose::Session).unwrap().gen, 0);
    }

    #[test]
    fn an_expired_token_is_refused() {
        let keys = Keys::from_secret(b"0123456789abcdef0123456789abcdef");
        let t = keys.sign(Purpose::Session, "7", chrono::Duration::seconds(-5), None);
        assert!(keys.verify(&t, Purpose::Session).is_none());
    }
}
