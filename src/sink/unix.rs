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

/// How long a send waits for room in the reader's queue before it fails (and the sink holds
/// its data and retries later).
const WRITE_TIMEOUT: Duration = Duration::from_secs(1);

/// How long a send pauses when the reader's queue is full, so that the reader empties it: long
/// enough for an Agent to read ten 8 KiB datagrams, short enough that a busy one barely waits.
const FULL_QUEUE_PAUSE: Duration = Duration::from_micros(200);

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
        socket.set_write_timeout(Some(WRITE_TIMEOUT))?;
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
                Some(address) => sendmmsg::send_many(
                    self.socket.as_raw_fd(),
                    &address,
                    datagrams,
                    sendmmsg::WhenFull::Pause {
                        pause: FULL_QUEUE_PAUSE,
                        give_up: WRITE_TIMEOUT,
                    },
                ),
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

    #[test]
    fn a_full_reader_queue_is_waited_for_then_refused_after_the_write_timeout() {
        let dir = std::env::temp_dir().join(format!("full-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("dsd.socket");
        let agent = UnixDatagram::bind(&path).unwrap();
        let mut destination = UnixDestination::open(&path).unwrap();
        let line = "a:1|g";
        let lines = vec![line; BATCH];

        // A reader that reads nothing: the queue fills (10 datagrams by Linux's default, more
        // where `net.unix.max_dgram_qlen` is raised), the rest waits, then is refused.
        let mut sent = 0;
        let (error, waited) = loop {
            let started = std::time::Instant::now();
            let (n, error) = destination.send(&packed(&lines));
            sent += n;
            if let Some(error) = error {
                break (error, started.elapsed());
            }
            assert!(
                sent < 100_000,
                "a reader that reads nothing took {sent} datagrams"
            );
        };
        assert_eq!(
            error.kind(),
            io::ErrorKind::WouldBlock,
            "refused as the blocking send was"
        );
        assert!(
            waited >= WRITE_TIMEOUT && waited < WRITE_TIMEOUT * 2,
            "waited {waited:?}"
        );

        // A reader that empties the queue meanwhile: everything goes, none is lost.
        let reader = std::thread::spawn(move || {
            let mut buf = [0u8; 64];
            let mut read = 0;
            agent
                .set_read_timeout(Some(Duration::from_secs(5)))
                .unwrap();
            while read < sent + BATCH {
                std::thread::sleep(Duration::from_micros(50));
                if agent.recv(&mut buf).is_err() {
                    break;
                }
                read += 1;
            }
            read
        });
        let (again, error) = destination.send(&packed(&lines));
        assert_eq!((again, error.is_none()), (BATCH, true));
        assert_eq!(reader.join().unwrap(), sent + BATCH);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
