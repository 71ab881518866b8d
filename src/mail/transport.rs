//! The two ways a message leaves: an `.eml` file (the default) or SMTP. Both
//! are written so that the worker can tell, after a crash, how far a message
//! got (docs/mail.md):
//!
//! - a file is written under a temporary name and renamed to a name derived
//!   from the outbox row, so "the file exists" proves it was delivered;
//! - over SMTP the worker is told just before the body goes (after the
//!   server's 354 to `DATA`) and records it, because from then until the
//!   server's reply to the final dot nobody can say whether the server took
//!   the message: SMTP has no way to ask "did you take message X".

use std::{
    future::Future,
    io::Write,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::Context;
use lettre::{
    transport::smtp::{
        authentication::{Credentials, DEFAULT_MECHANISMS},
        client::{AsyncSmtpConnection, TlsParameters},
        commands::{Data, Mail, Rcpt},
        extension::{ClientId, Extension, MailBodyParameter, MailParameter},
    },
    Message,
};

use crate::settings::{MailTransport, Settings, SmtpTls};

/// Why one delivery did not happen.
#[derive(Debug, thiserror::Error)]
pub(super) enum SendError {
    /// The server refused the message for good (5xx), or it cannot be built.
    #[error("{0}")]
    Permanent(String),
    /// The server is unreachable or said "try later", before it could have
    /// taken the message; the rest of the batch waits too.
    #[error("{0}")]
    Transient(String),
    /// The body went but no reply came (the connection broke or timed out):
    /// the server may have taken it. Retried like a transient failure; a
    /// receiver sees the same Message-ID twice at worst.
    #[error("no reply after the message was sent: {0}")]
    Unconfirmed(String),
}

/// How long any one SMTP step may take.
const SMTP_STEP: Duration = Duration::from_secs(20);
/// A connection unused this long is checked with NOOP before reuse.
const SMTP_IDLE_CHECK: Duration = Duration::from_secs(10);

pub(super) enum Transport {
    Files(Files),
    Smtp(Smtp),
}

impl Transport {
    pub(super) fn new(settings: &Settings, install_id: &str, public_url: &str) -> anyhow::Result<Transport> {
        Ok(match &settings.mail {
            MailTransport::Files(dir) => {
                std::fs::create_dir_all(dir).with_context(|| format!("failed to create {}", dir.display()))?;
                Transport::Files(Files {
                    dir: dir.clone(),
                    install_id: install_id.to_string(),
                    log_links: is_loopback_url(public_url),
                })
            }
            MailTransport::Smtp(smtp) => {
                let tls = |host: &str| TlsParameters::new(host.to_string()).context("failed to set up TLS for SMTP");
                Transport::Smtp(Smtp {
                    host: smtp.host.clone(),
                    port: smtp.port,
                    wrapper_tls: match smtp.tls {
                        SmtpTls::Tls => Some(tls(&smtp.host)?),
                        _ => None,
                    },
                    starttls: match smtp.tls {
                        SmtpTls::StartTls => Some(tls(&smtp.host)?),
                        _ => None,
                    },
                    credentials: match (&smtp.username, &smtp.password) {
                        (Some(user), Some(pass)) => Some(Credentials::new(user.clone(), pass.clone())),
                        _ => None,
                    },
                    hello: ClientId::default(),
                })
            }
        })
    }
}

/// True for `http://localhost…`, `127.x`, `[::1]`: a development set-up,
/// where logging a mail's first link (a verification token) harms nobody and
/// saves opening the file.
pub(super) fn is_loopback_url(url: &str) -> bool {
    let Ok(url) = url::Url::parse(url) else { return false };
    match url.host() {
        Some(url::Host::Domain(d)) => d == "localhost" || d.ends_with(".localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

/// The first `http(s)://` link in a text body.
pub(super) fn first_link(text: &str) -> Option<&str> {
    let start = [text.find("https://"), text.find("http://")].into_iter().flatten().min()?;
    text[start..].split(|c: char| c.is_whitespace() || c == '>' || c == '"').next()
}

/// Mail written as files under the data dir.
pub(super) struct Files {
    dir: PathBuf,
    install_id: String,
    log_links: bool,
}

impl Files {
    /// `<row id>.<install id>.eml`: the install id keeps a file from another
    /// database (a reset, a restore) from passing for this row's.
    pub(super) fn eml_path(&self, id: i64) -> PathBuf {
        self.dir.join(format!("{id:08}.{}.eml", self.install_id))
    }

    fn txt_path(&self, id: i64) -> PathBuf {
        self.eml_path(id).with_extension("txt")
    }

    /// Whether row `id` was delivered already (a crash came before it was
    /// marked sent).
    pub(super) async fn delivered(&self, id: i64) -> bool {
        tokio::fs::try_exists(self.eml_path(id)).await.unwrap_or(false)
    }

    /// Writes the decoded text first, then the `.eml`: each under a temporary
    /// name, synced, then renamed, so the `.eml` appears whole or not at all,
    /// and never without its `.txt`.
    pub(super) async fn write(&self, id: i64, message: &Message, decoded: String, text: &str) -> Result<(), SendError> {
        let eml = self.eml_path(id);
        let txt = self.txt_path(id);
        let raw = message.formatted();
        let dir = self.dir.clone();
        let (eml_c, txt_c) = (eml.clone(), txt.clone());
        tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            write_atomically(&dir, &txt_c, decoded.as_bytes())?;
            write_atomically(&dir, &eml_c, &raw)?;
            // The renames are durable once the directory is.
            std::fs::File::open(&dir)?.sync_all()
        })
        .await
        .map_err(|e| SendError::Transient(format!("the file writer stopped: {e}")))?
        .map_err(|e| SendError::Transient(format!("failed to write {}: {e}", eml.display())))?;
        match first_link(text).filter(|_| self.log_links) {
            Some(link) => tracing::info!(outbox = id, file = %txt.display(), link, "mail written"),
            None => tracing::info!(outbox = id, file = %txt.display(), "mail written"),
        }
        Ok(())
    }
}

fn write_atomically(dir: &Path, to: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let name = to.file_name().and_then(|n| n.to_str()).unwrap_or("mail");
    let tmp = dir.join(format!(".{name}.tmp"));
    let mut file = std::fs::File::create(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&tmp, to)
}

/// Where and how to reach the SMTP server. The password lives only inside
/// `credentials` (lettre's type does not print it).
pub(super) struct Smtp {
    host: String,
    port: u16,
    wrapper_tls: Option<TlsParameters>,
    starttls: Option<TlsParameters>,
    credentials: Option<Credentials>,
    hello: ClientId,
}

/// One lane's connection to the SMTP server, reused while the lane is busy.
pub(super) struct SmtpSession<'a> {
    smtp: &'a Smtp,
    conn: Option<(AsyncSmtpConnection, Instant)>,
}

fn classify(e: lettre::transport::smtp::Error) -> SendError {
    if e.is_permanent() {
        SendError::Permanent(e.to_string())
    } else {
        SendError::Transient(e.to_string())
    }
}

async fn step<T>(
    what: &str,
    f: impl Future<Output = Result<T, lettre::transport::smtp::Error>>,
) -> Result<T, SendError> {
    match tokio::time::timeout(SMTP_STEP, f).await {
        Ok(r) => r.map_err(classify),
        Err(_) => Err(SendError::Transient(format!("the SMTP server did not answer {what} in time"))),
    }
}

impl<'a> SmtpSession<'a> {
    pub(super) fn new(smtp: &'a Smtp) -> SmtpSession<'a> {
        SmtpSession { smtp, conn: None }
    }

    async fn connect(&self) -> Result<AsyncSmtpConnection, SendError> {
        let s = self.smtp;
        let mut conn = step(
            "the connection",
            AsyncSmtpConnection::connect_tokio1(
                (s.host.as_str(), s.port),
                Some(SMTP_STEP),
                &s.hello,
                s.wrapper_tls.clone(),
                None,
            ),
        )
        .await?;
        if let Some(tls) = &s.starttls {
            step("STARTTLS", conn.starttls(tls.clone(), &s.hello)).await?;
        }
        if let Some(credentials) = &s.credentials {
            step("AUTH", conn.auth(DEFAULT_MECHANISMS, credentials)).await?;
        }
        Ok(conn)
    }

    /// Sends `message`. `handoff` runs after the server has said 354 to
    /// `DATA` and before the body goes: until then the server cannot have
    /// taken the message. If `handoff` fails the body is never sent.
    pub(super) async fn send<F, Fut>(&mut self, message: &Message, handoff: F) -> Result<(), SendError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<(), sqlx::Error>>,
    {
        let result = self.send_on_connection(message, handoff).await;
        match &result {
            Ok(()) => {}
            // Whatever state the conversation is in, start the next one afresh.
            Err(_) => self.abort().await,
        }
        result
    }

    async fn send_on_connection<F, Fut>(&mut self, message: &Message, handoff: F) -> Result<(), SendError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<(), sqlx::Error>>,
    {
        let mut conn = match self.conn.take() {
            Some((mut conn, used)) => {
                let alive = !conn.has_broken()
                    && (used.elapsed() < SMTP_IDLE_CHECK
                        || tokio::time::timeout(SMTP_STEP, conn.test_connected()).await.unwrap_or(false));
                if alive {
                    conn
                } else {
                    conn.abort().await;
                    self.connect().await?
                }
            }
            None => self.connect().await?,
        };
        let outcome = async {
            let envelope = message.envelope();
            let raw = message.formatted();
            let mut options = vec![];
            if envelope.to().iter().chain(envelope.from()).any(|a| !AsRef::<str>::as_ref(a).is_ascii()) {
                if !conn.server_info().supports_feature(Extension::SmtpUtfEight) {
                    return Err(SendError::Permanent("the address needs SMTPUTF8, which the server lacks".into()));
                }
                options.push(MailParameter::SmtpUtfEight);
            }
            if !raw.is_ascii() {
                options.push(MailParameter::Body(MailBodyParameter::EightBitMime));
            }
            step("MAIL FROM", conn.command(Mail::new(envelope.from().cloned(), options))).await?;
            for to in envelope.to() {
                step("RCPT TO", conn.command(Rcpt::new(to.clone(), vec![]))).await?;
            }
            step("DATA", conn.command(Data)).await?;
            handoff().await.map_err(|e| SendError::Transient(format!("failed to record the hand-off: {e}")))?;
            // From here until the reply, the server may or may not have the message.
            match tokio::time::timeout(SMTP_STEP, conn.message(&raw)).await {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(e)) if e.is_permanent() => Err(SendError::Permanent(e.to_string())),
                // A 4xx reply to the final dot: the server said it did not take it.
                Ok(Err(e)) if e.is_transient() => Err(SendError::Transient(e.to_string())),
                Ok(Err(e)) => Err(SendError::Unconfirmed(e.to_string())),
                Err(_) => Err(SendError::Unconfirmed("the server did not answer in time".into())),
            }
        }
        .await;
        self.conn = Some((conn, Instant::now()));
        outcome
    }

    async fn abort(&mut self) {
        if let Some((mut conn, _)) = self.conn.take() {
            conn.abort().await;
        }
    }

    /// Says QUIT when the lane runs out of work.
    pub(super) async fn close(&mut self) {
        if let Some((mut conn, _)) = self.conn.take() {
            let _ = tokio::time::timeout(SMTP_STEP, conn.quit()).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_public_urls_count_as_development() {
        assert!(is_loopback_url("http://127.0.0.1:8080"));
        assert!(is_loopback_url("http://localhost:8080"));
        assert!(is_loopback_url("http://staffroom.localhost"));
        assert!(is_loopback_url("http://[::1]:8080"));
        assert!(!is_loopback_url("https://cpd.example.org"));
        assert!(!is_loopback_url("http://10.0.0.5:8080"));
        assert!(!is_loopback_url("not a url"));
    }

    #[test]
    fn the_first_link_is_found_whole_and_ends_at_whitespace() {
        let text = "Hello,\n\nConfirm: http://127.0.0.1:8080/verify.html?token=abc.def-ghi\n\nOr https://x.org/b";
        assert_eq!(first_link(text), Some("http://127.0.0.1:8080/verify.html?token=abc.def-ghi"));
        assert_eq!(first_link("no links here"), None);
    }
}
