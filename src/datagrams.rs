//! Datagrams written many per system call: the sink packs lines into datagrams and hands them
//! over [`BATCH`] at a time, and the Agent's UDP port or Unix socket takes them with one
//! `sendmmsg(2)`.
//!
//! Over UDP each datagram costs the kernel a trip through the network stack and, as often as not,
//! a wake-up of the Agent's reader: written one per `sendto`, that was half of the forwarder's
//! time when it sends every point. A batch wakes the reader once and enters the kernel once.
//!
//! Over UDP nothing pushes back: datagrams that arrive faster than the server reads them are
//! dropped by the kernel once its receive buffer is full, without a word to the sender. A
//! [`Pace`] holds UDP sends to a rate a DogStatsD server keeps up with, checked once per batch:
//! a batch that comes too early waits (one sleep), it is never dropped. A Unix socket pushes
//! back (a full socket refuses the datagram and the sink holds it), so it is never paced.
//!
//! ```
//! use algorithmia_datadog::datagrams::{OneByOne, Packed, SendDatagrams};
//! use cadence::SpyMetricSink;
//!
//! let (received, spy) = SpyMetricSink::new();
//! let mut packed = Packed::default();
//! packed.push("a:1|g");
//! packed.push("b:2|g\nc:3|g");
//! let (sent, error) = OneByOne(spy).send(&packed);
//! assert_eq!((sent, error.is_none()), (2, true));
//! assert_eq!(received.try_recv().unwrap(), b"a:1|g");
//! ```

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use cadence::MetricSink;

/// How many datagrams the sink gathers before it writes them (one system call).
pub const BATCH: usize = 32;

/// Datagrams packed and not written yet, in order, in one buffer.
#[derive(Debug, Default)]
pub struct Packed {
    text: String,
    /// Where each datagram ends in `text`.
    ends: Vec<usize>,
}

impl Packed {
    /// Adds a datagram after the others.
    pub fn push(&mut self, datagram: &str) {
        self.text.push_str(datagram);
        self.ends.push(self.text.len());
    }

    /// How many datagrams wait.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// Whether none waits.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// The waiting datagrams, in order.
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        let starts = std::iter::once(0).chain(self.ends.iter().copied());
        starts
            .zip(&self.ends)
            .map(|(start, &end)| &self.text[start..end])
    }

    /// How many bytes the first `n` datagrams hold.
    pub fn bytes_of_first(&self, n: usize) -> usize {
        n.checked_sub(1).map_or(0, |last| self.ends[last])
    }

    /// Forgets the first `n` datagrams (they were written).
    pub fn remove_first(&mut self, n: usize) {
        let n = n.min(self.ends.len());
        let cut = self.bytes_of_first(n);
        self.text.drain(..cut);
        self.ends.drain(..n);
        for end in &mut self.ends {
            *end -= cut;
        }
    }
}

/// Where datagrams go.
pub trait SendDatagrams: Send + Sync {
    /// Writes `datagrams` in order until one fails: how many were written, and the failure (the
    /// datagram that failed and those after it were not written).
    fn send(&mut self, datagrams: &Packed) -> (usize, Option<io::Error>);

    /// How many datagrams are worth gathering for one [`SendDatagrams::send`]: 1 writes each
    /// as soon as it is packed.
    fn batch(&self) -> usize {
        1
    }
}

/// Any cadence sink, one datagram per call (standard output, tests' spies).
pub struct OneByOne<T>(pub T);

impl<T: MetricSink + Send + Sync> SendDatagrams for OneByOne<T> {
    fn send(&mut self, datagrams: &Packed) -> (usize, Option<io::Error>) {
        send_one_by_one(&self.0, datagrams)
    }
}

/// Writes `datagrams` through a cadence sink, one call each, until one fails.
pub fn send_one_by_one(sink: &impl MetricSink, datagrams: &Packed) -> (usize, Option<io::Error>) {
    send_each(datagrams, |datagram| sink.emit(datagram).map(drop))
}

/// Writes each datagram with `write` until one fails.
fn send_each(
    datagrams: &Packed,
    mut write: impl FnMut(&str) -> io::Result<()>,
) -> (usize, Option<io::Error>) {
    for (i, datagram) in datagrams.iter().enumerate() {
        if let Err(e) = write(datagram) {
            return (i, Some(e));
        }
    }
    (datagrams.len(), None)
}

/// A pace of at most `per_second` datagrams a second, with bursts of at most [`BATCH`]: a
/// token bucket (in its "virtual scheduling" form, one instant to keep) that says how long a
/// group of datagrams must wait before it is sent.
///
/// ```
/// use std::time::{Duration, Instant};
/// use algorithmia_datadog::datagrams::Pace;
///
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

/// The Agent's DogStatsD UDP port, from an unconnected socket (as Datadog's clients do: nothing
/// reports a missing listener).
#[derive(Debug)]
pub struct UdpDestination {
    socket: UdpSocket,
    target: SocketAddr,
    /// Unpaced when `None`.
    pace: Option<Mutex<Pace>>,
}

impl UdpDestination {
    /// Sends from `socket` (bound, of `target`'s family) to `target`, unpaced.
    pub fn new(socket: UdpSocket, target: SocketAddr) -> Self {
        UdpDestination {
            socket,
            target,
            pace: None,
        }
    }

    /// At most `per_second` datagrams a second (0: unpaced): a send that comes too early sleeps
    /// until its turn.
    pub fn paced(mut self, per_second: u32) -> Self {
        self.pace = (per_second > 0).then(|| Mutex::new(Pace::new(per_second)));
        self
    }

    /// Sleeps until `n` datagrams may go.
    fn wait_turn(&self, n: usize) {
        if let Some(pace) = &self.pace {
            let wait = pace
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .wait(n, Instant::now());
            if !wait.is_zero() {
                std::thread::sleep(wait);
            }
        }
    }
}

impl MetricSink for UdpDestination {
    fn emit(&self, datagram: &str) -> io::Result<usize> {
        self.wait_turn(1);
        self.socket.send_to(datagram.as_bytes(), self.target)
    }
}

impl SendDatagrams for UdpDestination {
    fn batch(&self) -> usize {
        BATCH
    }

    fn send(&mut self, datagrams: &Packed) -> (usize, Option<io::Error>) {
        self.wait_turn(datagrams.len());
        #[cfg(target_os = "linux")]
        {
            use std::os::fd::AsRawFd;
            let address = raw::Address::of_inet(self.target);
            raw::send_many(self.socket.as_raw_fd(), &address, datagrams)
        }
        #[cfg(not(target_os = "linux"))]
        send_each(datagrams, |d| self.emit(d).map(drop))
    }
}

/// The Agent's DogStatsD Unix datagram socket, from an unbound socket.
#[derive(Debug)]
pub struct UnixDestination {
    socket: UnixDatagram,
    path: PathBuf,
}

impl UnixDestination {
    /// Sends from `socket` to the socket at `path`.
    pub fn new(socket: UnixDatagram, path: &Path) -> Self {
        UnixDestination {
            socket,
            path: path.to_path_buf(),
        }
    }
}

impl MetricSink for UnixDestination {
    fn emit(&self, datagram: &str) -> io::Result<usize> {
        self.socket.send_to(datagram.as_bytes(), &self.path)
    }
}

impl SendDatagrams for UnixDestination {
    fn batch(&self) -> usize {
        BATCH
    }

    fn send(&mut self, datagrams: &Packed) -> (usize, Option<io::Error>) {
        #[cfg(target_os = "linux")]
        {
            use std::os::fd::AsRawFd;
            match raw::Address::of_path(&self.path) {
                Some(address) => raw::send_many(self.socket.as_raw_fd(), &address, datagrams),
                // A path too long for sockaddr_un: std reports the error.
                None => send_each(datagrams, |d| self.emit(d).map(drop)),
            }
        }
        #[cfg(not(target_os = "linux"))]
        send_each(datagrams, |d| self.emit(d).map(drop))
    }
}

/// `sendmmsg(2)` and the socket addresses it takes.
#[cfg(target_os = "linux")]
mod raw {
    use std::io;
    use std::net::SocketAddr;
    use std::path::Path;

    use super::Packed;

    /// A destination as the kernel reads it.
    pub(super) struct Address {
        storage: libc::sockaddr_storage,
        len: libc::socklen_t,
    }

    impl Address {
        pub(super) fn of_inet(target: SocketAddr) -> Address {
            // SAFETY: all-zero bytes are a valid sockaddr_storage.
            let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
            let len = match target {
                SocketAddr::V4(v4) => {
                    let sin: &mut libc::sockaddr_in = as_family(&mut storage);
                    sin.sin_family = libc::AF_INET as libc::sa_family_t;
                    sin.sin_port = v4.port().to_be();
                    sin.sin_addr.s_addr = u32::from_ne_bytes(v4.ip().octets());
                    std::mem::size_of::<libc::sockaddr_in>()
                }
                SocketAddr::V6(v6) => {
                    let sin6: &mut libc::sockaddr_in6 = as_family(&mut storage);
                    sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
                    sin6.sin6_port = v6.port().to_be();
                    sin6.sin6_flowinfo = v6.flowinfo();
                    sin6.sin6_addr.s6_addr = v6.ip().octets();
                    sin6.sin6_scope_id = v6.scope_id();
                    std::mem::size_of::<libc::sockaddr_in6>()
                }
            };
            Address {
                storage,
                len: len as libc::socklen_t,
            }
        }

        /// `None` if the path does not fit a sockaddr_un.
        pub(super) fn of_path(path: &Path) -> Option<Address> {
            use std::os::unix::ffi::OsStrExt;
            let bytes = path.as_os_str().as_bytes();
            // SAFETY: all-zero bytes are a valid sockaddr_storage.
            let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
            let sun: &mut libc::sockaddr_un = as_family(&mut storage);
            // The path and its terminating zero.
            if bytes.len() >= sun.sun_path.len() || bytes.contains(&0) {
                return None;
            }
            sun.sun_family = libc::AF_UNIX as libc::sa_family_t;
            for (slot, byte) in sun.sun_path.iter_mut().zip(bytes) {
                *slot = *byte as libc::c_char;
            }
            let len = std::mem::size_of::<libc::sa_family_t>() + bytes.len() + 1;
            Some(Address {
                storage,
                len: len as libc::socklen_t,
            })
        }
    }

    /// Marker of the socket address types a sockaddr_storage holds.
    trait SocketAddress {}
    impl SocketAddress for libc::sockaddr_in {}
    impl SocketAddress for libc::sockaddr_in6 {}
    impl SocketAddress for libc::sockaddr_un {}

    /// The storage seen as one address family's struct.
    fn as_family<T: SocketAddress>(storage: &mut libc::sockaddr_storage) -> &mut T {
        // SAFETY: sockaddr_storage is large and aligned enough for every socket address type,
        // and those are plain integers and byte arrays, valid for any bytes.
        unsafe { &mut *(storage as *mut libc::sockaddr_storage).cast::<T>() }
    }

    /// Writes every datagram of `datagrams` to `address` from socket `fd`, as few system calls
    /// as the kernel allows, until one fails.
    pub(super) fn send_many(
        fd: libc::c_int,
        address: &Address,
        datagrams: &Packed,
    ) -> (usize, Option<io::Error>) {
        let mut iovecs: Vec<libc::iovec> = datagrams
            .iter()
            .map(|d| libc::iovec {
                iov_base: d.as_ptr() as *mut libc::c_void,
                iov_len: d.len(),
            })
            .collect();
        let mut headers: Vec<libc::mmsghdr> = iovecs
            .iter_mut()
            .map(|iov| {
                // SAFETY: all-zero bytes are a valid mmsghdr (no name, no control data).
                let mut header: libc::mmsghdr = unsafe { std::mem::zeroed() };
                header.msg_hdr.msg_name = &address.storage as *const _ as *mut libc::c_void;
                header.msg_hdr.msg_namelen = address.len;
                header.msg_hdr.msg_iov = iov;
                header.msg_hdr.msg_iovlen = 1;
                header
            })
            .collect();
        let mut sent = 0;
        while sent < headers.len() {
            let rest = &mut headers[sent..];
            // SAFETY: every header points at one iovec over a datagram of `datagrams` and at
            // `address`, all alive for the call; the kernel only reads them (and writes
            // msg_len).
            let n = unsafe { libc::sendmmsg(fd, rest.as_mut_ptr(), rest.len() as libc::c_uint, 0) };
            if n < 0 {
                let error = io::Error::last_os_error();
                if error.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return (sent, Some(error));
            }
            sent += n as usize;
        }
        (sent, None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packed(datagrams: &[&str]) -> Packed {
        let mut packed = Packed::default();
        for d in datagrams {
            packed.push(d);
        }
        packed
    }

    #[test]
    fn written_datagrams_are_forgotten_in_order() {
        let mut p = packed(&["a:1|g", "bb:2|g", "ccc:3|g"]);
        assert_eq!(p.bytes_of_first(2), 11);
        p.remove_first(1);
        assert_eq!(p.iter().collect::<Vec<_>>(), ["bb:2|g", "ccc:3|g"]);
        p.remove_first(5);
        assert!(p.is_empty());
        assert_eq!(p.bytes_of_first(0), 0);
    }

    #[test]
    fn a_batch_reaches_a_udp_receiver_whole_and_in_order() {
        let agent = UdpSocket::bind("127.0.0.1:0").unwrap();
        agent
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let socket = UdpSocket::bind("0.0.0.0:0").unwrap();
        let mut destination = UdpDestination::new(socket, agent.local_addr().unwrap());
        let datagrams: Vec<String> = (0..BATCH + 3).map(|i| format!("m:{i}|c")).collect();
        let refs: Vec<&str> = datagrams.iter().map(String::as_str).collect();
        let (sent, error) = destination.send(&packed(&refs));
        assert!(error.is_none(), "{error:?}");
        assert_eq!(sent, datagrams.len());
        let mut buf = [0u8; 64];
        for expected in &datagrams {
            let n = agent.recv(&mut buf).unwrap();
            assert_eq!(&buf[..n], expected.as_bytes());
        }
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

    #[test]
    fn a_paced_destination_delays_and_never_drops() {
        let agent = UdpSocket::bind("127.0.0.1:0").unwrap();
        agent
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let socket = UdpSocket::bind("0.0.0.0:0").unwrap();
        let target = agent.local_addr().unwrap();
        let mut destination = UdpDestination::new(socket, target).paced(1_000);
        let datagrams: Vec<String> = (0..BATCH).map(|i| format!("m:{i}|c")).collect();
        let refs: Vec<&str> = datagrams.iter().map(String::as_str).collect();
        let started = Instant::now();
        for _ in 0..3 {
            let (sent, error) = destination.send(&packed(&refs));
            assert_eq!((sent, error.is_none()), (BATCH, true));
        }
        // 96 datagrams at 1,000 a second, the first 32 at once: 64 ms at least.
        let took = started.elapsed();
        assert!(took >= Duration::from_millis(64), "{took:?}");
        let mut buf = [0u8; 64];
        for _ in 0..3 * BATCH {
            agent.recv(&mut buf).unwrap();
        }
    }

    #[test]
    fn a_missing_unix_socket_fails_the_first_datagram() {
        let dir = std::env::temp_dir().join(format!("datagrams-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("dsd.socket");
        let mut destination = UnixDestination::new(UnixDatagram::unbound().unwrap(), &path);
        let (sent, error) = destination.send(&packed(&["a:1|g", "b:1|g"]));
        assert_eq!(sent, 0);
        assert!(error.is_some());

        let agent = UnixDatagram::bind(&path).unwrap();
        let (sent, error) = destination.send(&packed(&["a:1|g", "b:1|g"]));
        assert_eq!((sent, error.is_none()), (2, true));
        let mut buf = [0u8; 16];
        let n = agent.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"a:1|g");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
