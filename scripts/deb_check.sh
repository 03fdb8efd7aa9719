#!/usr/bin/env bash
# The Debian package, as CI checks it: installs target/debian/nat64d_*.deb,
# runs --check on the shipped conffile and systemd-analyze verify on the
# installed unit (which must not be enabled), renders every manual page with
# man -l (no warnings), purges it and checks no file of it is left behind.
set -euo pipefail
deb=$(ls target/debian/nat64d_*.deb | tail -n 1)
dpkg -i "$deb" >/dev/null
files=$(dpkg -L nat64d)
/usr/sbin/nat64d --check --config /etc/nat64d/nat64d.toml >/dev/null
/usr/sbin/nat64d --version
/usr/bin/nat64ctl --version
out=$(systemd-analyze verify /usr/lib/systemd/system/nat64d.service 2>&1) || { echo "$out"; exit 1; }
[ -z "$out" ] || { echo "$out"; echo "systemd-analyze verify warned about the installed unit"; exit 1; }
systemctl is-enabled nat64d.service >/dev/null 2>&1 && { echo "the unit was enabled by the install"; exit 1; }
for page in $(echo "$files" | grep '/usr/share/man/'); do
  [ -f "$page" ] || continue
  err=$(MANWIDTH=80 man --warnings -l "$page" 2>&1 >/dev/null) || { echo "$page: $err"; exit 1; }
  [ -z "$err" ] || { echo "man -l $page warns: $err"; exit 1; }
  [ -n "$(MANWIDTH=80 man -l "$page" 2>/dev/null)" ] || { echo "$page renders empty"; exit 1; }
done
bash -n /usr/share/bash-completion/completions/nat64ctl
dpkg --purge nat64d >/dev/null
left=""
for f in $files; do
  if [ -e "$f" ] && { [ ! -d "$f" ] || [[ "$f" == *nat64d* ]]; }; then left="$left $f"; fi
done
[ -z "$left" ] || { echo "left behind after dpkg --purge:$left"; exit 1; }
echo "package installed, checked and purged cleanly: $(basename "$deb")"
