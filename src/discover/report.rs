//! What `discover` prints: the report, as a terminal table or as JSON.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use super::*;

/// Messages rejected as a whole, for one reason.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Rejected {
    /// The forwarder's reason (`invalid_json`, `not_utf8`, `not_an_object`, `empty`).
    pub reason: String,
    /// How many.
    pub count: u64,
}

/// One model version seen.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Model {
    /// `algorithm_name` (`(none)` when absent).
    pub algorithm_name: String,
    /// `algorithm_version`.
    pub algorithm_version: String,
    /// `algorithm_owner`.
    pub algorithm_owner: String,
    /// Messages.
    pub messages: u64,
}

/// One field seen, as the forwarder would treat it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct FieldReport {
    /// The field's name.
    pub name: String,
    /// Messages carrying it.
    pub messages: u64,
    /// Its values by type: `number`, `boolean`, `numeric string`, `text`, `null`, `array`,
    /// `object`, `non-finite number`.
    pub types: BTreeMap<String, u64>,
    /// `gauge`, `distribution`, `operational` (never a metric) or `skipped` (never forwarded).
    pub outcome: String,
    /// The metric name, when forwarded.
    pub metric: Option<String>,
    /// Values forwarded.
    pub forwarded: u64,
    /// Values the forwarder would skip, by its reason (`string`, `object`, `filtered`...).
    pub skipped: BTreeMap<String, u64>,
    /// The smallest value forwarded.
    pub min: Option<f64>,
    /// The largest value forwarded.
    pub max: Option<f64>,
    /// Distinct values forwarded.
    pub distinct: u64,
    /// The models (`algorithm_name`) whose values were forwarded.
    pub models: Vec<String>,
    /// Whether it looks like a per-call value worth a distribution (`None`: cannot tell).
    pub per_call: Option<bool>,
    /// Why.
    pub why: String,
}

/// The configuration and monitors `discover` suggests.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Suggestion {
    /// The per-call fields.
    pub distribution_metrics: Vec<String>,
    /// The configured tag fields, then text fields with few values.
    pub tag_fields: Vec<String>,
    /// Both as the instance's YAML lines, with comments.
    pub yaml: String,
    /// One `assets drift` command per model, for its forwarded fields.
    pub drift_commands: Vec<String>,
}

/// Everything `discover` found, sorted.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Report {
    /// Where the messages came from.
    pub read: Option<ReadSummary>,
    /// The instance whose rules judged them.
    pub instance: usize,
    /// Messages examined.
    pub messages: u64,
    /// Messages the forwarder would reject, by reason.
    pub rejected: Vec<Rejected>,
    /// Model versions, by name, version, owner.
    pub models: Vec<Model>,
    /// Fields, by name.
    pub fields: Vec<FieldReport>,
    /// What to configure and create.
    pub suggestion: Suggestion,
}

/// A number as short as it reads.
fn number(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_string(), |v| v.to_string())
}

/// Rows as columns padded to their widest cell, two spaces apart, each line indented.
fn table(out: &mut String, header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut line = |cells: Vec<&str>| {
        let mut text = String::from("  ");
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            if i + 1 == cells.len() {
                text.push_str(cell);
            } else {
                let _ = write!(text, "{cell:<w$}  ");
            }
        }
        let _ = writeln!(out, "{}", text.trim_end());
    };
    line(header.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
}

fn counts(map: &BTreeMap<String, u64>) -> String {
    map.iter()
        .map(|(k, n)| format!("{k} {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut out = String::new();
        if let Some(read) = &self.read {
            let _ = writeln!(
                out,
                "Read the newest {} messages of topic {} on {} ({} asked for) in {:.1} s{}.",
                read.read,
                read.topic,
                read.brokers,
                read.requested,
                read.seconds,
                if read.timed_out {
                    " (the timeout cut it short)"
                } else {
                    ""
                }
            );
            let _ = writeln!(
                out,
                "Read-only: partitions assigned, no group joined, nothing committed (group id {} unused).",
                read.group_id
            );
            let rows: Vec<Vec<String>> = read
                .partitions
                .iter()
                .map(|p| {
                    vec![
                        p.partition.to_string(),
                        format!("{}..{}", p.low, p.high.max(p.end)),
                        if p.read == 0 {
                            "-".to_string()
                        } else {
                            format!("{}..{}", p.end - p.read as i64, p.end)
                        },
                        p.read.to_string(),
                        if p.complete { "yes" } else { "no (timeout)" }.to_string(),
                    ]
                })
                .collect();
            table(
                &mut out,
                &["partition", "offsets", "read", "messages", "to the end"],
                &rows,
            );
        } else {
            let _ = writeln!(out, "{} messages examined.", self.messages);
        }

        let _ = writeln!(out, "\nModels ({} model versions)", self.models.len());
        let rows: Vec<Vec<String>> = self
            .models
            .iter()
            .map(|m| {
                vec![
                    m.algorithm_name.clone(),
                    m.algorithm_version.clone(),
                    m.algorithm_owner.clone(),
                    m.messages.to_string(),
                ]
            })
            .collect();
        table(
            &mut out,
            &[
                "algorithm_name",
                "algorithm_version",
                "algorithm_owner",
                "messages",
            ],
            &rows,
        );

        let rejected: u64 = self.rejected.iter().map(|r| r.count).sum();
        let _ = write!(out, "\nRejected messages: {rejected}");
        if rejected > 0 {
            let reasons: Vec<String> = self
                .rejected
                .iter()
                .map(|r| format!("{} {}", r.reason, r.count))
                .collect();
            let _ = write!(
                out,
                " ({}): the forwarder rejects these whole",
                reasons.join(", ")
            );
        }
        let _ = writeln!(out);

        let (metrics, others): (Vec<&FieldReport>, Vec<&FieldReport>) = self
            .fields
            .iter()
            .partition(|f| f.outcome == "gauge" || f.outcome == "distribution");
        let _ = writeln!(
            out,
            "\nMetric fields (the forwarder's rules, this configuration)"
        );
        let rows: Vec<Vec<String>> = metrics
            .iter()
            .map(|f| {
                vec![
                    f.name.clone(),
                    counts(&f.types),
                    f.forwarded.to_string(),
                    f.outcome.clone(),
                    number(f.min),
                    number(f.max),
                    f.distinct.to_string(),
                    match f.per_call {
                        Some(true) => format!("yes: {}", f.why),
                        Some(false) => format!("no: {}", f.why),
                        None => f.why.clone(),
                    },
                ]
            })
            .collect();
        table(
            &mut out,
            &[
                "field",
                "types",
                "sent",
                "as",
                "min",
                "max",
                "distinct",
                "per call (distribution)?",
            ],
            &rows,
        );
        let partly: Vec<String> = metrics
            .iter()
            .filter(|f| !f.skipped.is_empty())
            .map(|f| format!("{} ({})", f.name, counts(&f.skipped)))
            .collect();
        if !partly.is_empty() {
            let _ = writeln!(out, "  values skipped: {}", partly.join("; "));
        }

        let skipped: Vec<&&FieldReport> =
            others.iter().filter(|f| f.outcome == "skipped").collect();
        let _ = writeln!(
            out,
            "\nSkipped fields (never forwarded, with the forwarder's reason)"
        );
        if skipped.is_empty() {
            let _ = writeln!(out, "  none");
        } else {
            let rows: Vec<Vec<String>> = skipped
                .iter()
                .map(|f| vec![f.name.clone(), counts(&f.types), counts(&f.skipped)])
                .collect();
            table(&mut out, &["field", "types", "skipped"], &rows);
        }
        let operational: Vec<&str> = others
            .iter()
            .filter(|f| f.outcome == "operational")
            .map(|f| f.name.as_str())
            .collect();
        let _ = writeln!(
            out,
            "\nOperational fields (never metrics): {}",
            if operational.is_empty() {
                "none".to_string()
            } else {
                operational.join(", ")
            }
        );

        let _ = writeln!(out, "\nSuggested configuration");
        for line in self.suggestion.yaml.lines() {
            let _ = writeln!(out, "    {line}");
        }
        let _ = writeln!(
            out,
            "\nDrift monitors to create (one per model and field; add --dry-run to see them first)"
        );
        if self.suggestion.drift_commands.is_empty() {
            let _ = writeln!(out, "  none: no model sent a metric");
        }
        for command in &self.suggestion.drift_commands {
            let _ = writeln!(out, "  {command}");
        }
        f.write_str(out.trim_end())
    }
}
