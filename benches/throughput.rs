//! Throughput of the whole pipeline: a pre-loaded embedded Kafka, the real consumer, decoding,
//! mapping and packing, and a real UDP socket drained by a receiver thread.
//!
//! `cargo bench --bench throughput` (set `BENCH_MESSAGES` to change the default 1 000 000, and
//! `BENCH_TRANSPORT=unix` to use a Unix datagram socket instead of UDP).
//! Prints messages/s, gauges/s, gauges received and peak RSS.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use algorithmia_datadog::config::Config;
use algorithmia_datadog::embedded::{EmbeddedKafka, SampleMessages};
use algorithmia_datadog::pipeline::{run_with_counters, RunOptions};
use algorithmia_datadog::telemetry::Counters;

#[path = "../tests/common/mod.rs"]
mod common;

/// Reads one datagram from the stand-in Agent.
type Receive = Box<dyn Fn(&mut [u8]) -> std::io::Result<usize> + Send>;

fn main() {
    let _ = env_logger::builder().format_timestamp_millis().try_init();
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
    let received = Arc::new(AtomicU64::new(0));
    let datagrams = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let drain = {
        let (received, datagrams, done) = (received.clone(), datagrams.clone(), done.clone());
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 65_536];
            loop {
                match receiver(&mut buf) {
                    Ok(n) => {
                        // Forwarded gauges only, not the forwarder's reports on itself.
                        let lines = buf[..n]
                            .split(|b| *b == b'\n')
                            .filter(|l| {
                                std::str::from_utf8(l).is_ok_and(|l| !common::is_self_monitoring(l))
                            })
                            .count() as u64;
                        received.fetch_add(lines, Ordering::Relaxed);
                        datagrams.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(_) if done.load(Ordering::Relaxed) => return,
                    Err(_) => {}
                }
            }
        })
    };

    let yaml = format!(
        "init_config:\n  dogstatsd_url: {url}\ninstances:\n  - kafka_broker: \"{}\"\n    kafka_topic: bench\n    consumer_group: bench\n    start_offset: earliest\n",
        kafka.bootstrap_servers()
    );
    let config = Config::from_yaml(&yaml, "bench", &|_| None).expect("config");
    let options = RunOptions {
        max_messages: Some(produced as u64),
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
    std::thread::sleep(Duration::from_millis(500));
    done.store(true, Ordering::Relaxed);
    let _ = drain.join();

    println!("messages          {}", total.messages);
    println!("gauges sent       {}", total.gauges);
    println!(
        "gauges received   {} in {} datagrams",
        received.load(Ordering::Relaxed),
        datagrams.load(Ordering::Relaxed)
    );
    println!("rejected          {}", total.rejected_total());
    println!(
        "elapsed           {elapsed:.2} s (group join, consume, decode, map, send, commit, close)"
    );
    // Steady state: from the first message (after the group join) to the last one, at a 250 ms
    // sampling resolution.
    let steady = first_seen
        .map(|f| last_progress.saturating_duration_since(f).as_secs_f64())
        .filter(|s| *s > 0.0)
        .unwrap_or(elapsed);
    println!(
        "messages/s        {:.0} overall, {:.0} steady",
        total.messages as f64 / elapsed,
        total.messages as f64 / steady
    );
    println!(
        "gauges/s          {:.0} overall, {:.0} steady",
        total.gauges as f64 / elapsed,
        total.gauges as f64 / steady
    );
    println!(
        "peak RSS          {} MiB during forwarding (process RSS before forwarding {} MiB, holding the in-process broker's log)",
        rss_kib("VmHWM:") / 1024,
        rss_before / 1024
    );
}

/// Resets the kernel's peak-RSS mark, so that VmHWM reports the forwarding phase only.
fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

fn rss_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}
