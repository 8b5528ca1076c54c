//! Whether a message is meant for the bot: commands, mentions and replies (the group rule of the
//! module documentation).
//!
//! Entity offsets and lengths count UTF-16 code units. They are converted here without
//! teloxide's `MessageEntityRef::parse`, which panics on offsets that do not fit the text: a
//! malformed entity must not take the webhook down.

use teloxide::types::{Message, MessageEntity, MessageEntityKind};

use super::replied;
use crate::BotIdentity;

/// A command at the start of a text message (`/start@bot payload`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Command {
    /// The command without `/` and `@bot`, in lowercase: `start`.
    pub name: String,
    /// What follows the command, trimmed (a `/start` deep-link payload); `None` when nothing does.
    pub args: Option<String>,
    /// Whether it is for this bot: it has no `@` suffix, or the suffix is the bot's username.
    pub for_us: bool,
}

/// The command a text message starts with: its first `bot_command` entity at offset 0.
pub(super) fn command(message: &Message, bot: &BotIdentity) -> Option<Command> {
    let text = message.text()?;
    let entity = message.entities()?.iter().find(|entity| {
        entity.offset == 0 && matches!(entity.kind, MessageEntityKind::BotCommand)
    })?;
    let token = entity_text(text, entity)?;
    let rest = text.get(token.len()..).unwrap_or_default();
    let command = token.strip_prefix('/')?;
    let (name, target) = match command.split_once('@') {
        Some((name, target)) => (name, Some(target)),
        None => (command, None),
    };
    let for_us = match target {
        None => true,
        Some(target) => is_bot_username(target, bot),
    };
    let args = rest.trim();
    Some(Command {
        name: name.to_lowercase(),
        args: (!args.is_empty()).then(|| args.to_owned()),
        for_us,
    })
}

/// Whether a group message counts: a command for the bot, a mention of the bot in the text or
/// caption, or a reply to one of the bot's messages.
pub(super) fn addressed_to_bot(
    message: &Message,
    command: Option<&Command>,
    bot: &BotIdentity,
) -> bool {
    command.is_some_and(|command| command.for_us)
        || mentions_bot(message, bot)
        || replies_to_bot(message, bot)
}

fn mentions_bot(message: &Message, bot: &BotIdentity) -> bool {
    let (text, entities) = match (message.text(), message.entities()) {
        (Some(text), Some(entities)) => (text, entities),
        _ => match (message.caption(), message.caption_entities()) {
            (Some(caption), Some(entities)) => (caption, entities),
            _ => return false,
        },
    };
    entities.iter().any(|entity| match &entity.kind {
        MessageEntityKind::Mention => entity_text(text, entity)
            .and_then(|mention| mention.strip_prefix('@').map(str::to_owned))
            .is_some_and(|username| is_bot_username(&username, bot)),
        // How a user without a username is mentioned; a bot always has one, but the entity can
        // still point at it.
        MessageEntityKind::TextMention { user } => bot.user_id == Some(user.id.0),
        _ => false,
    })
}

fn replies_to_bot(message: &Message, bot: &BotIdentity) -> bool {
    let Some(bot_id) = bot.user_id else {
        return false;
    };
    replied(message)
        .and_then(|replied| replied.from.as_ref())
        .is_some_and(|author| author.id.0 == bot_id)
}

/// Whether `name` (without `@`) is the bot's username. Telegram usernames are case-insensitive.
/// Never true while the username is unknown.
fn is_bot_username(name: &str, bot: &BotIdentity) -> bool {
    bot.username
        .as_deref()
        .is_some_and(|username| !username.is_empty() && username.eq_ignore_ascii_case(name))
}

/// The part of `text` an entity covers; `None` when its UTF-16 range does not fit the text or
/// splits a character.
fn entity_text(text: &str, entity: &MessageEntity) -> Option<String> {
    let units: Vec<u16> = text.encode_utf16().collect();
    let end = entity.offset.checked_add(entity.length)?;
    String::from_utf16(units.get(entity.offset..end)?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entity(offset: usize, length: usize) -> MessageEntity {
        MessageEntity::new(MessageEntityKind::Mention, offset, length)
    }

    #[test]
    fn entity_offsets_count_utf16_units() {
        // The emoji takes two UTF-16 units (and four bytes).
        let text = "\u{1F44B} @switchboard_test_bot hi";
        assert_eq!(
            entity_text(text, &entity(3, 21)).as_deref(),
            Some("@switchboard_test_bot")
        );
    }

    #[test]
    fn a_malformed_entity_covers_nothing() {
        let text = "\u{1F44B} hi";
        // Past the end of the text.
        assert_eq!(entity_text(text, &entity(3, 10)), None);
        assert_eq!(entity_text(text, &entity(usize::MAX, 2)), None);
        // Through the middle of the emoji's surrogate pair.
        assert_eq!(entity_text(text, &entity(1, 2)), None);
    }
}
