//! The `cronbyte` command: parses the command line and hands over to the library.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, CommandFactory, Parser, Subcommand};

use cronbyte::commands::{self, HistoryArgs, OutputFormat};
use cronbyte::remote::Action;
use cronbyte::takeover::command::{ImportArgs, ImportMode};

/// Runs Airbyte syncs on cron rules, keeps their history and exports metrics.
#[derive(Parser)]
#[command(name = "cronbyte", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Args)]
struct ConfigArg {
    /// The config file (TOML, or YAML by extension).
    #[arg(
        long,
        short,
        env = "CRONBYTE_CONFIG",
        default_value = "/etc/cronbyte/cronbyte.toml"
    )]
    config: PathBuf,
}

/// How to reach a running daemon: its config gives the address and token.
#[derive(Args)]
struct RemoteArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// The daemon's address, instead of `[server].listen` (e.g. http://10.0.0.5:9464).
    #[arg(long)]
    url: Option<String>,
    #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
    format: OutputFormat,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon until SIGTERM or Ctrl-C; SIGHUP reloads the config.
    Run(ConfigArg),
    /// Validate a config file without starting anything; exit 2 on any problem.
    Check {
        #[command(flatten)]
        config: ConfigArg,
        /// Also ask each Airbyte instance which configured connections it schedules itself
        /// (a warning each: they would sync twice); exit 1 if one cannot be asked.
        #[arg(long)]
        online: bool,
    },
    /// Show recent runs from the history (read from the store, daemon or not).
    History {
        #[command(flatten)]
        config: ConfigArg,
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
        #[command(flatten)]
        config: ConfigArg,
        /// Copy this SQLite history into the (empty) PostgreSQL store `[store] url` names.
        #[arg(long, value_name = "PATH")]
        from_sqlite: Option<std::path::PathBuf>,
    },
    /// Show what `apply` would change in Airbyte; exit 0 when nothing, 2 when something.
    Plan(ConfigArg),
    /// Create or update the declared sources, destinations and connections in Airbyte.
    Apply {
        #[command(flatten)]
        config: ConfigArg,
        /// Delete without asking (with --prune).
        #[arg(long)]
        yes: bool,
        /// Also delete what Airbyte has and the config does not declare.
        #[arg(long)]
        prune: bool,
    },
    /// Write Airbyte's connections as [[connections]] entries with their schedules as cron
    /// rules; or, with --take-over, set the ones the config schedules to manual in Airbyte;
    /// or, with --give-back, restore what a take-over recorded.
    Import {
        #[command(flatten)]
        config: ConfigArg,
        /// Only this Airbyte instance of the config (default: every one in turn).
        #[arg(long)]
        instance: Option<String>,
        /// Write the entries to this new file instead of standard output.
        #[arg(long, conflicts_with_all = ["take_over", "give_back"])]
        output: Option<PathBuf>,
        /// Set the connections that Airbyte and the config both schedule to manual in
        /// Airbyte, after showing them and asking (or --yes); exit 2 if some Airbyte
        /// schedules are refused because the config does not schedule them.
        #[arg(long, conflicts_with = "give_back")]
        take_over: bool,
        /// Give the connections a take-over set to manual their schedules back.
        #[arg(long)]
        give_back: bool,
        /// Where a take-over keeps each connection's schedule (JSON, mode 0600; default:
        /// beside the config file, CONFIG.takeover.json).
        #[arg(long, value_name = "FILE")]
        record: Option<PathBuf>,
        /// Change Airbyte without asking (with --take-over or --give-back).
        #[arg(long)]
        yes: bool,
    },
    /// Print the documented example config, every key with its default.
    DefaultConfig,
    /// The running daemon's connections: rule, next and last run, pause state,
    /// and the running syncs' records, rate and time left.
    Status(RemoteArgs),
    /// Follow the running daemon's syncs live: progress bars on a terminal (plain
    /// lines when piped), the next syncs due, failures as they happen; Ctrl-C ends it.
    Watch {
        /// Only these connections (all when none is named).
        names: Vec<String>,
        /// How often to ask the daemon (e.g. 2s, 500ms).
        #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
        interval: std::time::Duration,
        #[command(flatten)]
        config: ConfigArg,
        /// The daemon's address, instead of `[server].listen`.
        #[arg(long)]
        url: Option<String>,
    },
    /// The next fire instants of a connection's rule, in its zone and in UTC
    /// (read from the config alone: no daemon, no secret).
    Next {
        /// The connection's configured name.
        name: String,
        /// How many instants to show.
        #[arg(long, short = 'n', default_value_t = 10, value_parser = clap::value_parser!(u16).range(1..=1000))]
        count: u16,
        #[command(flatten)]
        config: ConfigArg,
        #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
        format: OutputFormat,
    },
    /// Start a sync of a connection now (same overlap policy as a tick).
    Trigger {
        /// The connection's configured name.
        name: String,
        #[command(flatten)]
        remote: RemoteArgs,
    },
    /// Cancel a run: its Airbyte job if it has one.
    Cancel {
        /// The run id, as `history` and `status` show it.
        run: i64,
        #[command(flatten)]
        remote: RemoteArgs,
    },
    /// Pause a connection: its ticks are not claimed until resumed.
    Pause {
        name: String,
        #[command(flatten)]
        remote: RemoteArgs,
    },
    /// Resume a paused connection; missed ticks follow its misfire policy.
    Resume {
        name: String,
        #[command(flatten)]
        remote: RemoteArgs,
    },
    /// Make the running daemon read its config file again.
    Reload(RemoteArgs),
    /// Exit 0 when the daemon's /healthz answers (for container health checks).
    Healthcheck {
        #[arg(long, default_value = "http://127.0.0.1:9464/healthz")]
        url: String,
    },
    /// Print shell completions.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
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

fn main() -> ExitCode {
    // Before the runtime starts its threads, which is when the allocator's arenas appear.
    cronbyte::allocator::tune();
    cronbyte::tls::install();
    let cli = Cli::parse();
    match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime.block_on(run(cli)),
        Err(e) => {
            eprintln!("error: could not start the async runtime: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> ExitCode {
    let remote = |args: RemoteArgs, action: Action| async move {
        commands::remote(
            &args.config.config,
            args.url.as_deref(),
            action,
            args.format,
        )
        .await
    };
    let result = match cli.command {
        Command::Run(c) => commands::run(&c.config).await,
        Command::Check { config, online } => commands::check(&config.config, online).await,
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
            commands::history(&config.config, &args).await
        }
        Command::Migrate {
            config,
            from_sqlite,
        } => commands::migrate(&config.config, from_sqlite.as_deref()).await,
        Command::Plan(c) => cronbyte::pipeline::plan(&c.config).await,
        Command::Apply { config, yes, prune } => {
            cronbyte::pipeline::apply(&config.config, yes, prune).await
        }
        Command::Import {
            config,
            instance,
            output,
            take_over,
            give_back,
            record,
            yes,
        } => {
            let mode = if take_over {
                ImportMode::TakeOver
            } else if give_back {
                ImportMode::GiveBack
            } else {
                ImportMode::Entries { output }
            };
            let args = ImportArgs {
                mode,
                instance,
                record,
                yes,
            };
            cronbyte::takeover::command::run_import(&config.config, &args).await
        }
        Command::DefaultConfig => {
            print!("{}", cronbyte::config::EXAMPLE);
            Ok(ExitCode::SUCCESS)
        }
        Command::Status(args) => remote(args, Action::Status).await,
        Command::Watch {
            names,
            interval,
            config,
            url,
        } => commands::watch(&config.config, url.as_deref(), &names, interval).await,
        Command::Next {
            name,
            count,
            config,
            format,
        } => commands::next(&config.config, &name, usize::from(count), format),
        Command::Trigger { name, remote: args } => remote(args, Action::Trigger(name)).await,
        Command::Cancel { run, remote: args } => remote(args, Action::Cancel(run)).await,
        Command::Pause { name, remote: args } => remote(args, Action::Pause(name)).await,
        Command::Resume { name, remote: args } => remote(args, Action::Resume(name)).await,
        Command::Reload(args) => remote(args, Action::Reload).await,
        Command::Healthcheck { url } => commands::healthcheck(&url).await,
        Command::Completions { shell } => {
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "cronbyte",
                &mut std::io::stdout(),
            );
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
