//! The tokenizer and tree against nginx's rules, on fixtures written here.

use rollout_nginx::{ConfFile, Item, Quote};

fn parse(src: &[u8]) -> ConfFile {
    ConfFile::parse("test.conf", src.to_vec()).expect("parses")
}

fn err(src: &[u8]) -> (u32, u32, String) {
    let e = ConfFile::parse("test.conf", src.to_vec()).expect_err("must fail");
    (e.line, e.column, e.message)
}

/// (name, args) of every directive, depth first, values decoded.
fn shape(f: &ConfFile) -> Vec<(String, Vec<String>)> {
    f.walk()
        .into_iter()
        .map(|(_, d)| {
            (
                d.name().value_lossy(),
                d.args().map(|a| a.value_lossy()).collect(),
            )
        })
        .collect()
}

fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}

#[test]
fn round_trips_byte_for_byte() {
    let cases: &[&[u8]] = &[
        b"",
        b"\n\n",
        b"user nginx;",
        b"events {}\r\nhttp {\r\n  server { listen 80 ; }\r\n}\r\n",
        b"# only a comment",
        b"a \"q;{}#\"  'x\\'y' b\\ c;   # trailing\n",
        b"if ($a = \"b\") { return 403; }\n",
        b"location ~ \xff\xfe { }\n",
        b"map $x $y {\n  default 0;\n  '' 1;\n}\n",
        b"content_by_lua_block {\n  ngx.say(\"}\") -- }\n}\n",
        b"a\n#c1\nb #c2\n c;\n",
    ];
    for &c in cases {
        let f = parse(c);
        assert_eq!(f.print(), c, "{}", String::from_utf8_lossy(c));
    }
}

#[test]
fn words_follow_nginx_tokenizer() {
    let f = parse(b"d foo}bar a#b \"x y\" 'it' 's' ${v}} /p/${uri}.html;\n");
    assert_eq!(
        shape(&f),
        vec![(
            "d".to_string(),
            s(&[
                "foo}bar",
                "a#b",
                "x y",
                "it",
                "s",
                "${v}}",
                "/p/${uri}.html"
            ])
        )]
    );
}

#[test]
fn brace_after_a_word_opens_a_block_unless_after_dollar() {
    let f = parse(b"a ${v}{ b; }\nc x${y} {}\n");
    assert_eq!(
        shape(&f),
        vec![
            ("a".into(), s(&["${v}"])),
            ("b".into(), vec![]),
            ("c".into(), s(&["x${y}"]))
        ]
    );
    assert_eq!(err(b"d 'it''s';"), (1, 7, r#"unexpected "'""#.into()));
}

#[test]
fn six_escapes_are_decoded_others_kept() {
    let f = parse(br#"d "a\"b" 'c\'d' e\\f "t\tr\rn\n" \.x "\d";"#);
    let d = f.items().directives().next().unwrap();
    let args: Vec<Vec<u8>> = d.args().map(|a| a.value().into_owned()).collect();
    assert_eq!(
        args,
        vec![
            b"a\"b".to_vec(),
            b"c'd".to_vec(),
            b"e\\f".to_vec(),
            b"t\tr\rn\n".to_vec(),
            b"\\.x".to_vec(),
            b"\\d".to_vec()
        ]
    );
    let quotes: Vec<Quote> = d.args().map(|a| a.quote()).collect();
    assert_eq!(quotes[0], Quote::Double);
    assert_eq!(quotes[1], Quote::Single);
    assert_eq!(quotes[2], Quote::None);
}

#[test]
fn empty_strings_and_empty_names() {
    let f = parse(b"map $a $b { '' x; \"\" ''; }");
    assert_eq!(
        shape(&f),
        vec![
            ("map".into(), s(&["$a", "$b"])),
            ("".into(), s(&["x"])),
            ("".into(), s(&[""])),
        ]
    );
}

#[test]
fn comments_anywhere_and_between_args() {
    let f = parse(b"# top\nlisten # mid\n 80 # end\n;#after\n");
    let items: Vec<Item> = f.items().iter().collect();
    assert_eq!(items.len(), 3);
    let Item::Directive(d) = items[1] else {
        panic!("second item is the directive")
    };
    assert_eq!(
        d.args().map(|a| a.value_lossy()).collect::<Vec<_>>(),
        ["80"]
    );
    let inner: Vec<String> = d
        .inner_comments()
        .map(|c| String::from_utf8_lossy(c.text()).into_owned())
        .collect();
    assert_eq!(inner, [" mid", " end"]);
    let Item::Comment(c) = items[2] else {
        panic!("comment after")
    };
    assert_eq!(c.text(), b"after");
    assert_eq!((c.line(), c.column()), (4, 2));
}

#[test]
fn positions_are_line_and_byte_column() {
    let f = parse(b"http {\n\tserver {\n  \tlisten  \"8080\";\n}}\n");
    let all = f.walk();
    let listen = all
        .iter()
        .find(|(_, d)| d.name().raw() == b"listen")
        .unwrap();
    assert_eq!((listen.1.line(), listen.1.column()), (3, 4));
    let arg = listen.1.args().next().unwrap();
    assert_eq!((arg.line(), arg.column()), (3, 12));
    assert_eq!(listen.0.len(), 2, "two enclosing blocks");
}

#[test]
fn if_parentheses_are_part_of_words() {
    let f = parse(b"if ($a = \"b\") { }\nif ($x) {}\n");
    assert_eq!(
        shape(&f),
        vec![
            ("if".into(), s(&["($a", "=", "b"])),
            ("if".into(), s(&["($x)"]))
        ]
    );
}

#[test]
fn lua_blocks_are_raw() {
    let src = b"content_by_lua_block {\n  local t = { 1, 2 }; -- } {\n  ngx.say('}') ngx.say([[ } ]])\n}\nserver_name content_by_lua_block ;\nset_by_lua_block $r { return 1 }\n\"rewrite_by_lua_block\" { x; }\nupstream content_by_lua_block { server a; }\n";
    let f = parse(src);
    let ds: Vec<_> = f.items().directives().collect();
    assert_eq!(ds.len(), 5);
    assert!(ds[0].lua_body().unwrap().starts_with(b"{\n  local t"));
    assert!(ds[0].lua_body().unwrap().ends_with(b"]])\n}"));
    assert_eq!(ds[1].lua_body(), None);
    assert_eq!(ds[2].args().count(), 1);
    assert_eq!(ds[2].lua_body(), Some(&b"{ return 1 }"[..]));
    assert_eq!(ds[3].lua_body(), Some(&b"{ x; }"[..]));
    assert!(
        ds[4].block().is_some(),
        "an argument named like a lua block is not one"
    );
    assert_eq!(f.print(), src);
}

#[test]
fn nginx_error_messages_and_positions() {
    assert_eq!(err(b"a;\n}\n"), (2, 1, r#"unexpected "}""#.into()));
    assert_eq!(err(b"a {\n b c\n}\n"), (3, 1, r#"unexpected "}""#.into()));
    assert_eq!(
        err(b"a {\n b c;\n"),
        (3, 1, r#"unexpected end of file, expecting "}""#.into())
    );
    assert_eq!(
        err(b"a {\n b c"),
        (
            2,
            5,
            r#"unexpected end of file, expecting ";" or "}""#.into()
        )
    );
    assert_eq!(
        err(b"x \"left\"-quote;"),
        (1, 9, r#"unexpected "-""#.into())
    );
    assert_eq!(err(b"x 'a'}"), (1, 6, r#"unexpected "}""#.into()));
    assert_eq!(err(b"x \"a\"#c\n;"), (1, 6, r##"unexpected "#""##.into()));
    assert_eq!(err(b"\n ;"), (2, 2, r#"unexpected ";""#.into()));
    assert_eq!(err(b"{"), (1, 1, r#"unexpected "{""#.into()));
    assert_eq!(err(b"types { a { } }"), (1, 11, r#"unexpected "{""#.into()));
    assert_eq!(
        err(b"map $a $b {\n a b c;\n}"),
        (2, 7, "invalid number of the map parameters".into())
    );
    assert_eq!(
        err(b"x \"never closed;\n"),
        (
            2,
            1,
            r#"unexpected end of file, expecting ";" or "}""#.into()
        )
    );
}

#[test]
fn token_limit_is_4096_bytes() {
    let mut ok = b"x ".to_vec();
    ok.extend(std::iter::repeat_n(b'a', 4095));
    ok.extend_from_slice(b";\n");
    assert!(ConfFile::parse("t", ok).is_ok());
    let mut long = b"x ".to_vec();
    long.extend(std::iter::repeat_n(b'a', 4096));
    long.extend_from_slice(b";\n");
    let (line, _, msg) = err(&long);
    assert_eq!(
        (line, msg.as_str()),
        (1, r#"too long parameter "aaaaaaaaaa..." started"#)
    );
    let mut quoted = b"x \"".to_vec();
    quoted.extend(std::iter::repeat_n(b'a', 5000));
    let (_, _, msg) = err(&quoted);
    assert_eq!(
        msg,
        r#"too long parameter, probably missing terminating """ character"#
    );
}

#[test]
fn invalid_utf8_and_crlf() {
    let f = parse(b"d M\xf6lln;\r\n# M\xf6lln\r\n");
    let d = f.items().directives().next().unwrap();
    assert_eq!(d.args().next().unwrap().value().as_ref(), b"M\xf6lln");
    assert_eq!(d.args().next().unwrap().value_lossy(), "M\u{fffd}lln");
}

#[test]
fn deep_nesting_does_not_overflow() {
    let mut src = Vec::new();
    for _ in 0..200_000 {
        src.extend_from_slice(b"a{");
    }
    src.extend(std::iter::repeat_n(b'}', 200_000));
    let f = parse(&src);
    assert_eq!(f.print(), src);
    let e = ConfFile::parse("t", src[..src.len() - 1].to_vec()).unwrap_err();
    assert_eq!(e.message, r#"unexpected end of file, expecting "}""#);
}
