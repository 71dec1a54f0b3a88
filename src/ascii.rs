//! Decimal numbers as memcached reads and writes them.
//!
//! memcached parses every numeric token, and the item data `incr`/`decr`
//! work on, with C's `strtoul`/`strtol`/`strtoull` wrapped in its
//! `safe_strto*` helpers, and clients observe the quirks of that path:
//! leading whitespace and a `+` sign are accepted, `-0` is zero, a negative
//! number that wraps to a huge unsigned value is refused, and the 32-bit
//! results are plain truncations of a 64-bit parse (`4294967297` as flags is
//! stored as `1`). Being byte-compatible means reproducing exactly that, so
//! these functions model the C library on a byte slice (which ends where a C
//! string would: at its end or at a NUL) instead of using Rust's stricter
//! `str::parse`. Both the protocol and the store use them.

/// C's `isspace` in the "C" locale.
#[inline]
pub fn is_c_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

/// What `strtoull`/`strtoll` saw in a token.
struct Scan {
    /// Digits read, as an unsigned magnitude (saturated on overflow).
    magnitude: u64,
    negative: bool,
    /// The magnitude did not fit in 64 bits.
    overflow: bool,
    /// Index just past the last digit (C's `endptr`).
    end: usize,
}

/// Scans `[space]* [+-]? digits` from the start of `s`. `None` when no digit
/// was found, which C reports as `endptr == str`.
fn scan(s: &[u8]) -> Option<Scan> {
    let mut i = 0;
    while i < s.len() && is_c_space(s[i]) {
        i += 1;
    }
    let mut negative = false;
    if i < s.len() && (s[i] == b'+' || s[i] == b'-') {
        negative = s[i] == b'-';
        i += 1;
    }
    let digits_start = i;
    let mut magnitude: u64 = 0;
    let mut overflow = false;
    while i < s.len() && s[i].is_ascii_digit() {
        let digit = u64::from(s[i] - b'0');
        match magnitude.checked_mul(10).and_then(|m| m.checked_add(digit)) {
            Some(m) => magnitude = m,
            None => {
                overflow = true;
                magnitude = u64::MAX;
            }
        }
        i += 1;
    }
    if i == digits_start {
        return None;
    }
    Some(Scan {
        magnitude,
        negative,
        overflow,
        end: i,
    })
}

/// memcached accepts a number only if it is followed by whitespace or by the
/// end of the C string.
#[inline]
fn ends_cleanly(s: &[u8], end: usize) -> bool {
    end == s.len() || s[end] == 0 || is_c_space(s[end])
}

/// `strtoull` as memcached's `safe_strtoull` uses it: a negative sign is
/// applied by two's complement and then refused if the result looks negative.
fn c_strtoull(s: &[u8]) -> Option<u64> {
    let scan = scan(s)?;
    if scan.overflow || !ends_cleanly(s, scan.end) {
        return None;
    }
    let value = if scan.negative {
        scan.magnitude.wrapping_neg()
    } else {
        scan.magnitude
    };
    let c_string = s.split(|&b| b == 0).next().unwrap_or(s);
    if (value as i64) < 0 && c_string.contains(&b'-') {
        return None;
    }
    Some(value)
}

/// memcached's `safe_strtoull`: a 64-bit unsigned number (CAS values, deltas,
/// the counters `incr` and `decr` read).
pub fn parse_u64(s: &[u8]) -> Option<u64> {
    c_strtoull(s)
}

/// memcached's `safe_strtoul` on a 64-bit platform: parsed as 64 bits, then
/// truncated into the 32-bit destination.
pub fn parse_u32(s: &[u8]) -> Option<u32> {
    c_strtoull(s).map(|v| v as u32)
}

/// memcached's `safe_strtol` on a 64-bit platform: `strtol` into a 64-bit
/// `long` (out of range is an error), then truncated into an `int32_t`.
pub fn parse_i32(s: &[u8]) -> Option<i32> {
    let scan = scan(s)?;
    if !ends_cleanly(s, scan.end) {
        return None;
    }
    let limit = if scan.negative {
        1u64 << 63
    } else {
        i64::MAX as u64
    };
    if scan.overflow || scan.magnitude > limit {
        return None;
    }
    let value = if scan.negative {
        (scan.magnitude as i64).wrapping_neg()
    } else {
        scan.magnitude as i64
    };
    Some(value as i32)
}

/// The longest decimal `u64`.
pub const MAX_DIGITS: usize = 20;

/// Writes `n` in decimal into the end of `buf`, returning the digits.
#[inline]
pub fn format_u64(mut n: u64, buf: &mut [u8; MAX_DIGITS]) -> &[u8] {
    let mut start = MAX_DIGITS;
    loop {
        start -= 1;
        buf[start] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return &buf[start..];
        }
    }
}

/// Appends the decimal digits of `n` to `out` without going through `fmt`.
#[inline]
pub fn push_u64(out: &mut Vec<u8>, n: u64) {
    let mut buf = [0; MAX_DIGITS];
    out.extend_from_slice(format_u64(n, &mut buf));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsigned_accepts_what_strtoull_accepts() {
        assert_eq!(parse_u64(b"0"), Some(0));
        assert_eq!(parse_u64(b"+5"), Some(5));
        assert_eq!(parse_u64(b"-0"), Some(0));
        assert_eq!(parse_u64(b"007"), Some(7));
        assert_eq!(parse_u64(b"\t12"), Some(12));
        assert_eq!(parse_u64(b"12\r"), Some(12));
        assert_eq!(parse_u64(b"18446744073709551615"), Some(u64::MAX));
    }

    #[test]
    fn unsigned_refuses_garbage_overflow_and_negatives() {
        assert_eq!(parse_u64(b""), None);
        assert_eq!(parse_u64(b"+"), None);
        assert_eq!(parse_u64(b"abc"), None);
        assert_eq!(parse_u64(b"12abc"), None);
        assert_eq!(parse_u64(b"18446744073709551616"), None);
        assert_eq!(parse_u64(b"-1"), None);
        // A small negative wraps to a value with the top bit clear: C accepts it.
        assert_eq!(
            parse_u64(b"-9223372036854775809"),
            Some(9223372036854775807)
        );
    }

    #[test]
    fn item_data_is_read_as_a_c_string() {
        assert_eq!(parse_u64(b"5 "), Some(5));
        assert_eq!(parse_u64(b"12 junk"), Some(12));
        assert_eq!(parse_u64(b"12\0abc"), Some(12));
        assert_eq!(parse_u64(b"\t\n12"), Some(12));
        assert_eq!(parse_u64(b" "), None);
        assert_eq!(parse_u64(b"1.5"), None);
        assert_eq!(parse_u64(b"--1"), None);
        assert_eq!(parse_u64(b"-99999999999999999999"), None);
    }

    #[test]
    fn u32_is_a_truncated_64_bit_parse() {
        assert_eq!(parse_u32(b"4294967295"), Some(u32::MAX));
        assert_eq!(parse_u32(b"4294967296"), Some(0));
        assert_eq!(parse_u32(b"4294967297"), Some(1));
        assert_eq!(parse_u32(b"-1"), None);
    }

    #[test]
    fn i32_is_a_truncated_long() {
        assert_eq!(parse_i32(b"-1"), Some(-1));
        assert_eq!(parse_i32(b"2592000"), Some(2592000));
        assert_eq!(parse_i32(b"4294967295"), Some(-1));
        assert_eq!(parse_i32(b"4294967297"), Some(1));
        assert_eq!(parse_i32(b"9223372036854775807"), Some(-1));
        assert_eq!(parse_i32(b"9223372036854775808"), None);
        assert_eq!(parse_i32(b"-9223372036854775808"), Some(0));
        assert_eq!(parse_i32(b"-9223372036854775809"), None);
        assert_eq!(parse_i32(b"1x"), None);
    }

    #[test]
    fn digits_are_written_plainly() {
        for n in [0u64, 7, 10, 12345, u64::MAX] {
            let mut out = Vec::new();
            push_u64(&mut out, n);
            assert_eq!(out, n.to_string().as_bytes());
        }
    }
}
