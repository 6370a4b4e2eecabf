//! The `Mcp-Param-*` headers a lane child's tools declare. A child reached over stdio never sees
//! the HTTP headers, so the gateway is the server the revision asks to compare them with the
//! body: it lists the child's tools on a call of its own (again when what it knows is 30 s old,
//! or lacks the tool called and is 2 s old) and checks each `tools/call` against them.
//!
//! Owns: the lane's knowledge of its child's tools. Must not touch: HTTP, parking.

use parking_lot::RwLock;
use std::{
    collections::HashMap,
    future::Future,
    sync::Arc,
    time::{Duration, Instant},
};

use serde_json::Value;

use crate::mcp::params::{self, ParamHeaders};

/// How long a listing is trusted.
const FRESH: Duration = Duration::from_secs(30);
/// How soon a call naming a tool the listing lacks lists again.
const UNKNOWN_AGAIN: Duration = Duration::from_secs(2);

#[derive(Default)]
struct Known {
    at: Option<Instant>,
    tools: HashMap<String, Arc<ParamHeaders>>,
}

/// What one lane knows of its child's tools.
#[derive(Default)]
pub(super) struct Tools {
    known: RwLock<Known>,
    /// One listing at a time; the others wait for it.
    listing: tokio::sync::Mutex<()>,
}

impl Tools {
    /// What tool `name` declares, `list`ing the child's tools first when needed; `None` for a
    /// tool the child does not list (it answers that call itself).
    pub(super) async fn declared<F, Fut>(&self, name: &str, list: F) -> Option<Arc<ParamHeaders>>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Vec<Value>, String>>,
    {
        if let Some(known) = self.fresh(name) {
            return known;
        }
        let _one = self.listing.lock().await;
        if let Some(known) = self.fresh(name) {
            return known;
        }
        let listed = list().await;
        let mut known = self.known.write();
        known.at = Some(Instant::now());
        match listed {
            Ok(tools) => known.tools = by_name(&tools),
            // Kept as it was: a child that cannot list is not refused its calls.
            Err(e) => tracing::warn!(
                error = %e,
                "stateless lane: cannot list the MCP server's tools; its Mcp-Param-* headers go unchecked for now"
            ),
        }
        known.tools.get(name).cloned()
    }

    /// `Some` when what is known answers for `name` without listing.
    fn fresh(&self, name: &str) -> Option<Option<Arc<ParamHeaders>>> {
        let known = self.known.read();
        let age = known.at?.elapsed();
        match known.tools.get(name) {
            Some(d) if age < FRESH => Some(Some(d.clone())),
            None if age < UNKNOWN_AGAIN => Some(None),
            _ => None,
        }
    }
}

/// Each listed tool's declarations; a tool with invalid ones declares nothing (clients drop
/// such tools and send no headers for them).
fn by_name(tools: &[Value]) -> HashMap<String, Arc<ParamHeaders>> {
    tools
        .iter()
        .filter_map(|t| {
            let name = t["name"].as_str()?;
            let declared = params::declared(&t["inputSchema"]).unwrap_or_else(|why| {
                tracing::debug!(tool = name, %why, "a tool's x-mcp-header annotations are invalid");
                ParamHeaders::default()
            });
            Some((name.to_string(), Arc::new(declared)))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use serde_json::json;

    use super::*;

    #[tokio::test]
    async fn lists_once_then_again_for_an_unknown_tool_only_after_a_while() {
        let tools = Tools::default();
        let lists = AtomicUsize::new(0);
        let list = || async {
            lists.fetch_add(1, Ordering::SeqCst);
            Ok(vec![
                json!({"name": "deploy", "inputSchema": {"properties": {
                    "region": {"type": "string", "x-mcp-header": "Region"}}}}),
                json!({"name": "bad", "inputSchema": {"properties": {
                    "n": {"type": "number", "x-mcp-header": "N"}}}}),
            ])
        };
        let d = tools.declared("deploy", list).await.unwrap();
        assert_eq!(d.headers_for(&json!({"region": "eu"})).len(), 1);
        assert!(tools.declared("bad", list).await.unwrap().is_empty());
        assert!(tools.declared("nope", list).await.is_none());
        assert_eq!(lists.load(Ordering::SeqCst), 1, "answered from the listing");
        tools.known.write().at = Some(Instant::now() - UNKNOWN_AGAIN);
        assert!(tools.declared("nope", list).await.is_none());
        assert_eq!(
            lists.load(Ordering::SeqCst),
            2,
            "an unknown tool lists again"
        );
        // A failed listing keeps what was known.
        tools.known.write().at = Some(Instant::now() - FRESH);
        let failed = || async { Err::<Vec<Value>, _>("child gone".to_string()) };
        assert!(tools.declared("deploy", failed).await.is_some());
    }
}
