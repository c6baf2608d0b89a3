output "nat_public_ips" {
  description = "Each AZ's NAT Elastic IP: what the internet sees from that AZ's private hosts."
  value       = { for k, az in local.pair : az => aws_eip.nat[k].public_ip }
}

output "nat_instance_ids" {
  value = { for k, az in local.pair : az => aws_instance.nat[k].id }
}

output "nat_private_ips" {
  value = { for k, az in local.pair : az => aws_network_interface.nat[k].private_ip }
}

output "private_route_table_ids" {
  description = "The route tables the pair owns (one home table per NAT)."
  value       = { for k, az in local.pair : az => aws_route_table.private[k].id }
}

output "private_subnet_ids" {
  value = { for k, az in local.pair : az => aws_subnet.private[k].id }
}

output "vpc_id" {
  value = aws_vpc.main.id
}
