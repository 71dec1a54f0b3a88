//! `rat_trace` end to end: it writes a generated trace, replays it, and the miss ratios it
//! prints are checked against a replay of the written file done here, straight through
//! the library.

use std::collections::HashSet;
use std::process::Command;

use rat_memcache::{L1Config, RatMemCacheBuilder};

/// The generated trace: 20,000 requests over a Zipf set of 2,000 keys, 100-byte values.
const SPEC: &str = "zipf:0.9";
const GENERATOR_ARGS: [&str; 6] = ["--keys", "2000", "--requests", "20000", "--seed", "3"];

/// A cache that holds about a quarter of the trace's keys, and one that holds them all.
const SMALL: (&str, usize) = ("64k", 64 << 10);
const LARGE: (&str, usize) = ("8m", 8 << 20);

fn rat_trace(args: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_rat_trace"))
        .args(args)
        .output()
        .expect("run rat_trace");
    assert!(
        output.status.success(),
        "rat_trace {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("utf-8 output")
}

/// The requests and miss percentage of `trace`'s lru row at cache size `cache`.
fn lru_row(table: &str, trace: &str, cache: &str) -> (u64, f64) {
    let fields = table
        .lines()
        .map(|line| line.split_whitespace().collect::<Vec<_>>())
        .find(|fields| fields.len() == 7 && fields[..3] == [trace, "lru", cache])
        .unwrap_or_else(|| panic!("no {trace} lru {cache} row in\n{table}"));
    (
        fields[3].parse().expect("requests"),
        fields[4].parse().expect("miss %"),
    )
}

/// Replays the text trace in `text` cache-aside through the library with a cache of
/// `max_memory` bytes; returns the requests and the misses.
fn replay_here(text: &str, max_memory: usize) -> (u64, u64) {
    let cache = RatMemCacheBuilder::new()
        .l1_config(L1Config {
            max_memory,
            ..Default::default()
        })
        .build()
        .expect("an LRU cache builds");
    let (mut requests, mut misses) = (0, 0);
    for line in text.lines() {
        let (key, size) = line.split_once(' ').expect("KEY SIZE");
        let size: usize = size.parse().expect("size");
        requests += 1;
        if cache.get(key).expect("get").is_none() {
            misses += 1;
            cache.set(key, vec![b'v'; size]).expect("set");
        }
    }
    (requests, misses)
}

#[test]
fn printed_miss_ratios_match_a_replay_through_the_library() {
    let path = std::env::temp_dir().join(format!("rat_trace_replay_{}.txt", std::process::id()));
    let path_text = path.to_str().expect("utf-8 temp path");
    let mut write = vec!["--trace", SPEC, "--write", path_text];
    write.extend(GENERATOR_ARGS);
    assert!(rat_trace(&write).starts_with(&format!("wrote {SPEC} to {path_text}: 20000 requests")));
    let text = std::fs::read_to_string(&path).expect("the written trace");

    // The written file and the generator it came from, replayed in one run.
    let sizes = format!("{},{}", SMALL.0, LARGE.0);
    let mut replay = vec!["--trace", path_text, "--trace", SPEC, "--policies", "lru"];
    replay.extend(["--sizes", &sizes]);
    replay.extend(GENERATOR_ARGS);
    let table = rat_trace(&replay);
    std::fs::remove_file(&path).expect("remove the trace");
    let file_name = path.file_name().unwrap().to_str().unwrap();

    // Everything fits in the large cache: only first requests miss, whatever the store's
    // hashing, so the printed figure is exact.
    let distinct = text
        .lines()
        .map(|line| line.split(' ').next())
        .collect::<HashSet<_>>()
        .len() as u64;
    let (requests, misses) = replay_here(&text, LARGE.1);
    assert_eq!((requests, misses), (20_000, distinct));
    let expected = format!("{:.2}", 100.0 * misses as f64 / requests as f64);
    for trace in [file_name, SPEC] {
        let (printed_requests, printed) = lru_row(&table, trace, LARGE.0);
        assert_eq!(printed_requests, 20_000);
        assert_eq!(format!("{printed:.2}"), expected, "{trace}\n{table}");
    }

    // The small cache evicts. Which keys share a stripe, and so which one is evicted,
    // follows the store's per-process random hash seed; over 20,000 requests that moves
    // the miss ratio by a few tenths of a point between runs, never by a whole point.
    let (requests, misses) = replay_here(&text, SMALL.1);
    let here = 100.0 * misses as f64 / requests as f64;
    let compulsory = 100.0 * distinct as f64 / requests as f64;
    assert!(
        here > compulsory + 10.0,
        "the small cache evicts: {here} vs {compulsory}"
    );
    for trace in [file_name, SPEC] {
        let (_, printed) = lru_row(&table, trace, SMALL.0);
        assert!(printed > 0.0 && printed < 100.0, "{printed}");
        assert!(
            (printed - here).abs() < 1.0,
            "{trace}: printed {printed} %, the library here {here} %\n{table}"
        );
    }
}
