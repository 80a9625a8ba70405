//! End to end, where users run it: the built binary as its own process, a standalone tansu
//! broker process, and a real DogStatsD socket read by the test.
//!
//! Every fault test numbers its messages (`seq`, sent as a distribution so that every value
//! reaches the socket even when aggregated) and counts what was produced against what arrived:
//! a lost message fails the test, a message forwarded twice is counted and reported (delivery
//! is at least once). Each test prints one `E2E` line with its figures; run with
//! `cargo test --test end_to_end -- --nocapture` to read them.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::agent::*;
use common::process::*;
use common::tansu::*;
use common::*;

const OK: u8 = 0;
const CRITICAL: u8 = 2;

/// The instance lines every test uses: the topic from the beginning, `seq` as a distribution.
fn config_file(
    dir: &Path,
    bootstrap: &str,
    topic: &str,
    group: &str,
    url: &str,
    extra: &str,
) -> PathBuf {
    write(
        dir,
        "algorithmia.yaml",
        &format!(
            "init_config:\n  dogstatsd_url: {url}\ninstances:\n  - kafka_broker: \"{bootstrap}\"\n    kafka_topic: {topic}\n    consumer_group: {group}\n    start_offset: earliest\n    distribution_metrics: [seq]\n{extra}"
        ),
    )
}

/// A broker with one topic, the Agent's socket, and a forwarder configuration for both.
struct Scenario {
    broker: Tansu,
    topic: String,
    group: String,
    dir: PathBuf,
    agent: Agent,
    config: PathBuf,
}

impl Scenario {
    /// A topic of `partitions`; `extra` adds instance lines to the configuration.
    fn new(partitions: i32, agent: Agent, extra: &str) -> Scenario {
        let broker = Tansu::start();
        let topic = unique("insights");
        broker.create_topic(&topic, partitions);
        let (dir, group) = (scratch_dir(), unique("group"));
        let config = config_file(&dir, &broker.bootstrap(), &topic, &group, &agent.url, extra);
        Scenario {
            broker,
            topic,
            group,
            dir,
            agent,
            config,
        }
    }

    /// Another member of the group, sending to `agent`, with the same `extra` lines.
    fn another_member(&self, agent: &Agent, extra: &str) -> Watched {
        let dir = self.dir.join(unique("member"));
        std::fs::create_dir_all(&dir).unwrap();
        let bootstrap = self.broker.bootstrap();
        let config = config_file(
            &dir,
            &bootstrap,
            &self.topic,
            &self.group,
            &agent.url,
            extra,
        );
        run_forwarder(&dir, &config)
    }

    /// Produces messages `0..count` and waits until the broker has them all.
    fn preload(&self, count: u64) -> u64 {
        let payloads = (0..count).map(insights_message);
        produce(&self.broker.bootstrap(), &self.topic, payloads, &[]) as u64
    }

    /// Messages at `per_second`, from now until stopped.
    fn traffic(&self, per_second: u64) -> Traffic {
        Traffic::start(&self.broker.bootstrap(), &self.topic, per_second, &[])
    }

    /// A forwarder with this scenario's configuration.
    fn run(&self) -> Watched {
        run_forwarder(&self.dir, &self.config)
    }

    /// Waits until `forwarded` values arrived (60 s at most), else fails showing the log.
    fn expect_forwarded(&self, forwarded: usize, forwarder: &Watched) {
        assert!(
            self.agent
                .wait_until(Duration::from_secs(60), |a| a.seqs().len() >= forwarded),
            "forwarded {} of {forwarded} values; log:\n{}",
            self.agent.seqs().len(),
            forwarder.lines().join("\n")
        );
    }

    /// Waits until messages produced a second after the newest seen so far arrive: new messages
    /// flow. How long that took.
    fn expect_flowing_again(&self, rate: u64, forwarder: &Watched) -> Duration {
        let since = Instant::now();
        let newest = self.agent.seqs().into_iter().max().unwrap_or(0);
        assert!(
            self.agent.wait_until(Duration::from_secs(60), |a| a
                .seqs()
                .iter()
                .any(|s| *s > newest + rate)),
            "nothing new forwarded; log:\n{}",
            forwarder.lines().join("\n")
        );
        since.elapsed()
    }

    /// Waits until every message of `0..produced` arrived (2 minutes at most) and returns how
    /// many arrived twice; a lost one fails the test.
    fn expect_all(&self, test: &str, produced: u64) -> u64 {
        self.agent.wait_for_all(produced, Duration::from_secs(120));
        tally(test, produced, &self.agent.seqs())
    }
}

/// CPU used by `pid` over `span`, as a share of one core.
fn cpu_share(pid: u32, span: Duration) -> f64 {
    let before = cpu_time(pid);
    std::thread::sleep(span);
    (cpu_time(pid) - before).as_secs_f64() / span.as_secs_f64()
}

fn report(test: &str, figures: &str) {
    eprintln!("E2E {test}: {figures}");
}

fn problems(lines: &[String]) -> Vec<&String> {
    lines
        .iter()
        .filter(|l| l.contains(" ERROR ") || l.contains(" WARN "))
        .collect()
}

// ---- the tests -----------------------------------------------------------------------------------

#[test]
fn every_message_of_a_standalone_broker_is_forwarded_and_sigterm_exits_0() {
    let s = Scenario::new(4, Agent::udp(), "");
    let produced = s.preload(2_000);
    let forwarder = s.run();
    s.expect_forwarded(produced as usize, &forwarder);
    let (took, code, _, log) = forwarder.stop_timed();
    assert_eq!(code, Some(0), "{log:#?}");
    assert!(took < Duration::from_secs(10), "{took:?}");
    let duplicates = s.expect_all("standalone", produced);
    assert_eq!(s.agent.calls(), produced + duplicates);
    assert!(problems(&log).is_empty(), "{log:#?}");
    report(
        "standalone broker",
        &format!("produced {produced}, forwarded {produced}, duplicates {duplicates}"),
    );
}

#[test]
fn sigkill_mid_stream_loses_nothing_and_replays_little() {
    let rate = 2_000;
    let s = Scenario::new(4, Agent::udp(), "");
    let traffic = s.traffic(rate);
    let first = s.run();
    s.expect_forwarded(6_000, &first);
    let forwarded_before = s.agent.seqs().len();
    first.kill();

    let second = s.run();
    let recovered = s.expect_flowing_again(rate, &second);
    std::thread::sleep(Duration::from_secs(2));
    let produced = traffic.stop();
    let duplicates = s.expect_all("sigkill", produced);
    let (code, _, log) = second.stop();
    assert_eq!(code, Some(0));
    report(
        "SIGKILL mid-stream, restart",
        &format!(
            "produced {produced} at {rate}/s, forwarded {produced}, duplicates {duplicates} \
             ({:.2} s of traffic), {forwarded_before} forwarded before the kill, new messages \
             flowing {:.1} s after the kill",
            duplicates as f64 / rate as f64,
            recovered.as_secs_f64()
        ),
    );
    assert!(
        duplicates <= rate * 3 / 2,
        "a restart after SIGKILL forwarded {duplicates} messages twice, more than 1.5 s of traffic; log:\n{}",
        log.join("\n")
    );
}

#[test]
fn sigterm_under_full_load_exits_0_within_10_s_and_nothing_is_replayed() {
    let s = Scenario::new(4, Agent::udp(), "");
    let produced = s.preload(200_000);
    let first = s.run();
    s.expect_forwarded(50_000, &first);
    let (took, code, _, log) = first.stop_timed();
    let forwarded_first = s.agent.seqs().len();
    // What was committed at the stop: the next forwarder starts there.
    for line in log.iter().filter(|l| l.contains("committed offsets")) {
        eprintln!("first forwarder: {line}");
    }
    assert_eq!(code, Some(0), "{log:#?}");
    assert!(took < Duration::from_secs(10), "SIGTERM took {took:?}");

    let second = s.run();
    let duplicates = s.expect_all("sigterm", produced);
    let (code, _, _) = second.stop();
    assert_eq!(code, Some(0));
    report(
        "SIGTERM under full load",
        &format!(
            "produced {produced}, forwarded {produced}, duplicates {duplicates}, exit 0 {:.2} s \
             after SIGTERM with {forwarded_first} forwarded",
            took.as_secs_f64()
        ),
    );
    assert_eq!(duplicates, 0, "a clean stop must not replay anything");
}

#[test]
fn a_broker_absent_at_start_is_waited_for_idly_and_then_used() {
    let port = free_port();
    let bootstrap = format!("127.0.0.1:{port}");
    let topic = unique("insights");
    let (dir, group) = (scratch_dir(), unique("group"));
    let agent = Agent::udp();
    let config = config_file(&dir, &bootstrap, &topic, &group, &agent.url, "");
    let forwarder = run_forwarder(&dir, &config);
    std::thread::sleep(Duration::from_secs(2));
    let cpu = cpu_share(forwarder.pid(), Duration::from_secs(20));

    let broker = Tansu::builder().port(port).topic(&topic, 2).start();
    let appeared = Instant::now();
    let produced = produce(
        &broker.bootstrap(),
        &topic,
        (0..1_000).map(insights_message),
        &[],
    ) as u64;
    assert!(
        agent.wait_for_all(produced, Duration::from_secs(90)),
        "forwarded {} of {produced}; log:\n{}",
        distinct(&agent.seqs()),
        forwarder.lines().join("\n")
    );
    let recovered = appeared.elapsed();
    let (code, _, log) = forwarder.stop();
    assert_eq!(code, Some(0));
    let duplicates = tally("absent broker", produced, &agent.seqs());
    let waiting = problems(&log);
    let recoveries = log.iter().filter(|l| l.contains("reachable again")).count();
    report(
        "broker absent at start",
        &format!(
            "produced {produced}, forwarded {produced}, duplicates {duplicates}, all forwarded \
             {:.1} s after the broker appeared, CPU while waiting {:.1}% of a core, {} \
             ERROR/WARN lines, {recoveries} recovery line",
            recovered.as_secs_f64(),
            cpu * 100.0,
            waiting.len()
        ),
    );
    assert!(
        cpu < 0.10,
        "used {:.1}% of a core while waiting",
        cpu * 100.0
    );
    assert_eq!(waiting.len(), 1, "the wait is logged once: {waiting:#?}");
    assert_eq!(recoveries, 1, "{log:#?}");
}

#[test]
fn a_broker_frozen_for_30_s_is_reported_and_recovered_from_without_a_restart() {
    let rate = 500;
    let s = Scenario::new(2, Agent::udp(), "");
    let traffic = s.traffic(rate);
    let forwarder = s.run();
    s.expect_forwarded(1_000, &forwarder);

    s.broker.freeze();
    let frozen = Instant::now();
    std::thread::sleep(Duration::from_secs(5));
    let cpu = cpu_share(forwarder.pid(), Duration::from_secs(20));
    std::thread::sleep(Duration::from_secs(30).saturating_sub(frozen.elapsed()));
    s.broker.thaw();
    let thawed = Instant::now();
    let critical = s
        .agent
        .checks("algorithmia.kafka.can_connect")
        .into_iter()
        .find(|(at, status, _)| *at > frozen && *status == CRITICAL);
    let recovered = s.expect_flowing_again(rate, &forwarder);
    assert!(
        s.agent.wait_until(Duration::from_secs(30), |a| a
            .checks("algorithmia.kafka.can_connect")
            .iter()
            .any(|(at, status, _)| *at > thawed && *status == OK)),
        "can_connect never OK again after the broker came back: {:#?}",
        s.agent.checks("algorithmia.kafka.can_connect")
    );
    let produced = traffic.stop();
    let duplicates = s.expect_all("frozen broker", produced);
    let (code, _, log) = forwarder.stop();
    assert_eq!(code, Some(0));
    report(
        "broker frozen 30 s",
        &format!(
            "produced {produced} at {rate}/s, forwarded {produced}, duplicates {duplicates}, \
             new messages flowing {:.1} s after SIGCONT, CPU while frozen {:.1}% of a core, \
             can_connect CRITICAL {}",
            recovered.as_secs_f64(),
            cpu * 100.0,
            critical
                .as_ref()
                .map_or("never".to_string(), |(at, _, m)| format!(
                    "{:.1} s into the freeze ({m})",
                    at.duration_since(frozen).as_secs_f64()
                ))
        ),
    );
    assert!(
        cpu < 0.10,
        "used {:.1}% of a core while frozen",
        cpu * 100.0
    );
    assert!(
        critical.is_some(),
        "no CRITICAL can_connect while the broker was frozen; log:\n{}",
        log.join("\n")
    );
}

#[test]
fn the_agent_socket_gone_for_20_s_is_waited_for_idly_and_the_held_data_sent() {
    let rate = 1_000;
    let mut s = Scenario::new(2, Agent::unix(), "");
    let traffic = s.traffic(rate);
    let forwarder = s.run();
    s.expect_forwarded(2_000, &forwarder);

    s.agent.go_away();
    let gone = Instant::now();
    std::thread::sleep(Duration::from_secs(3));
    let cpu = cpu_share(forwarder.pid(), Duration::from_secs(17));
    s.agent.come_back();
    let recovered = s.expect_flowing_again(rate, &forwarder);
    let produced = traffic.stop();
    let duplicates = s.expect_all("agent away", produced);
    let (code, _, log) = forwarder.stop();
    assert_eq!(code, Some(0));
    let refused: Vec<&String> = log.iter().filter(|l| l.contains("refuses data")).collect();
    let accepted: Vec<&String> = log
        .iter()
        .filter(|l| l.contains("accepts data again"))
        .collect();
    report(
        "Agent socket removed 20 s",
        &format!(
            "produced {produced} at {rate}/s, forwarded {produced}, duplicates {duplicates}, \
             new messages flowing {:.1} s after the socket came back ({:.1} s after it went), \
             CPU while away {:.1}% of a core; log: {:?}",
            recovered.as_secs_f64(),
            gone.elapsed().as_secs_f64(),
            cpu * 100.0,
            accepted.iter().map(|l| message(l)).collect::<Vec<_>>()
        ),
    );
    assert!(
        cpu < 0.10,
        "used {:.1}% of a core while the Agent was away",
        cpu * 100.0
    );
    assert_eq!(refused.len(), 1, "the outage is logged once: {log:#?}");
    assert_eq!(accepted.len(), 1, "its end is logged once: {log:#?}");
    assert!(problems(&log).len() <= 2, "{:#?}", problems(&log));
}

/// The message of a log line, without its timestamp and level.
fn message(line: &str) -> &str {
    line.split_once("] ").map_or(line, |(_, m)| m)
}

#[test]
fn survivors_keep_consuming_when_one_of_three_forwarders_is_killed() {
    let rate = 3_000;
    let windows = "    aggregation_interval: 1\n";
    let s = Scenario::new(12, Agent::udp(), windows);
    let others = [Agent::udp(), Agent::udp()];
    let traffic = s.traffic(rate);
    let mut forwarders = vec![
        s.run(),
        s.another_member(&others[0], windows),
        s.another_member(&others[1], windows),
    ];
    let agents = [&s.agent, &others[0], &others[1]];
    // All three consume.
    for (i, agent) in agents.iter().enumerate() {
        assert!(
            agent.wait_until(Duration::from_secs(60), |a| !a.seqs().is_empty()),
            "forwarder {i} got no partition; log:\n{}",
            forwarders[i].lines().join("\n")
        );
    }
    std::thread::sleep(Duration::from_secs(5));
    forwarders.remove(0).kill();
    let killed = Instant::now();
    let newest = agents.iter().flat_map(|a| a.seqs()).max().unwrap_or(0);
    std::thread::sleep(Duration::from_secs(20));
    let produced = traffic.stop();
    let all_seqs =
        |agents: &[&Agent]| -> Vec<u64> { agents.iter().flat_map(|a| a.seqs()).collect() };
    assert!(
        agents[0].wait_until(Duration::from_secs(60), |_| distinct(&all_seqs(&agents))
            >= produced),
        "forwarded {} of {produced}",
        distinct(&all_seqs(&agents))
    );
    // The longest time each survivor went without forwarding, from 3 s before the kill until
    // the traffic stopped, 20 s after it: the group noticed the death and rebalanced meanwhile.
    let gaps: Vec<f64> = agents[1..]
        .iter()
        .map(|a| {
            let mut times: Vec<Instant> = a
                .seq_arrivals()
                .into_iter()
                .map(|(at, _)| at)
                .filter(|at| {
                    *at + Duration::from_secs(3) > killed && *at < killed + Duration::from_secs(19)
                })
                .collect();
            times.dedup();
            times
                .windows(2)
                .map(|w| w[1].duration_since(w[0]).as_secs_f64())
                .fold(0.0, f64::max)
        })
        .collect();
    // When every message produced until a second after the kill had been forwarded: the dead
    // member's partitions were taken over by then.
    // Up to a second after the kill: some of those were on the dead member's partitions.
    let taken_over = all_arrived_after(&agents, newest + rate, killed);
    let logs: Vec<Vec<String>> = forwarders.into_iter().map(|f| f.stop().2).collect();
    let duplicates = tally("three forwarders", produced, &all_seqs(&agents));
    report(
        "three forwarders, one SIGKILLed",
        &format!(
            "produced {produced} at {rate}/s on 12 partitions, forwarded {produced}, duplicates \
             {duplicates}, survivors' longest pause in forwarding {gaps:.1?} s (1 s windows), \
             every message produced until 1 s after the kill forwarded {taken_over:.1} s after \
             it"
        ),
    );
    assert!(
        gaps.iter().all(|g| *g < 2.5),
        "a survivor stopped forwarding for {gaps:?} s; logs:\n{logs:#?}"
    );
}
