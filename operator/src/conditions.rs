//! Status conditions with Kubernetes' conventions: `lastTransitionTime` only moves when the
//! status flips, and every condition records the generation it describes.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

/// A condition as a reconcile round sees it, before timestamps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    pub type_: &'static str,
    pub ok: bool,
    pub reason: String,
    pub message: String,
}

impl Observed {
    pub fn new(type_: &'static str, ok: bool, reason: impl Into<String>, message: impl Into<String>) -> Self {
        Observed { type_, ok, reason: reason.into(), message: message.into() }
    }
}

/// Merges this round's conditions into the previous ones.
pub fn merge(
    previous: &[Condition],
    observed: &[Observed],
    generation: Option<i64>,
    now: jiff::Timestamp,
) -> Vec<Condition> {
    observed
        .iter()
        .map(|o| {
            let status = if o.ok { "True" } else { "False" };
            let last_transition_time = previous
                .iter()
                .find(|p| p.type_ == o.type_ && p.status == status)
                .map(|p| p.last_transition_time.clone())
                .unwrap_or(Time(now));
            Condition {
                type_: o.type_.into(),
                status: status.into(),
                reason: o.reason.clone(),
                message: o.message.clone(),
                observed_generation: generation,
                last_transition_time,
            }
        })
        .collect()
}

/// Whether two condition lists say the same, times aside: a status whose conditions only
/// differ in when they were computed is not worth a write.
pub fn same(a: &[Condition], b: &[Condition]) -> bool {
    let key =
        |c: &Condition| (c.type_.clone(), c.status.clone(), c.reason.clone(), c.message.clone(), c.observed_generation);
    a.len() == b.len() && a.iter().map(key).eq(b.iter().map(key))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transition_time_moves_only_when_status_flips() {
        let t0 = jiff::Timestamp::from_second(1_000).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
        let t1 = jiff::Timestamp::from_second(2_000).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
        let first = merge(&[], &[Observed::new("Ready", false, "Progressing", "")], Some(1), t0);
        let same = merge(&first, &[Observed::new("Ready", false, "Progressing", "still")], Some(2), t1);
        assert_eq!(same[0].last_transition_time.0, t0);
        let flipped = merge(&same, &[Observed::new("Ready", true, "Ready", "")], Some(2), t1);
        assert_eq!(flipped[0].last_transition_time.0, t1);
    }
}
