//! A group's catalog: how members' names become the group's (prefix modes, the separator, the
//! spec's tool-name rules) and how their lists merge into one, with the table that routes a
//! name or a resource URI back to its member. Pure: no I/O, no locks — tested directly.
//!
//! Owns: names and merging. Must not touch: sessions, backends, the wire.

use std::collections::HashMap;

use serde_json::Value;

use crate::{config::PrefixMode, mcp::names};

/// The lists a group merges.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ListKind {
    Tools,
    Prompts,
    Resources,
    Templates,
}

impl ListKind {
    pub const ALL: [ListKind; 4] = [
        ListKind::Tools,
        ListKind::Prompts,
        ListKind::Resources,
        ListKind::Templates,
    ];

    pub fn method(self) -> &'static str {
        match self {
            ListKind::Tools => "tools/list",
            ListKind::Prompts => "prompts/list",
            ListKind::Resources => "resources/list",
            ListKind::Templates => "resources/templates/list",
        }
    }

    pub fn from_method(method: &str) -> Option<ListKind> {
        ListKind::ALL.into_iter().find(|k| k.method() == method)
    }

    /// The field of the result that holds the items.
    pub fn field(self) -> &'static str {
        match self {
            ListKind::Tools => "tools",
            ListKind::Prompts => "prompts",
            ListKind::Resources => "resources",
            ListKind::Templates => "resourceTemplates",
        }
    }

    /// The field of an item that names it.
    pub fn key(self) -> &'static str {
        match self {
            ListKind::Tools | ListKind::Prompts => "name",
            ListKind::Resources => "uri",
            ListKind::Templates => "uriTemplate",
        }
    }

    /// The server capability that says a member has this list.
    pub fn capability(self) -> &'static str {
        match self {
            ListKind::Tools => "tools",
            ListKind::Prompts => "prompts",
            ListKind::Resources | ListKind::Templates => "resources",
        }
    }

    /// The notification a member sends when this list changes.
    pub fn changed(self) -> &'static str {
        match self {
            ListKind::Tools => "notifications/tools/list_changed",
            ListKind::Prompts => "notifications/prompts/list_changed",
            ListKind::Resources | ListKind::Templates => "notifications/resources/list_changed",
        }
    }

    /// Whether names of this list are namespaced (resource URIs are kept as they are).
    fn namespaced(self) -> bool {
        matches!(self, ListKind::Tools | ListKind::Prompts)
    }
}

/// How a group names its members' tools and prompts.
#[derive(Debug, Clone)]
pub struct Naming {
    pub prefix: PrefixMode,
    pub separator: String,
    /// Members in the group (for [`PrefixMode::Multiple`]).
    pub members: usize,
}

/// The longest tool name the spec allows.
pub const MAX_NAME: usize = names::MAX_TOOL_NAME;

impl Naming {
    /// Whether names carry their member's prefix.
    pub fn prefixed(&self) -> bool {
        match self.prefix {
            PrefixMode::Always => true,
            PrefixMode::Multiple => self.members > 1,
            PrefixMode::Never => false,
        }
    }

    /// The group's name for `member`'s `name`.
    pub fn exposed(&self, member: &str, name: &str) -> String {
        if self.prefixed() {
            format!("{member}{}{name}", self.separator)
        } else {
            name.to_string()
        }
    }
}

impl Naming {
    /// The member (longest name first) whose prefix `name` carries, and the rest of it.
    pub fn split<'a>(
        &self,
        members: impl IntoIterator<Item = (usize, &'a str)>,
        name: &str,
    ) -> Option<Route> {
        if !self.prefixed() {
            return None;
        }
        members
            .into_iter()
            .filter_map(|(i, m)| {
                let rest = name.strip_prefix(m)?.strip_prefix(&self.separator)?;
                (!rest.is_empty()).then(|| (m.len(), (i, rest.to_string())))
            })
            .max_by_key(|(len, _)| *len)
            .map(|(_, route)| route)
    }
}

/// The opaque cursor of the page after `key` (the last item's name or URI).
pub fn cursor_after(key: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("after:{key}"))
}

/// The key a cursor continues after; `None`: not one of ours.
pub fn after_cursor(cursor: &str) -> Option<String> {
    use base64::Engine;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(cursor)
        .ok()?;
    String::from_utf8(bytes)
        .ok()?
        .strip_prefix("after:")
        .map(str::to_string)
}

/// The page of `items` a client asked for with `cursor` (`None`: the first), `size` items long
/// (`0`: all): its items and the cursor of the next page. `Err` when the cursor is not one of
/// ours or its item is gone (the list changed since).
pub fn page<'a>(
    kind: ListKind,
    items: &'a [Value],
    cursor: Option<&str>,
    size: usize,
) -> Result<(&'a [Value], Option<String>), String> {
    let start = match cursor {
        None => 0,
        Some(c) => {
            let after = after_cursor(c).ok_or_else(|| format!("cursor {c:?} is not valid"))?;
            let at = items
                .iter()
                .position(|i| i.get(kind.key()).and_then(Value::as_str) == Some(after.as_str()))
                .ok_or_else(|| {
                    format!("cursor {c:?}: the list changed since; list again from the start")
                })?;
            at + 1
        }
    };
    let end = if size == 0 {
        items.len()
    } else {
        (start + size).min(items.len())
    };
    let page = &items[start..end];
    let next = (end < items.len())
        .then(|| page.last()?.get(kind.key())?.as_str().map(cursor_after))
        .flatten();
    Ok((page, next))
}

/// A route: the member (its index in the group) and the item's name there.
pub type Route = (usize, String);

/// A merged list.
#[derive(Debug, Default, Clone)]
pub struct Merged {
    pub items: Vec<Value>,
    /// The group's name (or URI) of each item → its member and its own name.
    pub routes: HashMap<String, Route>,
    /// Items left out, one line each (collisions, names too long).
    pub problems: Vec<String>,
}

/// Merges each member's items (in member order) into the group's list of `kind`.
pub fn merge(kind: ListKind, naming: &Naming, members: &[(usize, &str, &[Value])]) -> Merged {
    let mut out = Merged::default();
    for &(index, member, items) in members {
        for item in items {
            let Some(own) = item.get(kind.key()).and_then(Value::as_str) else {
                continue;
            };
            let name = if kind.namespaced() {
                naming.exposed(member, own)
            } else {
                own.to_string()
            };
            if kind == ListKind::Tools
                && !names::valid_tool_name(&name)
                && names::valid_tool_name(own)
            {
                out.problems.push(format!(
                    "{member}: tool {own:?} left out: {name:?} is not a valid tool name (over {MAX_NAME} characters?)"
                ));
                continue;
            }
            if let Some((first, _)) = out.routes.get(&name) {
                let first = members
                    .iter()
                    .find(|(i, _, _)| i == first)
                    .map_or("?", |m| m.1);
                out.problems.push(format!(
                    "{member}: {} {name:?} left out: {first:?} has one by that name",
                    kind.key().trim_start_matches("uri")
                ));
                continue;
            }
            let mut item = item.clone();
            if kind.namespaced() {
                item[kind.key()] = Value::String(name.clone());
            }
            out.routes.insert(name, (index, own.to_string()));
            out.items.push(item);
        }
    }
    out
}

/// The member whose template `uri` expands, if one does: the template whose literal start
/// (before its first `{`) is the longest prefix of `uri`.
pub fn template_for(templates: &HashMap<String, Route>, uri: &str) -> Option<usize> {
    templates
        .iter()
        .filter_map(|(template, (member, _))| {
            let literal = template.split('{').next().unwrap_or("");
            (template.contains('{') && !literal.is_empty() && uri.starts_with(literal))
                .then_some((literal.len(), *member))
        })
        .max_by_key(|(len, member)| (*len, std::cmp::Reverse(*member)))
        .map(|(_, member)| member)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn naming(prefix: PrefixMode, members: usize) -> Naming {
        Naming {
            prefix,
            separator: "__".into(),
            members,
        }
    }

    fn names(m: &Merged) -> Vec<&str> {
        m.items
            .iter()
            .map(|t| t["name"].as_str().unwrap())
            .collect()
    }

    #[test]
    fn pages_follow_a_cursor_to_the_end_and_refuse_a_stale_one() {
        let items: Vec<Value> = (0..5).map(|i| json!({"name": format!("t{i}")})).collect();
        let names = |p: &[Value]| {
            p.iter()
                .map(|i| i["name"].as_str().unwrap().to_string())
                .collect::<Vec<_>>()
        };
        let (p, next) = page(ListKind::Tools, &items, None, 2).unwrap();
        assert_eq!(names(p), ["t0", "t1"]);
        let (p, next) = page(ListKind::Tools, &items, next.as_deref(), 2).unwrap();
        assert_eq!(names(p), ["t2", "t3"]);
        let (p, next) = page(ListKind::Tools, &items, next.as_deref(), 2).unwrap();
        assert_eq!((names(p), next), (vec!["t4".to_string()], None));
        // Unpaged: everything, no cursor; a cursor given to an unpaged list still continues.
        let (p, next) = page(ListKind::Tools, &items, None, 0).unwrap();
        assert_eq!((p.len(), next), (5, None));
        let c = cursor_after("t2");
        assert_eq!(
            page(ListKind::Tools, &items, Some(&c), 0).unwrap().0.len(),
            2
        );
        // A cursor whose item is gone, or not ours.
        let gone = cursor_after("t9");
        assert!(
            page(ListKind::Tools, &items, Some(&gone), 2)
                .unwrap_err()
                .contains("changed")
        );
        assert!(
            page(ListKind::Tools, &items, Some("%%"), 2)
                .unwrap_err()
                .contains("not valid")
        );
    }

    #[test]
    fn always_prefixes_and_a_members_names_never_change() {
        let a = [json!({"name": "echo", "inputSchema": {}})];
        let b = [json!({"name": "echo"}), json!({"name": "now"})];
        let one = merge(
            ListKind::Tools,
            &naming(PrefixMode::Always, 1),
            &[(0, "a", &a[..])],
        );
        let two = merge(
            ListKind::Tools,
            &naming(PrefixMode::Always, 2),
            &[(0, "a", &a[..]), (1, "b", &b[..])],
        );
        assert_eq!(names(&one), ["a__echo"]);
        assert_eq!(names(&two), ["a__echo", "b__echo", "b__now"]);
        assert_eq!(two.routes["b__echo"], (1, "echo".to_string()));
        assert_eq!(two.items[0]["inputSchema"], json!({}));
        assert!(two.problems.is_empty());
        // Unlisted names route by their prefix, the longest member name first.
        let n = naming(PrefixMode::Always, 2);
        assert_eq!(
            n.split([(0, "a"), (1, "a__b")], "a__b__x"),
            Some((1, "x".into()))
        );
        assert_eq!(
            n.split([(0, "a"), (1, "a__b")], "a__y"),
            Some((0, "y".into()))
        );
        assert_eq!(n.split([(0, "a")], "a__"), None);
        assert_eq!(naming(PrefixMode::Never, 2).split([(0, "a")], "a__y"), None);
    }

    #[test]
    fn multiple_prefixes_only_with_several_members() {
        let a = [json!({"name": "echo"})];
        let one = merge(
            ListKind::Prompts,
            &naming(PrefixMode::Multiple, 1),
            &[(0, "a", &a[..])],
        );
        assert_eq!(names(&one), ["echo"]);
        let two = merge(
            ListKind::Prompts,
            &naming(PrefixMode::Multiple, 2),
            &[(0, "a", &a[..]), (1, "b", &a[..])],
        );
        assert_eq!(names(&two), ["a__echo", "b__echo"]);
    }

    #[test]
    fn never_keeps_the_first_members_name_and_reports_the_collision() {
        let a = [json!({"name": "echo"}), json!({"name": "only_a"})];
        let b = [json!({"name": "echo"}), json!({"name": "only_b"})];
        let m = merge(
            ListKind::Tools,
            &naming(PrefixMode::Never, 2),
            &[(0, "a", &a[..]), (1, "b", &b[..])],
        );
        assert_eq!(names(&m), ["echo", "only_a", "only_b"]);
        assert_eq!(m.routes["echo"].0, 0);
        assert_eq!(m.problems.len(), 1, "{:?}", m.problems);
        assert!(
            m.problems[0].contains("b:") && m.problems[0].contains("\"a\""),
            "{:?}",
            m.problems
        );
    }

    #[test]
    fn names_that_would_be_too_long_are_left_out_and_reported() {
        let long = "t".repeat(MAX_NAME - 2);
        let a = [json!({"name": long}), json!({"name": "ok"})];
        let m = merge(
            ListKind::Tools,
            &naming(PrefixMode::Always, 1),
            &[(0, "abc", &a[..])],
        );
        assert_eq!(names(&m), ["abc__ok"]);
        assert!(m.problems[0].contains("not a valid tool name"));
    }

    #[test]
    fn resources_keep_their_uris_and_templates_route_by_their_literal_start() {
        let a = [json!({"uri": "file:///a.txt"})];
        let b = [json!({"uri": "file:///a.txt"}), json!({"uri": "mem://b"})];
        let m = merge(
            ListKind::Resources,
            &naming(PrefixMode::Always, 2),
            &[(0, "a", &a[..]), (1, "b", &b[..])],
        );
        let uris: Vec<&str> = m.items.iter().map(|r| r["uri"].as_str().unwrap()).collect();
        assert_eq!(uris, ["file:///a.txt", "mem://b"]);
        assert_eq!(m.problems.len(), 1);
        let t = merge(
            ListKind::Templates,
            &naming(PrefixMode::Always, 2),
            &[
                (0, "a", &[json!({"uriTemplate": "test://static/{id}"})][..]),
                (
                    1,
                    "b",
                    &[json!({"uriTemplate": "test://static/big/{id}"})][..],
                ),
            ],
        );
        assert_eq!(template_for(&t.routes, "test://static/big/7"), Some(1));
        assert_eq!(template_for(&t.routes, "test://static/7"), Some(0));
        assert_eq!(template_for(&t.routes, "other://x"), None);
    }
}
