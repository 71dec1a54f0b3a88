//! What the bench crate's integration tests share: running `rat_loadgen`, reading its
//! JSON report, and a free port for a server to listen on.

#![allow(dead_code)] // each test file uses its own part

use std::net::TcpListener;
use std::process::{Command, Output};

/// Runs `rat_loadgen` with `args` to completion.
pub fn loadgen(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rat_loadgen"))
        .args(args)
        .output()
        .expect("run rat_loadgen")
}

/// The number after `"name": ` in a flat JSON object.
pub fn field(json: &str, name: &str) -> f64 {
    let start = json
        .find(&format!("\"{name}\": "))
        .unwrap_or_else(|| panic!("no {name} in {json}"))
        + name.len()
        + 4;
    let end = json[start..].find([',', '}']).expect("field ends") + start;
    json[start..end]
        .parse()
        .unwrap_or_else(|_| panic!("{name} is not a number in {json}"))
}

/// A port nothing listens on now (the system's choice for a socket bound to port 0).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port()
}
