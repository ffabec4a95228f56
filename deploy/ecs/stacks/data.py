"""Data stack: RDS PostgreSQL 15 (Multi-AZ) with a read replica, ElastiCache Redis 7, MSK Kafka, and secrets.

Invariants: every data store is encrypted at rest (one customer-managed KMS key) and in transit, reachable only
from the app tasks' security group, in isolated subnets. Every secret the processes need lives in Secrets
Manager and reaches them as ECS secrets, never as plain environment variables or image content. The RDS
master secret (the owner role) is for the one-off migrate task only; services use the runtime role's secret.
"""

from __future__ import annotations

from typing import Any

import aws_cdk as cdk
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_elasticache as elasticache
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from aws_cdk import aws_msk as msk
from aws_cdk import aws_rds as rds
from aws_cdk import aws_secretsmanager as sm
from constructs import Construct

from stacks.network import logs_key

KAFKA_VERSION = "3.9.x"  # newest MSK provisioned version at the time of writing; the client speaks both
KAFKA_BROKERS = 3
DB_NAME = "brokerage"
# The runtime role every service connects as: `<database>_app`, the default of apps.accounts.dbroles
# (runtime_role_name). Owns nothing; INSERT/SELECT only on the audit trail. The migrate task creates it.
DB_APP_ROLE = f"{DB_NAME}_app"


class DataStack(cdk.Stack):  # type: ignore[misc]  # aws_cdk is Any outside the deploy venv
    def __init__(
        self, scope: Construct, construct_id: str, *, vpc: ec2.IVpc, app_sg: ec2.ISecurityGroup, **kwargs: Any
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.key = kms.Key(self, "DataKey", enable_key_rotation=True, description="brokerage data at rest")
        isolated = ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_ISOLATED)

        # --- Secrets -------------------------------------------------------------------------------------
        self.django_secret_key = sm.Secret(
            self,
            "DjangoSecretKey",
            description="DJANGO_SECRET_KEY",
            encryption_key=self.key,
            generate_secret_string=sm.SecretStringGenerator(password_length=64, exclude_punctuation=True),
        )
        # FIELD_ENCRYPTION_KEYS is a comma-separated list of base64 32-byte keys (newest first); generated
        # outside AWS and put in place before the first deploy (runbook, "First deploy").
        self.field_encryption_keys = sm.Secret(
            self, "FieldEncryptionKeys", description="FIELD_ENCRYPTION_KEYS", encryption_key=self.key
        )
        # The runtime database role's password (DB_APP_ROLE, made by `manage.py db_roles` in the migrate task).
        # Only the migrate task holds the RDS master (owner) secret; every service logs in with this one.
        self.db_app_password = sm.Secret(
            self,
            "DbAppPassword",
            description=f"PostgreSQL password of the runtime role {DB_APP_ROLE}",
            encryption_key=self.key,
            generate_secret_string=sm.SecretStringGenerator(password_length=64, exclude_punctuation=True),
        )
        self.redis_auth = sm.Secret(
            self,
            "RedisAuthToken",
            description="ElastiCache AUTH token",
            encryption_key=self.key,
            generate_secret_string=sm.SecretStringGenerator(password_length=64, exclude_punctuation=True),
        )

        # --- PostgreSQL: primary (Multi-AZ) + read replica ------------------------------------------------
        self.db_sg = ec2.SecurityGroup(
            self, "DbSg", vpc=vpc, description="RDS PostgreSQL", allow_all_outbound=False
        )
        self.db_sg.add_ingress_rule(app_sg, ec2.Port.tcp(5432), "app tasks")
        engine = rds.DatabaseInstanceEngine.postgres(version=rds.PostgresEngineVersion.VER_15_17)
        parameters = rds.ParameterGroup(
            self,
            "DbParams",
            engine=engine,
            parameters={
                "rds.force_ssl": "1",
                "log_min_duration_statement": "500",
                "hot_standby_feedback": "1",
            },
        )
        instance_type = ec2.InstanceType.of(ec2.InstanceClass.R6G, ec2.InstanceSize.LARGE)
        common: dict[str, Any] = {
            "instance_type": instance_type,
            "vpc": vpc,
            "vpc_subnets": isolated,
            "security_groups": [self.db_sg],
            "parameter_group": parameters,
            "deletion_protection": True,
            "iam_authentication": True,
            "enable_performance_insights": True,
            "performance_insight_encryption_key": self.key,
            "monitoring_interval": cdk.Duration.seconds(60),
            "cloudwatch_logs_exports": ["postgresql", "upgrade"],
            "auto_minor_version_upgrade": True,
            "publicly_accessible": False,
            "removal_policy": cdk.RemovalPolicy.SNAPSHOT,
        }
        # RDS log groups made here (KMS, retention) instead of by RDS's log-retention Lambda.
        log_key = logs_key(self, "LogKey")
        rds_logs = [
            logs.LogGroup(
                self,
                f"RdsLogs-{ident}-{kind}",
                log_group_name=f"/aws/rds/instance/{ident}/{kind}",
                retention=logs.RetentionDays.ONE_YEAR,
                encryption_key=log_key,
            )
            for ident in ("brokerage-primary", "brokerage-replica")
            for kind in ("postgresql", "upgrade")
        ]
        self.db = rds.DatabaseInstance(
            self,
            "Postgres",
            instance_identifier="brokerage-primary",
            engine=engine,
            database_name=DB_NAME,
            credentials=rds.Credentials.from_generated_secret(
                "brokerage", encryption_key=self.key, exclude_characters=" %+~`#$&*()|[]{}:;<>?!'/@\"\\"
            ),
            multi_az=True,
            storage_encrypted=True,  # the replica inherits encryption (and the key) from its source
            storage_encryption_key=self.key,
            allocated_storage=100,
            max_allocated_storage=1000,
            storage_type=rds.StorageType.GP3,
            backup_retention=cdk.Duration.days(14),
            copy_tags_to_snapshot=True,
            **common,
        )
        self.replica = rds.DatabaseInstanceReadReplica(
            self,
            "PostgresReplica",
            instance_identifier="brokerage-replica",
            source_database_instance=self.db,
            **common,
        )
        for group in rds_logs:
            self.db.node.add_dependency(group)
            self.replica.node.add_dependency(group)
        assert self.db.secret is not None
        self.db_secret: sm.ISecret = self.db.secret

        # --- Redis: ElastiCache replication group (primary + replica, automatic failover) ----------------
        self.redis_sg = ec2.SecurityGroup(
            self, "RedisSg", vpc=vpc, description="ElastiCache", allow_all_outbound=False
        )
        self.redis_sg.add_ingress_rule(app_sg, ec2.Port.tcp(6379), "app tasks")
        redis_subnets = elasticache.CfnSubnetGroup(
            self,
            "RedisSubnets",
            description="brokerage redis",
            subnet_ids=vpc.select_subnets(subnet_type=ec2.SubnetType.PRIVATE_ISOLATED).subnet_ids,
        )
        self.redis = elasticache.CfnReplicationGroup(
            self,
            "Redis",
            replication_group_description="brokerage cache, channels and celery transport",
            engine="redis",
            engine_version="7.1",
            cache_node_type="cache.r7g.large",
            num_cache_clusters=2,
            automatic_failover_enabled=True,
            multi_az_enabled=True,
            at_rest_encryption_enabled=True,
            kms_key_id=self.key.key_id,
            transit_encryption_enabled=True,
            auth_token=self.redis_auth.secret_value.unsafe_unwrap(),
            cache_subnet_group_name=redis_subnets.ref,
            security_group_ids=[self.redis_sg.security_group_id],
            snapshot_retention_limit=7,
            auto_minor_version_upgrade=True,
        )

        # --- Kafka: MSK, 3 brokers over the AZs, TLS only, RF 3 / min ISR 2 --------------------------------
        self.kafka_sg = ec2.SecurityGroup(
            self, "KafkaSg", vpc=vpc, description="MSK", allow_all_outbound=False
        )
        self.kafka_sg.add_ingress_rule(app_sg, ec2.Port.tcp(9094), "app tasks (TLS)")
        kafka_config = msk.CfnConfiguration(
            self,
            "KafkaConfig",
            name="brokerage-kafka",
            kafka_versions_list=[KAFKA_VERSION],
            server_properties="\n".join(
                [
                    "auto.create.topics.enable=false",
                    "default.replication.factor=3",
                    "min.insync.replicas=2",
                    "unclean.leader.election.enable=false",
                ]
            ),
        )
        broker_logs = logs.LogGroup(
            self, "KafkaBrokerLogs", retention=logs.RetentionDays.ONE_YEAR, encryption_key=log_key
        )
        private_subnets = vpc.select_subnets(subnet_type=ec2.SubnetType.PRIVATE_ISOLATED).subnet_ids
        # MSK wants a broker count that is a multiple of the client subnets (one per AZ): 3 AZs -> 3 brokers.
        self.kafka = msk.CfnCluster(
            self,
            "Kafka",
            cluster_name="brokerage",
            kafka_version=KAFKA_VERSION,
            number_of_broker_nodes=KAFKA_BROKERS,
            broker_node_group_info=msk.CfnCluster.BrokerNodeGroupInfoProperty(
                instance_type="kafka.m7g.large",
                client_subnets=private_subnets,
                security_groups=[self.kafka_sg.security_group_id],
                storage_info=msk.CfnCluster.StorageInfoProperty(
                    ebs_storage_info=msk.CfnCluster.EBSStorageInfoProperty(volume_size=500)
                ),
            ),
            encryption_info=msk.CfnCluster.EncryptionInfoProperty(
                encryption_at_rest=msk.CfnCluster.EncryptionAtRestProperty(
                    data_volume_kms_key_id=self.key.key_arn
                ),
                encryption_in_transit=msk.CfnCluster.EncryptionInTransitProperty(
                    client_broker="TLS", in_cluster=True
                ),
            ),
            configuration_info=msk.CfnCluster.ConfigurationInfoProperty(
                arn=kafka_config.attr_arn, revision=1
            ),
            enhanced_monitoring="PER_TOPIC_PER_PARTITION",
            logging_info=msk.CfnCluster.LoggingInfoProperty(
                broker_logs=msk.CfnCluster.BrokerLogsProperty(
                    cloud_watch_logs=msk.CfnCluster.CloudWatchLogsProperty(
                        enabled=True, log_group=broker_logs.log_group_name
                    )
                )
            ),
        )
