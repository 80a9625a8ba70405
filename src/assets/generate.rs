//! Monitors generated for one model: the difference between two of its versions
//! ([`compare_monitor`]), and each of its metrics leaving its normal range, per version
//! ([`drift_monitors`]).
//!
//! Queries follow Datadog's metric monitor grammar: `time_aggr(last_<window>):<query> <op> <n>`,
//! where `<query>` may be arithmetic between metric queries (`a - b`, `abs(a - b) / abs(b) * 100`)
//! and, for a distribution, a percentile (`p95:<metric>{...}`); anomaly monitors wrap the metric
//! query in `anomalies(...)` and carry `threshold_windows` in their options.

use serde_json::{json, Value};

use super::content::{hash, ID_TAG};
use super::MONITOR_TAG;
use crate::config::Config;
use crate::dogstatsd::{push_metric_name, push_tag_value};
use crate::metrics::glob_match;

/// The tag keys the forwarder puts on every model metric (its default `tag_fields`).
const NAME_TAG: &str = "algorithm_name";
const VERSION_TAG: &str = "algorithm_version";

/// How metric names are made, from the configuration (or the defaults without one).
#[derive(Debug, Clone)]
pub struct Naming {
    /// `metric_prefix`, without the trailing dot.
    pub prefix: String,
    /// Every instance's `distribution_metrics` patterns.
    pub distributions: Vec<String>,
}

impl Naming {
    /// From a loaded configuration, or the defaults (`algorithmia`, no distributions).
    pub fn from_config(config: Option<&Config>) -> Naming {
        match config {
            Some(c) => Naming {
                prefix: c.metric_prefix.clone(),
                distributions: c
                    .instances
                    .iter()
                    .flat_map(|i| i.distribution_metrics.iter().cloned())
                    .collect(),
            },
            None => Naming {
                prefix: "algorithmia".into(),
                distributions: Vec::new(),
            },
        }
    }

    /// The Datadog metric name of a message field, cleaned as the forwarder cleans it.
    pub fn metric(&self, field: &str) -> String {
        let mut name = String::new();
        push_metric_name(&mut name, &format!("{}.", self.prefix), field);
        name
    }

    /// Whether the forwarder sends this field as a distribution.
    pub fn is_distribution(&self, field: &str) -> bool {
        self.distributions.iter().any(|p| glob_match(p, field))
    }
}

/// An evaluation window: `5m`, `1h`, `1d`, `1w`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// Its length in minutes.
    pub minutes: u32,
}

impl Window {
    /// Parses `<n>m` (1 to 10080), `<n>h` (1 to 168), `<n>d` (1 to 7) or `1w`.
    pub fn parse(text: &str) -> Result<Window, String> {
        let err =
            || format!("{text:?} is not a window: use <n>m, <n>h, <n>d or 1w, from 1m to 1w (7d)");
        let unit = text.chars().last().ok_or_else(err)?;
        let n: u32 = text[..text.len() - unit.len_utf8()]
            .parse()
            .map_err(|_| err())?;
        let minutes = match unit {
            'm' => n,
            'h' => n.saturating_mul(60),
            'd' => n.saturating_mul(1440),
            'w' => n.saturating_mul(10080),
            _ => return Err(err()),
        };
        if n == 0 || minutes > 10080 {
            return Err(err());
        }
        Ok(Window { minutes })
    }

    /// `last_1h`, in the largest whole unit.
    pub fn last(self) -> String {
        format!("last_{}", self.text())
    }

    /// `1h`, in the largest whole unit.
    pub fn text(self) -> String {
        let m = self.minutes;
        if m % 1440 == 0 {
            format!("{}d", m / 1440)
        } else if m % 60 == 0 {
            format!("{}h", m / 60)
        } else {
            format!("{m}m")
        }
    }
}

/// Which way a change must go to alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Direction {
    /// Either way.
    #[default]
    Both,
    /// Up only.
    Above,
    /// Down only.
    Below,
}

impl Direction {
    /// `both`, `above` or `below`.
    pub fn parse(text: &str) -> Result<Direction, String> {
        match text {
            "both" => Ok(Direction::Both),
            "above" => Ok(Direction::Above),
            "below" => Ok(Direction::Below),
            _ => Err(format!("{text:?}: use both, above or below")),
        }
    }

    fn word(self) -> &'static str {
        match self {
            Direction::Both => "both",
            Direction::Above => "above",
            Direction::Below => "below",
        }
    }
}

/// The alert condition of a version comparison.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Difference {
    /// Candidate minus baseline, in the metric's unit.
    Absolute(f64),
    /// (Candidate minus baseline) / |baseline|, in percent.
    Relative(f64),
}

/// A version comparison: what `assets compare` takes.
#[derive(Debug, Clone)]
pub struct Compare {
    /// The model (`algorithm_name`).
    pub algorithm: String,
    /// The message field.
    pub field: String,
    /// The version compared against.
    pub baseline: String,
    /// The new version.
    pub candidate: String,
    /// The threshold.
    pub difference: Difference,
    /// Over how long.
    pub window: Window,
    /// `p95` and the like, for a distribution; the average otherwise.
    pub percentile: Option<String>,
    /// Which way the candidate must differ to alert.
    pub direction: Direction,
    /// More tags every query is filtered on (`env:prod`).
    pub filters: Vec<String>,
}

/// How a drift monitor decides a metric left its normal range.
#[derive(Debug, Clone, PartialEq)]
pub enum DriftMethod {
    /// `anomalies()`: a band learnt from the metric's own history.
    Anomalies {
        /// The width of the band, in deviations.
        deviations: f64,
        /// `None` for the `basic` algorithm; `hourly`, `daily` or `weekly` for `agile`.
        seasonality: Option<String>,
    },
    /// A change alert: the percent change against the same window some time ago.
    Change {
        /// The threshold, in percent.
        percent: f64,
        /// `5m`, `10m`, `15m`, `30m`, `1h`, `2h`, `4h` or `1d` ago.
        compared_to: String,
    },
}

/// Drift monitors: what `assets drift` takes besides the fields.
#[derive(Debug, Clone)]
pub struct Drift {
    /// The model (`algorithm_name`).
    pub algorithm: String,
    /// One version only; `None` watches every version, each alerting on its own.
    pub version: Option<String>,
    /// The alert window.
    pub window: Window,
    /// Anomalies or change.
    pub method: DriftMethod,
    /// Which way the metric must go to alert.
    pub direction: Direction,
    /// `p95` and the like, for a distribution; the average otherwise.
    pub percentile: Option<String>,
    /// More tags every query is filtered on (`env:prod`).
    pub filters: Vec<String>,
}

/// A monitor ready to be created or updated, and the identity it is found again by.
#[derive(Debug, Clone, PartialEq)]
pub struct Generated {
    /// The value of its `algorithmia-datadog-id:` tag: what it monitors, not how.
    pub id: String,
    /// The monitor, in the `/api/v1/monitor` format.
    pub body: Value,
}

fn tag_value(value: &str) -> String {
    let mut out = String::new();
    push_tag_value(&mut out, value, 200);
    // The backend lowercases tags; the query must match what it stores.
    out.to_lowercase()
}

fn check_filter(filter: &str) -> Result<String, String> {
    let ok = !filter.is_empty()
        && filter.contains(':')
        && filter
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | ':' | '.' | '/' | '!'));
    if ok {
        Ok(filter.to_lowercase())
    } else {
        Err(format!(
            "filter {filter:?} is not a tag: use key:value (letters, digits, _ - : . /)"
        ))
    }
}

fn scope(algorithm: &str, version: Option<&str>, filters: &[String]) -> Result<String, String> {
    let mut parts = vec![format!("{NAME_TAG}:{}", tag_value(algorithm))];
    if let Some(v) = version {
        parts.push(format!("{VERSION_TAG}:{}", tag_value(v)));
    }
    for f in filters {
        parts.push(check_filter(f)?);
    }
    Ok(parts.join(","))
}

/// The space aggregation: `avg`, or a percentile of a distribution.
fn aggregation(naming: &Naming, field: &str, percentile: Option<&str>) -> Result<String, String> {
    let Some(p) = percentile else {
        return Ok("avg".into());
    };
    let valid = p
        .strip_prefix('p')
        .and_then(|n| n.parse::<f64>().ok())
        .is_some_and(|n| n > 0.0 && n <= 100.0);
    if !valid {
        return Err(format!(
            "percentile {p:?}: use p50, p75, p90, p95, p99, p99.9"
        ));
    }
    if !naming.is_distribution(field) {
        return Err(format!(
            "--percentile needs a distribution: {field} is not in distribution_metrics, so it \
             is sent as a gauge, which has no percentiles (add it to distribution_metrics and \
             enable percentiles on {} in Datadog)",
            naming.metric(field)
        ));
    }
    Ok(p.to_string())
}

fn check_threshold(value: f64, what: &str) -> Result<f64, String> {
    if value.is_finite() && value > 0.0 {
        Ok(value)
    } else {
        Err(format!("{what} must be a positive number, not {value}"))
    }
}

/// A generated monitor, found again by `kind` and what `identity` names (what it watches, not
/// its threshold or window).
fn monitor(
    kind: &str,
    identity: &[&str],
    algorithm: &str,
    name: String,
    query: String,
    message: String,
    options: Value,
) -> Generated {
    let full = hash(&json!([kind, identity]));
    let id = format!("{kind}-{}", &full[..12]);
    let body = json!({
        "name": name,
        "type": "query alert",
        "query": query,
        "message": message,
        "tags": [
            MONITOR_TAG,
            format!("{NAME_TAG}:{}", tag_value(algorithm)),
            format!("{ID_TAG}{id}")
        ],
        "options": options
    });
    Generated { id, body }
}

fn number(v: f64) -> Value {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        Value::from(v as i64)
    } else {
        Value::from(v)
    }
}

/// A generated monitor's options: `specific` (thresholds, windows) and the settings they share.
/// `include_tags`: whether a notification names the group (the version) that alerts.
fn options(include_tags: bool, specific: Value) -> Value {
    let mut options = json!({
        "notify_no_data": false,
        "require_full_window": false,
        "include_tags": include_tags,
        "renotify_interval": 0,
        "notify_audit": false
    });
    if let (Value::Object(all), Value::Object(more)) = (&mut options, specific) {
        all.extend(more);
    }
    options
}

/// The monitor on the difference between two versions of one model's metric.
pub fn compare_monitor(naming: &Naming, spec: &Compare) -> Result<Generated, String> {
    if spec.baseline == spec.candidate {
        return Err("--baseline and --candidate are the same version".into());
    }
    let agg = aggregation(naming, &spec.field, spec.percentile.as_deref())?;
    let metric = naming.metric(&spec.field);
    let q = |version: &str| -> Result<String, String> {
        Ok(format!(
            "{agg}:{metric}{{{}}}",
            scope(&spec.algorithm, Some(version), &spec.filters)?
        ))
    };
    let (cand, base) = (q(&spec.candidate)?, q(&spec.baseline)?);
    let (mode, limit, unit) = match spec.difference {
        Difference::Absolute(t) => ("absolute", check_threshold(t, "--threshold")?, ""),
        Difference::Relative(p) => ("relative", check_threshold(p, "--relative")?, "%"),
    };
    let diff = match (spec.difference, spec.direction) {
        (Difference::Absolute(_), Direction::Both) => format!("abs({cand} - {base})"),
        (Difference::Absolute(_), _) => format!("{cand} - {base}"),
        (Difference::Relative(_), Direction::Both) => {
            format!("abs({cand} - {base}) / abs({base}) * 100")
        }
        (Difference::Relative(_), _) => format!("({cand} - {base}) / abs({base}) * 100"),
    };
    let (op, critical) = match spec.direction {
        Direction::Below => ("<", -limit),
        _ => (">", limit),
    };
    let window = spec.window.text();
    let query = format!(
        "avg({}):{diff} {op} {}",
        spec.window.last(),
        number(critical)
    );
    let stat = match &spec.percentile {
        Some(p) => format!("{p} of {}", spec.field),
        None => format!("average {}", spec.field),
    };
    let verb = match spec.direction {
        Direction::Both => "differs from",
        Direction::Above => "is above",
        Direction::Below => "is below",
    };
    let (algo, c, b) = (&spec.algorithm, &spec.candidate, &spec.baseline);
    let name = format!(
        "[Algorithmia] {algo} {stat}: candidate {c} {verb} baseline {b} by more than {}{unit}",
        number(limit)
    );
    let how = match spec.difference {
        Difference::Absolute(_) => "candidate minus baseline",
        Difference::Relative(_) => "(candidate minus baseline) / |baseline| x 100",
    };
    let message = format!(
        "{{{{#is_alert}}}}Candidate version {c} of {algo} {verb} baseline version {b} by \
         {{{{value}}}}{unit} on the {stat} over the last {window} (threshold \
         {{{{threshold}}}}{unit}). Check the new version before it takes more traffic.\
         {{{{/is_alert}}}}\n\
         {{{{#is_recovery}}}}Candidate {c} of {algo} is back within {}{unit} of baseline {b} on \
         the {stat}.{{{{/is_recovery}}}}\n\n\
         Baseline: {algo} {b}. Candidate: {algo} {c}. Value: {how}, averaged over {window}. \
         Made by `algorithmia-datadog assets compare`: run it again to change the threshold or \
         the window.",
        number(limit)
    );
    let options = options(false, json!({"thresholds": {"critical": number(critical)}}));
    Ok(monitor(
        "compare",
        &[algo, &spec.field, b, c, &agg, mode, &spec.filters.join(",")],
        algo,
        name,
        query,
        message,
        options,
    ))
}

/// One drift monitor per field, each alerting per model version (or for the one version given).
/// The fields are message field names, as a user or `discover` names them.
pub fn drift_monitors(
    naming: &Naming,
    fields: &[String],
    spec: &Drift,
) -> Result<Vec<Generated>, String> {
    if fields.is_empty() {
        return Err("no field to watch: give at least one --metric".into());
    }
    fields
        .iter()
        .map(|field| drift_monitor(naming, field, spec))
        .collect()
}

fn drift_monitor(naming: &Naming, field: &str, spec: &Drift) -> Result<Generated, String> {
    let agg = aggregation(naming, field, spec.percentile.as_deref())?;
    let metric = naming.metric(field);
    let algo = &spec.algorithm;
    let scope = scope(algo, spec.version.as_deref(), &spec.filters)?;
    let by = if spec.version.is_some() {
        String::new()
    } else {
        format!(" by {{{VERSION_TAG}}}")
    };
    let metric_query = format!("{agg}:{metric}{{{scope}}}{by}");
    let version_text = match &spec.version {
        Some(v) => v.clone(),
        None => format!("{{{{{VERSION_TAG}.name}}}}"),
    };
    let stat = match &spec.percentile {
        Some(p) => format!("{p} of {field}"),
        None => format!("average {field}"),
    };
    let window = spec.window;
    let (query, options, how, kind) = match &spec.method {
        DriftMethod::Anomalies {
            deviations,
            seasonality,
        } => {
            if window.minutes < 15 {
                return Err("an anomaly monitor's --window is 15m at least".into());
            }
            let deviations = check_threshold(*deviations, "--deviations")?;
            let (algorithm, season) = match seasonality.as_deref() {
                None => ("basic", String::new()),
                Some(s @ ("hourly" | "daily" | "weekly")) => {
                    ("agile", format!(", seasonality='{s}'"))
                }
                Some(other) => {
                    return Err(format!(
                        "seasonality {other:?}: use hourly, daily or weekly"
                    ))
                }
            };
            // At most a fifth of the alert window per point (Datadog's rule); about 30 points.
            let interval = (window.minutes * 60 / 30).max(60);
            // The graph in notifications shows about five alert windows.
            let shown = Window {
                minutes: (window.minutes * 5).min(10080 * 2),
            };
            let query = format!(
                "avg({}):anomalies({metric_query}, '{algorithm}', {}, direction='{}', \
                 alert_window='{}', interval={interval}, count_default_zero='true'{season}) >= 1",
                shown.last(),
                number(deviations),
                spec.direction.word(),
                window.last()
            );
            let options = options(
                true,
                json!({
                    "thresholds": {"critical": 1, "critical_recovery": 0},
                    "threshold_windows": {
                        "trigger_window": window.last(),
                        "recovery_window": window.last()
                    }
                }),
            );
            let how = format!(
                "every point of the last {} outside the band that anomalies() ('{algorithm}'{}) \
                 expects from its own history, {} deviations wide",
                window.text(),
                seasonality
                    .as_deref()
                    .map(|s| format!(", {s} seasonality"))
                    .unwrap_or_default(),
                number(deviations)
            );
            (query, options, how, "anomalies")
        }
        DriftMethod::Change {
            percent,
            compared_to,
        } => {
            let percent = check_threshold(*percent, "--change-percent")?;
            const SHIFTS: [&str; 8] = ["5m", "10m", "15m", "30m", "1h", "2h", "4h", "1d"];
            if !SHIFTS.contains(&compared_to.as_str()) {
                return Err(format!(
                    "--compared-to {compared_to:?}: use one of {}",
                    SHIFTS.join(", ")
                ));
            }
            let (op, critical) = match spec.direction {
                Direction::Above => (">", percent),
                Direction::Below => ("<", -percent),
                Direction::Both => {
                    return Err(
                        "a change alert goes one way: give --direction above or below".into(),
                    )
                }
            };
            let query = format!(
                "pct_change(avg({}),{compared_to}_ago):{metric_query} {op} {}",
                window.last(),
                number(critical)
            );
            let options = options(true, json!({"thresholds": {"critical": number(critical)}}));
            let how = format!(
                "the {stat} over the last {} changed by more than {}% against {compared_to} earlier",
                window.text(),
                number(percent)
            );
            (query, options, how, "change")
        }
    };
    let name = format!("[Algorithmia] {algo} {version_text}: {stat} left its normal range");
    let message = format!(
        "{{{{#is_alert}}}}The {stat} of {algo} version {version_text} left its normal range: \
         {how}. Drifting input data, an upstream change or a model regression; compare the \
         versions on the Algorithmia dashboard.{{{{/is_alert}}}}\n\
         {{{{#is_recovery}}}}The {stat} of {algo} version {version_text} is back in its normal \
         range.{{{{/is_recovery}}}}\n\n\
         Made by `algorithmia-datadog assets drift`: run it again to change it."
    );
    Ok(monitor(
        "drift",
        &[
            algo,
            field,
            spec.version.as_deref().unwrap_or("*"),
            &agg,
            kind,
            &spec.filters.join(","),
        ],
        algo,
        name,
        query,
        message,
        options,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naming() -> Naming {
        Naming {
            prefix: "algorithmia".into(),
            distributions: vec!["duration_*".into()],
        }
    }

    fn compare() -> Compare {
        Compare {
            algorithm: "credit_card_approval".into(),
            field: "risk_score".into(),
            baseline: "1.0.6".into(),
            candidate: "2.0.0".into(),
            difference: Difference::Absolute(0.1),
            window: Window::parse("1h").unwrap(),
            percentile: None,
            direction: Direction::Both,
            filters: vec![],
        }
    }

    #[test]
    fn the_version_difference_query_subtracts_the_baseline_from_the_candidate() {
        let m = compare_monitor(&naming(), &compare()).unwrap();
        assert_eq!(
            m.body["query"],
            "avg(last_1h):abs(avg:algorithmia.risk_score{algorithm_name:credit_card_approval,\
             algorithm_version:2.0.0} - avg:algorithmia.risk_score{algorithm_name:\
             credit_card_approval,algorithm_version:1.0.6}) > 0.1"
        );
        assert_eq!(m.body["options"]["thresholds"]["critical"], 0.1);
        let name = m.body["name"].as_str().unwrap();
        assert!(
            name.contains("candidate 2.0.0") && name.contains("baseline 1.0.6"),
            "{name}"
        );
        // The threshold and the window are not the identity: changing them updates the monitor.
        let mut other = compare();
        other.difference = Difference::Absolute(0.2);
        other.window = Window::parse("4h").unwrap();
        assert_eq!(compare_monitor(&naming(), &other).unwrap().id, m.id);
        other.baseline = "1.0.7".into();
        assert_ne!(compare_monitor(&naming(), &other).unwrap().id, m.id);
    }

    #[test]
    fn a_relative_comparison_below_and_a_percentile_of_a_distribution() {
        let mut spec = compare();
        spec.field = "duration_milliseconds".into();
        spec.percentile = Some("p95".into());
        spec.difference = Difference::Relative(20.0);
        spec.direction = Direction::Below;
        let m = compare_monitor(&naming(), &spec).unwrap();
        let q = m.body["query"].as_str().unwrap();
        assert!(
            q.starts_with("avg(last_1h):(p95:algorithmia.duration_milliseconds{"),
            "{q}"
        );
        assert!(q.ends_with("* 100 < -20"), "{q}");
        assert_eq!(m.body["options"]["thresholds"]["critical"], -20);
        // A gauge has no percentiles.
        spec.field = "risk_score".into();
        let err = compare_monitor(&naming(), &spec).unwrap_err();
        assert!(err.contains("distribution_metrics"), "{err}");
    }

    #[test]
    fn an_anomaly_monitor_has_matching_windows_per_version() {
        let spec = Drift {
            algorithm: "credit_card_approval".into(),
            version: None,
            window: Window::parse("30m").unwrap(),
            method: DriftMethod::Anomalies {
                deviations: 2.0,
                seasonality: None,
            },
            direction: Direction::Both,
            percentile: None,
            filters: vec![],
        };
        let fields = vec!["risk_score".to_string(), "approved amount".to_string()];
        let monitors = drift_monitors(&naming(), &fields, &spec).unwrap();
        assert_eq!(monitors.len(), 2);
        let m = &monitors[0].body;
        assert_eq!(
            m["query"],
            "avg(last_150m):anomalies(avg:algorithmia.risk_score{algorithm_name:\
             credit_card_approval} by {algorithm_version}, 'basic', 2, direction='both', \
             alert_window='last_30m', interval=60, count_default_zero='true') >= 1"
        );
        assert_eq!(
            m["options"]["threshold_windows"]["trigger_window"],
            "last_30m"
        );
        assert_eq!(m["options"]["thresholds"]["critical"], 1);
        assert!(monitors[1].body["query"]
            .as_str()
            .unwrap()
            .contains("algorithmia.approved_amount{"));
        assert_ne!(monitors[0].id, monitors[1].id);
    }

    #[test]
    fn windows_parse_and_print_in_the_largest_unit() {
        assert_eq!(Window::parse("90m").unwrap().text(), "90m");
        assert_eq!(Window::parse("120m").unwrap().last(), "last_2h");
        assert_eq!(Window::parse("1w").unwrap().text(), "7d");
        for bad in ["", "h", "0h", "8d", "1y", "-1h"] {
            assert!(Window::parse(bad).is_err(), "{bad}");
        }
    }
}
