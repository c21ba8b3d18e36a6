//! One way to run a controller: a [`Reconciler`] says what it reconciles, what it reads and
//! how other kinds map to it; [`run`] does the rest, the same for every controller:
//!
//! - the primary kind comes from the process's shared watch (`watch::Hub`), read through
//!   `DeserializeGuard`, so a malformed object is skipped (logged, then left until it changes)
//!   and never stalls the others;
//! - no round decides on an empty cache: each waits for the watches its reconciler reads;
//! - every round runs in a `reconcile` span, through `metrics::instrumented` (time, rounds in
//!   flight, result, error category, and the one log line of a failed round);
//! - a round for an object gone from the store is not an error: the reconciler may forget it.

use std::{fmt::Debug, future::Future, hash::Hash, sync::Arc, time::Duration};

use futures::StreamExt;
use kube::{
    Resource, ResourceExt,
    core::DeserializeGuard,
    runtime::{Controller, controller::Action, reflector::ObjectRef},
};
use serde::de::DeserializeOwned;

use crate::{
    context::Context,
    error::{Error, Result},
    watch::{Hub, Ready, Shared},
};

/// The controller-runtime controller of a kind, read through `DeserializeGuard`.
pub type Wired<K> = Controller<DeserializeGuard<K>>;

/// What every [`Reconciler`] says the same way, in its impl block: the kind it reconciles, its
/// name, its context (its `ctx` field) and its primary watch (the hub's field `$watch`).
///
/// ```ignore
/// impl crate::controller::Reconciler for Zones {
///     crate::controller::plumbing!(Zone, CONTROLLER, zones);
///     fn reads(hub: &Hub) -> Vec<&dyn Ready> { vec![&hub.nodes] }
///     async fn reconcile(&self, zone: &Zone) -> Result<Action> { ... }
/// }
/// ```
macro_rules! plumbing {
    ($kind:ty, $name:expr, $watch:ident) => {
        type Kind = $kind;
        const NAME: &'static str = $name;

        fn context(&self) -> &$crate::context::Context {
            &self.ctx
        }

        fn primary(hub: &$crate::watch::Hub) -> &$crate::watch::Shared<kube::core::DeserializeGuard<$kind>> {
            &hub.$watch
        }
    };
}
pub(crate) use plumbing;

/// What a controller is: the rest is [`run`]'s.
pub trait Reconciler: Send + Sync + Sized + 'static {
    /// The kind it reconciles.
    type Kind: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static;
    /// Its name in metrics, spans and logs.
    const NAME: &'static str;

    /// The shared context (client, watches, metrics, recorder).
    fn context(&self) -> &Context;

    /// The shared watch of [`Self::Kind`].
    fn primary(hub: &Hub) -> &Shared<DeserializeGuard<Self::Kind>>;

    /// Every watch a round reads besides the primary one: a round waits until each has listed.
    fn reads(hub: &Hub) -> Vec<&dyn Ready>;

    /// The watches of other kinds that wake objects of this one, and the controller's settings
    /// (debounce, concurrency). The default wakes on the primary kind only.
    fn wire(self: &Arc<Self>, controller: Wired<Self::Kind>) -> Wired<Self::Kind> {
        controller
    }

    /// One round for `obj`.
    fn reconcile(&self, obj: &Self::Kind) -> impl Future<Output = Result<Action>> + Send;

    /// When to look again after a failed round.
    fn error_policy(&self, _err: &Error) -> Action {
        Action::requeue(Duration::from_secs(5))
    }

    /// Called when a round was asked for an object no longer in the store (deleted): what the
    /// controller keeps about it (metrics series, memory) may go.
    fn forget(&self, _namespace: Option<&str>, _name: &str) {}
}

/// Runs `reconciler` until `shutdown` resolves.
pub async fn run<R: Reconciler>(reconciler: Arc<R>, shutdown: impl Future<Output = ()> + Send + Sync + 'static)
where
    <R::Kind as Resource>::DynamicType: Eq + Hash + Clone,
{
    let hub = reconciler.context().watches.clone();
    let primary = R::primary(&hub);
    let controller = reconciler.wire(Controller::for_shared_stream(primary.subscribe(), primary.store()));
    reconciler.context().metrics.active_workers.with_label_values(&[R::NAME]).set(0);
    let forgetting = reconciler.clone();
    controller
        .graceful_shutdown_on(shutdown)
        .run(round::<R>, |_obj, err, r| r.error_policy(err), reconciler)
        .for_each(|res| {
            let r = forgetting.clone();
            async move {
                use kube::runtime::controller::Error as E;
                match res {
                    Ok(_) => {}
                    // Logged once, by `instrumented`.
                    Err(E::ReconcilerFailed(..)) => {}
                    Err(E::ObjectNotFound(obj)) => {
                        tracing::debug!(controller = R::NAME, %obj, "a round for an object that is gone");
                        r.forget(obj.namespace.as_deref(), &obj.name);
                    }
                    Err(e) => tracing::warn!(controller = R::NAME, error = %e, "controller stream"),
                }
            }
        })
        .await;
}

async fn round<R: Reconciler>(obj: Arc<DeserializeGuard<R::Kind>>, reconciler: Arc<R>) -> Result<Action> {
    let kind = R::Kind::kind(&());
    let Ok(o) = &obj.0 else {
        if let Err(e) = &obj.0 {
            tracing::warn!(controller = R::NAME, %kind, name = %obj.name_any(), error = %e, "skipping an object that does not deserialize");
        }
        return Ok(Action::await_change());
    };
    let hub = &reconciler.context().watches;
    let mut reads = R::reads(hub);
    reads.push(R::primary(hub));
    crate::watch::all_ready(&reads).await;
    let span = tracing::info_span!(
        "reconcile",
        controller = R::NAME,
        namespace = o.namespace().unwrap_or_default(),
        object = %o.name_any()
    );
    crate::metrics::instrumented(&reconciler.context().metrics, R::NAME, span, reconciler.reconcile(o)).await
}

/// A controller's object reference, by name (and namespace), for the watches' mappers.
pub fn named<K: Resource<DynamicType = ()>>(namespace: Option<&str>, name: &str) -> ObjectRef<DeserializeGuard<K>> {
    let r = ObjectRef::new(name);
    match namespace {
        Some(ns) => r.within(ns),
        None => r,
    }
}
