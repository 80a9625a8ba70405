//! The forwarder as users run it, against a standalone broker: CPU per message and throughput,
//! each as a ratio to a plain librdkafka consumer draining the same topic, and peak memory, in
//! every mode.
//!
//! `cargo bench --bench broker` starts a tansu broker (the end-to-end tests' one: `$TANSU`, else
//! `tansu` on `PATH`; `.ci/install-test-deps.sh` installs it), pre-loads `BENCH_MESSAGES`
//! (default 1,000,000) sample messages into a topic of 4 partitions, then drains the whole topic
//! once per mode, each time as a process of its own in a fresh consumer group:
//!
//! - `raw`: a plain librdkafka consumer (its default settings) that only touches each message
//!   (this benchmark's executable, run again with `--raw-drain`): the limit for any forwarder on
//!   this machine and broker;
//! - `default`: `algorithmia-datadog run`, aggregated (2 s), gauges and calls, over UDP;
//! - `points-udp`, `points-unix`: every point sent (`aggregation_interval: 0`), over UDP and over
//!   a Unix datagram socket;
//! - `distribution`: aggregated, `duration_milliseconds` as a distribution, over UDP.
//!
//! `BENCH_MODES=default,points-udp` runs some of them (the raw drain always runs).
//! `BENCH_RUNS=3` runs three rounds: a raw drain, every mode, and a raw drain at the end; each
//! mode's ratios are to the two raw drains around it, and the table gives every round's figure
//! and the median.
//!
//! CPU per message is the process's CPU time (user and system, every thread) over its busy period
//! divided by the messages: what a pod's CPU request pays for, and steadier than wall-clock time on
//! a shared machine, where the broker, librdkafka's threads, the forwarder and the receiver compete
//! for the cores. Each thread's share goes to standard error.
//!
//! The benchmark's own threads stand in for the Agent: they read the real sockets (large receive
//! buffers, many datagrams per system call) and count lines, the `algorithmia.calls` counts (whose
//! sum must equal the messages) and the distribution values (which must equal the messages).
//! A mode is done when every call was counted; the forwarder is then stopped with SIGTERM.
//!
//! Time: from the moment the process has its partitions (the raw drain prints it; the forwarder
//! logs it) to the end of its busy period (the last 20 ms in which it used at least a third of a
//! CPU, sampled from `/proc/PID/task/*/schedstat`): the same for every process, and independent of
//! when the last aggregation window happens to close. Peak RSS is the process's `VmHWM`.
//!
//! Then, where valgrind is installed, the instructions per message of the forwarder's own work
//! (decode, map, aggregate, pack; no Kafka, no socket) under `valgrind --tool=callgrind`, which
//! unlike seconds do not depend on what else the machine runs (`BENCH_INSTRUCTIONS=0` skips it):
//! this executable again, with `--instructions MODE N`. And, in the default mode, how long a lone
//! message produced after the backlog takes to reach the socket (`BENCH_LATENCY=0` skips it).
//!
//! `BENCH_FORWARDER=PATH` runs another build of the forwarder (to compare two builds in one run
//! of the same broker and raw drains). `BENCH_CHECK=1` exits with an error when a mode loses or duplicates calls, forwards at less
//! than half its target ratio to the raw drain, or spends more than twice its target CPU ratio
//! (gross regressions, for CI).

use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use algorithmia_datadog::config::Config;
use algorithmia_datadog::embedded::{SampleMessages, PUBLIC_SAMPLE};
use algorithmia_datadog::metrics::MetricMapper;
use algorithmia_datadog::Counters;
use algorithmia_datadog::DogStatsdSink;
use algorithmia_datadog::Forwarder;

#[path = "../tests/common/mod.rs"]
mod common;

use common::process::{scratch_dir, status_kib, write, Watched};
use common::tansu::Tansu;
use common::Tally;

const TOPIC: &str = "insights";
const PARTITIONS: i32 = 4;

/// One way of running the forwarder, and what issue 9 asks of it.
struct Mode {
    key: &'static str,
    name: &'static str,
    unix: bool,
    /// Instance lines added to the configuration.
    extra: &'static str,
    target_ratio: f64,
    /// Issue 17: the most CPU per message, as a multiple of the raw drain's in the same round.
    target_cpu_ratio: f64,
    target_rss_mib: u64,
}

const MODES: [Mode; 4] = [
    Mode {
        key: "default",
        name: "aggregated (default: gauges + calls), UDP",
        unix: false,
        extra: "",
        target_ratio: 0.8,
        target_cpu_ratio: 1.5,
        target_rss_mib: 48,
    },
    Mode {
        key: "points-udp",
        name: "every point (`aggregation_interval: 0`), UDP",
        unix: false,
        extra: "    aggregation_interval: 0\n",
        target_ratio: 0.5,
        target_cpu_ratio: 2.5,
        target_rss_mib: 48,
    },
    Mode {
        key: "points-unix",
        name: "every point, Unix datagram socket",
        unix: true,
        extra: "    aggregation_interval: 0\n",
        target_ratio: 0.65,
        target_cpu_ratio: 2.0,
        target_rss_mib: 48,
    },
    Mode {
        key: "distribution",
        name: "aggregated, `duration_milliseconds` as a distribution, UDP",
        unix: false,
        extra: "    distribution_metrics: [duration_milliseconds]\n",
        target_ratio: 0.65,
        target_cpu_ratio: 1.7,
        target_rss_mib: 64,
    },
];

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.replace(['_', ','], "").parse().ok())
        .unwrap_or(default)
}

fn main() {
    let _ = env_logger::builder().format_timestamp_micros().try_init();
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("--raw-drain") => raw_drain(&args[2], &args[3], args[4].parse().expect("N")),
        Some("--instructions") => {
            instructions(mode(&args[2]), args[3].parse().expect("N"));
        }
        _ => orchestrate(),
    }
}

fn mode(key: &str) -> &'static Mode {
    MODES
        .iter()
        .find(|m| m.key == key)
        .unwrap_or_else(|| panic!("no mode {key}"))
}

/// The configuration of one mode.
fn yaml(mode: &Mode, bootstrap: &str, topic: &str, group: &str, url: &str) -> String {
    // BENCH_KAFKA_OPTIONS=key=value,key=value: the forwarder's `kafka_options` (librdkafka
    // properties), to compare fetch sizings.
    let mut options = String::new();
    if let Ok(list) = std::env::var("BENCH_KAFKA_OPTIONS") {
        for (key, value) in list.split(',').filter_map(|kv| kv.split_once('=')) {
            if options.is_empty() {
                options.push_str("    kafka_options:\n");
            }
            options.push_str(&format!("      {}: \"{}\"\n", key.trim(), value.trim()));
        }
    }
    format!(
        "init_config:\n  dogstatsd_url: {url}\n  udp_max_datagrams_per_second: 0\ninstances:\n  - kafka_broker: \"{bootstrap}\"\n    kafka_topic: {topic}\n    consumer_group: {group}\n    start_offset: earliest\n{}{options}",
        mode.extra
    )
}

/// What one process did.
#[derive(Default)]
struct Measured {
    seconds: f64,
    cpu_seconds: f64,
    broker_cpu_seconds: f64,
    peak_rss_kib: u64,
    points: u64,
    datagrams: u64,
    calls: u64,
    distribution_values: u64,
    problem: Option<String>,
}

fn orchestrate() {
    let messages = env_u64("BENCH_MESSAGES", 1_000_000);
    let selected: Vec<&Mode> = match std::env::var("BENCH_MODES") {
        // `raw`: the raw drain only.
        Ok(list) if list.trim() == "raw" => Vec::new(),
        Ok(list) if !list.trim().is_empty() => list.split(',').map(|k| mode(k.trim())).collect(),
        _ => MODES.iter().collect(),
    };
    let check = std::env::var("BENCH_CHECK").is_ok_and(|v| v == "1");
    let dir = scratch_dir();

    let broker = Tansu::start();
    broker.create_topic(TOPIC, PARTITIONS);
    let bootstrap = broker.bootstrap();
    let broker_pid = broker.pid().expect("the broker runs");
    let started = Instant::now();
    let mut samples = SampleMessages::new(7);
    let produced = common::produce(
        &bootstrap,
        TOPIC,
        (0..messages).map(|i| samples.message(i).into_bytes()),
        &[("linger.ms", "50"), ("batch.num.messages", "10000")],
    ) as u64;
    println!(
        "pre-loaded {produced} messages into {PARTITIONS} partitions of a tansu broker in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    let udp = Receiver::udp();
    let unix = Receiver::unix(&dir.join("dsd.socket"));

    // Rounds of: a raw drain, then every mode; and a last raw drain. Each mode is compared with
    // the raw drains just before and after it, so that a change in the machine's load between
    // rounds moves both sides of a ratio.
    let runs = env_u64("BENCH_RUNS", 1).max(1) as usize;
    let mut raws = vec![run_raw_drain(&bootstrap, broker_pid, produced)];
    let mut rounds: Vec<Vec<Measured>> = Vec::new();
    for round in 1..=runs {
        let mut rows = Vec::new();
        for mode in &selected {
            let receiver = if mode.unix { &unix } else { &udp };
            eprintln!("{}: forwarding (round {round})", mode.key);
            rows.push(run_forwarder(
                mode, &dir, &bootstrap, broker_pid, produced, receiver,
            ));
        }
        raws.push(run_raw_drain(&bootstrap, broker_pid, produced));
        let (before, after) = (&raws[round - 1], &raws[round]);
        let raw_cpu = (before.cpu_seconds + after.cpu_seconds) / 2.0;
        let raw_seconds = (before.seconds + after.seconds) / 2.0;
        let spread = before.seconds.max(after.seconds) / before.seconds.min(after.seconds);
        println!(
            "round {round}: raw drain {} and {} messages/s, {:.3} and {:.3} CPU µs/message{}",
            thousands(produced as f64 / before.seconds),
            thousands(produced as f64 / after.seconds),
            before.cpu_seconds * 1e6 / produced as f64,
            after.cpu_seconds * 1e6 / produced as f64,
            if spread > 1.5 {
                format!(" (!! they differ by {spread:.1}x: the machine's load changed, this round's ratios are uncertain)")
            } else {
                String::new()
            }
        );
        for (mode, m) in selected.iter().zip(&rows) {
            println!(
                "round {round}: {}: {} messages/s ({:.2} of raw), {:.3} CPU µs/message ({:.2}x raw), peak RSS {} MiB{}",
                mode.key,
                thousands(produced as f64 / m.seconds),
                raw_seconds / m.seconds,
                m.cpu_seconds * 1e6 / produced as f64,
                m.cpu_seconds / raw_cpu,
                m.peak_rss_kib / 1024,
                m.problem
                    .as_deref()
                    .map(|p| format!(" ({p})"))
                    .unwrap_or_default()
            );
        }
        rounds.push(rows);
    }
    let mut notes = Vec::new();
    if std::env::var("BENCH_LATENCY").map_or(true, |v| v != "0") {
        eprintln!("lone message latency");
        notes.push(lone_message_latency(&dir, &broker, &udp));
    }

    let instructions =
        std::env::var("BENCH_INSTRUCTIONS").map_or(true, |v| v != "0") && which("valgrind");
    let per_message: Vec<Option<(f64, f64)>> = selected
        .iter()
        .map(|m| {
            eprintln!("{}: counting instructions", m.key);
            instructions.then(|| count_instructions(m, &dir)).flatten()
        })
        .collect();

    println!();
    println!(
        "{produced} messages, {PARTITIONS} partitions, tansu {}; {runs} round(s), each mode compared with the raw drains just before and after it; the raw drains: {} messages/s",
        tansu_version(),
        raws.iter()
            .map(|r| thousands(produced as f64 / r.seconds))
            .collect::<Vec<_>>()
            .join(", "),
    );
    println!();
    println!("| mode | CPU µs/message, each round | CPU ratio to raw drain, each round: median (target) | messages/s ratio to raw, each round (target) | messages/s (median) | points/s | datagrams/s | peak RSS, highest (target) | broker CPU µs/message | instructions/message |");
    println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    let per_us = |seconds: f64| seconds * 1e6 / produced as f64;
    let list = |values: &[f64], digits: usize| {
        values
            .iter()
            .map(|v| format!("{v:.digits$}"))
            .collect::<Vec<_>>()
            .join(" / ")
    };
    let raw_cpu: Vec<f64> = raws.iter().map(|r| per_us(r.cpu_seconds)).collect();
    println!(
        "| raw drain (librdkafka only, every drain) | {} | 1 | 1 | {} | | | {} MiB | {:.2} | |",
        list(&raw_cpu, 3),
        thousands(produced as f64 / median(raws.iter().map(|r| r.seconds).collect())),
        raws.iter().map(|r| r.peak_rss_kib).max().unwrap_or(0) / 1024,
        median(raws.iter().map(|r| per_us(r.broker_cpu_seconds)).collect()),
    );
    let mut failures = Vec::new();
    for (i, (mode, ir)) in selected.iter().zip(&per_message).enumerate() {
        let runs_of = |f: &dyn Fn(usize, &Measured) -> f64| -> Vec<f64> {
            rounds
                .iter()
                .enumerate()
                .map(|(r, row)| f(r, &row[i]))
                .collect()
        };
        let cpu = runs_of(&|_, m| per_us(m.cpu_seconds));
        let cpu_ratio =
            runs_of(&|r, m| 2.0 * m.cpu_seconds / (raws[r].cpu_seconds + raws[r + 1].cpu_seconds));
        let rate_ratio = runs_of(&|r, m| (raws[r].seconds + raws[r + 1].seconds) / 2.0 / m.seconds);
        let seconds = median(runs_of(&|_, m| m.seconds));
        let points = median(runs_of(&|_, m| m.points as f64 / m.seconds));
        let datagrams = median(runs_of(&|_, m| m.datagrams as f64 / m.seconds));
        let rss = rounds
            .iter()
            .map(|row| row[i].peak_rss_kib)
            .max()
            .unwrap_or(0);
        println!(
            "| {} | {} | {}: **{:.2}** ({:.1}) | {} ({:.2}) | {} | {} | {} | {} MiB ({} MiB) | {:.2} | {} |",
            mode.name,
            list(&cpu, 3),
            list(&cpu_ratio, 2),
            median(cpu_ratio.clone()),
            mode.target_cpu_ratio,
            list(&rate_ratio, 2),
            mode.target_ratio,
            thousands(produced as f64 / seconds),
            thousands(points),
            thousands(datagrams),
            rss / 1024,
            mode.target_rss_mib,
            median(runs_of(&|_, m| per_us(m.broker_cpu_seconds))),
            ir.map_or("-".to_string(), |(ir, _)| thousands(ir)),
        );
        for (r, row) in rounds.iter().enumerate() {
            let m = &row[i];
            let round = r + 1;
            if m.calls != produced {
                failures.push(format!(
                    "{} (round {round}): {} calls counted for {produced} messages",
                    mode.key, m.calls
                ));
            }
            if mode.key == "distribution" && m.distribution_values != produced {
                failures.push(format!(
                    "{} (round {round}): {} distribution values for {produced} messages",
                    mode.key, m.distribution_values
                ));
            }
            if let Some(p) = &m.problem {
                failures.push(format!("{} (round {round}): {p}", mode.key));
            }
        }
        // Gross regressions only: the machine CI runs on is shared.
        let ratio = median(rate_ratio);
        if ratio < mode.target_ratio / 2.0 {
            failures.push(format!(
                "{}: messages/s ratio {ratio:.2} is below half the target {:.2}",
                mode.key, mode.target_ratio
            ));
        }
        let cpu_ratio = median(cpu_ratio);
        if cpu_ratio > mode.target_cpu_ratio * 2.0 {
            failures.push(format!(
                "{}: CPU ratio {cpu_ratio:.2} is above twice the target {:.1}",
                mode.key, mode.target_cpu_ratio
            ));
        }
    }
    println!();
    for note in &notes {
        println!("{note}");
    }
    for (mode, ir) in selected.iter().zip(&per_message) {
        if let Some((ir, ns)) = ir {
            println!(
                "{}: {:.0} instructions/message under callgrind (decode, map, aggregate, pack; {} messages); {ns:.0} ns/message natively",
                mode.key, ir, INSTRUCTION_MESSAGES
            );
        }
    }
    for f in &failures {
        println!("!! {f}");
    }
    let _ = std::fs::remove_dir_all(&dir);
    if check && !failures.is_empty() {
        std::process::exit(1);
    }
}

/// The forwarder binary with a clean environment: this build's, or `BENCH_FORWARDER`, another
/// build to compare with (the raw drains and the receivers stay the same).
fn forwarder_command(dir: &Path) -> std::process::Command {
    let mut cmd = common::process::forwarder(dir);
    if let Some(other) = std::env::var_os("BENCH_FORWARDER") {
        let mut replaced = std::process::Command::new(other);
        replaced.current_dir(dir).env_clear();
        if let Some(path) = std::env::var_os("PATH") {
            replaced.env("PATH", path);
        }
        cmd = replaced;
    }
    cmd
}

/// With `BENCH_PERF=DIR`, profiles process `pid` with `perf record` (CPU clock, call graphs)
/// into `DIR/perf.<name>.data` until it is stopped.
fn record_profile(name: &str, pid: u32) -> Option<std::process::Child> {
    let dir = std::env::var_os("BENCH_PERF")?;
    let out = Path::new(&dir).join(format!("perf.{name}.data"));
    std::process::Command::new("perf")
        .args(["record", "-e", "cpu-clock", "-F", "4000", "-g", "-p"])
        .arg(pid.to_string())
        .arg("-o")
        .arg(out)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .ok()
}

/// With `BENCH_LOG_DIR`, keeps a process's log there (`<name>.<n>.log`).
fn keep_log(name: &str, lines: &[String]) {
    static KEPT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    if let Some(dir) = std::env::var_os("BENCH_LOG_DIR") {
        let n = KEPT.fetch_add(1, Ordering::Relaxed);
        let path = Path::new(&dir).join(format!("{name}.{n}.log"));
        let _ = std::fs::write(path, lines.join("\n"));
    }
}

fn which(tool: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(tool).is_file()))
}

fn tansu_version() -> String {
    std::process::Command::new(common::tansu::tansu_binary())
        .arg("--version")
        .output()
        .ok()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .trim()
                .replace("tansu ", "")
        })
        .unwrap_or_default()
}

/// `1234567.8` as `1,234,568`.
/// The median of `values` (the mean of the middle two for an even count).
fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

fn thousands(v: f64) -> String {
    let digits = format!("{:.0}", v.max(0.0));
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// CPU time of every thread of a process, in nanoseconds, from `/proc/PID/task/*/schedstat`
/// (nanosecond resolution, unlike `/proc/PID/stat`'s clock ticks).
fn cpu_ns(pid: u32) -> Option<u64> {
    Some(threads_cpu_ns(pid)?.iter().map(|t| t.run_ns).sum())
}

/// One thread's figures from `/proc/PID/task/TID/schedstat`.
struct ThreadTimes {
    tid: u64,
    name: String,
    /// Nanoseconds on a CPU.
    run_ns: u64,
    /// Nanoseconds runnable but waiting for a CPU.
    wait_ns: u64,
    /// Times it was put on a CPU.
    slices: u64,
}

/// Each thread's times.
fn threads_cpu_ns(pid: u32) -> Option<Vec<ThreadTimes>> {
    let mut threads = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).ok()? {
        let path = task.ok()?.path();
        let tid = path
            .file_name()
            .and_then(|n| n.to_str()?.parse().ok())
            .unwrap_or(0);
        let Ok(text) = std::fs::read_to_string(path.join("schedstat")) else {
            continue;
        };
        let mut fields = text
            .split_whitespace()
            .map(|v| v.parse::<u64>().unwrap_or(0));
        let mut next = || fields.next().unwrap_or(0);
        let (run_ns, wait_ns, slices) = (next(), next(), next());
        let name = std::fs::read_to_string(path.join("comm")).unwrap_or_default();
        threads.push(ThreadTimes {
            tid,
            name: name.trim().to_string(),
            run_ns,
            wait_ns,
            slices,
        });
    }
    Some(threads)
}

/// What each thread of `pid` did since `before`, per message, busiest first: CPU time and time
/// spent waiting for a CPU in microseconds, and how many times per thousand messages it was put
/// on a CPU: `name 0.42 µs (waited 0.10 µs, 3.1 slices)`.
fn thread_breakdown(pid: u32, before: &[ThreadTimes], messages: u64) -> String {
    let mut used: Vec<(String, u64, u64, u64)> = threads_cpu_ns(pid)
        .unwrap_or_default()
        .into_iter()
        .map(|t| {
            let was = before.iter().find(|b| b.tid == t.tid);
            let since =
                |now: u64, then: fn(&ThreadTimes) -> u64| now.saturating_sub(was.map_or(0, then));
            (
                t.name.clone(),
                since(t.run_ns, |b| b.run_ns),
                since(t.wait_ns, |b| b.wait_ns),
                since(t.slices, |b| b.slices),
            )
        })
        .filter(|(_, ns, _, _)| *ns * 100 >= messages)
        .collect();
    used.sort_by_key(|t| std::cmp::Reverse(t.1));
    let per = messages.max(1) as f64;
    used.iter()
        .map(|(name, run, wait, slices)| {
            format!(
                "{name} {:.2} µs (waited {:.2} µs, {:.1} slices)",
                *run as f64 / 1e3 / per,
                *wait as f64 / 1e3 / per,
                *slices as f64 * 1000.0 / per
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// CPU samples of one process and of the broker: when the process's busy period ended, and how
/// much CPU time each used until then.
#[derive(Default)]
struct CpuTrace {
    /// When, the process's CPU time, the broker's (nanoseconds).
    samples: Vec<(Instant, u64, u64)>,
}

/// How often the CPU time is sampled, and over how long a busy stretch is judged.
const SAMPLE_EVERY: Duration = Duration::from_millis(5);
const BUSY_SPAN: Duration = Duration::from_millis(20);

impl CpuTrace {
    fn sample(&mut self, pid: u32, broker: u32) {
        if let (Some(ns), Some(broker_ns)) = (cpu_ns(pid), cpu_ns(broker)) {
            self.samples.push((Instant::now(), ns, broker_ns));
        }
    }

    /// The sample that ends the last stretch of `BUSY_SPAN` in which the process used at least
    /// a third of a CPU, after `since`.
    fn busy_until(&self, since: Instant) -> Option<(Instant, u64, u64)> {
        let mut end = None;
        let mut j = 0;
        for (i, &(t, ns, broker)) in self.samples.iter().enumerate() {
            while j < i && t.duration_since(self.samples[j].0) > BUSY_SPAN {
                j += 1;
            }
            let (t0, ns0, _) = self.samples[j];
            let span = t.duration_since(t0).as_nanos() as u64;
            if t > since && span > 0 && (ns - ns0) * 3 >= span {
                end = Some((t, ns, broker));
            }
        }
        end
    }
}

/// One process's run over the whole topic, as seen from outside.
struct Watch {
    watched: Watched,
    /// From the assignment to the end of the busy period.
    seconds: f64,
    /// CPU time the process, and the broker, used meanwhile.
    cpu_seconds: f64,
    broker_cpu_seconds: f64,
    peak_rss_kib: u64,
    /// CPU time per thread, per message.
    threads: String,
    /// Why the run did not complete, if it did not.
    problem: Option<String>,
}

/// Starts `cmd` and samples its CPU time until `done` says every message was handled (or
/// nothing moved for 30 s, as `progress` tells), then measures it. `assigned` tells from the
/// process's output when it got its partitions.
fn watch(
    name: &str,
    cmd: std::process::Command,
    broker: u32,
    messages: u64,
    assigned: impl Fn(&Watched) -> bool,
    progress: impl Fn(&Watched) -> u64,
    done: impl Fn(&Watched) -> bool,
) -> Watch {
    let mut watched = Watched::start(cmd);
    let pid = watched.pid();
    let perf = record_profile(name, pid);
    let mut trace = CpuTrace::default();
    let mut start: Option<(Instant, u64, u64)> = None;
    let mut threads_before = Vec::new();
    let mut problem = None;
    let mut last_progress = (0, Instant::now());
    let limit = Duration::from_secs(30);
    while !done(&watched) {
        trace.sample(pid, broker);
        if start.is_none() && assigned(&watched) {
            trace.sample(pid, broker);
            start = trace.samples.last().copied();
            threads_before = threads_cpu_ns(pid).unwrap_or_default();
        }
        let now = progress(&watched);
        if now != last_progress.0 {
            last_progress = (now, Instant::now());
        } else if last_progress.1.elapsed() > limit {
            problem = Some(format!("stalled at {now} messages"));
            break;
        } else if matches!(watched.child.try_wait(), Ok(Some(_))) {
            problem = Some("exited".to_string());
            break;
        }
        std::thread::sleep(SAMPLE_EVERY);
    }
    // Idle samples after the end, so that the busy period is seen to end.
    for _ in 0..10 {
        trace.sample(pid, broker);
        std::thread::sleep(SAMPLE_EVERY);
    }
    if let Some(mut perf) = perf {
        let _ = std::process::Command::new("kill")
            .args(["-INT", &perf.id().to_string()])
            .status();
        let _ = perf.wait();
    }
    let (started, cpu0, broker0) = start.unwrap_or((Instant::now(), 0, 0));
    let end = trace.busy_until(started);
    let (seconds, cpu_seconds, broker_cpu_seconds) = match end {
        Some((t, ns, broker_ns)) => (
            t.duration_since(started).as_secs_f64(),
            ns.saturating_sub(cpu0) as f64 / 1e9,
            broker_ns.saturating_sub(broker0) as f64 / 1e9,
        ),
        None => (f64::NAN, f64::NAN, f64::NAN),
    };
    Watch {
        threads: thread_breakdown(pid, &threads_before, messages),
        peak_rss_kib: status_kib(Some(pid), "VmHWM:"),
        seconds,
        cpu_seconds,
        broker_cpu_seconds,
        watched,
        problem,
    }
}

/// The raw drain, as a process of its own: `<this executable> --raw-drain BOOTSTRAP GROUP N`.
fn run_raw_drain(bootstrap: &str, broker: u32, messages: u64) -> Measured {
    let exe = std::env::current_exe().expect("this executable");
    let group = common::unique("raw-drain");
    let mut cmd = std::process::Command::new(exe);
    cmd.args(["--raw-drain", bootstrap, &group, &messages.to_string()]);
    let stdout_has = |w: &Watched, prefix: &str| {
        w.stdout
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.starts_with(prefix))
    };
    let run = watch(
        "raw-drain",
        cmd,
        broker,
        messages,
        |w| stdout_has(w, "assigned"),
        |w| w.stdout.lock().unwrap().len() as u64,
        |w| stdout_has(w, "done"),
    );
    let (_, stdout, stderr) = run.watched.stop();
    keep_log("raw-drain", &stderr);
    if let Some(line) = stdout.iter().find(|l| l.starts_with("done")) {
        eprintln!(
            "raw drain: {line}; from outside: {:.3} s from the assignment",
            run.seconds
        );
    }
    eprintln!("raw drain: per message by thread: {}", run.threads);
    Measured {
        seconds: run.seconds,
        cpu_seconds: run.cpu_seconds,
        broker_cpu_seconds: run.broker_cpu_seconds,
        peak_rss_kib: run.peak_rss_kib,
        calls: messages,
        problem: run.problem,
        ..Measured::default()
    }
}

/// A plain consumer, librdkafka's defaults: polls every message of the topic and reads its
/// payload's length, nothing else. Prints `assigned` when it has its partitions and
/// `done` after the last message, then waits to be stopped (so its peak RSS can be read).
fn raw_drain(bootstrap: &str, group: &str, messages: u64) {
    use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};
    use rdkafka::Message;

    struct Announce;
    impl rdkafka::ClientContext for Announce {}
    impl ConsumerContext for Announce {
        fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
            if let Rebalance::Assign(tpl) = rebalance {
                if tpl.count() > 0 {
                    println!("assigned {}", tpl.count());
                }
            }
        }
    }

    // librdkafka's defaults: the forwarder's fetch sizing must not make the yardstick slower.
    // BENCH_RAW_OPTIONS=key=value,... changes them, to compare.
    let mut client = rdkafka::ClientConfig::new();
    client
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false");
    if let Ok(list) = std::env::var("BENCH_RAW_OPTIONS") {
        for (key, value) in list.split(',').filter_map(|kv| kv.split_once('=')) {
            client.set(key.trim(), value.trim());
        }
    }
    let consumer: BaseConsumer<Announce> = client
        .create_with_context(Announce)
        .expect("a raw consumer");
    consumer.subscribe(&[TOPIC]).expect("subscribe");
    let (mut seen, mut bytes) = (0u64, 0u64);
    let mut first: Option<Instant> = None;
    while seen < messages {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(message)) => {
                first.get_or_insert_with(Instant::now);
                seen += 1;
                bytes += message.payload().map_or(0, |p| p.len() as u64);
                if seen % 100_000 == 0 {
                    // Progress, for the benchmark's stall detection.
                    println!("at {seen}");
                }
            }
            Some(Err(e)) => {
                eprintln!("raw drain: {e}");
                std::thread::sleep(Duration::from_millis(500));
            }
            None => {}
        }
    }
    let took = first.map_or(0.0, |f| f.elapsed().as_secs_f64());
    println!(
        "done {seen} messages ({bytes} bytes) in {took:.3} s from the first: {:.0} messages/s",
        seen as f64 / took
    );
    // Stays alive (and in the group) until the benchmark has read its peak RSS and stops it.
    loop {
        consumer.poll(Duration::from_millis(100));
    }
}

/// Runs the forwarder on the whole topic in `mode`.
fn run_forwarder(
    mode: &Mode,
    dir: &Path,
    bootstrap: &str,
    broker: u32,
    messages: u64,
    receiver: &Receiver,
) -> Measured {
    let group = common::unique(&format!("bench-{}", mode.key));
    let config = write(
        dir,
        &format!("{}.yaml", mode.key),
        &yaml(mode, bootstrap, TOPIC, &group, &receiver.url),
    );
    receiver.tally.take();
    let mut cmd = forwarder_command(dir);
    cmd.args(["run", "--config"])
        .arg(&config)
        .env("RUST_LOG", "warn,algorithmia_datadog::source=info");
    let calls = || receiver.tally.calls.load(Ordering::Relaxed);
    let receiving = || -> u64 {
        threads_cpu_ns(std::process::id())
            .unwrap_or_default()
            .iter()
            .filter(|t| t.name == "agent")
            .map(|t| t.run_ns)
            .sum()
    };
    let received_before = receiving();
    let run = watch(
        mode.key,
        cmd,
        broker,
        messages,
        |w| w.lines().iter().any(|l| l.contains("assigned")),
        |_| calls(),
        |_| calls() >= messages,
    );
    let (points, calls, distribution_values, datagrams) = receiver.tally.take();
    eprintln!(
        "{}: per message by thread: {}; the receiving threads {:.2} µs",
        mode.key,
        run.threads,
        receiving().saturating_sub(received_before) as f64 / 1e3 / messages as f64
    );
    let (code, _, stderr) = run.watched.stop();
    keep_log(mode.key, &stderr);
    let mut problem = run.problem;
    if code != Some(0) {
        problem.get_or_insert(format!("exit code {code:?}; log:\n{}", stderr.join("\n")));
    }
    Measured {
        seconds: run.seconds,
        cpu_seconds: run.cpu_seconds,
        broker_cpu_seconds: run.broker_cpu_seconds,
        peak_rss_kib: run.peak_rss_kib,
        points,
        datagrams,
        calls,
        distribution_values,
        problem,
    }
}

/// Starts the forwarder (default mode) on a topic of its own and produces lone messages into it,
/// each just after a window boundary (the worst case): the longest time from the start of
/// producing to the arrival of its call count.
fn lone_message_latency(dir: &Path, broker: &Tansu, receiver: &Receiver) -> String {
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
    const LONE: &str = "lone";
    let default = mode("default");
    broker.create_topic(LONE, 1);
    let bootstrap = broker.bootstrap();
    let group = common::unique("lone");
    let config = write(
        dir,
        "lone.yaml",
        &yaml(default, &bootstrap, LONE, &group, &receiver.url),
    );
    let interval = Config::from_yaml(
        &std::fs::read_to_string(&config).unwrap_or_default(),
        "bench",
        &|_| None,
    )
    .map_or(2, |c| c.instances[0].aggregation_interval);
    let mut cmd = forwarder_command(dir);
    cmd.args(["run", "--config"])
        .arg(&config)
        .env("RUST_LOG", "warn,algorithmia_datadog::source=info");
    let watched = Watched::start(cmd);
    if !watched.wait_for_log("assigned", Duration::from_secs(30)) {
        return "lone message: the forwarder got no partition within 30 s".to_string();
    }
    let producer: BaseProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("linger.ms", "0")
        .create()
        .expect("a producer");
    // A first message, so that the producer is connected and the consumer is fetching.
    let _ = producer.send(BaseRecord::<(), str>::to(LONE).payload(PUBLIC_SAMPLE));
    let _ = producer.flush(Duration::from_secs(10));
    std::thread::sleep(Duration::from_secs(interval) + Duration::from_millis(500));
    receiver.tally.take();
    // Produced at these offsets (ms) from a window boundary: just after one is the longest
    // wait for the window, just before one is where a slow fetch makes it miss that window.
    let phases: [i64; 6] = [10, -10, -50, -100, -150, -250];
    let period = interval.max(1) as i64 * 1000;
    let mut latencies = Vec::new();
    for phase in phases {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis() as i64;
        let at = (now / period + 1) * period + phase;
        let at = if at <= now + 5 { at + period } else { at };
        std::thread::sleep(Duration::from_millis((at - now) as u64));
        let before = receiver.tally.calls.load(Ordering::Relaxed);
        let sent = Instant::now();
        let _ = producer.send(BaseRecord::<(), str>::to(LONE).payload(PUBLIC_SAMPLE));
        let _ = producer.flush(Duration::from_secs(10));
        while receiver.tally.calls.load(Ordering::Relaxed) == before
            && sent.elapsed() < Duration::from_secs(30)
        {
            std::thread::sleep(Duration::from_millis(1));
        }
        latencies.push((phase, sent.elapsed()));
        // The next one in a window of its own.
        std::thread::sleep(Duration::from_millis(period as u64));
    }
    let _ = watched.stop();
    receiver.tally.take();
    let longest = latencies.iter().map(|(_, l)| *l).max().unwrap_or_default();
    let each: Vec<String> = latencies
        .iter()
        .map(|(phase, l)| format!("{} ms at {phase:+} ms", l.as_millis()))
        .collect();
    format!(
        "A lone message produced at an offset from a window boundary reached the socket within {} ms at the longest (target: the {interval} s interval + 150 ms): {}.",
        longest.as_millis(),
        each.join(", ")
    )
}

/// A socket standing in for the Agent, drained by a thread of its own.
struct Receiver {
    url: String,
    tally: Arc<Tally>,
    _stop: Arc<AtomicBool>,
}

impl Receiver {
    fn udp() -> Receiver {
        let (socket, url) = common::udp_agent();
        Receiver::start(url, socket)
    }

    fn unix(path: &Path) -> Receiver {
        let socket = std::os::unix::net::UnixDatagram::bind(path).expect("bind");
        Receiver::start(format!("unix://{}", path.display()), socket)
    }

    fn start(url: String, socket: impl AsRawFd + Send + 'static) -> Receiver {
        let tally = Arc::new(Tally::default());
        let stop = Arc::new(AtomicBool::new(false));
        let (t, s) = (tally.clone(), stop.clone());
        std::thread::Builder::new()
            .name("agent".into())
            .spawn(move || receive(&socket, &t, &s))
            .expect("a receiver thread");
        Receiver {
            url,
            tally,
            _stop: stop,
        }
    }
}

/// Reads datagrams many at a time (`recvmmsg`) until the process ends.
fn receive(socket: &impl AsRawFd, tally: &Tally, stop: &AtomicBool) {
    const BATCH: usize = 64;
    const SIZE: usize = 65_536;
    let mut buffers = vec![0u8; BATCH * SIZE];
    let fd = socket.as_raw_fd();
    let timeout = libc::timeval {
        tv_sec: 0,
        tv_usec: 200_000,
    };
    // SAFETY: a valid descriptor and a timeval of the given size.
    unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            &timeout as *const libc::timeval as *const libc::c_void,
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        );
    }
    // BENCH_RECEIVER=poll: read what arrived every millisecond instead of sleeping in the
    // kernel until a datagram comes (no wake-up per datagram).
    let polling = std::env::var("BENCH_RECEIVER").is_ok_and(|v| v == "poll");
    while !stop.load(Ordering::Relaxed) {
        let mut iovecs: Vec<libc::iovec> = buffers
            .chunks_mut(SIZE)
            .map(|b| libc::iovec {
                iov_base: b.as_mut_ptr() as *mut libc::c_void,
                iov_len: SIZE,
            })
            .collect();
        // SAFETY: zeroed mmsghdr is valid (null name, no control data).
        let mut headers: Vec<libc::mmsghdr> = iovecs
            .iter_mut()
            .map(|iov| {
                let mut h: libc::mmsghdr = unsafe { std::mem::zeroed() };
                h.msg_hdr.msg_iov = iov;
                h.msg_hdr.msg_iovlen = 1;
                h
            })
            .collect();
        // SAFETY: BATCH headers, each pointing at its own buffer of SIZE bytes.
        let n = unsafe {
            libc::recvmmsg(
                fd,
                headers.as_mut_ptr(),
                BATCH as libc::c_uint,
                if polling {
                    libc::MSG_DONTWAIT
                } else {
                    libc::MSG_WAITFORONE
                },
                std::ptr::null_mut(),
            )
        };
        if n <= 0 {
            if polling {
                std::thread::sleep(Duration::from_millis(1));
            }
            continue;
        }
        for (i, h) in headers.iter().take(n as usize).enumerate() {
            let len = h.msg_len as usize;
            tally.count(&buffers[i * SIZE..i * SIZE + len]);
        }
    }
}

/// The forwarder's own work for one mode, without Kafka or sockets: `N` pre-generated sample
/// messages through `Forwarder::handle` (decode, map, aggregate, pack into datagrams that a null
/// sink discards), as the consume loop calls it. Run under callgrind by [`count_instructions`];
/// prints the native time per message.
fn instructions(mode: &Mode, messages: u64) {
    let config = Config::from_yaml(
        &yaml(
            mode,
            "127.0.0.1:9092",
            TOPIC,
            "callgrind",
            if mode.unix {
                "unix:///nonexistent/dsd.socket"
            } else {
                "udp://127.0.0.1:9"
            },
        ),
        "bench",
        &|_| None,
    )
    .expect("configuration");
    let instance = &config.instances[0];
    let counters = Arc::new(Counters::default());
    let sink = DogStatsdSink::builder(NullSink, config.max_datagram_bytes())
        .counters(counters.clone())
        .build();
    let mut forwarder = Forwarder::builder(
        MetricMapper::for_instance(&config.metric_prefix, instance),
        sink,
        counters,
    )
    .aggregation_interval(Duration::from_secs(instance.aggregation_interval))
    .max_contexts(instance.max_contexts)
    .build();
    let mut samples = SampleMessages::new(7);
    let payloads: Vec<Vec<u8>> = (0..messages)
        .map(|i| samples.message(i).into_bytes())
        .collect();
    let started = Instant::now();
    forward_all(&mut forwarder, &payloads);
    let took = started.elapsed();
    println!("ns/message {:.1}", took.as_nanos() as f64 / messages as f64);
}

/// The measured region (callgrind collects inside this function only). Deadlines are checked
/// once per batch of messages, as the consuming loop does.
#[inline(never)]
fn forward_all(forwarder: &mut Forwarder, payloads: &[Vec<u8>]) {
    for (i, payload) in payloads.iter().enumerate() {
        let partition = (i % PARTITIONS as usize) as i32;
        forwarder.handle(partition, (i / PARTITIONS as usize) as i64, Some(payload));
        if i % 64 == 63 {
            forwarder.flush_if_due(Instant::now());
        }
    }
    forwarder.flush();
}

struct NullSink;

impl cadence::MetricSink for NullSink {
    fn emit(&self, metric: &str) -> std::io::Result<usize> {
        Ok(std::hint::black_box(metric).len())
    }
}

/// How many messages the instruction count runs (in a few seconds under callgrind).
const INSTRUCTION_MESSAGES: u64 = 50_000;

/// Instructions per message of `mode` under callgrind, and the native time per message; `None`
/// if valgrind fails.
fn count_instructions(mode: &Mode, dir: &Path) -> Option<(f64, f64)> {
    let exe = std::env::current_exe().ok()?;
    let out: PathBuf = dir.join(format!("callgrind.{}.out", mode.key));
    let status = std::process::Command::new("valgrind")
        .args([
            "--tool=callgrind",
            "--collect-atstart=no",
            "--toggle-collect=*forward_all*",
        ])
        .arg(format!("--callgrind-out-file={}", out.display()))
        .arg(&exe)
        .args([
            "--instructions",
            mode.key,
            &INSTRUCTION_MESSAGES.to_string(),
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .ok()?;
    if !status.success() {
        return None;
    }
    let text = std::fs::read_to_string(&out).ok()?;
    let total: f64 = text
        .lines()
        .find_map(|l| {
            l.strip_prefix("summary:")
                .or_else(|| l.strip_prefix("totals:"))
        })
        .and_then(|v| v.split_whitespace().next()?.parse().ok())?;
    let native = std::process::Command::new(&exe)
        .args(["--instructions", mode.key, "200000"])
        .output()
        .ok()?;
    let ns = String::from_utf8_lossy(&native.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("ns/message ")?.trim().parse().ok())
        .unwrap_or(f64::NAN);
    Some((total / INSTRUCTION_MESSAGES as f64, ns))
}
