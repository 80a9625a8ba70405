//! A JSON number in one pass: its digits are read into an integer as they are checked, and most
//! floats are made exactly from that integer and a power of ten (Clinger's fast path) instead of
//! reading the text a second time through std's correctly rounded parser.
//!
//! Messages carry numbers such as `0.2`, `8` or `41.35`: a few significant digits and a small
//! power of ten. When the digits, as an integer, fit in `f64`'s 53-bit mantissa and the power of
//! ten is at most 22 (10²² is the largest power of ten an `f64` holds exactly), the value is one
//! multiplication or division of two exact `f64`s, which IEEE 754 rounds correctly: the same
//! `f64` as serde_json's `float_roundtrip` parser. Anything else takes std's parser, as before.

use super::FieldValue;

/// The powers of ten an `f64` holds exactly.
const EXACT_POWERS_OF_TEN: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
    1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
];

/// The largest integer below which every integer is an exact `f64`.
const EXACT_MANTISSA: u64 = 1 << 53;

/// Reads digits from `at`: where they end, and their value unless it overflows `u64`.
fn digits(bytes: &[u8], mut at: usize, mut value: Option<u64>) -> (usize, Option<u64>) {
    while let Some(&d @ b'0'..=b'9') = bytes.get(at) {
        value = value
            .and_then(|v| v.checked_mul(10))
            .and_then(|v| v.checked_add(u64::from(d - b'0')));
        at += 1;
    }
    (at, value)
}

/// The number at `start` as JSON's grammar has it, `-? (0 | [1-9][0-9]*) (. [0-9]+)?
/// ([eE] [+-]? [0-9]+)?`, and where it ends; `None` where serde_json must decide (broken, an
/// integer beyond 64 bits, a float beyond `f64`).
pub(super) fn read(bytes: &[u8], start: usize) -> Option<(FieldValue<'static>, usize)> {
    let negative = bytes.get(start) == Some(&b'-');
    let int_start = start + usize::from(negative);
    let (mut at, int_value) = digits(bytes, int_start, Some(0));
    let int_digits = at - int_start;
    if int_digits == 0 || (int_digits > 1 && bytes[int_start] == b'0') {
        return None;
    }
    let mut mantissa = int_value;
    // The power of ten the mantissa's digits are to be scaled by.
    let mut scale: i64 = 0;
    let mut integer = true;
    if bytes.get(at) == Some(&b'.') {
        let fraction_start = at + 1;
        (at, mantissa) = digits(bytes, fraction_start, mantissa);
        if at == fraction_start {
            return None;
        }
        scale = -((at - fraction_start) as i64);
        integer = false;
    }
    if let Some(b'e' | b'E') = bytes.get(at) {
        at += 1;
        let exponent_negative = bytes.get(at) == Some(&b'-');
        if let Some(b'+' | b'-') = bytes.get(at) {
            at += 1;
        }
        let exponent_start = at;
        let (end, exponent) = digits(bytes, exponent_start, Some(0));
        if end == exponent_start {
            return None;
        }
        at = end;
        // Beyond this the fast path is out of reach anyway.
        let exponent = exponent.map_or(i64::MAX / 2, |e| e.min(1 << 32) as i64);
        scale = if exponent_negative {
            scale - exponent
        } else {
            scale + exponent
        };
        integer = false;
    }
    if integer {
        // Beyond 64 bits serde_json reads a float: its path decides.
        let magnitude = mantissa?;
        let value = if !negative {
            FieldValue::UInt(magnitude)
        } else if magnitude == 0 {
            // serde_json reads -0 as the float -0.0.
            FieldValue::Float(-0.0)
        } else {
            FieldValue::Int(0i64.checked_sub_unsigned(magnitude)?)
        };
        return Some((value, at));
    }
    let exact = mantissa.filter(|&m| m <= EXACT_MANTISSA).and_then(|m| {
        Some((
            m as f64,
            *EXACT_POWERS_OF_TEN.get(scale.unsigned_abs() as usize)?,
        ))
    });
    let value = match exact {
        Some((m, power)) => {
            let magnitude = if scale >= 0 { m * power } else { m / power };
            if negative {
                -magnitude
            } else {
                magnitude
            }
        }
        None => {
            // Correctly rounded, as serde_json's `float_roundtrip`; out of range is its error.
            // The number is ASCII (digits, signs, `.`, `e`), so this cannot fail.
            let text = std::str::from_utf8(&bytes[start..at]).ok()?;
            text.parse().ok().filter(|v: &f64| v.is_finite())?
        }
    };
    Some((FieldValue::Float(value), at))
}
