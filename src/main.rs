//! `rat_memcached`: a memcached-compatible cache server.
//!
//! Reads memcached's command-line flags (and an optional TOML file), then
//! serves until a client's `shutdown` (enabled with `-A`) or a signal stops
//! it. `rat_memcached --help` lists the flags.

use rat_memcache::config::{self, CliAction, Settings};
use rat_memcache::server::Server;
use std::process::ExitCode;

#[cfg(unix)]
#[global_allocator]
static GLOBAL: rat_memcache::allocator::ServerAllocator =
    rat_memcache::allocator::ServerAllocator::new();

/// Runs while the process starts, before mimalloc initialises; see
/// [`reserve_small_arenas`](rat_memcache::allocator::reserve_small_arenas).
#[cfg(target_os = "linux")]
#[used]
#[link_section = ".init_array.00100"]
static RESERVE_SMALL_ARENAS: extern "C" fn() = rat_memcache::allocator::reserve_small_arenas;

#[cfg(not(unix))]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    #[cfg(unix)]
    GLOBAL.configure();
    let args = std::env::args_os().skip(1).collect();
    match config::parse_args(args) {
        Ok(CliAction::Help(text)) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Ok(CliAction::Version(text)) => {
            println!("{text}");
            ExitCode::SUCCESS
        }
        Ok(CliAction::Run(settings)) => run(settings),
        Err(e) => {
            eprintln!("rat_memcached: {e}");
            eprintln!("Try 'rat_memcached --help' for the list of options.");
            ExitCode::from(64)
        }
    }
}

fn run(settings: Settings) -> ExitCode {
    if let Err(e) = config::init_logging(settings.verbosity) {
        eprintln!("rat_memcached: {e}");
        return ExitCode::FAILURE;
    }
    for notice in &settings.notices {
        log::warn!("{notice}");
    }
    if settings.daemonize {
        if let Err(e) = process::daemonize() {
            log::error!("cannot run as a daemon: {e}");
            return ExitCode::FAILURE;
        }
    }
    // Block SIGTERM and SIGINT before any thread starts, so every thread
    // inherits the mask and only the waiting thread below receives them.
    let signals = process::block_termination_signals();
    let pid_file = settings.pid_file.clone();
    let run_as_user = settings.run_as_user.clone();
    let server = match Server::start(settings) {
        Ok(server) => server,
        Err(e) => {
            log::error!("{e}");
            eprintln!("rat_memcached: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Some(user) = run_as_user {
        if let Err(e) = process::drop_privileges(&user) {
            log::error!("cannot switch to user {user}: {e}");
            return ExitCode::FAILURE;
        }
    }
    if let Some(path) = &pid_file {
        if let Err(e) = std::fs::write(path, format!("{}\n", std::process::id())) {
            log::error!("cannot write pid file {}: {e}", path.display());
            return ExitCode::FAILURE;
        }
    }
    for addr in server.local_addrs() {
        log::info!("listening on {addr}");
    }
    for addr in server.udp_addrs() {
        log::info!("listening on UDP {addr}");
    }
    if let Some(path) = server.unix_path() {
        log::info!("listening on unix socket {}", path.display());
    }
    let shutdown = server.shutdown_handle();
    process::on_termination_signal(signals, move || {
        log::info!("termination signal received, shutting down");
        shutdown.shutdown();
    });
    server.wait();
    if let Some(path) = &pid_file {
        let _ = std::fs::remove_file(path);
    }
    log::info!("stopped");
    ExitCode::SUCCESS
}

/// Process-level chores of a Unix daemon.
#[cfg(unix)]
mod process {
    use std::ffi::CString;
    use std::io;

    /// The signals that ask the server to stop.
    pub struct TerminationSignals(libc::sigset_t);

    /// Blocks SIGTERM and SIGINT in the calling thread (and so in every
    /// thread it starts afterwards).
    pub fn block_termination_signals() -> TerminationSignals {
        // SAFETY: the set is initialised by sigemptyset before use, and
        // pthread_sigmask only reads it.
        unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, libc::SIGTERM);
            libc::sigaddset(&mut set, libc::SIGINT);
            libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
            TerminationSignals(set)
        }
    }

    /// Runs `stop` on a thread of its own when one of the signals arrives.
    pub fn on_termination_signal(
        signals: TerminationSignals,
        stop: impl FnOnce() + Send + 'static,
    ) {
        let spawned = std::thread::Builder::new()
            .name("signals".into())
            .spawn(move || {
                let mut received = 0;
                // SAFETY: sigwait reads the initialised set and writes one int.
                while unsafe { libc::sigwait(&signals.0, &mut received) } != 0 {}
                stop();
            });
        if let Err(e) = spawned {
            log::warn!("cannot watch for termination signals: {e}");
        }
    }

    /// Detaches from the terminal: fork, new session, stdio to /dev/null.
    /// Runs before any thread is started, as fork requires.
    pub fn daemonize() -> io::Result<()> {
        // SAFETY: called while the process is single-threaded; the calls
        // only take plain values and a NUL-terminated path we own.
        unsafe {
            match libc::fork() {
                -1 => return Err(io::Error::last_os_error()),
                0 => {}
                _ => libc::_exit(0),
            }
            if libc::setsid() == -1 {
                return Err(io::Error::last_os_error());
            }
            let null = CString::new("/dev/null").expect("no NUL in a literal");
            let fd = libc::open(null.as_ptr(), libc::O_RDWR);
            if fd == -1 {
                return Err(io::Error::last_os_error());
            }
            for target in [0, 1, 2] {
                libc::dup2(fd, target);
            }
            if fd > 2 {
                libc::close(fd);
            }
        }
        Ok(())
    }

    /// Switches the process to `user` (memcached's `-u`), after the
    /// privileged ports are bound.
    pub fn drop_privileges(user: &str) -> io::Result<()> {
        let name = CString::new(user)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "user name contains NUL"))?;
        // SAFETY: getpwnam returns a pointer into static storage that we
        // read immediately; setgid/setuid take plain ids.
        unsafe {
            let entry = libc::getpwnam(name.as_ptr());
            if entry.is_null() {
                return Err(io::Error::new(io::ErrorKind::NotFound, "no such user"));
            }
            let (uid, gid) = ((*entry).pw_uid, (*entry).pw_gid);
            if libc::getuid() == uid {
                return Ok(());
            }
            if libc::setgid(gid) != 0 || libc::setuid(uid) != 0 {
                return Err(io::Error::last_os_error());
            }
        }
        Ok(())
    }
}

#[cfg(not(unix))]
mod process {
    use std::io;

    pub struct TerminationSignals;

    pub fn block_termination_signals() -> TerminationSignals {
        TerminationSignals
    }

    /// What Ctrl-C runs: taken once, by the first console event.
    static ON_STOP: std::sync::Mutex<Option<Box<dyn FnOnce() + Send>>> =
        std::sync::Mutex::new(None);

    /// Runs `stop` on Ctrl-C, Ctrl-Break or the console window closing, so the
    /// server stops as on SIGTERM elsewhere: replies finish and the persistent
    /// tier is written out.
    pub fn on_termination_signal(
        _signals: TerminationSignals,
        stop: impl FnOnce() + Send + 'static,
    ) {
        use windows_sys::Win32::System::Console::SetConsoleCtrlHandler;
        if let Ok(mut slot) = ON_STOP.lock() {
            *slot = Some(Box::new(stop));
        }
        // SAFETY: `console_event` is a valid handler for the whole life of the process.
        if unsafe { SetConsoleCtrlHandler(Some(console_event), 1) } == 0 {
            log::warn!(
                "cannot catch Ctrl-C: {}; it will end the process without a clean stop",
                io::Error::last_os_error()
            );
        }
    }

    /// Called by Windows on its own thread for each console event.
    unsafe extern "system" fn console_event(event: u32) -> windows_sys::core::BOOL {
        use windows_sys::Win32::System::Console::{
            CTRL_BREAK_EVENT, CTRL_CLOSE_EVENT, CTRL_C_EVENT,
        };
        if !matches!(event, CTRL_C_EVENT | CTRL_BREAK_EVENT | CTRL_CLOSE_EVENT) {
            return 0;
        }
        let stop = ON_STOP.lock().ok().and_then(|mut slot| slot.take());
        if let Some(stop) = stop {
            stop();
        }
        if event == CTRL_CLOSE_EVENT {
            // Windows ends the process when this returns; give the clean stop the
            // few seconds Windows allows.
            std::thread::sleep(std::time::Duration::from_secs(4));
        }
        1
    }

    pub fn daemonize() -> io::Result<()> {
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "-d is only available on Unix",
        ))
    }

    pub fn drop_privileges(_user: &str) -> io::Result<()> {
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "-u is only available on Unix",
        ))
    }
}
