//! The two ends the end-to-end tests drive: a DogStatsD socket standing in for the Agent, read
//! by a thread of its own, and numbered Insights messages produced at a steady rate.

#![allow(dead_code)]

use std::collections::HashSet;
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::*;

// ---- the Agent's side ---------------------------------------------------------------------------

/// What the Agent's socket received, line by line with arrival times, read by a thread of its
/// own so that nothing is missed while a test does something else.
pub struct Agent {
    received: Arc<Mutex<Vec<(Instant, String)>>>,
    pub url: String,
    pub unix_path: Option<PathBuf>,
    reader: Option<(Arc<AtomicBool>, JoinHandle<()>)>,
}

impl Agent {
    /// A UDP socket on loopback.
    pub fn udp() -> Agent {
        let (socket, url) = udp_agent();
        let mut agent = Agent::new(url, None);
        agent.read(socket);
        agent
    }

    /// A Unix datagram socket.
    pub fn unix() -> Agent {
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
    pub fn go_away(&mut self) {
        if let Some((stop, thread)) = self.reader.take() {
            stop.store(true, Ordering::Relaxed);
            thread.join().unwrap();
        }
        std::fs::remove_file(self.unix_path.as_ref().expect("a Unix socket agent")).unwrap();
    }

    /// The Agent is back on the same path.
    pub fn come_back(&mut self) {
        self.open_unix();
    }

    pub fn lines(&self) -> Vec<(Instant, String)> {
        self.received.lock().unwrap().clone()
    }

    /// Every `seq` value received, in arrival order, repeats included.
    pub fn seqs(&self) -> Vec<u64> {
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
    pub fn seq_arrivals(&self) -> Vec<(Instant, u64)> {
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
    pub fn calls(&self) -> u64 {
        let lines: Vec<String> = self.lines().into_iter().map(|(_, l)| l).collect();
        count_sum(&lines, "algorithmia.calls")
    }

    /// The service checks `name` received: when, status and message.
    pub fn checks(&self, name: &str) -> Vec<(Instant, u8, String)> {
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
    pub fn wait_until(&self, limit: Duration, done: impl Fn(&Agent) -> bool) -> bool {
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
    pub fn wait_for_all(&self, produced: u64, limit: Duration) -> bool {
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

pub fn distinct(seqs: &[u64]) -> u64 {
    seqs.iter().collect::<HashSet<_>>().len() as u64
}

/// Produced against forwarded: fails on a lost message, returns the duplicates.
pub fn tally(test: &str, produced: u64, seqs: &[u64]) -> u64 {
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

/// Messages produced at a steady rate by a thread, numbered from 0, until stopped.
pub struct Traffic {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<u64>,
}

impl Traffic {
    pub fn start(bootstrap: &str, topic: &str, per_second: u64, extra: &[(&str, &str)]) -> Traffic {
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
    pub fn stop(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().expect("the producer thread")
    }
}

/// Seconds after `since` when every seq of `0..=last` had reached one of `agents` (its first
/// arrival counts; a seq that never arrived is left out: the tally fails on it).
pub fn all_arrived_after(agents: &[&Agent], last: u64, since: Instant) -> f64 {
    let mut first_arrival = std::collections::HashMap::new();
    for (at, seq) in agents.iter().flat_map(|a| a.seq_arrivals()) {
        let first = first_arrival.entry(seq).or_insert(at);
        *first = (*first).min(at);
    }
    (0..=last)
        .filter_map(|seq| first_arrival.get(&seq))
        .map(|at| at.saturating_duration_since(since).as_secs_f64())
        .fold(0.0, f64::max)
}
