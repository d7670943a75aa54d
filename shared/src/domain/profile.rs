//! A user's profile: who the e-mails go to. Looked up at send time, so an address
//! changed after a notification was queued still receives it.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{StripeCustomerId, UserId, ValidationErrors};

/// An e-mail address that passed a pragmatic syntax check: one `@`, a local part of
/// printable ASCII without spaces, and a domain of dot-separated DNS labels with a TLD.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct EmailAddress(String);

impl EmailAddress {
    pub fn parse(raw: &str) -> Result<Self, ValidationErrors> {
        let invalid = || ValidationErrors::single("email", "must be a valid e-mail address like name@example.com");
        let raw = raw.trim();
        if raw.len() > 254 {
            return Err(invalid());
        }
        let (local, domain) = raw.rsplit_once('@').ok_or_else(invalid)?;
        let local_ok = !local.is_empty()
            && local.len() <= 64
            && !local.starts_with('.')
            && !local.ends_with('.')
            && !local.contains("..")
            && local.chars().all(|c| c.is_ascii_alphanumeric() || "!#$%&'*+/=?^_`{|}~.-".contains(c));
        let labels: Vec<&str> = domain.split('.').collect();
        let domain_ok = labels.len() >= 2
            && labels.iter().all(|l| {
                !l.is_empty()
                    && l.len() <= 63
                    && !l.starts_with('-')
                    && !l.ends_with('-')
                    && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            })
            && labels.last().is_some_and(|tld| tld.len() >= 2 && tld.chars().all(|c| c.is_ascii_alphabetic()));
        if local_ok && domain_ok {
            Ok(Self(format!("{local}@{}", domain.to_ascii_lowercase())))
        } else {
            Err(invalid())
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for EmailAddress {
    type Error = ValidationErrors;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<EmailAddress> for String {
    fn from(value: EmailAddress) -> Self {
        value.0
    }
}

impl fmt::Display for EmailAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserProfile {
    pub user_id: UserId,
    pub email: EmailAddress,
    pub full_name: Option<String>,
    pub username: Option<String>,
    pub user_type: Option<String>,
    pub updated_at: DateTime<Utc>,
    /// The user's Stripe customer, recorded as soon as it exists (before any charge), so
    /// later operations neither look for it (Stripe's search lags creation) nor make a
    /// second one. Set only by [`crate::store::Store::set_customer`]; a profile update
    /// leaves it as it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stripe_customer_id: Option<StripeCustomerId>,
    /// SES reported this address as not to be mailed again (a permanent bounce or a
    /// complaint). Written only by [`crate::store::Store::record_mail_feedback`]; a profile
    /// update never writes it, and one that changes the address removes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub undeliverable: Option<Undeliverable>,
    /// SES's last report of a delivery to this address (written like `undeliverable`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_delivery: Option<Delivered>,
}

impl UserProfile {
    /// How an e-mail greets the user.
    pub fn greeting_name(&self) -> &str {
        self.full_name.as_deref().or(self.username.as_deref()).unwrap_or("there")
    }

    /// The undeliverable mark of the profile's *current* address. A mark is about the
    /// address it names; one left from an earlier address does not apply.
    pub fn undeliverable(&self) -> Option<&Undeliverable> {
        self.undeliverable.as_ref().filter(|mark| mark.address == self.email)
    }

    /// The last delivery SES reported to the current address.
    pub fn last_delivery(&self) -> Option<&Delivered> {
        self.last_delivery.as_ref().filter(|d| d.address == self.email)
    }

    /// Whether mail may be sent to the current address.
    pub fn delivery_state(&self) -> DeliveryState {
        match self.undeliverable() {
            Some(_) => DeliveryState::Undeliverable,
            None => DeliveryState::Deliverable,
        }
    }
}

/// Whether mail goes to a profile's address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryState {
    Deliverable,
    /// SES bounced it for good or the recipient complained: nothing more is sent to it.
    Undeliverable,
}

/// Why an address is not mailed any more.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UndeliverableReason {
    /// A permanent (hard) bounce: the mailbox or domain does not exist or refuses us.
    Bounce,
    /// The recipient marked a message as spam.
    Complaint,
}

/// An address SES told us not to mail again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Undeliverable {
    pub address: EmailAddress,
    pub reason: UndeliverableReason,
    /// When SES observed the bounce or complaint.
    pub at: DateTime<Utc>,
    /// The EventBridge event that reported it (what makes a redelivered event a no-op).
    pub event_id: String,
}

/// A delivery SES reported.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivered {
    pub address: EmailAddress,
    pub at: DateTime<Utc>,
    pub event_id: String,
}

/// A user's erasure (`DELETE /users/{user_id}`), kept on their profile item as its
/// tombstone. From `started_at` on the profile reads as absent (nothing is mailed to them,
/// no subscription is created for them) and cannot be written again: the user id is
/// retired. `finished_at` is set by the last step, once no personal data is left locally.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Erasure {
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

/// The body of `PUT /users/{user_id}` as it arrives.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ProfileUpdate {
    pub email: Option<String>,
    pub full_name: Option<String>,
    pub username: Option<String>,
    pub user_type: Option<String>,
}

const NAME_MAX: usize = 200;

impl ProfileUpdate {
    pub fn validate(self, user_id: UserId, now: DateTime<Utc>) -> Result<UserProfile, ValidationErrors> {
        let mut errors = ValidationErrors::default();
        let email = match self.email.as_deref() {
            None => {
                errors.push("email", "is required");
                None
            }
            Some(raw) => EmailAddress::parse(raw).map_err(|e| errors.errors.extend(e.errors)).ok(),
        };
        // Checked as sent (what openapi.yaml's maxLength and pattern describe), stored trimmed;
        // blank means absent.
        let mut text = |field: &str, value: Option<String>| -> Option<String> {
            let value = value?;
            if value.chars().count() > NAME_MAX || value.chars().any(char::is_control) {
                errors.push(field, format!("must be at most {NAME_MAX} characters without control characters"));
                return None;
            }
            Some(value.trim().to_owned()).filter(|v| !v.is_empty())
        };
        let full_name = text("full_name", self.full_name);
        let username = text("username", self.username);
        let user_type = text("user_type", self.user_type);
        match email {
            Some(email) if errors.is_empty() => Ok(UserProfile {
                user_id,
                email,
                full_name,
                username,
                user_type,
                updated_at: now,
                stripe_customer_id: None,
                undeliverable: None,
                last_delivery: None,
            }),
            _ => Err(errors),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn accepts_ordinary_addresses() {
        for ok in ["a@b.co", "first.last+tag@Example.COM", "x_y-z@sub.domain.io"] {
            assert!(EmailAddress::parse(ok).is_ok(), "{ok}");
        }
        assert_eq!(EmailAddress::parse("Ann@Example.COM").unwrap().as_str(), "Ann@example.com");
    }

    #[test]
    fn rejects_malformed_addresses() {
        for bad in ["", "plain", "@b.co", "a@", "a@b", "a@b.c", "a b@c.de", "a@-b.com", "a..b@c.de", "a@b..co", "<script>@x.io"] {
            assert!(EmailAddress::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn profile_needs_an_email_and_reports_every_field() {
        let user = UserId::parse("u1").unwrap();
        let err = ProfileUpdate { email: None, full_name: Some("x".repeat(300)), ..Default::default() }
            .validate(user.clone(), Utc::now())
            .unwrap_err();
        let fields: Vec<_> = err.errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["email", "full_name"]);
        let ok = ProfileUpdate { email: Some("a@b.co".into()), full_name: Some("  Ann  ".into()), ..Default::default() }
            .validate(user, Utc::now())
            .unwrap();
        assert_eq!(ok.full_name.as_deref(), Some("Ann"));
    }

    #[test]
    fn names_are_checked_as_sent_and_stored_trimmed() {
        let user = UserId::parse("u1").unwrap();
        let with = |name: &str| ProfileUpdate { email: Some("a@b.co".into()), username: Some(name.into()), ..Default::default() };
        // A control character is refused even where trimming would have removed it.
        for bad in ["\tann", "ann\n", "a\u{0085}b", "a\u{7f}"] {
            let err = with(bad).validate(user.clone(), Utc::now()).unwrap_err();
            assert_eq!(err.errors[0].field, "username", "{bad:?}");
        }
        assert!(with(&format!("{} ", "x".repeat(NAME_MAX))).validate(user.clone(), Utc::now()).is_err());
        assert_eq!(with("   ").validate(user, Utc::now()).unwrap().username, None);
    }

    #[test]
    fn a_mark_applies_only_to_the_address_it_names() {
        let user = UserId::parse("u1").unwrap();
        let mut profile = ProfileUpdate { email: Some("a@b.co".into()), ..Default::default() }.validate(user, Utc::now()).unwrap();
        assert_eq!(profile.delivery_state(), DeliveryState::Deliverable);
        profile.undeliverable = Some(Undeliverable {
            address: EmailAddress::parse("a@b.co").unwrap(),
            reason: UndeliverableReason::Bounce,
            at: Utc::now(),
            event_id: "e1".into(),
        });
        assert_eq!(profile.delivery_state(), DeliveryState::Undeliverable);
        profile.email = EmailAddress::parse("new@b.co").unwrap();
        assert_eq!(profile.delivery_state(), DeliveryState::Deliverable, "a new address starts clean");
        assert!(profile.undeliverable().is_none());
    }

    proptest! {
        #[test]
        fn generated_valid_addresses_pass(local in "[a-z0-9]{1,20}(\\.[a-z0-9]{1,10})?", domain in "[a-z0-9]{1,20}", tld in "[a-z]{2,6}") {
            let addr = format!("{local}@{domain}.{tld}");
            prop_assert!(EmailAddress::parse(&addr).is_ok());
        }

        #[test]
        fn anything_without_an_at_sign_fails(s in "[^@]{0,40}") {
            prop_assert!(EmailAddress::parse(&s).is_err());
        }
    }
}
