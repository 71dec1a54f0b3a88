//! The numbers `incr` and `decr` read and write in item data.
//!
//! memcached reads a counter with `safe_strtoull` over the item's data (which ends in CRLF
//! there): C's `strtoull` in base 10, accepted only when the number is followed by
//! whitespace or the end of the string, and refused when a `-` sign produced a value that
//! is negative as a signed number. [`parse_counter`] reproduces exactly that, including
//! its odd corners (`"-0"` is 0, `" 12"` and `"12 "` are 12, `"-9223372036854775809"` wraps
//! to 9223372036854775807). The result is written back as plain ASCII digits.

/// C's `isspace` in the "C" locale.
fn is_c_space(byte: u8) -> bool {
    matches!(byte, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

/// Parses item data as memcached's `safe_strtoull` does; `None` is "non-numeric".
pub fn parse_counter(data: &[u8]) -> Option<u64> {
    let mut pos = data.iter().take_while(|&&byte| is_c_space(byte)).count();
    let negative = match data.get(pos) {
        Some(b'-') => {
            pos += 1;
            true
        }
        Some(b'+') => {
            pos += 1;
            false
        }
        _ => false,
    };
    let digits = data[pos..]
        .iter()
        .take_while(|byte| byte.is_ascii_digit())
        .count();
    if digits == 0 {
        // strtoull converted nothing.
        return None;
    }
    let mut magnitude: u64 = 0;
    for &digit in &data[pos..pos + digits] {
        // Overflow is strtoull's ERANGE.
        magnitude = magnitude
            .checked_mul(10)?
            .checked_add(u64::from(digit - b'0'))?;
    }
    match data.get(pos + digits) {
        // The C string ends at the data's end (its CRLF) or at an embedded NUL.
        None | Some(0) => {}
        Some(&byte) if is_c_space(byte) => {}
        Some(_) => return None,
    }
    // strtoull negates in unsigned arithmetic; memcached refuses results that look negative.
    let value = if negative {
        magnitude.wrapping_neg()
    } else {
        magnitude
    };
    if negative && (value as i64) < 0 {
        return None;
    }
    Some(value)
}

/// The longest decimal `u64`.
pub const MAX_DIGITS: usize = 20;

/// Writes `value` in decimal into the end of `buf`, returning the digits.
pub fn format_counter(mut value: u64, buf: &mut [u8; MAX_DIGITS]) -> &[u8] {
    let mut start = MAX_DIGITS;
    loop {
        start -= 1;
        buf[start] = b'0' + (value % 10) as u8;
        value /= 10;
        if value == 0 {
            return &buf[start..];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_and_padded_numbers() {
        assert_eq!(parse_counter(b"0"), Some(0));
        assert_eq!(parse_counter(b"42"), Some(42));
        assert_eq!(parse_counter(b" 12"), Some(12));
        assert_eq!(parse_counter(b"\t\n12"), Some(12));
        assert_eq!(parse_counter(b"12 "), Some(12));
        assert_eq!(parse_counter(b"5 "), Some(5));
        assert_eq!(parse_counter(b"12 junk"), Some(12));
        assert_eq!(parse_counter(b"+12"), Some(12));
        assert_eq!(parse_counter(b"12\0abc"), Some(12));
        assert_eq!(parse_counter(b"18446744073709551615"), Some(u64::MAX));
    }

    #[test]
    fn non_numeric_values() {
        assert_eq!(parse_counter(b""), None);
        assert_eq!(parse_counter(b" "), None);
        assert_eq!(parse_counter(b"abc"), None);
        assert_eq!(parse_counter(b"12abc"), None);
        assert_eq!(parse_counter(b"1.5"), None);
        assert_eq!(parse_counter(b"+"), None);
        assert_eq!(parse_counter(b"--1"), None);
        assert_eq!(parse_counter(b"18446744073709551616"), None);
        assert_eq!(parse_counter(b"99999999999999999999"), None);
    }

    #[test]
    fn minus_sign_follows_strtoull() {
        assert_eq!(parse_counter(b"-1"), None);
        assert_eq!(parse_counter(b"-5"), None);
        assert_eq!(parse_counter(b"-0"), Some(0));
        // 2^64 - 9223372036854775809 is positive as a signed number, so memcached keeps it.
        assert_eq!(
            parse_counter(b"-9223372036854775809"),
            Some(9_223_372_036_854_775_807)
        );
        assert_eq!(parse_counter(b"-99999999999999999999"), None);
    }

    #[test]
    fn formats_decimal_digits() {
        let mut buf = [0; MAX_DIGITS];
        assert_eq!(format_counter(0, &mut buf), b"0");
        assert_eq!(format_counter(105, &mut buf), b"105");
        assert_eq!(format_counter(u64::MAX, &mut buf), b"18446744073709551615");
    }
}
