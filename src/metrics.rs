//! The mapping rules: which fields of a decoded message become points (gauges, or distributions
//! for the fields `distribution_metrics` names), under which name, with which tags and which
//! timestamp, plus one call count per message; and how a point is written as a DogStatsD line.
//!
//! Every name and tag value that comes from a message is cleaned here, so that no input can end a
//! tag (`,`), a field (`|`), start a tag list (`#`) or start a second metric (a line break).
//! Names and tags are built in buffers the mapper keeps, so a point costs no allocation. The
//! points go to a [`PointSink`]: the aggregation window ([`crate::aggregate`]) or, as below, one
//! line per point.
//!
//! ```
//! use algorithmia_datadog::decode;
//! use algorithmia_datadog::metrics::MetricMapper;
//! use algorithmia_datadog::Counters;
//!
//! let mut mapper = MetricMapper::builder("algorithmia").build();
//! let message = decode(br#"{"risk_score":0.2,"algorithm_name":"credit_card_approval"}"#).unwrap();
//! let mut lines = Vec::new();
//! mapper
//!     .map_message(&message, &Counters::default(), |line| {
//!         lines.push(line.to_string());
//!         Ok::<_, ()>(())
//!     })
//!     .unwrap();
//! assert_eq!(
//!     lines,
//!     [
//!         "algorithmia.risk_score:0.2|g|#algorithm_name:credit_card_approval",
//!         "algorithmia.calls:1|c|#algorithm_name:credit_card_approval",
//!     ]
//! );
//! ```

use std::collections::HashMap;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::config::{Instance, Mapping};
use crate::decode::{FieldValue, InsightsMessage};
use crate::dogstatsd::{push_metric_name, push_tag_value, LineWriter, MAX_NAME_CHARS};
use crate::dogstatsd::{MetricKind, Value};
use crate::hash::{short_eq, FastState};
use crate::telemetry::{Counters, SkipReason, TimestampIssue};

mod context;
pub use context::Interned;
use context::{fresh_id, TagSets};

/// Most field names whose rule the mapper remembers; past it, it starts over (a topic whose
/// field names never repeat costs the rules' work on every field, and no memory).
const MAX_REMEMBERED_FIELDS: usize = 4096;

/// How many first fields' rules the mapper tries before looking a first field's name up.
const FIRST_RULES: usize = 4;

/// No rule (see [`FieldRule::next`]).
const NO_RULE: usize = usize::MAX;

/// What the mapping rules make of a field, whatever its value: worked out once per field name
/// (operational fields, filters, name cleaning, the reserved name, distribution globs, tags)
/// rather than on every message.
#[derive(Debug, Clone)]
struct FieldRule {
    /// The field's name.
    field: Box<str>,
    /// Its place in `tag_fields` (the first, if it is listed twice).
    tag: Option<usize>,
    /// The number that stands for its metric name (see [`Interned`]).
    name_id: u64,
    /// Whether it is the timestamp field.
    timestamp: bool,
    action: Action,
    /// The rule of the field that came next the last time this one was seen: messages of one
    /// model list their fields in the same order, so this finds the next field's rule with one
    /// comparison, without hashing.
    next: usize,
}

/// What becomes of a field's value.
#[derive(Debug, Clone)]
pub(crate) enum Action {
    /// Never a metric, not counted as skipped.
    Operational,
    /// Skipped for a reason of its name, once its value is a number.
    Skip(SkipReason),
    /// A point: its full metric name and kind.
    Metric { name: Box<str>, kind: MetricKind },
}

/// The backend drops points older than this (seconds).
pub const MAX_TIMESTAMP_AGE_SECS: i64 = 3600;
/// The backend drops points further ahead than this (seconds).
pub const MAX_TIMESTAMP_LEAD_SECS: i64 = 600;

/// Turns decoded messages into DogStatsD points (gauges, distributions, call counts). Build it once per instance with
/// [`MetricMapper::builder`] or [`MetricMapper::for_instance`].
#[derive(Debug, Clone)]
pub struct MetricMapper {
    /// `<prefix>.`
    name_prefix: String,
    operational_fields: Vec<String>,
    tag_fields: Vec<String>,
    /// Static tags joined with `,`, appended after the tag fields.
    static_tags: String,
    numeric_strings: bool,
    booleans: bool,
    include: Vec<String>,
    exclude: Vec<String>,
    /// Glob patterns of the fields sent as distributions.
    distributions: Vec<String>,
    /// `<prefix>.calls`, and the number that stands for it.
    calls_name: String,
    calls_id: u64,
    send_timestamps: bool,
    timestamp_field: String,
    /// Fixed "now" for tests; `None` reads the clock.
    clock: Option<i64>,
    // Scratch buffers reused for every message.
    tags: String,
    /// The tag sets rendered lately, by their raw values.
    tag_sets: TagSets,
    name: String,
    /// The rule of each field name seen lately: an index into `rules`.
    rule_of: HashMap<Box<str>, usize, FastState>,
    rules: Vec<FieldRule>,
    /// The rules of the first fields of the last messages, the latest first: a topic's models
    /// take turns, each listing its fields in its own order.
    first_rules: [usize; FIRST_RULES],
    /// For each of `tag_fields`, the first of them with the same name (a name listed twice
    /// takes the same value twice).
    tag_first: Vec<usize>,
    // Per message: the rule of each field, and where each tag and the timestamp are.
    field_rules: Vec<usize>,
    tag_at: Vec<Option<usize>>,
}

/// Builder for [`MetricMapper`]; every setting starts at the configuration file's default.
#[derive(Debug, Clone)]
pub struct MetricMapperBuilder {
    mapper: MetricMapper,
}

impl MetricMapperBuilder {
    /// Fields that are never metrics.
    pub fn operational_fields<S: Into<String>>(
        mut self,
        fields: impl IntoIterator<Item = S>,
    ) -> Self {
        self.mapper.operational_fields = fields.into_iter().map(Into::into).collect();
        self
    }
    /// Fields whose values become tags.
    pub fn tag_fields<S: Into<String>>(mut self, fields: impl IntoIterator<Item = S>) -> Self {
        self.mapper.tag_fields = fields.into_iter().map(Into::into).collect();
        self
    }
    /// Tags added to every point, after the tag fields.
    pub fn static_tags<S: AsRef<str>>(mut self, tags: impl IntoIterator<Item = S>) -> Self {
        let tags: Vec<String> = tags.into_iter().map(|t| t.as_ref().to_string()).collect();
        self.mapper.static_tags = tags.join(",");
        self
    }
    /// Whether `"4.2"` counts as 4.2.
    pub fn numeric_strings(mut self, yes: bool) -> Self {
        self.mapper.numeric_strings = yes;
        self
    }
    /// Whether booleans count as 1/0.
    pub fn booleans(mut self, yes: bool) -> Self {
        self.mapper.booleans = yes;
        self
    }
    /// Glob patterns a field must match (any); empty means all.
    pub fn include<S: Into<String>>(mut self, patterns: impl IntoIterator<Item = S>) -> Self {
        self.mapper.include = patterns.into_iter().map(Into::into).collect();
        self
    }
    /// Glob patterns a field must not match.
    pub fn exclude<S: Into<String>>(mut self, patterns: impl IntoIterator<Item = S>) -> Self {
        self.mapper.exclude = patterns.into_iter().map(Into::into).collect();
        self
    }
    /// Glob patterns (on the bare field name) of the fields sent as distributions.
    pub fn distributions<S: Into<String>>(mut self, patterns: impl IntoIterator<Item = S>) -> Self {
        self.mapper.distributions = patterns.into_iter().map(Into::into).collect();
        self
    }
    /// Attach `|T<seconds>` from `field`.
    pub fn send_timestamps(mut self, yes: bool, field: impl Into<String>) -> Self {
        self.mapper.send_timestamps = yes;
        self.mapper.timestamp_field = field.into();
        self
    }
    /// Use this Unix time as "now" when judging timestamps (tests).
    pub fn fixed_clock(mut self, unix_seconds: i64) -> Self {
        self.mapper.clock = Some(unix_seconds);
        self
    }
    /// Finishes the mapper.
    pub fn build(mut self) -> MetricMapper {
        let tags = &self.mapper.tag_fields;
        self.mapper.tag_first = (0..tags.len())
            .map(|j| tags.iter().position(|t| *t == tags[j]).unwrap_or(j))
            .collect();
        self.mapper
    }
}

impl MetricMapper {
    /// A builder with the file's defaults and this metric prefix (no trailing dot).
    pub fn builder(prefix: &str) -> MetricMapperBuilder {
        MetricMapper::builder_from(prefix, Mapping::default())
    }

    /// A builder with these mapping rules and this metric prefix (no trailing dot).
    pub fn builder_from(prefix: &str, mapping: Mapping) -> MetricMapperBuilder {
        let Mapping {
            tag_fields,
            operational_fields,
            numeric_strings,
            booleans,
            include_metrics,
            exclude_metrics,
            distribution_metrics,
            send_timestamps,
            timestamp_field,
        } = mapping;
        MetricMapperBuilder {
            mapper: MetricMapper {
                name_prefix: format!("{prefix}."),
                operational_fields,
                tag_fields,
                static_tags: String::new(),
                numeric_strings,
                booleans,
                include: include_metrics,
                exclude: exclude_metrics,
                distributions: distribution_metrics,
                calls_name: format!("{prefix}.calls"),
                calls_id: fresh_id(),
                send_timestamps,
                timestamp_field,
                clock: None,
                tags: String::with_capacity(256),
                tag_sets: TagSets::default(),
                name: String::with_capacity(256),
                rule_of: HashMap::default(),
                rules: Vec::new(),
                first_rules: [NO_RULE; FIRST_RULES],
                tag_first: Vec::new(),
                field_rules: Vec::new(),
                tag_at: Vec::new(),
            },
        }
    }

    /// The mapper an instance's configuration describes.
    pub fn for_instance(prefix: &str, instance: &Instance) -> MetricMapper {
        MetricMapper::builder_for_instance(prefix, instance).build()
    }

    /// A builder set up as the instance's configuration describes, for what a file cannot say
    /// (a fixed clock in tests and fuzz targets).
    pub fn builder_for_instance(prefix: &str, instance: &Instance) -> MetricMapperBuilder {
        MetricMapper::builder_from(prefix, instance.mapping.clone()).static_tags(&instance.tags)
    }

    /// Writes one DogStatsD line per point of `message`, in field order, through `emit`: what
    /// `aggregation_interval: 0` sends for one message.
    ///
    /// Returns how many metric fields the message held. Skipped fields and timestamp problems
    /// are counted in `counters`; `emit`'s first error stops the message and is returned.
    pub fn map_message<E>(
        &mut self,
        message: &InsightsMessage<'_>,
        counters: &Counters,
        emit: impl FnMut(&str) -> Result<(), E>,
    ) -> Result<usize, E> {
        let mut lines = EachPointLines {
            writer: LineWriter::default(),
            emit,
            error: None,
        };
        let fields = self.map_points(message, counters, &mut lines);
        match lines.error {
            Some(e) => Err(e),
            None => Ok(fields),
        }
    }

    /// Hands every point of `message` to `points`: one per metric field, in field order, then
    /// the message's call count (`<prefix>.calls`, 1).
    ///
    /// Returns how many metric fields the message held. Skipped fields and timestamp problems
    /// are counted in `counters`.
    pub fn map_points(
        &mut self,
        message: &InsightsMessage<'_>,
        counters: &Counters,
        points: &mut impl PointSink,
    ) -> usize {
        if self.rules.len() >= MAX_REMEMBERED_FIELDS {
            // Between messages, so that no rule of the message at hand goes.
            self.rules.clear();
            self.rule_of.clear();
            self.first_rules = [NO_RULE; FIRST_RULES];
        }
        // First the rules of the fields, and where the tags and the timestamp are.
        self.field_rules.clear();
        self.tag_at.clear();
        self.tag_at.resize(self.tag_fields.len(), None);
        let mut timestamp_at = None;
        let mut previous = None;
        for (i, field) in message.fields.iter().enumerate() {
            let rule = self.rule(previous, field.name.as_ref());
            previous = Some(rule);
            self.field_rules.push(rule);
            let rule = &self.rules[rule];
            if let Some(t) = rule.tag {
                // The first field of a name gives its tag, as `InsightsMessage::get` would.
                self.tag_at[t].get_or_insert(i);
            }
            if rule.timestamp && timestamp_at.is_none() {
                timestamp_at = Some(i);
            }
        }
        // The tag set, rendered only the first time these raw values are seen.
        self.tag_sets.new_key();
        for &first in &self.tag_first {
            let value = self.tag_at[first].map(|at| &message.fields[at].value);
            self.tag_sets.key_value(value);
        }
        let tag_set = match self.tag_sets.find() {
            Some(at) => at,
            None => {
                self.build_tags(message);
                self.tag_sets.insert(&self.tags)
            }
        };
        let timestamp = if self.send_timestamps {
            match self.timestamp_of(timestamp_at.map(|i| &message.fields[i].value)) {
                Ok(ts) => Some(ts),
                Err(issue) => {
                    counters.timestamp_issue(issue);
                    None
                }
            }
        } else {
            None
        };
        points.begin_tag_set(self.tag_sets.get(tag_set), timestamp);

        let mut metrics = 0;
        for (field, &rule) in message.fields.iter().zip(&self.field_rules) {
            let FieldRule {
                action, name_id, ..
            } = &self.rules[rule];
            if let Action::Operational = action {
                continue;
            }
            let value = match self.value_of(&field.value) {
                Ok(v) => v,
                Err(reason) => {
                    counters.skip(reason);
                    continue;
                }
            };
            match action {
                Action::Metric { name, kind } => {
                    let name = Interned {
                        id: *name_id,
                        text: name,
                    };
                    points.point_named(name, *kind, value);
                    metrics += 1;
                }
                Action::Skip(reason) => counters.skip(*reason),
                Action::Operational => {}
            }
        }
        let calls = Interned {
            id: self.calls_id,
            text: &self.calls_name,
        };
        points.point_named(calls, MetricKind::Count, Value::UInt(1));
        if metrics == 0 {
            counters
                .messages_without_metrics
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        metrics
    }

    /// The index in `rules` of the rule of field `field_name`, which follows the field whose
    /// rule is `previous` (`None` for the first field); worked out if the name is new.
    #[inline]
    fn rule(&mut self, previous: Option<usize>, field_name: &str) -> usize {
        let guess = match previous {
            Some(p) => self.rules[p].next,
            None => self.first_rules[0],
        };
        if self
            .rules
            .get(guess)
            .is_some_and(|r| short_eq(&r.field, field_name))
        {
            return guess;
        }
        self.rule_looked_up(previous, field_name)
    }

    /// [`MetricMapper::rule`] when the field is not the one that came next last time.
    #[cold]
    fn rule_looked_up(&mut self, previous: Option<usize>, field_name: &str) -> usize {
        if previous.is_none() {
            let recent = self.first_rules[1..].iter().position(|&r| {
                self.rules
                    .get(r)
                    .is_some_and(|r| short_eq(&r.field, field_name))
            });
            if let Some(at) = recent {
                // The latest first, the others in order.
                self.first_rules[..at + 2].rotate_right(1);
                return self.first_rules[0];
            }
        }
        let found = match self.rule_of.get(field_name) {
            Some(&i) => i,
            None => {
                let rule = self.rule_for(field_name);
                self.rules.push(rule);
                self.rule_of.insert(field_name.into(), self.rules.len() - 1);
                self.rules.len() - 1
            }
        };
        match previous {
            Some(p) => self.rules[p].next = found,
            None => {
                self.first_rules.rotate_right(1);
                self.first_rules[0] = found;
            }
        }
        found
    }

    /// The rules that depend on a field's name only (its value is judged in between the
    /// operational fields and the others: see [`MetricMapper::map_points`]).
    fn rule_for(&mut self, field_name: &str) -> FieldRule {
        let action = self.action_for(field_name);
        FieldRule {
            field: field_name.into(),
            tag: self.tag_fields.iter().position(|t| t == field_name),
            name_id: fresh_id(),
            timestamp: self.send_timestamps && self.timestamp_field == field_name,
            action,
            next: NO_RULE,
        }
    }

    pub(crate) fn action_for(&mut self, field_name: &str) -> Action {
        if self.operational_fields.iter().any(|f| f == field_name) {
            return Action::Operational;
        }
        if !self.passes_filters(field_name) {
            return Action::Skip(SkipReason::Filtered);
        }
        if !field_name.chars().any(|c| c.is_ascii_alphanumeric()) {
            return Action::Skip(SkipReason::InvalidName);
        }
        self.name.clear();
        push_metric_name(&mut self.name, &self.name_prefix, field_name);
        if self.name == self.calls_name {
            // The call count owns this name: a field of the same name would corrupt it.
            return Action::Skip(SkipReason::ReservedName);
        }
        let kind = if self.is_distribution(field_name) {
            MetricKind::Distribution
        } else {
            MetricKind::Gauge
        };
        Action::Metric {
            name: self.name.as_str().into(),
            kind,
        }
    }

    /// The name of the per-model call count, `<prefix>.calls`.
    pub fn calls_name(&self) -> &str {
        &self.calls_name
    }

    fn is_distribution(&self, field: &str) -> bool {
        !self.distributions.is_empty() && self.distributions.iter().any(|p| glob_match(p, field))
    }

    /// The message's tags, from the tag fields the first pass found.
    fn build_tags(&mut self, message: &InsightsMessage<'_>) {
        self.tags.clear();
        for (key, &first) in self.tag_fields.iter().zip(&self.tag_first) {
            let Some(at) = self.tag_at[first] else {
                continue;
            };
            let value = &message.fields[at].value;
            let start = self.tags.len();
            if start > 0 {
                self.tags.push(',');
            }
            let value_start = self.tags.len() + key.len() + 1;
            self.tags.push_str(key);
            self.tags.push(':');
            let budget = MAX_NAME_CHARS.saturating_sub(key.len() + 1);
            let (mut int, mut float) = (itoa::Buffer::new(), ryu::Buffer::new());
            let whole = match value {
                FieldValue::Str(s) => {
                    push_tag_value(&mut self.tags, s, budget);
                    None
                }
                FieldValue::UInt(v) => Some(int.format(*v)),
                FieldValue::Int(v) => Some(int.format(*v)),
                FieldValue::Float(v) if v.is_finite() => Some(float.format_finite(*v)),
                FieldValue::Bool(v) => Some(if *v { "true" } else { "false" }),
                _ => None,
            };
            // A number cut to fit would be another number: one that does not fit is left out
            // (only a tag field name of more than 175 bytes, which the configuration refuses,
            // leaves too little room).
            if let Some(whole) = whole.filter(|w| w.len() <= budget) {
                self.tags.push_str(whole);
            }
            // A tag may not end with ':' : a field with no usable value is left out.
            if self.tags.len() == value_start {
                self.tags.truncate(start);
            }
        }
        if !self.static_tags.is_empty() {
            if !self.tags.is_empty() {
                self.tags.push(',');
            }
            self.tags.push_str(&self.static_tags);
        }
    }

    pub(crate) fn value_of(&self, value: &FieldValue<'_>) -> Result<Value, SkipReason> {
        match value {
            FieldValue::UInt(v) => Ok(Value::UInt(*v)),
            FieldValue::Int(v) => Ok(Value::Int(*v)),
            FieldValue::Float(v) if v.is_finite() => Ok(Value::Float(*v)),
            FieldValue::Float(_) => Err(SkipReason::NonFinite),
            FieldValue::Bool(b) if self.booleans => Ok(Value::UInt(u64::from(*b))),
            FieldValue::Bool(_) => Err(SkipReason::Boolean),
            FieldValue::Str(s) if self.numeric_strings => parse_numeric_string(s),
            FieldValue::Str(_) => Err(SkipReason::String),
            FieldValue::Null => Err(SkipReason::Null),
            FieldValue::Array => Err(SkipReason::Array),
            FieldValue::Object => Err(SkipReason::Object),
        }
    }

    fn passes_filters(&self, name: &str) -> bool {
        (self.include.is_empty() || self.include.iter().any(|p| glob_match(p, name)))
            && !self.exclude.iter().any(|p| glob_match(p, name))
    }

    /// The message's time, from the value of its (first) timestamp field.
    fn timestamp_of(&self, value: Option<&FieldValue<'_>>) -> Result<i64, TimestampIssue> {
        let value = value.ok_or(TimestampIssue::Missing)?;
        let ts = parse_timestamp(value).ok_or(TimestampIssue::Unparseable)?;
        let now = self.clock.unwrap_or_else(unix_now);
        if ts < now - MAX_TIMESTAMP_AGE_SECS || ts > now + MAX_TIMESTAMP_LEAD_SECS {
            return Err(TimestampIssue::OutOfWindow);
        }
        Ok(ts)
    }
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Receives the points of mapped messages: what comes after the mapping rules (a window that
/// aggregates them, or lines sent one per point).
pub trait PointSink {
    /// The points that follow, up to the next `begin`, share these tags (already cleaned, joined
    /// with `,`; empty for none) and this timestamp (Unix seconds).
    fn begin(&mut self, tags: &str, timestamp: Option<i64>);
    /// One point: its full metric name (prefix included, cleaned), kind and value.
    fn point(&mut self, name: &str, kind: MetricKind, value: Value);

    /// [`PointSink::begin`], with the number that stands for the tag set: a sink that keys
    /// anything on the tag set can key it on the number (see [`Interned`]).
    fn begin_tag_set(&mut self, tags: Interned<'_>, timestamp: Option<i64>) {
        self.begin(tags.text, timestamp);
    }

    /// [`PointSink::point`], with the number that stands for the name.
    fn point_named(&mut self, name: Interned<'_>, kind: MetricKind, value: Value) {
        self.point(name.text, kind, value);
    }
}

/// The line-per-point sink behind [`MetricMapper::map_message`].
struct EachPointLines<F, E> {
    writer: LineWriter,
    emit: F,
    error: Option<E>,
}

impl<F: FnMut(&str) -> Result<(), E>, E> PointSink for EachPointLines<F, E> {
    fn begin(&mut self, tags: &str, timestamp: Option<i64>) {
        self.writer.begin(tags, timestamp);
    }

    fn point(&mut self, name: &str, kind: MetricKind, value: Value) {
        if self.error.is_some() {
            return;
        }
        if let Err(e) = (self.emit)(self.writer.render(name, kind, value)) {
            self.error = Some(e);
        }
    }
}

pub(crate) fn parse_numeric_string(s: &str) -> Result<Value, SkipReason> {
    let s = s.trim();
    if let Ok(v) = s.parse::<u64>() {
        return Ok(Value::UInt(v));
    }
    if let Ok(v) = s.parse::<i64>() {
        return Ok(Value::Int(v));
    }
    // Rust also accepts words such as "inf" and "NaN"; a number must start like one.
    let starts_like_a_number = s
        .trim_start_matches(['+', '-'])
        .starts_with(|c: char| c.is_ascii_digit() || c == '.');
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && starts_like_a_number => Ok(Value::Float(v)),
        Ok(_) => Err(SkipReason::NonFinite),
        Err(_) => {
            let word = s.trim_start_matches(['+', '-']).to_ascii_lowercase();
            if matches!(word.as_str(), "nan" | "inf" | "infinity") {
                Err(SkipReason::NonFinite)
            } else {
                Err(SkipReason::String)
            }
        }
    }
}

/// Shell-style glob on a field name: `*` any run, `?` one character.
pub fn glob_match(pattern: &str, name: &str) -> bool {
    let (p, n): (Vec<char>, Vec<char>) = (pattern.chars().collect(), name.chars().collect());
    let (mut pi, mut ni) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == n[ni]) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ni));
            pi += 1;
        } else if let Some((sp, sn)) = star {
            pi = sp + 1;
            ni = sn + 1;
            star = Some((sp, sn + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

/// Reads a message time as Unix seconds: an ISO-8601 string (no offset means UTC), or epoch
/// seconds or milliseconds as a number.
pub fn parse_timestamp(value: &FieldValue<'_>) -> Option<i64> {
    // Epoch values above this are milliseconds (1e11 seconds is the year 5138).
    const MILLIS_THRESHOLD: f64 = 1e11;
    let epoch = |v: f64| -> Option<i64> {
        if !v.is_finite() || v < 0.0 {
            return None;
        }
        Some(if v >= MILLIS_THRESHOLD {
            (v / 1000.0) as i64
        } else {
            v as i64
        })
    };
    match value {
        FieldValue::UInt(v) => epoch(*v as f64),
        FieldValue::Float(v) => epoch(*v),
        FieldValue::Str(s) => parse_iso8601(s.trim()),
        _ => None,
    }
}

/// `YYYY-MM-DD[T ]HH:MM:SS[.fraction][Z|±HH:MM|±HHMM|±HH]`.
pub fn parse_iso8601(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    let digits = |range: std::ops::Range<usize>| digits_of(b.get(range)?);
    if b.len() < 19
        || b[4] != b'-'
        || b[7] != b'-'
        || !matches!(b[10], b'T' | b't' | b' ')
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let (year, month, day) = (digits(0..4)?, digits(5..7)?, digits(8..10)?);
    let (hour, minute, second) = (digits(11..13)?, digits(14..16)?, digits(17..19)?);
    if !(1..=12).contains(&month)
        || day < 1
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let mut rest = &s[19..];
    if let Some(frac) = rest.strip_prefix(['.', ',']) {
        let end = frac
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(frac.len());
        if end == 0 {
            return None;
        }
        rest = &frac[end..];
    }
    let offset_secs = match rest {
        "" | "Z" | "z" => 0,
        _ => {
            let sign = match rest.as_bytes()[0] {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            let tz = &rest.as_bytes()[1..];
            let (h, m) = match tz.len() {
                2 => (digits_of(tz)?, 0),
                4 => (digits_of(&tz[..2])?, digits_of(&tz[2..])?),
                5 if tz[2] == b':' => (digits_of(&tz[..2])?, digits_of(&tz[3..])?),
                _ => return None,
            };
            if h > 23 || m > 59 {
                return None;
            }
            sign * (h * 3600 + m * 60)
        }
    };
    let days = days_from_civil(year, month, day);
    Some(days * 86_400 + hour * 3600 + minute * 60 + second - offset_secs)
}

/// The number a run of ASCII digits spells; `None` if it is empty or holds anything else.
fn digits_of(b: &[u8]) -> Option<i64> {
    if b.is_empty() || !b.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(b.iter().fold(0i64, |acc, d| acc * 10 + i64::from(d - b'0')))
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests;
