//! Loading whole projects from fixtures and temporary directories.

use rollout_compose::{
    built_image, ComposeError, Flavour, HealthTest, LoadOptions, MountKind, Overrides, Project,
    ProjectNames, StepOverride,
};
use rollout_core::strategy::{CanaryStep, Hold, TrafficLayout};
use rollout_core::{FailureAction, Order, PullPolicy, ServiceRef, StrategyKind};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn opts(dir: &Path) -> LoadOptions {
    LoadOptions {
        working_dir: Some(dir.to_path_buf()),
        environment: Some(HashMap::new()),
        ..Default::default()
    }
}

/// A directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(files: &[(&str, &str)]) -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "rollout-compose-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        for (name, text) in files {
            let path = dir.join(name);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn load_err(files: &[(&str, &str)]) -> String {
    let dir = TempDir::new(files);
    Project::load(&opts(&dir.0)).unwrap_err().to_string()
}

#[test]
fn seed_rolling_layout() {
    let p = Project::load(&opts(&fixture("rolling"))).unwrap();
    assert_eq!(p.name, "rolling");
    let s = p.settings("app").unwrap();
    assert_eq!(s.service, ServiceRef::new("rolling", "app"));
    assert_eq!(s.image.as_deref(), Some("rollout-demo:v1"));
    assert_eq!(s.replicas, 6);
    assert_eq!(s.update.parallelism, 2);
    assert_eq!(s.update.delay, Duration::from_secs(10));
    assert_eq!(s.update.failure_action, FailureAction::Rollback);
    assert_eq!(s.update.monitor, Duration::from_secs(30));
    assert_eq!(s.update.max_failure_ratio, 0.3);
    assert_eq!(s.update.order, Order::StopFirst, "swarm's default");
    assert_eq!(s.rollback, rollout_core::UpdateConfig::default());
    assert_eq!(s.timeouts.stop_grace, Duration::from_secs(20));
    assert_eq!(s.timeouts.start, Duration::from_secs(60));
    assert_eq!(s.strategy, StrategyKind::Rolling);
    assert_eq!(s.layout, TrafficLayout::Single);
    assert_eq!(s.proxy.as_deref(), Some("nginx"));
    assert!(s.side_by_side_conflicts.is_empty());
    let hc = p.service("app").unwrap().healthcheck.clone().unwrap();
    assert_eq!(
        hc.test,
        Some(HealthTest::Cmd(vec!["/app".into(), "healthcheck".into()]))
    );
    assert_eq!(hc.interval, Some(Duration::from_secs(1)));
    assert_eq!(hc.retries, Some(3));
    let nginx = p.service("nginx").unwrap();
    assert_eq!(nginx.volumes[0].kind, MountKind::Bind);
    assert_eq!(
        nginx.volumes[0].source.as_deref(),
        Some(fixture("rolling").join("nginx.conf").to_str().unwrap())
    );
    assert!(nginx.volumes[0].read_only);
    assert_eq!(nginx.side_by_side_conflicts().len(), 1);
    assert!(nginx.depends_on.contains_key("app"));
    insta::assert_yaml_snapshot!("rolling_settings", s);
}

#[test]
fn seed_blue_green_layout_with_v1_file_name() {
    let mut o = opts(&fixture("blue-green"));
    o.flavour = Flavour::V1;
    let p = Project::load(&o).unwrap();
    assert_eq!(p.name, "blue-green", "v1 keeps '-' in project names");
    let green = p.settings("green").unwrap();
    assert_eq!(green.strategy, StrategyKind::BlueGreen);
    assert_eq!(
        green.layout,
        TrafficLayout::Colours {
            other: ServiceRef::new("blue-green", "blue"),
            stop_other: false
        }
    );
    assert_eq!(green.replicas, 3);
    assert_eq!(green.proxy.as_deref(), Some("nginx"));
    let blue = p.settings("blue").unwrap();
    assert!(
        matches!(blue.layout, TrafficLayout::Colours { ref other, .. } if other.service == "green")
    );
    assert_eq!(
        p.flavour.container_name(&p.name, "blue", 1),
        "blue-green_blue_1"
    );
    // v2 finds the same file under its older name.
    let p2 = Project::load(&opts(&fixture("blue-green"))).unwrap();
    assert_eq!(p2.files, p.files);
}

#[test]
fn seed_canary_layout_with_anchors_and_extension() {
    let p = Project::load(&opts(&fixture("canary"))).unwrap();
    let s = p.settings("green").unwrap();
    assert_eq!(s.strategy, StrategyKind::Canary);
    assert_eq!(s.replicas, 3, "from the anchor");
    let steps: Vec<(u32, Hold)> = s.canary.steps.iter().map(|c| (c.percent, c.hold)).collect();
    let min = Hold::For(Duration::from_secs(60));
    assert_eq!(
        steps,
        [
            (10, min),
            (25, min),
            (50, Hold::UntilPromoted),
            (75, min),
            (100, min)
        ]
    );
    assert_eq!(s.upstream.as_deref(), Some("backend"));
    assert_eq!(s.port, Some(8000));
    assert_eq!(
        s.timeouts.drain,
        Duration::from_secs(45),
        "service level wins"
    );
    assert_eq!(s.health_probe.as_ref().unwrap().path, "/healthz");
    let blue = p.settings("blue").unwrap();
    assert_eq!(blue.timeouts.drain, Duration::from_secs(30));
    assert!(blue.health_probe.is_none());
    assert_eq!(
        p.service("blue")
            .unwrap()
            .healthcheck
            .as_ref()
            .unwrap()
            .test,
        Some(HealthTest::Shell("/app healthcheck".into()))
    );
    let plan = s.plan(rollout_core::Revision::new("abc", "myapp:v2"));
    assert_eq!(plan.canary, s.canary);
    assert_eq!(plan.replicas, 3);
    insta::assert_yaml_snapshot!("canary_settings", s);
}

#[test]
fn two_files_merge_with_interpolation() {
    let mut o = opts(&fixture("merge"));
    o.files = vec!["compose.yaml".into(), "compose.prod.yaml".into()];
    o.environment = Some(env(&[("TAG", "v7")]));
    let p = Project::load(&o).unwrap();
    assert_eq!(p.name, "shop", "the name field (v2)");
    let s = p.settings("app").unwrap();
    assert_eq!(s.image.as_deref(), Some("shop:v7"));
    assert_eq!(s.replicas, 4);
    assert_eq!(s.update.parallelism, 1, "kept from the first file");
    assert_eq!(s.update.order, Order::StartFirst, "from the second file");
    assert_eq!(s.timeouts.start, Duration::from_secs(120));
    assert!(!p.is_active("db"));
    assert_eq!(p.active_services(), ["app"]);
    assert_eq!(p.services["app"].ports[0].published, None);

    // Without TAG, the required variable stops the load at its place.
    o.environment = Some(HashMap::new());
    let e = Project::load(&o).unwrap_err().to_string();
    assert_eq!(
        e,
        "compose.prod.yaml:3:12: services.app.image: required variable TAG is missing a value: set TAG to the release"
    );
}

#[test]
fn compose_file_variable_profiles_and_project_name_from_env() {
    let mut o = opts(&fixture("merge"));
    o.environment = Some(env(&[
        ("COMPOSE_FILE", "compose.yaml:compose.prod.yaml"),
        ("TAG", "v8"),
        ("COMPOSE_PROJECT_NAME", "store"),
        ("COMPOSE_PROFILES", "db"),
    ]));
    let p = Project::load(&o).unwrap();
    assert_eq!(p.files.len(), 2);
    assert_eq!(p.name, "store");
    assert!(p.is_active("db"));
    assert_eq!(p.settings("app").unwrap().image.as_deref(), Some("shop:v8"));

    o.environment = Some(env(&[
        ("COMPOSE_FILE", "compose.yaml;compose.prod.yaml"),
        ("COMPOSE_PATH_SEPARATOR", ";"),
        ("TAG", "v9"),
    ]));
    o.project_name = Some("cli".into());
    o.profiles = vec!["*".into()];
    let p = Project::load(&o).unwrap();
    assert_eq!(p.name, "cli");
    assert!(p.is_active("db"));
    assert_eq!(p.settings("app").unwrap().image.as_deref(), Some("shop:v9"));
}

#[test]
fn dot_env_in_the_project_dir_and_env_file_flag() {
    let dir = TempDir::new(&[
        (
            "My_Project/compose.yaml",
            "services:\n  app:\n    image: app:${TAG}\n    deploy:\n      replicas: ${N:-2}\n    stop_grace_period: $$GRACE\n",
        ),
        ("My_Project/.env", "TAG=from-dotenv\nN=5\n"),
        ("My_Project/prod.env", "TAG=from-flag\n"),
    ]);
    let base = dir.0.join("My_Project");
    // Parsing `$$GRACE` gives the literal "$GRACE", which is no duration.
    let e = Project::load(&opts(&base)).unwrap_err().to_string();
    assert!(
        e.starts_with("compose.yaml:6:24: services.app.stop_grace_period: duration \"$GRACE\""),
        "{e}"
    );

    std::fs::write(
        base.join("compose.yaml"),
        "services:\n  app:\n    image: app:${TAG}\n    deploy:\n      replicas: ${N:-2}\n",
    )
    .unwrap();
    let p = Project::load(&opts(&base)).unwrap();
    assert_eq!(p.name, "my_project", "lowercased, '_' kept");
    assert_eq!(p.services["app"].image.as_deref(), Some("app:from-dotenv"));
    assert_eq!(p.services["app"].replicas, 5);

    let mut o = opts(&base);
    o.env_files = vec!["prod.env".into()];
    let p = Project::load(&o).unwrap();
    assert_eq!(p.services["app"].image.as_deref(), Some("app:from-flag"));
    assert_eq!(p.services["app"].replicas, 2, "the env file replaces .env");

    let mut o = opts(&base);
    o.environment = Some(env(&[("TAG", "from-process")]));
    let p = Project::load(&o).unwrap();
    assert_eq!(p.services["app"].image.as_deref(), Some("app:from-process"));

    // From a subdirectory, the file is found in a parent.
    std::fs::create_dir_all(base.join("sub")).unwrap();
    let p = Project::load(&opts(&base.join("sub"))).unwrap();
    assert_eq!(p.directory, base);
    assert!(p.files[0].ends_with("compose.yaml"));
}

#[test]
fn each_flavour_prefers_its_own_default_name() {
    let dir = TempDir::new(&[
        ("compose.yaml", "services:\n  app:\n    image: new\n"),
        ("docker-compose.yml", "services:\n  app:\n    image: old\n"),
    ]);
    let p = Project::load(&opts(&dir.0)).unwrap();
    assert_eq!(p.services["app"].image.as_deref(), Some("new"));
    assert!(
        p.warnings[0].starts_with("found multiple config files"),
        "{:?}",
        p.warnings
    );
    let mut o = opts(&dir.0);
    o.flavour = Flavour::V1;
    let p = Project::load(&o).unwrap();
    assert_eq!(p.services["app"].image.as_deref(), Some("old"));
}

#[test]
fn compose_file_from_dot_env() {
    let dir = TempDir::new(&[
        (
            ".env",
            "COMPOSE_FILE=base.yaml:extra.yaml\nCOMPOSE_PROJECT_NAME=fromdotenv\n",
        ),
        ("base.yaml", "services:\n  app:\n    image: a\n"),
        (
            "extra.yaml",
            "services:\n  app:\n    deploy: {replicas: 4}\n",
        ),
    ]);
    let p = Project::load(&opts(&dir.0)).unwrap();
    assert_eq!(p.name, "fromdotenv");
    assert_eq!(p.services["app"].replicas, 4);
}

#[test]
fn override_file_is_merged_by_default() {
    let dir = TempDir::new(&[
        ("compose.yaml", "services:\n  app:\n    image: a:1\n"),
        (
            "compose.override.yaml",
            "services:\n  app:\n    image: a:2\n",
        ),
    ]);
    let p = Project::load(&opts(&dir.0)).unwrap();
    assert_eq!(p.files.len(), 2);
    assert_eq!(p.services["app"].image.as_deref(), Some("a:2"));
}

#[test]
fn project_names_follow_each_flavour() {
    use rollout_compose::normalize_project_name as n;
    assert_eq!(n("My App.v2", Flavour::V2), "myappv2");
    assert_eq!(n("__x-Y", Flavour::V2), "x-y");
    assert_eq!(n("__x-Y", Flavour::V1), "__x-y");
    let dir = TempDir::new(&[("compose.yaml", "services:\n  app:\n    image: a\n")]);
    let mut o = opts(&dir.0);
    o.project_name = Some("Bad Name".into());
    let e = Project::load(&o).unwrap_err().to_string();
    assert!(
        e.starts_with("-p \"Bad Name\" is not a valid project name"),
        "{e}"
    );
    assert!(e.contains("\nhint: "), "{e}");
    o.flavour = Flavour::V1;
    assert_eq!(Project::load(&o).unwrap().name, "badname");
    o.project_name = None;
    o.environment = Some(env(&[("COMPOSE_PROJECT_NAME", "Shop_Front-2")]));
    assert_eq!(Project::load(&o).unwrap().name, "shop_front-2");
}

#[test]
fn each_tool_names_the_same_project_by_its_own_rules() {
    // The name field is v2's alone; a leading underscore of the directory
    // is dropped by v2 only; an invalid -p is normalised by v1 and refused
    // by v2; usually both agree.
    let dir = TempDir::new(&[("_Shop/compose.yaml", "services:\n  app:\n    image: a\n")]);
    let names = ProjectNames::load(&opts(&dir.0.join("_Shop")));
    assert_eq!(names.v1.as_deref(), Some("_shop"));
    assert_eq!(names.v2.as_deref(), Some("shop"));
    assert_eq!(names.distinct(), ["_shop", "shop"]);
    assert_eq!(names.of(Flavour::V2), Some("shop"));
    let dir = TempDir::new(&[(
        "compose.yaml",
        "name: front\nservices:\n  app:\n    image: a\n",
    )]);
    let mut o = opts(&dir.0);
    let names = ProjectNames::load(&o);
    assert_eq!(names.v2.as_deref(), Some("front"));
    assert_ne!(names.v1.as_deref(), Some("front"));
    o.project_name = Some("Bad Name".into());
    let names = ProjectNames::load(&o);
    assert_eq!(
        (names.v1.as_deref(), names.v2.as_deref()),
        (Some("badname"), None)
    );
    assert_eq!(names.distinct(), ["badname"]);
    o.project_name = Some("shop".into());
    let names = ProjectNames::load(&o);
    assert_eq!(names.distinct(), ["shop"]);
    assert_eq!(Flavour::V1.command(), "docker-compose");
    assert_eq!(Flavour::V2.command(), "docker compose");
}

#[test]
fn overrides_win_and_are_checked() {
    let p = Project::load(&opts(&fixture("rolling"))).unwrap();
    let mut s = p.settings("app").unwrap();
    s.apply(&Overrides {
        strategy: Some(StrategyKind::Canary),
        parallelism: Some(3),
        order: Some(Order::StartFirst),
        delay: Some(Duration::from_secs(1)),
        canary_steps: Some(vec![
            StepOverride {
                percent: 50,
                hold: Some(Hold::For(Duration::from_secs(5))),
            },
            StepOverride {
                percent: 100,
                hold: None,
            },
        ]),
        canary_hold: Some(Hold::UntilPromoted),
        ..Default::default()
    })
    .unwrap();
    assert_eq!(s.strategy, StrategyKind::Canary);
    assert_eq!(s.update.parallelism, 3);
    assert_eq!(s.update.order, Order::StartFirst);
    assert_eq!(s.update.max_failure_ratio, 0.3, "untouched");
    assert_eq!(
        s.canary.steps,
        [
            CanaryStep {
                percent: 50,
                hold: Hold::For(Duration::from_secs(5))
            },
            CanaryStep {
                percent: 100,
                hold: Hold::UntilPromoted
            },
        ]
    );
    s.apply(&Overrides {
        canary_hold: Some(Hold::For(Duration::from_secs(2))),
        ..Default::default()
    })
    .unwrap();
    assert!(s
        .canary
        .steps
        .iter()
        .all(|c| c.hold == Hold::For(Duration::from_secs(2))));
    let e = s
        .apply(&Overrides {
            max_failure_ratio: Some(1.5),
            ..Default::default()
        })
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        "--max-failure-ratio: expected a ratio from 0 to 1, found 1.5"
    );
    let e = s
        .apply(&Overrides {
            canary_steps: Some(vec![StepOverride {
                percent: 50,
                hold: None,
            }]),
            ..Default::default()
        })
        .unwrap_err()
        .to_string();
    assert_eq!(e, "--canary-steps: the last step must be 100, found 50");

    let p = Project::load(&opts(&fixture("blue-green"))).unwrap();
    let mut g = p.settings("green").unwrap();
    g.apply(&Overrides {
        stop_old: Some(true),
        ..Default::default()
    })
    .unwrap();
    assert!(matches!(
        g.layout,
        TrafficLayout::Colours {
            stop_other: true,
            ..
        }
    ));
}

#[test]
fn unknown_service_lists_the_known_ones() {
    let p = Project::load(&opts(&fixture("blue-green"))).unwrap();
    let e = p.settings("purple").unwrap_err();
    assert!(matches!(e, ComposeError::UnknownService { .. }));
    assert_eq!(
        e.to_string(),
        "no service \"purple\" in project blue-green; its services are: blue, green, nginx"
    );
}

#[test]
fn no_compose_file() {
    let dir = TempDir::new(&[]);
    let e = Project::load(&opts(&dir.0)).unwrap_err().to_string();
    assert!(e.starts_with("no compose file found in "), "{e}");
    assert!(e.contains("\nhint: pass -f FILE"), "{e}");
    let mut o = opts(&dir.0);
    o.files = vec!["missing.yaml".into()];
    let e = Project::load(&o).unwrap_err().to_string();
    assert!(
        e.starts_with("cannot read ") && e.contains("missing.yaml"),
        "{e}"
    );
}

/// Every bad field names file, line, column and the field's path.
#[test]
fn field_errors_name_file_line_column_and_path() {
    let cases: &[(&str, &str)] = &[
        (
            "services:\n  app:\n    image: a\n    deploy:\n      update_config:\n        parallelism: two\n",
            "compose.yaml:6:22: services.app.deploy.update_config.parallelism: expected a non-negative integer, found \"two\"",
        ),
        (
            "services:\n  app:\n    deploy:\n      update_config:\n        delay: 10\n",
            "compose.yaml:5:16: services.app.deploy.update_config.delay: duration \"10\" has a number without a unit\nhint: write it with a unit, such as 10s, 1m30s or 500ms",
        ),
        (
            "services:\n  app:\n    deploy:\n      update_config:\n        failure_action: explode\n",
            "compose.yaml:5:25: services.app.deploy.update_config.failure_action: expected pause, continue or rollback, found \"explode\"",
        ),
        (
            "services:\n  app:\n    deploy:\n      rollback_config:\n        failure_action: rollback\n",
            "compose.yaml:5:25: services.app.deploy.rollback_config.failure_action: expected pause or continue (a rollback is not rolled back), found \"rollback\"",
        ),
        (
            "services:\n  app:\n    deploy:\n      update_config:\n        max_failure_ratio: 2\n",
            "compose.yaml:5:28: services.app.deploy.update_config.max_failure_ratio: expected a ratio from 0 to 1, found \"2\"",
        ),
        (
            "services:\n  app:\n    deploy:\n      update_config:\n        order: first\n",
            "compose.yaml:5:16: services.app.deploy.update_config.order: expected stop-first or start-first, found \"first\"",
        ),
        (
            "services:\n  app:\n    deploy:\n      update_config:\n        paralelism: 2\n",
            "compose.yaml:5:9: services.app.deploy.update_config.paralelism: unknown field; known fields are parallelism, delay, failure_action, monitor, max_failure_ratio, order",
        ),
        (
            "services:\n  app:\n    scale: 2\n    deploy: {replicas: 3}\n",
            "compose.yaml:3:12: services.app.scale: 2 conflicts with deploy.replicas 3\nhint: set only one of them",
        ),
        (
            "services:\n  app:\n    healthcheck:\n      test: [CMD]\n",
            "compose.yaml:4:13: services.app.healthcheck.test: expected [\"CMD\", args...], [\"CMD-SHELL\", command] or [\"NONE\"], found a sequence",
        ),
        (
            "services:\n  app:\n    healthcheck:\n      test: x\n      disable: true\n",
            "compose.yaml:5:16: services.app.healthcheck.disable: test and disable cannot both be set",
        ),
        (
            "services:\n  app:\n    ports:\n      - \"80:80:80:80\"\n",
            "compose.yaml:4:9: services.app.ports[0]: expected a port such as 8000, 80:8000 or 127.0.0.1:80:8000, found \"80:80:80:80\"",
        ),
        (
            "services:\n  app:\n    x-rollout:\n      strategy: big-bang\n",
            "compose.yaml:4:17: services.app.x-rollout.strategy: unknown strategy \"big-bang\"; strategies are rolling, blue-green and canary",
        ),
        (
            "services:\n  app:\n    x-rollout:\n      stratgy: canary\n",
            "compose.yaml:4:7: services.app.x-rollout.stratgy: unknown field; known fields are strategy, proxy, proxy_config, upstream, port, colours, canary, start_timeout, drain_timeout, health, verify, stop_old, keep_old_for, hooks, analysis",
        ),
        (
            "x-rollout:\n  canary:\n    steps: [10, 5, 100]\n",
            "compose.yaml:3:17: x-rollout.canary.steps[1]: steps must increase, found 5 after 10",
        ),
        (
            "x-rollout:\n  canary:\n    steps: [10, 50]\n",
            "compose.yaml:3:12: x-rollout.canary.steps: the last step must be 100, found 50",
        ),
        (
            "x-rollout:\n  canary:\n    steps: [{percent: 50, hold: forever}, 100]\n",
            "compose.yaml:3:33: x-rollout.canary.steps[0].hold: expected a duration such as 30s, or until-promoted, found \"forever\"",
        ),
        (
            "x-rollout:\n  canary:\n    steps: [0, 100]\n",
            "compose.yaml:3:13: x-rollout.canary.steps[0]: expected a percent from 1 to 100, found \"0\"",
        ),
        (
            "x-rollout:\n  proxy: web\nservices:\n  app: {image: a}\n",
            "compose.yaml:2:10: x-rollout.proxy: no service \"web\" in the project; its services are: app",
        ),
        (
            "x-rollout:\n  start_timeout: 0s\n",
            "compose.yaml:2:18: x-rollout.start_timeout: must be longer than 0s",
        ),
        (
            "x-rollout:\n  verify: health\n",
            "compose.yaml:2:11: x-rollout.verify: expected a path starting with /, found \"health\"",
        ),
        (
            "services:\n  app:\n    image: ${TAG:?}\n",
            "compose.yaml:3:12: services.app.image: required variable TAG is missing a value",
        ),
        (
            "services:\n  app:\n    image: a$b c$\n",
            "compose.yaml:3:12: services.app.image: invalid interpolation format in \"a$b c$\": a \"$\" must start a variable\nhint: write \"$$\" for a literal \"$\"",
        ),
        (
            "services:\n  app:\n    image: [a\n",
            "compose.yaml:4:1: while parsing a flow sequence, expected ',' or ']'",
        ),
        ("- a\n- b\n", "compose.yaml:1:1: (top level): expected a mapping with services, found a sequence"),
        (
            "services:\n  app: x\n",
            "compose.yaml:2:8: services.app: expected a mapping, found \"x\"",
        ),
    ];
    for (text, want) in cases {
        let got = load_err(&[("compose.yaml", text)]);
        let got = got.split(" at byte").next().unwrap();
        assert_eq!(got, *want, "for:\n{text}");
    }
}

#[test]
fn errors_in_a_later_file_name_that_file() {
    let dir = TempDir::new(&[
        ("a.yaml", "services:\n  app:\n    image: a\n"),
        ("b.yaml", "services:\n  app:\n    stop_grace_period: soon\n"),
    ]);
    let mut o = opts(&dir.0);
    o.files = vec!["a.yaml".into(), "b.yaml".into()];
    let e = Project::load(&o).unwrap_err().to_string();
    assert!(
        e.starts_with("b.yaml:3:24: services.app.stop_grace_period: "),
        "{e}"
    );
}

#[test]
fn host_ports_and_container_name_prevent_side_by_side() {
    let dir = TempDir::new(&[(
        "compose.yaml",
        "services:\n  app:\n    image: a\n    container_name: the-app\n    ports:\n      - \"127.0.0.1:8080:80/tcp\"\n      - target: 81\n        published: \"8081\"\n      - \"[::1]::82\"\n      - 83\n",
    )]);
    let p = Project::load(&opts(&dir.0)).unwrap();
    let svc = &p.services["app"];
    assert_eq!(svc.ports[0].host_ip.as_deref(), Some("127.0.0.1"));
    assert_eq!(svc.ports[0].published.as_deref(), Some("8080"));
    assert_eq!(svc.ports[2].host_ip.as_deref(), Some("::1"));
    assert!(!svc.ports[2].fixed_host_port());
    assert!(!svc.ports[3].fixed_host_port());
    let why = p.settings("app").unwrap().side_by_side_conflicts;
    assert_eq!(why.len(), 3, "{why:?}");
    assert!(why[0].contains("container_name \"the-app\""));
    assert!(why[1].contains("host port 8080"));
}

#[test]
fn a_service_that_cannot_run_side_by_side_falls_back_to_stop_first_or_is_refused() {
    let compose = |replicas: u32| {
        format!(
            "services:\n  app:\n    image: a\n    ports: [\"8080:80\"]\n    deploy:\n      replicas: {replicas}\n      update_config: {{order: start-first}}\n      rollback_config: {{order: start-first}}\n  nginx:\n    image: nginx\n"
        )
    };
    let dir = TempDir::new(&[("compose.yaml", &compose(3))]);
    let p = Project::load(&opts(&dir.0)).unwrap();
    let name = &p.name;
    let mut s = p.settings("app").unwrap();
    let warnings = s.resolve().unwrap();
    assert_eq!(
        warnings,
        [format!(
            "{name}/app cannot run old and new instances side by side (host port 8080 is published (ports at compose.yaml:4)): falling back to stop-first"
        )]
    );
    assert_eq!(s.update.order, Order::StopFirst);
    assert_eq!(s.rollback.order, Order::StopFirst);

    // A strategy that needs both sets at once is refused.
    let mut s = p.settings("app").unwrap();
    s.apply(&Overrides {
        strategy: Some(StrategyKind::Canary),
        ..Default::default()
    })
    .unwrap();
    let e = s.resolve().unwrap_err();
    assert!(matches!(e, ComposeError::NotSideBySide { .. }), "{e:?}");
    assert_eq!(
        e.to_string(),
        format!("{name}/app cannot run old and new instances side by side (host port 8080 is published (ports at compose.yaml:4)), which canary needs\nhint: remove the host port or container_name, or use --strategy rolling")
    );

    // Stop-first over every replica at once would leave none serving.
    let mut s = p.settings("app").unwrap();
    s.apply(&Overrides {
        parallelism: Some(0),
        ..Default::default()
    })
    .unwrap();
    let e = s.resolve().unwrap_err();
    assert_eq!(
        e.to_string(),
        format!("{name}/app cannot run old and new instances side by side (host port 8080 is published (ports at compose.yaml:4)), and stop-first with 3 replicas would leave none serving\nhint: remove the host port or container_name, or run more replicas than --parallelism")
    );
    let one = TempDir::new(&[("compose.yaml", &compose(1))]);
    let p = Project::load(&opts(&one.0)).unwrap();
    let e = p.settings("app").unwrap().resolve().unwrap_err();
    assert!(
        e.to_string().contains("stop-first with 1 replica would"),
        "{e}"
    );
}

#[test]
fn a_rollout_needs_a_proxy_and_an_image() {
    let dir = TempDir::new(&[(
        "compose.yaml",
        "services:\n  app:\n    environment: {A: b}\n  api:\n    image: api\n  nginx:\n    image: nginx\n",
    )]);
    let p = Project::load(&opts(&dir.0)).unwrap();
    let e = p.settings("app").unwrap().resolve().unwrap_err();
    assert_eq!(
        e.to_string(),
        "service app has no image: a rollout needs one to start new instances from\nhint: give it an image: tag, or a build: section, in the Compose file"
    );
    let mut s = p.settings("api").unwrap();
    assert_eq!(s.resolve().unwrap(), Vec::<String>::new());
    assert!(s.routed());
}

#[test]
fn a_service_with_no_proxy_in_front_is_rolled_without_routing() {
    let dir = TempDir::new(&[(
        "compose.yaml",
        "services:\n  worker:\n    image: w\n    deploy: {replicas: 3}\n  web:\n    image: web\n    ports: ['8080:8000']\n",
    )]);
    let p = Project::load(&opts(&dir.0)).unwrap();
    let mut s = p.settings("worker").unwrap();
    assert_eq!(s.resolve().unwrap(), Vec::<String>::new());
    assert!(!s.routed());
    assert_eq!(s.strategy, StrategyKind::Rolling);
    let hint_add = "add an nginx service whose config has `upstream backend { server worker:PORT; }` (see examples/rolling), or name it with x-rollout.proxy";
    let svc = format!("{}/worker", p.name);
    // What moves traffic needs the proxy: refused, and the message says why
    // and what to do.
    for (kind, word) in [
        (StrategyKind::BlueGreen, "blue-green"),
        (StrategyKind::Canary, "canary"),
    ] {
        let mut s = p.settings("worker").unwrap();
        s.apply(&Overrides {
            strategy: Some(kind),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(
            s.resolve().unwrap_err().to_string(),
            format!("no proxy is in front of {svc} in this project, and {word} moves its traffic through the proxy: without one there is nothing to switch or weigh\nhint: roll it out with --strategy rolling (x-rollout.strategy: rolling), or {hint_add}")
        );
    }
    let mut s = p.settings("worker").unwrap();
    s.health_probe = Some(rollout_core::strategy::Verification {
        path: "/health".into(),
        status: 200,
        body_contains: None,
    });
    let e = s.resolve().unwrap_err().to_string();
    assert!(e.contains("x-rollout.health is a probe sent from inside the proxy\nhint: give the service a Compose healthcheck instead"), "{e}");
    // Clients reach a service that publishes ports directly.
    let e = p
        .settings("web")
        .unwrap()
        .resolve()
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        format!("no proxy is in front of {}/web in this project, and it publishes 8080:8000 (ports at compose.yaml:7): clients reach its instances directly, so none could be taken out of traffic before it is stopped\nhint: publish the port on a proxy in front of it instead: add an nginx service whose config has `upstream backend {{ server web:PORT; }}` (see examples/rolling), or name it with x-rollout.proxy", p.name)
    );
}

#[test]
fn colours_or_several_nginx_services_without_a_named_proxy_are_refused() {
    let dir = TempDir::new(&[(
        "compose.yaml",
        "services:\n  blue:\n    image: a\n  green:\n    image: a\n",
    )]);
    let p = Project::load(&opts(&dir.0)).unwrap();
    let e = p
        .settings("green")
        .unwrap()
        .resolve()
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("and its colours (green and blue) take turns only through one\nhint: add an nginx service"),
        "{e}"
    );
    let dir = TempDir::new(&[(
        "compose.yaml",
        "services:\n  worker:\n    image: w\n  nginx:\n    image: nginx\n  edge:\n    image: nginx:1.22\n",
    )]);
    let p = Project::load(&opts(&dir.0)).unwrap();
    let e = p
        .settings("worker")
        .unwrap()
        .resolve()
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        format!("several nginx services could be in front of {}/worker: edge, nginx\nhint: name the one that routes it with x-rollout.proxy", p.name)
    );
    // One nginx service in the project is the proxy of every other service:
    // its config must route the service (the plugin checks the upstream).
    let dir = TempDir::new(&[(
        "compose.yaml",
        "services:\n  worker:\n    image: w\n  nginx:\n    image: nginx\n",
    )]);
    let p = Project::load(&opts(&dir.0)).unwrap();
    let mut s = p.settings("worker").unwrap();
    s.resolve().unwrap();
    assert_eq!(s.proxy.as_deref(), Some("nginx"));
}

/// Issue 11, item 5: a service with `build:` and no `image:` goes to the image its Compose
/// tool builds for it, named by that tool's rule; it is never pulled.
#[test]
fn a_build_only_service_goes_to_the_image_its_tool_builds() {
    let dir = TempDir::new(&[(
        "compose.yaml",
        "services:\n  app:\n    build: .\n  api:\n    image: api\n    pull_policy: build\n  nginx:\n    image: nginx\n",
    )]);
    let v2 = Project::load(&opts(&dir.0)).unwrap();
    let mut s = v2.settings("app").unwrap();
    assert_eq!(s.resolve().unwrap(), Vec::<String>::new());
    assert_eq!(
        s.image.as_deref(),
        Some(format!("{}-app", v2.name).as_str())
    );
    assert!(s.built && s.buildable && !s.build);
    // v1 reads no `name:`, and names the image after the folder's name without its leading
    // `_` or `-`.
    let v1 = Project::load(&LoadOptions {
        flavour: Flavour::V1,
        project_name: Some("_shop".into()),
        ..opts(&dir.0)
    })
    .unwrap();
    let s = v1.settings("app").unwrap();
    assert_eq!(s.image.as_deref(), Some("shop_app"));
    assert_eq!(built_image(Flavour::V2, "shop", "web"), "shop-web");
    assert_eq!(built_image(Flavour::V1, "-shop", "web"), "shop_web");
    // --build needs a build section to build from.
    let mut api = v2.settings("api").unwrap();
    assert!(!api.build && !api.buildable && !api.built);
    let e = api
        .apply(&Overrides {
            build: Some(true),
            ..Default::default()
        })
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "--build: {}/api has no build section to build its image from",
            v2.name
        )
    );
    let mut app = v2.settings("app").unwrap();
    app.apply(&Overrides {
        build: Some(true),
        ..Default::default()
    })
    .unwrap();
    assert!(app.build);
}

/// Issue 11, item 4: `pull_policy` in Compose's words, `--pull` over it, `missing` when
/// neither says.
#[test]
fn the_pull_policy_comes_from_the_flag_then_the_file() {
    let file = |policy: &str| {
        format!("services:\n  app:\n    image: app\n    pull_policy: {policy}\n  bare:\n    image: app\n  nginx:\n    image: nginx\n")
    };
    for (written, policy) in [
        ("always", PullPolicy::Always),
        ("missing", PullPolicy::Missing),
        ("if_not_present", PullPolicy::Missing),
        ("never", PullPolicy::Never),
        ("daily", PullPolicy::Missing),
        ("every_12h", PullPolicy::Missing),
    ] {
        let dir = TempDir::new(&[("compose.yaml", &file(written))]);
        let p = Project::load(&opts(&dir.0)).unwrap();
        let mut s = p.settings("app").unwrap();
        assert_eq!(s.pull, policy, "{written}");
        assert!(!s.build);
        s.apply(&Overrides {
            pull: Some(PullPolicy::Never),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(s.pull, PullPolicy::Never, "{written}");
        assert_eq!(p.settings("bare").unwrap().pull, PullPolicy::Missing);
    }
    let e = load_err(&[("compose.yaml", &file("sometimes"))]);
    assert_eq!(
        e,
        "compose.yaml:4:18: services.app.pull_policy: expected always, missing, if_not_present, never, build, daily, weekly or every_<duration>"
    );
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
    /// Any value in any field we read gives a result or an error, never a panic.
    #[test]
    fn no_panic_on_any_field_value(
        values in proptest::collection::vec(
            proptest::prop_oneof![
                proptest::strategy::Just("[]".to_string()),
                proptest::strategy::Just("{}".to_string()),
                proptest::strategy::Just("~".to_string()),
                proptest::strategy::Just("-1".to_string()),
                proptest::strategy::Just("99999999999999999999".to_string()),
                proptest::strategy::Just("'${X:-1}'".to_string()),
                proptest::strategy::Just("[CMD]".to_string()),
                proptest::strategy::Just("[1, {percent: 100}]".to_string()),
                "[a-z0-9:/%.\\-]{0,12}",
            ],
            16,
        )
    ) {
        let v = |i: usize| values[i].clone();
        let text = format!(
            "x-rollout:\n  canary: {{steps: {}, hold: {}}}\n  colours: {}\n  verify: {}\nservices:\n  app:\n    image: {}\n    scale: {}\n    deploy:\n      replicas: {}\n      update_config: {{parallelism: {}, delay: {}, max_failure_ratio: {}}}\n    healthcheck: {{test: {}, retries: {}}}\n    ports: [{}]\n    volumes: [{}]\n    depends_on: {}\n    x-rollout: {{port: {}}}\n",
            v(0), v(1), v(2), v(3), v(4), v(5), v(6), v(7), v(8), v(9), v(10), v(11), v(12), v(13), v(14), v(15)
        );
        let dir = TempDir::new(&[("compose.yaml", &text)]);
        if let Ok(p) = Project::load(&opts(&dir.0)) {
            let _ = p.settings("app");
        }
    }
}

#[test]
fn a_colour_that_extends_the_base_files_service_is_read_whole() {
    // What `docker rollout init web --strategy blue-green` writes: the
    // second colour extends the base file's service (Compose resolves
    // `extends` in each file on its own, so the override names the file).
    let dir = TempDir::new(&[
        (
            "compose.yaml",
            "services:\n  web:\n    image: shop:${TAG}\n    ports: ['8080:8000']\n    stop_grace_period: 7s\n    deploy:\n      replicas: 2\n",
        ),
        (
            "compose.rollout.yaml",
            "services:\n  web:\n    ports: !reset []\n    x-rollout: {colours: [web, web-green]}\n  web-green:\n    extends: {file: compose.yaml, service: web}\n    ports: !reset []\n    x-rollout: {colours: [web, web-green]}\n",
        ),
    ]);
    let mut o = opts(&dir.0);
    o.files = vec!["compose.yaml".into(), "compose.rollout.yaml".into()];
    o.environment = Some(env(&[("TAG", "v2")]));
    let p = Project::load(&o).unwrap();
    let green = p.settings("web-green").unwrap();
    assert_eq!(
        green.image.as_deref(),
        Some("shop:v2"),
        "interpolated in the base file"
    );
    assert_eq!(green.replicas, 2);
    assert_eq!(green.timeouts.stop_grace, Duration::from_secs(7));
    assert!(
        p.services["web-green"].ports.is_empty(),
        "reset after extends"
    );
    assert!(p.services["web"].ports.is_empty());
    assert_eq!(
        green.layout,
        TrafficLayout::Colours {
            other: ServiceRef::new(&p.name, "web"),
            stop_other: false
        }
    );
    // Without `file`, the override's own services are searched, as Compose does.
    let dir = TempDir::new(&[
        ("compose.yaml", "services:\n  web:\n    image: shop:1\n"),
        (
            "compose.override.yaml",
            "services:\n  web-green:\n    extends: web\n",
        ),
    ]);
    let e = Project::load(&opts(&dir.0)).unwrap_err().to_string();
    assert!(
        e.starts_with(
            "compose.override.yaml:3:14: services.web-green.extends: names service \"web\", which"
        ),
        "{e}"
    );
}

#[test]
fn hooks_layer_the_service_over_the_project_and_the_flags_over_both() {
    let dir = TempDir::new(&[(
        "compose.yaml",
        "x-rollout:\n  hooks:\n    pre: [./check.sh]\n    post: ./notify.sh done\n    timeout: 20s\n    webhook: http://relay:8080/${HOOK_PATH}\nservices:\n  app:\n    image: app:v2\n    environment:\n      API_TOKEN: ${API_TOKEN}\n    x-rollout:\n      hooks:\n        pre: {command: [./app-check.sh], timeout: 5s}\n        pass_env: [CHAT]\n  web:\n    image: web:v1\n",
    )]);
    let mut o = opts(&dir.0);
    o.environment = Some(env(&[
        ("HOOK_PATH", "rollout/T0K3N"),
        ("API_TOKEN", "s3cr3t"),
    ]));
    let p = Project::load(&o).unwrap();
    let mut s = p.settings("app").unwrap();
    let h = &s.hooks;
    assert_eq!(h.pre.as_ref().unwrap().argv, ["./app-check.sh"]);
    assert_eq!(
        h.pre.as_ref().unwrap().timeout,
        Some(Duration::from_secs(5))
    );
    assert_eq!(h.post.as_ref().unwrap().argv, ["./notify.sh", "done"]);
    assert_eq!(h.timeout, Some(Duration::from_secs(20)));
    assert_eq!(h.pass_env, ["CHAT"]);
    assert_eq!(h.webhook.as_ref().unwrap().url.target, "/rollout/T0K3N");
    // The other service has the project's hooks only.
    let web = p.settings("web").unwrap();
    assert_eq!(web.hooks.pre.as_ref().unwrap().argv, ["./check.sh"]);
    // Nothing the settings carry holds a container's environment value.
    let all = format!("{:?} {}", s, serde_yaml::to_string(&s).unwrap());
    assert!(!all.contains("s3cr3t"), "{all}");
    // The webhook's path (its token) is shown nowhere but where it is sent.
    assert!(!serde_yaml::to_string(&s).unwrap().contains("T0K3N"));
    let mut flags = Overrides::default();
    flags.hooks.post = Some(rollout_core::hooks::CommandHook {
        argv: vec!["./flag-post.sh".into()],
        timeout: None,
    });
    s.apply(&flags).unwrap();
    assert_eq!(s.hooks.post.as_ref().unwrap().argv, ["./flag-post.sh"]);
    assert_eq!(s.hooks.pre.as_ref().unwrap().argv, ["./app-check.sh"]);
}

/// `x-rollout.analysis`: the project's under the service's, flags on top,
/// and bad values named with file, line, column and path.
#[test]
fn analysis_rules_from_x_rollout_and_flags() {
    use rollout_core::analysis::{AnalysisRules, Inconclusive, LatencyLimit};
    let file = "x-rollout:\n  analysis:\n    max_error_rate: 5%\n    max_p99: 1.5x\n    min_requests: 50\n    inconclusive: fail\n    failing_windows: 2\n    window: 20s\nservices:\n  app:\n    image: a\n  other:\n    image: b\n    x-rollout:\n      analysis:\n        max_p99: 250ms\n";
    let dir = TempDir::new(&[("compose.yaml", file)]);
    let p = Project::load(&opts(&dir.0)).unwrap();
    let app = p.settings("app").unwrap();
    assert_eq!(
        app.analysis,
        Some(AnalysisRules {
            max_error_rate: Some(0.05),
            max_p99: Some(LatencyLimit::Relative(1.5)),
            min_requests: 50,
            inconclusive: Inconclusive::Fail,
            failing_windows: 2,
            window: Duration::from_secs(20),
            prometheus: None,
        })
    );
    // The service's own rules win whole.
    let mut other = p.settings("other").unwrap();
    assert_eq!(
        other
            .analysis
            .as_ref()
            .map(|r| (r.max_error_rate, r.max_p99)),
        Some((
            None,
            Some(LatencyLimit::Absolute(Duration::from_millis(250)))
        ))
    );
    other
        .apply(&Overrides {
            max_error_rate: Some(0.01),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(other.analysis.as_ref().unwrap().max_error_rate, Some(0.01));

    // Prometheus queries judge alone, or beside the proxy log's thresholds.
    let file = "services:\n  app:\n    image: a\n    x-rollout:\n      analysis:\n        prometheus:\n          url: http://127.0.0.1:9090/\n          queries:\n            - query: 'sum(rate(errors_total[1m]))'\n              max: 0.05\n";
    let dir = TempDir::new(&[("compose.yaml", file)]);
    let prom = Project::load(&opts(&dir.0))
        .unwrap()
        .settings("app")
        .unwrap();
    let rules = prom.analysis.unwrap();
    assert!(rules.judges() && !rules.reads_proxy_log());
    assert_eq!(
        rules.prometheus,
        Some(rollout_core::analysis::PrometheusRules {
            url: "http://127.0.0.1:9090".into(),
            queries: vec![rollout_core::analysis::MetricQuery {
                query: "sum(rate(errors_total[1m]))".into(),
                max: 0.05
            }],
        })
    );

    // No rules: no analysis; flags without a threshold are refused.
    let dir = TempDir::new(&[("compose.yaml", "services:\n  app:\n    image: a\n")]);
    let mut plain = Project::load(&opts(&dir.0))
        .unwrap()
        .settings("app")
        .unwrap();
    assert_eq!(plain.analysis, None);
    let e = plain
        .apply(&Overrides {
            min_requests: Some(5),
            ..Default::default()
        })
        .unwrap_err();
    assert!(e.to_string().contains("need a threshold"), "{e}");

    for (text, want) in [
        (
            "services:\n  app:\n    image: a\n    x-rollout:\n      analysis:\n        max_error_rate: lots\n",
            "compose.yaml:6:25: services.app.x-rollout.analysis.max_error_rate: \"lots\" is not a share from 0% to 100% (such as 5% or 0.05)",
        ),
        (
            "services:\n  app:\n    image: a\n    x-rollout:\n      analysis:\n        max_p99: fast\n",
            "compose.yaml:6:18: services.app.x-rollout.analysis.max_p99: \"fast\" is neither a duration (such as 250ms) nor a factor of the old revision's p99 (such as 1.5x)",
        ),
        (
            "services:\n  app:\n    image: a\n    x-rollout:\n      analysis:\n        min_requests: 5\n",
            "compose.yaml:5:7: services.app.x-rollout.analysis: needs a threshold: max_error_rate (such as 5%), max_p99 (such as 500ms or 1.5x) or prometheus queries",
        ),
        (
            "services:\n  app:\n    image: a\n    x-rollout:\n      analysis:\n        prometheus:\n          url: https://prom:9090\n          queries: [{query: up, max: 1}]\n",
            "compose.yaml:7:16: services.app.x-rollout.analysis.prometheus.url: \"https://prom:9090\": https is not supported; reach Prometheus over http (such as http://127.0.0.1:9090), for example through a local port",
        ),
        (
            "services:\n  app:\n    image: a\n    x-rollout:\n      analysis:\n        prometheus:\n          url: http://prom:9090\n          queries: [{query: up, max: lots}]\n",
            "compose.yaml:8:38: services.app.x-rollout.analysis.prometheus.queries[0].max: expected a number, found \"lots\"",
        ),
        (
            "services:\n  app:\n    image: a\n    x-rollout:\n      analysis:\n        prometheus:\n          url: http://prom:9090\n          queries: [{query: up, limit: 1}]\n",
            "compose.yaml:8:33: services.app.x-rollout.analysis.prometheus.queries[0].limit: unknown field; known fields are query, max",
        ),
        (
            "services:\n  app:\n    image: a\n    x-rollout:\n      analysis:\n        prometheus:\n          url: http://prom:9090\n",
            "compose.yaml:6:9: services.app.x-rollout.analysis.prometheus: needs queries: a list of {query, max}",
        ),
    ] {
        let dir = TempDir::new(&[("compose.yaml", text)]);
        let e = Project::load(&opts(&dir.0)).unwrap_err().to_string();
        assert_eq!(e, want);
    }
}
