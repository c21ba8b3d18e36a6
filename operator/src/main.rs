//! `zhengyun-operator`: runs the controllers, or prints the CRDs.
#![forbid(unsafe_code)]

use std::{net::SocketAddr, sync::Arc, time::Duration};

use clap::{Parser, Subcommand};
use kube::{Api, api::ListParams};
use tokio::sync::watch;
use tracing_subscriber::{EnvFilter, layer::SubscriberExt, reload, util::SubscriberInitExt};
use zhengyun::{
    Error,
    admin::{self, LogReload},
    api::{self, Tenant},
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

#[derive(Parser)]
#[command(
    name = "zhengyun-operator",
    version,
    about = "zhengyun (政云): the control plane of a government private cloud"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the operator (the default).
    Run(Box<RunArgs>),
    /// Print the CustomResourceDefinitions as YAML.
    Crd,
    /// Print the JSON Schema of the tenant chart's values (derived from the Tenant CRD).
    TenantValuesSchema,
    /// Measure this build's SM2 sign and verify rates on one core (hack/bench-sm2.sh compares
    /// them with `tongsuo speed sm2`).
    BenchSm2 {
        #[arg(long, default_value_t = 3)]
        seconds: u64,
    },
    /// Plan the consolidation of every ComputerRoom's inventory onto the free capacity of the
    /// cluster's zone nodes, as `zhengyun-plan` does from CSV files (same report, same formats).
    Plan {
        /// markdown, json or html.
        #[arg(long, default_value = "markdown")]
        format: String,
        /// Write the report here instead of standard output.
        #[arg(short, long)]
        output: Option<String>,
        /// The share of each node's free capacity that may be used (0.7 keeps 30% free).
        #[arg(long, default_value_t = zhengyun::rooms::plan::HEADROOM)]
        headroom: f64,
        /// Monthly prices (planner's prices.csv format); without them no money appears.
        #[arg(long)]
        prices: Option<String>,
    },
    /// Write the assessor's report (等保 2.0 level 3 and 密评 level 3 evidence) from the current
    /// cluster: a self-contained HTML page and its JSON.
    Evidence {
        /// Where to write evidence.html and evidence.json.
        #[arg(short, long, default_value = ".")]
        output: String,
        /// The operator's ClusterRole (the chart names it after the release).
        #[arg(long, default_value = "zhengyun-operator")]
        operator_role: String,
        /// A traffic matrix observed on real pods (the e2e suite's matrix-*.md), shown beside
        /// the computed one.
        #[arg(long)]
        observed: Option<String>,
        /// The first-instant test's measured result (the e2e suite's first-instant.txt), quoted
        /// in the boundary-protection check.
        #[arg(long)]
        first_instant: Option<String>,
        /// As `reachability`: ClusterNetworkPolicies count only when the network plugin
        /// enforces them.
        #[arg(long, env = "ZHENGYUN_CLUSTER_NETWORK_POLICY_ENFORCED", default_value_t = false)]
        cluster_network_policy_enforced: bool,
    },
    /// Print the department tree from the current cluster: each department's budget, what is
    /// handed down from it, what its subtree uses, and its tenants.
    Tree,
    /// Print who can reach whom, from the policies in force in the current cluster.
    Reachability {
        /// Explain one verdict: the source group (a tenant, `ns/NAME` or `(outside)`) and the
        /// destination group; the two ends, the port, and each policy and rule that decided.
        #[arg(long, num_args = 2, value_names = ["FROM", "TO"])]
        explain: Option<Vec<String>>,
        /// `text` for a person, `json` for machines (with `--explain`).
        #[arg(long, short = 'o', value_parser = ["text", "json"], default_value = "text")]
        output: String,
        /// The cluster's network plugin enforces ClusterNetworkPolicy (as the operator's flag
        /// of that name): only then are they part of the verdict. Served but not declared
        /// enforced, they are left out, and this says so.
        #[arg(long, env = "ZHENGYUN_CLUSTER_NETWORK_POLICY_ENFORCED", default_value_t = false)]
        cluster_network_policy_enforced: bool,
        /// Instead of the matrix between groups, the verdict for every pair of the running pods
        /// (outside `kube-*` namespaces) and these outside addresses, on `--ports`, as JSON lines
        /// `{"from", "to", "port", "allowed"}` (pods named `namespace/name`).
        #[arg(long)]
        pods: bool,
        /// Outside addresses for `--pods`.
        #[arg(long, value_delimiter = ',')]
        outside: Vec<std::net::IpAddr>,
        /// TCP ports for `--pods`.
        #[arg(long, value_delimiter = ',', default_value = "8080")]
        ports: Vec<u16>,
    },
}

#[derive(Parser, Clone)]
struct RunArgs {
    /// Address of the admin server (/metrics, /healthz, /readyz).
    #[arg(long, env = "ZHENGYUN_ADMIN_ADDR", default_value = "127.0.0.1:8080")]
    admin_addr: SocketAddr,
    /// Namespace of the leader-election Lease.
    #[arg(long, env = "POD_NAMESPACE", default_value = "zhengyun-system")]
    lease_namespace: String,
    /// Name of the leader-election Lease; replicas sharing it elect one leader.
    #[arg(long, env = "ZHENGYUN_LEASE_NAME", default_value = "zhengyun-operator")]
    lease_name: String,
    /// This replica's identity in the election (default: host name and process id).
    #[arg(long, env = "POD_NAME")]
    identity: Option<String>,
    /// Seconds a lease is valid without renewal.
    #[arg(long, default_value_t = 15)]
    lease_duration: u64,
    /// Seconds between renewals and retries.
    #[arg(long, default_value_t = 2)]
    lease_retry: u64,
    /// Seconds between SIGTERM and closing the webhook: the replica reports not ready at once,
    /// and keeps answering admissions while its endpoint leaves every node's Service rules (a
    /// replica that closes first gets "connection refused" admissions during a rollout).
    #[arg(long, default_value_t = 0)]
    shutdown_delay: u64,
    /// The zhengyun-gateway image SecureGateways run (the chart sets it); without it a
    /// SecureGateway is reported unservable.
    #[arg(long, env = "ZHENGYUN_GATEWAY_IMAGE")]
    gateway_image: Option<String>,
    /// The probe image (hack/build-images.sh): with it, every new tenant pod starts with the
    /// isolation gate, and the operator runs the canary the gates check against on every node
    /// (docs/security.md). Needs the webhook.
    #[arg(long, env = "ZHENGYUN_ISOLATION_GATE_IMAGE")]
    isolation_gate_image: Option<String>,
    /// Serve the admission webhook on this address (every replica serves it).
    #[arg(long, env = "ZHENGYUN_WEBHOOK_ADDR")]
    webhook_addr: Option<SocketAddr>,
    /// Register the webhook at this URL (the local control plane: https://127.0.0.1:PORT).
    #[arg(long, env = "ZHENGYUN_WEBHOOK_URL", conflicts_with = "webhook_service")]
    webhook_url: Option<String>,
    /// Register the webhook as this Service, `namespace/name:port` (in a cluster).
    #[arg(long, env = "ZHENGYUN_WEBHOOK_SERVICE")]
    webhook_service: Option<String>,
    /// The ClusterRole (the chart's own) that owns the webhook registrations, so that deleting
    /// the release deletes them too: they fail closed, and would otherwise block every guarded
    /// change once no operator answers.
    #[arg(long, env = "ZHENGYUN_REGISTRATION_OWNER")]
    registration_owner: Option<String>,
    /// Log format: `json` (production) or `text`.
    #[arg(long, env = "ZHENGYUN_LOG_FORMAT", default_value = "json")]
    log_format: String,
    /// The cluster's network plugin enforces ClusterNetworkPolicy. Only then is the tenant
    /// boundary left to it: an API that is served but enforced by nothing would let tenants'
    /// own NetworkPolicies open what the cluster policy was meant to close.
    #[arg(long, env = "ZHENGYUN_CLUSTER_NETWORK_POLICY_ENFORCED", default_value_t = false)]
    cluster_network_policy_enforced: bool,
}

fn init_logging(format: &str) -> LogReload {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,kube=warn,tower=warn,hyper=warn"));
    let (filter, handle) = reload::Layer::new(filter);
    let registry = tracing_subscriber::registry().with(filter);
    if format == "text" {
        registry.with(tracing_subscriber::fmt::layer()).init();
    } else {
        registry.with(tracing_subscriber::fmt::layer().json().flatten_event(true)).init();
    }
    Arc::new(move |spec: &str| {
        let f = EnvFilter::try_new(spec).map_err(|e| e.to_string())?;
        handle.reload(f).map_err(|e| e.to_string())
    })
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

fn webhook_endpoint(args: &RunArgs) -> anyhow::Result<Option<zhengyun::admission::config::Endpoint>> {
    use zhengyun::admission::config::Endpoint;
    if let Some(url) = &args.webhook_url {
        return Ok(Some(Endpoint::Url(url.clone())));
    }
    let Some(svc) = &args.webhook_service else { return Ok(None) };
    let (ns_name, port) = svc.rsplit_once(':').unwrap_or((svc.as_str(), "443"));
    let (namespace, name) = ns_name
        .split_once('/')
        .ok_or_else(|| anyhow::anyhow!("--webhook-service takes namespace/name:port, not {svc}"))?;
    Ok(Some(Endpoint::Service { namespace: namespace.into(), name: name.into(), port: port.parse()? }))
}

async fn run(args: RunArgs, reload: LogReload) -> anyhow::Result<()> {
    let metrics = Arc::new(Metrics::new());
    let concern_metrics = manager::ConcernMetrics::new(&metrics);
    let identity = args.identity.clone().unwrap_or_else(|| {
        let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "zhengyun".into());
        format!("{host}-{}", std::process::id())
    });
    let mut config = kube::Config::infer().await?;
    // The replica in the User-Agent: the API server's audit log then tells two replicas apart.
    let agent = format!("zhengyun-operator/{} ({identity})", env!("CARGO_PKG_VERSION"));
    config.headers.push((http::header::USER_AGENT, http::HeaderValue::from_str(&agent)?));
    let host = config.cluster_url.host().unwrap_or("unknown").to_string();
    let layer = zhengyun::rest_metrics::RestMetricsLayer { requests: metrics.rest_requests.clone(), host };
    let client = kube::client::ClientBuilder::try_from(config)?.with_layer(&layer).build();
    let ctx = Context::new(client.clone(), &identity, metrics.clone(), &args.lease_namespace);
    if let Some(image) = &args.gateway_image {
        let _ = ctx.gateway_image.set(image.clone());
    }
    let (stop_tx, stop_rx) = watch::channel(false);

    let admin = tokio::spawn(admin::serve(args.admin_addr, ctx.clone(), reload, stop_rx.clone()));

    // Fail fast, with the fix in the message, when the CRD is missing. Metadata only: a
    // malformed Tenant stored in etcd must not stop the operator from starting.
    match Api::<kube::core::PartialObjectMeta<Tenant>>::all(client.clone())
        .list_metadata(&ListParams::default().limit(1))
        .await
    {
        Err(kube::Error::Api(s)) if s.code == 404 => {
            return Err(Error::CrdMissing { crd: "tenants.zhengyun.io" }.into());
        }
        Err(e) => return Err(e.into()),
        Ok(_) => {}
    }
    // Optional APIs are detected, not assumed; that one is enforced is the admin's word, as
    // nothing in the API says whether a network plugin implements it.
    let served = zhengyun::isolation::served(&client).await;
    let cnp = served && args.cluster_network_policy_enforced;
    if served && !cnp {
        tracing::warn!(
            "the ClusterNetworkPolicy API is served but --cluster-network-policy-enforced is not set, so it is not \
             relied on (not enforced, as far as zhengyun knows): tenants are isolated by NetworkPolicies and the webhook \
             keeps restricting tenants' own policies"
        );
    } else if args.cluster_network_policy_enforced && !served {
        tracing::warn!(
            "--cluster-network-policy-enforced is set but the ClusterNetworkPolicy API is not served: ignored"
        );
    }
    ctx.cluster_network_policy.store(cnp, std::sync::atomic::Ordering::Relaxed);
    tracing::info!(
        isolation = if cnp { "ClusterNetworkPolicy (Admin tier) + NetworkPolicy" } else { "NetworkPolicy + webhook" },
        "tenant isolation"
    );
    let gate = args
        .isolation_gate_image
        .clone()
        .map(|image| zhengyun::gate::Config { image, namespace: args.lease_namespace.clone() });
    if gate.is_some() && args.webhook_addr.is_none() {
        anyhow::bail!("--isolation-gate-image needs the webhook (--webhook-addr): the webhook injects the gate");
    }
    let webhook = match (args.webhook_addr, webhook_endpoint(&args)?) {
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
    let election = tokio::spawn(leader::run(client.clone(), cfg, lead_tx, stop_rx.clone()));
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
    let term =
        manager::Term { metrics: concern_metrics, webhook, gate, registration_owner: args.registration_owner.clone() };
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
