//! What a Telegram message says, as normalized [`Content`].
//!
//! Files stay on Telegram's servers: an attachment's `source` is the `file_id`, which the outbound
//! half turns into a download (`getFile`) when the gateway wants the bytes. Content the gateway
//! cannot represent (a poll, a dice roll…) becomes [`Content::Unsupported`] so that nothing a user
//! sent is dropped silently; service messages (someone joined, a message was pinned…) are not
//! written by anyone and yield no event at all.

use serde_json::{Map, Value, json};
use switchboard_channel::{Attachment, Content, Location, MediaKind, SharedContact};
use teloxide::types::{
    ChatMigration, FileMeta, MediaKind as TelegramMedia, Message, MessageKind, PhotoSize,
};

use super::{non_empty, person_name};

/// The content of a message, recording its Telegram type (`telegram_type`) and type-specific
/// facts (a sticker's emoji) in `metadata`. Fails with the reason to ignore it for a service
/// message, named as the Bot API names its field.
pub(super) fn content(
    message: &Message,
    metadata: &mut Map<String, Value>,
) -> Result<Content, &'static str> {
    let user_content = match &message.kind {
        MessageKind::Common(common) => return media(&common.media_kind, metadata),
        // Sent by a user, but nothing the gateway can show or answer.
        MessageKind::Dice(_) => "dice",
        MessageKind::WebAppData(_) => "web_app_data",
        MessageKind::UsersShared(_) => "users_shared",
        MessageKind::ChatShared(_) => "chat_shared",
        MessageKind::PassportData(_) => "passport_data",
        MessageKind::Invoice(_) => "invoice",
        MessageKind::Giveaway(_) => "giveaway",
        // What teloxide makes of a message whose type it does not know. If a user sent it, a
        // person should see that something arrived.
        MessageKind::Empty {} => "unknown",
        // Service messages: nobody wrote them.
        MessageKind::NewChatMembers(_) => return Err("service message ignored: new_chat_members"),
        MessageKind::LeftChatMember(_) => return Err("service message ignored: left_chat_member"),
        MessageKind::NewChatTitle(_) => return Err("service message ignored: new_chat_title"),
        MessageKind::NewChatPhoto(_) => return Err("service message ignored: new_chat_photo"),
        MessageKind::DeleteChatPhoto(_) => {
            return Err("service message ignored: delete_chat_photo");
        }
        MessageKind::GroupChatCreated(_) => {
            return Err("service message ignored: group_chat_created");
        }
        MessageKind::SupergroupChatCreated(_) => {
            return Err("service message ignored: supergroup_chat_created");
        }
        MessageKind::ChannelChatCreated(_) => {
            return Err("service message ignored: channel_chat_created");
        }
        MessageKind::MessageAutoDeleteTimerChanged(_) => {
            return Err("service message ignored: message_auto_delete_timer_changed");
        }
        MessageKind::Pinned(_) => return Err("service message ignored: pinned_message"),
        MessageKind::SuccessfulPayment(_) => {
            return Err("service message ignored: successful_payment");
        }
        MessageKind::RefundedPayment(_) => return Err("service message ignored: refunded_payment"),
        MessageKind::ConnectedWebsite(_) => {
            return Err("service message ignored: connected_website");
        }
        MessageKind::WriteAccessAllowed(_) => {
            return Err("service message ignored: write_access_allowed");
        }
        MessageKind::ProximityAlertTriggered(_) => {
            return Err("service message ignored: proximity_alert_triggered");
        }
        MessageKind::ChatBoostAdded(_) => return Err("service message ignored: boost_added"),
        MessageKind::ChatBackground(_) => {
            return Err("service message ignored: chat_background_set");
        }
        MessageKind::ChecklistTasksDone(_) => {
            return Err("service message ignored: checklist_tasks_done");
        }
        MessageKind::ChecklistTasksAdded(_) => {
            return Err("service message ignored: checklist_tasks_added");
        }
        MessageKind::DirectMessagePriceChanged(_) => {
            return Err("service message ignored: direct_message_price_changed");
        }
        MessageKind::ForumTopicCreated(_) => {
            return Err("service message ignored: forum_topic_created");
        }
        MessageKind::ForumTopicEdited(_) => {
            return Err("service message ignored: forum_topic_edited");
        }
        MessageKind::ForumTopicClosed(_) => {
            return Err("service message ignored: forum_topic_closed");
        }
        MessageKind::ForumTopicReopened(_) => {
            return Err("service message ignored: forum_topic_reopened");
        }
        MessageKind::GeneralForumTopicHidden(_) => {
            return Err("service message ignored: general_forum_topic_hidden");
        }
        MessageKind::GeneralForumTopicUnhidden(_) => {
            return Err("service message ignored: general_forum_topic_unhidden");
        }
        MessageKind::GiveawayCompleted(_) => {
            return Err("service message ignored: giveaway_completed");
        }
        MessageKind::GiveawayCreated(_) => {
            return Err("service message ignored: giveaway_created");
        }
        MessageKind::GiveawayWinners(_) => {
            return Err("service message ignored: giveaway_winners");
        }
        MessageKind::PaidMessagePriceChanged(_) => {
            return Err("service message ignored: paid_message_price_changed");
        }
        MessageKind::GiftInfo(_) => return Err("service message ignored: gift"),
        MessageKind::UniqueGiftInfo(_) => return Err("service message ignored: unique_gift"),
        MessageKind::VideoChatScheduled(_) => {
            return Err("service message ignored: video_chat_scheduled");
        }
        MessageKind::VideoChatStarted(_) => {
            return Err("service message ignored: video_chat_started");
        }
        MessageKind::VideoChatEnded(_) => {
            return Err("service message ignored: video_chat_ended");
        }
        MessageKind::VideoChatParticipantsInvited(_) => {
            return Err("service message ignored: video_chat_participants_invited");
        }
    };
    Ok(unsupported(user_content, metadata))
}

/// Content other than a service message.
fn media(
    media: &TelegramMedia,
    metadata: &mut Map<String, Value>,
) -> Result<Content, &'static str> {
    let content = match media {
        TelegramMedia::Text(text) => {
            set_type(metadata, "text");
            Content::Text {
                body: text.text.clone(),
            }
        }
        TelegramMedia::Photo(photo) => {
            set_type(metadata, "photo");
            let Some(size) = largest(&photo.photo) else {
                return Ok(Content::Unsupported {
                    description: "telegram photo without sizes".into(),
                });
            };
            // Telegram re-encodes every photo as JPEG; only documents keep the original format.
            let image = attachment(
                MediaKind::Image,
                &size.file,
                Some("image/jpeg".into()),
                None,
            );
            single(image, photo.caption.as_deref())
        }
        TelegramMedia::Voice(voice) => {
            set_type(metadata, "voice");
            // Voice notes are OGG/Opus; older clients leave the MIME type out.
            let mime = mime(voice.voice.mime_type.as_ref()).or_else(|| Some("audio/ogg".into()));
            let note = attachment(MediaKind::Voice, &voice.voice.file, mime, None);
            single(note, voice.caption.as_deref())
        }
        TelegramMedia::Audio(audio) => {
            set_type(metadata, "audio");
            let file = attachment(
                MediaKind::Audio,
                &audio.audio.file,
                mime(audio.audio.mime_type.as_ref()),
                audio.audio.file_name.as_deref(),
            );
            single(file, audio.caption.as_deref())
        }
        TelegramMedia::Video(video) => {
            set_type(metadata, "video");
            let file = attachment(
                MediaKind::Video,
                &video.video.file,
                mime(video.video.mime_type.as_ref()),
                video.video.file_name.as_deref(),
            );
            single(file, video.caption.as_deref())
        }
        TelegramMedia::VideoNote(note) => {
            set_type(metadata, "video_note");
            // The round videos of the app: always MP4, and the API gives no MIME type for them.
            let file = attachment(
                MediaKind::Video,
                &note.video_note.file,
                Some("video/mp4".into()),
                None,
            );
            single(file, None)
        }
        TelegramMedia::Animation(animation) => {
            set_type(metadata, "animation");
            // A "GIF" on Telegram is a silent MP4.
            let mime =
                mime(animation.animation.mime_type.as_ref()).or_else(|| Some("video/mp4".into()));
            let file = attachment(
                MediaKind::Video,
                &animation.animation.file,
                mime,
                animation.animation.file_name.as_deref(),
            );
            single(file, animation.caption.as_deref())
        }
        TelegramMedia::Document(document) => {
            set_type(metadata, "document");
            let file = attachment(
                MediaKind::Document,
                &document.document.file,
                mime(document.document.mime_type.as_ref()),
                document.document.file_name.as_deref(),
            );
            single(file, document.caption.as_deref())
        }
        TelegramMedia::Sticker(sticker) => {
            set_type(metadata, "sticker");
            let sticker = &sticker.sticker;
            let flags = &sticker.flags;
            // Not `StickerFormatFlags::format()`: it panics when both flags are set.
            let mime = if flags.is_video {
                "video/webm"
            } else if flags.is_animated {
                "application/x-tgsticker"
            } else {
                "image/webp"
            };
            metadata.insert(
                "sticker".into(),
                json!({
                    "emoji": sticker.emoji,
                    "is_animated": flags.is_animated,
                    "is_video": flags.is_video,
                }),
            );
            single(
                attachment(MediaKind::Sticker, &sticker.file, Some(mime.into()), None),
                None,
            )
        }
        TelegramMedia::Location(location) => {
            set_type(metadata, "location");
            Content::Location(Location {
                latitude: location.location.latitude,
                longitude: location.location.longitude,
                name: None,
                address: None,
            })
        }
        TelegramMedia::Venue(venue) => {
            set_type(metadata, "venue");
            let venue = &venue.venue;
            Content::Location(Location {
                latitude: venue.location.latitude,
                longitude: venue.location.longitude,
                name: non_empty(Some(&venue.title)),
                address: non_empty(Some(&venue.address)),
            })
        }
        TelegramMedia::Contact(contact) => {
            set_type(metadata, "contact");
            let contact = &contact.contact;
            let phone = non_empty(Some(&contact.phone_number));
            // The app requires a first name; should it be blank, the number is the next best label.
            let name = person_name(Some(&contact.first_name), contact.last_name.as_deref())
                .or_else(|| phone.clone())
                .unwrap_or_default();
            Content::Contacts {
                contacts: vec![SharedContact {
                    name,
                    phones: phone.into_iter().collect(),
                    emails: Vec::new(),
                }],
            }
        }
        TelegramMedia::Poll(_) => unsupported("poll", metadata),
        TelegramMedia::Game(_) => unsupported("game", metadata),
        TelegramMedia::Story(_) => unsupported("story", metadata),
        TelegramMedia::PaidMedia(_) => unsupported("paid_media", metadata),
        TelegramMedia::Checklist(_) => unsupported("checklist", metadata),
        // A group became a supergroup: Telegram says so with a service message in both chats.
        TelegramMedia::Migration(ChatMigration::To { .. }) => {
            return Err("service message ignored: migrate_to_chat_id");
        }
        TelegramMedia::Migration(ChatMigration::From { .. }) => {
            return Err("service message ignored: migrate_from_chat_id");
        }
    };
    Ok(content)
}

/// The best rendition of a photo, which Telegram sends in several sizes: the largest file, or,
/// when a size is unknown, the most pixels.
fn largest(sizes: &[PhotoSize]) -> Option<&PhotoSize> {
    let pixels = |size: &PhotoSize| u64::from(size.width) * u64::from(size.height);
    if sizes.iter().all(|size| file_size(&size.file).is_some()) {
        sizes
            .iter()
            .max_by_key(|size| (file_size(&size.file), pixels(size)))
    } else {
        sizes.iter().max_by_key(|size| pixels(size))
    }
}

fn attachment(
    kind: MediaKind,
    file: &FileMeta,
    mime_type: Option<String>,
    filename: Option<&str>,
) -> Attachment {
    Attachment {
        kind,
        source: file.id.0.clone(),
        mime_type,
        filename: non_empty(filename),
        size: file_size(file),
        sha256: None,
        media_id: None,
    }
}

fn single(attachment: Attachment, caption: Option<&str>) -> Content {
    Content::Media {
        attachments: vec![attachment],
        caption: non_empty(caption),
    }
}

/// The file size, when Telegram gave one: teloxide stands in `u32::MAX` for a missing size.
fn file_size(file: &FileMeta) -> Option<u64> {
    (file.size != u32::MAX).then_some(u64::from(file.size))
}

fn mime(mime: Option<&impl ToString>) -> Option<String> {
    mime.map(ToString::to_string)
}

fn set_type(metadata: &mut Map<String, Value>, telegram_type: &'static str) {
    metadata.insert("telegram_type".into(), json!(telegram_type));
}

fn unsupported(telegram_type: &'static str, metadata: &mut Map<String, Value>) -> Content {
    set_type(metadata, telegram_type);
    Content::Unsupported {
        description: format!("telegram {telegram_type}"),
    }
}
