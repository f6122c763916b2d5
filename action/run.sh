#!/usr/bin/env bash
# The body of the GitHub Action (action.yml at the repository's root), and
# what .ci/run calls to exercise it:
#   run.sh key     where a built shmconf is cached: key=... (the source's
#                  hash, the machine's architecture and runner image) and
#                  dir=... to $GITHUB_OUTPUT (or stdout)
#   run.sh build   $SHMCONF_BIN if given (an installed shmconf); else the
#                  binary cached in $SHMCONF_CACHE_DIR if there is one; else
#                  build shmconf (release) beside this script and keep a copy
#                  in $SHMCONF_CACHE_DIR; prints bin=PATH to $GITHUB_OUTPUT
#                  (or stdout). The binary is self-contained: one file is
#                  all a cache has to hold.
#   run.sh run     run the scenarios as the SHMCONF_* variables say; JUnit to
#                  $SHMCONF_JUNIT, a Markdown summary appended to
#                  $GITHUB_STEP_SUMMARY (or $SHMCONF_SUMMARY); exit status is
#                  shmconf's (0 all good, 1 a scenario failed, 2 bad input or
#                  an empty selection, 4 nothing checked: every scenario a SKIP)
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
output=${GITHUB_OUTPUT:-/dev/stdout}

die() { echo "shmconf action: $*" >&2; exit 2; }

case "${1:-}" in
key)
  # Everything the binary is built from (sources, manifests, the catalogue
  # it carries, the C reference), in a stable order.
  source_hash=$(cd "$root" && find . -path ./target -prune -o -path ./.git -prune -o -type f \
    \( -name '*.rs' -o -name '*.toml' -o -name 'Cargo.lock' -o -name '*.c' -o -name '*.h' -o -name '*.conf' \) -print0 |
    sort -z | xargs -0 sha256sum | sha256sum | cut -c1-16)
  echo "key=shmconf-$(uname -m)-${ImageOS:-local}-${ImageVersion:-0}-$source_hash" >>"$output"
  echo "dir=${SHMCONF_CACHE_DIR:-$HOME/.cache/shmconf-action}" >>"$output"
  ;;
build)
  if [ -n "${SHMCONF_BIN:-}" ]; then
    [ -x "$SHMCONF_BIN" ] || die "SHMCONF_BIN=$SHMCONF_BIN is not an executable"
    echo "bin=$SHMCONF_BIN" >>"$output"
    exit 0
  fi
  cache=${SHMCONF_CACHE_DIR:-}
  if [ -n "$cache" ] && [ -x "$cache/shmconf" ]; then
    echo "shmconf action: the cached build ($cache/shmconf)" >&2
    echo "bin=$cache/shmconf" >>"$output"
    exit 0
  fi
  command -v cargo >/dev/null || die "cargo not found: install a Rust toolchain first (e.g. dtolnay/rust-toolchain@stable), or give bin:"
  cargo build --quiet --release --locked --manifest-path "$root/Cargo.toml" \
    -p shmconf-harness --bins
  bin=$root/target/release/shmconf
  if [ -n "$cache" ]; then
    mkdir -p "$cache" && cp "$bin" "$cache/shmconf"
    bin=$cache/shmconf
  fi
  echo "bin=$bin" >>"$output"
  ;;
run)
  bin=${SHMCONF_BIN:-$root/target/release/shmconf}
  [ -x "$bin" ] || die "no shmconf at $bin: run '$0 build' first"
  args=(run)
  read -r -a paths <<<"${SHMCONF_SCENARIO_PATHS:-}"
  if [ "${#paths[@]}" -eq 0 ]; then paths=("$root/scenarios"); fi
  args+=("${paths[@]}")
  if [ -n "${SHMCONF_IMPL_FILE:-}" ]; then
    [ -z "${SHMCONF_WRITER:-}${SHMCONF_READER:-}" ] || die "give impl-file or writer/reader, not both"
    args+=(--impl-file "$SHMCONF_IMPL_FILE")
  elif [ -n "${SHMCONF_WRITER:-}" ] || [ -n "${SHMCONF_READER:-}" ]; then
    [ -n "${SHMCONF_WRITER:-}" ] && [ -n "${SHMCONF_READER:-}" ] || die "writer and reader go together"
    args+=(--writer "$SHMCONF_WRITER" --reader "$SHMCONF_READER")
  else
    args+=(--impl "${SHMCONF_IMPLEMENTATION:-rust}")
  fi
  junit=${SHMCONF_JUNIT:-shmconf-junit.xml}
  mkdir -p "$(dirname "$junit")"
  junit=$(cd "$(dirname "$junit")" && pwd)/$(basename "$junit")
  args+=(--junit "$junit")
  summary=${GITHUB_STEP_SUMMARY:-${SHMCONF_SUMMARY:-}}
  if [ -n "$summary" ]; then args+=(--summary "$summary"); fi
  read -r -a extra <<<"${SHMCONF_ARGS:-}"
  args+=("${extra[@]}")
  as=()
  if [ "${SHMCONF_ROOT:-true}" = true ] && [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || die "root: true needs sudo (or set root: false)"
    as=(sudo '--preserve-env=PATH,HOME,TMPDIR,NO_COLOR')
  fi
  status=0
  "${as[@]}" "$bin" "${args[@]}" || status=$?
  echo "junit=$junit" >>"$output"
  if [ "$status" -eq 0 ]; then echo "passed=true" >>"$output"; else echo "passed=false" >>"$output"; fi
  exit "$status"
  ;;
*)
  die "usage: $0 key|build|run"
  ;;
esac
