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
/// Exit code of `assets` when it left an object edited in Datadog as it was.
const EXIT_KEPT: u8 = 3;

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
    /// Create the dashboard and monitors in your account, or update the ones `assets` made before,
    /// unless they were edited in Datadog since (DD_API_KEY, DD_APP_KEY, DD_SITE).
    Install(InstallArgs),
    /// Create or update a monitor on the difference between two versions of one model's metric.
    Compare(Box<CompareArgs>),
    /// Create or update monitors that alert when a model's metrics leave their normal range, per
    /// version.
    Drift(Box<DriftArgs>),
}

#[derive(Args, Clone)]
struct ApiArgs {
    /// The API's base URL, instead of https://api.<DD_SITE> (a proxy, a test server).
    #[arg(long, value_name = "URL")]
    api_url: Option<String>,
    /// Replace what was edited in Datadog since `assets` wrote it (your edits are lost).
    #[arg(long)]
    force: bool,
}

#[derive(Args, Clone)]
struct InstallArgs {
    #[command(flatten)]
    api: ApiArgs,
    /// The forwarder's configuration, for how duration_milliseconds is sent [default:
    /// conf.d/algorithmia.yaml if it exists]
    #[arg(long, value_name = "PATH")]
    config: Option<PathBuf>,
}

#[derive(Args, Clone)]
struct ModelArgs {
    /// The model: its algorithm_name.
    #[arg(long, value_name = "NAME")]
    algorithm: String,
    /// Evaluation window: <n>m, <n>h, <n>d or 1w [default: 1h for compare, 30m for drift]
    #[arg(long, value_name = "WINDOW")]
    window: Option<String>,
    /// Watch a percentile instead of the average (p50, p95, p99, p99.9): distribution metrics only.
    #[arg(long, value_name = "PXX")]
    percentile: Option<String>,
    /// Which way a change alerts: both, above or below.
    #[arg(long, default_value = "both")]
    direction: String,
    /// Also filter on this tag (env:prod); repeatable.
    #[arg(long, value_name = "TAG")]
    filter: Vec<String>,
    /// Print the monitor JSON (as POST /api/v1/monitor takes it) instead of writing it.
    #[arg(long)]
    dry_run: bool,
    /// The forwarder's configuration: metric_prefix, distribution_metrics [default:
    /// conf.d/algorithmia.yaml if it exists]
    #[arg(long, value_name = "PATH")]
    config: Option<PathBuf>,
    #[command(flatten)]
    api: ApiArgs,
}

#[derive(Args, Clone)]
#[command(group(clap::ArgGroup::new("limit").required(true).args(["threshold", "relative"])))]
struct CompareArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// The message field compared (risk_score, duration_milliseconds).
    #[arg(long, value_name = "FIELD")]
    metric: String,
    /// The version compared against (the one in production).
    #[arg(long, value_name = "VERSION")]
    baseline: String,
    /// The new version.
    #[arg(long, value_name = "VERSION")]
    candidate: String,
    /// Alert when candidate and baseline differ by more than this, in the metric's unit.
    #[arg(long, value_name = "X")]
    threshold: Option<f64>,
    /// Alert when they differ by more than this percentage of the baseline.
    #[arg(long, value_name = "PCT")]
    relative: Option<f64>,
}

#[derive(Args, Clone)]
struct DriftArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// A message field to watch; repeatable, one monitor each.
    #[arg(long = "metric", value_name = "FIELD", required = true)]
    metrics: Vec<String>,
    /// Watch one version only [default: every version, each alerting on its own]
    #[arg(long, value_name = "VERSION")]
    version: Option<String>,
    /// anomalies (a band learnt from the metric's history) or change (against earlier).
    #[arg(long, default_value = "anomalies")]
    method: String,
    /// anomalies: the band's width, in deviations.
    #[arg(long, default_value_t = 2.0)]
    deviations: f64,
    /// anomalies: hourly, daily or weekly (the agile algorithm) [default: none, basic]
    #[arg(long)]
    seasonality: Option<String>,
    /// change: the percent change that alerts.
    #[arg(long, value_name = "PCT")]
    change_percent: Option<f64>,
    /// change: compared with the same window this long ago (5m to 1d).
    #[arg(long, default_value = "1d")]
    compared_to: String,
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
        Command::Assets(AssetsCommand::Install(args)) => install_assets(&args),
        Command::Assets(AssetsCommand::Compare(args)) => compare(&args),
        Command::Assets(AssetsCommand::Drift(args)) => drift(&args),
    }
}

/// Prints a line to standard output. A reader that went away (`check-config | head -1`) ends the
/// printing quietly, as Unix tools do, instead of a panic.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

fn load(args: &ConfigArg) -> Result<Config, ExitCode> {
    let loaded = Config::load(args.config.as_deref(), &process_env).and_then(|(config, source)| {
        for instance in &config.instances {
            validate_client_config(instance, &config.origin)?;
        }
        let from = match source {
            ConfigSource::File(path) => path.display().to_string(),
            ConfigSource::Environment => "KAFKA_BROKER/KAFKA_TOPIC environment variables".into(),
        };
        Ok((config, from))
    });
    announce(loaded)
}

/// The end of every load: one line saying where the settings came from and a warning for each
/// setting that is ignored, or the error and exit code 2.
fn announce(
    loaded: Result<(Config, String), algorithmia_datadog::config::ConfigError>,
) -> Result<Config, ExitCode> {
    match loaded {
        Ok((config, from)) => {
            log::info!("configuration: {from}");
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
    let stopping = if args.dry_run {
        "flushing and closing the Kafka clients (a dry run commits nothing)"
    } else {
        "flushing, committing offsets and closing the Kafka clients"
    };
    let shutdown = match install_shutdown(stopping) {
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
fn install_shutdown(stopping: &'static str) -> Result<Shutdown, ExitCode> {
    Shutdown::install(Duration::from_millis(9_500), stopping).map_err(|e| {
        eprintln!("cannot install signal handlers: {e}");
        ExitCode::FAILURE
    })
}

fn check_config(args: ConfigArg) -> ExitCode {
    match load(&args) {
        Ok(config) => {
            out!("{}# configuration is valid", config.redacted_yaml());
            ExitCode::SUCCESS
        }
        Err(code) => code,
    }
}

/// Loads `path` for a command that uses only its destination and mapping rules (`demo`,
/// `assets`): a `${VAR}` whose variable is not set is read as that text, since such variables
/// usually hold what these commands never use (a Kafka password).
fn load_mapping_only(path: &std::path::Path) -> Result<Config, ExitCode> {
    let origin = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| {
        eprintln!("configuration error: {origin}: (file): cannot read: {e}");
        ExitCode::from(EXIT_CONFIG)
    })?;
    announce(
        Config::from_yaml(&unset_variables_as_text(&text), &origin, &process_env).map(|config| {
            (
                config,
                format!("{origin} (its destination and mapping rules)"),
            )
        }),
    )
}

/// `text` with each `${VAR}` whose variable is not set written `$${VAR}`, which the loader reads
/// as the text `${VAR}` (`$$` is its literal `$`).
fn unset_variables_as_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        if let Some(after) = tail.strip_prefix("$$") {
            out.push_str("$$");
            rest = after;
            continue;
        }
        if let Some(end) = tail.strip_prefix("${").and_then(|body| body.find('}')) {
            let name = &tail[2..2 + end];
            if process_env(name).is_none() {
                out.push('$');
            }
            out.push_str(&tail[..end + 3]);
            rest = &tail[end + 3..];
            continue;
        }
        out.push('$');
        rest = &tail[1..];
    }
    out.push_str(rest);
    out
}

fn run_demo(args: DemoArgs) -> ExitCode {
    // The demo needs nothing but itself: `./conf.d/algorithmia.yaml` is not read. With
    // `--config`, only its destination and mapping rules are used, so a `${VAR}` it names for
    // something else (a Kafka password) need not be set.
    let base = match &args.config.config {
        Some(path) => match load_mapping_only(path) {
            Ok(c) => Some(c),
            Err(code) => return code,
        },
        None => None,
    };
    // SIGINT or SIGTERM ends the demo early, with the summary of what it did so far.
    let shutdown = match install_shutdown("flushing and closing the embedded Kafka") {
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
            out!("{report}");
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

/// The configuration `assets` reads: the one given, else the default file if it exists, else
/// none (the defaults).
fn optional_config(path: Option<&PathBuf>) -> Result<Option<Config>, ExitCode> {
    let default = std::path::Path::new(algorithmia_datadog::config::DEFAULT_CONFIG_PATH);
    match path {
        Some(path) => load_mapping_only(path).map(Some),
        None if default.exists() => load_mapping_only(default).map(Some),
        None => Ok(None),
    }
}

fn api_settings(api: &ApiArgs) -> Result<assets::ApiSettings, ExitCode> {
    assets::ApiSettings::from_env(&process_env, api.api_url.as_deref()).map_err(|e| {
        eprintln!("configuration error: {e}");
        ExitCode::from(EXIT_CONFIG)
    })
}

/// Prints what was done; exit 1 on an API failure, 3 when something edited was left alone.
fn report(result: Result<Vec<assets::Outcome>, assets::AssetsError>, command: &str) -> ExitCode {
    match result {
        Ok(outcomes) => {
            for outcome in &outcomes {
                out!("{outcome}");
            }
            if assets::any_kept(&outcomes) {
                eprintln!(
                    "assets {command}: what was edited in Datadog since assets wrote it was left \
                     as it is (KEPT above); everything else is done"
                );
                return ExitCode::from(EXIT_KEPT);
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("assets {command} failed: {e}");
            ExitCode::FAILURE
        }
    }
}

fn install_assets(args: &InstallArgs) -> ExitCode {
    let config = match optional_config(args.config.as_ref()) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let settings = match api_settings(&args.api) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let options = assets::InstallOptions {
        config: config.as_ref(),
        force: args.api.force,
    };
    report(assets::install(&settings, &options), "install")
}

fn bad_arguments(reason: &str) -> ExitCode {
    eprintln!("invalid arguments: {reason}");
    ExitCode::from(EXIT_CONFIG)
}

/// Prints the monitors, or writes them.
fn generated(model: &ModelArgs, monitors: &[assets::Generated], command: &str) -> ExitCode {
    if model.dry_run {
        let bodies: Vec<&serde_json::Value> = monitors.iter().map(|m| &m.body).collect();
        let shown = match bodies.as_slice() {
            [one] => serde_json::to_string_pretty(one),
            all => serde_json::to_string_pretty(all),
        };
        return match shown {
            Ok(text) => {
                out!("{text}");
                ExitCode::SUCCESS
            }
            Err(e) => bad_arguments(&e.to_string()),
        };
    }
    let settings = match api_settings(&model.api) {
        Ok(s) => s,
        Err(code) => return code,
    };
    report(
        assets::apply_monitors(&settings, monitors, model.api.force),
        command,
    )
}

/// The configuration, window and direction every generated monitor needs.
fn model_settings(
    model: &ModelArgs,
    default_window: &str,
) -> Result<(assets::Naming, assets::Window, assets::Direction), ExitCode> {
    let config = optional_config(model.config.as_ref())?;
    let naming = assets::Naming::from_config(config.as_ref());
    let window = assets::Window::parse(model.window.as_deref().unwrap_or(default_window))
        .map_err(|e| bad_arguments(&format!("--window {e}")))?;
    let direction = assets::Direction::parse(&model.direction)
        .map_err(|e| bad_arguments(&format!("--direction {e}")))?;
    Ok((naming, window, direction))
}

fn compare(args: &CompareArgs) -> ExitCode {
    let (naming, window, direction) = match model_settings(&args.model, "1h") {
        Ok(s) => s,
        Err(code) => return code,
    };
    let difference = match (args.threshold, args.relative) {
        (Some(t), None) => assets::Difference::Absolute(t),
        (None, Some(p)) => assets::Difference::Relative(p),
        _ => return bad_arguments("give one of --threshold and --relative"),
    };
    let spec = assets::Compare {
        algorithm: args.model.algorithm.clone(),
        field: args.metric.clone(),
        baseline: args.baseline.clone(),
        candidate: args.candidate.clone(),
        difference,
        window,
        percentile: args.model.percentile.clone(),
        direction,
        filters: args.model.filter.clone(),
    };
    match assets::compare_monitor(&naming, &spec) {
        Ok(monitor) => generated(&args.model, &[monitor], "compare"),
        Err(e) => bad_arguments(&e),
    }
}

fn drift(args: &DriftArgs) -> ExitCode {
    let (naming, window, direction) = match model_settings(&args.model, "30m") {
        Ok(s) => s,
        Err(code) => return code,
    };
    let method = match (args.method.as_str(), args.change_percent) {
        ("anomalies", None) => assets::DriftMethod::Anomalies {
            deviations: args.deviations,
            seasonality: args.seasonality.clone(),
        },
        ("change", Some(percent)) => assets::DriftMethod::Change {
            percent,
            compared_to: args.compared_to.clone(),
        },
        ("change", None) => return bad_arguments("--method change needs --change-percent"),
        ("anomalies", Some(_)) => {
            return bad_arguments("--change-percent goes with --method change")
        }
        (other, _) => {
            return bad_arguments(&format!("--method {other:?}: use anomalies or change"))
        }
    };
    let spec = assets::Drift {
        algorithm: args.model.algorithm.clone(),
        version: args.version.clone(),
        window,
        method,
        direction,
        percentile: args.model.percentile.clone(),
        filters: args.model.filter.clone(),
    };
    match assets::drift_monitors(&naming, &args.metrics, &spec) {
        Ok(monitors) => generated(&args.model, &monitors, "drift"),
        Err(e) => bad_arguments(&e),
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
        Format::Text => out!("{report}"),
        Format::Json => match serde_json::to_string_pretty(&report) {
            Ok(json) => out!("{json}"),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_unset_variables_become_text() {
        std::env::set_var("ALGORITHMIA_DATADOG_TEST_SET", "x");
        assert_eq!(
            unset_variables_as_text(
                "a: ${ALGORITHMIA_DATADOG_TEST_SET}\nb: ${ALGORITHMIA_DATADOG_TEST_UNSET}\nc: $$5 $ ${x"
            ),
            "a: ${ALGORITHMIA_DATADOG_TEST_SET}\nb: $${ALGORITHMIA_DATADOG_TEST_UNSET}\nc: $$5 $ ${x"
        );
    }
}
