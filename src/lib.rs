//! Staffroom: a server for a free programme of professional-learning webinars.
//!
//! [`App::build`] opens the database, applies migrations, binds the listener
//! (port 0 allowed, for tests) and [`App::run`] serves HTTP while the mail
//! delivery worker and the reminder scheduler run beside it; live rooms start
//! as people join them.

pub mod account_removal;
pub mod attendance;
pub mod auth;
pub mod breakout;
pub mod calendar;
pub mod db;
pub mod demo;
pub mod http;
pub mod interaction;
pub mod mail;
pub mod media;
pub mod programme;
pub mod record;
pub mod recording;
pub mod registration;
pub mod rooms;
pub mod routes;
pub mod settings;

use std::{future::Future, sync::Arc};

use anyhow::Context;
use tokio::{net::TcpListener, sync::Notify};

use crate::{auth::tokens::Keys, db::Db, settings::Settings};

/// Everything a handler needs, cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub db: Db,
    pub settings: Arc<Settings>,
    pub keys: Arc<Keys>,
    /// Base URL for links in emails, without a trailing slash.
    pub public_url: Arc<str>,
    /// Wakes the mail worker after a transaction queued mail.
    pub mail_wake: Arc<Notify>,
    pub throttle: Arc<auth::throttle::SignInThrottle>,
    /// Limits sign-ups, verification resends and reset requests (the routes
    /// that mail an address the caller names).
    pub mail_throttle: Arc<auth::throttle::MailThrottle>,
    /// The live rooms: each owned by its own task.
    pub rooms: Arc<rooms::Rooms>,
}

pub struct App {
    listener: TcpListener,
    state: AppState,
}

impl App {
    pub async fn build(settings: Settings) -> anyhow::Result<App> {
        let db = Db::connect(&settings.database_url).await?;
        db.migrate().await?;
        attendance::journal::close_unclosed_rooms(&db)
            .await
            .context("failed to close the rooms an unclean stop left open")?;
        recording::recover(&db, &settings.recordings_dir).await.context("failed to recover unfinished recordings")?;
        let keys = Keys::load_or_create(settings.jwt_secret.as_deref(), &settings.data_dir)?;
        record::credential::move_key_out_of_database(&db, &settings.cert_key_file)
            .await
            .context("failed to move the certificate signing key out of the database")?;
        let listener =
            TcpListener::bind(settings.addr).await.with_context(|| format!("failed to listen on {}", settings.addr))?;
        let port = listener.local_addr()?.port();
        let public_url: Arc<str> = match &settings.public_url {
            Some(url) => url.as_str().into(),
            None => format!("http://{}:{port}", settings.addr.ip()).into(),
        };
        let rooms = Arc::new(rooms::Rooms::new(
            db.clone(),
            media::Media::start(&settings.rtc)?,
            settings.recordings_dir.clone(),
            settings.room_heartbeat,
            settings.empty_room_end,
        ));
        let mail_throttle = Arc::new(auth::throttle::MailThrottle::new(settings.throttle_ip_per_hour));
        let state = AppState {
            db,
            settings: Arc::new(settings),
            keys: Arc::new(keys),
            public_url,
            mail_wake: Arc::new(Notify::new()),
            throttle: Arc::new(auth::throttle::SignInThrottle::default()),
            mail_throttle,
            rooms,
        };
        Ok(App { listener, state })
    }

    pub fn port(&self) -> u16 {
        self.listener.local_addr().map(|a| a.port()).unwrap_or(0)
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until `shutdown` completes; the background workers stop with it.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
        let App { listener, state } = self;
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let mailer = tokio::spawn(mail::worker::run(state.clone(), stop_rx.clone()));
        let reminders = tokio::spawn(registration::reminders::run(state.clone(), stop_rx.clone()));
        let downloads = tokio::spawn(recording::download::run(
            state.db.clone(),
            state.settings.recordings_dir.clone(),
            state.settings.ffmpeg.clone(),
            stop_rx,
        ));
        let rooms = state.rooms.clone();
        let router = routes::router(state);
        // Rooms end first: everyone in one is told and recorded as `ended`,
        // and their WebSockets close, so the graceful shutdown can finish.
        let shutdown = async move {
            shutdown.await;
            rooms.end_all().await;
        };
        let served = axum::serve(listener, router.into_make_service_with_connect_info::<std::net::SocketAddr>())
            .with_graceful_shutdown(shutdown)
            .await;
        let _ = stop_tx.send(true);
        let _ = mailer.await;
        let _ = reminders.await;
        let _ = downloads.await;
        served.context("HTTP server failed")
    }
}
