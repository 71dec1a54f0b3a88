//! Configuration: the library's ([`L1Config`], [`L2Config`], [`TtlConfig`],
//! [`PerformanceConfig`], [`EvictionStrategy`], defined in the `cache` module and
//! repeated here, where users of the original crate look for them), and, with the
//! `server` feature, the command line, configuration file and logging setup for
//! `rat_memcached`, described below.
//!
//! A server that replaces memcached has to start from the command lines that already
//! start memcached: init scripts, systemd units and container entry points written for
//! memcached 1.6 pass flags such as `-p 11211 -U 0 -m 64 -c 1024 -t 4 -v`. This module
//! turns such a command line, optionally on top of a TOML file, into one [`Settings`]
//! value that the rest of the server reads and never has to re-validate.
//!
//! # Layers
//!
//! Settings are assembled in three layers, each overriding the one before:
//!
//! 1. the defaults ([`Settings::default`]): 127.0.0.1:11211, 64 MB of item memory,
//!    1024 connections, one worker thread per CPU core, a 1 MB item limit, and no
//!    persistent tier (see [`L2Settings`]: it runs once a data directory is given);
//! 2. the TOML file named by `--config FILE`, if any (see [`load_config_file`]);
//! 3. the flags on the command line (see [`parse_args`]).
//!
//! Checks that involve several settings, such as "the item size limit may not exceed
//! half of the memory limit", run once at the end, on the merged result, so a flag can
//! repair a value from the file and an error names where each offending value came from.
//!
//! # memcached compatibility
//!
//! Every flag that memcached 1.6.18 lists in `memcached -h` is recognised, in its short
//! and long spelling and with getopt's conventions (`-vv`, `-p11211`, `--port=11211`).
//! Flags fall into four groups:
//!
//! * implemented: they fill a field of [`Settings`];
//! * accepted without effect (slab tuning, `-o` sub-options, large pages, ...): their
//!   value is still checked, and a line is added to [`Settings::notices`] so the operator
//!   learns that the flag does nothing here;
//! * refused: flags whose silent omission would change what clients can reach or who may
//!   reach it (SASL, TLS) stop the start with an explanation;
//! * informational: `-h`, `-V`, `-i` print text and exit ([`CliAction`]).
//!
//! What memcached has no flag for (`--bind`, `--config`, the persistence flags such as
//! `--data-dir`) is spelt long-only, so no letter memcached might take one day is used.
//!
//! # Errors
//!
//! Every error is a [`ConfigError`]: one line that names the flag or the config key at
//! fault, and quotes memcached's own wording where memcached has a rule for it.

// The docs above describe the server's half too, which a build without it lacks.
#![cfg_attr(not(feature = "server"), allow(rustdoc::broken_intra_doc_links))]

pub use crate::cache::{EvictionStrategy, L1Config, L2Config, PerformanceConfig, TtlConfig};

#[cfg(feature = "server")]
mod builder;
#[cfg(feature = "server")]
mod cli;
#[cfg(feature = "server")]
mod file;
#[cfg(feature = "server")]
mod logging;
#[cfg(feature = "server")]
mod settings;
#[cfg(feature = "server")]
mod toml_value;
#[cfg(feature = "server")]
mod units;

#[cfg(feature = "server")]
pub use cli::{help_text, parse_args, SASL_PASSWORD_FILE_VAR};
#[cfg(feature = "server")]
pub use file::{from_toml_str, load_config_file};
#[cfg(feature = "server")]
pub use logging::init_logging;
#[cfg(feature = "server")]
pub use settings::*;
