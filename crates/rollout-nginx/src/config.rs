//! A whole configuration: the main file and the files its `include`s name.
//!
//! Includes are resolved as nginx resolves them, by the crate's one include
//! resolver (`include.rs`): a relative pattern is taken against the main
//! config's directory (nginx's conf prefix), not the including file's; a
//! pattern with `*`, `?` or `[` is a glob whose matches are sorted, and a
//! glob without matches is fine; a plain path that cannot be opened is an
//! error on the include's line. Each file is parsed once, the first time it
//! is named (as crossplane does), so include cycles end.

use crate::error::LoadError;
use crate::include;
use crate::tree::{ConfFile, Directive};
use crate::upstream::{EditError, Server, Upstream};
use rollout_core::router::RouteChange;
use std::collections::HashMap;
use std::ffi::OsString;
use std::io;
use std::path::{Path, PathBuf};

/// Where files come from: the local file system ([`Fs`]), or a proxy
/// container.
pub trait Source {
    /// A file's bytes.
    ///
    /// # Errors
    /// The reason it cannot be read.
    fn read(&self, path: &Path) -> io::Result<Vec<u8>>;

    /// The names in a directory (for glob includes).
    ///
    /// # Errors
    /// The reason it cannot be listed.
    fn list_dir(&self, dir: &Path) -> io::Result<Vec<OsString>>;
}

/// The local file system.
#[derive(Debug, Clone, Copy, Default)]
pub struct Fs;

impl Source for Fs {
    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        std::fs::read(path)
    }

    fn list_dir(&self, dir: &Path) -> io::Result<Vec<OsString>> {
        std::fs::read_dir(dir)?
            .map(|e| e.map(|e| e.file_name()))
            .collect()
    }
}

/// How to load.
#[derive(Debug, Clone, Copy, Default)]
pub struct LoadOptions {
    /// Do not follow includes (crossplane's `single`).
    pub single_file: bool,
    /// Keep going after an error, collecting errors per file (crossplane's
    /// `catch_errors`); otherwise the first error ends the load.
    pub lenient: bool,
}

/// An error found while loading, with the file it belongs to.
#[derive(Debug)]
pub struct FileError {
    /// Index of the file in [`Config::files`].
    pub file: usize,
    /// The error.
    pub error: LoadError,
}

/// The main file and its includes, parsed.
#[derive(Debug)]
pub struct Config {
    files: Vec<ConfFile>,
    /// (file, offset of the include's name) -> indices of included files.
    includes: HashMap<(usize, usize), Vec<usize>>,
    errors: Vec<FileError>,
}

impl Config {
    /// Loads `path` and its includes from the file system, failing at the
    /// first error.
    ///
    /// # Errors
    /// The first unreadable file, missing include or syntax error.
    pub fn load(path: impl AsRef<Path>) -> Result<Config, LoadError> {
        Config::load_from(&Fs, path.as_ref(), LoadOptions::default())
    }

    /// Loads from `source` with `options`. With `lenient`, errors are kept
    /// in [`Config::errors`] and the statements read before each stay.
    ///
    /// # Errors
    /// Without `lenient`, the first error; with it, only an unreadable main
    /// file.
    pub fn load_from(
        source: &dyn Source,
        path: &Path,
        options: LoadOptions,
    ) -> Result<Config, LoadError> {
        let mut cfg = Config {
            files: Vec::new(),
            includes: HashMap::new(),
            errors: Vec::new(),
        };
        let mut index: HashMap<PathBuf, usize> = HashMap::new();
        let main = source.read(path).map_err(|e| LoadError::Read {
            path: path.to_path_buf(),
            source: e,
        })?;
        let mut queue: Vec<(PathBuf, Option<Vec<u8>>)> = vec![(path.to_path_buf(), Some(main))];
        index.insert(path.to_path_buf(), 0);
        let mut next = 0;
        while next < queue.len() {
            let (p, bytes) = (queue[next].0.clone(), queue[next].1.take());
            let i = next;
            next += 1;
            let bytes = match bytes {
                Some(b) => b,
                None => match source.read(&p) {
                    Ok(b) => b,
                    Err(e) => {
                        let err = LoadError::Read {
                            path: p.clone(),
                            source: e,
                        };
                        if !options.lenient {
                            return Err(err);
                        }
                        cfg.errors.push(FileError {
                            file: i,
                            error: err,
                        });
                        Vec::new()
                    }
                },
            };
            let (file, err) = ConfFile::parse_lenient(p.clone(), bytes);
            if let Some(e) = err {
                if !options.lenient {
                    return Err(e.into());
                }
                cfg.errors.push(FileError {
                    file: i,
                    error: e.into(),
                });
            }
            if !options.single_file {
                for (d, pattern) in include::includes(&file, path) {
                    let targets = match pattern.expand(source) {
                        Ok(t) => t,
                        Err(reason) => {
                            let err = LoadError::Include {
                                file: p.clone(),
                                line: d.line(),
                                column: d.column(),
                                target: pattern.path().to_path_buf(),
                                reason,
                            };
                            if !options.lenient {
                                return Err(err);
                            }
                            cfg.errors.push(FileError {
                                file: i,
                                error: err,
                            });
                            Vec::new()
                        }
                    };
                    let mut ids = Vec::new();
                    for t in targets {
                        let id = *index.entry(t.clone()).or_insert_with(|| {
                            queue.push((t.clone(), None));
                            queue.len() - 1
                        });
                        ids.push(id);
                    }
                    cfg.includes.insert((i, d.span().start), ids);
                }
            }
            cfg.files.push(file);
        }
        Ok(cfg)
    }

    /// The files, the main one first, then in the order includes named them.
    pub fn files(&self) -> &[ConfFile] {
        &self.files
    }

    /// The main file.
    pub fn main(&self) -> &ConfFile {
        &self.files[0]
    }

    /// Errors collected by a lenient load.
    pub fn errors(&self) -> &[FileError] {
        &self.errors
    }

    /// The files an `include` directive of file `file` brought in (indices
    /// into [`Config::files`]), or `None` if `d` is not a followed include.
    pub fn included_by(&self, file: usize, d: &Directive<'_>) -> Option<&[usize]> {
        self.includes
            .get(&(file, d.span().start))
            .map(Vec::as_slice)
    }

    /// Finds upstream `name` in any file: the file's index and the upstream.
    ///
    /// # Errors
    /// [`EditError::NotFound`], or [`EditError::Duplicate`] when two files
    /// (or one) define it twice.
    pub fn upstream(&self, name: &str) -> Result<(usize, Upstream), EditError> {
        let mut found: Option<(usize, Upstream)> = None;
        for (i, f) in self.files.iter().enumerate() {
            match f.upstream(name) {
                Ok(up) => {
                    if let Some((_, first)) = &found {
                        return Err(EditError::Duplicate {
                            name: name.into(),
                            first_file: first.file.clone(),
                            first_line: first.line,
                            file: up.file,
                            line: up.line,
                        });
                    }
                    found = Some((i, up));
                }
                Err(EditError::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        found.ok_or_else(|| EditError::NotFound {
            name: name.into(),
            files: self.files.iter().map(|f| f.path.clone()).collect(),
        })
    }

    /// [`ConfFile::set_servers`] on the file that holds upstream `name`;
    /// returns that file's index and its edited version (put it in place
    /// with [`Config::replace`] once written). The `resolver` check for
    /// `resolve` also looks at the other files.
    ///
    /// # Errors
    /// As [`Config::upstream`] and [`ConfFile::set_servers`].
    pub fn set_servers(
        &self,
        name: &str,
        servers: &[Server],
    ) -> Result<(usize, ConfFile), EditError> {
        let (i, _) = self.upstream(name)?;
        let edited = self.files[i].set_servers_with(name, servers, Some(self.has_resolver()))?;
        Ok((i, edited))
    }

    /// [`ConfFile::apply_route_change`] on the file that holds upstream
    /// `name`, as [`Config::set_servers`].
    ///
    /// # Errors
    /// As [`Config::upstream`] and [`ConfFile::apply_route_change`].
    pub fn apply_route_change(
        &self,
        name: &str,
        change: &RouteChange,
        port: u16,
    ) -> Result<(usize, ConfFile), EditError> {
        let (i, _) = self.upstream(name)?;
        let edited =
            self.files[i].apply_route_change_with(name, change, port, Some(self.has_resolver()))?;
        Ok((i, edited))
    }

    /// Whether a `resolver` is set outside `server` and `location` blocks
    /// in any file (so an `upstream` in `http` inherits it).
    fn has_resolver(&self) -> bool {
        self.files.iter().any(|f| {
            f.walk().iter().any(|(parents, d)| {
                d.name().value().as_ref() == b"resolver"
                    && parents.iter().all(|p| {
                        matches!(p.name().value().as_ref(), b"http" | b"stream" | b"upstream")
                    })
            })
        })
    }

    /// Puts an edited file in place of file `index`.
    pub fn replace(&mut self, index: usize, file: ConfFile) {
        self.files[index] = file;
    }
}
