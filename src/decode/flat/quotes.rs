//! Where every quote of a payload is, found in one pass before it is read, so that each string
//! then ends at the next quote bit instead of a scan of its own: the payloads are a few hundred
//! bytes holding some fifteen strings, and the per-string scan cost more in starting and
//! stopping than in scanning.
//!
//! This holds for a payload of at most [`MAX_BYTES`] with no backslash, no control character
//! and no byte above 0x7f (nearly every Insights message): then every quote opens or closes a
//! string and every string is ASCII. Any other payload is read string by string, as before.

/// The longest payload indexed (16 words of 64 bytes).
pub(super) const MAX_BYTES: usize = 1024;

/// A bit for each quote of the payload, 64 bytes a word.
pub(super) type Quotes = [u64; MAX_BYTES / 64];

/// Of 16 bytes: a bit for each quote, and a bit for each backslash, control character or byte
/// above 0x7f.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub(super) fn classify_16(chunk: &[u8; 16]) -> (u32, u32) {
    use std::arch::x86_64::{
        __m128i, _mm_cmpeq_epi8, _mm_cmplt_epi8, _mm_loadu_si128, _mm_movemask_epi8, _mm_or_si128,
        _mm_set1_epi8,
    };
    // SAFETY: SSE2 is part of x86_64; the load reads the 16 bytes of `chunk`, unaligned.
    unsafe {
        let bytes = _mm_loadu_si128(chunk.as_ptr().cast::<__m128i>());
        let quotes = _mm_cmpeq_epi8(bytes, _mm_set1_epi8(b'"' as i8));
        let backslashes = _mm_cmpeq_epi8(bytes, _mm_set1_epi8(b'\\' as i8));
        // Below 0x20 as a signed byte: a control character, or above 0x7f (negative).
        let controls_or_high = _mm_cmplt_epi8(bytes, _mm_set1_epi8(0x20));
        (
            _mm_movemask_epi8(quotes) as u32,
            _mm_movemask_epi8(_mm_or_si128(backslashes, controls_or_high)) as u32,
        )
    }
}

/// See the x86_64 version.
#[cfg(not(target_arch = "x86_64"))]
pub(super) fn classify_16(chunk: &[u8; 16]) -> (u32, u32) {
    let (mut quotes, mut other) = (0, 0);
    for (i, &b) in chunk.iter().enumerate() {
        quotes |= u32::from(b == b'"') << i;
        other |= u32::from(matches!(b, b'\\' | 0..=0x1f | 0x80..)) << i;
    }
    (quotes, other)
}

/// Of 64 bytes: a bit for each quote, and whether any is a backslash, a control character or
/// above 0x7f.
#[inline(always)]
fn classify_64(block: &[u8; 64]) -> (u64, u32) {
    let (mut quotes, mut other) = (0, 0);
    for (i, chunk) in block.chunks_exact(16).enumerate() {
        let (q, o) = classify_16(chunk.try_into().unwrap_or(&[b' '; 16]));
        quotes |= u64::from(q) << (16 * i);
        other |= o;
    }
    (quotes, other)
}

/// The quotes of `bytes`, if the payload is one this index serves (see the [module](self)).
#[inline]
pub(super) fn index(bytes: &[u8]) -> Option<Quotes> {
    if bytes.len() > MAX_BYTES {
        return None;
    }
    let mut quotes = [0u64; MAX_BYTES / 64];
    let mut other = 0;
    let mut blocks = bytes.chunks_exact(64);
    for (word, block) in quotes.iter_mut().zip(blocks.by_ref()) {
        let (q, o) = classify_64(block.try_into().ok()?);
        *word = q;
        other |= o;
    }
    let rest = blocks.remainder();
    if !rest.is_empty() {
        // Padded with spaces, which are neither quotes nor refused.
        let mut block = [b' '; 64];
        block[..rest.len()].copy_from_slice(rest);
        let (q, o) = classify_64(&block);
        quotes[bytes.len() / 64] = q;
        other |= o;
    }
    (other == 0).then_some(quotes)
}

/// The first quote at or after `at`, if any.
#[inline]
pub(super) fn next(quotes: &Quotes, at: usize) -> Option<usize> {
    let mut word = at / 64;
    let mut bits = *quotes.get(word)? & (u64::MAX << (at % 64));
    while bits == 0 {
        word += 1;
        bits = *quotes.get(word)?;
    }
    Some(word * 64 + bits.trailing_zeros() as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_quote_is_found_and_nothing_else() {
        for len in [0, 1, 15, 16, 17, 63, 64, 65, 200, MAX_BYTES] {
            let bytes: Vec<u8> = (0..len)
                .map(|i| if i % 7 == 3 { b'"' } else { b'a' })
                .collect();
            let quotes = index(&bytes).expect("plain ASCII");
            let mut found = Vec::new();
            let mut at = 0;
            while let Some(q) = next(&quotes, at) {
                found.push(q);
                at = q + 1;
            }
            let expected: Vec<usize> = (0..len).filter(|i| i % 7 == 3).collect();
            assert_eq!(found, expected, "{len} bytes");
        }
        assert!(index(&[b'a'; MAX_BYTES + 1]).is_none());
    }

    #[test]
    fn backslashes_controls_and_non_ascii_anywhere_are_refused() {
        for special in [b'\\', 0, 0x1f, b'\n', 0x80, 0xff] {
            for at in [0, 5, 15, 16, 31, 40, 99] {
                let mut bytes = vec![b'a'; 100];
                bytes[at] = special;
                assert!(index(&bytes).is_none(), "{special:#x} at {at}");
            }
        }
    }
}
