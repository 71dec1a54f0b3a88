//! Wire protocols: bytes in, commands out; results in, bytes out.
//!
//! Nothing here touches a socket or the store. A parser is a pure function
//! over the bytes a connection has buffered so far; it borrows keys and
//! values from that buffer instead of copying them, and tells the caller how
//! many bytes a request used so the caller can drop them. Replies are
//! appended to the caller's output buffer. This keeps every protocol
//! testable (and fuzzable) on byte slices alone.

pub mod binary;
pub mod meta;
pub mod reply;
pub mod text;
