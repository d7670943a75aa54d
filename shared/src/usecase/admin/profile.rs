//! `PUT /users/{user_id}`: the user's profile, mirrored to their Stripe customer. An
//! erased user's profile is never written again (`410 user_erased`). A new address clears
//! the undeliverable mark SES's feedback left on the old one; the same address keeps it.

use tracing::instrument;

use super::{terms::idempotency_key, AdminError, AdminService, BillingStep};
use crate::{
    billing::CustomerDetails,
    domain::{ProfileUpdate, UserId, UserProfile},
    metrics,
    store::StoreError,
};

impl AdminService {
    /// Stores the profile; returns it and whether it is new. When the user already has a
    /// Stripe customer and the address or name changed, Stripe is updated first (its
    /// receipts and invoices go to that address).
    #[instrument(skip_all, fields(user_id = %user))]
    pub async fn put_profile(&self, user: UserId, update: ProfileUpdate) -> Result<(UserProfile, bool), AdminError> {
        let profile = update.validate(user.clone(), self.clock.now())?;
        let previous = self.store.profile(&user).await?;
        if let Some(previous) = &previous {
            if previous.email != profile.email || previous.full_name != profile.full_name {
                self.sync_customer(previous, &profile).await?;
            }
        }
        self.store.put_profile(&profile).await.map_err(|err| match err {
            // The tombstone refuses the write: an erased user's id is retired.
            StoreError::Conflict(_) => AdminError::UserErased(user.clone()),
            other => other.into(),
        })?;
        metrics::count("ProfilesUpserted", &[]);
        // The stored profile keeps its recorded customer (`put_profile` leaves it), and SES's
        // feedback while the address stays the same (a new address starts clean).
        let stripe_customer_id = previous.as_ref().and_then(|p| p.stripe_customer_id.clone());
        let same_address = previous.as_ref().filter(|p| p.email == profile.email);
        let undeliverable = same_address.and_then(|p| p.undeliverable().cloned());
        let last_delivery = same_address.and_then(|p| p.last_delivery().cloned());
        Ok((UserProfile { stripe_customer_id, undeliverable, last_delivery, ..profile }, previous.is_none()))
    }

    async fn sync_customer(&self, previous: &UserProfile, profile: &UserProfile) -> Result<(), AdminError> {
        let customer = match previous.stripe_customer_id.clone() {
            Some(recorded) => Some(recorded),
            None => self.store.subscription(&profile.user_id).await?.and_then(|s| s.stripe_customer_id),
        };
        let Some(customer) = customer else { return Ok(()) };
        // Keyed by the profile version it replaces, so A→B, B→A, A→B are three updates.
        let request =
            format!("{}|{}|{}", previous.updated_at.timestamp_micros(), profile.email, profile.full_name.as_deref().unwrap_or_default());
        let key = idempotency_key("profile.put", &profile.user_id, None, &request, None);
        let details =
            CustomerDetails { user_id: profile.user_id.clone(), email: profile.email.to_string(), name: profile.full_name.clone() };
        self.billing.update_customer(&customer, &details, &key).await.map_err(|e| AdminError::from_billing(e, BillingStep::Customer))
    }
}
