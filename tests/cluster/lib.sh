# shellcheck shell=bash disable=SC2034 # variables here are used by the sourcing scripts
# Shared settings for tests/cluster/{build,up,down,smoke}. Sourced, not run.
#
# Environment (all optional):
#   VOICE_AGENTS_CACHE        root of the binary cache
#                             (default ${XDG_CACHE_HOME:-$HOME/.cache}/voice-agents)
#   VOICE_AGENTS_CLUSTER_DIR  state directory of one cluster (certs, kubeconfigs,
#                             logs, pids, etcd data)
#   VOICE_AGENTS_CLUSTER_NAME name used in the default state directory
#                             (default: a hash of this checkout's path)
#   VOICE_AGENTS_CLUSTER_REAL_NODE  1: the cluster with the real node (its
#                             default state directory ends in -node)
#   GO                        the go command (default: go on PATH, else /usr/local/go/bin/go)

CLUSTER_SCRIPTS="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
CLUSTER_GO_DIR="$CLUSTER_SCRIPTS/go"
REPO_ROOT="$(cd "$CLUSTER_SCRIPTS/../.." && pwd -P)"

log() { printf '[cluster] %s\n' "$*" >&2; }
die() {
	printf '[cluster] ERROR: %s\n' "$*" >&2
	exit 1
}

need() {
	local c
	for c in "$@"; do
		command -v "$c" >/dev/null 2>&1 || die "required command '$c' not found on PATH"
	done
}

find_go() {
	if [[ -n "${GO:-}" ]]; then
		printf '%s\n' "$GO"
	elif command -v go >/dev/null 2>&1; then
		command -v go
	elif [[ -x /usr/local/go/bin/go ]]; then
		printf '%s\n' /usr/local/go/bin/go
	else
		die "no Go toolchain found (set GO=/path/to/go); Go >= 1.26 is needed"
	fi
}

# mod_version DIR MODULE: the version of MODULE required by DIR/go.mod.
mod_version() {
	local v
	v="$(awk -v m="$2" '($1 == m) { print $2; exit } ($1 == "require" && $2 == m) { print $3; exit }' "$1/go.mod")"
	[[ -n "$v" ]] || die "cannot find $2 in $1/go.mod"
	printf '%s\n' "$v"
}

K8S_VERSION="$(mod_version "$CLUSTER_GO_DIR/k8s" k8s.io/kubernetes)"
ETCD_VERSION="$(mod_version "$CLUSTER_GO_DIR/etcd" go.etcd.io/etcd/server/v3)"
KWOK_VERSION="$(mod_version "$CLUSTER_GO_DIR/kwok" sigs.k8s.io/kwok)"
HELM_VERSION="$(mod_version "$CLUSTER_GO_DIR/helm" helm.sh/helm/v3)"

# The cache key names the four pinned versions plus a short hash of the
# go.sum files and of the build recipe, so a dependency bump or a change of
# build flags gets a fresh directory while unrelated edits reuse the old one.
BUILD_RECIPE_VERSION=1
_sum_hash="$(
	{
		echo "recipe $BUILD_RECIPE_VERSION"
		cat "$CLUSTER_GO_DIR"/{k8s,etcd,kwok,helm}/go.sum "$CLUSTER_GO_DIR/kwok/stages/main.go"
	} | sha256sum | cut -c1-10
)"
CACHE_ROOT="${VOICE_AGENTS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/voice-agents}"
CACHE_KEY="cluster-${K8S_VERSION}-etcd${ETCD_VERSION}-kwok${KWOK_VERSION}-helm${HELM_VERSION}-${_sum_hash}"
CACHE_DIR="$CACHE_ROOT/$CACHE_KEY"
BIN_DIR="$CACHE_DIR/bin"
SHARE_DIR="$CACHE_DIR/share"
BINARIES=(etcd kube-apiserver kube-controller-manager kube-scheduler kubectl kwok helm)

# Traefik (the real proxy of the e2e suites) has its own cache directory, so that adding or
# bumping it never rebuilds the control plane.
TRAEFIK_VERSION="$(mod_version "$CLUSTER_GO_DIR/traefik" github.com/traefik/traefik/v3)"
TRAEFIK_RECIPE_VERSION=1
_traefik_hash="$(
	{
		echo "recipe $TRAEFIK_RECIPE_VERSION"
		cat "$CLUSTER_GO_DIR/traefik/go.sum"
	} | sha256sum | cut -c1-10
)"
TRAEFIK_BIN_DIR="$CACHE_ROOT/traefik-${TRAEFIK_VERSION}-${_traefik_hash}/bin"
unset _traefik_hash

# k8s_version_ldflags: the -X flags that stamp K8S_VERSION into a Kubernetes binary; without
# them it reports v0.0.0-master, which breaks version checks in clients (helm's kubeVersion
# constraints, kubectl, the kubelet's registration).
k8s_version_ldflags() {
	local minor p
	minor="${K8S_VERSION#v*.}"
	minor="${minor%%.*}"
	for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
		printf -- '-X %s.gitVersion=%s -X %s.gitMajor=1 -X %s.gitMinor=%s -X %s.gitTreeState=clean -X %s.buildDate=1970-01-01T00:00:00Z ' \
			"$p" "$K8S_VERSION" "$p" "$p" "$minor" "$p" "$p"
	done
}

# The real node's binaries (kubelet, kube-proxy from the control plane's Kubernetes release, and
# the pod sandbox program) have their own cache directory too, keyed by the node module's go.sum
# and the sandbox program's source.
NODE_RECIPE_VERSION=1
_node_hash="$(
	{
		echo "recipe $NODE_RECIPE_VERSION"
		cat "$CLUSTER_GO_DIR/node/go.sum" "$CLUSTER_GO_DIR/node/pause/main.go"
	} | sha256sum | cut -c1-10
)"
NODE_BIN_DIR="$CACHE_ROOT/node-${K8S_VERSION}-${_node_hash}/bin"
NODE_BINARIES=(kubelet kube-proxy pause)
unset _node_hash

_checkout_hash="$(printf '%s' "$REPO_ROOT" | sha256sum | cut -c1-8)"
# A cluster with the real node (VOICE_AGENTS_CLUSTER_REAL_NODE=1) is a cluster of its own, so the
# suites that want one never restart the kwok-only cluster the others share.
_node_suffix=""
[[ "${VOICE_AGENTS_CLUSTER_REAL_NODE:-0}" == 1 ]] && _node_suffix="-node"
STATE_DIR="${VOICE_AGENTS_CLUSTER_DIR:-/tmp/voice-agents-cluster-${VOICE_AGENTS_CLUSTER_NAME:-$_checkout_hash}$_node_suffix}"
unset _node_suffix
unset _sum_hash _checkout_hash

# Components in start order; down stops them in reverse. The real node's components
# (NODE_COMPONENTS) run only in clusters started with VOICE_AGENTS_CLUSTER_REAL_NODE=1.
COMPONENTS=(etcd kube-apiserver kube-controller-manager kube-scheduler kwok)
NODE_COMPONENTS=(containerd kubelet kube-proxy)

# pid_alive PIDFILE BINARY: true when the pid in PIDFILE is a live process
# running BINARY (guards against a recycled pid).
pid_alive() {
	local pidfile="$1" bin="$2" pid exe
	[[ -f "$pidfile" ]] || return 1
	pid="$(<"$pidfile")"
	[[ "$pid" =~ ^[0-9]+$ ]] || return 1
	[[ -d "/proc/$pid" ]] || return 1
	exe="$(readlink "/proc/$pid/exe" 2>/dev/null || true)"
	# A zombie has no exe link; treat it as gone.
	[[ -n "$exe" ]] || return 1
	[[ "$(basename "${exe% (deleted)}")" == "$bin" ]]
}

# stop_process NAME: stops component NAME by its recorded pid: SIGTERM, up to
# 15 s to exit, then SIGKILL.
stop_process() {
	local c="$1" pidfile="$STATE_DIR/pids/$1.pid" pid deadline
	pid_alive "$pidfile" "$c" || return 0
	pid="$(<"$pidfile")"
	log "stopping $c (pid $pid)"
	kill -TERM "$pid" 2>/dev/null || true
	deadline=$((SECONDS + 15))
	while pid_alive "$pidfile" "$c"; do
		if ((SECONDS >= deadline)); then
			log "$c (pid $pid) did not exit within 15s of SIGTERM; sending SIGKILL"
			kill -KILL "$pid" 2>/dev/null || true
			sleep 1
			if pid_alive "$pidfile" "$c"; then
				die "$c (pid $pid) survived SIGKILL"
			fi
			break
		fi
		sleep 0.1
	done
}

# stop_cluster remove|keep-state: stops the components recorded in STATE_DIR one
# at a time in reverse start order (etcd last: an apiserver that loses etcd
# first hangs in shutdown), then removes STATE_DIR unless asked to keep it or
# VOICE_AGENTS_CLUSTER_KEEP_STATE=1. Callers hold the state lock.
stop_cluster() {
	local mode="$1" i
	if [[ -d "$STATE_DIR/node" ]]; then
		stop_node
	fi
	for ((i = ${#COMPONENTS[@]} - 1; i >= 0; i--)); do
		stop_process "${COMPONENTS[$i]}"
	done
	if [[ "$mode" == keep-state || "${VOICE_AGENTS_CLUSTER_KEEP_STATE:-0}" == 1 ]]; then
		rm -f "$STATE_DIR/cluster.env"
	else
		rm -rf "$STATE_DIR"
	fi
}

# stop_node: stops the real node (kube-proxy, kubelet, every container, containerd) and removes
# what it set up on this machine: mounts, pod cgroups, kube-proxy's and the harness's iptables
# rules, the bridge, and the kernel settings the kubelet changed. Callers hold the state lock.
stop_node() {
	local proxy="$NODE_BIN_DIR/kube-proxy" recorded
	recorded="$(sed -n 's/^NODE_BIN_DIR=//p' "$STATE_DIR/cluster.env" 2>/dev/null || true)"
	[[ -n "$recorded" ]] && proxy="$recorded/kube-proxy"
	stop_process kube-proxy
	stop_process kubelet
	node_stop_pods
	stop_process containerd
	if [[ -x "$proxy" ]]; then
		"$proxy" --cleanup >>"$STATE_DIR/logs/kube-proxy.log" 2>&1 || log "kube-proxy --cleanup failed (see its log)"
	fi
	node_unmount
	node_remove_cgroups
	node_network_down
	node_restore_sysctls
}

# shellcheck source=tests/cluster/node.sh
source "$CLUSTER_SCRIPTS/node.sh"
