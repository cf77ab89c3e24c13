//! The lossless tree of one file and its read-only views.
//!
//! A [`ConfFile`] owns the file's bytes and a compact tree over them: every
//! token (word, comment, raw Lua body) is a span of the source with its line;
//! every `;`, `{` and `}` is an offset. Nothing is copied or decoded until a
//! view asks for it, so the tree of a 20 MB file stays a few times smaller
//! than the file itself. What lies between two tokens is whitespace, plus the
//! `)` nginx skips right after a closing quote (`if ($a = "b")`); the printer
//! walks the tree and checks exactly that, so printing an unedited tree gives
//! the input back byte for byte.

use crate::error::ParseError;
use std::borrow::Cow;
use std::io;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// One token: a span of the source and the line it starts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Tok {
    pub(crate) start: u32,
    pub(crate) end: u32,
    pub(crate) line: u32,
}

/// How a statement ends.
#[derive(Debug)]
pub(crate) enum Body {
    /// A comment on its own (its one token starts with `#`).
    Comment,
    /// `;` at this offset.
    Semi(u32),
    /// `{ ... }`.
    Block(Box<Block>),
    /// A raw Lua body: the last token is `{ ... }` verbatim.
    Lua,
    /// Cut short by a syntax error (lenient parsing only).
    Unterminated,
}

/// A block's braces and children.
#[derive(Debug)]
pub(crate) struct Block {
    pub(crate) open: u32,
    /// The offset of `}`, or `u32::MAX` when a syntax error cut the block.
    pub(crate) close: u32,
    pub(crate) children: Vec<Node>,
}

/// A statement: a directive or a comment.
#[derive(Debug)]
pub(crate) struct Node {
    /// Range into [`ConfFile::tokens`]: the words (name first) and the
    /// comments found between them, in source order.
    pub(crate) first: u32,
    pub(crate) count: u32,
    pub(crate) body: Body,
}

impl Drop for Block {
    // Iterative, so that no nesting depth overflows the stack.
    fn drop(&mut self) {
        let mut stack = std::mem::take(&mut self.children);
        while let Some(mut n) = stack.pop() {
            if let Body::Block(b) = &mut n.body {
                stack.append(&mut b.children);
            }
        }
    }
}

/// One parsed file: its bytes and its lossless tree.
pub struct ConfFile {
    pub(crate) path: PathBuf,
    pub(crate) src: Vec<u8>,
    pub(crate) tokens: Vec<Tok>,
    pub(crate) nodes: Vec<Node>,
    /// Whether a syntax error cut the tree short (lenient parsing).
    pub(crate) cut: bool,
}

impl std::fmt::Debug for ConfFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConfFile")
            .field("path", &self.path)
            .field("bytes", &self.src.len())
            .field("tokens", &self.tokens.len())
            .finish()
    }
}

impl Clone for ConfFile {
    /// Parses the same bytes again (the tree is a function of the bytes).
    fn clone(&self) -> Self {
        crate::parse::parse(self.path.clone(), self.src.clone()).0
    }
}

/// How a word was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quote {
    /// Bare.
    None,
    /// In `"double quotes"`.
    Double,
    /// In `'single quotes'`.
    Single,
}

/// A word (a directive name or an argument) as written, with its position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Word<'a> {
    raw: &'a [u8],
    line: u32,
    column: u32,
    offset: usize,
}

impl<'a> Word<'a> {
    /// The bytes as written, quotes and escapes included.
    pub fn raw(&self) -> &'a [u8] {
        self.raw
    }

    /// The quote style.
    pub fn quote(&self) -> Quote {
        match self.raw.first() {
            Some(b'"') => Quote::Double,
            Some(b'\'') => Quote::Single,
            _ => Quote::None,
        }
    }

    /// The value nginx stores: quotes removed, `\"` `\'` `\\` `\t` `\r` `\n`
    /// decoded, every other escape kept with its backslash.
    pub fn value(&self) -> Cow<'a, [u8]> {
        let inner = match self.quote() {
            Quote::None => self.raw,
            _ => &self.raw[1..self.raw.len() - 1],
        };
        decode(inner)
    }

    /// [`Word::value`] as text, invalid UTF-8 replaced by U+FFFD.
    pub fn value_lossy(&self) -> String {
        String::from_utf8_lossy(&self.value()).into_owned()
    }

    /// 1-based line of its first byte.
    pub fn line(&self) -> u32 {
        self.line
    }

    /// 1-based byte column of its first byte.
    pub fn column(&self) -> u32 {
        self.column
    }

    /// Byte offset of its first byte in the file.
    pub fn offset(&self) -> usize {
        self.offset
    }
}

/// nginx's escape decoding (`ngx_conf_read_token`, where a word is stored).
pub(crate) fn decode(raw: &[u8]) -> Cow<'_, [u8]> {
    if memchr::memchr(b'\\', raw).is_none() {
        return Cow::Borrowed(raw);
    }
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        if raw[i] == b'\\' && i + 1 < raw.len() {
            match raw[i + 1] {
                b'"' | b'\'' | b'\\' => {
                    out.push(raw[i + 1]);
                    i += 2;
                    continue;
                }
                b't' => {
                    out.push(b'\t');
                    i += 2;
                    continue;
                }
                b'r' => {
                    out.push(b'\r');
                    i += 2;
                    continue;
                }
                b'n' => {
                    out.push(b'\n');
                    i += 2;
                    continue;
                }
                _ => {}
            }
        }
        out.push(raw[i]);
        i += 1;
    }
    Cow::Owned(out)
}

/// A comment, on its own line or between the words of a directive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Comment<'a> {
    raw: &'a [u8],
    line: u32,
    column: u32,
}

impl<'a> Comment<'a> {
    /// The text after `#`, up to the end of the line (a CR before the LF kept).
    pub fn text(&self) -> &'a [u8] {
        &self.raw[1..]
    }

    /// The comment as written, `#` included.
    pub fn raw(&self) -> &'a [u8] {
        self.raw
    }

    /// 1-based line.
    pub fn line(&self) -> u32 {
        self.line
    }

    /// 1-based byte column of `#`.
    pub fn column(&self) -> u32 {
        self.column
    }
}

/// A statement of a block or of a file.
#[derive(Debug, Clone, Copy)]
pub enum Item<'a> {
    /// A directive, simple or with a block.
    Directive(Directive<'a>),
    /// A comment standing between statements.
    Comment(Comment<'a>),
}

/// A directive: its name, its arguments, and how it ends.
#[derive(Debug, Clone, Copy)]
pub struct Directive<'a> {
    file: &'a ConfFile,
    node: &'a Node,
}

impl<'a> Directive<'a> {
    fn toks(&self) -> &'a [Tok] {
        let first = self.node.first as usize;
        &self.file.tokens[first..first + self.node.count as usize]
    }

    fn word_toks(&self) -> impl Iterator<Item = &'a Tok> + 'a {
        let file = self.file;
        let lua = matches!(self.node.body, Body::Lua);
        let toks = self.toks();
        let toks = if lua { &toks[..toks.len() - 1] } else { toks };
        toks.iter()
            .filter(move |t| file.src[t.start as usize] != b'#')
    }

    /// The name (`listen`, or the key of a `map` entry).
    pub fn name(&self) -> Word<'a> {
        let t = self.word_toks().next().expect("a directive has a name");
        self.file.word(t)
    }

    /// The arguments after the name, in order.
    pub fn args(&self) -> impl Iterator<Item = Word<'a>> + 'a {
        let file = self.file;
        self.word_toks().skip(1).map(move |t| file.word(t))
    }

    /// The comments written between its words.
    pub fn inner_comments(&self) -> impl Iterator<Item = Comment<'a>> + 'a {
        let file = self.file;
        self.toks()
            .iter()
            .filter(move |t| file.src[t.start as usize] == b'#')
            .map(move |t| file.comment(t))
    }

    /// 1-based line of the name.
    pub fn line(&self) -> u32 {
        self.name().line
    }

    /// 1-based byte column of the name.
    pub fn column(&self) -> u32 {
        self.name().column
    }

    /// The statements of its block, when it has one.
    pub fn block(&self) -> Option<Items<'a>> {
        match &self.node.body {
            Body::Block(b) => Some(Items {
                file: self.file,
                nodes: &b.children,
            }),
            _ => None,
        }
    }

    /// The raw body of a `*_by_lua_block`, braces included.
    pub fn lua_body(&self) -> Option<&'a [u8]> {
        match self.node.body {
            Body::Lua => {
                let t = self.toks().last().expect("a lua directive has its body");
                Some(&self.file.src[t.start as usize..t.end as usize])
            }
            _ => None,
        }
    }

    /// Byte range from the name to the `;` or `}` inclusive.
    pub fn span(&self) -> Range<usize> {
        let start = self.toks()[0].start as usize;
        let end = match &self.node.body {
            Body::Semi(p) => *p as usize + 1,
            Body::Block(b) if b.close != u32::MAX => b.close as usize + 1,
            _ => self.toks().last().map_or(start, |t| t.end as usize),
        };
        start..end
    }

    /// The file it is in.
    pub fn file(&self) -> &'a ConfFile {
        self.file
    }
}

/// The statements of a file or block.
#[derive(Debug, Clone, Copy)]
pub struct Items<'a> {
    file: &'a ConfFile,
    nodes: &'a [Node],
}

impl<'a> Items<'a> {
    /// Every statement, comments included.
    pub fn iter(&self) -> impl Iterator<Item = Item<'a>> + 'a {
        let file = self.file;
        self.nodes.iter().map(move |n| file.item(n))
    }

    /// The directives only.
    pub fn directives(&self) -> impl Iterator<Item = Directive<'a>> + 'a {
        self.iter().filter_map(|i| match i {
            Item::Directive(d) => Some(d),
            Item::Comment(_) => None,
        })
    }

    /// How many statements.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }
}

impl ConfFile {
    /// Parses one file's bytes, stopping at the first syntax error as nginx does.
    ///
    /// Includes are not followed here; see [`crate::Config`].
    pub fn parse(path: impl Into<PathBuf>, src: Vec<u8>) -> Result<ConfFile, ParseError> {
        let (file, err) = crate::parse::parse(path.into(), src);
        match err {
            Some(e) => Err(e),
            None => Ok(file),
        }
    }

    /// Parses like [`ConfFile::parse`] but keeps the statements read before
    /// the first error, as crossplane does with its error collection.
    pub fn parse_lenient(path: impl Into<PathBuf>, src: Vec<u8>) -> (ConfFile, Option<ParseError>) {
        crate::parse::parse(path.into(), src)
    }

    /// The path it was parsed as.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The bytes it was parsed from.
    pub fn source(&self) -> &[u8] {
        &self.src
    }

    /// Its top-level statements.
    pub fn items(&self) -> Items<'_> {
        Items {
            file: self,
            nodes: &self.nodes,
        }
    }

    /// Line and column (1-based, bytes) of a byte offset.
    pub fn position(&self, offset: usize) -> (u32, u32) {
        let offset = offset.min(self.src.len());
        let before = &self.src[..offset];
        let line = memchr::memchr_iter(b'\n', before).count() as u32 + 1;
        (line, column_at(&self.src, offset))
    }

    /// Every directive of the file, depth first, with its enclosing
    /// directives (outermost first).
    pub fn walk(&self) -> Vec<(Vec<Directive<'_>>, Directive<'_>)> {
        let mut out = Vec::new();
        let mut stack: Vec<(Vec<Directive<'_>>, Items<'_>)> = vec![(Vec::new(), self.items())];
        while let Some((parents, items)) = stack.pop() {
            let mut nested = Vec::new();
            for d in items.directives() {
                out.push((parents.clone(), d));
                if let Some(b) = d.block() {
                    let mut p = parents.clone();
                    p.push(d);
                    nested.push((p, b));
                }
            }
            stack.extend(nested.into_iter().rev());
        }
        out.sort_by_key(|(_, d)| d.span().start);
        out
    }

    /// Prints the tree back. Unedited, this is the input byte for byte.
    ///
    /// A tree cut short by a syntax error ([`ConfFile::parse_lenient`])
    /// prints what it read, then the rest of the input as it was.
    pub fn print(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.src.len());
        if let Err(e) = self.write_to(&mut out) {
            // Only a bug of this crate gets here: say so, but never lose bytes.
            debug_assert!(false, "{}: {e}", self.path.display());
            return self.src.clone();
        }
        out
    }

    /// Prints the tree into `w`, walking tokens, terminators and the
    /// whitespace between them.
    ///
    /// # Errors
    /// An error of `w`, or `InvalidData` if the tree does not account for a
    /// byte that is not whitespace (which would be a bug of this crate).
    pub fn write_to(&self, w: &mut impl io::Write) -> io::Result<()> {
        let mut p = Printer {
            src: &self.src,
            at: 0,
            w,
        };
        let mut stack: Vec<(&[Node], usize, Option<u32>)> = vec![(&self.nodes, 0, None)];
        while let Some((nodes, i, close)) = stack.pop() {
            if i == nodes.len() {
                if let Some(c) = close {
                    if c != u32::MAX {
                        p.piece(c as usize, c as usize + 1)?;
                    }
                }
                continue;
            }
            stack.push((nodes, i + 1, close));
            let node = &nodes[i];
            let first = node.first as usize;
            for t in &self.tokens[first..first + node.count as usize] {
                p.piece(t.start as usize, t.end as usize)?;
            }
            match &node.body {
                Body::Semi(s) => p.piece(*s as usize, *s as usize + 1)?,
                Body::Block(b) => {
                    p.piece(b.open as usize, b.open as usize + 1)?;
                    stack.push((&b.children, 0, Some(b.close)));
                }
                Body::Comment | Body::Lua | Body::Unterminated => {}
            }
        }
        if self.cut {
            // What follows the error was not read into the tree.
            let rest = &self.src[p.at.min(self.src.len())..];
            return p.w.write_all(rest);
        }
        p.piece(self.src.len(), self.src.len())
    }

    pub(crate) fn word(&self, t: &Tok) -> Word<'_> {
        Word {
            raw: &self.src[t.start as usize..t.end as usize],
            line: t.line,
            column: column_at(&self.src, t.start as usize),
            offset: t.start as usize,
        }
    }

    pub(crate) fn comment(&self, t: &Tok) -> Comment<'_> {
        Comment {
            raw: &self.src[t.start as usize..t.end as usize],
            line: t.line,
            column: column_at(&self.src, t.start as usize),
        }
    }

    fn item<'a>(&'a self, n: &'a Node) -> Item<'a> {
        match n.body {
            Body::Comment => Item::Comment(self.comment(&self.tokens[n.first as usize])),
            _ => Item::Directive(Directive {
                file: self,
                node: n,
            }),
        }
    }
}

/// 1-based byte column of `offset`.
pub(crate) fn column_at(src: &[u8], offset: usize) -> u32 {
    let line_start = memchr::memrchr(b'\n', &src[..offset]).map_or(0, |p| p + 1);
    (offset - line_start) as u32 + 1
}

struct Printer<'s, W> {
    src: &'s [u8],
    at: usize,
    w: W,
}

impl<W: io::Write> Printer<'_, W> {
    /// Writes the gap before `start` (whitespace only) and then `start..end`.
    fn piece(&mut self, start: usize, end: usize) -> io::Result<()> {
        if start < self.at {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("tree out of order at byte {start}"),
            ));
        }
        let gap = &self.src[self.at..start];
        for (i, &b) in gap.iter().enumerate() {
            let ok = matches!(b, b' ' | b'\t' | b'\r' | b'\n')
                // nginx skips a `)` right after a closing quote.
                || (b == b')'
                    && i == 0
                    && self.at > 0
                    && matches!(self.src[self.at - 1], b'"' | b'\''));
            if !ok {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("byte {} not in the tree", self.at + i),
                ));
            }
        }
        self.w.write_all(gap)?;
        self.w.write_all(&self.src[start..end])?;
        self.at = end;
        Ok(())
    }
}
