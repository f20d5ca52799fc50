"""The template's resources created in moto with the template's own properties, as
CloudFormation would create them; what moto has no part in (the functions, the load balancer,
the event source mappings, the schedule) is recorded with the ids and attributes AWS gives it,
for the rehearsal's emulations of Lambda, the ALB and EventBridge.
"""

from __future__ import annotations

import hashlib
import json
import secrets

from cfn import Stack, TemplateError


def suffix(n=12):
    return secrets.token_hex(8).upper()[:n]


def physical_name(stack, logical, limit=64, lower=False):
    name = f"{stack.name}-{logical}"[: limit - 14] + "-" + suffix(13)
    return name.lower() if lower else name


class Deployment:
    """Creates each resource of `stack` in dependency order through `clients` (boto3 clients of
    moto, made by `client(service)`)."""

    def __init__(self, stack: Stack, client):
        self.stack = stack
        self.client = client
        self.functions = {}  # logical -> properties
        self.mappings = []  # event source mappings (properties)
        self.rules = {}  # logical -> properties
        self.permissions = []
        self.invoke_configs = {}  # function logical -> properties
        self.target_groups = {}
        self.listeners = []
        self.load_balancers = {}
        self.alarms = {}
        self.dashboards = {}
        self.queues = {}  # logical -> url
        self.buckets = {}
        self.roles = {}  # logical -> (name, arn)
        self.log_groups = {}

    def run(self):
        for logical in self.stack.creation_order():
            resource = self.stack.template["Resources"][logical]
            kind = resource["Type"]
            create = CREATORS.get(kind)
            if create is None:
                raise TemplateError(f"{logical}: resource type {kind} is not emulated by the rehearsal")
            props = self.stack.properties(logical)
            try:
                physical, attributes = create(self, logical, props)
            except TemplateError:
                raise
            except Exception as e:  # what CloudFormation would report as CREATE_FAILED
                raise TemplateError(f"{logical} ({kind}): CREATE_FAILED: {e}") from e
            self.stack.physical[logical] = physical
            self.stack.attributes[logical] = attributes

    def arn(self, service, resource, region=True, account=True):
        r = self.stack.region if region else ""
        a = self.stack.account if account else ""
        return f"arn:aws:{service}:{r}:{a}:{resource}"

    # -- storage ----------------------------------------------------------------------------
    def bucket(self, logical, p):
        s3 = self.client("s3")
        name = p.get("BucketName") or physical_name(self.stack, logical, 63, lower=True)
        s3.create_bucket(Bucket=name)
        if "BucketEncryption" in p:
            s3.put_bucket_encryption(Bucket=name, ServerSideEncryptionConfiguration={
                "Rules": [
                    {("ApplyServerSideEncryptionByDefault" if k == "ServerSideEncryptionByDefault" else k): v
                     for k, v in rule.items()}
                    for rule in p["BucketEncryption"]["ServerSideEncryptionConfiguration"]
                ]})
        if "PublicAccessBlockConfiguration" in p:
            s3.put_public_access_block(Bucket=name, PublicAccessBlockConfiguration=p["PublicAccessBlockConfiguration"])
        if "OwnershipControls" in p:
            s3.put_bucket_ownership_controls(Bucket=name, OwnershipControls=p["OwnershipControls"])
        if "VersioningConfiguration" in p:
            s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": p["VersioningConfiguration"]["Status"]})
        if "LifecycleConfiguration" in p:
            rules = []
            for rule in p["LifecycleConfiguration"]["Rules"]:
                r = {"ID": rule.get("Id", ""), "Status": rule["Status"],
                     "Filter": {"Prefix": rule.get("Prefix", "")}}
                if "ExpirationInDays" in rule:
                    r["Expiration"] = {"Days": int(rule["ExpirationInDays"])}
                if "AbortIncompleteMultipartUpload" in rule:
                    r["AbortIncompleteMultipartUpload"] = {"DaysAfterInitiation": int(rule["AbortIncompleteMultipartUpload"]["DaysAfterInitiation"])}
                if "NoncurrentVersionExpiration" in rule:
                    r["NoncurrentVersionExpiration"] = {"NoncurrentDays": int(rule["NoncurrentVersionExpiration"]["NoncurrentDays"])}
                rules.append(r)
            s3.put_bucket_lifecycle_configuration(Bucket=name, LifecycleConfiguration={"Rules": rules})
        self.buckets[logical] = name
        return name, {"Arn": f"arn:aws:s3:::{name}", "DomainName": f"{name}.s3.amazonaws.com",
                      "RegionalDomainName": f"{name}.s3.{self.stack.region}.amazonaws.com"}

    def bucket_policy(self, logical, p):
        # Stored as CloudFormation stores it; moto does not evaluate bucket policies.
        self.client("s3").put_bucket_policy(Bucket=p["Bucket"], Policy=json.dumps(p["PolicyDocument"]))
        return logical, {}

    def queue(self, logical, p):
        sqs = self.client("sqs")
        name = p.get("QueueName") or physical_name(self.stack, logical, 80)
        attributes = {}
        for key in ("VisibilityTimeout", "MessageRetentionPeriod", "MaximumMessageSize",
                    "DelaySeconds", "ReceiveMessageWaitTimeSeconds", "SqsManagedSseEnabled"):
            if key in p:
                attributes[key] = str(p[key]).lower() if isinstance(p[key], bool) else str(p[key])
        for key in ("RedrivePolicy", "RedriveAllowPolicy"):
            if key in p:
                attributes[key] = json.dumps(p[key])
        url = sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
        self.queues[logical] = url
        arn = self.arn("sqs", name)
        return url, {"Arn": arn, "QueueName": name, "QueueUrl": url}

    def log_group(self, logical, p):
        name = p.get("LogGroupName") or physical_name(self.stack, logical, 512)
        logs = self.client("logs")
        logs.create_log_group(logGroupName=name)
        if "RetentionInDays" in p:
            logs.put_retention_policy(logGroupName=name, retentionInDays=int(p["RetentionInDays"]))
        self.log_groups[logical] = name
        return name, {"Arn": self.arn("logs", f"log-group:{name}:*")}

    def log_stream(self, logical, p):
        name = p.get("LogStreamName") or physical_name(self.stack, logical)
        self.client("logs").create_log_stream(logGroupName=p["LogGroupName"], logStreamName=name)
        return name, {}

    def role(self, logical, p):
        iam = self.client("iam")
        name = p.get("RoleName") or physical_name(self.stack, logical, 64)
        role = iam.create_role(RoleName=name, Path=p.get("Path", "/"),
                               AssumeRolePolicyDocument=json.dumps(p["AssumeRolePolicyDocument"]))["Role"]
        for policy in p.get("Policies", []):
            iam.put_role_policy(RoleName=name, PolicyName=policy["PolicyName"],
                                PolicyDocument=json.dumps(policy["PolicyDocument"]))
        for arn in p.get("ManagedPolicyArns", []):
            iam.attach_role_policy(RoleName=name, PolicyArn=arn)
        self.roles[logical] = (name, role["Arn"])
        return name, {"Arn": role["Arn"], "RoleId": role["RoleId"]}

    def delivery_stream(self, logical, p):
        name = p.get("DeliveryStreamName") or physical_name(self.stack, logical, 64)
        config = dict(p["ExtendedS3DestinationConfiguration"])
        config["BufferingHints"] = {k: int(v) for k, v in config.get("BufferingHints", {}).items()}
        args = {"DeliveryStreamName": name, "DeliveryStreamType": p.get("DeliveryStreamType", "DirectPut"),
                "ExtendedS3DestinationConfiguration": config}
        if "DeliveryStreamEncryptionConfigurationInput" in p:
            args["DeliveryStreamEncryptionConfigurationInput"] = p["DeliveryStreamEncryptionConfigurationInput"]
        self.client("firehose").create_delivery_stream(**args)
        return name, {"Arn": self.arn("firehose", f"deliverystream/{name}")}

    # -- catalog and queries ----------------------------------------------------------------
    def glue_database(self, logical, p):
        database = p["DatabaseInput"]
        self.client("glue").create_database(CatalogId=p["CatalogId"], DatabaseInput=database)
        return database["Name"], {}

    def glue_table(self, logical, p):
        table = json.loads(json.dumps(p["TableInput"]))
        self.client("glue").create_table(CatalogId=p["CatalogId"], DatabaseName=p["DatabaseName"], TableInput=table)
        return table["Name"], {}

    def workgroup(self, logical, p):
        config = json.loads(json.dumps(p.get("WorkGroupConfiguration", {})))
        config.get("EngineVersion", {}).pop("EffectiveEngineVersion", None)
        self.client("athena").create_work_group(Name=p["Name"], Description=p.get("Description", ""),
                                                Configuration=config)
        return p["Name"], {}

    def named_query(self, logical, p):
        out = self.client("athena").create_named_query(
            Name=p["Name"], Description=p.get("Description", ""), Database=p["Database"],
            QueryString=p["QueryString"], WorkGroup=p.get("WorkGroup", "primary"))
        return out["NamedQueryId"], {"NamedQueryId": out["NamedQueryId"]}

    # -- alarms and dashboards ---------------------------------------------------------------
    def alarm(self, logical, p):
        name = p.get("AlarmName") or physical_name(self.stack, logical, 255)
        args = {k: v for k, v in p.items() if k not in ("AlarmName",)}
        for key in ("Period", "EvaluationPeriods", "DatapointsToAlarm"):
            if key in args:
                args[key] = int(args[key])
        if "Threshold" in args:
            args["Threshold"] = float(args["Threshold"])
        self.client("cloudwatch").put_metric_alarm(AlarmName=name, **args)
        self.alarms[logical] = p
        return name, {"Arn": self.arn("cloudwatch", f"alarm:{name}")}

    def dashboard(self, logical, p):
        name = p.get("DashboardName") or physical_name(self.stack, logical, 255)
        body = p["DashboardBody"]
        json.loads(body)  # CloudFormation refuses a body that is not JSON
        self.client("cloudwatch").put_dashboard(DashboardName=name, DashboardBody=body)
        self.dashboards[logical] = body
        return name, {}

    def topic(self, logical, p):
        arn = self.client("sns").create_topic(Name=p.get("TopicName") or physical_name(self.stack, logical, 256))["TopicArn"]
        return arn, {"TopicArn": arn, "TopicName": arn.split(":")[-1]}

    def subscription(self, logical, p):
        return logical, {}

    # -- emulated by the rehearsal -----------------------------------------------------------
    def function(self, logical, p):
        name = p.get("FunctionName") or physical_name(self.stack, logical, 64)
        for key in ("Role", "Runtime", "Handler"):
            if key not in p:
                raise TemplateError(f"{logical}: function without {key}")
        self.functions[logical] = dict(p, FunctionName=name)
        return name, {"Arn": self.arn("lambda", f"function:{name}")}

    def event_source_mapping(self, logical, p):
        self.mappings.append(p)
        uuid = hashlib.sha1(logical.encode()).hexdigest()
        return uuid, {"EventSourceMappingArn": self.arn("lambda", f"event-source-mapping:{uuid}")}

    def rule(self, logical, p):
        name = p.get("Name") or physical_name(self.stack, logical, 64)
        self.rules[logical] = dict(p, Name=name)
        return name, {"Arn": self.arn("events", f"rule/{name}")}

    def permission(self, logical, p):
        self.permissions.append(p)
        return logical, {}

    def invoke_config(self, logical, p):
        self.invoke_configs[p["FunctionName"]] = p
        return logical, {}

    def security_group(self, logical, p):
        gid = "sg-" + secrets.token_hex(8)
        return gid, {"GroupId": gid, "VpcId": p.get("VpcId")}

    def load_balancer(self, logical, p):
        name = p.get("Name") or f"{self.stack.name[:14]}-{logical[:10]}-{suffix(6)}"[:32]
        hexid = secrets.token_hex(8)
        arn = self.arn("elasticloadbalancing", f"loadbalancer/app/{name}/{hexid}")
        self.load_balancers[logical] = p
        return arn, {"LoadBalancerFullName": f"app/{name}/{hexid}", "LoadBalancerName": name,
                     "DNSName": f"{name}-{hexid[:10]}.{self.stack.region}.elb.amazonaws.com",
                     "CanonicalHostedZoneID": "Z35SXDOTRQ7X7K", "LoadBalancerArn": arn}

    def target_group(self, logical, p):
        name = p.get("Name") or f"{self.stack.name[:14]}-{logical[:10]}-{suffix(6)}"[:32]
        hexid = secrets.token_hex(8)
        arn = self.arn("elasticloadbalancing", f"targetgroup/{name}/{hexid}")
        self.target_groups[logical] = dict(p, TargetGroupArn=arn)
        return arn, {"TargetGroupFullName": f"targetgroup/{name}/{hexid}", "TargetGroupName": name,
                     "TargetGroupArn": arn, "LoadBalancerArns": []}

    def listener(self, logical, p):
        self.listeners.append(p)
        return p["LoadBalancerArn"].replace(":loadbalancer/", ":listener/") + "/" + secrets.token_hex(8), {}


CREATORS = {
    "AWS::S3::Bucket": Deployment.bucket,
    "AWS::S3::BucketPolicy": Deployment.bucket_policy,
    "AWS::SQS::Queue": Deployment.queue,
    "AWS::Logs::LogGroup": Deployment.log_group,
    "AWS::Logs::LogStream": Deployment.log_stream,
    "AWS::IAM::Role": Deployment.role,
    "AWS::KinesisFirehose::DeliveryStream": Deployment.delivery_stream,
    "AWS::Glue::Database": Deployment.glue_database,
    "AWS::Glue::Table": Deployment.glue_table,
    "AWS::Athena::WorkGroup": Deployment.workgroup,
    "AWS::Athena::NamedQuery": Deployment.named_query,
    "AWS::CloudWatch::Alarm": Deployment.alarm,
    "AWS::CloudWatch::Dashboard": Deployment.dashboard,
    "AWS::SNS::Topic": Deployment.topic,
    "AWS::SNS::Subscription": Deployment.subscription,
    "AWS::Lambda::Function": Deployment.function,
    "AWS::Lambda::EventSourceMapping": Deployment.event_source_mapping,
    "AWS::Lambda::Permission": Deployment.permission,
    "AWS::Lambda::EventInvokeConfig": Deployment.invoke_config,
    "AWS::Events::Rule": Deployment.rule,
    "AWS::EC2::SecurityGroup": Deployment.security_group,
    "AWS::ElasticLoadBalancingV2::LoadBalancer": Deployment.load_balancer,
    "AWS::ElasticLoadBalancingV2::TargetGroup": Deployment.target_group,
    "AWS::ElasticLoadBalancingV2::Listener": Deployment.listener,
}
