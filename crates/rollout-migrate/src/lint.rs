//! The linter: every statement of a file read by a real PostgreSQL parser
//! (squawk's, with error recovery), squawk's safety rules run over it, and
//! our own rules about phases on top.
//!
//! A statement the parser cannot read is a finding (`unparseable`), never
//! passed silently: what cannot be classified cannot be shown safe.
//!
//! Our rules:
//! - `phase-mismatch`: a breaking statement (drop, SET NOT NULL, DROP NOT
//!   NULL) in an expand file, or DDL in a backfill file;
//! - `unbounded-backfill`: an UPDATE or DELETE in an expand or contract file,
//!   or one without a LIMIT in a backfill file;
//! - `backfill-batch`: a backfill file that is not one batch statement of the
//!   form the runner repeats (`$1` the cursor, `$2` the batch size,
//!   `RETURNING` the key).
//!
//! squawk's `ban-drop-column` and `ban-drop-table` are replaced by the
//! phase rule (a drop is what a contract file is for); its timeout rules are
//! off (the runner sets `lock_timeout` and `statement_timeout` itself); its
//! style rules are warnings, which do not fail a lint.

use crate::files::{line_of, MigrationFile, Phase};
use squawk_linter::{Linter, Rule};
use squawk_syntax::ast::{self, AstNode};
use squawk_syntax::{SourceFile, SyntaxKind, SyntaxNode};
use std::fmt;
use std::ops::Range;
use std::path::PathBuf;

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// Style: reported, does not fail the lint.
    Warning,
    /// Breaks old code, blocks traffic, or cannot be shown safe: fails the lint.
    Error,
}

/// One problem in one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// The file.
    pub file: PathBuf,
    /// 1-based line of the statement (or of the parse error).
    pub line: usize,
    /// The rule's id: squawk's (`adding-required-field`) or ours (`phase-mismatch`).
    pub rule: String,
    /// How bad.
    pub severity: Severity,
    /// What is wrong.
    pub message: String,
    /// The safe alternative.
    pub help: String,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let word = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        write!(
            f,
            "{}:{}: {word}[{}]: {}\n  hint: {}",
            self.file.display(),
            self.line,
            self.rule,
            self.message,
            self.help
        )
    }
}

/// One statement of a file, as the runner executes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    /// Its text, without the trailing semicolon's whitespace.
    pub sql: String,
    /// Its byte range in the file.
    pub range: Range<usize>,
    /// Its first line.
    pub line: usize,
    /// `CREATE INDEX CONCURRENTLY name`: the index name as the catalog
    /// spells it, so that an invalid leftover of a failed build can be found.
    pub concurrent_index: Option<String>,
}

/// The statements of `sql`, in order (comments between them dropped).
pub fn statements(sql: &str) -> Vec<Statement> {
    let parse = SourceFile::parse(sql);
    parse
        .tree()
        .stmts()
        .map(|stmt| {
            let node = stmt.syntax();
            let range = start_of(node)..usize::from(node.text_range().end());
            Statement {
                sql: sql[range.clone()].to_string(),
                line: line_of(sql, range.start),
                range,
                concurrent_index: concurrent_index_name(node),
            }
        })
        .collect()
}

/// The first byte of a statement that is not a comment or whitespace.
fn start_of(node: &SyntaxNode) -> usize {
    node.children_with_tokens()
        .find(|t| !t.kind().is_trivia())
        .map(|t| usize::from(t.text_range().start()))
        .unwrap_or_else(|| usize::from(node.text_range().start()))
}

fn concurrent_index_name(node: &SyntaxNode) -> Option<String> {
    let index = ast::CreateIndex::cast(node.clone())?;
    index.concurrently_token()?;
    let name = index.index()?;
    let text = name.syntax().text().to_string();
    // The index is created in the table's schema: its last segment names it.
    let text = text.rsplit('.').next().unwrap_or_default().trim();
    Some(
        match text.strip_prefix('"').and_then(|t| t.strip_suffix('"')) {
            Some(quoted) => quoted.replace("\"\"", "\""),
            None => text.to_lowercase(),
        },
    )
}

fn has(node: &SyntaxNode, kind: SyntaxKind) -> bool {
    node.descendants().any(|d| d.kind() == kind)
}

fn has_token(node: &SyntaxNode, text: &str) -> bool {
    node.descendants_with_tokens().any(|t| {
        t.as_token()
            .is_some_and(|t| t.text().eq_ignore_ascii_case(text))
    })
}

/// What a statement does, as far as phases care.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    /// Safe while old code runs (create, add a nullable column, NOT VALID, ...).
    Additive,
    /// Breaks old code: belongs to contract.
    Breaking(&'static str),
    /// Reads or writes rows.
    Data,
    /// Session settings, transaction control, SELECT: no phase.
    Neutral,
}

fn classify(node: &SyntaxNode) -> Class {
    use SyntaxKind as K;
    match node.kind() {
        K::UPDATE | K::DELETE | K::INSERT | K::MERGE => Class::Data,
        K::SELECT
        | K::SET
        | K::BEGIN
        | K::COMMIT_TRANSACTION
        | K::ROLLBACK_TRANSACTION
        | K::SHOW
        | K::RESET => Class::Neutral,
        K::DROP_TABLE => Class::Breaking("DROP TABLE"),
        K::DROP_INDEX => Class::Breaking("DROP INDEX"),
        K::DROP_VIEW => Class::Breaking("DROP VIEW"),
        K::DROP_TYPE => Class::Breaking("DROP TYPE"),
        K::DROP_FUNCTION => Class::Breaking("DROP FUNCTION"),
        K::ALTER_TABLE => {
            if has(node, K::DROP_COLUMN) {
                Class::Breaking("DROP COLUMN")
            } else if has(node, K::SET_NOT_NULL) {
                Class::Breaking("SET NOT NULL")
            } else if has(node, K::DROP_NOT_NULL) {
                Class::Breaking("DROP NOT NULL")
            } else if has(node, K::DROP_CONSTRAINT) {
                Class::Breaking("DROP CONSTRAINT")
            } else {
                Class::Additive
            }
        }
        _ => Class::Additive,
    }
}

/// squawk's rules that only concern style: warnings.
const STYLE: &[Rule] = &[
    Rule::PreferBigintOverInt,
    Rule::PreferBigintOverSmallint,
    Rule::PreferIdentity,
    Rule::PreferTextField,
    Rule::PreferTimestampTz,
    Rule::PreferRobustStmts,
    Rule::BanCharField,
    Rule::IdentifierTooLong,
    Rule::RequireEnumValueOrdering,
    Rule::BanCreateDomainWithConstraint,
    Rule::BanAlterDomainWithAddConstraint,
];

/// squawk's rules this linter does not run (see the module's text).
const OFF: &[Rule] = &[
    Rule::RequireTimeoutSettings,
    Rule::RequireLockTimeout,
    Rule::RequireStatementTimeout,
    Rule::BanDropColumn,
    Rule::BanDropTable,
];

/// squawk's bans of dropping an object old code may still use: in a
/// contract file, which runs when no old code does, they are what the file
/// is for; in an expand file, the phase rule reports them too.
const CONTRACT_OK: &[Rule] = &[
    Rule::BanDropConstraint,
    Rule::BanDropView,
    Rule::BanDropFunction,
    Rule::BanDropType,
    Rule::BanDropDefault,
    Rule::BanDropSequence,
    Rule::BanDropDomain,
    Rule::BanDropGeneratedExpression,
    Rule::BanDropNotNull,
    Rule::BanDropIndex,
    Rule::BanDropTrigger,
];

/// The safe alternative of the research table, for the rules it covers.
fn safe_alternative(rule: &str) -> Option<&'static str> {
    Some(match rule {
        "adding-required-field" => "add the column nullable (or with a constant default) in expand; backfill it; enforce NOT NULL in contract",
        "adding-not-nullable-field" => "in a no-transaction contract file: ADD CONSTRAINT c CHECK (col IS NOT NULL) NOT VALID; VALIDATE CONSTRAINT c; SET NOT NULL (no scan on PG12+); DROP CONSTRAINT c",
        "adding-field-with-default" => "add the column without a default, then SET DEFAULT, then backfill in batches",
        "renaming-column" => "add the new column in expand, dual-write, backfill, switch reads, drop the old one in contract",
        "renaming-table" => "create the new table and keep it in sync (or rename and leave a compatibility view), drop the old one in contract",
        "changing-column-type" => "add a column of the new type in expand, backfill it, switch the code, drop the old column in contract",
        "require-concurrent-index-creation" => "CREATE INDEX CONCURRENTLY IF NOT EXISTS in a `-- rollout: no-transaction` file (the runner drops an invalid leftover before a retry)",
        "require-concurrent-index-deletion" => "DROP INDEX CONCURRENTLY IF EXISTS in a `-- rollout: no-transaction` contract file",
        "ban-concurrent-index-creation-in-transaction" => "mark the file `-- rollout: no-transaction`",
        "constraint-missing-not-valid" => "ADD CONSTRAINT ... NOT VALID, then VALIDATE CONSTRAINT in its own transaction (a no-transaction file)",
        "adding-foreign-key-constraint" => "ADD CONSTRAINT ... FOREIGN KEY ... NOT VALID, then VALIDATE CONSTRAINT in its own transaction",
        "disallowed-unique-constraint" => "CREATE UNIQUE INDEX CONCURRENTLY, then ADD CONSTRAINT ... UNIQUE USING INDEX",
        "transaction-nesting" | "ban-uncommitted-transaction" => "let the runner own transactions: no BEGIN or COMMIT in a file (use `-- rollout: no-transaction`)",
        "prefer-robust-stmts" => "use IF [NOT] EXISTS, so that a run again after a partial failure succeeds",
        "phase-mismatch" => "move the statement to a file of the phase it belongs to (breaking changes: contract; data: backfill)",
        "unbounded-backfill" => "a backfill file: UPDATE t SET ... WHERE id > $1 AND id <= (SELECT max(id) FROM (SELECT id FROM t WHERE id > $1 ORDER BY id LIMIT $2) b) RETURNING id",
        "backfill-batch" => "one statement: UPDATE t SET ... WHERE id > $1 AND id <= (SELECT max(id) FROM (SELECT id FROM t WHERE id > $1 ORDER BY id LIMIT $2) b) RETURNING id ($1: the cursor, $2: the batch size; a key range, so each batch reads only its rows)",
        "unparseable" => "fix the statement; one the parser cannot read is treated as unsafe",
        _ => return None,
    })
}

/// Lints one file.
pub fn lint_file(file: &MigrationFile) -> Vec<Finding> {
    let sql = &file.sql;
    let parse = SourceFile::parse(sql);
    let mut out = Vec::new();
    let mut push =
        |line: usize, rule: &str, severity: Severity, message: String, help: Option<String>| {
            let help = safe_alternative(rule)
                .map(String::from)
                .or(help)
                .unwrap_or_else(|| "see the rule's documentation".to_string());
            out.push(Finding {
                file: file.path.clone(),
                line,
                rule: rule.to_string(),
                severity,
                message,
                help,
            });
        };

    for e in parse.errors() {
        push(
            line_of(sql, usize::from(e.range().start())),
            "unparseable",
            Severity::Error,
            format!("the statement cannot be parsed: {}", e.message()),
            None,
        );
    }

    let mut linter = Linter::with_rules(&[], OFF);
    linter.settings.assume_in_transaction = !file.no_transaction;
    for v in linter.lint(&parse, sql) {
        if file.phase == Phase::Contract && CONTRACT_OK.contains(&v.code) {
            continue;
        }
        let rule = v.code.to_string();
        let severity = if STYLE.contains(&v.code) {
            Severity::Warning
        } else {
            Severity::Error
        };
        push(
            line_of(sql, usize::from(v.text_range.start())),
            &rule,
            severity,
            v.message.clone(),
            v.help.clone(),
        );
    }

    let stmts: Vec<_> = parse.tree().stmts().collect();
    let mut batch_statements = 0;
    for stmt in &stmts {
        let node = stmt.syntax();
        let line = line_of(sql, start_of(node));
        let class = classify(node);
        if !file.no_transaction && has_token(node, "concurrently") {
            push(
                line,
                "ban-concurrent-index-creation-in-transaction",
                Severity::Error,
                "CONCURRENTLY cannot run inside a transaction, and this file runs in one"
                    .to_string(),
                None,
            );
        }
        match (file.phase, class) {
            (Phase::Expand, Class::Breaking(what)) => push(
                line,
                "phase-mismatch",
                Severity::Error,
                format!("{what} in an expand file breaks the old revision, which still runs during the rollout"),
                None,
            ),
            (Phase::Backfill, Class::Additive | Class::Breaking(_)) => push(
                line,
                "phase-mismatch",
                Severity::Error,
                "a schema change in a backfill file: backfill files change rows only".to_string(),
                None,
            ),
            (Phase::Expand | Phase::Contract, Class::Data)
                if matches!(node.kind(), SyntaxKind::UPDATE | SyntaxKind::DELETE) =>
            {
                push(
                    line,
                    "unbounded-backfill",
                    Severity::Error,
                    format!(
                        "{} of rows in a {} file: one long transaction holds row locks on the whole table",
                        if node.kind() == SyntaxKind::UPDATE { "UPDATE" } else { "DELETE" },
                        file.phase
                    ),
                    None,
                )
            }
            (Phase::Backfill, Class::Data) => {
                batch_statements += 1;
                if !has(node, SyntaxKind::LIMIT_CLAUSE) {
                    push(
                        line,
                        "unbounded-backfill",
                        Severity::Error,
                        "the batch statement has no LIMIT: it would change every row in one transaction".to_string(),
                        None,
                    );
                }
                let missing: Vec<&str> = [
                    (!has_token(node, "$1")).then_some("$1 (the cursor)"),
                    (!has_token(node, "$2")).then_some("$2 (the batch size)"),
                    (!has(node, SyntaxKind::RETURNING_CLAUSE)).then_some("RETURNING the key"),
                ]
                .into_iter()
                .flatten()
                .collect();
                if !missing.is_empty() {
                    push(
                        line,
                        "backfill-batch",
                        Severity::Error,
                        format!("the batch statement lacks {}", missing.join(", ")),
                        None,
                    );
                }
            }
            _ => {}
        }
    }
    if file.phase == Phase::Backfill && batch_statements != 1 {
        push(
            1,
            "backfill-batch",
            Severity::Error,
            format!("a backfill file holds exactly one batch statement, this one holds {batch_statements}"),
            None,
        );
    }

    out.retain(|f| !file.allow.contains(&f.rule));
    out.sort_by(|a, b| a.line.cmp(&b.line).then(a.rule.cmp(&b.rule)));
    // squawk and our own check may report the same thing on the same line.
    out.dedup_by(|a, b| a.line == b.line && a.rule == b.rule);
    out
}

/// Lints every file; findings in file order.
pub fn lint_all<'a>(files: impl IntoIterator<Item = &'a MigrationFile>) -> Vec<Finding> {
    files.into_iter().flat_map(lint_file).collect()
}

/// The findings that fail a lint.
pub fn errors(findings: &[Finding]) -> Vec<Finding> {
    findings
        .iter()
        .filter(|f| f.severity == Severity::Error)
        .cloned()
        .collect()
}
