//! Object ids in Stripe's style: a type prefix and a random base62 tail.

use rand::Rng;

const ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// `prefix_` followed by `len` random base62 characters.
pub fn random_id(prefix: &str, len: usize) -> String {
    let mut rng = rand::thread_rng();
    let mut id = String::with_capacity(prefix.len() + 1 + len);
    id.push_str(prefix);
    id.push('_');
    for _ in 0..len {
        id.push(ALPHABET[rng.gen_range(0..ALPHABET.len())] as char);
    }
    id
}

/// The common case: 24 characters, like `sub_1Pgc6rB7WZ01zgkWNy0Cn5nw`.
pub fn new_id(prefix: &str) -> String {
    random_id(prefix, 24)
}

/// Random upper-case hex of `len` characters (invoice prefixes, card fingerprints).
pub fn random_hex_upper(len: usize) -> String {
    let mut rng = rand::thread_rng();
    (0..len).map(|_| char::from_digit(rng.gen_range(0..16), 16).unwrap_or('0').to_ascii_uppercase()).collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn shape() {
        let id = super::new_id("cus");
        assert!(id.starts_with("cus_"));
        assert_eq!(id.len(), 28);
        assert!(id[4..].bytes().all(|b| b.is_ascii_alphanumeric()));
        assert_eq!(super::random_hex_upper(7).len(), 7);
    }
}
