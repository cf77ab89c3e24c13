//! Any bytes: parsing never panics; what parses prints back byte for byte,
//! converts to JSON, and survives an upstream edit that parses again.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rollout_core::router::{Route, RouteChange, Target};
use rollout_nginx::upstream::Server;
use rollout_nginx::{ConfFile, Config, JsonOptions, LoadOptions, Source};
use std::ffi::OsString;
use std::io;
use std::path::Path;

/// One in-memory file; includes name files that are not there.
struct One<'a>(&'a [u8]);

impl Source for One<'_> {
    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        if path == Path::new("/fuzz/nginx.conf") {
            Ok(self.0.to_vec())
        } else {
            Err(io::ErrorKind::NotFound.into())
        }
    }

    fn list_dir(&self, _dir: &Path) -> io::Result<Vec<OsString>> {
        Ok(vec!["nginx.conf".into(), "a.conf".into()])
    }
}

fuzz_target!(|data: &[u8]| {
    let (file, err) = ConfFile::parse_lenient("/fuzz/nginx.conf", data.to_vec());
    for (_, d) in file.walk() {
        let _ = d.name().value();
        let _ = d.args().map(|a| a.value_lossy()).count();
        let _ = d.span();
    }
    let cfg = Config::load_from(
        &One(data),
        Path::new("/fuzz/nginx.conf"),
        LoadOptions {
            lenient: true,
            single_file: false,
        },
    )
    .expect("the main file reads");
    let json = cfg.to_json(&JsonOptions {
        comments: true,
        ..Default::default()
    });
    assert!(json.starts_with('{') && json.ends_with('}'));
    assert_eq!(file.print(), data, "an unedited tree prints its input");
    if err.is_some() {
        return;
    }
    for name in file.upstream_names().into_iter().take(2) {
        let Ok(up) = file.upstream(&name) else {
            continue;
        };
        let change = RouteChange {
            set: vec![Route {
                target: Target::Service {
                    name: "fuzz-host".into(),
                },
                weight: 2,
            }],
            remove: up
                .servers
                .iter()
                .filter_map(|s| s.server.address.host())
                .take(1)
                .map(|h| Target::Service { name: h.into() })
                .collect(),
        };
        let port = up
            .servers
            .first()
            .and_then(|s| s.server.address.port())
            .unwrap_or(80);
        // Refusals are fine; an edit that succeeds must parse (checked inside).
        if let Ok(edited) = file.apply_route_change(&name, &change, port) {
            let again = edited
                .upstream(&name)
                .expect("the edited upstream is there");
            assert!(again
                .servers
                .iter()
                .any(|s| s.server.address.host() == Some("fuzz-host")));
        }
        let _ = file.set_servers(&name, &[Server::parse("fuzz-rest:8000").unwrap()]);
    }
});
