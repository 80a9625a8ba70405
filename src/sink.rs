//! The DogStatsD sink: packs lines into datagrams and writes them through a cadence
//! [`MetricSink`] (UDP, Unix datagram socket, or standard output for `--dry-run`).
//!
//! The sink knows exactly when data has left the process, which is what the source needs to
//! store offsets: [`DogStatsdSink::push_line`] and [`DogStatsdSink::flush`] return
//! [`Written::Flushed`] when the whole buffer, and so every line pushed before, was accepted by
//! the socket. A failed write is retried with back-off until it succeeds or the stop flag is
//! raised; the buffer is kept, so nothing is lost while the Agent restarts.
//!
//! ```
//! use algorithmia_datadog::sink::{DogStatsdSink, Written};
//! use cadence::SpyMetricSink;
//!
//! let (datagrams, spy) = SpyMetricSink::new();
//! let mut sink = DogStatsdSink::builder(spy, 24).build();
//! assert_eq!(sink.push_line("a.b:1|g").unwrap(), Written::Buffered);
//! assert_eq!(sink.push_line("a.c:2|g").unwrap(), Written::Buffered);
//! assert_eq!(sink.push_line("a.long_name:3|g").unwrap(), Written::Flushed); // did not fit
//! assert_eq!(datagrams.try_recv().unwrap(), b"a.b:1|g\na.c:2|g");
//! ```

use std::io::{self, Write};
use std::net::{SocketAddr, ToSocketAddrs, UdpSocket};
use std::os::unix::net::UnixDatagram;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cadence::{MetricSink, UdpMetricSink, UnixMetricSink};

use crate::config::Destination;
use crate::telemetry::Counters;

/// How long datagrams may wait in the buffer before they are sent anyway.
pub const MAX_BUFFER_AGE: Duration = Duration::from_millis(100);

/// What happened to the data pushed so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Written {
    /// The line is in the buffer; earlier lines may be too.
    Buffered,
    /// Everything pushed before this call was accepted by the socket (the line itself, when it
    /// is a `push_line`, is in the now otherwise empty buffer).
    Flushed,
}

/// The sink gave up because the stop flag was raised while a write kept failing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("stopped while the DogStatsD destination was refusing datagrams: {last_error}")]
pub struct Stopped {
    /// The last socket error.
    pub last_error: String,
}

/// Writes each datagram's lines to standard output, for `--dry-run`.
#[derive(Debug, Default)]
pub struct StdoutMetricSink;

impl MetricSink for StdoutMetricSink {
    fn emit(&self, datagram: &str) -> io::Result<usize> {
        let mut out = io::stdout().lock();
        out.write_all(datagram.as_bytes())?;
        out.write_all(b"\n")?;
        Ok(datagram.len())
    }
}

/// Sends to the first sink and copies what it accepted to the second (`demo --print`).
pub struct TeeMetricSink(pub Box<dyn MetricSink + Send + Sync>, pub StdoutMetricSink);

impl MetricSink for TeeMetricSink {
    fn emit(&self, datagram: &str) -> io::Result<usize> {
        let written = self.0.emit(datagram)?;
        let _ = self.1.emit(datagram);
        Ok(written)
    }
}

/// A cadence sink for one of the destinations the configuration allows.
pub enum Transport {
    /// `udp://host:port`.
    Udp(UdpMetricSink),
    /// `unix:///path`, a datagram socket.
    Unix(UnixMetricSink),
    /// Standard output (`--dry-run`).
    Stdout(StdoutMetricSink),
}

impl MetricSink for Transport {
    fn emit(&self, datagram: &str) -> io::Result<usize> {
        match self {
            Transport::Udp(sink) => sink.emit(datagram),
            Transport::Unix(sink) => sink.emit(datagram),
            Transport::Stdout(sink) => sink.emit(datagram),
        }
    }
}

/// Opens the cadence sink for a destination.
pub fn open_transport(destination: &Destination) -> io::Result<Transport> {
    match destination {
        Destination::Udp(addr) => {
            // Resolve once, preferring IPv4 (the Agent listens on 127.0.0.1 by default, while
            // `localhost` often resolves to ::1 first), and bind a socket of the same family.
            let resolved: Vec<SocketAddr> = addr.to_socket_addrs()?.collect();
            let target = resolved
                .iter()
                .find(|a| a.is_ipv4())
                .or_else(|| resolved.first())
                .copied()
                .ok_or_else(|| {
                    io::Error::new(
                        io::ErrorKind::NotFound,
                        format!("{addr} resolves to no address"),
                    )
                })?;
            let socket = UdpSocket::bind(if target.is_ipv4() {
                "0.0.0.0:0"
            } else {
                "[::]:0"
            })?;
            let sink = UdpMetricSink::from(target, socket).map_err(|e| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("cannot use {addr}: {e}"),
                )
            })?;
            Ok(Transport::Udp(sink))
        }
        Destination::Unix(path) => {
            let socket = UnixDatagram::unbound()?;
            // A full Agent socket blocks the sender: bound that so a stop is never held up.
            socket.set_write_timeout(Some(Duration::from_secs(1)))?;
            Ok(Transport::Unix(UnixMetricSink::from(path, socket)))
        }
    }
}

/// Packs DogStatsD lines into datagrams of at most `max_datagram` bytes.
pub struct DogStatsdSink {
    transport: Box<dyn MetricSink + Send + Sync>,
    buffer: String,
    max_datagram: usize,
    oldest: Option<Instant>,
    stop: Arc<AtomicBool>,
    counters: Arc<Counters>,
    backoff_start: Duration,
    backoff_max: Duration,
    error_log: crate::telemetry::LogLimiter,
}

/// Builder for [`DogStatsdSink`].
pub struct DogStatsdSinkBuilder {
    sink: DogStatsdSink,
}

impl DogStatsdSinkBuilder {
    /// The flag that ends retrying (shared with the signal handler).
    pub fn stop_flag(mut self, stop: Arc<AtomicBool>) -> Self {
        self.sink.stop = stop;
        self
    }
    /// Where datagrams, bytes and send errors are counted.
    pub fn counters(mut self, counters: Arc<Counters>) -> Self {
        self.sink.counters = counters;
        self
    }
    /// First and longest wait between retries of a failed write.
    pub fn backoff(mut self, start: Duration, max: Duration) -> Self {
        self.sink.backoff_start = start;
        self.sink.backoff_max = max;
        self
    }
    /// Finishes the sink.
    pub fn build(self) -> DogStatsdSink {
        self.sink
    }
}

impl DogStatsdSink {
    /// A sink writing through `transport`, packing up to `max_datagram` bytes per datagram.
    pub fn builder(
        transport: impl MetricSink + Send + Sync + 'static,
        max_datagram: usize,
    ) -> DogStatsdSinkBuilder {
        Self::builder_boxed(Box::new(transport), max_datagram)
    }

    /// Like [`DogStatsdSink::builder`] for an already boxed transport.
    pub fn builder_boxed(
        transport: Box<dyn MetricSink + Send + Sync>,
        max_datagram: usize,
    ) -> DogStatsdSinkBuilder {
        DogStatsdSinkBuilder {
            sink: DogStatsdSink {
                transport,
                buffer: String::with_capacity(max_datagram),
                max_datagram,
                oldest: None,
                stop: Arc::new(AtomicBool::new(false)),
                counters: Arc::new(Counters::default()),
                backoff_start: Duration::from_millis(50),
                backoff_max: Duration::from_secs(5),
                error_log: crate::telemetry::LogLimiter::new(5, Duration::from_secs(60)),
            },
        }
    }

    /// Adds one line (no trailing newline). Sends the buffer first if the line does not fit.
    ///
    /// A line longer than a datagram is sent on its own: cutting it would corrupt it.
    pub fn push_line(&mut self, line: &str) -> Result<Written, Stopped> {
        let needed = if self.buffer.is_empty() {
            line.len()
        } else {
            self.buffer.len() + 1 + line.len()
        };
        let mut written = Written::Buffered;
        if needed > self.max_datagram && !self.buffer.is_empty() {
            self.send_buffer()?;
            written = Written::Flushed;
        }
        if self.buffer.is_empty() {
            self.oldest = Some(Instant::now());
        } else {
            self.buffer.push('\n');
        }
        self.buffer.push_str(line);
        Ok(written)
    }

    /// Sends whatever is buffered.
    pub fn flush(&mut self) -> Result<Written, Stopped> {
        if !self.buffer.is_empty() {
            self.send_buffer()?;
        }
        Ok(Written::Flushed)
    }

    /// One attempt to send whatever is buffered; on failure the buffer is kept.
    pub fn flush_once(&mut self) -> io::Result<()> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        match self.transport.emit(&self.buffer) {
            Ok(_) => {
                self.counters.health.sink_ok();
                self.counters.datagrams.fetch_add(1, Ordering::Relaxed);
                self.counters
                    .bytes
                    .fetch_add(self.buffer.len() as u64, Ordering::Relaxed);
                self.buffer.clear();
                self.oldest = None;
                Ok(())
            }
            Err(e) => {
                self.counters.send_errors.fetch_add(1, Ordering::Relaxed);
                self.counters.health.sink_failed(&e.to_string());
                Err(e)
            }
        }
    }

    /// When the buffer must be sent to honour [`MAX_BUFFER_AGE`]; `None` when it is empty.
    pub fn flush_deadline(&self) -> Option<Instant> {
        self.oldest.map(|t| t + MAX_BUFFER_AGE)
    }

    /// Whether nothing waits to be sent.
    pub fn is_empty(&self) -> bool {
        self.buffer.is_empty()
    }

    /// Sends one datagram that is not part of the packed stream (self-monitoring). Not retried.
    pub fn send_now(&self, datagram: &str) -> io::Result<usize> {
        self.transport.emit(datagram)
    }

    fn send_buffer(&mut self) -> Result<(), Stopped> {
        let mut delay = self.backoff_start;
        loop {
            match self.flush_once() {
                Ok(()) => return Ok(()),
                Err(e) => {
                    if self.stop.load(Ordering::Relaxed) {
                        return Err(Stopped {
                            last_error: e.to_string(),
                        });
                    }
                    if let Some(suppressed) = self.error_log.allow() {
                        log::warn!(
                            "DogStatsD write of {} bytes failed: {e}; retrying in {delay:?}, offsets held back \
                             until it succeeds ({suppressed} similar messages suppressed)",
                            self.buffer.len()
                        );
                    }
                    sleep_unless_stopped(delay, &self.stop);
                    delay = (delay * 2).min(self.backoff_max);
                }
            }
        }
    }
}

/// Sleeps up to `total`, waking early when `stop` is raised.
pub fn sleep_unless_stopped(total: Duration, stop: &AtomicBool) {
    let deadline = Instant::now() + total;
    while !stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        if now >= deadline {
            return;
        }
        std::thread::sleep((deadline - now).min(Duration::from_millis(20)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cadence::SpyMetricSink;
    use std::sync::atomic::AtomicUsize;

    #[test]
    fn lines_are_packed_up_to_the_datagram_limit() {
        let (rx, spy) = SpyMetricSink::new();
        let mut sink = DogStatsdSink::builder(spy, 20).build();
        assert_eq!(sink.push_line("aaaaaaaa:1|g").unwrap(), Written::Buffered); // 12 bytes
        assert_eq!(sink.push_line("bb:2|g").unwrap(), Written::Buffered); // 12 + 1 + 6 = 19
        assert_eq!(sink.push_line("c:3|g").unwrap(), Written::Flushed); // would be 25
        sink.flush().unwrap();
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
        sink.push_line("a:1|g").unwrap();
        sink.push_line("a_very_long_metric_name:1|g").unwrap();
        sink.push_line("b:1|g").unwrap();
        sink.flush().unwrap();
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
        sink.push_line("a:1|g").unwrap();
        let deadline = sink.flush_deadline().unwrap();
        assert!(deadline >= before + MAX_BUFFER_AGE);
        sink.flush().unwrap();
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
    fn a_failed_write_is_retried_and_nothing_is_lost() {
        let flaky = Arc::new(Flaky {
            failures: AtomicUsize::new(3),
            sent: Default::default(),
        });
        let counters = Arc::new(Counters::default());
        let mut sink = DogStatsdSink::builder(Shared(flaky.clone()), 100)
            .backoff(Duration::from_millis(1), Duration::from_millis(2))
            .counters(counters.clone())
            .build();
        sink.push_line("a:1|g").unwrap();
        assert_eq!(sink.flush().unwrap(), Written::Flushed);
        assert_eq!(*flaky.sent.lock().unwrap(), ["a:1|g"]);
        assert_eq!(counters.snapshot().send_errors, 3);
        assert_eq!(counters.snapshot().datagrams, 1);
    }

    #[test]
    fn a_raised_stop_flag_ends_retrying_and_keeps_the_data_unacknowledged() {
        let flaky = Arc::new(Flaky {
            failures: AtomicUsize::new(usize::MAX),
            sent: Default::default(),
        });
        let stop = Arc::new(AtomicBool::new(true));
        let mut sink = DogStatsdSink::builder(Shared(flaky.clone()), 100)
            .stop_flag(stop)
            .build();
        sink.push_line("a:1|g").unwrap();
        let err = sink.flush().unwrap_err();
        assert!(err.last_error.contains("agent down"));
        assert!(!sink.is_empty());
        assert!(flaky.sent.lock().unwrap().is_empty());
    }

    #[test]
    fn localhost_reaches_an_agent_listening_on_127_0_0_1() {
        let agent = UdpSocket::bind("127.0.0.1:0").unwrap();
        agent
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let port = agent.local_addr().unwrap().port();
        let transport = open_transport(&Destination::Udp(format!("localhost:{port}"))).unwrap();
        transport.emit("a:1|g").unwrap();
        let mut buf = [0u8; 64];
        let n = agent.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"a:1|g");
    }
}
