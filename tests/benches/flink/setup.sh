#!/usr/bin/env bash
# Installs PyFlink (the Flink baseline of the SJoin bench) into a venv under
# ${STREAMHOST_TOOLS:-$HOME/.cache/streamhost}/flink-venv. Idempotent: once the
# pinned version is installed, a second run only checks a stamp file.
# Last line on stdout: the venv's python.
#
# Needs: python3 with the venv module (Debian: python3-venv) and a Java 17
# runtime (Debian: openjdk-17-jre-headless) for sjoin_flink.py.
set -euo pipefail

FLINK_VERSION=2.3.0
# The lookup baseline's Redis client (lookup_flink.py).
REDIS_PY_VERSION=5.2.1
TOOLS="${STREAMHOST_TOOLS:-$HOME/.cache/streamhost}"
VENV="$TOOLS/flink-venv"
PY="$VENV/bin/python"
STAMP="$VENV/.streamhost-apache-flink-$FLINK_VERSION-redis-$REDIS_PY_VERSION"

if [[ -x "$PY" && -f "$STAMP" ]]; then
    echo "$PY"
    exit 0
fi

mkdir -p "$TOOLS"
if [[ ! -x "$PY" ]]; then
    python3 -m venv "$VENV" >&2
fi
"$PY" -m pip install --quiet --disable-pip-version-check --upgrade pip >&2
"$PY" -m pip install --disable-pip-version-check "apache-flink==$FLINK_VERSION" "redis==$REDIS_PY_VERSION" >&2
# The install must be importable (pyflink ships Flink's jars under lib/).
"$PY" -c 'import pyflink, os; lib = os.path.join(os.path.dirname(pyflink.__file__), "lib"); assert any(f.startswith("flink-dist") for f in os.listdir(lib)), lib' >&2
touch "$STAMP"

if ! command -v java >/dev/null 2>&1 && [[ ! -x "${JAVA_HOME:-/usr/lib/jvm/java-17-openjdk-amd64}/bin/java" ]]; then
    echo "warning: no java found; PyFlink needs Java 11 or 17 (apt-get install openjdk-17-jre-headless)" >&2
fi
echo "$PY"
