#!/usr/bin/env bash
# An active/standby nat64d pair with keepalived (deploy/failover), in
# network namespaces with documentation addresses only:
#
#   client ── router ──┬── bridge ──┬─ gw1: nat64d + keepalived ─┐
#   2001:db8:1::10     │            └─ gw2: nat64d + keepalived ─┘ (VRRP next hop
#                      │                                           192.0.2.100, 2001:db8:10::100)
#                      └── server 198.51.100.2 (2001:db8:64::c633:6402 from the client)
#
# The router sends pool6 (2001:db8:64::/96) and pool4 (203.0.113.0/28) to
# the VRRP next hop; keepalived gives it to one gateway and tells that
# nat64d `sync promote`; the other follows its state (`[sync]`).
# FO_MODE=bgp runs deploy/failover/bgp instead: no VRRP; each gateway's
# BIRD announces pool6 and pool4 to the router's BIRD (the standby's with
# a longer AS path) and nat64-bgp-role.sh drives the roles; "master" is
# then the gateway the router's pool6 route goes through.
#
# Usage (as root):
#   scripts/failover_lab.sh demo          bring it up, show who is active and the sync status, tear down
#   scripts/failover_lab.sh up            bring it up and leave it running
#   scripts/failover_lab.sh down          remove it
#   scripts/failover_lab.sh start I [badkey]  (re)start gateway I's nat64d (with a key of its own:
#                                         badkey), and its keepalived if not running
#   scripts/failover_lab.sh kill I [SIG]  send SIG (default KILL) to gateway I's nat64d
#   scripts/failover_lab.sh master        the gateway holding the VRRP address now (1, 2 or none)
#   scripts/failover_lab.sh wait-master I [SECONDS]
# Environment: FO_LAB (name prefix, default fo), FO_MODE (vrrp or bgp), NAT64D and NAT64CTL
# (binaries, default target/release/...; `up` builds them when they are the
# default). The run directory /run/nat64d-$FO_LAB holds logs, PID files,
# sockets and the generated configurations:
# nat64ctl --socket /run/nat64d-fo/gw1.sock sync
set -euo pipefail
cd "$(dirname "$0")/.."

P=${FO_LAB:-fo}
MODE=${FO_MODE:-vrrp}
RUN=/run/nat64d-$P
C=$P-client R=$P-router S=$P-server
NAT64D=$(realpath -m "${NAT64D:-target/release/nat64d}")
NAT64CTL=$(realpath -m "${NAT64CTL:-target/release/nat64ctl}")

gw() { echo "$P-gw$1"; }

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
  for ns in $C $R $S $(gw 1) $(gw 2); do ip netns del "$ns" 2>/dev/null || true; done
  rm -rf "$RUN"
}

gw_start() { # I [badkey]
  local i=$1 g key=$RUN/sync.key; g=$(gw "$1")
  local ctl="$NAT64CTL --socket $RUN/gw$i.sock"
  if [ "${2:-}" = badkey ]; then
    # A gateway that does not hold the pair's key (the test of a stranger).
    key=$RUN/bad.key
    python3 -c 'import secrets; print(secrets.token_hex(32))' >"$key"
    chmod 600 "$key"
  fi
  # deploy/failover's files with the lab's paths.
  sed -e "s|/var/lib/nat64d/|$RUN/gw$i.|" -e "s|/run/credentials/nat64d.service/sync.key|$key|" \
    "deploy/failover/gateway$i.toml" >"$RUN/gw$i.toml"
  sed -e "s|/usr/bin/nat64ctl|$ctl|" "deploy/failover/keepalived-gw$i.conf" >"$RUN/gw$i.keepalived.conf"
  stop_pid "$RUN/gw$i.nat64d.pid"
  ip netns exec "$g" "$NAT64D" --config "$RUN/gw$i.toml" --control-socket "$RUN/gw$i.sock" --queues 1 \
    >>"$RUN/gw$i.nat64d.log" 2>&1 &
  echo $! >"$RUN/gw$i.nat64d.pid"
  for _ in $(seq 100); do
    ip -n "$g" link show nat64 2>/dev/null | grep -q ',UP' && break
    sleep 0.1
  done
  if ! ip -n "$g" link show nat64 2>/dev/null | grep -q ',UP'; then
    echo "failover_lab: gateway $i's nat64d did not bring its device up; its log:" >&2
    cat "$RUN/gw$i.nat64d.log" >&2
    return 1
  fi
  if [ "$MODE" = bgp ]; then
    gw_bgp "$i"
  elif [ ! -e "$RUN/gw$i.keepalived.pid" ] || ! kill -0 "$(cat "$RUN/gw$i.keepalived.pid")" 2>/dev/null; then
    ip netns exec "$g" keepalived --dont-fork --log-console --vrrp --use-file "$RUN/gw$i.keepalived.conf" \
      --pid "$RUN/gw$i.kpid" --vrrp_pid "$RUN/gw$i.kvrrp" >>"$RUN/gw$i.keepalived.log" 2>&1 &
    echo $! >"$RUN/gw$i.keepalived.pid"
  fi
}

alive() { [ -e "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

gw_bgp() { # I: gateway I's BIRD and role script, unless running
  local i=$1 g; g=$(gw "$1")
  sed -e "s|^router id .*|router id 192.0.2.1$i;|" -e "s|/etc/bird/nat64d-role.conf|$RUN/gw$i.role.conf|" \
    -e "s|^log syslog all;|log stderr all;|" deploy/failover/bgp/gateway.bird.conf >"$RUN/gw$i.bird.conf"
  [ -e "$RUN/gw$i.role.conf" ] || echo "define STANDBY = 1;" >"$RUN/gw$i.role.conf"
  if ! alive "$RUN/gw$i.bird.pid"; then
    ip netns exec "$g" bird -f -c "$RUN/gw$i.bird.conf" -s "$RUN/gw$i.bird.ctl" >>"$RUN/gw$i.bird.log" 2>&1 &
    echo $! >"$RUN/gw$i.bird.pid"
  fi
  if ! alive "$RUN/gw$i.role.pid"; then
    # Gateway 1 is the one preferred at a cold start (see the script).
    ip netns exec "$g" env NAT64CTL="$NAT64CTL" NAT64D_SOCKET="$RUN/gw$i.sock" FAILOVER=$((i == 1 ? 2 : 5)) \
      BIRDC="birdc -s $RUN/gw$i.bird.ctl" ROLE_FILE="$RUN/gw$i.role.conf" \
      sh deploy/failover/bgp/nat64-bgp-role.sh >>"$RUN/gw$i.role.log" 2>&1 &
    echo $! >"$RUN/gw$i.role.pid"
  fi
}

master() {
  if [ "$MODE" = bgp ]; then
    case "$(ip -n "$R" -6 route show 2001:db8:64::/96 2>/dev/null)" in
      *"via 2001:db8:10::11 "*) echo 1 ;;
      *"via 2001:db8:10::12 "*) echo 2 ;;
      *) echo none ;;
    esac
    return 0
  fi
  for i in 1 2; do
    if ip -n "$(gw "$i")" addr show uplink 2>/dev/null | grep -q '192.0.2.100/'; then echo "$i"; return 0; fi
  done
  echo none
}

wait_master() { # I SECONDS
  for _ in $(seq $((10 * ${2:-10}))); do [ "$(master)" = "$1" ] && return 0; sleep 0.1; done
  echo "failover_lab: gateway $1 did not become master (master: $(master))" >&2
  return 1
}

up() {
  [ "$(id -u)" = 0 ] || { echo "failover_lab.sh: needs root (network namespaces, TUN)" >&2; exit 1; }
  if [ "$MODE" = bgp ]; then
    command -v bird >/dev/null || { echo "failover_lab.sh: FO_MODE=bgp needs BIRD 2 (apt-get install bird2)" >&2; exit 1; }
  else
    command -v keepalived >/dev/null || { echo "failover_lab.sh: needs keepalived (apt-get install keepalived)" >&2; exit 1; }
  fi
  if [ "$NAT64D" = "$(realpath -m target/release/nat64d)" ]; then cargo build --release --bin nat64d --bin nat64ctl; fi
  down
  mkdir -p "$RUN"
  python3 -c 'import secrets; print(secrets.token_hex(32))' >"$RUN/sync.key"
  chmod 600 "$RUN/sync.key"
  for ns in $C $R $S $(gw 1) $(gw 2); do ip netns add "$ns"; ip -n "$ns" link set lo up; done
  ip netns exec $R sysctl -q -w net.ipv6.conf.all.forwarding=1 net.ipv4.ip_forward=1
  ip link add c0 netns $C type veth peer name client netns $R
  ip -n $C link set c0 up
  ip -n $C addr add 2001:db8:1::10/64 dev c0 nodad
  ip -n $C -6 route add default via 2001:db8:1::1 dev c0
  ip -n $R link set client up
  ip -n $R addr add 2001:db8:1::1/64 dev client nodad
  ip link add s0 netns $S type veth peer name server netns $R
  ip -n $R addr add 198.51.100.1/24 dev server
  ip -n $R link set server up
  ip -n $S addr add 198.51.100.2/24 dev s0
  ip -n $S link set s0 up
  ip -n $S route add default via 198.51.100.1
  # The gateways' segment: a bridge on the router, VRRP between them.
  ip -n $R link add gws type bridge
  ip -n $R link set gws up
  ip -n $R addr add 2001:db8:10::1/64 dev gws nodad
  ip -n $R addr add 192.0.2.1/24 dev gws
  for i in 1 2; do
    local g; g=$(gw "$i")
    ip link add uplink netns "$g" type veth peer name "gw$i" netns $R
    ip -n $R link set "gw$i" master gws up
    ip netns exec "$g" sysctl -q -p deploy/ecmp/gateway.sysctl.conf >/dev/null
    ip netns exec "$g" sysctl -q -w net.ipv6.conf.uplink.accept_dad=0
    ip -n "$g" addr add "2001:db8:10::1$i/64" dev uplink nodad
    ip -n "$g" addr add "192.0.2.1$i/24" dev uplink
    ip -n "$g" link set uplink up
    ip -n "$g" -6 route add default via 2001:db8:10::1
    ip -n "$g" route add default via 192.0.2.1
  done
  if [ "$MODE" = bgp ]; then
    ip netns exec $R bird -f -c deploy/failover/bgp/router.bird.conf -s "$RUN/router.bird.ctl" >>"$RUN/router.bird.log" 2>&1 &
    echo $! >"$RUN/router.bird.pid"
  else
    ip -n $R -6 route add 2001:db8:64::/96 via 2001:db8:10::100
    ip -n $R route add 203.0.113.0/28 via 192.0.2.100
  fi
  gw_start 1
  wait_master 1 15
  gw_start 2
  # Gateway 2 follows gateway 1 once its snapshot has arrived.
  for _ in $(seq 50); do
    "$NAT64CTL" --socket "$RUN/gw2.sock" sync --json 2>/dev/null | grep -q '"connected": true' && return 0
    sleep 0.1
  done
  echo "failover_lab: gateway 2 did not connect to gateway 1's sync" >&2
  return 1
}

demo() {
  up
  echo "== carrying the traffic ($MODE): gateway $(master)"
  ip netns exec $S python3 tests/lab_tools.py udp-echo 198.51.100.2 5353 --count 1 --timeout 5 &
  sleep 0.3
  ip netns exec $C python3 tests/lab_tools.py udp-ask 2001:db8:64::c633:6402 5353 --payload hello
  wait || true
  sleep 0.5
  for i in 1 2; do
    echo "== gateway $i: nat64ctl --socket $RUN/gw$i.sock sync"
    "$NAT64CTL" --socket "$RUN/gw$i.sock" sync
  done
  down
}

case "${1:-}" in
  demo) demo ;;
  up) up ;;
  down) down ;;
  start) gw_start "$2" "${3:-}" ;;
  kill) kill "-${3:-KILL}" "$(cat "$RUN/gw$2.nat64d.pid")" ;;
  master) master ;;
  wait-master) wait_master "$2" "${3:-10}" ;;
  *) sed -n '2,31p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
