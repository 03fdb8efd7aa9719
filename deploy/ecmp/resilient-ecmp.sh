#!/usr/bin/env bash
# Keeps the router's route to pool6 on a Linux *resilient* nexthop group
# (deploy/ecmp; kernel 5.13+), following the gateways BIRD has learned.
#
# Why: a plain multipath route (what BIRD 2 installs) uses hash-threshold
# (RFC 2992): when a gateway leaves, the hash ranges of the others shift too
# and some hosts of a *surviving* gateway move to another one, whose NAT has
# never seen their flows: their connections break. A resilient group maps
# the hash to buckets; a gateway leaving gives up only its own buckets, and
# one joining gets buckets only once they have been idle for `idle_timer`
# seconds, so a host with live flows stays where it is. The kernel balances
# bucket *counts*: a joining gateway takes the buckets idle at that moment
# (with few hosts, mostly unused ones) and more only as others go idle, so
# with many hosts per bucket set ECMP_UNBALANCED to bound how long it stays
# under-used (the buckets it then takes by force break their hosts' flows).
#
# How: BIRD exports its ECMP route to table $TABLE (router.bird.conf); this
# script watches that table, keeps one nexthop object per gateway and the
# group's members in step with it, and points the main table's route for
# pool6 at the group (unreachable when no gateway is left).
#
# Usage: resilient-ecmp.sh [PREFIX [TABLE]]   (defaults 2001:db8:64::/96 164)
# Environment: ECMP_BUCKETS (default 512), ECMP_IDLE (idle_timer, default 120
# s: about a UDP session's lifetime), ECMP_UNBALANCED (unbalanced_timer:
# rebalance by force after this long, default 0 = never).
set -uo pipefail

PREFIX=${1:-2001:db8:64::/96}
TABLE=${2:-164}
GROUP=100
BUCKETS=${ECMP_BUCKETS:-512}
IDLE=${ECMP_IDLE:-120}
UNBALANCED=${ECMP_UNBALANCED:-0}
applied=""

# "ID via ADDR dev DEV" for each nexthop of BIRD's route in $TABLE.
members() {
  ip -6 route show table "$TABLE" "$PREFIX" | grep -o 'via [^ ]* dev [^ ]*' | while read -r _ addr _ dev; do
    echo "$((10000 + $(cat "/sys/class/net/$dev/ifindex"))) $addr $dev"
  done | sort -n
}

sync() {
  local m ids
  m=$(members)
  [ "$m" = "$applied" ] && return 0
  if [ -z "$m" ]; then
    ip -6 route replace unreachable "$PREFIX"
    echo "resilient-ecmp: no gateway announces $PREFIX: unreachable"
  else
    ids=$(while read -r id addr dev; do
      ip nexthop show id "$id" >/dev/null 2>&1 || ip nexthop add id "$id" via "$addr" dev "$dev"
      echo "$id"
    done <<<"$m" | paste -sd/)
    if ip nexthop show id "$GROUP" >/dev/null 2>&1; then
      ip nexthop replace id "$GROUP" group "$ids" type resilient
    else
      ip nexthop add id "$GROUP" group "$ids" type resilient buckets "$BUCKETS" \
        idle_timer "$IDLE" unbalanced_timer "$UNBALANCED"
    fi
    ip -6 route replace "$PREFIX" nhid "$GROUP"
    echo "resilient-ecmp: $PREFIX over nexthops $ids"
  fi
  applied=$m
}

sync
# Every change BIRD makes to its table, and a look every 5 s besides, both
# into one FIFO; the two writers go with this script (TERM, INT or exit).
events=$(mktemp -u /tmp/resilient-ecmp.XXXXXX)
mkfifo "$events"
ip -6 monitor route >"$events" &
monitor=$!
while sleep 5; do echo tick; done >"$events" &
ticker=$!
trap 'kill "$monitor" "$ticker" 2>/dev/null; rm -f "$events"' EXIT
trap 'exit 0' TERM INT
while read -r line; do
  case "$line" in
    *"table $TABLE"* | tick) sync ;;
  esac
done <"$events"
