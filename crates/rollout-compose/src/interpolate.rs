//! `${VAR}` interpolation with the syntax both Compose versions accept.
//!
//! `$$` is a literal `$`; `$NAME` and `${NAME}` are the variable (empty, with
//! a warning, when unset); `${NAME:-default}` and `${NAME-default}` give a
//! default when the variable is unset or empty (`:-`) or only when unset
//! (`-`); `${NAME:?message}` and `${NAME?message}` make it required;
//! `${NAME:+other}` and `${NAME+other}` give `other` when it is set. A default
//! or message may itself hold `${...}`. Any other `$` is an error, as it is
//! for Compose.
//!
//! This is Compose 2's syntax. docker-compose 1.29 knows neither `:+`/`+`
//! nor `${...}` nested in a default, and would read them differently; every
//! form 1.29 knows gives the same result here (see `tests/compose_v1.rs`).

use std::collections::HashMap;

/// Variables to interpolate from: the process environment over the env file.
pub type Env = HashMap<String, String>;

/// Interpolates `text`. `warnings` gets one line per unset variable used
/// without a default. The error is a message without a location.
pub fn interpolate(text: &str, env: &Env, warnings: &mut Vec<String>) -> Result<String, String> {
    interp(text, env, warnings, 0)
}

/// Defaults nested deeper than this are refused (no real file comes close).
const MAX_NESTING: usize = 16;

fn interp(
    text: &str,
    env: &Env,
    warnings: &mut Vec<String>,
    depth: usize,
) -> Result<String, String> {
    if depth > MAX_NESTING {
        return Err(format!(
            "interpolation nested deeper than {MAX_NESTING} levels"
        ));
    }
    if !text.contains('$') {
        return Ok(text.to_string());
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(inner_start) = after.strip_prefix('{') {
            let close = matching_brace(inner_start).ok_or_else(|| {
                format!("invalid interpolation format in {text:?}: unclosed \"${{\"")
            })?;
            let inner = &inner_start[..close];
            out.push_str(&braced(inner, text, env, warnings, depth)?);
            rest = &inner_start[close + 1..];
        } else {
            let len = name_len(after);
            if len == 0 {
                return Err(format!(
                    "invalid interpolation format in {text:?}: a \"$\" must start a variable\nhint: write \"$$\" for a literal \"$\""
                ));
            }
            out.push_str(&lookup(&after[..len], env, warnings));
            rest = &after[len..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// Length of the variable name at the start of `s` (`[_A-Za-z][_A-Za-z0-9]*`).
fn name_len(s: &str) -> usize {
    let mut len = 0;
    for (i, c) in s.char_indices() {
        let ok = c == '_' || c.is_ascii_alphabetic() || (i > 0 && c.is_ascii_digit());
        if !ok {
            break;
        }
        len = i + c.len_utf8();
    }
    len
}

/// Index of the `}` closing a `${`, counting nested `${ }`.
fn matching_brace(s: &str) -> Option<usize> {
    let bytes = s.as_bytes();
    let mut depth = 0usize;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'$' if bytes.get(i + 1) == Some(&b'$') => i += 1,
            b'$' if bytes.get(i + 1) == Some(&b'{') => {
                depth += 1;
                i += 1;
            }
            b'}' if depth == 0 => return Some(i),
            b'}' => depth -= 1,
            _ => {}
        }
        i += 1;
    }
    None
}

fn braced(
    inner: &str,
    whole: &str,
    env: &Env,
    warnings: &mut Vec<String>,
    depth: usize,
) -> Result<String, String> {
    let len = name_len(inner);
    let invalid = || format!("invalid interpolation format in {whole:?}: \"${{{inner}}}\"");
    if len == 0 {
        return Err(invalid());
    }
    let name = &inner[..len];
    let op = &inner[len..];
    let value = env.get(name);
    let set = value.is_some();
    let non_empty = value.is_some_and(|v| !v.is_empty());
    let (kind, arg) = if op.is_empty() {
        return Ok(lookup(name, env, warnings));
    } else if let Some(arg) = op.strip_prefix(":-") {
        ('-', Some((arg, non_empty)))
    } else if let Some(arg) = op.strip_prefix(":?") {
        ('?', Some((arg, non_empty)))
    } else if let Some(arg) = op.strip_prefix(":+") {
        ('+', Some((arg, non_empty)))
    } else if let Some(arg) = op.strip_prefix('-') {
        ('-', Some((arg, set)))
    } else if let Some(arg) = op.strip_prefix('?') {
        ('?', Some((arg, set)))
    } else if let Some(arg) = op.strip_prefix('+') {
        ('+', Some((arg, set)))
    } else {
        return Err(invalid());
    };
    let (arg, present) = arg.ok_or_else(invalid)?;
    let current = value.cloned().unwrap_or_default();
    match kind {
        '-' if present => Ok(current),
        '-' => interp(arg, env, warnings, depth + 1),
        '?' if present => Ok(current),
        '?' => {
            let message = interp(arg, env, warnings, depth + 1)?;
            if message.is_empty() {
                Err(format!("required variable {name} is missing a value"))
            } else {
                Err(format!(
                    "required variable {name} is missing a value: {message}"
                ))
            }
        }
        _ if present => interp(arg, env, warnings, depth + 1),
        _ => Ok(String::new()),
    }
}

fn lookup(name: &str, env: &Env, warnings: &mut Vec<String>) -> String {
    match env.get(name) {
        Some(v) => v.clone(),
        None => {
            let w = format!("the {name} variable is not set, defaulting to a blank string");
            if !warnings.contains(&w) {
                warnings.push(w);
            }
            String::new()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> Env {
        [("TAG", "v2"), ("EMPTY", ""), ("N", "3")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn i(s: &str) -> Result<String, String> {
        interpolate(s, &env(), &mut Vec::new())
    }

    #[test]
    fn forms() {
        assert_eq!(i("app:${TAG}").unwrap(), "app:v2");
        assert_eq!(i("app:$TAG-x").unwrap(), "app:v2-x");
        assert_eq!(i("$$TAG costs $$5").unwrap(), "$TAG costs $5");
        assert_eq!(i("${MISSING:-v1}").unwrap(), "v1");
        assert_eq!(i("${EMPTY:-v1}").unwrap(), "v1");
        assert_eq!(i("${EMPTY-v1}").unwrap(), "");
        assert_eq!(i("${MISSING-v1}").unwrap(), "v1");
        assert_eq!(i("${TAG:?no tag}").unwrap(), "v2");
        assert_eq!(i("${TAG:+set}").unwrap(), "set");
        assert_eq!(i("${EMPTY:+set}").unwrap(), "");
        assert_eq!(i("${EMPTY+set}").unwrap(), "set");
        assert_eq!(i("${MISSING+set}").unwrap(), "");
        assert_eq!(i("${MISSING:-${TAG}}").unwrap(), "v2");
        assert_eq!(i("${MISSING:-${ALSO:-x}y}").unwrap(), "xy");
        assert_eq!(i("${N}").unwrap(), "3");
        assert_eq!(i("no dollar").unwrap(), "no dollar");
    }

    #[test]
    fn required_and_invalid() {
        assert_eq!(
            i("${MISSING:?set MISSING to the tag}").unwrap_err(),
            "required variable MISSING is missing a value: set MISSING to the tag"
        );
        assert_eq!(
            i("${EMPTY?x}").unwrap(),
            "",
            "`?` without colon accepts an empty value"
        );
        assert!(i("${EMPTY:?x}").is_err());
        assert!(i("a $ b").unwrap_err().contains("hint: write \"$$\""));
        assert!(i("${}").is_err());
        assert!(i("${TAG").unwrap_err().contains("unclosed"));
        assert!(i("${TAG:x}").is_err());
        assert!(i("$1").is_err());
        let deep = format!("{}x{}", "${A:-".repeat(10_000), "}".repeat(10_000));
        assert!(i(&deep).unwrap_err().contains("nested deeper"));
    }

    #[test]
    fn unset_warns_once() {
        let mut w = Vec::new();
        assert_eq!(interpolate("${A}${A}$B", &env(), &mut w).unwrap(), "");
        assert_eq!(w.len(), 2, "{w:?}");
        assert!(w[0].contains("the A variable is not set"));
    }

    proptest::proptest! {
        #[test]
        fn never_panics(s in "[${}:?+\\-a-zA-Z_0-9 ]{0,40}") {
            let _ = i(&s);
        }
    }
}
