//! The small value grammars shared by flags and config keys: memcached's size syntax
//! (`-I 1m`), megabyte counts (`-m 64`), listen addresses (`-l host:port,...`) and the
//! persistent tier's flush interval (`--l2-flush-ms 100`).
//!
//! Each parser returns the value or a short description of what was expected; the caller
//! adds the name of the flag or key, which only it knows.

pub(crate) const KILOBYTE: usize = 1024;
pub(crate) const MEGABYTE: usize = 1024 * KILOBYTE;

/// What a size may look like, for error messages.
pub(crate) const SIZE_SYNTAX: &str = "a size like 1m, 512k or 1048576";

/// Parses memcached's `-I` syntax: a byte count, optionally followed by `k`/`K`
/// (kilobytes) or `m`/`M` (megabytes).
///
/// memcached reads the number with `atoi`, so it takes `1.5m` as `1m` and `1g` as one
/// byte; here anything but digits and one unit letter is an error instead of a surprise.
pub(crate) fn parse_size(text: &str) -> Option<usize> {
    let (digits, unit) = match text.as_bytes().last()? {
        b'k' | b'K' => (&text[..text.len() - 1], KILOBYTE),
        b'm' | b'M' => (&text[..text.len() - 1], MEGABYTE),
        _ => (text, 1),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse::<usize>().ok()?.checked_mul(unit)
}

/// Parses `-m`: a positive number of megabytes. A trailing `m`/`M` is allowed because
/// memcached's `atoi` reads `-m 64m` as 64.
pub(crate) fn parse_megabytes(text: &str) -> Option<u64> {
    let digits = text.strip_suffix(['m', 'M']).unwrap_or(text);
    parse_positive(digits)
}

/// Parses a decimal integer greater than zero.
pub(crate) fn parse_positive(text: &str) -> Option<u64> {
    parse_unsigned(text).filter(|&value| value > 0)
}

/// Parses a decimal integer, zero included; signs and blanks are rejected.
pub(crate) fn parse_unsigned(text: &str) -> Option<u64> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// Checks that `megabytes` multiplied out to bytes fits in a `usize`, so that code
/// sizing buffers or budgets from it cannot overflow; returns it unchanged.
pub(crate) fn check_megabytes(megabytes: u64) -> Result<u64, String> {
    match megabytes_to_bytes(megabytes) {
        Some(_) => Ok(megabytes),
        None => Err(format!(
            "{megabytes} megabytes do not fit in this machine's address space"
        )),
    }
}

/// What a flush interval looks like, for error messages; its bounds are
/// 1 and [`super::MAX_L2_FLUSH_INTERVAL_MS`].
pub(crate) const FLUSH_INTERVAL_SYNTAX: &str = "a number of milliseconds 1-60000";

/// Parses the persistent tier's flush interval: whole milliseconds, 1 to
/// [`super::MAX_L2_FLUSH_INTERVAL_MS`].
pub(crate) fn parse_flush_interval(text: &str) -> Option<u64> {
    parse_unsigned(text)
        .filter(|milliseconds| (1..=super::MAX_L2_FLUSH_INTERVAL_MS).contains(milliseconds))
}

/// What a unix socket mask looks like, for error messages.
pub(crate) const MASK_SYNTAX: &str = "octal permission bits 0-777, like 700 or 0770";

/// memcached's `-a`: permission bits in octal, with or without a leading 0.
///
/// memcached takes whatever `strtol(text, NULL, 8)` makes of the text, so `-a 8` or
/// `-a abc` silently give mode 0; here only octal digits are accepted, and only the
/// permission bits (set-id and sticky bits mean nothing on a socket).
pub(crate) fn parse_octal_mask(text: &str) -> Option<u32> {
    if text.is_empty() || !text.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
        return None;
    }
    u32::from_str_radix(text, 8)
        .ok()
        .filter(|&mask| mask <= 0o777)
}

/// Converts megabytes to bytes, or `None` if that does not fit in memory addresses.
pub(crate) fn megabytes_to_bytes(megabytes: u64) -> Option<usize> {
    usize::try_from(megabytes).ok()?.checked_mul(MEGABYTE)
}

/// One listen address before name resolution: a host and, if given, a port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct HostPort {
    pub(crate) host: String,
    pub(crate) port: Option<u16>,
}

/// Parses one listen item the way memcached's `-l` does: `HOST`, `HOST:PORT`,
/// `[IPV6]`, `[IPV6]:PORT`, or a bare IPv6 address (two colons or more, no port).
/// memcached's `notls:` prefix, which exempts a listener from TLS, is accepted and
/// dropped since no listener uses TLS here.
pub(crate) fn parse_host_port(item: &str) -> Result<HostPort, String> {
    let item = item.strip_prefix("notls:").unwrap_or(item);
    let (host, port) = if let Some(bracketed) = item.strip_prefix('[') {
        let (host, rest) = bracketed
            .split_once(']')
            .ok_or_else(|| format!("missing ']' in '{item}'"))?;
        match rest {
            "" => (host, None),
            _ => match rest.strip_prefix(':') {
                Some(port) => (host, Some(port)),
                None => return Err(format!("expected ':PORT' after ']' in '{item}'")),
            },
        }
    } else {
        match item.matches(':').count() {
            0 => (item, None),
            1 => {
                let (host, port) = item.split_once(':').unwrap_or((item, ""));
                (host, Some(port))
            }
            _ => (item, None),
        }
    };
    if host.is_empty() {
        return Err(format!("missing host in '{item}'"));
    }
    let port = match port {
        None => None,
        Some(port) => Some(
            port.parse::<u16>()
                .map_err(|_| format!("expected a port number 0-65535 in '{item}'"))?,
        ),
    };
    Ok(HostPort {
        host: host.to_string(),
        port,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_use_memcached_units() {
        assert_eq!(parse_size("1m"), Some(1_048_576));
        assert_eq!(parse_size("2M"), Some(2_097_152));
        assert_eq!(parse_size("512k"), Some(524_288));
        assert_eq!(parse_size("4K"), Some(4096));
        assert_eq!(parse_size("2097152"), Some(2_097_152));
        assert_eq!(parse_size("0"), Some(0));
    }

    #[test]
    fn sizes_reject_what_atoi_would_misread() {
        for bad in ["", "m", "1.5m", "1g", "-1", "+1", " 1", "1 m", "abc", "1mm"] {
            assert_eq!(parse_size(bad), None, "{bad:?}");
        }
        assert_eq!(parse_size("99999999999999999999m"), None);
    }

    #[test]
    fn megabytes_are_positive_and_allow_an_m_suffix() {
        assert_eq!(parse_megabytes("64"), Some(64));
        assert_eq!(parse_megabytes("64m"), Some(64));
        assert_eq!(parse_megabytes("128M"), Some(128));
        for bad in ["0", "", "-1", "64k", "1g", "x", "1.5"] {
            assert_eq!(parse_megabytes(bad), None, "{bad:?}");
        }
        assert_eq!(megabytes_to_bytes(3), Some(3 * 1024 * 1024));
        assert_eq!(megabytes_to_bytes(u64::MAX), None);
    }

    #[test]
    fn megabyte_counts_must_fit_in_bytes() {
        assert_eq!(check_megabytes(1024), Ok(1024));
        let largest = (usize::MAX / MEGABYTE) as u64;
        assert_eq!(check_megabytes(largest), Ok(largest));
        assert_eq!(
            check_megabytes(largest + 1),
            Err(format!(
                "{} megabytes do not fit in this machine's address space",
                largest + 1
            ))
        );
    }

    #[test]
    fn flush_intervals_are_whole_milliseconds_up_to_a_minute() {
        assert_eq!(parse_flush_interval("1"), Some(1));
        assert_eq!(parse_flush_interval("100"), Some(100));
        assert_eq!(parse_flush_interval("60000"), Some(60_000));
        for bad in ["0", "60001", "", "-1", "1.5", "100ms", "x"] {
            assert_eq!(parse_flush_interval(bad), None, "{bad:?}");
        }
        assert!(FLUSH_INTERVAL_SYNTAX
            .ends_with(&format!(" 1-{}", super::super::MAX_L2_FLUSH_INTERVAL_MS)));
    }

    #[test]
    fn host_port_forms() {
        let parse = |text| parse_host_port(text).unwrap();
        assert_eq!(
            parse("127.0.0.1"),
            HostPort {
                host: "127.0.0.1".into(),
                port: None
            }
        );
        assert_eq!(
            parse("10.0.0.1:11311"),
            HostPort {
                host: "10.0.0.1".into(),
                port: Some(11311)
            }
        );
        assert_eq!(parse("localhost:1").host, "localhost");
        assert_eq!(
            parse("[::1]:11211"),
            HostPort {
                host: "::1".into(),
                port: Some(11211)
            }
        );
        assert_eq!(parse("[::1]").port, None);
        assert_eq!(
            parse("fe80::1"),
            HostPort {
                host: "fe80::1".into(),
                port: None
            }
        );
        assert_eq!(parse("notls:127.0.0.1:5").port, Some(5));
    }

    #[test]
    fn host_port_errors_say_what_is_wrong() {
        assert!(parse_host_port("").unwrap_err().contains("missing host"));
        assert!(parse_host_port(":11211")
            .unwrap_err()
            .contains("missing host"));
        assert!(parse_host_port("[::1").unwrap_err().contains("missing ']'"));
        assert!(parse_host_port("[::1]11211")
            .unwrap_err()
            .contains("':PORT'"));
        assert!(parse_host_port("host:70000")
            .unwrap_err()
            .contains("port number"));
        assert!(parse_host_port("host:")
            .unwrap_err()
            .contains("port number"));
    }

    #[test]
    fn masks_are_octal_permission_bits() {
        assert_eq!(parse_octal_mask("700"), Some(0o700));
        assert_eq!(parse_octal_mask("0770"), Some(0o770));
        assert_eq!(parse_octal_mask("0"), Some(0));
        assert_eq!(parse_octal_mask("777"), Some(0o777));
        for bad in ["", "8", "abc", "7777", "-1", "0x1ff", " 700"] {
            assert_eq!(parse_octal_mask(bad), None, "{bad:?}");
        }
    }
}
