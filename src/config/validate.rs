//! The checks that turn the file as written into settings the forwarder can use.

use crate::dogstatsd::{longest_line, MAX_NAME_CHARS, MAX_VALUE_CHARS};

use super::env::{destination_from_env, port_without_host, EnvLookup};
use super::raw::{Brokers, Parts, RawInit, RawInstance, Read, DEFAULT_GROUP};
use super::secrets::KafkaOptions;
use super::settings::{Destination, Instance, Mapping, Sasl};
use super::{
    gather, Config, ConfigError, HealthEndpoint, AGGREGATION_INTERVALS, COMMIT_INTERVALS_MS,
    DEFAULT_AGGREGATION_INTERVAL, DEFAULT_COMMIT_INTERVAL_MS, DEFAULT_HEALTH_STALL_SECONDS,
    DEFAULT_MAX_CONTEXTS, DEFAULT_UDP_MAX_DATAGRAMS_PER_SECOND, HEALTH_STALL_SECONDS,
};

/// The longest tag field name: with `:` and the longest number, its tag still holds at most
/// [`MAX_NAME_CHARS`] bytes.
const MAX_TAG_FIELD_NAME: usize = MAX_NAME_CHARS - 1 - MAX_VALUE_CHARS;

/// librdkafka properties the forwarder relies on for its delivery guarantee; `kafka_options` may
/// not change them.
const PROTECTED_KAFKA_OPTIONS: &[&str] = &["enable.auto.offset.store", "enable.auto.commit"];

/// `init_config` checked, and what it gives every instance.
struct Init {
    /// Where datagrams go; `None` when that cannot be told (its problem is reported), and then
    /// nothing that depends on it is checked.
    dogstatsd: Option<Destination>,
    metric_prefix: String,
    /// `init_config.tags` and the `DD_*` tags, those that passed their checks.
    global_tags: Vec<String>,
    packed_distributions: bool,
    udp_max_datagrams_per_second: u32,
    health: Option<HealthEndpoint>,
    ignored: Vec<String>,
}

impl Config {
    /// Checks the parts that were read; every problem is added to `problems` (those found
    /// while reading come in there). A configuration only when there is none.
    pub(super) fn validate(
        parts: Parts,
        origin: &str,
        env: EnvLookup<'_>,
        mut problems: Vec<ConfigError>,
    ) -> Result<Config, ConfigError> {
        let init = validate_init(parts.init, origin, env, &mut problems);

        if parts.instances.is_empty() && !parts.instances_unreadable {
            problems.push(ConfigError::new(
                origin,
                "instances",
                "at least one instance is required",
            ));
        }
        let mut instances = Vec::new();
        for (index, read) in parts.instances.into_iter().enumerate() {
            if let Some(read) = read {
                let instance = validate_instance(index, read, &init, origin, &mut problems);
                instances.push(instance);
            }
        }

        if let Some(all) = gather(problems) {
            return Err(all);
        }
        let dogstatsd = init.dogstatsd.ok_or_else(|| {
            ConfigError::new(origin, "init_config.dogstatsd_url", "cannot be read")
        })?;
        Ok(Config {
            origin: origin.to_string(),
            dogstatsd,
            metric_prefix: init.metric_prefix,
            packed_distributions: init.packed_distributions,
            udp_max_datagrams_per_second: init.udp_max_datagrams_per_second,
            instances,
            health: init.health,
            ignored: init.ignored,
        })
    }
}

fn validate_init(
    read: Read<RawInit>,
    origin: &str,
    env: EnvLookup<'_>,
    problems: &mut Vec<ConfigError>,
) -> Init {
    let mut report =
        |key: &str, reason: String| problems.push(ConfigError::new(origin, key, reason));
    let mut ignored = Vec::new();
    let dogstatsd = match read.raw.dogstatsd_url {
        // Unreadable: what the environment says would not be what was meant.
        _ if !read.readable("dogstatsd_url") => None,
        Some(url) => Destination::parse(&url)
            .map_err(|r| report("init_config.dogstatsd_url", r))
            .ok(),
        None => match destination_from_env(env) {
            Ok(destination) => {
                ignored.extend(port_without_host(env, &destination));
                Some(destination)
            }
            Err((key, reason)) => {
                report(&key, reason);
                None
            }
        },
    };

    let metric_prefix = read
        .raw
        .metric_prefix
        .unwrap_or_else(|| "algorithmia".into());
    if let Err(r) = check_metric_prefix(&metric_prefix) {
        report("init_config.metric_prefix", r);
    }

    let mut global_tags = Vec::new();
    for (i, tag) in read.raw.tags.iter().enumerate() {
        match check_tag(tag) {
            Ok(tag) => global_tags.push(tag),
            Err(r) => report(&format!("init_config.tags[{i}]"), r),
        }
    }
    for (var, key) in [
        ("DD_ENV", "env"),
        ("DD_SERVICE", "service"),
        ("DD_VERSION", "version"),
    ] {
        if let Some(value) = env(var).filter(|v| !v.is_empty()) {
            match check_tag(&format!("{key}:{value}")) {
                Ok(tag) => global_tags.push(tag),
                Err(r) => report(var, r),
            }
        }
    }
    let health = match read.raw.health_address {
        Some(address) => {
            let address = check_listen_address(&address)
                .map_err(|r| report("init_config.health_address", r))
                .unwrap_or(address);
            let stall_seconds = match read.raw.health_stall_seconds {
                Some(s) if !HEALTH_STALL_SECONDS.contains(&s) => {
                    report(
                        "init_config.health_stall_seconds",
                        format!(
                            "{s} is outside {}..={} seconds",
                            HEALTH_STALL_SECONDS.start(),
                            HEALTH_STALL_SECONDS.end()
                        ),
                    );
                    DEFAULT_HEALTH_STALL_SECONDS
                }
                Some(s) => s,
                None => DEFAULT_HEALTH_STALL_SECONDS,
            };
            Some(HealthEndpoint {
                address,
                stall_seconds,
            })
        }
        None => {
            if read.raw.health_stall_seconds.is_some() {
                ignored.push(
                    "init_config.health_stall_seconds is ignored: it applies only with \
                     init_config.health_address"
                        .to_string(),
                );
            }
            None
        }
    };
    Init {
        dogstatsd,
        metric_prefix,
        global_tags,
        packed_distributions: read.raw.packed_distributions.unwrap_or(true),
        udp_max_datagrams_per_second: read
            .raw
            .udp_max_datagrams_per_second
            .unwrap_or(DEFAULT_UDP_MAX_DATAGRAMS_PER_SECOND),
        health,
        ignored,
    }
}

/// `host:port` with a port number: an IP address (`0.0.0.0`, `[::]`), or a host name.
fn check_listen_address(address: &str) -> Result<String, String> {
    let usage = "must be `host:port`, for example `0.0.0.0:8080` or `[::]:8080`";
    let (host, port) = address
        .rsplit_once(':')
        .ok_or_else(|| format!("`{address}` {usage}"))?;
    let port_ok = port.parse::<u16>().is_ok_and(|p| p > 0);
    let host_ok =
        !host.is_empty() && (!host.contains(':') || (host.starts_with('[') && host.ends_with(']')));
    if port_ok && host_ok {
        Ok(address.to_string())
    } else {
        Err(format!("`{address}` {usage}"))
    }
}

/// Checks one instance, adding each problem to `problems`: those about a key whose value could
/// not be read are left out (that key was reported, and its default stands in for it). The
/// instance returned is only used when there is no problem at all.
fn validate_instance(
    index: usize,
    read: Read<RawInstance>,
    init: &Init,
    origin: &str,
    problems: &mut Vec<ConfigError>,
) -> Instance {
    let Read { raw, unreadable } = read;
    let readable = |name: &str| !unreadable.contains(name);
    let mut report = |name: &str, reason: String| {
        let setting = name.split(['.', '[']).next().unwrap_or(name);
        if readable(setting) {
            problems.push(ConfigError::new(
                origin,
                format!("instances[{index}].{name}"),
                reason,
            ));
        }
    };
    let defaults = Mapping::default();
    let mapping = Mapping {
        tag_fields: raw.tag_fields.unwrap_or(defaults.tag_fields),
        operational_fields: raw
            .operational_fields
            .unwrap_or(defaults.operational_fields),
        numeric_strings: raw.numeric_strings.unwrap_or(defaults.numeric_strings),
        booleans: raw.booleans.unwrap_or(defaults.booleans),
        include_metrics: raw.include_metrics,
        exclude_metrics: raw.exclude_metrics,
        distribution_metrics: raw.distribution_metrics,
        send_timestamps: raw.send_timestamps.unwrap_or(defaults.send_timestamps),
        timestamp_field: raw.timestamp_field.unwrap_or(defaults.timestamp_field),
    };
    let consumer_group = raw.consumer_group.unwrap_or_else(|| DEFAULT_GROUP.into());
    let aggregation_interval = raw
        .aggregation_interval
        .unwrap_or(DEFAULT_AGGREGATION_INTERVAL);
    let max_contexts = raw.max_contexts.unwrap_or(DEFAULT_MAX_CONTEXTS);
    let commit_interval_ms = raw.commit_interval_ms.unwrap_or(DEFAULT_COMMIT_INTERVAL_MS);

    let brokers: Vec<String> = match raw.kafka_broker {
        Brokers::Joined(s) => s.split(',').map(|b| b.trim().to_string()).collect(),
        Brokers::Listed(list) => list.into_iter().map(|b| b.trim().to_string()).collect(),
    };
    if brokers.is_empty() || brokers.iter().any(|b| b.is_empty()) {
        report(
            "kafka_broker",
            "must list at least one host:port, with no empty entry".into(),
        );
    }
    for broker in brokers.iter().filter(|b| !b.is_empty()) {
        let valid = broker
            .rsplit_once(':')
            .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
        if !valid {
            report("kafka_broker", format!("`{broker}` is not host:port"));
        }
    }
    if raw.kafka_topic.trim().is_empty() {
        report("kafka_topic", "must not be empty".into());
    }
    if consumer_group.trim().is_empty() {
        report("consumer_group", "must not be empty".into());
    }

    let protocol = raw.security_protocol.as_kafka().to_uppercase();
    let sasl = if !readable("security_protocol") {
        // What the SASL settings need depends on a protocol that could not be read.
        None
    } else if raw.security_protocol.uses_sasl() {
        if raw.sasl_mechanism.is_none() {
            report("sasl_mechanism", format!("required with security_protocol {protocol} (PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512)"));
        }
        let username = raw.sasl_username.filter(|u| !u.is_empty());
        if username.is_none() {
            report(
                "sasl_username",
                format!("required with security_protocol {protocol}"),
            );
        }
        let password = raw.sasl_password.filter(|p| !p.expose().is_empty());
        if password.is_none() {
            report(
                "sasl_password",
                format!("required with security_protocol {protocol}"),
            );
        }
        match (raw.sasl_mechanism, username, password) {
            (Some(mechanism), Some(username), Some(password)) => Some(Sasl {
                mechanism,
                username,
                password,
            }),
            _ => None,
        }
    } else {
        let stray = [
            ("sasl_mechanism", raw.sasl_mechanism.is_some()),
            ("sasl_username", raw.sasl_username.is_some()),
            ("sasl_password", raw.sasl_password.is_some()),
        ];
        for (name, _) in stray.iter().filter(|(_, set)| *set) {
            report(
                name,
                format!(
                    "has no effect with security_protocol {protocol}: use SASL_PLAINTEXT or SASL_SSL"
                ),
            );
        }
        None
    };

    if let Some(ca) = &raw.ssl_ca_location {
        if !ca.is_file() {
            report(
                "ssl_ca_location",
                format!("{} is not a readable file", ca.display()),
            );
        }
    }

    for (name, list) in [
        ("tag_fields", &mapping.tag_fields),
        ("operational_fields", &mapping.operational_fields),
    ] {
        for (i, _) in list.iter().enumerate().filter(|(_, f)| f.is_empty()) {
            report(&format!("{name}[{i}]"), "must not be empty".into());
        }
    }
    for (i, field) in mapping.tag_fields.iter().enumerate() {
        if field.is_empty() {
            continue; // said above
        }
        let key = match check_tag(field) {
            Ok(key) => key,
            Err(r) => {
                report(&format!("tag_fields[{i}]"), r);
                continue;
            }
        };
        if key.contains(':') {
            // The field's name is the tag's key, and a tag's key ends at its first `:`.
            report(
                &format!("tag_fields[{i}]"),
                format!("`{key}` contains `:`, which would end the tag's key"),
            );
        } else if key.len() > MAX_TAG_FIELD_NAME {
            report(
                &format!("tag_fields[{i}]"),
                format!(
                    "`{key}` is {} bytes long: a tag holds {MAX_NAME_CHARS} at most, so a name \
                     over {MAX_TAG_FIELD_NAME} bytes leaves no room for a number",
                    key.len()
                ),
            );
        }
    }
    for (name, list) in [
        ("include_metrics", &mapping.include_metrics),
        ("exclude_metrics", &mapping.exclude_metrics),
        ("distribution_metrics", &mapping.distribution_metrics),
    ] {
        for (i, _) in list.iter().enumerate().filter(|(_, f)| f.is_empty()) {
            report(
                &format!("{name}[{i}]"),
                "an empty pattern matches nothing".into(),
            );
        }
    }
    if !AGGREGATION_INTERVALS.contains(&aggregation_interval) {
        report(
            "aggregation_interval",
            format!(
                "must be one of 0, 1, 2, 5 or 10 (seconds; a divisor of the Agent's 10 s flush), not {}",
                aggregation_interval
            ),
        );
    }
    if max_contexts == 0 {
        report(
            "max_contexts",
            "must be at least 1 (the default is 100000)".into(),
        );
    }
    if !COMMIT_INTERVALS_MS.contains(&commit_interval_ms) {
        report(
            "commit_interval_ms",
            format!(
                "must be between {} and {} (milliseconds), not {}",
                COMMIT_INTERVALS_MS.start(),
                COMMIT_INTERVALS_MS.end(),
                commit_interval_ms
            ),
        );
    }
    if mapping.timestamp_field.is_empty() {
        report("timestamp_field", "must not be empty".into());
    }

    let mut tags = Vec::new();
    for (i, tag) in raw.tags.iter().enumerate() {
        match check_tag(tag) {
            Ok(tag) => tags.push(tag),
            Err(r) => report(&format!("tags[{i}]"), r),
        }
    }
    tags.extend(init.global_tags.iter().cloned());
    if let Some(destination) = &init.dogstatsd {
        let limit = destination.max_datagram_bytes(init.udp_max_datagrams_per_second > 0);
        if let Err((name, r)) = check_longest_line(&mapping.tag_fields, &tags, destination, limit) {
            report(name, r);
        }
    }

    let mut kafka_options = KafkaOptions::default();
    for (name, value) in raw.kafka_options {
        if PROTECTED_KAFKA_OPTIONS.contains(&name.as_str()) {
            report(
                &format!("kafka_options.{name}"),
                "cannot be changed: the forwarder stores offsets itself, only after the Agent has the data".into(),
            );
        }
        kafka_options.0.insert(name, value.into_string());
    }

    Instance {
        index,
        brokers,
        topic: raw.kafka_topic,
        consumer_group,
        start_offset: raw.start_offset,
        security_protocol: raw.security_protocol,
        sasl,
        ssl_ca_location: raw.ssl_ca_location,
        mapping,
        aggregation_interval,
        max_contexts,
        commit_interval_ms,
        tags,
        kafka_options,
    }
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
    limit: usize,
) -> Result<(), (&'static str, String)> {
    // Each tag with the `,` before it, less the first one's.
    let static_bytes = tags.iter().map(|t| t.len() + 1).sum::<usize>();
    let all_bytes = (tag_fields.len() * (MAX_NAME_CHARS + 1) + static_bytes).saturating_sub(1);
    let static_bytes = static_bytes.saturating_sub(1);
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
