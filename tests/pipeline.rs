//! The real pipeline against a real Kafka-protocol broker (librdkafka's mock cluster, in
//! process), read back from real UDP and Unix datagram sockets.

mod common;

use std::os::unix::net::UnixDatagram;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use algorithmia_datadog::embedded::PUBLIC_SAMPLE;
use algorithmia_datadog::{run, run_with_counters, RunOptions};
use algorithmia_datadog::{Counters, SkipReason};
use common::*;

const TAGS: &str =
    "algorithm_name:credit_card_approval,algorithm_version:1.0.6,algorithm_owner:asli";

/// Messages covering the mapping rules, and the exact lines they must produce, in order, when
/// every point is sent (`aggregation_interval: 0`).
fn golden() -> (Vec<&'static str>, Vec<String>) {
    let messages = vec![
        PUBLIC_SAMPLE,
        r#"{"risk_score":"0.75","approved":"1","duration_milliseconds":"12","algorithm_version":"1.0.7","algorithm_name":"credit_card_approval","algorithm_owner":"asli","request_id":"req-2","session_id":"rses-2","time":"2021-02-20T00:21:55"}"#,
        r#"{"approved":true,"label":"high","scores":[1,2],"meta":{"a":1},"missing":null,"algorithm_name":"credit_card_approval"}"#,
        r#"{"duration_milliseconds":3}"#,
        r#"{"algorithm_name":"no_metrics_here","request_id":"req-4"}"#,
        r#"{"weird name|x":1,"algorithm_name":"evil,name|#x:1\ninjected:1|g"}"#,
    ];
    let v107 = "algorithm_name:credit_card_approval,algorithm_version:1.0.7,algorithm_owner:asli";
    let lines = vec![
        format!("algorithmia.risk_score:0.2|g|#{TAGS}"),
        format!("algorithmia.duration_milliseconds:8|g|#{TAGS}"),
        format!("algorithmia.calls:1|c|#{TAGS}"),
        format!("algorithmia.risk_score:0.75|g|#{v107}"),
        format!("algorithmia.approved:1|g|#{v107}"),
        format!("algorithmia.duration_milliseconds:12|g|#{v107}"),
        format!("algorithmia.calls:1|c|#{v107}"),
        "algorithmia.approved:1|g|#algorithm_name:credit_card_approval".into(),
        "algorithmia.calls:1|c|#algorithm_name:credit_card_approval".into(),
        "algorithmia.duration_milliseconds:3|g".into(),
        "algorithmia.calls:1|c".into(),
        "algorithmia.calls:1|c|#algorithm_name:no_metrics_here".into(),
        "algorithmia.weird_name_x:1|g|#algorithm_name:evil_name__x:1_injected:1_g".into(),
        "algorithmia.calls:1|c|#algorithm_name:evil_name__x:1_injected:1_g".into(),
    ];
    (messages, lines)
}

/// Sends every point as it comes, as before aggregation existed.
const EVERY_POINT: &str = "    aggregation_interval: 0\n";

fn options_until(messages: u64) -> RunOptions {
    RunOptions {
        max_messages: Some(messages),
        ..RunOptions::default()
    }
}

#[test]
fn a_golden_set_produces_exactly_the_expected_datagrams_over_udp() {
    let (kafka, topic) = kafka_with_topic(1);
    let (messages, expected) = golden();
    kafka.produce(&topic, &messages).unwrap();
    let (agent, url) = udp_agent();
    let config = config(&kafka, &topic, &unique("golden"), &url, EVERY_POINT);

    let total = run(&config, &options_until(messages.len() as u64)).unwrap();

    let (lines, sizes) = collect_lines(&agent, expected.len(), Duration::from_secs(10));
    assert_eq!(lines, expected);
    // Paced (the default): datagrams of 1432 bytes at most.
    assert!(sizes.iter().all(|s| *s <= 1432), "{sizes:?}");
    assert!(
        drain(&agent, Duration::from_millis(300)).is_empty(),
        "nothing more is sent"
    );
    assert_eq!(total.messages, messages.len() as u64);
    assert_eq!(total.gauges, 8);
    assert_eq!(total.counts, 6);
    assert_eq!(total.points_aggregated, 0);
    assert_eq!(total.messages_without_metrics, 1);
    assert_eq!(total.skipped(SkipReason::String), 1);
    assert_eq!(total.skipped(SkipReason::Array), 1);
    assert_eq!(total.skipped(SkipReason::Object), 1);
    assert_eq!(total.skipped(SkipReason::Null), 1);
    assert_eq!(total.rejected_total(), 0);
}

#[test]
fn a_golden_set_produces_exactly_the_expected_datagrams_over_a_unix_socket() {
    let (kafka, topic) = kafka_with_topic(1);
    let (messages, expected) = golden();
    kafka.produce(&topic, &messages).unwrap();
    let path = unix_socket_path();
    let agent = UnixDatagram::bind(&path).unwrap();
    let config = config(
        &kafka,
        &topic,
        &unique("golden-unix"),
        &format!("unix://{}", path.display()),
        EVERY_POINT,
    );

    run(&config, &options_until(messages.len() as u64)).unwrap();

    let (lines, _) = collect_lines(&agent, expected.len(), Duration::from_secs(10));
    assert_eq!(lines, expected);
}

#[test]
fn aggregated_the_golden_set_sends_last_values_and_summed_calls() {
    let (kafka, topic) = kafka_with_topic(1);
    let (mut messages, _) = golden();
    // The public sample's model again, later: its gauges supersede the first ones.
    let again = r#"{"risk_score":0.9,"duration_milliseconds":20,"algorithm_version":"1.0.6","algorithm_name":"credit_card_approval","algorithm_owner":"asli"}"#;
    messages.push(again);
    kafka.produce(&topic, &messages).unwrap();
    let (agent, url) = udp_agent();
    let config = config(&kafka, &topic, &unique("golden-agg"), &url, "");

    let total = run(&config, &options_until(messages.len() as u64)).unwrap();

    let expected_lines = total.gauges + total.counts;
    let lines = collect_until(&agent, Duration::from_secs(10), |l| {
        l.len() as u64 >= expected_lines
    });
    assert!(
        drain(&agent, Duration::from_millis(300)).is_empty(),
        "nothing more is sent"
    );
    assert_eq!(lines.len() as u64, expected_lines);
    assert_eq!(
        count_sum(&lines, "algorithmia.calls"),
        7,
        "every call counted"
    );
    let calls_of = |tags: &str| {
        count_sum(
            &lines
                .iter()
                .filter(|l| l.ends_with(&format!("|c|#{tags}")))
                .cloned()
                .collect::<Vec<_>>(),
            "algorithmia.calls",
        )
    };
    assert_eq!(calls_of(TAGS), 2);
    // Whatever the windows, the last value of each context is the last one produced.
    let last = |name: &str| {
        lines
            .iter()
            .rev()
            .find(|l| l.starts_with(name) && l.ends_with(&format!("|g|#{TAGS}")))
            .cloned()
    };
    assert_eq!(
        last("algorithmia.risk_score:").as_deref(),
        Some(format!("algorithmia.risk_score:0.9|g|#{TAGS}").as_str())
    );
    assert_eq!(
        last("algorithmia.duration_milliseconds:").as_deref(),
        Some(format!("algorithmia.duration_milliseconds:20|g|#{TAGS}").as_str())
    );
    // 10 gauge values and 7 calls came in; what was not sent was folded.
    assert_eq!(total.gauges + total.counts + total.points_aggregated, 17);
    assert!(
        total.points_aggregated >= 1 || total.gauges == 10,
        "{total:?}"
    );
    if total.points_aggregated == 3 {
        // All in one window (unless a window boundary fell between the messages).
        assert_eq!(lines.len(), 14);
    }
}

#[test]
fn malformed_messages_between_good_ones_lose_no_good_message() {
    let (kafka, topic) = kafka_with_topic(1);
    let bad: [&[u8]; 5] = [b"not json", b"{\"a\":1", b"\xff\xfe{}", b"[1,2,3]", b""];
    let mut expected = Vec::new();
    for (i, poison) in bad.iter().enumerate() {
        kafka
            .produce_to(&topic, 0, format!(r#"{{"seq":{i}}}"#).as_bytes())
            .unwrap();
        kafka.produce_to(&topic, 0, poison).unwrap();
        expected.push(format!("algorithmia.seq:{i}|g"));
        expected.push("algorithmia.calls:1|c".into());
    }
    kafka.produce_to(&topic, 0, br#"{"seq":99}"#).unwrap();
    expected.push("algorithmia.seq:99|g".into());
    expected.push("algorithmia.calls:1|c".into());
    let (agent, url) = udp_agent();
    let config = config(&kafka, &topic, &unique("poison"), &url, EVERY_POINT);

    let total = run(&config, &options_until(11)).unwrap();

    let (lines, _) = collect_lines(&agent, expected.len(), Duration::from_secs(10));
    assert_eq!(lines, expected);
    assert_eq!(total.rejected_total(), 5);
    assert_eq!(total.rejected("invalid_json"), 2);
    assert_eq!(total.rejected("not_utf8"), 1);
    assert_eq!(total.rejected("not_an_object"), 1);
    assert_eq!(total.rejected("empty"), 1);
}

#[test]
fn after_a_clean_stop_the_same_group_forwards_only_what_came_after() {
    let (kafka, topic) = kafka_with_topic(3);
    let group = unique("resume");
    let (agent, url) = udp_agent();
    // The mock cluster never returns an emptied group to "Empty", so a new member waits the
    // session timeout minus a second before its first assignment: keep that short here.
    let config = config(
        &kafka,
        &topic,
        &group,
        &url,
        &format!("{SEQ_AS_DISTRIBUTION}    kafka_options:\n      session.timeout.ms: 1500\n      heartbeat.interval.ms: 300\n"),
    );
    let seq = |range: std::ops::Range<u32>| {
        range
            .map(|i| format!(r#"{{"seq":{i}}}"#))
            .collect::<Vec<_>>()
    };

    // Aggregated (the default), with every sequence number a distribution value: each must
    // arrive exactly once.
    kafka.produce(&topic, seq(0..300)).unwrap();
    let first = run(&config, &options_until(300)).unwrap();
    assert_eq!(first.messages, 300);
    let lines = collect_until(&agent, Duration::from_secs(10), |l| {
        sorted_seq_values(l).len() >= 300
    });
    assert_eq!(sorted_seq_values(&lines), (0..300).collect::<Vec<_>>());
    assert_eq!(count_sum(&lines, "algorithmia.calls"), 300);

    kafka.produce(&topic, seq(300..450)).unwrap();
    // The second run would see any message twice, or skip one, within these 150.
    let second = run(&config, &options_until(150)).unwrap();
    assert_eq!(second.messages, 150);
    let mut lines = collect_until(&agent, Duration::from_secs(10), |l| {
        sorted_seq_values(l).len() >= 150
    });
    lines.extend(drain(&agent, Duration::from_millis(300)));
    assert_eq!(sorted_seq_values(&lines), (300..450).collect::<Vec<_>>());
    assert_eq!(count_sum(&lines, "algorithmia.calls"), 150);
}

/// Runs the pipeline on a thread until the returned flag is raised.
fn start(
    config: algorithmia_datadog::config::Config,
) -> (Arc<AtomicBool>, Arc<Counters>, std::thread::JoinHandle<()>) {
    let stop = Arc::new(AtomicBool::new(false));
    let counters = Arc::new(Counters::default());
    let options = RunOptions {
        stop: stop.clone(),
        ..RunOptions::default()
    };
    let c = counters.clone();
    let handle = std::thread::spawn(move || {
        run_with_counters(&config, &options, &[c]).expect("the run ends cleanly");
    });
    (stop, counters, handle)
}

#[test]
fn a_lone_message_reaches_the_agent_within_its_window() {
    // (interval, generous bound): the window plus delivery, or 1 s when every point is sent.
    for (interval, within) in [(0, 1_000), (1, 2_000)] {
        let (kafka, topic) = kafka_with_topic(1);
        let (agent, url) = udp_agent();
        let extra = format!("    aggregation_interval: {interval}\n");
        let (stop, _, handle) = start(config(&kafka, &topic, &unique("lone"), &url, &extra));

        // Wait until the consumer has its partition: a first message comes through.
        kafka.produce(&topic, [r#"{"warmup":1}"#]).unwrap();
        let (lines, _) = collect_lines(&agent, 2, Duration::from_secs(15));
        assert_eq!(lines, ["algorithmia.warmup:1|g", "algorithmia.calls:1|c"]);

        std::thread::sleep(Duration::from_millis(300)); // idle consumer
        let sent = Instant::now();
        kafka.produce(&topic, [r#"{"lone":1}"#]).unwrap();
        let (lines, _) = collect_lines(&agent, 2, Duration::from_millis(within));
        let latency = sent.elapsed();
        assert_eq!(
            lines,
            ["algorithmia.lone:1|g", "algorithmia.calls:1|c"],
            "interval {interval}: nothing within {within} ms"
        );
        assert!(latency < Duration::from_millis(within), "{latency:?}");

        stop.store(true, Ordering::Relaxed);
        handle.join().unwrap();
    }
}

#[test]
fn datagrams_are_packed_and_never_exceed_the_loopback_limit() {
    let (kafka, topic) = kafka_with_topic(2);
    let messages: Vec<String> = (0..2000)
        .map(|i| format!(r#"{{"risk_score":0.{i},"duration_milliseconds":{i},"algorithm_name":"m","algorithm_version":"1.0.{}","algorithm_owner":"o"}}"#, i % 3))
        .collect();
    kafka.produce(&topic, &messages).unwrap();
    let (agent, url) = udp_agent();
    let mut config = config(&kafka, &topic, &unique("pack"), &url, EVERY_POINT);
    config.udp_max_datagrams_per_second = 0;
    // Read while forwarding: a burst of datagrams must not overflow the test socket's buffer.
    let reader = std::thread::spawn(move || collect_lines(&agent, 6000, Duration::from_secs(20)));
    let total = run(&config, &options_until(2000)).unwrap();
    let (lines, sizes) = reader.join().unwrap();
    assert_eq!(lines.len(), 6000);
    assert_eq!((total.gauges, total.counts), (4000, 2000));
    // Unpaced, a loopback address takes 8192-byte datagrams, as a Unix socket does.
    let largest = sizes.iter().max().copied().unwrap_or(0);
    assert!(largest <= 8192 && largest > 1432, "largest {largest}");
    assert!(
        sizes.len() < 6000 / 5,
        "{} datagrams for 6000 lines: not packed",
        sizes.len()
    );
}

#[test]
fn distribution_values_are_packed_within_the_limit_and_none_goes_missing() {
    let (kafka, topic) = kafka_with_topic(2);
    let messages: Vec<String> = (0..5000)
        .map(|i| format!(r#"{{"seq":{i},"algorithm_name":"m"}}"#))
        .collect();
    kafka.produce(&topic, &messages).unwrap();
    let (agent, url) = udp_agent();
    let config = config(&kafka, &topic, &unique("pack-d"), &url, SEQ_AS_DISTRIBUTION);
    let reader = std::thread::spawn(move || {
        let mut sizes = Vec::new();
        let mut lines = Vec::new();
        while let Some(d) = agent.recv_datagram(Duration::from_secs(5)) {
            sizes.push(d.len());
            let text = String::from_utf8(d).unwrap();
            lines.extend(
                text.split('\n')
                    .filter(|l| !is_self_monitoring(l))
                    .map(str::to_string),
            );
            if sorted_seq_values(&lines).len() >= 5000
                && count_sum(&lines, "algorithmia.calls") >= 5000
            {
                break;
            }
        }
        (lines, sizes)
    });
    let total = run(&config, &options_until(5000)).unwrap();
    let (lines, sizes) = reader.join().unwrap();
    assert_eq!(sorted_seq_values(&lines), (0..5000).collect::<Vec<_>>());
    assert_eq!(count_sum(&lines, "algorithmia.calls"), 5000);
    assert_eq!(total.distribution_values, 5000);
    assert!(
        sizes.iter().all(|s| *s <= 1432),
        "max {:?}",
        sizes.iter().max()
    );
    assert!(
        lines
            .iter()
            .all(|l| !l.contains("|d") || l.ends_with("|d|#algorithm_name:m")),
        "distributions carry their tags and no timestamp"
    );
    assert!(
        sizes.len() < 100,
        "{} datagrams for 5000 values",
        sizes.len()
    );
}

#[test]
fn while_the_agent_socket_is_missing_nothing_is_lost() {
    let (kafka, topic) = kafka_with_topic(1);
    let path = unix_socket_path();
    let config = config(
        &kafka,
        &topic,
        &unique("agent-restart"),
        &format!("unix://{}", path.display()),
        SEQ_AS_DISTRIBUTION,
    );
    let (stop, counters, handle) = start(config);

    kafka
        .produce(&topic, (0..50).map(|i| format!(r#"{{"seq":{i}}}"#)))
        .unwrap();
    // The Agent is down: writes fail and are retried.
    let deadline = Instant::now() + Duration::from_secs(15);
    while counters.snapshot().send_errors < 2 {
        assert!(Instant::now() < deadline, "the sink never tried to send");
        std::thread::sleep(Duration::from_millis(20));
    }
    // The Agent comes back.
    let agent = UnixDatagram::bind(&path).unwrap();
    let lines = collect_until(&agent, Duration::from_secs(15), |l| {
        sorted_seq_values(l).len() >= 50
    });
    assert_eq!(sorted_seq_values(&lines), (0..50).collect::<Vec<_>>());
    stop.store(true, Ordering::Relaxed);
    handle.join().unwrap();
    assert!(counters.snapshot().send_errors >= 2);
}

#[test]
fn two_forwarders_in_one_group_share_the_partitions_without_loss() {
    let (kafka, topic) = kafka_with_topic(4);
    let group = unique("shared");
    let (agent, url) = udp_agent();
    kafka
        .produce(&topic, (0..400).map(|i| format!(r#"{{"seq":{i}}}"#)))
        .unwrap();
    // A short session: the mock cluster waits the session timeout (less a second) for members
    // of a rebalancing group, where a real broker uses the rebalance protocol's own timing.
    let fast =
        "    kafka_options:\n      session.timeout.ms: 1500\n      heartbeat.interval.ms: 300\n";
    let fast = format!("{SEQ_AS_DISTRIBUTION}{fast}");
    let (stop_a, counters_a, a) = start(config(&kafka, &topic, &group, &url, &fast));
    let (stop_b, counters_b, b) = start(config(&kafka, &topic, &group, &url, &fast));
    let mut seen = std::collections::BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while seen.len() < 400 && Instant::now() < deadline {
        let (lines, _) = collect_lines(&agent, 1, Duration::from_millis(200));
        seen.extend(sorted_seq_values(&lines));
    }
    stop_a.store(true, Ordering::Relaxed);
    stop_b.store(true, Ordering::Relaxed);
    a.join().unwrap();
    b.join().unwrap();
    assert_eq!(
        seen.into_iter().collect::<Vec<_>>(),
        (0..400).collect::<Vec<_>>(),
        "every message forwarded"
    );
    let consumed = counters_a.snapshot().messages + counters_b.snapshot().messages;
    assert!(consumed >= 400, "{consumed}");
}

/// Messages are taken from a queue the rebalance callback routes each assigned partition to;
/// librdkafka undoes that routing when a partition leaves. A partition that leaves and comes
/// back must flow again, in order, without waiting for anything.
#[test]
fn a_partition_that_leaves_and_comes_back_flows_again() {
    let (kafka, topic) = kafka_with_topic(2);
    let group = unique("back");
    let (agent, url) = udp_agent();
    let fast =
        "    kafka_options:\n      session.timeout.ms: 1500\n      heartbeat.interval.ms: 300\n";
    let fast = format!("{SEQ_AS_DISTRIBUTION}{fast}");
    let seen = |count: usize, what: &str| {
        let mut seen = std::collections::BTreeSet::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        while seen.len() < count {
            assert!(
                Instant::now() < deadline,
                "{what}: {} of {count}",
                seen.len()
            );
            let (lines, _) = collect_lines(&agent, 1, Duration::from_millis(200));
            seen.extend(sorted_seq_values(&lines));
        }
        seen
    };
    let produce = |from: u32, to: u32| {
        for i in from..to {
            let value = format!(r#"{{"seq":{i}}}"#);
            kafka
                .produce_to(&topic, (i % 2) as i32, value.as_bytes())
                .unwrap();
        }
    };
    let (stop_a, counters_a, a) = start(config(&kafka, &topic, &group, &url, &fast));
    produce(0, 100);
    seen(100, "A alone");

    // B joins: one partition leaves A. B leaves: it comes back to A.
    let (stop_b, _, b) = start(config(&kafka, &topic, &group, &url, &fast));
    let deadline = Instant::now() + Duration::from_secs(20);
    while counters_a.revocations.load(Ordering::Relaxed) == 0 {
        assert!(Instant::now() < deadline, "B never took a partition");
        std::thread::sleep(Duration::from_millis(50));
    }
    stop_b.store(true, Ordering::Relaxed);
    b.join().unwrap();
    let before = counters_a.messages.load(Ordering::Relaxed);
    produce(100, 300);
    let seen = seen(200, "after B left");
    stop_a.store(true, Ordering::Relaxed);
    a.join().unwrap();
    assert_eq!(
        seen.into_iter().collect::<Vec<_>>(),
        (100..300).collect::<Vec<_>>()
    );
    assert!(
        counters_a.messages.load(Ordering::Relaxed) - before >= 200,
        "A forwarded both partitions again"
    );
}

#[test]
fn a_forwarder_whose_agent_is_down_keeps_serving_its_group() {
    let (kafka, topic) = kafka_with_topic(2);
    let group = unique("blocked");
    let fast =
        "    kafka_options:\n      session.timeout.ms: 1500\n      heartbeat.interval.ms: 300\n";
    let missing = unix_socket_path();
    let unix = format!("unix://{}", missing.display());
    let (stop_a, counters_a, a) = start(config(&kafka, &topic, &group, &unix, fast));
    kafka.produce_to(&topic, 0, br#"{"seq":0}"#).unwrap();
    kafka.produce_to(&topic, 1, br#"{"seq":1}"#).unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    while counters_a.snapshot().send_errors < 2 {
        assert!(Instant::now() < deadline, "forwarder A never tried to send");
        std::thread::sleep(Duration::from_millis(20));
    }

    // B joins while A is stuck on its Agent. The rebalance needs A to serve the revocation from
    // inside `poll`: a forwarder that stopped polling while it retried would never do so, and
    // would hold the group's rebalance up until evicted (max.poll.interval.ms, 5 minutes).
    let (agent_b, url_b) = udp_agent();
    let (stop_b, _, b) = start(config(&kafka, &topic, &group, &url_b, fast));
    let joined = Instant::now();
    while counters_a.revocations.load(Ordering::Relaxed) == 0 {
        assert!(
            joined.elapsed() < Duration::from_secs(10),
            "blocked A never served the rebalance"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(counters_a.snapshot().send_errors >= 2, "A is still blocked");

    // The group goes on: B forwards what is produced now.
    let mut forwarded = Vec::new();
    let mut next = 2;
    while forwarded.is_empty() && joined.elapsed() < Duration::from_secs(40) {
        kafka
            .produce_to(&topic, next % 2, format!(r#"{{"seq":{next}}}"#).as_bytes())
            .unwrap();
        next += 1;
        forwarded.extend(collect_lines(&agent_b, 1, Duration::from_millis(200)).0);
    }
    assert!(!forwarded.is_empty(), "B forwarded nothing");

    // A's Agent comes back: what A still holds goes out, nothing of it lost.
    let agent_a = UnixDatagram::bind(&missing).unwrap();
    let (lines, _) = collect_lines(&agent_a, 1, Duration::from_secs(15));
    assert!(
        !lines.is_empty(),
        "A delivered nothing after its Agent came back"
    );
    stop_a.store(true, Ordering::Relaxed);
    stop_b.store(true, Ordering::Relaxed);
    a.join().unwrap();
    b.join().unwrap();
}

#[test]
fn offsets_do_not_move_before_the_window_is_written() {
    let (kafka, topic) = kafka_with_topic(1);
    let group = unique("held");
    let missing = unix_socket_path();
    let unix = format!("unix://{}", missing.display());
    let (stop, counters, handle) = start(config(&kafka, &topic, &group, &unix, ""));
    kafka
        .produce(&topic, (0..20).map(|i| format!(r#"{{"seq":{i}}}"#)))
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    while counters.snapshot().send_errors < 1 {
        assert!(Instant::now() < deadline, "the window was never written");
        std::thread::sleep(Duration::from_millis(20));
    }
    // Past an auto-commit (every 5 s): the refused window's offsets were not committed.
    std::thread::sleep(Duration::from_secs(6));
    assert_eq!(counters.snapshot().messages, 20);
    assert_eq!(committed(&kafka, &group, &topic, 1), [-1]);

    let agent = UnixDatagram::bind(&missing).unwrap();
    let lines = collect_until(&agent, Duration::from_secs(15), |l| {
        count_sum(l, "algorithmia.calls") >= 20
    });
    assert_eq!(count_sum(&lines, "algorithmia.calls"), 20);
    stop.store(true, Ordering::Relaxed);
    handle.join().unwrap();
    assert_eq!(
        committed(&kafka, &group, &topic, 1),
        [20],
        "written, then committed"
    );
}

#[test]
fn a_revocation_mid_window_loses_nothing() {
    let (kafka, topic) = kafka_with_topic(4);
    let group = unique("revoked");
    let (agent, url) = udp_agent();
    // Ten-second windows: the rebalance falls inside A's open window.
    let extra = format!("{SEQ_AS_DISTRIBUTION}    aggregation_interval: 10\n    kafka_options:\n      session.timeout.ms: 1500\n      heartbeat.interval.ms: 300\n");
    let (stop_a, counters_a, a) = start(config(&kafka, &topic, &group, &url, &extra));
    kafka
        .produce(&topic, (0..200).map(|i| format!(r#"{{"seq":{i}}}"#)))
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    while counters_a.snapshot().messages < 200 {
        assert!(Instant::now() < deadline, "A never consumed the messages");
        std::thread::sleep(Duration::from_millis(20));
    }
    let (stop_b, counters_b, b) = start(config(&kafka, &topic, &group, &url, &extra));
    let joined = Instant::now();
    while counters_a.revocations.load(Ordering::Relaxed) == 0 {
        assert!(joined.elapsed() < Duration::from_secs(15), "no rebalance");
        std::thread::sleep(Duration::from_millis(20));
    }
    kafka
        .produce(&topic, (200..400).map(|i| format!(r#"{{"seq":{i}}}"#)))
        .unwrap();
    let lines = collect_until(&agent, Duration::from_secs(40), |l| {
        let mut seen = sorted_seq_values(l);
        seen.dedup();
        seen.len() >= 400
    });
    stop_a.store(true, Ordering::Relaxed);
    stop_b.store(true, Ordering::Relaxed);
    a.join().unwrap();
    b.join().unwrap();
    let values = sorted_seq_values(&lines);
    let mut unique_values = values.clone();
    unique_values.dedup();
    assert_eq!(unique_values, (0..400).collect::<Vec<_>>(), "nothing lost");
    let duplicates = values.len() - unique_values.len();
    eprintln!("revocation mid-window: {duplicates} values forwarded twice");
    assert!(counters_b.snapshot().messages > 0, "B took part");
}
