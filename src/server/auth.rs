//! Authentication: memcached's password file, its text-protocol token and
//! SASL PLAIN over the binary protocol.
//!
//! memcached 1.6 has two unrelated ways to make clients prove who they are,
//! and both end in the same kind of file, a few `user:password` lines.
//!
//! **Text authentication** (`-Y FILE`) turns the text protocol into a locked
//! door with one key hole: until a connection has authenticated, every line
//! it sends is answered `CLIENT_ERROR unauthenticated`, except a `set` whose
//! value is `user password`:
//!
//! ```text
//! set anykey 0 0 12\r\n
//! alice secret\r\n
//! ```
//!
//! The key, flags and exptime are ignored and nothing is stored; the reply is
//! `STORED` when the pair is in the file. [`text_step`] reads one such
//! exchange the way memcached's `try_read_command_asciiauth` does, quirks
//! included: a line is found by its `\n` alone, tokens are split on spaces
//! only, the value must end in `\r\n`, and more than 2048 bytes without a
//! newline close the connection.
//!
//! **SASL** (`-S`) authenticates binary connections with the SASL
//! list-mechanisms, auth and step requests. memcached hands these to Cyrus
//! SASL; this server speaks the one mechanism clients use with memcached,
//! PLAIN (`[authzid] NUL authcid NUL password`, RFC 4616), and checks the
//! pair against the same kind of file, which memcached's built-in password
//! database reads from the file named by `MEMCACHED_SASL_PWDB`.
//!
//! One of memcached's quirks is left out on purpose: while a connection is
//! unauthenticated, memcached writes each reply into the same response
//! object until it is sent, so of several requests that arrive together only
//! the last one's reply reaches the client. Here every request is answered.
//!
//! [`Credentials::parse`] reads a file the way memcached's `authfile.c`
//! does, limits included: at most 8 entries, lines read 255 bytes at a time,
//! a line without a `:` makes the whole file malformed.

use crate::ascii;
use std::fmt;
use std::path::Path;

/// memcached's `MAX_ENTRIES`: entries past the eighth are ignored.
const MAX_ENTRIES: usize = 8;

/// memcached reads its file with `fgets` into chunks of this size, so a
/// line is at most one byte less.
const MAX_ENTRY_LEN: usize = 256;

/// memcached closes a connection that sent this much without a newline
/// before authenticating.
const MAX_UNAUTHENTICATED_LINE: usize = 2048;

/// memcached reads the whole `set` line and value into its 16 KB read
/// buffer, and closes the connection when they do not fit.
const MAX_TOKEN_REQUEST: usize = 16 * 1024;

/// The longest SASL mechanism name memcached accepts (`MAX_SASL_MECH_LEN`).
pub const MAX_SASL_MECHANISM_LEN: usize = 32;

/// The mechanisms SASL list-mechanisms announces.
pub const SASL_MECHANISMS: &str = "PLAIN";

/// The users and passwords of a password file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    entries: Vec<(Vec<u8>, Vec<u8>)>,
}

/// Why a password file could not be used.
#[derive(Debug)]
pub enum CredentialsError {
    Open(std::io::Error),
    /// A line has no `:`.
    Malformed,
}

impl Credentials {
    /// Reads the password file at `path`, with memcached's messages on error.
    pub fn load(path: &Path) -> Result<Credentials, String> {
        let describe = |error: CredentialsError| match error {
            CredentialsError::Open(e) => format!(
                "Could not open authfile [{}] for reading, error {e}",
                path.display()
            ),
            CredentialsError::Malformed => format!(
                "Authfile [{}] has a malformed entry. Should be 'user:password'",
                path.display()
            ),
        };
        let bytes = std::fs::read(path).map_err(|e| describe(CredentialsError::Open(e)))?;
        Credentials::parse(&bytes).map_err(describe)
    }

    /// Parses a password file's contents as memcached's `authfile_load`
    /// does: each chunk of up to 255 bytes ending at a newline is an entry,
    /// the user ends at its first `:`, the password at `\r`, `\n` or NUL;
    /// a chunk that ends without a newline (the file's last line, or one
    /// longer than 255 bytes, or one with a NUL) ends the file.
    pub fn parse(bytes: &[u8]) -> Result<Credentials, CredentialsError> {
        let mut entries = Vec::new();
        let mut rest = bytes;
        while !rest.is_empty() {
            // fgets: up to MAX_ENTRY_LEN - 1 bytes, stopping after a newline.
            let limit = rest.len().min(MAX_ENTRY_LEN - 1);
            let chunk_len = rest[..limit]
                .iter()
                .position(|&b| b == b'\n')
                .map_or(limit, |newline| newline + 1);
            let (chunk, after) = rest.split_at(chunk_len);
            rest = after;
            // The C code sees the chunk as a string: it ends at a NUL.
            let text = chunk.split(|&b| b == 0).next().unwrap_or_default();
            let Some(colon) = text.iter().position(|&b| b == b':') else {
                return Err(CredentialsError::Malformed);
            };
            let password = &text[colon + 1..];
            let password_len = password
                .iter()
                .position(|&b| b == b'\r' || b == b'\n')
                .unwrap_or(password.len());
            entries.push((text[..colon].to_vec(), password[..password_len].to_vec()));
            let ended_in_newline = text.len() == chunk.len() && chunk.ends_with(b"\n");
            if entries.len() == MAX_ENTRIES || !ended_in_newline {
                break;
            }
        }
        Ok(Credentials { entries })
    }

    /// Whether `user` and `password` are an entry of the file. Every entry
    /// is compared in full, so the time taken does not tell how much of a
    /// guess was right.
    pub fn check(&self, user: &[u8], password: &[u8]) -> bool {
        self.entries.iter().fold(false, |found, (u, p)| {
            found | (constant_time_eq(u, user) & constant_time_eq(p, password))
        })
    }
}

impl fmt::Display for CredentialsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CredentialsError::Open(e) => write!(f, "cannot open: {e}"),
            CredentialsError::Malformed => f.write_str("malformed entry"),
        }
    }
}

/// Equality whose time depends only on the lengths.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// What [`text_step`] made of the start of an unauthenticated connection's
/// input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextStep {
    /// Wait for `wanted` bytes in all (0: for a newline).
    Incomplete { wanted: usize },
    /// Close the connection without a reply.
    Close,
    /// Send `reply` and drop `consumed` bytes. `verdict` is the outcome of
    /// a credentials check, when one was made.
    Answer {
        consumed: usize,
        reply: &'static str,
        verdict: Option<bool>,
    },
}

/// Reads one request of a connection that has not authenticated yet.
pub fn text_step(input: &[u8], credentials: &Credentials) -> TextStep {
    let Some(newline) = input.iter().position(|&b| b == b'\n') else {
        return if input.len() > MAX_UNAUTHENTICATED_LINE {
            TextStep::Close
        } else {
            TextStep::Incomplete { wanted: 0 }
        };
    };
    let line_len = newline + 1;
    // memcached leaves the `\r` in: it ends up in the last token, where
    // the number parser stops at it.
    let mut tokens = c_string(&input[..newline])
        .split(|&b| b == b' ')
        .filter(|token| !token.is_empty());
    let command = tokens.next();
    let size = tokens.nth(3).and_then(ascii::parse_u32);
    let (Some(b"set"), Some(size)) = (command, size) else {
        return TextStep::Answer {
            consumed: line_len,
            reply: "CLIENT_ERROR unauthenticated",
            verdict: None,
        };
    };
    let value_len = size as usize + 2;
    if line_len + value_len > MAX_TOKEN_REQUEST {
        return TextStep::Close;
    }
    let Some(value) = input.get(line_len..line_len + value_len) else {
        return TextStep::Incomplete {
            wanted: line_len + value_len,
        };
    };
    let answer = |reply, verdict| TextStep::Answer {
        consumed: line_len + value_len,
        reply,
        verdict,
    };
    let Some(token_text) = value.strip_suffix(b"\r\n") else {
        return answer("CLIENT_ERROR bad command line termination", None);
    };
    let mut tokens = c_string(token_text)
        .split(|&b| b == b' ')
        .filter(|token| !token.is_empty());
    let (Some(user), Some(password), None) = (tokens.next(), tokens.next(), tokens.next()) else {
        return answer("CLIENT_ERROR bad authentication token format", None);
    };
    if credentials.check(user, password) {
        answer("STORED", Some(true))
    } else {
        answer("CLIENT_ERROR authentication failure", Some(false))
    }
}

/// What C code sees of `bytes` as a string: everything before a NUL.
fn c_string(bytes: &[u8]) -> &[u8] {
    bytes.split(|&b| b == 0).next().unwrap_or_default()
}

/// Checks a SASL PLAIN message, `[authzid] NUL authcid NUL password`. An
/// authorization identity other than the user's own is refused, as Cyrus
/// SASL refuses it without an authorization policy.
pub fn sasl_plain(mechanism: &[u8], message: &[u8], credentials: &Credentials) -> bool {
    if !mechanism.eq_ignore_ascii_case(SASL_MECHANISMS.as_bytes()) {
        return false;
    }
    let mut parts = message.splitn(3, |&b| b == 0);
    let (Some(authzid), Some(user), Some(password)) = (parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    if !authzid.is_empty() && authzid != user {
        return false;
    }
    credentials.check(user, password)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn credentials(text: &str) -> Credentials {
        Credentials::parse(text.as_bytes()).expect("well-formed file")
    }

    fn users(credentials: &Credentials) -> Vec<(String, String)> {
        credentials
            .entries
            .iter()
            .map(|(u, p)| {
                (
                    String::from_utf8_lossy(u).into_owned(),
                    String::from_utf8_lossy(p).into_owned(),
                )
            })
            .collect()
    }

    fn pair(user: &str, password: &str) -> (String, String) {
        (user.to_owned(), password.to_owned())
    }

    #[test]
    fn entries_split_at_the_first_colon_and_end_at_a_line_break() {
        let parsed = credentials("alice:secret\nbob:a:b\r\n:empty\ncarol:\n");
        assert_eq!(
            users(&parsed),
            [
                pair("alice", "secret"),
                pair("bob", "a:b"),
                pair("", "empty"),
                pair("carol", "")
            ]
        );
        assert!(parsed.check(b"bob", b"a:b"));
        assert!(parsed.check(b"carol", b""));
        assert!(!parsed.check(b"alice", b"secre"));
        assert!(!parsed.check(b"alice", b"secret2"));
        assert!(!parsed.check(b"bob", b"secret"));
    }

    #[test]
    fn a_line_without_a_colon_makes_the_file_malformed() {
        for text in ["alice:secret\nbob\n", "\nalice:secret\n", "alice:x\n\n"] {
            assert!(
                matches!(
                    Credentials::parse(text.as_bytes()),
                    Err(CredentialsError::Malformed)
                ),
                "{text:?}"
            );
        }
        assert_eq!(users(&credentials("")), []);
    }

    #[test]
    fn only_eight_entries_are_read() {
        let text: String = (0..10).map(|i| format!("user{i}:pw{i}\n")).collect();
        let parsed = credentials(&text);
        assert_eq!(parsed.entries.len(), 8);
        assert!(parsed.check(b"user7", b"pw7"));
        assert!(!parsed.check(b"user8", b"pw8"));
    }

    #[test]
    fn a_line_longer_than_a_read_chunk_ends_the_file() {
        let long = format!("long:{}\nafter:pw\n", "x".repeat(300));
        let parsed = credentials(&long);
        assert_eq!(users(&parsed), [pair("long", &"x".repeat(250))]);
        // A last line without a newline is read as usual.
        assert!(credentials("a:b\nc:d").check(b"c", b"d"));
        // A NUL ends the line and the file.
        assert_eq!(users(&credentials("a:b\0c\nd:e\n")), [pair("a", "b")]);
    }

    fn step(input: &[u8]) -> TextStep {
        text_step(input, &credentials("alice:secret\n"))
    }

    fn answer(consumed: usize, reply: &'static str, verdict: Option<bool>) -> TextStep {
        TextStep::Answer {
            consumed,
            reply,
            verdict,
        }
    }

    #[test]
    fn the_set_token_authenticates() {
        let request = b"set k 0 0 12\r\nalice secret\r\nget k\r\n";
        assert_eq!(step(request), answer(28, "STORED", Some(true)));
        assert_eq!(
            step(b"set k 0 0 12\r\nalice wrong!\r\n"),
            answer(28, "CLIENT_ERROR authentication failure", Some(false))
        );
        // Spaces are collapsed, a bare newline ends the line, extra tokens
        // on the line are ignored.
        assert_eq!(
            step(b"set  k 1 2  14 noreply\n alice  secret\r\n"),
            answer(39, "STORED", Some(true))
        );
        // A NUL ends a token as it ends a C string.
        assert_eq!(
            step(b"set k 0 0 14\r\nalice secret\0x\r\n"),
            answer(30, "STORED", Some(true))
        );
    }

    #[test]
    fn anything_else_is_unauthenticated() {
        for line in [
            &b"get k\r\n"[..],
            b"set k 0 0\r\n",
            b"add k 0 0 1\r\n",
            b"set k 0 0 -1\r\n",
            b"set k 0 0 x\r\n",
            b"\r\n",
            b"SET k 0 0 1\r\n",
        ] {
            assert_eq!(
                step(line),
                answer(line.len(), "CLIENT_ERROR unauthenticated", None),
                "{line:?}"
            );
        }
    }

    #[test]
    fn malformed_tokens_and_terminations_are_refused_without_a_check() {
        assert_eq!(
            step(b"set k 0 0 12\r\nalice secretX\n"),
            answer(28, "CLIENT_ERROR bad command line termination", None)
        );
        assert_eq!(
            step(b"set k 0 0 5\r\nalice\r\n"),
            answer(20, "CLIENT_ERROR bad authentication token format", None)
        );
        assert_eq!(
            step(b"set k 0 0 14\r\nalice secret x\r\n"),
            answer(30, "CLIENT_ERROR bad authentication token format", None)
        );
        assert_eq!(
            step(b"set k 0 0 0\r\n\r\n"),
            answer(15, "CLIENT_ERROR bad authentication token format", None)
        );
    }

    #[test]
    fn waits_for_the_line_and_the_value() {
        assert_eq!(step(b"set k 0 0 12"), TextStep::Incomplete { wanted: 0 });
        assert_eq!(
            step(b"set k 0 0 12\r\nalice"),
            TextStep::Incomplete { wanted: 28 }
        );
        assert_eq!(step(&[b'x'; 2049]), TextStep::Close);
        assert_eq!(step(&[b'x'; 2048]), TextStep::Incomplete { wanted: 0 });
        assert_eq!(step(b"set k 0 0 100000\r\n"), TextStep::Close);
    }

    #[test]
    fn sasl_plain_checks_the_pair_and_the_authorization_identity() {
        let file = credentials("alice:secret\n");
        assert!(sasl_plain(b"PLAIN", b"\0alice\0secret", &file));
        assert!(sasl_plain(b"plain", b"alice\0alice\0secret", &file));
        assert!(!sasl_plain(b"PLAIN", b"bob\0alice\0secret", &file));
        assert!(!sasl_plain(b"PLAIN", b"\0alice\0wrong", &file));
        assert!(!sasl_plain(b"PLAIN", b"\0alice", &file));
        assert!(!sasl_plain(b"CRAM-MD5", b"\0alice\0secret", &file));
        // The password may hold a NUL; it is compared whole.
        assert!(!sasl_plain(b"PLAIN", b"\0alice\0secret\0", &file));
    }
}
