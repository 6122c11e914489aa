//! The writes of one ServiceAccount as the apiserver counts them: a FlowSchema that matches only
//! that account's writes, and the apiserver's count of the requests it dispatched through it
//! (API Priority and Fairness, `apiserver_flowcontrol_dispatched_requests_total`). A count
//! the code under test cannot fake or forget, whatever it says in its own metrics.

/// A FlowSchema counting the writes of `account` in `namespace` to anything but its leader
/// Lease.
#[derive(Debug, Clone)]
pub struct WriteCounter {
    flow_schema: String,
    namespace: String,
    account: String,
}

impl WriteCounter {
    /// The FlowSchema `flow_schema` (cluster-scoped, so unique per test), for the ServiceAccount
    /// `namespace/account`.
    pub fn new(flow_schema: &str, namespace: &str, account: &str) -> Self {
        Self {
            flow_schema: flow_schema.to_owned(),
            namespace: namespace.to_owned(),
            account: account.to_owned(),
        }
    }

    /// The FlowSchema's name.
    pub fn flow_schema(&self) -> &str {
        &self.flow_schema
    }

    /// The FlowSchema to apply, labelled like the test namespaces so leftovers can be found.
    pub fn manifest(&self) -> String {
        let Self {
            flow_schema,
            namespace,
            account,
        } = self;
        format!(
            r#"apiVersion: flowcontrol.apiserver.k8s.io/v1
kind: FlowSchema
metadata:
  name: {flow_schema}
  labels: {{voice-agents.dev/e2e: "true"}}
spec:
  priorityLevelConfiguration: {{name: workload-low}}
  matchingPrecedence: 500
  distinguisherMethod: {{type: ByUser}}
  rules:
  - subjects:
    - kind: ServiceAccount
      serviceAccount: {{name: {account}, namespace: {namespace}}}
    resourceRules:
    # Every write except to the leader Lease (coordination.k8s.io), whose renewals are the
    # election's heartbeat.
    - verbs: [create, update, patch, delete, deletecollection]
      apiGroups: ["", apps, networking.k8s.io, autoscaling, policy, voiceagent.dev, gateway.networking.k8s.io, events.k8s.io]
      resources: ["*"]
      namespaces: ["*"]
      clusterScope: true
"#
        )
    }

    /// The writes counted so far, read from the apiserver's own `/metrics`
    /// (`kubectl get --raw /metrics`).
    pub fn writes(&self, apiserver_metrics: &str) -> u64 {
        let series = format!(
            "apiserver_flowcontrol_dispatched_requests_total{{flow_schema=\"{}\",",
            self.flow_schema
        );
        apiserver_metrics
            .lines()
            .filter(|l| l.starts_with(&series))
            .filter_map(|l| l.rsplit(' ').next())
            .filter_map(|v| v.parse::<f64>().ok())
            .map(|v| v as u64)
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_only_requests_dispatched_through_its_flow_schema() {
        let counter = WriteCounter::new("e2e-writes-a", "a", "voice-operator");
        let metrics = "\
apiserver_flowcontrol_dispatched_requests_total{flow_schema=\"e2e-writes-a\",priority_level=\"workload-low\"} 3
apiserver_flowcontrol_dispatched_requests_total{flow_schema=\"e2e-writes-a\",priority_level=\"exempt\"} 2
apiserver_flowcontrol_dispatched_requests_total{flow_schema=\"e2e-writes-ab\",priority_level=\"workload-low\"} 40
apiserver_flowcontrol_dispatched_requests_total{flow_schema=\"service-accounts\",priority_level=\"workload-low\"} 500
";
        assert_eq!(counter.writes(metrics), 5);
        assert_eq!(counter.writes(""), 0);
    }

    #[test]
    fn the_flow_schema_matches_the_account_and_leaves_out_its_lease() {
        let manifest = WriteCounter::new("e2e-writes-a", "ns-a", "voice-operator").manifest();
        assert!(manifest.contains("name: e2e-writes-a\n"), "{manifest}");
        assert!(
            manifest.contains("serviceAccount: {name: voice-operator, namespace: ns-a}"),
            "{manifest}"
        );
        let groups = manifest
            .lines()
            .find(|l| l.trim_start().starts_with("apiGroups:"))
            .expect("apiGroups");
        assert!(!groups.contains("coordination.k8s.io"), "{groups}");
    }
}
