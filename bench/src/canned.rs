//! A server that speaks just enough of memcached's text protocol to be benchmarked, and
//! does no work: every key of a get is a hit with the same fixed value, every storage
//! command is `STORED`, nothing is stored.
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

/// The replies that never change.
pub struct CannedReplies {
    /// `" 0 <size>\r\n<value>\r\n"`: what follows `VALUE <key>` for `get`.
    get_tail: Vec<u8>,
    /// The same with a CAS unique, for `gets`.
    gets_tail: Vec<u8>,
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

/// Answers every complete command at the front of `input` into `output`.
pub fn answer(replies: &CannedReplies, input: &[u8], output: &mut Vec<u8>) -> Answered {
    let mut position = 0;
    while let Some(newline) = input[position..].iter().position(|&b| b == b'\n') {
        let line_end = position + newline + 1;
        let line = &input[position..position + newline];
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let mut tokens = line.split(|&b| b == b' ').filter(|t| !t.is_empty());
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
                    position = line_end;
                    continue;
                };
                if size > MAX_DATA {
                    output.extend_from_slice(b"SERVER_ERROR object too large for cache\r\n");
                    return Answered {
                        consumed: line_end,
                        close: true,
                    };
                }
                let data_end = line_end + size + 2;
                if input.len() < data_end {
                    break;
                }
                if !line.ends_with(b" noreply") {
                    output.extend_from_slice(b"STORED\r\n");
                }
                position = data_end;
                continue;
            }
            Some(b"version") => output.extend_from_slice(b"VERSION rat_canned\r\n"),
            Some(b"quit") => {
                return Answered {
                    consumed: line_end,
                    close: true,
                }
            }
            _ => output.extend_from_slice(b"ERROR\r\n"),
        }
        position = line_end;
    }
    Answered {
        consumed: position,
        close: false,
    }
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
            Err(e) => {
                // Running out of descriptors or a connection reset before accept: go on.
                eprintln!("rat_canned: accept: {e}");
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
}
