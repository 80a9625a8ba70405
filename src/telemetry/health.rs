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
    /// When the consume loop last turned, in [`clock_ms`]; 0 before its first turn.
    loop_turned_ms: std::sync::atomic::AtomicU64,
    /// Whether the consumer has joined its group (an assignment, or the group `up` in the
    /// statistics), at least once.
    group_joined: std::sync::atomic::AtomicBool,
    /// Whether a broker was ever reached (UP in the statistics).
    broker_reached: std::sync::atomic::AtomicBool,
    /// Whether no broker could be reached so far, librdkafka said (connection refused, name
    /// not found, every broker down) before any was reached.
    broker_unreachable: std::sync::atomic::AtomicBool,
    /// Whether a broker refused the consumer (its login, or the certificate was refused).
    broker_refused: std::sync::atomic::AtomicBool,
}

/// Milliseconds since the first call in this process (never 0 after it): a clock that atomics
/// can hold.
pub fn clock_ms() -> u64 {
    static EPOCH: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    EPOCH
        .get_or_init(std::time::Instant::now)
        .elapsed()
        .as_millis() as u64
        + 1
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

    /// The consume loop turned (it does at least every 100 ms, waiting or not): it is alive.
    pub fn loop_turned(&self) {
        self.loop_turned_ms.store(clock_ms(), Relaxed);
    }

    /// The consumer is in its group.
    pub fn joined_group(&self) {
        self.group_joined.store(true, Relaxed);
    }

    /// A broker is up.
    pub fn reached_broker(&self) {
        self.broker_reached.store(true, Relaxed);
    }

    /// librdkafka could not connect to a broker (refused, unresolvable, all down).
    pub fn broker_unreachable(&self) {
        self.broker_unreachable.store(true, Relaxed);
    }

    /// A broker refused the login, or its certificate was refused: a setting to fix.
    pub fn broker_refused(&self) {
        self.broker_refused.store(true, Relaxed);
    }

    /// `/livez`: the consume loop turned within `stall_ms`. A loop that waits for a broker or
    /// the Agent still turns; one that stops turning is stuck, and a restart is the cure.
    pub fn liveness(&self, stall_ms: u64) -> Result<String, String> {
        let now = clock_ms();
        match self.loop_turned_ms.load(Relaxed) {
            0 if now <= stall_ms => Ok("starting".into()),
            0 => Err(format!(
                "the consume loop has not started within {} s",
                stall_ms / 1000
            )),
            turned => {
                let ago = now.saturating_sub(turned);
                if ago <= stall_ms {
                    Ok(format!(
                        "consume loop turned {:.1} s ago",
                        ago as f64 / 1000.0
                    ))
                } else {
                    Err(format!(
                        "the consume loop has not turned for {:.1} s (limit {} s): stuck",
                        ago as f64 / 1000.0,
                        stall_ms / 1000
                    ))
                }
            }
        }
    }

    /// `/readyz`: in the consumer group, or waiting for a broker never reached (an outage must
    /// not hold a rollout or a restart back). Joining, or refused by a broker it reached (a
    /// wrong password, an untrusted certificate: a new version's mistake), is not ready, so that
    /// a rollout waits, or stops, there.
    pub fn readiness(&self) -> Result<String, String> {
        if self.group_joined.load(Relaxed) {
            return Ok("in the consumer group".into());
        }
        let problem = self.last_kafka_problem();
        let refused = self.broker_refused.load(Relaxed);
        if !refused && self.broker_unreachable.load(Relaxed) && !self.broker_reached.load(Relaxed) {
            return Ok(format!(
                "waiting for a broker never reached{}",
                problem.map(|p| format!(": {p}")).unwrap_or_default()
            ));
        }
        Err(match problem {
            Some(problem) => format!("not in the consumer group: {problem}"),
            None => "joining the consumer group".into(),
        })
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
    fn readiness_waits_for_the_group_unless_no_broker_was_ever_reached() {
        let health = Health::default();
        assert_eq!(health.readiness(), Err("joining the consumer group".into()));
        // An outage from the start: ready, so a rollout is not held back by the broker.
        health.broker_unreachable();
        health.kafka_problem("BrokerTransportFailure: Connection refused");
        let ready = health.readiness().unwrap();
        assert!(
            ready.starts_with("waiting for a broker never reached"),
            "{ready}"
        );
        // Reached, then not (yet) in the group: joining.
        health.reached_broker();
        assert!(health.readiness().is_err());
        health.joined_group();
        assert_eq!(health.readiness(), Ok("in the consumer group".into()));
    }

    #[test]
    fn a_refused_login_or_certificate_is_not_ready_even_before_any_broker_was_reached() {
        let health = Health::default();
        health.broker_refused();
        health.broker_unreachable();
        health.kafka_problem_with_cause("authentication failed: wrong password");
        assert_eq!(
            health.readiness(),
            Err("not in the consumer group: authentication failed: wrong password".into())
        );
    }

    #[test]
    fn liveness_follows_the_loop_s_turns() {
        let health = Health::default();
        // Before the first turn, the grace of one stall period from the process's start.
        assert_eq!(health.liveness(60_000), Ok("starting".into()));
        health.loop_turned();
        assert!(health
            .liveness(60_000)
            .unwrap()
            .starts_with("consume loop turned"));
        // A turn older than the limit is a stuck loop.
        health
            .loop_turned_ms
            .store(clock_ms().saturating_sub(5_000).max(1), Relaxed);
        if clock_ms() > 5_000 {
            let stuck = health.liveness(1_000).unwrap_err();
            assert!(stuck.contains("stuck"), "{stuck}");
        }
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
}
