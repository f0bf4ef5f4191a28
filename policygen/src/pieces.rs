//! Splits a policy's source into pieces that parse on their own, so that a policy of a
//! million rules is parsed a piece at a time (the TOML parser holds every token and
//! value of what it parses: gigabytes for the whole file at once). A piece starts at an
//! `[[app]]`, `[[app.allow]]` or `[[app.review]]` header that begins a line outside any
//! value; the lexer tells headers from text inside strings, comments and arrays.

use std::ops::Range;

use toml_parser::lexer::TokenKind;
use toml_parser::Source;

/// A piece of the source, and whether it goes on with the previous piece's last app
/// (it starts with `[[app.allow]]` or `[[app.review]]`, not `[[app]]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Piece {
    pub range: Range<usize>,
    pub continues_app: bool,
}

/// Pieces of at least `min_bytes` (the last may be shorter), covering `src` in order.
pub(crate) fn pieces(src: &str, min_bytes: usize) -> Vec<Piece> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut continues_app = false;
    for (at, key) in headers(src) {
        let splittable = matches!(key.as_str(), "app" | "app.allow" | "app.review");
        if splittable && at - start >= min_bytes {
            out.push(Piece {
                range: start..at,
                continues_app,
            });
            start = at;
            continues_app = key != "app";
        }
    }
    out.push(Piece {
        range: start..src.len(),
        continues_app,
    });
    out
}

/// Where each array-of-tables header (`[[key]]`) begins a line, and its dotted key.
pub(crate) fn headers(src: &str) -> Vec<(usize, String)> {
    let source = Source::new(src);
    let mut tokens = source.lex().peekable();
    let mut out = Vec::new();
    // Brackets and braces open inside a value (after `=`), and whether a line holds one.
    let (mut depth, mut in_value, mut line_start) = (0usize, false, true);
    while let Some(t) = tokens.next() {
        match t.kind() {
            TokenKind::Newline if depth == 0 => {
                in_value = false;
                line_start = true;
                continue;
            }
            TokenKind::Whitespace | TokenKind::Comment | TokenKind::Newline => continue,
            TokenKind::Equals if depth == 0 => in_value = true,
            TokenKind::LeftSquareBracket | TokenKind::LeftCurlyBracket if in_value => depth += 1,
            TokenKind::RightSquareBracket | TokenKind::RightCurlyBracket if in_value => {
                depth = depth.saturating_sub(1)
            }
            TokenKind::LeftSquareBracket if line_start => {
                let at = t.span().start();
                if tokens
                    .peek()
                    .is_some_and(|n| n.kind() == TokenKind::LeftSquareBracket)
                {
                    tokens.next();
                    let mut key = String::new();
                    for k in tokens.by_ref() {
                        match k.kind() {
                            TokenKind::RightSquareBracket => break,
                            TokenKind::Whitespace => {}
                            TokenKind::Dot => key.push('.'),
                            _ => key.push_str(
                                src[k.span().start()..k.span().end()].trim_matches(['"', '\'']),
                            ),
                        }
                    }
                    out.push((at, key));
                }
            }
            _ => {}
        }
        line_start = false;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_only_at_app_headers_that_begin_a_line() {
        let src = "version = 1\n[[app]]\nname = \"a\"\n[[app.allow]]\nid = \"x\"\n\
                   reason = \"\"\"\n[[app]]\n\"\"\"\n# [[app]]\nports = [\n[1]]\n  [[ app . allow ]]\nid = \"y\"\n[[app]]\n";
        let heads: Vec<String> = headers(src).into_iter().map(|h| h.1).collect();
        assert_eq!(heads, ["app", "app.allow", "app.allow", "app"]);
        let p = pieces(src, 0);
        assert_eq!(p.len(), 5);
        assert_eq!(p[0].range.start, 0);
        assert!(p[2].continues_app && !p[4].continues_app);
        assert_eq!(p.last().unwrap().range.end, src.len());
        for w in p.windows(2) {
            assert_eq!(w[0].range.end, w[1].range.start);
        }
        assert_eq!(pieces(src, usize::MAX).len(), 1);
    }
}
