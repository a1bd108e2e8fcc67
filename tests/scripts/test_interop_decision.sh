#!/usr/bin/env bash
# Checks scripts/interop-decision.sh on a simulated fresh machine: a HOME
# with no ~/.cache, where `df ~/.cache` reads nothing and the interop used to
# be skipped for "under 12 GB free" whatever the disk held.
#   test_interop_decision.sh PATH/TO/interop-decision.sh
set -euo pipefail
decide="$1"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir "$tmp/home"
unset XDG_CACHE_HOME XQUANT_INTEROP_VENV XQUANT_SKIP_INTEROP XQUANT_INTEROP_NEED_GB
fresh() { HOME="$tmp/home" "$@"; }
fail() { echo "FAIL: $*"; exit 1; }

free_gb=$(( $(df -Pk "$tmp/home" | awk 'NR == 2 {print $4}') / 1024 / 1024 ))

# Room enough: the space is measured at $HOME, the nearest existing folder.
got=$(fresh env XQUANT_INTEROP_NEED_GB=0 bash "$decide")
[ "$got" = run ] || fail "with no room needed: '$got'"

# Too little room: the reason names the folder measured and its real free space.
got=$(fresh env XQUANT_INTEROP_NEED_GB=1000000 bash "$decide")
want="skip: a new venv at $tmp/home/.cache/xquant-interop needs 1000000 GB; $tmp/home has $free_gb GB free"
[ "$got" = "$want" ] || fail "too little room: got '$got', want '$want'"

# A cached venv is reused whatever the free space.
mkdir -p "$tmp/home/.cache/xquant-interop/bin"
printf '#!/bin/sh\n' > "$tmp/home/.cache/xquant-interop/bin/python"
chmod +x "$tmp/home/.cache/xquant-interop/bin/python"
got=$(fresh env XQUANT_INTEROP_NEED_GB=1000000 bash "$decide")
[ "$got" = run ] || fail "with a cached venv: '$got'"

# Skipping on purpose says so.
got=$(fresh env XQUANT_SKIP_INTEROP=1 bash "$decide")
[ "$got" = "skip: XQUANT_SKIP_INTEROP=1" ] || fail "XQUANT_SKIP_INTEROP=1: '$got'"
echo "interop_decision: passed (fresh HOME measured at $tmp/home: $free_gb GB free)"
