//! The admin API's business metrics, one EMF line per outcome through
//! [`shared::metrics`]. Dimension values come from small closed sets (tier, source).

use shared::metrics::Metrics;

/// One count of `metric` under `dimensions`.
pub fn count(metric: &'static str, dimensions: &[(&'static str, &str)]) {
    dimensions.iter().fold(Metrics::new(), |m, (name, value)| m.dimension(name, *value)).count(metric, 1).emit();
}
