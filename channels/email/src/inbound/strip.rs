//! Cutting the quoted reply and the signature off a mail's text.
//!
//! Mail clients quote the whole exchange under (sometimes over) every reply, and people sign
//! every mail; the conversation needs only what is new. There is no standard marker, so this
//! recognises what the common clients write, in the languages they write it in:
//!
//! 1. the text is cut at the first line that opens the quoted part: an attribution line (`On …
//!    wrote:` as Gmail, Apple Mail and Thunderbird write it, possibly wrapped over two or three
//!    lines, and its French, German, Spanish, Dutch, Italian, Portuguese and Scandinavian
//!    versions), an `-----Original Message-----` line, a forwarded-message line, or an Outlook
//!    header block (`From:` followed closely by `Sent:`/`Date:` and `To:`/`Subject:`, together
//!    with the `____` rule Outlook draws above it);
//! 2. a trailing block of `>` lines goes (quotes in the middle stay: they give inline answers
//!    their context);
//! 3. the text is cut at the signature: the `-- ` delimiter line (RFC 3676), a bare `--` near the
//!    end (clients and HTML conversion lose the space), or a mobile client's line (`Sent from my
//!    iPhone`, `Get Outlook for iOS`).
//!
//! A false positive loses text the agent should have read, so every marker is anchored: an
//! attribution line must contain a digit (its date) and end with a colon, an Outlook block needs
//! three of its labels. The caller keeps the original text in any case.

/// Attribution lines: how the line starts and the verb it contains, lowercase. The verb may be
/// followed by the name (`Am … schrieb Kim <kim@…>:`), so only the final colon is required after
/// it.
const ATTRIBUTIONS: &[(&str, &str)] = &[
    ("on ", "wrote"),
    ("le ", "a écrit"),
    ("am ", "schrieb"),
    ("el ", "escribió"),
    ("op ", "schreef"),
    ("il ", "ha scritto"),
    ("em ", "escreveu"),
    ("den ", "skrev"),
];

/// The longest attribution line, joined: longer is a paragraph that happens to match.
const MAX_ATTRIBUTION: usize = 300;

/// Lines opening a quoted or forwarded message, lowercase, without the surrounding dashes.
const ORIGINAL_MESSAGE: &[&str] = &[
    "original message",
    "ursprüngliche nachricht",
    "message d'origine",
    "mensaje original",
    "oorspronkelijk bericht",
    "messaggio originale",
    "forwarded message",
    "weitergeleitete nachricht",
    "message transféré",
    "mensaje reenviado",
];

/// Apple Mail's forwarded-message line, lowercase.
const BEGIN_FORWARDED: &[&str] = &[
    "begin forwarded message:",
    "anfang der weitergeleiteten nachricht:",
    "début du message réexpédié :",
    "début du message réexpédié:",
    "comienzo del mensaje reenviado:",
];

/// Outlook header labels, lowercase with the colon. French puts a space before it.
const FROM_LABELS: &[&str] = &[
    "from:", "von:", "de:", "de :", "van:", "da:", "från:", "fra:",
];
const DATE_LABELS: &[&str] = &[
    "sent:",
    "date:",
    "gesendet:",
    "datum:",
    "envoyé:",
    "envoyé :",
    "date :",
    "enviado:",
    "fecha:",
    "verzonden:",
    "inviato:",
    "data:",
    "skickat:",
    "sendt:",
];
const TO_LABELS: &[&str] = &[
    "to:",
    "subject:",
    "an:",
    "betreff:",
    "à:",
    "à :",
    "objet:",
    "objet :",
    "para:",
    "asunto:",
    "aan:",
    "onderwerp:",
    "a:",
    "oggetto:",
    "till:",
    "ämne:",
    "til:",
    "emne:",
];

/// How many lines after `From:` the other labels of an Outlook block may come.
const OUTLOOK_BLOCK: usize = 6;

/// Lines mobile clients append, lowercase prefixes.
const MOBILE_SIGNATURES: &[&str] = &[
    "sent from my ",
    "sent from mail for windows",
    "sent from outlook",
    "sent from yahoo mail",
    "sent with proton mail",
    "get outlook for ios",
    "get outlook for android",
    "von meinem iphone gesendet",
    "von meinem ipad gesendet",
    "envoyé de mon iphone",
    "enviado desde mi iphone",
];

/// The longest mobile signature line: longer is a sentence that happens to start the same way.
const MAX_MOBILE_SIGNATURE: usize = 80;

/// How many lines may follow a bare `--` for it to count as a signature delimiter.
const MAX_BARE_SIGNATURE: usize = 8;

/// The new text of `text` (LF line endings): quote and signature cut off, trailing spaces of
/// each line removed, trimmed. Empty when nothing is left: the caller falls back on the
/// original.
pub(crate) fn strip(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let mut end = quote_start(&lines).unwrap_or(lines.len());
    // A signature may sit above a trailing quote (`> …` after `-- `) or under it; both orders
    // resolve in two rounds.
    for _ in 0..2 {
        end = without_trailing_quote(&lines[..end]);
        end = signature_start(&lines[..end]).unwrap_or(end);
    }
    lines[..end]
        .iter()
        .map(|line| line.trim_end())
        .collect::<Vec<_>>()
        .join("\n")
        .trim()
        .to_owned()
}

/// The first line of the quoted part, if any.
fn quote_start(lines: &[&str]) -> Option<usize> {
    (0..lines.len()).find_map(|index| {
        let line = lines[index].trim();
        if line.starts_with('>') {
            return None;
        }
        if is_attribution(lines, index) || is_original_message(line) || is_begin_forwarded(line) {
            return Some(index);
        }
        is_outlook_block(lines, index).then(|| separator_above(lines, index))
    })
}

/// Whether an attribution line starts at `index`, on one line or wrapped over up to three.
fn is_attribution(lines: &[&str], index: usize) -> bool {
    let first = lines[index].trim().to_lowercase();
    let Some((_, verb)) = ATTRIBUTIONS
        .iter()
        .find(|(start, _)| first.starts_with(start))
    else {
        return false;
    };
    let mut joined = String::new();
    for line in lines.iter().skip(index).take(3) {
        let line = line.trim();
        if line.is_empty() || line.starts_with('>') {
            return false;
        }
        if !joined.is_empty() {
            joined.push(' ');
        }
        joined.push_str(&line.to_lowercase());
        if joined.len() > MAX_ATTRIBUTION {
            return false;
        }
        if joined.ends_with(':')
            && joined.contains(verb)
            && joined.chars().any(|c| c.is_ascii_digit())
        {
            return true;
        }
    }
    false
}

/// `-----Original Message-----` and its kin: dashes around a known phrase.
fn is_original_message(line: &str) -> bool {
    if !line.starts_with("--") || !line.ends_with("--") {
        return false;
    }
    let phrase = line.trim_matches(|c: char| c == '-' || c.is_whitespace());
    let phrase = phrase.to_lowercase();
    ORIGINAL_MESSAGE.contains(&phrase.as_str())
}

fn is_begin_forwarded(line: &str) -> bool {
    BEGIN_FORWARDED.contains(&line.to_lowercase().as_str())
}

/// Whether an Outlook header block starts at `index`: a `From:` line followed, within a few
/// lines, by a date line and a recipient or subject line.
fn is_outlook_block(lines: &[&str], index: usize) -> bool {
    if !has_label(lines[index], FROM_LABELS) {
        return false;
    }
    let next = || lines.iter().skip(index + 1).take(OUTLOOK_BLOCK);
    next().any(|line| has_label(line, DATE_LABELS)) && next().any(|line| has_label(line, TO_LABELS))
}

/// Whether a line starts with one of the labels. Outlook's plain text sometimes marks them bold
/// (`*From:*`), which is ignored.
fn has_label(line: &str, labels: &[&str]) -> bool {
    let line = line.trim().replace('*', "").to_lowercase();
    labels.iter().any(|label| line.starts_with(label))
}

/// Where the quoted part of an Outlook block starts: at the rule Outlook draws above it (a line of
/// underscores or dashes, blank lines between allowed), else at the `From:` line.
fn separator_above(lines: &[&str], from_line: usize) -> usize {
    let above = lines[..from_line]
        .iter()
        .rposition(|line| !line.trim().is_empty());
    match above {
        Some(index) if is_rule(lines[index].trim()) => index,
        _ => from_line,
    }
}

fn is_rule(line: &str) -> bool {
    line.len() >= 10 && (line.chars().all(|c| c == '_') || line.chars().all(|c| c == '-'))
}

/// The end of the text once a trailing block of quoted lines (blank lines among them) is gone.
fn without_trailing_quote(lines: &[&str]) -> usize {
    let mut end = lines.len();
    let mut quoted = false;
    while end > 0 {
        let line = lines[end - 1].trim();
        if line.starts_with('>') {
            quoted = true;
        } else if !line.is_empty() {
            break;
        }
        end -= 1;
    }
    if quoted { end } else { lines.len() }
}

/// The first line of the signature, if any.
fn signature_start(lines: &[&str]) -> Option<usize> {
    lines.iter().enumerate().find_map(|(index, line)| {
        let trimmed = line.trim();
        let is_delimiter = line.trim_end_matches('\r') == "-- ";
        let is_bare_delimiter = trimmed == "--"
            && lines[index + 1..]
                .iter()
                .filter(|line| !line.trim().is_empty())
                .count()
                <= MAX_BARE_SIGNATURE;
        let lower = trimmed.to_lowercase();
        let is_mobile = trimmed.len() <= MAX_MOBILE_SIGNATURE
            && MOBILE_SIGNATURES
                .iter()
                .any(|signature| lower.starts_with(signature));
        (is_delimiter || is_bare_delimiter || is_mobile).then_some(index)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The text of a reply with `tail` under the new text.
    fn reply(tail: &str) -> String {
        format!("Thanks, that works for me.\n\nKim\n\n{tail}")
    }

    const NEW: &str = "Thanks, that works for me.\n\nKim";

    #[test]
    fn plain_text_is_kept() {
        assert_eq!(
            strip("Hello,\n\nWhat are your opening hours?\n\nRavi\n"),
            "Hello,\n\nWhat are your opening hours?\n\nRavi"
        );
    }

    #[test]
    fn cuts_at_gmails_attribution() {
        let text = reply(
            "On Tue, 11 Nov 2025 at 10:02, Switchboard Support <support@mail.example.com> wrote:\n\n> Hello Kim,\n> Your order has shipped.\n",
        );
        assert_eq!(strip(&text), NEW);
    }

    #[test]
    fn cuts_at_an_attribution_wrapped_over_two_lines() {
        let text = reply(
            "On Tue, 11 Nov 2025 at 10:02, Switchboard Support <\nsupport@mail.example.com> wrote:\n\n> Hello Kim,\n",
        );
        assert_eq!(strip(&text), NEW);
        let three = reply(
            "On Tue, Nov 11, 2025 at 10:02 AM\nSwitchboard Support\n<support@mail.example.com> wrote:\n> Hello Kim,\n",
        );
        assert_eq!(strip(&three), NEW);
    }

    #[test]
    fn cuts_at_apple_mails_attribution() {
        let text = reply(
            "On 11 Nov 2025, at 10:02, Switchboard Support <support@mail.example.com> wrote:\n\nHello Kim,\n\nYour order has shipped.\n",
        );
        // Not quoted with `>`: only the attribution line tells where the quote starts.
        assert_eq!(strip(&text), NEW);
    }

    #[test]
    fn cuts_at_localized_attributions() {
        for attribution in [
            "Le mar. 11 nov. 2025 à 10:02, Switchboard Support <support@mail.example.com> a écrit :",
            "Le 11/11/2025 à 10:02, Switchboard Support a écrit\u{a0}:",
            "Am 11.11.2025 um 10:02 schrieb Switchboard Support <support@mail.example.com>:",
            "Am Di., 11. Nov. 2025 um 10:02 Uhr schrieb Switchboard Support <\nsupport@mail.example.com>:",
            "El mar, 11 nov 2025 a las 10:02, Switchboard Support (<support@mail.example.com>) escribió:",
            "Op di 11 nov 2025 om 10:02 schreef Switchboard Support <support@mail.example.com>:",
            "Il giorno mar 11 nov 2025 alle ore 10:02 Switchboard Support <support@mail.example.com> ha scritto:",
            "Em ter., 11 de nov. de 2025 às 10:02, Switchboard Support <support@mail.example.com> escreveu:",
            "Den tis 11 nov. 2025 kl 10:02 skrev Switchboard Support <support@mail.example.com>:",
        ] {
            let text = reply(&format!("{attribution}\n\n> Quoted text\n"));
            assert_eq!(strip(&text), NEW, "{attribution}");
        }
    }

    #[test]
    fn an_ordinary_sentence_is_not_an_attribution() {
        // No date in it, or no colon at the end: the text is the user's own.
        for text in [
            "On second thought, here is what I wrote:\n\nthe list",
            "On Tuesday I wrote to you about the parcel.",
            "Le colis est arrivé, merci.",
        ] {
            assert_eq!(strip(text), text);
        }
        // A date, but more than a line's worth of text before the colon.
        let long = format!(
            "On 11 November {} wrote:\n\nmore",
            "I think that the parcel that I ordered ".repeat(10)
        );
        assert_eq!(strip(&long), long);
    }

    #[test]
    fn cuts_at_original_message_lines() {
        for separator in [
            "-----Original Message-----",
            "----- Original Message -----",
            "-----Ursprüngliche Nachricht-----",
            "-------- Message d'origine --------",
            "---------- Forwarded message ---------",
        ] {
            let text = reply(&format!(
                "{separator}\nFrom: Switchboard Support\nSent: Tuesday\n\nHello Kim\n"
            ));
            assert_eq!(strip(&text), NEW, "{separator}");
        }
    }

    #[test]
    fn cuts_at_begin_forwarded_message() {
        let text = reply(
            "Begin forwarded message:\n\nFrom: Shop <shop@example.com>\nSubject: Invoice\n\nYour invoice\n",
        );
        assert_eq!(strip(&text), NEW);
    }

    #[test]
    fn a_bare_forward_leaves_nothing() {
        // Nothing above the marker: the forwarded mail is what the user sends, and the caller
        // keeps the original text.
        let text = "Begin forwarded message:\n\nFrom: Shop <shop@example.com>\nSubject: Invoice\n\nYour invoice";
        assert_eq!(strip(text), "");
    }

    #[test]
    fn cuts_at_an_outlook_header_block() {
        let block = "From: Switchboard Support <support@mail.example.com>\nSent: Monday, November 10, 2025 4:31 PM\nTo: Ada Moreau <ada.moreau@outlook.com>\nSubject: Re: Repair appointment\n\nHello Ada,\n";
        assert_eq!(strip(&reply(block)), NEW);
        // With the rule Outlook draws above it, which goes too.
        let ruled = reply(&format!("________________________________\n{block}"));
        assert_eq!(strip(&ruled), NEW);
        let ruled_apart = reply(&format!("________________________________\n\n{block}"));
        assert_eq!(strip(&ruled_apart), NEW);
        // Bold labels, a Date line, and a Cc line between.
        let bold = reply(
            "*From:* Switchboard Support <support@mail.example.com>\n*Date:* Monday, 10 November 2025 at 16:31\n*Cc:* Team <team@mail.example.com>\n*Subject:* Re: Repair appointment\n",
        );
        assert_eq!(strip(&bold), NEW);
    }

    #[test]
    fn cuts_at_a_localized_outlook_header_block() {
        let german = reply(
            "Von: Switchboard Support <support@mail.example.com>\nGesendet: Montag, 10. November 2025 16:31\nAn: Jürgen Weiß <juergen@example.de>\nBetreff: AW: Rückerstattung\n",
        );
        assert_eq!(strip(&german), NEW);
        let french = reply(
            "De : Switchboard Support <support@mail.example.com>\nEnvoyé : lundi 10 novembre 2025 16:31\nÀ : Lucas Moreau <lucas@example.fr>\nObjet : RE: Livraison\n",
        );
        assert_eq!(strip(&french), NEW);
    }

    #[test]
    fn a_from_line_alone_is_not_an_outlook_block() {
        let text = "From: my other address, kim@work.example\nplease use that one from now on.";
        assert_eq!(strip(text), text);
        // The labels too far apart do not count either.
        let apart = "From: home\n1\n2\n3\n4\n5\n6\nSent: yesterday\nTo: you";
        assert_eq!(strip(apart), apart);
    }

    #[test]
    fn drops_a_trailing_quote() {
        let text = reply("> Hello Kim,\n>\n> Your order has shipped.\n>\n\n");
        assert_eq!(strip(&text), NEW);
    }

    #[test]
    fn keeps_quotes_between_inline_answers() {
        let text = "> Which colour?\nBlue, please.\n\n> Which size?\nLarge.\n\n> Anything else?\n> Let us know.";
        assert_eq!(
            strip(text),
            "> Which colour?\nBlue, please.\n\n> Which size?\nLarge."
        );
    }

    #[test]
    fn cuts_at_the_signature_delimiter() {
        let text = "Thanks, that works for me.\n\nKim\n-- \nKim Lee\nHead of Purchasing, Example Corp\n+32 2 123 45 67";
        assert_eq!(strip(text), NEW);
        // Only dash dash space is the delimiter: a line of two dashes mid-text is not.
        let dashes = "Step one\n--\nStep two\n1\n2\n3\n4\n5\n6\n7\n8\n9";
        assert_eq!(strip(dashes), dashes);
    }

    #[test]
    fn cuts_at_a_bare_double_dash_near_the_end() {
        let text = "Thanks, that works for me.\n\nKim\n--\nKim Lee\nExample Corp";
        assert_eq!(strip(text), NEW);
    }

    #[test]
    fn cuts_at_mobile_signatures() {
        for signature in [
            "Sent from my iPhone",
            "Sent from my Galaxy",
            "Get Outlook for iOS<https://aka.ms/o0ukef>",
            "Get Outlook for Android",
            "Von meinem iPhone gesendet",
        ] {
            let text = reply(signature);
            assert_eq!(strip(&text), NEW, "{signature}");
        }
        // A sentence that merely starts like one is text.
        let sentence = "Sent from my iPhone earlier, but the photo did not arrive, so here it is again from the laptop.";
        assert_eq!(strip(sentence), sentence);
    }

    #[test]
    fn signature_then_quote_and_quote_then_signature() {
        let above = "Thanks, that works for me.\n\nKim\n-- \nKim Lee\n\n> Hello Kim,\n> Your order has shipped.";
        assert_eq!(strip(above), NEW);
        let mobile_above = "Thanks, that works for me.\n\nKim\n\nSent from my iPhone\n\n> On 11 Nov 2025, at 10:02, Switchboard Support <support@mail.example.com> wrote:\n>\n> Hello Kim,";
        assert_eq!(strip(mobile_above), NEW);
        let attribution_under_signature = "Thanks, that works for me.\n\nKim\n-- \nKim Lee\n\nOn Tue, 11 Nov 2025 at 10:02, Switchboard Support <support@mail.example.com> wrote:\n> Hello";
        assert_eq!(strip(attribution_under_signature), NEW);
    }

    #[test]
    fn nothing_left_gives_nothing() {
        // The caller then keeps the original text.
        assert_eq!(strip("> Hello Kim,\n> Your order has shipped."), "");
        assert_eq!(
            strip("On Tue, 11 Nov 2025 at 10:02, Support <support@mail.example.com> wrote:\n> Hi"),
            ""
        );
        assert_eq!(strip("-- \nKim Lee"), "");
        assert_eq!(strip(""), "");
    }

    #[test]
    fn trailing_spaces_are_trimmed() {
        assert_eq!(strip("  Hello  \nKim   \n\n"), "Hello\nKim");
    }
}
