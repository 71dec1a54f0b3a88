//! Tools for measuring memcached-compatible servers: a load generator and a canned server.
//!
//! # What is measured, and how
//!
//! `rat_loadgen` is a *closed-loop* generator: each of its connections keeps a fixed number
//! of requests in flight (the pipeline depth) and sends a new one the moment a reply
//! arrives. The request rate is therefore set by the server's speed, and the numbers that
//! come out are the server's throughput at that concurrency together with the latency each
//! request saw. An open-loop generator (requests on a fixed schedule) answers a different
//! question, latency at a given load; it is not what this crate does.
//!
//! On a small machine the generator competes with the server for the same cores, so its
//! own cost per request decides how much of the machine is left for the server. The design
//! follows from that: the keys and values are derived, not generated ([`dataset`]); requests
//! are encoded into reused buffers and replies parsed in place ([`protocol`]); each thread
//! drives many connections from one `mio` poll ([`engine`]); and the generator reports its
//! own CPU use ([`cpu`]) next to the results ([`report`]), so a saturated generator is
//! visible rather than mistaken for a slow server.
//!
//! # Checking while measuring
//!
//! Every reply is parsed completely and checked against its request: the wrong status line,
//! a key not asked for, a malformed data block all stop the run with an error. With
//! `--verify`, every returned value is also compared byte for byte with the value its key
//! derives to, which makes a benchmark run double as a concurrency test of the server.
//!
//! # The canned server
//!
//! `rat_canned` ([`canned`]) answers from constants and stores nothing. What it reaches on a
//! machine is the most any server could reach there with the same generator: the cost of
//! loopback TCP and of the generator itself.
//!
//! # Idle connections
//!
//! `rat_loadgen --idle-conns N` ([`idle`]) asks what a connection costs a server when it
//! does nothing: it opens N connections, holds them while a script samples the server's
//! memory, then checks how many the server kept. It raises its own open-files limit first,
//! with the server's own `raise_open_files_limit`.
//!
//! # Replaying cache traces
//!
//! `rat_trace` asks a different question: not how fast a server answers, but how often
//! the cache misses. It replays a trace (read from a file or generated, [`trace`])
//! cache-aside against the library, once per eviction policy and cache size, and prints
//! the miss ratio of each.
//!
//! # Pieces
//!
//! - [`workload`]: key distributions (uniform, Zipf), set:get mix, multi-get width, fills.
//! - [`histogram`]: the log-linear latency histogram.
//! - [`rng`]: the per-connection random generator.

pub mod canned;
pub mod cpu;
pub mod dataset;
pub mod engine;
pub mod histogram;
pub mod idle;
pub mod protocol;
pub mod report;
pub mod rng;
pub mod trace;
pub mod workload;
