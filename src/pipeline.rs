//! The pipeline of one instance: Kafka source → Insights decoding → metric mapping →
//! aggregation → DogStatsD sink, and the loop that drives it until it is told to stop.
//!
//! [`Forwarder`] is the part after the source. [`run_instance`] owns the consumer, wakes the
//! forwarder when a window or buffer is due, stores offsets, and shuts down within a fixed budget
//! even when the broker is slow or gone.
//!
//! When the Agent refuses a write, the loop pauses the assignment and keeps polling (rebalances
//! and the group go on) while it retries the sink with back-off; it resumes once everything held
//! back went out.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::Message;

use crate::config::{Config, Instance};
use crate::datagrams::{OneByOne, SendDatagrams};
use crate::forwarder::Forwarder;
use crate::metrics::MetricMapper;
use crate::sink::{open_transport, DogStatsdSink, StdoutMetricSink, TeeMetricSink, Transport};
use crate::source::{client_config, SourceContext};
use crate::telemetry::{spawn_reporter, Counters, Reporter, Snapshot};

/// How often delivered offsets are handed to librdkafka (which commits them every
/// `commit_interval_ms`).
pub const STORE_INTERVAL: Duration = Duration::from_millis(200);

/// First and longest wait between write attempts while the Agent refuses data. A refused write
/// costs microseconds, so a second between attempts keeps the wait idle and the recovery prompt.
const RETRY_FIRST: Duration = Duration::from_millis(50);
const RETRY_MAX: Duration = Duration::from_secs(1);

/// Most messages handled between two clock reads (deadlines move by a few microseconds).
const BURST: usize = 64;

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
}

/// Runs every instance of `config` on its own thread until `options.stop` is raised (or each
/// has consumed `max_messages`). Returns the summed counters.
pub fn run(config: &Config, options: &RunOptions) -> Result<Snapshot, RunError> {
    let counters: Vec<Arc<Counters>> = config.instances.iter().map(|_| Arc::default()).collect();
    run_with_counters(config, options, &counters)
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
                Err(e) => Err(RunError::Destination {
                    destination: "thread".into(),
                    source: e,
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
    let sink = DogStatsdSink::builder_boxed(transport, config.dogstatsd.max_datagram_bytes())
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
    let context = SourceContext::new(forwarder, counters.clone(), &instance.topic, !dry_run);
    let mut kafka_config = client_config(instance);
    let group = consumer_group(instance, options.output);
    if dry_run {
        // A dry run must not take partitions from the running daemon, nor commit offsets for
        // messages it only printed: its own group, and no commits.
        kafka_config
            .set("group.id", &group)
            .set("enable.auto.commit", "false");
    }
    let started = kafka_config.create_with_context(context).and_then(
        |consumer: BaseConsumer<SourceContext>| {
            consumer.subscribe(&[&instance.topic])?;
            Ok(consumer)
        },
    );
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

    let outcome = consume(&consumer, instance, options, &counters);
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
        RunError::Destination {
            destination: "telemetry thread".into(),
            source,
        }
    })
}

fn consume(
    consumer: &BaseConsumer<SourceContext>,
    instance: &Instance,
    options: &RunOptions,
    counters: &Counters,
) -> Result<(), RunError> {
    let context = consumer.context();
    let mut next_store = Instant::now() + STORE_INTERVAL;
    let aggregating = instance.aggregation_interval > 0;
    // When the forwarder next has a window or a buffer to write.
    let mut flush_deadline: Option<Instant> = None;
    // While the Agent refuses data: when to try again, and the current back-off.
    let mut retry: Option<(Instant, Duration)> = None;
    loop {
        if options.stop.load(Ordering::Relaxed) {
            return Ok(());
        }
        if options
            .max_messages
            .is_some_and(|max| counters.messages.load(Ordering::Relaxed) >= max)
        {
            if options.give_up_after.is_none() {
                // The shutdown flushes what is left.
                return Ok(());
            }
            // A run that gives up on a refusing destination (the demo) ends only once its
            // points are out: retried below, until they are or it gives up.
            if retry.is_none() {
                let mut forwarder = context.lock_forwarder();
                if forwarder.flush() {
                    return Ok(());
                }
                let now = Instant::now();
                retry = Some((now + RETRY_FIRST, RETRY_FIRST));
            }
        }
        // The clock is read only when a deadline needs it: this runs once per message.
        let mut wait = flush_deadline
            .map_or(MAX_POLL_WAIT, |d| {
                d.saturating_duration_since(Instant::now())
            })
            .min(MAX_POLL_WAIT);
        if let Some((at, _)) = retry {
            wait = wait.min(at.saturating_duration_since(Instant::now()));
            // Keep polling, so that rebalances and the group go on, but fetch nothing new.
            // Again each time: partitions may have been assigned since.
            set_paused(consumer, true);
        }
        let mut polled = consumer.poll(wait);
        // What librdkafka already fetched is taken in a burst without waiting, and the clock is
        // read once for the burst: a clock read costs a tenth of a message's work.
        let mut taken = 0;
        loop {
            let mut forwarder = context.lock_forwarder();
            match polled {
                Some(Ok(message)) => {
                    counters.health.kafka_ok();
                    forwarder.handle(message.partition(), message.offset(), message.payload());
                }
                Some(Err(e)) => {
                    context.kafka_error(&e, None);
                    if let Some((_, reason)) = consumer.client().fatal_error() {
                        return Err(RunError::Fatal {
                            index: instance.index,
                            topic: instance.topic.clone(),
                            reason,
                        });
                    }
                    break;
                }
                None => break,
            }
            taken += 1;
            let reached_max = options
                .max_messages
                .is_some_and(|max| counters.messages.load(Ordering::Relaxed) >= max);
            if taken == BURST || retry.is_some() || forwarder.is_blocked() || reached_max {
                break;
            }
            // The forwarder is unlocked while polling: a rebalance callback locks it.
            drop(forwarder);
            polled = consumer.poll(Duration::ZERO);
        }
        let mut forwarder = context.lock_forwarder();
        let now = Instant::now();
        // A window written now has its offsets committed at once rather than at the next
        // auto-commit, so that a crash replays next to nothing that reached the Agent.
        let window_written = aggregating
            && retry.is_none()
            && flush_deadline.is_some_and(|deadline| now >= deadline);
        match retry {
            None => {
                forwarder.flush_if_due(now);
                if forwarder.is_blocked() {
                    retry = Some((now + RETRY_FIRST, RETRY_FIRST));
                }
            }
            Some((at, backoff)) if now >= at => {
                if forwarder.flush() {
                    retry = None;
                    set_paused(consumer, false);
                } else {
                    let backoff = (backoff * 2).min(RETRY_MAX);
                    retry = Some((now + backoff, backoff));
                    if let (Some(limit), Some((since, error))) =
                        (options.give_up_after, counters.health.sink_failure())
                    {
                        let waited = since.elapsed();
                        if waited >= limit {
                            return Err(RunError::Refused { waited, error });
                        }
                    }
                }
            }
            Some(_) => {}
        }
        flush_deadline = forwarder.next_deadline();
        if (now >= next_store || window_written) && context.commits_offsets() {
            next_store = now + STORE_INTERVAL;
            if let Some(offsets) = forwarder.offsets.take_unstored(&instance.topic) {
                drop(forwarder);
                if let Err(e) = consumer.store_offsets(&offsets) {
                    // Happens for a partition revoked in the meantime; its new owner re-reads.
                    log::debug!("storing offsets failed: {e}");
                } else if window_written {
                    // Failures reach the commit callback, which logs them.
                    let _ = consumer.commit_consumer_state(CommitMode::Async);
                }
            }
        }
    }
}

/// Pauses or resumes fetching for the whole current assignment. librdkafka drops what it had
/// fetched for a paused partition and, on resume, fetches again from the next message the
/// application has not seen, so nothing is skipped.
fn set_paused(consumer: &BaseConsumer<SourceContext>, paused: bool) {
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
fn shutdown(
    consumer: BaseConsumer<SourceContext>,
    instance: &Instance,
    options: &RunOptions,
    since: Instant,
) {
    let deadline = since + options.shutdown_budget;
    let context = consumer.context();
    let offsets = {
        let mut forwarder = context.lock_forwarder();
        if !forwarder.flush() {
            log::warn!(
                "instance {}: the Agent still refuses data; the unsent messages will be consumed again",
                instance.index
            );
        }
        let offsets = forwarder.offsets.delivered(&instance.topic, None);
        // Committed below; the revocation during close has nothing left to commit.
        let partitions: Vec<i32> = offsets.elements().iter().map(|e| e.partition()).collect();
        forwarder.offsets.forget(&partitions);
        offsets
    };
    let index = instance.index;
    // A dry run commits nothing.
    let offsets = if context.commits_offsets() {
        offsets
    } else {
        rdkafka::TopicPartitionList::new()
    };
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let closer = std::thread::Builder::new()
        .name(format!("close-{index}"))
        .spawn(move || {
            if offsets.count() > 0 {
                let _ = consumer.store_offsets(&offsets);
                match consumer.commit(&offsets, CommitMode::Sync) {
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

fn describe(offsets: &rdkafka::TopicPartitionList) -> String {
    offsets
        .elements()
        .iter()
        .map(|e| format!("{}:{}", e.partition(), e.offset().to_raw().unwrap_or(-1)))
        .collect::<Vec<_>>()
        .join(" ")
}
