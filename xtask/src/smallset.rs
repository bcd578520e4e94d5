//! The small-shard data set of the benchmarks: many tiny shards over two unkeyed indexes
//! plus a keyed index (its 256 key partitions and a keyed field), written as an extracted
//! backup directory that `fb-devcluster --seed-from` serves. A restore of it is mostly
//! per-request cost (owners, headers, the server opening and committing each file), not
//! bytes: what a backup of a cluster with many sparse shards looks like.
//!
//! Deterministic: the same shard count gives the same files.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::BufWriter;
use std::path::Path;

use anyhow::{ensure, Result};
use fb_core::format::idalloc::{IdRange, IdallocState, IndexIds};
use fb_core::format::{idalloc, rbf, translate};
use fb_core::layout::{EntryPath, PARTITION_N};
use fb_core::topology::key_partition;
use fb_devcluster::data::{next_partitioned_id, SplitMix64};
use serde_json::json;

/// The two unkeyed indexes.
pub const UNKEYED: [&str; 2] = ["clicks", "visits"];
/// The keyed index.
pub const KEYED: &str = "accounts";
/// Columns set in each unkeyed shard.
const COLUMNS_PER_SHARD: u64 = 16;
/// Keys per key partition of the keyed index.
const KEYS_PER_PARTITION: usize = 2;
/// Keys of the keyed field.
const PLANS: [&str; 3] = ["free", "pro", "team"];
const SHARD_WIDTH: u64 = 1 << 20;
/// A fixed `createdAt` (nanoseconds), so the schema is the same every run.
const CREATED_AT: i64 = 1_700_000_000_000_000_000;

/// What was written.
pub struct SmallSet {
    /// Shard files (every index).
    pub shards: usize,
    /// Every file, schema and idalloc included.
    pub files: usize,
}

/// Write the set into `dir` (made; must not exist): `unkeyed_shards` shards in each
/// unkeyed index, and the keyed index's 256 key partitions with their shards (one per key
/// partition, by upstream's partitioned ID rule).
pub fn write(dir: &Path, unkeyed_shards: u64) -> Result<SmallSet> {
    ensure!(!dir.exists(), "{} exists already", dir.display());
    fs::create_dir_all(dir)?;
    let mut rng = SplitMix64::new(0x5a11_5ead);
    let mut files = 0usize;
    let mut shards = 0usize;
    let mut put = |entry: &EntryPath, fill: &mut dyn FnMut(&mut BufWriter<File>) -> std::io::Result<u64>| {
        let path = dir.join(entry.to_string());
        fs::create_dir_all(path.parent().expect("entry paths have a parent"))?;
        let mut w = BufWriter::new(File::create(&path)?);
        fill(&mut w)?;
        w.into_inner().map_err(|e| e.into_error())?;
        files += 1;
        anyhow::Ok(())
    };
    let mut idalloc_state = IdallocState::default();
    for index in UNKEYED {
        for shard in 0..unkeyed_shards {
            let mut bm: BTreeMap<String, Vec<u64>> = BTreeMap::new();
            for _ in 0..COLUMNS_PER_SHARD {
                let col = shard * SHARD_WIDTH + rng.below(SHARD_WIDTH);
                bm.entry(rbf::fragment_key("_exists", "standard")).or_default().push(col % SHARD_WIDTH);
                let row = rng.below(4);
                bm.entry(rbf::fragment_key("kind", "standard"))
                    .or_default()
                    .push(row * SHARD_WIDTH + col % SHARD_WIDTH);
            }
            put(&EntryPath::Shard { index: index.into(), shard }, &mut |w| rbf::write_shard(w, &bm, 0))?;
            shards += 1;
        }
        idalloc_state.indexes.insert(
            index.into(),
            IndexIds {
                available: Some(vec![IdRange { first: unkeyed_shards * SHARD_WIDTH, last: u64::MAX }]),
                reservations: BTreeMap::new(),
            },
        );
    }
    put(&EntryPath::Idalloc, &mut |w| idalloc::write(w, &idalloc_state))?;

    // The keyed index: KEYS_PER_PARTITION keys in every key partition, IDs as upstream
    // hands them out, so each partition's keys land in a shard of that partition.
    let mut partitions: BTreeMap<u32, Vec<(String, u64)>> = BTreeMap::new();
    let mut n = 0u64;
    while partitions.len() < PARTITION_N as usize || partitions.values().any(|k| k.len() < KEYS_PER_PARTITION) {
        let key = format!("acct-{n:06}");
        n += 1;
        let p = key_partition(KEYED, &key);
        let keys = partitions.entry(p).or_default();
        if keys.len() >= KEYS_PER_PARTITION {
            continue;
        }
        let id = next_partitioned_id(KEYED, keys.last().map_or(0, |k| k.1), p);
        keys.push((key, id));
    }
    let mut keyed_shards: BTreeMap<u64, BTreeMap<String, Vec<u64>>> = BTreeMap::new();
    for keys in partitions.values() {
        for (_, id) in keys {
            let bm = keyed_shards.entry(id / SHARD_WIDTH).or_default();
            bm.entry(rbf::fragment_key("_exists", "standard")).or_default().push(id % SHARD_WIDTH);
            let plan = 1 + rng.below(PLANS.len() as u64);
            bm.entry(rbf::fragment_key("plan", "standard")).or_default().push(plan * SHARD_WIDTH + id % SHARD_WIDTH);
        }
    }
    for (shard, bm) in &keyed_shards {
        put(&EntryPath::Shard { index: KEYED.into(), shard: *shard }, &mut |w| rbf::write_shard(w, bm, 0))?;
        shards += 1;
    }
    for (p, keys) in &partitions {
        put(&EntryPath::IndexKeys { index: KEYED.into(), partition: *p }, &mut |w| translate::write_store(w, keys))?;
    }
    let plans: Vec<(String, u64)> = PLANS.iter().enumerate().map(|(i, p)| (p.to_string(), i as u64 + 1)).collect();
    put(&EntryPath::FieldKeys { index: KEYED.into(), field: "plan".into() }, &mut |w| {
        translate::write_store(w, &plans)
    })?;

    let field = |name: &str, at: i64, options: serde_json::Value| {
        json!({"name": name, "createdAt": CREATED_AT + at, "owner": "bench", "options": options,
               "views": [{"name": "standard"}]})
    };
    let set = json!({"type": "set", "cacheType": "ranked", "cacheSize": 50000});
    let keyed_set = json!({"type": "set", "keys": true, "cacheType": "ranked", "cacheSize": 50000});
    let mut indexes: Vec<serde_json::Value> = UNKEYED
        .iter()
        .enumerate()
        .map(|(i, name)| {
            json!({"name": name, "createdAt": CREATED_AT + 10 * i as i64, "owner": "bench",
                   "options": {"keys": false, "trackExistence": true},
                   "fields": [field("kind", 10 * i as i64 + 1, set.clone())]})
        })
        .collect();
    indexes.push(json!({"name": KEYED, "createdAt": CREATED_AT + 100, "owner": "bench",
                        "options": {"keys": true, "trackExistence": true},
                        "fields": [field("plan", 101, keyed_set)]}));
    let schema = serde_json::to_vec(&json!({ "indexes": indexes }))?;
    put(&EntryPath::Schema, &mut |w| {
        use std::io::Write;
        w.write_all(&schema)?;
        Ok(schema.len() as u64)
    })?;
    Ok(SmallSet { shards, files })
}
