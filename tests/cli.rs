//! The command line a new installation starts with: create-organiser and demo-data.

use std::process::Command;

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
