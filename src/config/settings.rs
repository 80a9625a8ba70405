//! The validated settings: what the rest of the forwarder reads.

use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::secrets::{KafkaOptions, Secret};
#[cfg(doc)]
use super::AGGREGATION_INTERVALS;

/// The most a DogStatsD server reads of one datagram: the Agent's `dogstatsd_buffer_size`
/// default, and what Datadog's serverless DogStatsD server reads (it cuts longer ones).
pub const MAX_DATAGRAM_BYTES: usize = 8192;

/// Whether `host:port` names this machine's loopback interface: `localhost`, 127.0.0.0/8 or
/// `[::1]`.
fn is_loopback(address: &str) -> bool {
    let host = address.rsplit_once(':').map_or(address, |(host, _)| host);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
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

    /// The largest datagram worth sending on this transport: 8192 bytes (what the Agent and
    /// Datadog's serverless DogStatsD server read at once) over a Unix socket, or to an unpaced
    /// loopback address, whose MTU is 64 KiB; elsewhere 1432, which fits a 1500-byte MTU
    /// unfragmented, as Datadog's clients do. A paced destination (`paced_udp`) keeps 1432: its
    /// pace was measured with such datagrams against a server's receive buffer, which a burst of
    /// 8 KiB ones would overflow.
    ///
    /// Fewer, larger datagrams spare the kernel five sends in six: in the broker benchmark,
    /// every point over loopback UDP cost 2.3 CPU µs per message with 1432-byte datagrams and
    /// 1.2 with 8192-byte ones.
    pub fn max_datagram_bytes(&self, paced_udp: bool) -> usize {
        match self {
            Destination::Udp(address) if !paced_udp && is_loopback(address) => MAX_DATAGRAM_BYTES,
            Destination::Udp(_) => 1432,
            Destination::Unix(_) => MAX_DATAGRAM_BYTES,
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
    pub(super) fn uses_sasl(self) -> bool {
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

/// The mapping rules of one instance: which fields become points, of which kind, with which
/// tags. The metric mapper is built from it, and its [`Default`] is every setting's default.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Mapping {
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
    /// Whether to attach `|T<seconds>` from the message's time.
    pub send_timestamps: bool,
    /// The field holding the message's time.
    pub timestamp_field: String,
}

impl Default for Mapping {
    fn default() -> Self {
        let names = ["algorithm_name", "algorithm_version", "algorithm_owner"];
        let operational = ["request_id", "session_id", "time"];
        Mapping {
            tag_fields: names.map(String::from).to_vec(),
            operational_fields: names
                .iter()
                .chain(&operational)
                .map(|s| s.to_string())
                .collect(),
            numeric_strings: true,
            booleans: true,
            include_metrics: Vec::new(),
            exclude_metrics: Vec::new(),
            distribution_metrics: Vec::new(),
            send_timestamps: false,
            timestamp_field: "time".into(),
        }
    }
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
    /// How fields become points (read through `Deref` as well: `instance.tag_fields`).
    #[serde(flatten)]
    pub mapping: Mapping,
    /// Seconds per aggregation window (one of [`AGGREGATION_INTERVALS`]); 0 sends every point.
    pub aggregation_interval: u64,
    /// Most contexts an aggregation window holds before it is sent early.
    pub max_contexts: usize,
    /// How often the offsets of forwarded messages are committed to the group.
    pub commit_interval_ms: u64,
    /// Every static tag of this instance, in order: instance `tags`, `init_config.tags`, `DD_*`.
    pub tags: Vec<String>,
    /// Raw librdkafka properties, applied last.
    pub kafka_options: KafkaOptions,
}

/// An instance is read as its mapping rules too: `instance.tag_fields`.
impl std::ops::Deref for Instance {
    type Target = Mapping;

    fn deref(&self) -> &Mapping {
        &self.mapping
    }
}
