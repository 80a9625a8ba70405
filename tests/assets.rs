//! `assets install`, `assets compare` and `assets drift` against a local HTTP server that checks
//! the requests (paths, headers, bodies) and answers as the Datadog API does: it stores objects
//! in its own form (ids on every widget, its defaults added to a monitor's options, thresholds as
//! floats), and refuses a wrong key or a missing permission with Datadog's status and error body.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};

use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_algorithmia-datadog");
const API_KEY: &str = "test-api-key-0123456789";
const APP_KEY: &str = "test-app-key-abcdef";

#[derive(Default)]
struct Account {
    dashboards: Vec<(String, Value)>,
    monitors: Vec<(u64, Value)>,
    requests: Vec<(String, String)>,
    /// The application key may read but not write (a scoped key, or a read-only role).
    read_only: bool,
    next: u64,
}

impl Account {
    fn writes(&self) -> Vec<String> {
        self.requests
            .iter()
            .filter(|(m, _)| m != "GET")
            .map(|(m, p)| format!("{m} {p}"))
            .collect()
    }

    fn dashboard(&self) -> &Value {
        assert_eq!(self.dashboards.len(), 1, "one dashboard");
        &self.dashboards[0].1
    }

    fn monitor_named(&mut self, start: &str) -> &mut Value {
        let found = self
            .monitors
            .iter_mut()
            .find(|(_, m)| m["name"].as_str().unwrap().starts_with(start));
        &mut found.unwrap().1
    }
}

type Shared = Arc<Mutex<Account>>;

/// A fake Datadog API on loopback; returns its base URL.
fn fake_datadog(account: Shared) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let account = account.clone();
            std::thread::spawn(move || serve_connection(stream, &account));
        }
    });
    url
}

fn serve_connection(stream: TcpStream, account: &Mutex<Account>) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut stream = stream;
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
            return;
        }
        let mut parts = request_line.split_whitespace();
        let (method, path) = (
            parts.next().unwrap_or("").to_string(),
            parts.next().unwrap_or("").to_string(),
        );
        let mut headers = HashMap::new();
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((k, v)) = line.split_once(':') {
                headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
            }
        }
        let length: usize = headers
            .get("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let mut body = vec![0; length];
        reader.read_exact(&mut body).unwrap();
        let (status, answer) = handle(account, &method, &path, &headers, &body);
        let text = answer.to_string();
        let response = format!(
            "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{text}",
            text.len()
        );
        if stream.write_all(response.as_bytes()).is_err() {
            return;
        }
    }
}

fn forbidden() -> (u16, Value) {
    (403, json!({"errors": ["Forbidden"]}))
}

fn handle(
    account: &Mutex<Account>,
    method: &str,
    path: &str,
    headers: &HashMap<String, String>,
    body: &[u8],
) -> (u16, Value) {
    let mut account = account.lock().unwrap();
    account
        .requests
        .push((method.to_string(), path.to_string()));
    // A wrong API key is refused everywhere; a wrong application key everywhere but validate.
    if headers.get("dd-api-key").map(String::as_str) != Some(API_KEY) {
        return forbidden();
    }
    if path == "/api/v1/validate" {
        return (200, json!({"valid": true}));
    }
    if headers.get("dd-application-key").map(String::as_str) != Some(APP_KEY) {
        return forbidden();
    }
    if method != "GET" && account.read_only {
        return (
            403,
            json!({"errors": ["Forbidden", "Failed permission authorization checks"]}),
        );
    }
    let body: Value = if body.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(body).expect("a JSON body")
    };
    if method != "GET" {
        assert_eq!(
            headers.get("content-type").map(String::as_str),
            Some("application/json")
        );
    }
    account.next += 1;
    let serial = account.next;
    match (method, path) {
        ("GET", "/api/v1/dashboard") => {
            let list: Vec<Value> = account
                .dashboards
                .iter()
                .map(|(id, d)| json!({"id": id, "title": d["title"], "description": d["description"]}))
                .collect();
            (200, json!({ "dashboards": list }))
        }
        ("GET", p) if p.starts_with("/api/v1/dashboard/") => {
            let id = &p["/api/v1/dashboard/".len()..];
            match account.dashboards.iter().find(|(i, _)| i == id) {
                Some((_, d)) => (200, d.clone()),
                None => (404, json!({"errors": ["Dashboard not found"]})),
            }
        }
        ("POST", "/api/v1/dashboard") => {
            check_dashboard(&body);
            let id = format!("abc-def-{:03}", account.dashboards.len());
            let stored = store_dashboard(body, &id, serial);
            account.dashboards.push((id, stored.clone()));
            (200, stored)
        }
        ("PUT", p) if p.starts_with("/api/v1/dashboard/") => {
            check_dashboard(&body);
            let id = p["/api/v1/dashboard/".len()..].to_string();
            let stored = store_dashboard(body, &id, serial);
            match account.dashboards.iter_mut().find(|(i, _)| *i == id) {
                Some(entry) => {
                    entry.1 = stored.clone();
                    (200, stored)
                }
                None => (404, json!({"errors": ["Dashboard not found"]})),
            }
        }
        ("GET", "/api/v1/monitor?monitor_tags=integration%3Aalgorithmia") => {
            let list: Vec<Value> = account
                .monitors
                .iter()
                .filter(|(_, m)| {
                    m["tags"]
                        .as_array()
                        .is_some_and(|t| t.contains(&json!("integration:algorithmia")))
                })
                .map(|(_, m)| m.clone())
                .collect();
            (200, Value::Array(list))
        }
        ("POST", "/api/v1/monitor") => {
            check_monitor(&body);
            let id = 1000 + account.monitors.len() as u64;
            let stored = store_monitor(body, id);
            account.monitors.push((id, stored.clone()));
            (200, stored)
        }
        ("PUT", p) if p.starts_with("/api/v1/monitor/") => {
            check_monitor(&body);
            let id: u64 = p["/api/v1/monitor/".len()..].parse().unwrap();
            let stored = store_monitor(body, id);
            match account.monitors.iter_mut().find(|(i, _)| *i == id) {
                Some(entry) => {
                    entry.1 = stored.clone();
                    (200, stored)
                }
                None => (404, json!({"errors": ["Monitor not found"]})),
            }
        }
        _ => (
            404,
            json!({"errors": [format!("no route {method} {path}")]}),
        ),
    }
}

/// As Datadog keeps a dashboard: with its bookkeeping and an id on every widget.
fn store_dashboard(mut body: Value, id: &str, serial: u64) -> Value {
    fn number_widgets(widgets: &mut Value, next: &mut u64) {
        for w in widgets.as_array_mut().into_iter().flatten() {
            *next += 1;
            w["id"] = json!(*next * 7919);
            if let Some(inner) = w["definition"].get_mut("widgets") {
                number_widgets(inner, next);
            }
        }
    }
    let mut next = 0;
    number_widgets(&mut body["widgets"], &mut next);
    body["id"] = json!(id);
    body["url"] = json!(format!("/dashboard/{id}/algorithmia"));
    body["author_handle"] = json!("someone@example.com");
    body["created_at"] = json!("2026-11-30T10:00:00.000000+00:00");
    body["modified_at"] = json!(format!("2026-11-30T10:00:{serial:02}.000000+00:00"));
    body["is_read_only"] = json!(false);
    body
}

/// As Datadog keeps a monitor: with its bookkeeping, its option defaults, float thresholds.
fn store_monitor(mut body: Value, id: u64) -> Value {
    body["id"] = json!(id);
    body["created"] = json!("2026-11-30T10:00:00.000000+00:00");
    body["overall_state"] = json!("No Data");
    body["creator"] = json!({"handle": "someone@example.com"});
    let options = body["options"].as_object_mut().unwrap();
    for (key, default) in [
        ("new_host_delay", json!(300)),
        ("silenced", json!({})),
        ("notify_no_data", json!(false)),
        ("new_group_delay", json!(60)),
    ] {
        options.entry(key).or_insert(default);
    }
    if let Some(Value::Object(t)) = options.get_mut("thresholds") {
        for v in t.values_mut() {
            *v = json!(v.as_f64().unwrap());
        }
    }
    body
}

fn check_dashboard(body: &Value) {
    assert!(
        body["title"].is_string() && body["widgets"].is_array() && body["layout_type"].is_string(),
        "{body}"
    );
}

fn check_monitor(body: &Value) {
    for key in ["name", "type", "query", "message", "options"] {
        assert!(!body[key].is_null(), "monitor body without {key}: {body}");
    }
    assert!(
        body.get("version").is_none(),
        "the package wrapper must not be sent: {body}"
    );
}

fn run(args: &[&str], api_key: &str) -> Output {
    Command::new(BIN)
        .args(args)
        .env_clear()
        .env("DD_API_KEY", api_key)
        .env("DD_APP_KEY", APP_KEY)
        .current_dir(std::env::temp_dir())
        .output()
        .unwrap()
}

fn install(url: &str, extra: &[&str]) -> Output {
    let mut args = vec!["assets", "install", "--api-url", url];
    args.extend_from_slice(extra);
    run(&args, API_KEY)
}

fn text(output: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn start() -> (Shared, String) {
    let account: Shared = Arc::default();
    let url = fake_datadog(account.clone());
    (account, url)
}

fn distribution_config() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("assets-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("algorithmia.yaml");
    std::fs::write(
        &path,
        "init_config:\ninstances:\n  - kafka_broker: localhost:9092\n    kafka_topic: insights\n    \
         distribution_metrics: [duration_milliseconds]\n",
    )
    .unwrap();
    path
}

fn widget_types(dashboard: &Value) -> Vec<String> {
    dashboard["widgets"][0]["definition"]["widgets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["definition"]["type"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn the_second_install_writes_nothing_and_creates_no_duplicate() {
    let (account, url) = start();

    let first = install(&url, &[]);
    let (stdout, stderr) = text(&first);
    assert_eq!(first.status.code(), Some(0), "{stderr}");
    assert_eq!(stdout.matches(": created").count(), 6, "{stdout}");
    assert!(
        stdout.contains("dashboard \"Algorithmia\": created (id abc-def-000)"),
        "{stdout}"
    );

    let writes_before = account.lock().unwrap().writes().len();
    let second = install(&url, &[]);
    let (stdout, stderr) = text(&second);
    assert_eq!(second.status.code(), Some(0), "{stderr}");
    assert_eq!(stdout.matches(": unchanged").count(), 6, "{stdout}");

    let account = account.lock().unwrap();
    assert_eq!(account.dashboards.len(), 1);
    assert_eq!(account.monitors.len(), 5);
    assert_eq!(
        account.writes().len(),
        writes_before,
        "an untouched install writes nothing: {:?}",
        account.writes()
    );
    // Datadog adds new_host_delay to monitors that lack it: what was recorded is the hash of the
    // form it stored, after a second write of the monitors concerned only.
    assert!(writes_before < 6 + 2 * 5, "{:?}", account.writes());
}

#[test]
fn an_edited_dashboard_is_kept_unless_forced_and_an_untouched_one_is_upgraded() {
    let (account, url) = start();
    assert_eq!(install(&url, &[]).status.code(), Some(0));
    assert!(widget_types(account.lock().unwrap().dashboard()).contains(&"heatmap".into()));

    // The configuration now sends duration as a distribution: the untouched dashboard is
    // upgraded in place to percentiles.
    let config = distribution_config();
    let config = config.to_str().unwrap();
    let upgrade = install(&url, &["--config", config]);
    let (stdout, stderr) = text(&upgrade);
    assert_eq!(upgrade.status.code(), Some(0), "{stderr}");
    assert!(
        stdout.contains("dashboard \"Algorithmia\": updated (id abc-def-000)"),
        "{stdout}"
    );
    assert_eq!(stdout.matches(": unchanged").count(), 5, "{stdout}");
    {
        let account = account.lock().unwrap();
        let dashboard = account.dashboard().to_string();
        assert!(
            dashboard.contains("p95:algorithmia.duration_milliseconds{$algorithm_name"),
            "{dashboard}"
        );
    }

    // The user puts their own metric in place of risk_score, as the README suggests, and
    // renames the dashboard.
    {
        let mut account = account.lock().unwrap();
        let d = &mut account.dashboards[0].1;
        let edited = d
            .to_string()
            .replace("algorithmia.risk_score", "algorithmia.fraud_score");
        *d = serde_json::from_str(&edited).unwrap();
        d["title"] = json!("Algorithmia (ours)");
    }
    let kept = install(&url, &["--config", config]);
    let (stdout, stderr) = text(&kept);
    assert_eq!(kept.status.code(), Some(3), "{stdout}{stderr}");
    assert!(
        stdout.contains(
            "dashboard \"Algorithmia (ours)\": KEPT as it is: edited in Datadog since assets \
             last wrote it; run again with --force"
        ),
        "{stdout}"
    );
    assert!(stderr.contains("was left as it is"), "{stderr}");
    {
        let account = account.lock().unwrap();
        assert!(account.dashboard().to_string().contains("fraud_score"));
    }

    let forced = install(&url, &["--config", config, "--force"]);
    let (stdout, stderr) = text(&forced);
    assert_eq!(forced.status.code(), Some(0), "{stderr}");
    assert!(
        stdout.contains("dashboard \"Algorithmia\": replaced, your edits overwritten"),
        "{stdout}"
    );
    let account = account.lock().unwrap();
    let dashboard = account.dashboard();
    assert_eq!(dashboard["title"], "Algorithmia");
    assert!(!dashboard.to_string().contains("fraud_score"));
}

#[test]
fn a_dashboard_without_a_record_is_kept_and_an_edited_monitor_too_but_not_a_muted_one() {
    let (account, url) = start();
    assert_eq!(install(&url, &[]).status.code(), Some(0));
    {
        let mut account = account.lock().unwrap();
        // As a version before 2.1.0 left it: no marker in the description.
        account.dashboards[0].1["description"] = json!("Made by hand.");
        // A notification handle added to a monitor's message: an edit.
        let m = account.monitor_named(
            "[Algorithmia] {{algorithm_name.name}} {{algorithm_version.name}} takes",
        );
        m["message"] = json!(format!(
            "{} @slack-ml-oncall",
            m["message"].as_str().unwrap()
        ));
        // A muted monitor: not an edit of its content.
        let m = account.monitor_named("[Algorithmia] Forwarder cannot reach Kafka");
        m["options"]["silenced"] = json!({"*": null});
    }
    let output = install(&url, &[]);
    let (stdout, _) = text(&output);
    assert_eq!(output.status.code(), Some(3), "{stdout}");
    assert!(
        stdout.contains("dashboard \"Algorithmia\": KEPT as it is: no record of what assets wrote"),
        "{stdout}"
    );
    assert_eq!(stdout.matches("KEPT").count(), 2, "{stdout}");
    assert_eq!(stdout.matches(": unchanged").count(), 4, "{stdout}");
    {
        let mut account = account.lock().unwrap();
        assert_eq!(account.dashboards.len(), 1, "no dashboard beside it");
        assert_eq!(account.monitors.len(), 5, "no monitor beside it");
        // The user keeps theirs under another title: ours is installed beside it.
        account.dashboards[0].1["title"] = json!("Algorithmia (mine)");
    }
    let beside = install(&url, &[]);
    let (stdout, _) = text(&beside);
    assert!(
        stdout.contains("dashboard \"Algorithmia\": created (id abc-def-001)"),
        "{stdout}"
    );
    assert_eq!(account.lock().unwrap().dashboards.len(), 2);
}

#[test]
fn compare_creates_once_then_updates_in_place_keeping_a_mute() {
    let (account, url) = start();
    let compare = |threshold: &str| {
        run(
            &[
                "assets",
                "compare",
                "--api-url",
                &url,
                "--algorithm",
                "credit_card_approval",
                "--metric",
                "risk_score",
                "--baseline",
                "1.0.6",
                "--candidate",
                "2.0.0",
                "--threshold",
                threshold,
                "--window",
                "2h",
            ],
            API_KEY,
        )
    };
    let first = compare("0.1");
    let (stdout, stderr) = text(&first);
    assert_eq!(first.status.code(), Some(0), "{stderr}");
    assert!(
        stdout.starts_with(
            "monitor \"[Algorithmia] credit_card_approval average risk_score: candidate 2.0.0 \
             differs from baseline 1.0.6 by more than 0.1\": created (id 1000)"
        ),
        "{stdout}"
    );
    let again = compare("0.1");
    assert!(
        text(&again).0.contains(": unchanged (id 1000)"),
        "{:?}",
        text(&again)
    );

    account.lock().unwrap().monitors[0].1["options"]["silenced"] = json!({"*": null});
    let changed = compare("0.25");
    let (stdout, stderr) = text(&changed);
    assert_eq!(changed.status.code(), Some(0), "{stderr}");
    assert!(
        stdout.contains("by more than 0.25\": updated (id 1000)"),
        "{stdout}"
    );
    let account = account.lock().unwrap();
    assert_eq!(account.monitors.len(), 1);
    let m = &account.monitors[0].1;
    assert_eq!(
        m["query"],
        "avg(last_2h):abs(avg:algorithmia.risk_score{algorithm_name:credit_card_approval,\
         algorithm_version:2.0.0} - avg:algorithmia.risk_score{algorithm_name:\
         credit_card_approval,algorithm_version:1.0.6}) > 0.25"
    );
    assert_eq!(
        m["options"]["silenced"],
        json!({"*": null}),
        "the mute survives"
    );
}

#[test]
fn drift_makes_one_monitor_per_field_and_never_twice() {
    let (account, url) = start();
    let args = [
        "assets",
        "drift",
        "--api-url",
        &url,
        "--algorithm",
        "credit_card_approval",
        "--metric",
        "risk_score",
        "--metric",
        "approval_rate",
        "--window",
        "1h",
    ];
    let first = run(&args, API_KEY);
    let (stdout, stderr) = text(&first);
    assert_eq!(first.status.code(), Some(0), "{stderr}");
    assert_eq!(stdout.matches(": created").count(), 2, "{stdout}");
    let second = run(&args, API_KEY);
    assert_eq!(text(&second).0.matches(": unchanged").count(), 2);
    let account = account.lock().unwrap();
    assert_eq!(account.monitors.len(), 2);
    let m = &account.monitors[1].1;
    assert!(
        m["query"]
            .as_str()
            .unwrap()
            .contains("anomalies(avg:algorithmia.approval_rate{algorithm_name:credit_card_approval} by {algorithm_version}, 'basic', 2"),
        "{m}"
    );
    assert_eq!(
        m["options"]["threshold_windows"]["trigger_window"],
        "last_1h"
    );
}

#[test]
fn dry_run_prints_the_monitor_and_needs_no_key() {
    let output = Command::new(BIN)
        .args([
            "assets",
            "compare",
            "--algorithm",
            "m",
            "--metric",
            "duration_milliseconds",
            "--baseline",
            "1",
            "--candidate",
            "2",
            "--relative",
            "20",
            "--percentile",
            "p95",
            "--config",
        ])
        .arg(distribution_config())
        .arg("--dry-run")
        .env_clear()
        .output()
        .unwrap();
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    let monitor: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(
        monitor["query"],
        "avg(last_1h):abs(p95:algorithmia.duration_milliseconds{algorithm_name:m,algorithm_version:2} \
         - p95:algorithmia.duration_milliseconds{algorithm_name:m,algorithm_version:1}) / \
         abs(p95:algorithmia.duration_milliseconds{algorithm_name:m,algorithm_version:1}) * 100 > 20"
    );
}

#[test]
fn a_wrong_api_key_names_the_key_and_the_site_and_prints_no_secret() {
    let (account, url) = start();
    let output = run(
        &["assets", "install", "--api-url", &url],
        "wrong-key-should-not-be-printed",
    );
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr.contains("refused the API key (403: Forbidden): check DD_API_KEY, and DD_SITE"),
        "{stderr}"
    );
    assert!(!stderr.contains("wrong-key") && !stdout.contains("wrong-key"));
    assert_eq!(account.lock().unwrap().writes().len(), 0);
}

#[test]
fn a_wrong_application_key_is_named() {
    let (account, url) = start();
    let output = Command::new(BIN)
        .args(["assets", "install", "--api-url", &url])
        .env_clear()
        .env("DD_API_KEY", API_KEY)
        .env("DD_APP_KEY", "not-the-app-key")
        .output()
        .unwrap();
    let (_, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr.contains("refused to list dashboards (403: Forbidden): check DD_APP_KEY"),
        "{stderr}"
    );
    assert!(!stderr.contains("not-the-app-key"));
    assert_eq!(account.lock().unwrap().writes().len(), 0);
}

#[test]
fn a_missing_permission_quotes_datadog_and_names_the_permission() {
    let (account, url) = start();
    account.lock().unwrap().read_only = true;
    let output = install(&url, &[]);
    let (_, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr.contains(
            "refused POST /api/v1/dashboard (403: Forbidden; Failed permission authorization \
             checks): the application key, or its owner's role, lacks the dashboards_write"
        ),
        "{stderr}"
    );
    let output = run(
        &[
            "assets",
            "drift",
            "--api-url",
            &url,
            "--algorithm",
            "a",
            "--metric",
            "risk_score",
        ],
        API_KEY,
    );
    let (_, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr.contains("lacks the monitors_write permission"),
        "{stderr}"
    );
}

#[test]
fn a_refused_connection_fails_with_a_clear_message() {
    // Nothing listens on port 1.
    let output = install("http://127.0.0.1:1", &[]);
    let (_, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr.contains("cannot reach the Datadog API at http://127.0.0.1:1"),
        "{stderr}"
    );
}

#[test]
fn a_wrong_site_fails_naming_dd_site() {
    // `.invalid` never resolves (RFC 2606).
    let output = Command::new(BIN)
        .args(["assets", "install"])
        .env_clear()
        .env("DD_API_KEY", API_KEY)
        .env("DD_APP_KEY", APP_KEY)
        .env("DD_SITE", "datadoghq.invalid")
        .output()
        .unwrap();
    let (_, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr.contains("cannot reach the Datadog API at https://api.datadoghq.invalid")
            && stderr.contains("check DD_SITE (one of datadoghq.com,"),
        "{stderr}"
    );
}

#[test]
fn missing_keys_are_a_configuration_error() {
    let output = Command::new(BIN)
        .args(["assets", "install"])
        .env_clear()
        .output()
        .unwrap();
    let (_, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr.contains("DD_API_KEY"), "{stderr}");
}

#[test]
fn a_percentile_of_a_gauge_is_refused_before_any_call() {
    let output = run(
        &[
            "assets",
            "drift",
            "--api-url",
            "http://127.0.0.1:1",
            "--algorithm",
            "a",
            "--metric",
            "risk_score",
            "--percentile",
            "p95",
        ],
        API_KEY,
    );
    let (_, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr.contains(
            "--percentile needs a distribution: risk_score is not in distribution_metrics"
        ),
        "{stderr}"
    );
}
