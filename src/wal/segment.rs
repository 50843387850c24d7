//! Walking the frames of one segment: the state machine shared by the reader
//! (replay) and the writer (resume). It applies the rules of `FORMAT.md`:
//! epochs, entry-id continuity, batches, seals and resume markers.

use super::format::{
    decode_slot, SegmentHeader, Slot, FRAME_ALIGN, FRAME_HEADER_LEN, KIND_ENTRY, KIND_ENTRY_CONT,
    KIND_RESUME, KIND_SEAL, SEGMENT_HEADER_LEN,
};
use super::format::{FRAME_ENTRY_AT, FRAME_EPOCH_AT, FRAME_KIND_AT, FRAME_LEN_AT};
use super::EntryId;
use crate::error::CorruptKind;
use crate::le::{u32_at, u64_at};

/// One step of a [`Cursor`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    /// An entry and its payload's byte range in the segment.
    Entry {
        id: EntryId,
        payload: (usize, usize),
    },
    /// The seal marker; the segment ends here and the log continues at
    /// `next` in the following segment. The cursor stays on the seal.
    Sealed { next: EntryId },
    /// The valid frames end here. The cursor stays at the end.
    End(End),
}

/// Why the frames of a segment ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum End {
    /// A zero slot: nothing was ever written here in this life of the file.
    Zero,
    /// A valid frame from an earlier epoch or an earlier life of the file.
    Stale,
    /// A valid frame of a later epoch that is not a resume marker
    /// continuing the log: no crash leaves one where the walk expects a
    /// frame.
    Later,
    /// Anything else: a torn or garbage frame, or an incomplete batch.
    Torn(&'static str),
}

/// A corruption found while walking, at a byte offset of the segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Damage {
    pub(crate) offset: u64,
    pub(crate) kind: CorruptKind,
}

/// Position and expectations while walking one segment. Holds no borrow of
/// the bytes, so it can live beside the mapping it walks.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Cursor {
    /// Offset of the next slot to decode.
    pub(crate) off: usize,
    /// Entry id the next entry frame must carry.
    pub(crate) next: u64,
    /// Epoch the next frame must carry (raised by resume markers).
    pub(crate) epoch: u64,
    /// Frames before this offset belong to a batch already seen complete.
    batch_end: usize,
    /// Highest entry id a resume marker passed so far proves durable (0:
    /// none): a marker is written only once everything before it is.
    pub(crate) marker_watermark: u64,
    /// Offset of the last resume marker passed, if any.
    pub(crate) last_marker: Option<usize>,
}

impl Cursor {
    /// A cursor at the first frame of a segment with header `h`.
    pub(crate) fn new(h: &SegmentHeader) -> Cursor {
        Cursor {
            off: SEGMENT_HEADER_LEN,
            next: h.first_entry.0,
            epoch: h.epoch,
            batch_end: 0,
            marker_watermark: 0,
            last_marker: None,
        }
    }

    /// Decodes the next frame of `buf` (the whole segment).
    pub(crate) fn step(&mut self, buf: &[u8]) -> Result<Step, Damage> {
        loop {
            let (header, payload, end) = match decode_slot(buf, self.off) {
                Slot::Zero => return Ok(Step::End(End::Zero)),
                Slot::Invalid(why) => return Ok(Step::End(End::Torn(why))),
                Slot::Frame {
                    header,
                    payload,
                    end,
                } => (header, payload, end),
            };
            if header.epoch < self.epoch {
                return Ok(Step::End(End::Stale));
            }
            if header.epoch > self.epoch {
                if header.kind == KIND_RESUME && header.entry.0 == self.next && !self.in_batch() {
                    self.epoch = header.epoch;
                    self.last_marker = Some(self.off);
                    if let Some(w) = header.durable_watermark() {
                        self.marker_watermark = self.marker_watermark.max(w);
                    }
                    self.off = end;
                    continue;
                }
                return Ok(Step::End(End::Later));
            }
            if header.entry.0 != self.next {
                return Err(self.damage(CorruptKind::EntryIdGap {
                    expected: self.next,
                    found: header.entry.0,
                }));
            }
            match header.kind {
                KIND_SEAL if !self.in_batch() => return Ok(Step::Sealed { next: header.entry }),
                KIND_ENTRY | KIND_ENTRY_CONT => {
                    if header.kind == KIND_ENTRY_CONT && !self.in_batch() {
                        match batch_end(buf, self.off, self.next, self.epoch) {
                            Some(e) => self.batch_end = e,
                            None => return Ok(Step::End(End::Torn("incomplete batch"))),
                        }
                    }
                    // An id with no successor cannot be in a log: only a
                    // hostile or damaged file gets here.
                    let Some(next) = self.next.checked_add(1) else {
                        return Err(self.damage(CorruptKind::BadFrame("entry id out of range")));
                    };
                    self.next = next;
                    self.off = end;
                    return Ok(Step::Entry {
                        id: header.entry,
                        payload,
                    });
                }
                _ => {
                    return Err(self.damage(CorruptKind::BadFrame(
                        "marker inside a batch or with the current epoch",
                    )))
                }
            }
        }
    }

    fn in_batch(&self) -> bool {
        self.off < self.batch_end
    }

    fn damage(&self, kind: CorruptKind) -> Damage {
        Damage {
            offset: self.off as u64,
            kind,
        }
    }
}

/// If the batch whose first frame is at `off` is complete, the offset just
/// past its last frame.
fn batch_end(buf: &[u8], mut off: usize, mut id: u64, epoch: u64) -> Option<usize> {
    loop {
        match decode_slot(buf, off) {
            Slot::Frame { header, end, .. } if header.epoch == epoch && header.entry.0 == id => {
                match header.kind {
                    KIND_ENTRY_CONT => {}
                    KIND_ENTRY => return Some(end),
                    _ => return None,
                }
                id = id.checked_add(1)?;
                off = end;
            }
            _ => return None,
        }
    }
}

/// Offset of the first entry frame with an id above `proven` in the chain of
/// frames that [`Cursor::step`] already validated from the segment's first
/// slot up to offset `end`; `end` if every entry before it has a lower id.
/// Hops by the length fields only (no second CRC pass).
pub(crate) fn first_entry_above(buf: &[u8], proven: u64, end: usize) -> usize {
    let mut off = SEGMENT_HEADER_LEN;
    while off < end {
        let Some(h) = buf.get(off..off + FRAME_HEADER_LEN) else {
            break;
        };
        let len = u32_at(h, FRAME_LEN_AT);
        let id = u64_at(h, FRAME_ENTRY_AT);
        if matches!(h[FRAME_KIND_AT], KIND_ENTRY | KIND_ENTRY_CONT) && id > proven {
            return off;
        }
        off += super::format::frame_len(len as usize);
    }
    end
}

/// The highest epoch among `floor` and every well-formed frame at or after
/// offset `from` (16-byte steps). A writer starting a new epoch at `from`
/// must go above it: a frame already there with the new epoch could later
/// pass for a current one (as an entry, or as proof of damage).
pub(crate) fn max_epoch_from(buf: &[u8], from: usize, floor: u64) -> u64 {
    let mut max = floor;
    let mut off = from;
    while off.saturating_add(FRAME_HEADER_LEN) <= buf.len() {
        // Cheap filters before the CRC: kind byte and a higher epoch.
        let kind = buf[off + FRAME_KIND_AT];
        let epoch = u64_at(buf, off + FRAME_EPOCH_AT);
        if (KIND_ENTRY..=KIND_RESUME).contains(&kind) && epoch > max {
            if let Slot::Frame { header, .. } = decode_slot(buf, off) {
                max = header.epoch;
            }
        }
        off += FRAME_ALIGN;
    }
    max
}

#[cfg(test)]
mod tests {
    use super::super::format::{durable_lag, frame_len, FrameHeader};
    use super::super::SegmentId;
    use super::*;

    struct Builder {
        buf: Vec<u8>,
        off: usize,
        h: SegmentHeader,
    }

    impl Builder {
        fn new() -> Builder {
            let h = SegmentHeader {
                segment: SegmentId(1),
                first_entry: EntryId(1),
                epoch: 5,
                segment_len: 4096,
                created_ms: 0,
                predecessor_unsynced: false,
            };
            let mut buf = vec![0u8; 4096];
            buf[..SEGMENT_HEADER_LEN].copy_from_slice(&h.encode());
            Builder {
                buf,
                off: SEGMENT_HEADER_LEN,
                h,
            }
        }

        fn frame(&mut self, kind: u8, id: u64, epoch: u64, durable: u64, payload: &[u8]) -> usize {
            let fh = FrameHeader {
                len: payload.len() as u32,
                kind,
                entry: EntryId(id),
                epoch,
                durable_lag: durable_lag(id, durable),
            };
            let at = self.off;
            self.buf[at..at + FRAME_HEADER_LEN].copy_from_slice(&fh.encode(payload));
            self.buf[at + FRAME_HEADER_LEN..at + FRAME_HEADER_LEN + payload.len()]
                .copy_from_slice(payload);
            self.off += frame_len(payload.len());
            at
        }

        fn walk(&self) -> (Vec<u64>, Result<Step, Damage>, Cursor) {
            let mut c = Cursor::new(&self.h);
            let mut ids = Vec::new();
            loop {
                match c.step(&self.buf) {
                    Ok(Step::Entry { id, .. }) => ids.push(id.0),
                    other => return (ids, other, c),
                }
            }
        }
    }

    #[test]
    fn entries_then_zero_end() {
        let mut b = Builder::new();
        b.frame(KIND_ENTRY, 1, 5, 0, b"a");
        b.frame(KIND_ENTRY, 2, 5, 0, b"");
        let (ids, end, c) = b.walk();
        assert_eq!(ids, [1, 2]);
        assert_eq!(end, Ok(Step::End(End::Zero)));
        assert_eq!(c.off, b.off);
    }

    #[test]
    fn incomplete_batch_is_a_torn_tail_and_cursor_rewinds_to_it() {
        let mut b = Builder::new();
        b.frame(KIND_ENTRY, 1, 5, 0, b"a");
        let batch = b.frame(KIND_ENTRY_CONT, 2, 5, 0, b"b");
        b.frame(KIND_ENTRY_CONT, 3, 5, 0, b"c");
        let (ids, end, c) = b.walk();
        assert_eq!(ids, [1]);
        assert_eq!(end, Ok(Step::End(End::Torn("incomplete batch"))));
        assert_eq!(c.off, batch);
        b.frame(KIND_ENTRY, 4, 5, 0, b"d");
        assert_eq!(b.walk().0, [1, 2, 3, 4]);
    }

    #[test]
    fn resume_marker_fences_off_older_epoch_frames() {
        let mut b = Builder::new();
        b.frame(KIND_ENTRY, 1, 5, 0, b"a");
        let tail = b.off;
        b.frame(KIND_ENTRY, 2, 5, 0, b"stale but valid");
        b.off = tail;
        b.frame(KIND_RESUME, 2, 6, 1, b"");
        b.frame(KIND_ENTRY, 2, 6, 1, b"new");
        let (ids, end, c) = b.walk();
        assert_eq!(ids, [1, 2]);
        assert_eq!(c.epoch, 6);
        // What follows is the old frame's remains: stale or torn, never replayed.
        assert!(matches!(end, Ok(Step::End(_))), "{end:?}");
    }

    #[test]
    fn valid_frame_with_wrong_id_is_a_gap() {
        let mut b = Builder::new();
        b.frame(KIND_ENTRY, 1, 5, 0, b"a");
        b.frame(KIND_ENTRY, 3, 5, 0, b"c");
        let (_, end, _) = b.walk();
        assert!(matches!(
            end,
            Err(Damage {
                kind: CorruptKind::EntryIdGap {
                    expected: 2,
                    found: 3
                },
                ..
            })
        ));
    }

    #[test]
    fn seal_stops_the_cursor_on_itself() {
        let mut b = Builder::new();
        b.frame(KIND_ENTRY, 1, 5, 0, b"a");
        let seal = b.frame(KIND_SEAL, 2, 5, 1, b"");
        let (_, end, c) = b.walk();
        assert_eq!(end, Ok(Step::Sealed { next: EntryId(2) }));
        assert_eq!(c.off, seal);
    }
}
