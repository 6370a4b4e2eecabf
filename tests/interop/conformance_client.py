"""The host the official conformance suite's client scenarios start: it runs
`aareguru-mcp --connect URL` (the client under test) and drives it over stdio with the Python
SDK — initialize, list the tools, call each tool the scenario offers — answering the
authorization headlessly (tests/support/oidc/browser.py follows the redirects).

The scenario's context (MCP_CONFORMANCE_CONTEXT) may carry pre-registered client credentials
(a secret, or a private key for private_key_jwt), a client metadata URL, or an IdP's ID token
for cross-app access; they become the bridge's flags.

Usage (by the suite): python conformance_client.py BIN URL
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import tempfile

from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client

BIN, URL = sys.argv[1], sys.argv[-1]
HERE = os.path.dirname(os.path.abspath(__file__))
BROWSER = f"{sys.executable} {os.path.join(HERE, '..', 'support', 'oidc', 'browser.py')}"


def temp_file(suffix: str, text: str) -> str:
    """A new file (readable by this user only) holding `text`; its path."""
    fd, path = tempfile.mkstemp(suffix=suffix)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    return path


def bridge_args() -> list[str]:
    context = json.loads(os.environ.get("MCP_CONFORMANCE_CONTEXT") or "{}")
    scenario = os.environ.get("MCP_CONFORMANCE_SCENARIO", "")
    args = ["--connect", URL, "--oauth-browser", BROWSER, "--oauth-token-dir", tempfile.mkdtemp(), "--oauth-timeout", "20s"]
    if context.get("client_id"):
        args += ["--oauth-client-id", context["client_id"]]
    if context.get("client_secret"):
        args += ["--oauth-client-secret", context["client_secret"]]
    if context.get("private_key_pem"):
        # private_key_jwt: the bridge signs its client assertions with this key.
        args += ["--oauth-private-key", temp_file(".pem", context["private_key_pem"])]
        if context.get("signing_algorithm"):
            args += ["--oauth-signing-alg", context["signing_algorithm"]]
    if context.get("idp_id_token"):
        # Cross-app access: the user's ID token from the IdP, traded there and at the server's
        # authorization server instead of a browser login.
        token_file = temp_file(".jwt", context["idp_id_token"])
        args += ["--oauth-id-token-file", token_file, "--oauth-idp-issuer", context["idp_issuer"]]
        if context.get("idp_client_id"):
            args += ["--oauth-idp-client-id", context["idp_client_id"]]
    if "client-credentials" in scenario:
        args.append("--oauth-client-credentials")
    # This host's Client ID Metadata Document (the suite's authorization server expects this
    # URL); used only where the authorization server supports such documents.
    args += ["--oauth-client-metadata-url", "https://conformance-test.local/client-metadata.json"]
    return args


async def elicitation(context, params):
    """Accepts, with the defaults the request's schema gives (what a form would prefill)."""
    import mcp.types as types

    schema = getattr(params, "requested_schema", None) or {}
    content = {name: prop["default"] for name, prop in schema.get("properties", {}).items() if "default" in prop}
    return types.ElicitResult(action="accept", content=content)


async def main() -> None:
    params = StdioServerParameters(command=BIN, args=bridge_args(), env={**os.environ, "RUST_LOG": "info"})
    async with stdio_client(params) as (read, write):
        async with ClientSession(read, write, elicitation_callback=elicitation) as s:
            await s.initialize()
            tools = await s.list_tools()
            for t in tools.tools:
                required = (t.input_schema or {}).get("required", [])
                args = {name: 1 for name in required}
                await s.call_tool(t.name, args)


asyncio.run(main())
