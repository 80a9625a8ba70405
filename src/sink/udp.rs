//! `udp://host:port`: the Agent's DogStatsD UDP port.

use std::io;
use std::net::{SocketAddr, ToSocketAddrs, UdpSocket};
use std::sync::Mutex;
use std::time::Instant;

use cadence::MetricSink;

use super::pace::Pace;
use super::packed::{Packed, BATCH};
#[cfg(target_os = "linux")]
use super::sendmmsg;
#[cfg(not(target_os = "linux"))]
use super::transport::send_each;
use super::transport::SendDatagrams;

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

    /// Resolves `addr` (`host:port`) and binds a socket to send to it.
    pub fn open(addr: &str) -> io::Result<Self> {
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
        Ok(UdpDestination::new(socket, target))
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
            let address = sendmmsg::Address::of_inet(self.target);
            sendmmsg::send_many(self.socket.as_raw_fd(), &address, datagrams)
        }
        #[cfg(not(target_os = "linux"))]
        send_each(datagrams, |d| self.emit(d).map(drop))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::packed::tests::packed;
    use std::time::Duration;

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
        let started = std::time::Instant::now();
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
}
