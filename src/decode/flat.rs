//! The fast path of [`super::decode`]: a flat JSON object of plain strings, numbers, booleans and
//! nulls (what Insights messages are), read in one pass over the bytes.
//!
//! It accepts only what it can read exactly as serde_json would: anything else (an escape in a
//! string, a nested array or object, an integer beyond 64 bits, a number beyond `f64`, broken
//! JSON, bytes that are not UTF-8) makes it return `None`, and the message goes through the
//! UTF-8 check and serde_json, which read it or say what is wrong with it. So the fast path
//! changes no result, only the time it takes.
//!
//! The bytes are not checked as UTF-8 beforehand: outside strings this path accepts ASCII only,
//! and a string is checked only if it holds a byte above 0x7f (names and values of Insights
//! messages are nearly always ASCII), so each byte is looked at once.

use std::borrow::Cow;

use super::{Field, FieldValue, InsightsMessage};

mod number;
mod quotes;

/// The fields of `bytes` if it is a flat object this path reads; `None` for serde_json to
/// decide. They go into `fields` (empty) if it has room.
pub(super) fn parse<'a>(
    bytes: &'a [u8],
    fields: Vec<Field<'static>>,
) -> Option<InsightsMessage<'a>> {
    let mut reader = Reader {
        bytes,
        at: 0,
        quotes: quotes::index(bytes),
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
    bytes: &'a [u8],
    at: usize,
    /// Where the quotes are, for a payload [`quotes::index`] serves.
    quotes: Option<quotes::Quotes>,
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

    /// The rest of a string whose opening quote was read, if it holds no escape, no control
    /// character and is UTF-8; reads its closing quote.
    #[inline]
    fn string(&mut self) -> Option<&'a str> {
        if let Some(quotes) = &self.quotes {
            let start = self.at;
            let end = quotes::next(quotes, start)?;
            self.at = end + 1;
            // SAFETY: the payload holds no byte above 0x7f (`quotes::index` checked): ASCII is
            // UTF-8. And no backslash nor control character: the string ends at the next quote.
            return Some(unsafe { std::str::from_utf8_unchecked(&self.bytes[start..end]) });
        }
        self.string_scanned()
    }

    /// [`Reader::string`] for a payload whose quotes were not indexed: a scan of its own.
    #[inline(never)]
    fn string_scanned(&mut self) -> Option<&'a str> {
        let bytes = self.bytes;
        let start = self.at;
        let mut i = start;
        let mut non_ascii = false;
        // Sixteen bytes at a time up to the first quote, backslash, control character or byte
        // above 0x7f; past the latter (UTF-8, checked at the end), on.
        while let Some(chunk) = bytes.get(i..i + 16) {
            let (quotes, others) = quotes::classify_16(chunk.try_into().ok()?);
            let stops = quotes | others;
            if stops == 0 {
                i += 16;
                continue;
            }
            i += stops.trailing_zeros() as usize;
            if bytes[i] < 0x80 {
                return self.string_ends(start, i, non_ascii);
            }
            non_ascii = true;
            i += 1;
        }
        loop {
            match *bytes.get(i)? {
                b'"' | b'\\' | 0..=0x1f => return self.string_ends(start, i, non_ascii),
                b => non_ascii |= b >= 0x80,
            }
            i += 1;
        }
    }

    /// The string from `start` to `end`, where a special byte is: a closing quote ends it, an
    /// escape or a control character is left to serde_json.
    fn string_ends(&mut self, start: usize, end: usize, non_ascii: bool) -> Option<&'a str> {
        if self.bytes[end] != b'"' {
            return None;
        }
        self.at = end + 1;
        let text = &self.bytes[start..end];
        if non_ascii {
            std::str::from_utf8(text).ok()
        } else {
            // SAFETY: every byte of `text` is below 0x80 (checked above): ASCII is UTF-8.
            Some(unsafe { std::str::from_utf8_unchecked(text) })
        }
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
            b'-' | b'0'..=b'9' => {
                let (value, end) = number::read(self.bytes, self.at)?;
                self.at = end;
                Some(value)
            }
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
        if let Some(fast) = parse(text.as_bytes(), Vec::new()) {
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
            assert!(parse(text.as_bytes(), Vec::new()).is_some(), "{text}");
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
            assert!(parse(text.as_bytes(), Vec::new()).is_none(), "{text}");
        }
    }

    /// Up to `most` random digits, split at a random place into an integer part (at least
    /// "0", no leading zero) and a fraction (maybe empty).
    fn random_digits(next: &mut impl FnMut() -> u64, most: u64) -> (String, String) {
        let digits = 1 + next() % most;
        let number: String = (0..digits)
            .map(|_| char::from(b'0' + (next() % 10) as u8))
            .collect();
        let number = number.trim_start_matches('0');
        let point = (next() as usize) % (number.len() + 1);
        let (a, b) = number.split_at(point);
        let a = if a.is_empty() { "0" } else { a };
        (a.to_string(), b.to_string())
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
                    let (a, b) = random_digits(&mut next, 25);
                    let exponent = next() % 700;
                    text.push_str(&format!("{a}.{b}1e-{exponent}"));
                } else {
                    text.push_str(pieces[(next() as usize) % pieces.len()]);
                }
            }
            text.push('}');
            agrees(&text);
        }
    }

    #[test]
    fn floats_within_the_exact_path_agree_with_serde_json() {
        // Up to 19 digits (past 2^53, where the exact path hands over), any place for the
        // point, exponents either side of ±22: both sides of every bound of the fast path.
        let mut next = super::super::tests::xorshift(0x1234_5678_9ABC_DEF1);
        for _ in 0..100_000 {
            let (a, b) = random_digits(&mut next, 19);
            let sign = if next() % 2 == 0 { "-" } else { "" };
            let text = match next() % 3 {
                0 if !b.is_empty() => format!("{sign}{a}.{b}"),
                1 => format!("{sign}{a}e{}", next() % 50),
                _ => format!(
                    "{sign}{a}.{}E-{}",
                    if b.is_empty() { "0" } else { &b },
                    next() % 50
                ),
            };
            let text = format!("{{\"x\":{text}}}");
            assert!(parse(text.as_bytes(), Vec::new()).is_some(), "{text}");
            agrees(&text);
        }
        for text in [
            "9007199254740992.5",
            "9007199254740993",
            "9007199254740993.0",
            "1e22",
            "1e23",
            "123e-22",
            "123e-23",
            "-0.0e5",
            "0e999999999999999999999",
            "1e-99999999999999999999",
            "0.1",
            "0.2",
            "0.3",
        ] {
            agrees(&format!("{{\"x\":{text}}}"));
        }
    }

    #[test]
    fn long_payloads_and_payloads_with_whitespace_read_string_by_string_alike() {
        // Past the quote index's 1,024 bytes, or with a line break: the per-string scan.
        for text in [
            format!("{{\"a\":\"{}\",\"b\":2}}", "x".repeat(1100)),
            format!("{{\"{}\":1,\"b\":\"y\"}}", "k".repeat(1030)),
            "{\n\"a\": \"plain\",\r\n\t\"b\": 0.5\n}".to_string(),
        ] {
            assert!(parse(text.as_bytes(), Vec::new()).is_some(), "{text}");
            agrees(&text);
        }
    }

    #[test]
    fn non_ascii_strings_are_checked_as_utf8() {
        for (bytes, fast) in [
            (&b"{\"\xc3\xa9\":\"\xf0\x9f\x98\x80\"}"[..], true),
            (b"{\"a\":\"\xff\"}", false),
            (b"{\"a\":\"0123456789abcdef\xc3\"}", false),
            (b"{\"\xc3\":1}", false),
            (b"{\"a\":1}\xc3\xa9", false),
        ] {
            assert_eq!(parse(bytes, Vec::new()).is_some(), fast, "{bytes:?}");
        }
        assert_eq!(
            super::super::decode(b"{\"a\":\"0123456789abcdef\xc3\"}"),
            Err(super::super::DecodeError::NotUtf8 { at: 22 })
        );
    }

    #[test]
    fn specials_are_found_at_every_position_of_a_word() {
        for at in 0..20 {
            for special in ["\\n", "\u{1}", "\u{1f}"] {
                let mut value = "x".repeat(20);
                value.replace_range(at..at + 1, special);
                let text = format!("{{\"a\":\"{value}\"}}");
                assert!(parse(text.as_bytes(), Vec::new()).is_none(), "{text:?}");
            }
            let text = format!("{{\"a\":\"{}\",\"b\":1}}", "é".repeat(at));
            agrees(&text);
            assert!(parse(text.as_bytes(), Vec::new()).is_some());
        }
    }
}
