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
use std::hash::BuildHasher;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::dogstatsd::{push_line, MetricKind, Value};
use crate::hash::FastState;
use crate::metrics::{Interned, PointSink};

mod names;
use names::Names;

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

/// One context: a metric name and kind in a group, and what its points came to.
#[derive(Debug)]
struct Slot {
    /// A gauge's last value, or a count's sum; for a distribution, unused.
    value: Value,
    /// For a distribution, where its values are in [`Window::values`].
    values: u32,
    /// The name's index in [`Window::names`].
    name: u32,
    /// The group's next slot, in the order they were made; [`NONE`] for the last.
    next: u32,
    kind: MetricKind,
}

/// No slot or group.
const NONE: u32 = u32::MAX;

/// The contexts that share one tag set and timestamp.
#[derive(Debug)]
struct Group {
    /// The tag set, in [`Window::tag_text`].
    tags: (u32, u32),
    timestamp: Option<i64>,
    /// The group's slots in [`Window::slots`], as a list in the order they were made.
    first: u32,
    last: u32,
    /// Where the next point of the current message is likely to be: messages of one model list
    /// their fields in the same order, so this usually finds the slot without hashing.
    cursor: u32,
    /// The next group whose tag text hashes alike (the same tags at another second, or a
    /// collision).
    same_hash: u32,
}

/// Slots of the direct-mapped cache from a tag set's number and timestamp to its group.
const GROUP_CACHE_SLOTS: usize = 1024;

/// One entry of that cache: valid while `window` is the window's number.
#[derive(Debug, Clone, Copy)]
struct CachedGroup {
    tag_set: u64,
    timestamp: Option<i64>,
    window: u32,
    group: u32,
}

/// The points of one aggregation window, folded per context. See the [module](self).
///
/// Memory: a context is one [`Slot`] (32 bytes) and one entry of the slot index; a tag set's
/// text is kept once per window in one string, a metric name once per window.
#[derive(Debug)]
pub struct Window {
    groups: Vec<Group>,
    slots: Vec<Slot>,
    /// Every group's tag set, one after the other.
    tag_text: String,
    /// Hash of a tag set's text → the first group with a text of that hash.
    group_by_hash: HashMap<u64, u32, FastState>,
    /// (tag set's number, timestamp) → group, by the number's low bits.
    group_cache: Vec<CachedGroup>,
    /// This window's number, which makes the group cache's older entries stale.
    window: u32,
    /// (group, name, kind) → slot, for a point that is not where the group's cursor is.
    slot_by_key: HashMap<u64, u32, FastState>,
    names: Names,
    /// Every distribution context's values, written and joined with `:`.
    values: Vec<String>,
    /// The current message's tags and timestamp.
    tags: String,
    tag_set: u64,
    timestamp: Option<i64>,
    /// The current message's group for gauges and counts, and for distributions (which carry
    /// no timestamp); found on the message's first point of each.
    timed_group: Option<u32>,
    untimed_group: Option<u32>,
    contexts: usize,
    distribution_values: usize,
    max_contexts: usize,
    /// Values folded into another point since the last [`Window::take_folded`].
    folded: u64,
}

/// Most entries the window's tables keep allocated once drained: a burst of distinct contexts
/// should not pin its memory for good.
const KEPT_CAPACITY: usize = 4096;

impl Window {
    /// An empty window that asks to be closed at `max_contexts` contexts.
    pub fn new(max_contexts: usize) -> Self {
        Window {
            groups: Vec::new(),
            slots: Vec::new(),
            tag_text: String::new(),
            group_by_hash: HashMap::default(),
            group_cache: vec![
                CachedGroup {
                    tag_set: 0,
                    timestamp: None,
                    window: 0,
                    group: NONE,
                };
                GROUP_CACHE_SLOTS
            ],
            window: 1,
            slot_by_key: HashMap::default(),
            names: Names::default(),
            values: Vec::new(),
            tags: String::new(),
            tag_set: 0,
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

    fn tags_of(&self, group: &Group) -> &str {
        &self.tag_text[group.tags.0 as usize..group.tags.1 as usize]
    }

    /// Where the current tag set's group at `timestamp` is in the group cache, and the group
    /// if the cache has it.
    fn cached_group(&self, timestamp: Option<i64>) -> (usize, Option<u32>) {
        let slot = (self.tag_set
            ^ timestamp.map_or(0, |t| (t as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)))
            as usize
            & (GROUP_CACHE_SLOTS - 1);
        let cached = self.group_cache[slot];
        let hit = self.tag_set != 0
            && cached.tag_set == self.tag_set
            && cached.timestamp == timestamp
            && cached.window == self.window;
        (slot, hit.then_some(cached.group))
    }

    /// The current message's group at `timestamp`, made if new; its cursor at its first slot.
    fn group_for(&mut self, timestamp: Option<i64>) -> u32 {
        let id = match self.cached_group(timestamp) {
            (_, Some(id)) => id,
            (slot, None) => {
                let id = self.group_by_text(timestamp);
                if self.tag_set != 0 {
                    self.group_cache[slot] = CachedGroup {
                        tag_set: self.tag_set,
                        timestamp,
                        window: self.window,
                        group: id,
                    };
                }
                id
            }
        };
        let group = &mut self.groups[id as usize];
        group.cursor = group.first;
        id
    }

    /// [`Window::group_for`] by the text of the current tags.
    #[cold]
    fn group_by_text(&mut self, timestamp: Option<i64>) -> u32 {
        let hash = self.group_by_hash.hasher().hash_one(self.tags.as_str());
        let mut tags = None;
        let mut at = self.group_by_hash.get(&hash).copied().unwrap_or(NONE);
        while at != NONE {
            let group = &self.groups[at as usize];
            if self.tags_of(group) == self.tags {
                if group.timestamp == timestamp {
                    return at;
                }
                tags = Some(group.tags);
            }
            at = group.same_hash;
        }
        let tags = tags.unwrap_or_else(|| {
            let start = self.tag_text.len() as u32;
            self.tag_text.push_str(&self.tags);
            (start, self.tag_text.len() as u32)
        });
        let id = self.groups.len() as u32;
        let same_hash = self.group_by_hash.insert(hash, id).unwrap_or(NONE);
        self.groups.push(Group {
            tags,
            timestamp,
            first: NONE,
            last: NONE,
            cursor: NONE,
            same_hash,
        });
        id
    }

    /// Writes every point as DogStatsD lines through `emit(line, kind, values in the line)`,
    /// then empties the window. A distribution whose values do not fit in one line of
    /// `max_datagram` bytes is split over several lines, between values; 0 writes each value on
    /// a line of its own (DogStatsD protocol 1.0).
    pub fn drain(&mut self, max_datagram: usize, mut emit: impl FnMut(&str, MetricKind, usize)) {
        let mut line = String::with_capacity(max_datagram);
        let mut value = String::with_capacity(32);
        for group in &self.groups {
            let tags = self.tags_of(group);
            let mut at = group.first;
            while at != NONE {
                let slot = &self.slots[at as usize];
                at = slot.next;
                let name = self.names.text(slot.name);
                if slot.kind != MetricKind::Distribution {
                    value.clear();
                    slot.value.write(&mut value);
                    line.clear();
                    push_line(&mut line, name, &value, slot.kind, tags, group.timestamp);
                    emit(&line, slot.kind, 1);
                    continue;
                }
                let mut fixed = String::new();
                push_line(&mut fixed, name, "", slot.kind, tags, None);
                let budget = max_datagram.saturating_sub(fixed.len());
                for (chunk, count) in value_chunks(&self.values[slot.values as usize], budget) {
                    line.clear();
                    push_line(&mut line, name, chunk, slot.kind, tags, None);
                    emit(&line, slot.kind, count);
                }
            }
        }
        self.groups.clear();
        self.slots.clear();
        self.tag_text.clear();
        self.group_by_hash.clear();
        self.slot_by_key.clear();
        self.values.clear();
        self.names.clear();
        if self.slots.capacity() > KEPT_CAPACITY * 8 {
            self.groups.shrink_to(KEPT_CAPACITY);
            self.slots.shrink_to(KEPT_CAPACITY * 8);
            self.tag_text.shrink_to(KEPT_CAPACITY * 64);
            self.group_by_hash.shrink_to(KEPT_CAPACITY);
            self.slot_by_key.shrink_to(KEPT_CAPACITY * 8);
            self.values.shrink_to(KEPT_CAPACITY);
        }
        self.window = self.window.wrapping_add(1);
        if self.window == 0 {
            // Every 2^32 windows: no entry of a window of the same number may survive.
            for entry in &mut self.group_cache {
                entry.window = 0;
            }
            self.window = 1;
        }
        self.timed_group = None;
        self.untimed_group = None;
        self.contexts = 0;
        self.distribution_values = 0;
    }
}

/// The slot index's key of a name and kind in a group.
fn slot_key(group: u32, name: u32, kind: MetricKind) -> u64 {
    (u64::from(group) << 32) | (u64::from(name) << 2) | kind as u64
}

impl PointSink for Window {
    fn begin(&mut self, tags: &str, timestamp: Option<i64>) {
        self.begin_tag_set(Interned::text(tags), timestamp);
    }

    fn point(&mut self, name: &str, kind: MetricKind, value: Value) {
        self.point_named(Interned::text(name), kind, value);
    }

    fn begin_tag_set(&mut self, tags: Interned<'_>, timestamp: Option<i64>) {
        self.tag_set = tags.id;
        self.timestamp = timestamp;
        // Groups the cache knows are taken now (they exist: nothing is made out of order); the
        // text is kept only for a group it does not know.
        let reset = |groups: &mut Vec<Group>, id: u32| {
            let group = &mut groups[id as usize];
            group.cursor = group.first;
            id
        };
        self.timed_group = self
            .cached_group(timestamp)
            .1
            .map(|id| reset(&mut self.groups, id));
        self.untimed_group = match timestamp {
            None => self.timed_group,
            Some(_) => self
                .cached_group(None)
                .1
                .map(|id| reset(&mut self.groups, id)),
        };
        if self.timed_group.is_none() || self.untimed_group.is_none() {
            self.tags.clear();
            self.tags.push_str(tags.text);
        }
    }

    #[inline]
    fn point_named(&mut self, name: Interned<'_>, kind: MetricKind, value: Value) {
        let group = match (kind.takes_timestamp(), self.timed_group, self.untimed_group) {
            (true, Some(g), _) | (false, _, Some(g)) => g,
            _ => self.message_group(kind),
        };
        let name = self.names.index(name);
        // The common case inline: a gauge or count where the group's cursor points.
        let cursor = self.groups[group as usize].cursor;
        if let Some(slot) = self.slots.get_mut(cursor as usize) {
            if slot.name == name && slot.kind == kind && kind != MetricKind::Distribution {
                slot.value = match kind {
                    MetricKind::Count => slot.value.added(value),
                    _ => value,
                };
                self.groups[group as usize].cursor = slot.next;
                self.folded += 1;
                return;
            }
        }
        self.point_elsewhere(group, name, kind, value);
    }
}

impl Window {
    /// The current message's group for points of `kind`, found on its first such point.
    #[cold]
    fn message_group(&mut self, kind: MetricKind) -> u32 {
        if kind.takes_timestamp() {
            let g = self.group_for(self.timestamp);
            self.timed_group = Some(g);
            g
        } else {
            let g = self.group_for(None);
            self.untimed_group = Some(g);
            g
        }
    }

    /// A point that is not a gauge or count at the group's cursor: found through the slot
    /// index, or a new context.
    fn point_elsewhere(&mut self, group: u32, name: u32, kind: MetricKind, value: Value) {
        let cursor = self.groups[group as usize].cursor;
        let found = match self.slots.get(cursor as usize) {
            Some(slot) if slot.name == name && slot.kind == kind => Some(cursor),
            _ => self.slot_by_key.get(&slot_key(group, name, kind)).copied(),
        };
        if let Some(at) = found {
            let slot = &mut self.slots[at as usize];
            self.groups[group as usize].cursor = slot.next;
            match kind {
                MetricKind::Gauge => {
                    slot.value = value;
                    self.folded += 1;
                }
                MetricKind::Count => {
                    slot.value = slot.value.added(value);
                    self.folded += 1;
                }
                MetricKind::Distribution => {
                    let values = &mut self.values[slot.values as usize];
                    values.push(':');
                    value.write(values);
                    self.distribution_values += 1;
                }
            }
            return;
        }
        let mut values = NONE;
        if kind == MetricKind::Distribution {
            let mut text = String::new();
            value.write(&mut text);
            values = self.values.len() as u32;
            self.values.push(text);
            self.distribution_values += 1;
        }
        let at = self.slots.len() as u32;
        self.slots.push(Slot {
            value,
            values,
            name,
            next: NONE,
            kind,
        });
        self.slot_by_key.insert(slot_key(group, name, kind), at);
        let group = &mut self.groups[group as usize];
        match group.last {
            NONE => group.first = at,
            last => self.slots[last as usize].next = at,
        }
        group.last = at;
        group.cursor = NONE;
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
