#!/usr/bin/env bash
# Build the image's payload on the host: static binaries (Rust with
# crt-static, the C reference with -static) into docker/dist/, so the image
# can be FROM scratch and needs no registry. Used by .ci/run and the README.
set -euo pipefail
cd "$(dirname "$0")/.."
target=x86_64-unknown-linux-gnu
RUSTFLAGS="-C target-feature=+crt-static" \
  cargo build --release --locked --target "$target" --target-dir target/static \
  -p shmconf -p shmconf-harness --bins
out=target/static/$target/release
rm -rf docker/dist && mkdir -p docker/dist
cp "$out/shmconf" "$out/shm-writer" "$out/shm-reader" docker/dist/
# The C reference is compiled by the harness's build script into its OUT_DIR.
c_dir=$(dirname "$(ls -t "$out"/build/shmconf-harness-*/out/c-reference/c-writer | head -n1)")
cp "$c_dir/c-writer" "$c_dir/c-reader" docker/dist/
for b in docker/dist/*; do
  if ! file "$b" | grep -q 'statically linked\|static-pie linked'; then
    echo "build-dist: $b is not static" >&2
    exit 1
  fi
done
ls -l docker/dist
