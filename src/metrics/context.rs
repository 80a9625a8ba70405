//! What a message's context costs once per context rather than once per message: its tag set is
//! rendered (cleaned, joined, static tags appended) the first time its raw tag values are seen,
//! and kept with a number that stands for it, so that the window finds the message's group by
//! that number instead of hashing the rendered text again.
//!
//! The numbers are drawn from one process-wide counter, shared by tag sets and metric names, and
//! never given twice: equal numbers always mean equal text, whichever mapper made them. The
//! reverse does not hold (a tag set rendered again after the cache was emptied gets a new
//! number), so a sink that meets a number for the first time still goes by the text.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::decode::FieldValue;
use crate::hash::FastState;

/// Most tag sets the cache keeps; past it, it starts over (a topic whose tag values never repeat
/// costs one rendering per message, as before, and no memory).
const MAX_TAG_SETS: usize = 4096;

/// A tag set or metric name rendered once, with the number that stands for it (see the
/// [module](self)); 0 is no number: the text alone counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Interned<'a> {
    /// Equal numbers (other than 0) mean equal text.
    pub id: u64,
    /// The text: a tag set joined with `,`, or a full metric name.
    pub text: &'a str,
}

impl<'a> Interned<'a> {
    /// Text without a number.
    pub fn text(text: &'a str) -> Self {
        Interned { id: 0, text }
    }
}

/// A number no tag set or name of this process had.
pub(crate) fn fresh_id() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// Rendered tag sets by their raw tag values.
#[derive(Debug, Clone, Default)]
pub(crate) struct TagSets {
    /// The raw tag values of the message at hand, written by [`TagSets::key_value`].
    key: Vec<u8>,
    by_key: HashMap<Box<[u8]>, usize, FastState>,
    sets: Vec<(u64, Box<str>)>,
}

impl TagSets {
    /// Starts the key of a message's raw tag values.
    #[inline]
    pub(crate) fn new_key(&mut self) {
        self.key.clear();
    }

    /// Adds the value of the next tag field (`None`: the message has no such field) to the
    /// key; each value is written with its type and, for strings, its length, so that no two
    /// lists of values write the same key.
    #[inline]
    pub(crate) fn key_value(&mut self, value: Option<&FieldValue<'_>>) {
        let key = &mut self.key;
        match value {
            None => key.push(b'0'),
            Some(FieldValue::Str(s)) => {
                key.push(b's');
                key.extend_from_slice(&(s.len() as u64).to_le_bytes());
                key.extend_from_slice(s.as_bytes());
            }
            Some(FieldValue::UInt(v)) => {
                key.push(b'u');
                key.extend_from_slice(&v.to_le_bytes());
            }
            Some(FieldValue::Int(v)) => {
                key.push(b'i');
                key.extend_from_slice(&v.to_le_bytes());
            }
            Some(FieldValue::Float(v)) => {
                key.push(b'f');
                key.extend_from_slice(&v.to_bits().to_le_bytes());
            }
            Some(FieldValue::Bool(v)) => key.push(if *v { b'T' } else { b'F' }),
            Some(FieldValue::Null) => key.push(b'n'),
            Some(FieldValue::Array) => key.push(b'a'),
            Some(FieldValue::Object) => key.push(b'o'),
        }
    }

    /// Where the tag set of the key is, if it was rendered before.
    #[inline]
    pub(crate) fn find(&self) -> Option<usize> {
        self.by_key.get(&self.key[..]).copied()
    }

    /// Keeps `text` as the tag set of the key, with a new number; says where.
    pub(crate) fn insert(&mut self, text: &str) -> usize {
        if self.sets.len() >= MAX_TAG_SETS {
            self.sets.clear();
            self.by_key.clear();
        }
        self.by_key
            .insert(self.key.as_slice().into(), self.sets.len());
        self.sets.push((fresh_id(), text.into()));
        self.sets.len() - 1
    }

    /// The tag set [`TagSets::find`] or [`TagSets::insert`] said is `at`.
    #[inline]
    pub(crate) fn get(&self, at: usize) -> Interned<'_> {
        let (id, text) = &self.sets[at];
        Interned { id: *id, text }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(values: &[Option<FieldValue<'_>>]) -> Vec<u8> {
        let mut sets = TagSets::default();
        sets.new_key();
        for v in values {
            sets.key_value(v.as_ref());
        }
        sets.key
    }

    #[test]
    fn different_values_make_different_keys() {
        let s = |t: &'static str| Some(FieldValue::Str(t.into()));
        let lists = [
            vec![s("ab"), s("c")],
            vec![s("a"), s("bc")],
            vec![s("abc"), None],
            vec![None, s("abc")],
            vec![Some(FieldValue::UInt(1)), None],
            vec![Some(FieldValue::Int(1)), None],
            vec![Some(FieldValue::Float(1.0)), None],
            vec![Some(FieldValue::Bool(true)), None],
            vec![Some(FieldValue::Null), None],
            vec![None, None],
        ];
        let mut keys: Vec<Vec<u8>> = lists.iter().map(|l| key(l)).collect();
        keys.sort();
        keys.dedup();
        assert_eq!(keys.len(), lists.len());
    }

    #[test]
    fn a_tag_set_is_found_by_its_values_and_numbers_are_never_reused() {
        let mut sets = TagSets::default();
        let value = FieldValue::Str("m".into());
        sets.new_key();
        sets.key_value(Some(&value));
        assert_eq!(sets.find(), None);
        let at = sets.insert("algorithm_name:m");
        assert_eq!(sets.find(), Some(at));
        let first = sets.get(at).id;
        assert_eq!(sets.get(at).text, "algorithm_name:m");
        for i in 0..MAX_TAG_SETS {
            sets.new_key();
            sets.key_value(Some(&FieldValue::UInt(i as u64)));
            let at = sets.insert("x");
            assert!(sets.get(at).id > first);
        }
        sets.new_key();
        sets.key_value(Some(&value));
        assert_eq!(sets.find(), None, "the cache started over");
        let at = sets.insert("algorithm_name:m");
        assert!(sets.get(at).id > first);
    }
}
