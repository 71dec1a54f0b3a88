//! rat_inproc: rat_memcache as an embedded cache, against moka and quick_cache.
//! rat_memcache runs twice, with its default LRU and with its hybrid (S3-FIFO) policy.
//!
//! Two measurements, each cache behind the same small trait so every one runs the same
//! loop:
//!
//! 1. Nanoseconds per operation (get that hits, get that misses, set) on 1 and 2
//!    threads, over 100,000 keys of 100-byte values, with keys drawn uniformly and
//!    zipf(0.99). Every cache is big enough for all the keys, so gets of stored keys
//!    hit. Each thread draws its keys up front, so the timed loop is only cache calls.
//! 2. Hit ratio at equal memory: a cache-aside replay (get; on a miss, set) of a zipf(0.99)
//!    trace over 1,000,000 keys, with every cache given the same byte budget. moka and
//!    quick_cache are told each item weighs its key plus its value; rat_memcache counts
//!    its real cost (key, value, slot, index, allocator rounding), so at the same budget
//!    it holds fewer items than the others think they do: the comparison favours them.
//!    The trace and the replay are the `trace` module's, the ones `rat_trace` uses.
//!
//! usage: rat_inproc [--ops N] [--keys N] [--trace-keys N] [--trace N] [--budget-mb MB]

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use rat_memcache::{EvictionStrategy, L1Config, RatMemCache, RatMemCacheBuilder};
use rat_memcache_bench::rng::Rng;
use rat_memcache_bench::trace::{
    generate, replay, Generator, ReplayTarget, SetOutcome, Synthetic, Trace,
};
use rat_memcache_bench::workload::{Distribution, KeyChooser};

const VALUE_SIZE: usize = 100;

/// What the benchmark asks of a cache.
trait Subject: Send + Sync {
    fn get(&self, key: &str) -> Option<Bytes>;
    fn set(&self, key: &str, value: &Bytes);
}

struct Rat(RatMemCache);

impl Subject for Rat {
    fn get(&self, key: &str) -> Option<Bytes> {
        self.0.get(key).ok().flatten()
    }
    fn set(&self, key: &str, value: &Bytes) {
        // A full cache evicts; an error here would be a bug worth seeing.
        self.0.set(key, value.clone()).expect("set");
    }
}

struct Moka(moka::sync::Cache<String, Bytes>);

impl Subject for Moka {
    fn get(&self, key: &str) -> Option<Bytes> {
        self.0.get(key)
    }
    fn set(&self, key: &str, value: &Bytes) {
        self.0.insert(key.to_owned(), value.clone());
    }
}

struct Quick(quick_cache::sync::Cache<String, Bytes, Weight>);

impl Subject for Quick {
    fn get(&self, key: &str) -> Option<Bytes> {
        self.0.get(key)
    }
    fn set(&self, key: &str, value: &Bytes) {
        self.0.insert(key.to_owned(), value.clone());
    }
}

/// Key plus value bytes: what moka and quick_cache are told an item weighs.
#[derive(Clone)]
struct Weight;

impl quick_cache::Weighter<String, Bytes> for Weight {
    fn weight(&self, key: &String, value: &Bytes) -> u64 {
        (key.len() + value.len()) as u64
    }
}

fn rat(budget: usize, eviction_strategy: EvictionStrategy) -> Box<dyn Subject> {
    let cache = RatMemCacheBuilder::new()
        .l1_config(L1Config {
            max_memory: budget,
            eviction_strategy,
            ..Default::default()
        })
        .build()
        .expect("rat_memcache builds");
    Box::new(Rat(cache))
}

fn moka(budget: usize) -> Box<dyn Subject> {
    Box::new(Moka(
        moka::sync::Cache::builder()
            .max_capacity(budget as u64)
            .weigher(|key: &String, value: &Bytes| (key.len() + value.len()) as u32)
            .build(),
    ))
}

fn quick(budget: usize, items: usize) -> Box<dyn Subject> {
    Box::new(Quick(quick_cache::sync::Cache::with_weighter(
        items,
        budget as u64,
        Weight,
    )))
}

/// The caches, each with `budget` bytes, sized for about `items` items.
fn subjects(budget: usize, items: usize) -> Vec<(&'static str, Box<dyn Subject>)> {
    vec![
        ("rat_memcache", rat(budget, EvictionStrategy::Lru)),
        ("rat hybrid", rat(budget, EvictionStrategy::Hybrid)),
        ("moka", moka(budget)),
        ("quick_cache", quick(budget, items)),
    ]
}

#[derive(Clone, Copy)]
enum Op {
    GetHit,
    GetMiss,
    Set,
}

/// Runs `ops` operations on each of `threads` threads; returns ns per operation per
/// thread (what one call costs its caller).
fn time_ops(
    subject: &Arc<Box<dyn Subject>>,
    op: Op,
    keys: &Arc<Vec<String>>,
    misses: &Arc<Vec<String>>,
    distribution: &Distribution,
    threads: usize,
    ops: usize,
) -> f64 {
    let value = Bytes::from(vec![b'v'; VALUE_SIZE]);
    let chooser = KeyChooser::new(distribution, keys.len() as u32);
    let workers: Vec<_> = (0..threads)
        .map(|thread| {
            let mut rng = Rng::new(thread as u64 + 17);
            let order: Vec<u32> = (0..ops).map(|_| chooser.next(&mut rng)).collect();
            let (subject, keys, misses, value) = (
                Arc::clone(subject),
                Arc::clone(keys),
                Arc::clone(misses),
                value.clone(),
            );
            std::thread::spawn(move || {
                let started = Instant::now();
                let mut found = 0usize;
                for &index in &order {
                    let index = index as usize;
                    match op {
                        Op::GetHit => found += usize::from(subject.get(&keys[index]).is_some()),
                        Op::GetMiss => found += usize::from(subject.get(&misses[index]).is_some()),
                        Op::Set => subject.set(&keys[index], &value),
                    }
                }
                let elapsed = started.elapsed();
                match op {
                    Op::GetHit => assert_eq!(found, order.len(), "every key is stored"),
                    Op::GetMiss => assert_eq!(found, 0, "no miss key is stored"),
                    Op::Set => {}
                }
                elapsed.as_nanos() as f64 / order.len() as f64
            })
        })
        .collect();
    let per_thread: Vec<f64> = workers
        .into_iter()
        .map(|worker| worker.join().expect("worker"))
        .collect();
    per_thread.iter().sum::<f64>() / per_thread.len() as f64
}

/// A cache behind [`Subject`] as a replay target.
struct Replayed<'a> {
    subject: &'a dyn Subject,
    /// The value every set stores (all requests of the generated trace have its size).
    value: Bytes,
}

impl ReplayTarget for Replayed<'_> {
    type Error = std::convert::Infallible;

    fn get(&mut self, key: &[u8]) -> Result<bool, Self::Error> {
        Ok(self.subject.get(trace_key(key)).is_some())
    }

    fn set(&mut self, key: &[u8], size: u32) -> Result<SetOutcome, Self::Error> {
        self.subject
            .set(trace_key(key), &self.value.slice(..size as usize));
        Ok(SetOutcome::Stored)
    }
}

/// A generated trace's key as text: generated keys are decimal digits.
fn trace_key(key: &[u8]) -> &str {
    std::str::from_utf8(key).expect("generated keys are decimal digits")
}

/// Cache-aside replay of `trace` (get; on a miss, set); returns the hit ratio.
fn hit_ratio(subject: &dyn Subject, trace: &Trace) -> f64 {
    let mut target = Replayed {
        subject,
        value: Bytes::from(vec![b'v'; VALUE_SIZE]),
    };
    let counts = match replay(trace, &mut target) {
        Ok(counts) => counts,
        Err(never) => match never {},
    };
    1.0 - counts.misses as f64 / counts.requests as f64
}

fn main() {
    let mut args = pico_args::Arguments::from_env();
    let number = |args: &mut pico_args::Arguments, name: &'static str, default: usize| {
        args.opt_value_from_str(name)
            .unwrap_or_else(|error| {
                eprintln!("rat_inproc: {name}: {error}");
                std::process::exit(2)
            })
            .unwrap_or(default)
    };
    let ops = number(&mut args, "--ops", 2_000_000);
    let key_count = number(&mut args, "--keys", 100_000);
    let trace_keys = number(&mut args, "--trace-keys", 1_000_000);
    let trace_len = number(&mut args, "--trace", 5_000_000);
    let budget_mb = number(&mut args, "--budget-mb", 16);
    let rest = args.finish();
    if !rest.is_empty() {
        eprintln!("rat_inproc: unknown arguments {rest:?}");
        std::process::exit(2);
    }

    let keys: Arc<Vec<String>> = Arc::new((0..key_count).map(|i| format!("key:{i}")).collect());
    let misses: Arc<Vec<String>> = Arc::new((0..key_count).map(|i| format!("miss:{i}")).collect());
    let value = Bytes::from(vec![b'v'; VALUE_SIZE]);
    // Room for every key in every cache, whatever each counts.
    let roomy = key_count * 1024;

    println!(
        "ns per operation per thread: {key_count} keys of {VALUE_SIZE} bytes, {ops} operations per thread"
    );
    println!(
        "{:<14} {:<12} {:>8} {:>12} {:>12} {:>12}",
        "cache", "keys", "threads", "get (hit)", "get (miss)", "set"
    );
    for distribution in [Distribution::Uniform, Distribution::Zipf(0.99)] {
        let label = match distribution {
            Distribution::Uniform => "uniform".to_string(),
            Distribution::Zipf(theta) => format!("zipf {theta}"),
        };
        for threads in [1, 2] {
            for (name, subject) in subjects(roomy, key_count) {
                for key in keys.iter() {
                    subject.set(key, &value);
                }
                let subject = Arc::new(subject);
                let timings: Vec<f64> = [Op::GetHit, Op::GetMiss, Op::Set]
                    .into_iter()
                    .map(|op| time_ops(&subject, op, &keys, &misses, &distribution, threads, ops))
                    .collect();
                println!(
                    "{name:<14} {label:<12} {threads:>8} {:>12.1} {:>12.1} {:>12.1}",
                    timings[0], timings[1], timings[2]
                );
            }
        }
    }

    let budget = budget_mb * 1024 * 1024;
    println!();
    println!(
        "hit ratio, cache-aside zipf(0.99) trace: {trace_len} requests over {trace_keys} keys, \
         {budget_mb} MB per cache"
    );
    let synthetic = Synthetic {
        keys: trace_keys as u32,
        requests: trace_len as u64,
        value_size: VALUE_SIZE as u32,
        seed: 99,
    };
    let trace = generate(&Generator::Zipf { theta: 0.99 }, &synthetic).unwrap_or_else(|error| {
        eprintln!("rat_inproc: the trace: {error}");
        std::process::exit(2)
    });
    for (name, subject) in subjects(budget, budget / (VALUE_SIZE + 16)) {
        println!(
            "{name:<14} {:>6.2} %",
            100.0 * hit_ratio(subject.as_ref(), &trace)
        );
    }
}
