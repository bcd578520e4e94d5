//! FeatureBase's ID allocator file (upstream `idalloc.go`), a bbolt file:
//! - one top-level bucket per index, named by the index;
//! - in it, under the one-byte key `[0x01]`, the IDs still available: a list of inclusive
//!   ranges, each `first u64 LE, last u64 LE`. Absent means nothing was reserved yet, and
//!   upstream then starts from `[1, u64::MAX]`;
//! - under `<allocation key> + "\0"`, a reservation session: `offset u64 LE`, a 32-byte
//!   session lock, then the ranges reserved and not yet committed (same encoding). An offset
//!   of `u64::MAX` means the client does not use offset control.
//!
//! Upstream hands out IDs from the available ranges smallest-range-first (a min-heap on the
//! range width), so after commits the open-ended range `[n, u64::MAX]` starts at the first
//! ID never handed out.

use std::collections::BTreeMap;
use std::io::{self, Write};

use super::{bolt, FormatProblem};

/// The key of the available-ranges record inside an index bucket.
const AVAILABLE_KEY: &[u8] = &[1];

/// An inclusive range of IDs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct IdRange {
    /// First ID of the range.
    pub first: u64,
    /// Last ID of the range (inclusive).
    pub last: u64,
}

/// A reservation session of one allocation key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reservation {
    /// The client's stream offset (`u64::MAX` when offset control is not used).
    pub offset: u64,
    /// The session lock (the client's session ID).
    pub session: [u8; 32],
    /// Reserved ranges not yet committed.
    pub ranges: Vec<IdRange>,
}

/// The allocator's record of one index.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IndexIds {
    /// Ranges still available, in stored order, or `None` if nothing was ever reserved
    /// (upstream then treats `[1, u64::MAX]` as available).
    pub available: Option<Vec<IdRange>>,
    /// Open reservations by allocation key (without upstream's trailing NUL).
    pub reservations: BTreeMap<String, Reservation>,
}

/// The whole ID allocator file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IdallocState {
    /// Per index name.
    pub indexes: BTreeMap<String, IndexIds>,
}

impl IdallocState {
    /// The first ID of the allocator's fresh ID space for `index`: every ID at or above it
    /// has never been handed out, and every committed ID is below it. This is the start of
    /// the open-ended available range `[n, u64::MAX]`; 1 for an index the allocator has no
    /// record of (upstream starts at 1); `u64::MAX` if no open-ended range is left.
    pub fn committed_upper_bound(&self, index: &str) -> u64 {
        match self.indexes.get(index).and_then(|i| i.available.as_ref()) {
            None => 1,
            Some(ranges) => ranges.iter().find(|r| r.last == u64::MAX).map_or(u64::MAX, |r| r.first),
        }
    }

    /// The ID upstream would hand out next for a one-ID reservation on `index` (first ID of
    /// the narrowest available range, ties broken the way upstream's heap breaks them), or
    /// `None` when nothing is available. Differs from [`Self::committed_upper_bound`] when
    /// released (never committed) IDs sit in smaller ranges.
    pub fn next_id(&self, index: &str) -> Option<u64> {
        let Some(ranges) = self.indexes.get(index).and_then(|i| i.available.clone()) else { return Some(1) };
        // Upstream's heapify: sift each element up by width, then take the root.
        let mut heap = ranges;
        for i in 0..heap.len() {
            let mut i = i;
            while i > 0 {
                let parent = (i - 1) / 2;
                if heap[i].last - heap[i].first < heap[parent].last - heap[parent].first {
                    heap.swap(i, parent);
                    i = parent;
                } else {
                    break;
                }
            }
        }
        heap.first().map(|r| r.first)
    }
}

fn encode_ranges(ranges: &[IdRange], out: &mut Vec<u8>) -> io::Result<()> {
    for r in ranges {
        if r.last < r.first {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "backwards ID range"));
        }
        out.extend_from_slice(&r.first.to_le_bytes());
        out.extend_from_slice(&r.last.to_le_bytes());
    }
    Ok(())
}

fn decode_ranges(data: &[u8], offset: u64) -> Result<Vec<IdRange>, FormatProblem> {
    if !data.chunks_exact(16).remainder().is_empty() {
        return Err(FormatProblem { offset, message: format!("ID range list of {} bytes", data.len()) });
    }
    let mut out = Vec::with_capacity(data.len() / 16);
    for (i, c) in data.chunks_exact(16).enumerate() {
        let mut a = [0u8; 8];
        a.copy_from_slice(&c[..8]);
        let first = u64::from_le_bytes(a);
        a.copy_from_slice(&c[8..]);
        let last = u64::from_le_bytes(a);
        if last < first {
            return Err(FormatProblem { offset: offset + 16 * i as u64, message: "backwards ID range".into() });
        }
        out.push(IdRange { first, last });
    }
    Ok(out)
}

/// Writes the allocator file for `state`. Returns the number of bytes written.
pub fn write<W: Write>(out: W, state: &IdallocState) -> io::Result<u64> {
    let mut buckets = Vec::new();
    for (index, ids) in &state.indexes {
        let mut kv = Vec::new();
        if let Some(avail) = &ids.available {
            let mut v = Vec::new();
            encode_ranges(avail, &mut v)?;
            kv.push((AVAILABLE_KEY.to_vec(), v));
        }
        for (key, res) in &ids.reservations {
            let mut v = res.offset.to_le_bytes().to_vec();
            v.extend_from_slice(&res.session);
            encode_ranges(&res.ranges, &mut v)?;
            let mut k = key.as_bytes().to_vec();
            k.push(0);
            kv.push((k, v));
        }
        buckets.push((index.as_bytes().to_vec(), kv));
    }
    bolt::write_db(out, &buckets)
}

/// Reads the allocator file, validating every record's encoding.
pub fn read(data: &[u8]) -> Result<IdallocState, FormatProblem> {
    let mut state = IdallocState::default();
    for (name, entries) in bolt::read_entries(data)? {
        let index = String::from_utf8(name)
            .map_err(|_| FormatProblem { offset: 0, message: "index bucket name is not UTF-8".into() })?;
        let mut ids = IndexIds::default();
        for e in entries {
            if e.key == AVAILABLE_KEY {
                ids.available = Some(decode_ranges(&e.value, e.offset)?);
                continue;
            }
            let bad = |m: &str| FormatProblem { offset: e.offset, message: m.to_string() };
            let key = match e.key.split_last() {
                Some((0, k)) => String::from_utf8(k.to_vec()).map_err(|_| bad("allocation key is not UTF-8"))?,
                _ => return Err(bad("unknown record in an ID allocator bucket")),
            };
            if e.value.len() < 40 {
                return Err(bad("reservation record shorter than 40 bytes"));
            }
            let mut a = [0u8; 8];
            a.copy_from_slice(&e.value[..8]);
            let mut session = [0u8; 32];
            session.copy_from_slice(&e.value[8..40]);
            let ranges = decode_ranges(&e.value[40..], e.offset + 40)?;
            ids.reservations.insert(key, Reservation { offset: u64::from_le_bytes(a), session, ranges });
        }
        state.indexes.insert(index, ids);
    }
    Ok(state)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn typical_state_round_trips_and_bounds() {
        let mut state = IdallocState::default();
        let mut ids = IndexIds {
            available: Some(vec![IdRange { first: 5, last: 6 }, IdRange { first: 101, last: u64::MAX }]),
            ..IndexIds::default()
        };
        ids.reservations.insert(
            "p0".into(),
            Reservation { offset: 7, session: [9; 32], ranges: vec![IdRange { first: 90, last: 100 }] },
        );
        state.indexes.insert("i".into(), ids);
        state.indexes.insert("j".into(), IndexIds::default());
        let mut data = Vec::new();
        write(&mut data, &state).expect("write");
        assert_eq!(read(&data), Ok(state.clone()));
        assert_eq!(state.committed_upper_bound("i"), 101);
        assert_eq!(state.next_id("i"), Some(5));
        assert_eq!(state.committed_upper_bound("j"), 1);
        assert_eq!(state.committed_upper_bound("nope"), 1);
        // Encoding as upstream: key [1] with LE ranges, key "p0\0" with offset, lock, ranges.
        let db = bolt::read_db(&data).expect("bolt");
        let i = &db[&b"i".to_vec()];
        assert_eq!(i[0].0, vec![1u8]);
        assert_eq!(&i[0].1[..8], &5u64.to_le_bytes());
        assert_eq!(i[1].0, b"p0\0".to_vec());
        assert_eq!(i[1].1.len(), 8 + 32 + 16);
    }

    fn range() -> impl Strategy<Value = IdRange> {
        (any::<u64>(), any::<u64>()).prop_map(|(a, b)| IdRange { first: a.min(b), last: a.max(b) })
    }

    fn state() -> impl Strategy<Value = IdallocState> {
        let res = (any::<u64>(), any::<[u8; 32]>(), prop::collection::vec(range(), 0..4))
            .prop_map(|(offset, session, ranges)| Reservation { offset, session, ranges });
        let index =
            (prop::option::of(prop::collection::vec(range(), 0..6)), prop::collection::btree_map(".{0,10}", res, 0..4))
                .prop_map(|(available, reservations)| IndexIds { available, reservations });
        prop::collection::btree_map("[a-z]{1,8}", index, 0..4).prop_map(|indexes| IdallocState { indexes })
    }

    proptest! {
        #[test]
        fn round_trip(s in state()) {
            let mut data = Vec::new();
            write(&mut data, &s).expect("write");
            prop_assert_eq!(read(&data), Ok(s));
        }

        #[test]
        fn garbage_never_panics(data in prop::collection::vec(any::<u8>(), 0..20000)) {
            let _ = read(&data);
        }
    }
}
