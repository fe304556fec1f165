# Shared by the examples' scripts, sourced from the repository's root once the environment is set:
# their messages, the streamhost binary, a free port. Set `name` first (it prefixes failures).

step() { printf '\n== %s\n' "$*"; }
fail() { echo "${name:-example}: $*" >&2; exit 1; }

# The binary: $STREAMHOST, or target/release/streamhost, built if needed.
if [ -n "${STREAMHOST:-}" ]; then
    bin=$STREAMHOST
else
    step "building streamhost (cargo build --release -p streamhost)"
    cargo build --release -p streamhost
    bin=target/release/streamhost
fi
[ -x "$bin" ] || fail "no streamhost binary at $bin"

# A free port of 127.0.0.1: bind port 0 and read what the kernel gave.
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
