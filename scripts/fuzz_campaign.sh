#!/usr/bin/env bash
# A fuzz campaign: every target until it has executed its quota of inputs,
# one target at a time on one core (nice 19, so a build beside it still runs).
# Quotas follow the hardening issue: 100 M inputs per stateless target, 10 M per
# stateful one (nat_sequence, offload). Usage: scripts/fuzz_campaign.sh [TARGET...]
# Writes fuzz/campaign/<target>.log; prints each target's final libFuzzer stats.
# Pausing a fuzzer (SIGSTOP, say for a benchmark) makes libFuzzer report a
# "slow unit" for the pause: replay it before believing it.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
mkdir -p campaign
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  targets=(xlat_6to4 xlat_4to6 xlat_icmp_error control offload dns64 nat_sequence config maplog state sniff)
fi
for t in "${targets[@]}"; do
  case "$t" in
    nat_sequence | offload) runs=10000000 ;;
    *) runs=100000000 ;;
  esac
  # nat_sequence: 1024 bytes are 170 steps, several times what its table
  # (40 sessions, 64 ports) needs to fill, churn and expire; 4096 (the
  # default) makes each input about four times slower.
  # config: 4096 bytes (the shipped example, 13.8 kB with its comments,
  # would otherwise set the limit; its keys alone are 1.7 kB, a seed too).
  maxlen=()
  [ "$t" = nat_sequence ] && maxlen=(-max_len=1024)
  [ "$t" = config ] && maxlen=(-max_len=4096)
  mkdir -p "corpus/$t"
  start=$(date +%s)
  rc=0
  nice -n 19 cargo fuzz run -s none "$t" "corpus/$t" "seeds/$t" -- \
    -runs="$runs" "${maxlen[@]}" -print_final_stats=1 -close_fd_mask=3 >"campaign/$t.log" 2>&1 || rc=$?
  # An interrupted libFuzzer (SIGINT: the campaign was cut short) exits 72,
  # which cargo fuzz reports as its own failure (exit 1); its final
  # statistics are still in the log. Anything else is a finding.
  interrupted=0
  grep -q 'libFuzzer: run interrupted' "campaign/$t.log" && interrupted=1
  if [ "$rc" -ne 0 ] && [ "$interrupted" -eq 0 ]; then
    echo "$t: FAILED, see fuzz/campaign/$t.log"; tail -n 30 "campaign/$t.log"; exit 1
  fi
  end=$(date +%s)
  cov=$(grep -E '^#[0-9]+' "campaign/$t.log" | tail -n 1)
  execs=$(grep -E 'stat::number_of_executed_units' "campaign/$t.log" | awk '{print $2}')
  echo "$t: $execs inputs in $((end - start)) s$([ "$interrupted" -eq 1 ] && echo " (interrupted)"); last status: $cov"
done
