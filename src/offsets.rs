//! Which offsets may be stored: a message's offset moves on only once its points reached the
//! Agent's socket.
//!
//! A message's offset goes through three stages: its points are in the open aggregation window
//! ([`OffsetTracker::message_done`]), then its window's lines are in the sink
//! ([`OffsetTracker::handed_to_sink`]), then the sink wrote all of them
//! ([`OffsetTracker::sink_caught_up`]). Only the last may be stored.
//!
//! ```text
//! use algorithmia_datadog::offsets::OffsetTracker;
//!
//! let mut offsets = OffsetTracker::default();
//! offsets.message_done(0, 41); // its points are in the open window
//! offsets.sink_caught_up(); // an older buffer went out: this message was not in it
//! assert!(offsets.take_unstored("insights").is_none());
//! offsets.handed_to_sink(); // the window closed: its lines are in the sink
//! offsets.sink_caught_up(); // the sink wrote them all
//! let tpl = offsets.take_unstored("insights").unwrap();
//! assert_eq!(tpl.find_partition("insights", 0).unwrap().offset(), rdkafka::Offset::Offset(42));
//! ```

use rdkafka::{Offset, TopicPartitionList};

/// Per-partition offsets on their way from "points in the window" to "stored".
///
/// Partitions index plain vectors: Insights topics have a handful of partitions, and this runs
/// once per message.
#[derive(Debug, Default)]
pub struct OffsetTracker {
    /// Next offset to consume, per partition, for messages whose points are all in the open
    /// window (or, sending every point, about to be handed to the sink).
    in_window: Vec<i64>,
    /// Next offset to consume, per partition, for messages whose lines are all in the sink.
    buffered: Vec<i64>,
    /// Next offset to consume, per partition, for messages whose lines all reached the socket.
    delivered: Vec<i64>,
    /// Partitions whose delivered offset moved since the last store.
    unstored: Vec<bool>,
    any_in_window: bool,
    any_buffered: bool,
}

const NONE: i64 = -1;

/// Moves each partition's offset that is set in `from` on to `to`, telling `moved` which.
fn advance(from: &mut [i64], to: &mut [i64], mut moved: impl FnMut(usize)) {
    for (p, next) in from.iter_mut().enumerate() {
        if *next != NONE {
            to[p] = std::mem::replace(next, NONE);
            moved(p);
        }
    }
}

impl OffsetTracker {
    fn slot(&mut self, partition: i32) -> usize {
        let p = partition.max(0) as usize;
        if p >= self.buffered.len() {
            self.in_window.resize(p + 1, NONE);
            self.buffered.resize(p + 1, NONE);
            self.delivered.resize(p + 1, NONE);
            self.unstored.resize(p + 1, false);
        }
        p
    }

    /// Every point of the message at `offset` is in the open window (or it had none).
    pub fn message_done(&mut self, partition: i32, offset: i64) {
        let p = self.slot(partition);
        self.in_window[p] = offset + 1;
        self.any_in_window = true;
    }

    /// The window closed: every line of every message done so far is in the sink.
    pub fn handed_to_sink(&mut self) {
        if std::mem::take(&mut self.any_in_window) {
            advance(&mut self.in_window, &mut self.buffered, |_| {});
            self.any_buffered = true;
        }
    }

    /// The sink wrote everything handed to it before this call: those messages are delivered.
    /// (Messages still in the window are not.)
    pub fn sink_caught_up(&mut self) {
        if std::mem::take(&mut self.any_buffered) {
            let unstored = &mut self.unstored;
            advance(&mut self.buffered, &mut self.delivered, |p| {
                unstored[p] = true
            });
        }
    }

    /// The delivered offsets not stored yet, as a list for `store_offsets`.
    pub fn take_unstored(&mut self, topic: &str) -> Option<TopicPartitionList> {
        let mut tpl: Option<TopicPartitionList> = None;
        for (p, flag) in self.unstored.iter_mut().enumerate() {
            if std::mem::take(flag) {
                let list = tpl.get_or_insert_with(TopicPartitionList::new);
                // Offsets come from librdkafka and are far below i64::MAX; cannot fail.
                let _ =
                    list.add_partition_offset(topic, p as i32, Offset::Offset(self.delivered[p]));
            }
        }
        tpl
    }

    /// Every delivered offset among `partitions` (all of them when `None`).
    pub fn delivered(&self, topic: &str, partitions: Option<&[i32]>) -> TopicPartitionList {
        let mut tpl = TopicPartitionList::new();
        for (p, next) in self.delivered.iter().enumerate() {
            let wanted = partitions.is_none_or(|ps| ps.contains(&(p as i32)));
            if *next != NONE && wanted {
                let _ = tpl.add_partition_offset(topic, p as i32, Offset::Offset(*next));
            }
        }
        tpl
    }

    /// Drops what we know of partitions we no longer own.
    pub fn forget(&mut self, partitions: &[i32]) {
        for &partition in partitions {
            let p = self.slot(partition);
            self.in_window[p] = NONE;
            self.buffered[p] = NONE;
            self.delivered[p] = NONE;
            self.unstored[p] = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offsets_of(tpl: &TopicPartitionList) -> Vec<(i32, Offset)> {
        tpl.elements()
            .iter()
            .map(|e| (e.partition(), e.offset()))
            .collect()
    }

    /// Marks messages done and hands them to the sink at once, as sending every point does.
    fn done(t: &mut OffsetTracker, partition: i32, offset: i64) {
        t.message_done(partition, offset);
        t.handed_to_sink();
    }

    #[test]
    fn offsets_move_only_when_the_buffer_is_sent() {
        let mut t = OffsetTracker::default();
        done(&mut t, 2, 10);
        done(&mut t, 2, 11);
        done(&mut t, 0, 5);
        assert!(t.take_unstored("t").is_none());
        t.sink_caught_up();
        done(&mut t, 2, 12); // buffered after the send: not delivered yet
        let tpl = t.take_unstored("t").unwrap();
        assert_eq!(
            offsets_of(&tpl),
            [(0, Offset::Offset(6)), (2, Offset::Offset(12))]
        );
        assert!(
            t.take_unstored("t").is_none(),
            "stored offsets are not stored twice"
        );
        t.sink_caught_up();
        assert_eq!(
            offsets_of(&t.take_unstored("t").unwrap()),
            [(2, Offset::Offset(13))]
        );
    }

    #[test]
    fn messages_in_the_open_window_wait_for_it_to_close_and_be_written() {
        let mut t = OffsetTracker::default();
        done(&mut t, 0, 1); // an earlier window, in the sink
        t.message_done(0, 2); // the open window
        t.message_done(1, 7);
        t.sink_caught_up(); // the earlier window went out
        assert_eq!(
            offsets_of(&t.take_unstored("t").unwrap()),
            [(0, Offset::Offset(2))]
        );
        t.handed_to_sink(); // the window closed
        assert!(
            t.take_unstored("t").is_none(),
            "its lines are not written yet"
        );
        t.sink_caught_up();
        assert_eq!(
            offsets_of(&t.take_unstored("t").unwrap()),
            [(0, Offset::Offset(3)), (1, Offset::Offset(8))]
        );
    }

    #[test]
    fn revoked_partitions_are_forgotten() {
        let mut t = OffsetTracker::default();
        done(&mut t, 0, 1);
        done(&mut t, 1, 1);
        t.message_done(1, 2); // in the window when the partition goes
        t.sink_caught_up();
        assert_eq!(
            offsets_of(&t.delivered("t", Some(&[1]))),
            [(1, Offset::Offset(2))]
        );
        t.forget(&[1]);
        t.handed_to_sink();
        t.sink_caught_up();
        assert_eq!(
            offsets_of(&t.delivered("t", None)),
            [(0, Offset::Offset(2))]
        );
    }
}

/// The examples in this module's documentation, which name items outside the crate's surface.
#[cfg(test)]
mod doc_examples {
    #[test]
    fn doc_example_of_the_module() {
        use crate::offsets::OffsetTracker;

        let mut offsets = OffsetTracker::default();
        offsets.message_done(0, 41); // its points are in the open window
        offsets.sink_caught_up(); // an older buffer went out: this message was not in it
        assert!(offsets.take_unstored("insights").is_none());
        offsets.handed_to_sink(); // the window closed: its lines are in the sink
        offsets.sink_caught_up(); // the sink wrote them all
        let tpl = offsets.take_unstored("insights").unwrap();
        assert_eq!(
            tpl.find_partition("insights", 0).unwrap().offset(),
            rdkafka::Offset::Offset(42)
        );
    }
}
