//! The tool-search index: which of a tool list's tools fit a request in words.
//!
//! BM25 (the crate's index and scorer) over four fields with weights — the tool's name
//! split into words (`get_flow_danger_level` and `getFlowDangerLevel` both give *get flow
//! danger level*), its title, its description, and its parameters' names and descriptions — on
//! English stems (Porter), without stop words. A query word also finds the longer words it
//! begins (`temp` → *temperature*, scored lower) and its synonyms from a short list of the verbs
//! and nouns tool descriptions use (`fetch` → *get*, `folder` → *directory*; scored lower than
//! the word itself), and shell shorthand is spelled out (`ls` → *list directory*). Each query
//! word counts once, by its best form, and a tool's score is scaled by the share of the query's
//! words it matches. Equal scores keep the list's order, so the answer is stable.
//! The words must be English: a query in another language than the descriptions finds little.
//!
//! Owns: tokenizing, the index and the ranking. Must not touch: sessions or I/O — it is a pure
//! function of (tool list, query).

use std::{
    borrow::Cow,
    collections::{HashMap, HashSet},
    sync::LazyLock,
};

use probly_search::{Index as Inverted, score::bm25};
use rust_stemmers::{Algorithm, Stemmer};
use serde_json::Value;

/// Field weights: name, title, description, parameters.
const BOOSTS: [f64; 4] = [3.0, 2.0, 1.0, 0.6];
/// A synonym's score against the word the query used.
const SYNONYM: f64 = 0.6;

static STEMMER: LazyLock<Stemmer> = LazyLock::new(|| Stemmer::create(Algorithm::English));

/// Words too common to tell tools apart.
const STOP: &[&str] = &[
    "a", "an", "the", "of", "to", "in", "on", "for", "and", "or", "is", "are", "be", "it", "its",
    "this", "that", "with", "by", "as", "at", "from", "me", "my", "i", "you", "your", "we", "our",
    "can", "could", "would", "should", "please", "want", "need", "some", "any", "do", "does",
    "what", "which", "how", "there", "into", "using", "use", "tool", "tools", "will", "if", "then",
    "than", "about", "so", "was", "were", "been", "has", "have", "had", "not",
];

/// Words that mean the same to someone asking for a tool (each line one group).
const SYNONYMS: &[&[&str]] = &[
    &[
        "get", "fetch", "retrieve", "read", "show", "obtain", "view", "display", "see",
    ],
    &["list", "enumerate", "browse"],
    &[
        "find", "search", "query", "lookup", "locate", "discover", "match",
    ],
    &["create", "make", "add", "generate", "build"],
    &[
        "delete", "remove", "erase", "drop", "destroy", "clear", "forget", "discard",
    ],
    &[
        "update", "edit", "modify", "change", "alter", "patch", "replace",
    ],
    &["write", "save", "store", "put", "persist", "record"],
    &["run", "execute", "invoke", "launch", "start", "trigger"],
    &["file", "document"],
    &["directory", "folder", "dir"],
    &["tree", "hierarchy", "recursive", "nested"],
    &["move", "rename", "relocate"],
    &["copy", "duplicate", "clone"],
    &[
        "info",
        "information",
        "details",
        "metadata",
        "stat",
        "stats",
        "attributes",
    ],
    &["time", "clock", "hour"],
    &["timezone", "zone"],
    &["convert", "translate", "transform"],
    &["weather", "forecast"],
    &[
        "temperature",
        "temp",
        "warm",
        "cold",
        "cool",
        "hot",
        "degrees",
    ],
    &["danger", "dangerous", "risk", "safe", "safety", "hazard"],
    &["swim", "swimming", "bath", "bathe", "bathing"],
    &["flow", "discharge", "current"],
    &["city", "town", "place", "location", "spot"],
    &["compare", "comparison", "versus", "difference", "rank"],
    &["history", "historical", "past", "previous", "earlier"],
    &["image", "picture", "photo"],
    &["sum", "add", "plus", "total"],
    &["echo", "repeat"],
    &["error", "fail", "failure"],
    &[
        "size", "bytes", "large", "larger", "big", "bigger", "small", "smaller",
    ],
    &["undo", "revert", "reset", "rollback", "unstage"],
    &["commit", "record", "checkin"],
    &["branch", "checkout"],
    &["log", "history"],
    &["diff", "difference"],
    &["entity", "node"],
    &["relation", "relationship", "link", "edge"],
    &["note", "observation", "memory", "remember"],
];

/// Shell and developer shorthand a query may use, and what it stands for.
const SHORTHAND: &[(&str, &str)] = &[
    ("ls", "list directory"),
    ("dir", "directory"),
    ("mkdir", "create directory"),
    ("rm", "delete"),
    ("rmdir", "delete directory"),
    ("mv", "move"),
    ("cp", "copy"),
    ("cat", "read file"),
    ("pwd", "current directory"),
    ("cd", "change directory"),
    ("grep", "search"),
    ("env", "environment variables"),
    ("tz", "timezone"),
    ("repo", "repository"),
    ("db", "database"),
    ("kb", "knowledge"),
    ("ts", "timestamp"),
];

/// `query` with its shorthand spelled out beside it.
fn spelled_out(query: &str) -> String {
    let mut out = query.to_string();
    words(query, |w| {
        let lower = w.to_lowercase();
        if let Some((_, long)) = SHORTHAND.iter().find(|(short, _)| *short == lower) {
            out.push(' ');
            out.push_str(long);
        }
    });
    out
}

/// Query stem → its synonyms' stems.
static SYNONYM_STEMS: LazyLock<HashMap<String, Vec<String>>> = LazyLock::new(|| {
    let mut map: HashMap<String, Vec<String>> = HashMap::new();
    for group in SYNONYMS {
        let stems: Vec<String> = group.iter().map(|w| stem(w)).collect();
        for s in &stems {
            let entry = map.entry(s.clone()).or_default();
            for other in &stems {
                if other != s && !entry.contains(other) {
                    entry.push(other.clone());
                }
            }
        }
    }
    map
});

fn stem(word: &str) -> String {
    STEMMER.stem(&word.to_lowercase()).into_owned()
}

/// Calls `each` with the words of `text`: runs of letters and digits, split again where
/// camelCase changes case (`getHTTPStatus` → get, HTTP, Status) and between letters and digits.
pub fn words(text: &str, mut each: impl FnMut(&str)) {
    for run in text.split(|c: char| !c.is_alphanumeric()) {
        let chars: Vec<(usize, char)> = run.char_indices().collect();
        let mut start = 0;
        for i in 1..chars.len() {
            let (prev, cur) = (chars[i - 1].1, chars[i].1);
            let next_lower = chars.get(i + 1).is_some_and(|(_, c)| c.is_lowercase());
            let split = (prev.is_lowercase() && cur.is_uppercase())
                || (prev.is_uppercase() && cur.is_uppercase() && next_lower)
                || (prev.is_alphabetic() != cur.is_alphabetic());
            if split {
                each(&run[start..chars[i].0]);
                start = chars[i].0;
            }
        }
        if start < run.len() {
            each(&run[start..]);
        }
    }
}

/// The terms of `text`: its words in lower case, stop words left out, stemmed.
fn terms(text: &str) -> Vec<Cow<'_, str>> {
    let mut out = Vec::new();
    words(text, |w| {
        let lower = w.to_lowercase();
        if !STOP.contains(&lower.as_str()) {
            out.push(Cow::Owned(STEMMER.stem(&lower).into_owned()));
        }
    });
    out
}

/// A query term is already a term.
fn as_is(term: &str) -> Vec<Cow<'_, str>> {
    vec![Cow::Borrowed(term)]
}

/// A tool as the index reads it.
struct Doc {
    name: String,
    title: String,
    description: String,
    parameters: String,
}

fn name_of(d: &Doc) -> Vec<&str> {
    vec![&d.name]
}
fn title_of(d: &Doc) -> Vec<&str> {
    vec![&d.title]
}
fn description_of(d: &Doc) -> Vec<&str> {
    vec![&d.description]
}
fn parameters_of(d: &Doc) -> Vec<&str> {
    vec![&d.parameters]
}

impl Doc {
    fn of(tool: &Value) -> Doc {
        let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
        let mut parameters = String::new();
        if let Some(props) = tool
            .pointer("/inputSchema/properties")
            .and_then(Value::as_object)
        {
            for (name, schema) in props {
                parameters.push_str(name);
                parameters.push(' ');
                if let Some(d) = schema.get("description").and_then(Value::as_str) {
                    parameters.push_str(d);
                    parameters.push(' ');
                }
            }
        }
        Doc {
            name: text(&tool["name"]),
            title: match tool.get("title") {
                Some(t) => text(t),
                None => text(&tool["annotations"]["title"]),
            },
            description: text(&tool["description"]),
            parameters,
        }
    }
}

/// One found tool: its place in the indexed list, and how well it fits.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Hit {
    pub place: usize,
    pub score: f64,
}

/// A tool list, indexed.
pub struct Index {
    tools: Vec<Value>,
    inverted: Inverted<usize>,
}

impl Index {
    /// Indexes `tools` (a `tools/list` answer's items, as the caller sees them).
    pub fn build(tools: Vec<Value>) -> Index {
        let mut inverted = Inverted::<usize>::new(BOOSTS.len());
        for (place, tool) in tools.iter().enumerate() {
            let doc = Doc::of(tool);
            inverted.add_document(
                &[name_of, title_of, description_of, parameters_of],
                terms,
                place,
                &doc,
            );
        }
        Index { tools, inverted }
    }

    pub fn tools(&self) -> &[Value] {
        &self.tools
    }

    /// The place of the tool named `name`.
    pub fn find(&self, name: &str) -> Option<usize> {
        self.tools.iter().position(|t| t["name"] == name)
    }

    /// Every tool's score for one term (and the longer terms it begins).
    fn scores(&self, term: &str) -> Vec<(usize, f64)> {
        self.inverted
            .query(term, &mut bm25::new(), as_is, &BOOSTS)
            .into_iter()
            .filter(|r| r.score.is_finite())
            .map(|r| (r.key, r.score))
            .collect()
    }

    /// The best `limit` tools for `query` among those `keep` lets through, best first.
    pub fn search(&self, query: &str, limit: usize, keep: impl Fn(&Value) -> bool) -> Vec<Hit> {
        let query = spelled_out(query);
        let terms = terms(&query);
        // Each stem scores once: a query's own words first, then each word's synonyms that no
        // earlier word brought (two words of one meaning do not lift a third word twice).
        let mut used: HashSet<&str> = terms.iter().map(|t| t.as_ref()).collect();
        let mut seen = HashSet::new();
        let mut total: HashMap<usize, (f64, usize)> = HashMap::new();
        for term in &terms {
            if !seen.insert(term.as_ref()) {
                continue;
            }
            let mut best: HashMap<usize, f64> = HashMap::new();
            let mut add = |found: &[(usize, f64)], factor: f64| {
                for (place, s) in found {
                    let b = best.entry(*place).or_insert(0.0);
                    *b = b.max(s * factor);
                }
            };
            let exact = self.scores(term);
            add(&exact, 1.0);
            let top = exact.iter().map(|(_, s)| *s).fold(0.0, f64::max);
            for synonym in SYNONYM_STEMS.get(term.as_ref()).into_iter().flatten() {
                if !used.insert(synonym) {
                    continue;
                }
                // A synonym counts less than the word itself, and a rare synonym must not
                // outrank the word: its scores are scaled so that its best is at most SYNONYM
                // of the word's best (when the word is found at all).
                let found = self.scores(synonym);
                let its_top = found.iter().map(|(_, s)| *s).fold(0.0, f64::max);
                let factor = if top > 0.0 && its_top > top {
                    SYNONYM * top / its_top
                } else {
                    SYNONYM
                };
                add(&found, factor);
            }
            for (place, s) in best {
                let (sum, matched) = total.entry(place).or_insert((0.0, 0));
                *sum += s;
                *matched += 1;
            }
        }
        // Coordination: a tool that matches more of the query's words ranks above one that
        // matches one word strongly (a long description is not outweighed by a short name).
        let words = seen.len().max(1) as f64;
        let mut hits: Vec<Hit> = total
            .into_iter()
            .filter(|(place, _)| keep(&self.tools[*place]))
            .map(|(place, (sum, matched))| Hit {
                place,
                score: sum * matched as f64 / words,
            })
            .collect();
        hits.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.place.cmp(&b.place)));
        hits.truncate(limit);
        hits
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn split(text: &str) -> Vec<String> {
        let mut out = vec![];
        words(text, |w| out.push(w.to_string()));
        out
    }

    #[test]
    fn names_split_into_words_whatever_their_case() {
        assert_eq!(
            split("get_flow_danger_level"),
            ["get", "flow", "danger", "level"]
        );
        assert_eq!(
            split("getFlowDangerLevel"),
            ["get", "Flow", "Danger", "Level"]
        );
        assert_eq!(
            split("getHTTPStatus2xx"),
            ["get", "HTTP", "Status", "2", "xx"]
        );
        assert_eq!(split("time__convert-time"), ["time", "convert", "time"]);
        assert!(split("").is_empty() && split("__").is_empty());
    }

    fn tool(name: &str, description: &str) -> Value {
        json!({"name": name, "description": description,
               "inputSchema": {"type": "object", "properties": {"path": {"type": "string", "description": "Where the file is"}}}})
    }

    fn names(index: &Index, query: &str) -> Vec<String> {
        index
            .search(query, 5, |_| true)
            .iter()
            .map(|h| index.tools()[h.place]["name"].as_str().unwrap().to_string())
            .collect()
    }

    #[test]
    fn the_fitting_tool_ranks_first() {
        let index = Index::build(vec![
            tool(
                "read_text_file",
                "Read the complete contents of a file as text.",
            ),
            tool(
                "list_directory",
                "Get a listing of all files and directories in a path.",
            ),
            tool(
                "get_current_time",
                "Get the current time in a specific timezone.",
            ),
            tool("move_file", "Move or rename files and directories."),
        ]);
        assert_eq!(names(&index, "read a file")[0], "read_text_file");
        assert_eq!(names(&index, "what is in this folder")[0], "list_directory");
        assert_eq!(
            names(&index, "current time in Tokyo")[0],
            "get_current_time"
        );
        assert_eq!(names(&index, "rename a document")[0], "move_file");
        // A word's beginning finds it.
        assert_eq!(names(&index, "timez")[0], "get_current_time");
        // Nothing in common: nothing found.
        assert!(names(&index, "zebra").is_empty());
        assert!(names(&index, "").is_empty());
    }

    #[test]
    fn equal_scores_keep_the_list_order_and_keep_filters() {
        let index = Index::build(vec![
            tool("bx_echo", "Echo the input."),
            tool("ay_echo", "Echo the input."),
            tool("cz_echo", "Echo the input."),
        ]);
        for _ in 0..5 {
            assert_eq!(names(&index, "echo"), ["bx_echo", "ay_echo", "cz_echo"]);
        }
        let hits = index.search("echo", 5, |t| t["name"] != "ay_echo");
        assert_eq!(hits.iter().map(|h| h.place).collect::<Vec<_>>(), [0, 2]);
        assert_eq!(index.search("echo", 1, |_| true).len(), 1);
    }

    #[test]
    fn odd_tools_index_without_panicking() {
        let index = Index::build(vec![
            json!({}),
            json!({"name": 5, "inputSchema": {"properties": {"x": 1}}}),
            json!({"name": "ok", "title": "Fine", "description": ""}),
        ]);
        assert_eq!(names(&index, "fine"), ["ok"]);
        assert_eq!(index.find("ok"), Some(2));
    }
}
