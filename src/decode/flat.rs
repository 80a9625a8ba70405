//! The fast path of [`super::decode`]: a flat JSON object of plain strings, numbers, booleans and
//! nulls (what Insights messages are), read in one pass over the bytes.
//!
//! It accepts only what it can read exactly as serde_json would: anything else (an escape in a
//! string, a nested array or object, an integer beyond 64 bits, a number beyond `f64`, broken
//! JSON) makes it return `None`, and the message goes through serde_json, which reads it or says
//! what is wrong with it. So the fast path changes no result, only the time it takes.

use std::borrow::Cow;

use super::{Field, FieldValue, InsightsMessage};

/// The fields of `text` if it is a flat object this path reads; `None` for serde_json to decide.
/// They go into `fields` (empty) if it has room.
pub(super) fn parse<'a>(text: &'a str, fields: Vec<Field<'static>>) -> Option<InsightsMessage<'a>> {
    let mut reader = Reader {
        text,
        bytes: text.as_bytes(),
        at: 0,
    };
    reader.skip_space();
    reader.expect(b'{')?;
    // Insights messages carry 7 platform fields and up to 25 user metrics.
    let mut fields: Vec<Field<'a>> = fields;
    fields.reserve(16);
    reader.skip_space();
    if reader.peek()? == b'}' {
        reader.at += 1;
    } else {
        loop {
            reader.expect(b'"')?;
            let name = reader.string()?;
            reader.skip_space();
            reader.expect(b':')?;
            reader.skip_space();
            let value = reader.value()?;
            fields.push(Field {
                name: Cow::Borrowed(name),
                value,
            });
            reader.skip_space();
            match reader.peek()? {
                b',' => {
                    reader.at += 1;
                    reader.skip_space();
                }
                b'}' => {
                    reader.at += 1;
                    break;
                }
                _ => return None,
            }
        }
    }
    reader.skip_space();
    (reader.at == reader.bytes.len()).then_some(InsightsMessage { fields })
}

struct Reader<'a> {
    text: &'a str,
    bytes: &'a [u8],
    at: usize,
}

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGHS: u64 = 0x8080_8080_8080_8080;

/// The high bit of each zero byte of `word`, and maybe of bytes above the first zero: the
/// lowest bit set, if any, marks the first zero byte exactly.
fn zero_bytes(word: u64) -> u64 {
    word.wrapping_sub(ONES) & !word & HIGHS
}

/// Where the first quote, backslash or control character (below 0x20) of `word` is, in bytes
/// from its first (lowest) byte; 8 if none.
fn first_special(word: u64) -> usize {
    let quotes = zero_bytes(word ^ (ONES * u64::from(b'"')));
    let backslashes = zero_bytes(word ^ (ONES * u64::from(b'\\')));
    let controls = word.wrapping_sub(ONES * 0x20) & !word & HIGHS;
    ((quotes | backslashes | controls).trailing_zeros() / 8) as usize
}

/// Where the first quote, backslash or control character of `chunk` (16 bytes) is; 16 if none.
#[cfg(target_arch = "x86_64")]
fn first_special_of_16(chunk: &[u8]) -> usize {
    use std::arch::x86_64::{
        __m128i, _mm_cmpeq_epi8, _mm_loadu_si128, _mm_min_epu8, _mm_movemask_epi8, _mm_or_si128,
        _mm_set1_epi8,
    };
    if chunk.len() < 16 {
        return chunk.len();
    }
    // SAFETY: SSE2 is part of x86_64; the load reads the 16 bytes of `chunk`, unaligned.
    let mask = unsafe {
        let bytes = _mm_loadu_si128(chunk.as_ptr().cast::<__m128i>());
        let quotes = _mm_cmpeq_epi8(bytes, _mm_set1_epi8(b'"' as i8));
        let backslashes = _mm_cmpeq_epi8(bytes, _mm_set1_epi8(b'\\' as i8));
        // Below 0x20, unsigned: the byte is its minimum with 0x1f.
        let controls = _mm_cmpeq_epi8(_mm_min_epu8(bytes, _mm_set1_epi8(0x1f)), bytes);
        _mm_movemask_epi8(_mm_or_si128(_mm_or_si128(quotes, backslashes), controls))
    };
    (mask as u32 | 1 << 16).trailing_zeros() as usize
}

/// From `i` on, where the first quote, backslash or control character of `bytes` is, or a
/// place less than 8 bytes from the end with none before it.
fn skip_plain(bytes: &[u8], mut i: usize) -> usize {
    #[cfg(target_arch = "x86_64")]
    while let Some(chunk) = bytes.get(i..i + 16) {
        let special = first_special_of_16(chunk);
        i += special;
        if special < 16 {
            return i;
        }
    }
    while let Some(chunk) = bytes.get(i..i + 8) {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let special = first_special(u64::from_le_bytes(word));
        i += special;
        if special < 8 {
            return i;
        }
    }
    i
}

impl<'a> Reader<'a> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    fn expect(&mut self, byte: u8) -> Option<()> {
        (self.peek()? == byte).then(|| self.at += 1)
    }

    fn skip_space(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.at += 1;
        }
    }

    /// The rest of a string whose opening quote was read, if it holds no escape and no control
    /// character; reads its closing quote.
    fn string(&mut self) -> Option<&'a str> {
        let start = self.at;
        // Many bytes at a time up to the first special one, then byte by byte.
        let mut i = skip_plain(self.bytes, start);
        loop {
            match *self.bytes.get(i)? {
                b'"' => break,
                b'\\' | 0..=0x1f => return None,
                _ => i += 1,
            }
        }
        self.at = i + 1;
        // The text is UTF-8 and the quotes are ASCII: both ends are character boundaries.
        self.text.get(start..i)
    }

    fn value(&mut self) -> Option<FieldValue<'a>> {
        match self.peek()? {
            b'"' => {
                self.at += 1;
                Some(FieldValue::Str(Cow::Borrowed(self.string()?)))
            }
            b't' => self.word("true", FieldValue::Bool(true)),
            b'f' => self.word("false", FieldValue::Bool(false)),
            b'n' => self.word("null", FieldValue::Null),
            b'-' | b'0'..=b'9' => self.number(),
            _ => None,
        }
    }

    fn word(&mut self, word: &str, value: FieldValue<'a>) -> Option<FieldValue<'a>> {
        if self.bytes[self.at..].starts_with(word.as_bytes()) {
            self.at += word.len();
            Some(value)
        } else {
            None
        }
    }

    fn digits(&mut self) -> usize {
        let start = self.at;
        while let Some(b'0'..=b'9') = self.peek() {
            self.at += 1;
        }
        self.at - start
    }

    /// A number as JSON's grammar has it: `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`.
    fn number(&mut self) -> Option<FieldValue<'a>> {
        let start = self.at;
        let negative = self.peek() == Some(b'-');
        if negative {
            self.at += 1;
        }
        let int_start = self.at;
        let int_digits = self.digits();
        if int_digits == 0 || (int_digits > 1 && self.bytes[int_start] == b'0') {
            return None;
        }
        let mut integer = true;
        if self.peek() == Some(b'.') {
            self.at += 1;
            if self.digits() == 0 {
                return None;
            }
            integer = false;
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.at += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.at += 1;
            }
            if self.digits() == 0 {
                return None;
            }
            integer = false;
        }
        let text = &self.text[start..self.at];
        if integer {
            // Beyond 64 bits serde_json reads a float: its path decides.
            let magnitude: u64 = self.text[int_start..self.at].parse().ok()?;
            return Some(if !negative {
                FieldValue::UInt(magnitude)
            } else if magnitude == 0 {
                // serde_json reads -0 as the float -0.0.
                FieldValue::Float(-0.0)
            } else {
                FieldValue::Int(0i64.checked_sub_unsigned(magnitude)?)
            });
        }
        // Correctly rounded, as serde_json's `float_roundtrip`; out of range is its error.
        let value: f64 = text.parse().ok()?;
        value.is_finite().then_some(FieldValue::Float(value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What serde_json makes of `text` (the slow path alone).
    fn slow(text: &str) -> Option<InsightsMessage<'_>> {
        super::super::parse_with_serde(text).ok()
    }

    #[track_caller]
    fn agrees(text: &str) {
        if let Some(fast) = parse(text, Vec::new()) {
            assert_eq!(Some(&fast), slow(text).as_ref(), "{text:?}");
        }
    }

    #[test]
    fn flat_objects_take_the_fast_path() {
        for text in [
            "{}",
            " { } ",
            r#"{"a":1}"#,
            "{ \"a\" :\t-1 ,\n\"b\":\r\"x\" }",
            r#"{"u":18446744073709551615,"i":-9223372036854775808,"z":-0,"f":-0.0}"#,
            r#"{"f":1.5e3,"g":2E-2,"h":1e+2,"t":true,"F":false,"n":null,"s":"é ü 😀"}"#,
            r#"{"a":1,"a":2}"#,
            r#"{"x":0.30000000000000004,"y":123456789012345678901234567890.5}"#,
        ] {
            assert!(parse(text, Vec::new()).is_some(), "{text}");
            agrees(text);
        }
    }

    #[test]
    fn anything_else_is_left_to_serde_json() {
        for text in [
            r#"{"a":"esc\"ape"}"#,
            "{\"a\":\"tab\there\"}",
            r#"{"a":[1]}"#,
            r#"{"a":{}}"#,
            r#"{"a":18446744073709551616}"#,
            r#"{"a":-9223372036854775809}"#,
            r#"{"a":1e400}"#,
            r#"{"a":01}"#,
            r#"{"a":1.}"#,
            r#"{"a":.5}"#,
            r#"{"a":-}"#,
            r#"{"a":1e}"#,
            r#"{"a":tru}"#,
            r#"{"a":NaN}"#,
            r#"{"a":1,}"#,
            r#"{"a":1} x"#,
            r#"{"a" 1}"#,
            "[1]",
            "",
            "{",
            r#"{"a":1"#,
            r#"{"a"#,
        ] {
            assert!(parse(text, Vec::new()).is_none(), "{text}");
        }
    }

    #[test]
    fn on_random_objects_both_paths_agree() {
        let mut next = super::super::tests::xorshift(0x9E37_79B9_7F4A_7C15);
        let pieces = [
            "0",
            "-0",
            "7",
            "-12",
            "3.25",
            "1e5",
            "-2.5E-3",
            "0.1",
            "1e308",
            "1e309",
            "5e-324",
            "18446744073709551615",
            "18446744073709551616",
            "-9223372036854775808",
            "-9223372036854775809",
            "true",
            "false",
            "null",
            "\"s\"",
            "\"\"",
            "\"a b\"",
            "\"\\n\"",
            "[]",
            "{}",
            "01",
            "1.",
            "-",
            "\"\u{7f}\"",
            "\"\u{1}\"",
        ];
        for _ in 0..20_000 {
            let mut text = String::from("{");
            for i in 0..(next() % 5) {
                if i > 0 {
                    text.push(',');
                }
                text.push_str(&format!("\"k{}\":", next() % 3));
                if next() % 4 == 0 {
                    // Many digits: rounding is where float parsers differ.
                    let digits = 1 + next() % 25;
                    let mut number = String::new();
                    for _ in 0..digits {
                        number.push(char::from(b'0' + (next() % 10) as u8));
                    }
                    let number = number.trim_start_matches('0');
                    let number = if number.is_empty() { "0" } else { number };
                    let point = (next() as usize) % (number.len() + 1);
                    let (a, b) = number.split_at(point);
                    let exponent = next() % 700;
                    text.push_str(&format!(
                        "{}.{}1e-{exponent}",
                        if a.is_empty() { "0" } else { a },
                        b
                    ));
                } else {
                    text.push_str(pieces[(next() as usize) % pieces.len()]);
                }
            }
            text.push('}');
            agrees(&text);
        }
    }

    #[test]
    fn specials_are_found_at_every_position_of_a_word() {
        for at in 0..20 {
            for special in ["\\n", "\u{1}", "\u{1f}"] {
                let mut value = "x".repeat(20);
                value.replace_range(at..at + 1, special);
                let text = format!("{{\"a\":\"{value}\"}}");
                assert!(parse(&text, Vec::new()).is_none(), "{text:?}");
            }
            let text = format!("{{\"a\":\"{}\",\"b\":1}}", "é".repeat(at));
            agrees(&text);
            assert!(parse(&text, Vec::new()).is_some());
        }
    }
}
