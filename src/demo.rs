//! Command-line set-up: the first organiser, and a sample programme so a new
//! installation shows something real at once.

use chrono::{Datelike, Duration, TimeZone, Utc};

use crate::{
    auth::{self, password},
    db::{self, Db},
    mail::address::EmailAddress,
    settings::Settings,
};

async fn open(settings: &Settings) -> anyhow::Result<Db> {
    let db = Db::connect(&settings.database_url).await?;
    db.migrate().await?;
    Ok(db)
}

/// Inserts a verified account, or returns the existing one's id.
async fn ensure_account(
    db: &Db,
    email: &str,
    name: &str,
    school: &str,
    stage: &str,
    pw: &str,
    organiser: bool,
) -> anyhow::Result<(i64, bool)> {
    if let Some(user) = auth::find_user_by_email(db, email).await? {
        return Ok((user.id, false));
    }
    let hash = password::hash(pw.to_string()).await?;
    let now = db::now();
    let mut tx = db.begin().await?;
    let id: i64 = sqlx::query_scalar(
        "insert into users (email, name, school, stage, password_hash, is_organiser, email_verified_at, created_at, updated_at)
         values ($1, $2, $3, $4, $5, $6, $7, $7, $7) returning id",
    )
    .bind(email)
    .bind(name)
    .bind(school)
    .bind(stage)
    .bind(&hash)
    .bind(organiser as i64)
    .bind(now)
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok((id, true))
}

/// `staffroom create-organiser`: creates the account, or promotes an existing one.
pub async fn create_organiser(settings: &Settings, email: &str, name: &str, pw: &str) -> anyhow::Result<String> {
    let email = EmailAddress::try_parse(email).map_err(|e| anyhow::anyhow!(e))?;
    let name = name.trim();
    anyhow::ensure!(!name.is_empty(), "--name must not be empty");
    let db = open(settings).await?;
    if auth::find_user_by_email(&db, email.as_str()).await?.is_none() {
        password::check_strength("password", pw).map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    let (id, created) = ensure_account(&db, email.as_str(), name, "", "other", pw, true).await?;
    let mut tx = db.begin().await?;
    sqlx::query("update users set is_organiser = 1, updated_at = $1 where id = $2")
        .bind(db::now())
        .bind(id)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(if created {
        format!("Created organiser {} (account {id}). Sign in at /signin.html.", email.as_str())
    } else {
        format!("{} is now an organiser (account {id}).", email.as_str())
    })
}

/// The password every demo account gets.
pub const DEMO_PASSWORD: &str = "staffroom-demo";

/// `staffroom demo-data`: a few sessions across audiences and series, with
/// presenters and an organiser. Refuses a database that already has sessions.
pub async fn fill(settings: &Settings) -> anyhow::Result<String> {
    let db = open(settings).await?;
    let existing: i64 = sqlx::query_scalar("select count(*) from sessions").fetch_one(&db.read).await?;
    anyhow::ensure!(
        existing == 0,
        "the database already has {existing} sessions; demo data only goes into an empty programme"
    );
    let (organiser, _) = ensure_account(
        &db,
        "organiser@staffroom.localhost",
        "Olivia Organiser",
        "Staffroom",
        "other",
        DEMO_PASSWORD,
        true,
    )
    .await?;
    let (okafor, _) = ensure_account(
        &db,
        "amara.okafor@staffroom.localhost",
        "Dr Amara Okafor",
        "Institute of Education",
        "other",
        DEMO_PASSWORD,
        false,
    )
    .await?;
    let (patel, _) = ensure_account(
        &db,
        "ravi.patel@staffroom.localhost",
        "Ravi Patel",
        "Northfield Academy",
        "senior_leader",
        DEMO_PASSWORD,
        false,
    )
    .await?;
    let (hughes, _) = ensure_account(
        &db,
        "sian.hughes@staffroom.localhost",
        "Siân Hughes",
        "Castle Primary",
        "middle_leader",
        DEMO_PASSWORD,
        false,
    )
    .await?;
    ensure_account(
        &db,
        "nia.teacher@staffroom.localhost",
        "Nia Evans",
        "Riverside Primary",
        "ect",
        DEMO_PASSWORD,
        false,
    )
    .await?;

    // Sessions at 16:00 UTC on weekdays over the coming weeks.
    let today = Utc::now().date_naive();
    let at = |days: i64, hour: u32| {
        let mut d = today + Duration::days(days);
        while d.weekday().number_from_monday() > 5 {
            d += Duration::days(1);
        }
        Utc.from_utc_datetime(&d.and_hms_opt(hour, 0, 0).unwrap_or_default())
    };
    let sessions: [(&str, &str, &str, Option<&str>, Option<&str>, Option<&str>, &[&str], i64, u32, i64, i64, i64); 6] = [
        ("Behaviour that lets learning happen", "Routines, relationships and responses: what the evidence says about calm classrooms, and how to start on Monday.",
         "masterclass", Some("Early Career Framework"), None, Some("all"), &["ect", "trainee"], 3, 16, 60, 200, okafor),
        ("Retrieval practice without the tedium", "Low-stakes quizzing, spacing and interleaving that pupils enjoy. Bring a unit you are about to teach.",
         "webinar", Some("Early Career Framework"), None, Some("secondary"), &["ect", "teacher"], 8, 16, 60, 150, okafor),
        ("Leading a department through curriculum change", "Sequencing, shared planning time and keeping the team with you.",
         "masterclass", Some("Leading Learning"), None, Some("secondary"), &["middle_leaders", "leaders"], 10, 16, 75, 80, patel),
        ("Early reading: phonics catch-up that works", "Assessment, small-group teaching and tracking for pupils who fall behind in Year 1 and 2.",
         "workshop", None, Some("English"), Some("primary"), &["ect", "teacher"], 12, 16, 60, 40, hughes),
        ("Coaching conversations for mentors", "A practical model for weekly mentor meetings with early-career teachers, with practice in pairs.",
         "coaching", Some("Mentoring"), None, Some("all"), &["mentors", "middle_leaders"], 15, 16, 60, 12, hughes),
        ("Maths mastery in mixed-attainment classes", "Variation, representations and keeping the whole class together.",
         "webinar", None, Some("Maths"), Some("primary"), &["teacher", "ect"], 19, 16, 60, 120, patel),
    ];
    let now = db::now();
    let mut tx = db.begin().await?;
    for (title, description, kind, series, subject, phase, audiences, days, hour, minutes, capacity, presenter) in
        sessions
    {
        let start = at(days, hour);
        let id: i64 = sqlx::query_scalar(
            "insert into sessions (title, description, kind, series, subject, phase, starts_at, ends_at, capacity, status,
                                   created_by, created_at, updated_at)
             values ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'published', $10, $11, $11) returning id",
        )
        .bind(title)
        .bind(description)
        .bind(kind)
        .bind(series)
        .bind(subject)
        .bind(phase)
        .bind(start.timestamp())
        .bind((start + Duration::minutes(minutes)).timestamp())
        .bind(capacity)
        .bind(organiser)
        .bind(now)
        .fetch_one(&mut *tx)
        .await?;
        for a in audiences {
            sqlx::query("insert into session_audiences (session_id, audience) values ($1, $2)")
                .bind(id)
                .bind(*a)
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query("insert into session_presenters (session_id, user_id) values ($1, $2)")
            .bind(id)
            .bind(presenter)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(format!(
        "Added 6 sessions. Demo accounts (password {DEMO_PASSWORD}): organiser@staffroom.localhost (organiser), \
         amara.okafor@, ravi.patel@, sian.hughes@ (presenters) and nia.teacher@staffroom.localhost (an early-career teacher)."
    ))
}
