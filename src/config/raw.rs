//! The file as written: what serde reads, before any check.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

use super::env::{expand_env, EnvLookup};
use super::secrets::{is_secret_path, Secret};
use super::settings::{SaslMechanism, SecurityProtocol, StartOffset};
use super::{Config, ConfigError};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFile {
    #[serde(default)]
    pub(super) init_config: Option<RawInit>,
    pub(super) instances: Vec<RawInstance>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawInit {
    pub(super) dogstatsd_url: Option<String>,
    pub(super) metric_prefix: Option<String>,
    pub(super) health_address: Option<String>,
    pub(super) health_stall_seconds: Option<u64>,
    pub(super) packed_distributions: Option<bool>,
    pub(super) udp_max_datagrams_per_second: Option<u32>,
    #[serde(default)]
    pub(super) tags: Vec<String>,
}

#[derive(Deserialize)]
#[serde(untagged)]
pub(super) enum Brokers {
    Joined(String),
    Listed(Vec<String>),
}

#[derive(Deserialize)]
#[serde(untagged)]
pub(super) enum Scalar {
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
}

impl Scalar {
    pub(super) fn into_string(self) -> String {
        match self {
            Scalar::Str(s) => s,
            Scalar::Int(i) => i.to_string(),
            Scalar::Float(f) => f.to_string(),
            Scalar::Bool(b) => b.to_string(),
        }
    }
}

/// `consumer_group` when not set.
pub(super) const DEFAULT_GROUP: &str = "algorithmia-datadog";

/// A setting that may be left out, but not given as `null`: what was given is read as `T`
/// (whose errors name the expected type), and what was left out is `None`, its default applied
/// when the instance is validated.
fn given<'de, D: serde::Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

/// One instance as written: a setting left out is `None` (or empty), and takes its default
/// ([`crate::config::Mapping::default`], the `DEFAULT_*` constants) when validated.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawInstance {
    pub(super) kafka_broker: Brokers,
    pub(super) kafka_topic: String,
    #[serde(default, deserialize_with = "given")]
    pub(super) consumer_group: Option<String>,
    #[serde(default)]
    pub(super) start_offset: StartOffset,
    #[serde(default)]
    pub(super) security_protocol: SecurityProtocol,
    pub(super) sasl_mechanism: Option<SaslMechanism>,
    pub(super) sasl_username: Option<String>,
    pub(super) sasl_password: Option<Secret>,
    pub(super) ssl_ca_location: Option<PathBuf>,
    #[serde(default, deserialize_with = "given")]
    pub(super) tag_fields: Option<Vec<String>>,
    #[serde(default, deserialize_with = "given")]
    pub(super) operational_fields: Option<Vec<String>>,
    #[serde(default, deserialize_with = "given")]
    pub(super) numeric_strings: Option<bool>,
    #[serde(default, deserialize_with = "given")]
    pub(super) booleans: Option<bool>,
    #[serde(default)]
    pub(super) include_metrics: Vec<String>,
    #[serde(default)]
    pub(super) exclude_metrics: Vec<String>,
    #[serde(default)]
    pub(super) distribution_metrics: Vec<String>,
    #[serde(default, deserialize_with = "given")]
    pub(super) aggregation_interval: Option<u64>,
    #[serde(default, deserialize_with = "given")]
    pub(super) max_contexts: Option<usize>,
    #[serde(default, deserialize_with = "given")]
    pub(super) commit_interval_ms: Option<u64>,
    #[serde(default, deserialize_with = "given")]
    pub(super) send_timestamps: Option<bool>,
    #[serde(default, deserialize_with = "given")]
    pub(super) timestamp_field: Option<String>,
    #[serde(default)]
    pub(super) tags: Vec<String>,
    #[serde(default)]
    pub(super) kafka_options: BTreeMap<String, Scalar>,
}

impl Config {
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
}

/// The key an error names for `path`: the top level of the document (a lone string, or a key
/// that is an empty string or no string) has none of its own, but is a place all the same.
pub(super) fn named_place(path: &str) -> &str {
    if path.is_empty() || path == "." {
        "(top level)"
    } else {
        path
    }
}

impl Default for Brokers {
    fn default() -> Self {
        Brokers::Listed(Vec::new())
    }
}
