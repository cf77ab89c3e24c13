//! Checks an nginx config by hand, and feeds the benchmark.
//!
//! ```text
//! cargo run -p rollout-nginx --example nginx-parse -- FILE [--print|--json|--single-file|--comments]
//! ```
//!
//! Without a flag it parses (following includes) and says how many files and
//! directives it read. `--print` writes the file back from its tree (byte for
//! byte the input), `--json` the crossplane-shaped payload with includes
//! followed, `--single-file` does not follow includes. Errors go to stderr
//! as `file:line:column: message`, with exit code 1.

use rollout_nginx::{Config, Fs, JsonOptions, LoadOptions};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let mut file: Option<PathBuf> = None;
    let (mut print, mut json, mut single, mut comments) = (false, false, false, false);
    for a in std::env::args().skip(1) {
        match a.as_str() {
            "--print" => print = true,
            "--json" => json = true,
            "--single-file" => single = true,
            "--comments" => comments = true,
            "-h" | "--help" => {
                println!("usage: nginx-parse FILE [--print|--json|--single-file|--comments]");
                return ExitCode::SUCCESS;
            }
            f if !f.starts_with("--") && file.is_none() => file = Some(PathBuf::from(f)),
            other => {
                eprintln!("error: unexpected argument {other:?}\nhint: nginx-parse FILE [--print|--json|--single-file|--comments]");
                return ExitCode::from(2);
            }
        }
    }
    let Some(file) = file else {
        eprintln!("error: no file given\nhint: nginx-parse FILE [--print|--json|--single-file|--comments]");
        return ExitCode::from(2);
    };
    let options = LoadOptions {
        single_file: single || print,
        lenient: json,
    };
    let cfg = match Config::load_from(&Fs, &file, options) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let mut stdout = std::io::stdout().lock();
    if print {
        if let Err(e) = cfg.main().write_to(&mut stdout) {
            eprintln!("{}: {e}", file.display());
            return ExitCode::FAILURE;
        }
    } else if json {
        let text = cfg.to_json(&JsonOptions {
            comments,
            ..Default::default()
        });
        let _ = writeln!(stdout, "{text}");
        for e in cfg.errors() {
            eprintln!("{}", e.error);
        }
        if !cfg.errors().is_empty() {
            return ExitCode::FAILURE;
        }
    } else {
        let directives: usize = cfg.files().iter().map(|f| f.walk().len()).sum();
        let bytes: usize = cfg.files().iter().map(|f| f.source().len()).sum();
        let _ = writeln!(
            stdout,
            "{}: ok, {} file(s), {bytes} bytes, {directives} directives",
            file.display(),
            cfg.files().len()
        );
    }
    ExitCode::SUCCESS
}
