//! Log throttles: what keeps a flood of bad messages or a lasting outage from flooding the log.

use std::time::{Duration, Instant};

/// Lets through the first `burst` events of each window and counts the rest, so that a flood of
/// poison messages cannot flood the log.
#[derive(Debug)]
pub struct LogLimiter {
    window: Duration,
    burst: u32,
    window_start: Option<Instant>,
    in_window: u32,
    suppressed: u64,
}

impl LogLimiter {
    /// At most `burst` events per `window`.
    pub fn new(burst: u32, window: Duration) -> Self {
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
        let now = Instant::now();
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

/// What to log about a problem that lasts: each distinct problem once when it first appears, a
/// reminder at most once per `remind_every` while the trouble lasts, and one line when it ends.
///
/// A problem is known by a key (librdkafka's error code): the same failure reported twice, by
/// the error callback and by `poll`, or again on every reconnection attempt, is one problem. The
/// clock is the caller's, so that tests need not wait.
///
/// ```text
/// use std::time::{Duration, Instant};
/// use algorithmia_datadog::throttle::ProblemLog;
///
/// let mut log = ProblemLog::new(Duration::from_secs(60));
/// let t0 = Instant::now();
/// assert!(log.report("AllBrokersDown", "1/1 brokers are down", t0).is_some());
/// assert!(log.report("AllBrokersDown", "1/1 brokers are down", t0 + Duration::from_secs(1)).is_none());
/// assert_eq!(log.resolve(t0 + Duration::from_secs(12)), Some(Duration::from_secs(12)));
/// ```
#[derive(Debug)]
pub struct ProblemLog {
    remind_every: Duration,
    trouble: Option<Trouble>,
}

#[derive(Debug)]
struct Trouble {
    since: Instant,
    /// The keys logged so far.
    seen: Vec<String>,
    /// When the last line (first report or reminder) was logged.
    last_line: Instant,
    /// Reports since that line that were not logged.
    unlogged: u64,
}

impl ProblemLog {
    /// At most one reminder per `remind_every`.
    pub fn new(remind_every: Duration) -> Self {
        ProblemLog {
            remind_every,
            trouble: None,
        }
    }

    /// A problem was reported at `now`: the line to log, if any.
    pub fn report(&mut self, key: &str, what: &str, now: Instant) -> Option<String> {
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
    pub fn resolve(&mut self, ended: Instant) -> Option<Duration> {
        self.trouble
            .take()
            .map(|t| ended.saturating_duration_since(t.since))
    }

    /// Whether a problem was reported and has not been resolved.
    pub fn is_active(&self) -> bool {
        self.trouble.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}

/// The examples in this module's documentation, which name items outside the crate's surface.
#[cfg(test)]
mod doc_examples {
    #[test]
    fn doc_example_of_problemlog() {
        use crate::throttle::ProblemLog;
        use std::time::{Duration, Instant};

        let mut log = ProblemLog::new(Duration::from_secs(60));
        let t0 = Instant::now();
        assert!(log
            .report("AllBrokersDown", "1/1 brokers are down", t0)
            .is_some());
        assert!(log
            .report(
                "AllBrokersDown",
                "1/1 brokers are down",
                t0 + Duration::from_secs(1)
            )
            .is_none());
        assert_eq!(
            log.resolve(t0 + Duration::from_secs(12)),
            Some(Duration::from_secs(12))
        );
    }
}
