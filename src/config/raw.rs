//! The file as written: what serde reads, before any check.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_yaml::Value;

use super::env::{expand_env, EnvLookup};
use super::secrets::{is_secret_path, Secret};
use super::settings::{SaslMechanism, SecurityProtocol, StartOffset};
use super::suggest::{unknown_key, Elsewhere};
use super::{gather, Config, ConfigError};

/// The document: its two parts are read on their own ([`RawInit`], [`RawInstance`]), so that a
/// mistake in one hides none in another.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFile {
    #[serde(default)]
    pub(super) init_config: Option<Value>,
    pub(super) instances: Vec<Value>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawInit {
    pub(super) dogstatsd_url: Option<String>,
    pub(super) metric_prefix: Option<String>,
    pub(super) health_address: Option<String>,
    pub(super) health_stall_seconds: Option<u64>,
    pub(super) packed_distributions: Option<bool>,
    pub(super) udp_max_datagrams_per_second: Option<u32>,
    #[serde(default)]
    pub(super) tags: Vec<String>,
}

#[derive(Deserialize)]
#[serde(untagged)]
pub(super) enum Brokers {
    Joined(String),
    Listed(Vec<String>),
}

#[derive(Deserialize)]
#[serde(untagged)]
pub(super) enum Scalar {
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
}

impl Scalar {
    pub(super) fn into_string(self) -> String {
        match self {
            Scalar::Str(s) => s,
            Scalar::Int(i) => i.to_string(),
            Scalar::Float(f) => f.to_string(),
            Scalar::Bool(b) => b.to_string(),
        }
    }
}

/// `consumer_group` when not set.
pub(super) const DEFAULT_GROUP: &str = "algorithmia-datadog";

/// A setting that may be left out, but not given as `null`: what was given is read as `T`
/// (whose errors name the expected type), and what was left out is `None`, its default applied
/// when the instance is validated.
fn given<'de, D: serde::Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

/// One instance as written: a setting left out is `None` (or empty), and takes its default
/// ([`crate::config::Mapping::default`], the `DEFAULT_*` constants) when validated.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawInstance {
    pub(super) kafka_broker: Brokers,
    pub(super) kafka_topic: String,
    #[serde(default, deserialize_with = "given")]
    pub(super) consumer_group: Option<String>,
    #[serde(default)]
    pub(super) start_offset: StartOffset,
    #[serde(default)]
    pub(super) security_protocol: SecurityProtocol,
    pub(super) sasl_mechanism: Option<SaslMechanism>,
    pub(super) sasl_username: Option<String>,
    pub(super) sasl_password: Option<Secret>,
    pub(super) ssl_ca_location: Option<PathBuf>,
    #[serde(default, deserialize_with = "given")]
    pub(super) tag_fields: Option<Vec<String>>,
    #[serde(default, deserialize_with = "given")]
    pub(super) operational_fields: Option<Vec<String>>,
    #[serde(default, deserialize_with = "given")]
    pub(super) numeric_strings: Option<bool>,
    #[serde(default, deserialize_with = "given")]
    pub(super) booleans: Option<bool>,
    #[serde(default)]
    pub(super) include_metrics: Vec<String>,
    #[serde(default)]
    pub(super) exclude_metrics: Vec<String>,
    #[serde(default)]
    pub(super) distribution_metrics: Vec<String>,
    #[serde(default, deserialize_with = "given")]
    pub(super) aggregation_interval: Option<u64>,
    #[serde(default, deserialize_with = "given")]
    pub(super) max_contexts: Option<usize>,
    #[serde(default, deserialize_with = "given")]
    pub(super) commit_interval_ms: Option<u64>,
    #[serde(default, deserialize_with = "given")]
    pub(super) send_timestamps: Option<bool>,
    #[serde(default, deserialize_with = "given")]
    pub(super) timestamp_field: Option<String>,
    #[serde(default)]
    pub(super) tags: Vec<String>,
    #[serde(default)]
    pub(super) kafka_options: BTreeMap<String, Scalar>,
}

impl Config {
    /// Parses and validates a YAML document. `origin` names it in errors.
    ///
    /// Every mistake is reported, not only the first: unknown keys, `${VAR}` that cannot be
    /// expanded, values of the wrong type and values the checks refuse, in `init_config` and in
    /// every instance. The error returned is the first of them; the others follow in its
    /// `reason`, one a line (see [`ConfigError`]). A syntax error is the one mistake reported
    /// alone.
    pub fn from_yaml(text: &str, origin: &str, env: EnvLookup<'_>) -> Result<Config, ConfigError> {
        let value: Value = serde_yaml::from_str(text)
            .map_err(|e| ConfigError::new(origin, "(syntax)", e.to_string()))?;
        if value.is_null() {
            return Err(ConfigError::new(origin, "instances", "the file is empty"));
        }
        let mut problems = Vec::new();
        let mut reader = Reader {
            origin,
            env,
            problems: &mut problems,
        };
        let Some(file) = reader.read::<RawFile>(value, "", Part::File) else {
            return Err(gather(problems)
                .unwrap_or_else(|| ConfigError::new(origin, "(top level)", "cannot be read")));
        };
        let init = match file.raw.init_config {
            Some(value) => reader
                .read::<RawInit>(value, "init_config", Part::Init)
                .unwrap_or_else(|| Read::unreadable(Part::Init)),
            None => Read::whole(RawInit::default()),
        };
        let instances = file
            .raw
            .instances
            .into_iter()
            .enumerate()
            .map(|(i, value)| {
                reader.read::<RawInstance>(value, &format!("instances[{i}]"), Part::Instance)
            })
            .collect();
        let parts = Parts {
            init,
            instances,
            instances_unreadable: file.unreadable.contains("instances"),
        };
        Config::validate(parts, origin, env, problems)
    }
}

/// The parts of a configuration, as read: what the checks of [`Config::validate`] take.
pub(super) struct Parts {
    /// `init_config`.
    pub(super) init: Read<RawInit>,
    /// Each entry of `instances`; `None` for one that could not be read at all (its problem is
    /// already reported).
    pub(super) instances: Vec<Option<Read<RawInstance>>>,
    /// Whether `instances` itself could not be read (so that its being empty says nothing).
    pub(super) instances_unreadable: bool,
}

/// One part of the file read as `T`, less the keys whose values could not be read: those take
/// their defaults, and are named in `unreadable` so that the checks say nothing more about them
/// (a second error about a key already reported would only mislead).
pub(super) struct Read<T> {
    pub(super) raw: T,
    pub(super) unreadable: BTreeSet<String>,
}

impl<T> Read<T> {
    /// A part whose every key was read.
    pub(super) fn whole(raw: T) -> Self {
        Read {
            raw,
            unreadable: BTreeSet::new(),
        }
    }

    /// Whether the value of `key` was read (or left out).
    pub(super) fn readable(&self, key: &str) -> bool {
        !self.unreadable.contains(key)
    }
}

impl<T: Default> Read<T> {
    /// A part that could not be read at all: the defaults, none of them to be checked.
    fn unreadable(part: Part) -> Self {
        Read {
            raw: T::default(),
            unreadable: part.keys().iter().map(|k| k.to_string()).collect(),
        }
    }
}

/// The kinds of mapping in the file, each with its keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Part {
    /// The document.
    File,
    /// `init_config`.
    Init,
    /// An entry of `instances`.
    Instance,
}

impl Part {
    pub(super) const ALL: [Part; 3] = [Part::File, Part::Init, Part::Instance];

    /// The keys valid in this part: the serde names of its struct's fields, the one list there
    /// is.
    pub(super) fn keys(self) -> &'static [&'static str] {
        match self {
            Part::File => field_names::<RawFile>(),
            Part::Init => field_names::<RawInit>(),
            Part::Instance => field_names::<RawInstance>(),
        }
    }

    /// Whether `value`, at `key` of this part, holds parts read on their own (`init_config`,
    /// `instances`), which expand their own `${VAR}`.
    fn holds_parts(self, key: &Value, value: &Value) -> bool {
        self == Part::File
            && key.as_str().is_some_and(|k| self.keys().contains(&k))
            && (value.is_mapping() || value.is_sequence())
    }

    /// Where this part is, after "belongs".
    fn place(self) -> &'static str {
        match self {
            Part::File => "at the top level",
            Part::Init => "under `init_config`",
            Part::Instance => "in an entry of `instances`",
        }
    }

    /// Why `key` is refused here, with the key it was probably meant to be.
    pub(super) fn unknown_key(self, key: &str) -> String {
        let here = self.keys();
        let elsewhere: Vec<Elsewhere<'_>> = Part::ALL
            .into_iter()
            .filter(|other| *other != self)
            .map(|other| Elsewhere {
                place: other.place(),
                keys: other
                    .keys()
                    .iter()
                    .copied()
                    .filter(|k| !here.contains(k))
                    .collect(),
            })
            .collect();
        unknown_key(key, here, &elsewhere)
    }
}

/// The field names serde knows `T` by (after any rename): what its derived `Deserialize` hands
/// to `deserialize_struct`. Empty for a type that is no struct.
pub(super) fn field_names<T: DeserializeOwned>() -> &'static [&'static str] {
    use serde::de::{value::Error, Error as _, Visitor};

    struct Fields(&'static [&'static str]);

    impl<'de> serde::Deserializer<'de> for &mut Fields {
        type Error = Error;

        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Error> {
            Err(Error::custom("not a struct"))
        }

        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Error> {
            self.0 = fields;
            Err(Error::custom("only the field names were asked for"))
        }

        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes
            byte_buf option unit unit_struct newtype_struct seq tuple tuple_struct map enum
            identifier ignored_any
        }
    }

    let mut fields = Fields(&[]);
    // The error is the point: it stops the derived code once it has named its fields.
    let _ = T::deserialize(&mut fields);
    fields.0
}

/// Values the required keys that could not be read stand in by while the rest of their part is
/// read: an empty string, then an empty list (none of them is ever checked or used).
const STAND_INS: usize = 2;

fn stand_in(attempt: usize) -> Value {
    match attempt {
        0 => Value::String(String::new()),
        _ => Value::Sequence(Vec::new()),
    }
}

/// Reads the parts of a file, recording each problem instead of stopping at the first.
struct Reader<'a> {
    origin: &'a str,
    env: EnvLookup<'a>,
    problems: &'a mut Vec<ConfigError>,
}

impl Reader<'_> {
    fn report(&mut self, key: &str, reason: impl Into<String>) {
        self.problems
            .push(ConfigError::new(self.origin, named_place(key), reason));
    }

    /// Reads `value`, found at `place`, as `part`'s struct `T`: `${VAR}` is expanded (a key
    /// where that fails is reported and dropped), unknown keys are reported and dropped, then
    /// each value of the wrong type is reported and dropped until the rest reads. `None` when the
    /// part cannot be read at all (it is no mapping, or lacks a required key that no stand-in
    /// fits), its problem reported.
    fn read<T: DeserializeOwned>(
        &mut self,
        mut value: Value,
        place: &str,
        part: Part,
    ) -> Option<Read<T>> {
        let mut unreadable = BTreeSet::new();
        match &mut value {
            Value::Mapping(map) => {
                let mut unexpanded = Vec::new();
                for (key, item) in map.iter_mut() {
                    if part.holds_parts(key, item) {
                        continue; // expanded when each part is read
                    }
                    let before = self.problems.len();
                    expand_env(
                        item,
                        &child_place(place, key),
                        self.origin,
                        self.env,
                        self.problems,
                    );
                    if self.problems.len() > before {
                        unexpanded.push(key.clone());
                    }
                }
                let known = part.keys();
                let unknown: Vec<Value> = map
                    .keys()
                    .filter(|k| !k.as_str().is_some_and(|name| known.contains(&name)))
                    .cloned()
                    .collect();
                for key in unknown {
                    map.remove(&key);
                    match key.as_str() {
                        Some(name) if !name.is_empty() => {
                            self.report(&child_place(place, &key), part.unknown_key(name))
                        }
                        // A key that is empty or no string has no name to be found by: the
                        // place is the mapping's.
                        _ => {
                            let shown = match key.as_str() {
                                Some(name) => name.to_string(),
                                None => serde_yaml::to_string(&key).unwrap_or_default(),
                            };
                            self.report(place, part.unknown_key(shown.trim()))
                        }
                    }
                }
                for key in unexpanded {
                    if map.remove(&key).is_some() {
                        unreadable.extend(key.as_str().map(String::from));
                    }
                }
            }
            other => {
                let before = self.problems.len();
                expand_env(other, place, self.origin, self.env, self.problems);
                if self.problems.len() > before {
                    return None;
                }
            }
        }

        // Each round drops a key or tries a stand-in, so this ends; the bound says so.
        let mut stand_ins: BTreeMap<String, usize> = BTreeMap::new();
        for _ in 0..=(part.keys().len() * (STAND_INS + 1) + 1) {
            let error = match serde_path_to_error::deserialize::<_, T>(value.clone()) {
                Ok(raw) => return Some(Read { raw, unreadable }),
                Err(error) => error,
            };
            let key = match error.path().iter().next() {
                Some(serde_path_to_error::Segment::Map { key }) => Some(key.clone()),
                _ => None,
            };
            let map = value.as_mapping_mut();
            if let (Some(key), Some(map)) = (&key, map) {
                if let Some(attempt) = stand_ins.get_mut(key) {
                    // The stand-in does not fit this key's type: try the next one.
                    *attempt += 1;
                    if *attempt >= STAND_INS {
                        return None;
                    }
                    map.insert(Value::String(key.clone()), stand_in(*attempt));
                    continue;
                }
                if map.remove(key.as_str()).is_some() {
                    self.report_type_error(place, &error);
                    unreadable.insert(key.clone());
                    continue;
                }
            }
            // The part itself: not a mapping, or a required key left out.
            let missing = error
                .inner()
                .to_string()
                .strip_prefix("missing field `")
                .and_then(|rest| rest.strip_suffix('`'))
                .map(String::from);
            let missing = missing.filter(|_| value.is_mapping());
            match (missing, value.as_mapping_mut()) {
                (Some(name), Some(map)) if !stand_ins.contains_key(&name) => {
                    // Left out, or dropped above because it could not be read (then it was
                    // reported already).
                    if unreadable.insert(name.clone()) {
                        self.report_type_error(place, &error);
                    }
                    map.insert(Value::String(name.clone()), stand_in(0));
                    stand_ins.insert(name, 0);
                }
                _ => {
                    self.report_type_error(place, &error);
                    return None;
                }
            }
        }
        None
    }

    /// A value serde refused, at its place, never quoting a secret.
    fn report_type_error(
        &mut self,
        place: &str,
        error: &serde_path_to_error::Error<serde_yaml::Error>,
    ) {
        let path = error.path().to_string();
        let key = match (place, path.as_str()) {
            (_, "" | ".") => place.to_string(),
            ("", path) => path.to_string(),
            (place, path) => format!("{place}.{path}"),
        };
        // serde quotes the offending value: never for a secret.
        let reason = if is_secret_path(&key) {
            "must be a string (the value is not shown: it is a secret)".to_string()
        } else {
            error.inner().to_string()
        };
        self.report(&key, reason);
    }
}

/// The place of `key` in the mapping at `parent`, as errors name it.
pub(super) fn child_place(parent: &str, key: &Value) -> String {
    let name = match key.as_str() {
        Some("") => "\"\"".to_string(),
        Some(name) => name.to_string(),
        None => format!("{key:?}"),
    };
    if parent.is_empty() {
        name
    } else {
        format!("{parent}.{name}")
    }
}
/// The key an error names for `path`: the top level of the document (a lone string, or a key
/// that is an empty string or no string) has none of its own, but is a place all the same.
pub(super) fn named_place(path: &str) -> &str {
    if path.is_empty() || path == "." {
        "(top level)"
    } else {
        path
    }
}

impl Default for Brokers {
    fn default() -> Self {
        Brokers::Listed(Vec::new())
    }
}
