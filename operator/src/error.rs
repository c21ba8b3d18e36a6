//! The operator's one error type. Each variant has a short stable category used as a metric
//! label and in logs, so dashboards do not break when a message's wording changes.

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API error: {0}")]
    Kube(#[from] kube::Error),

    #[error("finalizer: {0}")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<Error>>),

    #[error("deletion blocked: {0}")]
    DeletionBlocked(String),

    /// A child object the API server refused; the round applied the others and said so in the
    /// status, an Event and `zhengyun_child_apply_failures_total`.
    #[error("applying {kind} {name} failed: {error}")]
    Apply { kind: String, name: String, error: String },

    #[error(
        "the {crd} CustomResourceDefinition is not installed: apply crds/ first (`zhengyun-operator crd | kubectl apply -f -`)"
    )]
    CrdMissing { crd: &'static str },
}

impl Error {
    /// A short label that stays stable across releases.
    pub fn category(&self) -> &'static str {
        match self {
            Error::Kube(_) => "kube_api",
            Error::Finalizer(inner) => match inner.as_ref() {
                kube::runtime::finalizer::Error::ApplyFailed(e) | kube::runtime::finalizer::Error::CleanupFailed(e) => {
                    e.category()
                }
                _ => "finalizer",
            },
            Error::DeletionBlocked(_) => "deletion_blocked",
            Error::Apply { .. } => "apply",
            Error::CrdMissing { .. } => "crd_missing",
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
