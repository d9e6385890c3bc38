//! The README's command lines, as a test reads them: every `settle …` line of its
//! ```` ```sh ```` code blocks, continuation lines joined, comments and a trailing
//! `&` dropped, split into words, with the variables the block `export`s before
//! it. Its placeholders are filled with plausible values (`…`, `<deposit>`,
//! `PORT`), optional `[…]` parts kept, and each `a|b|c` alternative becomes a
//! variant of its own, so every documented spelling is parsed
//! (`commands::readme_lines`), and `tests/readme.rs` runs the lines that run as
//! written.
//!
//! Test-only; it never runs a command.

/// One command line of the README, split into words, with the line it starts on
/// and the variables exported before it in its block.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ReadmeLine {
    pub line: usize,
    pub words: Vec<String>,
    pub env: Vec<(String, String)>,
}

/// Every `settle …` line of the ```` ```sh ```` blocks of `markdown`.
pub(crate) fn command_lines(markdown: &str) -> Vec<ReadmeLine> {
    let mut out = Vec::new();
    let mut in_block = false;
    let mut env = Vec::new();
    let mut pending: Option<(usize, String)> = None;
    for (index, raw) in markdown.lines().enumerate() {
        if let Some(info) = raw.trim_start().strip_prefix("```") {
            in_block = !in_block && info.trim() == "sh";
            pending = None;
            env.clear();
            continue;
        }
        if !in_block {
            continue;
        }
        let text = strip_comment(raw);
        let (start, joined) = match pending.take() {
            Some((start, before)) => (start, format!("{before} {}", text.trim())),
            None => (index + 1, text.trim().to_owned()),
        };
        if let Some(head) = joined.strip_suffix('\\') {
            pending = Some((start, head.trim_end().to_owned()));
            continue;
        }
        let joined = joined.trim_end_matches('&').trim();
        let words = split_words(joined);
        match words.first().map(String::as_str) {
            Some("settle") => out.push(ReadmeLine {
                line: start,
                words,
                env: env.clone(),
            }),
            Some("export") => env.extend(words[1..].iter().filter_map(|w| {
                let (name, value) = w.split_once('=')?;
                (!value.starts_with("$(")).then(|| (name.to_owned(), value.to_owned()))
            })),
            _ => {}
        }
    }
    out
}

/// The line up to a `#` that starts a comment (after a space, outside quotes).
fn strip_comment(line: &str) -> &str {
    let mut quoted = false;
    let mut previous = ' ';
    for (at, c) in line.char_indices() {
        match c {
            '"' => quoted = !quoted,
            '#' if !quoted && previous.is_whitespace() => return &line[..at],
            _ => {}
        }
        previous = c;
    }
    line
}

/// Words split at whitespace, a double-quoted run kept whole (without quotes).
pub(crate) fn split_words(text: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut quoted = false;
    let mut any = false;
    for c in text.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                any = true;
            }
            c if c.is_whitespace() && !quoted => {
                if any {
                    words.push(std::mem::take(&mut word));
                    any = false;
                }
            }
            c => {
                word.push(c);
                any = true;
            }
        }
    }
    if any {
        words.push(word);
    }
    words
}

/// Whether the words carry a placeholder, an optional part or alternatives:
/// such a line does not run as written.
pub(crate) fn is_literal(words: &[String]) -> bool {
    words.iter().all(|w| {
        !w.contains('…')
            && !w.contains('<')
            && !w.contains('[')
            && !w.contains('|')
            && !w.contains("PORT")
    })
}

/// The spellings of a line that run as written: optional `[…]` parts left out,
/// one variant per alternative, and none that still holds a placeholder.
pub(crate) fn runnable_variants(words: &[String]) -> Vec<Vec<String>> {
    let mut depth = 0usize;
    let mut kept = Vec::new();
    for word in words {
        let opens = word.matches('[').count();
        if depth == 0 && opens == 0 {
            kept.push(word.clone());
        }
        depth = (depth + opens).saturating_sub(word.matches(']').count());
    }
    let alternatives = kept.iter().map(|w| w.split('|').count()).max().unwrap_or(1);
    (0..alternatives)
        .map(|pick| {
            kept.iter()
                .map(|word| {
                    let choices: Vec<&str> = word.split('|').collect();
                    choices[pick.min(choices.len() - 1)].to_owned()
                })
                .collect::<Vec<String>>()
        })
        .filter(|variant| is_literal(variant))
        .collect()
}

const SAMPLE_ID: &str = "0192f1a8-7b2c-7d3e-8f40-000000000001";

/// A plausible value for a placeholder word, given the flag before it.
fn fill(word: &str, flag: Option<&str>) -> String {
    if word == "…" {
        return match flag {
            Some("--reason") => "why".to_owned(),
            _ => SAMPLE_ID.to_owned(),
        };
    }
    if word.contains('…') {
        let (scheme, _) = word.split_once('…').unwrap_or((word, ""));
        return match scheme {
            "https://" | "http://" => "https://127.0.0.1:8443".to_owned(),
            "postgres://" => "postgres://root@127.0.0.1:5432/test".to_owned(),
            "nats://" => "nats://127.0.0.1:4222".to_owned(),
            other => format!("{other}0192f1a8"),
        };
    }
    match word {
        "<deposit>" => "D000000000042".to_owned(),
        "<uuid>" => SAMPLE_ID.to_owned(),
        _ => word.replace("PORT", "8443"),
    }
}

/// The spellings a documented line stands for: optional parts kept, placeholders
/// filled, and one variant per alternative (`a|b|c`: the i-th variant takes each
/// word's i-th alternative, or its last). A trailing bare `…` ("its arguments")
/// gives each variant a form with and without it.
pub(crate) fn variants(words: &[String]) -> Vec<Vec<String>> {
    let plain: Vec<String> = words
        .iter()
        .map(|w| w.replace(['[', ']'], ""))
        .filter(|w| !w.is_empty())
        .collect();
    let alternatives = plain
        .iter()
        .map(|w| w.split('|').count())
        .max()
        .unwrap_or(1);
    let mut out = Vec::new();
    for pick in 0..alternatives {
        let mut variant: Vec<String> = Vec::with_capacity(plain.len());
        for word in &plain {
            let choices: Vec<&str> = word.split('|').collect();
            let chosen = choices[pick.min(choices.len() - 1)];
            let flag = variant
                .last()
                .map(String::as_str)
                .filter(|w| w.starts_with("--"));
            variant.push(fill(chosen, flag));
        }
        let bare_tail = plain.last().is_some_and(|w| w == "…")
            && !plain
                .iter()
                .rev()
                .nth(1)
                .is_some_and(|w| w.starts_with("--"));
        if bare_tail {
            let mut without = variant.clone();
            without.pop();
            out.push(without);
        }
        out.push(variant);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_is_read_with_its_continuation_without_its_comment() {
        let markdown = "text\n```sh\nsettle fees pay --day 2026-11-23 \\\n    --bank-url x   # why\n# only a comment\nexport A=1 B=$(x)\nsettle a \"two words\" &\n```\n```\nsettle output\n```\n";
        let lines = command_lines(markdown);
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[1].env, [("A".to_owned(), "1".to_owned())]);
        assert_eq!(lines[0].line, 3);
        assert_eq!(
            lines[0].words,
            [
                "settle",
                "fees",
                "pay",
                "--day",
                "2026-11-23",
                "--bank-url",
                "x"
            ]
        );
        assert_eq!(lines[1].words, ["settle", "a", "two words"]);
    }

    #[test]
    fn alternatives_options_and_placeholders_become_variants() {
        let words = split_words("settle payroll retry|rollback <deposit> [--reason …]");
        assert!(!is_literal(&words));
        let all = variants(&words);
        assert_eq!(
            all,
            vec![
                vec![
                    "settle",
                    "payroll",
                    "retry",
                    "D000000000042",
                    "--reason",
                    "why"
                ],
                vec![
                    "settle",
                    "payroll",
                    "rollback",
                    "D000000000042",
                    "--reason",
                    "why"
                ],
            ]
        );
        assert!(runnable_variants(&words).is_empty(), "a placeholder stays");
        let words = split_words("settle fees record|pay --day 1 [--bank-url https://… [--x y]]");
        assert_eq!(
            runnable_variants(&words),
            vec![
                vec!["settle", "fees", "record", "--day", "1"],
                vec!["settle", "fees", "pay", "--day", "1"],
            ]
        );
    }
}
