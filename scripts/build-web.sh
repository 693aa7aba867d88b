#!/usr/bin/env bash
# Builds the dashboard's browser bundle into $CARGO_TARGET_DIR/site/pkg, without cargo-leptos:
# the web crate for wasm32 with `hydrate`, then wasm-bindgen (the CLI version equals the
# library version pinned in Cargo.lock), then wasm-opt, then the stylesheet.
set -euo pipefail
cd "$(dirname "$0")/.."
target_dir="${CARGO_TARGET_DIR:-$PWD/target}"
site="$target_dir/site"
profile="${TRELLIS_WASM_PROFILE:-wasm-release}"

cargo build -p trellis-web --lib --target wasm32-unknown-unknown --profile "$profile" --features hydrate
wasm-bindgen --target web --no-typescript --out-dir "$site/pkg" --out-name trellis_web \
  "$target_dir/wasm32-unknown-unknown/$profile/trellis_web.wasm"
# binaryen's wasm-opt from npm (version 132; Debian's 108 breaks hydration) more than halves it.
wasm_opt=tools/node_modules/.bin/wasm-opt
if [[ -x "$wasm_opt" && "$profile" != "dev" ]]; then
  "$wasm_opt" -Oz --enable-bulk-memory --enable-nontrapping-float-to-int \
    "$site/pkg/trellis_web_bg.wasm" -o "$site/pkg/trellis_web_bg.wasm.opt"
  mv "$site/pkg/trellis_web_bg.wasm.opt" "$site/pkg/trellis_web_bg.wasm"
fi
cp web/style/trellis.css "$site/pkg/trellis.css"
bytes=$(stat -c %s "$site/pkg/trellis_web_bg.wasm")
limit=$((3 * 1024 * 1024 / 2))
echo "browser bundle: $site/pkg ($bytes bytes of wasm, $((bytes * 100 / limit))% of the 1.5 MiB budget)"
# The page's first load pays for every byte: a release bundle over budget fails the build.
if [[ "$profile" != "dev" && -x "$wasm_opt" && $bytes -gt $limit ]]; then
  echo "build-web: the wasm bundle is $bytes bytes, over the budget of $limit (1.5 MiB)" >&2
  exit 1
fi
