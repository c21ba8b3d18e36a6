//! The end-to-end suite: each test is a story a cloud admin or a department would tell,
//! run against a real kube-apiserver, etcd and kube-controller-manager and a real operator
//! process. Run it with `hack/test.sh` (tests run one at a time: they share the cluster).

mod access;
mod audit;
mod certificates;
mod channels;
mod crash_points;
mod departments;
mod deploy;
mod evidence;
mod faults;
mod first_instant;
mod gate;
mod gateway;
mod hardening;
mod helm;
mod lifecycle;
mod nodes;
mod observability;
mod operator;
mod pki;
mod quota;
mod reachability;
mod rooms;
mod traffic;
mod validation;
mod zones;
