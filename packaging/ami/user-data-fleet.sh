#!/bin/sh
# hanat fleet member: user data for each instance of the Auto Scaling group
# behind a Gateway Load Balancer (cloud-init runs it once, as root, at first
# boot, after hanatd has started on its defaults). It reads the GWLB's
# private addresses (its "ELB gwy/..." ENIs), writes the gwlb part of
# /etc/hanat/hanat.yaml, validates it and restarts hanatd.
#
# This file is a Terraform template (packaging/terraform-fleet fills the
# four values below with templatefile(); the rest has no "$" + "{" on
# purpose); to use it by hand, replace the four values.
#   gwlb_description      "ELB gwy/NAME/ID", the description of the GWLB's ENIs
#   region                the region
#   health_check_port     the target group's health check port (TCP)
#   deregistration_delay  the target group's deregistration delay, e.g. 300s
#
# The instance role needs ec2:DescribeNetworkInterfaces. Needs the AWS CLI
# (Amazon Linux has it; the Debian image gets it from provision.sh).
set -eu

description='${gwlb_description}'
region='${region}'
port='${health_check_port}'
delay='${deregistration_delay}'

conf=/etc/hanat/hanat.yaml
log() { echo "hanat user-data: $*" >&2; logger -t hanat-user-data -- "$*" 2>/dev/null || true; }

command -v aws >/dev/null 2>&1 || { log "the AWS CLI is missing: cannot read the GWLB's addresses"; exit 1; }

# The GWLB has one ENI per enabled AZ; GENEVE from any other source is
# dropped by the member, so every one of them must be listed. Bounded
# retries: the GWLB's ENIs exist before the Auto Scaling group launches
# anything, but EC2 may throttle a fleet booting at once.
addrs=""
for try in 1 2 3 4 5 6; do
	addrs=$(aws --region "$region" ec2 describe-network-interfaces \
		--filters "Name=description,Values=$description" \
		--query 'NetworkInterfaces[].PrivateIpAddress' --output text 2>/dev/null || true)
	[ -n "$addrs" ] && break
	sleep $((try * 5))
done
if [ -z "$addrs" ]; then
	log "no ENI described '$description': the GWLB's addresses are unknown; hanatd stays a plain NAT instance"
	exit 1
fi
list=$(echo "$addrs" | tr -s ' \t' '\n' | sed '/^$/d' | paste -sd, -)

cp -p "$conf" "$conf.pre-gwlb"
cat >>"$conf" <<YAML

# Written by the fleet user data at first boot.
gwlb:
  enabled: true
  addresses: [$list]
  health_check:
    port: $port
    protocol: tcp
  deregistration_delay: $delay
  lifecycle_hook: true
YAML
if ! hanatd --check-config "$conf" >&2; then
	log "this hanatd does not accept the gwlb settings; leaving it a plain NAT instance (it will fail the GWLB's health check)"
	mv -f "$conf.pre-gwlb" "$conf"
else
	rm -f "$conf.pre-gwlb"
	log "fleet member of the GWLB at $list"
fi
systemctl restart hanatd.service
log "hanatd restarted: $(systemctl is-active hanatd.service)"
