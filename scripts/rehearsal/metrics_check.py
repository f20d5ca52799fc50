"""Every CloudWatch alarm and dashboard metric of the template held to the metrics that exist: the
EMF lines the functions printed during the rehearsal (namespace, metric name and the exact
dimension set with its values), or the metrics AWS documents for SQS, Lambda and the
Application Load Balancer, with dimension values naming resources of this stack.
"""

from __future__ import annotations

import json
import re

from errors import Failed

SQS_METRICS = {
    "ApproximateAgeOfOldestMessage", "ApproximateNumberOfMessagesDelayed",
    "ApproximateNumberOfMessagesNotVisible", "ApproximateNumberOfMessagesVisible",
    "NumberOfEmptyReceives", "NumberOfMessagesDeleted", "NumberOfMessagesReceived",
    "NumberOfMessagesSent", "SentMessageSize",
}
LAMBDA_METRICS = {
    "Invocations", "Errors", "DeadLetterErrors", "DestinationDeliveryFailures", "Throttles",
    "OversizedRecordCount", "ProvisionedConcurrencySpilloverInvocations",
    "RecursiveInvocationsDropped", "Duration", "PostRuntimeExtensionsDuration", "IteratorAge",
    "OffsetLag", "ConcurrentExecutions", "UnreservedConcurrentExecutions",
    "ClaimedAccountConcurrency", "ProvisionedConcurrentExecutions",
    "ProvisionedConcurrencyUtilization", "AsyncEventsReceived", "AsyncEventAge",
    "AsyncEventsDropped",
}
# Application Load Balancer: load-balancer metrics (per LoadBalancer, or per AvailabilityZone
# and LoadBalancer) and target metrics (also per TargetGroup and LoadBalancer).
ALB_LB_METRICS = {
    "ActiveConnectionCount", "ClientTLSNegotiationErrorCount", "ConsumedLCUs",
    "HTTP_Fixed_Response_Count", "HTTP_Redirect_Count", "HTTP_Redirect_Url_Limit_Exceeded_Count",
    "HTTPCode_ELB_3XX_Count", "HTTPCode_ELB_4XX_Count", "HTTPCode_ELB_5XX_Count",
    "HTTPCode_ELB_500_Count", "HTTPCode_ELB_502_Count", "HTTPCode_ELB_503_Count",
    "HTTPCode_ELB_504_Count", "IPv6ProcessedBytes", "IPv6RequestCount", "NewConnectionCount",
    "ProcessedBytes", "RejectedConnectionCount", "RuleEvaluations",
}
ALB_TARGET_METRICS = {
    "RequestCount", "HTTPCode_Target_2XX_Count", "HTTPCode_Target_3XX_Count",
    "HTTPCode_Target_4XX_Count", "HTTPCode_Target_5XX_Count", "TargetResponseTime",
    "LambdaInternalError", "LambdaUserError", "LambdaTargetProcessedBytes",
}


def _aws_dimension_sets(namespace, metric):
    if namespace == "AWS/SQS":
        return [{"QueueName"}] if metric in SQS_METRICS else None
    if namespace == "AWS/Lambda":
        if metric not in LAMBDA_METRICS:
            return None
        return [set(), {"FunctionName"}, {"FunctionName", "Resource"}, {"FunctionName", "ExecutedVersion"}]
    if namespace == "AWS/ApplicationELB":
        if metric in ALB_LB_METRICS:
            return [{"LoadBalancer"}, {"AvailabilityZone", "LoadBalancer"}]
        if metric in ALB_TARGET_METRICS:
            return [{"LoadBalancer"}, {"AvailabilityZone", "LoadBalancer"}, {"TargetGroup"},
                    {"TargetGroup", "LoadBalancer"}, {"TargetGroup", "AvailabilityZone", "LoadBalancer"}]
        return None
    return None


class Catalog:
    """The metrics that exist, from the collected EMF and the deployed resources."""

    def __init__(self, rehearsal):
        self.emf = set()  # (namespace, metric, frozenset of (dim, value))
        for doc in rehearsal.logs.emf():
            for directive in doc["_aws"].get("CloudWatchMetrics", []):
                for dims in directive.get("Dimensions", []):
                    for m in directive.get("Metrics", []):
                        if m["Name"] in doc and all(d in doc for d in dims):
                            self.emf.add((directive["Namespace"], m["Name"],
                                          frozenset((d, str(doc[d])) for d in dims)))
        stack, deployment = rehearsal.stack, rehearsal.deployment
        self.values = {
            "QueueName": {stack.attributes[q]["QueueName"] for q in deployment.queues},
            "FunctionName": {p["FunctionName"] for p in deployment.functions.values()},
            "LoadBalancer": {stack.attributes[lb]["LoadBalancerFullName"] for lb in deployment.load_balancers},
            "TargetGroup": {stack.attributes[tg]["TargetGroupFullName"] for tg in deployment.target_groups},
            "Resource": {p["FunctionName"] for p in deployment.functions.values()},
            "ExecutedVersion": {"$LATEST"},
            "AvailabilityZone": {f"{stack.region}a", f"{stack.region}b"},
        }

    def check(self, where, namespace, metric, dimensions):
        """Raises ValueError saying why (namespace, metric, dimensions) does not exist."""
        if namespace.startswith("AWS/"):
            sets = _aws_dimension_sets(namespace, metric)
            if sets is None:
                raise ValueError(f"{where}: {namespace} has no metric {metric!r}")
            if set(dimensions) not in sets:
                raise ValueError(f"{where}: {namespace} {metric} has no dimension set {sorted(dimensions)} (AWS documents {[sorted(s) for s in sets]})")
            for d, v in dimensions.items():
                if v is not None and v not in self.values[d]:
                    raise ValueError(f"{where}: {namespace} {metric} {d}={v!r} names no resource of the stack ({sorted(self.values[d])})")
            return
        names = {(ns, m) for ns, m, _ in self.emf}
        if (namespace, metric) not in names:
            known = sorted(m for ns, m in names if ns == namespace)
            raise ValueError(f"{where}: no function emitted {namespace} {metric!r} (EMF seen: {known})")
        for ns, m, dims in self.emf:
            if ns == namespace and m == metric and {d for d, _ in dims} == set(dimensions):
                if all(v is None or (d, v) in dims for d, v in dimensions.items()):
                    return
        seen = sorted({tuple(sorted(dims)) for ns, m, dims in self.emf if ns == namespace and m == metric})
        raise ValueError(f"{where}: {namespace} {metric} is never emitted with dimensions {dimensions} (EMF has {seen})")


def alarm_metrics(logical, p):
    if "MetricName" in p:
        yield logical, p.get("Namespace", ""), p["MetricName"], {d["Name"]: str(d["Value"]) for d in p.get("Dimensions", [])}
    for q in p.get("Metrics", []):
        stat = q.get("MetricStat")
        if stat:
            m = stat["Metric"]
            yield f"{logical} ({q['Id']})", m.get("Namespace", ""), m["MetricName"], {d["Name"]: str(d["Value"]) for d in m.get("Dimensions", [])}
        elif "Expression" in q:
            yield from search_metrics(f"{logical} ({q['Id']})", q["Expression"])


def search_metrics(where, expression):
    """SEARCH('{Namespace,Dim,...} MetricName="X" Dim="v"', ...): the schema it searches."""
    for schema, terms in re.findall(r"SEARCH\(\s*'\{([^}]*)\}\s*([^']*)'", expression):
        parts = [p.strip().strip('"') for p in schema.split(",")]
        namespace, dims = parts[0], parts[1:]
        metric = re.search(r'MetricName\s*=\s*"([^"]+)"', terms)
        if not metric:
            raise ValueError(f"{where}: SEARCH without a MetricName: {expression}")
        values = dict(re.findall(r'(\w+)\s*=\s*"([^"]+)"', terms))
        yield where, namespace, metric.group(1), {d: values.get(d) for d in dims}


def dashboard_metrics(logical, body):
    doc = json.loads(body)
    for n, widget in enumerate(doc.get("widgets", [])):
        props = widget.get("properties", {})
        title = props.get("title", f"widget {n}")
        previous = None
        for entry in props.get("metrics", []) or []:
            where = f"{logical} / {title}"
            items = [e for e in entry if not isinstance(e, dict)]
            options = next((e for e in entry if isinstance(e, dict)), {})
            if "expression" in options and not items:
                yield from search_metrics(where, options["expression"])
                continue
            if previous is not None:
                items = [previous[i] if v == "." and i < len(previous) else v for i, v in enumerate(items)]
                if items and items[0] == "..." and previous:
                    items = previous[:len(previous)] + items[1:]
            previous = items
            if len(items) < 2 or len(items) % 2:
                raise ValueError(f"{where}: metric entry {entry} is not [namespace, name, dim, value, ...]")
            namespace, metric = items[0], items[1]
            dims = {items[i]: str(items[i + 1]) for i in range(2, len(items), 2)}
            yield where, namespace, metric, dims


def check(rehearsal, say):
    catalog = Catalog(rehearsal)
    problems = []

    def hold(metrics):
        """Checks each (where, namespace, metric, dimensions); returns how many there were."""
        n = 0
        try:
            for where, ns, metric, dims in metrics:
                n += 1
                try:
                    catalog.check(where, ns, metric, dims)
                except ValueError as e:
                    problems.append(str(e))
        except ValueError as e:  # a dashboard entry that is no metric at all
            problems.append(str(e))
        return n

    checked = sum(hold(alarm_metrics(logical, p)) for logical, p in rehearsal.deployment.alarms.items())
    widgets = sum(hold(dashboard_metrics(logical, body)) for logical, body in rehearsal.deployment.dashboards.items())
    if problems:
        raise Failed("metrics that do not exist:\n  " + "\n  ".join(problems))
    if not rehearsal.deployment.dashboards:
        raise Failed("the template has no CloudWatch dashboard")
    say(f"metrics: {len(rehearsal.deployment.alarms)} alarms ({checked} metrics) and {widgets} dashboard metrics "
        f"exist ({len(catalog.emf)} EMF metric streams collected)")
