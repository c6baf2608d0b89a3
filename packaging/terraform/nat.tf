# The hanat pair: one NAT instance per public subnet, each on its own ENI
# (source/dest check off, as a NAT needs; hanatd would turn it off too)
# with an Elastic IP, both tagged "hanat" as packaging/iam-policy.json
# requires.

data "aws_ec2_instance_type" "nat" {
  instance_type = var.instance_type
}

locals {
  # The AMI names of packaging/ami use amd64/arm64.
  arch = contains(data.aws_ec2_instance_type.nat.supported_architectures, "arm64") ? "arm64" : "amd64"
}

data "aws_ami" "hanat" {
  count       = var.ami_id == "" ? 1 : 0
  owners      = ["self"]
  most_recent = true
  filter {
    name   = "name"
    values = ["hanat-*-${var.ami_distro}-${local.arch}-*"]
  }
}

locals {
  ami_id = var.ami_id != "" ? var.ami_id : data.aws_ami.hanat[0].id
  # Each NAT's peer is the other one.
  peer = { "0" = "1", "1" = "0" }
}

resource "aws_security_group" "nat" {
  name        = "${var.name}-nat"
  description = "hanat NAT instances"
  vpc_id      = aws_vpc.main.id
  tags        = { Name = "${var.name}-nat" }
}

# Everything from the VPC: the private hosts' traffic to be NATed (any
# protocol and port, like a NAT gateway) and the pair's heartbeats.
resource "aws_vpc_security_group_ingress_rule" "from_vpc" {
  security_group_id = aws_security_group.nat.id
  cidr_ipv4         = var.vpc_cidr
  ip_protocol       = "-1"
  description       = "private hosts to be NATed, heartbeats"
}

resource "aws_vpc_security_group_ingress_rule" "ssh" {
  for_each          = toset(var.ssh_cidrs)
  security_group_id = aws_security_group.nat.id
  cidr_ipv4         = each.value
  ip_protocol       = "tcp"
  from_port         = 22
  to_port           = 22
  description       = "SSH"
}

resource "aws_vpc_security_group_egress_rule" "all" {
  security_group_id = aws_security_group.nat.id
  cidr_ipv4         = "0.0.0.0/0"
  ip_protocol       = "-1"
  description       = "NATed traffic to the internet"
}

resource "aws_network_interface" "nat" {
  for_each          = local.pair
  subnet_id         = aws_subnet.public[each.key].id
  security_groups   = [aws_security_group.nat.id]
  source_dest_check = false
  tags = {
    Name  = "${var.name}-nat-${each.value}"
    hanat = each.key
  }
}

resource "aws_eip" "nat" {
  for_each          = local.pair
  domain            = "vpc"
  network_interface = aws_network_interface.nat[each.key].id
  tags = {
    Name  = "${var.name}-nat-${each.value}"
    hanat = each.key
  }
  depends_on = [aws_internet_gateway.main]
}

# The pair's heartbeat key: random (Secrets Manager's GetRandomPassword,
# so no provider but aws is needed), in SSM Parameter Store as a
# SecureString; each NAT reads it at first boot (packaging/ami/user-data-ha.sh).
# The data source draws a new password at every plan: the parameter keeps
# the one it was created with (ignore_changes), so the key never changes
# under a running pair.
data "aws_secretsmanager_random_password" "ha_key" {
  password_length     = 48
  exclude_punctuation = true
  include_space       = false
}

resource "aws_ssm_parameter" "ha_key" {
  name        = var.ha_key_parameter
  description = "hanat HA heartbeat key (HMAC-SHA256)"
  type        = "SecureString"
  value       = data.aws_secretsmanager_random_password.ha_key.random_password
  lifecycle {
    ignore_changes = [value]
  }
}

resource "aws_instance" "nat" {
  for_each             = local.pair
  ami                  = local.ami_id
  instance_type        = var.instance_type
  key_name             = var.ssh_key_name
  iam_instance_profile = aws_iam_instance_profile.nat.name

  network_interface {
    device_index         = 0
    network_interface_id = aws_network_interface.nat[each.key].id
  }

  # hanatd talks to IMDSv2 only.
  metadata_options {
    http_endpoint               = "enabled"
    http_tokens                 = "required"
    http_put_response_hop_limit = 1
  }

  user_data = templatefile("${path.module}/../ami/user-data-ha.sh", {
    peer_address = aws_network_interface.nat[local.peer[each.key]].private_ip
    key_source   = "ssm:${aws_ssm_parameter.ha_key.name}"
    region       = var.region
  })
  user_data_replace_on_change = true

  tags = {
    Name  = "${var.name}-nat-${each.value}"
    hanat = each.key
  }
  # The role must be able to read the key before the first boot's user data.
  depends_on = [aws_iam_role_policy.nat_ha_key]
}
