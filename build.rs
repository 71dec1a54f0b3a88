//! Build script: links the code an idle `rat_memcached` runs ahead of the rest.
//!
//! The kernel maps a page of an executable together with its cached neighbours (64 KiB
//! of them by default), so the few hundred kilobytes of code an idle server runs, spread
//! by the default layout over all of `.text`, kept nearly all of it resident: 1.8 MB of
//! mostly never-run code, the persistent tier's storage engine included. The linker
//! script `link/idle-text.ld` (written by `link/idle-text.py`) gathers those functions
//! into one section before `.text`, which leaves the rest unmapped until it runs.
//!
//! Only the server binary on Linux with glibc gets it, where the linker (GNU ld, or the
//! LLD that Rust uses by default) understands `INSERT BEFORE`. `RAT_MEMCACHED_IDLE_LAYOUT=0`
//! leaves it out: for a linker that does not (mold, say), and for the build that
//! `link/idle-text.py` profiles.

use std::env;

fn main() {
    println!("cargo:rerun-if-changed=link/idle-text.ld");
    println!("cargo:rerun-if-env-changed=RAT_MEMCACHED_IDLE_LAYOUT");
    let target = |key: &str| env::var(key).unwrap_or_default();
    let linux_gnu =
        target("CARGO_CFG_TARGET_OS") == "linux" && target("CARGO_CFG_TARGET_ENV") == "gnu";
    let server = env::var_os("CARGO_FEATURE_SERVER").is_some();
    let wanted = env::var("RAT_MEMCACHED_IDLE_LAYOUT").map_or(true, |value| value != "0");
    if linux_gnu && server && wanted {
        let root = env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
        println!("cargo:rustc-link-arg-bin=rat_memcached=-Wl,-T,{root}/link/idle-text.ld");
    }
}
