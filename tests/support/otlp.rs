//! An OTLP/HTTP trace receiver for tests: a plain HTTP/1.1 listener on 127.0.0.1 that decodes
//! the `ExportTraceServiceRequest` protobuf bodies exporters post to it and keeps their spans
//! and resource attributes. Shared by the agent's and the operator's trace suites (included
//! with `#[path]`, since they live in different crates).

#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message as _;
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// The largest export accepted; a batch of spans is far smaller.
const MAX_EXPORT_BYTES: usize = 16 * 1024 * 1024;

#[derive(Default)]
pub struct Received {
    pub spans: Vec<Span>,
    /// Resource attributes of the exporting process, as text.
    pub resource: HashMap<String, String>,
}

/// Starts a receiver; returns its endpoint (for `OTEL_EXPORTER_OTLP_ENDPOINT`) and what it got.
pub async fn otlp_receiver() -> (String, Arc<Mutex<Received>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let endpoint = format!("http://{}", listener.local_addr().expect("addr"));
    let received = Arc::new(Mutex::new(Received::default()));
    let store = received.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            tokio::spawn(serve_exports(BufReader::new(tcp), store.clone()));
        }
    });
    (endpoint, received)
}

/// Answers the HTTP/1.1 requests of one connection, keeping what they export.
async fn serve_exports(mut reader: BufReader<TcpStream>, store: Arc<Mutex<Received>>) {
    loop {
        let mut length = 0usize;
        let mut line = String::new();
        loop {
            line.clear();
            if reader.read_line(&mut line).await.unwrap_or(0) == 0 {
                return;
            }
            if line == "\r\n" {
                break;
            }
            if let Some((name, value)) = line.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = value.trim().parse().unwrap_or(0);
            }
        }
        if length > MAX_EXPORT_BYTES {
            return;
        }
        let mut body = vec![0u8; length];
        if reader.read_exact(&mut body).await.is_err() {
            return;
        }
        if let Ok(request) = ExportTraceServiceRequest::decode(body.as_slice())
            && let Ok(mut store) = store.lock()
        {
            for resource_spans in request.resource_spans {
                for kv in resource_spans.resource.into_iter().flat_map(|r| r.attributes) {
                    store.resource.insert(kv.key.clone(), text(&kv));
                }
                for scope in resource_spans.scope_spans {
                    store.spans.extend(scope.spans);
                }
            }
        }
        let reply = "HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\n\r\n";
        if reader.get_mut().write_all(reply.as_bytes()).await.is_err() {
            return;
        }
    }
}

/// An attribute's value as text.
pub fn text(kv: &KeyValue) -> String {
    match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
        Some(AnyValue::StringValue(s)) => s.clone(),
        Some(AnyValue::IntValue(i)) => i.to_string(),
        Some(AnyValue::BoolValue(b)) => b.to_string(),
        Some(AnyValue::DoubleValue(d)) => d.to_string(),
        _ => String::new(),
    }
}

pub fn attribute(span: &Span, key: &str) -> Option<String> {
    span.attributes.iter().find(|kv| kv.key == key).map(text)
}

/// Trace and span ids in their usual lowercase hex form.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
