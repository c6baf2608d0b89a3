variable "region" {
  type        = string
  default     = "us-east-1"
  description = "AWS region."
}

variable "name" {
  type        = string
  default     = "hanat"
  description = "Prefix of the Name tags."
}

variable "vpc_cidr" {
  type        = string
  default     = "10.0.0.0/16"
  description = "The VPC (the seed's layout)."
}

variable "public_subnet_cidrs" {
  type        = list(string)
  default     = ["10.0.1.0/24", "10.0.2.0/24"]
  description = "Public subnets, one per AZ: the NAT instances live here (route 0.0.0.0/0 to the internet gateway)."
}

variable "private_subnet_cidrs" {
  type        = list(string)
  default     = ["10.0.11.0/24", "10.0.12.0/24"]
  description = "Private subnets, one per AZ: their route tables send 0.0.0.0/0 to the NAT of the same AZ."
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
  default     = "t4g.nano"
  description = "NAT instance type. Graviton (t4g) is the cheapest; the AMI's architecture must match."
}

variable "ssh_key_name" {
  type        = string
  default     = null
  description = "EC2 key pair for SSH to the NAT instances (optional)."
}

variable "ssh_cidrs" {
  type        = list(string)
  default     = []
  description = "Sources allowed to SSH to the NAT instances from the internet (hanat's host_input also opens 22 by default)."
}

variable "ha_key_parameter" {
  type        = string
  default     = "/hanat/ha-key"
  description = "SSM Parameter Store name of the pair's heartbeat key (a SecureString this example creates)."
}

variable "cloudwatch_namespace" {
  type        = string
  default     = "hanat"
  description = "Namespace the NAT instances may publish their NAT-gateway metrics to (cloudwatch:PutMetricData is allowed for this namespace only); empty = no CloudWatch permission."
}

variable "tags" {
  type        = map(string)
  default     = {}
  description = "Tags on every resource (the hanat tag is added where the IAM policy needs it)."
}
