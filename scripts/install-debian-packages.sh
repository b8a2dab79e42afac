#!/usr/bin/env bash
# Install the Debian packages listed in requirements/debian.txt that are not installed yet.
set -euo pipefail
list_file="${1:-requirements/debian.txt}"
mapfile -t wanted < <(sed -e 's/#.*//' -e '/^[[:space:]]*$/d' "$list_file")
missing=()
for pkg in "${wanted[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ "${#missing[@]}" -eq 0 ]; then
  echo "Debian packages: all ${#wanted[@]} present"
  exit 0
fi
echo "Debian packages: installing ${missing[*]}"
if [ "$(id -u)" -ne 0 ]; then
  echo "error: need root to apt-get install ${missing[*]}" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# policy-rc.d: packaged daemons (prometheus, redis, …) must not start on install; the lab starts its own.
if [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d
  trap 'rm -f /usr/sbin/policy-rc.d' EXIT
fi
apt-get install -y -qq --no-install-recommends "${missing[@]}"
