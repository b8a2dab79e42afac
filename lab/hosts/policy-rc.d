#!/bin/sh
# Installed only while the base rootfs is built: packages must not start
# their daemons in a rootfs that is not booted.
exit 101
