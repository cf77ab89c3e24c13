use super::*;
use bollard::models::{EndpointSpec, EndpointSpecModeEnum, TaskSpec, TaskSpecContainerSpec};

fn found() -> Found {
    let home = Service {
        spec: Some(ServiceSpec {
            name: Some("shop_app".into()),
            labels: Some(HashMap::from([(
                stack::NAMESPACE_LABEL.to_string(),
                "shop".to_string(),
            )])),
            task_template: Some(TaskSpec {
                container_spec: Some(TaskSpecContainerSpec {
                    image: Some("app:v1".into()),
                    ..Default::default()
                }),
                networks: Some(vec![NetworkAttachmentConfig {
                    target: Some("front".into()),
                    aliases: Some(vec!["app".into()]),
                    driver_opts: None,
                }]),
                ..Default::default()
            }),
            endpoint_spec: Some(EndpointSpec {
                mode: Some(EndpointSpecModeEnum::DNSRR),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let update = UpdateConfig {
        parallelism: 2,
        ..Default::default()
    };
    Found {
        home,
        home_name: "shop_app".into(),
        standby_name: "shop_app--standby".into(),
        replicas: 4,
        network: "front".into(),
        current_image: "app:v1".into(),
        proxy_name: "shop_nginx".into(),
        proxy_tasks: vec![ProxyTask {
            container: "c1".into(),
            node: crate::api::NodeInfo {
                id: "n1".into(),
                hostname: "box".into(),
                addr: "10.0.0.1".into(),
                ready: true,
            },
            here: true,
        }],
        swarm_update: update::to_swarm_update(&update).unwrap(),
        swarm_rollback: update::to_swarm_rollback(&RollbackConfig::default()).unwrap(),
        left: None,
    }
}

fn request() -> Request {
    Request {
        stack: "shop".into(),
        service: "app".into(),
        proxy: "nginx".into(),
        image: "app:v2".into(),
        update: UpdateConfig {
            parallelism: 2,
            ..Default::default()
        },
        rollback: RollbackConfig::default(),
        start_timeout: Duration::from_secs(60),
        drain_timeout: Duration::from_secs(30),
        holder: rollout_strategies::lock_holder(),
        upstream: "backend".into(),
    }
}

/// A standby of `shop_app` as a run holding it as `holder` leaves it.
fn left_standby(holder: Option<String>) -> Service {
    let mut spec = standby_spec(&found(), 2);
    let record = Record {
        holder,
        since: "2026-12-06T08:00:00Z".into(),
        at_rest: vec![route("app:8000")],
        home_before: ["t1".to_string()].into(),
        image: "app:v2".into(),
        upstream: "backend".into(),
    };
    record.write(spec.labels.get_or_insert_with(HashMap::new));
    Service {
        spec: Some(spec),
        ..Default::default()
    }
}

/// This machine's holder with another pid: `alive` this process, else one long gone.
fn holder_here(alive: bool) -> String {
    let mut h = rollout_core::journal::Holder::parse(&rollout_strategies::lock_holder())
        .expect("this process as a holder");
    if !alive {
        h.pid = u32::MAX - 1;
    }
    h.to_string()
}

#[test]
fn a_standby_let_go_or_held_by_a_dead_run_is_taken_over() {
    let req = request();
    for holder in [None, Some(holder_here(false))] {
        let left = left_by_earlier_run(
            left_standby(holder.clone()),
            "shop_app--standby",
            "shop_app",
            &req,
        )
        .unwrap_or_else(|e| panic!("{holder:?}: {e}"));
        assert_eq!(left.record.holder, holder);
        assert_eq!(left.record.at_rest, vec![route("app:8000")]);
    }
}

#[test]
fn a_standby_held_by_a_live_run_or_one_elsewhere_is_busy() {
    let req = request();
    let alive = left_by_earlier_run(
        left_standby(Some(holder_here(true))),
        "shop_app--standby",
        "shop_app",
        &req,
    )
    .unwrap_err();
    assert_eq!(alive.code, exit::BUSY);
    assert!(
        alive.message.contains("another rollout"),
        "{}",
        alive.message
    );
    let elsewhere = left_by_earlier_run(
        left_standby(Some("ops@other-box pid 7 started 1 boot b".into())),
        "shop_app--standby",
        "shop_app",
        &req,
    )
    .unwrap_err();
    assert_eq!(elsewhere.code, exit::BUSY);
    assert!(
        elsewhere
            .message
            .contains("--label-rm io.rollout.holder shop_app--standby"),
        "{}",
        elsewhere.message
    );
}

#[test]
fn a_service_of_the_standbys_name_that_is_not_ours_or_has_no_record_is_refused() {
    let req = request();
    let mut foreign = left_standby(None);
    if let Some(l) = foreign.spec.as_mut().and_then(|s| s.labels.as_mut()) {
        l.remove(STANDBY_LABEL);
    }
    let e = left_by_earlier_run(foreign, "shop_app--standby", "shop_app", &req).unwrap_err();
    assert_eq!(e.code, exit::BAD_INPUT);
    assert!(
        e.message.contains("is not a standby of shop_app"),
        "{}",
        e.message
    );
    let mut old = left_standby(None);
    if let Some(l) = old.spec.as_mut().and_then(|s| s.labels.as_mut()) {
        l.remove(crate::record::AT_REST_LABEL);
    }
    let e = left_by_earlier_run(old, "shop_app--standby", "shop_app", &req).unwrap_err();
    assert_eq!(e.code, exit::BAD_INPUT);
    assert!(
        e.message.contains("docker service rm shop_app--standby"),
        "{}",
        e.message
    );
}

#[test]
fn only_new_tasks_of_the_image_serve_and_none_while_swarm_rolls_back() {
    let task = |id: &str, image: &str, addr: &str| TaskInfo {
        id: id.into(),
        node: "n".into(),
        state: "running".into(),
        desired: "running".into(),
        image: image.into(),
        addresses: HashMap::from([("front".to_string(), addr.to_string())]),
        node_ready: true,
        node_name: "n".into(),
        slot: 0,
        container: String::new(),
    };
    let tasks = [
        task("t1", "app:v2@sha256:1", "10.0.0.1"),
        task("t2", "app:v2@sha256:2", "10.0.0.2"),
        task("t3", "app:v1", "10.0.0.3"),
    ];
    let record = Record::read(&spec_of(&left_standby(None)).labels.unwrap()).unwrap();
    let req = request();
    assert_eq!(
        serving_new(&tasks, &record, &req, "front", false),
        BTreeSet::from(["10.0.0.2".to_string()]),
        "t1 ran before the update, t3 runs the old image"
    );
    assert!(serving_new(&tasks, &record, &req, "front", true).is_empty());
    let in_slot = |id: &str, addr: &str, slot: u64| TaskInfo {
        slot,
        ..task(id, "app:v2", addr)
    };
    let doubled = [
        in_slot("t4", "10.0.0.4", 1),
        in_slot("t5", "10.0.0.5", 1),
        in_slot("t6", "10.0.0.6", 2),
    ];
    assert_eq!(
        serving_new(&doubled, &record, &req, "front", false),
        BTreeSet::from(["10.0.0.6".to_string()]),
        "Swarm stops one of two new tasks in slot 1: neither is routed"
    );
}

#[test]
fn the_standby_serves_the_homes_spec_under_no_alias() {
    let spec = standby_spec(&found(), 3);
    assert_eq!(spec.name.as_deref(), Some("shop_app--standby"));
    assert_eq!(image_of(&spec), "app:v1");
    let labels = spec.labels.unwrap();
    assert_eq!(labels[STANDBY_LABEL], "shop_app");
    assert_eq!(labels[stack::NAMESPACE_LABEL], "shop");
    assert_eq!(spec.mode.unwrap().replicated.unwrap().replicas, Some(3));
    let networks = spec.task_template.unwrap().networks.unwrap();
    assert_eq!(networks[0].target.as_deref(), Some("front"));
    assert_eq!(
        networks[0].aliases, None,
        "the service's name must not resolve to the standby"
    );
}

#[test]
fn the_plan_names_the_standby_and_swarms_update_config() {
    let req = request();
    let text = plan(&found(), &req);
    assert!(text.contains("app:v1 -> app:v2"), "{text}");
    assert!(text.contains("standby shop_app--standby"), "{text}");
    assert!(text.contains("parallelism 2"), "{text}");
    assert!(!text.contains("resumes"), "{text}");
    let mut resumed = found();
    resumed.left = Some(
        left_by_earlier_run(left_standby(None), "shop_app--standby", "shop_app", &req).unwrap(),
    );
    let text = plan(&resumed, &req);
    assert!(
        text.contains(
            "resumes the rollout left by a run that let it go (since 2026-12-06T08:00:00Z"
        ),
        "{text}"
    );
}

#[test]
fn new_tasks_that_serve_wait_at_most_a_second_for_the_rest_of_their_batch() {
    let t0 = Instant::now();
    let mut seen = None;
    // Two of a batch serve, one still starts: held, from the first look.
    assert!(held_for_batch(2, 1, &mut seen, t0));
    assert_eq!(seen, Some(t0));
    assert!(held_for_batch(
        2,
        1,
        &mut seen,
        t0 + Duration::from_millis(900)
    ));
    // Past the wait: routed, whatever still starts.
    assert!(!held_for_batch(2, 1, &mut seen, t0 + BATCH_WAIT));
    assert_eq!(seen, None);
    // The whole batch serves, or nothing new serves: routed at once, nothing held.
    let mut seen = None;
    assert!(!held_for_batch(3, 0, &mut seen, t0));
    assert!(!held_for_batch(0, 2, &mut seen, t0));
    assert_eq!(seen, None);
    // A wait that ended because the batch came whole starts afresh for the next batch.
    assert!(held_for_batch(1, 1, &mut seen, t0));
    assert!(!held_for_batch(
        2,
        0,
        &mut seen,
        t0 + Duration::from_millis(300)
    ));
    assert!(held_for_batch(1, 1, &mut seen, t0 + Duration::from_secs(5)));
}
