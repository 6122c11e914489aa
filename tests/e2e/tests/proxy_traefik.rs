//! Calls through a real proxy: Traefik serves the operator's HTTPRoute and, separately, its
//! Ingress, over TLS from a Secret, in front of real agents running the configuration the
//! operator rendered. Through both: a `wss://` conversation is held through a silence longer
//! than Traefik's default read timeout, on the entry point set up as documented and on one with
//! Traefik's defaults (which, measured, do not cut an upgraded connection), the drain close
//! (1012) reaches the caller through the proxy, and `Origin` and `X-Forwarded-For` reach the
//! agent, whose per-IP limit counts the real client, not the proxy. And the one setting the
//! operator renders for Traefik matters: without `router.tls`, an Ingress with TLS is served
//! over plain HTTP only.
//!
//! The agents are real pods on the real node (`TestCluster::real_node`), from the image built
//! here, behind the operator the chart installed as a pod; Traefik runs on the node's host and
//! dials the pods' IPs from their EndpointSlices, as in a cluster. The Gateway API CRDs are
//! installed after the operator pod started: the operator picks them up while running.
//!
//! `cargo test -p voice-e2e --test proxy_traefik -- --ignored` (needs root: see
//! tests/cluster/README.md, "The real node").

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kube::Api;
use kube::api::DeleteParams;
use tokio::net::TcpSocket;
use tokio_tungstenite::Connector;
use tokio_tungstenite::tungstenite;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use voice_e2e::cluster::REAL_NODE_HOST_IP;
use voice_e2e::command::pipe;
use voice_e2e::conversation::{self, Socket};
use voice_e2e::traefik::{GATEWAY_CONTROLLER, INGRESS_CONTROLLER, Traefik};
use voice_e2e::wait::{WAIT, eventually};
use voice_e2e::{TestNamespace, crds, node};

/// Host names of the HTTPRoute and of the Ingress; the certificate is made for them.
const ROUTE_HOST: &str = "voice.e2e.test";
const INGRESS_HOST: &str = "ingress.e2e.test";
/// Host of an Ingress whose user annotation turns off the operator's Traefik TLS setting.
const PLAIN_HOST: &str = "plain.e2e.test";
const ORIGIN: &str = "https://app.e2e.test";
/// Longer than Traefik's default entry point read deadline (60 s).
const SILENCE: Duration = Duration::from_secs(70);
/// Handshakes per client IP per minute the agents allow.
const PER_IP: usize = 3;
const TURN: Duration = Duration::from_secs(20);

/// The VoiceAgents, on the real node: `routed` behind the Gateway, `ingressed` behind the
/// Ingress. Traefik dials the pods from the node's address, the one proxy they trust.
fn voice_agent(name: &str, expose: &str) -> String {
    format!(
        r#"apiVersion: voiceagent.dev/v1alpha1
kind: VoiceAgent
metadata: {{name: {name}}}
spec:
  imagePullPolicy: Never
  model: {{provider: Simulated}}
  session: {{idleTimeout: 3m, drainTimeout: 2s}}
  auth: {{allowedOrigins: ["{ORIGIN}"]}}
  limits: {{handshakesPerMinute: {PER_IP}, trustedProxies: [{REAL_NODE_HOST_IP}/32]}}
  resources: {{requests: {{cpu: 50m, memory: 64Mi}}, limits: {{memory: 256Mi}}}}
  pod: {pod}
  expose:
{expose}"#,
        pod = node::voice_agent_pod_yaml()
    )
}

/// Traefik's classes, the Gateway with one HTTPS listener per entry point, and the
/// certificate Secret.
fn proxy_objects(ns: &str, class: &str, traefik: &Traefik, cert: &rcgen::CertifiedKey<rcgen::KeyPair>) -> String {
    use base64::Engine as _;
    let b64 = |s: String| base64::engine::general_purpose::STANDARD.encode(s);
    let listener = |name: &str, addr: SocketAddr| {
        format!(
            "  - name: {name}\n    port: {}\n    protocol: HTTPS\n    hostname: {ROUTE_HOST}\n    tls:\n      mode: Terminate\n      certificateRefs: [{{name: voice-tls}}]\n",
            addr.port()
        )
    };
    format!(
        r#"apiVersion: v1
kind: Secret
metadata: {{name: voice-tls, namespace: {ns}}}
type: kubernetes.io/tls
data:
  tls.crt: {crt}
  tls.key: {key}
---
apiVersion: networking.k8s.io/v1
kind: IngressClass
metadata: {{name: {class}}}
spec: {{controller: {INGRESS_CONTROLLER}}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {{name: {class}}}
spec: {{controllerName: {GATEWAY_CONTROLLER}}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: public, namespace: {ns}}}
spec:
  gatewayClassName: {class}
  listeners:
{calls}{defaults}"#,
        crt = b64(cert.cert.pem()),
        key = b64(cert.signing_key.serialize_pem()),
        calls = listener("calls", traefik.calls),
        defaults = listener("defaults", traefik.defaults),
    )
}

async fn apply(ns: &TestNamespace, yaml: &str) {
    pipe(ns.kubectl().args(["apply", "-f", "-"]), yaml)
        .await
        .expect("kubectl apply");
}

/// Waits for VoiceAgent `name`'s one pod to be Ready; returns its name.
async fn ready_pod(ns: &TestNamespace, name: &str) -> String {
    let pod = node::ready_pods(ns, name, 1).await.remove(0);
    pod.metadata.name.expect("a pod name")
}

/// A `wss://<host>/ws` handshake through `entry`, from the local address `from`.
async fn connect(
    entry: SocketAddr,
    host: &str,
    from: Ipv4Addr,
    origin: &str,
    root: &rustls::pki_types::CertificateDer<'static>,
) -> Result<Socket, tungstenite::Error> {
    connect_with("wss", entry, host, from, origin, root).await
}

/// The same with the URL scheme `scheme` (`ws`: no TLS).
async fn connect_with(
    scheme: &str,
    entry: SocketAddr,
    host: &str,
    from: Ipv4Addr,
    origin: &str,
    root: &rustls::pki_types::CertificateDer<'static>,
) -> Result<Socket, tungstenite::Error> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(IpAddr::V4(from), 0))?;
    let tcp = socket.connect(entry).await?;
    let mut request = format!("{scheme}://{host}/ws").into_client_request()?;
    request.headers_mut().insert(
        "Origin",
        origin
            .parse()
            .map_err(|_| tungstenite::Error::Url(tungstenite::error::UrlError::NoHostName))?,
    );
    let mut roots = rustls::RootCertStore::empty();
    roots.add(root.clone()).expect("root");
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = Connector::Rustls(Arc::new(config));
    let (ws, _) = tokio_tungstenite::client_async_tls_with_config(request, tcp, None, Some(connector)).await?;
    Ok(ws)
}

/// The HTTP status of a refused handshake (101 when accepted).
fn status(result: Result<Socket, tungstenite::Error>) -> u16 {
    conversation::handshake_status(&result).unwrap_or_else(|e| panic!("{e}"))
}

/// One typed turn: the agent answers with a complete response.
async fn turn(ws: &mut Socket, text: &str) -> Result<(), conversation::Ended> {
    conversation::turn(ws, text, TURN).await
}

/// The close code the agent's drain sends, as the caller sees it.
async fn close_code(ws: &mut Socket) -> Option<CloseCode> {
    conversation::close_code(ws, TURN).await
}

#[tokio::test]
#[ignore = "needs the local cluster with the real node (root; tests/cluster/README.md) and Traefik (tests/cluster/build-traefik)"]
async fn calls_through_traefik_outlast_its_timeouts_drain_cleanly_and_name_the_real_client() {
    let (cluster, _) = node::platform().await;
    crds::install_gateway_api_crds(cluster).await.expect("Gateway API CRDs");
    let ns = node::restricted_namespace(cluster, "proxy-traefik").await;
    let class = format!("traefik-{}", ns.name());
    let cert =
        rcgen::generate_simple_self_signed(vec![ROUTE_HOST.to_owned(), INGRESS_HOST.to_owned()]).expect("certificate");
    let root = cert.cert.der().clone();

    let traefik = Traefik::start(cluster.kubeconfig_path(), ns.name(), &class)
        .await
        .expect("Traefik starts");
    apply(&ns, &proxy_objects(ns.name(), &class, &traefik, &cert)).await;
    apply(
        &ns,
        &voice_agent(
            "routed",
            &format!("    gateway: {{parentRefs: [{{name: public}}], hostnames: [{ROUTE_HOST}]}}"),
        ),
    )
    .await;
    apply(
        &ns,
        &voice_agent(
            "ingressed",
            &format!("    ingress: {{className: {class}, host: {INGRESS_HOST}, tls: {{secretName: voice-tls}}}}"),
        ),
    )
    .await;
    let routed = ready_pod(&ns, "routed").await;
    let ingressed = ready_pod(&ns, "ingressed").await;
    // The operator pod detected Traefik behind both (from the GatewayClass and the
    // IngressClass): no route timeouts, which Traefik does not implement.
    // The operator pod may have started before the Gateway API CRDs: it picks them up within
    // its discovery interval and then creates the route.
    let routes: Api<voice_operator::gateway_api::HTTPRoute> = ns.api();
    let route = eventually("the operator's HTTPRoute", node::POD_WAIT, || async {
        Ok(routes.get_opt("routed").await?)
    })
    .await
    .unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(route.spec.rules[0].timeouts, None);
    // An Ingress's `tls` only hands Traefik the certificate; the router serves HTTPS because
    // the operator says so (without it, every wss:// handshake below gets a 404).
    let ingresses: Api<k8s_openapi::api::networking::v1::Ingress> = ns.api();
    let ingress = ingresses.get("ingressed").await.expect("Ingress");
    assert_eq!(
        ingress
            .metadata
            .annotations
            .unwrap_or_default()
            .get("traefik.ingress.kubernetes.io/router.tls")
            .map(String::as_str),
        Some("true")
    );

    // Without the operator's `router.tls` (here overridden by the user's annotation) Traefik
    // serves the Ingress over plain HTTP only: once it serves `ws://`, `wss://` fails.
    apply(
        &ns,
        &voice_agent(
            "plain",
            &format!(
                "    ingress: {{className: {class}, host: {PLAIN_HOST}, tls: {{secretName: voice-tls}}, annotations: {{traefik.ingress.kubernetes.io/router.tls: \"false\"}}}}"
            ),
        ),
    )
    .await;
    ready_pod(&ns, "plain").await;
    eventually("Traefik to serve the plain Ingress", WAIT, || async {
        let served = connect_with(
            "ws",
            traefik.calls,
            PLAIN_HOST,
            Ipv4Addr::new(127, 0, 0, 8),
            ORIGIN,
            &root,
        )
        .await
        .is_ok();
        Ok(served.then_some(()))
    })
    .await
    .unwrap_or_else(|e| panic!("{e:#}\n{}", traefik.process.log_tail(40)));
    // No TLS router for the host: Traefik answers the TLS handshake with its own default
    // certificate (which no client trusts), or with a 404 once past it.
    match connect(traefik.calls, PLAIN_HOST, Ipv4Addr::new(127, 0, 0, 9), ORIGIN, &root).await {
        Ok(_) => panic!("Traefik served wss:// for an Ingress without router.tls"),
        Err(tungstenite::Error::Http(response)) => assert_eq!(response.status().as_u16(), 404),
        Err(err) => assert!(err.to_string().contains("certificate"), "{err}"),
    }
    ns.kubectl_ok(["delete", "voiceagent", "plain", "--wait=false"])
        .await
        .expect("plain agent deleted");

    // Both exposures at once (each agent keeps its own per-IP counts), so the silence is
    // waited out once.
    tokio::join!(
        check_exposure("HTTPRoute", ROUTE_HOST, &ns, "routed", &routed, &traefik, &root),
        check_exposure("Ingress", INGRESS_HOST, &ns, "ingressed", &ingressed, &traefik, &root),
    );
    drop(traefik);
    // The classes are cluster-scoped: the namespace's deletion does not take them.
    voice_e2e::command::run_ok(
        cluster
            .kubectl()
            .args(["delete", "--ignore-not-found"])
            .arg(format!("ingressclass/{class}"))
            .arg(format!("gatewayclass/{class}")),
    )
    .await
    .expect("classes deleted");
}

/// Everything the issue asks of one exposure, through Traefik.
async fn check_exposure(
    exposure: &str,
    host: &str,
    ns: &TestNamespace,
    agent: &str,
    pod: &str,
    traefik: &Traefik,
    root: &rustls::pki_types::CertificateDer<'static>,
) {
    // Traefik picks the route up from the apiserver.
    eventually(&format!("Traefik to serve the {exposure}"), WAIT, || async {
        let ok = connect(traefik.calls, host, Ipv4Addr::new(127, 0, 0, 2), ORIGIN, root)
            .await
            .is_ok();
        Ok(ok.then_some(()))
    })
    .await
    .unwrap_or_else(|e| panic!("{e:#}\n{}", traefik.process.log_tail(40)));

    // Origin reaches the agent: a foreign page is refused by the agent, through the proxy.
    let foreign = connect(
        traefik.calls,
        host,
        Ipv4Addr::new(127, 0, 0, 3),
        "https://evil.e2e.test",
        root,
    )
    .await;
    assert_eq!(status(foreign), 403, "{exposure}: foreign Origin");

    // X-Forwarded-For reaches the agent: the per-IP limit counts the caller, not Traefik.
    let caller = Ipv4Addr::new(127, 0, 0, 4);
    let mut kept = Vec::new();
    for n in 0..PER_IP {
        let ws = connect(traefik.calls, host, caller, ORIGIN, root).await;
        assert!(
            ws.is_ok(),
            "{exposure}: handshake {n} of {caller} refused: {:?}",
            ws.err()
        );
        kept.push(ws);
    }
    assert_eq!(
        status(connect(traefik.calls, host, caller, ORIGIN, root).await),
        429,
        "{exposure}: {caller} over its limit"
    );
    let other_caller = connect(traefik.calls, host, Ipv4Addr::new(127, 0, 0, 5), ORIGIN, root).await;
    assert_eq!(
        status(other_caller),
        101,
        "{exposure}: another caller behind the same proxy"
    );
    drop(kept);

    // A conversation through each entry point, then a silence longer than Traefik's default
    // read timeout (60 s) and the agents' default idle timeout (45 s; these agents have 3 min).
    let mut ours = connect(traefik.calls, host, Ipv4Addr::new(127, 0, 0, 6), ORIGIN, root)
        .await
        .expect("handshake on the configured entry point");
    let mut default = connect(traefik.defaults, host, Ipv4Addr::new(127, 0, 0, 7), ORIGIN, root)
        .await
        .expect("handshake on the default entry point");
    turn(&mut ours, "Hello before the silence").await.expect("first turn");
    turn(&mut default, "Hello before the silence")
        .await
        .expect("first turn (defaults)");
    let silent = Instant::now();
    tokio::time::sleep(SILENCE).await;
    turn(&mut ours, "Still there?").await.unwrap_or_else(|e| {
        panic!(
            "{exposure}: the call did not survive {:?} of silence: {e}",
            silent.elapsed()
        )
    });
    // Traefik applies `readTimeout` to reading a request; once the connection is upgraded
    // (hijacked from Go's HTTP server, which clears the read deadline) it no longer applies, so
    // the default entry point holds the call too, as docs/gateway-api.md says. Should a Traefik
    // upgrade make this fail (traefik#13820 reports 60 s cuts in 3.7), the entry point setting
    // documented there becomes necessary, and the docs must say so.
    turn(&mut default, "Still there?").await.unwrap_or_else(|e| {
        panic!(
            "{exposure}: Traefik's default entry point cut a WebSocket after {:?} of silence: {e}",
            silent.elapsed()
        )
    });

    // Drain: the pod is deleted (a node drain, a scale-down); the agent's 1012 reaches the
    // caller through the proxy, and the next call reaches the replacement pod through it.
    let pods: Api<k8s_openapi::api::core::v1::Pod> = ns.api();
    pods.delete(pod, &DeleteParams::default())
        .await
        .unwrap_or_else(|e| panic!("{exposure}: deleting pod {pod}: {e}"));
    assert_eq!(
        close_code(&mut ours).await,
        Some(CloseCode::Restart),
        "{exposure}: drain close"
    );
    let replacement = ready_pod(ns, agent).await;
    assert_ne!(replacement, pod, "{exposure}: a new pod");
    eventually(
        &format!("{exposure}: a call through Traefik to the replacement pod"),
        WAIT,
        || async {
            let Ok(mut ws) = connect(traefik.calls, host, Ipv4Addr::new(127, 0, 0, 10), ORIGIN, root).await else {
                return Ok(None);
            };
            Ok(turn(&mut ws, "Hello again").await.ok())
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e:#}\n{}", traefik.process.log_tail(40)));
}
