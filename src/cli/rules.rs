//! The servers file's `rules` (gateway-wide under `"gateway"`, per server in its `"gateway"`,
//! per group beside `members`): a list of `{"name": "…", "allow": "<CEL>"}` or
//! `{"name": "…", "deny": "<CEL>"}`, each compiled here so that a bad rule refuses the file with
//! its name and column; plus `ruleHeaders` and `denied` (gateway-wide only).
//!
//! Owns: reading rules into [`RuleSource`]s. Must not touch: what they mean.

use anyhow::bail;
use serde::Deserialize;

use crate::{
    config::{DeniedAs, Effect, RuleSource},
    gateway::policy::rules,
};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSpec {
    name: Option<String>,
    allow: Option<String>,
    deny: Option<String>,
}

/// The rules of `level` ("gateway", a server's or a group's name), checked.
pub fn sources(level: &str, specs: Vec<RuleSpec>) -> anyhow::Result<Vec<RuleSource>> {
    let mut out: Vec<RuleSource> = vec![];
    for (i, spec) in specs.into_iter().enumerate() {
        let name = match spec.name.map(|n| n.trim().to_string()) {
            Some(n) if !n.is_empty() => n,
            Some(_) => bail!("rules[{i}]: the name is empty"),
            None => format!("{level}#{}", i + 1),
        };
        let (effect, expr) = match (spec.allow, spec.deny) {
            (Some(e), None) => (Effect::Allow, e),
            (None, Some(e)) => (Effect::Deny, e),
            _ => bail!("rules[{i}] ({name}): give exactly one of \"allow\" and \"deny\""),
        };
        if out.iter().any(|r| r.name == name) {
            bail!("rules[{i}]: two rules named {name:?}");
        }
        let source = RuleSource { name, effect, expr };
        if let Err(e) = rules::compile(&source) {
            bail!("rules[{i}]: {e}");
        }
        out.push(source);
    }
    Ok(out)
}

/// `denied`: `"unknown"` (the default) or `"error"`.
pub fn denied_as(value: Option<&str>) -> anyhow::Result<DeniedAs> {
    Ok(match value {
        None | Some("unknown") => DeniedAs::Unknown,
        Some("error") => DeniedAs::Error,
        Some(other) => bail!("denied: {other:?} is not \"unknown\" or \"error\""),
    })
}

/// `ruleHeaders`: header names, in lower case.
pub fn headers(names: Vec<String>) -> anyhow::Result<Vec<String>> {
    let mut out = vec![];
    for n in names {
        let n = n.trim().to_ascii_lowercase();
        if warp::http::HeaderName::from_bytes(n.as_bytes()).is_err() {
            bail!("ruleHeaders: {n:?} is not a header name");
        }
        if matches!(n.as_str(), "authorization" | "x-api-key" | "cookie") {
            bail!(
                "ruleHeaders: {n:?} carries credentials; rules read what they prove instead (jwt, key)"
            );
        }
        if !out.contains(&n) {
            out.push(n);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn specs(json: &str) -> Vec<RuleSpec> {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn rules_are_named_checked_and_kept_in_order() {
        let r = sources(
            "fs",
            specs(r#"[{"deny": "mcp.tool.name == 'rm'"}, {"name": "staff", "allow": "'staff' in jwt.groups"}]"#),
        )
        .unwrap();
        assert_eq!(r[0].name, "fs#1");
        assert_eq!(r[0].effect, Effect::Deny);
        assert_eq!(r[1].name, "staff");
        let e = sources("fs", specs(r#"[{"allow": "a", "deny": "b"}]"#)).unwrap_err();
        assert!(e.to_string().contains("exactly one"), "{e}");
        let e = sources("fs", specs(r#"[{"name": "x", "allow": "tool == 1"}]"#)).unwrap_err();
        assert!(
            e.to_string()
                .contains("rules[0]: rule \"x\": unknown variable \"tool\""),
            "{e}"
        );
        let e = sources(
            "fs",
            specs(r#"[{"name": "x", "allow": "true"}, {"name": "x", "deny": "false"}]"#),
        )
        .unwrap_err();
        assert!(e.to_string().contains("two rules named"), "{e}");
        assert!(headers(vec!["Authorization".into()]).is_err());
        assert_eq!(headers(vec!["X-Team".into()]).unwrap(), ["x-team"]);
        assert!(denied_as(Some("hide")).is_err());
    }
}
