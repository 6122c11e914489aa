//! A fake of Amazon Bedrock's `InvokeModelWithBidirectionalStream` for Nova Sonic, speaking the
//! real wire protocol (HTTP/2 over TLS, SigV4-signed event-stream envelopes), so the NovaSonic
//! provider is exercised through the real AWS SDK without an AWS account. Served by this crate's
//! `fake-bedrock` binary, a development tool that is not part of the agent; see docs/bedrock.md.
//!
//! Control endpoints on the same port: `GET /_fake/streams` (what each stream received),
//! `POST /_fake/faults` (make the next streams fail), `POST /_fake/reset`.

mod framing;
mod record;
mod session;

pub use record::frame_digest;
pub use session::{Limits, REPLY_STAMP_BYTES, REPLY_STAMP_MAGIC, reply_stamp};

use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_smithy_eventstream::frame::{DecodedFrame, MessageFrameDecoder};
use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde::Deserialize;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::time::{Instant, sleep_until};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use framing::Inbound;
use record::{StreamData, StreamRecord};
use session::{Exception, FakeStream};

/// Response frames queued per stream; the SDK reads promptly, this only smooths bursts.
const RESPONSE_QUEUE: usize = 64;
/// Largest control request body.
const MAX_CONTROL_BODY: usize = 64 * 1024;

type Body = BoxBody<Bytes, Infallible>;

/// A failure injected into upcoming streams.
#[derive(Debug, Clone, Deserialize)]
pub struct Fault {
    /// `throttling`, `service_unavailable`, `internal`, `access_denied`, `not_found`,
    /// `validation`, `model_timeout` or `model_stream_error`.
    pub fault: String,
    /// How many streams it applies to (default 1).
    #[serde(default = "one")]
    pub count: u32,
    /// When set, the stream opens normally and fails this many milliseconds later; otherwise
    /// the request itself is refused.
    #[serde(default)]
    pub after_ms: Option<u64>,
}

fn one() -> u32 {
    1
}

pub struct FakeBedrock {
    limits: Limits,
    records: Mutex<Vec<StreamRecord>>,
    faults: Mutex<VecDeque<Fault>>,
    next_id: AtomicU64,
    next_connection: AtomicU64,
}

/// Where the fake listens and how clients reach it.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub url: String,
    /// The PEM certificate clients must trust (TLS mode).
    pub ca_file: Option<PathBuf>,
}

impl FakeBedrock {
    pub fn new(limits: Limits) -> Arc<Self> {
        Arc::new(Self {
            limits,
            records: Mutex::new(Vec::new()),
            faults: Mutex::new(VecDeque::new()),
            next_id: AtomicU64::new(1),
            next_connection: AtomicU64::new(1),
        })
    }

    /// Serves on `listener` until `shutdown`. With `tls`, a self-signed certificate for
    /// `localhost`, 127.0.0.1 and the listener's own address is generated and written to
    /// `ca_file`, and HTTP/2 is offered by ALPN as
    /// Bedrock does; without, plain HTTP/1.1 and h2c.
    pub async fn serve(
        self: Arc<Self>,
        listener: TcpListener,
        tls: Option<PathBuf>,
        shutdown: CancellationToken,
    ) -> std::io::Result<()> {
        let acceptor = match tls {
            Some(ca_file) => Some(tls_acceptor(&ca_file, listener.local_addr()?.ip())?),
            None => None,
        };
        loop {
            let (tcp, peer) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        warn!(%error, "accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
                () = shutdown.cancelled() => return Ok(()),
            };
            let fake = self.clone();
            let acceptor = acceptor.clone();
            let shutdown = shutdown.clone();
            let connection_id = self.next_connection.fetch_add(1, Ordering::Relaxed);
            let max_streams = self.limits.max_concurrent_streams;
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| {
                    let fake = fake.clone();
                    async move { Ok::<_, Infallible>(fake.handle(req, connection_id).await) }
                });
                let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                builder.http2().max_concurrent_streams(max_streams);
                let served = match acceptor {
                    Some(acceptor) => match acceptor.accept(tcp).await {
                        Ok(tls) => {
                            let connection = builder.serve_connection(TokioIo::new(tls), service);
                            tokio::select! { r = connection => r, () = shutdown.cancelled() => Ok(()) }
                        }
                        Err(error) => {
                            debug!(%peer, %error, "TLS handshake failed");
                            return;
                        }
                    },
                    None => {
                        let connection = builder.serve_connection(TokioIo::new(tcp), service);
                        tokio::select! { r = connection => r, () = shutdown.cancelled() => Ok(()) }
                    }
                };
                if let Err(error) = served {
                    debug!(%peer, %error, "connection ended with an error");
                }
            });
        }
    }

    async fn handle(self: Arc<Self>, req: Request<Incoming>, connection: u64) -> Response<Body> {
        let path = req.uri().path().to_owned();
        match (req.method().clone(), path.as_str()) {
            (Method::GET, "/_fake/streams") => {
                let records: Vec<_> = self.records().iter().map(StreamRecord::snapshot).collect();
                json_response(StatusCode::OK, &json!(records))
            }
            (Method::POST, "/_fake/faults") => match read_json::<Fault>(req).await {
                Ok(fault) => {
                    info!(?fault, "fault injected");
                    self.faults.lock().unwrap_or_else(|p| p.into_inner()).push_back(fault);
                    json_response(StatusCode::OK, &json!({"ok": true}))
                }
                Err(message) => json_response(StatusCode::BAD_REQUEST, &json!({"message": message})),
            },
            (Method::POST, "/_fake/reset") => {
                self.records.lock().unwrap_or_else(|p| p.into_inner()).clear();
                self.faults.lock().unwrap_or_else(|p| p.into_inner()).clear();
                json_response(StatusCode::OK, &json!({"ok": true}))
            }
            (Method::POST, p) if p.starts_with("/model/") && p.ends_with("/invoke-with-bidirectional-stream") => {
                self.stream(req, connection).await
            }
            _ => service_error(StatusCode::NOT_FOUND, "UnknownOperationException", "no such operation"),
        }
    }

    fn records(&self) -> Vec<StreamRecord> {
        self.records.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn take_fault(&self) -> Option<Fault> {
        let mut faults = self.faults.lock().unwrap_or_else(|p| p.into_inner());
        let fault = faults.front_mut()?;
        fault.count = fault.count.saturating_sub(1);
        let taken = fault.clone();
        if fault.count == 0 {
            faults.pop_front();
        }
        Some(taken)
    }

    async fn stream(self: Arc<Self>, req: Request<Incoming>, connection: u64) -> Response<Body> {
        let model_id = req
            .uri()
            .path()
            .trim_start_matches("/model/")
            .trim_end_matches("/invoke-with-bidirectional-stream")
            .replace("%3A", ":")
            .replace("%3a", ":");
        let (region, service) = credential_scope(req.headers().get("authorization"));
        if region.is_none() {
            return service_error(
                StatusCode::FORBIDDEN,
                "AccessDeniedException",
                "the request is not signed with SigV4",
            );
        }
        // Bedrock knows its models: the same table of Nova Sonic generations the agent checks.
        if voice_config::nova_generation(&model_id).is_err() {
            return service_error(
                StatusCode::NOT_FOUND,
                "ResourceNotFoundException",
                &format!("The provided model identifier {model_id} is invalid for this operation"),
            );
        }
        let fault = self.take_fault();
        if let Some(fault) = fault.as_ref().filter(|f| f.after_ms.is_none()) {
            let (status, code) = http_fault(&fault.fault);
            return service_error(status, code, &format!("injected fault: {}", fault.fault));
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let record = StreamRecord::new(StreamData {
            id,
            session_id: uuid::Uuid::new_v4().to_string(),
            model_id,
            region,
            service,
            signed: true,
            http_version: format!("{:?}", req.version()),
            connection,
            ..StreamData::default()
        });
        self.records
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(record.clone());
        let (tx, mut rx) = mpsc::channel::<Bytes>(RESPONSE_QUEUE);
        let fail_at = fault.and_then(|f| {
            f.after_ms
                .map(|ms| (Instant::now() + Duration::from_millis(ms), f.fault))
        });
        let completed = record.clone();
        let stream = FakeStream::new(self.limits, record, Instant::now());
        tokio::spawn(run_stream(
            req.into_body(),
            stream,
            tx,
            fail_at,
            self.limits.close_delay,
        ));
        // hyper polls the body to its end only while the client is there to receive it; a
        // stream the client reset or a connection that dropped has its body dropped instead.
        let frames = futures::stream::poll_fn(move |cx| {
            let next = rx.poll_recv(cx);
            if let std::task::Poll::Ready(None) = next {
                completed.response_completed();
            }
            next
        });
        let body = StreamBody::new(frames.map(|b| Ok(Frame::data(b))));
        Response::builder()
            .status(StatusCode::OK)
            .header("content-type", "application/vnd.amazon.eventstream")
            .header("x-amzn-requestid", uuid::Uuid::new_v4().to_string())
            .body(BodyExt::boxed(body))
            .unwrap_or_else(|_| Response::new(empty()))
    }
}

/// Reads the request's event stream and answers it, until either side ends.
async fn run_stream(
    mut body: Incoming,
    mut stream: FakeStream,
    tx: mpsc::Sender<Bytes>,
    fail_at: Option<(Instant, String)>,
    close_delay: Duration,
) {
    let mut decoder = MessageFrameDecoder::new();
    let mut buffer = BytesMut::new();
    let mut out = Vec::new();
    let mut input_ended = false;
    // Whether the client stopped reading the output. The input is read on regardless, as
    // Bedrock does: a client that ends its input cleanly and then closes (Strands sends
    // `promptEnd` and `connectionEnd`, then closes the stream) has closed cleanly even when
    // the output it no longer reads could not be delivered.
    let mut output_gone = false;
    let outcome: Result<(), Exception> = 'run: loop {
        let wake = match &fail_at {
            Some((at, _)) => stream.next_wakeup().min(*at),
            None => stream.next_wakeup(),
        };
        tokio::select! {
            frame = body.frame() => match frame {
                Some(Ok(frame)) => {
                    let Ok(data) = frame.into_data() else { continue };
                    buffer.extend_from_slice(&data);
                    loop {
                        match decoder.decode_frame(&mut buffer) {
                            Ok(DecodedFrame::Complete(message)) => match framing::unwrap_envelope(&message) {
                                Ok(Inbound::Event(json)) => {
                                    if let Err(e) = stream.on_event(&json, Instant::now(), &mut out) {
                                        break 'run Err(e);
                                    }
                                }
                                Ok(Inbound::End) => {
                                    stream.record.ended("client_closed");
                                    input_ended = true;
                                    break 'run Ok(());
                                }
                                Err(message) => break 'run Err(Exception { kind: "validationException", message }),
                            },
                            Ok(DecodedFrame::Incomplete) => break,
                            Err(e) => break 'run Err(Exception { kind: "validationException", message: e.to_string() }),
                        }
                    }
                }
                Some(Err(_)) | None => {
                    stream.record.ended("client_disconnected");
                    break Ok(());
                }
            },
            () = sleep_until(wake) => {
                if let Some((at, fault)) = &fail_at
                    && Instant::now() >= *at
                {
                    break Err(Exception { kind: stream_fault(fault), message: format!("injected fault: {fault}") });
                }
                if let Err(e) = stream.poll(Instant::now(), &mut out) {
                    break Err(e);
                }
            }
        }
        for event in out.drain(..) {
            if !output_gone && tx.send(framing::chunk(&event)).await.is_err() {
                output_gone = true;
            }
        }
    };
    for event in out.drain(..) {
        let _ = tx.send(framing::chunk(&event)).await;
    }
    if let Err(exception) = outcome {
        info!(kind = exception.kind, message = %exception.message, "stream answered with an exception");
        stream
            .record
            .ended(format!("{}: {}", exception.kind, exception.message));
        let _ = tx.send(framing::exception(exception.kind, &exception.message)).await;
    }
    if input_ended {
        tokio::time::sleep(close_delay).await;
    }
    // Dropping `tx` ends the response body.
}

fn http_fault(fault: &str) -> (StatusCode, &'static str) {
    match fault {
        "throttling" => (StatusCode::TOO_MANY_REQUESTS, "ThrottlingException"),
        "service_unavailable" => (StatusCode::SERVICE_UNAVAILABLE, "ServiceUnavailableException"),
        "access_denied" => (StatusCode::FORBIDDEN, "AccessDeniedException"),
        "not_found" => (StatusCode::NOT_FOUND, "ResourceNotFoundException"),
        "validation" => (StatusCode::BAD_REQUEST, "ValidationException"),
        "model_timeout" => (StatusCode::REQUEST_TIMEOUT, "ModelTimeoutException"),
        _ => (StatusCode::INTERNAL_SERVER_ERROR, "InternalServerException"),
    }
}

fn stream_fault(fault: &str) -> &'static str {
    match fault {
        "throttling" => "throttlingException",
        "service_unavailable" => "serviceUnavailableException",
        "validation" => "validationException",
        "model_timeout" => "modelTimeoutException",
        "model_stream_error" => "modelStreamErrorException",
        _ => "internalServerException",
    }
}

/// Region and service from `Authorization: AWS4-HMAC-SHA256 Credential=AKID/DATE/REGION/SERVICE/aws4_request, ...`.
fn credential_scope(header: Option<&hyper::header::HeaderValue>) -> (Option<String>, Option<String>) {
    let Some(value) = header.and_then(|h| h.to_str().ok()) else {
        return (None, None);
    };
    if !value.starts_with("AWS4-HMAC-SHA256 ") {
        return (None, None);
    }
    let scope = value
        .split([' ', ','])
        .find_map(|part| part.strip_prefix("Credential="))
        .map(|c| c.split('/').collect::<Vec<_>>());
    match scope.as_deref() {
        Some([_, _, region, service, "aws4_request"]) => (Some((*region).to_owned()), Some((*service).to_owned())),
        _ => (None, None),
    }
}

fn tls_acceptor(ca_file: &std::path::Path, local: std::net::IpAddr) -> std::io::Result<tokio_rustls::TlsAcceptor> {
    let mut names = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
    // Listening on a specific other address (e.g. a bridge that containers reach): clients
    // connect to that address, so the certificate names it too.
    if !local.is_loopback() && !local.is_unspecified() {
        names.push(local.to_string());
    }
    let certified = rcgen::generate_simple_self_signed(names).map_err(std::io::Error::other)?;
    std::fs::write(ca_file, certified.cert.pem())?;
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(certified.signing_key.serialize_der().into());
    let mut config =
        rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(std::io::Error::other)?
            .with_no_client_auth()
            .with_single_cert(vec![certified.cert.der().clone()], key)
            .map_err(std::io::Error::other)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

async fn read_json<T: for<'de> Deserialize<'de>>(req: Request<Incoming>) -> Result<T, String> {
    let body = http_body_util::Limited::new(req.into_body(), MAX_CONTROL_BODY)
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    serde_json::from_slice(&body).map_err(|e| e.to_string())
}

fn empty() -> Body {
    Full::new(Bytes::new()).boxed()
}

fn json_response(status: StatusCode, value: &serde_json::Value) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(value.to_string())).boxed())
        .unwrap_or_else(|_| Response::new(empty()))
}

/// A restJson1 error as Bedrock sends it: the type in `x-amzn-errortype`, a JSON message.
fn service_error(status: StatusCode, code: &str, message: &str) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .header("x-amzn-errortype", code)
        .body(Full::new(Bytes::from(json!({ "message": message }).to_string())).boxed())
        .unwrap_or_else(|_| Response::new(empty()))
}

/// Runs the fake as a program: prints where it listens as one JSON line on stdout.
pub async fn run(
    listen: SocketAddr,
    tls: bool,
    ca_file: Option<PathBuf>,
    limits: Limits,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let listener = TcpListener::bind(listen).await?;
    let local = listener.local_addr()?;
    let port = local.port();
    // Loopback or every address: announce the loopback name; a specific address: that one.
    let host = if local.ip().is_loopback() || local.ip().is_unspecified() {
        None
    } else {
        Some(local.ip().to_string())
    };
    let fake = FakeBedrock::new(limits);
    let (endpoint, tls_file) = if tls {
        let path = ca_file.unwrap_or_else(|| std::env::temp_dir().join(format!("fake-bedrock-{port}.pem")));
        (
            format!("https://{}:{port}", host.as_deref().unwrap_or("localhost")),
            Some(path),
        )
    } else {
        (
            format!("http://{}:{port}", host.as_deref().unwrap_or("127.0.0.1")),
            None,
        )
    };
    let serving = tokio::spawn(fake.serve(listener, tls_file.clone(), shutdown));
    // The certificate is written when serving starts; wait for it before announcing.
    if let Some(path) = &tls_file {
        for _ in 0..100 {
            if path.exists() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    println!("{}", json!({ "endpoint": endpoint, "ca_file": tls_file }));
    info!(%endpoint, "fake Bedrock listening");
    serving.await??;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_sigv4_credential_scope() {
        let header = hyper::header::HeaderValue::from_static(
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20261125/eu-north-1/bedrock/aws4_request, SignedHeaders=host, Signature=abc",
        );
        assert_eq!(
            credential_scope(Some(&header)),
            (Some("eu-north-1".to_owned()), Some("bedrock".to_owned()))
        );
        assert_eq!(credential_scope(None), (None, None));
        let basic = hyper::header::HeaderValue::from_static("Basic Zm9v");
        assert_eq!(credential_scope(Some(&basic)), (None, None));
    }
}
