//! The stages after the source, for one instance: decode → map → aggregate → sink, and which
//! offsets that makes safe to store.
//!
//! [`Forwarder::handle`] takes a message's partition, offset and value. Its points go into the
//! open aggregation [`Window`] (or, with `aggregation_interval: 0`, straight to the sink as one
//! line each); the window is written when its interval ends ([`Forwarder::flush_if_due`]), when
//! it is full, or when a flush is asked for (revocation, shutdown). The [`OffsetTracker`] learns
//! at each step how far the data went, so that an offset is stored only once the socket accepted
//! every line that carried the message's points.
//!
//! ```
//! use std::sync::Arc;
//! use std::time::Duration;
//! use algorithmia_datadog::Forwarder;
//! use algorithmia_datadog::metrics::MetricMapper;
//! use algorithmia_datadog::DogStatsdSink;
//! use algorithmia_datadog::Counters;
//! use cadence::SpyMetricSink;
//!
//! let (datagrams, spy) = SpyMetricSink::new();
//! let counters = Arc::new(Counters::default());
//! let mut forwarder = Forwarder::builder(
//!     MetricMapper::builder("algorithmia").build(),
//!     DogStatsdSink::builder(spy, 1432).build(),
//!     counters.clone(),
//! )
//! .aggregation_interval(Duration::from_secs(2))
//! .build();
//! forwarder.handle(0, 41, Some(br#"{"risk_score":0.2}"#));
//! forwarder.handle(0, 42, Some(br#"{"risk_score":0.3}"#));
//! assert!(forwarder.take_delivered().is_none(), "the window is open");
//! assert!(forwarder.flush());
//! assert_eq!(
//!     datagrams.try_recv().unwrap(),
//!     b"algorithmia.risk_score:0.3|g\nalgorithmia.calls:2|c"
//! );
//! assert!(forwarder.take_delivered().is_some());
//! ```

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use rdkafka::TopicPartitionList;

use crate::aggregate::{window_end, Window};
use crate::decode::{decode_reusing, Field};
use crate::dogstatsd::{LineWriter, MetricKind, Value};
use crate::metrics::{MetricMapper, PointSink};
use crate::offsets::OffsetTracker;
use crate::sink::{DogStatsdSink, Written};
use crate::telemetry::Counters;
use crate::throttle::LogLimiter;

/// What [`Forwarder::flush_if_due`] did, and when it next has work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Due {
    /// A window ended and all of it reached the socket: its offsets are worth committing now
    /// rather than at the next auto-commit, so that a crash replays next to nothing.
    pub window_written: bool,
    /// The Agent refused a write: the caller retries [`Forwarder::flush`] on its own schedule.
    pub blocked: bool,
    /// When a window or the sink's buffer is next due; `None` when nothing waits, or while
    /// blocked (a refusing Agent is not polled in a busy loop).
    pub next: Option<Instant>,
}

/// What [`Forwarder::release`] hands over.
#[derive(Debug)]
pub struct Released {
    /// Whether everything held back went out; if not, the unsent messages are not in `offsets`
    /// and the partitions' next owner consumes them again.
    pub all_sent: bool,
    /// The next offset to consume of every released partition that delivered something.
    pub offsets: TopicPartitionList,
}

/// Decodes, maps, aggregates and sends messages; tracks which offsets are safe to store.
pub struct Forwarder {
    mapper: MetricMapper,
    /// The open window; `None` sends every point as it comes.
    window: Option<Window>,
    interval: Duration,
    /// When the open window ends; `None` while it is empty.
    window_deadline: Option<Instant>,
    sink: DogStatsdSink,
    /// The offsets on their way to being stored.
    offsets: OffsetTracker,
    counters: Arc<Counters>,
    reject_log: LogLimiter,
    topic: String,
    /// The point-per-line path's buffers.
    lines: LineWriter,
    /// The decoded fields' vector, kept from one message to the next.
    spare_fields: Vec<Field<'static>>,
    /// Several distribution values per line (protocol 1.1), or one.
    packed_distributions: bool,
}

/// Builder for [`Forwarder`].
pub struct ForwarderBuilder {
    forwarder: Forwarder,
    max_contexts: usize,
}

impl ForwarderBuilder {
    /// Aggregation windows of this length (whole seconds, aligned to the wall clock); zero sends
    /// every point as it comes. The default is zero.
    pub fn aggregation_interval(mut self, interval: Duration) -> Self {
        self.forwarder.interval = interval;
        self
    }
    /// A window is sent early once it holds this many contexts (default 100,000).
    pub fn max_contexts(mut self, max_contexts: usize) -> Self {
        self.max_contexts = max_contexts;
        self
    }
    /// Whether a window's distribution values are packed several to a line (`name:v1:v2|d`,
    /// DogStatsD protocol 1.1, the default) or written one per line (protocol 1.0, for servers
    /// that keep only the first value of a packed line).
    pub fn packed_distributions(mut self, packed: bool) -> Self {
        self.forwarder.packed_distributions = packed;
        self
    }
    /// The topic, for log lines.
    pub fn topic(mut self, topic: &str) -> Self {
        self.forwarder.topic = topic.to_string();
        self
    }
    /// Finishes the forwarder.
    pub fn build(mut self) -> Forwarder {
        if !self.forwarder.interval.is_zero() {
            self.forwarder.window = Some(Window::new(self.max_contexts));
        }
        self.forwarder
    }
}

impl Forwarder {
    /// A forwarder from `mapper` to `sink`, counting into `counters`.
    pub fn builder(
        mapper: MetricMapper,
        sink: DogStatsdSink,
        counters: Arc<Counters>,
    ) -> ForwarderBuilder {
        ForwarderBuilder {
            forwarder: Forwarder {
                mapper,
                window: None,
                interval: Duration::ZERO,
                window_deadline: None,
                sink,
                offsets: OffsetTracker::default(),
                counters,
                reject_log: LogLimiter::new(10, Duration::from_secs(10)),
                topic: String::new(),
                lines: LineWriter::default(),
                spare_fields: Vec::new(),
                packed_distributions: true,
            },
            max_contexts: crate::config::DEFAULT_MAX_CONTEXTS,
        }
    }

    /// Handles one message. A message that cannot be decoded is counted, logged and passed over:
    /// its offset moves on like any other, so it never stalls its partition.
    pub fn handle(&mut self, partition: i32, offset: i64, payload: Option<&[u8]>) {
        self.counters.messages.fetch_add(1, Ordering::Relaxed);
        let fields = std::mem::take(&mut self.spare_fields);
        match decode_reusing(payload.unwrap_or_default(), fields) {
            Ok(message) => {
                match &mut self.window {
                    Some(window) => {
                        self.mapper.map_points(&message, &self.counters, window);
                        if self.window_deadline.is_none() && !window.is_empty() {
                            self.window_deadline =
                                Some(window_end(self.interval, Instant::now(), SystemTime::now()));
                        }
                    }
                    None => {
                        let mut lines = LinePerPoint {
                            writer: &mut self.lines,
                            sink: &mut self.sink,
                            offsets: &mut self.offsets,
                            counters: &self.counters,
                        };
                        self.mapper.map_points(&message, &self.counters, &mut lines);
                    }
                }
                self.spare_fields = message.recycle();
            }
            Err(e) => {
                self.counters.reject(e.reason());
                if let Some(suppressed) = self.reject_log.allow() {
                    let note = match suppressed {
                        0 => String::new(),
                        n => format!(" ({n} more rejections were not logged)"),
                    };
                    log::warn!(
                        "rejected message topic={} partition={partition} offset={offset}: {e}{note}",
                        self.topic
                    );
                }
            }
        }
        self.offsets.message_done(partition, offset);
        match &self.window {
            None => self.offsets.handed_to_sink(),
            Some(window) if window.is_full() => self.close_window(),
            Some(_) => {}
        }
        if self.window.as_ref().is_none_or(Window::is_empty) && self.sink.is_empty() {
            // Nothing of this message, or of any before it, waits anywhere: delivered. Without
            // this, a run of messages with no point would never have its offsets stored.
            self.offsets.handed_to_sink();
            self.offsets.sink_caught_up();
        }
    }

    /// Writes the window once its interval is over, or the sink's buffer once it is older than
    /// [`crate::sink::MAX_BUFFER_AGE`], and says what happened and when to come back. A blocked
    /// sink is retried by the caller, on its own schedule.
    pub fn flush_if_due(&mut self, now: Instant) -> Due {
        let mut window_written = false;
        if !self.sink.is_blocked() {
            if self.window_deadline.is_some_and(|d| now >= d) {
                self.close_window();
                window_written = !self.sink.is_blocked();
            }
            if self.sink.flush_deadline().is_some_and(|d| now >= d) {
                self.flush_sink();
            }
        }
        Due {
            window_written,
            blocked: self.sink.is_blocked(),
            next: self.next_deadline(),
        }
    }

    /// The delivered offsets not handed out yet, for `store_offsets`; `None` when none moved.
    pub fn take_delivered(&mut self) -> Option<TopicPartitionList> {
        self.offsets.take_unstored(&self.topic)
    }

    /// `partitions` leave this forwarder (`None`: all of them, at shutdown). One attempt to send
    /// everything held back, then their delivered offsets, which it forgets: whoever commits
    /// them owns them now.
    pub fn release(&mut self, partitions: Option<&[i32]>) -> Released {
        let all_sent = self.flush();
        let offsets = self.offsets.delivered(&self.topic, partitions);
        let gone: Vec<i32> = match partitions {
            Some(partitions) => partitions.to_vec(),
            None => offsets.elements().iter().map(|e| e.partition()).collect(),
        };
        self.offsets.forget(&gone);
        Released { all_sent, offsets }
    }

    /// One attempt to send everything: the open window, then whatever the sink holds. `true`
    /// when it all went out: every handled message is then delivered. `false` leaves the
    /// forwarder blocked, its offsets held back.
    pub fn flush(&mut self) -> bool {
        self.close_window();
        self.flush_sink()
    }

    /// Whether the Agent refused a write that has not gone out since.
    pub fn is_blocked(&self) -> bool {
        self.sink.is_blocked()
    }

    /// When [`Forwarder::flush_if_due`] next has work: the end of the open window, or the
    /// sink's flush deadline. `None` when nothing waits, or while the sink is blocked (the caller
    /// retries on its own schedule, so that a refusing Agent is not polled in a busy loop).
    pub fn next_deadline(&self) -> Option<Instant> {
        if self.sink.is_blocked() {
            return None;
        }
        match (self.window_deadline, self.sink.flush_deadline()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// How many contexts the open window holds (0 when sending every point).
    pub fn open_contexts(&self) -> usize {
        self.window.as_ref().map_or(0, Window::contexts)
    }

    fn flush_sink(&mut self) -> bool {
        let all_sent = self.sink.flush();
        if all_sent {
            self.offsets.sink_caught_up();
        }
        all_sent
    }

    /// Writes the window's lines to the sink; its messages' offsets follow them there.
    fn close_window(&mut self) {
        self.window_deadline = None;
        let Some(window) = &mut self.window else {
            return;
        };
        let (sink, offsets, counters) = (&mut self.sink, &mut self.offsets, &self.counters);
        // Unpacked, a line's values get no room beyond the first: one value per line.
        let max_line = if self.packed_distributions {
            sink.max_datagram()
        } else {
            0
        };
        window.drain(max_line, |line, kind, values| {
            count_sent(counters, kind, values);
            if sink.push_line(line) == Written::Flushed {
                // Only earlier windows: this one's offsets are handed over below.
                offsets.sink_caught_up();
            }
        });
        counters
            .points_aggregated
            .fetch_add(window.take_folded(), Ordering::Relaxed);
        offsets.handed_to_sink();
        if !sink.is_blocked() {
            // The window is complete: send it now rather than after the buffer's age limit.
            self.flush_sink();
        }
    }
}

fn count_sent(counters: &Counters, kind: MetricKind, values: usize) {
    let counter = match kind {
        MetricKind::Gauge => &counters.gauges,
        MetricKind::Count => &counters.counts,
        MetricKind::Distribution => &counters.distribution_values,
    };
    counter.fetch_add(values as u64, Ordering::Relaxed);
}

/// `aggregation_interval: 0`: every point goes to the sink as its own line, at once.
struct LinePerPoint<'a> {
    writer: &'a mut LineWriter,
    sink: &'a mut DogStatsdSink,
    offsets: &'a mut OffsetTracker,
    counters: &'a Counters,
}

impl PointSink for LinePerPoint<'_> {
    fn begin(&mut self, tags: &str, timestamp: Option<i64>) {
        self.writer.begin(tags, timestamp);
    }

    fn point(&mut self, name: &str, kind: MetricKind, value: Value) {
        count_sent(self.counters, kind, 1);
        let writer = &*self.writer;
        let written = self
            .sink
            .push_with(|out| writer.write(out, name, kind, value));
        if written == Written::Flushed {
            // Everything handed over before this message went out (this message is not handed
            // over until all its points are in).
            self.offsets.sink_caught_up();
        }
    }
}

#[cfg(test)]
mod tests;
