//! What tidy reads from a Rust source file: the paths it names (with `use`
//! trees expanded), the traits it implements, the crates its docs name, and
//! whether it denies missing docs; each fact with its line and whether it is
//! test code (an item under `#[cfg(test)]`).
//!
//! A small lexer, not a parser: comments, strings and character literals
//! are skipped the way rustc skips them, so a path named in a comment or a
//! string never counts as code.

use std::collections::BTreeSet;

/// A path the code names, as written or as a `use` tree expands it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathUse {
    /// `["std", "fs", "read"]`.
    pub segments: Vec<String>,
    /// 1-based line.
    pub line: usize,
    /// Inside an item under `#[cfg(test)]`.
    pub in_test: bool,
}

impl PathUse {
    /// Whether the path starts with `prefix` (`"std::fs"`), segment by segment.
    pub fn starts_with(&self, prefix: &str) -> bool {
        let want: Vec<&str> = prefix.split("::").collect();
        self.segments.len() >= want.len() && self.segments.iter().zip(&want).all(|(a, b)| a == b)
    }
}

/// `impl [<..>] Trait for Type`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImplFor {
    /// The trait's last path segment (`Backend` for `rollout_core::Backend`).
    pub trait_name: String,
    /// 1-based line of `impl`.
    pub line: usize,
    /// Inside an item under `#[cfg(test)]`.
    pub in_test: bool,
}

/// The facts of one file.
#[derive(Debug, Default)]
pub struct Scan {
    /// Every path named in code.
    pub paths: Vec<PathUse>,
    /// Every trait implementation.
    pub impls: Vec<ImplFor>,
    /// Identifiers that start a path in doc comments (`serde_json::json!`
    /// in a doc example): a crate used only by doc tests is still used.
    pub doc_heads: BTreeSet<String>,
    /// `#![deny(missing_docs)]` (or `forbid`) at the top of the file.
    pub denies_missing_docs: bool,
    /// `#[cfg(test)] mod name;`: modules in files of their own.
    pub test_modules: Vec<String>,
    /// `#![cfg(test)]`: the whole file is test code.
    pub all_test: bool,
}

impl Scan {
    /// The identifiers that start a path in code or docs (crate names among
    /// them), without `crate`, `self`, `super` and `Self`.
    pub fn heads(&self) -> BTreeSet<&str> {
        self.paths
            .iter()
            .filter_map(|p| p.segments.first().map(String::as_str))
            .chain(self.doc_heads.iter().map(String::as_str))
            .filter(|h| !matches!(*h, "crate" | "self" | "super" | "Self"))
            .collect()
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    /// `::`
    PathSep,
    Punct(char),
    /// A string, character or number literal.
    Lit,
}

#[derive(Debug, Clone)]
struct Token {
    tok: Tok,
    line: usize,
}

impl Token {
    fn is_ident(&self, s: &str) -> bool {
        matches!(&self.tok, Tok::Ident(i) if i == s)
    }
    fn is_punct(&self, c: char) -> bool {
        self.tok == Tok::Punct(c)
    }
    fn ident(&self) -> Option<&str> {
        match &self.tok {
            Tok::Ident(i) => Some(i),
            _ => None,
        }
    }
}

/// Reads one file.
pub fn scan(text: &str) -> Scan {
    let (tokens, docs) = lex(text);
    let mut out = Scan::default();
    for d in &docs {
        doc_heads(d, &mut out.doc_heads);
    }
    let test = test_ranges(&tokens, &mut out);
    let in_test = |i: usize| out.all_test || test.iter().any(|r| r.contains(&i));
    let mut paths = Vec::new();
    let mut impls = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        let t = &tokens[i];
        if t.is_ident("use") {
            let mut leaves = Vec::new();
            let mut j = i + 1;
            use_tree(&tokens, &mut j, &[], &mut leaves);
            for (segments, line) in leaves {
                paths.push(PathUse {
                    segments,
                    line,
                    in_test: in_test(i),
                });
            }
            i = j.max(i + 1);
            continue;
        }
        if t.is_ident("extern") && tokens.get(i + 1).is_some_and(|t| t.is_ident("crate")) {
            if let Some(name) = tokens.get(i + 2).and_then(Token::ident) {
                paths.push(PathUse {
                    segments: vec![name.to_string()],
                    line: t.line,
                    in_test: in_test(i),
                });
            }
            i += 3;
            continue;
        }
        if t.is_ident("impl") {
            if let Some(name) = impl_trait(&tokens, i + 1) {
                impls.push(ImplFor {
                    trait_name: name,
                    line: t.line,
                    in_test: in_test(i),
                });
            }
        }
        // A path: an identifier followed by `::`, not itself the tail of
        // one (`<T as Tr>::f` and `a::b` go on a path already taken).
        let tail = i >= 2
            && tokens[i - 1].tok == Tok::PathSep
            && (tokens[i - 2].ident().is_some() || tokens[i - 2].is_punct('>'));
        let starts_path = t.ident().is_some()
            && !tail
            && tokens.get(i + 1).is_some_and(|n| n.tok == Tok::PathSep);
        if starts_path {
            let (segments, next) = path_at(&tokens, i);
            paths.push(PathUse {
                segments,
                line: t.line,
                in_test: in_test(i),
            });
            i = next;
            continue;
        }
        i += 1;
    }
    out.paths = paths;
    out.impls = impls;
    out.denies_missing_docs = denies_missing_docs(&tokens);
    out
}

/// `a::b::c` from `start`; returns the segments and the index after them.
/// Generic arguments (`Vec::<u8>::new`) end the path.
fn path_at(tokens: &[Token], start: usize) -> (Vec<String>, usize) {
    let mut segments = Vec::new();
    let mut i = start;
    while let Some(name) = tokens.get(i).and_then(Token::ident) {
        segments.push(name.to_string());
        if tokens.get(i + 1).is_some_and(|t| t.tok == Tok::PathSep)
            && tokens.get(i + 2).and_then(Token::ident).is_some()
        {
            i += 2;
        } else {
            i += 1;
            break;
        }
    }
    (segments, i)
}

/// Expands a `use` tree from `*i` (after `use`, or inside braces) into its
/// leaves, stopping after `;` or before `,` / `}` of the enclosing group.
fn use_tree(
    tokens: &[Token],
    i: &mut usize,
    prefix: &[String],
    out: &mut Vec<(Vec<String>, usize)>,
) {
    let mut path = prefix.to_vec();
    let mut line = tokens.get(*i).map_or(0, |t| t.line);
    // A leading `::` (2015-style absolute path) adds nothing.
    if tokens.get(*i).is_some_and(|t| t.tok == Tok::PathSep) {
        *i += 1;
    }
    loop {
        let Some(t) = tokens.get(*i) else {
            return;
        };
        match &t.tok {
            Tok::Ident(name) if name == "as" => {
                // `as alias`: the alias names nothing new.
                *i += 2;
            }
            Tok::Ident(name) => {
                if name != "self" || path.is_empty() {
                    path.push(name.clone());
                }
                line = t.line;
                *i += 1;
            }
            Tok::PathSep => *i += 1,
            Tok::Punct('{') => {
                *i += 1;
                loop {
                    match tokens.get(*i) {
                        None => return,
                        Some(t) if t.is_punct('}') => {
                            *i += 1;
                            break;
                        }
                        Some(t) if t.is_punct(',') => *i += 1,
                        Some(_) => use_tree(tokens, i, &path, out),
                    }
                }
                // The group's leaves are out; nothing of its own.
                path.clear();
            }
            Tok::Punct('*') => *i += 1,
            Tok::Punct(';') => {
                *i += 1;
                break;
            }
            _ => break,
        }
    }
    if !path.is_empty() {
        out.push((path, line));
    }
}

/// The trait of `impl<..> Trait<..> for Type` after `impl` at `start`, or
/// `None` for an inherent impl or `impl Trait` in argument or return place.
fn impl_trait(tokens: &[Token], start: usize) -> Option<String> {
    let mut angle = 0i32;
    let mut paren = 0i32;
    let mut last_ident: Option<&str> = None;
    let mut i = start;
    while let Some(t) = tokens.get(i) {
        match &t.tok {
            Tok::Punct('<') => angle += 1,
            // `->` is no closing angle.
            Tok::Punct('>') if i > 0 && tokens[i - 1].is_punct('-') => {}
            Tok::Punct('>') => angle -= 1,
            Tok::Punct('(') | Tok::Punct('[') => paren += 1,
            Tok::Punct(')') | Tok::Punct(']') => {
                paren -= 1;
                if paren < 0 {
                    return None;
                }
            }
            Tok::Punct('{') | Tok::Punct(';') | Tok::Punct('=') => return None,
            Tok::Punct(',') if angle == 0 && paren == 0 => return None,
            Tok::Ident(w) if angle == 0 && paren == 0 => match w.as_str() {
                "for" => return last_ident.map(str::to_string),
                "where" => return None,
                "dyn" | "unsafe" | "const" | "mut" => {}
                _ => last_ident = Some(w),
            },
            _ => {}
        }
        i += 1;
    }
    None
}

/// Token index ranges of items under `#[cfg(test)]`; also notes
/// `#![cfg(test)]` and out-of-line test modules in `out`.
fn test_ranges(tokens: &[Token], out: &mut Scan) -> Vec<std::ops::RangeInclusive<usize>> {
    let mut ranges = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        let inner = tokens.get(i + 1).is_some_and(|t| t.is_punct('!'));
        let open = if inner { i + 2 } else { i + 1 };
        let is_cfg_test = tokens[i].is_punct('#')
            && tokens.get(open).is_some_and(|t| t.is_punct('['))
            && tokens.get(open + 1).is_some_and(|t| t.is_ident("cfg"))
            && tokens.get(open + 2).is_some_and(|t| t.is_punct('('))
            && tokens.get(open + 3).is_some_and(|t| t.is_ident("test"))
            && tokens.get(open + 4).is_some_and(|t| t.is_punct(')'))
            && tokens.get(open + 5).is_some_and(|t| t.is_punct(']'));
        if !is_cfg_test {
            i += 1;
            continue;
        }
        if inner {
            out.all_test = true;
            return ranges;
        }
        let start = i;
        let mut j = open + 6;
        // Further attributes of the same item.
        while tokens.get(j).is_some_and(|t| t.is_punct('#')) {
            j = skip_group(tokens, j + 1);
        }
        if tokens.get(j).is_some_and(|t| t.is_ident("mod"))
            && tokens.get(j + 2).is_some_and(|t| t.is_punct(';'))
        {
            if let Some(name) = tokens.get(j + 1).and_then(Token::ident) {
                out.test_modules.push(name.to_string());
            }
        }
        let end = item_end(tokens, j);
        ranges.push(start..=end);
        i = end + 1;
    }
    ranges
}

/// The index after the bracketed group that starts at `i`.
fn skip_group(tokens: &[Token], i: usize) -> usize {
    let mut depth = 0i32;
    let mut j = i;
    while let Some(t) = tokens.get(j) {
        match t.tok {
            Tok::Punct('(') | Tok::Punct('[') | Tok::Punct('{') => depth += 1,
            Tok::Punct(')') | Tok::Punct(']') | Tok::Punct('}') => {
                depth -= 1;
                if depth <= 0 {
                    return j + 1;
                }
            }
            _ => {}
        }
        j += 1;
    }
    j
}

/// The index of the last token of the item that starts at `i`: its `;`, or
/// the `}` that closes its body.
fn item_end(tokens: &[Token], i: usize) -> usize {
    let mut depth = 0i32;
    let mut j = i;
    while let Some(t) = tokens.get(j) {
        match t.tok {
            Tok::Punct('(') | Tok::Punct('[') | Tok::Punct('{') => depth += 1,
            Tok::Punct(')') | Tok::Punct(']') => depth -= 1,
            Tok::Punct('}') => {
                depth -= 1;
                if depth <= 0 {
                    return j;
                }
            }
            Tok::Punct(';') if depth == 0 => return j,
            _ => {}
        }
        j += 1;
    }
    tokens.len().saturating_sub(1)
}

/// `#![deny(.., missing_docs, ..)]` or `forbid`.
fn denies_missing_docs(tokens: &[Token]) -> bool {
    tokens.windows(5).enumerate().any(|(i, w)| {
        w[0].is_punct('#')
            && w[1].is_punct('!')
            && w[2].is_punct('[')
            && (w[3].is_ident("deny") || w[3].is_ident("forbid"))
            && w[4].is_punct('(')
            && tokens[i + 5..]
                .iter()
                .take_while(|t| !t.is_punct(')'))
                .any(|t| t.is_ident("missing_docs"))
    })
}

/// Identifiers right before `::` in a doc comment's text.
fn doc_heads(doc: &str, into: &mut BTreeSet<String>) {
    let b = doc.as_bytes();
    let mut i = 0;
    while let Some(at) = doc[i..].find("::") {
        let end = i + at;
        let mut start = end;
        while start > 0 && (b[start - 1].is_ascii_alphanumeric() || b[start - 1] == b'_') {
            start -= 1;
        }
        let preceded_by_sep = start >= 2 && &b[start - 2..start] == b"::";
        if start < end && !preceded_by_sep && !b[start].is_ascii_digit() {
            into.insert(doc[start..end].to_string());
        }
        i = end + 2;
    }
}

fn is_ident_start(c: char) -> bool {
    c == '_' || c.is_alphabetic()
}

fn is_ident_char(c: char) -> bool {
    c == '_' || c.is_alphanumeric()
}

/// Tokens, and the text of doc comments.
fn lex(text: &str) -> (Vec<Token>, Vec<String>) {
    let c: Vec<char> = text.chars().collect();
    let mut tokens = Vec::new();
    let mut docs = Vec::new();
    let mut line = 1;
    let mut i = 0;
    let at = |i: usize| c.get(i).copied().unwrap_or('\0');
    while i < c.len() {
        let ch = c[i];
        if ch == '\n' {
            line += 1;
            i += 1;
        } else if ch.is_whitespace() {
            i += 1;
        } else if ch == '/' && at(i + 1) == '/' {
            let start = i;
            while i < c.len() && c[i] != '\n' {
                i += 1;
            }
            let body: String = c[start..i].iter().collect();
            let doc =
                (body.starts_with("///") && !body.starts_with("////")) || body.starts_with("//!");
            if doc {
                docs.push(body[3..].to_string());
            }
        } else if ch == '/' && at(i + 1) == '*' {
            let start = i;
            let mut depth = 0;
            while i < c.len() {
                if c[i] == '/' && at(i + 1) == '*' {
                    depth += 1;
                    i += 2;
                } else if c[i] == '*' && at(i + 1) == '/' {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    if c[i] == '\n' {
                        line += 1;
                    }
                    i += 1;
                }
            }
            let body: String = c[start..i].iter().collect();
            if body.starts_with("/*!") || (body.starts_with("/**") && !body.starts_with("/***")) {
                docs.push(body);
            }
        } else if let Some(end) = raw_string_end(&c, i) {
            line += c[i..end].iter().filter(|&&x| x == '\n').count();
            tokens.push(Token {
                tok: Tok::Lit,
                line,
            });
            i = end;
        } else if ch == '"' || ((ch == 'b' || ch == 'c') && at(i + 1) == '"') {
            let tok_line = line;
            i += if ch == '"' { 1 } else { 2 };
            while i < c.len() && c[i] != '"' {
                if c[i] == '\\' {
                    i += 1;
                }
                if at(i) == '\n' {
                    line += 1;
                }
                i += 1;
            }
            i += 1;
            tokens.push(Token {
                tok: Tok::Lit,
                line: tok_line,
            });
        } else if ch == '\'' || (ch == 'b' && at(i + 1) == '\'') {
            let q = if ch == '\'' { i } else { i + 1 };
            if at(q + 1) == '\\' {
                // '\n', '\'', '\u{..}'
                let mut j = q + 3;
                while j < c.len() && c[j] != '\'' {
                    j += 1;
                }
                i = j + 1;
                tokens.push(Token {
                    tok: Tok::Lit,
                    line,
                });
            } else if at(q + 2) == '\'' {
                i = q + 3;
                tokens.push(Token {
                    tok: Tok::Lit,
                    line,
                });
            } else {
                // A lifetime or a label: `'a`.
                i = q + 1;
                while i < c.len() && is_ident_char(c[i]) {
                    i += 1;
                }
            }
        } else if ch == 'r' && at(i + 1) == '#' && is_ident_start(at(i + 2)) {
            // A raw identifier: `r#type`.
            let start = i + 2;
            i = start;
            while i < c.len() && is_ident_char(c[i]) {
                i += 1;
            }
            tokens.push(Token {
                tok: Tok::Ident(c[start..i].iter().collect()),
                line,
            });
        } else if is_ident_start(ch) {
            let start = i;
            while i < c.len() && is_ident_char(c[i]) {
                i += 1;
            }
            tokens.push(Token {
                tok: Tok::Ident(c[start..i].iter().collect()),
                line,
            });
        } else if ch.is_ascii_digit() {
            while i < c.len()
                && (is_ident_char(c[i]) || (c[i] == '.' && at(i + 1).is_ascii_digit()))
            {
                i += 1;
            }
            tokens.push(Token {
                tok: Tok::Lit,
                line,
            });
        } else if ch == ':' && at(i + 1) == ':' {
            tokens.push(Token {
                tok: Tok::PathSep,
                line,
            });
            i += 2;
        } else {
            tokens.push(Token {
                tok: Tok::Punct(ch),
                line,
            });
            i += 1;
        }
    }
    (tokens, docs)
}

/// The index after a raw string (`r"…"`, `r#"…"#`, `br"…"`, `cr#"…"#`)
/// that starts at `i`, if one does.
fn raw_string_end(c: &[char], i: usize) -> Option<usize> {
    let mut j = i;
    if matches!(c.get(j), Some('b') | Some('c')) {
        j += 1;
    }
    if c.get(j) != Some(&'r') {
        return None;
    }
    j += 1;
    let mut hashes = 0;
    while c.get(j) == Some(&'#') {
        hashes += 1;
        j += 1;
    }
    if c.get(j) != Some(&'"') {
        return None;
    }
    j += 1;
    while j < c.len() {
        if c[j] == '"' && (1..=hashes).all(|k| c.get(j + k) == Some(&'#')) {
            return Some(j + 1 + hashes);
        }
        j += 1;
    }
    Some(c.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paths(s: &Scan) -> Vec<(String, usize, bool)> {
        s.paths
            .iter()
            .map(|p| (p.segments.join("::"), p.line, p.in_test))
            .collect()
    }

    #[test]
    fn use_trees_expand_to_their_leaves() {
        let s = scan(
            "use std::{fs, io::{self, Read as R}, net::*};\npub(crate) use ::tokio::process::Command;\nuse serde_json;\n",
        );
        let got: Vec<String> = paths(&s).into_iter().map(|p| p.0).collect();
        assert_eq!(
            got,
            [
                "std::fs",
                "std::io",
                "std::io::Read",
                "std::net",
                "tokio::process::Command",
                "serde_json"
            ]
        );
    }

    #[test]
    fn paths_in_code_count_and_comments_and_strings_do_not() {
        let s = scan(
            r##"
// std::fs::read in a comment
/* std::net::TcpStream /* nested */ still a comment */
fn f() -> &'static str {
    let _ = 'x';
    let _ = '\'';
    let _ = b"std::process";
    let _ = r#"tokio::fs "quoted" "#;
    let v = Vec::<u8>::new();
    std::process::id();
    "std::fs::write"
}
"##,
        );
        let got: Vec<(String, usize, bool)> = paths(&s);
        assert_eq!(
            got,
            [
                ("Vec".to_string(), 9, false),
                ("std::process::id".to_string(), 10, false)
            ]
        );
    }

    #[test]
    fn cfg_test_items_are_test_code() {
        let s = scan(
            "use a::b;\n#[cfg(test)]\n#[allow(dead_code)]\nmod tests {\n    use c::d;\n    fn f() { e::g(); }\n}\n#[cfg(test)]\nmod more;\nfn h() { i::j(); }\n",
        );
        assert_eq!(
            paths(&s),
            [
                ("a::b".to_string(), 1, false),
                ("c::d".to_string(), 5, true),
                ("e::g".to_string(), 6, true),
                ("i::j".to_string(), 10, false)
            ]
        );
        assert_eq!(s.test_modules, ["more"]);
        assert!(scan("#![cfg(test)]\nuse a::b;\n").all_test);
    }

    #[test]
    fn trait_impls_are_found_and_other_impls_are_not() {
        let s = scan(
            "impl<T: Into<String>> rollout_core::Backend for X<T> {}\nimpl From<BackendError> for Fail {}\nimpl Plain {}\nfn f(x: impl Backend) -> impl Iterator<Item = u8> { x }\nimpl<'a> TrafficRouter for &'a Y where Y: Sync {}\nunsafe impl Send for Z {}\n",
        );
        let got: Vec<(&str, usize)> = s
            .impls
            .iter()
            .map(|i| (i.trait_name.as_str(), i.line))
            .collect();
        assert_eq!(
            got,
            [
                ("Backend", 1),
                ("From", 2),
                ("TrafficRouter", 5),
                ("Send", 6)
            ]
        );
    }

    #[test]
    fn doc_examples_name_crates_and_the_missing_docs_lint_is_seen() {
        let s = scan("//! ```\n//! let v = serde_json::json!(1);\n//! ```\n#![deny(unsafe_code, missing_docs)]\n/// See [`a::b::c`].\nfn f() {}\n");
        assert!(s.denies_missing_docs);
        assert_eq!(
            s.doc_heads.iter().map(String::as_str).collect::<Vec<_>>(),
            ["a", "serde_json"]
        );
        assert!(s.heads().contains("serde_json"));
        assert!(!scan("#![warn(missing_docs)]\n").denies_missing_docs);
        assert!(!scan("// #![deny(missing_docs)]\n").denies_missing_docs);
    }
}
