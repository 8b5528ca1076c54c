//! The pipeline as channel adapters use it: batches of normalized events, provider retries,
//! reactions, edits and delivery statuses.

use serde_json::Map;
use switchboard::{
    pipeline::Outcome,
    store::{Db, conversations, messages, query},
};
use switchboard_channel::{
    ContactRef, Content, ConversationRef, DeliveryStatus, InboundEdit, InboundEvent,
    InboundMessage, ProviderError, Reaction, StatusUpdate,
};

use crate::{
    both_backends,
    helpers::{Backend, TestApp},
};

both_backends!(
    a_batch_is_stored_in_order_and_retries_are_dropped,
    reactions_and_edits_are_recorded_without_an_answer,
    delivery_statuses_only_move_forward,
);

fn message(id: &str, from: &str, text: &str) -> InboundEvent {
    InboundEvent::Message(InboundMessage {
        provider_message_id: Some(id.into()),
        sender_key: None,
        account: "15550001111".into(),
        from: ContactRef {
            external_id: from.into(),
            display_name: Some("Sheena Nelson".into()),
            username: None,
        },
        conversation: ConversationRef::Current,
        sent_at: None,
        reply_to: None,
        subject: None,
        content: Content::Text { body: text.into() },
        intent: None,
        metadata: Map::new(),
        files: Vec::new(),
    })
}

fn stored(outcome: &Outcome) -> &messages::Message {
    match outcome {
        Outcome::Stored { message, .. } => message,
        other => panic!("expected a stored message, got {other:?}"),
    }
}

async fn a_batch_is_stored_in_order_and_retries_are_dropped(backend: Backend) {
    let app = TestApp::spawn_with(&backend, |c| c.routing.default_agent = "echo".into()).await;
    let batch = vec![
        message("wamid.1", "16505551234", "first"),
        message("wamid.2", "16505551234", "second"),
        message("wamid.3", "16505559999", "someone else"),
    ];
    let outcomes = app
        .pipeline
        .ingest(switchboard_whatsapp::CHANNEL, batch.clone())
        .await
        .unwrap();
    let (a, b, c) = (
        stored(&outcomes[0]),
        stored(&outcomes[1]),
        stored(&outcomes[2]),
    );
    assert_eq!(
        a.conversation_id, b.conversation_id,
        "one ongoing conversation per person"
    );
    assert_ne!(a.conversation_id, c.conversation_id);
    assert_eq!((a.seq, b.seq), (1, 2));

    // The provider retries the whole delivery: nothing new is stored or answered.
    let retried = app
        .pipeline
        .ingest(switchboard_whatsapp::CHANNEL, batch)
        .await
        .unwrap();
    assert!(
        retried
            .iter()
            .all(|o| matches!(o, Outcome::Duplicate { .. })),
        "{retried:?}"
    );
    app.all_answered().await;
    assert_eq!(
        app.count("messages").await,
        6,
        "three messages, three answers"
    );
    assert_eq!(app.count("contacts").await, 2);

    // The next message of the same person continues the conversation.
    let later = app
        .pipeline
        .ingest(
            switchboard_whatsapp::CHANNEL,
            vec![message("wamid.4", "16505551234", "third")],
        )
        .await
        .unwrap();
    assert_eq!(stored(&later[0]).conversation_id, a.conversation_id);
    app.all_answered().await;
    let history = messages::page(&mut app.store.reader(), &a.conversation_id, None, 50)
        .await
        .unwrap();
    let lines: Vec<(&str, &str)> = history
        .iter()
        .map(|m| (m.role.as_str(), m.content.as_str()))
        .collect();
    assert_eq!(
        lines,
        [
            ("user", "first"),
            ("user", "second"),
            ("ai", "first"),
            ("ai", "second"),
            ("user", "third"),
            ("ai", "third")
        ]
    );
    app.all_delivered().await;
    let history = messages::page(&mut app.store.reader(), &a.conversation_id, None, 50)
        .await
        .unwrap();
    assert!(
        history
            .iter()
            .filter(|m| m.role.as_str() == "ai")
            .all(|m| m.status == DeliveryStatus::Failed
                && m.error
                    .as_deref()
                    .is_some_and(|e| e.contains("not configured"))),
        "replies on a channel this gateway does not run fail with the reason: {history:?}"
    );
    let conversation = conversations::get(&mut app.store.reader(), &a.conversation_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(conversation.title.as_deref(), Some("first"));
    assert_eq!(conversation.account, "15550001111");
}

async fn reactions_and_edits_are_recorded_without_an_answer(backend: Backend) {
    let app = TestApp::spawn_with(&backend, |c| c.routing.default_agent = "echo".into()).await;
    app.pipeline
        .ingest(
            switchboard_telegram::CHANNEL,
            vec![message("tg.1", "42", "helo")],
        )
        .await
        .unwrap();
    app.all_answered().await;

    let reaction = InboundEvent::Message(InboundMessage {
        subject: None,
        content: Content::Reaction(Reaction {
            target_provider_message_id: "tg.1".into(),
            emoji: Some("👍".into()),
        }),
        ..match message("tg.2", "42", "") {
            InboundEvent::Message(m) => m,
            _ => unreachable!(),
        }
    });
    let edit = InboundEvent::Edit(InboundEdit {
        provider_message_id: "tg.1".into(),
        from: ContactRef {
            external_id: "42".into(),
            display_name: None,
            username: None,
        },
        content: Content::Text {
            body: "hello".into(),
        },
        edited_at: None,
    });
    let outcomes = app
        .pipeline
        .ingest(switchboard_telegram::CHANNEL, vec![reaction, edit])
        .await
        .unwrap();
    assert!(
        matches!(
            outcomes[0],
            Outcome::Stored {
                awaits_answer: false,
                ..
            }
        ),
        "reactions are not answered"
    );
    let reaction = stored(&outcomes[0]);
    assert_eq!(reaction.kind, "reaction");
    assert_eq!(reaction.content, "👍");
    assert_eq!(
        reaction.metadata.to_map()["reaction"]["target_provider_message_id"],
        "tg.1"
    );
    let Outcome::Edited { message: edited } = &outcomes[1] else {
        panic!("{outcomes:?}")
    };
    assert_eq!(edited.content, "hello");
    assert_eq!(edited.metadata.to_map()["edits"][0]["previous"], "helo");

    // An edit of an unknown message changes nothing.
    let unknown = InboundEvent::Edit(InboundEdit {
        provider_message_id: "tg.404".into(),
        from: ContactRef {
            external_id: "42".into(),
            display_name: None,
            username: None,
        },
        content: Content::Text { body: "x".into() },
        edited_at: None,
    });
    let outcomes = app
        .pipeline
        .ingest(switchboard_telegram::CHANNEL, vec![unknown])
        .await
        .unwrap();
    assert!(matches!(outcomes[0], Outcome::Ignored { .. }));
    app.all_answered().await;
    assert_eq!(
        app.count("messages").await,
        3,
        "message, its answer, the reaction"
    );
}

async fn delivery_statuses_only_move_forward(backend: Backend) {
    let app = TestApp::spawn(&backend).await;
    // An outbound message the provider accepted under the id "wamid.out".
    app.pipeline
        .ingest(
            switchboard_whatsapp::CHANNEL,
            vec![message("wamid.in", "16505551234", "hi")],
        )
        .await
        .unwrap();
    app.all_answered().await;
    app.all_delivered().await;
    let (reply_id,): (String,) = app
        .store
        .reader()
        .fetch_one(query("SELECT id FROM messages WHERE role = 'ai'"))
        .await
        .unwrap();
    let mut tx = app.store.begin().await.unwrap();
    messages::record_part(
        &mut tx,
        switchboard_whatsapp::CHANNEL,
        &reply_id.as_str().into(),
        0,
        "wamid.out",
    )
    .await
    .unwrap();
    tx.execute(query(
        "UPDATE messages SET status = 'sent', error = NULL WHERE role = 'ai'",
    ))
    .await
    .unwrap();
    tx.commit().await.unwrap();
    let status = |status: DeliveryStatus| {
        InboundEvent::Status(StatusUpdate {
            provider_message_id: "wamid.out".into(),
            status,
            at: None,
            error: (status == DeliveryStatus::Failed).then(|| ProviderError {
                code: "131047".into(),
                title: "Re-engagement message".into(),
                detail: None,
            }),
        })
    };
    let current = || async {
        messages::find_by_provider_id(
            &mut app.store.reader(),
            switchboard_whatsapp::CHANNEL,
            "wamid.out",
        )
        .await
        .unwrap()
        .unwrap()
        .status
    };
    let applied = |outcomes: Vec<Outcome>| matches!(outcomes[0], Outcome::StatusUpdated { .. });

    assert!(applied(
        app.pipeline
            .ingest(
                switchboard_whatsapp::CHANNEL,
                vec![status(DeliveryStatus::Delivered)]
            )
            .await
            .unwrap()
    ));
    assert_eq!(current().await, DeliveryStatus::Delivered);
    assert!(applied(
        app.pipeline
            .ingest(
                switchboard_whatsapp::CHANNEL,
                vec![status(DeliveryStatus::Read)]
            )
            .await
            .unwrap()
    ));
    // Late and repeated statuses do not move it back.
    for late in [
        DeliveryStatus::Delivered,
        DeliveryStatus::Sent,
        DeliveryStatus::Read,
        DeliveryStatus::Failed,
    ] {
        assert!(!applied(
            app.pipeline
                .ingest(switchboard_whatsapp::CHANNEL, vec![status(late)])
                .await
                .unwrap()
        ));
        assert_eq!(current().await, DeliveryStatus::Read);
    }
    // A failure after delivery is recorded with its reason.
    app.store
        .execute(query(
            "UPDATE messages SET status = 'delivered' WHERE provider_message_id = 'wamid.out'",
        ))
        .await
        .unwrap();
    assert!(applied(
        app.pipeline
            .ingest(
                switchboard_whatsapp::CHANNEL,
                vec![status(DeliveryStatus::Failed)]
            )
            .await
            .unwrap()
    ));
    let failed = messages::find_by_provider_id(
        &mut app.store.reader(),
        switchboard_whatsapp::CHANNEL,
        "wamid.out",
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(failed.status, DeliveryStatus::Failed);
    assert_eq!(
        failed.error.as_deref(),
        Some("131047 Re-engagement message")
    );
    // Statuses of messages we never sent are ignored.
    let stray = InboundEvent::Status(StatusUpdate {
        provider_message_id: "wamid.unknown".into(),
        status: DeliveryStatus::Read,
        at: None,
        error: None,
    });
    assert!(!applied(
        app.pipeline
            .ingest(switchboard_whatsapp::CHANNEL, vec![stray])
            .await
            .unwrap()
    ));
}
