//! One test per mapping rule of the contract.

use super::*;
use crate::decode::decode;
use crate::embedded::PUBLIC_SAMPLE;
use crate::telemetry::Snapshot;

/// 2021-02-20T00:21:54Z, the public sample's time.
const SAMPLE_TIME: i64 = 1_613_780_514;

/// The lines of the message's fields (its call count, always last, is checked and left out).
fn lines_with(mapper: &mut MetricMapper, json: &str) -> (Vec<String>, Snapshot) {
    let (mut lines, snapshot) = all_lines_with(mapper, json);
    let calls = lines.pop().expect("every message has a call count");
    assert!(calls.contains(".calls:1|c"), "{calls}");
    (lines, snapshot)
}

fn all_lines_with(mapper: &mut MetricMapper, json: &str) -> (Vec<String>, Snapshot) {
    let counters = Counters::default();
    let message = decode(json.as_bytes()).expect("test input is valid JSON");
    let mut lines = Vec::new();
    mapper
        .map_message(&message, &counters, |line| {
            lines.push(line.to_string());
            Ok::<_, ()>(())
        })
        .unwrap();
    (lines, counters.snapshot())
}

fn lines(json: &str) -> Vec<String> {
    lines_with(&mut MetricMapper::builder("algorithmia").build(), json).0
}

#[test]
fn the_public_sample_yields_its_two_metrics_tagged_by_model() {
    assert_eq!(
        lines(PUBLIC_SAMPLE),
        [
            "algorithmia.risk_score:0.2|g|#algorithm_name:credit_card_approval,algorithm_version:1.0.6,algorithm_owner:asli",
            "algorithmia.duration_milliseconds:8|g|#algorithm_name:credit_card_approval,algorithm_version:1.0.6,algorithm_owner:asli",
        ]
    );
}

#[test]
fn finite_numbers_become_gauges_as_written() {
    assert_eq!(
        lines(r#"{"a":0,"b":-3,"c":1.5,"d":18446744073709551615,"e":-0.25,"f":1e300}"#),
        [
            "algorithmia.a:0|g",
            "algorithmia.b:-3|g",
            "algorithmia.c:1.5|g",
            "algorithmia.d:18446744073709551615|g",
            "algorithmia.e:-0.25|g",
            "algorithmia.f:1e300|g"
        ]
    );
}

#[test]
fn booleans_become_one_and_zero_unless_disabled() {
    assert_eq!(
        lines(r#"{"approved":true,"flagged":false}"#),
        ["algorithmia.approved:1|g", "algorithmia.flagged:0|g"]
    );
    let mut off = MetricMapper::builder("algorithmia").booleans(false).build();
    let (out, counts) = lines_with(&mut off, r#"{"approved":true}"#);
    assert!(out.is_empty());
    assert_eq!(counts.skipped(SkipReason::Boolean), 1);
}

#[test]
fn numeric_strings_become_numbers_unless_disabled() {
    assert_eq!(
        lines(r#"{"a":"4","b":"-2","c":" 0.75 ","d":"1e3","e":"+5"}"#),
        [
            "algorithmia.a:4|g",
            "algorithmia.b:-2|g",
            "algorithmia.c:0.75|g",
            "algorithmia.d:1000.0|g",
            "algorithmia.e:5|g"
        ]
    );
    let mut off = MetricMapper::builder("algorithmia")
        .numeric_strings(false)
        .build();
    let (out, counts) = lines_with(&mut off, r#"{"a":"4"}"#);
    assert!(out.is_empty());
    assert_eq!(counts.skipped(SkipReason::String), 1);
}

#[test]
fn other_values_are_skipped_and_counted_by_reason() {
    let (out, c) = lines_with(
        &mut MetricMapper::builder("algorithmia").build(),
        r#"{"n":null,"a":[1,2],"o":{"x":1},"s":"high","s2":"","nan":"NaN","inf":"-inf","word":"Infinity","ok":1}"#,
    );
    assert_eq!(out, ["algorithmia.ok:1|g"]);
    assert_eq!(c.skipped(SkipReason::Null), 1);
    assert_eq!(c.skipped(SkipReason::Array), 1);
    assert_eq!(c.skipped(SkipReason::Object), 1);
    assert_eq!(c.skipped(SkipReason::String), 2);
    assert_eq!(c.skipped(SkipReason::NonFinite), 3);
}

#[test]
fn python_nan_and_infinity_are_skipped_as_non_finite() {
    let (out, c) = lines_with(
        &mut MetricMapper::builder("algorithmia").build(),
        r#"{"a":NaN,"b":Infinity,"c":2}"#,
    );
    assert_eq!(out, ["algorithmia.c:2|g"]);
    assert_eq!(c.skipped(SkipReason::NonFinite), 2);
}

#[test]
fn operational_fields_are_never_metrics_and_are_configurable() {
    assert_eq!(
        lines(r#"{"request_id":"5","session_id":"6","time":7,"algorithm_version":"1"}"#),
        Vec::<String>::new()
    );
    let mut m = MetricMapper::builder("algorithmia")
        .operational_fields(["timestamp", "execution_time_ms"])
        .tag_fields(Vec::<String>::new())
        .build();
    let (out, _) = lines_with(&mut m, r#"{"timestamp":1,"execution_time_ms":2,"time":3}"#);
    assert_eq!(out, ["algorithmia.time:3|g"]);
}

#[test]
fn a_message_without_metrics_is_counted_not_an_error() {
    let (out, c) = lines_with(
        &mut MetricMapper::builder("algorithmia").build(),
        r#"{"algorithm_name":"x"}"#,
    );
    assert!(out.is_empty());
    assert_eq!(c.messages_without_metrics, 1);
    let (_, c) = lines_with(&mut MetricMapper::builder("algorithmia").build(), r#"{}"#);
    assert_eq!(c.messages_without_metrics, 1);
}

#[test]
fn include_and_exclude_globs_apply_after_type_rules() {
    let mut m = MetricMapper::builder("algorithmia")
        .include(["risk_*", "duration_milliseconds"])
        .exclude(["*_debug"])
        .build();
    let (out, c) = lines_with(
        &mut m,
        r#"{"risk_score":1,"risk_debug":2,"approved":1,"duration_milliseconds":3,"risk_label":"x"}"#,
    );
    assert_eq!(
        out,
        [
            "algorithmia.risk_score:1|g",
            "algorithmia.duration_milliseconds:3|g"
        ]
    );
    assert_eq!(c.skipped(SkipReason::Filtered), 2);
    assert_eq!(
        c.skipped(SkipReason::String),
        1,
        "a non-numeric value is skipped for its type first"
    );
}

#[test]
fn glob_patterns_match_like_a_shell() {
    assert!(glob_match("risk_*", "risk_score"));
    assert!(glob_match("*", ""));
    assert!(glob_match("a?c", "abc"));
    assert!(glob_match("*score*", "risk_score_v2"));
    assert!(glob_match("a*b*c", "aXbYbZc"));
    assert!(!glob_match("risk_*", "xrisk_score"));
    assert!(!glob_match("a?c", "ac"));
    assert!(!glob_match("abc", "abcd"));
}

#[test]
fn names_are_cleaned_to_datadogs_rules() {
    assert_eq!(
        lines(r#"{"risk score":1,"p(approve)":2,"dotted.name_1":3,"a|b:c#d,e\nf":5}"#),
        [
            "algorithmia.risk_score:1|g",
            "algorithmia.p_approve_:2|g",
            "algorithmia.dotted.name_1:3|g",
            "algorithmia.a_b_c_d_e_f:5|g"
        ]
    );
}

#[test]
fn a_name_with_nothing_usable_is_skipped() {
    let (out, c) = lines_with(
        &mut MetricMapper::builder("algorithmia").build(),
        r#"{"":1,"é":2,"   ":3}"#,
    );
    assert!(out.is_empty(), "{out:?}");
    assert_eq!(c.skipped(SkipReason::InvalidName), 3);
}

#[test]
fn names_are_cut_at_200_characters() {
    let long = "x".repeat(300);
    let out = lines(&format!(r#"{{"{long}":1}}"#));
    let name = out[0].split(':').next().unwrap();
    assert_eq!(name.len(), 200);
    assert!(name.starts_with("algorithmia.xxx"));
    let mixed = "é".repeat(300);
    let out = lines(&format!(r#"{{"a{mixed}":1}}"#));
    assert_eq!(out[0].split(':').next().unwrap().len(), 200);
}

#[test]
fn tags_come_from_tag_fields_in_order_then_static_tags() {
    let mut m = MetricMapper::builder("algorithmia")
        .static_tags(["cluster:eu", "env:prod"])
        .build();
    let (out, _) = lines_with(
        &mut m,
        r#"{"x":1,"algorithm_owner":"asli","algorithm_name":"m"}"#,
    );
    assert_eq!(
        out,
        ["algorithmia.x:1|g|#algorithm_name:m,algorithm_owner:asli,cluster:eu,env:prod"]
    );
}

#[test]
fn a_missing_tag_field_is_left_out_never_fatal() {
    assert_eq!(lines(r#"{"x":1}"#), ["algorithmia.x:1|g"]);
    assert_eq!(
        lines(r#"{"x":1,"algorithm_name":null,"algorithm_version":""}"#),
        ["algorithmia.x:1|g"]
    );
}

#[test]
fn tag_values_of_other_types_are_written_plainly() {
    assert_eq!(
        lines(r#"{"x":1,"algorithm_name":7,"algorithm_version":1.5,"algorithm_owner":true}"#),
        ["algorithmia.x:1|g|#algorithm_name:7,algorithm_version:1.5,algorithm_owner:true"]
    );
}

#[test]
fn no_input_can_inject_a_tag_a_field_or_a_metric() {
    let hostile = r#"{"x":1,"algorithm_name":"a,b|c#d\ne\rf:g|#evil:1","algorithm_owner":"ok"}"#;
    let out = lines(hostile);
    assert_eq!(
        out,
        ["algorithmia.x:1|g|#algorithm_name:a_b_c_d_e_f:g__evil:1,algorithm_owner:ok"]
    );
    for line in &out {
        assert_eq!(line.matches('|').count(), 2);
        assert_eq!(line.matches('#').count(), 1);
        assert!(!line.contains('\n') && !line.contains('\r'));
    }
}

#[test]
fn a_tag_never_ends_with_a_colon() {
    // Found by the decode_map fuzz target: `request_id:req-1:` broke Datadog's tag rules.
    let mut m = MetricMapper::builder("algorithmia")
        .tag_fields(["algorithm_name", "request_id", "algorithm_owner"])
        .build();
    let (out, _) = lines_with(
        &mut m,
        r#"{"x":1,"algorithm_name":"m::","request_id":":","algorithm_owner":"a:b:"}"#,
    );
    assert_eq!(
        out[0],
        "algorithmia.x:1|g|#algorithm_name:m,algorithm_owner:a:b"
    );
    // Nor when the cut at 200 characters lands after one.
    let long = format!("{}:tail", "v".repeat(198 - "algorithm_name".len()));
    let (out, _) = lines_with(&mut m, &format!(r#"{{"x":1,"algorithm_name":"{long}"}}"#));
    let tag = out[0].split("|#").nth(1).unwrap();
    assert!(!tag.ends_with(':') && tag.len() < 200, "{tag}");
}

#[test]
fn a_number_that_does_not_fit_its_tag_is_left_out_never_cut() {
    let key = "k".repeat(185); // leaves 14 bytes for the value
    let mut m = MetricMapper::builder("algorithmia")
        .tag_fields([key.as_str(), "algorithm_name"])
        .build();
    for value in [
        "-9223372036854775808",
        "0.30000000000000004",
        "12345678901234.5",
    ] {
        let (out, _) = lines_with(
            &mut m,
            &format!(r#"{{"x":1,"{key}":{value},"algorithm_name":"m"}}"#),
        );
        assert_eq!(out[0], "algorithmia.x:1|g|#algorithm_name:m", "{value}");
    }
    let (out, _) = lines_with(&mut m, &format!(r#"{{"x":1,"{key}":1234567890123}}"#));
    assert_eq!(out[0], format!("algorithmia.x:1|g|#{key}:1234567890123"));
}

#[test]
fn tag_values_keep_unicode_letters_and_are_cut_at_200_characters() {
    assert_eq!(
        lines(r#"{"x":1,"algorithm_owner":"Zoë Ñ"}"#),
        ["algorithmia.x:1|g|#algorithm_owner:Zoë_Ñ"]
    );
    let long = "v".repeat(500);
    let out = lines(&format!(r#"{{"x":1,"algorithm_name":"{long}"}}"#));
    let tag = out[0].split("|#").nth(1).unwrap();
    assert_eq!(tag.chars().count(), 200);
}

#[test]
fn request_and_session_ids_can_be_made_tags() {
    let mut m = MetricMapper::builder("algorithmia")
        .tag_fields(["algorithm_name", "request_id"])
        .build();
    let (out, _) = lines_with(
        &mut m,
        r#"{"x":1,"request_id":"req-1","algorithm_name":"m"}"#,
    );
    assert_eq!(
        out,
        ["algorithmia.x:1|g|#algorithm_name:m,request_id:req-1"]
    );
}

#[test]
fn timestamps_are_attached_from_the_time_field_when_enabled() {
    let mut m = MetricMapper::builder("algorithmia")
        .send_timestamps(true, "time")
        .fixed_clock(SAMPLE_TIME + 30)
        .build();
    let (out, _) = lines_with(&mut m, PUBLIC_SAMPLE);
    assert!(out[0].ends_with(&format!("|T{SAMPLE_TIME}")), "{out:?}");
    assert_eq!(out.len(), 2);
    assert!(out.iter().all(|l| l.ends_with(&format!("|T{SAMPLE_TIME}"))));
    // And never without the setting.
    assert!(!lines(PUBLIC_SAMPLE)[0].contains("|T"));
}

#[test]
fn every_documented_time_format_is_read() {
    let t = SAMPLE_TIME;
    let cases: [(&str, i64); 9] = [
        (r#""2021-02-20T00:21:54.867231""#, t),
        (r#""2021-02-20T00:21:54""#, t),
        (r#""2021-02-20 00:21:54""#, t),
        (r#""2021-02-20T00:21:54Z""#, t),
        (r#""2021-02-20T01:21:54.5+01:00""#, t),
        (r#""2021-02-19T19:21:54-0500""#, t),
        (r#""2021-02-20T02:21:54+02""#, t),
        ("1613780514", t),
        ("1613780514867", t),
    ];
    for (value, expected) in cases {
        let mut m = MetricMapper::builder("a")
            .send_timestamps(true, "time")
            .fixed_clock(t)
            .build();
        let (out, _) = lines_with(&mut m, &format!(r#"{{"x":1,"time":{value}}}"#));
        assert_eq!(out, [format!("a.x:1|g|T{expected}")], "{value}");
    }
    let mut m = MetricMapper::builder("a")
        .send_timestamps(true, "time")
        .fixed_clock(t)
        .build();
    let (out, _) = lines_with(&mut m, r#"{"x":1,"time":1613780514.25}"#);
    assert_eq!(out, [format!("a.x:1|g|T{t}")]);
}

#[test]
fn points_without_a_usable_time_are_sent_without_one_and_counted() {
    let cases = [
        (r#"{"x":1}"#, TimestampIssue::Missing),
        (r#"{"x":1,"time":"yesterday"}"#, TimestampIssue::Unparseable),
        (
            r#"{"x":1,"time":"2021-02-30T00:00:00"}"#,
            TimestampIssue::Unparseable,
        ),
        (
            r#"{"x":1,"time":"2021-02-20T25:00:00"}"#,
            TimestampIssue::Unparseable,
        ),
        (r#"{"x":1,"time":null}"#, TimestampIssue::Unparseable),
        (
            r#"{"x":1,"time":"2021-02-19T23:21:53"}"#,
            TimestampIssue::OutOfWindow,
        ), // 1 h 1 s old
        (
            r#"{"x":1,"time":"2021-02-20T00:31:55"}"#,
            TimestampIssue::OutOfWindow,
        ), // 10 min 1 s ahead
    ];
    for (json, issue) in cases {
        let mut m = MetricMapper::builder("a")
            .send_timestamps(true, "time")
            .fixed_clock(SAMPLE_TIME)
            .build();
        let (out, c) = lines_with(&mut m, json);
        assert_eq!(out, ["a.x:1|g"], "{json}");
        assert_eq!(c.timestamp_issues(issue), 1, "{json}");
    }
    // The edges of the window are still accepted.
    for time in ["2021-02-19T23:21:54", "2021-02-20T00:31:54"] {
        let mut m = MetricMapper::builder("a")
            .send_timestamps(true, "time")
            .fixed_clock(SAMPLE_TIME)
            .build();
        let (out, _) = lines_with(&mut m, &format!(r#"{{"x":1,"time":"{time}"}}"#));
        assert!(out[0].contains("|T"), "{time}");
    }
}

#[test]
fn the_same_message_always_yields_the_same_lines_in_field_order() {
    let mut m = MetricMapper::builder("algorithmia").build();
    let json = r#"{"z":1,"a":2,"m":"3","algorithm_name":"n"}"#;
    let (first, _) = lines_with(&mut m, json);
    let (second, _) = lines_with(&mut m, json);
    assert_eq!(first, second);
    assert_eq!(
        first,
        [
            "algorithmia.z:1|g|#algorithm_name:n",
            "algorithmia.a:2|g|#algorithm_name:n",
            "algorithmia.m:3|g|#algorithm_name:n"
        ]
    );
}

#[test]
fn models_taking_turns_each_keep_their_own_rules_and_tags() {
    // More models than first fields remembered, with shared and distinct field names, in an
    // order that makes every remembered guess both hit and miss.
    let mut m = MetricMapper::builder("p").build();
    let models: Vec<String> = (0..6)
        .map(|i| {
            format!(
                r#"{{"f{i}":{i},"shared":1,"x{}":2,"algorithm_name":"m{i}","session_id":"s"}}"#,
                i % 2
            )
        })
        .collect();
    for round in 0..4 {
        for i in [0, 1, 0, 2, 3, 4, 5, 1, 5, 0] {
            let i = (i + round) % models.len();
            let (lines, _) = lines_with(&mut m, &models[i]);
            assert_eq!(
                lines,
                [
                    format!("p.f{i}:{i}|g|#algorithm_name:m{i}"),
                    format!("p.shared:1|g|#algorithm_name:m{i}"),
                    format!("p.x{}:2|g|#algorithm_name:m{i}", i % 2),
                ],
                "round {round}, model {i}"
            );
        }
    }
}

#[test]
fn an_emit_error_stops_the_message() {
    let message = decode(br#"{"a":1,"b":2}"#).unwrap();
    let mut calls = 0;
    let result =
        MetricMapper::builder("p")
            .build()
            .map_message(&message, &Counters::default(), |_| {
                calls += 1;
                Err("socket gone")
            });
    assert_eq!(result, Err("socket gone"));
    assert_eq!(calls, 1);
}

#[test]
fn iso8601_parsing_matches_known_instants() {
    assert_eq!(parse_iso8601("1970-01-01T00:00:00"), Some(0));
    assert_eq!(parse_iso8601("2000-02-29T12:00:00Z"), Some(951_825_600));
    assert_eq!(parse_iso8601("2100-02-29T00:00:00"), None);
    assert_eq!(parse_iso8601("2021-02-20T00:21:54."), None);
    assert_eq!(parse_iso8601("2021-02-20T00:21:54+1"), None);
    assert_eq!(parse_iso8601("2021-02-20"), None);
}

#[test]
fn tag_values_of_multi_byte_letters_are_cut_at_200_bytes() {
    let long = "漢".repeat(300);
    let out = lines(&format!(r#"{{"x":1,"algorithm_name":"{long}"}}"#));
    let tag = out[0].split("|#").nth(1).unwrap();
    assert!(tag.len() <= 200, "{} bytes", tag.len());
    assert!(
        tag.len() > 190,
        "cut on a character boundary, not much shorter"
    );
}

#[test]
fn every_message_counts_one_call_tagged_like_its_points() {
    let mut mapper = MetricMapper::builder("algorithmia").build();
    let (lines, _) = all_lines_with(&mut mapper, PUBLIC_SAMPLE);
    assert_eq!(
        lines.last().unwrap(),
        "algorithmia.calls:1|c|#algorithm_name:credit_card_approval,algorithm_version:1.0.6,algorithm_owner:asli"
    );
    let (lines, snapshot) = all_lines_with(&mut mapper, r#"{"algorithm_name":"m"}"#);
    assert_eq!(lines, ["algorithmia.calls:1|c|#algorithm_name:m"]);
    assert_eq!(
        snapshot.messages_without_metrics, 1,
        "still a message without metrics"
    );
    let mut prefixed = MetricMapper::builder("ml.insights").build();
    let (lines, _) = all_lines_with(&mut prefixed, "{}");
    assert_eq!(lines, ["ml.insights.calls:1|c"]);
}

#[test]
fn a_field_named_like_the_call_count_is_skipped_and_counted() {
    let (lines, snapshot) = lines_with(
        &mut MetricMapper::builder("algorithmia").build(),
        r#"{"calls":5,"calls_total":6}"#,
    );
    assert_eq!(lines, ["algorithmia.calls_total:6|g"]);
    assert_eq!(snapshot.skipped(SkipReason::ReservedName), 1);
}

#[test]
fn distribution_fields_are_sent_as_distributions_without_timestamps() {
    let mut mapper = MetricMapper::builder("algorithmia")
        .distributions(["duration_*", "risk_score"])
        .send_timestamps(true, "time")
        .fixed_clock(SAMPLE_TIME)
        .build();
    let (lines, _) = lines_with(&mut mapper, PUBLIC_SAMPLE);
    let tags = "algorithm_name:credit_card_approval,algorithm_version:1.0.6,algorithm_owner:asli";
    assert_eq!(
        lines,
        [
            format!("algorithmia.risk_score:0.2|d|#{tags}"),
            format!("algorithmia.duration_milliseconds:8|d|#{tags}"),
        ]
    );
    let (all, _) = all_lines_with(&mut mapper, PUBLIC_SAMPLE);
    assert_eq!(
        all.last().unwrap(),
        &format!("algorithmia.calls:1|c|#{tags}|T{SAMPLE_TIME}"),
        "the call count keeps its timestamp"
    );
}
