#!/usr/bin/env bash
# Builds aareguru-mcp in release mode and installs it into $PREFIX/bin (default ~/.local/bin).
# Safe to run again: it rebuilds and replaces the binary atomically.
#   ./install.sh                      -> ~/.local/bin/aareguru-mcp
#   PREFIX=/usr/local ./install.sh    -> /usr/local/bin/aareguru-mcp
#   BINDIR=/opt/mcp/bin ./install.sh  -> /opt/mcp/bin/aareguru-mcp
set -euo pipefail

PREFIX="${PREFIX:-$HOME/.local}"
BINDIR="${BINDIR:-$PREFIX/bin}"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

if ! command -v cargo >/dev/null 2>&1; then
    echo "install.sh: cargo was not found on PATH." >&2
    echo "Install Rust (https://rustup.rs), open a new shell so ~/.cargo/bin is on PATH, and run ./install.sh again." >&2
    exit 1
fi

echo "Building aareguru-mcp (release)..."
cargo build --release --locked --manifest-path "$here/Cargo.toml"

mkdir -p "$BINDIR"
target="$BINDIR/aareguru-mcp"
# Copy then rename, so a running server keeps its old binary and nobody sees a half-written file.
install -m 0755 "$here/target/release/aareguru-mcp" "$target.new"
mv -f "$target.new" "$target"
echo "Installed $target ($("$target" --version))"

case ":$PATH:" in
    *":$BINDIR:"*) ;;
    *) echo "Note: $BINDIR is not on your PATH; MCP hosts need the full path below anyway." ;;
esac

cat <<JSON

Add this to Claude Desktop's claude_desktop_config.json
(macOS: ~/Library/Application Support/Claude/, Windows: %APPDATA%\\Claude\\, Linux: ~/.config/Claude/),
then restart Claude Desktop:

{
  "mcpServers": {
    "aareguru": {
      "command": "$target",
      "args": ["--stdio"]
    }
  }
}
JSON
