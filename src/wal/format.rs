//! Every byte the WAL puts on disk: constants, file names, segment headers and
//! frames, with their encoders and decoders. `FORMAT.md` is the prose version
//! of this file; the two must agree.

use super::{EntryId, SegmentId};

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

/// The decoded segment header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SegmentHeader {
    pub(crate) segment: SegmentId,
    pub(crate) first_entry: EntryId,
    pub(crate) epoch: u64,
    pub(crate) segment_len: u64,
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
        let mut b = [0u8; SEGMENT_HEADER_LEN];
        b[0..8].copy_from_slice(&SEGMENT_MAGIC);
        b[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        b[12..16].copy_from_slice(&(SEGMENT_HEADER_LEN as u32).to_le_bytes());
        b[16..24].copy_from_slice(&self.segment.0.to_le_bytes());
        b[24..32].copy_from_slice(&self.first_entry.0.to_le_bytes());
        b[32..40].copy_from_slice(&self.epoch.to_le_bytes());
        b[40..48].copy_from_slice(&self.segment_len.to_le_bytes());
        let crc = crc32fast::hash(&b[0..60]);
        b[60..64].copy_from_slice(&crc.to_le_bytes());
        b
    }

    pub(crate) fn decode(buf: &[u8]) -> Result<SegmentHeader, HeaderError> {
        let b = buf.get(..SEGMENT_HEADER_LEN).ok_or(HeaderError::Short)?;
        if b[0..8] != SEGMENT_MAGIC {
            return Err(HeaderError::Magic);
        }
        // The version before the CRC: another version may lay out (and
        // checksum) its header differently. Checkpoint and record-log
        // headers use the same order.
        let version = u32_at(b, 8);
        if version != FORMAT_VERSION {
            return Err(HeaderError::Version(version));
        }
        let stored = u32_at(b, 60);
        let computed = crc32fast::hash(&b[0..60]);
        if stored != computed {
            return Err(HeaderError::Checksum { stored, computed });
        }
        if u32_at(b, 12) as usize != SEGMENT_HEADER_LEN {
            return Err(HeaderError::Field("header length"));
        }
        if b[48..60].iter().any(|&x| x != 0) {
            return Err(HeaderError::Field("reserved bytes are not zero"));
        }
        let h = SegmentHeader {
            segment: SegmentId(u64_at(b, 16)),
            first_entry: EntryId(u64_at(b, 24)),
            epoch: u64_at(b, 32),
            segment_len: u64_at(b, 40),
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
    /// frame as written.
    pub(crate) fn encode(&self, payload: &[u8]) -> [u8; FRAME_HEADER_LEN] {
        let mut b = [0u8; FRAME_HEADER_LEN];
        b[4..8].copy_from_slice(&self.len.to_le_bytes());
        b[8] = self.kind;
        b[12..16].copy_from_slice(&self.durable_lag.to_le_bytes());
        b[16..24].copy_from_slice(&self.entry.0.to_le_bytes());
        b[24..32].copy_from_slice(&self.epoch.to_le_bytes());
        let mut h = crc32fast::Hasher::new();
        h.update(&b[4..]);
        h.update(payload);
        b[0..4].copy_from_slice(&h.finalize().to_le_bytes());
        b
    }
}

/// The durable watermark of the frame whose (already validated) header
/// starts at `off` of `buf`: what [`FrameHeader::durable_watermark`] says,
/// without decoding the frame again. `None` if unknown or out of bounds.
pub(crate) fn watermark_at(buf: &[u8], off: usize) -> Option<u64> {
    let h = buf.get(off..off.checked_add(FRAME_HEADER_LEN)?)?;
    let lag = u32_at(h, 12);
    (lag != u32::MAX).then(|| u64_at(h, 16).saturating_sub(lag.into()))
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
    let h: &[u8; FRAME_HEADER_LEN] = h.try_into().expect("slice of FRAME_HEADER_LEN");
    if h.iter().all(|&b| b == 0) {
        return Slot::Zero;
    }
    let kind = h[8];
    if !(KIND_ENTRY..=KIND_RESUME).contains(&kind) || h[9..12] != [0, 0, 0] {
        return Slot::Invalid("unknown frame kind");
    }
    let len = u32_at(h, 4);
    let payload_start = off + FRAME_HEADER_LEN;
    let end = match off.checked_add(frame_len(len as usize)) {
        Some(end) if end <= buf.len() => end,
        _ => return Slot::Invalid("frame length runs past the end of the segment"),
    };
    if kind >= KIND_SEAL && len != 0 {
        return Slot::Invalid("marker with a payload");
    }
    // One contiguous range: the rest of the header, then the payload.
    if crc32fast::hash(&buf[off + 4..payload_start + len as usize]) != u32_at(h, 0) {
        return Slot::Invalid("frame checksum mismatch");
    }
    Slot::Frame {
        header: FrameHeader {
            len,
            kind,
            entry: EntryId(u64_at(h, 16)),
            epoch: u64_at(h, 24),
            durable_lag: u32_at(h, 12),
        },
        payload: (payload_start, payload_start + len as usize),
        end,
    }
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

#[cfg(test)]
mod tests {
    use super::*;

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
