output "gwlb_arn" {
  value       = aws_lb.gwlb.arn
  description = "The Gateway Load Balancer."
}

output "gwlb_endpoints" {
  value       = { for k, e in aws_vpc_endpoint.gwlb : local.zone[k] => e.id }
  description = "The GWLB endpoint per AZ (the private route tables' 0.0.0.0/0 target)."
}

output "target_group_arn" {
  value       = aws_lb_target_group.fleet.arn
  description = "The GENEVE target group; `aws elbv2 describe-target-health --target-group-arn …` shows each member's health."
}

output "autoscaling_group" {
  value       = aws_autoscaling_group.fleet.name
  description = "The fleet's Auto Scaling group."
}

output "private_route_tables" {
  value       = { for k, rt in aws_route_table.private : local.zone[k] => rt.id }
  description = "The private route tables, one per AZ."
}
