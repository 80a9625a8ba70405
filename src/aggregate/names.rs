//! The metric names of one window, each kept once and referred to by a small index, found by the
//! number the mapper gives the name (see [`crate::metrics::Interned`]) without hashing its text.

use std::collections::HashMap;

use crate::hash::FastState;
use crate::metrics::Interned;

/// Slots of the direct-mapped cache from a name's number to its index (a power of two).
const CACHE_SLOTS: usize = 256;

/// See the [module](self).
#[derive(Debug)]
pub(super) struct Names {
    texts: Vec<Box<str>>,
    by_text: HashMap<Box<str>, u32, FastState>,
    /// `(number, index)` by the number's low bits; a number of 0 never matches.
    by_id: Vec<(u64, u32)>,
}

impl Default for Names {
    fn default() -> Self {
        Names {
            texts: Vec::new(),
            by_text: HashMap::default(),
            by_id: vec![(0, 0); CACHE_SLOTS],
        }
    }
}

impl Names {
    /// The index of `name`, which it gets now if it is new.
    #[inline]
    pub(super) fn index(&mut self, name: Interned<'_>) -> u32 {
        let slot = (name.id as usize) & (CACHE_SLOTS - 1);
        match self.by_id[slot] {
            (id, index) if id == name.id && id != 0 => index,
            _ => self.index_by_text(name, slot),
        }
    }

    #[cold]
    fn index_by_text(&mut self, name: Interned<'_>, slot: usize) -> u32 {
        let index = match self.by_text.get(name.text) {
            Some(&index) => index,
            None => {
                let index = self.texts.len() as u32;
                self.texts.push(name.text.into());
                self.by_text.insert(name.text.into(), index);
                index
            }
        };
        self.by_id[slot] = (name.id, index);
        index
    }

    /// The text of the name at `index`.
    pub(super) fn text(&self, index: u32) -> &str {
        &self.texts[index as usize]
    }

    /// Forgets every name.
    pub(super) fn clear(&mut self) {
        self.texts.clear();
        self.by_text.clear();
        self.by_id.fill((0, 0));
    }
}
