//! Little-endian integers as they sit in zerodur's files: the one helper
//! every format uses. [`U32Le`] and [`U64Le`] are `bytemuck::Pod` byte arrays,
//! so on-disk header structs built from them have alignment 1, no padding,
//! and the same layout on every host.

use bytemuck::{Pod, Zeroable};

/// A `u32` stored little-endian.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Pod, Zeroable)]
#[repr(transparent)]
pub(crate) struct U32Le([u8; 4]);

impl U32Le {
    pub(crate) const fn new(v: u32) -> U32Le {
        U32Le(v.to_le_bytes())
    }

    pub(crate) const fn get(self) -> u32 {
        u32::from_le_bytes(self.0)
    }
}

/// A `u64` stored little-endian.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Pod, Zeroable)]
#[repr(transparent)]
pub(crate) struct U64Le([u8; 8]);

impl U64Le {
    pub(crate) const fn new(v: u64) -> U64Le {
        U64Le(v.to_le_bytes())
    }

    pub(crate) const fn get(self) -> u64 {
        u64::from_le_bytes(self.0)
    }
}

/// The little-endian `u32` at `at` of `b`. Panics if out of bounds: callers
/// index into buffers whose length they checked.
pub(crate) fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

/// The little-endian `u64` at `at` of `b` (bounds as for [`u32_at`]).
pub(crate) fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

/// Writes `v` little-endian at `at` of `b`.
pub(crate) fn put_u32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

/// Writes `v` little-endian at `at` of `b`.
pub(crate) fn put_u64(b: &mut [u8], at: usize, v: u64) {
    b[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_byte_order() {
        assert_eq!(U32Le::new(0x0102_0304).get(), 0x0102_0304);
        assert_eq!(bytemuck::bytes_of(&U32Le::new(0x0102_0304)), [4, 3, 2, 1]);
        assert_eq!(U64Le::new(u64::MAX - 5).get(), u64::MAX - 5);
        let mut b = [0u8; 12];
        put_u32(&mut b, 0, 7);
        put_u64(&mut b, 4, 9);
        assert_eq!((u32_at(&b, 0), u64_at(&b, 4)), (7, 9));
    }
}
