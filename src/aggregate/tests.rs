//! One test per aggregation rule.

use super::*;
use crate::metrics::Interned;

fn lines_of(window: &mut Window, max_datagram: usize) -> Vec<String> {
    let mut lines = Vec::new();
    window.drain(max_datagram, |line, _, _| lines.push(line.to_string()));
    lines
}

fn gauge(window: &mut Window, tags: &str, name: &str, value: Value) {
    window.begin(tags, None);
    window.point(name, MetricKind::Gauge, value);
}

#[test]
fn the_last_gauge_value_of_a_context_wins() {
    let mut w = Window::new(100);
    for v in [3, 1, 2] {
        gauge(&mut w, "m:a", "x", Value::UInt(v));
    }
    gauge(&mut w, "m:b", "x", Value::Int(-7));
    assert_eq!(lines_of(&mut w, 1432), ["x:2|g|#m:a", "x:-7|g|#m:b"]);
    assert_eq!(w.take_folded(), 2);
}

#[test]
fn counts_sum_exactly_and_stay_finite() {
    let mut w = Window::new(100);
    for _ in 0..1000 {
        w.begin("", None);
        w.point("calls", MetricKind::Count, Value::UInt(1));
    }
    w.begin("", None);
    w.point("big", MetricKind::Count, Value::UInt(u64::MAX));
    w.point("big", MetricKind::Count, Value::UInt(1));
    w.point("f", MetricKind::Count, Value::Float(f64::MAX));
    w.point("f", MetricKind::Count, Value::Float(f64::MAX));
    let lines = lines_of(&mut w, 1432);
    assert_eq!(lines[0], "calls:1000|c");
    assert_eq!(
        lines[1], "big:1.8446744073709552e19|c",
        "overflow turns to a float"
    );
    assert_eq!(lines[2], "f:1.7976931348623157e308|c", "never inf");
}

#[test]
fn a_context_is_its_name_kind_and_tags() {
    let mut w = Window::new(100);
    w.begin("a:1", None);
    w.point("x", MetricKind::Gauge, Value::UInt(1));
    w.point("x", MetricKind::Distribution, Value::UInt(2));
    w.begin("a:2", None);
    w.point("x", MetricKind::Gauge, Value::UInt(3));
    w.begin("a:1", None);
    w.point("y", MetricKind::Gauge, Value::UInt(4));
    w.point("x", MetricKind::Gauge, Value::UInt(5));
    w.point("x", MetricKind::Distribution, Value::UInt(6));
    assert_eq!(w.contexts(), 4);
    assert_eq!(
        lines_of(&mut w, 1432),
        ["x:5|g|#a:1", "x:2:6|d|#a:1", "y:4|g|#a:1", "x:3|g|#a:2"]
    );
}

#[test]
fn every_distribution_value_is_sent_in_arrival_order() {
    let mut w = Window::new(100);
    let values: Vec<f64> = (0..10_000).map(|i| f64::from(i) / 7.0).collect();
    for v in &values {
        w.begin("m:a", None);
        w.point("d", MetricKind::Distribution, Value::Float(*v));
    }
    let mut got = Vec::new();
    let mut counted = 0;
    w.drain(1432, |line, kind, n| {
        assert_eq!(kind, MetricKind::Distribution);
        assert!(line.len() <= 1432, "{} bytes", line.len());
        let body = line
            .strip_prefix("d:")
            .and_then(|l| l.strip_suffix("|d|#m:a"))
            .unwrap();
        let parsed: Vec<f64> = body.split(':').map(|v| v.parse().unwrap()).collect();
        assert_eq!(parsed.len(), n);
        counted += n;
        got.extend(parsed);
    });
    assert_eq!(got, values);
    assert_eq!(counted, values.len());
    assert_eq!(w.take_folded(), 0, "distribution values are never folded");
}

#[test]
fn packing_splits_between_values_and_never_splits_one() {
    let mut w = Window::new(100);
    w.begin("", None);
    for v in [123_456_789u64, 1, 22, 333, 4444] {
        w.point("dist", MetricKind::Distribution, Value::UInt(v));
    }
    // "dist:" + "|d" = 7 bytes of 20: 13 bytes of values per line.
    assert_eq!(
        lines_of(&mut w, 20),
        ["dist:123456789:1|d", "dist:22:333:4444|d"]
    );
    // A value that cannot fit goes alone, whole (the sink sends an oversized line on its own).
    w.begin("", None);
    w.point("dist", MetricKind::Distribution, Value::UInt(1));
    w.point(
        "dist",
        MetricKind::Distribution,
        Value::Float(1.234_567_890_123_4e-300),
    );
    assert_eq!(
        lines_of(&mut w, 12),
        ["dist:1|d", "dist:1.2345678901234e-300|d"]
    );
}

#[test]
fn timestamped_points_aggregate_per_second_and_distributions_carry_none() {
    let mut w = Window::new(100);
    for (ts, v) in [(100, 1), (100, 2), (101, 3)] {
        w.begin("m:a", Some(ts));
        w.point("g", MetricKind::Gauge, Value::UInt(v));
        w.point("d", MetricKind::Distribution, Value::UInt(v));
        w.point("calls", MetricKind::Count, Value::UInt(1));
    }
    assert_eq!(
        lines_of(&mut w, 1432),
        [
            "g:2|g|#m:a|T100",
            "calls:2|c|#m:a|T100",
            "d:1:2:3|d|#m:a",
            "g:3|g|#m:a|T101",
            "calls:1|c|#m:a|T101",
        ]
    );
}

#[test]
fn the_window_says_it_is_full_at_max_contexts_or_max_distribution_values() {
    let mut w = Window::new(3);
    for i in 0..3 {
        assert!(!w.is_full());
        gauge(&mut w, &format!("m:{i}"), "x", Value::UInt(1));
    }
    assert!(w.is_full());
    lines_of(&mut w, 1432);
    assert!(!w.is_full() && w.is_empty(), "a drained window starts over");

    let mut w = Window::new(100);
    w.begin("", None);
    for _ in 0..MAX_DISTRIBUTION_VALUES - 1 {
        w.point("d", MetricKind::Distribution, Value::UInt(1));
    }
    assert!(!w.is_full());
    w.point("d", MetricKind::Distribution, Value::UInt(1));
    assert!(w.is_full());
}

#[test]
fn fields_in_another_order_still_find_their_context() {
    let mut w = Window::new(100);
    let names = ["a", "b", "c", "d"];
    for round in 0..4 {
        w.begin("", None);
        for i in 0..4 {
            let name = names[(i + round) % 4];
            w.point(name, MetricKind::Gauge, Value::UInt(round as u64));
        }
    }
    assert_eq!(w.contexts(), 4);
    assert_eq!(lines_of(&mut w, 1432), ["a:3|g", "b:3|g", "c:3|g", "d:3|g"]);
}

#[test]
fn windows_end_on_wall_clock_multiples_of_the_interval() {
    let now = Instant::now();
    let at = |ms: u64| UNIX_EPOCH + Duration::from_millis(ms);
    let two = Duration::from_secs(2);
    assert_eq!(
        window_end(two, now, at(10_000)),
        now + two,
        "on a boundary: the next one"
    );
    assert_eq!(
        window_end(two, now, at(10_001)),
        now + Duration::from_millis(1_999)
    );
    assert_eq!(
        window_end(Duration::from_secs(10), now, at(19_999)),
        now + Duration::from_millis(1)
    );
}

#[test]
fn a_line_of_no_room_holds_one_distribution_value_protocol_1_0() {
    let mut w = Window::new(100);
    w.begin("m:a", None);
    for v in [1u64, 22, 333] {
        w.point("d", MetricKind::Distribution, Value::UInt(v));
    }
    w.point("g", MetricKind::Gauge, Value::UInt(7));
    assert_eq!(
        lines_of(&mut w, 0),
        ["d:1|d|#m:a", "d:22|d|#m:a", "d:333|d|#m:a", "g:7|g|#m:a"]
    );
}

#[test]
fn a_tag_set_or_name_met_under_a_new_number_is_still_the_same_context() {
    // The mapper renders a tag set again, under a new number, once its cache started over.
    let mut w = Window::new(100);
    for (tag_set, name, value) in [(5, 7, 1), (6, 8, 2), (5, 8, 3), (0, 0, 4)] {
        w.begin_tag_set(
            Interned {
                id: tag_set,
                text: "m:a",
            },
            None,
        );
        let name = Interned {
            id: name,
            text: "x",
        };
        w.point_named(name, MetricKind::Gauge, Value::UInt(value));
        w.point_named(name, MetricKind::Count, Value::UInt(value));
    }
    assert_eq!(w.contexts(), 2);
    assert_eq!(lines_of(&mut w, 1432), ["x:4|g|#m:a", "x:10|c|#m:a"]);
}

#[test]
fn numbers_are_forgotten_with_the_window() {
    let mut w = Window::new(100);
    for tags in ["m:a", "m:b"] {
        w.begin_tag_set(Interned { id: 9, text: tags }, Some(1));
        w.point_named(
            Interned { id: 3, text: tags },
            MetricKind::Gauge,
            Value::UInt(1),
        );
        assert_eq!(lines_of(&mut w, 1432), [format!("{tags}:1|g|#{tags}|T1")]);
    }
}

#[test]
fn a_context_costs_one_slot_of_32_bytes_and_its_index_entry() {
    // One window of 100,000 distinct contexts stays under 16 MB (benches/throughput.rs prints
    // the whole count): a slot, an index entry and a share of its tag set's group and text.
    assert!(std::mem::size_of::<Slot>() <= 32);
    assert!(std::mem::size_of::<Group>() <= 48);
}

#[test]
fn the_group_cache_survives_its_window_numbers_wrapping() {
    let mut w = Window::new(100);
    w.window = u32::MAX;
    let tags = Interned { id: 9, text: "m:a" };
    w.begin_tag_set(tags, None);
    w.point("x", MetricKind::Gauge, Value::UInt(1));
    // An entry as if made in a window that got the number the next one gets.
    for entry in w.group_cache.iter_mut().filter(|e| e.tag_set == 9) {
        entry.window = 1;
    }
    assert_eq!(lines_of(&mut w, 1432), ["x:1|g|#m:a"]);
    w.begin_tag_set(tags, None);
    w.point("x", MetricKind::Gauge, Value::UInt(2));
    assert_eq!(lines_of(&mut w, 1432), ["x:2|g|#m:a"]);
}
