//! Every kind of child a VoiceAgent has, in one ordered registry ([`CHILD_KINDS`]). An entry
//! names the kind's builder, whose signature says whether every accepted VoiceAgent has one
//! ([`Builder::Always`]) or only some do ([`Builder::WhenWanted`]: the operator deletes its own
//! when no longer wanted), and whether the cluster must serve the Gateway API for it. The
//! registry drives the build step's output, the apply order and the sweep of unwanted children,
//! the controller's watches with the caches the apply step compares against ([`cache`]), and
//! the `writes` series created at start.
//!
//! A new child is one entry here plus its builder in [`super::build`].

mod cache;

use std::any::Any;
use std::borrow::Cow;
use std::fmt::Debug;

use futures::future::BoxFuture;
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use k8s_openapi::api::networking::v1::{Ingress, NetworkPolicy};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::core::error_boundary::DeserializeGuard;
use kube::runtime::controller::Controller;
use kube::runtime::watcher;
use kube::{Client, Resource};
use serde::Serialize;
use serde::de::DeserializeOwned;

pub use self::cache::{Cached, ChildCaches};
use super::Settings;
use super::apply::{Applied, Writer};
use super::build::{
    build_backend_traffic_policy, build_configmap, build_deployment, build_hpa, build_httproute, build_ingress,
    build_network_policy, build_pdb, build_scaled_object, build_service,
};
use super::validate::ValidatedAgent;
use crate::api::VoiceAgent;
use crate::controller::Scope;
use crate::error::Result;
use crate::gateway_api::{BackendTrafficPolicy, HTTPRoute};
use crate::keda::ScaledObject;

/// Every kind of child, in the order they are applied: the ConfigMap first, so new pods find
/// their configuration; the Service and Deployment; then what exposes, scales and guards them.
pub static CHILD_KINDS: [&dyn AnyChildKind; 10] = [
    &ChildKind::<ConfigMap>::always(build_configmap),
    &ChildKind::<Service>::always(build_service),
    &ChildKind::<Deployment>::always(build_deployment),
    &ChildKind::<Ingress>::when_wanted(build_ingress),
    &ChildKind::<HTTPRoute> {
        build: Builder::WhenWanted(build_httproute),
        needs: Some(OptionalApi::GatewayApi),
    },
    &ChildKind::<BackendTrafficPolicy> {
        build: Builder::WhenWanted(build_backend_traffic_policy),
        needs: Some(OptionalApi::EnvoyGatewayPolicies),
    },
    &ChildKind::<HorizontalPodAutoscaler>::when_wanted(build_hpa),
    &ChildKind::<ScaledObject> {
        build: Builder::WhenWanted(build_scaled_object),
        needs: Some(OptionalApi::Keda),
    },
    &ChildKind::<PodDisruptionBudget>::when_wanted(build_pdb),
    &ChildKind::<NetworkPolicy>::when_wanted(build_network_policy),
];

/// What a child object is: a namespaced Kubernetes object the operator can build, compare,
/// apply and cache.
pub trait ChildObject:
    Resource<DynamicType = (), Scope = NamespaceResourceScope>
    + Clone
    + Debug
    + Serialize
    + DeserializeOwned
    + Send
    + Sync
    + 'static
{
}

impl<K> ChildObject for K where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + Clone
        + Debug
        + Serialize
        + DeserializeOwned
        + Send
        + Sync
        + 'static
{
}

/// A kind's pure builder.
pub enum Builder<K> {
    /// Every accepted VoiceAgent has one.
    Always(fn(&ValidatedAgent) -> K),
    /// Some have one. These children are named after the VoiceAgent, so an unwanted one is
    /// found without a list.
    WhenWanted(fn(&ValidatedAgent) -> Option<K>),
}

/// An API some clusters serve and others do not (its CRDs are installed or not).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OptionalApi {
    /// Gateway API HTTPRoutes.
    GatewayApi,
    /// Envoy Gateway's `BackendTrafficPolicy`.
    EnvoyGatewayPolicies,
    /// KEDA's `ScaledObject`.
    Keda,
}

impl OptionalApi {
    fn is_served(self, settings: &Settings) -> bool {
        match self {
            Self::GatewayApi => settings.gateway_api,
            Self::EnvoyGatewayPolicies => settings.envoy_gateway_policies,
            Self::Keda => settings.keda,
        }
    }
}

/// One entry of the registry.
pub struct ChildKind<K> {
    pub build: Builder<K>,
    /// Applied and watched only when the cluster serves this API.
    pub needs: Option<OptionalApi>,
}

impl<K> ChildKind<K> {
    const fn always(build: fn(&ValidatedAgent) -> K) -> Self {
        Self {
            build: Builder::Always(build),
            needs: None,
        }
    }

    const fn when_wanted(build: fn(&ValidatedAgent) -> Option<K>) -> Self {
        Self {
            build: Builder::WhenWanted(build),
            needs: None,
        }
    }
}

/// What the registry does with an entry, whatever the kind's type.
pub trait AnyChildKind: Sync {
    /// The objects' `kind` (also the `kind` label of the `writes` metric).
    fn kind(&self) -> Cow<'static, str>;
    /// Whether the operator deletes its child of this kind when it is no longer wanted.
    fn is_optional(&self) -> bool;
    /// Whether the cluster serves the kind, as far as the operator knows.
    fn is_served(&self, settings: &Settings) -> bool;
    /// Runs the builder.
    fn build(&'static self, agent: &ValidatedAgent) -> Box<dyn DesiredChild>;
    /// Adds the kind's watch to `controller` (selected by `config`), caching it in `caches`.
    fn watch(
        &self,
        controller: Controller<DeserializeGuard<VoiceAgent>>,
        client: &Client,
        scope: &Scope,
        config: watcher::Config,
        caches: &mut ChildCaches,
    ) -> Controller<DeserializeGuard<VoiceAgent>>;
}

impl<K: ChildObject> AnyChildKind for ChildKind<K> {
    fn kind(&self) -> Cow<'static, str> {
        K::kind(&())
    }

    fn is_optional(&self) -> bool {
        matches!(self.build, Builder::WhenWanted(_))
    }

    fn is_served(&self, settings: &Settings) -> bool {
        self.needs.is_none_or(|api| api.is_served(settings))
    }

    fn build(&'static self, agent: &ValidatedAgent) -> Box<dyn DesiredChild> {
        let object = match self.build {
            Builder::Always(build) => Some(build(agent)),
            Builder::WhenWanted(build) => build(agent),
        };
        Box::new(Desired { kind: self, object })
    }

    fn watch(
        &self,
        controller: Controller<DeserializeGuard<VoiceAgent>>,
        client: &Client,
        scope: &Scope,
        config: watcher::Config,
        caches: &mut ChildCaches,
    ) -> Controller<DeserializeGuard<VoiceAgent>> {
        controller.owns_stream(caches.watch::<K>(scope.api(client), config))
    }
}

/// The child of one kind the VoiceAgent should have (`None`: none).
struct Desired<K: 'static> {
    kind: &'static ChildKind<K>,
    object: Option<K>,
}

/// A [`Desired`] child, whatever its kind's type.
pub trait DesiredChild: Send + Sync {
    /// Its entry in the registry.
    fn kind(&self) -> &'static dyn AnyChildKind;
    /// The object, when one is wanted.
    fn object(&self) -> Option<&(dyn Any + Send + Sync)>;
    /// Applies the object when wanted (unless the live one already holds it); otherwise deletes
    /// the operator's own object of the kind, if there is one.
    fn apply<'a>(&'a self, writer: &'a Writer<'a>, out: &'a mut Applied) -> BoxFuture<'a, Result<()>>;
}

impl<K: ChildObject> DesiredChild for Desired<K> {
    fn kind(&self) -> &'static dyn AnyChildKind {
        self.kind
    }

    fn object(&self) -> Option<&(dyn Any + Send + Sync)> {
        self.object.as_ref().map(|o| o as &(dyn Any + Send + Sync))
    }

    fn apply<'a>(&'a self, writer: &'a Writer<'a>, out: &'a mut Applied) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            match (&self.kind.build, &self.object) {
                (Builder::Always(_), Some(object)) => writer.ensure(object, out).await,
                (Builder::WhenWanted(_), object) => writer.reconcile_optional(object.as_ref(), out).await,
                // An `Always` builder returns an object; nothing to do without one.
                (Builder::Always(_), None) => Ok(()),
            }
        })
    }
}

/// Every child the VoiceAgent should have: one per registered kind, in apply order.
pub struct Children(pub Vec<Box<dyn DesiredChild>>);

impl Children {
    /// Builds one child per registered kind.
    pub fn build(agent: &ValidatedAgent) -> Self {
        Self(CHILD_KINDS.iter().map(|kind| kind.build(agent)).collect())
    }

    /// The wanted object of kind `K`, if any.
    pub fn get<K: ChildObject>(&self) -> Option<&K> {
        self.0.iter().find_map(|child| child.object()?.downcast_ref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{spec, validated};

    fn kinds(filter: impl Fn(&dyn AnyChildKind) -> bool) -> Vec<String> {
        CHILD_KINDS
            .iter()
            .filter(|k| filter(**k))
            .map(|k| k.kind().into_owned())
            .collect()
    }

    #[test]
    fn children_are_applied_config_first_then_workload_then_the_rest() {
        assert_eq!(
            kinds(|_| true),
            [
                "ConfigMap",
                "Service",
                "Deployment",
                "Ingress",
                "HTTPRoute",
                "BackendTrafficPolicy",
                "HorizontalPodAutoscaler",
                "ScaledObject",
                "PodDisruptionBudget",
                "NetworkPolicy"
            ]
        );
        assert_eq!(kinds(|k| !k.is_optional()), ["ConfigMap", "Service", "Deployment"]);
    }

    #[test]
    fn routes_and_policies_need_their_apis() {
        let without = Settings {
            gateway_api: false,
            envoy_gateway_policies: false,
            keda: false,
            ..crate::fixtures::settings()
        };
        assert_eq!(
            kinds(|k| !k.is_served(&without)),
            ["HTTPRoute", "BackendTrafficPolicy", "ScaledObject"]
        );
        assert!(kinds(|k| !k.is_served(&crate::fixtures::settings())).is_empty());
    }

    #[test]
    fn a_plain_agent_wants_only_the_children_it_always_has() {
        let children = Children::build(&validated(Default::default()));
        let wanted: Vec<String> = children
            .0
            .iter()
            .filter(|c| c.object().is_some())
            .map(|c| c.kind().kind().into_owned())
            .collect();
        assert_eq!(wanted, ["ConfigMap", "Service", "Deployment"]);
        assert_eq!(children.0.len(), CHILD_KINDS.len());
    }

    #[test]
    fn built_children_are_what_the_builders_return() {
        let agent = validated(spec("replicas: 2\nexpose: {ingress: {host: voice.example.com}}"));
        let children = Children::build(&agent);
        assert_eq!(children.get::<Deployment>(), Some(&build_deployment(&agent)));
        assert_eq!(children.get::<Ingress>(), build_ingress(&agent).as_ref());
        assert_eq!(children.get::<PodDisruptionBudget>(), build_pdb(&agent).as_ref());
        assert!(children.get::<PodDisruptionBudget>().is_some());
        assert_eq!(children.get::<HorizontalPodAutoscaler>(), None);
    }
}
