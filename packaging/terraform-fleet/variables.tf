variable "region" {
  type        = string
  default     = "us-east-1"
  description = "AWS region."
}

variable "name" {
  type        = string
  default     = "hanat"
  description = "Prefix of the Name tags and of the GWLB, target group and Auto Scaling group names."
}

variable "vpc_cidr" {
  type        = string
  default     = "10.0.0.0/16"
  description = "The VPC (the seed's layout)."
}

variable "public_subnet_cidrs" {
  type        = list(string)
  default     = ["10.0.1.0/24", "10.0.2.0/24"]
  description = "Public subnets, one per AZ: the GWLB's ENIs and the fleet's instances (route 0.0.0.0/0 to the internet gateway)."
}

variable "endpoint_subnet_cidrs" {
  type        = list(string)
  default     = ["10.0.21.0/28", "10.0.22.0/28"]
  description = "Endpoint subnets, one per AZ: the GWLB endpoint the AZ's private route table points at."
}

variable "private_subnet_cidrs" {
  type        = list(string)
  default     = ["10.0.11.0/24", "10.0.12.0/24"]
  description = "Private subnets, one per AZ: their route tables send 0.0.0.0/0 to the AZ's GWLB endpoint."
}

variable "availability_zones" {
  type        = list(string)
  default     = []
  description = "Two AZs; empty = the region's first two."
}

variable "ami_id" {
  type        = string
  default     = ""
  description = "hanat AMI (packaging/ami); empty = the newest AMI of this account named hanat-*-<ami_distro>-<architecture>-*."
}

variable "ami_distro" {
  type        = string
  default     = "al2023"
  description = "al2023 or debian12, for the AMI lookup."
}

variable "instance_type" {
  type        = string
  default     = "c7gn.medium"
  description = "Member instance type. Instances under 32 vCPUs get at most 5 Gbit/s to the internet; a fleet adds members rather than size."
}

variable "fleet_min" {
  type        = number
  default     = 2
  description = "Fewest members (two keep one AZ's failure survivable)."
}

variable "fleet_desired" {
  type        = number
  default     = 3
  description = "Members at first."
}

variable "fleet_max" {
  type        = number
  default     = 10
  description = "Most members (GWLB's quota: 300 targets per AZ per target group)."
}

variable "cross_zone" {
  type        = bool
  default     = false
  description = "GWLB cross-zone load balancing (off on AWS by default: an AZ's flows stay on its members)."
}

variable "health_check_port" {
  type        = number
  default     = 80
  description = "The TCP port of the target group's health check, answered by hanatd (gwlb.health_check.port)."
}

variable "deregistration_delay" {
  type        = number
  default     = 300
  description = "Seconds a draining member keeps its flows (the target group's, hanatd's gwlb.deregistration_delay, and the lifecycle hook's heartbeat timeout minus 60)."
}

variable "ssh_key_name" {
  type        = string
  default     = null
  description = "EC2 key pair for SSH to the members (optional)."
}

variable "ssh_cidrs" {
  type        = list(string)
  default     = []
  description = "Sources allowed to SSH to the members from the internet."
}

variable "cloudwatch_namespace" {
  type        = string
  default     = "hanat"
  description = "Namespace the members may publish their NAT-gateway metrics to; empty = no CloudWatch permission."
}

variable "tags" {
  type        = map(string)
  default     = {}
  description = "Tags on every resource (the hanat tag is added where the IAM policy needs it)."
}
