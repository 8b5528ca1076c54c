//! Every recorded mail and provider request in `webhooks/email/` parses into the expected result.
//!
//! The fixtures are shared with the gateway's tests and with `switchboard replay`, so a change to
//! one of them shows up here first. Each fixture has a test below and an entry in [`FIXTURES`];
//! [`every_fixture_has_a_test`] fails when a file is added without one.

use std::{collections::BTreeSet, fs, path::Path};

use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use switchboard_channel::{Attachment, ContactRef, Content, ConversationRef, MediaKind};
use switchboard_email::providers::{mailgun, postmark, raw, sendgrid};
use switchboard_email::{Address, InboundEmail, ReplyAddress, parse_mime};

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../webhooks/email");

/// Every fixture file and the test that checks it.
const FIXTURES: &[(&str, fn())] = &[
    ("gmail_reply.eml", gmail_reply),
    ("outlook_reply.eml", outlook_reply),
    ("apple_mail_reply.eml", apple_mail_reply),
    ("html_only.eml", html_only),
    ("latin1.eml", latin1),
    ("attachment.eml", attachment),
    ("new_mail.eml", new_mail),
    ("auto_reply.eml", auto_reply),
    ("bounce.eml", bounce),
    ("mailgun.json", mailgun_request),
    ("postmark.json", postmark_request),
    ("sendgrid.json", sendgrid_request),
];

/// The gateway's inbound address, which the gateway also uses as the account.
const ACCOUNT: &str = "support@mail.example.com";

fn ours() -> ReplyAddress {
    ReplyAddress {
        local: "support".into(),
        domain: "mail.example.com".into(),
    }
}

fn read(name: &str) -> Vec<u8> {
    let path = Path::new(DIR).join(name);
    fs::read(&path).unwrap_or_else(|err| panic!("{}: {err}", path.display()))
}

fn eml(name: &str) -> InboundEmail {
    parse_mime(&read(name), &ours()).unwrap_or_else(|err| panic!("{name}: {err}"))
}

/// The form fields of a `{"fields": {…}}` provider fixture, as the gateway decodes them.
fn form(name: &str) -> Vec<(String, Vec<u8>)> {
    let value: Value = serde_json::from_slice(&read(name)).unwrap();
    value["fields"]
        .as_object()
        .unwrap_or_else(|| panic!("{name}: no fields object"))
        .iter()
        .map(|(name, value)| {
            let value = value
                .as_str()
                .unwrap_or_else(|| panic!("field {name} is not a string"));
            (name.clone(), value.as_bytes().to_vec())
        })
        .collect()
}

/// Every mail of the fixtures, however it arrives.
fn every_mail() -> Vec<(&'static str, InboundEmail)> {
    FIXTURES
        .iter()
        .map(|(name, _)| {
            let email = match *name {
                "mailgun.json" => mailgun::parse(&form(name), &ours()).unwrap(),
                "sendgrid.json" => sendgrid::parse(&form(name), &ours()).unwrap(),
                "postmark.json" => postmark::parse(&read(name), &ours()).unwrap(),
                _ => eml(name),
            };
            (*name, email)
        })
        .collect()
}

fn at(rfc3339: &str) -> Option<DateTime<Utc>> {
    Some(DateTime::parse_from_rfc3339(rfc3339).unwrap().to_utc())
}

fn address(name: Option<&str>, address: &str) -> Address {
    Address {
        name: name.map(Into::into),
        address: address.into(),
    }
}

fn ours_with(token: &str) -> String {
    format!("support+{token}@mail.example.com")
}

/// The same mail with only its HTML part: what the gateway reads from HTML-only clients.
fn html_variant(email: &InboundEmail) -> InboundEmail {
    let html = email.html.as_deref().expect("the mail has an HTML part");
    let raw = format!(
        "From: {}\r\nMessage-ID: <html-variant@example.org>\r\nContent-Type: text/html; charset=utf-8\r\n\r\n{html}",
        email.from.address
    );
    parse_mime(raw.as_bytes(), &ours()).unwrap()
}

#[test]
fn every_fixture_has_a_test() {
    let on_disk: BTreeSet<String> = fs::read_dir(DIR)
        .unwrap_or_else(|err| panic!("{DIR}: {err}"))
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".eml") || name.ends_with(".json"))
        .collect();
    let checked: BTreeSet<String> = FIXTURES.iter().map(|(name, _)| name.to_string()).collect();
    let untested: Vec<_> = on_disk.difference(&checked).collect();
    assert!(
        untested.is_empty(),
        "fixtures without a test in tests/fixtures.rs: {untested:?}"
    );
    let missing: Vec<_> = checked.difference(&on_disk).collect();
    assert!(
        missing.is_empty(),
        "tested fixtures not on disk: {missing:?}"
    );
    // Run them all from here too, so this test alone proves every file is checked.
    for (_, check) in FIXTURES {
        check();
    }
}

/// The pipeline stores a message once per Message-ID, so fixtures replayed one after another must
/// not share one.
#[test]
fn message_ids_are_unique() {
    let mails = every_mail();
    let ids: BTreeSet<&str> = mails
        .iter()
        .map(|(_, email)| email.message_id.as_str())
        .collect();
    assert_eq!(ids.len(), mails.len(), "{ids:?}");
    for (name, email) in &mails {
        assert!(
            !email.message_id.starts_with("generated-"),
            "{name} has no Message-ID"
        );
    }
}

/// Only the automated fixtures are automated, and only replies to the gateway carry a token.
#[test]
fn automated_and_threaded_fixtures() {
    for (name, email) in every_mail() {
        let automated = matches!(name, "auto_reply.eml" | "bounce.eml");
        assert_eq!(email.automated.is_some(), automated, "{name}");
        let new = matches!(name, "new_mail.eml" | "attachment.eml" | "bounce.eml");
        assert_eq!(email.reply_token.is_none(), new, "{name}");
        assert_eq!(
            email.in_reply_to.is_empty(),
            new && name != "bounce.eml",
            "{name}"
        );
    }
}

/// Mailgun and SendGrid post the raw mail with CRLF line endings, as received over SMTP; a
/// fixture "tidied" to LF would stop exercising that path. The `.eml` files keep LF, as stored
/// by MTAs.
#[test]
fn fixtures_keep_the_wire_shape() {
    let mailgun: Value = serde_json::from_slice(&read("mailgun.json")).unwrap();
    let mime = mailgun["fields"]["body-mime"].as_str().unwrap();
    assert!(mime.contains("\r\nMessage-ID: "));
    // The signature fields are added fresh by whoever replays it.
    for field in ["timestamp", "token", "signature"] {
        assert!(mailgun["fields"].get(field).is_none(), "{field}");
    }
    let sendgrid: Value = serde_json::from_slice(&read("sendgrid.json")).unwrap();
    assert!(
        sendgrid["fields"]["email"]
            .as_str()
            .unwrap()
            .contains("\r\n")
    );
    let postmark: Value = serde_json::from_slice(&read("postmark.json")).unwrap();
    assert!(postmark["Attachments"][0]["Content"].is_string());
    assert!(
        !String::from_utf8(read("gmail_reply.eml"))
            .unwrap()
            .contains('\r')
    );
}

#[test]
fn gmail_reply() {
    let token = "3f2a9c5e8b7d4f1a9c0e2b4d6f8a1c3e";
    let email = eml("gmail_reply.eml");
    assert_eq!(
        email.message_id,
        "CAKx7Fb2Tq4wNc6Yr8Pz1Lm3Vb5Xd7Hf9Js1Kg3Wa5Qe7Rt9Uy@mail.gmail.com"
    );
    assert_eq!(email.from, address(Some("Kim Lee"), "kim.lee@gmail.com"));
    assert_eq!(
        email.to,
        [address(Some("Switchboard Support"), &ours_with(token))]
    );
    assert!(email.cc.is_empty());
    assert_eq!(email.subject, "Re: Your order #4412");
    assert_eq!(
        email.in_reply_to,
        ["sb.0193a1f4-2e6b-7a1c-9d3e-4f5a6b7c8d9e@mail.example.com"]
    );
    // Folded over four lines in the header, read in order.
    assert_eq!(
        email.references,
        [
            "CAKx7Fb0pQ3mVd9sN2rL4hT6wJ8yZ1cE5gU7iO9aB3dF6hK8mN@mail.gmail.com",
            "sb.0193a1b2-7c3d-7e4f-8a5b-6c7d8e9f0a1b@mail.example.com",
            "CAKx7Fb1Rm2eLq8Wz3Xc5Vb7Nn9Mk1Jh3Gf5Dd7Ss9Aa2Qw4Er@mail.gmail.com",
            "sb.0193a1f4-2e6b-7a1c-9d3e-4f5a6b7c8d9e@mail.example.com",
        ]
    );
    assert_eq!(email.date, at("2025-11-11T10:14:05+01:00"));
    assert_eq!(email.reply_token.as_deref(), Some(token));
    assert_eq!(email.automated, None);
    // The attribution line wraps over two lines; the quoted-printable apostrophe is decoded.
    assert_eq!(
        email.text,
        "Hi,\n\nThanks for the quick answer. Could you send the parcel to my office\naddress instead? It\u{2019}s Rue de la Loi 42, 1040 Brussels.\n\nKim"
    );
    assert!(email.original.starts_with(&email.text));
    assert!(email.original.contains(
        "On Tue, 11 Nov 2025 at 10:02, Switchboard Support <\nsupport@mail.example.com> wrote:"
    ));
    assert!(
        email
            .original
            .ends_with("> Best regards,\n> Switchboard Support\n>")
    );
    assert!(
        email
            .html
            .as_deref()
            .unwrap()
            .contains(r#"<div class="gmail_quote gmail_quote_container">"#)
    );
    assert!(email.attachments.is_empty());
    // From the HTML part alone, the gmail_quote div goes and the same words remain (unwrapped).
    assert_eq!(
        html_variant(&email).text,
        "Hi,\n\nThanks for the quick answer. Could you send the parcel to my office address instead? It\u{2019}s Rue de la Loi 42, 1040 Brussels.\n\nKim"
    );

    let message = email.into_message(ACCOUNT);
    assert_eq!(
        message.provider_message_id.as_deref(),
        Some("CAKx7Fb2Tq4wNc6Yr8Pz1Lm3Vb5Xd7Hf9Js1Kg3Wa5Qe7Rt9Uy@mail.gmail.com")
    );
    assert_eq!(message.account, ACCOUNT);
    assert_eq!(
        message.from,
        ContactRef {
            external_id: "kim.lee@gmail.com".into(),
            display_name: Some("Kim Lee".into()),
            username: None,
        }
    );
    assert_eq!(
        message.conversation,
        ConversationRef::Thread {
            token: Some(token.into()),
            references: vec![
                "sb.0193a1f4-2e6b-7a1c-9d3e-4f5a6b7c8d9e@mail.example.com".into(),
                "CAKx7Fb1Rm2eLq8Wz3Xc5Vb7Nn9Mk1Jh3Gf5Dd7Ss9Aa2Qw4Er@mail.gmail.com".into(),
                "sb.0193a1b2-7c3d-7e4f-8a5b-6c7d8e9f0a1b@mail.example.com".into(),
                "CAKx7Fb0pQ3mVd9sN2rL4hT6wJ8yZ1cE5gU7iO9aB3dF6hK8mN@mail.gmail.com".into(),
            ],
        }
    );
    assert_eq!(
        message.reply_to.as_deref(),
        Some("sb.0193a1f4-2e6b-7a1c-9d3e-4f5a6b7c8d9e@mail.example.com")
    );
    assert_eq!(message.subject.as_deref(), Some("Your order #4412"));
    assert_eq!(message.sent_at, at("2025-11-11T09:14:05Z"));
    assert!(
        matches!(&message.content, Content::Text { body } if body.starts_with("Hi,\n\nThanks"))
    );
    assert_eq!(message.intent, None);
    assert_eq!(message.metadata["subject"], "Re: Your order #4412");
    assert_eq!(message.metadata["to"], json!([ours_with(token)]));
    assert_eq!(message.metadata["cc"], json!([]));
    assert_eq!(message.metadata["stripped"], true);
    assert!(
        message.metadata["html"]
            .as_str()
            .unwrap()
            .contains("gmail_quote")
    );
    assert!(!message.metadata.contains_key("automated"));
}

#[test]
fn outlook_reply() {
    let token = "7c1e5a9b3d2f4e6a8b0c2d4e6f8a0b1c";
    let email = eml("outlook_reply.eml");
    assert_eq!(
        email.message_id,
        "AM9PR07MB7345C2D1E0F9A8B7C6D5E4F3A2B1C0D9E8F7A@AM9PR07MB7345.eurprd07.prod.outlook.com"
    );
    assert_eq!(
        email.from,
        address(Some("Ada Moreau"), "ada.moreau@outlook.com")
    );
    assert_eq!(email.subject, "Re: Repair appointment");
    assert_eq!(
        email.in_reply_to,
        ["sb.0193a0c8-5d1e-7f2a-b3c4-d5e6f7a8b9c0@mail.example.com"]
    );
    assert_eq!(email.references, email.in_reply_to);
    assert_eq!(email.date, at("2025-11-11T08:47:19Z"));
    assert_eq!(email.reply_token.as_deref(), Some(token));
    assert_eq!(email.automated, None);
    // The Outlook header block under the rule and "Get Outlook for iOS" are both gone.
    assert_eq!(
        email.text,
        "Yes, Thursday afternoon works for me. Please ring the bell at the side entrance.\n\nAda"
    );
    assert!(email.original.contains(
        "________________________________\nFrom: Switchboard Support <support@mail.example.com>\nSent: Monday, November 10, 2025 4:31:12 PM"
    ));
    assert!(
        email
            .original
            .ends_with("Best regards,\nSwitchboard Support")
    );
    // From the HTML part alone: everything from div#appendonsend on is the quote.
    let html = html_variant(&email);
    assert_eq!(html.text, email.text);
    assert!(
        html.original
            .contains("From: Switchboard Support <support@mail.example.com>")
    );
}

#[test]
fn apple_mail_reply() {
    let token = "b71e04d29a5c4e3f8d6a1b2c3d4e5f60";
    let email = eml("apple_mail_reply.eml");
    assert_eq!(
        email.message_id,
        "6F2C1A9E-3B4D-4E5F-8A7B-9C0D1E2F3A4B@icloud.com"
    );
    // An encoded-word display name.
    assert_eq!(
        email.from,
        address(Some("Tomás Ruiz"), "tomas.ruiz@icloud.com")
    );
    assert_eq!(email.subject, "Re: Replacement filter");
    assert_eq!(
        email.in_reply_to,
        ["sb.0193a1c5-8f2e-7b3a-a4c5-d6e7f8091a2b@mail.example.com"]
    );
    assert_eq!(email.date, at("2025-11-11T10:31:44+01:00"));
    assert_eq!(email.reply_token.as_deref(), Some(token));
    // Cut at the "-- " delimiter; the quoted attribution below goes with it.
    assert_eq!(
        email.text,
        "Hi,\n\nThe replacement filter fits perfectly, thank you!\n\nTomás"
    );
    assert!(
        email
            .original
            .contains("Tomás\n-- \nTomás Ruiz\nRuiz Carpintería · Calle Mayor 12")
    );
    assert!(email.original.contains(
        "> On 11 Nov 2025, at 10:02, Switchboard Support <support@mail.example.com> wrote:"
    ));
    // Apple Mail's HTML: the blockquote goes, and the "--" line ends the text.
    assert_eq!(html_variant(&email).text, email.text);
}

#[test]
fn html_only() {
    let token = "c4d5e6f7a8b9404c8d1e2f3a4b5c6d7e";
    let email = eml("html_only.eml");
    assert_eq!(
        email.message_id,
        "8a1f3c5e7b9d2f4a6c8e0b2d4f6a8c0e@webmail.fischer-bau.de"
    );
    assert_eq!(
        email.from,
        address(Some("Noah Fischer"), "noah.fischer@fischer-bau.de")
    );
    assert_eq!(email.subject, "Re: Invoice question");
    assert_eq!(email.reply_token.as_deref(), Some(token));
    // The blockquote removed before conversion; the signature and the attribution line left
    // over by the text rules.
    assert_eq!(
        email.text,
        "Hello,\n\nthe invoice number is INV-2025-0871. Can you check why it was charged twice?\n\nRegards,\nNoah Fischer"
    );
    // The original is the whole HTML as text, entities decoded.
    assert_eq!(
        email.original,
        "Hello,\n\nthe invoice number is INV-2025-0871. Can you check why it was charged twice?\n\nRegards,\nNoah Fischer\n\n--\nFischer Bau GmbH · Hauptstraße 5 · 70173 Stuttgart\n\nOn 10/11/2025 16:31, Switchboard Support wrote:\n\nHello Noah,\n\ncould you tell us the invoice number?\n\nBest regards,\nSwitchboard Support"
    );
    let html = email.html.as_deref().unwrap();
    assert!(html.starts_with("<html><head>"));
    assert!(html.contains(r#"<blockquote type="cite""#));
    let message = email.into_message(ACCOUNT);
    assert_eq!(message.metadata["stripped"], true);
    assert!(
        message.metadata["html"]
            .as_str()
            .unwrap()
            .contains("<blockquote")
    );
}

#[test]
fn latin1() {
    let email = eml("latin1.eml");
    assert_eq!(
        email.message_id,
        "5d1c2b3a-4e6f-4a8b-9c0d-e1f2a3b4c5d6@example.de"
    );
    // ISO-8859-1 encoded words in From and Subject.
    assert_eq!(
        email.from,
        address(Some("Jürgen Weiß"), "juergen.weiss@example.de")
    );
    assert_eq!(email.subject, "AW: Rückerstattung für Bestellung #4398");
    assert_eq!(email.date, at("2025-11-11T11:20:31+01:00"));
    assert_eq!(
        email.reply_token.as_deref(),
        Some("9e8d7c6b5a4f43e2b1c0d9e8f7a6b5c4")
    );
    // ISO-8859-1 quoted-printable, format=flowed unwrapped, cut at "Am … schrieb …:".
    assert_eq!(
        email.text,
        "Hallo,\n\nvielen Dank für die schnelle Rückmeldung. Die Rücksendung ist heute rausgegangen, die Sendungsnummer lautet 00340434161094042557.\n\nMit freundlichen Grüßen\nJürgen Weiß"
    );
    assert!(
        email.original.contains(
            "Am 11.11.2025 um 10:02 schrieb Switchboard Support:\n> Guten Tag Herr Weiß,"
        )
    );
    assert!(
        email
            .original
            .contains("Die Kosten der Rücksendung übernehmen wir.")
    );
    let message = email.into_message(ACCOUNT);
    // `AW:` is German for `Re:`.
    assert_eq!(
        message.subject.as_deref(),
        Some("Rückerstattung für Bestellung #4398")
    );
    assert_eq!(
        message.metadata["subject"],
        "AW: Rückerstattung für Bestellung #4398"
    );
}

#[test]
fn attachment() {
    let email = eml("attachment.eml");
    assert_eq!(
        email.message_id,
        "b8f2c1d4-3e5a-4f6b-9c7d-8e9f0a1b2c3d@example.com"
    );
    assert_eq!(
        email.from,
        address(Some("Priya Raman"), "priya.raman@example.com")
    );
    assert_eq!(email.to, [address(None, "support@mail.example.com")]);
    assert_eq!(email.subject, "Broken desk lamp");
    assert_eq!(email.date, at("2025-11-11T12:03:27+05:30"));
    assert_eq!(email.reply_token, None);
    assert!(email.in_reply_to.is_empty() && email.references.is_empty());
    assert_eq!(
        email.text,
        "Hello,\n\nthe desk lamp I received yesterday arrived broken: the base is cracked.\nI attached the invoice. Can you send a replacement?\n\nPriya"
    );
    assert_eq!(email.original, email.text);
    assert_eq!(email.html, None);
    let [pdf] = email.attachments.as_slice() else {
        panic!("expected one attachment, got {:?}", email.attachments);
    };
    assert_eq!(pdf.filename.as_deref(), Some("invoice-4471.pdf"));
    assert_eq!(pdf.mime_type, "application/pdf");
    assert_eq!(pdf.media_kind(), MediaKind::Document);
    assert_eq!(pdf.bytes.len(), 610);
    assert!(pdf.bytes.starts_with(b"%PDF-1.4\n") && pdf.bytes.ends_with(b"%%EOF\n"));
    assert_eq!(
        hex::encode(Sha256::digest(&pdf.bytes)),
        "c057a226cec9aa80be3921f42430573191129d355be01070495002095eecd7c9"
    );

    // The file travels inside the message; the gateway stores it and puts its copy in place
    // of the inline attachment.
    let message = email.clone().into_message(ACCOUNT);
    let [file] = message.files.as_slice() else {
        panic!("expected one file, got {:?}", message.files);
    };
    assert_eq!(file.filename.as_deref(), Some("invoice-4471.pdf"));
    assert_eq!(file.mime_type, "application/pdf");
    assert_eq!(file.bytes.len(), 610);
    let inline = Attachment {
        kind: MediaKind::Document,
        source: "inline:0".into(),
        mime_type: Some("application/pdf".into()),
        filename: Some("invoice-4471.pdf".into()),
        size: Some(610),
        sha256: None,
        media_id: None,
    };
    assert_eq!(Attachment::inline(0, file), inline);
    assert_eq!(
        message.content,
        Content::Media {
            attachments: vec![inline],
            caption: Some(
                "Hello,\n\nthe desk lamp I received yesterday arrived broken: the base is cracked.\nI attached the invoice. Can you send a replacement?\n\nPriya".into()
            ),
        }
    );
    assert_eq!(message.subject.as_deref(), Some("Broken desk lamp"));
    assert_eq!(message.metadata["stripped"], false);
}

#[test]
fn new_mail() {
    let email = eml("new_mail.eml");
    assert_eq!(
        email.message_id,
        "0e1d2c3b-4a59-4687-9a5b-4c3d2e1f0a9b@example.org"
    );
    assert_eq!(
        email.from,
        address(Some("Ravi Patel"), "ravi.patel@example.org")
    );
    assert_eq!(email.to, [address(None, "support@mail.example.com")]);
    assert_eq!(email.subject, "Opening hours");
    assert_eq!(email.date, at("2025-11-11T09:12:40Z"));
    assert_eq!(
        email.text,
        "Hello,\n\nWhat are your opening hours on Saturday?\n\nThanks,\nRavi"
    );
    assert_eq!(email.original, email.text);
    assert_eq!(email.automated, None);
    assert_eq!(email.reply_token, None);

    let message = email.into_message(ACCOUNT);
    assert_eq!(
        message.conversation,
        ConversationRef::Thread {
            token: None,
            references: vec![],
        }
    );
    assert_eq!(message.reply_to, None);
    assert_eq!(message.subject.as_deref(), Some("Opening hours"));
    assert_eq!(
        message.content,
        Content::Text {
            body: "Hello,\n\nWhat are your opening hours on Saturday?\n\nThanks,\nRavi".into()
        }
    );
    assert_eq!(message.metadata["stripped"], false);
    assert!(!message.metadata.contains_key("html"));
}

#[test]
fn auto_reply() {
    let email = eml("auto_reply.eml");
    assert_eq!(
        email.message_id,
        "9f4e2a1b7c3d4e5f8a6b0c1d2e3f4a5b@DB8PR04MB6601.eurprd04.prod.outlook.com"
    );
    assert_eq!(
        email.from,
        address(Some("Lena Schmidt"), "lena.schmidt@contoso.example")
    );
    assert_eq!(email.subject, "Out of Office: Re: Your order #4417");
    assert_eq!(
        email.automated.as_deref(),
        Some("auto-submitted: auto-replied")
    );
    // Still threaded, so the gateway can note it in the right conversation.
    assert_eq!(
        email.reply_token.as_deref(),
        Some("2b4d6f8a0c1e43a5b7c9d0e2f4a6b8c0")
    );
    assert_eq!(
        email.in_reply_to,
        ["sb.0193a1f0-1b2c-7d3e-8f4a-5b6c7d8e9f0a@mail.example.com"]
    );
    // A quoted-printable soft break joined.
    assert_eq!(
        email.text,
        "Thank you for your message. I am out of the office until Monday, 17 November, with no access to e-mail.\n\nFor urgent matters please contact purchasing@contoso.example.\n\nLena Schmidt"
    );
    let message = email.into_message(ACCOUNT);
    assert_eq!(
        message.metadata["automated"],
        "auto-submitted: auto-replied"
    );
}

#[test]
fn bounce() {
    let email = eml("bounce.eml");
    assert_eq!(
        email.message_id,
        "6731f2a4.050a0220.1b2c3d.9e8fSMTPIN_ADDED_BROKEN@mx.google.com"
    );
    assert_eq!(
        email.from,
        address(
            Some("Mail Delivery Subsystem"),
            "mailer-daemon@googlemail.com"
        )
    );
    assert_eq!(email.subject, "Delivery Status Notification (Failure)");
    assert_eq!(email.automated.as_deref(), Some("bounce"));
    // It names the gateway's message that bounced.
    assert_eq!(
        email.in_reply_to,
        ["sb.0193a1e2-4d5e-7f6a-8b9c-0d1e2f3a4b5c@mail.example.com"]
    );
    assert_eq!(email.date, at("2025-11-11T02:41:18-08:00"));
    // Sent to the plain address: the token is only in the returned copy, not read.
    assert_eq!(email.reply_token, None);
    assert!(email.text.starts_with(
        "** Address not found **\n\nYour message wasn't delivered to kim.lee.old@gmail.com"
    ));
    let kinds: Vec<(&str, Option<&str>)> = email
        .attachments
        .iter()
        .map(|a| (a.mime_type.as_str(), a.filename.as_deref()))
        .collect();
    assert_eq!(
        kinds,
        [("message/delivery-status", None), ("message/rfc822", None)]
    );
    let status = String::from_utf8_lossy(&email.attachments[0].bytes);
    assert!(status.contains("Final-Recipient: rfc822; kim.lee.old@gmail.com"));
    // The returned message is kept whole, and is itself a readable mail.
    let returned = parse_mime(&email.attachments[1].bytes, &ours()).unwrap();
    assert_eq!(
        returned.message_id,
        "sb.0193a1e2-4d5e-7f6a-8b9c-0d1e2f3a4b5c@mail.example.com"
    );
}

#[test]
fn mailgun_request() {
    const KEY: &str = "key-3ax6xnjp29jd6fds4gc373sgvjxteol0";
    let token = "5c8e1f2a3b4d4c6e9f0a1b2c3d4e5f6a";
    // What `switchboard replay` does: fresh signature fields on the recorded request.
    let now = Utc::now();
    let timestamp = now.timestamp().to_string();
    let nonce = "9f1c3e5a7b2d4f6e8a0c1b3d5f7e9a2c4b6d8f0e1a3c5e7b9d";
    let signature = mailgun::sign(KEY, &timestamp, nonce);
    let mut fields = form("mailgun.json");
    fields.push(("timestamp".into(), timestamp.clone().into_bytes()));
    fields.push(("token".into(), nonce.as_bytes().to_vec()));
    fields.push(("signature".into(), signature.clone().into_bytes()));
    assert_eq!(
        mailgun::verify(
            KEY,
            &timestamp,
            nonce,
            &signature,
            now,
            std::time::Duration::from_secs(300)
        ),
        Ok(())
    );

    let email = mailgun::parse(&fields, &ours()).unwrap();
    assert_eq!(
        email.message_id,
        "CAN7zQx4Fh2Kp6Ld8Mw0Ry2Tz4Vb6Xd8Jf0Hg2Ks4Nm6Pq8Sr@mail.example.net"
    );
    assert_eq!(
        email.from,
        address(Some("Sheena Nelson"), "sheena@example.net")
    );
    assert_eq!(email.subject, "Re: Your booking B-2291");
    assert_eq!(
        email.in_reply_to,
        ["sb.0193a0a7-9e8d-7c6b-a5f4-e3d2c1b0a998@mail.example.com"]
    );
    assert_eq!(email.date, at("2025-11-11T11:07:44Z"));
    assert_eq!(email.reply_token.as_deref(), Some(token));
    assert_eq!(
        email.text,
        "Could we move the booking to 8 pm instead? We will be four, not three.\n\nSheena"
    );
    assert!(email.original.ends_with(
        "> Your table for three is booked for Friday at 7 pm.\n>\n> Switchboard Support"
    ));
    assert_eq!(email.automated, None);
    // The signature fields do not change what the mail is.
    assert_eq!(
        mailgun::parse(&form("mailgun.json"), &ours()).unwrap(),
        email
    );
}

#[test]
fn postmark_request() {
    let token = "e4d3c2b1a0f94e8d7c6b5a4f3e2d1c0b";
    let body = read("postmark.json");
    let email = postmark::parse(&body, &ours()).unwrap();
    // The mail's own Message-ID from Headers, not Postmark's MessageID.
    assert_eq!(
        email.message_id,
        "CAJ9mEi3Qw5Er7Ty9Ui1Op3As5Df7Gh9Jk1Lz3Xc5Vb@mail.gmail.com"
    );
    assert_eq!(
        email.from,
        address(Some("Mei Chen"), "mei.chen@example.com")
    );
    assert_eq!(
        email.to,
        [address(Some("Switchboard Support"), &ours_with(token))]
    );
    assert!(email.cc.is_empty());
    assert_eq!(email.subject, "Re: Warranty claim");
    assert_eq!(
        email.in_reply_to,
        ["sb.0193a1a8-4c5d-7e6f-8091-a2b3c4d5e6f7@mail.example.com"]
    );
    assert_eq!(
        email.references,
        [
            "sb.0193a19e-0f1e-7d2c-b3a4-958677a6b5c4@mail.example.com",
            "CAJ9mEi0Lx2Nz4Pb6Rd8Tf0Vh2Xj4Zl6Bn8Dp0Fr2Ht@mail.gmail.com",
            "sb.0193a1a8-4c5d-7e6f-8091-a2b3c4d5e6f7@mail.example.com",
        ]
    );
    // Postmark's `+01:00` zone.
    assert_eq!(email.date, at("2025-11-11T13:02:09+01:00"));
    assert_eq!(email.reply_token.as_deref(), Some(token));
    // StrippedTextReply.
    assert_eq!(
        email.text,
        "Here is the photo of the serial number plate.\n\nMei"
    );
    assert!(email.original.contains(
        "On Mon, Nov 10, 2025 at 5:45 PM Switchboard Support <support@mail.example.com> wrote:"
    ));
    assert!(email.html.as_deref().unwrap().contains("gmail_quote"));
    let [png] = email.attachments.as_slice() else {
        panic!("expected one attachment, got {:?}", email.attachments);
    };
    assert_eq!(png.filename.as_deref(), Some("serial-plate.png"));
    assert_eq!(png.mime_type, "image/png");
    assert_eq!(png.media_kind(), MediaKind::Image);
    assert_eq!(png.bytes.len(), 71);
    assert!(png.bytes.starts_with(b"\x89PNG\r\n\x1a\n"));
    assert_eq!(email.automated, None);

    // Without StrippedTextReply, the gateway strips TextBody itself to the same text.
    let mut value: Value = serde_json::from_slice(&body).unwrap();
    value["StrippedTextReply"] = json!("");
    let own = postmark::parse(value.to_string().as_bytes(), &ours()).unwrap();
    assert_eq!(own.text, email.text);
}

#[test]
fn sendgrid_request() {
    let token = "0a9b8c7d6e5f40312a3b4c5d6e7f8091";
    let email = sendgrid::parse(&form("sendgrid.json"), &ours()).unwrap();
    assert_eq!(
        email.message_id,
        "CAH4pLm2Nq6Rs8Tu0Vw2Xy4Za6Bc8De0Fg2Hi4Jk6Lm@mail.gmail.com"
    );
    assert_eq!(
        email.from,
        address(Some("Lucas Moreau"), "lucas.moreau@example.fr")
    );
    // A UTF-8 encoded word, the same as SendGrid's own `subject` field.
    assert_eq!(email.subject, "Re: Livraison de la commande n°4420");
    assert_eq!(
        email.in_reply_to,
        ["sb.0193a1b4-5e6f-7a8b-9c0d-1e2f3a4b5c6d@mail.example.com"]
    );
    assert_eq!(email.date, at("2025-11-11T14:45:01+01:00"));
    assert_eq!(email.reply_token.as_deref(), Some(token));
    // Cut at French Gmail's attribution, wrapped over two lines: "Le … a écrit :".
    assert_eq!(
        email.text,
        "Bonjour,\n\nJe ne serai pas là jeudi. Pouvez-vous livrer le colis au point relais de\nla rue Oberkampf ?\n\nMerci,\nLucas"
    );
    assert!(
        email
            .original
            .contains("> Votre commande n°4420 sera livrée jeudi")
    );
    let message = email.into_message(ACCOUNT);
    assert_eq!(
        message.subject.as_deref(),
        Some("Livraison de la commande n°4420")
    );
}

/// The raw route: the `.eml` fixtures are what `switchboard replay` posts there, signed.
#[test]
fn raw_route_accepts_signed_fixtures() {
    const SECRET: &str = "replay-secret-for-tests";
    for (name, _) in FIXTURES.iter().filter(|(name, _)| name.ends_with(".eml")) {
        let body = read(name);
        let header = raw::sign(&body, SECRET);
        assert_eq!(raw::verify(Some(&header), &body, SECRET), Ok(()), "{name}");
        assert_eq!(raw::parse(&body, &ours()).unwrap(), eml(name));
    }
}

/// Mail arrives cut short (a provider's size limit, a broken MTA hook): whatever the cut, reading
/// it fails cleanly or yields a mail, and never panics.
#[test]
fn truncated_fixtures_never_panic() {
    for (name, _) in FIXTURES {
        let bytes = read(name);
        for end in (0..bytes.len()).step_by(7) {
            let cut = &bytes[..end];
            let _ = parse_mime(cut, &ours());
            let _ = postmark::parse(cut, &ours());
            if let Ok(text) = std::str::from_utf8(cut) {
                let fields = vec![
                    ("body-plain".to_owned(), cut.to_vec()),
                    ("body-html".to_owned(), cut.to_vec()),
                    ("message-headers".to_owned(), cut.to_vec()),
                    ("from".to_owned(), b"kim@example.org".to_vec()),
                ];
                let _ = mailgun::parse(&fields, &ours());
                let html =
                    format!("From: kim@example.org\r\nContent-Type: text/html\r\n\r\n{text}");
                let _ = parse_mime(html.as_bytes(), &ours());
            }
        }
    }
}
