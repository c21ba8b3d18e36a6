//! Exchange-channel approvals, tried as a hostile requester: every forgery an outside audit
//! found is refused or drops the approval, and the channel's policies are never wider than what
//! the approver approved, watched while the requester patches.

use std::{
    collections::BTreeSet,
    sync::{Arc, Mutex},
    time::Duration,
};

use futures::StreamExt;
use k8s_openapi::api::{core::v1::Service, networking::v1::NetworkPolicy};
use kube::{
    Api,
    api::{Patch, PatchParams, PostParams},
    runtime::{WatchStreamExt, watcher},
};
use serde_json::json;
use zhengyun::api::{ChannelPhase, ExchangeChannel};
use zhengyun_e2e::{
    SECONDS, apply_tenant, as_user, client, events_about, grant_channels, operator_with_webhook, refused, tenant,
    wait_for, wait_ready,
};

const REQUESTER: &str = "clerk-wang";
const APPROVER: &str = "director-zhao";

fn request(name: &str, from: &str, to: &str, approver: &str, expires: &str, gateway: &str) -> ExchangeChannel {
    serde_json::from_value(json!({
        "apiVersion": "zhengyun.io/v1alpha1", "kind": "ExchangeChannel",
        "metadata": {"name": name},
        "spec": {
            "from": {"tenant": from},
            "to": {"tenant": to, "namespace": "ingest", "service": "api", "port": 443},
            "purpose": "人口数据比对 (population data reconciliation)",
            "approver": approver,
            "expires": expires,
            "gateway": {"cidr": gateway}
        }
    }))
    .expect("channel")
}

async fn phase(api: &Api<ExchangeChannel>, name: &str, want: ChannelPhase) -> ExchangeChannel {
    wait_for(&format!("channel {name} {want:?}"), SECONDS, || async {
        let c = api.get(name).await.ok()?;
        (c.status.as_ref()?.phase == Some(want)).then_some(c)
    })
    .await
}

fn merge(v: serde_json::Value) -> Patch<serde_json::Value> {
    Patch::Merge(v)
}

#[tokio::test]
async fn channels_a_requester_cannot_forge_or_stretch_an_approval() {
    let client = client().await;
    let (_op, _hooks) = operator_with_webhook(&client, "approval").await;
    let mut police = tenant("apv-police", &["ingest"]);
    police.spec.zone = "intranet".into();
    police.spec.security_level = 3;
    apply_tenant(&client, &police).await;
    apply_tenant(&client, &tenant("apv-census", &["apps"])).await;
    wait_ready(&client, "apv-police").await;
    wait_ready(&client, "apv-census").await;
    let svc: Service = serde_json::from_value(json!({"metadata": {"name": "api"}, "spec": {"selector": {"app": "api"}, "ports": [{"port": 443, "targetPort": 8443}]}})).expect("svc");
    Api::<Service>::namespaced(client.clone(), "apv-police-ingest")
        .create(&PostParams::default(), &svc)
        .await
        .expect("service");
    grant_channels(REQUESTER);
    grant_channels(APPROVER);
    let clerk: Api<ExchangeChannel> = Api::all(as_user(REQUESTER, &[]).await);
    let director: Api<ExchangeChannel> = Api::all(as_user(APPROVER, &[]).await);
    let pp = PostParams::default();
    let later = (jiff::Timestamp::now() + jiff::SignedDuration::from_hours(24)).to_string();
    let name = "apv-census-to-police";

    // Requests that are refused outright.
    let mut at_once = request(name, "apv-census", "apv-police", APPROVER, &later, "10.200.0.10/32");
    at_once.spec.approved = true;
    refused(clerk.create(&pp, &at_once).await, "approved afterwards by director-zhao");
    refused(
        clerk.create(&pp, &request(name, "apv-census", "apv-police", REQUESTER, &later, "10.200.0.10/32")).await,
        "may not approve a channel they request",
    );
    let past = (jiff::Timestamp::now() - jiff::SignedDuration::from_hours(1)).to_string();
    refused(
        clerk.create(&pp, &request(name, "apv-census", "apv-police", APPROVER, &past, "10.200.0.10/32")).await,
        "already past",
    );
    refused(
        clerk.create(&pp, &request(name, "apv-census", "apv-census", APPROVER, &later, "10.200.0.10/32")).await,
        "spec.to.tenant: a channel joins two tenants",
    );
    refused(
        clerk.create(&pp, &request(name, "apv-census", "apv-police", APPROVER, &later, "0.0.0.0/0")).await,
        "is not a gateway",
    );
    refused(
        clerk.create(&pp, &request(name, "apv-census", "apv-police", APPROVER, &later, "10.99.0.10/32")).await,
        "not inside the networks Intranet zone intranet declares",
    );

    // The real request; the requester is recorded by the webhook, not by the requester.
    let mut spoofed = request(name, "apv-census", "apv-police", APPROVER, &later, "10.200.0.10/32");
    spoofed.metadata.annotations = Some([("zhengyun.io/requested-by".to_string(), "someone-else".to_string())].into());
    clerk.create(&pp, &spoofed).await.expect("requested");
    let pending = phase(&clerk, name, ChannelPhase::Pending).await;
    assert_eq!(pending.status.as_ref().and_then(|s| s.requested_by.as_deref()), Some(REQUESTER));

    // Forgery 1: the requester names themself approver and approves in one update.
    refused(
        clerk
            .patch(name, &PatchParams::default(), &merge(json!({"spec": {"approver": REQUESTER, "approved": true}})))
            .await,
        "fixed when the channel is requested",
    );
    refused(
        clerk.patch(name, &PatchParams::default(), &merge(json!({"spec": {"approved": true}}))).await,
        "only director-zhao may approve",
    );
    // Nor can they write the approval record themselves.
    refused(
        clerk
            .patch(
                name,
                &PatchParams::default(),
                &merge(json!({"metadata": {"annotations": {"zhengyun.io/approved-by": APPROVER}}, "spec": {"approved": true}})),
            )
            .await,
        "only director-zhao may approve",
    );

    // Watch the channel's policies from here on: no version may ever be wider than approved.
    let seen: Arc<Mutex<BTreeSet<String>>> = Arc::default();
    let watch = {
        let seen = seen.clone();
        let policies: Api<NetworkPolicy> = Api::all(client.clone());
        let cfg = watcher::Config::default().labels(&format!("zhengyun.io/channel={name}"));
        tokio::spawn(async move {
            let mut stream = watcher(policies, cfg).applied_objects().boxed();
            while let Some(Ok(np)) = stream.next().await {
                let v = serde_json::to_value(&np).unwrap_or_default();
                for dir in ["egress", "ingress"] {
                    for rule in v["spec"][dir].as_array().into_iter().flatten() {
                        for peer in rule["to"].as_array().into_iter().chain(rule["from"].as_array()).flatten() {
                            if let Some(c) = peer["ipBlock"]["cidr"].as_str()
                                && let Ok(mut s) = seen.lock()
                            {
                                s.insert(c.to_string());
                            }
                        }
                    }
                }
            }
        })
    };

    // The approver approves: Active, with who and when in the status and an Event.
    director.patch(name, &PatchParams::default(), &merge(json!({"spec": {"approved": true}}))).await.expect("approve");
    let active = phase(&clerk, name, ChannelPhase::Active).await;
    let status = active.status.clone().unwrap_or_default();
    assert_eq!(status.approved_by.as_deref(), Some(APPROVER));
    assert!(status.approved_at.is_some() && status.approved_until.as_deref() == Some(later.as_str()), "{status:?}");
    wait_for("an Approved event", SECONDS, || async {
        events_about(&client, "ExchangeChannel", name)
            .await
            .iter()
            .any(|e| e.starts_with("Approved: approved by director-zhao"))
            .then_some(())
    })
    .await;

    // Forgery 2: after approval the requester moves the gateway. A default route is refused;
    // another host is admitted but drops the approval: the channel closes at once.
    refused(
        clerk.patch(name, &PatchParams::default(), &merge(json!({"spec": {"gateway": {"cidr": "0.0.0.0/0"}}}))).await,
        "is not a gateway",
    );
    let moved = clerk
        .patch(name, &PatchParams::default(), &merge(json!({"spec": {"gateway": {"cidr": "10.200.0.66/32"}}})))
        .await
        .expect("admitted, without its approval");
    assert!(!moved.spec.approved, "the stored channel is no longer approved");
    phase(&clerk, name, ChannelPhase::Pending).await;
    wait_for("the policies closed", SECONDS, || async {
        let l = Api::<NetworkPolicy>::all(client.clone())
            .list(&kube::api::ListParams::default().labels(&format!("zhengyun.io/channel={name}")))
            .await
            .ok()?;
        l.items.is_empty().then_some(())
    })
    .await;
    wait_for("an ApprovalRevoked event", SECONDS, || async {
        events_about(&client, "ExchangeChannel", name)
            .await
            .iter()
            .any(|e| e.starts_with("ApprovalRevoked: "))
            .then_some(())
    })
    .await;

    // Forgery 3: once re-approved, the requester stretches the expiry; that drops it too,
    // while shortening it keeps the approval.
    director
        .patch(name, &PatchParams::default(), &merge(json!({"spec": {"approved": true}})))
        .await
        .expect("re-approve");
    phase(&clerk, name, ChannelPhase::Active).await;
    let sooner = (jiff::Timestamp::now() + jiff::SignedDuration::from_hours(12)).to_string();
    let shortened = clerk
        .patch(name, &PatchParams::default(), &merge(json!({"spec": {"expires": sooner}})))
        .await
        .expect("shorten");
    assert!(shortened.spec.approved, "shortening is within the approval");
    let longer = (jiff::Timestamp::now() + jiff::SignedDuration::from_hours(24 * 365)).to_string();
    let stretched = clerk
        .patch(name, &PatchParams::default(), &merge(json!({"spec": {"expires": longer}})))
        .await
        .expect("admitted");
    assert!(!stretched.spec.approved, "a later expiry needs the approver again");
    phase(&clerk, name, ChannelPhase::Pending).await;

    // The approver cannot approve a default route either.
    refused(
        director
            .patch(
                name,
                &PatchParams::default(),
                &merge(json!({"spec": {"approved": true, "gateway": {"cidr": "0.0.0.0/0"}}})),
            )
            .await,
        "is not a gateway",
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    watch.abort();
    let seen = seen.lock().map(|s| s.clone()).unwrap_or_default();
    assert!(seen.contains("10.200.0.66/32"), "the watch saw the approved policies: {seen:?}");
    assert!(!seen.contains("0.0.0.0/0"), "never a default route: {seen:?}");
    assert!(seen.iter().all(|c| c.starts_with("10.200.0.")), "never wider than approved: {seen:?}");
}

#[tokio::test]
async fn channels_an_approver_group_approves_but_not_its_own_requests() {
    let client = client().await;
    let (_op, _hooks) = operator_with_webhook(&client, "approver-group").await;
    apply_tenant(&client, &tenant("grp-a", &["apps"])).await;
    apply_tenant(&client, &tenant("grp-b", &["ingest"])).await;
    wait_ready(&client, "grp-a").await;
    wait_ready(&client, "grp-b").await;
    let later = (jiff::Timestamp::now() + jiff::SignedDuration::from_hours(24)).to_string();
    let ch: ExchangeChannel = serde_json::from_value(json!({
        "apiVersion": "zhengyun.io/v1alpha1", "kind": "ExchangeChannel", "metadata": {"name": "grp-a-to-b"},
        "spec": {"from": {"tenant": "grp-a"}, "to": {"tenant": "grp-b", "namespace": "ingest", "service": "api", "port": 443},
                 "purpose": "test", "approverGroup": "data-office", "expires": later}
    }))
    .expect("channel");
    grant_channels("officer-sun");
    grant_channels("officer-qian");
    let sun: Api<ExchangeChannel> = Api::all(as_user("officer-sun", &["data-office"]).await);
    let qian: Api<ExchangeChannel> = Api::all(as_user("officer-qian", &["data-office"]).await);
    sun.create(&PostParams::default(), &ch).await.expect("a group member requests");
    refused(
        sun.patch("grp-a-to-b", &PatchParams::default(), &merge(json!({"spec": {"approved": true}}))).await,
        "requested this channel and may not approve it",
    );
    let approved = qian
        .patch("grp-a-to-b", &PatchParams::default(), &merge(json!({"spec": {"approved": true}})))
        .await
        .expect("another member approves");
    assert!(approved.spec.approved);
    let status = wait_for("approval in status", SECONDS, || async {
        let s = sun.get("grp-a-to-b").await.ok()?.status?;
        s.approved_by.is_some().then_some(s)
    })
    .await;
    assert_eq!(status.approved_by.as_deref(), Some("officer-qian"));
}
