//! The canned server's binary protocol: every get variant hits with the canned value, every
//! storage variant succeeds, `Noop` and `Version` answer, `Quit` closes, anything else is
//! an unknown command. Quiet variants answer nothing on success, as in memcached, except
//! the quiet gets, which answer their hits (all of them, here).

use super::{CannedReplies, Step, MAX_DATA};

pub(super) const REQUEST_MAGIC: u8 = 0x80;
const RESPONSE_MAGIC: u8 = 0x81;
const HEADER: usize = 24;

const STATUS_UNKNOWN_COMMAND: u16 = 0x81;

/// Appends a response header echoing `opcode` and `opaque`, with CAS 1 on success.
fn header(
    output: &mut Vec<u8>,
    opcode: u8,
    status: u16,
    key_len: usize,
    extras_len: u8,
    body_len: usize,
    opaque: &[u8],
) {
    output.push(RESPONSE_MAGIC);
    output.push(opcode);
    output.extend_from_slice(&(key_len as u16).to_be_bytes());
    output.push(extras_len);
    output.push(0);
    output.extend_from_slice(&status.to_be_bytes());
    output.extend_from_slice(&(body_len as u32).to_be_bytes());
    output.extend_from_slice(opaque);
    output.extend_from_slice(&u64::from(status == 0).to_be_bytes());
}

/// Answers the binary request at the front of `input` (which starts with the magic byte).
pub(super) fn answer(replies: &CannedReplies, input: &[u8], output: &mut Vec<u8>) -> Step {
    if input.len() < HEADER {
        return Step::Incomplete;
    }
    let opcode = input[1];
    let key_len = usize::from(u16::from_be_bytes([input[2], input[3]]));
    let extras_len = usize::from(input[4]);
    let body_len = u32::from_be_bytes([input[8], input[9], input[10], input[11]]) as usize;
    if body_len > MAX_DATA || key_len + extras_len > body_len {
        // Not a request anyone could mean: stop talking to this client.
        return Step::Close(input.len());
    }
    let end = HEADER + body_len;
    if input.len() < end {
        return Step::Incomplete;
    }
    let opaque = &input[12..16];
    let key = &input[HEADER + extras_len..HEADER + extras_len + key_len];
    match opcode {
        // Get, GetQ, GetK, GetKQ
        0x00 | 0x09 | 0x0c | 0x0d => {
            let returned_key: &[u8] = if opcode >= 0x0c { key } else { b"" };
            let body = 4 + returned_key.len() + replies.value.len();
            header(output, opcode, 0, returned_key.len(), 4, body, opaque);
            output.extend_from_slice(&[0; 4]);
            output.extend_from_slice(returned_key);
            output.extend_from_slice(&replies.value);
        }
        // Set, Add, Replace, Append, Prepend
        0x01..=0x03 | 0x0e | 0x0f => header(output, opcode, 0, 0, 0, 0, opaque),
        // Their quiet variants
        0x11..=0x13 | 0x19 | 0x1a => {}
        0x0a => header(output, opcode, 0, 0, 0, 0, opaque),
        0x0b => {
            let version = b"rat_canned";
            header(output, opcode, 0, 0, 0, version.len(), opaque);
            output.extend_from_slice(version);
        }
        0x07 => {
            header(output, opcode, 0, 0, 0, 0, opaque);
            return Step::Close(end);
        }
        0x17 => return Step::Close(end),
        _ => {
            let message = b"Unknown command";
            header(
                output,
                opcode,
                STATUS_UNKNOWN_COMMAND,
                0,
                0,
                message.len(),
                opaque,
            );
            output.extend_from_slice(message);
        }
    }
    Step::Done(end)
}
