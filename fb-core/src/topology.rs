//! Cluster topology: the node JSON of `/status`, and how FeatureBase places shards and key
//! partitions on nodes (FNV-1a 64 partitioning, jump consistent hashing, replica ring).
//!
//! Clients ask the cluster who owns what (`/internal/fragment/nodes`, ...); these functions
//! are what the test cluster answers with, and what tests check the answers against.

use serde::{Deserialize, Serialize};

use crate::layout::PARTITION_N;

/// A node's HTTP address as `/status` reports it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct NodeUri {
    /// `http` or `https`.
    pub scheme: String,
    /// Host name or address.
    pub host: String,
    /// TCP port.
    pub port: u16,
}

impl NodeUri {
    /// `scheme://host:port`, the base URL of the node.
    pub fn base_url(&self) -> String {
        if self.host.contains(':') && !self.host.starts_with('[') {
            format!("{}://[{}]:{}", self.scheme, self.host, self.port)
        } else {
            format!("{}://{}:{}", self.scheme, self.host, self.port)
        }
    }

    /// `host:port`, as used to compare a redirect target with the node list.
    pub fn authority(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

/// A cluster node as FeatureBase's JSON describes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Node {
    /// Node ID; nodes are ordered by it.
    pub id: String,
    /// HTTP address.
    pub uri: NodeUri,
    /// gRPC address (reported, unused by fbkit).
    #[serde(rename = "grpc-uri", default, skip_serializing_if = "Option::is_none")]
    pub grpc_uri: Option<NodeUri>,
    /// Whether this node is the cluster's primary.
    #[serde(rename = "isPrimary", default)]
    pub is_primary: bool,
    /// `STARTED`, `DOWN`, ...
    #[serde(default)]
    pub state: String,
}

/// The answer of `GET /status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterStatus {
    /// `NORMAL`, `DEGRADED`, `DOWN`, `STARTING`, ...
    pub state: String,
    /// Every node of the cluster.
    pub nodes: Vec<Node>,
    /// ID of the node that answered.
    #[serde(rename = "localID", default)]
    pub local_id: String,
    /// Name of the cluster.
    #[serde(rename = "clusterName", default)]
    pub cluster_name: String,
}

/// FNV-1a, 64 bit.
pub fn fnv1a64(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for b in *part {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    h
}

/// The partition a shard of an index belongs to.
pub fn shard_partition(index: &str, shard: u64) -> u32 {
    (fnv1a64(&[index.as_bytes(), &shard.to_be_bytes()]) % u64::from(PARTITION_N)) as u32
}

/// The key partition a record key of an index belongs to.
pub fn key_partition(index: &str, key: &str) -> u32 {
    (fnv1a64(&[index.as_bytes(), key.as_bytes()]) % u64::from(PARTITION_N)) as u32
}

/// Lamping–Veach jump consistent hash: a bucket in `0..buckets` for `key`.
pub fn jump_hash(mut key: u64, buckets: usize) -> usize {
    let (mut b, mut j): (i64, i64) = (-1, 0);
    while j < buckets as i64 {
        b = j;
        key = key.wrapping_mul(2_862_933_555_777_941_757).wrapping_add(1);
        j = ((b + 1) as f64 * ((1u64 << 31) as f64 / ((key >> 33) + 1) as f64)) as i64;
    }
    b.max(0) as usize
}

/// Shard and partition placement over an ordered node list.
#[derive(Debug, Clone)]
pub struct Placement {
    nodes: usize,
    replicas: usize,
}

impl Placement {
    /// Placement over `nodes` nodes (ordered by ID) with `replicas` copies of each
    /// partition, capped at the node count.
    pub fn new(nodes: usize, replicas: usize) -> Self {
        Placement { nodes, replicas: replicas.clamp(1, nodes.max(1)) }
    }

    /// The effective replica count.
    pub fn replicas(&self) -> usize {
        self.replicas
    }

    /// Positions (in ID order) of the owners of a partition, primary owner first.
    pub fn partition_owners(&self, partition: u32) -> Vec<usize> {
        if self.nodes == 0 {
            return Vec::new();
        }
        let first = jump_hash(u64::from(partition), self.nodes);
        (0..self.replicas).map(|i| (first + i) % self.nodes).collect()
    }

    /// Positions of the owners of a shard, primary owner first.
    pub fn shard_owners(&self, index: &str, shard: u64) -> Vec<usize> {
        self.partition_owners(shard_partition(index, shard))
    }

    /// Position of the cluster's primary node (the primary owner of partition 0).
    pub fn primary(&self) -> usize {
        jump_hash(0, self.nodes.max(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv_reference_values() {
        assert_eq!(fnv1a64(&[b""]), 0xcbf29ce484222325);
        assert_eq!(fnv1a64(&[b"a"]), 0xaf63dc4c8601ec8c);
        assert_eq!(fnv1a64(&[b"foo", b"bar"]), fnv1a64(&[b"foobar"]));
    }

    #[test]
    fn jump_hash_reference_values() {
        // Values from the published algorithm (Lamping & Veach, and the Go reference).
        assert_eq!(jump_hash(0, 1), 0);
        for key in 0..200u64 {
            let b = jump_hash(key, 7);
            assert!(b < 7);
            // Monotonic property: growing the bucket count moves a key only to the new bucket.
            let b8 = jump_hash(key, 8);
            assert!(b8 == b || b8 == 7, "key {key}: {b} -> {b8}");
        }
    }

    #[test]
    fn owners_are_distinct_and_capped() {
        let p = Placement::new(3, 5);
        assert_eq!(p.replicas(), 3);
        for part in 0..PARTITION_N {
            let o = p.partition_owners(part);
            assert_eq!(o.len(), 3);
            let mut s = o.clone();
            s.sort();
            s.dedup();
            assert_eq!(s.len(), 3);
        }
    }
}
