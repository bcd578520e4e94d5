//! Fault injection: the `--fault SPEC` grammar and the cluster's live fault table.
//!
//! A SPEC is `KIND[@NODE][:ARG...]`. NODE is a node index from 0; without it the fault
//! applies to every node. PREFIX arguments are request path prefixes (default `/`, i.e.
//! every request). The kinds:
//!
//! | spec | effect |
//! |---|---|
//! | `down[@N]` | the node stops listening (connections refused, open connections dropped); it listens again on the same port when the fault is cleared. The other nodes list it STARTED until the cluster notices (`degraded_after`), then UNKNOWN |
//! | `hang[@N][:PREFIX]` | requests are read but never answered (until the fault is cleared); without PREFIX the node is frozen and the cluster notices it like a down node |
//! | `error[@N]:STATUS[:COUNT[:PREFIX]]` | the next COUNT matching requests (every one when COUNT is `*` or absent) answer STATUS |
//! | `cut[@N]:BYTES[:PREFIX]` | response bodies end after BYTES bytes although the headers promise more |
//! | `slow[@N]:BYTES_PER_SEC[:PREFIX]` | response bodies are sent at that rate |
//! | `churn[:STEPS[:INTERVAL_MS]]` | the cluster keeps adding keys, ID allocations and shard bits (whole cluster, no NODE) |
//!
//! The control routes (`/_fbkit/fault`) are exempt from every fault except `down`.
//!
//! Layer: leaf (imports no other module of this crate).

use std::fmt;
use std::str::FromStr;

/// Default number of churn steps.
pub const DEFAULT_CHURN_STEPS: u64 = 2000;
/// Default pause between churn steps, in milliseconds.
pub const DEFAULT_CHURN_INTERVAL_MS: u64 = 2;

/// What a fault does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FaultKind {
    /// Stop listening.
    Down,
    /// Read requests under the prefix, never answer.
    Hang { prefix: String },
    /// Answer `status` to the next `count` requests under the prefix (`None`: all of them).
    Error { status: u16, count: Option<u64>, prefix: String },
    /// End bodies under the prefix after `bytes` bytes.
    Cut { bytes: u64, prefix: String },
    /// Send bodies under the prefix at `rate` bytes per second.
    Slow { rate: u64, prefix: String },
    /// Keep changing the cluster's data for `steps` steps, `interval_ms` apart.
    Churn { steps: u64, interval_ms: u64 },
}

/// One parsed `--fault` specification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FaultSpec {
    /// The effect.
    pub kind: FaultKind,
    /// The node it applies to; `None` means every node.
    pub node: Option<usize>,
}

/// Why a SPEC was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid fault spec {spec:?}: {reason}")]
pub struct FaultSpecError {
    spec: String,
    reason: String,
}

impl FaultSpec {
    /// Whether this fault concerns requests to `node` for `path`.
    pub(crate) fn applies(&self, node: usize, path: &str) -> bool {
        if self.node.is_some_and(|n| n != node) {
            return false;
        }
        match &self.kind {
            FaultKind::Hang { prefix }
            | FaultKind::Error { prefix, .. }
            | FaultKind::Cut { prefix, .. }
            | FaultKind::Slow { prefix, .. } => path.starts_with(prefix.as_str()),
            FaultKind::Down | FaultKind::Churn { .. } => false,
        }
    }

    /// Check that the node index exists in a cluster of `nodes` nodes.
    pub fn check_node(&self, nodes: usize) -> Result<(), FaultSpecError> {
        match self.node {
            Some(n) if n >= nodes => Err(FaultSpecError {
                spec: self.to_string(),
                reason: format!("node {n} does not exist (the cluster has {nodes} nodes, numbered from 0)"),
            }),
            _ => Ok(()),
        }
    }
}

impl FromStr for FaultSpec {
    type Err = FaultSpecError;

    fn from_str(spec: &str) -> Result<Self, Self::Err> {
        let bad = |reason: &str| FaultSpecError { spec: spec.to_string(), reason: reason.to_string() };
        let spec_trim = spec.trim();
        let mut parts = spec_trim.split(':');
        let head = parts.next().unwrap_or_default();
        let args: Vec<&str> = parts.collect();
        let (kind_name, node) = match head.split_once('@') {
            Some((k, n)) => {
                let n: usize = n.parse().map_err(|_| bad("NODE after '@' must be a node index (0, 1, ...)"))?;
                (k, Some(n))
            }
            None => (head, None),
        };
        let prefix_at = |i: usize| -> Result<String, FaultSpecError> {
            match args.get(i) {
                None => Ok("/".to_string()),
                Some(p) if p.starts_with('/') => Ok((*p).to_string()),
                Some(_) => Err(bad("PREFIX must start with '/'")),
            }
        };
        let number = |i: usize, what: &str| -> Result<u64, FaultSpecError> {
            args.get(i)
                .ok_or_else(|| bad(&format!("missing {what}")))?
                .parse()
                .map_err(|_| bad(&format!("{what} must be a whole number")))
        };
        let max_args = |n: usize| {
            if args.len() > n {
                Err(bad("too many ':' arguments"))
            } else {
                Ok(())
            }
        };
        let kind = match kind_name {
            "down" => {
                max_args(0)?;
                FaultKind::Down
            }
            "hang" => {
                max_args(1)?;
                FaultKind::Hang { prefix: prefix_at(0)? }
            }
            "error" => {
                max_args(3)?;
                let status = number(0, "STATUS")?;
                if !(100..=599).contains(&status) {
                    return Err(bad("STATUS must be an HTTP status code (100-599)"));
                }
                let count = match args.get(1) {
                    None | Some(&"*") | Some(&"") => None,
                    Some(_) => Some(number(1, "COUNT")?),
                };
                if count == Some(0) {
                    return Err(bad("COUNT must be at least 1 (or '*' for every request)"));
                }
                FaultKind::Error { status: status as u16, count, prefix: prefix_at(2)? }
            }
            "cut" => {
                max_args(2)?;
                FaultKind::Cut { bytes: number(0, "BYTES")?, prefix: prefix_at(1)? }
            }
            "slow" => {
                max_args(2)?;
                let rate = number(0, "BYTES_PER_SEC")?;
                if rate == 0 {
                    return Err(bad("BYTES_PER_SEC must be at least 1"));
                }
                FaultKind::Slow { rate, prefix: prefix_at(1)? }
            }
            "churn" => {
                max_args(2)?;
                if node.is_some() {
                    return Err(bad("churn changes the whole cluster; it takes no @NODE"));
                }
                let steps = if args.is_empty() { DEFAULT_CHURN_STEPS } else { number(0, "STEPS")? };
                let interval_ms = if args.len() < 2 { DEFAULT_CHURN_INTERVAL_MS } else { number(1, "INTERVAL_MS")? };
                FaultKind::Churn { steps, interval_ms }
            }
            "" => return Err(bad("empty fault kind")),
            _ => return Err(bad("unknown kind (expected down, hang, error, cut, slow or churn)")),
        };
        Ok(FaultSpec { kind, node })
    }
}

impl fmt::Display for FaultSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let at = |f: &mut fmt::Formatter<'_>| match self.node {
            Some(n) => write!(f, "@{n}"),
            None => Ok(()),
        };
        match &self.kind {
            FaultKind::Down => {
                f.write_str("down")?;
                at(f)
            }
            FaultKind::Hang { prefix } => {
                f.write_str("hang")?;
                at(f)?;
                write!(f, ":{prefix}")
            }
            FaultKind::Error { status, count, prefix } => {
                f.write_str("error")?;
                at(f)?;
                match count {
                    Some(c) => write!(f, ":{status}:{c}:{prefix}"),
                    None => write!(f, ":{status}:*:{prefix}"),
                }
            }
            FaultKind::Cut { bytes, prefix } => {
                f.write_str("cut")?;
                at(f)?;
                write!(f, ":{bytes}:{prefix}")
            }
            FaultKind::Slow { rate, prefix } => {
                f.write_str("slow")?;
                at(f)?;
                write!(f, ":{rate}:{prefix}")
            }
            FaultKind::Churn { steps, interval_ms } => write!(f, "churn:{steps}:{interval_ms}"),
        }
    }
}

/// What the active faults do to one request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct RequestFaults {
    pub hang: bool,
    pub error: Option<u16>,
    pub cut: Option<u64>,
    pub slow: Option<u64>,
}

/// An installed fault, with the requests an `error` fault still has to spoil.
#[derive(Debug, Clone)]
struct ActiveFault {
    spec: FaultSpec,
    remaining: Option<u64>,
}

/// The cluster's fault table.
#[derive(Debug, Default)]
pub(crate) struct FaultTable {
    active: Vec<ActiveFault>,
}

impl FaultTable {
    /// Install a fault (churn is run by the caller and not kept here).
    pub fn add(&mut self, spec: FaultSpec) {
        let remaining = match &spec.kind {
            FaultKind::Error { count, .. } => *count,
            _ => None,
        };
        self.active.push(ActiveFault { spec, remaining });
    }

    /// Remove every fault.
    pub fn clear(&mut self) {
        self.active.clear();
    }

    /// The installed faults, in the order they were added.
    pub fn specs(&self) -> Vec<FaultSpec> {
        self.active.iter().map(|a| a.spec.clone()).collect()
    }

    /// Whether `node` is down.
    pub fn is_down(&self, node: usize) -> bool {
        self.active.iter().any(|a| a.spec.kind == FaultKind::Down && a.spec.node.unwrap_or(node) == node)
    }

    /// Whether `node` is frozen: a `hang` on every path (prefix `/`) applies to it, as for a
    /// SIGSTOPped process whose port still accepts connections. The cluster notices such a
    /// node like a `down` one (its heartbeats stop).
    pub fn is_frozen(&self, node: usize) -> bool {
        self.active.iter().any(|a| {
            matches!(&a.spec.kind, FaultKind::Hang { prefix } if prefix == "/") && a.spec.node.unwrap_or(node) == node
        })
    }

    /// Look at the request without consuming `error` counts (used while a request hangs).
    pub fn peek_hang(&self, node: usize, path: &str) -> bool {
        self.active.iter().any(|a| matches!(a.spec.kind, FaultKind::Hang { .. }) && a.spec.applies(node, path))
    }

    /// Decide what happens to a request; consumes one count of the first matching `error`.
    pub fn on_request(&mut self, node: usize, path: &str) -> RequestFaults {
        let mut out = RequestFaults { hang: self.peek_hang(node, path), ..Default::default() };
        if out.hang {
            return out;
        }
        let mut exhausted = None;
        for (i, a) in self.active.iter_mut().enumerate() {
            if !a.spec.applies(node, path) {
                continue;
            }
            match &a.spec.kind {
                FaultKind::Error { status, .. } if out.error.is_none() => {
                    out.error = Some(*status);
                    if let Some(r) = a.remaining.as_mut() {
                        *r -= 1;
                        if *r == 0 {
                            exhausted = Some(i);
                        }
                    }
                }
                FaultKind::Cut { bytes, .. } => out.cut = Some(out.cut.map_or(*bytes, |c| c.min(*bytes))),
                FaultKind::Slow { rate, .. } => out.slow = Some(out.slow.map_or(*rate, |s| s.min(*rate))),
                _ => {}
            }
        }
        if let Some(i) = exhausted {
            self.active.remove(i);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse_and_print() {
        let cases = [
            ("down@1", "down@1"),
            ("hang@1", "hang@1:/"),
            ("error@1:503:5:/internal/", "error@1:503:5:/internal/"),
            ("error:500", "error:500:*:/"),
            ("cut@1:4096:/internal/index/", "cut@1:4096:/internal/index/"),
            ("slow@1:1048576", "slow@1:1048576:/"),
            ("churn", "churn:2000:2"),
            ("churn:10:0", "churn:10:0"),
        ];
        for (input, shown) in cases {
            let spec: FaultSpec = input.parse().unwrap();
            assert_eq!(spec.to_string(), shown);
            assert_eq!(shown.parse::<FaultSpec>().unwrap(), spec);
        }
    }

    #[test]
    fn bad_specs_are_refused() {
        for bad in [
            "",
            "explode",
            "down@x",
            "down:1",
            "error@1",
            "error:99",
            "error:503:0",
            "cut@1",
            "slow:0",
            "cut:10:internal",
            "churn@1",
            "hang:/a:/b",
        ] {
            assert!(bad.parse::<FaultSpec>().is_err(), "{bad}");
        }
        let spec: FaultSpec = "down@3".parse().unwrap();
        assert!(spec.check_node(3).is_err());
        assert!(spec.check_node(4).is_ok());
    }

    #[test]
    fn error_counts_run_out() {
        let mut t = FaultTable::default();
        t.add("error@1:503:2:/internal/".parse().unwrap());
        assert_eq!(t.on_request(0, "/internal/nodes").error, None);
        assert_eq!(t.on_request(1, "/status").error, None);
        assert_eq!(t.on_request(1, "/internal/nodes").error, Some(503));
        assert_eq!(t.on_request(1, "/internal/nodes").error, Some(503));
        assert_eq!(t.on_request(1, "/internal/nodes").error, None);
        assert!(t.specs().is_empty());
    }

    #[test]
    fn down_applies_per_node_or_everywhere() {
        let mut t = FaultTable::default();
        t.add("down@2".parse().unwrap());
        assert!(t.is_down(2) && !t.is_down(0));
        t.clear();
        t.add("down".parse().unwrap());
        assert!(t.is_down(0) && t.is_down(5));
        t.clear();
        t.add("hang@1:/internal/".parse().unwrap());
        assert!(!t.is_frozen(1), "a hang under a prefix leaves the node alive");
        t.add("hang@2".parse().unwrap());
        assert!(t.is_frozen(2) && !t.is_frozen(1) && !t.is_down(2));
    }
}
