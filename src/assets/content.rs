//! What counts as the content of a dashboard or monitor, its hash, and the marker that records, in
//! the object itself, the hash of what `assets` last wrote there.
//!
//! The content leaves out what Datadog adds or changes on its own (ids, dates, authors, a muted
//! monitor's `silenced`), and an empty value is the same as no value, so that an object nobody
//! touched hashes as it did when it was written. The hash is FNV-1a 64 of a canonical rendering
//! (keys sorted, numbers as `f64`), stable across releases and platforms.

use std::fmt::Write as _;

use serde_json::{Map, Value};

/// Monitor tag holding the hash of the content `assets` wrote.
pub const HASH_TAG: &str = "algorithmia-datadog-hash:";
/// Monitor tag naming which monitor it is, whatever the user renamed it to.
pub const ID_TAG: &str = "algorithmia-datadog-id:";
/// Start of the marker `assets` appends to a dashboard's description.
pub const DASHBOARD_MARKER: &str = "[algorithmia-datadog id:";

/// Top-level dashboard keys that are content (the rest is Datadog's bookkeeping).
const DASHBOARD_KEYS: [&str; 8] = [
    "title",
    "description",
    "widgets",
    "template_variables",
    "layout_type",
    "reflow_type",
    "notify_list",
    "template_variable_presets",
];

/// Monitor keys that are content.
const MONITOR_KEYS: [&str; 6] = ["name", "type", "query", "message", "tags", "priority"];

/// Monitor options that are content: the ones our monitors set. Others (Datadog's defaults, and
/// `silenced`, which muting changes) are left out of the hash and kept as they are on update.
pub const MONITOR_OPTIONS: [&str; 10] = [
    "thresholds",
    "threshold_windows",
    "notify_no_data",
    "no_data_timeframe",
    "renotify_interval",
    "require_full_window",
    "include_tags",
    "notify_audit",
    "new_host_delay",
    "evaluation_delay",
];

/// The dashboard's content: its description without our marker, widgets without the ids Datadog
/// gives them.
pub fn dashboard_content(dashboard: &Value) -> Value {
    let mut out = Map::new();
    for key in DASHBOARD_KEYS {
        let Some(value) = dashboard.get(key) else {
            continue;
        };
        let value = match (key, value) {
            ("description", Value::String(d)) => Value::String(strip_dashboard_marker(d).0),
            ("widgets", widgets) => without_widget_ids(widgets),
            _ => value.clone(),
        };
        out.insert(key.to_string(), value);
    }
    Value::Object(out)
}

/// The monitor's content: tags sorted and without our hash tag, the options we set.
pub fn monitor_content(monitor: &Value) -> Value {
    let mut out = Map::new();
    for key in MONITOR_KEYS {
        let Some(value) = monitor.get(key) else {
            continue;
        };
        let value = if key == "tags" {
            let mut tags: Vec<&str> = value
                .as_array()
                .map(|t| t.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            tags.retain(|t| !t.starts_with(HASH_TAG));
            tags.sort_unstable();
            Value::from(tags)
        } else {
            value.clone()
        };
        out.insert(key.to_string(), value);
    }
    let mut options = Map::new();
    for key in MONITOR_OPTIONS {
        if let Some(v) = monitor["options"].get(key) {
            options.insert(key.to_string(), v.clone());
        }
    }
    out.insert("options".into(), Value::Object(options));
    Value::Object(out)
}

fn without_widget_ids(widgets: &Value) -> Value {
    match widgets {
        Value::Array(list) => Value::Array(
            list.iter()
                .map(|w| match w {
                    Value::Object(map) => {
                        let mut map = map.clone();
                        map.remove("id");
                        if let Some(Value::Object(def)) = map.get_mut("definition") {
                            if let Some(inner) = def.get("widgets").map(without_widget_ids) {
                                def.insert("widgets".into(), inner);
                            }
                        }
                        Value::Object(map)
                    }
                    other => other.clone(),
                })
                .collect(),
        ),
        other => other.clone(),
    }
}

/// FNV-1a 64 of the canonical rendering, as 16 lowercase hex digits (a valid tag value).
pub fn hash(content: &Value) -> String {
    let mut text = String::new();
    canonical(content, &mut text);
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{h:016x}")
}

fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        _ => false,
    }
}

fn canonical(v: &Value, out: &mut String) {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        // 10000 and 10000.0 are the same threshold.
        Value::Number(n) => {
            let _ = write!(out, "{}", n.as_f64().unwrap_or(f64::NAN));
        }
        Value::String(s) => out.push_str(&Value::String(s.clone()).to_string()),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                canonical(item, out);
            }
            out.push(']');
        }
        Value::Object(map) => {
            let mut keys: Vec<&String> = map
                .iter()
                .filter(|(_, v)| !is_empty(v))
                .map(|(k, _)| k)
                .collect();
            keys.sort_unstable();
            out.push('{');
            for (i, key) in keys.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String((*key).clone()).to_string());
                out.push(':');
                canonical(&map[*key], out);
            }
            out.push('}');
        }
    }
}

/// The description without our marker, and the marker's (id, hash) if there was one.
pub fn strip_dashboard_marker(description: &str) -> (String, Option<(String, String)>) {
    let Some(at) = description.rfind(DASHBOARD_MARKER) else {
        return (description.to_string(), None);
    };
    let rest = &description[at + DASHBOARD_MARKER.len()..];
    let parsed = rest.strip_suffix(']').and_then(|inner| {
        let (id, hash) = inner.split_once(" hash:")?;
        Some((id.to_string(), hash.to_string()))
    });
    match parsed {
        Some(marker) => (description[..at].trim_end().to_string(), Some(marker)),
        None => (description.to_string(), None),
    }
}

/// The description with our marker appended.
pub fn with_dashboard_marker(description: &str, id: &str, hash: &str) -> String {
    format!("{description}\n\n{DASHBOARD_MARKER}{id} hash:{hash}]")
}

/// The value of the monitor tag that starts with `prefix`.
pub fn tag_value<'a>(monitor: &'a Value, prefix: &str) -> Option<&'a str> {
    monitor["tags"]
        .as_array()?
        .iter()
        .filter_map(Value::as_str)
        .find_map(|t| t.strip_prefix(prefix))
}

/// The monitor's tags with our hash tag set to `hash`.
pub fn set_hash_tag(monitor: &mut Value, hash: &str) {
    let mut tags: Vec<Value> = monitor["tags"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|t| !t.as_str().is_some_and(|t| t.starts_with(HASH_TAG)))
        .collect();
    tags.push(Value::from(format!("{HASH_TAG}{hash}")));
    monitor["tags"] = Value::Array(tags);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn what_datadog_adds_does_not_change_the_hash_and_an_edit_does() {
        let sent = json!({"name": "n", "type": "query alert", "query": "q", "message": "m",
            "tags": ["b", "a"], "options": {"thresholds": {"critical": 10000}, "silenced": {}}});
        let stored = json!({"id": 7, "name": "n", "type": "query alert", "query": "q",
            "message": "m", "tags": ["a", "b", "algorithmia-datadog-hash:0"], "created": "x",
            "options": {"thresholds": {"critical": 10000.0}, "silenced": {"*": null},
            "notify_no_data": null, "new_group_delay": 60}});
        assert_eq!(
            hash(&monitor_content(&sent)),
            hash(&monitor_content(&stored))
        );
        let mut edited = stored.clone();
        edited["message"] = json!("m @slack-ml");
        assert_ne!(
            hash(&monitor_content(&sent)),
            hash(&monitor_content(&edited))
        );
    }

    #[test]
    fn the_dashboard_marker_round_trips() {
        let d = with_dashboard_marker("About.", "algorithmia", "0123456789abcdef");
        let (text, marker) = strip_dashboard_marker(&d);
        assert_eq!(text, "About.");
        assert_eq!(
            marker,
            Some(("algorithmia".into(), "0123456789abcdef".into()))
        );
        assert_eq!(strip_dashboard_marker("plain").1, None);
    }
}
