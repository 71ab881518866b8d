//! The command line a new installation starts with: create-organiser and demo-data.

use std::{
    io::{Read, Write},
    process::{Command, Stdio},
};

fn staffroom(data_dir: &std::path::Path, args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_staffroom"))
        .args(args)
        .env("STAFFROOM_DATA_DIR", data_dir)
        .env_remove("STAFFROOM_DATABASE_URL")
        .env_remove("RUST_BACKTRACE")
        .output()
        .expect("the staffroom binary runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

#[test]
fn create_organiser_creates_then_promotes_and_demo_data_fills_only_an_empty_programme() {
    let dir = tempfile::tempdir().unwrap();
    let (ok, text) = staffroom(
        dir.path(),
        &["create-organiser", "--email", "Head@School.org", "--name", "Ada Head", "--password", "a long password"],
    );
    assert!(ok, "{text}");
    assert!(text.contains("Created organiser head@school.org"), "{text}");
    let (ok, text) = staffroom(
        dir.path(),
        &["create-organiser", "--email", "head@school.org", "--name", "Ada Head", "--password", "ignored"],
    );
    assert!(ok && text.contains("is now an organiser"), "{text}");
    let (ok, text) = staffroom(
        dir.path(),
        &["create-organiser", "--email", "not-an-address", "--name", "X", "--password", "a long password"],
    );
    assert!(!ok && text.contains("no @"), "{text}");
    assert!(!text.contains("panicked"), "{text}");

    let (ok, text) = staffroom(dir.path(), &["demo-data"]);
    assert!(ok && text.contains("Added 6 sessions"), "{text}");
    let (ok, text) = staffroom(dir.path(), &["demo-data"]);
    assert!(!ok, "{text}");
    assert!(text.contains("already has 6 sessions"), "{text}");
    assert!(dir.path().join("staffroom.db").exists());

    // Organisers and demo accounts can run rooms and register at once:
    // their addresses count as verified.
    let url = format!("sqlite://{}", dir.path().join("staffroom.db").display());
    let unverified: i64 = tokio::runtime::Runtime::new().unwrap().block_on(async {
        let mut conn = <sqlx::SqliteConnection as sqlx::Connection>::connect(&url).await.unwrap();
        sqlx::query_scalar("select count(*) from users where email_verified_at is null")
            .fetch_one(&mut conn)
            .await
            .unwrap()
    });
    assert_eq!(unverified, 0);
}

/// A server started on `data_dir` (port 0), stopped when dropped.
struct Server {
    child: std::process::Child,
    url: String,
}

impl Server {
    fn start(data_dir: &std::path::Path) -> Server {
        use std::io::BufRead;
        let mut child = Command::new(env!("CARGO_BIN_EXE_staffroom"))
            .env("STAFFROOM_DATA_DIR", data_dir)
            .env("STAFFROOM_ADDR", "127.0.0.1:0")
            .env("STAFFROOM_RTC_PORT", "0")
            .env("RUST_LOG", "warn")
            .env_remove("STAFFROOM_DATABASE_URL")
            .stdout(Stdio::piped())
            .spawn()
            .expect("the server starts");
        let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
        let url = loop {
            let line = lines.next().expect("the server says where it listens").unwrap();
            if let Some(rest) = line.split("open ").nth(1) {
                break rest.trim_end_matches('/').to_string();
            }
        };
        Server { child, url }
    }

    /// Signs in through the API; the HTTP status.
    fn sign_in(&self, email: &str, password: &str) -> u16 {
        let url = format!("{}/api/auth/signin", self.url);
        let body = serde_json::json!({ "email": email, "password": password });
        tokio::runtime::Runtime::new().unwrap().block_on(async move {
            reqwest::Client::new().post(url).json(&body).send().await.expect("the server answers").status().as_u16()
        })
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn create_organiser_reads_a_piped_password_with_password_stdin_and_the_organiser_signs_in_with_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_staffroom"))
        .args(["create-organiser", "--email", "head@school.org", "--name", "Ada Head", "--password-stdin"])
        .env("STAFFROOM_DATA_DIR", dir.path())
        .env_remove("STAFFROOM_DATABASE_URL")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"a piped password\n").unwrap();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && text.contains("Created organiser head@school.org"), "{text}");

    let server = Server::start(dir.path());
    assert_eq!(server.sign_in("head@school.org", "a piped password"), 200);
    assert_eq!(server.sign_in("head@school.org", "a piped password\n"), 401, "the line ending is not part of it");
}

#[test]
fn create_organiser_without_a_terminal_or_a_password_option_says_how_to_give_one() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_staffroom"))
        .args(["create-organiser", "--email", "head@school.org", "--name", "Ada Head"])
        .env("STAFFROOM_DATA_DIR", dir.path())
        .env_remove("STAFFROOM_DATABASE_URL")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("no terminal") && text.contains("--password-stdin"), "{text}");
    let (ok, text) = staffroom(
        dir.path(),
        &[
            "create-organiser",
            "--email",
            "head@school.org",
            "--name",
            "Ada Head",
            "--password-stdin",
            "--password",
            "x",
        ],
    );
    assert!(!ok && text.contains("cannot be used with"), "{text}");
}

/// What a program running on a pseudo-terminal (util-linux's `script`) has
/// printed so far, read as it comes.
struct Terminal {
    child: std::process::Child,
    input: std::process::ChildStdin,
    output: std::sync::Arc<std::sync::Mutex<String>>,
}

impl Terminal {
    fn run(command: &str, data_dir: &std::path::Path) -> Terminal {
        let mut child = Command::new("script")
            .args(["-q", "-e", "-c", command, "/dev/null"])
            .env("STAFFROOM_DATA_DIR", data_dir)
            .env_remove("STAFFROOM_DATABASE_URL")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("util-linux's script runs");
        let output = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let mut stdout = child.stdout.take().unwrap();
        let sink = output.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 1024];
            while let Ok(n) = stdout.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        let input = child.stdin.take().unwrap();
        Terminal { child, input, output }
    }

    /// Waits until `text` has been printed `times` times in all.
    fn expect(&self, text: &str, times: usize) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            let seen = self.output.lock().unwrap().clone();
            if seen.matches(text).count() >= times {
                return;
            }
            assert!(std::time::Instant::now() < deadline, "waited for {text:?} ×{times}; the terminal shows:\n{seen}");
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }

    fn type_line(&mut self, line: &str) {
        self.input.write_all(format!("{line}\n").as_bytes()).unwrap();
        self.input.flush().unwrap();
    }
}

#[test]
fn create_organiser_on_a_terminal_asks_twice_and_asks_again_after_a_short_or_mismatched_password() {
    let dir = tempfile::tempdir().unwrap();
    let command =
        format!("'{}' create-organiser --email head@school.org --name 'Ada Head'", env!("CARGO_BIN_EXE_staffroom"));
    let mut terminal = Terminal::run(&command, dir.path());
    let first = "Password for the organiser: ";
    let again = "The same password again: ";
    terminal.expect(first, 1);
    terminal.type_line("short");
    terminal.expect("at least", 1);
    terminal.expect(first, 2);
    terminal.type_line("a long password");
    terminal.expect(again, 1);
    terminal.type_line("a long passwort");
    terminal.expect("The two passwords are different: try again.", 1);
    terminal.expect(first, 3);
    terminal.type_line("a long password");
    terminal.expect(again, 2);
    terminal.type_line("a long password");
    terminal.expect("Created organiser head@school.org", 1);
    assert!(terminal.child.wait().unwrap().success(), "{}", terminal.output.lock().unwrap());
    assert!(!terminal.output.lock().unwrap().contains("a long password"), "the password is not echoed");

    let server = Server::start(dir.path());
    assert_eq!(server.sign_in("head@school.org", "a long password"), 200);
}

#[test]
fn demo_data_lists_every_demo_login_in_full_and_they_sign_in() {
    let dir = tempfile::tempdir().unwrap();
    let (ok, text) = staffroom(dir.path(), &["demo-data"]);
    assert!(ok, "{text}");
    assert!(text.contains("password staffroom-demo"), "{text}");
    let logins = [
        "organiser@staffroom.localhost",
        "amara.okafor@staffroom.localhost",
        "ravi.patel@staffroom.localhost",
        "sian.hughes@staffroom.localhost",
        "nia.teacher@staffroom.localhost",
    ];
    for email in logins {
        assert!(text.contains(email), "{email} in full: {text}");
    }
    let server = Server::start(dir.path());
    for email in logins {
        assert_eq!(server.sign_in(email, "staffroom-demo"), 200, "{email}");
    }
}
