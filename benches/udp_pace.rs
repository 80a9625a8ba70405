//! How fast Datadog's serverless DogStatsD server (`datadog-serverless-compat` 0.19.0, the
//! oracle of `tests/datadog_parser.rs`) reads UDP datagrams with the kernel's default receive
//! buffer, and so what `udp_max_datagrams_per_second` must default to.
//!
//! `cargo bench --bench udp_pace` starts the server (at `trace`, as the tests run it, then at
//! `debug`, a faster reader), and for each pace sends `UDP_PACE_SECONDS` (default 2) seconds of
//! full 1,432-byte datagrams of distribution lines through the forwarder's own UDP destination
//! (`sendmmsg` batches of 32, paced by `datagrams::Pace`), then counts what the server read
//! (from its log, once 2 s passed without a new datagram) and what the kernel dropped for a full receive buffer (`RcvbufErrors` in
//! `/proc/net/snmp`, machine-wide: other UDP traffic on the machine shows up there too).
//! `UDP_PACES=0,20000,5000` picks the paces (0: unpaced).

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use algorithmia_datadog::{Packed, SendDatagrams, UdpDestination, BATCH};

#[path = "../tests/common/mod.rs"]
mod common;

use common::datadog_dogstatsd::{udp_receive_buffer_errors, DogStatsdServer, LogLevel};

/// The most datagrams sent at one pace (at `trace` the server logs each, whole).
const MAX_DATAGRAMS: usize = 20_000;

/// One full datagram of distribution lines, as the forwarder packs them over UDP.
fn datagram(n: usize) -> String {
    let mut out = String::new();
    let mut i = 0;
    loop {
        let line = format!(
            "algorithmia.risk_score:0.{}|d|#algorithm_name:credit_card_approval,algorithm_version:1.0.{},pace:{n}",
            i % 1000,
            i % 3
        );
        if out.len() + 1 + line.len() > 1432 {
            return out;
        }
        if !out.is_empty() {
            out.push('\n');
        }
        out.push_str(&line);
        i += 1;
    }
}

fn main() {
    let seconds: f64 = std::env::var("UDP_PACE_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2.0);
    let paces: Vec<u32> = std::env::var("UDP_PACES")
        .unwrap_or_else(|_| "0,50000,20000,10000,5000,2000,1000".into())
        .split(',')
        .map(|p| p.trim().parse().expect("UDP_PACES: numbers"))
        .collect();
    println!(
        "| server log level | pace (datagrams/s) | sent | received by the server | lost | RcvbufErrors delta | send time (s) |"
    );
    println!("|---|---|---|---|---|---|---|");
    for level in [LogLevel::Trace, LogLevel::Debug] {
        for &pace in &paces {
            let server = DogStatsdServer::start_at(level);
            let target: SocketAddr = format!("127.0.0.1:{}", server.port).parse().unwrap();
            let socket = UdpSocket::bind("0.0.0.0:0").unwrap();
            let mut destination = UdpDestination::new(socket, target).paced(pace);
            let count = if pace == 0 {
                MAX_DATAGRAMS
            } else {
                ((f64::from(pace) * seconds) as usize).min(MAX_DATAGRAMS)
            };
            let text = datagram(count);
            let mut batch = Packed::default();
            for _ in 0..BATCH {
                batch.push(&text);
            }
            let errors_before = udp_receive_buffer_errors();
            let started = Instant::now();
            let mut sent = 0;
            while sent < count {
                if batch.len() > count - sent {
                    batch.remove_first(batch.len() - (count - sent));
                }
                let (n, error) = destination.send(&batch);
                assert!(error.is_none(), "{error:?}");
                sent += n;
            }
            let took = started.elapsed();
            // Let the server read what its buffer holds: done after 2 s without a new datagram.
            let mut received = server.datagrams_received();
            loop {
                std::thread::sleep(Duration::from_secs(2));
                let now = server.datagrams_received();
                if now == received {
                    break;
                }
                received = now;
            }
            let dropped = udp_receive_buffer_errors() - errors_before;
            println!(
                "| {level:?} | {} | {sent} | {received} | {} | {dropped} | {:.2} |",
                if pace == 0 {
                    "unpaced".to_string()
                } else {
                    pace.to_string()
                },
                sent - received.min(sent),
                took.as_secs_f64()
            );
        }
    }
}
