//! End to end, where users run it: the built binary as its own process, a standalone tansu
//! broker process, and a real DogStatsD socket read by the test.
//!
//! Every fault test numbers its messages (`seq`, sent as a distribution so that every value
//! reaches the socket even when aggregated) and counts what was produced against what arrived:
//! a lost message fails the test, a message forwarded twice is counted and reported (delivery
//! is at least once). Each test prints one `E2E` line with its figures; run with
//! `cargo test --test end_to_end -- --nocapture` to read them.

mod common;

use std::collections::HashSet;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::process::*;
use common::tansu::*;
use common::*;

// ---- the Agent's side ---------------------------------------------------------------------------

/// What the Agent's socket received, line by line with arrival times, read by a thread of its
/// own so that nothing is missed while a test does something else.
struct Agent {
    received: Arc<Mutex<Vec<(Instant, String)>>>,
    url: String,
    unix_path: Option<PathBuf>,
    reader: Option<(Arc<AtomicBool>, JoinHandle<()>)>,
}

impl Agent {
    /// A UDP socket on loopback.
    fn udp() -> Agent {
        let (socket, url) = udp_agent();
        let mut agent = Agent::new(url, None);
        agent.read(socket);
        agent
    }

    /// A Unix datagram socket.
    fn unix() -> Agent {
        let path = unix_socket_path();
        let mut agent = Agent::new(format!("unix://{}", path.display()), Some(path));
        agent.open_unix();
        agent
    }

    fn new(url: String, unix_path: Option<PathBuf>) -> Agent {
        Agent {
            received: Arc::default(),
            url,
            unix_path,
            reader: None,
        }
    }

    fn open_unix(&mut self) {
        let path = self.unix_path.clone().expect("a Unix socket agent");
        let socket = UnixDatagram::bind(&path).expect("bind the Unix socket");
        self.read(socket);
    }

    fn read(&mut self, socket: impl Datagrams + Send + 'static) {
        let stop = Arc::new(AtomicBool::new(false));
        let received = self.received.clone();
        let stopped = stop.clone();
        let thread = std::thread::spawn(move || {
            while !stopped.load(Ordering::Relaxed) {
                if let Some(datagram) = socket.recv_datagram(Duration::from_millis(100)) {
                    let now = Instant::now();
                    let text = String::from_utf8(datagram).expect("datagrams are UTF-8");
                    let mut received = received.lock().unwrap();
                    received.extend(text.split('\n').map(|line| (now, line.to_string())));
                }
            }
        });
        self.reader = Some((stop, thread));
    }

    /// The Agent goes away: its socket file is removed (Unix sockets only).
    fn go_away(&mut self) {
        if let Some((stop, thread)) = self.reader.take() {
            stop.store(true, Ordering::Relaxed);
            thread.join().unwrap();
        }
        std::fs::remove_file(self.unix_path.as_ref().expect("a Unix socket agent")).unwrap();
    }

    /// The Agent is back on the same path.
    fn come_back(&mut self) {
        self.open_unix();
    }

    fn lines(&self) -> Vec<(Instant, String)> {
        self.received.lock().unwrap().clone()
    }

    /// Every `seq` value received, in arrival order, repeats included.
    fn seqs(&self) -> Vec<u64> {
        let received = self.received.lock().unwrap();
        received
            .iter()
            .filter_map(|(_, line)| line.strip_prefix("algorithmia.seq:"))
            .filter_map(|rest| rest.split_once("|d").map(|(values, _)| values))
            .flat_map(|values| values.split(':'))
            .map(|v| v.parse().expect("seq values are integers"))
            .collect()
    }

    /// When each `seq` value first arrived.
    fn seq_arrivals(&self) -> Vec<(Instant, u64)> {
        let received = self.received.lock().unwrap();
        received
            .iter()
            .filter_map(|(at, line)| Some((*at, line.strip_prefix("algorithmia.seq:")?)))
            .filter_map(|(at, rest)| Some((at, rest.split_once("|d")?.0)))
            .flat_map(|(at, values)| values.split(':').map(move |v| (at, v)))
            .map(|(at, v)| (at, v.parse().expect("seq values are integers")))
            .collect()
    }

    /// The sum of `algorithmia.calls` received.
    fn calls(&self) -> u64 {
        let lines: Vec<String> = self.lines().into_iter().map(|(_, l)| l).collect();
        count_sum(&lines, "algorithmia.calls")
    }

    /// The service checks `name` received: when, status and message.
    fn checks(&self, name: &str) -> Vec<(Instant, u8, String)> {
        let prefix = format!("_sc|{name}|");
        self.lines()
            .into_iter()
            .filter_map(|(at, line)| {
                let rest = line.strip_prefix(&prefix)?;
                let status = rest.split('|').next()?.parse().ok()?;
                let message = rest.split_once("|m:").map_or("", |(_, m)| m).to_string();
                Some((at, status, message))
            })
            .collect()
    }

    /// Waits up to `limit` for `done` to hold; whether it did.
    fn wait_until(&self, limit: Duration, done: impl Fn(&Agent) -> bool) -> bool {
        let deadline = Instant::now() + limit;
        while !done(self) {
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        true
    }

    /// Waits until every seq of `0..produced` arrived (up to `limit`).
    fn wait_for_all(&self, produced: u64, limit: Duration) -> bool {
        self.wait_until(limit, |a| distinct(&a.seqs()) >= produced)
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if let Some((stop, _)) = &self.reader {
            stop.store(true, Ordering::Relaxed);
        }
    }
}

const OK: u8 = 0;
const CRITICAL: u8 = 2;

fn distinct(seqs: &[u64]) -> u64 {
    seqs.iter().collect::<HashSet<_>>().len() as u64
}

/// Produced against forwarded: fails on a lost message, returns the duplicates.
fn tally(test: &str, produced: u64, seqs: &[u64]) -> u64 {
    let seen: HashSet<u64> = seqs.iter().copied().collect();
    let lost: Vec<u64> = (0..produced)
        .filter(|s| !seen.contains(s))
        .take(20)
        .collect();
    assert!(
        lost.is_empty(),
        "{test}: {} of {produced} messages never reached the socket, e.g. {lost:?}",
        produced - seen.iter().filter(|s| **s < produced).count() as u64
    );
    assert!(
        seen.iter().all(|s| *s < produced),
        "{test}: values that were never produced"
    );
    seqs.len() as u64 - seen.len() as u64
}

// ---- the Kafka side ------------------------------------------------------------------------------

/// Messages produced at a steady rate by a thread, numbered from 0, until stopped.
struct Traffic {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<u64>,
}

impl Traffic {
    fn start(bootstrap: &str, topic: &str, per_second: u64, extra: &[(&str, &str)]) -> Traffic {
        let producer = producer(bootstrap, extra);
        let topic = topic.to_string();
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = std::thread::spawn(move || {
            let start = Instant::now();
            let mut seq = 0u64;
            while !stopped.load(Ordering::Relaxed) {
                let due = (start.elapsed().as_secs_f64() * per_second as f64) as u64;
                while seq < due {
                    send(&producer, &topic, &insights_message(seq));
                    seq += 1;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            let acked = acknowledged(&producer) as u64;
            assert_eq!(acked, seq, "messages acknowledged by the broker");
            seq
        });
        Traffic { stop, thread }
    }

    /// Stops producing; how many messages were produced (and acknowledged).
    fn stop(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().expect("the producer thread")
    }
}

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
    let mut first_arrival = std::collections::HashMap::new();
    for (at, seq) in agents.iter().flat_map(|a| a.seq_arrivals()) {
        let first = first_arrival.entry(seq).or_insert(at);
        *first = (*first).min(at);
    }
    // Up to a second after the kill: some of those were on the dead member's partitions.
    let taken_over = (0..=newest + rate)
        .filter_map(|seq| first_arrival.get(&seq))
        .map(|at| at.saturating_duration_since(killed).as_secs_f64())
        .fold(0.0, f64::max);
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
