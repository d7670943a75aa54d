//! The admin's `PUT /users/{user_id}/subscription` body, and its validated form.

use serde::{Deserialize, Serialize};

use super::{Tier, ValidationErrors};

pub const MIN_DURATION_MONTHS: i64 = 1;
pub const MAX_DURATION_MONTHS: i64 = 24;
const COMMENT_MAX: usize = 500;

/// The request body as it arrives (the original guide's `SubscriptionUpdate`).
/// Loosely typed on purpose, so that a wrong value becomes a 422 naming the field
/// rather than an opaque deserialisation failure.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SubscriptionUpdate {
    pub tier: String,
    pub duration_months: i64,
    pub is_paid: bool,
    #[serde(default)]
    pub comment: Option<String>,
    pub auto_renew: bool,
    #[serde(default)]
    pub payment_method_id: Option<String>,
}

/// How a subscription is paid for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Billing {
    /// Charged through Stripe with this payment method (a `pm_…` id or test token).
    Paid { payment_method_id: String },
    /// A free trial or comp: no card; it ends by cancelling, never by charging.
    Granted,
}

/// A validated subscription request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriptionRequest {
    pub tier: Tier,
    pub duration_months: u32,
    pub billing: Billing,
    pub auto_renew: bool,
    pub comment: Option<String>,
}

impl SubscriptionUpdate {
    pub fn validate(self) -> Result<SubscriptionRequest, ValidationErrors> {
        let mut errors = ValidationErrors::default();
        let tier = self.tier.parse::<Tier>().map_err(|e| errors.push("tier", e.to_string())).ok();
        if !(MIN_DURATION_MONTHS..=MAX_DURATION_MONTHS).contains(&self.duration_months) {
            errors.push("duration_months", format!("must be between {MIN_DURATION_MONTHS} and {MAX_DURATION_MONTHS}"));
        }
        let payment_method = self.payment_method_id.map(|p| p.trim().to_owned()).filter(|p| !p.is_empty());
        let billing = match (self.is_paid, payment_method) {
            (true, Some(pm)) if valid_payment_method(&pm) => Some(Billing::Paid { payment_method_id: pm }),
            (true, Some(_)) => {
                errors.push("payment_method_id", "must be a Stripe payment method id (pm_…)");
                None
            }
            (true, None) => {
                errors.push("payment_method_id", "is required when is_paid is true");
                None
            }
            (false, Some(_)) => {
                errors.push("payment_method_id", "must be omitted when is_paid is false (a granted subscription takes no card)");
                None
            }
            (false, None) => Some(Billing::Granted),
        };
        if tier == Some(Tier::Free) && self.is_paid {
            errors.push("is_paid", "the free tier cannot be paid for");
        }
        let comment = self.comment.map(|c| c.trim().to_owned()).filter(|c| !c.is_empty());
        if comment.as_ref().is_some_and(|c| c.chars().count() > COMMENT_MAX) {
            errors.push("comment", format!("must be at most {COMMENT_MAX} characters"));
        }
        match (tier, billing) {
            (Some(tier), Some(billing)) if errors.is_empty() => Ok(SubscriptionRequest {
                tier,
                duration_months: self.duration_months as u32,
                billing,
                auto_renew: self.auto_renew,
                comment,
            }),
            _ => Err(errors),
        }
    }
}

fn valid_payment_method(pm: &str) -> bool {
    pm.len() <= 255
        && pm.strip_prefix("pm_").is_some_and(|rest| !rest.is_empty() && rest.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn update(tier: &str, months: i64, is_paid: bool, pm: Option<&str>) -> SubscriptionUpdate {
        SubscriptionUpdate {
            tier: tier.into(),
            duration_months: months,
            is_paid,
            comment: None,
            auto_renew: true,
            payment_method_id: pm.map(Into::into),
        }
    }

    fn fields(err: ValidationErrors) -> Vec<String> {
        err.errors.into_iter().map(|e| e.field).collect()
    }

    #[test]
    fn paid_needs_a_payment_method() {
        assert_eq!(fields(update("premium", 1, true, None).validate().unwrap_err()), ["payment_method_id"]);
        let ok = update("premium", 12, true, Some("pm_card_visa")).validate().unwrap();
        assert_eq!(ok.billing, Billing::Paid { payment_method_id: "pm_card_visa".into() });
    }

    #[test]
    fn granted_takes_no_card() {
        assert_eq!(update("enterprise", 3, false, None).validate().unwrap().billing, Billing::Granted);
        assert_eq!(fields(update("enterprise", 3, false, Some("pm_card_visa")).validate().unwrap_err()), ["payment_method_id"]);
    }

    #[test]
    fn reports_every_bad_field() {
        let err = update("gold", 0, true, Some("card")).validate().unwrap_err();
        assert_eq!(fields(err), ["tier", "duration_months", "payment_method_id"]);
        assert_eq!(fields(update("free", 1, true, Some("pm_x")).validate().unwrap_err()), ["is_paid"]);
    }

    proptest! {
        #[test]
        fn duration_is_accepted_exactly_in_range(months in -100i64..100) {
            let result = update("premium", months, false, None).validate();
            prop_assert_eq!(result.is_ok(), (1..=24).contains(&months));
        }

        #[test]
        fn unknown_tiers_are_rejected(tier in "[a-z]{1,12}") {
            let known = ["free", "premium", "enterprise"].contains(&tier.as_str());
            prop_assert_eq!(update(&tier, 1, false, None).validate().is_ok(), known);
        }
    }
}
