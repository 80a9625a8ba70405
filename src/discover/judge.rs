//! Judging what was read by the forwarder's own mapping rules: each field's types, range and
//! spread per model version.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt::Write as _;

use crate::config::Instance;
use crate::decode::{decode, FieldValue};
use crate::dogstatsd::{MetricKind, Value};
use crate::metrics::{parse_numeric_string, Action, MetricMapper};

use super::*;

/// The values of one field within one model version.
#[derive(Default)]
struct VersionValues {
    count: u64,
    distinct: HashSet<u64>,
}

/// What was seen of one field.
struct FieldStats {
    action: Action,
    messages: u64,
    types: BTreeMap<&'static str, u64>,
    forwarded: u64,
    skipped: BTreeMap<&'static str, u64>,
    min: f64,
    max: f64,
    distinct: HashSet<u64>,
    per_version: HashMap<(String, String), VersionValues>,
    models: BTreeSet<String>,
    text_values: BTreeSet<String>,
}

/// The statistics of sampled messages, built message by message with [`Discovery::add`].
pub struct Discovery {
    mapper: MetricMapper,
    instance: Instance,
    messages: u64,
    rejected: BTreeMap<&'static str, u64>,
    models: BTreeMap<(String, String, String), u64>,
    fields: BTreeMap<String, FieldStats>,
}

/// The type of a value as `discover` reports it.
fn type_of(value: &FieldValue<'_>) -> &'static str {
    match value {
        FieldValue::UInt(_) | FieldValue::Int(_) => "number",
        FieldValue::Float(v) if v.is_finite() => "number",
        FieldValue::Float(_) => "non-finite number",
        FieldValue::Bool(_) => "boolean",
        FieldValue::Str(s) if parse_numeric_string(s).is_ok() => "numeric string",
        FieldValue::Str(_) => "text",
        FieldValue::Null => "null",
        FieldValue::Array => "array",
        FieldValue::Object => "object",
    }
}

/// A tag field's value as a model's name, version or owner.
fn text_of(value: Option<&FieldValue<'_>>) -> String {
    match value {
        Some(FieldValue::Str(s)) => s.to_string(),
        Some(FieldValue::UInt(v)) => v.to_string(),
        Some(FieldValue::Int(v)) => v.to_string(),
        Some(FieldValue::Float(v)) => v.to_string(),
        Some(FieldValue::Bool(v)) => v.to_string(),
        _ => "(none)".to_string(),
    }
}

fn as_f64(value: Value) -> f64 {
    match value {
        Value::UInt(v) => v as f64,
        Value::Int(v) => v as f64,
        Value::Float(v) => v,
    }
}

/// The same number, whichever zero: the key of a distinct value.
fn key_of(v: f64) -> u64 {
    if v == 0.0 {
        0
    } else {
        v.to_bits()
    }
}

impl Discovery {
    /// Statistics judged by the mapping rules of `instance`, with metric names under `prefix`.
    pub fn new(prefix: &str, instance: &Instance) -> Discovery {
        Discovery {
            mapper: MetricMapper::for_instance(prefix, instance),
            instance: instance.clone(),
            messages: 0,
            rejected: BTreeMap::new(),
            models: BTreeMap::new(),
            fields: BTreeMap::new(),
        }
    }

    /// One message's value (`None`: a tombstone).
    pub fn add(&mut self, payload: Option<&[u8]>) {
        self.messages += 1;
        let message = match decode(payload.unwrap_or_default()) {
            Ok(m) => m,
            Err(e) => {
                *self.rejected.entry(e.reason().label()).or_default() += 1;
                return;
            }
        };
        let name = text_of(message.get("algorithm_name"));
        let version = text_of(message.get("algorithm_version"));
        let owner = text_of(message.get("algorithm_owner"));
        *self
            .models
            .entry((name.clone(), version.clone(), owner))
            .or_default() += 1;
        for field in &message.fields {
            let key = field.name.as_ref();
            if !self.fields.contains_key(key) {
                let action = self.mapper.action_for(key);
                self.fields.insert(
                    key.to_string(),
                    FieldStats {
                        action,
                        messages: 0,
                        types: BTreeMap::new(),
                        forwarded: 0,
                        skipped: BTreeMap::new(),
                        min: f64::INFINITY,
                        max: f64::NEG_INFINITY,
                        distinct: HashSet::new(),
                        per_version: HashMap::new(),
                        models: BTreeSet::new(),
                        text_values: BTreeSet::new(),
                    },
                );
            }
            let Some(stats) = self.fields.get_mut(key) else {
                continue;
            };
            stats.messages += 1;
            *stats.types.entry(type_of(&field.value)).or_default() += 1;
            if let FieldValue::Str(s) = &field.value {
                if stats.text_values.len() <= MAX_TAG_VALUES {
                    stats.text_values.insert(s.to_string());
                }
            }
            // The forwarder's order: operational fields first, then the value, then the name.
            if let Action::Operational = stats.action {
                continue;
            }
            let value = match self.mapper.value_of(&field.value) {
                Ok(v) => as_f64(v),
                Err(reason) => {
                    *stats.skipped.entry(reason.label()).or_default() += 1;
                    continue;
                }
            };
            if let Action::Skip(reason) = stats.action {
                *stats.skipped.entry(reason.label()).or_default() += 1;
                continue;
            }
            stats.forwarded += 1;
            stats.min = stats.min.min(value);
            stats.max = stats.max.max(value);
            stats.distinct.insert(key_of(value));
            stats.models.insert(name.clone());
            let per_version = stats
                .per_version
                .entry((name.clone(), version.clone()))
                .or_default();
            per_version.count += 1;
            per_version.distinct.insert(key_of(value));
        }
    }

    /// Messages added so far.
    pub fn messages(&self) -> u64 {
        self.messages
    }

    /// What the messages show, sorted; `read` says where they came from, `config` is the
    /// configuration file the suggestions are for.
    pub fn report(&self, read: Option<&ReadSummary>, config: Option<&str>) -> Report {
        let fields: Vec<FieldReport> = self
            .fields
            .iter()
            .map(|(name, stats)| field_report(name, stats))
            .collect();
        let models = self
            .models
            .iter()
            .map(|((name, version, owner), &messages)| Model {
                algorithm_name: name.clone(),
                algorithm_version: version.clone(),
                algorithm_owner: owner.clone(),
                messages,
            })
            .collect();
        let rejected = self
            .rejected
            .iter()
            .map(|(reason, &count)| Rejected {
                reason: (*reason).to_string(),
                count,
            })
            .collect();
        let suggestion = self.suggest(&fields, config);
        Report {
            read: read.cloned(),
            instance: self.instance.index,
            messages: self.messages,
            rejected,
            models,
            fields,
            suggestion,
        }
    }

    fn suggest(&self, fields: &[FieldReport], config: Option<&str>) -> Suggestion {
        let distribution_metrics: Vec<String> = fields
            .iter()
            .filter(|f| f.per_call == Some(true))
            .map(|f| f.name.clone())
            .collect();
        let mut tag_fields: Vec<String> = Vec::new();
        for tag in &self.instance.tag_fields {
            if !tag_fields.contains(tag) {
                tag_fields.push(tag.clone());
            }
        }
        let mut new_tags = Vec::new();
        for (name, stats) in &self.fields {
            let all_text = stats.types.len() == 1 && stats.types.contains_key("text");
            if all_text && stats.text_values.len() <= MAX_TAG_VALUES && !tag_fields.contains(name) {
                tag_fields.push(name.clone());
                new_tags.push(name.clone());
            }
        }
        let mut yaml = String::new();
        let _ = writeln!(
            yaml,
            "# instances[{}]{}",
            self.instance.index,
            config.map(|c| format!(" of {c}")).unwrap_or_default()
        );
        if self.instance.distribution_metrics != distribution_metrics {
            let _ = writeln!(
                yaml,
                "# distribution_metrics is now {}",
                flow_list(&self.instance.distribution_metrics)
            );
        }
        let _ = writeln!(
            yaml,
            "distribution_metrics: {}",
            flow_list(&distribution_metrics)
        );
        for name in &new_tags {
            let values: Vec<&str> = self.fields[name]
                .text_values
                .iter()
                .map(String::as_str)
                .collect();
            let _ = writeln!(
                yaml,
                "# {name}: text with {} distinct value{} ({}): a tag rather than a skipped field",
                values.len(),
                if values.len() == 1 { "" } else { "s" },
                values.join(", ")
            );
        }
        let _ = writeln!(yaml, "tag_fields: {}", flow_list(&tag_fields));

        let mut per_model: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for field in fields {
            for model in &field.models {
                per_model.entry(model).or_default().push(&field.name);
            }
        }
        let drift_commands = per_model
            .iter()
            .filter(|(model, _)| **model != "(none)")
            .map(|(model, metrics)| {
                let mut line = format!(
                    "algorithmia-datadog assets drift --algorithm {}",
                    shell_word(model)
                );
                for metric in metrics {
                    let _ = write!(line, " --metric {}", shell_word(metric));
                }
                if let Some(config) = config {
                    let _ = write!(line, " --config {}", shell_word(config));
                }
                line
            })
            .collect();
        Suggestion {
            distribution_metrics,
            tag_fields,
            yaml,
            drift_commands,
        }
    }
}

fn field_report(name: &str, stats: &FieldStats) -> FieldReport {
    let (outcome, metric) = match &stats.action {
        Action::Operational => ("operational".to_string(), None),
        _ if stats.forwarded == 0 => ("skipped".to_string(), None),
        Action::Metric { name, kind } => {
            let kind = match kind {
                MetricKind::Distribution => "distribution",
                _ => "gauge",
            };
            (kind.to_string(), Some(name.to_string()))
        }
        Action::Skip(_) => ("skipped".to_string(), None),
    };
    let busiest = stats
        .per_version
        .iter()
        .map(|((model, version), v)| (v.distinct.len(), v.count, model, version))
        // The most distinct values, then the most values, then the first model and version.
        .max_by(|a, b| {
            (a.0, a.1)
                .cmp(&(b.0, b.1))
                .then_with(|| (b.2, b.3).cmp(&(a.2, a.3)))
        });
    let only_booleans = stats.types.keys().all(|t| *t == "boolean");
    let (per_call, why) = match busiest {
        None => (None, "not forwarded".to_string()),
        Some(_) if only_booleans => (
            Some(false),
            "a boolean: its average is a rate, a gauge suffices".to_string(),
        ),
        Some((distinct, count, model, version)) if distinct >= PER_CALL_DISTINCT => (
            Some(true),
            format!("{distinct} distinct values in {count} calls of {model} {version}"),
        ),
        Some((distinct, count, _, _)) if count >= PER_CALL_DISTINCT as u64 => (
            Some(false),
            format!(
                "at most {distinct} distinct value{} per version: a flag or a level",
                if distinct == 1 { "" } else { "s" }
            ),
        ),
        Some((_, count, _, _)) => (
            None,
            format!("too few values to tell ({count} at most per version)"),
        ),
    };
    FieldReport {
        name: name.to_string(),
        messages: stats.messages,
        types: stats
            .types
            .iter()
            .map(|(t, &n)| ((*t).to_string(), n))
            .collect(),
        outcome,
        metric,
        forwarded: stats.forwarded,
        skipped: stats
            .skipped
            .iter()
            .map(|(r, &n)| ((*r).to_string(), n))
            .collect(),
        min: (stats.forwarded > 0).then_some(stats.min),
        max: (stats.forwarded > 0).then_some(stats.max),
        distinct: stats.distinct.len() as u64,
        models: stats.models.iter().cloned().collect(),
        per_call,
        why,
    }
}

/// A YAML flow sequence of field names, each quoted unless plain.
fn flow_list(items: &[String]) -> String {
    let quoted: Vec<String> = items
        .iter()
        .map(|item| {
            let plain = !item.is_empty()
                && item
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
                && item.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_');
            if plain {
                item.clone()
            } else {
                serde_json::Value::String(item.clone()).to_string()
            }
        })
        .collect();
    format!("[{}]", quoted.join(", "))
}

/// A word for a POSIX shell, quoted unless plain.
fn shell_word(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '/' | ':' | '='));
    if plain {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_are_quoted_only_when_needed() {
        assert_eq!(shell_word("risk_score"), "risk_score");
        assert_eq!(shell_word("it's odd"), r"'it'\''s odd'");
        assert_eq!(flow_list(&["a".into(), "b c".into()]), r#"[a, "b c"]"#);
    }
}
