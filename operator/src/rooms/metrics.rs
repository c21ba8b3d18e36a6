//! The room controller's metrics, and showback's per-department gauges.

use std::sync::Arc;

use prometheus::{GaugeVec, IntCounterVec, Opts};

use crate::metrics::{Metrics, must};

pub struct RoomMetrics {
    /// Computer rooms refused (two rooms, another architecture or zone, ...), by reason.
    pub room_problems: IntCounterVec,
    /// Per room and resource: allocatable and requested on its nodes (showback, 以租代建).
    room_allocatable: GaugeVec,
    room_requested: GaugeVec,
    /// Per department and resource: requested by its pods, its tenants' quota, and what its
    /// computer rooms brought (showback).
    pub department: GaugeVec,
}

impl RoomMetrics {
    /// Defines them and registers them into `m`'s registry.
    pub fn new(m: &Metrics) -> Arc<Self> {
        let room_problems = must(IntCounterVec::new(
            Opts::new(
                "zhengyun_computer_room_problems_total",
                "Times a computer room labelled none of its nodes, by reason (NodeInTwoRooms, ArchMismatch, ZoneMismatch, ZoneNotFound, InvalidSpec)",
            ),
            &["reason"],
        ));
        let room_allocatable = must(GaugeVec::new(
            Opts::new(
                "zhengyun_room_allocatable",
                "Allocatable capacity of a computer room's nodes (cores, bytes, count)",
            ),
            &["room", "resource"],
        ));
        let room_requested = must(GaugeVec::new(
            Opts::new(
                "zhengyun_room_requested",
                "Requests of the pods on a computer room's nodes (cores, bytes, count)",
            ),
            &["room", "resource"],
        ));
        let department = must(GaugeVec::new(
            Opts::new(
                "zhengyun_department_resources",
                "Per department (its code) and resource (cpu in cores, memory in bytes): what its pods request, its tenants' quota, and the allocatable capacity of the computer rooms it owns",
            ),
            &["department", "resource", "kind"],
        ));
        for g in [&room_allocatable, &room_requested, &department] {
            m.register(g.clone());
        }
        m.register(room_problems.clone());
        Arc::new(RoomMetrics { room_problems, room_allocatable, room_requested, department })
    }

    /// Records what a room's nodes hold, by resource (quantities in thousandths, as parsed).
    pub fn observe_room(
        &self,
        room: &str,
        allocatable: &std::collections::BTreeMap<String, i128>,
        requested: &std::collections::BTreeMap<String, i128>,
    ) {
        self.forget_room(room);
        for (k, v) in allocatable {
            self.room_allocatable.with_label_values(&[room, k]).set(*v as f64 / 1000.0);
            let r = requested.get(k).copied().unwrap_or(0);
            self.room_requested.with_label_values(&[room, k]).set(r as f64 / 1000.0);
        }
    }

    /// Forgets a deleted room's series.
    pub fn forget_room(&self, room: &str) {
        use prometheus::core::Collector;
        for g in [&self.room_allocatable, &self.room_requested] {
            let stale: Vec<String> = Collector::collect(g)
                .iter()
                .flat_map(|f| f.get_metric().iter())
                .filter(|m| m.get_label().iter().any(|l| l.name() == "room" && l.value() == room))
                .filter_map(|m| m.get_label().iter().find(|l| l.name() == "resource").map(|l| l.value().to_string()))
                .collect();
            for resource in stale {
                let _ = g.remove_label_values(&[room, &resource]);
            }
        }
    }
}
