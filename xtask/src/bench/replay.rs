//! The baselines replay fbkit's own requests with curl: the GETs fb-export makes, and the
//! requests fb-import makes, both read from the tool's `-vv` log.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{anyhow, ensure, Context, Result};
use fb_core::layout::EntryPath;

use crate::process::{Run, Runner};

/// `curl` fetching the URLs of `cfg` to stdout, `c` at a time, in list order.
pub fn curl_get(cfg: &Path, c: usize) -> Command {
    let mut curl = Command::new("curl");
    curl.arg("-s").arg("-K").arg(cfg);
    if c > 1 {
        curl.args(["--parallel", "--parallel-max", &c.to_string()]);
    }
    curl
}

/// The `METHOD URL` lines a tool logs with -vv (`fb-x: GET http://...`).
pub fn logged_requests(log: &Path, tool: &str) -> Result<Vec<(String, String)>> {
    let text = fs::read_to_string(log)?;
    let prefix = format!("{tool}: ");
    let mut out = Vec::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix(&prefix) else { continue };
        if let Some((method @ ("GET" | "POST"), url)) = rest.split_once(' ') {
            if url.starts_with("http://") {
                out.push((method.to_string(), url.to_string()));
            }
        }
    }
    ensure!(!out.is_empty(), "{tool} -vv logged no requests; did its log format change?");
    Ok(out)
}

/// fb-import's requests, replayable with curl against another cluster of the same shape.
pub struct Replay {
    /// (method, node rank, path and query, file to upload); a node's rank is its place in
    /// the cluster's nodes ordered by ID, which is what FeatureBase places data by: a fresh
    /// real cluster names its nodes anew, so the same rank owns the same shards, not the same
    /// position in the list of URLs.
    requests: Vec<(String, usize, String, Option<PathBuf>)>,
}

/// The node URLs of the cluster `nodes` belongs to, ordered by node ID (from `/status`).
pub fn nodes_by_id(nodes: &[String]) -> Result<Vec<String>> {
    let entry = nodes.first().context("a cluster without nodes")?;
    let status = fb_devcluster::upstream::status(entry, None, None);
    let mut listed: Vec<(String, String)> = status["nodes"]
        .as_array()
        .with_context(|| format!("{entry}/status lists no nodes: {status}"))?
        .iter()
        .map(|n| {
            let uri = &n["uri"];
            let url = format!(
                "{}://{}:{}",
                uri["scheme"].as_str().unwrap_or("http"),
                uri["host"].as_str().unwrap_or(""),
                uri["port"]
            );
            (n["id"].as_str().unwrap_or("").to_string(), url)
        })
        .collect();
    listed.sort();
    ensure!(listed.len() == nodes.len(), "{entry}/status lists {} nodes, not {}", listed.len(), nodes.len());
    Ok(listed.into_iter().map(|(_, url)| url).collect())
}

impl Replay {
    /// The requests of fb-import's `-vv` log (`logged`) against the cluster of `nodes`, each upload read
    /// from the archive extracted to `extracted`, or for the schema and the fields fb-import
    /// creates one by one, the bodies it sends (written to `bodies`).
    pub fn from_log(logged: &[(String, String)], nodes: &[String], extracted: &Path, bodies: &Path) -> Result<Replay> {
        let schema_bodies = schema_bodies(extracted, bodies)?;
        let nodes = nodes_by_id(nodes)?;
        let mut requests = Vec::new();
        for (method, url) in logged {
            let (node, path) = nodes
                .iter()
                .enumerate()
                .find_map(|(i, n)| url.strip_prefix(n.as_str()).filter(|p| p.starts_with('/')).map(|p| (i, p)))
                .with_context(|| format!("{url} is not on a node of the target"))?;
            let file = if let (true, Some(body)) = (method == "POST", schema_bodies.get(path)) {
                Some(body.clone())
            } else if method == "POST" {
                let entry = entry_for_route(path).with_context(|| format!("unknown restore route {path}"))?;
                let file = extracted.join(entry.to_string());
                ensure!(file.is_file(), "{} is not in the extracted archive", file.display());
                Some(file)
            } else {
                None
            };
            requests.push((method.clone(), node, path.to_string(), file));
        }
        ensure!(requests.iter().any(|r| r.2 == "/schema" && r.0 == "POST"), "fb-import posted no schema");
        Ok(Replay { requests })
    }

    /// Everything up to the schema POST one at a time (nothing else can go before the
    /// indexes exist, as in fb-import), then the rest `parallel` at a time, into the cluster
    /// of `nodes`; curl's config files go to `tmp`.
    pub fn run(&self, runner: &mut Runner, tmp: &Path, nodes: &[String], parallel: usize) -> Result<Run> {
        let nodes = nodes_by_id(nodes)?;
        let split = self.requests.iter().position(|r| r.0 == "POST" && r.2 == "/schema").map_or(0, |i| i + 1);
        let mut total = Run::default();
        for (part, (reqs, par)) in
            [(&self.requests[..split], 1), (&self.requests[split..], parallel)].into_iter().enumerate()
        {
            if reqs.is_empty() {
                continue;
            }
            let mut cfg = String::new();
            for (i, (method, node, path, file)) in reqs.iter().enumerate() {
                if i > 0 {
                    cfg.push_str("next\n");
                }
                cfg.push_str(&format!("url = \"{}{path}\"\n", nodes[*node]));
                if let Some(file) = file {
                    let json = path == "/schema" || path.starts_with("/index/");
                    let ct = if json { "application/json" } else { "application/octet-stream" };
                    cfg.push_str(&format!(
                        "request = \"{method}\"\nupload-file = \"{}\"\nheader = \"Expect:\"\nheader = \"Content-Type: {ct}\"\nfail\n",
                        file.display()
                    ));
                }
            }
            let path = tmp.join(format!("import-{part}.curl"));
            fs::write(&path, cfg)?;
            let mut curl = Command::new("curl");
            curl.arg("-s").arg("-S").arg("-K").arg(&path);
            if par > 1 {
                curl.args(["--parallel", "--parallel-max", &par.to_string()]);
            }
            let run = runner.run_to_null(curl)?;
            total.secs += run.secs;
            total.usage.extend(run.usage);
        }
        Ok(total)
    }
}

/// The JSON bodies fb-import posts for the schema (the backup's, less the fields whose zero
/// bound `POST /schema` would lose) and for each of those fields, by route; written to `dir`.
fn schema_bodies(extracted: &Path, dir: &Path) -> Result<BTreeMap<String, PathBuf>> {
    let schema = extracted.join("schema");
    let split = fb_core::schema::split_zero_bound_fields(&fs::read(&schema)?).map_err(|e| anyhow!("schema: {e}"))?;
    fs::create_dir_all(dir)?;
    let mut bodies = BTreeMap::new();
    let posted = match split.posted {
        Some(bytes) => {
            let file = dir.join("schema.json");
            fs::write(&file, bytes)?;
            file
        }
        None => schema,
    };
    bodies.insert("/schema".to_string(), posted);
    for (i, field) in split.fields.iter().enumerate() {
        let file = dir.join(format!("field-{i}.json"));
        fs::write(&file, serde_json::to_vec(&serde_json::json!({ "options": field.options }))?)?;
        bodies.insert(format!("/index/{}/field/{}", field.index, field.field), file);
    }
    Ok(bodies)
}

/// The archive entry a restore route receives.
fn entry_for_route(path: &str) -> Option<EntryPath> {
    let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    Some(match segs[..] {
        ["schema"] => EntryPath::Schema,
        ["internal", "idalloc", "restore"] => EntryPath::Idalloc,
        ["internal", "restore", i, s] => EntryPath::Shard { index: i.into(), shard: s.parse().ok()? },
        ["internal", "dataframe", "restore", i, s] => EntryPath::Dataframe { index: i.into(), shard: s.parse().ok()? },
        ["internal", "translate", "index", i, p] => {
            EntryPath::IndexKeys { index: i.into(), partition: p.parse().ok()? }
        }
        ["internal", "translate", "field", i, f] => EntryPath::FieldKeys { index: i.into(), field: f.into() },
        _ => return None,
    })
}
