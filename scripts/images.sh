#!/usr/bin/env bash
# Builds the container images `trellis` and `trellis-proxy` with podman, FROM scratch: each
# binary (stripped) with exactly the shared libraries it links, the system's CA roots and a
# non-root user, so that nothing is pulled from a registry. Prints each image's size.
#
# Usage: scripts/images.sh [--bin-dir DIR] [--tag TAG] [--registry NAME]
#   --bin-dir  binaries built already (the tests give their debug ones); by default the
#              dist profile is built. The control plane's image takes the dashboard from
#              DIR/../site (scripts/build-web.sh).
#   --tag      the images' tag (default: the binaries' version)
#   --registry the images' name prefix (default: ghcr.io/trellis-mesh, as the manifests say)
set -euo pipefail
cd "$(dirname "$0")/.."
target_dir="${CARGO_TARGET_DIR:-$PWD/target}"
bin_dir="" tag="" registry="ghcr.io/trellis-mesh"
while (($#)); do
  case $1 in
    --bin-dir) bin_dir=$2; shift 2 ;;
    --tag) tag=$2; shift 2 ;;
    --registry) registry=$2; shift 2 ;;
    *) echo "images: unknown argument $1" >&2; exit 2 ;;
  esac
done
command -v podman >/dev/null || { echo "images: podman is missing (apt-get install podman)" >&2; exit 2; }
if [[ -z "$bin_dir" ]]; then
  cargo build --profile dist -q -p trellis-proxy -p trellis-server --bins
  scripts/build-web.sh >&2
  bin_dir="$target_dir/dist"
fi
site="$bin_dir/../site"
[[ -f "$site/pkg/trellis_web_bg.wasm" ]] || { echo "images: no dashboard in $site (scripts/build-web.sh)" >&2; exit 2; }
[[ -n "$tag" ]] || tag=$("$bin_dir/trellis-proxy" --version | awk '{print $2}')
work=$(mktemp -d /tmp/trellis-images.XXXXXX)
trap 'rm -rf "$work"' EXIT

# rootfs DIR BINARY: the binary in DIR/trellis/bin, stripped, with the libraries it links (as
# ldd resolves them, at the same paths), the CA roots and the users' files.
rootfs() {
  local dir=$1 binary=$2 lib
  mkdir -p "$dir/trellis/bin" "$dir/etc/ssl/certs"
  strip -o "$dir/trellis/bin/$(basename "$binary")" "$binary"
  for lib in $(ldd "$binary" | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}'); do
    mkdir -p "$dir$(dirname "$lib")"
    cp -L "$lib" "$dir$lib"
  done
  [[ -f /etc/ssl/certs/ca-certificates.crt ]] && cp /etc/ssl/certs/ca-certificates.crt "$dir/etc/ssl/certs/"
  printf 'root:x:0:0::/:/sbin/nologin\nnonroot:x:65532:65532::/nonexistent:/sbin/nologin\n' >"$dir/etc/passwd"
  printf 'root:x:0:\nnonroot:x:65532:\n' >"$dir/etc/group"
}

# The proxy: settings from the environment (`trellis-proxy --help`), probed on its admin port.
rootfs "$work/proxy" "$bin_dir/trellis-proxy"
cat >"$work/proxy.Containerfile" <<EOT
FROM scratch
COPY proxy/ /
USER 65532:65532
ENV TRELLIS_ADMIN_ADDR=0.0.0.0:4191
EXPOSE 4140 4143 4191
HEALTHCHECK --interval=10s --timeout=3s CMD ["/trellis/bin/trellis-proxy", "--probe"]
LABEL org.opencontainers.image.title="trellis-proxy" org.opencontainers.image.version="$tag"
ENTRYPOINT ["/trellis/bin/trellis-proxy"]
EOT

# The control plane: the dashboard beside it, its data in a volume. It follows a local
# repository (mounted); a remote one needs git, which this image does not hold.
rootfs "$work/control-plane" "$bin_dir/trellis"
cp -r "$site" "$work/control-plane/trellis/site"
mkdir -p "$work/data"
cat >"$work/control-plane.Containerfile" <<EOT
FROM scratch
COPY control-plane/ /
COPY --chown=65532:65532 data/ /var/lib/trellis/
USER 65532:65532
ENV TRELLIS_LISTEN=0.0.0.0:8080 TRELLIS_FLEET_LISTEN=0.0.0.0:8443 TRELLIS_DATA_DIR=/var/lib/trellis
VOLUME /var/lib/trellis
EXPOSE 8080 8443 9443
HEALTHCHECK --interval=10s --timeout=3s CMD ["/trellis/bin/trellis", "probe"]
LABEL org.opencontainers.image.title="trellis" org.opencontainers.image.version="$tag"
ENTRYPOINT ["/trellis/bin/trellis"]
CMD ["serve"]
EOT

for image in proxy control-plane; do
  name=$([[ $image == proxy ]] && echo trellis-proxy || echo trellis)
  podman build -q --format docker -t "$registry/$name:$tag" -f "$work/$image.Containerfile" "$work" >/dev/null
  bytes=$(podman image inspect --format '{{.Size}}' "$registry/$name:$tag")
  echo "$registry/$name:$tag $(awk -v b="$bytes" 'BEGIN {printf "%.1f MB", b / 1e6}')"
done
