//! A YAML tree that remembers where each node was written.
//!
//! Compose files are read into [`Node`]s rather than straight into typed
//! structs, for three reasons: interpolation (`${VAR}`) works on the text
//! of scalars before they are typed, several files are merged node by node
//! before anything is typed, and every error must name the file, line and
//! column of the value at fault after both steps. Anchors and aliases are
//! expanded here, and merge keys (`<<`) applied, so the later steps never
//! see them.
//!
//! The parser is driven event by event in a loop, never recursively, and
//! the tree is bounded in depth and in size (alias expansion included), so
//! no input can exhaust the stack or the memory.

use crate::error::{ComposeError, Pos};
use std::collections::HashMap;
use std::sync::Arc;
use yaml_rust2::parser::{Event, Parser, Tag};
use yaml_rust2::scanner::{Marker, TScalarStyle};

/// Deepest nesting accepted; Compose files need a handful of levels.
const MAX_DEPTH: usize = 100;
/// Most nodes in one file once aliases are expanded (stops "billion laughs").
const MAX_NODES: usize = 250_000;

/// How a node of an override file merges into the same node before it
/// (Compose's `!reset` and `!override` tags).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MergeTag {
    /// The usual merge rules.
    Merge,
    /// `!reset`: the field is removed, as if never written.
    Reset,
    /// `!override`: the value replaces the earlier one whole.
    Override,
}

/// One node of a Compose file with its position.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    /// The value.
    pub value: Value,
    /// Where it was written.
    pub pos: Pos,
    /// How it merges into an earlier file's node.
    pub merge: MergeTag,
}

/// What a node holds.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// `null`, `~` or nothing.
    Null,
    /// A scalar, kept as text: Compose types values per field, after
    /// interpolation.
    Scalar(Scalar),
    /// A sequence.
    Seq(Vec<Node>),
    /// A mapping, in the order written (merge keys applied).
    Map(Vec<Entry>),
}

/// A scalar's text and whether it was written plain (unquoted).
#[derive(Debug, Clone, PartialEq)]
pub struct Scalar {
    /// The text.
    pub text: String,
    /// Written without quotes (so `true` and `10` may be read as such).
    pub plain: bool,
}

/// A key of a mapping and its value.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// The key's text.
    pub key: String,
    /// Where the key was written.
    pub key_pos: Pos,
    /// The value.
    pub value: Node,
}

impl Node {
    /// The entries, when the node is a mapping.
    pub fn as_map(&self) -> Option<&[Entry]> {
        match &self.value {
            Value::Map(entries) => Some(entries),
            _ => None,
        }
    }

    /// The items, when the node is a sequence.
    pub fn as_seq(&self) -> Option<&[Node]> {
        match &self.value {
            Value::Seq(items) => Some(items),
            _ => None,
        }
    }

    /// The text, when the node is a scalar.
    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            Value::Scalar(s) => Some(&s.text),
            _ => None,
        }
    }

    /// Whether the node is null.
    pub fn is_null(&self) -> bool {
        matches!(self.value, Value::Null)
    }

    /// The value under `key`, when the node is a mapping that has it.
    pub fn get(&self, key: &str) -> Option<&Node> {
        self.as_map()?
            .iter()
            .find(|e| e.key == key)
            .map(|e| &e.value)
    }

    /// What the node is, for "expected X, found Y" messages.
    pub fn describe(&self) -> String {
        match &self.value {
            Value::Null => "null".to_string(),
            Value::Scalar(s) => format!("{:?}", s.text),
            Value::Seq(_) => "a sequence".to_string(),
            Value::Map(_) => "a mapping".to_string(),
        }
    }
}

enum Frame {
    Seq {
        items: Vec<Node>,
        pos: Pos,
        anchor: usize,
        merge: MergeTag,
        size: usize,
    },
    Map {
        entries: Vec<(Node, Node)>,
        key: Option<Node>,
        pos: Pos,
        anchor: usize,
        merge: MergeTag,
        size: usize,
    },
}

struct Builder {
    file: Arc<str>,
    stack: Vec<Frame>,
    anchors: HashMap<usize, (Node, usize)>,
    root: Option<Node>,
    total: usize,
}

/// Parses one Compose file's text. `file` is the name errors give it.
pub fn parse(file: Arc<str>, text: &str) -> Result<Node, ComposeError> {
    let mut b = Builder {
        file: file.clone(),
        stack: Vec::new(),
        anchors: HashMap::new(),
        root: None,
        total: 0,
    };
    let mut parser = Parser::new_from_str(text);
    let mut documents = 0usize;
    loop {
        let (event, mark) = parser.next_token().map_err(|e| ComposeError::Syntax {
            pos: pos_of(&file, e.marker()),
            message: e.info().to_string(),
        })?;
        match event {
            Event::StreamEnd => break,
            Event::Nothing | Event::StreamStart | Event::DocumentEnd => {}
            Event::DocumentStart => {
                documents += 1;
                if documents > 1 {
                    return Err(ComposeError::Syntax {
                        pos: pos_of(&file, &mark),
                        message: "a compose file holds one YAML document, this is a second one"
                            .to_string(),
                    });
                }
            }
            Event::Alias(id) => {
                let (node, size) =
                    b.anchors
                        .get(&id)
                        .cloned()
                        .ok_or_else(|| ComposeError::Syntax {
                            pos: pos_of(&file, &mark),
                            message: "alias to an unknown anchor".to_string(),
                        })?;
                b.count(size, &mark)?;
                b.complete(node, size, 0)?;
            }
            Event::Scalar(text, style, anchor, tag) => {
                b.count(1, &mark)?;
                let pos = pos_of(&file, &mark);
                let merge = merge_tag(tag.as_ref());
                let forced_string = tag.as_ref().is_some_and(|t| t.suffix == "str");
                let plain = style == TScalarStyle::Plain && !forced_string;
                let value = if plain && matches!(text.as_str(), "" | "~" | "null" | "Null" | "NULL")
                {
                    Value::Null
                } else {
                    Value::Scalar(Scalar { text, plain })
                };
                b.complete(Node { value, pos, merge }, 1, anchor)?;
            }
            Event::SequenceStart(anchor, tag) => {
                b.count(1, &mark)?;
                b.push(
                    Frame::Seq {
                        items: Vec::new(),
                        pos: pos_of(&file, &mark),
                        anchor,
                        merge: merge_tag(tag.as_ref()),
                        size: 1,
                    },
                    &mark,
                )?;
            }
            Event::MappingStart(anchor, tag) => {
                b.count(1, &mark)?;
                b.push(
                    Frame::Map {
                        entries: Vec::new(),
                        key: None,
                        pos: pos_of(&file, &mark),
                        anchor,
                        merge: merge_tag(tag.as_ref()),
                        size: 1,
                    },
                    &mark,
                )?;
            }
            Event::SequenceEnd => match b.stack.pop() {
                Some(Frame::Seq {
                    items,
                    pos,
                    anchor,
                    merge,
                    size,
                }) => {
                    let node = Node {
                        value: Value::Seq(items),
                        pos,
                        merge,
                    };
                    b.complete(node, size, anchor)?;
                }
                _ => return Err(unbalanced(&file, &mark)),
            },
            Event::MappingEnd => match b.stack.pop() {
                Some(Frame::Map {
                    entries,
                    pos,
                    anchor,
                    merge,
                    size,
                    ..
                }) => {
                    let entries = finish_map(entries)?;
                    let node = Node {
                        value: Value::Map(entries),
                        pos,
                        merge,
                    };
                    b.complete(node, size, anchor)?;
                }
                _ => return Err(unbalanced(&file, &mark)),
            },
        }
    }
    Ok(b.root.unwrap_or(Node {
        value: Value::Null,
        pos: Pos::new(file, 1, 1),
        merge: MergeTag::Merge,
    }))
}

impl Builder {
    fn count(&mut self, n: usize, mark: &Marker) -> Result<(), ComposeError> {
        self.total = self.total.saturating_add(n);
        if self.total > MAX_NODES {
            return Err(ComposeError::Syntax {
                pos: pos_of(&self.file, mark),
                message: format!(
                    "the file expands to more than {MAX_NODES} nodes (aliases included)"
                ),
            });
        }
        Ok(())
    }

    fn push(&mut self, frame: Frame, mark: &Marker) -> Result<(), ComposeError> {
        if self.stack.len() >= MAX_DEPTH {
            return Err(ComposeError::Syntax {
                pos: pos_of(&self.file, mark),
                message: format!("nesting deeper than {MAX_DEPTH} levels"),
            });
        }
        self.stack.push(frame);
        Ok(())
    }

    fn complete(&mut self, node: Node, size: usize, anchor: usize) -> Result<(), ComposeError> {
        if anchor != 0 {
            self.anchors.insert(anchor, (node.clone(), size));
        }
        match self.stack.last_mut() {
            None => self.root = Some(node),
            Some(Frame::Seq {
                items, size: total, ..
            }) => {
                items.push(node);
                *total = total.saturating_add(size);
            }
            Some(Frame::Map {
                entries,
                key,
                size: total,
                ..
            }) => {
                *total = total.saturating_add(size);
                match key.take() {
                    None => *key = Some(node),
                    Some(k) => entries.push((k, node)),
                }
            }
        }
        Ok(())
    }
}

/// Checks keys, refuses duplicates and applies merge keys (`<<`): keys
/// written in the mapping win over merged ones, and of several merged
/// mappings the first that has a key gives it.
fn finish_map(raw: Vec<(Node, Node)>) -> Result<Vec<Entry>, ComposeError> {
    let mut entries: Vec<Entry> = Vec::with_capacity(raw.len());
    let mut merged: Vec<Node> = Vec::new();
    for (key, value) in raw {
        let text = match &key.value {
            Value::Scalar(s) => {
                if s.plain && s.text == "<<" {
                    merged.push(value);
                    continue;
                }
                s.text.clone()
            }
            // A bare `null:` key is the word, not a null.
            Value::Null => "null".to_string(),
            _ => {
                return Err(ComposeError::Syntax {
                    message: format!("a mapping key must be a string, found {}", key.describe()),
                    pos: key.pos,
                })
            }
        };
        if let Some(first) = entries.iter().find(|e| e.key == text) {
            return Err(ComposeError::Syntax {
                pos: key.pos,
                message: format!(
                    "key {text:?} is already defined at line {}",
                    first.key_pos.line
                ),
            });
        }
        entries.push(Entry {
            key: text,
            key_pos: key.pos,
            value,
        });
    }
    for source in merged {
        let maps: Vec<Node> = match source.value {
            Value::Map(_) => vec![source],
            Value::Seq(items) => items,
            _ => {
                return Err(ComposeError::Syntax {
                    pos: source.pos.clone(),
                    message: format!(
                        "a merge key (<<) takes a mapping or a list of mappings, found {}",
                        source.describe()
                    ),
                })
            }
        };
        for map in maps {
            let Value::Map(items) = map.value else {
                return Err(ComposeError::Syntax {
                    pos: map.pos.clone(),
                    message: format!(
                        "a merge key (<<) takes a mapping or a list of mappings, found {}",
                        map.describe()
                    ),
                });
            };
            for item in items {
                if !entries.iter().any(|e| e.key == item.key) {
                    entries.push(item);
                }
            }
        }
    }
    Ok(entries)
}

fn merge_tag(tag: Option<&Tag>) -> MergeTag {
    match tag {
        Some(t) if t.handle == "!" && t.suffix == "reset" => MergeTag::Reset,
        Some(t) if t.handle == "!" && t.suffix == "override" => MergeTag::Override,
        _ => MergeTag::Merge,
    }
}

fn pos_of(file: &Arc<str>, mark: &Marker) -> Pos {
    Pos::new(file.clone(), mark.line(), mark.col() + 1)
}

fn unbalanced(file: &Arc<str>, mark: &Marker) -> ComposeError {
    ComposeError::Syntax {
        pos: pos_of(file, mark),
        message: "unbalanced YAML structure".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(text: &str) -> Result<Node, ComposeError> {
        parse(Arc::from("compose.yaml"), text)
    }

    #[test]
    fn positions_are_one_based_line_and_column() {
        let n = p("services:\n  app:\n    image: x:1\n").unwrap();
        let image = n.get("services").unwrap().get("app").unwrap().get("image");
        let image = image.unwrap();
        assert_eq!(image.as_str(), Some("x:1"));
        assert_eq!((image.pos.line, image.pos.column), (3, 12));
    }

    #[test]
    fn anchors_and_merge_keys() {
        let n =
            p("x-base: &base\n  a: 1\n  b: 2\nsvc:\n  <<: *base\n  b: 3\nlist: [*base]\n").unwrap();
        let svc = n.get("svc").unwrap();
        assert_eq!(svc.get("a").unwrap().as_str(), Some("1"));
        assert_eq!(svc.get("b").unwrap().as_str(), Some("3"));
        let keys: Vec<_> = svc
            .as_map()
            .unwrap()
            .iter()
            .map(|e| e.key.as_str())
            .collect();
        assert_eq!(keys, ["b", "a"]);
        assert_eq!(
            n.get("list").unwrap().as_seq().unwrap()[0]
                .get("a")
                .unwrap()
                .as_str(),
            Some("1")
        );
    }

    #[test]
    fn merge_key_list_first_wins() {
        let n = p("a: &a {k: 1}\nb: &b {k: 2, j: 3}\nc:\n  <<: [*a, *b]\n").unwrap();
        let c = n.get("c").unwrap();
        assert_eq!(c.get("k").unwrap().as_str(), Some("1"));
        assert_eq!(c.get("j").unwrap().as_str(), Some("3"));
    }

    #[test]
    fn nulls_quotes_and_tags() {
        let n = p("a:\nb: ~\nc: 'null'\nd: !!str 10\ne: !reset []\nf: \"10\"\n").unwrap();
        assert!(n.get("a").unwrap().is_null());
        assert!(n.get("b").unwrap().is_null());
        assert_eq!(n.get("c").unwrap().as_str(), Some("null"));
        assert!(matches!(&n.get("d").unwrap().value, Value::Scalar(s) if !s.plain));
        assert_eq!(n.get("e").unwrap().merge, MergeTag::Reset);
        assert!(
            matches!(&n.get("f").unwrap().value, Value::Scalar(s) if !s.plain && s.text == "10")
        );
    }

    #[test]
    fn duplicate_keys_are_refused_with_both_lines() {
        let e = p("services:\n  app: {}\n  app: {}\n")
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "compose.yaml:3:3: key \"app\" is already defined at line 2"
        );
    }

    #[test]
    fn syntax_errors_name_the_place() {
        let e = p("services:\n  app:\n    image: [x\n")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("compose.yaml:4:"), "{e}");
    }

    #[test]
    fn billion_laughs_is_bounded() {
        let mut s = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..10 {
            let prev = i - 1;
            s.push_str(&format!(
                "a{i}: &a{i} [*a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}]\n"
            ));
        }
        let e = p(&s).unwrap_err().to_string();
        assert!(e.contains("more than 250000 nodes"), "{e}");
    }

    #[test]
    fn deep_nesting_is_bounded() {
        let flow = "[".repeat(100_000);
        let e = p(&flow).unwrap_err().to_string();
        assert!(e.contains("recursion limit"), "{e}");
        let block: String = (0..150).map(|i| format!("{}a:\n", " ".repeat(i))).collect();
        let e = p(&block).unwrap_err().to_string();
        assert!(e.contains("nesting deeper than 100 levels"), "{e}");
    }

    #[test]
    fn second_document_is_refused() {
        let e = p("a: 1\n---\nb: 2\n").unwrap_err().to_string();
        assert!(e.contains("second one"), "{e}");
    }

    proptest::proptest! {
        #[test]
        fn never_panics(s in "\\PC{0,200}") {
            let _ = p(&s);
        }

        #[test]
        fn never_panics_on_yamlish(s in "[a-z:&*<\\-\\[\\]{}!'\" \n#|>,?%@`]{0,120}") {
            let _ = p(&s);
        }
    }
}
