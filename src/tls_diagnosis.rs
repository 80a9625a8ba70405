//! Why a broker's certificate was refused, when librdkafka cannot say.
//!
//! librdkafka reports every failed certificate check with one text, "certificate verify failed:
//! broker certificate could not be verified, verify that ssl.ca.location is correctly
//! configured", whether the authority is unknown, the certificate names another host or it has
//! expired. The cures differ (`ssl_ca_location`, `kafka_broker` or the certificate's names, a
//! renewal), so the forwarder makes one handshake of its own with the same trust settings and
//! reads OpenSSL's verify result, which tells them apart.

use std::io;
use std::net::{TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::config::Instance;

use openssl::ssl::{HandshakeError, SslConnector, SslMethod};

/// OpenSSL's verify results the forwarder names (`X509_V_ERR_*`, stable across versions).
const CERT_NOT_YET_VALID: i32 = 9;
const CERT_HAS_EXPIRED: i32 = 10;
const HOSTNAME_MISMATCH: i32 = 62;
const IP_ADDRESS_MISMATCH: i32 = 64;

/// What a handshake of our own found about a broker's certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The certificate verified: librdkafka's failure lies elsewhere.
    Verified,
    /// The chain is trusted, but the certificate names neither the host nor the address the
    /// client connected to.
    NameMismatch,
    /// The certificate has expired or is not valid yet.
    OutsideValidity,
    /// Not signed by an authority the client trusts; OpenSSL's reason.
    Untrusted(String),
}

/// The broker a librdkafka connection error is about: `ssl://host:port/...` or
/// `sasl_ssl://[::1]:9093/1: ...` gives the host and the port.
///
/// ```text
/// use algorithmia_datadog::tls_diagnosis::broker_in_error;
/// let text = "ssl://localhost:19093/bootstrap: SSL handshake failed: certificate verify failed";
/// assert_eq!(broker_in_error(text), Some(("localhost".to_string(), 19093)));
/// ```
pub fn broker_in_error(text: &str) -> Option<(String, u16)> {
    let start = text.find("ssl://")? + "ssl://".len();
    let rest = &text[start..];
    let address = &rest[..rest.find('/')?];
    let (host, port) = address.rsplit_once(':')?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return None;
    }
    Some((host.to_string(), port.parse().ok()?))
}

/// Makes one TLS handshake with `host:port`, trusting `ca` (else the system's authorities) and
/// checking the certificate's names against `host` when `check_name` (librdkafka's
/// `ssl.endpoint.identification.algorithm: https`, its default), and says what it found.
pub fn diagnose(
    host: &str,
    port: u16,
    ca: Option<&Path>,
    check_name: bool,
    timeout: Duration,
) -> io::Result<Verdict> {
    let mut builder = SslConnector::builder(SslMethod::tls_client()).map_err(io::Error::other)?;
    match ca {
        Some(ca) => builder.set_ca_file(ca).map_err(io::Error::other)?,
        None => {
            // The vendored OpenSSL knows no system paths; librdkafka probes for them the same way.
            let probe = openssl_probe::probe();
            if let Some(file) = &probe.cert_file {
                builder.set_ca_file(file).map_err(io::Error::other)?;
            }
            for dir in &probe.cert_dir {
                builder
                    .load_verify_locations(None, Some(dir))
                    .map_err(io::Error::other)?;
            }
        }
    }
    let connector = builder.build();
    // Like librdkafka, any of the name's addresses will do (`localhost` is often `::1` first).
    let mut last = io::Error::new(io::ErrorKind::NotFound, "the name has no address");
    let mut connected = None;
    for address in (host, port).to_socket_addrs()? {
        match TcpStream::connect_timeout(&address, timeout) {
            Ok(stream) => {
                connected = Some(stream);
                break;
            }
            Err(e) => last = e,
        }
    }
    let stream = connected.ok_or(last)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    let mut session = connector.configure().map_err(io::Error::other)?;
    session.set_verify_hostname(check_name);
    match session.connect(host, stream) {
        Ok(_) => Ok(Verdict::Verified),
        Err(HandshakeError::Failure(mid)) | Err(HandshakeError::WouldBlock(mid)) => {
            let result = mid.ssl().verify_result();
            Ok(verdict(result.as_raw(), result.error_string()))
        }
        Err(HandshakeError::SetupFailure(e)) => Err(io::Error::other(e)),
    }
}

/// The cause librdkafka gives every refused certificate.
pub const UNTRUSTED: &str = "certificate not trusted (check ssl_ca_location)";
/// The cause when the authority is trusted but the certificate names another host.
pub const NAME_MISMATCH: &str = "certificate does not name the broker's host (check that \
     kafka_broker uses a name in the certificate's subjectAltName, or kafka_options \
     ssl.endpoint.identification.algorithm)";
/// The cause when the certificate's dates exclude now.
pub const OUTSIDE_VALIDITY: &str =
    "certificate expired or not yet valid (check the broker's certificate and this host's clock)";

/// How long a diagnosis stands before a failure that goes on is looked at again.
const DIAGNOSIS_STANDS_FOR: Duration = Duration::from_secs(60);
/// How long one diagnosis may take to connect, and each read or write of its handshake.
const DIAGNOSIS_TIMEOUT: Duration = Duration::from_secs(2);

/// One instance's trust settings, and the last diagnosis made with them: a failure that goes on
/// is diagnosed once a minute at most, whatever librdkafka's retries.
///
/// ```text
/// use algorithmia_datadog::tls_diagnosis::{CertificateCheck, UNTRUSTED};
/// // Nothing listens on port 9 here: without a diagnosis the cause stays librdkafka's.
/// let check = CertificateCheck::new(None, true);
/// assert_eq!(check.cause("ssl://127.0.0.1:9/bootstrap: SSL handshake failed"), UNTRUSTED);
/// ```
pub struct CertificateCheck {
    ca: Option<PathBuf>,
    check_name: bool,
    last: Mutex<Option<(String, u16, Instant, Verdict)>>,
}

impl CertificateCheck {
    /// The check of certificates trusted through `ca` (else the system's authorities), names
    /// compared when `check_name`.
    pub fn new(ca: Option<PathBuf>, check_name: bool) -> Self {
        CertificateCheck {
            ca,
            check_name,
            last: Mutex::new(None),
        }
    }

    /// The check librdkafka's settings for `instance` make: its `ssl_ca_location`, and names
    /// compared unless `kafka_options` turns `ssl.endpoint.identification.algorithm` off.
    pub fn for_instance(instance: &Instance) -> Self {
        let algorithm = instance
            .kafka_options
            .get("ssl.endpoint.identification.algorithm")
            .unwrap_or("https");
        CertificateCheck::new(
            instance.ssl_ca_location.clone(),
            !algorithm.eq_ignore_ascii_case("none"),
        )
    }

    /// The cause of a refused certificate, given librdkafka's error text: [`NAME_MISMATCH`] or
    /// [`OUTSIDE_VALIDITY`] when a handshake of our own says so, else [`UNTRUSTED`].
    pub fn cause(&self, error_text: &str) -> &'static str {
        let Some((host, port)) = broker_in_error(error_text) else {
            return UNTRUSTED;
        };
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        let fresh = last.as_ref().filter(|(h, p, at, _)| {
            *h == host && *p == port && at.elapsed() < DIAGNOSIS_STANDS_FOR
        });
        let verdict = match fresh {
            Some((_, _, _, verdict)) => verdict.clone(),
            None => {
                let verdict = diagnose(
                    &host,
                    port,
                    self.ca.as_deref(),
                    self.check_name,
                    DIAGNOSIS_TIMEOUT,
                )
                .unwrap_or_else(|e| {
                    log::debug!("no diagnosis of {host}:{port}'s certificate: {e}");
                    Verdict::Untrusted(e.to_string())
                });
                *last = Some((host, port, Instant::now(), verdict.clone()));
                verdict
            }
        };
        match verdict {
            Verdict::NameMismatch => NAME_MISMATCH,
            Verdict::OutsideValidity => OUTSIDE_VALIDITY,
            Verdict::Verified | Verdict::Untrusted(_) => UNTRUSTED,
        }
    }
}

fn verdict(raw: i32, reason: &str) -> Verdict {
    match raw {
        0 => Verdict::Verified,
        HOSTNAME_MISMATCH | IP_ADDRESS_MISMATCH => Verdict::NameMismatch,
        CERT_HAS_EXPIRED | CERT_NOT_YET_VALID => Verdict::OutsideValidity,
        _ => Verdict::Untrusted(reason.to_string()),
    }
}

/// The examples in this module's documentation, which name items outside the crate's surface.
#[cfg(test)]
mod doc_examples {
    use super::*;

    #[test]
    fn doc_example_of_broker_in_error() {
        let text =
            "ssl://localhost:19093/bootstrap: SSL handshake failed: certificate verify failed";
        assert_eq!(
            broker_in_error(text),
            Some(("localhost".to_string(), 19093))
        );
    }

    #[test]
    fn doc_example_of_certificate_check() {
        let check = CertificateCheck::new(None, true);
        assert_eq!(
            check.cause("ssl://127.0.0.1:9/bootstrap: SSL handshake failed"),
            UNTRUSTED
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_broker_is_read_from_librdkafka_s_error_texts() {
        let cases = [
            (
                "SSL: ssl://kafka-1.internal:9093/bootstrap: SSL handshake failed",
                Some(("kafka-1.internal", 9093)),
            ),
            (
                "sasl_ssl://[::1]:19093/2: SSL handshake failed",
                Some(("::1", 19093)),
            ),
            ("GroupCoordinator: 127.0.0.1:9092: Connection refused", None),
            ("ssl://:9093/bootstrap: x", None),
            ("ssl://host:port/bootstrap: x", None),
        ];
        for (text, expected) in cases {
            assert_eq!(
                broker_in_error(text),
                expected.map(|(h, p)| (h.to_string(), p)),
                "{text}"
            );
        }
    }

    #[test]
    fn openssl_s_verify_results_are_named() {
        assert_eq!(verdict(HOSTNAME_MISMATCH, "x"), Verdict::NameMismatch);
        assert_eq!(verdict(IP_ADDRESS_MISMATCH, "x"), Verdict::NameMismatch);
        assert_eq!(verdict(CERT_HAS_EXPIRED, "x"), Verdict::OutsideValidity);
        assert_eq!(verdict(CERT_NOT_YET_VALID, "x"), Verdict::OutsideValidity);
        assert_eq!(
            verdict(19, "self-signed certificate in certificate chain"),
            Verdict::Untrusted("self-signed certificate in certificate chain".into())
        );
    }

    #[test]
    fn a_broker_that_is_not_there_is_an_error_not_a_verdict() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        assert!(diagnose("127.0.0.1", port, None, true, Duration::from_secs(2)).is_err());
    }
}
