//! The self-metrics and service checks, sent through cadence on a socket of their own.

use std::sync::atomic::Ordering::Relaxed;

use super::counters::{Counters, RejectReason, SkipReason, Snapshot, TimestampIssue};
use super::health::service_check_datagram;
use super::health::{kafka_status, send_status, Status, CAN_CONNECT, CAN_SEND};

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
/// Fields that did not become points, tagged `reason:`.
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

/// Sends the self-metrics (every `metrics_every`) and service checks (every `checks_every`) of
/// one instance through cadence, on a socket of its own to the same destination.
pub struct Reporter {
    client: cadence::StatsdClient,
    checks: Box<dyn cadence::MetricSink + Send + Sync>,
    counters: std::sync::Arc<Counters>,
    last: Snapshot,
    topic: String,
    group: String,
    /// Every tag, joined for the service checks: `topic`, `consumer_group`, the instance's.
    tags: String,
    /// The instance's static tags, split once into key and value for cadence's builders.
    static_tags: Vec<(String, Option<String>)>,
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
            static_tags: instance
                .tags
                .iter()
                .map(|tag| match tag.split_once(':') {
                    Some((k, v)) => (k.to_string(), Some(v.to_string())),
                    None => (tag.clone(), None),
                })
                .collect(),
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
        for (i, reason) in RejectReason::ALL.iter().enumerate() {
            self.count(
                MESSAGES_REJECTED,
                now.rejected[i] - last.rejected[i],
                Some(reason.label()),
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
        for (key, value) in &self.static_tags {
            builder = match value {
                Some(value) => builder.with_tag(key, value),
                None => builder.with_tag_value(key),
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
