//! Money in integer minor units, with each currency's own exponent (JPY has none,
//! KWD has three). Never floats.

use std::fmt;

use serde::{Deserialize, Serialize};

/// An ISO 4217 code, stored lower-case as Stripe sends it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Currency(String);

/// Stripe's zero-decimal currencies: amounts are whole units.
const ZERO_DECIMAL: &[&str] =
    &["bif", "clp", "djf", "gnf", "jpy", "kmf", "krw", "mga", "pyg", "rwf", "ugx", "vnd", "vuv", "xaf", "xof", "xpf"];
/// Three-decimal currencies.
const THREE_DECIMAL: &[&str] = &["bhd", "jod", "kwd", "omr", "tnd"];

impl Currency {
    pub fn parse(code: &str) -> Option<Self> {
        (code.len() == 3 && code.chars().all(|c| c.is_ascii_alphabetic())).then(|| Self(code.to_ascii_lowercase()))
    }

    pub fn code(&self) -> &str {
        &self.0
    }

    /// Digits after the decimal point in this currency's minor unit.
    pub fn exponent(&self) -> u32 {
        if ZERO_DECIMAL.contains(&self.0.as_str()) {
            0
        } else if THREE_DECIMAL.contains(&self.0.as_str()) {
            3
        } else {
            2
        }
    }

    fn symbol(&self) -> Option<&'static str> {
        Some(match self.0.as_str() {
            "usd" => "$",
            "eur" => "€",
            "gbp" => "£",
            "jpy" => "¥",
            "inr" => "₹",
            "krw" => "₩",
            _ => return None,
        })
    }
}

impl TryFrom<String> for Currency {
    type Error = String;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value).ok_or_else(|| format!("`{value}` is not a three-letter currency code"))
    }
}

impl From<Currency> for String {
    fn from(value: Currency) -> Self {
        value.0
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Money {
    /// Amount in the currency's minor unit (cents for USD, yen for JPY).
    pub amount: i64,
    pub currency: Currency,
}

impl Money {
    pub fn new(amount: i64, currency: Currency) -> Self {
        Self { amount, currency }
    }

    /// The amount as a person reads it: `$9.99`, `¥1,200`, `12.500 KWD`.
    pub fn display(&self) -> String {
        let exp = self.currency.exponent();
        let negative = self.amount < 0;
        let abs = self.amount.unsigned_abs();
        let divisor = 10u64.pow(exp);
        let (whole, frac) = (abs / divisor, abs % divisor);
        let mut number = group_thousands(whole);
        if exp > 0 {
            number.push('.');
            number.push_str(&format!("{frac:0width$}", width = exp as usize));
        }
        let sign = if negative { "-" } else { "" };
        match self.currency.symbol() {
            Some(symbol) => format!("{sign}{symbol}{number}"),
            None => format!("{sign}{number} {}", self.currency.code().to_ascii_uppercase()),
        }
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.display())
    }
}

fn group_thousands(mut n: u64) -> String {
    let mut groups = Vec::new();
    loop {
        if n < 1000 {
            groups.push(n.to_string());
            break;
        }
        groups.push(format!("{:03}", n % 1000));
        n /= 1000;
    }
    groups.reverse();
    groups.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn money(amount: i64, code: &str) -> Money {
        Money::new(amount, Currency::parse(code).unwrap())
    }

    #[test]
    fn uses_each_currencys_own_exponent() {
        assert_eq!(money(999, "usd").display(), "$9.99");
        assert_eq!(money(1200, "jpy").display(), "¥1,200");
        assert_eq!(money(12500, "kwd").display(), "12.500 KWD");
        assert_eq!(money(123456789, "eur").display(), "€1,234,567.89");
        assert_eq!(money(5, "usd").display(), "$0.05");
        assert_eq!(money(-250, "gbp").display(), "-£2.50");
    }

    #[test]
    fn rejects_non_codes() {
        assert!(Currency::parse("us").is_none());
        assert!(Currency::parse("u$d").is_none());
        assert_eq!(Currency::parse("JPY").unwrap().code(), "jpy");
    }

    proptest! {
        #[test]
        fn display_keeps_every_digit(amount in 0i64..=i64::MAX / 2) {
            let shown = money(amount, "usd").display();
            let digits: String = shown.chars().filter(char::is_ascii_digit).collect();
            let expected = amount.to_string();
            prop_assert_eq!(digits.trim_start_matches('0'), expected.trim_start_matches('0'));
        }
    }
}
