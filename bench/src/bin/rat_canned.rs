//! `rat_canned`: a memcached-protocol server (text, meta and binary) that answers from constants and stores
//! nothing, to measure what the machine, loopback TCP and the load generator allow.

use std::net::{IpAddr, SocketAddr, TcpListener};
use std::process::ExitCode;

const HELP: &str = "\
rat_canned: answers every get with a fixed value and every storage command with success
(text, meta and binary protocols)

USAGE: rat_canned [OPTIONS]

OPTIONS:
  -p PORT              TCP port, 0 for any free one [11311]
  -l ADDR              address to listen on [127.0.0.1]
  -t THREADS           worker threads [1]
  --value-size B       bytes in the value every get returns [100]
  -h, --help           print this help

Prints `rat_canned listening on ADDR:PORT` on standard error once it accepts connections.
";

fn main() -> ExitCode {
    let mut args = pico_args::Arguments::from_env();
    if args.contains(["-h", "--help"]) {
        print!("{HELP}");
        return ExitCode::SUCCESS;
    }
    let parsed = (|| -> Result<(SocketAddr, usize, usize), String> {
        let error = |e: pico_args::Error| e.to_string();
        let port: u16 = args
            .opt_value_from_str("-p")
            .map_err(error)?
            .unwrap_or(11311);
        let address: IpAddr = args
            .opt_value_from_str("-l")
            .map_err(error)?
            .unwrap_or([127, 0, 0, 1].into());
        let threads: usize = args.opt_value_from_str("-t").map_err(error)?.unwrap_or(1);
        let value_size: usize = args
            .opt_value_from_str("--value-size")
            .map_err(error)?
            .unwrap_or(100);
        let rest = args.finish();
        if !rest.is_empty() {
            return Err(format!("unexpected arguments: {rest:?} (see --help)"));
        }
        if threads == 0 {
            return Err("-t must be at least 1".to_string());
        }
        Ok((SocketAddr::new(address, port), threads, value_size))
    })();
    let (address, threads, value_size) = match parsed {
        Ok(parsed) => parsed,
        Err(message) => {
            eprintln!("rat_canned: {message}");
            return ExitCode::from(1);
        }
    };
    // Best effort: as many connections as the hard open-files limit allows; if the raise
    // is refused, the limit in force stays and accepts beyond it wait.
    let _ = rat_memcache::server::fdlimit::raise_open_files_limit(u64::MAX);
    let listener = match TcpListener::bind(address) {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!("rat_canned: bind {address}: {e}");
            return ExitCode::from(2);
        }
    };
    match listener.local_addr() {
        Ok(bound) => eprintln!("rat_canned listening on {bound}"),
        Err(e) => eprintln!("rat_canned listening ({e})"),
    }
    match rat_memcache_bench::canned::serve(listener, threads, value_size) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rat_canned: {e}");
            ExitCode::from(2)
        }
    }
}
