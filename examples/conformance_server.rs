//! A stdio MCP server implementing the fixture tools, resources and prompts that the official
//! conformance suite (`@modelcontextprotocol/conformance`) calls by name, so the suite can test
//! the gateway's Streamable HTTP endpoint with this server behind it:
//! `aareguru-mcp --sse -- target/debug/examples/conformance_server`.
//!
//! One thread per request, so a tool waiting on the client (sampling, elicitation) or sleeping
//! between progress notifications does not hold up other requests. Written for this project
//! from the suite's scenario descriptions.

// This program is a stdio MCP server: stdout is its protocol.
#![allow(clippy::disallowed_methods)]

use parking_lot::Mutex;
use std::{
    collections::HashMap,
    io::{BufRead, Write},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
        mpsc,
    },
    thread,
    time::Duration,
};

use serde_json::{Value, json};

/// A 1×1 red PNG.
const PNG: &str = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg==";

struct Server {
    out: Mutex<std::io::Stdout>,
    /// Our requests to the client, by raw id, waiting for the answer.
    asking: Mutex<HashMap<String, mpsc::Sender<Value>>>,
    next_ask: AtomicU64,
    client_caps: Mutex<Value>,
    /// Flipped by `test_trigger_tool_change` / `test_trigger_prompt_change`: an extra tool or
    /// prompt is listed while set.
    extra_tool: std::sync::atomic::AtomicBool,
    extra_prompt: std::sync::atomic::AtomicBool,
}

impl Server {
    fn send(&self, message: &Value) {
        let mut out = self.out.lock();
        let _ = writeln!(out, "{message}");
        let _ = out.flush();
    }

    fn notify(&self, method: &str, params: Value) {
        self.send(&json!({"jsonrpc": "2.0", "method": method, "params": params}));
    }

    /// Sends the client a request and waits for its answer (the whole response message).
    fn ask(&self, method: &str, params: Value) -> Result<Value, String> {
        self.ask_as(None, method, params)
    }

    /// As [`Server::ask`], with a request id that names the question `key` (`key#n`): a
    /// gateway serving protocol revision 2026-07-28 turns the question into an input request
    /// of that key (the conformance suite checks some keys by name).
    fn ask_as(&self, key: Option<&str>, method: &str, params: Value) -> Result<Value, String> {
        let (tx, rx) = mpsc::channel();
        let id = {
            let mut asking = self.asking.lock();
            let n = self.next_ask.fetch_add(1, Ordering::Relaxed);
            // `key#n`: unique among the open requests, and asked under `key`.
            let id = format!("{}#{n}", key.unwrap_or("conformance"));
            asking.insert(json!(id).to_string(), tx);
            id
        };
        self.send(&json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}));
        let reply = rx
            .recv_timeout(Duration::from_secs(60))
            .map_err(|_| format!("no answer to {method}"));
        self.asking.lock().remove(&json!(id).to_string());
        let reply = reply?;
        match reply.get("error") {
            Some(e) => Err(format!("{method} failed: {e}")),
            None => Ok(reply["result"].clone()),
        }
    }

    fn client_can(&self, capability: &str) -> bool {
        self.client_caps.lock().get(capability).is_some()
    }
}

fn text(t: impl Into<String>) -> Value {
    json!({"content": [{"type": "text", "text": t.into()}]})
}

fn tool(name: &str, description: &str, schema: Value) -> Value {
    json!({"name": name, "description": description, "inputSchema": schema})
}

fn no_args() -> Value {
    json!({"type": "object", "properties": {}})
}

fn string_arg(name: &str, description: &str) -> Value {
    json!({"type": "object", "properties": {name: {"type": "string", "description": description}}, "required": [name]})
}

fn tools(server: &Server) -> Value {
    let mut list = listed_tools();
    if server.extra_tool.load(Ordering::Relaxed)
        && let Some(t) = list["tools"].as_array_mut()
    {
        t.push(tool(
            "test_dynamic_tool",
            "Listed after test_trigger_tool_change",
            no_args(),
        ));
    }
    list
}

fn listed_tools() -> Value {
    json!({"tools": [
        tool("test_simple_text", "Returns simple text content", no_args()),
        tool("test_image_content", "Returns an image", no_args()),
        tool("test_audio_content", "Returns audio", no_args()),
        tool("test_embedded_resource", "Returns an embedded resource", no_args()),
        tool("test_multiple_content_types", "Returns text, an image and a resource", no_args()),
        tool("test_tool_with_logging", "Logs three messages while it runs", no_args()),
        tool("test_error_handling", "Always fails", no_args()),
        tool("test_tool_with_progress", "Reports progress while it runs", no_args()),
        tool("test_sampling", "Asks the client's LLM", string_arg("prompt", "The prompt to send to the LLM")),
        tool("test_elicitation", "Asks the user", string_arg("message", "The message to show the user")),
        tool("test_elicitation_sep1034_defaults", "Elicitation with defaults for every primitive type", no_args()),
        tool("test_elicitation_sep1330_enums", "Elicitation with every enum schema variant", no_args()),
        tool("test_reconnection", "Answers after a pause (for SSE resumption)", no_args()),
        tool("test_missing_capability", "Asks the client's LLM (needs sampling)", no_args()),
        tool("test_streaming_elicitation", "Asks the user while it runs", no_args()),
        tool("test_logging_tool", "Logs while it runs", no_args()),
        tool("test_trigger_tool_change", "Adds or removes a tool (tools/list_changed)", no_args()),
        tool("test_trigger_prompt_change", "Adds or removes a prompt (prompts/list_changed)", no_args()),
        tool("test_input_required_result_elicitation", "Asks the user's name (user_name)", no_args()),
        tool("test_input_required_result_sampling", "Asks the LLM a question (capital_question)", no_args()),
        tool("test_input_required_result_list_roots", "Asks for the client's roots (client_roots)", no_args()),
        tool("test_input_required_result_request_state", "Asks for a confirmation (confirm)", no_args()),
        tool("test_input_required_result_multiple_inputs", "Asks three things at once", no_args()),
        tool("test_input_required_result_multi_round", "Asks twice, one after the other", no_args()),
        tool("test_input_required_result_tampered_state", "Asks for a confirmation", no_args()),
        tool("test_input_required_result_capabilities", "Asks the LLM and the user at once", no_args()),
        {
            "name": "test_custom_headers",
            "description": "Echoes arguments that travel in Mcp-Param headers too",
            "inputSchema": {"type": "object", "properties": {
                "region": {"type": "string", "x-mcp-header": "Region"},
                "query": {"type": "string"}}, "required": ["region"]}
        },
        {
            "name": "json_schema_2020_12_tool",
            "description": "Tool with JSON Schema 2020-12 features",
            "inputSchema": {
                "$schema": "https://json-schema.org/draft/2020-12/schema",
                "type": "object",
                "$defs": {"address": {"$anchor": "addressDef", "type": "object", "properties": {
                    "street": {"type": "string"}, "city": {"type": "string"}}}},
                "properties": {"name": {"type": "string"}, "address": {"$ref": "#/$defs/address"},
                    "contactMethod": {"type": "string", "enum": ["phone", "email"]},
                    "phone": {"type": "string"}, "email": {"type": "string"}},
                "allOf": [{"anyOf": [{"required": ["phone"]}, {"required": ["email"]}]}],
                "if": {"properties": {"contactMethod": {"const": "phone"}}, "required": ["contactMethod"]},
                "then": {"required": ["phone"]},
                "else": {"required": ["email"]},
                "additionalProperties": false
            }
        }
    ]})
}

fn call_tool(server: &Server, request: &Value) -> Result<Value, (i64, String)> {
    let params = &request["params"];
    let args = &params["arguments"];
    let token = params["_meta"]["progressToken"].clone();
    let name = params["name"].as_str().unwrap_or("");
    let failed = |e: String| json!({"isError": true, "content": [{"type": "text", "text": e}]});
    Ok(match name {
        "test_simple_text" => text("This is a simple text response for testing."),
        "test_image_content" => {
            json!({"content": [{"type": "image", "data": PNG, "mimeType": "image/png"}]})
        }
        "test_audio_content" => {
            json!({"content": [{"type": "audio", "data": base64(&wav()), "mimeType": "audio/wav"}]})
        }
        "test_embedded_resource" => json!({"content": [{"type": "resource", "resource": {
            "uri": "test://embedded-resource", "mimeType": "text/plain",
            "text": "This is an embedded resource content."}}]}),
        "test_multiple_content_types" => json!({"content": [
            {"type": "text", "text": "Multiple content types test:"},
            {"type": "image", "data": PNG, "mimeType": "image/png"},
            {"type": "resource", "resource": {"uri": "test://mixed-content-resource",
                "mimeType": "application/json", "text": "{\"test\":\"data\",\"value\":123}"}}
        ]}),
        "test_tool_with_logging" => {
            for (i, message) in [
                "Tool execution started",
                "Tool processing data",
                "Tool execution completed",
            ]
            .iter()
            .enumerate()
            {
                if i > 0 {
                    thread::sleep(Duration::from_millis(50));
                }
                server.notify(
                    "notifications/message",
                    json!({"level": "info", "logger": "conformance", "data": message}),
                );
            }
            text("Tool with logging executed successfully")
        }
        "test_error_handling" => {
            failed("This tool intentionally returns an error for testing".into())
        }
        "test_tool_with_progress" => {
            for (i, progress) in [0, 50, 100].iter().enumerate() {
                if i > 0 {
                    thread::sleep(Duration::from_millis(50));
                }
                if !token.is_null() {
                    server.notify(
                        "notifications/progress",
                        json!({"progressToken": token, "progress": progress, "total": 100}),
                    );
                }
            }
            text(format!("Progress tool completed (token {token})"))
        }
        "test_sampling" => {
            if !server.client_can("sampling") {
                return Ok(failed("the client does not support sampling".into()));
            }
            let prompt = args["prompt"].as_str().unwrap_or("");
            match server.ask(
                "sampling/createMessage",
                json!({"messages": [{"role": "user", "content": {"type": "text", "text": prompt}}],
                       "maxTokens": 100}),
            ) {
                Ok(r) => {
                    let answer = r["content"]["text"].as_str().unwrap_or("").to_string();
                    text(format!("LLM response: {answer}"))
                }
                Err(e) => failed(e),
            }
        }
        "test_elicitation" => {
            if !server.client_can("elicitation") {
                return Ok(failed("the client does not support elicitation".into()));
            }
            let message = args["message"].as_str().unwrap_or("");
            let schema = json!({"type": "object", "properties": {
                "username": {"type": "string", "description": "User's response"},
                "email": {"type": "string", "description": "User's email address"}},
                "required": ["username", "email"]});
            elicit(server, message, schema, "User response").unwrap_or_else(failed)
        }
        "test_elicitation_sep1034_defaults" => {
            let schema = json!({"type": "object", "properties": {
                "name": {"type": "string", "default": "John Doe"},
                "age": {"type": "integer", "default": 30},
                "score": {"type": "number", "default": 95.5},
                "status": {"type": "string", "enum": ["active", "inactive", "pending"], "default": "active"},
                "verified": {"type": "boolean", "default": true}}});
            elicit(
                server,
                "Please review your details",
                schema,
                "Elicitation completed",
            )
            .unwrap_or_else(failed)
        }
        "test_elicitation_sep1330_enums" => {
            let schema = json!({"type": "object", "properties": {
                "untitledSingle": {"type": "string", "enum": ["option1", "option2", "option3"]},
                "titledSingle": {"type": "string", "oneOf": [
                    {"const": "value1", "title": "First Option"},
                    {"const": "value2", "title": "Second Option"},
                    {"const": "value3", "title": "Third Option"}]},
                "legacyEnum": {"type": "string", "enum": ["opt1", "opt2", "opt3"],
                    "enumNames": ["Option One", "Option Two", "Option Three"]},
                "untitledMulti": {"type": "array", "items": {"type": "string", "enum": ["option1", "option2", "option3"]}},
                "titledMulti": {"type": "array", "items": {"anyOf": [
                    {"const": "value1", "title": "First Choice"},
                    {"const": "value2", "title": "Second Choice"},
                    {"const": "value3", "title": "Third Choice"}]}}}});
            elicit(server, "Choose options", schema, "Elicitation completed").unwrap_or_else(failed)
        }
        "test_reconnection" => {
            thread::sleep(Duration::from_millis(200));
            text("Reconnection test completed")
        }
        "json_schema_2020_12_tool" | "test_custom_headers" | "test_dynamic_tool" => {
            text(format!("received {args}"))
        }
        "test_missing_capability" => {
            let q = json!({"messages": [{"role": "user", "content": {"type": "text", "text": "Say hi"}}], "maxTokens": 10});
            match server.ask("sampling/createMessage", q) {
                Ok(r) => text(format!("LLM response: {}", r["content"]["text"])),
                Err(e) => failed(e),
            }
        }
        "test_streaming_elicitation" => {
            let schema = json!({"type": "object", "properties": {"answer": {"type": "string"}}});
            elicit(server, "Anything to add?", schema, "Elicitation completed")
                .unwrap_or_else(failed)
        }
        "test_logging_tool" => {
            for message in ["Logging tool started", "Logging tool finished"] {
                server.notify(
                    "notifications/message",
                    json!({"level": "info", "logger": "conformance", "data": message}),
                );
            }
            text("Logging tool executed")
        }
        "test_trigger_tool_change" => {
            server.extra_tool.fetch_xor(true, Ordering::Relaxed);
            server.notify("notifications/tools/list_changed", json!({}));
            text("tool list changed")
        }
        "test_trigger_prompt_change" => {
            server.extra_prompt.fetch_xor(true, Ordering::Relaxed);
            server.notify("notifications/prompts/list_changed", json!({}));
            text("prompt list changed")
        }
        name if name.starts_with("test_input_required_result_") => {
            input_required_tool(server, name).unwrap_or_else(failed)
        }
        other => return Err((-32602, format!("unknown tool {other}"))),
    })
}

/// The schema of a one-field form.
fn form(field: &str, kind: &str) -> Value {
    json!({"type": "object", "properties": {field: {"type": kind}}, "required": [field]})
}

fn ask_name(server: &Server, key: &str, message: &str) -> Result<Value, String> {
    let q = json!({"message": message, "requestedSchema": form("name", "string")});
    server.ask_as(Some(key), "elicitation/create", q)
}

fn ask_llm(server: &Server, key: &str, prompt: &str, max: u32) -> Result<Value, String> {
    let q = json!({"messages": [{"role": "user", "content": {"type": "text", "text": prompt}}], "maxTokens": max});
    server.ask_as(Some(key), "sampling/createMessage", q)
}

fn ask_roots(server: &Server, key: &str) -> Result<Value, String> {
    server.ask_as(Some(key), "roots/list", json!({}))
}

fn confirm(server: &Server) -> Result<bool, String> {
    let q = json!({"message": "Please confirm", "requestedSchema": form("ok", "boolean")});
    let r = server.ask_as(Some("confirm"), "elicitation/create", q)?;
    Ok(r["content"]["ok"].as_bool().unwrap_or(false))
}

/// The tools of the multi round-trip scenarios: questions asked the handshake era's way (a
/// gateway serving protocol revision 2026-07-28 turns them into input requests, keyed by id).
fn input_required_tool(server: &Server, name: &str) -> Result<Value, String> {
    Ok(
        match name.trim_start_matches("test_input_required_result_") {
            "elicitation" => {
                let r = ask_name(server, "user_name", "What is your name?")?;
                text(format!(
                    "Hello, {}!",
                    r["content"]["name"].as_str().unwrap_or("?")
                ))
            }
            "sampling" => {
                let r = ask_llm(
                    server,
                    "capital_question",
                    "What is the capital of France?",
                    100,
                )?;
                text(format!(
                    "LLM response: {}",
                    r["content"]["text"].as_str().unwrap_or("")
                ))
            }
            "list_roots" => {
                let r = ask_roots(server, "client_roots")?;
                text(format!("Roots: {}", r["roots"]))
            }
            "request_state" => text(format!("state-ok: confirmed={}", confirm(server)?)),
            "tampered_state" => text(format!("confirmed={}", confirm(server)?)),
            "multiple_inputs" | "capabilities" => {
                let all = name.ends_with("multiple_inputs");
                let (name, llm, roots) = thread::scope(|s| {
                    let name = s.spawn(|| ask_name(server, "user_name", "What is your name?"));
                    let llm = s.spawn(|| ask_llm(server, "greeting", "Generate a greeting", 50));
                    let roots = all.then(|| s.spawn(|| ask_roots(server, "client_roots")));
                    (name.join(), llm.join(), roots.map(|r| r.join()))
                });
                let show = |r: std::thread::Result<Result<Value, String>>| match r {
                    Ok(Ok(v)) => v.to_string(),
                    Ok(Err(e)) => format!("not answered ({e})"),
                    Err(_) => "failed".into(),
                };
                let mut t = format!("name: {}; greeting: {}", show(name), show(llm));
                if let Some(r) = roots {
                    t.push_str(&format!("; roots: {}", show(r)));
                }
                text(t)
            }
            "multi_round" => {
                let a = ask_name(server, "step1", "Step 1: What is your name?")?;
                let q = json!({"message": "Step 2: What is your favorite color?", "requestedSchema": form("color", "string")});
                let b = server.ask_as(Some("step2"), "elicitation/create", q)?;
                text(format!(
                    "{} likes {}",
                    a["content"]["name"], b["content"]["color"]
                ))
            }
            other => return Err(format!("unknown input-required tool {other}")),
        },
    )
}

fn elicit(server: &Server, message: &str, schema: Value, label: &str) -> Result<Value, String> {
    let r = server.ask(
        "elicitation/create",
        json!({"message": message, "requestedSchema": schema}),
    )?;
    Ok(text(format!(
        "{label}: action={}, content={}",
        r["action"].as_str().unwrap_or("?"),
        r.get("content").cloned().unwrap_or(json!({}))
    )))
}

fn resources() -> Value {
    json!({"resources": [
        {"uri": "test://static-text", "name": "static-text", "description": "A static text resource", "mimeType": "text/plain"},
        {"uri": "test://static-binary", "name": "static-binary", "description": "A static PNG image", "mimeType": "image/png"},
        {"uri": "test://watched-resource", "name": "watched-resource", "description": "A resource to subscribe to", "mimeType": "text/plain"}
    ]})
}

fn read_resource(uri: &str) -> Result<Value, (i64, String)> {
    let contents = match uri {
        "test://static-text" => {
            json!({"uri": uri, "mimeType": "text/plain", "text": "This is the content of the static text resource."})
        }
        "test://static-binary" => json!({"uri": uri, "mimeType": "image/png", "blob": PNG}),
        "test://watched-resource" => {
            json!({"uri": uri, "mimeType": "text/plain", "text": "Watched resource content."})
        }
        _ => match uri
            .strip_prefix("test://template/")
            .and_then(|r| r.strip_suffix("/data"))
        {
            Some(id) => json!({"uri": uri, "mimeType": "application/json",
                "text": json!({"id": id, "templateTest": true, "data": format!("Data for ID: {id}")}).to_string()}),
            None => return Err((-32002, format!("resource not found: {uri}"))),
        },
    };
    Ok(json!({"contents": [contents]}))
}

fn prompts(server: &Server) -> Value {
    let mut list = listed_prompts();
    if server.extra_prompt.load(Ordering::Relaxed)
        && let Some(p) = list["prompts"].as_array_mut()
    {
        p.push(json!({"name": "test_dynamic_prompt", "description": "Listed after test_trigger_prompt_change"}));
    }
    list
}

fn listed_prompts() -> Value {
    json!({"prompts": [
        {"name": "test_simple_prompt", "description": "A simple prompt without arguments"},
        {"name": "test_prompt_with_arguments", "description": "A prompt with arguments", "arguments": [
            {"name": "arg1", "description": "First test argument", "required": true},
            {"name": "arg2", "description": "Second test argument", "required": true}]},
        {"name": "test_prompt_with_embedded_resource", "description": "A prompt with an embedded resource", "arguments": [
            {"name": "resourceUri", "description": "URI of the resource to embed", "required": true}]},
        {"name": "test_prompt_with_image", "description": "A prompt with an image"},
        {"name": "test_input_required_result_prompt", "description": "A prompt that asks the user for context first"}
    ]})
}

fn get_prompt(server: &Server, params: &Value) -> Result<Value, (i64, String)> {
    let args = &params["arguments"];
    let arg = |k: &str| args[k].as_str().unwrap_or("").to_string();
    let user = |content: Value| json!({"role": "user", "content": content});
    let messages = match params["name"].as_str().unwrap_or("") {
        "test_simple_prompt" => {
            vec![user(
                json!({"type": "text", "text": "This is a simple prompt for testing."}),
            )]
        }
        "test_prompt_with_arguments" => vec![user(json!({"type": "text",
            "text": format!("Prompt with arguments: arg1='{}', arg2='{}'", arg("arg1"), arg("arg2"))}))],
        "test_prompt_with_embedded_resource" => vec![
            user(
                json!({"type": "resource", "resource": {"uri": arg("resourceUri"),
                "mimeType": "text/plain", "text": "Embedded resource content for testing."}}),
            ),
            user(json!({"type": "text", "text": "Please process the embedded resource above."})),
        ],
        "test_input_required_result_prompt" => {
            let q = json!({"message": "What context should the prompt use?", "requestedSchema": form("context", "string")});
            let r = server
                .ask_as(Some("user_context"), "elicitation/create", q)
                .map_err(|e| (-32603, e))?;
            let context = r["content"]["context"].as_str().unwrap_or("").to_string();
            vec![user(
                json!({"type": "text", "text": format!("Use this context: {context}")}),
            )]
        }
        "test_dynamic_prompt" => {
            vec![user(
                json!({"type": "text", "text": "A prompt that comes and goes."}),
            )]
        }
        "test_prompt_with_image" => vec![
            user(json!({"type": "image", "data": PNG, "mimeType": "image/png"})),
            user(json!({"type": "text", "text": "Please analyze the image above."})),
        ],
        other => return Err((-32602, format!("unknown prompt {other}"))),
    };
    Ok(json!({"messages": messages}))
}

fn complete(params: &Value) -> Value {
    let prefix = params["argument"]["value"].as_str().unwrap_or("");
    let values: Vec<&str> = ["paris", "park", "party", "hello", "world"]
        .into_iter()
        .filter(|v| v.starts_with(prefix))
        .collect();
    json!({"completion": {"values": values, "total": values.len(), "hasMore": false}})
}

fn handle(server: &Server, request: &Value) -> Result<Value, (i64, String)> {
    let params = &request["params"];
    match request["method"].as_str().unwrap_or("") {
        "initialize" => {
            *server.client_caps.lock() = params["capabilities"].clone();
            Ok(json!({
                "protocolVersion": params["protocolVersion"].as_str().unwrap_or("2025-06-18"),
                "capabilities": {
                    "tools": {"listChanged": true},
                    "resources": {"subscribe": true, "listChanged": true},
                    "prompts": {"listChanged": true},
                    "logging": {},
                    "completions": {}
                },
                "serverInfo": {"name": "aareguru-conformance-fixture", "version": env!("CARGO_PKG_VERSION")}
            }))
        }
        "ping" | "logging/setLevel" | "resources/subscribe" | "resources/unsubscribe" => {
            Ok(json!({}))
        }
        "tools/list" => Ok(tools(server)),
        "tools/call" => call_tool(server, request),
        "resources/list" => Ok(resources()),
        "resources/templates/list" => Ok(json!({"resourceTemplates": [
            {"uriTemplate": "test://template/{id}/data", "name": "template", "description": "Data by id", "mimeType": "application/json"}
        ]})),
        "resources/read" => read_resource(params["uri"].as_str().unwrap_or("")),
        "prompts/list" => Ok(prompts(server)),
        "prompts/get" => get_prompt(server, params),
        "completion/complete" => Ok(complete(params)),
        other => Err((-32601, format!("method not found: {other}"))),
    }
}

fn main() {
    let server = Arc::new(Server {
        out: Mutex::new(std::io::stdout()),
        asking: Mutex::default(),
        next_ask: AtomicU64::new(1),
        client_caps: Mutex::new(json!({})),
        extra_tool: Default::default(),
        extra_prompt: Default::default(),
    });
    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        let Ok(message) = serde_json::from_str::<Value>(&line) else {
            continue;
        };
        let id = message.get("id").cloned();
        match (id, message.get("method")) {
            // An answer to one of our requests.
            (Some(id), None) => {
                if let Some(tx) = server.asking.lock().remove(&id.to_string()) {
                    let _ = tx.send(message);
                }
            }
            (Some(id), Some(_)) => {
                let server = server.clone();
                thread::spawn(move || {
                    let reply = match handle(&server, &message) {
                        Ok(result) => json!({"jsonrpc": "2.0", "id": id, "result": result}),
                        Err((code, msg)) => {
                            json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": msg}})
                        }
                    };
                    server.send(&reply);
                });
            }
            // Notifications (initialized, cancelled, roots changed): nothing to do.
            (None, _) => {}
        }
    }
}

/// A short silent 8 kHz, 8-bit mono WAV.
fn wav() -> Vec<u8> {
    let samples = [128u8; 16];
    let mut v = Vec::new();
    v.extend_from_slice(b"RIFF");
    v.extend_from_slice(&(36 + samples.len() as u32).to_le_bytes());
    v.extend_from_slice(b"WAVEfmt ");
    v.extend_from_slice(&16u32.to_le_bytes());
    v.extend_from_slice(&1u16.to_le_bytes()); // PCM
    v.extend_from_slice(&1u16.to_le_bytes()); // mono
    v.extend_from_slice(&8000u32.to_le_bytes());
    v.extend_from_slice(&8000u32.to_le_bytes()); // byte rate
    v.extend_from_slice(&1u16.to_le_bytes()); // block align
    v.extend_from_slice(&8u16.to_le_bytes()); // bits per sample
    v.extend_from_slice(b"data");
    v.extend_from_slice(&(samples.len() as u32).to_le_bytes());
    v.extend_from_slice(&samples);
    v
}

fn base64(bytes: &[u8]) -> String {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ABC[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}
