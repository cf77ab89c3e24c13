//! The part of a `Cargo.toml` that tidy reads: the package name, the
//! workspace's members and dependencies, every dependency table with the
//! line it was declared on, the library path and the test targets.
//!
//! A small reader of the TOML that Cargo manifests use (tables, dotted keys,
//! strings, booleans, arrays, inline tables), so that xtask needs no TOML
//! crate and tidy stays pure file reading.

use std::collections::BTreeMap;

/// Which table a dependency was declared in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DepKind {
    /// `[dependencies]` (or a target-specific one).
    Normal,
    /// `[dev-dependencies]`.
    Dev,
    /// `[build-dependencies]`.
    Build,
}

/// One dependency as declared.
#[derive(Debug, Clone)]
pub struct Dep {
    /// The key: the name the crate's code uses (with `-` for `_`).
    pub key: String,
    /// The table it was declared in.
    pub kind: DepKind,
    /// `package = "..."` when the key renames the crate.
    pub package: Option<String>,
    /// `workspace = true`.
    pub from_workspace: bool,
    /// The features this declaration asks for (not the workspace entry's).
    pub features: Vec<String>,
    /// 1-based line of the declaration.
    pub line: usize,
}

impl Dep {
    /// The crate's own name (`package`, else the key).
    pub fn crate_name(&self) -> &str {
        self.package.as_deref().unwrap_or(&self.key)
    }

    /// The identifier the code names it by.
    pub fn ident(&self) -> String {
        self.key.replace('-', "_")
    }
}

/// What tidy needs from one manifest.
#[derive(Debug, Default)]
pub struct Manifest {
    /// `[package] name`.
    pub package: Option<String>,
    /// `[workspace] members`.
    pub members: Vec<String>,
    /// `[workspace.dependencies]`.
    pub workspace_deps: Vec<Dep>,
    /// Every dependency table of the package.
    pub deps: Vec<Dep>,
    /// `[lib] path`.
    pub lib_path: Option<String>,
    /// The `path` of every `[[test]]` target.
    pub test_paths: Vec<String>,
}

/// A TOML value, as far as manifests need one.
#[derive(Debug, Clone, PartialEq)]
enum Value {
    Str(String),
    Bool(bool),
    Other,
    Array(Vec<Value>),
    Table(BTreeMap<String, Value>),
}

impl Value {
    fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    fn strings(&self) -> Vec<String> {
        match self {
            Value::Array(items) => items
                .iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect(),
            _ => Vec::new(),
        }
    }
}

/// Reads a manifest. `Err` names the line that could not be read.
pub fn parse(text: &str) -> Result<Manifest, String> {
    let mut m = Manifest::default();
    let mut table: Vec<String> = Vec::new();
    let mut array_table = false;
    let lines: Vec<&str> = text.lines().collect();
    let mut n = 0;
    while n < lines.len() {
        let line_no = n + 1;
        let mut line = strip_comment(lines[n]).trim().to_string();
        n += 1;
        if line.is_empty() {
            continue;
        }
        if let Some(inner) = line.strip_prefix("[[") {
            let inner = inner
                .strip_suffix("]]")
                .ok_or(format!("line {line_no}: unclosed [[table]]"))?;
            table = split_key(inner);
            array_table = true;
            if table == ["test"] {
                m.test_paths.push(String::new());
            }
            continue;
        }
        if let Some(inner) = line.strip_prefix('[') {
            let inner = inner
                .strip_suffix(']')
                .ok_or(format!("line {line_no}: unclosed [table]"))?;
            table = split_key(inner);
            array_table = false;
            // `[dependencies.serde]`: the dependency is declared here.
            if let Some((kind, name)) = dep_table_entry(&table) {
                let into = deps_of(&mut m, &table[..table.len() - 1]);
                into.push(new_dep(name, kind, line_no));
            }
            continue;
        }
        let Some(eq) = find_unquoted(&line, '=') else {
            return Err(format!("line {line_no}: expected `key = value`"));
        };
        // A value may go on over several lines (arrays, mostly).
        while !balanced(&line[eq + 1..]) && n < lines.len() {
            line.push(' ');
            line.push_str(strip_comment(lines[n]).trim());
            n += 1;
        }
        let key = split_key(&line[..eq]);
        let value =
            Value::parse_all(line[eq + 1..].trim()).map_err(|e| format!("line {line_no}: {e}"))?;
        apply(&mut m, &table, array_table, &key, value, line_no);
    }
    m.test_paths.retain(|p| !p.is_empty());
    Ok(m)
}

/// `Some((kind, name))` when `table` is `[<deps table>.<name>]`.
fn dep_table_entry(table: &[String]) -> Option<(DepKind, &str)> {
    let (name, head) = table.split_last()?;
    dep_kind(head).map(|k| (k, name.as_str()))
}

/// The kind of a dependency table path, `None` for other tables.
fn dep_kind(table: &[String]) -> Option<DepKind> {
    let last = table.last()?.as_str();
    let kind = match last {
        "dependencies" => DepKind::Normal,
        "dev-dependencies" => DepKind::Dev,
        "build-dependencies" => DepKind::Build,
        _ => return None,
    };
    match table.len() {
        1 => Some(kind),
        // `[workspace.dependencies]` is kept apart (see `deps_of`).
        2 if table[0] == "workspace" => Some(kind),
        3 if table[0] == "target" => Some(kind),
        _ => None,
    }
}

fn deps_of<'m>(m: &'m mut Manifest, table: &[String]) -> &'m mut Vec<Dep> {
    if table.first().is_some_and(|t| t == "workspace") {
        &mut m.workspace_deps
    } else {
        &mut m.deps
    }
}

fn new_dep(key: &str, kind: DepKind, line: usize) -> Dep {
    Dep {
        key: key.to_string(),
        kind,
        package: None,
        from_workspace: false,
        features: Vec::new(),
        line,
    }
}

/// Sets a dependency's attribute from `key = value` (key relative to it).
fn set_dep_attr(dep: &mut Dep, key: &str, value: &Value) {
    match key {
        "workspace" => dep.from_workspace = value == &Value::Bool(true),
        "package" => dep.package = value.as_str().map(str::to_string),
        "features" => dep.features = value.strings(),
        _ => {}
    }
}

fn apply(
    m: &mut Manifest,
    table: &[String],
    array_table: bool,
    key: &[String],
    value: Value,
    line: usize,
) {
    let path: Vec<&str> = table.iter().map(String::as_str).collect();
    match (path.as_slice(), key) {
        (["package"], [k]) if k == "name" => m.package = value.as_str().map(str::to_string),
        (["workspace"], [k]) if k == "members" => m.members = value.strings(),
        (["lib"], [k]) if k == "path" => m.lib_path = value.as_str().map(str::to_string),
        (["test"], [k]) if array_table && k == "path" => {
            if let (Some(last), Some(p)) = (m.test_paths.last_mut(), value.as_str()) {
                *last = p.to_string();
            }
        }
        _ => {
            if let Some((_, name)) = dep_table_entry(table) {
                // Inside `[dependencies.name]`: an attribute of that one.
                let name = name.to_string();
                let deps = deps_of(m, &table[..table.len() - 1]);
                if let (Some(dep), [k]) = (deps.iter_mut().rev().find(|d| d.key == name), key) {
                    set_dep_attr(dep, k, &value);
                }
            } else if let Some(kind) = dep_kind(table) {
                let Some((name, attr)) = key.split_first() else {
                    return;
                };
                let mut dep = new_dep(name, kind, line);
                match (attr, &value) {
                    // `name = "1"`: a version.
                    ([], Value::Str(_)) => {}
                    // `name = { workspace = true, features = [...] }`.
                    ([], Value::Table(t)) => {
                        for (k, v) in t {
                            set_dep_attr(&mut dep, k, v);
                        }
                    }
                    // `name.workspace = true`.
                    ([k], v) => set_dep_attr(&mut dep, k, v),
                    _ => {}
                }
                deps_of(m, table).push(dep);
            }
        }
    }
}

/// The line up to a `#` that is not inside a string.
fn strip_comment(line: &str) -> &str {
    match find_unquoted(line, '#') {
        Some(i) => &line[..i],
        None => line,
    }
}

/// The byte index of the first `c` outside quotes.
fn find_unquoted(s: &str, c: char) -> Option<usize> {
    let mut quote: Option<char> = None;
    let mut escaped = false;
    for (i, ch) in s.char_indices() {
        match quote {
            Some(q) => {
                if escaped {
                    escaped = false;
                } else if ch == '\\' && q == '"' {
                    escaped = true;
                } else if ch == q {
                    quote = None;
                }
            }
            None if ch == '"' || ch == '\'' => quote = Some(ch),
            None if ch == c => return Some(i),
            None => {}
        }
    }
    None
}

/// Whether every `[` and `{` outside strings is closed.
fn balanced(s: &str) -> bool {
    let mut depth = 0i32;
    let mut quote: Option<char> = None;
    for ch in s.chars() {
        match quote {
            Some(q) if ch == q => quote = None,
            Some(_) => {}
            None => match ch {
                '"' | '\'' => quote = Some(ch),
                '[' | '{' => depth += 1,
                ']' | '}' => depth -= 1,
                _ => {}
            },
        }
    }
    depth <= 0
}

/// `a.b."c.d"` → `["a", "b", "c.d"]`.
fn split_key(s: &str) -> Vec<String> {
    let mut parts = Vec::new();
    let mut cur = String::new();
    let mut quote: Option<char> = None;
    for ch in s.chars() {
        match quote {
            Some(q) if ch == q => quote = None,
            Some(_) => cur.push(ch),
            None => match ch {
                '"' | '\'' => quote = Some(ch),
                '.' => parts.push(std::mem::take(&mut cur).trim().to_string()),
                _ => cur.push(ch),
            },
        }
    }
    parts.push(cur.trim().to_string());
    parts
}

impl Value {
    fn parse_all(s: &str) -> Result<Value, String> {
        let chars: Vec<char> = s.chars().collect();
        let mut pos = 0;
        let v = Value::parse_at(&chars, &mut pos)?;
        skip_ws(&chars, &mut pos);
        if pos != chars.len() {
            return Err(format!(
                "unexpected `{}`",
                chars[pos..].iter().collect::<String>()
            ));
        }
        Ok(v)
    }

    fn parse_at(c: &[char], pos: &mut usize) -> Result<Value, String> {
        skip_ws(c, pos);
        match c.get(*pos) {
            None => Err("missing value".into()),
            Some('"') | Some('\'') => {
                let q = c[*pos];
                *pos += 1;
                let mut s = String::new();
                while let Some(&ch) = c.get(*pos) {
                    *pos += 1;
                    if ch == q {
                        return Ok(Value::Str(s));
                    }
                    if ch == '\\' && q == '"' {
                        if let Some(&next) = c.get(*pos) {
                            *pos += 1;
                            s.push(next);
                        }
                    } else {
                        s.push(ch);
                    }
                }
                Err("unclosed string".into())
            }
            Some('[') => {
                *pos += 1;
                let mut items = Vec::new();
                loop {
                    skip_ws(c, pos);
                    match c.get(*pos) {
                        Some(']') => {
                            *pos += 1;
                            return Ok(Value::Array(items));
                        }
                        Some(',') => *pos += 1,
                        Some(_) => items.push(Value::parse_at(c, pos)?),
                        None => return Err("unclosed array".into()),
                    }
                }
            }
            Some('{') => {
                *pos += 1;
                let mut table = BTreeMap::new();
                loop {
                    skip_ws(c, pos);
                    match c.get(*pos) {
                        Some('}') => {
                            *pos += 1;
                            return Ok(Value::Table(table));
                        }
                        Some(',') => *pos += 1,
                        Some(_) => {
                            let start = *pos;
                            while c.get(*pos).is_some_and(|&ch| ch != '=') {
                                *pos += 1;
                            }
                            let key: String = c[start..*pos].iter().collect();
                            *pos += 1;
                            let v = Value::parse_at(c, pos)?;
                            table.insert(split_key(&key).join("."), v);
                        }
                        None => return Err("unclosed inline table".into()),
                    }
                }
            }
            Some(_) => {
                let start = *pos;
                while c
                    .get(*pos)
                    .is_some_and(|&ch| !matches!(ch, ',' | ']' | '}') && !ch.is_whitespace())
                {
                    *pos += 1;
                }
                let word: String = c[start..*pos].iter().collect();
                Ok(match word.as_str() {
                    "true" => Value::Bool(true),
                    "false" => Value::Bool(false),
                    _ => Value::Other,
                })
            }
        }
    }
}

fn skip_ws(c: &[char], pos: &mut usize) {
    while c.get(*pos).is_some_and(|ch| ch.is_whitespace()) {
        *pos += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_workspace_and_its_dependencies() {
        let m = parse(
            r#"
[workspace]
resolver = "2"
members = [
    "crates/a", # the first
    "crates/b",
]

[workspace.dependencies]
a = { path = "crates/a" }
serde = { version = "1", features = ["derive"] }
"#,
        )
        .unwrap();
        assert_eq!(m.members, ["crates/a", "crates/b"]);
        let keys: Vec<(&str, usize)> = m
            .workspace_deps
            .iter()
            .map(|d| (d.key.as_str(), d.line))
            .collect();
        assert_eq!(keys, [("a", 10), ("serde", 11)]);
        assert!(m.deps.is_empty());
    }

    #[test]
    fn reads_every_form_of_a_dependency() {
        let m = parse(
            r#"
[package]
name = "rollout-x"

[lib]
path = "src/x.rs"

[dependencies]
serde.workspace = true
tokio = { workspace = true, features = ["sync", "fs"] }
memchr = "2"
yaml = { package = "yaml-rust2", version = "0.13" }

[target.'cfg(unix)'.dependencies]
libc = "0.2"

[dev-dependencies.proptest]
workspace = true

[build-dependencies]
cc = "1"

[[test]]
name = "suite"
path = "suites/main.rs"
"#,
        )
        .unwrap();
        assert_eq!(m.package.as_deref(), Some("rollout-x"));
        assert_eq!(m.lib_path.as_deref(), Some("src/x.rs"));
        assert_eq!(m.test_paths, ["suites/main.rs"]);
        let got: Vec<(&str, DepKind, bool, usize)> = m
            .deps
            .iter()
            .map(|d| (d.key.as_str(), d.kind, d.from_workspace, d.line))
            .collect();
        assert_eq!(
            got,
            [
                ("serde", DepKind::Normal, true, 9),
                ("tokio", DepKind::Normal, true, 10),
                ("memchr", DepKind::Normal, false, 11),
                ("yaml", DepKind::Normal, false, 12),
                ("libc", DepKind::Normal, false, 15),
                ("proptest", DepKind::Dev, true, 17),
                ("cc", DepKind::Build, false, 21),
            ]
        );
        assert_eq!(m.deps[1].features, ["sync", "fs"]);
        assert_eq!(m.deps[3].crate_name(), "yaml-rust2");
        assert_eq!(m.deps[3].ident(), "yaml");
    }

    #[test]
    fn a_broken_line_is_named() {
        let e = parse("[package]\nname \"x\"\n").unwrap_err();
        assert!(e.starts_with("line 2:"), "{e}");
    }
}
