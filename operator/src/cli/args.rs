//! The operator's command line: the commands, and `run`'s flags.

use std::net::SocketAddr;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "zhengyun-operator",
    version,
    about = "zhengyun (政云): the control plane of a government private cloud"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Subcommand)]
pub enum Command {
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
        #[arg(long, default_value_t = crate::rooms::plan::HEADROOM)]
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
pub struct RunArgs {
    /// Address of the admin server (/metrics, /healthz, /readyz).
    #[arg(long, env = "ZHENGYUN_ADMIN_ADDR", default_value = "127.0.0.1:8080")]
    pub admin_addr: SocketAddr,
    /// Namespace of the leader-election Lease.
    #[arg(long, env = "POD_NAMESPACE", default_value = "zhengyun-system")]
    pub lease_namespace: String,
    /// Name of the leader-election Lease; replicas sharing it elect one leader.
    #[arg(long, env = "ZHENGYUN_LEASE_NAME", default_value = "zhengyun-operator")]
    pub lease_name: String,
    /// This replica's identity in the election (default: host name and process id).
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,
    /// Seconds a lease is valid without renewal.
    #[arg(long, default_value_t = 15)]
    pub lease_duration: u64,
    /// Seconds between renewals and retries.
    #[arg(long, default_value_t = 2)]
    pub lease_retry: u64,
    /// Seconds between SIGTERM and closing the webhook: the replica reports not ready at once,
    /// and keeps answering admissions while its endpoint leaves every node's Service rules (a
    /// replica that closes first gets "connection refused" admissions during a rollout).
    #[arg(long, default_value_t = 0)]
    pub shutdown_delay: u64,
    /// The zhengyun-gateway image SecureGateways run (the chart sets it); without it a
    /// SecureGateway is reported unservable.
    #[arg(long, env = "ZHENGYUN_GATEWAY_IMAGE")]
    pub gateway_image: Option<String>,
    /// The probe image (hack/build-images.sh): with it, every new tenant pod starts with the
    /// isolation gate, and the operator runs the canary the gates check against on every node
    /// (docs/security.md). Needs the webhook.
    #[arg(long, env = "ZHENGYUN_ISOLATION_GATE_IMAGE")]
    pub isolation_gate_image: Option<String>,
    /// Run only these of the leader's controllers and tasks (names as in
    /// `controller_runtime_reconcile_total`, comma-separated), or `none`: the leader then keeps
    /// the webhook's registration and runs nothing else (the admission benchmark runs so).
    /// Default: all. An unknown name stops the operator at start.
    #[arg(long, env = "ZHENGYUN_CONTROLLERS", value_delimiter = ',')]
    pub controllers: Option<Vec<String>>,
    /// Serve the admission webhook on this address (every replica serves it).
    #[arg(long, env = "ZHENGYUN_WEBHOOK_ADDR")]
    pub webhook_addr: Option<SocketAddr>,
    /// Register the webhook at this URL (the local control plane: https://127.0.0.1:PORT).
    #[arg(long, env = "ZHENGYUN_WEBHOOK_URL", conflicts_with = "webhook_service")]
    pub webhook_url: Option<String>,
    /// Register the webhook as this Service, `namespace/name:port` (in a cluster).
    #[arg(long, env = "ZHENGYUN_WEBHOOK_SERVICE")]
    pub webhook_service: Option<String>,
    /// The ClusterRole (the chart's own) that owns the webhook registrations, so that deleting
    /// the release deletes them too: they fail closed, and would otherwise block every guarded
    /// change once no operator answers.
    #[arg(long, env = "ZHENGYUN_REGISTRATION_OWNER")]
    pub registration_owner: Option<String>,
    /// Which tenants have series of their own on /metrics: `problems` (those not Ready, stale,
    /// or using 80% of a quota resource; at most 500, the most urgent) or `all` (about 14
    /// series a tenant). Counts over every tenant are there either way.
    #[arg(long, env = "ZHENGYUN_TENANT_SERIES", default_value = "problems")]
    pub tenant_series: crate::tenancy::series::Scope,
    /// Log format: `json` (production) or `text`.
    #[arg(long, env = "ZHENGYUN_LOG_FORMAT", default_value = "json")]
    pub log_format: String,
    /// The cluster's network plugin enforces ClusterNetworkPolicy. Only then is the tenant
    /// boundary left to it: an API that is served but enforced by nothing would let tenants'
    /// own NetworkPolicies open what the cluster policy was meant to close.
    #[arg(long, env = "ZHENGYUN_CLUSTER_NETWORK_POLICY_ENFORCED", default_value_t = false)]
    pub cluster_network_policy_enforced: bool,
}

impl RunArgs {
    /// Where the API server reaches the webhook (`--webhook-url` or `--webhook-service`).
    pub fn webhook_endpoint(&self) -> anyhow::Result<Option<crate::admission::config::Endpoint>> {
        use crate::admission::config::Endpoint;
        if let Some(url) = &self.webhook_url {
            return Ok(Some(Endpoint::Url(url.clone())));
        }
        let Some(svc) = &self.webhook_service else { return Ok(None) };
        let (ns_name, port) = svc.rsplit_once(':').unwrap_or((svc.as_str(), "443"));
        let (namespace, name) = ns_name
            .split_once('/')
            .ok_or_else(|| anyhow::anyhow!("--webhook-service takes namespace/name:port, not {svc}"))?;
        Ok(Some(Endpoint::Service { namespace: namespace.into(), name: name.into(), port: port.parse()? }))
    }
}
