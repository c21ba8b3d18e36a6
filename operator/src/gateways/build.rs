//! What a SecureGateway implies. Pure: no I/O.

use std::collections::BTreeMap;

use k8s_openapi::{
    api::{
        apps::v1::{Deployment, DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment},
        core::v1::{
            Capabilities, ConfigMap, ConfigMapVolumeSource, Container, ContainerPort, HTTPGetAction, KeyToPath,
            PodSecurityContext, PodSpec, PodTemplateSpec, Probe, ResourceRequirements, SeccompProfile,
            SecretVolumeSource, SecurityContext, Service, ServicePort, ServiceSpec, Volume, VolumeMount,
        },
        networking::v1::{
            IPBlock, NetworkPolicy, NetworkPolicyEgressRule, NetworkPolicyIngressRule, NetworkPolicyPeer,
            NetworkPolicyPort, NetworkPolicySpec,
        },
    },
    apimachinery::pkg::{
        api::resource::Quantity,
        apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference},
        util::intstr::IntOrString,
    },
};
use kube::{Resource, ResourceExt};

use super::GATEWAY_LABEL;
use crate::{
    api::{
        SecureGateway,
        gateway::{BackendProtocol, ClientAuthMode, GatewayProtocol},
    },
    labels,
};

/// The gateway's own ports inside its pods.
pub const LISTEN_PORT: i32 = 8443;
pub const ADMIN_PORT: i32 = 9090;
/// Connections one replica holds open, and the memory that allows for.
const MAX_CONNECTIONS: u32 = 2000;
const MEMORY_LIMIT: &str = "256Mi";
/// The uid and gid the gateway runs as (no root, no shell in the image).
const RUN_AS: i64 = 65532;

/// What a gateway's references resolve to in the cluster.
#[derive(Debug, Clone, PartialEq)]
pub struct Resolved {
    pub tenant: String,
    /// The networks the tenant's zone declares may reach in (`Zone.spec.ingress`).
    pub zone_ingress: Vec<String>,
    /// The backend Service's cluster IP (the gateway image resolves no names).
    pub backend_ip: String,
    /// The backend pods: the Service's selector, and their port behind the Service port.
    pub backend_pods: BTreeMap<String, String>,
    pub backend_target_port: IntOrString,
    /// The SmCertificate's Secret.
    pub certificate_secret: String,
    /// The client CA (PEM) when clients present certificates.
    pub client_ca: Option<String>,
    /// The gateway image (the operator's `--gateway-image`).
    pub image: String,
}

/// The name of everything a gateway makes.
pub fn child_name(gateway: &str) -> String {
    format!("sgw-{gateway}")
}

fn owner(g: &SecureGateway) -> OwnerReference {
    g.controller_owner_ref(&()).unwrap_or_default()
}

/// Selects a gateway's pods.
pub fn pod_labels(g: &SecureGateway) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/name".to_string(), "zhengyun-gateway".to_string()),
        (GATEWAY_LABEL.to_string(), g.name_any()),
    ])
}

fn meta(g: &SecureGateway, r: &Resolved, name: String) -> ObjectMeta {
    let mut l = pod_labels(g);
    l.insert(labels::MANAGED_BY.into(), labels::MANAGER.into());
    l.insert(labels::TENANT.into(), r.tenant.clone());
    ObjectMeta {
        name: Some(name),
        namespace: g.namespace(),
        labels: Some(l),
        owner_references: Some(vec![owner(g)]),
        ..Default::default()
    }
}

fn client_ca_name(g: &SecureGateway) -> String {
    format!("{}-client-ca", child_name(&g.name_any()))
}

/// The gateway's command line.
pub fn args(g: &SecureGateway, r: &Resolved) -> Vec<String> {
    let s = &g.spec;
    let mut protocols = s.protocols.clone();
    protocols.sort();
    protocols.dedup();
    let mut a = vec![
        format!("--listen=0.0.0.0:{LISTEN_PORT}"),
        format!("--admin=0.0.0.0:{ADMIN_PORT}"),
        format!("--backend={}:{}", r.backend_ip, s.backend.port),
        format!(
            "--backend-protocol={}",
            match s.backend.protocol {
                BackendProtocol::Tcp => "tcp",
                BackendProtocol::Http => "http",
            }
        ),
        format!("--protocols={}", protocols.iter().map(|p| p.flag()).collect::<Vec<_>>().join(",")),
        "--sm-cert-dir=/etc/zhengyun/sm".to_string(),
        // Bounded by the memory limit below: an open connection holds TLS state and buffers
        // (tens of KiB), and a flood must meet the cap before the limit.
        format!("--max-connections={MAX_CONNECTIONS}"),
    ];
    if s.standard_certificate.is_some() {
        a.push("--standard-cert-dir=/etc/zhengyun/standard".into());
    }
    let mode = s.client_auth_mode();
    if mode != ClientAuthMode::None && r.client_ca.is_some() {
        a.push(format!("--client-auth={}", if mode == ClientAuthMode::Required { "required" } else { "optional" }));
        a.push("--client-ca=/etc/zhengyun/client-ca/ca.crt".into());
    }
    a
}

/// The client CA bundle, when clients present certificates.
pub fn client_ca(g: &SecureGateway, r: &Resolved) -> Option<ConfigMap> {
    let pem = r.client_ca.as_ref()?;
    (g.spec.client_auth_mode() != ClientAuthMode::None).then(|| ConfigMap {
        metadata: meta(g, r, client_ca_name(g)),
        data: Some(BTreeMap::from([("ca.crt".to_string(), pem.clone())])),
        ..Default::default()
    })
}

fn secret_volume(name: &str, secret: &str) -> Volume {
    Volume {
        name: name.into(),
        secret: Some(SecretVolumeSource {
            secret_name: Some(secret.into()),
            // Readable by the gateway's group only (fsGroup), never world-readable.
            default_mode: Some(0o440),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn mount(name: &str, path: &str) -> VolumeMount {
    VolumeMount { name: name.into(), mount_path: path.into(), read_only: Some(true), ..Default::default() }
}

fn q(s: &str) -> Quantity {
    Quantity(s.into())
}

/// The gateway's Deployment: restricted pod security, no service account token, read-only root.
pub fn deployment(g: &SecureGateway, r: &Resolved) -> Deployment {
    let s = &g.spec;
    let mut volumes = vec![secret_volume("sm", &r.certificate_secret)];
    let mut mounts = vec![mount("sm", "/etc/zhengyun/sm")];
    if let Some(std) = &s.standard_certificate {
        volumes.push(secret_volume("standard", &std.secret_name));
        mounts.push(mount("standard", "/etc/zhengyun/standard"));
    }
    if client_ca(g, r).is_some() {
        volumes.push(Volume {
            name: "client-ca".into(),
            config_map: Some(ConfigMapVolumeSource {
                name: client_ca_name(g),
                items: Some(vec![KeyToPath { key: "ca.crt".into(), path: "ca.crt".into(), mode: None }]),
                ..Default::default()
            }),
            ..Default::default()
        });
        mounts.push(mount("client-ca", "/etc/zhengyun/client-ca"));
    }
    let probe = |path: &str| Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.into()),
            port: IntOrString::String("admin".into()),
            ..Default::default()
        }),
        period_seconds: Some(5),
        ..Default::default()
    };
    let container = Container {
        name: "gateway".into(),
        image: Some(r.image.clone()),
        image_pull_policy: Some("IfNotPresent".into()),
        args: Some(args(g, r)),
        ports: Some(vec![
            ContainerPort { name: Some("tls".into()), container_port: LISTEN_PORT, ..Default::default() },
            ContainerPort { name: Some("admin".into()), container_port: ADMIN_PORT, ..Default::default() },
        ]),
        env: Some(vec![k8s_openapi::api::core::v1::EnvVar {
            name: "RUST_LOG".into(),
            value: Some("info".into()),
            value_from: None,
        }]),
        readiness_probe: Some(probe("/readyz")),
        liveness_probe: Some(probe("/healthz")),
        resources: Some(ResourceRequirements {
            requests: Some(BTreeMap::from([("cpu".into(), q("50m")), ("memory".into(), q("32Mi"))])),
            limits: Some(BTreeMap::from([("cpu".into(), q("1")), ("memory".into(), q(MEMORY_LIMIT))])),
            ..Default::default()
        }),
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            read_only_root_filesystem: Some(true),
            run_as_non_root: Some(true),
            capabilities: Some(Capabilities { drop: Some(vec!["ALL".into()]), add: None }),
            ..Default::default()
        }),
        volume_mounts: Some(mounts),
        ..Default::default()
    };
    let template_labels = pod_labels(g);
    Deployment {
        metadata: meta(g, r, child_name(&g.name_any())),
        spec: Some(DeploymentSpec {
            replicas: Some(s.replicas),
            selector: LabelSelector { match_labels: Some(pod_labels(g)), ..Default::default() },
            strategy: Some(DeploymentStrategy {
                type_: Some("RollingUpdate".into()),
                rolling_update: Some(RollingUpdateDeployment {
                    max_unavailable: Some(IntOrString::Int(0)),
                    max_surge: Some(IntOrString::Int(1)),
                }),
            }),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta { labels: Some(template_labels), ..Default::default() }),
                spec: Some(PodSpec {
                    automount_service_account_token: Some(false),
                    enable_service_links: Some(false),
                    security_context: Some(PodSecurityContext {
                        run_as_non_root: Some(true),
                        run_as_user: Some(RUN_AS),
                        run_as_group: Some(RUN_AS),
                        fs_group: Some(RUN_AS),
                        seccomp_profile: Some(SeccompProfile {
                            type_: "RuntimeDefault".into(),
                            localhost_profile: None,
                        }),
                        ..Default::default()
                    }),
                    containers: vec![container],
                    volumes: Some(volumes),
                    termination_grace_period_seconds: Some(30),
                    ..Default::default()
                }),
            },
            ..Default::default()
        }),
        status: None,
    }
}

/// The Service clients connect to.
pub fn service(g: &SecureGateway, r: &Resolved) -> Service {
    Service {
        metadata: meta(g, r, child_name(&g.name_any())),
        spec: Some(ServiceSpec {
            selector: Some(pod_labels(g)),
            ports: Some(vec![ServicePort {
                name: Some("tls".into()),
                port: i32::from(g.spec.port),
                target_port: Some(IntOrString::String("tls".into())),
                protocol: Some("TCP".into()),
                ..Default::default()
            }]),
            type_: Some("ClusterIP".into()),
            ..Default::default()
        }),
        status: None,
    }
}

/// The gateway reaches its backend pods on their port; the zone's declared networks reach the
/// gateway on its listener. Nothing else is opened here (the tenant's own policies still apply).
pub fn network_policy(g: &SecureGateway, r: &Resolved) -> NetworkPolicy {
    let port =
        |p: IntOrString| Some(vec![NetworkPolicyPort { protocol: Some("TCP".into()), port: Some(p), end_port: None }]);
    let ingress = (!r.zone_ingress.is_empty()).then(|| {
        vec![NetworkPolicyIngressRule {
            from: Some(
                r.zone_ingress
                    .iter()
                    .map(|c| NetworkPolicyPeer {
                        ip_block: Some(IPBlock { cidr: c.clone(), except: None }),
                        ..Default::default()
                    })
                    .collect(),
            ),
            ports: port(IntOrString::Int(LISTEN_PORT)),
        }]
    });
    let egress = vec![NetworkPolicyEgressRule {
        to: Some(vec![NetworkPolicyPeer {
            pod_selector: Some(LabelSelector { match_labels: Some(r.backend_pods.clone()), ..Default::default() }),
            ..Default::default()
        }]),
        ports: port(r.backend_target_port.clone()),
    }];
    NetworkPolicy {
        metadata: meta(g, r, child_name(&g.name_any())),
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(LabelSelector { match_labels: Some(pod_labels(g)), ..Default::default() }),
            policy_types: Some(vec!["Ingress".into(), "Egress".into()]),
            ingress: Some(ingress.unwrap_or_default()),
            egress: Some(egress),
        }),
    }
}

/// The suites the spec serves, by protocol, for the status.
pub fn suites(g: &SecureGateway) -> (Vec<String>, Vec<String>) {
    let mut protocols = g.spec.protocols.clone();
    protocols.sort();
    protocols.dedup();
    let client_certs = g.spec.client_auth_mode() != ClientAuthMode::None;
    let names = protocols
        .iter()
        .map(|p| match p {
            GatewayProtocol::Tlcp => "TLCP",
            GatewayProtocol::Tls13Sm => "TLS13-SM",
            GatewayProtocol::Tls => "TLS",
        })
        .map(String::from)
        .collect();
    let suites = protocols.iter().flat_map(|p| p.suites(client_certs)).map(String::from).collect();
    (names, suites)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::gateway::{CertificateRef, ClientAuth, GatewayBackend, SecretRef, SecureGatewaySpec};

    pub fn gateway(protocols: &[GatewayProtocol], client: Option<ClientAuthMode>) -> SecureGateway {
        let mut g = SecureGateway::new(
            "portal",
            SecureGatewaySpec {
                backend: GatewayBackend { service: "web".into(), port: 8080, protocol: BackendProtocol::Http },
                port: 443,
                protocols: protocols.to_vec(),
                certificate: CertificateRef { name: "portal-tlcp".into(), namespace: None },
                standard_certificate: protocols
                    .contains(&GatewayProtocol::Tls)
                    .then(|| SecretRef { secret_name: "portal-std".into() }),
                client_auth: client.map(|mode| ClientAuth { mode, ca_issuer: Some("dept-ca".into()) }),
                replicas: 2,
            },
        );
        g.metadata.namespace = Some("a-apps".into());
        g.metadata.uid = Some("uid-1".into());
        g
    }

    fn resolved() -> Resolved {
        Resolved {
            tenant: "a".into(),
            zone_ingress: vec!["10.200.0.0/24".into()],
            backend_ip: "10.0.0.42".into(),
            backend_pods: BTreeMap::from([("app".into(), "web".into())]),
            backend_target_port: IntOrString::String("http".into()),
            certificate_secret: "portal-tlcp".into(),
            client_ca: Some("-----BEGIN CERTIFICATE-----\n".into()),
            image: "localhost/zhengyun/zhengyun-gateway:0.1.0".into(),
        }
    }

    #[test]
    fn the_command_line_says_what_the_spec_says() {
        let g = gateway(
            &[GatewayProtocol::Tls, GatewayProtocol::Tlcp, GatewayProtocol::Tls13Sm],
            Some(ClientAuthMode::Required),
        );
        let a = args(&g, &resolved());
        assert!(a.contains(&"--protocols=tlcp,tls13-sm,tls".to_string()), "{a:?}");
        assert!(a.contains(&"--backend=10.0.0.42:8080".to_string()));
        assert!(a.contains(&"--backend-protocol=http".to_string()));
        assert!(a.contains(&"--standard-cert-dir=/etc/zhengyun/standard".to_string()));
        assert!(a.contains(&"--client-auth=required".to_string()));
        let plain = args(&gateway(&[GatewayProtocol::Tlcp], None), &resolved());
        assert!(!plain.iter().any(|x| x.starts_with("--client-auth") || x.starts_with("--standard")), "{plain:?}");
        assert!(client_ca(&gateway(&[GatewayProtocol::Tlcp], None), &resolved()).is_none());
    }

    #[test]
    fn pods_are_restricted_and_hold_no_api_token() {
        let d = deployment(&gateway(&[GatewayProtocol::Tlcp], Some(ClientAuthMode::Optional)), &resolved());
        let pod = d.spec.unwrap().template.spec.unwrap();
        assert_eq!(pod.automount_service_account_token, Some(false));
        let psc = pod.security_context.unwrap();
        assert_eq!((psc.run_as_non_root, psc.seccomp_profile.unwrap().type_.as_str()), (Some(true), "RuntimeDefault"));
        let c = &pod.containers[0];
        let sc = c.security_context.clone().unwrap();
        assert_eq!(sc.allow_privilege_escalation, Some(false));
        assert_eq!(sc.capabilities.unwrap().drop.unwrap(), ["ALL"]);
        assert_eq!(sc.read_only_root_filesystem, Some(true));
        let vols: Vec<_> = pod.volumes.unwrap().into_iter().map(|v| v.name).collect();
        assert_eq!(vols, ["sm", "client-ca"]);
    }

    #[test]
    fn the_policy_opens_the_listener_to_the_zone_and_the_backend_to_the_gateway_only() {
        let g = gateway(&[GatewayProtocol::Tlcp], None);
        let np = network_policy(&g, &resolved()).spec.unwrap();
        let ingress = np.ingress.unwrap();
        assert_eq!(ingress.len(), 1);
        let from = ingress[0].from.clone().unwrap();
        assert_eq!(from[0].ip_block.as_ref().unwrap().cidr, "10.200.0.0/24");
        assert_eq!(ingress[0].ports.as_ref().unwrap()[0].port, Some(IntOrString::Int(LISTEN_PORT)));
        let egress = np.egress.unwrap();
        assert_eq!(
            egress[0].to.as_ref().unwrap()[0].pod_selector.as_ref().unwrap().match_labels.as_ref().unwrap()["app"],
            "web"
        );
        assert!(egress[0].to.as_ref().unwrap()[0].namespace_selector.is_none(), "its own namespace only");
        // A zone that declares no networks: nothing reaches the gateway from outside.
        let closed = network_policy(&g, &Resolved { zone_ingress: vec![], ..resolved() }).spec.unwrap();
        assert_eq!(closed.ingress, Some(vec![]));
    }

    #[test]
    fn status_names_the_suites() {
        let (p, s) = suites(&gateway(&[GatewayProtocol::Tlcp], None));
        assert_eq!(p, ["TLCP"]);
        assert_eq!(s, ["ECC-SM2-SM4-GCM-SM3", "ECC-SM2-SM4-CBC-SM3"]);
        let (_, s) = suites(&gateway(&[GatewayProtocol::Tlcp], Some(ClientAuthMode::Required)));
        assert!(s.contains(&"ECDHE-SM2-SM4-GCM-SM3".to_string()));
    }
}
