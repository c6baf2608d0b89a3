# The NAT instances' role: packaging/iam-policy.json (Describe* on *,
# mutations only on resources tagged "hanat"), reading the HA key, and
# optionally publishing metrics to one CloudWatch namespace.

data "aws_iam_policy_document" "assume_ec2" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["ec2.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "nat" {
  name               = "${var.name}-nat"
  assume_role_policy = data.aws_iam_policy_document.assume_ec2.json
}

resource "aws_iam_role_policy" "nat_ec2" {
  name   = "hanat-ec2"
  role   = aws_iam_role.nat.id
  policy = file("${path.module}/../iam-policy.json")
}

data "aws_iam_policy_document" "ha_key" {
  statement {
    sid       = "HanatReadTheHAKey"
    actions   = ["ssm:GetParameter"]
    resources = [aws_ssm_parameter.ha_key.arn]
  }
}

resource "aws_iam_role_policy" "nat_ha_key" {
  name   = "hanat-ha-key"
  role   = aws_iam_role.nat.id
  policy = data.aws_iam_policy_document.ha_key.json
}

data "aws_iam_policy_document" "cloudwatch" {
  statement {
    sid       = "HanatPublishNATGatewayMetrics"
    actions   = ["cloudwatch:PutMetricData"]
    resources = ["*"] # PutMetricData has no resource; the namespace condition scopes it
    condition {
      test     = "StringEquals"
      variable = "cloudwatch:namespace"
      values   = [var.cloudwatch_namespace]
    }
  }
}

resource "aws_iam_role_policy" "nat_cloudwatch" {
  count  = var.cloudwatch_namespace == "" ? 0 : 1
  name   = "hanat-cloudwatch"
  role   = aws_iam_role.nat.id
  policy = data.aws_iam_policy_document.cloudwatch.json
}

resource "aws_iam_instance_profile" "nat" {
  name = "${var.name}-nat"
  role = aws_iam_role.nat.name
}
