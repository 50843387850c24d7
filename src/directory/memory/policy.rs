//! The seeded policy that decides what a simulated power loss keeps.

/// How [`MemoryDirectory::crash_image`](super::MemoryDirectory::crash_image) decides the fate of everything that
/// was not made durable. Seeded policies are deterministic: the same seed on
/// the same state gives the same image.
///
/// ```
/// use zerodur::CrashPolicy;
/// // Eight different, reproducible power losses:
/// let policies: Vec<CrashPolicy> = (0..8).map(CrashPolicy::seeded).collect();
/// # assert_eq!(policies.len(), 8);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CrashPolicy {
    seed: u64,
    mode: Mode,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Random,
    KeepAll,
    DropAll,
}

impl CrashPolicy {
    /// Each unsynced sector, length change and directory operation decided by
    /// a pseudo-random generator seeded with `seed`: sectors land at their
    /// newest version, their durable one, or one in between; file lengths and
    /// directory operations land with probability ½.
    pub fn seeded(seed: u64) -> CrashPolicy {
        CrashPolicy {
            seed,
            mode: Mode::Random,
        }
    }

    /// Everything written reached the disk (all pending writes, lengths and
    /// directory operations land, including writes in limbo after a failed
    /// barrier).
    pub fn keep_all() -> CrashPolicy {
        CrashPolicy {
            seed: 0,
            mode: Mode::KeepAll,
        }
    }

    /// Nothing that was not made durable survives.
    pub fn drop_all() -> CrashPolicy {
        CrashPolicy {
            seed: 0,
            mode: Mode::DropAll,
        }
    }

    /// `seeded(0..n-2)` plus [`keep_all`](CrashPolicy::keep_all) and
    /// [`drop_all`](CrashPolicy::drop_all): the usual set for crash
    /// enumeration (`n` ≥ 2).
    pub fn standard_set(n: usize) -> Vec<CrashPolicy> {
        let mut v = vec![CrashPolicy::keep_all(), CrashPolicy::drop_all()];
        v.extend((0..n.saturating_sub(2) as u64).map(CrashPolicy::seeded));
        v
    }

    pub(super) fn rng(&self) -> SplitMix {
        SplitMix(self.seed)
    }

    /// How many of a sector's `n` unsynced versions are applied.
    pub(super) fn versions_kept(&self, n: usize, rng: &mut SplitMix) -> usize {
        match self.mode {
            Mode::KeepAll => n,
            Mode::DropAll => 0,
            Mode::Random => match rng.next() % 4 {
                0 => 0,
                1 => n,
                _ => (rng.next() % (n as u64 + 1)) as usize,
            },
        }
    }

    pub(super) fn length_lands(&self, rng: &mut SplitMix) -> bool {
        match self.mode {
            Mode::KeepAll => true,
            Mode::DropAll => false,
            Mode::Random => rng.next() & 1 == 1,
        }
    }

    pub(super) fn dir_op_lands(&self, rng: &mut SplitMix) -> bool {
        self.length_lands(rng)
    }
}

/// SplitMix64: tiny, seedable, good enough to scatter crash choices.
pub(super) struct SplitMix(pub(super) u64);

impl SplitMix {
    pub(super) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number below `n` (0 when `n` is 0).
    pub(super) fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next() % n
        }
    }
}
