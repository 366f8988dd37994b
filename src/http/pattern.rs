//! Route patterns with the semantics of the npm `route-parser` package that
//! Node Hydra's `matchRoute` and hydra-router use: `:param` matches one
//! non-empty path segment (no `/` or `?`), `*splat` matches anything up to a
//! query string (possibly empty), `( … )` is optional, everything else is
//! literal. A match is anchored at both ends.

use std::collections::HashMap;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Literal(String),
    Param(String),
    Splat(String),
    Optional(Vec<Token>),
}

/// A compiled route pattern such as `/v1/users/:id(/*rest)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoutePattern {
    source: String,
    tokens: Vec<Token>,
}

impl RoutePattern {
    /// Compiles `pattern`. Unbalanced parentheses are taken literally.
    pub fn new(pattern: &str) -> RoutePattern {
        let chars: Vec<char> = pattern.chars().collect();
        let (tokens, _) = parse(&chars, 0, false);
        RoutePattern {
            source: pattern.to_string(),
            tokens,
        }
    }

    /// The pattern text.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// The named parameters if `path` matches.
    pub fn matches(&self, path: &str) -> Option<HashMap<String, String>> {
        let chars: Vec<char> = path.chars().collect();
        let mut params = Vec::new();
        match_tokens(&self.tokens, &chars, 0, &mut params, &mut |rest, _| rest == chars.len())
            .then(|| params.into_iter().collect())
    }

    /// Whether `path` matches, exactly when [`matches`](RoutePattern::matches)
    /// returns `Some`, but without allocating or capturing parameters: for
    /// callers that test many patterns per request (a router's route table).
    pub fn is_match(&self, path: &str) -> bool {
        is_match_at(&self.tokens, path, 0, &mut |end| end == path.len())
    }

    /// The literal text every matching path starts with: the pattern up to its
    /// first `:param`, `*splat` or `( … )` group (all of it when
    /// [`is_literal`](RoutePattern::is_literal)). Lets a route table index
    /// patterns by their leading segments, e.g. `/v1/users/` for
    /// `/v1/users/:id(/*rest)`.
    pub fn literal_prefix(&self) -> &str {
        match self.tokens.first() {
            Some(Token::Literal(text)) => text,
            _ => "",
        }
    }

    /// Whether the pattern has no parameter, splat or group, so that it
    /// matches exactly one path: its [`literal_prefix`](RoutePattern::literal_prefix).
    /// Characters that do not start one (a `:` not followed by a name, an
    /// unbalanced `(`) are literal, so `/weird(` is literal.
    pub fn is_literal(&self) -> bool {
        matches!(self.tokens.as_slice(), [] | [Token::Literal(_)])
    }
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '-'
}

/// Parses tokens until the end or, inside a group, the closing `)`.
fn parse(chars: &[char], mut i: usize, in_group: bool) -> (Vec<Token>, usize) {
    let mut tokens = Vec::new();
    let mut literal = String::new();
    let flush = |literal: &mut String, tokens: &mut Vec<Token>| {
        if !literal.is_empty() {
            tokens.push(Token::Literal(std::mem::take(literal)));
        }
    };
    while i < chars.len() {
        let c = chars[i];
        match c {
            ':' | '*' if i + 1 < chars.len() && is_name_char(chars[i + 1]) => {
                flush(&mut literal, &mut tokens);
                let start = i + 1;
                let mut end = start;
                while end < chars.len() && is_name_char(chars[end]) {
                    end += 1;
                }
                let name: String = chars[start..end].iter().collect();
                tokens.push(if c == ':' {
                    Token::Param(name)
                } else {
                    Token::Splat(name)
                });
                i = end;
            }
            '(' if has_closing(chars, i) => {
                flush(&mut literal, &mut tokens);
                let (inner, next) = parse(chars, i + 1, true);
                tokens.push(Token::Optional(inner));
                i = next;
            }
            ')' if in_group => {
                flush(&mut literal, &mut tokens);
                return (tokens, i + 1);
            }
            _ => {
                literal.push(c);
                i += 1;
            }
        }
    }
    flush(&mut literal, &mut tokens);
    (tokens, i)
}

fn has_closing(chars: &[char], open: usize) -> bool {
    let mut depth = 0;
    for &c in &chars[open..] {
        match c {
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth == 0 {
                    return true;
                }
            }
            _ => {}
        }
    }
    false
}

/// Captured parameters, in order.
type Params = Vec<(String, String)>;
/// What must still match after a token, given the position reached.
type Continuation<'a> = dyn FnMut(usize, &mut Params) -> bool + 'a;

/// Backtracking matcher: tries to match `tokens` at `pos`, then calls `done`
/// with the position reached; succeeds if some way through makes `done` true.
fn match_tokens(tokens: &[Token], input: &[char], pos: usize, params: &mut Params, done: &mut Continuation) -> bool {
    let Some((first, rest)) = tokens.split_first() else {
        return done(pos, params);
    };
    match first {
        Token::Literal(text) => {
            let len = text.chars().count();
            pos + len <= input.len()
                && input[pos..pos + len].iter().copied().eq(text.chars())
                && match_tokens(rest, input, pos + len, params, done)
        }
        Token::Param(name) | Token::Splat(name) => {
            let splat = matches!(first, Token::Splat(_));
            let mut limit = pos;
            while limit < input.len() && input[limit] != '?' && (splat || input[limit] != '/') {
                limit += 1;
            }
            // Splats are lazy (shortest first), params greedy, as in route-parser.
            let lengths: Vec<usize> = if splat {
                (pos..=limit).collect()
            } else {
                (pos + 1..=limit).rev().collect()
            };
            for end in lengths {
                params.push((name.clone(), input[pos..end].iter().collect()));
                if match_tokens(rest, input, end, params, done) {
                    return true;
                }
                params.pop();
            }
            false
        }
        Token::Optional(inner) => {
            let saved = params.len();
            let mut with_group = |after: usize, params: &mut Params| match_tokens(rest, input, after, params, done);
            if match_tokens(inner, input, pos, params, &mut with_group) {
                return true;
            }
            params.truncate(saved);
            match_tokens(rest, input, pos, params, done)
        }
    }
}

/// [`match_tokens`] without captures, on the UTF-8 bytes of `input`: tries
/// to match `tokens` at byte `pos`, then calls `done` with the position
/// reached. Parameters and splats end only on character boundaries, so every
/// way through is one [`match_tokens`] would try on the characters, in the
/// same order.
fn is_match_at(tokens: &[Token], input: &str, pos: usize, done: &mut dyn FnMut(usize) -> bool) -> bool {
    let Some((first, rest)) = tokens.split_first() else {
        return done(pos);
    };
    match first {
        Token::Literal(text) => {
            input.as_bytes()[pos..].starts_with(text.as_bytes()) && is_match_at(rest, input, pos + text.len(), done)
        }
        Token::Param(_) | Token::Splat(_) => {
            let splat = matches!(first, Token::Splat(_));
            let bytes = input.as_bytes();
            let mut limit = pos;
            while limit < bytes.len() && bytes[limit] != b'?' && (splat || bytes[limit] != b'/') {
                limit += 1;
            }
            let mut try_end = |end: usize| input.is_char_boundary(end) && is_match_at(rest, input, end, done);
            // Splats are lazy (shortest first), params greedy, as in route-parser.
            if splat {
                (pos..=limit).any(&mut try_end)
            } else {
                (pos + 1..=limit).rev().any(&mut try_end)
            }
        }
        Token::Optional(inner) => {
            is_match_at(inner, input, pos, &mut |after| is_match_at(rest, input, after, done))
                || is_match_at(rest, input, pos, done)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::strategy::Strategy;

    fn params(pattern: &str, path: &str) -> Option<Vec<(String, String)>> {
        RoutePattern::new(pattern).matches(path).map(|m| {
            let mut v: Vec<(String, String)> = m.into_iter().collect();
            v.sort();
            v
        })
    }

    fn p(pairs: &[(&str, &str)]) -> Option<Vec<(String, String)>> {
        Some(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect())
    }

    #[test]
    fn literals_params_splats_and_optionals() {
        assert_eq!(params("[get]/v1/alpha/hello", "[get]/v1/alpha/hello"), p(&[]));
        assert_eq!(params("[get]/v1/alpha/hello", "/v1/alpha/hello"), None);
        assert_eq!(params("/v1/hello/:name", "/v1/hello/ann"), p(&[("name", "ann")]));
        assert_eq!(params("/v1/hello/:name", "/v1/hello/"), None);
        assert_eq!(params("/v1/hello/:name", "/v1/hello/a/b"), None);
        assert_eq!(params("/files/*path", "/files/a/b/c.txt"), p(&[("path", "a/b/c.txt")]));
        assert_eq!(params("/files/*path", "/files/"), p(&[("path", "")]));
        assert_eq!(params("/users(/:id)", "/users"), p(&[]));
        assert_eq!(params("/users(/:id)", "/users/7"), p(&[("id", "7")]));
        assert_eq!(params("/:a/:b", "/x/y"), p(&[("a", "x"), ("b", "y")]));
        assert_eq!(params("/svc/:rest", "/svc/anything"), p(&[("rest", "anything")]));
        assert_eq!(params("/a/:x.json", "/a/report.json"), p(&[("x", "report")]));
        assert_eq!(params("/weird(", "/weird("), p(&[]));
        assert_eq!(
            params("/v1/x", "/v1/x?q=1"),
            None,
            "query strings are stripped by the caller"
        );
    }

    /// `is_match` must say yes exactly when `matches` does.
    fn agree(pattern: &str, path: &str) -> bool {
        let compiled = RoutePattern::new(pattern);
        compiled.is_match(path) == compiled.matches(path).is_some()
    }

    #[test]
    fn is_match_agrees_with_matches() {
        let patterns = [
            "[get]/v1/alpha/hello",
            "/v1/hello/:name",
            "/files/*path",
            "/users(/:id)",
            "/:a/:b",
            "/a/:x.json",
            "/weird(",
            "/:a:b",
            "/x/*a/y/*b",
            "",
            "/caf\u{e9}/:p",
        ];
        let paths = [
            "",
            "/",
            "[get]/v1/alpha/hello",
            "/v1/hello/ann",
            "/v1/hello/",
            "/v1/hello/a/b",
            "/files/a/b/c.txt",
            "/files/",
            "/users",
            "/users/7",
            "/x/y",
            "/a/report.json",
            "/weird(",
            "/\u{e9}",
            "/\u{e9}\u{e9}",
            "/x/1/y/2/y/3",
            "/caf\u{e9}/ok",
            "/v1/x?q=1",
        ];
        for pattern in patterns {
            for path in paths {
                assert!(agree(pattern, path), "{pattern:?} on {path:?}");
            }
        }
        // One two-byte character is one segment of one character: `:a:b` needs two.
        assert!(!RoutePattern::new("/:a:b").is_match("/\u{e9}"));
        assert!(RoutePattern::new("/:a:b").is_match("/\u{e9}\u{e9}"));
    }

    #[test]
    fn literal_prefix_stops_at_the_first_param_splat_or_group() {
        let prefix = |p: &str| RoutePattern::new(p).literal_prefix().to_string();
        assert_eq!(prefix("/v1/users/:id(/*rest)"), "/v1/users/");
        assert_eq!(prefix("/v1/users(/:id)"), "/v1/users");
        assert_eq!(prefix("*all"), "");
        assert_eq!(prefix("/v1/x"), "/v1/x");
        assert_eq!(prefix("/a:/b"), "/a:/b");
        assert!(RoutePattern::new("/v1/x").is_literal());
        assert!(RoutePattern::new("/weird(").is_literal());
        assert!(RoutePattern::new("").is_literal());
        assert!(!RoutePattern::new("/v1/:x").is_literal());
        assert!(!RoutePattern::new("/v1(/x)").is_literal());
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]

        /// On patterns and paths built from the pieces that matter (separators,
        /// params, splats, groups, multi-byte characters, a stray `?`), the
        /// allocation-free matcher agrees with the capturing one, and a match
        /// always starts with the literal prefix (what route tables rely on).
        #[test]
        fn is_match_agrees_with_matches_everywhere(
            pattern in proptest::collection::vec(proptest::sample::select(vec![
                "/", "a", "b", ".json", ":p", ":q", "*s", "(", ")", "(/a)", "(/:o)", "\u{e9}", ":",
            ]), 0..7).prop_map(|v| v.concat()),
            path in proptest::collection::vec(proptest::sample::select(vec![
                "/", "a", "b", ".json", "\u{e9}", "?", "%2F", "(", ")",
            ]), 0..8).prop_map(|v| v.concat()),
        ) {
            let compiled = RoutePattern::new(&pattern);
            let matched = compiled.matches(&path).is_some();
            proptest::prop_assert_eq!(compiled.is_match(&path), matched);
            if matched {
                proptest::prop_assert!(path.starts_with(compiled.literal_prefix()));
                if compiled.is_literal() {
                    proptest::prop_assert_eq!(&path, compiled.literal_prefix());
                }
            }
        }
    }
}
