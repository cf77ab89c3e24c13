//! The linter on the research table's bad examples (each one found, with
//! its file and line) and on their safe alternatives (no error).

use rollout_migrate::lint::{errors, lint_file};
use rollout_migrate::{files::parse_file, Finding, Severity};
use std::path::Path;

fn lint(name: &str, text: &str) -> Vec<Finding> {
    let file = parse_file(Path::new(name), text.as_bytes())
        .unwrap()
        .unwrap();
    lint_file(&file)
}

fn show(f: &[Finding]) -> String {
    f.iter().map(|f| format!("{f}\n")).collect()
}

/// `text` (header first) has an error of `rule` on `line`, shown as `name:line`.
fn finds(name: &str, text: &str, rule: &str, line: usize) {
    let f = lint(name, text);
    let hit = f
        .iter()
        .find(|f| f.rule == rule && f.severity == Severity::Error)
        .unwrap_or_else(|| panic!("no {rule} in {name}:\n{}", show(&f)));
    assert_eq!(hit.line, line, "{}", show(&f));
    assert!(
        hit.to_string()
            .starts_with(&format!("{name}:{line}: error[{rule}]: ")),
        "{hit}"
    );
    assert!(!hit.help.is_empty());
}

/// `text` has no error finding.
fn clean(name: &str, text: &str) {
    let f = lint(name, text);
    assert!(errors(&f).is_empty(), "{name}:\n{}", show(&f));
}

const EXPAND: &str = "-- rollout: phase=expand\n";
const EXPAND_NT: &str = "-- rollout: phase=expand\n-- rollout: no-transaction\n";
const CONTRACT: &str = "-- rollout: phase=contract\n";
const CONTRACT_NT: &str = "-- rollout: phase=contract\n-- rollout: no-transaction\n";
const BACKFILL: &str = "-- rollout: phase=backfill\n";

#[test]
fn the_research_tables_bad_examples_are_found_with_file_and_line() {
    let cases: &[(&str, String, &str, usize)] = &[
        ("m/1_a.sql", format!("{EXPAND}\nALTER TABLE users ADD COLUMN email text NOT NULL;\n"), "adding-required-field", 3),
        ("m/2_a.sql", format!("{CONTRACT}ALTER TABLE users ALTER COLUMN email SET NOT NULL;\n"), "adding-not-nullable-field", 2),
        ("m/3_a.sql", format!("{EXPAND}SELECT 1;\nALTER TABLE users DROP COLUMN name;\n"), "phase-mismatch", 3),
        ("m/4_a.sql", format!("{EXPAND}DROP TABLE users;\n"), "phase-mismatch", 2),
        ("m/5_a.sql", format!("{EXPAND}ALTER TABLE users RENAME COLUMN name TO full_name;\n"), "renaming-column", 2),
        ("m/6_a.sql", format!("{EXPAND}ALTER TABLE users RENAME TO people;\n"), "renaming-table", 2),
        ("m/7_a.sql", format!("{EXPAND}ALTER TABLE users ALTER COLUMN id TYPE bigint;\n"), "changing-column-type", 2),
        ("m/8_a.sql", format!("{EXPAND}CREATE INDEX users_email_idx ON users (email);\n"), "require-concurrent-index-creation", 2),
        ("m/9_a.sql", format!("{EXPAND}ALTER TABLE users ADD CONSTRAINT email_has_at CHECK (email LIKE '%@%');\n"), "constraint-missing-not-valid", 2),
        ("m/10_a.sql", format!("{EXPAND}ALTER TABLE orders ADD CONSTRAINT orders_user_fk FOREIGN KEY (user_id) REFERENCES users (id);\n"), "adding-foreign-key-constraint", 2),
        ("m/11_a.sql", format!("{EXPAND}CREATE INDEX CONCURRENTLY users_email_idx ON users (email);\n"), "ban-concurrent-index-creation-in-transaction", 2),
        ("m/12_a.sql", format!("{BACKFILL}UPDATE users SET email = name || '@example.invalid' WHERE id > $1 RETURNING id;\n"), "unbounded-backfill", 2),
        ("m/13_a.sql", format!("{EXPAND}UPDATE users SET email = '';\n"), "unbounded-backfill", 2),
        ("m/14_a.sql", format!("{BACKFILL}ALTER TABLE users ADD COLUMN x text;\n"), "phase-mismatch", 2),
        ("m/15_a.sql", format!("{BACKFILL}UPDATE users SET email = '' WHERE id IN (SELECT id FROM users LIMIT 10);\n"), "backfill-batch", 2),
        ("m/16_a.sql", format!("{CONTRACT}ALTER TABLE users ADD CONSTRAINT users_email_key UNIQUE (email);\n"), "disallowed-unique-constraint", 2),
        ("m/17_a.sql", format!("{EXPAND}BEGIN;\nALTER TABLE users ADD COLUMN x text;\nCOMMIT;\n"), "transaction-nesting", 2),
    ];
    for (name, text, rule, line) in cases {
        finds(name, text, rule, *line);
    }
}

#[test]
fn their_safe_alternatives_pass() {
    clean(
        "m/1_a.sql",
        &format!("{EXPAND}ALTER TABLE users ADD COLUMN email text;\n"),
    );
    clean(
        "m/2_a.sql",
        &format!(
            "{CONTRACT_NT}ALTER TABLE users ADD CONSTRAINT users_email_nn CHECK (email IS NOT NULL) NOT VALID;\n\
             ALTER TABLE users VALIDATE CONSTRAINT users_email_nn;\n\
             ALTER TABLE users ALTER COLUMN email SET NOT NULL;\n\
             ALTER TABLE users DROP CONSTRAINT users_email_nn;\n"
        ),
    );
    clean(
        "m/3_a.sql",
        &format!("{CONTRACT}ALTER TABLE users DROP COLUMN name;\n"),
    );
    clean(
        "m/4_a.sql",
        &format!("{CONTRACT}DROP TABLE legacy_users;\n"),
    );
    clean(
        "m/5_a.sql",
        &format!("{EXPAND}ALTER TABLE users ADD COLUMN full_name text;\n"),
    );
    clean("m/8_a.sql", &format!("{EXPAND_NT}CREATE INDEX CONCURRENTLY IF NOT EXISTS users_email_idx ON users (email);\n"));
    clean("m/9_a.sql", &format!("{EXPAND}ALTER TABLE users ADD CONSTRAINT email_has_at CHECK (email LIKE '%@%') NOT VALID;\n"));
    clean(
        "m/9_b.sql",
        &format!("{EXPAND_NT}ALTER TABLE users VALIDATE CONSTRAINT email_has_at;\n"),
    );
    clean(
        "m/10_a.sql",
        &format!("{EXPAND}ALTER TABLE orders ADD CONSTRAINT orders_user_fk FOREIGN KEY (user_id) REFERENCES users (id) NOT VALID;\n"),
    );
    clean(
        "m/12_a.sql",
        &format!(
            "{BACKFILL}-- rollout: batch size=1000\n\
             UPDATE users SET email = name || '@example.invalid'\n\
             WHERE id IN (SELECT id FROM users WHERE id > $1 AND email IS NULL ORDER BY id LIMIT $2)\n\
             RETURNING id;\n"
        ),
    );
    clean(
        "m/12_b.sql",
        &format!(
            "{BACKFILL}UPDATE users SET email = name || '@example.invalid'\n\
             WHERE id > $1 AND id <= (SELECT max(id) FROM (SELECT id FROM users WHERE id > $1 ORDER BY id LIMIT $2) b)\n\
             RETURNING id;\n"
        ),
    );
    clean(
        "m/16_a.sql",
        &format!(
            "{CONTRACT_NT}CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS users_email_key ON users (email);\n\
             ALTER TABLE users ADD CONSTRAINT users_email_key UNIQUE USING INDEX users_email_key;\n"
        ),
    );
    clean(
        "m/18_a.sql",
        &format!("{CONTRACT_NT}DROP INDEX CONCURRENTLY IF EXISTS users_old_idx;\n"),
    );
}

#[test]
fn an_unparseable_statement_is_a_finding() {
    finds(
        "m/1_a.sql",
        &format!("{EXPAND}ALTER TABLE users ADD COLUMN email text;\n\nALTER TABLE users ADD COLUM x text;\n"),
        "unparseable",
        4,
    );
    finds(
        "m/2_a.sql",
        &format!("{EXPAND}CREAT TABLE t (id int);\n"),
        "unparseable",
        2,
    );
}

#[test]
fn an_allowed_rule_is_not_reported() {
    clean(
        "m/1_a.sql",
        &format!("{EXPAND}-- rollout: allow=require-concurrent-index-creation\nCREATE INDEX small_idx ON tiny (x);\n"),
    );
}
