//! Approval of exchange channels: who may approve, what an approval covers, and how it is kept.
//!
//! An approval is bound to what the approver saw. The admission webhook records it on the
//! channel as annotations (who, when, the latest expiry approved, and an SM3 fingerprint of the
//! approved spec) that only the webhook writes; the controller opens a channel only when that
//! record matches the spec in force. So a requester who changes the gateway, the purpose or the
//! pods after approval, or extends the expiry, gets a `Pending` channel, never a wider one.
//!
//! Everything here is pure: the webhook's mutating and validating handlers and the controller
//! all call these functions, so the three never disagree.

use std::collections::BTreeMap;

use jiff::Timestamp;

use crate::{
    api::{ExchangeChannel, ExchangeChannelSpec},
    pki::sm,
};

/// Who requested the channel (set by the webhook on creation, never changed).
pub const REQUESTED_BY: &str = "zhengyun.io/requested-by";
/// Who approved what the channel says.
pub const APPROVED_BY: &str = "zhengyun.io/approved-by";
/// When they approved it.
pub const APPROVED_AT: &str = "zhengyun.io/approved-at";
/// The latest expiry they approved.
pub const APPROVED_UNTIL: &str = "zhengyun.io/approved-until";
/// SM3 of the approved spec, approval flag and expiry left out.
pub const APPROVED_SPEC: &str = "zhengyun.io/approved-spec";
/// The annotations only the admission webhook writes.
pub const ANNOTATIONS: [&str; 5] = [REQUESTED_BY, APPROVED_BY, APPROVED_AT, APPROVED_UNTIL, APPROVED_SPEC];

/// The authenticated caller of an API request.
#[derive(Debug, Clone, Copy)]
pub struct Caller<'a> {
    pub user: &'a str,
    pub groups: &'a [String],
}

/// A recorded approval.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub by: String,
    pub at: String,
    pub until: String,
    pub spec: String,
}

impl Record {
    /// The record on a channel, if it has a whole one.
    pub fn read(ch: &ExchangeChannel) -> Option<Record> {
        let a = ch.metadata.annotations.as_ref()?;
        Some(Record {
            by: a.get(APPROVED_BY)?.clone(),
            at: a.get(APPROVED_AT)?.clone(),
            until: a.get(APPROVED_UNTIL)?.clone(),
            spec: a.get(APPROVED_SPEC)?.clone(),
        })
    }

    fn new(by: &str, spec: &ExchangeChannelSpec, now: Timestamp) -> Record {
        Record { by: by.into(), at: now.to_string(), until: spec.expires.clone(), spec: fingerprint(spec) }
    }
}

/// The requester recorded on a channel.
pub fn requested_by(ch: &ExchangeChannel) -> Option<&str> {
    ch.metadata.annotations.as_ref()?.get(REQUESTED_BY).map(String::as_str)
}

/// What an approval covers: the whole spec except the approval flag and the expiry (whose
/// approved bound is kept apart, so shortening a channel needs no new approval).
pub fn fingerprint(spec: &ExchangeChannelSpec) -> String {
    let mut covered = spec.clone();
    covered.approved = false;
    covered.expires = String::new();
    sm::hex(&sm::sm3(&serde_json::to_vec(&covered).unwrap_or_default()))
}

/// The approver in words, for messages.
pub fn approver(spec: &ExchangeChannelSpec) -> String {
    match (&spec.approver, &spec.approver_group) {
        (Some(u), _) => u.clone(),
        (None, Some(g)) => format!("a member of group {g}"),
        (None, None) => "nobody (no approver named)".into(),
    }
}

fn is_approver(spec: &ExchangeChannelSpec, caller: Caller) -> bool {
    spec.approver.as_deref() == Some(caller.user)
        || spec.approver_group.as_ref().is_some_and(|g| caller.groups.iter().any(|c| c == g))
}

/// Whether `caller` may approve: they are the approver (or in the approver group) and did not
/// request the channel themselves.
pub fn may_approve(spec: &ExchangeChannelSpec, caller: Caller, requester: Option<&str>) -> Result<(), String> {
    if !is_approver(spec, caller) {
        return Err(format!(
            "spec.approved: only {} may approve this channel (you are {})",
            approver(spec),
            caller.user
        ));
    }
    if requester == Some(caller.user) {
        return Err(format!(
            "spec.approved: {} requested this channel and may not approve it too; another approver must",
            caller.user
        ));
    }
    Ok(())
}

fn time(field: &str, value: &str) -> Result<Timestamp, String> {
    value.parse().map_err(|e| format!("{field}: '{value}' is not an RFC 3339 time: {e}"))
}

/// What the webhook makes of a create or update.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// The `spec.approved` that is stored.
    pub approved: bool,
    /// The annotations of [`ANNOTATIONS`] that are stored (absent ones removed).
    pub annotations: BTreeMap<&'static str, String>,
    /// Words for the caller (kubectl prints them as `Warning:`).
    pub warnings: Vec<String>,
}

impl Decision {
    fn new(approved: bool, requester: Option<&str>, record: Option<&Record>, warnings: Vec<String>) -> Decision {
        let mut annotations = BTreeMap::new();
        if let Some(r) = requester {
            annotations.insert(REQUESTED_BY, r.to_string());
        }
        if let Some(r) = record {
            annotations.insert(APPROVED_BY, r.by.clone());
            annotations.insert(APPROVED_AT, r.at.clone());
            annotations.insert(APPROVED_UNTIL, r.until.clone());
            annotations.insert(APPROVED_SPEC, r.spec.clone());
        }
        Decision { approved, annotations, warnings }
    }
}

/// Decides a create (`old` is `None`) or an update of a channel by `caller`: refuses forgeries,
/// records a real approval, and drops an approval that the change goes beyond.
pub fn admit(
    old: Option<&ExchangeChannel>,
    new: &ExchangeChannel,
    caller: Caller,
    now: Timestamp,
) -> Result<Decision, String> {
    let spec = &new.spec;
    let expires = time("spec.expires", &spec.expires)?;
    let Some(old) = old else {
        if expires <= now {
            return Err(format!("spec.expires: {expires} is already past; a channel must open for some time"));
        }
        if spec.approver.as_deref() == Some(caller.user) {
            return Err(format!(
                "spec.approver: {} may not approve a channel they request; name another approver",
                caller.user
            ));
        }
        if spec.approved {
            return Err(format!(
                "spec.approved: a channel is requested first and approved afterwards by {}; create it without approved: true",
                approver(spec)
            ));
        }
        return Ok(Decision::new(false, Some(caller.user), None, Vec::new()));
    };
    if spec.approver != old.spec.approver || spec.approver_group != old.spec.approver_group {
        return Err("spec.approver and spec.approverGroup are fixed when the channel is requested: delete the channel and request it again to change who approves it".into());
    }
    let requester = requested_by(old);
    let record = Record::read(old).filter(|_| old.spec.approved);
    if !spec.approved {
        let warnings = match &record {
            Some(r) => vec![format!("the approval by {} is withdrawn: the channel closes", r.by)],
            None => Vec::new(),
        };
        return Ok(Decision::new(false, requester, None, warnings));
    }
    // Still within what was approved: the same spec, and no expiry past the approved one.
    let within = |r: &Record| -> Result<bool, String> {
        Ok(r.spec == fingerprint(spec) && expires <= time(APPROVED_UNTIL, &r.until)?)
    };
    if is_approver(spec, caller) {
        may_approve(spec, caller, requester)?;
        let keep = match &record {
            Some(r) => within(r)?,
            None => false,
        };
        let record = if keep { record } else { Some(Record::new(caller.user, spec, now)) };
        return Ok(Decision::new(true, requester, record.as_ref(), Vec::new()));
    }
    let Some(r) = record else {
        // Approving what was not approved, as someone who is not the approver: refused, with
        // `may_approve`'s words for why.
        return Err(may_approve(spec, caller, requester).err().unwrap_or_default());
    };
    if within(&r)? {
        return Ok(Decision::new(true, requester, Some(&r), Vec::new()));
    }
    Ok(Decision::new(
        false,
        requester,
        None,
        vec![format!(
            "this change goes beyond what {} approved: the channel is Pending and closed until {} approves it again",
            r.by,
            approver(spec)
        )],
    ))
}

/// The validating webhook's second look, after any mutation: the stored record is the old one,
/// none, or a fresh approval by the caller of exactly this spec; the requester never changes.
pub fn check_record(old: Option<&ExchangeChannel>, new: &ExchangeChannel, caller: Caller) -> Result<(), String> {
    let want_requester = match old {
        None => Some(caller.user),
        Some(o) => requested_by(o),
    };
    if requested_by(new) != want_requester {
        return Err(format!("metadata.annotations[{REQUESTED_BY}] is set by zhengyun's admission webhook only"));
    }
    let annotated =
        new.metadata.annotations.as_ref().is_some_and(|a| {
            [APPROVED_BY, APPROVED_AT, APPROVED_UNTIL, APPROVED_SPEC].iter().any(|k| a.contains_key(*k))
        });
    let record = Record::read(new);
    if annotated && record.is_none() {
        return Err(format!(
            "metadata.annotations[{APPROVED_BY}]: the approval record is set by zhengyun's admission webhook only"
        ));
    }
    let Some(r) = record else { return Ok(()) };
    if old.and_then(Record::read).as_ref() == Some(&r) {
        return Ok(());
    }
    if r.by != caller.user || r.spec != fingerprint(&new.spec) || r.until != new.spec.expires || !new.spec.approved {
        return Err(format!(
            "metadata.annotations[{APPROVED_BY}]: the approval record is set by zhengyun's admission webhook only"
        ));
    }
    may_approve(&new.spec, caller, requested_by(new))
}

/// Whether a channel is approved as it stands: approved, with a record that covers its spec
/// and expiry. `Err` says in words what it waits for.
pub fn verify(ch: &ExchangeChannel) -> Result<Record, String> {
    let who = approver(&ch.spec);
    if !ch.spec.approved {
        return Err(format!("waiting for approval by {who}"));
    }
    let Some(r) = Record::read(ch) else {
        return Err(format!(
            "spec.approved is true but no approval was recorded by the admission webhook; waiting for {who} to approve it"
        ));
    };
    if r.spec != fingerprint(&ch.spec) {
        return Err(format!("the channel changed after {} approved it; waiting for {who} to approve it again", r.by));
    }
    let (Ok(expires), Ok(until)) = (ch.spec.expires.parse::<Timestamp>(), r.until.parse::<Timestamp>()) else {
        return Err("the approved expiry does not read as a time; waiting for approval again".into());
    };
    if expires > until {
        return Err(format!(
            "spec.expires {expires} is later than the {until} that {} approved; waiting for {who} to approve it",
            r.by
        ));
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{ChannelGateway, ChannelSource, ChannelTarget};

    const T0: &str = "2026-06-01T00:00:00Z";

    fn now() -> Timestamp {
        T0.parse().unwrap_or(Timestamp::UNIX_EPOCH)
    }

    fn channel() -> ExchangeChannel {
        ExchangeChannel::new(
            "census-to-police",
            ExchangeChannelSpec {
                from: ChannelSource { tenant: "census".into(), pod_labels: Default::default() },
                to: ChannelTarget {
                    tenant: "police".into(),
                    namespace: "ingest".into(),
                    service: "api".into(),
                    port: 443,
                },
                purpose: "population statistics".into(),
                approver: Some("director-li".into()),
                approver_group: None,
                approved: false,
                expires: "2026-07-01T00:00:00Z".into(),
                gateway: Some(ChannelGateway { cidr: "10.200.0.10/32".into() }),
            },
        )
    }

    fn who(user: &str) -> Caller<'_> {
        Caller { user, groups: &[] }
    }

    /// Stores what a decision says, as the API server would after the mutating webhook.
    fn store(mut ch: ExchangeChannel, d: &Decision) -> ExchangeChannel {
        ch.spec.approved = d.approved;
        let a = ch.metadata.annotations.get_or_insert_with(Default::default);
        for k in ANNOTATIONS {
            a.remove(k);
        }
        for (k, v) in &d.annotations {
            a.insert(k.to_string(), v.clone());
        }
        ch
    }

    /// Requested by clerk-wang, approved by director-li.
    fn approved() -> ExchangeChannel {
        let requested = store(channel(), &admit(None, &channel(), who("clerk-wang"), now()).expect("request"));
        let mut ask = requested.clone();
        ask.spec.approved = true;
        let d = admit(Some(&requested), &ask, who("director-li"), now()).expect("approve");
        store(ask, &d)
    }

    #[test]
    fn a_channel_is_requested_then_approved_by_its_approver() {
        let ch = approved();
        assert_eq!(requested_by(&ch), Some("clerk-wang"));
        let r = verify(&ch).expect("approved");
        assert_eq!((r.by.as_str(), r.until.as_str()), ("director-li", "2026-07-01T00:00:00Z"));
    }

    #[test]
    fn nobody_approves_at_creation_or_their_own_request() {
        let mut ch = channel();
        ch.spec.approved = true;
        let err = admit(None, &ch, who("director-li"), now()).unwrap_err();
        assert!(err.starts_with("spec.approver"), "{err}");
        let err = admit(None, &ch, who("clerk-wang"), now()).unwrap_err();
        assert!(err.starts_with("spec.approved") && err.contains("afterwards"), "{err}");
        // In a group, the requester may not be the one who approves.
        let mut grouped = channel();
        grouped.spec.approver = None;
        grouped.spec.approver_group = Some("directors".into());
        let groups = vec!["directors".to_string()];
        let chen = Caller { user: "director-chen", groups: &groups };
        let requested = store(grouped.clone(), &admit(None, &grouped, chen, now()).expect("request"));
        let mut ask = requested.clone();
        ask.spec.approved = true;
        let err = admit(Some(&requested), &ask, chen, now()).unwrap_err();
        assert!(err.contains("requested this channel"), "{err}");
        let li = Caller { user: "director-li", groups: &groups };
        assert!(admit(Some(&requested), &ask, li, now()).is_ok_and(|d| d.approved));
    }

    #[test]
    fn a_past_expiry_is_refused_at_creation() {
        let mut ch = channel();
        ch.spec.expires = "2026-05-01T00:00:00Z".into();
        assert!(admit(None, &ch, who("clerk-wang"), now()).unwrap_err().contains("already past"));
    }

    #[test]
    fn a_non_approver_cannot_approve_by_naming_themself() {
        let requested = store(channel(), &admit(None, &channel(), who("clerk-wang"), now()).expect("request"));
        let mut forged = requested.clone();
        forged.spec.approved = true;
        forged.spec.approver = Some("clerk-wang".into());
        let err = admit(Some(&requested), &forged, who("clerk-wang"), now()).unwrap_err();
        assert!(err.contains("fixed when the channel is requested"), "{err}");
        let mut forged = requested.clone();
        forged.spec.approved = true;
        let err = admit(Some(&requested), &forged, who("clerk-wang"), now()).unwrap_err();
        assert!(err.contains("only director-li may approve"), "{err}");
    }

    #[test]
    fn changing_what_was_approved_drops_the_approval() {
        let ch = approved();
        for change in [
            |c: &mut ExchangeChannel| c.spec.gateway = Some(ChannelGateway { cidr: "0.0.0.0/0".into() }),
            |c: &mut ExchangeChannel| c.spec.purpose = "anything".into(),
            |c: &mut ExchangeChannel| {
                c.spec.from.pod_labels.insert("app".into(), "anything".into());
            },
            |c: &mut ExchangeChannel| c.spec.expires = "2027-07-01T00:00:00Z".into(),
        ] {
            let mut edited = ch.clone();
            change(&mut edited);
            let d = admit(Some(&ch), &edited, who("clerk-wang"), now()).expect("admitted, de-approved");
            assert!(!d.approved && !d.annotations.contains_key(APPROVED_BY), "{d:?}");
            assert!(d.warnings[0].contains("beyond what director-li approved"));
            let stored = store(edited.clone(), &d);
            assert!(verify(&stored).is_err());
            // Even if the webhook were skipped, the controller would not open the edited spec.
            let mut skipped = edited;
            skipped.metadata.annotations = ch.metadata.annotations.clone();
            assert!(verify(&skipped).is_err(), "the record does not cover the change");
        }
    }

    #[test]
    fn narrowing_keeps_the_approval_and_the_approver_may_change_it() {
        let ch = approved();
        let mut shorter = ch.clone();
        shorter.spec.expires = "2026-06-15T00:00:00Z".into();
        let d = admit(Some(&ch), &shorter, who("clerk-wang"), now()).expect("shorten");
        assert!(d.approved && d.annotations.get(APPROVED_BY).map(String::as_str) == Some("director-li"));
        assert!(verify(&store(shorter, &d)).is_ok());

        let mut longer = ch.clone();
        longer.spec.expires = "2026-12-31T00:00:00Z".into();
        let d = admit(Some(&ch), &longer, who("director-li"), now()).expect("the approver extends");
        assert!(d.approved && d.annotations.get(APPROVED_UNTIL).map(String::as_str) == Some("2026-12-31T00:00:00Z"));
        assert!(verify(&store(longer, &d)).is_ok());

        let mut withdrawn = ch.clone();
        withdrawn.spec.approved = false;
        let d = admit(Some(&ch), &withdrawn, who("clerk-wang"), now()).expect("anyone may close it");
        assert!(!d.approved && d.warnings[0].contains("withdrawn"));
    }

    #[test]
    fn the_record_cannot_be_written_by_hand() {
        let ch = approved();
        let requested = store(channel(), &admit(None, &channel(), who("clerk-wang"), now()).expect("request"));
        // The requester copies a record onto their own approval.
        let mut forged = requested.clone();
        forged.spec.approved = true;
        forged.metadata.annotations = ch.metadata.annotations.clone();
        let err = check_record(Some(&requested), &forged, who("clerk-wang")).unwrap_err();
        assert!(err.contains("admission webhook only"), "{err}");
        // Or rewrites who requested it.
        let mut renamed = requested.clone();
        renamed.metadata.annotations.get_or_insert_with(Default::default).insert(REQUESTED_BY.into(), "x".into());
        assert!(check_record(Some(&requested), &renamed, who("clerk-wang")).is_err());
        // What the webhook stores passes its own second look.
        assert!(check_record(Some(&requested), &ch, who("director-li")).is_ok());
        assert!(check_record(Some(&ch), &ch, who("clerk-wang")).is_ok());
    }

    #[test]
    fn an_approval_without_a_record_opens_nothing() {
        let mut ch = channel();
        ch.spec.approved = true;
        assert!(verify(&ch).unwrap_err().contains("no approval was recorded"));
    }
}
