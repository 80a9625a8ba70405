//! `unix:///path`: the Agent's DogStatsD Unix datagram socket.

use std::io;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::time::Duration;

use cadence::MetricSink;

use super::packed::{Packed, BATCH};
#[cfg(target_os = "linux")]
use super::sendmmsg;
use super::transport::{send_each, SendDatagrams};

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

    /// An unbound socket to send to the socket at `path`.
    pub fn open(path: &Path) -> io::Result<Self> {
        let socket = UnixDatagram::unbound()?;
        // A full Agent socket blocks the sender: bound that so a stop is never held up.
        socket.set_write_timeout(Some(Duration::from_secs(1)))?;
        Ok(UnixDestination::new(socket, path))
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
            match sendmmsg::Address::of_path(&self.path) {
                Some(address) => sendmmsg::send_many(self.socket.as_raw_fd(), &address, datagrams),
                // A path too long for sockaddr_un: std reports the error.
                None => send_each(datagrams, |d| self.emit(d).map(drop)),
            }
        }
        #[cfg(not(target_os = "linux"))]
        send_each(datagrams, |d| self.emit(d).map(drop))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::packed::tests::packed;

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
