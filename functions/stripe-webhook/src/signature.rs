//! `Stripe-Signature` verification: HMAC-SHA256 of `"{t}.{raw body}"` under the
//! endpoint secret, compared in constant time against every `v1` value of the header,
//! for every configured secret (several during a rotation), within a time tolerance.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;
use thiserror::Error;

use shared::config::Secret;

/// Stripe's own default: events older (or newer) than this are refused as replays.
pub const DEFAULT_TOLERANCE_SECS: i64 = 300;

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum SignatureError {
    #[error("missing Stripe-Signature header")]
    Missing,
    #[error("malformed Stripe-Signature header")]
    Malformed,
    #[error("signature timestamp outside the tolerance")]
    Stale,
    #[error("no signature matches")]
    Mismatch,
}

/// The parts of a `Stripe-Signature` header this code uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureHeader {
    pub timestamp: i64,
    /// Decoded `v1` signatures (32 bytes each); other schemes (`v0`) are ignored.
    pub v1: Vec<[u8; 32]>,
}

impl SignatureHeader {
    pub fn parse(header: &str) -> Result<Self, SignatureError> {
        let mut timestamp = None;
        let mut v1 = Vec::new();
        for part in header.split(',') {
            let (key, value) = part.trim().split_once('=').ok_or(SignatureError::Malformed)?;
            match key {
                "t" => {
                    if timestamp.is_some() {
                        return Err(SignatureError::Malformed);
                    }
                    timestamp = Some(value.parse::<i64>().map_err(|_| SignatureError::Malformed)?);
                }
                "v1" => {
                    let mut sig = [0u8; 32];
                    // A v1 value that is not 64 hex digits can never match: skip it
                    // rather than reject the header, as Stripe's libraries do.
                    if hex::decode_to_slice(value, &mut sig).is_ok() {
                        v1.push(sig);
                    }
                }
                _ => {}
            }
        }
        let timestamp = timestamp.ok_or(SignatureError::Malformed)?;
        if v1.is_empty() {
            return Err(SignatureError::Malformed);
        }
        Ok(Self { timestamp, v1 })
    }
}

/// Verifies `header` over the exact `payload` bytes at `now` (unix seconds).
pub fn verify(payload: &[u8], header: Option<&str>, secrets: &[Secret], now: i64, tolerance_secs: i64) -> Result<(), SignatureError> {
    let header = SignatureHeader::parse(header.ok_or(SignatureError::Missing)?)?;
    // abs_diff: a hostile timestamp near i64::MIN must not overflow the subtraction.
    if now.abs_diff(header.timestamp) > tolerance_secs.unsigned_abs() {
        return Err(SignatureError::Stale);
    }
    let timestamp = header.timestamp.to_string();
    let mut matched = subtle::Choice::from(0);
    for secret in secrets {
        let expected = sign(secret.expose().as_bytes(), &timestamp, payload);
        for candidate in &header.v1 {
            // Every comparison runs, whatever matched earlier: no early exit to time.
            matched |= expected.ct_eq(candidate);
        }
    }
    if bool::from(matched) {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

fn sign(secret: &[u8], timestamp: &str, payload: &[u8]) -> [u8; 32] {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret).unwrap_or_else(|_| unreachable!("hmac takes any key length"));
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(payload);
    mac.finalize().into_bytes().into()
}

/// A valid `Stripe-Signature` header for `payload` (tests and the bench; feature `test-support`).
#[cfg(any(test, feature = "test-support"))]
pub fn sign_header(payload: &[u8], secret: &str, timestamp: i64) -> String {
    format!("t={timestamp},v1={}", hex::encode(sign(secret.as_bytes(), &timestamp.to_string(), payload)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const NOW: i64 = 1_767_225_600;

    fn secrets(list: &[&str]) -> Vec<Secret> {
        list.iter().map(|s| Secret::new(*s)).collect()
    }

    #[test]
    fn accepts_a_valid_signature() {
        let body = br#"{"id":"evt_1"}"#;
        let header = sign_header(body, "whsec_a", NOW);
        assert_eq!(verify(body, Some(&header), &secrets(&["whsec_a"]), NOW, 300), Ok(()));
    }

    #[test]
    fn rejects_tampering_wrong_secret_staleness_and_absence() {
        let body = br#"{"id":"evt_1"}"#;
        let header = sign_header(body, "whsec_a", NOW);
        assert_eq!(verify(br#"{"id":"evt_2"}"#, Some(&header), &secrets(&["whsec_a"]), NOW, 300), Err(SignatureError::Mismatch));
        assert_eq!(verify(body, Some(&header), &secrets(&["whsec_b"]), NOW, 300), Err(SignatureError::Mismatch));
        assert_eq!(verify(body, Some(&header), &secrets(&["whsec_a"]), NOW + 301, 300), Err(SignatureError::Stale));
        assert_eq!(verify(body, Some(&header), &secrets(&["whsec_a"]), NOW - 301, 300), Err(SignatureError::Stale));
        assert_eq!(verify(body, None, &secrets(&["whsec_a"]), NOW, 300), Err(SignatureError::Missing));
        assert_eq!(verify(body, Some("garbage"), &secrets(&["whsec_a"]), NOW, 300), Err(SignatureError::Malformed));
        assert_eq!(verify(body, Some("t=1,v0=abc"), &secrets(&["whsec_a"]), NOW, 300), Err(SignatureError::Malformed));
    }

    #[test]
    fn rotation_accepts_any_configured_secret_and_any_v1() {
        let body = b"{}";
        let old = sign_header(body, "whsec_old", NOW);
        let new_sig = sign_header(body, "whsec_new", NOW);
        let both = format!("{},v1={}", new_sig, old.split("v1=").nth(1).unwrap());
        let rotating = secrets(&["whsec_new", "whsec_old"]);
        assert_eq!(verify(body, Some(&old), &rotating, NOW, 300), Ok(()));
        assert_eq!(verify(body, Some(&both), &secrets(&["whsec_old"]), NOW, 300), Ok(()));
        assert_eq!(verify(body, Some(&format!("{old},v0=ff")), &rotating, NOW, 300), Ok(()));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2_000))]

        #[test]
        fn the_parser_never_panics(header in ".{0,200}") {
            let _ = SignatureHeader::parse(&header);
        }

        #[test]
        fn any_change_to_the_body_is_rejected(body in proptest::collection::vec(any::<u8>(), 0..512), flip in any::<usize>(), bit in 0u8..8) {
            let header = sign_header(&body, "whsec_p", NOW);
            prop_assert!(verify(&body, Some(&header), &secrets(&["whsec_p"]), NOW, 300).is_ok());
            if !body.is_empty() {
                let mut tampered = body.clone();
                let i = flip % tampered.len();
                tampered[i] ^= 1 << bit;
                prop_assert_eq!(verify(&tampered, Some(&header), &secrets(&["whsec_p"]), NOW, 300), Err(SignatureError::Mismatch));
            }
        }

        #[test]
        fn replays_outside_the_tolerance_are_rejected(skew in 301i64..10_000_000, sign_of in any::<bool>()) {
            let t = if sign_of { NOW - skew } else { NOW + skew };
            let header = sign_header(b"{}", "whsec_p", t);
            prop_assert_eq!(verify(b"{}", Some(&header), &secrets(&["whsec_p"]), NOW, 300), Err(SignatureError::Stale));
        }
    }
}
