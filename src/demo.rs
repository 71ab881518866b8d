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

/// Whether `create-organiser` needs a password for `email`: not when the
/// account exists (it is only promoted), so nobody is asked for one in vain.
/// A malformed address needs none either: `create_organiser` refuses it.
pub async fn organiser_needs_password(settings: &Settings, email: &str) -> anyhow::Result<bool> {
    let Ok(email) = EmailAddress::try_parse(email) else { return Ok(false) };
    let db = open(settings).await?;
    Ok(auth::find_user_by_email(&db, email.as_str()).await?.is_none())
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
    // The operator vouches for the address: an organiser must be able to run
    // rooms (which need a verified address) without a verification mail.
    sqlx::query(
        "update users set is_organiser = 1, email_verified_at = coalesce(email_verified_at, $1), updated_at = $1
         where id = $2",
    )
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

struct DemoSession {
    title: &'static str,
    description: &'static str,
    kind: &'static str,
    series: Option<&'static str>,
    subject: Option<&'static str>,
    phase: Option<&'static str>,
    audiences: &'static [&'static str],
    in_days: i64,
    hour: u32,
    minutes: i64,
    capacity: i64,
    presenter: i64,
}

/// The password every demo account gets.
pub const DEMO_PASSWORD: &str = "staffroom-demo";

/// `staffroom demo-data`: a few sessions across audiences and series, with
/// presenters and an organiser. Refuses a database that already has sessions.
/// The demo accounts `fill` makes, as `demo-data` lists them.
const DEMO_LOGINS: [(&str, &str); 5] = [
    ("organiser@staffroom.localhost", "organiser"),
    ("amara.okafor@staffroom.localhost", "presenter"),
    ("ravi.patel@staffroom.localhost", "presenter"),
    ("sian.hughes@staffroom.localhost", "presenter"),
    ("nia.teacher@staffroom.localhost", "early-career teacher"),
];

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
    let sessions = [
        DemoSession {
            title: "Behaviour that lets learning happen",
            description: "Routines, relationships and responses: what the evidence says about calm classrooms, and how to start on Monday.",
            kind: "masterclass",
            series: Some("Early Career Framework"),
            subject: None,
            phase: Some("all"),
            audiences: &["ect", "trainee"],
            in_days: 3,
            hour: 16,
            minutes: 60,
            capacity: 200,
            presenter: okafor,
        },
        DemoSession {
            title: "Retrieval practice without the tedium",
            description: "Low-stakes quizzing, spacing and interleaving that pupils enjoy. Bring a unit you are about to teach.",
            kind: "webinar",
            series: Some("Early Career Framework"),
            subject: None,
            phase: Some("secondary"),
            audiences: &["ect", "teacher"],
            in_days: 8,
            hour: 16,
            minutes: 60,
            capacity: 150,
            presenter: okafor,
        },
        DemoSession {
            title: "Leading a department through curriculum change",
            description: "Sequencing, shared planning time and keeping the team with you.",
            kind: "masterclass",
            series: Some("Leading Learning"),
            subject: None,
            phase: Some("secondary"),
            audiences: &["middle_leaders", "leaders"],
            in_days: 10,
            hour: 16,
            minutes: 75,
            capacity: 80,
            presenter: patel,
        },
        DemoSession {
            title: "Early reading: phonics catch-up that works",
            description: "Assessment, small-group teaching and tracking for pupils who fall behind in Year 1 and 2.",
            kind: "workshop",
            series: None,
            subject: Some("English"),
            phase: Some("primary"),
            audiences: &["ect", "teacher"],
            in_days: 12,
            hour: 16,
            minutes: 60,
            capacity: 40,
            presenter: hughes,
        },
        DemoSession {
            title: "Coaching conversations for mentors",
            description: "A practical model for weekly mentor meetings with early-career teachers, with practice in pairs.",
            kind: "coaching",
            series: Some("Mentoring"),
            subject: None,
            phase: Some("all"),
            audiences: &["mentors", "middle_leaders"],
            in_days: 15,
            hour: 16,
            minutes: 60,
            capacity: 12,
            presenter: hughes,
        },
        DemoSession {
            title: "Maths mastery in mixed-attainment classes",
            description: "Variation, representations and keeping the whole class together.",
            kind: "webinar",
            series: None,
            subject: Some("Maths"),
            phase: Some("primary"),
            audiences: &["teacher", "ect"],
            in_days: 19,
            hour: 16,
            minutes: 60,
            capacity: 120,
            presenter: patel,
        },
    ];
    let now = db::now();
    let mut tx = db.begin().await?;
    for d in sessions {
        let start = at(d.in_days, d.hour);
        let id: i64 = sqlx::query_scalar(
            "insert into sessions (title, description, kind, series, subject, phase, starts_at, ends_at, capacity, status,
                                   created_by, created_at, updated_at)
             values ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'published', $10, $11, $11) returning id",
        )
        .bind(d.title)
        .bind(d.description)
        .bind(d.kind)
        .bind(d.series)
        .bind(d.subject)
        .bind(d.phase)
        .bind(start.timestamp())
        .bind((start + Duration::minutes(d.minutes)).timestamp())
        .bind(d.capacity)
        .bind(organiser)
        .bind(now)
        .fetch_one(&mut *tx)
        .await?;
        for a in d.audiences {
            sqlx::query("insert into session_audiences (session_id, audience) values ($1, $2)")
                .bind(id)
                .bind(*a)
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query("insert into session_presenters (session_id, user_id) values ($1, $2)")
            .bind(id)
            .bind(d.presenter)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    // Each login in full, one a line, so it can be copied into the sign-in form as it is.
    let logins: String = DEMO_LOGINS.iter().map(|(email, who)| format!("\n  {email:<36} {who}")).collect();
    Ok(format!("Added 6 sessions. Demo accounts, each with the password {DEMO_PASSWORD}:{logins}"))
}
