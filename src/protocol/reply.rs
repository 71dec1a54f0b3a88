//! Encoding of text-protocol replies into an output buffer.

use crate::ascii::push_u64;

/// Appends `line` and the `\r\n` that ends every reply line.
#[inline]
pub fn line(out: &mut Vec<u8>, line: &str) {
    out.extend_from_slice(line.as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// Appends one `VALUE <key> <flags> <bytes>[ <cas>]\r\n<data>\r\n` item.
#[inline]
pub fn value(out: &mut Vec<u8>, key: &[u8], flags: u32, data: &[u8], cas: Option<u64>) {
    out.reserve(key.len() + data.len() + 48);
    out.extend_from_slice(b"VALUE ");
    out.extend_from_slice(key);
    out.push(b' ');
    push_u64(out, u64::from(flags));
    out.push(b' ');
    push_u64(out, data.len() as u64);
    if let Some(cas) = cas {
        out.push(b' ');
        push_u64(out, cas);
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
}

/// Appends the end marker of a retrieval reply.
#[inline]
pub fn end(out: &mut Vec<u8>) {
    out.extend_from_slice(b"END\r\n");
}

/// Appends a number on a line of its own (the reply to incr/decr).
#[inline]
pub fn number(out: &mut Vec<u8>, n: u64) {
    push_u64(out, n);
    out.extend_from_slice(b"\r\n");
}

/// Appends `STAT <name> <value>\r\n`.
pub fn stat(out: &mut Vec<u8>, name: &str, value: impl std::fmt::Display) {
    use std::io::Write;
    // Writing into a Vec cannot fail.
    let _ = write!(out, "STAT {name} {value}\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn value_lines_match_memcached() {
        let mut out = Vec::new();
        value(&mut out, b"k", 5, b"abc", None);
        value(&mut out, b"k", 0, b"", Some(42));
        end(&mut out);
        assert_eq!(out, b"VALUE k 5 3\r\nabc\r\nVALUE k 0 0 42\r\n\r\nEND\r\n");
    }

    #[test]
    fn stats_and_numbers() {
        let mut out = Vec::new();
        stat(&mut out, "pid", 12);
        number(&mut out, u64::MAX);
        line(&mut out, "STORED");
        assert_eq!(
            out,
            b"STAT pid 12\r\n18446744073709551615\r\nSTORED\r\n".as_slice()
        );
    }
}
