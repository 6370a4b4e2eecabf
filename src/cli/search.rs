//! The servers file's `toolSearch` (per server, per group, or as the file's default):
//!
//! ```json
//! "toolSearch": "search"            // or "activate", "off", true, false
//! "toolSearch": {"mode": "activate", "alwaysList": ["time__*"], "maxActive": 16, "limit": 5}
//! ```
//!
//! Owns: reading it into a [`ToolSearchConfig`]. Must not touch: serving it.

use anyhow::{Context, bail};
use serde::Deserialize;
use serde_json::Value;

use crate::config::ToolSearchConfig;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Spec {
    mode: Option<String>,
    #[serde(default)]
    always_list: Vec<String>,
    max_active: Option<usize>,
    limit: Option<usize>,
}

/// `toolSearch` if written; `None` when absent or off.
pub(super) fn optional(raw: Option<&Value>) -> anyhow::Result<Option<ToolSearchConfig>> {
    raw.map_or(Ok(None), tool_search)
}

/// `toolSearch` as written; `None` when it is off.
pub(super) fn tool_search(raw: &Value) -> anyhow::Result<Option<ToolSearchConfig>> {
    let spec = match raw {
        Value::Bool(false) | Value::Null => return Ok(None),
        Value::Bool(true) => Spec::default(),
        Value::String(mode) => Spec {
            mode: Some(mode.clone()),
            ..Spec::default()
        },
        other => serde_path_to_error::deserialize(other.clone())
            .map_err(|e| anyhow::anyhow!("at toolSearch.{}: {}", e.path(), e.inner()))?,
    };
    let activate = match spec.mode.as_deref().map(str::trim) {
        None | Some("search") => false,
        Some("activate") => true,
        Some("off") => return Ok(None),
        Some(other) => bail!("toolSearch: mode {other:?}: \"search\", \"activate\" or \"off\""),
    };
    for glob in &spec.always_list {
        if glob.trim().is_empty() {
            bail!("toolSearch.alwaysList: an empty tool name");
        }
    }
    let max_active = spec.max_active.unwrap_or(16);
    let limit = spec.limit.unwrap_or(5);
    if max_active == 0 || limit == 0 || limit > 50 {
        return Err(anyhow::anyhow!(
            "maxActive must be at least 1 and limit 1 to 50 (got {max_active} and {limit})"
        ))
        .context("toolSearch");
    }
    Ok(Some(ToolSearchConfig {
        activate,
        always_list: spec.always_list,
        max_active,
        limit,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_short_and_long_forms() {
        assert_eq!(tool_search(&json!(false)).unwrap(), None);
        assert_eq!(tool_search(&json!("off")).unwrap(), None);
        let s = tool_search(&json!("search")).unwrap().unwrap();
        assert!(!s.activate && s.limit == 5 && s.max_active == 16);
        assert_eq!(tool_search(&json!(true)).unwrap(), Some(s));
        let a = tool_search(
            &json!({"mode": "activate", "alwaysList": ["t*"], "maxActive": 2, "limit": 9}),
        )
        .unwrap()
        .unwrap();
        assert!(a.activate && a.always_list == ["t*"] && a.max_active == 2 && a.limit == 9);
    }

    #[test]
    fn mistakes_are_named() {
        let e = |v: Value| format!("{:#}", tool_search(&v).unwrap_err());
        assert!(e(json!("find")).contains("\"find\""));
        assert!(e(json!({"mode": "search", "max": 1})).contains("max"));
        assert!(e(json!({"limit": 0})).contains("limit"));
        assert!(e(json!({"alwaysList": [" "]})).contains("alwaysList"));
        assert!(e(json!(3)).contains("toolSearch"));
    }
}
