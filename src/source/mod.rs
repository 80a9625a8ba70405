//! The Kafka source: the consumer's settings and its callbacks.
//!
//! The consumer runs with `enable.auto.offset.store=false`: librdkafka commits (every
//! `auto.commit.interval.ms`, on revocation and at close) only what the pipeline stored, and the
//! pipeline stores a message's offset only once every datagram carrying its points was accepted
//! by the socket. The source does not know which offsets those are: when partitions leave this
//! member, its rebalance callback asks the stage after it, through [`OnRevoke`].
//!
//! Messages are taken many at a time from a queue of our own ([`fetch`]), which the rebalance
//! callback routes every assigned partition to; `poll` serves the group's events.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::{ClientContext, TopicPartitionList};

use crate::config::{is_secret_property, ConfigError, Instance, StartOffset};
use crate::telemetry::Counters;
use crate::throttle::ProblemLog;
use crate::tls_diagnosis::{CertificateCheck, UNTRUSTED};

mod fetch;

use fetch::FetchQueue;
pub use fetch::{Fetched, BATCH};

/// How long librdkafka waits before fetching again for a partition whose local queue is full.
/// Its default, 1000 ms, leaves a busy consumer idle; the queue below holds about 12 ms of
/// messages at a million a second, so it looks again every 2 ms (a wake-up of its broker thread,
/// nothing more, while the queue stays full).
pub const FETCH_QUEUE_BACKOFF_MS: &str = "2";

/// How much fetched data librdkafka holds for the application: 4 MB of payloads, which it
/// overshoots by up to one fetch response (`fetch.max.bytes` follows it, 4 MB). Its default,
/// 64 MB, let a backlog fill the process to 90 MB or more (the queued messages cost about
/// twice their payload); with 4 MB the forwarder's peak RSS stays near 35 MB whatever the
/// backlog, and in the broker benchmark 6 and 16 MB forwarded no faster. `kafka_options` can
/// raise it for a broker far away, whose round trips a small queue would not cover.
pub const QUEUED_MAX_MESSAGES_KBYTES: &str = "4096";

/// How often librdkafka reports statistics (consumer lag, broker states).
pub const STATISTICS_INTERVAL_MS: &str = "5000";

/// How partitions are shared in the group: with `cooperative-sticky`, a rebalance moves only the
/// partitions that change owner, and every other member goes on consuming through it (the eager
/// strategies stop the whole group while it rebalances).
pub const ASSIGNMENT_STRATEGY: &str = "cooperative-sticky";

/// How long a request may go unanswered before librdkafka gives up on the connection. Its
/// default, 60 s, would leave a frozen broker looking healthy for a minute; a healthy broker
/// answers a fetch within `fetch.wait.max.ms` (500 ms).
pub const SOCKET_TIMEOUT_MS: &str = "10000";

/// How long the group waits for a silent member before giving its partitions to the others:
/// after a crash, its partitions resume within about this long (librdkafka's default is 45 s).
pub const SESSION_TIMEOUT_MS: &str = "10000";
/// A third of the session timeout, as Kafka recommends.
pub const HEARTBEAT_INTERVAL_MS: &str = "3000";

/// How long librdkafka waits before connecting to a broker again. It also spaces its "connect to
/// any broker" requests (the group coordinator query among them) by half of it, capped at 1 s,
/// and those ignore the exponential backoff: with its default, 100 ms, a broker whose
/// certificate or login is refused sees 10 to 20 handshakes a second for as long as it lasts.
/// 2000 ms makes that about one a second; a broker that restarts is still reconnected to within
/// about a second by those same requests.
pub const RECONNECT_BACKOFF_MS: &str = "2000";
/// The longest wait between two attempts on one broker (librdkafka's default, said here).
pub const RECONNECT_BACKOFF_MAX_MS: &str = "10000";

/// How often a Kafka problem that goes on is logged again.
pub const PROBLEM_REMINDER: std::time::Duration = std::time::Duration::from_secs(60);

/// The librdkafka settings of one instance, `kafka_options` applied last.
pub fn client_config(instance: &Instance) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", instance.brokers.join(","))
        .set("group.id", &instance.consumer_group)
        .set("client.id", "algorithmia-datadog")
        .set("enable.auto.commit", "true")
        // librdkafka commits what was stored (see `crate::offsets`) this often.
        .set(
            "auto.commit.interval.ms",
            instance.commit_interval_ms.to_string(),
        )
        .set("partition.assignment.strategy", ASSIGNMENT_STRATEGY)
        .set("session.timeout.ms", SESSION_TIMEOUT_MS)
        .set("heartbeat.interval.ms", HEARTBEAT_INTERVAL_MS)
        .set("socket.timeout.ms", SOCKET_TIMEOUT_MS)
        .set("reconnect.backoff.ms", RECONNECT_BACKOFF_MS)
        .set("reconnect.backoff.max.ms", RECONNECT_BACKOFF_MAX_MS)
        .set("enable.auto.offset.store", "false")
        .set(
            "auto.offset.reset",
            match instance.start_offset {
                StartOffset::Latest => "latest",
                StartOffset::Earliest => "earliest",
            },
        )
        .set("fetch.queue.backoff.ms", FETCH_QUEUE_BACKOFF_MS)
        .set("queued.max.messages.kbytes", QUEUED_MAX_MESSAGES_KBYTES)
        .set("enable.partition.eof", "false")
        // Consumer lag and broker states for the self-metrics and service checks.
        .set("statistics.interval.ms", STATISTICS_INTERVAL_MS)
        .set("security.protocol", instance.security_protocol.as_kafka());
    if let Some(sasl) = &instance.sasl {
        config
            .set("sasl.mechanism", sasl.mechanism.as_kafka())
            .set("sasl.username", &sasl.username)
            .set("sasl.password", sasl.password.expose());
    }
    if let Some(ca) = &instance.ssl_ca_location {
        config.set("ssl.ca.location", ca.display().to_string());
    }
    for (key, value) in instance.kafka_options.iter() {
        config.set(key, value);
    }
    config
}

/// Lets librdkafka check every property (names and values) without connecting anywhere.
pub fn validate_client_config(instance: &Instance, origin: &str) -> Result<(), ConfigError> {
    match client_config(instance).create_native_config() {
        Ok(_) => Ok(()),
        Err(KafkaError::ClientConfig(_, description, key, _value)) => {
            let place = if instance.kafka_options.contains_key(&key) {
                format!("instances[{}].kafka_options.{key}", instance.index)
            } else {
                format!("instances[{}] ({key})", instance.index)
            };
            // librdkafka repeats the value in its description: never echo a secret.
            let reason = if is_secret_property(&key) || key == "sasl.password" {
                "librdkafka rejected this property's value".to_string()
            } else {
                description
            };
            Err(ConfigError {
                origin: origin.to_string(),
                key: place,
                reason,
            })
        }
        Err(other) => Err(ConfigError {
            origin: origin.to_string(),
            key: format!("instances[{}]", instance.index),
            reason: other.to_string(),
        }),
    }
}

/// What the rebalance callback asks of the stages after the source.
pub trait OnRevoke: Send + Sync + Sized + 'static {
    /// `partitions` leave this member: deliver what is pending for them, and commit it through
    /// `consumer` unless they are `lost` (already given to another member, which would refuse
    /// the commit). Runs inside `poll`, on the consuming thread, and holds up the group's
    /// rebalance while it runs.
    fn revoke(&self, consumer: &BaseConsumer<SourceContext<Self>>, partitions: &[i32], lost: bool);
}

/// What the consumer's callbacks see: the stage to ask before partitions go, and the client's
/// health.
pub struct SourceContext<R> {
    on_revoke: R,
    /// Counters shared with the stages after the source.
    pub counters: Arc<Counters>,
    problems: Mutex<ProblemLog>,
    topic: String,
    certificates: Option<CertificateCheck>,
    /// Where the assigned partitions' messages go, once opened ([`SourceContext::open_fetch_queue`]).
    fetch: Mutex<Option<FetchQueue>>,
}

impl<R: OnRevoke> SourceContext<R> {
    /// A context that asks `on_revoke` before partitions go.
    pub fn new(on_revoke: R, counters: Arc<Counters>, topic: &str) -> Self {
        SourceContext {
            on_revoke,
            counters,
            problems: Mutex::new(ProblemLog::new(PROBLEM_REMINDER)),
            topic: topic.to_string(),
            certificates: None,
            fetch: Mutex::new(None),
        }
    }

    /// From now on, the partitions assigned to `consumer` deliver their messages to a queue read
    /// by [`SourceContext::take_fetched`] (see [`fetch`]). [`SourceContext::close_fetch_queue`]
    /// must be called before `consumer` is dropped.
    pub fn open_fetch_queue(&self, consumer: &BaseConsumer<Self>) {
        // SAFETY: the consumer outlives the queue: its owner closes the queue before dropping it.
        let queue = unsafe { FetchQueue::new(consumer.client().native_ptr(), &self.topic) };
        if queue.is_none() {
            log::warn!(
                "no fetch queue for {}: messages come through poll",
                self.topic
            );
        }
        *self.fetch_queue() = queue;
    }

    /// Closes the fetch queue; what it still holds is dropped (never handled, so never
    /// committed). Must be called before the consumer is dropped.
    pub fn close_fetch_queue(&self) {
        self.fetch_queue().take();
    }

    /// Routes the current assignment to the fetch queue again (librdkafka undoes a partition's
    /// routing when it stops fetching it; see [`fetch`]).
    pub fn reroute(&self, consumer: &BaseConsumer<Self>) {
        let fetch = self.fetch_queue();
        let (Some(queue), Ok(assignment)) = (fetch.as_ref(), consumer.assignment()) else {
            return;
        };
        let partitions: Vec<i32> = assignment
            .elements_for_topic(&self.topic)
            .iter()
            .map(|e| e.partition())
            .collect();
        queue.route(&partitions);
    }

    /// Whether `poll` has events to serve (rebalances, commits, errors); `true` when there is no
    /// fetch queue, whose messages come through `poll` then.
    pub fn events_waiting(&self) -> bool {
        self.fetch_queue()
            .as_ref()
            .is_none_or(FetchQueue::events_waiting)
    }

    /// Takes up to `max` fetched messages (see [`fetch::FetchQueue::take`]); `None` when there
    /// is no fetch queue.
    pub fn take_fetched(
        &self,
        wait: Duration,
        max: usize,
        each: impl FnMut(Result<Fetched<'_>, KafkaError>),
    ) -> Option<usize> {
        Some(self.fetch_queue().as_mut()?.take(wait, max, each))
    }

    fn fetch_queue(&self) -> std::sync::MutexGuard<'_, Option<FetchQueue>> {
        self.fetch.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Refused certificates are diagnosed with `check` (librdkafka names every refusal the
    /// same way; see [`crate::tls_diagnosis`]).
    pub fn with_certificate_check(mut self, check: CertificateCheck) -> Self {
        self.certificates = Some(check);
        self
    }

    /// The stage after the source, which the rebalance callback asks before partitions go.
    pub fn downstream(&self) -> &R {
        &self.on_revoke
    }

    /// An error of the Kafka client, from `poll` (`reason` is `None`) or from the error
    /// callback: counted, recorded for the service check, and logged once per distinct problem.
    pub fn kafka_error(&self, error: &KafkaError, reason: Option<&str>) {
        self.counters.kafka_errors.fetch_add(1, Ordering::Relaxed);
        let (mut key, mut what) = describe_kafka_error(error, reason);
        if let (true, Some(check)) = (key == UNTRUSTED, &self.certificates) {
            let cause = check.cause(&what);
            if cause != UNTRUSTED {
                what = what.replacen(UNTRUSTED, cause, 1);
                key = cause.to_string();
            }
        }
        let reporting = self
            .problems
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_active();
        // `poll` hands back, without its text, what the error callback reported with it: while
        // a problem is being reported, such a repeat is neither another line nor a newer cause.
        if reporting && reason.is_none() {
            log::debug!("kafka ({}): {what}", self.topic);
            return;
        }
        use rdkafka::types::RDKafkaErrorCode::{AllBrokersDown, BrokerTransportFailure, Resolve};
        let health = &self.counters.health;
        if cause(error, &what).is_some() {
            health.kafka_problem_with_cause(&what);
            health.broker_refused();
        } else {
            health.kafka_problem(&what);
        }
        if matches!(
            error.rdkafka_error_code(),
            Some(AllBrokersDown | BrokerTransportFailure | Resolve)
        ) {
            health.broker_unreachable();
        }
        // Once an outage is reported, its other faces (every broker down, a connection refused
        // again) go to the service check's message, not to more lines: one outage, one line.
        let another_face = matches!(
            error.rdkafka_error_code(),
            Some(AllBrokersDown | BrokerTransportFailure)
        );
        if reporting && another_face {
            log::debug!("kafka ({}): {what}", self.topic);
            return;
        }
        self.log_problem(&key, &what);
    }

    /// Logs a problem the first time it appears, then at most a reminder a minute while it lasts.
    pub fn log_problem(&self, key: &str, what: &str) {
        let line = self
            .problems
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .report(key, what, Instant::now());
        if let Some(line) = line {
            log::error!("kafka ({}): {line}", self.topic);
        }
    }

    /// Kafka works (a broker is up and partitions are assigned) as of `since`: ends a problem.
    fn kafka_works(&self, since: Instant) {
        let mut problems = self.problems.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(lasted) = problems.resolve(since) {
            drop(problems);
            self.counters.health.kafka_ok();
            log::info!(
                "kafka ({}): reachable again after {:.1} s",
                self.topic,
                lasted.as_secs_f64()
            );
        }
    }
}

/// A Kafka error as one line, and the key that identifies its kind: librdkafka's error code,
/// whichever way it was reported (the error callback, or `poll`). Causes a user must act on are
/// named first, with the setting to check.
pub fn describe_kafka_error(error: &KafkaError, reason: Option<&str>) -> (String, String) {
    let (key, what) = match (error.rdkafka_error_code(), reason) {
        // `AllBrokersDown: 1/1 brokers are down`.
        (Some(code), Some(reason)) => (format!("{code:?}"), format!("{code:?}: {reason}")),
        // `AllBrokersDown (Local: All broker connections are down)`.
        (Some(code), None) => (format!("{code:?}"), code.to_string()),
        (None, Some(reason)) => (error.to_string(), format!("{error}: {reason}")),
        (None, None) => (error.to_string(), error.to_string()),
    };
    match cause(error, &what) {
        // One cause, one line, whichever error codes it shows up under.
        Some(cause) => (cause.to_string(), format!("{cause}: {what}")),
        None => (key, what),
    }
}

/// What a user must fix, when librdkafka's error says it.
fn cause(error: &KafkaError, what: &str) -> Option<&'static str> {
    use rdkafka::types::RDKafkaErrorCode::*;
    let code = error.rdkafka_error_code()?;
    let lower = what.to_ascii_lowercase();
    match code {
        Authentication | SaslAuthenticationFailed => {
            Some("authentication failed (check sasl_username, sasl_password and sasl_mechanism)")
        }
        _ if lower.contains("certificate verify failed")
            || lower.contains("certificate could not be verified") =>
        {
            Some(UNTRUSTED)
        }
        SSL => Some("TLS handshake failed (check security_protocol and ssl_ca_location)"),
        _ => None,
    }
}

impl<R: OnRevoke> ClientContext for SourceContext<R> {
    fn error(&self, error: KafkaError, reason: &str) {
        self.kafka_error(&error, Some(reason));
    }

    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, message: &str) {
        use rdkafka::config::RDKafkaLogLevel::*;
        match level {
            // A broker connection failure reaches `error` with the same text, and a failed
            // commit `commit_callback`: logged there, once.
            Emerg | Alert | Critical | Error | Warning if fac == "FAIL" || fac == "COMMITFAIL" => {
                log::debug!(target: "librdkafka", "librdkafka: {fac} {message}")
            }
            // A session that timed out ends in a revocation of lost partitions, which
            // `pre_rebalance` logs saying what it means for the data.
            Warning if fac == "SESSTMOUT" => {
                log::info!(target: "librdkafka", "librdkafka: {fac} {message}")
            }
            Emerg | Alert | Critical | Error => {
                log::error!(target: "librdkafka", "librdkafka: {fac} {message}")
            }
            Warning => log::warn!(target: "librdkafka", "librdkafka: {fac} {message}"),
            Notice | Info => log::info!(target: "librdkafka", "librdkafka: {fac} {message}"),
            Debug => log::debug!(target: "librdkafka", "librdkafka: {fac} {message}"),
        }
    }

    fn stats(&self, statistics: rdkafka::Statistics) {
        let health = &self.counters.health;
        let lag: i64 = statistics
            .topics
            .get(&self.topic)
            .map(|topic| {
                topic
                    .partitions
                    .iter()
                    .filter(|(id, p)| **id >= 0 && p.consumer_lag >= 0)
                    .map(|(_, p)| p.consumer_lag)
                    .sum()
            })
            .unwrap_or(-1);
        // Brokers with a node id: the bootstrap entries (-1) are placeholders.
        let brokers = statistics.brokers.values().filter(|b| b.nodeid >= 0);
        let (known, up) = brokers.fold((0u32, 0u32), |(k, u), b| {
            (k + 1, u + u32::from(b.state == "UP"))
        });
        health.consumer_lag.store(lag, Ordering::Relaxed);
        health.brokers_known.store(known, Ordering::Relaxed);
        health.brokers_up.store(up, Ordering::Relaxed);
        health.stats_seen.store(true, Ordering::Relaxed);
        if up > 0 {
            health.reached_broker();
        }
        if statistics.cgrp.as_ref().is_some_and(|g| g.state == "up") {
            // In the group, with or without partitions (more members than partitions).
            health.joined_group();
        }
        // A broker up and partitions assigned: whatever failed before works again, since the
        // later of the two state changes.
        let group = statistics
            .cgrp
            .as_ref()
            .filter(|g| g.state == "up" && g.assignment_size > 0);
        let newest_broker_up = statistics
            .brokers
            .values()
            .filter(|b| b.nodeid >= 0 && b.state == "UP")
            .map(|b| Duration::from_micros(b.stateage.max(0) as u64))
            .min();
        if let (Some(group), Some(broker_age)) = (group, newest_broker_up) {
            let group_age = Duration::from_millis(group.stateage.max(0) as u64);
            let age = broker_age.min(group_age);
            let now = Instant::now();
            self.kafka_works(now.checked_sub(age).unwrap_or(now));
        }
    }
}

impl<R: OnRevoke> ConsumerContext for SourceContext<R> {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            // With the cooperative protocol (the default) only the partitions leaving this
            // member are revoked; the others keep flowing. rdkafka's default `rebalance` then
            // calls `incremental_unassign`/`incremental_assign` (plain `assign` under an eager
            // strategy set in `kafka_options`).
            Rebalance::Revoke(tpl) => {
                self.counters.revocations.fetch_add(1, Ordering::Relaxed);
                let partitions: Vec<i32> = tpl.elements().iter().map(|e| e.partition()).collect();
                // Lost partitions (this member was thrown out of the group) already have a new
                // owner: a commit would be refused, and what it did not commit is read again.
                let lost = consumer.assignment_lost();
                self.on_revoke.revoke(consumer, &partitions, lost);
                if lost {
                    log::warn!(
                        "partitions {partitions:?} of {} lost (this member was out of the group too long); their uncommitted messages will be consumed again",
                        self.topic
                    );
                } else {
                    log::info!("partitions {partitions:?} of {} revoked", self.topic);
                }
            }
            Rebalance::Assign(tpl) => {
                self.counters.health.kafka_ok();
                self.counters.health.joined_group();
                let partitions: Vec<i32> = tpl.elements().iter().map(|e| e.partition()).collect();
                // Before librdkafka starts fetching them, so that none of their messages go
                // through `poll` (where they could be handled out of order).
                if let Some(queue) = self.fetch_queue().as_ref() {
                    queue.route(&partitions);
                }
                // A cooperative rebalance that gives this member nothing new says nothing.
                if !partitions.is_empty() {
                    log::info!("partitions {partitions:?} of {} assigned", self.topic);
                    self.kafka_works(Instant::now());
                }
            }
            Rebalance::Error(e) => self.log_problem("rebalance", &format!("rebalance failed: {e}")),
        }
    }

    fn commit_callback(&self, result: KafkaResult<()>, _offsets: &TopicPartitionList) {
        use rdkafka::types::RDKafkaErrorCode::*;
        match result {
            // Nothing new to commit is not a failure.
            Ok(()) | Err(KafkaError::ConsumerCommit(NoOffset)) => {}
            // The group's coordinator is away (a broker outage, logged as such) or moving: the
            // next commit, a second later, carries the same offsets.
            Err(KafkaError::ConsumerCommit(
                WaitingForCoordinator
                | CoordinatorNotAvailable
                | NotCoordinator
                | RebalanceInProgress,
            )) => log::debug!("offset commit postponed: {result:?}"),
            Err(e) => self.log_problem("commit", &format!("offset commit failed: {e}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::types::RDKafkaErrorCode;

    fn described(code: RDKafkaErrorCode, reason: &str) -> String {
        describe_kafka_error(&KafkaError::Global(code), Some(reason)).1
    }

    #[test]
    fn a_refused_login_is_named_with_the_settings_to_check() {
        let what = described(
            RDKafkaErrorCode::Authentication,
            "sasl_ssl://127.0.0.1:9093/bootstrap: SASL authentication error: SASL SCRAM authentication failed",
        );
        assert!(
            what.starts_with("authentication failed (check sasl_username"),
            "{what}"
        );
        assert!(what.contains("SASL SCRAM authentication failed"), "{what}");
    }

    #[test]
    fn an_unverified_broker_certificate_is_named_with_the_setting_to_check() {
        let what = described(
            RDKafkaErrorCode::SSL,
            "ssl://b:9093/bootstrap: SSL handshake failed: error:0A000086:SSL routines::certificate verify failed",
        );
        assert!(
            what.starts_with("certificate not trusted (check ssl_ca_location)"),
            "{what}"
        );
    }

    #[test]
    fn other_errors_are_described_as_librdkafka_gives_them() {
        let what = described(RDKafkaErrorCode::AllBrokersDown, "1/1 brokers are down");
        assert_eq!(what, "AllBrokersDown: 1/1 brokers are down");
    }
}
