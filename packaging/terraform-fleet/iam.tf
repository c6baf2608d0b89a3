# The members' role. A fleet member needs less than a pair node: it never
# writes a route or moves an address (the GWLB spreads the flows), so the
# least-privilege policy is the read-only part of packaging/iam-policy.json,
# the source/dest check on its own tagged ENI, and CloudWatch in one
# namespace. The GWLB's addresses are read with DescribeNetworkInterfaces
# at boot (user-data-fleet.sh). No Auto Scaling permission: the drain ends
# the lifecycle hook by its heartbeat timeout (default result CONTINUE).

data "aws_iam_policy_document" "assume_ec2" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["ec2.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "member" {
  name               = "${var.name}-fleet"
  assume_role_policy = data.aws_iam_policy_document.assume_ec2.json
}

data "aws_iam_policy_document" "member" {
  statement {
    sid = "HanatReadTheVPC"
    actions = [
      "ec2:DescribeInternetGateways",
      "ec2:DescribeNetworkInterfaces",
      "ec2:DescribeRouteTables",
      "ec2:DescribeSubnets",
    ]
    resources = ["*"]
  }
  statement {
    sid       = "HanatSourceDestCheckOnTaggedENIs"
    actions   = ["ec2:ModifyNetworkInterfaceAttribute"]
    resources = ["arn:aws:ec2:*:*:network-interface/*"]
    condition {
      test     = "Null"
      variable = "ec2:ResourceTag/hanat"
      values   = ["false"]
    }
  }
  dynamic "statement" {
    for_each = var.cloudwatch_namespace == "" ? [] : [var.cloudwatch_namespace]
    content {
      sid       = "HanatPublishNATGatewayMetrics"
      actions   = ["cloudwatch:PutMetricData"]
      resources = ["*"]
      condition {
        test     = "StringEquals"
        variable = "cloudwatch:namespace"
        values   = [statement.value]
      }
    }
  }
}

resource "aws_iam_role_policy" "member" {
  name   = "hanat-fleet"
  role   = aws_iam_role.member.id
  policy = data.aws_iam_policy_document.member.json
}

resource "aws_iam_instance_profile" "member" {
  name = "${var.name}-fleet"
  role = aws_iam_role.member.name
}
