//! A float written as ryu writes it (the shortest digits that read back as the same `f64`), for
//! the values messages carry, without ryu's general algorithm: `0.538`, `41.35` or `8.0` are
//! few digits at a small power of ten, and finding them takes a few multiplications.
//!
//! For `|v|` below 10¹⁵, the fewest fraction digits `k` such that `m = round(|v|·10^k)`, read
//! back as `m / 10^k` (one correctly rounded division, as in Clinger's fast path), is `|v|`
//! again: that is ryu's shortest representation. Two decimals of at most 15 significant digits
//! never read back as the same `f64`, so at that `k` no other candidate exists, and none with
//! fewer digits. It is then written the way ryu's `format_finite` lays digits out (`1200.0`,
//! `41.35`, `0.00012`). Anything else (more digits, exponents ryu writes as `1e-7`) is left to
//! ryu.

/// 10^0 to 10^15, exact.
const POWERS: [f64; 16] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
];

/// The largest mantissa handled (15 digits).
const MAX_MANTISSA: f64 = 1e15;

/// Appends `v` (finite, so never NaN: the comparisons below hold) exactly as `ryu::Buffer::format_finite` writes it.
pub(super) fn write(out: &mut String, v: f64) {
    if !write_short(out, v) {
        out.push_str(ryu::Buffer::new().format_finite(v));
    }
}

/// [`write`] for a value of few digits; `false` (nothing written) for any other.
fn write_short(out: &mut String, v: f64) -> bool {
    let magnitude = v.abs();
    if magnitude >= MAX_MANTISSA || magnitude == 0.0 {
        // Zero: ryu writes `0.0` and `-0.0`, which the general path does as cheaply.
        return false;
    }
    for (k, &power) in POWERS.iter().enumerate() {
        let scaled = (magnitude * power).round();
        if scaled >= MAX_MANTISSA {
            return false;
        }
        if scaled / power != magnitude {
            continue;
        }
        let mut digits = itoa::Buffer::new();
        let digits = digits.format(scaled as u64);
        // Digits before the point.
        let whole = digits.len() as i64 - k as i64;
        if whole <= -5 {
            // ryu writes `1e-6` from here on.
            return false;
        }
        if v.is_sign_negative() {
            out.push('-');
        }
        if k == 0 {
            out.push_str(digits);
            out.push_str(".0");
        } else if whole > 0 {
            let (int, fraction) = digits.split_at(whole as usize);
            out.push_str(int);
            out.push('.');
            out.push_str(fraction);
        } else {
            out.push_str("0.");
            for _ in 0..-whole {
                out.push('0');
            }
            out.push_str(digits);
        }
        return true;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn same_as_ryu(v: f64) {
        let mut ours = String::new();
        write(&mut ours, v);
        assert_eq!(
            ours,
            ryu::Buffer::new().format_finite(v),
            "{v:e} ({:#x})",
            v.to_bits()
        );
    }

    fn xorshift(mut state: u64) -> impl FnMut() -> u64 {
        move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        }
    }

    #[test]
    fn decimals_of_few_digits_are_written_as_ryu_writes_them() {
        for v in [
            0.2,
            0.538,
            41.35,
            8.0,
            1200.0,
            0.1,
            0.3,
            0.30000000000000004,
            1e-5,
            1.5e-5,
            1e-6,
            0.00012,
            123456789012345.0,
            999999999999999.0,
            1e15,
            1e16,
            1.5e14,
            5e-324,
            1e-300,
            2.5e-7,
            f64::MAX,
            f64::MIN_POSITIVE,
            0.0,
            -0.0,
            -0.2,
            -41.35,
            -1e-5,
            1.0,
            9.999,
            0.1 + 0.2,
            1.0 / 3.0,
            2.0 / 3.0,
            100.0,
            1e14,
            4503599627370496.5,
            0.5,
            0.25,
            0.125,
        ] {
            same_as_ryu(v);
        }
        let mut next = xorshift(0x9E37_79B9_7F4A_7C15);
        for _ in 0..300_000 {
            // A decimal of up to 17 digits at a power of ten from 10^-22 to 10^17, parsed.
            let digits = 1 + next() % 17;
            let mantissa = next() % 10u64.pow(digits as u32);
            let exponent = (next() % 40) as i32 - 22;
            let v: f64 = format!("{mantissa}e{exponent}").parse().unwrap_or(0.0);
            same_as_ryu(v);
            same_as_ryu(-v);
            // Any bits at all, and their neighbours.
            let bits = f64::from_bits(next());
            if bits.is_finite() {
                same_as_ryu(bits);
                same_as_ryu(f64::from_bits(bits.to_bits() + 1));
            }
            // Arithmetic results: not the nearest double to a short decimal.
            let sum = (next() % 1000) as f64 / 1000.0 + (next() % 1000) as f64 / 100.0;
            same_as_ryu(sum);
            same_as_ryu(sum * 3.0);
        }
    }
}
