use anyhow::Context;
use clap::{Parser, Subcommand};
use staffroom::{settings::Settings, App};
use tracing_subscriber::EnvFilter;

/// Staffroom: a server for a free programme of professional-learning webinars.
/// Configuration comes from STAFFROOM_* environment variables (see README).
#[derive(Parser)]
#[command(version)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (the default).
    Serve,
    /// Create an organiser account, or make an existing account an organiser.
    CreateOrganiser {
        #[arg(long)]
        email: String,
        #[arg(long)]
        name: String,
        /// Prompted for when left out.
        #[arg(long)]
        password: Option<String>,
    },
    /// Fill an empty database with a small sample programme.
    DemoData,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match run().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,tower_http=info")),
        )
        .init();
    let cli = Cli::parse();
    let settings = Settings::from_env()?;
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => {
            let app = App::build(settings).await?;
            let url = app.state().public_url.clone();
            tracing::info!("Staffroom is running: open {url}/");
            println!("Staffroom is running: open {url}/");
            app.run(shutdown_signal()).await
        }
        Command::CreateOrganiser { email, name, password } => {
            let password = match password {
                Some(p) => p,
                None => {
                    rpassword::prompt_password("Password for the organiser: ").context("failed to read the password")?
                }
            };
            let outcome = staffroom::demo::create_organiser(&settings, &email, &name, &password).await?;
            println!("{outcome}");
            Ok(())
        }
        Command::DemoData => {
            let summary = staffroom::demo::fill(&settings).await?;
            println!("{summary}");
            Ok(())
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = terminate => {} }
    tracing::info!("shutting down");
}
