//! The command line: memcached 1.6's flags, plus `--bind`, `--config`, `--help`,
//! `--version` and the flags of the persistent L2 tier (`--data-dir` and the few settings
//! worth changing without editing a file).
//!
//! Parsing happens in two steps. memcached reads its flags with getopt, which allows
//! clusters (`-vv`, `-dA`), values glued to the letter (`-p11211`) and long options
//! with `=` or a space (`--port=11211`, `--port 11211`). [`normalize`] rewrites all of
//! these into one canonical token per flag: a switch becomes its key (`-v`), a flag
//! with a value becomes `key=value` (`-p=11211`). After that, `pico_args` can look each
//! flag up without ever confusing a value that starts with `-` for a flag, and what it
//! leaves over is exactly the unknown flags and stray arguments.
//!
//! The [`FLAGS`] table lists every spelling memcached 1.6.18 accepts; each entry has an
//! [`Opt`] that `apply` matches exhaustively, so a flag cannot be listed and forgotten.
//! Flags memcached does not have are long-only, so they cannot collide with a letter.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use pico_args::Arguments;

use super::builder::{SettingsBuilder, Sourced};
use super::file;
use super::units::{self, HostPort};
use super::{
    default_threads, CliAction, ConfigError, EvictionStrategy, ProtocolMode,
    DEFAULT_L2_COMPRESSION_THRESHOLD, DEFAULT_L2_FLUSH_INTERVAL_MS, DEFAULT_LISTEN_BACKLOG,
    DEFAULT_MAX_CONNECTIONS, DEFAULT_MAX_DISK_SIZE_MB, DEFAULT_MEMORY_MB, DEFAULT_PORT,
    DEFAULT_REQS_PER_EVENT, MAX_L2_FLUSH_INTERVAL_MS,
};

/// The environment variable naming SASL's password file, as for memcached's
/// built-in password database.
pub const SASL_PASSWORD_FILE_VAR: &str = "MEMCACHED_SASL_PWDB";

/// Every flag, by what it does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Opt {
    Port,
    UdpPort,
    UnixSocket,
    UnixMask,
    EnableShutdown,
    Listen,
    Daemon,
    EnableCoredumps,
    User,
    MemoryLimit,
    DisableEvictions,
    Eviction,
    ConnLimit,
    LockMemory,
    Verbose,
    Help,
    License,
    Version,
    PidFile,
    SlabGrowthFactor,
    SlabMinSize,
    EnableLargePages,
    PrefixDelimiter,
    Threads,
    MaxReqsPerEvent,
    DisableCas,
    ListenBacklog,
    Protocol,
    MaxItemSize,
    EnableSasl,
    DisableFlushAll,
    DisableDumping,
    DisableWatch,
    AuthFile,
    MemoryFile,
    EnableSsl,
    Extended,
    NapiIds,
    Bind,
    Config,
    DataDir,
    MaxDiskSize,
    L2FlushMs,
    SyncWrites,
    ClearOnStartup,
    NoWarmup,
    NoL2Compression,
}

/// How a flag is spelt: its canonical key (the short form when there is one) and its
/// long names.
struct Flag {
    opt: Opt,
    key: &'static str,
    long: &'static [&'static str],
    takes_value: bool,
}

impl Flag {
    const fn value(opt: Opt, key: &'static str, long: &'static [&'static str]) -> Flag {
        Flag {
            opt,
            key,
            long,
            takes_value: true,
        }
    }

    const fn switch(opt: Opt, key: &'static str, long: &'static [&'static str]) -> Flag {
        Flag {
            opt,
            key,
            long,
            takes_value: false,
        }
    }

    fn short(&self) -> Option<char> {
        match self.key.as_bytes() {
            [b'-', letter] => Some(char::from(*letter)),
            _ => None,
        }
    }

    fn is_long(&self, name: &str) -> bool {
        self.long.contains(&name) || self.key.strip_prefix("--") == Some(name)
    }

    /// `-k (--lock-memory)`, for messages.
    fn describe(&self, value: Option<&str>) -> String {
        let mut text = self.key.to_string();
        if let Some(value) = value {
            text.push(' ');
            text.push_str(value);
        }
        if let (Some(long), Some(_)) = (self.long.first(), self.short()) {
            text.push_str(&format!(" (--{long})"));
        }
        text
    }
}

/// memcached 1.6.18's flags (`memcached -h`, getopt string
/// `a:AZp:s:U:m:Mc:khiVrvdl:u:P:f:n:t:D:LR:Cb:B:I:SFXWY:e:o:N:`), then ours.
const FLAGS: &[Flag] = &[
    Flag::value(Opt::Port, "-p", &["port"]),
    Flag::value(Opt::UdpPort, "-U", &["udp-port"]),
    Flag::value(Opt::UnixSocket, "-s", &["unix-socket"]),
    Flag::value(Opt::UnixMask, "-a", &["unix-mask"]),
    Flag::switch(Opt::EnableShutdown, "-A", &["enable-shutdown"]),
    Flag::value(Opt::Listen, "-l", &["listen"]),
    Flag::switch(Opt::Daemon, "-d", &["daemon"]),
    Flag::switch(Opt::EnableCoredumps, "-r", &["enable-coredumps"]),
    Flag::value(Opt::User, "-u", &["user"]),
    Flag::value(Opt::MemoryLimit, "-m", &["memory-limit"]),
    Flag::switch(Opt::DisableEvictions, "-M", &["disable-evictions"]),
    Flag::value(Opt::Eviction, "--eviction", &[]),
    Flag::value(Opt::ConnLimit, "-c", &["conn-limit"]),
    Flag::switch(Opt::LockMemory, "-k", &["lock-memory"]),
    Flag::switch(Opt::Verbose, "-v", &["verbose"]),
    Flag::switch(Opt::Help, "-h", &["help"]),
    Flag::switch(Opt::License, "-i", &["license"]),
    Flag::switch(Opt::Version, "-V", &["version"]),
    Flag::value(Opt::PidFile, "-P", &["pidfile", "pid-file"]),
    Flag::value(Opt::SlabGrowthFactor, "-f", &["slab-growth-factor"]),
    Flag::value(Opt::SlabMinSize, "-n", &["slab-min-size"]),
    Flag::switch(Opt::EnableLargePages, "-L", &["enable-largepages"]),
    Flag::value(Opt::PrefixDelimiter, "-D", &[]),
    Flag::value(Opt::Threads, "-t", &["threads"]),
    Flag::value(Opt::MaxReqsPerEvent, "-R", &["max-reqs-per-event"]),
    Flag::switch(Opt::DisableCas, "-C", &["disable-cas"]),
    Flag::value(Opt::ListenBacklog, "-b", &["listen-backlog"]),
    Flag::value(Opt::Protocol, "-B", &["protocol"]),
    Flag::value(Opt::MaxItemSize, "-I", &["max-item-size"]),
    Flag::switch(Opt::EnableSasl, "-S", &["enable-sasl"]),
    Flag::switch(Opt::DisableFlushAll, "-F", &["disable-flush-all"]),
    Flag::switch(Opt::DisableDumping, "-X", &["disable-dumping"]),
    Flag::switch(Opt::DisableWatch, "-W", &["disable-watch"]),
    Flag::value(Opt::AuthFile, "-Y", &["auth-file"]),
    Flag::value(Opt::MemoryFile, "-e", &["memory-file"]),
    Flag::switch(Opt::EnableSsl, "-Z", &["enable-ssl"]),
    Flag::value(Opt::Extended, "-o", &["extended"]),
    Flag::value(Opt::NapiIds, "-N", &["napi-ids"]),
    Flag::value(Opt::Bind, "--bind", &[]),
    Flag::value(Opt::Config, "--config", &[]),
    Flag::value(Opt::DataDir, "--data-dir", &[]),
    Flag::value(Opt::MaxDiskSize, "--max-disk-size", &[]),
    Flag::value(Opt::L2FlushMs, "--l2-flush-ms", &[]),
    Flag::switch(Opt::SyncWrites, "--sync-writes", &[]),
    Flag::switch(Opt::ClearOnStartup, "--clear-on-startup", &[]),
    Flag::switch(Opt::NoWarmup, "--no-warmup", &[]),
    Flag::switch(Opt::NoL2Compression, "--no-l2-compression", &[]),
];

/// `-o` sub-options of memcached 1.6.18 that require a value.
const VALUED_SUBOPTIONS: &[&str] = &[
    "ext_compact_under",
    "ext_drop_under",
    "ext_io_depth",
    "ext_item_age",
    "ext_item_size",
    "ext_low_ttl",
    "ext_max_frag",
    "ext_max_sleep",
    "ext_page_size",
    "ext_path",
    "ext_recache_rate",
    "ext_threads",
    "ext_wbuf_size",
    "hash_algorithm",
    "hashpower",
    "hot_lru_pct",
    "hot_max_factor",
    "idle_timeout",
    "lru_crawler_sleep",
    "lru_crawler_tocrawl",
    "read_buf_mem_limit",
    "slab_automove_freeratio",
    "slab_automove_ratio",
    "slab_automove_window",
    "slab_chunk_max",
    "ssl_ca_cert",
    "ssl_chain_cert",
    "ssl_ciphers",
    "ssl_key",
    "ssl_keyformat",
    "ssl_min_version",
    "ssl_verify_mode",
    "ssl_wbuf_size",
    "tail_repair_time",
    "temporary_ttl",
    "warm_lru_pct",
    "warm_max_factor",
    "watcher_logbuf_size",
    "worker_logbuf_size",
];

/// `-o` sub-options of memcached 1.6.18 that stand alone or take an optional value.
const OTHER_SUBOPTIONS: &[&str] = &[
    "drop_privileges",
    "ext_drop_unread",
    "inline_ascii_resp",
    "lru_crawler",
    "lru_maintainer",
    "maxconns_fast",
    "modern",
    "no_chunked_items",
    "no_drop_privileges",
    "no_hashexpand",
    "no_inline_ascii_resp",
    "no_lru_crawler",
    "no_lru_maintainer",
    "no_maxconns_fast",
    "no_modern",
    "no_slab_automove",
    "no_slab_reassign",
    "resp_obj_mem_limit",
    "slab_automove",
    "slab_reassign",
    "slab_sizes",
    "sock_cookie_id",
    "ssl_kernel_tls",
    "ssl_session_cache",
    "track_sizes",
];

/// Parses argv (without argv\[0\]): the file named by `--config` first, then the flags
/// on top of it. See the module documentation of [`crate::config`].
pub fn parse_args(args: Vec<OsString>) -> Result<CliAction, ConfigError> {
    let mut args = Arguments::from_vec(normalize(args)?);
    if args.contains("-h") {
        return Ok(CliAction::Help(help_text()));
    }
    if args.contains("-V") {
        return Ok(CliAction::Version(format!(
            "rat_memcached {}",
            env!("CARGO_PKG_VERSION")
        )));
    }
    if args.contains("-i") {
        return Ok(CliAction::Help(license_text()));
    }

    let mut given = Vec::new();
    for flag in FLAGS {
        let occurrences = take(&mut args, flag)?;
        if !occurrences.is_empty() {
            given.push((flag, occurrences));
        }
    }
    reject_leftovers(args.finish())?;

    let mut builder = SettingsBuilder::new();
    let config_files: Vec<&String> = given
        .iter()
        .filter(|(flag, _)| flag.opt == Opt::Config)
        .flat_map(|(_, values)| values)
        .collect();
    match config_files.as_slice() {
        [] => {}
        [path] => file::apply_file(&mut builder, Path::new(path.as_str()))?,
        _ => {
            return Err(ConfigError::new(
                "--config: given more than once; settings come from one file",
            ))
        }
    }

    let mut listen = Vec::new();
    for (flag, values) in &given {
        apply(&mut builder, &mut listen, flag, values)?;
    }
    if !listen.is_empty() {
        builder.listen = listen;
    }
    builder.finish().map(CliAction::Run)
}

/// Rewrites getopt-style arguments into canonical tokens; see the module documentation.
/// Unknown flags and stray arguments pass through unchanged, to be reported by
/// [`reject_leftovers`].
fn normalize(args: Vec<OsString>) -> Result<Vec<OsString>, ConfigError> {
    let mut tokens = Vec::with_capacity(args.len());
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let text = arg
            .into_string()
            .map_err(|raw| ConfigError::new(format!("argument {raw:?} is not valid UTF-8")))?;
        if text == "--" {
            // getopt stops here; nothing after it is a flag, and we take no operands.
            tokens.push(text);
            break;
        }
        if let Some(long) = text.strip_prefix("--") {
            let (name, inline) = match long.split_once('=') {
                Some((name, value)) => (name, Some(value.to_string())),
                None => (long, None),
            };
            match FLAGS.iter().find(|flag| flag.is_long(name)) {
                None => tokens.push(text),
                Some(flag) if flag.takes_value => {
                    let value = match inline {
                        Some(value) => value,
                        None => next_value(&mut args, &format!("--{name}"))?,
                    };
                    tokens.push(format!("{}={value}", flag.key));
                }
                // memcached declares --verbose with an optional value that it ignores.
                Some(flag) if inline.is_none() || flag.opt == Opt::Verbose => {
                    tokens.push(flag.key.to_string())
                }
                Some(_) => {
                    return Err(ConfigError::new(format!("--{name}: takes no value")));
                }
            }
        } else if text.len() > 1 && text.starts_with('-') {
            let cluster = &text[1..];
            for (at, letter) in cluster.char_indices() {
                match FLAGS.iter().find(|flag| flag.short() == Some(letter)) {
                    None => tokens.push(format!("-{letter}")),
                    Some(flag) if flag.takes_value => {
                        let glued = &cluster[at + letter.len_utf8()..];
                        let value = if glued.is_empty() {
                            next_value(&mut args, flag.key)?
                        } else {
                            glued.to_string()
                        };
                        tokens.push(format!("{}={value}", flag.key));
                        break;
                    }
                    Some(flag) => tokens.push(flag.key.to_string()),
                }
            }
        } else {
            tokens.push(text);
        }
    }
    Ok(tokens.into_iter().map(OsString::from).collect())
}

/// The argument after a flag that needs one, taken whatever it looks like (as getopt does).
fn next_value(args: &mut std::vec::IntoIter<OsString>, name: &str) -> Result<String, ConfigError> {
    let value = args
        .next()
        .ok_or_else(|| ConfigError::new(format!("{name}: missing value")))?;
    value
        .into_string()
        .map_err(|raw| ConfigError::new(format!("{name}: value {raw:?} is not valid UTF-8")))
}

/// All occurrences of one flag: its values, or one empty string per switch occurrence.
fn take(args: &mut Arguments, flag: &Flag) -> Result<Vec<String>, ConfigError> {
    if flag.takes_value {
        args.values_from_str::<_, String>(flag.key)
            .map_err(|_| ConfigError::new(format!("{}: missing value", flag.key)))
    } else {
        let mut occurrences = Vec::new();
        while args.contains(flag.key) {
            occurrences.push(String::new());
        }
        Ok(occurrences)
    }
}

/// Reports the first argument no flag claimed.
fn reject_leftovers(leftovers: Vec<OsString>) -> Result<(), ConfigError> {
    let Some(first) = leftovers.first() else {
        return Ok(());
    };
    let text = first.to_string_lossy();
    if text.len() > 1 && text.starts_with('-') && text != "--" {
        let name = text.split('=').next().unwrap_or(&text);
        Err(ConfigError::new(format!(
            "unknown flag '{name}'; run 'rat_memcached --help' for the list of flags"
        )))
    } else {
        Err(ConfigError::new(format!(
            "unexpected argument '{text}'; rat_memcached takes only flags \
             (run 'rat_memcached --help')"
        )))
    }
}

/// Writes one flag, given `values` (one per occurrence), into `builder`; listen
/// addresses go to `listen` so that `-l` and `--bind` together replace the file's list.
fn apply(
    builder: &mut SettingsBuilder,
    listen: &mut Vec<Sourced<HostPort>>,
    flag: &Flag,
    values: &[String],
) -> Result<(), ConfigError> {
    let key = flag.key;
    // getopt semantics: the last occurrence of a flag wins.
    let last = values.last().map(String::as_str).unwrap_or_default();
    let settings = &mut builder.settings;
    match flag.opt {
        // Handled by parse_args before any other flag.
        Opt::Help | Opt::License | Opt::Version | Opt::Config => {}
        Opt::Port => builder.port = Sourced::new(parse_port(key, last)?, format!("-p {last}")),
        Opt::UdpPort => {
            builder.udp_port = Sourced::new(parse_port(key, last)?, format!("-U {last}"))
        }
        Opt::UnixSocket => settings.unix_socket = Some(PathBuf::from(last)),
        Opt::UnixMask => {
            settings.unix_socket_mask = units::parse_octal_mask(last).ok_or_else(|| {
                ConfigError::new(format!("-a: expected {}, got '{last}'", units::MASK_SYNTAX))
            })?
        }
        Opt::EnableSasl => {
            settings.sasl_enabled = true;
            settings.sasl_password_file = std::env::var_os(SASL_PASSWORD_FILE_VAR)
                .filter(|path| !path.is_empty())
                .map(PathBuf::from);
        }
        Opt::AuthFile => settings.auth_file = Some(PathBuf::from(last)),
        Opt::EnableSsl => {
            return Err(ConfigError::new(
                "-Z: TLS is not available yet in rat_memcached; \
                 refusing to serve without the encryption it asks for",
            ))
        }
        Opt::Listen => {
            for value in values {
                for item in value.split(',') {
                    let host_port = units::parse_host_port(item)
                        .map_err(|problem| ConfigError::new(format!("-l {value}: {problem}")))?;
                    listen.push(Sourced::new(host_port, format!("-l {item}")));
                }
            }
        }
        Opt::Bind => {
            for value in values {
                let host_port = units::parse_host_port(value)
                    .map_err(|problem| ConfigError::new(format!("--bind {value}: {problem}")))?;
                if host_port.port.is_none() {
                    return Err(ConfigError::new(format!(
                        "--bind {value}: expected HOST:PORT, the port is missing"
                    )));
                }
                listen.push(Sourced::new(host_port, format!("--bind {value}")));
            }
        }
        Opt::EnableShutdown => settings.enable_shutdown = true,
        Opt::Daemon => settings.daemonize = true,
        Opt::User => settings.run_as_user = Some(last.to_string()),
        Opt::PidFile => settings.pid_file = Some(PathBuf::from(last)),
        Opt::DisableEvictions => settings.evictions_enabled = false,
        Opt::Eviction => {
            settings.eviction = EvictionStrategy::from_name(last).ok_or_else(|| {
                ConfigError::new(format!(
                    "{key} {last}: unknown eviction strategy; expected lru, lfu, fifo or hybrid"
                ))
            })?
        }
        Opt::DisableCas => settings.cas_enabled = false,
        Opt::DisableFlushAll => settings.flush_enabled = false,
        Opt::Verbose => settings.verbosity = u8::try_from(values.len()).unwrap_or(u8::MAX),
        Opt::MemoryLimit => {
            let megabytes = units::parse_megabytes(last)
                .ok_or_else(|| ConfigError::new(format!("-m: expected megabytes, got '{last}'")))?;
            builder.memory_mb = Sourced::new(megabytes, format!("-m {last}"));
        }
        Opt::MaxItemSize => {
            let size = units::parse_size(last).ok_or_else(|| {
                ConfigError::new(format!("-I: expected {}, got '{last}'", units::SIZE_SYNTAX))
            })?;
            builder.max_item_size = Sourced::new(size, format!("-I {last}"));
        }
        Opt::ConnLimit => {
            settings.max_connections =
                parse_count(key, last, "Maximum connections must be greater than 0")?
        }
        Opt::MaxReqsPerEvent => {
            settings.reqs_per_event = parse_count(
                key,
                last,
                "Number of requests per event must be greater than 0",
            )?
        }
        Opt::Threads => {
            let threads = parse_count(key, last, "Number of threads must be greater than 0")?;
            builder.set_threads(threads, &format!("-t {last}"));
        }
        Opt::Protocol => {
            builder.protocol_given = true;
            builder.settings.protocol = match last {
                "auto" => ProtocolMode::Auto,
                "ascii" => ProtocolMode::Ascii,
                "binary" => ProtocolMode::Binary,
                _ => {
                    return Err(ConfigError::new(format!(
                        "-B {last}: Invalid value for binding protocol: {last} \
                         -- should be one of auto, binary, or ascii"
                    )))
                }
            }
        }
        Opt::SlabGrowthFactor => {
            if !last.parse::<f64>().is_ok_and(|factor| factor > 1.0) {
                return Err(ConfigError::new(format!(
                    "-f {last}: Factor must be greater than 1"
                )));
            }
            builder.notice(no_effect(flag, Some(last)));
        }
        Opt::SlabMinSize => {
            parse_count(key, last, "Chunk size must be greater than 0")?;
            builder.notice(no_effect(flag, Some(last)));
        }
        Opt::ListenBacklog => {
            let backlog = parse_count(key, last, "expected a number greater than 0")?;
            settings.listen_backlog = u32::try_from(backlog).unwrap_or(u32::MAX);
        }
        Opt::NapiIds => {
            parse_count(key, last, "expected a number greater than 0")?;
            builder.notice(no_effect(flag, Some(last)));
        }
        Opt::PrefixDelimiter | Opt::MemoryFile => builder.notice(no_effect(flag, Some(last))),
        Opt::EnableCoredumps
        | Opt::LockMemory
        | Opt::EnableLargePages
        | Opt::DisableDumping
        | Opt::DisableWatch => builder.notice(no_effect(flag, None)),
        Opt::Extended => {
            for value in values {
                extended_options(builder, value)?;
            }
        }
        Opt::DataDir => settings.l2.data_dir = Some(PathBuf::from(last)),
        Opt::MaxDiskSize => {
            let megabytes = units::parse_megabytes(last).ok_or_else(|| {
                ConfigError::new(format!("{key}: expected megabytes, got '{last}'"))
            })?;
            settings.l2.max_disk_size_mb = units::check_megabytes(megabytes)
                .map_err(|problem| ConfigError::new(format!("{key} {last}: {problem}")))?;
        }
        Opt::L2FlushMs => {
            settings.l2.flush_interval_ms = units::parse_flush_interval(last).ok_or_else(|| {
                ConfigError::new(format!(
                    "{key}: expected {}, got '{last}'",
                    units::FLUSH_INTERVAL_SYNTAX
                ))
            })?
        }
        Opt::SyncWrites => settings.l2.sync_writes = true,
        Opt::ClearOnStartup => settings.l2.clear_on_startup = true,
        Opt::NoWarmup => settings.l2.warmup = false,
        Opt::NoL2Compression => settings.l2.enable_compression = false,
    }
    Ok(())
}

fn no_effect(flag: &Flag, value: Option<&str>) -> String {
    format!(
        "flag {} has no effect in rat_memcached",
        flag.describe(value)
    )
}

fn parse_port(key: &str, text: &str) -> Result<u16, ConfigError> {
    text.parse().map_err(|_| {
        ConfigError::new(format!(
            "{key}: expected a port number 0-65535, got '{text}'"
        ))
    })
}

/// A count that must be positive; `zero_message` is memcached's wording for zero.
fn parse_count(key: &str, text: &str, zero_message: &str) -> Result<usize, ConfigError> {
    match units::parse_unsigned(text).map(usize::try_from) {
        Some(Ok(0)) => Err(ConfigError::new(format!("{key} {text}: {zero_message}"))),
        Some(Ok(count)) => Ok(count),
        _ => Err(ConfigError::new(format!(
            "{key}: expected a positive number, got '{text}'"
        ))),
    }
}

/// Checks `-o` sub-options against memcached's list; none has an effect here.
fn extended_options(builder: &mut SettingsBuilder, value: &str) -> Result<(), ConfigError> {
    for item in value.split(',').filter(|item| !item.is_empty()) {
        let (name, argument) = match item.split_once('=') {
            Some((name, argument)) => (name, Some(argument)),
            None => (item, None),
        };
        if VALUED_SUBOPTIONS.contains(&name) {
            if argument.is_none_or(str::is_empty) {
                return Err(ConfigError::new(format!(
                    "-o {value}: Missing {name} argument"
                )));
            }
        } else if !OTHER_SUBOPTIONS.contains(&name) {
            return Err(ConfigError::new(format!(
                "-o {value}: Illegal suboption \"{name}\""
            )));
        }
        builder.notice(format!("flag -o {item} has no effect in rat_memcached"));
    }
    Ok(())
}

/// The `--help` text. Defaults are printed from the constants the code uses.
pub fn help_text() -> String {
    format!(
        "\
rat_memcached {version}: a memcached-compatible cache server

Usage: rat_memcached [FLAGS]

With no flags it serves the memcached protocols on 127.0.0.1:{port} with {memory} MB of
item memory, {conns} connections, a 1 MB item limit and one worker thread per CPU
core. The persistent L2 tier (melange_db on disk) is off by default; --data-dir or
[melange_db] data_dir in the config file turns it on.

Listening:
  -p, --port=<num>              TCP port (default: {port}; 0 lets the system choose)
  -l, --listen=<addr>           address(es) to listen on, comma-separated and repeatable:
                                HOST, HOST:PORT, [IPV6] or [IPV6]:PORT (default: 127.0.0.1)
      --bind=<host:port>        listen on HOST:PORT; repeatable, adds to -l
  -U, --udp-port=<num>          UDP port on the -l hosts (default: 0, off); a -l item
                                with its own port serves UDP there, as in memcached
  -s, --unix-socket=<file>      listen on this unix socket instead of TCP and UDP
                                (Unix only)
  -a, --unix-mask=<mask>        permission bits of the unix socket, in octal
                                (default: 700)
  -c, --conn-limit=<num>        max simultaneous connections (default: {conns})
  -b, --listen-backlog=<num>    connections waiting to be accepted, per listener; the
                                kernel caps it at net.core.somaxconn (default: {backlog})
  -B, --protocol=<name>         auto, ascii or binary (default: auto, per connection)

Memory:
  -m, --memory-limit=<mb>       item memory in megabytes (default: {memory})
  -I, --max-item-size=<size>    max item size in bytes, or with a k or m suffix
                                (default: 1m, min: 1k, max: 1024m and half of -m)
  -M, --disable-evictions       return an error when memory is full instead of evicting
      --eviction=<name>         which items make room first: lru (least recently used),
                                lfu (least frequently used, with aging), fifo (oldest
                                write) or hybrid (S3-FIFO: keeps what is used again,
                                resists scans and one-time keys) (default: lru)

Behaviour:
  -A, --enable-shutdown         enable the ascii \"shutdown\" command
  -F, --disable-flush-all       disable the flush_all command
  -C, --disable-cas             disable CAS
  -t, --threads=<num>           worker threads (default: number of CPU cores, {threads} here)
  -R, --max-reqs-per-event=<num> requests served per connection before serving
                                others (default: {reqs})

Persistence (L2 on melange_db):
      --data-dir=<dir>          keep a copy of the cache in a melange_db database in
                                <dir>, so it survives restarts (turns the L2 tier on)
      --max-disk-size=<mb>      disk budget of the database in megabytes; the oldest
                                writes are dropped beyond it (default: {disk})
      --l2-flush-ms=<ms>        fsync written data every <ms> milliseconds, 1-{flush_max}:
                                a crash loses about the last <ms> of writes, more once an
                                fsync takes over half that (stats: l2_last_sync_ms)
                                (default: {flush})
      --sync-writes             fsync every write before acknowledging it
                                (default: off, writes are flushed every --l2-flush-ms)
      --clear-on-startup        empty the database at startup (default: off)
      --no-warmup               do not load memory from the database at startup
                                (default: loaded in the background)
      --no-l2-compression       store values uncompressed (default: LZ4 for values of
                                {threshold} bytes or more)

Authentication (off by default):
  -Y, --auth-file=<file>        text clients must authenticate first: a set whose value
                                is \"user password\", checked against <file>'s
                                user:password lines (at most 8); text protocol only,
                                no UDP
  -S, --enable-sasl             binary clients must authenticate with SASL PLAIN against
                                the user:password file named by MEMCACHED_SASL_PWDB
                                (or -Y's); binary protocol only, no UDP

Process:
  -d, --daemon                  run as a daemon (Unix only)
  -P, --pidfile=<file>          write the process id to <file> (also --pid-file)
  -u, --user=<user>             switch to <user> after start when started as root
  -v, --verbose                 log more: -v info, -vv debug, -vvv trace
                                (default: warnings and errors only, on stderr)
      --config=<file>           read settings from a TOML file; flags override it
  -h, --help                    print this help and exit
  -V, --version                 print the version and exit
  -i, --license                 print the license notice and exit

Accepted for compatibility with memcached 1.6, without effect (a notice is logged):
  -f, -n, -D, -e, -N, -k, -r, -L, -X, -W, and -o sub-options (checked against
  memcached's list)
Refused until implemented, since ignoring it would change how the cache can be
reached: -Z (TLS)

Config file (TOML, every key optional; unknown keys and bad values are errors):
  [server]       listen = [\"HOST:PORT\", ...], port, udp_port, unix_socket,
                 unix_socket_mask (\"700\" or 0o700), max_connections,
                 max_item_size (\"1m\" or bytes), verbosity, enable_shutdown,
                 flush_enabled, cas_enabled, protocol, auth_file
  [cache]        max_memory_mb, max_entries, eviction_strategy (\"lru\", \"lfu\", \"fifo\"
                 or \"hybrid\"), evictions
  [melange_db]   data_dir (turns the L2 tier on), max_disk_size_mb, enable_compression,
                 compression_threshold, flush_interval_ms, batch_size, queue_max_mb,
                 sync_writes, clear_on_startup, warmup, cache_mb
  [ttl]          default_ttl_seconds (for items stored with exptime 0; 0 = never),
                 cleanup_interval_seconds
  [performance]  worker_threads, reqs_per_event, enable_async (no effect)
Commented examples: etc/rat_memcached.toml and the presets next to it in etc/.
",
        version = env!("CARGO_PKG_VERSION"),
        port = DEFAULT_PORT,
        memory = DEFAULT_MEMORY_MB,
        conns = DEFAULT_MAX_CONNECTIONS,
        reqs = DEFAULT_REQS_PER_EVENT,
        backlog = DEFAULT_LISTEN_BACKLOG,
        threads = default_threads(),
        disk = DEFAULT_MAX_DISK_SIZE_MB,
        flush = DEFAULT_L2_FLUSH_INTERVAL_MS,
        flush_max = MAX_L2_FLUSH_INTERVAL_MS,
        threshold = DEFAULT_L2_COMPRESSION_THRESHOLD,
    )
}

/// The `-i` text: memcached prints its license there.
fn license_text() -> String {
    format!(
        "\
rat_memcached {}

This program is free software: you can redistribute it and/or modify it under the
terms of the GNU Lesser General Public License as published by the Free Software
Foundation, either version 3 of the License, or (at your option) any later version.

This program is distributed in the hope that it will be useful, but WITHOUT ANY
WARRANTY; without even the implied warranty of MERCHANTABILITY or FITNESS FOR A
PARTICULAR PURPOSE. See the GNU Lesser General Public License for more details.

The LICENSE file distributed with rat_memcached holds the GNU Lesser General Public
License version 3 and the GNU General Public License version 3 it incorporates.
",
        env!("CARGO_PKG_VERSION")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{L2Settings, Settings};
    use std::net::SocketAddr;

    fn parse(args: &[&str]) -> Result<CliAction, ConfigError> {
        parse_args(args.iter().map(OsString::from).collect())
    }

    fn run(args: &[&str]) -> Settings {
        match parse(args) {
            Ok(CliAction::Run(settings)) => settings,
            other => panic!("{args:?}: {other:?}"),
        }
    }

    fn error(args: &[&str]) -> String {
        match parse(args) {
            Err(error) => error.to_string(),
            other => panic!("{args:?} should fail: {other:?}"),
        }
    }

    fn addresses(list: &[&str]) -> Vec<SocketAddr> {
        list.iter().map(|text| text.parse().unwrap()).collect()
    }

    /// A config file in the system's temporary directory, removed on drop.
    struct TempConfig(PathBuf);

    impl TempConfig {
        fn new(name: &str, text: &str) -> Self {
            let path = std::env::temp_dir()
                .join(format!("rat_memcached-{}-{name}.toml", std::process::id()));
            std::fs::write(&path, text).unwrap();
            TempConfig(path)
        }

        fn path(&self) -> &str {
            self.0.to_str().unwrap()
        }
    }

    impl Drop for TempConfig {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    fn is_l2_flag(opt: Opt) -> bool {
        matches!(
            opt,
            Opt::DataDir
                | Opt::MaxDiskSize
                | Opt::L2FlushMs
                | Opt::SyncWrites
                | Opt::ClearOnStartup
                | Opt::NoWarmup
                | Opt::NoL2Compression
        )
    }

    #[test]
    fn no_flags_give_the_defaults() {
        assert_eq!(run(&[]), Settings::default());
    }

    #[test]
    fn the_documented_command_line_works() {
        let settings = run(&[
            "-p",
            "22122",
            "-l",
            "127.0.0.1",
            "-U",
            "0",
            "-t",
            "2",
            "-m",
            "128",
            "-c",
            "99",
            "-I",
            "2m",
            "-A",
            "-vv",
        ]);
        assert_eq!(settings.listen, addresses(&["127.0.0.1:22122"]));
        assert_eq!(settings.udp_port, 0);
        assert_eq!(settings.threads, 2);
        assert_eq!(settings.max_memory_bytes, 128 * 1024 * 1024);
        assert_eq!(settings.max_connections, 99);
        assert_eq!(settings.max_item_size, 2 * 1024 * 1024);
        assert!(settings.enable_shutdown);
        assert_eq!(settings.verbosity, 2);
        assert!(settings.notices.is_empty());
    }

    #[test]
    fn every_implemented_flag_sets_its_field() {
        let settings = run(&[
            "-F",
            "-C",
            "-M",
            "-B",
            "binary",
            "-R",
            "5",
            "-u",
            "nobody",
            "-d",
            "-P",
            "/run/rat.pid",
        ]);
        assert!(!settings.flush_enabled);
        assert!(!settings.cas_enabled);
        assert!(!settings.evictions_enabled);
        assert_eq!(settings.protocol, ProtocolMode::Binary);
        assert_eq!(settings.reqs_per_event, 5);
        assert_eq!(settings.run_as_user.as_deref(), Some("nobody"));
        assert!(settings.daemonize);
        assert_eq!(settings.pid_file, Some(PathBuf::from("/run/rat.pid")));
        assert_eq!(run(&["-B", "ascii"]).protocol, ProtocolMode::Ascii);
        assert_eq!(run(&["-B", "auto"]).protocol, ProtocolMode::Auto);
    }

    #[test]
    fn long_forms_are_accepted() {
        let settings = run(&[
            "--port=22123",
            "--listen",
            "127.0.0.1",
            "--udp-port=0",
            "--threads=3",
            "--memory-limit",
            "100",
            "--conn-limit=7",
            "--max-item-size=512k",
            "--enable-shutdown",
            "--disable-flush-all",
            "--disable-cas",
            "--disable-evictions",
            "--protocol=ascii",
            "--max-reqs-per-event=9",
            "--user=daemon",
            "--daemon",
            "--pid-file=/tmp/a.pid",
            "--verbose",
        ]);
        assert_eq!(settings.listen, addresses(&["127.0.0.1:22123"]));
        assert_eq!(settings.threads, 3);
        assert_eq!(settings.max_memory_bytes, 100 * 1024 * 1024);
        assert_eq!(settings.max_connections, 7);
        assert_eq!(settings.max_item_size, 512 * 1024);
        assert!(settings.enable_shutdown && !settings.flush_enabled && !settings.cas_enabled);
        assert!(!settings.evictions_enabled);
        assert_eq!(settings.protocol, ProtocolMode::Ascii);
        assert_eq!(settings.reqs_per_event, 9);
        assert_eq!(settings.run_as_user.as_deref(), Some("daemon"));
        assert!(settings.daemonize);
        assert_eq!(settings.pid_file, Some(PathBuf::from("/tmp/a.pid")));
        assert_eq!(settings.verbosity, 1);
        assert_eq!(
            run(&["--pidfile", "/tmp/b.pid"]).pid_file,
            Some(PathBuf::from("/tmp/b.pid"))
        );
    }

    #[test]
    fn getopt_clusters_and_glued_values_work() {
        let settings = run(&["-vvv", "-dAp22124", "-m64", "-t", "1"]);
        assert_eq!(settings.verbosity, 3);
        assert!(settings.daemonize && settings.enable_shutdown);
        assert_eq!(settings.listen, addresses(&["127.0.0.1:22124"]));
        assert_eq!(run(&["-v", "-v"]).verbosity, 2);
        assert_eq!(run(&["--verbose=5"]).verbosity, 1);
    }

    #[test]
    fn values_may_start_with_a_dash() {
        // getopt takes the next argument as the value whatever it looks like.
        assert_eq!(run(&["-u", "-v"]).run_as_user.as_deref(), Some("-v"));
        assert_eq!(run(&["-u", "-v"]).verbosity, 0);
    }

    #[test]
    fn last_occurrence_wins() {
        let settings = run(&["-m", "100", "-m", "200", "-p", "1", "--port=22125"]);
        assert_eq!(settings.max_memory_bytes, 200 * 1024 * 1024);
        assert_eq!(settings.listen, addresses(&["127.0.0.1:22125"]));
    }

    #[test]
    fn listen_lists_and_bind() {
        assert_eq!(
            run(&["-l", "127.0.0.1,127.0.0.2:5000", "-p", "6000"]).listen,
            addresses(&["127.0.0.1:6000", "127.0.0.2:5000"])
        );
        assert_eq!(
            run(&["-l", "127.0.0.1", "-l", "[::1]:7000"]).listen,
            addresses(&["127.0.0.1:11211", "[::1]:7000"])
        );
        assert_eq!(
            run(&["--bind", "127.0.0.1:7001", "--bind=127.0.0.2:7002"]).listen,
            addresses(&["127.0.0.1:7001", "127.0.0.2:7002"])
        );
        assert_eq!(
            run(&["--bind", "127.0.0.1:7001", "-l", "127.0.0.3"]).listen,
            addresses(&["127.0.0.3:11211", "127.0.0.1:7001"])
        );
        assert!(run(&["-l", "localhost", "-p", "7003"])
            .listen
            .contains(&"127.0.0.1:7003".parse().unwrap()));
        assert_eq!(
            error(&["--bind", "127.0.0.1"]),
            "--bind 127.0.0.1: expected HOST:PORT, the port is missing"
        );
        assert_eq!(
            error(&["-l", "127.0.0.1,:5"]),
            "-l 127.0.0.1,:5: missing host in ':5'"
        );
    }

    #[test]
    fn item_size_flag_follows_memcached() {
        assert_eq!(run(&["-I", "1k"]).max_item_size, 1024);
        assert_eq!(run(&["-I", "2097152"]).max_item_size, 2 * 1024 * 1024);
        assert_eq!(run(&["-m", "4096", "-I", "1024m"]).max_item_size, 1 << 30);
        assert_eq!(
            error(&["-I", "512"]),
            "-I 512: Item max size cannot be less than 1024 bytes."
        );
        assert_eq!(
            error(&["-I", "33m"]),
            "-I 33m: Cannot set item size limit higher than 1/2 of memory max. \
             (memory from default -m 64)"
        );
        assert_eq!(
            error(&["-m", "4096", "-I", "1025m"]),
            "-I 1025m: Cannot set item size limit higher than a gigabyte."
        );
        assert_eq!(
            error(&["-I", "1.5m"]),
            "-I: expected a size like 1m, 512k or 1048576, got '1.5m'"
        );
        assert_eq!(
            error(&["-m", "1"]),
            "default -I 1m: Cannot set item size limit higher than 1/2 of memory max. \
             (memory from -m 1)"
        );
    }

    #[test]
    fn each_bad_flag_value_is_named() {
        let cases: &[(&[&str], &str)] = &[
            (&["-m", "x"], "-m: expected megabytes, got 'x'"),
            (&["-m", "0"], "-m: expected megabytes, got '0'"),
            (
                &["-p", "abc"],
                "-p: expected a port number 0-65535, got 'abc'",
            ),
            (
                &["-p", "70000"],
                "-p: expected a port number 0-65535, got '70000'",
            ),
            (&["-U", "x"], "-U: expected a port number 0-65535, got 'x'"),
            (
                &["-c", "0"],
                "-c 0: Maximum connections must be greater than 0",
            ),
            (
                &["-c", "many"],
                "-c: expected a positive number, got 'many'",
            ),
            (
                &["-t", "0"],
                "-t 0: Number of threads must be greater than 0",
            ),
            (
                &["-R", "0"],
                "-R 0: Number of requests per event must be greater than 0",
            ),
            (
                &["-B", "foo"],
                "-B foo: Invalid value for binding protocol: foo -- should be one of auto, \
                 binary, or ascii",
            ),
            (&["-f", "1"], "-f 1: Factor must be greater than 1"),
            (&["-n", "0"], "-n 0: Chunk size must be greater than 0"),
            (&["-p"], "-p: missing value"),
            (&["--port"], "--port: missing value"),
            (&["-l", ""], "-l: missing value"),
            (&["--daemon=yes"], "--daemon: takes no value"),
        ];
        for (args, expected) in cases {
            assert_eq!(error(args), *expected, "{args:?}");
        }
    }

    #[test]
    fn udp_and_unix_socket_flags_are_read() {
        let settings = run(&["-U", "11311", "-s", "/tmp/memcached.sock", "-a", "0770"]);
        assert_eq!(settings.udp_port, 11311);
        assert_eq!(
            settings.unix_socket,
            Some(PathBuf::from("/tmp/memcached.sock"))
        );
        assert_eq!(settings.unix_socket_mask, 0o770);
        let settings = run(&[
            "--udp-port=7",
            "--unix-socket=/run/a.sock",
            "--unix-mask=600",
        ]);
        assert_eq!(settings.udp_port, 7);
        assert_eq!(settings.unix_socket, Some(PathBuf::from("/run/a.sock")));
        assert_eq!(settings.unix_socket_mask, 0o600);
        assert_eq!(
            error(&["-a", "800"]),
            "-a: expected octal permission bits 0-777, like 700 or 0770, got '800'"
        );
        assert_eq!(error(&["-s", ""]), "-s: missing value");
    }

    #[test]
    fn persistence_flags_set_the_l2_settings() {
        assert_eq!(run(&[]).l2, L2Settings::default());
        let settings = run(&[
            "--data-dir",
            "/var/lib/rat",
            "--max-disk-size=2048",
            "--l2-flush-ms",
            "250",
            "--sync-writes",
            "--clear-on-startup",
            "--no-warmup",
            "--no-l2-compression",
        ]);
        assert_eq!(
            settings.l2,
            L2Settings {
                data_dir: Some(PathBuf::from("/var/lib/rat")),
                max_disk_size_mb: 2048,
                enable_compression: false,
                flush_interval_ms: 250,
                sync_writes: true,
                clear_on_startup: true,
                warmup: false,
                ..L2Settings::default()
            }
        );
        assert!(settings.notices.is_empty());
        // Nothing outside the tier changed.
        assert_eq!(
            Settings {
                l2: L2Settings::default(),
                ..settings
            },
            Settings::default()
        );
    }

    #[test]
    fn each_persistence_flag_sets_only_its_field() {
        let l2 = |args: &[&str]| run(args).l2;
        let default = L2Settings::default;
        assert_eq!(
            l2(&["--data-dir=data"]),
            L2Settings {
                data_dir: Some(PathBuf::from("data")),
                ..default()
            }
        );
        assert_eq!(
            l2(&["--max-disk-size", "1"]),
            L2Settings {
                max_disk_size_mb: 1,
                ..default()
            }
        );
        // Like -m, a trailing m is read as megabytes.
        assert_eq!(l2(&["--max-disk-size=500m"]).max_disk_size_mb, 500);
        assert_eq!(
            l2(&["--l2-flush-ms=1"]),
            L2Settings {
                flush_interval_ms: 1,
                ..default()
            }
        );
        assert_eq!(l2(&["--l2-flush-ms=60000"]).flush_interval_ms, 60_000);
        assert_eq!(
            l2(&["--sync-writes"]),
            L2Settings {
                sync_writes: true,
                ..default()
            }
        );
        assert_eq!(
            l2(&["--clear-on-startup"]),
            L2Settings {
                clear_on_startup: true,
                ..default()
            }
        );
        assert_eq!(
            l2(&["--no-warmup"]),
            L2Settings {
                warmup: false,
                ..default()
            }
        );
        assert_eq!(
            l2(&["--no-l2-compression"]),
            L2Settings {
                enable_compression: false,
                ..default()
            }
        );
        assert_eq!(
            l2(&["--data-dir", "a", "--data-dir=b"]).data_dir,
            Some(PathBuf::from("b"))
        );
    }

    #[test]
    fn bad_persistence_flag_values_are_named() {
        let largest = (usize::MAX / units::MEGABYTE) as u64;
        let too_large = (largest + 1).to_string();
        let too_large_message = format!(
            "--max-disk-size {too_large}: {too_large} megabytes do not fit in this \
             machine's address space"
        );
        let cases: &[(&[&str], &str)] = &[
            (&["--data-dir"], "--data-dir: missing value"),
            (&["--data-dir="], "--data-dir: missing value"),
            (
                &["--max-disk-size=0"],
                "--max-disk-size: expected megabytes, got '0'",
            ),
            (
                &["--max-disk-size", "1g"],
                "--max-disk-size: expected megabytes, got '1g'",
            ),
            (
                &["--max-disk-size", "-5"],
                "--max-disk-size: expected megabytes, got '-5'",
            ),
            (&["--max-disk-size", &too_large], &too_large_message),
            (
                &["--l2-flush-ms=0"],
                "--l2-flush-ms: expected a number of milliseconds 1-60000, got '0'",
            ),
            (
                &["--l2-flush-ms=60001"],
                "--l2-flush-ms: expected a number of milliseconds 1-60000, got '60001'",
            ),
            (
                &["--l2-flush-ms", "fast"],
                "--l2-flush-ms: expected a number of milliseconds 1-60000, got 'fast'",
            ),
            (&["--l2-flush-ms"], "--l2-flush-ms: missing value"),
            (&["--sync-writes=yes"], "--sync-writes: takes no value"),
            (&["--no-warmup=1"], "--no-warmup: takes no value"),
            (
                &["--warmup"],
                "unknown flag '--warmup'; run 'rat_memcached --help' for the list of flags",
            ),
        ];
        for (args, expected) in cases {
            assert_eq!(error(args), *expected, "{args:?}");
        }
    }

    #[test]
    fn persistence_flags_override_the_config_file() {
        let config = TempConfig::new(
            "l2",
            "[melange_db]\ndata_dir = \"/srv/from-file\"\nmax_disk_size_mb = 100\n\
             enable_compression = true\nflush_interval_ms = 1000\nsync_writes = false\n\
             clear_on_startup = false\nwarmup = true\nbatch_size = 16\n",
        );
        let from_file = run(&["--config", config.path()]);
        assert_eq!(
            from_file.l2,
            L2Settings {
                data_dir: Some(PathBuf::from("/srv/from-file")),
                max_disk_size_mb: 100,
                flush_interval_ms: 1000,
                batch_size: 16,
                ..L2Settings::default()
            }
        );

        let overridden = run(&[
            "--data-dir=/srv/from-flag",
            "--config",
            config.path(),
            "--max-disk-size=200",
            "--l2-flush-ms=5",
            "--sync-writes",
            "--clear-on-startup",
            "--no-warmup",
            "--no-l2-compression",
        ]);
        assert_eq!(
            overridden.l2,
            L2Settings {
                data_dir: Some(PathBuf::from("/srv/from-flag")),
                max_disk_size_mb: 200,
                enable_compression: false,
                flush_interval_ms: 5,
                sync_writes: true,
                clear_on_startup: true,
                warmup: false,
                // No flag sets it, so the file's value stays.
                batch_size: 16,
                ..L2Settings::default()
            }
        );
    }

    #[test]
    fn tls_is_refused() {
        assert!(error(&["--enable-ssl"]).starts_with("-Z: TLS is not available yet"));
    }

    #[test]
    fn authentication_flags_choose_the_protocol_as_in_memcached() {
        let text = run(&["--auth-file=/etc/auth"]);
        assert_eq!(text.auth_file, Some(PathBuf::from("/etc/auth")));
        assert_eq!(text.protocol, ProtocolMode::Ascii);
        assert!(!text.sasl_enabled);
        assert_eq!(
            run(&["-Y", "/a", "-B", "ascii"]).protocol,
            ProtocolMode::Ascii
        );

        let sasl = run(&["-S"]);
        assert!(sasl.sasl_enabled);
        assert_eq!(sasl.protocol, ProtocolMode::Binary);
        assert_eq!(sasl.auth_file, None);
        assert_eq!(run(&["-S", "-B", "binary"]).protocol, ProtocolMode::Binary);
        // With both, text authentication wins, as memcached applies it last.
        assert_eq!(run(&["-S", "-Y", "/a"]).protocol, ProtocolMode::Ascii);

        assert_eq!(
            error(&["-Y", "/a", "-B", "auto"]),
            "-Y (auth_file): You cannot allow the BINARY protocol while using ascii authentication tokens."
        );
        assert_eq!(
            error(&["-S", "-B", "ascii"]),
            "-S: You cannot allow the ASCII protocol while using SASL."
        );
        assert_eq!(
            error(&["-Y", "/a", "-U", "11211"]),
            "-Y (auth_file): Cannot use UDP with ascii authentication enabled (-U 0 to disable)"
        );
        assert_eq!(
            error(&["-S", "-U", "11211"]),
            "-S: Cannot enable UDP while using binary SASL authentication."
        );
    }

    #[test]
    fn unknown_flags_and_arguments_are_errors() {
        assert_eq!(
            error(&["-Q"]),
            "unknown flag '-Q'; run 'rat_memcached --help' for the list of flags"
        );
        assert_eq!(
            error(&["-vQ"]),
            "unknown flag '-Q'; run 'rat_memcached --help' for the list of flags"
        );
        assert_eq!(
            error(&["--memory=64"]),
            "unknown flag '--memory'; run 'rat_memcached --help' for the list of flags"
        );
        assert_eq!(
            error(&["-m", "64", "128"]),
            "unexpected argument '128'; rat_memcached takes only flags \
             (run 'rat_memcached --help')"
        );
        assert!(error(&["--", "-p", "1"]).starts_with("unexpected argument '--'"));
    }

    #[test]
    fn compatibility_flags_are_accepted_with_notices() {
        let settings = run(&[
            "-f",
            "1.25",
            "-n",
            "48",
            "-D",
            ":",
            "-b",
            "2048",
            "-e",
            "/dev/shm/mc",
            "-N",
            "2",
            "-k",
            "-r",
            "-L",
            "-X",
            "-W",
        ]);
        assert_eq!(settings.listen_backlog, 2048);
        assert_eq!(
            settings.notices,
            [
                "flag -r (--enable-coredumps) has no effect in rat_memcached",
                "flag -k (--lock-memory) has no effect in rat_memcached",
                "flag -f 1.25 (--slab-growth-factor) has no effect in rat_memcached",
                "flag -n 48 (--slab-min-size) has no effect in rat_memcached",
                "flag -L (--enable-largepages) has no effect in rat_memcached",
                "flag -D : has no effect in rat_memcached",
                "flag -X (--disable-dumping) has no effect in rat_memcached",
                "flag -W (--disable-watch) has no effect in rat_memcached",
                "flag -e /dev/shm/mc (--memory-file) has no effect in rat_memcached",
                "flag -N 2 (--napi-ids) has no effect in rat_memcached",
            ]
            .map(String::from)
        );
        // Apart from the notices and the backlog, nothing changed.
        assert_eq!(
            Settings {
                notices: Vec::new(),
                listen_backlog: DEFAULT_LISTEN_BACKLOG,
                ..settings
            },
            Settings::default()
        );
    }

    #[test]
    fn extended_options_are_checked_against_memcached() {
        let settings = run(&[
            "-o",
            "modern,hashpower=20,ext_path=/mnt/d1/extstore:1G",
            "--extended=no_lru_crawler",
        ]);
        assert_eq!(
            settings.notices,
            [
                "flag -o modern has no effect in rat_memcached",
                "flag -o hashpower=20 has no effect in rat_memcached",
                "flag -o ext_path=/mnt/d1/extstore:1G has no effect in rat_memcached",
                "flag -o no_lru_crawler has no effect in rat_memcached",
            ]
            .map(String::from)
        );
        assert_eq!(
            error(&["-o", "idle_timeout=5,foo"]),
            "-o idle_timeout=5,foo: Illegal suboption \"foo\""
        );
        assert_eq!(
            error(&["-o", "hashpower"]),
            "-o hashpower: Missing hashpower argument"
        );
    }

    #[test]
    fn help_version_and_license() {
        let CliAction::Help(help) = parse(&["--help"]).unwrap() else {
            panic!("--help should print help");
        };
        assert_eq!(parse(&["-h"]).unwrap(), CliAction::Help(help.clone()));
        assert!(help.contains("127.0.0.1:11211"));
        assert!(help.contains("64 MB"));
        assert!(help.contains(
            "The persistent L2 tier (melange_db on disk) is off by default; --data-dir or\n\
             [melange_db] data_dir in the config file turns it on."
        ));
        assert!(!help.contains("not built yet"));
        let persistence = help
            .split_once("Persistence (L2 on melange_db):\n")
            .map(|(_, rest)| rest.split("\n\n").next().unwrap_or_default())
            .expect("--help has a persistence group");
        for flag in FLAGS.iter().filter(|flag| is_l2_flag(flag.opt)) {
            assert!(
                persistence.contains(&format!("      {}", flag.key)),
                "{} is not in the persistence group",
                flag.key
            );
        }
        for default in [
            format!("(default: {DEFAULT_MAX_DISK_SIZE_MB})"),
            format!("1-{MAX_L2_FLUSH_INTERVAL_MS}:"),
            format!("(default: {DEFAULT_L2_FLUSH_INTERVAL_MS})"),
            format!("{DEFAULT_L2_COMPRESSION_THRESHOLD} bytes or more"),
        ] {
            assert!(persistence.contains(&default), "{default} in {persistence}");
        }
        assert!(help.contains("etc/rat_memcached.toml"));
        for flag in FLAGS {
            let key = flag.key;
            let mentioned = ["\n", " "].iter().any(|before| {
                [",", " ", "="]
                    .iter()
                    .any(|after| help.contains(&format!("{before}{key}{after}")))
            });
            assert!(mentioned, "--help does not mention {key}");
        }
        let expected_version = format!("rat_memcached {}", env!("CARGO_PKG_VERSION"));
        assert_eq!(
            parse(&["--version"]).unwrap(),
            CliAction::Version(expected_version.clone())
        );
        assert_eq!(
            parse(&["-V"]).unwrap(),
            CliAction::Version(expected_version)
        );
        let CliAction::Help(license) = parse(&["-i"]).unwrap() else {
            panic!("-i should print the license notice");
        };
        assert!(license.contains("GNU Lesser General Public License"));
    }

    #[test]
    fn flags_override_the_config_file() {
        let config = TempConfig::new(
            "override",
            "[server]\nlisten = [\"127.0.0.1\"]\nport = 12100\nmax_connections = 10\n\
             [cache]\nmax_memory_mb = 32\n[performance]\nworker_threads = 2\n",
        );
        let from_file = run(&["--config", config.path()]);
        assert_eq!(from_file.listen, addresses(&["127.0.0.1:12100"]));
        assert_eq!(from_file.max_connections, 10);
        assert_eq!(from_file.max_memory_bytes, 32 * 1024 * 1024);
        assert_eq!(from_file.threads, 2);

        let overridden = run(&[
            "-p",
            "12200",
            "-m",
            "48",
            "--config",
            config.path(),
            "-t",
            "5",
        ]);
        assert_eq!(overridden.listen, addresses(&["127.0.0.1:12200"]));
        assert_eq!(overridden.max_connections, 10);
        assert_eq!(overridden.max_memory_bytes, 48 * 1024 * 1024);
        assert_eq!(overridden.threads, 5);

        let relisten = run(&["--config", config.path(), "--bind", "127.0.0.2:12300"]);
        assert_eq!(relisten.listen, addresses(&["127.0.0.2:12300"]));
    }

    #[test]
    fn cross_checks_run_after_flags_override_the_file() {
        let config = TempConfig::new(
            "cross",
            "[server]\nmax_item_size = \"8m\"\n[cache]\nmax_memory_mb = 8\n",
        );
        let message = error(&["--config", config.path()]);
        assert!(message.contains("[server] max_item_size = 8388608: Cannot set item size limit"));
        let memory_origin = format!(
            "(memory from config {}: [cache] max_memory_mb = 8)",
            config.path()
        );
        assert!(message.ends_with(&memory_origin), "{message}");
        assert_eq!(
            run(&["--config", config.path(), "-m", "16"]).max_item_size,
            8 * 1024 * 1024
        );
    }

    #[test]
    fn config_errors_name_file_and_key() {
        let config = TempConfig::new("bad", "[cache]\nmax_memory_mb = \"abc\"\n");
        assert_eq!(
            error(&["--config", config.path()]),
            format!(
                "config {}: [cache] max_memory_mb: expected a positive integer, got string \"abc\"",
                config.path()
            )
        );
        let strategy = TempConfig::new("lfu", "[cache]\neviction_strategy = \"lfu\"\n");
        assert_eq!(
            run(&["--config", strategy.path()]).eviction,
            EvictionStrategy::Lfu
        );
        assert_eq!(
            run(&["--config", strategy.path(), "--eviction", "s3fifo"]).eviction,
            EvictionStrategy::Hybrid
        );
        assert_eq!(
            error(&["--eviction", "random"]),
            "--eviction random: unknown eviction strategy; expected lru, lfu, fifo or hybrid"
        );
    }

    #[test]
    fn config_may_be_given_once() {
        assert_eq!(
            error(&["--config", "a.toml", "--config=b.toml"]),
            "--config: given more than once; settings come from one file"
        );
    }
}
