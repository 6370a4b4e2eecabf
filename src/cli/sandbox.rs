//! The `sandbox` setting (servers file, `--sandbox`): a preset's name, or an object; and
//! `--child-env`, what children inherit.
//!
//! ```json
//! "sandbox": "node"
//! "sandbox": {"preset": "python", "readOnly": ["/srv/data"], "readWrite": ["/srv/out"],
//!             "network": [443], "limits": {"memory": "1GiB", "processes": 64, "cpu": "10m"},
//!             "runAs": "mcp", "allowUnsandboxed": false}
//! ```
//!
//! `"none"` turns the file's default sandbox off for one server. An entry's object is laid
//! over the file's default (`gateway.sandbox` at the top): lists add up, the rest replaces.
//! With a sandbox on and no limits said, a child gets [`DEFAULT_LIMITS`].
//!
//! Owns: reading that setting into a [`SandboxSpec`]. Must not touch: applying it.

use std::path::PathBuf;

use anyhow::{Context, bail};
use serde::Deserialize;
use serde_json::Value;

use super::duration::parse_duration;
use crate::{
    config::{Backend, Limits, Network, Preset, SandboxSpec},
    gateway::backend::sandbox as env,
};

/// What a sandboxed child may use when its settings say nothing: memory and files enough for
/// any MCP server, not enough to take the machine. Processes and CPU time stay unlimited: the
/// first counts every process of the user (set it with `runAs`), the second a shared child's
/// whole life.
pub const DEFAULT_LIMITS: Limits = Limits {
    memory: Some(2 << 30),
    cpu_seconds: None,
    processes: None,
    open_files: Some(1024),
    file_size: Some(1 << 30),
};

/// One level's setting, as written.
#[derive(Debug, Clone, PartialEq)]
pub enum Setting {
    /// `"none"`: no sandbox, whatever the default says.
    Off,
    On(Box<Layer>),
}

#[derive(Deserialize, Debug, Clone, Default, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Layer {
    preset: Option<String>,
    #[serde(default)]
    read_only: Vec<String>,
    #[serde(default)]
    read_write: Vec<String>,
    network: Option<Value>,
    #[serde(default)]
    limits: Option<LimitsSpec>,
    run_as: Option<Value>,
    allow_unsandboxed: Option<bool>,
}

#[derive(Deserialize, Debug, Clone, Default, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct LimitsSpec {
    memory: Option<Value>,
    cpu: Option<Value>,
    processes: Option<Value>,
    open_files: Option<Value>,
    file_size: Option<Value>,
}

/// Reads a `sandbox` value: a preset's name, `"none"`, or an object.
pub fn setting(value: &Value) -> anyhow::Result<Setting> {
    match value {
        Value::String(s) if s == "none" => Ok(Setting::Off),
        Value::String(s) => {
            preset(s)?;
            Ok(Setting::On(Box::new(Layer {
                preset: Some(s.clone()),
                ..Layer::default()
            })))
        }
        Value::Object(_) => {
            let layer: Layer = serde_path_to_error::deserialize(value.clone())
                .map_err(|e| anyhow::anyhow!("at {}: {}", e.path(), e.inner()))?;
            if let Some(p) = &layer.preset {
                preset(p)?;
            }
            Ok(Setting::On(Box::new(layer)))
        }
        other => bail!("expected \"node\", \"python\", \"none\" or an object, got {other}"),
    }
}

/// `--child-env`: names and globs, checked.
pub fn child_env(names: Vec<String>) -> anyhow::Result<Vec<String>> {
    let names: Vec<String> = names
        .into_iter()
        .map(|n| n.trim().to_string())
        .filter(|n| !n.is_empty())
        .collect();
    if let Some(bad) = names.iter().find(|n| !env::valid_pattern(n)) {
        bail!("--child-env {bad:?}: give variable names (letters, digits, '_'), or globs with '*'");
    }
    Ok(names)
}

/// `--sandbox` (a preset's name, `"none"`, or the object as JSON text) for the command line's
/// server, run on `backend`.
pub fn from_flag(flag: Option<&str>, backend: Backend) -> anyhow::Result<Option<SandboxSpec>> {
    let Some(text) = flag else {
        return Ok(None);
    };
    let spec = parse_flag(text)?;
    if spec.is_some() && backend == Backend::InProcess {
        bail!(
            "--sandbox walls in child processes; the built-in server runs in the gateway's own process here: add --backend per-session or shared"
        );
    }
    Ok(spec)
}

fn parse_flag(text: &str) -> anyhow::Result<Option<SandboxSpec>> {
    let text = text.trim();
    let value = if text.starts_with('{') {
        serde_json::from_str(text).context("--sandbox: not a JSON object")?
    } else {
        Value::String(text.to_string())
    };
    let s = setting(&value).context("--sandbox")?;
    resolve(None, Some(&s)).context("--sandbox")
}

/// The spec for a server with the file's `default` and its own `own` setting.
pub fn resolve(
    default: Option<&Setting>,
    own: Option<&Setting>,
) -> anyhow::Result<Option<SandboxSpec>> {
    let layers: Vec<&Layer> = match (default, own) {
        (_, Some(Setting::Off)) | (Some(Setting::Off), None) | (None, None) => return Ok(None),
        (Some(Setting::On(d)), Some(Setting::On(o))) => vec![d, o],
        (Some(Setting::Off) | None, Some(Setting::On(o))) => vec![o],
        (Some(Setting::On(d)), None) => vec![d],
    };
    let mut spec = SandboxSpec {
        limits: DEFAULT_LIMITS,
        ..SandboxSpec::default()
    };
    for layer in layers {
        if let Some(p) = &layer.preset {
            spec.preset = preset(p)?;
        }
        spec.read_only.extend(paths(&layer.read_only, "readOnly")?);
        spec.read_write
            .extend(paths(&layer.read_write, "readWrite")?);
        if let Some(n) = &layer.network {
            spec.network = network(n).context("network")?;
        }
        if let Some(l) = &layer.limits {
            limits(l, &mut spec.limits).context("limits")?;
        }
        if let Some(user) = &layer.run_as {
            spec.run_as = match user {
                Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_string()),
                Value::Number(n) if n.as_u64().is_some_and(|n| n <= u32::MAX as u64) => {
                    Some(n.to_string())
                }
                Value::Null => None,
                other => bail!("runAs: expected a user name or number, got {other}"),
            };
        }
        if let Some(a) = layer.allow_unsandboxed {
            spec.allow_unsandboxed = a;
        }
    }
    Ok(Some(spec))
}

fn preset(name: &str) -> anyhow::Result<Option<Preset>> {
    match name {
        "node" => Ok(Some(Preset::Node)),
        "python" => Ok(Some(Preset::Python)),
        "none" => Ok(None),
        other => bail!("{other:?} is not a preset: \"node\", \"python\" or \"none\""),
    }
}

fn paths(list: &[String], key: &str) -> anyhow::Result<Vec<PathBuf>> {
    list.iter()
        .map(|p| {
            let p = p.trim();
            if !p.starts_with('/') {
                bail!("{key}: {p:?} is not an absolute path");
            }
            Ok(PathBuf::from(p))
        })
        .collect()
}

/// `"none"`, `"all"`, or a list of TCP ports (numbers or `"443"`).
fn network(value: &Value) -> anyhow::Result<Network> {
    match value {
        Value::String(s) if s == "none" => Ok(Network::None),
        Value::String(s) if s == "all" => Ok(Network::All),
        Value::Array(items) => {
            let mut ports = vec![];
            for item in items {
                let port = match item {
                    Value::Number(n) => n.as_u64(),
                    Value::String(s) if s.contains(':') => bail!(
                        "{s:?}: the kernel filters TCP by port, not by host; list the port, and \
                         put an egress proxy in front of the hosts if they matter"
                    ),
                    Value::String(s) => s.trim().parse().ok(),
                    _ => None,
                };
                match port {
                    Some(p @ 1..=65535) => ports.push(p as u16),
                    _ => bail!("{item} is not a TCP port"),
                }
            }
            Ok(Network::Tcp(ports))
        }
        other => bail!("expected \"none\", \"all\" or a list of TCP ports, got {other}"),
    }
}

fn limits(spec: &LimitsSpec, into: &mut Limits) -> anyhow::Result<()> {
    let fields = [
        ("memory", &spec.memory, &mut into.memory, Kind::Bytes),
        (
            "fileSize",
            &spec.file_size,
            &mut into.file_size,
            Kind::Bytes,
        ),
        (
            "processes",
            &spec.processes,
            &mut into.processes,
            Kind::Count,
        ),
        (
            "openFiles",
            &spec.open_files,
            &mut into.open_files,
            Kind::Count,
        ),
        ("cpu", &spec.cpu, &mut into.cpu_seconds, Kind::Seconds),
    ];
    for (key, value, slot, kind) in fields {
        if let Some(v) = value {
            *slot = limit(v, kind).with_context(|| key.to_string())?;
        }
    }
    Ok(())
}

#[derive(Clone, Copy)]
enum Kind {
    Bytes,
    Count,
    Seconds,
}

/// A number, `"unlimited"` (or null), a size (`"512MiB"`, `"2G"`) or a duration (`"10m"`).
fn limit(value: &Value, kind: Kind) -> anyhow::Result<Option<u64>> {
    let n = match value {
        Value::Null => return Ok(None),
        Value::String(s) if s == "unlimited" => return Ok(None),
        Value::Number(n) => n.as_u64().context("expected a whole number")?,
        Value::String(s) => match kind {
            Kind::Bytes => size(s)?,
            Kind::Seconds => parse_duration(s)?.as_secs().max(1),
            Kind::Count => s.trim().parse().context("expected a whole number")?,
        },
        other => bail!("expected a number or \"unlimited\", got {other}"),
    };
    if n == 0 {
        bail!("0 would stop the child at once; say \"unlimited\" for no limit");
    }
    Ok(Some(n))
}

/// "512MiB", "1GiB", "100MB", "2G", "4096".
fn size(text: &str) -> anyhow::Result<u64> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let n: u64 = digits
        .parse()
        .with_context(|| format!("{text:?} is not a size; use e.g. 512MiB or 2GiB"))?;
    let factor: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        "t" | "tb" | "tib" => 1 << 40,
        _ => bail!("{text:?} is not a size; use e.g. 512MiB or 2GiB"),
    };
    n.checked_mul(factor).context("too large")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(default: Option<Value>, own: Option<Value>) -> anyhow::Result<Option<SandboxSpec>> {
        let d = default.map(|v| setting(&v)).transpose()?;
        let o = own.map(|v| setting(&v)).transpose()?;
        resolve(d.as_ref(), o.as_ref())
    }

    #[test]
    fn a_preset_word_turns_the_sandbox_on_with_the_default_limits() {
        let s = spec(None, Some(json!("node"))).unwrap().unwrap();
        assert_eq!(s.preset, Some(Preset::Node));
        assert_eq!(s.network, Network::None);
        assert_eq!(s.limits, DEFAULT_LIMITS);
        assert!(!s.allow_unsandboxed);
        assert_eq!(spec(None, None).unwrap(), None);
    }

    #[test]
    fn an_entry_lays_its_object_over_the_files_default() {
        let d = json!({"preset": "python", "readOnly": ["/srv/a"], "limits": {"memory": "1GiB"}});
        let o = json!({"readOnly": ["/srv/b"], "readWrite": ["/srv/out"], "network": [443, "5432"],
                       "limits": {"processes": 64, "cpu": "10m", "fileSize": "unlimited"},
                       "runAs": 65534});
        let s = spec(Some(d.clone()), Some(o)).unwrap().unwrap();
        assert_eq!(s.preset, Some(Preset::Python));
        assert_eq!(
            s.read_only,
            [PathBuf::from("/srv/a"), PathBuf::from("/srv/b")]
        );
        assert_eq!(s.read_write, [PathBuf::from("/srv/out")]);
        assert_eq!(s.network, Network::Tcp(vec![443, 5432]));
        assert_eq!(s.limits.memory, Some(1 << 30));
        assert_eq!(s.limits.processes, Some(64));
        assert_eq!(s.limits.cpu_seconds, Some(600));
        assert_eq!(s.limits.file_size, None);
        assert_eq!(s.limits.open_files, Some(1024));
        assert_eq!(s.run_as.as_deref(), Some("65534"));
        // "none" turns the default off for one server; the default alone applies otherwise.
        assert_eq!(spec(Some(d.clone()), Some(json!("none"))).unwrap(), None);
        assert!(spec(Some(d), None).unwrap().is_some());
    }

    #[test]
    fn mistakes_are_named() {
        let err = |v: Value| format!("{:#}", spec(None, Some(v)).unwrap_err());
        assert!(err(json!("deno")).contains("not a preset"));
        assert!(err(json!({"readOnly": ["relative/path"]})).contains("not an absolute path"));
        assert!(err(json!({"network": ["api.github.com:443"]})).contains("not by host"));
        assert!(err(json!({"network": [0]})).contains("not a TCP port"));
        assert!(err(json!({"network": "some"})).contains("expected"));
        assert!(err(json!({"limits": {"memory": "lots"}})).contains("memory"));
        assert!(err(json!({"limits": {"processes": 0}})).contains("unlimited"));
        assert!(err(json!({"readonly": []})).contains("unknown field"));
        assert!(err(json!(true)).contains("expected"));
    }

    #[test]
    fn sizes() {
        assert_eq!(size("512MiB").unwrap(), 512 << 20);
        assert_eq!(size("2G").unwrap(), 2 << 30);
        assert_eq!(size("4096").unwrap(), 4096);
        assert!(size("1.5G").is_err());
    }

    #[test]
    fn the_flag_takes_a_word_or_json() {
        let flag = |t| from_flag(Some(t), Backend::PerSession);
        assert_eq!(
            flag("python").unwrap().unwrap().preset,
            Some(Preset::Python)
        );
        assert_eq!(flag("none").unwrap(), None);
        let s = flag(r#"{"network": "all", "runAs": "nobody"}"#)
            .unwrap()
            .unwrap();
        assert_eq!(s.network, Network::All);
        assert_eq!(s.preset, None);
        assert!(flag("{oops").is_err());
        assert!(from_flag(Some("node"), Backend::InProcess).is_err());
        assert_eq!(from_flag(None, Backend::InProcess).unwrap(), None);
    }
}
