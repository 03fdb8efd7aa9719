#!/usr/bin/env bash
# The nat64d namespace lab: an IPv6-only client, a gateway running nat64d,
# an IPv4-only server, on one machine, with documentation addresses only.
#
#   client 2001:db8:1::10 ── gw 2001:db8:1::1 | nat64d | 192.0.2.1 ── server 192.0.2.2
#   pool6 2001:db8:64::/96 (the server is 2001:db8:64::c000:202), pool4 203.0.113.0/28
#
# Usage (as root): scripts/lab.sh demo | up | down
#   DATAPLANE=xdp scripts/lab.sh demo: the same on the AF_XDP dataplane
#   (sockets on the gateway's veths g0 and g1 instead of a TUN device)
#   demo: build, bring the lab up, ping, resolve a name through DNS64 and
#         fetch a page by that name through the gateway,
#         show `nat64ctl stats`, tear down
#   up:   leave the lab running; then e.g.
#         target/release/nat64ctl --socket /run/nat64d-lab/control.sock sessions
set -euo pipefail
cd "$(dirname "$0")/.."

C=nat64-client G=nat64-gw S=nat64-server
RUN=/run/nat64d-lab
SERVER6=2001:db8:64::c000:202

need() { command -v "$1" >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq "$2" >/dev/null; }; }

down() {
  for f in "$RUN"/*.pid; do
    [ -e "$f" ] || continue
    pid=$(cat "$f")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 30); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    rm -f "$f"
  done
  for ns in $C $G $S; do ip netns del "$ns" 2>/dev/null || true; done
  rm -rf "/etc/netns/$C"
}

up() {
  [ "$(id -u)" = 0 ] || { echo "lab.sh: needs root (network namespaces, TUN)" >&2; exit 1; }
  need ip iproute2
  cargo build --release --bin nat64d --bin nat64ctl
  down
  mkdir -p "$RUN"
  for ns in $C $G $S; do ip netns add "$ns"; ip -n "$ns" link set lo up; done
  ip link add c0 netns $C type veth peer name g0 netns $G
  ip link add s0 netns $S type veth peer name g1 netns $G
  ip -n $C addr add 2001:db8:1::10/64 dev c0 nodad
  ip -n $C link set c0 up
  ip -n $C -6 route add default via 2001:db8:1::1
  ip -n $G addr add 2001:db8:1::1/64 dev g0 nodad
  ip -n $G addr add 192.0.2.1/24 dev g1
  ip -n $G link set g0 up
  ip -n $G link set g1 up
  ip netns exec $G sysctl -qw net.ipv6.conf.all.forwarding=1 net.ipv4.ip_forward=1
  ip -n $S addr add 192.0.2.2/24 dev s0
  ip -n $S link set s0 up
  ip -n $S route add 203.0.113.0/24 via 192.0.2.1
  # DNS: the IPv4-only side has an authoritative server for www.example
  # (A only); the client's resolver is the gateway's DNS64 server (ip netns
  # exec bind-mounts /etc/netns/NAME/resolv.conf over /etc/resolv.conf).
  ip netns exec $S python3 scripts/lab_dns.py 192.0.2.2 www.example=192.0.2.2 >/dev/null 2>&1 &
  echo $! >"$RUN/dns.pid"
  mkdir -p "/etc/netns/$C"
  echo "nameserver 2001:db8:1::1" >"/etc/netns/$C/resolv.conf"
  dp=(--tun nat64)
  if [ "${DATAPLANE:-tun}" = xdp ]; then
    need ethtool ethtool
    # veth hands its peer the local stack's partial checksums, which an
    # AF_XDP socket cannot see are partial: the end hosts send complete ones.
    ip netns exec $C ethtool -K c0 tx off >/dev/null
    ip netns exec $S ethtool -K s0 tx off >/dev/null
    dp=(--dataplane xdp --xdp-ipv6 g0 --xdp-ipv4 g1)
  fi
  ip netns exec $G target/release/nat64d --pool6 2001:db8:64::/96 --pool4 203.0.113.0/28 "${dp[@]}" \
    --control-socket "$RUN/control.sock" --dns64-upstream 192.0.2.2:53 \
    --dns64-listen '[2001:db8:1::1]:53' --dns64-allow 2001:db8:1::/64 >"$RUN/nat64d.log" 2>&1 &
  echo $! >"$RUN/nat64d.pid"
  for _ in $(seq 50); do
    target/release/nat64ctl --socket "$RUN/control.sock" stats >/dev/null 2>&1 && break
    sleep 0.1
  done
  echo "lab up: nat64d pid $(cat "$RUN/nat64d.pid"), log $RUN/nat64d.log"
}

demo() {
  need ping iputils-ping
  need curl curl
  up
  trap down EXIT
  ip netns exec $S python3 -m http.server 80 --bind 192.0.2.2 --directory "$PWD" >/dev/null 2>&1 &
  echo $! >"$RUN/http.pid"
  sleep 0.5
  echo "== ping the IPv4-only server from the IPv6-only client, through NAT64"
  ip netns exec $C ping -c 3 -W 2 $SERVER6
  echo "== DNS64: the client looks up www.example (only an A record exists) at the gateway"
  ip netns exec $C getent ahostsv6 www.example | head -n 1
  echo "== HTTP fetch by name through DNS64 + NAT64: http://www.example/README.md"
  ip netns exec $C curl -6 -sS --max-time 5 "http://www.example/README.md" | sed -n 1,3p
  echo "== nat64ctl stats"
  target/release/nat64ctl --socket "$RUN/control.sock" stats
  echo "== nat64ctl sessions"
  target/release/nat64ctl --socket "$RUN/control.sock" sessions
  echo "== done"
}

case "${1:-demo}" in
  up) up ;;
  down) down ;;
  demo) demo ;;
  *) echo "usage: $0 demo|up|down" >&2; exit 2 ;;
esac
