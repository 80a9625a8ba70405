//! Configuration: `conf.d/algorithmia.yaml` in the Datadog Agent's style, or the environment
//! variables of the Python script this daemon replaces.
//!
//! Loading is strict: an unknown key, a wrong type, a missing broker or topic, an unset `${VAR}` or
//! SASL without credentials is a [`ConfigError`] that names the file, the key and the reason. The
//! daemon turns that into exit code 2 before it touches Kafka.
//!
//! ```
//! use algorithmia_datadog::config::{Config, Destination};
//!
//! let yaml = "instances:\n  - kafka_broker: k1:9092,k2:9092\n    kafka_topic: insights\n";
//! let env = |_: &str| None;
//! let config = Config::from_yaml(yaml, "algorithmia.yaml", &env).unwrap();
//! assert_eq!(config.instances[0].brokers, ["k1:9092", "k2:9092"]);
//! assert_eq!(config.dogstatsd, Destination::Udp("127.0.0.1:8125".into()));
//! ```

use std::path::{Path, PathBuf};

use serde::Serialize;

mod env;
mod raw;
mod secrets;
mod settings;
mod suggest;
mod validate;

pub use env::{process_env, EnvLookup};
pub use secrets::{is_secret_property, KafkaOptions, Secret};
pub use settings::{
    Destination, Instance, Mapping, Sasl, SaslMechanism, SecurityProtocol, StartOffset,
};

/// Where the configuration file lives unless `--config` says otherwise.
pub const DEFAULT_CONFIG_PATH: &str = "conf.d/algorithmia.yaml";

/// The values `aggregation_interval` accepts, in seconds: 0 (every point is sent), or a divisor of
/// the Agent's 10-second flush so that windows never straddle one.
pub const AGGREGATION_INTERVALS: [u64; 5] = [0, 1, 2, 5, 10];
/// `aggregation_interval` when not set: what Datadog's own clients flush at.
pub const DEFAULT_AGGREGATION_INTERVAL: u64 = 2;
/// `max_contexts` when not set.
pub const DEFAULT_MAX_CONTEXTS: usize = 100_000;
/// `commit_interval_ms` when not set: after a crash, at most about a second of messages that
/// already reached the Agent is read and sent again.
pub const DEFAULT_COMMIT_INTERVAL_MS: u64 = 1_000;
/// The range `commit_interval_ms` accepts.
pub const COMMIT_INTERVALS_MS: std::ops::RangeInclusive<u64> = 100..=60_000;

/// `health_stall_seconds` when not set: how long the consume loop may go without a turn before
/// `/livez` fails. A turn comes at least every 100 ms, even while waiting for a broker or the
/// Agent; the longest legitimate pause is a rebalance's flush (one write attempt).
pub const DEFAULT_HEALTH_STALL_SECONDS: u64 = 30;
/// The range `health_stall_seconds` accepts.
pub const HEALTH_STALL_SECONDS: std::ops::RangeInclusive<u64> = 1..=3_600;

/// `udp_max_datagrams_per_second` when not set: a pace Datadog's serverless DogStatsD server
/// (datadog-serverless-compat 0.19.0) keeps up with on a busy 2-core machine, with the kernel's
/// default receive buffer (`cargo bench --bench udp_pace`; the README's "DogStatsD servers").
pub const DEFAULT_UDP_MAX_DATAGRAMS_PER_SECOND: u32 = 2_000;

/// The destination used when neither the file nor the environment names one.
pub const DEFAULT_DOGSTATSD: &str = "udp://127.0.0.1:8125";

/// A configuration that cannot be used, with the place and the reason.
///
/// A file with several mistakes gives one error for all of them: `origin`, `key` and the first
/// line of `reason` are the first mistake's, and each other mistake follows in `reason` on a line
/// of its own, as `file: key: reason`. Printed, it is one mistake a line: a control character
/// in a reason (a line break in a quoted value) is written escaped, as `\n`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{origin}: {key}: {reason}")]
pub struct ConfigError {
    /// The file, or `environment` when the settings came from environment variables.
    pub origin: String,
    /// The offending key, as a path (`instances[0].kafka_topic`) or a variable name.
    pub key: String,
    /// Why it was rejected.
    pub reason: String,
}

impl ConfigError {
    pub(crate) fn new(origin: &str, key: impl Into<String>, reason: impl Into<String>) -> Self {
        ConfigError {
            origin: origin.to_string(),
            key: key.into(),
            reason: reason.into(),
        }
    }
}

/// Every problem found, as one error ([`ConfigError`] says how); `None` when there is none.
///
/// They are ordered by place, the document's own first, then `init_config`'s, then each
/// instance's in turn; problems at one place keep the order they were found in.
fn gather(mut problems: Vec<ConfigError>) -> Option<ConfigError> {
    fn rank(key: &str) -> (u8, usize) {
        if let Some(rest) = key.strip_prefix("instances[") {
            let digits = rest
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(rest.len());
            (2, rest[..digits].parse().unwrap_or(usize::MAX))
        } else if key.starts_with("init_config") {
            (1, 0)
        } else {
            (0, 0)
        }
    }
    problems.sort_by_key(|p| rank(&p.key));
    // A reason quoting a value that holds a line break would make its rest look like another
    // mistake: every control character is written escaped (`\n`).
    for problem in &mut problems {
        if problem.reason.contains(char::is_control) {
            problem.reason = problem
                .reason
                .chars()
                .map(|c| {
                    if c.is_control() {
                        c.escape_default().to_string()
                    } else {
                        c.to_string()
                    }
                })
                .collect();
        }
    }
    let mut problems = problems.into_iter();
    let mut first = problems.next()?;
    for other in problems {
        first.reason.push('\n');
        first.reason.push_str(&other.to_string());
    }
    Some(first)
}

/// The whole validated configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Where it came from: a file path or `environment`.
    pub origin: String,
    /// Where datagrams go.
    pub dogstatsd: Destination,
    /// Prefix of every metric name, without the trailing dot.
    pub metric_prefix: String,
    /// `init_config.packed_distributions`: several values per distribution line (DogStatsD
    /// protocol 1.1, the default), or one (protocol 1.0, for servers that keep only the first).
    pub packed_distributions: bool,
    /// `init_config.udp_max_datagrams_per_second`: the pace of UDP sends (0: unpaced).
    pub udp_max_datagrams_per_second: u32,
    /// The consumers.
    pub instances: Vec<Instance>,
    /// Where `/livez` and `/readyz` are served (`init_config.health_address`), if anywhere.
    pub health: Option<HealthEndpoint>,
    /// Settings that were given but are not used, each saying why: the command line logs them
    /// as warnings, so that nothing is ignored without a word.
    pub ignored: Vec<String>,
}

/// The HTTP endpoint of the liveness and readiness probes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HealthEndpoint {
    /// `host:port` to listen on (`0.0.0.0:8080`, `[::]:8080`, `127.0.0.1:8080`).
    pub address: String,
    /// How long the consume loop may go without a turn before `/livez` fails, in seconds.
    pub stall_seconds: u64,
}

/// How the configuration was chosen, for the one log line that says so.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigSource {
    /// A YAML file.
    File(PathBuf),
    /// `KAFKA_BROKER`/`KAFKA_TOPIC`, because no file exists and none was asked for.
    Environment,
}

impl Config {
    /// The largest datagram the sink packs: see [`Destination::max_datagram_bytes`].
    pub fn max_datagram_bytes(&self) -> usize {
        self.dogstatsd
            .max_datagram_bytes(self.udp_max_datagrams_per_second > 0)
    }

    /// Loads the configuration the command line asked for.
    ///
    /// With `explicit` set, that file must exist. Without it, [`DEFAULT_CONFIG_PATH`] is used if
    /// it exists, else the Python script's environment variables.
    pub fn load(
        explicit: Option<&Path>,
        env: EnvLookup<'_>,
    ) -> Result<(Config, ConfigSource), ConfigError> {
        let path = match explicit {
            Some(path) => path.to_path_buf(),
            None => {
                let default = PathBuf::from(DEFAULT_CONFIG_PATH);
                if !default.exists() {
                    return Ok((Config::from_env(env)?, ConfigSource::Environment));
                }
                default
            }
        };
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(&path)
            .map_err(|e| ConfigError::new(&origin, "(file)", format!("cannot read: {e}")))?;
        let mut config = Config::from_yaml(&text, &origin, env)?;
        let script_variables: Vec<&str> = ["KAFKA_BROKER", "KAFKA_TOPIC", "KAFKA_GROUP"]
            .into_iter()
            .filter(|name| env(name).is_some_and(|v| !v.trim().is_empty()))
            .collect();
        if !script_variables.is_empty() {
            config.ignored.push(format!(
                "{} {} ignored: the configuration file {origin} is used (these variables apply \
                 only when there is no configuration file)",
                script_variables.join(", "),
                if script_variables.len() == 1 {
                    "is"
                } else {
                    "are"
                }
            ));
        }
        Ok((config, ConfigSource::File(path)))
    }

    /// The effective settings as YAML, every secret replaced by `***`.
    pub fn redacted_yaml(&self) -> String {
        #[derive(Serialize)]
        struct Effective<'a> {
            source: &'a str,
            dogstatsd_url: String,
            metric_prefix: &'a str,
            packed_distributions: bool,
            udp_max_datagrams_per_second: u32,
            #[serde(skip_serializing_if = "Option::is_none")]
            health: Option<&'a HealthEndpoint>,
            instances: &'a [Instance],
        }
        let effective = Effective {
            source: &self.origin,
            dogstatsd_url: self.dogstatsd.to_string(),
            metric_prefix: &self.metric_prefix,
            packed_distributions: self.packed_distributions,
            udp_max_datagrams_per_second: self.udp_max_datagrams_per_second,
            health: self.health.as_ref(),
            instances: &self.instances,
        };
        serde_yaml::to_string(&effective)
            .unwrap_or_else(|e| format!("# cannot render the settings: {e}\n"))
    }
}

#[cfg(test)]
mod tests;
