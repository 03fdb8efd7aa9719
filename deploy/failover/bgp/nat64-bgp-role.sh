#!/bin/sh
# The BGP health script of an active/standby nat64d pair
# (deploy/failover/bgp): run on both gateways (nat64-bgp-role.service).
# Every second it
#  - writes /etc/bird/nat64d-role.conf (STANDBY = 0 or 1) from nat64d's sync
#    role and reconfigures BIRD when it changed, so only the active
#    announces pool6 and pool4 without a prepended AS path;
#  - promotes this gateway's nat64d when it is standby and its link to the
#    active has been down for FAILOVER seconds: the active's nat64d died
#    (its routes are withdrawn already and the router sends the traffic
#    here, where the synced flows go on even before the promotion), or its
#    box or link did. Give the two gateways different FAILOVER values
#    (2 on the one you prefer, 5 on the other): after a cold start of both,
#    neither following anyone, the first to promote is the one the other
#    then follows.
# It never demotes: a gateway that comes back starts as standby (its
# config's role) and follows the active. If the sync link alone breaks
# while both boxes run, both end up active; carry sync over the link the
# traffic takes so that one failure takes both, and demote one by hand
# (`nat64ctl sync demote`) once the link is back.
set -u
NAT64CTL=${NAT64CTL:-/usr/bin/nat64ctl}   # the control socket: NAT64D_SOCKET, else nat64ctl's default
BIRDC=${BIRDC:-birdc}                      # may carry options: "birdc -s /run/bird/bird.ctl"
FAILOVER=${FAILOVER:-2}
ROLE_FILE=${ROLE_FILE:-/etc/bird/nat64d-role.conf}
lost=0
while :; do
  s=$("$NAT64CTL" sync --json 2>/dev/null) || s=""
  case "$s" in
    *'"role": "active"'*) want=0; lost=0 ;;
    *'"role": "standby"'*)
      want=1
      case "$s" in
        *'"connected": true'*) lost=0 ;;
        *) lost=$((lost + 1)) ;;
      esac
      if [ "$lost" -ge "$FAILOVER" ] && "$NAT64CTL" sync promote >/dev/null; then
        logger -t nat64-bgp-role "the active is gone ($lost s without sync): promoted"
        want=0
        lost=0
      fi
      ;;
    *) want=1 ;; # nat64d down: announce as standby (it has no routes anyway)
  esac
  line="define STANDBY = $want;"
  if [ "$(cat "$ROLE_FILE" 2>/dev/null)" != "$line" ]; then
    echo "$line" >"$ROLE_FILE.tmp" && mv "$ROLE_FILE.tmp" "$ROLE_FILE"
    # shellcheck disable=SC2086 # BIRDC is a command line
    $BIRDC configure >/dev/null 2>&1 || logger -t nat64-bgp-role "birdc configure failed"
  fi
  sleep 1
done
