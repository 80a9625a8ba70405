//! The invariants the fuzz targets check, one public function per target.
//!
//! `fuzz/fuzz_targets/*.rs` call them on every input libFuzzer makes, and
//! `tests/fuzz_regressions.rs` includes this same file (`#[path]`) and calls them on every input
//! kept under `tests/fuzz-regressions/<target>/` and `fuzz/seeds/<target>/`, so that a plain
//! `cargo test` on stable runs the very checks the fuzzers ran. A violation panics: that is what
//! libFuzzer reports as a crash.
//!
//! - [`decode_map`]: bytes → messages → mapping rules → aggregation window → datagrams;
//! - [`config`]: bytes → YAML configuration → errors, redacted settings, and the lines it allows;
//! - [`pack`]: points and lines → window drain → datagram packing, through a failing socket.
//!
//! Every line any of them sees is read by [`parse_line`], a strict DogStatsD parser written from
//! Datadog's grammar rather than from the code under test.

// Each fuzz target uses one of the checks; the test harness uses them all.
#![allow(dead_code)]

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io;
use std::sync::{Arc, Mutex};

use algorithmia_datadog::config::{is_secret_property, Config, Instance};
use algorithmia_datadog::metrics::{MetricMapper, PointSink};
use algorithmia_datadog::Counters;
use algorithmia_datadog::Window;
use algorithmia_datadog::{decode, Field, FieldValue, InsightsMessage};
use algorithmia_datadog::{DogStatsdSink, Written};
use algorithmia_datadog::{MetricKind, Value};
use cadence::MetricSink;

/// "Now" for every mapper the checks build (2021-02-20T00:21:54Z, the public sample's time), so
/// that an input behaves the same on every run.
pub const CLOCK: i64 = 1_613_780_514;
/// The datagram limits of the two transports (`Destination::max_datagram_bytes`).
pub const DATAGRAM_LIMITS: [usize; 2] = [1432, 8192];
/// Datadog's limit on names and on tags, in characters.
const MAX_CHARS: usize = 200;

// ---- the strict DogStatsD line parser ----------------------------------------------------------

/// One metric line: `name:value[:value...]|type[|@rate][|#tag,tag...][|T<seconds>]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Line<'a> {
    /// The metric name.
    pub name: &'a str,
    /// One value, or several for a distribution (protocol 1.1).
    pub values: Vec<&'a str>,
    /// `g`, `c` or `d`: the only types the forwarder writes.
    pub kind: MetricKind,
    /// The sample rate, if any.
    pub rate: Option<&'a str>,
    /// The tags, in order.
    pub tags: Vec<&'a str>,
    /// The `|T` timestamp, if any.
    pub timestamp: Option<i64>,
}

/// Reads one line strictly: any deviation from the grammar, or from Datadog's rules for names,
/// values and tags, is an error.
pub fn parse_line(line: &str) -> Result<Line<'_>, String> {
    if line.is_empty() {
        return Err("empty line".into());
    }
    if let Some(c) = line.chars().find(|c| c.is_control()) {
        return Err(format!("control character {c:?} in the line"));
    }
    let mut fields = line.split('|');
    let head = fields.next().unwrap_or_default();
    let (name, values) = head
        .split_once(':')
        .ok_or_else(|| format!("no `:` after the name in {head:?}"))?;
    check_name(name)?;
    let values: Vec<&str> = values.split(':').collect();
    for value in &values {
        check_number(value)?;
    }
    let kind = match fields.next() {
        Some("g") => MetricKind::Gauge,
        Some("c") => MetricKind::Count,
        Some("d") => MetricKind::Distribution,
        other => return Err(format!("type {other:?} is not g, c or d")),
    };
    if kind != MetricKind::Distribution && values.len() != 1 {
        return Err(format!("{} values on a {kind:?}", values.len()));
    }
    let (mut rate, mut tags, mut timestamp) = (None, Vec::new(), None);
    // The optional fields come in this order, each at most once.
    let mut stage = 0;
    for field in fields {
        let (this_stage, rest) = match field.as_bytes().first() {
            Some(b'@') => (1, &field[1..]),
            Some(b'#') => (2, &field[1..]),
            Some(b'T') => (3, &field[1..]),
            _ => return Err(format!("unknown field {field:?}")),
        };
        if this_stage <= stage {
            return Err(format!("field {field:?} out of order or repeated"));
        }
        stage = this_stage;
        match this_stage {
            1 => {
                check_number(rest)?;
                let r: f64 = rest.parse().map_err(|_| format!("rate {rest:?}"))?;
                if !(r > 0.0 && r <= 1.0) {
                    return Err(format!("rate {rest} outside (0, 1]"));
                }
                rate = Some(rest);
            }
            2 => {
                tags = rest.split(',').collect();
                for tag in &tags {
                    check_tag(tag)?;
                }
            }
            _ => {
                if rest.is_empty() || !rest.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(format!("timestamp {rest:?} is not a number of seconds"));
                }
                if kind == MetricKind::Distribution {
                    return Err("a distribution carries no timestamp".into());
                }
                timestamp = Some(rest.parse().map_err(|_| format!("timestamp {rest:?}"))?);
            }
        }
    }
    Ok(Line {
        name,
        values,
        kind,
        rate,
        tags,
        timestamp,
    })
}

/// A metric name: starts with a letter; ASCII letters, digits, `_` and `.`; at most 200.
fn check_name(name: &str) -> Result<(), String> {
    if !name.starts_with(|c: char| c.is_ascii_alphabetic()) {
        return Err(format!("name {name:?} does not start with a letter"));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '_' || *c == '.'))
    {
        return Err(format!("name {name:?} holds {c:?}"));
    }
    if name.len() > MAX_CHARS {
        return Err(format!("name of {} characters", name.len()));
    }
    Ok(())
}

/// A finite decimal number as the forwarder prints them: `-?digits[.digits][e-?digits]`.
fn check_number(value: &str) -> Result<(), String> {
    let bad = || format!("value {value:?} is not a finite number");
    let unsigned = value.strip_prefix('-').unwrap_or(value);
    let (mantissa, exponent) = match unsigned.split_once('e') {
        Some((m, e)) => (m, Some(e.strip_prefix('-').unwrap_or(e))),
        None => (unsigned, None),
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let mantissa_ok = match mantissa.split_once('.') {
        Some((int, frac)) => digits(int) && digits(frac),
        None => digits(mantissa),
    };
    if !mantissa_ok || !exponent.is_none_or(digits) {
        return Err(bad());
    }
    match value.parse::<f64>() {
        Ok(v) if v.is_finite() => Ok(()),
        _ => Err(bad()),
    }
}

/// A tag: not empty, at most 200 characters, no separator (`,` `|` `#`), no control character,
/// not ending with `:`.
fn check_tag(tag: &str) -> Result<(), String> {
    if tag.is_empty() {
        return Err("empty tag".into());
    }
    if tag.chars().count() > MAX_CHARS {
        return Err(format!("tag of {} characters", tag.chars().count()));
    }
    if let Some(c) = tag
        .chars()
        .find(|c| matches!(c, ',' | '|' | '#') || c.is_control())
    {
        return Err(format!("tag {tag:?} holds {c:?}"));
    }
    if tag.ends_with(':') {
        return Err(format!("tag {tag:?} ends with `:`"));
    }
    Ok(())
}

/// What a configuration allows in the lines its mapper writes.
#[derive(Debug, Clone)]
struct Expected {
    /// `<prefix>.`
    prefix: String,
    calls_name: String,
    tag_fields: Vec<String>,
    static_tags: Vec<String>,
    /// The accepted `|T` range, when timestamps are sent.
    timestamps: Option<(i64, i64)>,
}

impl Expected {
    fn of(config: &Config, instance: &Instance) -> Expected {
        Expected {
            prefix: format!("{}.", config.metric_prefix),
            calls_name: format!("{}.calls", config.metric_prefix),
            tag_fields: instance.tag_fields.clone(),
            static_tags: instance.tags.clone(),
            timestamps: instance.send_timestamps.then_some((
                CLOCK - algorithmia_datadog::metrics::MAX_TIMESTAMP_AGE_SECS,
                CLOCK + algorithmia_datadog::metrics::MAX_TIMESTAMP_LEAD_SECS,
            )),
        }
    }

    /// Parses `line` strictly and checks that everything in it is what the configuration allows:
    /// the prefix, the kinds, a tag key per configured tag field (in their order, values cleaned)
    /// then exactly the static tags, timestamps only when asked for and within the window.
    fn check<'a>(&self, line: &'a str) -> Line<'a> {
        let parsed = parse_line(line).unwrap_or_else(|e| panic!("{e}: {line:?}"));
        let field = parsed
            .name
            .strip_prefix(&self.prefix)
            .unwrap_or_else(|| panic!("name without the prefix {:?}: {line:?}", self.prefix));
        assert!(!field.is_empty(), "nothing after the prefix: {line:?}");
        if parsed.name == self.calls_name {
            assert_eq!(
                parsed.kind,
                MetricKind::Count,
                "calls not a count: {line:?}"
            );
            assert!(
                parsed.values[0].bytes().all(|b| b.is_ascii_digit()),
                "calls not a whole number: {line:?}"
            );
        } else {
            assert_ne!(
                parsed.kind,
                MetricKind::Count,
                "a count other than calls: {line:?}"
            );
        }
        let statics = parsed
            .tags
            .len()
            .checked_sub(self.static_tags.len())
            .unwrap_or_else(|| panic!("static tags missing: {line:?}"));
        assert_eq!(
            parsed.tags[statics..],
            self.static_tags[..],
            "static tags: {line:?}"
        );
        let mut next_field = 0;
        for tag in &parsed.tags[..statics] {
            let (key, value) = tag
                .split_once(':')
                .unwrap_or_else(|| panic!("tag {tag:?} has no key: {line:?}"));
            let at = self.tag_fields[next_field..]
                .iter()
                .position(|f| f == key)
                .unwrap_or_else(|| panic!("tag key {key:?} not configured, or repeated: {line:?}"));
            next_field += at + 1;
            assert!(
                value
                    .chars()
                    .all(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | ':' | '.' | '/')),
                "tag value {value:?} not cleaned: {line:?}"
            );
        }
        match (parsed.timestamp, self.timestamps) {
            (None, _) => {}
            (Some(ts), Some((low, high))) => {
                assert!(low <= ts && ts <= high, "timestamp out of window: {line:?}")
            }
            (Some(_), None) => panic!("timestamp not asked for: {line:?}"),
        }
        parsed
    }
}

// ---- what the lines add up to ------------------------------------------------------------------

/// A context as Datadog sees it, with the timestamp second the backend keeps.
type Context = (String, char, String, Option<i64>);

/// What the points of one context come to.
#[derive(Debug, Clone, PartialEq)]
enum Folded {
    /// A gauge: the last value, as written.
    Last(String),
    /// A count: the sum, as written.
    Sum(String),
    /// A distribution: every value, in order.
    Values(Vec<String>),
}

fn context_of(line: &Line<'_>) -> Context {
    let kind = match line.kind {
        MetricKind::Gauge => 'g',
        MetricKind::Count => 'c',
        MetricKind::Distribution => 'd',
    };
    (
        line.name.to_string(),
        kind,
        line.tags.join(","),
        line.timestamp,
    )
}

/// Folds a line into `totals` the way Datadog combines points: the last gauge wins, counts add
/// up (whole numbers only: the only count the mapper writes is `calls`), distribution values
/// accumulate in order.
fn fold(totals: &mut BTreeMap<Context, Folded>, line: &Line<'_>) {
    let values = line.values.iter().map(|v| v.to_string());
    let entry = totals.entry(context_of(line));
    match line.kind {
        MetricKind::Gauge => {
            *entry.or_insert(Folded::Last(String::new())) = Folded::Last(line.values[0].into());
        }
        MetricKind::Count => {
            let add: u64 = line.values[0]
                .parse()
                .unwrap_or_else(|_| panic!("count {:?} not a whole number", line.values[0]));
            let sum = entry.or_insert(Folded::Sum("0".into()));
            if let Folded::Sum(total) = sum {
                let before: u64 = total.parse().unwrap_or_default();
                *total = before
                    .checked_add(add)
                    .unwrap_or_else(|| panic!("calls overflow"))
                    .to_string();
            }
        }
        MetricKind::Distribution => {
            if let Folded::Values(all) = entry.or_insert(Folded::Values(Vec::new())) {
                all.extend(values);
            }
        }
    }
}

/// The total of the `calls` counts.
fn calls(totals: &BTreeMap<Context, Folded>, calls_name: &str) -> u64 {
    totals
        .iter()
        .filter(|((name, ..), _)| name == calls_name)
        .map(|(_, folded)| match folded {
            Folded::Sum(total) => total.parse::<u64>().unwrap_or_default(),
            other => panic!("calls folded as {other:?}"),
        })
        .sum()
}

// ---- a socket that records, and fails when told -------------------------------------------------

/// A cadence sink that keeps every datagram it accepts and refuses the writes a schedule says.
#[derive(Clone, Default)]
struct Recorder {
    sent: Arc<Mutex<Vec<String>>>,
    /// One entry per write to come: `true` refuses it. Writes past the end succeed.
    refusals: Arc<Mutex<VecDeque<bool>>>,
}

impl Recorder {
    fn refusing(schedule: u64, writes: usize) -> Recorder {
        let recorder = Recorder::default();
        recorder
            .refusals
            .lock()
            .unwrap()
            .extend((0..writes).map(|i| (schedule >> i) & 1 == 1));
        recorder
    }

    fn datagrams(&self) -> Vec<String> {
        self.sent.lock().unwrap().clone()
    }

    /// How many lines the accepted datagrams held.
    fn lines_sent(&self) -> usize {
        self.sent
            .lock()
            .unwrap()
            .iter()
            .map(|d| d.split('\n').count())
            .sum()
    }
}

impl MetricSink for Recorder {
    fn emit(&self, datagram: &str) -> io::Result<usize> {
        if self.refusals.lock().unwrap().pop_front() == Some(true) {
            return Err(io::Error::new(io::ErrorKind::WouldBlock, "refused"));
        }
        self.sent.lock().unwrap().push(datagram.to_string());
        Ok(datagram.len())
    }
}

/// Checks the datagrams a sink sent for `lines`: none empty, none over `limit` unless it is one
/// line that alone is longer, and their lines, in order, exactly `lines`: none lost, none
/// repeated, none cut or merged.
fn check_datagrams(datagrams: &[String], lines: &[String], limit: usize) {
    let mut sent = Vec::new();
    for datagram in datagrams {
        assert!(!datagram.is_empty(), "an empty datagram");
        let in_it: Vec<&str> = datagram.split('\n').collect();
        assert!(
            datagram.len() <= limit || in_it.len() == 1,
            "a datagram of {} bytes and {} lines over the {limit}-byte limit",
            datagram.len(),
            in_it.len()
        );
        sent.extend(in_it);
    }
    assert_eq!(
        sent, lines,
        "the datagrams do not carry the lines as pushed"
    );
}

// ---- decode_map ----------------------------------------------------------------------------------

/// The static tag sets the decode_map configurations choose from: none, plain, odd but accepted
/// (a space, non-ASCII), and two of Datadog's longest (200 characters, one in 2-byte letters).
fn static_tag_set(i: u8) -> Vec<String> {
    match i % 4 {
        0 => vec![],
        1 => vec!["team:ml-platform".into(), "region:eu-west-1".into()],
        2 => vec!["owner:Zoë".into(), "note:two words".into()],
        _ => vec![
            format!("long:{}", "x".repeat(MAX_CHARS - 5)),
            format!("wide:{}", "é".repeat(MAX_CHARS - 5)),
        ],
    }
}

/// The configuration file the two option bytes of a decode_map input describe.
fn decode_map_yaml(a: u8, b: u8) -> String {
    let flag = |byte: u8, bit: u8| (byte >> bit) & 1 == 1;
    let distributions = match (a >> 3) & 3 {
        0 => "[]",
        1 => "['*']",
        2 => "['risk_*', duration_milliseconds]",
        _ => "['?*_score', x, calls]",
    };
    let tag_fields = if flag(a, 7) {
        "[algorithm_name, algorithm_version, algorithm_owner, request_id, session_id, segment, region]"
    } else {
        "[algorithm_name, algorithm_version, algorithm_owner]"
    };
    let (include, exclude) = match (b >> 1) & 3 {
        0 => ("[]", "[]"),
        1 => ("[]", "['*_id', debug*]"),
        2 => ("['risk_*', 'duration*', '?', 'x*']", "[]"),
        _ => ("['*']", "['*e*']"),
    };
    let tags: Vec<String> = static_tag_set(a >> 5)
        .iter()
        .map(|t| format!("{t:?}"))
        .collect();
    format!(
        "init_config:\n  dogstatsd_url: {url}\ninstances:\n  - kafka_broker: k:9092\n    \
         kafka_topic: t\n    send_timestamps: {ts}\n    numeric_strings: {ns}\n    \
         booleans: {bo}\n    distribution_metrics: {distributions}\n    tag_fields: {tag_fields}\n    \
         include_metrics: {include}\n    exclude_metrics: {exclude}\n    max_contexts: {mc}\n    \
         tags: [{tags}]\n",
        url = if flag(b, 0) {
            "unix:///var/run/datadog/dsd.socket"
        } else {
            "udp://127.0.0.1:8125"
        },
        ts = flag(a, 0),
        ns = flag(a, 1),
        bo = flag(a, 2),
        mc = if flag(b, 3) { 3 } else { 100_000 },
        tags = tags.join(", "),
    )
}

thread_local! {
    /// The configurations of the option bytes seen so far (parsing YAML on every run would
    /// spend most of the fuzzer's time there).
    static CONFIGS: RefCell<HashMap<(u8, u8), Option<Config>>> = RefCell::new(HashMap::new());
}

/// Decodes, maps and aggregates up to 32 messages and checks everything that comes out.
///
/// Input: two option bytes choosing the configuration ([`decode_map_yaml`]), then message values
/// separated by NUL bytes (never valid inside JSON). Each message goes through the mapping rules
/// three ways: one line per point (`aggregation_interval: 0`), and through aggregation windows
/// drained into 1432- and 8192-byte datagrams. Every line must parse strictly and hold only what
/// the configuration allows; every datagram must stay within its limit; the three ways must add
/// up to the same thing per context; and the `calls` counts must add up to the messages decoded.
pub fn decode_map(data: &[u8]) {
    let (a, b, payloads) = match data {
        [a, b, rest @ ..] => (*a, *b, rest),
        _ => return,
    };
    let Some(config) = CONFIGS.with(|configs| {
        configs
            .borrow_mut()
            .entry((a, b))
            .or_insert_with(|| {
                Config::from_yaml(&decode_map_yaml(a, b), "fuzz.yaml", &fake_env).ok()
            })
            .clone()
    }) else {
        return;
    };
    let instance = &config.instances[0];
    let expected = Expected::of(&config, instance);
    let mut mapper = MetricMapper::builder_for_instance(&config.metric_prefix, instance)
        .fixed_clock(CLOCK)
        .build();
    let messages: Vec<InsightsMessage<'_>> = payloads
        .split(|&b| b == 0)
        .take(32)
        .filter_map(|payload| decode(payload).ok())
        .collect();
    let counters = Counters::default();
    let limit = config.max_datagram_bytes();

    // One line per point, packed for the configured destination.
    let recorder = Recorder::default();
    let mut sink = DogStatsdSink::builder(recorder.clone(), limit).build();
    let mut per_point = BTreeMap::new();
    let mut pushed = Vec::new();
    for message in &messages {
        let _ = mapper.map_message(message, &counters, |line| {
            fold(&mut per_point, &expected.check(line));
            assert!(line.len() <= limit, "a {}-byte line: {line:?}", line.len());
            pushed.push(line.to_string());
            sink.push_line(line);
            Ok::<_, ()>(())
        });
    }
    assert!(sink.flush(), "a sink that never refuses did not flush");
    check_datagrams(&recorder.datagrams(), &pushed, limit);
    assert_eq!(
        calls(&per_point, &expected.calls_name),
        messages.len() as u64,
        "calls counted against messages decoded"
    );

    // Aggregated, drained for either transport.
    // A configuration valid for UDP must fit Unix sockets too; the converse need not hold.
    for max_datagram in DATAGRAM_LIMITS.into_iter().filter(|&m| m >= limit) {
        let recorder = Recorder::default();
        let mut sink = DogStatsdSink::builder(recorder.clone(), max_datagram).build();
        let mut window = Window::new(instance.max_contexts);
        let mut aggregated = BTreeMap::new();
        let mut pushed = Vec::new();
        let mut drain = |window: &mut Window| {
            window.drain(max_datagram, |line, kind, values| {
                let parsed = expected.check(line);
                assert_eq!(parsed.kind, kind, "emit's kind: {line:?}");
                assert_eq!(parsed.values.len(), values, "emit's value count: {line:?}");
                assert!(
                    line.len() <= max_datagram,
                    "a {}-byte line: {line:?}",
                    line.len()
                );
                fold(&mut aggregated, &parsed);
                pushed.push(line.to_string());
                sink.push_line(line);
            });
        };
        for message in &messages {
            mapper.map_points(message, &counters, &mut window);
            if window.is_full() {
                drain(&mut window);
            }
        }
        drain(&mut window);
        assert!(window.is_empty(), "a drained window holds points");
        assert!(sink.flush(), "a sink that never refuses did not flush");
        check_datagrams(&recorder.datagrams(), &pushed, max_datagram);
        assert_eq!(
            aggregated, per_point,
            "aggregated at {max_datagram} bytes and point by point differ"
        );
    }
}

// ---- config ----------------------------------------------------------------------------------

/// What every secret in the config target's inputs holds, and nothing else should.
pub const CANARY: &str = "CANARY";

/// The environment the config target sees.
pub fn fake_env(name: &str) -> Option<String> {
    let value = match name {
        "KAFKA_PASSWORD" => "CANARY-env-Pa55w0rd",
        "KAFKA_USER" => "fuzzer",
        "BROKERS" => "k1:9092,k2:9092",
        "DD_ENV" => "fuzz",
        "SEPARATORS" => "a,b|c#d\ne",
        "EMPTY" => "",
        _ => return None,
    };
    Some(value.to_string())
}

/// Whether `text` holds the canary, or may expand to it (`${KAFKA_PASSWORD}`, or `CANA${EMPTY}RY`).
fn holds_canary(text: &str) -> bool {
    let mut expanded = String::new();
    let mut rest = text;
    while let Some((before, after)) = rest.split_once("${") {
        expanded.push_str(before);
        match after.split_once('}') {
            Some((name, tail)) => {
                expanded.push_str(&fake_env(name).unwrap_or_default());
                rest = tail;
            }
            None => {
                expanded.push_str("${");
                rest = after;
            }
        }
    }
    expanded.push_str(rest);
    text.contains(CANARY) || text.contains("KAFKA_PASSWORD") || expanded.contains(CANARY)
}

/// Whether the canary stands only where a secret belongs: `sasl_password` and the secret
/// `kafka_options` of an instance. Only then must it never be shown.
fn canary_only_in_secrets(value: &serde_yaml::Value, path: &[String]) -> bool {
    use serde_yaml::Value;
    let secret_place = match path {
        [instances, _, key] if instances == "instances" => key == "sasl_password",
        [instances, _, options, key] if instances == "instances" && options == "kafka_options" => {
            is_secret_property(key)
        }
        _ => false,
    };
    let child = |key: &str| {
        let mut p = path.to_vec();
        p.push(key.to_string());
        p
    };
    match value {
        // A secret that is nothing but `${VAR}` holds the variable's value; its name is no part
        // of the secret (the error for an unset one names it), so a canary there is not covered.
        Value::String(s) if secret_place => !s
            .strip_prefix("${")
            .and_then(|rest| rest.strip_suffix('}'))
            .is_some_and(|name| name != "KAFKA_PASSWORD" && holds_canary(name)),
        Value::String(s) => !holds_canary(s),
        Value::Sequence(items) => items
            .iter()
            .enumerate()
            .all(|(i, item)| canary_only_in_secrets(item, &child(&i.to_string()))),
        Value::Mapping(map) => map.iter().all(|(k, v)| {
            let key = k.as_str().map_or_else(|| format!("{k:?}"), str::to_string);
            !holds_canary(&key) && canary_only_in_secrets(v, &child(&key))
        }),
        Value::Tagged(tagged) => {
            (secret_place || !holds_canary(&tagged.tag.to_string()))
                && canary_only_in_secrets(&tagged.value, path)
        }
        Value::Null | Value::Bool(_) | Value::Number(_) => true,
    }
}

/// Loads a YAML configuration and checks what comes out.
///
/// An error names the file (`fuzz.yaml: key: reason`). When the input holds the canary only in
/// secrets, neither the error, nor the redacted settings, nor the settings' `Debug`, nor the
/// ignored-settings notes show it. A valid configuration's mapper, given the longest values a
/// message can carry, writes lines that parse strictly, hold only the configured tags, and fit
/// the destination's datagrams.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let guarded = match serde_yaml::from_str::<serde_yaml::Value>(text) {
        Ok(value) => canary_only_in_secrets(&value, &[]),
        // A syntax error may quote keys (a duplicate entry, and the path of keys to it), which
        // are never secrets. Without a document to tell where the canary stands, the check holds
        // only when every line holding it is a plain `sasl_password: value`.
        Err(_) => text.lines().filter(|line| holds_canary(line)).all(|line| {
            let line = line.trim_start().trim_start_matches("- ");
            line.strip_prefix("sasl_password:")
                .is_some_and(|value| !value.contains([':', '{', '[', '#', '&', '*', '!', '|', '>']))
        }),
    };
    let no_canary = |what: &str, shown: &str| {
        assert!(
            !guarded || !shown.contains(CANARY),
            "{what} shows a secret: {shown}"
        );
    };
    let config = match Config::from_yaml(text, "fuzz.yaml", &fake_env) {
        Ok(config) => config,
        Err(e) => {
            let shown = e.to_string();
            assert!(
                shown.starts_with("fuzz.yaml: ") && !e.key.is_empty() && !e.reason.is_empty(),
                "an error that does not say where and why: {shown:?}"
            );
            no_canary("the error", &shown);
            return;
        }
    };
    let redacted = config.redacted_yaml();
    assert!(
        serde_yaml::from_str::<serde_yaml::Value>(&redacted).is_ok(),
        "the redacted settings are not YAML: {redacted}"
    );
    no_canary("redacted_yaml()", &redacted);
    no_canary("Config's Debug", &format!("{config:?}"));
    for note in &config.ignored {
        no_canary("an ignored-setting note", note);
    }
    let limit = config.max_datagram_bytes();
    for instance in &config.instances {
        check_longest_lines(&config, instance, limit);
    }
}

/// The longest number the forwarder writes.
const LONGEST_NUMBER: f64 = -2.225_073_858_507_201_4e-308;

/// Maps the messages with the longest values the rules let through (every tag field at its
/// longest string, then at the longest numbers; a field name cut at 200 characters; the longest
/// number) and checks their lines, one per point and aggregated, against `limit`.
fn check_longest_lines(config: &Config, instance: &Instance, limit: usize) {
    let expected = Expected::of(config, instance);
    let mut mapper = MetricMapper::builder_for_instance(&config.metric_prefix, instance)
        .include(Vec::<String>::new())
        .exclude(Vec::<String>::new())
        .fixed_clock(CLOCK)
        .build();
    let long = "x".repeat(4 * MAX_CHARS);
    for tag_value in [
        FieldValue::Str(long.as_str().into()),
        FieldValue::Float(LONGEST_NUMBER),
        FieldValue::Int(i64::MIN),
    ] {
        let mut fields: Vec<Field<'_>> = instance
            .tag_fields
            .iter()
            .map(|key| Field {
                name: key.as_str().into(),
                value: tag_value.clone(),
            })
            .collect();
        if !instance.tag_fields.contains(&instance.timestamp_field) {
            fields.push(Field {
                name: instance.timestamp_field.as_str().into(),
                value: FieldValue::UInt(CLOCK as u64),
            });
        }
        for (name, value) in [
            (format!("m{long}"), FieldValue::Float(LONGEST_NUMBER)),
            ("n".into(), FieldValue::Int(i64::MIN)),
        ] {
            fields.push(Field {
                name: name.into(),
                value,
            });
        }
        let message = InsightsMessage { fields };
        let counters = Counters::default();
        let _ = mapper.map_message(&message, &counters, |line| {
            expected.check(line);
            assert!(
                line.len() <= limit,
                "a {}-byte line for {}-byte datagrams: {line:?}",
                line.len(),
                limit
            );
            Ok::<_, ()>(())
        });
        let mut window = Window::new(instance.max_contexts);
        for _ in 0..3 {
            mapper.map_points(&message, &counters, &mut window);
        }
        window.drain(limit, |line, _, _| {
            expected.check(line);
            assert!(line.len() <= limit, "a {}-byte aggregated line", line.len());
        });
    }
}

// ---- pack ----------------------------------------------------------------------------------------

/// Reads an input as a little program; past its end every read is zero.
struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn u8(&mut self) -> u8 {
        let (first, rest) = self.0.split_first().map_or((0, &[][..]), |(f, r)| (*f, r));
        self.0 = rest;
        first
    }
    fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.u8(), self.u8()])
    }
    fn u64(&mut self) -> u64 {
        (0..8).fold(0, |acc, i| acc | (u64::from(self.u8()) << (8 * i)))
    }
    fn bytes(&mut self, n: usize) -> &[u8] {
        let (taken, rest) = self.0.split_at(n.min(self.0.len()));
        self.0 = rest;
        taken
    }
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

const PACK_TAGS: [&str; 4] = ["", "m:a", "m:b,v:1.0.6", "owner:Zoë,region:eu-west-1,x:y"];
const PACK_NAMES: [&str; 4] = ["a", "b.c", "algorithmia.calls", "d_"];

/// What the points of one window must drain to.
#[derive(Default)]
struct WindowModel {
    totals: BTreeMap<Context, (MetricKind, ModelValue)>,
}

enum ModelValue {
    Last(Value),
    Sum(Value),
    Values(Vec<Value>),
}

impl WindowModel {
    fn point(
        &mut self,
        tags: &str,
        timestamp: Option<i64>,
        name: &str,
        kind: MetricKind,
        v: Value,
    ) {
        let timestamp = timestamp.filter(|_| kind.takes_timestamp());
        let key = (
            name.to_string(),
            kind.type_field().chars().nth(1).unwrap_or('?'),
            tags.to_string(),
            timestamp,
        );
        match self.totals.get_mut(&key) {
            None => {
                let value = match kind {
                    MetricKind::Gauge => ModelValue::Last(v),
                    MetricKind::Count => ModelValue::Sum(v),
                    MetricKind::Distribution => ModelValue::Values(vec![v]),
                };
                self.totals.insert(key, (kind, value));
            }
            Some((_, ModelValue::Last(last))) => *last = v,
            Some((_, ModelValue::Sum(sum))) => *sum = sum.added(v),
            Some((_, ModelValue::Values(values))) => values.push(v),
        }
    }

    /// The model as the lines should write it.
    fn written(&self) -> BTreeMap<Context, Folded> {
        let text = |v: &Value| {
            let mut s = String::new();
            v.write(&mut s);
            s
        };
        self.totals
            .iter()
            .map(|(key, (_, value))| {
                let folded = match value {
                    ModelValue::Last(v) => Folded::Last(text(v)),
                    ModelValue::Sum(v) => Folded::Sum(text(v)),
                    ModelValue::Values(vs) => Folded::Values(vs.iter().map(text).collect()),
                };
                (key.clone(), folded)
            })
            .collect()
    }
}

/// Drives a window and a sink with a program read from the input, through a socket that refuses
/// the writes the input says, and checks the packing.
///
/// Input: the datagram limit, the window's context bound and a 64-write refusal schedule, then
/// operations: a point (tags, timestamp, name, kind, value), a window drain, a sink flush, or a
/// raw line. A drain must write every point of its window exactly once, folded per context as the
/// model says, distribution values in order, each line within the limit unless it holds a single
/// value that alone is longer. The sink must return every pushed line exactly once, in order,
/// never cut or merged, in datagrams within the limit unless one line alone is longer; and its
/// `Written` answers must say the truth about what went out.
pub fn pack(data: &[u8]) {
    let mut input = Reader(data);
    let max_datagram = match input.u16() {
        n if n % 4 == 0 => 1432,
        n if n % 4 == 1 => 8192,
        n => 1 + usize::from(n >> 2) % 2000,
    };
    let max_contexts = 1 + usize::from(input.u8() % 16);
    let recorder = Recorder::refusing(input.u64(), 64);
    let mut sink = DogStatsdSink::builder(recorder.clone(), max_datagram).build();
    let mut window = Window::new(max_contexts);
    let mut model = WindowModel::default();
    let mut pushed: Vec<String> = Vec::new();

    let push = |sink: &mut DogStatsdSink, pushed: &mut Vec<String>, line: &str| {
        let before = pushed.len();
        let sent_before = recorder.lines_sent();
        let written = sink.push_line(line);
        pushed.push(line.to_string());
        match written {
            Written::Buffered => assert_eq!(recorder.lines_sent(), sent_before, "Buffered sent"),
            Written::Flushed => assert_eq!(
                recorder.lines_sent(),
                before,
                "Flushed, but not everything before the line went out"
            ),
            Written::Blocked => assert!(sink.is_blocked(), "Blocked, but the sink is not"),
        }
    };
    let drain = |window: &mut Window,
                 model: &mut WindowModel,
                 sink: &mut DogStatsdSink,
                 pushed: &mut Vec<String>| {
        let mut lines = Vec::new();
        window.drain(max_datagram, |line, kind, values| {
            lines.push((line.to_string(), kind, values));
        });
        let mut drained = BTreeMap::new();
        let mut last_len = HashMap::new();
        for (line, kind, values) in &lines {
            let parsed = parse_line(line).unwrap_or_else(|e| panic!("{e}: {line:?}"));
            assert_eq!(
                (parsed.kind, parsed.values.len()),
                (*kind, *values),
                "{line:?}"
            );
            assert!(
                line.len() <= max_datagram || parsed.values.len() == 1,
                "a {}-byte line of {} values for {max_datagram}-byte datagrams",
                line.len(),
                parsed.values.len()
            );
            if parsed.kind != MetricKind::Distribution {
                assert!(
                    !drained.contains_key(&context_of(&parsed)),
                    "a context drained twice: {line:?}"
                );
            }
            if let Some(previous) = last_len.insert(context_of(&parsed), line.len()) {
                // A distribution went on in a new line: its next value must not have fitted.
                assert!(
                    previous + 1 + parsed.values[0].len() > max_datagram,
                    "a needless split after a {previous}-byte line: {line:?}"
                );
            }
            match parsed.kind {
                MetricKind::Count => {
                    drained.insert(context_of(&parsed), Folded::Sum(parsed.values[0].into()));
                }
                _ => fold(&mut drained, &parsed),
            }
            push(sink, pushed, line);
        }
        assert_eq!(
            drained,
            model.written(),
            "the drain does not match the model"
        );
        *model = WindowModel::default();
        assert!(window.is_empty() && !window.is_full(), "a drained window");
    };

    while !input.is_empty() {
        match input.u8() % 8 {
            0..=4 => {
                let tags = PACK_TAGS[usize::from(input.u8()) % PACK_TAGS.len()];
                let timestamp = [None, Some(100), Some(101)][usize::from(input.u8() % 3)];
                let name = PACK_NAMES[usize::from(input.u8()) % PACK_NAMES.len()];
                let kind = [
                    MetricKind::Gauge,
                    MetricKind::Count,
                    MetricKind::Distribution,
                ][usize::from(input.u8() % 3)];
                let value = match input.u8() % 3 {
                    0 => Value::UInt(input.u64()),
                    1 => Value::Int((input.u64() | (1 << 63)) as i64),
                    _ => match f64::from_bits(input.u64()) {
                        f if f.is_finite() => Value::Float(f),
                        _ => continue,
                    },
                };
                window.begin(tags, timestamp);
                window.point(name, kind, value);
                model.point(tags, timestamp, name, kind, value);
                if window.is_full() {
                    drain(&mut window, &mut model, &mut sink, &mut pushed);
                }
            }
            5 => drain(&mut window, &mut model, &mut sink, &mut pushed),
            6 => {
                if sink.flush() {
                    assert_eq!(recorder.lines_sent(), pushed.len(), "flushed, not all sent");
                    assert!(sink.is_empty() && !sink.is_blocked());
                } else {
                    assert!(sink.is_blocked(), "a failed flush, but not blocked");
                }
            }
            _ => {
                let n = usize::from(input.u8() % 64);
                let raw = String::from_utf8_lossy(input.bytes(n)).replace('\n', " ");
                if !raw.is_empty() {
                    push(&mut sink, &mut pushed, &raw);
                }
            }
        }
    }
    drain(&mut window, &mut model, &mut sink, &mut pushed);
    // The refusals run out after 64 writes: flushing must get everything out by then.
    let flushed = (0..=65).any(|_| sink.flush());
    assert!(flushed, "the sink never got its data out");
    assert!(sink.is_empty() && !sink.is_blocked());
    check_datagrams(&recorder.datagrams(), &pushed, max_datagram);
}
