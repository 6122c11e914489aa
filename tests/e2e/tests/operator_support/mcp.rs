//! The MCP test server of the agent's tool tests (`tests/mcp/tool_server.py`, the official
//! Python SDK over streamable HTTP) as a process on loopback, for suites that check what the
//! operator learns from tool servers.

use std::net::SocketAddr;
use std::process::Stdio;

use anyhow::{Context as _, anyhow};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::{Child, Command};
use voice_e2e::workspace;

/// A running MCP server, killed when dropped.
pub struct McpServer {
    _child: Child,
    pub url: String,
    addr: SocketAddr,
}

impl McpServer {
    /// Starts the server with the named tool set (`gateway` or `crm`).
    pub async fn start(toolset: &str) -> anyhow::Result<Self> {
        let python = std::env::var("VOICE_AGENTS_TEST_PYTHON")
            .context("VOICE_AGENTS_TEST_PYTHON is not set: run the tests with `make test` (or export it)")?;
        let script = workspace::root().join("tests/mcp/tool_server.py");
        let mut child = Command::new(python)
            .arg(script)
            .args(["--toolset", toolset])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .context("start the MCP server")?;
        let stdout = child.stdout.take().context("stdout")?;
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).await?;
        let announced: Value = serde_json::from_str(&line).with_context(|| format!("MCP server said {line:?}"))?;
        let url = announced["url"]
            .as_str()
            .ok_or_else(|| anyhow!("no url in {line:?}"))?
            .to_owned();
        let addr = url
            .trim_start_matches("http://")
            .trim_end_matches("/mcp")
            .parse()
            .with_context(|| format!("address of {url}"))?;
        Ok(Self {
            _child: child,
            url,
            addr,
        })
    }

    /// Every MCP request the server received: method and `Authorization` header.
    pub async fn requests(&self) -> anyhow::Result<Vec<Value>> {
        let (status, body) = voice_e2e::http::get(self.addr, "/_test/requests").await?;
        anyhow::ensure!(status == 200, "GET /_test/requests: {status}");
        Ok(serde_json::from_str(&body)?)
    }
}
