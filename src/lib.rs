//! `algorithmia-datadog`: forwards Algorithmia Insights metrics from Kafka to the Datadog Agent.
//!
//! One module per stage of the pipeline, each naming only the stages before it. The modules are
//! private but for the configuration ([`config`]), the mapping rules ([`metrics`]), the demo
//! ([`demo`]), the dashboard installer ([`assets`]) and [`discover`]; what the binary, the tests, the benches
//! and the fuzz targets use of the rest is re-exported here.
//!
//! - [`config`]: `conf.d/algorithmia.yaml` (or the old script's environment variables), validated;
//! - [`source`]: the Kafka consumer's settings and callbacks, and [`tls_diagnosis`]: why a
//!   broker's certificate was refused, which librdkafka cannot say;
//! - [`decode`]: an Insights message, a flat JSON object, read without building a tree;
//! - [`metrics`]: the mapping rules from fields to points (gauges, distributions, call counts);
//! - [`aggregate`]: the points of a few seconds folded per context, as Datadog's clients do;
//! - [`sink`]: datagram packing, and one file per transport (UDP, paced; Unix socket; standard
//!   output);
//! - [`forwarder`]: the stages after the source, one message at a time, and the one owner of
//!   what was delivered ([`offsets`]: which offsets that makes safe to store);
//! - [`pipeline`]: the loop that drives them, the one place offsets are stored and committed,
//!   and a clean stop; [`probes`]: `/livez` and `/readyz` over HTTP for an orchestrator;
//! - [`shutdown`]: signals and the stop deadline;
//! - [`telemetry`]: what the forwarder counts about itself, its health and the reporter that
//!   sends both; [`throttle`]: what keeps the log readable through floods and outages.
//!
//! [`dogstatsd`] holds the wire format every stage writes; [`hash`] the hasher of the lookups
//! made per message.
//!
//! [`embedded`] and [`demo`] run the same pipeline against an in-process Kafka; [`assets`]
//! installs the bundled dashboard and monitors through the Datadog API; [`discover`] reads the
//! newest messages of a topic, read-only, and says what the models publish.

#![warn(missing_docs)]

mod aggregate;
pub mod assets;
pub mod config;
mod decode;
pub mod demo;
pub mod discover;
mod dogstatsd;
/// librdkafka's mock cluster in-process, for the demo, the tests and the benches: unsafe FFI,
/// not an interface.
#[doc(hidden)]
pub mod embedded;
mod forwarder;
mod hash;
pub mod metrics;
mod offsets;
mod pipeline;
mod probes;
mod shutdown;
mod sink;
mod source;
mod telemetry;
mod throttle;
mod tls_diagnosis;

pub use aggregate::Window;
pub use decode::{decode, DecodeError, Field, FieldValue, InsightsMessage};
pub use dogstatsd::{MetricKind, Value};
pub use forwarder::{Due, Forwarder, ForwarderBuilder, Released};
pub use pipeline::{run, run_with_counters, Output, RunError, RunOptions};
pub use shutdown::Shutdown;
pub use sink::{DogStatsdSink, DogStatsdSinkBuilder, Written};
/// The UDP transport on its own, for `cargo bench --bench udp_pace`: not an interface.
#[doc(hidden)]
pub use sink::{Packed, SendDatagrams, UdpDestination, BATCH};
pub use source::validate_client_config;
pub use telemetry::{
    Counters, Health, RejectReason, SelfMetric, SelfMetricKind, SkipReason, Snapshot,
    TimestampIssue, SELF_METRICS, SERVICE_CHECKS,
};
