//! The in-process MCP server: an rmcp `ServerHandler` exposing the Aareguru tools, resources and
//! prompts. It runs over any rmcp transport (stdio here; in-memory pipes in the gateway).
//!
//! Owns: the Aareguru MCP surface (tools, resources, prompts, completions). Must not touch:
//! transports — whoever runs it hands it an rmcp transport.

pub mod format;
pub mod prompts;
pub mod resources;
pub mod tools;

use std::{collections::HashMap, sync::Arc};

use rmcp::{
    ErrorData as McpError, RoleServer, ServerHandler,
    model::{
        CallToolRequestParams, CallToolResponse, CallToolResult, CompleteRequestParams,
        CompleteResult, CompletionInfo, ContentBlock, ErrorCode, GetPromptRequestParams,
        GetPromptResponse, Implementation, ListPromptsResult, ListResourceTemplatesResult,
        ListResourcesResult, ListToolsResult, PaginatedRequestParams, ReadResourceRequestParams,
        ReadResourceResponse, ServerCapabilities, ServerConfig, Tool,
    },
    service::RequestContext,
};
use serde_json::Value;

use crate::upstream::Upstream;

/// The error a cancelled call ends with (rmcp answers every request; the client that cancelled
/// it is no longer waiting, and the code says why to anyone who is).
const REQUEST_CANCELLED: i32 = -32800;

const INSTRUCTIONS: &str = "Live data about the Aare river in Switzerland (water temperature, \
flow, flow danger level, weather and forecasts) for its bathing spots from Brienz to Brugg. \
Start with get_current_temperature or get_current_conditions for one station (default Bern), \
compare_cities to choose where to swim, get_flow_danger_level for safety questions. Station \
names may be slugs (bern, thun) or Bernese names (Bärn, Interlake). Always mention safety when \
the danger level is 3 or higher. Data: aare.guru and BAFU (hydrodaten.admin.ch).";

/// The Aareguru MCP server. Cheap to clone: all clones share one upstream client and cache, so
/// every session served by one process shares it too.
#[derive(Clone)]
pub struct AareguruServer {
    /// Upstream API client with the shared cache.
    upstream: Upstream,
    /// The tool list, built once (schemas are generated from the argument types).
    tools: Arc<[Tool]>,
}

impl AareguruServer {
    pub fn new(upstream: Upstream) -> Self {
        Self {
            upstream,
            tools: tools::catalog().into(),
        }
    }
}

impl ServerHandler for AareguruServer {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(
            ServerCapabilities::builder()
                .enable_tools()
                .enable_resources()
                .enable_prompts()
                .enable_completions()
                .build(),
        )
        .with_server_info(
            Implementation::new("aareguru-mcp", env!("CARGO_PKG_VERSION"))
                .with_title("Aareguru – Aare river temperature and flow")
                .with_website_url("https://aare.guru"),
        )
        .with_instructions(INSTRUCTIONS)
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, McpError> {
        Ok(ListToolsResult::with_all_items(self.tools.to_vec()))
    }

    fn get_tool(&self, name: &str) -> Option<Tool> {
        self.tools.iter().find(|t| t.name == name).cloned()
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        let name = request.name.to_string();
        let started = std::time::Instant::now();
        // A call the client cancels stops here, its upstream request abandoned.
        let span = crate::telemetry::spans::tool(
            &name,
            context.meta.get_traceparent(),
            context.meta.get_tracestate(),
        );
        let call = tracing::Instrument::instrument(
            tools::call(&self.upstream, &name, request.arguments),
            span,
        );
        let outcome = tokio::select! {
            outcome = call => outcome,
            _ = context.ct.cancelled() => {
                tracing::info!(tool = %name, "tool call cancelled by the client");
                return Err(McpError::new(ErrorCode(REQUEST_CANCELLED), "request cancelled", None));
            }
        };
        let Some(outcome) = outcome else {
            return Err(McpError::invalid_params(
                format!(
                    "unknown tool {name:?}; available: {}",
                    self.tools
                        .iter()
                        .map(|t| t.name.as_ref())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                None,
            ));
        };
        let elapsed_ms = started.elapsed().as_millis() as u64;
        let result = match outcome {
            Ok(out) => {
                tracing::debug!(tool = %name, elapsed_ms, "tool call succeeded");
                let mut r = CallToolResult::success(vec![ContentBlock::text(out.text)]);
                r.structured_content = Some(out.data);
                r
            }
            Err(e) => {
                tracing::info!(tool = %name, elapsed_ms, error = %e, "tool call failed");
                CallToolResult::error(vec![ContentBlock::text(format!("Error: {e}"))])
            }
        };
        Ok(result.into())
    }

    async fn complete(
        &self,
        request: CompleteRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<CompleteResult, McpError> {
        let typed = request.argument.value.as_str();
        let mut values: Vec<String> = match request.argument.name.as_str() {
            // Station slugs matching what was typed, by slug or Bernese name. Best effort: if
            // the station list cannot be fetched there is simply nothing to suggest.
            "city" => {
                let wanted = crate::domain::city::fold(typed);
                self.upstream
                    .stations()
                    .await
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|s| {
                        crate::domain::city::fold(&s.slug).starts_with(&wanted)
                            || crate::domain::city::fold(&s.name).starts_with(&wanted)
                    })
                    .map(|s| s.slug)
                    .collect()
            }
            "include_forecast" | "safety_only" => vec!["true".into(), "false".into()],
            "days" => vec!["7".into(), "14".into(), "30".into()],
            "min_temperature" => vec!["16".into(), "18".into(), "20".into()],
            _ => vec![],
        };
        if request.argument.name != "city" {
            values.retain(|v| v.starts_with(typed.trim()));
        }
        let completion = CompletionInfo::with_all_values(values)
            .map_err(|e| McpError::internal_error(e, None))?;
        Ok(CompleteResult::new(completion))
    }

    async fn list_resources(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, McpError> {
        Ok(ListResourcesResult::with_all_items(resources::list()))
    }

    async fn list_resource_templates(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, McpError> {
        Ok(ListResourceTemplatesResult::with_all_items(
            resources::templates(),
        ))
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, McpError> {
        resources::read(&self.upstream, &request.uri)
            .await
            .map(Into::into)
    }

    async fn list_prompts(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListPromptsResult, McpError> {
        Ok(ListPromptsResult::with_all_items(prompts::list()))
    }

    async fn get_prompt(
        &self,
        request: GetPromptRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<GetPromptResponse, McpError> {
        // Prompt arguments are strings on the wire; accept numbers and booleans leniently.
        let args = request.arguments.map(|a| {
            a.into_iter()
                .map(|(k, v)| {
                    let s = match v {
                        Value::String(s) => s,
                        Value::Null => String::new(),
                        other => other.to_string(),
                    };
                    (k, s)
                })
                .collect::<HashMap<_, _>>()
        });
        prompts::get(&request.name, args).map(Into::into)
    }
}
