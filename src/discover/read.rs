//! Reading the newest messages of a topic: assigned, never subscribed, nothing committed.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use serde::Serialize;

use crate::config::Instance;
use crate::source;

use super::*;

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
}
