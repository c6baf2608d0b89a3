# The fleet: an Auto Scaling group of hanat instances registered in the
# GENEVE target group, with a scale-in lifecycle hook that gives a member
# time to drain (hanatd sees Terminated in IMDS, fails its health check at
# once, keeps forwarding its flows until they end or the deregistration
# delay passes).

data "aws_ec2_instance_type" "member" {
  instance_type = var.instance_type
}

locals {
  # The AMI names of packaging/ami use amd64/arm64.
  arch = contains(data.aws_ec2_instance_type.member.supported_architectures, "arm64") ? "arm64" : "amd64"
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
}

resource "aws_security_group" "member" {
  name        = "${var.name}-fleet"
  description = "hanat fleet members"
  vpc_id      = aws_vpc.main.id
  tags        = { Name = "${var.name}-fleet" }
}

# GENEVE and the health checks come from the GWLB's ENIs in the public
# subnets; the replies of NATed flows are let in by the instance's own
# conntrack (security groups are stateful), so nothing else from outside.
resource "aws_vpc_security_group_ingress_rule" "geneve" {
  for_each          = aws_subnet.public
  security_group_id = aws_security_group.member.id
  cidr_ipv4         = each.value.cidr_block
  ip_protocol       = "udp"
  from_port         = 6081
  to_port           = 6081
  description       = "GENEVE from the GWLB"
}

resource "aws_vpc_security_group_ingress_rule" "health_check" {
  for_each          = aws_subnet.public
  security_group_id = aws_security_group.member.id
  cidr_ipv4         = each.value.cidr_block
  ip_protocol       = "tcp"
  from_port         = var.health_check_port
  to_port           = var.health_check_port
  description       = "GWLB health checks"
}

resource "aws_vpc_security_group_ingress_rule" "ssh" {
  for_each          = toset(var.ssh_cidrs)
  security_group_id = aws_security_group.member.id
  cidr_ipv4         = each.value
  ip_protocol       = "tcp"
  from_port         = 22
  to_port           = 22
  description       = "SSH"
}

resource "aws_vpc_security_group_egress_rule" "all" {
  security_group_id = aws_security_group.member.id
  cidr_ipv4         = "0.0.0.0/0"
  ip_protocol       = "-1"
  description       = "NATed traffic to the internet, replies to the GWLB"
}

resource "aws_launch_template" "member" {
  name_prefix   = "${var.name}-fleet-"
  image_id      = local.ami_id
  instance_type = var.instance_type
  key_name      = var.ssh_key_name

  iam_instance_profile {
    arn = aws_iam_instance_profile.member.arn
  }

  network_interfaces {
    device_index                = 0
    associate_public_ip_address = true
    security_groups             = [aws_security_group.member.id]
    # In two-arm mode every packet on the wire carries the member's own
    # address (GENEVE to and from the GWLB, NATed traffic), so the
    # source/dest check could stay on; hanatd turns it off as for a pair
    # (cloud.manage_source_dest_check), allowed on ENIs tagged hanat.
    delete_on_termination = true
  }

  # hanatd talks to IMDSv2 only; the lifecycle state is in instance
  # metadata (autoscaling/target-lifecycle-state).
  metadata_options {
    http_endpoint               = "enabled"
    http_tokens                 = "required"
    http_put_response_hop_limit = 1
    instance_metadata_tags      = "disabled"
  }

  user_data = base64encode(templatefile("${path.module}/../ami/user-data-fleet.sh", {
    gwlb_description     = "ELB ${aws_lb.gwlb.arn_suffix}"
    region               = var.region
    health_check_port    = var.health_check_port
    deregistration_delay = "${var.deregistration_delay}s"
  }))

  tag_specifications {
    resource_type = "instance"
    tags          = { Name = "${var.name}-fleet", hanat = "fleet" }
  }
  tag_specifications {
    resource_type = "network-interface"
    tags          = { Name = "${var.name}-fleet", hanat = "fleet" }
  }
}

resource "aws_autoscaling_group" "fleet" {
  name                = "${var.name}-fleet"
  min_size            = var.fleet_min
  max_size            = var.fleet_max
  desired_capacity    = var.fleet_desired
  vpc_zone_identifier = [for s in aws_subnet.public : s.id]
  target_group_arns   = [aws_lb_target_group.fleet.arn]
  # The GWLB's health check decides: a member whose datapath or upstream
  # fails is replaced, not only taken out of the GWLB's hash.
  health_check_type         = "ELB"
  health_check_grace_period = 120

  launch_template {
    id      = aws_launch_template.member.id
    version = "$Latest"
  }

  # Scale-in waits for the drain: the instance stays Terminating:Wait (IMDS
  # says Terminated) until hanatd's drain ends and it completes this hook's
  # lifecycle action (CONTINUE); should that call fail, the heartbeat
  # timeout, a little above the deregistration delay, ends the wait.
  initial_lifecycle_hook {
    name                 = "hanat-drain"
    lifecycle_transition = "autoscaling:EC2_INSTANCE_TERMINATING"
    heartbeat_timeout    = var.deregistration_delay + 60
    default_result       = "CONTINUE"
  }

  instance_refresh {
    strategy = "Rolling"
    preferences {
      min_healthy_percentage = 66
    }
  }
}
