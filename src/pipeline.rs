//! The pipeline of one instance: Kafka source → Insights decoding → metric mapping →
//! aggregation → DogStatsD sink, and the loop that drives it until it is told to stop.
//!
//! [`Forwarder`] is the part after the source, and decides what was delivered. [`run_instance`]
//! owns the consumer, wakes the forwarder when a window or buffer is due, and shuts down within a
//! fixed budget even when the broker is slow or gone. This is the one place that hands offsets
//! to librdkafka: [`store`] on a schedule, and [`commit`] when partitions leave, on revocation
//! and at shutdown alike.
//!
//! The loop is [`Consuming`](State::Consuming) or, when the Agent refuses a write,
//! [`Paused`](State::Paused): it pauses the assignment and keeps polling (rebalances and the
//! group go on) while it retries the sink with back-off, and resumes once everything held back
//! went out.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::KafkaResult;
use rdkafka::{Message, TopicPartitionList};

use crate::config::{Config, HealthEndpoint, Instance};
use crate::forwarder::Forwarder;
use crate::metrics::MetricMapper;
use crate::probes::{Check, ProbeServer};
use crate::sink::{
    open_transport, stdout_closed, DogStatsdSink, OneByOne, SendDatagrams, StdoutMetricSink,
    TeeMetricSink, Transport,
};
use crate::source::{client_config, OnRevoke, SourceContext, BATCH};
use crate::telemetry::{spawn_reporter, Counters, Reporter, Snapshot};
use crate::tls_diagnosis::CertificateCheck;

/// How often delivered offsets are handed to librdkafka (which commits them every
/// `commit_interval_ms`).
pub const STORE_INTERVAL: Duration = Duration::from_millis(200);

/// First and longest wait between write attempts while the Agent refuses data. A refused write
/// costs microseconds, so a second between attempts keeps the wait idle and the recovery prompt.
const RETRY_FIRST: Duration = Duration::from_millis(50);
const RETRY_MAX: Duration = Duration::from_secs(1);

/// Most of the group's events served in one turn of the loop.
const MAX_EVENTS_PER_TURN: usize = 8;

/// The longest `poll` wait, so that the stop flag is seen promptly.
const MAX_POLL_WAIT: Duration = Duration::from_millis(100);

/// Where an instance writes its datagrams.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    /// To the configured DogStatsD destination.
    Send,
    /// To standard output only (`--dry-run`).
    Print,
    /// To the destination, and a copy to standard output (`demo --print`).
    SendAndPrint,
}

/// How a run ends and what it reports to.
#[derive(Clone)]
pub struct RunOptions {
    /// Raised by a signal (or a test) to stop.
    pub stop: Arc<AtomicBool>,
    /// Stop on its own after this many messages (demo, benchmark, tests).
    pub max_messages: Option<u64>,
    /// Where datagrams go: the configured destination, standard output, or both.
    pub output: Output,
    /// How long flushing, committing and closing may take once stopping began.
    pub shutdown_budget: Duration,
    /// How often the self-metrics are sent; `None` sends none (and no service checks).
    pub self_metrics_every: Option<Duration>,
    /// How often the service checks are sent.
    pub service_checks_every: Duration,
    /// Fail with [`RunError::Refused`] once the destination has refused data this long (the
    /// demo); `None` retries for as long as it takes (the daemon).
    pub give_up_after: Option<Duration>,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            stop: Arc::new(AtomicBool::new(false)),
            max_messages: None,
            output: Output::Send,
            shutdown_budget: Duration::from_secs(8),
            self_metrics_every: Some(Duration::from_secs(10)),
            service_checks_every: Duration::from_secs(15),
            give_up_after: None,
        }
    }
}

/// Why a run failed.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The DogStatsD destination could not be opened.
    #[error("cannot open the DogStatsD destination {destination}: {source}")]
    Destination {
        /// The destination.
        destination: String,
        /// The cause.
        source: std::io::Error,
    },
    /// librdkafka refused to create the consumer or to subscribe.
    #[error("instance {index} ({topic}): {source}")]
    Kafka {
        /// The instance.
        index: usize,
        /// Its topic.
        topic: String,
        /// The cause.
        source: rdkafka::error::KafkaError,
    },
    /// librdkafka raised a fatal error; the consumer cannot go on.
    #[error("instance {index} ({topic}): fatal Kafka error: {reason}")]
    Fatal {
        /// The instance.
        index: usize,
        /// Its topic.
        topic: String,
        /// librdkafka's description.
        reason: String,
    },
    /// The destination refused every write for [`RunOptions::give_up_after`].
    #[error("the DogStatsD destination refused every write for {} s: {error}", .waited.as_secs())]
    Refused {
        /// How long it refused data.
        waited: Duration,
        /// The last write error.
        error: String,
    },
    /// A forwarding thread panicked.
    #[error("instance {0} stopped unexpectedly")]
    Panicked(usize),
    /// The health probes' address could not be listened on.
    #[error("cannot serve the health probes on {address} (init_config.health_address): {source}")]
    Probes {
        /// `init_config.health_address`.
        address: String,
        /// The cause.
        source: std::io::Error,
    },
    /// A thread could not be started.
    #[error("cannot start the {thread} thread: {source}")]
    Spawn {
        /// Which thread.
        thread: String,
        /// The cause.
        source: std::io::Error,
    },
}

/// Runs every instance of `config` on its own thread until `options.stop` is raised (or each
/// has consumed `max_messages`). Returns the summed counters.
pub fn run(config: &Config, options: &RunOptions) -> Result<Snapshot, RunError> {
    let counters: Vec<Arc<Counters>> = config.instances.iter().map(|_| Arc::default()).collect();
    if let Some(health) = &config.health {
        serve_probes(health, &counters)?;
    }
    run_with_counters(config, options, &counters)
}

/// Serves `/livez` (every instance's loop turns) and `/readyz` (every instance is in its group,
/// or waits for a broker it never reached) for the life of the process.
fn serve_probes(health: &HealthEndpoint, counters: &[Arc<Counters>]) -> Result<(), RunError> {
    let stall_ms = health.stall_seconds * 1000;
    let each = |check: fn(&Counters, u64) -> Result<String, String>| -> Check {
        let counters = counters.to_vec();
        Box::new(move || {
            let mut answers = Vec::with_capacity(counters.len());
            for (index, counters) in counters.iter().enumerate() {
                let answer = check(counters, stall_ms);
                let answer = answer.map_err(|why| format!("instance {index}: {why}"))?;
                answers.push(format!("instance {index}: {answer}"));
            }
            Ok(answers.join("; "))
        })
    };
    let server = ProbeServer::new(
        each(|c, stall_ms| c.health.liveness(stall_ms)),
        each(|c, _| c.health.readiness()),
    );
    let bound = server
        .spawn(&health.address)
        .map_err(|source| RunError::Probes {
            address: health.address.clone(),
            source,
        })?;
    log::info!("health probes: http://{bound}/livez and /readyz");
    Ok(())
}

/// Like [`run`], counting into the given counters (one per instance) so a caller can watch.
pub fn run_with_counters(
    config: &Config,
    options: &RunOptions,
    counters: &[Arc<Counters>],
) -> Result<Snapshot, RunError> {
    let results: Vec<Result<Snapshot, RunError>> = std::thread::scope(|scope| {
        let handles: Vec<_> = config
            .instances
            .iter()
            .zip(counters)
            .map(|(instance, counters)| {
                let counters = counters.clone();
                std::thread::Builder::new()
                    .name(format!("instance-{}", instance.index))
                    .spawn_scoped(scope, move || {
                        let _guard = StopOnPanic(&options.stop);
                        let result = run_instance(config, instance, options, counters);
                        if result.is_err() {
                            // One failed instance stops the others: the process exits non-zero.
                            options.stop.store(true, Ordering::Relaxed);
                        }
                        result
                    })
            })
            .collect();
        handles
            .into_iter()
            .enumerate()
            .map(|(i, handle)| match handle {
                Ok(h) => h.join().unwrap_or(Err(RunError::Panicked(i))),
                Err(source) => Err(RunError::Spawn {
                    thread: format!("instance-{i}"),
                    source,
                }),
            })
            .collect()
    });
    let mut total = Snapshot::default();
    for result in results {
        total = total.merged(&result?);
    }
    Ok(total)
}

/// Raises the stop flag if the thread it lives on panics, so that the other instances stop and
/// the process exits instead of forwarding some topics and silently not others.
struct StopOnPanic<'a>(&'a AtomicBool);

impl Drop for StopOnPanic<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.store(true, Ordering::Relaxed);
        }
    }
}

/// Runs one instance on the calling thread.
pub fn run_instance(
    config: &Config,
    instance: &Instance,
    options: &RunOptions,
    counters: Arc<Counters>,
) -> Result<Snapshot, RunError> {
    let kafka_err = |source| RunError::Kafka {
        index: instance.index,
        topic: instance.topic.clone(),
        source,
    };
    let transport: Box<dyn SendDatagrams> = match options.output {
        Output::Send => Box::new(open_destination(config)?),
        Output::Print => Box::new(OneByOne(StdoutMetricSink)),
        Output::SendAndPrint => Box::new(OneByOne(TeeMetricSink(
            Box::new(open_destination(config)?),
            StdoutMetricSink,
        ))),
    };
    let sink = DogStatsdSink::builder_boxed(transport, config.max_datagram_bytes())
        .counters(counters.clone())
        .build();
    let mapper = MetricMapper::for_instance(&config.metric_prefix, instance);
    let forwarder = Forwarder::builder(mapper, sink, counters.clone())
        .aggregation_interval(Duration::from_secs(instance.aggregation_interval))
        .max_contexts(instance.max_contexts)
        .packed_distributions(config.packed_distributions)
        .topic(&instance.topic)
        .build();
    // Started before the consumer exists: an error here needs no Kafka shutdown.
    let reporter_done = Arc::new(AtomicBool::new(false));
    let reporter = match options.self_metrics_every {
        Some(every) => Some(start_reporter(
            config,
            instance,
            options,
            &counters,
            &reporter_done,
            every,
        )?),
        None => None,
    };
    let dry_run = options.output == Output::Print;
    let delivery = Delivery {
        forwarder: Mutex::new(forwarder),
        commits: !dry_run,
    };
    let context = SourceContext::new(delivery, counters.clone(), &instance.topic)
        .with_certificate_check(CertificateCheck::for_instance(instance));
    let mut kafka_config = client_config(instance);
    let group = consumer_group(instance, options.output);
    if dry_run {
        // A dry run must not take partitions from the running daemon, nor commit offsets for
        // messages it only printed: its own group, and no commits.
        kafka_config
            .set("group.id", &group)
            .set("enable.auto.commit", "false");
    }
    let started = kafka_config
        .create_with_context(context)
        .and_then(|consumer: KafkaConsumer| {
            consumer.subscribe(&[&instance.topic])?;
            Ok(consumer)
        });
    let consumer = match started {
        Ok(consumer) => consumer,
        Err(e) => {
            reporter_done.store(true, Ordering::Relaxed);
            return Err(kafka_err(e));
        }
    };
    log::info!(
        "instance {}: consuming {} from {} as group {}, sending to {}",
        instance.index,
        instance.topic,
        instance.brokers.join(","),
        group,
        match options.output {
            Output::Print => "stdout (dry run)".to_string(),
            _ => config.dogstatsd.to_string(),
        }
    );

    let fetching = FetchQueueOpen::open(&consumer);
    let mut outcome = consume(&consumer, instance, options, &counters);
    if let (Ok(()), Some(limit)) = (&outcome, options.give_up_after) {
        outcome = deliver_before_stopping(&consumer, &counters, limit);
    }
    drop(fetching);
    let stopping_since = Instant::now();
    shutdown(consumer, instance, options, stopping_since);
    reporter_done.store(true, Ordering::Relaxed);
    if let Some(handle) = reporter {
        let _ = handle.join();
    }
    outcome.map(|()| counters.snapshot())
}

fn open_destination(config: &Config) -> Result<Transport, RunError> {
    open_transport(&config.dogstatsd, config.udp_max_datagrams_per_second).map_err(|source| {
        RunError::Destination {
            destination: config.dogstatsd.to_string(),
            source,
        }
    })
}

/// The consumer group an instance joins: a dry run has one of its own, `<group>-dry-run`.
fn consumer_group(instance: &Instance, output: Output) -> String {
    match output {
        Output::Print => format!("{}-dry-run", instance.consumer_group),
        Output::Send | Output::SendAndPrint => instance.consumer_group.clone(),
    }
}

fn start_reporter(
    config: &Config,
    instance: &Instance,
    options: &RunOptions,
    counters: &Arc<Counters>,
    done: &Arc<AtomicBool>,
    every: Duration,
) -> Result<std::thread::JoinHandle<()>, RunError> {
    let open = || match options.output {
        Output::Print => Ok(Transport::Stdout(StdoutMetricSink)),
        _ => open_destination(config),
    };
    // The self-metrics name the group the consumer is in.
    let instance = Instance {
        consumer_group: consumer_group(instance, options.output),
        ..instance.clone()
    };
    let reporter = Reporter::new(open()?, Box::new(open()?), counters.clone(), &instance);
    spawn_reporter(reporter, done.clone(), every, options.service_checks_every).map_err(|source| {
        RunError::Spawn {
            thread: "telemetry".into(),
            source,
        }
    })
}

/// The consumer of one instance, whose rebalance callback asks the forwarder.
type KafkaConsumer = BaseConsumer<SourceContext<Delivery>>;

/// The consumer's fetch queue, open while this lives: it must be closed before the consumer is
/// destroyed, whichever way the consuming loop ends (a panic included).
struct FetchQueueOpen<'a>(&'a KafkaConsumer);

impl<'a> FetchQueueOpen<'a> {
    fn open(consumer: &'a KafkaConsumer) -> Self {
        consumer.context().open_fetch_queue(consumer);
        FetchQueueOpen(consumer)
    }
}

impl Drop for FetchQueueOpen<'_> {
    fn drop(&mut self) {
        self.0.context().close_fetch_queue();
    }
}

/// The forwarder, as the consuming loop and the rebalance callback share it.
struct Delivery {
    /// Locked by the consuming thread around each message, and by the rebalance callback, which
    /// runs inside `poll` on that same thread.
    forwarder: Mutex<Forwarder>,
    /// Whether offsets are stored and committed (not in a dry run).
    commits: bool,
}

impl Delivery {
    /// Locks the forwarder, even if a panic poisoned the lock (its state stays consistent:
    /// offsets only move after a completed write).
    fn lock(&self) -> MutexGuard<'_, Forwarder> {
        self.forwarder.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl OnRevoke for Delivery {
    fn revoke(&self, consumer: &KafkaConsumer, partitions: &[i32], lost: bool) {
        // Send what is buffered so the next owner starts after it, not before it. One attempt
        // only: retrying here would hold up the whole group's rebalance while the Agent is down.
        // If it fails, what was not sent is not committed, and the next owner consumes it again.
        let released = self.lock().release(Some(partitions));
        if !released.all_sent {
            log::warn!("partitions {partitions:?} revoked while the Agent refuses data; their unsent messages will be consumed again");
        }
        if released.offsets.count() > 0 && self.commits && !lost {
            if let Err(e) = commit(consumer, &released.offsets) {
                consumer
                    .context()
                    .log_problem("commit", &format!("commit on revocation failed: {e}"));
            }
        }
    }
}

/// Hands delivered offsets to librdkafka, which commits them every `commit_interval_ms`; with
/// `now`, asks it to commit them at once too.
fn store(consumer: &KafkaConsumer, offsets: &TopicPartitionList, now: bool) {
    if let Err(e) = consumer.store_offsets(offsets) {
        // Happens for a partition revoked in the meantime; its new owner re-reads.
        log::debug!("storing offsets failed: {e}");
    } else if now {
        // Failures reach the commit callback, which logs them.
        let _ = consumer.commit_consumer_state(CommitMode::Async);
    }
}

/// Commits the offsets of partitions leaving this member (revocation, shutdown), and waits for
/// the answer. Stored first, so that librdkafka's own commit as they go carries no older ones.
fn commit(consumer: &KafkaConsumer, offsets: &TopicPartitionList) -> KafkaResult<()> {
    let _ = consumer.store_offsets(offsets);
    consumer.commit(offsets, CommitMode::Sync)
}

/// What the consuming loop is doing.
#[derive(Debug, Clone, Copy)]
enum State {
    /// Taking messages, and writing windows and buffers as they fall due.
    Consuming,
    /// The Agent refused a write: fetching is paused (the group goes on) until a retry at
    /// `retry_at` sends everything held back; each failed retry doubles `backoff`.
    Paused {
        retry_at: Instant,
        backoff: Duration,
    },
}

impl State {
    fn paused(now: Instant) -> State {
        State::Paused {
            retry_at: now + RETRY_FIRST,
            backoff: RETRY_FIRST,
        }
    }
}

/// When the loop next has work besides taking messages.
struct Schedule {
    /// When delivered offsets are next handed to librdkafka.
    store: Instant,
    /// When the forwarder next has a window or a buffer to write.
    flush: Option<Instant>,
}

/// Takes messages until told to stop, or until `max_messages`.
fn consume(
    consumer: &KafkaConsumer,
    instance: &Instance,
    options: &RunOptions,
    counters: &Counters,
) -> Result<(), RunError> {
    let delivery = consumer.context().downstream();
    let reached_max = || {
        options
            .max_messages
            .is_some_and(|max| counters.messages.load(Ordering::Relaxed) >= max)
    };
    let mut state = State::Consuming;
    let mut schedule = Schedule {
        store: Instant::now() + STORE_INTERVAL,
        flush: None,
    };
    loop {
        if options.stop.load(Ordering::Relaxed) || reached_max() {
            // The shutdown flushes what is left.
            return Ok(());
        }
        if options.output == Output::Print && stdout_closed() {
            // `run --dry-run | head`: no one reads any more, and a dry run commits nothing.
            log::info!("dry run: standard output closed, stopping");
            return Ok(());
        }
        // The clock is read only when a deadline needs it: this runs once per message.
        let mut wait = schedule
            .flush
            .map_or(MAX_POLL_WAIT, |d| {
                d.saturating_duration_since(Instant::now())
            })
            .min(MAX_POLL_WAIT);
        if let State::Paused { retry_at, .. } = state {
            wait = wait.min(retry_at.saturating_duration_since(Instant::now()));
            // Keep polling, so that rebalances and the group go on, but fetch nothing new.
            // Again each time: partitions may have been assigned since.
            set_paused(consumer, true);
        }
        // While paused, one at a time: what was fetched before the pause (the Agent refuses
        // data, and what is handled now waits in memory). A demo stops at its count.
        let mut room = match state {
            State::Consuming => BATCH,
            State::Paused { .. } => 1,
        };
        if let Some(max) = options.max_messages {
            let left = max.saturating_sub(counters.messages.load(Ordering::Relaxed));
            room = room.min(usize::try_from(left).unwrap_or(usize::MAX));
        }
        take_burst(consumer, instance, counters, wait, room)?;

        let mut forwarder = delivery.lock();
        let now = Instant::now();
        counters.health.loop_turned();
        let mut window_written = false;
        match state {
            State::Consuming => {
                let due = forwarder.flush_if_due(now);
                window_written = due.window_written;
                if due.blocked {
                    state = State::paused(now);
                }
            }
            State::Paused { retry_at, backoff } if now >= retry_at => {
                if forwarder.flush() {
                    state = State::Consuming;
                    set_paused(consumer, false);
                } else {
                    let backoff = (backoff * 2).min(RETRY_MAX);
                    state = State::Paused {
                        retry_at: now + backoff,
                        backoff,
                    };
                    if let Some(limit) = options.give_up_after {
                        give_up_after(counters, limit)?;
                    }
                }
            }
            State::Paused { .. } => {}
        }
        schedule.flush = forwarder.next_deadline();
        if now >= schedule.store {
            // The rebalance callback routes each assigned partition; this catches one whose
            // routing librdkafka undid (it does when it stops fetching a partition) without a
            // callback to route it again.
            consumer.context().reroute(consumer);
        }
        // A window written now has its offsets committed at once rather than at the next
        // auto-commit, so that a crash replays next to nothing that reached the Agent.
        if (now >= schedule.store || window_written) && delivery.commits {
            schedule.store = now + STORE_INTERVAL;
            if let Some(offsets) = forwarder.take_delivered() {
                drop(forwarder);
                store(consumer, &offsets, window_written);
            }
        }
    }
}

/// Serves the group's events (rebalances run here, as callbacks), then takes what was fetched,
/// up to [`BATCH`] messages, waiting up to `wait` for the first, and hands it to the forwarder
/// under one lock and one clock read: per message, that costs a tenth of the work `poll` did.
fn take_burst(
    consumer: &KafkaConsumer,
    instance: &Instance,
    counters: &Counters,
    wait: Duration,
    room: usize,
) -> Result<(), RunError> {
    let context = consumer.context();
    let delivery = context.downstream();
    let fatal = || match consumer.client().fatal_error() {
        Some((_, reason)) => Err(RunError::Fatal {
            index: instance.index,
            topic: instance.topic.clone(),
            reason,
        }),
        None => Ok(()),
    };
    // One event, or a message where there is no fetch queue (or in the moment before a
    // partition was routed to it).
    let serve_poll = |wait: Duration| -> Result<(), RunError> {
        match consumer.poll(wait) {
            Some(Ok(message)) => {
                counters.health.kafka_ok();
                delivery
                    .lock()
                    .handle(message.partition(), message.offset(), message.payload());
            }
            Some(Err(e)) => {
                context.kafka_error(&e, None);
                fatal()?;
            }
            None => {}
        }
        Ok(())
    };
    // A few at a time, so that a flood of events cannot hold up the messages.
    for _ in 0..MAX_EVENTS_PER_TURN {
        if !context.events_waiting() {
            break;
        }
        serve_poll(Duration::ZERO)?;
    }
    let mut forwarder = None;
    let mut failed = false;
    let taken = context.take_fetched(wait, room, |fetched| match fetched {
        Ok(m) => {
            forwarder.get_or_insert_with(|| delivery.lock()).handle(
                m.partition,
                m.offset,
                m.payload,
            );
        }
        Err(e) => {
            context.kafka_error(&e, None);
            failed = true;
        }
    });
    drop(forwarder);
    if failed {
        fatal()?;
    }
    match taken {
        Some(n) if n > 0 => counters.health.kafka_ok(),
        Some(_) => {}
        // No fetch queue: messages and events both come through `poll`.
        None => serve_poll(wait)?,
    }
    Ok(())
}

/// Fails with [`RunError::Refused`] once the destination has refused data for `limit`.
fn give_up_after(counters: &Counters, limit: Duration) -> Result<(), RunError> {
    if let Some((since, error)) = counters.health.sink_failure() {
        let waited = since.elapsed();
        if waited >= limit {
            return Err(RunError::Refused { waited, error });
        }
    }
    Ok(())
}

/// A run that gives up on a refusing destination (the demo) ends only once its points are out:
/// retried with back-off, polling meanwhile so that the group goes on, until they are or it
/// gives up.
fn deliver_before_stopping(
    consumer: &KafkaConsumer,
    counters: &Counters,
    limit: Duration,
) -> Result<(), RunError> {
    let delivery = consumer.context().downstream();
    let mut backoff = RETRY_FIRST;
    loop {
        if delivery.lock().flush() {
            return Ok(());
        }
        give_up_after(counters, limit)?;
        set_paused(consumer, true);
        let retry_at = Instant::now() + backoff;
        while let Some(wait) = retry_at.checked_duration_since(Instant::now()) {
            match consumer.poll(wait.min(MAX_POLL_WAIT)) {
                // Fetched before the pause took effect.
                Some(Ok(message)) => {
                    delivery
                        .lock()
                        .handle(message.partition(), message.offset(), message.payload())
                }
                Some(Err(e)) => consumer.context().kafka_error(&e, None),
                None => {}
            }
        }
        backoff = (backoff * 2).min(RETRY_MAX);
    }
}

/// Pauses or resumes fetching for the whole current assignment. librdkafka drops what it had
/// fetched for a paused partition and, on resume, fetches again from the next message the
/// application has not seen, so nothing is skipped.
fn set_paused(consumer: &KafkaConsumer, paused: bool) {
    let Ok(assignment) = consumer.assignment() else {
        return;
    };
    if assignment.count() == 0 {
        return;
    }
    let result = if paused {
        consumer.pause(&assignment)
    } else {
        consumer.resume(&assignment)
    };
    if let Err(e) = result {
        log::debug!(
            "cannot {} the assignment: {e}",
            if paused { "pause" } else { "resume" }
        );
    }
}

/// Flushes, commits and closes within the budget, whatever the broker does. librdkafka's close
/// and destroy can hang on an unreachable broker, so they run on a helper thread that is left
/// behind if it overruns: the process exits anyway.
fn shutdown(consumer: KafkaConsumer, instance: &Instance, options: &RunOptions, since: Instant) {
    let deadline = since + options.shutdown_budget;
    let delivery = consumer.context().downstream();
    // Committed below; the revocation during close has nothing left to commit.
    let released = delivery.lock().release(None);
    if !released.all_sent {
        log::warn!(
            "instance {}: the Agent still refuses data; the unsent messages will be consumed again",
            instance.index
        );
    }
    let index = instance.index;
    // A dry run commits nothing.
    let offsets = if delivery.commits {
        released.offsets
    } else {
        TopicPartitionList::new()
    };
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let closer = std::thread::Builder::new()
        .name(format!("close-{index}"))
        .spawn(move || {
            if offsets.count() > 0 {
                match commit(&consumer, &offsets) {
                    Ok(()) => {
                        log::info!("instance {index}: committed offsets {}", describe(&offsets))
                    }
                    Err(e) => log::warn!("instance {index}: final offset commit failed: {e}"),
                }
            }
            // A partition list that went through librdkafka holds references to its partitions;
            // alive during the destroy, it makes `rd_kafka_destroy` wait forever.
            drop(offsets);
            drop(consumer);
            let _ = done_tx.send(());
        });
    match closer {
        Ok(_) => {
            let remaining = deadline.saturating_duration_since(Instant::now());
            if done_rx.recv_timeout(remaining).is_err() {
                log::warn!(
                    "instance {index}: committing and closing did not finish within {:?}; leaving the Kafka client behind",
                    options.shutdown_budget
                );
            }
        }
        Err(e) => log::warn!("instance {index}: cannot start the closing thread: {e}"),
    }
}

fn describe(offsets: &TopicPartitionList) -> String {
    offsets
        .elements()
        .iter()
        .map(|e| format!("{}:{}", e.partition(), e.offset().to_raw().unwrap_or(-1)))
        .collect::<Vec<_>>()
        .join(" ")
}
