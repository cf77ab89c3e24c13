//! Merging several Compose files (`-f a.yaml -f b.yaml`) node by node.
//!
//! The rules are the Compose specification's, for every field, not only
//! the ones this crate reads (so that the merged tree could be handed on):
//! mappings merge key by key and a later scalar replaces an earlier one;
//! sequences are appended, except `command`, `entrypoint`,
//! `healthcheck.test` and every sequence under an `x-` extension, which are
//! replaced; `ports`, `expose` and `profiles` drop duplicates; `volumes` are
//! unique by their container path, the later file winning; `depends_on`
//! written as a list merges with one written as a mapping. A value tagged
//! `!reset` removes the field and `!override` replaces it whole (Compose
//! 2.24). Each node keeps the position of the file it came from.

use crate::yaml::{Entry, MergeTag, Node, Value};

/// Merges `over` (a later file) into `base`.
pub fn merge(base: Node, over: Node) -> Node {
    merge_at(base, over, &mut Vec::new())
}

/// Merges the service `over` over `base` (a service that `extends` another),
/// by the same rules as a later file's `services.NAME`.
pub(crate) fn merge_service(name: &str, base: Node, over: Node) -> Node {
    merge_at(
        base,
        over,
        &mut vec!["services".to_string(), name.to_string()],
    )
}

fn merge_at(base: Node, over: Node, path: &mut Vec<String>) -> Node {
    if over.merge == MergeTag::Override {
        return over;
    }
    let depends_on = is_service_field(path, "depends_on");
    let (base, over) = if depends_on {
        (list_to_map(base), list_to_map(over))
    } else {
        (base, over)
    };
    match (base.value, over.value) {
        (Value::Map(mut entries), Value::Map(overs)) => {
            for item in overs {
                let at = entries.iter().position(|e| e.key == item.key);
                match (at, item.value.merge) {
                    (Some(i), MergeTag::Reset) => {
                        entries.remove(i);
                    }
                    (None, MergeTag::Reset) => {}
                    (Some(i), _) => {
                        path.push(item.key.clone());
                        let old = std::mem::replace(&mut entries[i].value, null_like(&item.value));
                        entries[i].value = merge_at(old, item.value, path);
                        entries[i].key_pos = item.key_pos;
                        path.pop();
                    }
                    (None, _) => entries.push(item),
                }
            }
            Node {
                value: Value::Map(entries),
                pos: over.pos,
                merge: MergeTag::Merge,
            }
        }
        (Value::Seq(mut items), Value::Seq(overs)) => {
            let replaced = is_service_field(path, "command")
                || is_service_field(path, "entrypoint")
                || (path.len() == 4
                    && path[0] == "services"
                    && path[2] == "healthcheck"
                    && path[3] == "test")
                || path.iter().any(|p| p.starts_with("x-"));
            if replaced {
                items = overs;
            } else if is_service_field(path, "volumes") {
                for item in overs {
                    let target = volume_target(&item);
                    match items
                        .iter()
                        .position(|i| target.is_some() && volume_target(i) == target)
                    {
                        Some(i) => items[i] = item,
                        None => items.push(item),
                    }
                }
            } else if ["ports", "expose", "profiles"]
                .iter()
                .any(|f| is_service_field(path, f))
            {
                for item in overs {
                    if !items.iter().any(|i| same_value(i, &item)) {
                        items.push(item);
                    }
                }
            } else {
                items.extend(overs);
            }
            Node {
                value: Value::Seq(items),
                pos: over.pos,
                merge: MergeTag::Merge,
            }
        }
        (_, value) => Node {
            value,
            pos: over.pos,
            merge: MergeTag::Merge,
        },
    }
}

fn null_like(node: &Node) -> Node {
    Node {
        value: Value::Null,
        pos: node.pos.clone(),
        merge: MergeTag::Merge,
    }
}

/// `services.<name>.<field>`.
fn is_service_field(path: &[String], field: &str) -> bool {
    path.len() == 3 && path[0] == "services" && path[2] == field
}

/// `depends_on: [a, b]` as `depends_on: {a: null, b: null}`.
fn list_to_map(node: Node) -> Node {
    let Value::Seq(items) = node.value else {
        return node;
    };
    let entries = items
        .into_iter()
        .map(|item| Entry {
            key: item.as_str().unwrap_or_default().to_string(),
            key_pos: item.pos.clone(),
            value: null_like(&item),
        })
        .collect();
    Node {
        value: Value::Map(entries),
        pos: node.pos,
        merge: node.merge,
    }
}

/// The container path of a volume, short (`src:dst:ro`) or long syntax.
fn volume_target(node: &Node) -> Option<String> {
    match &node.value {
        Value::Scalar(s) => {
            let parts: Vec<&str> = s.text.split(':').collect();
            match parts.len() {
                1 => Some(parts[0].to_string()),
                _ => Some(parts[1].to_string()),
            }
        }
        Value::Map(_) => node
            .get("target")
            .and_then(Node::as_str)
            .map(str::to_string),
        _ => None,
    }
}

/// Equal values, positions ignored.
fn same_value(a: &Node, b: &Node) -> bool {
    match (&a.value, &b.value) {
        (Value::Null, Value::Null) => true,
        (Value::Scalar(x), Value::Scalar(y)) => x.text == y.text,
        (Value::Seq(x), Value::Seq(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same_value(a, b))
        }
        (Value::Map(x), Value::Map(y)) => {
            x.len() == y.len()
                && x.iter().all(|e| {
                    y.iter()
                        .any(|f| f.key == e.key && same_value(&e.value, &f.value))
                })
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::yaml::parse;
    use std::sync::Arc;

    fn m(a: &str, b: &str) -> Node {
        merge(
            parse(Arc::from("a.yaml"), a).unwrap(),
            parse(Arc::from("b.yaml"), b).unwrap(),
        )
    }

    fn strs(n: &Node) -> Vec<String> {
        n.as_seq()
            .unwrap()
            .iter()
            .map(|i| i.as_str().unwrap_or("?").to_string())
            .collect()
    }

    #[test]
    fn mappings_merge_and_scalars_replace_keeping_the_winner_position() {
        let n = m(
            "services:\n  app:\n    image: a:1\n    deploy: {replicas: 2}\n",
            "services:\n  app:\n    image: a:2\n",
        );
        let app = n.get("services").unwrap().get("app").unwrap();
        let image = app.get("image").unwrap();
        assert_eq!(image.as_str(), Some("a:2"));
        assert_eq!(&*image.pos.file, "b.yaml");
        assert_eq!(
            app.get("deploy").unwrap().get("replicas").unwrap().as_str(),
            Some("2")
        );
    }

    #[test]
    fn sequences_follow_the_compose_rules() {
        let n = m(
            "services:\n  app:\n    ports: ['80:80', '81:81']\n    dns: [a]\n    command: [x, y]\n    healthcheck: {test: [CMD, a]}\n    volumes: ['./a:/etc/a:ro', 'data:/data']\n    profiles: [p]\n",
            "services:\n  app:\n    ports: ['81:81', '82:82']\n    dns: [a]\n    command: [z]\n    healthcheck: {test: [CMD, b]}\n    volumes: ['./b:/etc/a']\n    profiles: [p, q]\n",
        );
        let app = n.get("services").unwrap().get("app").unwrap();
        assert_eq!(strs(app.get("ports").unwrap()), ["80:80", "81:81", "82:82"]);
        assert_eq!(strs(app.get("dns").unwrap()), ["a", "a"]);
        assert_eq!(strs(app.get("command").unwrap()), ["z"]);
        assert_eq!(
            strs(app.get("healthcheck").unwrap().get("test").unwrap()),
            ["CMD", "b"]
        );
        assert_eq!(
            strs(app.get("volumes").unwrap()),
            ["./b:/etc/a", "data:/data"]
        );
        assert_eq!(strs(app.get("profiles").unwrap()), ["p", "q"]);
    }

    #[test]
    fn depends_on_list_and_map_merge() {
        let n = m(
            "services:\n  app:\n    depends_on: [db]\n",
            "services:\n  app:\n    depends_on:\n      cache: {condition: service_healthy}\n",
        );
        let d = n
            .get("services")
            .unwrap()
            .get("app")
            .unwrap()
            .get("depends_on")
            .unwrap();
        let keys: Vec<_> = d.as_map().unwrap().iter().map(|e| e.key.as_str()).collect();
        assert_eq!(keys, ["db", "cache"]);
    }

    #[test]
    fn reset_and_override_tags() {
        let n = m(
            "services:\n  app:\n    ports: ['80:80']\n    deploy: {replicas: 2, update_config: {parallelism: 2}}\n",
            "services:\n  app:\n    ports: !reset []\n    deploy: !override {replicas: 3}\n",
        );
        let app = n.get("services").unwrap().get("app").unwrap();
        assert!(app.get("ports").is_none());
        assert!(app.get("deploy").unwrap().get("update_config").is_none());
        assert_eq!(
            app.get("deploy").unwrap().get("replicas").unwrap().as_str(),
            Some("3")
        );
    }

    #[test]
    fn extension_sequences_are_replaced() {
        let n = m(
            "x-rollout:\n  canary: {steps: [10, 50, 100]}\n",
            "x-rollout:\n  canary: {steps: [20, 100]}\n  strategy: canary\n",
        );
        let x = n.get("x-rollout").unwrap();
        assert_eq!(
            strs(x.get("canary").unwrap().get("steps").unwrap()),
            ["20", "100"]
        );
        assert_eq!(x.get("strategy").unwrap().as_str(), Some("canary"));
    }
}
