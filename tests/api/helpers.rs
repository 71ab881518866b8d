//! Test harness: the real server in-process on port 0, on a fresh SQLite file
//! or a fresh PostgreSQL database, with a real SMTP server (aiosmtpd).

use std::{
    collections::HashMap,
    net::TcpListener as StdListener,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use staffroom::{settings::Settings, App, AppState};
use tempfile::TempDir;
use tokio::{sync::oneshot, task::JoinHandle};

#[derive(Clone, Copy, Debug)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Runs one async test body against SQLite and against PostgreSQL, as two tests.
#[macro_export]
macro_rules! both_backends {
    ($name:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn on_sqlite() {
                super::$name($crate::helpers::Backend::Sqlite).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn on_postgres() {
                super::$name($crate::helpers::Backend::Postgres).await
            }
        }
    };
}

/// A real SMTP server (Debian's python3-aiosmtpd) writing what it receives to a maildir.
pub struct SmtpServer {
    pub port: u16,
    pub maildir: PathBuf,
    child: Option<Child>,
}

impl SmtpServer {
    pub fn start(maildir: &Path) -> SmtpServer {
        // A free port can be taken by another test between asking for it and
        // aiosmtpd binding it; then our server exits and the other answers in
        // its place, receiving our mail. So a start counts only once this
        // server is seen holding the port, else it tries another.
        for _ in 0..5 {
            let mut s = SmtpServer { port: free_port(), maildir: maildir.to_path_buf(), child: None };
            if s.spawn() {
                return s;
            }
        }
        panic!("aiosmtpd could not hold a port of its own in five tries");
    }

    /// Starts (again) on the same port and maildir.
    pub fn restart(&mut self) {
        assert!(self.spawn(), "aiosmtpd did not start on port {}", self.port);
    }

    /// Starts aiosmtpd on `port`; true once it holds the listening socket
    /// there, false if it exited (the port was taken) or never bound it.
    fn spawn(&mut self) -> bool {
        let child = Command::new("/usr/bin/python3")
            .args([
                "-m",
                "aiosmtpd",
                "-n",
                "-l",
                &format!("127.0.0.1:{}", self.port),
                "-c",
                "aiosmtpd.handlers.Mailbox",
            ])
            .arg(&self.maildir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3-aiosmtpd is needed for the mail tests (apt-get install python3-aiosmtpd)");
        let pid = child.id();
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if listens(pid, self.port) {
                return true;
            }
            let exited = self.child.as_mut().is_some_and(|c| matches!(c.try_wait(), Ok(Some(_))));
            if exited || Instant::now() > deadline {
                self.stop();
                return false;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Every message received so far, parsed.
    pub fn messages(&self) -> Vec<Mail> {
        let mut out = vec![];
        for sub in ["new", "cur"] {
            let Ok(entries) = std::fs::read_dir(self.maildir.join(sub)) else { continue };
            for e in entries.flatten() {
                if let Ok(raw) = std::fs::read(e.path()) {
                    out.push(Mail::parse(&raw));
                }
            }
        }
        out
    }
}

/// Drops a test's PostgreSQL database when the test ends, so runs do not pile up.
struct DropDatabase(String);

impl Drop for DropDatabase {
    fn drop(&mut self) {
        let (base, name) = match self.0.rsplit_once('/') {
            Some((base, name)) => (base.to_string(), name.to_string()),
            None => return,
        };
        // Drop cannot await; a short-lived thread with its own runtime can.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().ok()?;
            rt.block_on(async {
                let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&format!("{base}/test")).await.ok()?;
                sqlx::Executor::execute(&mut conn, format!("drop database if exists {name} with (force)").as_str())
                    .await
                    .ok()
            })
        })
        .join();
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// One received email, as a reader (and a calendar client) sees it.
#[derive(Debug, Clone)]
pub struct Mail {
    pub to: String,
    pub subject: String,
    pub message_id: String,
    pub text: String,
    pub html: String,
    /// The text/calendar part, if any.
    pub ics: Option<String>,
    /// The Content-Type of the calendar part (it carries `method=`).
    pub ics_content_type: Option<String>,
    pub attachment_names: Vec<String>,
}

impl Mail {
    fn parse(raw: &[u8]) -> Mail {
        use mail_parser::{MessageParser, MimeHeaders};
        let m = MessageParser::default().parse(raw).expect("a parseable email");
        let to = m.to().and_then(|a| a.first()).and_then(|a| a.address()).unwrap_or_default().to_string();
        let mut ics = None;
        let mut ics_content_type = None;
        let mut attachment_names = vec![];
        for part in m.parts.iter() {
            if let Some(ct) = part.content_type() {
                if ct.ctype() == "text" && ct.subtype() == Some("calendar") {
                    ics = Some(String::from_utf8_lossy(part.contents()).into_owned());
                    let method = ct.attribute("method").unwrap_or_default();
                    ics_content_type = Some(format!("text/calendar; method={method}"));
                }
            }
            if let Some(name) = part.attachment_name() {
                attachment_names.push(name.to_string());
            }
        }
        Mail {
            to,
            subject: m.subject().unwrap_or_default().to_string(),
            message_id: m.message_id().unwrap_or_default().to_string(),
            text: m.body_text(0).map(|t| t.into_owned()).unwrap_or_default(),
            html: m.body_html(0).map(|t| t.into_owned()).unwrap_or_default(),
            ics,
            ics_content_type,
            attachment_names,
        }
    }

    /// The first link in the text body that starts with `prefix`.
    pub fn link(&self, prefix: &str) -> String {
        let start = self.text.find(prefix).unwrap_or_else(|| panic!("no link {prefix} in:\n{}", self.text));
        self.text[start..].split_whitespace().next().unwrap().to_string()
    }

    /// The calendar, read by a third-party iCalendar parser (the `ical` crate).
    pub fn calendar(&self) -> Calendar {
        let text = self.ics.as_deref().expect("an iCalendar part");
        let mut parser = ical::IcalParser::new(std::io::BufReader::new(text.as_bytes()));
        let cal = parser.next().expect("one VCALENDAR").expect("a valid VCALENDAR");
        let prop = |props: &[ical::property::Property], name: &str| {
            props.iter().find(|p| p.name == name).and_then(|p| p.value.clone()).unwrap_or_default()
        };
        let event = cal.events.first().expect("one VEVENT");
        Calendar {
            method: prop(&cal.properties, "METHOD"),
            uid: prop(&event.properties, "UID"),
            sequence: prop(&event.properties, "SEQUENCE").parse().expect("a numeric SEQUENCE"),
            dtstart: prop(&event.properties, "DTSTART"),
            summary: prop(&event.properties, "SUMMARY"),
        }
    }
}

#[derive(Debug)]
pub struct Calendar {
    pub method: String,
    pub uid: String,
    pub sequence: u32,
    pub dtstart: String,
    pub summary: String,
}

/// Whether process `pid` holds the listening TCP socket on 127.0.0.1:`port`
/// (the socket's inode in /proc/net/tcp is one of the process's descriptors).
fn listens(pid: u32, port: u16) -> bool {
    let local = format!("0100007F:{port:04X}");
    let Ok(table) = std::fs::read_to_string("/proc/net/tcp") else { return false };
    let sockets: Vec<String> = table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            // Field 3 is the state: 0A is LISTEN; field 9 the inode.
            (f.len() > 9 && f[1] == local && f[3] == "0A").then(|| format!("socket:[{}]", f[9]))
        })
        .collect();
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else { return false };
    fds.flatten().any(|fd| {
        std::fs::read_link(fd.path()).is_ok_and(|target| sockets.iter().any(|s| target.as_os_str() == s.as_str()))
    })
}

pub fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[allow(dead_code)]
pub fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

async fn fresh_database(backend: Backend, dir: &Path) -> String {
    match backend {
        Backend::Sqlite => format!("sqlite://{}?mode=rwc", dir.join("staffroom.db").display()),
        Backend::Postgres => {
            let base =
                std::env::var("STAFFROOM_TEST_PG").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into());
            let name = format!("staffroom_test_{}", uuid::Uuid::new_v4().simple());
            let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&format!("{base}/test")).await.expect(
                "PostgreSQL must be running on 127.0.0.1:5432 (database test, trust auth) for the PostgreSQL tests",
            );
            sqlx::Executor::execute(&mut conn, format!("create database {name}").as_str()).await.unwrap();
            format!("{base}/{name}")
        }
    }
}

pub struct TestApp {
    pub url: String,
    pub state: AppState,
    pub smtp: SmtpServer,
    /// Every answer it gets is checked against the OpenAPI document.
    pub client: CheckedClient,
    pub data_dir: TempDir,
    database_url: String,
    extra: HashMap<String, String>,
    stop: Option<oneshot::Sender<()>>,
    handle: Option<JoinHandle<anyhow::Result<()>>>,
    _drop_database: Option<DropDatabase>,
}

pub async fn spawn_app(backend: Backend) -> TestApp {
    spawn_app_with(backend, &[]).await
}

/// Starts the server; `extra` overrides STAFFROOM_* settings (without the prefix).
pub async fn spawn_app_with(backend: Backend, extra: &[(&str, &str)]) -> TestApp {
    let data_dir = tempfile::tempdir().unwrap();
    let smtp = SmtpServer::start(&data_dir.path().join("maildir"));
    let database_url = fresh_database(backend, data_dir.path()).await;
    let extra: HashMap<String, String> = extra.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let settings = settings_for(data_dir.path(), &database_url, smtp.port, &extra);
    let (url, state, stop, handle) = launch(settings).await;
    TestApp {
        url,
        state,
        smtp,
        client: CheckedClient::default(),
        data_dir,
        database_url: database_url.clone(),
        extra,
        stop: Some(stop),
        handle: Some(handle),
        _drop_database: matches!(backend, Backend::Postgres).then(|| DropDatabase(database_url.clone())),
    }
}

fn settings_for(data_dir: &Path, database_url: &str, smtp_port: u16, extra: &HashMap<String, String>) -> Settings {
    let mut vars: HashMap<String, String> = [
        ("ADDR", "127.0.0.1:0".to_string()),
        // Each test server's media on a port of its own, chosen by the system.
        ("RTC_PORT", "0".to_string()),
        ("DATA_DIR", data_dir.display().to_string()),
        ("DATABASE_URL", database_url.to_string()),
        ("JWT_SECRET", "test-secret-test-secret-test-secret".into()),
        ("SMTP_HOST", "127.0.0.1".into()),
        ("SMTP_PORT", smtp_port.to_string()),
        ("SMTP_TLS", "none".into()),
        ("MAIL_POLL_MS", "100".into()),
        ("MAIL_RETRY_BASE_MS", "200".into()),
        ("MAIL_PER_MINUTE", "60000".into()),
        ("REMINDER_INTERVAL_MS", "200".into()),
        // Every test client is 127.0.0.1: the per-IP throttle is tested
        // where it is set lower (tests/api/throttles.rs).
        ("THROTTLE_IP_PER_HOUR", "100000".into()),
    ]
    .into_iter()
    .map(|(k, v)| (format!("STAFFROOM_{k}"), v))
    .collect();
    for (k, v) in extra {
        vars.insert(format!("STAFFROOM_{k}"), v.clone());
    }
    Settings::from_lookup(|k| vars.get(k).cloned()).unwrap()
}

type Running = (String, AppState, oneshot::Sender<()>, JoinHandle<anyhow::Result<()>>);

async fn launch(settings: Settings) -> Running {
    let app = App::build(settings).await.expect("the app builds");
    let url = format!("http://127.0.0.1:{}", app.port());
    let state = app.state().clone();
    let (stop, rx) = oneshot::channel();
    let handle = tokio::spawn(app.run(async {
        let _ = rx.await;
    }));
    (url, state, stop, handle)
}

impl TestApp {
    /// Stops the server and starts a new one on the same database and mail server.
    pub async fn restart(&mut self) {
        self.shutdown().await;
        let settings = settings_for(self.data_dir.path(), &self.database_url, self.smtp.port, &self.extra);
        let (url, state, stop, handle) = launch(settings).await;
        self.url = url;
        self.state = state;
        self.stop = Some(stop);
        self.handle = Some(handle);
    }

    pub async fn shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(h) = self.handle.take() {
            let _ = h.await;
        }
    }

    pub async fn request(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = self.client.request(method, format!("{}{path}", self.url));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let res = req.send().await.expect("the server answers");
        let status = res.status();
        let text = res.text().await.unwrap();
        let value =
            if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap_or(Value::String(text)) };
        (status, value)
    }

    /// The body of a GET as text (CSV exports), signed in with `token`.
    pub async fn get_text(&self, path: &str, token: &str) -> String {
        let res =
            self.client.get(format!("{}{path}", self.url)).bearer_auth(token).send().await.expect("the server answers");
        res.text().await.unwrap()
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> (StatusCode, Value) {
        self.request(Method::GET, path, token, None).await
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: Value) -> (StatusCode, Value) {
        self.request(Method::POST, path, token, Some(body)).await
    }

    /// Signs up a participant and verifies their address as they would:
    /// following the link in the email the SMTP server received, through
    /// `POST /api/auth/verify`. Returns their bearer token.
    pub async fn sign_up(&self, name: &str, email: &str) -> String {
        let token = self.sign_up_unverified(name, email).await;
        self.verify_email(&email.to_lowercase()).await;
        token
    }

    /// Follows the verification link in the one verification email to `email`.
    pub async fn verify_email(&self, email: &str) {
        let prefix = format!("{}/verify.html?token=", self.url);
        let link = match &self.state.settings.mail {
            // With no SMTP server the link is read where a person would: the decoded `.txt`.
            staffroom::settings::MailTransport::Files(dir) => self.link_in_files(dir, email, &prefix).await,
            _ => self.mail_to(email, "Confirm your email address").await.link(&prefix),
        };
        let token = link.split("token=").nth(1).unwrap();
        let (status, user) = self.post("/api/auth/verify", None, json!({"token": token})).await;
        assert_eq!(status, StatusCode::OK, "{user}");
        assert_eq!(user["email_verified"], true, "{user}");
    }

    /// The first link starting `prefix` in a mail file to `email` (file transport).
    async fn link_in_files(&self, dir: &Path, email: &str, prefix: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
                if entry.path().extension().is_some_and(|e| e == "txt") {
                    let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
                    if let (true, Some(at)) = (text.contains(email), text.find(prefix)) {
                        return text[at..].split_whitespace().next().unwrap().to_string();
                    }
                }
            }
            assert!(Instant::now() < deadline, "no mail file to {email} with a link {prefix}…");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Signs up a participant who has not followed the verification link;
    /// returns their bearer token.
    pub async fn sign_up_unverified(&self, name: &str, email: &str) -> String {
        let (status, body) = self
            .post("/api/auth/signup", None, json!({"name": name, "email": email, "password": "correct horse", "school": "Oak Primary", "stage": "ect"}))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body["token"].as_str().unwrap().to_string()
    }

    /// Signs up an account and makes it an organiser; returns its token.
    pub async fn organiser(&self) -> String {
        let token = self.sign_up("Olivia Organiser", "organiser@staffroom.test").await;
        let mut tx = self.state.db.begin().await.unwrap();
        sqlx::query("update users set is_organiser = 1 where email = 'organiser@staffroom.test'")
            .execute(&mut *tx)
            .await
            .unwrap();
        tx.commit().await.unwrap();
        token
    }

    /// Creates a published session starting `starts_in` from now; returns its id.
    pub async fn session(&self, organiser: &str, title: &str, capacity: i64, starts_in: chrono::Duration) -> i64 {
        let start = chrono::Utc::now() + starts_in;
        let (status, body) = self
            .post(
                "/api/sessions",
                Some(organiser),
                json!({
                    "title": title, "description": "A session for the tests.", "kind": "masterclass",
                    "series": "Early Career", "subject": "Behaviour", "audiences": ["ect"],
                    "starts_at": start.to_rfc3339(), "ends_at": (start + chrono::Duration::hours(1)).to_rfc3339(),
                    "capacity": capacity, "status": "published"
                }),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body["id"].as_i64().unwrap()
    }

    /// Waits until the SMTP server holds mail matching `pred`, and returns it all.
    pub async fn wait_for_mail(&self, what: &str, pred: impl Fn(&[Mail]) -> bool) -> Vec<Mail> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let mail = self.smtp.messages();
            if pred(&mail) {
                return mail;
            }
            if Instant::now() > deadline {
                let seen: Vec<_> = mail.iter().map(|m| format!("{} <{}>", m.subject, m.to)).collect();
                panic!("timed out waiting for {what}; received: {seen:#?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The one message to `to` whose subject starts with `subject`.
    pub async fn mail_to(&self, to: &str, subject: &str) -> Mail {
        let all = self
            .wait_for_mail(&format!("“{subject}” to {to}"), |m| {
                m.iter().any(|m| m.to == to && m.subject.starts_with(subject))
            })
            .await;
        let mut found: Vec<Mail> = all.into_iter().filter(|m| m.to == to && m.subject.starts_with(subject)).collect();
        assert_eq!(found.len(), 1, "expected exactly one “{subject}” to {to}");
        found.pop().unwrap()
    }

    /// Waits until the outbox has nothing left to send.
    pub async fn drain_outbox(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let pending: i64 = sqlx::query_scalar("select count(*) from outbox where status in ('queued', 'sending')")
                .fetch_one(&self.state.db.read)
                .await
                .unwrap();
            if pending == 0 {
                return;
            }
            assert!(Instant::now() < deadline, "{pending} emails still unsent");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// A `reqwest::Client` whose every answer is checked against the OpenAPI
/// document before the test sees it (see [`contract`]). It offers the
/// request-building calls the tests use; the answer is an ordinary
/// `reqwest::Response`, rebuilt from the body the check read.
#[derive(Clone, Default)]
pub struct CheckedClient(reqwest::Client);

impl CheckedClient {
    /// Wraps a client built with other options (a cookie jar).
    pub fn new(client: reqwest::Client) -> CheckedClient {
        CheckedClient(client)
    }

    pub fn request(&self, method: Method, url: impl reqwest::IntoUrl) -> CheckedRequest {
        CheckedRequest(self.0.request(method, url))
    }

    pub fn get(&self, url: impl reqwest::IntoUrl) -> CheckedRequest {
        self.request(Method::GET, url)
    }

    pub fn post(&self, url: impl reqwest::IntoUrl) -> CheckedRequest {
        self.request(Method::POST, url)
    }
}

pub struct CheckedRequest(reqwest::RequestBuilder);

impl CheckedRequest {
    pub fn bearer_auth(self, token: impl std::fmt::Display) -> CheckedRequest {
        CheckedRequest(self.0.bearer_auth(token))
    }

    pub fn header<K, V>(self, key: K, value: V) -> CheckedRequest
    where
        reqwest::header::HeaderName: TryFrom<K>,
        <reqwest::header::HeaderName as TryFrom<K>>::Error: Into<http::Error>,
        reqwest::header::HeaderValue: TryFrom<V>,
        <reqwest::header::HeaderValue as TryFrom<V>>::Error: Into<http::Error>,
    {
        CheckedRequest(self.0.header(key, value))
    }

    pub fn json<T: serde::Serialize + ?Sized>(self, json: &T) -> CheckedRequest {
        CheckedRequest(self.0.json(json))
    }

    pub fn body(self, body: impl Into<reqwest::Body>) -> CheckedRequest {
        CheckedRequest(self.0.body(body))
    }

    /// Sends the request; the answer is checked against the document (a
    /// mismatch fails the test) and handed back whole.
    pub async fn send(self) -> reqwest::Result<reqwest::Response> {
        let (client, request) = self.0.build_split();
        let request = request?;
        let method = request.method().clone();
        let res = client.execute(request).await?;
        let (status, version, headers) = (res.status(), res.version(), res.headers().clone());
        let path = res.url().path().to_string();
        let body = res.bytes().await?;
        let content_type = headers.get(reqwest::header::CONTENT_TYPE).and_then(|v| v.to_str().ok());
        contract::check(&method, &path, status.as_u16(), content_type, &body);
        let mut rebuilt = http::Response::new(body);
        *rebuilt.status_mut() = status;
        *rebuilt.version_mut() = version;
        *rebuilt.headers_mut() = headers;
        Ok(reqwest::Response::from(rebuilt))
    }
}

/// The OpenAPI document (`staffroom::routes::openapi()`, what
/// `/api/openapi.json` serves) as the judge of every answer the tests get:
/// the answer's status must be one the document declares for that path and
/// method, its content type one declared for that status, and a JSON body
/// must match the declared schema (JSON Schema 2020-12, `$ref`s resolved
/// into the components). A route the document does not know must be the
/// catch-all's 404 or the router's 405, each with the JSON error body.
/// Files, CSV, calendars and pages are checked for status and content type
/// only. There is no list of exceptions: a new route is checked as soon as
/// a test calls it.
///
/// The document says nothing of properties it does not list, so JSON Schema
/// alone would let the server send fields the document never mentions; the
/// check closes every object that lists its properties (see [`close`]).
///
/// With `STAFFROOM_OPENAPI_TALLY=<file>` each checked answer appends a line
/// `METHOD path-template status` to that file, to count what a run covered.
pub mod contract {
    use std::{
        collections::HashMap,
        io::Write,
        sync::{Arc, Mutex, OnceLock},
    };

    use reqwest::Method;
    use serde_json::{json, Map, Value};

    struct Contract {
        document: Value,
        /// Each path template with its segments (`None` for a `{parameter}`).
        templates: Vec<(String, Vec<Option<String>>)>,
        /// The components, closed (and an open copy of each, `Name.open`).
        schemas: Value,
        validators: Mutex<HashMap<String, Arc<jsonschema::Validator>>>,
    }

    fn contract() -> &'static Contract {
        static CONTRACT: OnceLock<Contract> = OnceLock::new();
        CONTRACT.get_or_init(|| {
            let document = serde_json::to_value(staffroom::routes::openapi()).expect("the document serialises");
            let templates = document["paths"]
                .as_object()
                .expect("the document has paths")
                .keys()
                .map(|t| {
                    let segments = t
                        .split('/')
                        .map(|s| (!(s.starts_with('{') && s.ends_with('}'))).then(|| s.to_string()))
                        .collect();
                    (t.clone(), segments)
                })
                .collect();
            let mut schemas = Map::new();
            for (name, schema) in document["components"]["schemas"].as_object().into_iter().flatten() {
                let (mut closed, mut open) = (schema.clone(), schema.clone());
                close(&mut closed, false);
                close(&mut open, true);
                schemas.insert(name.clone(), closed);
                schemas.insert(format!("{name}.open"), open);
            }
            Contract { document, templates, schemas: Value::Object(schemas), validators: Mutex::default() }
        })
    }

    /// Closes `schema` and what it contains against properties it does not
    /// list (`unevaluatedProperties: false`). A part of an `allOf` (how a
    /// flattened struct is written) stays open, and its `$ref` points at the
    /// open copy of the component: the `allOf` as a whole is closed instead,
    /// seeing every part's properties.
    fn close(schema: &mut Value, part: bool) {
        let Some(object) = schema.as_object_mut() else { return };
        if let Some(Value::Array(parts)) = object.get_mut("allOf") {
            for p in parts.iter_mut() {
                if let Some(Value::String(target)) = p.get_mut("$ref") {
                    if target.starts_with("#/components/schemas/") && !target.ends_with(".open") {
                        target.push_str(".open");
                    }
                }
                close(p, true);
            }
        }
        for key in ["oneOf", "anyOf", "prefixItems"] {
            if let Some(Value::Array(alternatives)) = object.get_mut(key) {
                alternatives.iter_mut().for_each(|a| close(a, false));
            }
        }
        if let Some(Value::Object(properties)) = object.get_mut("properties") {
            properties.values_mut().for_each(|p| close(p, false));
        }
        for key in ["items", "additionalProperties"] {
            if let Some(inner) = object.get_mut(key) {
                close(inner, false);
            }
        }
        let lists = object.contains_key("properties") || object.contains_key("allOf");
        let says = object.contains_key("additionalProperties") || object.contains_key("unevaluatedProperties");
        if lists && !says && !part {
            object.insert("unevaluatedProperties".into(), Value::Bool(false));
        }
    }

    /// The document's template for `path` (the one with the most fixed segments).
    fn template<'a>(c: &'a Contract, path: &str) -> Option<&'a str> {
        let segments: Vec<&str> = path.split('/').collect();
        c.templates
            .iter()
            .filter(|(_, t)| {
                t.len() == segments.len()
                    && t.iter().zip(&segments).all(|(t, s)| match t {
                        Some(fixed) => fixed == s,
                        None => !s.is_empty(),
                    })
            })
            .max_by_key(|(_, t)| t.iter().filter(|s| s.is_some()).count())
            .map(|(name, _)| name.as_str())
    }

    fn validator(c: &Contract, schema: &Value) -> Arc<jsonschema::Validator> {
        let key = schema.to_string();
        if let Some(v) = c.validators.lock().unwrap().get(&key) {
            return v.clone();
        }
        let mut root = schema.clone();
        close(&mut root, false);
        let root = match root {
            Value::Object(mut o) => {
                o.insert("$schema".into(), json!("https://json-schema.org/draft/2020-12/schema"));
                o.insert("components".into(), json!({ "schemas": c.schemas }));
                Value::Object(o)
            }
            other => panic!("OpenAPI: a response schema that is not an object: {other}"),
        };
        let v = Arc::new(
            jsonschema::draft202012::options()
                .should_validate_formats(true)
                .build(&root)
                .unwrap_or_else(|e| panic!("OpenAPI: the schema {schema} does not compile: {e}")),
        );
        c.validators.lock().unwrap().insert(key, v.clone());
        v
    }

    fn shown(body: &[u8]) -> String {
        let text = String::from_utf8_lossy(body);
        let mut cut: String = text.chars().take(600).collect();
        if cut.len() < text.len() {
            cut.push('…');
        }
        cut
    }

    /// Validates `body` against `schema` (a response schema from the document).
    fn matches(c: &Contract, operation: &str, status: u16, schema: &Value, body: &[u8]) {
        let value: Value = serde_json::from_slice(body).unwrap_or_else(|e| {
            panic!(
                "OpenAPI: {operation} answered {status} as application/json, but the body is not JSON ({e}): {}",
                shown(body)
            )
        });
        let errors: Vec<String> = validator(c, schema)
            .iter_errors(&value)
            .take(8)
            .map(|e| format!("  at '{}': {e}", e.instance_path()))
            .collect();
        assert!(
            errors.is_empty(),
            "OpenAPI: {operation} answered {status} with a body that does not match the document's schema {schema}:\n{}\nbody: {}",
            errors.join("\n"),
            shown(body)
        );
    }

    fn tally(operation: &str, status: u16) {
        let Some(file) = std::env::var_os("STAFFROOM_OPENAPI_TALLY") else { return };
        let mut f = std::fs::OpenOptions::new().create(true).append(true).open(file).expect("the tally file opens");
        f.write_all(format!("{operation} {status}\n").as_bytes()).expect("the tally is written");
    }

    /// Checks one answer; panics (failing the test) on a mismatch, naming the
    /// operation, the status and what is wrong.
    pub fn check(method: &Method, path: &str, status: u16, content_type: Option<&str>, body: &[u8]) {
        let path = path.split('?').next().unwrap_or(path);
        // Pages and files outside the API, and the document itself.
        if !path.starts_with("/api/") || path == "/api/openapi.json" {
            return;
        }
        let c = contract();
        let media = content_type.map(|t| t.split(';').next().unwrap_or(t).trim().to_ascii_lowercase());
        let error_body = json!({"$ref": "#/components/schemas/ErrorBody"});
        let Some(template) = template(c, path) else {
            let operation = format!("{method} {path} (no such route)");
            assert_eq!(status, 404, "OpenAPI: {operation} answered {status}; only the catch-all's 404 is expected");
            matches(c, &operation, status, &error_body, body);
            return tally(&format!("{method} (no route)"), status);
        };
        let operation = format!("{method} {template}");
        let declared = &c.document["paths"][template][method.as_str().to_ascii_lowercase()];
        if declared.is_null() {
            assert_eq!(status, 405, "OpenAPI: {operation} is not in the document, yet it answered {status}");
            matches(c, &operation, status, &error_body, body);
            return tally(&format!("{operation} (no such method)"), status);
        }
        let responses = &declared["responses"];
        let Some(response) = responses.get(status.to_string()).or_else(|| responses.get("default")) else {
            let known: Vec<&String> = responses.as_object().into_iter().flat_map(|r| r.keys()).collect();
            panic!(
                "OpenAPI: {operation} answered {status}, a status the document does not declare for it (it declares {known:?}); body: {}",
                shown(body)
            );
        };
        let content = response.get("content").and_then(Value::as_object).filter(|c| !c.is_empty());
        match (content, media) {
            (None, None) => {}
            (None, Some(media)) => assert!(
                body.is_empty(),
                "OpenAPI: {operation} answered {status} with a {media} body, but the document declares no body for it: {}",
                shown(body)
            ),
            (Some(content), None) => assert!(
                body.is_empty() && status == 304,
                "OpenAPI: {operation} answered {status} without a content type; the document declares {:?}",
                content.keys().collect::<Vec<_>>()
            ),
            (Some(content), Some(media)) => {
                let Some(declared) = content.get(&media) else {
                    panic!(
                        "OpenAPI: {operation} answered {status} as {media}; the document declares {:?}",
                        content.keys().collect::<Vec<_>>()
                    );
                };
                if media == "application/json" || media.ends_with("+json") {
                    let schema = declared.get("schema").unwrap_or_else(|| {
                        panic!("OpenAPI: {operation} {status} is declared as JSON without a schema")
                    });
                    matches(c, &operation, status, schema, body);
                }
            }
        }
        tally(&operation, status);
    }
}
