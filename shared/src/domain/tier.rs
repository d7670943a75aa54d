use std::{fmt, str::FromStr};

use serde::{Deserialize, Serialize};

/// The plan a user is on. `free` has no Stripe subscription; the paid tiers map
/// to Stripe prices by configuration, never by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Tier {
    Free,
    Premium,
    Enterprise,
}

impl Tier {
    pub const ALL: [Tier; 3] = [Tier::Free, Tier::Premium, Tier::Enterprise];

    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Free => "free",
            Tier::Premium => "premium",
            Tier::Enterprise => "enterprise",
        }
    }

    /// A person-facing plan name, for e-mails.
    pub fn display_name(self) -> &'static str {
        match self {
            Tier::Free => "Free",
            Tier::Premium => "Premium",
            Tier::Enterprise => "Enterprise",
        }
    }

    /// What the plan includes, listed in the confirmation e-mail.
    pub fn features(self) -> &'static [&'static str] {
        match self {
            Tier::Free => &["Basic logistics scoring", "Community support"],
            Tier::Premium => &["Unlimited scorecards", "Carrier benchmarks", "E-mail support"],
            Tier::Enterprise => &["Everything in Premium", "Team accounts and SSO", "API access", "Dedicated support"],
        }
    }

    pub fn is_paid_plan(self) -> bool {
        !matches!(self, Tier::Free)
    }
}

impl fmt::Display for Tier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown tier `{0}`: expected free, premium or enterprise")]
pub struct UnknownTier(pub String);

impl FromStr for Tier {
    type Err = UnknownTier;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "free" => Ok(Tier::Free),
            "premium" => Ok(Tier::Premium),
            "enterprise" => Ok(Tier::Enterprise),
            other => Err(UnknownTier(other.to_owned())),
        }
    }
}
