//! What every reconciler and the admin server share.

use std::sync::{
    Arc,
    atomic::{AtomicBool, Ordering},
};

use kube::{
    Client,
    runtime::events::{Recorder, Reporter},
};

use crate::metrics::Metrics;

pub struct Context {
    pub client: Client,
    pub recorder: Recorder,
    pub metrics: Arc<Metrics>,
    /// Set once start-up checks pass; `/readyz` reports it.
    pub ready: AtomicBool,
}

impl Context {
    pub fn new(client: Client, identity: &str, metrics: Arc<Metrics>) -> Arc<Self> {
        let reporter = Reporter { controller: "zhengyun-operator".into(), instance: Some(identity.into()) };
        Arc::new(Context {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            metrics,
            ready: AtomicBool::new(false),
        })
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }

    pub fn set_ready(&self) {
        self.ready.store(true, Ordering::Relaxed);
    }
}
