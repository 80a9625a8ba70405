//! `discover`: the newest messages of a topic, read without joining or committing for any group,
//! judged by the forwarder's own mapping rules. Against librdkafka's mock cluster (the library,
//! and the built binary) and a standalone tansu broker (the binary, then a forwarder after it).

mod common;

use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use algorithmia_datadog::config::Config;
use algorithmia_datadog::discover::{read_tail, Discovery, ReadOptions, Report};
use serde_json::Value;

use common::process::*;
use common::tansu::*;
use common::*;

/// Known messages: three model versions, a number, a boolean, a numeric string, a text field, an
/// object, a field named like the call count, an excluded field, and four broken messages.
fn known_messages() -> Vec<Vec<u8>> {
    let mut messages = Vec::new();
    for (version, calls) in [("1.0", 40u32), ("2.0", 20)] {
        for i in 0..calls {
            messages.push(
                format!(
                    r#"{{"algorithm_name":"scorer","algorithm_version":"{version}","algorithm_owner":"team","request_id":"r{i}","score":{},"approved":{},"amount":"{}.5","segment":"retail","details":{{"a":1}},"level":3}}"#,
                    f64::from(i) / 100.0,
                    i % 2 == 0,
                    i % 5
                )
                .into_bytes(),
            );
        }
    }
    for i in 0..10 {
        messages.push(
            format!(
                r#"{{"algorithm_name":"ranker","algorithm_version":"0.1","algorithm_owner":"other","rank":{i},"calls":5}}"#
            )
            .into_bytes(),
        );
    }
    messages.push(b"{\"score\":0.3,\"algorithm_name\":\"sco".to_vec());
    messages.push(b"[1,2]".to_vec());
    messages.push(b"{\"algorithm_owner\":\"\xe9ric\"}".to_vec());
    messages.push(Vec::new());
    messages
}

/// Valid messages among [`known_messages`].
const KNOWN_VALID: u64 = 70;

/// The instance lines of the known messages' configuration.
const KNOWN_EXTRA: &str = "    exclude_metrics: [level]\n";

fn yaml(bootstrap: &str, topic: &str, group: &str, url: &str) -> String {
    format!(
        "init_config:\n  dogstatsd_url: {url}\ninstances:\n  - kafka_broker: \"{bootstrap}\"\n    kafka_topic: {topic}\n    consumer_group: {group}\n    start_offset: earliest\n{KNOWN_EXTRA}"
    )
}

/// `discover` with these arguments, run to its end (60 s at most).
fn discover(dir: &Path, args: &[&str]) -> (Output, Duration) {
    let started = Instant::now();
    let mut child = forwarder(dir)
        .arg("discover")
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start discover");
    while child.try_wait().expect("wait").is_none() {
        if started.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            panic!("discover ran for more than 60 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let output = child.wait_with_output().expect("its output");
    (output, started.elapsed())
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn field<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["fields"]
        .as_array()
        .expect("fields")
        .iter()
        .find(|f| f["name"] == name)
        .unwrap_or_else(|| panic!("no field {name} in {report:#}"))
}

/// The figures of the known messages, whichever way they were read.
fn assert_known_figures(report: &Value) {
    assert_eq!(report["messages"], 74, "{report:#}");
    assert_eq!(
        report["rejected"],
        serde_json::json!([
            {"reason": "empty", "count": 1},
            {"reason": "invalid_json", "count": 1},
            {"reason": "not_an_object", "count": 1},
            {"reason": "not_utf8", "count": 1},
        ])
    );
    assert_eq!(
        report["models"],
        serde_json::json!([
            {"algorithm_name": "ranker", "algorithm_version": "0.1", "algorithm_owner": "other", "messages": 10},
            {"algorithm_name": "scorer", "algorithm_version": "1.0", "algorithm_owner": "team", "messages": 40},
            {"algorithm_name": "scorer", "algorithm_version": "2.0", "algorithm_owner": "team", "messages": 20},
        ])
    );
    let score = field(report, "score");
    assert_eq!(score["types"], serde_json::json!({"number": 60}));
    assert_eq!(score["outcome"], "gauge");
    assert_eq!(score["metric"], "algorithmia.score");
    assert_eq!(score["forwarded"], 60);
    assert_eq!(
        (score["min"].as_f64(), score["max"].as_f64()),
        (Some(0.0), Some(0.39))
    );
    assert_eq!(score["distinct"], 40);
    assert_eq!(score["per_call"], true);
    assert_eq!(score["why"], "40 distinct values in 40 calls of scorer 1.0");

    let approved = field(report, "approved");
    assert_eq!(approved["types"], serde_json::json!({"boolean": 60}));
    assert_eq!(
        (approved["min"].as_f64(), approved["max"].as_f64()),
        (Some(0.0), Some(1.0))
    );
    assert_eq!(approved["per_call"], false);

    let amount = field(report, "amount");
    assert_eq!(amount["types"], serde_json::json!({"numeric string": 60}));
    assert_eq!(amount["outcome"], "gauge");
    assert_eq!(
        (amount["min"].as_f64(), amount["max"].as_f64()),
        (Some(0.5), Some(4.5))
    );
    assert_eq!(amount["distinct"], 5);
    assert_eq!(amount["per_call"], false);

    let rank = field(report, "rank");
    assert_eq!(rank["per_call"], true);
    assert_eq!(rank["models"], serde_json::json!(["ranker"]));

    // Skipped, each with the forwarder's own reason.
    for (name, reason, count) in [
        ("segment", "string", 60),
        ("details", "object", 60),
        ("level", "filtered", 60),
        ("calls", "reserved_name", 10),
    ] {
        let f = field(report, name);
        assert_eq!(f["outcome"], "skipped", "{f:#}");
        assert_eq!(f["skipped"], serde_json::json!({ reason: count }), "{f:#}");
        assert_eq!(f["forwarded"], 0, "{f:#}");
    }
    assert_eq!(field(report, "request_id")["outcome"], "operational");

    let suggestion = &report["suggestion"];
    assert_eq!(
        suggestion["distribution_metrics"],
        serde_json::json!(["rank", "score"])
    );
    assert_eq!(
        suggestion["tag_fields"],
        serde_json::json!([
            "algorithm_name",
            "algorithm_version",
            "algorithm_owner",
            "segment"
        ])
    );
    let drift: Vec<&str> = suggestion["drift_commands"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    assert_eq!(drift.len(), 2, "{drift:?}");
    assert!(
        drift[0].starts_with("algorithmia-datadog assets drift --algorithm ranker --metric rank"),
        "{drift:?}"
    );
    assert!(
        drift[1].starts_with(
            "algorithmia-datadog assets drift --algorithm scorer --metric amount --metric approved --metric score"
        ),
        "{drift:?}"
    );
}

/// Who is in `group` according to the broker: (state, members); `None` if the broker does not
/// know the group. (librdkafka's mock cluster does not answer ListGroups: tansu only.)
fn group_state(bootstrap: &str, group: &str) -> Option<(String, usize)> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .expect("a client to list groups");
    let list = consumer
        .fetch_group_list(Some(group), Duration::from_secs(10))
        .expect("the group list");
    list.groups()
        .iter()
        .find(|g| g.name() == group && !g.state().eq_ignore_ascii_case("dead"))
        .map(|g| (g.state().to_string(), g.members().len()))
}

/// A mock cluster of one broker that records every request it receives, by API key (the
/// embedded one does not expose that).
struct TrackedCluster {
    cluster: *mut rdkafka::bindings::rd_kafka_mock_cluster_t,
    bootstrap: String,
    _host: rdkafka::producer::BaseProducer,
}

impl TrackedCluster {
    fn start(topic: &str, partitions: i32) -> TrackedCluster {
        use rdkafka::bindings as rd;
        use rdkafka::producer::Producer;
        let host: rdkafka::producer::BaseProducer = rdkafka::ClientConfig::new()
            .set("log_level", "3")
            .create()
            .expect("a host client");
        // SAFETY: `host` outlives the cluster (dropped after it, in `Drop`); the strings are
        // copied before the next call.
        unsafe {
            let cluster = rd::rd_kafka_mock_cluster_new(host.client().native_ptr(), 1);
            assert!(!cluster.is_null(), "the mock cluster starts");
            let bootstrap = std::ffi::CStr::from_ptr(rd::rd_kafka_mock_cluster_bootstraps(cluster))
                .to_string_lossy()
                .into_owned();
            let name = std::ffi::CString::new(topic).unwrap();
            let err = rd::rd_kafka_mock_topic_create(cluster, name.as_ptr(), partitions, 1);
            assert_eq!(err, rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR);
            rd::rd_kafka_mock_start_request_tracking(cluster);
            TrackedCluster {
                cluster,
                bootstrap,
                _host: host,
            }
        }
    }

    /// The API keys of the requests received since the last call, and forgets them.
    fn take_api_keys(&self) -> Vec<i16> {
        use rdkafka::bindings as rd;
        let mut count = 0usize;
        // SAFETY: a live cluster; the array and its requests are ours to destroy.
        unsafe {
            let requests = rd::rd_kafka_mock_get_requests(self.cluster, &mut count);
            let keys = (0..count)
                .map(|i| rd::rd_kafka_mock_request_api_key(*requests.add(i)))
                .collect();
            rd::rd_kafka_mock_request_destroy_array(requests, count);
            rd::rd_kafka_mock_clear_requests(self.cluster);
            keys
        }
    }
}

impl Drop for TrackedCluster {
    fn drop(&mut self) {
        // SAFETY: created in `start`, destroyed once, before its host client.
        unsafe { rdkafka::bindings::rd_kafka_mock_cluster_destroy(self.cluster) };
    }
}

/// Kafka API keys a group member or a committer sends: OffsetCommit, JoinGroup, Heartbeat,
/// LeaveGroup, SyncGroup, ConsumerGroupHeartbeat.
const GROUP_APIS: [(i16, &str); 6] = [
    (8, "OffsetCommit"),
    (11, "JoinGroup"),
    (12, "Heartbeat"),
    (13, "LeaveGroup"),
    (14, "SyncGroup"),
    (68, "ConsumerGroupHeartbeat"),
];

/// Neither the forwarder's group nor discover's has a committed offset.
fn assert_groups_untouched(bootstrap: &str, group: &str, topic: &str, partitions: i32) {
    for g in [group.to_string(), format!("{group}-discover")] {
        assert_eq!(
            committed_on(bootstrap, &g, topic, partitions),
            vec![-1; partitions as usize],
            "group {g} committed offsets"
        );
    }
}

#[test]
fn the_library_reads_the_known_messages_and_judges_them_by_the_forwarders_rules() {
    let (kafka, topic) = kafka_with_topic(3);
    let produced = produce(kafka.bootstrap_servers(), &topic, known_messages(), &[]);
    let group = unique("forwarder");
    let config = Config::from_yaml(
        &yaml(
            kafka.bootstrap_servers(),
            &topic,
            &group,
            "udp://127.0.0.1:9",
        ),
        "test.yaml",
        &|_| None,
    )
    .expect("valid configuration");
    let instance = &config.instances[0];
    let mut discovery = Discovery::new(&config.metric_prefix, instance);
    let read = read_tail(instance, &ReadOptions::default(), &mut discovery).expect("read");
    assert_eq!(read.read, produced as u64);
    assert!(!read.timed_out);
    assert_eq!(read.partitions.len(), 3);
    assert!(read
        .partitions
        .iter()
        .all(|p| p.complete && p.start == p.low));
    let report: Report = discovery.report(Some(&read), Some("test.yaml"));
    let json = serde_json::to_value(&report).unwrap();
    assert_known_figures(&json);
    assert!(report
        .suggestion
        .yaml
        .contains("distribution_metrics: [rank, score]"));
    assert_groups_untouched(kafka.bootstrap_servers(), &group, &topic, 3);
}

#[test]
fn only_the_newest_messages_are_read_spread_over_the_partitions() {
    let (kafka, topic) = kafka_with_topic(3);
    for partition in 0..3 {
        for seq in 0..50 {
            kafka
                .produce_to(&topic, partition, &insights_message(seq))
                .expect("produced");
        }
    }
    let config = config(
        &kafka,
        &topic,
        &unique("forwarder"),
        "udp://127.0.0.1:9",
        "",
    );
    let instance = &config.instances[0];
    let mut discovery = Discovery::new(&config.metric_prefix, instance);
    let options = ReadOptions {
        messages: 60,
        ..ReadOptions::default()
    };
    let read = read_tail(instance, &options, &mut discovery).expect("read");
    assert_eq!(read.read, 60);
    assert_eq!(discovery.messages(), 60);
    for p in &read.partitions {
        assert_eq!(
            (p.low, p.start, p.high, p.end, p.read),
            (0, 30, 50, 50, 20),
            "{p:?}"
        );
        assert!(p.complete);
    }
}

#[test]
fn the_binary_prints_json_and_text_and_leaves_the_group_alone() {
    let topic = unique("insights");
    let kafka = TrackedCluster::start(&topic, 2);
    produce(&kafka.bootstrap, &topic, known_messages(), &[]);
    kafka.take_api_keys();
    let group = unique("forwarder");
    let dir = scratch_dir();
    let path = write(
        &dir,
        "algorithmia.yaml",
        &yaml(&kafka.bootstrap, &topic, &group, "udp://127.0.0.1:9"),
    );
    let path = path.to_str().unwrap();

    let (output, _) = discover(&dir, &["--config", path, "--format", "json"]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let json: Value = serde_json::from_slice(&output.stdout).expect("JSON on stdout");
    assert_known_figures(&json);
    assert_eq!(json["read"]["read"], 74);
    assert_eq!(json["read"]["group_id"], format!("{group}-discover"));

    let (output, _) = discover(&dir, &["--config", path]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let out = text(&output.stdout);
    for expected in [
        "Read the newest 74 messages of topic",
        "Rejected messages: 4 (empty 1, invalid_json 1, not_an_object 1, not_utf8 1)",
        "distribution_metrics: [rank, score]",
        "tag_fields: [algorithm_name, algorithm_version, algorithm_owner, segment]",
        "Operational fields (never metrics): algorithm_name, algorithm_owner, algorithm_version, request_id",
        "yes: 40 distinct values in 40 calls of scorer 1.0",
    ] {
        assert!(out.contains(expected), "no {expected:?} in:\n{out}");
    }
    let line = |name: &str| {
        out.lines()
            .find(|l| l.trim_start().starts_with(&format!("{name} ")))
            .unwrap_or_else(|| panic!("no line for {name} in:\n{out}"))
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    };
    assert!(
        line("score").starts_with("score number 60 60 gauge 0 0.39 40 yes"),
        "{}",
        line("score")
    );
    assert!(
        line("calls").contains("reserved_name 10"),
        "{}",
        line("calls")
    );
    assert!(line("level").contains("filtered 60"), "{}", line("level"));
    // Deterministic: the same messages, the same report (but for the time it took).
    let (again, _) = discover(&dir, &["--config", path]);
    let strip = |s: String| s.lines().skip(1).collect::<Vec<_>>().join("\n");
    assert_eq!(strip(text(&again.stdout)), strip(out));

    // What the broker received from the three runs: fetches, and nothing a member sends.
    let keys = kafka.take_api_keys();
    assert!(keys.contains(&1), "no Fetch request recorded: {keys:?}");
    for (key, name) in GROUP_APIS {
        assert!(!keys.contains(&key), "discover sent {name}: {keys:?}");
    }
    assert_groups_untouched(&kafka.bootstrap, &group, &topic, 2);
}

#[test]
fn an_unreachable_broker_exits_1_within_the_timeout() {
    let dir = scratch_dir();
    let port = free_port();
    let path = write(
        &dir,
        "algorithmia.yaml",
        &yaml(
            &format!("127.0.0.1:{port}"),
            "insights",
            "g",
            "udp://127.0.0.1:9",
        ),
    );
    let (output, took) = discover(
        &dir,
        &["--config", path.to_str().unwrap(), "--timeout", "3s"],
    );
    let err = text(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{err}");
    assert!(took < Duration::from_secs(10), "{took:?}");
    assert!(
        err.contains(&format!(
            "discover failed: no broker of 127.0.0.1:{port} answered within 3 s"
        )),
        "{err}"
    );
    assert!(output.stdout.is_empty());
}

#[test]
fn a_missing_topic_exits_1_naming_it() {
    let (kafka, _) = kafka_with_topic(1);
    let dir = scratch_dir();
    let path = write(
        &dir,
        "algorithmia.yaml",
        &yaml(
            kafka.bootstrap_servers(),
            "no-such-topic",
            "g",
            "udp://127.0.0.1:9",
        ),
    );
    let (output, _) = discover(
        &dir,
        &["--config", path.to_str().unwrap(), "--timeout", "10s"],
    );
    let err = text(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{err}");
    assert!(err.contains("topic no-such-topic does not exist"), "{err}");
}

#[test]
fn a_bad_configuration_or_instance_exits_2_naming_file_and_key() {
    let dir = scratch_dir();
    let path = write(
        &dir,
        "algorithmia.yaml",
        "instances:\n  - kafka_broker: k:9092\n    kafka_topic: t\n    distribution_metric: [x]\n",
    );
    let path = path.to_str().unwrap();
    let (output, _) = discover(&dir, &["--config", path]);
    let err = text(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{err}");
    assert!(
        err.contains(path) && err.contains("distribution_metric"),
        "{err}"
    );

    let good = write(
        &dir,
        "good.yaml",
        "instances:\n  - kafka_broker: k:9092\n    kafka_topic: t\n",
    );
    let good = good.to_str().unwrap();
    let (output, _) = discover(&dir, &["--config", good, "--instance", "1"]);
    let err = text(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{err}");
    assert!(err.contains(good) && err.contains("--instance 1"), "{err}");
}

#[test]
fn the_demo_messages_are_discovered() {
    let (kafka, topic) = kafka_with_topic(4);
    let messages = algorithmia_datadog::demo::demo_messages(1000, 42);
    produce(kafka.bootstrap_servers(), &topic, messages, &[]);
    let dir = scratch_dir();
    let path = write(
        &dir,
        "algorithmia.yaml",
        &format!(
            "instances:\n  - kafka_broker: \"{}\"\n    kafka_topic: {topic}\n    consumer_group: algorithmia-datadog\n",
            kafka.bootstrap_servers()
        ),
    );
    let (output, _) = discover(&dir, &["--config", path.to_str().unwrap()]);
    let out = text(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    println!("{out}");
    for expected in [
        "Read the newest 1000 messages of topic",
        "Rejected messages: 3 (invalid_json 1, not_an_object 1, not_utf8 1)",
        "credit_card_approval",
        "fraud_detection",
        "customer_churn",
        "--algorithm credit_card_approval --metric approved --metric duration_milliseconds --metric risk_score",
    ] {
        assert!(out.contains(expected), "no {expected:?} in:\n{out}");
    }
    let suggested = out
        .lines()
        .find(|l| l.trim_start().starts_with("distribution_metrics:"))
        .unwrap_or_default();
    for per_call in [
        "duration_milliseconds",
        "risk_score",
        "churn_probability",
        "transaction_amount",
    ] {
        assert!(suggested.contains(per_call), "{suggested}");
    }
    assert!(
        !suggested.contains("approved") && !suggested.contains("flagged"),
        "{suggested}"
    );
}

#[test]
fn against_a_standalone_broker_discover_leaves_the_forwarders_group_to_read_everything() {
    let broker = Tansu::start();
    let topic = unique("insights");
    broker.create_topic(&topic, 2);
    let bootstrap = broker.bootstrap();
    produce(&bootstrap, &topic, known_messages(), &[]);
    let (agent, url) = udp_agent();
    let group = unique("forwarder");
    let dir = scratch_dir();
    let path = write(
        &dir,
        "algorithmia.yaml",
        &yaml(&bootstrap, &topic, &group, &url),
    );

    let (output, _) = discover(
        &dir,
        &["--config", path.to_str().unwrap(), "--format", "json"],
    );
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let json: Value = serde_json::from_slice(&output.stdout).expect("JSON on stdout");
    assert_known_figures(&json);
    assert_groups_untouched(&bootstrap, &group, &topic, 2);
    for g in [group.clone(), format!("{group}-discover")] {
        if let Some((state, members)) = group_state(&bootstrap, &g) {
            assert_eq!(members, 0, "group {g} has members (state {state})");
        }
    }

    // The forwarder's group starts from the beginning: every valid message is forwarded.
    let forwarder = run_forwarder(&dir, &path);
    let lines = collect_until(&agent, Duration::from_secs(60), |l| {
        count_sum(l, "algorithmia.calls") >= KNOWN_VALID
    });
    // The same check sees a member that did join: the forwarder.
    let joined = group_state(&bootstrap, &group);
    let (code, _, log) = forwarder.stop();
    assert!(
        matches!(&joined, Some((_, members)) if *members == 1),
        "the forwarder's group while it runs: {joined:?}"
    );
    assert_eq!(code, Some(0), "{log:#?}");
    assert_eq!(
        count_sum(&lines, "algorithmia.calls"),
        KNOWN_VALID,
        "{log:#?}"
    );
}
