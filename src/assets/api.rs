//! The few Datadog API calls `assets` makes, and what their failures mean to the user.

use std::time::Duration;

use serde_json::Value;

use super::{ApiSettings, AssetsError};

/// The Datadog sites, for the message of a site that cannot be reached.
pub const SITES: &str = "datadoghq.com, us3.datadoghq.com, us5.datadoghq.com, datadoghq.eu, \
                         ap1.datadoghq.com, ap2.datadoghq.com, ddog-gov.com";

pub(super) struct Api<'a> {
    settings: &'a ApiSettings,
    agent: ureq::Agent,
}

/// What a call is for, so that a refusal names the permission it needed.
#[derive(Clone, Copy)]
pub(super) enum Need {
    /// Checks the API key alone.
    ApiKey,
    /// Reads dashboards or monitors.
    Read(&'static str),
    /// Writes dashboards or monitors.
    Write(&'static str),
}

impl<'a> Api<'a> {
    pub(super) fn new(settings: &'a ApiSettings) -> Api<'a> {
        let config = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(30)))
            // Status codes are handled here, with Datadog's errors in the message.
            .http_status_as_error(false)
            .build();
        Api {
            settings,
            agent: config.into(),
        }
    }

    pub(super) fn call(
        &self,
        method: &'static str,
        path: &str,
        body: Option<&Value>,
        need: Need,
    ) -> Result<Value, AssetsError> {
        let url = format!("{}{path}", self.settings.base_url);
        let api_key = self.settings.api_key.expose();
        let app_key = self.settings.app_key.expose();
        let result = match method {
            "GET" => self
                .agent
                .get(&url)
                .header("DD-API-KEY", api_key)
                .header("DD-APPLICATION-KEY", app_key)
                .header("Accept", "application/json")
                .call(),
            _ => {
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
            reason: match e {
                ureq::Error::HostNotFound => "no such host (DNS)".to_string(),
                other => other.to_string(),
            },
        })?;
        let status = response.status().as_u16();
        let text = response.body_mut().read_to_string().unwrap_or_default();
        if (200..300).contains(&status) {
            return serde_json::from_str(&text).map_err(|e| AssetsError::Unexpected {
                path: path.to_string(),
                reason: format!(
                    "not JSON ({e}): is {} the Datadog API?",
                    self.settings.base_url
                ),
            });
        }
        let said = datadog_errors(&text);
        Err(match (status, need) {
            (401 | 403, Need::ApiKey) => AssetsError::ApiKeyRefused {
                base_url: self.settings.base_url.clone(),
                status,
                said,
            },
            (401 | 403, Need::Read(what)) => AssetsError::AppKeyRefused { status, what, said },
            (401 | 403, Need::Write(what)) => AssetsError::PermissionMissing {
                method,
                path: path.to_string(),
                status,
                what,
                said,
            },
            _ => AssetsError::Http {
                method,
                path: path.to_string(),
                status,
                said,
            },
        })
    }
}

/// Datadog's `{"errors": [..]}` joined, or the start of whatever came back.
fn datadog_errors(text: &str) -> String {
    let listed = serde_json::from_str::<Value>(text).ok().and_then(|v| {
        let errors = v["errors"].as_array()?;
        Some(
            errors
                .iter()
                .map(|e| e.as_str().map_or_else(|| e.to_string(), str::to_string))
                .collect::<Vec<_>>()
                .join("; "),
        )
    });
    listed.unwrap_or_else(|| text.chars().take(300).collect())
}
