//! `algorithmia-datadog discover`: what the models publish on the topic, read without touching
//! the forwarder's group.
//!
//! The newest messages of each partition (up to its high watermark) are read with `assign()`,
//! never `subscribe()`, so no JoinGroup is sent; under a group id of its own (`<group>-discover`)
//! that nothing ever commits with (`enable.auto.commit=false`, no offset stored). It is safe
//! against a production topic: the forwarder's group, its members and its offsets are left alone.
//!
//! Every field is judged by the forwarder's own mapping rules ([`MetricMapper`], built from the
//! instance's configuration), so a field reported as skipped comes with the reason the forwarder
//! would count.
//!
//! [`MetricMapper`]: crate::metrics::MetricMapper
//!
//! ```
//! use algorithmia_datadog::config::Config;
//! use algorithmia_datadog::discover::Discovery;
//!
//! let yaml = "instances:\n  - kafka_broker: k:9092\n    kafka_topic: insights\n";
//! let config = Config::from_yaml(yaml, "algorithmia.yaml", &|_| None).unwrap();
//! let mut discovery = Discovery::new(&config.metric_prefix, &config.instances[0]);
//! discovery.add(Some(br#"{"algorithm_name":"m","algorithm_version":"1","risk_score":0.2}"#));
//! discovery.add(Some(b"[1]"));
//! let report = discovery.report(None, None);
//! assert_eq!(report.models[0].messages, 1);
//! assert_eq!(report.rejected[0].reason, "not_an_object");
//! assert_eq!(report.fields.iter().find(|f| f.name == "risk_score").unwrap().outcome, "gauge");
//! ```

mod judge;
mod read;
mod report;

use std::time::Duration;

pub use judge::Discovery;
pub use read::{
    discover_group, read_tail, reader_config, share_out, DiscoverError, PartitionRead, ReadOptions,
    ReadSummary,
};
pub use report::{FieldReport, Model, Rejected, Report, Suggestion};

/// How many messages `discover` reads unless told otherwise.
pub const DEFAULT_MESSAGES: u64 = 1000;

/// How long to wait before asking unanswering brokers again.
const RETRY_PAUSE: Duration = Duration::from_millis(500);

/// How long `discover` may take unless told otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// Appended to the forwarder's group id to make the group id `discover` gives librdkafka (a
/// consumer needs one); nothing joins or commits with it.
pub const GROUP_SUFFIX: &str = "-discover";

/// A field with at least this many distinct values within one model version is a per-call value,
/// worth a distribution (percentiles) rather than a gauge (the last value of each flush).
pub const PER_CALL_DISTINCT: usize = 10;

/// A text field with at most this many distinct values is suggested as a tag.
pub const MAX_TAG_VALUES: usize = 10;
