//! The conformance runner behind `cargo xtask conformance nginx DIR`.
//!
//! Over every config file of the corpus in DIR (other projects' test files,
//! kept outside this repository):
//!
//! 1. round trip: a file that parses prints back byte for byte;
//! 2. syntax-level expectations:
//!    - where the Go port ships an expected payload (`X.json` beside
//!      `X.conf`), our payload must match it;
//!    - where it ships a `.golden` rebuild of a config, both must parse to
//!      the same structure;
//!    - everywhere else, our payload must match what `crossplane` (the
//!      Python package, installed by this runner with pip when missing)
//!      says about the same file, run once per file as a single file and,
//!      for `nginx.conf` files, again with includes followed;
//! 3. known deviations (crossplane and nginx disagree, and we follow nginx)
//!    are checked against nginx's answer instead, and listed at the end.
//!
//! Errors only crossplane's directive table produces (unknown directive,
//! argument counts, context) are out of scope: such expected errors, and the
//! statements crossplane dropped because of them, are left out of the
//! comparison and counted.

use rollout_nginx::{ArgStyle, ConfFile, Config, Fs, JsonOptions, LoadOptions};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};

/// A place where crossplane and nginx disagree; we follow nginx.
struct Deviation {
    /// Path under the corpus.
    file: &'static str,
    /// nginx's error (message, line) on this file, checked with nginx 1.22
    /// `-t`; `None` when nginx accepts the syntax.
    nginx: Option<(&'static str, u32)>,
    /// What crossplane does instead.
    crossplane: &'static str,
}

const MISSING_SEMI: &str =
    r#"directive "proxy_pass" is not terminated by ";" (its directive table), then recovers"#;
const EMPTY_ERROR: &str =
    "an empty error without a line (its lexer runs out inside a statement at end of file)";

const DEVIATIONS: &[Deviation] = &[
    Deviation {
        file: "crossplane/quote-behavior/nginx.conf",
        nginx: Some((r#"unexpected "-""#, 1)),
        crossplane: "a closing quote ends the word and `-quote` starts the next one",
    },
    Deviation {
        file: "crossplane-go/quote-behavior/nginx.conf",
        nginx: Some((r#"unexpected "-""#, 1)),
        crossplane: "a closing quote ends the word and `-quote` starts the next one",
    },
    Deviation {
        file: "crossplane/missing-semicolon/broken-above.conf",
        nginx: Some((r#"unexpected "}""#, 5)),
        crossplane: MISSING_SEMI,
    },
    Deviation {
        file: "crossplane/missing-semicolon/broken-below.conf",
        nginx: Some((r#"unexpected "}""#, 8)),
        crossplane: MISSING_SEMI,
    },
    Deviation {
        file: "crossplane-go/missing-semicolon/broken-above.conf",
        nginx: Some((r#"unexpected "}""#, 5)),
        crossplane: MISSING_SEMI,
    },
    Deviation {
        file: "crossplane-go/missing-semicolon/broken-below.conf",
        nginx: Some((r#"unexpected "}""#, 8)),
        crossplane: MISSING_SEMI,
    },
    Deviation {
        file: "crossplane-go/missing-semicolon-above/nginx.conf",
        nginx: Some((r#"unexpected "}""#, 5)),
        crossplane: MISSING_SEMI,
    },
    Deviation {
        file: "crossplane-go/missing-semicolon-below/nginx.conf",
        nginx: Some((r#"unexpected "}""#, 8)),
        crossplane: MISSING_SEMI,
    },
    Deviation {
        file: "crossplane/includes-regular/conf.d/foo.conf",
        nginx: Some((EOF_IN_STATEMENT, 3)),
        crossplane: EMPTY_ERROR,
    },
    Deviation {
        file: "crossplane/includes-regular/conf.d/bar.conf",
        nginx: Some((EOF_IN_STATEMENT, 3)),
        crossplane: EMPTY_ERROR,
    },
    Deviation {
        file: "crossplane-go/includes-regular/conf.d/foo.conf",
        nginx: Some((EOF_IN_STATEMENT, 3)),
        crossplane: EMPTY_ERROR,
    },
    Deviation {
        file: "crossplane-go/includes-regular/conf.d/bar.conf",
        nginx: Some((EOF_IN_STATEMENT, 3)),
        crossplane: EMPTY_ERROR,
    },
    Deviation {
        file: "crossplane/includes-globbed/servers/locations/not-included.conf",
        nginx: Some((EOF_IN_STATEMENT, 3)),
        crossplane: EMPTY_ERROR,
    },
    Deviation {
        file: "crossplane-go/includes-globbed/servers/locations/not-included.conf",
        nginx: Some((EOF_IN_STATEMENT, 3)),
        crossplane: EMPTY_ERROR,
    },
    Deviation {
        file: "certbot/broken.conf",
        nginx: Some((EOF_IN_STATEMENT, 13)),
        crossplane: EMPTY_ERROR,
    },
    Deviation {
        file: "certbot/ubuntu_nginx_1_4_6/default_vhost/nginx/naxsi-ui.conf.1.4.1",
        nginx: Some((EOF_IN_STATEMENT, 17)),
        crossplane: EMPTY_ERROR,
    },
    Deviation {
        file: "certbot/ubuntu_nginx_1_4_6/default_vhost/nginx/sites-enabled/default",
        nginx: Some((EOF_IN_STATEMENT, 1)),
        crossplane: "accepts a last word with no `;` at end of file (this file is a symlink stored as its target text)",
    },
    Deviation {
        file: "crossplane-go/premature-eof/nginx.conf",
        nginx: Some((EOF_IN_STATEMENT, 3)),
        crossplane: r#"`unexpected end of file, expecting "}"` at line 2"#,
    },
    Deviation {
        file: "crossplane-go/braces/missing-brace.conf",
        nginx: Some((r#"unexpected end of file, expecting "}""#, 23)),
        crossplane: "the same message at line 22 (nginx names the line after the last newline)",
    },
    Deviation {
        file: "crossplane-go/invalid-map/nginx.conf",
        nginx: Some((r#"unexpected "{""#, 7)),
        crossplane: "accepts a nested block in a `map` body (nginx reads map bodies with a handler that refuses blocks)",
    },
    Deviation {
        file: "crossplane-go/broken1/nginx.conf",
        nginx: None,
        crossplane: "reads `${url ;` as the word `${url ` (space included); nginx reads `${url`",
    },
    Deviation {
        file: "crossplane-go/broken1/nginx2.conf",
        nginx: None,
        crossplane: "reads `${url ;` as the word `${url ` (space included); nginx reads `${url`",
    },
    Deviation {
        file: "crossplane/messy/nginx.conf",
        nginx: None,
        crossplane: "drops the `\\` that ends the comment on line 2 (it glues it to the newline); nginx keeps it",
    },
    Deviation {
        file: "crossplane-go/messy/nginx.conf",
        nginx: None,
        crossplane: "drops the `\\` that ends the comment on line 2 (it glues it to the newline); nginx keeps it",
    },
];

const EOF_IN_STATEMENT: &str = r#"unexpected end of file, expecting ";" or "}""#;

/// The Go port's expected payloads that no longer match the config beside
/// them; Python crossplane is asked about the config instead.
const STALE_GO: &[(&str, &str)] = &[
    ("crossplane-go/includes-regular/nginx.json", "made from an older nginx.conf (comments and a multi_accept that the config no longer has)"),
    ("crossplane-go/with-comments/nginx.json", "made from an older nginx.conf (a second server block)"),
    ("crossplane-go/directive-with-space/nginx.json", "made before the charset_map block was added to the config"),
    ("crossplane-go/lua-block-larger/nginx.json", "made by a crossplane whose Lua lexer dropped the first letter after a `--` comment (`ocal data`)"),
];

/// Expected errors that come from crossplane's directive table.
fn out_of_scope(msg: &str) -> bool {
    msg.starts_with("unknown directive")
        || msg.contains("directive is not allowed here")
        || msg.starts_with("invalid number of arguments")
        || msg.contains("is not terminated by \";\"")
        || msg.contains("has no opening \"{\"")
}

const PY: &str = r#"
import json, sys
import crossplane
jobs = json.load(sys.stdin)
out = {}
for path, single in jobs:
    try:
        p = crossplane.parse(path, comments=True, catch_errors=True, single=single,
                             check_ctx=False, check_args=False)
    except Exception as e:
        p = {"status": "failed", "errors": [{"file": path, "error": "crossplane raised: %s" % e, "line": None}], "config": []}
    out["%s|%d" % (path, single)] = p
json.dump(out, sys.stdout)
"#;

fn main() -> ExitCode {
    let Some(dir) = std::env::args().nth(1).map(PathBuf::from) else {
        eprintln!("usage: nginx-conformance DIR");
        return ExitCode::from(2);
    };
    match run(&dir) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

struct Tally {
    failures: Vec<String>,
    checks: BTreeMap<&'static str, usize>,
    out_of_scope: Vec<String>,
}

impl Tally {
    fn pass(&mut self, what: &'static str) {
        *self.checks.entry(what).or_default() += 1;
    }
    fn fail(&mut self, msg: String) {
        self.failures.push(msg);
    }
}

fn run(dir: &Path) -> Result<bool, String> {
    let dir = dir.canonicalize().map_err(|e| {
        format!(
            "{}: {e}\nhint: the corpus is ../shared/corpus/nginx",
            dir.display()
        )
    })?;
    let mut files = Vec::new();
    walk(&dir, &mut files);
    files.sort();
    let configs: Vec<PathBuf> = files
        .iter()
        .filter(|p| {
            let n = p.file_name().unwrap().to_string_lossy();
            !(n.ends_with(".json")
                || n.ends_with(".golden")
                || n.ends_with(".bz2")
                || n.ends_with(".kld")
                || n.ends_with(".md"))
        })
        .cloned()
        .collect();
    let rel = |p: &Path| {
        p.strip_prefix(&dir)
            .unwrap_or(p)
            .to_string_lossy()
            .into_owned()
    };
    let mut t = Tally {
        failures: Vec::new(),
        checks: BTreeMap::new(),
        out_of_scope: Vec::new(),
    };

    // 1. Round trip.
    for p in &configs {
        let bytes = std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()))?;
        // Files with a syntax error print what was read, then the rest.
        let (f, err) = ConfFile::parse_lenient(p.clone(), bytes.clone());
        if f.print() != bytes {
            t.fail(format!("{}: does not round-trip", rel(p)));
        } else if err.is_none() {
            t.pass("round trip byte for byte (parsed files)");
        } else {
            t.pass("round trip byte for byte (files with a syntax error)");
        }
    }

    // 2a. The Go port's expected payloads.
    let mut covered: Vec<PathBuf> = Vec::new();
    for j in files
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
    {
        if j.file_name().is_some_and(|n| n == "xp.json") {
            continue;
        }
        let conf = j.with_extension("conf");
        if !conf.exists() {
            continue;
        }
        if DEVIATIONS.iter().any(|d| dir.join(d.file) == conf)
            || STALE_GO.iter().any(|(f, _)| dir.join(f) == *j)
        {
            continue;
        }
        let expected: Value = serde_json::from_str(&std::fs::read_to_string(j).unwrap())
            .map_err(|e| format!("{}: {e}", j.display()))?;
        let ours = our_payload(&conf, false);
        let base_expected = go_base(&expected);
        compare(
            &mut t,
            &rel(&conf),
            "Go expected payload",
            &expected,
            &base_expected,
            &ours,
            &conf,
            "go expected json",
        );
        covered.push(conf);
    }

    // 2b. Golden rebuilds.
    for g in files
        .iter()
        .filter(|p| p.to_string_lossy().ends_with(".golden"))
    {
        let conf = PathBuf::from(g.to_string_lossy().trim_end_matches(".golden"));
        let a = ConfFile::parse(conf.clone(), std::fs::read(&conf).unwrap());
        let b = ConfFile::parse(g.clone(), std::fs::read(g).unwrap());
        match (a, b) {
            (Ok(a), Ok(b)) if shape(&a) == shape(&b) => t.pass("golden rebuild parses the same"),
            (a, b) => t.fail(format!(
                "{}: parse differs from its .golden ({:?} / {:?})",
                rel(&conf),
                a.err(),
                b.err()
            )),
        }
        covered.push(conf);
    }

    // 3. Deviations: nginx's answer.
    for d in DEVIATIONS {
        let p = dir.join(d.file);
        if !p.exists() {
            t.fail(format!(
                "{}: listed deviation but the file is missing",
                d.file
            ));
            continue;
        }
        let got = ConfFile::parse(p.clone(), std::fs::read(&p).unwrap());
        match (d.nginx, got) {
            (None, Ok(_)) => t.pass("deviation: nginx's answer"),
            (Some((msg, line)), Err(e)) if e.message == msg && e.line == line => {
                t.pass("deviation: nginx's answer")
            }
            (want, got) => t.fail(format!(
                "{}: nginx says {want:?}, we say {:?}",
                d.file,
                got.err().map(|e| (e.message, e.line))
            )),
        }
        covered.push(p);
    }

    // 2c. crossplane on everything else.
    let mut jobs: Vec<(PathBuf, bool)> = Vec::new();
    for p in &configs {
        if covered.contains(p) {
            continue;
        }
        jobs.push((p.clone(), true));
        if p.file_name().is_some_and(|n| n == "nginx.conf") {
            jobs.push((p.clone(), false));
        }
    }
    let xp = crossplane(&jobs)?;
    for (p, single) in &jobs {
        let key = format!("{}|{}", p.display(), *single as u8);
        let Some(expected) = xp.get(&key) else {
            t.fail(format!("{}: crossplane gave no payload", rel(p)));
            continue;
        };
        let ours = our_payload(p, *single);
        let base = p.parent().unwrap().to_string_lossy().into_owned() + "/";
        let what = if *single {
            "crossplane single file"
        } else {
            "crossplane with includes"
        };
        compare(&mut t, &rel(p), what, expected, &base, &ours, p, what);
    }

    println!(
        "nginx conformance over {} ({} config files)",
        dir.display(),
        configs.len()
    );
    for (what, n) in &t.checks {
        println!("  pass {n:4}  {what}");
    }
    println!(
        "  out of scope (crossplane's directive table): {}",
        t.out_of_scope.len()
    );
    for o in &t.out_of_scope {
        println!("    - {o}");
    }
    println!(
        "  deviations (crossplane differs from nginx; we follow nginx): {}",
        DEVIATIONS.len()
    );
    for d in DEVIATIONS {
        match d.nginx {
            Some((m, l)) => println!(
                "    - {}: nginx `{m}` at line {l}; crossplane: {}",
                d.file, d.crossplane
            ),
            None => println!(
                "    - {}: nginx accepts; crossplane: {}",
                d.file, d.crossplane
            ),
        }
    }
    println!(
        "  stale expected payloads of the Go port (crossplane asked instead): {}",
        STALE_GO.len()
    );
    for (f, why) in STALE_GO {
        println!("    - {f}: {why}");
    }
    if t.failures.is_empty() {
        println!("ok");
        Ok(true)
    } else {
        println!("FAILED: {}", t.failures.len());
        for f in &t.failures {
            println!("  - {f}");
        }
        Ok(false)
    }
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            walk(&p, out);
        } else {
            out.push(p);
        }
    }
}

/// The Go payload's paths start with `testdata/configs/CASE/`; its base.
fn go_base(v: &Value) -> String {
    let f = v["config"][0]["file"].as_str().unwrap_or_default();
    match f.rfind('/') {
        Some(i) => f[..=i].to_string(),
        None => String::new(),
    }
}

fn our_payload(path: &Path, single: bool) -> Value {
    let cfg = Config::load_from(
        &Fs,
        path,
        LoadOptions {
            single_file: single,
            lenient: true,
        },
    );
    match cfg {
        Ok(c) => serde_json::from_str(&c.to_json(&JsonOptions {
            comments: true,
            args: ArgStyle::Crossplane,
        }))
        .expect("our JSON is valid"),
        Err(e) => json!({"status": "failed", "errors": [{"error": e.to_string()}], "config": []}),
    }
}

/// One file: its name, its errors (line, kind), its statements.
type NormFile = (String, Vec<(u64, String)>, Value);

/// A payload reduced to what the syntax decides, paths relative to `base`.
#[derive(Debug, PartialEq)]
struct Norm {
    configs: Vec<NormFile>,
}

fn normalize(v: &Value, base: &str, comments: bool, drop: &[(String, u64)]) -> Norm {
    let strip = |f: &str| f.strip_prefix(base).unwrap_or(f).to_string();
    let mut configs = Vec::new();
    for c in v["config"].as_array().cloned().unwrap_or_default() {
        let file = strip(c["file"].as_str().unwrap_or_default());
        let mut errors: Vec<(u64, String)> = c["errors"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .map(|e| {
                let msg = e["error"].as_str().unwrap_or_default();
                (e["line"].as_u64().unwrap_or(0), error_kind(msg))
            })
            .filter(|(_, m)| !out_of_scope(m))
            .collect();
        errors.sort();
        let dropped: Vec<u64> = drop
            .iter()
            .filter(|(f, _)| *f == file)
            .map(|(_, l)| *l)
            .collect();
        let parsed = norm_block(&c["parsed"], comments, &dropped);
        configs.push((file, errors, parsed));
    }
    Norm { configs }
}

/// An error message without its ` in FILE:LINE`, missing includes unified.
fn error_kind(msg: &str) -> String {
    if msg.starts_with("[Errno 2]")
        || (msg.starts_with("open() ") && msg.contains("(2: No such file"))
    {
        let name = msg
            .split(['\'', '"'])
            .find(|s| s.contains('/') || s.ends_with(".conf"))
            .unwrap_or("")
            .rsplit('/')
            .next()
            .unwrap_or("")
            .to_string();
        return format!("missing include {name}");
    }
    match msg.rfind(" in ") {
        Some(i) if msg[i..].contains(':') => msg[..i].to_string(),
        _ => msg.to_string(),
    }
}

fn norm_block(v: &Value, comments: bool, dropped: &[u64]) -> Value {
    let mut out = Vec::new();
    for s in v.as_array().cloned().unwrap_or_default() {
        let is_comment = s["directive"] == "#";
        if is_comment && !comments {
            continue;
        }
        if !is_comment && dropped.contains(&s["line"].as_u64().unwrap_or(0)) {
            continue;
        }
        let mut m = serde_json::Map::new();
        for k in ["directive", "line", "args", "comment", "includes"] {
            if let Some(x) = s.get(k) {
                m.insert(k.into(), x.clone());
            }
        }
        if let Some(b) = s.get("block") {
            m.insert("block".into(), norm_block(b, comments, dropped));
        }
        out.push(Value::Object(m));
    }
    Value::Array(out)
}

#[allow(clippy::too_many_arguments)]
fn compare(
    t: &mut Tally,
    name: &str,
    what: &str,
    expected: &Value,
    expected_base: &str,
    ours: &Value,
    path: &Path,
    label: &'static str,
) {
    let has_comments = expected.to_string().contains("\"directive\":\"#\"");
    // Statements crossplane dropped for a directive-table error, and files
    // where it found a syntax error (nginx stops at the first error, so only
    // the error is compared there, not how each parser recovered).
    let mut drop = Vec::new();
    let mut scoped: Vec<String> = Vec::new();
    let mut failed: Vec<String> = Vec::new();
    for c in expected["config"].as_array().cloned().unwrap_or_default() {
        let file = c["file"].as_str().unwrap_or_default();
        let file = file.strip_prefix(expected_base).unwrap_or(file).to_string();
        for e in c["errors"].as_array().cloned().unwrap_or_default() {
            let msg = error_kind(e["error"].as_str().unwrap_or_default());
            let line = e["line"].as_u64().unwrap_or(0);
            if out_of_scope(&msg) {
                t.out_of_scope
                    .push(format!("{name} ({what}): {file}:{line}: {msg}"));
                drop.push((file.clone(), line));
                scoped.push(file.clone());
            } else {
                failed.push(file.clone());
            }
        }
    }
    let our_base = path.parent().unwrap().to_string_lossy().into_owned() + "/";
    let mut a = normalize(expected, expected_base, has_comments, &drop);
    let mut b = normalize(ours, &our_base, has_comments, &drop);
    for n in [&mut a, &mut b] {
        for c in &mut n.configs {
            if failed.contains(&c.0) {
                c.2 = Value::Null;
            }
        }
    }
    // crossplane's empty error at end of file (see EMPTY_ERROR) stands for
    // nginx's `unexpected end of file, expecting ";" or "}"`.
    for (x, y) in a.configs.iter().zip(b.configs.iter_mut()) {
        if x.0 == y.0
            && x.1 == [(0, String::new())]
            && y.1.len() == 1
            && y.1[0].1 == EOF_IN_STATEMENT
        {
            y.1 = x.1.clone();
        }
    }
    if a == b {
        t.pass(label);
    } else if a
        .configs
        .iter()
        .zip(&b.configs)
        .all(|(x, y)| x == y || (scoped.contains(&x.0) && x.0 == y.0 && x.1 == y.1))
        && a.configs.len() == b.configs.len()
    {
        t.out_of_scope.push(format!(
            "{name} ({what}): statements crossplane's directive table dropped: {}",
            first_difference(&a, &b)
        ));
    } else {
        t.fail(format!("{name} ({what}): {}", first_difference(&a, &b)));
    }
}

fn first_difference(a: &Norm, b: &Norm) -> String {
    if a.configs.len() != b.configs.len() {
        return format!(
            "files differ: expected {:?}, ours {:?}",
            a.configs.iter().map(|c| &c.0).collect::<Vec<_>>(),
            b.configs.iter().map(|c| &c.0).collect::<Vec<_>>()
        );
    }
    for (x, y) in a.configs.iter().zip(&b.configs) {
        if x.0 != y.0 {
            return format!("file {} vs {}", x.0, y.0);
        }
        if x.1 != y.1 {
            return format!("{}: errors expected {:?}, ours {:?}", x.0, x.1, y.1);
        }
        if x.2 != y.2 {
            return format!("{}: {}", x.0, value_diff(&x.2, &y.2));
        }
    }
    "differs".into()
}

fn value_diff(a: &Value, b: &Value) -> String {
    match (a, b) {
        (Value::Array(x), Value::Array(y)) => {
            for (i, (p, q)) in x.iter().zip(y).enumerate() {
                if p != q {
                    return format!("[{i}] {}", value_diff(p, q));
                }
            }
            format!("length {} vs {}", x.len(), y.len())
        }
        (Value::Object(x), Value::Object(y)) => {
            for (k, p) in x {
                match y.get(k) {
                    Some(q) if q == p => {}
                    Some(q) => return format!(".{k} {}", value_diff(p, q)),
                    None => return format!(".{k} missing in ours"),
                }
            }
            format!(
                "extra keys in ours: {:?}",
                y.keys().filter(|k| !x.contains_key(*k)).collect::<Vec<_>>()
            )
        }
        _ => format!("expected {a}, ours {b}"),
    }
}

/// (name, args) of every directive with its depth, values decoded.
fn shape(f: &ConfFile) -> Vec<(usize, String, Vec<String>)> {
    f.walk()
        .into_iter()
        .map(|(p, d)| {
            (
                p.len(),
                d.name().value_lossy(),
                d.args().map(|a| a.value_lossy()).collect(),
            )
        })
        .collect()
}

fn crossplane(jobs: &[(PathBuf, bool)]) -> Result<BTreeMap<String, Value>, String> {
    let has = Command::new("python3")
        .args(["-c", "import crossplane"])
        .stderr(Stdio::null())
        .status()
        .map_err(|e| format!("python3: {e}\nhint: install python3"))?;
    if !has.success() {
        eprintln!("conformance: installing crossplane with pip");
        let ok = Command::new("python3")
            .args(["-m", "pip", "install", "--quiet", "crossplane"])
            .status()
            .map_err(|e| format!("pip: {e}"))?;
        if !ok.success() {
            return Err(
                "pip install crossplane failed\nhint: python3 -m pip install crossplane".into(),
            );
        }
    }
    let input: Vec<(String, bool)> = jobs
        .iter()
        .map(|(p, s)| (p.to_string_lossy().into_owned(), *s))
        .collect();
    let mut child = Command::new("python3")
        .args(["-c", PY])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("python3: {e}"))?;
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().expect("piped");
        stdin
            .write_all(serde_json::to_string(&input).unwrap().as_bytes())
            .map_err(|e| format!("python3: {e}"))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| format!("python3: {e}"))?;
    if !out.status.success() {
        return Err("crossplane run failed".into());
    }
    let v: BTreeMap<String, Value> =
        serde_json::from_slice(&out.stdout).map_err(|e| format!("crossplane output: {e}"))?;
    Ok(v)
}
