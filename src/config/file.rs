//! The TOML configuration file.
//!
//! The file has five sections. Four come from the original product and must load
//! unchanged; `[server]` holds what memcached sets with flags:
//!
//! ```toml
//! [server]       # listen, port, udp_port, unix_socket, unix_socket_mask,
//!                # max_connections, max_item_size, verbosity,
//!                # enable_shutdown, flush_enabled, cas_enabled, protocol,
//!                # auth_file
//! [cache]        # max_memory_mb, max_entries, eviction_strategy, evictions
//! [melange_db]   # data_dir, max_disk_size_mb, enable_compression,
//!                # compression_threshold, flush_interval_ms, batch_size,
//!                # queue_max_mb, sync_writes, clear_on_startup, warmup, cache_mb
//! [ttl]          # default_ttl_seconds, cleanup_interval_seconds
//! [performance]  # worker_threads, reqs_per_event, enable_async
//! ```
//!
//! Every section and key is optional; an absent key keeps its default. `[melange_db]`
//! configures the persistent L2 tier, which runs once `data_dir` names its directory.
//!
//! The schema below is a set of serde structs with `deny_unknown_fields`, filled through
//! [`super::toml_value`] so that a misspelt key or a bad value is reported in one line
//! naming the section and key. Field types that need a friendlier message than serde's
//! primitive types give (`expected u64`) are small newtypes with their own visitors.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::de::{self, Deserializer, Unexpected, Visitor};
use serde::Deserialize;

use super::builder::{SettingsBuilder, Sourced};
use super::toml_value::Located;
use super::units;
use super::{ConfigError, EvictionStrategy, ProtocolMode, Settings, MAX_L2_FLUSH_INTERVAL_MS};

/// Reads `path` and returns the settings it describes on top of the defaults.
pub fn load_config_file(path: &Path) -> Result<Settings, ConfigError> {
    let mut builder = SettingsBuilder::new();
    apply_file(&mut builder, path)?;
    builder.finish()
}

/// Returns the settings described by the TOML `text` on top of the defaults; errors
/// are reported as coming from `config`.
pub fn from_toml_str(text: &str) -> Result<Settings, ConfigError> {
    let mut builder = SettingsBuilder::new();
    apply_text(&mut builder, text, "config")?;
    builder.finish()
}

/// Reads `path` into `builder`, overwriting what the file sets.
pub(super) fn apply_file(builder: &mut SettingsBuilder, path: &Path) -> Result<(), ConfigError> {
    let source = format!("config {}", path.display());
    let text = std::fs::read_to_string(path)
        .map_err(|error| ConfigError::new(format!("{source}: cannot read the file: {error}")))?;
    apply_text(builder, &text, &source)
}

/// Parses `text` and writes its values into `builder`; `source` prefixes every message.
fn apply_text(builder: &mut SettingsBuilder, text: &str, source: &str) -> Result<(), ConfigError> {
    let table: toml::Table = text
        .parse()
        .map_err(|error: toml::de::Error| syntax_error(source, text, &error))?;
    let file = ConfigFile::deserialize(Located::document(table))
        .map_err(|error| ConfigError::new(format!("{source}: {error}")))?;
    file.apply(builder, source)
}

/// One line for a TOML syntax error: where it is and what is wrong.
fn syntax_error(source: &str, text: &str, error: &toml::de::Error) -> ConfigError {
    let message = error.message().trim().replace('\n', "; ");
    match error.span() {
        Some(span) => {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let column = before
                .rsplit('\n')
                .next()
                .map_or(0, |tail| tail.chars().count())
                + 1;
            ConfigError::new(format!("{source}: line {line}, column {column}: {message}"))
        }
        None => ConfigError::new(format!("{source}: {message}")),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table of sections")]
struct ConfigFile {
    server: Option<ServerSection>,
    cache: Option<CacheSection>,
    melange_db: Option<MelangeDbSection>,
    ttl: Option<TtlSection>,
    performance: Option<PerformanceSection>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table of server settings")]
struct ServerSection {
    listen: Option<Vec<String>>,
    port: Option<Port>,
    udp_port: Option<Port>,
    unix_socket: Option<String>,
    unix_socket_mask: Option<SocketMask>,
    max_connections: Option<Positive>,
    max_item_size: Option<ByteSize>,
    verbosity: Option<NonNegative>,
    enable_shutdown: Option<bool>,
    flush_enabled: Option<bool>,
    cas_enabled: Option<bool>,
    protocol: Option<ProtocolMode>,
    auth_file: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table of cache settings")]
struct CacheSection {
    max_memory_mb: Option<Positive>,
    max_entries: Option<Positive>,
    eviction_strategy: Option<EvictionStrategy>,
    evictions: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table of melange_db settings")]
struct MelangeDbSection {
    data_dir: Option<String>,
    max_disk_size_mb: Option<Positive>,
    enable_compression: Option<bool>,
    compression_threshold: Option<NonNegative>,
    flush_interval_ms: Option<FlushInterval>,
    batch_size: Option<Positive>,
    queue_max_mb: Option<Positive>,
    sync_writes: Option<bool>,
    clear_on_startup: Option<bool>,
    warmup: Option<bool>,
    cache_mb: Option<Positive>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table of ttl settings")]
struct TtlSection {
    default_ttl_seconds: Option<NonNegative>,
    cleanup_interval_seconds: Option<Positive>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table of performance settings")]
struct PerformanceSection {
    worker_threads: Option<Positive>,
    reqs_per_event: Option<Positive>,
    enable_async: Option<bool>,
}

impl ConfigFile {
    fn apply(self, builder: &mut SettingsBuilder, source: &str) -> Result<(), ConfigError> {
        if let Some(server) = self.server {
            server.apply(builder, source)?;
        }
        if let Some(cache) = self.cache {
            cache.apply(builder, source)?;
        }
        if let Some(melange_db) = self.melange_db {
            melange_db.apply(builder, source)?;
        }
        if let Some(ttl) = self.ttl {
            ttl.apply(builder, source)?;
        }
        if let Some(performance) = self.performance {
            performance.apply(builder, source)?;
        }
        Ok(())
    }
}

impl ServerSection {
    fn apply(self, builder: &mut SettingsBuilder, source: &str) -> Result<(), ConfigError> {
        if let Some(listen) = self.listen {
            let mut specs = Vec::with_capacity(listen.len());
            for (index, item) in listen.iter().enumerate() {
                let origin = format!("{source}: [server] listen[{index}] = \"{item}\"");
                let host_port = units::parse_host_port(item)
                    .map_err(|problem| ConfigError::new(format!("{origin}: {problem}")))?;
                specs.push(Sourced::new(host_port, origin));
            }
            builder.listen = specs;
        }
        if let Some(Port(port)) = self.port {
            builder.port = Sourced::new(port, format!("{source}: [server] port = {port}"));
        }
        if let Some(Port(port)) = self.udp_port {
            builder.udp_port = Sourced::new(port, format!("{source}: [server] udp_port = {port}"));
        }
        if let Some(path) = self.unix_socket {
            if path.is_empty() {
                return Err(ConfigError::new(format!(
                    "{source}: [server] unix_socket: expected a socket path, got an empty string"
                )));
            }
            builder.settings.unix_socket = Some(PathBuf::from(path));
        }
        if let Some(SocketMask(mask)) = self.unix_socket_mask {
            builder.settings.unix_socket_mask = mask;
        }
        if let Some(Positive(connections)) = self.max_connections {
            builder.settings.max_connections =
                to_usize(connections, source, "[server] max_connections")?;
        }
        if let Some(ByteSize(size)) = self.max_item_size {
            builder.max_item_size =
                Sourced::new(size, format!("{source}: [server] max_item_size = {size}"));
        }
        if let Some(NonNegative(verbosity)) = self.verbosity {
            // Every level above 3 logs the same as 3, so large values are simply capped.
            builder.settings.verbosity = u8::try_from(verbosity).unwrap_or(u8::MAX);
        }
        if let Some(enabled) = self.enable_shutdown {
            builder.settings.enable_shutdown = enabled;
        }
        if let Some(enabled) = self.flush_enabled {
            builder.settings.flush_enabled = enabled;
        }
        if let Some(enabled) = self.cas_enabled {
            builder.settings.cas_enabled = enabled;
        }
        if let Some(protocol) = self.protocol {
            builder.protocol_given = true;
            builder.settings.protocol = protocol;
        }
        if let Some(path) = self.auth_file {
            builder.settings.auth_file = Some(PathBuf::from(path));
        }
        Ok(())
    }
}

impl CacheSection {
    fn apply(self, builder: &mut SettingsBuilder, source: &str) -> Result<(), ConfigError> {
        if let Some(Positive(megabytes)) = self.max_memory_mb {
            builder.memory_mb = Sourced::new(
                megabytes,
                format!("{source}: [cache] max_memory_mb = {megabytes}"),
            );
        }
        if let Some(Positive(entries)) = self.max_entries {
            builder.settings.max_entries = Some(to_usize(entries, source, "[cache] max_entries")?);
        }
        if let Some(strategy) = self.eviction_strategy {
            builder.settings.eviction = strategy;
        }
        if let Some(enabled) = self.evictions {
            builder.settings.evictions_enabled = enabled;
        }
        Ok(())
    }
}

impl MelangeDbSection {
    fn apply(self, builder: &mut SettingsBuilder, source: &str) -> Result<(), ConfigError> {
        let l2 = &mut builder.settings.l2;
        if let Some(data_dir) = self.data_dir {
            if data_dir.is_empty() {
                return Err(ConfigError::new(format!(
                    "{source}: [melange_db] data_dir: expected a directory path, got an empty string"
                )));
            }
            l2.data_dir = Some(PathBuf::from(data_dir));
        }
        if let Some(Positive(megabytes)) = self.max_disk_size_mb {
            l2.max_disk_size_mb = to_megabytes(megabytes, source, "[melange_db] max_disk_size_mb")?;
        }
        if let Some(enabled) = self.enable_compression {
            l2.enable_compression = enabled;
        }
        if let Some(NonNegative(bytes)) = self.compression_threshold {
            l2.compression_threshold =
                to_usize(bytes, source, "[melange_db] compression_threshold")?;
        }
        if let Some(FlushInterval(milliseconds)) = self.flush_interval_ms {
            l2.flush_interval_ms = milliseconds;
        }
        if let Some(Positive(writes)) = self.batch_size {
            l2.batch_size = to_usize(writes, source, "[melange_db] batch_size")?;
        }
        if let Some(Positive(megabytes)) = self.queue_max_mb {
            l2.queue_max_mb = to_megabytes(megabytes, source, "[melange_db] queue_max_mb")?;
        }
        if let Some(enabled) = self.sync_writes {
            l2.sync_writes = enabled;
        }
        if let Some(enabled) = self.clear_on_startup {
            l2.clear_on_startup = enabled;
        }
        if let Some(enabled) = self.warmup {
            l2.warmup = enabled;
        }
        if let Some(Positive(megabytes)) = self.cache_mb {
            l2.cache_mb = to_megabytes(megabytes, source, "[melange_db] cache_mb")?;
        }
        Ok(())
    }
}

impl TtlSection {
    fn apply(self, builder: &mut SettingsBuilder, source: &str) -> Result<(), ConfigError> {
        if let Some(NonNegative(seconds)) = self.default_ttl_seconds {
            builder.settings.default_ttl = to_u32(seconds, source, "[ttl] default_ttl_seconds")?;
        }
        if let Some(Positive(seconds)) = self.cleanup_interval_seconds {
            builder.settings.cleanup_interval_secs =
                to_u32(seconds, source, "[ttl] cleanup_interval_seconds")?;
        }
        Ok(())
    }
}

impl PerformanceSection {
    fn apply(self, builder: &mut SettingsBuilder, source: &str) -> Result<(), ConfigError> {
        if let Some(Positive(threads)) = self.worker_threads {
            let threads = to_usize(threads, source, "[performance] worker_threads")?;
            builder.set_threads(
                threads,
                &format!("{source}: [performance] worker_threads = {threads}"),
            );
        }
        if let Some(Positive(requests)) = self.reqs_per_event {
            builder.settings.reqs_per_event =
                to_usize(requests, source, "[performance] reqs_per_event")?;
        }
        if let Some(enabled) = self.enable_async {
            builder.notice(format!(
                "{source}: [performance] enable_async = {enabled} has no effect in rat_memcached"
            ));
        }
        Ok(())
    }
}

fn to_usize(value: u64, source: &str, key: &str) -> Result<usize, ConfigError> {
    usize::try_from(value).map_err(|_| {
        ConfigError::new(format!(
            "{source}: {key}: {value} is too large for this machine"
        ))
    })
}

fn to_megabytes(megabytes: u64, source: &str, key: &str) -> Result<u64, ConfigError> {
    units::check_megabytes(megabytes)
        .map_err(|problem| ConfigError::new(format!("{source}: {key}: {problem}")))
}

fn to_u32(value: u64, source: &str, key: &str) -> Result<u32, ConfigError> {
    u32::try_from(value).map_err(|_| {
        ConfigError::new(format!(
            "{source}: {key}: expected at most {}, got {value}",
            u32::MAX
        ))
    })
}

/// An integer between `min` and `max`, described as `expecting` in errors.
struct IntegerVisitor {
    expecting: &'static str,
    min: u64,
    max: u64,
}

impl<'de> Visitor<'de> for IntegerVisitor {
    type Value = u64;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.expecting)
    }

    fn visit_i64<E: de::Error>(self, value: i64) -> Result<u64, E> {
        match u64::try_from(value) {
            Ok(unsigned) => self.visit_u64(unsigned),
            Err(_) => Err(E::invalid_value(Unexpected::Signed(value), &self)),
        }
    }

    fn visit_u64<E: de::Error>(self, value: u64) -> Result<u64, E> {
        if (self.min..=self.max).contains(&value) {
            Ok(value)
        } else {
            Err(E::invalid_value(Unexpected::Unsigned(value), &self))
        }
    }
}

/// An integer greater than zero.
struct Positive(u64);

impl<'de> Deserialize<'de> for Positive {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer
            .deserialize_u64(IntegerVisitor {
                expecting: "a positive integer",
                min: 1,
                max: u64::MAX,
            })
            .map(Positive)
    }
}

/// An integer, zero included.
struct NonNegative(u64);

impl<'de> Deserialize<'de> for NonNegative {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer
            .deserialize_u64(IntegerVisitor {
                expecting: "a non-negative integer",
                min: 0,
                max: u64::MAX,
            })
            .map(NonNegative)
    }
}

/// The persistent tier's flush interval in milliseconds, 1 to [`MAX_L2_FLUSH_INTERVAL_MS`].
struct FlushInterval(u64);

impl<'de> Deserialize<'de> for FlushInterval {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer
            .deserialize_u64(IntegerVisitor {
                expecting: units::FLUSH_INTERVAL_SYNTAX,
                min: 1,
                max: MAX_L2_FLUSH_INTERVAL_MS,
            })
            .map(FlushInterval)
    }
}

/// A TCP port number.
struct Port(u16);

impl<'de> Deserialize<'de> for Port {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let port = deserializer.deserialize_u64(IntegerVisitor {
            expecting: "a port number 0-65535",
            min: 0,
            max: u64::from(u16::MAX),
        })?;
        u16::try_from(port)
            .map(Port)
            .map_err(|_| de::Error::invalid_value(Unexpected::Unsigned(port), &"a port number"))
    }
}

/// Permission bits of a unix socket: an integer (TOML's `0o700` reads best) or a
/// string of octal digits as `-a` takes it (`"700"`).
struct SocketMask(u32);

impl<'de> Deserialize<'de> for SocketMask {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct MaskVisitor;

        impl<'de> Visitor<'de> for MaskVisitor {
            type Value = SocketMask;

            fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
                formatter.write_str(units::MASK_SYNTAX)
            }

            fn visit_i64<E: de::Error>(self, value: i64) -> Result<SocketMask, E> {
                match u64::try_from(value) {
                    Ok(unsigned) => self.visit_u64(unsigned),
                    Err(_) => Err(E::invalid_value(Unexpected::Signed(value), &self)),
                }
            }

            fn visit_u64<E: de::Error>(self, value: u64) -> Result<SocketMask, E> {
                u32::try_from(value)
                    .ok()
                    .filter(|&mask| mask <= 0o777)
                    .map(SocketMask)
                    .ok_or_else(|| E::invalid_value(Unexpected::Unsigned(value), &self))
            }

            fn visit_str<E: de::Error>(self, text: &str) -> Result<SocketMask, E> {
                units::parse_octal_mask(text)
                    .map(SocketMask)
                    .ok_or_else(|| E::invalid_value(Unexpected::Str(text), &self))
            }
        }

        deserializer.deserialize_any(MaskVisitor)
    }
}

/// A size in bytes: an integer, or a string in memcached's `-I` syntax (`"1m"`).
struct ByteSize(usize);

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct SizeVisitor;

        impl<'de> Visitor<'de> for SizeVisitor {
            type Value = ByteSize;

            fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
                formatter.write_str(units::SIZE_SYNTAX)
            }

            fn visit_i64<E: de::Error>(self, value: i64) -> Result<ByteSize, E> {
                usize::try_from(value)
                    .map(ByteSize)
                    .map_err(|_| E::invalid_value(Unexpected::Signed(value), &self))
            }

            fn visit_u64<E: de::Error>(self, value: u64) -> Result<ByteSize, E> {
                usize::try_from(value)
                    .map(ByteSize)
                    .map_err(|_| E::invalid_value(Unexpected::Unsigned(value), &self))
            }

            fn visit_str<E: de::Error>(self, text: &str) -> Result<ByteSize, E> {
                units::parse_size(text)
                    .map(ByteSize)
                    .ok_or_else(|| E::invalid_value(Unexpected::Str(text), &self))
            }
        }

        deserializer.deserialize_any(SizeVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::L2Settings;
    use std::net::SocketAddr;

    /// The form the product specification requires to load, with every key set.
    const SPEC_FORM: &str = r#"
[cache]
max_memory_mb = 128
max_entries = 100000
eviction_strategy = "lru"

[melange_db]
data_dir = "/var/lib/rat_memcached"
max_disk_size_mb = 2048
enable_compression = false

[ttl]
default_ttl_seconds = 3600
cleanup_interval_seconds = 5

[performance]
worker_threads = 3
enable_async = true
"#;

    fn error_of(text: &str) -> String {
        from_toml_str(text).unwrap_err().to_string()
    }

    #[test]
    fn the_specified_form_loads() {
        let settings = from_toml_str(SPEC_FORM).unwrap();
        assert_eq!(settings.max_memory_bytes, 128 * 1024 * 1024);
        assert_eq!(settings.max_entries, Some(100_000));
        assert_eq!(settings.eviction, EvictionStrategy::Lru);
        assert_eq!(
            settings.l2.data_dir.as_deref(),
            Some(Path::new("/var/lib/rat_memcached"))
        );
        assert_eq!(settings.l2.max_disk_size_mb, 2048);
        assert!(!settings.l2.enable_compression);
        assert_eq!(settings.default_ttl, 3600);
        assert_eq!(settings.cleanup_interval_secs, 5);
        assert_eq!(settings.threads, 3);
        // The L2 keys the form leaves out keep their defaults.
        assert_eq!(
            settings.l2,
            L2Settings {
                data_dir: Some(PathBuf::from("/var/lib/rat_memcached")),
                max_disk_size_mb: 2048,
                enable_compression: false,
                ..L2Settings::default()
            }
        );
        // A data_dir turns the persistent tier on without any notice.
        assert_eq!(
            settings.notices,
            vec![
                "config: [performance] enable_async = true has no effect in rat_memcached"
                    .to_string(),
            ]
        );
    }

    #[test]
    fn melange_db_section_sets_every_key() {
        let settings = from_toml_str(
            r#"
[melange_db]
data_dir = "data/l2"
max_disk_size_mb = 500
enable_compression = false
compression_threshold = 0
flush_interval_ms = 60000
batch_size = 1
queue_max_mb = 8
sync_writes = true
clear_on_startup = true
warmup = false
cache_mb = 4
"#,
        )
        .unwrap();
        assert_eq!(
            settings.l2,
            L2Settings {
                data_dir: Some(PathBuf::from("data/l2")),
                max_disk_size_mb: 500,
                enable_compression: false,
                compression_threshold: 0,
                flush_interval_ms: 60_000,
                batch_size: 1,
                queue_max_mb: 8,
                sync_writes: true,
                clear_on_startup: true,
                warmup: false,
                cache_mb: 4,
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
    fn melange_db_keys_that_differ_from_the_defaults_one_at_a_time() {
        let l2 = |line: &str| {
            from_toml_str(&format!("[melange_db]\n{line}\n"))
                .unwrap()
                .l2
        };
        let default = L2Settings::default;
        assert_eq!(
            l2("compression_threshold = 4096"),
            L2Settings {
                compression_threshold: 4096,
                ..default()
            }
        );
        assert_eq!(
            l2("flush_interval_ms = 1"),
            L2Settings {
                flush_interval_ms: 1,
                ..default()
            }
        );
        assert_eq!(
            l2("batch_size = 100000"),
            L2Settings {
                batch_size: 100_000,
                ..default()
            }
        );
        assert_eq!(
            l2("enable_compression = true\nwarmup = true\nsync_writes = false"),
            default()
        );
        // Without data_dir the tier stays off, whatever else the section sets.
        assert_eq!(l2("max_disk_size_mb = 10\ncache_mb = 1").data_dir, None);
    }

    #[test]
    fn server_section_sets_every_key() {
        let settings = from_toml_str(
            r#"
[server]
listen = ["127.0.0.1:12000", "[::1]", "127.0.0.2"]
port = 12001
udp_port = 12002
unix_socket = "/run/rat.sock"
unix_socket_mask = "0750"
max_connections = 50
max_item_size = "2m"
verbosity = 2
enable_shutdown = true
flush_enabled = false
cas_enabled = false
protocol = "binary"

[cache]
evictions = false

[performance]
reqs_per_event = 7
"#,
        )
        .unwrap();
        let expected: Vec<SocketAddr> = ["127.0.0.1:12000", "[::1]:12001", "127.0.0.2:12001"]
            .iter()
            .map(|text| text.parse().unwrap())
            .collect();
        assert_eq!(settings.listen, expected);
        assert_eq!(settings.udp_port, 12002);
        assert_eq!(settings.unix_socket, Some(PathBuf::from("/run/rat.sock")));
        assert_eq!(settings.unix_socket_mask, 0o750);
        assert_eq!(settings.max_connections, 50);
        assert_eq!(settings.max_item_size, 2 * 1024 * 1024);
        assert_eq!(settings.verbosity, 2);
        assert!(settings.enable_shutdown);
        assert!(!settings.flush_enabled);
        assert!(!settings.cas_enabled);
        assert_eq!(settings.protocol, ProtocolMode::Binary);
        assert!(!settings.evictions_enabled);
        assert_eq!(settings.reqs_per_event, 7);
        assert!(settings.notices.is_empty());
    }

    #[test]
    fn auth_file_makes_the_server_text_only() {
        let settings = from_toml_str("[server]\nauth_file = \"/etc/rat/users\"\n").unwrap();
        assert_eq!(settings.auth_file, Some(PathBuf::from("/etc/rat/users")));
        assert_eq!(settings.protocol, ProtocolMode::Ascii);
        let error = from_toml_str("[server]\nauth_file = \"/a\"\nprotocol = \"binary\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("You cannot allow the BINARY protocol"),
            "{error}"
        );
    }

    #[test]
    fn unix_socket_mask_takes_an_octal_integer_or_string() {
        let mask = |value: &str| {
            from_toml_str(&format!("[server]\nunix_socket_mask = {value}\n"))
                .map(|settings| settings.unix_socket_mask)
        };
        assert_eq!(mask("0o700"), Ok(0o700));
        assert_eq!(mask("\"755\""), Ok(0o755));
        assert_eq!(
            mask("700").unwrap_err().to_string(),
            "config: [server] unix_socket_mask: expected octal permission bits 0-777, \
             like 700 or 0770, got integer `700`"
        );
        assert_eq!(
            mask("\"9\"").unwrap_err().to_string(),
            "config: [server] unix_socket_mask: expected octal permission bits 0-777, \
             like 700 or 0770, got string \"9\""
        );
    }

    #[test]
    fn max_item_size_takes_bytes_or_memcached_syntax() {
        let size = |value: &str| {
            from_toml_str(&format!("[server]\nmax_item_size = {value}\n"))
                .map(|settings| settings.max_item_size)
        };
        assert_eq!(size("2097152"), Ok(2_097_152));
        assert_eq!(size("\"512k\""), Ok(524_288));
        assert_eq!(size("\"3M\""), Ok(3 * 1024 * 1024));
        assert_eq!(
            size("\"1.5m\"").unwrap_err().to_string(),
            "config: [server] max_item_size: expected a size like 1m, 512k or 1048576, \
             got string \"1.5m\""
        );
        assert_eq!(
            size("512").unwrap_err().to_string(),
            "config: [server] max_item_size = 512: Item max size cannot be less than 1024 bytes."
        );
        assert_eq!(
            size("\"33m\"").unwrap_err().to_string(),
            "config: [server] max_item_size = 34603008: Cannot set item size limit higher than \
             1/2 of memory max. (memory from default -m 64)"
        );
    }

    #[test]
    fn every_eviction_strategy_loads() {
        for (name, strategy) in [
            ("lru", EvictionStrategy::Lru),
            ("lfu", EvictionStrategy::Lfu),
            ("fifo", EvictionStrategy::Fifo),
            ("hybrid", EvictionStrategy::Hybrid),
            ("s3fifo", EvictionStrategy::Hybrid),
        ] {
            let text = format!("[cache]\neviction_strategy = \"{name}\"\n");
            assert_eq!(from_toml_str(&text).unwrap().eviction, strategy);
        }
        assert_eq!(
            error_of("[cache]\neviction_strategy = \"random\"\n"),
            "config: [cache] eviction_strategy: expected one of \"lru\", \"lfu\", \"fifo\", \
             \"hybrid\", \"s3fifo\", got \"random\""
        );
    }

    #[test]
    fn unknown_keys_and_sections_are_named() {
        assert_eq!(
            error_of("[cache]\nmax_memroy_mb = 64\n"),
            "config: unknown key [cache] max_memroy_mb (expected one of: max_memory_mb, \
             max_entries, eviction_strategy, evictions)"
        );
        assert_eq!(
            error_of("[melange_db]\nflush_interval = 100\n"),
            "config: unknown key [melange_db] flush_interval (expected one of: data_dir, \
             max_disk_size_mb, enable_compression, compression_threshold, flush_interval_ms, \
             batch_size, queue_max_mb, sync_writes, clear_on_startup, warmup, cache_mb)"
        );
        assert_eq!(
            error_of("[caches]\n"),
            "config: unknown section [caches] (expected one of: server, cache, melange_db, \
             ttl, performance)"
        );
        assert!(
            error_of("max_memory_mb = 64\n").starts_with("config: unknown section [max_memory_mb]")
        );
    }

    #[test]
    fn bad_values_name_the_key() {
        let cases = [
            (
                "[cache]\nmax_memory_mb = \"abc\"\n",
                "config: [cache] max_memory_mb: expected a positive integer, got string \"abc\"",
            ),
            (
                "[cache]\nmax_memory_mb = 0\n",
                "config: [cache] max_memory_mb: expected a positive integer, got integer `0`",
            ),
            (
                "[cache]\nmax_entries = -5\n",
                "config: [cache] max_entries: expected a positive integer, got integer `-5`",
            ),
            (
                "[server]\nport = 70000\n",
                "config: [server] port: expected a port number 0-65535, got integer `70000`",
            ),
            (
                "[server]\nenable_shutdown = \"yes\"\n",
                "config: [server] enable_shutdown: expected a boolean, got string \"yes\"",
            ),
            (
                "[server]\nprotocol = \"http\"\n",
                "config: [server] protocol: expected one of \"auto\", \"ascii\", \"binary\", \
                 got \"http\"",
            ),
            (
                "[server]\nlisten = \"127.0.0.1:11211\"\n",
                "config: [server] listen: expected a sequence, got string \"127.0.0.1:11211\"",
            ),
            (
                "[server]\nlisten = [\"127.0.0.1:x\"]\n",
                "config: [server] listen[0] = \"127.0.0.1:x\": expected a port number 0-65535 \
                 in '127.0.0.1:x'",
            ),
            (
                "[ttl]\ndefault_ttl_seconds = 5000000000\n",
                "config: [ttl] default_ttl_seconds: expected at most 4294967295, got 5000000000",
            ),
            (
                "[ttl]\ncleanup_interval_seconds = 0\n",
                "config: [ttl] cleanup_interval_seconds: expected a positive integer, got \
                 integer `0`",
            ),
            (
                "[melange_db]\ndata_dir = \"\"\n",
                "config: [melange_db] data_dir: expected a directory path, got an empty string",
            ),
            (
                "[melange_db]\nenable_compression = 1\n",
                "config: [melange_db] enable_compression: expected a boolean, got integer `1`",
            ),
            (
                "[melange_db]\ndata_dir = 5\n",
                "config: [melange_db] data_dir: expected a string, got integer `5`",
            ),
            (
                "[melange_db]\nmax_disk_size_mb = 0\n",
                "config: [melange_db] max_disk_size_mb: expected a positive integer, got \
                 integer `0`",
            ),
            (
                "[melange_db]\nmax_disk_size_mb = \"1g\"\n",
                "config: [melange_db] max_disk_size_mb: expected a positive integer, got \
                 string \"1g\"",
            ),
            (
                "[melange_db]\ncompression_threshold = -1\n",
                "config: [melange_db] compression_threshold: expected a non-negative integer, \
                 got integer `-1`",
            ),
            (
                "[melange_db]\ncompression_threshold = \"256\"\n",
                "config: [melange_db] compression_threshold: expected a non-negative integer, \
                 got string \"256\"",
            ),
            (
                "[melange_db]\nflush_interval_ms = 0\n",
                "config: [melange_db] flush_interval_ms: expected a number of milliseconds \
                 1-60000, got integer `0`",
            ),
            (
                "[melange_db]\nflush_interval_ms = 60001\n",
                "config: [melange_db] flush_interval_ms: expected a number of milliseconds \
                 1-60000, got integer `60001`",
            ),
            (
                "[melange_db]\nflush_interval_ms = 0.5\n",
                "config: [melange_db] flush_interval_ms: expected a number of milliseconds \
                 1-60000, got floating point `0.5`",
            ),
            (
                "[melange_db]\nbatch_size = 0\n",
                "config: [melange_db] batch_size: expected a positive integer, got integer `0`",
            ),
            (
                "[melange_db]\nbatch_size = true\n",
                "config: [melange_db] batch_size: expected a positive integer, got boolean \
                 `true`",
            ),
            (
                "[melange_db]\nqueue_max_mb = 0\n",
                "config: [melange_db] queue_max_mb: expected a positive integer, got integer `0`",
            ),
            (
                "[melange_db]\nqueue_max_mb = 9223372036854775807\n",
                "config: [melange_db] queue_max_mb: 9223372036854775807 megabytes do not fit \
                 in this machine's address space",
            ),
            (
                "[melange_db]\ncache_mb = 0\n",
                "config: [melange_db] cache_mb: expected a positive integer, got integer `0`",
            ),
            (
                "[melange_db]\ncache_mb = \"32m\"\n",
                "config: [melange_db] cache_mb: expected a positive integer, got string \"32m\"",
            ),
            (
                "[melange_db]\nsync_writes = \"true\"\n",
                "config: [melange_db] sync_writes: expected a boolean, got string \"true\"",
            ),
            (
                "[melange_db]\nclear_on_startup = 0\n",
                "config: [melange_db] clear_on_startup: expected a boolean, got integer `0`",
            ),
            (
                "[melange_db]\nwarmup = \"no\"\n",
                "config: [melange_db] warmup: expected a boolean, got string \"no\"",
            ),
            (
                "melange_db = true\n",
                "config: [melange_db]: expected a table of melange_db settings, got boolean \
                 `true`",
            ),
            (
                "[performance]\nworker_threads = 1.5\n",
                "config: [performance] worker_threads: expected a positive integer, got \
                 floating point `1.5`",
            ),
            (
                "cache = 5\n",
                "config: [cache]: expected a table of cache settings, got integer `5`",
            ),
        ];
        for (text, expected) in cases {
            assert_eq!(error_of(text), expected, "{text}");
        }
    }

    #[test]
    fn syntax_errors_give_line_and_column() {
        let message = error_of("[cache]\nmax_memory_mb = = 3\n");
        assert!(
            message.starts_with("config: line 2, column 17: "),
            "{message}"
        );
        assert!(!message.contains('\n'), "{message}");
    }

    #[test]
    fn files_are_named_in_errors() {
        let path = Path::new("/nonexistent/rat_memcached.toml");
        let message = load_config_file(path).unwrap_err().to_string();
        assert!(
            message.starts_with("config /nonexistent/rat_memcached.toml: cannot read the file: "),
            "{message}"
        );
    }

    #[test]
    fn every_shipped_file_in_etc_loads() {
        let etc = Path::new(env!("CARGO_MANIFEST_DIR")).join("etc");
        let mut loaded = Vec::new();
        for entry in std::fs::read_dir(&etc).unwrap() {
            let path = entry.unwrap().path();
            if path
                .extension()
                .is_some_and(|extension| extension == "toml")
            {
                let settings = load_config_file(&path)
                    .unwrap_or_else(|error| panic!("{}: {error}", path.display()));
                loaded.push((path.file_name().unwrap().to_owned(), settings));
            }
        }
        loaded.sort_by(|a, b| a.0.cmp(&b.0));
        let names: Vec<_> = loaded
            .iter()
            .map(|(name, _)| name.to_str().unwrap())
            .collect();
        assert_eq!(
            names,
            [
                "large-memory.toml",
                "persistent.toml",
                "rat_memcached.toml",
                "small-container.toml"
            ]
        );
        let reference = &loaded[2].1;
        let defaults = Settings::default();
        assert_eq!(reference.listen, defaults.listen);
        assert_eq!(reference.max_memory_bytes, defaults.max_memory_bytes);
        assert_eq!(reference.max_item_size, defaults.max_item_size);
        assert_eq!(reference.max_connections, defaults.max_connections);
        assert_eq!(reference.l2, L2Settings::default());
        let persistent = &loaded[1].1;
        assert_eq!(
            persistent.l2,
            L2Settings {
                data_dir: Some(PathBuf::from("/var/lib/rat_memcached")),
                max_disk_size_mb: 10240,
                enable_compression: true,
                compression_threshold: 256,
                flush_interval_ms: 100,
                batch_size: 4096,
                queue_max_mb: 128,
                sync_writes: false,
                clear_on_startup: false,
                warmup: true,
                cache_mb: 128,
            }
        );
        assert!(persistent.notices.is_empty(), "{:?}", persistent.notices);
        for (name, settings) in [&loaded[0], &loaded[3]] {
            assert_eq!(settings.l2.data_dir, None, "{name:?}");
        }
    }
}
