//! Liveness and readiness over HTTP, for an orchestrator's probes: `GET /livez` and
//! `GET /readyz`, Kubernetes' names, on `init_config.health_address`.
//!
//! The answers come from checks the caller hands over (see `pipeline`): the server knows nothing
//! of Kafka. A check answers `Ok(what)` (200, `what` as the body) or `Err(why)` (503, `why`).
//! Each connection gets one answer and is closed; probes come a few times a minute, so one
//! thread answers them in turn, and a client that sends nothing is dropped after a second.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

/// One probe's check: `Ok(status)` or `Err(reason)`.
pub type Check = Box<dyn Fn() -> Result<String, String> + Send + Sync>;

/// How long a client may take to send its request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(1);
/// The longest request read; a probe's is about a hundred bytes.
const MAX_REQUEST: usize = 8 * 1024;

/// The probe server's checks.
///
/// ```text
/// use algorithmia_datadog::probes::ProbeServer;
/// use std::io::{Read, Write};
///
/// let server = ProbeServer::new(
///     Box::new(|| Ok("consuming".to_string())),
///     Box::new(|| Err("joining the consumer group".to_string())),
/// );
/// let address = server.spawn("127.0.0.1:0").unwrap();
/// let mut client = std::net::TcpStream::connect(address).unwrap();
/// client.write_all(b"GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
/// let mut answer = String::new();
/// client.read_to_string(&mut answer).unwrap();
/// assert!(answer.starts_with("HTTP/1.1 503 "));
/// assert!(answer.ends_with("joining the consumer group\n"));
/// ```
pub struct ProbeServer {
    live: Check,
    ready: Check,
}

impl ProbeServer {
    /// A server answering `/livez` with `live` and `/readyz` with `ready`.
    pub fn new(live: Check, ready: Check) -> Self {
        ProbeServer { live, ready }
    }

    /// Listens on `address` (`host:port`; port 0 picks one) and answers on a thread of its own
    /// for the life of the process. Returns the address it listens on.
    pub fn spawn(self, address: &str) -> io::Result<SocketAddr> {
        let listener = TcpListener::bind(address)?;
        let bound = listener.local_addr()?;
        std::thread::Builder::new()
            .name("probes".into())
            .spawn(move || {
                for stream in listener.incoming() {
                    match stream {
                        Ok(stream) => {
                            if let Err(e) = self.answer(stream) {
                                log::debug!("health probe not answered: {e}");
                            }
                        }
                        Err(e) => log::debug!("health probe connection failed: {e}"),
                    }
                }
            })?;
        Ok(bound)
    }

    fn answer(&self, mut stream: TcpStream) -> io::Result<()> {
        stream.set_read_timeout(Some(REQUEST_TIMEOUT))?;
        stream.set_write_timeout(Some(REQUEST_TIMEOUT))?;
        let request = read_head(&mut stream)?;
        let (status, body) = self.respond(&request);
        let reason = match status {
            200 => "OK",
            404 => "Not Found",
            405 => "Method Not Allowed",
            _ => "Service Unavailable",
        };
        let response = format!(
            "HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\n\
             Content-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        stream.write_all(response.as_bytes())?;
        stream.flush()
    }

    /// The status and body for a request head.
    fn respond(&self, request: &str) -> (u16, String) {
        let mut words = request.lines().next().unwrap_or("").split_whitespace();
        let (method, target) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
        let path = target.split('?').next().unwrap_or("");
        let check = match path {
            "/livez" | "/healthz" => &self.live,
            "/readyz" => &self.ready,
            _ => return (404, "not found: try /livez or /readyz\n".into()),
        };
        if method != "GET" && method != "HEAD" {
            return (405, "GET only\n".into());
        }
        match check() {
            Ok(what) => (200, format!("ok: {what}\n")),
            Err(why) => (503, format!("{why}\n")),
        }
    }
}

/// Reads a request's head (up to the blank line), at most [`MAX_REQUEST`] bytes.
fn read_head(stream: &mut TcpStream) -> io::Result<String> {
    let mut head = Vec::with_capacity(256);
    let mut buffer = [0u8; 512];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && !head.windows(2).any(|w| w == b"\n\n") {
        let n = stream.read(&mut buffer)?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buffer[..n]);
        if head.len() > MAX_REQUEST {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "request too long",
            ));
        }
    }
    Ok(String::from_utf8_lossy(&head).into_owned())
}

/// The examples in this module's documentation, which name items outside the crate's surface.
#[cfg(test)]
mod doc_examples {
    use super::*;

    #[test]
    fn doc_example_of_probe_server() {
        let server = ProbeServer::new(
            Box::new(|| Ok("consuming".to_string())),
            Box::new(|| Err("joining the consumer group".to_string())),
        );
        let address = server.spawn("127.0.0.1:0").unwrap();
        let mut client = std::net::TcpStream::connect(address).unwrap();
        client
            .write_all(b"GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        let mut answer = String::new();
        client.read_to_string(&mut answer).unwrap();
        assert!(answer.starts_with("HTTP/1.1 503 "));
        assert!(answer.ends_with("joining the consumer group\n"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server() -> ProbeServer {
        ProbeServer::new(
            Box::new(|| Ok("consume loop turned 0.1 s ago".into())),
            Box::new(|| Err("not ready: joining the consumer group".into())),
        )
    }

    #[test]
    fn each_path_gets_its_check() {
        let s = server();
        assert_eq!(s.respond("GET /livez HTTP/1.1\r\n\r\n").0, 200);
        assert_eq!(s.respond("GET /livez?verbose HTTP/1.1\r\n\r\n").0, 200);
        assert_eq!(s.respond("GET /readyz HTTP/1.1\r\n\r\n").0, 503);
        assert_eq!(
            s.respond("GET /readyz HTTP/1.1\r\n\r\n").1,
            "not ready: joining the consumer group\n"
        );
        assert_eq!(s.respond("GET / HTTP/1.1\r\n\r\n").0, 404);
        assert_eq!(s.respond("POST /livez HTTP/1.1\r\n\r\n").0, 405);
        assert_eq!(s.respond("").0, 404);
    }

    #[test]
    fn a_client_that_sends_nothing_does_not_hold_up_the_next() {
        let address = server().spawn("127.0.0.1:0").unwrap();
        let _silent = TcpStream::connect(address).unwrap();
        let mut client = TcpStream::connect(address).unwrap();
        client.write_all(b"GET /livez HTTP/1.0\r\n\r\n").unwrap();
        client
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut answer = String::new();
        client.read_to_string(&mut answer).unwrap();
        assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
    }
}
