"""The timers of a deployment must nest so that the agent, not AWS, ends every call:

- ECS on Fargate behind an ALB. A task leaving the service (scale-in, deployment) is first
  deregistered from the target group: it keeps its calls, but gets no new ones, for at most the
  deregistration delay, and only then gets SIGTERM; SIGKILL follows after the container's
  stopTimeout, which Fargate caps at 120 s. So calls drain during the deregistration delay,
  which must outlast the longest call; the agent's own drain (after SIGTERM) must end before
  SIGKILL; and the ALB's idle timeout must outlast both the longest call and the agent's idle
  timeout.
- AgentCore Runtime. The microVM of a session lives at most maxLifetime, and streams at most 60
  minutes: the longest call must end before either. (A live call is never idle to AgentCore: the
  agent's /ping answers HealthyBusy while it has one, so idleRuntimeSessionTimeout only says how
  long an ended session's microVM waits for a reconnection.)
"""

import re

ALB_IDLE_TIMEOUT_MAX = 4000  # seconds, Elastic Load Balancing's limit
DEREGISTRATION_DELAY_MAX = 3600  # seconds
FARGATE_STOP_TIMEOUT_MAX = 120  # seconds
AGENTCORE_STREAM_MAX = 3600  # seconds: AgentCore's streaming maximum duration (60 min)
AGENTCORE_LIFECYCLE_MIN = 60  # seconds, for both lifecycle settings
# The agent ends a call this long before a timer would (what the operator also uses).
MARGIN = 60
# Between the agent's drain deadline and SIGKILL: closing sockets and exiting.
EXIT_MARGIN = 10


def seconds(duration):
    """`1h 30m`, `1m 50s`, `110s`, `500ms` (the agent's duration format) in seconds."""
    parts = re.findall(r"(\d+)\s*(ms|h|m|s|d)", duration)
    if not parts or re.sub(r"\d+\s*(ms|h|m|s|d)|\s", "", duration):
        raise ValueError(f"not a duration: {duration!r}")
    unit = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
    return sum(int(n) * unit[u] for n, u in parts)


def ecs_problems(*, max_duration, idle_timeout, drain_timeout, alb_idle_timeout, deregistration_delay, stop_timeout):
    """What is wrong with an ECS deployment's timers (all in seconds); empty when they nest."""
    found = []
    if not 1 <= alb_idle_timeout <= ALB_IDLE_TIMEOUT_MAX:
        found.append(f"ALB idle timeout {alb_idle_timeout} s is outside 1..{ALB_IDLE_TIMEOUT_MAX}")
    if alb_idle_timeout < max_duration + MARGIN:
        found.append(f"ALB idle timeout {alb_idle_timeout} s is below the longest call {max_duration} s + {MARGIN} s")
    if alb_idle_timeout < idle_timeout + MARGIN:
        found.append(f"ALB idle timeout {alb_idle_timeout} s is below the agent's idle timeout {idle_timeout} s + {MARGIN} s")
    if not 0 <= deregistration_delay <= DEREGISTRATION_DELAY_MAX:
        found.append(f"deregistration delay {deregistration_delay} s is outside 0..{DEREGISTRATION_DELAY_MAX}")
    if deregistration_delay < max_duration + MARGIN:
        found.append(
            f"deregistration delay {deregistration_delay} s is below the longest call {max_duration} s + {MARGIN} s: "
            "scale-in and deployments would cut calls"
        )
    if stop_timeout > FARGATE_STOP_TIMEOUT_MAX:
        found.append(f"stopTimeout {stop_timeout} s is above Fargate's maximum {FARGATE_STOP_TIMEOUT_MAX} s")
    if drain_timeout + EXIT_MARGIN > stop_timeout:
        found.append(
            f"drain timeout {drain_timeout} s + {EXIT_MARGIN} s does not end before SIGKILL at stopTimeout {stop_timeout} s"
        )
    return found


def agentcore_problems(*, max_duration, idle_runtime_session_timeout, max_lifetime):
    """What is wrong with an AgentCore runtime's lifecycle against the agent's session limits."""
    found = []
    for name, value in (("idleRuntimeSessionTimeout", idle_runtime_session_timeout), ("maxLifetime", max_lifetime)):
        if value < AGENTCORE_LIFECYCLE_MIN:
            found.append(f"{name} {value} s is below AgentCore's minimum {AGENTCORE_LIFECYCLE_MIN} s")
    if idle_runtime_session_timeout > max_lifetime:
        found.append(f"idleRuntimeSessionTimeout {idle_runtime_session_timeout} s is above maxLifetime {max_lifetime} s")
    if max_lifetime < max_duration + MARGIN:
        found.append(f"maxLifetime {max_lifetime} s is below the longest call {max_duration} s + {MARGIN} s")
    if max_duration + MARGIN > AGENTCORE_STREAM_MAX:
        found.append(
            f"the longest call {max_duration} s + {MARGIN} s is above AgentCore's {AGENTCORE_STREAM_MAX} s streaming limit"
        )
    return found
