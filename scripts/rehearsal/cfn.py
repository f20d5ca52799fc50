"""template.yaml as CloudFormation reads it: the SAM transform, parameters, conditions and the
intrinsic functions, resolved against the resources the rehearsal creates.

Only what the template uses is implemented; anything else (an unknown intrinsic, a resource type
the rehearsal does not create) is an error, so the rehearsal never silently skips a part of the
template.
"""

from __future__ import annotations

import copy
import json
import re

NO_VALUE = object()


class TemplateError(Exception):
    pass


def load(path):
    """The template as plain data (intrinsics as {"Ref": ...}, {"Fn::If": ...})."""
    from cfnlint.decode import cfn_yaml

    return json.loads(json.dumps(cfn_yaml.load(str(path))))


def sam_transform(template, region):
    """AWS::Serverless-2016-10-31 applied as `sam deploy` applies it: functions, their event
    source mappings, schedule rules, permissions and invoke configs as plain resources (no
    managed policy is looked up: the template's roles are explicit)."""
    import os

    from samtranslator.translator.transform import transform

    os.environ.setdefault("AWS_DEFAULT_REGION", region)

    class NoManagedPolicies:
        def load(self):
            return {}

    t = copy.deepcopy(template)
    globals_function = t.get("Globals", {}).get("Function", {})
    if globals_function.get("CodeUri") == ".":
        globals_function["CodeUri"] = "s3://rehearsal-artifacts/code.zip"  # `sam build` uploads
    out = transform(t, {}, NoManagedPolicies())
    # SAM keeps each function's Metadata (BuildProperties.Binary names its zip).
    for name, resource in template["Resources"].items():
        if name in out["Resources"] and "Metadata" in resource:
            out["Resources"][name].setdefault("Metadata", resource["Metadata"])
    return out


def check_parameter(name, spec, value):
    """CloudFormation's own checks of a parameter value."""
    kind = spec.get("Type", "String")
    if "AllowedValues" in spec and str(value) not in [str(v) for v in spec["AllowedValues"]]:
        raise TemplateError(f"parameter {name}={value!r} is not one of {spec['AllowedValues']}")
    if "AllowedPattern" in spec and kind == "String" and not re.fullmatch(spec["AllowedPattern"], str(value)):
        raise TemplateError(f"parameter {name}={value!r} does not match {spec['AllowedPattern']}")
    if kind == "Number":
        number = float(value)
        if "MinValue" in spec and number < float(spec["MinValue"]):
            raise TemplateError(f"parameter {name}={value} is below {spec['MinValue']}")
        if "MaxValue" in spec and number > float(spec["MaxValue"]):
            raise TemplateError(f"parameter {name}={value} is above {spec['MaxValue']}")


class Stack:
    """A deployment of the (transformed) template: parameter values, conditions, and for each
    created resource its physical id (what Ref gives) and attributes (what GetAtt gives)."""

    def __init__(self, template, parameters, stack_name, region, account):
        self.template = template
        self.name = stack_name
        self.region = region
        self.account = account
        self.pseudo = {
            "AWS::StackName": stack_name,
            "AWS::Region": region,
            "AWS::AccountId": account,
            "AWS::Partition": "aws",
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::StackId": f"arn:aws:cloudformation:{region}:{account}:stack/{stack_name}/00000000-rehearsal",
        }
        self.parameters = {}
        for name, spec in template.get("Parameters", {}).items():
            if name in parameters:
                value = parameters[name]
            elif "Default" in spec:
                value = spec["Default"]
            else:
                raise TemplateError(f"parameter {name} has no default and no value")
            check_parameter(name, spec, value)
            if spec.get("Type", "").startswith("List<") or spec.get("Type") == "CommaDelimitedList":
                value = value if isinstance(value, list) else str(value).split(",")
            else:
                value = str(value)
            self.parameters[name] = value
        unknown = set(parameters) - set(self.parameters)
        if unknown:
            raise TemplateError(f"parameters not in the template: {sorted(unknown)}")
        self.conditions = {}
        for name in template.get("Conditions", {}):
            self.condition(name)
        self.physical = {}
        self.attributes = {}

    # -- conditions -------------------------------------------------------------------------
    def condition(self, name):
        if name not in self.conditions:
            spec = self.template.get("Conditions", {}).get(name)
            if spec is None:
                raise TemplateError(f"condition {name} is not defined")
            self.conditions[name] = bool(self._condition(spec))
        return self.conditions[name]

    def _condition(self, node):
        if isinstance(node, dict) and len(node) == 1:
            (key, value), = node.items()
            if key == "Fn::Equals":
                a, b = (self.resolve(v) for v in value)
                return str(a) == str(b)
            if key == "Fn::Not":
                return not self._condition(value[0])
            if key == "Fn::And":
                return all(self._condition(v) for v in value)
            if key == "Fn::Or":
                return any(self._condition(v) for v in value)
            if key == "Condition":
                return self.condition(value)
        raise TemplateError(f"unsupported condition {node!r}")

    def included(self, logical):
        condition = self.template["Resources"][logical].get("Condition")
        return condition is None or self.condition(condition)

    # -- dependencies -----------------------------------------------------------------------
    def dependencies(self, logical):
        resource = self.template["Resources"][logical]
        found = set(as_list(resource.get("DependsOn", [])))

        def walk(node):
            if isinstance(node, dict):
                if set(node) == {"Ref"} and node["Ref"] in self.template["Resources"]:
                    found.add(node["Ref"])
                elif set(node) == {"Fn::GetAtt"}:
                    target = node["Fn::GetAtt"]
                    found.add((target.split(".")[0] if isinstance(target, str) else target[0]))
                elif set(node) == {"Fn::Sub"}:
                    text = node["Fn::Sub"] if isinstance(node["Fn::Sub"], str) else node["Fn::Sub"][0]
                    for var in re.findall(r"\$\{([^!}][^}]*)\}", text):
                        head = var.split(".")[0]
                        if head in self.template["Resources"]:
                            found.add(head)
                    if isinstance(node["Fn::Sub"], list):
                        walk(node["Fn::Sub"][1])
                for v in node.values():
                    walk(v)
            elif isinstance(node, list):
                for v in node:
                    walk(v)

        walk(resource.get("Properties", {}))
        return {d for d in found if d in self.template["Resources"] and self.included(d)}

    def creation_order(self):
        names = [n for n in self.template["Resources"] if self.included(n)]
        order, done, visiting = [], set(), set()

        def visit(n):
            if n in done:
                return
            if n in visiting:
                raise TemplateError(f"circular dependency at {n}")
            visiting.add(n)
            for d in sorted(self.dependencies(n)):
                visit(d)
            visiting.discard(n)
            done.add(n)
            order.append(n)

        for n in names:
            visit(n)
        return order

    # -- intrinsics -------------------------------------------------------------------------
    def ref(self, name):
        if name in self.parameters:
            return self.parameters[name]
        if name in self.pseudo:
            return self.pseudo[name]
        if name == "AWS::NoValue":
            return NO_VALUE
        if name in self.physical:
            return self.physical[name]
        raise TemplateError(f"Ref {name}: no such parameter or created resource")

    def get_att(self, logical, attribute):
        if logical not in self.attributes:
            raise TemplateError(f"GetAtt {logical}.{attribute}: no such created resource")
        attrs = self.attributes[logical]
        if attribute not in attrs:
            raise TemplateError(f"GetAtt {logical}.{attribute}: the resource has no such attribute ({sorted(attrs)})")
        return attrs[attribute]

    def sub(self, text, variables):
        def one(match):
            var = match.group(1)
            if var.startswith("!"):
                return "${" + var[1:] + "}"
            if var in variables:
                return str(variables[var])
            if "." in var:
                logical, attribute = var.split(".", 1)
                return str(self.get_att(logical, attribute))
            return str(self.ref(var))

        return re.sub(r"\$\{([^}]*)\}", one, text)

    def resolve(self, node):
        """The value of a template fragment, AWS::NoValue entries removed."""
        if isinstance(node, list):
            out = [self.resolve(v) for v in node]
            return [v for v in out if v is not NO_VALUE]
        if not isinstance(node, dict):
            return node
        if len(node) == 1:
            (key, value), = node.items()
            if key == "Ref":
                return self.ref(value)
            if key == "Fn::GetAtt":
                logical, attribute = value.split(".", 1) if isinstance(value, str) else value
                return self.get_att(logical, attribute)
            if key == "Fn::Sub":
                if isinstance(value, str):
                    return self.sub(value, {})
                text, variables = value
                return self.sub(text, {k: self.resolve(v) for k, v in variables.items()})
            if key == "Fn::If":
                name, yes, no = value
                return self.resolve(yes if self.condition(name) else no)
            if key == "Fn::Join":
                sep, items = value
                return sep.join(str(v) for v in self.resolve(items))
            if key == "Fn::Select":
                index, items = value
                return self.resolve(items)[int(self.resolve(index))]
            if key == "Fn::Split":
                sep, text = value
                return str(self.resolve(text)).split(sep)
            if key == "Fn::GetAZs":
                return [f"{self.region}a", f"{self.region}b"]
            if key.startswith("Fn::") or key == "Condition":
                raise TemplateError(f"intrinsic {key} is not emulated")
        out = {}
        for k, v in node.items():
            r = self.resolve(v)
            if r is not NO_VALUE:
                out[k] = r
        return out

    def properties(self, logical):
        return self.resolve(self.template["Resources"][logical].get("Properties", {}))

    def outputs(self):
        out = {}
        for name, spec in self.template.get("Outputs", {}).items():
            if "Condition" in spec and not self.condition(spec["Condition"]):
                continue
            out[name] = str(self.resolve(spec["Value"]))
        return out


def as_list(value):
    return value if isinstance(value, list) else [value]
