//! Differential tests: the same request scripts go to memcached and to rat_memcached, and
//! the replies must match byte for byte.
//!
//! # How to run
//!
//! ```text
//! cargo test --test differential                       # memcached vs rat_memcached
//! RAT_DIFF_SELFTEST=1 cargo test --test differential   # memcached vs memcached
//! RAT_DIFF_RECORD=1 cargo test --test differential     # rewrite the recorded replies
//! ```
//!
//! Self-test mode checks the harness and the corpus: a script that does not pass with
//! memcached in both roles is timing-dependent or wrong. Record mode runs every script
//! against memcached alone and writes its replies into the script files as `<` lines, so
//! the corpus documents exactly what memcached says, and rat_memcached can still be
//! checked against those recorded replies on a machine without memcached.
//!
//! Both servers are started once for the whole run (`-t 2 -m 64`); before each script the
//! harness sends `flush_all`, and each script runs on fresh connections. The two servers
//! run the same script at the same time on two threads, so a script's sleeps cost once.
//!
//! # Script format (`tests/corpus/*.txt`)
//!
//! ```text
//! # comment                a line starting with '#' is ignored, and so is a blank line
//! > TEXT                   bytes to send
//! ~ TEXT                   bytes to send, without a sync (see below)
//! B PACKET                 a binary-protocol request to send (see below)
//! b PACKET                 a binary-protocol request to send, without a sync
//! < TEXT                   recorded reply of the step above (normalised, see below)
//! <                        recorded: the step above got no reply at all
//! <EOF>                    recorded: the server closed the connection
//! conn NAME                switch to connection NAME, opening it on first use
//! reconnect                close the current connection and open a new one
//! sleep MS                 pause for MS milliseconds
//! ```
//!
//! A run of consecutive `>` lines (or of `~` lines) is one *step*, sent in a single
//! write. TEXT is sent exactly as written, without the file's line break; escapes: `\r`,
//! `\n`, `\t`, `\\`, `\xNN`, `{{N*TEXT}}` (TEXT repeated N times, e.g. a 251-byte key is
//! `{{251*k}}`) and `{{cas N}}` (the real CAS value that this server showed as `#N`, see
//! below). The script starts on connection `main`.
//!
//! Knowing when a reply is complete: after a `>` step the harness also sends
//! `version\r\n` and reads until that sync reply arrives (accounting for `version`
//! commands inside the step), then drops it, so no timing is guessed. A `~` step is for
//! the cases where a sync cannot work — the step leaves the server inside a data block,
//! or the server is expected to close the connection — and reads until the server closes
//! the connection or stays silent for 300 ms.
//!
//! # Binary packets
//!
//! A `B` or `b` line is one request packet, written as an opcode name and fields:
//!
//! ```text
//! B set key=k flags=5 exptime=0 value=hello cas=#1 opaque=7
//! B incrq key=n delta=1 initial=10 exptime=0xffffffff
//! b get key=k magic=0x81                   (a wrong magic byte)
//! b 0x50 key=abc bodylen=2                 (an unknown opcode, lengths that do not add up)
//! ```
//!
//! The opcode is a name (`get`, `getq`, `getk`, `getkq`, `set`, `setq`, `add`, `addq`,
//! `replace`, `replaceq`, `delete`, `deleteq`, `incr`, `incrq`, `decr`, `decrq`, `append`,
//! `appendq`, `prepend`, `prependq`, `quit`, `quitq`, `flush`, `flushq`, `noop`, `version`,
//! `stat`, `verbosity`, `touch`, `gat`, `gatq`, `gatk`, `gatkq`, `sasl_list`, `sasl_auth`,
//! `sasl_step`) or a number. `key=` and `value=` take escaped text as `>` lines do (write
//! a space as `\x20`). The extras are built from `flags=`, `exptime=` (4 bytes each),
//! `delta=`, `initial=` (8 bytes each) and `extras=HEX`, in the order written. `cas=` is a
//! number or `#N` (the CAS that appeared as `#N`); `opaque=`, `datatype=` and `vbucket=`
//! fill their header fields; `magic=`, `keylen=`, `extlen=` and `bodylen=` override what
//! the header would say. Numbers are decimal or `0x` hex.
//!
//! A run of `B` lines is one step sent in one write, followed by a binary noop whose reply
//! marks the end of the step's replies (a `b` step reads like a `~` step). Binary replies
//! are recorded one packet per line, decoded:
//! `RES get status=0x0000 opaque=0 cas=#1 extras=00000005 value=hello`; bytes that do not
//! form a response packet follow as `RAW ...`.
//!
//! Normalisation, for what cannot match between two servers: a `VERSION x` line becomes
//! `VERSION`; the CAS value of a `VALUE` line becomes `#1`, `#2`… in order of first
//! appearance within the script, and so do the CAS values a meta reply returns (its
//! `c<digits>` flags, and `cas=<digits>` in an `ME` line: `c#1`, `cas=#1`; `c0` stays),
//! numbered together with those of `VALUE` lines; `STAT` lines are dropped (the `stats` replies are checked
//! for form and for counter movement by `stats_replies_are_well_formed`); a connection
//! reset counts as a close. In binary replies the CAS field is named the same way (0
//! stays 0), a version reply loses its value, and the statistics of a stat reply are
//! dropped, leaving the empty packet that ends it.

#![cfg(feature = "server")]

mod common;

use common::{escape, start_memcached, start_server_under_test, RawClient, Server};
use std::collections::HashMap;
use std::fmt::Write as _;
use std::fs;
use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Arguments both servers get besides port and address.
const SERVER_ARGS: &[&str] = &["-t", "2", "-m", "64"];

/// The command appended to every `>` step; its reply marks the end of the step's replies.
const SYNC: &[u8] = b"version\r\n";

/// A `~` step's reply is complete after this much silence.
const SILENCE: Duration = Duration::from_millis(300);

/// No single step may take longer than this.
const STEP_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs of at least this many equal bytes are recorded as `{{N*c}}`.
const RUN_LENGTH_THRESHOLD: usize = 32;

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus")
}

// ---------------------------------------------------------------------------------------
// Scripts

/// A piece of a step's payload: literal bytes, or a CAS value known only at run time.
#[derive(Debug, Clone)]
enum Piece {
    Bytes(Vec<u8>),
    Cas(usize),
    Packet(Box<Packet>),
}

/// A CAS field: a number, or the value that appeared as `#N`.
#[derive(Debug, Clone, Copy)]
enum CasField {
    Number(u64),
    Seen(usize),
}

/// A binary request as a `B` line describes it.
#[derive(Debug, Clone)]
struct Packet {
    magic: u8,
    opcode: u8,
    key: Vec<u8>,
    extras: Vec<u8>,
    value: Vec<u8>,
    cas: CasField,
    opaque: u32,
    data_type: u8,
    vbucket: u16,
    key_len: Option<u16>,
    extras_len: Option<u8>,
    body_len: Option<u32>,
}

const OPCODES: &[(&str, u8)] = &[
    ("get", 0x00),
    ("set", 0x01),
    ("add", 0x02),
    ("replace", 0x03),
    ("delete", 0x04),
    ("incr", 0x05),
    ("decr", 0x06),
    ("quit", 0x07),
    ("flush", 0x08),
    ("getq", 0x09),
    ("noop", 0x0a),
    ("version", 0x0b),
    ("getk", 0x0c),
    ("getkq", 0x0d),
    ("append", 0x0e),
    ("prepend", 0x0f),
    ("stat", 0x10),
    ("setq", 0x11),
    ("addq", 0x12),
    ("replaceq", 0x13),
    ("deleteq", 0x14),
    ("incrq", 0x15),
    ("decrq", 0x16),
    ("quitq", 0x17),
    ("flushq", 0x18),
    ("appendq", 0x19),
    ("prependq", 0x1a),
    ("verbosity", 0x1b),
    ("touch", 0x1c),
    ("gat", 0x1d),
    ("gatq", 0x1e),
    ("sasl_list", 0x20),
    ("sasl_auth", 0x21),
    ("sasl_step", 0x22),
    ("gatk", 0x23),
    ("gatkq", 0x24),
];

const NOOP: u8 = 0x0a;
const VERSION: u8 = 0x0b;
const STAT: u8 = 0x10;

/// The opaque of the noop that ends a binary step.
const SYNC_OPAQUE: u32 = 0x5359_4e43;

fn opcode_name(opcode: u8) -> String {
    OPCODES
        .iter()
        .find(|(_, code)| *code == opcode)
        .map_or_else(|| format!("{opcode:#04x}"), |(name, _)| (*name).to_owned())
}

fn parse_number(text: &str) -> Result<u64, String> {
    let parsed = match text.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => text.parse(),
    };
    parsed.map_err(|_| format!("bad number {text:?}"))
}

fn parse_hex(text: &str) -> Result<Vec<u8>, String> {
    if !text.len().is_multiple_of(2) {
        return Err(format!("odd-length hex {text:?}"));
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).map_err(|_| format!("bad hex {text:?}")))
        .collect()
}

/// Parses the text of a `B` or `b` line.
fn parse_packet(text: &str) -> Result<Packet, String> {
    let mut words = text.split(' ').filter(|w| !w.is_empty());
    let name = words.next().ok_or("a packet needs an opcode")?;
    let opcode = match OPCODES.iter().find(|(known, _)| *known == name) {
        Some((_, code)) => *code,
        None => u8::try_from(parse_number(name)?).map_err(|_| format!("bad opcode {name}"))?,
    };
    let mut packet = Packet {
        magic: 0x80,
        opcode,
        key: Vec::new(),
        extras: Vec::new(),
        value: Vec::new(),
        cas: CasField::Number(0),
        opaque: 0,
        data_type: 0,
        vbucket: 0,
        key_len: None,
        extras_len: None,
        body_len: None,
    };
    for word in words {
        let (field, value) = word
            .split_once('=')
            .ok_or_else(|| format!("expected field=value, got {word:?}"))?;
        let number = || parse_number(value);
        let narrow = |bits: u32| -> Result<u64, String> {
            let n = number()?;
            if bits < 64 && n >> bits != 0 {
                return Err(format!("{field}={value} does not fit in {bits} bits"));
            }
            Ok(n)
        };
        match field {
            "key" => packet.key = unescape_bytes(value)?,
            "value" => packet.value = unescape_bytes(value)?,
            "flags" | "exptime" => packet
                .extras
                .extend_from_slice(&(narrow(32)? as u32).to_be_bytes()),
            "delta" | "initial" => packet.extras.extend_from_slice(&number()?.to_be_bytes()),
            "extras" => packet.extras.extend(parse_hex(value)?),
            "cas" => {
                packet.cas = match value.strip_prefix('#') {
                    Some(n) => CasField::Seen(
                        n.parse()
                            .ok()
                            .filter(|&n| n > 0)
                            .ok_or_else(|| format!("bad cas reference {value}"))?,
                    ),
                    None => CasField::Number(number()?),
                }
            }
            "opaque" => packet.opaque = narrow(32)? as u32,
            "datatype" => packet.data_type = narrow(8)? as u8,
            "vbucket" => packet.vbucket = narrow(16)? as u16,
            "magic" => packet.magic = narrow(8)? as u8,
            "keylen" => packet.key_len = Some(narrow(16)? as u16),
            "extlen" => packet.extras_len = Some(narrow(8)? as u8),
            "bodylen" => packet.body_len = Some(narrow(32)? as u32),
            _ => return Err(format!("unknown packet field {field:?}")),
        }
    }
    Ok(packet)
}

impl Packet {
    /// The packet's bytes, with `cas` for its CAS field.
    fn encode(&self, cas: u64, out: &mut Vec<u8>) {
        let body_len = self.extras.len() + self.key.len() + self.value.len();
        out.push(self.magic);
        out.push(self.opcode);
        let key_len = self.key_len.unwrap_or(self.key.len() as u16);
        out.extend_from_slice(&key_len.to_be_bytes());
        out.push(self.extras_len.unwrap_or(self.extras.len() as u8));
        out.push(self.data_type);
        out.extend_from_slice(&self.vbucket.to_be_bytes());
        let body_len = self.body_len.unwrap_or(body_len as u32);
        out.extend_from_slice(&body_len.to_be_bytes());
        out.extend_from_slice(&self.opaque.to_be_bytes());
        out.extend_from_slice(&cas.to_be_bytes());
        out.extend_from_slice(&self.extras);
        out.extend_from_slice(&self.key);
        out.extend_from_slice(&self.value);
    }
}

/// A binary noop with the sync opaque.
fn sync_packet() -> Vec<u8> {
    let mut out = Vec::new();
    Packet {
        opaque: SYNC_OPAQUE,
        ..parse_packet("noop").expect("noop parses")
    }
    .encode(0, &mut out);
    out
}

/// A complete response packet at the start of `buf`: (opcode, opaque, length).
fn response_at(buf: &[u8]) -> Option<(u8, u32, usize)> {
    if buf.len() < 24 || buf[0] != 0x81 {
        return None;
    }
    let body_len = u32::from_be_bytes(buf[8..12].try_into().ok()?) as usize;
    let opaque = u32::from_be_bytes(buf[12..16].try_into().ok()?);
    (buf.len() >= 24 + body_len).then_some((buf[1], opaque, 24 + body_len))
}

/// Decodes binary replies into the recorded form (see the module docs).
fn normalise_binary(reply: &[u8], cas_names: &mut CasNames) -> Vec<u8> {
    let mut out = String::new();
    let mut pos = 0;
    while let Some((opcode, opaque, len)) = response_at(&reply[pos..]) {
        let packet = &reply[pos..pos + len];
        pos += len;
        let key_len = usize::from(u16::from_be_bytes([packet[2], packet[3]]));
        let extras_len = usize::from(packet[4]);
        let status = u16::from_be_bytes([packet[6], packet[7]]);
        let cas = u64::from_be_bytes(packet[16..24].try_into().expect("8 bytes"));
        let body = &packet[24..];
        let extras = body.get(..extras_len).unwrap_or(body);
        let key = body.get(extras_len..extras_len + key_len).unwrap_or(b"");
        let value = body.get(extras_len + key_len..).unwrap_or(b"");
        if opcode == STAT && status == 0 && key_len > 0 {
            continue;
        }
        let cas = if cas == 0 {
            "0".to_owned()
        } else {
            cas_names.name(cas.to_string().as_bytes())
        };
        let _ = write!(
            out,
            "RES {} status={status:#06x} opaque={opaque} cas={cas}",
            opcode_name(opcode)
        );
        if packet[5] != 0 {
            let _ = write!(out, " datatype={}", packet[5]);
        }
        if !extras.is_empty() {
            let hex: String = extras.iter().map(|b| format!("{b:02x}")).collect();
            let _ = write!(out, " extras={hex}");
        }
        if !key.is_empty() {
            let _ = write!(out, " key={}", escape(key));
        }
        if opcode == VERSION && status == 0 {
            out.push_str(" value=VERSION");
        } else if !value.is_empty() {
            let _ = write!(out, " value={}", escape(value));
        }
        out.push('\n');
    }
    if pos < reply.len() {
        let _ = writeln!(out, "RAW {}", escape(&reply[pos..]));
    }
    out.into_bytes()
}

/// What a step got back, after normalisation.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Outcome {
    reply: Vec<u8>,
    closed: bool,
}

#[derive(Debug)]
struct Step {
    /// 1-based line numbers of the step's first and last send line.
    first_line: usize,
    last_line: usize,
    /// True for `>` and `B` steps (sync after sending), false for `~` and `b` steps.
    sync: bool,
    /// True for `B` and `b` steps.
    binary: bool,
    payload: Vec<Piece>,
    /// The send lines as written, for messages.
    source: String,
    recorded: Option<Outcome>,
}

#[derive(Debug)]
enum Action {
    Step(Step),
    SwitchTo(String),
    Reconnect,
    Sleep(Duration),
}

#[derive(Debug)]
struct Script {
    name: String,
    path: PathBuf,
    lines: Vec<String>,
    actions: Vec<Action>,
}

impl Script {
    fn steps(&self) -> impl Iterator<Item = &Step> {
        self.actions.iter().filter_map(|action| match action {
            Action::Step(step) => Some(step),
            _ => None,
        })
    }
}

/// Decodes escaped script text into pieces. `{{cas N}}` is allowed only when `allow_cas`.
fn unescape(text: &str, allow_cas: bool) -> Result<Vec<Piece>, String> {
    let mut pieces = Vec::new();
    let mut bytes = Vec::new();
    let raw = text.as_bytes();
    let mut i = 0;
    while i < raw.len() {
        match raw[i] {
            b'\\' => {
                let escaped = *raw.get(i + 1).ok_or("backslash at end of line")?;
                i += 2;
                match escaped {
                    b'r' => bytes.push(b'\r'),
                    b'n' => bytes.push(b'\n'),
                    b't' => bytes.push(b'\t'),
                    b'\\' => bytes.push(b'\\'),
                    b'x' => {
                        let hex = text.get(i..i + 2).ok_or("\\x needs two hex digits")?;
                        let value = u8::from_str_radix(hex, 16)
                            .map_err(|_| format!("bad escape \\x{hex}"))?;
                        bytes.push(value);
                        i += 2;
                    }
                    other => return Err(format!("unknown escape \\{}", other as char)),
                }
            }
            b'{' if raw.get(i + 1) == Some(&b'{') => {
                let close = text[i..].find("}}").ok_or("{{ without }}")? + i;
                let inner = &text[i + 2..close];
                i = close + 2;
                if let Some(number) = inner.strip_prefix("cas ") {
                    if !allow_cas {
                        return Err("{{cas N}} is only allowed in send lines".into());
                    }
                    let n: usize = number
                        .trim()
                        .parse()
                        .map_err(|_| format!("bad {{{{cas {number}}}}}"))?;
                    if n == 0 {
                        return Err("CAS references count from 1".into());
                    }
                    pieces.push(Piece::Bytes(std::mem::take(&mut bytes)));
                    pieces.push(Piece::Cas(n));
                } else {
                    let (count, repeated) = inner
                        .split_once('*')
                        .ok_or_else(|| format!("bad {{{{{inner}}}}}"))?;
                    let count: usize = count
                        .trim()
                        .parse()
                        .map_err(|_| format!("bad repeat count in {{{{{inner}}}}}"))?;
                    let unit = match unescape(repeated, false)?.as_slice() {
                        [Piece::Bytes(unit)] => unit.clone(),
                        _ => unreachable!("unescape without cas yields one piece"),
                    };
                    for _ in 0..count {
                        bytes.extend_from_slice(&unit);
                    }
                }
            }
            other => {
                bytes.push(other);
                i += 1;
            }
        }
    }
    pieces.push(Piece::Bytes(bytes));
    Ok(pieces)
}

/// Decodes recorded reply text, which never contains a CAS reference.
fn unescape_bytes(text: &str) -> Result<Vec<u8>, String> {
    match unescape(text, false)?.as_slice() {
        [Piece::Bytes(bytes)] => Ok(bytes.clone()),
        _ => unreachable!("unescape without cas yields one piece"),
    }
}

fn parse_script(path: &Path) -> Result<Script, String> {
    let text = fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let lines: Vec<String> = text.lines().map(str::to_owned).collect();
    let mut actions = Vec::new();
    // True while the last action is a step that may still take send or recorded lines.
    let mut step_open = false;
    let mut recording_open = false;
    for (index, line) in lines.iter().enumerate() {
        let number = index + 1;
        let error = |message: String| format!("{name}:{number}: {message}");
        let send = match line.as_bytes().first() {
            Some(b'>') => Some((true, false)),
            Some(b'~') => Some((false, false)),
            Some(b'B') => Some((true, true)),
            Some(b'b') => Some((false, true)),
            _ => None,
        };
        if let Some((sync, binary)) = send {
            let text = line[1..]
                .strip_prefix(' ')
                .ok_or_else(|| error("expected a space after the marker".into()))?;
            let pieces = if binary {
                vec![Piece::Packet(Box::new(parse_packet(text).map_err(error)?))]
            } else {
                unescape(text, true).map_err(error)?
            };
            if let (true, Some(Action::Step(step))) = (step_open, actions.last_mut()) {
                if step.sync == sync && step.binary == binary {
                    step.payload.extend(pieces);
                    step.last_line = number;
                    if binary {
                        step.source.push_str(" | ");
                    }
                    step.source.push_str(text);
                    continue;
                }
            }
            actions.push(Action::Step(Step {
                first_line: number,
                last_line: number,
                sync,
                binary,
                payload: pieces,
                source: text.to_owned(),
                recorded: None,
            }));
            step_open = true;
            recording_open = true;
            continue;
        }
        step_open = false;
        if line.starts_with('<') {
            let Some(Action::Step(step)) = actions.last_mut().filter(|_| recording_open) else {
                return Err(error("a recorded reply must follow a step".into()));
            };
            let recorded = step.recorded.get_or_insert(Outcome {
                reply: Vec::new(),
                closed: false,
            });
            if recorded.closed {
                return Err(error("nothing can follow <EOF>".into()));
            }
            match line.as_str() {
                "<" => {}
                "<EOF>" => recorded.closed = true,
                _ => {
                    let text = line
                        .strip_prefix("< ")
                        .ok_or_else(|| error("expected '< ', '<' or '<EOF>'".into()))?;
                    recorded.reply.extend(unescape_bytes(text).map_err(error)?);
                }
            }
            continue;
        }
        recording_open = false;
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let (word, argument) = trimmed.split_once(' ').unwrap_or((trimmed, ""));
        actions.push(match (word, argument.trim()) {
            ("conn", name) if !name.is_empty() => Action::SwitchTo(name.to_owned()),
            ("reconnect", "") => Action::Reconnect,
            ("sleep", ms) => Action::Sleep(Duration::from_millis(
                ms.parse().map_err(|_| error(format!("bad sleep {ms:?}")))?,
            )),
            _ => return Err(error(format!("unknown line {trimmed:?}"))),
        });
    }
    Ok(Script {
        name,
        path: path.to_owned(),
        lines,
        actions,
    })
}

fn load_corpus() -> Vec<Script> {
    let mut paths: Vec<PathBuf> = fs::read_dir(corpus_dir())
        .expect("read tests/corpus")
        .map(|entry| entry.expect("corpus entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "txt"))
        .collect();
    paths.sort();
    assert!(
        !paths.is_empty(),
        "no scripts in {}",
        corpus_dir().display()
    );
    paths
        .iter()
        .map(|path| parse_script(path).unwrap_or_else(|e| panic!("{e}")))
        .collect()
}

// ---------------------------------------------------------------------------------------
// Replies

/// Length of the data block announced by a `VALUE key flags bytes [cas]` line or a meta
/// `VA bytes [flags]` line.
fn value_block_len(line: &[u8]) -> Option<usize> {
    let line = line.strip_suffix(b"\n")?;
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let mut tokens = line.split(|&b| b == b' ');
    let bytes = match tokens.next()? {
        b"VALUE" => tokens.nth(2)?,
        b"VA" => tokens.next()?,
        _ => return None,
    };
    std::str::from_utf8(bytes).ok()?.parse().ok()
}

/// The reply codes of meta commands whose flags may carry a CAS.
const META_CODES: &[&[u8]] = &[b"HD", b"VA", b"EN", b"NF", b"NS", b"EX"];

/// A meta reply line with each CAS it returns (`c<digits>`, or `cas=<digits>` in an `ME`
/// line) replaced by its name; `None` for any other line.
fn normalise_meta_line(body: &[u8], cas_names: &mut CasNames) -> Option<Vec<u8>> {
    let tokens: Vec<&[u8]> = body.split(|&b| b == b' ').collect();
    let is_digits = |s: &[u8]| !s.is_empty() && s.iter().all(u8::is_ascii_digit);
    let prefix: &[u8] = match tokens[0] {
        code if META_CODES.contains(&code) => b"c",
        b"ME" => b"cas=",
        _ => return None,
    };
    let mut out = Vec::with_capacity(body.len());
    for (i, token) in tokens.iter().enumerate() {
        if i > 0 {
            out.push(b' ');
        }
        match token.strip_prefix(prefix) {
            // 0 is what a meta reply returns for "no CAS": kept as it is.
            Some(cas) if i > 0 && is_digits(cas) && cas != b"0" => {
                out.extend_from_slice(prefix);
                out.extend_from_slice(cas_names.name(cas).as_bytes());
            }
            _ => out.extend_from_slice(token),
        }
    }
    Some(out)
}

/// One unit of a reply: a protocol line, or a line with its data block.
struct Unit {
    start: usize,
    end: usize,
    is_version: bool,
}

/// Splits the complete units at the front of `buf`; returns them and where they end.
fn split_units(buf: &[u8]) -> (Vec<Unit>, usize) {
    let mut units = Vec::new();
    let mut pos = 0;
    while let Some(newline) = buf[pos..].iter().position(|&b| b == b'\n') {
        let line_end = pos + newline + 1;
        let line = &buf[pos..line_end];
        let end = match value_block_len(line) {
            Some(len) if line_end + len + 2 <= buf.len() => line_end + len + 2,
            Some(_) => break,
            None => line_end,
        };
        units.push(Unit {
            start: pos,
            end,
            is_version: line.starts_with(b"VERSION"),
        });
        pos = end;
    }
    (units, pos)
}

/// CAS values seen during one run of a script, in order of first appearance.
#[derive(Default)]
struct CasNames {
    seen: Vec<Vec<u8>>,
}

impl CasNames {
    fn name(&mut self, cas: &[u8]) -> String {
        let index = match self.seen.iter().position(|seen| seen == cas) {
            Some(index) => index,
            None => {
                self.seen.push(cas.to_vec());
                self.seen.len() - 1
            }
        };
        format!("#{}", index + 1)
    }
}

/// Applies the normalisation described in the module docs.
fn normalise(reply: &[u8], cas_names: &mut CasNames) -> Vec<u8> {
    let (units, complete) = split_units(reply);
    let mut out = Vec::with_capacity(reply.len());
    for unit in &units {
        let bytes = &reply[unit.start..unit.end];
        let line_len = bytes
            .iter()
            .position(|&b| b == b'\n')
            .map_or(bytes.len(), |p| p + 1);
        let (line, rest) = bytes.split_at(line_len);
        let body = line.strip_suffix(b"\n").unwrap_or(line);
        let body = body.strip_suffix(b"\r").unwrap_or(body);
        let ending = &line[body.len()..];
        if body.starts_with(b"STAT ") {
            continue;
        }
        if unit.is_version && body.starts_with(b"VERSION ") {
            out.extend_from_slice(b"VERSION");
            out.extend_from_slice(ending);
            continue;
        }
        if let Some(meta) = normalise_meta_line(body, cas_names) {
            out.extend_from_slice(&meta);
            out.extend_from_slice(ending);
            out.extend_from_slice(rest);
            continue;
        }
        let tokens: Vec<&[u8]> = body.split(|&b| b == b' ').collect();
        if value_block_len(line).is_some() && tokens.len() == 5 {
            out.extend_from_slice(&tokens[..4].join(&b' '));
            out.push(b' ');
            out.extend_from_slice(cas_names.name(tokens[4]).as_bytes());
            out.extend_from_slice(ending);
            out.extend_from_slice(rest);
            continue;
        }
        out.extend_from_slice(bytes);
    }
    out.extend_from_slice(&reply[complete..]);
    out
}

/// How many `version` commands a payload contains, each of which adds a VERSION line.
fn version_commands(payload: &[u8]) -> usize {
    payload
        .split(|&b| b == b'\n')
        .filter(|line| {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            line.split(|&b| b == b' ').next() == Some(b"version")
        })
        .count()
}

// ---------------------------------------------------------------------------------------
// Running scripts

struct Connection {
    stream: TcpStream,
    closed: bool,
}

impl Connection {
    fn open(port: u16) -> Result<Connection, String> {
        let stream =
            TcpStream::connect(("127.0.0.1", port)).map_err(|e| format!("connect: {e}"))?;
        stream.set_nodelay(true).map_err(|e| e.to_string())?;
        Ok(Connection {
            stream,
            closed: false,
        })
    }

    /// One read with the given timeout: `Some(n)` bytes (0 = closed), `None` on timeout.
    fn read_some(&mut self, buf: &mut Vec<u8>, timeout: Duration) -> Result<Option<usize>, String> {
        self.stream
            .set_read_timeout(Some(timeout.max(Duration::from_millis(1))))
            .map_err(|e| e.to_string())?;
        let mut chunk = [0u8; 64 * 1024];
        loop {
            return match self.stream.read(&mut chunk) {
                Ok(n) => {
                    buf.extend_from_slice(&chunk[..n]);
                    Ok(Some(n))
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    Ok(None)
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted
                    ) =>
                {
                    Ok(Some(0))
                }
                Err(e) => Err(format!("read: {e}")),
            };
        }
    }

    /// Reads until the reply ends with the `expected`-th VERSION line, or the server closes.
    fn read_synced(&mut self, expected: usize) -> Result<Vec<u8>, String> {
        let deadline = Instant::now() + STEP_TIMEOUT;
        let mut buf = Vec::new();
        loop {
            let (units, complete) = split_units(&buf);
            let versions: Vec<&Unit> = units.iter().filter(|u| u.is_version).collect();
            if versions.len() >= expected && complete == buf.len() {
                let sync = versions[versions.len() - 1];
                if sync.end == buf.len() {
                    buf.truncate(sync.start);
                    return Ok(buf);
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(format!(
                    "no sync reply within {STEP_TIMEOUT:?}; received {}",
                    escape(&buf)
                ));
            }
            if self.read_some(&mut buf, left)? == Some(0) {
                self.closed = true;
                return Ok(buf);
            }
        }
    }

    /// Reads until the replies end with the reply to the sync noop, or the server closes.
    fn read_synced_binary(&mut self) -> Result<Vec<u8>, String> {
        let deadline = Instant::now() + STEP_TIMEOUT;
        let mut buf = Vec::new();
        loop {
            let mut pos = 0;
            while let Some((opcode, opaque, len)) = response_at(&buf[pos..]) {
                if opcode == NOOP && opaque == SYNC_OPAQUE && pos + len == buf.len() {
                    buf.truncate(pos);
                    return Ok(buf);
                }
                pos += len;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(format!(
                    "no sync reply within {STEP_TIMEOUT:?}; received {}",
                    escape(&buf)
                ));
            }
            if self.read_some(&mut buf, left)? == Some(0) {
                self.closed = true;
                return Ok(buf);
            }
        }
    }

    /// Reads until the server closes the connection or stays silent for [`SILENCE`].
    fn read_until_quiet(&mut self) -> Result<Vec<u8>, String> {
        let deadline = Instant::now() + STEP_TIMEOUT;
        let mut buf = Vec::new();
        while Instant::now() < deadline {
            match self.read_some(&mut buf, SILENCE)? {
                Some(0) => {
                    self.closed = true;
                    break;
                }
                Some(_) => {}
                None => break,
            }
        }
        Ok(buf)
    }
}

/// The outcomes of one script on one server; stops at the first harness error.
struct Run {
    outcomes: Vec<Outcome>,
    error: Option<String>,
}

fn flush(port: u16) {
    let mut client = RawClient::connect(port);
    assert_eq!(
        client.request(b"flush_all\r\n", b"\r\n"),
        b"OK\r\n",
        "flush before script"
    );
}

fn run_script(script: &Script, port: u16) -> Run {
    let mut run = Run {
        outcomes: Vec::new(),
        error: None,
    };
    if let Err(error) = run_actions(script, port, &mut run.outcomes) {
        run.error = Some(error);
    }
    run
}

fn run_actions(script: &Script, port: u16, outcomes: &mut Vec<Outcome>) -> Result<(), String> {
    let mut connections: HashMap<String, Connection> = HashMap::new();
    let mut current = "main".to_owned();
    let mut cas_names = CasNames::default();
    for action in &script.actions {
        match action {
            Action::SwitchTo(name) => current = name.clone(),
            Action::Reconnect => {
                connections.insert(current.clone(), Connection::open(port)?);
            }
            Action::Sleep(duration) => thread::sleep(*duration),
            Action::Step(step) => {
                let at = |e: String| format!("line {}: {e}", step.first_line);
                let connection = match connections.entry(current.clone()) {
                    std::collections::hash_map::Entry::Occupied(entry) => entry.into_mut(),
                    std::collections::hash_map::Entry::Vacant(entry) => {
                        entry.insert(Connection::open(port).map_err(at)?)
                    }
                };
                if connection.closed {
                    return Err(at(
                        "sends on a connection the server closed (add `reconnect`)".into(),
                    ));
                }
                let mut payload = Vec::new();
                for piece in &step.payload {
                    match piece {
                        Piece::Bytes(bytes) => payload.extend_from_slice(bytes),
                        Piece::Cas(n) => {
                            let cas = cas_names.seen.get(n - 1).ok_or_else(|| {
                                at(format!("{{{{cas {n}}}}} used before #{n} appeared"))
                            })?;
                            payload.extend_from_slice(cas);
                        }
                        Piece::Packet(packet) => {
                            let cas = match packet.cas {
                                CasField::Number(cas) => cas,
                                CasField::Seen(n) => cas_names
                                    .seen
                                    .get(n - 1)
                                    .and_then(|cas| std::str::from_utf8(cas).ok()?.parse().ok())
                                    .ok_or_else(|| {
                                        at(format!("cas=#{n} used before #{n} appeared"))
                                    })?,
                            };
                            packet.encode(cas, &mut payload);
                        }
                    }
                }
                let expected_versions = version_commands(&payload) + 1;
                if step.sync {
                    if step.binary {
                        payload.extend_from_slice(&sync_packet());
                    } else {
                        payload.extend_from_slice(SYNC);
                    }
                }
                let sent = connection.stream.write_all(&payload);
                let reply = match (sent, step.sync, step.binary) {
                    (Ok(()), true, false) => {
                        connection.read_synced(expected_versions).map_err(at)?
                    }
                    (Ok(()), true, true) => connection.read_synced_binary().map_err(at)?,
                    // The server may close early (e.g. on an oversized line), making the write
                    // fail; whatever it said before closing is still there to read.
                    _ => connection.read_until_quiet().map_err(at)?,
                };
                let reply = if step.binary {
                    normalise_binary(&reply, &mut cas_names)
                } else {
                    normalise(&reply, &mut cas_names)
                };
                outcomes.push(Outcome {
                    reply,
                    closed: connection.closed,
                });
            }
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Recording and comparing

/// Renders an outcome as `<` lines.
fn render_outcome(outcome: &Outcome) -> Vec<String> {
    let mut lines = Vec::new();
    if outcome.reply.is_empty() && !outcome.closed {
        lines.push("<".to_owned());
    }
    for chunk in outcome.reply.split_inclusive(|&b| b == b'\n') {
        lines.push(format!("< {}", render_bytes(chunk)));
    }
    if outcome.closed {
        lines.push("<EOF>".to_owned());
    }
    lines
}

/// Escapes bytes for a recorded line, so that [`unescape_bytes`] gives them back.
fn render_bytes(bytes: &[u8]) -> String {
    let mut out = String::new();
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if let Some(character) = printable_utf8_at(&bytes[i..]) {
            out.push(character);
            i += character.len_utf8();
            continue;
        }
        let run = bytes[i..].iter().take_while(|&&c| c == b).count();
        let text = match b {
            b'\r' => "\\r".to_owned(),
            b'\n' => "\\n".to_owned(),
            b'\t' => "\\t".to_owned(),
            b'\\' => "\\\\".to_owned(),
            // '{' would start a macro, and a trailing space would be invisible.
            b'{' | b'}' => format!("\\x{b:02x}"),
            b' ' if i + 1 == bytes.len() => "\\x20".to_owned(),
            0x20..=0x7e => (b as char).to_string(),
            _ => format!("\\x{b:02x}"),
        };
        if run >= RUN_LENGTH_THRESHOLD {
            let _ = write!(out, "{{{{{run}*{text}}}}}");
            i += run;
        } else {
            out.push_str(&text);
            i += 1;
        }
    }
    out
}

/// The printable non-ASCII character that `bytes` starts with, if any.
fn printable_utf8_at(bytes: &[u8]) -> Option<char> {
    let len = match bytes.first()? {
        0xc2..=0xdf => 2,
        0xe0..=0xef => 3,
        0xf0..=0xf4 => 4,
        _ => return None,
    };
    let character = std::str::from_utf8(bytes.get(..len)?)
        .ok()?
        .chars()
        .next()?;
    (!character.is_control()).then_some(character)
}

/// Rewrites `script`'s file with `outcomes` as its recorded replies.
fn record(script: &Script, outcomes: &[Outcome]) {
    let mut after_line: HashMap<usize, &Outcome> = HashMap::new();
    for (step, outcome) in script.steps().zip(outcomes) {
        after_line.insert(step.last_line, outcome);
    }
    let mut text = String::new();
    for (index, line) in script.lines.iter().enumerate() {
        if line.starts_with('<') {
            continue;
        }
        text.push_str(line);
        text.push('\n');
        if let Some(outcome) = after_line.get(&(index + 1)) {
            for rendered in render_outcome(outcome) {
                text.push_str(&rendered);
                text.push('\n');
            }
        }
    }
    fs::write(&script.path, text).expect("write recorded script");
}

fn describe(outcome: Option<&Outcome>) -> String {
    match outcome {
        None => "(step not reached)".to_owned(),
        Some(outcome) => format!(
            "{}{}",
            escape(&outcome.reply),
            if outcome.closed { " <EOF>" } else { "" }
        ),
    }
}

/// Compares the runs of one script; returns a description of the first difference.
fn compare(
    script: &Script,
    reference: Option<&Run>,
    target: &Run,
    target_name: &str,
) -> Option<String> {
    for (index, step) in script.steps().enumerate() {
        let header = format!(
            "{} step {} (line {}): {}{}",
            script.name,
            index + 1,
            step.first_line,
            match (step.sync, step.binary) {
                (true, false) => "> ",
                (false, false) => "~ ",
                (true, true) => "B ",
                (false, true) => "b ",
            },
            step.source
        );
        let got = target.outcomes.get(index);
        if let Some(reference) = reference {
            let expected = reference.outcomes.get(index);
            if let (Some(expected), Some(recorded)) = (expected, &step.recorded) {
                if expected != recorded {
                    return Some(format!(
                        "{header}\n  memcached now: {}\n  recorded:      {}\n  (the corpus is stale or timing-dependent; re-record with RAT_DIFF_RECORD=1)",
                        describe(Some(expected)),
                        describe(Some(recorded))
                    ));
                }
            }
            if expected.is_none() && reference.error.is_some() {
                return Some(format!(
                    "{header}\n  memcached run failed: {}",
                    reference.error.as_deref().unwrap_or("")
                ));
            }
            if expected != got {
                return Some(format!(
                    "{header}\n  memcached:     {}\n  {target_name:<14} {}{}",
                    describe(expected),
                    describe(got),
                    target
                        .error
                        .as_ref()
                        .map(|e| format!("\n  ({target_name} run failed: {e})"))
                        .unwrap_or_default()
                ));
            }
        } else if let Some(recorded) = &step.recorded {
            if Some(recorded) != got {
                return Some(format!(
                    "{header}\n  recorded:      {}\n  {target_name:<14} {}{}",
                    describe(Some(recorded)),
                    describe(got),
                    target
                        .error
                        .as_ref()
                        .map(|e| format!("\n  ({target_name} run failed: {e})"))
                        .unwrap_or_default()
                ));
            }
        }
    }
    target
        .error
        .as_ref()
        .map(|e| format!("{}: {target_name} run failed: {e}", script.name))
}

#[test]
fn differential_corpus() {
    let scripts = load_corpus();
    let reference = start_memcached(SERVER_ARGS);
    if std::env::var("RAT_DIFF_RECORD").is_ok_and(|v| v == "1") {
        let reference = reference.expect("RAT_DIFF_RECORD=1 needs memcached installed");
        let mut failures = Vec::new();
        for script in &scripts {
            flush(reference.port());
            let run = run_script(script, reference.port());
            match run.error {
                Some(error) => {
                    failures.push(format!("{}: memcached run failed: {error}", script.name))
                }
                None => record(script, &run.outcomes),
            }
        }
        assert!(
            failures.is_empty(),
            "not recorded:\n{}",
            failures.join("\n")
        );
        return;
    }
    if reference.is_none() {
        eprintln!("memcached not found: checking against the recorded replies only");
    }
    let target = start_server_under_test(SERVER_ARGS);
    let started = Instant::now();
    let mut failures = Vec::new();
    for script in &scripts {
        let script_started = Instant::now();
        let (reference_run, target_run) = thread::scope(|scope| {
            let reference_run = reference.as_ref().map(|server: &Server| {
                scope.spawn(move || {
                    flush(server.port());
                    run_script(script, server.port())
                })
            });
            flush(target.port());
            let target_run = run_script(script, target.port());
            (
                reference_run.map(|handle| handle.join().expect("reference thread")),
                target_run,
            )
        });
        if let Some(failure) = compare(script, reference_run.as_ref(), &target_run, target.name()) {
            failures.push(failure);
        }
        eprintln!(
            "{:<28} {:>6} ms",
            script.name,
            script_started.elapsed().as_millis()
        );
    }
    eprintln!(
        "{} scripts in {:.1} s",
        scripts.len(),
        started.elapsed().as_secs_f64()
    );
    assert!(
        failures.is_empty(),
        "{} of {} scripts differ:\n\n{}",
        failures.len(),
        scripts.len(),
        failures.join("\n\n")
    );
}

// ---------------------------------------------------------------------------------------
// stats

/// Sends a `stats` command and checks its reply is `STAT name value` lines then `END`.
fn stats_map(client: &mut RawClient, command: &str) -> HashMap<String, String> {
    let reply = client.request(format!("{command}\r\n").as_bytes(), b"END\r\n");
    let text =
        String::from_utf8(reply).unwrap_or_else(|e| panic!("{command}: reply is not UTF-8: {e}"));
    let mut lines: Vec<&str> = text.split("\r\n").collect();
    assert_eq!(lines.pop(), Some(""), "{command}: reply must end in \\r\\n");
    assert_eq!(
        lines.pop(),
        Some("END"),
        "{command}: reply must end with END"
    );
    let mut map = HashMap::new();
    for line in lines {
        let tokens: Vec<&str> = line.split(' ').collect();
        assert!(
            tokens.len() == 3
                && tokens[0] == "STAT"
                && !tokens[1].is_empty()
                && !tokens[2].is_empty(),
            "{command}: malformed line {line:?}"
        );
        assert!(
            map.insert(tokens[1].to_owned(), tokens[2].to_owned())
                .is_none(),
            "{command}: {} appears twice",
            tokens[1]
        );
    }
    map
}

/// Sends a one-line command and checks its one-line reply.
fn request(client: &mut RawClient, command: &[u8], reply: &[u8]) {
    assert_eq!(
        client.request(command, b"\r\n"),
        reply,
        "{}",
        escape(command)
    );
}

fn counter(stats: &HashMap<String, String>, name: &str) -> u64 {
    let value = stats
        .get(name)
        .unwrap_or_else(|| panic!("stats lacks {name}"));
    value
        .parse()
        .unwrap_or_else(|_| panic!("stat {name} = {value:?} is not a counter"))
}

/// Checks that each named counter moved by exactly the given amount between two snapshots.
fn assert_moved(
    before: &HashMap<String, String>,
    after: &HashMap<String, String>,
    moves: &[(&str, u64)],
    what: &str,
) {
    for &(name, delta) in moves {
        assert_eq!(
            counter(after, name).wrapping_sub(counter(before, name)),
            delta,
            "{name} after {what}"
        );
    }
}

const GENERAL_STATS: &[&str] = &[
    "pid",
    "uptime",
    "time",
    "version",
    "curr_connections",
    "total_connections",
    "cmd_get",
    "cmd_set",
    "cmd_flush",
    "cmd_touch",
    "get_hits",
    "get_misses",
    "get_expired",
    "get_flushed",
    "delete_hits",
    "delete_misses",
    "incr_hits",
    "incr_misses",
    "decr_hits",
    "decr_misses",
    "cas_hits",
    "cas_misses",
    "cas_badval",
    "touch_hits",
    "touch_misses",
    "curr_items",
    "total_items",
    "bytes",
    "limit_maxbytes",
    "evictions",
    "expired_unfetched",
    "evicted_unfetched",
    "threads",
];

#[test]
fn stats_replies_are_well_formed() {
    // Its own server: the counters must not see the traffic of the differential test.
    let server = start_server_under_test(SERVER_ARGS);
    let mut client = server.client();

    let fresh = stats_map(&mut client, "stats");
    for name in GENERAL_STATS {
        assert!(fresh.contains_key(*name), "stats lacks {name}");
    }
    assert_eq!(counter(&fresh, "pid"), u64::from(server.pid()));
    assert_eq!(counter(&fresh, "threads"), 2);
    assert_eq!(counter(&fresh, "limit_maxbytes"), 64 * 1024 * 1024);
    assert_eq!(counter(&fresh, "curr_items"), 0);
    assert!(!fresh["version"].is_empty());
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    assert!(
        counter(&fresh, "time").abs_diff(now) <= 5,
        "stats time {} vs now {now}",
        fresh["time"]
    );
    assert!(counter(&fresh, "uptime") < 60);

    request(&mut client, b"set a 0 0 1\r\n1\r\n", b"STORED\r\n");
    request(&mut client, b"set b 0 0 1\r\n2\r\n", b"STORED\r\n");
    let after_sets = stats_map(&mut client, "stats");
    assert_moved(
        &fresh,
        &after_sets,
        &[("cmd_set", 2), ("total_items", 2), ("curr_items", 2)],
        "two sets",
    );
    assert!(counter(&after_sets, "bytes") > 0);

    client.send(b"get a b c\r\n");
    client.read_until(b"END\r\n");
    let after_get = stats_map(&mut client, "stats");
    assert_moved(
        &after_sets,
        &after_get,
        &[("cmd_get", 3), ("get_hits", 2), ("get_misses", 1)],
        "get a b c",
    );

    // memcached counts a set whose data block is bad before it checks the block.
    request(
        &mut client,
        b"set bad 0 0 1\r\nab\n",
        b"CLIENT_ERROR bad data chunk\r\n",
    );
    let after_bad_chunk = stats_map(&mut client, "stats");
    assert_moved(
        &after_get,
        &after_bad_chunk,
        &[("cmd_set", 1)],
        "a set with a bad data chunk",
    );

    request(&mut client, b"delete a\r\n", b"DELETED\r\n");
    request(&mut client, b"delete a\r\n", b"NOT_FOUND\r\n");
    request(&mut client, b"incr b 5\r\n", b"7\r\n");
    request(&mut client, b"incr zz 5\r\n", b"NOT_FOUND\r\n");
    request(&mut client, b"decr b 1\r\n", b"6\r\n");
    request(&mut client, b"decr zz 1\r\n", b"NOT_FOUND\r\n");
    request(&mut client, b"touch b 100\r\n", b"TOUCHED\r\n");
    request(&mut client, b"touch zz 100\r\n", b"NOT_FOUND\r\n");
    let after_updates = stats_map(&mut client, "stats");
    assert_moved(
        &after_bad_chunk,
        &after_updates,
        &[
            ("delete_hits", 1),
            ("delete_misses", 1),
            ("incr_hits", 1),
            ("incr_misses", 1),
            ("decr_hits", 1),
            ("decr_misses", 1),
            ("cmd_touch", 2),
            ("touch_hits", 1),
            ("touch_misses", 1),
            ("cmd_get", 0),
            ("cmd_set", 0),
        ],
        "delete, incr, decr and touch",
    );

    client.send(b"gets b\r\n");
    let header = String::from_utf8(client.read_line()).expect("gets header");
    let cas = header
        .split_whitespace()
        .nth(4)
        .expect("gets returns a CAS")
        .to_owned();
    client.read_until(b"END\r\n");
    let before_cas = stats_map(&mut client, "stats");
    request(
        &mut client,
        format!("cas b 0 0 1 {cas}\r\n9\r\n").as_bytes(),
        b"STORED\r\n",
    );
    request(
        &mut client,
        format!("cas b 0 0 1 {cas}\r\n8\r\n").as_bytes(),
        b"EXISTS\r\n",
    );
    request(&mut client, b"cas zz 0 0 1 1\r\n8\r\n", b"NOT_FOUND\r\n");
    let after_cas = stats_map(&mut client, "stats");
    assert_moved(
        &before_cas,
        &after_cas,
        &[
            ("cas_hits", 1),
            ("cas_badval", 1),
            ("cas_misses", 1),
            ("cmd_set", 3),
        ],
        "three cas",
    );

    request(&mut client, b"set gone 0 -1 1\r\nx\r\n", b"STORED\r\n");
    client.send(b"get gone\r\n");
    assert_eq!(client.read_until(b"END\r\n"), b"END\r\n");
    let after_expired = stats_map(&mut client, "stats");
    assert_moved(
        &after_cas,
        &after_expired,
        &[("get_expired", 1), ("get_misses", 1)],
        "get of an expired key",
    );

    request(&mut client, b"flush_all\r\n", b"OK\r\n");
    client.send(b"get b\r\n");
    assert_eq!(client.read_until(b"END\r\n"), b"END\r\n");
    let after_flush = stats_map(&mut client, "stats");
    assert_moved(
        &after_expired,
        &after_flush,
        &[("cmd_flush", 1), ("get_flushed", 1), ("get_misses", 1)],
        "flush_all and a get",
    );

    let mut second = server.client();
    second.request(b"version\r\n", b"\r\n");
    let with_second = stats_map(&mut client, "stats");
    assert_moved(
        &after_flush,
        &with_second,
        &[("curr_connections", 1), ("total_connections", 1)],
        "a second connection",
    );
    drop(second);

    request(&mut client, b"set c 0 0 3\r\nabc\r\n", b"STORED\r\n");
    for command in [
        "stats settings",
        "stats items",
        "stats slabs",
        "stats conns",
    ] {
        let stats = stats_map(&mut client, command);
        assert!(
            !stats.is_empty(),
            "{command} is empty although an item is stored"
        );
    }
    let settings = stats_map(&mut client, "stats settings");
    assert_eq!(
        settings.get("maxbytes").map(String::as_str),
        Some("67108864"),
        "stats settings maxbytes"
    );
    assert_eq!(
        settings.get("num_threads").map(String::as_str),
        Some("2"),
        "stats settings num_threads"
    );
}

/// How memcached 1.6.18 counts meta commands: `mg` as a get, or as a touch when it sets
/// a TTL on a hit; `ms` as a set (a bad data chunk included) and, with a CAS, as a cas;
/// `md` and `ma` as delete and incr/decr (an auto-created counter counts as neither);
/// `cmd_meta` only for `me`.
const META_COUNTER_MOVES: &[(&str, u64)] = &[
    ("cmd_get", 7),
    ("get_hits", 4),
    ("get_misses", 3),
    ("get_expired", 1),
    ("cmd_touch", 1),
    ("touch_hits", 1),
    ("touch_misses", 0),
    ("cmd_set", 7),
    ("cas_hits", 0),
    ("cas_misses", 1),
    ("cas_badval", 1),
    ("store_too_large", 1),
    ("cmd_meta", 2),
    ("delete_hits", 1),
    ("delete_misses", 2),
    ("incr_hits", 2),
    ("incr_misses", 1),
    ("decr_hits", 1),
    ("decr_misses", 1),
    ("total_items", 5),
];

/// Runs a script of meta commands on a fresh connection and returns the counter moves.
fn meta_counter_moves(server: &Server) -> HashMap<String, u64> {
    let mut client = server.client();
    request(&mut client, b"flush_all\r\n", b"OK\r\n");
    let before = stats_map(&mut client, "stats");
    let mut script = b"mg a v\r\nmg a T10\r\nms a 1\r\n1\r\nmg a v\r\nmg a T10 v\r\n\
mg viv N0\r\nmg viv N0\r\nme a\r\nme zz\r\nms c 1 C1\r\n1\r\nms a 1 C1\r\n1\r\nmg a c\r\n\
ms a 1 MA\r\nx\r\nms a 1 ME\r\nx\r\nms bad 1\r\nxyz\r\nmd a C1\r\nmd a I\r\nmd a\r\nmd a\r\n\
ma n\r\nma n MD\r\nma n N0\r\nma n\r\nma n MD\r\nma n C1\r\nma n D1 q\r\n\
ms e 1 T-1\r\nx\r\nmg e\r\nms big 2000000\r\n"
        .to_vec();
    script.resize(script.len() + 2_000_000, b'x');
    script.extend_from_slice(b"\r\nmn\r\n");
    client.send(&script);
    client.read_until(b"MN\r\n");
    let after = stats_map(&mut client, "stats");
    META_COUNTER_MOVES
        .iter()
        .map(|&(name, _)| {
            let moved = counter(&after, name).wrapping_sub(counter(&before, name));
            (name.to_owned(), moved)
        })
        .collect()
}

#[test]
fn meta_commands_move_counters_as_memcached_does() {
    let expected: HashMap<String, u64> = META_COUNTER_MOVES
        .iter()
        .map(|&(name, moved)| (name.to_owned(), moved))
        .collect();
    // The table is memcached's own behaviour: check it there too when it is installed.
    if let Some(reference) = start_memcached(SERVER_ARGS) {
        assert_eq!(meta_counter_moves(&reference), expected, "memcached");
    }
    let target = start_server_under_test(SERVER_ARGS);
    assert_eq!(meta_counter_moves(&target), expected, "{}", target.name());
}
