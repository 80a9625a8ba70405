//! What the forwarder counts: messages, points, datagrams, rejections and skips by reason.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use super::health::Health;

/// Why a message was rejected as a whole ([`crate::decode::DecodeError::reason`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectReason {
    /// No value at all (a tombstone).
    Empty,
    /// The bytes are not UTF-8.
    NotUtf8,
    /// Not JSON.
    InvalidJson,
    /// JSON, but not an object.
    NotAnObject,
}

impl RejectReason {
    /// Every reason, in counter order.
    pub const ALL: [RejectReason; 4] = [
        RejectReason::Empty,
        RejectReason::NotUtf8,
        RejectReason::InvalidJson,
        RejectReason::NotAnObject,
    ];

    /// A short, stable label (`reason:` tag).
    pub fn label(self) -> &'static str {
        match self {
            RejectReason::Empty => "empty",
            RejectReason::NotUtf8 => "not_utf8",
            RejectReason::InvalidJson => "invalid_json",
            RejectReason::NotAnObject => "not_an_object",
        }
    }
}

impl PartialEq<&str> for RejectReason {
    fn eq(&self, label: &&str) -> bool {
        self.label() == *label
    }
}

/// Why one field of an accepted message did not become a point.
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
    rejected: [AtomicU64; RejectReason::ALL.len()],
    skipped: [AtomicU64; SkipReason::ALL.len()],
    timestamp_issues: [AtomicU64; TimestampIssue::ALL.len()],
}

impl Counters {
    /// Counts a rejected message.
    pub fn reject(&self, reason: RejectReason) {
        self.rejected[reason as usize].fetch_add(1, Relaxed);
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
    /// Rejections, indexed like [`RejectReason::ALL`].
    pub rejected: [u64; RejectReason::ALL.len()],
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
        RejectReason::ALL
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
        describe_counts(
            RejectReason::ALL
                .iter()
                .map(|r| (r.label(), self.rejected[*r as usize])),
        )
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshots_add_up_every_counter() {
        let a = Counters::default();
        a.messages.fetch_add(2, Relaxed);
        a.reject(RejectReason::InvalidJson);
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
}
