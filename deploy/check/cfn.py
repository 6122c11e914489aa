"""A CloudFormation template rendered for one set of parameters, offline: conditions, rules and
the intrinsic functions the templates here use, with stand-in values for what only a deployment
knows (resource ids and attributes). Enough to hand each resource's properties to the AWS API
models and the task's environment to the agent."""

import re

from cfnlint.decode import cfn_yaml

REGION = "us-east-1"
ACCOUNT = "123456789012"
PSEUDO = {
    "AWS::Region": REGION,
    "AWS::AccountId": ACCOUNT,
    "AWS::Partition": "aws",
    "AWS::StackName": "voice",
    "AWS::URLSuffix": "amazonaws.com",
}
# What Ref and Fn::GetAtt of a resource return once deployed, in the shape AWS gives them.
LB_ARN = f"arn:aws:elasticloadbalancing:{REGION}:{ACCOUNT}:loadbalancer/app/voice-lb/0123456789abcdef"
TG_ARN = f"arn:aws:elasticloadbalancing:{REGION}:{ACCOUNT}:targetgroup/voice-tg/0123456789abcdef"
RESOURCE_REFS = {
    "LoadBalancer": LB_ARN,
    "TargetGroup": TG_ARN,
    "HttpsListener": f"{LB_ARN.replace(':loadbalancer/', ':listener/')}/0123456789abcdef",
    "Cluster": "voice-Cluster-AbCdEf012345",
    "Service": f"arn:aws:ecs:{REGION}:{ACCOUNT}:service/voice-Cluster-AbCdEf012345/voice-Service-AbCdEf012345",
    "TaskDefinition": f"arn:aws:ecs:{REGION}:{ACCOUNT}:task-definition/voice-voice-agent:1",
    "LogGroup": "/ecs/voice/voice-agent",
    "LoadBalancerSecurityGroup": "sg-0123456789abcdef0",
    "TaskSecurityGroup": "sg-0fedcba9876543210",
    "ScalableTarget": "service/voice-Cluster-AbCdEf012345/voice-Service-AbCdEf012345|ecs:service:DesiredCount|ecs",
}
ATTRIBUTES = {
    ("LoadBalancer", "DNSName"): "voice-lb-1234567890.us-east-1.elb.amazonaws.com",
    ("LoadBalancer", "CanonicalHostedZoneID"): "Z35SXDOTRQ7X7K",
    ("LoadBalancer", "LoadBalancerFullName"): "app/voice-lb/0123456789abcdef",
    ("TargetGroup", "TargetGroupFullName"): "targetgroup/voice-tg/0123456789abcdef",
    ("ExecutionRole", "Arn"): f"arn:aws:iam::{ACCOUNT}:role/voice-ExecutionRole-AbCdEf",
    ("TaskRole", "Arn"): f"arn:aws:iam::{ACCOUNT}:role/voice-TaskRole-AbCdEf",
    ("Service", "Name"): "voice-Service-AbCdEf012345",
}


class _NoValue:
    """AWS::NoValue: the property or list item disappears."""


NO_VALUE = _NoValue()


def load(path):
    """The template as plain data, intrinsic functions as {"Ref": ...} / {"Fn::...": ...}."""
    return _plain(cfn_yaml.load(str(path)))


def _plain(node):
    if isinstance(node, dict):
        return {str(k): _plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_plain(v) for v in node]
    if isinstance(node, str):
        return str(node)
    return node


class Stack:
    """`template` with `parameters` (the rest take their defaults)."""

    def __init__(self, template, parameters):
        self.template = template
        declared = template.get("Parameters", {})
        unknown = set(parameters) - set(declared)
        if unknown:
            raise ValueError(f"unknown parameters {sorted(unknown)}")
        self.parameters = {}
        for name, spec in declared.items():
            if name in parameters:
                value = parameters[name]
            elif "Default" in spec:
                value = spec["Default"]
            else:
                raise ValueError(f"parameter {name} has no default and was not given")
            value = str(value)
            allowed = spec.get("AllowedValues")
            if allowed is not None and value not in [str(a) for a in allowed]:
                raise ValueError(f"parameter {name}={value!r} is not one of {allowed}")
            pattern = spec.get("AllowedPattern")
            if pattern and not spec["Type"].startswith("List<") and re.fullmatch(pattern, value) is None:
                raise ValueError(f"parameter {name}={value!r} does not match {pattern}")
            self.parameters[name] = value.split(",") if spec["Type"].startswith("List<") else value

    def condition(self, name):
        return self._truth(self.template["Conditions"][name])

    def _truth(self, node):
        if isinstance(node, dict) and len(node) == 1:
            (function, args), = node.items()
            if function == "Fn::Equals":
                return self.resolve(args[0]) == self.resolve(args[1])
            if function == "Fn::Not":
                return not self._truth(args[0])
            if function == "Fn::And":
                return all(self._truth(a) for a in args)
            if function == "Fn::Or":
                return any(self._truth(a) for a in args)
            if function == "Condition":
                return self.condition(args)
        raise ValueError(f"not a condition: {node!r}")

    def broken_rules(self):
        """The assertion descriptions of every rule this parameter set breaks."""
        broken = []
        for rule in self.template.get("Rules", {}).values():
            if "RuleCondition" in rule and not self._truth(rule["RuleCondition"]):
                continue
            for assertion in rule["Assertions"]:
                if not self._truth(assertion["Assert"]):
                    broken.append(assertion["AssertDescription"])
        return broken

    def resources(self):
        """(logical id, type, resolved properties) of every resource this deployment creates."""
        for name, resource in self.template["Resources"].items():
            if "Condition" in resource and not self.condition(resource["Condition"]):
                continue
            yield name, resource["Type"], self.resolve(resource.get("Properties", {}))

    def outputs(self):
        return {name: self.resolve(output["Value"]) for name, output in self.template.get("Outputs", {}).items()}

    def resolve(self, node):
        if isinstance(node, list):
            items = [self.resolve(item) for item in node]
            return [item for item in items if item is not NO_VALUE]
        if not isinstance(node, dict):
            return node
        if len(node) == 1:
            (function, args), = node.items()
            if function == "Ref":
                return self._ref(args)
            if function == "Fn::GetAtt":
                resource, attribute = args.split(".", 1) if isinstance(args, str) else args
                return ATTRIBUTES[(resource, attribute)]
            if function == "Fn::Sub":
                return self._sub(args)
            if function == "Fn::FindInMap":
                table, first, second = (self.resolve(a) for a in args)
                return self.template["Mappings"][table][first][second]
            if function == "Fn::If":
                condition, when_true, when_false = args
                return self.resolve(when_true if self.condition(condition) else when_false)
            if function == "Fn::Join":
                separator, items = args
                return separator.join(str(i) for i in self.resolve(items))
            if function.startswith("Fn::"):
                raise ValueError(f"{function} is not supported here")
        resolved = {key: self.resolve(value) for key, value in node.items()}
        return {key: value for key, value in resolved.items() if value is not NO_VALUE}

    def _ref(self, name):
        if name == "AWS::NoValue":
            return NO_VALUE
        if name in PSEUDO:
            return PSEUDO[name]
        if name in self.parameters:
            return self.parameters[name]
        if name in RESOURCE_REFS:
            return RESOURCE_REFS[name]
        raise ValueError(f"no stand-in value for Ref {name}")

    def _sub(self, args):
        text, variables = (args, {}) if isinstance(args, str) else args

        def value(match):
            name = match.group(1)
            if name in variables:
                return str(self.resolve(variables[name]))
            if "." in name:
                return str(ATTRIBUTES[tuple(name.split(".", 1))])
            return str(self._ref(name))

        return re.sub(r"\$\{([^}!]+)\}", value, text)
