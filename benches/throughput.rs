//! Throughput of the whole pipeline: a pre-loaded embedded Kafka, the real consumer, decoding,
//! mapping, aggregation and packing, and a real socket drained by a receiver thread.
//!
//! `cargo bench --bench throughput` (set `BENCH_MESSAGES` to change the default 1 000 000,
//! `BENCH_TRANSPORT=unix` to use a Unix datagram socket instead of UDP, and `BENCH_CONTEXTS`
//! for the distinct-contexts run, default 1 000 000; 0 skips it).
//!
//! Every mode reads the same pre-loaded topic from the start, as its own consumer group:
//! every point sent (`aggregation_interval: 0`), aggregated (the default, 2 s), and aggregated
//! with `duration_milliseconds` as a distribution. Then a topic where every message is its own
//! model version (one distinct context per message) shows the memory bound of `max_contexts`.
//! Prints, per mode: messages/s, points and datagrams received, the calls counted at the
//! receiver (which must equal the messages), distribution values received, and peak RSS.
//!
//! First of all it prints the bytes one aggregation window of 100,000 distinct contexts holds
//! (counted by this benchmark's allocator; the bound is 16 MB). `BENCH_WINDOW_ONLY=1` stops
//! after that.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use algorithmia_datadog::config::Config;
use algorithmia_datadog::embedded::{EmbeddedKafka, SampleMessages};
use algorithmia_datadog::metrics::MetricMapper;
use algorithmia_datadog::Counters;
use algorithmia_datadog::{decode, Window};
use algorithmia_datadog::{run_with_counters, RunOptions};

#[path = "../tests/common/mod.rs"]
mod common;

use common::Tally;

/// Reads one datagram from the stand-in Agent.
type Receive = Box<dyn Fn(&mut [u8]) -> std::io::Result<usize> + Send>;

/// The system allocator, counting the bytes allocated and not yet freed.
struct Counting;

static LIVE_BYTES: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call goes to the system allocator unchanged; only a counter is added.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE_BYTES.fetch_add(layout.size(), Ordering::Relaxed);
        // SAFETY: the caller's contract is passed on as is.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE_BYTES.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE_BYTES.fetch_add(new_size, Ordering::Relaxed);
        LIVE_BYTES.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Fills one window with 100,000 distinct contexts the way the forwarder does (sample messages
/// through the mapping rules), 20,000 models of five contexts each (four metrics and `calls`),
/// and prints the bytes the window holds.
fn window_memory() {
    const CONTEXTS: usize = 100_000;
    let mut mapper = MetricMapper::builder("algorithmia").build();
    let counters = Counters::default();
    let payloads: Vec<String> = (0..CONTEXTS / 5)
        .map(|i| {
            format!(
                r#"{{"risk_score":0.{i},"approved":true,"duration_milliseconds":{i},"queue_milliseconds":3,"algorithm_version":"1.{}.{}","session_id":"rses-f28bb94a-5556-4aeb-a6d2-89493626bf4f","time":"2021-02-20T00:21:54.867231","algorithm_name":"credit_card_approval_{}","request_id":"req-9f5345b4-a1cd-431c-a43a-bd2a06f4a6f4","algorithm_owner":"risk_team"}}"#,
                i % 7,
                i / 7 % 100,
                i / 700
            )
        })
        .collect();
    // Once before counting: the mapper's own tables (rules, tag sets) are not the window's.
    let mut warm = Window::new(CONTEXTS);
    for payload in &payloads {
        let message = decode(payload.as_bytes()).expect("sample");
        mapper.map_points(&message, &counters, &mut warm);
    }
    drop(warm);
    let before = LIVE_BYTES.load(Ordering::Relaxed);
    let mut window = Window::new(CONTEXTS);
    for payload in &payloads {
        let message = decode(payload.as_bytes()).expect("sample");
        mapper.map_points(&message, &counters, &mut window);
    }
    let bytes = LIVE_BYTES.load(Ordering::Relaxed) - before;
    assert_eq!(window.contexts(), CONTEXTS, "distinct contexts");
    println!(
        "one window of {CONTEXTS} distinct contexts holds {bytes} bytes ({:.1} MB, {:.0} bytes a context; bound 16 MB)",
        bytes as f64 / 1e6,
        bytes as f64 / CONTEXTS as f64
    );
}

fn main() {
    let _ = env_logger::builder().format_timestamp_millis().try_init();
    window_memory();
    if std::env::var("BENCH_WINDOW_ONLY").is_ok_and(|v| v == "1") {
        return;
    }
    let messages: u64 = std::env::var("BENCH_MESSAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    // The mock cluster keeps 5 MiB of (compressed) batches per partition.
    let partitions = ((messages / 10_000) as i32).clamp(4, 160);

    let kafka = EmbeddedKafka::start(1).expect("mock cluster");
    kafka.create_topic("bench", partitions).expect("topic");
    let started = Instant::now();
    let mut samples = SampleMessages::new(7);
    let produced = kafka
        .produce("bench", (0..messages).map(|i| samples.message(i)))
        .expect("produce");
    println!(
        "pre-loaded {produced} messages into {partitions} partitions in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    // BENCH_TRANSPORT=unix measures the Unix datagram socket (8192-byte datagrams) instead of UDP.
    let unix = std::env::var("BENCH_TRANSPORT").is_ok_and(|t| t == "unix");
    let (receiver, url): (Receive, String) = if unix {
        let path = common::unix_socket_path();
        let socket = std::os::unix::net::UnixDatagram::bind(&path).expect("bind");
        socket
            .set_read_timeout(Some(Duration::from_millis(200)))
            .expect("timeout");
        (
            Box::new(move |buf| socket.recv(buf)),
            format!("unix://{}", path.display()),
        )
    } else {
        let (socket, url) = common::udp_agent();
        socket
            .set_read_timeout(Some(Duration::from_millis(200)))
            .expect("timeout");
        (Box::new(move |buf| socket.recv(buf)), url)
    };
    println!("transport         {url}");
    let tally = Arc::new(Tally::default());
    let done = Arc::new(AtomicBool::new(false));
    let drain = {
        let (tally, done) = (tally.clone(), done.clone());
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 65_536];
            loop {
                match receiver(&mut buf) {
                    Ok(n) => tally.count(&buf[..n]),
                    Err(_) if done.load(Ordering::Relaxed) => return,
                    Err(_) => {}
                }
            }
        })
    };

    let modes = [
        ("every point (interval 0)", "    aggregation_interval: 0\n"),
        ("aggregated (2 s, default)", ""),
        (
            "aggregated + distribution",
            "    distribution_metrics: [duration_milliseconds]\n",
        ),
    ];
    let mut rows = Vec::new();
    for (name, extra) in modes {
        let row = run_mode(&kafka, "bench", produced as u64, &url, extra, &tally);
        rows.push((name, row));
    }
    let contexts: u64 = std::env::var("BENCH_CONTEXTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    if contexts > 0 {
        let partitions = ((contexts / 10_000) as i32).clamp(4, 160);
        kafka.create_topic("contexts", partitions).expect("topic");
        let loaded = kafka
            .produce(
                "contexts",
                (0..contexts).map(|i| {
                    format!(
                        r#"{{"duration_milliseconds":{},"algorithm_name":"m","algorithm_version":"v{i}"}}"#,
                        i % 97
                    )
                }),
            )
            .expect("produce");
        let row = run_mode(&kafka, "contexts", loaded as u64, &url, "", &tally);
        rows.push(("distinct contexts, aggregated", row));
    }
    done.store(true, Ordering::Relaxed);
    let _ = drain.join();

    println!();
    println!("| mode | messages | messages/s (steady) | points received | calls counted | distribution values | datagrams | points/s | peak RSS growth |");
    println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    for (name, r) in &rows {
        println!(
            "| {name} | {} | {:.0} ({:.0}) | {} | {} | {} | {} | {:.0} | {} MiB |",
            r.messages,
            r.messages as f64 / r.elapsed,
            r.messages as f64 / r.steady,
            r.points,
            r.calls,
            r.distribution_values,
            r.datagrams,
            r.points as f64 / r.elapsed,
            r.rss_growth_kib / 1024,
        );
        if r.calls != r.messages - r.rejected {
            println!(
                "  !! {name}: {} calls counted for {} accepted messages",
                r.calls,
                r.messages - r.rejected
            );
        }
    }
}

/// One mode's figures.
struct Row {
    messages: u64,
    rejected: u64,
    elapsed: f64,
    steady: f64,
    points: u64,
    calls: u64,
    distribution_values: u64,
    datagrams: u64,
    rss_growth_kib: u64,
}

/// Forwards all of `topic` as a new consumer group with the instance lines `extra`.
fn run_mode(
    kafka: &EmbeddedKafka,
    topic: &str,
    messages: u64,
    url: &str,
    extra: &str,
    tally: &Tally,
) -> Row {
    let yaml = format!(
        "init_config:\n  dogstatsd_url: {url}\n  udp_max_datagrams_per_second: 0\ninstances:\n  - kafka_broker: \"{}\"\n    kafka_topic: {topic}\n    consumer_group: {}\n    start_offset: earliest\n{extra}",
        kafka.bootstrap_servers(),
        common::unique("bench")
    );
    let config = Config::from_yaml(&yaml, "bench", &|_| None).expect("config");
    let options = RunOptions {
        max_messages: Some(messages),
        ..RunOptions::default()
    };
    let counters = [Arc::new(Counters::default())];
    reset_peak_rss();
    let rss_before = rss_kib("VmRSS:");
    // The mock cluster silently drops what exceeds its per-partition limits: stop, and say so,
    // when consumption stalls instead of waiting for messages that no longer exist.
    let watchdog = {
        let (counters, stop) = (counters[0].clone(), options.stop.clone());
        std::thread::spawn(move || {
            let mut last = (0, Instant::now());
            let mut first_seen: Option<Instant> = None;
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(250));
                let now = counters.messages.load(Ordering::Relaxed);
                if now > 0 && first_seen.is_none() {
                    first_seen = Some(Instant::now());
                }
                if now != last.0 {
                    last = (now, Instant::now());
                } else if last.1.elapsed() > Duration::from_secs(5) {
                    eprintln!("consumption stalled at {now} messages: the mock cluster dropped the rest; stopping");
                    stop.store(true, Ordering::Relaxed);
                }
            }
            (first_seen, last.1)
        })
    };
    let started = Instant::now();
    let total = run_with_counters(&config, &options, &counters).expect("run");
    options.stop.store(true, Ordering::Relaxed);
    let (first_seen, last_progress) = watchdog.join().expect("watchdog");
    let elapsed = started.elapsed().as_secs_f64();
    let rss_growth_kib = rss_kib("VmHWM:").saturating_sub(rss_before);
    std::thread::sleep(Duration::from_millis(700));
    let (points, calls, distribution_values, datagrams) = tally.take();
    // Steady state: from the first message (after the group join) to the last one, at a 250 ms
    // sampling resolution.
    let steady = first_seen
        .map(|f| last_progress.saturating_duration_since(f).as_secs_f64())
        .filter(|s| *s > 0.0)
        .unwrap_or(elapsed);
    Row {
        messages: total.messages,
        rejected: total.rejected_total(),
        elapsed,
        steady,
        points,
        calls,
        distribution_values,
        datagrams,
        rss_growth_kib,
    }
}
/// Resets the kernel's peak-RSS mark, so that VmHWM reports the forwarding phase only.
fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

fn rss_kib(field: &str) -> u64 {
    common::process::status_kib(None, field)
}
