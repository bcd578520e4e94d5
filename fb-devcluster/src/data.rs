//! The public paths of the demo data set and the empty files, kept from when both lived
//! here with the churn job (now `demo`, `placeholder` and `churn`).
//!
//! Layer: leaf (re-exports only).

pub use crate::demo::{
    next_partitioned_id, seed_demo, SplitMix64, DEMO_DATAFRAME_SHARD, DEMO_DECIMAL_MAX, DEMO_DECIMAL_MIN,
    DEMO_EVENTS_SHARDS, DEMO_KEYED_INDEX, DEMO_UNKEYED_INDEX, DEMO_USERS_SHARDS,
};
pub use crate::placeholder::{empty_idalloc, empty_key_store, empty_shard};
