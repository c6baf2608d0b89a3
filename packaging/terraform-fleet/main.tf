# A hanat fleet behind a Gateway Load Balancer (two-arm mode): VPC
# 10.0.0.0/16, in each AZ a public subnet (0.0.0.0/0 → internet gateway)
# where the GWLB's ENI and the fleet's instances live, a small endpoint
# subnet holding that AZ's GWLB endpoint, and a private subnet whose route
# table sends 0.0.0.0/0 to the endpoint of its AZ. GWLB spreads the private
# hosts' flows over the healthy members (5-tuple, sticky); each member
# decapsulates, NATs out of its own ENI under its own public IP, and sends
# the replies back through the GWLB, which delivers them to the endpoint
# and the host.

data "aws_availability_zones" "available" {
  state = "available"
}

locals {
  azs  = length(var.availability_zones) > 0 ? var.availability_zones : slice(data.aws_availability_zones.available.names, 0, 2)
  zone = { for i, az in local.azs : tostring(i) => az }
}

resource "aws_vpc" "main" {
  cidr_block           = var.vpc_cidr
  enable_dns_support   = true
  enable_dns_hostnames = true
  tags                 = { Name = "${var.name}-vpc" }
}

resource "aws_internet_gateway" "main" {
  vpc_id = aws_vpc.main.id
  tags   = { Name = "${var.name}-igw" }
}

resource "aws_subnet" "public" {
  for_each          = local.zone
  vpc_id            = aws_vpc.main.id
  availability_zone = each.value
  cidr_block        = var.public_subnet_cidrs[tonumber(each.key)]
  # Each member sends its NATed traffic under the public IPv4 address
  # Auto Scaling gives it at launch.
  map_public_ip_on_launch = true
  tags                    = { Name = "${var.name}-public-${each.value}" }
}

resource "aws_subnet" "endpoint" {
  for_each          = local.zone
  vpc_id            = aws_vpc.main.id
  availability_zone = each.value
  cidr_block        = var.endpoint_subnet_cidrs[tonumber(each.key)]
  tags              = { Name = "${var.name}-gwlbe-${each.value}" }
}

resource "aws_subnet" "private" {
  for_each          = local.zone
  vpc_id            = aws_vpc.main.id
  availability_zone = each.value
  cidr_block        = var.private_subnet_cidrs[tonumber(each.key)]
  tags              = { Name = "${var.name}-private-${each.value}" }
}

resource "aws_route_table" "public" {
  vpc_id = aws_vpc.main.id
  tags   = { Name = "${var.name}-public" }
}

resource "aws_route" "public_default" {
  route_table_id         = aws_route_table.public.id
  destination_cidr_block = "0.0.0.0/0"
  gateway_id             = aws_internet_gateway.main.id
}

resource "aws_route_table_association" "public" {
  for_each       = aws_subnet.public
  subnet_id      = each.value.id
  route_table_id = aws_route_table.public.id
}

# The endpoint subnets need only the VPC's local route: in two-arm mode
# nothing leaves an endpoint towards the internet (the members NAT out of
# their own ENIs), and the replies the GWLB returns go to private hosts.
resource "aws_route_table" "endpoint" {
  vpc_id = aws_vpc.main.id
  tags   = { Name = "${var.name}-gwlbe" }
}

resource "aws_route_table_association" "endpoint" {
  for_each       = aws_subnet.endpoint
  subnet_id      = each.value.id
  route_table_id = aws_route_table.endpoint.id
}

# Private, one per AZ: 0.0.0.0/0 → the AZ's GWLB endpoint. Nothing moves
# these routes: a member failing is the GWLB's business (health checks),
# not a route change.
resource "aws_route_table" "private" {
  for_each = local.zone
  vpc_id   = aws_vpc.main.id
  tags     = { Name = "${var.name}-private-${each.value}" }
}

resource "aws_route" "private_default" {
  for_each               = local.zone
  route_table_id         = aws_route_table.private[each.key].id
  destination_cidr_block = "0.0.0.0/0"
  vpc_endpoint_id        = aws_vpc_endpoint.gwlb[each.key].id
}

resource "aws_route_table_association" "private" {
  for_each       = aws_subnet.private
  subnet_id      = each.value.id
  route_table_id = aws_route_table.private[each.key].id
}
