//! The health probes an orchestrator uses (`/livez`, `/readyz` on `init_config.health_address`),
//! asked over real HTTP of the built binary running against a tansu broker process.
//!
//! What they must get right: an outage of the broker is waited out, not "cured" by restarts, so
//! it fails neither probe; a consume loop that stopped turning fails liveness, so that it is
//! restarted; readiness says the consumer joined its group (a rollout moves on), or waits for a
//! broker it never reached (an outage holds nothing back).

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::process::*;
use common::tansu::*;
use common::*;

/// `GET path` on `port`: the status code and the body.
fn get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(stream, "GET {path} HTTP/1.1\r\nHost: probe\r\n\r\n").ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).ok()?;
    let status = answer.split_whitespace().nth(1)?.parse().ok()?;
    let body = answer.split_once("\r\n\r\n")?.1.to_string();
    Some((status, body))
}

/// Asks `path` until it answers `status`, for up to `limit`; returns the body.
fn wait_for(port: u16, path: &str, status: u16, limit: Duration) -> String {
    let started = Instant::now();
    let mut last = None;
    while started.elapsed() < limit {
        last = get(port, path);
        if let Some((code, body)) = &last {
            if *code == status {
                return body.clone();
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("{path} did not answer {status} within {limit:?}; last answer: {last:?}");
}

fn config(dir: &Path, bootstrap: &str, topic: &str, port: u16, extra_init: &str) -> PathBuf {
    let (_agent, url) = udp_agent();
    write(
        dir,
        &unique("probes.yaml"),
        &format!(
            "init_config:\n  dogstatsd_url: {url}\n  health_address: 127.0.0.1:{port}\n{extra_init}instances:\n  - kafka_broker: \"{bootstrap}\"\n    kafka_topic: {topic}\n    consumer_group: {}\n    start_offset: earliest\n    aggregation_interval: 0\n",
            unique("probes")
        ),
    )
}

#[test]
fn a_broker_outage_fails_neither_probe() {
    let topic = unique("insights");
    let mut broker = Tansu::builder().topic(&topic, 2).start();
    let dir = scratch_dir();
    let port = free_port();
    let watched = run_forwarder(&dir, &config(&dir, &broker.bootstrap(), &topic, port, ""));
    let ready = wait_for(port, "/readyz", 200, Duration::from_secs(40));
    assert!(ready.contains("in the consumer group"), "{ready}");

    // Frozen (SIGSTOP), then gone: every probe still passes, for longer than Kubernetes'
    // default failure threshold (3 probes 10 s apart would be 30 s; 15 s of asking every
    // half second is 30 probes).
    for fault in ["frozen", "killed"] {
        match fault {
            "frozen" => broker.freeze(),
            _ => {
                broker.thaw();
                broker.kill();
            }
        }
        let started = Instant::now();
        let mut asked = 0;
        while started.elapsed() < Duration::from_secs(15) {
            for path in ["/livez", "/readyz"] {
                let answer = get(port, path);
                assert!(
                    matches!(&answer, Some((200, _))),
                    "{path} with the broker {fault}: {answer:?}; log: {:#?}",
                    watched.lines()
                );
                asked += 1;
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        eprintln!("PROBES broker {fault}: {asked} probes in 15 s, all 200");
    }
    let (code, _, log) = watched.stop();
    assert_eq!(code, Some(0), "{log:#?}");
}

#[test]
fn a_broker_never_reached_is_waited_for_alive_and_ready() {
    let dir = scratch_dir();
    let port = free_port();
    // Nothing listens there.
    let nowhere = format!("127.0.0.1:{}", free_port());
    let watched = run_forwarder(&dir, &config(&dir, &nowhere, "insights", port, ""));
    let ready = wait_for(port, "/readyz", 200, Duration::from_secs(20));
    assert!(
        ready.contains("waiting for a broker never reached"),
        "{ready}"
    );
    for _ in 0..10 {
        let live = get(port, "/livez");
        assert!(matches!(&live, Some((200, _))), "{live:?}");
        std::thread::sleep(Duration::from_millis(300));
    }
    let (code, _, log) = watched.stop();
    assert_eq!(code, Some(0), "{log:#?}");
}

#[test]
fn a_stuck_consume_loop_fails_liveness() {
    // A dry run writes to standard output; a reader that stops reading (but keeps the pipe
    // open) blocks the loop in `write` once the pipe's 64 KiB are full: the loop is stuck for
    // real, while the probe thread still answers.
    let topic = unique("insights");
    let broker = Tansu::builder().topic(&topic, 1).start();
    let produced = produce(
        &broker.bootstrap(),
        &topic,
        (0..3_000).map(insights_message),
        &[],
    );
    assert_eq!(produced, 3_000);
    let dir = scratch_dir();
    let port = free_port();
    let config = config(
        &dir,
        &broker.bootstrap(),
        &topic,
        port,
        "  health_stall_seconds: 2\n",
    );
    let mut child: Child = forwarder(&dir)
        .args(["run", "--dry-run", "--config"])
        .arg(&config)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("the forwarder starts");
    let _unread = child.stdout.take();
    let started = Instant::now();
    let stuck = wait_for(port, "/livez", 503, Duration::from_secs(40));
    eprintln!(
        "PROBES stuck loop: /livez 503 after {:?}: {stuck}",
        started.elapsed()
    );
    assert!(
        stuck.contains("has not turned") && stuck.contains("stuck"),
        "{stuck}"
    );
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn a_bad_health_address_is_a_configuration_error() {
    let dir = scratch_dir();
    let path = write(
        &dir,
        "bad.yaml",
        "init_config:\n  health_address: \"8080\"\ninstances:\n  - kafka_broker: k:9092\n    kafka_topic: t\n",
    );
    let output = forwarder(&dir)
        .args(["check-config", "--config"])
        .arg(&path)
        .output()
        .expect("runs");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("bad.yaml") && stderr.contains("init_config.health_address"),
        "{stderr}"
    );
}
