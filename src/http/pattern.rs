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

#[cfg(test)]
mod tests {
    use super::*;

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
}
