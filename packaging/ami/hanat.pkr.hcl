# Packer recipe for hanat NAT instance AMIs: Amazon Linux 2023 and Debian 12,
# amd64 and arm64 (Graviton t4g instances are the cheapest NAT instances).
#
#   make package VERSION=1.2.3               # packaging/dist/*.deb, *.rpm
#   cd packaging/ami
#   packer init .
#   packer build -var version=1.2.3 -var region=eu-west-1 .
#   packer build -only='amazon-ebs.debian12-arm64' -var version=1.2.3 .
#
# Every image is provisioned by the one script provision.sh: it installs the
# package, enables hanatd.service and sets what the kernel needs. hanatd
# starts on the instance's first boot with an empty configuration (IMDS
# discovery); the HA pair's settings come from user data
# (user-data-ha.sh, or packaging/terraform).

packer {
  required_plugins {
    amazon = {
      source  = "github.com/hashicorp/amazon"
      version = ">= 1.3.0"
    }
  }
}

variable "version" {
  type        = string
  description = "hanat package version, as built by make package (VERSION=...)."
}

variable "region" {
  type    = string
  default = "us-east-1"
}

variable "package_dir" {
  type        = string
  default     = "../dist"
  description = "Where make package left the .deb and .rpm files."
}

variable "subnet_id" {
  type        = string
  default     = ""
  description = "Subnet of the build instance (a public one, or one with a NAT); empty = the default VPC."
}

variable "ami_regions" {
  type        = list(string)
  default     = []
  description = "Regions to copy the AMIs to."
}

locals {
  stamp = formatdate("YYYYMMDD-hhmm", timestamp())

  # Per image: source AMI filter and owner, SSH user, build instance type,
  # package file.
  images = {
    "al2023-amd64" = {
      ami_name  = "al2023-ami-2023.*-kernel-6.1-x86_64"
      owner     = "137112412989" # Amazon
      user      = "ec2-user"
      instance  = "t3.micro"
      package   = "hanat-${var.version}-1.x86_64.rpm"
    }
    "al2023-arm64" = {
      ami_name  = "al2023-ami-2023.*-kernel-6.1-arm64"
      owner     = "137112412989"
      user      = "ec2-user"
      instance  = "t4g.micro"
      package   = "hanat-${var.version}-1.aarch64.rpm"
    }
    "debian12-amd64" = {
      ami_name  = "debian-12-amd64-*"
      owner     = "136693071363" # Debian
      user      = "admin"
      instance  = "t3.micro"
      package   = "hanat_${var.version}_amd64.deb"
    }
    "debian12-arm64" = {
      ami_name  = "debian-12-arm64-*"
      owner     = "136693071363"
      user      = "admin"
      instance  = "t4g.micro"
      package   = "hanat_${var.version}_arm64.deb"
    }
  }

  tags = {
    Name          = "hanat"
    hanat-version = var.version
  }
}

# One source; the build below overrides it per image.
source "amazon-ebs" "hanat" {
  region        = var.region
  subnet_id     = var.subnet_id == "" ? null : var.subnet_id
  ami_regions   = var.ami_regions
  ena_support   = true
  # The AMI and the build instance: IMDSv2 only (hanatd uses IMDSv2).
  imds_support = "v2.0"
  metadata_options {
    http_endpoint               = "enabled"
    http_tokens                 = "required"
    http_put_response_hop_limit = 1
  }
  ssh_timeout = "10m"
  tags        = local.tags
  run_tags    = local.tags
}

build {
  name = "hanat"

  source "amazon-ebs.hanat" {
    name          = "al2023-amd64"
    ami_name      = "hanat-${var.version}-al2023-amd64-${local.stamp}"
    instance_type = local.images["al2023-amd64"].instance
    ssh_username  = local.images["al2023-amd64"].user
    source_ami_filter {
      filters = {
        name                = local.images["al2023-amd64"].ami_name
        virtualization-type = "hvm"
        root-device-type    = "ebs"
      }
      owners      = [local.images["al2023-amd64"].owner]
      most_recent = true
    }
  }
  source "amazon-ebs.hanat" {
    name          = "al2023-arm64"
    ami_name      = "hanat-${var.version}-al2023-arm64-${local.stamp}"
    instance_type = local.images["al2023-arm64"].instance
    ssh_username  = local.images["al2023-arm64"].user
    source_ami_filter {
      filters = {
        name                = local.images["al2023-arm64"].ami_name
        virtualization-type = "hvm"
        root-device-type    = "ebs"
      }
      owners      = [local.images["al2023-arm64"].owner]
      most_recent = true
    }
  }
  source "amazon-ebs.hanat" {
    name          = "debian12-amd64"
    ami_name      = "hanat-${var.version}-debian12-amd64-${local.stamp}"
    instance_type = local.images["debian12-amd64"].instance
    ssh_username  = local.images["debian12-amd64"].user
    source_ami_filter {
      filters = {
        name                = local.images["debian12-amd64"].ami_name
        virtualization-type = "hvm"
        root-device-type    = "ebs"
      }
      owners      = [local.images["debian12-amd64"].owner]
      most_recent = true
    }
  }
  source "amazon-ebs.hanat" {
    name          = "debian12-arm64"
    ami_name      = "hanat-${var.version}-debian12-arm64-${local.stamp}"
    instance_type = local.images["debian12-arm64"].instance
    ssh_username  = local.images["debian12-arm64"].user
    source_ami_filter {
      filters = {
        name                = local.images["debian12-arm64"].ami_name
        virtualization-type = "hvm"
        root-device-type    = "ebs"
      }
      owners      = [local.images["debian12-arm64"].owner]
      most_recent = true
    }
  }

  provisioner "file" {
    source      = "${var.package_dir}/${local.images[source.name].package}"
    destination = "/tmp/${local.images[source.name].package}"
  }
  provisioner "file" {
    source      = "${path.root}/provision.sh"
    destination = "/tmp/provision.sh"
  }
  provisioner "shell" {
    inline = [
      "sudo sh /tmp/provision.sh /tmp/${local.images[source.name].package}",
      "rm -f /tmp/provision.sh /tmp/${local.images[source.name].package}",
    ]
  }

  post-processor "manifest" {
    output     = "manifest.json"
    strip_path = true
  }
}
