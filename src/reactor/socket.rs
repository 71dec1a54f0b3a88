//! The stream transports behind one type: TCP, and unix domain sockets on
//! Unix.
//!
//! A worker serves a connection the same way whatever carries it, so the
//! socket types are wrapped in enums that read, write and register with mio
//! by delegating to the socket inside.
//!
//! A unix socket's file outlives the process that made it. When the server
//! starts and finds one at its path, it checks whether anything still
//! listens there: a file nobody answers on is left over from a server that
//! died and is removed; a live one belongs to another server and the start
//! fails rather than take its clients. memcached removes the file in both
//! cases. On a clean stop the server removes the file it made.

use super::registry::{Endpoint, Transport};
use mio::event::Source;
use mio::net::{TcpListener, TcpStream};
use mio::{Interest, Registry, Token};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
#[cfg(unix)]
use std::sync::Arc;

#[cfg(unix)]
use mio::net::{UnixListener, UnixStream};

/// A client connection.
pub(super) enum Stream {
    Tcp(TcpStream),
    #[cfg(unix)]
    Unix(UnixStream),
}

/// Calls `$body` with the socket inside `$stream`, whatever its type.
macro_rules! with_socket {
    ($stream:expr, $socket:ident => $body:expr) => {
        match $stream {
            Stream::Tcp($socket) => $body,
            #[cfg(unix)]
            Stream::Unix($socket) => $body,
        }
    };
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        with_socket!(self, socket => socket.read(buf))
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        with_socket!(self, socket => socket.write(buf))
    }

    fn flush(&mut self) -> io::Result<()> {
        with_socket!(self, socket => socket.flush())
    }
}

impl Source for Stream {
    fn register(
        &mut self,
        registry: &Registry,
        token: Token,
        interests: Interest,
    ) -> io::Result<()> {
        with_socket!(self, socket => socket.register(registry, token, interests))
    }

    fn reregister(
        &mut self,
        registry: &Registry,
        token: Token,
        interests: Interest,
    ) -> io::Result<()> {
        with_socket!(self, socket => socket.reregister(registry, token, interests))
    }

    fn deregister(&mut self, registry: &Registry) -> io::Result<()> {
        with_socket!(self, socket => socket.deregister(registry))
    }
}

/// A listening socket.
pub(super) enum Listener {
    Tcp(TcpListener),
    #[cfg(unix)]
    Unix {
        listener: UnixListener,
        path: Arc<Path>,
    },
}

impl Listener {
    pub fn transport(&self) -> Transport {
        match self {
            Listener::Tcp(_) => Transport::Tcp,
            #[cfg(unix)]
            Listener::Unix { .. } => Transport::Unix,
        }
    }

    /// Takes one pending connection: the stream and the client's address.
    pub fn accept(&self) -> io::Result<(Stream, Endpoint)> {
        match self {
            Listener::Tcp(listener) => {
                let (stream, peer) = listener.accept()?;
                // Requests and replies are small and latency matters more
                // than packet count: never wait for Nagle.
                let _ = stream.set_nodelay(true);
                Ok((Stream::Tcp(stream), Endpoint::Inet(peer)))
            }
            #[cfg(unix)]
            Listener::Unix { listener, .. } => {
                // Clients connect from unnamed sockets; memcached keeps no
                // client address for unix connections at all.
                let (stream, _) = listener.accept()?;
                Ok((Stream::Unix(stream), Endpoint::Unix(None)))
            }
        }
    }

    /// Lets up to `backlog` connections wait to be accepted (the kernel caps it at
    /// `net.core.somaxconn`). The sockets are bound with the standard library's 128,
    /// which a burst of thousands of connects overflows; calling `listen` again on a
    /// listening socket changes its backlog.
    #[cfg(unix)]
    pub fn set_backlog(&self, backlog: u32) -> io::Result<()> {
        use std::os::fd::AsRawFd;
        let fd = match self {
            Listener::Tcp(listener) => listener.as_raw_fd(),
            Listener::Unix { listener, .. } => listener.as_raw_fd(),
        };
        let backlog = libc::c_int::try_from(backlog).unwrap_or(libc::c_int::MAX);
        // SAFETY: listen on a socket this listener owns and keeps open.
        if unsafe { libc::listen(fd, backlog) } == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }

    /// Where the listener listens.
    pub fn local(&self) -> io::Result<Endpoint> {
        match self {
            Listener::Tcp(listener) => listener.local_addr().map(Endpoint::Inet),
            #[cfg(unix)]
            Listener::Unix { path, .. } => Ok(Endpoint::Unix(Some(Arc::clone(path)))),
        }
    }

    pub fn register(&mut self, registry: &Registry, token: Token) -> io::Result<()> {
        match self {
            Listener::Tcp(listener) => registry.register(listener, token, Interest::READABLE),
            #[cfg(unix)]
            Listener::Unix { listener, .. } => {
                registry.register(listener, token, Interest::READABLE)
            }
        }
    }
}

/// A unix socket file made by this server, removed again on a clean stop.
#[derive(Debug)]
pub(super) struct SocketFile {
    path: PathBuf,
    /// Device and inode of the file made, so that a file another server put
    /// at the same path in the meantime is left alone.
    identity: (u64, u64),
}

impl SocketFile {
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn remove(&self) {
        if file_identity(&self.path).is_some_and(|id| id == self.identity) {
            if let Err(e) = std::fs::remove_file(&self.path) {
                log::warn!("cannot remove {}: {e}", self.path.display());
            }
        }
    }
}

#[cfg(unix)]
fn file_identity(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::symlink_metadata(path)
        .ok()
        .map(|meta| (meta.dev(), meta.ino()))
}

#[cfg(not(unix))]
fn file_identity(_path: &Path) -> Option<(u64, u64)> {
    None
}

/// Listens on the unix socket `path`, whose file gets the permission bits
/// `mode` (memcached's `-a`).
#[cfg(unix)]
pub(super) fn bind_unix(path: &Path, mode: u32) -> io::Result<(Listener, SocketFile)> {
    remove_stale_socket(path)?;
    // As memcached does: the umask in force at bind time gives the file its
    // mode, so there is no moment at which it is more open than asked. The
    // umask is per process; the reactor binds before it starts any thread.
    let mask = !mode & 0o777;
    // SAFETY: umask only swaps the process's file mode mask.
    let previous = unsafe { libc::umask(mask as libc::mode_t) };
    let bound = UnixListener::bind(path);
    // SAFETY: as above, restoring the mask that was in force.
    unsafe { libc::umask(previous) };
    let listener = bound.map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("cannot listen on {}: {e}", path.display()),
        )
    })?;
    let identity = file_identity(path).ok_or_else(|| {
        io::Error::other(format!(
            "{} vanished right after it was made",
            path.display()
        ))
    })?;
    let path_buf = path.to_path_buf();
    let listener = Listener::Unix {
        listener,
        path: Arc::from(path),
    };
    Ok((
        listener,
        SocketFile {
            path: path_buf,
            identity,
        },
    ))
}

#[cfg(not(unix))]
pub(super) fn bind_unix(path: &Path, _mode: u32) -> io::Result<(Listener, SocketFile)> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        format!(
            "cannot listen on {}: unix sockets are only available on Unix",
            path.display()
        ),
    ))
}

/// Removes a socket file nothing listens on; fails if something does, or if
/// the path holds something other than a socket.
#[cfg(unix)]
fn remove_stale_socket(path: &Path) -> io::Result<()> {
    use std::os::unix::fs::FileTypeExt;
    let shown = path.display();
    let meta = match std::fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => {
            return Err(io::Error::new(
                e.kind(),
                format!("cannot check {shown}: {e}"),
            ))
        }
    };
    if !meta.file_type().is_socket() {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!("cannot listen on {shown}: the path exists and is not a socket"),
        ));
    }
    match std::os::unix::net::UnixStream::connect(path) {
        Ok(_) => Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            format!("cannot listen on {shown}: another process is listening on it"),
        )),
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
            log::info!("removing stale socket file {shown}");
            std::fs::remove_file(path)
                .map_err(|e| io::Error::new(e.kind(), format!("cannot remove stale {shown}: {e}")))
        }
        Err(e) => Err(io::Error::new(
            e.kind(),
            format!("cannot check whether {shown} is in use: {e}"),
        )),
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use std::net::TcpStream as StdStream;
    use std::time::Duration;

    #[test]
    fn a_raised_backlog_holds_a_burst_of_connects_nobody_accepts_yet() {
        let listener = Listener::Tcp(TcpListener::bind("127.0.0.1:0".parse().unwrap()).unwrap());
        listener.set_backlog(1024).unwrap();
        let Ok(Endpoint::Inet(addr)) = listener.local() else {
            panic!("a TCP listener has an address");
        };
        // With the standard library's 128 the kernel would drop the SYNs beyond it and
        // these connects would time out.
        let burst = 600;
        let clients: Vec<StdStream> = (0..burst)
            .map(|i| {
                StdStream::connect_timeout(&addr, Duration::from_secs(2))
                    .unwrap_or_else(|e| panic!("connect {i} of {burst}: {e}"))
            })
            .collect();
        assert_eq!(clients.len(), burst);
    }
}
