//! `algorithmia-datadog`: forwards Algorithmia Insights metrics from Kafka to the Datadog Agent.
//!
//! One module per stage of the pipeline, each naming only the stages before it:
//!
//! - [`config`]: `conf.d/algorithmia.yaml` (or the old script's environment variables), validated;
//! - [`source`]: the Kafka consumer's settings and callbacks;
//! - [`decode`]: an Insights message, a flat JSON object, read without building a tree;
//! - [`metrics`]: the mapping rules from fields to points (gauges, distributions, call counts);
//! - [`aggregate`]: the points of a few seconds folded per context, as Datadog's clients do;
//! - [`sink`]: datagram packing, and one file per transport (UDP, Unix socket, standard output);
//! - [`forwarder`]: the stages after the source, one message at a time, and the one owner of
//!   what was delivered ([`offsets`]: which offsets that makes safe to store);
//! - [`pipeline`]: the loop that drives them, the one place offsets are stored and committed,
//!   and a clean stop;
//! - [`shutdown`]: signals and the stop deadline;
//! - [`telemetry`]: what the forwarder counts about itself, its health and the reporter that
//!   sends both; [`throttle`]: what keeps the log readable through floods and outages.
//!
//! [`dogstatsd`] holds the wire format every stage writes; [`hash`] the hasher of the lookups
//! made per message.
//!
//! [`embedded`] and [`demo`] run the same pipeline against an in-process Kafka; [`assets`]
//! installs the bundled dashboard and monitors through the Datadog API.

#![warn(missing_docs)]

pub mod aggregate;
pub mod assets;
pub mod config;
pub mod decode;
pub mod demo;
pub mod dogstatsd;
pub mod embedded;
pub mod forwarder;
pub mod hash;
pub mod metrics;
pub mod offsets;
pub mod pipeline;
pub mod shutdown;
pub mod sink;
pub mod source;
pub mod telemetry;
pub mod throttle;
