//! memcached's UDP transport: datagrams in, framed datagrams out.
//!
//! # Framing
//!
//! Every datagram, each way, starts with an 8-byte frame header of four
//! big-endian `u16`s: a request id the client picks and the server echoes,
//! the datagram's sequence number, the number of datagrams in its message,
//! and a reserved field (0).
//!
//! A request must fit in one datagram. memcached 1.6 serves a datagram only
//! if it is longer than the header and its header announces a message of one
//! datagram; every other datagram is dropped without an answer, and so are
//! requests cut off at the datagram's end. The sequence number and the
//! reserved field of a request are not checked.
//!
//! Replies are framed per reply *unit*, the way memcached 1.6 sends its
//! response objects: each command's reply is a unit, and a multi-key `get`
//! makes one unit per key, `END` going with the last. Each unit is cut into
//! datagrams of at most [`MAX_DATAGRAM`] bytes, header included, numbered
//! from 0 and all carrying the unit's datagram count; so a datagram of three
//! commands gets three answers of one datagram each, all with sequence
//! number 0. A unit with no bytes (a `get` key that missed before the last
//! one, or `quit`) still goes out as a bare header with a count of 0; a
//! command with `noreply` makes no unit and sends nothing. Which bytes form
//! a unit is the session's business: it lists where each ends (see
//! [`Session::on_datagram`]); this module only cuts and frames.
//!
//! # Who reads the socket
//!
//! Each worker thread reads the UDP socket through a descriptor of its own
//! (a `dup` of the one bound), as memcached gives every worker thread a copy
//! of its UDP socket. Every worker is woken when a datagram arrives and the
//! first to call `recvfrom` gets it; the others find nothing and go back to
//! sleep. That costs a few wake-ups per datagram on an idle server but lets
//! a burst of datagrams spread over all cores, where a socket owned by one
//! worker would serve every UDP request on one core. A datagram carries its
//! whole request, so no state is shared between the workers: each keeps one
//! session per socket and hands it one datagram at a time.
//!
//! A worker reads at most a turn's budget of datagrams before serving its
//! TCP connections again, so a flood of UDP cannot starve them. A reply that
//! the socket's send buffer cannot take at once is dropped, as UDP may drop
//! any datagram anyway.

use super::registry::ConnEntry;
use super::{Next, Session, WorkerBytes};
use mio::net::UdpSocket;
use std::io;
use std::sync::atomic::Ordering;

/// Bytes of the frame header that starts every datagram.
pub const HEADER_LEN: usize = 8;
/// Largest reply datagram, header included (memcached's
/// `UDP_MAX_PAYLOAD_SIZE`).
pub const MAX_DATAGRAM: usize = 1400;
/// Reply bytes one datagram carries.
const MAX_PAYLOAD: usize = MAX_DATAGRAM - HEADER_LEN;

/// The frame header of a datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// Chosen by the client, echoed in every datagram of the reply.
    pub request_id: u16,
    /// This datagram's position in the reply, from 0.
    pub sequence: u16,
    /// How many datagrams the reply has.
    pub total: u16,
    /// Must be 0.
    pub reserved: u16,
}

impl FrameHeader {
    /// The header at the start of `datagram` and the payload after it.
    pub fn decode(datagram: &[u8]) -> Option<(FrameHeader, &[u8])> {
        let (header, payload) = datagram.split_first_chunk::<HEADER_LEN>()?;
        let field = |at: usize| u16::from_be_bytes([header[at], header[at + 1]]);
        let header = FrameHeader {
            request_id: field(0),
            sequence: field(2),
            total: field(4),
            reserved: field(6),
        };
        Some((header, payload))
    }

    /// The header's 8 bytes, in network byte order.
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut bytes = [0; HEADER_LEN];
        for (at, field) in [self.request_id, self.sequence, self.total, self.reserved]
            .into_iter()
            .enumerate()
        {
            bytes[2 * at..2 * at + 2].copy_from_slice(&field.to_be_bytes());
        }
        bytes
    }
}

/// The request id and request bytes of a datagram memcached would serve:
/// one longer than its header and announcing a message of one datagram.
pub fn request(datagram: &[u8]) -> Option<(u16, &[u8])> {
    let (header, payload) = FrameHeader::decode(datagram)?;
    (header.total == 1 && !payload.is_empty()).then_some((header.request_id, payload))
}

/// Frames the replies in `output` as datagrams and hands each to `send`,
/// which returns false to stop (the socket refused one).
///
/// `unit_ends` lists where each reply unit ends in `output`, in order; bytes
/// after the last listed end form one more unit. A unit too large to number
/// its datagrams in 16 bits is dropped.
pub fn frame_replies(
    request_id: u16,
    output: &[u8],
    unit_ends: &[usize],
    mut send: impl FnMut(&[u8]) -> bool,
) {
    let mut datagram = [0u8; MAX_DATAGRAM];
    let mut start = 0;
    let last = unit_ends.last().copied().unwrap_or(0).min(output.len());
    let trailing = (last < output.len()).then_some(output.len());
    for end in unit_ends.iter().copied().chain(trailing) {
        let end = end.clamp(start, output.len());
        let unit = &output[start..end];
        start = end;
        let Ok(total) = u16::try_from(unit.len().div_ceil(MAX_PAYLOAD)) else {
            log::debug!("UDP reply of {} bytes is too large to frame", unit.len());
            continue;
        };
        let mut header = FrameHeader {
            request_id,
            sequence: 0,
            total,
            reserved: 0,
        };
        if unit.is_empty() {
            if !send(&header.encode()) {
                return;
            }
            continue;
        }
        for chunk in unit.chunks(MAX_PAYLOAD) {
            datagram[..HEADER_LEN].copy_from_slice(&header.encode());
            datagram[HEADER_LEN..HEADER_LEN + chunk.len()].copy_from_slice(chunk);
            if !send(&datagram[..HEADER_LEN + chunk.len()]) {
                return;
            }
            header.sequence += 1;
        }
    }
}

/// A UDP socket as one worker serves it.
pub(super) struct UdpEndpoint<S> {
    pub socket: UdpSocket,
    pub session: S,
    pub entry: ConnEntry,
}

/// How a turn on a UDP socket ended.
pub(super) enum UdpTurn {
    /// No datagram is left.
    Drained,
    /// The budget is used up; datagrams may be left.
    Yield,
    /// A request stopped the server.
    Shutdown,
}

/// The worker's buffers, lent to a UDP socket for one turn.
pub(super) struct UdpBuffers<'a> {
    pub read: &'a mut [u8],
    pub write: &'a mut Vec<u8>,
    pub unit_ends: &'a mut Vec<usize>,
}

impl<S: Session> UdpEndpoint<S> {
    /// Serves up to `budget` datagrams.
    pub fn serve(
        &mut self,
        buffers: UdpBuffers<'_>,
        budget: usize,
        bytes: &WorkerBytes,
        now: u64,
    ) -> UdpTurn {
        let UdpBuffers {
            read,
            write,
            unit_ends,
        } = buffers;
        for _ in 0..budget {
            let (len, peer) = match self.socket.recv_from(read) {
                Ok(received) => received,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return UdpTurn::Drained,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // Errors queued by earlier sends; the socket still works.
                    log::debug!("UDP receive failed: {e}");
                    continue;
                }
            };
            bytes.read.fetch_add(len as u64, Ordering::Relaxed);
            let Some((request_id, payload)) = request(&read[..len]) else {
                continue;
            };
            write.clear();
            unit_ends.clear();
            let next = self.session.on_datagram(payload, write, unit_ends);
            self.entry.last_active.store(now, Ordering::Relaxed);
            frame_replies(request_id, write, unit_ends, |datagram| {
                // Counted before sending (and taken back if the send fails),
                // so a client that got the reply finds it in `stats`.
                let len = datagram.len() as u64;
                bytes.written.fetch_add(len, Ordering::Relaxed);
                match self.socket.send_to(datagram, peer) {
                    Ok(sent) => {
                        let unsent = len - sent as u64;
                        bytes.written.fetch_sub(unsent, Ordering::Relaxed);
                        true
                    }
                    Err(e) => {
                        bytes.written.fetch_sub(len, Ordering::Relaxed);
                        log::debug!("UDP reply to {peer} dropped: {e}");
                        false
                    }
                }
            });
            if next == Next::Shutdown {
                return UdpTurn::Shutdown;
            }
        }
        UdpTurn::Yield
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(request_id: u16, sequence: u16, total: u16) -> FrameHeader {
        FrameHeader {
            request_id,
            sequence,
            total,
            reserved: 0,
        }
    }

    fn frame(request_id: u16, output: &[u8], unit_ends: &[usize]) -> Vec<Vec<u8>> {
        let mut datagrams = Vec::new();
        frame_replies(request_id, output, unit_ends, |d| {
            datagrams.push(d.to_vec());
            true
        });
        datagrams
    }

    #[test]
    fn headers_are_four_big_endian_fields() {
        let h = FrameHeader {
            request_id: 0x1234,
            sequence: 0x0102,
            total: 0x0a0b,
            reserved: 0xfffe,
        };
        let bytes = h.encode();
        assert_eq!(bytes, [0x12, 0x34, 0x01, 0x02, 0x0a, 0x0b, 0xff, 0xfe]);
        let mut datagram = bytes.to_vec();
        datagram.extend_from_slice(b"get a\r\n");
        assert_eq!(FrameHeader::decode(&datagram), Some((h, &b"get a\r\n"[..])));
        assert_eq!(FrameHeader::decode(&bytes[..7]), None);
    }

    #[test]
    fn only_whole_single_datagram_requests_are_served() {
        let with = |h: FrameHeader, payload: &[u8]| {
            let mut d = h.encode().to_vec();
            d.extend_from_slice(payload);
            d
        };
        let ok = with(header(7, 0, 1), b"version\r\n");
        assert_eq!(request(&ok), Some((7, &b"version\r\n"[..])));
        // memcached looks at neither the sequence number nor the reserved field.
        let odd = with(
            FrameHeader {
                request_id: 9,
                sequence: 5,
                total: 1,
                reserved: 3,
            },
            b"x",
        );
        assert_eq!(request(&odd), Some((9, &b"x"[..])));
        assert_eq!(request(&with(header(7, 0, 2), b"get a\r\n")), None);
        assert_eq!(request(&with(header(7, 0, 0), b"get a\r\n")), None);
        assert_eq!(request(&with(header(7, 0, 1), b"")), None);
        assert_eq!(request(b"abc"), None);
    }

    #[test]
    fn each_unit_is_numbered_on_its_own() {
        let output = b"STORED\r\nVERSION 1.6.18\r\n";
        let datagrams = frame(0xbeef, output, &[8, 24]);
        assert_eq!(datagrams.len(), 2);
        assert_eq!(datagrams[0][..8], header(0xbeef, 0, 1).encode());
        assert_eq!(&datagrams[0][8..], b"STORED\r\n");
        assert_eq!(datagrams[1][..8], header(0xbeef, 0, 1).encode());
        assert_eq!(&datagrams[1][8..], b"VERSION 1.6.18\r\n");
    }

    #[test]
    fn an_empty_unit_is_a_bare_header_with_count_zero() {
        let datagrams = frame(3, b"END\r\n", &[0, 5]);
        assert_eq!(datagrams[0], header(3, 0, 0).encode());
        assert_eq!(&datagrams[1][8..], b"END\r\n");
        assert_eq!(datagrams.len(), 2);
    }

    #[test]
    fn a_large_unit_is_cut_at_the_payload_size() {
        // 100022 bytes: 71 full datagrams and one of 1190 bytes, as memcached
        // sends a 100000-byte value.
        let mut output = b"VALUE big 5 100000\r\n".to_vec();
        output.extend((0..100_000u32).map(|i| (i % 251) as u8));
        output.extend_from_slice(b"\r\n");
        let datagrams = frame(42, &output, &[output.len()]);
        assert_eq!(datagrams.len(), 72);
        let mut joined = Vec::new();
        for (i, d) in datagrams.iter().enumerate() {
            let (h, payload) = FrameHeader::decode(d).unwrap();
            assert_eq!(h, header(42, i as u16, 72));
            let expected = if i < 71 { MAX_DATAGRAM } else { 1190 + 8 };
            assert_eq!(d.len(), expected, "datagram {i}");
            joined.extend_from_slice(payload);
        }
        assert_eq!(joined, output);
    }

    #[test]
    fn unlisted_trailing_bytes_form_a_last_unit() {
        let datagrams = frame(1, b"OK\r\nERROR\r\n", &[4]);
        assert_eq!(datagrams.len(), 2);
        assert_eq!(&datagrams[1][8..], b"ERROR\r\n");
        assert!(frame(1, b"", &[]).is_empty());
    }

    #[test]
    fn framing_stops_when_the_socket_refuses() {
        let mut sent = 0;
        frame_replies(1, &[b'x'; 5000], &[5000], |_| {
            sent += 1;
            sent < 2
        });
        assert_eq!(sent, 2);
    }
}
