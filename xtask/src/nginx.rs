//! nginx parser tasks: conformance over a corpus, fuzzing, and the parse
//! benchmark against crossplane.
//!
//! The work itself lives in rollout-nginx's examples (`nginx-conformance`,
//! `nginx-bench`) and in the cargo-fuzz project `fuzz/`, so that xtask does
//! not depend on the parser.

use crate::util::{cargo, root, run, show};
use anyhow::{bail, Context, Result};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// `cargo xtask conformance nginx DIR`.
pub fn conformance(args: &[String]) -> Result<()> {
    let [dir] = args else {
        bail!(
            "usage: cargo xtask conformance nginx DIR\nhint: the corpus is ../shared/corpus/nginx"
        );
    };
    let dir = absolute(dir)?;
    run(cargo()
        .args([
            "run",
            "-q",
            "-p",
            "rollout-nginx",
            "--example",
            "nginx-conformance",
            "--",
        ])
        .arg(&dir))
}

/// `cargo xtask fuzz nginx [--time SECS]`: cargo-fuzz on the stable
/// toolchain (`--sanitizer none`), installed first when missing.
pub fn fuzz(args: &[String]) -> Result<()> {
    let mut secs = 60u64;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--time" => {
                secs = it
                    .next()
                    .context("--time needs a number of seconds")?
                    .parse()
                    .context("--time needs a number of seconds")?;
            }
            other => bail!("unexpected argument {other:?}\nhint: cargo xtask fuzz nginx --time 60"),
        }
    }
    if !has_cargo_fuzz() {
        eprintln!("installing cargo-fuzz");
        run(cargo().args(["install", "cargo-fuzz", "--locked"]))?;
    }
    let work = target_dir().join("fuzz-corpus-parse");
    std::fs::create_dir_all(&work).with_context(|| format!("creating {}", work.display()))?;
    let seeds = root().join("fuzz/seeds/parse");
    run(cargo()
        .args([
            "fuzz",
            "run",
            "--fuzz-dir",
            "fuzz",
            "--sanitizer",
            "none",
            "--release",
            "parse",
        ])
        .arg(&work)
        .arg(&seeds)
        .arg("--")
        .arg(format!("-max_total_time={secs}"))
        .arg("-max_len=65536")
        .arg("-timeout=10"))?;
    println!("fuzz nginx: {secs}s, no crash");
    Ok(())
}

fn has_cargo_fuzz() -> bool {
    cargo()
        .args(["fuzz", "--version"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"))
}

fn absolute(p: &str) -> Result<PathBuf> {
    let p = Path::new(p);
    let abs = if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir()?.join(p)
    };
    abs.canonicalize()
        .with_context(|| format!("{}: not found", abs.display()))
}

const PY_BENCH: &str = r#"
import sys, time
import crossplane

def vm(key):
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith(key):
                return int(line.split()[1]) * 1024
    return 0

mode = sys.argv[1]
if mode == 'corpus':
    files = sys.argv[2:]
    rounds = 0
    t0 = time.perf_counter()
    while True:
        for f in files:
            crossplane.parse(f, single=True, check_ctx=False, check_args=False)
        rounds += 1
        if time.perf_counter() - t0 >= 1.0 and rounds >= 3:
            break
    print('rounds=%d' % rounds)
    print('secs=%.6f' % ((time.perf_counter() - t0) / rounds))
else:
    path = sys.argv[2]
    try:
        open('/proc/self/clear_refs', 'w').write('5')
        reset = True
    except OSError:
        reset = False
    base = vm('VmRSS:')
    t0 = time.perf_counter()
    p = crossplane.parse(path, single=True, check_ctx=False, check_args=False)
    secs = time.perf_counter() - t0
    print('secs=%.6f' % secs)
    print('peak_bytes=%d' % (vm('VmHWM:') - base))
    print('status=%s' % p['status'])
"#;

/// `cargo xtask bench nginx`: parse throughput and peak memory, ours and
/// crossplane's (timed inside Python, interpreter start excluded).
pub fn bench(args: &[String]) -> Result<()> {
    let corpus = match args {
        [] => root().join("../shared/corpus/nginx"),
        [dir] => PathBuf::from(dir),
        _ => bail!("usage: cargo xtask bench nginx [CORPUS_DIR]"),
    };
    let corpus = absolute(&corpus.to_string_lossy())
        .context("the corpus (../shared/corpus/nginx) is needed for the benchmark")?;
    ensure_crossplane()?;
    run(cargo().args([
        "build",
        "-q",
        "--release",
        "-p",
        "rollout-nginx",
        "--example",
        "nginx-bench",
    ]))?;
    let bin = target_dir().join("release/examples/nginx-bench");

    // The corpus's config files.
    let mut files = Vec::new();
    walk(&corpus, &mut files);
    files.sort();
    files.retain(|p| {
        let n = p.to_string_lossy();
        ![".json", ".golden", ".bz2", ".kld", ".md"]
            .iter()
            .any(|s| n.ends_with(s))
    });

    // A ~20 MB config: the Go port's large benchmark config, repeated.
    let large = corpus.join("crossplane-go/large-config/nginx.conf.bz2");
    let big = target_dir().join("nginx-bench-20mb.conf");
    let out = Command::new("python3")
        .args([
            "-c",
            "import bz2,sys\nd=bz2.open(sys.argv[1]).read()\nn=(20*1024*1024+len(d)-1)//len(d)\nopen(sys.argv[2],'wb').write(d*n)\nprint(n)",
        ])
        .arg(&large)
        .arg(&big)
        .output()
        .context("python3")?;
    if !out.status.success() {
        bail!(
            "cannot build the 20 MB config from {}: {}",
            large.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let copies = String::from_utf8_lossy(&out.stdout).trim().to_string();

    let mut ours_c = Command::new(&bin);
    ours_c.arg("corpus").args(&files);
    let ours_corpus = kv(&mut ours_c)?;
    let mut ours_b = Command::new(&bin);
    ours_b.arg("big").arg(&big);
    let ours_big = kv(&mut ours_b)?;
    let mut py_c = Command::new("python3");
    py_c.args(["-c", PY_BENCH, "corpus"]).args(&files);
    let py_corpus = kv(&mut py_c)?;
    let mut py_b = Command::new("python3");
    py_b.args(["-c", PY_BENCH, "big"]).arg(&big);
    let py_big = kv(&mut py_b)?;

    let num = |m: &BTreeMap<String, String>, k: &str| -> Result<f64> {
        m.get(k)
            .with_context(|| format!("no {k} in the benchmark output"))?
            .parse::<f64>()
            .with_context(|| format!("{k} is not a number"))
    };
    let mb = 1024.0 * 1024.0;
    let corpus_bytes = num(&ours_corpus, "bytes")?;
    let big_bytes = num(&ours_big, "bytes")?;
    let ours_c_mbps = corpus_bytes / mb / num(&ours_corpus, "secs")?;
    let py_c_mbps = corpus_bytes / mb / num(&py_corpus, "secs")?;
    let ours_secs = num(&ours_big, "secs")? + num(&ours_big, "read_secs")?;
    let ours_b_mbps = big_bytes / mb / ours_secs;
    let py_b_mbps = big_bytes / mb / num(&py_big, "secs")?;
    let ours_peak = num(&ours_big, "peak_bytes")?;
    let py_peak = num(&py_big, "peak_bytes")?;

    println!(
        "nginx parse benchmark (release build; crossplane {} timed inside Python)",
        crossplane_version()
    );
    println!(
        "{:<34} {:>10} {:>14} {:>16} {:>8}",
        "input", "size", "ours MB/s", "crossplane MB/s", "ratio"
    );
    println!(
        "{:<34} {:>7.2} MB {:>14.1} {:>16.2} {:>7.0}x",
        format!("corpus ({} files, single-file)", files.len()),
        corpus_bytes / mb,
        ours_c_mbps,
        py_c_mbps,
        ours_c_mbps / py_c_mbps
    );
    println!(
        "{:<34} {:>7.2} MB {:>14.1} {:>16.2} {:>7.0}x",
        format!("large-config x{copies} (read + parse)"),
        big_bytes / mb,
        ours_b_mbps,
        py_b_mbps,
        ours_b_mbps / py_b_mbps
    );
    println!(
        "peak memory on the {:.1} MB config: ours {:.1} MB ({:.2}x input, input buffer included), crossplane {:.1} MB ({:.2}x)",
        big_bytes / mb,
        ours_peak / mb,
        ours_peak / big_bytes,
        py_peak / mb,
        py_peak / big_bytes
    );
    println!(
        "targets: throughput >= 50x crossplane: {}; peak memory < 5x input: {}",
        if ours_b_mbps / py_b_mbps >= 50.0 && ours_c_mbps / py_c_mbps >= 50.0 {
            "met"
        } else {
            "NOT met"
        },
        if ours_peak < 5.0 * big_bytes {
            "met"
        } else {
            "NOT met"
        }
    );
    Ok(())
}

fn crossplane_version() -> String {
    Command::new("python3")
        .args(["-c", "import crossplane; print(crossplane.__version__)"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

fn ensure_crossplane() -> Result<()> {
    let ok = Command::new("python3")
        .args(["-c", "import crossplane"])
        .stderr(Stdio::null())
        .status()
        .context("python3 is needed to time crossplane")?
        .success();
    if !ok {
        run(Command::new("python3").args(["-m", "pip", "install", "--quiet", "crossplane"]))?;
    }
    Ok(())
}

/// Runs `cmd` and reads its `key=value` lines.
fn kv(cmd: &mut Command) -> Result<BTreeMap<String, String>> {
    let shown = show(cmd);
    let shown = if shown.len() > 200 {
        format!("{}...", &shown[..200])
    } else {
        shown
    };
    let out = cmd
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("cannot run {shown}"))?;
    if !out.status.success() {
        bail!("{shown} failed: {}", out.status);
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect())
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
