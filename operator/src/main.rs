//! `zhengyun-operator`: runs the controllers, or prints the CRDs.
#![forbid(unsafe_code)]

use std::{sync::Arc, time::Duration};

use clap::Parser;
use tokio::sync::watch;
use tracing_subscriber::{EnvFilter, layer::SubscriberExt, reload, util::SubscriberInitExt};
use zhengyun::{
    admin::{self, LogReload},
    api,
    cli::args::{Cli, Command, RunArgs},
    context::Context,
    leader,
    manager::{self, Ended},
    metrics::Metrics,
};

/// jemalloc, not the C library's allocator: with glibc, tokio's worker threads each kept their
/// own arenas and the process held far more than its live heap at thousands of tenants;
/// jemalloc returns freed pages within seconds (docs/performance.md has the figures).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// What is logged unless `RUST_LOG` says otherwise.
const DEFAULT_LOG: &str = "info,kube=warn,tower=warn,hyper=warn";
/// kube's client logs every failed request at ERROR, once more beside the round that failed
/// (WARN) and the outage note of `rest_metrics` (a 2-second API server restart made
/// 600-1,900 lines): off, unless `RUST_LOG` names that target itself.
const KUBE_REQUEST_LOG: &str = "kube_client::client::builder";

/// The filter for `spec`, with kube's per-request lines off unless `spec` names them.
fn log_filter(spec: &str) -> Result<EnvFilter, String> {
    let filter = EnvFilter::try_new(spec).map_err(|e| e.to_string())?;
    if spec.contains(KUBE_REQUEST_LOG) {
        return Ok(filter);
    }
    let off =
        format!("{KUBE_REQUEST_LOG}=off").parse().map_err(|e: tracing_subscriber::filter::ParseError| e.to_string())?;
    Ok(filter.add_directive(off))
}

fn init_logging(format: &str) -> LogReload {
    let asked = std::env::var("RUST_LOG").ok().filter(|s| !s.trim().is_empty());
    let filter = asked
        .as_deref()
        .and_then(|spec| log_filter(spec).ok())
        .or_else(|| log_filter(DEFAULT_LOG).ok())
        .unwrap_or_else(|| EnvFilter::new("info"));
    let (filter, handle) = reload::Layer::new(filter);
    let registry = tracing_subscriber::registry().with(filter);
    if format == "text" {
        registry.with(tracing_subscriber::fmt::layer()).init();
    } else {
        registry.with(tracing_subscriber::fmt::layer().json().flatten_event(true)).init();
    }
    Arc::new(move |spec: &str| handle.reload(log_filter(spec)?).map_err(|e| e.to_string()))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let args = match cli.command {
        Some(Command::Crd) => {
            print!("{}", api::crd::yaml()?);
            return Ok(());
        }
        Some(Command::TenantValuesSchema) => {
            println!("{}", serde_json::to_string_pretty(&api::crd::tenant_values_schema())?);
            return Ok(());
        }
        Some(Command::Plan { format, output, headroom, prices }) => {
            return zhengyun::cli::plan::plan(&format, output.as_deref(), headroom, prices.as_deref()).await;
        }
        Some(Command::Evidence { output, operator_role, observed, first_instant, cluster_network_policy_enforced }) => {
            zhengyun::cli::evidence::write(
                &output,
                &operator_role,
                observed.as_deref(),
                first_instant.as_deref(),
                cluster_network_policy_enforced,
            )
            .await?;
            return Ok(());
        }
        Some(Command::Tree) => {
            zhengyun::cli::tree::print().await?;
            return Ok(());
        }
        Some(Command::Reachability { explain, output, cluster_network_policy_enforced, pods, outside, ports }) => {
            let world = zhengyun::cli::reachability::policies_in_force(cluster_network_policy_enforced).await?;
            let json = output == "json";
            return if pods {
                zhengyun::cli::reachability::pod_verdicts(world, &outside, &ports).await
            } else {
                zhengyun::cli::reachability::matrix(world, explain, json).await
            };
        }
        Some(Command::BenchSm2 { seconds }) => {
            let (signs, verifies) = zhengyun::pki::keystore::bench(Duration::from_secs(seconds))?;
            println!("zhengyun sm2 sign/s {signs:.0} verify/s {verifies:.0}");
            return Ok(());
        }
        Some(Command::Run(a)) => *a,
        None => RunArgs::parse_from(["zhengyun-operator"]),
    };
    let reload = init_logging(&args.log_format);
    if let Err(e) = run(args, reload).await {
        tracing::error!(error = %e, "operator stopped");
        return Err(e);
    }
    Ok(())
}

async fn run(args: RunArgs, reload: LogReload) -> anyhow::Result<()> {
    let metrics = Arc::new(Metrics::new());
    let concern_metrics = manager::ConcernMetrics::new(&metrics, args.tenant_series);
    let identity = args.identity.clone().unwrap_or_else(|| {
        let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "zhengyun".into());
        format!("{host}-{}", std::process::id())
    });
    let mut config = kube::Config::infer().await?;
    // The replica in the User-Agent: the API server's audit log then tells two replicas apart.
    let agent = format!("zhengyun-operator/{} ({identity})", env!("CARGO_PKG_VERSION"));
    config.headers.push((http::header::USER_AGENT, http::HeaderValue::from_str(&agent)?));
    let host = config.cluster_url.host().unwrap_or("unknown").to_string();
    let crash = zhengyun::crash_point::CrashPoint::from_env();
    if let Some((after, matching)) = crash.armed() {
        tracing::warn!(
            after,
            matching,
            "crash point armed (a test): the process exits after that many matching writes"
        );
    }
    let layer = zhengyun::rest_metrics::RestMetricsLayer {
        requests: metrics.rest_requests.clone(),
        host,
        outage: Default::default(),
        crash,
    };
    let client = kube::client::ClientBuilder::try_from(config.clone())?.with_layer(&layer).build();
    let ctx = Context::new(client.clone(), &identity, metrics.clone(), &args.lease_namespace);
    if let Some(image) = &args.gateway_image {
        let _ = ctx.gateway_image.set(image.clone());
    }
    let (stop_tx, stop_rx) = watch::channel(false);

    let admin = tokio::spawn(admin::serve(args.admin_addr, ctx.clone(), reload, stop_rx.clone()));

    let cnp = manager::preflight(&client, args.cluster_network_policy_enforced).await?;
    ctx.cluster_network_policy.store(cnp, std::sync::atomic::Ordering::Relaxed);
    tracing::info!(
        isolation = if cnp { "ClusterNetworkPolicy (Admin tier) + NetworkPolicy" } else { "NetworkPolicy + webhook" },
        "tenant isolation"
    );
    let gate = args
        .isolation_gate_image
        .clone()
        .map(|image| zhengyun::gate::Config { image, namespace: args.lease_namespace.clone() });
    // A name that is in no registry stops the operator now, not once it leads.
    manager::select(manager::registry(&ctx, &concern_metrics, gate.is_some()), args.controllers.as_deref())
        .map_err(anyhow::Error::msg)?;
    if gate.is_some() && args.webhook_addr.is_none() {
        anyhow::bail!("--isolation-gate-image needs the webhook (--webhook-addr): the webhook injects the gate");
    }
    let webhook = match (args.webhook_addr, args.webhook_endpoint()?) {
        (Some(addr), Some(endpoint)) => {
            let user = zhengyun::admission::run::whoami(&client).await?;
            tracing::info!(%user, "the webhook lets only this user change what zhengyun owns");
            Some(
                zhengyun::admission::run::start(
                    &ctx,
                    addr,
                    endpoint,
                    args.lease_namespace.clone(),
                    user,
                    gate.clone(),
                    stop_rx.clone(),
                )
                .await?,
            )
        }
        (None, None) => None,
        _ => anyhow::bail!("--webhook-addr and one of --webhook-url / --webhook-service go together"),
    };
    ctx.set_ready();

    let cfg = leader::Config {
        namespace: args.lease_namespace.clone(),
        name: args.lease_name.clone(),
        identity: identity.clone(),
        lease_duration: Duration::from_secs(args.lease_duration),
        retry_period: Duration::from_secs(args.lease_retry),
        writes: Some(metrics.lease_writes.clone()),
    };
    let (lead_tx, mut lead_rx) = watch::channel(false);
    let election_client = kube::client::ClientBuilder::try_from(config)?;
    let election_layer = layer.clone();
    let election =
        leader::spawn(move || election_client.with_layer(&election_layer).build(), cfg, lead_tx, stop_rx.clone())?;
    let election = tokio::task::spawn_blocking(move || election.join());
    metrics.leader.with_label_values(&[&args.lease_name]).set(0);
    tracing::info!(%identity, lease = %args.lease_name, "waiting to lead");

    let delay = Duration::from_secs(args.shutdown_delay);
    let shutdown = async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {},
            _ = term.recv() => {},
        }
        ctx.set_unready();
        if !delay.is_zero() {
            tracing::info!(
                seconds = delay.as_secs(),
                "stopping: not ready, still answering admissions for the shutdown delay"
            );
            tokio::time::sleep(delay).await;
        }
        exit_by_deadline();
        Ok::<_, std::io::Error>(())
    };
    tokio::pin!(shutdown);

    // Follow until elected (or told to stop).
    loop {
        if *lead_rx.borrow() {
            break;
        }
        tokio::select! {
            r = lead_rx.changed() => if r.is_err() { anyhow::bail!("leader election ended") },
            _ = &mut shutdown => {
                let _ = stop_tx.send(true);
                let _ = election.await;
                let _ = admin.await;
                return Ok(());
            }
        }
    }
    metrics.leader.with_label_values(&[&args.lease_name]).set(1);

    // Everything from here on writes, so it runs only while this replica leads.
    let lost = async {
        while lead_rx.changed().await.is_ok() {
            if !*lead_rx.borrow() {
                return;
            }
        }
    };
    let term = manager::Term {
        metrics: concern_metrics,
        webhook,
        gate,
        registration_owner: args.registration_owner.clone(),
        only: args.controllers.clone(),
    };
    let ended = manager::lead(&ctx, term, stop_rx.clone(), lost, async {
        let _ = (&mut shutdown).await;
    })
    .await;
    metrics.leader.with_label_values(&[&args.lease_name]).set(0);
    // Stop writing before giving the lease away.
    let _ = stop_tx.send(true);
    let _ = election.await;
    let _ = admin.await;
    match ended? {
        Ended::LostLead => {
            anyhow::bail!("lost leadership; exiting so a supervisor restarts this replica as a follower")
        }
        Ended::ControllerStopped(name, why) => {
            anyhow::bail!("controller {name} {why}; exiting so a supervisor restarts this replica")
        }
        Ended::Signal => {}
    }
    tracing::info!("shut down cleanly");
    Ok(())
}

/// How long after SIGTERM (and the shutdown delay) the process may take to stop; past it, it
/// exits anyway. Kubernetes waits 30 s before SIGKILL; a rollout should not.
const EXIT_DEADLINE: Duration = Duration::from_secs(9);

/// Arms a deadline (on a thread of its own, so nothing stuck in the runtime can hold it up)
/// after which the process exits whatever it is still doing.
fn exit_by_deadline() {
    std::thread::spawn(|| {
        std::thread::sleep(EXIT_DEADLINE);
        tracing::error!(seconds = EXIT_DEADLINE.as_secs(), "not stopped within the exit deadline: exiting now");
        std::process::exit(1);
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubes_line_per_failed_request_is_off_unless_asked_for() {
        let off = format!("{KUBE_REQUEST_LOG}=off");
        for spec in [DEFAULT_LOG, "info", "debug,zhengyun=trace"] {
            let f = log_filter(spec).unwrap_or_else(|e| panic!("{spec}: {e}"));
            assert!(f.to_string().contains(&off), "{spec}: {f}");
        }
        let asked = log_filter(&format!("info,{KUBE_REQUEST_LOG}=error")).unwrap_or_else(|e| panic!("{e}"));
        assert!(!asked.to_string().contains(&off), "{asked}");
        assert!(log_filter("info,=[").is_err(), "a bad filter is refused, not ignored");
    }
}
