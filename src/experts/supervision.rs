//! What supervisors look up — contacts found by name, phone, e-mail or username, and one
//! contact's conversations — queried and written to the audit log in one place, whichever face
//! asks (the JSON API or the dashboard's fragments).

use serde_json::json;

use crate::{
    ids::ContactId,
    store::{
        Store, StoreError,
        audit::{self, Action, Actor},
        contacts::{self, Found},
        conversations::{self, Conversation},
    },
    time::Clock,
};

/// A page of results and how many there are in all.
pub struct Listed<T> {
    /// This page.
    pub items: Vec<T>,
    /// All of them.
    pub total: i64,
}

/// A contact's conversations, with who the contact is.
pub struct ContactConversations {
    /// The contact's channel identity (phone number, address…).
    pub external_id: String,
    /// Their name, when the channel told one.
    pub name: Option<String>,
    /// Their conversations.
    pub conversations: Listed<Conversation>,
}

/// The supervisors' lookups. Cheap to build.
pub struct Supervision<'a> {
    /// The database.
    pub store: &'a Store,
    /// The gateway's clock (audit times).
    pub clock: &'a Clock,
}

impl Supervision<'_> {
    /// Contacts matching `q`, audited as a search.
    pub async fn search_contacts(
        &self,
        actor: &Actor<'_>,
        q: &str,
        offset: i64,
        limit: i64,
    ) -> Result<Listed<Found>, StoreError> {
        let (items, total) = contacts::search(&mut self.store.reader(), q, offset, limit).await?;
        self.audit(actor, Action::SearchContacts, json!({"q": q}))
            .await?;
        Ok(Listed { items, total })
    }

    /// A contact's conversations, audited as a list; `None` for a contact that does not exist.
    pub async fn conversations_of(
        &self,
        actor: &Actor<'_>,
        contact_id: &ContactId,
        offset: i64,
        limit: i64,
    ) -> Result<Option<ContactConversations>, StoreError> {
        let mut reader = self.store.reader();
        let Some(external_id) = contacts::external_id(&mut reader, contact_id).await? else {
            return Ok(None);
        };
        let name = contacts::display_name(&mut reader, contact_id)
            .await?
            .filter(|n| !n.trim().is_empty());
        let (items, total) =
            conversations::page_for_contact(&mut reader, contact_id, offset, limit).await?;
        self.audit(
            actor,
            Action::ListConversations,
            json!({"contact_id": contact_id}),
        )
        .await?;
        Ok(Some(ContactConversations {
            external_id,
            name,
            conversations: Listed { items, total },
        }))
    }

    async fn audit(
        &self,
        actor: &Actor<'_>,
        action: Action,
        detail: serde_json::Value,
    ) -> Result<(), StoreError> {
        audit::record(
            &mut self.store.reader(),
            actor,
            action,
            None,
            detail,
            self.clock.now(),
        )
        .await
    }
}
