//! (being written)
#![deny(missing_docs)]
pub mod envfile;
pub mod error;
pub mod interpolate;
pub mod merge;
pub mod yaml;
