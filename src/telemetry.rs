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
}

impl SkipReason {
    /// Every reason, in counter order.
    pub const ALL: [SkipReason; 8] = [
        SkipReason::Null,
        SkipReason::Array,
        SkipReason::Object,
        SkipReason::String,
        SkipReason::Boolean,
        SkipReason::NonFinite,
        SkipReason::InvalidName,
        SkipReason::Filtered,
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
    /// Gauges written to the Agent's socket buffer.
    pub gauges: AtomicU64,
    /// Datagrams the socket accepted.
    pub datagrams: AtomicU64,
    /// Bytes the socket accepted.
    pub bytes: AtomicU64,
    /// Failed socket writes (each is retried).
    pub send_errors: AtomicU64,
    /// Errors reported by the Kafka client.
    pub kafka_errors: AtomicU64,
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

/// A copy of [`Counters`] at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// Messages taken from Kafka.
    pub messages: u64,
    /// Accepted messages that held no metric.
    pub messages_without_metrics: u64,
    /// Gauges written.
    pub gauges: u64,
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

    /// `reason=count` pairs with a non-zero count, for one log line.
    pub fn describe_skips(&self) -> String {
        let mut parts: Vec<String> = SkipReason::ALL
            .iter()
            .filter(|r| self.skipped(**r) > 0)
            .map(|r| format!("{}={}", r.label(), self.skipped(*r)))
            .collect();
        parts.extend(
            REJECT_REASONS
                .iter()
                .filter(|r| self.rejected(r) > 0)
                .map(|r| format!("rejected_{r}={}", self.rejected(r))),
        );
        if parts.is_empty() {
            "none".into()
        } else {
            parts.join(" ")
        }
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
        assert_eq!(sum.describe_skips(), "array=2 rejected_invalid_json=2");
    }
}
