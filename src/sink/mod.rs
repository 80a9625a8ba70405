//! The DogStatsD sink: packs lines into datagrams and writes them, many per system call, to the
//! Agent's UDP port ([`udp`]) or Unix datagram socket ([`unix`]), or through any cadence
//! [`MetricSink`] (standard output for `--dry-run`, [`stdout`]). One file per transport; the
//! [`Transport`] the configuration chooses is in [`transport`].
//!
//! The sink knows exactly when data has left the process, which is what the forwarder needs to
//! decide which offsets were delivered: [`DogStatsdSink::push_line`] returns [`Written::Flushed`] when the packed
//! datagrams, and so every line pushed before, were accepted by the socket, and
//! [`DogStatsdSink::flush`] returns `true` when nothing at all is left unsent.
//!
//! It never sleeps (but to pace UDP sends, see [`pace`]): when a write fails (the Agent restarts,
//! its socket is missing or full) the
//! sink turns *blocked*, keeps the unsent datagram and holds back every further line, and the
//! caller retries [`DogStatsdSink::flush`] with back-off while it keeps serving Kafka (see
//! [`crate::pipeline`]). Nothing is lost, and nothing is reported sent before it was.
//!
//! ```
//! use algorithmia_datadog::{DogStatsdSink, Written};
//! use cadence::SpyMetricSink;
//!
//! let (datagrams, spy) = SpyMetricSink::new();
//! let mut sink = DogStatsdSink::builder(spy, 24).build();
//! assert_eq!(sink.push_line("a.b:1|g"), Written::Buffered);
//! assert_eq!(sink.push_line("a.c:2|g"), Written::Buffered);
//! assert_eq!(sink.push_line("a.long_name:3|g"), Written::Flushed); // did not fit
//! assert_eq!(datagrams.try_recv().unwrap(), b"a.b:1|g\na.c:2|g");
//! ```

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cadence::MetricSink;

use crate::telemetry::Counters;

mod pace;
mod packed;
#[cfg(target_os = "linux")]
mod sendmmsg;
mod stdout;
mod transport;
mod udp;
mod unix;

pub use packed::{Packed, BATCH};
pub use stdout::{stdout_closed, StdoutMetricSink, TeeMetricSink};
pub use transport::{open_transport, OneByOne, SendDatagrams, Transport};
pub use udp::UdpDestination;

/// How long datagrams may wait in the buffer before they are sent anyway.
pub const MAX_BUFFER_AGE: Duration = Duration::from_millis(100);

/// What happened to the data pushed so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Written {
    /// The line is in the buffer; earlier lines may be too.
    Buffered,
    /// Everything pushed before this call was accepted by the socket (the line itself is in the
    /// now otherwise empty buffer).
    Flushed,
    /// A write failed: the line is held back with everything unsent, until a `flush` succeeds.
    Blocked,
}

/// Packs DogStatsD lines into datagrams of at most `max_datagram` bytes.
pub struct DogStatsdSink {
    transport: Box<dyn SendDatagrams>,
    /// Full datagrams not written yet: up to the transport's batch.
    packed: Packed,
    /// The datagram being filled.
    buffer: String,
    /// The line that did not fit, on its way to the next datagram.
    spare: String,
    /// Lines pushed while blocked, in order, waiting for the buffer to go out.
    held_back: Vec<String>,
    blocked: bool,
    max_datagram: usize,
    oldest: Option<Instant>,
    counters: Arc<Counters>,
    /// The write failures going on, if any: logged when they start, at most once a minute while
    /// they last, and once when everything held went out.
    outage: Option<Outage>,
}

/// Writes failing since `since`.
struct Outage {
    since: Instant,
    /// When the outage was last logged.
    logged: Instant,
    /// Datagrams of held data sent during the outage, once the destination took one again.
    resent: u64,
}

/// How often an outage that goes on is logged again.
pub const OUTAGE_REMINDER: Duration = Duration::from_secs(60);

/// Builder for [`DogStatsdSink`].
pub struct DogStatsdSinkBuilder {
    sink: DogStatsdSink,
}

impl DogStatsdSinkBuilder {
    /// Where datagrams, bytes and send errors are counted.
    pub fn counters(mut self, counters: Arc<Counters>) -> Self {
        self.sink.counters = counters;
        self
    }
    /// Finishes the sink.
    pub fn build(self) -> DogStatsdSink {
        self.sink
    }
}

impl DogStatsdSink {
    /// A sink writing each datagram through the cadence sink `transport`, packing up to
    /// `max_datagram` bytes per datagram.
    pub fn builder(
        transport: impl MetricSink + Send + Sync + 'static,
        max_datagram: usize,
    ) -> DogStatsdSinkBuilder {
        Self::builder_boxed(Box::new(OneByOne(transport)), max_datagram)
    }

    /// A sink writing through `transport`, as many datagrams at a time as it takes.
    pub fn builder_boxed(
        transport: Box<dyn SendDatagrams>,
        max_datagram: usize,
    ) -> DogStatsdSinkBuilder {
        DogStatsdSinkBuilder {
            sink: DogStatsdSink {
                transport,
                packed: Packed::default(),
                spare: String::new(),
                buffer: String::with_capacity(max_datagram),
                held_back: Vec::new(),
                blocked: false,
                max_datagram,
                oldest: None,
                counters: Arc::new(Counters::default()),
                outage: None,
            },
        }
    }

    /// Adds one line (no trailing newline). If the line does not fit the datagram being filled,
    /// that datagram is packed first, and the packed datagrams are written once they make a
    /// batch.
    ///
    /// A line longer than a datagram is sent on its own: cutting it would corrupt it.
    pub fn push_line(&mut self, line: &str) -> Written {
        self.push_with(|out| out.push_str(line))
    }

    /// Like [`DogStatsdSink::push_line`] for the line that `render` appends to a string: it is
    /// rendered in place, in the datagram being filled, rather than copied there.
    pub fn push_with(&mut self, render: impl FnOnce(&mut String)) -> Written {
        if self.blocked {
            let mut line = String::new();
            render(&mut line);
            self.held_back.push(line);
            return Written::Blocked;
        }
        if self.oldest.is_none() {
            self.oldest = Some(Instant::now());
        }
        let start = self.buffer.len();
        if start > 0 {
            self.buffer.push('\n');
        }
        render(&mut self.buffer);
        if self.buffer.len() <= self.max_datagram || start == 0 {
            return Written::Buffered;
        }
        // It does not fit: the datagram so far is packed, and the line starts the next one.
        self.spare.clear();
        self.spare.push_str(&self.buffer[start + 1..]);
        self.buffer.truncate(start);
        self.pack_buffer();
        std::mem::swap(&mut self.buffer, &mut self.spare);
        if self.packed.len() < self.transport.batch() {
            return Written::Buffered;
        }
        // The line waits in the buffer: only what was packed goes.
        if self.send_packed() {
            self.oldest = Some(Instant::now());
            Written::Flushed
        } else {
            self.held_back.push(std::mem::take(&mut self.buffer));
            Written::Blocked
        }
    }

    /// The datagram being filled joins the packed ones.
    fn pack_buffer(&mut self) {
        if !self.buffer.is_empty() {
            self.packed.push(&self.buffer);
            self.buffer.clear();
        }
    }

    /// Tries to send everything not sent yet: the buffer, then the held-back lines, packed.
    /// Returns `true` when nothing is left, `false` (and the sink stays or turns blocked) when a
    /// write failed. One attempt per datagram: the caller decides when to try again.
    pub fn flush(&mut self) -> bool {
        self.pack_buffer();
        if !self.packed.is_empty() && !self.send_packed() {
            return false;
        }
        self.blocked = false;
        let held_back = std::mem::take(&mut self.held_back);
        let mut lines = held_back.into_iter();
        for line in lines.by_ref() {
            if self.push_line(&line) == Written::Blocked {
                // `push_line` held this one back; the rest follow it, in order.
                self.held_back.extend(lines);
                return false;
            }
        }
        self.pack_buffer();
        let flushed = self.packed.is_empty() || self.send_packed();
        if flushed {
            if let Some(outage) = self.outage.take() {
                log::info!(
                    "DogStatsD destination accepts data again after {:.1} s; {} datagrams held were sent",
                    outage.since.elapsed().as_secs_f64(),
                    thousands(outage.resent)
                );
            }
        }
        flushed
    }

    /// The largest datagram this sink packs.
    pub fn max_datagram(&self) -> usize {
        self.max_datagram
    }

    /// Whether a write failed and has not succeeded since.
    pub fn is_blocked(&self) -> bool {
        self.blocked
    }

    /// When the buffer must be sent to honour [`MAX_BUFFER_AGE`]; `None` when it is empty.
    pub fn flush_deadline(&self) -> Option<Instant> {
        self.oldest.map(|t| t + MAX_BUFFER_AGE)
    }

    /// Whether nothing waits to be sent.
    pub fn is_empty(&self) -> bool {
        self.buffer.is_empty() && self.packed.is_empty() && self.held_back.is_empty()
    }

    /// One attempt to write the packed datagrams. On failure the unwritten ones are kept and
    /// the sink is blocked.
    fn send_packed(&mut self) -> bool {
        let (sent, error) = self.transport.send(&self.packed);
        if sent > 0 {
            self.counters.health.sink_ok();
            if let Some(outage) = &mut self.outage {
                outage.resent += sent as u64;
            }
            self.counters
                .datagrams
                .fetch_add(sent as u64, Ordering::Relaxed);
            self.counters
                .bytes
                .fetch_add(self.packed.bytes_of_first(sent) as u64, Ordering::Relaxed);
            self.packed.remove_first(sent);
        }
        if self.packed.is_empty() && self.buffer.is_empty() {
            self.oldest = None;
        }
        match error {
            None => true,
            Some(e) => {
                self.blocked = true;
                self.counters.send_errors.fetch_add(1, Ordering::Relaxed);
                self.counters.health.sink_failed(&e.to_string());
                let now = Instant::now();
                match &mut self.outage {
                    None => {
                        log::warn!(
                            "DogStatsD destination refuses data ({e}); holding the data and the \
                             Kafka offsets back, retrying quietly until it accepts again"
                        );
                        self.outage = Some(Outage {
                            since: now,
                            logged: now,
                            resent: 0,
                        });
                    }
                    Some(outage) => {
                        if now.duration_since(outage.logged) >= OUTAGE_REMINDER {
                            outage.logged = now;
                            log::warn!(
                                "DogStatsD destination still refuses data after {:.0} s ({e}); {} lines held",
                                now.duration_since(outage.since).as_secs_f64(),
                                thousands(self.held_back.len() as u64 + 1)
                            );
                        }
                    }
                }
                false
            }
        }
    }
}

/// `1234567` as `1,234,567`.
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Destination;
    use cadence::SpyMetricSink;
    use std::io;
    use std::net::UdpSocket;
    use std::sync::atomic::AtomicUsize;

    #[test]
    fn counts_are_written_with_thousands_separators() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_234), "1,234");
        assert_eq!(thousands(1_234_567), "1,234,567");
    }

    #[test]
    fn lines_are_packed_up_to_the_datagram_limit() {
        let (rx, spy) = SpyMetricSink::new();
        let mut sink = DogStatsdSink::builder(spy, 20).build();
        assert_eq!(sink.push_line("aaaaaaaa:1|g"), Written::Buffered); // 12 bytes
        assert_eq!(sink.push_line("bb:2|g"), Written::Buffered); // 12 + 1 + 6 = 19
        assert_eq!(sink.push_line("c:3|g"), Written::Flushed); // would be 25
        assert!(sink.flush());
        let got: Vec<String> = rx
            .try_iter()
            .map(|d| String::from_utf8(d).unwrap())
            .collect();
        assert_eq!(got, ["aaaaaaaa:1|g\nbb:2|g", "c:3|g"]);
    }

    #[test]
    fn a_line_longer_than_a_datagram_goes_alone_and_whole() {
        let (rx, spy) = SpyMetricSink::new();
        let mut sink = DogStatsdSink::builder(spy, 10).build();
        sink.push_line("a:1|g");
        sink.push_line("a_very_long_metric_name:1|g");
        sink.push_line("b:1|g");
        assert!(sink.flush());
        let got: Vec<String> = rx
            .try_iter()
            .map(|d| String::from_utf8(d).unwrap())
            .collect();
        assert_eq!(got, ["a:1|g", "a_very_long_metric_name:1|g", "b:1|g"]);
    }

    #[test]
    fn the_flush_deadline_follows_the_oldest_buffered_line() {
        let (_rx, spy) = SpyMetricSink::new();
        let mut sink = DogStatsdSink::builder(spy, 100).build();
        assert_eq!(sink.flush_deadline(), None);
        let before = Instant::now();
        sink.push_line("a:1|g");
        let deadline = sink.flush_deadline().unwrap();
        assert!(deadline >= before + MAX_BUFFER_AGE);
        assert!(sink.flush());
        assert_eq!(sink.flush_deadline(), None);
        assert!(sink.is_empty());
    }

    /// Refuses the first `failures` writes, then records datagrams.
    struct Flaky {
        failures: AtomicUsize,
        sent: std::sync::Mutex<Vec<String>>,
    }

    #[derive(Clone)]
    struct Shared(Arc<Flaky>);

    impl MetricSink for Shared {
        fn emit(&self, metric: &str) -> io::Result<usize> {
            if self.0.failures.load(Ordering::SeqCst) > 0 {
                self.0.failures.fetch_sub(1, Ordering::SeqCst);
                return Err(io::Error::new(
                    io::ErrorKind::ConnectionRefused,
                    "agent down",
                ));
            }
            self.0.sent.lock().unwrap().push(metric.to_string());
            Ok(metric.len())
        }
    }

    #[test]
    fn a_failed_write_blocks_the_sink_until_a_flush_gets_everything_out_in_order() {
        let flaky = Arc::new(Flaky {
            failures: AtomicUsize::new(2),
            sent: Default::default(),
        });
        let counters = Arc::new(Counters::default());
        let mut sink = DogStatsdSink::builder(Shared(flaky.clone()), 12)
            .counters(counters.clone())
            .build();
        assert_eq!(sink.push_line("a:1|g"), Written::Buffered);
        assert_eq!(sink.push_line("b:2|g"), Written::Buffered); // "a:1|g\nb:2|g" is 11 bytes
        assert_eq!(
            sink.push_line("c:3|g"),
            Written::Blocked,
            "the full buffer could not go out"
        );
        assert!(sink.is_blocked());
        assert_eq!(
            sink.push_line("d:4|g"),
            Written::Blocked,
            "held back while blocked"
        );
        assert!(!sink.is_empty());
        assert!(!sink.flush(), "second failure");
        assert!(
            sink.outage.is_some(),
            "one outage, from the first failure on"
        );
        assert!(sink.flush(), "the Agent is back");
        assert!(!sink.is_blocked() && sink.is_empty());
        assert!(
            sink.outage.is_none(),
            "its end was logged with what was held"
        );
        assert_eq!(
            *flaky.sent.lock().unwrap(),
            ["a:1|g\nb:2|g", "c:3|g\nd:4|g"]
        );
        let snapshot = counters.snapshot();
        assert_eq!((snapshot.send_errors, snapshot.datagrams), (2, 2));
        assert!(counters.health.sink_failure().is_none(), "recovered");
    }

    #[test]
    fn an_outage_lasts_until_everything_held_went_out() {
        let flaky = Arc::new(Flaky {
            failures: AtomicUsize::new(1),
            sent: Default::default(),
        });
        let mut sink = DogStatsdSink::builder(Shared(flaky.clone()), 12).build();
        for line in ["a:1|g", "b:2|g", "c:3|g", "d:4|g", "e:5|g"] {
            sink.push_line(line);
        }
        let outage = sink.outage.as_ref().expect("the first write failed");
        assert_eq!(outage.resent, 0);
        let since = outage.since;
        assert!(sink.flush());
        assert_eq!(flaky.sent.lock().unwrap().len(), 3, "three datagrams held");
        assert!(sink.outage.is_none());
        assert!(since.elapsed() < OUTAGE_REMINDER);
    }

    #[test]
    fn a_failure_after_recovery_holds_back_the_rest_in_order() {
        let flaky = Arc::new(Flaky {
            failures: AtomicUsize::new(1),
            sent: Default::default(),
        });
        let mut sink = DogStatsdSink::builder(Shared(flaky.clone()), 5).build();
        sink.push_line("a:1|g");
        assert_eq!(sink.push_line("b:1|g"), Written::Blocked);
        sink.push_line("c:1|g");
        flaky.failures.store(0, Ordering::SeqCst);
        assert!(sink.flush());
        assert_eq!(*flaky.sent.lock().unwrap(), ["a:1|g", "b:1|g", "c:1|g"]);
    }

    #[test]
    fn localhost_reaches_an_agent_listening_on_127_0_0_1() {
        let agent = UdpSocket::bind("127.0.0.1:0").unwrap();
        agent
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let port = agent.local_addr().unwrap().port();
        let transport = open_transport(&Destination::Udp(format!("localhost:{port}")), 0).unwrap();
        transport.emit("a:1|g").unwrap();
        let mut buf = [0u8; 64];
        let n = agent.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"a:1|g");
    }

    /// Takes `batch` datagrams per write, the first write only `accept_first` of them.
    struct Batches {
        batch: usize,
        accept_first: Option<usize>,
        writes: Arc<std::sync::Mutex<Vec<Vec<String>>>>,
    }

    impl SendDatagrams for Batches {
        fn send(&mut self, datagrams: &Packed) -> (usize, Option<io::Error>) {
            let all: Vec<String> = datagrams.iter().map(str::to_string).collect();
            let n = self.accept_first.take().unwrap_or(all.len()).min(all.len());
            self.writes.lock().unwrap().push(all[..n].to_vec());
            let error = (n < all.len()).then(|| io::Error::other("socket full"));
            (n, error)
        }
        fn batch(&self) -> usize {
            self.batch
        }
    }

    #[test]
    fn datagrams_are_written_a_batch_at_a_time_and_flushed_only_then() {
        let writes = Arc::new(std::sync::Mutex::new(Vec::new()));
        let transport = Batches {
            batch: 3,
            accept_first: None,
            writes: writes.clone(),
        };
        let mut sink = DogStatsdSink::builder_boxed(Box::new(transport), 5).build();
        let mut results = Vec::new();
        for line in ["a:1|g", "b:1|g", "c:1|g", "d:1|g", "e:1|g"] {
            results.push(sink.push_line(line));
        }
        use Written::{Buffered, Flushed};
        // Each line fills a datagram: the fourth line packs the third datagram, a batch.
        assert_eq!(results, [Buffered, Buffered, Buffered, Flushed, Buffered]);
        assert_eq!(*writes.lock().unwrap(), [["a:1|g", "b:1|g", "c:1|g"]]);
        assert!(sink.flush_deadline().is_some(), "e and d wait");
        assert!(sink.flush());
        assert_eq!(writes.lock().unwrap()[1], ["d:1|g", "e:1|g"]);
        assert!(sink.is_empty() && sink.flush_deadline().is_none());
    }

    #[test]
    fn a_batch_written_in_part_keeps_the_rest_and_blocks() {
        let writes = Arc::new(std::sync::Mutex::new(Vec::new()));
        let transport = Batches {
            batch: 3,
            accept_first: Some(1),
            writes: writes.clone(),
        };
        let counters = Arc::new(Counters::default());
        let mut sink = DogStatsdSink::builder_boxed(Box::new(transport), 5)
            .counters(counters.clone())
            .build();
        for line in ["a:1|g", "b:1|g", "c:1|g"] {
            assert_eq!(sink.push_line(line), Written::Buffered);
        }
        assert_eq!(sink.push_line("d:1|g"), Written::Blocked);
        assert!(sink.is_blocked());
        assert_eq!(sink.push_line("e:1|g"), Written::Blocked);
        assert!(sink.flush());
        let written: Vec<String> = writes.lock().unwrap().concat();
        assert_eq!(written, ["a:1|g", "b:1|g", "c:1|g", "d:1|g", "e:1|g"]);
        let snapshot = counters.snapshot();
        assert_eq!((snapshot.datagrams, snapshot.send_errors), (5, 1));
    }
}
