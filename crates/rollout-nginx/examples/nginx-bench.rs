//! The measuring half of `cargo xtask bench nginx` (run it through xtask,
//! which also times crossplane and prints the comparison).
//!
//! ```text
//! nginx-bench corpus FILE...   parse every file (single-file, lenient) in a
//!                              loop for at least a second; print throughput
//! nginx-bench big FILE         parse one file once; print throughput and the
//!                              peak memory of reading plus parsing it
//! ```
//!
//! Output is `key=value` lines for xtask to read. Peak memory is Linux's
//! VmHWM after resetting it through `/proc/self/clear_refs` just before the
//! file is read, minus the resident size at that moment: the input buffer
//! and the tree together.

use rollout_nginx::ConfFile;
use std::time::{Duration, Instant};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("corpus") => corpus(&args[1..]),
        Some("big") if args.len() == 2 => big(&args[1]),
        _ => {
            eprintln!("usage: nginx-bench corpus FILE... | nginx-bench big FILE");
            std::process::exit(2);
        }
    }
}

fn corpus(files: &[String]) {
    let inputs: Vec<(String, Vec<u8>)> = files
        .iter()
        .map(|f| (f.clone(), std::fs::read(f).expect("readable")))
        .collect();
    let bytes: usize = inputs.iter().map(|(_, b)| b.len()).sum();
    let mut rounds = 0u32;
    let mut directives = 0usize;
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(1) || rounds < 3 {
        for (name, b) in &inputs {
            let (f, _) = ConfFile::parse_lenient(name.as_str(), b.clone());
            directives += f.items().len();
        }
        rounds += 1;
    }
    let secs = start.elapsed().as_secs_f64();
    std::hint::black_box(directives);
    println!("files={}", inputs.len());
    println!("bytes={bytes}");
    println!("rounds={rounds}");
    println!("secs={:.6}", secs / f64::from(rounds));
}

fn vm(key: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

fn big(path: &str) {
    let reset = std::fs::write("/proc/self/clear_refs", "5").is_ok();
    let base = vm("VmRSS:");
    let start = Instant::now();
    let src = std::fs::read(path).expect("readable");
    let bytes = src.len();
    let read = start.elapsed();
    let parse_start = Instant::now();
    let file = ConfFile::parse(path, src).expect("the benchmark config parses");
    let secs = parse_start.elapsed().as_secs_f64();
    let peak = vm("VmHWM:");
    let n = file.walk().len();
    println!("bytes={bytes}");
    println!("directives={n}");
    println!("read_secs={:.6}", read.as_secs_f64());
    println!("secs={secs:.6}");
    println!("peak_bytes={}", peak.saturating_sub(base));
    println!("peak_reset={reset}");
    assert_eq!(file.print().len(), bytes);
}
