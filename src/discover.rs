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

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use serde::Serialize;

use crate::config::Instance;
use crate::decode::{decode, FieldValue};
use crate::dogstatsd::{MetricKind, Value};
use crate::metrics::{parse_numeric_string, Action, MetricMapper};
use crate::source;

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

/// The group id `discover` gives librdkafka for `instance`.
pub fn discover_group(instance: &Instance) -> String {
    format!("{}{GROUP_SUFFIX}", instance.consumer_group)
}

/// The instance's client settings (brokers, security, `kafka_options`), then what makes the
/// reader harmless: its own group id, no commit, no offset stored.
pub fn reader_config(instance: &Instance) -> ClientConfig {
    let mut config = source::client_config(instance);
    config
        .set("group.id", discover_group(instance))
        .set("client.id", "algorithmia-datadog-discover")
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "true")
        .set("auto.offset.reset", "earliest")
        .set("statistics.interval.ms", "0")
        // Static membership is a member's: this reader is none.
        .remove("group.instance.id");
    config
}

/// What to read.
#[derive(Debug, Clone)]
pub struct ReadOptions {
    /// At most this many messages, the newest of the topic, spread over its partitions.
    pub messages: u64,
    /// Everything (connecting included) within this long.
    pub timeout: Duration,
}

impl Default for ReadOptions {
    fn default() -> Self {
        ReadOptions {
            messages: DEFAULT_MESSAGES,
            timeout: DEFAULT_TIMEOUT,
        }
    }
}

/// What was read of one partition.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct PartitionRead {
    /// The partition.
    pub partition: i32,
    /// Its low watermark when the read began.
    pub low: i64,
    /// Its high watermark when the read began (what ListOffsets answered).
    pub high: i64,
    /// The first offset asked for: as many before `high` as this partition's share.
    pub start: i64,
    /// The offset after the last message read (the end of the partition when `complete`).
    pub end: i64,
    /// Messages kept: the newest read, at most as many as asked of this partition.
    pub read: u64,
    /// Whether the read reached the end of the partition.
    pub complete: bool,
}

/// What was read of the topic.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ReadSummary {
    /// The topic.
    pub topic: String,
    /// The bootstrap brokers.
    pub brokers: String,
    /// The messages asked for.
    pub requested: u64,
    /// Messages read in all.
    pub read: u64,
    /// Every partition of the topic, in order.
    pub partitions: Vec<PartitionRead>,
    /// Whether the timeout ended the read before every partition's high watermark.
    pub timed_out: bool,
    /// The group id librdkafka was given (never joined, never committed).
    pub group_id: String,
    /// How long the read took, in seconds.
    pub seconds: f64,
}

/// Why nothing could be read.
#[derive(Debug, thiserror::Error)]
pub enum DiscoverError {
    /// No broker answered in time.
    #[error("no broker of {brokers} answered within {} s ({last})", .waited.as_secs_f64())]
    Unreachable {
        /// The bootstrap brokers.
        brokers: String,
        /// How long it tried: the timeout.
        waited: Duration,
        /// The last error librdkafka reported.
        last: String,
    },
    /// The brokers answered, but the topic is not there.
    #[error("topic {topic} does not exist on {brokers} ({reason})")]
    NoTopic {
        /// The topic.
        topic: String,
        /// The bootstrap brokers.
        brokers: String,
        /// What the broker said.
        reason: String,
    },
    /// Any other Kafka failure.
    #[error("kafka: {0}")]
    Kafka(String),
}

/// The reader's callbacks: librdkafka's errors and logs are kept for the final message rather
/// than logged every time (a missing broker would otherwise log a line per retry).
#[derive(Default)]
struct Quiet {
    last_error: Mutex<Option<String>>,
}

impl Quiet {
    fn last(&self) -> Option<String> {
        self.last_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

impl ClientContext for Quiet {
    fn error(&self, error: KafkaError, reason: &str) {
        let (_, what) = source::describe_kafka_error(&error, Some(reason));
        log::debug!("kafka: {what}");
        *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(what);
    }

    fn log(&self, _level: rdkafka::config::RDKafkaLogLevel, fac: &str, message: &str) {
        log::debug!(target: "librdkafka", "librdkafka: {fac} {message}");
    }
}

impl ConsumerContext for Quiet {}

/// Shares `total` messages among partitions holding `available` each: as evenly as they allow,
/// a partition with fewer giving its share to the others.
pub fn share_out(available: &[u64], total: u64) -> Vec<u64> {
    let mut take = vec![0u64; available.len()];
    let mut left = total;
    loop {
        let open: Vec<usize> = (0..available.len())
            .filter(|&i| take[i] < available[i])
            .collect();
        if open.is_empty() || left == 0 {
            return take;
        }
        let share = (left / open.len() as u64).max(1);
        for i in open {
            let add = share.min(available[i] - take[i]).min(left);
            take[i] += add;
            left -= add;
            if left == 0 {
                break;
            }
        }
    }
}

/// Reads the newest `options.messages` messages of the instance's topic into `discovery`.
///
/// Fails with [`DiscoverError::Unreachable`] when no broker answers within the timeout; a read
/// the timeout cuts short is returned as such ([`ReadSummary::timed_out`]).
pub fn read_tail(
    instance: &Instance,
    options: &ReadOptions,
    discovery: &mut Discovery,
) -> Result<ReadSummary, DiscoverError> {
    let started = Instant::now();
    let deadline = started + options.timeout;
    let left = || deadline.saturating_duration_since(Instant::now());
    let brokers = instance.brokers.join(",");
    let topic = instance.topic.as_str();
    let consumer: BaseConsumer<Quiet> = reader_config(instance)
        .create_with_context(Quiet::default())
        .map_err(|e| DiscoverError::Kafka(e.to_string()))?;
    let unreachable = |e: KafkaError, consumer: &BaseConsumer<Quiet>| DiscoverError::Unreachable {
        brokers: brokers.clone(),
        waited: options.timeout,
        last: consumer.context().last().unwrap_or_else(|| e.to_string()),
    };

    // A broker that refuses connections fails a request at once: asked again until the timeout.
    let metadata = loop {
        match consumer.fetch_metadata(Some(topic), left()) {
            Ok(metadata) => break metadata,
            Err(e) if left() > RETRY_PAUSE => {
                log::debug!("kafka: {e}");
                std::thread::sleep(RETRY_PAUSE);
            }
            Err(e) => return Err(unreachable(e, &consumer)),
        }
    };
    let no_topic = |reason: String| DiscoverError::NoTopic {
        topic: topic.to_string(),
        brokers: brokers.clone(),
        reason,
    };
    let found = metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .ok_or_else(|| no_topic("not in the broker's metadata".into()))?;
    if let Some(error) = found.error() {
        return Err(no_topic(
            rdkafka::types::RDKafkaErrorCode::from(error).to_string(),
        ));
    }
    let mut ids: Vec<i32> = found.partitions().iter().map(|p| p.id()).collect();
    ids.sort_unstable();
    if ids.is_empty() {
        return Err(no_topic("no partitions".into()));
    }

    let mut partitions = Vec::with_capacity(ids.len());
    for &id in &ids {
        let (low, high) = consumer
            .fetch_watermarks(topic, id, left())
            .map_err(|e| unreachable(e, &consumer))?;
        partitions.push(PartitionRead {
            partition: id,
            low,
            high,
            start: high,
            end: high,
            read: 0,
            complete: true,
        });
    }
    let available: Vec<u64> = partitions
        .iter()
        .map(|p| (p.high - p.low).max(0) as u64)
        .collect();
    let mut assignment = TopicPartitionList::new();
    for (p, take) in partitions
        .iter_mut()
        .zip(share_out(&available, options.messages))
    {
        if take > 0 {
            p.start = p.high - take as i64;
            p.complete = false;
            assignment
                .add_partition_offset(topic, p.partition, Offset::Offset(p.start))
                .map_err(|e| DiscoverError::Kafka(e.to_string()))?;
        }
    }
    let index: HashMap<i32, usize> = ids.iter().enumerate().map(|(i, &id)| (id, i)).collect();
    // The newest payloads of each partition read so far, at most `messages` of each.
    let mut kept: Vec<VecDeque<Option<Vec<u8>>>> = partitions
        .iter()
        .map(|p| VecDeque::with_capacity((p.high - p.start) as usize))
        .collect();
    let most = usize::try_from(options.messages).unwrap_or(usize::MAX);
    let mut timed_out = false;
    if assignment.count() > 0 {
        // assign(), not subscribe(): no JoinGroup, no member, no rebalance of the forwarders.
        consumer
            .assign(&assignment)
            .map_err(|e| DiscoverError::Kafka(e.to_string()))?;
        // A partition is read to its end when librdkafka says so (the high watermark of a fetch
        // response). The watermark ListOffsets gave may be short of it (tansu 0.6 answers the
        // last batch's first offset + 1, and messages keep coming), so the partitions' shares
        // are taken again, at the end, of the newest messages read before their ends.
        while partitions.iter().any(|p| !p.complete) {
            let wait = left();
            if wait.is_zero() {
                timed_out = true;
                break;
            }
            match consumer.poll(wait.min(Duration::from_millis(200))) {
                Some(Ok(message)) => {
                    let Some(&i) = index.get(&message.partition()) else {
                        continue;
                    };
                    let (p, kept) = (&mut partitions[i], &mut kept[i]);
                    if p.complete {
                        continue;
                    }
                    if kept.len() == most {
                        kept.pop_front();
                    }
                    kept.push_back(message.payload().map(<[u8]>::to_vec));
                    p.end = p.end.max(message.offset() + 1);
                }
                Some(Err(KafkaError::PartitionEOF(id))) => {
                    if let Some(&i) = index.get(&id) {
                        partitions[i].complete = true;
                    }
                }
                Some(Err(e)) => log::debug!("kafka: {e}"),
                None => {}
            }
        }
    }
    let lengths: Vec<u64> = kept.iter().map(|k| k.len() as u64).collect();
    let shares = share_out(&lengths, options.messages);
    for ((p, mut kept), share) in partitions.iter_mut().zip(kept).zip(shares) {
        kept.drain(..kept.len() - share as usize);
        p.read = share;
        for payload in kept {
            discovery.add(payload.as_deref());
        }
    }
    Ok(ReadSummary {
        topic: topic.to_string(),
        brokers,
        requested: options.messages,
        read: partitions.iter().map(|p| p.read).sum(),
        partitions,
        timed_out,
        group_id: discover_group(instance),
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// The values of one field within one model version.
#[derive(Default)]
struct VersionValues {
    count: u64,
    distinct: HashSet<u64>,
}

/// What was seen of one field.
struct FieldStats {
    action: Action,
    messages: u64,
    types: BTreeMap<&'static str, u64>,
    forwarded: u64,
    skipped: BTreeMap<&'static str, u64>,
    min: f64,
    max: f64,
    distinct: HashSet<u64>,
    per_version: HashMap<(String, String), VersionValues>,
    models: BTreeSet<String>,
    text_values: BTreeSet<String>,
}

/// The statistics of sampled messages, built message by message with [`Discovery::add`].
pub struct Discovery {
    mapper: MetricMapper,
    instance: Instance,
    messages: u64,
    rejected: BTreeMap<&'static str, u64>,
    models: BTreeMap<(String, String, String), u64>,
    fields: BTreeMap<String, FieldStats>,
}

/// The type of a value as `discover` reports it.
fn type_of(value: &FieldValue<'_>) -> &'static str {
    match value {
        FieldValue::UInt(_) | FieldValue::Int(_) => "number",
        FieldValue::Float(v) if v.is_finite() => "number",
        FieldValue::Float(_) => "non-finite number",
        FieldValue::Bool(_) => "boolean",
        FieldValue::Str(s) if parse_numeric_string(s).is_ok() => "numeric string",
        FieldValue::Str(_) => "text",
        FieldValue::Null => "null",
        FieldValue::Array => "array",
        FieldValue::Object => "object",
    }
}

/// A tag field's value as a model's name, version or owner.
fn text_of(value: Option<&FieldValue<'_>>) -> String {
    match value {
        Some(FieldValue::Str(s)) => s.to_string(),
        Some(FieldValue::UInt(v)) => v.to_string(),
        Some(FieldValue::Int(v)) => v.to_string(),
        Some(FieldValue::Float(v)) => v.to_string(),
        Some(FieldValue::Bool(v)) => v.to_string(),
        _ => "(none)".to_string(),
    }
}

fn as_f64(value: Value) -> f64 {
    match value {
        Value::UInt(v) => v as f64,
        Value::Int(v) => v as f64,
        Value::Float(v) => v,
    }
}

/// The same number, whichever zero: the key of a distinct value.
fn key_of(v: f64) -> u64 {
    if v == 0.0 {
        0
    } else {
        v.to_bits()
    }
}

impl Discovery {
    /// Statistics judged by the mapping rules of `instance`, with metric names under `prefix`.
    pub fn new(prefix: &str, instance: &Instance) -> Discovery {
        Discovery {
            mapper: MetricMapper::for_instance(prefix, instance),
            instance: instance.clone(),
            messages: 0,
            rejected: BTreeMap::new(),
            models: BTreeMap::new(),
            fields: BTreeMap::new(),
        }
    }

    /// One message's value (`None`: a tombstone).
    pub fn add(&mut self, payload: Option<&[u8]>) {
        self.messages += 1;
        let message = match decode(payload.unwrap_or_default()) {
            Ok(m) => m,
            Err(e) => {
                *self.rejected.entry(e.reason().label()).or_default() += 1;
                return;
            }
        };
        let name = text_of(message.get("algorithm_name"));
        let version = text_of(message.get("algorithm_version"));
        let owner = text_of(message.get("algorithm_owner"));
        *self
            .models
            .entry((name.clone(), version.clone(), owner))
            .or_default() += 1;
        for field in &message.fields {
            let key = field.name.as_ref();
            if !self.fields.contains_key(key) {
                let action = self.mapper.action_for(key);
                self.fields.insert(
                    key.to_string(),
                    FieldStats {
                        action,
                        messages: 0,
                        types: BTreeMap::new(),
                        forwarded: 0,
                        skipped: BTreeMap::new(),
                        min: f64::INFINITY,
                        max: f64::NEG_INFINITY,
                        distinct: HashSet::new(),
                        per_version: HashMap::new(),
                        models: BTreeSet::new(),
                        text_values: BTreeSet::new(),
                    },
                );
            }
            let Some(stats) = self.fields.get_mut(key) else {
                continue;
            };
            stats.messages += 1;
            *stats.types.entry(type_of(&field.value)).or_default() += 1;
            if let FieldValue::Str(s) = &field.value {
                if stats.text_values.len() <= MAX_TAG_VALUES {
                    stats.text_values.insert(s.to_string());
                }
            }
            // The forwarder's order: operational fields first, then the value, then the name.
            if let Action::Operational = stats.action {
                continue;
            }
            let value = match self.mapper.value_of(&field.value) {
                Ok(v) => as_f64(v),
                Err(reason) => {
                    *stats.skipped.entry(reason.label()).or_default() += 1;
                    continue;
                }
            };
            if let Action::Skip(reason) = stats.action {
                *stats.skipped.entry(reason.label()).or_default() += 1;
                continue;
            }
            stats.forwarded += 1;
            stats.min = stats.min.min(value);
            stats.max = stats.max.max(value);
            stats.distinct.insert(key_of(value));
            stats.models.insert(name.clone());
            let per_version = stats
                .per_version
                .entry((name.clone(), version.clone()))
                .or_default();
            per_version.count += 1;
            per_version.distinct.insert(key_of(value));
        }
    }

    /// Messages added so far.
    pub fn messages(&self) -> u64 {
        self.messages
    }

    /// What the messages show, sorted; `read` says where they came from, `config` is the
    /// configuration file the suggestions are for.
    pub fn report(&self, read: Option<&ReadSummary>, config: Option<&str>) -> Report {
        let fields: Vec<FieldReport> = self
            .fields
            .iter()
            .map(|(name, stats)| field_report(name, stats))
            .collect();
        let models = self
            .models
            .iter()
            .map(|((name, version, owner), &messages)| Model {
                algorithm_name: name.clone(),
                algorithm_version: version.clone(),
                algorithm_owner: owner.clone(),
                messages,
            })
            .collect();
        let rejected = self
            .rejected
            .iter()
            .map(|(reason, &count)| Rejected {
                reason: (*reason).to_string(),
                count,
            })
            .collect();
        let suggestion = self.suggest(&fields, config);
        Report {
            read: read.cloned(),
            instance: self.instance.index,
            messages: self.messages,
            rejected,
            models,
            fields,
            suggestion,
        }
    }

    fn suggest(&self, fields: &[FieldReport], config: Option<&str>) -> Suggestion {
        let distribution_metrics: Vec<String> = fields
            .iter()
            .filter(|f| f.per_call == Some(true))
            .map(|f| f.name.clone())
            .collect();
        let mut tag_fields: Vec<String> = Vec::new();
        for tag in &self.instance.tag_fields {
            if !tag_fields.contains(tag) {
                tag_fields.push(tag.clone());
            }
        }
        let mut new_tags = Vec::new();
        for (name, stats) in &self.fields {
            let all_text = stats.types.len() == 1 && stats.types.contains_key("text");
            if all_text && stats.text_values.len() <= MAX_TAG_VALUES && !tag_fields.contains(name) {
                tag_fields.push(name.clone());
                new_tags.push(name.clone());
            }
        }
        let mut yaml = String::new();
        let _ = writeln!(
            yaml,
            "# instances[{}]{}",
            self.instance.index,
            config.map(|c| format!(" of {c}")).unwrap_or_default()
        );
        if self.instance.distribution_metrics != distribution_metrics {
            let _ = writeln!(
                yaml,
                "# distribution_metrics is now {}",
                flow_list(&self.instance.distribution_metrics)
            );
        }
        let _ = writeln!(
            yaml,
            "distribution_metrics: {}",
            flow_list(&distribution_metrics)
        );
        for name in &new_tags {
            let values: Vec<&str> = self.fields[name]
                .text_values
                .iter()
                .map(String::as_str)
                .collect();
            let _ = writeln!(
                yaml,
                "# {name}: text with {} distinct value{} ({}): a tag rather than a skipped field",
                values.len(),
                if values.len() == 1 { "" } else { "s" },
                values.join(", ")
            );
        }
        let _ = writeln!(yaml, "tag_fields: {}", flow_list(&tag_fields));

        let mut per_model: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for field in fields {
            for model in &field.models {
                per_model.entry(model).or_default().push(&field.name);
            }
        }
        let drift_commands = per_model
            .iter()
            .filter(|(model, _)| **model != "(none)")
            .map(|(model, metrics)| {
                let mut line = format!(
                    "algorithmia-datadog assets drift --algorithm {}",
                    shell_word(model)
                );
                for metric in metrics {
                    let _ = write!(line, " --metric {}", shell_word(metric));
                }
                if let Some(config) = config {
                    let _ = write!(line, " --config {}", shell_word(config));
                }
                line
            })
            .collect();
        Suggestion {
            distribution_metrics,
            tag_fields,
            yaml,
            drift_commands,
        }
    }
}

fn field_report(name: &str, stats: &FieldStats) -> FieldReport {
    let (outcome, metric) = match &stats.action {
        Action::Operational => ("operational".to_string(), None),
        _ if stats.forwarded == 0 => ("skipped".to_string(), None),
        Action::Metric { name, kind } => {
            let kind = match kind {
                MetricKind::Distribution => "distribution",
                _ => "gauge",
            };
            (kind.to_string(), Some(name.to_string()))
        }
        Action::Skip(_) => ("skipped".to_string(), None),
    };
    let busiest = stats
        .per_version
        .iter()
        .map(|((model, version), v)| (v.distinct.len(), v.count, model, version))
        // The most distinct values, then the most values, then the first model and version.
        .max_by(|a, b| {
            (a.0, a.1)
                .cmp(&(b.0, b.1))
                .then_with(|| (b.2, b.3).cmp(&(a.2, a.3)))
        });
    let only_booleans = stats.types.keys().all(|t| *t == "boolean");
    let (per_call, why) = match busiest {
        None => (None, "not forwarded".to_string()),
        Some(_) if only_booleans => (
            Some(false),
            "a boolean: its average is a rate, a gauge suffices".to_string(),
        ),
        Some((distinct, count, model, version)) if distinct >= PER_CALL_DISTINCT => (
            Some(true),
            format!("{distinct} distinct values in {count} calls of {model} {version}"),
        ),
        Some((distinct, count, _, _)) if count >= PER_CALL_DISTINCT as u64 => (
            Some(false),
            format!(
                "at most {distinct} distinct value{} per version: a flag or a level",
                if distinct == 1 { "" } else { "s" }
            ),
        ),
        Some((_, count, _, _)) => (
            None,
            format!("too few values to tell ({count} at most per version)"),
        ),
    };
    FieldReport {
        name: name.to_string(),
        messages: stats.messages,
        types: stats
            .types
            .iter()
            .map(|(t, &n)| ((*t).to_string(), n))
            .collect(),
        outcome,
        metric,
        forwarded: stats.forwarded,
        skipped: stats
            .skipped
            .iter()
            .map(|(r, &n)| ((*r).to_string(), n))
            .collect(),
        min: (stats.forwarded > 0).then_some(stats.min),
        max: (stats.forwarded > 0).then_some(stats.max),
        distinct: stats.distinct.len() as u64,
        models: stats.models.iter().cloned().collect(),
        per_call,
        why,
    }
}

/// A YAML flow sequence of field names, each quoted unless plain.
fn flow_list(items: &[String]) -> String {
    let quoted: Vec<String> = items
        .iter()
        .map(|item| {
            let plain = !item.is_empty()
                && item
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
                && item.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_');
            if plain {
                item.clone()
            } else {
                serde_json::Value::String(item.clone()).to_string()
            }
        })
        .collect();
    format!("[{}]", quoted.join(", "))
}

/// A word for a POSIX shell, quoted unless plain.
fn shell_word(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '/' | ':' | '='));
    if plain {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// Messages rejected as a whole, for one reason.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Rejected {
    /// The forwarder's reason (`invalid_json`, `not_utf8`, `not_an_object`, `empty`).
    pub reason: String,
    /// How many.
    pub count: u64,
}

/// One model version seen.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Model {
    /// `algorithm_name` (`(none)` when absent).
    pub algorithm_name: String,
    /// `algorithm_version`.
    pub algorithm_version: String,
    /// `algorithm_owner`.
    pub algorithm_owner: String,
    /// Messages.
    pub messages: u64,
}

/// One field seen, as the forwarder would treat it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct FieldReport {
    /// The field's name.
    pub name: String,
    /// Messages carrying it.
    pub messages: u64,
    /// Its values by type: `number`, `boolean`, `numeric string`, `text`, `null`, `array`,
    /// `object`, `non-finite number`.
    pub types: BTreeMap<String, u64>,
    /// `gauge`, `distribution`, `operational` (never a metric) or `skipped` (never forwarded).
    pub outcome: String,
    /// The metric name, when forwarded.
    pub metric: Option<String>,
    /// Values forwarded.
    pub forwarded: u64,
    /// Values the forwarder would skip, by its reason (`string`, `object`, `filtered`...).
    pub skipped: BTreeMap<String, u64>,
    /// The smallest value forwarded.
    pub min: Option<f64>,
    /// The largest value forwarded.
    pub max: Option<f64>,
    /// Distinct values forwarded.
    pub distinct: u64,
    /// The models (`algorithm_name`) whose values were forwarded.
    pub models: Vec<String>,
    /// Whether it looks like a per-call value worth a distribution (`None`: cannot tell).
    pub per_call: Option<bool>,
    /// Why.
    pub why: String,
}

/// The configuration and monitors `discover` suggests.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Suggestion {
    /// The per-call fields.
    pub distribution_metrics: Vec<String>,
    /// The configured tag fields, then text fields with few values.
    pub tag_fields: Vec<String>,
    /// Both as the instance's YAML lines, with comments.
    pub yaml: String,
    /// One `assets drift` command per model, for its forwarded fields.
    pub drift_commands: Vec<String>,
}

/// Everything `discover` found, sorted.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Report {
    /// Where the messages came from.
    pub read: Option<ReadSummary>,
    /// The instance whose rules judged them.
    pub instance: usize,
    /// Messages examined.
    pub messages: u64,
    /// Messages the forwarder would reject, by reason.
    pub rejected: Vec<Rejected>,
    /// Model versions, by name, version, owner.
    pub models: Vec<Model>,
    /// Fields, by name.
    pub fields: Vec<FieldReport>,
    /// What to configure and create.
    pub suggestion: Suggestion,
}

/// A number as short as it reads.
fn number(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_string(), |v| v.to_string())
}

/// Rows as columns padded to their widest cell, two spaces apart, each line indented.
fn table(out: &mut String, header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut line = |cells: Vec<&str>| {
        let mut text = String::from("  ");
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            if i + 1 == cells.len() {
                text.push_str(cell);
            } else {
                let _ = write!(text, "{cell:<w$}  ");
            }
        }
        let _ = writeln!(out, "{}", text.trim_end());
    };
    line(header.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
}

fn counts(map: &BTreeMap<String, u64>) -> String {
    map.iter()
        .map(|(k, n)| format!("{k} {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut out = String::new();
        if let Some(read) = &self.read {
            let _ = writeln!(
                out,
                "Read the newest {} messages of topic {} on {} ({} asked for) in {:.1} s{}.",
                read.read,
                read.topic,
                read.brokers,
                read.requested,
                read.seconds,
                if read.timed_out {
                    " (the timeout cut it short)"
                } else {
                    ""
                }
            );
            let _ = writeln!(
                out,
                "Read-only: partitions assigned, no group joined, nothing committed (group id {} unused).",
                read.group_id
            );
            let rows: Vec<Vec<String>> = read
                .partitions
                .iter()
                .map(|p| {
                    vec![
                        p.partition.to_string(),
                        format!("{}..{}", p.low, p.high.max(p.end)),
                        if p.read == 0 {
                            "-".to_string()
                        } else {
                            format!("{}..{}", p.end - p.read as i64, p.end)
                        },
                        p.read.to_string(),
                        if p.complete { "yes" } else { "no (timeout)" }.to_string(),
                    ]
                })
                .collect();
            table(
                &mut out,
                &["partition", "offsets", "read", "messages", "to the end"],
                &rows,
            );
        } else {
            let _ = writeln!(out, "{} messages examined.", self.messages);
        }

        let _ = writeln!(out, "\nModels ({} model versions)", self.models.len());
        let rows: Vec<Vec<String>> = self
            .models
            .iter()
            .map(|m| {
                vec![
                    m.algorithm_name.clone(),
                    m.algorithm_version.clone(),
                    m.algorithm_owner.clone(),
                    m.messages.to_string(),
                ]
            })
            .collect();
        table(
            &mut out,
            &[
                "algorithm_name",
                "algorithm_version",
                "algorithm_owner",
                "messages",
            ],
            &rows,
        );

        let rejected: u64 = self.rejected.iter().map(|r| r.count).sum();
        let _ = write!(out, "\nRejected messages: {rejected}");
        if rejected > 0 {
            let reasons: Vec<String> = self
                .rejected
                .iter()
                .map(|r| format!("{} {}", r.reason, r.count))
                .collect();
            let _ = write!(
                out,
                " ({}): the forwarder rejects these whole",
                reasons.join(", ")
            );
        }
        let _ = writeln!(out);

        let (metrics, others): (Vec<&FieldReport>, Vec<&FieldReport>) = self
            .fields
            .iter()
            .partition(|f| f.outcome == "gauge" || f.outcome == "distribution");
        let _ = writeln!(
            out,
            "\nMetric fields (the forwarder's rules, this configuration)"
        );
        let rows: Vec<Vec<String>> = metrics
            .iter()
            .map(|f| {
                vec![
                    f.name.clone(),
                    counts(&f.types),
                    f.forwarded.to_string(),
                    f.outcome.clone(),
                    number(f.min),
                    number(f.max),
                    f.distinct.to_string(),
                    match f.per_call {
                        Some(true) => format!("yes: {}", f.why),
                        Some(false) => format!("no: {}", f.why),
                        None => f.why.clone(),
                    },
                ]
            })
            .collect();
        table(
            &mut out,
            &[
                "field",
                "types",
                "sent",
                "as",
                "min",
                "max",
                "distinct",
                "per call (distribution)?",
            ],
            &rows,
        );
        let partly: Vec<String> = metrics
            .iter()
            .filter(|f| !f.skipped.is_empty())
            .map(|f| format!("{} ({})", f.name, counts(&f.skipped)))
            .collect();
        if !partly.is_empty() {
            let _ = writeln!(out, "  values skipped: {}", partly.join("; "));
        }

        let skipped: Vec<&&FieldReport> =
            others.iter().filter(|f| f.outcome == "skipped").collect();
        let _ = writeln!(
            out,
            "\nSkipped fields (never forwarded, with the forwarder's reason)"
        );
        if skipped.is_empty() {
            let _ = writeln!(out, "  none");
        } else {
            let rows: Vec<Vec<String>> = skipped
                .iter()
                .map(|f| vec![f.name.clone(), counts(&f.types), counts(&f.skipped)])
                .collect();
            table(&mut out, &["field", "types", "skipped"], &rows);
        }
        let operational: Vec<&str> = others
            .iter()
            .filter(|f| f.outcome == "operational")
            .map(|f| f.name.as_str())
            .collect();
        let _ = writeln!(
            out,
            "\nOperational fields (never metrics): {}",
            if operational.is_empty() {
                "none".to_string()
            } else {
                operational.join(", ")
            }
        );

        let _ = writeln!(out, "\nSuggested configuration");
        for line in self.suggestion.yaml.lines() {
            let _ = writeln!(out, "    {line}");
        }
        let _ = writeln!(
            out,
            "\nDrift monitors to create (one per model and field; add --dry-run to see them first)"
        );
        if self.suggestion.drift_commands.is_empty() {
            let _ = writeln!(out, "  none: no model sent a metric");
        }
        for command in &self.suggestion.drift_commands {
            let _ = writeln!(out, "  {command}");
        }
        f.write_str(out.trim_end())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_shared_evenly_and_short_partitions_give_theirs_away() {
        assert_eq!(share_out(&[100, 100, 100, 100], 1000), [100, 100, 100, 100]);
        assert_eq!(share_out(&[1000, 1000], 1000), [500, 500]);
        assert_eq!(share_out(&[10, 1000, 0], 100), [10, 90, 0]);
        assert_eq!(share_out(&[5, 5, 5], 4).iter().sum::<u64>(), 4);
        assert_eq!(share_out(&[], 10), Vec::<u64>::new());
    }

    #[test]
    fn words_are_quoted_only_when_needed() {
        assert_eq!(shell_word("risk_score"), "risk_score");
        assert_eq!(shell_word("it's odd"), r"'it'\''s odd'");
        assert_eq!(flow_list(&["a".into(), "b c".into()]), r#"[a, "b c"]"#);
    }
}
