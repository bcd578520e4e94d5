//! Finishing a restore that broke off (`fb-import --resume`, contract §3): what the target
//! already holds is read the way `fb-manifest --host` reads a cluster (an export hashed as it
//! streams, every entry's content digest computed, nothing kept), and only the entries it
//! lacks or holds differently are sent again. The schema step accepts a target whose schema
//! is the backup's or a part of it (creating what is missing) and refuses any other (78).
//!
//! An entry counts as held when the target serves the same bytes (shards, dataframes: a
//! restore keeps them byte for byte) or the same content (key stores and idalloc, which
//! FeatureBase rewrites when it receives them; see [`crate::content`]).

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::Value;

use crate::client::ClusterClient;
use crate::content::{self, Content};
use crate::error::{Error, Result};
use crate::export::{export, ExportOptions};
use crate::layout::EntryKind;
use crate::manifest::hex;
use crate::schema::{field_api_options, FieldToCreate};
use crate::verify::{scan_stream, ScanMode};

/// What the target serves: per entry path, its SHA-256 (hex) and content digest.
#[derive(Debug, Default)]
pub struct TargetState {
    entries: BTreeMap<String, (String, Option<Content>)>,
}

impl TargetState {
    /// Export the target into a scan (a client of its own, so the run's progress and events
    /// are not mixed with this read).
    pub async fn read(client: &ClusterClient) -> Result<TargetState> {
        let reader_client = Arc::new(ClusterClient::new(client.options(), crate::events::silent())?);
        let (reader, writer) = std::io::pipe().map_err(|e| Error::io("creating a pipe", e))?;
        let events = crate::events::silent();
        let scan = tokio::task::spawn_blocking(move || {
            scan_stream(reader, ScanMode { deep: false, content: true, ..ScanMode::default() }, &events)
        });
        let exported = export(reader_client, &ExportOptions::default(), writer).await.map(|(w, _)| drop(w));
        let scan = scan.await.map_err(|e| Error::internal(format!("the scan of the target ended early: {e}")))?;
        exported.map_err(|e| e.context("reading what the target holds (an export of it)"))?;
        if let Some(e) = scan.stopped {
            return Err(e.context("reading what the target holds"));
        }
        let entries = scan.entries.into_iter().map(|e| (e.path.to_string(), (hex(&e.sha256), e.content))).collect();
        Ok(TargetState { entries })
    }

    /// Whether the target holds the backup's entry `path` (its SHA-256 in hex, and its
    /// content digest where the backup's bytes were decoded).
    pub fn holds(&self, path: &str, sha256: &str, content: Option<&Content>) -> bool {
        let Some((sha, have)) = self.entries.get(path) else { return false };
        if sha == sha256 {
            return true;
        }
        let kind = crate::layout::EntryPath::parse(path).map(|p| p.kind()).ok();
        let by_content = matches!(kind, Some(EntryKind::IndexKeys | EntryKind::FieldKeys | EntryKind::Idalloc));
        by_content && matches!((content, have), (Some(a), Some(b)) if a.same_as(b))
    }

    /// Entries the target serves.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the target serves no entry.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// What must still be created on a target for the backup's schema.
#[derive(Debug, Default)]
pub struct SchemaSteps {
    /// A schema document with the indexes the target lacks (their fields included), for the
    /// usual schema step; `None` when it has them all.
    pub indexes: Option<Vec<u8>>,
    /// Fields of indexes the target has, that it lacks (created through the field API).
    pub fields: Vec<FieldToCreate>,
}

fn named<'a>(list: Option<&'a Value>, name: &str) -> Option<&'a Value> {
    list?.as_array()?.iter().find(|x| x.get("name").and_then(Value::as_str) == Some(name))
}

fn one_field_doc(index: &Value, field: &Value) -> Vec<u8> {
    let mut idx = index.clone();
    if let Some(o) = idx.as_object_mut() {
        o.insert("fields".into(), Value::Array(vec![field.clone()]));
    }
    serde_json::to_vec(&serde_json::json!({ "indexes": [idx] })).unwrap_or_default()
}

/// Compare the backup's schema with the target's: indexes and fields the target lacks are to
/// be created; anything the target has that differs from the backup (an index or field of
/// other options, by the content rules: stamps, owners and upstream's bound rewrite aside)
/// is refused (78) naming it, and with `strict` so is an index or field the backup does not
/// have.
pub fn schema_steps(backup: &[u8], target: &[u8], strict: bool) -> Result<SchemaSteps> {
    let parse = |b: &[u8], what: &str| -> Result<Value> {
        serde_json::from_slice(b).map_err(|e| Error::protocol(format!("{what} is not JSON")).with_source(e))
    };
    let (b, t) = (parse(backup, "the backup's schema")?, parse(target, "the target's schema")?);
    let empty = Vec::new();
    let list = |v: &Value| v.get("indexes").and_then(Value::as_array).cloned().unwrap_or_else(|| empty.clone());
    let (b_list, t_list) = (list(&b), list(&t));
    let mut problems = Vec::new();
    for ti in &t_list {
        let name = ti.get("name").and_then(Value::as_str).unwrap_or("");
        if strict && named(b.get("indexes"), name).is_none() {
            problems.push(format!("the target has index {name:?}, which the backup does not"));
        }
    }
    let mut missing = Vec::new();
    let mut fields = Vec::new();
    for bi in &b_list {
        let iname = bi.get("name").and_then(Value::as_str).unwrap_or("");
        let Some(ti) = named(t.get("indexes"), iname) else {
            missing.push(bi.clone());
            continue;
        };
        if bi.pointer("/options/keys") != ti.pointer("/options/keys")
            || bi.pointer("/options/trackExistence") != ti.pointer("/options/trackExistence")
        {
            problems.push(format!("index {iname:?} has other options on the target"));
        }
        for tf in ti.get("fields").and_then(Value::as_array).into_iter().flatten() {
            let fname = tf.get("name").and_then(Value::as_str).unwrap_or("");
            if strict && named(bi.get("fields"), fname).is_none() {
                problems.push(format!("the target has field {fname:?} of index {iname:?}, which the backup does not"));
            }
        }
        for bf in bi.get("fields").and_then(Value::as_array).into_iter().flatten() {
            let fname = bf.get("name").and_then(Value::as_str).unwrap_or("");
            match named(ti.get("fields"), fname) {
                None => fields.push(FieldToCreate {
                    index: iname.to_string(),
                    field: fname.to_string(),
                    options: bf.get("options").and_then(Value::as_object).map(field_api_options).unwrap_or_default(),
                }),
                Some(tf) => {
                    let same = content::digest(EntryKind::Schema, &one_field_doc(bi, bf))
                        .same_as(&content::digest(EntryKind::Schema, &one_field_doc(bi, tf)));
                    if !same {
                        problems.push(format!(
                            "field {fname:?} of index {iname:?}: the target has {}, the backup {}",
                            tf.get("options").cloned().unwrap_or_default(),
                            bf.get("options").cloned().unwrap_or_default()
                        ));
                    }
                }
            }
        }
    }
    if !problems.is_empty() {
        return Err(Error::precondition(format!(
            "the target's schema is not the backup's, so this is not an interrupted restore of it: {}",
            problems.join("; ")
        )));
    }
    let indexes = if missing.is_empty() {
        None
    } else {
        Some(
            serde_json::to_vec(&serde_json::json!({ "indexes": missing }))
                .map_err(|e| Error::internal("encoding a schema").with_source(e))?,
        )
    };
    Ok(SchemaSteps { indexes, fields })
}

#[cfg(test)]
mod tests {
    use super::*;

    const BACKUP: &str = r#"{"indexes":[
        {"name":"a","createdAt":1,"options":{"keys":true,"trackExistence":true},"fields":[
            {"name":"age","createdAt":2,"owner":"me","options":{"type":"int","base":0,"bitDepth":0,"min":0,"max":150,"keys":false,"foreignIndex":""}},
            {"name":"c","options":{"type":"set","cacheType":"ranked","cacheSize":50000,"keys":true}}]},
        {"name":"b","options":{"keys":false,"trackExistence":true},"fields":[]}]}"#;

    #[test]
    fn a_part_of_the_backups_schema_is_completed() {
        // Index a created with c (POST /schema) but not yet age (the field API); b missing.
        let target = r#"{"indexes":[{"name":"a","createdAt":9,"options":{"keys":true,"trackExistence":true},"fields":[
            {"name":"c","createdAt":9,"owner":"","options":{"type":"set","cacheType":"ranked","cacheSize":50000,"keys":true}}]}]}"#;
        let steps = schema_steps(BACKUP.as_bytes(), target.as_bytes(), true).unwrap();
        let indexes = String::from_utf8(steps.indexes.unwrap()).unwrap();
        assert!(indexes.contains(r#""name":"b""#) && !indexes.contains(r#""name":"a""#), "{indexes}");
        assert_eq!(steps.fields.len(), 1);
        assert_eq!(steps.fields[0].field, "age");
        assert_eq!(steps.fields[0].options["min"], 0);
        let same = schema_steps(BACKUP.as_bytes(), BACKUP.as_bytes(), true).unwrap();
        assert!(same.indexes.is_none() && same.fields.is_empty());
    }

    #[test]
    fn another_schema_is_refused_naming_the_difference() {
        let other = BACKUP.replace(r#""max":150"#, r#""max":99"#);
        let e = schema_steps(BACKUP.as_bytes(), other.as_bytes(), false).unwrap_err();
        assert_eq!(e.exit_code(), 78);
        assert!(e.message().contains("\"age\""), "{}", e.message());
        let extra = r#"{"indexes":[{"name":"z","options":{},"fields":[]}]}"#;
        let e = schema_steps(BACKUP.as_bytes(), extra.as_bytes(), true).unwrap_err();
        assert!(e.message().contains("\"z\""), "{}", e.message());
        let force = schema_steps(BACKUP.as_bytes(), extra.as_bytes(), false).unwrap();
        assert!(force.indexes.is_some(), "--force leaves other indexes alone and creates the backup's");
    }

    #[test]
    fn held_entries_are_told_by_bytes_or_by_bbolt_content() {
        let mut state = TargetState::default();
        state.entries.insert("indexes/a/shards/0000".into(), ("aa".into(), None));
        let key = Content::Digest([7; 32]);
        state.entries.insert("indexes/a/translate/0001".into(), ("bb".into(), Some(key.clone())));
        assert!(state.holds("indexes/a/shards/0000", "aa", None));
        assert!(!state.holds("indexes/a/shards/0000", "ab", Some(&Content::Digest([1; 32]))));
        assert!(state.holds("indexes/a/translate/0001", "cc", Some(&key)), "a rewritten key store");
        assert!(!state.holds("indexes/a/translate/0001", "cc", Some(&Content::Digest([8; 32]))));
        assert!(!state.holds("indexes/a/translate/0002", "bb", Some(&key)));
    }
}
