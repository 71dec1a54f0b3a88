//! Assembly of [`Settings`] from layers, and the checks that need the merged result.
//!
//! The config file and the flags both write into one [`SettingsBuilder`]; the later
//! layer simply overwrites. Values whose validity depends on other values (the item size
//! limit depends on the memory limit, a listen address without a port takes `-p`) are
//! kept together with a description of where they came from, so that
//! [`SettingsBuilder::finish`] can check them once and blame the right flag or key.

use std::net::{SocketAddr, ToSocketAddrs};

use super::units::{self, HostPort};
use super::{
    ConfigError, ProtocolMode, Settings, DEFAULT_MAX_ITEM_SIZE, DEFAULT_MEMORY_MB, DEFAULT_PORT,
};

/// memcached's `ITEM_SIZE_MAX_LOWER_LIMIT`.
const ITEM_SIZE_LOWER_LIMIT: usize = 1024;
/// memcached's `ITEM_SIZE_MAX_UPPER_LIMIT`: one gigabyte.
const ITEM_SIZE_UPPER_LIMIT: usize = 1024 * 1024 * 1024;
/// Above this many worker threads memcached prints a warning, and so do we.
const MANY_THREADS: usize = 64;

/// A value and a description of where it was set, e.g. `-I 2m` or
/// `config etc/a.toml: [server] max_item_size = 2097152`.
#[derive(Clone, Debug)]
pub(super) struct Sourced<T> {
    pub(super) value: T,
    pub(super) origin: String,
}

impl<T> Sourced<T> {
    pub(super) fn new(value: T, origin: impl Into<String>) -> Self {
        Sourced {
            value,
            origin: origin.into(),
        }
    }
}

/// Settings being assembled; see the module documentation.
pub(super) struct SettingsBuilder {
    /// Fields that need no cross-checks are written here directly.
    pub(super) settings: Settings,
    /// Listen addresses before resolution; empty means the default host.
    pub(super) listen: Vec<Sourced<HostPort>>,
    /// Port for listen addresses that do not name one.
    pub(super) port: Sourced<u16>,
    pub(super) udp_port: Sourced<u16>,
    pub(super) memory_mb: Sourced<u64>,
    pub(super) max_item_size: Sourced<usize>,
    /// Whether `-B` or `[server] protocol` chose the protocol; authentication
    /// chooses it otherwise.
    pub(super) protocol_given: bool,
}

impl SettingsBuilder {
    pub(super) fn new() -> Self {
        SettingsBuilder {
            settings: Settings::default(),
            listen: Vec::new(),
            port: Sourced::new(DEFAULT_PORT, format!("default -p {DEFAULT_PORT}")),
            udp_port: Sourced::new(0, "default -U 0"),
            memory_mb: Sourced::new(DEFAULT_MEMORY_MB, format!("default -m {DEFAULT_MEMORY_MB}")),
            max_item_size: Sourced::new(DEFAULT_MAX_ITEM_SIZE, "default -I 1m"),
            protocol_given: false,
        }
    }

    /// Sets the worker thread count, warning like memcached does about large counts.
    pub(super) fn set_threads(&mut self, threads: usize, origin: &str) {
        if threads > MANY_THREADS {
            self.notice(format!(
                "{origin}: setting a high number of worker threads is not recommended; \
                 set this value to the number of cores in your machine or less"
            ));
        }
        self.settings.threads = threads;
    }

    /// Records a startup message for the operator.
    pub(super) fn notice(&mut self, message: String) {
        self.settings.notices.push(message);
    }

    /// Runs the checks that need every layer and resolves the listen addresses.
    pub(super) fn finish(self) -> Result<Settings, ConfigError> {
        let mut settings = self.settings;

        settings.udp_port = self.udp_port.value;
        if settings.unix_socket.is_some() && !cfg!(unix) {
            return Err(ConfigError::new(
                "-s: unix sockets are only available on Unix",
            ));
        }

        let memory_bytes = units::megabytes_to_bytes(self.memory_mb.value).ok_or_else(|| {
            ConfigError::new(format!(
                "{}: {} megabytes do not fit in this machine's address space",
                self.memory_mb.origin, self.memory_mb.value
            ))
        })?;
        settings.max_memory_bytes = memory_bytes;

        check_item_size(&self.max_item_size, &self.memory_mb, memory_bytes)?;
        settings.max_item_size = self.max_item_size.value;

        settings.protocol = auth_protocol(&settings, self.protocol_given)?;

        settings.listen = resolve_listen(&self.listen, &self.port)?;
        if settings.udp_port != 0 {
            settings.udp_listen = resolve_listen(&self.listen, &self.udp_port)?;
        }

        if settings.daemonize && !cfg!(unix) {
            return Err(ConfigError::new(
                "-d: running as a daemon is only available on Unix",
            ));
        }
        Ok(settings)
    }
}

/// The protocol authentication leaves, checked as memcached checks it: SASL
/// is binary-only, text authentication text-only, neither works over UDP,
/// and with both the text one wins (memcached applies it last).
fn auth_protocol(settings: &Settings, protocol_given: bool) -> Result<ProtocolMode, ConfigError> {
    let mut protocol = settings.protocol;
    if settings.sasl_enabled {
        if !protocol_given {
            protocol = ProtocolMode::Binary;
        } else if protocol != ProtocolMode::Binary {
            return Err(ConfigError::new(
                "-S: You cannot allow the ASCII protocol while using SASL.",
            ));
        }
        if settings.udp_port != 0 {
            return Err(ConfigError::new(
                "-S: Cannot enable UDP while using binary SASL authentication.",
            ));
        }
    }
    if settings.auth_file.is_some() {
        if !protocol_given {
            protocol = ProtocolMode::Ascii;
        } else if protocol != ProtocolMode::Ascii {
            return Err(ConfigError::new(
                "-Y (auth_file): You cannot allow the BINARY protocol while using ascii authentication tokens.",
            ));
        }
        if settings.udp_port != 0 {
            return Err(ConfigError::new(
                "-Y (auth_file): Cannot use UDP with ascii authentication enabled (-U 0 to disable)",
            ));
        }
    }
    Ok(protocol)
}

/// memcached 1.6's checks of `-I`, in its order and with its words.
///
/// memcached further requires the limit to be at least, and a multiple of, its slab
/// chunk size (512 KB unless `-o slab_chunk_max` changes it), so it refuses `-I 1k` and
/// `-I 1000000`. That rule comes from its slab allocator, which this store does not
/// have, so it is not enforced here.
fn check_item_size(
    item_size: &Sourced<usize>,
    memory_mb: &Sourced<u64>,
    memory_bytes: usize,
) -> Result<(), ConfigError> {
    let problem = if item_size.value < ITEM_SIZE_LOWER_LIMIT {
        "Item max size cannot be less than 1024 bytes.".to_string()
    } else if item_size.value > memory_bytes / 2 {
        format!(
            "Cannot set item size limit higher than 1/2 of memory max. (memory from {})",
            memory_mb.origin
        )
    } else if item_size.value > ITEM_SIZE_UPPER_LIMIT {
        "Cannot set item size limit higher than a gigabyte.".to_string()
    } else {
        return Ok(());
    };
    Err(ConfigError::new(format!("{}: {problem}", item_size.origin)))
}

/// Resolves host names and fills in the default port; duplicates are dropped so that
/// `-l localhost -l 127.0.0.1` does not try to bind one address twice.
fn resolve_listen(
    specs: &[Sourced<HostPort>],
    port: &Sourced<u16>,
) -> Result<Vec<SocketAddr>, ConfigError> {
    let default_host = [Sourced::new(
        HostPort {
            host: "127.0.0.1".to_string(),
            port: None,
        },
        "default -l 127.0.0.1",
    )];
    let specs = if specs.is_empty() {
        &default_host[..]
    } else {
        specs
    };

    let mut addresses = Vec::new();
    for spec in specs {
        let HostPort {
            host,
            port: own_port,
        } = &spec.value;
        let port = own_port.unwrap_or(port.value);
        let resolved: Vec<SocketAddr> = (host.as_str(), port)
            .to_socket_addrs()
            .map_err(|error| {
                ConfigError::new(format!("{}: cannot resolve '{host}': {error}", spec.origin))
            })?
            .collect();
        if resolved.is_empty() {
            return Err(ConfigError::new(format!(
                "{}: '{host}' resolves to no address",
                spec.origin
            )));
        }
        for address in resolved {
            if !addresses.contains(&address) {
                addresses.push(address);
            }
        }
    }
    Ok(addresses)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(host: &str, port: Option<u16>) -> Sourced<HostPort> {
        Sourced::new(
            HostPort {
                host: host.to_string(),
                port,
            },
            format!("-l {host}"),
        )
    }

    #[test]
    fn empty_builder_gives_the_defaults() {
        assert_eq!(
            SettingsBuilder::new().finish().unwrap(),
            Settings::default()
        );
    }

    #[test]
    fn listen_items_take_the_port_only_when_they_have_none() {
        let mut builder = SettingsBuilder::new();
        builder.listen = vec![host("127.0.0.1", None), host("::1", Some(7))];
        builder.port = Sourced::new(4000, "-p 4000");
        let settings = builder.finish().unwrap();
        assert_eq!(
            settings.listen,
            vec![
                "127.0.0.1:4000".parse().unwrap(),
                "[::1]:7".parse().unwrap()
            ]
        );
    }

    #[test]
    fn duplicate_listen_addresses_are_bound_once() {
        let mut builder = SettingsBuilder::new();
        builder.listen = vec![host("127.0.0.1", Some(5)), host("127.0.0.1", Some(5))];
        assert_eq!(
            builder.finish().unwrap().listen,
            vec!["127.0.0.1:5".parse().unwrap()]
        );
    }

    #[test]
    fn unresolvable_hosts_name_their_origin() {
        let mut builder = SettingsBuilder::new();
        builder.listen = vec![host("no-such-host.invalid", None)];
        let message = builder.finish().unwrap_err().to_string();
        assert!(
            message.starts_with("-l no-such-host.invalid: cannot resolve 'no-such-host.invalid'"),
            "{message}"
        );
    }

    #[test]
    fn udp_listens_on_the_tcp_hosts_and_their_own_ports() {
        let mut builder = SettingsBuilder::new();
        builder.udp_port = Sourced::new(5000, "-U 5000");
        let settings = builder.finish().unwrap();
        assert_eq!(settings.udp_port, 5000);
        assert_eq!(settings.udp_listen, vec!["127.0.0.1:5000".parse().unwrap()]);

        // memcached binds UDP at the port a listen item names, as TCP.
        let mut builder = SettingsBuilder::new();
        builder.listen = vec![host("127.0.0.1", Some(7)), host("::1", None)];
        builder.port = Sourced::new(4000, "-p 4000");
        builder.udp_port = Sourced::new(5000, "-U 5000");
        assert_eq!(
            builder.finish().unwrap().udp_listen,
            vec![
                "127.0.0.1:7".parse().unwrap(),
                "[::1]:5000".parse().unwrap()
            ]
        );

        assert!(SettingsBuilder::new()
            .finish()
            .unwrap()
            .udp_listen
            .is_empty());
    }

    #[test]
    fn item_size_limits_follow_memcached() {
        let check = |item: usize, memory_mb: u64| {
            let mut builder = SettingsBuilder::new();
            builder.max_item_size = Sourced::new(item, format!("-I {item}"));
            builder.memory_mb = Sourced::new(memory_mb, format!("-m {memory_mb}"));
            builder.finish().map(|settings| settings.max_item_size)
        };
        assert_eq!(check(1024, 64), Ok(1024));
        assert_eq!(check(32 * 1024 * 1024, 64), Ok(32 * 1024 * 1024));
        assert_eq!(check(1024 * 1024 * 1024, 4096), Ok(1024 * 1024 * 1024));
        assert_eq!(
            check(1023, 64).unwrap_err().to_string(),
            "-I 1023: Item max size cannot be less than 1024 bytes."
        );
        assert_eq!(
            check(32 * 1024 * 1024 + 1, 64).unwrap_err().to_string(),
            "-I 33554433: Cannot set item size limit higher than 1/2 of memory max. \
             (memory from -m 64)"
        );
        assert_eq!(
            check(1024 * 1024 * 1024 + 1024, 4096)
                .unwrap_err()
                .to_string(),
            "-I 1073742848: Cannot set item size limit higher than a gigabyte."
        );
    }

    #[test]
    fn default_item_size_needs_two_megabytes_of_memory() {
        // memcached -m 1 fails the same way: the default 1m limit exceeds half of 1 MB.
        let mut builder = SettingsBuilder::new();
        builder.memory_mb = Sourced::new(1, "-m 1");
        assert_eq!(
            builder.finish().unwrap_err().to_string(),
            "default -I 1m: Cannot set item size limit higher than 1/2 of memory max. \
             (memory from -m 1)"
        );
    }

    #[test]
    fn many_threads_produce_memcached_warning() {
        let mut builder = SettingsBuilder::new();
        builder.set_threads(65, "-t 65");
        let settings = builder.finish().unwrap();
        assert_eq!(settings.threads, 65);
        assert_eq!(settings.notices.len(), 1);
        assert!(settings.notices[0].starts_with("-t 65: setting a high number of worker threads"));
    }
}
