//! SASL/SCRAM over TLS, the way Algorithmia's Kafka is reached in production, against a broker
//! that enforces it: tansu with `--authentication` and SCRAM users in its SQLite storage, behind
//! stunnel terminating TLS with a certificate from a test authority (see `common::tls`).
//!
//! The forwarder runs as its own process with the same settings a user writes in
//! `conf.d/algorithmia.yaml`, with CA verification (and host name verification) on.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::process::*;
use common::tansu::*;
use common::tls::*;
use common::*;

const USER_512: &str = "insights512";
const USER_256: &str = "insights256";
/// Long and unusual, so that finding it anywhere means it leaked.
const PASSWORD: &str = "Sup3r-Secret_pa55word+for/scram";

/// A broker requiring SCRAM, reachable only through TLS, with one topic of messages.
struct SecureKafka {
    _broker: Tansu,
    _stunnel: Stunnel,
    certificates: Certificates,
    bootstrap: String,
    topic: String,
    dir: PathBuf,
}

impl SecureKafka {
    fn start(messages: u64) -> SecureKafka {
        let dir = scratch_dir();
        let certificates = Certificates::new(&dir, "kafka");
        let tls_port = free_port();
        let topic = unique("insights");
        let broker = Tansu::builder()
            .advertised_port(tls_port)
            .topic(&topic, 2)
            .users(vec![
                User {
                    name: USER_512.into(),
                    password: PASSWORD.into(),
                    mechanism: "scram512",
                },
                User {
                    name: USER_256.into(),
                    password: PASSWORD.into(),
                    mechanism: "scram256",
                },
            ])
            .start();
        let stunnel = Stunnel::start(&dir, &certificates, tls_port, broker.port());
        let bootstrap = format!("127.0.0.1:{tls_port}");
        let kafka = SecureKafka {
            _broker: broker,
            _stunnel: stunnel,
            certificates,
            bootstrap,
            topic,
            dir,
        };
        let produced = produce(
            &kafka.bootstrap,
            &kafka.topic,
            (0..messages).map(insights_message),
            &kafka.client_security("SCRAM-SHA-512", USER_512, PASSWORD),
        );
        assert_eq!(produced as u64, messages);
        kafka
    }

    fn client_security<'a>(
        &'a self,
        mechanism: &'a str,
        user: &'a str,
        password: &'a str,
    ) -> Vec<(&'a str, &'a str)> {
        vec![
            ("security.protocol", "SASL_SSL"),
            ("sasl.mechanism", mechanism),
            ("sasl.username", user),
            ("sasl.password", password),
            ("ssl.ca.location", self.certificates.ca.to_str().unwrap()),
        ]
    }

    /// The forwarder's configuration file for this broker.
    fn config(&self, url: &str, mechanism: &str, user: &str, password: &str, ca: &Path) -> PathBuf {
        write(
            &self.dir,
            &format!("{}.yaml", unique("algorithmia")),
            &format!(
                "init_config:\n  dogstatsd_url: {url}\ninstances:\n  - kafka_broker: \"{}\"\n    kafka_topic: {}\n    consumer_group: {}\n    start_offset: earliest\n    security_protocol: SASL_SSL\n    sasl_mechanism: {mechanism}\n    sasl_username: {user}\n    sasl_password: \"{password}\"\n    ssl_ca_location: {}\n    distribution_metrics: [seq]\n",
                self.bootstrap,
                self.topic,
                unique("group"),
                ca.display()
            ),
        )
    }
}

fn forwards_everything_with(mechanism: &str, user: &str) {
    let kafka = SecureKafka::start(500);
    let (agent, url) = udp_agent();
    let config = kafka.config(&url, mechanism, user, PASSWORD, &kafka.certificates.ca);
    let watched = run_forwarder(&kafka.dir, &config);
    let lines = collect_until(&agent, Duration::from_secs(60), |l| {
        sorted_seq_values(l).len() >= 500
    });
    let (code, stdout, log) = watched.stop();
    assert_eq!(
        sorted_seq_values(&lines),
        (0..500).collect::<Vec<_>>(),
        "log:\n{}",
        log.join("\n")
    );
    assert_eq!(code, Some(0));
    assert_no_password(&stdout, &log, &lines);
}

fn assert_no_password(stdout: &[String], log: &[String], datagrams: &[String]) {
    for line in stdout.iter().chain(log).chain(datagrams) {
        assert!(!line.contains(PASSWORD), "the password leaked: {line}");
    }
}

#[test]
fn scram_sha_512_over_tls_forwards_every_message() {
    forwards_everything_with("SCRAM-SHA-512", USER_512);
}

#[test]
fn scram_sha_256_over_tls_forwards_every_message() {
    forwards_everything_with("SCRAM-SHA-256", USER_256);
}

/// Runs the forwarder with a setting that cannot work and returns, after 30 s: its log, the
/// `can_connect` service checks it sent, and what else it sent.
fn refused(
    kafka: &SecureKafka,
    password: &str,
    ca: &Path,
) -> (Vec<String>, Vec<String>, Vec<String>) {
    let (agent, url) = udp_agent();
    let config = kafka.config(&url, "SCRAM-SHA-512", USER_512, password, ca);
    let watched = run_forwarder(&kafka.dir, &config);
    let started = Instant::now();
    let mut received = Vec::new();
    while started.elapsed() < Duration::from_secs(30) {
        if let Some(d) = agent.recv_datagram(Duration::from_millis(200)) {
            received.extend(String::from_utf8(d).unwrap().lines().map(str::to_string));
        }
    }
    let cpu = watched.cpu_time();
    let (code, stdout, log) = watched.stop();
    assert_eq!(code, Some(0), "it keeps retrying until stopped: {log:#?}");
    // Waiting to be let in costs next to nothing (credentials get rotated: it must not give up).
    assert!(
        cpu < Duration::from_secs(3),
        "used {cpu:?} of CPU in 30 s while refused"
    );
    assert_no_password(&stdout, &log, &received);
    let checks = received
        .iter()
        .filter(|l| l.starts_with("_sc|algorithmia.kafka.can_connect|"))
        .cloned()
        .collect();
    (log, checks, received)
}

fn errors(log: &[String]) -> Vec<&String> {
    log.iter()
        .filter(|l| l.contains(" ERROR ") || l.contains(" WARN "))
        .collect()
}

/// The forwarder refused for `cause`: one log line names it, it then retries quietly, and
/// `can_connect` turns CRITICAL with the cause within 30 s.
fn assert_refused_naming(cause: &str, kafka: &SecureKafka, password: &str, ca: &Path) {
    let (log, checks, _) = refused(kafka, password, ca);
    let problems = errors(&log);
    let naming = problems.iter().filter(|l| l.contains(cause)).count();
    assert_eq!(naming, 1, "one line names the cause: {log:#?}");
    assert!(problems.len() <= 3, "retrying quietly: {problems:#?}");
    assert!(
        checks
            .iter()
            .any(|c| c.starts_with("_sc|algorithmia.kafka.can_connect|2|") && c.contains(cause)),
        "can_connect CRITICAL naming the cause within 30 s: {checks:#?}"
    );
}

#[test]
fn a_wrong_password_is_named_once_and_reported_critical_without_the_password() {
    let kafka = SecureKafka::start(10);
    let ca = kafka.certificates.ca.clone();
    assert_refused_naming("authentication failed", &kafka, "not-the-password", &ca);
}

#[test]
fn an_untrusted_broker_certificate_is_named_once_and_reported_critical() {
    let kafka = SecureKafka::start(10);
    let other = Certificates::new(&kafka.dir.join("other"), "other");
    assert_refused_naming("certificate not trusted", &kafka, PASSWORD, &other.ca);
}

#[test]
fn check_config_never_prints_the_password() {
    let dir = scratch_dir();
    let ca = Certificates::new(&dir, "config").ca;
    let config = write(
        &dir,
        "algorithmia.yaml",
        &format!(
            "instances:\n  - kafka_broker: \"127.0.0.1:1\"\n    kafka_topic: t\n    security_protocol: SASL_SSL\n    sasl_mechanism: SCRAM-SHA-512\n    sasl_username: u\n    sasl_password: \"{PASSWORD}\"\n    ssl_ca_location: {}\n",
            ca.display()
        ),
    );
    let output = forwarder(&dir)
        .args(["check-config", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );
    assert_eq!(output.status.code(), Some(0), "{stdout}{stderr}");
    assert!(stdout.contains("username: u"), "{stdout}");
    assert!(stdout.contains("password: '***'"), "{stdout}");
    assert!(!stdout.contains(PASSWORD) && !stderr.contains(PASSWORD));
}
