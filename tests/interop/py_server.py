"""A Python SDK 2.x stdio MCP server (mcp 2.3.0's MCPServer), for the gateway to serve: it speaks
protocol revision 2026-07-28 itself, so the gateway passes those requests through.

Usage: python py_server.py [--http PORT]
"""

from typing import Annotated

from pydantic import BaseModel, Field

from mcp.server.mcpserver import Elicit, MCPServer, Resolve

server = MCPServer("python-interop-server")


@server.tool()
def add(a: int, b: int) -> int:
    """Adds two integers."""
    return a + b


@server.tool()
def deploy(
    region: Annotated[str, Field(json_schema_extra={"x-mcp-header": "Region"})],
    replicas: int = 1,
) -> str:
    """Deploys to a region; at 2026-07-28 `region` also travels as the Mcp-Param-Region header,
    which the gateway checks against the body (over stdio this server never sees headers)."""
    return f"deployed to {region} x{replicas}"


class Answer(BaseModel):
    colour: str


def ask_colour() -> Elicit[Answer]:
    return Elicit("Your favourite colour?", Answer)


@server.tool()
async def favourite_colour(answer: Annotated[Answer, Resolve(ask_colour)]) -> str:
    """Asks the client for a colour (elicitation; at 2026-07-28 as an input_required round trip)."""
    return f"colour: {answer.colour}"


@server.resource("py://greeting")
def greeting() -> str:
    """A fixed greeting."""
    return "hello from python"


@server.prompt()
def haiku(topic: str) -> str:
    """A prompt about a topic."""
    return f"Write a haiku about {topic}."


if __name__ == "__main__":
    import sys

    if sys.argv[1:2] == ["--http"]:
        # Natively over Streamable HTTP, to compare with the gateway in front of it.
        server.run("streamable-http", host="127.0.0.1", port=int(sys.argv[2]))
    else:
        server.run("stdio")
