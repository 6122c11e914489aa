//! Helpers shared by the end-to-end suites.

pub mod cluster;

pub use cluster::{ServiceAccountKubeconfig, TestCluster, TestNamespace};
