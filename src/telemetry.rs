//! What the forwarder counts about itself: messages, gauges, rejections and skips by reason.
//!
//! Counters are atomics so that the consuming thread can bump them without a lock while the
//! command line (the demo summary, the benchmark) or a reporter reads them.
//!
//! ```
//! use algorithmia_datadog::telemetry::{Counters, SkipReason};
//!
//! let counters = Counters::default();
//! counters.skip(SkipReason::Null);
//! assert_eq!(counters.snapshot().skipped(SkipReason::Null), 1);
//! ```

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Why a message was rejected as a whole (mirrors [`crate::decode::DecodeError::reason`]).
pub const REJECT_REASONS: [&str; 4] = ["empty", "not_utf8", "invalid_json", "not_an_object"];

/// Why one field of an accepted message did not become a gauge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SkipReason {
    /// `null`.
    Null,
    /// An array.
    Array,
    /// An object.
    Object,
    /// A string that is not a finite number, or any string with `numeric_strings: false`.
    String,
    /// `true`/`false` with `booleans: false`.
    Boolean,
    /// A number (or numeric string) that is NaN or infinite.
    NonFinite,
    /// A field name with nothing usable in it.
    InvalidName,
    /// Left out by `include_metrics` / `exclude_metrics`.
    Filtered,
    /// Named like the per-model call count (`<prefix>.calls`), which owns that name.
    ReservedName,
}

impl SkipReason {
    /// Every reason, in counter order.
    pub const ALL: [SkipReason; 9] = [
        SkipReason::Null,
        SkipReason::Array,
        SkipReason::Object,
        SkipReason::String,
        SkipReason::Boolean,
        SkipReason::NonFinite,
        SkipReason::InvalidName,
        SkipReason::Filtered,
        SkipReason::ReservedName,
    ];

    /// A short, stable label (`reason:` tag).
    pub fn label(self) -> &'static str {
        match self {
            SkipReason::Null => "null",
            SkipReason::Array => "array",
            SkipReason::Object => "object",
            SkipReason::String => "string",
            SkipReason::Boolean => "boolean",
            SkipReason::NonFinite => "non_finite",
            SkipReason::InvalidName => "invalid_name",
            SkipReason::Filtered => "filtered",
            SkipReason::ReservedName => "reserved_name",
        }
    }
}

/// Why a point that should have carried `|T` went without it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimestampIssue {
    /// The timestamp field is absent.
    Missing,
    /// The timestamp field is not a time we can read.
    Unparseable,
    /// Older than an hour or more than ten minutes ahead: the backend would drop it.
    OutOfWindow,
}

impl TimestampIssue {
    /// Every issue, in counter order.
    pub const ALL: [TimestampIssue; 3] = [
        TimestampIssue::Missing,
        TimestampIssue::Unparseable,
        TimestampIssue::OutOfWindow,
    ];

    /// A short, stable label.
    pub fn label(self) -> &'static str {
        match self {
            TimestampIssue::Missing => "missing",
            TimestampIssue::Unparseable => "unparseable",
            TimestampIssue::OutOfWindow => "out_of_window",
        }
    }
}

/// Counters of one forwarding instance.
#[derive(Debug, Default)]
pub struct Counters {
    /// Messages taken from Kafka.
    pub messages: AtomicU64,
    /// Accepted messages that held no metric.
    pub messages_without_metrics: AtomicU64,
    /// Gauge points written to the sink (after aggregation: one per context and window).
    pub gauges: AtomicU64,
    /// Count points (`<prefix>.calls`) written to the sink.
    pub counts: AtomicU64,
    /// Distribution values written to the sink (every value, several packed per line).
    pub distribution_values: AtomicU64,
    /// Values folded into another point of their window (a gauge superseded, a count added).
    pub points_aggregated: AtomicU64,
    /// Datagrams the socket accepted.
    pub datagrams: AtomicU64,
    /// Bytes the socket accepted.
    pub bytes: AtomicU64,
    /// Failed socket writes (each is retried).
    pub send_errors: AtomicU64,
    /// Errors reported by the Kafka client.
    pub kafka_errors: AtomicU64,
    /// Partition revocations served (each a rebalance this consumer took part in).
    pub revocations: AtomicU64,
    /// What the service checks report on.
    pub health: Health,
    rejected: [AtomicU64; REJECT_REASONS.len()],
    skipped: [AtomicU64; SkipReason::ALL.len()],
    timestamp_issues: [AtomicU64; TimestampIssue::ALL.len()],
}

impl Counters {
    /// Counts a rejected message by its reason label.
    pub fn reject(&self, reason: &str) {
        if let Some(i) = REJECT_REASONS.iter().position(|r| *r == reason) {
            self.rejected[i].fetch_add(1, Relaxed);
        }
    }

    /// Counts a skipped field.
    pub fn skip(&self, reason: SkipReason) {
        self.skipped[reason as usize].fetch_add(1, Relaxed);
    }

    /// Counts a point sent without its timestamp.
    pub fn timestamp_issue(&self, issue: TimestampIssue) {
        self.timestamp_issues[issue as usize].fetch_add(1, Relaxed);
    }

    /// A consistent-enough copy for reporting.
    pub fn snapshot(&self) -> Snapshot {
        let load = |a: &AtomicU64| a.load(Relaxed);
        Snapshot {
            messages: load(&self.messages),
            messages_without_metrics: load(&self.messages_without_metrics),
            gauges: load(&self.gauges),
            counts: load(&self.counts),
            distribution_values: load(&self.distribution_values),
            points_aggregated: load(&self.points_aggregated),
            datagrams: load(&self.datagrams),
            bytes: load(&self.bytes),
            send_errors: load(&self.send_errors),
            kafka_errors: load(&self.kafka_errors),
            rejected: self.rejected.each_ref().map(load),
            skipped: self.skipped.each_ref().map(load),
            timestamp_issues: self.timestamp_issues.each_ref().map(load),
        }
    }
}

/// The state the service checks describe, updated by the source and the sink.
#[derive(Debug, Default)]
pub struct Health {
    /// Total consumer lag over the assigned partitions (from librdkafka statistics); -1 unknown.
    pub consumer_lag: std::sync::atomic::AtomicI64,
    /// Whether librdkafka statistics arrived at least once.
    pub stats_seen: std::sync::atomic::AtomicBool,
    /// Brokers in state UP in the last statistics.
    pub brokers_up: std::sync::atomic::AtomicU32,
    /// Brokers known in the last statistics.
    pub brokers_known: std::sync::atomic::AtomicU32,
    /// The last Kafka problem seen since the last progress (cleared when a message arrives),
    /// and whether its cause is known.
    kafka_problem: std::sync::Mutex<Option<(String, bool)>>,
    /// Whether `kafka_problem` holds something: lets the per-message `kafka_ok` skip the lock.
    kafka_problem_set: std::sync::atomic::AtomicBool,
    /// Since when, and why, datagram writes have been failing.
    sink_failure: std::sync::Mutex<Option<(std::time::Instant, String)>>,
}

impl Health {
    /// Records a Kafka error.
    pub fn kafka_problem(&self, what: &str) {
        self.record_kafka_problem(what, false);
    }

    /// A Kafka problem whose cause is known (a refused login, an untrusted certificate): it
    /// stays the one reported until Kafka works, over the consequences that follow it ("all
    /// brokers are down").
    pub fn kafka_problem_with_cause(&self, what: &str) {
        self.record_kafka_problem(what, true);
    }

    fn record_kafka_problem(&self, what: &str, cause_known: bool) {
        let mut problem = self.kafka_problem.lock().unwrap_or_else(|p| p.into_inner());
        if cause_known || !problem.as_ref().is_some_and(|(_, known)| *known) {
            *problem = Some((what.to_string(), cause_known));
        }
        self.kafka_problem_set.store(true, Relaxed);
    }

    /// A message arrived or partitions were assigned: Kafka works.
    pub fn kafka_ok(&self) {
        // Called per message: a plain load first, so the usual case writes nothing shared.
        if self.kafka_problem_set.load(Relaxed) && self.kafka_problem_set.swap(false, Relaxed) {
            *self.kafka_problem.lock().unwrap_or_else(|p| p.into_inner()) = None;
        }
    }

    /// The last Kafka problem, if any since the last message.
    pub fn last_kafka_problem(&self) -> Option<String> {
        self.kafka_problem
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(|(what, _)| what.clone())
    }

    /// A datagram write failed.
    pub fn sink_failed(&self, error: &str) {
        let mut failure = self.sink_failure.lock().unwrap_or_else(|p| p.into_inner());
        match failure.as_mut() {
            Some((_, last)) => *last = error.to_string(),
            None => *failure = Some((std::time::Instant::now(), error.to_string())),
        }
    }

    /// A datagram write succeeded.
    pub fn sink_ok(&self) {
        let mut failure = self.sink_failure.lock().unwrap_or_else(|p| p.into_inner());
        if failure.is_some() {
            *failure = None;
        }
    }

    /// Since when writes have been failing, and the last error.
    pub fn sink_failure(&self) -> Option<(std::time::Instant, String)> {
        self.sink_failure
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// A copy of [`Counters`] at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// Messages taken from Kafka.
    pub messages: u64,
    /// Accepted messages that held no metric.
    pub messages_without_metrics: u64,
    /// Gauge points written.
    pub gauges: u64,
    /// Count points written.
    pub counts: u64,
    /// Distribution values written.
    pub distribution_values: u64,
    /// Values folded into another point of their window.
    pub points_aggregated: u64,
    /// Datagrams sent.
    pub datagrams: u64,
    /// Bytes sent.
    pub bytes: u64,
    /// Failed socket writes.
    pub send_errors: u64,
    /// Kafka client errors.
    pub kafka_errors: u64,
    /// Rejections, indexed like [`REJECT_REASONS`].
    pub rejected: [u64; REJECT_REASONS.len()],
    /// Skips, indexed like [`SkipReason::ALL`].
    pub skipped: [u64; SkipReason::ALL.len()],
    /// Timestamp issues, indexed like [`TimestampIssue::ALL`].
    pub timestamp_issues: [u64; TimestampIssue::ALL.len()],
}

impl Snapshot {
    /// All rejected messages.
    pub fn rejected_total(&self) -> u64 {
        self.rejected.iter().sum()
    }

    /// Rejections for one reason label.
    pub fn rejected(&self, reason: &str) -> u64 {
        REJECT_REASONS
            .iter()
            .position(|r| *r == reason)
            .map_or(0, |i| self.rejected[i])
    }

    /// Skips for one reason.
    pub fn skipped(&self, reason: SkipReason) -> u64 {
        self.skipped[reason as usize]
    }

    /// Timestamp issues of one kind.
    pub fn timestamp_issues(&self, issue: TimestampIssue) -> u64 {
        self.timestamp_issues[issue as usize]
    }

    /// The sum of two snapshots (several instances).
    pub fn merged(mut self, other: &Snapshot) -> Snapshot {
        self.messages += other.messages;
        self.messages_without_metrics += other.messages_without_metrics;
        self.gauges += other.gauges;
        self.counts += other.counts;
        self.distribution_values += other.distribution_values;
        self.points_aggregated += other.points_aggregated;
        self.datagrams += other.datagrams;
        self.bytes += other.bytes;
        self.send_errors += other.send_errors;
        self.kafka_errors += other.kafka_errors;
        for (a, b) in self.rejected.iter_mut().zip(other.rejected) {
            *a += b;
        }
        for (a, b) in self.skipped.iter_mut().zip(other.skipped) {
            *a += b;
        }
        for (a, b) in self.timestamp_issues.iter_mut().zip(other.timestamp_issues) {
            *a += b;
        }
        self
    }

    /// Skipped fields as `reason=count` pairs with a non-zero count, for one log line.
    pub fn describe_skips(&self) -> String {
        describe_counts(
            SkipReason::ALL
                .iter()
                .map(|r| (r.label(), self.skipped(*r))),
        )
    }

    /// Rejected messages as `reason=count` pairs with a non-zero count, for one log line.
    pub fn describe_rejections(&self) -> String {
        describe_counts(REJECT_REASONS.iter().map(|r| (*r, self.rejected(r))))
    }
}

/// `label=count` for each non-zero count, or `none`.
fn describe_counts<'a>(counts: impl Iterator<Item = (&'a str, u64)>) -> String {
    let parts: Vec<String> = counts
        .filter(|(_, n)| *n > 0)
        .map(|(label, n)| format!("{label}={n}"))
        .collect();
    if parts.is_empty() {
        "none".into()
    } else {
        parts.join(" ")
    }
}

/// Lets through the first `burst` events of each window and counts the rest, so that a flood of
/// poison messages cannot flood the log.
#[derive(Debug)]
pub struct LogLimiter {
    window: std::time::Duration,
    burst: u32,
    window_start: Option<std::time::Instant>,
    in_window: u32,
    suppressed: u64,
}

impl LogLimiter {
    /// At most `burst` events per `window`.
    pub fn new(burst: u32, window: std::time::Duration) -> Self {
        LogLimiter {
            window,
            burst,
            window_start: None,
            in_window: 0,
            suppressed: 0,
        }
    }

    /// `Some(n)` if this event may be logged, where `n` is how many were suppressed before it.
    pub fn allow(&mut self) -> Option<u64> {
        let now = std::time::Instant::now();
        match self.window_start {
            Some(start) if now.duration_since(start) < self.window => {}
            _ => {
                self.window_start = Some(now);
                self.in_window = 0;
            }
        }
        if self.in_window < self.burst {
            self.in_window += 1;
            Some(std::mem::take(&mut self.suppressed))
        } else {
            self.suppressed += 1;
            None
        }
    }
}

/// ` (N <what> suppressed)` after a rate-limited log line, or nothing when none was.
pub fn suppressed_note(suppressed: u64, what: &str) -> String {
    match suppressed {
        0 => String::new(),
        n => format!(" ({n} {what} suppressed)"),
    }
}

/// What to log about a problem that lasts: each distinct problem once when it first appears, a
/// reminder at most once per `remind_every` while the trouble lasts, and one line when it ends.
///
/// A problem is known by a key (librdkafka's error code): the same failure reported twice, by
/// the error callback and by `poll`, or again on every reconnection attempt, is one problem. The
/// clock is the caller's, so that tests need not wait.
///
/// ```
/// use std::time::{Duration, Instant};
/// use algorithmia_datadog::telemetry::ProblemLog;
///
/// let mut log = ProblemLog::new(Duration::from_secs(60));
/// let t0 = Instant::now();
/// assert!(log.report("AllBrokersDown", "1/1 brokers are down", t0).is_some());
/// assert!(log.report("AllBrokersDown", "1/1 brokers are down", t0 + Duration::from_secs(1)).is_none());
/// assert_eq!(log.resolve(t0 + Duration::from_secs(12)), Some(Duration::from_secs(12)));
/// ```
#[derive(Debug)]
pub struct ProblemLog {
    remind_every: std::time::Duration,
    trouble: Option<Trouble>,
}

#[derive(Debug)]
struct Trouble {
    since: std::time::Instant,
    /// The keys logged so far.
    seen: Vec<String>,
    /// When the last line (first report or reminder) was logged.
    last_line: std::time::Instant,
    /// Reports since that line that were not logged.
    unlogged: u64,
}

impl ProblemLog {
    /// At most one reminder per `remind_every`.
    pub fn new(remind_every: std::time::Duration) -> Self {
        ProblemLog {
            remind_every,
            trouble: None,
        }
    }

    /// A problem was reported at `now`: the line to log, if any.
    pub fn report(&mut self, key: &str, what: &str, now: std::time::Instant) -> Option<String> {
        let trouble = self.trouble.get_or_insert_with(|| Trouble {
            since: now,
            seen: Vec::new(),
            last_line: now,
            unlogged: 0,
        });
        if !trouble.seen.iter().any(|k| k == key) {
            trouble.seen.push(key.to_string());
            trouble.last_line = now;
            return Some(what.to_string());
        }
        trouble.unlogged += 1;
        if now.saturating_duration_since(trouble.last_line) < self.remind_every {
            return None;
        }
        let repeats = std::mem::take(&mut trouble.unlogged);
        let quiet_for = now.saturating_duration_since(trouble.last_line);
        trouble.last_line = now;
        Some(format!(
            "still failing after {:.0} s: {what} ({repeats} error report{} in the last {:.0} s)",
            now.saturating_duration_since(trouble.since).as_secs_f64(),
            if repeats == 1 { "" } else { "s" },
            quiet_for.as_secs_f64(),
        ))
    }

    /// Everything works again as of `ended`: how long the trouble lasted, if there was any.
    pub fn resolve(&mut self, ended: std::time::Instant) -> Option<std::time::Duration> {
        self.trouble
            .take()
            .map(|t| ended.saturating_duration_since(t.since))
    }

    /// Whether a problem was reported and has not been resolved.
    pub fn is_active(&self) -> bool {
        self.trouble.is_some()
    }
}

/// The kind of a self-metric, as DogStatsD sends it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SelfMetricKind {
    /// A DogStatsD count (stored by Datadog as a rate over the 10 s flush).
    Count,
    /// A gauge.
    Gauge,
}

/// A metric the forwarder sends about itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SelfMetric {
    /// The full name.
    pub name: &'static str,
    /// Count or gauge.
    pub kind: SelfMetricKind,
}

const fn count(name: &'static str) -> SelfMetric {
    SelfMetric {
        name,
        kind: SelfMetricKind::Count,
    }
}

/// Messages taken from Kafka.
pub const MESSAGES_CONSUMED: SelfMetric = count("algorithmia.forwarder.messages_consumed");
/// Messages rejected as a whole, tagged `reason:`.
pub const MESSAGES_REJECTED: SelfMetric = count("algorithmia.forwarder.messages_rejected");
/// Accepted messages that held no metric.
pub const MESSAGES_WITHOUT_METRICS: SelfMetric =
    count("algorithmia.forwarder.messages_without_metrics");
/// Gauge points written to the Agent's socket (one per context and window when aggregating).
pub const GAUGES_SENT: SelfMetric = count("algorithmia.forwarder.gauges_sent");
/// Count points (the per-model call counts) written to the Agent's socket.
pub const COUNTS_SENT: SelfMetric = count("algorithmia.forwarder.counts_sent");
/// Distribution values written to the Agent's socket (each one, packed).
pub const DISTRIBUTION_VALUES_SENT: SelfMetric =
    count("algorithmia.forwarder.distribution_values_sent");
/// Values folded into another point of their aggregation window.
pub const POINTS_AGGREGATED: SelfMetric = count("algorithmia.forwarder.points_aggregated");
/// Fields that did not become gauges, tagged `reason:`.
pub const FIELDS_SKIPPED: SelfMetric = count("algorithmia.forwarder.fields_skipped");
/// Points sent without their timestamp, tagged `reason:`.
pub const TIMESTAMPS_DROPPED: SelfMetric = count("algorithmia.forwarder.timestamps_dropped");
/// Datagrams the socket accepted.
pub const DATAGRAMS_SENT: SelfMetric = count("algorithmia.forwarder.datagrams_sent");
/// Failed datagram writes (each retried).
pub const SEND_ERRORS: SelfMetric = count("algorithmia.forwarder.send_errors");
/// Errors reported by the Kafka client.
pub const KAFKA_ERRORS: SelfMetric = count("algorithmia.forwarder.kafka_errors");
/// Messages in the topic not consumed yet, over the assigned partitions.
pub const CONSUMER_LAG: SelfMetric = SelfMetric {
    name: "algorithmia.forwarder.consumer_lag",
    kind: SelfMetricKind::Gauge,
};

/// Every self-metric the forwarder can send (the package's `metadata.csv` lists each).
pub const SELF_METRICS: [SelfMetric; 13] = [
    MESSAGES_CONSUMED,
    MESSAGES_REJECTED,
    MESSAGES_WITHOUT_METRICS,
    GAUGES_SENT,
    COUNTS_SENT,
    DISTRIBUTION_VALUES_SENT,
    POINTS_AGGREGATED,
    FIELDS_SKIPPED,
    TIMESTAMPS_DROPPED,
    DATAGRAMS_SENT,
    SEND_ERRORS,
    KAFKA_ERRORS,
    CONSUMER_LAG,
];

/// OK when the consumer reaches a broker and its topic exists.
pub const CAN_CONNECT: &str = "algorithmia.kafka.can_connect";
/// OK while the Agent's socket accepts datagrams.
pub const CAN_SEND: &str = "algorithmia.forwarder.can_send";
/// Every service check the forwarder can send (the package's `service_checks.json` lists each).
pub const SERVICE_CHECKS: [&str; 2] = [CAN_CONNECT, CAN_SEND];

/// How long datagram writes may fail before `can_send` turns CRITICAL (WARNING before that).
pub const SEND_FAILURE_CRITICAL_AFTER: std::time::Duration = std::time::Duration::from_secs(30);

/// A service check status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// 0.
    Ok = 0,
    /// 1.
    Warning = 1,
    /// 2.
    Critical = 2,
    /// 3.
    Unknown = 3,
}

/// A `_sc` datagram: `_sc|<name>|<status>|#<tags>|m:<message>`; the message is cleaned of line
/// breaks and `|` so that it cannot start another field or datagram line.
pub fn service_check_datagram(
    name: &str,
    status: Status,
    tags: &str,
    message: Option<&str>,
) -> String {
    let mut out = format!("_sc|{name}|{}", status as u8);
    if !tags.is_empty() {
        out.push_str("|#");
        out.push_str(tags);
    }
    if let Some(message) = message {
        out.push_str("|m:");
        out.extend(
            message
                .chars()
                .map(|c| if c.is_control() || c == '|' { ' ' } else { c }),
        );
    }
    out
}

/// What `algorithmia.kafka.can_connect` says, from the consumer's health.
pub fn kafka_status(health: &Health, brokers: &[String], topic: &str) -> (Status, Option<String>) {
    use std::sync::atomic::Ordering::Relaxed;
    if !health.stats_seen.load(Relaxed) {
        return match health.last_kafka_problem() {
            Some(problem) => (
                Status::Critical,
                Some(format!(
                    "cannot reach Kafka ({}): {problem}",
                    brokers.join(",")
                )),
            ),
            None => (
                Status::Unknown,
                Some("no statistics from the Kafka client yet".into()),
            ),
        };
    }
    if health.brokers_up.load(Relaxed) == 0 {
        // No count: librdkafka counts its connections (a bootstrap entry and the broker it
        // names, "2/2 brokers are down"), not the brokers configured.
        let mut message = format!("no connection to any broker ({})", brokers.join(","));
        let problem = health
            .last_kafka_problem()
            .filter(|p| !p.starts_with("AllBrokersDown"));
        if let Some(problem) = problem {
            message.push_str(": ");
            message.push_str(&problem);
        }
        return (Status::Critical, Some(message));
    }
    match health.last_kafka_problem() {
        Some(problem)
            if problem.contains("UnknownTopic") || problem.contains("TopicAuthorization") =>
        {
            (Status::Critical, Some(format!("topic {topic}: {problem}")))
        }
        _ => (Status::Ok, None),
    }
}

/// What `algorithmia.forwarder.can_send` says.
pub fn send_status(health: &Health) -> (Status, Option<String>) {
    match health.sink_failure() {
        None => (Status::Ok, None),
        Some((since, error)) => {
            let failing = since.elapsed();
            let status = if failing >= SEND_FAILURE_CRITICAL_AFTER {
                Status::Critical
            } else {
                Status::Warning
            };
            (
                status,
                Some(format!(
                    "DogStatsD writes failing for {}s ({error}); retrying, Kafka offsets held back",
                    failing.as_secs()
                )),
            )
        }
    }
}

/// Sends the self-metrics (every `metrics_every`) and service checks (every `checks_every`) of
/// one instance through cadence, on a socket of its own to the same destination.
pub struct Reporter {
    client: cadence::StatsdClient,
    checks: Box<dyn cadence::MetricSink + Send + Sync>,
    counters: std::sync::Arc<Counters>,
    last: Snapshot,
    topic: String,
    group: String,
    tags: String,
    brokers: Vec<String>,
    /// The statuses the service checks last sent.
    last_statuses: Option<[Status; 2]>,
}

impl Reporter {
    /// A reporter for one instance. `metrics` and `checks` are two sinks to the destination.
    pub fn new(
        metrics: impl cadence::MetricSink + Send + Sync + std::panic::RefUnwindSafe + 'static,
        checks: Box<dyn cadence::MetricSink + Send + Sync>,
        counters: std::sync::Arc<Counters>,
        instance: &crate::config::Instance,
    ) -> Reporter {
        let clean = |v: &str| {
            let mut out = String::new();
            crate::dogstatsd::push_tag_value(&mut out, v, 150);
            if out.is_empty() {
                // A group of only `:`s: a tag must not end with one.
                out.push('_');
            }
            out
        };
        let (topic, group) = (clean(&instance.topic), clean(&instance.consumer_group));
        let mut tags = format!("topic:{topic},consumer_group:{group}");
        for tag in &instance.tags {
            tags.push(',');
            tags.push_str(tag);
        }
        let client = cadence::StatsdClient::builder("", metrics)
            .with_error_handler(|e| log::debug!("self-metric not sent: {e}"))
            .build();
        Reporter {
            client,
            checks,
            counters,
            last: Snapshot::default(),
            topic,
            group,
            tags,
            brokers: instance.brokers.clone(),
            last_statuses: None,
        }
    }

    /// Sends what changed since the last report, and the consumer lag.
    pub fn report_metrics(&mut self) {
        use cadence::prelude::*;
        let now = self.counters.snapshot();
        let last = std::mem::replace(&mut self.last, now);
        let counts = [
            (MESSAGES_CONSUMED, now.messages - last.messages),
            (
                MESSAGES_WITHOUT_METRICS,
                now.messages_without_metrics - last.messages_without_metrics,
            ),
            (GAUGES_SENT, now.gauges - last.gauges),
            (COUNTS_SENT, now.counts - last.counts),
            (
                DISTRIBUTION_VALUES_SENT,
                now.distribution_values - last.distribution_values,
            ),
            (
                POINTS_AGGREGATED,
                now.points_aggregated - last.points_aggregated,
            ),
            (DATAGRAMS_SENT, now.datagrams - last.datagrams),
            (SEND_ERRORS, now.send_errors - last.send_errors),
            (KAFKA_ERRORS, now.kafka_errors - last.kafka_errors),
        ];
        for (metric, delta) in counts {
            self.count(metric, delta, None);
        }
        for (i, reason) in REJECT_REASONS.iter().enumerate() {
            self.count(
                MESSAGES_REJECTED,
                now.rejected[i] - last.rejected[i],
                Some(reason),
            );
        }
        for (i, reason) in SkipReason::ALL.iter().enumerate() {
            self.count(
                FIELDS_SKIPPED,
                now.skipped[i] - last.skipped[i],
                Some(reason.label()),
            );
        }
        for (i, issue) in TimestampIssue::ALL.iter().enumerate() {
            self.count(
                TIMESTAMPS_DROPPED,
                now.timestamp_issues[i] - last.timestamp_issues[i],
                Some(issue.label()),
            );
        }
        let lag = self.counters.health.consumer_lag.load(Relaxed);
        if lag >= 0 {
            self.with_tags(self.client.gauge_with_tags(CONSUMER_LAG.name, lag as u64))
                .send();
        }
    }

    /// Sends both service checks.
    pub fn report_service_checks(&mut self) {
        let statuses = self.statuses();
        let health = &self.counters.health;
        let (status, message) = kafka_status(health, &self.brokers, &self.topic);
        self.send_check(CAN_CONNECT, status, message.as_deref());
        let (status, message) = send_status(health);
        self.send_check(CAN_SEND, status, message.as_deref());
        self.last_statuses = Some(statuses);
    }

    /// Whether a service check's status changed since the checks were last sent: a change is
    /// reported at once rather than at the next regular send.
    pub fn status_changed(&self) -> bool {
        // Before the first send, a status other than the one a start has (Kafka not known yet,
        // sending fine) is a change too: a refusal seen at once is reported at once.
        self.last_statuses.unwrap_or([Status::Unknown, Status::Ok]) != self.statuses()
    }

    fn statuses(&self) -> [Status; 2] {
        let health = &self.counters.health;
        [
            kafka_status(health, &self.brokers, &self.topic).0,
            send_status(health).0,
        ]
    }

    fn send_check(&self, name: &str, status: Status, message: Option<&str>) {
        let datagram = service_check_datagram(name, status, &self.tags, message);
        if let Err(e) = self.checks.emit(&datagram) {
            log::debug!("service check {name} not sent: {e}");
        }
    }

    fn count(&self, metric: SelfMetric, delta: u64, reason: Option<&str>) {
        use cadence::prelude::*;
        // Zero counts are not sent: they cost datagrams and say nothing a count of 0 would not.
        if delta == 0 {
            return;
        }
        let builder = self.with_tags(self.client.count_with_tags(metric.name, delta as i64));
        match reason {
            Some(reason) => builder.with_tag("reason", reason).send(),
            None => builder.send(),
        }
    }

    fn with_tags<'a, T: cadence::Metric + From<String>>(
        &'a self,
        builder: cadence::MetricBuilder<'a, 'a, T>,
    ) -> cadence::MetricBuilder<'a, 'a, T> {
        let mut builder = builder
            .with_tag("topic", &self.topic)
            .with_tag("consumer_group", &self.group);
        for tag in self.tags.split(',').skip(2) {
            builder = match tag.split_once(':') {
                Some((k, v)) => builder.with_tag(k, v),
                None => builder.with_tag_value(tag),
            };
        }
        builder
    }
}

/// How often the reporter looks whether a service check's status changed.
pub const STATUS_LOOK_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// Runs a reporter on its own thread until `done` is raised, then sends a last report.
pub fn spawn_reporter(
    mut reporter: Reporter,
    done: std::sync::Arc<std::sync::atomic::AtomicBool>,
    metrics_every: std::time::Duration,
    checks_every: std::time::Duration,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    use std::time::Instant;
    std::thread::Builder::new()
        .name("telemetry".into())
        .spawn(move || {
            let mut next_metrics = Instant::now() + metrics_every;
            let mut next_checks = Instant::now() + checks_every;
            let mut next_look = Instant::now() + STATUS_LOOK_EVERY;
            while !done.load(Relaxed) {
                std::thread::sleep(std::time::Duration::from_millis(50).min(metrics_every));
                let now = Instant::now();
                if now >= next_metrics {
                    next_metrics = now + metrics_every;
                    reporter.report_metrics();
                }
                if now >= next_checks || (now >= next_look && reporter.status_changed()) {
                    next_checks = now + checks_every;
                    reporter.report_service_checks();
                }
                if now >= next_look {
                    next_look = now + STATUS_LOOK_EVERY;
                }
            }
            reporter.report_metrics();
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn the_limiter_lets_a_burst_through_then_counts_what_it_holds_back() {
        let mut limiter = LogLimiter::new(2, Duration::from_millis(50));
        assert_eq!(limiter.allow(), Some(0));
        assert_eq!(limiter.allow(), Some(0));
        assert_eq!(limiter.allow(), None);
        assert_eq!(limiter.allow(), None);
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(limiter.allow(), Some(2));
    }

    #[test]
    fn a_lasting_problem_is_logged_once_reminded_once_a_minute_and_ended_once() {
        let mut log = ProblemLog::new(Duration::from_secs(60));
        let t0 = std::time::Instant::now();
        let at = |secs: u64| t0 + Duration::from_secs(secs);
        assert!(!log.is_active());
        assert!(log.resolve(t0).is_none(), "nothing to end");

        // The error callback and `poll` report the same failure: one line.
        assert_eq!(
            log.report("AllBrokersDown", "AllBrokersDown: 1/1 brokers are down", t0)
                .as_deref(),
            Some("AllBrokersDown: 1/1 brokers are down")
        );
        assert_eq!(
            log.report("AllBrokersDown", "AllBrokersDown (Local)", t0),
            None
        );
        // A second, distinct problem gets its own line.
        assert!(log
            .report("BrokerTransportFailure", "refused", at(1))
            .is_some());
        // Retries every second for a minute: silence until the minute is up.
        let lines: Vec<String> = (1..=130)
            .flat_map(|s| {
                [
                    log.report("AllBrokersDown", "down", at(s)),
                    log.report("BrokerTransportFailure", "refused", at(s)),
                ]
            })
            .flatten()
            .collect();
        assert_eq!(lines.len(), 2, "one reminder a minute: {lines:?}");
        assert!(
            lines[0].starts_with("still failing after 61 s: ")
                && lines[0].contains("in the last 60 s"),
            "{}",
            lines[0]
        );
        assert!(
            lines[1].starts_with("still failing after 121 s: "),
            "{}",
            lines[1]
        );
        assert!(lines.iter().all(|l| !l.contains("(0 ")), "{lines:?}");
        assert!(log.is_active());

        let lasted = log.resolve(at(135)).expect("the problem ends");
        assert_eq!(lasted, Duration::from_secs(135));
        assert!(!log.is_active());
        assert!(log.resolve(at(136)).is_none(), "ended once");
        // A new problem afterwards is news again.
        assert!(log.report("AllBrokersDown", "down", at(200)).is_some());
    }

    #[test]
    fn suppressed_notes_never_say_zero() {
        assert_eq!(suppressed_note(0, "similar messages"), "");
        assert_eq!(
            suppressed_note(3, "similar messages"),
            " (3 similar messages suppressed)"
        );
    }

    #[test]
    fn snapshots_add_up_every_counter() {
        let a = Counters::default();
        a.messages.fetch_add(2, Relaxed);
        a.reject("invalid_json");
        a.skip(SkipReason::Array);
        a.timestamp_issue(TimestampIssue::OutOfWindow);
        let sum = a.snapshot().merged(&a.snapshot());
        assert_eq!(sum.messages, 4);
        assert_eq!(sum.rejected("invalid_json"), 2);
        assert_eq!(sum.rejected_total(), 2);
        assert_eq!(sum.skipped(SkipReason::Array), 2);
        assert_eq!(sum.timestamp_issues(TimestampIssue::OutOfWindow), 2);
        assert_eq!(sum.describe_skips(), "array=2");
        assert_eq!(sum.describe_rejections(), "invalid_json=2");
        assert_eq!(Snapshot::default().describe_rejections(), "none");
    }

    #[test]
    fn service_check_messages_cannot_break_the_datagram() {
        let d = service_check_datagram(CAN_CONNECT, Status::Critical, "topic:t", Some("a|b\nc"));
        assert_eq!(d, "_sc|algorithmia.kafka.can_connect|2|#topic:t|m:a b c");
        assert_eq!(
            service_check_datagram(CAN_SEND, Status::Ok, "", None),
            "_sc|algorithmia.forwarder.can_send|0"
        );
    }

    #[test]
    fn kafka_status_follows_statistics_and_errors() {
        use std::sync::atomic::Ordering::Relaxed;
        let brokers = ["k1:9092".to_string()];
        let health = Health::default();
        assert_eq!(kafka_status(&health, &brokers, "t").0, Status::Unknown);
        health.kafka_problem("BrokerTransportFailure: connection refused");
        assert_eq!(
            health.last_kafka_problem().as_deref(),
            Some("BrokerTransportFailure: connection refused")
        );
        // A known cause outlasts the consequences reported after it, until Kafka works.
        health.kafka_problem_with_cause("authentication failed: wrong password");
        health.kafka_problem("AllBrokersDown: 1/1 brokers are down");
        assert_eq!(
            health.last_kafka_problem().as_deref(),
            Some("authentication failed: wrong password")
        );
        health.kafka_ok();
        assert_eq!(health.last_kafka_problem(), None);
        health.kafka_problem("BrokerTransportFailure: connection refused");
        let (status, message) = kafka_status(&health, &brokers, "t");
        assert_eq!(status, Status::Critical);
        assert!(message.unwrap().contains("connection refused"));
        health.stats_seen.store(true, Relaxed);
        health.brokers_known.store(1, Relaxed);
        assert_eq!(
            kafka_status(&health, &brokers, "t").0,
            Status::Critical,
            "no broker up"
        );
        health.brokers_up.store(1, Relaxed);
        assert_eq!(
            kafka_status(&health, &brokers, "t").0,
            Status::Ok,
            "a transient error with a broker up"
        );
        health.kafka_problem("MessageConsumption(UnknownTopicOrPartition): topic missing");
        let (status, message) = kafka_status(&health, &brokers, "t");
        assert_eq!(status, Status::Critical);
        assert!(message.unwrap().starts_with("topic t:"));
        health.kafka_ok();
        assert_eq!(kafka_status(&health, &brokers, "t").0, Status::Ok);
    }

    #[test]
    fn send_status_warns_while_writes_fail_and_recovers() {
        let health = Health::default();
        assert_eq!(send_status(&health).0, Status::Ok);
        health.sink_failed("Connection refused");
        let (status, message) = send_status(&health);
        assert_eq!(status, Status::Warning);
        assert!(message.unwrap().contains("Connection refused"));
        health.sink_ok();
        assert_eq!(send_status(&health).0, Status::Ok);
    }

    #[test]
    fn every_self_metric_is_under_the_forwarder_prefix_and_unique() {
        let mut names: Vec<&str> = SELF_METRICS.iter().map(|m| m.name).collect();
        assert!(names
            .iter()
            .all(|n| n.starts_with("algorithmia.forwarder.")));
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), SELF_METRICS.len());
    }
}
