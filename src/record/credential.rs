//! Certificates as Open Badges 3.0 credentials, secured as VC-JWTs (OB 3.0
//! §8.2): the JWT payload *is* the `OpenBadgeCredential`, signed RS256 (the
//! one algorithm every OB 3.0 verifier must support) with the issuer key.
//!
//! The issuer key is an RSA 2048 key pair made on the first certificate. Its
//! private half lives in a file readable by the server's user only
//! (`STAFFROOM_CERT_KEY_FILE`, by default `<data dir>/certificate-key.pem`),
//! never in the database, so a database backup cannot sign certificates; its
//! public half is kept for ever in `issuer_keys`, so every credential ever
//! issued keeps verifying after the key is rotated. Its `kid` is a URL that serves the public JWK, ending in the
//! key's RFC 7638 thumbprint; the verifier here looks the key up by that
//! thumbprint and never trusts the `jwk` a token carries in its header.

use std::{collections::HashSet, path::Path as FsPath};

use anyhow::Context;
use base64::{
    engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD},
    Engine,
};
use chrono::{DateTime, SecondsFormat, Utc};
use jsonwebtoken::{errors::ErrorKind, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rsa::{
    pkcs1::{DecodeRsaPrivateKey, EncodeRsaPrivateKey},
    pkcs8::{DecodePrivateKey, EncodePrivateKey, LineEnding},
    traits::PublicKeyParts,
    RsaPrivateKey,
};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::{db::Db, http::error::ApiResult};

/// The issuer named on every certificate and in every credential.
pub const ISSUER_NAME: &str = "Staffroom";

/// The contexts OB 3.0 requires, in this order.
pub const CONTEXTS: [&str; 2] =
    ["https://www.w3.org/ns/credentials/v2", "https://purl.imsglobal.org/spec/ob/v3p0/context-3.0.3.json"];

/// The key that signs new credentials.
pub struct IssuerKey {
    /// The RFC 7638 thumbprint, base64url: the row's id.
    pub thumbprint: String,
    /// PKCS#1 DER of the private key: never leaves this module's signing,
    /// never stored anywhere but the key file.
    private_der: Vec<u8>,
    /// The public key as a JWK (no `d`, ever).
    pub public_jwk: Value,
}

/// What a certificate states, as stored in its row.
pub struct Facts<'a> {
    pub id: &'a str,
    pub holder_name: &'a str,
    pub session_id: i64,
    pub session_title: &'a str,
    pub session_starts_at: i64,
    pub presenters: &'a str,
    pub minutes: i64,
    pub issued_at: i64,
}

/// The public page that confirms certificate `id`: printed on the
/// certificate and used as the credential's `id` (and so the JWT's `jti`).
pub fn verification_url(public_url: &str, id: &str) -> String {
    format!("{public_url}/certificate.html?id={id}")
}

/// The certificate number in a verification URL (the credential's `id`).
pub fn id_from_url(url: &str) -> Option<&str> {
    url.rsplit_once("?id=").map(|(_, id)| id)
}

/// The URL a `kid` names: it serves the public JWK (OB 3.0 asks that a
/// `kid` can be dereferenced to the key).
pub fn key_url(public_url: &str, thumbprint: &str) -> String {
    format!("{public_url}/api/certificates/keys/{thumbprint}")
}

fn rfc3339(secs: i64) -> String {
    DateTime::<Utc>::from_timestamp(secs, 0).unwrap_or_default().to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// "2 hours 5 minutes", "1 hour", "45 minutes".
pub fn hours_and_minutes(minutes: i64) -> String {
    let (h, m) = (minutes / 60, minutes % 60);
    let plural = |n: i64, one: &str| format!("{n} {one}{}", if n == 1 { "" } else { "s" });
    match (h, m) {
        (0, m) => plural(m, "minute"),
        (h, 0) => plural(h, "hour"),
        (h, m) => format!("{} {}", plural(h, "hour"), plural(m, "minute")),
    }
}

/// "50 minutes", or "2 hours 5 minutes (125 minutes)": the total in minutes
/// too, as CPD logs usually add up minutes.
fn credited(minutes: i64) -> String {
    if minutes < 60 {
        hours_and_minutes(minutes)
    } else {
        format!("{} ({minutes} minutes)", hours_and_minutes(minutes))
    }
}

/// The `OpenBadgeCredential`, with the JWT registered claims OB 3.0 §8.2
/// derives from it (`iss`, `jti`, `nbf`; no `sub`, as the holder is named
/// by an `identifier` rather than an id of their own).
pub fn payload(public_url: &str, f: &Facts) -> Value {
    let issuer_id = public_url.to_string();
    let credential_id = verification_url(public_url, f.id);
    let presented = if f.presenters.is_empty() { String::new() } else { format!(", presented by {}", f.presenters) };
    json!({
        "@context": CONTEXTS,
        "id": credential_id,
        "type": ["VerifiableCredential", "OpenBadgeCredential"],
        "issuer": {
            "id": issuer_id,
            "type": ["Profile"],
            "name": ISSUER_NAME,
            "url": public_url,
            "description": "A free programme of professional-learning webinars for teachers.",
        },
        "validFrom": rfc3339(f.issued_at),
        "name": format!("Certificate of attendance: {}", f.session_title),
        "credentialSubject": {
            "type": ["AchievementSubject"],
            "identifier": [{
                "type": "IdentityObject",
                "identityHash": f.holder_name,
                "identityType": "name",
                "hashed": false,
            }],
            "activityStartDate": rfc3339(f.session_starts_at),
            "narrative": format!(
                "{} attended this session and was credited with {} of professional learning.",
                f.holder_name,
                credited(f.minutes)
            ),
            "achievement": {
                "id": format!("{public_url}/session.html?id={}", f.session_id),
                "type": ["Achievement"],
                "name": f.session_title,
                "description": format!(
                    "Attendance at the {ISSUER_NAME} professional-learning webinar “{}”{presented}, on {}.",
                    f.session_title,
                    DateTime::<Utc>::from_timestamp(f.session_starts_at, 0).unwrap_or_default().format("%-d %B %Y")
                ),
                "criteria": {
                    "narrative": "Present in the live session for at least its attendance threshold (75 % of the \
                        scheduled time unless the organiser set another), or watched that share of its recording \
                        by replay, as recorded by the server.",
                },
            },
        },
        "iss": issuer_id,
        "jti": credential_id,
        "nbf": f.issued_at,
    })
}

/// Signs `payload` as a compact JWS with the JOSE header OB 3.0 §8.2 allows:
/// `alg`, `typ`, `kid` and the public `jwk`, nothing else.
pub fn sign(key: &IssuerKey, public_url: &str, payload: &Value) -> ApiResult<String> {
    let mut header = Header::new(Algorithm::RS256);
    header.typ = Some("JWT".into());
    header.kid = Some(key_url(public_url, &key.thumbprint));
    header.jwk = Some(serde_json::from_value(key.public_jwk.clone()).context("the issuer JWK does not parse")?);
    let jwt = jsonwebtoken::encode(&header, payload, &EncodingKey::from_rsa_der(&key.private_der))
        .context("failed to sign a credential")?;
    Ok(jwt)
}

/// The issuer key from its private half: the thumbprint and the public JWK
/// are derived, so a key moved between the database and a file keeps its id.
fn issuer_key(private: &RsaPrivateKey) -> anyhow::Result<IssuerKey> {
    let der = private.to_pkcs1_der().context("failed to encode the issuer key")?.as_bytes().to_vec();
    let n = URL_SAFE_NO_PAD.encode(private.n().to_bytes_be());
    let e = URL_SAFE_NO_PAD.encode(private.e().to_bytes_be());
    // RFC 7638: the required members, sorted, no whitespace.
    let canonical = format!(r#"{{"e":"{e}","kty":"RSA","n":"{n}"}}"#);
    let thumbprint = URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()));
    let public_jwk = json!({"kty": "RSA", "use": "sig", "alg": "RS256", "kid": thumbprint, "n": n, "e": e});
    Ok(IssuerKey { thumbprint, private_der: der, public_jwk })
}

/// The smallest issuer key accepted from a file (what is generated).
const MIN_KEY_BITS: usize = 2048;

/// Reads the issuer's private key from `path`, if the file exists: PEM,
/// PKCS#8 (`BEGIN PRIVATE KEY`, what `openssl genpkey` writes and what is
/// generated here) or PKCS#1 (`BEGIN RSA PRIVATE KEY`).
fn read_key_file(path: &FsPath) -> anyhow::Result<Option<RsaPrivateKey>> {
    let pem = match std::fs::read_to_string(path) {
        Ok(pem) => pem,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(anyhow::Error::new(e).context(format!("failed to read {}", path.display()))),
    };
    let private = RsaPrivateKey::from_pkcs8_pem(&pem)
        .or_else(|_| RsaPrivateKey::from_pkcs1_pem(&pem))
        .map_err(|_| anyhow::anyhow!("{} is not an RSA private key in PEM (PKCS#8 or PKCS#1)", path.display()))?;
    anyhow::ensure!(
        private.size() * 8 >= MIN_KEY_BITS,
        "the certificate key in {} has {} bits; it must have at least {MIN_KEY_BITS}",
        path.display(),
        private.size() * 8
    );
    Ok(Some(private))
}

/// Writes `private` to `path` as a PKCS#8 PEM readable by the owner only
/// (0600), unless a key file appeared there meanwhile (another server on the
/// same data dir): then that one stands and this one is dropped. The file is
/// complete or absent, never half written: it is written and synced under a
/// temporary name and then linked into place, which fails if the name is taken.
fn write_key_file(path: &FsPath, private: &RsaPrivateKey) -> anyhow::Result<bool> {
    use std::io::Write;
    let pem = private.to_pkcs8_pem(LineEnding::LF).context("failed to encode the issuer key as PEM")?;
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(FsPath::new("."));
    std::fs::create_dir_all(dir).with_context(|| format!("failed to create {}", dir.display()))?;
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("certificate-key.pem");
    let temporary = dir.join(format!(".{name}.{}.tmp", uuid::Uuid::new_v4().simple()));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let written = (|| {
        let mut file = options.open(&temporary)?;
        file.write_all(pem.as_bytes())?;
        file.sync_all()
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&temporary);
        return Err(anyhow::Error::new(e).context(format!("failed to write {}", temporary.display())));
    }
    let linked = std::fs::hard_link(&temporary, path);
    let _ = std::fs::remove_file(&temporary);
    match linked {
        Ok(()) => {
            if let Ok(d) = std::fs::File::open(dir) {
                let _ = d.sync_all();
            }
            Ok(true)
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(anyhow::Error::new(e).context(format!("failed to put the key file at {}", path.display()))),
    }
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> anyhow::Result<T> + Send + 'static) -> anyhow::Result<T> {
    tokio::task::spawn_blocking(f).await.context("a key file thread failed")?
}

/// Makes `key` the one the database names as signing new credentials
/// (`in_use`), storing its public JWK if it is new. Retired keys keep their
/// rows, so what they signed still verifies.
async fn register(db: &Db, key: &IssuerKey) -> ApiResult<()> {
    let in_use: Option<Option<i64>> = sqlx::query_scalar("select in_use from issuer_keys where id = $1")
        .bind(&key.thumbprint)
        .fetch_optional(&db.read)
        .await?;
    if in_use == Some(Some(1)) {
        return Ok(());
    }
    let mut tx = db.begin().await?;
    sqlx::query("update issuer_keys set in_use = null where in_use = 1 and id <> $1")
        .bind(&key.thumbprint)
        .execute(&mut *tx)
        .await?;
    // `private_key` is always empty now: the column stays only because SQLite
    // cannot drop a NOT NULL constraint without rebuilding the table.
    sqlx::query(
        "insert into issuer_keys (id, private_key, public_jwk, created_at, in_use) values ($1, '', $2, $3, 1)
         on conflict (id) do update set in_use = 1",
    )
    .bind(&key.thumbprint)
    .bind(key.public_jwk.to_string())
    .bind(crate::db::now())
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    tracing::info!(kid = %key.thumbprint, "certificate signing key registered as the one in use");
    Ok(())
}

/// One key generation at a time in this process, so two first certificates
/// at once make one key between them.
static GENERATING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The key that signs new credentials: read from `key_file` (0600, outside
/// the database, so a database backup cannot sign certificates), made
/// there on the first certificate. Whatever key the file holds is the one
/// in use: replacing the file rotates the key (docs/certificates.md).
pub async fn current_key(db: &Db, key_file: &FsPath) -> ApiResult<IssuerKey> {
    let path = key_file.to_path_buf();
    let read = || {
        let path = path.clone();
        blocking(move || read_key_file(&path))
    };
    let private = match read().await? {
        Some(private) => private,
        None => {
            let _one_at_a_time = GENERATING.lock().await;
            match read().await? {
                Some(private) => private,
                None => {
                    let target = path.clone();
                    blocking(move || {
                        let private = RsaPrivateKey::new(&mut rand::rngs::OsRng, 2048)
                            .context("failed to generate the issuer key")?;
                        if write_key_file(&target, &private)? {
                            tracing::info!(path = %target.display(), "generated the certificate signing key");
                        }
                        Ok(())
                    })
                    .await?;
                    read().await?.context("the certificate key file was written but cannot be read back")?
                }
            }
        }
    };
    let key = blocking(move || issuer_key(&private)).await?;
    register(db, &key).await?;
    Ok(key)
}

/// At start-up: moves a signing key that an older version kept in the
/// database (base64 PKCS#1 DER in `issuer_keys.private_key`) into
/// `key_file`, once, then empties the column. The file is written and synced
/// before the database forgets the key, so a crash in between loses nothing
/// (the next start finds the file and only empties the column). When the file
/// already exists it is kept and the database's copies are dropped: the file
/// is what signs. Also warns when the file is readable by others.
pub async fn move_key_out_of_database(db: &Db, key_file: &FsPath) -> anyhow::Result<()> {
    let stored: Vec<String> = sqlx::query_scalar(
        "select private_key from issuer_keys where private_key <> '' order by coalesce(in_use, 0) desc, created_at desc",
    )
    .fetch_all(&db.read)
    .await
    .context("failed to read the stored issuer keys")?;
    let path = key_file.to_path_buf();
    if let Some(newest) = stored.first() {
        let der = STANDARD.decode(newest).context("the stored issuer key is not base64")?;
        let target = path.clone();
        let moved = blocking(move || {
            if read_key_file(&target)?.is_some() {
                return Ok(false);
            }
            let private = RsaPrivateKey::from_pkcs1_der(&der).context("the stored issuer key is not PKCS#1 DER")?;
            write_key_file(&target, &private)
        })
        .await?;
        let target = path.clone();
        let private = blocking(move || read_key_file(&target))
            .await?
            .context("the certificate key file cannot be read back after moving the key into it")?;
        let mut tx = db.begin().await?;
        sqlx::query("update issuer_keys set private_key = '' where private_key <> ''").execute(&mut *tx).await?;
        tx.commit().await?;
        if moved {
            tracing::info!(path = %path.display(), "moved the certificate signing key out of the database into its file");
        } else {
            tracing::info!(path = %path.display(), "the certificate key file already exists: the database's copies of older keys are removed");
        }
        let key = blocking(move || issuer_key(&private)).await?;
        register(db, &key).await.map_err(|e| anyhow::anyhow!("failed to register the certificate key: {e:?}"))?;
    }
    #[cfg(unix)]
    if let Ok(meta) = std::fs::metadata(&path) {
        use std::os::unix::fs::PermissionsExt;
        if meta.permissions().mode() & 0o077 != 0 {
            tracing::warn!(path = %path.display(), mode = format!("{:o}", meta.permissions().mode() & 0o777),
                "the certificate signing key is readable by other users: chmod 600 it");
        }
    }
    Ok(())
}

/// The public JWK with this thumbprint, current or retired.
pub async fn public_jwk(db: &Db, thumbprint: &str) -> ApiResult<Option<Value>> {
    let jwk: Option<String> = sqlx::query_scalar("select public_jwk from issuer_keys where id = $1")
        .bind(thumbprint)
        .fetch_optional(&db.read)
        .await?;
    Ok(match jwk {
        Some(j) => Some(serde_json::from_str(&j).context("the stored issuer JWK is not JSON")?),
        None => None,
    })
}

/// The compact JWS in what someone pasted or uploaded: the `.jwt` file's
/// text, or a whole certificate SVG with the credential baked in (OB 3.0
/// baking: the `verify` attribute of `<openbadges:credential>`, or its body).
pub fn extract(text: &str) -> Option<&str> {
    let text = text.trim();
    let Some(start) = text.find("<openbadges:credential") else {
        return (!text.contains('<') && text.split('.').count() == 3).then_some(text);
    };
    let tag = &text[start..];
    let open_end = tag.find('>')?;
    let attributes = &tag[..open_end];
    if let Some(at) = attributes.find("verify=") {
        let quoted = &attributes[at + "verify=".len()..];
        let quote = quoted.chars().next().filter(|q| *q == '"' || *q == '\'')?;
        let value = &quoted[1..];
        return value.find(quote).map(|end| value[..end].trim());
    }
    let body = &tag[open_end + 1..];
    let body = &body[..body.find("</openbadges:credential>")?];
    let body = body.trim().trim_start_matches("<![CDATA[").trim_end_matches("]]>").trim();
    (!body.is_empty()).then_some(body)
}

/// The JSON payload of a compact JWS, without checking anything.
pub fn unverified_payload(jwt: &str) -> Option<Value> {
    let middle = jwt.split('.').nth(1)?;
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(middle).ok()?).ok()
}

/// Why a credential did not verify, in words for the person checking it.
pub type Why = String;

/// Checks the signature of `jwt` with the stored key its `kid` names and
/// the registered claims against the credential; returns the payload and
/// the certificate number it claims. Whether that certificate exists and
/// says the same is for the caller, who holds the row.
pub async fn verify_signature(db: &Db, jwt: &str) -> ApiResult<Result<(String, Value), Why>> {
    let header = match jsonwebtoken::decode_header(jwt) {
        Ok(h) => h,
        Err(_) => return Ok(Err("this is not a signed credential: its header cannot be read".into())),
    };
    if header.alg != Algorithm::RS256 {
        return Ok(Err(format!("the credential is signed with {:?}, but Staffroom signs with RS256", header.alg)));
    }
    let Some(kid) = header.kid else {
        return Ok(Err("the credential does not name the key that signed it (no kid)".into()));
    };
    let thumbprint = kid.rsplit('/').next().unwrap_or_default();
    let Some(jwk) = public_jwk(db, thumbprint).await? else {
        return Ok(
            Err("the credential was signed with a key this server does not hold: it was not issued here".into()),
        );
    };
    let (Some(n), Some(e)) = (jwk["n"].as_str(), jwk["e"].as_str()) else {
        return Err(anyhow::anyhow!("the stored issuer JWK {thumbprint} has no n or e").into());
    };
    let key = DecodingKey::from_rsa_components(n, e).context("the stored issuer JWK is not an RSA key")?;
    let mut validation = Validation::new(Algorithm::RS256);
    validation.validate_exp = false;
    validation.validate_nbf = true;
    validation.validate_aud = false;
    validation.required_spec_claims = HashSet::from(["iss".to_string(), "nbf".to_string()]);
    let payload = match jsonwebtoken::decode::<Value>(jwt, &key, &validation) {
        Ok(data) => data.claims,
        Err(e) => {
            return Ok(Err(match e.kind() {
                ErrorKind::InvalidSignature => {
                    "the signature does not match: the credential has been changed since it was issued".into()
                }
                ErrorKind::ImmatureSignature => "the credential is not valid yet (its nbf is in the future)".into(),
                ErrorKind::MissingRequiredClaim(c) => format!("the credential has no {c} claim"),
                ErrorKind::Base64(_) | ErrorKind::Json(_) | ErrorKind::Utf8(_) | ErrorKind::InvalidToken => {
                    "the credential cannot be read: it is damaged or incomplete".into()
                }
                other => format!("the credential does not verify ({other:?})"),
            }))
        }
    };
    // OB 3.0 §8.2.4: the registered claims must agree with the credential.
    if payload["iss"] != payload["issuer"]["id"] {
        return Ok(Err("the credential's iss does not match its issuer".into()));
    }
    if payload["jti"] != payload["id"] {
        return Ok(Err("the credential's jti does not match its id".into()));
    }
    let valid_from = payload["validFrom"].as_str().and_then(|v| DateTime::parse_from_rfc3339(v).ok());
    if valid_from.map(|v| v.timestamp()) != payload["nbf"].as_i64() {
        return Ok(Err("the credential's nbf does not match its validFrom".into()));
    }
    let Some(id) = payload["id"].as_str().and_then(id_from_url) else {
        return Ok(Err("the credential does not carry a Staffroom certificate number".into()));
    };
    Ok(Ok((id.to_string(), payload)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minutes_read_as_hours_and_minutes() {
        assert_eq!(hours_and_minutes(45), "45 minutes");
        assert_eq!(hours_and_minutes(60), "1 hour");
        assert_eq!(hours_and_minutes(61), "1 hour 1 minute");
        assert_eq!(hours_and_minutes(125), "2 hours 5 minutes");
    }

    #[test]
    fn a_credential_is_found_in_a_jwt_or_a_baked_svg() {
        assert_eq!(extract("  a.b.c\n"), Some("a.b.c"));
        assert_eq!(extract("not a credential"), None);
        let svg = r#"<svg xmlns:openbadges="https://purl.imsglobal.org/ob/v3p0"><openbadges:credential verify="h.p.s"></openbadges:credential><text>x</text></svg>"#;
        assert_eq!(extract(svg), Some("h.p.s"));
        let body = "<svg><openbadges:credential>\n<![CDATA[h.p.s]]>\n</openbadges:credential></svg>";
        assert_eq!(extract(body), Some("h.p.s"));
        assert_eq!(extract("<svg><text>no credential</text></svg>"), None);
    }

    #[test]
    fn the_certificate_number_comes_back_out_of_the_verification_url() {
        let url = verification_url("https://staffroom.example", "00ff");
        assert_eq!(id_from_url(&url), Some("00ff"));
    }
}
