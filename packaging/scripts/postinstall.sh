#!/bin/sh
# hanat postinstall (deb: "configure [old-version]"; rpm: 1 = install,
# 2 = upgrade). Creates the hanat group and directories, enables the units on
# first install (it does not start them), and on upgrade restarts a running
# hanatd, which does not interrupt NAT: the datapath outlives the daemon.
# hanat-handover.service (route tables to the HA peer at shutdown) is not
# restarted: restarting it would run its handover.
set -e

first_install=no
case "$1" in
configure) [ -z "$2" ] && first_install=yes ;;
1) first_install=yes ;;
esac

if command -v systemd-sysusers >/dev/null 2>&1; then
	systemd-sysusers /usr/lib/sysusers.d/hanat.conf
elif ! getent group hanat >/dev/null 2>&1; then
	groupadd --system hanat
fi
if command -v systemd-tmpfiles >/dev/null 2>&1; then
	systemd-tmpfiles --create /usr/lib/tmpfiles.d/hanat.conf || true
fi

if [ -d /run/systemd/system ]; then
	systemctl daemon-reload || true
	# Apply the forwarding sysctls now on a running system (image builds and
	# chroots get them at boot).
	if command -v /usr/lib/systemd/systemd-sysctl >/dev/null 2>&1; then
		/usr/lib/systemd/systemd-sysctl /usr/lib/sysctl.d/60-hanat.conf || true
	fi
fi

if [ "$first_install" = yes ]; then
	# Works without a running systemd too (chroot, image build).
	systemctl enable hanatd.service hanat-handover.service || true
	echo "hanat: hanatd.service is enabled; start it with 'systemctl start hanatd'" >&2
elif [ -d /run/systemd/system ]; then
	systemctl try-restart hanatd.service || true
	# An upgrade from a version without the handover unit: arm it now so
	# the next shutdown hands the route tables over (its start runs
	# /bin/true; a no-op when it is already active).
	if systemctl is-active --quiet hanatd.service; then
		systemctl start hanat-handover.service || true
	fi
fi
exit 0
