//! The tokenizer and the statement parser, after nginx's `ngx_conf_read_token`
//! and `ngx_conf_parse` (src/core/ngx_conf_file.c).
//!
//! The lexical pieces are nom parsers over bytes; the statement structure is
//! an explicit stack rather than recursion, so no nesting depth can overflow
//! the call stack.

use crate::error::{Lossy, ParseError};
use crate::tree::{Block, Body, ConfFile, Node, Tok};
use nom::bytes::complete::{take_till, take_while};
use nom::IResult;
use std::path::PathBuf;

/// nginx's configuration read buffer (`NGX_CONF_BUFFER`): no token may fill it.
pub const MAX_TOKEN: usize = 4096;

/// Directives whose block is read by a custom handler (`cf->handler` in
/// nginx): key/value lines, no nested blocks.
const KEY_VALUE_BLOCKS: &[&[u8]] = &[b"types", b"map", b"geo", b"split_clients", b"charset_map"];

fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

/// Whitespace: space, tab, CR, LF.
fn whitespace(i: &[u8]) -> IResult<&[u8], &[u8]> {
    take_while(is_space)(i)
}

/// A `#` comment up to (not including) the LF.
fn comment(i: &[u8]) -> IResult<&[u8], &[u8]> {
    let (rest, _) = nom::bytes::complete::tag(&b"#"[..])(i)?;
    let (rest, _) = take_till(|c| c == b'\n')(rest)?;
    Ok((rest, &i[..i.len() - rest.len()]))
}

/// What scanning a word found.
enum Scan {
    /// The word ends before this many bytes of input.
    Word(usize),
    /// The input ended inside the word.
    Eof,
    /// The word reached [`MAX_TOKEN`] bytes.
    TooLong,
}

/// An unquoted word: `\x` protects x, `${` keeps its brace, and only
/// space, tab, CR, LF, `;` and `{` end it (`}`, `#` and quotes are literal).
fn bare_word(i: &[u8]) -> IResult<&[u8], Scan> {
    let mut n = 0;
    let mut variable = false;
    loop {
        if n >= MAX_TOKEN && i.len() > MAX_TOKEN {
            return Ok((i, Scan::TooLong));
        }
        let Some(&b) = i.get(n) else {
            return Ok((i, Scan::Eof));
        };
        if n > 0 {
            if b == b'{' && variable {
                n += 1;
                continue;
            }
            variable = false;
            if is_space(b) || b == b';' || b == b'{' {
                return Ok((&i[n..], Scan::Word(n)));
            }
        }
        match b {
            b'\\' => {
                if n + 1 >= i.len() {
                    return Ok((i, Scan::Eof));
                }
                n += 2;
            }
            b'$' => {
                variable = true;
                n += 1;
            }
            _ => n += 1,
        }
    }
}

/// A quoted word, opening quote included: up to the same quote unescaped.
fn quoted_word(i: &[u8]) -> IResult<&[u8], Scan> {
    let q = i[0];
    let mut n = 1;
    loop {
        if n > MAX_TOKEN && i.len() > MAX_TOKEN + 1 {
            return Ok((i, Scan::TooLong));
        }
        let Some(&b) = i.get(n) else {
            return Ok((i, Scan::Eof));
        };
        if b == b'\\' {
            n += 2;
            if n > i.len() {
                return Ok((i, Scan::Eof));
            }
        } else if b == q {
            return Ok((&i[n + 1..], Scan::Word(n + 1)));
        } else {
            n += 1;
        }
    }
}

/// A Lua long bracket opening at `i[0] == b'['`: `[[`, `[=[`, ...; its level.
fn long_bracket(i: &[u8]) -> Option<usize> {
    let eq = i.get(1..)?.iter().take_while(|&&c| c == b'=').count();
    (i.get(1 + eq) == Some(&b'[')).then_some(eq)
}

/// The raw body of a `*_by_lua_block` from its `{` to the matching `}`,
/// skipping Lua strings, long brackets and comments (as the lua module's
/// reader does). Returns the length including both braces.
fn lua_block(i: &[u8]) -> IResult<&[u8], Option<usize>> {
    let mut n = 1;
    let mut depth = 1usize;
    let skip_long = |n: usize, level: usize| -> Option<usize> {
        let close: Vec<u8> = std::iter::once(b']')
            .chain(std::iter::repeat_n(b'=', level))
            .chain(std::iter::once(b']'))
            .collect();
        let from = n + level + 2;
        memchr::memmem::find(i.get(from..)?, &close).map(|p| from + p + close.len())
    };
    while let Some(&b) = i.get(n) {
        match b {
            b'-' if i.get(n + 1) == Some(&b'-') => {
                n += 2;
                if i.get(n) == Some(&b'[') {
                    if let Some(level) = long_bracket(&i[n..]) {
                        match skip_long(n, level) {
                            Some(e) => n = e,
                            None => return Ok((i, None)),
                        }
                        continue;
                    }
                }
                n = memchr::memchr(b'\n', &i[n..]).map_or(i.len(), |p| n + p);
            }
            b'[' => match long_bracket(&i[n..]) {
                Some(level) => match skip_long(n, level) {
                    Some(e) => n = e,
                    None => return Ok((i, None)),
                },
                None => n += 1,
            },
            b'"' | b'\'' => {
                n += 1;
                loop {
                    match i.get(n) {
                        None => return Ok((i, None)),
                        Some(b'\\') => n += 2,
                        Some(&c) if c == b => {
                            n += 1;
                            break;
                        }
                        Some(_) => n += 1,
                    }
                }
            }
            b'{' => {
                depth += 1;
                n += 1;
            }
            b'}' => {
                depth -= 1;
                n += 1;
                if depth == 0 {
                    return Ok((&i[n..], Some(n)));
                }
            }
            _ => n += 1,
        }
    }
    Ok((i, None))
}

/// What the tokenizer hands to the parser.
enum Ev {
    Word(Tok),
    Comment(Tok),
    Semi(u32),
    Open(u32),
    Close(u32),
    Eof,
}

/// A tokenizer error: nginx's message and the offset nginx stopped at.
struct LexErr {
    message: String,
    at: usize,
    /// The line nginx names when it is not the line of `at` (too long tokens).
    line: Option<u32>,
}

struct Lexer<'s> {
    src: &'s [u8],
    pos: usize,
    line: u32,
}

impl<'s> Lexer<'s> {
    fn rest(&self) -> &'s [u8] {
        &self.src[self.pos..]
    }

    fn advance(&mut self, n: usize) {
        let seen = &self.src[self.pos..self.pos + n];
        self.line += memchr::memchr_iter(b'\n', seen).count() as u32;
        self.pos += n;
    }

    fn tok(&self, start: usize, line: u32) -> Tok {
        Tok {
            start: start as u32,
            end: self.pos as u32,
            line,
        }
    }

    fn eof_in_statement(&self) -> LexErr {
        LexErr {
            message: r#"unexpected end of file, expecting ";" or "}""#.into(),
            at: self.src.len(),
            line: None,
        }
    }

    fn too_long(&self, start: usize, quote: Option<u8>, line: u32) -> LexErr {
        let message = match quote {
            Some(q) => format!(
                "too long parameter, probably missing terminating \"{}\" character",
                q as char
            ),
            None => {
                let head = &self.src[start..(start + 10).min(self.src.len())];
                format!("too long parameter \"{}...\" started", Lossy(head))
            }
        };
        LexErr {
            message,
            at: start,
            line: Some(line),
        }
    }

    fn next(&mut self) -> Result<Ev, LexErr> {
        let (_, ws) = whitespace(self.rest()).expect("complete parsers do not fail here");
        self.advance(ws.len());
        let start = self.pos;
        let line = self.line;
        let Some(&b) = self.src.get(start) else {
            return Ok(Ev::Eof);
        };
        match b {
            b';' => {
                self.pos += 1;
                Ok(Ev::Semi(start as u32))
            }
            b'{' => {
                self.pos += 1;
                Ok(Ev::Open(start as u32))
            }
            b'}' => {
                self.pos += 1;
                Ok(Ev::Close(start as u32))
            }
            b'#' => {
                let (rest, c) = comment(self.rest()).expect("starts with #");
                if c.len() >= MAX_TOKEN && !rest.is_empty() {
                    return Err(self.too_long(start, None, line));
                }
                self.pos += c.len();
                Ok(Ev::Comment(self.tok(start, line)))
            }
            b'"' | b'\'' => {
                let (_, scan) = quoted_word(self.rest()).expect("infallible");
                match scan {
                    Scan::Eof => Err(self.eof_in_statement()),
                    Scan::TooLong => Err(self.too_long(start, Some(b), line)),
                    Scan::Word(n) => {
                        self.advance(n);
                        let tok = self.tok(start, line);
                        // need_space: after a closing quote only whitespace,
                        // `;`, `{` or `)` (which nginx skips) may follow.
                        match self.src.get(self.pos) {
                            None => {}
                            Some(&c) if is_space(c) || c == b';' || c == b'{' => {}
                            Some(b')') => self.pos += 1,
                            Some(&c) => {
                                return Err(LexErr {
                                    message: format!("unexpected \"{}\"", Lossy(&[c])),
                                    at: self.pos,
                                    line: None,
                                })
                            }
                        }
                        Ok(Ev::Word(tok))
                    }
                }
            }
            _ => {
                let (_, scan) = bare_word(self.rest()).expect("infallible");
                match scan {
                    Scan::Eof => Err(self.eof_in_statement()),
                    Scan::TooLong => Err(self.too_long(start, None, line)),
                    Scan::Word(n) => {
                        self.advance(n);
                        Ok(Ev::Word(self.tok(start, line)))
                    }
                }
            }
        }
    }

    /// Reads a Lua body whose `{` is at `open` (already consumed).
    fn lua(&mut self, open: usize) -> Result<Tok, LexErr> {
        let line = self.line;
        let (_, len) = lua_block(&self.src[open..]).expect("infallible");
        match len {
            Some(n) => {
                self.pos = open;
                self.advance(n);
                Ok(self.tok(open, line))
            }
            None => Err(LexErr {
                message: r#"unexpected end of file, expecting "}""#.into(),
                at: self.src.len(),
                line: None,
            }),
        }
    }
}

/// An open block on the parser's stack.
struct Open {
    first: u32,
    count: u32,
    open: u32,
    children: Vec<Node>,
    key_value: bool,
    map: bool,
}

/// Parses a file; on a syntax error returns what was read before it.
pub(crate) fn parse(path: PathBuf, src: Vec<u8>) -> (ConfFile, Option<ParseError>) {
    let mut file = ConfFile {
        path,
        src,
        tokens: Vec::new(),
        nodes: Vec::new(),
        cut: false,
    };
    if file.src.len() >= u32::MAX as usize {
        let err = ParseError {
            path: file.path.clone(),
            line: 1,
            column: 1,
            message: format!(
                "file too large ({} bytes; the limit is 4 GiB)",
                file.src.len()
            ),
        };
        return (file, Some(err));
    }
    // About one token per 6 bytes in real configs.
    file.tokens.reserve(file.src.len() / 6);
    let err = Parser::run(&mut file);
    (file, err)
}

struct Parser;

impl Parser {
    fn run(file: &mut ConfFile) -> Option<ParseError> {
        let src = std::mem::take(&mut file.src);
        let mut tokens = std::mem::take(&mut file.tokens);
        let mut root: Vec<Node> = Vec::new();
        let mut stack: Vec<Open> = Vec::new();
        let mut lx = Lexer {
            src: &src,
            pos: 0,
            line: 1,
        };
        let mut first = 0u32;
        let mut words = 0u32;
        let result: Result<(), LexErr> = loop {
            let ev = match lx.next() {
                Ok(ev) => ev,
                Err(e) => break Err(e),
            };
            let count = tokens.len() as u32 - first;
            macro_rules! children {
                () => {
                    match stack.last_mut() {
                        Some(o) => &mut o.children,
                        None => &mut root,
                    }
                };
            }
            let unexpected = |c: char, at: u32| LexErr {
                message: format!("unexpected \"{c}\""),
                at: at as usize,
                line: None,
            };
            match ev {
                Ev::Word(t) => {
                    tokens.push(t);
                    words += 1;
                }
                Ev::Comment(t) => {
                    tokens.push(t);
                    if words == 0 {
                        children!().push(Node {
                            first,
                            count: 1,
                            body: Body::Comment,
                        });
                        first += 1;
                    }
                }
                Ev::Semi(p) => {
                    if words == 0 {
                        break Err(unexpected(';', p));
                    }
                    if stack.last().is_some_and(|o| o.map)
                        && !map_entry_ok(&src, &tokens[first as usize..])
                    {
                        break Err(LexErr {
                            message: "invalid number of the map parameters".into(),
                            at: p as usize,
                            line: None,
                        });
                    }
                    children!().push(Node {
                        first,
                        count,
                        body: Body::Semi(p),
                    });
                    first = tokens.len() as u32;
                    words = 0;
                }
                Ev::Open(p) => {
                    if words == 0 || stack.last().is_some_and(|o| o.key_value) {
                        break Err(unexpected('{', p));
                    }
                    let name = first_word(&src, &tokens[first as usize..]);
                    let name = crate::tree::decode(name);
                    if name.ends_with(b"_by_lua_block") {
                        match lx.lua(p as usize) {
                            Ok(t) => tokens.push(t),
                            Err(e) => break Err(e),
                        }
                        children!().push(Node {
                            first,
                            count: count + 1,
                            body: Body::Lua,
                        });
                    } else {
                        let key_value = KEY_VALUE_BLOCKS.contains(&&name[..]);
                        stack.push(Open {
                            first,
                            count,
                            open: p,
                            children: Vec::new(),
                            key_value,
                            map: &name[..] == b"map",
                        });
                    }
                    first = tokens.len() as u32;
                    words = 0;
                }
                Ev::Close(p) => {
                    if words != 0 {
                        break Err(unexpected('}', p));
                    }
                    let Some(o) = stack.pop() else {
                        break Err(unexpected('}', p));
                    };
                    let node = Node {
                        first: o.first,
                        count: o.count,
                        body: Body::Block(Box::new(Block {
                            open: o.open,
                            close: p,
                            children: o.children,
                        })),
                    };
                    match stack.last_mut() {
                        Some(parent) => parent.children.push(node),
                        None => root.push(node),
                    }
                }
                Ev::Eof => {
                    if words != 0 {
                        break Err(lx.eof_in_statement());
                    }
                    if !stack.is_empty() {
                        break Err(LexErr {
                            message: r#"unexpected end of file, expecting "}""#.into(),
                            at: src.len(),
                            line: None,
                        });
                    }
                    break Ok(());
                }
            }
        };
        let err = result.err().map(|e| {
            let line = e
                .line
                .unwrap_or_else(|| memchr::memchr_iter(b'\n', &src[..e.at]).count() as u32 + 1);
            ParseError {
                path: file.path.clone(),
                line,
                column: crate::tree::column_at(&src, e.at),
                message: e.message,
            }
        });
        if err.is_some() {
            // Keep what was read: the statement cut short, then the open blocks.
            let count = tokens.len() as u32 - first;
            if words > 0 {
                let children = match stack.last_mut() {
                    Some(o) => &mut o.children,
                    None => &mut root,
                };
                children.push(Node {
                    first,
                    count,
                    body: Body::Unterminated,
                });
            }
            while let Some(o) = stack.pop() {
                let node = Node {
                    first: o.first,
                    count: o.count,
                    body: Body::Block(Box::new(Block {
                        open: o.open,
                        close: u32::MAX,
                        children: o.children,
                    })),
                };
                match stack.last_mut() {
                    Some(parent) => parent.children.push(node),
                    None => root.push(node),
                }
            }
        }
        tokens.shrink_to_fit();
        file.src = src;
        file.tokens = tokens;
        file.nodes = root;
        file.cut = err.is_some();
        err
    }
}

fn first_word<'s>(src: &'s [u8], toks: &[Tok]) -> &'s [u8] {
    toks.iter()
        .map(|t| &src[t.start as usize..t.end as usize])
        .find(|w| w[0] != b'#')
        .map(|w| match w[0] {
            b'"' | b'\'' => &w[1..w.len() - 1],
            _ => w,
        })
        .unwrap_or_default()
}

/// nginx's `map` handler: two parameters, or `hostnames` / `volatile` alone.
fn map_entry_ok(src: &[u8], toks: &[Tok]) -> bool {
    let words: Vec<&[u8]> = toks
        .iter()
        .map(|t| &src[t.start as usize..t.end as usize])
        .filter(|w| w[0] != b'#')
        .collect();
    match words.len() {
        2 => true,
        1 => matches!(words[0], b"hostnames" | b"volatile"),
        _ => false,
    }
}
