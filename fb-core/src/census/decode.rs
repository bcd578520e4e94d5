//! Decoding a shard's RBF file into census figures, page by page through positional reads,
//! so memory stays a few pages (and, for a value field, the containers of one 65536-column
//! slice) however large the file is.
//!
//! What the pages mean (upstream `fragment.go`, `rbf/`; layout facts in
//! [`crate::format::rbf`]): a shard file holds one bitmap per field view, named
//! `~field;view<`. A bit at position `row × 2^20 + column` sets `row` for `column`; containers
//! hold 2^16 positions, so a row spans 16 containers (keys `row × 16 … row × 16 + 15`). Value
//! fields live in the view `bsig_<field>` (bit-sliced): row 0 says the column has a value,
//! row 1 that it is negative, row 2 + k is bit k of its magnitude. The number stored is the
//! value minus the field's base ([`super::plan`] adds it back).

use std::collections::BTreeMap;
use std::fs::File;
use std::os::unix::fs::FileExt;

use crate::format::bolt::PageBits;
use crate::format::rbf::{
    branch_cells, leaf_cells, parse_meta, root_records, LeafCell, Meta, CT_ARRAY, CT_BITMAP_PTR, CT_RLE, MAX_DEPTH,
    PAGE_SIZE, TYPE_BRANCH, TYPE_LEAF, TYPE_ROOT_RECORD,
};
use crate::format::FormatProblem;

/// Columns per shard (upstream's `ShardWidth`, 2^20; every index's `shardWidth` in the schema).
pub const SHARD_WIDTH: u64 = 1 << 20;
/// Containers per row.
const ROW_CONTAINERS: u64 = SHARD_WIDTH >> 16;
/// Words of a 65536-bit container.
const WORDS: usize = 1024;
const PS: usize = PAGE_SIZE as usize;
/// Bit planes a value field can have (magnitudes are at most 64 bits).
const MAX_PLANES: usize = 64;
/// Leaf pages kept while a value field's slices are read (its cells sit on few leaves).
const LEAF_CACHE: usize = 8;

/// The prefix upstream gives a bit-sliced view: `bsig_` + the field name.
pub const BSI_VIEW_PREFIX: &str = "bsig_";

fn problem(offset: u64, message: impl Into<String>) -> FormatProblem {
    FormatProblem { offset, message: message.into() }
}

/// A range of a file holding one RBF file: a shard file on disk, an entry of a plain tar, or
/// a spooled copy of a streamed entry.
pub struct RbfSource<'a> {
    file: &'a File,
    offset: u64,
    len: u64,
}

impl<'a> RbfSource<'a> {
    /// The `len` bytes at `offset` of `file`.
    pub fn new(file: &'a File, offset: u64, len: u64) -> Self {
        RbfSource { file, offset, len }
    }

    fn read_page(&self, pgno: u32, page_n: u32, at: u64, buf: &mut [u8]) -> Result<(), FormatProblem> {
        if pgno == 0 || pgno >= page_n {
            return Err(problem(at, format!("reference to page {pgno} outside the file's {page_n} pages")));
        }
        let start = u64::from(pgno) * PAGE_SIZE;
        if start + PAGE_SIZE > self.len {
            return Err(problem(start, format!("page {pgno} lies past the end of the file")));
        }
        self.file
            .read_exact_at(&mut buf[..PS], self.offset + start)
            .map_err(|e| problem(start, format!("cannot read page {pgno}: {e}")))
    }
}

/// What one view of one field holds in a shard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ViewFigures {
    /// Bits per row (rows with bits only).
    Rows(BTreeMap<u64, u64>),
    /// A bit-sliced view, in stored units (before the base is added).
    Values(StoredValues),
}

/// Values as stored (value − base).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoredValues {
    /// Columns with a value.
    pub count: u64,
    /// Sum of the stored numbers.
    pub sum: i128,
    /// Smallest stored number.
    pub min: Option<i128>,
    /// Largest stored number.
    pub max: Option<i128>,
}

impl StoredValues {
    /// Add another slice's or shard's figures.
    pub fn merge(&mut self, o: &StoredValues) {
        self.count += o.count;
        self.sum += o.sum;
        self.min = match (self.min, o.min) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.max = match (self.max, o.max) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
    }
}

/// A shard's figures: field → view → figures. The existence field is `_exists`.
pub type ShardFigures = BTreeMap<String, BTreeMap<String, ViewFigures>>;

/// Splits upstream's bitmap name `~field;view<` into field and view.
pub fn parse_fragment_name(name: &str) -> Option<(&str, &str)> {
    let inner = name.strip_prefix('~')?.strip_suffix('<')?;
    let (field, view) = inner.split_once(';')?;
    (!field.is_empty() && !view.is_empty()).then_some((field, view))
}

/// A container's location: the leaf page holding its cell and the cell's position there.
#[derive(Debug, Clone, Copy)]
struct CellRef {
    leaf: u32,
    index: usize,
}

/// Decode every view of a shard file. A malformed structure is reported with its offset.
pub fn shard_figures(src: &RbfSource<'_>) -> Result<ShardFigures, FormatProblem> {
    let mut page = vec![0u8; PS];
    if src.len < 28 {
        return Err(problem(src.len, "file ends inside the RBF meta page"));
    }
    src.file.read_exact_at(&mut page[..28], src.offset).map_err(|e| problem(0, format!("cannot read: {e}")))?;
    let meta = parse_meta(&page[..28])?;
    if u64::from(meta.page_n) * PAGE_SIZE != src.len {
        return Err(problem(
            src.len.min(u64::from(meta.page_n) * PAGE_SIZE),
            format!("file is {} bytes, declares {}", src.len, u64::from(meta.page_n) * PAGE_SIZE),
        ));
    }
    // Root records (name → root page), following the overflow chain; bounded by the pages.
    let mut records = Vec::new();
    let (mut pgno, mut at) = (meta.root_records, 20u64);
    let mut hops = 0u32;
    while pgno != 0 {
        hops += 1;
        if hops > meta.page_n {
            return Err(problem(at, "root record pages form a loop"));
        }
        src.read_page(pgno, meta.page_n, at, &mut page)?;
        let base = u64::from(pgno) * PAGE_SIZE;
        if be32(&page, 0) != pgno || be32(&page, 4) != TYPE_ROOT_RECORD {
            return Err(problem(base, format!("page {pgno} is not a root record page")));
        }
        let (recs, next) = root_records(&page, base)?;
        records.extend(recs);
        (pgno, at) = (next, base + 8);
    }
    let mut out = ShardFigures::new();
    for (name, root, rat) in records {
        let Some((field, view)) = parse_fragment_name(&name) else {
            return Err(problem(rat, format!("bitmap {name:?} is not named ~field;view<")));
        };
        let figures = if view.starts_with(BSI_VIEW_PREFIX) {
            ViewFigures::Values(values_of(src, meta, root, rat).map_err(|p| named(p, &name))?)
        } else {
            ViewFigures::Rows(rows_of(src, meta, root, rat).map_err(|p| named(p, &name))?)
        };
        if out.entry(field.to_string()).or_default().insert(view.to_string(), figures).is_some() {
            return Err(problem(rat, format!("bitmap {name:?} named twice")));
        }
    }
    Ok(out)
}

fn named(p: FormatProblem, name: &str) -> FormatProblem {
    FormatProblem { offset: p.offset, message: format!("bitmap {name:?}: {}", p.message) }
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn le16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

/// What [`walk_leaves`] calls for each leaf: its page number and its parsed cells.
type LeafVisitor<'v> = dyn FnMut(u32, &[LeafCell<'_>]) -> Result<(), FormatProblem> + 'v;

/// Visit a bitmap's leaf pages in key order (depth first; keys ascend across leaves). The
/// visitor gets the leaf's page number and bytes. A page reached twice is an error, so a
/// looping tree ends; memory is one page and a bit per page of the file.
fn walk_leaves(
    src: &RbfSource<'_>,
    meta: Meta,
    root: u32,
    at: u64,
    visit: &mut LeafVisitor<'_>,
) -> Result<(), FormatProblem> {
    let mut seen = PageBits::with_len(u64::from(meta.page_n));
    let mut last_key: Option<u64> = None;
    let mut stack: Vec<(u32, u64, usize)> = vec![(root, at, 0)];
    let mut page = vec![0u8; PS];
    while let Some((pgno, at, depth)) = stack.pop() {
        if depth > MAX_DEPTH {
            return Err(problem(at, "RBF tree too deep"));
        }
        src.read_page(pgno, meta.page_n, at, &mut page)?;
        if seen.get(u64::from(pgno)) {
            return Err(problem(at, format!("page {pgno} referenced twice")));
        }
        seen.set(u64::from(pgno));
        let base = u64::from(pgno) * PAGE_SIZE;
        if be32(&page, 0) != pgno {
            return Err(problem(base, format!("page {pgno} carries page number {}", be32(&page, 0))));
        }
        match be32(&page, 4) {
            TYPE_BRANCH => {
                let cells = branch_cells(&page, base)?;
                // Children pushed last-first so the smallest key is visited first.
                for (_, child, cat) in cells.into_iter().rev() {
                    stack.push((child, cat, depth + 1));
                }
            }
            TYPE_LEAF => {
                let cells = leaf_cells(&page, base)?;
                if let (Some(first), Some(last)) = (cells.first(), last_key) {
                    if first.key <= last {
                        return Err(problem(base, format!("leaf page {pgno} keys do not follow the previous leaf")));
                    }
                }
                if let Some(c) = cells.last() {
                    last_key = Some(c.key);
                }
                visit(pgno, &cells)?;
            }
            f => return Err(problem(base + 4, format!("page {pgno} has flags {f}, not a tree page"))),
        }
    }
    Ok(())
}

/// A container as 1024 words. `bitmap_page` reads a bitmap cell's page.
fn container_words(
    src: &RbfSource<'_>,
    meta: Meta,
    kind: u32,
    data: &[u8],
    at: u64,
    words: &mut [u64; WORDS],
    scratch: &mut [u8],
) -> Result<(), FormatProblem> {
    words.fill(0);
    match kind {
        CT_ARRAY => {
            for v in data.chunks_exact(2) {
                let v = usize::from(le16(v, 0));
                words[v / 64] |= 1 << (v % 64);
            }
        }
        CT_RLE => {
            for r in data.chunks_exact(4) {
                let (s, l) = (usize::from(le16(r, 0)), usize::from(le16(r, 2)));
                for v in s..=l {
                    words[v / 64] |= 1 << (v % 64);
                }
            }
        }
        CT_BITMAP_PTR => {
            src.read_page(le32(data, 0), meta.page_n, at, scratch)?;
            for (w, b) in words.iter_mut().zip(scratch.chunks_exact(8)) {
                *w = u64::from_le_bytes(b.try_into().expect("8 bytes"));
            }
        }
        other => return Err(problem(at, format!("unknown container type {other}"))),
    }
    Ok(())
}

/// Bits per row of a set, mutex, bool or time view. Bits are counted, not taken from the
/// cells' counts.
fn rows_of(src: &RbfSource<'_>, meta: Meta, root: u32, at: u64) -> Result<BTreeMap<u64, u64>, FormatProblem> {
    let mut rows: BTreeMap<u64, u64> = BTreeMap::new();
    let mut scratch = vec![0u8; PS];
    walk_leaves(src, meta, root, at, &mut |pgno, cells| {
        let base = u64::from(pgno) * PAGE_SIZE;
        for c in cells {
            let bits = match c.kind {
                CT_ARRAY => c.data.len() as u64 / 2,
                CT_RLE => c.data.chunks_exact(4).map(|r| u64::from(le16(r, 2) - le16(r, 0)) + 1).sum(),
                _ => {
                    src.read_page(le32(c.data, 0), meta.page_n, base + c.at as u64 + 18, &mut scratch)?;
                    scratch
                        .chunks_exact(8)
                        .map(|b| u64::from(u64::from_le_bytes(b.try_into().expect("8")).count_ones()))
                        .sum()
                }
            };
            if c.kind != CT_ARRAY && bits != u64::from(c.bit_n) {
                return Err(problem(
                    base + c.at as u64 + 14,
                    format!("container holds {bits} bits, its cell says {}", c.bit_n),
                ));
            }
            if bits > 0 {
                *rows.entry(c.key / ROW_CONTAINERS).or_default() += bits;
            }
        }
        Ok(())
    })?;
    Ok(rows)
}

/// Count, sum, min and max of a bit-sliced view, one 65536-column slice at a time.
fn values_of(src: &RbfSource<'_>, meta: Meta, root: u32, at: u64) -> Result<StoredValues, FormatProblem> {
    // Where each container is: key → cell. Few per view (rows × 16).
    let mut cells: BTreeMap<u64, CellRef> = BTreeMap::new();
    walk_leaves(src, meta, root, at, &mut |pgno, leaf| {
        for (index, c) in leaf.iter().enumerate() {
            cells.insert(c.key, CellRef { leaf: pgno, index });
        }
        Ok(())
    })?;
    let Some(&top) = cells.keys().next_back() else { return Ok(StoredValues::default()) };
    let planes = (top / ROW_CONTAINERS).saturating_sub(1) as usize;
    if planes > MAX_PLANES {
        return Err(problem(
            u64::from(root) * PAGE_SIZE,
            format!("{planes} bit planes; a value has at most {MAX_PLANES}"),
        ));
    }
    let mut leaves: Vec<(u32, Vec<u8>)> = Vec::new();
    let mut scratch = vec![0u8; PS];
    let mut load = |key: u64, words: &mut [u64; WORDS]| -> Result<bool, FormatProblem> {
        let Some(cell) = cells.get(&key).copied() else {
            words.fill(0);
            return Ok(false);
        };
        let slot = match leaves.iter().position(|(p, _)| *p == cell.leaf) {
            Some(i) => i,
            None => {
                let mut page = vec![0u8; PS];
                src.read_page(cell.leaf, meta.page_n, u64::from(root) * PAGE_SIZE, &mut page)?;
                if leaves.len() == LEAF_CACHE {
                    leaves.remove(0);
                }
                leaves.push((cell.leaf, page));
                leaves.len() - 1
            }
        };
        let (pgno, page) = &leaves[slot];
        let base = u64::from(*pgno) * PAGE_SIZE;
        let parsed = leaf_cells(page, base)?;
        let c = &parsed[cell.index];
        container_words(src, meta, c.kind, c.data, base + c.at as u64 + 18, words, &mut scratch)?;
        Ok(true)
    };
    let mut total = StoredValues::default();
    let mut exists = Box::new([0u64; WORDS]);
    let mut sign = Box::new([0u64; WORDS]);
    let mut plane_words: Vec<Box<[u64; WORDS]>> = (0..planes).map(|_| Box::new([0u64; WORDS])).collect();
    for slice in 0..ROW_CONTAINERS {
        if !load(slice, &mut exists)? {
            continue;
        }
        load(ROW_CONTAINERS + slice, &mut sign)?;
        for (k, p) in plane_words.iter_mut().enumerate() {
            load((2 + k as u64) * ROW_CONTAINERS + slice, p)?;
        }
        total.merge(&slice_values(&exists, &sign, &plane_words));
    }
    Ok(total)
}

/// The figures of one slice: `exists`, `sign` and the magnitude planes (bit k in plane k).
fn slice_values(exists: &[u64; WORDS], sign: &[u64; WORDS], planes: &[Box<[u64; WORDS]>]) -> StoredValues {
    let mut pos = [0u64; WORDS];
    let mut neg = [0u64; WORDS];
    let mut count = 0u64;
    for w in 0..WORDS {
        pos[w] = exists[w] & !sign[w];
        neg[w] = exists[w] & sign[w];
        count += u64::from(exists[w].count_ones());
    }
    if count == 0 {
        return StoredValues::default();
    }
    let mut sum: i128 = 0;
    for (k, p) in planes.iter().enumerate() {
        let (mut up, mut down) = (0u64, 0u64);
        for w in 0..WORDS {
            up += u64::from((p[w] & pos[w]).count_ones());
            down += u64::from((p[w] & neg[w]).count_ones());
        }
        sum += (i128::from(up) - i128::from(down)) << k;
    }
    let any = |b: &[u64; WORDS]| b.iter().any(|&w| w != 0);
    let max = if any(&pos) { magnitude(&pos, planes, true) } else { -magnitude(&neg, planes, false) };
    let min = if any(&neg) { -magnitude(&neg, planes, true) } else { magnitude(&pos, planes, false) };
    StoredValues { count, sum, min: Some(min), max: Some(max) }
}

/// The largest (`largest`) or smallest magnitude among the columns set in `cands` (not
/// empty), narrowing the candidates from the highest plane down.
fn magnitude(cands: &[u64; WORDS], planes: &[Box<[u64; WORDS]>], largest: bool) -> i128 {
    let mut cands = *cands;
    let mut m: i128 = 0;
    let mut t = [0u64; WORDS];
    for (k, p) in planes.iter().enumerate().rev() {
        let mut any = false;
        for w in 0..WORDS {
            t[w] = if largest { cands[w] & p[w] } else { cands[w] & !p[w] };
            any |= t[w] != 0;
        }
        if any {
            cands = t;
            if largest {
                m |= 1 << k;
            }
        } else if !largest {
            m |= 1 << k;
        }
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::rbf::{fragment_key, write_shard};
    use std::io::{Seek, Write};

    fn figures(bitmaps: &BTreeMap<String, Vec<u64>>) -> ShardFigures {
        let mut f = tempfile::tempfile().unwrap();
        let n = write_shard(&mut f, bitmaps, 0).unwrap();
        f.flush().unwrap();
        f.rewind().unwrap();
        shard_figures(&RbfSource::new(&f, 0, n)).unwrap()
    }

    /// Bit-sliced positions of `values` (column, stored value) as upstream lays them out.
    fn bsi(values: &[(u64, i64)]) -> Vec<u64> {
        let mut bits = Vec::new();
        for &(col, v) in values {
            bits.push(col);
            if v < 0 {
                bits.push(SHARD_WIDTH + col);
            }
            let m = v.unsigned_abs();
            for k in 0..64 {
                if m >> k & 1 == 1 {
                    bits.push((2 + k) * SHARD_WIDTH + col);
                }
            }
        }
        bits
    }

    #[test]
    fn rows_are_counted_per_row_across_container_kinds() {
        let mut b = BTreeMap::new();
        // Row 0: a dense range (bitmap container), row 3: a few bits, row 7: columns in two slices.
        let mut row0: Vec<u64> = (0..5000).collect();
        row0.extend([70_000, 1_000_000]);
        let row3 = vec![3 * SHARD_WIDTH + 5, 3 * SHARD_WIDTH + 9];
        let row7 = vec![7 * SHARD_WIDTH + 1, 7 * SHARD_WIDTH + 900_000];
        b.insert(fragment_key("kind", "standard"), [row0, row3, row7].concat());
        b.insert(fragment_key("_exists", "standard"), (0..10).collect());
        let f = figures(&b);
        let ViewFigures::Rows(rows) = &f["kind"]["standard"] else { panic!("rows") };
        assert_eq!(rows.iter().map(|(r, n)| (*r, *n)).collect::<Vec<_>>(), [(0, 5002), (3, 2), (7, 2)]);
        let ViewFigures::Rows(ex) = &f["_exists"]["standard"] else { panic!("rows") };
        assert_eq!(ex.get(&0), Some(&10));
    }

    #[test]
    fn values_give_count_sum_min_max_with_negatives() {
        let vals: Vec<(u64, i64)> =
            vec![(1, -1000), (2, 0), (3, 100_000), (70_000, 7), (1_048_575, -3), (500_000, i64::MAX)];
        let mut b = BTreeMap::new();
        b.insert(fragment_key("amount", "bsig_amount"), bsi(&vals));
        let f = figures(&b);
        let ViewFigures::Values(v) = f["amount"]["bsig_amount"] else { panic!("values") };
        assert_eq!(v.count, 6);
        assert_eq!(v.sum, vals.iter().map(|&(_, x)| i128::from(x)).sum::<i128>());
        assert_eq!(v.min, Some(-1000));
        assert_eq!(v.max, Some(i128::from(i64::MAX)));
        // Only negatives: the max is the one nearest zero.
        let mut b = BTreeMap::new();
        b.insert(fragment_key("t", "bsig_t"), bsi(&[(4, -5), (9, -2), (12, -40)]));
        let ViewFigures::Values(v) = figures(&b)["t"]["bsig_t"] else { panic!("values") };
        assert_eq!((v.count, v.sum, v.min, v.max), (3, -47, Some(-40), Some(-2)));
    }

    #[test]
    fn fragment_names_split() {
        assert_eq!(parse_fragment_name("~kind;standard_2023<"), Some(("kind", "standard_2023")));
        assert_eq!(parse_fragment_name("kind;standard"), None);
    }
}
