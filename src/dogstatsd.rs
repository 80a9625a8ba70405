//! The DogStatsD wire format: metric kinds and values, Datadog's rules for names and tags, and
//! one line as the Agent reads it (`name:value[:value...]|type[|#tags][|Tseconds]`).
//!
//! Everything that writes a line goes through here, so that no input can end a tag (`,`), a
//! field (`|`), start a tag list (`#`) or start a second metric (a line break).
//!
//! ```text
//! use algorithmia_datadog::dogstatsd::{push_line, push_metric_name, MetricKind};
//!
//! let mut name = String::new();
//! push_metric_name(&mut name, "algorithmia.", "risk score");
//! let mut line = String::new();
//! push_line(&mut line, &name, "0.2:0.3", MetricKind::Distribution, "algorithm_name:m", Some(1));
//! assert_eq!(line, "algorithmia.risk_score:0.2:0.3|d|#algorithm_name:m"); // no |T on |d
//! ```

mod float;

/// Datadog's limit on metric names and on tags.
pub const MAX_NAME_CHARS: usize = 200;
/// The longest value [`Value::write`] writes (`-2.2250738585072014e-308`).
pub const MAX_VALUE_CHARS: usize = 24;
/// The longest `|T` field (`|T-9223372036854775808`).
const MAX_TIMESTAMP_FIELD: usize = 22;

/// The longest line [`push_line`] can write for one value whose tags, joined with `,`, take at
/// most `tags` bytes: a name of [`MAX_NAME_CHARS`], the longest value, the type, the tags and a
/// timestamp. (A distribution line of several values is packed to its datagram by the caller.)
///
/// ```text
/// use algorithmia_datadog::dogstatsd::longest_line;
///
/// assert_eq!(longest_line(0), 249);
/// assert_eq!(longest_line(602), 853); // three 200-byte tags
/// ```
pub fn longest_line(tags: usize) -> usize {
    let tags_field = if tags == 0 { 0 } else { "|#".len() + tags };
    MAX_NAME_CHARS + ":".len() + MAX_VALUE_CHARS + "|g".len() + tags_field + MAX_TIMESTAMP_FIELD
}
/// A metric value, kept as the integer or float it was so that it prints exactly.
///
/// ```text
/// use algorithmia_datadog::dogstatsd::Value;
///
/// let mut line = String::new();
/// Value::Float(0.25).write(&mut line);
/// line.push(':');
/// Value::UInt(2).added(Value::UInt(3)).write(&mut line);
/// assert_eq!(line, "0.25:5");
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value {
    /// A non-negative integer.
    UInt(u64),
    /// A negative integer.
    Int(i64),
    /// A finite float.
    Float(f64),
}

impl Value {
    /// Appends the value as DogStatsD writes it.
    pub fn write(self, out: &mut String) {
        match self {
            Value::UInt(v) => out.push_str(itoa::Buffer::new().format(v)),
            Value::Int(v) => out.push_str(itoa::Buffer::new().format(v)),
            Value::Float(v) => float::write(out, v),
        }
    }

    /// The sum of two count increments: exact for integers while they fit, else a float (kept
    /// finite so that it always prints as a number).
    pub fn added(self, other: Value) -> Value {
        let as_f64 = |v: Value| match v {
            Value::UInt(v) => v as f64,
            Value::Int(v) => v as f64,
            Value::Float(v) => v,
        };
        match (self, other) {
            (Value::UInt(a), Value::UInt(b)) => match a.checked_add(b) {
                Some(sum) => Value::UInt(sum),
                None => Value::Float(a as f64 + b as f64),
            },
            (a, b) => {
                let sum = as_f64(a) + as_f64(b);
                Value::Float(if sum.is_finite() {
                    sum
                } else {
                    f64::MAX.copysign(sum)
                })
            }
        }
    }
}

/// How a point reaches Datadog, and how points of one context combine in a window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MetricKind {
    /// `|g`: the last value wins.
    Gauge,
    /// `|c`: increments add up.
    Count,
    /// `|d`: every value is kept (Datadog computes percentiles over all of them).
    Distribution,
}

impl MetricKind {
    /// The DogStatsD type field, with its leading `|`.
    pub fn type_field(self) -> &'static str {
        match self {
            MetricKind::Gauge => "|g",
            MetricKind::Count => "|c",
            MetricKind::Distribution => "|d",
        }
    }

    /// Whether points of this kind may carry `|T` (distributions cannot).
    pub fn takes_timestamp(self) -> bool {
        !matches!(self, MetricKind::Distribution)
    }
}

/// Renders points one line each, in buffers it keeps, so that a point costs no allocation.
///
/// ```text
/// use algorithmia_datadog::dogstatsd::{LineWriter, MetricKind, Value};
///
/// let mut lines = LineWriter::default();
/// lines.begin("algorithm_name:m", Some(1_700_000_000));
/// assert_eq!(
///     lines.render("algorithmia.calls", MetricKind::Count, Value::UInt(1)),
///     "algorithmia.calls:1|c|#algorithm_name:m|T1700000000"
/// );
/// ```
#[derive(Debug, Default)]
pub struct LineWriter {
    line: String,
    tags: String,
    timestamp: Option<i64>,
}

impl LineWriter {
    /// The points rendered next share these tags and this timestamp.
    pub fn begin(&mut self, tags: &str, timestamp: Option<i64>) {
        self.tags.clear();
        self.tags.push_str(tags);
        self.timestamp = timestamp;
    }

    /// One point as a DogStatsD line, valid until the next call.
    pub fn render(&mut self, name: &str, kind: MetricKind, value: Value) -> &str {
        let mut line = std::mem::take(&mut self.line);
        line.clear();
        self.write(&mut line, name, kind, value);
        self.line = line;
        &self.line
    }

    /// Appends one point as a DogStatsD line to `out` (no line break).
    pub fn write(&self, out: &mut String, name: &str, kind: MetricKind, value: Value) {
        out.push_str(name);
        out.push(':');
        value.write(out);
        push_line_end(out, kind, &self.tags, self.timestamp);
    }
}

/// Appends one DogStatsD line: `name:values|type[|#tags][|Tseconds]`. `values` is one value, or
/// several joined with `:` (distributions, protocol 1.1). A timestamp is left off for kinds that
/// cannot carry one.
pub fn push_line(
    out: &mut String,
    name: &str,
    values: &str,
    kind: MetricKind,
    tags: &str,
    timestamp: Option<i64>,
) {
    out.push_str(name);
    out.push(':');
    out.push_str(values);
    push_line_end(out, kind, tags, timestamp);
}

/// What follows a line's values: `|type[|#tags][|Tseconds]`.
fn push_line_end(out: &mut String, kind: MetricKind, tags: &str, timestamp: Option<i64>) {
    out.push_str(kind.type_field());
    if !tags.is_empty() {
        out.push_str("|#");
        out.push_str(tags);
    }
    if let Some(ts) = timestamp.filter(|_| kind.takes_timestamp()) {
        out.push_str("|T");
        out.push_str(itoa::Buffer::new().format(ts));
    }
}

/// Appends `<prefix><field>` cleaned to Datadog's name rules: anything outside `[A-Za-z0-9_.]`
/// becomes `_`, and the whole name is cut at 200 characters.
pub fn push_metric_name(out: &mut String, prefix: &str, field: &str) {
    let start = out.len();
    out.push_str(prefix);
    let room = MAX_NAME_CHARS.saturating_sub(prefix.len());
    let clean = field.len() <= room
        && field
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.');
    if clean {
        out.push_str(field);
        return;
    }
    for c in field.chars() {
        if out.len() - start >= MAX_NAME_CHARS {
            break;
        }
        out.push(if c.is_ascii_alphanumeric() || c == '_' || c == '.' {
            c
        } else {
            '_'
        });
    }
}

/// Appends a tag value cleaned to Datadog's tag rules: letters, digits and `_ - : . /` are kept,
/// anything else (in particular `,`, `|`, `#` and line breaks) becomes `_`; at most `budget`
/// bytes, cut on a character boundary; and no `:` at the end, since a tag must not end with one
/// (the value may then be empty, and the caller leaves the tag out).
///
/// ```text
/// use algorithmia_datadog::dogstatsd::push_tag_value;
///
/// let mut tag = String::from("algorithm_owner:");
/// push_tag_value(&mut tag, "team a|b:", 200);
/// assert_eq!(tag, "algorithm_owner:team_a_b");
/// ```
pub fn push_tag_value(out: &mut String, value: &str, budget: usize) {
    let start = out.len();
    let clean = value.len() <= budget && value.bytes().all(is_plain_tag_byte);
    if clean {
        out.push_str(value);
    } else {
        // The budget counts bytes, not characters: a tag of 200 multi-byte letters would
        // otherwise make lines, and datagrams, far longer than the Agent expects.
        for c in value.chars() {
            let c = if c.is_alphanumeric() || matches!(c, '_' | '-' | ':' | '.' | '/') {
                c
            } else {
                '_'
            };
            if out.len() - start + c.len_utf8() > budget {
                break;
            }
            out.push(c);
        }
    }
    let kept = out[start..].trim_end_matches(':').len();
    out.truncate(start + kept);
}

fn is_plain_tag_byte(b: u8) -> bool {
    PLAIN_TAG_BYTES[usize::from(b)]
}

/// The bytes a tag value keeps as they are: ASCII letters and digits, `_ - : . /`. A table, as
/// every byte of every tag of every message is looked up.
const PLAIN_TAG_BYTES: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        table[b] = c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-' | b':' | b'.' | b'/');
        b += 1;
    }
    table
};

/// The examples in this module's documentation, which name items outside the crate's surface.
#[cfg(test)]
mod doc_examples {
    #[test]
    fn doc_example_of_the_module() {
        use crate::dogstatsd::{push_line, push_metric_name, MetricKind};

        let mut name = String::new();
        push_metric_name(&mut name, "algorithmia.", "risk score");
        let mut line = String::new();
        push_line(
            &mut line,
            &name,
            "0.2:0.3",
            MetricKind::Distribution,
            "algorithm_name:m",
            Some(1),
        );
        assert_eq!(line, "algorithmia.risk_score:0.2:0.3|d|#algorithm_name:m"); // no |T on |d
    }

    #[test]
    fn doc_example_of_longest_line() {
        use crate::dogstatsd::longest_line;

        assert_eq!(longest_line(0), 249);
        assert_eq!(longest_line(602), 853); // three 200-byte tags
    }

    #[test]
    fn doc_example_of_value() {
        use crate::dogstatsd::Value;

        let mut line = String::new();
        Value::Float(0.25).write(&mut line);
        line.push(':');
        Value::UInt(2).added(Value::UInt(3)).write(&mut line);
        assert_eq!(line, "0.25:5");
    }

    #[test]
    fn doc_example_of_linewriter() {
        use crate::dogstatsd::{LineWriter, MetricKind, Value};

        let mut lines = LineWriter::default();
        lines.begin("algorithm_name:m", Some(1_700_000_000));
        assert_eq!(
            lines.render("algorithmia.calls", MetricKind::Count, Value::UInt(1)),
            "algorithmia.calls:1|c|#algorithm_name:m|T1700000000"
        );
    }

    #[test]
    fn doc_example_of_push_tag_value() {
        use crate::dogstatsd::push_tag_value;

        let mut tag = String::from("algorithm_owner:");
        push_tag_value(&mut tag, "team a|b:", 200);
        assert_eq!(tag, "algorithm_owner:team_a_b");
    }
}
