//! `algorithmia-datadog demo`: the whole pipeline on a machine with no Kafka and no Agent.
//!
//! An embedded Kafka is filled with realistic Insights messages (and, as in real life, a few
//! broken ones), then the very same pipeline as `run` forwards them to the configured DogStatsD
//! destination.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::{Config, ConfigError};
use crate::embedded::{EmbeddedKafka, SampleMessages, PUBLIC_SAMPLE};
use crate::pipeline::{run_with_counters, Output, RunError, RunOptions};
use crate::telemetry::{Counters, Snapshot};

/// The demo's topic on the embedded cluster.
pub const DEMO_TOPIC: &str = "insights";

/// What the demo did.
#[derive(Debug, Clone)]
pub struct DemoReport {
    /// Where the datagrams went.
    pub destination: String,
    /// Messages produced into the embedded Kafka.
    pub produced: u64,
    /// The pipeline's counters at the end.
    pub counters: Snapshot,
    /// Time spent forwarding (not producing).
    pub elapsed: Duration,
}

impl std::fmt::Display for DemoReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let c = &self.counters;
        let secs = self.elapsed.as_secs_f64().max(1e-9);
        writeln!(f, "demo summary")?;
        writeln!(f, "  destination      {}", self.destination)?;
        writeln!(
            f,
            "  messages         {} consumed of {} produced",
            c.messages, self.produced
        )?;
        writeln!(
            f,
            "  gauges           {} in {} datagrams ({} bytes)",
            c.gauges, c.datagrams, c.bytes
        )?;
        writeln!(f, "  rejected         {}", c.rejected_total())?;
        writeln!(f, "  skipped fields   {}", c.describe_skips())?;
        write!(
            f,
            "  rate             {:.0} messages/s, {:.0} gauges/s over {:.2} s",
            c.messages as f64 / secs,
            c.gauges as f64 / secs,
            secs
        )
    }
}

/// Why the demo failed.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// The configuration (for the destination) is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The embedded Kafka failed.
    #[error("embedded Kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    /// The pipeline failed.
    #[error(transparent)]
    Run(#[from] RunError),
}

/// The messages the demo produces: `count` samples with the public sample first, and one broken
/// message in every thousand (truncated JSON, not UTF-8, not an object).
pub fn demo_messages(count: u64, seed: u64) -> Vec<Vec<u8>> {
    let mut samples = SampleMessages::new(seed);
    (0..count)
        .map(|i| match i {
            0 => PUBLIC_SAMPLE.as_bytes().to_vec(),
            i if i % 1000 == 500 => {
                b"{\"risk_score\":0.3,\"algorithm_name\":\"credit_card_appr".to_vec()
            }
            i if i % 1000 == 700 => b"{\"algorithm_owner\":\"\xe9ric\"}".to_vec(),
            i if i % 1000 == 900 => b"[\"not\",\"an\",\"object\"]".to_vec(),
            i => samples.message(i).into_bytes(),
        })
        .collect()
}

/// The configuration the demo runs: the destination, prefix, tags and mapping rules of `base`
/// (the user's configuration, if any), pointed at the embedded cluster.
pub fn demo_config(
    base: Option<&Config>,
    bootstrap: &str,
    env: crate::config::EnvLookup<'_>,
) -> Result<Config, ConfigError> {
    let yaml = format!(
        "instances:\n  - kafka_broker: \"{bootstrap}\"\n    kafka_topic: {DEMO_TOPIC}\n    consumer_group: algorithmia-datadog-demo\n    start_offset: earliest\n"
    );
    let mut config = Config::from_yaml(&yaml, "demo", env)?;
    if let Some(base) = base {
        // The destination is the base's: what the environment said about one does not apply
        // (and what the base ignored was said when it was loaded).
        config.ignored.clear();
        config.dogstatsd = base.dogstatsd.clone();
        config.metric_prefix = base.metric_prefix.clone();
        if let Some(first) = base.instances.first() {
            let embedded = &mut config.instances[0];
            embedded.tag_fields = first.tag_fields.clone();
            embedded.operational_fields = first.operational_fields.clone();
            embedded.numeric_strings = first.numeric_strings;
            embedded.booleans = first.booleans;
            embedded.include_metrics = first.include_metrics.clone();
            embedded.exclude_metrics = first.exclude_metrics.clone();
            embedded.send_timestamps = first.send_timestamps;
            embedded.timestamp_field = first.timestamp_field.clone();
            embedded.tags = first.tags.clone();
        }
    }
    Ok(config)
}

/// Runs the demo: produce `count` messages, forward them all, report.
pub fn run_demo(
    base: Option<&Config>,
    count: u64,
    print: bool,
    env: crate::config::EnvLookup<'_>,
) -> Result<DemoReport, DemoError> {
    let kafka = EmbeddedKafka::start(1)?;
    // The mock cluster keeps 5 MiB per partition: 8 partitions hold ~100 000 messages.
    let partitions = (count / 10_000).clamp(4, 64) as i32;
    kafka.create_topic(DEMO_TOPIC, partitions)?;
    let config = demo_config(base, kafka.bootstrap_servers(), env)?;
    for ignored in &config.ignored {
        log::warn!("{ignored}");
    }
    log::info!("demo: producing {count} Insights messages into an embedded Kafka ({partitions} partitions)");
    let produced = kafka.produce(DEMO_TOPIC, demo_messages(count, 42))? as u64;

    let options = RunOptions {
        max_messages: Some(produced),
        output: if print {
            Output::SendAndPrint
        } else {
            Output::Send
        },
        ..RunOptions::default()
    };
    let counters = [Arc::new(Counters::default())];
    let started = Instant::now();
    let snapshot = run_with_counters(&config, &options, &counters)?;
    Ok(DemoReport {
        destination: config.dogstatsd.to_string(),
        produced,
        counters: snapshot,
        elapsed: started.elapsed(),
    })
}
