//! Exchange channels (数据共享交换): the only way traffic crosses a tenant boundary.
//!
//! `build` turns an active channel into NetworkPolicies (egress in the source tenant's
//! namespaces, ingress in front of the target Service) without I/O; `phase` decides what state a
//! channel is in; `reconcile` applies and removes the policies and keeps the status.

pub mod build;
pub mod reconcile;

use jiff::Timestamp;

use crate::api::{ChannelPhase, ExchangeChannel};

/// A channel's phase from its spec, whether its ends check out, and the time.
pub fn phase(ch: &ExchangeChannel, ends: Result<(), String>, now: Timestamp) -> (ChannelPhase, String) {
    let expires: Timestamp = match ch.spec.expires.parse() {
        Ok(t) => t,
        Err(e) => {
            return (ChannelPhase::Invalid, format!("spec.expires '{}' is not an RFC 3339 time: {e}", ch.spec.expires));
        }
    };
    if now >= expires {
        return (ChannelPhase::Expired, format!("expired at {expires}; the flow is closed"));
    }
    if let Err(why) = ends {
        return (ChannelPhase::Invalid, why);
    }
    if !ch.spec.approved {
        return (ChannelPhase::Pending, format!("waiting for approval by {}; nothing is open", ch.spec.approver));
    }
    (ChannelPhase::Active, format!("open until {expires}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{ChannelSource, ChannelTarget, ExchangeChannelSpec};

    pub(crate) fn channel(approved: bool, expires: &str) -> ExchangeChannel {
        ExchangeChannel::new(
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
                approver: "director".into(),
                approved,
                expires: expires.into(),
                gateway: None,
            },
        )
    }

    #[test]
    fn a_channel_opens_only_when_approved_and_closes_when_expired() {
        let now: Timestamp = "2026-06-01T00:00:00Z".parse().unwrap_or(Timestamp::UNIX_EPOCH);
        assert_eq!(phase(&channel(false, "2026-07-01T00:00:00Z"), Ok(()), now).0, ChannelPhase::Pending);
        assert_eq!(phase(&channel(true, "2026-07-01T00:00:00Z"), Ok(()), now).0, ChannelPhase::Active);
        assert_eq!(phase(&channel(true, "2026-05-01T00:00:00Z"), Ok(()), now).0, ChannelPhase::Expired);
        assert_eq!(phase(&channel(true, "soon"), Ok(()), now).0, ChannelPhase::Invalid);
        let (p, why) = phase(&channel(true, "2026-07-01T00:00:00Z"), Err("tenant stats does not exist".into()), now);
        assert_eq!((p, why.as_str()), (ChannelPhase::Invalid, "tenant stats does not exist"));
    }
}
