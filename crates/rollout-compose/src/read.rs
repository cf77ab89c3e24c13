//! Typed reads of positioned nodes: each failure names the field's path
//! and quotes what was found.

use crate::error::ComposeError;
use crate::yaml::{Entry, Node, Value};
use rollout_core::{parse_duration, UnknownWord};
use std::str::FromStr;
use std::time::Duration;

pub(crate) type Result<T> = std::result::Result<T, ComposeError>;

pub(crate) fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

pub(crate) fn expected(node: &Node, path: &str, what: &str) -> ComposeError {
    ComposeError::field(
        &node.pos,
        path,
        format!("expected {what}, found {}", node.describe()),
    )
}

/// A mapping's entries; null reads as an empty mapping.
pub(crate) fn map<'a>(node: &'a Node, path: &str) -> Result<&'a [Entry]> {
    match &node.value {
        Value::Map(entries) => Ok(entries),
        Value::Null => Ok(&[]),
        _ => Err(expected(node, path, "a mapping")),
    }
}

/// Refuses keys not in `known` (used for our own extension, where a typo
/// would otherwise be silently ignored).
pub(crate) fn only_keys(entries: &[Entry], path: &str, known: &[&str]) -> Result<()> {
    for e in entries {
        if !known.contains(&e.key.as_str()) {
            return Err(ComposeError::field(
                &e.key_pos,
                &join(path, &e.key),
                format!("unknown field; known fields are {}", known.join(", ")),
            ));
        }
    }
    Ok(())
}

pub(crate) fn string(node: &Node, path: &str) -> Result<String> {
    match &node.value {
        Value::Scalar(s) => Ok(s.text.clone()),
        _ => Err(expected(node, path, "a string")),
    }
}

/// A string or null (null reads as absent).
pub(crate) fn opt_string(node: &Node, path: &str) -> Result<Option<String>> {
    if node.is_null() {
        return Ok(None);
    }
    string(node, path).map(Some)
}

/// One of `rollout-core`'s words (an `order`, a `failure_action`), in its
/// one spelling.
pub(crate) fn word<W: FromStr<Err = UnknownWord>>(node: &Node, path: &str) -> Result<W> {
    string(node, path)?
        .parse()
        .map_err(|e: UnknownWord| ComposeError::field(&node.pos, path, e.to_string()))
}

pub(crate) fn uint(node: &Node, path: &str) -> Result<u64> {
    node.as_str()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .ok_or_else(|| expected(node, path, "a non-negative integer"))
}

pub(crate) fn port(node: &Node, path: &str) -> Result<u16> {
    node.as_str()
        .and_then(|s| s.trim().parse::<u16>().ok())
        .filter(|p| *p > 0)
        .ok_or_else(|| expected(node, path, "a port number from 1 to 65535"))
}

pub(crate) fn float(node: &Node, path: &str) -> Result<f64> {
    node.as_str()
        .and_then(|s| s.trim().parse::<f64>().ok())
        .filter(|f| f.is_finite())
        .ok_or_else(|| expected(node, path, "a number"))
}

pub(crate) fn boolean(node: &Node, path: &str) -> Result<bool> {
    match node.as_str() {
        Some("true" | "True" | "TRUE") => Ok(true),
        Some("false" | "False" | "FALSE") => Ok(false),
        _ => Err(expected(node, path, "true or false")),
    }
}

pub(crate) fn duration(node: &Node, path: &str) -> Result<Duration> {
    let Some(text) = node.as_str() else {
        return Err(expected(node, path, "a duration such as 10s or 1m30s"));
    };
    parse_duration(text).map_err(|e| ComposeError::field(&node.pos, path, e.to_string()))
}

pub(crate) fn string_list(node: &Node, path: &str) -> Result<Vec<String>> {
    match &node.value {
        Value::Null => Ok(Vec::new()),
        Value::Seq(items) => items
            .iter()
            .enumerate()
            .map(|(i, item)| string(item, &format!("{path}[{i}]")))
            .collect(),
        _ => Err(expected(node, path, "a list of strings")),
    }
}
