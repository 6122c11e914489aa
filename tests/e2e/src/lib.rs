//! What the end-to-end suites (`tests/*.rs`) and the benchmark (`bench/`) share, one concern
//! per module:
//!
//! * [`cluster`]: the local Kubernetes control plane and a namespace per test;
//! * [`conversation`]: a WebSocket caller of the agent (connect, typed turns, close codes);
//! * [`crds`]: the CRDs the suites install into it;
//! * [`command`]: running `kubectl`, `helm` and the other tools, bounded;
//! * [`workspace`]: the workspace root, the chart, the agent and operator binaries, test tools;
//! * [`process`]: a binary under test as a child process with an HTTP endpoint;
//! * [`http`]: a bare `GET` to such an endpoint;
//! * [`metrics`]: reading what it serves on `/metrics`;
//! * [`node`]: the real node's images and machine-side checks;
//! * [`wait`]: bounded polling (`eventually`);
//! * [`voiceagent`]: waiting on a VoiceAgent's status;
//! * [`writes`]: counting a ServiceAccount's writes on the apiserver's side;
//! * [`traefik`]: Traefik as the cluster's Gateway API and Ingress proxy.
//!
//! [`cluster`], [`crds`] and [`voiceagent`] need kube, k8s-openapi and the operator's types,
//! behind the default feature `cluster`; the benchmark, which drives its own cluster with
//! kubectl, goes without them.

#[cfg(feature = "cluster")]
pub mod cluster;
pub mod command;
pub mod conversation;
#[cfg(feature = "cluster")]
pub mod crds;
pub mod http;
pub mod metrics;
#[cfg(feature = "cluster")]
pub mod node;
pub mod process;
pub mod traefik;
#[cfg(feature = "cluster")]
pub mod voiceagent;
pub mod wait;
pub mod workspace;
pub mod writes;

#[cfg(feature = "cluster")]
pub use cluster::{ServiceAccountKubeconfig, TestCluster, TestNamespace};
