#!/usr/bin/env bash
# Builds the .deb: the release binary, then the man pages and shell completions that
# binary generates from its own clap definitions, then cargo-deb around them (the
# asset list is [package.metadata.deb] in Cargo.toml). Prints the .deb's path last.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release --locked
bin="${CARGO_TARGET_DIR:-target}/release/hookd"

# Cargo.toml's assets name these paths literally, so they stay under ./target.
out=target/packaging
rm -rf "$out"
mkdir -p "$out/man"
"$bin" man --out-dir "$out/man"
for shell in bash zsh fish; do
  "$bin" completions "$shell" >"$out/hookd.$shell"
done

cargo deb --no-build --locked --output target/debian/
