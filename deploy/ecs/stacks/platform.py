"""Platform stack: ECS Fargate cluster, the ALB, one service per process type with its own scaling, logs, alarms.

Invariants:
- One image, every process: each service runs ``deploy/docker-entrypoint.sh <command>``.
- Singletons (beat, each engine partition group, the market-data feed) deploy with minHealthy 0 / max 100 %, so
  two copies never run at once: the engine is the single writer of its symbol partitions.
- web and ws sit behind the ALB, sticky-free (any task serves any request; sessions live in the database).
  The target groups route on ``/readyz`` (dependencies up, not draining); the container health check is
  ``/healthz`` (liveness only), so a dependency outage takes tasks out of rotation without killing them.
  A Celery worker's health check is its liveness file (``apps/core/celery_liveness.py``): a worker that stays
  up but consumes nothing is replaced.
- Secrets reach containers only as ECS secrets (Secrets Manager / SSM), resolved at task start.
- No service holds owner credentials: every service connects as the runtime role ``DB_APP_ROLE`` (DML only,
  INSERT/SELECT on the audit trail, owns nothing). The RDS master secret (the owner) goes only to the one-off
  ``migrate`` task definition (no service), which migrates as the owner and then creates/refreshes the runtime
  role with its password (``manage.py db_roles``).
- Every stop timeout exceeds the process's own drain time (gunicorn graceful_timeout 25 s, consumers
  finish the batch and commit, Celery warm shutdown), and the ALB deregistration delay (30 s) comes first.
"""

from __future__ import annotations

from typing import Any

import aws_cdk as cdk
from aws_cdk import aws_applicationautoscaling as appscaling
from aws_cdk import aws_certificatemanager as acm
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecr as ecr
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_elasticloadbalancingv2 as elbv2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_secretsmanager as sm
from aws_cdk import aws_sns as sns
from aws_cdk import aws_ssm as ssm
from constructs import Construct

from stacks.config import PlatformConfig, ProcessSpec
from stacks.data import DB_APP_ROLE, DB_NAME, DataStack
from stacks.network import NetworkStack

METRIC_NAMESPACE = "Brokerage"
# The WebSocket routes (brokerage/asgi.py): trade_updates on /stream, the market-data stream on /v2/{feed}
# (apps/marketdata/routing.py). Everything else is REST and goes to gunicorn.
WS_PATHS = ["/stream*", "/v2/iex", "/v2/sip", "/v2/test"]
# apps.core.emf adds Environment=<METRICS_ENVIRONMENT> to every custom metric; alarms and scaling read that series.
METRICS_ENVIRONMENT = "production"
METRIC_DIMENSIONS = {"Environment": METRICS_ENVIRONMENT}


class PlatformStack(cdk.Stack):  # type: ignore[misc]  # aws_cdk is Any outside the deploy venv
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: PlatformConfig,
        network: NetworkStack,
        data: DataStack,
        **kwargs: Any,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        # Declared first, so grants on the data stack's KMS key land in this stack's IAM policies instead of
        # the key policy (which would make the data stack depend on this one: a cycle).
        self.add_stack_dependency(network)
        self.add_stack_dependency(data)
        self.config = config
        self.data = data
        vpc = network.vpc
        self.app_sg = network.app_sg
        self.alb_sg = network.alb_sg

        self.log_key = kms.Key(
            self, "LogKey", enable_key_rotation=True, description="brokerage logs and alarms"
        )
        self.log_key.add_to_resource_policy(
            iam.PolicyStatement(
                actions=[
                    "kms:Encrypt*",
                    "kms:Decrypt*",
                    "kms:ReEncrypt*",
                    "kms:GenerateDataKey*",
                    "kms:Describe*",
                ],
                principals=[iam.ServicePrincipal(f"logs.{self.region}.amazonaws.com")],
                resources=["*"],
            )
        )
        self.alarm_topic = sns.Topic(self, "Alarms", display_name="brokerage alarms", master_key=self.log_key)
        self.log_key.grant_encrypt_decrypt(iam.ServicePrincipal("cloudwatch.amazonaws.com"))

        self.cluster = ecs.Cluster(
            self,
            "Cluster",
            vpc=vpc,
            container_insights_v2=ecs.ContainerInsights.ENHANCED,
        )
        self.repository = ecr.Repository.from_repository_name(self, "Repo", "brokerage")
        self.image = ecs.ContainerImage.from_ecr_repository(self.repository, config.image_tag)
        # Not a secret, but only known after MSK exists: `aws kafka get-bootstrap-brokers` (runbook).
        self.kafka_bootstrap = ssm.StringParameter(
            self,
            "KafkaBootstrap",
            parameter_name="/brokerage/kafka/bootstrap-servers",
            string_value="set-after-msk-is-created",
            description="MSK TLS bootstrap brokers (host:9094,...)",
        )

        self.secrets = self._imported_secrets()
        self.alb, self.listener = self._load_balancer(vpc, config)
        self.services: dict[str, ecs.FargateService] = {}
        for spec in config.processes():
            self.services[spec.name] = self._service(spec)
        self.migrate_task = self._migrate_task()
        cdk.CfnOutput(
            self,
            "MigrateTaskDefinitionArn",
            value=self.migrate_task.task_definition_arn,
            description="one-off task: migrate as the owner, db_roles, kafka_topics (runbook, Migrations)",
        )
        cdk.CfnOutput(self, "ClusterName", value=self.cluster.cluster_name)

        if not config.first_deploy:  # scaling targets would raise the zero desired counts of a first deploy
            self._scaling(config)
        self._alarms(config)

    # --- load balancer ---------------------------------------------------------------------------------------
    def _load_balancer(
        self, vpc: ec2.IVpc, config: PlatformConfig
    ) -> tuple[elbv2.ApplicationLoadBalancer, elbv2.ApplicationListener]:
        access_logs = s3.Bucket(
            self,
            "AlbAccessLogs",
            encryption=s3.BucketEncryption.S3_MANAGED,  # ALB log delivery supports SSE-S3 only
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True,
            versioned=True,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            lifecycle_rules=[s3.LifecycleRule(expiration=cdk.Duration.days(400))],
            removal_policy=cdk.RemovalPolicy.RETAIN,
        )
        alb = elbv2.ApplicationLoadBalancer(
            self,
            "Alb",
            vpc=vpc,
            internet_facing=True,
            security_group=self.alb_sg,
            vpc_subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PUBLIC),
            drop_invalid_header_fields=True,
            deletion_protection=True,
            idle_timeout=cdk.Duration.seconds(60),
        )
        alb.log_access_logs(access_logs, prefix="alb")
        # HTTPS only: no port 80 listener at all (API clients are configured with https:// base URLs).
        listener = alb.add_listener(
            "Https",
            port=443,
            protocol=elbv2.ApplicationProtocol.HTTPS,
            certificates=[elbv2.ListenerCertificate.from_arn(config.certificate_arn)],
            ssl_policy=elbv2.SslPolicy.RECOMMENDED_TLS,
            open=False,
            default_action=elbv2.ListenerAction.fixed_response(404, message_body="not found"),
        )
        _ = acm  # certificates are issued outside this app (ACM, DNS-validated); only the ARN is used
        return alb, listener

    # --- services --------------------------------------------------------------------------------------------
    def _environment(self) -> dict[str, str]:
        db = self.data.db
        return {
            "DJANGO_SETTINGS_MODULE": "brokerage.settings.production",
            "DJANGO_ALLOWED_HOSTS": self.node.try_get_context("allowed_hosts") or "api.example.com",
            "DATABASE_HOST": db.db_instance_endpoint_address,
            "DATABASE_PORT": db.db_instance_endpoint_port,
            "DATABASE_NAME": DB_NAME,
            "DATABASE_USER": DB_APP_ROLE,
            "DATABASE_REPLICA_HOST": self.data.replica.db_instance_endpoint_address,
            "REDIS_HOST": self.data.redis.attr_primary_end_point_address,
            "REDIS_PORT": self.data.redis.attr_primary_end_point_port,
            "KAFKA_SECURITY_PROTOCOL": "SSL",
            "FORWARDED_ALLOW_IPS": "*",  # only the ALB can reach the tasks (security groups)
            "LOG_LEVEL": "INFO",
            "METRICS_ENVIRONMENT": METRICS_ENVIRONMENT,
        }

    def _imported_secrets(self) -> dict[str, sm.ISecret]:
        # Imported by ARN (not the data stack's objects): a grant on an owned secret would write this stack's
        # roles into the data stack's KMS key policy, a cross-stack cycle. The key policy trusts the account,
        # so the execution role's own kms:Decrypt statement (below) is enough.
        d = self.data
        owned = {
            "django": d.django_secret_key,
            "field-keys": d.field_encryption_keys,
            "db": d.db_secret,
            "db-app": d.db_app_password,
            "redis": d.redis_auth,
        }
        return {
            name: sm.Secret.from_secret_complete_arn(self, f"secret-{name}", secret.secret_arn)
            for name, secret in owned.items()
        }

    def _secrets(self) -> dict[str, ecs.Secret]:
        """Every task's secrets: the runtime role's password, never the owner's (see _migrate_secrets)."""
        s = self.secrets
        return {
            "DJANGO_SECRET_KEY": ecs.Secret.from_secrets_manager(s["django"]),
            "FIELD_ENCRYPTION_KEYS": ecs.Secret.from_secrets_manager(s["field-keys"]),
            "DATABASE_PASSWORD": ecs.Secret.from_secrets_manager(s["db-app"]),
            "REDIS_AUTH_TOKEN": ecs.Secret.from_secrets_manager(s["redis"]),
            "KAFKA_BOOTSTRAP_SERVERS": ecs.Secret.from_ssm_parameter(self.kafka_bootstrap),
        }

    def _migrate_secrets(self) -> dict[str, ecs.Secret]:
        """The migrate task's extra secrets: the owner (RDS master) login, and the runtime role's password to set.

        The entrypoint composes MIGRATION_DATABASE_URL from DATABASE_OWNER_*; DATABASE_APP_PASSWORD is what
        ``db_roles`` sets on ``DB_APP_ROLE`` (the same secret the services read as DATABASE_PASSWORD).
        """
        s = self.secrets
        return {
            "DATABASE_OWNER_USER": ecs.Secret.from_secrets_manager(s["db"], "username"),
            "DATABASE_OWNER_PASSWORD": ecs.Secret.from_secrets_manager(s["db"], "password"),
            "DATABASE_APP_PASSWORD": ecs.Secret.from_secrets_manager(s["db-app"]),
        }

    def _migrate_task(self) -> ecs.FargateTaskDefinition:
        # A task definition only (no service): run once per release with `aws ecs run-task` (runbook).
        # stopTimeout at Fargate's maximum, so a stop request never cuts a migration short on SIGTERM.
        spec = ProcessSpec("migrate", ["migrate"], stop_timeout_s=120)
        image = self.image
        if self.config.migrate_image_tag:
            image = ecs.ContainerImage.from_ecr_repository(self.repository, self.config.migrate_image_tag)
        task, _ = self._task_definition(
            spec, {**self._secrets(), **self._migrate_secrets()}, family="brokerage-migrate", image=image
        )
        return task

    def _task_definition(
        self,
        spec: ProcessSpec,
        secrets: dict[str, ecs.Secret],
        *,
        family: str | None = None,
        image: ecs.ContainerImage | None = None,
    ) -> tuple[ecs.FargateTaskDefinition, ecs.ContainerDefinition]:
        task = ecs.FargateTaskDefinition(
            self,
            f"{spec.name}-task",
            family=family,
            cpu=spec.cpu,
            memory_limit_mib=spec.memory_mib,
            runtime_platform=ecs.RuntimePlatform(
                cpu_architecture=ecs.CpuArchitecture.X86_64,
                operating_system_family=ecs.OperatingSystemFamily.LINUX,
            ),
        )
        task.obtain_execution_role().add_to_principal_policy(
            iam.PolicyStatement(
                actions=["kms:Decrypt"],
                resources=[self.data.key.key_arn],
                conditions={
                    "StringEquals": {"kms:ViaService": f"secretsmanager.{self.region}.amazonaws.com"}
                },
            )
        )
        # Read-only root filesystem; /tmp is a task-local scratch volume (beat schedule, temp files).
        task.add_volume(name="tmp")
        log_group = logs.LogGroup(
            self,
            f"{spec.name}-logs",
            log_group_name=f"/brokerage/{spec.name}",
            retention=logs.RetentionDays.ONE_YEAR,
            encryption_key=self.log_key,
            removal_policy=cdk.RemovalPolicy.RETAIN,
        )
        health_check = None
        if spec.port is not None or spec.liveness_file:
            health_check = ecs.HealthCheck(
                command=["CMD", "python", "/app/deploy/healthcheck.py"],
                interval=cdk.Duration.seconds(15),
                timeout=cdk.Duration.seconds(5),
                retries=3,
                start_period=cdk.Duration.seconds(30),
            )
        container = task.add_container(
            "app",
            image=image or self.image,
            command=spec.command,
            environment=self._environment(),
            secrets=secrets,
            logging=ecs.LogDrivers.aws_logs(stream_prefix=spec.name, log_group=log_group),
            readonly_root_filesystem=True,
            user="10001:10001",
            stop_timeout=cdk.Duration.seconds(spec.stop_timeout_s),
            health_check=health_check,
            port_mappings=[ecs.PortMapping(container_port=spec.port)] if spec.port else [],
            essential=True,
        )
        container.add_mount_points(
            ecs.MountPoint(container_path="/tmp", source_volume="tmp", read_only=False)  # noqa: S108 (task-local volume)
        )
        return task, container

    def _service(self, spec: ProcessSpec) -> ecs.FargateService:
        task, _ = self._task_definition(spec, self._secrets())
        service = ecs.FargateService(
            self,
            f"{spec.name}-service",
            cluster=self.cluster,
            task_definition=task,
            service_name=f"brokerage-{spec.name}",
            # First deploy: no task may start before the migrate task has created the runtime role.
            desired_count=0 if self.config.first_deploy else spec.min_tasks,
            security_groups=[self.app_sg],
            vpc_subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS),
            assign_public_ip=False,
            circuit_breaker=ecs.DeploymentCircuitBreaker(enable=True, rollback=True),
            min_healthy_percent=0 if spec.singleton else 100,
            max_healthy_percent=100 if spec.singleton else 200,
            propagate_tags=ecs.PropagatedTagSource.SERVICE,
            enable_ecs_managed_tags=True,
        )
        if spec.port is not None:
            self._attach_to_alb(spec, service)
        return service

    def _attach_to_alb(self, spec: ProcessSpec, service: ecs.FargateService) -> None:
        assert spec.port is not None
        is_ws = spec.name == "ws"
        target_group = elbv2.ApplicationTargetGroup(
            self,
            f"{spec.name}-tg",
            vpc=self.cluster.vpc,
            port=spec.port,
            protocol=elbv2.ApplicationProtocol.HTTP,
            target_type=elbv2.TargetType.IP,
            targets=[service],
            deregistration_delay=cdk.Duration.seconds(30),
            health_check=elbv2.HealthCheck(
                path="/readyz",
                healthy_http_codes="200",
                interval=cdk.Duration.seconds(10),
                timeout=cdk.Duration.seconds(5),
                healthy_threshold_count=2,
                unhealthy_threshold_count=2,
            ),
        )
        # Sticky-free: any task may serve any request.
        target_group.set_attribute("stickiness.enabled", "false")
        self.listener.add_target_groups(
            f"{spec.name}-route",
            target_groups=[target_group],
            priority=10 if is_ws else 20,
            conditions=[elbv2.ListenerCondition.path_patterns(WS_PATHS if is_ws else ["/*"])],
        )
        if not is_ws:
            self.web_target_group = target_group

    # --- scaling ---------------------------------------------------------------------------------------------
    def _scaling(self, config: PlatformConfig) -> None:
        specs = {s.name: s for s in config.processes()}
        for name, service in self.services.items():
            spec = specs[name]
            if spec.singleton or spec.max_tasks <= spec.min_tasks:
                continue
            scaling = service.auto_scale_task_count(min_capacity=spec.min_tasks, max_capacity=spec.max_tasks)
            if name == "worker":
                # Queue depth (all Celery queues), published by the beat-scheduled queue-depth task.
                scaling.scale_on_metric(
                    "QueueDepth",
                    metric=self.queue_depth_metric(),
                    scaling_steps=[
                        appscaling.ScalingInterval(upper=10, change=-1),
                        appscaling.ScalingInterval(lower=100, change=+1),
                        appscaling.ScalingInterval(lower=1000, change=+4),
                    ],
                    adjustment_type=appscaling.AdjustmentType.CHANGE_IN_CAPACITY,
                    cooldown=cdk.Duration.seconds(120),
                )
            elif spec.consumer is not None:
                consumer = spec.consumer
                scaling.scale_on_metric(
                    "KafkaLag",
                    metric=self.consumer_lag_metric(consumer, config.consumers[consumer]),
                    scaling_steps=[
                        appscaling.ScalingInterval(upper=100, change=-1),
                        appscaling.ScalingInterval(lower=1000, change=+1),
                        appscaling.ScalingInterval(lower=10000, change=+2),
                    ],
                    adjustment_type=appscaling.AdjustmentType.CHANGE_IN_CAPACITY,
                    cooldown=cdk.Duration.seconds(120),
                )
            else:
                scaling.scale_on_cpu_utilization(
                    "Cpu",
                    target_utilization_percent=60,
                    scale_in_cooldown=cdk.Duration.seconds(120),
                    scale_out_cooldown=cdk.Duration.seconds(60),
                )
                if name == "web":
                    scaling.scale_on_request_count(
                        "Requests", requests_per_target=600, target_group=self.web_target_group
                    )

    def queue_depth_metric(self) -> cloudwatch.Metric:
        return cloudwatch.Metric(
            namespace=METRIC_NAMESPACE,
            metric_name="CeleryQueueDepth",
            dimensions_map=METRIC_DIMENSIONS,
            statistic="Maximum",
            period=cdk.Duration.minutes(1),
        )

    def consumer_lag_metric(self, consumer: str, topic: str) -> cloudwatch.Metric:
        # MSK's own per-consumer-group metric; the consumer group id is the registry name.
        return cloudwatch.Metric(
            namespace="AWS/Kafka",
            metric_name="SumOffsetLag",
            dimensions_map={"Cluster Name": "brokerage", "Consumer Group": consumer, "Topic": topic},
            statistic="Maximum",
            period=cdk.Duration.minutes(1),
        )

    # --- alarms ----------------------------------------------------------------------------------------------
    def _alarm(self, construct_id: str, **kwargs: Any) -> None:
        alarm = cloudwatch.Alarm(self, construct_id, **kwargs)
        alarm.add_alarm_action(cw_actions.SnsAction(self.alarm_topic))

    def _alarms(self, config: PlatformConfig) -> None:
        lb = self.alb.metrics
        self._alarm(
            "Target5xx",
            metric=lb.http_code_target(elbv2.HttpCodeTarget.TARGET_5XX_COUNT, period=cdk.Duration.minutes(1)),
            threshold=10,
            evaluation_periods=3,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
            alarm_description="web/ws answer 5xx",
        )
        self._alarm(
            "Elb5xx",
            metric=lb.http_code_elb(elbv2.HttpCodeElb.ELB_5XX_COUNT, period=cdk.Duration.minutes(1)),
            threshold=10,
            evaluation_periods=3,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
            alarm_description="the ALB answers 5xx (no healthy targets, timeouts)",
        )
        self._alarm(
            "LatencyP99",
            metric=lb.target_response_time(statistic="p99", period=cdk.Duration.minutes(1)),
            threshold=1.0,
            evaluation_periods=5,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
            alarm_description="p99 target response time above 1 s for 5 minutes",
        )
        for consumer, topic in sorted(config.consumers.items()):
            self._alarm(
                f"ConsumerLag-{consumer}",
                metric=self.consumer_lag_metric(consumer, topic),
                threshold=50000,
                evaluation_periods=5,
                treat_missing_data=cloudwatch.TreatMissingData.BREACHING,
                alarm_description=f"Kafka consumer {consumer} lags on {topic}",
            )
        self._alarm(
            "ReconciliationBreaks",
            metric=cloudwatch.Metric(
                namespace=METRIC_NAMESPACE,
                metric_name="ReconciliationBreaks",
                dimensions_map=METRIC_DIMENSIONS,
                statistic="Maximum",
                period=cdk.Duration.minutes(5),
            ),
            threshold=0,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
            evaluation_periods=1,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
            alarm_description="reconciliation found a break (ledger vs positions vs cash): page",
        )
        self._alarm(
            "CeleryBacklog",
            metric=self.queue_depth_metric(),
            threshold=5000,
            evaluation_periods=10,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
            alarm_description="Celery backlog not draining at max workers",
        )
        self._alarm(
            "ReplicaLag",
            metric=self.data.replica.metric(
                "ReplicaLag", statistic="Maximum", period=cdk.Duration.minutes(1)
            ),
            threshold=30,
            evaluation_periods=5,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
            alarm_description="read replica more than 30 s behind (the router already falls back)",
        )
