//! The random numbers `\set` draws: pgbench's three distributions over
//! an integer range, from a seeded generator so that a rehearsal can be
//! run again with the same draws (`--random-seed`, as pgbench has).

/// xoshiro256**, seeded through splitmix64: fast, small, and good enough
/// to spread a workload's keys; not for anything secret.
#[derive(Debug, Clone)]
pub struct Random {
    s: [u64; 4],
}

impl Random {
    pub fn seeded(seed: u64) -> Self {
        let mut x = seed;
        let mut next = || {
            x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = x;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        };
        Random {
            s: [next(), next(), next(), next()],
        }
    }

    fn next_u64(&mut self) -> u64 {
        let result = self.s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = self.s[1] << 17;
        self.s[2] ^= self.s[0];
        self.s[3] ^= self.s[1];
        self.s[1] ^= self.s[2];
        self.s[0] ^= self.s[3];
        self.s[2] ^= t;
        self.s[3] = self.s[3].rotate_left(45);
        result
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform over `lb..=ub` (`lb <= ub`, checked by the caller).
    pub fn uniform(&mut self, lb: i64, ub: i64) -> i64 {
        let span = (ub as i128 - lb as i128 + 1) as u128;
        // The remainder's bias is below 2^-64 per draw for any range a
        // workload uses: far under what a latency histogram can show.
        (lb as i128 + (u128::from(self.next_u64()) % span) as i128) as i64
    }

    /// pgbench's `random_exponential`: the density falls by `exp(-parameter)`
    /// from `lb` to `ub` (`parameter > 0`).
    pub fn exponential(&mut self, lb: i64, ub: i64, parameter: f64) -> i64 {
        let cut = (-parameter).exp();
        let u = 1.0 - self.unit();
        let r = -(cut + (1.0 - cut) * u).ln() / parameter;
        Self::scaled(lb, ub, r)
    }

    /// pgbench's `random_gaussian`: a normal distribution centred on the
    /// middle of the range, cut at `parameter` standard deviations each
    /// side (`parameter >= 2`).
    pub fn gaussian(&mut self, lb: i64, ub: i64, parameter: f64) -> i64 {
        let stdev = loop {
            // Box-Muller; the first draw in (0, 1] so that ln is finite.
            let u1 = 1.0 - self.unit();
            let u2 = self.unit();
            let z = (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).sin();
            if (-parameter..parameter).contains(&z) {
                break z;
            }
        };
        Self::scaled(lb, ub, (stdev + parameter) / (parameter * 2.0))
    }

    /// `lb` plus `r` (in [0, 1)) of the range's width, kept in range.
    fn scaled(lb: i64, ub: i64, r: f64) -> i64 {
        let width = (ub as i128 - lb as i128 + 1) as f64;
        let offset = ((width * r) as i128).clamp(0, ub as i128 - lb as i128);
        (lb as i128 + offset) as i64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_stay_in_range_and_repeat_with_the_seed() {
        let mut a = Random::seeded(7);
        let mut b = Random::seeded(7);
        for _ in 0..10_000 {
            let (x, y) = (a.uniform(-3, 3), b.uniform(-3, 3));
            assert_eq!(x, y);
            assert!((-3..=3).contains(&x));
            assert!((1..=10).contains(&a.exponential(1, 10, 3.0)));
            assert!((1..=10).contains(&a.gaussian(1, 10, 2.5)));
            b.exponential(1, 10, 3.0);
            b.gaussian(1, 10, 2.5);
        }
        assert_eq!(a.uniform(i64::MIN, i64::MAX), b.uniform(i64::MIN, i64::MAX));
    }

    #[test]
    fn the_distributions_have_their_shapes() {
        let mut r = Random::seeded(1);
        let n = 100_000;
        let mut uniform = [0u32; 10];
        let mut exponential = [0u32; 10];
        let mut gaussian = [0u32; 10];
        for _ in 0..n {
            uniform[(r.uniform(1, 10) - 1) as usize] += 1;
            exponential[(r.exponential(1, 10, 3.0) - 1) as usize] += 1;
            gaussian[(r.gaussian(1, 10, 2.5) - 1) as usize] += 1;
        }
        // Uniform: every value near a tenth.
        assert!(uniform.iter().all(|&c| (9_000..11_000).contains(&c)), "{uniform:?}");
        // Exponential with parameter 3: the first value about
        // (1 - e^-0.3) / (1 - e^-3) = 27 % of draws, falling from there.
        assert!((25_000..29_000).contains(&exponential[0]), "{exponential:?}");
        assert!(exponential.windows(2).all(|w| w[0] > w[1]), "{exponential:?}");
        // Gaussian: the middle values most drawn, symmetric.
        assert!(
            gaussian[4] > gaussian[0] * 5 && gaussian[5] > gaussian[9] * 5,
            "{gaussian:?}"
        );
    }
}
