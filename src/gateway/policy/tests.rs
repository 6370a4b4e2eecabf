//! The rules' meaning, judged directly: levels, allow and deny, failures, listing.

use std::{collections::BTreeMap, sync::Arc};

use serde_json::json;

use super::*;
use crate::{
    config::{Effect, RuleSource},
    gateway::caller::KeyInfo,
};

/// Judged afresh (no session memo).
fn judge<'r>(
    levels: &[&'r RuleSet],
    caller: &Prepared,
    request: &Request<'_>,
    mode: Mode,
) -> (Decision, Vec<Failure<'r>>) {
    super::judge(levels, caller, request, mode, &mut Outcomes::default())
}

fn set(rules: &[(Effect, &str)]) -> RuleSet {
    let sources: Vec<RuleSource> = rules
        .iter()
        .enumerate()
        .map(|(i, (effect, expr))| RuleSource {
            name: format!("r{i}"),
            effect: *effect,
            expr: expr.to_string(),
        })
        .collect();
    RuleSet::compile(&sources).unwrap()
}

fn caller(groups: &[&str]) -> Prepared {
    Prepared::of(&Caller {
        subject: "alice".into(),
        claims: Arc::new(json!({"sub": "alice", "groups": groups})),
        scopes: vec!["mcp:tools".into()],
        address: Some("10.1.2.3".parse().unwrap()),
        headers: vec![("x-team".into(), "blue".into())],
        ..Caller::default()
    })
}

fn call<'a>(tool: &'a str, args: &'a serde_json::Value) -> Request<'a> {
    Request {
        server: "fs",
        method: "tools/call",
        tool,
        arguments: Some(Arguments::Value(args)),
        ..Request::default()
    }
}

#[test]
fn no_rules_allow_everything() {
    let empty = RuleSet::default();
    let (d, f) = judge(&[&empty], &caller(&[]), &call("x", &json!({})), Mode::Call);
    assert_eq!(d, Decision::Allow);
    assert!(f.is_empty());
}

#[test]
fn a_deny_rule_that_holds_denies_and_names_itself() {
    let rules = set(&[(
        Effect::Deny,
        "mcp.tool.name.startsWith('write_') && !('admins' in jwt.groups)",
    )]);
    let args = json!({});
    let staff = caller(&["staff"]);
    let admin = caller(&["admins"]);
    let (d, _) = judge(&[&rules], &staff, &call("write_file", &args), Mode::Call);
    assert_eq!(d, Decision::Deny("r0".into()));
    let (d, _) = judge(&[&rules], &admin, &call("write_file", &args), Mode::Call);
    assert_eq!(d, Decision::Allow);
    let (d, _) = judge(&[&rules], &staff, &call("read_file", &args), Mode::Call);
    assert_eq!(d, Decision::Allow);
}

#[test]
fn allow_rules_let_through_only_what_one_of_them_allows() {
    let rules = set(&[
        (Effect::Allow, "'staff' in jwt.groups"),
        (Effect::Allow, "request.headers['x-team'] == 'red'"),
    ]);
    let args = json!({});
    let (d, _) = judge(
        &[&rules],
        &caller(&["staff"]),
        &call("t", &args),
        Mode::Call,
    );
    assert_eq!(d, Decision::Allow);
    let (d, _) = judge(
        &[&rules],
        &caller(&["guests"]),
        &call("t", &args),
        Mode::Call,
    );
    assert_eq!(d, Decision::Deny("no allow rule (r0, r1)".into()));
}

#[test]
fn every_level_must_allow() {
    let gateway = set(&[(Effect::Deny, "source.address.startsWith('192.168.')")]);
    let server = set(&[(Effect::Allow, "subject == 'bob'")]);
    let args = json!({});
    let (d, _) = judge(
        &[&gateway, &server],
        &caller(&[]),
        &call("t", &args),
        Mode::Call,
    );
    assert_eq!(d, Decision::Deny("no allow rule (r0)".into()));
}

#[test]
fn a_failing_rule_denies_a_call_but_leaves_a_listing_undecided() {
    // The arguments are unknown while listing: the tool is listed, each call judged.
    let rules = set(&[(
        Effect::Allow,
        "mcp.tool.arguments.path.startsWith('/srv/public/')",
    )]);
    let c = caller(&[]);
    let listing = Request {
        server: "fs",
        method: "tools/call",
        tool: "read_file",
        ..Request::default()
    };
    let (d, failures) = judge(&[&rules], &c, &listing, Mode::List);
    assert_eq!(d, Decision::Allow);
    assert!(failures.is_empty(), "needing the arguments is no failure");
    let inside = json!({"path": "/srv/public/a.txt"});
    let outside = json!({"path": "/etc/passwd"});
    let missing = json!({});
    assert_eq!(
        judge(&[&rules], &c, &call("read_file", &inside), Mode::Call).0,
        Decision::Allow
    );
    assert_eq!(
        judge(&[&rules], &c, &call("read_file", &outside), Mode::Call).0,
        Decision::Deny("no allow rule (r0)".into())
    );
    let (d, failures) = judge(&[&rules], &c, &call("read_file", &missing), Mode::Call);
    assert_eq!(d, Decision::Deny("no allow rule (r0)".into()));
    assert!(failures[0].error.contains("path"), "{}", failures[0].error);
    // A deny rule that cannot be decided denies a call too.
    let rules = set(&[(Effect::Deny, "mcp.tool.arguments.mode == 'w'")]);
    assert_eq!(
        judge(&[&rules], &c, &call("x", &missing), Mode::Call).0,
        Decision::Deny("r0".into())
    );
    assert!(rules.deny[0].first_failure());
    assert!(!rules.deny[0].first_failure());
}

#[test]
fn keys_scopes_and_the_request_reach_the_rules() {
    let rules = set(&[(
        Effect::Allow,
        "key.name == 'ci' && key.labels.team == 'infra' && 'deploy' in scopes \
         && mcp.server == 'fs' && mcp.member == 'm' && mcp.method == 'prompts/get' \
         && mcp.prompt.name == 'p' && mcp.resource.uri == ''",
    )]);
    let c = Prepared::of(&Caller {
        subject: "api-key:ci".into(),
        key: Some(Arc::new(KeyInfo {
            name: "ci".into(),
            labels: BTreeMap::from([("team".into(), "infra".into())]),
        })),
        scopes: vec!["deploy".into()],
        ..Caller::default()
    });
    let r = Request {
        server: "fs",
        member: "m",
        method: "prompts/get",
        prompt: "p",
        ..Request::default()
    };
    assert_eq!(judge(&[&rules], &c, &r, Mode::Call).0, Decision::Allow);
    // Without a token, `jwt` is an empty map: `has()` works, a missing claim fails.
    let rules = set(&[(Effect::Deny, "!has(jwt.groups)")]);
    assert_eq!(
        judge(&[&rules], &c, &r, Mode::Call).0,
        Decision::Deny("r0".into())
    );
}

#[test]
fn a_session_remembers_outcomes_that_arguments_cannot_change() {
    let rules = set(&[
        (Effect::Deny, "mcp.tool.name == 'x' && jwt.missing == 1"),
        (Effect::Deny, "mcp.tool.arguments.mode == 'w'"),
    ]);
    let c = caller(&[]);
    let mut memo = Outcomes::default();
    let read = json!({"mode": "r"});
    let write = json!({"mode": "w"});
    // The first rule fails (no such claim) for `x`: remembered, so it fails once only.
    let (d, f) = super::judge(&[&rules], &c, &call("x", &read), Mode::Call, &mut memo);
    assert_eq!(d, Decision::Deny("r0".into()));
    assert_eq!(f.len(), 1);
    let (d, f) = super::judge(&[&rules], &c, &call("x", &read), Mode::Call, &mut memo);
    assert_eq!(d, Decision::Deny("r0".into()));
    assert!(f.is_empty());
    // The second reads the arguments: evaluated on every call, never remembered.
    let mut memo = Outcomes::default();
    let mut y = |args| super::judge(&[&rules], &c, &call("y", args), Mode::Call, &mut memo).0;
    let (first, second, third) = (y(&read), y(&write), y(&read));
    assert_eq!(first, Decision::Allow);
    assert_eq!(second, Decision::Deny("r1".into()));
    assert_eq!(third, Decision::Allow);
}

#[test]
fn an_outcome_without_the_arguments_is_remembered_when_it_holds_for_every_call() {
    // Guarded by the tool's name: for other tools the arguments are never read.
    let rules = set(&[
        (
            Effect::Deny,
            "mcp.tool.name == 'write_file' && mcp.tool.arguments.path.startsWith('/etc/')",
        ),
        (
            Effect::Allow,
            "mcp.tool.name != 'read_file' || mcp.tool.arguments.path.startsWith('/srv/')",
        ),
    ]);
    assert!(rules.deny[0].probes() && rules.allow[0].probes());
    let c = caller(&[]);
    let mut memo = Outcomes::default();
    let by_name = |tool| Request {
        server: "fs",
        method: "tools/call",
        tool,
        ..Request::default()
    };
    // Other tools: decided by name, whatever their arguments (none of them has `path`).
    let (d, f) = super::judge(&[&rules], &c, &by_name("list"), Mode::Name, &mut memo);
    assert_eq!((d, f.len()), (Decision::Allow, 0));
    let odd = json!({"path": 7});
    let (d, f) = super::judge(&[&rules], &c, &call("list", &odd), Mode::Call, &mut memo);
    assert_eq!((d, f.len()), (Decision::Allow, 0));
    // The guarded tools need their arguments, every time.
    for tool in ["write_file", "read_file"] {
        let mut memo = Outcomes::default();
        let (d, _) = super::judge(&[&rules], &c, &by_name(tool), Mode::Name, &mut memo);
        assert_eq!(d, Decision::NeedsArguments, "{tool}");
        let (d, _) = super::judge(&[&rules], &c, &by_name(tool), Mode::List, &mut memo);
        assert_eq!(
            d,
            Decision::Allow,
            "{tool} is listed: some calls of it are allowed"
        );
    }
    let mut memo = Outcomes::default();
    let mut read = |args: &serde_json::Value| {
        super::judge(
            &[&rules],
            &c,
            &call("read_file", args),
            Mode::Call,
            &mut memo,
        )
    };
    let inside = json!({"path": "/srv/a"});
    let outside = json!({"path": "/etc/passwd"});
    assert_eq!(read(&inside).0, Decision::Allow);
    let (d, f) = read(&outside);
    assert_eq!(
        (d, f.len()),
        (Decision::Deny("no allow rule (r1)".into()), 0)
    );
    let (d, f) = read(&json!({}));
    assert_eq!(d, Decision::Deny("no allow rule (r1)".into()));
    assert_eq!(
        f.len(),
        1,
        "a call without the path fails the rule, and says so"
    );
    assert_eq!(read(&inside).0, Decision::Allow);
    // A rule that reads `mcp.tool` whole is never decided without the arguments.
    let whole = set(&[(Effect::Deny, "size(mcp.tool) > 5")]);
    assert!(!whole.deny[0].probes());
    let mut memo = Outcomes::default();
    let (d, _) = super::judge(&[&whole], &c, &by_name("x"), Mode::Name, &mut memo);
    assert_eq!(d, Decision::NeedsArguments);
}

/// A rule that reads `mcp` by its flat names only runs without `mcp` built whole: it decides
/// and fails exactly as it does with `mcp` whole, with arguments and without.
#[test]
fn rules_read_the_same_from_flat_names_as_from_mcp_whole() {
    let exprs = [
        "mcp.tool.name == 'x' && mcp.tool.arguments.path.startsWith('/srv/')",
        "has(mcp.tool.arguments.path) && mcp.server == 'fs' && mcp.method == 'tools/call'",
        "mcp.tool.arguments.n == 3u && mcp.member == '' && mcp.prompt.name == ''",
        "mcp.resource.uri == '' || mcp.tool.arguments.missing == 1",
        "mcp.tool.arguments.path.size() > 3 && 'path' in mcp.tool.arguments",
        "mcp.tool.arguments.list.exists(x, x == mcp.tool.name)",
        "mcp.tool.arguments.nope.startsWith('/')",
    ];
    let c = caller(&["staff"]);
    let args = json!({"path": "/srv/a", "n": 3, "list": ["y", "x"]});
    let requests = [
        call("x", &args),
        Request {
            server: "fs",
            method: "resources/read",
            uri: "file:///a",
            ..Request::default()
        },
    ];
    for expr in exprs {
        let flat = set(&[(Effect::Deny, expr)]);
        let mut whole = set(&[(Effect::Deny, expr)]);
        assert!(flat.deny[0].flat.is_some(), "{expr}");
        whole.deny[0].flat = None;
        for r in &requests {
            let (a, fa) = judge(&[&flat], &c, r, Mode::Call);
            let (b, fb) = judge(&[&whole], &c, r, Mode::Call);
            assert_eq!(a, b, "{expr} on {}", r.method);
            let errors = |f: Vec<Failure>| f.into_iter().map(|f| f.error).collect::<Vec<_>>();
            assert_eq!(errors(fa), errors(fb), "{expr} on {}", r.method);
        }
    }
    // `mcp` named alone, even a comprehension's own, counts as reading it whole.
    for whole in [
        "has(mcp.server)",
        "size(mcp) > 0",
        "mcp.tool['name'] == 'x'",
        "[1].all(mcp, mcp == 1) && mcp.server == 'fs'",
    ] {
        assert!(
            set(&[(Effect::Deny, whole)]).deny[0].flat.is_none(),
            "{whole}"
        );
    }
}

/// The arguments reach the rules with the types `cel::to_value` gives JSON (built directly
/// now): every expression below evaluates the same against both.
#[test]
fn arguments_have_the_types_cel_gives_json() {
    let args = json!({"n": 3, "neg": -2, "f": 1.5, "s": "a\u{e9}", "list": [1, "x", null],
        "deep": {"k": [true, {"z": 0}]}, "nil": null, "big": u64::MAX});
    let exprs = [
        "mcp.tool.arguments.n == 3u",
        "mcp.tool.arguments.n == 3",
        "mcp.tool.arguments.neg == -2",
        "mcp.tool.arguments.f > 1.0",
        "mcp.tool.arguments.s == 'a\u{e9}'",
        "size(mcp.tool.arguments.list) == 3 && 'x' in mcp.tool.arguments.list",
        "mcp.tool.arguments.list[2] == null",
        "mcp.tool.arguments.deep.k[1].z == 0u",
        "has(mcp.tool.arguments.nil) && mcp.tool.arguments.nil == null",
        "!has(mcp.tool.arguments.missing)",
        "mcp.tool.arguments.big == 18446744073709551615u",
        "'n' in mcp.tool.arguments && size(mcp.tool.arguments) == 8",
        "mcp.tool.arguments.deep.k.exists(x, x == true)",
        "type(mcp.tool.arguments.n) == uint && type(mcp.tool.arguments.neg) == int",
        "mcp.server == 'fs' && mcp.method == 'tools/call' && mcp.tool.name == 'x'",
        "mcp.prompt.name == '' && mcp.resource.uri == '' && mcp.member == ''",
    ];
    let request = call("x", &args);
    let mut via_value = Context::with_env(STDLIB.clone());
    let mut built = Context::with_env(STDLIB.clone());
    built.add_variable_as_val("mcp", mcp(&request));
    // The arguments as their text (as a call carries them) are given to CEL alike.
    let text = serde_json::value::RawValue::from_string(args.to_string()).unwrap();
    let mut from_text = Context::with_env(STDLIB.clone());
    let request = Request {
        arguments: Some(Arguments::Text(&text)),
        ..request
    };
    from_text.add_variable_as_val("mcp", mcp(&request));
    let m = json!({"server": "fs", "member": "", "method": "tools/call",
        "tool": {"name": "x", "arguments": args}, "prompt": {"name": ""}, "resource": {"uri": ""}});
    via_value.add_variable_from_value("mcp", cel::to_value(m).unwrap());
    for expr in exprs {
        let program = STDLIB.compile(expr).unwrap();
        let (a, b) = (program.execute(&via_value), program.execute(&built));
        assert_eq!(a, b, "{expr}");
        assert_eq!(program.execute(&from_text), b, "{expr}");
        assert_eq!(b, Ok(Cel::Bool(true)), "{expr}");
    }
}
