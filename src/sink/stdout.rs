//! Standard output: `--dry-run`, and the copy `demo --print` shows.

use std::io::{self, Write};

use cadence::MetricSink;

/// Writes each datagram's lines to standard output, for `--dry-run`.
#[derive(Debug, Default)]
pub struct StdoutMetricSink;

impl MetricSink for StdoutMetricSink {
    fn emit(&self, datagram: &str) -> io::Result<usize> {
        let mut out = io::stdout().lock();
        out.write_all(datagram.as_bytes())?;
        out.write_all(b"\n")?;
        Ok(datagram.len())
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
