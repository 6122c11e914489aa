// Command stages prints the kwok Stage objects that tests/cluster/up feeds to
// the kwok controller through --config.
//
// A standalone kwok controller has no built-in behaviour: it refuses to start
// without Stage objects. kwokctl ships a default set (embedded in the kwok
// module); this program writes that same set, taken from the pinned kwok
// release, so that nodes become Ready (with a lease-based heartbeat) and pods
// become Running and Ready right after scheduling, Job pods complete, and
// deleted pods go away.
package main

import (
	"fmt"
	"os"
	"strings"

	nodefast "sigs.k8s.io/kwok/kustomize/stage/node/fast"
	nodeheartbeat "sigs.k8s.io/kwok/kustomize/stage/node/heartbeat-with-lease"
	podfast "sigs.k8s.io/kwok/kustomize/stage/pod/fast"
)

func main() {
	docs := []string{
		nodefast.DefaultNodeInit,
		nodeheartbeat.DefaultNodeHeartbeatWithLease,
		podfast.DefaultPodReady,
		podfast.DefaultPodComplete,
		podfast.DefaultPodDelete,
	}
	var out strings.Builder
	for i, doc := range docs {
		if i > 0 {
			out.WriteString("---\n")
		}
		out.WriteString(strings.TrimRight(doc, "\n"))
		out.WriteString("\n")
	}
	if _, err := os.Stdout.WriteString(out.String()); err != nil {
		fmt.Fprintln(os.Stderr, "stages:", err)
		os.Exit(1)
	}
}
