//! Who asks: the admin the authorizer vouched for, and the idempotency key they sent.
//! The use cases take a [`Caller`]; the edge ([`crate::auth`], [`crate::routes`]) makes one.

/// The authenticated admin, available to handlers as an extension.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admin {
    /// The token's `sub`.
    pub subject: String,
}

impl Admin {
    /// The history `actor` of changes this admin makes.
    pub fn actor(&self) -> String {
        format!("admin:{}", self.subject)
    }
}

/// Who asks, and under which idempotency key.
#[derive(Debug, Clone)]
pub struct Caller {
    pub admin: Admin,
    /// The `Idempotency-Key` header, when sent.
    pub idempotency_key: Option<String>,
}
