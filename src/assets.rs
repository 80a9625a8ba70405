//! `algorithmia-datadog assets install`: puts the bundled dashboard and monitors into a Datadog
//! account through the Datadog API, creating each or updating in place the one with the same
//! title, so that a second run never duplicates anything.
//!
//! The assets are compiled into the binary from `assets/`, the same files the integration
//! package ships.
//!
//! ```no_run
//! use algorithmia_datadog::assets::{install, ApiSettings};
//!
//! let settings = ApiSettings::from_env(&|name| std::env::var(name).ok(), None).unwrap();
//! for outcome in install(&settings).unwrap() {
//!     println!("{outcome}");
//! }
//! ```

use std::fmt;
use std::time::Duration;

use serde_json::Value;

use crate::config::{ConfigError, EnvLookup, Secret};

/// The bundled dashboards: (file name, JSON).
pub const DASHBOARDS: [(&str, &str); 1] = [(
    "assets/dashboards/algorithmia.json",
    include_str!("../assets/dashboards/algorithmia.json"),
)];

/// The bundled monitors: (file name, JSON in the monitor v2 package format).
pub const MONITORS: [(&str, &str); 5] = [
    (
        "assets/monitors/algorithm_calls_stopped.json",
        include_str!("../assets/monitors/algorithm_calls_stopped.json"),
    ),
    (
        "assets/monitors/algorithm_duration.json",
        include_str!("../assets/monitors/algorithm_duration.json"),
    ),
    (
        "assets/monitors/forwarder_consumer_lag.json",
        include_str!("../assets/monitors/forwarder_consumer_lag.json"),
    ),
    (
        "assets/monitors/forwarder_kafka_unreachable.json",
        include_str!("../assets/monitors/forwarder_kafka_unreachable.json"),
    ),
    (
        "assets/monitors/forwarder_messages_rejected.json",
        include_str!("../assets/monitors/forwarder_messages_rejected.json"),
    ),
];

/// The monitors this tool manages carry this monitor tag; it is how they are found again.
pub const MONITOR_TAG: &str = "integration:algorithmia";

/// Where and as whom to call the API.
#[derive(Debug, Clone)]
pub struct ApiSettings {
    /// `https://api.<site>` unless overridden.
    pub base_url: String,
    /// `DD_API_KEY`.
    pub api_key: Secret,
    /// `DD_APP_KEY`.
    pub app_key: Secret,
}

impl ApiSettings {
    /// `DD_API_KEY`, `DD_APP_KEY` and `DD_SITE` (default `datadoghq.com`); `base_url` overrides
    /// the site (a proxy, or a test server).
    pub fn from_env(
        env: EnvLookup<'_>,
        base_url: Option<&str>,
    ) -> Result<ApiSettings, ConfigError> {
        let need = |name: &str| {
            env(name)
                .filter(|v| !v.is_empty())
                .map(Secret::new)
                .ok_or_else(|| ConfigError {
                    origin: "environment".into(),
                    key: name.into(),
                    reason: "not set: assets install needs an API key and an application key"
                        .into(),
                })
        };
        let api_key = need("DD_API_KEY")?;
        let app_key = need("DD_APP_KEY")?;
        let base_url = match base_url {
            Some(url) => url.trim_end_matches('/').to_string(),
            None => {
                let site = env("DD_SITE")
                    .filter(|s| !s.is_empty())
                    .unwrap_or_else(|| "datadoghq.com".into());
                let site = site
                    .trim_start_matches("https://")
                    .trim_start_matches("app.")
                    .trim_end_matches('/');
                format!("https://api.{site}")
            }
        };
        Ok(ApiSettings {
            base_url,
            api_key,
            app_key,
        })
    }
}

/// What happened to one asset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// `dashboard` or `monitor`.
    pub kind: &'static str,
    /// Its title.
    pub title: String,
    /// Created or updated.
    pub action: Action,
    /// Its id in the account.
    pub id: String,
}

/// Created or updated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// It did not exist.
    Created,
    /// One with the same title existed and was replaced in place.
    Updated,
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let action = match self.action {
            Action::Created => "created",
            Action::Updated => "updated",
        };
        write!(
            f,
            "{} {:?}: {action} (id {})",
            self.kind, self.title, self.id
        )
    }
}

/// Why the install stopped.
#[derive(Debug, thiserror::Error)]
pub enum AssetsError {
    /// The keys were refused.
    #[error(
        "Datadog refused the request ({status}) to {path}: check DD_API_KEY and DD_APP_KEY, \
         DD_SITE for your region, and that the application key may write dashboards and monitors"
    )]
    Forbidden {
        /// 401 or 403.
        status: u16,
        /// The API path.
        path: String,
    },
    /// Any other HTTP error.
    #[error("Datadog answered {status} to {method} {path}: {body}")]
    Http {
        /// The method.
        method: &'static str,
        /// The API path.
        path: String,
        /// The status.
        status: u16,
        /// The start of the answer.
        body: String,
    },
    /// No answer.
    #[error("cannot reach the Datadog API at {base_url}: {reason}")]
    Network {
        /// Where.
        base_url: String,
        /// Why.
        reason: String,
    },
    /// An answer that is not what the API documents.
    #[error("unexpected answer from {path}: {reason}")]
    Unexpected {
        /// The API path.
        path: String,
        /// Why.
        reason: String,
    },
    /// A bundled asset that is not valid JSON (a packaging bug).
    #[error("bundled asset {0} is not valid JSON: {1}")]
    Bundled(&'static str, String),
}

struct Api<'a> {
    settings: &'a ApiSettings,
    agent: ureq::Agent,
}

impl<'a> Api<'a> {
    fn new(settings: &'a ApiSettings) -> Api<'a> {
        let config = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(30)))
            // Status codes are handled here, with the body in the message.
            .http_status_as_error(false)
            .build();
        Api {
            settings,
            agent: config.into(),
        }
    }

    fn call(
        &self,
        method: &'static str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, AssetsError> {
        let url = format!("{}{path}", self.settings.base_url);
        let api_key = self.settings.api_key.expose();
        let app_key = self.settings.app_key.expose();
        let result = match (method, body) {
            ("GET", _) => self
                .agent
                .get(&url)
                .header("DD-API-KEY", api_key)
                .header("DD-APPLICATION-KEY", app_key)
                .header("Accept", "application/json")
                .call(),
            (_, body) => {
                let text = body.map(Value::to_string).unwrap_or_default();
                let request = if method == "PUT" {
                    self.agent.put(&url)
                } else {
                    self.agent.post(&url)
                };
                request
                    .header("DD-API-KEY", api_key)
                    .header("DD-APPLICATION-KEY", app_key)
                    .header("Accept", "application/json")
                    .content_type("application/json")
                    .send(text.as_bytes())
            }
        };
        let mut response = result.map_err(|e| AssetsError::Network {
            base_url: self.settings.base_url.clone(),
            reason: e.to_string(),
        })?;
        let status = response.status().as_u16();
        let text = response.body_mut().read_to_string().unwrap_or_default();
        match status {
            200..=299 => serde_json::from_str(&text).map_err(|e| AssetsError::Unexpected {
                path: path.to_string(),
                reason: format!("not JSON ({e})"),
            }),
            401 | 403 => Err(AssetsError::Forbidden {
                status,
                path: path.to_string(),
            }),
            _ => Err(AssetsError::Http {
                method,
                path: path.to_string(),
                status,
                body: text.chars().take(300).collect(),
            }),
        }
    }
}

/// Creates or updates every bundled dashboard and monitor.
pub fn install(settings: &ApiSettings) -> Result<Vec<Outcome>, AssetsError> {
    let api = Api::new(settings);
    let mut outcomes = Vec::new();

    let existing = api.call("GET", "/api/v1/dashboard", None)?;
    let dashboards = existing["dashboards"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    for (file, text) in DASHBOARDS {
        let body: Value =
            serde_json::from_str(text).map_err(|e| AssetsError::Bundled(file, e.to_string()))?;
        let title = body["title"].as_str().unwrap_or(file).to_string();
        let same = dashboards
            .iter()
            .find(|d| d["title"].as_str() == Some(&title));
        let (action, answer) = match same.and_then(|d| d["id"].as_str()) {
            Some(id) => (
                Action::Updated,
                api.call("PUT", &format!("/api/v1/dashboard/{id}"), Some(&body))?,
            ),
            None => (
                Action::Created,
                api.call("POST", "/api/v1/dashboard", Some(&body))?,
            ),
        };
        outcomes.push(Outcome {
            kind: "dashboard",
            title,
            action,
            id: id_of(&answer, "/api/v1/dashboard")?,
        });
    }

    let path = format!(
        "/api/v1/monitor?monitor_tags={}",
        MONITOR_TAG.replace(':', "%3A")
    );
    let existing = api.call("GET", &path, None)?;
    let monitors = existing.as_array().cloned().unwrap_or_default();
    for (file, text) in MONITORS {
        let package: Value =
            serde_json::from_str(text).map_err(|e| AssetsError::Bundled(file, e.to_string()))?;
        let definition = &package["definition"];
        let name = definition["name"].as_str().unwrap_or(file).to_string();
        let same = monitors.iter().find(|m| m["name"].as_str() == Some(&name));
        let (action, answer) = match same.map(|m| &m["id"]).filter(|id| !id.is_null()) {
            Some(id) => {
                let id = id.to_string().trim_matches('"').to_string();
                (
                    Action::Updated,
                    api.call("PUT", &format!("/api/v1/monitor/{id}"), Some(definition))?,
                )
            }
            None => (
                Action::Created,
                api.call("POST", "/api/v1/monitor", Some(definition))?,
            ),
        };
        outcomes.push(Outcome {
            kind: "monitor",
            title: name,
            action,
            id: id_of(&answer, "/api/v1/monitor")?,
        });
    }
    Ok(outcomes)
}

fn id_of(answer: &Value, path: &str) -> Result<String, AssetsError> {
    match &answer["id"] {
        Value::String(id) => Ok(id.clone()),
        Value::Number(id) => Ok(id.to_string()),
        _ => Err(AssetsError::Unexpected {
            path: path.to_string(),
            reason: "the answer has no id".into(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_bundled_asset_is_valid_json_with_a_title() {
        for (file, text) in DASHBOARDS {
            let v: Value = serde_json::from_str(text).unwrap();
            assert!(v["title"].is_string(), "{file}");
        }
        for (file, text) in MONITORS {
            let v: Value = serde_json::from_str(text).unwrap();
            assert!(v["definition"]["name"].is_string(), "{file}");
            let tags = v["definition"]["tags"].as_array().unwrap();
            assert!(
                tags.contains(&Value::from(MONITOR_TAG)),
                "{file}: found again by its tag"
            );
        }
    }

    #[test]
    fn the_site_decides_the_api_host() {
        let env = |name: &str| match name {
            "DD_API_KEY" | "DD_APP_KEY" => Some("k".to_string()),
            "DD_SITE" => Some("datadoghq.eu".to_string()),
            _ => None,
        };
        assert_eq!(
            ApiSettings::from_env(&env, None).unwrap().base_url,
            "https://api.datadoghq.eu"
        );
        let default =
            |name: &str| matches!(name, "DD_API_KEY" | "DD_APP_KEY").then(|| "k".to_string());
        assert_eq!(
            ApiSettings::from_env(&default, None).unwrap().base_url,
            "https://api.datadoghq.com"
        );
        let none = |_: &str| None;
        assert_eq!(
            ApiSettings::from_env(&none, None).unwrap_err().key,
            "DD_API_KEY"
        );
    }
}
