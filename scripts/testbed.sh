#!/usr/bin/env bash
# A multi-host test bed on this machine: each host is a Linux network namespace with one
# interface on a bridge, addressed from 198.18.0.0/15 (reserved for benchmarking; nothing
# leaves the machine). Needs root. The tests make and remove their own beds with it.
#
#   scripts/testbed.sh up   BED NET HOST...   e.g. up tb 198.18.7 cp0 cp1 cp2 h0 h1 h2
#   scripts/testbed.sh down BED HOST...
#   scripts/testbed.sh cut  BED HOST          its link goes down (a host cut off)
#   scripts/testbed.sh mend BED HOST
#
# Host number i (in the order given) is NET.(10+i)/24 in namespace BED-HOST; this machine is
# NET.1 on the bridge BED-br, so a process here (Postgres, a load generator) reaches every
# host and every host reaches it. Run a program on a host with
#   ip netns exec BED-HOST trellis serve --listen NET.10:8080 ...
set -euo pipefail
cmd=${1:?usage: testbed.sh up|down|cut|mend BED ...}
bed=${2:?which bed}
shift 2
bridge="$bed-br"
# The host's end of each host's link: short, as interface names are at most 15 bytes.
link() { echo "$bed-$1" | cut -c1-15; }
fail() { echo "testbed: $*" >&2; exit 1; }
[[ $(id -u) == 0 ]] || fail "needs root (network namespaces, a bridge)"
command -v ip >/dev/null || fail "needs iproute2 (apt-get install -y iproute2)"

case "$cmd" in
  up)
    net=${1:?the network, e.g. 198.18.7}
    shift
    [[ "$net" =~ ^198\.1[89]\.[0-9]+$ ]] || fail "$net is not in 198.18.0.0/15"
    ip link add "$bridge" type bridge 2>/dev/null || fail "cannot make bridge $bridge (does it exist already?)"
    ip addr add "$net.1/24" dev "$bridge"
    ip link set "$bridge" up
    i=0
    for host in "$@"; do
      ns="$bed-$host"
      ip netns add "$ns"
      ip link add "$(link "$host")" type veth peer name eth0 netns "$ns"
      ip link set "$(link "$host")" master "$bridge" up
      ip -n "$ns" addr add "$net.$((10 + i))/24" dev eth0
      ip -n "$ns" link set eth0 up
      ip -n "$ns" link set lo up
      i=$((i + 1))
    done
    ;;
  down)
    for host in "$@"; do
      ip netns del "$bed-$host" 2>/dev/null || true
      ip link del "$(link "$host")" 2>/dev/null || true
    done
    ip link del "$bridge" 2>/dev/null || true
    ;;
  cut) ip link set "$(link "${1:?which host}")" down ;;
  mend) ip link set "$(link "${1:?which host}")" up ;;
  *) fail "unknown command $cmd: up, down, cut or mend" ;;
esac
