//! What an admin use case can fail with, in the use case's own terms; the admin API maps
//! each variant onto its problem+json answer.

use crate::{
    billing::BillingError,
    domain::{UserId, ValidationErrors},
    store::StoreError,
};

#[derive(Debug, Clone, thiserror::Error)]
pub enum AdminError {
    #[error(transparent)]
    Validation(#[from] ValidationErrors),
    #[error("user {0} has no profile")]
    UserNotFound(UserId),
    #[error("user {0} has no subscription")]
    SubscriptionNotFound(UserId),
    /// The user was erased: the id is retired, nothing is recorded for it again.
    #[error("user {0} was erased")]
    UserErased(UserId),
    /// An erasure that may have started did not finish; a retry continues it.
    #[error("erasure unfinished: {0}")]
    ErasureUnfinished(Box<AdminError>),
    /// The request conflicts with the subscription's current state.
    #[error("conflict ({code}): {detail}")]
    Conflict { code: &'static str, detail: String },
    /// Stripe declined the card.
    #[error("card declined: {message}")]
    CardDeclined { code: Option<String>, decline_code: Option<String>, message: String },
    /// Stripe did not answer (or answered 429/5xx) after the client's retries.
    #[error("billing unavailable: {0}")]
    BillingUnavailable(String),
    /// Stripe did not confirm a create it may have carried out: the operation stays open,
    /// and a retry (same key) or the next request finishes it.
    #[error("billing outcome unknown: {0}")]
    OutcomeUnknown(String),
    /// DynamoDB did not answer.
    #[error("storage unavailable: {0}")]
    StoreUnavailable(String),
    /// Stripe refused a request this service built, or answered with something unreadable.
    #[error("billing provider error: {0}")]
    BadGateway(String),
    /// A bug or corrupt data.
    #[error("internal error: {0}")]
    Internal(String),
}

/// Which Stripe call failed: a refused payment method is the caller's to fix (422), a
/// refused subscription call is ours (502).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BillingStep {
    Customer,
    PaymentMethod,
    Subscription,
}

impl AdminError {
    pub fn conflict(code: &'static str, detail: impl Into<String>) -> Self {
        Self::Conflict { code, detail: detail.into() }
    }

    pub fn from_billing(err: BillingError, step: BillingStep) -> Self {
        match err {
            BillingError::CardDeclined { code, decline_code, message } => Self::CardDeclined { code, decline_code, message },
            BillingError::Unavailable(why) => Self::BillingUnavailable(why),
            BillingError::InvalidRequest { message, .. } if message.to_ascii_lowercase().contains("idempoten") => Self::conflict(
                "idempotency_key_reused",
                "This Idempotency-Key was already used for a different request. Use a new key for a new request.",
            ),
            BillingError::InvalidRequest { param, message }
                if step == BillingStep::PaymentMethod || param.as_deref().is_some_and(|p| p.contains("payment_method")) =>
            {
                Self::Validation(ValidationErrors::single("payment_method_id", format!("was refused by Stripe: {message}")))
            }
            BillingError::NotFound(what) if step == BillingStep::PaymentMethod => {
                Self::Validation(ValidationErrors::single("payment_method_id", format!("does not exist at Stripe ({what})")))
            }
            BillingError::InvalidRequest { message, .. } => Self::BadGateway(message),
            BillingError::NotFound(what) => Self::BadGateway(format!("stripe has no such object: {what}")),
            BillingError::Unexpected(why) => Self::BadGateway(why),
        }
    }
}

impl From<StoreError> for AdminError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(why) => Self::StoreUnavailable(why),
            // Conflicts are resolved where they can happen; one reaching the caller is a
            // concurrent change to re-read and retry.
            StoreError::Conflict(_) => {
                Self::conflict("concurrent_change", "The subscription changed while this request ran. Read it again and retry.")
            }
            other => Self::Internal(other.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn billing_errors_map_by_step() {
        let invalid = || BillingError::InvalidRequest { param: None, message: "No such PaymentMethod".into() };
        assert!(matches!(AdminError::from_billing(invalid(), BillingStep::PaymentMethod), AdminError::Validation(_)));
        assert!(matches!(AdminError::from_billing(invalid(), BillingStep::Subscription), AdminError::BadGateway(_)));
        assert!(matches!(
            AdminError::from_billing(BillingError::Unavailable("503".into()), BillingStep::Customer),
            AdminError::BillingUnavailable(_)
        ));
        let reused = BillingError::InvalidRequest {
            param: None,
            message: "Keys for idempotent requests can only be used with the same parameters".into(),
        };
        assert!(matches!(
            AdminError::from_billing(reused, BillingStep::Subscription),
            AdminError::Conflict { code: "idempotency_key_reused", .. }
        ));
    }
}
