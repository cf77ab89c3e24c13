//! rollout-nginx: a lossless nginx config parser and a surgical upstream
//! editor.
//!
//! # Why this crate exists
//!
//! During every rollout the tool rewrites the operator's own nginx config:
//! the `server` lines of one `upstream` block. It must never damage that
//! file. So the parser keeps every byte (printing an unedited tree gives the
//! input back byte for byte), edits touch only the lines they mean to, and
//! what nginx would refuse is refused here first, with the file, line and
//! column, in nginx's own words.
//!
//! # What it does
//!
//! - [`ConfFile`]: one file parsed with nginx's own tokenizer rules
//!   (`ngx_conf_read_token`), on bytes, so invalid UTF-8 and CRLF pass
//!   through. Read it through [`Directive`], [`Word`] and [`Comment`] views.
//! - [`Config`]: the main file and its includes, resolved as nginx does.
//! - [`generate`]: write a new config from a typed tree (`docker rollout
//!   init`), checked to read back as written.
//! - [`upstream`]: read and rewrite `upstream` blocks;
//!   [`ConfFile::upstream_routing`] finds the one that routes a service.
//!
//! # The tokenizer
//!
//! [`ConfFile::parse`] follows `ngx_conf_read_token` (src/core/ngx_conf_file.c):
//!
//! - bytes, not text: lines are counted on LF only; space, tab, CR and LF
//!   are whitespace (CRLF works); nothing is decoded, invalid UTF-8 passes;
//! - only space, tab, CR, LF, `;` and `{` end a bare word: `}`, `#` and
//!   quotes inside a word are literal (`foo}`, `a#b`, `right-"q"`), and `{`
//!   right after `$` stays in the word (`${var}`);
//! - `"` or `'` opens a quoted word only at the start of a word; after the
//!   closing quote only whitespace, `;`, `{` or `)` may follow (the `)` is
//!   skipped, for `if ($a = "b")`), else `unexpected "X"`;
//! - `\x` always protects x; when a word is stored `\"` `\'` `\\` `\t`
//!   `\r` `\n` are decoded and every other escape keeps its backslash
//!   ([`Word::value`]; [`Word::raw`] is the text as written);
//! - `#` at the start of a token comments to the end of the line, anywhere,
//!   also between the arguments of one directive;
//! - `""` and `''` are words (an empty directive name is fine in `map`);
//! - a token (comments included) may not reach 4096 bytes (`too long
//!   parameter ...`), nginx's read buffer;
//! - `if (...)`: parentheses are part of the words (`($a`, `b)`);
//! - `*_by_lua_block` bodies are read raw, Lua strings, long brackets and
//!   comments skipped (crossplane's rule for when: the directive name, even
//!   quoted, ends in `_by_lua_block`; the same word as an argument does not
//!   count);
//! - `types`, `map`, `geo`, `split_clients` and `charset_map` bodies are
//!   read by a handler in nginx, which refuses nested blocks (`unexpected
//!   "{"`), and `map` entries take two parameters (`invalid number of the
//!   map parameters`).
//!
//! Errors name the file, the line nginx names and the byte column, in
//! nginx's words: `unexpected "}"`, `unexpected end of file, expecting ";"
//! or "}"`, `unexpected end of file, expecting "}"`, `unexpected ";"`,
//! `unexpected "{"`. Nesting is handled with explicit stacks: no input makes
//! the parser recurse, and none makes it panic (a fuzz target and a
//! property test say so).
//!
//! # Where crossplane and nginx disagree (we follow nginx)
//!
//! Each is checked by the conformance runner (`cargo xtask conformance
//! nginx DIR`) against nginx's answer, verified with nginx 1.22 `-t`:
//!
//! - `"left"-quote`: crossplane splits it into two words; nginx: `unexpected
//!   "-"` (crossplane's `quote-behavior`).
//! - A missing `;` before `}`: crossplane reports `directive "proxy_pass" is
//!   not terminated by ";"` on the directive's line (from its directive
//!   table) and recovers; nginx: `unexpected "}"` on the brace's line
//!   (`missing-semicolon`).
//! - A last statement without `;` at end of file: crossplane raises an
//!   empty error with no line, or accepts a last word; nginx: `unexpected end
//!   of file, expecting ";" or "}"` (`includes-regular/conf.d/foo.conf`,
//!   certbot's `broken.conf`, `premature-eof`, where crossplane says
//!   `expecting "}"` at line 2).
//! - End of file inside a block: crossplane names the last line that has a
//!   newline, nginx the line after it (`braces/missing-brace`: 22 vs 23).
//! - `}` inside a word: crossplane splits the word; nginx keeps `}` in it.
//! - `${url ;`: crossplane's word is `${url ` (space included); nginx's is
//!   `${url` (`broken1`).
//! - A comment ending in `\`: crossplane drops the backslash (it glues it to
//!   the newline); nginx keeps it in the comment (`messy`).
//! - A block nested in a `map` body: crossplane accepts it; nginx:
//!   `unexpected "{"` (`invalid-map`).
//! - Escapes: crossplane decodes only `\"` in `"..."` and `\'` in `'...'`;
//!   nginx decodes the six above. The JSON payload gives nginx's values by
//!   default and crossplane's spelling with [`ArgStyle::Crossplane`].
//! - Missing includes: crossplane's error is Python's (`[Errno 2] No such
//!   file or directory: '...'`), ours nginx's (`open() "..." failed (2: No
//!   such file or directory)`).
//! - A token of exactly 4095 bytes that happens to end at nginx's 4096-byte
//!   buffer boundary is refused by nginx and accepted here (nginx's limit
//!   depends on where the token falls in its buffer; from 4096 bytes on both
//!   refuse).
//!
//! # Out of scope
//!
//! What needs nginx's (or crossplane's) directive table: `unknown
//! directive`, `"x" directive is not allowed here`, `invalid number of
//! arguments in "x" directive`, `directive "x" is not terminated by ";"` /
//! `has no opening "{"`, and the statements crossplane drops after such
//! errors; the checks module handlers make on their own bodies beyond the
//! two above (`charset_map`'s `invalid parameters number`, `geo` ranges).
//! A file included inside a handler-read block (`types { include x; }`) is
//! parsed as ordinary directives. The conformance runner lists each such
//! expectation it met.
//!
//! # Edges
//!
//! The crate runs nothing: validating with `nginx -t`, writing the live
//! file and reloading belong to the traffic router ([`router`]), which
//! uses [`upstream`] for the edit; requests to instances sent from inside
//! the proxy (verification, health probes) belong to [`verify`].
#![deny(missing_docs)]

pub mod accesslog;
mod config;
mod error;
pub mod generate;
mod include;
mod json;
mod parse;
pub mod proxy;
pub mod router;
mod routing;
mod tree;
pub mod upstream;
pub mod verify;

pub use config::{Config, FileError, Fs, LoadOptions, Source};
pub use error::{LoadError, ParseError};
pub use json::{ArgStyle, JsonOptions};
pub use parse::MAX_TOKEN;
pub use routing::RoutingError;
pub use tree::{Comment, ConfFile, Directive, Item, Items, Quote, Word};
