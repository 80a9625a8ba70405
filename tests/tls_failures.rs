//! A broker behind TLS that the forwarder cannot trust, as users meet it: the built binary
//! against a tansu broker behind stunnel, its certificate from a test authority (`common::tls`).
//!
//! Each failure must be named for what it is, reported to the Agent at once, and retried at a
//! pace that a broker's TLS endpoint (and its logs) can bear for as long as it lasts: retrying
//! is right, because certificates and trust stores get fixed without restarting the forwarder.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::process::*;
use common::tansu::*;
use common::tls::*;
use common::*;

/// A broker reachable only through TLS with a certificate for `subject_alt_names`, and a relay
/// in front that counts connection attempts.
struct TlsKafka {
    _broker: Tansu,
    _stunnel: Stunnel,
    relay: CountingRelay,
    certificates: Certificates,
    dir: PathBuf,
}

impl TlsKafka {
    fn start(subject_alt_names: &str) -> TlsKafka {
        let dir = scratch_dir();
        let certificates = Certificates::with_names(&dir, "kafka", subject_alt_names);
        let tls_port = free_port();
        let broker = Tansu::builder().advertised_port(tls_port).start();
        let stunnel = Stunnel::start(&dir, &certificates, tls_port, broker.port());
        let relay = CountingRelay::start(tls_port);
        TlsKafka {
            _broker: broker,
            _stunnel: stunnel,
            relay,
            certificates,
            dir,
        }
    }

    /// A configuration reaching the broker through the relay as `host`, trusting `ca`.
    fn config(&self, agent_url: &str, host: &str, ca: &Path) -> PathBuf {
        write(
            &self.dir,
            &unique("tls.yaml"),
            &format!(
                "init_config:\n  dogstatsd_url: {agent_url}\ninstances:\n  - kafka_broker: \"{host}:{}\"\n    kafka_topic: insights\n    security_protocol: SSL\n    ssl_ca_location: {}\n",
                self.relay.port(),
                ca.display()
            ),
        )
    }
}

/// What the forwarder did in `seconds`: its log, the `can_connect` checks with the time each
/// arrived (from the start), and the relay's connection count at 5 s and at the end.
struct Refused {
    log: Vec<String>,
    checks: Vec<(Duration, String)>,
    first_error_after: Option<Duration>,
    attempts_first_5s: usize,
    attempts_total: usize,
}

fn run_refused(kafka: &TlsKafka, host: &str, ca: &Path, seconds: u64) -> Refused {
    let (agent, url) = udp_agent();
    let config = kafka.config(&url, host, ca);
    let before = kafka.relay.accepted();
    let watched = run_forwarder(&kafka.dir, &config);
    let started = Instant::now();
    let mut checks = Vec::new();
    let mut first_error_after = None;
    let mut attempts_first_5s = None;
    while started.elapsed() < Duration::from_secs(seconds) {
        if let Some(d) = agent.recv_datagram(Duration::from_millis(100)) {
            let text = String::from_utf8(d).expect("datagrams are UTF-8");
            for line in text.lines() {
                if line.starts_with("_sc|algorithmia.kafka.can_connect|") {
                    checks.push((started.elapsed(), line.to_string()));
                }
            }
        }
        if first_error_after.is_none() && watched.lines().iter().any(|l| l.contains(" ERROR ")) {
            first_error_after = Some(started.elapsed());
        }
        if attempts_first_5s.is_none() && started.elapsed() >= Duration::from_secs(5) {
            attempts_first_5s = Some(kafka.relay.accepted() - before);
        }
    }
    let attempts_total = kafka.relay.accepted() - before;
    let (code, _, log) = watched.stop();
    assert_eq!(code, Some(0), "it keeps retrying until stopped: {log:#?}");
    Refused {
        log,
        checks,
        first_error_after,
        attempts_first_5s: attempts_first_5s.unwrap_or(attempts_total),
        attempts_total,
    }
}

fn problems(log: &[String]) -> Vec<&String> {
    log.iter()
        .filter(|l| l.contains(" ERROR ") || l.contains(" WARN "))
        .collect()
}

#[test]
fn a_certificate_that_names_another_host_is_named_as_a_name_mismatch_not_an_unknown_authority() {
    // The authority is right; the certificate names 127.0.0.1 only, the client dials localhost.
    let kafka = TlsKafka::start("IP:127.0.0.1");
    let ca = kafka.certificates.ca.clone();
    let refused = run_refused(&kafka, "localhost", &ca, 12);
    let problems = problems(&refused.log);
    let naming: Vec<_> = problems
        .iter()
        .filter(|l| l.contains("certificate does not name the broker's host"))
        .collect();
    assert_eq!(naming.len(), 1, "one line names the cause: {problems:#?}");
    assert!(
        naming[0].contains("kafka_broker") && naming[0].contains("subjectAltName"),
        "it points at the settings to check: {}",
        naming[0]
    );
    assert!(
        !problems
            .iter()
            .any(|l| l.contains("certificate not trusted")),
        "the authority is not blamed: {problems:#?}"
    );
    assert!(
        refused.checks.iter().any(
            |(_, c)| c.starts_with("_sc|algorithmia.kafka.can_connect|2|")
                && c.contains("does not name the broker's host")
        ),
        "can_connect CRITICAL naming the cause: {:#?}",
        refused.checks
    );
}

#[test]
fn an_untrusted_certificate_is_retried_about_once_a_second_and_reported_at_once() {
    let kafka = TlsKafka::start("IP:127.0.0.1,DNS:localhost");
    let other = Certificates::new(&kafka.dir.join("other"), "other");
    let refused = run_refused(&kafka, "127.0.0.1", &other.ca, 20);
    eprintln!(
        "TLS attempts: {} in the first 5 s, {} in the 15 s after; first ERROR after {:?}, first can_connect after {:?}",
        refused.attempts_first_5s,
        refused.attempts_total - refused.attempts_first_5s,
        refused.first_error_after,
        refused.checks.first().map(|(t, _)| *t),
    );
    assert!(
        problems(&refused.log)
            .iter()
            .any(|l| l.contains("certificate not trusted (check ssl_ca_location)")),
        "{:#?}",
        refused.log
    );
    // After the first few, about one handshake a second (librdkafka's jitter allows a little
    // more); before, it was 8 to 20 a second.
    let later = refused.attempts_total - refused.attempts_first_5s;
    assert!(
        later <= 20,
        "{later} TLS handshakes in 15 s of a permanent failure"
    );
    assert!(later >= 3, "it keeps retrying: {later} attempts in 15 s");
    // The service check goes out when the status changes, not at the next 15-second report.
    let first_error = refused.first_error_after.expect("an ERROR line");
    let (first_check, line) = refused
        .checks
        .first()
        .unwrap_or_else(|| panic!("no can_connect check: {:#?}", refused.log));
    assert!(
        line.starts_with("_sc|algorithmia.kafka.can_connect|2|"),
        "{line}"
    );
    assert!(
        *first_check <= first_error + Duration::from_secs(3),
        "can_connect CRITICAL {first_check:?} after the start, the error {first_error:?}"
    );
}
