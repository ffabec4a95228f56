"""Network stack: a VPC over three AZs with public (ALB), private-with-egress (tasks) and isolated (data) subnets.

Invariant: nothing but the load balancer has a public address; data stores live in isolated subnets.
"""

from __future__ import annotations

from typing import Any

import aws_cdk as cdk
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from constructs import Construct


def logs_key(stack: cdk.Stack, construct_id: str) -> kms.Key:
    """A rotating KMS key that CloudWatch Logs of this region may use (log groups encrypted at rest)."""
    key = kms.Key(stack, construct_id, enable_key_rotation=True, description="brokerage log groups")
    key.add_to_resource_policy(
        iam.PolicyStatement(
            actions=[
                "kms:Encrypt*",
                "kms:Decrypt*",
                "kms:ReEncrypt*",
                "kms:GenerateDataKey*",
                "kms:Describe*",
            ],
            principals=[iam.ServicePrincipal(f"logs.{stack.region}.amazonaws.com")],
            resources=["*"],
        )
    )
    return key


class NetworkStack(cdk.Stack):  # type: ignore[misc]  # aws_cdk is Any outside the deploy venv
    def __init__(self, scope: Construct, construct_id: str, *, azs: list[str], **kwargs: Any) -> None:
        super().__init__(scope, construct_id, **kwargs)
        # AZs are named explicitly (from the region) so synth never needs an account lookup.
        self.vpc = ec2.Vpc(
            self,
            "Vpc",
            ip_addresses=ec2.IpAddresses.cidr("10.40.0.0/16"),
            availability_zones=azs,
            nat_gateways=len(azs),
            subnet_configuration=[
                ec2.SubnetConfiguration(name="public", subnet_type=ec2.SubnetType.PUBLIC, cidr_mask=24),
                ec2.SubnetConfiguration(
                    name="app", subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS, cidr_mask=20
                ),
                ec2.SubnetConfiguration(
                    name="data", subnet_type=ec2.SubnetType.PRIVATE_ISOLATED, cidr_mask=24
                ),
            ],
            restrict_default_security_group=True,
        )
        # Every ECS task carries this group; data stores admit it and nothing else.
        self.app_sg = ec2.SecurityGroup(
            self, "AppTasks", vpc=self.vpc, description="brokerage ECS tasks", allow_all_outbound=True
        )
        # The public load balancer's group, here beside the tasks' group so the rules between them live in one
        # stack (no cross-stack reference cycle).
        self.alb_sg = ec2.SecurityGroup(
            self, "AlbSg", vpc=self.vpc, description="public ALB", allow_all_outbound=False
        )
        self.alb_sg.add_ingress_rule(ec2.Peer.any_ipv4(), ec2.Port.tcp(443), "HTTPS")
        for port in (8000, 8001):
            self.alb_sg.add_egress_rule(self.app_sg, ec2.Port.tcp(port), "to web/ws tasks")
            self.app_sg.add_ingress_rule(self.alb_sg, ec2.Port.tcp(port), "from the ALB")
        flow_logs = logs.LogGroup(
            self,
            "FlowLogs",
            retention=logs.RetentionDays.ONE_YEAR,
            encryption_key=logs_key(self, "FlowLogKey"),
        )
        self.vpc.add_flow_log(
            "FlowLog",
            destination=ec2.FlowLogDestination.to_cloud_watch_logs(flow_logs),
            traffic_type=ec2.FlowLogTrafficType.ALL,
        )
