//! The migration folder: file names, the `-- rollout:` header, checksums.
//!
//! Names are sqlx's (`<VERSION>_<name>.sql`, `.up.sql` read, `.down.sql`
//! ignored) or refinery's (`V<n>__<name>.sql`), so existing folders work
//! unchanged once each file says its phase. The header is the block of
//! comment lines before the first statement:
//!
//! ```sql
//! -- rollout: phase=expand              (expand | backfill | contract; required)
//! -- rollout: no-transaction            (optional: each statement commits alone)
//! -- rollout: batch size=1000 pause=50ms  (backfill only; both optional)
//! -- rollout: allow=rule-a,rule-b       (optional: findings the author accepts)
//! -- rollout: remaining SELECT count(*) FROM t WHERE a IS NULL
//!                                       (backfill only, optional: the rows left, counted
//!                                        once at the start, for the progress's ETA)
//! ```
//!
//! sqlx's `-- no-transaction` and refinery's `-- refinery:noTransaction` are
//! read as `no-transaction` too.

use crate::error::MigrateError;
use sha2::{Digest, Sha256};
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

/// When a migration runs relative to the rollout of the code that needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Phase {
    /// Additive changes old and new code both live with; before the new revision starts.
    Expand,
    /// Data changes in bounded batches; once the new revision serves everything.
    Backfill,
    /// Breaking changes; only when no container of an older revision remains.
    Contract,
}

impl Phase {
    /// Every phase, in the order a release runs them.
    pub const ALL: [Phase; 3] = [Phase::Expand, Phase::Backfill, Phase::Contract];

    /// The word the header and the state table use.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Expand => "expand",
            Phase::Backfill => "backfill",
            Phase::Contract => "contract",
        }
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

impl FromStr for Phase {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Phase::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| format!("unknown phase {s:?}: expected expand, backfill or contract"))
    }
}

/// How a backfill file's batch statement is repeated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Batch {
    /// Rows per batch: the statement's `$2`.
    pub size: i64,
    /// Sleep between batches, so that replicas and other writers keep up.
    pub pause: Duration,
}

impl Default for Batch {
    fn default() -> Self {
        Batch {
            size: 1000,
            pause: Duration::ZERO,
        }
    }
}

/// One `.sql` file of the folder, read and checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationFile {
    /// Its version: the number its name starts with; files run in this order.
    pub version: i64,
    /// The rest of its name (`add_email` in `0005_add_email.sql`).
    pub name: String,
    /// Where it was read.
    pub path: PathBuf,
    /// Its phase, from the header.
    pub phase: Phase,
    /// `-- rollout: no-transaction`: each statement commits on its own.
    pub no_transaction: bool,
    /// The batch of a backfill file (`Some` for every backfill file).
    pub batch: Option<Batch>,
    /// Lint rules the author accepts for this file.
    pub allow: Vec<String>,
    /// `-- rollout: remaining SQL`: a query of one integer, the rows a backfill has left
    /// (run once before the first batch; the progress's ETA comes from it).
    pub remaining: Option<String>,
    /// The whole text.
    pub sql: String,
    /// SHA-256 of the file's bytes.
    pub checksum: Vec<u8>,
}

impl MigrationFile {
    /// The checksum as lower-case hex.
    pub fn checksum_hex(&self) -> String {
        hex(&self.checksum)
    }

    /// `path:line`, for messages.
    pub fn at(&self, line: usize) -> String {
        format!("{}:{line}", self.path.display())
    }
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The ordered migrations of one folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Migrations {
    /// The folder.
    pub dir: PathBuf,
    /// Its files, by version.
    pub files: Vec<MigrationFile>,
}

impl Migrations {
    /// Reads every migration of `dir`. Any file that is not one (a bad name,
    /// no phase, a bad header line, two files with one version) is an error
    /// naming the file and line; files that are not `.sql` are skipped.
    pub fn load(dir: &Path) -> Result<Migrations, MigrateError> {
        let entries = std::fs::read_dir(dir).map_err(|e| MigrateError::Folder {
            dir: dir.to_path_buf(),
            reason: e.to_string(),
        })?;
        let mut paths: Vec<PathBuf> = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| MigrateError::Folder {
                dir: dir.to_path_buf(),
                reason: e.to_string(),
            })?;
            let path = entry.path();
            if path.extension().is_some_and(|e| e == "sql") && path.is_file() {
                paths.push(path);
            }
        }
        paths.sort();
        let mut files: Vec<MigrationFile> = Vec::new();
        for path in paths {
            let bytes = std::fs::read(&path).map_err(|e| MigrateError::Folder {
                dir: dir.to_path_buf(),
                reason: format!("{}: {e}", path.display()),
            })?;
            if let Some(file) = parse_file(&path, &bytes)? {
                files.push(file);
            }
        }
        files.sort_by_key(|f| f.version);
        for pair in files.windows(2) {
            if pair[0].version == pair[1].version {
                return Err(MigrateError::file(
                    &pair[1].path,
                    1,
                    format!(
                        "version {} is also the version of {}",
                        pair[1].version,
                        pair[0].path.display()
                    ),
                ));
            }
        }
        Ok(Migrations {
            dir: dir.to_path_buf(),
            files,
        })
    }

    /// Lints every file; the findings that fail the lint, as an error.
    pub fn check(&self) -> Result<(), MigrateError> {
        let errors = crate::lint::errors(&crate::lint::lint_all(&self.files));
        if errors.is_empty() {
            Ok(())
        } else {
            Err(MigrateError::Lint(errors))
        }
    }

    /// The files of one phase, by version.
    pub fn of_phase(&self, phase: Phase) -> impl Iterator<Item = &MigrationFile> {
        self.files.iter().filter(move |f| f.phase == phase)
    }
}

/// The version and name in a file name; `None` for a file to skip (a down
/// migration).
fn parse_name(file_name: &str) -> Result<Option<(i64, String)>, String> {
    let Some(stem) = file_name.strip_suffix(".sql") else {
        return Ok(None);
    };
    if stem.ends_with(".down") {
        return Ok(None);
    }
    let stem = stem.strip_suffix(".up").unwrap_or(stem);
    let expected = "expected <VERSION>_<name>.sql (sqlx) or V<VERSION>__<name>.sql (refinery)";
    let (digits, name) = if let Some(rest) = stem.strip_prefix('V').filter(|r| r.contains("__")) {
        let (v, n) = rest.split_once("__").unwrap_or((rest, ""));
        (v, n)
    } else {
        match stem.split_once('_') {
            Some((v, n)) => (v, n),
            None => return Err(format!("no version in the name: {expected}")),
        }
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "the version {digits:?} is not a number: {expected}"
        ));
    }
    let version = digits
        .parse::<i64>()
        .map_err(|_| format!("the version {digits} is too large"))?;
    if name.is_empty() {
        return Err(format!("no name after the version: {expected}"));
    }
    Ok(Some((version, name.to_string())))
}

/// Reads one file; `None` when it is to be skipped.
pub fn parse_file(path: &Path, bytes: &[u8]) -> Result<Option<MigrationFile>, MigrateError> {
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let Some((version, name)) =
        parse_name(&file_name).map_err(|m| MigrateError::file(path, 1, m))?
    else {
        return Ok(None);
    };
    let sql = String::from_utf8(bytes.to_vec())
        .map_err(|_| MigrateError::file(path, 1, "the file is not UTF-8".to_string()))?;
    let mut phase = None;
    let mut no_transaction = false;
    let mut batch = None;
    let mut allow = Vec::new();
    let mut remaining = None;
    for (i, raw) in sql.lines().enumerate() {
        let line = raw.trim();
        let n = i + 1;
        if line.is_empty() {
            continue;
        }
        let Some(comment) = line.strip_prefix("--") else {
            break; // the first statement ends the header
        };
        let comment = comment.trim();
        if comment == "no-transaction" || comment == "refinery:noTransaction" {
            no_transaction = true;
            continue;
        }
        let Some(directive) = comment.strip_prefix("rollout:") else {
            continue;
        };
        let bad = |m: String| MigrateError::file(path, n, m);
        if let Some(query) = directive.trim_start().strip_prefix("remaining ") {
            let query = query.trim();
            if query.is_empty() || remaining.is_some() {
                return Err(bad(
                    "`remaining` takes one query of one integer, once".into()
                ));
            }
            remaining = Some(query.to_string());
            continue;
        }
        let mut words = directive.split_whitespace();
        let Some(first) = words.next() else {
            return Err(bad("an empty `-- rollout:` line".into()));
        };
        match first.split_once('=') {
            Some(("phase", p)) => {
                if phase.is_some() {
                    return Err(bad("a second phase".into()));
                }
                phase = Some(p.parse::<Phase>().map_err(bad)?);
            }
            Some(("allow", rules)) => {
                allow.extend(rules.split(',').filter(|r| !r.is_empty()).map(String::from));
            }
            None if first == "no-transaction" => no_transaction = true,
            None if first == "batch" => {
                let mut b = Batch::default();
                for w in words.by_ref() {
                    match w.split_once('=') {
                        Some(("size", v)) => {
                            b.size = v.parse().ok().filter(|s| *s > 0).ok_or_else(|| {
                                bad(format!("batch size must be a positive number, found {v:?}"))
                            })?
                        }
                        Some(("pause", v)) => {
                            b.pause = rollout_core::parse_duration(v)
                                .map_err(|e| bad(format!("batch pause: {e}")))?
                        }
                        _ => {
                            return Err(bad(format!(
                                "unknown batch setting {w:?}: expected size=N or pause=DURATION"
                            )))
                        }
                    }
                }
                batch = Some(b);
            }
            _ => {
                return Err(bad(format!(
                    "unknown directive {first:?}: expected phase=, no-transaction, batch or allow="
                )))
            }
        }
        if let Some(extra) = words.next() {
            return Err(bad(format!("unexpected {extra:?} after {first:?}")));
        }
    }
    let Some(phase) = phase else {
        return Err(MigrateError::file(
            path,
            1,
            "no phase: the header needs `-- rollout: phase=expand` (or backfill, or contract)"
                .to_string(),
        ));
    };
    if phase == Phase::Backfill {
        batch = Some(batch.unwrap_or_default());
    } else if remaining.is_some() {
        return Err(MigrateError::file(
            path,
            1,
            format!("`-- rollout: remaining` belongs to backfill files, and this one is {phase}"),
        ));
    } else if batch.is_some() {
        return Err(MigrateError::file(
            path,
            1,
            format!("`-- rollout: batch` belongs to backfill files, and this one is {phase}"),
        ));
    }
    Ok(Some(MigrationFile {
        version,
        name,
        path: path.to_path_buf(),
        phase,
        no_transaction,
        batch,
        remaining,
        allow,
        checksum: Sha256::digest(bytes).to_vec(),
        sql,
    }))
}

/// The 1-based line of byte `offset` in `text`.
pub fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|b| **b == b'\n')
        .count()
        + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(name: &str, text: &str) -> Result<Option<MigrationFile>, String> {
        parse_file(Path::new(name), text.as_bytes()).map_err(|e| e.to_string())
    }

    #[test]
    fn names_of_sqlx_and_refinery() {
        assert_eq!(
            parse_name("0005_add_email.sql"),
            Ok(Some((5, "add_email".into())))
        );
        assert_eq!(
            parse_name("20240101120000_x.up.sql"),
            Ok(Some((20240101120000, "x".into())))
        );
        assert_eq!(parse_name("V7__users.sql"), Ok(Some((7, "users".into()))));
        assert_eq!(parse_name("0005_add_email.down.sql"), Ok(None));
        assert!(parse_name("add_email.sql")
            .unwrap_err()
            .contains("not a number"));
        assert!(parse_name("0005.sql").unwrap_err().contains("no version"));
        assert!(parse_name("V1.5__x.sql")
            .unwrap_err()
            .contains("not a number"));
    }

    #[test]
    fn headers() {
        let f = parse(
            "m/0006_fill.sql",
            "-- fills emails\n-- rollout: phase=backfill\n-- rollout: batch size=500 pause=20ms\n\nUPDATE t SET a = 1;\n-- rollout: phase=contract\n",
        )
        .unwrap()
        .unwrap();
        assert_eq!(f.phase, Phase::Backfill);
        assert_eq!(
            f.batch,
            Some(Batch {
                size: 500,
                pause: Duration::from_millis(20)
            })
        );
        assert!(!f.no_transaction);
        let f = parse("m/1_i.sql", "-- no-transaction\n-- rollout: phase=expand\n-- rollout: allow=ban-drop-table,x\nSELECT 1;")
            .unwrap()
            .unwrap();
        assert!(f.no_transaction);
        assert_eq!(f.allow, ["ban-drop-table", "x"]);
        assert_eq!(f.checksum_hex().len(), 64);
    }

    #[test]
    fn a_backfill_may_say_how_to_count_what_is_left() {
        let f = parse(
            "m/2_fill.sql",
            "-- rollout: phase=backfill\n-- rollout: remaining SELECT count(*) FROM t WHERE a IS NULL\nUPDATE t SET a = 1;",
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            f.remaining.as_deref(),
            Some("SELECT count(*) FROM t WHERE a IS NULL")
        );
        let e = parse(
            "m/3_x.sql",
            "-- rollout: phase=expand\n-- rollout: remaining SELECT 1\nSELECT 1;",
        )
        .unwrap_err();
        assert!(
            e.starts_with("m/3_x.sql:1: `-- rollout: remaining` belongs to backfill"),
            "{e}"
        );
        let e = parse(
            "m/4_y.sql",
            "-- rollout: phase=backfill\n-- rollout: remaining \n",
        )
        .unwrap_err();
        assert!(e.starts_with("m/4_y.sql:2:"), "{e}");
    }

    #[test]
    fn bad_headers_name_the_file_and_line() {
        assert_eq!(
            parse("m/1_a.sql", "SELECT 1;\n").unwrap_err(),
            "m/1_a.sql:1: no phase: the header needs `-- rollout: phase=expand` (or backfill, or contract)"
        );
        assert!(parse("m/1_a.sql", "--\n-- rollout: phase=later\n")
            .unwrap_err()
            .starts_with("m/1_a.sql:2: unknown phase \"later\""));
        assert!(parse(
            "m/1_a.sql",
            "-- rollout: phase=expand\n-- rollout: batch size=0\n"
        )
        .unwrap_err()
        .starts_with("m/1_a.sql:2: batch size"));
        assert!(parse(
            "m/1_a.sql",
            "-- rollout: phase=expand\n-- rollout: speed=3\n"
        )
        .unwrap_err()
        .contains("unknown directive"));
        assert!(
            parse("m/1_a.sql", "-- rollout: phase=expand\n-- rollout: batch\n")
                .unwrap_err()
                .contains("belongs to backfill files")
        );
    }

    #[test]
    fn lines() {
        assert_eq!(line_of("a\nb\nc", 0), 1);
        assert_eq!(line_of("a\nb\nc", 2), 2);
        assert_eq!(line_of("a\nb\nc", 4), 3);
    }
}
