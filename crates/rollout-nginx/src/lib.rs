//! rollout-nginx: a lossless nginx config parser and a surgical upstream editor.
#![deny(missing_docs)]

mod error;
mod parse;
mod tree;

pub use error::{LoadError, ParseError};
pub use parse::MAX_TOKEN;
pub use tree::{Comment, ConfFile, Directive, Item, Items, Quote, Word};
