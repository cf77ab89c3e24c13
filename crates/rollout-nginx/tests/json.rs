//! The crossplane-shaped payload, on a small tree written here.

use rollout_nginx::{ArgStyle, Config, Fs, JsonOptions, LoadOptions};
use serde_json::{json, Value};

fn tree(name: &str, files: &[(&str, &[u8])]) -> std::path::PathBuf {
    let dir =
        std::env::temp_dir().join(format!("rollout-nginx-json-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    for (p, text) in files {
        let path = dir.join(p);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
    dir
}

fn payload(main: &std::path::Path, options: LoadOptions, json: JsonOptions) -> Value {
    let cfg = Config::load_from(&Fs, main, options).unwrap();
    serde_json::from_str(&cfg.to_json(&json)).expect("valid JSON")
}

#[test]
fn payload_has_crossplanes_shape() {
    let dir = tree(
        "shape",
        &[
            (
                "nginx.conf",
                b"# top\nhttp { # open\n  if ($a = \"b\") { return 403; }\n  include inc/*.conf;\n  log_format x # between\n    'a\\'b' \"c\\\\d\";\n}\n",
            ),
            ("inc/a.conf", b"content_by_lua_block { ngx.say(1) }\nenv M\xf6;\n"),
        ],
    );
    let main = dir.join("nginx.conf");
    let base = dir.display().to_string();
    let got = payload(
        &main,
        LoadOptions::default(),
        JsonOptions {
            comments: true,
            args: ArgStyle::Nginx,
        },
    );
    let want = json!({
        "status": "ok",
        "errors": [],
        "config": [
            {
                "file": format!("{base}/nginx.conf"),
                "status": "ok",
                "errors": [],
                "parsed": [
                    {"directive": "#", "line": 1, "args": [], "comment": " top"},
                    {"directive": "http", "line": 2, "args": [], "block": [
                        {"directive": "#", "line": 2, "args": [], "comment": " open"},
                        {"directive": "if", "line": 3, "args": ["$a", "=", "b"], "block": [
                            {"directive": "return", "line": 3, "args": ["403"]}
                        ]},
                        {"directive": "include", "line": 4, "args": ["inc/*.conf"], "includes": [1]},
                        {"directive": "log_format", "line": 5, "args": ["x", "a'b", "c\\d"]},
                        {"directive": "#", "line": 5, "args": [], "comment": " between"}
                    ]}
                ]
            },
            {
                "file": format!("{base}/inc/a.conf"),
                "status": "ok",
                "errors": [],
                "parsed": [
                    {"directive": "content_by_lua_block", "line": 1, "args": [" ngx.say(1) "]},
                    {"directive": "env", "line": 2, "args": ["M\u{fffd}"]}
                ]
            }
        ]
    });
    assert_eq!(got, want);

    // crossplane's spelling keeps escapes other than the quote's own.
    let cp = payload(
        &main,
        LoadOptions::default(),
        JsonOptions {
            comments: false,
            args: ArgStyle::Crossplane,
        },
    );
    assert_eq!(
        cp["config"][0]["parsed"][0]["block"][2],
        json!({"directive": "log_format", "line": 5, "args": ["x", "a'b", "c\\\\d"]})
    );

    // Single-file mode: one config, no `includes` keys.
    let single = payload(
        &main,
        LoadOptions {
            single_file: true,
            lenient: false,
        },
        JsonOptions::default(),
    );
    assert_eq!(single["config"].as_array().unwrap().len(), 1);
    assert_eq!(
        single["config"][0]["parsed"][0]["block"][1],
        json!({"directive": "include", "line": 4, "args": ["inc/*.conf"]})
    );
}

#[test]
fn errors_carry_nginx_wording_with_file_and_line() {
    let dir = tree(
        "errors",
        &[
            (
                "nginx.conf",
                b"events {}\ninclude missing.conf;\ninclude bad.conf;\n",
            ),
            ("bad.conf", b"a {\n  b\n}\n"),
        ],
    );
    let got = payload(
        &dir.join("nginx.conf"),
        LoadOptions {
            lenient: true,
            single_file: false,
        },
        JsonOptions::default(),
    );
    let base = dir.display().to_string();
    assert_eq!(got["status"], "failed");
    assert_eq!(
        got["errors"],
        json!([
            {
                "file": format!("{base}/nginx.conf"),
                "error": format!("open() \"{base}/missing.conf\" failed (2: No such file or directory) in {base}/nginx.conf:2"),
                "line": 2
            },
            {
                "file": format!("{base}/bad.conf"),
                "error": format!("unexpected \"}}\" in {base}/bad.conf:3"),
                "line": 3
            }
        ])
    );
    assert_eq!(got["config"][1]["status"], "failed");
    assert_eq!(got["config"][0]["status"], "failed");
}
