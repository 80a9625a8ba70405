//! `udp://host:port`: the Agent's DogStatsD UDP port.

use std::io;
use std::net::{SocketAddr, ToSocketAddrs, UdpSocket};

use cadence::MetricSink;

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
}

impl UdpDestination {
    /// Sends from `socket` (bound, of `target`'s family) to `target`.
    pub fn new(socket: UdpSocket, target: SocketAddr) -> Self {
        UdpDestination { socket, target }
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
        self.socket.send_to(datagram.as_bytes(), self.target)
    }
}

impl SendDatagrams for UdpDestination {
    fn batch(&self) -> usize {
        BATCH
    }

    fn send(&mut self, datagrams: &Packed) -> (usize, Option<io::Error>) {
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
}
