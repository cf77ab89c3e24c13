//! Parses an nginx config and prints it back (see `--help`).
use rollout_nginx::ConfFile;
use std::io::Write;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let path = &args[0];
    let src = std::fs::read(path).unwrap();
    match ConfFile::parse(path, src) {
        Ok(f) => {
            std::io::stdout().write_all(&f.print()).unwrap();
        }
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(1);
        }
    }
}
