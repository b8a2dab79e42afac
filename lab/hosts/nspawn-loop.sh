#!/bin/sh
# Supervises one lab host: nspawn-loop.sh HOST_DIR CGROUP_DIR... -- NSPAWN_ARGS...
#
# Joins the host's own cgroups first (otherwise every host shares nspawn's
# "payload" cgroup and stopping a unit in one host stops it in all), then
# boots systemd-nspawn, and boots it again when the host reboots (exit 133)
# unless a stop was requested. hosts.py stops a host by the PID in
# HOST_DIR/nspawn.pid; SIGTERM to this script is forwarded the same way.
set -u
host_dir=$1
shift
while [ "$#" -gt 0 ] && [ "$1" != "--" ]; do
    echo $$ > "$1/cgroup.procs" || exit 70
    shift
done
shift

nspawn_pid=
# shellcheck disable=SC2317  # invoked by the trap below
request_stop() {
    : > "$host_dir/stop-requested"
    [ -n "$nspawn_pid" ] && kill -TERM "$nspawn_pid" 2>/dev/null
}
trap request_stop TERM INT HUP

rc=0
while :; do
    systemd-nspawn "$@" </dev/null &
    nspawn_pid=$!
    echo "$nspawn_pid" > "$host_dir/nspawn.pid"
    # `wait` returns early when a trapped signal arrives: wait again until
    # nspawn has really exited.
    while :; do
        wait "$nspawn_pid"
        rc=$?
        kill -0 "$nspawn_pid" 2>/dev/null || break
    done
    if [ "$rc" -ne 133 ] || [ -e "$host_dir/stop-requested" ]; then
        break
    fi
    echo "lab-host: reboot requested (exit 133), booting again" >&2
done
rm -f "$host_dir/nspawn.pid"
echo "lab-host: systemd-nspawn exited with $rc" >&2
exit "$rc"
