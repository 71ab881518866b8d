//! Storage: one set of portable queries over `sqlx::Any`, run against SQLite
//! (the embedded default) or PostgreSQL, chosen by the URL scheme.
//!
//! Queries use `$1` placeholders, which both backends accept, and only the
//! types `Any` carries (integers, text). Times are Unix seconds in `i64`.
//!
//! SQLite allows one writer at a time, so on SQLite every write transaction goes
//! through a pool of one connection: writers queue in the pool instead of failing
//! with `SQLITE_BUSY`. On PostgreSQL both handles are the same pool.

use std::{str::FromStr, time::Duration};

use anyhow::Context;
use sqlx::{
    any::{AnyConnectOptions, AnyPoolOptions},
    migrate::Migrator,
    AnyPool, Executor,
};

static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("migrations/sqlite");
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("migrations/postgres");

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

#[derive(Clone)]
pub struct Db {
    /// For reads (and, on PostgreSQL, writes).
    pub read: AnyPool,
    /// For write transactions.
    pub write: AnyPool,
    pub backend: Backend,
}

pub type Tx = sqlx::Transaction<'static, sqlx::Any>;

impl Db {
    /// Connects to `url`, creating the SQLite file (and its folder) if missing.
    pub async fn connect(url: &str) -> anyhow::Result<Db> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Backend::Postgres
        } else {
            anyhow::bail!("database URL must start with sqlite:// or postgres://");
        };
        let options = AnyConnectOptions::from_str(url).context("invalid database URL")?;
        match backend {
            Backend::Sqlite => {
                if let Some(dir) = sqlite_folder(url) {
                    std::fs::create_dir_all(&dir).with_context(|| format!("failed to create {}", dir.display()))?;
                }
                let pool = |max| {
                    AnyPoolOptions::new()
                        .max_connections(max)
                        .acquire_timeout(Duration::from_secs(30))
                        .after_connect(|conn, _| {
                            Box::pin(async move {
                                conn.execute(
                                    "pragma journal_mode = wal; pragma synchronous = normal; \
                                     pragma foreign_keys = on; pragma busy_timeout = 10000;",
                                )
                                .await?;
                                Ok(())
                            })
                        })
                        .connect_with(options.clone())
                };
                let write = pool(1).await.context("failed to open the SQLite database")?;
                let read = pool(8).await.context("failed to open the SQLite database")?;
                Ok(Db { read, write, backend })
            }
            Backend::Postgres => {
                let pool = AnyPoolOptions::new()
                    .max_connections(16)
                    .acquire_timeout(Duration::from_secs(30))
                    .connect_with(options)
                    .await
                    .context("failed to connect to PostgreSQL")?;
                Ok(Db { read: pool.clone(), write: pool, backend })
            }
        }
    }

    pub async fn migrate(&self) -> anyhow::Result<()> {
        let migrator = match self.backend {
            Backend::Sqlite => &SQLITE_MIGRATIONS,
            Backend::Postgres => &POSTGRES_MIGRATIONS,
        };
        migrator.run(&self.write).await.context("failed to apply migrations")
    }

    /// Starts a write transaction.
    pub async fn begin(&self) -> Result<Tx, sqlx::Error> {
        self.write.begin().await
    }

    pub async fn is_reachable(&self) -> bool {
        sqlx::query("select 1").execute(&self.read).await.is_ok()
    }
}

/// The folder of a `sqlite://path/file.db?…` URL, if it names a file.
fn sqlite_folder(url: &str) -> Option<std::path::PathBuf> {
    let path = url.trim_start_matches("sqlite:").trim_start_matches("//");
    let path = path.split('?').next()?;
    if path.is_empty() || path == ":memory:" {
        return None;
    }
    std::path::Path::new(path).parent().map(|p| p.to_path_buf()).filter(|p| !p.as_os_str().is_empty())
}

/// The current time in Unix seconds.
pub fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// True when a database error is a unique-constraint violation.
pub fn is_unique_violation(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::Database(e) => e.is_unique_violation(),
        _ => false,
    }
}
