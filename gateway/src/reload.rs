//! Follows the certificate files: when a Secret rotates (kubelet swaps the mounted files, or
//! a watch writes them), new handshakes use the new pair; open connections keep theirs.

use std::{sync::Arc, time::Duration};

use crate::{
    contexts,
    material::{Material, Sources},
    serve::Gateway,
};

/// Records what is served in the expiry gauge.
pub fn publish(gw: &Gateway) {
    gw.metrics.certificate_expiry.reset();
    for s in &gw.current().served {
        gw.metrics.certificate_expiry.with_label_values(&[s.role, &s.serial]).set(s.not_after as f64);
    }
}

/// Checks the files every `every`; a change that builds is served, one that does not is
/// logged and counted, and the previous contexts stay.
pub async fn follow(gw: Arc<Gateway>, sources: Sources, mut last: Material, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let now = match sources.read() {
            Ok(m) => m,
            Err(e) => {
                // A Secret volume is swapped by a symlink; a read between the two is retried.
                tracing::debug!(error = %e, "certificate files not readable");
                continue;
            }
        };
        if now == last {
            continue;
        }
        match contexts::build(&gw.policy, &now) {
            Ok(c) => {
                let serials: Vec<_> = c.served.iter().map(|s| format!("{}:{}", s.role, s.serial)).collect();
                gw.replace(c);
                publish(&gw);
                gw.metrics.reloads.with_label_values(&["ok"]).inc();
                tracing::info!(served = ?serials, "certificates reloaded");
            }
            Err(e) => {
                gw.metrics.reloads.with_label_values(&["failed"]).inc();
                tracing::error!(error = %e, "certificates changed but do not build; still serving the previous ones");
            }
        }
        last = now;
    }
}
