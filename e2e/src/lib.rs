//! Harness for the end-to-end suite: a client for the real control plane that `hack/test.sh`
//! starts, the operator binary run as a real process, and polling helpers.
//!
//! Tests never fake the API server: if `KUBECONFIG` does not point at a running control plane
//! they fail and say how to start one.

use std::{
    collections::BTreeMap,
    future::Future,
    path::PathBuf,
    process::Stdio,
    time::{Duration, Instant},
};

use k8s_openapi::{
    api::core::v1::Namespace, apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
};
use kube::{
    Api, Client, ResourceExt,
    api::{Patch, PatchParams, PostParams},
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    process::{Child, Command},
};
use zhengyun::api::{
    Department, Owner, OwnerKind, Tenant, TenantNamespace, TenantQuota, TenantSpec, Zone, ZoneKind, ZoneSpec,
    amount::Count,
};

/// Runs a command-line tool (helm, kubectl, promtool) from `PATH`; returns whether it
/// succeeded and what it printed (stdout then stderr).
pub fn run_tool(program: &str, args: &[&str], stdin: Option<&str>) -> (bool, String) {
    use std::io::Write;
    let mut cmd = std::process::Command::new(program);
    cmd.args(args).stdout(Stdio::piped()).stderr(Stdio::piped());
    if stdin.is_some() {
        cmd.stdin(Stdio::piped());
    }
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("running {program}: {e} (hack/test.sh puts it on PATH)"));
    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(input.as_bytes()).expect("writing stdin");
    }
    let out = child.wait_with_output().expect("waiting for the tool");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

/// A directory for one test's files (kept with the logs when `ZHENGYUN_E2E_LOGS` is set).
pub fn workdir(name: &str) -> PathBuf {
    let base = std::env::var_os("ZHENGYUN_E2E_LOGS").map(PathBuf::from).unwrap_or_else(std::env::temp_dir);
    let dir = base.join(format!("{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    dir
}

/// The Tongsuo command-line tool that hack/build-tongsuo.sh builds.
pub fn tongsuo(args: &[&str]) -> (bool, String) {
    let bin = std::env::var("ZHENGYUN_TONGSUO").expect("hack/test.sh sets ZHENGYUN_TONGSUO (hack/build-tongsuo.sh)");
    run_tool(&bin, args, None)
}

/// Whether the pure-Python gmssl package accepts a DER SM2 signature (default ID) of `message`
/// under a SEC1 public key: an implementation that shares no code with ours.
pub fn gmssl_verifies(public_sec1: &[u8], message: &[u8], der_signature: &[u8]) -> bool {
    use zhengyun::pki::{keystore::der_to_raw, sm::hex};
    let python = std::env::var("ZHENGYUN_GMSSL_PYTHON").expect("hack/test.sh sets ZHENGYUN_GMSSL_PYTHON");
    let raw = der_to_raw(der_signature).expect("DER r,s");
    let script = "import sys\nfrom gmssl import sm2\nc = sm2.CryptSM2(public_key=sys.argv[1], private_key='')\nprint(c.verify_with_sm3(sys.argv[3], bytes.fromhex(sys.argv[2])))\n";
    // gmssl takes the public key as X || Y in hex, without the SEC1 04 prefix.
    let (ok, out) = run_tool(&python, &["-c", script, &hex(&public_sec1[1..]), &hex(message), &hex(&raw)], None);
    assert!(ok, "gmssl failed: {out}");
    out.trim() == "True"
}

/// A kubeconfig that authenticates as a ServiceAccount (a token from the TokenRequest API).
pub fn kubeconfig_for_service_account(namespace: &str, sa: &str, dir: &std::path::Path) -> String {
    let must = |what: &str, (ok, out): (bool, String)| -> String {
        assert!(ok, "{what} failed:\n{out}");
        out
    };
    let token = must(
        "kubectl create token",
        run_tool("kubectl", &["create", "token", sa, "-n", namespace, "--duration", "2h"], None),
    );
    let view = |path: &str| {
        must(
            "kubectl config view",
            run_tool("kubectl", &["config", "view", "--minify", "-o", &format!("jsonpath={{{path}}}")], None),
        )
    };
    let server = view(".clusters[0].cluster.server");
    let ca = view(".clusters[0].cluster.certificate-authority");
    let path = dir.join(format!("{namespace}-{sa}.kubeconfig"));
    let config = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster: {{server: {server}, certificate-authority: {ca}}}\nusers:\n- name: u\n  user: {{token: {}}}\ncontexts:\n- name: c\n  context: {{cluster: c, user: u}}\ncurrent-context: c\n",
        token.trim()
    );
    std::fs::write(&path, config).expect("writing kubeconfig");
    path.display().to_string()
}

/// The operator in these tests runs as its own ServiceAccount (cluster-admin), not as the
/// test's admin user, so the admission webhook can tell the operator's writes from an admin's.
fn operator_kubeconfig() -> String {
    static PATH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    PATH.get_or_init(|| cluster_admin_kubeconfig("zhengyun-e2e-operator")).clone()
}

/// The ServiceAccount whose writes the local control plane's audit log records
/// (hack/lib/cluster.sh), and nobody else's.
pub const AUDITED_SERVICE_ACCOUNT: &str = "zhengyun-audited";

/// A kubeconfig for an operator whose writes the API server's audit log records: pass it as
/// `KUBECONFIG` to [`Operator::start_with`], then read them with [`audited_writes`].
pub fn audited_kubeconfig() -> String {
    static PATH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    PATH.get_or_init(|| cluster_admin_kubeconfig(AUDITED_SERVICE_ACCOUNT)).clone()
}

fn cluster_admin_kubeconfig(sa: &str) -> String {
    let _ = run_tool("kubectl", &["create", "serviceaccount", sa, "-n", SYSTEM_NAMESPACE], None);
    let _ = run_tool(
        "kubectl",
        &[
            "create",
            "clusterrolebinding",
            sa,
            "--clusterrole=cluster-admin",
            &format!("--serviceaccount={SYSTEM_NAMESPACE}:{sa}"),
        ],
        None,
    );
    let dir = std::env::var_os("ZHENGYUN_E2E_LOGS").map(PathBuf::from).unwrap_or_else(std::env::temp_dir);
    std::fs::create_dir_all(&dir).expect("dir");
    kubeconfig_for_service_account(SYSTEM_NAMESPACE, sa, &dir)
}

/// One write the API server's audit log recorded.
#[derive(Debug, Clone)]
pub struct AuditedWrite {
    pub user_agent: String,
    pub verb: String,
    /// `resource/namespace/name` (`namespace` empty for cluster objects).
    pub object: String,
    pub resource: String,
    pub code: u16,
    /// When the API server received the request.
    pub received: jiff::Timestamp,
    /// When it finished answering it.
    pub completed: jiff::Timestamp,
}

/// The writes of [`AUDITED_SERVICE_ACCOUNT`] received since `since`, in the order received.
pub fn audited_writes(since: jiff::Timestamp) -> Vec<AuditedWrite> {
    let path = std::env::var("ZHENGYUN_AUDIT_LOG").expect(
        "ZHENGYUN_AUDIT_LOG is not set: run the suite with hack/test.sh (hack/lib/cluster.sh turns on the audit log)",
    );
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading the audit log {path}: {e}"));
    let str_at = |v: &serde_json::Value, p: &str| v.pointer(p).and_then(|s| s.as_str()).unwrap_or_default().to_string();
    let mut writes: Vec<AuditedWrite> = text
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|e| str_at(e, "/stage") == "ResponseComplete")
        .filter_map(|e| {
            let time = |p: &str| str_at(&e, p).parse::<jiff::Timestamp>().ok();
            Some(AuditedWrite {
                user_agent: str_at(&e, "/userAgent"),
                verb: str_at(&e, "/verb"),
                object: format!(
                    "{}/{}/{}",
                    str_at(&e, "/objectRef/resource"),
                    str_at(&e, "/objectRef/namespace"),
                    str_at(&e, "/objectRef/name")
                ),
                resource: str_at(&e, "/objectRef/resource"),
                code: e.pointer("/responseStatus/code").and_then(|c| c.as_u64()).unwrap_or(0) as u16,
                received: time("/requestReceivedTimestamp")?,
                completed: time("/stageTimestamp")?,
            })
        })
        .filter(|w| w.received >= since)
        .collect();
    writes.sort_by_key(|w| w.received);
    writes
}

/// Runs `kubectl` cleanup commands when dropped, so a test that fails leaves no cluster-wide
/// object behind (webhooks that fail closed, an optional CRD) to break the tests after it.
pub struct Cleanup(pub Vec<Vec<&'static str>>);

impl Drop for Cleanup {
    fn drop(&mut self) {
        for args in &self.0 {
            let _ = run_tool("kubectl", args, None);
        }
    }
}

/// Removes the operator's webhook registrations.
pub const REMOVE_WEBHOOKS: &[&str] =
    &["delete", "validatingwebhookconfiguration,mutatingwebhookconfiguration", "zhengyun", "--ignore-not-found"];

/// An operator serving and registering its admission webhook on a free loopback port; the
/// registrations go when the returned guard does.
pub async fn operator_with_webhook(client: &Client, name: &str) -> (Operator, Cleanup) {
    operator_with_webhook_env(client, name, &[]).await
}

/// [`operator_with_webhook`] with extra environment.
pub async fn operator_with_webhook_env(client: &Client, name: &str, env: &[(&str, &str)]) -> (Operator, Cleanup) {
    let gate =
        std::env::var("ZHENGYUN_NODES").as_deref() == Ok("1") && std::env::var_os("ZHENGYUN_E2E_NO_GATE").is_none();
    operator_with_webhook_gate(client, name, env, gate).await
}

/// The probe image: the e2e suite's traffic probe, and the isolation gate and its canary.
pub const PROBE_IMAGE: &str = "localhost/zhengyun/probe:0.1.0";

/// [`operator_with_webhook_env`], with the isolation gate (on the real nodes) or without it.
/// With it, returns once the canary runs on every node, so the next tenant pod is admitted.
pub async fn operator_with_webhook_gate(
    client: &Client,
    name: &str,
    env: &[(&str, &str)],
    gate: bool,
) -> (Operator, Cleanup) {
    let cleanup = Cleanup(vec![REMOVE_WEBHOOKS.to_vec()]);
    let addr = format!("127.0.0.1:{}", free_port());
    let url = format!("https://{addr}");
    let mut args = vec!["--webhook-addr", &addr, "--webhook-url", &url];
    if gate {
        args.extend(["--isolation-gate-image", PROBE_IMAGE]);
    }
    let op = Operator::start_args(&format!("lease-{name}"), &format!("op-{name}"), env, &args).await;
    let hooks: Api<k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration> =
        Api::all(client.clone());
    wait_for("the webhooks registered", SECONDS, || async {
        let h = hooks.get_opt("zhengyun").await.ok()??;
        let here = h.webhooks?.iter().all(|w| w.client_config.url.as_deref().is_some_and(|u| u.starts_with(&url)));
        here.then_some(())
    })
    .await;
    if gate {
        wait_canary(client, SYSTEM_NAMESPACE).await;
    }
    (op, cleanup)
}

/// Waits until the isolation canary runs ready on every real node (the `zy-` ones; some tests
/// add Node objects with no kubelet behind them, where its pods stay Pending) and its Service
/// has an address.
pub async fn wait_canary(client: &Client, namespace: &str) {
    use k8s_openapi::api::core::v1::{Node, Pod, Service};
    use kube::api::ListParams;
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let svcs: Api<Service> = Api::namespaced(client.clone(), namespace);
    let nodes: Api<Node> = Api::all(client.clone());
    let selector = format!("{}={}", zhengyun::gate::CANARY_LABEL, zhengyun::gate::CANARY);
    wait_for("the isolation canary on every node", Duration::from_secs(120), || async {
        let real: Vec<String> = nodes
            .list(&ListParams::default())
            .await
            .ok()?
            .items
            .into_iter()
            .map(|n| n.name_any())
            .filter(|n| n.starts_with("zy-"))
            .collect();
        let ready: Vec<String> = pods
            .list(&ListParams::default().labels(&selector))
            .await
            .ok()?
            .items
            .into_iter()
            .filter(|p| {
                let conditions = p.status.as_ref().and_then(|s| s.conditions.as_ref());
                conditions.is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
            })
            .filter_map(|p| p.spec?.node_name)
            .collect();
        let ip = svcs.get_opt(zhengyun::gate::CANARY).await.ok()??.spec?.cluster_ip?;
        (!real.is_empty() && real.iter().all(|n| ready.contains(n)) && !ip.is_empty()).then_some(())
    })
    .await;
}

/// The repository root, for charts and examples.
pub fn repo_path(relative: &str) -> String {
    format!("{}/../{relative}", env!("CARGO_MANIFEST_DIR"))
}

/// The namespace the operator keeps its Lease in.
pub const SYSTEM_NAMESPACE: &str = "zhengyun-system";

/// A client for the control plane, with our CRDs installed.
pub async fn client() -> Client {
    if std::env::var_os("KUBECONFIG").is_none() {
        panic!("KUBECONFIG is not set: run the e2e suite with hack/test.sh, which starts a local control plane");
    }
    let client = Client::try_default().await.expect("a client for the local control plane");
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in zhengyun::api::crd::all() {
        crds.patch(&crd.name_any(), &PatchParams::apply("zhengyun-e2e").force(), &Patch::Apply(&crd))
            .await
            .expect("installing the CRDs");
    }
    for crd in zhengyun::api::crd::all() {
        let name = crd.name_any();
        wait_for(&format!("CRD {name} established"), Duration::from_secs(30), || {
            let crds = crds.clone();
            let name = name.clone();
            async move {
                let c = crds.get(&name).await.ok()?;
                let established = c.status?.conditions?.iter().any(|c| c.type_ == "Established" && c.status == "True");
                established.then_some(())
            }
        })
        .await;
    }
    // The zones every story runs in (docs/examples/zones/).
    let zones: Api<Zone> = Api::all(client.clone());
    // The intranet declares the exchange gateways' network: a cross-zone channel's gateway must
    // lie inside it.
    for (name, kind, level, networks) in [
        ("extranet", ZoneKind::Extranet, 2, vec![]),
        ("intranet", ZoneKind::Intranet, 3, vec!["10.200.0.0/24".to_string()]),
    ] {
        let zone = Zone::new(
            name,
            ZoneSpec {
                kind,
                node_selector: BTreeMap::from([("zhengyun.io/zone".to_string(), name.to_string())]),
                taint: None,
                egress: networks,
                ingress: vec![],
                allow_public_ranges: false,
                allowed_service_types: vec![],
                min_security_level: level,
            },
        );
        zones.patch(name, &PatchParams::apply("zhengyun-e2e"), &Patch::Apply(&zone)).await.expect("zone");
    }
    let ns: Api<Namespace> = Api::all(client.clone());
    let system = Namespace {
        metadata: kube::api::ObjectMeta { name: Some(SYSTEM_NAMESPACE.into()), ..Default::default() },
        ..Default::default()
    };
    match ns.create(&PostParams::default(), &system).await {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 409 => {}
        Err(e) => panic!("creating {SYSTEM_NAMESPACE}: {e}"),
    }
    client
}

/// Polls `f` until it returns `Some`, or panics with `what` after `timeout`.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = f().await {
            return v;
        }
        if start.elapsed() > timeout {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// How long the operator may take for anything the issue says happens "within seconds".
pub const SECONDS: Duration = Duration::from_secs(30);

/// A simple tenant: one owner `<name>-owner`, the given namespace suffixes, level 2.
pub fn tenant(name: &str, suffixes: &[&str]) -> Tenant {
    Tenant::new(
        name,
        TenantSpec {
            department: Department {
                code: format!("DEPT-{name}"),
                name: format!("Department {name}"),
                name_zh: Some("测试局".into()),
            },
            zone: "extranet".into(),
            arch: None,
            owners: vec![Owner { kind: OwnerKind::User, name: format!("{name}-owner") }],
            namespaces: suffixes.iter().map(|s| TenantNamespace { suffix: (*s).into() }).collect(),
            quota: TenantQuota {
                cpu: Some("4".into()),
                memory: Some("8Gi".into()),
                pods: Some(Count::from(10)),
                ..Default::default()
            },
            limits: None,
            security_level: 2,
            deletion_policy: Default::default(),
            confirm_data_deletion: false,
            certificates: vec![],
            gateways: vec![],
        },
    )
}

/// Creates (or replaces the spec of) a tenant.
pub async fn apply_tenant(client: &Client, t: &Tenant) -> Tenant {
    let api: Api<Tenant> = Api::all(client.clone());
    let mut t = t.clone();
    t.metadata.managed_fields = None;
    t.metadata.resource_version = None;
    t.status = None;
    api.patch(&t.name_any(), &PatchParams::apply("zhengyun-e2e").force(), &Patch::Apply(&t))
        .await
        .expect("applying a tenant")
}

/// The status of one condition of a tenant.
pub fn condition(t: &Tenant, type_: &str) -> Option<(String, String, String)> {
    t.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()))
}

/// Waits until the tenant is Ready for its current generation.
pub async fn wait_ready(client: &Client, name: &str) -> Tenant {
    let api: Api<Tenant> = Api::all(client.clone());
    wait_for(&format!("tenant {name} Ready"), SECONDS, || {
        let api = api.clone();
        async move {
            let t = api.get(name).await.ok()?;
            let fresh = t.status.as_ref()?.observed_generation == t.metadata.generation;
            (fresh && condition(&t, "Ready").map(|c| c.0).as_deref() == Some("True")).then_some(t)
        }
    })
    .await
}

/// The operator binary, built by `cargo build` before the suite runs.
fn operator_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("ZHENGYUN_OPERATOR_BIN") {
        return p.into();
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
    target.join("debug/zhengyun-operator")
}

/// A loopback port free now and never handed out before by this process: the kernel may give
/// the same ephemeral port to two binds in a row once the first is closed, and an operator's
/// webhook and admin port picked that way once collided.
pub fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    loop {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port");
        let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
        if !given.contains(&port) {
            given.push(port);
            return port;
        }
    }
}

/// The lease the e2e operators compete for: valid this long without renewal ... (4 s was too
/// short once: under a loaded CI run one renewal took longer than its 3.2 s deadline.)
pub const LEASE_DURATION: Duration = Duration::from_secs(6);
/// ... renewed (by the holder) or tried (by the others) this often.
pub const LEASE_RETRY: Duration = Duration::from_secs(1);

/// A real operator process.
pub struct Operator {
    child: Option<Child>,
    pub identity: String,
    pub admin: String,
    pub log: PathBuf,
}

impl Operator {
    /// Starts a replica that competes for `lease`.
    pub async fn start(lease: &str, identity: &str) -> Operator {
        Self::start_with(lease, identity, &[]).await
    }

    /// Starts a replica with extra environment (another `KUBECONFIG`, `POD_NAMESPACE`, ...).
    pub async fn start_with(lease: &str, identity: &str, env: &[(&str, &str)]) -> Operator {
        Self::start_args(lease, identity, env, &[]).await
    }

    /// Starts a replica with extra environment and arguments, and waits for its admin port.
    pub async fn start_args(lease: &str, identity: &str, env: &[(&str, &str)], extra: &[&str]) -> Operator {
        let op = Self::spawn_args(lease, identity, env, extra);
        let admin = op.admin.clone();
        wait_for("the operator's admin port", SECONDS, || {
            let admin = admin.clone();
            async move { http_get(&admin, "/healthz").await.ok().filter(|b| b.contains("ok")) }
        })
        .await;
        op
    }

    /// Starts a replica and returns at once (one that may stop before it answers).
    pub fn spawn_args(lease: &str, identity: &str, env: &[(&str, &str)], extra: &[&str]) -> Operator {
        let port = free_port();
        let logs = std::env::var_os("ZHENGYUN_E2E_LOGS").map(PathBuf::from).unwrap_or_else(std::env::temp_dir);
        std::fs::create_dir_all(&logs).expect("log directory");
        let log = logs.join(format!("{identity}.log"));
        let file = std::fs::OpenOptions::new().create(true).append(true).open(&log).expect("log file");
        let kubeconfig = operator_kubeconfig();
        let child = Command::new(operator_bin())
            .args([
                "run",
                "--admin-addr",
                &format!("127.0.0.1:{port}"),
                "--lease-name",
                lease,
                "--identity",
                identity,
                "--lease-duration",
                &LEASE_DURATION.as_secs().to_string(),
                "--lease-retry",
                &LEASE_RETRY.as_secs().to_string(),
            ])
            .args(extra)
            .env("RUST_LOG", "info,zhengyun=debug,kube=warn")
            .env("KUBECONFIG", &kubeconfig)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("log file"))
            .stderr(file)
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e} (build it with cargo build)", operator_bin().display()));
        Operator { child: Some(child), identity: identity.into(), admin: format!("127.0.0.1:{port}"), log }
    }

    /// The operator's `/metrics` text.
    pub async fn metrics(&self) -> String {
        self.get("/metrics").await
    }

    /// The body of a GET on the admin port (empty when it does not answer).
    pub async fn get(&self, path: &str) -> String {
        http_get(&self.admin, path).await.unwrap_or_default()
    }

    /// The value of one series, e.g. `leader_election_master_status{name="x"}`.
    pub async fn metric(&self, series: &str) -> Option<f64> {
        let text = self.metrics().await;
        text.lines().find_map(|l| l.strip_prefix(series).and_then(|rest| rest.trim().parse().ok()))
    }

    /// Waits until this replica reports that it leads.
    pub async fn wait_leading(&self, lease: &str) {
        let series = format!("leader_election_master_status{{name=\"{lease}\"}}");
        wait_for(&format!("{} to lead", self.identity), SECONDS, || async {
            (self.metric(&series).await == Some(1.0)).then_some(())
        })
        .await;
    }

    /// SIGKILL: no chance to release the lease or finish a round.
    pub async fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill().await;
        }
    }

    /// SIGTERM, then wait for a clean exit.
    pub async fn stop(&mut self) -> Option<std::process::ExitStatus> {
        let mut c = self.child.take()?;
        if let Some(pid) = c.id() {
            let _ = std::process::Command::new("kill").args(["-TERM", &pid.to_string()]).status();
        }
        tokio::time::timeout(Duration::from_secs(20), c.wait()).await.ok()?.ok()
    }

    /// Whether the process is still running.
    pub fn running(&mut self) -> bool {
        self.child.as_mut().is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }
}

async fn http_get(addr: &str, path: &str) -> std::io::Result<String> {
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes()).await?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).await?;
    Ok(buf.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default())
}

/// A client that acts as `user` in `groups` (the admin impersonates them), for real requests
/// as a tenant owner, a requester or an approver.
pub async fn as_user(user: &str, groups: &[&str]) -> Client {
    let mut config = kube::Config::infer().await.expect("kubeconfig");
    config.auth_info.impersonate = Some(user.into());
    if !groups.is_empty() {
        config.auth_info.impersonate_groups = Some(groups.iter().map(|g| g.to_string()).collect());
    }
    Client::try_from(config).expect("client")
}

/// Lets `user` read and write ExchangeChannels (request, approve, edit): who may do what with
/// them is then the webhook's business, which is what the tests look at.
pub fn grant_channels(user: &str) {
    let _ = run_tool(
        "kubectl",
        &[
            "create",
            "clusterrole",
            "zhengyun-e2e-channels",
            "--verb=get,list,watch,create,patch,update",
            "--resource=exchangechannels.zhengyun.io",
        ],
        None,
    );
    let binding = format!("zhengyun-e2e-channels-{user}");
    let _ = run_tool(
        "kubectl",
        &["create", "clusterrolebinding", &binding, "--clusterrole=zhengyun-e2e-channels", &format!("--user={user}")],
        None,
    );
}

/// Whether this run has the local control plane's real nodes (`hack/test.sh` exports
/// `ZHENGYUN_NODES=1` when it brought them up, and says why when it did not).
pub fn nodes_here() -> bool {
    if std::env::var("ZHENGYUN_NODES").as_deref() == Ok("1") {
        return true;
    }
    eprintln!("no real nodes in this run (hack/test.sh says why): this test has nothing to run");
    false
}

/// A pod that runs the probe once with `args` (restartPolicy Never; `PROBE_NAME` is its name),
/// which PSA `restricted` admits.
pub fn probe_run_pod(name: &str, args: &[String]) -> k8s_openapi::api::core::v1::Pod {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 1,
            "securityContext": {"runAsNonRoot": true, "runAsUser": 65532, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [{
                "name": "probe", "image": PROBE_IMAGE, "imagePullPolicy": "Never",
                "args": args,
                "env": [{"name": "PROBE_NAME", "value": name}],
                "securityContext": {"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}}
            }]
        }
    }))
    .expect("pod")
}

/// A prober in the outside network (no policy of its own) printing each connection that got
/// through; its output is read as it comes (a full pipe would stop it).
pub fn outside_prober(targets: &[String]) -> (tokio::process::Child, tokio::task::JoinHandle<String>) {
    let netns = std::env::var("ZHENGYUN_OUTSIDE_NETNS").expect("the nodes' outside network (hack/lib/nodes.sh)");
    let probe = std::env::var("ZHENGYUN_PROBE_BIN").expect("the probe binary (hack/lib/nodes.sh)");
    let mut args = vec![format!("--net={netns}"), "--".into(), probe, "connect".into()];
    args.extend(["--for-ms", "900000", "--timeout-ms", "100", "--parallel", "--only-ok"].map(String::from));
    args.extend(targets.iter().cloned());
    let mut child = tokio::process::Command::new("nsenter")
        .args(&args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("the prober in the outside network");
    let mut stdout = child.stdout.take().expect("the prober's output");
    let reading = tokio::spawn(async move {
        let mut all = String::new();
        let _ = tokio::io::AsyncReadExt::read_to_string(&mut stdout, &mut all).await;
        all
    });
    (child, reading)
}

/// Whether the pod's isolation gate ran first among its init containers and passed.
pub fn gate_passed(p: &k8s_openapi::api::core::v1::Pod) -> bool {
    p.status.as_ref().and_then(|s| s.init_container_statuses.as_ref()).is_some_and(|l| {
        l.first().is_some_and(|c| {
            c.name == zhengyun::gate::CONTAINER
                && c.state.as_ref().and_then(|s| s.terminated.as_ref()).is_some_and(|t| t.exit_code == 0)
        })
    })
}

/// A pod of `image` (held by the nodes, never pulled) that PSA `restricted` admits.
pub fn restricted_pod(name: &str, image: &str) -> k8s_openapi::api::core::v1::Pod {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": name},
        "spec": {
            "securityContext": {"runAsNonRoot": true, "runAsUser": 65532, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [{
                "name": "c", "image": image, "imagePullPolicy": "Never",
                "securityContext": {"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}}
            }]
        }
    }))
    .expect("pod")
}

/// A tenant whose pods run on the real nodes: in `zone` at `level`, with a default request
/// small enough for many pods on one node (the quota needs every pod to request).
pub fn node_tenant(name: &str, suffixes: &[&str], zone: &str, level: u8) -> Tenant {
    let mut t = tenant(name, suffixes);
    t.spec.zone = zone.into();
    t.spec.security_level = level;
    t.spec.limits = Some(zhengyun::api::ContainerLimits {
        default_request: Some(zhengyun::api::CpuMemory { cpu: Some("10m".into()), memory: Some("16Mi".into()) }),
        ..Default::default()
    });
    t
}

/// Applies tenants on the real nodes (name, zone, level; one `apps` namespace each) and waits
/// until each is Ready and its namespace has the default service account pods need.
pub async fn ready_node_tenants(client: &Client, tenants: &[(&str, &str, u8)]) {
    for (name, zone, level) in tenants {
        apply_tenant(client, &node_tenant(name, &["apps"], zone, *level)).await;
    }
    for (name, _, _) in tenants {
        wait_ready(client, name).await;
        let sa: Api<k8s_openapi::api::core::v1::ServiceAccount> =
            Api::namespaced(client.clone(), &format!("{name}-apps"));
        wait_for("default service account", SECONDS, || async { sa.get_opt("default").await.ok()? }).await;
    }
}

/// Lets the Helm release `release` in `namespace` adopt the CRDs the suite installed, as
/// docs/admin-guide.md says an existing CRD is adopted.
pub async fn adopt_crds(client: &Client, release: &str, namespace: &str) {
    let crds: Api<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition> =
        Api::all(client.clone());
    let adopt = serde_json::json!({"metadata": {
        "labels": {"app.kubernetes.io/managed-by": "Helm"},
        "annotations": {"meta.helm.sh/release-name": release, "meta.helm.sh/release-namespace": namespace}
    }});
    for crd in zhengyun::api::crd::all() {
        let name = kube::ResourceExt::name_any(&crd);
        crds.patch(&name, &PatchParams::default(), &Patch::Merge(adopt.clone())).await.expect("adopt CRD");
    }
}

/// The output of a tool that must succeed (`run_tool`'s result), or a failure naming `what`.
pub fn must(what: &str, (ok, out): (bool, String)) -> String {
    assert!(ok, "{what} failed:\n{out}");
    out
}

/// Asserts that the API server refused a request, with `expect` in its message.
pub fn refused<T: std::fmt::Debug>(r: Result<T, kube::Error>, expect: &str) -> String {
    match r {
        Ok(v) => panic!("accepted, expected a refusal mentioning {expect:?}: {v:?}"),
        Err(e) => {
            let msg = e.to_string();
            assert!(msg.contains(expect), "expected {expect:?} in: {msg}");
            msg
        }
    }
}

/// The Events the operator published about an object, as `reason: note` lines.
pub async fn events_about(client: &Client, kind: &str, name: &str) -> Vec<String> {
    let events: Api<k8s_openapi::api::events::v1::Event> = Api::all(client.clone());
    let lp = kube::api::ListParams::default();
    events
        .list(&lp)
        .await
        .map(|l| l.items)
        .unwrap_or_default()
        .into_iter()
        .filter(|e| {
            e.regarding.as_ref().is_some_and(|r| r.kind.as_deref() == Some(kind) && r.name.as_deref() == Some(name))
        })
        .map(|e| format!("{}: {}", e.reason.unwrap_or_default(), e.note.unwrap_or_default()))
        .collect()
}

/// Whether `user` may do `verb` on `resource` (in `namespace`, or cluster-wide when empty), as a
/// SubjectAccessReview answers.
pub async fn allowed(
    client: &Client,
    user: &str,
    verb: &str,
    group: &str,
    resource: &str,
    namespace: &str,
    name: Option<&str>,
) -> bool {
    use k8s_openapi::api::authorization::v1::{ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec};
    let sar = SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            user: Some(user.into()),
            resource_attributes: Some(ResourceAttributes {
                verb: Some(verb.into()),
                group: Some(group.into()),
                resource: Some(resource.into()),
                namespace: (!namespace.is_empty()).then(|| namespace.into()),
                name: name.map(Into::into),
                ..Default::default()
            }),
            ..Default::default()
        },
        ..Default::default()
    };
    Api::<SubjectAccessReview>::all(client.clone())
        .create(&PostParams::default(), &sar)
        .await
        .ok()
        .and_then(|r| r.status)
        .is_some_and(|s| s.allowed)
}

/// Creates the tenants `make(0..n)` makes, 16 at a time (load, as many users at once would).
pub async fn create_tenants(client: &Client, n: usize, make: impl Fn(usize) -> Tenant) {
    use futures::StreamExt;
    let api: Api<Tenant> = Api::all(client.clone());
    let pp = PostParams::default();
    futures::stream::iter((0..n).map(make))
        .for_each_concurrent(16, |t| {
            let (api, pp) = (api.clone(), pp.clone());
            async move {
                api.create(&pp, &t).await.unwrap_or_else(|e| panic!("creating tenant {}: {e}", t.name_any()));
            }
        })
        .await;
}

/// How many tenants named `prefix*` are Ready for their current generation.
pub async fn tenants_ready(client: &Client, prefix: &str) -> usize {
    // Through DeserializeGuard: a malformed Tenant must not hide the others from a test either.
    Api::<kube::core::DeserializeGuard<Tenant>>::all(client.clone())
        .list(&kube::api::ListParams::default())
        .await
        .map(|l| {
            l.items
                .iter()
                .filter_map(|t| t.0.as_ref().ok())
                .filter(|t| t.metadata.name.as_deref().is_some_and(|n| n.starts_with(prefix)))
                .filter(|t| {
                    t.status.as_ref().is_some_and(|s| {
                        s.observed_generation == t.metadata.generation
                            && s.conditions.iter().any(|c| c.type_ == "Ready" && c.status == "True")
                    })
                })
                .count()
        })
        .unwrap_or(0)
}

/// Waits until `n` tenants named `prefix*` are Ready.
pub async fn wait_tenants_ready(client: &Client, prefix: &str, n: usize, within: Duration) {
    wait_for(&format!("{n} {prefix}* tenants Ready"), within, || async {
        (tenants_ready(client, prefix).await >= n).then_some(())
    })
    .await;
}

/// The names of the namespaces that start with `prefix`.
pub async fn namespaces_named(client: &Client, prefix: &str) -> Vec<String> {
    Api::<Namespace>::all(client.clone())
        .list(&kube::api::ListParams::default())
        .await
        .map(|l| l.items.into_iter().filter_map(|n| n.metadata.name).filter(|n| n.starts_with(prefix)).collect())
        .unwrap_or_default()
}

/// Deletes the tenants named `prefix*` (a running operator finalizes them) and waits until
/// no namespace named `prefix*` is left: a tenant's policy Delete removes its namespaces, and
/// `retained` namespaces (policy Retain) are deleted here once their tenants are gone.
pub async fn remove_tenants(client: &Client, prefix: &str, retained: &[String]) {
    delete_tenants(client, prefix).await;
    let ns: Api<Namespace> = Api::all(client.clone());
    for n in retained {
        let _ = ns.delete(n, &Default::default()).await;
    }
    wait_for(&format!("{prefix}* namespaces gone"), Duration::from_secs(300), || async {
        namespaces_named(client, prefix).await.is_empty().then_some(())
    })
    .await;
}

/// Deletes the tenants named `prefix*` and waits until they are gone (a running operator
/// finalizes them).
pub async fn delete_tenants(client: &Client, prefix: &str) {
    let api: Api<Tenant> = Api::all(client.clone());
    let names: Vec<String> = Api::<kube::core::DeserializeGuard<Tenant>>::all(client.clone())
        .list(&kube::api::ListParams::default())
        .await
        .map(|l| l.items.iter().filter_map(|t| t.0.as_ref().ok()).filter_map(|t| t.metadata.name.clone()).collect())
        .unwrap_or_default();
    for n in names.iter().filter(|n| n.starts_with(prefix)) {
        let _ = api.delete(n, &Default::default()).await;
    }
    wait_for(&format!("{prefix}* tenants gone"), Duration::from_secs(120), || async {
        let left = api.list_metadata(&kube::api::ListParams::default()).await.ok()?;
        (!left.items.iter().any(|t| t.metadata.name.as_deref().is_some_and(|n| n.starts_with(prefix)))).then_some(())
    })
    .await;
}
