//! The harness itself on the real engine: Compose projects come up with the machine's Compose
//! tools, load through nginx sees the versions with no false failure, and nothing is left
//! behind, also after a panic.

use rollout_e2e::{
    images, require_engine, require_images, wait_http, ComposeTool, DemoStack, Project, NGINX_IMAGE,
};
use std::time::Duration;

fn stack(slug: &str, tool: ComposeTool, replicas: u32) -> Project {
    require_engine();
    require_images(&[images::V1, NGINX_IMAGE]);
    let p = Project::with_tool(slug, tool);
    DemoStack::new(images::V1, replicas).serve(&p, "");
    p
}

#[test]
#[ignore = "needs docker: run with cargo xtask e2e"]
fn every_compose_tool_brings_the_stack_up_and_down() {
    let tools = ComposeTool::under_test();
    assert!(!tools.is_empty(), "no compose tool works here");
    for tool in tools {
        let p = stack("tools", tool, 2);
        let answer = wait_http(p.port("nginx", 80), "/", Duration::from_secs(5), |a| {
            a.status == 200
        });
        assert_eq!(answer.version.as_deref(), Some("v1"), "{}", tool.name());
        let apps = p.containers(Some("app"));
        assert_eq!(apps.len(), 2, "{apps:#?}");
        assert!(apps
            .iter()
            .all(|c| c.image == images::V1 && c.health == "healthy"));
        p.down();
        assert!(
            p.containers(None).is_empty(),
            "{} down left containers",
            tool.name()
        );
    }
}

#[test]
#[ignore = "needs docker: run with cargo xtask e2e"]
fn a_project_is_removed_even_when_its_test_panics() {
    let (name, dir) = {
        let p = stack("panic", ComposeTool::detect(), 1);
        (p.name().to_string(), p.dir().to_path_buf())
    };
    // The same again, but the test body panics with the project alive.
    let name_in_panic = std::sync::Mutex::new(String::new());
    let result = std::panic::catch_unwind(|| {
        let p = stack("panic", ComposeTool::detect(), 1);
        *name_in_panic.lock().unwrap() = p.name().to_string();
        assert!(!Project::leftovers(p.name()).is_empty(), "the project runs");
        panic!("a failing test");
    });
    assert!(result.is_err());
    let panicked = name_in_panic.into_inner().unwrap();
    for n in [&name, &panicked] {
        assert_eq!(
            Project::leftovers(n),
            Vec::<String>::new(),
            "{n} left things behind"
        );
    }
    assert!(!dir.exists(), "{} was not removed", dir.display());
}

#[test]
#[ignore = "needs docker: run with cargo xtask e2e"]
fn steady_load_through_nginx_has_no_failure_and_sees_every_instance() {
    let p = stack("steady", ComposeTool::detect(), 3);
    let load = p.start_load(|c| {
        c.rate = 250;
        c.duration = Duration::from_secs(6);
        c.slow = Duration::from_secs(1);
    });
    let report = load.wait().unwrap();
    eprintln!("{report}");
    eprint!("{}", report.timeline_text());
    assert_eq!(
        report.failed,
        0,
        "failures in steady state: {:#?}",
        report.failures().take(5).collect::<Vec<_>>()
    );
    assert!(report.upstream_errors.read);
    assert_eq!(
        report.upstream_errors.total, 0,
        "{:#?}",
        report.upstream_errors.errors
    );
    assert_eq!(report.versions.keys().collect::<Vec<_>>(), ["v1"]);
    assert_eq!(report.instances.len(), 3, "{:#?}", report.instances);
    let ids: Vec<String> = p
        .containers(Some("app"))
        .iter()
        .map(|c| c.id[..12].to_string())
        .collect();
    for name in report.instances.keys() {
        assert!(
            ids.contains(name),
            "{name} is not one of the app's containers {ids:?}"
        );
    }
    for class in rollout_load::Class::ALL {
        assert!(
            report.classes[&class].ok > 0,
            "no {} request succeeded",
            class.name()
        );
    }
    assert!(
        report.rate >= 200.0,
        "only {:.0} requests per second",
        report.rate
    );
}
