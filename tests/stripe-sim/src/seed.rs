//! The LogiScore catalogue, with fixed ids so local runs can configure
//! `STRIPE_PRICE_PREMIUM=price_premium_monthly` without looking anything up.

use crate::resources::products::{insert_price, insert_product};
use crate::state::{Price, Recurring, Sim};
use crate::time::{wall_now, Interval};

/// Ids of the seeded catalogue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeededPrices {
    pub premium_product: String,
    pub enterprise_product: String,
    /// `price_premium_monthly`: USD 9.99 a month, lookup key `premium_monthly`.
    pub premium_monthly: String,
    /// `price_enterprise_monthly`: USD 49.99 a month, lookup key `enterprise_monthly`.
    pub enterprise_monthly: String,
}

pub const PREMIUM_MONTHLY: &str = "price_premium_monthly";
pub const ENTERPRISE_MONTHLY: &str = "price_enterprise_monthly";

/// Creates the products and prices unless they exist (so seeding twice is harmless).
/// No events are emitted: this is setup, not API traffic.
pub(crate) fn seed_prices(sim: &mut Sim) -> SeededPrices {
    let catalogue = [
        ("prod_logiscore_premium", "LogiScore Premium", PREMIUM_MONTHLY, "premium_monthly", 999),
        ("prod_logiscore_enterprise", "LogiScore Enterprise", ENTERPRISE_MONTHLY, "enterprise_monthly", 4999),
    ];
    for (product, name, price, lookup_key, amount) in catalogue {
        if !sim.products.contains_key(product) {
            insert_product(sim, Some(product.to_string()), name, None, false);
        }
        if !sim.prices.contains_key(price) {
            // The lookup key moves to the seeded price if an API-created one had it.
            for p in sim.prices.values_mut().filter(|p| p.lookup_key.as_deref() == Some(lookup_key)) {
                p.lookup_key = None;
            }
            let seq = sim.next_seq();
            insert_price(
                sim,
                Price {
                    id: price.to_string(),
                    seq,
                    created: wall_now(),
                    product: product.to_string(),
                    currency: "usd".to_string(),
                    unit_amount: amount,
                    recurring: Some(Recurring { interval: Interval::Month, interval_count: 1 }),
                    lookup_key: Some(lookup_key.to_string()),
                    nickname: Some(name.to_string()),
                    active: true,
                    metadata: Default::default(),
                },
            );
        }
    }
    SeededPrices {
        premium_product: catalogue[0].0.to_string(),
        enterprise_product: catalogue[1].0.to_string(),
        premium_monthly: PREMIUM_MONTHLY.to_string(),
        enterprise_monthly: ENTERPRISE_MONTHLY.to_string(),
    }
}
