//! Datadog's own DogStatsD server as a process of its own: `datadog-serverless-compat` 0.19.0, the
//! static binary of the PyPI wheel of that name, built on Datadog's Rust DogStatsD codec (the
//! crate `dogstatsd` of DataDog/serverless-components). `.ci/install-dogstatsd-oracle.sh`
//! installs it as `datadog-serverless-compat-0.19.0` in cargo's bin directory; `$DATADOG_DOGSTATSD`
//! names another copy. A missing binary fails the test that needs it, loudly.
//!
//! How it runs here: `DD_API_KEY` set to anything; `ASCSVCRT_SPRING__APPLICATION__NAME` set, so
//! that it believes it runs in an Azure Spring App; `DD_DOGSTATSD_PORT`; `DD_LOG_LEVEL=trace` (or
//! `debug`), so that it logs every datagram it parses and every payload it would ship; and
//! `DD_PROXY_HTTPS` pointing at a local listener that answers every `CONNECT` with 502, so that
//! its flush every 10 s fails at once instead of waiting on DNS or the internet.
//!
//! What it did is read from its log, which is debug text and not a stable format (hence the pinned
//! version): the datagrams it received, its parse errors, and the payloads it would have shipped
//! (series points with their values, sketches with their sample counts).

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The pinned version.
pub const VERSION: &str = "0.19.0";

/// The server's binary: `$DATADOG_DOGSTATSD`, or `datadog-serverless-compat-0.19.0` on `PATH`.
pub fn binary() -> PathBuf {
    if let Some(path) = std::env::var_os("DATADOG_DOGSTATSD") {
        return PathBuf::from(path);
    }
    let name = format!("datadog-serverless-compat-{VERSION}");
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(&name))
            .find(|candidate| candidate.is_file())
    });
    found.unwrap_or_else(|| {
        panic!(
            "this test needs Datadog's DogStatsD server: no {name} on PATH and DATADOG_DOGSTATSD \
             is not set; install it with `bash .ci/install-dogstatsd-oracle.sh` (or \
             `bash .ci/install-test-deps.sh`)"
        )
    })
}

/// One record of its log: the level, the target (`dogstatsd::dogstatsd`) and the message, which
/// may span several lines (a datagram of several metrics is logged as it came).
#[derive(Debug, Clone)]
pub struct Record {
    pub level: String,
    pub target: String,
    pub message: String,
}

/// A point of a series it would ship.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesPoint {
    pub metric: String,
    /// `Gauge` or `Count`.
    pub kind: String,
    pub tags: Vec<String>,
    pub timestamp: i64,
    pub value: f64,
}

/// A sketch it would ship: one distribution context, one time bucket.
#[derive(Debug, Clone, PartialEq)]
pub struct Sketch {
    pub metric: String,
    pub tags: Vec<String>,
    /// How many samples the sketch holds.
    pub count: u64,
    /// Their sum.
    pub sum: f64,
}

/// The running server.
pub struct DogStatsdServer {
    child: Child,
    log: PathBuf,
    /// Where it listens for DogStatsD datagrams.
    pub port: u16,
    proxy: Option<(Arc<AtomicBool>, JoinHandle<()>)>,
    /// How many connections its flushes opened to the proxy.
    pub proxy_connections: Arc<AtomicUsize>,
}

/// The log levels the server is run at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogLevel {
    /// Every datagram's text and every payload.
    Trace,
    /// A line per datagram (how many metrics it parsed), no text: a faster reader.
    Debug,
}

impl DogStatsdServer {
    /// Starts the server at `trace` on a free port and waits until it listens.
    pub fn start() -> DogStatsdServer {
        Self::start_at(LogLevel::Trace)
    }

    /// Starts the server logging at `level` on a free port and waits until it listens.
    pub fn start_at(level: LogLevel) -> DogStatsdServer {
        let binary = binary();
        let port = free_udp_port();
        let (proxy_port, stop, connections, proxy) = refusing_proxy();
        let log = std::env::temp_dir()
            .join(super::unique("datadog-dogstatsd"))
            .with_extension("log");
        let out = std::fs::File::create(&log).expect("the server's log file");
        let err = out.try_clone().expect("the server's log file");
        let child = Command::new(&binary)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("DD_API_KEY", "not-a-real-key")
            .env(
                "ASCSVCRT_SPRING__APPLICATION__NAME",
                "algorithmia-datadog-test",
            )
            .env("DD_DOGSTATSD_PORT", port.to_string())
            .env(
                "DD_APM_RECEIVER_PORT",
                super::tansu::free_port().to_string(),
            )
            .env(
                "DD_LOG_LEVEL",
                match level {
                    LogLevel::Trace => "trace",
                    LogLevel::Debug => "debug",
                },
            )
            .env("DD_PROXY_HTTPS", format!("http://127.0.0.1:{proxy_port}"))
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
        let server = DogStatsdServer {
            child,
            log,
            port,
            proxy: Some((stop, proxy)),
            proxy_connections: connections,
        };
        let listening = format!("dogstatsd-udp: starting to listen on port {port}");
        let deadline = Instant::now() + Duration::from_secs(20);
        while !server.log_text().contains(&listening) {
            assert!(
                Instant::now() < deadline,
                "Datadog's DogStatsD server did not start within 20 s; its log:\n{}",
                server.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        server
    }

    /// `udp://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("udp://127.0.0.1:{}", self.port)
    }

    /// Its whole log so far.
    pub fn log_text(&self) -> String {
        std::fs::read(&self.log)
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
            .unwrap_or_default()
    }

    /// Its log so far, record by record.
    pub fn records(&self) -> Vec<Record> {
        parse_records(&self.log_text())
    }

    /// The metrics it could not parse: each with its reason.
    pub fn parse_errors(&self) -> Vec<String> {
        self.records()
            .into_iter()
            .filter(|r| {
                r.message.starts_with("Failed to parse metric")
                    || r.message.starts_with("Unsupported metric type")
                    || (r.level == "ERROR" && r.target.starts_with("dogstatsd::dogstatsd"))
            })
            .map(|r| r.message)
            .collect()
    }

    /// How many datagrams it read: at `trace` each is logged as it came; at `debug` each that
    /// held a valid metric is (all of ours do).
    pub fn datagrams_received(&self) -> usize {
        let records = self.records();
        let count = |prefix: &str| {
            records
                .iter()
                .filter(|r| r.message.starts_with(prefix))
                .count()
        };
        match count("Received packet:") {
            0 => count("Parsed "),
            n => n,
        }
    }

    /// Every line of every datagram it received, in order (logged at `trace` only).
    pub fn received_lines(&self) -> Vec<String> {
        self.records()
            .into_iter()
            .filter_map(|r| {
                let text = r.message.strip_prefix("Received message: ")?;
                let (datagram, _) = text.rsplit_once(" from ")?;
                Some(
                    datagram
                        .split('\n')
                        .filter(|l| !l.is_empty())
                        .map(str::to_string)
                        .collect::<Vec<_>>(),
                )
            })
            .flatten()
            .collect()
    }

    /// Waits (up to `limit`) until two flushes began after the last datagram it received: the
    /// first of them shipped everything, and its payloads are in the log (flushes run one after
    /// the other). Whether they did.
    pub fn wait_flushed(&self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        loop {
            let records = self.records();
            let last_datagram = records
                .iter()
                .rposition(|r| {
                    r.message.starts_with("Received packet:") || r.message.starts_with("Parsed ")
                })
                .map_or(0, |i| i + 1);
            let flushes = records[last_datagram..]
                .iter()
                .filter(|r| r.message == "Flushing dogstatsd metrics")
                .count();
            if flushes >= 2 {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The series points it would have shipped, every flush so far.
    pub fn series(&self) -> Vec<SeriesPoint> {
        self.records()
            .iter()
            .filter_map(|r| r.message.strip_prefix("Sending body: "))
            .flat_map(parse_series)
            .collect()
    }

    /// The sketches it would have shipped, every flush so far.
    pub fn sketches(&self) -> Vec<Sketch> {
        self.records()
            .iter()
            .filter_map(|r| r.message.strip_prefix("Sending distributions: "))
            .flat_map(parse_sketches)
            .collect()
    }

    /// Stops the server; its log stays readable.
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some((stop, thread)) = self.proxy.take() {
            stop.store(true, Ordering::Relaxed);
            let _ = thread.join();
        }
    }
}

impl Drop for DogStatsdServer {
    fn drop(&mut self) {
        self.stop();
        if !std::thread::panicking() {
            let _ = std::fs::remove_file(&self.log);
        }
    }
}

/// A UDP port of loopback nothing is bound to right now.
pub fn free_udp_port() -> u16 {
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind an ephemeral UDP port");
    socket.local_addr().expect("its address").port()
}

/// A proxy that answers every request with 502 Bad Gateway: its port, its stop flag, how many
/// connections it took, its thread.
fn refusing_proxy() -> (u16, Arc<AtomicBool>, Arc<AtomicUsize>, JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
    listener
        .set_nonblocking(true)
        .expect("a non-blocking proxy");
    let port = listener.local_addr().expect("its address").port();
    let stop = Arc::new(AtomicBool::new(false));
    let connections = Arc::new(AtomicUsize::new(0));
    let (stopped, counted) = (stop.clone(), connections.clone());
    let thread = std::thread::spawn(move || {
        while !stopped.load(Ordering::Relaxed) {
            match listener.accept() {
                Ok((mut stream, _)) => {
                    counted.fetch_add(1, Ordering::Relaxed);
                    let _ = stream.set_nonblocking(false);
                    let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
                    let mut request = [0u8; 4096];
                    let _ = stream.read(&mut request);
                    let _ = stream.write_all(
                        b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                    );
                }
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    });
    (port, stop, connections, thread)
}

/// The log's records: a record starts with a level (`TRACE`, `DEBUG`, ` INFO`, ` WARN`,
/// `ERROR`) and its target; lines that do not are the rest of the record before them.
pub fn parse_records(log: &str) -> Vec<Record> {
    let mut records: Vec<Record> = Vec::new();
    for line in log.split('\n') {
        let trimmed = line.trim_start();
        let start = ["TRACE ", "DEBUG ", "INFO ", "WARN ", "ERROR "]
            .iter()
            .find(|level| trimmed.starts_with(*level) && line.len() - trimmed.len() <= 1);
        let head = start.and_then(|level| {
            let rest = &trimmed[level.len()..];
            let (target, message) = rest.split_once(": ")?;
            (!target.contains(' ')).then_some((level.trim(), target, message))
        });
        match (head, records.last_mut()) {
            (Some((level, target, message)), _) => records.push(Record {
                level: level.to_string(),
                target: target.to_string(),
                message: message.to_string(),
            }),
            (None, Some(last)) => {
                last.message.push('\n');
                last.message.push_str(line);
            }
            (None, None) => {}
        }
    }
    records
}

/// The text between `open` and the `close` after it, and what follows.
fn between<'a>(text: &'a str, open: &str, close: &str) -> Option<(&'a str, &'a str)> {
    let start = text.find(open)? + open.len();
    let len = text[start..].find(close)?;
    Some((
        &text[start..start + len],
        &text[start + len + close.len()..],
    ))
}

/// `"a", "b"` as `[a, b]`.
fn quoted_list(text: &str) -> Vec<String> {
    text.split(", ")
        .filter_map(|t| t.strip_prefix('"')?.strip_suffix('"'))
        .map(str::to_string)
        .collect()
}

/// The number after `key` (`cnt: 2,`).
fn number_after(text: &str, key: &str) -> Option<f64> {
    let start = text.find(key)? + key.len();
    let number: String = text[start..]
        .chars()
        .take_while(|c| c.is_ascii_digit() || matches!(c, '.' | '-' | 'e' | 'E' | '+'))
        .collect();
    number.parse().ok()
}

/// `Series { series: [Metric { metric: "a.g", points: [Point { timestamp: 1, value: 1.0 }],
/// resources: [], kind: Gauge, tags: ["x:y"], metadata: None }, ...] }`.
pub fn parse_series(body: &str) -> Vec<SeriesPoint> {
    let mut points = Vec::new();
    for chunk in body.split("Metric { metric: \"").skip(1) {
        let Some((metric, rest)) = chunk.split_once('"') else {
            continue;
        };
        let Some((point_list, rest)) = between(rest, "points: [", "]") else {
            continue;
        };
        let kind = between(rest, "kind: ", ",")
            .map_or("", |(k, _)| k)
            .to_string();
        let tags = between(rest, "tags: [", "]").map_or(vec![], |(t, _)| quoted_list(t));
        for point in point_list.split("Point {").skip(1) {
            let (Some(timestamp), Some(value)) = (
                number_after(point, "timestamp: "),
                number_after(point, "value: "),
            ) else {
                continue;
            };
            points.push(SeriesPoint {
                metric: metric.to_string(),
                kind: kind.clone(),
                tags: tags.clone(),
                timestamp: timestamp as i64,
                value,
            });
        }
    }
    points
}

/// `SketchPayload { sketches: [Sketch { metric: "a.d", host: "", distributions: [], tags:
/// ["x:y"], dogsketches: [Dogsketch { ts: 1, cnt: 2, min: 1.0, max: 4.0, avg: 2.5, sum: 5.0,
/// ... }] ... }] }`: a sketch per context and time bucket.
pub fn parse_sketches(body: &str) -> Vec<Sketch> {
    let mut sketches = Vec::new();
    for chunk in body.split("Sketch { metric: \"").skip(1) {
        let Some((metric, rest)) = chunk.split_once('"') else {
            continue;
        };
        let tags = between(rest, "tags: [", "]").map_or(vec![], |(t, _)| quoted_list(t));
        for bucket in rest.split("Dogsketch {").skip(1) {
            let (Some(count), Some(sum)) = (
                number_after(bucket, "cnt: "),
                number_after(bucket, " sum: "),
            ) else {
                continue;
            };
            sketches.push(Sketch {
                metric: metric.to_string(),
                tags: tags.clone(),
                count: count as u64,
                sum,
            });
        }
    }
    sketches
}

/// The kernel's count of UDP datagrams dropped for a full receive buffer, machine-wide
/// (`RcvbufErrors` of `Udp:` in `/proc/net/snmp`).
pub fn udp_receive_buffer_errors() -> u64 {
    let snmp = std::fs::read_to_string("/proc/net/snmp").unwrap_or_default();
    let mut udp = snmp.lines().filter(|l| l.starts_with("Udp:"));
    let (Some(names), Some(values)) = (udp.next(), udp.next()) else {
        return 0;
    };
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .find(|(name, _)| *name == "RcvbufErrors")
        .and_then(|(_, value)| value.parse().ok())
        .unwrap_or(0)
}
