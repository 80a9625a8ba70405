//! `algorithmia-datadog`: forwards Algorithmia Insights metrics from Kafka to the Datadog Agent.
//!
//! One module per stage of the pipeline:
//!
//! - [`config`]: `conf.d/algorithmia.yaml` (or the old script's environment variables), validated;
//! - [`source`]: the Kafka consumer and the offsets it may store;
//! - [`decode`]: an Insights message, a flat JSON object, read without building a tree;
//! - [`metrics`]: the mapping rules from fields to DogStatsD gauge lines;
//! - [`sink`]: datagram packing and the socket, through cadence;
//! - [`pipeline`]: the loop that drives them, and a clean stop;
//! - [`shutdown`]: signals and the stop deadline;
//! - [`telemetry`]: what the forwarder counts about itself.
//!
//! [`embedded`] and [`demo`] run the same pipeline against an in-process Kafka; [`assets`]
//! installs the bundled dashboard and monitors through the Datadog API.

#![warn(missing_docs)]

pub mod assets;
pub mod config;
pub mod decode;
pub mod demo;
pub mod embedded;
pub mod metrics;
pub mod pipeline;
pub mod shutdown;
pub mod sink;
pub mod source;
pub mod telemetry;
