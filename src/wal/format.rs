//! Every byte the WAL puts on disk: constants, file names, segment headers and
//! frames, with their encoders and decoders. `FORMAT.md` is the prose version
//! of this file; the two must agree.

use bytemuck::{Pod, Zeroable};

use super::{EntryId, SegmentId};
use crate::le::{U32Le, U64Le};

/// Zero bytes written after the last frame, so a cleanly stopped log ends in
/// a zero slot even inside a reused file.
pub(crate) const ZERO_SLOT: [u8; FRAME_HEADER_LEN] = [0; FRAME_HEADER_LEN];

/// Magic bytes opening every segment file.
pub(crate) const SEGMENT_MAGIC: [u8; 8] = *b"ZDURWAL\x01";
/// The segment format version this build writes and reads.
pub(crate) const FORMAT_VERSION: u32 = 1;
/// Bytes of the segment header; frames start here.
pub(crate) const SEGMENT_HEADER_LEN: usize = 64;
/// Bytes of a frame header; the payload starts here, 16-byte aligned.
pub(crate) const FRAME_HEADER_LEN: usize = 32;
/// Frames start (and payloads start) at multiples of this.
pub(crate) const FRAME_ALIGN: usize = 16;
/// Room always kept free at the end of a segment for its seal marker.
pub(crate) const SEAL_RESERVE: usize = FRAME_HEADER_LEN;
/// Smallest segment accepted by the options.
pub(crate) const SEGMENT_SIZE_BYTES_MIN: u64 = 8 * 1024;

/// File name suffix of live segments.
pub(crate) const SEGMENT_SUFFIX: &str = ".seg";
/// File name suffix of segments waiting in the recycle pool.
pub(crate) const FREE_SUFFIX: &str = ".free";
/// Name of the lock file inside the WAL directory.
pub(crate) const LOCK_NAME: &str = "LOCK";
const ID_DIGITS: usize = 20;

/// Kind byte of a frame carrying an entry that ends its batch (or a lone entry).
pub(crate) const KIND_ENTRY: u8 = 1;
/// Kind byte of a frame carrying an entry whose batch continues.
pub(crate) const KIND_ENTRY_CONT: u8 = 2;
/// Kind byte of the seal marker closing a segment.
pub(crate) const KIND_SEAL: u8 = 3;
/// Kind byte of the resume marker that starts a new epoch inside a segment.
pub(crate) const KIND_RESUME: u8 = 4;

/// The files a WAL directory may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum FileName {
    /// A live segment: `{id:020}.seg`.
    Segment(SegmentId),
    /// A segment in the recycle pool: `{id:020}.free` (its last live id).
    Free(SegmentId),
}

impl FileName {
    /// Parses a directory entry name; `None` for names that are not ours.
    pub(crate) fn parse(name: &str) -> Option<FileName> {
        let (digits, make): (&str, fn(SegmentId) -> FileName) =
            if let Some(d) = name.strip_suffix(SEGMENT_SUFFIX) {
                (d, FileName::Segment)
            } else if let Some(d) = name.strip_suffix(FREE_SUFFIX) {
                (d, FileName::Free)
            } else {
                return None;
            };
        if digits.len() != ID_DIGITS || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        digits.parse().ok().map(|n| make(SegmentId(n)))
    }

    /// The name as it appears in the directory.
    pub(crate) fn render(self) -> String {
        match self {
            FileName::Segment(id) => format!("{:020}{SEGMENT_SUFFIX}", id.0),
            FileName::Free(id) => format!("{:020}{FREE_SUFFIX}", id.0),
        }
    }
}

/// The segment header as it sits in the file (64 bytes, little-endian,
/// alignment 1). `FORMAT.md` ("Segment header") describes each field.
#[derive(Debug, Clone, Copy, Pod, Zeroable)]
#[repr(C)]
struct RawSegmentHeader {
    magic: [u8; 8],
    version: U32Le,
    header_len: U32Le,
    segment: U64Le,
    first_entry: U64Le,
    epoch: U64Le,
    segment_len: U64Le,
    created_ms: U64Le,
    flags: u8,
    reserved: [u8; 3],
    crc: U32Le,
}

const _: () = assert!(size_of::<RawSegmentHeader>() == SEGMENT_HEADER_LEN);
const _: () = assert!(size_of::<RawFrameHeader>() == FRAME_HEADER_LEN);
const _: () = assert!(std::mem::offset_of!(RawFrameHeader, len) == FRAME_LEN_AT);
const _: () = assert!(std::mem::offset_of!(RawFrameHeader, kind) == FRAME_KIND_AT);
const _: () = assert!(std::mem::offset_of!(RawFrameHeader, entry) == FRAME_ENTRY_AT);
const _: () = assert!(std::mem::offset_of!(RawFrameHeader, epoch) == FRAME_EPOCH_AT);
const _: () =
    assert!(std::mem::offset_of!(RawSegmentHeader, segment) == HEADER_SEGMENT_AT as usize);
const _: () =
    assert!(std::mem::offset_of!(RawSegmentHeader, first_entry) == HEADER_FIRST_ENTRY_AT as usize);
const _: () = assert!(std::mem::offset_of!(RawSegmentHeader, epoch) == HEADER_EPOCH_AT as usize);
const _: () =
    assert!(std::mem::offset_of!(RawSegmentHeader, segment_len) == HEADER_LEN_AT as usize);

/// Segment header flag (byte 56): the predecessor was not yet durable when
/// this segment was created.
pub(crate) const FLAG_PREDECESSOR_UNSYNCED: u8 = 1;

/// Offset of the segment header's CRC: it covers every byte before it.
const SEGMENT_HEADER_CRC_AT: usize = SEGMENT_HEADER_LEN - 4;
/// Offsets of header fields, named in errors.
pub(crate) const HEADER_SEGMENT_AT: u64 = 16;
pub(crate) const HEADER_FIRST_ENTRY_AT: u64 = 24;
pub(crate) const HEADER_EPOCH_AT: u64 = 32;
pub(crate) const HEADER_LEN_AT: u64 = 40;

/// The decoded segment header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SegmentHeader {
    pub(crate) segment: SegmentId,
    pub(crate) first_entry: EntryId,
    pub(crate) epoch: u64,
    pub(crate) segment_len: u64,
    /// When the segment began (milliseconds since the Unix epoch; 0 =
    /// unknown): `max_segment_age` counts from here, across reopens.
    pub(crate) created_ms: u64,
    /// Set by a rotation that did not wait for the segment before this one
    /// to become durable; cleared (the header rewritten) by the first
    /// barrier after that one is. While set, the predecessor may end before
    /// its seal after a crash (`FORMAT.md`, "Deferred rotation", @D1–@D2).
    pub(crate) predecessor_unsynced: bool,
}

/// Why a segment header did not decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HeaderError {
    Short,
    Magic,
    Checksum { stored: u32, computed: u32 },
    Version(u32),
    Field(&'static str),
}

impl SegmentHeader {
    pub(crate) fn encode(&self) -> [u8; SEGMENT_HEADER_LEN] {
        let mut raw = RawSegmentHeader {
            magic: SEGMENT_MAGIC,
            version: U32Le::new(FORMAT_VERSION),
            header_len: U32Le::new(SEGMENT_HEADER_LEN as u32),
            segment: U64Le::new(self.segment.0),
            first_entry: U64Le::new(self.first_entry.0),
            epoch: U64Le::new(self.epoch),
            segment_len: U64Le::new(self.segment_len),
            created_ms: U64Le::new(self.created_ms),
            flags: if self.predecessor_unsynced {
                FLAG_PREDECESSOR_UNSYNCED
            } else {
                0
            },
            reserved: [0; 3],
            crc: U32Le::default(),
        };
        raw.crc = U32Le::new(crc32fast::hash(
            &bytemuck::bytes_of(&raw)[..SEGMENT_HEADER_CRC_AT],
        ));
        let mut b = [0u8; SEGMENT_HEADER_LEN];
        b.copy_from_slice(bytemuck::bytes_of(&raw));
        b
    }

    pub(crate) fn decode(buf: &[u8]) -> Result<SegmentHeader, HeaderError> {
        let b = buf.get(..SEGMENT_HEADER_LEN).ok_or(HeaderError::Short)?;
        let raw: RawSegmentHeader = bytemuck::pod_read_unaligned(b);
        if raw.magic != SEGMENT_MAGIC {
            return Err(HeaderError::Magic);
        }
        // The version before the CRC: another version may lay out (and
        // checksum) its header differently. Checkpoint and record-log
        // headers use the same order.
        if raw.version.get() != FORMAT_VERSION {
            return Err(HeaderError::Version(raw.version.get()));
        }
        let computed = crc32fast::hash(&b[..SEGMENT_HEADER_CRC_AT]);
        if raw.crc.get() != computed {
            return Err(HeaderError::Checksum {
                stored: raw.crc.get(),
                computed,
            });
        }
        if raw.header_len.get() as usize != SEGMENT_HEADER_LEN {
            return Err(HeaderError::Field("header length"));
        }
        if raw.reserved != [0; 3] || raw.flags & !FLAG_PREDECESSOR_UNSYNCED != 0 {
            return Err(HeaderError::Field("reserved bytes are not zero"));
        }
        let h = SegmentHeader {
            segment: SegmentId(raw.segment.get()),
            first_entry: EntryId(raw.first_entry.get()),
            epoch: raw.epoch.get(),
            segment_len: raw.segment_len.get(),
            created_ms: raw.created_ms.get(),
            predecessor_unsynced: raw.flags & FLAG_PREDECESSOR_UNSYNCED != 0,
        };
        if h.first_entry.0 == 0 {
            return Err(HeaderError::Field("first entry id is zero"));
        }
        if h.epoch == 0 {
            return Err(HeaderError::Field("epoch is zero"));
        }
        Ok(h)
    }
}

/// A frame header as it sits in the file (32 bytes, little-endian,
/// alignment 1). `FORMAT.md` ("Frame") describes each field.
#[derive(Debug, Clone, Copy, Pod, Zeroable)]
#[repr(C)]
struct RawFrameHeader {
    crc: U32Le,
    len: U32Le,
    kind: u8,
    reserved: [u8; 3],
    durable_lag: U32Le,
    entry: U64Le,
    epoch: U64Le,
}

/// Offsets within a frame header, for the scans that filter candidate
/// frames cheaply before decoding them.
pub(crate) const FRAME_LEN_AT: usize = 4;
pub(crate) const FRAME_KIND_AT: usize = 8;
pub(crate) const FRAME_ENTRY_AT: usize = 16;
pub(crate) const FRAME_EPOCH_AT: usize = 24;

/// A decoded frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FrameHeader {
    pub(crate) len: u32,
    pub(crate) kind: u8,
    /// The entry id (for markers: the id of the next entry).
    pub(crate) entry: EntryId,
    pub(crate) epoch: u64,
    /// `entry - (highest id known durable when this frame was written)`,
    /// saturated; `u32::MAX` means "unknown".
    pub(crate) durable_lag: u32,
}

impl FrameHeader {
    /// The highest entry id that was durable when this frame was written.
    pub(crate) fn durable_watermark(&self) -> Option<u64> {
        (self.durable_lag != u32::MAX).then(|| self.entry.0.saturating_sub(self.durable_lag.into()))
    }

    /// Encodes the header; its CRC (bytes `0..4`) covers header bytes
    /// `4..32` followed by `payload`, the contiguous range `4..32+len` of the
    /// frame as written ([`put_frame`] computes the same).
    pub(crate) fn encode(&self, payload: &[u8]) -> [u8; FRAME_HEADER_LEN] {
        let mut raw = self.raw();
        let mut h = crc32fast::Hasher::new();
        h.update(&bytemuck::bytes_of(&raw)[4..]);
        h.update(payload);
        raw.crc = U32Le::new(h.finalize());
        let mut b = [0u8; FRAME_HEADER_LEN];
        b.copy_from_slice(bytemuck::bytes_of(&raw));
        b
    }

    /// The header's fields as laid out in the file, CRC not yet set.
    fn raw(&self) -> RawFrameHeader {
        RawFrameHeader {
            crc: U32Le::default(),
            len: U32Le::new(self.len),
            kind: self.kind,
            reserved: [0; 3],
            durable_lag: U32Le::new(self.durable_lag),
            entry: U64Le::new(self.entry.0),
            epoch: U64Le::new(self.epoch),
        }
    }
}

/// Encodes the frame of `header` and `payload` in place at the start of
/// `dst`: header, payload, zero padding up to [`frame_len`], with the CRC
/// computed in one pass over the bytes just written (while they are in
/// cache). Returns the frame's length. The bytes are those of
/// [`FrameHeader::encode`] followed by the payload.
///
/// Panics if `dst` is shorter than the frame (callers size it with
/// [`frame_len`]).
pub(crate) fn put_frame(dst: &mut [u8], header: &FrameHeader, payload: &[u8]) -> usize {
    let total = frame_len(payload.len());
    let frame = &mut dst[..total];
    let payload_end = FRAME_HEADER_LEN + payload.len();
    frame[..FRAME_HEADER_LEN].copy_from_slice(bytemuck::bytes_of(&header.raw()));
    frame[FRAME_HEADER_LEN..payload_end].copy_from_slice(payload);
    frame[payload_end..].fill(0);
    let crc = crc32fast::hash(&frame[4..payload_end]);
    frame[..4].copy_from_slice(&crc.to_le_bytes());
    total
}

/// The durable watermark of the frame whose (already validated) header
/// starts at `off` of `buf`: what [`FrameHeader::durable_watermark`] says,
/// without decoding the frame again. `None` if unknown or out of bounds.
pub(crate) fn watermark_at(buf: &[u8], off: usize) -> Option<u64> {
    let h = buf.get(off..off.checked_add(FRAME_HEADER_LEN)?)?;
    let raw: RawFrameHeader = bytemuck::pod_read_unaligned(h);
    let lag = raw.durable_lag.get();
    (lag != u32::MAX).then(|| raw.entry.get().saturating_sub(lag.into()))
}

/// Lag field for a frame with id `entry` written when `durable` was the
/// highest durable id.
pub(crate) fn durable_lag(entry: u64, durable: u64) -> u32 {
    u32::try_from(entry.saturating_sub(durable)).unwrap_or(u32::MAX - 1)
}

/// Bytes a frame with a `len`-byte payload occupies, padding included.
pub(crate) fn frame_len(len: usize) -> usize {
    (FRAME_HEADER_LEN + len).next_multiple_of(FRAME_ALIGN)
}

/// What sits at a frame position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Slot {
    /// 32 zero bytes: never written in this life of the file.
    Zero,
    /// A well-formed frame (CRC verified): header, payload range, end offset.
    Frame {
        header: FrameHeader,
        payload: (usize, usize),
        end: usize,
    },
    /// Anything else: torn, garbage, or a length running past the segment.
    Invalid(&'static str),
}

/// Decodes the frame at `off` of a segment's bytes. Never reads outside `buf`
/// and never allocates, whatever the bytes say.
pub(crate) fn decode_slot(buf: &[u8], off: usize) -> Slot {
    let Some(h) = off
        .checked_add(FRAME_HEADER_LEN)
        .and_then(|end| buf.get(off..end))
    else {
        return Slot::Invalid("frame header runs past the end of the segment");
    };
    if h.iter().all(|&b| b == 0) {
        return Slot::Zero;
    }
    let raw: RawFrameHeader = bytemuck::pod_read_unaligned(h);
    let kind = raw.kind;
    if !(KIND_ENTRY..=KIND_RESUME).contains(&kind) || raw.reserved != [0; 3] {
        return Slot::Invalid("unknown frame kind");
    }
    let len = raw.len.get();
    let payload_start = off + FRAME_HEADER_LEN;
    let end = match off.checked_add(frame_len(len as usize)) {
        Some(end) if end <= buf.len() => end,
        _ => return Slot::Invalid("frame length runs past the end of the segment"),
    };
    if kind >= KIND_SEAL && len != 0 {
        return Slot::Invalid("marker with a payload");
    }
    // One contiguous range: the rest of the header, then the payload.
    if crc32fast::hash(&buf[off + 4..payload_start + len as usize]) != raw.crc.get() {
        return Slot::Invalid("frame checksum mismatch");
    }
    Slot::Frame {
        header: FrameHeader {
            len,
            kind,
            entry: EntryId(raw.entry.get()),
            epoch: raw.epoch.get(),
            durable_lag: raw.durable_lag.get(),
        },
        payload: (payload_start, payload_start + len as usize),
        end,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_encoded_in_place_match_the_header_encoder_and_decode() {
        for len in [0usize, 1, 15, 16, 17, 100, 1024] {
            let payload: Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8).collect();
            let h = FrameHeader {
                len: len as u32,
                kind: KIND_ENTRY,
                entry: EntryId(9),
                epoch: 4,
                durable_lag: 2,
            };
            // Stale bytes in the destination (a recycled file) are all
            // overwritten, padding included.
            let mut dst = vec![0xAB; frame_len(len) + 8];
            assert_eq!(put_frame(&mut dst, &h, &payload), frame_len(len));
            let mut want = h.encode(&payload).to_vec();
            want.extend_from_slice(&payload);
            want.resize(frame_len(len), 0);
            assert_eq!(&dst[..frame_len(len)], &want[..], "payload of {len} bytes");
            assert!(dst[frame_len(len)..].iter().all(|&b| b == 0xAB));
            match decode_slot(&dst[..frame_len(len)], 0) {
                Slot::Frame {
                    header,
                    payload: (a, b),
                    ..
                } => {
                    assert_eq!(header, h);
                    assert_eq!(&dst[a..b], &payload[..]);
                }
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn file_names_round_trip_and_reject_foreign_names() {
        let s = FileName::Segment(SegmentId(42));
        assert_eq!(s.render(), "00000000000000000042.seg");
        assert_eq!(FileName::parse(&s.render()), Some(s));
        let f = FileName::Free(SegmentId(7));
        assert_eq!(FileName::parse(&f.render()), Some(f));
        for bad in [
            "42.seg",
            "LOCK",
            "0000000000000000004x.seg",
            "00000000000000000042.seg.tmp",
        ] {
            assert_eq!(FileName::parse(bad), None, "{bad}");
        }
        // Numeric order equals name order.
        assert!(
            FileName::Segment(SegmentId(9)).render() < FileName::Segment(SegmentId(10)).render()
        );
    }

    #[test]
    fn header_round_trips_and_every_byte_is_covered() {
        let h = SegmentHeader {
            segment: SegmentId(3),
            first_entry: EntryId(100),
            epoch: 9,
            segment_len: 1 << 20,
            created_ms: 1_700_000_000_000,
            predecessor_unsynced: false,
        };
        let b = h.encode();
        assert_eq!(SegmentHeader::decode(&b), Ok(h));
        for i in 0..SEGMENT_HEADER_LEN {
            let mut c = b;
            c[i] ^= 0x40;
            assert!(SegmentHeader::decode(&c).is_err(), "flip at {i} accepted");
        }
        assert_eq!(SegmentHeader::decode(&b[..10]), Err(HeaderError::Short));
    }

    #[test]
    fn another_version_is_reported_as_such_whatever_its_crc() {
        let h = SegmentHeader {
            segment: SegmentId(1),
            first_entry: EntryId(1),
            epoch: 1,
            segment_len: 1 << 20,
            created_ms: 1_700_000_000_000,
            predecessor_unsynced: false,
        };
        let mut b = h.encode();
        b[8..12].copy_from_slice(&2u32.to_le_bytes());
        // A newer format may checksum its header differently: the stored CRC
        // is not ours, and the version must still be what is reported.
        assert_eq!(SegmentHeader::decode(&b), Err(HeaderError::Version(2)));
    }

    #[test]
    fn frame_round_trips_and_crc_covers_header_fields_and_payload() {
        let payload = b"hello frame";
        let fh = FrameHeader {
            len: payload.len() as u32,
            kind: KIND_ENTRY,
            entry: EntryId(5),
            epoch: 2,
            durable_lag: 1,
        };
        let mut buf = vec![0u8; 128];
        buf[16..48].copy_from_slice(&fh.encode(payload));
        buf[48..48 + payload.len()].copy_from_slice(payload);
        let Slot::Frame {
            header,
            payload: (a, b),
            end,
        } = decode_slot(&buf, 16)
        else {
            panic!("frame did not decode");
        };
        assert_eq!(header, fh);
        assert_eq!(&buf[a..b], payload);
        assert_eq!(end, 16 + frame_len(payload.len()));
        assert_eq!(a % FRAME_ALIGN, 0);
        // Flipping any covered byte (header fields or payload) is detected.
        // The CRC (bytes 0..4) covers bytes 4..32+len as one range.
        for i in 16..48 + payload.len() {
            let mut c = buf.clone();
            c[i] ^= 1;
            assert!(
                !matches!(decode_slot(&c, 16), Slot::Frame { .. }),
                "flip at {i}"
            );
        }
    }

    #[test]
    fn hostile_lengths_are_invalid_not_panics() {
        let mut buf = vec![0u8; 64];
        assert_eq!(decode_slot(&buf, 0), Slot::Zero);
        buf[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        buf[8] = KIND_ENTRY;
        assert!(matches!(decode_slot(&buf, 0), Slot::Invalid(_)));
        assert!(matches!(decode_slot(&buf, 48), Slot::Invalid(_)));
        assert!(matches!(
            decode_slot(&buf, usize::MAX - 3),
            Slot::Invalid(_)
        ));
    }
}
