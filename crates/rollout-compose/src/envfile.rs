//! Env files (`.env`, `--env-file`): `KEY=VALUE` lines as Compose reads them.
//!
//! Blank lines and `#` comments are skipped, `export KEY=VALUE` is accepted,
//! a value in single quotes is literal, one in double quotes knows the
//! escapes `\n`, `\t`, `\\`, `\"` and `\$` and may span lines, and an
//! unquoted value ends at ` #`. Unquoted and double-quoted values are
//! interpolated from the variables defined above them and the process
//! environment (the process wins, as it does for the Compose file).

use crate::error::ComposeError;
use crate::interpolate::{interpolate, Env};
use std::path::Path;

/// Parses an env file's `text`; `process` is the process environment, used
/// for interpolation and for `KEY` lines without a value.
pub fn parse_env_file(path: &Path, text: &str, process: &Env) -> Result<Env, ComposeError> {
    let mut vars = Env::new();
    let lines: Vec<&str> = text.lines().collect();
    let mut index = 0;
    while index < lines.len() {
        let number = index + 1;
        let err = |message: String| ComposeError::EnvFile {
            path: path.to_path_buf(),
            line: number,
            message,
        };
        let line = lines[index].trim_start_matches('\u{feff}').trim();
        index += 1;
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line
            .strip_prefix("export ")
            .map(str::trim_start)
            .unwrap_or(line);
        let Some((key, raw)) = line.split_once('=') else {
            if valid_key(line) {
                if let Some(v) = process.get(line) {
                    vars.insert(line.to_string(), v.clone());
                }
                continue;
            }
            return Err(err(format!("expected KEY=VALUE, found {line:?}")));
        };
        let key = key.trim();
        if !valid_key(key) {
            return Err(err(format!("{key:?} is not a valid variable name")));
        }
        let raw = raw.trim_start();
        let lookup = || {
            let mut env = vars.clone();
            env.extend(process.iter().map(|(k, v)| (k.clone(), v.clone())));
            env
        };
        let value = if let Some(body) = raw.strip_prefix('\'') {
            let mut body = body.to_string();
            loop {
                if let Some(end) = body.find('\'') {
                    body.truncate(end);
                    break body;
                }
                match lines.get(index) {
                    Some(next) => {
                        body.push('\n');
                        body.push_str(next);
                        index += 1;
                    }
                    None => return Err(err(format!("the value of {key} has no closing quote"))),
                }
            }
        } else if let Some(body) = raw.strip_prefix('"') {
            let mut body = body.to_string();
            let text = loop {
                if let Some(end) = closing_double_quote(&body) {
                    body.truncate(end);
                    break unescape(&body);
                }
                match lines.get(index) {
                    Some(next) => {
                        body.push('\n');
                        body.push_str(next);
                        index += 1;
                    }
                    None => return Err(err(format!("the value of {key} has no closing quote"))),
                }
            };
            interpolate(&text, &lookup(), &mut Vec::new()).map_err(err)?
        } else {
            let text = match raw.find(" #") {
                Some(at) => &raw[..at],
                None => raw,
            };
            interpolate(text.trim_end(), &lookup(), &mut Vec::new()).map_err(err)?
        };
        vars.insert(key.to_string(), value);
    }
    Ok(vars)
}

fn valid_key(key: &str) -> bool {
    let mut chars = key.chars();
    matches!(chars.next(), Some(c) if c == '_' || c.is_ascii_alphabetic())
        && chars.all(|c| c == '_' || c == '.' || c == '-' || c.is_ascii_alphanumeric())
}

fn closing_double_quote(s: &str) -> Option<usize> {
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        match c {
            '\\' if !escaped => escaped = true,
            '"' if !escaped => return Some(i),
            _ => escaped = false,
        }
    }
    None
}

/// Resolves escapes; `\$` stays `$$` so that interpolation keeps it literal.
fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some('r') => out.push('\r'),
            Some('$') => out.push_str("$$"),
            Some(other) => out.push(other),
            None => out.push('\\'),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Env, ComposeError> {
        let process: Env = [("HOME".to_string(), "/root".to_string())].into();
        parse_env_file(Path::new(".env"), text, &process)
    }

    #[test]
    fn reads_the_forms_compose_reads() {
        let env = parse(
            "# comment\n\nTAG=v2\nexport A = spaced \nB='lit ${TAG}'\nC=\"q ${TAG}\\n\\$x\"\nD=v # note\nE=${TAG}-x\nF=\"two\nlines\"\nHOME\nG=\n",
        )
        .unwrap();
        assert_eq!(env["TAG"], "v2");
        assert_eq!(env["A"], "spaced");
        assert_eq!(env["B"], "lit ${TAG}");
        assert_eq!(env["C"], "q v2\n$x");
        assert_eq!(env["D"], "v");
        assert_eq!(env["E"], "v2-x");
        assert_eq!(env["F"], "two\nlines");
        assert_eq!(env["HOME"], "/root");
        assert_eq!(env["G"], "");
    }

    #[test]
    fn errors_name_file_and_line() {
        let e = parse("A=1\nnot a line\n").unwrap_err().to_string();
        assert_eq!(e, ".env:2: expected KEY=VALUE, found \"not a line\"");
        let e = parse("A=1\nB='open\n").unwrap_err().to_string();
        assert_eq!(e, ".env:2: the value of B has no closing quote");
        let e = parse("1A=x\n").unwrap_err().to_string();
        assert_eq!(e, ".env:1: \"1A\" is not a valid variable name");
        let e = parse("A=${B:?needed}\n").unwrap_err().to_string();
        assert_eq!(e, ".env:1: required variable B is missing a value: needed");
    }
}
