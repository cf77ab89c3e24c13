//! The same files read by this crate and by the real `docker-compose`
//! (Debian's 1.29, which `config` runs without an engine): the values this
//! crate reads must be the ones Compose resolves.

use rollout_compose::{Flavour, LoadOptions, Project};
use std::collections::HashMap;
use std::path::Path;
use std::process::Command;

/// `docker-compose config` of `dir` with `env`, parsed.
fn compose_config(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> rollout_compose::yaml::Node {
    let mut cmd = Command::new("docker-compose");
    cmd.current_dir(dir).args(args).arg("config").env_clear();
    cmd.env("PATH", std::env::var("PATH").unwrap_or_default());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap_or_else(|e| {
        panic!("this test runs docker-compose (Debian's docker-compose 1.29), which failed to start: {e}\nhint: apt-get install docker-compose")
    });
    assert!(
        out.status.success(),
        "docker-compose config failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    rollout_compose::yaml::parse("docker-compose config".into(), &text).unwrap()
}

fn ours(dir: &Path, files: &[&str], env: &[(&str, &str)]) -> Project {
    Project::load(&LoadOptions {
        files: files.iter().map(Into::into).collect(),
        working_dir: Some(dir.to_path_buf()),
        environment: Some(
            env.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<HashMap<_, _>>(),
        ),
        flavour: Flavour::V1,
        ..Default::default()
    })
    .unwrap()
}

/// A scalar of `config`'s output, with the `$$` it writes for a literal `$`
/// turned back into `$`.
fn text(n: &rollout_compose::yaml::Node, path: &[&str]) -> Option<String> {
    let mut n = n;
    for key in path {
        n = n.get(key)?;
    }
    n.as_str().map(|s| s.replace("$$", "$"))
}

#[test]
fn interpolation_and_merge_agree_with_docker_compose_1_29() {
    let dir = std::env::temp_dir().join(format!("rollout-compose-v1-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("docker-compose.yml"),
        r#"version: "3.9"
x-base: &base
  image: "base:${TAG:-v1}"
  deploy:
    replicas: 2
    update_config: {parallelism: 2, delay: 10s}
services:
  a:
    <<: *base
  b:
    <<: *base
    image: "b:${EMPTY:-dflt}-${EMPTY-kept}-${UNSET-unset}-$$literal-${TAG}"
  c:
    image: "c:${FROM_DOTENV}-${OVERRIDDEN}"
"#,
    )
    .unwrap();
    std::fs::write(
        dir.join("docker-compose.override.yml"),
        "services:\n  a:\n    deploy:\n      replicas: 5\n      update_config: {delay: 3s}\n",
    )
    .unwrap();
    std::fs::write(
        dir.join(".env"),
        "FROM_DOTENV=dot\nOVERRIDDEN=dot\nTAG=fromdotenv\n",
    )
    .unwrap();
    let env = [("TAG", "v9"), ("EMPTY", ""), ("OVERRIDDEN", "process")];

    let theirs = compose_config(&dir, &[], &env);
    let p = ours(&dir, &[], &env);
    assert_eq!(p.files.len(), 2, "the override file is found");
    let services = theirs.get("services").unwrap();
    for name in ["a", "b", "c"] {
        let s = &p.services[name];
        assert_eq!(s.image, text(services, &[name, "image"]), "image of {name}");
        if let Some(r) = text(services, &[name, "deploy", "replicas"]) {
            assert_eq!(s.replicas.to_string(), r, "replicas of {name}");
        }
        if let Some(par) = text(services, &[name, "deploy", "update_config", "parallelism"]) {
            assert_eq!(
                s.update_config.parallelism.to_string(),
                par,
                "parallelism of {name}"
            );
        }
        if let Some(delay) = text(services, &[name, "deploy", "update_config", "delay"]) {
            assert_eq!(
                s.update_config.delay,
                rollout_core::parse_duration(&delay).unwrap(),
                "delay of {name}"
            );
        }
    }
    // The values themselves, so that agreeing on nothing cannot pass.
    assert_eq!(p.services["a"].image.as_deref(), Some("base:v9"));
    assert_eq!(p.services["a"].replicas, 5);
    assert_eq!(p.services["a"].update_config.parallelism, 2);
    assert_eq!(
        p.services["b"].image.as_deref(),
        Some("b:dflt--unset-$literal-v9")
    );
    assert_eq!(p.services["c"].image.as_deref(), Some("c:dot-process"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn seed_fixtures_agree_with_docker_compose_1_29() {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    for (dir, file) in [
        ("rolling", "compose.yaml"),
        ("blue-green", "docker-compose.yml"),
        ("canary", "compose.yaml"),
    ] {
        let dir = fixtures.join(dir);
        let theirs = compose_config(&dir, &["-f", file], &[]);
        let p = ours(&dir, &[file], &[]);
        let services = theirs.get("services").unwrap();
        let names: Vec<&str> = services
            .as_map()
            .unwrap()
            .iter()
            .map(|e| e.key.as_str())
            .collect();
        assert_eq!(
            names,
            p.services.keys().map(String::as_str).collect::<Vec<_>>()
        );
        for (name, s) in &p.services {
            assert_eq!(s.image, text(services, &[name, "image"]), "{name}");
            let replicas = text(services, &[name, "deploy", "replicas"]).unwrap_or("1".into());
            assert_eq!(s.replicas.to_string(), replicas, "{name}");
            for m in &s.volumes {
                // `config` writes a short volume as `source:target:mode`.
                let theirs_src = services
                    .get(name)
                    .and_then(|n| n.get("volumes"))
                    .and_then(|v| v.as_seq())
                    .and_then(|v| v.first())
                    .and_then(|v| match v.as_str() {
                        Some(short) => short.split(':').next(),
                        None => v.get("source").and_then(|s| s.as_str()),
                    });
                assert_eq!(m.source.as_deref(), theirs_src, "bind source of {name}");
            }
        }
    }
}
