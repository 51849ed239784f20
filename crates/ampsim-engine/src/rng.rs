//! Keyed randomness: every decision draws from a PCG generator seeded by a stable hash of
//! (simulation seed, day, user, purpose).
//!
//! Nothing here depends on call order across users or threads: a user's draws on a day depend
//! only on that key, so days can be generated in parallel, split across calls, or resumed after
//! a restart and still give the same events. The hash is SplitMix64's finaliser chained over the
//! key words (fixed here, never `DefaultHasher`); the generator is `rand_pcg::Pcg64Mcg`
//! (PCG XSL-RR 128/64 MCG). Uniform floats and bounded integers are derived here rather than
//! through `rand`'s distributions so that the output cannot change with a `rand` upgrade.

use rand_core::Rng;
use rand_pcg::Pcg64Mcg;

/// What a generator is used for; part of its key, so purposes never share a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u64)]
pub enum Purpose {
    /// How many new users arrive on a day.
    Arrivals = 1,
    /// A user's static attributes (geography, device, name).
    Profile = 2,
    /// A user's session on a day.
    Session = 3,
    /// A user's trial terminal events on a day.
    TrialEnd = 4,
    /// A trial's path, outcome and product, drawn once when it starts.
    TrialStart = 5,
    /// A device's model and browser update lag.
    Client = 6,
    /// A user's latent traits, drawn once from its device and first touch.
    Traits = 7,
    /// A trial's outcome and conversion day, decided on the window's first day.
    TrialDecision = 8,
    /// A device's company (size band and company), drawn once.
    Company = 9,
    /// A company's traits (industry, head count), drawn once from its serial.
    CompanyTraits = 10,
    /// A purchase's seats, drawn once on the purchase day.
    Seats = 11,
    /// A renewal's outcome (churn, seat change), drawn on the renewal day.
    Renewal = 12,
    /// A customer's product use (a latent trait), drawn once from its device.
    Usage = 13,
    /// Whether a person has a second device and its kind, drawn once from the person.
    SecondDevice = 14,
    /// Which device each of a two-device person's sessions on a day is on, and whether it
    /// logs in there.
    SessionDevice = 15,
}

/// SplitMix64's finaliser: a bijective 64-bit mix with good avalanche.
#[inline]
pub fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A stable hash of a sequence of words.
#[inline]
pub fn hash_words(words: &[u64]) -> u64 {
    let mut h = 0x9e37_79b9_7f4a_7c15u64;
    for &w in words {
        h = mix64(h ^ w).wrapping_add(0x9e37_79b9_7f4a_7c15);
    }
    mix64(h)
}

/// A stable hash of bytes (FNV-1a, then mixed), for hashing scenario text and names.
pub fn hash_bytes(bytes: &[u8]) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    mix64(h)
}

/// A generator for one (seed, day, user, purpose) key.
pub struct KeyedRng(Pcg64Mcg);

impl KeyedRng {
    /// The generator for this key.
    #[inline]
    pub fn new(seed: u64, day: u32, user: u64, purpose: Purpose) -> Self {
        let a = hash_words(&[seed, u64::from(day), user, purpose as u64]);
        let b = mix64(a ^ 0x6a09_e667_f3bc_c909);
        KeyedRng(Pcg64Mcg::new((u128::from(a) << 64) | u128::from(b)))
    }

    /// The next raw 64 bits.
    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }

    /// A uniform float in [0, 1) with 53 bits of precision.
    #[inline]
    pub fn f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// True with probability `p`.
    #[inline]
    pub fn chance(&mut self, p: f64) -> bool {
        self.f64() < p
    }

    /// A uniform integer in `lo..=hi` (Lemire's multiply-shift; the bias is below 2^-32 for the
    /// small ranges used here).
    #[inline]
    pub fn range(&mut self, lo: u32, hi: u32) -> u32 {
        debug_assert!(lo <= hi);
        let n = u64::from(hi - lo) + 1;
        lo + ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u32
    }

    /// A standard normal draw (Box–Muller).
    pub fn normal(&mut self) -> f64 {
        let u1 = 1.0 - self.f64(); // (0, 1]
        let u2 = self.f64();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }
}

/// A weighted choice among `n` items, precomputed as cumulative weights.
#[derive(Debug, Clone)]
pub struct Weighted {
    cum: Vec<f64>,
}

impl Weighted {
    /// Builds the table; weights must be finite and non-negative with a positive sum
    /// (guaranteed by scenario validation).
    pub fn new(weights: impl IntoIterator<Item = f64>) -> Self {
        let mut total = 0.0;
        let mut cum: Vec<f64> = weights
            .into_iter()
            .map(|w| {
                total += w.max(0.0);
                total
            })
            .collect();
        if total > 0.0 {
            for c in &mut cum {
                *c /= total;
            }
        }
        Weighted { cum }
    }

    /// Picks an index. Zero-weight items are never picked, unless every weight is zero (callers
    /// must not pick from such a table; scenario validation rules it out for every table but
    /// the engine's guarded non-trial form mix).
    #[inline]
    pub fn pick(&self, rng: &mut KeyedRng) -> usize {
        let u = rng.f64();
        let i = self.cum.partition_point(|&c| c <= u);
        // Guard against u landing past the last cumulative value by rounding.
        let mut i = i.min(self.cum.len() - 1);
        // Skip trailing zero-weight items that rounding could select.
        while i > 0 && self.cum[i] == self.cum[i - 1] {
            i -= 1;
        }
        i
    }

    /// The number of items.
    pub fn len(&self) -> usize {
        self.cum.len()
    }

    /// Whether there are no items.
    pub fn is_empty(&self) -> bool {
        self.cum.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_key_same_stream_different_key_different_stream() {
        let a: Vec<u64> = {
            let mut r = KeyedRng::new(7, 3, 11, Purpose::Session);
            (0..4).map(|_| r.next_u64()).collect()
        };
        let b: Vec<u64> = {
            let mut r = KeyedRng::new(7, 3, 11, Purpose::Session);
            (0..4).map(|_| r.next_u64()).collect()
        };
        let c: Vec<u64> = {
            let mut r = KeyedRng::new(7, 3, 11, Purpose::TrialEnd);
            (0..4).map(|_| r.next_u64()).collect()
        };
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn weighted_follows_weights_and_skips_zero() {
        let w = Weighted::new([0.0, 3.0, 0.0, 1.0, 0.0]);
        let mut r = KeyedRng::new(1, 0, 0, Purpose::Profile);
        let mut counts = [0u32; 5];
        for _ in 0..40_000 {
            counts[w.pick(&mut r)] += 1;
        }
        assert_eq!(counts[0] + counts[2] + counts[4], 0);
        let share = f64::from(counts[1]) / 40_000.0;
        assert!((share - 0.75).abs() < 0.01, "{share}");
    }

    #[test]
    fn range_is_inclusive_and_uniform() {
        let mut r = KeyedRng::new(1, 0, 0, Purpose::Profile);
        let mut seen = [0u32; 7];
        for _ in 0..70_000 {
            let x = r.range(10, 16);
            seen[(x - 10) as usize] += 1;
        }
        for s in seen {
            assert!((9_000..11_000).contains(&s), "{seen:?}");
        }
    }
}
