//! The environment: `${VAR}` in the file, the Python script's variables, and the Agent's
//! `DD_*` variables.

use super::raw::{child_place, named_place, Brokers, Parts, RawInit, RawInstance, Read};
use super::secrets::is_secret_path;
use super::settings::Destination;
use super::{Config, ConfigError, DEFAULT_CONFIG_PATH, DEFAULT_DOGSTATSD};

/// Looks up an environment variable; a closure so that tests need not touch the process
/// environment.
pub type EnvLookup<'a> = &'a dyn Fn(&str) -> Option<String>;

/// The process environment, for [`Config::load`].
pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

impl Config {
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
            consumer_group: env("KAFKA_GROUP"),
            ..RawInstance::default()
        };
        let parts = Parts {
            init: Read::whole(RawInit::default()),
            instances: vec![Some(Read::whole(instance))],
            instances_unreadable: false,
        };
        Config::validate(parts, origin, env, Vec::new())
    }
}

/// `DD_DOGSTATSD_URL`, else `DD_AGENT_HOST` + `DD_DOGSTATSD_PORT`, else the default.
pub(super) fn destination_from_env(env: EnvLookup<'_>) -> Result<Destination, (String, String)> {
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
pub(super) fn port_without_host(env: EnvLookup<'_>, used: &Destination) -> Option<String> {
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

/// Replaces `${VAR}` in every string of the document; `$$` stands for a literal `$`. Each string
/// that cannot be expanded is a problem added to `problems`, and left as it was.
pub(super) fn expand_env(
    value: &mut serde_yaml::Value,
    path: &str,
    origin: &str,
    env: EnvLookup<'_>,
    problems: &mut Vec<ConfigError>,
) {
    use serde_yaml::Value;
    match value {
        Value::String(s) => {
            if s.contains('$') {
                match expand_string(s, env) {
                    Ok(expanded) => *s = expanded,
                    Err(problem) => {
                        let key = named_place(path);
                        // A secret's text is never quoted, unless it is nothing but `${VAR}`:
                        // then the name is no part of the secret, and the one thing worth
                        // saying.
                        let lone_reference = s
                            .strip_prefix("${")
                            .and_then(|rest| rest.strip_suffix('}'))
                            .is_some_and(|name| !name.contains(['{', '}', '$']));
                        let quote = lone_reference || !is_secret_path(path);
                        problems.push(ConfigError::new(origin, key, problem.reason(quote)));
                    }
                }
            }
        }
        Value::Sequence(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                expand_env(item, &format!("{path}[{i}]"), origin, env, problems);
            }
        }
        Value::Mapping(map) => {
            for (k, v) in map.iter_mut() {
                expand_env(v, &child_place(path, k), origin, env, problems);
            }
        }
        Value::Tagged(tagged) => expand_env(&mut tagged.value, path, origin, env, problems),
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
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
