#!/bin/sh
# hanat preremove (deb: "remove" or "upgrade"; rpm: 0 = erase, 1 = upgrade).
# On removal the daemon is stopped and disabled, after hanat-handover.service
# has handed its route tables to a healthy HA peer (a planned stop; it
# returns at once without HA or a peer). Its datapath stays: NAT keeps
# forwarding until reboot, as after any stop. To remove NAT itself run
# 'hanatd --cleanup' BEFORE removing the package.
set -e

case "$1" in
remove|0) ;;
*) exit 0 ;;
esac

if command -v systemctl >/dev/null 2>&1; then
	if [ -d /run/systemd/system ]; then
		systemctl stop hanat-handover.service || true
		systemctl stop hanatd.service || true
	fi
	systemctl disable hanat-handover.service hanatd.service || true
fi
if command -v nft >/dev/null 2>&1 && nft list table inet hanat >/dev/null 2>&1; then
	echo "hanat: the NAT datapath (nftables table inet hanat, /sys/fs/bpf/hanat) stays in place until reboot;" >&2
	echo "hanat: to remove it now: nft delete table inet hanat && rm -rf /sys/fs/bpf/hanat" >&2
fi
exit 0
