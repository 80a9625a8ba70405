//! A pace for UDP sends.
//!
//! Over UDP nothing pushes back: datagrams that arrive faster than the server reads them are
//! dropped by the kernel once its receive buffer is full, without a word to the sender. A
//! [`Pace`] holds UDP sends to a rate a DogStatsD server keeps up with, checked once per batch:
//! a batch that comes too early waits (one sleep), it is never dropped. A Unix socket pushes
//! back (a full socket refuses the datagram and the sink holds it), so it is never paced.

use std::time::{Duration, Instant};

use super::packed::BATCH;

/// A pace of at most `per_second` datagrams a second, with bursts of at most [`BATCH`]: a
/// token bucket (in its "virtual scheduling" form, one instant to keep) that says how long a
/// group of datagrams must wait before it is sent.
///
/// ```text
/// let start = Instant::now();
/// let mut pace = Pace::new(1_000); // a datagram a millisecond, 32 at once
/// assert_eq!(pace.wait(32, start), Duration::ZERO); // an idle pace lets a batch through
/// assert_eq!(pace.wait(32, start), Duration::from_millis(32)); // the next one waits its turn
/// ```
#[derive(Debug)]
pub struct Pace {
    /// The time one datagram takes at the pace.
    per_datagram: Duration,
    /// How far ahead of the pace sending may get: a batch.
    burst: Duration,
    /// When everything sent so far would have been sent, sent at the pace.
    caught_up: Option<Instant>,
}

impl Pace {
    /// At most `per_second` datagrams a second (at least one).
    pub fn new(per_second: u32) -> Pace {
        let per_datagram = Duration::from_secs(1) / per_second.max(1);
        Pace {
            per_datagram,
            burst: per_datagram * BATCH as u32,
            caught_up: None,
        }
    }

    /// How long `n` datagrams must wait at `now` before they go; counts them as sent then.
    pub fn wait(&mut self, n: usize, now: Instant) -> Duration {
        let start = self.caught_up.map_or(now, |t| t.max(now));
        let done = start + self.per_datagram * u32::try_from(n).unwrap_or(u32::MAX);
        self.caught_up = Some(done);
        done.saturating_duration_since(now + self.burst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doc_example_of_pace() {
        let start = Instant::now();
        let mut pace = Pace::new(1_000);
        assert_eq!(pace.wait(32, start), Duration::ZERO);
        assert_eq!(pace.wait(32, start), Duration::from_millis(32));
    }

    #[test]
    fn a_pace_lets_a_batch_through_then_holds_the_rate_without_drift() {
        let t0 = Instant::now();
        let mut pace = Pace::new(2_000); // 0.5 ms a datagram, 16 ms a batch
        assert_eq!(pace.wait(BATCH, t0), Duration::ZERO);
        // Batch after batch, at once: each waits one batch's time more than the last.
        let waits: Vec<Duration> = (0..3).map(|_| pace.wait(BATCH, t0)).collect();
        let ms = Duration::from_millis;
        assert_eq!(waits, [ms(16), ms(32), ms(48)]);
        // Idle for a second: the backlog is forgotten, but no more than a batch goes at once.
        let later = t0 + Duration::from_secs(1);
        assert_eq!(pace.wait(BATCH, later), Duration::ZERO);
        assert_eq!(pace.wait(1, later), Duration::from_micros(500));
    }
}
