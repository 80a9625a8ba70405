//! The state the service checks describe, and what they say about it.

use std::sync::atomic::Ordering::Relaxed;

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

#[cfg(test)]
mod tests {
    use super::*;

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
}
