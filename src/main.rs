//! The `cronbyte` command: parses the command line and hands over to the library.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use cronbyte::commands::{self, HistoryArgs, OutputFormat};

/// Runs Airbyte syncs on cron rules, keeps their history and exports metrics.
#[derive(Parser)]
#[command(name = "cronbyte", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon until SIGTERM or Ctrl-C.
    Run {
        /// The config file (TOML, or YAML by extension).
        #[arg(long, short, env = "CRONBYTE_CONFIG", default_value = "/etc/cronbyte/cronbyte.toml")]
        config: PathBuf,
    },
    /// Validate a config file without starting anything; exit 2 on any problem.
    Check {
        #[arg(long, short, env = "CRONBYTE_CONFIG", default_value = "/etc/cronbyte/cronbyte.toml")]
        config: PathBuf,
    },
    /// Show recent runs from the history.
    History {
        #[arg(long, short, env = "CRONBYTE_CONFIG", default_value = "/etc/cronbyte/cronbyte.toml")]
        config: PathBuf,
        /// Only this connection's runs (its configured name).
        #[arg(long)]
        connection: Option<String>,
        /// At most this many runs, newest first.
        #[arg(long, default_value_t = 20)]
        limit: u32,
        #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
        format: OutputFormat,
    },
    /// Apply the history store's pending migrations, then exit.
    Migrate {
        #[arg(long, short, env = "CRONBYTE_CONFIG", default_value = "/etc/cronbyte/cronbyte.toml")]
        config: PathBuf,
    },
    /// Print the documented example config, every key with its default.
    DefaultConfig,
    /// Serve an in-memory Airbyte emulator (for trying cronbyte out, and for tests).
    Emulator {
        #[arg(long, default_value = "127.0.0.1:8001")]
        listen: SocketAddr,
    },
    /// Start the emulator and the daemon together on a demo config.
    Demo {
        /// Where `/metrics` and `/healthz` answer.
        #[arg(long, default_value = "127.0.0.1:9464")]
        listen: SocketAddr,
        /// Where the demo writes its config and history.
        #[arg(long)]
        dir: Option<PathBuf>,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run { config } => commands::run(&config).await,
        Command::Check { config } => commands::check(&config),
        Command::History {
            config,
            connection,
            limit,
            format,
        } => {
            let args = HistoryArgs {
                connection,
                limit,
                format,
            };
            commands::history(&config, &args).await
        }
        Command::Migrate { config } => commands::migrate(&config).await,
        Command::DefaultConfig => {
            print!("{}", cronbyte::config::EXAMPLE);
            Ok(ExitCode::SUCCESS)
        }
        Command::Emulator { listen } => commands::emulator(listen).await,
        Command::Demo { listen, dir } => cronbyte::demo::run(listen, dir).await,
    };
    result.unwrap_or_else(|e| {
        eprintln!("cronbyte: {e:#}");
        ExitCode::FAILURE
    })
}
