//! The demo data set: two indexes (keyed `users`, unkeyed `events`) with shards, key
//! stores, an ID allocator and one dataframe file, deterministic (a seeded PRNG and fixed
//! timestamps), so that every run serves the same bytes.
//!
//! Key IDs follow FeatureBase's rule for partitioned key stores: key partition P hands out
//! the next ID after its largest one that falls in a shard whose shard partition is P
//! (upstream `GenerateNextPartitionedID`). Field key stores count from 1.
//!
//! Layer: leaf (imports only `schema_doc` and `store`, which are leaves too).

use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, Write};

use fb_core::format::idalloc::{IdRange, IdallocState, IndexIds};
use fb_core::format::{idalloc, rbf, translate};
use fb_core::layout::EntryPath;
use fb_core::topology::{key_partition, shard_partition, Placement};
use serde_json::{json, Value};

use crate::schema_doc::{civil, SchemaDoc, SHARD_WIDTH};
use crate::store::NodeStore;

/// The demo's keyed index.
pub const DEMO_KEYED_INDEX: &str = "users";
/// The demo's unkeyed index.
pub const DEMO_UNKEYED_INDEX: &str = "events";
/// Shards of the keyed index (0..N).
pub const DEMO_USERS_SHARDS: u64 = 4;
/// Shards of the unkeyed index (0..N).
pub const DEMO_EVENTS_SHARDS: u64 = 8;
/// The events shard that has a dataframe file.
pub const DEMO_DATAFRAME_SHARD: u64 = 0;
/// `min` of the demo's decimal field `price` (scale 2, created without bounds).
pub const DEMO_DECIMAL_MIN: &str = "-92233720368547758.08";
/// `max` of the demo's decimal field `price`.
pub const DEMO_DECIMAL_MAX: &str = "92233720368547758.07";
/// Fixed `createdAt` of the demo schema (2023-11-14T22:13:20Z in nanoseconds).
const CREATED_AT: i64 = 1_700_000_000_000_000_000;
const USERS_PER_SHARD: usize = 300;
const EVENTS_PER_SHARD: usize = 1500;
const COLORS: [&str; 6] = ["red", "orange", "yellow", "green", "blue", "violet"];
const TAGS: [&str; 10] = ["admin", "beta", "churned", "enterprise", "free", "mobile", "new", "partner", "trial", "vip"];

/// splitmix64: small, fast, and the same numbers on every platform.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator from a seed.
    pub fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

/// The next ID key partition `partition` of `index` hands out after `prev`.
pub fn next_partitioned_id(index: &str, prev: u64, partition: u32) -> u64 {
    let mut id = prev + 1;
    loop {
        if shard_partition(index, id / SHARD_WIDTH) == partition {
            return id;
        }
        id += SHARD_WIDTH;
    }
}

/// Position of (row, column) in a shard's bitmap.
pub(crate) fn pos(row: u64, column: u64) -> u64 {
    row * SHARD_WIDTH + column % SHARD_WIDTH
}

/// Write a file to the first owner with `fill`, then copy it to the other owners.
fn write_to_owners<F>(stores: &[NodeStore], owners: &[usize], entry: &EntryPath, fill: F) -> io::Result<()>
where
    F: FnOnce(&mut io::BufWriter<std::fs::File>) -> io::Result<()>,
{
    let Some((&first, rest)) = owners.split_first() else {
        return Ok(());
    };
    let src = stores[first].path(entry);
    stores[first].write_with(&src, fill)?;
    for &o in rest {
        let dst = stores[o].path(entry);
        stores[o].write_with(&dst, |w| {
            let mut f = std::fs::File::open(&src)?;
            io::copy(&mut f, w)?;
            Ok(())
        })?;
    }
    Ok(())
}

/// The demo schema as posted JSON.
fn demo_schema() -> Value {
    let t = |n: i64| CREATED_AT + n * 1_000_000_000;
    json!({"indexes": [
        {
            "name": DEMO_UNKEYED_INDEX, "createdAt": t(0), "owner": "demo",
            "options": {"keys": false, "trackExistence": true},
            "fields": [
                {"name": "amount", "createdAt": t(1), "owner": "demo",
                 "options": {"type": "int", "base": 0, "bitDepth": 17, "min": -1000, "max": 100000}},
                {"name": "flag", "createdAt": t(2), "owner": "demo", "options": {"type": "bool"}},
                {"name": "kind", "createdAt": t(3), "owner": "demo",
                 "options": {"type": "mutex", "cacheType": "ranked", "cacheSize": 50000}},
                {"name": "seen", "createdAt": t(4), "owner": "demo",
                 "options": {"type": "time", "timeQuantum": "YMD"}},
                // Created without bounds: upstream's defaults for scale 2 (`pql.MinMax(2)`,
                // printed by `Decimal.String`), spelt exactly (never through a float).
                {"name": "price", "createdAt": t(5), "owner": "demo",
                 "options": {"type": "decimal", "base": 0, "scale": 2, "bitDepth": 0,
                             "min": DEMO_DECIMAL_MIN.parse::<serde_json::Number>().ok(),
                             "max": DEMO_DECIMAL_MAX.parse::<serde_json::Number>().ok()}},
                // Upstream's defaults for a timestamp field in seconds (`OptFieldTypeTimestamp`
                // with the default epoch): MinTimestamp and MaxTimestamp in seconds.
                {"name": "at", "createdAt": t(6), "owner": "demo",
                 "options": {"type": "timestamp", "epoch": "1970-01-01T00:00:00Z", "bitDepth": 0,
                             "min": -62_135_596_799i64, "max": 253_402_300_799i64, "timeUnit": "s"}}
            ]
        },
        {
            "name": DEMO_KEYED_INDEX, "createdAt": t(10), "owner": "demo",
            "options": {"keys": true, "trackExistence": true},
            "fields": [
                {"name": "age", "createdAt": t(13), "owner": "demo",
                 "options": {"type": "int", "base": 0, "bitDepth": 0, "min": 0, "max": 150}},
                {"name": "color", "createdAt": t(11), "owner": "demo",
                 "options": {"type": "set", "keys": true, "cacheType": "ranked", "cacheSize": 50000}},
                {"name": "tags", "createdAt": t(12), "owner": "demo",
                 "options": {"type": "set", "keys": true, "cacheType": "ranked", "cacheSize": 50000}}
            ]
        }
    ]})
}

/// Generate the demo data set into the node stores; returns its schema.
pub fn seed_demo(stores: &[NodeStore], placement: &Placement, shard_bytes: u64) -> io::Result<SchemaDoc> {
    let mut schema = SchemaDoc::default();
    let mut rng = SplitMix64::new(0x0fb_c0de_5eed);
    let mut views: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();

    // events: unkeyed, IDs from the ID allocator.
    let mut max_event_id = 0;
    let day0 = 19_783; // 2024-03-01
                       // The decimal and timestamp values have their own generator, so that adding them left
                       // every other value of the demo as it was.
    let mut bsi_rng = SplitMix64::new(0xdec1_3a15);
    for shard in 0..DEMO_EVENTS_SHARDS {
        let mut cols = BTreeSet::new();
        while cols.len() < EVENTS_PER_SHARD {
            cols.insert(shard * SHARD_WIDTH + 1 + rng.below(SHARD_WIDTH - 1));
        }
        let mut bm: BTreeMap<String, Vec<u64>> = BTreeMap::new();
        let mut set = |field: &str, view: &str, p: u64| bm.entry(rbf::fragment_key(field, view)).or_default().push(p);
        for &c in &cols {
            max_event_id = max_event_id.max(c);
            set("_exists", "standard", pos(0, c));
            let amount = rng.below(101_001) as i64 - 1000;
            set("amount", "bsig_amount", pos(0, c));
            if amount < 0 {
                set("amount", "bsig_amount", pos(1, c));
            }
            for bit in 0..17 {
                if amount.unsigned_abs() >> bit & 1 == 1 {
                    set("amount", "bsig_amount", pos(2 + bit, c));
                }
            }
            // Bit-sliced like `amount` (upstream bsiGroup layout: row 0 exists, row 1 sign,
            // rows 2.. the bits of value - base; base 0 for both): `price` in cents
            // (-500.00..=4999.99), `at` in seconds within the demo's days.
            let cents = bsi_rng.below(550_000) as i64 - 50_000;
            let at = (day0 + bsi_rng.below(92) as i64) * 86_400 + bsi_rng.below(86_400) as i64;
            for (field, v) in [("price", cents), ("at", at)] {
                let view = format!("bsig_{field}");
                set(field, &view, pos(0, c));
                if v < 0 {
                    set(field, &view, pos(1, c));
                }
                for bit in 0..64 - v.unsigned_abs().leading_zeros() {
                    if v.unsigned_abs() >> bit & 1 == 1 {
                        set(field, &view, pos(2 + u64::from(bit), c));
                    }
                }
            }
            set("flag", "standard", pos(rng.below(2), c));
            set("kind", "standard", pos(rng.below(5), c));
            let row = 1 + rng.below(4);
            let (y, m, d) = civil(day0 + rng.below(92) as i64);
            for view in [
                "standard".to_string(),
                format!("standard_{y:04}"),
                format!("standard_{y:04}{m:02}"),
                format!("standard_{y:04}{m:02}{d:02}"),
            ] {
                views.entry("seen".into()).or_default().insert(view.clone());
                set("seen", &view, pos(row, c));
            }
        }
        let entry = EntryPath::Shard { index: DEMO_UNKEYED_INDEX.into(), shard };
        let owners = placement.shard_owners(DEMO_UNKEYED_INDEX, shard);
        write_to_owners(stores, &owners, &entry, |w| rbf::write_shard(w, &bm, shard_bytes).map(|_| ()))?;
    }
    for (field, v) in [
        ("amount", "bsig_amount"),
        ("flag", "standard"),
        ("kind", "standard"),
        ("price", "bsig_price"),
        ("at", "bsig_at"),
    ] {
        views.entry(field.into()).or_default().insert(v.into());
    }

    // One dataframe file, for one events shard.
    let entry = EntryPath::Dataframe { index: DEMO_UNKEYED_INDEX.into(), shard: DEMO_DATAFRAME_SHARD };
    let owners = placement.shard_owners(DEMO_UNKEYED_INDEX, DEMO_DATAFRAME_SHARD);
    let mut df_rng = rng.clone();
    write_to_owners(stores, &owners, &entry, |w| write_dataframe(w, &mut df_rng))?;
    rng.next_u64();

    // The ID allocator (on the primary): every events ID up to the largest one is committed.
    let mut ida = IdallocState::default();
    ida.indexes.insert(
        DEMO_UNKEYED_INDEX.into(),
        IndexIds {
            available: Some(vec![IdRange { first: max_event_id + 1, last: u64::MAX }]),
            reservations: BTreeMap::new(),
        },
    );
    let primary = &stores[placement.primary()];
    primary.write_with(&primary.root().join("idalloc"), |w| idalloc::write(w, &ida).map(|_| ()))?;

    // users: keyed index and keyed fields.
    let field_keys = |names: &[&str]| -> Vec<(String, u64)> {
        names.iter().enumerate().map(|(i, n)| (n.to_string(), i as u64 + 1)).collect()
    };
    for (field, names) in [("color", &COLORS[..]), ("tags", &TAGS[..])] {
        let keys = field_keys(names);
        let entry = EntryPath::FieldKeys { index: DEMO_KEYED_INDEX.into(), field: field.into() };
        let all: Vec<usize> = (0..stores.len()).collect();
        write_to_owners(stores, &all, &entry, |w| translate::write_store(w, &keys).map(|_| ()))?;
        views.entry(field.into()).or_default().insert("standard".into());
    }
    let mut partitions: BTreeMap<u32, Vec<(String, u64)>> = BTreeMap::new();
    let mut shards: BTreeMap<u64, BTreeMap<String, Vec<u64>>> = BTreeMap::new();
    let wanted: BTreeSet<u32> = (0..DEMO_USERS_SHARDS).map(|s| shard_partition(DEMO_KEYED_INDEX, s)).collect();
    let mut n = 0u64;
    while partitions.values().map(Vec::len).sum::<usize>() < USERS_PER_SHARD * wanted.len() {
        let key = format!("user-{n:06}");
        n += 1;
        let p = key_partition(DEMO_KEYED_INDEX, &key);
        if !wanted.contains(&p) {
            continue;
        }
        let keys = partitions.entry(p).or_default();
        if keys.len() >= USERS_PER_SHARD {
            continue;
        }
        let prev = keys.last().map_or(0, |k| k.1);
        let id = next_partitioned_id(DEMO_KEYED_INDEX, prev, p);
        keys.push((key, id));
        let bm = shards.entry(id / SHARD_WIDTH).or_default();
        bm.entry(rbf::fragment_key("_exists", "standard")).or_default().push(pos(0, id));
        let color = 1 + rng.below(COLORS.len() as u64);
        bm.entry(rbf::fragment_key("color", "standard")).or_default().push(pos(color, id));
        for _ in 0..rng.below(4) {
            let tag = 1 + rng.below(TAGS.len() as u64);
            bm.entry(rbf::fragment_key("tags", "standard")).or_default().push(pos(tag, id));
        }
    }
    for (p, keys) in &partitions {
        let entry = EntryPath::IndexKeys { index: DEMO_KEYED_INDEX.into(), partition: *p };
        write_to_owners(stores, &placement.partition_owners(*p), &entry, |w| {
            translate::write_store(w, keys).map(|_| ())
        })?;
    }
    for (shard, bm) in &shards {
        let entry = EntryPath::Shard { index: DEMO_KEYED_INDEX.into(), shard: *shard };
        let owners = placement.shard_owners(DEMO_KEYED_INDEX, *shard);
        write_to_owners(stores, &owners, &entry, |w| rbf::write_shard(w, bm, shard_bytes).map(|_| ()))?;
    }

    // The schema, with the views the data has.
    let mut posted = demo_schema();
    if let Some(Value::Array(indexes)) = posted.get_mut("indexes") {
        for idx in indexes {
            if let Some(Value::Array(fields)) = idx.get_mut("fields") {
                for f in fields {
                    let name = f["name"].as_str().unwrap_or_default().to_string();
                    if let Some(vs) = views.get(&name) {
                        f["views"] = Value::Array(vs.iter().map(|v| json!({ "name": v })).collect());
                    }
                }
            }
        }
    }
    schema.apply(&posted, None).map_err(|(_, e)| io::Error::new(io::ErrorKind::InvalidData, e.0))?;
    Ok(schema)
}

/// A small dataframe file. Upstream's are Arrow IPC files; this one has the Arrow file
/// magic at both ends around deterministic filler, enough for a client that checks the
/// magic, not for an Arrow reader.
fn write_dataframe<W: Write>(w: &mut W, rng: &mut SplitMix64) -> io::Result<()> {
    w.write_all(b"ARROW1\0\0")?;
    for _ in 0..(4096 / 8) {
        w.write_all(&rng.next_u64().to_le_bytes())?;
    }
    w.write_all(b"ARROW1")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitioned_ids_follow_upstream_rule() {
        // users shards 0..3 are in partitions 147, 224, 249, 70 (upstream test vectors).
        assert_eq!(next_partitioned_id("users", 0, 147), 1);
        assert_eq!(next_partitioned_id("users", 1, 147), 2);
        assert_eq!(next_partitioned_id("users", 0, 224), 1 + SHARD_WIDTH);
        assert_eq!(next_partitioned_id("users", 0, 70), 1 + 3 * SHARD_WIDTH);
        assert_eq!(next_partitioned_id("users", 5 + 3 * SHARD_WIDTH, 70), 6 + 3 * SHARD_WIDTH);
    }

    #[test]
    fn splitmix_reference() {
        // First outputs for seed 0 of the published splitmix64.
        let mut r = SplitMix64::new(0);
        assert_eq!(r.next_u64(), 0xe220_a839_7b1d_cdaf);
        assert_eq!(r.next_u64(), 0x6e78_9e6a_a1b9_65f4);
    }
}
