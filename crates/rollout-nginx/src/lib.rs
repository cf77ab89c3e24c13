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
//! - [`upstream`]: read and rewrite `upstream` blocks.
//!
//! # Edges
//!
//! The crate knows nginx's *syntax*, not its module table: it does not know
//! which directives exist, where they are allowed or how many arguments
//! they take (crossplane's `analyzer.py`). It runs nothing; validating with
//! `nginx -t` and reloading belong to the traffic router.
#![deny(missing_docs)]

mod config;
mod error;
mod json;
mod parse;
pub mod proxy;
pub mod router;
mod tree;
pub mod upstream;

pub use config::{Config, FileError, Fs, LoadOptions, Source};
pub use error::{LoadError, ParseError};
pub use json::{ArgStyle, JsonOptions};
pub use parse::MAX_TOKEN;
pub use tree::{Comment, ConfFile, Directive, Item, Items, Quote, Word};
