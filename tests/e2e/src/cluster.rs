//! A local Kubernetes control plane for end-to-end tests.
//!
//! [`TestCluster::shared`] starts the cluster from `tests/cluster/up` the
//! first time a test process asks for it (building the binaries if the cache
//! is empty) and attaches to it when it is already running, so a whole
//! `cargo test` run — every test in every test binary — shares one cluster.
//! The cluster is left running afterwards so the next run starts in a second;
//! `tests/cluster/down` stops it.
//!
//! Each test takes its own namespace:
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use voice_e2e::cluster::TestCluster;
//! let ns = TestCluster::shared().await.namespace("my-test").await;
//! let pods: kube::Api<k8s_openapi::api::core::v1::Pod> = ns.api();
//! let out = ns.kubectl().args(["get", "pods"]).output().await?;
//! # let _ = (pods, out); Ok(()) }
//! ```
//!
//! The namespace is deleted when the [`TestNamespace`] is dropped, unless the
//! test is panicking (a failed assertion): then it is kept, with its name
//! printed, so the objects can be inspected with `kubectl`. Setting
//! `VOICE_AGENTS_E2E_KEEP_NAMESPACES=1` keeps every namespace. All test
//! namespaces carry the label [`NAMESPACE_LABEL`]`=true`, so leftovers can be
//! removed with `kubectl delete ns -l voice-agents.dev/e2e=true`.
//!
//! Environment:
//! * `VOICE_AGENTS_E2E_KUBECONFIG`: use this kubeconfig instead of starting the
//!   local cluster (nothing is started or stopped then);
//!   `VOICE_AGENTS_E2E_BIN_DIR` may name the directory holding `kubectl` and
//!   `helm` for it (otherwise they are taken from `PATH`).
//! * `VOICE_AGENTS_E2E_UP_TIMEOUT`: seconds to wait for `tests/cluster/up`
//!   (default 3600, which covers a first build of the binaries).
//! * Everything `tests/cluster/up` reads (`VOICE_AGENTS_CLUSTER_DIR`,
//!   `VOICE_AGENTS_CACHE`, ...), see `tests/cluster/README.md`.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};
use base64::Engine as _;
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config, Resource};
use serde_json::json;
use tokio::process::Command;
use tokio::sync::OnceCell;

use crate::command::run_ok;
use crate::wait::eventually_every;

/// Label put on every namespace made by [`TestCluster::namespace`].
pub const NAMESPACE_LABEL: &str = "voice-agents.dev/e2e";

const ENV_KUBECONFIG: &str = "VOICE_AGENTS_E2E_KUBECONFIG";
const ENV_BIN_DIR: &str = "VOICE_AGENTS_E2E_BIN_DIR";
const ENV_UP_TIMEOUT: &str = "VOICE_AGENTS_E2E_UP_TIMEOUT";
const ENV_KEEP_NAMESPACES: &str = "VOICE_AGENTS_E2E_KEEP_NAMESPACES";

static SHARED: OnceCell<TestCluster> = OnceCell::const_new();
static REAL_NODE: OnceCell<TestCluster> = OnceCell::const_new();

/// The label of the real node (`VOICE_AGENTS_CLUSTER_REAL_NODE=1` in `tests/cluster/up`).
pub const REAL_NODE_LABEL: (&str, &str) = ("voice-agents.dev/node", "real");
/// The taint that keeps every pod but those that tolerate it off the real node.
pub const REAL_NODE_TAINT: &str = "voice-agents.dev/real-node";
/// The real node's address on the harness's bridge: pods reach the machine there, so servers a
/// test runs for pods (a Bedrock fake, an MCP server) listen on it.
pub const REAL_NODE_HOST_IP: std::net::Ipv4Addr = std::net::Ipv4Addr::new(10, 213, 0, 1);

/// A running cluster: where its kubeconfig is and where its tools are.
///
/// It holds no [`Client`]: clients are tied to the Tokio runtime that made
/// them and every `#[tokio::test]` has its own runtime, so each call to
/// [`TestCluster::client`] or [`TestCluster::namespace`] builds a new one.
#[derive(Debug)]
pub struct TestCluster {
    kubeconfig_path: PathBuf,
    kubeconfig: Kubeconfig,
    bin_dir: Option<PathBuf>,
    state_dir: Option<PathBuf>,
}

impl TestCluster {
    /// The cluster shared by this test process, started on first use.
    ///
    /// # Panics
    /// When the cluster cannot be started or reached; the message says why.
    /// Use [`TestCluster::try_shared`] to handle that instead.
    pub async fn shared() -> &'static TestCluster {
        match Self::try_shared().await {
            Ok(cluster) => cluster,
            Err(err) => panic!("cannot get the test cluster: {err:#}"),
        }
    }

    /// The cluster shared by this test process, started on first use.
    pub async fn try_shared() -> anyhow::Result<&'static TestCluster> {
        SHARED.get_or_try_init(|| Self::start_or_attach(false)).await
    }

    /// The cluster with the real node (kubelet, containerd, kube-proxy), started on first use:
    /// a cluster of its own (`tests/cluster/up` with `VOICE_AGENTS_CLUSTER_REAL_NODE=1`), so the
    /// kwok-only cluster of the other suites is left alone. With
    /// `VOICE_AGENTS_E2E_KUBECONFIG` set, that cluster is used and must have a node labelled
    /// [`REAL_NODE_LABEL`] and tainted [`REAL_NODE_TAINT`].
    ///
    /// # Panics
    /// When the cluster cannot be started or reached; the message says why.
    pub async fn real_node() -> &'static TestCluster {
        match REAL_NODE.get_or_try_init(|| Self::start_or_attach(true)).await {
            Ok(cluster) => cluster,
            Err(err) => panic!("cannot get the test cluster with the real node: {err:#}"),
        }
    }

    async fn start_or_attach(real_node: bool) -> anyhow::Result<TestCluster> {
        if let Some(path) = std::env::var_os(ENV_KUBECONFIG) {
            let bin_dir = std::env::var_os(ENV_BIN_DIR).map(PathBuf::from);
            return Self::from_kubeconfig(PathBuf::from(path), bin_dir, None);
        }
        let up = cluster_scripts_dir().join("up");
        let timeout = match std::env::var(ENV_UP_TIMEOUT) {
            Ok(v) => Duration::from_secs(
                v.parse()
                    .with_context(|| format!("{ENV_UP_TIMEOUT}={v:?} is not a number of seconds"))?,
            ),
            Err(_) => Duration::from_secs(3600),
        };
        // up prints its progress on stderr (left visible: a first build takes
        // minutes) and only `export` lines on stdout.
        let child = Command::new(&up)
            .env("VOICE_AGENTS_CLUSTER_REAL_NODE", if real_node { "1" } else { "0" })
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot run {}", up.display()))?;
        let output = tokio::time::timeout(timeout, child.wait_with_output())
            .await
            .map_err(|_| anyhow!("{} did not finish within {timeout:?}", up.display()))?
            .with_context(|| format!("waiting for {}", up.display()))?;
        if !output.status.success() {
            bail!("{} failed ({}); its messages are above", up.display(), output.status);
        }
        let stdout = String::from_utf8(output.stdout).context("output of up is not UTF-8")?;
        let exports = parse_exports(&stdout)?;
        let kubeconfig = exports
            .get("KUBECONFIG")
            .ok_or_else(|| anyhow!("{} printed no KUBECONFIG export:\n{stdout}", up.display()))?;
        let kubeconfig = PathBuf::from(kubeconfig);
        let state_dir = kubeconfig
            .parent()
            .map(Path::to_path_buf)
            .ok_or_else(|| anyhow!("kubeconfig path {} has no parent", kubeconfig.display()))?;
        let env = read_env_file(&state_dir.join("cluster.env"))?;
        let bin_dir = env.get("BIN_DIR").map(PathBuf::from);
        Self::from_kubeconfig(kubeconfig, bin_dir, Some(state_dir))
    }

    fn from_kubeconfig(
        kubeconfig_path: PathBuf,
        bin_dir: Option<PathBuf>,
        state_dir: Option<PathBuf>,
    ) -> anyhow::Result<TestCluster> {
        let kubeconfig = Kubeconfig::read_from(&kubeconfig_path)
            .with_context(|| format!("reading kubeconfig {}", kubeconfig_path.display()))?;
        Ok(TestCluster {
            kubeconfig_path,
            kubeconfig,
            bin_dir,
            state_dir,
        })
    }

    /// The cluster-admin kubeconfig.
    pub fn kubeconfig_path(&self) -> &Path {
        &self.kubeconfig_path
    }

    /// The directory with the cluster's binaries (`kubectl`, `helm`, ...), if
    /// the cluster was started by `tests/cluster/up`.
    pub fn bin_dir(&self) -> Option<&Path> {
        self.bin_dir.as_deref()
    }

    /// The state directory (logs, certificates) of a cluster started by
    /// `tests/cluster/up`.
    pub fn state_dir(&self) -> Option<&Path> {
        self.state_dir.as_deref()
    }

    /// A new cluster-admin client (for the calling test's runtime).
    pub async fn client(&self) -> anyhow::Result<Client> {
        client_for(self.kubeconfig.clone()).await
    }

    /// `PATH` with the cluster's binaries first.
    pub fn path_env(&self) -> OsString {
        let current = std::env::var_os("PATH").unwrap_or_default();
        match &self.bin_dir {
            None => current,
            Some(dir) => {
                let mut parts = vec![dir.clone()];
                parts.extend(std::env::split_paths(&current));
                std::env::join_paths(parts).unwrap_or(current)
            }
        }
    }

    /// A command for one of the cluster's tools (`kubectl`, `helm`, `kwok`,
    /// ...) with `KUBECONFIG` set to the admin kubeconfig and [`Self::path_env`]
    /// as `PATH`.
    pub fn command(&self, tool: &str) -> Command {
        let program = match &self.bin_dir {
            Some(dir) if dir.join(tool).is_file() => dir.join(tool),
            _ => PathBuf::from(tool),
        };
        let mut cmd = Command::new(program);
        cmd.env("KUBECONFIG", &self.kubeconfig_path)
            .env("PATH", self.path_env())
            .stdin(Stdio::null())
            .kill_on_drop(true);
        cmd
    }

    /// `kubectl` as cluster admin.
    pub fn kubectl(&self) -> Command {
        self.command("kubectl")
    }

    /// `helm` as cluster admin.
    pub fn helm(&self) -> Command {
        self.command("helm")
    }

    /// A fresh namespace named `<prefix>-<random>` with an admin client.
    ///
    /// # Panics
    /// When the namespace cannot be created.
    pub async fn namespace(&'static self, prefix: &str) -> TestNamespace {
        match self.try_namespace(prefix).await {
            Ok(ns) => ns,
            Err(err) => panic!("cannot create a test namespace: {err:#}"),
        }
    }

    /// A fresh namespace named `<prefix>-<random>` with an admin client.
    pub async fn try_namespace(&'static self, prefix: &str) -> anyhow::Result<TestNamespace> {
        let client = self.client().await?;
        let name = namespace_name(prefix);
        let ns = Namespace {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                labels: Some([(NAMESPACE_LABEL.to_owned(), "true".to_owned())].into()),
                ..ObjectMeta::default()
            },
            ..Namespace::default()
        };
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &ns)
            .await
            .with_context(|| format!("creating namespace {name}"))?;
        // Pods are refused until the namespace has its default ServiceAccount.
        let sas = Api::<ServiceAccount>::namespaced(client.clone(), &name);
        eventually_every(
            &format!("the default ServiceAccount of namespace {name}"),
            Duration::from_secs(60),
            Duration::from_millis(100),
            || async { Ok(sas.get_opt("default").await?.map(|_| ())) },
        )
        .await?;
        Ok(TestNamespace {
            name,
            client,
            cluster: self,
            keep: env_flag(ENV_KEEP_NAMESPACES),
        })
    }

    /// Creates (if needed) the ServiceAccount `namespace/name` and returns a
    /// kubeconfig that authenticates as it with a token from the TokenRequest
    /// API, valid for `ttl` (the API server enforces at least 10 minutes).
    ///
    /// The account gets no permissions here: bind Roles to
    /// `system:serviceaccount:<namespace>:<name>` to grant exactly what the
    /// code under test needs.
    pub async fn service_account_kubeconfig(
        &self,
        namespace: &str,
        name: &str,
        ttl: Duration,
    ) -> anyhow::Result<ServiceAccountKubeconfig> {
        let client = self.client().await?;
        let sas = Api::<ServiceAccount>::namespaced(client, namespace);
        if sas.get_opt(name).await?.is_none() {
            let sa = ServiceAccount {
                metadata: ObjectMeta {
                    name: Some(name.to_owned()),
                    ..ObjectMeta::default()
                },
                ..ServiceAccount::default()
            };
            match sas.create(&PostParams::default(), &sa).await {
                Ok(_) => {}
                // Someone else created it meanwhile: fine.
                Err(kube::Error::Api(status)) if status.code == 409 => {}
                Err(err) => {
                    return Err(err).with_context(|| format!("creating ServiceAccount {namespace}/{name}"));
                }
            }
        }
        let request = TokenRequest {
            spec: Some(TokenRequestSpec {
                expiration_seconds: Some(i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX)),
                ..TokenRequestSpec::default()
            }),
            ..TokenRequest::default()
        };
        let issued = sas
            .create_token_request(name, &PostParams::default(), &request)
            .await
            .with_context(|| format!("requesting a token for ServiceAccount {namespace}/{name}"))?;
        let token = issued
            .status
            .and_then(|s| s.token)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| anyhow!("TokenRequest for {namespace}/{name} returned no token"))?;

        let (server, ca_data) = self.current_cluster()?;
        let user = format!("system:serviceaccount:{namespace}:{name}");
        let kubeconfig_json = json!({
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{
                "name": "voice-agents-test",
                "cluster": { "server": server, "certificate-authority-data": ca_data },
            }],
            "users": [{ "name": user, "user": { "token": token } }],
            "contexts": [{
                "name": "voice-agents-test",
                "context": { "cluster": "voice-agents-test", "user": user, "namespace": namespace },
            }],
            "current-context": "voice-agents-test",
        });
        // JSON is valid YAML, so kubectl, helm and kube all read this file.
        let text = serde_json::to_string_pretty(&kubeconfig_json)?;
        let kubeconfig = Kubeconfig::from_yaml(&text).context("parsing the generated kubeconfig")?;
        let path = std::env::temp_dir().join(format!(
            "voice-e2e-{namespace}-{name}-{}.kubeconfig",
            uuid::Uuid::new_v4().simple()
        ));
        write_private_file(&path, text.as_bytes())?;
        Ok(ServiceAccountKubeconfig {
            path,
            kubeconfig,
            token,
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            path_env: self.path_env(),
            bin_dir: self.bin_dir.clone(),
        })
    }

    /// Server URL and CA data of the admin kubeconfig's current context.
    fn current_cluster(&self) -> anyhow::Result<(String, String)> {
        let kc = &self.kubeconfig;
        let context_name = kc
            .current_context
            .as_deref()
            .ok_or_else(|| anyhow!("kubeconfig has no current-context"))?;
        let cluster_name = kc
            .contexts
            .iter()
            .find(|c| c.name == context_name)
            .and_then(|c| c.context.as_ref())
            .map(|c| c.cluster.clone())
            .ok_or_else(|| anyhow!("kubeconfig has no context {context_name}"))?;
        let cluster = kc
            .clusters
            .iter()
            .find(|c| c.name == cluster_name)
            .and_then(|c| c.cluster.as_ref())
            .ok_or_else(|| anyhow!("kubeconfig has no cluster {cluster_name}"))?;
        let server = cluster
            .server
            .clone()
            .ok_or_else(|| anyhow!("cluster {cluster_name} has no server"))?;
        let ca_data = match (&cluster.certificate_authority_data, &cluster.certificate_authority) {
            (Some(data), _) => data.clone(),
            (None, Some(file)) => {
                let pem = std::fs::read(file).with_context(|| format!("reading CA file {file}"))?;
                base64::engine::general_purpose::STANDARD.encode(pem)
            }
            (None, None) => bail!("cluster {cluster_name} has no certificate authority"),
        };
        Ok((server, ca_data))
    }
}

/// A namespace owned by one test, with an admin client.
///
/// Dropping it deletes the namespace (without waiting), unless the thread is
/// panicking or `VOICE_AGENTS_E2E_KEEP_NAMESPACES=1` is set.
pub struct TestNamespace {
    name: String,
    client: Client,
    cluster: &'static TestCluster,
    keep: bool,
}

impl std::fmt::Debug for TestNamespace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestNamespace")
            .field("name", &self.name)
            .field("keep", &self.keep)
            .finish_non_exhaustive()
    }
}

impl TestNamespace {
    /// The namespace's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A cluster-admin client.
    pub fn client(&self) -> Client {
        self.client.clone()
    }

    /// The cluster this namespace lives in.
    pub fn cluster(&self) -> &'static TestCluster {
        self.cluster
    }

    /// An [`Api`] for a namespaced resource in this namespace.
    pub fn api<K>(&self) -> Api<K>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        <K as Resource>::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), &self.name)
    }

    /// `kubectl --namespace <this>` as cluster admin.
    pub fn kubectl(&self) -> Command {
        let mut cmd = self.cluster.kubectl();
        cmd.arg("--namespace").arg(&self.name);
        cmd
    }

    /// Runs `kubectl --namespace <this> ARGS`, failing unless it exits 0, and
    /// returns its stdout.
    pub async fn kubectl_ok<I, S>(&self, args: I) -> anyhow::Result<String>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        run_ok(self.kubectl().args(args)).await
    }

    /// [`TestCluster::service_account_kubeconfig`] in this namespace, with a
    /// one-hour token.
    pub async fn service_account_kubeconfig(&self, name: &str) -> anyhow::Result<ServiceAccountKubeconfig> {
        self.cluster
            .service_account_kubeconfig(&self.name, name, Duration::from_secs(3600))
            .await
    }

    /// Keeps the namespace after the test (for debugging).
    pub fn keep(&mut self) {
        self.keep = true;
    }
}

impl Drop for TestNamespace {
    fn drop(&mut self) {
        if self.keep {
            eprintln!("voice-e2e: keeping namespace {}", self.name);
            return;
        }
        if std::thread::panicking() {
            eprintln!(
                "voice-e2e: test failed; keeping namespace {} for inspection (KUBECONFIG={})",
                self.name,
                self.cluster.kubeconfig_path.display()
            );
            return;
        }
        // Drop cannot await, and the test's runtime may be shutting down, so
        // use a plain kubectl process. --wait=false: the namespace controller
        // finishes the deletion in the background.
        let program = match &self.cluster.bin_dir {
            Some(dir) => dir.join("kubectl"),
            None => PathBuf::from("kubectl"),
        };
        let result = std::process::Command::new(program)
            .env("KUBECONFIG", &self.cluster.kubeconfig_path)
            .args(["delete", "namespace", &self.name, "--wait=false", "--ignore-not-found"])
            .args(["--request-timeout=20s"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .output();
        match result {
            Ok(out) if out.status.success() => {}
            Ok(out) => eprintln!(
                "voice-e2e: deleting namespace {} failed: {}",
                self.name,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
            Err(err) => eprintln!("voice-e2e: cannot run kubectl to delete namespace {}: {err}", self.name),
        }
    }
}

/// A kubeconfig that authenticates as a ServiceAccount with a bound token.
/// The file is removed when this is dropped.
pub struct ServiceAccountKubeconfig {
    path: PathBuf,
    kubeconfig: Kubeconfig,
    token: String,
    namespace: String,
    name: String,
    path_env: OsString,
    bin_dir: Option<PathBuf>,
}

impl std::fmt::Debug for ServiceAccountKubeconfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceAccountKubeconfig")
            .field("path", &self.path)
            .field("namespace", &self.namespace)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl ServiceAccountKubeconfig {
    /// The kubeconfig file (its context's namespace is the account's).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The bearer token.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// `system:serviceaccount:<namespace>:<name>`.
    pub fn username(&self) -> String {
        format!("system:serviceaccount:{}:{}", self.namespace, self.name)
    }

    /// A client acting as the ServiceAccount.
    pub async fn client(&self) -> anyhow::Result<Client> {
        client_for(self.kubeconfig.clone()).await
    }

    /// `kubectl` acting as the ServiceAccount.
    pub fn kubectl(&self) -> Command {
        let program = match &self.bin_dir {
            Some(dir) => dir.join("kubectl"),
            None => PathBuf::from("kubectl"),
        };
        let mut cmd = Command::new(program);
        cmd.env("KUBECONFIG", &self.path)
            .env("PATH", &self.path_env)
            .stdin(Stdio::null())
            .kill_on_drop(true);
        cmd
    }
}

impl Drop for ServiceAccountKubeconfig {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

async fn client_for(kubeconfig: Kubeconfig) -> anyhow::Result<Client> {
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .context("loading kubeconfig")?;
    Client::try_from(config).context("building a Kubernetes client")
}

fn cluster_scripts_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../cluster")
}

fn env_flag(name: &str) -> bool {
    matches!(std::env::var(name).as_deref(), Ok("1" | "true" | "yes"))
}

/// `<prefix>-<8 random hex>`, cut to a valid DNS label (63 characters).
fn namespace_name(prefix: &str) -> String {
    let mut clean: String = prefix
        .chars()
        .map(|c| c.to_ascii_lowercase())
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    clean.truncate(50);
    let clean = clean.trim_matches('-');
    let clean = if clean.is_empty() { "test" } else { clean };
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    format!("{clean}-{}", &suffix[..8])
}

/// Parses `export NAME=VALUE` lines where VALUE is bare or single-quoted the
/// way `tests/cluster/up` writes it.
fn parse_exports(text: &str) -> anyhow::Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let Some(rest) = line.trim().strip_prefix("export ") else {
            continue;
        };
        let (name, raw) = rest
            .split_once('=')
            .ok_or_else(|| anyhow!("malformed export line: {line}"))?;
        out.insert(name.to_owned(), shell_unquote(raw)?);
    }
    Ok(out)
}

/// Undoes POSIX shell quoting made of single-quoted runs and backslash
/// escapes (`'a'\''b'` is `a'b`).
fn shell_unquote(raw: &str) -> anyhow::Result<String> {
    let mut out = String::new();
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' => loop {
                match chars.next() {
                    Some('\'') => break,
                    Some(c) => out.push(c),
                    None => bail!("unterminated quote in {raw}"),
                }
            },
            '\\' => match chars.next() {
                Some(c) => out.push(c),
                None => bail!("trailing backslash in {raw}"),
            },
            c => out.push(c),
        }
    }
    Ok(out)
}

/// Reads a `KEY=VALUE` file (as written by `tests/cluster/up`).
fn read_env_file(path: &Path) -> anyhow::Result<BTreeMap<String, String>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(text
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.to_owned()))
        .collect())
}

fn write_private_file(path: &Path, data: &[u8]) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    file.write_all(data)
        .with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unquotes_what_up_prints() {
        let exports =
            parse_exports("export KUBECONFIG='/tmp/x y/admin.kubeconfig'\nexport PATH='/a/b:/c'\\''d'\nnoise\n")
                .expect("parses");
        assert_eq!(exports["KUBECONFIG"], "/tmp/x y/admin.kubeconfig");
        assert_eq!(exports["PATH"], "/a/b:/c'd");
        assert_eq!(shell_unquote("plain").expect("bare"), "plain");
        assert!(shell_unquote("'open").is_err());
    }

    #[test]
    fn namespace_names_are_dns_labels() {
        let name = namespace_name("My_Test::Case");
        assert!(name.starts_with("my-test--case-"), "{name}");
        let long = namespace_name(&"x".repeat(100));
        assert!(long.len() <= 63, "{long}");
        assert!(namespace_name("--").starts_with("test-"));
        assert!(
            name.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        );
    }
}
