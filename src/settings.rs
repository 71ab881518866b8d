//! Configuration from `STAFFROOM_*` environment variables, with defaults that
//! let `cargo run` work on a fresh machine: SQLite under `./data`, mail to files.

use std::{
    net::{IpAddr, SocketAddr},
    path::PathBuf,
    time::Duration,
};

use anyhow::{bail, Context};
use chrono_tz::Tz;

/// How the outbox worker delivers mail.
#[derive(Clone, Debug)]
pub enum MailTransport {
    /// Write each message as an `.eml` file into this folder (no SMTP configured).
    Files(PathBuf),
    Smtp(SmtpSettings),
}

#[derive(Clone)]
pub struct SmtpSettings {
    pub host: String,
    pub port: u16,
    pub username: Option<String>,
    pub password: Option<String>,
    pub tls: SmtpTls,
}

impl std::fmt::Debug for SmtpSettings {
    // The password never reaches a log line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpSettings")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("tls", &self.tls)
            .finish()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SmtpTls {
    /// Plain SMTP, e.g. a local relay.
    None,
    /// STARTTLS upgrade (port 587).
    StartTls,
    /// Implicit TLS (port 465).
    Tls,
}

/// Where the media engine binds its UDP sockets and what it announces.
///
/// Every participant's media goes through one UDP port, so a firewall opens
/// that one port.
#[derive(Clone, Debug)]
pub struct RtcSettings {
    /// The address the media socket binds: the listen address's IP unless
    /// `STAFFROOM_RTC_BIND_IP` says otherwise (`0.0.0.0` means every
    /// interface, and then `STAFFROOM_RTC_PUBLIC_IP` says which address
    /// browsers reach).
    pub bind_ip: IpAddr,
    /// The UDP port of all media (`STAFFROOM_RTC_PORT`, default 50000; 0
    /// lets the system choose, for tests).
    pub port: u16,
    /// The public address announced in candidates instead of the bound one,
    /// for a server behind a 1:1 NAT (a cloud VM with an elastic IP).
    pub public_ip: Option<IpAddr>,
}

/// `Debug` is written out by hand (below) so that the JWT secret, the SMTP
/// password and the database URL's password never reach a log line.
#[derive(Clone)]
pub struct Settings {
    pub addr: SocketAddr,
    pub public_url: Option<String>,
    pub database_url: String,
    pub data_dir: PathBuf,
    /// `None` means: read or create `<data_dir>/jwt-secret`.
    pub jwt_secret: Option<String>,
    pub mail: MailTransport,
    pub mail_from: String,
    pub mail_per_minute: u32,
    /// How often the outbox is polled even when nothing wakes the worker.
    pub mail_poll: Duration,
    /// Smallest delay before a failed delivery is retried; doubles each attempt.
    pub mail_retry_base: Duration,
    pub mail_max_attempts: i64,
    /// How often due reminders are looked for.
    pub reminder_interval: Duration,
    /// How often an open room writes its heartbeat (what a crash's leaves are stamped with).
    pub room_heartbeat: Duration,
    /// How long after its scheduled end a new session's room may run on
    /// before it closes itself (stored with each session when it is created).
    pub live_grace: Duration,
    /// How long a room may stand empty after the scheduled end before the live part is over.
    pub empty_room_end: Duration,
    /// The programme's time zone, used for people who have not chosen one.
    pub time_zone: Tz,
    pub rtc: RtcSettings,
    /// Where recordings are written (a directory per recording).
    pub recordings_dir: PathBuf,
    /// ffmpeg, for recordings' single-file downloads; `None` (`off`) makes none.
    pub ffmpeg: Option<PathBuf>,
    /// The certificate signing key (PEM, 0600), kept out of the database so a
    /// backup of it cannot sign certificates (docs/certificates.md).
    pub cert_key_file: PathBuf,
    /// How many sign-ups, verification resends and password-reset requests
    /// (each) one client IP may make in an hour; one address gets three.
    pub throttle_ip_per_hour: u32,
    /// How many bytes of evidence files one person may keep (a MiB count in
    /// `STAFFROOM_EVIDENCE_QUOTA_MB`), so nobody can fill the disk.
    pub evidence_quota_bytes: u64,
}

/// The shortest `STAFFROOM_JWT_SECRET` accepted: HS256 is only as strong as
/// its key, and RFC 7518 §3.2 asks for at least the hash's 256 bits.
pub const MIN_JWT_SECRET_BYTES: usize = 32;

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Destructured, so a field added later must be placed here, secret or not.
        let Settings {
            addr,
            public_url,
            database_url,
            data_dir,
            jwt_secret,
            mail,
            mail_from,
            mail_per_minute,
            mail_poll,
            mail_retry_base,
            mail_max_attempts,
            reminder_interval,
            room_heartbeat,
            live_grace,
            empty_room_end,
            time_zone,
            rtc,
            recordings_dir,
            ffmpeg,
            cert_key_file,
            throttle_ip_per_hour,
            evidence_quota_bytes,
        } = self;
        f.debug_struct("Settings")
            .field("addr", addr)
            .field("public_url", public_url)
            .field("database_url", &redact_url(database_url))
            .field("data_dir", data_dir)
            .field("jwt_secret", &jwt_secret.as_ref().map(|_| "***"))
            .field("mail", mail)
            .field("mail_from", mail_from)
            .field("mail_per_minute", mail_per_minute)
            .field("mail_poll", mail_poll)
            .field("mail_retry_base", mail_retry_base)
            .field("mail_max_attempts", mail_max_attempts)
            .field("reminder_interval", reminder_interval)
            .field("room_heartbeat", room_heartbeat)
            .field("live_grace", live_grace)
            .field("empty_room_end", empty_room_end)
            .field("time_zone", time_zone)
            .field("rtc", rtc)
            .field("recordings_dir", recordings_dir)
            .field("ffmpeg", ffmpeg)
            .field("cert_key_file", cert_key_file)
            .field("throttle_ip_per_hour", throttle_ip_per_hour)
            .field("evidence_quota_bytes", evidence_quota_bytes)
            .finish()
    }
}

/// A database URL fit for a log: the password (in the authority or as a
/// `password=` query parameter) replaced by `***`. A URL that does not
/// parse is not printed at all, since where its password sits is unknown.
pub fn redact_url(raw: &str) -> String {
    let Ok(mut url) = url::Url::parse(raw) else {
        return "<unparseable database URL>".into();
    };
    if url.password().is_some() {
        let _ = url.set_password(Some("***"));
    }
    if url.query_pairs().any(|(k, _)| k.eq_ignore_ascii_case("password")) {
        let pairs: Vec<(String, String)> = url
            .query_pairs()
            .map(|(k, v)| {
                let v = if k.eq_ignore_ascii_case("password") { "***".to_string() } else { v.into_owned() };
                (k.into_owned(), v)
            })
            .collect();
        url.query_pairs_mut().clear().extend_pairs(pairs);
    }
    url.to_string()
}

impl Settings {
    /// Reads the settings from the process environment.
    pub fn from_env() -> anyhow::Result<Self> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// Reads the settings from any key lookup (tests pass a map).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> anyhow::Result<Self> {
        let var = |k: &str| get(&format!("STAFFROOM_{k}")).filter(|v| !v.trim().is_empty());
        let data_dir = PathBuf::from(var("DATA_DIR").unwrap_or_else(|| "./data".into()));
        let addr: SocketAddr = var("ADDR")
            .unwrap_or_else(|| "127.0.0.1:8080".into())
            .parse()
            .context("STAFFROOM_ADDR must be host:port, e.g. 127.0.0.1:8080")?;
        let database_url = var("DATABASE_URL")
            .unwrap_or_else(|| format!("sqlite://{}?mode=rwc", data_dir.join("staffroom.db").display()));
        let mail = match var("SMTP_HOST") {
            None => MailTransport::Files(data_dir.join("outbox-files")),
            Some(host) => {
                let tls = match var("SMTP_TLS").as_deref().unwrap_or("starttls") {
                    "none" => SmtpTls::None,
                    "starttls" => SmtpTls::StartTls,
                    "tls" => SmtpTls::Tls,
                    other => {
                        bail!("STAFFROOM_SMTP_TLS must be none, starttls or tls, not {other:?}")
                    }
                };
                let default_port = match tls {
                    SmtpTls::None => 25,
                    SmtpTls::StartTls => 587,
                    SmtpTls::Tls => 465,
                };
                let port = match var("SMTP_PORT") {
                    Some(p) => p.parse().context("STAFFROOM_SMTP_PORT must be a port number")?,
                    None => default_port,
                };
                MailTransport::Smtp(SmtpSettings {
                    host,
                    port,
                    username: var("SMTP_USERNAME"),
                    password: var("SMTP_PASSWORD"),
                    tls,
                })
            }
        };
        let millis = |k: &str, default: u64| -> anyhow::Result<Duration> {
            Ok(Duration::from_millis(match var(k) {
                Some(v) => v.parse().with_context(|| format!("STAFFROOM_{k} must be milliseconds"))?,
                None => default,
            }))
        };
        let time_zone = var("TIME_ZONE")
            .unwrap_or_else(|| "Europe/London".into())
            .parse::<Tz>()
            .map_err(|e| anyhow::anyhow!("STAFFROOM_TIME_ZONE: {e}"))?;
        let port = |k: &str, default: u16| -> anyhow::Result<u16> {
            match var(k) {
                Some(v) => v.parse().with_context(|| format!("STAFFROOM_{k} must be a port number")),
                None => Ok(default),
            }
        };
        let ip = |k: &str| -> anyhow::Result<Option<IpAddr>> {
            var(k).map(|v| v.parse().with_context(|| format!("STAFFROOM_{k} must be an IP address"))).transpose()
        };
        let rtc = RtcSettings {
            bind_ip: ip("RTC_BIND_IP")?.unwrap_or(addr.ip()),
            port: port("RTC_PORT", 50_000)?,
            public_ip: ip("RTC_PUBLIC_IP")?,
        };
        if var("RTC_PORT_MIN").is_some() || var("RTC_PORT_MAX").is_some() {
            bail!("STAFFROOM_RTC_PORT_MIN and _MAX are gone: all media now uses one UDP port, STAFFROOM_RTC_PORT");
        }
        if rtc.bind_ip.is_unspecified() && rtc.public_ip.is_none() {
            bail!("STAFFROOM_RTC_BIND_IP={} needs STAFFROOM_RTC_PUBLIC_IP: the address browsers reach", rtc.bind_ip);
        }
        let jwt_secret = var("JWT_SECRET");
        if let Some(secret) = &jwt_secret {
            if secret.len() < MIN_JWT_SECRET_BYTES {
                bail!(
                    "STAFFROOM_JWT_SECRET must be at least {MIN_JWT_SECRET_BYTES} bytes (it has {}): make one with \
                     `openssl rand -hex 32`, or leave it unset and one is generated into {}",
                    secret.len(),
                    data_dir.join("jwt-secret").display()
                );
            }
        }
        Ok(Settings {
            ffmpeg: match var("FFMPEG").as_deref() {
                Some("off") => None,
                Some(path) => Some(PathBuf::from(path)),
                None => Some(PathBuf::from("ffmpeg")),
            },
            recordings_dir: var("RECORDINGS_DIR").map(PathBuf::from).unwrap_or_else(|| data_dir.join("recordings")),
            cert_key_file: var("CERT_KEY_FILE")
                .map(PathBuf::from)
                .unwrap_or_else(|| data_dir.join("certificate-key.pem")),
            addr,
            public_url: var("PUBLIC_URL").map(|u| u.trim_end_matches('/').to_string()),
            database_url,
            data_dir,
            jwt_secret,
            mail,
            mail_from: var("MAIL_FROM").unwrap_or_else(|| "Staffroom <no-reply@staffroom.localhost>".into()),
            mail_per_minute: match var("MAIL_PER_MINUTE") {
                Some(v) => v.parse().context("STAFFROOM_MAIL_PER_MINUTE must be a number")?,
                None => 600,
            },
            mail_poll: millis("MAIL_POLL_MS", 5_000)?,
            mail_retry_base: millis("MAIL_RETRY_BASE_MS", 30_000)?,
            mail_max_attempts: match var("MAIL_MAX_ATTEMPTS") {
                Some(v) => v.parse().context("STAFFROOM_MAIL_MAX_ATTEMPTS must be a number")?,
                None => 12,
            },
            throttle_ip_per_hour: match var("THROTTLE_IP_PER_HOUR") {
                Some(v) => v.parse().context("STAFFROOM_THROTTLE_IP_PER_HOUR must be a number")?,
                None => 60,
            },
            evidence_quota_bytes: match var("EVIDENCE_QUOTA_MB") {
                Some(v) => v.parse::<u64>().context("STAFFROOM_EVIDENCE_QUOTA_MB must be a number of MiB")? << 20,
                None => 200 << 20,
            },
            reminder_interval: millis("REMINDER_INTERVAL_MS", 60_000)?,
            room_heartbeat: millis("ROOM_HEARTBEAT_MS", 15_000)?,
            live_grace: millis("LIVE_GRACE_MS", 30 * 60_000)?,
            empty_room_end: millis("EMPTY_ROOM_END_MS", 10 * 60_000)?,
            time_zone,
            rtc,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_need_no_configuration() {
        let s = Settings::from_lookup(|_| None).unwrap();
        assert_eq!(s.addr.to_string(), "127.0.0.1:8080");
        assert!(s.database_url.starts_with("sqlite://"));
        assert!(matches!(s.mail, MailTransport::Files(_)));
    }

    #[test]
    fn media_sockets_bind_where_the_server_listens_unless_told_otherwise() {
        let s = Settings::from_lookup(|_| None).unwrap();
        assert_eq!(s.rtc.bind_ip.to_string(), "127.0.0.1");
        assert!(s.rtc.port == 50_000 && s.rtc.public_ip.is_none());
        let s = Settings::from_lookup(|k| match k {
            "STAFFROOM_RTC_PUBLIC_IP" => Some("203.0.113.7".into()),
            "STAFFROOM_RTC_PORT" => Some("40000".into()),
            _ => None,
        })
        .unwrap();
        assert_eq!(s.rtc.port, 40000);
        assert_eq!(s.rtc.public_ip.unwrap().to_string(), "203.0.113.7");
        assert!(Settings::from_lookup(|k| (k == "STAFFROOM_RTC_PORT").then(|| "70000".into())).is_err());
        let old = Settings::from_lookup(|k| (k == "STAFFROOM_RTC_PORT_MIN").then(|| "40000".into()));
        assert!(old.unwrap_err().to_string().contains("STAFFROOM_RTC_PORT"));
        let everywhere = Settings::from_lookup(|k| (k == "STAFFROOM_RTC_BIND_IP").then(|| "0.0.0.0".into()));
        assert!(everywhere.unwrap_err().to_string().contains("STAFFROOM_RTC_PUBLIC_IP"));
    }

    #[test]
    fn debug_never_prints_the_jwt_secret_the_smtp_password_or_the_database_password() {
        let s = Settings::from_lookup(|k| match k {
            "STAFFROOM_JWT_SECRET" => Some("s3cret-s3cret-s3cret-s3cret-s3cret-s3cret".into()),
            "STAFFROOM_SMTP_HOST" => Some("mail.example.org".into()),
            "STAFFROOM_SMTP_PASSWORD" => Some("hunter2".into()),
            "STAFFROOM_DATABASE_URL" => Some("postgres://staffroom:pg-pa55word@db.example.org:5432/staffroom".into()),
            _ => None,
        })
        .unwrap();
        let printed = format!("{s:?}");
        for secret in ["s3cret", "hunter2", "pg-pa55word"] {
            assert!(!printed.contains(secret), "{secret} printed in {printed}");
        }
        // What is not secret is still there to debug with.
        assert!(printed.contains("postgres://staffroom:***@db.example.org:5432/staffroom"), "{printed}");
        assert!(printed.contains("mail.example.org") && printed.contains(r#"jwt_secret: Some("***")"#), "{printed}");
    }

    #[test]
    fn a_database_password_given_as_a_query_parameter_is_redacted_too() {
        let redacted =
            redact_url("postgres://db.example.org/staffroom?user=staffroom&password=pg-pa55word&sslmode=require");
        assert!(!redacted.contains("pg-pa55word"), "{redacted}");
        assert!(redacted.contains("user=staffroom") && redacted.contains("sslmode=require"), "{redacted}");
        assert_eq!(redact_url("sqlite://./data/staffroom.db?mode=rwc"), "sqlite://./data/staffroom.db?mode=rwc");
        assert!(!redact_url("not a url with pg-pa55word").contains("pg-pa55word"));
    }

    #[test]
    fn a_jwt_secret_shorter_than_32_bytes_is_refused_at_start_up() {
        let with =
            |secret: &'static str| Settings::from_lookup(move |k| (k == "STAFFROOM_JWT_SECRET").then(|| secret.into()));
        let error = with("too-short-secret").unwrap_err().to_string();
        assert!(error.contains("at least 32 bytes (it has 16)") && error.contains("openssl rand"), "{error}");
        assert!(!error.contains("too-short-secret"), "the error does not print the secret: {error}");
        assert!(with("0123456789abcdef0123456789abcdef").is_ok());
        // Unset, one is generated on first start (tokens::Keys::load_or_create).
        assert!(Settings::from_lookup(|_| None).unwrap().jwt_secret.is_none());
    }

    #[test]
    fn smtp_password_is_never_printed() {
        let s = Settings::from_lookup(|k| match k {
            "STAFFROOM_SMTP_HOST" => Some("mail.example.org".into()),
            "STAFFROOM_SMTP_PASSWORD" => Some("hunter2".into()),
            _ => None,
        })
        .unwrap();
        assert!(!format!("{s:?}").contains("hunter2"));
    }
}
