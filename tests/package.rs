//! The Datadog package agrees with the code: every self-metric the forwarder can send is in
//! `metadata.csv`, every service check in `service_checks.json`, and every metric a dashboard or
//! monitor queries is either listed or documented as user-defined.

use std::collections::BTreeSet;
use std::path::Path;

use algorithmia_datadog::{SelfMetricKind, SELF_METRICS, SERVICE_CHECKS};
use serde_json::Value;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn read(path: &str) -> String {
    std::fs::read_to_string(Path::new(ROOT).join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn json(path: &str) -> Value {
    serde_json::from_str(&read(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// `metadata.csv` as rows of named columns (it has no quoted commas).
fn metadata() -> Vec<std::collections::HashMap<String, String>> {
    let text = read("metadata.csv");
    let mut lines = text.lines();
    let header: Vec<String> = lines.next().unwrap().split(',').map(String::from).collect();
    lines
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let cells: Vec<&str> = line.split(',').collect();
            assert_eq!(
                cells.len(),
                header.len(),
                "metadata.csv row with a stray comma: {line}"
            );
            header
                .iter()
                .cloned()
                .zip(cells.iter().map(|c| c.to_string()))
                .collect()
        })
        .collect()
}

fn listed_metrics() -> BTreeSet<String> {
    metadata()
        .into_iter()
        .map(|row| row["metric_name"].clone())
        .collect()
}

/// Metric names the README documents as user-defined examples (in backticks).
fn documented_user_metrics() -> BTreeSet<String> {
    let readme = read("README.md");
    let section = readme
        .split("### Metrics")
        .nth(1)
        .and_then(|s| s.split("### Service Checks").next())
        .expect("README has a Metrics section");
    metric_names_in(section)
}

/// Every `algorithmia.<name>` in a text.
fn metric_names_in(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("algorithmia.") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '.'))
            .unwrap_or(tail.len());
        names.insert(tail[..end].trim_end_matches('.').to_string());
        rest = &tail[end..];
    }
    names
}

fn service_checks_listed() -> BTreeSet<String> {
    json("service_checks.json")
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["check"].as_str().unwrap().to_string())
        .collect()
}

fn assets() -> Vec<(String, Value)> {
    let manifest = json("manifest.json");
    let mut out = Vec::new();
    for kind in ["dashboards", "monitors"] {
        for path in manifest["assets"][kind].as_object().unwrap().values() {
            let path = path.as_str().unwrap().to_string();
            out.push((path.clone(), json(&path)));
        }
    }
    out
}

/// Strings under `key` anywhere in a JSON document.
fn strings_under(value: &Value, keys: &[&str], out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                match v {
                    Value::String(s) if keys.contains(&k.as_str()) => out.push(s.clone()),
                    _ => strings_under(v, keys, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| strings_under(v, keys, out)),
        _ => {}
    }
}

#[test]
fn every_self_metric_is_in_metadata_csv_with_its_type() {
    let rows = metadata();
    for metric in SELF_METRICS {
        let row = rows
            .iter()
            .find(|r| r["metric_name"] == metric.name)
            .unwrap_or_else(|| panic!("{} is missing from metadata.csv", metric.name));
        let expected = match metric.kind {
            // DogStatsD counts are stored as rates over the Agent's 10 s flush.
            SelfMetricKind::Count => "rate",
            SelfMetricKind::Gauge => "gauge",
        };
        assert_eq!(row["metric_type"], expected, "{}", metric.name);
        if expected == "rate" {
            assert_eq!(row["interval"], "10", "{}", metric.name);
        }
    }
}

/// The per-model call count under the default prefix.
const CALLS: &str = "algorithmia.calls";

#[test]
fn the_call_count_is_listed_as_the_rate_datadog_shows() {
    let mapper = algorithmia_datadog::metrics::MetricMapper::builder("algorithmia").build();
    assert_eq!(mapper.calls_name(), CALLS);
    let rows = metadata();
    let row = rows
        .iter()
        .find(|r| r["metric_name"] == CALLS)
        .expect("metadata.csv lists the call count");
    // A DogStatsD count reaches Datadog as a rate over the Agent's 10 s flush.
    assert_eq!(
        (row["metric_type"].as_str(), row["interval"].as_str()),
        ("rate", "10")
    );
}

#[test]
fn every_metadata_row_is_something_the_forwarder_sends() {
    let sent: BTreeSet<&str> = SELF_METRICS.iter().map(|m| m.name).collect();
    for name in listed_metrics() {
        assert!(
            sent.contains(name.as_str())
                || name == "algorithmia.duration_milliseconds"
                || name == CALLS,
            "metadata.csv lists {name}, which nothing sends"
        );
    }
}

#[test]
fn every_service_check_is_in_service_checks_json_and_nothing_else() {
    let listed = service_checks_listed();
    let emitted: BTreeSet<String> = SERVICE_CHECKS.iter().map(|s| s.to_string()).collect();
    assert_eq!(listed, emitted);
}

#[test]
fn every_metric_a_dashboard_or_monitor_queries_is_listed_or_documented() {
    let listed = listed_metrics();
    let user_defined = documented_user_metrics();
    let checks = service_checks_listed();
    for (path, asset) in assets() {
        let mut queries = Vec::new();
        strings_under(&asset, &["query", "q"], &mut queries);
        assert!(!queries.is_empty(), "{path} queries nothing");
        for query in &queries {
            for name in metric_names_in(query) {
                let known = listed.contains(&name)
                    || user_defined.contains(&name)
                    || checks.contains(&name);
                assert!(known, "{path} queries {name}, which is neither in metadata.csv nor documented as user-defined");
            }
        }
        let mut check_names = Vec::new();
        strings_under(&asset, &["check"], &mut check_names);
        for check in check_names {
            assert!(
                checks.contains(&check),
                "{path} shows service check {check}, not in service_checks.json"
            );
        }
    }
}

#[test]
fn bundled_dashboards_embed_no_account_specific_id() {
    for (path, asset) in assets()
        .into_iter()
        .filter(|(p, _)| p.contains("dashboards"))
    {
        let text = asset.to_string();
        for key in [
            "\"alert_id\"",
            "\"monitor_id\"",
            "\"id\":",
            "\"org_id\"",
            "\"author_handle\"",
        ] {
            assert!(!text.contains(key), "{path} contains {key}");
        }
    }
}

#[test]
fn every_asset_the_manifest_names_exists_and_the_check_metric_is_listed() {
    let manifest = json("manifest.json");
    let integration = &manifest["assets"]["integration"];
    assert_eq!(integration["metrics"]["prefix"], "algorithmia.");
    let check = integration["metrics"]["check"].as_str().unwrap();
    assert!(listed_metrics().contains(check), "{check}");
    assert_eq!(
        integration["service_checks"]["metadata_path"],
        "service_checks.json"
    );
    assert_eq!(integration["metrics"]["metadata_path"], "metadata.csv");
    assert_eq!(assets().len(), 6);
    for (path, asset) in assets().into_iter().filter(|(p, _)| p.contains("monitors")) {
        assert_eq!(asset["version"], 2, "{path}");
        assert!(
            asset["tags"]
                .as_array()
                .unwrap()
                .contains(&Value::from("integration:algorithmia")),
            "{path}"
        );
        assert!(asset["description"].as_str().unwrap().len() < 300, "{path}");
    }
}

#[test]
fn the_duration_monitor_alerts_per_algorithm_and_version_at_the_documented_thresholds() {
    let monitor = json("assets/monitors/algorithm_duration.json");
    let definition = &monitor["definition"];
    let query = definition["query"].as_str().unwrap();
    assert!(
        query.starts_with("avg(last_5m):avg:algorithmia.duration_milliseconds"),
        "{query}"
    );
    assert!(
        query.contains("by {algorithm_name,algorithm_version}"),
        "{query}"
    );
    assert!(query.ends_with("> 10000"), "{query}");
    assert_eq!(definition["options"]["thresholds"]["critical"], 10000);
    assert_eq!(definition["options"]["thresholds"]["warning"], 5000);
}

#[test]
fn the_readme_gives_each_metric_the_type_metadata_csv_declares() {
    let readme = read("README.md");
    let rows: std::collections::HashMap<String, String> = readme
        .lines()
        .filter_map(|line| {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            // | `name` | type | description |
            let name = cells.get(1)?.strip_prefix('`')?.strip_suffix('`')?;
            Some((name.to_string(), cells.get(2)?.to_string()))
        })
        .collect();
    let metadata = metadata();
    assert!(!metadata.is_empty());
    for row in metadata {
        let name = &row["metric_name"];
        let documented = rows
            .get(name)
            .unwrap_or_else(|| panic!("{name} is not in the README's Metrics table"));
        assert_eq!(documented, &row["metric_type"], "{name}");
    }
}

#[test]
fn monitors_the_demo_could_trip_leave_its_points_out() {
    for path in [
        "assets/monitors/algorithm_duration.json",
        "assets/monitors/algorithm_calls_stopped.json",
        "assets/monitors/forwarder_messages_rejected.json",
    ] {
        let query = json(path)["definition"]["query"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(
            query.contains(&format!("{{!{}}}", algorithmia_datadog::demo::DEMO_TAG)),
            "{path}: {query}"
        );
    }
}

/// One versioning rule, kept in step: the top heading of `CHANGELOG.md` names the version being
/// built. While it says `Unreleased`, `Cargo.toml` carries that version with `-dev` (so `--version`
/// never claims a release that has not happened); once it has a date, exactly that version.
#[test]
fn the_crate_version_follows_the_changelog_s_top_heading() {
    let changelog = read("CHANGELOG.md");
    let heading = changelog
        .lines()
        .find_map(|l| l.strip_prefix("## "))
        .expect("CHANGELOG.md has a `## <version> / <date or Unreleased>` heading");
    let (version, when) = heading
        .split_once(" / ")
        .unwrap_or_else(|| panic!("CHANGELOG heading `{heading}` is not `<version> / <date>`"));
    let expected = if when == "Unreleased" {
        format!("{version}-dev")
    } else {
        assert!(
            when.len() == 10 && when.as_bytes()[4] == b'-' && when.as_bytes()[7] == b'-',
            "CHANGELOG heading `{heading}`: a release is dated YYYY-MM-DD"
        );
        version.to_string()
    };
    assert_eq!(
        env!("CARGO_PKG_VERSION"),
        expected,
        "Cargo.toml's version disagrees with CHANGELOG.md's top heading `{heading}`"
    );
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_algorithmia-datadog"))
        .arg("--version")
        .output()
        .expect("the binary runs");
    assert_eq!(
        String::from_utf8_lossy(&output.stdout).trim(),
        format!("algorithmia-datadog {expected}")
    );
}
