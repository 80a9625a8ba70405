//! Secrets: values that are never printed, and the settings that hold them.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// A string that must never be printed: `Debug`, `Display` and `Serialize` show `***`.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret itself, for handing to librdkafka and nothing else.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"***\"")
    }
}

impl Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str("***")
    }
}

/// Raw librdkafka properties. Printing them (`Debug`, `Serialize`) hides every value whose
/// property name says it is a secret.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct KafkaOptions(pub(super) BTreeMap<String, String>);

impl KafkaOptions {
    /// The properties in name order, values unredacted (for librdkafka only).
    pub fn iter(&self) -> impl Iterator<Item = (&String, &String)> {
        self.0.iter()
    }

    /// Whether a property is set.
    pub fn contains_key(&self, name: &str) -> bool {
        self.0.contains_key(name)
    }

    /// A property's value.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    fn redacted(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| {
            (
                k.as_str(),
                if is_secret_property(k) {
                    "***"
                } else {
                    v.as_str()
                },
            )
        })
    }
}

impl fmt::Debug for KafkaOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.redacted()).finish()
    }
}

impl Serialize for KafkaOptions {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.redacted())
    }
}

/// Whether the setting at `path` (`instances[0].sasl_password`, `instances[0].kafka_options.
/// sasl.password`) holds a secret, which no error may quote.
pub(super) fn is_secret_path(path: &str) -> bool {
    path.rsplit('.').next() == Some("sasl_password") || is_secret_property(path)
}

/// Whether a librdkafka property holds a secret that must never be printed.
pub fn is_secret_property(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    [
        "password",
        "secret",
        "key.pem",
        "jaas",
        "token",
        "credential",
    ]
    .iter()
    .any(|needle| name.contains(needle))
        || name == "ssl.key.pem"
        || name.ends_with(".key")
}
