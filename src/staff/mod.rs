//! Staff accounts and how they prove who they are.
//!
//! Experts, supervisors and admins are users of the gateway (end users never are: they are
//! contacts). They log in with an e-mail address and a password (argon2id, [`passwords`]) and are
//! then known by a bearer token for the API ([`tokens`]) or by a session cookie on the dashboard:
//! HttpOnly, SameSite=Strict, Secure behind HTTPS, with a CSRF token that every state-changing
//! dashboard request must echo. The database keeps only the SHA-256 of a session's cookie token.

pub mod key;
pub mod passwords;
pub mod tokens;

use std::sync::Arc;

use sha2::{Digest, Sha256};

use crate::{
    config::StaffConfig,
    limits::sign_in::SignInGuard,
    store::{
        Store, StoreError, audit, sessions,
        sessions::Session,
        users::{self, NewUser, StaffRole, User},
    },
    time::{Clock, Timestamp},
};
use tokens::TokenKeys;

/// Why an account could not be created.
#[derive(Debug, thiserror::Error)]
pub enum AddUserError {
    /// The e-mail address belongs to another account.
    #[error("an account with this e-mail address exists")]
    Taken,
    /// The address is not an address.
    #[error("the login must be an e-mail address")]
    BadEmail,
    /// The password is not acceptable.
    #[error(transparent)]
    Password(#[from] passwords::PasswordError),
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What a staff member signed in with: checked again while they watch a live stream, so that
/// signing out, an expired token or a disabled account ends what they see.
#[derive(Clone)]
pub enum Credential {
    /// An API bearer token.
    Bearer(String),
    /// The dashboard's session cookie token.
    Session(String),
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print a secret.
        f.write_str(match self {
            Credential::Bearer(_) => "Bearer(…)",
            Credential::Session(_) => "Session(…)",
        })
    }
}

/// The staff side's authentication. Cheap to clone.
#[derive(Clone)]
pub struct Staff {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    clock: Clock,
    keys: TokenKeys,
    guard: SignInGuard,
    hashing: passwords::Hashing,
    config: StaffConfig,
}

/// Where a sign-in attempt comes from.
#[derive(Debug, Clone, Copy)]
pub struct SignInFrom<'a> {
    /// The client's address (limits).
    pub address: std::net::IpAddr,
    /// The address as the audit log records it (with the forwarded-for address behind a proxy).
    pub remote_addr: Option<&'a str>,
    /// The client's user agent.
    pub user_agent: Option<&'a str>,
    /// `api` or `dashboard`.
    pub via: &'static str,
}

/// How a sign-in attempt ended.
#[derive(Debug)]
pub enum SignIn {
    /// The login and password match an enabled account.
    Welcome(User),
    /// They do not.
    Refused,
    /// The attempt was not checked: too many attempts (answer 429 with `Retry-After`).
    Throttled(crate::limits::Refused),
}

impl Staff {
    /// Authentication over a store. Without a configured secret, tokens are signed with a key
    /// generated at the first start and kept in a key file readable by the owner only ([`key`]),
    /// so that a token stays valid across restarts (and on every instance given the same key).
    pub async fn connect(
        config: &StaffConfig,
        database: &crate::config::DatabaseConfig,
        limits: &crate::config::LimitsConfig,
        store: Store,
        clock: Clock,
    ) -> Result<Self, key::KeyError> {
        let file = key::key_file(config, database);
        let secret = key::staff_secret(config.jwt_secret.as_ref(), &file, &store, &clock).await?;
        Ok(Self::new(config, limits, store, clock, secret.as_bytes()))
    }

    fn new(
        config: &StaffConfig,
        limits: &crate::config::LimitsConfig,
        store: Store,
        clock: Clock,
        secret: &[u8],
    ) -> Self {
        let sign_in = &limits.sign_in;
        Self {
            inner: Arc::new(Inner {
                keys: TokenKeys::new(secret, config.token_ttl),
                guard: SignInGuard::new(sign_in, limits.exempt_local, &clock),
                hashing: passwords::Hashing::new(sign_in.concurrent_hashes, sign_in.hash_wait),
                store,
                clock,
                config: config.clone(),
            }),
        }
    }

    /// Signs a staff member in with their login and password. Attempts are limited per client
    /// address and back off per account (a refused attempt is not even checked); an unknown login
    /// takes as long as a wrong password. Every checked attempt is logged and audited, failures
    /// with the login that was tried.
    pub async fn sign_in(
        &self,
        email: &str,
        password: &str,
        from: &SignInFrom<'_>,
    ) -> Result<SignIn, StoreError> {
        let email = email.trim().to_lowercase();
        let checking = match self.inner.guard.admit(&email, from.address) {
            Ok(checking) => checking,
            Err(refused) => {
                tracing::warn!(account = %email, address = %from.address, reason = refused.reason, "sign-in refused");
                return Ok(SignIn::Throttled(refused));
            }
        };
        let user = users::by_email(&mut self.inner.store.reader(), &email).await?;
        let hash = user
            .as_ref()
            .map_or(passwords::decoy(), |u| u.password_hash.as_str());
        let matches = match self.inner.hashing.verify(password, hash).await {
            Ok(matches) => matches,
            Err(passwords::Busy) => {
                tracing::warn!(account = %email, address = %from.address, "sign-in refused: too many at once");
                return Ok(SignIn::Throttled(crate::limits::Refused {
                    retry_after: std::time::Duration::from_secs(1),
                    reason: "too many sign-ins at once",
                }));
            }
        };
        let now = self.inner.clock.now();
        let attempt = |user, succeeded| audit::SignInAttempt {
            user,
            login: &email,
            succeeded,
            via: from.via,
            remote_addr: from.remote_addr,
            user_agent: from.user_agent,
        };
        let mut tx = self.inner.store.begin().await?;
        let outcome = match user {
            Some(user) if matches => {
                checking.succeeded();
                audit::record_sign_in(&mut tx, attempt(Some(&user), true), now).await?;
                tracing::info!(user = %user.id, role = %user.role, address = %from.address, via = from.via, "signed in");
                SignIn::Welcome(user)
            }
            user => {
                checking.failed();
                audit::record_sign_in(&mut tx, attempt(user.as_ref(), false), now).await?;
                tracing::warn!(account = %email, address = %from.address, via = from.via, "a sign-in failed");
                SignIn::Refused
            }
        };
        tx.commit().await?;
        Ok(outcome)
    }

    /// Forgets sign-in limits that no longer hold (called every minute).
    pub fn forget_idle(&self) {
        self.inner.guard.forget_idle();
    }

    /// A bearer token for a user, and when it expires.
    pub fn issue_token(&self, user: &User) -> (String, Timestamp) {
        let now = self.inner.clock.now();
        let expires = now.plus(self.inner.config.token_ttl);
        (
            self.inner.keys.issue(&user.id, user.role, now, expires),
            expires,
        )
    }

    /// The enabled account a bearer token belongs to.
    pub async fn from_token(&self, token: &str) -> Result<Option<User>, StoreError> {
        let Some(claims) = self.inner.keys.verify(token, self.inner.clock.now()) else {
            return Ok(None);
        };
        users::get(&mut self.inner.store.reader(), &claims.sub).await
    }

    /// Opens a dashboard session; returns the cookie's token and the CSRF token.
    pub async fn open_session(&self, user: &User) -> Result<(String, String), StoreError> {
        let token = random_token();
        let csrf = random_token();
        let now = self.inner.clock.now();
        let mut tx = self.inner.store.begin().await?;
        sessions::create(
            &mut tx,
            &session_id(&token),
            &user.id,
            &csrf,
            now,
            now.plus(self.inner.config.session_ttl),
        )
        .await?;
        tx.commit().await?;
        Ok((token, csrf))
    }

    /// The account and session a cookie's token belongs to.
    pub async fn from_session(&self, token: &str) -> Result<Option<(User, Session)>, StoreError> {
        let mut reader = self.inner.store.reader();
        let Some(session) =
            sessions::get(&mut reader, &session_id(token), self.inner.clock.now()).await?
        else {
            return Ok(None);
        };
        Ok(users::get(&mut reader, &session.user_id)
            .await?
            .map(|user| (user, session)))
    }

    /// The enabled account a credential still belongs to: `None` once the session ended, the
    /// token expired or the account was disabled.
    pub async fn recheck(&self, credential: &Credential) -> Result<Option<User>, StoreError> {
        match credential {
            Credential::Bearer(token) => self.from_token(token).await,
            Credential::Session(token) => Ok(self.from_session(token).await?.map(|(user, _)| user)),
        }
    }

    /// Ends a session.
    pub async fn close_session(&self, token: &str) -> Result<(), StoreError> {
        let mut tx = self.inner.store.begin().await?;
        sessions::delete(&mut tx, &session_id(token)).await?;
        tx.commit().await
    }

    /// Creates an account; `by`, the admin doing it, is recorded in the audit log with it.
    pub async fn add_user(
        &self,
        email: &str,
        display_name: &str,
        role: StaffRole,
        password: &str,
        capacity: i64,
        by: Option<&audit::Actor<'_>>,
    ) -> Result<User, AddUserError> {
        let email = email.trim().to_lowercase();
        let valid = email
            .split_once('@')
            .is_some_and(|(local, domain)| !local.is_empty() && domain.contains('.'));
        if !valid || email.chars().any(char::is_whitespace) {
            return Err(AddUserError::BadEmail);
        }
        let hash = self.inner.hashing.hash(password).await?;
        let display_name = match display_name.trim() {
            "" => email.split('@').next().unwrap_or_default().to_owned(),
            name => name.to_owned(),
        };
        let mut tx = self.inner.store.begin().await?;
        let user = users::create(
            &mut tx,
            NewUser {
                email,
                display_name,
                role,
                password_hash: hash,
                capacity,
            },
            self.inner.clock.now(),
        )
        .await?
        .ok_or(AddUserError::Taken)?;
        if let Some(admin) = by {
            let detail = serde_json::json!({"user_id": user.id, "role": user.role});
            audit::record(
                &mut tx,
                admin,
                audit::Action::AddUser,
                None,
                detail,
                self.inner.clock.now(),
            )
            .await?;
        }
        tx.commit().await?;
        Ok(user)
    }

    /// How long a session lasts.
    pub fn session_ttl(&self) -> std::time::Duration {
        self.inner.config.session_ttl
    }
}

/// 256 random bits from the operating system, hex.
pub(crate) fn random_token() -> String {
    hex::encode(os_random::<32>())
}

/// `N` bytes from the operating system's generator, for secrets. (Ids take theirs from a faster
/// thread-local generator, see `crate::ids`.) Without an OS generator the gateway cannot make
/// secrets at all, so it stops rather than make guessable ones.
pub(crate) fn os_random<const N: usize>() -> [u8; N] {
    let mut bytes = [0; N];
    getrandom::fill(&mut bytes).expect("the operating system's random generator failed");
    bytes
}

/// What the database stores of a session token.
fn session_id(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}
