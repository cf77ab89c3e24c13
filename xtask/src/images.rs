//! `cargo xtask images [--force]`: the test images, built `FROM scratch` with no registry.
//!
//! - `rollout-demo:<variant>`: the demo app (examples/demo-app) linked statically
//!   (`-C target-feature=+crt-static`), one image per variant that differ only in `ENV`, all
//!   with a `HEALTHCHECK` that runs the binary's own `healthcheck` subcommand (there is no curl
//!   in a scratch image). Every variant exits at once on SIGTERM unless it says otherwise, so
//!   that only a rollout tool's drain can save the requests in flight. Given
//!   `DEMO_DATABASE_URL` (a numeric host: a static glibc cannot resolve names in a scratch
//!   image), the app keeps users in PostgreSQL through tokio-postgres (pure Rust, so the
//!   binary stays static); `v2` writes and reads their email, `v1` does not.
//! - `rollout-nginx:1.22`: Debian's `/usr/sbin/nginx` with every library `ldd` lists (loader
//!   included), mime.types, users and groups, `nsswitch.conf` with `hosts: files dns`, the
//!   folders nginx writes to, and a static busybox with its applets in /bin for `docker exec`.
//! - `rollout-haproxy:2.6`: Debian's `/usr/sbin/haproxy` the same way (its libraries, users and
//!   groups, the folders it writes to, busybox), plus our static `rollout-haproxy-relay`
//!   (crates/rollout-haproxy-relay), through which the plugin reaches the stats socket by
//!   `docker exec` with an argv.
//!
//! Each build context is assembled under the target folder and sent to the legacy builder
//! (`DOCKER_BUILDKIT=0`): nothing is pulled. The inputs (binary, files, Dockerfile) are hashed
//! into the label `io.rollout.inputs`; an image whose label matches is left alone, so a second
//! run with nothing changed only asks cargo and the engine.

use crate::util::{root, show};
use anyhow::{bail, Context, Result};
use std::fmt::Write as _;
use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The label every image we build carries (and `docker image prune` filters on).
const TEST_LABEL: &str = "io.rollout.test=images";
/// The nginx image.
pub const NGINX_IMAGE: &str = "rollout-nginx:1.22";
/// The HAProxy image.
pub const HAPROXY_IMAGE: &str = "rollout-haproxy:2.6";
/// Where the relay lies in the HAProxy image (the plugin execs it there).
const RELAY_PATH: &str = "/usr/local/bin/rollout-haproxy-relay";
/// The repository of the demo app images.
pub const DEMO_REPO: &str = "rollout-demo";
/// The target the demo app is built for (the static flag must not reach proc macros).
const STATIC_TARGET: &str = "x86_64-unknown-linux-gnu";

/// A demo app image: its tag and the environment that makes it what it is.
struct Variant {
    tag: &'static str,
    env: &'static [(&'static str, &'static str)],
}

/// Every demo app image. Versions of faulty variants say what they are, so that a report of
/// the versions that answered names the fault.
const VARIANTS: &[Variant] = &[
    Variant {
        tag: "v1",
        env: &[("DEMO_VERSION", "v1")],
    },
    Variant {
        tag: "v2",
        // In database mode (DEMO_DATABASE_URL), v2 is the seed's revision that writes and
        // reads the users' email; without a database the switch does nothing.
        env: &[("DEMO_VERSION", "v2"), ("DEMO_USERS_EMAIL", "true")],
    },
    Variant {
        tag: "v3",
        env: &[("DEMO_VERSION", "v3")],
    },
    Variant {
        tag: "v2-drain",
        env: &[("DEMO_VERSION", "v2-drain"), ("DEMO_ON_SIGTERM", "drain")],
    },
    Variant {
        tag: "v2-unhealthy",
        env: &[
            ("DEMO_VERSION", "v2-unhealthy"),
            ("DEMO_HEALTH_FAIL", "true"),
        ],
    },
    Variant {
        tag: "v2-unhealthy-later",
        env: &[
            ("DEMO_VERSION", "v2-unhealthy-later"),
            ("DEMO_UNHEALTHY_AFTER_MS", "8000"),
        ],
    },
    Variant {
        tag: "v2-crash",
        env: &[
            ("DEMO_VERSION", "v2-crash"),
            ("DEMO_CRASH_ON_START", "true"),
        ],
    },
    Variant {
        tag: "v2-crash-later",
        env: &[
            ("DEMO_VERSION", "v2-crash-later"),
            ("DEMO_CRASH_AFTER_MS", "8000"),
        ],
    },
    Variant {
        tag: "v2-slow-start",
        env: &[
            ("DEMO_VERSION", "v2-slow-start"),
            ("DEMO_START_DELAY_MS", "30000"),
        ],
    },
    Variant {
        tag: "v2-errors",
        env: &[("DEMO_VERSION", "v2-errors"), ("DEMO_ERROR_RATE", "0.3")],
    },
    Variant {
        tag: "v2-slow",
        env: &[("DEMO_VERSION", "v2-slow"), ("DEMO_LATENCY_MS", "300")],
    },
];

/// Entry point of `cargo xtask images`.
pub fn run(args: &[String]) -> Result<()> {
    let mut force = false;
    for a in args {
        match a.as_str() {
            "--force" => force = true,
            other => bail!("unknown argument {other:?}\nusage: cargo xtask images [--force]"),
        }
    }
    build_all(force)
}

/// Builds every image that is missing or out of date.
pub fn build_all(force: bool) -> Result<()> {
    if !engine_answers() {
        bail!(
            "the docker engine does not answer (`docker version` failed)\n\
             hint: start dockerd, or point DOCKER_HOST at a running engine"
        );
    }
    let images = target_dir().join("images");
    let (binary, relay) = build_static()?;
    let demo_ctx = images.join("demo");
    fs::create_dir_all(&demo_ctx)?;
    let bytes = fs::read(&binary).with_context(|| format!("cannot read {}", binary.display()))?;
    check_static(&bytes).with_context(|| format!("{} is not static", binary.display()))?;
    write_if_changed(&demo_ctx.join("demo-app"), &bytes)?;
    fs::set_permissions(demo_ctx.join("demo-app"), fs::Permissions::from_mode(0o755))?;
    let binary_hash = fnv(&bytes);
    for v in VARIANTS {
        let tag = format!("{DEMO_REPO}:{}", v.tag);
        let dockerfile = demo_dockerfile(v);
        let inputs = format!("{:016x}", binary_hash ^ fnv(dockerfile.as_bytes()));
        let file = demo_ctx.join(format!("Dockerfile.{}", v.tag));
        fs::write(&file, dockerfile.replace("@INPUTS@", &inputs))?;
        build_image(&tag, &demo_ctx, &file, &inputs, force)?;
    }
    let nginx_ctx = images.join("nginx");
    let inputs = assemble_nginx(&nginx_ctx)?;
    build_image(
        NGINX_IMAGE,
        &nginx_ctx,
        &nginx_ctx.join("Dockerfile"),
        &inputs,
        force,
    )?;
    let haproxy_ctx = images.join("haproxy");
    let inputs = assemble_haproxy(&haproxy_ctx, &relay)?;
    build_image(
        HAPROXY_IMAGE,
        &haproxy_ctx,
        &haproxy_ctx.join("Dockerfile"),
        &inputs,
        force,
    )?;
    // Images whose tag moved to a newer build: ours only, by label.
    let _ = Command::new("docker")
        .args(["image", "prune", "--force", "--filter"])
        .arg(format!("label={TEST_LABEL}"))
        .output();
    Ok(())
}

fn engine_answers() -> bool {
    Command::new("docker")
        .args(["version", "--format", "{{.Server.Version}}"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// The target folder xtask's cargo uses (CARGO_TARGET_DIR or target/).
fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"))
}

/// Builds the demo app and the HAProxy relay statically, in their own target folder so that the
/// static flag does not rebuild the workspace, and returns the two binaries.
fn build_static() -> Result<(PathBuf, PathBuf)> {
    let dir = target_dir().join("demo-static");
    let mut cmd = crate::util::cargo();
    cmd.args(["build", "--release", "--package", "demo-app"])
        .args(["--package", "rollout-haproxy-relay", "--target"])
        .arg(STATIC_TARGET)
        .env("CARGO_TARGET_DIR", &dir)
        .env("RUSTFLAGS", "-C target-feature=+crt-static")
        .env_remove("CARGO_ENCODED_RUSTFLAGS");
    crate::util::run(&mut cmd)?;
    let release = dir.join(STATIC_TARGET).join("release");
    Ok((
        release.join("demo-app"),
        release.join("rollout-haproxy-relay"),
    ))
}

/// Fails unless `elf` is an ELF file without an interpreter (a static or static-pie binary).
fn check_static(elf: &[u8]) -> Result<()> {
    if elf.len() < 64 || &elf[..4] != b"\x7fELF" || elf[4] != 2 {
        bail!("not a 64-bit ELF file");
    }
    let u16_at = |o: usize| u16::from_le_bytes([elf[o], elf[o + 1]]) as usize;
    let phoff = u64::from_le_bytes(elf[32..40].try_into()?) as usize;
    let (phentsize, phnum) = (u16_at(54), u16_at(56));
    for i in 0..phnum {
        let at = phoff + i * phentsize;
        let kind = u32::from_le_bytes(elf.get(at..at + 4).context("truncated")?.try_into()?);
        const PT_INTERP: u32 = 3;
        if kind == PT_INTERP {
            bail!("it asks for a dynamic loader (PT_INTERP)");
        }
    }
    Ok(())
}

fn demo_dockerfile(v: &Variant) -> String {
    let mut env = String::from("ENV DEMO_PORT=8000 DEMO_ON_SIGTERM=exit");
    for (k, val) in v.env {
        let _ = write!(env, " {k}={val}");
    }
    format!(
        "# generated by cargo xtask images: the demo app, variant {tag}\n\
         FROM scratch\n\
         COPY demo-app /demo-app\n\
         {env}\n\
         LABEL {TEST_LABEL} io.rollout.image=demo io.rollout.variant={tag} io.rollout.inputs=@INPUTS@\n\
         EXPOSE 8000\n\
         HEALTHCHECK --interval=1s --timeout=2s --start-period=60s --retries=3 CMD [\"/demo-app\", \"healthcheck\"]\n\
         ENTRYPOINT [\"/demo-app\"]\n",
        tag = v.tag
    )
}

/// The label `io.rollout.inputs` of `tag`, if the image exists.
fn inputs_of(tag: &str) -> Option<String> {
    let out = Command::new("docker")
        .args([
            "image",
            "inspect",
            "--format",
            "{{ index .Config.Labels \"io.rollout.inputs\" }}",
            tag,
        ])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn build_image(tag: &str, ctx: &Path, dockerfile: &Path, inputs: &str, force: bool) -> Result<()> {
    if !force && inputs_of(tag).as_deref() == Some(inputs) {
        eprintln!("image {tag}: up to date ({inputs})");
        return Ok(());
    }
    let mut cmd = Command::new("docker");
    cmd.env("DOCKER_BUILDKIT", "0")
        .args(["build", "--quiet", "--tag", tag, "--file"])
        .arg(dockerfile)
        .arg(ctx);
    eprintln!("$ {}", show(&cmd));
    let out = cmd
        .output()
        .with_context(|| format!("cannot run {}", show(&cmd)))?;
    if !out.status.success() {
        bail!(
            "building {tag} failed: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    eprintln!("image {tag}: built ({inputs})");
    Ok(())
}

/// FNV-1a, 64 bits: enough to notice that an input changed (not a security boundary).
fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

fn write_if_changed(path: &Path, bytes: &[u8]) -> Result<()> {
    if fs::read(path).ok().as_deref() != Some(bytes) {
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir)?;
        }
        fs::write(path, bytes).with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}

/// The libraries `ldd` lists for `binary`, loader included.
fn ldd(binary: &str) -> Result<Vec<PathBuf>> {
    let out = Command::new("ldd")
        .arg(binary)
        .output()
        .with_context(|| format!("cannot run ldd {binary}"))?;
    if !out.status.success() {
        bail!(
            "ldd {binary} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let mut libs = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        // "libz.so.1 => /lib/x86_64-linux-gnu/libz.so.1 (0x...)" or "/lib64/ld-linux... (0x...)"
        let path = match line.split_once("=>") {
            Some((_, rest)) => rest.split_whitespace().next(),
            None => line.split_whitespace().next(),
        };
        if let Some(p) = path.filter(|p| p.starts_with('/')) {
            libs.push(PathBuf::from(p));
        }
    }
    if libs.is_empty() {
        bail!("ldd {binary} listed no libraries");
    }
    Ok(libs)
}

const NGINX_CONF: &str = "\
# The image's default config; tests and examples mount their own.
user www-data;
worker_processes auto;
error_log /var/log/nginx/error.log warn;
pid /run/nginx.pid;
events { worker_connections 1024; }
http {
    include /etc/nginx/mime.types;
    access_log off;
    server {
        listen 80;
        location / { return 200 \"rollout-nginx\\n\"; }
    }
}
";

const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\n\
www-data:x:33:33:www-data:/var/www:/bin/false\n\
nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n";
const GROUP: &str = "root:x:0:\nwww-data:x:33:\nnogroup:x:65534:\nnobody:x:65534:\n";
const NSSWITCH: &str = "passwd: files\ngroup: files\nhosts: files dns\n";

const NGINX_DOCKERFILE: &str = "\
# generated by cargo xtask images: Debian's nginx FROM scratch
FROM scratch
COPY rootfs/ /
ENV PATH=/usr/sbin:/bin
LABEL @TEST_LABEL@ io.rollout.image=nginx io.rollout.inputs=@INPUTS@
EXPOSE 80
STOPSIGNAL SIGQUIT
CMD [\"/usr/sbin/nginx\", \"-g\", \"daemon off;\"]
";

/// Assembles the nginx context (from scratch each time) and returns the hash of its inputs.
fn assemble_nginx(ctx: &Path) -> Result<String> {
    for (program, package) in [
        ("/usr/sbin/nginx", "nginx"),
        ("/bin/busybox", "busybox-static"),
    ] {
        if !Path::new(program).exists() {
            bail!("{program} is missing\nhint: apt-get install {package} (cargo xtask test does)");
        }
    }
    let rootfs = ctx.join("rootfs");
    if rootfs.exists() {
        fs::remove_dir_all(&rootfs)
            .with_context(|| format!("cannot clear {}", rootfs.display()))?;
    }
    let mut hash = fnv(NGINX_DOCKERFILE.as_bytes());
    let mut add = |rel: &str, bytes: &[u8], mode: u32| -> Result<()> {
        let path = rootfs.join(rel.trim_start_matches('/'));
        write_if_changed(&path, bytes)?;
        fs::set_permissions(&path, fs::Permissions::from_mode(mode))?;
        hash = hash.rotate_left(5) ^ fnv(rel.as_bytes()) ^ fnv(bytes) ^ u64::from(mode);
        Ok(())
    };
    let copy = |from: &str| fs::read(from).with_context(|| format!("cannot read {from}"));
    add("/usr/sbin/nginx", &copy("/usr/sbin/nginx")?, 0o755)?;
    for lib in ldd("/usr/sbin/nginx")? {
        let name = lib.to_string_lossy().into_owned();
        // fs::read follows symlinks: the copy is the library itself (cp -L).
        add(&name, &copy(&name)?, 0o755)?;
    }
    add(
        "/etc/nginx/mime.types",
        &copy("/etc/nginx/mime.types")?,
        0o644,
    )?;
    add("/etc/nginx/nginx.conf", NGINX_CONF.as_bytes(), 0o644)?;
    add("/etc/passwd", PASSWD.as_bytes(), 0o644)?;
    add("/etc/group", GROUP.as_bytes(), 0o644)?;
    add("/etc/nsswitch.conf", NSSWITCH.as_bytes(), 0o644)?;
    add("/bin/busybox", &copy("/bin/busybox")?, 0o755)?;
    for (dir, mode) in [
        ("var/lib/nginx", 0o755),
        ("var/log/nginx", 0o755),
        ("var/lock", 0o755),
        ("run", 0o755),
        ("tmp", 0o1777),
        ("root", 0o700),
    ] {
        let path = rootfs.join(dir);
        fs::create_dir_all(&path)?;
        fs::set_permissions(&path, fs::Permissions::from_mode(mode))?;
    }
    hash ^= link_applets(&rootfs)?;
    let inputs = format!("{hash:016x}");
    let dockerfile = NGINX_DOCKERFILE
        .replace("@TEST_LABEL@", TEST_LABEL)
        .replace("@INPUTS@", &inputs);
    fs::write(ctx.join("Dockerfile"), dockerfile)?;
    Ok(inputs)
}

/// Links every busybox applet in `rootfs`/bin (sh, cat, ps, kill, wget, ...), so that `docker
/// exec` can run them; returns the hash of the applet list.
fn link_applets(rootfs: &Path) -> Result<u64> {
    let out = Command::new("/bin/busybox")
        .arg("--list")
        .output()
        .context("cannot run /bin/busybox --list")?;
    let applets = String::from_utf8_lossy(&out.stdout);
    for applet in applets.lines().map(str::trim).filter(|a| !a.is_empty()) {
        if applet == "busybox" || applet.contains('/') {
            continue;
        }
        symlink("busybox", rootfs.join("bin").join(applet))?;
    }
    Ok(fnv(applets.as_bytes()))
}

/// The HAProxy image's default config: a stats socket with level admin and a backend of
/// slots, as the router needs (tests and examples mount their own).
const HAPROXY_CFG: &str = "\
# The image's default config; tests and examples mount their own.
global
    stats socket /run/haproxy/admin.sock mode 600 level admin
defaults
    mode http
    timeout connect 5s
    timeout client 60s
    timeout server 60s
frontend web
    bind :80
    default_backend app
backend app
    server-template app 1-10 0.0.0.0:0 disabled
";

const HAPROXY_PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\n\
haproxy:x:100:101::/var/lib/haproxy:/bin/false\n\
nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n";
const HAPROXY_GROUP: &str = "root:x:0:\nhaproxy:x:101:\nnogroup:x:65534:\nnobody:x:65534:\n";

/// `-db`: in the foreground, one process; SIGUSR1 is HAProxy's soft stop (finish the
/// connections, then exit). The entrypoint is the relay's `--start`, which starts the
/// replayer of the state at rest the plugin keeps, then becomes the command (HAProxy).
const HAPROXY_DOCKERFILE: &str = "\
# generated by cargo xtask images: Debian's haproxy FROM scratch, with our relay
FROM scratch
COPY rootfs/ /
ENV PATH=/usr/sbin:/usr/local/bin:/bin
LABEL @TEST_LABEL@ io.rollout.image=haproxy io.rollout.inputs=@INPUTS@
EXPOSE 80
STOPSIGNAL SIGUSR1
ENTRYPOINT [\"/usr/local/bin/rollout-haproxy-relay\", \"--start\"]
CMD [\"/usr/sbin/haproxy\", \"-db\", \"-f\", \"/etc/haproxy/haproxy.cfg\"]
";

/// Assembles the HAProxy context (from scratch each time) with the static relay `relay`, and
/// returns the hash of its inputs.
fn assemble_haproxy(ctx: &Path, relay: &Path) -> Result<String> {
    for (program, package) in [
        ("/usr/sbin/haproxy", "haproxy"),
        ("/bin/busybox", "busybox-static"),
    ] {
        if !Path::new(program).exists() {
            bail!("{program} is missing\nhint: apt-get install {package} (cargo xtask setup does)");
        }
    }
    let relay_bytes =
        fs::read(relay).with_context(|| format!("cannot read {}", relay.display()))?;
    check_static(&relay_bytes).with_context(|| format!("{} is not static", relay.display()))?;
    let rootfs = ctx.join("rootfs");
    if rootfs.exists() {
        fs::remove_dir_all(&rootfs)
            .with_context(|| format!("cannot clear {}", rootfs.display()))?;
    }
    let mut hash = fnv(HAPROXY_DOCKERFILE.as_bytes());
    let mut add = |rel: &str, bytes: &[u8], mode: u32| -> Result<()> {
        let path = rootfs.join(rel.trim_start_matches('/'));
        write_if_changed(&path, bytes)?;
        fs::set_permissions(&path, fs::Permissions::from_mode(mode))?;
        hash = hash.rotate_left(5) ^ fnv(rel.as_bytes()) ^ fnv(bytes) ^ u64::from(mode);
        Ok(())
    };
    let copy = |from: &str| fs::read(from).with_context(|| format!("cannot read {from}"));
    add("/usr/sbin/haproxy", &copy("/usr/sbin/haproxy")?, 0o755)?;
    for lib in ldd("/usr/sbin/haproxy")? {
        let name = lib.to_string_lossy().into_owned();
        add(&name, &copy(&name)?, 0o755)?;
    }
    for code in ["400", "403", "408", "500", "502", "503", "504"] {
        let file = format!("/etc/haproxy/errors/{code}.http");
        add(&file, &copy(&file)?, 0o644)?;
    }
    add(RELAY_PATH, &relay_bytes, 0o755)?;
    add("/etc/haproxy/haproxy.cfg", HAPROXY_CFG.as_bytes(), 0o644)?;
    add("/etc/passwd", HAPROXY_PASSWD.as_bytes(), 0o644)?;
    add("/etc/group", HAPROXY_GROUP.as_bytes(), 0o644)?;
    add("/etc/nsswitch.conf", NSSWITCH.as_bytes(), 0o644)?;
    add("/bin/busybox", &copy("/bin/busybox")?, 0o755)?;
    for (dir, mode) in [
        ("var/lib/haproxy", 0o755),
        ("run/haproxy", 0o755),
        ("tmp", 0o1777),
        ("root", 0o700),
    ] {
        let path = rootfs.join(dir);
        fs::create_dir_all(&path)?;
        fs::set_permissions(&path, fs::Permissions::from_mode(mode))?;
    }
    hash ^= link_applets(&rootfs)?;
    let inputs = format!("{hash:016x}");
    let dockerfile = HAPROXY_DOCKERFILE
        .replace("@TEST_LABEL@", TEST_LABEL)
        .replace("@INPUTS@", &inputs);
    fs::write(ctx.join("Dockerfile"), dockerfile)?;
    Ok(inputs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dockerfiles_name_variant_env_and_healthcheck() {
        let v = VARIANTS.iter().find(|v| v.tag == "v2-unhealthy").unwrap();
        let d = demo_dockerfile(v);
        assert!(d.contains("FROM scratch\n"));
        assert!(d.contains("DEMO_ON_SIGTERM=exit DEMO_VERSION=v2-unhealthy DEMO_HEALTH_FAIL=true"));
        assert!(d.contains("CMD [\"/demo-app\", \"healthcheck\"]"));
        assert!(NGINX_DOCKERFILE.contains("STOPSIGNAL SIGQUIT"));
    }

    #[test]
    fn rejects_a_dynamic_binary() {
        let err = check_static(&fs::read("/usr/sbin/nginx").unwrap()).unwrap_err();
        assert!(err.to_string().contains("PT_INTERP"), "{err}");
        assert!(check_static(&fs::read("/bin/busybox").unwrap()).is_ok());
        assert!(check_static(b"#!/bin/sh\n").is_err());
    }

    #[test]
    fn hash_changes_with_the_input() {
        assert_ne!(fnv(b"a"), fnv(b"b"));
        assert_eq!(fnv(b""), 0xcbf2_9ce4_8422_2325);
    }
}
