//! Staff accounts: experts, supervisors and admins. End users are contacts, never users.

use std::fmt;

use serde::Serialize;

use super::{Db, Flag, StoreError, Tx, query};
use crate::{ids::UserId, time::Timestamp};

/// What a staff member may do.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, serde::Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum StaffRole {
    /// Answers the conversations assigned to them (and may claim from the queue).
    Expert,
    /// Watches every live conversation; searches contacts; may do what experts do.
    Supervisor,
    /// Manages accounts and reads the audit log; may do what supervisors do.
    Admin,
}

impl StaffRole {
    /// The stored name.
    pub const fn as_str(self) -> &'static str {
        match self {
            StaffRole::Expert => "expert",
            StaffRole::Supervisor => "supervisor",
            StaffRole::Admin => "admin",
        }
    }

    /// Whether this role includes `other`'s rights (admin ⊇ supervisor ⊇ expert).
    pub fn includes(self, other: StaffRole) -> bool {
        self.rank() >= other.rank()
    }

    fn rank(self) -> u8 {
        match self {
            StaffRole::Expert => 1,
            StaffRole::Supervisor => 2,
            StaffRole::Admin => 3,
        }
    }
}

impl fmt::Display for StaffRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for StaffRole {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "expert" => Ok(StaffRole::Expert),
            "supervisor" => Ok(StaffRole::Supervisor),
            "admin" => Ok(StaffRole::Admin),
            other => Err(format!(
                "unknown role {other:?}: expert, supervisor or admin"
            )),
        }
    }
}

impl TryFrom<String> for StaffRole {
    type Error = String;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

/// A staff account.
#[derive(Debug, Clone, sqlx::FromRow, Serialize, utoipa::ToSchema)]
pub struct User {
    /// Its id (UUIDv7).
    #[schema(value_type = String, format = "uuid")]
    pub id: UserId,
    /// Login name and notification address.
    pub email: String,
    /// Shown to colleagues and, for experts, to end users.
    pub display_name: String,
    /// What they may do.
    #[sqlx(try_from = "String")]
    pub role: StaffRole,
    /// argon2 PHC string.
    #[serde(skip)]
    pub password_hash: String,
    /// Experts: taking conversations now.
    #[sqlx(try_from = "i64")]
    #[schema(value_type = bool)]
    pub available: Flag,
    /// Experts: most open conversations at once.
    pub capacity: i64,
    /// When the expert last got a conversation.
    #[schema(value_type = Option<String>, format = DateTime)]
    pub last_assigned_at: Option<Timestamp>,
    /// Set when the account was disabled.
    #[schema(value_type = Option<String>, format = DateTime)]
    pub disabled_at: Option<Timestamp>,
    /// Created.
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
}

macro_rules! user_columns {
    () => {
        " id, email, display_name, role, password_hash, available, capacity, last_assigned_at, \
          disabled_at, created_at "
    };
}

/// A new account.
#[derive(Debug, Clone)]
pub struct NewUser {
    /// Login name (stored lowercased).
    pub email: String,
    /// Display name.
    pub display_name: String,
    /// StaffRole.
    pub role: StaffRole,
    /// argon2 PHC string.
    pub password_hash: String,
    /// Experts: capacity.
    pub capacity: i64,
}

/// Creates an account. `None` when the e-mail address is taken.
pub async fn create(tx: &mut Tx, new: NewUser, now: Timestamp) -> Result<Option<User>, StoreError> {
    tx.fetch_optional(
        query(concat!(
            "INSERT INTO users (id, email, display_name, role, password_hash, capacity, \
             created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $7) \
             ON CONFLICT (email) DO NOTHING RETURNING",
            user_columns!()
        ))
        .bind(UserId::generate())
        .bind(new.email.trim().to_lowercase())
        .bind(new.display_name)
        .bind(new.role.as_str())
        .bind(new.password_hash)
        .bind(new.capacity)
        .bind(now),
    )
    .await
}

/// An enabled account by login name.
pub async fn by_email(db: &mut impl Db, email: &str) -> Result<Option<User>, StoreError> {
    db.fetch_optional(
        query(concat!(
            "SELECT",
            user_columns!(),
            "FROM users WHERE email = $1 AND disabled_at IS NULL"
        ))
        .bind(email.trim().to_lowercase()),
    )
    .await
}

/// An enabled account by id.
pub async fn get(db: &mut impl Db, id: &str) -> Result<Option<User>, StoreError> {
    db.fetch_optional(
        query(concat!(
            "SELECT",
            user_columns!(),
            "FROM users WHERE id = $1 AND disabled_at IS NULL"
        ))
        .bind(id),
    )
    .await
}

/// Every account, by creation.
pub async fn list(db: &mut impl Db) -> Result<Vec<User>, StoreError> {
    db.fetch_all(query(concat!(
        "SELECT",
        user_columns!(),
        "FROM users ORDER BY created_at"
    )))
    .await
}

/// Sets whether an expert takes conversations, and how many at once.
pub async fn set_availability(
    tx: &mut Tx,
    id: &str,
    available: bool,
    capacity: Option<i64>,
    now: Timestamp,
) -> Result<Option<User>, StoreError> {
    tx.fetch_optional(
        query(concat!(
            "UPDATE users SET available = $2, capacity = COALESCE($3, capacity), updated_at = $4 \
             WHERE id = $1 AND disabled_at IS NULL RETURNING",
            user_columns!()
        ))
        .bind(id)
        .bind(i64::from(available))
        .bind(capacity)
        .bind(now),
    )
    .await
}

/// Disables an account and ends its sessions.
pub async fn disable(tx: &mut Tx, id: &str, now: Timestamp) -> Result<bool, StoreError> {
    let n = tx
        .execute(
            query(
                "UPDATE users SET disabled_at = $2, available = 0, updated_at = $2 \
                 WHERE id = $1 AND disabled_at IS NULL",
            )
            .bind(id)
            .bind(now),
        )
        .await?;
    tx.execute(query("DELETE FROM sessions WHERE user_id = $1").bind(id))
        .await?;
    Ok(n == 1)
}
