//! The upstream editor: reads, surgical rewrites, refusals.

use rollout_core::model::InstanceId;
use rollout_core::router::{Route, RouteChange, Target};
use rollout_nginx::upstream::{Address, EditError, Param, Server};
use rollout_nginx::ConfFile;

fn file(src: &str) -> ConfFile {
    ConfFile::parse("nginx.conf", src.as_bytes().to_vec()).expect("fixture parses")
}

fn text(f: &ConfFile) -> String {
    String::from_utf8(f.source().to_vec()).unwrap()
}

fn route(host: &str, weight: u32) -> Route {
    Route {
        target: Target::instance(InstanceId::from(host), host),
        weight,
    }
}

const CONF: &str = "\
# operator's config
http {
\tresolver 127.0.0.11 valid=5s;   # docker dns
\tupstream app {
\t\tzone app 64k;
\t\tserver app-1:8000 max_fails=3 fail_timeout=5s \"weird=x y\" weight=2;  # first
\t\tserver app-2:8000   backup;
\t\tkeepalive 16;
\t}
\tserver { listen 80; location / { proxy_pass http://app; } }
}
";

#[test]
fn reads_servers_with_params_in_order() {
    let up = file(CONF).upstream("app").unwrap();
    assert_eq!(up.name, "app");
    assert_eq!(up.line, 4);
    assert!(up.zone);
    assert_eq!(up.resolver, Some(true));
    assert_eq!(up.balancer, None);
    assert_eq!(up.servers.len(), 2);
    let s = &up.servers[0];
    assert_eq!((s.line, s.column), (6, 3));
    assert_eq!(
        s.server.address,
        Address::Inet {
            host: "app-1".into(),
            port: Some(8000)
        }
    );
    assert_eq!(
        s.server.params,
        vec![
            Param::MaxFails(3),
            Param::FailTimeout("5s".into()),
            Param::Other("weird=x y".into()),
            Param::Weight(2)
        ]
    );
    assert_eq!(s.server.weight(), 2);
    assert!(up.servers[1].server.is_backup());
    assert_eq!(up.servers[1].server.weight(), 1);
}

#[test]
fn reweight_touches_only_that_line_and_keeps_param_spelling() {
    let f = file(CONF);
    let change = RouteChange {
        set: vec![route("app-1", 5)],
        remove: vec![],
    };
    let out = f.apply_route_change("app", &change, 8000).unwrap();
    let want = CONF.replace(
        "server app-1:8000 max_fails=3 fail_timeout=5s \"weird=x y\" weight=2;",
        "server app-1:8000 max_fails=3 fail_timeout=5s \"weird=x y\" weight=5;",
    );
    assert_eq!(text(&out), want);
}

#[test]
fn reweight_back_to_one_reads_as_the_operator_wrote_it() {
    // The canary's last step: green weighted against blue, then alone at weight 1.
    let src = "http {\n    upstream backend {\n        server blue:8000 weight=3;\n        server green:8000 weight=2 max_fails=2;\n        server red:8000 weight=1;\n    }\n}\n";
    let f = file(src);
    let change = RouteChange {
        set: vec![route("green", 1), route("red", 1)],
        remove: vec![route("blue", 1).target],
    };
    let out = f.apply_route_change("backend", &change, 8000).unwrap();
    // A weight written by the tool goes; one the operator wrote as 1 stays as it was.
    assert_eq!(
        text(&out),
        "http {\n    upstream backend {\n        server green:8000 max_fails=2;\n        server red:8000 weight=1;\n    }\n}\n"
    );
    let mut s = Server::parse("green:8000 weight=4").unwrap();
    s.set_weight(1);
    assert_eq!((s.weight(), s.params.len()), (1, 0));
    s.set_weight(3);
    assert_eq!(s.params, vec![Param::Weight(3)]);
}

#[test]
fn remove_and_add_copy_indentation() {
    let f = file(CONF);
    let change = RouteChange {
        set: vec![route("app-3", 1), route("app-4", 2)],
        remove: vec![Target::Service {
            name: "app-2".into(),
        }],
    };
    let out = f.apply_route_change("app", &change, 8000).unwrap();
    let want = CONF
        .replace("\t\tserver app-2:8000   backup;\n", "")
        .replace(
            "weight=2;  # first\n",
            "weight=2;  # first\n\t\tserver app-3:8000;\n\t\tserver app-4:8000 weight=2;\n",
        );
    assert_eq!(text(&out), want);
}

#[test]
fn blue_green_switch_replaces_the_line_in_place_with_crlf() {
    let src = "http {\r\n  upstream web {\r\n    server blue:80; # live\r\n    keepalive 4;\r\n  }\r\n}\r\n";
    let f = file(src);
    let out = f
        .set_servers("web", &[Server::parse("green:80").unwrap()])
        .unwrap();
    assert_eq!(
        text(&out),
        "http {\r\n  upstream web {\r\n    server green:80;\r\n    keepalive 4;\r\n  }\r\n}\r\n"
    );
    let back = out
        .set_servers("web", &[Server::parse("blue:80").unwrap()])
        .unwrap();
    assert_eq!(
        text(&back),
        "http {\r\n  upstream web {\r\n    server blue:80;\r\n    keepalive 4;\r\n  }\r\n}\r\n"
    );
}

#[test]
fn one_line_upstreams_are_edited_inline() {
    let f = file("upstream a { server x:1; server y:1; }\n");
    let out = f
        .set_servers(
            "a",
            &[
                Server::parse("x:1").unwrap(),
                Server::parse("z:1 weight=4").unwrap(),
            ],
        )
        .unwrap();
    assert_eq!(
        text(&out),
        "upstream a { server x:1; server z:1 weight=4; }\n"
    );
}

#[test]
fn empty_upstream_gets_servers_before_its_brace() {
    let f = file("http {\n    upstream a {\n    }\n    upstream b {}\n}\n");
    let out = f
        .set_servers("a", &[Server::parse("x:1").unwrap()])
        .unwrap();
    assert_eq!(
        text(&out),
        "http {\n    upstream a {\n        server x:1;\n    }\n    upstream b {}\n}\n"
    );
    let out = out
        .set_servers("b", &[Server::parse("y:2").unwrap()])
        .unwrap();
    assert_eq!(
        text(&out),
        "http {\n    upstream a {\n        server x:1;\n    }\n    upstream b {\n        server y:2;\n    }\n}\n"
    );
}

#[test]
fn mark_down_and_backup() {
    let f = file("upstream a {\n  server x:1;\n  server y:1;\n}\n");
    let mut set = f.upstream("a").unwrap().server_set();
    set[0].set_down(true);
    set[1].set_backup(true);
    let out = f.set_servers("a", &set).unwrap();
    assert_eq!(
        text(&out),
        "upstream a {\n  server x:1 down;\n  server y:1 backup;\n}\n"
    );
}

#[test]
fn refuses_what_nginx_refuses() {
    let f = file("http {\n upstream a {\n  ip_hash;\n  server x:1;\n }\n upstream r {\n  server y:1;\n }\n}\n");
    let only_x = |p: &str| Server::parse(&format!("x:1 {p}")).unwrap();
    let e = f.set_servers("a", &[only_x("weight=0")]).unwrap_err();
    assert!(
        e.to_string().contains("invalid parameter \"weight=0\""),
        "{e}"
    );
    assert!(e.to_string().starts_with("nginx.conf:2:"), "{e}");
    let e = f
        .set_servers("a", &[only_x(""), Server::parse("z:1 backup").unwrap()])
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("does not support parameter \"backup\""),
        "{e}"
    );
    let e = f
        .set_servers("r", &[Server::parse("y:1 backup").unwrap()])
        .unwrap_err();
    assert!(matches!(e, EditError::NoPrimary { .. }), "{e}");
    let e = f
        .apply_route_change(
            "r",
            &RouteChange {
                set: vec![],
                remove: vec![Target::Service { name: "y".into() }],
            },
            1,
        )
        .unwrap_err();
    assert!(matches!(e, EditError::NoPrimary { .. }), "{e}");
    let e = f
        .set_servers("r", &[Server::parse("y resolve").unwrap()])
        .unwrap_err();
    assert!(e.to_string().contains("zone"), "{e}");
    let g = file("http {\n upstream r {\n  zone r 64k;\n  server y:1;\n }\n}\n");
    let e = g
        .set_servers("r", &[Server::parse("y resolve").unwrap()])
        .unwrap_err();
    assert!(e.to_string().contains("no resolver"), "{e}");
    let h =
        file("http {\n resolver 127.0.0.11;\n upstream r {\n  zone r 64k;\n  server y:1;\n }\n}\n");
    let out = h
        .set_servers("r", &[Server::parse("y resolve").unwrap()])
        .unwrap();
    assert!(text(&out).contains("  server y resolve;\n"));
    let e = f
        .apply_route_change(
            "r",
            &RouteChange {
                set: vec![route("y", 0)],
                remove: vec![],
            },
            1,
        )
        .unwrap_err();
    assert!(e.to_string().contains("weight=0"), "{e}");
}

#[test]
fn no_value_injects_a_directive() {
    for bad in [
        "a;b", "a b", "a}", "a{", "a#b", "$host", "a\nb", "", "-x", "a\"b",
    ] {
        assert!(
            matches!(Address::inet(bad, 80), Err(EditError::InvalidHost { .. })),
            "{bad:?} accepted"
        );
        let f = file("upstream a {\n  server x:1;\n}\n");
        let e = f.apply_route_change(
            "a",
            &RouteChange {
                set: vec![route(bad, 1)],
                remove: vec![],
            },
            80,
        );
        assert!(e.is_err(), "{bad:?} accepted");
    }
    assert!(Address::inet("10.0.0.1", 80).is_ok());
    assert!(Address::inet("::1", 80).is_ok());
    assert!(Address::inet("app_1.web-2", 80).is_ok());
    assert!(Address::parse("app:99999").is_err());
    // An odd parameter value is quoted, never spliced in raw.
    let f = file("upstream a {\n  server x:1;\n}\n");
    let mut s = Server::parse("x:1").unwrap();
    s.params.push(Param::Other("note=a; deny all".into()));
    let out = f.set_servers("a", &[s]).unwrap();
    assert_eq!(
        text(&out),
        "upstream a {\n  server x:1 \"note=a; deny all\";\n}\n"
    );
    let up = out.upstream("a").unwrap();
    assert_eq!(
        up.servers[0].server.params,
        vec![Param::Other("note=a; deny all".into())]
    );
}

#[test]
fn creates_an_upstream() {
    let f = file("http {\n    include mime.types;\n\n    server {\n        listen 80;\n    }\n}\n");
    let out = f
        .create_upstream("app", &[Server::parse("app:8000").unwrap()])
        .unwrap();
    assert_eq!(
        text(&out),
        "http {\n    include mime.types;\n\n    upstream app {\n        server app:8000;\n    }\n\n    server {\n        listen 80;\n    }\n}\n"
    );
    let e = out.create_upstream("app", &[]).unwrap_err();
    assert!(e.to_string().contains("it exists"), "{e}");
    let inc = file("server {\n\tlisten 80;\n}");
    let out = inc
        .create_upstream("b", &[Server::parse("b:1").unwrap()])
        .unwrap();
    assert_eq!(
        text(&out),
        "server {\n\tlisten 80;\n}\nupstream b {\n\tserver b:1;\n}\n"
    );
}

#[test]
fn not_found_and_duplicate() {
    let f = file("upstream a { server x; }\nupstream a { server y; }\n");
    assert!(matches!(
        f.upstream("b").unwrap_err(),
        EditError::NotFound { .. }
    ));
    let e = f.upstream("a").unwrap_err();
    assert!(
        matches!(
            e,
            EditError::Duplicate {
                first_line: 1,
                line: 2,
                ..
            }
        ),
        "{e}"
    );
}
