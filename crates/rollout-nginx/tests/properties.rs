//! Property: a config printed from a generated tree parses back to that
//! tree (names, decoded values, quote styles, comments, nesting), and
//! prints back byte for byte.

use proptest::prelude::*;
use rollout_nginx::{ConfFile, Item, Items, Quote};

#[derive(Debug, Clone, PartialEq)]
struct GWord {
    value: Vec<u8>,
    quote: Quote,
}

#[derive(Debug, Clone, PartialEq)]
enum GItem {
    Directive {
        name: GWord,
        args: Vec<GWord>,
        /// Comments written after the name / an argument.
        inner: Vec<String>,
        block: Option<Vec<GItem>>,
    },
    Comment(String),
}

/// Whether nginx reads `v` back from a bare word (escaping `"`, `'`, `\`).
fn bare_ok(v: &[u8]) -> bool {
    !v.is_empty()
        && !matches!(v[0], b'#' | b'}' | b'"' | b'\'' | b';' | b'{')
        && !v
            .iter()
            .any(|b| matches!(b, b' ' | b'\t' | b'\r' | b'\n' | b';' | b'{'))
}

fn byte() -> impl Strategy<Value = u8> {
    prop_oneof![
        8 => prop::sample::select(b"abcxyz019_-./:=~^*$@".to_vec()),
        2 => prop::sample::select(b" \t\n;{}#\"'\\()".to_vec()),
        1 => any::<u8>(),
    ]
}

fn word() -> impl Strategy<Value = GWord> {
    (prop::collection::vec(byte(), 0..8), 0..3u8).prop_map(|(value, q)| {
        let quote = match q {
            0 if bare_ok(&value) => Quote::None,
            1 => Quote::Single,
            _ => Quote::Double,
        };
        GWord { value, quote }
    })
}

fn name() -> impl Strategy<Value = GWord> {
    word().prop_filter("no handler-read or lua blocks", |w| {
        let v = &w.value[..];
        !v.ends_with(b"_by_lua_block")
            && !matches!(
                v,
                b"map" | b"types" | b"geo" | b"split_clients" | b"charset_map"
            )
    })
}

fn comment() -> impl Strategy<Value = String> {
    "[a-z #;{}\"'\\\\]{0,10}"
}

fn items() -> impl Strategy<Value = Vec<GItem>> {
    let leaf = prop_oneof![
        4 => (name(), prop::collection::vec(word(), 0..4), prop::collection::vec(comment(), 0..2))
            .prop_map(|(name, args, inner)| GItem::Directive { name, args, inner, block: None }),
        1 => comment().prop_map(GItem::Comment),
    ];
    let item = leaf.prop_recursive(3, 40, 5, |inner| {
        (
            name(),
            prop::collection::vec(word(), 0..3),
            prop::collection::vec(inner, 0..5),
        )
            .prop_map(|(name, args, children)| GItem::Directive {
                name,
                args,
                inner: Vec::new(),
                block: Some(children),
            })
    });
    prop::collection::vec(item, 0..6)
}

fn encode(w: &GWord, out: &mut Vec<u8>) {
    let q = match w.quote {
        Quote::None => {
            for &b in &w.value {
                if matches!(b, b'"' | b'\'' | b'\\') {
                    out.push(b'\\');
                }
                out.push(b);
            }
            return;
        }
        Quote::Double => b'"',
        Quote::Single => b'\'',
    };
    out.push(q);
    for &b in &w.value {
        match b {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\t' => out.extend_from_slice(b"\\t"),
            b if b == q => {
                out.push(b'\\');
                out.push(b);
            }
            b => out.push(b),
        }
    }
    out.push(q);
}

fn print(items: &[GItem], ws: &mut impl Iterator<Item = &'static [u8]>, out: &mut Vec<u8>) {
    for it in items {
        out.extend_from_slice(ws.next().unwrap());
        match it {
            GItem::Comment(c) => {
                out.push(b'#');
                out.extend_from_slice(c.as_bytes());
                out.push(b'\n');
            }
            GItem::Directive {
                name,
                args,
                inner,
                block,
            } => {
                encode(name, out);
                let mut comments = inner.iter();
                for a in args {
                    out.extend_from_slice(b" ");
                    if let Some(c) = comments.next() {
                        out.push(b'#');
                        out.extend_from_slice(c.as_bytes());
                        out.push(b'\n');
                    }
                    encode(a, out);
                }
                for c in comments {
                    out.extend_from_slice(b" #");
                    out.extend_from_slice(c.as_bytes());
                    out.push(b'\n');
                }
                out.extend_from_slice(ws.next().unwrap());
                let last = args.last().unwrap_or(name);
                if last.quote == Quote::None && last.value.ends_with(b"$") && out.ends_with(b"$") {
                    // `${` would keep the brace in the word.
                    out.push(b' ');
                }
                match block {
                    None => out.push(b';'),
                    Some(children) => {
                        out.push(b'{');
                        print(children, ws, out);
                        out.extend_from_slice(ws.next().unwrap());
                        out.push(b'}');
                    }
                }
            }
        }
    }
}

fn read(items: Items<'_>) -> Vec<GItem> {
    items
        .iter()
        .map(|it| match it {
            Item::Comment(c) => GItem::Comment(String::from_utf8(c.text().to_vec()).unwrap()),
            Item::Directive(d) => {
                let w = |x: rollout_nginx::Word<'_>| GWord {
                    value: x.value().into_owned(),
                    quote: x.quote(),
                };
                GItem::Directive {
                    name: w(d.name()),
                    args: d.args().map(w).collect(),
                    inner: d
                        .inner_comments()
                        .map(|c| String::from_utf8(c.text().to_vec()).unwrap())
                        .collect(),
                    block: d.block().map(read),
                }
            }
        })
        .collect()
}

const SPACES: &[&[u8]] = &[b"", b" ", b"\n", b"\t", b"\r\n", b"  \n\t", b"\n\n"];

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn printed_tree_parses_back_to_itself(tree in items(), spaces in prop::collection::vec(0..SPACES.len(), 1..64)) {
        let mut ws = spaces.iter().map(|&i| SPACES[i]).cycle();
        let mut text = Vec::new();
        print(&tree, &mut ws, &mut text);
        text.extend_from_slice(b"\n");
        let file = ConfFile::parse("gen.conf", text.clone())
            .map_err(|e| TestCaseError::fail(format!("{e}\n{}", String::from_utf8_lossy(&text))))?;
        prop_assert_eq!(read(file.items()), tree, "{}", String::from_utf8_lossy(&text));
        prop_assert_eq!(file.print(), text);
    }

    #[test]
    fn any_bytes_never_panic(data in prop::collection::vec(any::<u8>(), 0..512)) {
        let (file, _) = ConfFile::parse_lenient("any.conf", data.clone());
        // Cut short or not, printing gives the input back.
        prop_assert_eq!(file.print(), data);
    }
}
