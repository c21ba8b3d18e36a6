//! The channel controller's metrics: channels by phase, and each one's time to expiry.

use std::sync::Arc;

use prometheus::{GaugeVec, IntGaugeVec, Opts};

use crate::metrics::{Metrics, must};

pub struct ChannelMetrics {
    channels: IntGaugeVec,
    channel_expiry: GaugeVec,
    channel_phases: std::sync::Mutex<std::collections::BTreeMap<String, String>>,
}

impl ChannelMetrics {
    /// Defines them and registers them into `m`'s registry.
    pub fn new(m: &Metrics) -> Arc<Self> {
        let channels = must(IntGaugeVec::new(
            Opts::new("zhengyun_exchange_channels", "Exchange channels by phase (Pending, Active, Expired, Invalid)"),
            &["phase"],
        ));
        let channel_expiry = must(GaugeVec::new(
            Opts::new(
                "zhengyun_exchange_channel_expiry_seconds",
                "Seconds until an exchange channel expires (0 once expired)",
            ),
            &["channel"],
        ));
        m.register(channels.clone());
        m.register(channel_expiry.clone());
        Arc::new(ChannelMetrics { channels, channel_expiry, channel_phases: Default::default() })
    }

    /// Records a channel's phase and time to expiry.
    pub fn observe_channel(&self, channel: &str, phase: &str, seconds_to_expiry: f64) {
        self.channel_expiry.with_label_values(&[channel]).set(seconds_to_expiry);
        if let Ok(mut phases) = self.channel_phases.lock() {
            phases.insert(channel.to_string(), phase.to_string());
            self.count_channels(&phases);
        }
    }

    /// Forgets a deleted channel.
    pub fn forget_channel(&self, channel: &str) {
        let _ = self.channel_expiry.remove_label_values(&[channel]);
        if let Ok(mut phases) = self.channel_phases.lock() {
            phases.remove(channel);
            self.count_channels(&phases);
        }
    }

    fn count_channels(&self, phases: &std::collections::BTreeMap<String, String>) {
        for phase in ["Pending", "Active", "Expired", "Invalid"] {
            self.channels.with_label_values(&[phase]).set(phases.values().filter(|p| *p == phase).count() as i64);
        }
    }
}
