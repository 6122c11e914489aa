//! The MCP client for one tool server: rmcp's streamable-HTTP transport over reqwest, with every
//! request authenticated by [`Authenticator`] (rmcp adds bearer tokens itself; SigV4 headers
//! are computed over the exact body rmcp sends).

use std::collections::HashMap;
use std::sync::Arc;

use futures::stream::BoxStream;
use http::{HeaderName, HeaderValue};
use rmcp::model::{CallToolRequestParams, CallToolResult, ClientJsonRpcMessage, RequestMetaObject, Tool};
use rmcp::service::RunningService;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::{
    StreamableHttpClient, StreamableHttpClientTransportConfig, StreamableHttpError, StreamableHttpPostResponse,
    StreamableHttpResponseLimits,
};
use rmcp::{RoleClient, ServiceExt};
use sse_stream::{Error as SseError, Sse};

use super::auth::Authenticator;

/// Requests one process may have in flight to one server; the per-session limit on tool calls
/// keeps each conversation's share small.
const MAX_CONCURRENT_REQUESTS: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum McpError {
    #[error("cannot connect to the MCP server at {url}: {message}")]
    Connect { url: String, message: String },
    #[error("MCP request failed: {0}")]
    Request(String),
}

/// An initialized MCP session with one tool server.
pub struct McpClient {
    service: RunningService<RoleClient, ()>,
}

impl McpClient {
    pub async fn connect(url: &str, auth: Arc<Authenticator>) -> Result<Self, McpError> {
        let http = reqwest::Client::builder().build().map_err(|e| McpError::Connect {
            url: url.to_owned(),
            message: e.to_string(),
        })?;
        let mut config = StreamableHttpClientTransportConfig::with_uri(url);
        config.max_concurrent_requests = MAX_CONCURRENT_REQUESTS;
        let transport = StreamableHttpClientTransport::with_client(AuthenticatedClient { http, auth }, config);
        let service = ().serve(transport).await.map_err(|e| McpError::Connect {
            url: url.to_owned(),
            message: e.to_string(),
        })?;
        Ok(Self { service })
    }

    /// Every tool, following pagination.
    pub async fn list_tools(&self) -> Result<Vec<Tool>, McpError> {
        self.service
            .list_all_tools()
            .await
            .map_err(|e| McpError::Request(e.to_string()))
    }

    pub async fn call(
        &self,
        name: &str,
        arguments: serde_json::Map<String, serde_json::Value>,
        meta: Option<serde_json::Map<String, serde_json::Value>>,
    ) -> Result<CallToolResult, McpError> {
        let mut params = CallToolRequestParams::new(name.to_owned());
        params.arguments = Some(arguments);
        params.meta = meta.map(RequestMetaObject::from);
        self.service
            .call_tool(params)
            .await
            .map_err(|e| McpError::Request(e.to_string()))
    }
}

/// reqwest with per-request authentication.
#[derive(Clone)]
struct AuthenticatedClient {
    http: reqwest::Client,
    auth: Arc<Authenticator>,
}

impl AuthenticatedClient {
    async fn authenticate(
        &self,
        method: &str,
        uri: &str,
        body: &[u8],
        custom_headers: &mut HashMap<HeaderName, HeaderValue>,
    ) -> Result<Option<String>, StreamableHttpError<reqwest::Error>> {
        let (bearer, headers) = self
            .auth
            .headers(method, uri, body)
            .await
            .map_err(|e| StreamableHttpError::Io(std::io::Error::other(e.to_string())))?;
        custom_headers.extend(headers);
        Ok(bearer)
    }
}

fn body_of(message: &ClientJsonRpcMessage) -> Result<Vec<u8>, StreamableHttpError<reqwest::Error>> {
    // The same serialization reqwest's `.json()` performs, so a signature covers the real body.
    serde_json::to_vec(message).map_err(StreamableHttpError::Deserialize)
}

impl StreamableHttpClient for AuthenticatedClient {
    type Error = reqwest::Error;

    async fn post_message(
        &self,
        uri: Arc<str>,
        message: ClientJsonRpcMessage,
        session_id: Option<Arc<str>>,
        _auth_header: Option<String>,
        mut custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> Result<StreamableHttpPostResponse, StreamableHttpError<Self::Error>> {
        let bearer = self
            .authenticate("POST", &uri, &body_of(&message)?, &mut custom_headers)
            .await?;
        self.http
            .post_message(uri, message, session_id, bearer, custom_headers)
            .await
    }

    async fn post_message_with_max_sse_event_size(
        &self,
        uri: Arc<str>,
        message: ClientJsonRpcMessage,
        session_id: Option<Arc<str>>,
        _auth_header: Option<String>,
        mut custom_headers: HashMap<HeaderName, HeaderValue>,
        max_sse_event_size: usize,
    ) -> Result<StreamableHttpPostResponse, StreamableHttpError<Self::Error>> {
        let bearer = self
            .authenticate("POST", &uri, &body_of(&message)?, &mut custom_headers)
            .await?;
        self.http
            .post_message_with_max_sse_event_size(uri, message, session_id, bearer, custom_headers, max_sse_event_size)
            .await
    }

    async fn post_message_with_response_limits(
        &self,
        uri: Arc<str>,
        message: ClientJsonRpcMessage,
        session_id: Option<Arc<str>>,
        _auth_header: Option<String>,
        mut custom_headers: HashMap<HeaderName, HeaderValue>,
        limits: StreamableHttpResponseLimits,
    ) -> Result<StreamableHttpPostResponse, StreamableHttpError<Self::Error>> {
        let bearer = self
            .authenticate("POST", &uri, &body_of(&message)?, &mut custom_headers)
            .await?;
        self.http
            .post_message_with_response_limits(uri, message, session_id, bearer, custom_headers, limits)
            .await
    }

    async fn delete_session(
        &self,
        uri: Arc<str>,
        session_id: Arc<str>,
        _auth_header: Option<String>,
        mut custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> Result<(), StreamableHttpError<Self::Error>> {
        let bearer = self.authenticate("DELETE", &uri, b"", &mut custom_headers).await?;
        self.http.delete_session(uri, session_id, bearer, custom_headers).await
    }

    async fn get_stream(
        &self,
        uri: Arc<str>,
        session_id: Option<Arc<str>>,
        last_event_id: Option<String>,
        _auth_header: Option<String>,
        mut custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> Result<BoxStream<'static, Result<Sse, SseError>>, StreamableHttpError<Self::Error>> {
        let bearer = self.authenticate("GET", &uri, b"", &mut custom_headers).await?;
        self.http
            .get_stream(uri, session_id, last_event_id, bearer, custom_headers)
            .await
    }

    async fn get_stream_with_max_sse_event_size(
        &self,
        uri: Arc<str>,
        session_id: Option<Arc<str>>,
        last_event_id: Option<String>,
        _auth_header: Option<String>,
        mut custom_headers: HashMap<HeaderName, HeaderValue>,
        max_sse_event_size: usize,
    ) -> Result<BoxStream<'static, Result<Sse, SseError>>, StreamableHttpError<Self::Error>> {
        let bearer = self.authenticate("GET", &uri, b"", &mut custom_headers).await?;
        self.http
            .get_stream_with_max_sse_event_size(
                uri,
                session_id,
                last_event_id,
                bearer,
                custom_headers,
                max_sse_event_size,
            )
            .await
    }
}
