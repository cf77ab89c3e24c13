//! The crossplane-shaped JSON payload of a [`Config`].
//!
//! The shape is crossplane's `parse` payload: `{status, errors[], config[]}`,
//! each config `{file, status, errors[], parsed[]}`, each statement
//! `{directive, line, args[], includes?, block?}` and, when asked, comments
//! as `{directive: "#", line, args: [], comment}`. Keys keep crossplane's
//! order. As in crossplane, `if` arguments lose their outer parentheses, a
//! Lua block's body (without its braces) is its last argument, comments
//! written between the words of a directive follow it with its line, and
//! invalid UTF-8 becomes U+FFFD.
//!
//! Arguments are nginx's values by default ([`ArgStyle::Nginx`]: quotes
//! removed, the six escapes decoded); [`ArgStyle::Crossplane`] spells them
//! as crossplane does (only `\"` in `"..."` and `\'` in `'...'` decoded), so
//! payloads compare with crossplane's field by field.

use crate::config::Config;
use crate::error::LoadError;
use crate::tree::{ConfFile, Item, Items, Quote, Word};
use std::fmt::Write;

/// How arguments are spelt in the payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ArgStyle {
    /// nginx's stored value.
    #[default]
    Nginx,
    /// crossplane's spelling.
    Crossplane,
}

/// What the payload holds.
#[derive(Debug, Clone, Copy, Default)]
pub struct JsonOptions {
    /// Include comments (crossplane's `comments=True`).
    pub comments: bool,
    /// How arguments are spelt.
    pub args: ArgStyle,
}

impl Config {
    /// The crossplane-shaped payload, as JSON text.
    pub fn to_json(&self, options: &JsonOptions) -> String {
        let mut out =
            String::with_capacity(self.files().iter().map(|f| f.source().len()).sum::<usize>() * 2);
        let errors: Vec<(usize, u32, String)> = self
            .errors()
            .iter()
            .map(|e| {
                let (line, msg) = describe(&e.error);
                (e.file, line, msg)
            })
            .collect();
        out.push_str("{\"status\": ");
        str_lit(&mut out, if errors.is_empty() { "ok" } else { "failed" });
        out.push_str(", \"errors\": [");
        for (n, (file, line, msg)) in errors.iter().enumerate() {
            if n > 0 {
                out.push_str(", ");
            }
            out.push_str("{\"file\": ");
            str_lit(&mut out, &self.files()[*file].path().to_string_lossy());
            let _ = write!(out, ", \"error\": ");
            str_lit(&mut out, msg);
            let _ = write!(out, ", \"line\": {line}}}");
        }
        out.push_str("], \"config\": [");
        for (i, f) in self.files().iter().enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            let mine: Vec<&(usize, u32, String)> = errors.iter().filter(|e| e.0 == i).collect();
            out.push_str("{\"file\": ");
            str_lit(&mut out, &f.path().to_string_lossy());
            out.push_str(", \"status\": ");
            str_lit(&mut out, if mine.is_empty() { "ok" } else { "failed" });
            out.push_str(", \"errors\": [");
            for (n, (_, line, msg)) in mine.iter().enumerate() {
                if n > 0 {
                    out.push_str(", ");
                }
                out.push_str("{\"error\": ");
                str_lit(&mut out, msg);
                let _ = write!(out, ", \"line\": {line}}}");
            }
            out.push_str("], \"parsed\": ");
            Writer {
                cfg: self,
                index: i,
                file: f,
                options,
                out: &mut out,
            }
            .items(f.items());
            out.push('}');
        }
        out.push_str("]}");
        out
    }
}

fn describe(e: &LoadError) -> (u32, String) {
    match e {
        LoadError::Parse(p) => (p.line, p.nginx_style()),
        LoadError::Include {
            file,
            line,
            target,
            reason,
            ..
        } => (
            *line,
            format!(
                "open() \"{}\" failed ({reason}) in {}:{line}",
                target.display(),
                file.display()
            ),
        ),
        other => (0, other.to_string()),
    }
}

struct Writer<'a> {
    cfg: &'a Config,
    index: usize,
    file: &'a ConfFile,
    options: &'a JsonOptions,
    out: &'a mut String,
}

impl Writer<'_> {
    /// Writes a statement list. Iterative over depth, so deep nesting is fine.
    fn items(&mut self, root: Items<'_>) {
        // Each frame: the statements left to write.
        let mut stack: Vec<(Vec<Item<'_>>, usize)> = vec![(root.iter().collect(), 0)];
        self.out.push('[');
        let mut first = vec![true];
        while let Some((items, i)) = stack.last_mut() {
            if *i == items.len() {
                stack.pop();
                first.pop();
                self.out.push(']');
                if !stack.is_empty() {
                    self.out.push('}');
                }
                continue;
            }
            let item = items[*i];
            *i += 1;
            match item {
                Item::Comment(c) => {
                    if !self.options.comments {
                        continue;
                    }
                    self.sep(&mut first);
                    self.comment(c.line(), c.text());
                }
                Item::Directive(d) => {
                    self.sep(&mut first);
                    self.out.push_str("{\"directive\": ");
                    let name = d.name();
                    self.word(&name);
                    let _ = write!(self.out, ", \"line\": {}, \"args\": [", d.line());
                    let mut args: Vec<String> = d.args().map(|a| self.arg_text(&a)).collect();
                    if name.value().as_ref() == b"if" {
                        let after_last = d.args().last().and_then(|a| {
                            let end = a.offset() + a.raw().len();
                            (a.quote() != Quote::None)
                                .then(|| self.file.source().get(end))
                                .flatten()
                        });
                        prepare_if(&mut args, after_last == Some(&b')'));
                    }
                    if let Some(body) = d.lua_body() {
                        args.push(lossy(&body[1..body.len() - 1]));
                    }
                    for (n, a) in args.iter().enumerate() {
                        if n > 0 {
                            self.out.push_str(", ");
                        }
                        str_lit(self.out, a);
                    }
                    self.out.push(']');
                    if let Some(inc) = self.cfg.included_by(self.index, &d) {
                        self.out.push_str(", \"includes\": [");
                        for (n, x) in inc.iter().enumerate() {
                            if n > 0 {
                                self.out.push_str(", ");
                            }
                            let _ = write!(self.out, "{x}");
                        }
                        self.out.push(']');
                    }
                    let inner: Vec<_> = if self.options.comments {
                        d.inner_comments().collect()
                    } else {
                        Vec::new()
                    };
                    match d.block() {
                        Some(b) if inner.is_empty() => {
                            self.out.push_str(", \"block\": [");
                            stack.push((b.iter().collect(), 0));
                            first.push(true);
                            continue;
                        }
                        Some(b) => {
                            // Rare: comments between the words of a block
                            // directive come after it; write the block here.
                            self.out.push_str(", \"block\": ");
                            let mut nested = String::new();
                            Writer {
                                cfg: self.cfg,
                                index: self.index,
                                file: self.file,
                                options: self.options,
                                out: &mut nested,
                            }
                            .items(b);
                            self.out.push_str(&nested);
                            self.out.push('}');
                        }
                        None => self.out.push('}'),
                    }
                    for c in inner {
                        self.out.push_str(", ");
                        self.comment(d.line(), c.text());
                    }
                }
            }
        }
    }

    fn sep(&mut self, first: &mut [bool]) {
        let f = first.last_mut().expect("a frame is open");
        if !*f {
            self.out.push_str(", ");
        }
        *f = false;
    }

    fn comment(&mut self, line: u32, text: &[u8]) {
        let _ = write!(
            self.out,
            "{{\"directive\": \"#\", \"line\": {line}, \"args\": [], \"comment\": "
        );
        let text = text.strip_suffix(b"\r").unwrap_or(text);
        str_lit(self.out, &lossy(text));
        self.out.push('}');
    }

    fn word(&mut self, w: &Word<'_>) {
        let t = self.arg_text(w);
        str_lit(self.out, &t);
    }

    fn arg_text(&self, w: &Word<'_>) -> String {
        match self.options.args {
            ArgStyle::Nginx => w.value_lossy(),
            ArgStyle::Crossplane => crossplane_spelling(w),
        }
    }
}

/// crossplane's spelling of a word: raw, except that a quoted word loses
/// its quotes and `\` before its own quote character.
pub(crate) fn crossplane_spelling(w: &Word<'_>) -> String {
    let raw = w.raw();
    let q = match w.quote() {
        Quote::None => return lossy(raw),
        Quote::Double => b'"',
        Quote::Single => b'\'',
    };
    let inner = &raw[1..raw.len() - 1];
    let mut out = Vec::with_capacity(inner.len());
    let mut i = 0;
    while i < inner.len() {
        if inner[i] == b'\\' && i + 1 < inner.len() {
            if inner[i + 1] != q {
                out.push(b'\\');
            }
            out.push(inner[i + 1]);
            i += 2;
        } else {
            out.push(inner[i]);
            i += 1;
        }
    }
    lossy(&out)
}

/// crossplane's `_prepare_if_args`; `closed` says nginx skipped a `)`
/// right after the last (quoted) argument, which crossplane reads as a
/// separate `)` argument.
fn prepare_if(args: &mut Vec<String>, closed: bool) {
    if closed {
        args.push(")".into());
    }
    if args.first().is_some_and(|a| a.starts_with('('))
        && args.last().is_some_and(|a| a.ends_with(')'))
    {
        let first = args[0][1..].trim_start().to_string();
        args[0] = first;
        let n = args.len() - 1;
        let last = args[n][..args[n].len() - 1].trim_end().to_string();
        args[n] = last;
        if args.last().is_some_and(|a| a.is_empty()) {
            args.pop();
        }
        if args.first().is_some_and(|a| a.is_empty()) {
            args.remove(0);
        }
    }
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Writes a JSON string literal.
fn str_lit(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}
