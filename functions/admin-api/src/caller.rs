//! Who asks: the admin the authorizer vouched for. With the idempotency key they sent it
//! becomes the use cases' [`Caller`].

pub use shared::usecase::admin::Caller;

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

    /// This admin asking under `idempotency_key` (the header, when sent).
    pub fn caller(&self, idempotency_key: Option<String>) -> Caller {
        Caller { actor: self.actor(), idempotency_key }
    }
}
