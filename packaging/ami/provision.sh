#!/bin/sh
# Provision a hanat NAT instance image (Packer runs this once, as root, on
# Amazon Linux 2023 or Debian 12, amd64 or arm64):
#
#   provision.sh PACKAGE            PACKAGE: the hanat .deb or .rpm
#
# It installs the package (and the operator tools nftables and conntrack),
# enables hanatd.service (the first boot starts it) and
# hanat-handover.service (at shutdown — EC2 stop, terminate, reboot — the
# route tables go to the HA peer first), and sets what the
# kernel needs beyond the package's sysctl.d/modules-load.d files: a
# conntrack hash table sized for a NAT. It is idempotent: running it again
# changes nothing.
#
# Environment:
#   HANAT_EXTRA_PACKAGES  distribution packages to install first (default:
#                         nftables and the conntrack CLI for operators, and
#                         on Debian the AWS CLI the HA user-data uses to
#                         fetch its key; Amazon Linux has it). "" for none,
#                         e.g. offline.
#   HANAT_CONNTRACK_HASHSIZE  nf_conntrack hash buckets (default 65536)
set -eu

pkg=${1:?usage: provision.sh PACKAGE (.deb or .rpm)}
hashsize=${HANAT_CONNTRACK_HASHSIZE:-65536}

[ "$(id -u)" = 0 ] || { echo "provision.sh: run as root" >&2; exit 1; }
[ -f "$pkg" ] || { echo "provision.sh: $pkg: no such file" >&2; exit 1; }
case "$hashsize" in
'' | *[!0-9]*) echo "provision.sh: HANAT_CONNTRACK_HASHSIZE=$hashsize is not a number" >&2; exit 1 ;;
esac

. /etc/os-release
echo "provision.sh: $PRETTY_NAME, $(uname -m), package $pkg"

case "$pkg" in
*.deb)
	extras=${HANAT_EXTRA_PACKAGES-nftables conntrack awscli}
	export DEBIAN_FRONTEND=noninteractive
	if [ -n "$extras" ]; then
		apt-get update
		# shellcheck disable=SC2086 # a list of package names
		apt-get install -y --no-install-recommends $extras
	fi
	# The package has no hard dependencies; keep an edited conffile.
	dpkg -i --force-confold "$pkg"
	;;
*.rpm)
	extras=${HANAT_EXTRA_PACKAGES-nftables conntrack-tools}
	if [ -n "$extras" ]; then
		# shellcheck disable=SC2086
		dnf install -y $extras
	fi
	if rpm -q hanat >/dev/null 2>&1; then
		rpm -U --replacepkgs "$pkg"
	else
		rpm -i "$pkg"
	fi
	;;
*)
	echo "provision.sh: $pkg is neither a .deb nor an .rpm" >&2
	exit 1
	;;
esac

# The kernel. nf_conntrack sizes its hash table from memory at load time,
# which on a small instance (t4g.nano: 512 MiB) is a few thousand buckets
# while hanatd raises nf_conntrack_max far above that: long hash chains on
# every packet of the slow path. A fixed power of two costs 8 bytes per
# bucket (512 KiB here) and keeps lookups short.
mkdir -p /etc/modprobe.d
cat >/etc/modprobe.d/hanat.conf <<CONF
# hanat (provision.sh): conntrack hash table sized for a NAT instance.
options nf_conntrack hashsize=$hashsize
CONF

# Modules and sysctls now, when this is a running system (the image's first
# boot gets them from modules-load.d and sysctl.d anyway).
if [ -d /run/systemd/system ]; then
	for m in nf_conntrack nf_nat nf_tables; do
		modprobe "$m" 2>/dev/null || echo "provision.sh: modprobe $m failed (container?); it loads at boot"
	done
	if [ -w /sys/module/nf_conntrack/parameters/hashsize ]; then
		echo "$hashsize" >/sys/module/nf_conntrack/parameters/hashsize 2>/dev/null || true
	fi
	/usr/lib/systemd/systemd-sysctl /usr/lib/sysctl.d/60-hanat.conf 2>/dev/null ||
		echo "provision.sh: could not apply sysctls now; they apply at boot"
fi

# bpffs for the fast path's pinned maps: systemd mounts it at boot on both
# distributions; say so loudly if this one does not.
if [ -d /run/systemd/system ] && ! grep -qs ' /sys/fs/bpf bpf ' /proc/mounts; then
	echo "provision.sh: warning: /sys/fs/bpf is not a bpffs; the fast path will run without pinning" >&2
fi

systemctl enable hanatd.service hanat-handover.service

echo "provision.sh: hanatd.service is $(systemctl is-enabled hanatd.service), hanat-handover.service is $(systemctl is-enabled hanat-handover.service); they start on the next boot"
