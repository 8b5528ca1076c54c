//! The audit log: every access of staff to a conversation.

use serde::Serialize;
use sqlx::types::Json;
use uuid::Uuid;

use super::{Db, StoreError, query, users::User};
use crate::time::Timestamp;

/// A recorded access.
#[derive(Debug, Clone, sqlx::FromRow, Serialize, utoipa::ToSchema)]
pub struct Entry {
    /// Its id.
    pub id: String,
    /// Who.
    pub actor_id: String,
    /// In which role.
    pub actor_role: String,
    /// What: `view`, `observe`, `reply`, `claim`, `transfer`, `release`, `close`, `export`…
    pub action: String,
    /// Which conversation, if one.
    pub conversation_id: Option<String>,
    /// Details (the transfer's target, the message written…).
    #[schema(value_type = Object)]
    pub detail: Json<serde_json::Value>,
    /// From where: the client's address.
    pub remote_addr: Option<String>,
    /// From where: the client's user agent.
    pub user_agent: Option<String>,
    /// When.
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
}

/// A staff member acting, and how they reach the gateway: who and "from where" in the log.
#[derive(Debug, Clone, Copy)]
pub struct Actor<'a> {
    /// The account.
    pub user: &'a User,
    /// The way in: `api` (bearer token), `dashboard` (session cookie) or `email` (a reply to a
    /// notification mail).
    pub via: &'static str,
    /// The client's address.
    pub remote_addr: Option<&'a str>,
    /// The client's user agent.
    pub user_agent: Option<&'a str>,
}

impl<'a> Actor<'a> {
    /// An actor that reached the gateway by e-mail (no client address to record).
    pub fn by_email(user: &'a User) -> Self {
        Self {
            user,
            via: "email",
            remote_addr: None,
            user_agent: None,
        }
    }
}

/// What a staff member did, as the audit log names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Opened a conversation they own or may take.
    View,
    /// A supervisor opened someone else's conversation (read-only).
    Observe,
    /// Exported a conversation's messages.
    Export,
    /// Took a waiting conversation.
    Claim,
    /// Gave a conversation to a colleague.
    Transfer,
    /// Gave a conversation back to the AI.
    Release,
    /// Closed a conversation.
    Close,
    /// Wrote to the end user.
    Reply,
    /// A reply by mail that was refused (another sender, a repeat, not theirs any more).
    ReplyRefused,
    /// Created a staff account.
    AddUser,
    /// Disabled a staff account.
    DisableUser,
    /// Listed the staff accounts.
    ListUsers,
    /// Read the audit log.
    ReadAuditLog,
    /// Listed live conversations.
    ListConversations,
    /// Listed the replies evaluations flagged.
    ListEvaluations,
    /// Searched the contacts.
    SearchContacts,
    /// Exported everything stored about a contact.
    ExportContact,
    /// Corrected a contact's name or address.
    CorrectContact,
    /// Erased a contact and everything stored about them.
    EraseContact,
    /// Read the usage totals.
    ReadUsage,
    /// Set a contact's plan or credits.
    SetPlan,
    /// Signed in.
    SignIn,
    /// Failed to sign in.
    SignInFailed,
}

impl Action {
    /// The name stored in the log and shown in the API.
    pub const fn as_str(self) -> &'static str {
        match self {
            Action::View => "view",
            Action::Observe => "observe",
            Action::Export => "export",
            Action::Claim => "claim",
            Action::Transfer => "transfer",
            Action::Release => "release",
            Action::Close => "close",
            Action::Reply => "reply",
            Action::ReplyRefused => "reply_refused",
            Action::AddUser => "add_user",
            Action::DisableUser => "disable_user",
            Action::ListUsers => "list_users",
            Action::ReadAuditLog => "read_audit_log",
            Action::ListConversations => "list_conversations",
            Action::ListEvaluations => "list_evaluations",
            Action::SearchContacts => "search_contacts",
            Action::ExportContact => "export_contact",
            Action::CorrectContact => "correct_contact",
            Action::EraseContact => "erase_contact",
            Action::ReadUsage => "read_usage",
            Action::SetPlan => "set_plan",
            Action::SignIn => "sign_in",
            Action::SignInFailed => "sign_in_failed",
        }
    }
}

/// Records that `actor` did `action` (to a conversation, if one), in the caller's transaction —
/// the record and the action commit together or not at all. `detail` is an object; the way in is
/// added to it as `via`.
pub async fn record(
    db: &mut impl Db,
    actor: &Actor<'_>,
    action: Action,
    conversation_id: Option<&str>,
    detail: serde_json::Value,
    now: Timestamp,
) -> Result<(), StoreError> {
    let mut detail = match detail {
        serde_json::Value::Object(map) => map,
        serde_json::Value::Null => serde_json::Map::new(),
        other => serde_json::Map::from_iter([("value".to_owned(), other)]),
    };
    detail.insert("via".into(), actor.via.into());
    db.execute(
        query(
            "INSERT INTO audit_log (id, actor_id, actor_role, action, conversation_id, detail, \
             remote_addr, user_agent, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(Uuid::now_v7().to_string())
        .bind(actor.user.id.as_str())
        .bind(actor.user.role.as_str())
        .bind(action.as_str())
        .bind(conversation_id)
        .bind(serde_json::Value::Object(detail))
        .bind(actor.remote_addr)
        .bind(actor.user_agent)
        .bind(now),
    )
    .await?;
    Ok(())
}

/// The role recorded for actions of end users on their own data (a visitor erasing themselves).
pub const VISITOR_ROLE: &str = "visitor";

/// Records that an end user did `action` to their own data: the actor is their contact id, with
/// the role [`VISITOR_ROLE`]. Neither their address nor their client is recorded — the entry
/// outlives what it is about.
pub async fn record_by_contact(
    db: &mut impl Db,
    contact_id: &str,
    action: Action,
    detail: serde_json::Value,
    now: Timestamp,
) -> Result<(), StoreError> {
    db.execute(
        query(
            "INSERT INTO audit_log (id, actor_id, actor_role, action, conversation_id, detail, \
             remote_addr, user_agent, created_at) VALUES ($1, $2, $3, $4, NULL, $5, NULL, NULL, $6)",
        )
        .bind(Uuid::now_v7().to_string())
        .bind(contact_id)
        .bind(VISITOR_ROLE)
        .bind(action.as_str())
        .bind(detail)
        .bind(now),
    )
    .await?;
    Ok(())
}

/// A sign-in attempt as the audit log records it.
#[derive(Debug, Clone, Copy)]
pub struct SignInAttempt<'a> {
    /// The account, when the login names one.
    pub user: Option<&'a User>,
    /// The login that was tried.
    pub login: &'a str,
    /// Whether the password matched.
    pub succeeded: bool,
    /// The way in: `api` or `dashboard`.
    pub via: &'static str,
    /// The client's address.
    pub remote_addr: Option<&'a str>,
    /// The client's user agent.
    pub user_agent: Option<&'a str>,
}

/// Records a staff sign-in attempt that was checked: `sign_in`, or `sign_in_failed` with the
/// login that was tried (the account, when it exists, is the actor; otherwise the actor is empty
/// and its role `unknown`). Never the password.
pub async fn record_sign_in(
    db: &mut impl Db,
    attempt: SignInAttempt<'_>,
    now: Timestamp,
) -> Result<(), StoreError> {
    let SignInAttempt {
        user,
        login,
        succeeded,
        via,
        remote_addr,
        user_agent,
    } = attempt;
    let detail = serde_json::json!({"login": login, "via": via});
    db.execute(
        query(
            "INSERT INTO audit_log (id, actor_id, actor_role, action, conversation_id, detail, \
             remote_addr, user_agent, created_at) VALUES ($1, $2, $3, $4, NULL, $5, $6, $7, $8)",
        )
        .bind(Uuid::now_v7().to_string())
        .bind(user.map_or("", |u| u.id.as_str()))
        .bind(user.map_or("unknown", |u| u.role.as_str()))
        .bind(if succeeded {
            Action::SignIn.as_str()
        } else {
            Action::SignInFailed.as_str()
        })
        .bind(detail)
        .bind(remote_addr)
        .bind(user_agent)
        .bind(now),
    )
    .await?;
    Ok(())
}

/// The action and time of `actor_id`'s latest entry about a conversation, if any.
pub async fn latest(
    db: &mut impl Db,
    actor_id: &str,
    conversation_id: &str,
) -> Result<Option<(String, Timestamp)>, StoreError> {
    db.fetch_optional(
        query(
            "SELECT action, created_at FROM audit_log WHERE conversation_id = $2 \
             AND actor_id = $1 ORDER BY created_at DESC LIMIT 1",
        )
        .bind(actor_id)
        .bind(conversation_id),
    )
    .await
}

/// The columns of an entry, and how a page of them is ordered.
macro_rules! entries {
    ($where:literal) => {
        concat!(
            "SELECT id, actor_id, actor_role, action, conversation_id, detail, remote_addr, \
             user_agent, created_at FROM audit_log ",
            $where,
            " ORDER BY created_at DESC, id DESC LIMIT $3 OFFSET $4"
        )
    };
}

/// A page of the log, newest first, optionally of one actor or conversation. Each combination
/// has its own statement, so that SQLite can use the index of the filtered column (it does not
/// look through `$1 IS NULL OR …`).
pub async fn page(
    db: &mut impl Db,
    actor_id: Option<&str>,
    conversation_id: Option<&str>,
    offset: i64,
    limit: i64,
) -> Result<(Vec<Entry>, i64), StoreError> {
    let (count, select) = match (actor_id.is_some(), conversation_id.is_some()) {
        (false, false) => (
            "SELECT COUNT(*) FROM audit_log WHERE $1 IS NULL AND $2 IS NULL",
            entries!("WHERE $1 IS NULL AND $2 IS NULL"),
        ),
        (true, false) => (
            "SELECT COUNT(*) FROM audit_log WHERE actor_id = $1 AND $2 IS NULL",
            entries!("WHERE actor_id = $1 AND $2 IS NULL"),
        ),
        (false, true) => (
            "SELECT COUNT(*) FROM audit_log WHERE $1 IS NULL AND conversation_id = $2",
            entries!("WHERE $1 IS NULL AND conversation_id = $2"),
        ),
        (true, true) => (
            "SELECT COUNT(*) FROM audit_log WHERE actor_id = $1 AND conversation_id = $2",
            entries!("WHERE actor_id = $1 AND conversation_id = $2"),
        ),
    };
    let (total,): (i64,) = db
        .fetch_one(query(count).bind(actor_id).bind(conversation_id))
        .await?;
    let entries = db
        .fetch_all(
            query(select)
                .bind(actor_id)
                .bind(conversation_id)
                .bind(limit)
                .bind(offset),
        )
        .await?;
    Ok((entries, total))
}
