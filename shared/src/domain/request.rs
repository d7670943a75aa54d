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
    #[serde(deserialize_with = "whole_number")]
    pub duration_months: i64,
    pub is_paid: bool,
    #[serde(default)]
    pub comment: Option<String>,
    pub auto_renew: bool,
    #[serde(default)]
    pub payment_method_id: Option<String>,
}

/// A JSON integer as JSON Schema (and so openapi.yaml's `type: integer`) defines it: any
/// number without a fractional part, so `8.0` is 8 while `8.5` is refused.
fn whole_number<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<i64, D::Error> {
    struct WholeNumber;
    impl serde::de::Visitor<'_> for WholeNumber {
        type Value = i64;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a whole number")
        }
        fn visit_i64<E: serde::de::Error>(self, n: i64) -> Result<i64, E> {
            Ok(n)
        }
        fn visit_u64<E: serde::de::Error>(self, n: u64) -> Result<i64, E> {
            i64::try_from(n).map_err(|_| E::invalid_value(serde::de::Unexpected::Unsigned(n), &self))
        }
        fn visit_f64<E: serde::de::Error>(self, f: f64) -> Result<i64, E> {
            // Range-checked in `validate`; beyond ±2^53 a float is no longer exact, so refuse it.
            if f.fract() == 0.0 && f.abs() <= 9_007_199_254_740_992.0 {
                Ok(f as i64)
            } else {
                Err(E::invalid_value(serde::de::Unexpected::Float(f), &self))
            }
        }
    }
    deserializer.deserialize_any(WholeNumber)
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
        // Taken as sent: a payment method id is an exact token, and openapi.yaml says exactly
        // which ones are accepted (any value at all, even "", is refused for a granted one).
        let billing = match (self.is_paid, self.payment_method_id) {
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
        if self.comment.as_ref().is_some_and(|c| c.chars().count() > COMMENT_MAX) {
            errors.push("comment", format!("must be at most {COMMENT_MAX} characters"));
        }
        let comment = self.comment.map(|c| c.trim().to_owned()).filter(|c| !c.is_empty());
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
    fn payment_method_is_taken_exactly_as_sent() {
        // What openapi.yaml's pattern refuses, the server refuses: no trimming, and a granted
        // subscription takes no value at all, not even an empty one.
        assert_eq!(fields(update("premium", 1, true, Some(" pm_card_visa")).validate().unwrap_err()), ["payment_method_id"]);
        assert_eq!(fields(update("premium", 1, true, Some("")).validate().unwrap_err()), ["payment_method_id"]);
        assert_eq!(fields(update("premium", 1, false, Some("")).validate().unwrap_err()), ["payment_method_id"]);
    }

    #[test]
    fn duration_is_any_json_integer() {
        let body = |months: &str| format!(r#"{{"tier":"premium","duration_months":{months},"is_paid":false,"auto_renew":false}}"#);
        for (raw, months) in [("8", 8), ("8.0", 8), ("1e1", 10), ("-3", -3)] {
            let update: SubscriptionUpdate = serde_json::from_str(&body(raw)).unwrap_or_else(|e| panic!("{raw}: {e}"));
            assert_eq!(update.duration_months, months, "{raw}");
        }
        for raw in ["8.5", "1e300", "\"8\"", "null"] {
            assert!(serde_json::from_str::<SubscriptionUpdate>(&body(raw)).is_err(), "{raw}");
        }
    }

    #[test]
    fn comment_length_counts_what_was_sent() {
        let mut padded = update("premium", 1, false, None);
        padded.comment = Some(format!("{} ", "x".repeat(COMMENT_MAX)));
        assert_eq!(fields(padded.validate().unwrap_err()), ["comment"]);
        let mut blank = update("premium", 1, false, None);
        blank.comment = Some("   ".into());
        assert_eq!(blank.validate().unwrap().comment, None);
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
