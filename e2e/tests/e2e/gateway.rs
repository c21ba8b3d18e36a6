//! SecureGateways: contradictions refused by the API server (the CRD's CEL rules and the
//! chart's ValidatingAdmissionPolicy), what a level forbids refused by the operator too, and —
//! on the real nodes — a tenant's gateway deployed by the operator, reached over TLCP and TLS
//! 1.3 SM from the network the zone declares, in front of a backend pod, following its
//! certificate when it rotates.

use std::time::{Duration, Instant};

use k8s_openapi::api::{
    apps::v1::Deployment,
    core::v1::{Pod, Secret, Service},
};
use kube::{
    Api,
    api::{ApiResource, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams},
};
use serde_json::json;
use zhengyun::api::{SecureGateway, SmCertificate, Zone};
use zhengyun_e2e::{
    SECONDS, apply_tenant, as_user, client, events_about, must, node_tenant, nodes_here, operator_with_webhook_env,
    refused, repo_path, run_tool, tenant, wait_for, wait_ready, workdir,
};

const PROBE: &str = "localhost/zhengyun/probe:0.1.0";

fn gateway_image() -> String {
    std::env::var("ZHENGYUN_GATEWAY_IMAGE").unwrap_or_else(|_| "localhost/zhengyun/zhengyun-gateway:0.1.0".into())
}

fn gw(name: &str, spec: serde_json::Value) -> serde_json::Value {
    json!({"apiVersion": "zhengyun.io/v1alpha1", "kind": "SecureGateway", "metadata": {"name": name}, "spec": spec})
}

/// Creates a gateway as `kubectl create` would, values the Rust type would refuse included.
async fn create(api: &Api<SecureGateway>, body: serde_json::Value) -> Result<DynamicObject, kube::Error> {
    let ar = ApiResource::erase::<SecureGateway>(&());
    let ns = api.namespace().unwrap_or("default").to_string();
    let dynamic: Api<DynamicObject> = Api::namespaced_with(api.clone().into_client(), &ns, &ar);
    let obj: DynamicObject = serde_json::from_value(body).expect("gateway body");
    dynamic.create(&PostParams::default(), &obj).await
}

/// The chart's ValidatingAdmissionPolicy and binding, as `helm template` renders them.
fn apply_chart_policy(apply: bool) {
    let rendered = must(
        "helm template",
        run_tool(
            "helm",
            &[
                "template",
                "zhengyun",
                &repo_path("charts/zhengyun"),
                "--kube-version",
                "1.34.0",
                "--show-only",
                "templates/securegateway-policy.yaml",
            ],
            None,
        ),
    );
    let verb = if apply { "apply" } else { "delete" };
    let mut args = vec![verb, "-f", "-"];
    if !apply {
        args.push("--ignore-not-found");
    }
    must("kubectl the policy", run_tool("kubectl", &args, Some(&rendered)));
}

async fn ready_of(api: &Api<SecureGateway>, name: &str) -> Option<(String, String, String)> {
    let g = api.get_opt(name).await.ok()??;
    let c = g.status?.conditions.into_iter().find(|c| c.type_ == "Ready")?;
    Some((c.status, c.reason, c.message))
}

#[tokio::test]
async fn gateway_contradictions_and_forbidden_protocols_are_refused() {
    let client = client().await;
    // Re-runnable on the same cluster: what an earlier run left goes first.
    for ns in ["sgwbad-apps", "sgwfour-apps"] {
        let _ = run_tool("kubectl", &["delete", "securegateways", "--all", "-n", ns, "--ignore-not-found"], None);
    }
    apply_chart_policy(false);
    let (op, _hooks) =
        operator_with_webhook_env(&client, "sgw-refuse", &[("ZHENGYUN_GATEWAY_IMAGE", gateway_image().as_str())]).await;
    apply_tenant(&client, &tenant("sgwbad", &["apps"])).await;
    let mut four = tenant("sgwfour", &["apps"]);
    four.spec.zone = "intranet".into();
    four.spec.security_level = 4;
    apply_tenant(&client, &four).await;
    wait_ready(&client, "sgwbad").await;
    wait_ready(&client, "sgwfour").await;
    let api: Api<SecureGateway> = Api::namespaced(client.clone(), "sgwbad-apps");
    let base = || {
        json!({
            "backend": {"service": "web", "port": 8080},
            "protocols": ["TLCP"],
            "certificate": {"name": "portal"}
        })
    };
    // The CRD's own rules, each naming the field.
    let mut s = base();
    s["protocols"] = json!([]);
    refused(create(&api, gw("none", s)).await, "spec.protocols");
    let mut s = base();
    s["protocols"] = json!(["TLCP", "TLS"]);
    refused(create(&api, gw("nostd", s)).await, "spec.standardCertificate");
    let mut s = base();
    s["standardCertificate"] = json!({"secretName": "std"});
    refused(create(&api, gw("stdunused", s)).await, "does not include TLS");
    let mut s = base();
    s["clientAuth"] = json!({"mode": "Required"});
    refused(create(&api, gw("noca", s)).await, "spec.clientAuth.caIssuer");
    let mut s = base();
    s["protocols"] = json!(["SSLv3"]);
    refused(create(&api, gw("badproto", s)).await, "spec.protocols");
    let mut s = base();
    s["backend"]["port"] = json!(70000);
    refused(create(&api, gw("badport", s)).await, "spec.backend.port");
    refused(create(&api, gw(&"x".repeat(49), base())).await, "metadata.name");

    // Without the chart's policy, the operator refuses what the namespace forbids: nothing is
    // rendered, and the gateway says why (condition, Event, metric).
    let four_api: Api<SecureGateway> = Api::namespaced(client.clone(), "sgwfour-apps");
    let mut s = base();
    s["protocols"] = json!(["TLCP", "TLS"]);
    s["standardCertificate"] = json!({"secretName": "std"});
    create(&four_api, gw("standard", s.clone())).await.expect("created while no policy guards");
    let mut s2 = base();
    s2["certificate"] = json!({"name": "portal", "namespace": "sgwbad-apps"});
    create(&four_api, gw("borrowed", s2.clone())).await.expect("created while no policy guards");
    for (name, reason) in [("standard", "StandardTlsForbidden"), ("borrowed", "CertificateInOtherNamespace")] {
        let (status, _, message) = wait_for(&format!("{name} refused by the operator"), SECONDS, || async {
            ready_of(&four_api, name).await.filter(|(_, r, _)| r == reason)
        })
        .await;
        assert_eq!(status, "False", "{message}");
        println!("{name}: {reason}: {message}");
        let events = events_about(&client, "SecureGateway", name).await;
        assert!(events.iter().any(|e| e.contains(reason)), "an Event says why: {events:?}");
    }
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "sgwfour-apps");
    assert!(deployments.list(&ListParams::default()).await.expect("list").items.is_empty(), "nothing rendered");
    let problems = op.metric("zhengyun_securegateway_problems_total{reason=\"StandardTlsForbidden\"}").await;
    assert_eq!(problems, Some(1.0));
    // A gateway in a namespace that belongs to no tenant has no zone to run in.
    let plain: Api<SecureGateway> = Api::namespaced(client.clone(), "default");
    create(&plain, gw("notenant", base())).await.expect("created");
    wait_for("notenant refused", SECONDS, || async {
        ready_of(&plain, "notenant").await.filter(|(_, r, _)| r == "NotATenantNamespace")
    })
    .await;
    plain.delete("notenant", &DeleteParams::default()).await.expect("delete");

    // With the chart's policy, the API server refuses the same at admission.
    apply_chart_policy(true);
    let refusal = wait_for("the policy in force", SECONDS, || async {
        match create(&four_api, gw("standard2", s.clone())).await {
            Err(e) => Some(e.to_string()),
            Ok(_) => {
                let _ = four_api.delete("standard2", &DeleteParams::default()).await;
                None
            }
        }
    })
    .await;
    assert!(refusal.contains("standard TLS is not allowed at 等保 level 4"), "{refusal}");
    refused(create(&four_api, gw("borrowed2", s2)).await, "spec.certificate.namespace");
    // A level-3 tenant may serve standard TLS.
    let mut s = base();
    s["protocols"] = json!(["TLCP", "TLS"]);
    s["standardCertificate"] = json!({"secretName": "std"});
    create(&api, gw("allowed", s)).await.expect("standard TLS at level 3");
    apply_chart_policy(false);

    // Declared in the Tenant (as the department chart's values do): the operator creates the
    // SecureGateway in the tenant's namespace and deletes it when dropped; a level-4 tenant
    // asking for standard TLS is refused whole, naming the field.
    let declared: zhengyun::api::TenantGateway = serde_json::from_value(json!({
        "name": "declared", "namespace": "apps",
        "backend": {"service": "web", "port": 8080}, "protocols": ["TLCP"], "certificate": {"name": "portal"}
    }))
    .expect("tenant gateway");
    let mut t = tenant("sgwbad", &["apps"]);
    t.spec.gateways = vec![declared.clone()];
    apply_tenant(&client, &t).await;
    wait_for("the declared gateway", SECONDS, || async { api.get_opt("declared").await.ok()? }).await;
    t.spec.gateways.clear();
    apply_tenant(&client, &t).await;
    wait_for("the dropped gateway deleted", SECONDS, || async {
        api.get_opt("declared").await.ok()?.is_none().then_some(())
    })
    .await;
    let mut standard = declared;
    standard.gateway.protocols.push(zhengyun::api::gateway::GatewayProtocol::Tls);
    standard.gateway.standard_certificate = Some(zhengyun::api::gateway::SecretRef { secret_name: "std".into() });
    four.spec.gateways = vec![standard];
    let tenants: Api<zhengyun::api::Tenant> = Api::all(client.clone());
    let attempt = tenants.patch("sgwfour", &PatchParams::apply("zhengyun-e2e").force(), &Patch::Apply(&four)).await;
    let message = refused(attempt, "spec.gateways[0].protocols");
    assert!(message.contains("level 4"), "{message}");
    four.spec.gateways.clear();
    apply_tenant(&client, &four).await;
    drop(op);
}

/// Runs a command in the outside network's namespace (hack/lib/nodes.sh), as root here.
fn outside(program: &str, args: &[&str], stdin: Option<&str>) -> (bool, String) {
    let netns = std::env::var("ZHENGYUN_OUTSIDE_NETNS").expect("ZHENGYUN_OUTSIDE_NETNS");
    let net = format!("--net={netns}");
    let mut all = vec![net.as_str(), "--", program];
    all.extend(args);
    run_tool("nsenter", &all, stdin)
}

/// A TLCP or TLS 1.3 SM handshake from the outside network to `target`, verified against
/// `ca`; what the backend said, and the served certificate's serial.
fn handshake(target: &str, ca: &str, tlcp: bool) -> (bool, String) {
    let tongsuo = std::env::var("ZHENGYUN_TONGSUO").expect("ZHENGYUN_TONGSUO");
    let mut args = vec!["s_client", "-connect", target, "-CAfile", ca, "-verify_return_error", "-ign_eof"];
    if tlcp {
        args.extend(["-enable_ntls", "-ntls", "-cipher", "ECC-SM2-SM4-GCM-SM3"]);
    } else {
        args.extend(["-tls1_3", "-ciphersuites", "TLS_SM4_GCM_SM3", "-groups", "curveSM2", "-sigalgs", "sm2sig_sm3"]);
    }
    outside(&tongsuo, &args, Some(""))
}

/// The serial (hex, upper case) of the first certificate s_client printed.
fn served_serial(out: &str) -> Option<String> {
    let start = out.find("-----BEGIN CERTIFICATE-----")?;
    let end = out[start..].find("-----END CERTIFICATE-----")? + start + "-----END CERTIFICATE-----".len();
    let (ok, text) = run_tool("openssl", &["x509", "-noout", "-serial"], Some(&out[start..end]));
    ok.then(|| text.trim().trim_start_matches("serial=").to_uppercase())
}

#[tokio::test]
async fn gateway_a_tenants_securegateway_serves_tlcp_and_tls13_sm_from_the_zone_network_and_follows_rotation() {
    if !nodes_here() {
        return;
    }
    let client = client().await;
    // The intranet zone declares the outside network for ingress while this test runs (the next
    // test's set-up puts the suite's zones back).
    let zones: Api<Zone> = Api::all(client.clone());
    let mut zone = zones.get("intranet").await.expect("intranet zone");
    zone.spec.ingress = vec!["10.200.0.10/32".into()];
    let body = json!({"apiVersion": "zhengyun.io/v1alpha1", "kind": "Zone", "metadata": {"name": "intranet"}, "spec": zone.spec});
    zones.patch("intranet", &PatchParams::apply("zhengyun-e2e"), &Patch::Apply(&body)).await.expect("zone ingress");

    let (_op, _hooks) =
        operator_with_webhook_env(&client, "sgw-nodes", &[("ZHENGYUN_GATEWAY_IMAGE", gateway_image().as_str())]).await;
    apply_tenant(&client, &node_tenant("sgw", &["apps"], "intranet", 3)).await;
    wait_ready(&client, "sgw").await;
    let ns = "sgw-apps";
    // Re-runnable on the same cluster: what an earlier run left goes first.
    let _ = run_tool(
        "kubectl",
        &["delete", "-n", ns, "securegateway/portal", "pod/web", "service/web", "--ignore-not-found", "--wait"],
        None,
    );

    // The department's CA, its TLCP pair, a backend pod and its Service.
    let dynamic = |kind: &str, name: &str, spec: serde_json::Value| json!({"apiVersion": "zhengyun.io/v1alpha1", "kind": kind, "metadata": {"name": name, "namespace": ns}, "spec": spec});
    let issuer = dynamic(
        "SmIssuer",
        "dept-ca",
        json!({"selfSigned": {"commonName": "sgw department CA", "secretName": "dept-ca"}}),
    );
    let cert = dynamic(
        "SmCertificate",
        "portal",
        json!({"issuerRef": {"name": "dept-ca"}, "commonName": "portal.sgw", "dnsNames": ["portal.sgw"],
               "secretName": "portal-tlcp", "pair": "TLCP"}),
    );
    let dir = workdir("gateway");
    for (name, obj) in [("issuer", &issuer), ("certificate", &cert)] {
        let file = dir.join(format!("{name}.json"));
        std::fs::write(&file, obj.to_string()).expect("write");
        must(name, run_tool("kubectl", &["apply", "--server-side", "-f", file.to_str().unwrap_or_default()], None));
    }
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let backend: Pod = serde_json::from_value(json!({
        "metadata": {"name": "web", "labels": {"app": "web"}},
        "spec": {
            "terminationGracePeriodSeconds": 1,
            "securityContext": {"runAsNonRoot": true, "runAsUser": 65532, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [{
                "name": "probe", "image": PROBE, "imagePullPolicy": "Never",
                "env": [{"name": "PROBE_NAME", "value": "web"}],
                "ports": [{"name": "http", "containerPort": 8080}],
                "securityContext": {"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}}
            }]
        }
    }))
    .expect("pod");
    pods.create(&PostParams::default(), &backend).await.expect("backend pod");
    let services: Api<Service> = Api::namespaced(client.clone(), ns);
    let svc: Service = serde_json::from_value(json!({
        "metadata": {"name": "web"},
        "spec": {"selector": {"app": "web"}, "ports": [{"port": 8080, "targetPort": "http"}]}
    }))
    .expect("service");
    services.create(&PostParams::default(), &svc).await.expect("backend service");

    let api: Api<SecureGateway> = Api::namespaced(client.clone(), ns);
    create(
        &api,
        gw(
            "portal",
            json!({
                "backend": {"service": "web", "port": 8080},
                "protocols": ["TLCP", "TLS13-SM"],
                "certificate": {"name": "portal"},
                "replicas": 1
            }),
        ),
    )
    .await
    .expect("gateway");
    let g = wait_for("the gateway Ready", Duration::from_secs(180), || async {
        let g = api.get_opt("portal").await.ok()??;
        let ready = g.status.as_ref()?.conditions.iter().any(|c| c.type_ == "Ready" && c.status == "True");
        ready.then_some(g)
    })
    .await;
    let status = g.status.clone().unwrap_or_default();
    println!("gateway status: {}", serde_json::to_string(&status).unwrap_or_default());
    assert_eq!(status.protocols, ["TLCP", "TLS13-SM"]);
    assert!(status.suites.contains(&"ECC-SM2-SM4-GCM-SM3".to_string()));
    // The pod runs on the zone's node under restricted pod security, with no API token.
    let gw_pods = pods.list(&ListParams::default().labels("zhengyun.io/securegateway=portal")).await.expect("list");
    assert_eq!(gw_pods.items.len(), 1);
    let pod = &gw_pods.items[0];
    let spec = pod.spec.clone().unwrap_or_default();
    assert_eq!(spec.node_name.as_deref(), Some("zy-intranet"));
    assert_eq!(spec.automount_service_account_token, Some(false));
    assert!(zhengyun_e2e::gate_passed(pod), "the gateway's pod started behind a gate that passed: {:?}", pod.status);
    let pod_ip = pod.status.as_ref().and_then(|s| s.pod_ip.clone()).expect("pod IP");
    // The department's owner runs workloads in the namespace, but not this one: another image
    // would hold the department's keys.
    let owner = as_user("sgw-owner", &[]).await;
    let theirs: Api<Deployment> = Api::namespaced(owner.clone(), ns);
    let swap = json!({"spec": {"template": {"spec": {"containers": [{"name": "gateway", "image": "registry.example/evil:1"}]}}}});
    refused(theirs.patch("sgw-portal", &PatchParams::default(), &Patch::Strategic(&swap)).await, "managed by zhengyun");
    refused(theirs.delete("sgw-portal", &DeleteParams::default()).await, "managed by zhengyun");
    // Nor may a pod of theirs wear the gateway's label: the gateway's policy would open it to
    // the zone's networks.
    let mut impostor = backend.clone();
    impostor.metadata.name = Some("impostor".into());
    impostor.metadata.labels = Some(
        [("app.kubernetes.io/name", "zhengyun-gateway"), ("zhengyun.io/securegateway", "portal")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    );
    let their_pods: Api<Pod> = Api::namespaced(owner, ns);
    refused(their_pods.create(&PostParams::default(), &impostor).await, "belongs to zhengyun's gateway portal");
    let target = format!("{pod_ip}:8443");

    // The department's CA, as a client from the zone's network trusts it.
    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
    let ca_pem = |s: &Secret| {
        s.data
            .as_ref()
            .and_then(|d| d.get("ca.crt"))
            .map(|b| String::from_utf8_lossy(&b.0).to_string())
            .unwrap_or_default()
    };
    let tlcp_secret = secrets.get("portal-tlcp").await.expect("certificate secret");
    let ca_file = dir.join("ca.crt");
    std::fs::write(&ca_file, ca_pem(&tlcp_secret)).expect("ca");
    let ca = ca_file.to_str().unwrap_or_default().to_string();

    for tlcp in [true, false] {
        let (ok, out) = wait_for("a handshake through the gateway", SECONDS, || {
            let (target, ca) = (target.clone(), ca.clone());
            async move {
                let r = handshake(&target, &ca, tlcp);
                r.1.contains("web 8080").then_some(r)
            }
        })
        .await;
        assert!(ok, "{out}");
        let serial = served_serial(&out).expect("a certificate");
        let certs: Api<SmCertificate> = Api::namespaced(client.clone(), ns);
        let issued = certs.get("portal").await.expect("cert").status.and_then(|s| s.serial_number).unwrap_or_default();
        assert_eq!(
            serial.trim_start_matches('0'),
            issued.to_uppercase().trim_start_matches('0'),
            "the SmCertificate's sign certificate is served"
        );
    }
    // The gateway speaks only what it was told: this one serves no standard TLS.
    let (_, out) = outside("openssl", &["s_client", "-connect", &target, "-tls1_3"], Some(""));
    assert!(!out.contains("web 8080"), "standard TLS is not served: {out}");

    // Rotation: the certificate is re-issued (its Secret deleted, as an admin rotating keys
    // does); the operator tells the gateway pod, and new handshakes get the new serial.
    let certs: Api<SmCertificate> = Api::namespaced(client.clone(), ns);
    let before = certs.get("portal").await.expect("cert").status.and_then(|s| s.serial_number).unwrap_or_default();
    let started = Instant::now();
    secrets.delete("portal-tlcp", &DeleteParams::default()).await.expect("delete the certificate secret");
    let after = wait_for("re-issued", SECONDS, || async {
        let s = certs.get("portal").await.ok()?.status?.serial_number?;
        (s != before).then_some(s)
    })
    .await;
    let (_, out) = wait_for("the gateway serves the new certificate", Duration::from_secs(120), || {
        let (target, ca, after) = (target.clone(), ca.clone(), after.clone());
        async move {
            let r = handshake(&target, &ca, true);
            let served = served_serial(&r.1)?;
            (served.trim_start_matches('0') == after.to_uppercase().trim_start_matches('0')).then_some(r)
        }
    })
    .await;
    assert!(out.contains("web 8080"), "{out}");
    println!(
        "rotation: the gateway served the re-issued certificate {:.1} s after the Secret was deleted",
        started.elapsed().as_secs_f64()
    );
    let annotated = pods.get(&pod.metadata.name.clone().unwrap_or_default()).await.expect("pod");
    let told = annotated.metadata.annotations.unwrap_or_default();
    assert!(told.contains_key("zhengyun.io/secret-versions"), "the pod was told: {told:?}");
    let restarts = annotated
        .status
        .and_then(|s| s.container_statuses)
        .map(|c| c.iter().map(|c| c.restart_count).sum::<i32>())
        .unwrap_or(0);
    assert_eq!(restarts, 0, "the gateway followed the rotation without a restart");

    api.delete("portal", &DeleteParams::default()).await.expect("delete gateway");
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns);
    wait_for("the gateway's Deployment collected", SECONDS, || async {
        deployments.get_opt("sgw-portal").await.ok()?.is_none().then_some(())
    })
    .await;
}
