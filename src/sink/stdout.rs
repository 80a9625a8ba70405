//! Standard output: `--dry-run`, and the copy `demo --print` shows.
//!
//! When the reader goes away (`run --dry-run | head`), standard output ends quietly, as Unix
//! tools do: nothing more is printed, the write counts as done (there is no one left to print
//! to, and a dry run commits nothing), and [`stdout_closed`] tells the loop to stop.

use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, Ordering};

use cadence::MetricSink;

/// Writes each datagram's lines to standard output, for `--dry-run`.
#[derive(Debug, Default)]
pub struct StdoutMetricSink;

/// Whether standard output's reader went away.
static STDOUT_CLOSED: AtomicBool = AtomicBool::new(false);

/// Whether standard output's reader went away (a closed pipe): a dry run then stops.
pub fn stdout_closed() -> bool {
    STDOUT_CLOSED.load(Ordering::Relaxed)
}

impl MetricSink for StdoutMetricSink {
    fn emit(&self, datagram: &str) -> io::Result<usize> {
        if stdout_closed() {
            return Ok(datagram.len());
        }
        let mut out = io::stdout().lock();
        let written = out
            .write_all(datagram.as_bytes())
            .and_then(|()| out.write_all(b"\n"));
        match written {
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {
                if !STDOUT_CLOSED.swap(true, Ordering::Relaxed) {
                    log::info!("standard output closed: printing no more");
                }
                Ok(datagram.len())
            }
            Err(e) => Err(e),
            Ok(()) => Ok(datagram.len()),
        }
    }
}

/// Sends to the first sink and copies what it accepted to the second (`demo --print`).
pub struct TeeMetricSink(pub Box<dyn MetricSink + Send + Sync>, pub StdoutMetricSink);

impl MetricSink for TeeMetricSink {
    fn emit(&self, datagram: &str) -> io::Result<usize> {
        let written = self.0.emit(datagram)?;
        let _ = self.1.emit(datagram);
        Ok(written)
    }
}
