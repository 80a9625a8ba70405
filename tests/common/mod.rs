//! Shared parts of the integration tests: a real Kafka-protocol broker (librdkafka's mock
//! cluster, in process), real DogStatsD sockets that a test reads, and configurations for them.

#![allow(dead_code)]

pub mod agent;
pub mod datadog_dogstatsd;
pub mod process;
pub mod tansu;
pub mod tls;

use std::net::UdpSocket;
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use algorithmia_datadog::config::Config;
use algorithmia_datadog::embedded::EmbeddedKafka;

static NEXT: AtomicUsize = AtomicUsize::new(0);

/// A name no other test in this process uses.
pub fn unique(prefix: &str) -> String {
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// An embedded cluster with one topic.
pub fn kafka_with_topic(partitions: i32) -> (EmbeddedKafka, String) {
    let _ = env_logger::builder()
        .is_test(true)
        .format_timestamp_millis()
        .try_init();
    let kafka = EmbeddedKafka::start(1).expect("the mock cluster starts");
    let topic = unique("insights");
    kafka
        .create_topic(&topic, partitions)
        .expect("topic created");
    (kafka, topic)
}

/// A configuration reading `topic` from `kafka` as `group`, sending to `url`, plus `extra` YAML
/// lines for the instance (indented by four spaces).
pub fn config(kafka: &EmbeddedKafka, topic: &str, group: &str, url: &str, extra: &str) -> Config {
    let yaml = format!(
        "init_config:\n  dogstatsd_url: {url}\ninstances:\n  - kafka_broker: \"{}\"\n    kafka_topic: {topic}\n    consumer_group: {group}\n    start_offset: earliest\n{extra}",
        kafka.bootstrap_servers()
    );
    Config::from_yaml(&yaml, "test.yaml", &|_| None).expect("test configuration is valid")
}

/// Anything that yields datagrams.
pub trait Datagrams {
    /// One datagram, or `None` after `timeout`.
    fn recv_datagram(&self, timeout: Duration) -> Option<Vec<u8>>;
}

/// Both socket kinds read datagrams the same way.
macro_rules! datagrams_for {
    ($($socket:ty),*) => {$(
        impl Datagrams for $socket {
            fn recv_datagram(&self, timeout: Duration) -> Option<Vec<u8>> {
                self.set_read_timeout(Some(timeout.max(Duration::from_millis(1)))).ok()?;
                let mut buf = vec![0u8; 65_536];
                let n = self.recv(&mut buf).ok()?;
                buf.truncate(n);
                Some(buf)
            }
        }
    )*};
}

datagrams_for!(UdpSocket, UnixDatagram);

/// A UDP socket on loopback standing in for the Agent, and its URL.
pub fn udp_agent() -> (UdpSocket, String) {
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind UDP");
    enlarge_receive_buffer(&socket, 64 << 20);
    let url = format!("udp://{}", socket.local_addr().unwrap());
    (socket, url)
}

/// A receiver that falls behind for a moment (a busy test machine) must not lose datagrams: the
/// kernel's default buffer (about 200 KiB) holds a few milliseconds of a burst. std cannot set it.
pub fn enlarge_receive_buffer(socket: &UdpSocket, bytes: libc::c_int) {
    use std::os::fd::AsRawFd;
    let size = &bytes as *const libc::c_int as *const libc::c_void;
    let len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: a valid socket descriptor and a pointer to a c_int of the given length.
    let forced = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            size,
            len,
        )
    };
    if forced != 0 {
        // Without CAP_NET_ADMIN: as much as net.core.rmem_max allows.
        // SAFETY: as above.
        unsafe {
            libc::setsockopt(
                socket.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVBUF,
                size,
                len,
            )
        };
    }
}

/// A path for a Unix socket in a fresh temporary directory.
pub fn unix_socket_path() -> PathBuf {
    let dir = std::env::temp_dir().join(unique("algorithmia-datadog-test"));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join("dsd.socket")
}

/// Whether a line is the forwarder's report on itself rather than a forwarded gauge.
pub fn is_self_monitoring(line: &str) -> bool {
    line.starts_with("algorithmia.forwarder.") || line.starts_with("_sc|")
}

/// Collects the forwarded gauges (not the self-monitoring) until `lines` lines arrived or
/// `timeout` passed; also returns the size of every datagram of forwarded gauges.
pub fn collect_lines(
    agent: &impl Datagrams,
    lines: usize,
    timeout: Duration,
) -> (Vec<String>, Vec<usize>) {
    collect_all(agent, lines, timeout, |l| !is_self_monitoring(l))
}

/// Collects lines that pass `keep` until `lines` of them arrived or `timeout` passed.
pub fn collect_all(
    agent: &impl Datagrams,
    lines: usize,
    timeout: Duration,
    keep: impl Fn(&str) -> bool,
) -> (Vec<String>, Vec<usize>) {
    let deadline = Instant::now() + timeout;
    let mut got = Vec::new();
    let mut sizes = Vec::new();
    while got.len() < lines {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        if let Some(d) = agent.recv_datagram(left) {
            let size = d.len();
            let text = String::from_utf8(d).expect("datagrams are UTF-8");
            let kept: Vec<String> = text
                .split('\n')
                .filter(|l| keep(l))
                .map(str::to_string)
                .collect();
            if !kept.is_empty() {
                sizes.push(size);
                got.extend(kept);
            }
        }
    }
    (got, sizes)
}

/// Whatever other forwarded gauges arrive until nothing came for `quiet`.
pub fn drain(agent: &impl Datagrams, quiet: Duration) -> Vec<String> {
    let mut got = Vec::new();
    while let Some(d) = agent.recv_datagram(quiet) {
        got.extend(forwarded_lines(d));
    }
    got
}

/// The forwarded lines of one datagram (not the self-monitoring).
fn forwarded_lines(datagram: Vec<u8>) -> impl Iterator<Item = String> {
    let text = String::from_utf8(datagram).expect("datagrams are UTF-8");
    let lines: Vec<String> = text
        .split('\n')
        .filter(|l| !is_self_monitoring(l))
        .map(str::to_string)
        .collect();
    lines.into_iter()
}

/// Collects forwarded lines until `done` says so or `timeout` passed.
pub fn collect_until(
    agent: &impl Datagrams,
    timeout: Duration,
    done: impl Fn(&[String]) -> bool,
) -> Vec<String> {
    let deadline = Instant::now() + timeout;
    let mut got = Vec::new();
    while !done(&got) {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        if let Some(d) = agent.recv_datagram(left) {
            got.extend(forwarded_lines(d));
        }
    }
    got
}

/// Every value of the distribution `metric` in `lines` (several may be packed in one line), in
/// the order they came.
pub fn distribution_values(lines: &[String], metric: &str) -> Vec<String> {
    let prefix = format!("{metric}:");
    lines
        .iter()
        .filter_map(|l| l.strip_prefix(&prefix))
        .filter_map(|rest| rest.split_once("|d").map(|(values, _)| values))
        .flat_map(|values| values.split(':').map(str::to_string))
        .collect()
}

/// The `seq` values (a distribution) forwarded in `lines`, sorted.
pub fn sorted_seq_values(lines: &[String]) -> Vec<u32> {
    let mut seqs: Vec<u32> = distribution_values(lines, "algorithmia.seq")
        .iter()
        .map(|v| v.parse().expect("seq values are integers"))
        .collect();
    seqs.sort_unstable();
    seqs
}

/// The sum of the count `metric` over `lines`, whatever their tags.
pub fn count_sum(lines: &[String], metric: &str) -> u64 {
    let prefix = format!("{metric}:");
    lines
        .iter()
        .filter_map(|l| l.strip_prefix(&prefix))
        .filter_map(|rest| rest.split_once("|c").map(|(v, _)| v))
        .map(|v| v.parse::<u64>().expect("call counts are integers"))
        .sum()
}

/// Instance lines that send `seq` as a distribution: every value arrives, aggregated or not.
pub const SEQ_AS_DISTRIBUTION: &str = "    distribution_metrics: [seq]\n";

/// The offsets `group` committed for the first `partitions` partitions of `topic` (-1: none).
pub fn committed(kafka: &EmbeddedKafka, group: &str, topic: &str, partitions: i32) -> Vec<i64> {
    committed_on(kafka.bootstrap_servers(), group, topic, partitions)
}

/// Like [`committed`], on any broker.
pub fn committed_on(bootstrap: &str, group: &str, topic: &str, partitions: i32) -> Vec<i64> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .create()
        .expect("a consumer to read commits");
    let mut tpl = rdkafka::TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition(topic, p);
    }
    let got = consumer
        .committed_offsets(tpl, Duration::from_secs(10))
        .expect("committed offsets");
    (0..partitions)
        .map(|p| match got.find_partition(topic, p).map(|e| e.offset()) {
            Some(rdkafka::Offset::Offset(o)) => o,
            _ => -1,
        })
        .collect()
}

/// Counts the messages the broker acknowledged, and the first refusal.
#[derive(Default)]
pub struct Acknowledged {
    ok: AtomicUsize,
    failed: std::sync::Mutex<Option<String>>,
}

impl rdkafka::ClientContext for Acknowledged {}

impl rdkafka::producer::ProducerContext for Acknowledged {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &rdkafka::producer::DeliveryResult<'_>, _: ()) {
        match result {
            Ok(_) => {
                self.ok.fetch_add(1, Ordering::Relaxed);
            }
            Err((e, _)) => {
                let mut failed = self.failed.lock().unwrap();
                failed.get_or_insert_with(|| e.to_string());
            }
        }
    }
}

/// A producer to `bootstrap` that counts what the broker acknowledged; `extra` adds client
/// properties (security).
pub fn producer(
    bootstrap: &str,
    extra: &[(&str, &str)],
) -> rdkafka::producer::BaseProducer<Acknowledged> {
    let mut config = rdkafka::ClientConfig::new();
    config
        .set("bootstrap.servers", bootstrap)
        .set("linger.ms", "5")
        .set("partitioner", "murmur2_random");
    for (key, value) in extra {
        config.set(*key, *value);
    }
    config
        .create_with_context(Acknowledged::default())
        .expect("a producer")
}

/// Queues one message, waiting while the producer's queue is full.
pub fn send(producer: &rdkafka::producer::BaseProducer<Acknowledged>, topic: &str, payload: &[u8]) {
    use rdkafka::producer::BaseRecord;
    let mut record = BaseRecord::<(), [u8]>::to(topic).payload(payload);
    loop {
        match producer.send(record) {
            Ok(()) => break,
            Err((e, back)) => {
                assert!(
                    matches!(
                        e.rdkafka_error_code(),
                        Some(rdkafka::types::RDKafkaErrorCode::QueueFull)
                    ),
                    "producing failed: {e}"
                );
                record = back;
                producer.poll(Duration::from_millis(10));
            }
        }
    }
    producer.poll(Duration::ZERO);
}

/// Waits until the broker acknowledged everything sent (2 minutes at most) and returns how
/// many messages that is; a refused message fails the test.
pub fn acknowledged(producer: &rdkafka::producer::BaseProducer<Acknowledged>) -> usize {
    use rdkafka::producer::Producer;
    producer
        .flush(Duration::from_secs(120))
        .expect("every message acknowledged within 2 minutes");
    let context = producer.context();
    if let Some(error) = context.failed.lock().unwrap().take() {
        panic!("the broker refused a message: {error}");
    }
    context.ok.load(Ordering::Relaxed)
}

/// Produces `payloads` to `topic` (spread over its partitions) and waits until the broker
/// acknowledged every one; `extra` adds client properties (security). Returns how many.
pub fn produce(
    bootstrap: &str,
    topic: &str,
    payloads: impl IntoIterator<Item = Vec<u8>>,
    extra: &[(&str, &str)],
) -> usize {
    let producer = producer(bootstrap, extra);
    let mut sent = 0;
    for payload in payloads {
        send(&producer, topic, &payload);
        sent += 1;
    }
    assert_eq!(
        acknowledged(&producer),
        sent,
        "messages acknowledged by the broker"
    );
    sent
}

/// One sample-shaped Insights message whose `seq` field is `seq`.
pub fn insights_message(seq: u64) -> Vec<u8> {
    format!(
        r#"{{"algorithm_name":"credit_card_approval","algorithm_version":"1.0.{}","algorithm_owner":"algo_owner","request_id":"r{seq}","session_id":"s","time":"2026-11-22T00:00:00.000Z","duration_milliseconds":{},"risk_score":0.{},"approved":1,"seq":{seq}}}"#,
        seq % 3,
        seq % 97,
        seq % 1000
    )
    .into_bytes()
}

/// What a stand-in Agent received (the benchmarks), since the last [`Tally::take`]: the forwarded
/// lines (not the self-monitoring), the sum of the `algorithmia.calls` counts, the distribution
/// values, and the datagrams that held forwarded lines. Counted from the bytes, cheaply, so that
/// the receiver keeps up with the forwarder on a shared machine.
#[derive(Default)]
pub struct Tally {
    pub points: AtomicU64,
    pub calls: AtomicU64,
    pub distribution_values: AtomicU64,
    pub datagrams: AtomicU64,
}

impl Tally {
    /// Counts one datagram.
    pub fn count(&self, datagram: &[u8]) {
        let (mut points, mut calls, mut values) = (0, 0, 0);
        for line in datagram.split(|&b| b == b'\n') {
            if line.starts_with(b"algorithmia.forwarder.") || line.starts_with(b"_sc|") {
                continue;
            }
            points += 1;
            if let Some(rest) = line.strip_prefix(b"algorithmia.calls:") {
                calls += rest
                    .iter()
                    .take_while(|b| b.is_ascii_digit())
                    .fold(0u64, |n, d| n * 10 + u64::from(d - b'0'));
            } else if let Some(bar) = line.iter().position(|&b| b == b'|') {
                if line.get(bar + 1) == Some(&b'd') {
                    values += line[..bar].iter().filter(|&&b| b == b':').count() as u64;
                }
            }
        }
        if points > 0 {
            self.points.fetch_add(points, Ordering::Relaxed);
            self.calls.fetch_add(calls, Ordering::Relaxed);
            self.distribution_values
                .fetch_add(values, Ordering::Relaxed);
            self.datagrams.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// (points, calls, distribution values, datagrams) since the last call, and starts over.
    pub fn take(&self) -> (u64, u64, u64, u64) {
        let take = |a: &AtomicU64| a.swap(0, Ordering::Relaxed);
        (
            take(&self.points),
            take(&self.calls),
            take(&self.distribution_values),
            take(&self.datagrams),
        )
    }
}
