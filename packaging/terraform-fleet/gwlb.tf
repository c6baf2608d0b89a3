# The Gateway Load Balancer: one ENI per public subnet, a GENEVE target
# group of the fleet's instances (registered by the Auto Scaling group),
# an endpoint service and one endpoint per AZ as the private route
# tables' target.

resource "aws_lb" "gwlb" {
  name               = "${var.name}-gwlb"
  load_balancer_type = "gateway"
  subnets            = [for s in aws_subnet.public : s.id]
  # Off by default on AWS: an AZ's flows stay on that AZ's members, so one
  # AZ failing never touches another's flows. On, every member serves every
  # AZ (more even load, cross-AZ data charges).
  enable_cross_zone_load_balancing = var.cross_zone
}

resource "aws_lb_target_group" "fleet" {
  name                 = "${var.name}-fleet"
  port                 = 6081
  protocol             = "GENEVE"
  vpc_id               = aws_vpc.main.id
  target_type          = "instance"
  deregistration_delay = var.deregistration_delay

  # hanatd's gwlb.health_check: TCP on port 80 by default (the port is open
  # only while the member is healthy: datapath attached, upstream reachable,
  # not draining).
  health_check {
    protocol            = "TCP"
    port                = var.health_check_port
    interval            = 10
    healthy_threshold   = 3
    unhealthy_threshold = 3
  }

  # A failed or deregistered member's flows: no_rebalance (AWS's default)
  # keeps them on it (lost if it died); rebalance rehashes them to the
  # others (a NAT loses them anyway: their public IP:port was the dead
  # member's). A draining member keeps its flows in either case until the
  # deregistration delay, which is what hanat's drain relies on.
  target_failover {
    on_deregistration = "no_rebalance"
    on_unhealthy      = "no_rebalance"
  }
  # Stickiness stays GWLB's default, the 5-tuple: every flow is NATed on
  # its own, so nothing gains from pinning a host to one member.
}

resource "aws_lb_listener" "gwlb" {
  load_balancer_arn = aws_lb.gwlb.arn
  default_action {
    type             = "forward"
    target_group_arn = aws_lb_target_group.fleet.arn
  }
}

resource "aws_vpc_endpoint_service" "gwlb" {
  acceptance_required        = false
  gateway_load_balancer_arns = [aws_lb.gwlb.arn]
  tags                       = { Name = "${var.name}-gwlb" }
}

resource "aws_vpc_endpoint" "gwlb" {
  for_each          = local.zone
  vpc_id            = aws_vpc.main.id
  service_name      = aws_vpc_endpoint_service.gwlb.service_name
  vpc_endpoint_type = aws_vpc_endpoint_service.gwlb.service_type
  subnet_ids        = [aws_subnet.endpoint[each.key].id]
  tags              = { Name = "${var.name}-gwlbe-${each.value}" }
}
