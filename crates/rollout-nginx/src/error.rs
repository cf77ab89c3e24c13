//! Errors: where in which file, in nginx's own words.

use std::fmt;
use std::path::PathBuf;

/// A syntax error, at the place nginx would report it.
///
/// `message` is nginx's own wording (`unexpected "}"`); `line` is the line
/// nginx names (the line it was reading when it gave up), `column` the byte
/// column (1-based) of the offending byte, which nginx does not report.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}:{line}:{column}: {message}", path.display())]
pub struct ParseError {
    /// The file.
    pub path: PathBuf,
    /// 1-based line.
    pub line: u32,
    /// 1-based byte column.
    pub column: u32,
    /// nginx's wording, without the ` in FILE:LINE` suffix.
    pub message: String,
}

impl ParseError {
    /// The message the way nginx and crossplane print it:
    /// `unexpected "}" in /etc/nginx/nginx.conf:5`.
    pub fn nginx_style(&self) -> String {
        format!("{} in {}:{}", self.message, self.path.display(), self.line)
    }
}

/// Why a whole configuration (the main file and its includes) did not load.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// A file could not be read.
    #[error("{}: cannot read: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The reason.
        #[source]
        source: std::io::Error,
    },
    /// An include names a file that is not there (nginx: `open() "x" failed`).
    #[error("{}:{line}:{column}: open() \"{}\" failed ({reason})", file.display(), target.display())]
    Include {
        /// The file with the `include` line.
        file: PathBuf,
        /// Its line.
        line: u32,
        /// Its column.
        column: u32,
        /// The path the include resolved to.
        target: PathBuf,
        /// The operating system's reason.
        reason: String,
    },
    /// A syntax error.
    #[error(transparent)]
    Parse(#[from] ParseError),
    /// The file is larger than this parser's 4 GiB limit.
    #[error("{}: file too large ({size} bytes; the limit is 4 GiB)", path.display())]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// Its size.
        size: usize,
    },
}

/// Formats bytes for a message, invalid UTF-8 replaced.
pub(crate) struct Lossy<'a>(pub &'a [u8]);

impl fmt::Display for Lossy<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&String::from_utf8_lossy(self.0))
    }
}
