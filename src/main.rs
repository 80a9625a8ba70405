//! The command line: parse, wire, exit with the documented code. The work is in the library.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use algorithmia_datadog::config::{process_env, Config, ConfigSource};
use algorithmia_datadog::{
    assets, demo, discover, validate_client_config, Output, RunOptions, Shutdown,
};

/// Exit code for a configuration that cannot be used.
const EXIT_CONFIG: u8 = 2;

/// Forwards Algorithmia Insights metrics from Kafka to the local Datadog Agent (DogStatsD).
#[derive(Parser)]
#[command(version, about, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Forward until SIGTERM or SIGINT (the default).
    Run(RunArgs),
    /// Validate the configuration and print the effective settings, secrets redacted.
    CheckConfig(ConfigArg),
    /// Forward realistic sample messages from an embedded Kafka to the configured Agent.
    Demo(DemoArgs),
    /// Read the newest messages of the topic (read-only: no group joined, nothing committed) and
    /// say what the models publish, with a configuration and the drift monitors to suggest.
    Discover(DiscoverArgs),
    /// Manage the bundled Datadog dashboard and monitors.
    #[command(subcommand)]
    Assets(AssetsCommand),
}

#[derive(Subcommand)]
enum AssetsCommand {
    /// Create the dashboard and monitors in your account, or update the ones with the same title
    /// (DD_API_KEY, DD_APP_KEY, DD_SITE).
    Install {
        /// The API's base URL, instead of https://api.<DD_SITE> (a proxy, a test server).
        #[arg(long, value_name = "URL")]
        api_url: Option<String>,
    },
}

#[derive(Args, Clone)]
struct ConfigArg {
    /// Configuration file [default: conf.d/algorithmia.yaml, else KAFKA_BROKER/KAFKA_TOPIC]
    #[arg(long, value_name = "PATH")]
    config: Option<PathBuf>,
}

#[derive(Args, Clone)]
struct RunArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// Write each datagram to standard output instead of sending it.
    #[arg(long)]
    dry_run: bool,
}

#[derive(Args, Clone)]
struct DemoArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// How many messages to produce and forward.
    #[arg(long, default_value_t = 10_000)]
    messages: u64,
    /// Also print every datagram.
    #[arg(long)]
    print: bool,
}

#[derive(Args, Clone)]
struct DiscoverArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// How many of the newest messages to read, spread over the topic's partitions.
    #[arg(long, default_value_t = discover::DEFAULT_MESSAGES, value_parser = clap::value_parser!(u64).range(1..))]
    messages: u64,
    /// Which of the configuration's instances (its topic, brokers and mapping rules).
    #[arg(long, default_value_t = 0)]
    instance: usize,
    /// Give up after this long: 30s, 2m, 500ms.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    timeout: Duration,
    /// text for a terminal, json for scripts.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
}

#[derive(clap::ValueEnum, Clone, Copy, PartialEq, Eq)]
enum Format {
    Text,
    Json,
}

/// `500ms`, `30s`, `2m`, or a number of seconds.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, unit) = match text.find(|c: char| !c.is_ascii_digit() && c != '.') {
        Some(at) => text.split_at(at),
        None => (text, "s"),
    };
    let value: f64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a duration (30s, 2m, 500ms)"))?;
    let seconds = match unit {
        "ms" => value / 1000.0,
        "s" => value,
        "m" => value * 60.0,
        _ => return Err(format!("`{text}`: the unit is ms, s or m")),
    };
    if !(seconds > 0.0 && seconds <= 86_400.0) {
        return Err(format!("`{text}`: between 1ms and 24h"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let cli = Cli::parse();
    match cli.command.unwrap_or(Command::Run(cli.run)) {
        Command::Run(args) => run(args),
        Command::CheckConfig(args) => check_config(args),
        Command::Demo(args) => run_demo(args),
        Command::Discover(args) => run_discover(&args),
        Command::Assets(AssetsCommand::Install { api_url }) => install_assets(api_url.as_deref()),
    }
}

fn load(args: &ConfigArg) -> Result<Config, ExitCode> {
    let loaded = Config::load(args.config.as_deref(), &process_env).and_then(|(config, source)| {
        for instance in &config.instances {
            validate_client_config(instance, &config.origin)?;
        }
        Ok((config, source))
    });
    match loaded {
        Ok((config, source)) => {
            match source {
                ConfigSource::File(path) => log::info!("configuration: {}", path.display()),
                ConfigSource::Environment => {
                    log::info!("configuration: KAFKA_BROKER/KAFKA_TOPIC environment variables")
                }
            }
            for ignored in &config.ignored {
                log::warn!("{ignored}");
            }
            Ok(config)
        }
        Err(e) => {
            eprintln!("configuration error: {e}");
            Err(ExitCode::from(EXIT_CONFIG))
        }
    }
}

fn run(args: RunArgs) -> ExitCode {
    let config = match load(&args.config) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let shutdown = match install_shutdown() {
        Ok(s) => s,
        Err(code) => return code,
    };
    let options = RunOptions {
        stop: shutdown.flag(),
        output: if args.dry_run {
            Output::Print
        } else {
            Output::Send
        },
        ..RunOptions::default()
    };
    match algorithmia_datadog::run(&config, &options) {
        Ok(total) => {
            log::info!(
                "stopped: {} messages, {} gauges, {} call counts, {} distribution values, {} values aggregated, {} rejected, skipped: {}",
                total.messages,
                total.gauges,
                total.counts,
                total.distribution_values,
                total.points_aggregated,
                total.rejected_total(),
                total.describe_skips()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            log::error!("{e}");
            ExitCode::FAILURE
        }
    }
}

/// SIGTERM and SIGINT stop the work; the process is gone 10 s later whatever happens (a margin
/// is left for the exit itself).
fn install_shutdown() -> Result<Shutdown, ExitCode> {
    Shutdown::install(Duration::from_millis(9_500)).map_err(|e| {
        eprintln!("cannot install signal handlers: {e}");
        ExitCode::FAILURE
    })
}

fn check_config(args: ConfigArg) -> ExitCode {
    match load(&args) {
        Ok(config) => {
            print!("{}", config.redacted_yaml());
            println!("# configuration is valid");
            ExitCode::SUCCESS
        }
        Err(code) => code,
    }
}

fn run_demo(args: DemoArgs) -> ExitCode {
    // The user's configuration only supplies the destination and mapping rules; without one the
    // demo still runs, to DD_DOGSTATSD_URL or udp://127.0.0.1:8125.
    let has_config = args.config.config.is_some()
        || std::path::Path::new(algorithmia_datadog::config::DEFAULT_CONFIG_PATH).exists();
    let base = if has_config {
        match load(&args.config) {
            Ok(c) => Some(c),
            Err(code) => return code,
        }
    } else {
        None
    };
    // SIGINT or SIGTERM ends the demo early, with the summary of what it did so far.
    let shutdown = match install_shutdown() {
        Ok(s) => s,
        Err(code) => return code,
    };
    let report = demo::run_demo(
        base.as_ref(),
        args.messages,
        args.print,
        shutdown.flag(),
        &process_env,
    );
    match report {
        Ok(report) => {
            println!("{report}");
            ExitCode::SUCCESS
        }
        Err(demo::DemoError::Config(e)) => {
            eprintln!("configuration error: {e}");
            ExitCode::from(EXIT_CONFIG)
        }
        Err(e) => {
            eprintln!("demo failed: {e}");
            ExitCode::FAILURE
        }
    }
}

fn install_assets(api_url: Option<&str>) -> ExitCode {
    let settings = match assets::ApiSettings::from_env(&process_env, api_url) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("configuration error: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    match assets::install(&settings) {
        Ok(outcomes) => {
            for outcome in outcomes {
                println!("{outcome}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("assets install failed: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run_discover(args: &DiscoverArgs) -> ExitCode {
    let config = match load(&args.config) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let Some(instance) = config.instances.get(args.instance) else {
        eprintln!(
            "configuration error: {}: --instance {}: the configuration has {} instance(s), numbered from 0",
            config.origin,
            args.instance,
            config.instances.len()
        );
        return ExitCode::from(EXIT_CONFIG);
    };
    let options = discover::ReadOptions {
        messages: args.messages,
        timeout: args.timeout,
    };
    let mut discovery = discover::Discovery::new(&config.metric_prefix, instance);
    let read = match discover::read_tail(instance, &options, &mut discovery) {
        Ok(read) => read,
        Err(e) => {
            eprintln!("discover failed: {e}");
            return ExitCode::FAILURE;
        }
    };
    let path = args.config.config.as_ref().map(|p| p.display().to_string());
    let report = discovery.report(Some(&read), path.as_deref());
    match args.format {
        Format::Text => println!("{report}"),
        Format::Json => match serde_json::to_string_pretty(&report) {
            Ok(json) => println!("{json}"),
            Err(e) => {
                eprintln!("discover failed: cannot write JSON: {e}");
                return ExitCode::FAILURE;
            }
        },
    }
    if read.timed_out && read.read == 0 {
        eprintln!(
            "discover: no message read within {} s",
            args.timeout.as_secs_f64()
        );
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
