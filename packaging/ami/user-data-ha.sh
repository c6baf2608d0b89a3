#!/bin/sh
# hanat HA pair: user data for each of the two NAT instances (cloud-init
# runs it once, as root, at first boot, after hanatd has started on its
# defaults). It fetches the pair's shared heartbeat key from SSM Parameter
# Store or Secrets Manager into a 0600 file, writes the HA part of
# /etc/hanat/hanat.yaml, validates it, and restarts hanatd (a restart does
# not interrupt NAT).
#
# This file is a Terraform template (packaging/terraform fills the three
# values below with templatefile(); the rest has no "$" + "{" on purpose); to
# use it by hand, replace the three values.
#   peer_address  the other NAT instance's private IPv4 address
#   key_source    ssm:PARAMETER-NAME   (a SecureString, e.g. ssm:/hanat/ha-key)
#                 secretsmanager:SECRET-ID (name or ARN; SecretString)
#   region        the region of the parameter or secret
#
# The instance role needs ssm:GetParameter on the parameter (or
# secretsmanager:GetSecretValue on the secret); the Terraform example
# grants exactly that. Needs the AWS CLI (Amazon Linux has it; the Debian
# image gets it from provision.sh).
set -eu

peer='${peer_address}'
key_source='${key_source}'
region='${region}'

conf=/etc/hanat/hanat.yaml
key_file=/etc/hanat/ha.key
log() { echo "hanat user-data: $*" >&2; logger -t hanat-user-data -- "$*" 2>/dev/null || true; }

command -v aws >/dev/null 2>&1 || { log "the AWS CLI is missing: cannot fetch the HA key"; exit 1; }

# The key, never on a command line or in the log. umask first: the file is
# created 0600.
umask 077
tmp=$(mktemp /etc/hanat/.ha.key.XXXXXX)
trap 'rm -f "$tmp"' EXIT
case "$key_source" in
ssm:*)
	aws --region "$region" ssm get-parameter --with-decryption \
		--name "$(echo "$key_source" | sed "s/^ssm://")" --query Parameter.Value --output text >"$tmp"
	;;
secretsmanager:*)
	aws --region "$region" secretsmanager get-secret-value \
		--secret-id "$(echo "$key_source" | sed "s/^secretsmanager://")" --query SecretString --output text >"$tmp"
	;;
*)
	log "key_source '$key_source' is neither ssm:NAME nor secretsmanager:ID"
	exit 1
	;;
esac
if [ "$(wc -c <"$tmp")" -lt 32 ]; then
	log "the HA key from $key_source is shorter than 32 bytes; refusing it"
	exit 1
fi
chmod 0600 "$tmp"
mv -f "$tmp" "$key_file"
trap - EXIT
log "HA key from $key_source written to $key_file (0600)"

# The HA section, appended to the packaged defaults. Validated before use:
# an hanatd built without HA refuses the unknown keys, and then the node
# runs as a lone NAT instead of not at all.
cp -p "$conf" "$conf.pre-ha"
cat >>"$conf" <<YAML

# Written by the HA user data at first boot.
ha:
  peer: $peer
  key_file: $key_file
YAML
if ! hanatd --check-config "$conf" >&2; then
	log "this hanatd does not accept the HA settings; running as a single NAT instance"
	mv -f "$conf.pre-ha" "$conf"
else
	rm -f "$conf.pre-ha"
	log "HA peer $peer configured"
fi
systemctl restart hanatd.service
log "hanatd restarted: $(systemctl is-active hanatd.service)"
