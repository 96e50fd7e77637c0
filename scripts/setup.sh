#!/usr/bin/env bash
# Create .venv and install llmpulse with its test tools. Safe to run again.
# torch is pinned first: an unpinned torch would pull a multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q "torch==2.13.0"
.venv/bin/python -m pip install -q -e ".[test]"
echo "llmpulse installed in .venv ($(.venv/bin/python -c 'import llmpulse; print(llmpulse.__version__)'))"

# Alertmanager for the integration tests, taken from Debian's package so the tests
# run a real one without root or a container. apt-get download needs no root when
# the package lists exist; CI fails here rather than skipping those tests later.
# Debian's build reads its default templates from /usr/share/prometheus/alertmanager,
# which only root can fill, so the copy here reads them from its working directory
# instead (same-length string swap in the binary); run it from .venv/share/alertmanager.
AM_SHARE=.venv/share/alertmanager
if [ ! -x .venv/bin/alertmanager ] || [ ! -f "$AM_SHARE/email.tmpl" ]; then
  tmp=$(mktemp -d)
  chmod 755 "$tmp"  # readable by apt's _apt sandbox user when run as root
  trap 'rm -rf "$tmp"' EXIT
  fetch() { (cd "$tmp" && apt-get download -q prometheus-alertmanager >"$tmp/apt.log" 2>&1); }
  if ! fetch && [ "$(id -u)" = 0 ]; then
    apt-get update -qq >"$tmp/apt.log" 2>&1 || true
    fetch || true
  fi
  debs=("$tmp"/prometheus-alertmanager_*.deb)
  if [ ! -f "${debs[0]}" ]; then
    cat "$tmp/apt.log" >&2 || true
    echo "error: cannot download the Debian package prometheus-alertmanager (needed by the" \
      "integration tests). Run 'apt-get update' as root, then this script again." >&2
    exit 1
  fi
  dpkg-deb -x "${debs[0]}" "$tmp/root"
  mkdir -p "$AM_SHARE"
  cp "$tmp"/root/usr/share/prometheus/alertmanager/*.tmpl "$AM_SHARE/"
  .venv/bin/python - "$tmp/root/usr/bin/prometheus-alertmanager" "$tmp/alertmanager" <<'PYEOF'
import re
import sys

data = open(sys.argv[1], "rb").read()
old = b"/usr/share/prometheus/alertmanager"
hits = [m.start() for m in re.finditer(re.escape(old) + rb"(?!/)", data)]
if len(hits) != 1:
    sys.exit(f"error: expected the template directory once in the binary, found {len(hits)}")
new = b"./" * (len(old) // 2)
open(sys.argv[2], "wb").write(data[: hits[0]] + new + data[hits[0] + len(old) :])
PYEOF
  install -m 755 "$tmp/alertmanager" .venv/bin/alertmanager
  echo "alertmanager installed in .venv ($(.venv/bin/alertmanager --version 2>&1 | head -n 1))"
fi
