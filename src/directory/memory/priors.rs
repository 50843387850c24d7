//! The prior durable content of each sector of a file: what a lost write
//! leaves behind. Kept in copy-on-write chunks, so crash images and
//! snapshots share them, and a change copies one chunk, never the file.

use std::sync::{Arc, OnceLock};

use super::SECTOR_SIZE_BYTES;

const SECTOR: usize = SECTOR_SIZE_BYTES as usize;
/// A multiple of the sector size: no sector spans two chunks.
const CHUNK_BYTES: usize = 8 * SECTOR;

/// Per sector, the durable bytes it held before the last barrier that changed
/// it. `len` bytes long at most (the caller keeps it within the file's durable
/// length); every byte at or past `len` reads as zero, which is the prior of a
/// sector no barrier ever changed and of bytes that were past the durable
/// length at the time.
#[derive(Debug, Clone, Default)]
pub(super) struct Priors {
    /// Every byte at or past `len` in these chunks is zero.
    chunks: Vec<Arc<[u8; CHUNK_BYTES]>>,
    len: usize,
}

impl Priors {
    /// How far prior bytes are recorded; zeros beyond.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.len
    }

    /// The recorded bytes of `sector` (shorter at `len`, empty past it).
    pub(super) fn sector(&self, sector: u64) -> &[u8] {
        let s0 = sector as usize * SECTOR;
        if s0 >= self.len {
            return &[];
        }
        let off = s0 % CHUNK_BYTES;
        &self.chunks[s0 / CHUNK_BYTES][off..off + SECTOR.min(self.len - s0)]
    }

    /// Records `old` (zeros past its end) as the prior of `sector` of a file
    /// of `file_len` bytes.
    pub(super) fn set(&mut self, sector: u64, old: &[u8], file_len: usize) {
        let s0 = sector as usize * SECTOR;
        let s1 = (s0 + SECTOR).min(file_len);
        if s1 <= s0 {
            return;
        }
        let index = s0 / CHUNK_BYTES;
        while self.chunks.len() <= index {
            self.chunks.push(zero_chunk());
        }
        self.len = self.len.max(s1);
        let chunk = Arc::make_mut(&mut self.chunks[index]);
        let off = s0 % CHUNK_BYTES;
        let n = old.len().min(s1 - s0);
        chunk[off..off + n].copy_from_slice(&old[..n]);
        chunk[off + n..off + (s1 - s0)].fill(0);
    }

    /// Forgets every prior byte at or past `len`.
    pub(super) fn truncate(&mut self, len: usize) {
        if len >= self.len {
            return;
        }
        self.chunks.truncate(len.div_ceil(CHUNK_BYTES));
        let off = len % CHUNK_BYTES;
        if let Some(last) = self.chunks.last_mut().filter(|_| off != 0) {
            if last[off..].iter().any(|&b| b != 0) {
                Arc::make_mut(last)[off..].fill(0);
            }
        }
        self.len = len;
    }
}

/// One shared chunk of zeros, copied on its first change.
fn zero_chunk() -> Arc<[u8; CHUNK_BYTES]> {
    static ZEROS: OnceLock<Arc<[u8; CHUNK_BYTES]>> = OnceLock::new();
    Arc::clone(ZEROS.get_or_init(|| Arc::new([0; CHUNK_BYTES])))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_sector_reads_back_and_zeros_fill_the_gaps() {
        let mut p = Priors::default();
        p.set(9, &[7; 100], 20 * SECTOR);
        assert_eq!(p.len(), 10 * SECTOR);
        assert_eq!(p.sector(9)[..100], [7; 100]);
        assert_eq!(p.sector(9)[100..], [0; SECTOR - 100]);
        assert_eq!(p.sector(3), [0; SECTOR]);
        assert!(p.sector(10).is_empty());
        // Cut by the file length.
        p.set(12, &[5; SECTOR], 12 * SECTOR + 10);
        assert_eq!(p.sector(12), [5; 10]);
    }

    #[test]
    fn truncate_then_regrow_reads_zeros_where_bytes_were_cut() {
        let mut p = Priors::default();
        p.set(0, &[1; SECTOR], 2 * SECTOR);
        p.set(1, &[2; SECTOR], 2 * SECTOR);
        p.truncate(100);
        assert_eq!(p.sector(0), [1; 100]);
        p.set(1, &[3; SECTOR], 2 * SECTOR);
        let mut want = vec![1; 100];
        want.resize(SECTOR, 0);
        assert_eq!(p.sector(0), want);
        assert_eq!(p.sector(1), [3; SECTOR]);
    }

    #[test]
    fn clones_are_independent() {
        let mut a = Priors::default();
        a.set(0, &[1; SECTOR], SECTOR);
        let mut b = a.clone();
        b.set(0, &[2; SECTOR], SECTOR);
        b.truncate(10);
        assert_eq!(a.sector(0), [1; SECTOR]);
        assert_eq!(b.sector(0), [2; 10]);
        // The shared zero chunk is never written through.
        let mut c = Priors::default();
        c.set(20, &[9; 4], 21 * SECTOR);
        assert_eq!(Priors::default().len(), 0);
        assert_eq!(zero_chunk().iter().filter(|&&x| x != 0).count(), 0);
    }
}
