//! Turning a run's counts into the numbers people compare: rates, percentiles, generator CPU.
//!
//! Two renderings: a few aligned lines for a terminal, and one flat JSON object (every value
//! a number, a string or null, no nesting) that a shell script can pick fields out of with
//! `sed` and a notebook can load as a row.

use crate::engine::RunResult;
use std::fmt::Write as _;

/// The settings a run was made with, echoed in the report so a saved result explains itself.
#[derive(Clone, Debug)]
pub struct RunDescription {
    pub phase: &'static str,
    pub server: String,
    pub protocol: String,
    pub threads: usize,
    pub conns: usize,
    pub pipeline: usize,
    pub keys: u32,
    pub value_size: usize,
    pub set_ratio: (u32, u32),
    pub distribution: String,
    pub multiget: usize,
    pub verify: bool,
}

/// The figures derived from a [`RunResult`].
#[derive(Clone, Debug)]
pub struct Summary {
    pub elapsed_s: f64,
    pub requests: u64,
    pub gets: u64,
    pub sets: u64,
    pub keys: u64,
    pub hits: u64,
    pub misses: u64,
    pub requests_per_s: f64,
    pub keys_per_s: f64,
    /// Latency percentiles and extremes, in microseconds.
    pub p50_us: f64,
    pub p90_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    pub max_us: f64,
    pub mean_us: f64,
    /// CPU time used per wall-clock second: 1.0 is one core kept busy.
    pub cpu_cores: Option<f64>,
    /// `cpu_cores` divided by the generator threads: near 1.0 means the generator, not the
    /// server, set the pace.
    pub cpu_per_thread: Option<f64>,
    pub cpu_us_per_request: Option<f64>,
}

impl Summary {
    pub fn new(result: &RunResult, threads: usize) -> Summary {
        let elapsed_s = result.elapsed.as_secs_f64().max(1e-9);
        let counters = &result.counters;
        let micros = |nanos: u64| nanos as f64 / 1000.0;
        let latency = &result.latency;
        let cpu_s = result.cpu.map(|cpu| cpu.as_secs_f64());
        Summary {
            elapsed_s,
            requests: counters.requests,
            gets: counters.gets,
            sets: counters.sets,
            keys: counters.keys,
            hits: counters.hits,
            misses: counters.misses,
            requests_per_s: counters.requests as f64 / elapsed_s,
            keys_per_s: counters.keys as f64 / elapsed_s,
            p50_us: micros(latency.quantile(0.50)),
            p90_us: micros(latency.quantile(0.90)),
            p99_us: micros(latency.quantile(0.99)),
            p999_us: micros(latency.quantile(0.999)),
            max_us: micros(latency.max()),
            mean_us: latency.mean() / 1000.0,
            cpu_cores: cpu_s.map(|cpu| cpu / elapsed_s),
            cpu_per_thread: cpu_s.map(|cpu| cpu / elapsed_s / threads.max(1) as f64),
            cpu_us_per_request: cpu_s
                .filter(|_| counters.requests > 0)
                .map(|cpu| cpu * 1e6 / counters.requests as f64),
        }
    }

    pub fn hit_ratio(&self) -> Option<f64> {
        let lookups = self.hits + self.misses;
        (lookups > 0).then(|| self.hits as f64 / lookups as f64)
    }
}

/// The terminal rendering.
pub fn human(description: &RunDescription, summary: &Summary) -> String {
    let d = description;
    let s = summary;
    let mut text = String::new();
    let plural = |n: usize, word: &str| format!("{n} {word}{}", if n == 1 { "" } else { "s" });
    let _ = writeln!(
        text,
        "{} run, {} protocol to {}: {}, {}, pipeline {}",
        d.phase,
        d.protocol,
        d.server,
        plural(d.threads, "thread"),
        plural(d.conns, "connection"),
        d.pipeline
    );
    let _ = writeln!(
        text,
        "workload:   {} keys, {}-byte values, set:get {}:{}, {}, {} per get, verify {}",
        d.keys,
        d.value_size,
        d.set_ratio.0,
        d.set_ratio.1,
        d.distribution,
        plural(d.multiget, "key"),
        if d.verify { "on" } else { "off" }
    );
    let _ = writeln!(
        text,
        "requests:   {} in {:.2} s: {:.0} req/s, {:.0} keys/s",
        s.requests, s.elapsed_s, s.requests_per_s, s.keys_per_s
    );
    let hit_ratio = s.hit_ratio().map_or_else(
        || "no lookups".to_string(),
        |r| format!("hit ratio {:.2} %", r * 100.0),
    );
    let _ = writeln!(
        text,
        "gets:       {}, hits {}, misses {} ({hit_ratio})",
        s.gets, s.hits, s.misses
    );
    let _ = writeln!(text, "sets:       {}", s.sets);
    let _ = writeln!(
        text,
        "latency us: p50 {:.1}  p90 {:.1}  p99 {:.1}  p99.9 {:.1}  max {:.1}  mean {:.1}",
        s.p50_us, s.p90_us, s.p99_us, s.p999_us, s.max_us, s.mean_us
    );
    match (s.cpu_cores, s.cpu_per_thread, s.cpu_us_per_request) {
        (Some(cores), Some(per_thread), per_request) => {
            let per_request =
                per_request.map_or_else(String::new, |us| format!(", {us:.2} us CPU per request"));
            let _ = writeln!(
                text,
                "generator:  {cores:.2} cores busy ({:.0} % of {}){per_request}",
                per_thread * 100.0,
                plural(d.threads, "thread")
            );
        }
        _ => {
            let _ = writeln!(text, "generator:  CPU use not available on this platform");
        }
    }
    text
}

/// One value of a flat JSON object.
pub enum Value {
    Text(String),
    Integer(u64),
    Real(Option<f64>),
    Flag(bool),
}

/// One JSON object on one line.
pub fn json(description: &RunDescription, summary: &Summary, prefill_s: Option<f64>) -> String {
    let d = description;
    let s = summary;
    let fields = [
        ("phase", Value::Text(d.phase.to_string())),
        ("server", Value::Text(d.server.clone())),
        ("protocol", Value::Text(d.protocol.clone())),
        ("threads", Value::Integer(d.threads as u64)),
        ("conns", Value::Integer(d.conns as u64)),
        ("pipeline", Value::Integer(d.pipeline as u64)),
        ("keys", Value::Integer(u64::from(d.keys))),
        ("value_size", Value::Integer(d.value_size as u64)),
        (
            "set_ratio",
            Value::Text(format!("{}:{}", d.set_ratio.0, d.set_ratio.1)),
        ),
        ("dist", Value::Text(d.distribution.clone())),
        ("multiget", Value::Integer(d.multiget as u64)),
        ("verify", Value::Flag(d.verify)),
        ("prefill_s", Value::Real(prefill_s)),
        ("elapsed_s", Value::Real(Some(s.elapsed_s))),
        ("requests", Value::Integer(s.requests)),
        ("gets", Value::Integer(s.gets)),
        ("sets", Value::Integer(s.sets)),
        ("keys_requested", Value::Integer(s.keys)),
        ("hits", Value::Integer(s.hits)),
        ("misses", Value::Integer(s.misses)),
        ("requests_per_s", Value::Real(Some(s.requests_per_s))),
        ("keys_per_s", Value::Real(Some(s.keys_per_s))),
        ("p50_us", Value::Real(Some(s.p50_us))),
        ("p90_us", Value::Real(Some(s.p90_us))),
        ("p99_us", Value::Real(Some(s.p99_us))),
        ("p999_us", Value::Real(Some(s.p999_us))),
        ("max_us", Value::Real(Some(s.max_us))),
        ("mean_us", Value::Real(Some(s.mean_us))),
        ("cpu_cores", Value::Real(s.cpu_cores)),
        ("cpu_per_thread", Value::Real(s.cpu_per_thread)),
        ("cpu_us_per_request", Value::Real(s.cpu_us_per_request)),
    ];
    json_object(&fields)
}

/// One flat JSON object on one line, fields in the order given; reals with three decimals,
/// `None` and non-finite reals as `null`.
pub fn json_object(fields: &[(&str, Value)]) -> String {
    let mut text = String::from("{");
    for (position, (name, value)) in fields.iter().enumerate() {
        if position > 0 {
            text.push_str(", ");
        }
        let _ = write!(text, "\"{name}\": ");
        match value {
            Value::Text(string) => {
                text.push('"');
                for c in string.chars() {
                    match c {
                        '"' => text.push_str("\\\""),
                        '\\' => text.push_str("\\\\"),
                        c if (c as u32) < 0x20 => {
                            let _ = write!(text, "\\u{:04x}", c as u32);
                        }
                        c => text.push(c),
                    }
                }
                text.push('"');
            }
            Value::Integer(n) => {
                let _ = write!(text, "{n}");
            }
            Value::Real(Some(x)) if x.is_finite() => {
                let _ = write!(text, "{x:.3}");
            }
            Value::Real(_) => text.push_str("null"),
            Value::Flag(flag) => text.push_str(if *flag { "true" } else { "false" }),
        }
    }
    text.push('}');
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::Counters;
    use crate::histogram::Histogram;
    use std::time::Duration;

    fn sample() -> (RunDescription, Summary) {
        let mut latency = Histogram::new();
        for micros in 1..=100u64 {
            latency.record(micros * 1000);
        }
        let result = RunResult {
            elapsed: Duration::from_secs(2),
            counters: Counters {
                requests: 100,
                gets: 90,
                sets: 10,
                keys: 100,
                hits: 80,
                misses: 10,
            },
            latency,
            cpu: Some(Duration::from_millis(500)),
        };
        let description = RunDescription {
            phase: "measured",
            server: "127.0.0.1:1\"x".to_string(),
            protocol: "text".to_string(),
            threads: 2,
            conns: 4,
            pipeline: 1,
            keys: 10,
            value_size: 100,
            set_ratio: (1, 9),
            distribution: "uniform".to_string(),
            multiget: 1,
            verify: true,
        };
        (description, Summary::new(&result, 2))
    }

    #[test]
    fn summary_derives_rates_and_cpu_shares() {
        let (_, summary) = sample();
        assert_eq!(summary.requests_per_s, 50.0);
        // Percentiles are bucket tops: at most 1/64 above the exact sample.
        assert!((50.0..50.0 * (1.0 + 1.0 / 64.0)).contains(&summary.p50_us));
        assert!((99.0..99.0 * (1.0 + 1.0 / 64.0)).contains(&summary.p99_us));
        assert_eq!(summary.max_us, 100.0);
        assert_eq!(summary.cpu_cores, Some(0.25));
        assert_eq!(summary.cpu_per_thread, Some(0.125));
        assert_eq!(summary.cpu_us_per_request, Some(5000.0));
        assert_eq!(summary.hit_ratio(), Some(80.0 / 90.0));
    }

    #[test]
    fn json_is_one_flat_escaped_object() {
        let (description, summary) = sample();
        let text = json(&description, &summary, None);
        assert!(text.starts_with("{\"phase\": \"measured\", \"server\": \"127.0.0.1:1\\\"x\""));
        assert!(text.contains("\"requests_per_s\": 50.000,"));
        assert!(text.contains("\"max_us\": 100.000,"));
        assert!(text.contains("\"prefill_s\": null,"));
        assert!(text.contains("\"verify\": true,"));
        assert!(text.ends_with("\"cpu_us_per_request\": 5000.000}"));
        assert!(!text.contains('\n'));
    }

    #[test]
    fn human_report_names_the_key_figures() {
        let (description, summary) = sample();
        let text = human(&description, &summary);
        assert!(
            text.contains("requests:   100 in 2.00 s: 50 req/s, 50 keys/s"),
            "{text}"
        );
        assert!(
            text.contains("hits 80, misses 10 (hit ratio 88.89 %)"),
            "{text}"
        );
        assert!(text.contains("max 100.0"), "{text}");
        assert!(
            text.contains("0.25 cores busy (12 % of 2 threads)"),
            "{text}"
        );
    }
}
