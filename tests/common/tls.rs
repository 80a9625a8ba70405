//! TLS in front of a broker: a throwaway certificate authority (made with the `openssl` command
//! line) and Debian's `stunnel4` terminating TLS and passing the plain Kafka protocol on.
//!
//! tansu 0.6 cannot serve TLS itself (its `--cert` and `--key` options exclude each other), so
//! the tests put stunnel in front of it, as a load balancer terminating TLS would be: the broker
//! advertises stunnel's port, so every connection a client makes goes through TLS.

#![allow(dead_code)]

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn openssl(dir: &Path, args: &[&str]) {
    let output = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("the openssl command line (Debian's openssl package)");
    assert!(
        output.status.success(),
        "openssl {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A certificate authority and a server certificate it signed, valid for 127.0.0.1.
pub struct Certificates {
    /// The authority's certificate: what clients trust.
    pub ca: PathBuf,
    /// The server's certificate.
    pub cert: PathBuf,
    /// The server's private key.
    pub key: PathBuf,
}

impl Certificates {
    /// Makes a new authority named `name` in `dir`, and a server certificate it signed for
    /// 127.0.0.1 and localhost.
    pub fn new(dir: &Path, name: &str) -> Certificates {
        Certificates::with_names(dir, name, "IP:127.0.0.1,DNS:localhost")
    }

    /// The same, with the server certificate's `subjectAltName` (e.g. `IP:127.0.0.1` alone).
    pub fn with_names(dir: &Path, name: &str, subject_alt_names: &str) -> Certificates {
        std::fs::create_dir_all(dir).expect("a directory for certificates");
        let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"];
        let file = |suffix: &str| format!("{name}-{suffix}");
        openssl(
            dir,
            &[
                &["req", "-x509", "-nodes", "-days", "2"][..],
                &ec,
                &[
                    "-keyout",
                    &file("ca.key"),
                    "-out",
                    &file("ca.pem"),
                    "-subj",
                    &format!("/CN={name} test CA"),
                ],
            ]
            .concat(),
        );
        openssl(
            dir,
            &[
                &["req", "-nodes"][..],
                &ec,
                &[
                    "-keyout",
                    &file("server.key"),
                    "-out",
                    &file("server.csr"),
                    "-subj",
                    "/CN=127.0.0.1",
                ],
            ]
            .concat(),
        );
        std::fs::write(
            dir.join(file("san.cnf")),
            format!("subjectAltName={subject_alt_names}\n"),
        )
        .expect("write the certificate extensions");
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                &file("server.csr"),
                "-CA",
                &file("ca.pem"),
                "-CAkey",
                &file("ca.key"),
                "-CAcreateserial",
                "-days",
                "2",
                "-out",
                &file("server.pem"),
                "-extfile",
                &file("san.cnf"),
            ],
        );
        Certificates {
            ca: dir.join(file("ca.pem")),
            cert: dir.join(file("server.pem")),
            key: dir.join(file("server.key")),
        }
    }
}

/// stunnel accepting TLS on one port and passing the plain stream to another; killed when
/// dropped.
pub struct Stunnel {
    child: Child,
    port: u16,
}

impl Stunnel {
    /// Terminates TLS with `certificates` on `port`, forwarding to `to_port` on loopback.
    pub fn start(dir: &Path, certificates: &Certificates, port: u16, to_port: u16) -> Stunnel {
        let config = dir.join(format!("stunnel-{port}.conf"));
        std::fs::write(
            &config,
            format!(
                "foreground = yes\npid =\ndebug = warning\n\n[kafka]\naccept = 127.0.0.1:{port}\nconnect = 127.0.0.1:{to_port}\ncert = {}\nkey = {}\n",
                certificates.cert.display(),
                certificates.key.display()
            ),
        )
        .expect("write the stunnel configuration");
        let child = Command::new("stunnel4")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start stunnel4 (Debian's stunnel4 package; .ci/run installs it): {e}"
                )
            });
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "stunnel4 did not listen on {port} within 10 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Stunnel { child, port }
    }

    /// The TLS port.
    pub fn port(&self) -> u16 {
        self.port
    }
}

impl Drop for Stunnel {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A TCP relay on loopback that counts the connections made through it: how often a client
/// tries again.
pub struct CountingRelay {
    port: u16,
    accepted: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl CountingRelay {
    /// Relays connections on a free port to `to_port` on loopback.
    pub fn start(to_port: u16) -> CountingRelay {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a port for the relay");
        let port = listener.local_addr().expect("its address").port();
        let accepted = std::sync::Arc::new(AtomicUsize::new(0));
        let counter = accepted.clone();
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                counter.fetch_add(1, Ordering::SeqCst);
                let Ok(upstream) = TcpStream::connect(("127.0.0.1", to_port)) else {
                    continue;
                };
                let (Ok(mut c2), Ok(mut u2)) = (client.try_clone(), upstream.try_clone()) else {
                    continue;
                };
                let (mut client, mut upstream) = (client, upstream);
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut client, &mut upstream);
                    let _ = upstream.shutdown(std::net::Shutdown::Both);
                });
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut u2, &mut c2);
                    let _ = c2.shutdown(std::net::Shutdown::Both);
                });
            }
        });
        CountingRelay { port, accepted }
    }

    /// The port clients connect to.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(std::sync::atomic::Ordering::SeqCst)
    }
}
