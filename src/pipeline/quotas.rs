//! Keeps the quota counters of instances that share a PostgreSQL database in step.
//!
//! Each instance counts the messages and replies it stores itself (see `limits::quotas`); this
//! schedule re-reads everyone's from the database, so what the other instances stored counts too.

use crate::{
    limits::Limits,
    store::{Backend, Store, usage},
};

/// Re-reads the quota counters on `quotas.refresh_schedule`.
pub struct QuotaRefresh {
    /// The database.
    pub store: Store,
    /// The limits holding the counters.
    pub limits: std::sync::Arc<Limits>,
    /// When.
    pub schedule: String,
}

impl QuotaRefresh {
    /// Whether the refresh has anything to do: several instances can share the database only on
    /// PostgreSQL.
    pub fn needed(store: &Store) -> bool {
        store.backend() == Backend::Postgres
    }
}

#[async_trait::async_trait]
impl crate::jobs::ScheduledTask for QuotaRefresh {
    fn name(&self) -> &'static str {
        "quota_refresh"
    }

    fn schedule(&self) -> &str {
        &self.schedule
    }

    async fn tick(&self) -> Result<(), apalis::prelude::BoxDynError> {
        let quotas = &self.limits.quotas;
        let (day, month) = quotas.period_starts();
        let accounts = usage::quota_accounts(
            &mut self.store.reader(),
            day,
            month,
            quotas.counts_everyone(),
            None,
        )
        .await?;
        quotas.refresh(accounts);
        Ok(())
    }
}
