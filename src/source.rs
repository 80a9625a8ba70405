//! The Kafka source: the consumer's settings, its callbacks, and the bookkeeping of which offsets
//! may be stored.
//!
//! The consumer runs with `enable.auto.offset.store=false`: librdkafka commits (every
//! `auto.commit.interval.ms`, on revocation and at close) only what we stored, and we store a
//! message's offset only once every datagram carrying its points was accepted by the socket (see
//! [`crate::offsets`]).

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::{ClientContext, TopicPartitionList};

use crate::config::{is_secret_property, ConfigError, Instance, StartOffset};
use crate::forwarder::Forwarder;
use crate::telemetry::{Counters, ProblemLog};

/// How long librdkafka waits before fetching again for a partition whose local queue is full.
/// Its default, 1000 ms, leaves a busy consumer idle; 20 ms keeps it fed.
pub const FETCH_QUEUE_BACKOFF_MS: &str = "20";

/// How often librdkafka reports statistics (consumer lag, broker states).
pub const STATISTICS_INTERVAL_MS: &str = "5000";

/// How often librdkafka commits the stored offsets.
pub const AUTO_COMMIT_INTERVAL_MS: &str = "5000";

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
        .set("auto.commit.interval.ms", AUTO_COMMIT_INTERVAL_MS)
        .set("enable.auto.offset.store", "false")
        .set(
            "auto.offset.reset",
            match instance.start_offset {
                StartOffset::Latest => "latest",
                StartOffset::Earliest => "earliest",
            },
        )
        .set("fetch.queue.backoff.ms", FETCH_QUEUE_BACKOFF_MS)
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

/// What the consumer's callbacks see: the forwarder (to flush before partitions go) and the
/// client's health.
pub struct SourceContext {
    /// The pipeline after the source; locked by the consuming thread around each message and by
    /// the rebalance callback, which runs inside `poll` on that same thread.
    pub forwarder: Mutex<Forwarder>,
    /// Counters shared with the forwarder.
    pub counters: Arc<Counters>,
    problems: Mutex<ProblemLog>,
    topic: String,
    commit_offsets: bool,
}

impl SourceContext {
    /// A context around a forwarder.
    pub fn new(
        forwarder: Forwarder,
        counters: Arc<Counters>,
        topic: &str,
        commit_offsets: bool,
    ) -> Self {
        SourceContext {
            forwarder: Mutex::new(forwarder),
            counters,
            problems: Mutex::new(ProblemLog::new(PROBLEM_REMINDER)),
            topic: topic.to_string(),
            commit_offsets,
        }
    }

    /// Whether offsets are stored and committed (not in a dry run).
    pub fn commits_offsets(&self) -> bool {
        self.commit_offsets
    }

    /// Locks the forwarder, even if a panic poisoned the lock (its state stays consistent:
    /// offsets only move after a completed write).
    pub fn lock_forwarder(&self) -> std::sync::MutexGuard<'_, Forwarder> {
        self.forwarder.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// An error of the Kafka client, from `poll` (`reason` is `None`) or from the error
    /// callback: counted, recorded for the service check, and logged once per distinct problem.
    pub fn kafka_error(&self, error: &KafkaError, reason: Option<&str>) {
        self.counters.kafka_errors.fetch_add(1, Ordering::Relaxed);
        let (key, what) = describe_kafka_error(error, reason);
        self.counters.health.kafka_problem(&what);
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
/// whichever way it was reported (the error callback, or `poll`).
pub fn describe_kafka_error(error: &KafkaError, reason: Option<&str>) -> (String, String) {
    match (error.rdkafka_error_code(), reason) {
        // `AllBrokersDown: 1/1 brokers are down`.
        (Some(code), Some(reason)) => (format!("{code:?}"), format!("{code:?}: {reason}")),
        // `AllBrokersDown (Local: All broker connections are down)`.
        (Some(code), None) => (format!("{code:?}"), code.to_string()),
        (None, Some(reason)) => (error.to_string(), format!("{error}: {reason}")),
        (None, None) => (error.to_string(), error.to_string()),
    }
}

impl ClientContext for SourceContext {
    fn error(&self, error: KafkaError, reason: &str) {
        self.kafka_error(&error, Some(reason));
    }

    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, message: &str) {
        use rdkafka::config::RDKafkaLogLevel::*;
        match level {
            // A broker connection failure reaches `error` with the same text: logged there, once.
            Emerg | Alert | Critical | Error if fac == "FAIL" => {
                log::debug!(target: "librdkafka", "librdkafka: {fac} {message}")
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

impl ConsumerContext for SourceContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Revoke(tpl) => {
                self.counters.revocations.fetch_add(1, Ordering::Relaxed);
                let partitions: Vec<i32> = tpl.elements().iter().map(|e| e.partition()).collect();
                let mut forwarder = self.lock_forwarder();
                // Send what is buffered so the next owner starts after it, not before it. One
                // attempt only: retrying here would hold up the whole group's rebalance while
                // the Agent is down. If it fails, what was not sent is not committed, and the
                // next owner consumes it again.
                if !forwarder.flush() {
                    log::warn!("partitions {partitions:?} revoked while the Agent refuses data; their unsent messages will be consumed again");
                }
                let offsets = forwarder.offsets.delivered(&self.topic, Some(&partitions));
                forwarder.offsets.forget(&partitions);
                drop(forwarder);
                if offsets.count() > 0 && self.commit_offsets {
                    if let Err(e) = consumer.commit(&offsets, CommitMode::Sync) {
                        self.log_problem("commit", &format!("commit on revocation failed: {e}"));
                    }
                }
                log::info!("partitions {partitions:?} of {} revoked", self.topic);
            }
            Rebalance::Assign(tpl) => {
                self.counters.health.kafka_ok();
                let partitions: Vec<i32> = tpl.elements().iter().map(|e| e.partition()).collect();
                log::info!("partitions {partitions:?} of {} assigned", self.topic);
                if !partitions.is_empty() {
                    self.kafka_works(Instant::now());
                }
            }
            Rebalance::Error(e) => self.log_problem("rebalance", &format!("rebalance failed: {e}")),
        }
    }

    fn commit_callback(&self, result: KafkaResult<()>, _offsets: &TopicPartitionList) {
        match result {
            // Nothing new to commit is not a failure.
            Ok(())
            | Err(KafkaError::ConsumerCommit(rdkafka::types::RDKafkaErrorCode::NoOffset)) => {}
            Err(e) => self.log_problem("commit", &format!("offset commit failed: {e}")),
        }
    }
}
