//! Where datagrams go: the [`SendDatagrams`] every transport implements, and the [`Transport`]
//! the configuration chooses.

use std::io;

use cadence::MetricSink;

use super::packed::Packed;
use super::stdout::StdoutMetricSink;
use super::udp::UdpDestination;
use super::unix::UnixDestination;
use crate::config::Destination;

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
pub(super) fn send_each(
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

/// One of the destinations the configuration allows.
pub enum Transport {
    /// `udp://host:port`.
    Udp(UdpDestination),
    /// `unix:///path`, a datagram socket.
    Unix(UnixDestination),
    /// Standard output (`--dry-run`).
    Stdout(StdoutMetricSink),
}

impl SendDatagrams for Transport {
    fn send(&mut self, datagrams: &Packed) -> (usize, Option<io::Error>) {
        match self {
            Transport::Udp(udp) => udp.send(datagrams),
            Transport::Unix(unix) => unix.send(datagrams),
            Transport::Stdout(stdout) => send_one_by_one(stdout, datagrams),
        }
    }

    fn batch(&self) -> usize {
        match self {
            Transport::Udp(udp) => udp.batch(),
            Transport::Unix(unix) => unix.batch(),
            Transport::Stdout(_) => 1,
        }
    }
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

/// Opens a destination; UDP sends go at most `udp_per_second` datagrams a second (0: unpaced).
pub fn open_transport(destination: &Destination, udp_per_second: u32) -> io::Result<Transport> {
    match destination {
        Destination::Udp(addr) => UdpDestination::open(addr)
            .map(|udp| udp.paced(udp_per_second))
            .map(Transport::Udp),
        Destination::Unix(path) => UnixDestination::open(path).map(Transport::Unix),
    }
}
