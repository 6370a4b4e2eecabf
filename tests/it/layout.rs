//! The layout's doors, checked from the source: which file imports which (through `use` and
//! qualified `crate::`/`super::`/`self::` paths), that no files import each other in a cycle,
//! that each room only imports what it may, and that files stay small enough to read in one
//! sitting. See `src/lib.rs` for the map.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
};

/// Most lines a file may have outside its `#[cfg(test)]` part.
const MAX_LINES: usize = 520;

struct Crate {
    /// Module path ("gateway::backend::own") → file (relative to src/).
    modules: BTreeMap<String, String>,
    /// File → module paths it refers to (resolved to files).
    imports: BTreeMap<String, BTreeSet<String>>,
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// `gateway/backend/own.rs` → `gateway::backend::own`; `gateway/mod.rs` → `gateway`.
fn module_of(rel: &str) -> String {
    let rel = rel.trim_end_matches(".rs");
    let rel = rel.strip_suffix("/mod").unwrap_or(rel);
    if rel == "lib" || rel == "main" {
        return String::new();
    }
    rel.replace('/', "::")
}

/// The source without comments and string literals (so paths in docs and messages don't count),
/// and without the `#[cfg(test)]` part at the end of the file.
fn code_of(text: &str) -> String {
    let text = match text.find("#[cfg(test)]\nmod tests") {
        Some(i) => &text[..i],
        None => text,
    };
    let mut out = String::with_capacity(text.len());
    let b = text.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'/' && b.get(i + 1) == Some(&b'/') {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if b[i] == b'"' {
            i += 1;
            while i < b.len() && b[i] != b'"' {
                if b[i] == b'\\' {
                    i += 1;
                }
                i += 1;
            }
            i += 1;
            out.push_str("\"\"");
        } else if b[i] == b'r' && b.get(i + 1) == Some(&b'#') && b.get(i + 2) == Some(&b'"') {
            let end = text[i..].find("\"#").map_or(b.len(), |e| i + e + 2);
            i = end;
            out.push_str("\"\"");
        } else if b[i] == b'\'' && b.get(i + 2) == Some(&b'\'') {
            // A char literal such as '"' (lifetimes have no closing quote).
            i += 3;
        } else {
            out.push(b[i] as char);
            i += 1;
        }
    }
    out
}

/// Every path a `use` tree names: `a::{b, c::{d, e}}` → a::b, a::c::d, a::c::e.
fn expand_use(tree: &str) -> Vec<String> {
    fn split_top(s: &str) -> Vec<&str> {
        let (mut depth, mut start, mut parts) = (0, 0, vec![]);
        for (i, c) in s.char_indices() {
            match c {
                '{' => depth += 1,
                '}' => depth -= 1,
                ',' if depth == 0 => {
                    parts.push(&s[start..i]);
                    start = i + 1;
                }
                _ => {}
            }
        }
        parts.push(&s[start..]);
        parts
    }
    let tree: String = strip_renames(tree)
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    let mut out = vec![];
    match tree.find('{') {
        None => out.push(tree),
        Some(open) => {
            let prefix = tree[..open].trim_end_matches("::");
            let inner = &tree[open + 1..tree.rfind('}').unwrap_or(tree.len())];
            for part in split_top(inner) {
                if part.is_empty() {
                    continue;
                }
                for p in expand_use(part) {
                    out.push(if p == "self" {
                        prefix.to_string()
                    } else {
                        format!("{prefix}::{p}")
                    });
                }
            }
        }
    }
    out
}

/// `x as y` → `x` (only the imported name matters).
fn strip_renames(tree: &str) -> String {
    let words: Vec<&str> = tree.split_whitespace().collect();
    let mut out = String::new();
    let mut i = 0;
    while i < words.len() {
        if words[i] == "as" && i + 1 < words.len() {
            // Keep any punctuation glued after the alias (`y},` → `},`).
            let alias = words[i + 1];
            let tail = alias.trim_start_matches(is_ident);
            out.push_str(tail);
            i += 2;
            continue;
        }
        out.push_str(words[i]);
        out.push(' ');
        i += 1;
    }
    out
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Paths starting with `crate::`, `super::` or `self::` in code outside `use` statements.
fn inline_paths(code: &str) -> Vec<String> {
    let mut out = vec![];
    for start in ["crate::", "super::", "self::"] {
        let mut from = 0;
        while let Some(at) = code[from..].find(start) {
            let at = from + at;
            from = at + start.len();
            if at > 0 && is_ident(code[..at].chars().next_back().unwrap()) {
                continue;
            }
            // `use super::{…}` trees are read by the `use` parser.
            if !code[from..].starts_with(is_ident) {
                continue;
            }
            let rest = &code[at..];
            let end = rest
                .find(|c: char| !(is_ident(c) || c == ':'))
                .unwrap_or(rest.len());
            // `crate::x::{…}`: a use tree, read by the `use` parser.
            if rest[end..].starts_with('{') {
                continue;
            }
            out.push(rest[..end].trim_end_matches(':').to_string());
        }
    }
    out
}

impl Crate {
    fn load() -> Crate {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut files = vec![];
        rust_files(&src, &mut files);
        let mut modules = BTreeMap::new();
        let mut codes = BTreeMap::new();
        for f in &files {
            let rel = f
                .strip_prefix(&src)
                .unwrap()
                .to_string_lossy()
                .replace('\\', "/");
            if rel == "main.rs" {
                continue;
            }
            modules.insert(module_of(&rel), rel.clone());
            codes.insert(rel, code_of(&std::fs::read_to_string(f).unwrap()));
        }
        let mut krate = Crate {
            modules,
            imports: BTreeMap::new(),
        };
        for (file, code) in &codes {
            let here = module_of(file);
            let mut paths = vec![];
            let mut rest = code.as_str();
            while let Some(at) = rest.find("use ") {
                let before = rest[..at].chars().next_back();
                let tail = &rest[at + 4..];
                let end = tail.find(';').unwrap_or(tail.len());
                if before.is_none_or(|c| !is_ident(c)) {
                    paths.extend(expand_use(&tail[..end]));
                }
                rest = &tail[end..];
            }
            paths.extend(inline_paths(code));
            let targets: BTreeSet<String> = paths
                .iter()
                .filter_map(|p| krate.resolve(&here, file, p))
                .filter(|t| t != file)
                .collect();
            krate.imports.insert(file.clone(), targets);
        }
        krate
    }

    /// The file a path refers to: the deepest module it names.
    fn resolve(&self, here: &str, file: &str, path: &str) -> Option<String> {
        let mut segs: Vec<&str> = path.split("::").filter(|s| !s.is_empty()).collect();
        let mut base: Vec<String> = match segs.first()? {
            &"crate" => {
                segs.remove(0);
                vec![]
            }
            &"self" | &"super" => {
                // A file `x.rs` or `x/mod.rs` is module `x`; `self` is that module.
                let mut m: Vec<String> = if here.is_empty() {
                    vec![]
                } else {
                    here.split("::").map(str::to_string).collect()
                };
                let _ = file;
                while let Some(&s) = segs.first() {
                    match s {
                        "self" => {}
                        "super" => {
                            m.pop();
                        }
                        _ => break,
                    }
                    segs.remove(0);
                }
                m
            }
            _ => return None,
        };
        let start = base.len();
        for s in &segs {
            base.push(s.to_string());
        }
        for n in (start.min(base.len())..=base.len()).rev() {
            if let Some(f) = self.modules.get(&base[..n].join("::")) {
                return Some(f.clone());
            }
        }
        None
    }

    fn imports_of(&self, file: &str) -> &BTreeSet<String> {
        &self.imports[file]
    }

    /// Files whose imports lead back to themselves, as one cycle each.
    fn cycles(&self) -> Vec<Vec<String>> {
        let mut found = vec![];
        let mut done = BTreeSet::new();
        for start in self.imports.keys() {
            let mut stack = vec![(start.clone(), vec![start.clone()])];
            let mut seen = BTreeSet::new();
            while let Some((node, path)) = stack.pop() {
                for next in self.imports_of(&node) {
                    if next == start {
                        let mut key = path.clone();
                        key.sort();
                        if done.insert(key) {
                            found.push(path.clone());
                        }
                    } else if seen.insert(next.clone()) {
                        let mut p = path.clone();
                        p.push(next.clone());
                        stack.push((next.clone(), p));
                    }
                }
            }
        }
        found
    }
}

#[test]
fn no_file_imports_itself_through_others() {
    let krate = Crate::load();
    let cycles = krate.cycles();
    assert!(
        cycles.is_empty(),
        "import cycles between files:\n{}",
        cycles
            .iter()
            .map(|c| format!("  {} -> {}", c.join(" -> "), c[0]))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[test]
fn rooms_only_import_through_their_doors() {
    let krate = Crate::load();
    // (room, rooms it must not import); a room is a file or a folder prefix.
    let rules: &[(&str, &[&str])] = &[
        ("config/", &[""]),
        (
            "mcp/",
            &[
                "config", "domain", "upstream", "server", "gateway", "bridge", "stdio", "cli",
            ],
        ),
        (
            "domain/",
            &[
                "mcp", "config", "upstream", "server", "gateway", "bridge", "stdio",
            ],
        ),
        (
            "upstream.rs",
            &["mcp", "server", "gateway", "bridge", "stdio"],
        ),
        ("server/", &["gateway", "bridge", "stdio", "cli"]),
        // The client half of MCP over HTTP, driven by the bridge and the gateway alike.
        ("client/", &["gateway", "server", "stdio", "cli", "bridge"]),
        ("bridge/", &["gateway", "server", "stdio", "cli"]),
        (
            "gateway/backend/",
            &[
                "gateway/http",
                "gateway/session.rs",
                "gateway/mod.rs",
                "gateway/federation",
                "cli",
                "bridge",
            ],
        ),
        (
            // A group talks to its members through the backend traits only.
            "gateway/federation/",
            &[
                "gateway/http",
                "gateway/servers",
                "gateway/session.rs",
                "gateway/mod.rs",
                "gateway/stateless",
                "gateway/backend/per_session.rs",
                "gateway/backend/inprocess.rs",
                "gateway/backend/shared.rs",
                "gateway/backend/mux",
                "gateway/backend/process.rs",
                "gateway/backend/own.rs",
                "cli",
            ],
        ),
        (
            "gateway/session.rs",
            &[
                "gateway/http",
                "gateway/backend/per_session.rs",
                "gateway/backend/inprocess.rs",
                "gateway/backend/shared.rs",
                "gateway/backend/mux",
                "gateway/backend/process.rs",
                "gateway/backend/own.rs",
            ],
        ),
        (
            "gateway/http/",
            &["gateway/backend", "gateway/mod.rs", "cli"],
        ),
        (
            "gateway/stateless/",
            &["gateway/http", "gateway/mod.rs", "gateway/servers", "cli"],
        ),
        (
            "gateway/oauth/",
            &[
                "gateway/http",
                "gateway/servers",
                "gateway/session.rs",
                "gateway/backend",
                "gateway/mod.rs",
                "cli",
            ],
        ),
        (
            "gateway/backend/mux/",
            &["gateway/backend/process.rs", "gateway/backend/shared.rs"],
        ),
        (
            // Rules are a pure function of a caller and a request, both plain data.
            "gateway/policy/",
            &[
                "gateway/http",
                "gateway/servers",
                "gateway/session.rs",
                "gateway/backend",
                "gateway/federation",
                "gateway/stateless",
                "gateway/oauth",
                "gateway/mod.rs",
                "cli",
            ],
        ),
        // What an audit line says and how it is written: it sees no session or server.
        (
            "gateway/audit/",
            &[
                "gateway/http",
                "gateway/servers",
                "gateway/session.rs",
                "gateway/backend",
                "gateway/federation",
                "gateway/stateless",
                "gateway/policy",
                "gateway/mod.rs",
                "cli",
            ],
        ),
        // Who calls, as plain data: it judges nothing and serves nothing.
        (
            "gateway/caller.rs",
            &["gateway/", "cli", "server", "bridge"],
        ),
    ];
    let mut wrong = vec![];
    for (file, targets) in &krate.imports {
        for (room, forbidden) in rules {
            if !(file == room || file.starts_with(room)) {
                continue;
            }
            for t in targets {
                let bad = forbidden.iter().any(|f| {
                    if f.is_empty() {
                        return true;
                    }
                    let is_file = f.ends_with(".rs");
                    if is_file {
                        t == f
                    } else {
                        t.starts_with(&format!("{f}/")) || t == &format!("{f}.rs") || t == f
                    }
                });
                if bad {
                    wrong.push(format!("  {file} imports {t} (not allowed from {room})"));
                }
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "imports through the wrong door:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn files_stay_small_enough_to_read_in_one_sitting() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = vec![];
    rust_files(&src, &mut files);
    let mut long = vec![];
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        let code = match text.find("#[cfg(test)]") {
            Some(i) => &text[..i],
            None => &text,
        };
        let lines = code.lines().count();
        if lines > MAX_LINES {
            long.push(format!("  {} ({lines} lines)", f.display()));
        }
    }
    assert!(
        long.is_empty(),
        "files over {MAX_LINES} lines outside their tests:\n{}",
        long.join("\n")
    );
}

#[test]
fn every_module_says_what_it_owns() {
    let krate = Crate::load();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut silent = vec![];
    for file in krate.modules.values() {
        let text = std::fs::read_to_string(src.join(file)).unwrap();
        if !text.starts_with("//!") {
            silent.push(format!("  {file}"));
        }
    }
    assert!(
        silent.is_empty(),
        "modules without a header comment:\n{}",
        silent.join("\n")
    );
}

#[test]
fn the_checker_sees_imports() {
    // The checker itself: a use tree, a qualified path and a super path resolve to files.
    let krate = Crate::load();
    let session = krate.imports_of("gateway/session.rs");
    assert!(session.contains("gateway/backend/mod.rs"), "{session:?}");
    assert!(session.contains("config/mod.rs"), "{session:?}");
    let own = krate.imports_of("gateway/backend/own.rs");
    assert!(own.contains("gateway/metrics/mod.rs"), "{own:?}");
    assert_eq!(
        expand_use("a::{b, c::{d as e, self}}"),
        ["a::b", "a::c::d", "a::c"].map(str::to_string)
    );
}
