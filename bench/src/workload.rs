//! What to ask the server: which keys, and whether to get or set them.
//!
//! A workload is a key distribution plus a set:get ratio plus a multi-get width. Each
//! connection turns it into a stream of [`Request`]s with its own random generator. The
//! fill workload is different: it sets every key exactly once, the keys dealt out to the
//! connections like cards (connection `c` of `n` sets keys `c`, `c + n`, `c + 2n`, ...), so
//! that a million keys are stored with a million requests and none is missed or repeated.

use crate::protocol::{Request, RequestKind};
use crate::rng::Rng;

/// How keys are drawn.
#[derive(Clone, Debug, PartialEq)]
pub enum Distribution {
    Uniform,
    /// Zipfian with exponent `theta` in (0, 1): key 0 is the most popular.
    Zipf(f64),
}

impl std::str::FromStr for Distribution {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        if text == "uniform" {
            return Ok(Distribution::Uniform);
        }
        if let Some(theta) = text.strip_prefix("zipf:") {
            let theta: f64 = theta
                .parse()
                .map_err(|_| format!("zipf exponent `{theta}` is not a number"))?;
            if !(theta > 0.0 && theta < 1.0) {
                return Err(format!("zipf exponent {theta} must be in (0, 1)"));
            }
            return Ok(Distribution::Zipf(theta));
        }
        Err(format!(
            "unknown distribution `{text}` (uniform or zipf:THETA)"
        ))
    }
}

/// Draws key indices in `0..count`.
///
/// Zipf uses the method of Gray et al. ("Quickly generating billion-record synthetic
/// databases", SIGMOD 1994), as YCSB does: one O(n) sum at start, then O(1) per draw with a
/// single `powf`, instead of a table of n cumulative probabilities and a binary search.
pub enum KeyChooser {
    Uniform {
        count: u64,
    },
    Zipf {
        count: u64,
        theta: f64,
        zeta_n: f64,
        alpha: f64,
        eta: f64,
    },
}

impl KeyChooser {
    pub fn new(distribution: &Distribution, count: u32) -> KeyChooser {
        let count = u64::from(count.max(1));
        match *distribution {
            Distribution::Uniform => KeyChooser::Uniform { count },
            Distribution::Zipf(theta) => {
                let zeta = |n: u64| (1..=n).map(|i| 1.0 / (i as f64).powf(theta)).sum::<f64>();
                let zeta_n = zeta(count);
                let zeta_2 = zeta(2.min(count));
                let eta = if count < 3 {
                    // Only ranks 0 and 1 exist and the first two branches of `next` cover them.
                    0.0
                } else {
                    (1.0 - (2.0 / count as f64).powf(1.0 - theta)) / (1.0 - zeta_2 / zeta_n)
                };
                KeyChooser::Zipf {
                    count,
                    theta,
                    zeta_n,
                    alpha: 1.0 / (1.0 - theta),
                    eta,
                }
            }
        }
    }

    pub fn next(&self, rng: &mut Rng) -> u32 {
        match *self {
            KeyChooser::Uniform { count } => rng.below(count) as u32,
            KeyChooser::Zipf {
                count,
                theta,
                zeta_n,
                alpha,
                eta,
            } => {
                let u = rng.next_f64();
                let uz = u * zeta_n;
                if uz < 1.0 {
                    return 0;
                }
                if uz < 1.0 + 0.5f64.powf(theta) {
                    return 1.min(count - 1) as u32;
                }
                let rank = (count as f64 * (eta * u - eta + 1.0).powf(alpha)) as u64;
                rank.min(count - 1) as u32
            }
        }
    }
}

/// The mix of a measured run.
#[derive(Clone, Debug)]
pub struct Mix {
    pub sets: u32,
    pub gets: u32,
    pub distribution: Distribution,
    /// Keys per get request.
    pub multiget: usize,
}

/// Where a connection takes its next request from.
pub enum RequestSource {
    Mixed {
        rng: Rng,
        chooser: std::sync::Arc<KeyChooser>,
        sets: u32,
        total: u32,
        multiget: usize,
    },
    Fill {
        next: u64,
        stride: u64,
        count: u64,
    },
}

impl RequestSource {
    /// Connection `connection` of a mixed run.
    pub fn mixed(
        mix: &Mix,
        chooser: std::sync::Arc<KeyChooser>,
        seed: u64,
        connection: usize,
    ) -> Self {
        RequestSource::Mixed {
            rng: Rng::new(seed ^ (connection as u64).wrapping_mul(0x2545_f491_4f6c_dd1d)),
            chooser,
            sets: mix.sets,
            total: mix.sets + mix.gets,
            multiget: mix.multiget.max(1),
        }
    }

    /// Connection `connection` of `connections` filling keys `0..count`.
    pub fn fill(count: u32, connection: usize, connections: usize) -> Self {
        RequestSource::Fill {
            next: connection as u64,
            stride: connections as u64,
            count: u64::from(count),
        }
    }

    /// How many requests this source yields at most (fill sources run dry).
    pub fn limit(&self) -> Option<u64> {
        match *self {
            RequestSource::Mixed { .. } => None,
            RequestSource::Fill {
                next,
                stride,
                count,
            } => Some(count.saturating_sub(next).div_ceil(stride)),
        }
    }

    /// Writes the next request into `request` (reusing its key buffer); false when dry.
    pub fn next_into(&mut self, request: &mut Request) -> bool {
        request.keys.clear();
        match self {
            RequestSource::Mixed {
                rng,
                chooser,
                sets,
                total,
                multiget,
            } => {
                if rng.below(u64::from(*total)) < u64::from(*sets) {
                    request.kind = RequestKind::Set;
                    request.keys.push(chooser.next(rng));
                } else {
                    request.kind = RequestKind::Get;
                    for _ in 0..*multiget {
                        request.keys.push(chooser.next(rng));
                    }
                }
                true
            }
            RequestSource::Fill {
                next,
                stride,
                count,
            } => {
                if *next >= *count {
                    return false;
                }
                request.kind = RequestKind::Set;
                request.keys.push(*next as u32);
                *next += *stride;
                true
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn distributions_parse() {
        assert_eq!("uniform".parse(), Ok(Distribution::Uniform));
        assert_eq!("zipf:0.99".parse(), Ok(Distribution::Zipf(0.99)));
        assert!("zipf:1.0".parse::<Distribution>().is_err());
        assert!("zipf:x".parse::<Distribution>().is_err());
        assert!("normal".parse::<Distribution>().is_err());
    }

    #[test]
    fn zipf_favours_low_ranks_in_the_expected_proportion() {
        let count = 1000;
        let theta = 0.99;
        let chooser = KeyChooser::new(&Distribution::Zipf(theta), count);
        let mut rng = Rng::new(11);
        let draws = 200_000;
        let mut hits = vec![0u32; count as usize];
        for _ in 0..draws {
            hits[chooser.next(&mut rng) as usize] += 1;
        }
        let zeta: f64 = (1..=count).map(|i| 1.0 / f64::from(i).powf(theta)).sum();
        // Rank r (0-based) has probability 1 / ((r + 1)^theta * zeta).
        for rank in [0usize, 1, 9] {
            let expected = draws as f64 / ((rank + 1) as f64).powf(theta) / zeta;
            let observed = f64::from(hits[rank]);
            assert!(
                (observed - expected).abs() < expected * 0.1,
                "rank {rank}: {observed} vs {expected}"
            );
        }
        let top_ten: u32 = hits[..10].iter().sum();
        let bottom_half: u32 = hits[500..].iter().sum();
        assert!(top_ten > bottom_half, "{top_ten} vs {bottom_half}");
    }

    #[test]
    fn uniform_covers_all_keys() {
        let chooser = KeyChooser::new(&Distribution::Uniform, 50);
        let mut rng = Rng::new(5);
        let mut seen = [false; 50];
        for _ in 0..5000 {
            seen[chooser.next(&mut rng) as usize] = true;
        }
        assert!(seen.iter().all(|&s| s));
    }

    #[test]
    fn tiny_key_counts_stay_in_range() {
        for count in 1..4 {
            let chooser = KeyChooser::new(&Distribution::Zipf(0.5), count);
            let mut rng = Rng::new(1);
            for _ in 0..1000 {
                assert!(chooser.next(&mut rng) < count);
            }
        }
    }

    #[test]
    fn fill_sources_deal_every_key_exactly_once() {
        let count = 103;
        let connections = 4;
        let mut seen = vec![0u32; count as usize];
        let mut request = Request::new(1);
        for connection in 0..connections {
            let mut source = RequestSource::fill(count, connection, connections);
            let limit = source.limit().unwrap();
            let mut produced = 0;
            while source.next_into(&mut request) {
                assert_eq!(request.kind, RequestKind::Set);
                seen[request.keys[0] as usize] += 1;
                produced += 1;
            }
            assert_eq!(produced, limit);
        }
        assert!(seen.iter().all(|&times| times == 1));
    }

    #[test]
    fn mixed_sources_follow_the_ratio_and_multiget_width() {
        let mix = Mix {
            sets: 1,
            gets: 3,
            distribution: Distribution::Uniform,
            multiget: 5,
        };
        let chooser = Arc::new(KeyChooser::new(&mix.distribution, 100));
        let mut source = RequestSource::mixed(&mix, chooser, 9, 0);
        let mut request = Request::new(5);
        let (mut sets, mut gets) = (0, 0);
        for _ in 0..40_000 {
            assert!(source.next_into(&mut request));
            match request.kind {
                RequestKind::Set => {
                    assert_eq!(request.keys.len(), 1);
                    sets += 1;
                }
                RequestKind::Get => {
                    assert_eq!(request.keys.len(), 5);
                    gets += 1;
                }
            }
        }
        assert!((9_000..11_000).contains(&sets), "{sets} sets");
        assert_eq!(sets + gets, 40_000);
        assert_eq!(source.limit(), None);
    }
}
