//! Decoding one Insights message: a flat UTF-8 JSON object, read without building a tree.
//!
//! Field names and string values borrow from the payload whenever JSON escapes allow, and nested
//! arrays and objects are skipped rather than built, so a typical message costs one small vector.
//!
//! ```
//! use algorithmia_datadog::{decode, FieldValue};
//!
//! let message = decode(br#"{"risk_score":0.2,"algorithm_name":"credit_card_approval"}"#).unwrap();
//! assert_eq!(message.fields[0].name, "risk_score");
//! assert_eq!(message.fields[0].value, FieldValue::Float(0.2));
//! ```

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use crate::telemetry::RejectReason;

mod flat;

/// One top-level value, as far as the mapping rules care.
#[derive(Debug, Clone, PartialEq)]
pub enum FieldValue<'a> {
    /// A JSON integer that fits `u64`.
    UInt(u64),
    /// A negative JSON integer that fits `i64`.
    Int(i64),
    /// Any other JSON number.
    Float(f64),
    /// `true` or `false`.
    Bool(bool),
    /// A string.
    Str(Cow<'a, str>),
    /// `null`.
    Null,
    /// An array (its content is not kept).
    Array,
    /// An object (its content is not kept).
    Object,
}

/// A top-level field, in message order.
#[derive(Debug, Clone, PartialEq)]
pub struct Field<'a> {
    /// The key.
    pub name: Cow<'a, str>,
    /// The value.
    pub value: FieldValue<'a>,
}

/// A decoded message: its top-level fields in the order they were written.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct InsightsMessage<'a> {
    /// The fields.
    pub fields: Vec<Field<'a>>,
}

impl<'a> InsightsMessage<'a> {
    /// The fields' vector, emptied, to decode the next message into (see [`decode_reusing`]):
    /// one allocation less per message.
    pub fn recycle(self) -> Vec<Field<'static>> {
        let mut fields = self.fields;
        fields.clear();
        // An empty vector collected into one of the same layout keeps its allocation. (`filter`
        // would keep the borrowed lifetime: the item type must change.)
        #[allow(clippy::unnecessary_filter_map)]
        fields.into_iter().filter_map(|_| None).collect()
    }

    /// The first field with this name.
    pub fn get(&self, name: &str) -> Option<&FieldValue<'a>> {
        self.fields
            .iter()
            .find(|f| f.name == name)
            .map(|f| &f.value)
    }
}

/// Why a message was rejected as a whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// No value at all (a tombstone).
    Empty,
    /// The bytes are not UTF-8.
    NotUtf8 {
        /// Offset of the first invalid byte.
        at: usize,
    },
    /// Not JSON.
    InvalidJson(String),
    /// JSON, but not an object.
    NotAnObject,
}

impl DecodeError {
    /// Why, for counting (`reason:` tag).
    pub fn reason(&self) -> RejectReason {
        match self {
            DecodeError::Empty => RejectReason::Empty,
            DecodeError::NotUtf8 { .. } => RejectReason::NotUtf8,
            DecodeError::InvalidJson(_) => RejectReason::InvalidJson,
            DecodeError::NotAnObject => RejectReason::NotAnObject,
        }
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::Empty => f.write_str("the message has no value"),
            DecodeError::NotUtf8 { at } => {
                write!(f, "the value is not UTF-8 (invalid byte at {at})")
            }
            DecodeError::InvalidJson(e) => write!(f, "the value is not JSON: {e}"),
            DecodeError::NotAnObject => f.write_str("the value is JSON but not an object"),
        }
    }
}

impl std::error::Error for DecodeError {}

/// Decodes a message value.
///
/// Python's `json.dumps` writes `NaN`, `Infinity` and `-Infinity` as bare words, which is not
/// JSON. Rather than lose the whole message to one such value, a payload that fails to parse and
/// holds one of them is read again with those words turned into strings; the mapping rules then
/// skip them as non-finite. That copy is only made on this failure path.
pub fn decode(payload: &[u8]) -> Result<InsightsMessage<'_>, DecodeError> {
    decode_reusing(payload, Vec::new())
}

/// Like [`decode`], decoding into `fields` (empty; from [`InsightsMessage::recycle`]) when the
/// message is a flat object of plain values.
///
/// ```text
/// use algorithmia_datadog::decode::{decode_reusing, FieldValue};
///
/// let first = decode_reusing(br#"{"a":1,"b":2}"#, Vec::new()).unwrap();
/// let fields = first.recycle();
/// assert!(fields.is_empty() && fields.capacity() >= 2);
/// let second = decode_reusing(br#"{"c":"x"}"#, fields).unwrap();
/// assert_eq!(second.get("c"), Some(&FieldValue::Str("x".into())));
/// ```
pub fn decode_reusing<'a>(
    payload: &'a [u8],
    fields: Vec<Field<'static>>,
) -> Result<InsightsMessage<'a>, DecodeError> {
    if payload.is_empty() {
        return Err(DecodeError::Empty);
    }
    // A flat object of plain values (nearly every Insights message) in one pass of our own,
    // which checks UTF-8 as it goes; anything else through the UTF-8 check and serde_json: see
    // [`flat`].
    if let Some(message) = flat::parse(payload, fields) {
        return Ok(message);
    }
    let text = std::str::from_utf8(payload).map_err(|e| DecodeError::NotUtf8 {
        at: e.valid_up_to(),
    })?;
    match parse_with_serde(text) {
        Ok(message) => Ok(message),
        Err(DecodeError::InvalidJson(first)) => match quote_non_finite_words(text) {
            Some(repaired) => parse(&repaired)
                .map(into_owned)
                .map_err(|_| DecodeError::InvalidJson(first)),
            None => Err(DecodeError::InvalidJson(first)),
        },
        Err(other) => Err(other),
    }
}

/// Like the fast path then serde_json, for text already known to be UTF-8.
fn parse(text: &str) -> Result<InsightsMessage<'_>, DecodeError> {
    match flat::parse(text.as_bytes(), Vec::new()) {
        Some(message) => Ok(message),
        None => parse_with_serde(text),
    }
}

fn parse_with_serde(text: &str) -> Result<InsightsMessage<'_>, DecodeError> {
    let mut de = serde_json::Deserializer::from_str(text);
    let message = de.deserialize_any(MessageVisitor).map_err(|e| {
        if e.to_string().starts_with(NOT_AN_OBJECT) {
            DecodeError::NotAnObject
        } else {
            DecodeError::InvalidJson(e.to_string())
        }
    })?;
    de.end()
        .map_err(|e| DecodeError::InvalidJson(e.to_string()))?;
    Ok(message)
}

fn into_owned(message: InsightsMessage<'_>) -> InsightsMessage<'static> {
    let own = |c: Cow<'_, str>| Cow::Owned(c.into_owned());
    InsightsMessage {
        fields: message
            .fields
            .into_iter()
            .map(|f| Field {
                name: own(f.name),
                value: match f.value {
                    FieldValue::Str(s) => FieldValue::Str(own(s)),
                    FieldValue::UInt(v) => FieldValue::UInt(v),
                    FieldValue::Int(v) => FieldValue::Int(v),
                    FieldValue::Float(v) => FieldValue::Float(v),
                    FieldValue::Bool(v) => FieldValue::Bool(v),
                    FieldValue::Null => FieldValue::Null,
                    FieldValue::Array => FieldValue::Array,
                    FieldValue::Object => FieldValue::Object,
                },
            })
            .collect(),
    }
}

/// Rewrites bare `NaN`, `Infinity`, `-Infinity` outside strings as JSON strings. `None` if there
/// are none.
fn quote_non_finite_words(text: &str) -> Option<String> {
    const WORDS: [&str; 3] = ["-Infinity", "Infinity", "NaN"];
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len() + 8);
    let (mut in_string, mut escaped, mut changed) = (false, false, false);
    let mut i = 0;
    let mut copied = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
            i += 1;
            continue;
        }
        if b == b'"' {
            in_string = true;
            i += 1;
            continue;
        }
        // Compared as bytes: `i` may sit inside a multi-byte character of broken input, and the
        // words are ASCII, so every cut below falls on a character boundary.
        if let Some(word) = WORDS.iter().find(|w| bytes[i..].starts_with(w.as_bytes())) {
            out.push_str(&text[copied..i]);
            out.push('"');
            out.push_str(word);
            out.push('"');
            i += word.len();
            copied = i;
            changed = true;
            continue;
        }
        i += 1;
    }
    if !changed {
        return None;
    }
    out.push_str(&text[copied..]);
    Some(out)
}

const NOT_AN_OBJECT: &str = "not an object";

struct MessageVisitor;

impl<'de> Visitor<'de> for MessageVisitor {
    type Value = InsightsMessage<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        // Insights messages carry 7 platform fields and up to 25 user metrics.
        let mut fields = Vec::with_capacity(map.size_hint().unwrap_or(16).min(64));
        while let Some(name) = map.next_key::<CowStr<'de>>()? {
            let value = map.next_value::<FieldValue<'de>>()?;
            fields.push(Field {
                name: name.0,
                value,
            });
        }
        Ok(InsightsMessage { fields })
    }

    // Every other JSON type lands here through `deserialize_any`.
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Err(E::custom(NOT_AN_OBJECT))
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Err(E::custom(NOT_AN_OBJECT))
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Err(E::custom(NOT_AN_OBJECT))
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Err(E::custom(NOT_AN_OBJECT))
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
        Err(E::custom(NOT_AN_OBJECT))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Err(E::custom(NOT_AN_OBJECT))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        // Read to the end first so that broken JSON inside still reports as broken JSON.
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Err(de::Error::custom(NOT_AN_OBJECT))
    }
}

/// A string that borrows from the input when it has no escapes.
struct CowStr<'a>(Cow<'a, str>);

impl<'de> de::Deserialize<'de> for CowStr<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = CowStr<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(CowStr(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(CowStr(Cow::Owned(v.to_string())))
            }
        }
        deserializer.deserialize_str(V)
    }
}

impl<'de> de::Deserialize<'de> for FieldValue<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(FieldValueVisitor)
    }
}

struct FieldValueVisitor;

impl<'de> Visitor<'de> for FieldValueVisitor {
    type Value = FieldValue<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
        Ok(FieldValue::Bool(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Ok(if v >= 0 {
            FieldValue::UInt(v as u64)
        } else {
            FieldValue::Int(v)
        })
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(FieldValue::UInt(v))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        Ok(FieldValue::Float(v))
    }
    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(FieldValue::Str(Cow::Borrowed(v)))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(FieldValue::Str(Cow::Owned(v.to_string())))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(FieldValue::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(FieldValue::Array)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(FieldValue::Object)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A deterministic stream of pseudo-random numbers for generated inputs.
    pub(super) fn xorshift(mut state: u64) -> impl FnMut() -> u64 {
        move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        }
    }

    const SAMPLE: &str = r#"{"risk_score":0.2,"duration_milliseconds":8,"algorithm_version":"1.0.6","session_id":"rses-f28bb94a-5556-4aeb-a6d2-89493626bf4f","time":"2021-02-20T00:21:54.867231","algorithm_name":"credit_card_approval","request_id":"req-9f5345b4-a1cd-431c-a43a-bd2a06f4a6f4","algorithm_owner":"asli"}"#;

    #[test]
    fn the_public_sample_decodes_in_field_order() {
        let m = decode(SAMPLE.as_bytes()).unwrap();
        let names: Vec<&str> = m.fields.iter().map(|f| f.name.as_ref()).collect();
        assert_eq!(
            names,
            [
                "risk_score",
                "duration_milliseconds",
                "algorithm_version",
                "session_id",
                "time",
                "algorithm_name",
                "request_id",
                "algorithm_owner"
            ]
        );
        assert_eq!(m.get("risk_score"), Some(&FieldValue::Float(0.2)));
        assert_eq!(m.get("duration_milliseconds"), Some(&FieldValue::UInt(8)));
        assert_eq!(
            m.get("algorithm_owner"),
            Some(&FieldValue::Str("asli".into()))
        );
    }

    #[test]
    fn strings_without_escapes_borrow_from_the_payload() {
        let m = decode(br#"{"a":"plain","b\n":"esc\"aped"}"#).unwrap();
        assert!(matches!(m.fields[0].name, Cow::Borrowed(_)));
        assert!(matches!(
            m.fields[0].value,
            FieldValue::Str(Cow::Borrowed(_))
        ));
        assert_eq!(m.fields[1].name, "b\n");
        assert_eq!(m.fields[1].value, FieldValue::Str("esc\"aped".into()));
    }

    #[test]
    fn every_json_type_is_classified() {
        let m = decode(
            br#"{"u":3,"i":-3,"f":1.5e3,"t":true,"n":null,"a":[1,[2]],"o":{"x":{}},"s":"4"}"#,
        )
        .unwrap();
        let values: Vec<&FieldValue> = m.fields.iter().map(|f| &f.value).collect();
        assert_eq!(
            values,
            [
                &FieldValue::UInt(3),
                &FieldValue::Int(-3),
                &FieldValue::Float(1500.0),
                &FieldValue::Bool(true),
                &FieldValue::Null,
                &FieldValue::Array,
                &FieldValue::Object,
                &FieldValue::Str("4".into()),
            ]
        );
    }

    #[test]
    fn non_utf8_is_rejected_with_its_position() {
        assert_eq!(
            decode(b"{\"a\":\"\xff\"}"),
            Err(DecodeError::NotUtf8 { at: 6 })
        );
    }

    #[test]
    fn broken_json_is_rejected() {
        for bad in [
            &b"{"[..],
            b"{\"a\":1,}",
            b"{\"a\":1} trailing",
            b"not json",
            b"{\"a\":[1,}",
        ] {
            let err = decode(bad).unwrap_err();
            assert_eq!(
                err.reason(),
                "invalid_json",
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn json_that_is_not_an_object_is_rejected() {
        for bad in [&b"[1,2]"[..], b"3", b"\"x\"", b"null", b"true"] {
            assert_eq!(decode(bad), Err(DecodeError::NotAnObject));
        }
    }

    #[test]
    fn an_empty_value_is_rejected() {
        assert_eq!(decode(b""), Err(DecodeError::Empty));
    }

    #[test]
    fn python_non_finite_words_do_not_lose_the_message() {
        let m =
            decode(br#"{"a":NaN,"b":-Infinity,"c":Infinity,"d":"NaN in a string","e":2}"#).unwrap();
        assert_eq!(m.get("a"), Some(&FieldValue::Str("NaN".into())));
        assert_eq!(m.get("b"), Some(&FieldValue::Str("-Infinity".into())));
        assert_eq!(m.get("c"), Some(&FieldValue::Str("Infinity".into())));
        assert_eq!(m.get("d"), Some(&FieldValue::Str("NaN in a string".into())));
        assert_eq!(m.get("e"), Some(&FieldValue::UInt(2)));
    }

    #[test]
    fn no_input_makes_the_decoder_panic() {
        let mut next = xorshift(0x2545_F491_4F6C_DD1D);
        let alphabet: &[u8] = b"{}[]\",:0123456789.eE+-truefalsnNaIiy \\\xc3\xa9\xff\x00";
        let seeds = [
            br#"{"a":NaN,"b":"x"}"#.to_vec(),
            "{\"é\":Infinity, é}".as_bytes().to_vec(),
            br#"{"risk_score":0.2,"time":"2021-02-20T00:21:54"}"#.to_vec(),
        ];
        for round in 0..20_000 {
            let mut input = seeds[round % seeds.len()].clone();
            for _ in 0..(next() % 6) {
                let at = (next() as usize) % (input.len() + 1);
                match next() % 3 {
                    0 if at < input.len() => {
                        input.remove(at);
                    }
                    1 if at < input.len() => {
                        input[at] = alphabet[(next() as usize) % alphabet.len()]
                    }
                    _ => input.insert(at, alphabet[(next() as usize) % alphabet.len()]),
                }
            }
            // Must return, never panic, whatever the bytes.
            let _ = decode(&input);
        }
        assert!(decode("{\"a\":1, é NaN}".as_bytes()).is_err());
    }

    #[test]
    fn duplicate_keys_are_kept_in_order() {
        let m = decode(br#"{"a":1,"a":2}"#).unwrap();
        assert_eq!(m.fields.len(), 2);
        assert_eq!(m.fields[1].value, FieldValue::UInt(2));
    }
}

/// The examples in this module's documentation, which name items outside the crate's surface.
#[cfg(test)]
mod doc_examples {
    #[test]
    fn doc_example_of_decode_reusing() {
        use crate::decode::{decode_reusing, FieldValue};

        let first = decode_reusing(br#"{"a":1,"b":2}"#, Vec::new()).unwrap();
        let fields = first.recycle();
        assert!(fields.is_empty() && fields.capacity() >= 2);
        let second = decode_reusing(br#"{"c":"x"}"#, fields).unwrap();
        assert_eq!(second.get("c"), Some(&FieldValue::Str("x".into())));
    }
}
