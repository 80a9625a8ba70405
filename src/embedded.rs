//! An embedded Kafka (librdkafka's mock cluster, in process) and realistic Insights messages,
//! for the demo, the benchmark and the tests.
//!
//! The mock cluster speaks the Kafka protocol on real loopback sockets, so the forwarder's
//! consumer talks to it exactly as it talks to a production broker. It keeps at most 5 MiB or
//! 100 000 record batches per partition and silently drops older data: spread large loads over
//! enough partitions.
//!
//! ```no_run
//! use algorithmia_datadog::embedded::{EmbeddedKafka, SampleMessages};
//!
//! let kafka = EmbeddedKafka::start(1).unwrap();
//! kafka.create_topic("insights", 4).unwrap();
//! let mut samples = SampleMessages::new(7);
//! kafka.produce("insights", (0..100).map(|i| samples.message(i))).unwrap();
//! println!("bootstrap servers: {}", kafka.bootstrap_servers());
//! ```

use std::ffi::{CStr, CString};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::producer::{
    BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer,
};
use rdkafka::types::RDKafkaErrorCode;

/// A mock Kafka cluster living in this process, with a producer attached to it.
pub struct EmbeddedKafka {
    cluster: *mut rdkafka::bindings::rd_kafka_mock_cluster_t,
    bootstrap: String,
    // An option only so that Drop can close it before the cluster goes.
    producer: Option<ThreadedProducer<DeliveryCounter>>,
    // The client whose handle hosts the cluster; dropped after the cluster is destroyed.
    _host: BaseProducer,
}

// SAFETY: the mock cluster handle is only used through librdkafka's thread-safe mock API.
unsafe impl Send for EmbeddedKafka {}
// SAFETY: as above: every mock call goes through the cluster's own locking.
unsafe impl Sync for EmbeddedKafka {}

impl EmbeddedKafka {
    /// Starts a cluster of `brokers` brokers. Consumer groups get their first assignment at
    /// once rather than after the mock's default 3 s delay.
    pub fn start(brokers: i32) -> KafkaResult<EmbeddedKafka> {
        let host: BaseProducer = ClientConfig::new().set("log_level", "3").create()?;
        // SAFETY: `host` outlives the cluster (it is dropped after `Drop::drop` destroys it).
        let cluster = unsafe {
            rdkafka::bindings::rd_kafka_mock_cluster_new(host.client().native_ptr(), brokers)
        };
        if cluster.is_null() {
            return Err(KafkaError::MockCluster(RDKafkaErrorCode::Fail));
        }
        // SAFETY: cluster is a live mock cluster; the returned string is owned by it.
        let bootstrap = unsafe {
            rdkafka::bindings::rd_kafka_mock_group_initial_rebalance_delay_ms(cluster, 0);
            CStr::from_ptr(rdkafka::bindings::rd_kafka_mock_cluster_bootstraps(cluster))
                .to_string_lossy()
                .into_owned()
        };
        let producer = ClientConfig::new()
            .set("bootstrap.servers", &bootstrap)
            .set("linger.ms", "5")
            .set("batch.num.messages", "10000")
            .set("batch.size", "1000000")
            .set("compression.type", "lz4")
            // Spread messages evenly: sticky partitioning fills one partition at a time, and the
            // mock cluster drops what exceeds 5 MiB in a partition.
            .set("sticky.partitioning.linger.ms", "0")
            .set("queue.buffering.max.messages", "1000000")
            .set("queue.buffering.max.kbytes", "1048576")
            .create_with_context(DeliveryCounter::default());
        let producer = match producer {
            Ok(p) => p,
            Err(e) => {
                // SAFETY: created above, not yet owned by anything.
                unsafe { rdkafka::bindings::rd_kafka_mock_cluster_destroy(cluster) };
                return Err(e);
            }
        };
        Ok(EmbeddedKafka {
            cluster,
            bootstrap,
            producer: Some(producer),
            _host: host,
        })
    }

    fn producer(&self) -> &ThreadedProducer<DeliveryCounter> {
        // Only Drop takes it out.
        self.producer
            .as_ref()
            .expect("the producer lives as long as the cluster")
    }

    /// `host:port` of the brokers.
    pub fn bootstrap_servers(&self) -> &str {
        &self.bootstrap
    }

    /// Creates a topic.
    pub fn create_topic(&self, topic: &str, partitions: i32) -> KafkaResult<()> {
        let name = CString::new(topic)
            .map_err(|_| KafkaError::MockCluster(RDKafkaErrorCode::InvalidArgument))?;
        // SAFETY: live cluster, NUL-terminated name.
        let err = unsafe {
            rdkafka::bindings::rd_kafka_mock_topic_create(
                self.cluster,
                name.as_ptr(),
                partitions,
                1,
            )
        };
        let code: RDKafkaErrorCode = err.into();
        if code == RDKafkaErrorCode::NoError {
            Ok(())
        } else {
            Err(KafkaError::MockCluster(code))
        }
    }

    /// Takes a broker down (`false`) or brings it back (`true`).
    pub fn set_broker_up(&self, broker_id: i32, up: bool) -> KafkaResult<()> {
        // SAFETY: live cluster.
        let err = unsafe {
            if up {
                rdkafka::bindings::rd_kafka_mock_broker_set_up(self.cluster, broker_id)
            } else {
                rdkafka::bindings::rd_kafka_mock_broker_set_down(self.cluster, broker_id)
            }
        };
        let code: RDKafkaErrorCode = err.into();
        if code == RDKafkaErrorCode::NoError {
            Ok(())
        } else {
            Err(KafkaError::MockCluster(code))
        }
    }

    /// Produces values spread over the topic's partitions and waits until all are acknowledged.
    pub fn produce<V: AsRef<[u8]>>(
        &self,
        topic: &str,
        values: impl IntoIterator<Item = V>,
    ) -> KafkaResult<usize> {
        let mut count = 0;
        for value in values {
            self.send(BaseRecord::<[u8], [u8]>::to(topic).payload(value.as_ref()))?;
            count += 1;
        }
        self.flush()?;
        Ok(count)
    }

    /// Produces one value to one partition and waits for it.
    pub fn produce_to(&self, topic: &str, partition: i32, value: &[u8]) -> KafkaResult<()> {
        self.send(
            BaseRecord::<[u8], [u8]>::to(topic)
                .partition(partition)
                .payload(value),
        )?;
        self.flush()
    }

    /// Waits until every message sent so far is acknowledged; an error if any was refused.
    fn flush(&self) -> KafkaResult<()> {
        let failed_before = self.producer().context().failed.load(Ordering::Relaxed);
        self.producer().flush(Duration::from_secs(120))?;
        let context = self.producer().context();
        if context.failed.load(Ordering::Relaxed) > failed_before {
            let code = context
                .last_error
                .lock()
                .ok()
                .and_then(|e| *e)
                .unwrap_or(RDKafkaErrorCode::Fail);
            return Err(KafkaError::MessageProduction(code));
        }
        Ok(())
    }

    fn send(&self, mut record: BaseRecord<'_, [u8], [u8]>) -> KafkaResult<()> {
        loop {
            match self.producer().send(record) {
                Ok(()) => return Ok(()),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    record = back;
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err((e, _)) => return Err(e),
            }
        }
    }
}

impl Drop for EmbeddedKafka {
    fn drop(&mut self) {
        if let Some(producer) = self.producer.take() {
            let _ = producer.flush(Duration::from_secs(5));
        }
        // SAFETY: created in `start`, destroyed once.
        unsafe { rdkafka::bindings::rd_kafka_mock_cluster_destroy(self.cluster) };
    }
}

/// Counts refused deliveries, so that a test or benchmark never mistakes a message the broker
/// did not take for one the forwarder lost.
#[derive(Default)]
pub struct DeliveryCounter {
    failed: AtomicU64,
    last_error: std::sync::Mutex<Option<RDKafkaErrorCode>>,
}

impl rdkafka::ClientContext for DeliveryCounter {}

impl ProducerContext for DeliveryCounter {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: Self::DeliveryOpaque) {
        if let Err((error, _)) = result {
            self.failed.fetch_add(1, Ordering::Relaxed);
            if let (Ok(mut last), Some(code)) = (self.last_error.lock(), error.rdkafka_error_code())
            {
                *last = Some(code);
            }
        }
    }
}

/// Realistic Insights messages: a few models and versions, the platform's fields, and user
/// metrics in the shapes the clients send (numbers, booleans, the Java client's strings).
#[derive(Debug, Clone)]
pub struct SampleMessages {
    state: u64,
}

/// The public sample from Algorithmia's documentation, byte for byte as printed there.
pub const PUBLIC_SAMPLE: &str = r#"{"risk_score":0.2,"duration_milliseconds":8,"algorithm_version":"1.0.6","session_id":"rses-f28bb94a-5556-4aeb-a6d2-89493626bf4f","time":"2021-02-20T00:21:54.867231","algorithm_name":"credit_card_approval","request_id":"req-9f5345b4-a1cd-431c-a43a-bd2a06f4a6f4","algorithm_owner":"asli"}"#;

impl SampleMessages {
    /// A deterministic generator.
    pub fn new(seed: u64) -> Self {
        SampleMessages {
            state: seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1,
        }
    }

    fn next(&mut self) -> u64 {
        // xorshift64*: fast, deterministic, good enough for demo data.
        self.state ^= self.state >> 12;
        self.state ^= self.state << 25;
        self.state ^= self.state >> 27;
        self.state.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn uuid(&mut self) -> String {
        let (a, b) = (self.next(), self.next());
        format!(
            "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
            a >> 32,
            (a >> 16) & 0xffff,
            a & 0xfff,
            0x8000 | (b >> 48) & 0x3fff,
            b & 0xffff_ffff_ffff
        )
    }

    /// The `i`-th message: mostly the credit-card model, some fraud and churn models, and one
    /// message in fifty from a Java client (every metric a string).
    pub fn message(&mut self, i: u64) -> String {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let time = format_iso8601(now.saturating_sub(i % 60));
        let session = self.uuid();
        let request = self.uuid();
        let duration = 3 + (self.unit() * 40.0) as u64;
        match self.next() % 10 {
            0..=5 => {
                let version = if self.next() % 3 == 0 {
                    "1.0.7"
                } else {
                    "1.0.6"
                };
                let risk = (self.unit() * 1000.0).round() / 1000.0;
                let approved = risk < 0.5;
                if i % 50 == 49 {
                    format!(
                        r#"{{"risk_score":"{risk}","approved":"{}","duration_milliseconds":"{duration}","algorithm_version":"{version}","session_id":"rses-{session}","time":"{time}","algorithm_name":"credit_card_approval","request_id":"req-{request}","algorithm_owner":"asli"}}"#,
                        u8::from(approved)
                    )
                } else {
                    format!(
                        r#"{{"risk_score":{risk},"approved":{approved},"duration_milliseconds":{duration},"algorithm_version":"{version}","session_id":"rses-{session}","time":"{time}","algorithm_name":"credit_card_approval","request_id":"req-{request}","algorithm_owner":"asli"}}"#
                    )
                }
            }
            6..=8 => {
                let score = (self.unit() * 100.0).round() / 100.0;
                let amount = (self.unit() * 5000.0).round() / 100.0;
                format!(
                    r#"{{"fraud_probability":{score},"transaction_amount":{amount},"flagged":{},"duration_milliseconds":{duration},"algorithm_version":"2.3.1","session_id":"rses-{session}","time":"{time}","algorithm_name":"fraud_detection","request_id":"req-{request}","algorithm_owner":"risk_team"}}"#,
                    score > 0.9
                )
            }
            _ => {
                let churn = (self.unit() * 1000.0).round() / 1000.0;
                format!(
                    r#"{{"churn_probability":{churn},"tenure_months":{},"segment":"retail","duration_milliseconds":{duration},"algorithm_version":"0.9.0","session_id":"rses-{session}","time":"{time}","algorithm_name":"customer_churn","request_id":"req-{request}","algorithm_owner":"growth"}}"#,
                    self.next() % 120
                )
            }
        }
    }
}

/// `YYYY-MM-DDTHH:MM:SS.ffffff` for a Unix time, as the platform writes it (no offset).
pub fn format_iso8601(unix_seconds: u64) -> String {
    let days = (unix_seconds / 86_400) as i64;
    let secs = unix_seconds % 86_400;
    // Inverse of days_from_civil (Howard Hinnant).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:06}",
        secs / 3600,
        (secs / 60) % 60,
        secs % 60,
        (unix_seconds * 7919) % 1_000_000
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::decode;
    use crate::metrics::parse_iso8601;

    #[test]
    fn formatted_times_parse_back() {
        for t in [0u64, 951_782_400, 1_613_780_514, 4_102_444_800] {
            assert_eq!(parse_iso8601(&format_iso8601(t)), Some(t as i64), "{t}");
        }
    }

    #[test]
    fn sample_messages_are_valid_insights_json() {
        let mut samples = SampleMessages::new(1);
        for i in 0..500 {
            let text = samples.message(i);
            let message = decode(text.as_bytes()).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert!(message.get("algorithm_name").is_some());
            assert!(message.get("duration_milliseconds").is_some());
        }
        assert!(decode(PUBLIC_SAMPLE.as_bytes()).is_ok());
    }
}
