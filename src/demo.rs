//! `algorithmia-datadog demo`: the whole pipeline on a machine with no Kafka and no Agent.
//!
//! An embedded Kafka is filled with realistic Insights messages (and, as in real life, a few
//! broken ones), then the very same pipeline as `run` forwards them to the configured DogStatsD
//! destination.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::{Config, ConfigError, Destination};
use crate::embedded::{EmbeddedKafka, SampleMessages, PUBLIC_SAMPLE};
use crate::pipeline::{run_with_counters, Output, RunError, RunOptions};
use crate::telemetry::{Counters, Snapshot};

/// The demo's topic on the embedded cluster.
pub const DEMO_TOPIC: &str = "insights";

/// The tag on every point the demo sends, model metrics and self-metrics alike, so that demo
/// data sent to a real Agent can be told apart (and filtered out: `!demo:true`).
pub const DEMO_TAG: &str = "demo:true";

/// How long the demo lets the destination refuse data before it gives up: it is not a daemon.
pub const GIVE_UP_AFTER: Duration = Duration::from_secs(3);

/// What the demo did.
#[derive(Debug, Clone)]
pub struct DemoReport {
    /// Where the datagrams went.
    pub destination: Destination,
    /// Messages produced into the embedded Kafka.
    pub produced: u64,
    /// How many of them are broken on purpose.
    pub broken: u64,
    /// The pipeline's counters at the end.
    pub counters: Snapshot,
    /// Time spent forwarding (not producing).
    pub elapsed: Duration,
    /// The aggregation window, in seconds (0: every point sent).
    pub aggregation_interval: u64,
    /// Whether a signal stopped the demo before it forwarded everything.
    pub interrupted: bool,
}

impl std::fmt::Display for DemoReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let c = &self.counters;
        let secs = self.elapsed.as_secs_f64().max(1e-9);
        writeln!(f, "demo summary")?;
        writeln!(f, "  destination      {}", self.destination)?;
        writeln!(
            f,
            "  messages         {} consumed of {} produced{}",
            c.messages,
            self.produced,
            if self.interrupted {
                " (interrupted)"
            } else {
                ""
            }
        )?;
        writeln!(
            f,
            "  gauges           {} written, each point tagged {DEMO_TAG}",
            c.gauges
        )?;
        writeln!(f, "  call counts      {}", c.counts)?;
        writeln!(f, "  distributions    {} values", c.distribution_values)?;
        match self.aggregation_interval {
            0 => writeln!(
                f,
                "  aggregated       0 (aggregation_interval: 0 sends every point)"
            )?,
            s => writeln!(
                f,
                "  aggregated       {} values folded into the points of their {s} s window",
                c.points_aggregated
            )?,
        }
        writeln!(
            f,
            "  datagrams        {} ({} bytes) of model metrics; the forwarder's own metrics \
             and service checks go apart, not counted here",
            c.datagrams, c.bytes
        )?;
        write!(f, "  rejected         {} messages", c.rejected_total())?;
        if c.rejected_total() > 0 {
            write!(f, " ({})", c.describe_rejections())?;
        }
        if self.broken > 0 {
            write!(
                f,
                ": the demo injects {} broken messages on purpose",
                self.broken
            )?;
        }
        writeln!(f)?;
        writeln!(f, "  skipped fields   {}", c.describe_skips())?;
        write!(
            f,
            "  rate             {:.0} messages/s over {:.2} s",
            c.messages as f64 / secs,
            secs
        )?;
        if let Destination::Udp(_) = self.destination {
            write!(
                f,
                "\n\nUDP cannot tell whether anything received these datagrams: without a Datadog \
                 Agent listening\non {}, they were lost. To see them, run `demo --print`.",
                self.destination
            )?;
        }
        Ok(())
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
    /// The destination refused data: the demo gives up rather than retry like the daemon.
    #[error(
        "{destination} refused every datagram for {} s ({error}); giving up. Is a Datadog \
         Agent listening there (DogStatsD, `dogstatsd_socket` for a Unix socket)? Point \
         DD_DOGSTATSD_URL elsewhere, or run `demo --print` to see the datagrams",
        .waited.as_secs()
    )]
    Refused {
        /// The destination.
        destination: Destination,
        /// How long it refused data.
        waited: Duration,
        /// The last write error.
        error: String,
    },
    /// The pipeline failed.
    #[error(transparent)]
    Run(RunError),
}

/// The broken message at position `i` of the demo's stream, if it is one: in every thousand,
/// one is truncated JSON, one is not UTF-8, one is not an object.
fn broken_message(i: u64) -> Option<&'static [u8]> {
    match i % 1000 {
        500 => Some(b"{\"risk_score\":0.3,\"algorithm_name\":\"credit_card_appr"),
        700 => Some(b"{\"algorithm_owner\":\"\xe9ric\"}"),
        900 => Some(b"[\"not\",\"an\",\"object\"]"),
        _ => None,
    }
}

/// How many of the first `count` demo messages are broken on purpose.
pub fn broken_messages(count: u64) -> u64 {
    (0..count).filter(|i| broken_message(*i).is_some()).count() as u64
}

/// The messages the demo produces: `count` samples with the public sample first, and three
/// broken messages in every thousand (truncated JSON, not UTF-8, not an object).
pub fn demo_messages(count: u64, seed: u64) -> Vec<Vec<u8>> {
    let mut samples = SampleMessages::new(seed);
    (0..count)
        .map(|i| match (i, broken_message(i)) {
            (0, _) => PUBLIC_SAMPLE.as_bytes().to_vec(),
            (_, Some(broken)) => broken.to_vec(),
            (i, None) => samples.message(i).into_bytes(),
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
        "instances:\n  - kafka_broker: \"{bootstrap}\"\n    kafka_topic: {DEMO_TOPIC}\n    consumer_group: algorithmia-datadog-demo\n    start_offset: earliest\n    tags: [\"{DEMO_TAG}\"]\n"
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
            embedded.mapping = first.mapping.clone();
            embedded.aggregation_interval = first.aggregation_interval;
            embedded.max_contexts = first.max_contexts;
            embedded.tags = first.tags.clone();
            embedded.tags.push(DEMO_TAG.to_string());
        }
    }
    Ok(config)
}

/// Runs the demo: produce `count` messages, forward them all (or until `stop` is raised),
/// report. A destination that refuses data for [`GIVE_UP_AFTER`] ends it with an error.
pub fn run_demo(
    base: Option<&Config>,
    count: u64,
    print: bool,
    stop: Arc<AtomicBool>,
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
        stop: stop.clone(),
        max_messages: Some(produced),
        output: if print {
            Output::SendAndPrint
        } else {
            Output::Send
        },
        give_up_after: Some(GIVE_UP_AFTER),
        ..RunOptions::default()
    };
    let counters = [Arc::new(Counters::default())];
    let started = Instant::now();
    let snapshot = run_with_counters(&config, &options, &counters).map_err(|e| match e {
        RunError::Refused { waited, error } => DemoError::Refused {
            destination: config.dogstatsd.clone(),
            waited,
            error,
        },
        other => DemoError::Run(other),
    })?;
    Ok(DemoReport {
        destination: config.dogstatsd.clone(),
        produced,
        broken: broken_messages(produced),
        interrupted: snapshot.messages < produced && stop.load(Ordering::Relaxed),
        counters: snapshot,
        elapsed: started.elapsed(),
        aggregation_interval: config
            .instances
            .first()
            .map_or(0, |i| i.aggregation_interval),
    })
}
