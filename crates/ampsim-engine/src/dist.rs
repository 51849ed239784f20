//! Drawing from the scenario's distributions ([`Dist`], [`Choice`]) and their cumulative
//! distribution functions, which the report uses to derive targets for values it can only
//! observe within a window (a return within N days).

use super::rng::{KeyedRng, Weighted};
use super::scenario::{Choice, DelayBucket, Dist, DistKind};

/// A compiled [`Dist`]: draws are cut at `max` (drawn again, up to 32 times, then `max`) and
/// raised to `min`.
#[derive(Debug, Clone, Copy)]
pub struct Draw {
    kind: DistKind,
    /// Lognormal: ln median; Weibull: scale; log-uniform: ln min.
    a: f64,
    /// Lognormal: sigma; Weibull: 1 / shape; log-uniform: ln max.
    b: f64,
    min: f64,
    max: f64,
}

impl Draw {
    /// Compiles a validated distribution; `lo` is the floor when it sets no `min`.
    pub fn new(d: &Dist, lo: f64) -> Draw {
        let min = d.min.unwrap_or(lo);
        let (a, b) = match d.distribution {
            DistKind::Lognormal => (d.median.unwrap_or(1.0).ln(), d.sigma.unwrap_or(1.0)),
            DistKind::Weibull => (d.scale.unwrap_or(1.0), 1.0 / d.shape.unwrap_or(1.0)),
            DistKind::LogUniform => (min.ln(), d.max.ln()),
        };
        Draw {
            kind: d.distribution,
            a,
            b,
            min,
            max: d.max,
        }
    }

    fn raw(&self, rng: &mut KeyedRng) -> f64 {
        match self.kind {
            DistKind::Lognormal => (self.a + self.b * rng.normal()).exp(),
            // Inverse CDF: scale * (-ln(1 - u))^(1 / shape), with 1 - u in (0, 1].
            DistKind::Weibull => self.a * (-(1.0 - rng.f64()).ln()).powf(self.b),
            DistKind::LogUniform => (self.a + (self.b - self.a) * rng.f64()).exp(),
        }
    }

    /// The largest value a draw can take.
    pub fn max(&self) -> f64 {
        self.max
    }

    /// One draw in `[min, max]`.
    pub fn sample(&self, rng: &mut KeyedRng) -> f64 {
        self.sample_scaled(rng, 1.0)
    }

    /// One draw of the distribution scaled by `factor` (a positive number), cut at `max` and
    /// raised to `min` after scaling: the scaled distribution keeps the floor's point mass
    /// (a lognormal's median moves by `factor`, its share below `min` shrinks or grows).
    pub fn sample_scaled(&self, rng: &mut KeyedRng, factor: f64) -> f64 {
        for _ in 0..32 {
            let x = self.raw(rng) * factor;
            if x <= self.max {
                return x.max(self.min);
            }
        }
        self.max
    }

    /// The uncut distribution's CDF.
    fn f(&self, x: f64) -> f64 {
        if x <= 0.0 {
            return 0.0;
        }
        match self.kind {
            DistKind::Lognormal => {
                let z = (x.ln() - self.a) / self.b;
                0.5 * libm::erfc(-z / std::f64::consts::SQRT_2)
            }
            DistKind::Weibull => 1.0 - (-(x / self.a).powf(1.0 / self.b)).exp(),
            DistKind::LogUniform => ((x.ln() - self.a) / (self.b - self.a)).clamp(0.0, 1.0),
        }
    }

    /// P(draw <= x) for the cut distribution (the 32-try fallback aside).
    pub fn cdf(&self, x: f64) -> f64 {
        if x >= self.max {
            1.0
        } else if x < self.min {
            0.0
        } else {
            self.f(x) / self.f(self.max)
        }
    }
}

/// The number of page-level events of a session: weighted 1..=N, or a distribution rounded up.
pub enum Lengths {
    /// Weights of 1, 2, ... events.
    Weighted(Weighted),
    /// A distribution, rounded up to whole events.
    Dist(Draw),
}

impl Lengths {
    /// Compiles the scenario's `pages.session_length`.
    pub fn new(c: &Choice<f64>) -> Lengths {
        match c {
            Choice::Weighted(w) => Lengths::Weighted(Weighted::new(w.iter().copied())),
            Choice::Dist(d) => Lengths::Dist(Draw::new(d, 1.0)),
        }
    }

    /// A session length, at least 1.
    pub fn pick(&self, rng: &mut KeyedRng) -> usize {
        self.pick_scaled(rng, 1.0)
    }

    /// A session length whose draw is multiplied by `factor` before it is rounded up to whole
    /// events (at least 1, at most the scenario's longest). A weighted length `k` is read as a
    /// point spread evenly over `(k - 1, k]` so that scaling moves it smoothly; with `factor`
    /// 1 both kinds give exactly [`Lengths::pick`]'s lengths.
    pub fn pick_scaled(&self, rng: &mut KeyedRng, factor: f64) -> usize {
        let raw = match self {
            Lengths::Weighted(w) => {
                let k = (w.pick(rng) + 1) as f64;
                if factor == 1.0 {
                    k
                } else {
                    (k - rng.f64()) * factor
                }
            }
            // Scaled before the floor at 1: single-event draws stay single for factors near 1.
            Lengths::Dist(d) => d.sample_scaled(rng, factor),
        };
        raw.ceil().clamp(1.0, self.max().max(1.0)) as usize
    }

    /// The longest length the scenario's table or distribution gives.
    fn max(&self) -> f64 {
        match self {
            Lengths::Weighted(w) => w.len() as f64,
            Lengths::Dist(d) => d.max(),
        }
    }
}

/// A delay in whole days (at least 1): weighted day ranges, or a distribution rounded up.
pub enum Delay {
    /// Weighted inclusive day ranges, uniform within each.
    Buckets {
        /// The ranges' weights.
        weights: Weighted,
        /// Normalised weights, for the CDF.
        shares: Vec<f64>,
        /// Inclusive day ranges.
        ranges: Vec<(u32, u32)>,
    },
    /// A distribution, rounded up to whole days.
    Dist(Draw),
}

impl Delay {
    /// Compiles a scenario delay.
    pub fn new(c: &Choice<DelayBucket>) -> Delay {
        match c {
            Choice::Weighted(b) => {
                let total: f64 = b.iter().map(|b| b.weight.max(0.0)).sum();
                Delay::Buckets {
                    weights: Weighted::new(b.iter().map(|b| b.weight)),
                    shares: b.iter().map(|b| b.weight.max(0.0) / total).collect(),
                    ranges: b
                        .iter()
                        .map(|b| (b.days[0] as u32, b.days[1] as u32))
                        .collect(),
                }
            }
            Choice::Dist(d) => Delay::Dist(Draw::new(d, 1.0)),
        }
    }

    /// A delay in days.
    pub fn pick(&self, rng: &mut KeyedRng) -> u32 {
        match self {
            Delay::Buckets {
                weights, ranges, ..
            } => {
                let (lo, hi) = ranges[weights.pick(rng)];
                rng.range(lo, hi)
            }
            Delay::Dist(d) => (d.sample(rng).ceil() as u32).max(1),
        }
    }

    /// The longest possible delay.
    pub fn max_days(&self) -> u32 {
        match self {
            Delay::Buckets { ranges, .. } => ranges.iter().map(|r| r.1).max().unwrap_or(0),
            Delay::Dist(d) => d.max.floor() as u32,
        }
    }

    /// P(delay <= days).
    pub fn cdf(&self, days: u32) -> f64 {
        match self {
            Delay::Buckets { shares, ranges, .. } => shares
                .iter()
                .zip(ranges)
                .map(|(w, &(lo, hi))| {
                    let covered = days.clamp(lo - 1, hi) + 1 - lo;
                    w * f64::from(covered) / f64::from(hi - lo + 1)
                })
                .sum(),
            // ceil(x) <= days exactly when x <= days.
            Delay::Dist(d) => d.cdf(f64::from(days)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Purpose;

    fn dist(toml: &str) -> Dist {
        toml::from_str(toml).expect("dist")
    }

    /// The empirical CDF of 200,000 draws matches the analytic one at several points.
    fn check(d: &Dist, points: &[f64]) {
        let draw = Draw::new(d, 1.0);
        let mut rng = KeyedRng::new(1, 2, 3, Purpose::Session);
        let xs: Vec<f64> = (0..200_000).map(|_| draw.sample(&mut rng)).collect();
        assert!(xs.iter().all(|&x| x >= 1.0 && x <= d.max));
        for &p in points {
            let emp = xs.iter().filter(|&&x| x <= p).count() as f64 / xs.len() as f64;
            let cdf = draw.cdf(p);
            assert!(
                (emp - cdf).abs() < 0.005,
                "at {p}: empirical {emp}, cdf {cdf}"
            );
        }
    }

    #[test]
    fn draws_follow_their_cdf() {
        check(
            &dist("distribution = 'lognormal'\nmedian = 5.0\nsigma = 1.3\nmax = 365.0"),
            &[1.0, 2.0, 5.0, 10.0, 30.0, 90.0, 200.0],
        );
        check(
            &dist("distribution = 'weibull'\nscale = 45.0\nshape = 0.7\nmax = 1800.0"),
            &[2.0, 10.0, 45.0, 120.0, 600.0],
        );
        check(
            &dist("min = 4.0\nmax = 240.0"),
            &[4.0, 10.0, 31.0, 100.0, 239.0],
        );
    }

    #[test]
    fn a_lognormal_median_is_its_median() {
        let d = Draw::new(
            &dist("distribution = 'lognormal'\nmedian = 5.0\nsigma = 1.3\nmax = 1000000.0"),
            1.0,
        );
        assert!((d.cdf(5.0) - 0.5).abs() < 1e-9);
    }

    #[test]
    fn bucket_delays_have_an_exact_cdf() {
        let c: Choice<DelayBucket> = Choice::Weighted(vec![
            DelayBucket {
                days: [1, 3],
                weight: 1.0,
            },
            DelayBucket {
                days: [4, 10],
                weight: 3.0,
            },
        ]);
        let d = Delay::new(&c);
        assert_eq!(d.cdf(0), 0.0);
        assert!((d.cdf(2) - 0.25 * 2.0 / 3.0).abs() < 1e-12);
        assert!((d.cdf(3) - 0.25).abs() < 1e-12);
        assert!((d.cdf(7) - (0.25 + 0.75 * 4.0 / 7.0)).abs() < 1e-12);
        assert_eq!(d.cdf(10), 1.0);
        assert_eq!(d.cdf(400), 1.0);
        assert_eq!(d.max_days(), 10);
    }
}
