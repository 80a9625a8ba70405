//! Client-side aggregation: the points of a few seconds of messages folded per context, the way
//! Datadog's own clients do it, so that every call is measured rather than sampled.
//!
//! The Agent keeps only the last gauge per context (name and tags) in each 10-second flush, so a
//! model called 500 times a second would be charted from one call in 5,000. A [`Window`] holds
//! the points of one aggregation interval (`aggregation_interval`, aligned to wall-clock
//! multiples of it) and, per context:
//!
//! - gauges keep the last value, in the order the messages came (their partition's order);
//! - counts (the per-model `calls`) add up;
//! - distribution values are all kept, in arrival order, and packed several to a line
//!   (`name:v1:v2:v3|d|#tags`, DogStatsD protocol 1.1): never aggregated, never dropped.
//!
//! With timestamps (`send_timestamps: true`) gauges and counts are kept per context *and*
//! timestamp second, which is exactly what the backend stores; distributions carry no timestamp.
//!
//! A window holds at most `max_contexts` contexts and [`MAX_DISTRIBUTION_VALUES`] distribution
//! values: the caller closes it early when [`Window::is_full`] says so, so memory stays bounded
//! and nothing is dropped.
//!
//! ```
//! use algorithmia_datadog::Window;
//! use algorithmia_datadog::{MetricKind, Value};
//! use algorithmia_datadog::metrics::PointSink;
//!
//! let mut window = Window::new(100_000);
//! for (latency, version) in [(8, "1.0.6"), (12, "1.0.6"), (9, "1.0.7")] {
//!     window.begin(&format!("algorithm_version:{version}"), None);
//!     window.point("algorithmia.duration_milliseconds", MetricKind::Gauge, Value::UInt(latency));
//!     window.point("algorithmia.calls", MetricKind::Count, Value::UInt(1));
//! }
//! let mut lines = Vec::new();
//! window.drain(1432, |line, _kind, _values| lines.push(line.to_string()));
//! assert_eq!(
//!     lines,
//!     [
//!         "algorithmia.duration_milliseconds:12|g|#algorithm_version:1.0.6",
//!         "algorithmia.calls:2|c|#algorithm_version:1.0.6",
//!         "algorithmia.duration_milliseconds:9|g|#algorithm_version:1.0.7",
//!         "algorithmia.calls:1|c|#algorithm_version:1.0.7",
//!     ]
//! );
//! assert_eq!(window.take_folded(), 2, "one gauge superseded, one count added");
//! ```

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::dogstatsd::{push_line, MetricKind, Value};
use crate::hash::FastState;
use crate::metrics::PointSink;

/// Most distribution values one window buffers before it is closed early. At about 10 bytes a
/// value this bounds the buffered values to a few MiB, and at a million values a second it still
/// lets a window run for a quarter of a second.
pub const MAX_DISTRIBUTION_VALUES: usize = 250_000;

/// When a window opened at `now` (a monotonic and a wall-clock reading of the same instant) ends:
/// at the next wall-clock multiple of `interval`, so that windows line up with the Agent's
/// 10-second flushes and with every other forwarder's windows.
///
/// ```text
/// use std::time::{Duration, Instant, UNIX_EPOCH};
/// use algorithmia_datadog::aggregate::window_end;
///
/// let now = Instant::now();
/// let wall = UNIX_EPOCH + Duration::from_millis(1_700_000_003_250);
/// assert_eq!(window_end(Duration::from_secs(2), now, wall), now + Duration::from_millis(750));
/// ```
pub fn window_end(interval: Duration, now: Instant, wall: SystemTime) -> Instant {
    let interval_ms = interval.as_millis().max(1);
    let since_epoch_ms = wall
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis();
    let next = (since_epoch_ms / interval_ms + 1) * interval_ms;
    now + Duration::from_millis((next - since_epoch_ms) as u64)
}

/// Splits `:`-joined values into runs of at most `budget` bytes, between values; a value longer
/// than the budget is a run of its own. Yields each run and how many values it holds.
fn value_chunks(values: &str, budget: usize) -> impl Iterator<Item = (&str, usize)> {
    let mut rest = values;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let mut end = rest.find(':').unwrap_or(rest.len());
        let mut count = 1;
        while end < rest.len() {
            let next = rest[end + 1..]
                .find(':')
                .map_or(rest.len(), |i| end + 1 + i);
            if next > budget {
                break;
            }
            end = next;
            count += 1;
        }
        let chunk = &rest[..end];
        rest = rest.get(end + 1..).unwrap_or("");
        Some((chunk, count))
    })
}

/// How the points of one context combine.
#[derive(Debug)]
enum Accumulated {
    /// A gauge: the last value.
    Last(Value),
    /// A count: the sum.
    Sum(Value),
    /// A distribution: every value, written and joined with `:`.
    Values(String),
}

/// One context of a group: a metric name and kind, and what its points came to.
#[derive(Debug)]
struct Slot {
    name: Box<str>,
    kind: MetricKind,
    accumulated: Accumulated,
}

/// The contexts that share one tag set and timestamp.
#[derive(Debug)]
struct Group {
    tags: Box<str>,
    timestamp: Option<i64>,
    slots: Vec<Slot>,
    /// The first slot of each name (a name seen with two kinds has a second slot, found by a
    /// scan: that takes two fields whose names clean to the same, one a distribution).
    by_name: HashMap<Box<str>, usize, FastState>,
    /// Where the next point of the current message is likely to be: messages of one model list
    /// their fields in the same order, so this usually finds the slot without hashing.
    cursor: usize,
}

impl Group {
    fn new(tags: &str, timestamp: Option<i64>) -> Self {
        Group {
            tags: tags.into(),
            timestamp,
            slots: Vec::new(),
            by_name: HashMap::default(),
            cursor: 0,
        }
    }

    /// The slot of `name` and `kind`, if this window has one.
    fn find(&mut self, name: &str, kind: MetricKind) -> Option<usize> {
        let matches = |slot: &Slot| slot.kind == kind && &*slot.name == name;
        if self.slots.get(self.cursor).is_some_and(matches) {
            self.cursor += 1;
            return Some(self.cursor - 1);
        }
        let first = *self.by_name.get(name)?;
        let found = if matches(&self.slots[first]) {
            Some(first)
        } else {
            self.slots.iter().position(matches)
        };
        if let Some(i) = found {
            self.cursor = i + 1;
        }
        found
    }
}

/// The points of one aggregation window, folded per context. See the [module](self).
#[derive(Debug)]
pub struct Window {
    groups: Vec<Group>,
    /// Tag set → the groups with those tags (one per timestamp second).
    by_tags: HashMap<Box<str>, Vec<usize>, FastState>,
    /// The current message's tags and timestamp.
    tags: String,
    timestamp: Option<i64>,
    /// The current message's group for gauges and counts, and for distributions (which carry
    /// no timestamp); found on the message's first point of each.
    timed_group: Option<usize>,
    untimed_group: Option<usize>,
    contexts: usize,
    distribution_values: usize,
    max_contexts: usize,
    /// Values folded into another point since the last [`Window::take_folded`].
    folded: u64,
}

impl Window {
    /// An empty window that asks to be closed at `max_contexts` contexts.
    pub fn new(max_contexts: usize) -> Self {
        Window {
            groups: Vec::new(),
            by_tags: HashMap::default(),
            tags: String::new(),
            timestamp: None,
            timed_group: None,
            untimed_group: None,
            contexts: 0,
            distribution_values: 0,
            max_contexts: max_contexts.max(1),
            folded: 0,
        }
    }

    /// Whether the window holds no point.
    pub fn is_empty(&self) -> bool {
        self.contexts == 0
    }

    /// How many contexts the window holds.
    pub fn contexts(&self) -> usize {
        self.contexts
    }

    /// Whether the window reached one of its bounds and must be closed before the next message.
    pub fn is_full(&self) -> bool {
        self.contexts >= self.max_contexts || self.distribution_values >= MAX_DISTRIBUTION_VALUES
    }

    /// How many values were folded into another point of their window since the last call.
    pub fn take_folded(&mut self) -> u64 {
        std::mem::take(&mut self.folded)
    }

    fn group_for(&mut self, timestamp: Option<i64>) -> usize {
        let ids = match self.by_tags.get_mut(self.tags.as_str()) {
            Some(ids) => ids,
            None => self.by_tags.entry(self.tags.as_str().into()).or_default(),
        };
        let found = ids
            .iter()
            .copied()
            .find(|&i| self.groups[i].timestamp == timestamp);
        let id = match found {
            Some(id) => id,
            None => {
                let id = self.groups.len();
                ids.push(id);
                self.groups.push(Group::new(&self.tags, timestamp));
                id
            }
        };
        self.groups[id].cursor = 0;
        id
    }

    /// Writes every point as DogStatsD lines through `emit(line, kind, values in the line)`,
    /// then empties the window. A distribution whose values do not fit in one line of
    /// `max_datagram` bytes is split over several lines, between values; 0 writes each value on
    /// a line of its own (DogStatsD protocol 1.0).
    pub fn drain(&mut self, max_datagram: usize, mut emit: impl FnMut(&str, MetricKind, usize)) {
        let mut line = String::with_capacity(max_datagram);
        let mut value = String::with_capacity(32);
        for group in self.groups.drain(..) {
            for slot in &group.slots {
                match &slot.accumulated {
                    Accumulated::Last(v) | Accumulated::Sum(v) => {
                        value.clear();
                        v.write(&mut value);
                        line.clear();
                        push_line(
                            &mut line,
                            &slot.name,
                            &value,
                            slot.kind,
                            &group.tags,
                            group.timestamp,
                        );
                        emit(&line, slot.kind, 1);
                    }
                    Accumulated::Values(values) => {
                        let mut fixed = String::new();
                        push_line(&mut fixed, &slot.name, "", slot.kind, &group.tags, None);
                        let budget = max_datagram.saturating_sub(fixed.len());
                        for (chunk, count) in value_chunks(values, budget) {
                            line.clear();
                            push_line(&mut line, &slot.name, chunk, slot.kind, &group.tags, None);
                            emit(&line, slot.kind, count);
                        }
                    }
                }
            }
        }
        self.by_tags.clear();
        if self.by_tags.capacity() > 4096 {
            // A burst of distinct tag sets should not pin its memory for good.
            self.by_tags.shrink_to(4096);
        }
        self.timed_group = None;
        self.untimed_group = None;
        self.contexts = 0;
        self.distribution_values = 0;
    }
}

impl PointSink for Window {
    fn begin(&mut self, tags: &str, timestamp: Option<i64>) {
        self.tags.clear();
        self.tags.push_str(tags);
        self.timestamp = timestamp;
        self.timed_group = None;
        self.untimed_group = None;
    }

    fn point(&mut self, name: &str, kind: MetricKind, value: Value) {
        let group = if kind.takes_timestamp() {
            match self.timed_group {
                Some(g) => g,
                None => {
                    let g = self.group_for(self.timestamp);
                    self.timed_group = Some(g);
                    g
                }
            }
        } else {
            match self.untimed_group {
                Some(g) => g,
                None => {
                    let g = self.group_for(None);
                    self.untimed_group = Some(g);
                    g
                }
            }
        };
        let group = &mut self.groups[group];
        if let Some(i) = group.find(name, kind) {
            match &mut group.slots[i].accumulated {
                Accumulated::Last(last) => {
                    *last = value;
                    self.folded += 1;
                }
                Accumulated::Sum(sum) => {
                    *sum = sum.added(value);
                    self.folded += 1;
                }
                Accumulated::Values(values) => {
                    values.push(':');
                    value.write(values);
                    self.distribution_values += 1;
                }
            }
            return;
        }
        let accumulated = match kind {
            MetricKind::Gauge => Accumulated::Last(value),
            MetricKind::Count => Accumulated::Sum(value),
            MetricKind::Distribution => {
                let mut values = String::new();
                value.write(&mut values);
                self.distribution_values += 1;
                Accumulated::Values(values)
            }
        };
        let i = group.slots.len();
        group.slots.push(Slot {
            name: name.into(),
            kind,
            accumulated,
        });
        group.by_name.entry(name.into()).or_insert(i);
        group.cursor = i + 1;
        self.contexts += 1;
    }
}

#[cfg(test)]
mod tests;

/// The examples in this module's documentation, which name items outside the crate's surface.
#[cfg(test)]
mod doc_examples {
    #[test]
    fn doc_example_of_window_end() {
        use crate::aggregate::window_end;
        use std::time::{Duration, Instant, UNIX_EPOCH};

        let now = Instant::now();
        let wall = UNIX_EPOCH + Duration::from_millis(1_700_000_003_250);
        assert_eq!(
            window_end(Duration::from_secs(2), now, wall),
            now + Duration::from_millis(750)
        );
    }
}
