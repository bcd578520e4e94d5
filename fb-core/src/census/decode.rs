//! Decoding a shard's RBF file into census figures.

/// Columns per shard (upstream's `ShardWidth`, 2^20; every index's `shardWidth` in the schema).
pub const SHARD_WIDTH: u64 = 1 << 20;
