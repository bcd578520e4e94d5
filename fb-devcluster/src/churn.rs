//! The churn job (the `churn` fault): it keeps changing the cluster's data while a backup
//! runs, one step at a time, in FeatureBase's order. Its thread and counters are
//! `churn_control`'s, kept in the cluster state so that clearing the faults stops it.
//!
//! Layer: churn, above `cluster` and the leaves (`demo`, `fault`, `schema_doc`, `store`).

use std::collections::BTreeMap;
use std::io;
use std::path::Path;
use std::sync::Arc;

use fb_core::format::idalloc::{IdRange, IdallocState};
use fb_core::format::{idalloc, rbf, translate};
use fb_core::layout::EntryPath;
use fb_core::topology::{key_partition, shard_partition};
use serde_json::Value;

use crate::cluster::Cluster;
use crate::demo::{next_partitioned_id, pos};
use crate::fault::{FaultKind, FaultSpec, FaultSpecError};
use crate::schema_doc::SHARD_WIDTH;
use crate::store::NodeStore;

/// Install a fault: churn starts its job (replacing a running one), every other kind goes
/// into the fault table.
pub(crate) fn add_fault(cluster: &Arc<Cluster>, spec: FaultSpec) -> Result<(), FaultSpecError> {
    spec.check_node(cluster.nodes.len())?;
    match spec.kind {
        FaultKind::Churn { steps, interval_ms } => {
            start(cluster, steps, interval_ms);
            Ok(())
        }
        _ => cluster.install_fault(spec),
    }
}

/// Start a churn job of `steps` steps, `interval_ms` apart (replacing a running one).
fn start(cluster: &Arc<Cluster>, steps: u64, interval_ms: u64) {
    let c = cluster.clone();
    cluster.churn.start(format!("churn:{steps}:{interval_ms}"), steps, interval_ms, move || {
        let mut churner = Churner::new(c);
        move || churner.step()
    });
}

/// Read a file of node `node` whole (for the small files churn rewrites).
fn read_opt(path: &Path) -> io::Result<Option<Vec<u8>>> {
    match std::fs::read(path) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

fn bad_data(e: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e.to_string())
}

/// An index churn writes to, and the bitmap it sets for each new column.
struct ChurnTarget {
    index: String,
    keyed: bool,
    bitmap: String,
    row: u64,
}

/// Changes the cluster one step at a time, in FeatureBase's order: first the ID (a key
/// translation, or an ID allocator commit), then the shard bits that use it. A backup that
/// fetches shard data before key translation and the ID allocator therefore always finds a
/// translation for every key ID, and an allocator bound above every ID, in what it fetched.
pub(crate) struct Churner {
    cluster: Arc<Cluster>,
    targets: Vec<ChurnTarget>,
    shards: BTreeMap<(String, u64), BTreeMap<String, Vec<u64>>>,
    step: u64,
}

impl Churner {
    pub(crate) fn new(cluster: Arc<Cluster>) -> Churner {
        let mut targets = Vec::new();
        for idx in cluster.schema().indexes() {
            let name = idx["name"].as_str().unwrap_or_default().to_string();
            let keyed = idx.pointer("/options/keys").and_then(Value::as_bool).unwrap_or(false);
            let exists = idx.pointer("/options/trackExistence").and_then(Value::as_bool).unwrap_or(false);
            let plain_set = idx["fields"].as_array().and_then(|fs| {
                fs.iter().find(|f| {
                    matches!(f.pointer("/options/type").and_then(Value::as_str), Some("set" | "mutex" | ""))
                        && !f.pointer("/options/keys").and_then(Value::as_bool).unwrap_or(false)
                })
            });
            let (bitmap, row) = if exists {
                (rbf::fragment_key("_exists", "standard"), 0)
            } else if let Some(f) = plain_set {
                (rbf::fragment_key(f["name"].as_str().unwrap_or_default(), "standard"), 1)
            } else {
                continue;
            };
            targets.push(ChurnTarget { index: name, keyed, bitmap, row });
        }
        Churner { cluster, targets, shards: BTreeMap::new(), step: 0 }
    }

    /// One step: a new column in one of the indexes. Returns false when there is nothing
    /// to change (no index).
    pub(crate) fn step(&mut self) -> io::Result<bool> {
        if self.targets.is_empty() {
            return Ok(false);
        }
        let t = (self.step as usize) % self.targets.len();
        self.step += 1;
        let ids = if self.targets[t].keyed { vec![self.new_key(t)?] } else { self.commit_ids(t, 3)? };
        let mut by_shard: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
        for id in ids {
            by_shard.entry(id / SHARD_WIDTH).or_default().push(id);
        }
        for (shard, ids) in by_shard {
            self.set_bits(t, shard, &ids)?;
        }
        Ok(true)
    }

    /// Create a key in a key partition that allocates IDs in an existing shard (or any
    /// partition when the index has no shard), on every owner of the partition.
    fn new_key(&mut self, t: usize) -> io::Result<u64> {
        let c = self.cluster.clone();
        let index = self.targets[t].index.clone();
        let mut shards: Vec<u64> = c.nodes.iter().flat_map(|n| n.store.shards(&index)).collect();
        shards.sort_unstable();
        shards.dedup();
        let partition = match shards.get((self.step as usize / self.targets.len()) % shards.len().max(1)) {
            Some(&s) => shard_partition(&index, s),
            None => shard_partition(&index, 0),
        };
        let entry = EntryPath::IndexKeys { index: index.clone(), partition };
        let owners = c.partition_owners(partition);
        let mut keys = match read_opt(&c.nodes[owners[0]].store.path(&entry))? {
            Some(bytes) => translate::read_store(&bytes).map_err(bad_data)?,
            None => Vec::new(),
        };
        let mut n = self.step;
        let key = loop {
            let k = format!("churn-{n:08}");
            n += 1;
            if key_partition(&index, &k) == partition && !keys.iter().any(|(have, _)| *have == k) {
                break k;
            }
        };
        let prev = keys.iter().map(|k| k.1).max().unwrap_or(0);
        let id = next_partitioned_id(&index, prev, partition);
        keys.push((key, id));
        let stores: Vec<NodeStore> = c.nodes.iter().map(|n| n.store.clone()).collect();
        for o in owners {
            let path = stores[o].path(&entry);
            stores[o].write_with(&path, |w| translate::write_store(w, &keys).map(|_| ()))?;
        }
        Ok(id)
    }

    /// Commit `n` IDs of an unkeyed index in the primary's ID allocator.
    fn commit_ids(&mut self, t: usize, n: u64) -> io::Result<Vec<u64>> {
        let c = self.cluster.clone();
        let index = &self.targets[t].index;
        let store = &c.nodes[c.primary()].store;
        let path = store.root().join("idalloc");
        let mut state = match read_opt(&path)? {
            Some(bytes) => idalloc::read(&bytes).map_err(bad_data)?,
            None => IdallocState::default(),
        };
        let first = state.committed_upper_bound(index).max(1);
        if first == u64::MAX {
            return Ok(Vec::new());
        }
        let entry = state.indexes.entry(index.clone()).or_default();
        let ranges = entry.available.get_or_insert_with(Vec::new);
        ranges.retain(|r| r.last != u64::MAX);
        ranges.push(IdRange { first: first + n, last: u64::MAX });
        store.write_with(&path, |w| idalloc::write(w, &state).map(|_| ()))?;
        Ok((first..first + n).collect())
    }

    /// Set the target bit of columns `ids` (all in `shard`) on every owner of the shard.
    fn set_bits(&mut self, t: usize, shard: u64, ids: &[u64]) -> io::Result<()> {
        let c = self.cluster.clone();
        let target = &self.targets[t];
        let entry = EntryPath::Shard { index: target.index.clone(), shard };
        let owners = c.shard_owners(&target.index, shard);
        let key = (target.index.clone(), shard);
        if !self.shards.contains_key(&key) {
            let mut bitmaps = BTreeMap::new();
            for &o in &owners {
                if let Some(bytes) = read_opt(&c.nodes[o].store.path(&entry))? {
                    bitmaps = rbf::read_bitmaps(&bytes).map_err(bad_data)?;
                    break;
                }
            }
            self.shards.insert(key.clone(), bitmaps);
        }
        let bitmaps = self.shards.get_mut(&key).expect("just inserted");
        let bits = bitmaps.entry(target.bitmap.clone()).or_default();
        bits.extend(ids.iter().map(|&id| pos(target.row, id)));
        for o in owners {
            let store = &c.nodes[o].store;
            store.write_with(&store.path(&entry), |w| rbf::write_shard(w, bitmaps, 0).map(|_| ()))?;
        }
        Ok(())
    }
}
