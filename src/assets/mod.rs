//! `algorithmia-datadog assets`: puts the bundled dashboard and monitors, and monitors generated
//! for a model (version comparison, drift), into a Datadog account through the Datadog API.
//!
//! Nothing is created twice: a dashboard is found again by the marker in its description (or
//! its title), a monitor by its `algorithmia-datadog-id:` tag (or its name). Nothing edited in
//! Datadog is overwritten without `force`: each object carries the hash of the content `assets`
//! wrote ([`content`]); an object whose content no longer matches it is left alone.
//!
//! The bundled assets are compiled into the binary from `assets/`, the same files the
//! integration package ships.
//!
//! ```no_run
//! use algorithmia_datadog::assets::{install, ApiSettings, InstallOptions};
//!
//! let settings = ApiSettings::from_env(&|name| std::env::var(name).ok(), None).unwrap();
//! for outcome in install(&settings, &InstallOptions::default()).unwrap() {
//!     println!("{outcome}");
//! }
//! ```

mod api;
pub mod content;
pub mod generate;

use std::fmt;

use serde_json::{json, Value};

use crate::config::{Config, ConfigError, EnvLookup, Secret};
use api::{Api, Need};
use content::{
    dashboard_content, hash, monitor_content, set_hash_tag, strip_dashboard_marker, tag_value,
    with_dashboard_marker, HASH_TAG, ID_TAG,
};
pub use generate::{
    compare_monitor, drift_monitors, Compare, Difference, Direction, Drift, DriftMethod, Generated,
    Naming, Window,
};

/// The bundled dashboards: (file name, JSON).
pub const DASHBOARDS: [(&str, &str); 1] = [(
    "assets/dashboards/algorithmia.json",
    include_str!("../../assets/dashboards/algorithmia.json"),
)];

/// The bundled monitors: (file name, JSON in the monitor v2 package format).
pub const MONITORS: [(&str, &str); 5] = [
    (
        "assets/monitors/algorithm_calls_stopped.json",
        include_str!("../../assets/monitors/algorithm_calls_stopped.json"),
    ),
    (
        "assets/monitors/algorithm_duration.json",
        include_str!("../../assets/monitors/algorithm_duration.json"),
    ),
    (
        "assets/monitors/forwarder_consumer_lag.json",
        include_str!("../../assets/monitors/forwarder_consumer_lag.json"),
    ),
    (
        "assets/monitors/forwarder_kafka_unreachable.json",
        include_str!("../../assets/monitors/forwarder_kafka_unreachable.json"),
    ),
    (
        "assets/monitors/forwarder_messages_rejected.json",
        include_str!("../../assets/monitors/forwarder_messages_rejected.json"),
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
                    reason: "not set: the assets commands need an API key and an application key"
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
    /// What was done.
    pub action: Action,
    /// Its id in the account.
    pub id: String,
}

/// What was done to one asset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// It did not exist.
    Created,
    /// It was as `assets` last wrote it, and is now the new version.
    Updated,
    /// It was as `assets` last wrote it, and that is already the new version: nothing written.
    Unchanged,
    /// It had been edited since, or has no record of what `assets` wrote; `--force` replaced it.
    Replaced,
    /// It had been edited since, or has no record of what `assets` wrote: left alone.
    Kept(KeptWhy),
}

/// Why an asset was left alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeptWhy {
    /// Its content no longer matches the hash recorded when `assets` wrote it.
    Edited,
    /// It carries no hash: installed by hand, or by a version before 2.1.0.
    NoRecord,
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let action = match self.action {
            Action::Created => "created",
            Action::Updated => "updated",
            Action::Unchanged => "unchanged",
            Action::Replaced => "replaced, your edits overwritten (--force)",
            Action::Kept(KeptWhy::Edited) => {
                "KEPT as it is: edited in Datadog since assets last wrote it; run again with \
                 --force to replace your edits, or rename it and remove its algorithmia-datadog \
                 marker to keep it beside ours"
            }
            Action::Kept(KeptWhy::NoRecord) => {
                "KEPT as it is: no record of what assets wrote (made by hand, or by a version \
                 before 2.1.0), so edits cannot be ruled out; run again with --force to replace \
                 it, or rename it to keep it beside ours"
            }
        };
        write!(
            f,
            "{} {:?}: {action} (id {})",
            self.kind, self.title, self.id
        )
    }
}

/// Whether any asset was left alone because of edits.
pub fn any_kept(outcomes: &[Outcome]) -> bool {
    outcomes.iter().any(|o| matches!(o.action, Action::Kept(_)))
}

/// Why the work stopped.
#[derive(Debug, thiserror::Error)]
pub enum AssetsError {
    /// `/api/v1/validate` refused the API key.
    #[error(
        "Datadog at {base_url} refused the API key ({status}: {said}): check DD_API_KEY, and \
         DD_SITE: a key belongs to one site ({sites})", sites = api::SITES
    )]
    ApiKeyRefused {
        /// Where.
        base_url: String,
        /// 401 or 403.
        status: u16,
        /// Datadog's errors.
        said: String,
    },
    /// A read was refused: the application key is wrong, or may not read.
    #[error(
        "Datadog refused to list {what} ({status}: {said}): check DD_APP_KEY (an application \
         key of the same organization as DD_API_KEY) and, if it is scoped, that it has \
         {what}_read"
    )]
    AppKeyRefused {
        /// 401 or 403.
        status: u16,
        /// `dashboards` or `monitors`.
        what: &'static str,
        /// Datadog's errors.
        said: String,
    },
    /// A write was refused: a permission is missing.
    #[error(
        "Datadog refused {method} {path} ({status}: {said}): the application key, or its \
         owner's role, lacks the {what}_write permission"
    )]
    PermissionMissing {
        /// The method.
        method: &'static str,
        /// The API path.
        path: String,
        /// 401 or 403.
        status: u16,
        /// `dashboards` or `monitors`.
        what: &'static str,
        /// Datadog's errors.
        said: String,
    },
    /// Any other HTTP error.
    #[error("Datadog answered {status} to {method} {path}: {said}")]
    Http {
        /// The method.
        method: &'static str,
        /// The API path.
        path: String,
        /// The status.
        status: u16,
        /// Datadog's errors.
        said: String,
    },
    /// No answer.
    #[error(
        "cannot reach the Datadog API at {base_url}: {reason}; check DD_SITE (one of {sites}), \
         --api-url, and that this machine can reach it (proxy, firewall)", sites = api::SITES
    )]
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

/// How `install` and `apply_monitors` treat what they find.
#[derive(Debug, Clone, Copy, Default)]
pub struct InstallOptions<'a> {
    /// The forwarder's configuration: it decides how `duration_milliseconds` is graphed.
    pub config: Option<&'a Config>,
    /// Replace assets edited since `assets` wrote them.
    pub force: bool,
}

/// The bundled dashboard as `install` writes it for this configuration: with percentile widgets
/// and a heat map of every call when `duration_milliseconds` is a distribution, a heat map of the
/// versions' averages when it is a gauge.
pub fn render_dashboard(config: Option<&Config>) -> Result<Value, AssetsError> {
    let (file, text) = DASHBOARDS[0];
    let mut dashboard: Value =
        serde_json::from_str(text).map_err(|e| AssetsError::Bundled(file, e.to_string()))?;
    let naming = Naming::from_config(config);
    if !naming.is_distribution(DURATION_FIELD) {
        return Ok(dashboard);
    }
    let metric = naming.metric(DURATION_FIELD);
    let scope = "{$algorithm_name,$algorithm_version,$algorithm_owner}";
    let Some(group) = dashboard["widgets"]
        .as_array_mut()
        .and_then(|w| {
            w.iter_mut()
                .find(|g| g["definition"]["title"] == "Model latency")
        })
        .and_then(|g| g["definition"]["widgets"].as_array_mut())
    else {
        return Err(AssetsError::Bundled(file, "no Model latency group".into()));
    };
    let heat_map = group
        .iter()
        .position(|w| w["definition"]["type"] == "heatmap")
        .ok_or_else(|| AssetsError::Bundled(file, "no duration heat map".into()))?;
    group[heat_map] = json!({"definition": {
        "type": "heatmap",
        "title": "Duration of every call (heat map)",
        "show_legend": false,
        "requests": [{"q": format!("avg:{metric}{scope}")}]
    }});
    let percentiles: Vec<Value> = ["p50", "p95", "p99"]
        .iter()
        .enumerate()
        .map(|(i, p)| {
            json!({
                "queries": [{"data_source": "metrics", "name": format!("q{i}"),
                    "query": format!("{p}:{metric}{scope} by {{algorithm_name,algorithm_version}}")}],
                "formulas": [{"formula": format!("q{i}"), "alias": *p}],
                "response_format": "timeseries",
                "display_type": "line"
            })
        })
        .collect();
    group.insert(
        heat_map,
        json!({"definition": {
            "type": "timeseries",
            "title": "Duration percentiles by version (p50, p95, p99)",
            "show_legend": true,
            "legend_layout": "auto",
            "requests": percentiles
        }}),
    );
    if let Some(note) = group.iter_mut().find(|w| w["definition"]["type"] == "note") {
        note["definition"]["content"] = Value::from(format!(
            "`duration_milliseconds` is sent as a distribution (`distribution_metrics` in the \
             forwarder's configuration), so these widgets show every call: the heat map and the \
             `avg`/`max` widgets work as they are; the percentile widget needs percentiles \
             enabled on the metric in Datadog (Metrics > Summary > `{metric}` > Advanced)."
        ));
    }
    Ok(dashboard)
}

/// The bundled monitors, each with the identity it is found again by (its file's stem).
pub fn bundled_monitors() -> Result<Vec<Generated>, AssetsError> {
    MONITORS
        .iter()
        .map(|(file, text)| {
            let package: Value = serde_json::from_str(text)
                .map_err(|e| AssetsError::Bundled(file, e.to_string()))?;
            let id = file
                .rsplit('/')
                .next()
                .and_then(|f| f.strip_suffix(".json"))
                .unwrap_or(file)
                .to_string();
            let mut body = package["definition"].clone();
            if let Some(tags) = body["tags"].as_array_mut() {
                tags.push(Value::from(format!("{ID_TAG}{id}")));
            }
            Ok(Generated { id, body })
        })
        .collect()
}

/// What to do with one asset that exists.
enum Plan {
    Write(Action),
    Keep(KeptWhy),
    Nothing,
}

/// `marker` is what `assets` recorded when it last wrote the object: the hash of what it sent,
/// then `.` and the hash of what Datadog stored when that differs (Datadog added its defaults).
fn plan(live_hash: &str, marker: Option<&str>, desired_hash: &str, force: bool) -> Plan {
    let recorded = marker.map(|m| m.split_once('.').unwrap_or((m, m)));
    match recorded {
        Some((sent, stored)) if stored == live_hash && sent == desired_hash => Plan::Nothing,
        Some((_, stored)) if stored == live_hash => Plan::Write(Action::Updated),
        _ if force => Plan::Write(Action::Replaced),
        Some(_) => Plan::Keep(KeptWhy::Edited),
        None => Plan::Keep(KeptWhy::NoRecord),
    }
}

/// Creates or updates the bundled dashboard and monitors, never twice and never over edits made
/// in Datadog since `assets` wrote them (unless `force`).
pub fn install(
    settings: &ApiSettings,
    options: &InstallOptions<'_>,
) -> Result<Vec<Outcome>, AssetsError> {
    let api = Api::new(settings);
    api.call("GET", "/api/v1/validate", None, Need::ApiKey)?;
    let mut outcomes = vec![install_dashboard(&api, options)?];
    outcomes.extend(apply(&api, &bundled_monitors()?, options.force)?);
    Ok(outcomes)
}

/// Creates or updates generated monitors (from [`compare_monitor`] or [`drift_monitors`]), each
/// found again by its identity tag, with the same care as `install`.
pub fn apply_monitors(
    settings: &ApiSettings,
    monitors: &[Generated],
    force: bool,
) -> Result<Vec<Outcome>, AssetsError> {
    let api = Api::new(settings);
    api.call("GET", "/api/v1/validate", None, Need::ApiKey)?;
    apply(&api, monitors, force)
}

const DASHBOARD_ID: &str = "algorithmia";
const DURATION_FIELD: &str = "duration_milliseconds";
const DASHBOARDS_PATH: &str = "/api/v1/dashboard";
const MONITORS_PATH: &str = "/api/v1/monitor";

/// Writes `desired` (carrying `desired_hash`) with `method` to `path`; if Datadog stored it in a
/// form of its own (`content_of` the answer hashes otherwise), records that form's hash with a
/// second write, so that an untouched object matches its record next time. Returns its id.
fn write(
    api: &Api<'_>,
    method: &'static str,
    path: &str,
    desired: &mut Value,
    desired_hash: &str,
    kind: Kind,
) -> Result<String, AssetsError> {
    let need = Need::Write(kind.what());
    let answer = api.call(method, path, Some(desired), need)?;
    let id = id_of(&answer, path)?;
    let stored = hash(&kind.content(&answer));
    if stored != desired_hash {
        kind.mark(desired, &format!("{desired_hash}.{stored}"));
        let one = format!("{}/{id}", kind.path());
        api.call("PUT", &one, Some(desired), need)?;
    }
    Ok(id)
}

#[derive(Clone, Copy)]
enum Kind {
    Dashboard,
    Monitor,
}

impl Kind {
    fn what(self) -> &'static str {
        match self {
            Kind::Dashboard => "dashboards",
            Kind::Monitor => "monitors",
        }
    }

    fn path(self) -> &'static str {
        match self {
            Kind::Dashboard => DASHBOARDS_PATH,
            Kind::Monitor => MONITORS_PATH,
        }
    }

    fn content(self, value: &Value) -> Value {
        match self {
            Kind::Dashboard => dashboard_content(value),
            Kind::Monitor => monitor_content(value),
        }
    }

    fn mark(self, value: &mut Value, hash: &str) {
        match self {
            Kind::Dashboard => {
                let text = value["description"].as_str().unwrap_or("");
                let text = strip_dashboard_marker(text).0;
                value["description"] =
                    Value::from(with_dashboard_marker(&text, DASHBOARD_ID, hash));
            }
            Kind::Monitor => set_hash_tag(value, hash),
        }
    }

    fn marker(self, value: &Value) -> Option<String> {
        match self {
            Kind::Dashboard => value["description"]
                .as_str()
                .and_then(|d| strip_dashboard_marker(d).1)
                .map(|(_, h)| h),
            Kind::Monitor => tag_value(value, HASH_TAG).map(str::to_string),
        }
    }
}

/// Creates `desired` if `live` is `None`, else updates it unless it was edited since.
fn create_or_update(
    api: &Api<'_>,
    kind: Kind,
    live: Option<&Value>,
    mut desired: Value,
    force: bool,
) -> Result<(Action, String), AssetsError> {
    let desired_hash = hash(&kind.content(&desired));
    kind.mark(&mut desired, &desired_hash);
    let Some(live) = live else {
        let id = write(api, "POST", kind.path(), &mut desired, &desired_hash, kind)?;
        return Ok((Action::Created, id));
    };
    let id = id_of(live, kind.path())?;
    let live_hash = hash(&kind.content(live));
    let action = match plan(
        &live_hash,
        kind.marker(live).as_deref(),
        &desired_hash,
        force,
    ) {
        Plan::Nothing => Action::Unchanged,
        Plan::Keep(why) => Action::Kept(why),
        Plan::Write(action) => {
            if let Kind::Monitor = kind {
                // Options we do not set (a mute, Datadog's defaults) stay as they are.
                let mut options = live["options"].as_object().cloned().unwrap_or_default();
                for (key, value) in desired["options"].as_object().into_iter().flatten() {
                    if key != "silenced" {
                        options.insert(key.clone(), value.clone());
                    }
                }
                desired["options"] = Value::Object(options);
            }
            let one = format!("{}/{id}", kind.path());
            write(api, "PUT", &one, &mut desired, &desired_hash, kind)?;
            action
        }
    };
    Ok((action, id))
}

fn install_dashboard(api: &Api<'_>, options: &InstallOptions<'_>) -> Result<Outcome, AssetsError> {
    let desired = render_dashboard(options.config)?;
    let title = desired["title"]
        .as_str()
        .unwrap_or(DASHBOARD_ID)
        .to_string();
    let list = api.call("GET", DASHBOARDS_PATH, None, Need::Read("dashboards"))?;
    let summaries = list["dashboards"].as_array().cloned().unwrap_or_default();
    let ours = |d: &&Value| {
        d["description"].as_str().is_some_and(|text| {
            strip_dashboard_marker(text)
                .1
                .is_some_and(|(id, _)| id == DASHBOARD_ID)
        })
    };
    // Ours by its marker whatever its title now, else the one with our title.
    let found = summaries
        .iter()
        .find(ours)
        .or_else(|| {
            summaries
                .iter()
                .find(|d| d["title"].as_str() == Some(&title))
        })
        .and_then(|d| d["id"].as_str());
    let live = match found {
        Some(id) => Some(api.call(
            "GET",
            &format!("{DASHBOARDS_PATH}/{id}"),
            None,
            Need::Read("dashboards"),
        )?),
        None => None,
    };
    let (action, id) =
        create_or_update(api, Kind::Dashboard, live.as_ref(), desired, options.force)?;
    let title = match (action, &live) {
        (Action::Kept(_) | Action::Unchanged, Some(live)) => {
            live["title"].as_str().map_or(title, str::to_string)
        }
        _ => title,
    };
    Ok(Outcome {
        kind: "dashboard",
        title,
        action,
        id,
    })
}

fn apply(api: &Api<'_>, monitors: &[Generated], force: bool) -> Result<Vec<Outcome>, AssetsError> {
    let path = format!(
        "{MONITORS_PATH}?monitor_tags={}",
        MONITOR_TAG.replace(':', "%3A")
    );
    let listed = api.call("GET", &path, None, Need::Read("monitors"))?;
    let existing = listed.as_array().cloned().unwrap_or_default();
    let mut outcomes = Vec::new();
    for monitor in monitors {
        let name = monitor.body["name"]
            .as_str()
            .unwrap_or(&monitor.id)
            .to_string();
        // Ours by its identity tag whatever its name now, else (made before identity tags) the
        // one with our name.
        let found = existing
            .iter()
            .find(|m| tag_value(m, ID_TAG) == Some(monitor.id.as_str()))
            .or_else(|| {
                existing
                    .iter()
                    .find(|m| tag_value(m, ID_TAG).is_none() && m["name"].as_str() == Some(&name))
            });
        let (action, id) =
            create_or_update(api, Kind::Monitor, found, monitor.body.clone(), force)?;
        let title = match (action, found) {
            (Action::Kept(_) | Action::Unchanged, Some(live)) => {
                live["name"].as_str().map_or(name, str::to_string)
            }
            _ => name,
        };
        outcomes.push(Outcome {
            kind: "monitor",
            title,
            action,
            id,
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
