//! Includes resolved as nginx resolves them, on a tree written here.

use rollout_nginx::{Config, LoadError, LoadOptions};
use std::path::{Path, PathBuf};

fn tree(name: &str, files: &[(&str, &str)]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("rollout-nginx-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    for (p, text) in files {
        let path = dir.join(p);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
    dir
}

fn names(cfg: &Config, dir: &Path) -> Vec<String> {
    cfg.files()
        .iter()
        .map(|f| f.path().strip_prefix(dir).unwrap().display().to_string())
        .collect()
}

#[test]
fn relative_to_main_dir_sorted_globs_each_file_once() {
    let dir = tree(
        "globs",
        &[
            (
                "nginx.conf",
                "http {\n  include conf.d/*.conf;\n  include sites/b;\n}\n",
            ),
            // Relative to the main config's directory, not conf.d/.
            ("conf.d/b.conf", "include sites/a;\n"),
            ("conf.d/a.conf", "server { listen 1; }\n"),
            ("conf.d/.hidden.conf", "broken {\n"),
            ("conf.d/c.txt", "broken {\n"),
            ("sites/a", "include sites/b;\n"),
            ("sites/b", "include sites/a;\n"),
        ],
    );
    let cfg = Config::load(dir.join("nginx.conf")).unwrap();
    assert_eq!(
        names(&cfg, &dir),
        [
            "nginx.conf",
            "conf.d/a.conf",
            "conf.d/b.conf",
            "sites/b",
            "sites/a"
        ]
    );
    let main = cfg.main();
    let incs: Vec<Vec<usize>> = main
        .walk()
        .into_iter()
        .filter_map(|(_, d)| cfg.included_by(0, &d).map(|v| v.to_vec()))
        .collect();
    assert_eq!(incs, vec![vec![1, 2], vec![3]]);
}

#[test]
fn missing_plain_include_is_an_error_on_its_line_and_empty_glob_is_fine() {
    let dir = tree(
        "missing",
        &[(
            "nginx.conf",
            "events {}\nhttp {\n  include none/*.conf;\n  include missing.conf;\n}\n",
        )],
    );
    let e = Config::load(dir.join("nginx.conf")).unwrap_err();
    let LoadError::Include { line, column, .. } = &e else {
        panic!("{e}")
    };
    assert_eq!((*line, *column), (4, 3));
    let msg = e.to_string();
    assert!(
        msg.contains("nginx.conf:4:3: open() \"")
            && msg.ends_with("missing.conf\" failed (2: No such file or directory)"),
        "{msg}"
    );
    let lenient = Config::load_from(
        &rollout_nginx::Fs,
        &dir.join("nginx.conf"),
        LoadOptions {
            lenient: true,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(lenient.errors().len(), 1);
    assert_eq!(lenient.files().len(), 1);
}

#[test]
fn single_file_does_not_follow_and_upstreams_are_found_across_files() {
    let dir = tree(
        "upstreams",
        &[
            ("nginx.conf", "http {\n  include up/*.conf;\n}\n"),
            ("up/app.conf", "upstream app {\n  server app:8000;\n}\n"),
        ],
    );
    let single = Config::load_from(
        &rollout_nginx::Fs,
        &dir.join("nginx.conf"),
        LoadOptions {
            single_file: true,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(single.files().len(), 1);
    assert!(single.upstream("app").is_err());
    let cfg = Config::load(dir.join("nginx.conf")).unwrap();
    let (i, up) = cfg.upstream("app").unwrap();
    assert_eq!(i, 1);
    assert_eq!(up.line, 1);
    assert_eq!(up.servers[0].server.to_string(), "app:8000");
}

#[test]
fn syntax_error_in_an_included_file_names_that_file() {
    let dir = tree(
        "syntax",
        &[
            ("nginx.conf", "include inc.conf;\n"),
            ("inc.conf", "a {\n  b\n}\n"),
        ],
    );
    let e = Config::load(dir.join("nginx.conf")).unwrap_err();
    let msg = e.to_string();
    assert!(msg.ends_with("inc.conf:3:1: unexpected \"}\""), "{msg}");
}

#[test]
fn config_level_edits_see_a_resolver_in_another_file() {
    use rollout_nginx::upstream::Server;
    let dir = tree(
        "resolver",
        &[
            (
                "nginx.conf",
                "http {\n  resolver 127.0.0.11;\n  include up.conf;\n}\n",
            ),
            (
                "up.conf",
                "upstream app {\n  zone app 64k;\n  server app:8000;\n}\n",
            ),
        ],
    );
    let cfg = Config::load(dir.join("nginx.conf")).unwrap();
    let (i, edited) = cfg
        .set_servers("app", &[Server::parse("app:8000 resolve").unwrap()])
        .unwrap();
    assert_eq!(i, 1);
    assert_eq!(
        edited.source(),
        b"upstream app {\n  zone app 64k;\n  server app:8000 resolve;\n}\n"
    );
    let none = tree(
        "no-resolver",
        &[
            (
                "nginx.conf",
                "http {\n  include up.conf;\n  server { resolver 1.1.1.1; }\n}\n",
            ),
            (
                "up.conf",
                "upstream app {\n  zone app 64k;\n  server app:8000;\n}\n",
            ),
        ],
    );
    let cfg = Config::load(none.join("nginx.conf")).unwrap();
    let e = cfg
        .set_servers("app", &[Server::parse("app:8000 resolve").unwrap()])
        .unwrap_err();
    assert!(e.to_string().contains("no resolver"), "{e}");
}
