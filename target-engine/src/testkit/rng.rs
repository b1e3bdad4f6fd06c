//! A small xorshift generator for workloads: the same sequence for the
//! same seed, every run (so that a seed printed by a tool replays it).

pub struct Rng(u64);

impl Rng {
    /// A generator from `seed` (any value; zero is made odd).
    pub fn new(seed: u64) -> Rng {
        Rng(seed | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A number in `0..n` (`n` > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_sequence_and_stays_below_its_bound() {
        let (mut a, mut b) = (Rng::new(29), Rng::new(29));
        for _ in 0..1000 {
            let x = a.below(7);
            assert_eq!(x, b.below(7));
            assert!(x < 7);
        }
        assert_ne!(Rng::new(0).next_u64(), 0, "a zero seed would stay zero forever");
    }
}
