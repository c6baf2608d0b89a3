#!/bin/sh
# hanat postremove (deb: "remove", "purge", "upgrade", …; rpm: 0 = erase,
# 1 = upgrade). Purge also forgets the recorded sysctl originals.
set -e

if [ -d /run/systemd/system ]; then
	systemctl daemon-reload || true
fi
if [ "$1" = purge ]; then
	rm -rf /var/lib/hanat
fi
exit 0
