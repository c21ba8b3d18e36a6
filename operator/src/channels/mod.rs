//! Exchange channels (数据共享交换): the only way traffic crosses a tenant boundary.
//!
//! `build` turns an active channel into NetworkPolicies (egress in the source tenant's
//! namespaces, ingress in front of the target Service) without I/O; `phase` decides what state a
//! channel is in; `reconcile` applies and removes the policies and keeps the status.

pub(crate) mod approval;
pub mod build;
pub(crate) mod gateway;
pub mod metrics;
pub mod reconcile;

use jiff::Timestamp;

use crate::api::{ChannelPhase, ExchangeChannel};

/// Why a channel's ends do not check out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndsProblem {
    /// The declaration itself is wrong (a tenant or namespace that does not exist, a missing
    /// gateway): the channel is invalid whatever its approval.
    Declaration(String),
    /// What it points at is not there yet (the Service or its port): it cannot open, but may
    /// still be approved meanwhile.
    Target(String),
}

/// A channel's phase from its spec, whether its ends check out, and the time. Only an approval
/// recorded for exactly this spec ([`approval::verify`]) opens it.
pub fn phase(ch: &ExchangeChannel, ends: Result<(), EndsProblem>, now: Timestamp) -> (ChannelPhase, String) {
    let expires: Timestamp = match ch.spec.expires.parse() {
        Ok(t) => t,
        Err(e) => {
            return (ChannelPhase::Invalid, format!("spec.expires '{}' is not an RFC 3339 time: {e}", ch.spec.expires));
        }
    };
    if now >= expires {
        return (ChannelPhase::Expired, format!("expired at {expires}; the flow is closed"));
    }
    match (ends, approval::verify(ch)) {
        (Err(EndsProblem::Declaration(why)), _) => (ChannelPhase::Invalid, why),
        (ends, Err(waiting)) => {
            let also = match ends {
                Err(EndsProblem::Target(why)) => format!("; also {why}"),
                _ => String::new(),
            };
            (ChannelPhase::Pending, format!("{waiting}; nothing is open{also}"))
        }
        (Err(EndsProblem::Target(why)), Ok(_)) => (ChannelPhase::Invalid, why),
        (Ok(()), Ok(r)) => (ChannelPhase::Active, format!("approved by {} at {}; open until {expires}", r.by, r.at)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{ChannelSource, ChannelTarget, ExchangeChannelSpec};

    pub(crate) fn channel(approved: bool, expires: &str) -> ExchangeChannel {
        let mut ch = ExchangeChannel::new(
            "tax-to-stats",
            ExchangeChannelSpec {
                from: ChannelSource {
                    tenant: "tax".into(),
                    pod_labels: [("app".to_string(), "export".to_string())].into(),
                },
                to: ChannelTarget {
                    tenant: "stats".into(),
                    namespace: "ingest".into(),
                    service: "api".into(),
                    port: 443,
                },
                purpose: "monthly statistics".into(),
                approver: Some("director".into()),
                approver_group: None,
                approved,
                expires: expires.into(),
                gateway: None,
            },
        );
        if approved {
            // As the admission webhook records the director's approval.
            let spec = approval::fingerprint(&ch.spec);
            ch.metadata.annotations = Some(
                [
                    (approval::APPROVED_BY, "director"),
                    (approval::APPROVED_AT, "2026-05-01T00:00:00Z"),
                    (approval::APPROVED_UNTIL, expires),
                    (approval::APPROVED_SPEC, spec.as_str()),
                ]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            );
        }
        ch
    }

    #[test]
    fn a_channel_opens_only_when_approved_and_closes_when_expired() {
        let now: Timestamp = "2026-06-01T00:00:00Z".parse().unwrap_or(Timestamp::UNIX_EPOCH);
        assert_eq!(phase(&channel(false, "2026-07-01T00:00:00Z"), Ok(()), now).0, ChannelPhase::Pending);
        assert_eq!(phase(&channel(true, "2026-07-01T00:00:00Z"), Ok(()), now).0, ChannelPhase::Active);
        assert_eq!(phase(&channel(true, "2026-05-01T00:00:00Z"), Ok(()), now).0, ChannelPhase::Expired);
        assert_eq!(phase(&channel(true, "soon"), Ok(()), now).0, ChannelPhase::Invalid);
        let declared = || Err(EndsProblem::Declaration("tenant stats does not exist".into()));
        let (p, why) = phase(&channel(true, "2026-07-01T00:00:00Z"), declared(), now);
        assert_eq!((p, why.as_str()), (ChannelPhase::Invalid, "tenant stats does not exist"));
        assert_eq!(phase(&channel(false, "2026-07-01T00:00:00Z"), declared(), now).0, ChannelPhase::Invalid);
        // A Service that is not there yet does not stop the approval, only the opening.
        let target = || Err(EndsProblem::Target("service api does not exist".into()));
        let (p, why) = phase(&channel(false, "2026-07-01T00:00:00Z"), target(), now);
        assert!(p == ChannelPhase::Pending && why.contains("service api does not exist"), "{why}");
        assert_eq!(phase(&channel(true, "2026-07-01T00:00:00Z"), target(), now).0, ChannelPhase::Invalid);
    }
}
