//! The `switchboard` command: parse the command line, load the configuration, run.

use std::path::PathBuf;

use anyhow::Context;
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use switchboard::{
    app::Gateway,
    channels,
    config::Config,
    replay,
    staff::Staff,
    store::{
        Store,
        users::{self, StaffRole},
    },
    telemetry,
    time::Clock,
};
use tokio::net::TcpListener;

/// jemalloc keeps a long-running server's memory compact: with thousands of idle event streams it
/// holds about 40% less per connection than the system allocator (see the README's performance
/// section), and it does not fragment across threads the way glibc's arenas do.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// The options above ([`switchboard::ALLOCATOR_OPTIONS`]), read by jemalloc when it starts.
// SAFETY: jemalloc reads this once, as a NUL-terminated string that lives as long as the process.
#[unsafe(export_name = "_rjem_malloc_conf")]
static MALLOC_CONF: Option<&'static std::ffi::c_char> =
    Some(unsafe { &*switchboard::ALLOCATOR_OPTIONS.as_ptr() });

/// Switchboard: a multi-channel messaging bot gateway.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// Configuration file (TOML). Without one, defaults and environment variables apply.
    #[arg(long, global = true, env = "SWITCHBOARD_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the gateway (the default).
    Serve,
    /// Bring the database schema up to date, then exit.
    Migrate,
    /// Post a recorded provider payload (a file under webhooks/<channel>/) to a running gateway,
    /// signed like the provider would (needs the channel's secret as the gateway has it).
    Replay {
        /// The payload, e.g. webhooks/<channel>/text.json.
        file: PathBuf,
        /// The gateway's base URL. Default: its configured listen address.
        #[arg(long)]
        url: Option<String>,
        /// Give the messages new ids, so that the same file can be replayed again and again
        /// (without it, a second replay is recognised as a provider retry).
        #[arg(long)]
        new_ids: bool,
        /// The channel's account to post to, when it has several (a bot's name). Default: the
        /// only one.
        #[arg(long, alias = "bot")]
        account: Option<String>,
    },
    /// Staff accounts: experts, supervisors, admins.
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// A channel's own commands: `switchboard <channel> <command>` (listed below).
    #[command(external_subcommand)]
    Channel(Vec<String>),
}

#[derive(Debug, Subcommand)]
enum UserCommand {
    /// Create an account. The password is read from SWITCHBOARD_USER_PASSWORD, or else from the
    /// first line of standard input (at least 10 characters).
    Add {
        /// Login and notification address.
        #[arg(long)]
        email: String,
        /// expert, supervisor or admin.
        #[arg(long)]
        role: StaffRole,
        /// Shown to colleagues and, for experts, to end users. Default: the address's local part.
        #[arg(long)]
        name: Option<String>,
        /// Open conversations at most (experts). Default: experts.default_capacity.
        #[arg(long)]
        capacity: Option<i64>,
    },
    /// List the accounts.
    List,
}

fn main() -> anyhow::Result<()> {
    let matches = Cli::command().after_help(channel_commands()).get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    let env = |name: &str| std::env::var(name).ok();
    let mut config = Config::load(cli.config.as_deref(), env)?;
    channels::configure(&mut config, env)?;
    telemetry::init(&config.log);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        match cli.command.unwrap_or(Command::Serve) {
            Command::Serve => serve(config).await,
            Command::Migrate => {
                let store = Store::connect(&config.database).await?;
                store.migrate().await?;
                store.close().await;
                tracing::info!("the database schema is up to date");
                Ok(())
            }
            Command::Replay {
                file,
                url,
                new_ids,
                account,
            } => {
                replay::run(
                    &config,
                    replay::Replay {
                        file: &file,
                        url,
                        new_ids,
                        account,
                    },
                )
                .await
            }
            Command::Channel(args) => channel_command(&config, &args).await,
            Command::User { command } => user(&config, command).await,
        }
    })
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let shutdown = shutdown_signal();
    let listener = TcpListener::bind(config.server.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.server.listen))?;
    let gateway = Gateway::build(config).await?;
    gateway.run(listener, shutdown).await
}

/// `switchboard user …`
async fn user(config: &Config, command: UserCommand) -> anyhow::Result<()> {
    let store = Store::connect(&config.database).await?;
    store.migrate().await?;
    let result = match command {
        UserCommand::Add {
            email,
            role,
            name,
            capacity,
        } => {
            let password = match std::env::var("SWITCHBOARD_USER_PASSWORD") {
                Ok(password) if !password.is_empty() => password,
                _ => {
                    let mut line = String::new();
                    std::io::stdin()
                        .read_line(&mut line)
                        .context("cannot read the password from standard input")?;
                    line.trim_end_matches(['\r', '\n']).to_owned()
                }
            };
            let staff = Staff::connect(
                &config.staff,
                &config.database,
                &config.limits,
                store.clone(),
                Clock::system(),
            )
            .await?;
            staff
                .add_user(
                    &email,
                    name.as_deref().unwrap_or_default(),
                    role,
                    &password,
                    capacity.unwrap_or(config.experts.default_capacity),
                    None,
                )
                .await
                .map(|user| println!("created {} {} ({})", user.role, user.email, user.id))
                .map_err(anyhow::Error::from)
        }
        UserCommand::List => {
            let all = users::list(&mut store.reader()).await?;
            for user in all {
                let state = if user.disabled_at.is_some() {
                    "disabled"
                } else {
                    "active"
                };
                println!(
                    "{}\t{}\t{}\t{}\t{state}",
                    user.id, user.role, user.email, user.display_name
                );
            }
            Ok(())
        }
    };
    store.close().await;
    result
}

/// `switchboard <channel> <command>`: a channel's own command.
async fn channel_command(config: &Config, args: &[String]) -> anyhow::Result<()> {
    let (name, command) = match args {
        [name, command] => (name.as_str(), command.as_str()),
        _ => anyhow::bail!(
            "usage: switchboard <channel> <command>\n\n{}",
            channel_commands()
        ),
    };
    let Some(kind) = channels::kind(name) else {
        anyhow::bail!(
            "no such command or channel: {name}\n\n{}",
            channel_commands()
        );
    };
    let host = switchboard_channel::plugin::CommandHost {
        public_url: config.server.public_url.clone(),
    };
    let printed = kind
        .run_command(channels::section(config, kind), command, &host)
        .await
        .map_err(anyhow::Error::msg)?;
    println!("{printed}");
    Ok(())
}

/// The channels' commands, for the help text.
fn channel_commands() -> String {
    let mut text = String::from("Channel commands:\n");
    for kind in channels::KINDS {
        for (command, help) in kind.commands() {
            text.push_str(&format!("  {} {command}\n      {help}\n", kind.channel()));
        }
    }
    text
}

/// Completes on Ctrl-C or SIGTERM.
fn shutdown_signal() -> impl std::future::Future<Output = ()> + Send + 'static {
    // Registered now, before the gateway starts listening: a signal that arrives while it starts
    // (a supervisor stopping it at once) is seen, not fatal.
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let interrupt = signal(SignalKind::interrupt());
        let terminate = signal(SignalKind::terminate());
        async move {
            match (interrupt, terminate) {
                (Ok(mut interrupt), Ok(mut terminate)) => {
                    tokio::select! {
                        _ = interrupt.recv() => {}
                        _ = terminate.recv() => {}
                    }
                }
                (Err(e), _) | (_, Err(e)) => {
                    tracing::error!(error = %e, "cannot listen for SIGINT and SIGTERM");
                    std::future::pending::<()>().await;
                }
            }
        }
    }
    #[cfg(not(unix))]
    async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    }
}
