//! rat_trace: miss ratio of rat_memcache's eviction policies on a cache trace.
//!
//! Reads a trace (text or libCacheSim's oracleGeneral) or generates one (`zipf:THETA`,
//! `scan`, `onehit`), then replays it cache-aside (get; on a miss, set a value of the
//! request's size) against a fresh `RatMemCache` for every policy and cache size asked
//! for, one after another on this thread, and prints one row each: requests, miss ratio,
//! refused stores, and how many requests per second the replay ran at. A policy the
//! library does not offer yet is a row saying so; any other failure ends the run.
//!
//! `--write FILE` saves the (generated) trace as text instead of replaying it.
//! See `bench/README.md` for the options and how to read the table.

use std::fs::File;
use std::io::{self, BufReader, BufWriter};
use std::process::exit;
use std::time::Instant;

use rat_memcache::{EvictionStrategy, L1Config, RatMemCache, RatMemCacheBuilder, TtlConfig};
use rat_memcache_bench::trace::{
    self, Generator, ReplayCounts, ReplayTarget, SetOutcome, Synthetic, Trace,
};

const USAGE: &str = "\
usage: rat_trace --trace SPEC [--trace SPEC ...] [options]

SPEC is a file (text `KEY [SIZE]` per line, or oracleGeneral binary; `-` reads standard
input) or a generator: zipf:THETA, scan[:THETA], onehit[:THETA] (THETA in (0,1), 0.99).

  --format text|oracle      file format (default: from the name; *.bin and names with
                            `oracleGeneral` are oracle, anything else text)
  --value-size B            value bytes of text lines without a size, and of generated
                            requests (100)
  --keys N                  generated: keys in the Zipf-popular set (1000000)
  --requests N              generated: requests (5000000)
  --seed N                  generated: random seed (1)
  --scan-length N           scan: keys per scan (keys / 10)
  --scan-period N           scan: requests from one scan's start to the next (4 x length)
  --onehit-share F          onehit: share of requests for keys asked once (0.5)
  --policies LIST           lru,lfu,fifo,hybrid (all)
  --sizes LIST              cache sizes in bytes, k/m/g suffixes (4m,16m,64m)
  --sizes-pct LIST          cache sizes in percent of the trace's footprint
  --max-item-size B         the cache's item size limit (1m)
  --write FILE              save the trace as text and stop (one SPEC)
  --markdown                print the table as Markdown
";

const POLICIES: [EvictionStrategy; 4] = [
    EvictionStrategy::Lru,
    EvictionStrategy::Lfu,
    EvictionStrategy::Fifo,
    EvictionStrategy::Hybrid,
];

fn usage_error(message: &str) -> ! {
    eprintln!("rat_trace: {message}\n\n{USAGE}");
    exit(2)
}

fn fatal(message: &str) -> ! {
    eprintln!("rat_trace: {message}");
    exit(1)
}

/// Bytes, with an optional k, m or g suffix (powers of 1024).
fn parse_bytes(text: &str) -> Result<u64, String> {
    let lower = text.to_ascii_lowercase();
    let (digits, unit) = match lower.as_bytes().last() {
        Some(b'k') => (&lower[..lower.len() - 1], 1u64 << 10),
        Some(b'm') => (&lower[..lower.len() - 1], 1 << 20),
        Some(b'g') => (&lower[..lower.len() - 1], 1 << 30),
        _ => (&lower[..], 1),
    };
    digits
        .parse::<u64>()
        .ok()
        .and_then(|count| count.checked_mul(unit))
        .filter(|&bytes| bytes > 0)
        .ok_or_else(|| format!("`{text}` is not a positive size (bytes, or with k, m, g)"))
}

/// Bytes the short way: exact multiples of k, m, g as such, else one decimal.
fn show_bytes(bytes: u64) -> String {
    for (unit, suffix) in [(1u64 << 30, "g"), (1 << 20, "m"), (1 << 10, "k")] {
        if bytes >= unit {
            return if bytes % unit == 0 {
                format!("{}{suffix}", bytes / unit)
            } else {
                format!("{:.1}{suffix}", bytes as f64 / unit as f64)
            };
        }
    }
    bytes.to_string()
}

fn parse_policy(name: &str) -> Result<EvictionStrategy, String> {
    POLICIES
        .into_iter()
        .find(|policy| policy.as_str() == name)
        .ok_or_else(|| format!("unknown policy `{name}` (lru, lfu, fifo, hybrid)"))
}

fn list<T>(text: &str, parse: impl Fn(&str) -> Result<T, String>) -> Vec<T> {
    text.split(',')
        .map(|item| parse(item.trim()).unwrap_or_else(|error| usage_error(&error)))
        .collect()
}

/// A cache size, as asked for.
#[derive(Clone, Copy)]
enum CacheSize {
    Bytes(u64),
    PercentOfFootprint(f64),
}

impl CacheSize {
    /// The bytes and the label for `trace`.
    fn resolve(self, trace: &Trace) -> (u64, String) {
        match self {
            CacheSize::Bytes(bytes) => (bytes, show_bytes(bytes)),
            CacheSize::PercentOfFootprint(percent) => {
                let bytes = ((trace.footprint() as f64 * percent / 100.0) as u64).max(1);
                (bytes, format!("{percent}% = {}", show_bytes(bytes)))
            }
        }
    }
}

/// Where a trace comes from.
enum Source {
    Generated(Generator),
    File { path: String, oracle: bool },
}

struct Settings {
    synthetic: Synthetic,
    scan_length: Option<u64>,
    scan_period: Option<u64>,
    onehit_share: f64,
    format: Option<String>,
}

fn source(spec: &str, settings: &Settings) -> Source {
    let keys = u64::from(settings.synthetic.keys);
    let scan_length = settings.scan_length.unwrap_or((keys / 10).max(1));
    let scan_period = settings.scan_period.unwrap_or(4 * scan_length);
    if let Some(generator) = Generator::parse(spec, scan_length, scan_period, settings.onehit_share)
    {
        return Source::Generated(generator.unwrap_or_else(|error| usage_error(&error)));
    }
    let oracle = match settings.format.as_deref() {
        Some("oracle") => true,
        Some("text") => false,
        Some(other) => usage_error(&format!("unknown format `{other}` (text or oracle)")),
        None if spec.ends_with(".zst") => fatal(&format!(
            "{spec} is zstd-compressed: decompress it first, or pipe it in with \
             `zstd -dc {spec} | rat_trace --trace - --format oracle`"
        )),
        None => spec.ends_with(".bin") || spec.contains("oracleGeneral"),
    };
    Source::File {
        path: spec.to_string(),
        oracle,
    }
}

fn load(spec: &str, source: &Source, settings: &Settings) -> Trace {
    let loaded = match source {
        Source::Generated(generator) => trace::generate(generator, &settings.synthetic),
        Source::File { path, oracle } => {
            let input: Box<dyn io::Read> = if path == "-" {
                Box::new(io::stdin().lock())
            } else {
                Box::new(
                    File::open(path).unwrap_or_else(|error| fatal(&format!("{path}: {error}"))),
                )
            };
            let input = BufReader::with_capacity(1 << 16, input);
            if *oracle {
                trace::read_oracle(input)
            } else {
                trace::read_text(input, settings.synthetic.value_size)
            }
        }
    };
    let trace = loaded.unwrap_or_else(|error| fatal(&format!("{spec}: {error}")));
    if trace.requests().is_empty() {
        fatal(&format!("{spec}: the trace has no requests"));
    }
    trace
}

/// The library's cache as a replay target.
struct Cache {
    cache: RatMemCache,
    /// Zeros to take values from: no value needs more than the item size limit.
    value: Vec<u8>,
}

impl ReplayTarget for Cache {
    type Error = rat_memcache::Error;

    fn get(&mut self, key: &[u8]) -> Result<bool, Self::Error> {
        Ok(self.cache.get(key)?.is_some())
    }

    fn set(&mut self, key: &[u8], size: u32) -> Result<SetOutcome, Self::Error> {
        let Some(value) = self.value.get(..size as usize) else {
            return Ok(SetOutcome::Refused);
        };
        match self.cache.set(key, value) {
            Ok(()) => Ok(SetOutcome::Stored),
            Err(rat_memcache::Error::TooLarge { .. } | rat_memcache::Error::NoMemory) => {
                Ok(SetOutcome::Refused)
            }
            Err(error) => Err(error),
        }
    }
}

/// One row's result.
enum Outcome {
    Replayed {
        counts: ReplayCounts,
        seconds: f64,
    },
    /// The library refused the policy, for this reason.
    NotAvailable(String),
}

/// Replays `trace` against a fresh cache of `bytes` with `policy`.
fn run(trace: &Trace, policy: EvictionStrategy, bytes: u64, max_item_size: usize) -> Outcome {
    let max_memory = usize::try_from(bytes)
        .unwrap_or_else(|_| fatal(&format!("a cache of {bytes} bytes does not fit in memory")));
    let built = RatMemCacheBuilder::new()
        .l1_config(L1Config {
            max_memory,
            eviction_strategy: policy,
            max_item_size,
            ..Default::default()
        })
        // Nothing in a trace expires: no sweeper thread competing with the replay.
        .ttl_config(TtlConfig {
            cleanup_interval: 0,
            ..Default::default()
        })
        .build();
    let cache = match built {
        Ok(cache) => cache,
        // Sizes and the item limit are checked above, so a refused configuration here is
        // the policy.
        Err(rat_memcache::Error::Config(reason)) if policy != EvictionStrategy::Lru => {
            return Outcome::NotAvailable(reason);
        }
        Err(error) => fatal(&format!("building a {} cache: {error}", policy.as_str())),
    };
    let largest = trace
        .requests()
        .iter()
        .map(|request| request.size as usize)
        .max()
        .unwrap_or(0);
    let mut target = Cache {
        cache,
        value: vec![0; largest.min(max_item_size)],
    };
    let started = Instant::now();
    let counts = trace::replay(trace, &mut target)
        .unwrap_or_else(|error| fatal(&format!("replay with {}: {error}", policy.as_str())));
    Outcome::Replayed {
        counts,
        seconds: started.elapsed().as_secs_f64(),
    }
}

/// The table, printed a row at a time as the replays finish.
struct Table {
    markdown: bool,
    trace_width: usize,
    cache_width: usize,
}

impl Table {
    fn header(&self) {
        if self.markdown {
            println!("| trace | policy | cache | requests | miss % | refused | requests/s |");
            println!("|---|---|---|--:|--:|--:|--:|");
        } else {
            self.line([
                "trace",
                "policy",
                "cache",
                "requests",
                "miss %",
                "refused",
                "requests/s",
            ]);
        }
    }

    fn row(&self, trace: &str, policy: EvictionStrategy, cache: &str, outcome: &Outcome) {
        let numbers = match outcome {
            Outcome::Replayed { counts, seconds } => [
                counts.requests.to_string(),
                format!("{:.2}", counts.miss_percent()),
                counts.refused.to_string(),
                format!(
                    "{:.0}",
                    counts.requests as f64 / seconds.max(f64::MIN_POSITIVE)
                ),
            ],
            Outcome::NotAvailable(_) => ["-", "not available", "-", "-"].map(String::from),
        };
        let [requests, miss, refused, rate] = &numbers;
        let cells = [trace, policy.as_str(), cache, requests, miss, refused, rate];
        if self.markdown {
            println!("| {} |", cells.join(" | "));
        } else {
            self.line(cells);
        }
    }

    fn line(&self, cells: [&str; 7]) {
        println!(
            "{:<tw$}  {:<6}  {:<cw$}  {:>10}  {:>13}  {:>8}  {:>10}",
            cells[0],
            cells[1],
            cells[2],
            cells[3],
            cells[4],
            cells[5],
            cells[6],
            tw = self.trace_width,
            cw = self.cache_width,
        );
    }
}

/// The name a trace goes by in the table: a generator's spec, a file's name.
fn trace_name(spec: &str) -> String {
    std::path::Path::new(spec)
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_else(|| spec.to_string())
}

fn main() {
    let mut args = pico_args::Arguments::from_env();
    if args.contains(["-h", "--help"]) {
        print!("{USAGE}");
        return;
    }
    fn option<T: std::str::FromStr>(
        args: &mut pico_args::Arguments,
        name: &'static str,
    ) -> Option<T>
    where
        T::Err: std::fmt::Display,
    {
        args.opt_value_from_str(name)
            .unwrap_or_else(|error| usage_error(&format!("{name}: {error}")))
    }
    let specs: Vec<String> = args
        .values_from_str("--trace")
        .unwrap_or_else(|error| usage_error(&format!("--trace: {error}")));
    let bytes_option = |args: &mut pico_args::Arguments, name: &'static str| {
        option::<String>(args, name)
            .map(|text| parse_bytes(&text).unwrap_or_else(|e| usage_error(&e)))
    };
    let value_size = bytes_option(&mut args, "--value-size").unwrap_or(100);
    let value_size =
        u32::try_from(value_size).unwrap_or_else(|_| usage_error("--value-size must be below 4g"));
    let settings = Settings {
        synthetic: Synthetic {
            keys: option(&mut args, "--keys").unwrap_or(1_000_000),
            requests: option(&mut args, "--requests").unwrap_or(5_000_000),
            value_size,
            seed: option(&mut args, "--seed").unwrap_or(1),
        },
        scan_length: option(&mut args, "--scan-length"),
        scan_period: option(&mut args, "--scan-period"),
        onehit_share: option(&mut args, "--onehit-share").unwrap_or(0.5),
        format: option(&mut args, "--format"),
    };
    let policies = list(
        &option::<String>(&mut args, "--policies").unwrap_or("lru,lfu,fifo,hybrid".into()),
        parse_policy,
    );
    let mut sizes: Vec<CacheSize> = option::<String>(&mut args, "--sizes")
        .map(|text| list(&text, |item| parse_bytes(item).map(CacheSize::Bytes)))
        .unwrap_or_default();
    if let Some(text) = option::<String>(&mut args, "--sizes-pct") {
        sizes.extend(list(&text, |item| {
            item.parse::<f64>()
                .ok()
                .filter(|percent| *percent > 0.0 && percent.is_finite())
                .map(CacheSize::PercentOfFootprint)
                .ok_or_else(|| format!("`{item}` is not a positive percentage"))
        }));
    }
    if sizes.is_empty() {
        sizes = [4u64 << 20, 16 << 20, 64 << 20]
            .map(CacheSize::Bytes)
            .to_vec();
    }
    let max_item_size = bytes_option(&mut args, "--max-item-size").unwrap_or(1 << 20);
    let max_item_size = usize::try_from(max_item_size)
        .unwrap_or_else(|_| usage_error("--max-item-size does not fit in memory"));
    let write: Option<String> = option(&mut args, "--write");
    let markdown = args.contains("--markdown");
    let rest = args.finish();
    if !rest.is_empty() {
        usage_error(&format!("unknown arguments {rest:?}"));
    }
    if specs.is_empty() {
        usage_error("no --trace given");
    }

    if let Some(path) = write {
        let [spec] = specs.as_slice() else {
            usage_error("--write saves one trace: give one --trace");
        };
        let trace = load(spec, &source(spec, &settings), &settings);
        let file = File::create(&path).unwrap_or_else(|error| fatal(&format!("{path}: {error}")));
        trace::write_text(&trace, BufWriter::new(file))
            .unwrap_or_else(|error| fatal(&format!("{path}: {error}")));
        println!(
            "wrote {spec} to {path}: {} requests, {} keys",
            trace.requests().len(),
            trace.distinct_keys()
        );
        return;
    }

    let traces: Vec<(String, Trace)> = specs
        .iter()
        .map(|spec| {
            let trace = load(spec, &source(spec, &settings), &settings);
            (trace_name(spec), trace)
        })
        .collect();
    for (name, trace) in &traces {
        println!(
            "{name}: {} requests, {} keys, footprint {} (keys and values)",
            trace.requests().len(),
            trace.distinct_keys(),
            show_bytes(trace.footprint())
        );
    }
    println!();
    let resolved: Vec<Vec<(u64, String)>> = traces
        .iter()
        .map(|(_, trace)| sizes.iter().map(|size| size.resolve(trace)).collect())
        .collect();
    let table = Table {
        markdown,
        trace_width: traces
            .iter()
            .map(|(name, _)| name.len())
            .max()
            .unwrap_or(0)
            .max(5),
        cache_width: resolved
            .iter()
            .flatten()
            .map(|(_, label)| label.len())
            .max()
            .unwrap_or(0)
            .max(5),
    };
    table.header();
    for ((name, trace), sizes) in traces.iter().zip(&resolved) {
        for &policy in &policies {
            let mut refusal_shown = false;
            for (bytes, label) in sizes {
                let outcome = run(trace, policy, *bytes, max_item_size);
                if let Outcome::NotAvailable(reason) = &outcome {
                    if !refusal_shown {
                        eprintln!("rat_trace: {}: {reason}", policy.as_str());
                        refusal_shown = true;
                    }
                }
                table.row(name, policy, label, &outcome);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_binary_suffixes() {
        assert_eq!(parse_bytes("4096"), Ok(4096));
        assert_eq!(parse_bytes("64k"), Ok(64 << 10));
        assert_eq!(parse_bytes("16M"), Ok(16 << 20));
        assert_eq!(parse_bytes("2g"), Ok(2 << 30));
        for bad in ["", "m", "0", "0k", "1.5m", "-4m", "4t", "99999999999g"] {
            assert!(parse_bytes(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn sizes_show_short() {
        assert_eq!(show_bytes(512), "512");
        assert_eq!(show_bytes(64 << 10), "64k");
        assert_eq!(show_bytes(16 << 20), "16m");
        assert_eq!(show_bytes(3 << 30), "3g");
        assert_eq!(show_bytes((1 << 20) + (1 << 19)), "1.5m");
    }

    #[test]
    fn policies_parse_by_their_library_names() {
        assert_eq!(parse_policy("lru"), Ok(EvictionStrategy::Lru));
        assert_eq!(parse_policy("hybrid"), Ok(EvictionStrategy::Hybrid));
        assert!(parse_policy("LRU").is_err());
        assert!(parse_policy("arc").is_err());
    }
}
