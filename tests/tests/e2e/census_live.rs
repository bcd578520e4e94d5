//! The census of a live cluster (`fb_core::census::live`) against real FeatureBase
//! (`FEATUREBASE_BIN`, v3.35; skipped with a message when unset): a 3-node cluster, so every
//! answer is merged from several nodes, with every field type loaded through PQL, and every
//! figure checked against what was loaded, worked out by hand.

use std::collections::BTreeMap;

use fb_core::census::{live, FieldCensus, Row, Unit};
use fb_core::client::{ClusterClient, ClusterOptions};
use fb_core::schema::Schema;
use fbkit_tests::*;

use crate::interop::curl;

const SW: u64 = 1 << 20;
/// More rows than one GroupBy page of the census (10 000), so paging by key is exercised.
const MANY: u64 = 10_005;

fn post_ok(url: &str, path: &str, body: &str) {
    let (status, text) = curl("POST", &format!("{url}{path}"), Some(body));
    assert_eq!(status, 200, "POST {path}: {text}");
}

fn ids(rows: &[(u64, u64)]) -> BTreeMap<Row, u64> {
    rows.iter().map(|&(r, n)| (Row::Id(r), n)).collect()
}

#[test]
fn live_census_answers_what_was_loaded() {
    let Some(bin) = featurebase_bin() else { return };
    let cluster = real_cluster(&bin, "census", 3, 1);
    let url = cluster.url();
    post_ok(url, "/index/cz", r#"{"options":{"trackExistence":true}}"#);
    for (field, options) in [
        ("s", r#"{"options":{"type":"set"}}"#),
        ("ks", r#"{"options":{"type":"set","keys":true}}"#),
        ("kmany", r#"{"options":{"type":"set","keys":true}}"#),
        ("m", r#"{"options":{"type":"mutex"}}"#),
        ("b", r#"{"options":{"type":"bool"}}"#),
        ("i", r#"{"options":{"type":"int","min":-1000,"max":1000}}"#),
        ("d", r#"{"options":{"type":"decimal","scale":2}}"#),
        ("ts", r#"{"options":{"type":"timestamp","timeUnit":"ms"}}"#),
        ("t", r#"{"options":{"type":"time","timeQuantum":"YMD"}}"#),
        ("tn", r#"{"options":{"type":"time","timeQuantum":"YMDH","noStandardView":true}}"#),
        ("big", r#"{"options":{"type":"int"}}"#),
        ("e", r#"{"options":{"type":"int"}}"#),
    ] {
        post_ok(url, &format!("/index/cz/field/{field}"), options);
    }
    post_ok(url, "/index/kz", r#"{"options":{"keys":true,"trackExistence":false}}"#);
    post_ok(url, "/index/kz/field/f", "");
    post_ok(url, "/index/kz/query", r#"Set("a", f=1) Set("b", f=1)"#);

    // Six records in six shards, spread over the three nodes.
    let c: Vec<u64> = (0..6).map(|s| s * SW + s + 1).collect();
    let q = format!(
        "Set({0}, s=1) Set({1}, s=1) Set({2}, s=1) Set({3}, s=2) Set({4}, s=1) Set({5}, s=3) \
         Set({0}, ks=\"paris\") Set({1}, ks=\"paris\") Set({2}, ks=\"oslo\") Set({5}, ks=\"paris\") Set({5}, ks=\"oslo\") \
         Set({0}, m=3) Set({1}, m=3) Set({2}, m=4) Set({0}, m=4) \
         Set({0}, b=true) Set({1}, b=false) Set({2}, b=true) Set({3}, b=true) \
         Set({0}, i=-5) Set({1}, i=7) Set({2}, i=-100) Set({3}, i=1000) Set({4}, i=-1000) Set({1}, i=8) \
         Set({0}, d=1.25) Set({1}, d=-0.05) Set({4}, d=3) \
         Set({0}, ts=\"2023-01-05T10:00:00.123Z\") Set({1}, ts=\"1969-12-31T23:59:59.999Z\") Set({3}, ts=\"2000-02-29T00:00:00Z\") \
         Set({0}, t=5, 2023-01-05T10:00) Set({1}, t=5, 2023-02-01T00:00) Set({2}, t=6, 2022-12-31T23:00) \
         Set({3}, t=5, 2023-01-05T01:00) Set({4}, t=5, 2023-01-06T00:00) \
         Set({0}, tn=1, 2023-01-05T10:00) Set({1}, tn=1, 2023-01-05T11:00) Set({2}, tn=2, 2023-01-05T10:00) \
         Set({0}, big=9223372036854775807) Set({1}, big=9223372036854775806) Set({2}, big=5)",
        c[0], c[1], c[2], c[3], c[4], c[5]
    );
    post_ok(url, "/index/cz/query", &q);
    // One key per record of shard 6, one bit each.
    for from in (0..MANY).step_by(2000) {
        let q: String =
            (from..MANY.min(from + 2000)).map(|r| format!("Set({}, kmany=\"k{r:05}\") ", 6 * SW + r)).collect();
        post_ok(url, "/index/cz/query", &q);
    }

    let (status, schema) = curl("GET", &format!("{url}/schema"), None);
    assert_eq!(status, 200, "GET /schema: {schema}");
    let schema = Schema::parse(schema.as_bytes()).expect("the cluster's schema");
    let opts = ClusterOptions { host: url.to_string(), concurrency: 2, ..Default::default() };
    let client = ClusterClient::new(&opts, fb_core::events::silent()).expect("client");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let census = rt.block_on(live::census(&client, &schema)).unwrap_or_else(|e| panic!("census: {e:?}"));
    eprintln!("{}", census.render(5));

    let kz = &census.indexes["kz"];
    assert_eq!(kz.records, None, "kz does not track existence");
    assert_eq!(kz.keys, None);
    assert!(kz.keys_unknown.is_some());
    let cz = &census.indexes["cz"];
    assert_eq!(cz.records, Some(6 + MANY));
    assert_eq!((cz.keys, cz.keys_unknown.as_deref()), (None, None), "cz is not keyed");

    let rows = |field: &str| match &cz.fields[field] {
        FieldCensus::Rows(r) => r.views.clone(),
        other => panic!("{field}: {other:?}"),
    };
    let standard = |views: &[(&str, BTreeMap<Row, u64>)]| -> BTreeMap<String, BTreeMap<Row, u64>> {
        views.iter().map(|(v, rows)| (v.to_string(), rows.clone())).collect()
    };
    assert_eq!(rows("s"), standard(&[("standard", ids(&[(1, 4), (2, 1), (3, 1)]))]));
    let keys = BTreeMap::from([(Row::Key("paris".into()), 3), (Row::Key("oslo".into()), 2)]);
    assert_eq!(rows("ks"), standard(&[("standard", keys)]));
    assert_eq!(rows("m"), standard(&[("standard", ids(&[(3, 1), (4, 2)]))]));
    assert_eq!(rows("b"), standard(&[("standard", ids(&[(0, 1), (1, 3)]))]));
    let many = rows("kmany");
    let many = &many["standard"];
    assert_eq!(many.len() as u64, MANY, "every row of a field with more rows than a page");
    assert!(many.iter().all(|(r, &n)| matches!(r, Row::Key(k) if k.starts_with('k')) && n == 1));
    assert_eq!(
        rows("t"),
        standard(&[
            ("standard", ids(&[(5, 4), (6, 1)])),
            ("standard_2022", ids(&[(6, 1)])),
            ("standard_202212", ids(&[(6, 1)])),
            ("standard_20221231", ids(&[(6, 1)])),
            ("standard_2023", ids(&[(5, 4)])),
            ("standard_202301", ids(&[(5, 3)])),
            ("standard_20230105", ids(&[(5, 2)])),
            ("standard_20230106", ids(&[(5, 1)])),
            ("standard_202302", ids(&[(5, 1)])),
            ("standard_20230201", ids(&[(5, 1)])),
        ])
    );
    assert_eq!(
        rows("tn"),
        standard(&[
            ("standard_2023", ids(&[(1, 2), (2, 1)])),
            ("standard_202301", ids(&[(1, 2), (2, 1)])),
            ("standard_20230105", ids(&[(1, 2), (2, 1)])),
            ("standard_2023010510", ids(&[(1, 1), (2, 1)])),
            ("standard_2023010511", ids(&[(1, 1)])),
        ])
    );

    let values = |field: &str| match &cz.fields[field] {
        FieldCensus::Values(v) => (v.unit, v.count, v.sum, v.min, v.max),
        other => panic!("{field}: {other:?}"),
    };
    assert_eq!(values("i"), (Unit::Int, 5, -97, Some(-1000), Some(1000)));
    assert_eq!(values("d"), (Unit::Decimal { scale: 2 }, 3, 420, Some(-5), Some(300)));
    let ms = Unit::Timestamp { nanos_per_unit: 1_000_000 };
    assert_eq!(values("ts"), (ms, 3, 1_672_912_800_123 - 1 + 951_782_400_000, Some(-1), Some(1_672_912_800_123)));
    // Upstream's Sum wraps at 2^64 (it answers 2 here); the census recovers the exact sum.
    let max = i128::from(i64::MAX);
    assert_eq!(values("big"), (Unit::Int, 3, max + (max - 1) + 5, Some(5), Some(max)));
    assert_eq!(values("e"), (Unit::Int, 0, 0, None, None));
}
