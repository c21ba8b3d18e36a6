//! The scale benchmark's driver (run by `bench/scale.sh`, which starts the control planes and
//! the release operator). Two modes, each against its own fresh control plane:
//!
//! - `floor N`: a bare kube-rs client, 32 concurrent workers, no client-side rate limit, writes
//!   the N Tenants and exactly the children the operator would (built by the operator's own pure
//!   builders), then waits until the quota controller enforces every ResourceQuota. This is what
//!   the API server and the quota controller allow: the floor.
//! - `operator N PID ADMIN`: creates the same N Tenants with the same 32 workers while the
//!   operator (process PID, admin port ADMIN) runs, waits until every Tenant is Ready, then
//!   measures what it cost, the idle minute after, drift repair, and pod admission through the
//!   webhook.
//!
//! Each prints `key value` lines that the script turns into the table.

use std::time::{Duration, Instant};

use futures::{StreamExt, stream};
use k8s_openapi::api::{
    core::v1::{Pod, ResourceQuota, ServiceAccount},
    networking::v1::NetworkPolicy,
};
use kube::{
    Api, Client,
    api::{Patch, PatchParams, PostParams},
};
use serde_json::json;
use zhengyun::{
    api::{
        ContainerLimits, CpuMemory, Department, Owner, OwnerKind, Tenant, TenantNamespace, TenantQuota, TenantSpec,
        amount::Count,
    },
    tenancy::{build, quota, validate},
};

const WORKERS: usize = 32;

/// The operator's allocator, so the `memory` mode counts what the operator would hold.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// The department tree the tenants live under (issue 23): one province, 21 cities, 6 counties
/// each; tenant `i` belongs to department `i % 148`, so every department holds tenants.
const CITIES: usize = 21;
const COUNTIES: usize = 6;
const DEPARTMENTS: usize = 1 + CITIES + CITIES * COUNTIES;

/// Department `d`'s code and its parent's: 0 is the province, 1..=21 the cities, then the
/// counties of city 1, of city 2, ...
fn department(d: usize) -> (String, Option<String>) {
    match d {
        0 => ("P".into(), None),
        c if c <= CITIES => (format!("C{c:02}"), Some("P".into())),
        k => {
            let (city, county) = ((k - CITIES - 1) / COUNTIES + 1, (k - CITIES - 1) % COUNTIES + 1);
            (format!("C{city:02}-K{county}"), Some(format!("C{city:02}")))
        }
    }
}

/// The tree's Department objects, each budgeted for its own tenants plus what it hands down to
/// its children (plus one tenant's worth of room), so every tenant is admitted and Ready.
fn departments(n: usize) -> Vec<zhengyun::api::department::Department> {
    let own = |d: usize| (0..n).filter(|i| i % DEPARTMENTS == d).count();
    let children = |d: usize| -> Vec<usize> {
        match d {
            0 => (1..=CITIES).collect(),
            c if c <= CITIES => (0..COUNTIES).map(|k| CITIES + 1 + (c - 1) * COUNTIES + k).collect(),
            _ => Vec::new(),
        }
    };
    fn held(d: usize, own: &dyn Fn(usize) -> usize, children: &dyn Fn(usize) -> Vec<usize>) -> usize {
        own(d) + 1 + children(d).into_iter().map(|c| held(c, own, children)).sum::<usize>()
    }
    (0..DEPARTMENTS)
        .map(|d| {
            let (code, parent) = department(d);
            let k = held(d, &own, &children);
            zhengyun::api::department::Department::new(
                &code.to_lowercase(),
                zhengyun::api::department::DepartmentSpec {
                    code: code.clone(),
                    name_zh: format!("部门 {code}"),
                    name: None,
                    parent,
                    admin_group: None,
                    budget: TenantQuota {
                        cpu: Some(format!("{}", 4 * k).as_str().into()),
                        memory: Some(format!("{}Gi", 8 * k).as_str().into()),
                        pods: Some(Count::from(20 * k as i64)),
                        ..Default::default()
                    },
                },
            )
        })
        .collect()
}

/// Creates the department tree, parents first.
async fn create_departments(client: &Client, n: usize) -> anyhow::Result<()> {
    let api: Api<zhengyun::api::department::Department> = Api::all(client.clone());
    for d in departments(n) {
        api.create(&PostParams::default(), &d).await?;
    }
    Ok(())
}

fn tenant(i: usize) -> Tenant {
    let name = format!("t{i:05}");
    let (code, _) = department(i % DEPARTMENTS);
    Tenant::new(
        &name,
        TenantSpec {
            department: Department { code, name: format!("Department {i}"), name_zh: None },
            zone: "extranet".into(),
            arch: None,
            owners: vec![Owner { kind: OwnerKind::Group, name: format!("dept-{i:05}") }],
            namespaces: vec![TenantNamespace { suffix: "apps".into() }, TenantNamespace { suffix: "data".into() }],
            quota: TenantQuota {
                cpu: Some("4".into()),
                memory: Some("8Gi".into()),
                pods: Some(Count::from(20)),
                ..Default::default()
            },
            limits: Some(ContainerLimits {
                default_request: Some(CpuMemory { cpu: Some("100m".into()), memory: Some("128Mi".into()) }),
                default_limit: None,
                max: Some(CpuMemory { cpu: Some("2".into()), memory: Some("4Gi".into()) }),
            }),
            security_level: 3,
            deletion_policy: Default::default(),
            confirm_data_deletion: false,
            certificates: vec![],
            gateways: vec![],
        },
    )
}

fn out(key: &str, value: impl std::fmt::Display) {
    println!("{key} {value}");
}

/// Creates the N tenants; how long each create took (with the operator: its admission, budget
/// check against the department tree included).
async fn create_tenants(client: &Client, n: usize) -> anyhow::Result<Vec<(usize, String, f64)>> {
    let api: Api<Tenant> = Api::all(client.clone());
    let results: Vec<_> = stream::iter(0..n)
        .map(|i| {
            let api = api.clone();
            async move {
                let t = Instant::now();
                let created = api.create(&PostParams::default(), &tenant(i)).await?;
                Ok::<_, kube::Error>((i, created.metadata.uid.unwrap_or_default(), t.elapsed().as_secs_f64()))
            }
        })
        .buffer_unordered(WORKERS)
        .collect()
        .await;
    let failed = results.iter().filter(|r| r.is_err()).count();
    anyhow::ensure!(failed == 0, "{failed} tenant creates failed: {:?}", results.iter().find(|r| r.is_err()));
    Ok(results.into_iter().flatten().collect())
}

fn creates(prefix: &str, created: &[(usize, String, f64)]) {
    let took: Vec<f64> = created.iter().map(|c| c.2).collect();
    out(&format!("{prefix}_tenant_create_p50_seconds"), format!("{:.3}", percentile(took.clone(), 0.50)));
    out(&format!("{prefix}_tenant_create_p99_seconds"), format!("{:.3}", percentile(took, 0.99)));
}

/// The objects the operator writes for a tenant, in the order it writes them: its own desired
/// set (`build::desired`, destructured whole, so a kind added there shows up here), for a
/// tenant whose UID is `uid` (the owner of its reader role) and whose quotas start empty.
fn children(t: &Tenant, uid: &str) -> anyhow::Result<Vec<serde_json::Value>> {
    let vt = validate::validate(t)?;
    let placement = zhengyun::zones::ZonePlacement {
        node_selector: [("zhengyun.io/zone".to_string(), "extranet".to_string())].into(),
        ..Default::default()
    };
    let observed: Vec<quota::Observed> = vt.namespaces.iter().map(|_| Default::default()).collect();
    let (hards, _) = quota::split(&vt.quota, &observed);
    let hards: Vec<_> = hards.into_iter().map(Some).collect();
    let department = t.spec.department.code.to_lowercase();
    let inputs = build::Inputs {
        owned: &vt.namespaces,
        quotas: &hards,
        placement: &placement,
        system: "zhengyun-system",
        cluster_policy_owner: None,
        uid: Some(uid),
        department: Some(&department),
    };
    let build::Desired {
        namespaces,
        policies,
        cluster_policy,
        quotas,
        limits,
        certificates,
        gateways,
        bindings,
        reader,
    } = build::desired(&vt, &inputs);
    anyhow::ensure!(cluster_policy.is_none() && certificates.is_empty() && gateways.is_empty(), "not in the benchmark");
    let mut objs = Vec::new();
    let mut push = |v: serde_json::Result<serde_json::Value>| v.map(|v| objs.push(v));
    namespaces.iter().try_for_each(|o| push(serde_json::to_value(o)))?;
    policies.iter().try_for_each(|o| push(serde_json::to_value(o)))?;
    quotas.iter().try_for_each(|o| push(serde_json::to_value(o)))?;
    limits.iter().try_for_each(|o| push(serde_json::to_value(o)))?;
    bindings.iter().try_for_each(|o| push(serde_json::to_value(o)))?;
    if let Some((role, binding)) = reader {
        push(serde_json::to_value(role))?;
        push(serde_json::to_value(binding))?;
    }
    Ok(objs)
}

async fn apply_value(client: &Client, v: serde_json::Value) -> Result<(), kube::Error> {
    let kind = v["kind"].as_str().unwrap_or_default().to_string();
    let name = v["metadata"]["name"].as_str().unwrap_or_default().to_string();
    let ns = v["metadata"]["namespace"].as_str().map(str::to_string);
    let pp = PatchParams::apply("zhengyun-bench-floor").force();
    let (group, version) = match v["apiVersion"].as_str().unwrap_or_default().split_once('/') {
        Some((g, v)) => (g.to_string(), v.to_string()),
        None => (String::new(), v["apiVersion"].as_str().unwrap_or("v1").to_string()),
    };
    let gvk = kube::api::GroupVersionKind::gvk(&group, &version, &kind);
    let plural = match kind.as_str() {
        "NetworkPolicy" => "networkpolicies".to_string(),
        other => format!("{}s", other.to_lowercase()),
    };
    let plural = plural.as_str();
    let ar = kube::api::ApiResource::from_gvk_with_plural(&gvk, plural);
    let api: Api<kube::api::DynamicObject> = match ns {
        Some(ns) => Api::namespaced_with(client.clone(), &ns, &ar),
        None => Api::all_with(client.clone(), &ar),
    };
    api.patch(&name, &pp, &Patch::Apply(&v)).await.map(|_| ())
}

/// How many objects of a kind satisfy a test, kept from a watch: waiting costs the API server
/// one event per change, not a list of every object every half second (at 10,000 tenants such
/// a list is tens of megabytes the API server encodes while the system under test waits on it).
struct Watched {
    count: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Watched {
    fn start<K>(api: Api<K>, config: kube::runtime::watcher::Config, ok: fn(&K) -> bool) -> Self
    where
        K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + 'static,
    {
        use kube::runtime::{
            WatchStreamExt,
            watcher::{Event, watcher},
        };
        let count = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let shown = count.clone();
        let task = tokio::spawn(async move {
            let key = |o: &K| {
                format!("{}/{}", o.meta().namespace.as_deref().unwrap_or(""), o.meta().name.as_deref().unwrap_or(""))
            };
            let mut tally = Tally::default();
            let mut events = std::pin::pin!(watcher(api, config).default_backoff());
            while let Some(event) = events.next().await {
                match event {
                    Ok(Event::Apply(o)) => tally.set(key(&o), Some(ok(&o))),
                    Ok(Event::Delete(o)) => tally.set(key(&o), None),
                    Ok(Event::Init) => tally.relist(),
                    Ok(Event::InitApply(o)) => tally.listed(key(&o), ok(&o)),
                    Ok(Event::InitDone) => tally.relisted(),
                    Err(_) => continue,
                }
                shown.store(tally.passing, std::sync::atomic::Ordering::Relaxed);
            }
        });
        Watched { count, task }
    }

    /// Waits until `want` objects pass, or an hour.
    async fn reach(&self, want: usize, what: &str, start: Instant) -> anyhow::Result<()> {
        while self.count.load(std::sync::atomic::Ordering::Relaxed) < want {
            anyhow::ensure!(start.elapsed() < Duration::from_secs(3600), "{what}: never all");
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        Ok(())
    }
}

/// Whether each object passes, and how many do: kept as events come, not recounted (tens of
/// thousands of events over tens of thousands of objects, on the machine under test).
#[derive(Default)]
struct Tally {
    seen: std::collections::HashMap<String, bool>,
    listing: std::collections::HashMap<String, bool>,
    passing: usize,
}

impl Tally {
    /// An object changed (`Some(passes)`) or went (`None`).
    fn set(&mut self, key: String, passes: Option<bool>) {
        let was = match passes {
            Some(p) => self.seen.insert(key, p),
            None => self.seen.remove(&key),
        };
        self.passing = self.passing + usize::from(passes == Some(true)) - usize::from(was == Some(true));
    }

    fn relist(&mut self) {
        self.listing.clear();
    }

    fn listed(&mut self, key: String, passes: bool) {
        self.listing.insert(key, passes);
    }

    /// A relist is complete: it replaces what was seen.
    fn relisted(&mut self) {
        self.seen = std::mem::take(&mut self.listing);
        self.passing = self.seen.values().filter(|p| **p).count();
    }
}

impl Drop for Watched {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn enforced(q: &ResourceQuota) -> bool {
    q.status.as_ref().and_then(|s| s.hard.as_ref()).is_some_and(|h| h.contains_key("requests.cpu"))
}

async fn floor(client: &Client, n: usize) -> anyhow::Result<()> {
    create_departments(client, n).await?;
    let quotas = Watched::start(
        Api::<ResourceQuota>::all(client.clone()),
        kube::runtime::watcher::Config::default().labels("app.kubernetes.io/managed-by=zhengyun"),
        enforced,
    );
    let start = Instant::now();
    let created = create_tenants(client, n).await?;
    creates("floor", &created);
    let uids: std::collections::HashMap<usize, String> = created.into_iter().map(|(i, uid, _)| (i, uid)).collect();
    let uids = &uids;
    // Each tenant's children in order (a namespace before what goes in it), tenants in parallel.
    let results: Vec<_> = stream::iter(0..n)
        .map(|i| {
            let client = client.clone();
            async move {
                let mut writes = 0usize;
                let uid = uids.get(&i).cloned().unwrap_or_default();
                for v in children(&tenant(i), &uid).map_err(|e| kube::Error::Service(e.into()))? {
                    apply_value(&client, v).await?;
                    writes += 1;
                }
                Ok::<usize, kube::Error>(writes)
            }
        })
        .buffer_unordered(WORKERS)
        .collect()
        .await;
    let written = start.elapsed();
    let mut objects = n;
    for r in &results {
        match r {
            Ok(w) => objects += w,
            Err(e) => anyhow::bail!("a floor write failed: {e}"),
        }
    }
    out("floor_written_seconds", format!("{:.1}", written.as_secs_f64()));
    out("floor_objects", objects);
    quotas.reach(2 * n, "quotas enforced", start).await?;
    drop(quotas);
    out("floor_seconds", format!("{:.1}", start.elapsed().as_secs_f64()));
    served(client, "floor", n).await;
    // The same pods with no webhook: what the API server itself takes on this machine.
    let pods = create_pods(client, n).await?;
    out("floor_pod_create_p50_seconds", format!("{:.3}", percentile(pods.clone(), 0.5)));
    out("floor_pod_create_p99_seconds", format!("{:.3}", percentile(pods, 0.99)));
    Ok(())
}

/// One process's CPU seconds (user + system) and peak resident memory, from /proc.
fn proc_stats(pid: u32) -> (f64, f64) {
    let ticks = 100.0; // USER_HZ on Linux
    let cpu = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            let rest = s.rsplit_once(')')?.1.split_whitespace().collect::<Vec<_>>();
            let u: f64 = rest.get(11)?.parse().ok()?;
            let k: f64 = rest.get(12)?.parse().ok()?;
            Some((u + k) / ticks)
        })
        .unwrap_or(0.0);
    (cpu, status_mib(pid, "VmHWM:"))
}

/// A memory figure of `/proc/PID/status` (`VmHWM:` peak, `VmRSS:` now), in MiB.
fn status_mib(pid: u32, field: &str) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with(field)).map(str::to_string))
        .and_then(|l| l.split_whitespace().nth(1).and_then(|k| k.parse::<f64>().ok()))
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

async fn metrics(admin: &str) -> String {
    let Ok(mut stream) = tokio::net::TcpStream::connect(admin).await else { return String::new() };
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let req = format!("GET /metrics HTTP/1.0\r\nHost: {admin}\r\n\r\n");
    if stream.write_all(req.as_bytes()).await.is_err() {
        return String::new();
    }
    let mut body = String::new();
    let _ = stream.read_to_string(&mut body).await;
    body
}

/// Sums a metric's series whose line contains every filter.
fn sum(text: &str, metric: &str, filters: &[&str]) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(metric) && filters.iter().all(|f| l.contains(f)))
        .filter_map(|l| l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()))
        .sum()
}

struct Requests {
    all: f64,
    writes: f64,
    lease: f64,
    ours: f64,
}

async fn requests(admin: &str) -> Requests {
    let m = metrics(admin).await;
    let all = sum(&m, "rest_client_requests_total", &[]);
    let writes = ["POST", "PUT", "PATCH", "DELETE"]
        .iter()
        .map(|v| sum(&m, "rest_client_requests_total", &[&format!("method=\"{v}\"")]))
        .sum();
    let lease = sum(&m, "zhengyun_lease_writes_total", &[]);
    let ours = sum(&m, "zhengyun_writes_total", &[]);
    Requests { all, writes, lease, ours }
}

/// What the API server served while a phase converged, from its own `/metrics` (each phase has
/// its own control plane): requests a tenant other than watches and Leases, and the quota
/// controller's status writes a namespace (1 when each quota is enforced in one write).
async fn served(client: &Client, phase: &str, n: usize) {
    let request = http::Request::get("/metrics").body(Vec::new());
    let Ok(text) = (match request {
        Ok(r) => client.request_text(r).await.map_err(anyhow::Error::from),
        Err(e) => Err(e.into()),
    }) else {
        out(&format!("{phase}_apiserver_requests_per_tenant"), "unread");
        return;
    };
    let all = sum(&text, "apiserver_request_total{", &[]);
    let watches = sum(&text, "apiserver_request_total{", &["verb=\"WATCH\""]);
    let leases = sum(&text, "apiserver_request_total{", &["resource=\"leases\""]);
    let quota_status =
        sum(&text, "apiserver_request_total{", &["resource=\"resourcequotas\"", "subresource=\"status\""]);
    out(&format!("{phase}_apiserver_requests_per_tenant"), format!("{:.1}", (all - watches - leases) / n as f64));
    out(&format!("{phase}_quota_status_writes_per_namespace"), format!("{:.2}", quota_status / (2 * n) as f64));
}

fn percentile(mut v: Vec<f64>, p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i.min(v.len() - 1)]
}

fn ready(t: &Tenant) -> bool {
    t.status.as_ref().is_some_and(|s| {
        s.conditions.iter().any(|c| c.type_ == "Ready" && c.status == "True")
            && s.observed_generation == t.metadata.generation
    })
}

/// Creates 200 pods in tenant namespaces one at a time, timing each create: with the
/// operator's webhook in the operator phase, with none in the floor's (the API server's own).
async fn create_pods(client: &Client, n: usize) -> anyhow::Result<Vec<f64>> {
    let pod = |name: &str| -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": name},
            "spec": {
                "securityContext": {"runAsNonRoot": true, "runAsUser": 1000, "seccompProfile": {"type": "RuntimeDefault"}},
                "containers": [{"name": "app", "image": "registry.local/app:1",
                    "securityContext": {"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}}}]
            }
        }))
        .unwrap_or_default()
    };
    let mut admissions = Vec::new();
    for k in 0..200usize {
        let i = (k * 104729) % n;
        let ns = format!("t{i:05}-data");
        // The controller-manager creates each namespace's default ServiceAccount, which pod
        // admission needs; at 10,000 tenants it can still be catching up. Waited for untimed.
        let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), &ns);
        let deadline = Instant::now() + Duration::from_secs(600);
        while sas.get_opt("default").await?.is_none() {
            anyhow::ensure!(Instant::now() < deadline, "no default ServiceAccount in {ns} after 600 s");
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        let api: Api<Pod> = Api::namespaced(client.clone(), &ns);
        let t0 = Instant::now();
        api.create(&PostParams::default(), &pod(&format!("bench-{k}"))).await?;
        admissions.push(t0.elapsed().as_secs_f64());
    }
    Ok(admissions)
}

async fn operator(client: &Client, n: usize, pid: u32, admin: &str) -> anyhow::Result<()> {
    create_departments(client, n).await?;
    let ready_tenants = Watched::start(Api::<Tenant>::all(client.clone()), Default::default(), ready);
    let start = Instant::now();
    let before = metrics(admin).await;
    creates("operator", &create_tenants(client, n).await?);
    let (p50, p99) = admission::webhook_quantiles(&before, &metrics(admin).await, "validate", "Tenant");
    out("operator_tenant_validate_p50_seconds", p50);
    out("operator_tenant_validate_p99_seconds", p99);
    out("operator_created_seconds", format!("{:.1}", start.elapsed().as_secs_f64()));
    ready_tenants.reach(n, "tenants Ready", start).await?;
    drop(ready_tenants);
    let converged = start.elapsed().as_secs_f64();
    out("operator_seconds", format!("{converged:.1}"));
    served(client, "operator", n).await;
    let r = requests(admin).await;
    out("requests_per_tenant", format!("{:.1}", r.all / n as f64));
    out("writes_per_tenant", format!("{:.1}", (r.writes - r.lease) / n as f64));
    out("object_writes_per_tenant", format!("{:.1}", r.ours / n as f64));
    // Which writes, per tenant: each controller's objects and statuses (the rest of the API
    // writes are finalizers and the webhook's budget reservations).
    for l in metrics(admin).await.lines().filter(|l| l.starts_with("zhengyun_writes_total{")) {
        let (series, v) = l.rsplit_once(' ').unwrap_or_default();
        let labels = series.trim_start_matches("zhengyun_writes_total{").trim_end_matches('}').replace('"', "");
        let v: f64 = v.parse().unwrap_or(0.0);
        out(&format!("writes_of[{labels}]"), format!("{:.2}", v / n as f64));
    }
    let (cpu0, _) = proc_stats(pid);
    out("operator_cpu_seconds_converging", format!("{cpu0:.1}"));
    out("operator_cpu_ms_per_tenant", format!("{:.2}", cpu0 * 1000.0 / n as f64));

    // The idle window: nothing changes; what does the operator still do? It spans the tenants'
    // resync (every tenant is looked at again 300 s after it settled), so "idle" includes the
    // safety-net rounds, not only the quiet between them. IDLE_SECONDS shortens it for a quick run.
    let idle: u64 = std::env::var("IDLE_SECONDS").ok().and_then(|v| v.parse().ok()).unwrap_or(330);
    tokio::time::sleep(Duration::from_secs(10)).await;
    let before = requests(admin).await;
    let (cpu_a, _) = proc_stats(pid);
    let reconciles = |m: String| sum(&m, "controller_runtime_reconcile_total", &["controller=\"tenant\""]);
    let reconciles_before = reconciles(metrics(admin).await);
    tokio::time::sleep(Duration::from_secs(idle)).await;
    let after = requests(admin).await;
    let (cpu_b, hwm) = proc_stats(pid);
    let reconciles_after = reconciles(metrics(admin).await);
    let per_minute = |x: f64| x * 60.0 / idle as f64;
    out("idle_seconds", format!("{idle}"));
    out("idle_tenant_reconciles", format!("{:.0}", reconciles_after - reconciles_before));
    out("idle_requests_per_minute", format!("{:.0}", per_minute(after.all - before.all)));
    out(
        "idle_writes_per_minute",
        format!("{:.0}", per_minute((after.writes - after.lease) - (before.writes - before.lease))),
    );
    out("idle_writes_total", format!("{:.0}", (after.writes - after.lease) - (before.writes - before.lease)));
    out("idle_lease_writes_per_minute", format!("{:.0}", per_minute(after.lease - before.lease)));
    out("idle_cpu_percent", format!("{:.1}", (cpu_b - cpu_a) / idle as f64 * 100.0));
    out("peak_rss_mib", format!("{hwm:.0}"));
    out("idle_rss_mib", format!("{:.0}", status_mib(pid, "VmRSS:")));
    // What of it is the heap, as the allocator counts it (`zhengyun_heap_bytes`).
    let m = metrics(admin).await;
    for state in ["allocated", "resident"] {
        let bytes = sum(&m, &format!("zhengyun_heap_bytes{{state=\"{state}\"}}"), &[]);
        out(&format!("heap_{state}_mib"), format!("{:.0}", bytes / 1024.0 / 1024.0));
    }

    // What one scrape of /metrics carries once every tenant is Ready (issue 32).
    let t0 = Instant::now();
    let m = metrics(admin).await;
    out("metrics_scrape_seconds", format!("{:.3}", t0.elapsed().as_secs_f64()));
    out("metrics_kib", format!("{:.0}", m.len() as f64 / 1024.0));
    out("metrics_series", series_count(&m));

    // Drift: delete a tenant's default-deny policy and time its return, 50 times over. The
    // webhook refuses that to everyone but Kubernetes' own controllers, so act as one.
    let mut config = kube::Config::infer().await?;
    config.auth_info.impersonate = Some("system:serviceaccount:kube-system:generic-garbage-collector".into());
    let gc = Client::try_from(config)?;
    let mut repairs = Vec::new();
    for k in 0..50usize {
        let i = (k * 7919) % n;
        let ns = format!("t{i:05}-apps");
        let api: Api<NetworkPolicy> = Api::namespaced(client.clone(), &ns);
        let t0 = Instant::now();
        Api::<NetworkPolicy>::namespaced(gc.clone(), &ns).delete("zhengyun-default-deny", &Default::default()).await?;
        loop {
            if let Some(p) = api.get_opt("zhengyun-default-deny").await?
                && p.metadata.deletion_timestamp.is_none()
            {
                break;
            }
            anyhow::ensure!(t0.elapsed() < Duration::from_secs(120), "default-deny in {ns} never repaired");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        repairs.push(t0.elapsed().as_secs_f64());
    }
    out("drift_repair_p50_seconds", format!("{:.3}", percentile(repairs.clone(), 0.5)));
    out("drift_repair_p99_seconds", format!("{:.3}", percentile(repairs, 0.99)));

    // Pod admission through the webhook (placement and checks), 200 pods.
    let before = metrics(admin).await;
    let admissions = create_pods(client, n).await?;
    out("pod_admission_p50_seconds", format!("{:.3}", percentile(admissions.clone(), 0.5)));
    out("pod_admission_p99_seconds", format!("{:.3}", percentile(admissions, 0.99)));
    let m = metrics(admin).await;
    for hook in ["mutate", "validate"] {
        let (p50, p99) = admission::webhook_quantiles(&before, &m, hook, "Pod");
        out(&format!("pod_{hook}_p50_seconds"), p50);
        out(&format!("pod_{hook}_p99_seconds"), p99);
    }
    out(
        "reconciles_per_tenant",
        format!("{:.1}", sum(&m, "controller_runtime_reconcile_total{controller=\"tenant\"", &[]) / n as f64),
    );
    // `+ 0.0`: an empty f64 sum is -0.0.
    let failed = sum(&m, "controller_runtime_reconcile_total{controller=\"tenant\",result=\"error\"}", &[]) + 0.0;
    out("failed_reconciles", failed);
    Ok(())
}

/// Samples in a text-format scrape (lines that are neither comments nor blank).
fn series_count(text: &str) -> usize {
    text.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()).count()
}

/// `metrics N...` (bench/metrics.sh): the operator's whole registry, as `run` builds it, with N
/// tenants' rows filled as a converged cloud's, rendered as a scrape renders it; in both scopes,
/// with every tenant healthy and with 5% and 20% of them needing attention. No cluster: the tenant rows
/// are what set the size (bench/scale.sh reads a real operator's at its sizes).
fn metrics_sizes(sizes: &[usize]) {
    use zhengyun::tenancy::series::Scope;
    const RESOURCES: [&str; 6] =
        ["limits.cpu", "limits.memory", "persistentvolumeclaims", "pods", "requests.cpu", "requests.memory"];
    const CONDITIONS: [&str; 6] =
        ["Ready", "NamespacesReady", "QuotaReady", "NetworkReady", "AccessReady", "ZoneReady"];
    println!("| tenants | scope | tenants needing attention | series | KiB | render (ms) |");
    println!("|---|---|---|---|---|---|");
    for &n in sizes {
        for scope in [Scope::Problems, Scope::All] {
            for sick_every in [0usize, 20, 5] {
                let core = zhengyun::metrics::Metrics::new();
                let concern = zhengyun::manager::ConcernMetrics::new(&core, scope);
                let tenants = concern.tenants();
                let now = jiff::Timestamp::now().as_millisecond() as f64 / 1000.0;
                for i in 0..n {
                    let t = format!("t{i:05}");
                    let sick = sick_every > 0 && i % sick_every == 0;
                    let conditions = CONDITIONS.map(|c| (c, !(sick && c == "Ready")));
                    tenants.observe_tenant(&t, &conditions);
                    let quota = RESOURCES.map(|r| (r, 20.0, if r == "pods" { 3.0 } else { 1.0 }));
                    tenants.tenant_series.set_quota(&t, quota.into_iter());
                    tenants.tenant_series.set_last_success(&t, now - 60.0);
                }
                let t0 = Instant::now();
                let text = core.render();
                let ms = t0.elapsed().as_secs_f64() * 1000.0;
                let needing = if sick_every == 0 { 0 } else { n.div_ceil(sick_every) };
                println!(
                    "| {n} | {scope:?} | {needing} | {} | {:.0} | {ms:.1} |",
                    series_count(&text),
                    text.len() as f64 / 1024.0
                );
            }
        }
    }
    println!("(reference: issue 32 measured 2.1 MB at 2,000 tenants, about 14 series a tenant)");
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("memory") {
        return memory::run(args.get(2).and_then(|s| s.parse().ok()).unwrap_or(1000)).await;
    }
    if args.get(1).map(String::as_str) == Some("metrics") {
        let sizes: Vec<usize> = args[2..].iter().filter_map(|s| s.parse().ok()).collect();
        metrics_sizes(if sizes.is_empty() { &[1000, 10_000] } else { &sizes });
        return Ok(());
    }
    let client = Client::try_default().await?;
    match args.get(1).map(String::as_str) {
        Some("floor") => floor(&client, args.get(2).and_then(|s| s.parse().ok()).unwrap_or(1000)).await,
        Some("operator") => {
            let n = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(1000);
            let pid = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(0);
            let admin = args.get(4).cloned().unwrap_or_else(|| "127.0.0.1:8080".into());
            operator(&client, n, pid, &admin).await
        }
        Some("admission-floor") => {
            admission::floor(&client, args.get(2).and_then(|s| s.parse().ok()).unwrap_or(1000)).await
        }
        Some("admission") => {
            let admin = args.get(2).cloned().unwrap_or_else(|| "127.0.0.1:8080".into());
            admission::webhook(&client, &admin).await
        }
        _ => anyhow::bail!(
            "usage: scale floor N | scale operator N PID ADMIN_ADDR | scale memory N | scale metrics N... | scale admission-floor N | scale admission ADMIN_ADDR"
        ),
    }
}

/// `admission-floor N` and `admission ADMIN` (bench/admission.sh): Tenant creates in one
/// department that already holds N tenants, without the webhook (the floor: what the API server
/// and etcd take) and then through it (the operator runs with `--controllers none`, so nothing
/// but admission is measured).
mod admission {
    use super::*;

    /// The one department, budgeted for `room` tenants like those of [`super::tenant`].
    fn department(room: usize) -> zhengyun::api::department::Department {
        zhengyun::api::department::Department::new(
            "one",
            zhengyun::api::department::DepartmentSpec {
                code: "ONE".into(),
                name_zh: "一个部门".into(),
                name: None,
                parent: None,
                admin_group: None,
                budget: TenantQuota {
                    cpu: Some(format!("{}", 4 * room).as_str().into()),
                    memory: Some(format!("{}Gi", 8 * room).as_str().into()),
                    pods: Some(Count::from(20 * room as i64)),
                    ..Default::default()
                },
            },
        )
    }

    fn tenant(name: String) -> Tenant {
        let mut t = super::tenant(0);
        t.metadata.name = Some(name);
        t.spec.department.code = "ONE".into();
        t
    }

    /// Creates `names` with `workers` at once; each create's seconds.
    async fn create(client: &Client, names: Vec<String>, workers: usize) -> anyhow::Result<Vec<f64>> {
        let api: Api<Tenant> = Api::all(client.clone());
        let results: Vec<Result<f64, kube::Error>> = stream::iter(names)
            .map(|name| {
                let api = api.clone();
                async move {
                    let t = Instant::now();
                    api.create(&PostParams::default(), &tenant(name)).await?;
                    Ok(t.elapsed().as_secs_f64())
                }
            })
            .buffer_unordered(workers)
            .collect()
            .await;
        let failed: Vec<_> = results.iter().filter_map(|r| r.as_ref().err()).collect();
        anyhow::ensure!(failed.is_empty(), "{} creates failed, the first: {}", failed.len(), failed[0]);
        Ok(results.into_iter().flatten().collect())
    }

    fn report(prefix: &str, took: Vec<f64>) {
        out(&format!("{prefix}_p50_seconds"), format!("{:.4}", percentile(took.clone(), 0.5)));
        out(&format!("{prefix}_p99_seconds"), format!("{:.4}", percentile(took, 0.99)));
    }

    const ONE_BY_ONE: usize = 200;
    const AT_ONCE: usize = 2000;
    /// Room in the budget for what the webhook phase adds.
    const MORE: usize = 2 * (ONE_BY_ONE + AT_ONCE);

    /// Without the webhook: the department, its N tenants (32 at once), then creates one by one.
    pub async fn floor(client: &Client, n: usize) -> anyhow::Result<()> {
        let api: Api<zhengyun::api::department::Department> = Api::all(client.clone());
        api.create(&PostParams::default(), &department(n + MORE)).await?;
        let start = Instant::now();
        create(client, (0..n).map(|i| format!("a{i:05}")).collect(), WORKERS).await?;
        out("admission_held_tenants", n);
        out("admission_held_created_seconds", format!("{:.1}", start.elapsed().as_secs_f64()));
        report("floor_one_by_one", create(client, (0..ONE_BY_ONE).map(|k| format!("f{k:04}")).collect(), 1).await?);
        report("floor_at_once", create(client, (0..AT_ONCE).map(|k| format!("g{k:04}")).collect(), WORKERS).await?);
        Ok(())
    }

    /// The webhook's own time for validating Tenant creates, from its histogram: the bucket
    /// bounds below which 50% and 99% of the requests since `before` fell.
    pub(super) fn webhook_quantiles(before: &str, after: &str, hook: &str, kind: &str) -> (String, String) {
        let buckets = |text: &str| -> Vec<(f64, f64)> {
            let filter = format!(
                "zhengyun_admission_duration_seconds_bucket{{hook=\"{hook}\",kind=\"{kind}\",verdict=\"allowed\""
            );
            let mut v: Vec<(f64, f64)> = text
                .lines()
                .filter(|l| l.starts_with(&filter))
                .filter_map(|l| {
                    let le = l.split("le=\"").nth(1)?.split('"').next()?;
                    let le = if le == "+Inf" { f64::INFINITY } else { le.parse().ok()? };
                    Some((le, l.rsplit(' ').next()?.parse().ok()?))
                })
                .collect();
            v.sort_by(|a, b| a.0.total_cmp(&b.0));
            v
        };
        let (b, a) = (buckets(before), buckets(after));
        let delta: Vec<(f64, f64)> =
            a.iter().map(|(le, n)| (*le, n - b.iter().find(|(l, _)| l == le).map(|x| x.1).unwrap_or(0.0))).collect();
        let total = delta.last().map(|d| d.1).unwrap_or(0.0);
        let at = |q: f64| {
            delta
                .iter()
                .find(|(_, n)| *n >= q * total && total > 0.0)
                .map(|(le, _)| format!("≤ {le}"))
                .unwrap_or_else(|| "?".into())
        };
        (at(0.5), at(0.99))
    }

    /// Through the webhook: creates one by one, then 32 at once, into the same department.
    pub async fn webhook(client: &Client, admin: &str) -> anyhow::Result<()> {
        let before = metrics(admin).await;
        report("webhook_one_by_one", create(client, (0..ONE_BY_ONE).map(|k| format!("w{k:04}")).collect(), 1).await?);
        let after = metrics(admin).await;
        let (p50, p99) = webhook_quantiles(&before, &after, "validate", "Tenant");
        out("webhook_validate_p50_seconds", p50);
        out("webhook_validate_p99_seconds", p99);
        let (p50, p99) = webhook_quantiles(&before, &after, "mutate", "Tenant");
        out("webhook_mutate_p50_seconds", p50);
        out("webhook_mutate_p99_seconds", p99);
        report("webhook_at_once", create(client, (0..AT_ONCE).map(|k| format!("x{k:04}")).collect(), WORKERS).await?);
        let dept = Api::<zhengyun::api::department::Department>::all(client.clone()).get("one").await?;
        let held = dept.metadata.annotations.unwrap_or_default();
        let text = held.get(zhengyun::departments::ledger::RESERVATIONS).cloned().unwrap_or_default();
        out("reservations_bytes_after", text.len());
        Ok(())
    }
}

/// `memory N`: what the operator's watch stores hold for N tenants, kind by kind, without a
/// cluster: each object as the API server returns it (the operator's own builders plus the
/// fields the server adds), read the way its watch reads it, kept in a reflector store. Prints
/// the resident memory each kind adds per tenant, to see where the operator's memory goes.
mod memory {
    use futures::StreamExt;
    use k8s_openapi::api::{
        core::v1::{LimitRange, Namespace, ResourceQuota},
        networking::v1::NetworkPolicy,
        rbac::v1::RoleBinding,
    };
    use kube::{
        core::{DeserializeGuard, PartialObjectMeta},
        runtime::{reflector, watcher},
    };
    use serde_json::{Value, json};
    use zhengyun::api::Tenant;
    use zhengyun::watch::{IndexBy, Metas};

    /// Live heap bytes (jemalloc's count, as in the operator), in KiB.
    fn rss_kib() -> u64 {
        let _ = tikv_jemalloc_ctl::epoch::advance();
        tikv_jemalloc_ctl::stats::allocated::read().map(|b| b as u64 / 1024).unwrap_or(0)
    }

    /// What the API server adds to an object it stores.
    fn as_stored(mut v: Value, i: usize, j: usize) -> Value {
        let m = &mut v["metadata"];
        m["uid"] = json!(format!("{:08x}-0000-4000-8000-{:012x}", i, j));
        m["resourceVersion"] = json!(format!("{}", 1_000_000 + i * 20 + j));
        m["creationTimestamp"] = json!("2026-11-26T12:00:00Z");
        m["generation"] = json!(1);
        if v["kind"] == "Namespace" {
            let name = v["metadata"]["name"].clone();
            v["metadata"]["labels"]["kubernetes.io/metadata.name"] = name;
            v["spec"] = json!({"finalizers": ["kubernetes"]});
            v["status"] = json!({"phase": "Active"});
        }
        if v["kind"] == "ResourceQuota" {
            let hard = v["spec"]["hard"].clone();
            let used: serde_json::Map<String, Value> =
                hard.as_object().map(|h| h.keys().map(|k| (k.clone(), json!("0"))).collect()).unwrap_or_default();
            v["status"] = json!({"hard": hard, "used": used});
        }
        v
    }

    fn tenant_as_stored(i: usize) -> Value {
        let mut v = as_stored(serde_json::to_value(super::tenant(i)).unwrap_or_default(), i, 99);
        let cond = |t: &str, r: &str, msg: &str| json!({"type": t, "status": "True", "reason": r, "message": msg, "lastTransitionTime": "2026-11-26T12:00:05Z", "observedGeneration": 1});
        let name = format!("t{i:05}");
        v["metadata"]["finalizers"] = json!(["zhengyun.io/tenant-protection"]);
        v["status"] = json!({
            "observedGeneration": 1,
            "conditions": [
                cond("Ready", "Reconciled", "all namespaces, quotas, limits, network policies and access are in place"),
                cond("NamespacesReady", "AllOwned", "2 of 2 namespaces owned"),
                cond("QuotaReady", "Enforced", "the quota controller enforces every namespace's share"),
                cond("NetworkReady", "Isolated", "default-deny and allow policies in place in 2 namespaces"),
                cond("AccessReady", "Bound", "owners bound in 2 namespaces"),
                cond("ZoneReady", "Placed", "zone extranet places the tenant's pods"),
            ],
            "namespaceCount": 2,
            "namespaces": [format!("{name}-apps"), format!("{name}-data")],
            "quota": {"hard": {"requests.cpu": "4", "requests.memory": "8Gi", "pods": "20"},
                      "used": {"requests.cpu": "0", "requests.memory": "0", "pods": "0"}},
            "quotaSummary": "cpu 0/4, memory 0/8Gi, pods 0/20",
        });
        v
    }

    /// Keeps what the operator's watch keeps of each object, in a store, and returns the store
    /// (so nothing is freed before the next measurement).
    fn load<K: zhengyun::watch::Watched>(values: &[Value], keep: Option<fn(&mut K)>) -> reflector::Store<K> {
        let (store, mut writer) = reflector::store();
        writer.apply_watcher_event(&watcher::Event::Init);
        for v in values {
            match serde_json::from_value::<K>(v.clone()) {
                Ok(mut obj) => {
                    if let Some(keep) = keep {
                        keep(&mut obj);
                    }
                    writer.apply_watcher_event(&watcher::Event::InitApply(obj))
                }
                Err(e) => eprintln!("{}: {e}", v["kind"]),
            }
        }
        writer.apply_watcher_event(&watcher::Event::InitDone);
        store
    }

    /// The operator's metadata store of a kind ([`Metas`], index and all), fed a first list of
    /// `values` as its watch would deliver them.
    async fn metas<K: zhengyun::watch::Watched>(values: &[Value], index: IndexBy, labels: fn(&str) -> bool) -> Metas<K>
    where
        PartialObjectMeta<K>: zhengyun::watch::Watched,
    {
        let listed = values.iter().filter_map(|v| serde_json::from_value::<PartialObjectMeta<K>>(v.clone()).ok());
        let events = std::iter::once(watcher::Event::Init)
            .chain(listed.map(watcher::Event::InitApply))
            .chain(std::iter::once(watcher::Event::InitDone))
            .map(Ok)
            .collect::<Vec<_>>();
        let store = Metas::from_events(futures::stream::iter(events).boxed(), index, labels);
        store.ready().await;
        // The watch task ends, and frees the list it was fed, just after it says ready.
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        store
    }

    pub async fn run(n: usize) -> anyhow::Result<()> {
        let mut by_kind: std::collections::BTreeMap<String, Vec<Value>> = Default::default();
        for i in 0..n {
            by_kind.entry("Tenant".into()).or_default().push(tenant_as_stored(i));
            for (j, c) in super::children(&super::tenant(i), &format!("uid-{i}"))?.into_iter().enumerate() {
                let kind = c["kind"].as_str().unwrap_or_default().to_string();
                by_kind.entry(kind).or_default().push(as_stored(c, i, j));
            }
        }
        let per = |kib: u64| kib as f64 / n as f64;
        let mut keep: Vec<Box<dyn std::any::Any>> = Vec::new();
        let mut before = rss_kib();
        let mut step = |label: &str, held: Box<dyn std::any::Any>, before: &mut u64| {
            let now = rss_kib();
            println!("memory_heap_kib_per_tenant{{store=\"{label}\"}} {:.2}", per(now.saturating_sub(*before)));
            *before = now;
            keep.push(held);
        };
        let get = |k: &str| by_kind.get(k).map(Vec::as_slice).unwrap_or_default();
        use zhengyun::watch::{read_here, trim};
        step("Tenant", Box::new(load::<DeserializeGuard<Tenant>>(get("Tenant"), None)), &mut before);
        step("ResourceQuota (as kept)", Box::new(load::<ResourceQuota>(get("ResourceQuota"), Some(trim))), &mut before);
        let channel = |k: &str| k == zhengyun::channels::build::CHANNEL_LABEL;
        let by_tenant = IndexBy::Label(zhengyun::labels::TENANT);
        step(
            "Namespace (Metas)",
            Box::new(metas::<Namespace>(get("Namespace"), by_tenant, read_here).await),
            &mut before,
        );
        let by_ns = IndexBy::Namespace;
        step("LimitRange (Metas)", Box::new(metas::<LimitRange>(get("LimitRange"), by_ns, channel).await), &mut before);
        step(
            "NetworkPolicy (Metas)",
            Box::new(metas::<NetworkPolicy>(get("NetworkPolicy"), by_ns, channel).await),
            &mut before,
        );
        step(
            "RoleBinding (Metas)",
            Box::new(metas::<RoleBinding>(get("RoleBinding"), by_ns, channel).await),
            &mut before,
        );
        // For comparison: the reflector stores of metadata the operator had before (no index).
        step(
            "Namespace (reflector, metadata)",
            Box::new(load::<PartialObjectMeta<Namespace>>(get("Namespace"), Some(trim))),
            &mut before,
        );
        step(
            "NetworkPolicy (reflector, metadata)",
            Box::new(load::<PartialObjectMeta<NetworkPolicy>>(get("NetworkPolicy"), Some(trim))),
            &mut before,
        );
        // For comparison: the same objects kept whole, as before.
        step("ResourceQuota (whole)", Box::new(load::<ResourceQuota>(get("ResourceQuota"), None)), &mut before);
        step("Namespace (whole)", Box::new(load::<Namespace>(get("Namespace"), None)), &mut before);
        step("LimitRange (whole)", Box::new(load::<LimitRange>(get("LimitRange"), None)), &mut before);
        step("NetworkPolicy (whole)", Box::new(load::<NetworkPolicy>(get("NetworkPolicy"), None)), &mut before);
        step("RoleBinding (whole)", Box::new(load::<RoleBinding>(get("RoleBinding"), None)), &mut before);
        // What the operator keeps per tenant besides its stores.
        let metrics = zhengyun::tenancy::metrics::TenantMetrics::unregistered();
        for i in 0..n {
            let t = format!("t{i:05}");
            let conditions = ["Ready", "NamespacesReady", "QuotaReady", "NetworkReady", "AccessReady", "ZoneReady"]
                .map(|c| (c, true));
            metrics.observe_tenant(&t, &conditions);
            let quota = ["requests.cpu", "requests.memory", "pods"].map(|r| (r, 1.0, 0.0));
            metrics.tenant_series.set_quota(&t, quota.into_iter());
            metrics.tenant_series.set_last_success(&t, 1.0);
        }
        step("metrics: the tenant's ready, quota and last-success series", Box::new(metrics), &mut before);
        let statuses: std::collections::HashMap<String, zhengyun::tenancy::reconcile::Written> = get("Tenant")
            .iter()
            .filter_map(|v| {
                let status = serde_json::from_value(v["status"].clone()).ok()?;
                Some((v["metadata"]["name"].as_str()?.to_string(), zhengyun::tenancy::reconcile::Written::of(&status)))
            })
            .collect();
        step("the status last written (tenancy's base)", Box::new(statuses), &mut before);
        let applied = zhengyun::apply::Memory::default();
        for kind in ["Namespace", "ResourceQuota", "LimitRange", "NetworkPolicy", "RoleBinding"] {
            for v in get(kind) {
                let obj: k8s_openapi::api::core::v1::ConfigMap = serde_json::from_value(json!({
                    "metadata": {"name": v["metadata"]["name"], "namespace": v["metadata"]["namespace"], "resourceVersion": v["metadata"]["resourceVersion"]}
                }))?;
                applied.remember(&obj, &obj);
            }
        }
        step("what was applied (apply::Memory)", Box::new(applied), &mut before);
        println!("memory_heap_kib {}", rss_kib());
        drop(keep);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::Tally;

    #[test]
    fn the_tally_follows_changes_deletions_and_relists() {
        let mut t = Tally::default();
        t.set("a".into(), Some(false));
        t.set("b".into(), Some(true));
        assert_eq!(t.passing, 1);
        t.set("a".into(), Some(true));
        t.set("a".into(), Some(true));
        assert_eq!(t.passing, 2, "a passing object seen again counts once");
        t.set("b".into(), Some(false));
        t.set("a".into(), None);
        assert_eq!(t.passing, 0);
        t.relist();
        t.listed("c".into(), true);
        assert_eq!(t.passing, 0, "a relist counts once complete");
        t.relisted();
        assert_eq!((t.passing, t.seen.len()), (1, 1));
    }
}
