//! Typed views of rkyv archives that were validated once and are then read
//! in place, in O(1), for as long as the bytes are held.

use std::fmt;
use std::marker::PhantomData;
use std::ops::Range;

use rkyv::api::high::HighValidator;
use rkyv::bytecheck::CheckBytes;
use rkyv::{rancor, Portable};

use crate::directory::ReadMap;

/// An archived `A` in `map[range]`, checked by rkyv's validator when built.
///
/// The only way to build one is [`ValidatedArchive::new`], which runs the
/// checked `access` over exactly the bytes [`ValidatedArchive::get`] later
/// reads without checking. `ReadMap` never hands out mutable access and its
/// length never changes, so what was validated is what is read.
pub(crate) struct ValidatedArchive<A> {
    map: ReadMap,
    range: Range<usize>,
    // `*const A`: neither Send nor Sync by itself; see the impls below.
    _archived: PhantomData<*const A>,
}

impl<A> ValidatedArchive<A>
where
    A: Portable + for<'a> CheckBytes<HighValidator<'a, rancor::Error>>,
{
    /// Validates `map[range]` as an archive whose root is an `A` (at the end
    /// of the range, where rkyv puts it). On failure returns the validator's
    /// message.
    pub(crate) fn new(map: ReadMap, range: Range<usize>) -> Result<Self, String> {
        let Some(bytes) = map.get(range.clone()) else {
            return Err(format!(
                "archive range {}..{} exceeds the {} bytes held",
                range.start,
                range.end,
                map.len()
            ));
        };
        // IMPORTANT: this checked access is what makes `get` sound.
        rkyv::access::<A, rancor::Error>(bytes).map_err(|e| e.to_string())?;
        Ok(ValidatedArchive {
            map,
            range,
            _archived: PhantomData,
        })
    }
}

impl<A: Portable> ValidatedArchive<A> {
    /// The archived root, without re-validating.
    pub(crate) fn get(&self) -> &A {
        let bytes = &self.map[self.range.clone()];
        // SAFETY: `new` ran rkyv's checked `access::<A>` over `map[range]`
        // and only returns `Self` if it succeeded. `access_unchecked::<A>`
        // reads the root at the same position (`root_position::<A>(len)`, the
        // one checked `access` uses) in the same bytes: `map` and `range` are
        // private and never modified after `new`, and a `ReadMap` is
        // immutable (a read-only mapping of a file zerodur never rewrites
        // once published, or an owned copy behind an `Arc`). The returned
        // reference borrows `self`, which keeps `map` alive.
        unsafe { rkyv::api::access_unchecked::<A>(bytes) }
    }

    /// The bytes of the archive (`map[range]`).
    pub(crate) fn bytes(&self) -> &[u8] {
        &self.map[self.range.clone()]
    }
}

// SAFETY: a `ValidatedArchive<A>` is a `ReadMap` (Send + Sync: a read-only
// mapping or an `Arc` of owned bytes) plus a range. Sending it to another
// thread lets that thread obtain `&A`, which is sound when `A: Sync`.
unsafe impl<A: Sync> Send for ValidatedArchive<A> {}

// SAFETY: sharing it lets several threads obtain `&A` at once, which is sound
// when `A: Sync`; nothing in it is ever mutated after `new`.
unsafe impl<A: Sync> Sync for ValidatedArchive<A> {}

impl<A> fmt::Debug for ValidatedArchive<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ValidatedArchive")
            .field("range", &self.range)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn get_returns_the_validated_root_and_rejects_garbage() {
        let value: Vec<(u64, u64)> = vec![(1, 2), (3, 4)];
        let bytes = rkyv::to_bytes::<rancor::Error>(&value).unwrap();
        let mut framed = vec![0u8; 16];
        framed.extend_from_slice(&bytes);
        let end = framed.len();
        let a = ValidatedArchive::<rkyv::Archived<Vec<(u64, u64)>>>::new(
            ReadMap::owned(&framed),
            16..end,
        )
        .unwrap();
        assert_eq!(a.get().len(), 2);
        assert_eq!(a.get()[1].0, 3);
        assert_eq!(a.bytes(), &bytes[..]);

        let mut bad = framed.clone();
        bad[end - 4] ^= 0xff; // the root's length field
        assert!(ValidatedArchive::<rkyv::Archived<Vec<(u64, u64)>>>::new(
            ReadMap::owned(&bad),
            16..end
        )
        .is_err());
        assert!(ValidatedArchive::<rkyv::Archived<Vec<(u64, u64)>>>::new(
            ReadMap::owned(&framed),
            16..end + 1
        )
        .is_err());
    }

    #[test]
    fn is_send_and_sync_for_sync_archives() {
        fn check<T: Send + Sync>() {}
        check::<ValidatedArchive<rkyv::Archived<Vec<u64>>>>();
    }
}
