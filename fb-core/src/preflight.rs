//! What must hold of a cluster before a backup or a restore starts, and again before it is
//! declared complete (contract §5):
//!
//! - the token has admin rights: FeatureBase filters `GET /schema` down to the indexes a
//!   token may read, so a backup made with a lesser token would look complete and miss
//!   indexes. `GET /info` is admin-only upstream (`authz.Admin`), which makes it the probe;
//! - no `Delete` call is running on any node (FeatureBase's backup documentation: neither a
//!   backup nor a restore may run while one is in process). `GET /queries` lists the queries
//!   a node is running (admin-only upstream, per node);
//! - the cluster state: FeatureBase serves key translation only in state NORMAL, and answers
//!   every key-store request with 404 in DEGRADED; [`describe_state`] names the state and the
//!   nodes that are not up, for the messages that explain such a failure.

use serde::Deserialize;

use crate::client::ClusterClient;
use crate::error::{Error, ErrorKind, Result};
use crate::events::Event;
use crate::topology::{ClusterStatus, Node};

/// The part of `GET /info` fbkit uses.
#[derive(Debug, Clone, Deserialize)]
pub struct ServerInfo {
    /// The cluster's replica count as the server is configured (`replicaN`).
    #[serde(rename = "replicaN", default)]
    pub replica_n: Option<usize>,
}

/// Ask `GET /info` of the entry node, which FeatureBase answers only for an admin token.
/// A refusal is an [`ErrorKind::Auth`] error (exit 77) that says why fbkit needs admin rights.
pub async fn require_admin(client: &ClusterClient) -> Result<ServerInfo> {
    match client.get_json::<ServerInfo>(client.entry_node(), "/info").await {
        Ok(info) => Ok(info),
        Err(e) if e.kind() == ErrorKind::Auth => {
            let who = if client.options().auth_token.as_deref().is_some_and(|t| !t.is_empty()) {
                "the token given is not an admin token"
            } else {
                "the cluster requires an admin token (give it with --auth-token-file, FBKIT_AUTH_TOKEN or --auth-token)"
            };
            Err(Error::auth(format!(
                "{who}: GET /info, which FeatureBase answers only for admins, was refused. fbkit needs admin rights because FeatureBase filters the schema by the caller's permissions, so a backup or restore with a lesser token would silently miss indexes; nothing was written or sent"
            ))
            .with_source(e))
        }
        Err(e) => Err(e.context("checking admin rights (GET /info)")),
    }
}

/// One entry of `GET /queries`.
#[derive(Debug, Clone, Deserialize)]
pub struct ActiveQuery {
    /// The PQL text.
    #[serde(rename = "PQL", default)]
    pub pql: String,
    /// The SQL text, when the query came in as SQL.
    #[serde(rename = "SQL", default)]
    pub sql: String,
    /// The node running it.
    #[serde(default)]
    pub node: String,
    /// The index it runs on.
    #[serde(default)]
    pub index: String,
}

impl ActiveQuery {
    /// Whether the query deletes records: a PQL `Delete(` call or an SQL `DELETE` statement.
    pub fn is_delete(&self) -> bool {
        contains_call(&self.pql, "delete") || self.sql.split_whitespace().any(|w| w.eq_ignore_ascii_case("delete"))
    }
}

/// Whether `text` calls `name(`, ignoring case and white space before the parenthesis, and
/// not as the tail of a longer name.
fn contains_call(text: &str, name: &str) -> bool {
    let lower = text.to_ascii_lowercase();
    let bytes = lower.as_bytes();
    let mut from = 0;
    while let Some(at) = lower[from..].find(name) {
        let start = from + at;
        let end = start + name.len();
        let word_start = start == 0 || !(bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_');
        let rest = lower[end..].trim_start();
        if word_start && rest.starts_with('(') {
            return true;
        }
        from = end;
    }
    false
}

/// Refuse (exit 78) when any node the cluster lists as up is running a `Delete`. `when` says
/// at which step ("before the export", ...). A node that cannot be asked is reported as a
/// warning: it is not serving anything either.
pub async fn refuse_active_deletes(client: &ClusterClient, status: &ClusterStatus, when: &str) -> Result<()> {
    for node in status.nodes.iter().filter(|n| n.state == "STARTED") {
        let queries = match client.get_json::<Option<Vec<ActiveQuery>>>(&node.uri, "/queries").await {
            Ok(q) => q.unwrap_or_default(),
            Err(e) if e.kind() == ErrorKind::Auth || e.kind() == ErrorKind::Protocol => {
                return Err(e.context(format!("asking {} for its active queries (GET /queries)", node.uri.authority())))
            }
            Err(e) => {
                client.events().event(Event::Warning(format!(
                    "could not ask {} for its active queries: {}",
                    node.uri.authority(),
                    e.chain()
                )));
                continue;
            }
        };
        if let Some(q) = queries.iter().find(|q| q.is_delete()) {
            let text = if q.pql.is_empty() { &q.sql } else { &q.pql };
            return Err(Error::precondition(format!(
                "{when}: node {} is running a Delete on index {:?}: {text:?}; FeatureBase must not be backed up or restored while a Delete is in process; wait for it to finish and run again",
                if q.node.is_empty() { node.id.as_str() } else { q.node.as_str() },
                q.index
            )));
        }
    }
    Ok(())
}

/// The nodes `/status` does not list as up.
pub fn nodes_not_up(status: &ClusterStatus) -> Vec<&Node> {
    status.nodes.iter().filter(|n| n.state != "STARTED").collect()
}

/// "the cluster is DEGRADED (node2 at 127.0.0.1:10103 is DOWN)", for messages.
pub fn describe_state(status: &ClusterStatus) -> String {
    let down: Vec<String> = nodes_not_up(status)
        .iter()
        .map(|n| {
            let state = if n.state.is_empty() { "not up" } else { n.state.as_str() };
            format!("{} at {} is {state}", n.id, n.uri.authority())
        })
        .collect();
    if down.is_empty() {
        format!("the cluster is {}", status.state)
    } else {
        format!("the cluster is {} ({})", status.state, down.join(", "))
    }
}

/// The error for key translation that cannot be read because the cluster is not NORMAL.
pub fn key_translation_refused(status: &ClusterStatus, what: &str) -> Error {
    Error::unavailable(format!(
        "{what}: {}: FeatureBase does not serve key translation in that state; bring the node(s) back and run the export again",
        describe_state(status)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(pql: &str, sql: &str) -> ActiveQuery {
        ActiveQuery { pql: pql.into(), sql: sql.into(), node: String::new(), index: "i".into() }
    }

    #[test]
    fn deletes_are_told_from_other_queries() {
        assert!(q("Delete(Row(f=1))", "").is_delete());
        assert!(q("Count(All()) delete (Row(f=1))", "").is_delete());
        assert!(q("", "DELETE FROM t WHERE _id = 1").is_delete());
        assert!(!q("Count(Row(deleted=1))", "").is_delete());
        assert!(!q("Row(undelete=1)", "").is_delete());
        assert!(!q("Set(1, f=1)", "SELECT * FROM deletes").is_delete());
    }

    #[test]
    fn state_names_the_nodes_not_up() {
        let node = |id: &str, port: u16, state: &str| Node {
            id: id.into(),
            uri: crate::topology::NodeUri { scheme: "http".into(), host: "127.0.0.1".into(), port },
            grpc_uri: None,
            is_primary: false,
            state: state.into(),
        };
        let status = ClusterStatus {
            state: "DEGRADED".into(),
            nodes: vec![node("n0", 1, "STARTED"), node("n2", 3, "DOWN")],
            local_id: "n0".into(),
            cluster_name: String::new(),
        };
        assert_eq!(describe_state(&status), "the cluster is DEGRADED (n2 at 127.0.0.1:3 is DOWN)");
        let e = key_translation_refused(&status, "indexes/u/translate/0003");
        assert_eq!(e.exit_code(), 69);
        assert!(e.message().contains("bring the node(s) back"), "{}", e.message());
    }
}
