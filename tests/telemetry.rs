//! The forwarder's reports on itself: self-metrics and service checks, read from the same
//! DogStatsD socket the gauges go to.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use algorithmia_datadog::config::Config;
use algorithmia_datadog::Counters;
use algorithmia_datadog::{run_with_counters, RunOptions};
use common::*;

fn fast_reports() -> RunOptions {
    RunOptions {
        self_metrics_every: Some(Duration::from_millis(200)),
        service_checks_every: Duration::from_millis(200),
        ..RunOptions::default()
    }
}

fn start(config: Config, options: RunOptions) -> (Arc<AtomicBool>, std::thread::JoinHandle<()>) {
    let stop = options.stop.clone();
    let handle = std::thread::spawn(move || {
        run_with_counters(&config, &options, &[Arc::new(Counters::default())]).expect("clean run");
    });
    (stop, handle)
}

fn watch(agent: &std::net::UdpSocket, until: impl Fn(&[String]) -> bool) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut lines = Vec::new();
    while !until(&lines) && Instant::now() < deadline {
        let (more, _) = collect_all(agent, 1, Duration::from_millis(200), is_self_monitoring);
        lines.extend(more);
    }
    lines
}

/// Sums `name:value|c|#tags` counts by name and tags.
fn counts(lines: &[String]) -> HashMap<String, u64> {
    let mut sums = HashMap::new();
    for line in lines {
        let Some((name, rest)) = line.split_once(':') else {
            continue;
        };
        let mut fields = rest.split('|');
        let value = fields.next().unwrap_or_default();
        if fields.next() != Some("c") {
            continue;
        }
        let tags = fields.find_map(|f| f.strip_prefix('#')).unwrap_or_default();
        *sums.entry(format!("{name}|{tags}")).or_insert(0) += value.parse::<u64>().unwrap();
    }
    sums
}

#[test]
fn self_metrics_count_what_happened_tagged_by_topic_and_group() {
    let (kafka, topic) = kafka_with_topic(2);
    let group = unique("self");
    let (agent, url) = udp_agent();
    let mut messages: Vec<String> = (0..40)
        .map(|i| format!(r#"{{"seq":{i},"label":"x"}}"#))
        .collect();
    messages.push("not json".into());
    kafka.produce(&topic, &messages).unwrap();
    let config = config(
        &kafka,
        &topic,
        &group,
        &url,
        "    tags: [\"team:ml\"]\n    kafka_options:\n      statistics.interval.ms: 200\n",
    );
    let options = fast_reports();
    let (stop, handle) = start(config, options);

    let tags = format!("topic:{topic},consumer_group:{group},team:ml");
    let consumed = format!("algorithmia.forwarder.messages_consumed|{tags}");
    let mut lines = watch(&agent, |lines| {
        counts(lines).get(&consumed) == Some(&41)
            && lines
                .iter()
                .any(|l| l.starts_with("algorithmia.forwarder.consumer_lag:0|g"))
    });
    stop.store(true, Ordering::Relaxed);
    handle.join().unwrap();

    // The last report, sent after the stop.
    lines.extend(
        collect_all(
            &agent,
            usize::MAX,
            Duration::from_millis(500),
            is_self_monitoring,
        )
        .0,
    );
    let sums = counts(&lines);
    assert_eq!(sums.get(&consumed), Some(&41), "{lines:#?}");
    // 40 gauge values and 40 calls, aggregated: what was not sent was folded into a point.
    let sent = |name: &str| {
        sums.get(&format!("algorithmia.forwarder.{name}|{tags}"))
            .copied()
            .unwrap_or(0)
    };
    let (gauges, counts, aggregated) = (
        sent("gauges_sent"),
        sent("counts_sent"),
        sent("points_aggregated"),
    );
    assert!(gauges >= 1 && counts >= 1, "{lines:#?}");
    assert_eq!(gauges + counts + aggregated, 80, "{lines:#?}");
    assert_eq!(
        sums.get(&format!(
            "algorithmia.forwarder.messages_rejected|{tags},reason:invalid_json"
        )),
        Some(&1)
    );
    assert_eq!(
        sums.get(&format!(
            "algorithmia.forwarder.fields_skipped|{tags},reason:string"
        )),
        Some(&40)
    );
    assert!(
        lines
            .iter()
            .any(|l| l == &format!("algorithmia.forwarder.consumer_lag:0|g|#{tags}")),
        "{lines:#?}"
    );
}

#[test]
fn service_checks_say_ok_when_kafka_and_the_agent_are_reachable() {
    let (kafka, topic) = kafka_with_topic(1);
    let (agent, url) = udp_agent();
    let config = config(
        &kafka,
        &topic,
        &unique("sc"),
        &url,
        "    kafka_options:\n      statistics.interval.ms: 200\n",
    );
    let (stop, handle) = start(config, fast_reports());
    let ok = |name: &str| format!("_sc|{name}|0|#topic:{topic}");
    let lines = watch(&agent, |lines| {
        [
            "algorithmia.kafka.can_connect",
            "algorithmia.forwarder.can_send",
        ]
        .iter()
        .all(|check| lines.iter().any(|l| l.starts_with(&ok(check))))
    });
    stop.store(true, Ordering::Relaxed);
    handle.join().unwrap();
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with(&ok("algorithmia.kafka.can_connect"))),
        "{lines:#?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with(&ok("algorithmia.forwarder.can_send"))),
        "{lines:#?}"
    );
}

#[test]
fn can_connect_is_critical_with_a_reason_when_no_broker_answers() {
    let (agent, url) = udp_agent();
    // Nothing listens on port 1.
    let yaml = format!(
        "init_config:\n  dogstatsd_url: {url}\ninstances:\n  - kafka_broker: \"127.0.0.1:1\"\n    kafka_topic: t\n    kafka_options:\n      statistics.interval.ms: 200\n      reconnect.backoff.ms: 50\n"
    );
    let config = Config::from_yaml(&yaml, "test.yaml", &|_| None).unwrap();
    let (stop, handle) = start(config, fast_reports());
    let lines = watch(&agent, |lines| {
        lines
            .iter()
            .any(|l| l.starts_with("_sc|algorithmia.kafka.can_connect|2|"))
    });
    stop.store(true, Ordering::Relaxed);
    handle.join().unwrap();
    let critical = lines
        .iter()
        .find(|l| l.starts_with("_sc|algorithmia.kafka.can_connect|2|"))
        .unwrap_or_else(|| panic!("no CRITICAL can_connect in {lines:#?}"));
    assert!(
        critical.contains("|m:") && critical.contains("127.0.0.1:1"),
        "{critical}"
    );
    assert!(!critical.contains('\n'));
    // The reason is said once: not `X (…)): Message consumption error: X (…)`.
    let message = critical.split("|m:").nth(1).unwrap_or_default();
    for code in [
        "AllBrokersDown",
        "BrokerTransportFailure",
        "consumption error",
    ] {
        assert!(message.matches(code).count() <= 1, "{message}");
    }
}
