//! What we send, read by Datadog's own DogStatsD parser: `datadog-serverless-compat` 0.19.0 (the
//! PyPI wheel's static binary, Datadog's Rust DogStatsD codec) as the server, the built forwarder
//! as its own process, the librdkafka mock cluster in this process as the broker.
//!
//! - Every kind of line we send (gauges, counts with `|T`, distributions, service checks, the
//!   `algorithmia.forwarder.*` self-metrics) is read without a parse error.
//! - With `packed_distributions: false` the server's aggregated call counts and distribution
//!   sample counts equal what was sent, and so they do with `aggregation_interval: 0`, every
//!   point in its own line, sent in a burst but paced (`udp_max_datagrams_per_second`).
//! - Packed (protocol 1.1, the default), the server keeps one value per line: what it counted is
//!   printed and pinned, so that a version that reads packed lines fails this test and says so.
//!
//! Run with `cargo test --test datadog_parser -- --nocapture` to read the `ORACLE` lines.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::datadog_dogstatsd::*;
use common::process::*;
use common::*;

/// Messages per run.
const MESSAGES: u64 = 500;
/// The fields sent as distributions.
const DISTRIBUTIONS: [&str; 2] = ["seq", "risk_score"];

/// A sample-shaped Insights message stamped `now`.
fn message(seq: u64, now: i64) -> Vec<u8> {
    format!(
        r#"{{"algorithm_name":"credit_card_approval","algorithm_version":"1.0.{}","algorithm_owner":"algo_owner","request_id":"r{seq}","session_id":"s","time":{now},"duration_milliseconds":{},"risk_score":0.{},"approved":1,"seq":{seq}}}"#,
        seq % 3,
        seq % 97,
        seq % 1000
    )
    .into_bytes()
}

/// The forwarder reading `topic` from the start as a group of its own, tagging everything
/// `run:<label>`, with `init` lines added to `init_config` and `instance` lines to the instance.
fn forwarder_run(
    dir: &Path,
    bootstrap: &str,
    topic: &str,
    url: &str,
    label: &str,
    init: &str,
    instance: &str,
) -> Watched {
    let config = write(
        dir,
        &format!("{label}.yaml"),
        &format!(
            "init_config:\n  dogstatsd_url: {url}\n  tags: [\"run:{label}\"]\n{init}instances:\n  - kafka_broker: \"{bootstrap}\"\n    kafka_topic: {topic}\n    consumer_group: {group}\n    start_offset: earliest\n    distribution_metrics: [seq, risk_score]\n    send_timestamps: true\n{instance}",
            group = unique(label)
        ),
    );
    run_forwarder(dir, &config)
}

/// The lines the server received that carry `run:<label>`.
fn lines_of(server: &DogStatsdServer, label: &str) -> Vec<String> {
    let tag = format!("run:{label}");
    server
        .received_lines()
        .into_iter()
        .filter(|l| l.split(['|', ',', '#']).any(|t| t == tag))
        .collect()
}

/// How many values the `metric` distribution lines hold, and how many lines.
fn values_sent(lines: &[String], metric: &str) -> (u64, u64) {
    let prefix = format!("{metric}:");
    let packed: Vec<&str> = lines
        .iter()
        .filter_map(|l| l.strip_prefix(&prefix)?.split_once("|d").map(|(v, _)| v))
        .collect();
    let values = packed.iter().map(|v| v.split(':').count() as u64).sum();
    (values, packed.len() as u64)
}

/// What the server would ship for `run:<label>`.
struct Shipped {
    series: Vec<SeriesPoint>,
    sketches: Vec<Sketch>,
}

impl Shipped {
    fn of(server: &DogStatsdServer, label: &str) -> Shipped {
        let tag = format!("run:{label}");
        Shipped {
            series: server
                .series()
                .into_iter()
                .filter(|p| p.tags.contains(&tag))
                .collect(),
            sketches: server
                .sketches()
                .into_iter()
                .filter(|s| s.tags.contains(&tag))
                .collect(),
        }
    }

    /// The sum of a series' points.
    fn total(&self, metric: &str) -> f64 {
        self.series
            .iter()
            .filter(|p| p.metric == metric)
            .map(|p| p.value)
            .sum()
    }

    /// A distribution's sample count and sum, over every sketch.
    fn samples(&self, metric: &str) -> (u64, f64) {
        self.sketches
            .iter()
            .filter(|s| s.metric == metric)
            .fold((0, 0.0), |(n, sum), s| (n + s.count, sum + s.sum))
    }
}

/// Runs one forwarder until the server has every call, its self-metrics and a service check,
/// then stops it (SIGTERM: its last self-metrics go out as it stops).
fn run_until_received(server: &DogStatsdServer, run: Watched, label: &str) {
    let limit = Duration::from_secs(60);
    let (datagrams_before, drops_before) =
        (server.datagrams_received(), udp_receive_buffer_errors());
    let all_there = || {
        let lines = lines_of(server, label);
        count_sum(&lines, "algorithmia.calls") >= MESSAGES
            && lines.iter().any(|l| l.starts_with("_sc|"))
            && lines
                .iter()
                .any(|l| l.starts_with("algorithmia.forwarder."))
    };
    let deadline = std::time::Instant::now() + limit;
    while !all_there() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let lines = lines_of(server, label);
    let (code, _, log) = run.stop();
    println!(
        "ORACLE {label}: the server read {} datagrams; the kernel dropped {} (RcvbufErrors, \
         machine-wide)",
        server.datagrams_received() - datagrams_before,
        udp_receive_buffer_errors() - drops_before
    );
    assert!(
        all_there(),
        "{label}: within {limit:?} the server received {} of {MESSAGES} calls, service checks: \
         {}, self-metrics: {}; the forwarder's log:\n{}",
        count_sum(&lines, "algorithmia.calls"),
        lines.iter().any(|l| l.starts_with("_sc|")),
        lines
            .iter()
            .any(|l| l.starts_with("algorithmia.forwarder.")),
        log.join("\n")
    );
    assert_eq!(
        code,
        Some(0),
        "{label}: the forwarder's log:\n{}",
        log.join("\n")
    );
}

#[test]
fn datadogs_parser_reads_every_line_and_counts_every_unpacked_value() {
    let server = DogStatsdServer::start();
    let (kafka, topic) = kafka_with_topic(1);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let bootstrap = kafka.bootstrap_servers();
    produce(
        bootstrap,
        &topic,
        (0..MESSAGES).map(|seq| message(seq, now)),
        &[],
    );
    let dir = scratch_dir();
    let url = server.url();
    let runs: [(&str, &str, &str); 3] = [
        ("packed", "", ""),
        ("unpacked", "  packed_distributions: false\n", ""),
        (
            "burst",
            "  packed_distributions: false\n",
            "    aggregation_interval: 0\n",
        ),
    ];
    for (label, init, instance) in runs {
        let run = forwarder_run(&dir, bootstrap, &topic, &url, label, init, instance);
        run_until_received(&server, run, label);
    }
    assert!(
        server.wait_flushed(Duration::from_secs(60)),
        "the server did not flush; its log:\n{}",
        server.log_text()
    );

    // Every line is read: no parse error, and every metric line of every datagram is counted
    // as valid (service checks are read and passed over: this server ships none).
    let errors = server.parse_errors();
    assert!(errors.is_empty(), "parse errors: {errors:#?}");
    let received = server.received_lines();
    let metric_lines = received.iter().filter(|l| !l.starts_with("_sc|")).count();
    let parsed: usize = server
        .records()
        .iter()
        .filter_map(|r| {
            r.message
                .strip_prefix("Parsed ")?
                .split(' ')
                .next()?
                .parse::<usize>()
                .ok()
        })
        .sum();
    assert_eq!(parsed, metric_lines, "metric lines received against parsed");
    let kinds = [
        ("gauges", "|g"),
        ("counts", "|c"),
        ("distributions", "|d"),
        ("timestamps", "|T"),
    ];
    for (kind, field) in kinds {
        assert!(
            received
                .iter()
                .any(|l| !l.starts_with("_sc|") && l.contains(field)),
            "no {kind} were sent"
        );
    }
    assert!(
        received.iter().any(|l| l.starts_with("_sc|")),
        "no service checks"
    );
    assert!(
        received
            .iter()
            .any(|l| l.starts_with("algorithmia.forwarder.")),
        "no self-metrics"
    );

    // Timestamps are accepted: the calls are shipped at the messages' time (floored to the
    // server's 10-second bucket), not at the flush's, a minute later.
    let stamps: BTreeSet<i64> = server
        .series()
        .iter()
        .filter(|p| p.metric == "algorithmia.calls")
        .map(|p| p.timestamp)
        .collect();
    assert_eq!(
        stamps,
        BTreeSet::from([now - now % 10]),
        "the calls' timestamps (sent: {now})"
    );

    for (label, _, _) in runs {
        let lines = lines_of(&server, label);
        let shipped = Shipped::of(&server, label);
        assert_eq!(
            shipped.total("algorithmia.calls"),
            MESSAGES as f64,
            "{label}: calls counted by the server"
        );
        let reported = shipped.total("algorithmia.forwarder.distribution_values_sent");
        let mut figures = Vec::new();
        for metric in DISTRIBUTIONS.map(|f| format!("algorithmia.{f}")) {
            let (values, dist_lines) = values_sent(&lines, &metric);
            let (counted, sum) = shipped.samples(&metric);
            assert_eq!(values, MESSAGES, "{label}: {metric} values sent");
            figures.push(format!(
                "{metric}: {values} values sent in {dist_lines} lines, {counted} counted"
            ));
            if label == "packed" {
                // This server keeps the first value of each packed line.
                assert_eq!(counted, dist_lines, "{label}: {metric}: one value per line");
                assert!(counted < values, "{label}: {metric}");
            } else {
                assert_eq!(counted, values, "{label}: {metric}: samples counted");
                if metric == "algorithmia.seq" {
                    let expected = (MESSAGES * (MESSAGES - 1) / 2) as f64;
                    assert_eq!(sum, expected, "{label}: the sum of the seq values");
                }
            }
        }
        assert_eq!(
            reported,
            (DISTRIBUTIONS.len() as u64 * MESSAGES) as f64,
            "{label}: the forwarder's own count of distribution values sent"
        );
        println!(
            "ORACLE datadog-serverless-compat {VERSION}, {label}: calls {MESSAGES} sent, {} counted; {}",
            shipped.total("algorithmia.calls"),
            figures.join("; ")
        );
    }
}

#[test]
fn its_log_is_read_record_by_record() {
    let log = "TRACE dogstatsd::dogstatsd: Received message: a.c:2|c|#x:y\na.c:3|c|#x:y from 127.0.0.1:5\n INFO datadog_serverless_compat: hello\nTRACE dogstatsd::datadog::shipping: Sending body: Series { series: [Metric { metric: \"a.c\", points: [Point { timestamp: 17, value: 5.0 }], resources: [], kind: Count, tags: [\"x:y\", \"run:a\"], metadata: None }] }\nTRACE dogstatsd::datadog::shipping: Sending distributions: SketchPayload { sketches: [Sketch { metric: \"a.d\", host: \"\", distributions: [], tags: [\"x:y\"], dogsketches: [Dogsketch { ts: 1, cnt: 2, min: 1.0, max: 4.0, avg: 2.5, sum: 5.0, k: [1338, 1427], n: [1, 1] }] }] }\n";
    let records = parse_records(log);
    assert_eq!(records.len(), 4);
    assert_eq!(
        records[0].message,
        "Received message: a.c:2|c|#x:y\na.c:3|c|#x:y from 127.0.0.1:5"
    );
    assert_eq!(
        (records[1].level.as_str(), records[1].message.as_str()),
        ("INFO", "hello")
    );
    let body = records[2].message.strip_prefix("Sending body: ").unwrap();
    assert_eq!(
        parse_series(body),
        [SeriesPoint {
            metric: "a.c".into(),
            kind: "Count".into(),
            tags: vec!["x:y".into(), "run:a".into()],
            timestamp: 17,
            value: 5.0
        }]
    );
    let body = records[3]
        .message
        .strip_prefix("Sending distributions: ")
        .unwrap();
    assert_eq!(
        parse_sketches(body),
        [Sketch {
            metric: "a.d".into(),
            tags: vec!["x:y".into()],
            count: 2,
            sum: 5.0
        }]
    );
}
