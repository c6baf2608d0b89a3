#!/usr/bin/env bash
# Installs the host tools that `make test`, `make demo` and `make bench`
# need on a Debian (or Ubuntu) machine that has only Go. The one list:
# `make deps` runs it, `make test`, `make demo` and `make bench` depend on
# it, and .ci/run reaches it through `make test`. Idempotent: with
# everything present it installs nothing and needs no root.
set -euo pipefail
export PATH=$PATH:/usr/local/go/bin:/usr/sbin:/sbin

# command:package — the command whose absence means the package is missing.
tools=(
	nft:nftables conntrack:conntrack ip:iproute2 clang:clang llvm-strip:llvm
	ethtool:ethtool iperf3:iperf3 socat:socat curl:curl bpftool:bpftool
	iptables-legacy:iptables debootstrap:debootstrap
	systemd-nspawn:systemd-container nsenter:util-linux zsh:zsh bash:bash
	man:man-db setpriv:util-linux git:git
)
# file:package — headers and data that no command stands for.
files=(
	/usr/include/bpf/bpf_helpers.h:libbpf-dev
	/usr/include/linux/bpf.h:linux-libc-dev
)

need=()
add() { local p; for p in "${need[@]:-}"; do [ "$p" = "$1" ] && return; done; need+=("$1"); }
for pair in "${tools[@]}"; do
	command -v "${pair%%:*}" >/dev/null 2>&1 || add "${pair##*:}"
done
for pair in "${files[@]}"; do
	[ -e "${pair%%:*}" ] || add "${pair##*:}"
done
# clang's BPF target needs the asm headers of the host's architecture.
arch=$(uname -m)
[ -d "/usr/include/$arch-linux-gnu/asm" ] || [ -d /usr/include/asm ] || add linux-libc-dev

# Terraform and its AWS provider come from no Debian package: the machine
# image carries them (TestTerraformValidate finds the provider in a local
# plugin directory, or $HANAT_TF_PLUGIN_DIR). Say so; it skips without
# them, and fails when CI is set.
if ! command -v terraform >/dev/null 2>&1; then
	echo "deps: terraform is not installed (no Debian package): the Terraform example's validate test will skip, or fail under CI" >&2
fi

if [ ${#need[@]} -eq 0 ]; then
	echo "deps: every tool is installed"
	exit 0
fi
echo "deps: installing ${need[*]}"
if [ "$(id -u)" -ne 0 ]; then
	echo "deps: missing ${need[*]}; run 'sudo make deps' (apt-get needs root)" >&2
	exit 1
fi
if ! command -v apt-get >/dev/null 2>&1; then
	echo "deps: no apt-get on this machine; install the packages for: ${need[*]}" >&2
	exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${need[@]}"
