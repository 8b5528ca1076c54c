//! Reading mails and making messages of them, rule by rule, on hand-written mails. Stripping,
//! HTML and automated mail have their own tests in their modules; the recorded fixtures in
//! `webhooks/email/` are checked by `tests/fixtures.rs`.

use switchboard_channel::MediaKind;

use super::*;

const TOKEN: &str = "3f2a9c5e8b7d4f1a9c0e2b4d6f8a1c3e";

fn ours() -> ReplyAddress {
    ReplyAddress {
        local: "support".into(),
        domain: "mail.example.com".into(),
    }
}

/// A mail with `headers` (CRLF-separated lines) and a plain text body.
fn mail(headers: &str, body: &str) -> Vec<u8> {
    format!("{headers}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{body}").into_bytes()
}

fn parsed(raw: &[u8]) -> InboundEmail {
    parse_mime(raw, &ours()).unwrap_or_else(|err| panic!("{err}"))
}

const BASIC: &str = "From: Kim Lee <Kim.Lee@Example.org>\r\nTo: support@mail.example.com\r\nSubject: Hello\r\nMessage-ID: <m1@example.org>\r\nDate: Tue, 11 Nov 2025 10:14:05 +0100";

#[test]
fn reads_the_envelope_of_a_simple_mail() {
    let email = parsed(&mail(BASIC, "Are you open on Sunday?\r\n"));
    assert_eq!(email.message_id, "m1@example.org");
    assert_eq!(
        email.from,
        Address {
            name: Some("Kim Lee".into()),
            address: "kim.lee@example.org".into(),
        }
    );
    assert_eq!(email.to, [Address::new(None, "support@mail.example.com")]);
    assert!(email.cc.is_empty());
    assert_eq!(email.subject, "Hello");
    assert_eq!(email.date.map(|d| d.timestamp()), Some(1_762_852_445));
    assert_eq!(email.text, "Are you open on Sunday?");
    assert_eq!(email.original, "Are you open on Sunday?");
    assert_eq!(email.html, None);
    assert!(email.attachments.is_empty());
    assert_eq!(email.automated, None);
    assert_eq!(email.reply_token, None);
}

#[test]
fn a_mail_without_a_sender_address_is_refused() {
    for headers in [
        "To: support@mail.example.com\r\nSubject: Hello",
        "From: Kim Lee\r\nTo: support@mail.example.com",
        "From: undisclosed-recipients:;\r\nTo: support@mail.example.com",
    ] {
        let error = parse_mime(&mail(headers, "Hi"), &ours()).unwrap_err();
        assert_eq!(error.reason(), "no From address", "{headers}");
        assert_eq!(error.to_string(), "not an e-mail: no From address");
    }
    assert_eq!(
        parse_mime(b"  \r\n", &ours()).unwrap_err().reason(),
        "the body is empty"
    );
    assert!(parse_mime(b"{\"object\": \"whatsapp\"}", &ours()).is_err());
}

#[test]
fn a_mail_without_message_id_gets_a_stable_one() {
    let raw = mail(
        "From: kim@example.org\r\nTo: support@mail.example.com",
        "Hi",
    );
    let email = parsed(&raw);
    let expected = format!("generated-{}", hex::encode(Sha256::digest(&raw)));
    assert_eq!(email.message_id, expected);
    assert_eq!(parsed(&raw).message_id, expected);
    let other = mail(
        "From: kim@example.org\r\nTo: support@mail.example.com",
        "Hi!",
    );
    assert_ne!(parsed(&other).message_id, expected);
}

#[test]
fn addresses_are_lowercased_and_names_decoded() {
    let email = parsed(&mail(
        "From: =?UTF-8?Q?J=C3=BCrgen_Wei=C3=9F?= <JUERGEN@Example.DE>\r\nTo: \"Support, Team\" <support@mail.example.com>, other@example.org\r\nCc: A <a@example.org>, b@example.org\r\nCc: c@example.org\r\nMessage-ID: <x@y>",
        "Hallo",
    ));
    assert_eq!(email.from.name.as_deref(), Some("Jürgen Weiß"));
    assert_eq!(email.from.address, "juergen@example.de");
    let to: Vec<&str> = email.to.iter().map(|a| a.address.as_str()).collect();
    assert_eq!(to, ["support@mail.example.com", "other@example.org"]);
    assert_eq!(email.to[0].name.as_deref(), Some("Support, Team"));
    // Every Cc header counts.
    let cc: Vec<&str> = email.cc.iter().map(|a| a.address.as_str()).collect();
    assert_eq!(cc, ["a@example.org", "b@example.org", "c@example.org"]);
}

#[test]
fn threading_ids_keep_header_order_without_brackets() {
    let email = parsed(&mail(
        &format!(
            "{BASIC}\r\nIn-Reply-To: <sb.3@mail.example.com>\r\nReferences: <sb.1@mail.example.com>\r\n <CA2@mail.gmail.com>\r\n\t<sb.3@mail.example.com>"
        ),
        "Hi",
    ));
    assert_eq!(email.in_reply_to, ["sb.3@mail.example.com"]);
    assert_eq!(
        email.references,
        [
            "sb.1@mail.example.com",
            "CA2@mail.gmail.com",
            "sb.3@mail.example.com"
        ]
    );
}

#[test]
fn the_token_comes_from_the_first_address_of_ours_that_has_one() {
    let token = |headers: &str| parsed(&mail(headers, "Hi")).reply_token;
    // To.
    assert_eq!(
        token(&format!(
            "From: kim@example.org\r\nTo: other@example.org, Support <Support+{}@Mail.Example.com>",
            TOKEN.to_uppercase()
        ))
        .as_deref(),
        Some(TOKEN)
    );
    // Cc, when To has only our plain address.
    assert_eq!(
        token(&format!(
            "From: kim@example.org\r\nTo: support@mail.example.com\r\nCc: support+{TOKEN}@mail.example.com"
        ))
        .as_deref(),
        Some(TOKEN)
    );
    // Delivered-To and X-Original-To, for a blind copy.
    assert_eq!(
        token(&format!(
            "Delivered-To: support+{TOKEN}@mail.example.com\r\nFrom: kim@example.org\r\nTo: team@example.org"
        ))
        .as_deref(),
        Some(TOKEN)
    );
    assert_eq!(
        token(&format!(
            "X-Original-To: <support+{TOKEN}@mail.example.com>\r\nFrom: kim@example.org\r\nTo: team@example.org"
        ))
        .as_deref(),
        Some(TOKEN)
    );
    // To comes first.
    assert_eq!(
        token(&format!(
            "Delivered-To: support+older@mail.example.com\r\nFrom: kim@example.org\r\nTo: support+{TOKEN}@mail.example.com"
        ))
        .as_deref(),
        Some(TOKEN)
    );
    // Someone else's plus-address, and ours without a token, carry none.
    assert_eq!(
        token(
            "From: kim@example.org\r\nTo: sales+abc@mail.example.com, support@mail.example.com, support+abc@other.example"
        ),
        None
    );
}

#[test]
fn decodes_quoted_printable_latin1() {
    let raw = b"From: juergen@example.de\r\nTo: support@mail.example.com\r\nSubject: =?ISO-8859-1?Q?R=FCckerstattung?=\r\nContent-Type: text/plain; charset=ISO-8859-1\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nGr=FC=DFe aus K=F6ln, ein sehr langer Satz, der umbrochen =\r\nwird.\r\n";
    let email = parsed(raw);
    assert_eq!(email.subject, "Rückerstattung");
    assert_eq!(
        email.text,
        "Grüße aus Köln, ein sehr langer Satz, der umbrochen wird."
    );
}

#[test]
fn decodes_raw_latin1_bytes_and_base64_utf8() {
    let latin1 = b"From: a@example.org\r\nContent-Type: text/plain; charset=iso-8859-1\r\nContent-Transfer-Encoding: 8bit\r\n\r\nS\xe9same, ouvre-toi\r\n";
    assert_eq!(parsed(latin1).text, "Sésame, ouvre-toi");
    let base64 = b"From: a@example.org\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\nQ2Fmw6kgw6AgNSDigqw=\r\n";
    assert_eq!(parsed(base64).text, "Café à 5 €");
}

#[test]
fn strips_quotes_and_keeps_the_original() {
    let body = "Thanks!\r\n\r\nOn Tue, 11 Nov 2025 at 10:02, Support <support@mail.example.com> wrote:\r\n> Hello\r\n";
    let email = parsed(&mail(BASIC, body));
    assert_eq!(email.text, "Thanks!");
    assert_eq!(
        email.original,
        "Thanks!\n\nOn Tue, 11 Nov 2025 at 10:02, Support <support@mail.example.com> wrote:\n> Hello"
    );
}

#[test]
fn a_mail_that_is_only_a_quote_keeps_its_text() {
    let body = "> Hello Kim,\r\n> your order has shipped.\r\n";
    let email = parsed(&mail(BASIC, body));
    assert_eq!(email.text, "> Hello Kim,\n> your order has shipped.");
    assert_eq!(email.text, email.original);
}

/// A multipart/alternative mail with these two bodies.
fn alternative(plain: Option<&str>, html: &str) -> Vec<u8> {
    let mut raw = format!(
        "{BASIC}\r\nMIME-Version: 1.0\r\nContent-Type: multipart/alternative; boundary=\"b1\"\r\n\r\n"
    );
    if let Some(plain) = plain {
        raw.push_str(&format!(
            "--b1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{plain}\r\n"
        ));
    }
    raw.push_str(&format!(
        "--b1\r\nContent-Type: text/html; charset=utf-8\r\n\r\n{html}\r\n--b1--\r\n"
    ));
    raw.into_bytes()
}

#[test]
fn the_plain_part_is_preferred() {
    let email = parsed(&alternative(Some("Plain words"), "<div>HTML words</div>"));
    assert_eq!(email.text, "Plain words");
    assert_eq!(email.html.as_deref(), Some("<div>HTML words</div>"));
}

#[test]
fn html_only_mails_lose_their_quote_elements() {
    let html = r#"<div dir="ltr">Thanks!<div>Kim</div></div><div class="gmail_quote"><div class="gmail_attr">On Tue, 11 Nov 2025 at 10:02, Support wrote:</div><blockquote class="gmail_quote">Hello Kim</blockquote></div>"#;
    for raw in [
        alternative(None, html),
        format!("{BASIC}\r\nContent-Type: text/html; charset=utf-8\r\n\r\n{html}").into_bytes(),
    ] {
        let email = parsed(&raw);
        assert_eq!(email.text, "Thanks!\nKim");
        assert_eq!(
            email.original,
            "Thanks!\nKim\nOn Tue, 11 Nov 2025 at 10:02, Support wrote:\nHello Kim"
        );
        assert_eq!(email.html.as_deref(), Some(html));
    }
    // An empty plain part does not hide the HTML one.
    let email = parsed(&alternative(Some("  "), "<p>Only here</p>"));
    assert_eq!(email.text, "Only here");
}

#[test]
fn an_html_mail_that_is_only_a_quote_keeps_its_text() {
    let email = parsed(&alternative(
        None,
        "<blockquote>Forwarded words</blockquote>",
    ));
    assert_eq!(email.text, "Forwarded words");
}

#[test]
fn attachments_are_decoded_and_inline_images_skipped() {
    let raw = format!(
        "{BASIC}\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"m\"\r\n\r\n\
--m\r\nContent-Type: multipart/related; boundary=\"r\"\r\n\r\n\
--r\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<p>See the logo <img src=\"cid:logo@x\"></p>\r\n\
--r\r\nContent-Type: image/png\r\nContent-ID: <logo@x>\r\nContent-Disposition: inline\r\nContent-Transfer-Encoding: base64\r\n\r\niVBORw0KGgo=\r\n--r--\r\n\
--m\r\nContent-Type: application/pdf; name=\"invoice.pdf\"\r\nContent-Disposition: attachment; filename=\"invoice.pdf\"\r\nContent-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQK\r\n\
--m\r\nContent-Type: image/jpeg\r\nContent-Disposition: inline; filename=\"photo.jpg\"\r\nContent-ID: <photo@x>\r\nContent-Transfer-Encoding: base64\r\n\r\n/9j/4A==\r\n\
--m\r\nContent-Type: text/plain; charset=utf-8; name=\"notes.txt\"\r\nContent-Disposition: attachment; filename=\"notes.txt\"\r\n\r\nGr\u{fc}n\r\n--m--\r\n"
    );
    let email = parsed(raw.as_bytes());
    assert_eq!(email.text, "See the logo");
    let files: Vec<(Option<&str>, &str, &[u8])> = email
        .attachments
        .iter()
        .map(|a| {
            (
                a.filename.as_deref(),
                a.mime_type.as_str(),
                a.bytes.as_slice(),
            )
        })
        .collect();
    assert_eq!(
        files,
        [
            (Some("invoice.pdf"), "application/pdf", &b"%PDF-1.4\n"[..]),
            (Some("photo.jpg"), "image/jpeg", &b"\xff\xd8\xff\xe0"[..]),
            (Some("notes.txt"), "text/plain", "Grün".as_bytes()),
        ]
    );
    assert_eq!(email.attachments[0].media_kind(), MediaKind::Document);
    assert_eq!(email.attachments[1].media_kind(), MediaKind::Image);
}

#[test]
fn content_type_report_marks_a_bounce() {
    let raw = "From: postmaster@example.org\r\nTo: support@mail.example.com\r\nSubject: Failure\r\nContent-Type: multipart/report; report-type=delivery-status; boundary=\"r\"\r\n\r\n--r\r\nContent-Type: text/plain\r\n\r\nNot delivered.\r\n--r\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.example.org\r\n\r\nFinal-Recipient: rfc822; nobody@example.org\r\nAction: failed\r\nStatus: 5.1.1\r\n--r--\r\n";
    let email = parsed(raw.as_bytes());
    assert_eq!(email.automated.as_deref(), Some("bounce"));
    assert_eq!(email.text, "Not delivered.");
    assert_eq!(email.attachments.len(), 1);
    assert_eq!(email.attachments[0].mime_type, "message/delivery-status");
}

#[test]
fn automated_headers_are_read_from_the_mail() {
    let email = parsed(&mail(
        &format!("{BASIC}\r\nAuto-Submitted: auto-replied\r\nX-Auto-Response-Suppress: All"),
        "Away",
    ));
    assert_eq!(
        email.automated.as_deref(),
        Some("auto-submitted: auto-replied")
    );
    let folded = parsed(&mail(
        &format!("{BASIC}\r\nList-Id: Announcements\r\n <announce.example.org>"),
        "News",
    ));
    assert_eq!(folded.automated.as_deref(), Some("mailing list"));
}

// ---------------------------------------------------------------------------------------------
// The normalized message.
// ---------------------------------------------------------------------------------------------

fn email() -> InboundEmail {
    InboundEmail {
        message_id: "CA1@mail.gmail.com".into(),
        from: Address::new(Some("Kim Lee"), "kim@example.org"),
        to: vec![Address::new(
            None,
            &format!("support+{TOKEN}@mail.example.com"),
        )],
        cc: vec![Address::new(Some("Boss"), "boss@example.org")],
        subject: "Re: AW: Your order #4412".into(),
        in_reply_to: vec!["sb.3@mail.example.com".into()],
        references: vec![
            "sb.1@mail.example.com".into(),
            "CA2@mail.gmail.com".into(),
            "sb.3@mail.example.com".into(),
        ],
        date: DateTime::from_timestamp(1_762_852_445, 0),
        text: "Thanks!".into(),
        original: "Thanks!\n\n> Hello".into(),
        html: Some("<div>Thanks!</div>".into()),
        attachments: vec![],
        automated: None,
        reply_token: Some(TOKEN.into()),
    }
}

fn pdf(filename: &str) -> EmailAttachment {
    EmailAttachment {
        filename: Some(filename.into()),
        mime_type: "application/pdf".into(),
        bytes: b"%PDF-1.4\n".to_vec(),
    }
}

#[test]
fn into_message_fills_every_field() {
    let message = email().into_message("support@mail.example.com");
    assert_eq!(
        message.provider_message_id.as_deref(),
        Some("CA1@mail.gmail.com")
    );
    assert_eq!(message.account, "support@mail.example.com");
    assert_eq!(
        message.from,
        ContactRef {
            external_id: "kim@example.org".into(),
            display_name: Some("Kim Lee".into()),
            username: None,
        }
    );
    // The message replied to, then the thread newest first, each once.
    assert_eq!(
        message.conversation,
        ConversationRef::Thread {
            token: Some(TOKEN.into()),
            references: vec![
                "sb.3@mail.example.com".into(),
                "CA2@mail.gmail.com".into(),
                "sb.1@mail.example.com".into(),
            ],
        }
    );
    assert_eq!(message.sent_at, DateTime::from_timestamp(1_762_852_445, 0));
    assert_eq!(message.reply_to.as_deref(), Some("sb.3@mail.example.com"));
    assert_eq!(message.subject.as_deref(), Some("Your order #4412"));
    assert_eq!(
        message.content,
        Content::Text {
            body: "Thanks!".into()
        }
    );
    assert_eq!(message.intent, None);
    let metadata = Value::Object(message.metadata);
    assert_eq!(
        metadata,
        json!({
            "subject": "Re: AW: Your order #4412",
            "message_id": "CA1@mail.gmail.com",
            "to": [format!("support+{TOKEN}@mail.example.com")],
            "cc": ["boss@example.org"],
            "original_text": "Thanks!\n\n> Hello",
            "html": "<div>Thanks!</div>",
            "stripped": true,
        })
    );
}

#[test]
fn into_message_of_a_new_unstripped_mail() {
    let mut email = email();
    email.subject = String::new();
    email.in_reply_to.clear();
    email.references.clear();
    email.reply_token = None;
    email.html = None;
    email.text = "Are you open?".into();
    email.original = "Are you open?  ".into();
    email.automated = Some("auto-submitted: auto-replied".into());
    let message = email.into_message("support@mail.example.com");
    assert_eq!(
        message.conversation,
        ConversationRef::Thread {
            token: None,
            references: vec![],
        }
    );
    assert_eq!(message.reply_to, None);
    assert_eq!(message.subject, None);
    assert_eq!(message.metadata["stripped"], false);
    assert_eq!(
        message.metadata["automated"],
        "auto-submitted: auto-replied"
    );
    assert!(!message.metadata.contains_key("html"));
}

#[test]
fn into_message_with_attachments_is_media_captioned_by_the_text() {
    let mut email = email();
    email.attachments = vec![pdf("a.pdf"), pdf("b.pdf")];
    let message = email.clone().into_message("support@mail.example.com");
    // The files travel inside the message, in order; the content names them.
    assert_eq!(message.files.len(), 2);
    assert_eq!(message.files[1].filename.as_deref(), Some("b.pdf"));
    assert_eq!(message.files[1].mime_type, "application/pdf");
    assert_eq!(&message.files[1].bytes[..], b"%PDF-1.4\n");
    let attachments: Vec<Attachment> = message
        .files
        .iter()
        .enumerate()
        .map(|(index, file)| Attachment::inline(index, file))
        .collect();
    assert_eq!(attachments[1].inline_index(), Some(1));
    assert_eq!(attachments[1].kind, MediaKind::Document);
    assert_eq!(attachments[1].size, Some(9));
    assert_eq!(
        message.content,
        Content::Media {
            attachments: attachments.clone(),
            caption: Some("Thanks!".into()),
        }
    );
    let mut silent = email;
    silent.text = String::new();
    let message = silent.into_message("support@mail.example.com");
    assert_eq!(
        message.content,
        Content::Media {
            attachments,
            caption: None,
        }
    );
}

#[test]
fn into_message_without_attachments_has_no_files() {
    let message = email().into_message("support@mail.example.com");
    assert!(message.files.is_empty());
}

#[test]
fn into_message_truncates_huge_html() {
    let mut email = email();
    // Multi-byte characters across the limit: the cut must fall on a character boundary.
    email.html = Some("é".repeat(MAX_HTML_METADATA));
    let message = email.into_message("support@mail.example.com");
    let html = message.metadata["html"].as_str().unwrap();
    assert_eq!(html.len(), MAX_HTML_METADATA);
    assert_eq!(message.metadata["html_truncated"], true);
}

#[test]
fn subject_prefixes_are_stripped() {
    for (subject, thread) in [
        ("Re: Your order", "Your order"),
        ("RE: Fwd: AW: SV: Your order", "Your order"),
        ("Re[2]: Your order", "Your order"),
        ("RE : TR : Livraison", "Livraison"),
        ("WG: Bestellung", "Bestellung"),
        ("Your order", "Your order"),
        ("Re: Re: ", ""),
        // Not prefixes: a colon inside the subject, a word that merely looks like one.
        ("Order: 4412", "Order: 4412"),
        ("Regarding: the invoice", "Regarding: the invoice"),
        ("Re[x]: odd", "Re[x]: odd"),
    ] {
        assert_eq!(thread_subject(subject), thread, "{subject}");
    }
}

#[test]
fn is_ours_compares_local_part_and_domain() {
    assert!(is_ours(&ours(), "support@mail.example.com"));
    assert!(is_ours(&ours(), "Support+abc@MAIL.example.com"));
    assert!(!is_ours(&ours(), "sales@mail.example.com"));
    assert!(!is_ours(&ours(), "support@example.com"));
    assert!(!is_ours(&ours(), "support"));
}
