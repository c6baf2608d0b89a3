# The members' role. A fleet member needs less than a pair node: it never
# writes a route or moves an address (the GWLB spreads the flows), so the
# least-privilege policy is the read-only part of packaging/iam-policy.json,
# the source/dest check on its own tagged ENI, and CloudWatch in one
# namespace. The GWLB's addresses are read with DescribeNetworkInterfaces
# at boot (user-data-fleet.sh). When a scale-in's drain ends, hanatd finds
# its group and the group's terminating hook and completes the hook's
# lifecycle action (CONTINUE) itself: the Describe calls cannot be scoped
# (Auto Scaling's Describe* take no resource), CompleteLifecycleAction is
# allowed on this group only, in a policy of its own so that the read
# permissions above do not wait for the group to exist. Should the call
# fail, the hook's heartbeat timeout still ends it (default result
# CONTINUE).

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

data "aws_iam_policy_document" "member_lifecycle" {
  statement {
    sid = "HanatFindItsScaleInHook"
    actions = [
      "autoscaling:DescribeAutoScalingInstances",
      "autoscaling:DescribeLifecycleHooks",
    ]
    resources = ["*"]
  }
  statement {
    sid       = "HanatCompleteItsScaleIn"
    actions   = ["autoscaling:CompleteLifecycleAction"]
    resources = [aws_autoscaling_group.fleet.arn]
  }
}

resource "aws_iam_role_policy" "member_lifecycle" {
  name   = "hanat-fleet-lifecycle"
  role   = aws_iam_role.member.id
  policy = data.aws_iam_policy_document.member_lifecycle.json
}

resource "aws_iam_instance_profile" "member" {
  name = "${var.name}-fleet"
  role = aws_iam_role.member.name
}
