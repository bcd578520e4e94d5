//! Integration tests: real clusters on 127.0.0.1 (port 0), asked over HTTP(S) the way
//! fbkit's tools and upstream's backup/restore ask them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fb_core::format::{idalloc, rbf, translate};
use fb_core::topology::{key_partition, shard_partition, ClusterStatus, Node, Placement};
use fb_devcluster::{spawn, ClusterConfig, Dataframes, RunningCluster};
use reqwest::header::{HeaderMap, ACCEPT, AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, LOCATION, TRANSFER_ENCODING};
use reqwest::StatusCode;
use serde_json::Value;

const SHARD_WIDTH: u64 = 1 << 20;

fn init_crypto() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

fn client() -> reqwest::Client {
    init_crypto();
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
}

fn demo(nodes: usize, replicas: usize) -> RunningCluster {
    spawn(ClusterConfig { nodes, replicas, demo: true, ..Default::default() }).unwrap()
}

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    fn header(&self, name: impl reqwest::header::AsHeaderName) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
    fn chunked(&self) -> bool {
        self.header(TRANSFER_ENCODING) == Some("chunked") && self.header(CONTENT_LENGTH).is_none()
    }
}

async fn send(req: reqwest::RequestBuilder) -> Answer {
    let resp = req.send().await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = resp.bytes().await.unwrap().to_vec();
    Answer { status, headers, body }
}

async fn get(c: &reqwest::Client, url: String) -> Answer {
    send(c.get(url).header(ACCEPT, "application/json")).await
}

async fn get_bin(c: &reqwest::Client, url: String) -> Answer {
    send(c.get(url).header(ACCEPT, "application/octet-stream")).await
}

fn owners(nodes: &[Node]) -> Vec<u16> {
    nodes.iter().map(|n| n.uri.port).collect()
}

fn port(url: &str) -> u16 {
    url.rsplit(':').next().unwrap().parse().unwrap()
}

// ---------------------------------------------------------------------------------------
// Topology and JSON endpoints

#[tokio::test]
async fn status_and_nodes_have_upstream_shape() {
    let cl = demo(3, 2);
    let c = client();
    let urls = cl.urls();
    for (i, url) in urls.iter().enumerate() {
        let a = get(&c, format!("{url}/status")).await;
        assert_eq!(a.status, 200);
        assert_eq!(a.header(CONTENT_TYPE), Some("application/json"));
        assert!(a.header(CONTENT_LENGTH).is_some(), "small JSON answers carry a Content-Length");
        let text = a.text();
        assert!(text.starts_with(r#"{"state":"NORMAL","nodes":[{"id":""#), "{text}");
        assert!(text.ends_with("\"clusterName\":\"cluster0\"}\n"), "{text}");
        let st: ClusterStatus = serde_json::from_slice(&a.body).unwrap();
        assert_eq!(st.local_id, cl.node_ids()[i]);
        assert_eq!(st.nodes.len(), 3);
        let ids: Vec<_> = st.nodes.iter().map(|n| n.id.clone()).collect();
        let mut sorted = ids.clone();
        sorted.sort();
        assert_eq!(ids, sorted, "nodes are listed in ID order");
        assert_eq!(owners(&st.nodes), urls.iter().map(|u| port(u)).collect::<Vec<_>>());
        assert!(st.nodes[0].is_primary && !st.nodes[1].is_primary && !st.nodes[2].is_primary);
        assert!(st.nodes.iter().all(|n| n.state == "STARTED" && n.uri.scheme == "http"));
        // Field order of a node: id, uri, grpc-uri, isPrimary, state.
        let first = &text[text.find("[{").unwrap()..];
        let order: Vec<usize> = ["\"id\"", "\"uri\"", "\"grpc-uri\"", "\"isPrimary\"", "\"state\""]
            .iter()
            .map(|k| first.find(k).unwrap())
            .collect();
        assert!(order.windows(2).all(|w| w[0] < w[1]), "{first}");
    }
    let a = get(&c, format!("{}/internal/nodes", urls[1])).await;
    assert_eq!(a.status, 200);
    let nodes: Vec<Node> = serde_json::from_slice(&a.body).unwrap();
    assert_eq!(nodes.len(), 3);
    assert!(nodes[0].is_primary);
    // 406 without JSON in Accept; no Accept at all passes.
    for path in ["/status", "/internal/nodes", "/schema", "/internal/index/users/shards", "/version"] {
        let a = send(c.get(format!("{}{path}", urls[0])).header(ACCEPT, "text/plain")).await;
        assert_eq!(a.status, 406, "{path}");
        assert_eq!(a.text(), "JSON only acceptable response\n");
        assert_eq!(a.header(CONTENT_TYPE), Some("text/plain; charset=utf-8"));
        let a = send(c.get(format!("{}{path}", urls[0]))).await;
        assert_eq!(a.status, 200, "{path}");
    }
    // Query arguments are checked first: unknown ones are refused, as JSON when JSON is fine.
    let a = get(&c, format!("{}/status?verbose=1", urls[0])).await;
    assert_eq!(a.status, 400);
    assert_eq!(a.text(), "{\"error\":\"verbose is not a valid argument\"}\n");
    let a = send(c.get(format!("{}/internal/nodes?x=1", urls[0])).header(ACCEPT, "text/plain")).await;
    assert_eq!((a.status.as_u16(), a.text().as_str()), (400, "x is not a valid argument\n"));
    // Unknown path and wrong method.
    let a = get(&c, format!("{}/nope", urls[0])).await;
    assert_eq!((a.status.as_u16(), a.text().as_str()), (404, "404 page not found\n"));
    let a = send(c.delete(format!("{}/status", urls[0]))).await;
    assert_eq!(a.status, 405);
    let a = get(&c, format!("{}/version", urls[2])).await;
    assert_eq!(a.json()["version"], fb_devcluster::VERSION);
}

#[tokio::test]
async fn owners_follow_upstream_hashing() {
    let cl = demo(3, 2);
    let c = client();
    let urls = cl.urls();
    let ports: Vec<u16> = urls.iter().map(|u| port(u)).collect();
    // Upstream vectors for nodes [a,b,c], replicas 2: users shards 0..3 and partitions 0..5.
    let shard_owners = [[1, 2], [2, 0], [1, 2], [2, 0]];
    for (shard, want) in shard_owners.iter().enumerate() {
        let a = get(&c, format!("{}/internal/fragment/nodes?index=users&shard={shard}", urls[2])).await;
        assert_eq!(a.status, 200);
        assert_eq!(a.header(CONTENT_TYPE), Some("application/json"));
        let nodes: Vec<Node> = serde_json::from_slice(&a.body).unwrap();
        assert_eq!(owners(&nodes), want.iter().map(|&i| ports[i]).collect::<Vec<_>>());
    }
    let part_owners = [[0, 1], [0, 1], [0, 1], [2, 0], [1, 2], [1, 2]];
    for (p, want) in part_owners.iter().enumerate() {
        let a = get(&c, format!("{}/internal/partition/nodes?partition={p}", urls[1])).await;
        let nodes: Vec<Node> = serde_json::from_slice(&a.body).unwrap();
        assert_eq!(owners(&nodes), want.iter().map(|&i| ports[i]).collect::<Vec<_>>());
    }
    // The index need not exist; arguments are required and must be numbers.
    let a = get(&c, format!("{}/internal/fragment/nodes?index=nothing&shard=9", urls[0])).await;
    assert_eq!(a.status, 200);
    let a = get(&c, format!("{}/internal/fragment/nodes?index=users", urls[0])).await;
    assert_eq!((a.status.as_u16(), a.text().as_str()), (400, "{\"error\":\"shard is required\"}\n"));
    let a = get(&c, format!("{}/internal/fragment/nodes?index=users&shard=x", urls[0])).await;
    assert_eq!((a.status.as_u16(), a.text().as_str()), (400, "shard should be an unsigned integer\n"));
    let a = get(&c, format!("{}/internal/partition/nodes?partition=-", urls[0])).await;
    assert_eq!(a.status, 400);
    // Replicas are capped at the node count.
    let small = demo(2, 5);
    let a = get(&c, format!("{}/internal/fragment/nodes?index=users&shard=0", small.urls()[0])).await;
    assert_eq!(serde_json::from_slice::<Vec<Node>>(&a.body).unwrap().len(), 2);
}

#[tokio::test]
async fn schema_and_shard_lists() {
    let cl = demo(2, 1);
    let c = client();
    let url = &cl.urls()[1];
    let a = get(&c, format!("{url}/schema")).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.header(CONTENT_TYPE), Some("application/json"));
    assert!(a.text().ends_with("}\n"));
    // Like Go's server: Content-Length up to 2048 bytes, chunked above.
    assert!(a.body.len() <= 2048);
    assert_eq!(a.header(CONTENT_LENGTH), Some(a.body.len().to_string().as_str()));
    let big = get(&c, format!("{url}/schema?views=true")).await;
    assert!(big.body.len() > 2048 && big.chunked());
    let s = a.json();
    let names: Vec<&str> = s["indexes"].as_array().unwrap().iter().map(|i| i["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["events", "users"], "indexes sorted by name");
    let events = &s["indexes"][0];
    let keys: Vec<&String> = events.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["name", "createdAt", "updatedAt", "owner", "lastUpdatedUser", "options", "fields", "shardWidth"]);
    assert_eq!(events["shardWidth"], 1048576);
    assert_eq!(
        events["options"],
        serde_json::json!({"keys": false, "trackExistence": true, "partitionN": 0, "description": ""})
    );
    let field = |name: &str| events["fields"].as_array().unwrap().iter().find(|f| f["name"] == name).unwrap().clone();
    let opt_keys = |f: &Value| f["options"].as_object().unwrap().keys().cloned().collect::<Vec<_>>();
    assert_eq!(opt_keys(&field("amount")), ["type", "base", "bitDepth", "min", "max", "keys", "foreignIndex"]);
    assert_eq!(opt_keys(&field("seen")), ["type", "timeQuantum", "keys", "noStandardView", "ttl"]);
    assert_eq!(field("seen")["options"]["timeQuantum"], "YMD");
    assert_eq!(opt_keys(&field("kind")), ["type", "cacheType", "cacheSize", "keys"]);
    assert_eq!(opt_keys(&field("flag")), ["type"]);
    assert!(field("seen").get("views").is_none(), "views only with ?views=true");
    let with_views = get(&c, format!("{url}/schema?views=true")).await.json();
    let seen_views =
        with_views["indexes"][0]["fields"].as_array().unwrap().iter().find(|f| f["name"] == "seen").unwrap()["views"]
            .as_array()
            .unwrap()
            .len();
    assert!(seen_views > 10, "time quantum YMD views");
    let users = &s["indexes"][1];
    assert_eq!(users["options"]["keys"], true);
    let users_field = |name: &str| users["fields"].as_array().unwrap().iter().find(|f| f["name"] == name).unwrap();
    assert_eq!(users_field("color")["options"]["keys"], true);
    assert_eq!(users_field("tags")["options"]["keys"], true);
    // An unkeyed int field with a lower bound of 0 (which upstream's POST /schema widens).
    assert_eq!(users_field("age")["options"]["min"], 0);
    assert_eq!(users_field("age")["options"]["keys"], false);

    let a = get(&c, format!("{url}/internal/index/users/shards")).await;
    assert_eq!(a.text(), "{\"shards\":[0,1,2,3]}\n");
    let a = get(&c, format!("{url}/internal/index/events/shards")).await;
    assert_eq!(a.text(), "{\"shards\":[0,1,2,3,4,5,6,7]}\n");
    let a = get(&c, format!("{url}/internal/index/nope/shards")).await;
    assert_eq!((a.status.as_u16(), a.text().as_str()), (500, "nope: index not found\n"));
}

// ---------------------------------------------------------------------------------------
// Data endpoints

#[tokio::test]
async fn snapshots_are_chunked_rbf_files_of_their_declared_length() {
    let cl = demo(3, 2);
    let c = client();
    let urls = cl.urls();
    let placement = Placement::new(3, 2);
    for (index, shards) in [("users", 4u64), ("events", 8)] {
        for shard in 0..shards {
            let mut bodies = Vec::new();
            for o in placement.shard_owners(index, shard) {
                let a = get_bin(&c, format!("{}/internal/index/{index}/shard/{shard}/snapshot", urls[o])).await;
                assert_eq!(a.status, 200);
                assert!(a.chunked(), "snapshots are streamed without Content-Length");
                assert_eq!(a.header(CONTENT_TYPE), Some("application/octet-stream"));
                let declared = rbf::declared_len(&a.body).unwrap();
                assert_eq!(a.body.len() as u64, declared, "{index}/{shard}: length = page count x 8192");
                let bitmaps = rbf::read_bitmaps(&a.body).unwrap();
                assert!(bitmaps.contains_key(&rbf::fragment_key("_exists", "standard")));
                for positions in bitmaps.values() {
                    // Every column lies in this shard.
                    assert!(positions.iter().all(|p| p % SHARD_WIDTH < SHARD_WIDTH));
                }
                bodies.push(a.body);
            }
            assert_eq!(bodies[0], bodies[1], "replicas serve the same file");
        }
    }
    let a = get_bin(&c, format!("{}/internal/index/nope/shard/0/snapshot", urls[0])).await;
    assert_eq!((a.status.as_u16(), a.text().as_str()), (404, "nope: index not found\n"));
    let a = get_bin(&c, format!("{}/internal/index/users/shard/x/snapshot", urls[0])).await;
    assert_eq!(a.status, 400);
    // A node that does not hold a shard streams an empty database, as upstream does.
    let not_owner = (0..3).find(|n| !placement.shard_owners("users", 0).contains(n)).unwrap();
    let a = get_bin(&c, format!("{}/internal/index/users/shard/0/snapshot", urls[not_owner])).await;
    assert_eq!(a.status, 200);
    assert!(rbf::read_bitmaps(&a.body).unwrap().is_empty());
}

#[tokio::test]
async fn key_translation_and_id_allocation_match_the_data() {
    let cl = demo(3, 2);
    let c = client();
    let urls = cl.urls();
    let placement = Placement::new(3, 2);
    let mut shard_bits: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
    for shard in 0..4u64 {
        let o = placement.shard_owners("users", shard)[0];
        let a = get_bin(&c, format!("{}/internal/index/users/shard/{shard}/snapshot", urls[o])).await;
        let bm = rbf::read_bitmaps(&a.body).unwrap();
        let cols = bm[&rbf::fragment_key("_exists", "standard")]
            .iter()
            .map(|p| shard * SHARD_WIDTH + p % SHARD_WIDTH)
            .collect();
        shard_bits.insert(shard, cols);
    }
    let mut translated = Vec::new();
    let mut present = 0;
    let empty = fb_devcluster::data::empty_key_store().unwrap();
    for p in 0..256u32 {
        let owners = placement.partition_owners(p);
        let url = format!("{}/internal/translate/data?index=users&partition={p}", urls[owners[0]]);
        let a = get_bin(&c, url).await;
        // Every partition of a keyed index has a store; most are empty.
        assert_eq!(a.status, 200, "partition {p}");
        assert!(a.chunked());
        let keys = translate::read_store(&a.body).unwrap();
        if keys.is_empty() {
            assert!(a.body == empty, "partition {p}: the empty store");
            continue;
        }
        present += 1;
        for (key, id) in &keys {
            assert_eq!(key_partition("users", key), p, "{key}");
            assert_eq!(shard_partition("users", id / SHARD_WIDTH), p, "IDs lie in shards of the key's partition");
        }
        translated.extend(keys.into_iter().map(|k| k.1));
        // The replica redirects to the first owner (upstream picks the first started owner).
        let a = get_bin(&c, format!("{}/internal/translate/data?index=users&partition={p}", urls[owners[1]])).await;
        assert_eq!(a.status, 303);
    }
    assert_eq!(present, 4, "only the partitions of the 4 shards hold keys");
    translated.sort_unstable();
    let mut columns: Vec<u64> = shard_bits.values().flatten().copied().collect();
    columns.sort_unstable();
    assert_eq!(columns, translated, "every column of the keyed index has a key and vice versa");

    // Redirect: 303 to the owner, scheme-relative Location with the same path and query.
    let p = 147; // users shard 0
    let owner = placement.partition_owners(p)[0];
    let other = (0..3).find(|n| !placement.partition_owners(p).contains(n)).unwrap();
    let a = get_bin(&c, format!("{}/internal/translate/data?index=users&partition={p}", urls[other])).await;
    assert_eq!(a.status, 303);
    let want = format!("//127.0.0.1:{}/internal/translate/data?index=users&partition={p}", port(&urls[owner]));
    assert_eq!(a.header(LOCATION), Some(want.as_str()));
    assert_eq!(a.header(CONTENT_TYPE), Some("text/html; charset=utf-8"));
    assert_eq!(a.text(), format!("<a href=\"{}\">See Other</a>.\n\n", want.replace('&', "&amp;")));
    // Errors.
    let a = get_bin(&c, format!("{}/internal/translate/data?index=nope&partition=1", urls[0])).await;
    assert_eq!((a.status.as_u16(), a.text().as_str()), (404, "nope: index not found\n"));
    // Argument errors are JSON when the client accepts JSON, plain text otherwise.
    let a = get_bin(&c, format!("{}/internal/translate/data?partition=1", urls[0])).await;
    assert_eq!((a.status.as_u16(), a.text().as_str()), (400, "index is required\n"));
    let a = get(&c, format!("{}/internal/translate/data?partition=1", urls[0])).await;
    assert_eq!((a.status.as_u16(), a.text().as_str()), (400, "{\"error\":\"index is required\"}\n"));
    let a = get_bin(&c, format!("{}/internal/translate/data?index=users", urls[0])).await;
    assert_eq!((a.status.as_u16(), a.text().as_str()), (400, "partition or field required\n"));
    let a = get_bin(&c, format!("{}/internal/translate/data?index=events&partition=0", urls[0])).await;
    assert_eq!(a.status, 404);

    // Field keys: every node has them.
    for url in &urls {
        let a = get_bin(&c, format!("{url}/internal/translate/data?index=users&field=color")).await;
        assert_eq!(a.status, 200);
        let keys = translate::read_store(&a.body).unwrap();
        assert_eq!(keys.iter().map(|k| k.1).collect::<Vec<_>>(), (1..=keys.len() as u64).collect::<Vec<_>>());
    }
    let a = get_bin(&c, format!("{}/internal/translate/data?index=users&field=nope", urls[0])).await;
    assert_eq!((a.status.as_u16(), a.text().as_str()), (404, "nope: field not found\n"));
    // An unkeyed field has an empty key store, as upstream serves it.
    let a = get_bin(&c, format!("{}/internal/translate/data?index=users&field=age", urls[0])).await;
    assert_eq!(a.status, 200);
    assert!(translate::read_store(&a.body).unwrap().is_empty());
    // /info, as upstream's fields go.
    let info = get(&c, format!("{}/info", urls[0])).await.json();
    assert_eq!(info["shardWidth"], SHARD_WIDTH);
    assert_eq!(info["replicaN"], 2);
    assert_eq!(info["shardHash"], "jump-hash");

    // ID allocator: the primary's bound is above every events column.
    let a = get_bin(&c, format!("{}/internal/idalloc/data", urls[0])).await;
    assert_eq!(a.status, 200);
    assert!(a.chunked());
    let state = idalloc::read(&a.body).unwrap();
    let bound = state.committed_upper_bound("events");
    for shard in 0..8u64 {
        let o = placement.shard_owners("events", shard)[0];
        let a = get_bin(&c, format!("{}/internal/index/events/shard/{shard}/snapshot", urls[o])).await;
        let bm = rbf::read_bitmaps(&a.body).unwrap();
        let max =
            bm[&rbf::fragment_key("_exists", "standard")].iter().max().unwrap() % SHARD_WIDTH + shard * SHARD_WIDTH;
        assert!(max < bound, "shard {shard}: {max} >= {bound}");
    }
    // Other nodes hold an empty allocator.
    let a = get_bin(&c, format!("{}/internal/idalloc/data", urls[1])).await;
    assert!(idalloc::read(&a.body).unwrap().indexes.is_empty());
}

#[tokio::test]
async fn dataframes_disk_usage_and_disabled_dataframes() {
    let cl = demo(2, 2);
    let c = client();
    let urls = cl.urls();
    let a = get_bin(&c, format!("{}/index/events/dataframe/0", urls[0])).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.header(CONTENT_LENGTH), Some(a.body.len().to_string().as_str()));
    assert!(a.body.starts_with(b"ARROW1"));
    let a = get_bin(&c, format!("{}/index/events/dataframe/1", urls[1])).await;
    assert_eq!((a.status.as_u16(), a.text().as_str()), (404, "404 page not found\n"));
    let a = get_bin(&c, format!("{}/index/nope/dataframe/0", urls[1])).await;
    assert_eq!((a.status.as_u16(), a.text().as_str()), (404, "Index nope Not Found\n"));

    let a = get(&c, format!("{}/internal/disk-usage", urls[0])).await;
    assert_eq!(a.status, 200);
    let total = a.json()["usage"].as_u64().unwrap();
    let a = get(&c, format!("{}/internal/disk-usage/events", urls[0])).await;
    let events = a.json()["usage"].as_u64().unwrap();
    assert!(events > 0 && events < total);
    let a = get(&c, format!("{}/internal/disk-usage/nope", urls[0])).await;
    assert_eq!(a.status, 500);

    let off = spawn(ClusterConfig { demo: true, dataframes: Dataframes::Disabled, ..Default::default() }).unwrap();
    for shard in [0, 1, 99] {
        let a = get_bin(&c, format!("{}/index/events/dataframe/{shard}", off.urls()[0])).await;
        assert_eq!((a.status.as_u16(), a.text().as_str()), (400, "Dataframe is disabled\n"));
    }
}

// ---------------------------------------------------------------------------------------
// Restore

/// Every file of a backup, fetched from `url`'s cluster the way a backup does.
async fn backup(c: &reqwest::Client, urls: &[String], replicas: usize) -> BTreeMap<String, Vec<u8>> {
    let placement = Placement::new(urls.len(), replicas);
    let mut out = BTreeMap::new();
    out.insert("schema".to_string(), get(c, format!("{}/schema", urls[0])).await.body);
    out.insert("idalloc".to_string(), get_bin(c, format!("{}/internal/idalloc/data", urls[0])).await.body);
    let schema: Value = serde_json::from_slice(&out["schema"]).unwrap();
    for idx in schema["indexes"].as_array().unwrap() {
        let name = idx["name"].as_str().unwrap();
        let shards = get(c, format!("{}/internal/index/{name}/shards", urls[0])).await.json();
        for shard in shards["shards"].as_array().into_iter().flatten() {
            let s = shard.as_u64().unwrap();
            let o = placement.shard_owners(name, s)[0];
            let a = get_bin(c, format!("{}/internal/index/{name}/shard/{s}/snapshot", urls[o])).await;
            out.insert(format!("indexes/{name}/shards/{s:04}"), a.body);
            let a = get_bin(c, format!("{}/index/{name}/dataframe/{s}", urls[o])).await;
            if a.status == 200 {
                out.insert(format!("indexes/{name}/dataframe/{s:04}"), a.body);
            }
        }
        if idx["options"]["keys"] == true {
            for p in 0..256u32 {
                let o = placement.partition_owners(p)[0];
                let a = get_bin(c, format!("{}/internal/translate/data?index={name}&partition={p}", urls[o])).await;
                if a.status == 200 {
                    out.insert(format!("indexes/{name}/translate/{p:04}"), a.body);
                }
            }
        }
        for f in idx["fields"].as_array().unwrap() {
            if f["options"]["keys"] == true {
                let fname = f["name"].as_str().unwrap();
                let a = get_bin(c, format!("{}/internal/translate/data?index={name}&field={fname}", urls[0])).await;
                out.insert(format!("indexes/{name}/fields/{fname}/translate"), a.body);
            }
        }
    }
    out
}

#[tokio::test]
async fn restore_endpoints_store_what_they_receive() {
    let source = demo(3, 2);
    let c = client();
    let files = backup(&c, &source.urls(), 2).await;
    assert!(files.len() > 15);

    let target = spawn(ClusterConfig { nodes: 2, ..Default::default() }).unwrap();
    let urls = target.urls();
    let placement = Placement::new(2, 1);
    // An empty cluster: no index, and upstream's "is it empty" checks hold.
    let a = get(&c, format!("{}/schema", urls[1])).await;
    assert_eq!(a.text(), "{\"indexes\":[]}\n");
    let a = send(c.post(format!("{}/schema", urls[0])).body(files["schema"].clone())).await;
    assert_eq!(a.status, 204);
    assert!(a.body.is_empty());
    let a = send(c.post(format!("{}/schema", urls[0])).body(files["schema"].clone())).await;
    assert_eq!(a.status, 400);
    assert_eq!(a.text(), "apply schema to Pilosa: applying schema: creating index: index already exists\n");
    let a = send(c.post(format!("{}/schema", urls[0])).body("{not json")).await;
    assert_eq!(a.status, 400);
    assert!(a.text().starts_with("decoding request as JSON Pilosa schema: "));
    // A new index has no shard yet.
    let a = get(&c, format!("{}/internal/index/users/shards", urls[0])).await;
    assert_eq!(a.text(), "{\"shards\":null}\n");

    let a = send(c.post(format!("{}/internal/idalloc/restore", urls[0])).body(files["idalloc"].clone())).await;
    assert_eq!((a.status.as_u16(), a.text().as_str(), a.header(CONTENT_TYPE)), (200, "OK", Some("text/plain")));
    for (path, bytes) in &files {
        let parts: Vec<&str> = path.split('/').collect();
        match parts.as_slice() {
            ["indexes", i, "shards", s] => {
                let s: u64 = s.parse().unwrap();
                let owners = placement.shard_owners(i, s);
                for (o, url) in urls.iter().enumerate() {
                    let a = send(c.post(format!("{url}/internal/restore/{i}/{s}")).body(bytes.clone())).await;
                    if owners.contains(&o) {
                        assert_eq!((a.status.as_u16(), a.text().as_str()), (200, "OK"));
                    } else {
                        assert_eq!(a.status, 400);
                        assert_eq!(a.text(), format!("failed to restore shard {i} {s} err:node does not own shard\n"));
                    }
                }
            }
            ["indexes", i, "dataframe", s] => {
                let s: u64 = s.parse().unwrap();
                for o in placement.shard_owners(i, s) {
                    let url = format!("{}/internal/dataframe/restore/{i}/{s}", urls[o]);
                    assert_eq!(send(c.post(url).body(bytes.clone())).await.status, 200);
                }
            }
            ["indexes", i, "translate", p] => {
                let p: u32 = p.parse().unwrap();
                for o in placement.partition_owners(p) {
                    let a =
                        send(c.post(format!("{}/internal/translate/index/{i}/{p}", urls[o])).body(bytes.clone())).await;
                    assert_eq!(a.status, 200);
                    assert_eq!(a.header(CONTENT_TYPE), Some("application/json"));
                    assert_eq!(a.text(), format!("{{\"success\":true,\"name\":\"{i}\"}}\n"));
                }
            }
            ["indexes", i, "fields", f, "translate"] => {
                for url in &urls {
                    let a = send(c.post(format!("{url}/internal/translate/field/{i}/{f}")).body(bytes.clone())).await;
                    assert_eq!(a.text(), format!("{{\"success\":true,\"name\":\"{f}\"}}\n"));
                }
            }
            _ => {}
        }
    }
    let a = send(c.post(format!("{}/internal/translate/index/nope/1", urls[0])).body("x")).await;
    assert_eq!(a.status, 404);
    assert_eq!(
        a.text(),
        "{\"success\":false,\"name\":\"nope\",\"error\":{\"message\":\"index \\\"nope\\\" not found\"}}\n"
    );
    let a = send(c.post(format!("{}/internal/translate/field/users/nope", urls[0])).body("x")).await;
    assert_eq!(a.status, 404);

    // The restored cluster serves back the same bytes (on its own topology).
    let again = backup(&c, &urls, 1).await;
    assert_eq!(again.keys().collect::<Vec<_>>(), files.keys().collect::<Vec<_>>());
    for (path, bytes) in &files {
        if path == "schema" {
            continue;
        }
        assert!(again[path] == *bytes, "{path} differs after restore");
    }
    // Like upstream, POST /schema stamped the restore time and read users/age's `min: 0` as
    // unset; the content is otherwise the same.
    let (sent, got) = (&files["schema"], &again["schema"]);
    assert!(sent != got);
    let kind = fb_core::layout::EntryKind::Schema;
    assert!(fb_core::content::digest(kind, sent).same_as(&fb_core::content::digest(kind, got)));
    assert_eq!(
        fb_core::content::bound_changes(sent, got).iter().map(ToString::to_string).collect::<Vec<_>>(),
        ["users/age min 0 -> -9223372036854775808"],
        "only the zero bound changed"
    );
}

// ---------------------------------------------------------------------------------------
// Determinism and sizes

fn tree(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.insert(p.strip_prefix(dir).unwrap().to_path_buf(), std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

#[tokio::test]
async fn same_flags_give_byte_identical_files() {
    let a = demo(3, 2);
    let b = demo(3, 2);
    let (ta, tb) = (tree(a.data_dir()), tree(b.data_dir()));
    assert!(ta.len() > 30);
    assert_eq!(ta.keys().collect::<Vec<_>>(), tb.keys().collect::<Vec<_>>());
    for (path, bytes) in &ta {
        assert!(tb[path] == *bytes, "{} differs", path.display());
    }
    let c = client();
    let (fa, fb) = (backup(&c, &a.urls(), 2).await, backup(&c, &b.urls(), 2).await);
    assert_eq!(fa, fb);
}

#[tokio::test]
async fn demo_shard_bytes_scales_shard_files() {
    let want = 1 << 20;
    let cl = spawn(ClusterConfig { nodes: 2, demo: true, demo_shard_bytes: want, ..Default::default() }).unwrap();
    let c = client();
    let placement = Placement::new(2, 1);
    for (index, shard) in [("users", 2u64), ("events", 5)] {
        let o = placement.shard_owners(index, shard)[0];
        let a = get_bin(&c, format!("{}/internal/index/{index}/shard/{shard}/snapshot", cl.urls()[o])).await;
        let len = a.body.len() as u64;
        assert_eq!(len, rbf::declared_len(&a.body).unwrap());
        assert!(len >= want && len < want + 64 * 8192, "{len}");
        rbf::read_bitmaps(&a.body).unwrap();
    }
}

#[tokio::test]
async fn data_dir_keeps_restored_data_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = ClusterConfig { nodes: 2, data_dir: Some(dir.path().to_path_buf()), ..Default::default() };
    let c = client();
    let schema = r#"{"indexes":[{"name":"kept","createdAt":5,"options":{"keys":false},"fields":[{"name":"f","options":{"type":"set"}}]}]}"#;
    let shard = {
        let mut out = Vec::new();
        let mut bm = BTreeMap::new();
        bm.insert(rbf::fragment_key("f", "standard"), vec![1, 2, 3]);
        rbf::write_shard(&mut out, &bm, 0).unwrap();
        out
    };
    let owner = Placement::new(2, 1).shard_owners("kept", 3)[0];
    {
        let cl = spawn(cfg.clone()).unwrap();
        assert_eq!(send(c.post(format!("{}/schema", cl.urls()[0])).body(schema)).await.status, 204);
        let url = format!("{}/internal/restore/kept/3", cl.urls()[owner]);
        assert_eq!(send(c.post(url).body(shard.clone())).await.status, 200);
    }
    assert!(dir.path().join(format!("node{owner}/indexes/kept/shards/0003")).exists());
    let cl = spawn(cfg).unwrap();
    let a = get(&c, format!("{}/internal/index/kept/shards", cl.urls()[1])).await;
    assert_eq!(a.text(), "{\"shards\":[3]}\n");
    let a = get_bin(&c, format!("{}/internal/index/kept/shard/3/snapshot", cl.urls()[owner])).await;
    assert_eq!(a.body, shard);
}

// ---------------------------------------------------------------------------------------
// Auth and TLS

#[tokio::test]
async fn auth_refuses_missing_and_wrong_tokens() {
    let cl = spawn(ClusterConfig { demo: true, auth_token: Some("s3cret".into()), ..Default::default() }).unwrap();
    let c = client();
    let url = &cl.urls()[0];
    // chkAuthZ routes answer 403, chkAuthN routes 401.
    for (path, code) in [
        ("/status", 403),
        ("/schema", 403),
        ("/internal/index/users/shards", 403),
        ("/internal/index/users/shard/0/snapshot", 403),
        ("/internal/translate/data?index=users&partition=147", 403),
        ("/internal/nodes", 401),
        ("/internal/fragment/nodes?index=users&shard=0", 401),
        ("/internal/idalloc/data", 401),
        ("/_fbkit/fault", 401),
    ] {
        let a = get(&c, format!("{url}{path}")).await;
        assert_eq!(a.status, code, "{path}");
        assert_eq!(a.text(), "authenticating: auth token is empty\n");
        let a = send(c.get(format!("{url}{path}")).header(AUTHORIZATION, "Bearer wrong")).await;
        assert_eq!(a.status, code, "{path}");
        assert!(a.text().starts_with("authenticating: parsing auth token: "), "{}", a.text());
        let a = send(c.get(format!("{url}{path}")).header(AUTHORIZATION, "Bearer s3cret")).await;
        assert!(a.status.is_success(), "{path}: {}", a.status);
    }
    let a = send(c.post(format!("{url}/_fbkit/fault")).body("error:500")).await;
    assert_eq!(a.status, 401);
    assert!(cl.faults().is_empty());
    // Query arguments are checked before auth; /version needs no token.
    let a = get(&c, format!("{url}/status?x=1")).await;
    assert_eq!(a.status, 400);
    assert_eq!(get(&c, format!("{url}/version")).await.status, 200);
}

struct Pki {
    dir: tempfile::TempDir,
    ca_pem: String,
    client_cert: String,
    client_key: String,
}

fn make_pki() -> Pki {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair, SanType};
    let dir = tempfile::tempdir().unwrap();
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let server_key = KeyPair::generate().unwrap();
    let mut sp = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    sp.subject_alt_names.push(SanType::IpAddress("127.0.0.1".parse().unwrap()));
    let server = sp.signed_by(&server_key, &ca, &ca_key).unwrap();
    let client_key = KeyPair::generate().unwrap();
    let cp = CertificateParams::new(vec!["client".to_string()]).unwrap();
    let client = cp.signed_by(&client_key, &ca, &ca_key).unwrap();
    std::fs::write(dir.path().join("ca.pem"), ca.pem()).unwrap();
    std::fs::write(dir.path().join("cert.pem"), server.pem()).unwrap();
    std::fs::write(dir.path().join("key.pem"), server_key.serialize_pem()).unwrap();
    Pki { ca_pem: ca.pem(), client_cert: client.pem(), client_key: client_key.serialize_pem(), dir }
}

fn tls_client(pki: &Pki, with_cert: bool) -> reqwest::Client {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    init_crypto();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from_pem_slice(pki.ca_pem.as_bytes()).unwrap()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let config = if with_cert {
        let chain = vec![CertificateDer::from_pem_slice(pki.client_cert.as_bytes()).unwrap()];
        let key = PrivateKeyDer::from_pem_slice(pki.client_key.as_bytes()).unwrap();
        builder.with_client_auth_cert(chain, key).unwrap()
    } else {
        builder.with_no_client_auth()
    };
    reqwest::Client::builder()
        .tls_backend_preconfigured(config)
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

fn tls_cluster(pki: &Pki, mtls: bool) -> RunningCluster {
    spawn(ClusterConfig {
        nodes: 2,
        demo: true,
        tls: Some(fb_devcluster::TlsFiles {
            cert: pki.dir.path().join("cert.pem"),
            key: pki.dir.path().join("key.pem"),
            client_ca: mtls.then(|| pki.dir.path().join("ca.pem")),
        }),
        ..Default::default()
    })
    .unwrap()
}

#[tokio::test]
async fn tls_serves_https_and_reports_https_uris() {
    let pki = make_pki();
    let cl = tls_cluster(&pki, false);
    assert!(cl.urls().iter().all(|u| u.starts_with("https://127.0.0.1:")));
    let c = tls_client(&pki, false);
    let a = get(&c, format!("{}/status", cl.urls()[1])).await;
    assert_eq!(a.status, 200);
    let st: ClusterStatus = serde_json::from_slice(&a.body).unwrap();
    assert!(st.nodes.iter().all(|n| n.uri.scheme == "https"));
    let a = get_bin(&c, format!("{}/internal/index/events/shard/0/snapshot", cl.urls()[0])).await;
    assert_eq!(a.body.len() as u64, rbf::declared_len(&a.body).unwrap());
    // Plain HTTP to a TLS port gets no HTTP answer.
    assert!(client().get(format!("http://127.0.0.1:{}/status", port(&cl.urls()[0]))).send().await.is_err());
}

#[tokio::test]
async fn mtls_requires_a_client_certificate() {
    let pki = make_pki();
    let cl = tls_cluster(&pki, true);
    let url = format!("{}/status", cl.urls()[0]);
    let err = tls_client(&pki, false).get(&url).send().await;
    assert!(err.is_err(), "a client without a certificate is refused");
    let a = get(&tls_client(&pki, true), url).await;
    assert_eq!(a.status, 200);
}

// ---------------------------------------------------------------------------------------
// Faults

#[tokio::test]
async fn fault_down_closes_the_port_and_reopens_it() {
    let cl = spawn(ClusterConfig {
        nodes: 3,
        replicas: 2,
        demo: true,
        degraded_after: Duration::ZERO,
        ..Default::default()
    })
    .unwrap();
    let c = client();
    let urls = cl.urls();
    cl.add_fault("down@1").unwrap();
    let err = c.get(format!("{}/status", urls[1])).send().await.unwrap_err();
    assert!(err.is_connect(), "{err}");
    let st: ClusterStatus = serde_json::from_slice(&get(&c, format!("{}/status", urls[0])).await.body).unwrap();
    assert_eq!(st.state, "DEGRADED");
    assert_eq!(st.nodes[1].state, "UNKNOWN");
    // Key stores are refused while the cluster is DEGRADED.
    let a = get_bin(&c, format!("{}/internal/translate/data?index=users&partition=4", urls[0])).await;
    assert_eq!(a.status, 404);
    // Controlled from another node over HTTP; the node is back on the same port.
    let a = send(c.delete(format!("{}/_fbkit/fault", urls[2]))).await;
    assert_eq!(a.status, 200);
    assert_eq!(get(&c, format!("{}/status", urls[1])).await.status, 200);
    // A node can take itself down over HTTP and still answer that request.
    let a = send(c.post(format!("{}/_fbkit/fault", urls[2])).body("down@2")).await;
    assert_eq!(a.status, 200);
    // A new connection (the one that carried the POST may still be closing) is refused.
    let fresh = reqwest::Client::builder().pool_max_idle_per_host(0).no_proxy().build().unwrap();
    assert!(fresh.get(format!("{}/status", urls[2])).send().await.is_err());
    cl.clear_faults();
    assert_eq!(get(&c, format!("{}/status", urls[2])).await.status, 200);
}

#[tokio::test]
async fn fault_hang_reads_but_never_answers() {
    let cl = demo(2, 1);
    let c = client();
    let urls = cl.urls();
    cl.add_fault("hang@0:/internal/").unwrap();
    let quick = reqwest::Client::builder().no_proxy().timeout(Duration::from_millis(300)).build().unwrap();
    let err = quick.get(format!("{}/internal/nodes", urls[0])).send().await.unwrap_err();
    assert!(err.is_timeout(), "{err}");
    // Other paths and other nodes answer; the control routes still work on the hung node.
    assert_eq!(get(&c, format!("{}/status", urls[0])).await.status, 200);
    assert_eq!(get(&c, format!("{}/internal/nodes", urls[1])).await.status, 200);
    let listed = get(&c, format!("{}/_fbkit/fault", urls[0])).await.json();
    assert_eq!(listed["faults"], serde_json::json!(["hang@0:/internal/"]));
    // A request waiting when the fault is cleared is answered.
    let pending = tokio::spawn({
        let (c, url) = (c.clone(), format!("{}/internal/nodes", urls[0]));
        async move { c.get(url).send().await.map(|r| r.status()) }
    });
    let a = send(c.delete(format!("{}/_fbkit/fault", urls[0]))).await;
    assert_eq!(a.status, 200);
    assert_eq!(pending.await.unwrap().unwrap(), 200);
}

#[tokio::test]
async fn fault_error_spoils_a_counted_number_of_requests() {
    let cl = demo(2, 1);
    let c = client();
    let urls = cl.urls();
    let a = send(c.post(format!("{}/_fbkit/fault", urls[0])).body("error@1:503:5:/internal/")).await;
    assert_eq!(a.status, 200);
    let mut statuses = Vec::new();
    for _ in 0..7 {
        statuses.push(get(&c, format!("{}/internal/nodes", urls[1])).await.status.as_u16());
        // Other prefixes and nodes are not counted.
        assert_eq!(get(&c, format!("{}/status", urls[1])).await.status, 200);
        assert_eq!(get(&c, format!("{}/internal/nodes", urls[0])).await.status, 200);
    }
    assert_eq!(statuses, [503, 503, 503, 503, 503, 200, 200]);
    // Bad specs are refused.
    for bad in ["explode", "error@1", "down@7", "churn@1"] {
        let a = send(c.post(format!("{}/_fbkit/fault", urls[0])).body(bad)).await;
        assert_eq!(a.status, 400, "{bad}");
    }
    assert!(cl.add_fault("slow:0").is_err());
}

#[tokio::test]
async fn fault_cut_truncates_bodies_under_the_prefix() {
    let cl = demo(1, 1);
    let c = client();
    let url = &cl.urls()[0];
    cl.add_fault("cut@0:4096:/internal/index/").unwrap();
    // Chunked snapshot: ends cleanly after 4096 bytes; the RBF header promises more.
    let a = get_bin(&c, format!("{url}/internal/index/events/shard/0/snapshot")).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.body.len(), 4096);
    assert!(rbf::declared_len(&a.body).unwrap() > 4096);
    // Other prefixes are whole.
    let a = get_bin(&c, format!("{url}/internal/idalloc/data")).await;
    assert!(a.body.len() > 4096);
    cl.clear_faults();
    // Content-Length response: the header promises the whole file, the connection ends early.
    cl.add_fault("cut:100:/index/").unwrap();
    let resp = c.get(format!("{url}/index/events/dataframe/0")).send().await.unwrap();
    let promised = resp.content_length().unwrap();
    assert!(promised > 100);
    assert!(resp.bytes().await.is_err(), "a body shorter than its Content-Length is an error");
    cl.clear_faults();
    let resp = c.get(format!("{url}/index/events/dataframe/0")).send().await.unwrap();
    assert_eq!(resp.bytes().await.unwrap().len() as u64, promised);
}

#[tokio::test]
async fn fault_slow_limits_the_rate() {
    let cl = spawn(ClusterConfig { demo: true, demo_shard_bytes: 512 * 1024, ..Default::default() }).unwrap();
    let c = client();
    let url = format!("{}/internal/index/events/shard/1/snapshot", cl.urls()[0]);
    let rate = 2 * 1024 * 1024;
    cl.add_fault(&format!("slow@0:{rate}")).unwrap();
    let started = Instant::now();
    let a = get_bin(&c, url.clone()).await;
    let took = started.elapsed();
    let expected = Duration::from_secs_f64(a.body.len() as f64 / rate as f64);
    assert!(a.body.len() >= 512 * 1024);
    assert_eq!(a.body.len() as u64, rbf::declared_len(&a.body).unwrap(), "slow bodies are whole");
    assert!(took >= expected.mul_f64(0.8), "took {took:?}, expected about {expected:?}");
}

#[tokio::test]
async fn fault_churn_keeps_backups_consistent() {
    let cl = demo(3, 2);
    let c = client();
    let urls = cl.urls();
    let placement = Placement::new(3, 2);
    let before = get(&c, format!("{}/internal/index/events/shards", urls[0])).await.json();
    cl.add_fault("churn:150:1").unwrap();
    let (mut rounds, mut rounds_during_churn, mut first_count, mut last_count) = (0, 0, None, 0);
    // Fetch data first, then translation and the allocator, as a backup does; bounded.
    while rounds < 50 {
        rounds += 1;
        let running = !cl.faults().is_empty();
        rounds_during_churn += usize::from(running);
        let mut users_cols = Vec::new();
        let mut events_max = 0;
        for (index, shards) in [("users", 0..4u64), ("events", 0..9u64)] {
            for shard in shards {
                let o = placement.shard_owners(index, shard)[0];
                let a = get_bin(&c, format!("{}/internal/index/{index}/shard/{shard}/snapshot", urls[o])).await;
                let bm = rbf::read_bitmaps(&a.body).unwrap();
                let cols = bm
                    .get(&rbf::fragment_key("_exists", "standard"))
                    .cloned()
                    .unwrap_or_default()
                    .into_iter()
                    .map(|p| shard * SHARD_WIDTH + p % SHARD_WIDTH);
                if index == "users" {
                    users_cols.extend(cols);
                } else {
                    events_max = events_max.max(cols.max().unwrap_or(0));
                }
            }
        }
        let mut ids = std::collections::BTreeSet::new();
        for p in (0..4u64).map(|s| shard_partition("users", s)) {
            let o = placement.partition_owners(p)[0];
            let a = get_bin(&c, format!("{}/internal/translate/data?index=users&partition={p}", urls[o])).await;
            ids.extend(translate::read_store(&a.body).unwrap().into_iter().map(|k| k.1));
        }
        first_count.get_or_insert(users_cols.len());
        last_count = users_cols.len();
        for col in &users_cols {
            assert!(ids.contains(col), "round {rounds}: column {col} has no key");
        }
        let state = idalloc::read(&get_bin(&c, format!("{}/internal/idalloc/data", urls[0])).await.body).unwrap();
        assert!(events_max < state.committed_upper_bound("events"), "round {rounds}");
        if !running {
            break;
        }
    }
    cl.wait_churn();
    assert!(rounds_during_churn >= 1, "a backup round overlapped the churn");
    assert!(last_count > first_count.unwrap(), "churn added keyed columns");
    assert_eq!(cl.churn_steps(), 150);
    assert!(cl.faults().is_empty(), "churn is bounded");
    let after = get(&c, format!("{}/internal/index/users/shards", urls[0])).await;
    assert_eq!(after.status, 200);
    assert_ne!(get(&c, format!("{}/internal/index/events/shards", urls[0])).await.json(), Value::Null);
    let _ = before;
}

// ---------------------------------------------------------------------------------------
// The binary

#[test]
fn binary_prints_urls_and_exits_cleanly_on_sigterm() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    let mut child = Command::new(env!("CARGO_BIN_EXE_fb-devcluster"))
        .args(["--nodes", "2", "--port", "0", "--demo"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let urls: Vec<String> = (0..2).map(|_| lines.next().unwrap().unwrap()).collect();
    assert!(urls.iter().all(|u| u.starts_with("http://127.0.0.1:")), "{urls:?}");
    let status = std::net::TcpStream::connect(("127.0.0.1", port(&urls[1])));
    assert!(status.is_ok());
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGTERM).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{:?} {}", out.status, String::from_utf8_lossy(&out.stderr));

    let bad = Command::new(env!("CARGO_BIN_EXE_fb-devcluster"))
        .args(["--port", "0", "--fault", "explode@1"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    let bad = Command::new(env!("CARGO_BIN_EXE_fb-devcluster"))
        .args(["--port", "0", "--nodes", "2", "--fault", "down@2"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    let help = Command::new(env!("CARGO_BIN_EXE_fb-devcluster")).arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    for kind in ["down@N", "hang[@N]", "error[@N]", "cut[@N]", "slow[@N]", "churn"] {
        assert!(help.contains(kind), "--help documents {kind}");
    }
}

// ---------------------------------------------------------------------------------------
// Upstream behaviours: key partitions, a dead node, permissions, active queries, schema

async fn post_json(c: &reqwest::Client, url: String, body: &str) -> Answer {
    send(c.post(url).header(ACCEPT, "application/json").body(body.to_string())).await
}

async fn status_of(c: &reqwest::Client, url: &str) -> ClusterStatus {
    serde_json::from_slice(&get(c, format!("{url}/status")).await.body).unwrap()
}

/// Poll `/status` on `url` until it reports `want`; bounded by `limit`.
async fn wait_for_state(c: &reqwest::Client, url: &str, want: &str, limit: Duration) -> ClusterStatus {
    let deadline = Instant::now() + limit;
    loop {
        let st = status_of(c, url).await;
        if st.state == want {
            return st;
        }
        assert!(Instant::now() < deadline, "{url}: still {} after {limit:?}, want {want}", st.state);
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[tokio::test]
async fn every_key_partition_of_a_keyed_index_is_served() {
    let cl = demo(3, 2);
    let c = client();
    let urls = cl.urls();
    let placement = Placement::new(3, 2);
    let empty = fb_devcluster::data::empty_key_store().unwrap();
    // The empty store is byte for byte what a real v3.35 serves for an unused partition.
    let real = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/featurebase-v3.35.0-23-g6222e9eb5/backup/indexes/users/translate/0000");
    if let Ok(bytes) = std::fs::read(&real) {
        assert!(bytes == empty, "the empty key store differs from upstream's");
    }
    assert!(translate::read_store(&empty).unwrap().is_empty());
    // Indexes created by POST /schema and by POST /index have all 256 stores at once.
    let a = send(c.post(format!("{}/schema", urls[0])).body(r#"{"indexes":[{"name":"k1","options":{"keys":true}}]}"#))
        .await;
    assert_eq!(a.status, 204, "{}", a.text());
    let a = post_json(&c, format!("{}/index/k2", urls[1]), r#"{"options":{"keys":true}}"#).await;
    assert_eq!(a.status, 200, "{}", a.text());
    for index in ["k1", "k2"] {
        for p in [0u32, 77, 255] {
            let owner = placement.partition_owners(p)[0];
            let a = get_bin(&c, format!("{}/internal/translate/data?index={index}&partition={p}", urls[owner])).await;
            assert_eq!(a.status, 200, "{index}/{p}");
            assert!(a.body == empty);
        }
        // No partition 256; an unkeyed index has no stores.
        let a = get_bin(&c, format!("{}/internal/translate/data?index={index}&partition=256", urls[0])).await;
        assert!(a.status == 404 || a.status == 303, "{}", a.status);
    }
    let a = get_bin(&c, format!("{}/internal/translate/data?index=events&partition=147", urls[0])).await;
    let a = if a.status == 303 {
        let loc = a.header(LOCATION).unwrap().to_string();
        get_bin(&c, format!("http:{loc}")).await
    } else {
        a
    };
    assert_eq!((a.status.as_u16(), a.text().as_str()), (404, "translate store not found\n"));
}

#[tokio::test]
async fn a_dead_node_is_noticed_after_the_delay_and_key_stores_are_refused() {
    let delay = Duration::from_millis(1500);
    let cl = spawn(ClusterConfig { nodes: 3, replicas: 2, demo: true, degraded_after: delay, ..Default::default() })
        .unwrap();
    let c = client();
    let urls = cl.urls();
    let placement = Placement::new(3, 2);
    // Partition 4 is owned by [b, c]: node 1 is its primary owner.
    assert_eq!(placement.partition_owners(4), [1, 2]);
    // The clock starts before the fault: the cluster counts the delay from inside add_fault,
    // so this measure is never shorter than the cluster's.
    let started = Instant::now();
    cl.add_fault("down@1").unwrap();
    // Not noticed yet: listed STARTED, and the replica redirects to the dead primary.
    let st = status_of(&c, &urls[0]).await;
    assert!(started.elapsed() < delay, "the machine is too slow for this test's first phase");
    assert_eq!(st.state, "NORMAL");
    assert!(st.nodes.iter().all(|n| n.state == "STARTED"));
    let a = get_bin(&c, format!("{}/internal/translate/data?index=users&partition=4", urls[2])).await;
    assert_eq!(a.status, 303);
    assert!(a.header(LOCATION).unwrap().contains(&format!(":{}/", port(&urls[1]))));
    assert_eq!(cl.state(), "NORMAL");

    let st = wait_for_state(&c, &urls[0], "DEGRADED", Duration::from_secs(30)).await;
    assert!(started.elapsed() >= delay);
    assert_eq!(st.nodes.iter().map(|n| n.state.as_str()).collect::<Vec<_>>(), ["STARTED", "UNKNOWN", "STARTED"]);
    // Every key-store download is refused, on every live node, whoever owns it.
    for url in [&urls[0], &urls[2]] {
        for p in [4u32, 147, 0] {
            let a = get_bin(&c, format!("{url}/internal/translate/data?index=users&partition={p}")).await;
            assert_eq!(
                (a.status.as_u16(), a.text().as_str()),
                (404, "validating api method: api method apiTranslateData not allowed in state DEGRADED\n")
            );
        }
        let a = get_bin(&c, format!("{url}/internal/translate/data?index=users&field=color")).await;
        assert_eq!(
            (a.status.as_u16(), a.text().as_str()),
            (404, "validating api method: api method apiFieldTranslateData not allowed in state DEGRADED\n")
        );
    }
    // Shards still come from live replicas; the schema and owner lists still answer.
    for shard in 0..4u64 {
        let o = *placement.shard_owners("users", shard).iter().find(|&&o| o != 1).unwrap();
        let a = get_bin(&c, format!("{}/internal/index/users/shard/{shard}/snapshot", urls[o])).await;
        assert_eq!(a.status, 200);
        assert_eq!(a.body.len() as u64, rbf::declared_len(&a.body).unwrap());
    }
    assert_eq!(get(&c, format!("{}/schema", urls[0])).await.status, 200);
    assert_eq!(get(&c, format!("{}/internal/fragment/nodes?index=users&shard=0", urls[0])).await.status, 200);
    // Writes to the schema are refused.
    let a = send(c.post(format!("{}/schema", urls[0])).body(r#"{"indexes":[{"name":"more"}]}"#)).await;
    assert_eq!(
        (a.status.as_u16(), a.text().as_str()),
        (
            400,
            "apply schema to Pilosa: validating api method: api method apiApplySchema not allowed in state DEGRADED\n"
        )
    );
    let a = post_json(&c, format!("{}/index/more", urls[0]), "").await;
    assert_eq!(a.status, 500);
    assert!(a.text().contains("api method apiCreateIndex not allowed in state DEGRADED"), "{}", a.text());

    // A second node down with replicas 2: DOWN, and most of the API is refused.
    cl.add_fault("down@2").unwrap();
    wait_for_state(&c, &urls[0], "DOWN", Duration::from_secs(30)).await;
    let a = get(&c, format!("{}/schema", urls[0])).await;
    assert_eq!((a.status.as_u16(), a.text().as_str()), (200, "{\"indexes\":null}\n"));
    let a = get(&c, format!("{}/internal/fragment/nodes?index=users&shard=0", urls[0])).await;
    assert_eq!(
        (a.status.as_u16(), a.text().as_str()),
        (400, "validating api method: api method apiShardNodes not allowed in state DOWN\n")
    );

    // Back: NORMAL at once.
    cl.clear_faults();
    let st = status_of(&c, &urls[0]).await;
    assert_eq!(st.state, "NORMAL");
    assert!(st.nodes.iter().all(|n| n.state == "STARTED"));
    let a = get_bin(&c, format!("{}/internal/translate/data?index=users&partition=4", urls[1])).await;
    assert_eq!(a.status, 200);
}

#[tokio::test]
async fn a_frozen_primary_gets_redirects_until_it_is_noticed() {
    let delay = Duration::from_millis(1500);
    let cl = spawn(ClusterConfig { nodes: 3, replicas: 2, demo: true, degraded_after: delay, ..Default::default() })
        .unwrap();
    let c = client();
    let urls = cl.urls();
    // users shard 0's key partition 147: owners?
    let placement = Placement::new(3, 2);
    let owners = placement.partition_owners(147);
    let (primary, replica) = (owners[0], owners[1]);
    let other = (0..3).find(|n| !owners.contains(n)).unwrap();
    cl.add_fault(&format!("hang@{primary}")).unwrap();
    let started = Instant::now();
    for asked in [replica, other] {
        let a = get_bin(&c, format!("{}/internal/translate/data?index=users&partition=147", urls[asked])).await;
        assert_eq!(a.status, 303, "node {asked} still redirects to the frozen primary");
        assert!(a.header(LOCATION).unwrap().contains(&format!(":{}/", port(&urls[primary]))));
    }
    assert!(started.elapsed() < delay, "the machine is too slow for this test's first phase");
    // The frozen node accepts connections but never answers.
    let quick = reqwest::Client::builder().no_proxy().timeout(Duration::from_millis(300)).build().unwrap();
    assert!(quick.get(format!("{}/status", urls[primary])).send().await.unwrap_err().is_timeout());
    // Noticed like a dead node.
    let st = wait_for_state(&c, &urls[other], "DEGRADED", Duration::from_secs(30)).await;
    assert_eq!(st.nodes[primary].state, "UNKNOWN");
    let a = get_bin(&c, format!("{}/internal/translate/data?index=users&partition=147", urls[replica])).await;
    assert_eq!(a.status, 404);
    // A hang under a prefix is not a frozen node.
    cl.clear_faults();
    cl.add_fault(&format!("hang@{primary}:/internal/translate/")).unwrap();
    let a = get_bin(&c, format!("{}/internal/translate/data?index=users&partition=147", urls[replica])).await;
    assert_eq!(a.status, 303);
    assert_eq!(status_of(&c, &urls[other]).await.state, "NORMAL");
}

#[tokio::test]
async fn read_tokens_see_only_their_indexes_and_no_admin_routes() {
    let cl = spawn(ClusterConfig {
        nodes: 2,
        demo: true,
        auth_token: Some("admin".into()),
        read_tokens: vec!["r-users=users".parse().unwrap(), "r-none=nosuch".parse().unwrap()],
        expired_tokens: vec!["old".into()],
        ..Default::default()
    })
    .unwrap();
    let c = client();
    let url = &cl.urls()[0];
    let as_user = |tok: &str, path: &str| c.get(format!("{url}{path}")).header(AUTHORIZATION, format!("Bearer {tok}"));
    // GET /schema is filtered, not refused.
    let a = send(as_user("r-users", "/schema")).await;
    assert_eq!(a.status, 200);
    let names: Vec<String> =
        a.json()["indexes"].as_array().unwrap().iter().map(|i| i["name"].as_str().unwrap().to_string()).collect();
    assert_eq!(names, ["users"]);
    let a = send(as_user("r-none", "/schema")).await;
    assert_eq!((a.status.as_u16(), a.text().as_str()), (200, "{\"indexes\":null}\n"));
    let a = send(as_user("admin", "/schema")).await;
    assert_eq!(a.json()["indexes"].as_array().unwrap().len(), 2);
    // Readable index: served. Other index: 403 naming the user and the index.
    let placement = Placement::new(2, 1);
    for (path, ok) in [
        ("/internal/index/users/shards".to_string(), true),
        (format!("/internal/index/users/shard/{s}/snapshot", s = 0), true),
        ("/internal/translate/data?index=users&field=color".to_string(), true),
        ("/internal/index/events/shards".to_string(), false),
        ("/internal/index/events/shard/0/snapshot".to_string(), false),
        ("/internal/translate/data?index=events&partition=0".to_string(), false),
        ("/index/events/dataframe/0".to_string(), false),
        ("/internal/disk-usage/events".to_string(), false),
    ] {
        let a = send(as_user("r-users", &path).header(ACCEPT, "*/*")).await;
        if ok {
            assert!(a.status == 200 || a.status == 303, "{path}: {} {}", a.status, a.text());
        } else {
            let index = if path.contains("events") { "events" } else { "users" };
            assert_eq!(
                (a.status.as_u16(), a.text()),
                (403, format!("Insufficient Permissions: user reader1 does not have permission to index {index}\n")),
                "{path}"
            );
        }
    }
    let _ = placement;
    // Admin-only routes.
    for path in ["/info", "/queries"] {
        let a = send(as_user("r-users", path)).await;
        assert_eq!(
            (a.status.as_u16(), a.text().as_str()),
            (403, "Insufficient permissions: user does not have admin permission\n"),
            "{path}"
        );
        assert_eq!(send(as_user("admin", path)).await.status, 200, "{path}");
    }
    let a = send(c.post(format!("{url}/schema")).header(AUTHORIZATION, "Bearer r-users").body("{}")).await;
    assert_eq!(a.status, 403);
    let a = send(c.post(format!("{url}/internal/restore/users/0")).header(AUTHORIZATION, "Bearer r-users")).await;
    assert_eq!(a.status, 403);
    // Creating a field needs write permission on the index.
    let a = send(
        c.post(format!("{url}/index/users/field/new"))
            .header(AUTHORIZATION, "Bearer r-users")
            .body(r#"{"options":{"type":"set"}}"#),
    )
    .await;
    assert_eq!((a.status.as_u16(), a.text().as_str()), (403, "Insufficient permissions\n"));
    // Internal (chkAuthN) routes take any valid token.
    assert_eq!(send(as_user("r-users", "/internal/nodes")).await.status, 200);
    // An expired token: 403 on most routes, 401 on internal ones.
    let a = send(as_user("old", "/schema")).await;
    assert_eq!(
        (a.status.as_u16(), a.text().as_str()),
        (403, "authenticating: token is expired: refreshing token: 400 Bad Request\n")
    );
    assert_eq!(send(as_user("old", "/internal/nodes")).await.status, 401);
}

#[tokio::test]
async fn active_queries_are_listed_like_upstream() {
    let cl = spawn(ClusterConfig {
        nodes: 2,
        demo: true,
        active_queries: vec!["users=Count(All())".parse().unwrap()],
        ..Default::default()
    })
    .unwrap();
    let c = client();
    let urls = cl.urls();
    let a = get(&c, format!("{}/queries", urls[1])).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.header(CONTENT_TYPE), Some("application/json"));
    let list = a.json();
    let q = &list.as_array().unwrap()[0];
    assert_eq!(q.as_object().unwrap().keys().collect::<Vec<_>>(), ["PQL", "node", "index", "age"]);
    assert_eq!((q["PQL"].as_str(), q["index"].as_str()), (Some("Count(All())"), Some("users")));
    assert_eq!(q["node"].as_str(), Some(cl.node_ids()[1].as_str()));
    assert!(q["age"].as_u64().is_some());
    // Injected over HTTP on one node; cleared; the text form (no Accept header: text).
    cl.set_active_queries(&[]);
    assert_eq!(get(&c, format!("{}/queries", urls[0])).await.text(), "[]\n");
    let a =
        send(c.post(format!("{}/_fbkit/query?index=users&node=0", urls[1])).body("Delete(Row(color=\"red\"))")).await;
    assert_eq!(a.status, 200);
    let a = send(c.get(format!("{}/queries", urls[0]))).await;
    assert_eq!(a.header(CONTENT_TYPE), Some("text/plain"));
    let text = a.text();
    assert!(text.ends_with("\"Delete(Row(color=\\\"red\\\"))\"\n\n"), "{text:?}");
    assert_eq!(get(&c, format!("{}/queries", urls[1])).await.text(), "[]\n", "only node 0 runs it");
    let a = send(c.get(format!("{}/queries", urls[0])).header(ACCEPT, "image/png")).await;
    assert_eq!((a.status.as_u16(), a.text().as_str()), (406, "no acceptable response type selected\n"));
    let a = send(c.delete(format!("{}/_fbkit/query", urls[0]))).await;
    assert_eq!(a.status, 200);
    assert_eq!(get(&c, format!("{}/queries", urls[0])).await.text(), "[]\n");
}

#[tokio::test]
async fn demo_schema_has_upstream_default_bounds_exactly() {
    let cl = demo(1, 1);
    let c = client();
    let a = get(&c, format!("{}/schema", cl.urls()[0])).await;
    let text = a.text();
    // Exact spelling on the wire (no float rounding).
    assert!(
        text.contains(r#"{"name":"price","createdAt":1700000005000000000,"owner":"demo","options":{"type":"decimal","base":0,"scale":2,"bitDepth":0,"min":-92233720368547758.08,"max":92233720368547758.07,"keys":false}}"#),
        "{text}"
    );
    assert!(
        text.contains(r#""options":{"type":"timestamp","epoch":"1970-01-01T00:00:00Z","bitDepth":0,"min":-62135596799,"max":253402300799,"timeUnit":"s"}"#),
        "{text}"
    );
    assert!(
        text.contains(r#""options":{"type":"time","timeQuantum":"YMD","keys":false,"noStandardView":false,"ttl":0}"#)
    );
    // The demo shards hold bit-sliced values for both.
    let a = get_bin(&c, format!("{}/internal/index/events/shard/0/snapshot", cl.urls()[0])).await;
    let bm = rbf::read_bitmaps(&a.body).unwrap();
    for (field, view) in [("price", "bsig_price"), ("at", "bsig_at")] {
        let bits = &bm[&rbf::fragment_key(field, view)];
        let exists = bits.iter().filter(|&&p| p < SHARD_WIDTH).count();
        assert!(exists > 1000, "{field}: {exists} records");
        assert!(bits.iter().any(|&p| p >= 2 * SHARD_WIDTH), "{field} has value bits");
    }
}

#[tokio::test]
async fn post_schema_reads_decimals_like_upstream() {
    let cl = spawn(ClusterConfig::default()).unwrap();
    let c = client();
    let url = &cl.urls()[0];
    // A bound in exponent form (what a float-based client writes) is refused.
    let a = send(c.post(format!("{url}/schema")).body(
        r#"{"indexes":[{"name":"x","fields":[{"name":"d","options":{"type":"decimal","scale":2,"min":-9.223372036854776e+16,"max":1}}]}]}"#,
    ))
    .await;
    assert_eq!(
        (a.status.as_u16(), a.text().as_str()),
        (
            400,
            "decoding request as JSON Pilosa schema: parsing decimal: -9.223372036854776e+16: converting mantissa string to uint64: strconv.ParseUint: parsing \"9223372036854776e+\": invalid syntax\n"
        )
    );
    assert_eq!(get(&c, format!("{url}/schema")).await.text(), "{\"indexes\":[]}\n", "nothing created");
    // Exact bounds are kept exactly, re-spelt as upstream prints them; zero bounds widened.
    let a = send(c.post(format!("{url}/schema")).body(
        r#"{"indexes":[{"name":"x","fields":[
            {"name":"d","options":{"type":"decimal","scale":2,"min":-92233720368547758.08,"max":1.50}},
            {"name":"z","options":{"type":"decimal","scale":3,"min":0,"max":0.000}},
            {"name":"n","options":{"type":"int","min":0,"max":9223372036854775807}}]}]}"#,
    ))
    .await;
    assert_eq!(a.status, 204, "{}", a.text());
    let text = get(&c, format!("{url}/schema")).await.text();
    assert!(text.contains(r#""scale":2,"bitDepth":0,"min":-92233720368547758.08,"max":1.5,"#), "{text}");
    assert!(
        text.contains(r#""scale":3,"bitDepth":0,"min":-9223372036854775.808,"max":9223372036854775.807,"#),
        "{text}"
    );
    assert!(text.contains(r#""min":-9223372036854775808,"max":9223372036854775807,"#), "{text}");
}

#[tokio::test]
async fn post_index_and_field_create_like_upstream() {
    let cl = spawn(ClusterConfig { nodes: 2, ..Default::default() }).unwrap();
    let c = client();
    let urls = cl.urls();
    let a = post_json(&c, format!("{}/index/imp", urls[0]), r#"{"options":{"keys":true}}"#).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.header(CONTENT_TYPE), Some("application/json"));
    let created = a.json()["createdAt"].as_i64().unwrap();
    assert!(a.text().starts_with("{\"success\":true,\"name\":\"imp\",\"createdAt\":"));
    let a = post_json(&c, format!("{}/index/imp", urls[1]), "").await;
    assert_eq!(a.status, 409);
    assert_eq!(
        a.text(),
        format!(
            "{{\"success\":false,\"name\":\"imp\",\"createdAt\":{created},\"error\":{{\"message\":\"creating index: index already exists\"}}}}\n"
        )
    );
    let a = post_json(&c, format!("{}/index/bad", urls[0]), r#"{"options":{"colour":1}}"#).await;
    assert_eq!((a.status.as_u16(), a.json()["error"]["message"].as_str()), (500, Some("unknown key: colour:1")));
    // An int field keeps a bound of 0 here (POST /schema would widen it).
    let a =
        post_json(&c, format!("{}/index/imp/field/age", urls[0]), r#"{"options":{"type":"int","min":0,"max":150}}"#)
            .await;
    assert_eq!(a.status, 200, "{}", a.text());
    let a = post_json(&c, format!("{}/index/imp/field/price", urls[0]), r#"{"options":{"type":"decimal","scale":2}}"#)
        .await;
    assert_eq!(a.status, 200, "{}", a.text());
    let a =
        post_json(&c, format!("{}/index/imp/field/at", urls[0]), r#"{"options":{"type":"timestamp","timeUnit":"s"}}"#)
            .await;
    assert_eq!(a.status, 200, "{}", a.text());
    let a = post_json(&c, format!("{}/index/imp/field/age", urls[1]), r#"{"options":{"type":"int"}}"#).await;
    assert_eq!(a.status, 409);
    assert!(a.text().contains("creating field: field already exists"));
    let a = post_json(&c, format!("{}/index/imp/field/d2", urls[0]), r#"{"options":{"type":"decimal"}}"#).await;
    assert_eq!(
        (a.status.as_u16(), a.json()["error"]["message"].as_str()),
        (400, Some("decimal field requires a scale argument"))
    );
    let a =
        post_json(&c, format!("{}/index/imp/field/i2", urls[0]), r#"{"options":{"type":"int","min":5,"max":1}}"#).await;
    assert_eq!(
        (a.status.as_u16(), a.text().as_str()),
        (400, "applying option: int field min cannot be greater than max\n")
    );
    let a = post_json(&c, format!("{}/index/imp/field/x", urls[0]), r#"{"options":{"type":"set","bogus":1}}"#).await;
    assert_eq!(
        (a.status.as_u16(), a.json()["error"]["message"].as_str()),
        (500, Some("json: unknown field \"bogus\""))
    );
    let a = post_json(&c, format!("{}/index/nope/field/x", urls[0]), "").await;
    assert_eq!((a.status.as_u16(), a.json()["error"]["message"].as_str()), (404, Some("nope: index not found")));
    // The schema, on every node.
    let s = get(&c, format!("{}/schema", urls[1])).await.json();
    let idx = &s["indexes"][0];
    assert_eq!(
        idx["options"],
        serde_json::json!({"keys": true, "trackExistence": true, "partitionN": 0, "description": ""})
    );
    let field = |n: &str| idx["fields"].as_array().unwrap().iter().find(|f| f["name"] == n).unwrap()["options"].clone();
    assert_eq!(
        field("age"),
        serde_json::json!({"type": "int", "base": 0, "bitDepth": 0, "min": 0, "max": 150, "keys": false, "foreignIndex": ""})
    );
    let text = get(&c, format!("{}/schema", urls[1])).await.text();
    assert!(text.contains(r#""min":-92233720368547758.08,"max":92233720368547758.07"#), "{text}");
    assert!(text.contains(
        r#""epoch":"1970-01-01T00:00:00Z","bitDepth":0,"min":-62135596799,"max":253402300799,"timeUnit":"s""#
    ));
    assert!(idx["updatedAt"].as_i64().unwrap() > created);
}
