use std::io::{BufRead, IsTerminal};

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
    /// The password is asked for twice on the terminal, unless it is given
    /// with --password-stdin or --password.
    CreateOrganiser {
        #[arg(long)]
        email: String,
        #[arg(long)]
        name: String,
        /// Read the password from the first line of standard input (for scripts: `echo "$PW" | staffroom create-organiser … --password-stdin`).
        #[arg(long, conflicts_with = "password")]
        password_stdin: bool,
        /// The password itself. Other people on the machine can see it in the process list: prefer the prompt or --password-stdin.
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
            // Once, on standard output, where people and the browser tests read it
            // (a tracing line too would print it twice, as the log also goes there).
            println!("Staffroom is running: open {url}/");
            app.run(shutdown_signal()).await
        }
        Command::CreateOrganiser { email, name, password_stdin, password } => {
            // An existing account only becomes an organiser: it keeps its password.
            let needed = staffroom::demo::organiser_needs_password(&settings, &email).await?;
            let password = match (password, password_stdin) {
                _ if !needed => String::new(),
                (Some(p), _) => p,
                (None, true) => password_from_stdin()?,
                (None, false) => password_from_terminal()?,
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

/// The first line of standard input, without its line ending.
fn password_from_stdin() -> anyhow::Result<String> {
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line).context("failed to read the password from standard input")?;
    let password = line.trim_end_matches(['\n', '\r']).to_string();
    anyhow::ensure!(!password.is_empty(), "--password-stdin: standard input has no password on its first line");
    Ok(password)
}

/// Asks on the terminal, twice, until the two agree and the password is
/// long enough: a typing slip is corrected there and then, not by running
/// the command again.
fn password_from_terminal() -> anyhow::Result<String> {
    anyhow::ensure!(
        std::io::stdin().is_terminal(),
        "there is no terminal to ask for the password on: pipe it in with --password-stdin, or give --password"
    );
    const TRIES: usize = 5;
    for _ in 0..TRIES {
        let first =
            rpassword::prompt_password("Password for the organiser: ").context("failed to read the password")?;
        if let Err(e) = staffroom::auth::password::check_strength("password", &first) {
            eprintln!("{}: try again.", capitalised(&e.to_string()));
            continue;
        }
        let again = rpassword::prompt_password("The same password again: ").context("failed to read the password")?;
        if first == again {
            return Ok(first);
        }
        eprintln!("The two passwords are different: try again.");
    }
    anyhow::bail!("no password after {TRIES} tries")
}

fn capitalised(text: &str) -> String {
    let mut chars = text.chars();
    chars.next().map(|c| c.to_uppercase().chain(chars).collect()).unwrap_or_default()
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
