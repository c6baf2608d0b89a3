# The seed's layout with a hanat pair: VPC 10.0.0.0/16, in each of two AZs a
# public subnet (route 0.0.0.0/0 → internet gateway) holding a NAT instance
# with an Elastic IP, and a private subnet whose route table sends 0.0.0.0/0
# to the NAT of the same AZ (no cross-AZ traffic; one AZ failing stays
# local). The HA pair re-points a private route table at the surviving NAT
# when its own NAT dies.

data "aws_availability_zones" "available" {
  state = "available"
}

locals {
  azs = length(var.availability_zones) > 0 ? var.availability_zones : slice(data.aws_availability_zones.available.names, 0, 2)
  # One index per AZ: "a" and "c" in the seed's naming, 0 and 1 here.
  pair = { for i, az in local.azs : tostring(i) => az }
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
  for_each          = local.pair
  vpc_id            = aws_vpc.main.id
  availability_zone = each.value
  cidr_block        = var.public_subnet_cidrs[tonumber(each.key)]
  # The NATs get Elastic IPs; nothing else here needs an automatic one.
  map_public_ip_on_launch = false
  tags                    = { Name = "${var.name}-public-${each.value}" }
}

resource "aws_subnet" "private" {
  for_each          = local.pair
  vpc_id            = aws_vpc.main.id
  availability_zone = each.value
  cidr_block        = var.private_subnet_cidrs[tonumber(each.key)]
  tags              = { Name = "${var.name}-private-${each.value}" }
}

# Public: 0.0.0.0/0 → IGW (a NAT in a subnet without it is the classic
# mistake; hanatctl doctor checks it).
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

# Private, one per AZ, tagged "hanat": the IAM policy lets the NATs
# CreateRoute/ReplaceRoute only in route tables carrying that tag key.
resource "aws_route_table" "private" {
  for_each = local.pair
  vpc_id   = aws_vpc.main.id
  tags = {
    Name  = "${var.name}-private-${each.value}"
    hanat = "home:${each.key}"
  }
}

resource "aws_route" "private_default" {
  for_each               = local.pair
  route_table_id         = aws_route_table.private[each.key].id
  destination_cidr_block = "0.0.0.0/0"
  network_interface_id   = aws_network_interface.nat[each.key].id

  # hanat's HA pair moves this route to the surviving NAT on failover (and
  # back); Terraform only creates it.
  lifecycle {
    ignore_changes = [network_interface_id]
  }
}

resource "aws_route_table_association" "private" {
  for_each       = aws_subnet.private
  subnet_id      = each.value.id
  route_table_id = aws_route_table.private[each.key].id
}
