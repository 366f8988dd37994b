//! JSON text exactly as JavaScript prints it: `to_string(v)` is what
//! `JSON.stringify(JSON.parse(s))` gives for any JSON text `s` that parses to
//! `v` (spec §7). Node Hydra's `markQueueMessage` removes a queue item with
//! `LREM` of `JSON.stringify(message)`, so every item we enqueue must already
//! be in this form, byte for byte, or a Node consumer never finds it again.
//!
//! The rules, from ECMA-262 (`JSON.stringify`, `Number::toString`,
//! `OrdinaryOwnPropertyKeys`):
//! - no whitespace; object members and array elements separated by `,`;
//! - object keys that are array indices (canonical decimal integers up to
//!   2³² − 2) come first, in ascending numeric order, then every other key in
//!   insertion order (a repeated key keeps its first position and its last
//!   value, as both `JSON.parse` and serde_json's ordered map do);
//! - strings escape only `"`, `\` and control characters (`\b \f \n \r \t`,
//!   the others as `\u00xx` in lowercase hex); `/`, DEL, U+2028/2029 and all
//!   non-ASCII text stay literal;
//! - numbers are IEEE doubles printed as `Number.prototype.toString` does:
//!   shortest round-trip digits, no `.0` on integers, exponent form
//!   (`1e+21`, `1.5e-7`) outside `1e-6 ≤ |x| < 1e21`; `-0` prints `0`, and a
//!   literal too large for a double (`1e400`) becomes `Infinity`, which prints
//!   `null`. Digits beyond a double's precision are lost, as in JavaScript
//!   (`123456789012345678901234567890` → `1.2345678901234568e+29`).

use std::fmt::Write as _;

use serde_json::{Map, Number, Value};

/// `value` as JavaScript's `JSON.stringify` prints it.
pub(crate) fn to_string(value: &Value) -> String {
    let mut out = String::new();
    write_value(&mut out, value);
    out
}

fn write_value(out: &mut String, value: &Value) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(true) => out.push_str("true"),
        Value::Bool(false) => out.push_str("false"),
        Value::Number(n) => write_number(out, n),
        Value::String(s) => write_string(out, s),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_value(out, item);
            }
            out.push(']');
        }
        Value::Object(map) => write_object(out, map),
    }
}

fn write_object(out: &mut String, map: &Map<String, Value>) {
    let mut indices: Vec<(u32, &String, &Value)> = Vec::new();
    let mut others: Vec<(&String, &Value)> = Vec::with_capacity(map.len());
    for (key, value) in map {
        match array_index(key) {
            Some(index) => indices.push((index, key, value)),
            None => others.push((key, value)),
        }
    }
    indices.sort_unstable_by_key(|(index, _, _)| *index);
    out.push('{');
    let members = indices.into_iter().map(|(_, k, v)| (k, v)).chain(others);
    for (i, (key, value)) in members.enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_string(out, key);
        out.push(':');
        write_value(out, value);
    }
    out.push('}');
}

/// The array index a property key denotes, if any: the canonical decimal form
/// (no sign, no leading zero) of an integer from 0 to 2³² − 2.
fn array_index(key: &str) -> Option<u32> {
    let bytes = key.as_bytes();
    if bytes.is_empty() || bytes.len() > 10 || !bytes.iter().all(u8::is_ascii_digit) {
        return None;
    }
    if bytes.len() > 1 && bytes[0] == b'0' {
        return None;
    }
    let n: u64 = key.parse().ok()?;
    u32::try_from(n).ok().filter(|&n| n != u32::MAX)
}

fn write_string(out: &mut String, s: &str) {
    out.push('"');
    let mut plain_from = 0;
    for (i, c) in s.char_indices() {
        let escape = match c {
            '"' => "\\\"",
            '\\' => "\\\\",
            '\u{8}' => "\\b",
            '\u{c}' => "\\f",
            '\n' => "\\n",
            '\r' => "\\r",
            '\t' => "\\t",
            c if (c as u32) < 0x20 => "",
            _ => continue,
        };
        out.push_str(&s[plain_from..i]);
        if escape.is_empty() {
            let _ = write!(out, "\\u{:04x}", c as u32);
        } else {
            out.push_str(escape);
        }
        plain_from = i + c.len_utf8();
    }
    out.push_str(&s[plain_from..]);
    out.push('"');
}

fn write_number(out: &mut String, n: &Number) {
    // With `arbitrary_precision`, a Number keeps its literal text; JavaScript
    // reads it as the nearest double, as Rust's correctly rounded parser does.
    let x: f64 = n.to_string().parse().unwrap_or(f64::NAN);
    if x.is_finite() {
        out.push_str(&js_number(x));
    } else {
        out.push_str("null");
    }
}

/// A finite double as JavaScript's `Number.prototype.toString()` prints it
/// (ECMA-262 `Number::toString`, radix 10).
pub(crate) fn js_number(x: f64) -> String {
    if x == 0.0 {
        return "0".to_string(); // also -0
    }
    // Below 2^53 every integer is a double, so its shortest digits are the
    // integer itself.
    if x.fract() == 0.0 && x.abs() < 9_007_199_254_740_992.0 {
        return (x as i64).to_string();
    }
    let (digits, exponent) = shortest_digits(x.abs());
    let k = digits.len() as i32; // number of significant digits
    let n = exponent + 1; // position of the decimal point relative to the digits
    let mut out = String::with_capacity(digits.len() + 8);
    if x < 0.0 {
        out.push('-');
    }
    if k <= n && n <= 21 {
        out.push_str(&digits);
        out.extend(std::iter::repeat_n('0', (n - k) as usize));
    } else if 0 < n && n <= 21 {
        out.push_str(&digits[..n as usize]);
        out.push('.');
        out.push_str(&digits[n as usize..]);
    } else if -6 < n && n <= 0 {
        out.push_str("0.");
        out.extend(std::iter::repeat_n('0', (-n) as usize));
        out.push_str(&digits);
    } else {
        out.push_str(&digits[..1]);
        if k > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        let e = n - 1;
        let _ = write!(out, "e{}{}", if e >= 0 { '+' } else { '-' }, e.abs());
    }
    out
}

/// The significant digits and decimal exponent of the shortest decimal that
/// reads back as `x` (positive, finite), choosing as JavaScript does.
///
/// Rust's `{:e}` gives the shortest round-trip digits and, among those, the
/// closest to `x`. When two are equally close (`x` lies exactly halfway,
/// e.g. 817830907484182.25 between …182.2 and …182.3), JavaScript takes the
/// one whose last digit is even and Rust the upper one, so ties are settled
/// here from `x`'s exact decimal expansion.
fn shortest_digits(x: f64) -> (String, i32) {
    let (digits, exponent) = split_exp(&format!("{x:e}"));
    let k = digits.len();
    // Two k-digit neighbours can both read back as `x` only if their distance
    // (one unit in the k-th digit) is at most the gap to the next double;
    // otherwise no tie is possible (the margin covers rounding in `powi`).
    let step = 10f64.powi(exponent + 1 - k as i32);
    let gap = f64::from_bits(x.to_bits() + 1) - x;
    if step > gap * 1.01 {
        return (digits, exponent);
    }
    // A tie means the exact expansion is `<k digits>5` and nothing after.
    // Screen with 41 digits (cheap), then confirm with all of them: a double's
    // exact expansion has at most 767 significant digits.
    let looks_like_tie = |text: &str| {
        let (exact, exact_exponent) = split_exp(text);
        exact_exponent == exponent
            && exact.as_bytes().get(k) == Some(&b'5')
            && exact.as_bytes()[k + 1..].iter().all(|&d| d == b'0')
    };
    if k >= 40 || !looks_like_tie(&format!("{x:.40e}")) || !looks_like_tie(&format!("{x:.800e}")) {
        return (digits, exponent);
    }
    let exact = split_exp(&format!("{x:.800e}")).0;
    let lower = exact[..k].to_string();
    let Some(upper) = increment(&lower) else {
        return (digits, exponent);
    };
    let even = if lower.as_bytes()[k - 1].is_multiple_of(2) {
        lower
    } else {
        upper
    };
    // Only a candidate if it reads back as `x`.
    let reads_back = format!("{even}e{}", exponent - (k as i32 - 1)).parse::<f64>() == Ok(x);
    if reads_back {
        (even, exponent)
    } else {
        (digits, exponent)
    }
}

/// A string of decimal digits plus one, or `None` when it would need one
/// more digit.
fn increment(digits: &str) -> Option<String> {
    let mut bytes = digits.as_bytes().to_vec();
    for b in bytes.iter_mut().rev() {
        if *b == b'9' {
            *b = b'0';
        } else {
            *b += 1;
            return String::from_utf8(bytes).ok();
        }
    }
    None
}

/// `d[.ddd]e<exp>` → (all digits, exp).
fn split_exp(sci: &str) -> (String, i32) {
    let (mantissa, exponent) = sci.split_once('e').expect("{:e} always has an exponent");
    let digits = mantissa.chars().filter(|c| *c != '.').collect();
    (digits, exponent.parse().expect("{:e} exponent is an integer"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader, Write};
    use std::process::{Command, Stdio};

    fn round_trip(text: &str) -> String {
        to_string(&serde_json::from_str::<Value>(text).unwrap())
    }

    #[test]
    fn known_cases() {
        assert_eq!(
            round_trip(r#"{"b":1,"2":2,"1":3,"a":4,"4294967294":5,"4294967295":6,"01":7,"-1":8,"0":10}"#),
            r#"{"0":10,"1":3,"2":2,"4294967294":5,"b":1,"a":4,"4294967295":6,"01":7,"-1":8}"#
        );
        assert_eq!(round_trip(r#"{"a":1,"b":2,"a":3}"#), r#"{"a":3,"b":2}"#);
        assert_eq!(
            round_trip(
                "[1e21,1e-7,123456789012345678901234567890,-0,0.1,1E5,5e-324,1e400,100,1.5e-7,0.000001,123e-20]"
            ),
            "[1e+21,1e-7,1.2345678901234568e+29,0,0.1,100000,5e-324,null,100,1.5e-7,0.000001,1.23e-18]"
        );
        assert_eq!(
            round_trip(r#" { "s" : "\u2028\u007f\/\u0000\u001f\b\f\n\r\t\"\\é😀" } "#),
            "{\"s\":\"\u{2028}\u{7f}/\\u0000\\u001f\\b\\f\\n\\r\\t\\\"\\\\é😀\"}"
        );
        assert_eq!(js_number(-1.5), "-1.5");
        assert_eq!(js_number(1e20), "100000000000000000000");
        assert_eq!(js_number(-1e-7), "-1e-7");
        // Halfway between two shortest candidates: the even one, as V8.
        let exact = |s: &str| s.parse::<f64>().unwrap();
        assert_eq!(js_number(exact("817830907484182.25")), "817830907484182.2");
        assert_eq!(js_number(exact("193745065059719.625")), "193745065059719.62");
        assert_eq!(js_number(2f64.powi(60)), "1152921504606847000");
        assert_eq!(js_number(9007199254740991.0), "9007199254740991");
    }

    /// Awkward JSON texts: numbers of every shape, strings with every control
    /// character, escapes and non-ASCII text, objects with index-like keys.
    fn awkward_inputs() -> Vec<String> {
        let mut inputs: Vec<String> = [
            "0",
            "-0",
            "0.0",
            "-0.0",
            "1",
            "-1",
            "1.0",
            "1.50",
            "100",
            "1e2",
            "1E2",
            "1e+2",
            "1e-2",
            "0.1",
            "0.2",
            "0.30000000000000004",
            "1e21",
            "1e20",
            "999999999999999999999",
            "1e-6",
            "1e-7",
            "0.000001",
            "0.0000001",
            "1.5e-7",
            "123e-20",
            "5e-324",
            "2.2250738585072014e-308",
            "1.7976931348623157e308",
            "1e308",
            "1e309",
            "-1e400",
            "1e-400",
            "-1e-400",
            "9007199254740991",
            "9007199254740992",
            "9007199254740993",
            "18446744073709551615",
            "18446744073709551616",
            "-9223372036854775808",
            "123456789012345678901234567890",
            "0.1e1",
            "12345678901234567890e-30",
            "4.35",
            "0.5e-6",
            "1e-5",
            "123456.789e3",
            "1.2345e-5",
            "100000000000000000000000",
            "3.14159265358979323846264338327950288",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let mut rng = fastrand::Rng::with_seed(0x5eed);
        for _ in 0..20_000 {
            let x = f64::from_bits(rng.u64(..));
            if x.is_finite() {
                inputs.push(format!("{x:e}"));
            }
        }
        for _ in 0..5_000 {
            inputs.push(format!("{}", rng.f64() * 10f64.powi(rng.i32(-12..25))));
            inputs.push(format!("{}", rng.i64(..)));
            inputs.push(format!("{}e{}", rng.u32(..), rng.i32(-30..30)));
            inputs.push(format!("-{}.{:0>5}", rng.u16(..), rng.u16(..)));
            // Exactly halfway between two shortest candidates: JavaScript
            // picks the even one.
            let big = rng.u64(10_000_000_000_000..9_000_000_000_000_000);
            inputs.push(format!("{big}.{}", ["25", "75", "5", "125", "375"][rng.usize(0..5)]));
        }
        let mut all_chars = String::new();
        for c in (0u32..0x80).chain([0xe9, 0x2028, 0x2029, 0xfeff, 0xffff, 0x1f600, 0x10ffff]) {
            all_chars.push(char::from_u32(c).unwrap());
        }
        inputs.push(serde_json::to_string(&all_chars).unwrap());
        inputs.push(r#""\u0041\u00e9\ud83d\ude00\/\b\f\n\r\t\"\\ \u007f\u001F""#.to_string());
        inputs.push(r#"{"0":1,"10":2,"9":3,"a":4,"4294967295":5,"4294967294":6,"007":7,"1.5":8,"":9,"-0":10}"#.into());
        inputs.push(r#"{"__proto__":{"x":1},"constructor":null,"a":[],"b":{}}"#.into());
        inputs.push(r#"{"a":1,"b":2,"a":{"c":3},"b":[1,2,{"2":0,"1":0}]}"#.into());
        inputs.push(r#"[[[[[[[[[[{"deep":[1,-2.5e-10,"x"]}]]]]]]]]]]"#.into());
        inputs.push(
            r#"{"to":"q:/","frm":"n:/","mid":"m","ts":"2026-01-01T00:00:00.000Z","ver":"UMF/1.4.6","bdy":{"t":"✓ ñ \u0007","n":1.10,"big":1e999}}"#
                .into(),
        );
        for _ in 0..500 {
            let len = rng.usize(0..12);
            let s: String = (0..len)
                .map(|_| match rng.u8(0..4) {
                    0 => char::from_u32(rng.u32(0..0x20)).unwrap(),
                    1 => ['"', '\\', '/', '\u{7f}', '\u{2028}'][rng.usize(0..5)],
                    2 => rng.char('\u{80}'..='\u{10ffff}'),
                    _ => rng.alphanumeric(),
                })
                .collect();
            let mut object = Map::new();
            object.insert(s.clone(), serde_json::json!([s, rng.i32(..)]));
            inputs.push(Value::Object(object).to_string());
        }
        inputs
    }

    /// Every awkward input printed by us and by real JavaScript (`node`) must
    /// be byte for byte the same.
    #[test]
    fn matches_node_json_stringify() {
        let inputs = awkward_inputs();
        let script = "const rl = require('readline').createInterface({input: process.stdin}); \
                      rl.on('line', (l) => process.stdout.write(JSON.stringify(JSON.parse(l)) + '\\n'));";
        let mut child = Command::new("node")
            .args(["-e", script])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("run node (Node.js must be installed; scripts/test installs it)");
        let mut stdin = child.stdin.take().unwrap();
        let feeder = {
            let inputs = inputs.clone();
            std::thread::spawn(move || {
                for input in &inputs {
                    // JSON texts never contain raw newlines outside strings, and
                    // control characters inside strings are always escaped.
                    writeln!(stdin, "{input}").unwrap();
                }
            })
        };
        let expected: Vec<String> = BufReader::new(child.stdout.take().unwrap())
            .lines()
            .map(Result::unwrap)
            .collect();
        feeder.join().unwrap();
        assert!(child.wait().unwrap().success());
        assert_eq!(expected.len(), inputs.len(), "node printed one line per input");
        let mut mismatches = Vec::new();
        for ((input, node), ours) in inputs.iter().zip(&expected).zip(inputs.iter().map(|i| round_trip(i))) {
            if *node != ours {
                mismatches.push(format!("input {input}\n  node {node}\n  ours {ours}"));
            }
        }
        assert!(
            mismatches.is_empty(),
            "{} of {} differ:\n{}",
            mismatches.len(),
            inputs.len(),
            mismatches[..mismatches.len().min(20)].join("\n")
        );
    }
}
