//! Datagrams packed and waiting for one write: the sink gathers up to [`BATCH`] of them, and
//! the Agent's UDP port or Unix socket takes them with one `sendmmsg(2)`.
//!
//! Over UDP each datagram costs the kernel a trip through the network stack and, as often as not,
//! a wake-up of the Agent's reader: written one per `sendto`, that was half of the forwarder's
//! time when it sends every point. A batch wakes the reader once and enters the kernel once.
//!
//! ```text
//! use algorithmia_datadog::sink::{OneByOne, Packed, SendDatagrams};
//! use cadence::SpyMetricSink;
//!
//! let (received, spy) = SpyMetricSink::new();
//! let mut packed = Packed::default();
//! packed.push("a:1|g");
//! packed.push("b:2|g\nc:3|g");
//! let (sent, error) = OneByOne(spy).send(&packed);
//! assert_eq!((sent, error.is_none()), (2, true));
//! assert_eq!(received.try_recv().unwrap(), b"a:1|g");
//! ```

/// How many datagrams the sink gathers before it writes them (one system call).
pub const BATCH: usize = 32;

/// Datagrams packed and not written yet, in order, in one buffer.
#[derive(Debug, Default)]
pub struct Packed {
    text: String,
    /// Where each datagram ends in `text`.
    ends: Vec<usize>,
}

impl Packed {
    /// Adds a datagram after the others.
    pub fn push(&mut self, datagram: &str) {
        self.text.push_str(datagram);
        self.ends.push(self.text.len());
    }

    /// How many datagrams wait.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// Whether none waits.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// The waiting datagrams, in order.
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        let starts = std::iter::once(0).chain(self.ends.iter().copied());
        starts
            .zip(&self.ends)
            .map(|(start, &end)| &self.text[start..end])
    }

    /// How many bytes the first `n` datagrams hold.
    pub fn bytes_of_first(&self, n: usize) -> usize {
        n.checked_sub(1).map_or(0, |last| self.ends[last])
    }

    /// Forgets the first `n` datagrams (they were written).
    pub fn remove_first(&mut self, n: usize) {
        let n = n.min(self.ends.len());
        let cut = self.bytes_of_first(n);
        self.text.drain(..cut);
        self.ends.drain(..n);
        for end in &mut self.ends {
            *end -= cut;
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// `datagrams`, packed.
    pub(crate) fn packed(datagrams: &[&str]) -> Packed {
        let mut packed = Packed::default();
        for d in datagrams {
            packed.push(d);
        }
        packed
    }

    #[test]
    fn written_datagrams_are_forgotten_in_order() {
        let mut p = packed(&["a:1|g", "bb:2|g", "ccc:3|g"]);
        assert_eq!(p.bytes_of_first(2), 11);
        p.remove_first(1);
        assert_eq!(p.iter().collect::<Vec<_>>(), ["bb:2|g", "ccc:3|g"]);
        p.remove_first(5);
        assert!(p.is_empty());
        assert_eq!(p.bytes_of_first(0), 0);
    }
}

/// The examples in this module's documentation, which name items outside the crate's surface.
#[cfg(test)]
mod doc_examples {
    #[test]
    fn doc_example_of_the_module() {
        use crate::sink::{OneByOne, Packed, SendDatagrams};
        use cadence::SpyMetricSink;

        let (received, spy) = SpyMetricSink::new();
        let mut packed = Packed::default();
        packed.push("a:1|g");
        packed.push("b:2|g\nc:3|g");
        let (sent, error) = OneByOne(spy).send(&packed);
        assert_eq!((sent, error.is_none()), (2, true));
        assert_eq!(received.try_recv().unwrap(), b"a:1|g");
    }
}
