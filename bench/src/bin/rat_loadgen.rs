//! `rat_loadgen`: a closed-loop load generator for memcached-compatible servers.
//!
//! Parses the command line, builds the dataset and protocol, optionally fills the server
//! with every key, runs the measured phase and prints the report. Exit status: 0 on
//! success, 1 for a bad command line, 2 when the run failed (connection error, timeout, or
//! a reply the protocol does not allow).
//!
//! With `--idle-conns N` it instead opens N connections, holds them idle and reports how
//! many the server kept ([`rat_memcache_bench::idle`]); that mode exits with 0 whatever the
//! server kept, and with 2 only when it could not be set up (too low an open-files limit).

use rat_memcache::server::fdlimit::raise_open_files_limit;
use rat_memcache_bench::dataset::Dataset;
use rat_memcache_bench::engine::{self, RunConfig, Stop, Workload};
use rat_memcache_bench::idle::{self, IdleConfig};
use rat_memcache_bench::protocol::{BinaryProtocol, MetaProtocol, Protocol, TextProtocol};
use rat_memcache_bench::report::{self, RunDescription, Summary};
use rat_memcache_bench::workload::{Distribution, Mix};
use std::ffi::OsString;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

const HELP: &str = "\
rat_loadgen: closed-loop load generator for memcached-compatible servers

USAGE: rat_loadgen [OPTIONS]
       rat_loadgen --idle-conns N [--server HOST:PORT] [--hold SECS]
                   [--hold-signal-file PATH] [--timeout SECS] [--json]

OPTIONS:
  --server HOST:PORT   server to load [127.0.0.1:11211]
  --threads N          generator threads [1]
  --conns N            connections in total, spread over the threads [50]
  --pipeline N         requests in flight per connection [1]
  --duration SECS      length of the measured run [10]
  --requests N         stop after N requests in total instead of after a duration
  --keys N             number of distinct keys [100000]
  --value-size B       bytes per value [100]
  --set-ratio S:G      sets to gets, e.g. 1:10, 1:0 (sets only), 0:1 (gets only) [1:10]
  --dist D             key popularity: uniform or zipf:THETA with 0<THETA<1 [uniform]
  --multiget K         keys per get request [1]
  --prefill            set every key once before the measured run
  --fill               only set every key once, and report that as the run
  --protocol P         wire protocol: text, meta (mg/ms) or binary [text]
  --verify             check every returned value byte for byte
  --seed N             random seed, for reproducible key sequences [1]
  --timeout SECS       give up when no reply came for this long [10]
  --json               print the report as one JSON object instead of text
  -h, --help           print this help

Values are derived from their keys, so --verify needs no memory of what was stored; use
--prefill (or an earlier --fill with the same --keys and --value-size) so gets find them.

IDLE CONNECTIONS:
  --idle-conns N       open N connections, hold them idle, then check each is still served
  --hold SECS          how long to hold them before the check [5]
  --hold-signal-file PATH
                       once connected, write the number of open connections to PATH
  --timeout SECS       give up the connects when none completed, and the check when no
                       reply came, for this long [10]
Once connected it prints `holding X connections for S s` on standard error; the report
counts the connections kept (answered `version`), refused and timed out. Exit status 0
whatever the server kept, 2 when the open-files limit is too low for N.
";

/// The wire protocols `--protocol` accepts.
const PROTOCOLS: [&str; 3] = ["text", "meta", "binary"];

struct Options {
    server: SocketAddr,
    server_text: String,
    threads: usize,
    conns: usize,
    pipeline: usize,
    stop: Stop,
    keys: u32,
    value_size: usize,
    set_ratio: (u32, u32),
    distribution: Distribution,
    distribution_text: String,
    multiget: usize,
    protocol: String,
    prefill: bool,
    fill: bool,
    verify: bool,
    seed: u64,
    timeout: Duration,
    json: bool,
}

/// The idle-connections mode's settings.
struct IdleOptions {
    server: SocketAddr,
    conns: usize,
    hold: Duration,
    signal_file: Option<PathBuf>,
    timeout: Duration,
    json: bool,
}

enum Mode {
    Load(Options),
    Idle(IdleOptions),
}

/// Descriptors the idle mode needs besides its connections: standard streams, the poll,
/// the signal file, with room to spare.
const SPARE_DESCRIPTORS: u64 = 64;

fn positive<T: PartialOrd + Default + Copy + std::fmt::Display>(
    name: &str,
    value: T,
) -> Result<T, String> {
    if value > T::default() {
        Ok(value)
    } else {
        Err(format!("{name} must be positive, got {value}"))
    }
}

fn seconds(name: &str, text: &str) -> Result<Duration, String> {
    let value: f64 = text
        .parse()
        .map_err(|_| format!("{name}: `{text}` is not a number"))?;
    if !(value.is_finite() && value > 0.0) {
        return Err(format!(
            "{name} must be a positive number of seconds, got {text}"
        ));
    }
    Ok(Duration::from_secs_f64(value))
}

fn parse_ratio(text: &str) -> Result<(u32, u32), String> {
    let bad = || format!("--set-ratio `{text}`: expected S:G, two whole numbers, not both 0");
    let (sets, gets) = text.split_once(':').ok_or_else(bad)?;
    let sets: u32 = sets.parse().map_err(|_| bad())?;
    let gets: u32 = gets.parse().map_err(|_| bad())?;
    if sets.checked_add(gets).map_or(true, |total| total == 0) {
        return Err(bad());
    }
    Ok((sets, gets))
}

fn parse_server(args: &mut pico_args::Arguments) -> Result<(SocketAddr, String), String> {
    let server_text: String = args
        .opt_value_from_str("--server")
        .map_err(|e| e.to_string())?
        .unwrap_or("127.0.0.1:11211".into());
    let server = server_text
        .to_socket_addrs()
        .map_err(|e| format!("--server {server_text}: {e}"))?
        .next()
        .ok_or_else(|| format!("--server {server_text}: no address"))?;
    Ok((server, server_text))
}

fn parse_timeout(args: &mut pico_args::Arguments) -> Result<Duration, String> {
    let timeout_text: String = args
        .opt_value_from_str("--timeout")
        .map_err(|e| e.to_string())?
        .unwrap_or("10".into());
    seconds("--timeout", &timeout_text)
}

fn parse_idle_options(mut args: pico_args::Arguments, conns: usize) -> Result<IdleOptions, String> {
    let error = |e: pico_args::Error| e.to_string();
    let (server, _) = parse_server(&mut args)?;
    let hold = match args
        .opt_value_from_str::<_, String>("--hold")
        .map_err(error)?
    {
        None => Duration::from_secs(5),
        Some(text) => text
            .parse::<f64>()
            .ok()
            .and_then(|secs| Duration::try_from_secs_f64(secs).ok())
            .ok_or_else(|| format!("--hold must be a number of seconds, 0 or more, got {text}"))?,
    };
    let signal_file = args
        .opt_value_from_os_str("--hold-signal-file", |path| {
            Ok::<_, String>(PathBuf::from(path))
        })
        .map_err(error)?;
    let options = IdleOptions {
        server,
        conns: positive("--idle-conns", conns)?,
        hold,
        signal_file,
        timeout: parse_timeout(&mut args)?,
        json: args.contains("--json"),
    };
    let rest = args.finish();
    if !rest.is_empty() {
        return Err(format!(
            "unexpected arguments with --idle-conns: {rest:?} (it takes only --server, --hold, \
             --hold-signal-file, --timeout and --json)"
        ));
    }
    Ok(options)
}

fn parse_options() -> Result<Option<Mode>, String> {
    let mut args = pico_args::Arguments::from_env();
    if args.contains(["-h", "--help"]) {
        print!("{HELP}");
        return Ok(None);
    }
    let error = |e: pico_args::Error| e.to_string();
    if let Some(conns) = args.opt_value_from_str("--idle-conns").map_err(error)? {
        return parse_idle_options(args, conns).map(|options| Some(Mode::Idle(options)));
    }
    let (server, server_text) = parse_server(&mut args)?;
    let threads = positive(
        "--threads",
        args.opt_value_from_str("--threads")
            .map_err(error)?
            .unwrap_or(1usize),
    )?;
    let conns = positive(
        "--conns",
        args.opt_value_from_str("--conns")
            .map_err(error)?
            .unwrap_or(50usize),
    )?;
    let pipeline = positive(
        "--pipeline",
        args.opt_value_from_str("--pipeline")
            .map_err(error)?
            .unwrap_or(1usize),
    )?;
    let duration: Option<String> = args.opt_value_from_str("--duration").map_err(error)?;
    let requests: Option<u64> = args.opt_value_from_str("--requests").map_err(error)?;
    let stop = match (duration, requests) {
        (Some(_), Some(_)) => return Err("give --duration or --requests, not both".into()),
        (Some(text), None) => Stop::After(seconds("--duration", &text)?),
        (None, Some(requests)) => Stop::Requests(positive("--requests", requests)?),
        (None, None) => Stop::After(Duration::from_secs(10)),
    };
    let keys = positive(
        "--keys",
        args.opt_value_from_str("--keys")
            .map_err(error)?
            .unwrap_or(100_000u32),
    )?;
    let value_size = args
        .opt_value_from_str("--value-size")
        .map_err(error)?
        .unwrap_or(100usize);
    let ratio_text: String = args
        .opt_value_from_str("--set-ratio")
        .map_err(error)?
        .unwrap_or("1:10".into());
    let set_ratio = parse_ratio(&ratio_text)?;
    let distribution_text: String = args
        .opt_value_from_str("--dist")
        .map_err(error)?
        .unwrap_or("uniform".into());
    let distribution = distribution_text.parse()?;
    let multiget = positive(
        "--multiget",
        args.opt_value_from_str("--multiget")
            .map_err(error)?
            .unwrap_or(1usize),
    )?;
    let protocol: String = args
        .opt_value_from_str("--protocol")
        .map_err(error)?
        .unwrap_or("text".into());
    if !PROTOCOLS.contains(&protocol.as_str()) {
        return Err(format!(
            "--protocol {protocol}: expected one of {}",
            PROTOCOLS.join(", ")
        ));
    }
    let seed = args
        .opt_value_from_str("--seed")
        .map_err(error)?
        .unwrap_or(1u64);
    let timeout = parse_timeout(&mut args)?;
    let options = Options {
        server,
        server_text,
        threads,
        conns,
        pipeline,
        stop,
        keys,
        value_size,
        set_ratio,
        distribution,
        distribution_text,
        multiget,
        protocol,
        prefill: args.contains("--prefill"),
        fill: args.contains("--fill"),
        verify: args.contains("--verify"),
        seed,
        timeout,
        json: args.contains("--json"),
    };
    let rest = args.finish();
    if !rest.is_empty() {
        return Err(format!("unexpected arguments: {rest:?} (see --help)"));
    }
    Ok(Some(Mode::Load(options)))
}

fn main() -> ExitCode {
    let mode = match parse_options() {
        Ok(Some(mode)) => mode,
        Ok(None) => return ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("rat_loadgen: {message}");
            return ExitCode::from(1);
        }
    };
    let outcome = match mode {
        Mode::Load(options) => run(&options),
        Mode::Idle(options) => run_idle(&options),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("rat_loadgen: {message}");
            ExitCode::from(2)
        }
    }
}

fn run(options: &Options) -> Result<(), String> {
    let dataset = Dataset::new(options.keys, options.value_size);
    let protocol: Box<dyn Protocol> = match options.protocol.as_str() {
        "meta" => Box::new(MetaProtocol::new(&dataset)),
        "binary" => Box::new(BinaryProtocol),
        _ => Box::new(TextProtocol::new(&dataset)),
    };
    let protocol: &dyn Protocol = protocol.as_ref();
    let threads = options.threads.min(options.conns);
    let config = RunConfig {
        server: options.server,
        threads,
        conns: options.conns,
        pipeline: options.pipeline,
        stop: options.stop,
        verify: options.verify,
        reply_timeout: options.timeout,
    };
    let description = |phase: &'static str, set_ratio: (u32, u32)| RunDescription {
        phase,
        server: options.server_text.clone(),
        protocol: options.protocol.clone(),
        threads,
        conns: options.conns,
        pipeline: options.pipeline,
        keys: dataset.count(),
        value_size: dataset.value_size(),
        set_ratio,
        distribution: options.distribution_text.clone(),
        multiget: options.multiget,
        verify: options.verify,
    };

    if options.fill {
        let fill = RunConfig {
            stop: Stop::Exhausted,
            ..config
        };
        let result = engine::run(protocol, &dataset, &fill, &Workload::Fill)?;
        let description = RunDescription {
            multiget: 1,
            ..description("fill", (1, 0))
        };
        print_report(options, &description, &Summary::new(&result, threads), None);
        return Ok(());
    }

    let mut prefill_s = None;
    if options.prefill {
        // Deep pipelines fill fastest; the fill is not what is measured.
        let fill = RunConfig {
            stop: Stop::Exhausted,
            pipeline: config.pipeline.max(16),
            ..config.clone()
        };
        let result = engine::run(protocol, &dataset, &fill, &Workload::Fill)?;
        let seconds = result.elapsed.as_secs_f64();
        eprintln!(
            "prefill: {} sets in {seconds:.2} s ({:.0} sets/s)",
            result.counters.sets,
            result.counters.sets as f64 / seconds.max(1e-9)
        );
        prefill_s = Some(seconds);
    }
    let mix = Mix {
        sets: options.set_ratio.0,
        gets: options.set_ratio.1,
        distribution: options.distribution.clone(),
        multiget: options.multiget,
    };
    let workload = Workload::Mixed {
        mix,
        seed: options.seed,
    };
    let result = engine::run(protocol, &dataset, &config, &workload)?;
    let summary = Summary::new(&result, threads);
    print_report(
        options,
        &description("measured", options.set_ratio),
        &summary,
        prefill_s,
    );
    Ok(())
}

fn print_report(
    options: &Options,
    description: &RunDescription,
    summary: &Summary,
    prefill_s: Option<f64>,
) {
    if options.json {
        println!("{}", report::json(description, summary, prefill_s));
    } else {
        print!("{}", report::human(description, summary));
    }
}

/// Opens the connections, holds them, checks them and prints what the server kept.
fn run_idle(options: &IdleOptions) -> Result<(), String> {
    let needed = options.conns as u64 + SPARE_DESCRIPTORS;
    // As many as the hard limit allows.
    let limit = raise_open_files_limit(u64::MAX)
        .map_err(|e| format!("reading the open-files limit (RLIMIT_NOFILE): {e}"))?;
    if needed > limit {
        return Err(format!(
            "--idle-conns {} needs {needed} open files, but the open-files limit \
             (RLIMIT_NOFILE, raised to its hard limit) is {limit}; raise the hard limit \
             first, e.g. `ulimit -n {needed}` as root in the starting shell",
            options.conns
        ));
    }
    let config = IdleConfig {
        server: options.server,
        conns: options.conns,
        timeout: options.timeout,
    };
    let open = idle::open(&config)?;
    let held_since = Instant::now();
    eprintln!(
        "holding {} connections for {} s",
        open.opened(),
        options.hold.as_secs_f64()
    );
    if let Some(path) = &options.signal_file {
        write_atomically(path, &format!("{}\n", open.opened()))
            .map_err(|e| format!("--hold-signal-file {}: {e}", path.display()))?;
    }
    std::thread::sleep(options.hold.saturating_sub(held_since.elapsed()));
    let report = open.check(held_since.elapsed())?;
    if let Some(line) = &report.first_refusal {
        eprintln!("first refusal: {line}");
    }
    if options.json {
        println!("{}", report.json());
    } else {
        println!("{}", report.human());
    }
    Ok(())
}

/// Writes `text` to `PATH.tmp` and renames that to `path`, so a reader polling for `path`
/// never sees it half written.
fn write_atomically(path: &Path, text: &str) -> std::io::Result<()> {
    let mut temporary = OsString::from(path.as_os_str());
    temporary.push(".tmp");
    std::fs::write(&temporary, text)?;
    std::fs::rename(&temporary, path)
}
