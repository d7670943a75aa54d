//! Validated identifiers. A `UserId` comes from a URL path, so it is checked
//! before it reaches a DynamoDB key; Stripe ids are checked for their prefix.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::ValidationErrors;

const USER_ID_MAX: usize = 128;

/// The LogiScore user id (the identity provider's `sub` or the app's own id).
/// 1..=128 characters of `[A-Za-z0-9._:@-]`: enough for UUIDs, Cognito subs and
/// e-mail-like ids, and nothing that could break a `#`-delimited key.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct UserId(String);

impl UserId {
    pub fn parse(raw: &str) -> Result<Self, ValidationErrors> {
        let ok_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '@' | '-');
        if raw.is_empty() || raw.len() > USER_ID_MAX {
            return Err(ValidationErrors::single("user_id", format!("must be 1 to {USER_ID_MAX} characters")));
        }
        if !raw.chars().all(ok_char) {
            return Err(ValidationErrors::single("user_id", "may contain only letters, digits and . _ : @ -"));
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for UserId {
    type Error = ValidationErrors;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<UserId> for String {
    fn from(value: UserId) -> Self {
        value.0
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

macro_rules! stripe_id {
    ($name:ident, $prefix:literal, $field:literal) => {
        #[doc = concat!("A Stripe id beginning `", $prefix, "`.")]
        #[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            pub fn parse(raw: &str) -> Result<Self, ValidationErrors> {
                let rest = raw.strip_prefix($prefix);
                match rest {
                    Some(rest) if !rest.is_empty() && rest.len() <= 255 && rest.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') => {
                        Ok(Self(raw.to_owned()))
                    }
                    _ => Err(ValidationErrors::single($field, concat!("must be a Stripe id starting with ", $prefix))),
                }
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = ValidationErrors;
            fn try_from(value: String) -> Result<Self, Self::Error> {
                Self::parse(&value)
            }
        }

        impl From<$name> for String {
            fn from(value: $name) -> Self {
                value.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

stripe_id!(StripeCustomerId, "cus_", "stripe_customer_id");
stripe_id!(StripeSubscriptionId, "sub_", "stripe_subscription_id");
stripe_id!(StripeInvoiceId, "in_", "stripe_invoice_id");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_id_rejects_key_delimiters_and_empties() {
        assert!(UserId::parse("user-123").is_ok());
        assert!(UserId::parse("a@b.co").is_ok());
        assert!(UserId::parse("").is_err());
        assert!(UserId::parse("USER#x").is_err());
        assert!(UserId::parse("a b").is_err());
        assert!(UserId::parse(&"x".repeat(129)).is_err());
    }

    #[test]
    fn stripe_ids_need_their_prefix() {
        assert!(StripeCustomerId::parse("cus_ABC123").is_ok());
        assert!(StripeCustomerId::parse("sub_ABC").is_err());
        assert!(StripeCustomerId::parse("cus_").is_err());
        assert!(StripeSubscriptionId::parse("sub_1x").is_ok());
    }
}
