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

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::dogstatsd::{longest_line, MAX_NAME_CHARS, MAX_VALUE_CHARS};

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

/// `udp_max_datagrams_per_second` when not set: a pace Datadog's serverless DogStatsD server
/// (datadog-serverless-compat 0.19.0) keeps up with on a busy 2-core machine, with the kernel's
/// default receive buffer (`cargo bench --bench udp_pace`; the README's "DogStatsD servers").
pub const DEFAULT_UDP_MAX_DATAGRAMS_PER_SECOND: u32 = 2_000;

/// The destination used when neither the file nor the environment names one.
pub const DEFAULT_DOGSTATSD: &str = "udp://127.0.0.1:8125";

/// The longest tag field name: with `:` and the longest number, its tag still holds at most
/// [`MAX_NAME_CHARS`] bytes.
const MAX_TAG_FIELD_NAME: usize = MAX_NAME_CHARS - 1 - MAX_VALUE_CHARS;

/// librdkafka properties the forwarder relies on for its delivery guarantee; `kafka_options` may
/// not change them.
const PROTECTED_KAFKA_OPTIONS: &[&str] = &["enable.auto.offset.store", "enable.auto.commit"];

/// A configuration that cannot be used, with the place and the reason.
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
    fn new(origin: &str, key: impl Into<String>, reason: impl Into<String>) -> Self {
        ConfigError {
            origin: origin.to_string(),
            key: key.into(),
            reason: reason.into(),
        }
    }
}

/// A string that must never be printed: `Debug`, `Display` and `Serialize` show `***`.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret itself, for handing to librdkafka and nothing else.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"***\"")
    }
}

impl Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str("***")
    }
}

/// Where DogStatsD datagrams go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    /// `udp://host:port`: `host:port` as given (resolved when the sink is built).
    Udp(String),
    /// `unix:///path`: a Unix datagram socket.
    Unix(PathBuf),
}

impl Destination {
    /// Parses `udp://host:port` or `unix:///path`.
    pub fn parse(url: &str) -> Result<Destination, String> {
        if let Some(rest) = url.strip_prefix("udp://") {
            let rest = rest.trim_end_matches('/');
            let (host, port) = rest
                .rsplit_once(':')
                .ok_or_else(|| format!("`{url}` has no port (expected udp://host:port)"))?;
            if host.is_empty() {
                return Err(format!("`{url}` has no host (expected udp://host:port)"));
            }
            port.parse::<u16>()
                .map_err(|_| format!("`{url}` has an invalid port `{port}`"))?;
            Ok(Destination::Udp(rest.to_string()))
        } else if let Some(path) = url.strip_prefix("unix://") {
            if !path.starts_with('/') {
                return Err(format!(
                    "`{url}` must name an absolute path (unix:///var/run/datadog/dsd.socket)"
                ));
            }
            Ok(Destination::Unix(PathBuf::from(path)))
        } else {
            Err(format!(
                "`{url}` is not a DogStatsD URL (expected udp://host:port or unix:///path)"
            ))
        }
    }

    /// The largest datagram worth sending on this transport.
    pub fn max_datagram_bytes(&self) -> usize {
        match self {
            Destination::Udp(_) => 1432,
            Destination::Unix(_) => 8192,
        }
    }
}

impl fmt::Display for Destination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Destination::Udp(addr) => write!(f, "udp://{addr}"),
            Destination::Unix(path) => write!(f, "unix://{}", path.display()),
        }
    }
}

/// Where a consumer group with no committed offset starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum StartOffset {
    /// Only messages produced after the group first joins.
    #[default]
    Latest,
    /// Everything the topic still holds.
    Earliest,
}

/// Kafka's `security.protocol`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SecurityProtocol {
    /// No TLS, no authentication.
    #[default]
    Plaintext,
    /// TLS.
    Ssl,
    /// SASL without TLS.
    SaslPlaintext,
    /// SASL over TLS (Algorithmia's SCRAM setup, Azure Event Hubs).
    SaslSsl,
}

impl SecurityProtocol {
    fn uses_sasl(self) -> bool {
        matches!(
            self,
            SecurityProtocol::SaslPlaintext | SecurityProtocol::SaslSsl
        )
    }

    /// The librdkafka spelling.
    pub fn as_kafka(self) -> &'static str {
        match self {
            SecurityProtocol::Plaintext => "plaintext",
            SecurityProtocol::Ssl => "ssl",
            SecurityProtocol::SaslPlaintext => "sasl_plaintext",
            SecurityProtocol::SaslSsl => "sasl_ssl",
        }
    }
}

/// Kafka's `sasl.mechanism`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
pub enum SaslMechanism {
    /// Username and password in clear (over TLS): Azure Event Hubs.
    #[serde(rename = "PLAIN")]
    Plain,
    /// SCRAM with SHA-256.
    #[serde(rename = "SCRAM-SHA-256")]
    ScramSha256,
    /// SCRAM with SHA-512.
    #[serde(rename = "SCRAM-SHA-512")]
    ScramSha512,
}

impl SaslMechanism {
    /// The librdkafka spelling.
    pub fn as_kafka(self) -> &'static str {
        match self {
            SaslMechanism::Plain => "PLAIN",
            SaslMechanism::ScramSha256 => "SCRAM-SHA-256",
            SaslMechanism::ScramSha512 => "SCRAM-SHA-512",
        }
    }
}

/// SASL credentials of one instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Sasl {
    /// The mechanism.
    pub mechanism: SaslMechanism,
    /// The user.
    pub username: String,
    /// The password (redacted whenever printed).
    pub password: Secret,
}

/// One validated instance: an independent consumer and its mapping rules.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Instance {
    /// Position in `instances`, for log lines.
    pub index: usize,
    /// Bootstrap brokers.
    pub brokers: Vec<String>,
    /// The Insights topic.
    pub topic: String,
    /// Consumer group id.
    pub consumer_group: String,
    /// Where a new group starts.
    pub start_offset: StartOffset,
    /// `security.protocol`.
    pub security_protocol: SecurityProtocol,
    /// SASL settings, present exactly when the protocol uses SASL.
    pub sasl: Option<Sasl>,
    /// CA certificate that signed the brokers' certificates.
    pub ssl_ca_location: Option<PathBuf>,
    /// Fields whose values become tags.
    pub tag_fields: Vec<String>,
    /// Fields that are never metrics.
    pub operational_fields: Vec<String>,
    /// Whether `"4.2"` counts as 4.2.
    pub numeric_strings: bool,
    /// Whether `true`/`false` count as 1/0.
    pub booleans: bool,
    /// Glob patterns on the bare field name; empty means every field.
    pub include_metrics: Vec<String>,
    /// Glob patterns on the bare field name.
    pub exclude_metrics: Vec<String>,
    /// Glob patterns on the bare field name: these fields are sent as distributions.
    pub distribution_metrics: Vec<String>,
    /// Seconds per aggregation window (one of [`AGGREGATION_INTERVALS`]); 0 sends every point.
    pub aggregation_interval: u64,
    /// Most contexts an aggregation window holds before it is sent early.
    pub max_contexts: usize,
    /// How often the offsets of forwarded messages are committed to the group.
    pub commit_interval_ms: u64,
    /// Whether to attach `|T<seconds>` from the message's time.
    pub send_timestamps: bool,
    /// The field holding the message's time.
    pub timestamp_field: String,
    /// Every static tag of this instance, in order: instance `tags`, `init_config.tags`, `DD_*`.
    pub tags: Vec<String>,
    /// Raw librdkafka properties, applied last.
    pub kafka_options: KafkaOptions,
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
    /// Settings that were given but are not used, each saying why: the command line logs them
    /// as warnings, so that nothing is ignored without a word.
    pub ignored: Vec<String>,
}

// ---- the file as written ----------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    init_config: Option<RawInit>,
    instances: Vec<RawInstance>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawInit {
    dogstatsd_url: Option<String>,
    metric_prefix: Option<String>,
    #[serde(default)]
    tags: Vec<String>,
    packed_distributions: Option<bool>,
    udp_max_datagrams_per_second: Option<u32>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Brokers {
    Joined(String),
    Listed(Vec<String>),
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Scalar {
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
}

impl Scalar {
    fn into_string(self) -> String {
        match self {
            Scalar::Str(s) => s,
            Scalar::Int(i) => i.to_string(),
            Scalar::Float(f) => f.to_string(),
            Scalar::Bool(b) => b.to_string(),
        }
    }
}

fn default_group() -> String {
    "algorithmia-datadog".into()
}
fn default_tag_fields() -> Vec<String> {
    ["algorithm_name", "algorithm_version", "algorithm_owner"]
        .map(String::from)
        .to_vec()
}
fn default_operational_fields() -> Vec<String> {
    [
        "algorithm_name",
        "algorithm_version",
        "algorithm_owner",
        "request_id",
        "session_id",
        "time",
    ]
    .map(String::from)
    .to_vec()
}
fn default_aggregation_interval() -> u64 {
    DEFAULT_AGGREGATION_INTERVAL
}
fn default_max_contexts() -> usize {
    DEFAULT_MAX_CONTEXTS
}
fn default_commit_interval_ms() -> u64 {
    DEFAULT_COMMIT_INTERVAL_MS
}
fn default_timestamp_field() -> String {
    "time".into()
}
fn yes() -> bool {
    true
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawInstance {
    kafka_broker: Brokers,
    kafka_topic: String,
    #[serde(default = "default_group")]
    consumer_group: String,
    #[serde(default)]
    start_offset: StartOffset,
    #[serde(default)]
    security_protocol: SecurityProtocol,
    sasl_mechanism: Option<SaslMechanism>,
    sasl_username: Option<String>,
    sasl_password: Option<Secret>,
    ssl_ca_location: Option<PathBuf>,
    #[serde(default = "default_tag_fields")]
    tag_fields: Vec<String>,
    #[serde(default = "default_operational_fields")]
    operational_fields: Vec<String>,
    #[serde(default = "yes")]
    numeric_strings: bool,
    #[serde(default = "yes")]
    booleans: bool,
    #[serde(default)]
    include_metrics: Vec<String>,
    #[serde(default)]
    exclude_metrics: Vec<String>,
    #[serde(default)]
    distribution_metrics: Vec<String>,
    #[serde(default = "default_aggregation_interval")]
    aggregation_interval: u64,
    #[serde(default = "default_max_contexts")]
    max_contexts: usize,
    #[serde(default = "default_commit_interval_ms")]
    commit_interval_ms: u64,
    #[serde(default)]
    send_timestamps: bool,
    #[serde(default = "default_timestamp_field")]
    timestamp_field: String,
    #[serde(default)]
    tags: Vec<String>,
    #[serde(default)]
    kafka_options: BTreeMap<String, Scalar>,
}

// ---- loading ----------------------------------------------------------------------------------

/// Looks up an environment variable; a closure so that tests need not touch the process
/// environment.
pub type EnvLookup<'a> = &'a dyn Fn(&str) -> Option<String>;

/// The process environment, for [`Config::load`].
pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
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

    /// Parses and validates a YAML document. `origin` names it in errors.
    pub fn from_yaml(text: &str, origin: &str, env: EnvLookup<'_>) -> Result<Config, ConfigError> {
        let mut value: serde_yaml::Value = serde_yaml::from_str(text)
            .map_err(|e| ConfigError::new(origin, "(syntax)", e.to_string()))?;
        if value.is_null() {
            return Err(ConfigError::new(origin, "instances", "the file is empty"));
        }
        expand_env(&mut value, "", origin, env)?;
        let raw: RawFile = serde_path_to_error::deserialize(value).map_err(|e| {
            let key = named_place(&e.path().to_string()).to_string();
            // serde quotes the offending value: never for a secret.
            let reason = if is_secret_path(&key) {
                "must be a string (the value is not shown: it is a secret)".to_string()
            } else {
                e.inner().to_string()
            };
            ConfigError::new(origin, key, reason)
        })?;
        Config::validate(raw, origin, env)
    }

    /// The configuration of the Python script: `KAFKA_BROKER`, `KAFKA_TOPIC`, `KAFKA_GROUP`.
    pub fn from_env(env: EnvLookup<'_>) -> Result<Config, ConfigError> {
        let origin = "environment";
        let need = |name: &str| {
            env(name).filter(|v| !v.trim().is_empty()).ok_or_else(|| {
                ConfigError::new(
                    origin,
                    name,
                    format!(
                        "not set, and no configuration file exists at {DEFAULT_CONFIG_PATH} \
                         (give --config PATH or set KAFKA_BROKER and KAFKA_TOPIC)"
                    ),
                )
            })
        };
        let brokers = need("KAFKA_BROKER")?;
        let topic = need("KAFKA_TOPIC")?;
        if env("DATADOG_API_KEY").is_some() {
            log::info!(
                "DATADOG_API_KEY is ignored: metrics now go through the local Datadog Agent \
                 over DogStatsD, which holds the API key"
            );
        }
        let instance = RawInstance {
            kafka_broker: Brokers::Joined(brokers),
            kafka_topic: topic,
            consumer_group: env("KAFKA_GROUP").unwrap_or_else(default_group),
            start_offset: StartOffset::Latest,
            security_protocol: SecurityProtocol::Plaintext,
            sasl_mechanism: None,
            sasl_username: None,
            sasl_password: None,
            ssl_ca_location: None,
            tag_fields: default_tag_fields(),
            operational_fields: default_operational_fields(),
            numeric_strings: true,
            booleans: true,
            include_metrics: vec![],
            exclude_metrics: vec![],
            distribution_metrics: vec![],
            aggregation_interval: DEFAULT_AGGREGATION_INTERVAL,
            max_contexts: DEFAULT_MAX_CONTEXTS,
            commit_interval_ms: DEFAULT_COMMIT_INTERVAL_MS,
            send_timestamps: false,
            timestamp_field: default_timestamp_field(),
            tags: vec![],
            kafka_options: BTreeMap::new(),
        };
        let raw = RawFile {
            init_config: None,
            instances: vec![instance],
        };
        Config::validate(raw, origin, env)
    }

    fn validate(raw: RawFile, origin: &str, env: EnvLookup<'_>) -> Result<Config, ConfigError> {
        let err = |key: &str, reason: String| ConfigError::new(origin, key, reason);
        let init = raw.init_config.unwrap_or_default();

        let mut ignored = Vec::new();
        let dogstatsd = match init.dogstatsd_url {
            Some(url) => {
                Destination::parse(&url).map_err(|r| err("init_config.dogstatsd_url", r))?
            }
            None => {
                let destination =
                    destination_from_env(env).map_err(|(key, reason)| err(&key, reason))?;
                ignored.extend(port_without_host(env, &destination));
                destination
            }
        };

        let metric_prefix = init.metric_prefix.unwrap_or_else(|| "algorithmia".into());
        check_metric_prefix(&metric_prefix).map_err(|r| err("init_config.metric_prefix", r))?;

        let mut global_tags = Vec::new();
        for (i, tag) in init.tags.iter().enumerate() {
            global_tags
                .push(check_tag(tag).map_err(|r| err(&format!("init_config.tags[{i}]"), r))?);
        }
        for (var, key) in [
            ("DD_ENV", "env"),
            ("DD_SERVICE", "service"),
            ("DD_VERSION", "version"),
        ] {
            if let Some(value) = env(var).filter(|v| !v.is_empty()) {
                global_tags.push(check_tag(&format!("{key}:{value}")).map_err(|r| err(var, r))?);
            }
        }

        if raw.instances.is_empty() {
            return Err(err("instances", "at least one instance is required".into()));
        }
        let instances = raw
            .instances
            .into_iter()
            .enumerate()
            .map(|(index, inst)| validate_instance(index, inst, &global_tags, &dogstatsd, origin))
            .collect::<Result<Vec<_>, _>>()?;

        Ok(Config {
            origin: origin.to_string(),
            dogstatsd,
            metric_prefix,
            packed_distributions: init.packed_distributions.unwrap_or(true),
            udp_max_datagrams_per_second: init
                .udp_max_datagrams_per_second
                .unwrap_or(DEFAULT_UDP_MAX_DATAGRAMS_PER_SECOND),
            instances,
            ignored,
        })
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
            instances: &'a [Instance],
        }
        let effective = Effective {
            source: &self.origin,
            dogstatsd_url: self.dogstatsd.to_string(),
            metric_prefix: &self.metric_prefix,
            packed_distributions: self.packed_distributions,
            udp_max_datagrams_per_second: self.udp_max_datagrams_per_second,
            instances: &self.instances,
        };
        serde_yaml::to_string(&effective)
            .unwrap_or_else(|e| format!("# cannot render the settings: {e}\n"))
    }
}

fn validate_instance(
    index: usize,
    raw: RawInstance,
    global_tags: &[String],
    destination: &Destination,
    origin: &str,
) -> Result<Instance, ConfigError> {
    let key = |name: &str| format!("instances[{index}].{name}");
    let err = |name: &str, reason: String| ConfigError::new(origin, key(name), reason);

    let brokers: Vec<String> = match raw.kafka_broker {
        Brokers::Joined(s) => s.split(',').map(|b| b.trim().to_string()).collect(),
        Brokers::Listed(list) => list.into_iter().map(|b| b.trim().to_string()).collect(),
    };
    if brokers.is_empty() || brokers.iter().any(|b| b.is_empty()) {
        return Err(err(
            "kafka_broker",
            "must list at least one host:port, with no empty entry".into(),
        ));
    }
    for broker in &brokers {
        let valid = broker
            .rsplit_once(':')
            .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
        if !valid {
            return Err(err("kafka_broker", format!("`{broker}` is not host:port")));
        }
    }
    if raw.kafka_topic.trim().is_empty() {
        return Err(err("kafka_topic", "must not be empty".into()));
    }
    if raw.consumer_group.trim().is_empty() {
        return Err(err("consumer_group", "must not be empty".into()));
    }

    let sasl = if raw.security_protocol.uses_sasl() {
        let protocol = raw.security_protocol.as_kafka().to_uppercase();
        let mechanism = raw.sasl_mechanism.ok_or_else(|| {
            err("sasl_mechanism", format!("required with security_protocol {protocol} (PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512)"))
        })?;
        let username = raw.sasl_username.filter(|u| !u.is_empty()).ok_or_else(|| {
            err(
                "sasl_username",
                format!("required with security_protocol {protocol}"),
            )
        })?;
        let password = raw
            .sasl_password
            .filter(|p| !p.expose().is_empty())
            .ok_or_else(|| {
                err(
                    "sasl_password",
                    format!("required with security_protocol {protocol}"),
                )
            })?;
        Some(Sasl {
            mechanism,
            username,
            password,
        })
    } else {
        let stray = [
            ("sasl_mechanism", raw.sasl_mechanism.is_some()),
            ("sasl_username", raw.sasl_username.is_some()),
            ("sasl_password", raw.sasl_password.is_some()),
        ];
        if let Some((name, _)) = stray.iter().find(|(_, set)| *set) {
            return Err(err(
                name,
                format!(
                    "has no effect with security_protocol {}: use SASL_PLAINTEXT or SASL_SSL",
                    raw.security_protocol.as_kafka().to_uppercase()
                ),
            ));
        }
        None
    };

    if let Some(ca) = &raw.ssl_ca_location {
        if !ca.is_file() {
            return Err(err(
                "ssl_ca_location",
                format!("{} is not a readable file", ca.display()),
            ));
        }
    }

    for (name, list) in [
        ("tag_fields", &raw.tag_fields),
        ("operational_fields", &raw.operational_fields),
    ] {
        if let Some(i) = list.iter().position(|f| f.is_empty()) {
            return Err(err(&format!("{name}[{i}]"), "must not be empty".into()));
        }
    }
    for (i, field) in raw.tag_fields.iter().enumerate() {
        let key = check_tag(field).map_err(|r| err(&format!("tag_fields[{i}]"), r))?;
        if key.contains(':') {
            // The field's name is the tag's key, and a tag's key ends at its first `:`.
            return Err(err(
                &format!("tag_fields[{i}]"),
                format!("`{key}` contains `:`, which would end the tag's key"),
            ));
        }
        if key.len() > MAX_TAG_FIELD_NAME {
            return Err(err(
                &format!("tag_fields[{i}]"),
                format!(
                    "`{key}` is {} bytes long: a tag holds {MAX_NAME_CHARS} at most, so a name \
                     over {MAX_TAG_FIELD_NAME} bytes leaves no room for a number",
                    key.len()
                ),
            ));
        }
    }
    for (name, list) in [
        ("include_metrics", &raw.include_metrics),
        ("exclude_metrics", &raw.exclude_metrics),
        ("distribution_metrics", &raw.distribution_metrics),
    ] {
        if let Some(i) = list.iter().position(|f| f.is_empty()) {
            return Err(err(
                &format!("{name}[{i}]"),
                "an empty pattern matches nothing".into(),
            ));
        }
    }
    if !AGGREGATION_INTERVALS.contains(&raw.aggregation_interval) {
        return Err(err(
            "aggregation_interval",
            format!(
                "must be one of 0, 1, 2, 5 or 10 (seconds; a divisor of the Agent's 10 s flush), not {}",
                raw.aggregation_interval
            ),
        ));
    }
    if raw.max_contexts == 0 {
        return Err(err(
            "max_contexts",
            "must be at least 1 (the default is 100000)".into(),
        ));
    }
    if !COMMIT_INTERVALS_MS.contains(&raw.commit_interval_ms) {
        return Err(err(
            "commit_interval_ms",
            format!(
                "must be between {} and {} (milliseconds), not {}",
                COMMIT_INTERVALS_MS.start(),
                COMMIT_INTERVALS_MS.end(),
                raw.commit_interval_ms
            ),
        ));
    }
    if raw.timestamp_field.is_empty() {
        return Err(err("timestamp_field", "must not be empty".into()));
    }

    let mut tags = Vec::new();
    for (i, tag) in raw.tags.iter().enumerate() {
        tags.push(check_tag(tag).map_err(|r| err(&format!("tags[{i}]"), r))?);
    }
    tags.extend(global_tags.iter().cloned());
    check_longest_line(&raw.tag_fields, &tags, destination).map_err(|(name, r)| err(name, r))?;

    let mut kafka_options = KafkaOptions::default();
    for (name, value) in raw.kafka_options {
        if PROTECTED_KAFKA_OPTIONS.contains(&name.as_str()) {
            return Err(err(
                &format!("kafka_options.{name}"),
                "cannot be changed: the forwarder stores offsets itself, only after the Agent has the data".into(),
            ));
        }
        kafka_options.0.insert(name, value.into_string());
    }

    Ok(Instance {
        index,
        brokers,
        topic: raw.kafka_topic,
        consumer_group: raw.consumer_group,
        start_offset: raw.start_offset,
        security_protocol: raw.security_protocol,
        sasl,
        ssl_ca_location: raw.ssl_ca_location,
        tag_fields: raw.tag_fields,
        operational_fields: raw.operational_fields,
        numeric_strings: raw.numeric_strings,
        booleans: raw.booleans,
        include_metrics: raw.include_metrics,
        exclude_metrics: raw.exclude_metrics,
        distribution_metrics: raw.distribution_metrics,
        aggregation_interval: raw.aggregation_interval,
        max_contexts: raw.max_contexts,
        commit_interval_ms: raw.commit_interval_ms,
        send_timestamps: raw.send_timestamps,
        timestamp_field: raw.timestamp_field,
        tags,
        kafka_options,
    })
}

/// `DD_DOGSTATSD_URL`, else `DD_AGENT_HOST` + `DD_DOGSTATSD_PORT`, else the default.
fn destination_from_env(env: EnvLookup<'_>) -> Result<Destination, (String, String)> {
    if let Some(url) = env("DD_DOGSTATSD_URL").filter(|v| !v.is_empty()) {
        return Destination::parse(&url).map_err(|r| ("DD_DOGSTATSD_URL".into(), r));
    }
    if let Some(host) = env("DD_AGENT_HOST").filter(|v| !v.is_empty()) {
        let port = env("DD_DOGSTATSD_PORT").filter(|v| !v.is_empty());
        let port = match port {
            Some(p) => p.parse::<u16>().map_err(|_| {
                (
                    "DD_DOGSTATSD_PORT".to_string(),
                    format!("`{p}` is not a port"),
                )
            })?,
            None => 8125,
        };
        let host = if host.contains(':') && !host.starts_with('[') {
            format!("[{host}]")
        } else {
            host
        };
        return Ok(Destination::Udp(format!("{host}:{port}")));
    }
    Destination::parse(DEFAULT_DOGSTATSD).map_err(|r| ("(default)".into(), r))
}

/// `DD_DOGSTATSD_PORT` alone says nothing: like Datadog's clients, the forwarder uses it only
/// with `DD_AGENT_HOST`. Saying so spares a search for where the datagrams went.
fn port_without_host(env: EnvLookup<'_>, used: &Destination) -> Option<String> {
    let set = |name: &str| env(name).filter(|v| !v.is_empty());
    let port = set("DD_DOGSTATSD_PORT")?;
    if set("DD_AGENT_HOST").is_some() || set("DD_DOGSTATSD_URL").is_some() {
        return None;
    }
    Some(format!(
        "DD_DOGSTATSD_PORT is ignored: it applies only with DD_AGENT_HOST (set both, or \
         DD_DOGSTATSD_URL=udp://<host>:{port}); sending to {used}"
    ))
}

fn check_metric_prefix(prefix: &str) -> Result<(), String> {
    let starts_with_letter = prefix
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic());
    let valid_chars = prefix
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.');
    if !starts_with_letter || !valid_chars || prefix.ends_with('.') {
        return Err(format!(
            "`{prefix}` must start with a letter, hold only letters, digits, `_` and `.`, and not end with `.`"
        ));
    }
    if prefix.len() > 100 {
        return Err("must be at most 100 characters, to leave room for the field name".into());
    }
    Ok(())
}

/// Refuses tag settings with which one point could make a line longer than the destination's
/// datagrams: the Agent would get it cut (over a Unix socket, or past its 8 KiB buffer) or
/// fragmented. Every tag field counts as a tag of [`MAX_NAME_CHARS`] bytes, the most the mapping
/// rules write. On error: the key to blame and the reason.
fn check_longest_line(
    tag_fields: &[String],
    tags: &[String],
    destination: &Destination,
) -> Result<(), (&'static str, String)> {
    // Each tag with the `,` before it, less the first one's.
    let static_bytes = tags.iter().map(|t| t.len() + 1).sum::<usize>();
    let all_bytes = (tag_fields.len() * (MAX_NAME_CHARS + 1) + static_bytes).saturating_sub(1);
    let static_bytes = static_bytes.saturating_sub(1);
    let limit = destination.max_datagram_bytes();
    let longest = longest_line(all_bytes);
    if longest <= limit {
        return Ok(());
    }
    let key = if longest_line(static_bytes) > limit {
        "tags"
    } else {
        "tag_fields"
    };
    Err((
        key,
        format!(
            "with {} tag fields (up to {MAX_NAME_CHARS} bytes each) and {static_bytes} bytes of \
             static tags (init_config.tags and DD_ENV, DD_SERVICE, DD_VERSION included), a line \
             can reach {longest} bytes, more than the {limit}-byte datagrams of {destination}: \
             use fewer tag fields or shorter tags, or a unix:// socket (8192-byte datagrams)",
            tag_fields.len()
        ),
    ))
}

/// A static tag as written by a user: trimmed, and refused if it could break a datagram.
fn check_tag(tag: &str) -> Result<String, String> {
    let tag = tag.trim();
    if tag.is_empty() {
        return Err("a tag must not be empty".into());
    }
    if let Some(c) = tag
        .chars()
        .find(|c| matches!(c, ',' | '|' | '#') || c.is_control())
    {
        return Err(format!(
            "`{tag}` contains {c:?}, which DogStatsD treats as a separator"
        ));
    }
    if tag.chars().count() > 200 {
        return Err(format!("`{tag}` is longer than 200 characters"));
    }
    if tag.ends_with(':') {
        return Err(format!("`{tag}` must not end with `:`"));
    }
    Ok(tag.to_string())
}

/// The key an error names for `path`: the top level of the document (a lone string, or a key
/// that is an empty string or no string) has none of its own, but is a place all the same.
fn named_place(path: &str) -> &str {
    if path.is_empty() || path == "." {
        "(top level)"
    } else {
        path
    }
}

/// Replaces `${VAR}` in every string of the document; `$$` stands for a literal `$`.
fn expand_env(
    value: &mut serde_yaml::Value,
    path: &str,
    origin: &str,
    env: EnvLookup<'_>,
) -> Result<(), ConfigError> {
    use serde_yaml::Value;
    match value {
        Value::String(s) => {
            if s.contains('$') {
                *s = expand_string(s, env).map_err(|problem| {
                    let key = named_place(path);
                    // A secret's text is never quoted, unless it is nothing but `${VAR}`: then
                    // the name is no part of the secret, and the one thing worth saying.
                    let lone_reference = s
                        .strip_prefix("${")
                        .and_then(|rest| rest.strip_suffix('}'))
                        .is_some_and(|name| !name.contains(['{', '}', '$']));
                    let quote = lone_reference || !is_secret_path(path);
                    ConfigError::new(origin, key, problem.reason(quote))
                })?;
            }
        }
        Value::Sequence(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                expand_env(item, &format!("{path}[{i}]"), origin, env)?;
            }
        }
        Value::Mapping(map) => {
            for (k, v) in map.iter_mut() {
                let name = match k.as_str() {
                    Some("") => "\"\"".to_string(),
                    Some(name) => name.to_string(),
                    None => format!("{k:?}"),
                };
                let child = if path.is_empty() {
                    name
                } else {
                    format!("{path}.{name}")
                };
                expand_env(v, &child, origin, env)?;
            }
        }
        Value::Tagged(tagged) => expand_env(&mut tagged.value, path, origin, env)?,
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
    Ok(())
}

/// Why a string's `${VAR}` references cannot be expanded.
enum Unexpandable {
    /// `${` and no `}`.
    Unclosed,
    /// `${...}` around something that is not a variable name.
    Invalid(String),
    /// A variable that is not set.
    Unset(String),
}

impl Unexpandable {
    /// Why, quoting the reference only if `quote` (never from a secret's text).
    fn reason(&self, quote: bool) -> String {
        const NOT_SHOWN: &str = "(not shown: the value is a secret; write `$$` for a literal `$`)";
        match (self, quote) {
            (Unexpandable::Unclosed, _) => "`${` without a closing `}`".to_string(),
            (Unexpandable::Invalid(name), true) => {
                format!("`${{{name}}}` is not a valid variable reference")
            }
            (Unexpandable::Unset(name), true) => format!("environment variable {name} is not set"),
            (Unexpandable::Invalid(_), false) => {
                format!("holds a `${{...}}` that is not a valid variable reference {NOT_SHOWN}")
            }
            (Unexpandable::Unset(_), false) => {
                format!("names an environment variable that is not set {NOT_SHOWN}")
            }
        }
    }
}

fn expand_string(s: &str, env: EnvLookup<'_>) -> Result<String, Unexpandable> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(tail) = after.strip_prefix('{') {
            let end = tail.find('}').ok_or(Unexpandable::Unclosed)?;
            let name = &tail[..end];
            if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                return Err(Unexpandable::Invalid(name.to_string()));
            }
            let value = env(name).ok_or_else(|| Unexpandable::Unset(name.to_string()))?;
            out.push_str(&value);
            rest = &tail[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// Raw librdkafka properties. Printing them (`Debug`, `Serialize`) hides every value whose
/// property name says it is a secret.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct KafkaOptions(BTreeMap<String, String>);

impl KafkaOptions {
    /// The properties in name order, values unredacted (for librdkafka only).
    pub fn iter(&self) -> impl Iterator<Item = (&String, &String)> {
        self.0.iter()
    }

    /// Whether a property is set.
    pub fn contains_key(&self, name: &str) -> bool {
        self.0.contains_key(name)
    }

    /// A property's value.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    fn redacted(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| {
            (
                k.as_str(),
                if is_secret_property(k) {
                    "***"
                } else {
                    v.as_str()
                },
            )
        })
    }
}

impl fmt::Debug for KafkaOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.redacted()).finish()
    }
}

impl Serialize for KafkaOptions {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.redacted())
    }
}

/// Whether the setting at `path` (`instances[0].sasl_password`, `instances[0].kafka_options.
/// sasl.password`) holds a secret, which no error may quote.
fn is_secret_path(path: &str) -> bool {
    path.rsplit('.').next() == Some("sasl_password") || is_secret_property(path)
}

/// Whether a librdkafka property holds a secret that must never be printed.
pub fn is_secret_property(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    [
        "password",
        "secret",
        "key.pem",
        "jaas",
        "token",
        "credential",
    ]
    .iter()
    .any(|needle| name.contains(needle))
        || name == "ssl.key.pem"
        || name.ends_with(".key")
}

#[cfg(test)]
mod tests;
