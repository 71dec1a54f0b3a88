//! A server that speaks just enough of memcached's three protocols (classic text, meta
//! text, binary) to be benchmarked, and does no work: every key of a get (`get`, `mg`, the
//! binary get family) is a hit with the same fixed value, every storage command succeeds
//! (`STORED`, `HD`, binary status 0), nothing is stored. Like memcached, it tells a binary
//! request from a text line by its first byte, so one connection may mix them.
//!
//! Its throughput is the ceiling that loopback networking, the kernel's socket path and the
//! load generator allow on a given machine: a real server can approach it but not pass it,
//! so "percent of canned" says how much of the remaining cost is the server's own.
//!
//! The shape is the one a real server would have, kept small: the main thread accepts and
//! deals connections round-robin to `threads` worker threads, each with its own `mio` poll
//! and its connections in a `slab`. A worker reads what arrived, answers every complete
//! command into one output buffer, and writes it with one call.

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token, Waker};
use slab::Slab;
use std::io::{self, Read, Write};
use std::net::TcpListener;
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::Arc;

/// The token of each worker's waker; connections use their slab index.
const WAKER: Token = Token(usize::MAX);
/// Largest data block accepted; larger storage commands close the connection.
const MAX_DATA: usize = 16 * 1024 * 1024;
/// Wait before accepting again after an accept failed (pending clients stay queued).
const ACCEPT_RETRY: std::time::Duration = std::time::Duration::from_millis(50);

mod binary;

/// The replies that never change.
pub struct CannedReplies {
    /// The value every get returns.
    value: Vec<u8>,
    /// `" 0 <size>\r\n<value>\r\n"`: what follows `VALUE <key>` for `get`.
    get_tail: Vec<u8>,
    /// The same with a CAS unique, for `gets`.
    gets_tail: Vec<u8>,
    /// `"VA <size>"`: the start of a meta hit, before any returned flags.
    meta_hit: Vec<u8>,
}

impl CannedReplies {
    /// Replies whose value is `value_size` bytes of `x`.
    pub fn new(value_size: usize) -> CannedReplies {
        let value = vec![b'x'; value_size];
        let tail = |header: String| {
            let mut tail = header.into_bytes();
            tail.extend_from_slice(&value);
            tail.extend_from_slice(b"\r\n");
            tail
        };
        CannedReplies {
            get_tail: tail(format!(" 0 {value_size}\r\n")),
            gets_tail: tail(format!(" 0 {value_size} 1\r\n")),
            meta_hit: format!("VA {value_size}").into_bytes(),
            value,
        }
    }
}

/// What [`answer`] did with a buffer of requests.
#[derive(Debug, PartialEq, Eq)]
pub struct Answered {
    /// Bytes of complete commands handled; the rest waits for more input.
    pub consumed: usize,
    /// The client sent `quit` or a command the server will not buffer: close after writing.
    pub close: bool,
}

fn parse_size(field: Option<&[u8]>) -> Option<usize> {
    let field = field?;
    if field.is_empty() || field.len() > 10 || !field.iter().all(u8::is_ascii_digit) {
        return None;
    }
    field.iter().try_fold(0usize, |n, &d| {
        n.checked_mul(10)?.checked_add(usize::from(d - b'0'))
    })
}

/// What one command at the front of the input came to.
enum Step {
    /// Handled, taking this many bytes.
    Done(usize),
    /// Handled, taking this many bytes; close the connection after the replies.
    Close(usize),
    /// Not all there yet.
    Incomplete,
}

/// Answers every complete command at the front of `input` into `output`.
///
/// A command starting with the binary protocol's request magic byte is a binary packet;
/// anything else is a text line, classic or meta. Clients may mix them on one connection,
/// as memcached allows.
pub fn answer(replies: &CannedReplies, input: &[u8], output: &mut Vec<u8>) -> Answered {
    let mut position = 0;
    while position < input.len() {
        let rest = &input[position..];
        let step = if rest[0] == binary::REQUEST_MAGIC {
            binary::answer(replies, rest, output)
        } else {
            answer_text(replies, rest, output)
        };
        match step {
            Step::Done(consumed) => position += consumed,
            Step::Close(consumed) => {
                return Answered {
                    consumed: position + consumed,
                    close: true,
                }
            }
            Step::Incomplete => break,
        }
    }
    Answered {
        consumed: position,
        close: false,
    }
}

/// Appends the flags a meta command asked to have returned: `k` (the key) and `O` (the
/// opaque token) are echoed, as memcached does; every other flag changes nothing here.
fn meta_return_flags<'a>(key: &[u8], flags: impl Iterator<Item = &'a [u8]>, output: &mut Vec<u8>) {
    for flag in flags {
        match flag.first() {
            Some(b'k') => {
                output.extend_from_slice(b" k");
                output.extend_from_slice(key);
            }
            Some(b'O') => {
                output.push(b' ');
                output.extend_from_slice(flag);
            }
            _ => {}
        }
    }
}

/// Answers the text command (classic or meta) at the front of `input`.
fn answer_text(replies: &CannedReplies, input: &[u8], output: &mut Vec<u8>) -> Step {
    let Some(newline) = input.iter().position(|&b| b == b'\n') else {
        return Step::Incomplete;
    };
    let line_end = newline + 1;
    let line = &input[..newline];
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let mut tokens = line.split(|&b| b == b' ').filter(|t| !t.is_empty());
    // A storage command's data block: `Some(size)` once the command line is understood.
    let mut data = None;
    match tokens.next() {
        Some(command @ (b"get" | b"gets")) => {
            let tail = if command == b"get" {
                &replies.get_tail
            } else {
                &replies.gets_tail
            };
            for key in tokens {
                output.extend_from_slice(b"VALUE ");
                output.extend_from_slice(key);
                output.extend_from_slice(tail);
            }
            output.extend_from_slice(b"END\r\n");
        }
        Some(b"set" | b"add" | b"replace" | b"append" | b"prepend" | b"cas") => {
            // <command> <key> <flags> <exptime> <bytes> [cas] [noreply]
            let Some(size) = parse_size(tokens.nth(3)) else {
                output.extend_from_slice(b"CLIENT_ERROR bad command line format\r\n");
                return Step::Done(line_end);
            };
            if let Err(step) = data_block(input, line_end, size, output) {
                return step;
            }
            data = Some(size);
            if !line.ends_with(b" noreply") {
                output.extend_from_slice(b"STORED\r\n");
            }
        }
        Some(b"mg") => {
            let Some(key) = tokens.next() else {
                output.extend_from_slice(b"CLIENT_ERROR bad command line format\r\n");
                return Step::Done(line_end);
            };
            let flags = tokens.clone();
            if tokens.any(|flag| flag == b"v") {
                output.extend_from_slice(&replies.meta_hit);
                meta_return_flags(key, flags, output);
                output.extend_from_slice(b"\r\n");
                output.extend_from_slice(&replies.value);
                output.extend_from_slice(b"\r\n");
            } else {
                output.extend_from_slice(b"HD");
                meta_return_flags(key, flags, output);
                output.extend_from_slice(b"\r\n");
            }
        }
        Some(b"ms") => {
            // ms <key> <datalen> <flags>*
            let (Some(key), Some(size)) = (tokens.next(), parse_size(tokens.next())) else {
                output.extend_from_slice(b"CLIENT_ERROR bad command line format\r\n");
                return Step::Done(line_end);
            };
            if let Err(step) = data_block(input, line_end, size, output) {
                return step;
            }
            data = Some(size);
            if !tokens.clone().any(|flag| flag == b"q") {
                output.extend_from_slice(b"HD");
                meta_return_flags(key, tokens, output);
                output.extend_from_slice(b"\r\n");
            }
        }
        Some(b"mn") => output.extend_from_slice(b"MN\r\n"),
        Some(b"version") => output.extend_from_slice(b"VERSION rat_canned\r\n"),
        Some(b"quit") => return Step::Close(line_end),
        _ => output.extend_from_slice(b"ERROR\r\n"),
    }
    Step::Done(data.map_or(line_end, |size| line_end + size + 2))
}

/// Checks that the `size`-byte data block after a storage command line is all there;
/// `Err` says what to do instead of answering the command.
fn data_block(
    input: &[u8],
    line_end: usize,
    size: usize,
    output: &mut Vec<u8>,
) -> Result<(), Step> {
    if size > MAX_DATA {
        output.extend_from_slice(b"SERVER_ERROR object too large for cache\r\n");
        return Err(Step::Close(line_end));
    }
    if input.len() < line_end + size + 2 {
        return Err(Step::Incomplete);
    }
    Ok(())
}

struct Client {
    stream: TcpStream,
    input: Vec<u8>,
    filled: usize,
    output: Vec<u8>,
    written: usize,
    closing: bool,
}

impl Client {
    /// Writes pending output; true when all of it is out.
    fn flush(&mut self) -> io::Result<bool> {
        while self.written < self.output.len() {
            match self.stream.write(&self.output[self.written..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => self.written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        self.output.clear();
        self.written = 0;
        Ok(true)
    }

    /// Handles readiness; `Ok(false)` when the connection is finished.
    ///
    /// Input is read only while all earlier output has left: a client that does not read
    /// its replies stops being read from, instead of making the server buffer without end.
    fn ready(&mut self, replies: &CannedReplies) -> io::Result<bool> {
        loop {
            if !self.flush()? {
                return Ok(true);
            }
            if self.closing {
                return Ok(false);
            }
            if self.filled == self.input.len() {
                if self.input.len() > 2 * MAX_DATA {
                    // No command is this long: the client is not speaking the protocol.
                    return Ok(false);
                }
                let grown = self.input.len() * 2;
                self.input.resize(grown, 0);
            }
            let free = self.input.len() - self.filled;
            let n = match self.stream.read(&mut self.input[self.filled..]) {
                Ok(0) => return Ok(false),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(true),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            self.filled += n;
            let answered = answer(replies, &self.input[..self.filled], &mut self.output);
            self.input.copy_within(answered.consumed..self.filled, 0);
            self.filled -= answered.consumed;
            self.closing = answered.close;
            if n < free && !self.closing {
                // A short read drained the socket; the next arrival raises a new event.
                return self.flush().map(|_| true);
            }
        }
    }
}

fn worker(replies: Arc<CannedReplies>, mut poll: Poll, incoming: Receiver<std::net::TcpStream>) {
    let mut clients: Slab<Client> = Slab::new();
    let mut events = Events::with_capacity(1024);
    loop {
        if let Err(e) = poll.poll(&mut events, None) {
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            eprintln!("rat_canned: poll: {e}");
            return;
        }
        for event in events.iter() {
            if event.token() == WAKER {
                while let Ok(stream) = incoming.try_recv() {
                    let entry = clients.vacant_entry();
                    let mut stream = TcpStream::from_std(stream);
                    let registered = poll.registry().register(
                        &mut stream,
                        Token(entry.key()),
                        Interest::READABLE | Interest::WRITABLE,
                    );
                    if registered.is_ok() {
                        entry.insert(Client {
                            stream,
                            input: vec![0; 16 * 1024],
                            filled: 0,
                            output: Vec::with_capacity(16 * 1024),
                            written: 0,
                            closing: false,
                        });
                    }
                }
                continue;
            }
            let key = event.token().0;
            let Some(client) = clients.get_mut(key) else {
                continue;
            };
            if !matches!(client.ready(&replies), Ok(true)) {
                let mut client = clients.remove(key);
                let _ = poll.registry().deregister(&mut client.stream);
            }
        }
    }
}

/// Serves on `listener` with `threads` workers until the process ends.
pub fn serve(listener: TcpListener, threads: usize, value_size: usize) -> io::Result<()> {
    let replies = Arc::new(CannedReplies::new(value_size));
    let mut workers: Vec<(Sender<std::net::TcpStream>, Arc<Waker>)> = Vec::new();
    for _ in 0..threads.max(1) {
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let (sender, receiver) = channel();
        let replies = Arc::clone(&replies);
        std::thread::Builder::new()
            .name("canned-worker".to_string())
            .spawn(move || worker(replies, poll, receiver))?;
        workers.push((sender, waker));
    }
    for (turn, stream) in listener.incoming().enumerate() {
        let stream = match stream {
            Ok(stream) => stream,
            Err(e) if e.kind() == io::ErrorKind::ConnectionAborted => continue,
            Err(e) => {
                // Out of descriptors most likely: go on after a pause, since a full
                // descriptor table fails every accept at once.
                eprintln!("rat_canned: accept: {e}");
                std::thread::sleep(ACCEPT_RETRY);
                continue;
            }
        };
        stream.set_nodelay(true)?;
        stream.set_nonblocking(true)?;
        let (sender, waker) = &workers[turn % workers.len()];
        if sender.send(stream).is_err() {
            return Err(io::Error::other("a worker thread stopped"));
        }
        waker.wake()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gets_hit_every_key() {
        let replies = CannedReplies::new(3);
        let mut output = Vec::new();
        let answered = answer(&replies, b"get a bb\r\ngets c\r\nget", &mut output);
        assert_eq!(
            answered,
            Answered {
                consumed: 18,
                close: false
            }
        );
        assert_eq!(
            output,
            b"VALUE a 0 3\r\nxxx\r\nVALUE bb 0 3\r\nxxx\r\nEND\r\nVALUE c 0 3 1\r\nxxx\r\nEND\r\n"
        );
    }

    #[test]
    fn storage_commands_wait_for_their_data_block() {
        let replies = CannedReplies::new(3);
        let mut output = Vec::new();
        let request = b"set k 0 0 5\r\nhello\r\n";
        for cut in 0..request.len() {
            let answered = answer(&replies, &request[..cut], &mut output);
            assert_eq!(answered.consumed, 0);
            assert!(output.is_empty());
        }
        let answered = answer(
            &replies,
            b"set k 0 0 5\r\nhello\r\nadd j 1 2 0 noreply\r\n\r\n",
            &mut output,
        );
        assert_eq!(
            answered,
            Answered {
                consumed: 43,
                close: false
            }
        );
        assert_eq!(output, b"STORED\r\n");
    }

    #[test]
    fn other_commands() {
        let replies = CannedReplies::new(3);
        let mut output = Vec::new();
        let answered = answer(
            &replies,
            b"version\r\nbogus\r\nset k 0 0 x\r\nquit\r\nget a\r\n",
            &mut output,
        );
        assert_eq!(
            answered,
            Answered {
                consumed: 35,
                close: true
            }
        );
        assert_eq!(
            output,
            b"VERSION rat_canned\r\nERROR\r\nCLIENT_ERROR bad command line format\r\n"
        );
    }

    #[test]
    fn meta_commands() {
        let replies = CannedReplies::new(3);
        let mut output = Vec::new();
        let request = b"mg a v\r\nmg bb k v Oxy\r\nmg c\r\nms d 2 T0\r\nhi\r\nms e 1 q\r\n!\r\nmn\r\nms f 4\r\nab";
        let answered = answer(&replies, request, &mut output);
        assert_eq!(
            answered,
            Answered {
                consumed: request.len() - b"ms f 4\r\nab".len(),
                close: false
            }
        );
        assert_eq!(
            output,
            b"VA 3\r\nxxx\r\nVA 3 kbb Oxy\r\nxxx\r\nHD\r\nHD\r\nMN\r\n".to_vec()
        );
    }

    /// A binary request packet.
    fn packet(opcode: u8, extras: &[u8], key: &[u8], value: &[u8], opaque: u32) -> Vec<u8> {
        let mut packet = vec![0x80, opcode];
        packet.extend_from_slice(&(key.len() as u16).to_be_bytes());
        packet.push(extras.len() as u8);
        packet.extend_from_slice(&[0; 3]);
        packet.extend_from_slice(&((extras.len() + key.len() + value.len()) as u32).to_be_bytes());
        packet.extend_from_slice(&opaque.to_be_bytes());
        packet.extend_from_slice(&[0; 8]);
        packet.extend_from_slice(extras);
        packet.extend_from_slice(key);
        packet.extend_from_slice(value);
        packet
    }

    /// A response header: magic, opcode, key length, extras length, status, body, opaque, CAS.
    fn response_header(
        opcode: u8,
        key_len: u16,
        extras_len: u8,
        status: u16,
        body: u32,
        opaque: u32,
    ) -> Vec<u8> {
        let mut header = vec![0x81, opcode];
        header.extend_from_slice(&key_len.to_be_bytes());
        header.extend_from_slice(&[extras_len, 0]);
        header.extend_from_slice(&status.to_be_bytes());
        header.extend_from_slice(&body.to_be_bytes());
        header.extend_from_slice(&opaque.to_be_bytes());
        header.extend_from_slice(&u64::from(status == 0).to_be_bytes());
        header
    }

    #[test]
    fn binary_requests_mixed_with_text() {
        let replies = CannedReplies::new(3);
        let mut request = packet(0x00, b"", b"k", b"", 7);
        request.extend(packet(0x0d, b"", b"key", b"", 8));
        request.extend(packet(0x11, &[0; 8], b"q", b"quiet", 9));
        request.extend(packet(0x01, &[0; 8], b"s", b"val", 10));
        request.extend(packet(0x0a, b"", b"", b"", 11));
        request.extend_from_slice(b"mn\r\n");
        request.extend(packet(0x30, b"", b"", b"", 12));
        let partial = packet(0x01, &[0; 8], b"s", b"val", 13);
        request.extend_from_slice(&partial[..30]);
        let mut output = Vec::new();
        let answered = answer(&replies, &request, &mut output);
        assert_eq!(answered.consumed, request.len() - 30);
        assert!(!answered.close);

        let mut expected = response_header(0x00, 0, 4, 0, 7, 7);
        expected.extend_from_slice(b"\0\0\0\0xxx");
        expected.extend(response_header(0x0d, 3, 4, 0, 10, 8));
        expected.extend_from_slice(b"\0\0\0\0keyxxx");
        expected.extend(response_header(0x01, 0, 0, 0, 0, 10));
        expected.extend(response_header(0x0a, 0, 0, 0, 0, 11));
        expected.extend_from_slice(b"MN\r\n");
        expected.extend(response_header(0x30, 0, 0, 0x81, 15, 12));
        expected.extend_from_slice(b"Unknown command");
        assert_eq!(output, expected);

        output.clear();
        let answered = answer(&replies, &packet(0x07, b"", b"", b"", 1), &mut output);
        assert_eq!(
            answered,
            Answered {
                consumed: 24,
                close: true
            }
        );
        assert_eq!(output, response_header(0x07, 0, 0, 0, 0, 1));
    }
}
