# shellcheck shell=bash disable=SC2034 # variables here are used by the sourcing scripts
# The real node of the local cluster: containerd (Debian's, with its CRI plugin), a kubelet and
# kube-proxy built from the same Kubernetes module as the control plane, and CNI bridge
# networking. Sourced by up and down (after lib.sh), not run. See tests/cluster/README.md.
#
# Network: everything a pod can reach lives on one bridge the harness creates. The bridge holds
# NODE_HOST_IP (the node's address: the apiserver, the kubelet and any host-side test server
# bind there); pods get addresses from NODE_POD_CIDR and Services from NODE_SERVICE_CIDR. Pods
# have routes to those two ranges only (no default route), and the FORWARD rules of the chain
# VOICE-AGENTS-NODE drop anything a pod sends elsewhere, so nothing in a pod can reach beyond this
# machine. One real node per machine: the bridge and the address range are fixed.

NODE_NAME=va-node-0
NODE_BRIDGE=vanode0
NODE_HOST_IP=10.213.0.1
NODE_POD_CIDR=10.213.0.0/24
NODE_SERVICE_CIDR=10.213.16.0/24
NODE_SERVICE_IP=10.213.16.1
# Only pods that tolerate this taint run on the real node; everything else stays on kwok nodes.
NODE_TAINT_KEY=voice-agents.dev/real-node
NODE_LABEL=voice-agents.dev/node=real
NODE_CHAIN=VOICE-AGENTS-NODE
# Which cluster owns the real node (its state dir), so a second cluster cannot take the bridge.
NODE_OWNER_FILE=/run/voice-agents-real-node.owner
# The sandbox image containerd starts first in every pod (tests/cluster/go/node/pause).
PAUSE_IMAGE=localhost/voice-agents/pause:3.10
CNI_BIN_DIR=/usr/lib/cni
# Debian packages the node needs (installed by .ci/run when missing).
NODE_PACKAGES=(containerd runc containernetworking-plugins iptables conntrack)

# Kernel settings the kubelet changes when they differ from what it wants (vm.overcommit_memory,
# kernel.panic, ...), and ip_forward, which the bridge plugin turns on. Recorded at start and
# put back by down.
NODE_SYSCTLS=(net.ipv4.ip_forward vm.overcommit_memory vm.panic_on_oom kernel.panic kernel.panic_on_oops
	kernel.keys.root_maxkeys kernel.keys.root_maxbytes net.bridge.bridge-nf-call-iptables)

node_dir() { printf '%s\n' "$STATE_DIR/node"; }

node_requirements() {
	local c missing=()
	for c in containerd containerd-shim-runc-v2 runc iptables conntrack ip nsenter; do
		command -v "$c" >/dev/null 2>&1 || missing+=("$c")
	done
	[[ -x "$CNI_BIN_DIR/bridge" && -x "$CNI_BIN_DIR/host-local" && -x "$CNI_BIN_DIR/loopback" ]] ||
		missing+=("CNI plugins in $CNI_BIN_DIR")
	((${#missing[@]} == 0)) || die "the real node needs: ${missing[*]} (apt-get install ${NODE_PACKAGES[*]}; .ci/run does)"
	[[ "$(id -u)" == 0 ]] || die "the real node needs root (containers, mounts, network namespaces)"
	[[ -d /sys/fs/cgroup/memory || -f /sys/fs/cgroup/cgroup.controllers ]] || die "no memory cgroup controller is mounted"
}

# node_claim: takes the machine's real node for this cluster, clearing what a dead owner left.
node_claim() {
	local owner=""
	[[ -f "$NODE_OWNER_FILE" ]] && owner="$(<"$NODE_OWNER_FILE")"
	if [[ -n "$owner" && "$owner" != "$STATE_DIR" ]]; then
		if [[ -f "$owner/pids/kubelet.pid" ]] && pid_alive "$owner/pids/kubelet.pid" kubelet; then
			die "the real node is in use by the cluster in $owner; stop it first: VOICE_AGENTS_CLUSTER_DIR=$owner tests/cluster/down"
		fi
		log "clearing what the stopped real node of $owner left behind"
		node_network_down
	fi
	mkdir -p "$(dirname "$NODE_OWNER_FILE")"
	printf '%s\n' "$STATE_DIR" >"$NODE_OWNER_FILE"
}

node_save_sysctls() {
	local s v file
	file="$(node_dir)/sysctls"
	[[ -s "$file" ]] && return 0
	for s in "${NODE_SYSCTLS[@]}"; do
		v="$(sysctl -n "$s" 2>/dev/null)" || continue
		printf '%s=%s\n' "$s" "$v"
	done >"$file"
}

node_restore_sysctls() {
	local file line
	file="$(node_dir)/sysctls"
	[[ -f "$file" ]] || return 0
	while IFS= read -r line; do
		sysctl -q -w "$line" >/dev/null 2>&1 || log "could not restore $line"
	done <"$file"
}

# node_network_up: the bridge with the node address, the host route to Services, and the
# forwarding rules that keep pods inside.
node_network_up() {
	modprobe br_netfilter 2>/dev/null || true
	if ! ip link show "$NODE_BRIDGE" >/dev/null 2>&1; then
		ip link add "$NODE_BRIDGE" type bridge
	fi
	ip addr replace "$NODE_HOST_IP/${NODE_POD_CIDR#*/}" dev "$NODE_BRIDGE"
	ip link set "$NODE_BRIDGE" up
	# Traffic from this machine to a Service leaves through the bridge (kube-proxy's DNAT then
	# sends it to a pod or to the apiserver), never through a default route.
	ip route replace "$NODE_SERVICE_CIDR" dev "$NODE_BRIDGE" src "$NODE_HOST_IP"
	iptables -w -N "$NODE_CHAIN" 2>/dev/null || iptables -w -F "$NODE_CHAIN"
	iptables -w -A "$NODE_CHAIN" -s "$NODE_POD_CIDR" -d "$NODE_POD_CIDR" -j ACCEPT
	iptables -w -A "$NODE_CHAIN" -s "$NODE_POD_CIDR" -j DROP
	iptables -w -A "$NODE_CHAIN" -d "$NODE_POD_CIDR" -j DROP
	iptables -w -C FORWARD -j "$NODE_CHAIN" 2>/dev/null || iptables -w -I FORWARD 1 -j "$NODE_CHAIN"
	# Bridged pod-to-pod traffic passes iptables, so Service DNAT works between pods too.
	sysctl -q -w net.bridge.bridge-nf-call-iptables=1 >/dev/null 2>&1 || true
}

# The chains the kubelet itself adds (kube-proxy --cleanup removes kube-proxy's).
KUBELET_CHAINS=(KUBE-FIREWALL KUBE-KUBELET-CANARY KUBE-IPTABLES-HINT)

# node_remove_kubelet_chains: removes KUBELET_CHAINS and the rules jumping to them, in every
# table, for IPv4 and IPv6.
node_remove_kubelet_chains() {
	local cmd table chain rule
	for cmd in iptables ip6tables; do
		command -v "$cmd" >/dev/null 2>&1 || continue
		for table in filter nat mangle; do
			for chain in "${KUBELET_CHAINS[@]}"; do
				while read -r rule; do
					# shellcheck disable=SC2086 # a rule is a list of arguments
					"$cmd" -w -t "$table" -D ${rule#-A } 2>/dev/null || true
				done < <("$cmd-save" -t "$table" 2>/dev/null | grep -E -- "^-A [A-Z]+ .*-j $chain\$" || true)
				"$cmd" -w -t "$table" -F "$chain" 2>/dev/null || true
				"$cmd" -w -t "$table" -X "$chain" 2>/dev/null || true
			done
		done
	done
}

node_network_down() {
	node_remove_kubelet_chains
	if ip link show "$NODE_BRIDGE" >/dev/null 2>&1; then
		ip link del "$NODE_BRIDGE" || log "could not delete the bridge $NODE_BRIDGE"
	fi
	ip route del "$NODE_SERVICE_CIDR" 2>/dev/null || true
	while iptables -w -D FORWARD -j "$NODE_CHAIN" 2>/dev/null; do :; done
	iptables -w -F "$NODE_CHAIN" 2>/dev/null || true
	iptables -w -X "$NODE_CHAIN" 2>/dev/null || true
	rm -f "$NODE_OWNER_FILE"
}

# node_write_configs: containerd, CNI, kubelet and kube-proxy configuration under node_dir.
node_write_configs() {
	local d
	d="$(node_dir)"
	mkdir -p "$d"/{containerd/root,containerd/state,containerd/opt,cni,ipam,kubelet,kubelet-pki,pod-logs}
	cat >"$d/containerd.toml" <<EOF
# Written by tests/cluster/up: a containerd of its own for the real test node.
version = 2
root = "$d/containerd/root"
state = "$d/containerd/state"
disabled_plugins = ["io.containerd.grpc.v1.introspection.v1"]
[grpc]
  address = "$d/containerd/containerd.sock"
[ttrpc]
  address = "$d/containerd/containerd.sock.ttrpc"
[debug]
  level = "warn"
[plugins."io.containerd.internal.v1.opt"]
  path = "$d/containerd/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE"
  netns_mounts_under_state_dir = true
  # Nothing here may lower an oom_score_adj below its parent's (writes of negative values
  # fail), so containerd keeps containers' at or above its own instead of failing them.
  restrict_oom_score_adj = true
  enable_selinux = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "$CNI_BIN_DIR"
    conf_dir = "$d/cni"
    max_conf_num = 1
EOF
	# No default route in pods: only the pod range (on the bridge) and the Service range (via
	# the node address, where kube-proxy's rules take over).
	cat >"$d/cni/10-voice-agents.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "voice-agents-node",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$NODE_BRIDGE",
      "isGateway": true,
      "isDefaultGateway": false,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "dataDir": "$d/ipam",
        "ranges": [[{"subnet": "$NODE_POD_CIDR", "rangeStart": "${NODE_POD_CIDR%.*/*}.10", "rangeEnd": "${NODE_POD_CIDR%.*/*}.250", "gateway": "$NODE_HOST_IP"}]],
        "routes": [{"dst": "$NODE_SERVICE_CIDR"}]
      }
    }
  ]
}
EOF
	printf 'options ndots:1\n' >"$d/resolv.conf"
	cat >"$d/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $NODE_HOST_IP
port: $KUBELET_PORT
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: $KUBELET_HEALTHZ_PORT
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $PKI/ca.crt}
authorization:
  mode: Webhook
containerRuntimeEndpoint: unix://$d/containerd/containerd.sock
cgroupDriver: cgroupfs
# This machine has the cgroup v1 hierarchy; since 1.35 the kubelet refuses it unless told.
failCgroupV1: false
failSwapOn: false
podLogsDir: $d/pod-logs
resolvConf: $d/resolv.conf
clusterDomain: cluster.local
registerWithTaints:
- {key: $NODE_TAINT_KEY, value: "true", effect: NoSchedule}
maxPods: 40
serializeImagePulls: false
# Images are imported, never pulled: keep them however full the disk gets.
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: "100Mi", nodefs.available: "1%", nodefs.inodesFree: "1%", imagefs.available: "1%"}
nodeStatusUpdateFrequency: 5s
syncFrequency: 10s
# Secret and ConfigMap volumes follow changes within seconds (the rotation suites wait on it).
configMapAndSecretChangeDetectionStrategy: Watch
shutdownGracePeriod: 0s
# Lowering an oom_score_adj is refused on this kind of machine (see restrict_oom_score_adj).
oomScoreAdj: 0
EOF
	cat >"$d/kube-proxy.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection:
  kubeconfig: $STATE_DIR/kube-proxy.kubeconfig
hostnameOverride: $NODE_NAME
mode: iptables
oomScoreAdj: 0
clusterCIDR: $NODE_POD_CIDR
healthzBindAddress: 127.0.0.1:$PROXY_HEALTHZ_PORT
metricsBindAddress: 127.0.0.1:$PROXY_METRICS_PORT
# NodePorts only on the node's bridge address (not on loopback or the machine's own interfaces).
nodePortAddresses: ["$NODE_POD_CIDR"]
conntrack:
  maxPerCore: 0
  min: 0
iptables:
  localhostNodePorts: false
  syncPeriod: 30s
  minSyncPeriod: 1s
EOF
}

# node_stop_pods: kills every container of the node (the processes in the kubelet's pod
# cgroups), then the shims of this containerd. Used by down after the kubelet has stopped.
node_stop_pods() {
	local d sock pids hierarchy
	d="$(node_dir)"
	sock="$d/containerd/containerd.sock"
	for hierarchy in /sys/fs/cgroup/pids /sys/fs/cgroup/memory /sys/fs/cgroup; do
		[[ -d "$hierarchy/kubepods" ]] || continue
		# find fails when a cgroup goes away under it (its last process exited): not an error.
		pids="$( (find "$hierarchy/kubepods" -name cgroup.procs -exec cat {} + 2>/dev/null || true) | sort -u | tr '\n' ' ')"
		if [[ -n "${pids// /}" ]]; then
			# shellcheck disable=SC2086 # a list of pids
			kill -KILL $pids 2>/dev/null || true
		fi
	done
	pids="$( (pgrep -f "containerd-shim-runc-v2 .*-address $sock( |$)" || true) | tr '\n' ' ')"
	if [[ -n "${pids// /}" ]]; then
		# shellcheck disable=SC2086
		kill -KILL $pids 2>/dev/null || true
	fi
	sleep 0.5
}

# node_unmount: unmounts everything mounted below the state dir (container root filesystems,
# Secret and ConfigMap volumes, network namespaces, the kubelet's own bind mount), deepest
# first.
node_unmount() {
	local mnt i
	for i in 1 2 3; do
		mapfile -t mounts < <(awk -v p="$STATE_DIR/" 'index($5, p) == 1 { print $5 }' /proc/self/mountinfo | sort -r)
		((${#mounts[@]})) || return 0
		for mnt in "${mounts[@]}"; do
			umount "$mnt" 2>/dev/null || umount -l "$mnt" 2>/dev/null || true
		done
	done
}

# node_remove_cgroups: the kubelet's pod cgroups (kubepods/...), deepest first, in every
# hierarchy. Only empty cgroups can go; node_stop_pods emptied them.
node_remove_cgroups() {
	local root
	for root in /sys/fs/cgroup/*/kubepods /sys/fs/cgroup/kubepods; do
		[[ -d "$root" ]] || continue
		find "$root" -depth -type d -exec rmdir {} \; 2>/dev/null || true
	done
}

# node_check_isolation: every pod network namespace of the node has routes only to the pod
# and Service ranges (no default route), and the forwarding rules that drop anything else are
# in place. Prints one line per namespace; fails on any violation.
node_check_isolation() {
	local d ns routes bad=0 count=0 dst
	d="$(node_dir)"
	iptables -w -C FORWARD -j "$NODE_CHAIN" 2>/dev/null || {
		log "isolation: FORWARD does not jump to $NODE_CHAIN"
		bad=1
	}
	iptables -w -C "$NODE_CHAIN" -s "$NODE_POD_CIDR" -j DROP 2>/dev/null || {
		log "isolation: $NODE_CHAIN does not drop traffic from pods to elsewhere"
		bad=1
	}
	while IFS= read -r ns; do
		count=$((count + 1))
		routes="$(nsenter --net="$ns" ip -4 route show 2>/dev/null)" || {
			log "isolation: cannot read the routes of $ns"
			bad=1
			continue
		}
		while read -r dst _; do
			[[ -z "$dst" ]] && continue
			case "$dst" in
			"$NODE_POD_CIDR" | "$NODE_SERVICE_CIDR") ;;
			*)
				log "isolation: $ns has a route to $dst"
				bad=1
				;;
			esac
		done <<<"$routes"
		printf 'netns %s: %s\n' "$(basename "$ns")" "$(tr '\n' ';' <<<"$routes")"
	done < <(awk -v p="$d/containerd/state/" 'index($5, p) == 1 && $5 ~ /\/netns\// { print $5 }' /proc/self/mountinfo | sort -u)
	printf 'checked %d pod network namespaces\n' "$count"
	return "$bad"
}

# node_import_image ARCHIVE REF: imports an OCI archive into the node's containerd (the k8s.io
# namespace, where the kubelet finds images), unpacked for its snapshotter. Skips images
# already there.
node_import_image() {
	local archive="$1" ref="$2" sock
	sock="$(node_dir)/containerd/containerd.sock"
	if ctr --address "$sock" -n k8s.io images ls -q "name==$ref" 2>/dev/null | grep -qx "$ref"; then
		return 0
	fi
	log "importing $ref into the node's containerd"
	ctr --address "$sock" -n k8s.io images import "$archive" >&2 ||
		die "importing $archive into containerd failed"
	ctr --address "$sock" -n k8s.io images ls -q "name==$ref" | grep -qx "$ref" ||
		die "$archive holds no image named $ref"
}
