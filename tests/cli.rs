//! The binary as users run it: exit codes, messages, signals. The broker is the mock cluster
//! hosted by this test process and reached over loopback TCP by the forwarder process.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::process::*;
use common::*;

fn text(output: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// A scratch directory holding one configuration file.
fn config_file(name: &str, yaml: &str) -> (PathBuf, PathBuf) {
    let dir = scratch_dir();
    let path = write(&dir, name, yaml);
    (dir, path)
}

/// Runs `<command> --config <path>` to its end: exit code, stdout, stderr.
fn run_with_config(dir: &Path, command: &str, path: &Path) -> (Option<i32>, String, String) {
    let output = forwarder(dir)
        .args([command, "--config"])
        .arg(path)
        .output()
        .unwrap();
    let (stdout, stderr) = text(&output);
    (output.status.code(), stdout, stderr)
}

#[test]
fn a_bad_configuration_exits_2_naming_the_file_and_the_key() {
    let (dir, path) = config_file(
        "bad.yaml",
        "instances:\n  - kafka_broker: k:9092\n    kafka_topic: t\n    start_offset: middle\n",
    );
    let (code, _, stderr) = run_with_config(&dir, "check-config", &path);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("bad.yaml"), "{stderr}");
    assert!(stderr.contains("instances[0].start_offset"), "{stderr}");

    // The same for `run`, before anything connects.
    let (code, _, _) = run_with_config(&dir, "run", &path);
    assert_eq!(code, Some(2));
}

/// Runs `check-config` on `yaml`, which must be refused with exit code 2 and nothing on standard
/// output: the file's path and standard error.
fn refused_by_check_config(name: &str, yaml: &str) -> (String, String) {
    let (dir, path) = config_file(name, yaml);
    let (code, stdout, stderr) = run_with_config(&dir, "check-config", &path);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stdout.is_empty(), "{stdout}");
    (path.display().to_string(), stderr)
}

#[test]
fn check_config_reports_every_mistake_in_the_file_at_once() {
    let (file, stderr) = refused_by_check_config(
        "three.yaml",
        "instances:\n  - kafka_broker: k:9092\n    kafka_topic: t\n    agregation_interval: 5\n    commit_interval_ms: 5\n  - kafka_broker: k:9092\n    kafka_topic: \"\"\n",
    );
    let expected = [
        format!("configuration error: {file}: instances[0].agregation_interval: unknown field"),
        format!("{file}: instances[0].commit_interval_ms: must be between 100 and 60000"),
        format!("{file}: instances[1].kafka_topic: must not be empty"),
    ];
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), expected.len(), "{stderr}");
    for (line, expected) in lines.iter().zip(&expected) {
        assert!(
            line.starts_with(expected.as_str()),
            "{line:?} is not {expected:?}"
        );
    }
}

#[test]
fn a_misspelled_key_is_answered_with_did_you_mean() {
    let (_, stderr) = refused_by_check_config(
        "typo.yaml",
        "instances:\n  - kafka_broker: k:9092\n    kafka_topic: t\n    agregation_interval: 5\n",
    );
    assert!(
        stderr.contains("typo.yaml: instances[0].agregation_interval: unknown field `agregation_interval`, did you mean `aggregation_interval`?"),
        "{stderr}"
    );
    assert!(!stderr.contains("expected one of"), "{stderr}");
}

#[test]
fn a_far_off_key_lists_the_valid_keys() {
    let (_, stderr) = refused_by_check_config(
        "far.yaml",
        "instances:\n  - kafka_broker: k:9092\n    kafka_topic: t\n    colour: blue\n",
    );
    assert!(
        stderr.contains("far.yaml: instances[0].colour: unknown field `colour`, expected one of `kafka_broker`, `kafka_topic`,"),
        "{stderr}"
    );
    assert!(stderr.contains("`aggregation_interval`"), "{stderr}");
    assert!(!stderr.contains("did you mean"), "{stderr}");
}

#[test]
fn an_unknown_librdkafka_property_is_a_configuration_error() {
    let (dir, path) = config_file(
        "opts.yaml",
        "instances:\n  - kafka_broker: k:9092\n    kafka_topic: t\n    kafka_options:\n      no.such.property: 1\n",
    );
    let (code, _, stderr) = run_with_config(&dir, "check-config", &path);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("instances[0].kafka_options.no.such.property"),
        "{stderr}"
    );
}

#[test]
fn check_config_prints_the_effective_settings_without_secrets() {
    let dir = scratch_dir();
    let path = write(
        &dir,
        "sasl.yaml",
        "instances:\n  - kafka_broker: k:9093\n    kafka_topic: t\n    security_protocol: SASL_SSL\n    sasl_mechanism: SCRAM-SHA-512\n    sasl_username: algo\n    sasl_password: ${KAFKA_PASSWORD}\n",
    );
    let output = forwarder(&dir)
        .args(["check-config", "--config"])
        .arg(&path)
        .env("KAFKA_PASSWORD", "hunter2-very-secret")
        .env("DD_ENV", "prod")
        .output()
        .unwrap();
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert!(
        stdout.contains("sasl_ssl") || stdout.contains("SASL_SSL"),
        "{stdout}"
    );
    assert!(stdout.contains("env:prod"), "{stdout}");
    assert!(stdout.contains("***"), "{stdout}");
    assert!(!stdout.contains("hunter2") && !stderr.contains("hunter2"));
}

#[test]
fn without_a_file_the_python_scripts_variables_are_used() {
    let dir = scratch_dir(); // no conf.d here
    let output = forwarder(&dir)
        .arg("check-config")
        .env("KAFKA_BROKER", "old-broker:9092")
        .env("KAFKA_TOPIC", "insights")
        .env("DATADOG_API_KEY", "abcdef0123456789")
        .output()
        .unwrap();
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert!(stdout.contains("old-broker:9092"), "{stdout}");
    assert!(stderr.contains("DATADOG_API_KEY is ignored"), "{stderr}");
    assert!(!stderr.contains("abcdef0123456789") && !stdout.contains("abcdef0123456789"));

    let output = forwarder(&dir).arg("check-config").output().unwrap();
    let (_, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr.contains("KAFKA_BROKER"), "{stderr}");
}

#[test]
fn version_and_help_work() {
    let output = Command::new(BIN).arg("--version").output().unwrap();
    assert!(output.status.success());
    assert!(String::from_utf8_lossy(&output.stdout).contains(env!("CARGO_PKG_VERSION")));
    let output = Command::new(BIN).arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&output.stdout);
    for word in ["run", "check-config", "demo"] {
        assert!(help.contains(word), "{help}");
    }
}

#[test]
fn the_demo_forwards_every_message_to_the_configured_address() {
    let dir = scratch_dir();
    let (agent, url) = udp_agent();
    let reader = std::thread::spawn(move || drain(&agent, Duration::from_secs(3)));
    let output = forwarder(&dir)
        .args(["demo", "--messages", "2000"])
        .env("DD_DOGSTATSD_URL", &url)
        .output()
        .unwrap();
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert!(
        stdout.contains("2000 consumed of 2000 produced"),
        "{stdout}"
    );
    assert!(stdout.contains("rejected         6"), "{stdout}");
    let lines = reader.join().unwrap();
    let summary_number = |label: &str| -> u64 {
        stdout
            .lines()
            .find_map(|l| l.trim().strip_prefix(label))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("the summary reports {label}: {stdout}"))
    };
    let (gauges, counts) = (summary_number("gauges"), summary_number("call counts"));
    assert_eq!(
        lines.len() as u64,
        gauges + counts,
        "every reported point arrived"
    );
    assert_eq!(
        count_sum(&lines, "algorithmia.calls"),
        2000 - 6,
        "every accepted call counted"
    );
    assert!(summary_number("aggregated") > 0, "{stdout}");
    assert!(lines
        .iter()
        .any(|l| l.starts_with("algorithmia.risk_score:")
            && l.contains("|g|#algorithm_name:credit_card_approval")));
}

#[test]
fn dry_run_writes_datagrams_to_stdout_and_commits_nothing() {
    let (kafka, topic) = kafka_with_topic(1);
    kafka
        .produce(&topic, [r#"{"risk_score":0.5,"algorithm_name":"m"}"#])
        .unwrap();
    let (agent, url) = udp_agent();
    let dir = scratch_dir();
    let path = write(
        &dir,
        "dry.yaml",
        &config_yaml(kafka.bootstrap_servers(), &topic, &url),
    );
    let mut child = forwarder(&dir)
        .args(["run", "--dry-run", "--config"])
        .arg(&path)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        use std::io::BufRead;
        std::io::BufReader::new(stdout).lines().next()
    });
    let line = wait_for(reader, Duration::from_secs(15));
    terminate(&mut child);
    assert_eq!(
        line.as_deref(),
        Some("algorithmia.risk_score:0.5|g|#algorithm_name:m")
    );
    assert!(
        drain(&agent, Duration::from_millis(200)).is_empty(),
        "a dry run sends nothing"
    );

    // The configured group still has the message: the dry run committed nothing for it.
    let mut child = start_forwarding(&dir, &path);
    let (lines, _) = collect_lines(&agent, 2, Duration::from_secs(20));
    terminate(&mut child);
    assert_eq!(
        lines,
        [
            "algorithmia.risk_score:0.5|g|#algorithm_name:m",
            "algorithmia.calls:1|c|#algorithm_name:m"
        ]
    );
}

fn wait_for<T: Send + 'static>(
    handle: std::thread::JoinHandle<Option<std::io::Result<T>>>,
    limit: Duration,
) -> Option<T> {
    let deadline = Instant::now() + limit;
    while !handle.is_finished() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    if handle.is_finished() {
        handle.join().ok().flatten().and_then(Result::ok)
    } else {
        None
    }
}

fn config_yaml(bootstrap: &str, topic: &str, url: &str) -> String {
    format!(
        "init_config:\n  dogstatsd_url: {url}\ninstances:\n  - kafka_broker: \"{bootstrap}\"\n    kafka_topic: {topic}\n    consumer_group: {}\n    start_offset: earliest\n{SEQ_AS_DISTRIBUTION}    kafka_options:\n      session.timeout.ms: 1500\n      heartbeat.interval.ms: 300\n",
        unique("cli")
    )
}

fn start_forwarding(dir: &Path, config: &Path) -> Child {
    forwarder(dir)
        .args(["run", "--config"])
        .arg(config)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

#[test]
fn sigterm_stops_cleanly_with_exit_0_and_commits_what_was_sent() {
    let (kafka, topic) = kafka_with_topic(2);
    let (agent, url) = udp_agent();
    let dir = scratch_dir();
    let path = write(
        &dir,
        "run.yaml",
        &config_yaml(kafka.bootstrap_servers(), &topic, &url),
    );
    kafka
        .produce(&topic, (0..100).map(|i| format!(r#"{{"seq":{i}}}"#)))
        .unwrap();

    let mut child = start_forwarding(&dir, &path);
    let lines = collect_until(&agent, Duration::from_secs(20), |l| {
        sorted_seq_values(l).len() >= 100
    });
    assert_eq!(sorted_seq_values(&lines), (0..100).collect::<Vec<_>>());
    let (took, code) = terminate(&mut child);
    assert_eq!(code, Some(0));
    assert!(took < Duration::from_secs(10), "{took:?}");

    // The next process in the group starts after what was forwarded.
    kafka.produce(&topic, [r#"{"seq":100}"#]).unwrap();
    let mut child = start_forwarding(&dir, &path);
    let lines = collect_until(&agent, Duration::from_secs(20), |l| {
        !sorted_seq_values(l).is_empty()
    });
    terminate(&mut child);
    assert_eq!(sorted_seq_values(&lines), [100], "{lines:?}");
}

#[test]
fn sigterm_exits_within_10_seconds_even_when_the_broker_is_gone() {
    let (kafka, topic) = kafka_with_topic(1);
    let (agent, url) = udp_agent();
    let dir = scratch_dir();
    let path = write(
        &dir,
        "gone.yaml",
        &config_yaml(kafka.bootstrap_servers(), &topic, &url),
    );
    kafka.produce(&topic, [r#"{"seq":1}"#]).unwrap();
    let mut child = start_forwarding(&dir, &path);
    let lines = collect_until(&agent, Duration::from_secs(20), |l| {
        !sorted_seq_values(l).is_empty()
    });
    assert_eq!(sorted_seq_values(&lines), [1]);

    kafka.set_broker_up(1, false).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let (took, code) = terminate(&mut child);
    assert_eq!(code, Some(0));
    assert!(took < Duration::from_secs(10), "{took:?}");
}

/// A one-partition topic holding `message`, a UDP socket for the Agent, and a configuration file
/// for both, with `extra_options` lines added to its `kafka_options`.
struct Setup {
    kafka: algorithmia_datadog::embedded::EmbeddedKafka,
    agent: std::net::UdpSocket,
    dir: PathBuf,
    config: PathBuf,
    group: String,
}

fn setup(message: &str, extra_options: &str) -> Setup {
    let (kafka, topic) = kafka_with_topic(1);
    kafka.produce(&topic, [message]).unwrap();
    let (agent, url) = udp_agent();
    let dir = scratch_dir();
    let yaml = config_yaml(kafka.bootstrap_servers(), &topic, &url) + extra_options;
    let group = yaml
        .lines()
        .find_map(|l| l.trim().strip_prefix("consumer_group: "))
        .unwrap()
        .to_string();
    let config = write(&dir, "forwarder.yaml", &yaml);
    Setup {
        kafka,
        agent,
        dir,
        config,
        group,
    }
}

/// ERROR and WARN lines among `lines`.
fn problems(lines: &[String]) -> Vec<String> {
    lines
        .iter()
        .filter(|l| l.contains(" ERROR ") || l.contains(" WARN "))
        .cloned()
        .collect()
}

/// The message of a log line, without its timestamp.
fn message(line: &str) -> &str {
    line.split_once("] ").map_or(line, |(_, m)| m)
}

#[test]
fn with_no_broker_listening_each_problem_is_logged_once() {
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (_agent, url) = udp_agent();
    let dir = scratch_dir();
    let path = write(
        &dir,
        "down.yaml",
        &format!(
            "init_config:\n  dogstatsd_url: {url}\ninstances:\n  - kafka_broker: \"127.0.0.1:{port}\"\n    kafka_topic: insights\n    kafka_options:\n      reconnect.backoff.ms: 50\n      reconnect.backoff.max.ms: 200\n"
        ),
    );
    let mut cmd = forwarder(&dir);
    cmd.args(["run", "--config"]).arg(&path);
    let watched = Watched::start(cmd);
    // Reconnection attempts every 200 ms or less: some twenty failures in five seconds.
    std::thread::sleep(Duration::from_secs(5));
    let (code, _, lines) = watched.stop();
    assert_eq!(code, Some(0));
    let problems = problems(&lines);
    assert!(
        !problems.is_empty() && problems.len() <= 2,
        "one line per distinct problem (connection refused, all brokers down): {problems:#?}"
    );
    let mut distinct: Vec<&str> = problems.iter().map(|l| message(l)).collect();
    distinct.dedup();
    assert_eq!(distinct.len(), problems.len(), "{problems:#?}");
    assert!(
        problems
            .iter()
            .any(|l| l.contains(&format!("127.0.0.1:{port}"))),
        "the failure names the broker: {problems:#?}"
    );
    assert!(
        lines.iter().all(|l| !l.contains("(0 ")),
        "no `(0 … suppressed)`: {lines:#?}"
    );
}

/// The outage's end ("reachable again", once) is tested against a broker process in
/// `tests/end_to_end.rs`: bringing a mock broker back up re-binds its port, which another socket
/// may have taken meanwhile, and librdkafka's mock then aborts the whole test process.
#[test]
fn a_broker_outage_is_logged_once_per_problem() {
    let s = setup(
        r#"{"seq":1}"#,
        "      reconnect.backoff.ms: 50\n      reconnect.backoff.max.ms: 200\n      statistics.interval.ms: 500\n",
    );
    let mut cmd = forwarder(&s.dir);
    cmd.args(["run", "--config"]).arg(&s.config);
    let watched = Watched::start(cmd);
    let (lines, _) = collect_all(&s.agent, 1, Duration::from_secs(20), |l| {
        l.starts_with("algorithmia.seq:1|")
    });
    assert_eq!(lines.len(), 1, "{:#?}", watched.lines());
    let before = watched.lines().len();

    s.kafka.set_broker_up(1, false).unwrap();
    std::thread::sleep(Duration::from_secs(4));
    let during = problems(&watched.lines()[before..]);
    let (code, _, all) = watched.stop();
    assert_eq!(code, Some(0));

    // Four seconds of reconnection attempts every 200 ms or less: the outage, and at most a
    // few other kinds of problem (a commit or the group fails), each said once.
    assert!(
        !during.is_empty() && during.len() <= 4,
        "one line per distinct problem: {during:#?}"
    );
    let mut distinct: Vec<&str> = during.iter().map(|l| message(l)).collect();
    distinct.sort_unstable();
    distinct.dedup();
    assert_eq!(distinct.len(), during.len(), "{during:#?}");
    assert!(all.iter().all(|l| !l.contains("(0 ")), "{all:#?}");
}

#[test]
fn the_demo_gives_up_on_a_missing_unix_socket_with_exit_1() {
    let dir = scratch_dir();
    let missing = unix_socket_path(); // its directory exists, the socket does not
    let started = Instant::now();
    let mut child = forwarder(&dir)
        .args(["demo", "--messages", "1000"])
        .env("DD_DOGSTATSD_URL", format!("unix://{}", missing.display()))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    while child.try_wait().unwrap().is_none() && started.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(50));
    }
    let took = started.elapsed();
    let _ = child.kill(); // still running after 30 s: the assertion below says so
    let output = child.wait_with_output().unwrap();
    let (stdout, stderr) = text(&output);
    assert!(
        took < Duration::from_secs(15),
        "the demo did not give up: {took:?}"
    );
    assert_eq!(output.status.code(), Some(1), "{stdout}\n{stderr}");
    let last = stderr.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("demo failed: ")
            && last.contains(&missing.display().to_string())
            && last.contains("refused every datagram")
            && last.contains("--print"),
        "{stderr}"
    );
    assert!(!stdout.contains("demo summary"), "{stdout}");
}

#[test]
fn the_demo_tags_its_points_and_counts_its_broken_messages_apart() {
    let dir = scratch_dir();
    let socket = unix_socket_path();
    let agent = std::os::unix::net::UnixDatagram::bind(&socket).unwrap();
    let reader = std::thread::spawn(move || {
        let mut lines = Vec::new();
        while let Some(d) = agent.recv_datagram(Duration::from_secs(3)) {
            lines.extend(String::from_utf8(d).unwrap().lines().map(String::from));
        }
        lines
    });
    let output = forwarder(&dir)
        .args(["demo", "--messages", "2000"])
        .env("DD_DOGSTATSD_URL", format!("unix://{}", socket.display()))
        .output()
        .unwrap();
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    let lines = reader.join().unwrap();
    assert!(lines.iter().any(|l| is_self_monitoring(l)), "{lines:?}");
    assert!(lines.iter().any(|l| !is_self_monitoring(l)), "{lines:?}");
    // Every point, the model metrics and the forwarder's own, carries the demo tag.
    for line in &lines {
        assert!(line.contains("demo:true"), "{line}");
    }
    let line = |label: &str| {
        stdout
            .lines()
            .find(|l| l.trim_start().starts_with(label))
            .unwrap_or_else(|| panic!("no `{label}` line in {stdout}"))
            .to_string()
    };
    assert!(line("gauges").contains("tagged demo:true"), "{stdout}");
    let rejected = line("rejected");
    assert!(
        rejected.contains("6 messages") && rejected.contains("6 broken messages on purpose"),
        "{rejected}"
    );
    assert!(!line("skipped fields").contains("rejected"), "{stdout}");
    // A Unix socket reports refused datagrams: no caveat needed.
    assert!(!stdout.contains("UDP cannot tell"), "{stdout}");
}

#[test]
fn sigint_during_the_demo_prints_the_summary_so_far_and_exits_0() {
    let dir = scratch_dir();
    let (agent, url) = udp_agent();
    let child = forwarder(&dir)
        .args(["demo", "--messages", "200000"])
        .env("DD_DOGSTATSD_URL", &url)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Forwarding has begun once datagrams arrive.
    assert!(agent.recv_datagram(Duration::from_secs(60)).is_some());
    let sent = Instant::now();
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let drain = std::thread::spawn(move || drain(&agent, Duration::from_secs(2)));
    let output = child.wait_with_output().unwrap();
    let took = sent.elapsed();
    drain.join().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{stdout}");
    assert!(took < Duration::from_secs(10), "{took:?}");
    assert!(stdout.contains("demo summary"), "{stdout}");
    let messages = stdout
        .lines()
        .find(|l| l.trim_start().starts_with("messages"))
        .unwrap_or_default();
    assert!(
        messages.contains("of 200000 produced (interrupted)"),
        "{stdout}"
    );
    // Over UDP nothing confirms delivery: the summary says so, and how to see the datagrams.
    assert!(
        stdout.contains("UDP cannot tell whether anything received")
            && stdout.contains("demo --print"),
        "{stdout}"
    );
}

#[test]
fn settings_that_are_ignored_are_named_in_a_warning() {
    let (dir, path) = config_file(
        "plain.yaml",
        "instances:\n  - kafka_broker: k:9092\n    kafka_topic: t\n",
    );
    let check = |vars: &[(&str, &str)]| {
        let output = forwarder(&dir)
            .args(["check-config", "--config"])
            .arg(&path)
            .envs(vars.iter().copied())
            .output()
            .unwrap();
        let (stdout, stderr) = text(&output);
        assert_eq!(output.status.code(), Some(0), "{stderr}");
        (
            stdout,
            problems(&stderr.lines().map(String::from).collect::<Vec<_>>()),
        )
    };

    // DD_DOGSTATSD_PORT alone: ignored (as Datadog's clients do), and said so.
    let (stdout, warnings) = check(&[("DD_DOGSTATSD_PORT", "9125")]);
    assert!(stdout.contains("udp://127.0.0.1:8125"), "{stdout}");
    assert_eq!(warnings.len(), 1, "{warnings:#?}");
    assert!(
        warnings[0].contains("WARN") && warnings[0].contains("DD_DOGSTATSD_PORT is ignored"),
        "{warnings:#?}"
    );
    // With DD_AGENT_HOST it is used, and nothing is said.
    let (stdout, warnings) = check(&[("DD_DOGSTATSD_PORT", "9125"), ("DD_AGENT_HOST", "agent")]);
    assert!(stdout.contains("udp://agent:9125"), "{stdout}");
    assert!(warnings.is_empty(), "{warnings:#?}");

    // The old script's variables beside a configuration file: ignored, and said so.
    let (_, warnings) = check(&[("KAFKA_BROKER", "old:9092"), ("KAFKA_TOPIC", "old")]);
    assert_eq!(warnings.len(), 1, "{warnings:#?}");
    assert!(
        warnings[0].contains("KAFKA_BROKER, KAFKA_TOPIC are ignored")
            && warnings[0].contains("plain.yaml"),
        "{warnings:#?}"
    );
    assert!(!warnings[0].contains("old:9092"), "{warnings:#?}");
}

#[test]
fn a_dry_runs_self_metrics_name_the_group_it_is_in() {
    let s = setup(r#"{"risk_score":0.5,"algorithm_name":"m"}"#, "");
    let mut cmd = forwarder(&s.dir);
    cmd.args(["run", "--dry-run", "--config"]).arg(&s.config);
    let watched = Watched::start(cmd);
    // The gauge first; the self-metrics follow when the forwarder stops.
    let (printed, code, lines, _) =
        watched.stop_after_line(|w| &w.stdout, "algorithmia.risk_score:0.5|");
    assert!(printed, "{lines:#?}");
    assert_eq!(code, Some(0));
    let consumed = lines
        .iter()
        .find(|l| l.starts_with("algorithmia.forwarder.messages_consumed:1|c|"))
        .unwrap_or_else(|| panic!("no self-metrics in {lines:#?}"));
    assert!(
        consumed.contains(&format!("consumer_group:{}-dry-run", s.group)),
        "{consumed}"
    );
}

// ---- standard output whose reader goes away, and the demo's independence ----------------------

/// Waits up to `limit` for `child` to exit; kills it and fails if it does not.
fn exits_within(child: &mut Child, limit: Duration) -> Option<i32> {
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status.code();
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            panic!("still running {limit:?} after its reader went away");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The log of a finished child whose standard error was piped.
fn log_of(child: &mut Child) -> String {
    use std::io::Read;
    let mut log = String::new();
    if let Some(mut stderr) = child.stderr.take() {
        let _ = stderr.read_to_string(&mut log);
    }
    log
}

#[test]
fn a_dry_run_whose_reader_goes_away_stops_quietly_with_exit_0() {
    let (kafka, topic) = kafka_with_topic(1);
    kafka
        .produce(&topic, (0..2_000).map(|i| insights_message(i as u64)))
        .unwrap();
    let (_agent, url) = udp_agent();
    let dir = scratch_dir();
    let path = write(
        &dir,
        "dry.yaml",
        &config_yaml(kafka.bootstrap_servers(), &topic, &url),
    );
    // `run --dry-run | head -3`.
    let mut child = forwarder(&dir)
        .args(["run", "--dry-run", "--config"])
        .arg(&path)
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        use std::io::BufRead;
        let lines: Vec<String> = std::io::BufReader::new(stdout)
            .lines()
            .take(3)
            .map_while(Result::ok)
            .collect();
        Some(Ok::<_, std::io::Error>(lines))
    });
    let lines = wait_for(reader, Duration::from_secs(20)).expect("three lines");
    assert_eq!(lines.len(), 3);
    let code = exits_within(&mut child, Duration::from_secs(15));
    let log = log_of(&mut child);
    assert_eq!(code, Some(0), "{log}");
    assert!(log.contains("standard output closed"), "{log}");
    assert!(!log.contains("refuses data"), "not an outage: {log}");
    assert!(!log.contains(" WARN ") && !log.contains(" ERROR "), "{log}");
}

#[test]
fn demo_print_into_a_closed_pipe_ends_quietly_with_exit_0() {
    let dir = scratch_dir();
    let (agent, url) = udp_agent();
    let drained = std::thread::spawn(move || drain(&agent, Duration::from_secs(3)));
    // `demo --print | head -1`.
    let mut child = forwarder(&dir)
        .args(["demo", "--print", "--messages", "2000"])
        .env("DD_DOGSTATSD_URL", &url)
        .env("RUST_BACKTRACE", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        use std::io::BufRead;
        std::io::BufReader::new(stdout).lines().next()
    });
    assert!(wait_for(reader, Duration::from_secs(20)).is_some());
    let code = exits_within(&mut child, Duration::from_secs(30));
    let log = log_of(&mut child);
    assert_eq!(code, Some(0), "{log}");
    assert!(!log.contains("panicked"), "{log}");
    // The demo still delivered to the Agent what it forwarded.
    assert!(!drained.join().unwrap().is_empty());
}

#[test]
fn the_demo_ignores_the_directory_s_configuration_and_its_unset_variables() {
    let dir = scratch_dir();
    std::fs::create_dir_all(dir.join("conf.d")).unwrap();
    let production = "instances:\n  - kafka_broker: \"kafka.example.com:9093\"\n    kafka_topic: insights\n    security_protocol: SASL_SSL\n    sasl_mechanism: SCRAM-SHA-512\n    sasl_username: algorithmia\n    sasl_password: ${KAFKA_PASSWORD}\n    distribution_metrics: [duration_milliseconds]\n";
    let path = write(&dir.join("conf.d"), "algorithmia.yaml", production);
    let (agent, url) = udp_agent();
    let drained = std::thread::spawn(move || drain(&agent, Duration::from_secs(3)));
    // In the directory, without --config: the file is not read.
    let output = forwarder(&dir)
        .args(["demo", "--messages", "500"])
        .env("DD_DOGSTATSD_URL", &url)
        .output()
        .unwrap();
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert!(stdout.contains("500 consumed of 500 produced"), "{stdout}");
    let lines = drained.join().unwrap();
    assert!(
        !lines.iter().any(|l| l.contains("|d")),
        "the directory's distribution_metrics were not used: {lines:?}"
    );

    // With --config: its mapping rules apply, its unset ${KAFKA_PASSWORD} does not matter.
    let (agent, url) = udp_agent();
    let drained = std::thread::spawn(move || drain(&agent, Duration::from_secs(3)));
    let output = forwarder(&dir)
        .args(["demo", "--messages", "500", "--config"])
        .arg(&path)
        .env("DD_DOGSTATSD_URL", &url)
        .output()
        .unwrap();
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert!(stdout.contains("500 consumed of 500 produced"), "{stdout}");
    let lines = drained.join().unwrap();
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("algorithmia.duration_milliseconds:") && l.contains("|d")),
        "the given file's distribution_metrics apply: {lines:?}"
    );
}

#[test]
fn a_dry_run_does_not_say_it_commits_when_it_stops() {
    let (kafka, topic) = kafka_with_topic(1);
    let (_agent, url) = udp_agent();
    let dir = scratch_dir();
    let path = write(
        &dir,
        "dry.yaml",
        &config_yaml(kafka.bootstrap_servers(), &topic, &url),
    );
    let mut cmd = forwarder(&dir);
    cmd.args(["run", "--dry-run", "--config"])
        .arg(&path)
        .env("RUST_LOG", "info");
    let watched = Watched::start(cmd);
    assert!(watched.wait_for_log("consuming", Duration::from_secs(15)));
    let (code, _, log) = watched.stop();
    assert_eq!(code, Some(0), "{log:#?}");
    let stopping = log
        .iter()
        .find(|l| l.contains("stopping:"))
        .unwrap_or_else(|| panic!("{log:#?}"));
    assert!(
        !stopping.contains("committing") && stopping.contains("commits nothing"),
        "{stopping}"
    );
}
