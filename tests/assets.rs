//! `assets install` against a local HTTP server that checks the requests (paths, headers,
//! bodies) and answers as the Datadog API does.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
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
    refuse: bool,
}

/// A fake Datadog API on loopback; returns its base URL.
fn fake_datadog(account: Arc<Mutex<Account>>) -> String {
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
    let keys_ok = headers.get("dd-api-key").map(String::as_str) == Some(API_KEY)
        && headers.get("dd-application-key").map(String::as_str) == Some(APP_KEY);
    if account.refuse || !keys_ok {
        return (403, json!({"errors": ["Forbidden"]}));
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
    match (method, path) {
        ("GET", "/api/v1/dashboard") => {
            let list: Vec<Value> = account
                .dashboards
                .iter()
                .map(|(id, d)| json!({"id": id, "title": d["title"]}))
                .collect();
            (200, json!({ "dashboards": list }))
        }
        ("POST", "/api/v1/dashboard") => {
            check_dashboard(&body);
            let id = format!("abc-def-{:03}", account.dashboards.len());
            account.dashboards.push((id.clone(), body.clone()));
            (200, with_id(body, json!(id)))
        }
        ("PUT", p) if p.starts_with("/api/v1/dashboard/") => {
            check_dashboard(&body);
            let id = &p["/api/v1/dashboard/".len()..];
            match account.dashboards.iter_mut().find(|(i, _)| i == id) {
                Some(entry) => {
                    entry.1 = body.clone();
                    (200, with_id(body, json!(id)))
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
                .map(|(id, m)| with_id(m.clone(), json!(id)))
                .collect();
            (200, Value::Array(list))
        }
        ("POST", "/api/v1/monitor") => {
            check_monitor(&body);
            let id = 1000 + account.monitors.len() as u64;
            account.monitors.push((id, body.clone()));
            (200, with_id(body, json!(id)))
        }
        ("PUT", p) if p.starts_with("/api/v1/monitor/") => {
            check_monitor(&body);
            let id: u64 = p["/api/v1/monitor/".len()..].parse().unwrap();
            match account.monitors.iter_mut().find(|(i, _)| *i == id) {
                Some(entry) => {
                    entry.1 = body.clone();
                    (200, with_id(body, json!(id)))
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

fn with_id(mut value: Value, id: Value) -> Value {
    value["id"] = id;
    value
}

fn install(url: &str, api_key: &str) -> Output {
    Command::new(BIN)
        .args(["assets", "install", "--api-url", url])
        .env_clear()
        .env("DD_API_KEY", api_key)
        .env("DD_APP_KEY", APP_KEY)
        .output()
        .unwrap()
}

fn text(output: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn the_first_run_creates_and_the_second_updates_in_place_without_duplicates() {
    let account = Arc::new(Mutex::new(Account::default()));
    let url = fake_datadog(account.clone());

    let first = install(&url, API_KEY);
    let (stdout, stderr) = text(&first);
    assert_eq!(first.status.code(), Some(0), "{stderr}");
    assert_eq!(stdout.matches(": created").count(), 6, "{stdout}");
    assert!(
        stdout.contains("dashboard \"Algorithmia\": created (id abc-def-000)"),
        "{stdout}"
    );

    let second = install(&url, API_KEY);
    let (stdout, stderr) = text(&second);
    assert_eq!(second.status.code(), Some(0), "{stderr}");
    assert_eq!(stdout.matches(": updated").count(), 6, "{stdout}");
    assert!(
        stdout.contains("dashboard \"Algorithmia\": updated (id abc-def-000)"),
        "{stdout}"
    );

    let account = account.lock().unwrap();
    assert_eq!(account.dashboards.len(), 1);
    assert_eq!(account.monitors.len(), 5);
    let puts: Vec<&String> = account
        .requests
        .iter()
        .filter(|(m, _)| m == "PUT")
        .map(|(_, p)| p)
        .collect();
    assert_eq!(
        puts,
        [
            "/api/v1/dashboard/abc-def-000",
            "/api/v1/monitor/1000",
            "/api/v1/monitor/1001",
            "/api/v1/monitor/1002",
            "/api/v1/monitor/1003",
            "/api/v1/monitor/1004"
        ]
    );
}

#[test]
fn refused_keys_fail_with_a_clear_message_and_no_secret() {
    let account = Arc::new(Mutex::new(Account::default()));
    let url = fake_datadog(account.clone());
    let output = install(&url, "wrong-key-should-not-be-printed");
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr.contains("403") && stderr.contains("DD_API_KEY"),
        "{stderr}"
    );
    assert!(!stderr.contains("wrong-key") && !stdout.contains("wrong-key"));
    assert!(account.lock().unwrap().dashboards.is_empty());
}

#[test]
fn a_network_error_fails_with_a_clear_message() {
    // Nothing listens on port 1.
    let output = install("http://127.0.0.1:1", API_KEY);
    let (_, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr.contains("cannot reach the Datadog API at http://127.0.0.1:1"),
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
