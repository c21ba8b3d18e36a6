//! Leader election on a `coordination.k8s.io/v1` Lease, so two replicas are safe.
//!
//! Every replica runs; only the holder of the Lease reconciles (writes). Acquiring and renewing
//! use the API server's optimistic concurrency (create, or replace at a known
//! `resourceVersion`), so two candidates can never both believe they won the same term. A leader
//! that cannot renew before its lease runs out stops leading; the binary then exits so that
//! whatever supervises it restarts it as a follower, as controller-runtime does.

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::{
    api::coordination::v1::{Lease, LeaseSpec},
    apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta},
};
use kube::{Api, Client, api::PostParams};
use tokio::{sync::watch, time::Instant};

/// How a replica takes part in the election.
#[derive(Debug, Clone)]
pub struct Config {
    pub namespace: String,
    pub name: String,
    pub identity: String,
    /// How long a lease is valid without renewal.
    pub lease_duration: Duration,
    /// How often the holder renews and a candidate retries.
    pub retry_period: Duration,
    /// Counts the writes to the Lease, so SREs (and the scale benchmark) can tell the
    /// election's steady cost from the controllers' writes.
    pub writes: Option<prometheus::IntCounter>,
}

/// What to do with the lease as we find it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// No lease exists: create one naming us.
    Create,
    /// We hold it: renew.
    Renew,
    /// Someone else held it and let it expire (or released it): take it over.
    TakeOver,
    /// Someone else holds a valid lease.
    Follow { holder: String },
}

/// Pure decision from the current lease, our identity and the time.
pub fn decide(lease: Option<&LeaseSpec>, identity: &str, now: Timestamp) -> Decision {
    let Some(spec) = lease else {
        return Decision::Create;
    };
    let holder = spec.holder_identity.clone().unwrap_or_default();
    if holder == identity {
        return Decision::Renew;
    }
    if holder.is_empty() {
        return Decision::TakeOver;
    }
    let duration = SignedDuration::from_secs(i64::from(spec.lease_duration_seconds.unwrap_or(15)));
    let last = spec.renew_time.as_ref().or(spec.acquire_time.as_ref()).map(|t| t.0);
    match last {
        Some(t) if t + duration > now => Decision::Follow { holder },
        _ => Decision::TakeOver,
    }
}

fn spec_for(cfg: &Config, now: Timestamp, prior: Option<&LeaseSpec>, new_term: bool) -> LeaseSpec {
    let transitions = prior.and_then(|p| p.lease_transitions).unwrap_or(0);
    LeaseSpec {
        holder_identity: Some(cfg.identity.clone()),
        lease_duration_seconds: Some(cfg.lease_duration.as_secs().max(1) as i32),
        acquire_time: if new_term { Some(MicroTime(now)) } else { prior.and_then(|p| p.acquire_time.clone()) },
        renew_time: Some(MicroTime(now)),
        lease_transitions: Some(if new_term && prior.is_some() { transitions + 1 } else { transitions }),
        ..Default::default()
    }
}

/// One round: returns whether we hold the lease afterwards.
pub async fn try_acquire_or_renew(api: &Api<Lease>, cfg: &Config) -> Result<bool, kube::Error> {
    let now = Timestamp::now();
    let current = api.get_opt(&cfg.name).await?;
    let decision = decide(current.as_ref().and_then(|l| l.spec.as_ref()), &cfg.identity, now);
    if !matches!(decision, Decision::Follow { .. })
        && let Some(w) = &cfg.writes
    {
        w.inc();
    }
    let result = match (decision, current) {
        (Decision::Create, _) => {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(cfg.name.clone()),
                    namespace: Some(cfg.namespace.clone()),
                    ..Default::default()
                },
                spec: Some(spec_for(cfg, now, None, true)),
            };
            api.create(&PostParams::default(), &lease).await.map(|_| ())
        }
        (Decision::Follow { .. }, _) => return Ok(false),
        (d, Some(mut lease)) => {
            let new_term = d == Decision::TakeOver;
            lease.spec = Some(spec_for(cfg, now, lease.spec.as_ref(), new_term));
            // The object carries its resourceVersion: a concurrent writer makes this fail.
            api.replace(&cfg.name, &PostParams::default(), &lease).await.map(|_| ())
        }
        (_, None) => return Ok(false),
    };
    match result {
        Ok(()) => Ok(true),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
        Err(e) => Err(e),
    }
}

/// Gives the lease up so a follower can take over at once instead of waiting for it to expire.
pub async fn release(api: &Api<Lease>, cfg: &Config) -> Result<(), kube::Error> {
    if let Some(mut lease) = api.get_opt(&cfg.name).await?
        && let Some(spec) = lease.spec.as_mut()
        && spec.holder_identity.as_deref() == Some(cfg.identity.as_str())
    {
        spec.holder_identity = None;
        spec.renew_time = None;
        api.replace(&cfg.name, &PostParams::default(), &lease).await?;
    }
    Ok(())
}

/// How long the holder goes on writing after the send time of its last successful renewal:
/// the others may take the lease over `lease_duration` after that, and what the holder already
/// sent needs a moment to land before then.
pub fn renew_deadline(lease_duration: Duration) -> Duration {
    lease_duration.mul_f32(0.8)
}

/// Giving the lease up is a courtesy (it expires anyway): never worth a hung shutdown.
const RELEASE_TIMEOUT: Duration = Duration::from_secs(2);

/// Runs [`run`] on a thread and a runtime of its own, with a client that `client` builds there
/// (its connections and its request buffer then live on that runtime too).
///
/// Tokio does not preempt: a leader busy with hundreds of rounds kept its election task from a
/// worker thread, and from a pooled connection, long enough to miss its renew deadline and step
/// down (an e2e take-over under load). The election's few requests are not queued behind the
/// controllers' any more.
pub fn spawn(
    client: impl FnOnce() -> Client + Send + 'static,
    cfg: Config,
    tx: watch::Sender<bool>,
    stop: watch::Receiver<bool>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    std::thread::Builder::new().name("leader-election".into()).spawn(move || {
        runtime.block_on(async move { run(client(), cfg, tx, stop).await });
    })
}

/// Runs the election until `stop` fires, publishing whether we lead on `tx`.
///
/// The holder steps down when [`renew_deadline`] has passed since it *sent* its last successful
/// renewal, whether the renewal it is waiting for failed, hangs or has not been sent yet: a
/// round's requests are bounded by that deadline, and the wait between rounds ends at it too.
pub async fn run(client: Client, cfg: Config, tx: watch::Sender<bool>, mut stop: watch::Receiver<bool>) {
    let api: Api<Lease> = Api::namespaced(client, &cfg.namespace);
    // While we lead: the instant we must have stopped writing by.
    let mut deadline: Option<Instant> = None;
    let step_down = |deadline: &mut Option<Instant>, why: &str| {
        *deadline = None;
        if *tx.borrow() {
            tracing::error!(identity = %cfg.identity, lease = %cfg.name, "{why}: stepping down");
            let _ = tx.send(false);
        }
    };
    loop {
        let sent = Instant::now();
        // A follower's round only delays its candidacy; the holder's must end in time.
        let bound = deadline.map_or(cfg.lease_duration, |d| d.saturating_duration_since(sent));
        let round = tokio::select! {
            r = tokio::time::timeout(bound, try_acquire_or_renew(&api, &cfg)) => r,
            _ = stop.changed() => break,
        };
        match round {
            Ok(Ok(true)) => {
                deadline = Some(sent + renew_deadline(cfg.lease_duration));
                if !*tx.borrow() {
                    tracing::info!(identity = %cfg.identity, lease = %cfg.name, "became leader");
                }
                let _ = tx.send(true);
            }
            Ok(Ok(false)) => {
                if *tx.borrow() {
                    tracing::warn!(identity = %cfg.identity, "lost the lease to another replica");
                }
                deadline = None;
                let _ = tx.send(false);
            }
            Ok(Err(e)) => tracing::warn!(error = %e, "leader election round failed"),
            Err(_) => tracing::warn!(seconds = bound.as_secs_f32(), "leader election round timed out"),
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            step_down(&mut deadline, "could not renew the lease in time");
        }
        // Until the next round, or the deadline if that comes first.
        let next = Instant::now() + cfg.retry_period;
        tokio::select! {
            _ = tokio::time::sleep_until(deadline.map_or(next, |d| d.min(next))) => {}
            _ = stop.changed() => break,
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            step_down(&mut deadline, "could not renew the lease in time");
        }
    }
    if *tx.borrow() {
        match tokio::time::timeout(RELEASE_TIMEOUT, release(&api, &cfg)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "releasing the lease failed; it will expire on its own"),
            Err(_) => tracing::warn!("releasing the lease timed out; it will expire on its own"),
        }
        let _ = tx.send(false);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(holder: Option<&str>, renewed_secs_ago: i64, duration: i32) -> LeaseSpec {
        let now = Timestamp::now();
        LeaseSpec {
            holder_identity: holder.map(Into::into),
            lease_duration_seconds: Some(duration),
            renew_time: Some(MicroTime(now - SignedDuration::from_secs(renewed_secs_ago))),
            ..Default::default()
        }
    }

    #[test]
    fn no_lease_means_create() {
        assert_eq!(decide(None, "a", Timestamp::now()), Decision::Create);
    }

    #[test]
    fn a_valid_lease_of_another_is_followed() {
        let l = lease(Some("b"), 1, 15);
        assert_eq!(decide(Some(&l), "a", Timestamp::now()), Decision::Follow { holder: "b".into() });
    }

    #[test]
    fn an_expired_or_released_lease_is_taken_over() {
        assert_eq!(decide(Some(&lease(Some("b"), 20, 15)), "a", Timestamp::now()), Decision::TakeOver);
        assert_eq!(decide(Some(&lease(None, 1, 15)), "a", Timestamp::now()), Decision::TakeOver);
    }

    #[test]
    fn our_own_lease_is_renewed() {
        assert_eq!(decide(Some(&lease(Some("a"), 1, 15)), "a", Timestamp::now()), Decision::Renew);
    }
}
