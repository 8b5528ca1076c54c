//! Quotas: how many messages and tokens a contact may use per UTC day and month, by plan, and
//! prepaid credits.
//!
//! Rates ([`super::rate`]) protect the gateway from bursts; quotas are what a contact's plan
//! allows (`[quotas.plans.<name>]`), and what their credits pay for. Every contact has a plan —
//! the one an admin gave them (`PUT /v1/admin/contacts/{id}/plan`), else `quotas.default_plan` —
//! and may have credits: a balance in the configured currency from which the cost of each reply is
//! deducted (by its agent's prices); at zero or below, the contact is over quota.
//!
//! The check is on the path of every message, so it never asks the database: the counters live
//! here, built once at start from the database ([`crate::store::usage::quota_accounts`]), counted
//! up as messages and replies are stored, and rebuilt for one contact when an admin changes their
//! plan. Only contacts whose quota can bite are kept: those with a plan or credits of their own,
//! and — when the default plan limits anything — everyone active this month. Days and months are
//! UTC days and months of the gateway's clock.
//!
//! Counters are per process. Several instances sharing a PostgreSQL database each count what they
//! store, and re-read everyone's from the database on a schedule ([`Quotas::refresh`],
//! `quotas.refresh_schedule`), so a contact writing to several instances at once may go over by
//! what the others stored since the last refresh.
//!
//! Messages are counted once stored; a burst of concurrent messages can pass the check together,
//! so a contact may go over by the messages they had in flight. A reply whose tokens cross a
//! token quota is not cut short: the contact is over from then on.

use std::{
    collections::HashMap,
    sync::{
        Mutex,
        atomic::{AtomicBool, Ordering},
    },
};

use chrono::{Datelike, TimeZone, Utc};
use switchboard_channel::Channel;

use crate::{
    config::{PlanConfig, QuotasConfig},
    ids::ContactId,
    store::usage::QuotaAccount,
    time::{Clock, Timestamp},
};

const DAY_MICROS: i64 = 86_400_000_000;

/// The period a quota counts in: a contact is told once per period that they are over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Period {
    /// A UTC day (days since 1970-01-01).
    Day(i64),
    /// A UTC month (months since year 0).
    Month(i64),
    /// Until an admin gives the contact credits again.
    Credits,
}

/// A contact over one of their quotas.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exceeded {
    /// Which quota, and until when, for people.
    pub reason: String,
    /// The period it counts in.
    pub period: Period,
}

#[derive(Debug, Clone, Default)]
struct Account {
    plan: Option<String>,
    /// Millionths of the currency.
    credits_left: Option<i64>,
    day: i64,
    month: i64,
    messages_day: u64,
    messages_month: u64,
    tokens_day: u64,
    tokens_month: u64,
    told: Option<Period>,
}

impl Account {
    /// Starts the counters afresh when a new day or month began.
    fn roll(&mut self, (day, month): (i64, i64)) {
        if self.day != day {
            self.day = day;
            self.messages_day = 0;
            self.tokens_day = 0;
        }
        if self.month != month {
            self.month = month;
            self.messages_month = 0;
            self.tokens_month = 0;
        }
    }

    /// Whether nothing of the account needs remembering: no plan or credits of its own, and no
    /// use this month.
    fn idle(&self, month: i64) -> bool {
        self.plan.is_none() && self.credits_left.is_none() && self.month != month
    }
}

#[derive(Default)]
struct State {
    /// Contacts by their channel identity (the website API checks before the contact exists).
    by_identity: HashMap<(Channel, String), ContactId>,
    accounts: HashMap<ContactId, Account>,
}

/// The quotas of every contact.
pub struct Quotas {
    plans: HashMap<String, PlanConfig>,
    default_plan: String,
    /// The default plan limits something: every contact is counted.
    everyone: bool,
    /// Some contact is counted; when not, checks are a load of this flag.
    any: AtomicBool,
    clock: Clock,
    state: Mutex<State>,
}

impl Quotas {
    /// The quotas of a configuration, with nothing counted yet (see [`Quotas::load`]).
    pub fn new(config: &QuotasConfig, clock: &Clock) -> Self {
        let plans: HashMap<String, PlanConfig> = config
            .plans
            .iter()
            .map(|(name, plan)| (name.clone(), plan.clone()))
            .collect();
        let everyone = plans
            .get(&config.default_plan)
            .is_some_and(PlanConfig::is_limited);
        Self {
            plans,
            default_plan: config.default_plan.clone(),
            everyone,
            any: AtomicBool::new(everyone),
            clock: clock.clone(),
            state: Mutex::new(State::default()),
        }
    }

    /// Whether every contact active this month is counted (the default plan limits something),
    /// or only those with a plan or credits of their own.
    pub fn counts_everyone(&self) -> bool {
        self.everyone
    }

    /// Whether `name` is a configured plan.
    pub fn has_plan(&self, name: &str) -> bool {
        self.plans.contains_key(name)
    }

    /// The starts of the current UTC day and month, for reading the counters from the database.
    pub fn period_starts(&self) -> (Timestamp, Timestamp) {
        let now = self.clock.now();
        let day = now.micros().div_euclid(DAY_MICROS) * DAY_MICROS;
        let date = now.to_datetime();
        let month = Utc
            .with_ymd_and_hms(date.year(), date.month(), 1, 0, 0, 0)
            .single()
            .map_or(Timestamp(day), Timestamp::from);
        (Timestamp(day), month)
    }

    /// The current day and month, as the counters count them.
    fn periods(&self) -> (i64, i64) {
        let now = self.clock.now();
        let date = now.to_datetime();
        (
            now.micros().div_euclid(DAY_MICROS),
            i64::from(date.year()) * 12 + i64::from(date.month0()),
        )
    }

    /// Replaces every counter with what the database says (at start).
    pub fn load(&self, accounts: Vec<QuotaAccount>) {
        let periods = self.periods();
        let mut state = self.lock();
        *state = State::default();
        for row in accounts {
            Self::put(&mut state, row, periods);
        }
        self.any.store(
            self.everyone || !state.accounts.is_empty(),
            Ordering::Relaxed,
        );
    }

    /// Replaces every counter with what the database says, keeping who was told they are over
    /// (the other instances' messages and replies count from now on).
    pub fn refresh(&self, accounts: Vec<QuotaAccount>) {
        let periods = self.periods();
        let mut state = self.lock();
        let told: HashMap<ContactId, Period> = state
            .accounts
            .iter()
            .filter_map(|(id, a)| a.told.map(|t| (id.clone(), t)))
            .collect();
        let mut fresh = State {
            by_identity: std::mem::take(&mut state.by_identity),
            accounts: HashMap::new(),
        };
        for row in accounts {
            Self::put(&mut fresh, row, periods);
        }
        for (id, period) in told {
            if let Some(account) = fresh.accounts.get_mut(&id) {
                account.told = Some(period);
            }
        }
        let State {
            by_identity,
            accounts,
        } = &mut fresh;
        by_identity.retain(|_, id| accounts.contains_key(id));
        *state = fresh;
        self.any.store(
            self.everyone || !state.accounts.is_empty(),
            Ordering::Relaxed,
        );
    }

    /// Replaces one contact's counters with what the database says (after an admin changed their
    /// plan or credits).
    pub fn reload(&self, account: QuotaAccount) {
        let periods = self.periods();
        let mut state = self.lock();
        let id = account.id.clone();
        Self::put(&mut state, account, periods);
        if !self.everyone
            && state
                .accounts
                .get(&id)
                .is_some_and(|a| a.plan.is_none() && a.credits_left.is_none())
        {
            // Back to the (unlimited) default plan: nothing to count.
            state.accounts.remove(&id);
        }
        self.any.store(
            self.everyone || !state.accounts.is_empty(),
            Ordering::Relaxed,
        );
    }

    fn put(state: &mut State, row: QuotaAccount, (day, month): (i64, i64)) {
        let count = |n: i64| u64::try_from(n).unwrap_or(0);
        state
            .by_identity
            .insert((row.channel, row.external_id), row.id.clone());
        state.accounts.insert(
            row.id,
            Account {
                plan: row.plan,
                credits_left: row.credits_left,
                day,
                month,
                messages_day: count(row.messages_day),
                messages_month: count(row.messages_month),
                tokens_day: count(row.tokens_day),
                tokens_month: count(row.tokens_month),
                told: None,
            },
        );
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Checks a sender by their channel identity, before their message is stored (the website
    /// API). Someone not counted has used nothing.
    pub fn check_identity(&self, channel: Channel, external_id: &str) -> Result<(), Exceeded> {
        if !self.any.load(Ordering::Relaxed) {
            return Ok(());
        }
        let periods = self.periods();
        let mut state = self.lock();
        let id = state
            .by_identity
            .get(&(channel, external_id.to_owned()))
            .cloned();
        match id.and_then(|id| state.accounts.get_mut(&id)) {
            Some(account) => self.verdict(account, periods),
            None => self.verdict(&mut Account::default(), periods),
        }
    }

    /// Checks a contact.
    pub fn check(&self, contact_id: &ContactId) -> Result<(), Exceeded> {
        if !self.any.load(Ordering::Relaxed) {
            return Ok(());
        }
        let periods = self.periods();
        let mut state = self.lock();
        match state.accounts.get_mut(contact_id) {
            Some(account) => self.verdict(account, periods),
            None => self.verdict(&mut Account::default(), periods),
        }
    }

    /// Whether a contact over a quota should be told now: once per period (and once until an
    /// admin gives credits again).
    pub fn tell(&self, contact_id: &ContactId, exceeded: &Exceeded) -> bool {
        let mut state = self.lock();
        match state.accounts.get_mut(contact_id) {
            Some(account) if account.told == Some(exceeded.period) => false,
            Some(account) => {
                account.told = Some(exceeded.period);
                true
            }
            // Over the default plan's zero allowance without ever writing: counted from now on.
            None => {
                state.accounts.insert(
                    contact_id.clone(),
                    Account {
                        told: Some(exceeded.period),
                        ..Account::default()
                    },
                );
                true
            }
        }
    }

    /// Takes back a telling whose notice was not stored after all.
    pub fn untell(&self, contact_id: &ContactId) {
        if let Some(account) = self.lock().accounts.get_mut(contact_id) {
            account.told = None;
        }
    }

    /// Counts a stored message of a contact; `identity` is their channel identity when known, so
    /// that their next request can be checked before it is stored.
    pub fn count_message(&self, contact_id: &ContactId, identity: Option<(Channel, &str)>) {
        if !self.any.load(Ordering::Relaxed) {
            return;
        }
        let periods = self.periods();
        let mut state = self.lock();
        let Some(account) = self.account(&mut state, contact_id) else {
            return;
        };
        account.roll(periods);
        account.messages_day += 1;
        account.messages_month += 1;
        if let Some((channel, external_id)) = identity {
            state
                .by_identity
                .entry((channel, external_id.to_owned()))
                .or_insert_with(|| contact_id.clone());
        }
    }

    /// Counts a stored reply to a contact: its tokens, and its cost against their credits.
    pub fn count_reply(&self, contact_id: &ContactId, tokens: u64, cost_micros: i64) {
        if !self.any.load(Ordering::Relaxed) {
            return;
        }
        let periods = self.periods();
        let mut state = self.lock();
        let Some(account) = self.account(&mut state, contact_id) else {
            return;
        };
        account.roll(periods);
        account.tokens_day = account.tokens_day.saturating_add(tokens);
        account.tokens_month = account.tokens_month.saturating_add(tokens);
        if let Some(credits) = &mut account.credits_left {
            *credits = credits.saturating_sub(cost_micros);
        }
    }

    /// A contact's counters, created when everyone is counted.
    fn account<'s>(&self, state: &'s mut State, contact_id: &ContactId) -> Option<&'s mut Account> {
        if self.everyone {
            Some(state.accounts.entry(contact_id.clone()).or_default())
        } else {
            state.accounts.get_mut(contact_id)
        }
    }

    /// Forgets contacts with nothing to remember (no use this month, no plan of their own).
    pub fn forget_idle(&self) {
        if !self.any.load(Ordering::Relaxed) {
            return;
        }
        let (_, month) = self.periods();
        let mut state = self.lock();
        state.accounts.retain(|_, a| !a.idle(month));
        let State {
            by_identity,
            accounts,
        } = &mut *state;
        by_identity.retain(|_, id| accounts.contains_key(id));
    }

    fn verdict(&self, account: &mut Account, periods: (i64, i64)) -> Result<(), Exceeded> {
        account.roll(periods);
        if let Some(credits) = account.credits_left
            && credits <= 0
        {
            return Err(Exceeded {
                reason: "the credits of this contact are used up".into(),
                period: Period::Credits,
            });
        }
        let name = account.plan.as_deref().unwrap_or(&self.default_plan);
        // A plan removed from the configuration since the admin set it: the default applies.
        let Some(plan) = self
            .plans
            .get(name)
            .or_else(|| self.plans.get(&self.default_plan))
        else {
            return Ok(());
        };
        let (day, month) = periods;
        for (used, limit, what, period) in [
            (
                account.messages_day,
                plan.messages_per_day,
                "messages a day",
                Period::Day(day),
            ),
            (
                account.messages_month,
                plan.messages_per_month,
                "messages a month",
                Period::Month(month),
            ),
            (
                account.tokens_day,
                plan.tokens_per_day,
                "tokens a day",
                Period::Day(day),
            ),
            (
                account.tokens_month,
                plan.tokens_per_month,
                "tokens a month",
                Period::Month(month),
            ),
        ] {
            if let Some(limit) = limit
                && used >= limit
            {
                let renews = match period {
                    Period::Day(_) => "at midnight UTC",
                    _ => "on the first of the month (UTC)",
                };
                return Err(Exceeded {
                    reason: format!(
                        "this contact's plan allows {limit} {what}, all used; it renews {renews}"
                    ),
                    period,
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::{collections::BTreeMap, time::Duration};

    use super::*;

    fn config(default: PlanConfig, others: &[(&str, PlanConfig)]) -> QuotasConfig {
        let mut plans = BTreeMap::from([("default".to_owned(), default)]);
        for (name, plan) in others {
            plans.insert((*name).to_owned(), plan.clone());
        }
        QuotasConfig {
            plans,
            ..QuotasConfig::default()
        }
    }

    fn row(id: &str, plan: Option<&str>, credits: Option<i64>) -> QuotaAccount {
        QuotaAccount {
            id: id.into(),
            channel: Channel::WEB,
            external_id: format!("device:{id}"),
            plan: plan.map(str::to_owned),
            credits_left: credits,
            messages_day: 0,
            messages_month: 0,
            tokens_day: 0,
            tokens_month: 0,
        }
    }

    #[test]
    fn without_limits_nothing_is_counted_or_refused() {
        let quotas = Quotas::new(&config(PlanConfig::default(), &[]), &Clock::system());
        let id = ContactId::from("c");
        for _ in 0..100 {
            quotas.count_message(&id, Some((Channel::WEB, "device:c")));
            quotas.count_reply(&id, 1_000_000, 1_000_000);
        }
        assert!(quotas.check(&id).is_ok());
        assert!(quotas.check_identity(Channel::WEB, "device:c").is_ok());
        assert!(quotas.lock().accounts.is_empty(), "nobody is remembered");
    }

    #[test]
    fn daily_messages_renew_at_midnight_utc_and_months_add_up() {
        // Start at 23:00 UTC on the 30th of a 31-day month.
        let start = Utc.with_ymd_and_hms(2026, 12, 30, 23, 0, 0).unwrap();
        let clock = Clock::starting_at(Timestamp::from(start));
        let plan = PlanConfig {
            messages_per_day: Some(2),
            messages_per_month: Some(3),
            ..PlanConfig::default()
        };
        let quotas = Quotas::new(&config(plan, &[]), &clock);
        let id = ContactId::from("c");
        assert!(quotas.check_identity(Channel::WEB, "device:c").is_ok());
        quotas.count_message(&id, Some((Channel::WEB, "device:c")));
        quotas.count_message(&id, None);
        let over = quotas.check_identity(Channel::WEB, "device:c").unwrap_err();
        assert!(over.reason.contains("2 messages a day"), "{}", over.reason);
        assert!(quotas.tell(&id, &over), "told the first time");
        assert!(!quotas.tell(&id, &over), "not twice in a day");
        clock.advance(Duration::from_secs(3600));
        quotas.check(&id).unwrap();
        quotas.count_message(&id, None);
        let over = quotas.check(&id).unwrap_err();
        assert!(
            over.reason.contains("3 messages a month"),
            "{}",
            over.reason
        );
        assert!(quotas.tell(&id, &over), "a new period is told again");
        // January: a new month.
        clock.advance(Duration::from_secs(2 * 86_400));
        assert!(quotas.check(&id).is_ok());
    }

    #[test]
    fn tokens_and_credits_are_counted_by_reply() {
        let clock = Clock::system();
        let metered = PlanConfig {
            tokens_per_day: Some(100),
            ..PlanConfig::default()
        };
        let quotas = Quotas::new(
            &config(PlanConfig::default(), &[("metered", metered)]),
            &clock,
        );
        quotas.load(vec![
            row("a", Some("metered"), None),
            row("b", None, Some(1_000)),
        ]);
        let (a, b) = (ContactId::from("a"), ContactId::from("b"));
        quotas.count_reply(&a, 99, 0);
        assert!(quotas.check(&a).is_ok());
        quotas.count_reply(&a, 1, 0);
        assert!(quotas.check_identity(Channel::WEB, "device:a").is_err());
        quotas.count_reply(&b, 10_000, 999);
        assert!(quotas.check(&b).is_ok(), "1 millionth left");
        quotas.count_reply(&b, 0, 1);
        let over = quotas.check(&b).unwrap_err();
        assert_eq!(over.period, Period::Credits);
        // Another instance's replies, read from the database: the telling is kept.
        let over = quotas.check(&a).unwrap_err();
        assert!(quotas.tell(&a, &over));
        let mut used = row("a", Some("metered"), None);
        used.tokens_day = 150;
        quotas.refresh(vec![used, row("b", None, Some(0))]);
        assert!(!quotas.tell(&a, &over), "told already");
        assert!(quotas.check_identity(Channel::WEB, "device:a").is_err());
        // The admin tops up: counted from the database's figures again.
        quotas.reload(row("b", None, Some(5_000)));
        assert!(quotas.check(&b).is_ok());
        // And removes the limit: nobody to count.
        quotas.reload(row("b", None, None));
        assert!(!quotas.lock().accounts.contains_key(&b));
    }

    #[test]
    fn a_plan_of_zero_refuses_even_strangers() {
        let quotas = Quotas::new(
            &config(
                PlanConfig {
                    messages_per_day: Some(0),
                    ..PlanConfig::default()
                },
                &[],
            ),
            &Clock::system(),
        );
        assert!(quotas.check_identity(Channel::WEB, "device:new").is_err());
    }
}
