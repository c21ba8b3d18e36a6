//! The allocator's own account of the heap, read at each scrape: with the process's resident
//! memory beside it, an SRE (and the scale benchmark) can tell what the operator holds from
//! what the allocator keeps around it.

use std::collections::HashMap;

use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;

use super::{gauge_family, gauge_series};

const NAME: &str = "zhengyun_heap_bytes";
const HELP: &str = "The heap as jemalloc (the operator's allocator) counts it: allocated (live objects), \
active (pages holding them), resident (heap and allocator pages in memory), metadata, retained (kept mapped, not resident)";

pub struct Heap {
    desc: Desc,
}

impl Heap {
    pub fn new() -> prometheus::Result<Self> {
        Ok(Heap { desc: Desc::new(NAME.into(), HELP.into(), vec!["state".into()], HashMap::new())? })
    }
}

impl Collector for Heap {
    fn desc(&self) -> Vec<&Desc> {
        vec![&self.desc]
    }

    fn collect(&self) -> Vec<MetricFamily> {
        use tikv_jemalloc_ctl::{epoch, stats};
        // The statistics are a snapshot refreshed by advancing the epoch.
        if epoch::advance().is_err() {
            return Vec::new();
        }
        let states = [
            ("allocated", stats::allocated::read()),
            ("active", stats::active::read()),
            ("resident", stats::resident::read()),
            ("metadata", stats::metadata::read()),
            ("retained", stats::retained::read()),
        ];
        let metrics =
            states.into_iter().filter_map(|(state, v)| Some(gauge_series(&[("state", state)], v.ok()? as f64)));
        vec![gauge_family(NAME, HELP, metrics.collect())]
    }
}
