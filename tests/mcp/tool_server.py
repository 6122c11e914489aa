"""An independent MCP server over streamable HTTP, built with the official `mcp` Python SDK,
for the voice agent's tool tests. It plays the part of an AgentCore Gateway: tool names carry a
gateway target prefix (`target___tool`), one tool is slow, one always fails. With
`--toolset crm` it is a second, different server: a customer lookup, and a `get_weather` of
its own whose name collides with the first server's.

It also records, for the tests to inspect over plain HTTP:
  GET /_test/requests  every MCP request: method, JSON-RPC method (`rpc`), Authorization header,
                       SigV4 check result, and for tools/call the request's `_meta`
  GET /_test/calls     every tool call: tool, arguments, start and end time

Prints {"url": "http://127.0.0.1:PORT/mcp"} on its first line, then serves until killed.
"""

import argparse
import asyncio
import hashlib
import hmac
import json
import socket
import sys
import time
from urllib.parse import parse_qsl, quote

import uvicorn
from mcp.server.mcpserver import MCPServer

REQUESTS = []
CALLS = []

server = MCPServer("voice-agent-test-tools")


def record_call(tool, arguments, started):
    CALLS.append({"tool": tool, "arguments": arguments, "start": started, "end": time.time()})


@server.tool(name="weather___get_weather", description="Current weather in a city.")
async def get_weather(city: str) -> dict:
    started = time.time()
    record_call("get_weather", {"city": city}, started)
    return {"city": city, "temperature_c": 21, "sky": "sunny"}


@server.tool(name="lookup___slow_lookup", description="Looks something up; takes a while.")
async def slow_lookup(query: str = "", seconds: float = 2.0, repeat: int = 1) -> str:
    """`repeat` makes a long result (the same finding `repeat` times, at most 100,000)."""
    started = time.time()
    await asyncio.sleep(seconds)
    record_call("slow_lookup", {"query": query, "seconds": seconds}, started)
    return " ".join([f"found {query!r} after {seconds} seconds."] * max(1, min(repeat, 100_000)))


@server.tool(name="booking___make_booking", description="Books a table. Currently broken.")
async def make_booking(party: int = 2) -> str:
    started = time.time()
    record_call("make_booking", {"party": party}, started)
    raise ValueError("the booking system is down")


crm = MCPServer("voice-agent-test-crm")


@crm.tool(name="crm___lookup_customer", description="Finds a customer by id.")
async def lookup_customer(customer_id: str) -> dict:
    started = time.time()
    record_call("lookup_customer", {"customer_id": customer_id}, started)
    return {"customer_id": customer_id, "name": "Ada Lovelace", "tier": "gold"}


@crm.tool(name="get_weather", description="The weather where a customer lives.")
async def crm_weather(city: str) -> dict:
    started = time.time()
    record_call("crm_get_weather", {"city": city}, started)
    return {"city": city, "source": "crm", "temperature_c": 5}


def verify_sigv4(method, path, query, headers, body, secret):
    """Recomputes an AWS SigV4 signature from the request and compares it."""
    auth = headers.get("authorization", "")
    fields = dict(
        part.strip().split("=", 1) for part in auth[len("AWS4-HMAC-SHA256 "):].split(",") if "=" in part
    )
    _key_id, date, region, service, _terminator = fields["Credential"].split("/")
    signed = fields["SignedHeaders"].split(";")
    canonical_headers = "".join(f"{name}:{' '.join(headers.get(name, '').split())}\n" for name in signed)
    pairs = sorted(parse_qsl(query, keep_blank_values=True))
    canonical_query = "&".join(f"{quote(k, safe='-_.~')}={quote(v, safe='-_.~')}" for k, v in pairs)
    payload = headers.get("x-amz-content-sha256") or hashlib.sha256(body).hexdigest()
    canonical = "\n".join(
        [method, quote(path, safe="/-_.~"), canonical_query, canonical_headers, ";".join(signed), payload]
    )
    scope = f"{date}/{region}/{service}/aws4_request"
    to_sign = "\n".join(
        ["AWS4-HMAC-SHA256", headers.get("x-amz-date", ""), scope, hashlib.sha256(canonical.encode()).hexdigest()]
    )
    key = ("AWS4" + secret).encode()
    for part in (date, region, service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    expected = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    return {"valid": hmac.compare_digest(expected, fields["Signature"]), "region": region, "service": service}


class Recorder:
    """ASGI middleware: records every MCP request and serves the /_test endpoints."""

    def __init__(self, app, sigv4_secret):
        self.app = app
        self.sigv4_secret = sigv4_secret

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = scope["path"]
        if path in ("/_test/requests", "/_test/calls"):
            data = json.dumps(REQUESTS if path == "/_test/requests" else CALLS).encode()
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-type", b"application/json")]})
            await send({"type": "http.response.body", "body": data})
            return
        body = b""
        more = True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        entry = {"method": scope["method"], "path": path, "authorization": headers.get("authorization")}
        if headers.get("authorization", "").startswith("AWS4-HMAC-SHA256 "):
            query = scope.get("query_string", b"").decode()
            try:
                entry["sigv4"] = verify_sigv4(scope["method"], path, query, headers, body, self.sigv4_secret)
            except (KeyError, ValueError) as error:
                entry["sigv4"] = {"valid": False, "error": str(error)}
        try:
            rpc = json.loads(body) if body else None
        except ValueError:
            rpc = None
        if isinstance(rpc, dict):
            entry["rpc"] = rpc.get("method")
        if isinstance(rpc, dict) and rpc.get("method") == "tools/call":
            # What the client sent as request metadata, as it arrived on the wire.
            entry["tool_meta"] = (rpc.get("params") or {}).get("_meta")
        REQUESTS.append(entry)
        delivered = False

        async def replay():
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--json-response", action="store_true", help="answer with JSON instead of SSE")
    parser.add_argument("--sigv4-secret", default="", help="secret key to check SigV4 signatures with")
    parser.add_argument("--toolset", choices=["gateway", "crm"], default="gateway", help="which tools to serve")
    args = parser.parse_args()
    chosen = crm if args.toolset == "crm" else server
    app = chosen.streamable_http_app(json_response=args.json_response)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    # Listening before announcing: a client that connects at once is queued, not refused.
    sock.listen(128)
    port = sock.getsockname()[1]
    print(json.dumps({"url": f"http://127.0.0.1:{port}/mcp"}), flush=True)
    config = uvicorn.Config(Recorder(app, args.sigv4_secret), log_level="warning")
    asyncio.run(uvicorn.Server(config).serve(sockets=[sock]))


if __name__ == "__main__":
    sys.exit(main())
