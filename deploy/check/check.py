#!/usr/bin/env python3
"""Checks the deployment artifacts in deploy/ without an AWS account: cfn-lint and checkov on the
CloudFormation templates; every ECS, ELB, Application Auto Scaling and CloudWatch Logs request
the ECS template makes, and the AgentCore CreateAgentRuntime request, against botocore's service
models; the environment the task definition and the AgentCore runtime give the agent, through the
agent's own configuration parser (`voice-agent config`); and the nesting of the timers (ALB idle
timeout, deregistration delay, Fargate stop timeout, the agent's drain, AgentCore's lifecycle).

Run by `make deploy-check`, which installs the Python packages; ends with `N passed, N failed`."""

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
import api  # noqa: E402
import cfn  # noqa: E402
import timing  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
ECS_TEMPLATE = ROOT / "deploy/ecs/voice-agent.yaml"
ROLE_TEMPLATE = ROOT / "deploy/agentcore/execution-role.yaml"
RUNTIME_REQUEST = ROOT / "deploy/agentcore/create-agent-runtime.json"
JWT_AUTHORIZER = ROOT / "deploy/agentcore/jwt-authorizer.json"

# What a user must give the ECS template.
REQUIRED = {
    "VpcId": "vpc-0123456789abcdef0",
    "LoadBalancerSubnetIds": "subnet-0123456789abcdef0,subnet-0fedcba9876543210",
    "TaskSubnetIds": "subnet-0aaaaaaaaaaaaaaa0,subnet-0bbbbbbbbbbbbbbb0",
    "DomainName": "voice.example.com",
    "CertificateArn": f"arn:aws:acm:us-east-1:{cfn.ACCOUNT}:certificate/12345678-90ab-cdef-1234-567890abcdef",
    "ImageUri": f"{cfn.ACCOUNT}.dkr.ecr.us-east-1.amazonaws.com/voice-agent:0.1.0",
}
SECRET = f"arn:aws:secretsmanager:us-east-1:{cfn.ACCOUNT}:secret:voice-agent/tokens-AbCdEf"
# Parameter sets that together take every branch of the template.
SCENARIOS = {
    "jwt callers, 55-minute calls": {
        "AuthMode": "jwt",
        "JwtIssuer": "https://cognito-idp.us-east-1.amazonaws.com/us-east-1_EXAMPLE1",
        "JwtAudience": "4f1example2client3id",
        "JwksUrl": "https://cognito-idp.us-east-1.amazonaws.com/us-east-1_EXAMPLE1/.well-known/jwks.json",
    },
    "token callers, bearer gateway, origins, 15-minute calls, x86_64": {
        "AuthMode": "token",
        "TokensSecretArn": SECRET,
        "AllowedOrigins": "https://app.example.com",
        "GatewayUrl": "https://tools.example.com/mcp",
        "GatewayAuth": "bearer",
        "GatewayTokenSecretArn": SECRET.replace("tokens", "gateway"),
        "MaxCallMinutes": "15",
        "CpuArchitecture": "X86_64",
    },
    "no caller auth, SigV4 gateway, DNS record, 30-minute calls": {
        "AuthMode": "none",
        "GatewayUrl": "https://gw-abc123.gateway.bedrock-agentcore.us-east-1.amazonaws.com/mcp",
        "GatewayAuth": "sigv4",
        "GatewayArn": f"arn:aws:bedrock-agentcore:us-east-1:{cfn.ACCOUNT}:gateway/gw-abc123",
        "HostedZoneId": "Z0123456789ABCDEFGHIJ",
        "MaxCallMinutes": "30",
        "ModelId": "us.amazon.nova-2-sonic-v1:0",
    },
}
# Parameter sets CloudFormation must refuse (the template's Rules), with the refusal expected.
REFUSED = {
    "token callers without a secret": ({"AuthMode": "token"}, "AuthMode=token needs TokensSecretArn."),
    "jwt callers without an issuer": ({"AuthMode": "jwt"}, "AuthMode=jwt needs JwtIssuer, JwtAudience and JwksUrl."),
    "SigV4 gateway without its ARN": (
        {"AuthMode": "none", "GatewayUrl": "https://gw.example.com/mcp", "GatewayAuth": "sigv4"},
        "GatewayAuth=sigv4 needs GatewayArn (the task role may invoke only that gateway).",
    ),
}


class Results:
    def __init__(self):
        self.passed = 0
        self.failed = 0

    def record(self, name, problems):
        if problems:
            self.failed += 1
            print(f"FAIL {name}")
            for problem in problems:
                print(f"     {problem}")
        else:
            self.passed += 1
            print(f"ok   {name}")


def lint():
    cfn_lint = Path(sys.executable).parent / "cfn-lint"
    run = subprocess.run([str(cfn_lint), str(ECS_TEMPLATE), str(ROLE_TEMPLATE)], capture_output=True, text=True)
    return [] if run.returncode == 0 else (run.stdout + run.stderr).strip().splitlines()


def declared_skips(template):
    skips = set()
    for name, resource in template["Resources"].items():
        for skip in resource.get("Metadata", {}).get("checkov", {}).get("skip", []):
            if not skip.get("comment", "").strip():
                skips.add((skip["id"], name, "without a justification"))
            skips.add((skip["id"], name, None))
    return skips


def policy_check(checkov, path):
    """checkov finds nothing, and every suppression in the template is justified and still used."""
    run = subprocess.run(
        [checkov, "-f", str(path), "--framework", "cloudformation", "--skip-download", "--output", "json"],
        capture_output=True,
        text=True,
        env={**os.environ, "BC_SKIP_MAPPING": "TRUE"},
    )
    try:
        report = json.loads(run.stdout)
    except json.JSONDecodeError:
        return [f"checkov did not report (exit {run.returncode}): {run.stderr.strip()[-500:]}"]
    if isinstance(report, list):
        report = next((r for r in report if r.get("check_type") == "cloudformation"), {})
    results = report.get("results", {})
    problems = [
        f"{c['check_id']} {c['check_name']} ({c['resource']})" for c in results.get("failed_checks", [])
    ]
    used = {(c["check_id"], c["resource"].split(".")[-1]) for c in results.get("skipped_checks", [])}
    for check_id, resource, issue in declared_skips(cfn.load(path)):
        if issue:
            problems.append(f"suppression {check_id} on {resource} {issue}")
        elif (check_id, resource) not in used:
            problems.append(f"suppression {check_id} on {resource} is no longer needed: remove it")
    return problems


def camel(node):
    """CloudFormation's PascalCase ECS properties in the API's camelCase."""
    if isinstance(node, dict):
        return {key[:1].lower() + key[1:]: camel(value) for key, value in node.items()}
    if isinstance(node, list):
        return [camel(item) for item in node]
    return node


def api_requests(stack):
    """(what, service, operation, params) for every API call the stack's resources stand for."""
    resources = {name: (kind, props) for name, kind, props in stack.resources()}
    for name, (kind, props) in resources.items():
        props = dict(props)
        if kind == "AWS::ECS::TaskDefinition":
            yield name, "ecs", "RegisterTaskDefinition", camel(props)
        elif kind == "AWS::ECS::Service":
            yield name, "ecs", "CreateService", {"serviceName": "voice-agent", **camel(props)}
        elif kind == "AWS::ECS::Cluster":
            params = camel(props)
            params["settings"] = params.pop("clusterSettings", [])
            yield name, "ecs", "CreateCluster", params
        elif kind == "AWS::ElasticLoadBalancingV2::LoadBalancer":
            attributes = props.pop("LoadBalancerAttributes", [])
            yield name, "elbv2", "CreateLoadBalancer", {"Name": "voice-lb", **props}
            yield name, "elbv2", "ModifyLoadBalancerAttributes", {"LoadBalancerArn": cfn.LB_ARN, "Attributes": attributes}
        elif kind == "AWS::ElasticLoadBalancingV2::TargetGroup":
            attributes = props.pop("TargetGroupAttributes", [])
            yield name, "elbv2", "CreateTargetGroup", {"Name": "voice-tg", **props}
            yield name, "elbv2", "ModifyTargetGroupAttributes", {"TargetGroupArn": cfn.TG_ARN, "Attributes": attributes}
        elif kind == "AWS::ElasticLoadBalancingV2::Listener":
            yield name, "elbv2", "CreateListener", props
        elif kind == "AWS::ApplicationAutoScaling::ScalableTarget":
            yield name, "application-autoscaling", "RegisterScalableTarget", props
        elif kind == "AWS::ApplicationAutoScaling::ScalingPolicy":
            target = resources["ScalableTarget"][1]
            props.pop("ScalingTargetId")
            for key in ("ServiceNamespace", "ResourceId", "ScalableDimension"):
                props[key] = target[key]
            yield name, "application-autoscaling", "PutScalingPolicy", props
        elif kind == "AWS::Logs::LogGroup":
            yield name, "logs", "CreateLogGroup", {"logGroupName": props["LogGroupName"]}
            yield name, "logs", "PutRetentionPolicy", {
                "logGroupName": props["LogGroupName"],
                "retentionInDays": props["RetentionInDays"],
            }


def request_problems(stack):
    problems = []
    for what, service, operation, params in api_requests(stack):
        params = api.request(service, operation, params)
        problems += [f"{what} ({service} {operation}): {p}" for p in api.problems(service, operation, params)]
    return problems


def agent_environment(stack):
    """The agent container's variables, with secrets as stand-in values."""
    task = next(props for _, kind, props in stack.resources() if kind == "AWS::ECS::TaskDefinition")
    agent = next(c for c in task["ContainerDefinitions"] if c["Name"] == "agent")
    env = {e["Name"]: str(e["Value"]) for e in agent.get("Environment", [])}
    env.update({s["Name"]: "stand-in-for-a-secret" for s in agent.get("Secrets", [])})
    return agent, env


def known_variables(agent_bin):
    """Every VOICE_AGENT_* variable the agent reads, from its own --help."""
    run = subprocess.run([agent_bin, "serve", "--help"], capture_output=True, text=True, check=True)
    return set(re.findall(r"\[env: (VOICE_AGENT_[A-Z0-9_]+)[=\]]", run.stdout))


def agent_config(agent_bin, env, known):
    """(effective configuration, problems) of the agent started with exactly `env`."""
    unknown = sorted(n for n in env if n.startswith("VOICE_AGENT_") and n not in known)
    if unknown:
        return None, [f"the agent reads no variable {n}" for n in unknown]
    with tempfile.TemporaryDirectory() as home:
        run = subprocess.run(
            [agent_bin, "config"],
            capture_output=True,
            text=True,
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": home, **env},
        )
    if run.returncode != 0:
        return None, [f"voice-agent config exit {run.returncode}: {run.stderr.strip()}"]
    return yaml.safe_load(run.stdout), []


def ecs_scenario(results, name, parameters, agent_bin, known):
    stack = cfn.Stack(cfn.load(ECS_TEMPLATE), {**REQUIRED, **parameters})
    results.record(f"ecs [{name}]: the template's rules accept the parameters", stack.broken_rules())
    results.record(f"ecs [{name}]: requests match the ECS, ELB, Auto Scaling and Logs models", request_problems(stack))

    agent, env = agent_environment(stack)
    config, problems = agent_config(agent_bin, env, known)
    if config is not None:
        expected = {
            ("model", "provider"): "NovaSonic",
            ("model", "modelId"): stack.parameters["ModelId"],
            ("model", "region"): cfn.REGION,
            ("auth", "mode"): {"jwt": "Jwt", "token": "Token", "none": "None"}[stack.parameters["AuthMode"]],
            ("session", "maxSessions"): int(stack.parameters["MaxSessionsPerTask"]),
        }
        for (section, field), want in expected.items():
            got = (config.get(section) or {}).get(field)
            if got != want:
                problems.append(f"{section}.{field} is {got!r}, expected {want!r}")
        if stack.parameters["AuthMode"] == "token":
            mounts = [m["ContainerPath"] for m in agent.get("MountPoints", [])]
            if os.path.dirname(config["auth"]["tokenFile"]) not in mounts:
                problems.append(f"the token file {config['auth']['tokenFile']} is not on a mounted volume {mounts}")
    results.record(f"ecs [{name}]: `voice-agent config` accepts the task's environment", problems)
    if config is None:
        return

    resources = {n: props for n, _, props in stack.resources()}
    attribute = lambda props, key: int(next(a["Value"] for a in props if a["Key"] == key))  # noqa: E731
    session = config["session"]
    timers = {
        "max_duration": timing.seconds(session["maxDuration"]),
        "idle_timeout": timing.seconds(session["idleTimeout"]),
        "drain_timeout": timing.seconds(session["drainTimeout"]),
        "alb_idle_timeout": attribute(resources["LoadBalancer"]["LoadBalancerAttributes"], "idle_timeout.timeout_seconds"),
        "deregistration_delay": attribute(
            resources["TargetGroup"]["TargetGroupAttributes"], "deregistration_delay.timeout_seconds"
        ),
        "stop_timeout": int(agent["StopTimeout"]),
    }
    problems = timing.ecs_problems(**timers)
    expected_minutes = int(stack.parameters["MaxCallMinutes"])
    if timers["max_duration"] != expected_minutes * 60:
        problems.append(f"calls end after {timers['max_duration']} s, MaxCallMinutes says {expected_minutes} min")
    stickiness = next(a["Value"] for a in resources["TargetGroup"]["TargetGroupAttributes"] if a["Key"] == "stickiness.enabled")
    if stickiness != "false":
        problems.append("stickiness must be off: every handshake is a new session")
    if resources["TargetGroup"]["HealthCheckPath"] != "/readyz":
        problems.append("the target group must check /readyz (503 while draining)")
    results.record(f"ecs [{name}]: timers nest ({timers})", problems)

    outputs = stack.outputs()
    domain = stack.parameters["DomainName"]
    wanted = {"WebSocketUrl": f"wss://{domain}/ws", "PageUrl": f"https://{domain}/"}
    results.record(
        f"ecs [{name}]: outputs the wss:// and page URLs",
        [f"{k} is {outputs.get(k)!r}, expected {v!r}" for k, v in wanted.items() if outputs.get(k) != v],
    )


def refused_scenarios(results):
    for name, (parameters, description) in REFUSED.items():
        stack = cfn.Stack(cfn.load(ECS_TEMPLATE), {**REQUIRED, **parameters})
        broken = stack.broken_rules()
        results.record(
            f"ecs: CloudFormation refuses {name}",
            [] if description in broken else [f"expected the rule {description!r}, got {broken}"],
        )


def agentcore(results, agent_bin, known):
    request = json.loads(RUNTIME_REQUEST.read_text())
    authorizer = json.loads(JWT_AUTHORIZER.read_text())
    service, operation = "bedrock-agentcore-control", "CreateAgentRuntime"
    results.record(
        "agentcore: create-agent-runtime.json matches CreateAgentRuntime",
        api.problems(service, operation, request),
    )
    results.record(
        "agentcore: jwt-authorizer.json matches AuthorizerConfiguration, alone and in the request",
        api.shape_problems(service, "AuthorizerConfiguration", authorizer)
        + api.problems(service, operation, {**request, "authorizerConfiguration": authorizer}),
    )
    problems = []
    if request["protocolConfiguration"]["serverProtocol"] != "HTTP":
        problems.append("the agent serves AgentCore's HTTP protocol (/ping, /invocations, /ws)")
    config, config_problems = agent_config(agent_bin, request["environmentVariables"], known)
    results.record("agentcore: `voice-agent config` accepts the runtime's environment", problems + config_problems)
    if config is None:
        return
    lifecycle = request["lifecycleConfiguration"]
    results.record(
        f"agentcore: lifecycle {lifecycle} fits the agent's calls ({config['session']['maxDuration']})",
        timing.agentcore_problems(
            max_duration=timing.seconds(config["session"]["maxDuration"]),
            idle_runtime_session_timeout=lifecycle["idleRuntimeSessionTimeout"],
            max_lifetime=lifecycle["maxLifetime"],
        ),
    )


def checks_can_fail(results):
    """The consistency rules and the model validation reject what they exist to reject."""
    good = {
        "max_duration": 3300,
        "idle_timeout": 120,
        "drain_timeout": 110,
        "alb_idle_timeout": 3360,
        "deregistration_delay": 3360,
        "stop_timeout": 120,
    }
    bad = {
        "deregistration delay shorter than a call": {"deregistration_delay": 3300},
        "deregistration delay above 3600 s": {"max_duration": 3560, "alb_idle_timeout": 3700, "deregistration_delay": 3700},
        "ALB idle timeout above 4000 s": {"alb_idle_timeout": 4001},
        "ALB idle timeout shorter than a call": {"alb_idle_timeout": 3000},
        "stopTimeout above Fargate's 120 s": {"stop_timeout": 121},
        "drain ending at SIGKILL": {"drain_timeout": 115},
    }
    problems = [] if not timing.ecs_problems(**good) else [f"good timers refused: {timing.ecs_problems(**good)}"]
    for what, change in bad.items():
        if not timing.ecs_problems(**{**good, **change}):
            problems.append(f"not caught: {what}")
    agentcore_bad = {
        "maxLifetime shorter than a call": dict(max_duration=3300, idle_runtime_session_timeout=300, max_lifetime=3300),
        "calls past the 60-minute stream limit": dict(max_duration=3600, idle_runtime_session_timeout=300, max_lifetime=7200),
    }
    for what, values in agentcore_bad.items():
        if not timing.agentcore_problems(**values):
            problems.append(f"not caught: {what}")
    request = json.loads(RUNTIME_REQUEST.read_text())
    wrong = {
        "misspelt field": {**request, "lifecycleConfig": {}},
        "unknown protocol": {**request, "protocolConfiguration": {"serverProtocol": "WEBSOCKET"}},
        "lifetime above the maximum": {**request, "lifecycleConfiguration": {"maxLifetime": 10**9}},
        "invalid runtime name": {**request, "agentRuntimeName": "voice-agent"},
    }
    for what, params in wrong.items():
        if not api.problems("bedrock-agentcore-control", "CreateAgentRuntime", params):
            problems.append(f"not caught by the model check: {what}")
    stack = cfn.Stack(cfn.load(ECS_TEMPLATE), {**REQUIRED, **SCENARIOS["jwt callers, 55-minute calls"]})
    task = next(camel(p) for _, kind, p in stack.resources() if kind == "AWS::ECS::TaskDefinition")
    wrong_ecs = {
        "misspelt task field": {**task, "networkModes": "awsvpc"},
        "unknown network mode": {**task, "networkMode": "vpc"},
        "stop timeout that is not a number": {
            **task,
            "containerDefinitions": [{**task["containerDefinitions"][0], "stopTimeout": "two minutes"}],
        },
    }
    for what, params in wrong_ecs.items():
        if not api.problems("ecs", "RegisterTaskDefinition", api.request("ecs", "RegisterTaskDefinition", params)):
            problems.append(f"not caught by the model check: {what}")
    results.record("the checks themselves refuse broken timers and requests", problems)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agent", required=True, help="the voice-agent binary")
    parser.add_argument("--checkov", required=True, help="the checkov executable")
    args = parser.parse_args()

    results = Results()
    results.record("cfn-lint: deploy/ecs/voice-agent.yaml, deploy/agentcore/execution-role.yaml", lint())
    for template in (ECS_TEMPLATE, ROLE_TEMPLATE):
        results.record(f"checkov: {template.relative_to(ROOT)}", policy_check(args.checkov, template))
    known = known_variables(args.agent)
    for name, parameters in SCENARIOS.items():
        ecs_scenario(results, name, parameters, args.agent, known)
    refused_scenarios(results)
    agentcore(results, args.agent, known)
    checks_can_fail(results)
    print(f"{results.passed} passed, {results.failed} failed")
    return 1 if results.failed else 0


if __name__ == "__main__":
    sys.exit(main())
