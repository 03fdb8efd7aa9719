#!/usr/bin/env bash
# Several nat64d gateways behind ECMP, announced by BGP (deploy/ecmp), in
# network namespaces with documentation addresses only:
#
#   client ── router (BIRD, ECMP by source address) ─┬─ gw1: nat64d + BIRD ─┐
#   32 hosts in 8 /64s                               ├─ gw2: nat64d + BIRD ─┼─ (router) ── server
#   2001:db8:1:N::K                                  └─ gw3: nat64d + BIRD ─┘   198.51.100.2
#
# One router does both sides: it learns pool6 (2001:db8:64::/96) from every
# gateway and routes it over a resilient nexthop group of them
# (deploy/ecmp/resilient-ecmp.sh), and each gateway's pool4 slice
# (203.0.113.0/28, .16/28, .32/28) from its owner. The server is
# 2001:db8:64::c633:6402 from the client.
#
# Usage (as root):
#   scripts/ecmp_lab.sh demo           bring it up, send flows from every host,
#                                      show the ECMP route and who served whom, tear down
#   scripts/ecmp_lab.sh up             bring it up and leave it running
#   scripts/ecmp_lab.sh down           remove it
#   scripts/ecmp_lab.sh gw-start I     start gateway I's nat64d (under a watchdog) and BIRD
#   scripts/ecmp_lab.sh gw-signal I SIG [nat64d|bird]   send SIG to gateway I's nat64d (or BIRD)
#   scripts/ecmp_lab.sh route          the router's routes to pool6: BIRD's multipath route
#                                      (table 164) and the resilient group it is kept on
#   scripts/ecmp_lab.sh paths          the gateways that group goes through now ("1 2 3")
#   scripts/ecmp_lab.sh sources        the client's host addresses, comma-separated
# Environment: ECMP_LAB (name prefix, default ecmp), NAT64D and NAT64CTL
# (binaries, default target/release/...; `up` builds them when they are the
# default), ECMP_WATCHDOG_USEC (default 3000000, as deploy/ecmp/nat64d-ecmp.conf),
# ECMP_IDLE (the resilient group's idle timer, default 2 s in the lab),
# ECMP_PLAIN=1 (a plain multipath route instead of the resilient group).
# The run directory /run/nat64d-$ECMP_LAB holds logs, PID files and sockets:
# nat64ctl --socket /run/nat64d-ecmp/gw1.sock stats
set -euo pipefail
cd "$(dirname "$0")/.."

P=${ECMP_LAB:-ecmp}
RUN=/run/nat64d-$P
C=$P-client R=$P-router S=$P-server
GWS=(1 2 3)
NAT64D=${NAT64D:-target/release/nat64d}
NAT64CTL=${NAT64CTL:-target/release/nat64ctl}
WD_USEC=${ECMP_WATCHDOG_USEC:-3000000}
# resilient-ecmp.sh's idle timer: 120 s in the recipe; 2 s here, so a
# gateway that comes back gets its share of the (idle) lab hosts quickly.
export ECMP_IDLE=${ECMP_IDLE:-2}
# ECMP_PLAIN=1: no resilient group; BIRD's plain multipath route
# (hash-threshold) in the main table, to see what resilient hashing saves.
PLAIN=${ECMP_PLAIN:-0}
SERVER6=2001:db8:64::c633:6402
TOOLS=tests/lab_tools.py

gw() { echo "$P-gw$1"; }
sources() {
  local s=()
  for n in 1 2 3 4 5 6 7 8; do for k in 1 2 3 4; do s+=("2001:db8:1:$n::$k"); done; done
  (IFS=,; echo "${s[*]}")
}

stop_pid() { # PIDFILE [SIGNAL]
  [ -e "$1" ] || return 0
  local pid; pid=$(cat "$1")
  kill "-${2:-TERM}" "$pid" 2>/dev/null || true
  for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
  rm -f "$1"
}

down() {
  for f in "$RUN"/*.pid; do [ -e "$f" ] && stop_pid "$f"; done
  for ns in $C $R $S $(for i in "${GWS[@]}"; do gw "$i"; done); do ip netns del "$ns" 2>/dev/null || true; done
  rm -rf "$RUN"
}

bird_start() { # NS CONFIG
  ip netns exec "$1" bird -f -c "$2" -s "$RUN/$1.ctl" >"$RUN/$1.bird.log" 2>&1 &
  echo $! >"$RUN/$1.bird.pid"
}

gw_start() { # I
  local i=$1 g; g=$(gw "$1")
  if [ ! -e "$RUN/$g.bird.pid" ] || ! kill -0 "$(cat "$RUN/$g.bird.pid")" 2>/dev/null; then
    # deploy/ecmp/gateway.bird.conf with this gateway's three values.
    sed -e "s/^router id .*/router id 192.0.2.$((8 * i + 2));/" \
      -e "s/^define ROUTER6 = .*/define ROUTER6 = 2001:db8:10:$i::1;/" \
      -e "s/^define ROUTER4 = .*/define ROUTER4 = 192.0.2.$((8 * i + 1));/" \
      deploy/ecmp/gateway.bird.conf >"$RUN/$g.bird.conf"
    bird_start "$g" "$RUN/$g.bird.conf"
  fi
  stop_pid "$RUN/$g.watchdog.pid"
  rm -f "$RUN/$g.nat64d.pid"
  # As systemd with deploy/ecmp/nat64d-ecmp.conf runs it: under a watchdog
  # that kills it when its pings stop.
  ip netns exec "$g" python3 $TOOLS sd-watchdog --socket "$RUN/$g.notify" --usec "$WD_USEC" \
    --pid-file "$RUN/$g.nat64d.pid" -- "$NAT64D" --config "deploy/ecmp/gateway$i.toml" \
    --control-socket "$RUN/gw$i.sock" --queues 1 >>"$RUN/$g.nat64d.log" 2>&1 &
  echo $! >"$RUN/$g.watchdog.pid"
  for _ in $(seq 100); do
    ip -n "$g" link show nat64 2>/dev/null | grep -q ',UP' && return 0
    sleep 0.1
  done
  echo "ecmp_lab: gateway $i's nat64d did not bring its device up; its log:" >&2
  cat "$RUN/$g.nat64d.log" >&2
  return 1
}

up() {
  [ "$(id -u)" = 0 ] || { echo "ecmp_lab.sh: needs root (network namespaces, TUN)" >&2; exit 1; }
  command -v bird >/dev/null || { echo "ecmp_lab.sh: needs BIRD 2 (apt-get install bird2)" >&2; exit 1; }
  if [ "$NAT64D" = target/release/nat64d ]; then cargo build --release --bin nat64d --bin nat64ctl; fi
  down
  mkdir -p "$RUN"
  for ns in $C $R $S; do ip netns add "$ns"; ip -n "$ns" link set lo up; done
  # Client: every host address on its one link, the router its way out.
  ip link add c0 netns $C type veth peer name client netns $R
  ip -n $C link set c0 up
  ip -n $C addr add 2001:db8:c::2/64 dev c0 nodad
  for a in $(sources | tr , ' '); do ip -n $C addr add "$a/64" dev c0 nodad; done
  ip -n $C -6 route add default via 2001:db8:c::1 dev c0
  # Router: forwards, hashes IPv6 by source address (deploy/ecmp/router.sysctl.conf).
  ip netns exec $R sysctl -q -p deploy/ecmp/router.sysctl.conf >/dev/null
  ip -n $R link set client up
  ip -n $R addr add 2001:db8:c::1/64 dev client nodad
  ip -n $R -6 route add 2001:db8:1::/48 via 2001:db8:c::2
  ip link add s0 netns $S type veth peer name server netns $R
  ip -n $R addr add 198.51.100.1/24 dev server
  ip -n $R link set server up
  ip -n $S addr add 198.51.100.2/24 dev s0
  ip -n $S link set s0 up
  ip -n $S route add default via 198.51.100.1
  for i in "${GWS[@]}"; do
    local g; g=$(gw "$i")
    ip netns add "$g"; ip -n "$g" link set lo up
    ip link add uplink netns "$g" type veth peer name "gw$i" netns $R
    ip -n $R addr add "2001:db8:10:$i::1/64" dev "gw$i" nodad
    ip -n $R addr add "192.0.2.$((8 * i + 1))/29" dev "gw$i"
    ip -n $R link set "gw$i" up
    ip -n "$g" addr add "2001:db8:10:$i::2/64" dev uplink nodad
    ip -n "$g" addr add "192.0.2.$((8 * i + 2))/29" dev uplink
    ip -n "$g" link set uplink up
    ip -n "$g" -6 route add default via "2001:db8:10:$i::1"
    ip -n "$g" route add default via "192.0.2.$((8 * i + 1))"
    ip netns exec "$g" sysctl -q -p deploy/ecmp/gateway.sysctl.conf >/dev/null
  done
  if [ "$PLAIN" = 1 ]; then
    # BIRD's multipath route straight into the main table (hash-threshold).
    sed '/^  kernel table 164;/d' deploy/ecmp/router.bird.conf >"$RUN/router.bird.conf"
    bird_start $R "$RUN/router.bird.conf"
  else
    bird_start $R deploy/ecmp/router.bird.conf
    ip netns exec $R bash deploy/ecmp/resilient-ecmp.sh >"$RUN/resilient-ecmp.log" 2>&1 &
    echo $! >"$RUN/resilient-ecmp.pid"
  fi
  for i in "${GWS[@]}"; do gw_start "$i"; done
  wait_paths "1 2 3" 20
}

# The gateways (numbers) the router's route to pool6 goes through now: the
# members of the resilient group it points at (resilient-ecmp.sh).
paths() {
  if [ "$PLAIN" = 1 ]; then
    ip -n $R -6 route show 2001:db8:64::/96 | grep -o 'dev gw[0-9]*' | cut -c7- | sort -n | paste -sd' '
    return 0
  fi
  local nhid ids
  nhid=$(ip -n $R -6 route show 2001:db8:64::/96 | grep -o 'nhid [0-9]*' | cut -d' ' -f2)
  [ -n "$nhid" ] || return 0
  ids=$(ip -n $R nexthop show id "$nhid" | grep -o 'group [0-9/]*' | cut -d' ' -f2 | tr / ' ')
  for id in $ids; do ip -n $R nexthop show id "$id" | grep -o 'dev gw[0-9]*' | cut -c7-; done | sort -n | paste -sd' '
}

wait_paths() { # "1 2 3" SECONDS
  for _ in $(seq $((10 * $2))); do [ "$(paths)" = "$1" ] && return 0; sleep 0.1; done
  echo "ecmp_lab: the router's route to pool6 goes through gateway(s) '$(paths)', not '$1'" >&2
  return 1
}

demo() {
  up
  echo "== the router's route to pool6: BIRD's, one nexthop per gateway, and the resilient group"
  "$0" route
  ip netns exec $S python3 $TOOLS udp-whoami 198.51.100.2 7777 --timeout 5 &
  local srv=$!
  sleep 0.3
  echo "== 4 UDP flows from each of 32 client hosts: the IPv4 address and port the server saw"
  ip netns exec $C python3 $TOOLS udp-many $SERVER6 7777 --sources "$(sources)" --flows 4
  wait $srv || true
  for i in "${GWS[@]}"; do
    echo "== gateway $i (nat64ctl --socket $RUN/gw$i.sock stats)"
    "$NAT64CTL" --socket "$RUN/gw$i.sock" stats | head -n 12
  done
  down
}

case "${1:-}" in
  demo) demo ;;
  up) up ;;
  down) down ;;
  gw-start) gw_start "$2" ;;
  gw-signal)
    f="$RUN/$(gw "$2").${4:-nat64d}.pid"
    kill "-$3" "$(cat "$f")"
    ;;
  route)
    ip -n $R -6 route show table 164 2001:db8:64::/96
    ip -n $R -6 route show 2001:db8:64::/96
    ip -n $R nexthop show
    ;;
  paths) paths ;;
  sources) sources ;;
  *) sed -n '2,27p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
