//! Stripe's form encoding: `application/x-www-form-urlencoded` with bracketed keys.
//!
//! Stripe (like Rack) reads `a[b][c]=1` as nested hashes, `items[0][price]=x` as an
//! array of hashes addressed by index and `expand[]=a&expand[]=b` as an array of
//! strings. The same decoder reads query strings, so GET and POST parameters behave
//! alike. Decoding never panics: malformed input becomes an [`ApiError`] naming the
//! offending parameter, the way Stripe answers with `invalid_request_error`.

use std::collections::BTreeMap;

use percent_encoding::percent_decode_str;

use crate::error::ApiError;

/// One decoded parameter value: a string, a hash or an array.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Param {
    Value(String),
    Map(BTreeMap<String, Param>),
    List(Vec<Param>),
}

/// The decoded parameters of one request (the top level is always a hash).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Params {
    root: BTreeMap<String, Param>,
}

/// Caps that keep a hostile body from building a huge tree.
const MAX_PAIRS: usize = 2_000;
const MAX_DEPTH: usize = 8;
const MAX_INDEX: usize = 1_000;

impl Params {
    /// Decodes a form body or query string. An empty input gives empty params.
    pub fn parse(input: &str) -> Result<Params, ApiError> {
        let mut params = Params::default();
        for (n, pair) in input.split('&').filter(|p| !p.is_empty()).enumerate() {
            if n >= MAX_PAIRS {
                return Err(ApiError::invalid_request(None, "Too many parameters in request."));
            }
            let (raw_key, raw_value) = pair.split_once('=').unwrap_or((pair, ""));
            let key = decode_component(raw_key)?;
            let value = decode_component(raw_value)?;
            params.insert(&key, value)?;
        }
        Ok(params)
    }

    /// Adds every parameter of `other`, replacing same-named top-level entries.
    pub fn merge(&mut self, other: Params) {
        self.root.extend(other.root);
    }

    fn insert(&mut self, key: &str, value: String) -> Result<(), ApiError> {
        let (base, segments) = split_key(key)?;
        if segments.len() > MAX_DEPTH {
            return Err(ApiError::invalid_request(Some(key), "Parameter is nested too deeply."));
        }
        if segments.is_empty() {
            // Plain `key=value`: the last occurrence wins, as with Stripe.
            let entry = self.root.entry(base.to_string()).or_insert_with(|| Param::Value(String::new()));
            if !matches!(entry, Param::Value(_)) {
                return Err(conflict(key));
            }
            *entry = Param::Value(value);
            return Ok(());
        }
        // Walk (and create) the containers named by the segments.
        let mut current: &mut Param = self.root.entry(base.to_string()).or_insert_with(|| Param::Map(BTreeMap::new()));
        for (i, segment) in segments.iter().enumerate() {
            let last = i + 1 == segments.len();
            if segment.is_empty() {
                // `[]` appends to an array; Stripe only uses it for arrays of strings.
                if !last {
                    return Err(ApiError::invalid_request(
                        Some(key),
                        "Arrays of hashes must be indexed (use `name[0][field]`, not `name[][field]`).",
                    ));
                }
                match current {
                    Param::List(items) => items.push(Param::Value(value)),
                    Param::Map(map) if map.is_empty() => *current = Param::List(vec![Param::Value(value)]),
                    _ => return Err(conflict(key)),
                }
                return Ok(());
            }
            if segment.bytes().all(|b| b.is_ascii_digit()) && segment.parse::<usize>().map_or(true, |index| index > MAX_INDEX) {
                return Err(ApiError::invalid_request(Some(key), "Array index is too large."));
            }
            let map = match current {
                Param::Map(map) => map,
                _ => return Err(conflict(key)),
            };
            if last {
                let entry = map.entry(segment.to_string()).or_insert_with(|| Param::Value(String::new()));
                if !matches!(entry, Param::Value(_)) {
                    return Err(conflict(key));
                }
                *entry = Param::Value(value);
                return Ok(());
            }
            current = map.entry(segment.to_string()).or_insert_with(|| Param::Map(BTreeMap::new()));
        }
        Ok(())
    }

    pub fn get(&self, key: &str) -> Option<&Param> {
        self.root.get(key)
    }

    pub fn contains(&self, key: &str) -> bool {
        self.root.contains_key(key)
    }

    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.root.keys().map(String::as_str)
    }

    /// A string parameter; an error if it was sent as a hash or array.
    pub fn str(&self, key: &str) -> Result<Option<&str>, ApiError> {
        map_str(&self.root, key, key)
    }

    /// A required, non-empty string parameter.
    pub fn required_str(&self, key: &str) -> Result<&str, ApiError> {
        match self.str(key)? {
            Some(v) if !v.is_empty() => Ok(v),
            _ => Err(ApiError::missing_param(key)),
        }
    }

    pub fn i64(&self, key: &str) -> Result<Option<i64>, ApiError> {
        map_i64(&self.root, key, key)
    }

    pub fn bool(&self, key: &str) -> Result<Option<bool>, ApiError> {
        map_bool(&self.root, key, key)
    }

    /// Array parameters (`key[]=a` or `key[0]=a`) as strings.
    pub fn str_list(&self, key: &str) -> Result<Vec<String>, ApiError> {
        match self.root.get(key) {
            None => Ok(Vec::new()),
            Some(p) => param_str_list(p, key),
        }
    }

    /// Arrays of hashes (`items[0][price]=…`), in index order.
    pub fn map_list(&self, key: &str) -> Result<Vec<&BTreeMap<String, Param>>, ApiError> {
        match self.root.get(key) {
            None => Ok(Vec::new()),
            Some(p) => param_map_list(p, key),
        }
    }

    /// Timestamps that also accept the literal `now` (`trial_end=now`).
    pub fn timestamp_or_now(&self, key: &str, now: i64) -> Result<Option<TimeOrNow>, ApiError> {
        match self.str(key)? {
            None => Ok(None),
            Some("now") => Ok(Some(TimeOrNow::Now(now))),
            Some(v) => v.parse::<i64>().map(|t| Some(TimeOrNow::At(t))).map_err(|_| {
                ApiError::invalid_request(Some(key), format!("Invalid timestamp: must be an integer Unix timestamp or `now` (got `{v}`)."))
            }),
        }
    }
}

/// A timestamp parameter that may have been `now`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeOrNow {
    Now(i64),
    At(i64),
}

fn conflict(key: &str) -> ApiError {
    ApiError::invalid_request(Some(key), format!("Invalid parameter `{key}`: it was sent both as a value and as a hash or array."))
}

/// `items[0][price]` → (`items`, [`0`, `price`]). Rejects unbalanced brackets.
fn split_key(key: &str) -> Result<(&str, Vec<&str>), ApiError> {
    let bad = || ApiError::invalid_request(Some(key), format!("Invalid parameter name `{key}`."));
    let (base, mut rest) = match key.find('[') {
        None => return if key.is_empty() || key.contains(']') { Err(bad()) } else { Ok((key, Vec::new())) },
        Some(i) => (&key[..i], &key[i..]),
    };
    if base.is_empty() || base.contains(']') {
        return Err(bad());
    }
    let mut segments = Vec::new();
    while !rest.is_empty() {
        let inner = rest.strip_prefix('[').ok_or_else(bad)?;
        let close = inner.find(']').ok_or_else(bad)?;
        let segment = &inner[..close];
        if segment.contains('[') {
            return Err(bad());
        }
        segments.push(segment);
        rest = &inner[close + 1..];
    }
    Ok((base, segments))
}

fn decode_component(raw: &str) -> Result<String, ApiError> {
    let spaced = raw.replace('+', " ");
    percent_decode_str(&spaced)
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|_| ApiError::invalid_request(None, "Request body is not valid UTF-8 after percent-decoding."))
}

/// Helpers over a nested hash, with the full parameter name for error messages.
pub fn map_str<'a>(map: &'a BTreeMap<String, Param>, key: &str, name: &str) -> Result<Option<&'a str>, ApiError> {
    match map.get(key) {
        None => Ok(None),
        Some(Param::Value(v)) => Ok(Some(v.as_str())),
        Some(_) => Err(ApiError::invalid_request(Some(name), format!("Invalid string: `{name}` must be a string."))),
    }
}

pub fn map_i64(map: &BTreeMap<String, Param>, key: &str, name: &str) -> Result<Option<i64>, ApiError> {
    match map_str(map, key, name)? {
        None => Ok(None),
        Some(v) => v.parse::<i64>().map(Some).map_err(|_| ApiError::invalid_request(Some(name), format!("Invalid integer: {v}"))),
    }
}

pub fn map_bool(map: &BTreeMap<String, Param>, key: &str, name: &str) -> Result<Option<bool>, ApiError> {
    match map_str(map, key, name)? {
        None => Ok(None),
        Some("true") => Ok(Some(true)),
        Some("false") => Ok(Some(false)),
        Some(v) => Err(ApiError::invalid_request(Some(name), format!("Invalid boolean: {v}"))),
    }
}

/// Elements of an array parameter in index order. Stripe accepts both `k[]=` (a list)
/// and `k[0]=` (a hash with numeric keys); both arrive here.
fn indexed_elements<'a>(p: &'a Param, name: &str) -> Result<Vec<&'a Param>, ApiError> {
    match p {
        Param::List(items) => Ok(items.iter().collect()),
        Param::Map(map) => {
            let mut indexed = Vec::with_capacity(map.len());
            for (k, v) in map {
                let i: usize = k.parse().map_err(|_| {
                    ApiError::invalid_request(Some(name), format!("Invalid array: `{name}` must be an array (got key `{k}`)."))
                })?;
                indexed.push((i, v));
            }
            indexed.sort_by_key(|(i, _)| *i);
            Ok(indexed.into_iter().map(|(_, v)| v).collect())
        }
        // An empty string unsets an array (e.g. `default_tax_rates=`).
        Param::Value(v) if v.is_empty() => Ok(Vec::new()),
        Param::Value(_) => Err(ApiError::invalid_request(Some(name), format!("Invalid array: `{name}` must be an array."))),
    }
}

pub fn param_str_list(p: &Param, name: &str) -> Result<Vec<String>, ApiError> {
    indexed_elements(p, name)?
        .into_iter()
        .map(|e| match e {
            Param::Value(v) => Ok(v.clone()),
            _ => Err(ApiError::invalid_request(Some(name), format!("Invalid array: `{name}` must hold strings."))),
        })
        .collect()
}

pub fn param_map_list<'a>(p: &'a Param, name: &str) -> Result<Vec<&'a BTreeMap<String, Param>>, ApiError> {
    indexed_elements(p, name)?
        .into_iter()
        .map(|e| match e {
            Param::Map(m) => Ok(m),
            _ => Err(ApiError::invalid_request(Some(name), format!("Invalid array: `{name}` must hold hashes."))),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Param {
        Param::Value(s.to_string())
    }

    fn hash<'a>(p: &'a Params, key: &str) -> &'a BTreeMap<String, Param> {
        match p.get(key) {
            Some(Param::Map(m)) => m,
            other => panic!("{key} is not a hash: {other:?}"),
        }
    }

    #[test]
    fn nested_hashes() {
        let p = Params::parse("a[b][c]=1&a[b][d]=2&a[e]=3").unwrap();
        let Param::Map(a) = p.get("a").unwrap() else { panic!("a is not a hash") };
        let Param::Map(b) = &a["b"] else { panic!("a[b] is not a hash") };
        assert_eq!(b["c"], v("1"));
        assert_eq!(b["d"], v("2"));
        assert_eq!(a["e"], v("3"));
    }

    #[test]
    fn indexed_arrays_of_hashes_keep_index_order() {
        let p = Params::parse("items[1][price]=y&items[0][price]=x&items[10][price]=z&items[0][quantity]=2").unwrap();
        let items = p.map_list("items").unwrap();
        assert_eq!(items.len(), 3);
        assert_eq!(items[0]["price"], v("x"));
        assert_eq!(items[0]["quantity"], v("2"));
        assert_eq!(items[1]["price"], v("y"));
        assert_eq!(items[2]["price"], v("z"));
    }

    #[test]
    fn appended_arrays() {
        let p = Params::parse("expand[]=a&expand[]=b.c&lookup_keys[0]=k1&lookup_keys[1]=k2").unwrap();
        assert_eq!(p.str_list("expand").unwrap(), vec!["a", "b.c"]);
        assert_eq!(p.str_list("lookup_keys").unwrap(), vec!["k1", "k2"]);
        assert!(p.str_list("absent").unwrap().is_empty());
    }

    #[test]
    fn percent_and_plus_decoding() {
        let p = Params::parse("email=a%2Bb%40example.com&name=Jo+Smith&metadata%5Buser_id%5D=u%201&q=%E2%82%AC").unwrap();
        assert_eq!(p.str("email").unwrap(), Some("a+b@example.com"));
        assert_eq!(p.str("name").unwrap(), Some("Jo Smith"));
        let m = hash(&p, "metadata");
        assert_eq!(m["user_id"], v("u 1"));
        assert_eq!(p.str("q").unwrap(), Some("€"));
    }

    #[test]
    fn empty_values_and_keys_without_equals() {
        let p = Params::parse("metadata[k]=&flag&&description=").unwrap();
        assert_eq!(hash(&p, "metadata")["k"], v(""));
        assert_eq!(p.str("flag").unwrap(), Some(""));
        assert_eq!(p.str("description").unwrap(), Some(""));
        assert_eq!(Params::parse("").unwrap().keys().count(), 0);
    }

    #[test]
    fn last_scalar_wins() {
        let p = Params::parse("a=1&a=2").unwrap();
        assert_eq!(p.str("a").unwrap(), Some("2"));
    }

    #[test]
    fn malformed_input_is_a_400_not_a_panic() {
        for bad in ["a[b=1", "[x]=1", "a]b=1", "a[b]c=1", "a=1&a[b]=2", "a[b]=2&a=1", "a[][b]=1", "a[x[y]]=1", "%FF=1"] {
            let err = Params::parse(bad).expect_err(bad);
            assert_eq!(err.status.as_u16(), 400, "{bad}");
        }
        let deep = format!("a{}=1", "[x]".repeat(MAX_DEPTH + 1));
        assert!(Params::parse(&deep).is_err());
        assert!(Params::parse("items[5000][price]=x").is_err());
    }

    #[test]
    fn typed_accessors_report_the_param() {
        let p = Params::parse("limit=abc&cancel_at_period_end=yes&items[0]=x&trial_end=now").unwrap();
        assert_eq!(p.i64("limit").unwrap_err().param.as_deref(), Some("limit"));
        assert_eq!(p.bool("cancel_at_period_end").unwrap_err().param.as_deref(), Some("cancel_at_period_end"));
        assert!(p.map_list("items").is_err());
        assert_eq!(p.timestamp_or_now("trial_end", 42).unwrap(), Some(TimeOrNow::Now(42)));
        assert_eq!(p.required_str("customer").unwrap_err().param.as_deref(), Some("customer"));
    }

    #[test]
    fn round_trip_of_what_async_stripe_sends() {
        // The shape async-stripe's serializer produces for a subscription create.
        let body = "customer=cus_1&items%5B0%5D%5Bprice%5D=price_a&items%5B1%5D%5Bprice%5D=price_b&expand%5B%5D=latest_invoice&expand%5B%5D=latest_invoice.payments&trial_settings%5Bend_behavior%5D%5Bmissing_payment_method%5D=cancel";
        let p = Params::parse(body).unwrap();
        assert_eq!(p.str("customer").unwrap(), Some("cus_1"));
        let items = p.map_list("items").unwrap();
        assert_eq!((items[0]["price"].clone(), items[1]["price"].clone()), (v("price_a"), v("price_b")));
        assert_eq!(p.str_list("expand").unwrap(), vec!["latest_invoice", "latest_invoice.payments"]);
        let ts = hash(&p, "trial_settings");
        let Param::Map(eb) = &ts["end_behavior"] else { panic!() };
        assert_eq!(eb["missing_payment_method"], v("cancel"));
    }
}
