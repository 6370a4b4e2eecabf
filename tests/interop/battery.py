"""The full battery of the Aareguru server, for any client object with the SDK's session API
(`Client` or `ClientSession`): every tool, resource, template and prompt, with the recorded
upstream bodies' values checked."""

from __future__ import annotations

import json

from common import check, text_of

TOOLS = {
    "get_current_temperature",
    "get_current_conditions",
    "get_historical_data",
    "list_cities",
    "get_flow_danger_level",
    "compare_cities",
    "get_forecast",
}

async def exercise(call, label: str) -> None:
    """`call` is an object with the Client API (list_tools, call_tool, ...)."""
    tools = await call.list_tools()
    names = {t.name for t in tools.tools}
    check(names == TOOLS, f"{label}: tools/list names {names}")
    for t in tools.tools:
        check(t.input_schema.get("type") == "object", f"{label}: {t.name} schema is an object")
        check("aare.guru" in (t.description or ""), f"{label}: {t.name} description has attribution")

    r = await call.call_tool("get_current_temperature", {"city": "Bärn"})
    check(not r.is_error, f"{label}: get_current_temperature ok")
    check("12.5 °C" in text_of(r) and "unbearably cold" in text_of(r), f"{label}: Bern temperature + gloss")
    check(r.structured_content["station"]["slug"] == "bern", f"{label}: structured slug")

    r = await call.call_tool("get_current_temperature", {"city": " THUN "})
    check(not r.is_error and r.structured_content["station"]["slug"] == "thun", f"{label}: Thun resolved")

    r = await call.call_tool("get_current_conditions", {"city": "bern"})
    check(not r.is_error, f"{label}: get_current_conditions ok")
    check(r.structured_content["danger"]["level"] == 3, f"{label}: Bern danger level 3 at 247 m3/s")
    check(r.structured_content["season"] == "spring", f"{label}: May measurement is spring")

    r = await call.call_tool("get_flow_danger_level", {})
    check(not r.is_error and r.structured_content["flow"] == 247, f"{label}: default city flow")

    r = await call.call_tool("list_cities", {})
    check(not r.is_error and r.structured_content["count"] == 8, f"{label}: 8 cities")

    r = await call.call_tool("compare_cities", {"cities": ["bern", "thun", "Atlantis"]})
    check(not r.is_error, f"{label}: compare_cities ok with one unknown")
    check(len(r.structured_content["stations"]) == 2, f"{label}: two stations compared")
    check(r.structured_content["failures"][0]["city"] == "Atlantis", f"{label}: unknown reported")

    r = await call.call_tool("get_forecast", {"city": "bern"})
    check(not r.is_error and r.structured_content["trend"] == "stable", f"{label}: 12.5 -> 12.7 is stable")

    r = await call.call_tool("get_historical_data", {"city": "bern", "start": "-1 day", "end": "now"})
    check(not r.is_error, f"{label}: history ok")
    check(r.structured_content["summary"]["temperature"]["count"] > 100, f"{label}: history summary")

    # Tool errors, not protocol errors.
    r = await call.call_tool("get_current_temperature", {"city": "Zurich"})
    check(r.is_error and "Known stations" in text_of(r), f"{label}: unknown city is a tool error")
    r = await call.call_tool("get_historical_data", {"city": "bern", "start": "now", "end": "-1 day"})
    check(r.is_error and "must be before" in text_of(r), f"{label}: start >= end is a tool error")
    r = await call.call_tool("get_historical_data", {"city": "bern", "start": "soonish", "end": "now"})
    check(r.is_error and "-7 days" in text_of(r), f"{label}: bad date explains formats")
    r = await call.call_tool("get_current_temperature", {"city": 42})
    check(r.is_error and "`city`" in text_of(r), f"{label}: wrong argument type is a tool error")

    res = await call.list_resources()
    uris = {str(x.uri) for x in res.resources}
    check(uris == {"aareguru://cities", "aareguru://widget"}, f"{label}: resources {uris}")
    tpl = await call.list_resource_templates()
    templates = {x.uri_template for x in tpl.resource_templates}
    check(
        templates == {"aareguru://current/{city}", "aareguru://today/{city}"},
        f"{label}: templates {templates}",
    )
    for uri in ["aareguru://cities", "aareguru://widget", "aareguru://current/thun", "aareguru://today/interlaken"]:
        rr = await call.read_resource(uri)
        body = json.loads(rr.contents[0].text)
        check(body is not None, f"{label}: read {uri}")
    rr = await call.read_resource("aareguru://today/interlaken")
    check(json.loads(rr.contents[0].text)["name"] == "Interlake", f"{label}: today body is the recorded one")

    prompts = await call.list_prompts()
    pnames = {p.name for p in prompts.prompts}
    check(
        pnames == {"daily-swimming-report", "compare-swimming-spots", "weekly-trend-analysis"},
        f"{label}: prompts {pnames}",
    )
    for name, args in [
        ("daily-swimming-report", {"city": "thun", "include_forecast": "true"}),
        ("compare-swimming-spots", {"min_temperature": "18", "safety_only": "true"}),
        ("weekly-trend-analysis", {"city": "bern", "days": "7"}),
    ]:
        p = await call.get_prompt(name, args)
        check(len(p.messages) == 1 and p.messages[0].content.text, f"{label}: prompt {name}")


async def every_transport(base: str, label: str, headers: dict | None = None) -> None:
    """The battery through the Python SDK against the gateway at `base`: Streamable HTTP in
    2025-11-25 and 2026-07-28, then HTTP+SSE; `headers` (an API key, say) on every request."""
    import httpx2
    from mcp import Client, ClientSession
    from mcp.client.sse import sse_client
    from mcp.client.streamable_http import streamable_http_client

    for mode, version in [("legacy", "2025-11-25"), ("auto", "2026-07-28")]:
        async with httpx2.AsyncClient(headers=headers or {}, timeout=30) as http:
            async with Client(streamable_http_client(f"{base}/mcp", http_client=http), mode=mode) as c:
                check(c.protocol_version == version, f"{label} {mode}: negotiated {c.protocol_version}")
                await exercise(c, f"{label} Streamable HTTP {mode}")
    async with sse_client(f"{base}/sse", headers=headers) as (read, write):
        async with ClientSession(read, write) as s:
            init = await s.initialize()
            check(init.server_info.name == "aareguru-mcp", f"{label} SSE: initialized")
            await exercise(s, f"{label} SSE")
