//! What every request shares.

use std::sync::Arc;

use shared::usecase::admin::AdminService;

/// Shared by every request.
#[derive(Clone)]
pub struct AppState {
    pub service: Arc<AdminService>,
    /// The `cognito:groups` entry that makes a caller an admin (`ADMIN_GROUP`).
    pub admin_group: Arc<str>,
}

impl AppState {
    pub fn new(service: AdminService, admin_group: impl Into<Arc<str>>) -> Self {
        Self { service: Arc::new(service), admin_group: admin_group.into() }
    }
}
