//! Which protocol a connection speaks, decided by its first byte.
//!
//! memcached reads the first byte a client sends: 0x80, the binary
//! protocol's request magic, makes the connection binary, anything else
//! makes it text, and the connection keeps that protocol for life. `-B
//! ascii` or `-B binary` fixes the choice instead.

use super::binary::BinarySession;
use super::session::TextSession;
use super::ServerContext;
use crate::config::ProtocolMode;
use crate::protocol::binary::REQUEST_MAGIC;
use crate::reactor::{Next, Progress, Session, TurnLimits};
use std::sync::Arc;

/// A connection's session: undecided until its first byte arrives.
pub enum ProtocolSession {
    Undecided {
        ctx: Arc<ServerContext>,
        worker: usize,
    },
    Text(TextSession),
    Binary(BinarySession),
}

impl ProtocolSession {
    pub fn new(ctx: Arc<ServerContext>, worker: usize) -> ProtocolSession {
        ProtocolSession::Undecided { ctx, worker }
    }
}

impl ProtocolSession {
    fn context(&self) -> (&Arc<ServerContext>, usize) {
        match self {
            ProtocolSession::Undecided { ctx, worker } => (ctx, *worker),
            ProtocolSession::Text(session) => session.context(),
            ProtocolSession::Binary(session) => session.context(),
        }
    }

    /// Becomes the session for a stream whose first byte is `first`.
    fn decide(&mut self, first: u8) {
        let (ctx, worker) = self.context();
        let binary = match ctx.settings.protocol {
            ProtocolMode::Auto => first == REQUEST_MAGIC,
            ProtocolMode::Ascii => false,
            ProtocolMode::Binary => true,
        };
        let decided = matches!(
            (&*self, binary),
            (ProtocolSession::Binary(_), true) | (ProtocolSession::Text(_), false)
        );
        if !decided {
            let ctx = Arc::clone(ctx);
            *self = if binary {
                ProtocolSession::Binary(BinarySession::new(ctx, worker))
            } else {
                ProtocolSession::Text(TextSession::new(ctx, worker))
            };
        }
    }
}

impl Session for ProtocolSession {
    fn on_input(&mut self, input: &[u8], out: &mut Vec<u8>, limits: TurnLimits) -> Progress {
        if let ProtocolSession::Undecided { .. } = self {
            let Some(&first) = input.first() else {
                return Progress {
                    consumed: 0,
                    next: Next::NeedInput { wanted: 0 },
                };
            };
            self.decide(first);
        }
        match self {
            ProtocolSession::Text(session) => session.on_input(input, out, limits),
            ProtocolSession::Binary(session) => session.on_input(input, out, limits),
            ProtocolSession::Undecided { .. } => unreachable!("decided above"),
        }
    }

    /// Datagrams stand alone, so each one's first byte decides its protocol.
    fn on_datagram(&mut self, input: &[u8], out: &mut Vec<u8>, unit_ends: &mut Vec<usize>) -> Next {
        let Some(&first) = input.first() else {
            return Next::NeedInput { wanted: 0 };
        };
        self.decide(first);
        match self {
            ProtocolSession::Text(session) => session.on_datagram(input, out, unit_ends),
            ProtocolSession::Binary(session) => session.on_datagram(input, out, unit_ends),
            ProtocolSession::Undecided { .. } => unreachable!("decided above"),
        }
    }
}
