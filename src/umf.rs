//! UMF messages (spec §4): Node Hydra's long and short field names, its route
//! grammar (`parseRoute`), validation, replies and HMAC signatures.
//!
//! On input, long, short and mixed forms are accepted; for each field the long
//! name wins, and JavaScript-falsy values (`""`, `0`, `false`, `null`) count as
//! absent, as in Node's `createMessage`. On the wire, messages are compact
//! short-form JSON in Node's key order.

use hmac::{Hmac, Mac};
use serde_json::{Number, Value};

use crate::error::{Error, Result};
use crate::timestamp;

/// `version` of every message Hydra creates.
pub const UMF_VERSION: &str = "UMF/1.4.6";

/// Node's reason text when `to`, `from` or `body` is missing.
pub const INVALID_UMF_REASON: &str = r#"UMF message requires "to", "from" and "body" fields"#;

/// (long name, short name), in the order Node serializes them.
const FIELDS: [(&str, &str); 14] = [
    ("to", "to"),
    ("from", "frm"),
    ("headers", "hdr"),
    ("mid", "mid"),
    ("rmid", "rmid"),
    ("signature", "sig"),
    ("timeout", "tmo"),
    ("timestamp", "ts"),
    ("type", "typ"),
    ("version", "ver"),
    ("via", "via"),
    ("forward", "fwd"),
    ("body", "bdy"),
    ("authorization", "aut"),
];

/// A UMF message.
///
/// `mid`, `timestamp` and `version` are always set (generated when absent);
/// the other optional fields are `None` when absent.
///
/// ```
/// use hydra::Umf;
/// use serde_json::json;
///
/// # fn main() -> hydra::Result<()> {
/// let message = Umf::new("billing:[get]/v1/invoices/7", "shop:/", json!({"n": 1}));
/// let route = message.to_route()?;
/// assert_eq!(route.service_name, "billing");
/// assert_eq!(route.http_method.as_deref(), Some("get"));
/// assert_eq!(route.api_route, "/v1/invoices/7");
///
/// // On the wire: Node's short form (`to`, `frm`, `mid`, `bdy`, …).
/// let wire = message.to_short_json();
/// assert_eq!(Umf::parse(&wire)?.body, json!({"n": 1}));
///
/// // A reply goes back to the sender and names the message it answers.
/// let reply = message.reply(json!({"total": 120}));
/// assert_eq!(reply.to, "shop:/");
/// assert_eq!(reply.rmid.as_deref(), Some(message.mid.as_str()));
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Umf {
    /// Destination route, e.g. `billing:/`, `<instanceID>@billing:/` or
    /// `billing:[get]/v1/invoices`.
    pub to: String,
    /// Sender route; replies go here (or to `via`).
    pub from: String,
    /// Protocol headers (an object in practice; any JSON value is kept).
    pub headers: Option<Value>,
    /// Message ID: uuid v4 with dashes.
    pub mid: String,
    /// ID of the message this one answers.
    pub rmid: Option<String>,
    /// HMAC signature, hex.
    pub signature: Option<String>,
    /// Timeout in seconds (used by HTTP calls).
    pub timeout: Option<Number>,
    /// ISO-8601 creation time, JavaScript style.
    pub timestamp: String,
    /// Message type (`type` / `typ`).
    pub message_type: Option<String>,
    /// Protocol version, `UMF/1.4.6`.
    pub version: String,
    /// Intermediary (e.g. a router); replies go to `via` when set.
    pub via: Option<String>,
    /// Forwarding route, copied into replies.
    pub forward: Option<String>,
    /// The payload (`Value::Null` when absent).
    pub body: Value,
    /// Sent as the HTTP `Authorization` header by HTTP calls.
    pub authorization: Option<String>,
}

impl Umf {
    /// A message from `from` to `to` with `body`, and a fresh `mid` and
    /// timestamp.
    pub fn new(to: impl Into<String>, from: impl Into<String>, body: Value) -> Umf {
        Umf {
            to: to.into(),
            from: from.into(),
            headers: None,
            mid: new_mid(),
            rmid: None,
            signature: None,
            timeout: None,
            timestamp: timestamp::now_iso(),
            message_type: None,
            version: UMF_VERSION.to_string(),
            via: None,
            forward: None,
            body,
            authorization: None,
        }
    }

    /// Parses UMF JSON in long, short or mixed form. Fails with
    /// [`Error::BadRequest`] when the text is not a JSON object or a field has
    /// the wrong type; call [`validate`](Umf::validate) for the required fields.
    pub fn parse(text: &str) -> Result<Umf> {
        let value: Value =
            serde_json::from_str(text).map_err(|e| Error::BadRequest(format!("UMF message is not valid JSON: {e}")))?;
        Umf::from_value(value)
    }

    /// [`Umf::parse`] from an already parsed JSON value.
    pub fn from_value(value: Value) -> Result<Umf> {
        let Value::Object(mut map) = value else {
            return Err(Error::BadRequest("UMF message must be a JSON object".into()));
        };
        // Values are moved out of the map, not cloned: bodies can be large.
        let mut field = |long: &str, short: &str| -> Option<Value> {
            let long_value = map.remove(long).filter(is_truthy);
            let short_value = if short == long {
                None
            } else {
                map.remove(short).filter(is_truthy)
            };
            long_value.or(short_value)
        };
        let mut text = |long: &str, short: &str| -> Result<Option<String>> {
            match field(long, short) {
                None => Ok(None),
                Some(Value::String(s)) => Ok(Some(s)),
                Some(other) => Err(Error::BadRequest(format!(
                    "UMF field \"{long}\" must be a string, got {other}"
                ))),
            }
        };
        let to = text("to", "to")?.unwrap_or_default();
        let from = text("from", "frm")?.unwrap_or_default();
        let mid = text("mid", "mid")?.unwrap_or_else(new_mid);
        let rmid = text("rmid", "rmid")?;
        let signature = text("signature", "sig")?;
        let timestamp = text("timestamp", "ts")?.unwrap_or_else(timestamp::now_iso);
        let message_type = text("type", "typ")?;
        let version = text("version", "ver")?.unwrap_or_else(|| UMF_VERSION.to_string());
        let via = text("via", "via")?;
        let forward = text("forward", "fwd")?;
        let authorization = text("authorization", "aut")?;
        let timeout = match field("timeout", "tmo") {
            None => None,
            Some(Value::Number(n)) => Some(n),
            Some(Value::String(s)) => Some(
                s.trim()
                    .parse::<Number>()
                    .map_err(|_| Error::BadRequest(format!("UMF field \"timeout\" is not a number: {s:?}")))?,
            ),
            Some(other) => {
                return Err(Error::BadRequest(format!(
                    "UMF field \"timeout\" must be a number, got {other}"
                )));
            }
        };
        Ok(Umf {
            to,
            from,
            headers: field("headers", "hdr"),
            mid,
            rmid,
            signature,
            timeout,
            timestamp,
            message_type,
            version,
            via,
            forward,
            body: field("body", "bdy").unwrap_or(Value::Null),
            authorization,
        })
    }

    /// Node's `validate()`: `to`, `from` and `body` must be present, else
    /// [`Error::BadRequest`] with Node's reason text.
    pub fn validate(&self) -> Result<()> {
        if self.to.is_empty() || self.from.is_empty() || !is_truthy(&self.body) {
            return Err(Error::BadRequest(INVALID_UMF_REASON.into()));
        }
        Ok(())
    }

    /// The parsed `to` route.
    pub fn to_route(&self) -> Result<Route> {
        Route::parse(&self.to)
    }

    /// Compact short-form JSON in Node's key order: what goes on the wire.
    pub fn to_short_json(&self) -> String {
        serde_json::to_string(&WireView::new(self, false)).expect("a UMF message serializes")
    }

    /// Compact long-form JSON in Node's key order (Node's `JSON.stringify(msg)`).
    pub fn to_long_json(&self) -> String {
        serde_json::to_string(&WireView::new(self, true)).expect("a UMF message serializes")
    }

    /// The short form as a JSON object.
    pub fn to_short_value(&self) -> Value {
        serde_json::to_value(WireView::new(self, false)).expect("a UMF message serializes")
    }

    /// Node's `signMessage(algorithm, secret)`: HMAC of the long-form JSON
    /// without a signature, hex, stored in `signature`. Algorithms: `sha256`,
    /// `sha512`.
    pub fn sign(&mut self, algorithm: &str, secret: &[u8]) -> Result<()> {
        self.signature = None;
        self.signature = Some(hmac_hex(algorithm, secret, self.to_long_json().as_bytes())?);
        Ok(())
    }

    /// True iff `signature` is the HMAC [`sign`](Umf::sign) would compute
    /// (compared in constant time).
    pub fn verify(&self, algorithm: &str, secret: &[u8]) -> Result<bool> {
        let Some(signature) = &self.signature else {
            return Ok(false);
        };
        let mut unsigned = self.clone();
        unsigned.signature = None;
        let expected = hmac_hex(algorithm, secret, unsigned.to_long_json().as_bytes())?;
        Ok(constant_time_eq(
            expected.as_bytes(),
            signature.to_ascii_lowercase().as_bytes(),
        ))
    }

    /// The reply to `self` carrying `response`'s fields: `to` = our `via` or
    /// `from`, `from` = our `to`, `rmid` = our `mid`, `via` and `forward`
    /// copied, with a new `mid` and timestamp (Node's `sendReplyMessage`).
    /// `via` stays because Node's hydra-router delivers a reply to its
    /// WebSocket client only when the reply still names it there
    /// (`<routerID>-<clientID>@hydra-router:/`). Unlike Node, the reply does not
    /// inherit the original's other fields (body, headers, authorization, …);
    /// a response's own `to`/`from` are overridden as in Node only where Node
    /// overrides them.
    pub fn reply_with(&self, response: Umf) -> Umf {
        let mut reply = response;
        reply.rmid = Some(self.mid.clone());
        if reply.to.is_empty() {
            reply.to = self.from.clone();
        }
        if reply.from.is_empty() {
            reply.from = self.to.clone();
        }
        if let Some(via) = self.via.as_ref().filter(|v| !v.is_empty()) {
            reply.to = via.clone();
            // As in Node, a response's own `via` wins over the original's.
            if reply.via.as_deref().is_none_or(str::is_empty) {
                reply.via = Some(via.clone());
            }
        }
        reply.forward = self.forward.clone();
        reply
    }

    /// A reply to `self` whose body is `body` (see [`reply_with`](Umf::reply_with)).
    pub fn reply(&self, body: Value) -> Umf {
        self.reply_with(Umf::new("", "", body))
    }
}

/// A borrowed view of a message that serializes in Node's key order, short or
/// long names, skipping absent and JavaScript-falsy fields, without copying.
struct WireView<'a> {
    umf: &'a Umf,
    long: bool,
}

impl<'a> WireView<'a> {
    fn new(umf: &'a Umf, long: bool) -> WireView<'a> {
        WireView { umf, long }
    }
}

impl serde::Serialize for WireView<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let m = self.umf;
        fn text(s: &str) -> Option<&str> {
            (!s.is_empty()).then_some(s)
        }
        fn opt(s: &Option<String>) -> Option<&str> {
            s.as_deref().filter(|s| !s.is_empty())
        }
        let headers = m.headers.as_ref().filter(|v| is_truthy(v));
        let timeout = m.timeout.as_ref().filter(|n| n.as_f64().is_some_and(|f| f != 0.0));
        let body = Some(&m.body).filter(|v| is_truthy(v));
        let mut map = serializer.serialize_map(None)?;
        let put_text = |map: &mut S::SerializeMap, (long, short): (&str, &str), value: Option<&str>| match value {
            Some(v) => map.serialize_entry(if self.long { long } else { short }, v),
            None => Ok(()),
        };
        put_text(&mut map, FIELDS[0], text(&m.to))?;
        put_text(&mut map, FIELDS[1], text(&m.from))?;
        if let Some(h) = headers {
            map.serialize_entry(if self.long { FIELDS[2].0 } else { FIELDS[2].1 }, h)?;
        }
        put_text(&mut map, FIELDS[3], text(&m.mid))?;
        put_text(&mut map, FIELDS[4], opt(&m.rmid))?;
        put_text(&mut map, FIELDS[5], opt(&m.signature))?;
        if let Some(t) = timeout {
            map.serialize_entry(if self.long { FIELDS[6].0 } else { FIELDS[6].1 }, t)?;
        }
        put_text(&mut map, FIELDS[7], text(&m.timestamp))?;
        put_text(&mut map, FIELDS[8], opt(&m.message_type))?;
        put_text(&mut map, FIELDS[9], text(&m.version))?;
        put_text(&mut map, FIELDS[10], opt(&m.via))?;
        put_text(&mut map, FIELDS[11], opt(&m.forward))?;
        if let Some(b) = body {
            map.serialize_entry(if self.long { FIELDS[12].0 } else { FIELDS[12].1 }, b)?;
        }
        put_text(&mut map, FIELDS[13], opt(&m.authorization))?;
        map.end()
    }
}

/// A parsed `to`/`from` route (Node's `parseRoute`, spec §4.4).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Route {
    /// Instance ID before `@`, or empty.
    pub instance: String,
    /// Part of the instance after `-`, or empty.
    pub sub_id: String,
    /// Service name.
    pub service_name: String,
    /// Lowercased HTTP method from `[method]`, if any (`Some("")` for `[]`).
    pub http_method: Option<String>,
    /// The rest of the route after the service name (may contain `:`).
    pub api_route: String,
}

impl Route {
    /// Parses `[instance[-subid]@]service:[method]apiRoute`.
    ///
    /// Differs from Node in one way: Node re-joins the first two segments of
    /// any route whose first segment *starts with* `http` (meant for `http://…`
    /// targets), which mangles services such as `httpbin`. Here only a first
    /// segment that is exactly the scheme `http` or `https` is re-joined, so
    /// URL targets parse as in Node and `httpbin` is an ordinary service.
    pub fn parse(route: &str) -> Result<Route> {
        let segments: Vec<&str> = route.split(':').collect();
        if segments.len() < 2 {
            return Err(Error::BadRequest(
                "route field has invalid number of routable segments".into(),
            ));
        }
        let mut parsed = Route::default();
        let (head, rest) = if matches!(segments[0], "http" | "https") && segments.len() > 2 {
            (
                route[..segments[0].len() + 1 + segments[1].len()].to_string(),
                &segments[2..],
            )
        } else {
            (segments[0].to_string(), &segments[1..])
        };
        match head.split_once('@') {
            Some((instance, service)) => {
                match instance.split_once('-') {
                    Some((id, sub)) => {
                        parsed.instance = id.to_string();
                        // Node keeps the part between the first and second '-'.
                        parsed.sub_id = sub.split('-').next().unwrap_or("").to_string();
                    }
                    None => parsed.instance = instance.to_string(),
                }
                parsed.service_name = service.to_string();
            }
            None => parsed.service_name = head.clone(),
        }
        let mut api_route = rest.join(":");
        if api_route.starts_with('[') {
            let Some(end) = api_route.find(']') else {
                return Err(Error::BadRequest(
                    "route field has ill-formed HTTP method verb in segment".into(),
                ));
            };
            parsed.http_method = Some(api_route[1..end].to_lowercase());
            api_route = api_route[end + 1..].to_string();
        }
        parsed.api_route = api_route;
        Ok(parsed)
    }
}

/// JavaScript truthiness of a JSON value.
pub(crate) fn is_truthy(value: &Value) -> bool {
    match value {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0 && !f.is_nan()),
        Value::String(s) => !s.is_empty(),
        Value::Array(_) | Value::Object(_) => true,
    }
}

/// A new message ID: uuid v4 with dashes.
pub(crate) fn new_mid() -> String {
    uuid::Uuid::new_v4().hyphenated().to_string()
}

fn hmac_hex(algorithm: &str, secret: &[u8], data: &[u8]) -> Result<String> {
    let bytes = match algorithm.to_ascii_lowercase().as_str() {
        "sha256" => {
            let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret).expect("HMAC takes keys of any size");
            mac.update(data);
            mac.finalize().into_bytes().to_vec()
        }
        "sha512" => {
            let mut mac = Hmac::<sha2::Sha512>::new_from_slice(secret).expect("HMAC takes keys of any size");
            mac.update(data);
            mac.finalize().into_bytes().to_vec()
        }
        other => {
            return Err(Error::BadRequest(format!(
                "unsupported signature algorithm {other:?} (use sha256 or sha512)"
            )));
        }
    };
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fixture() -> Umf {
        Umf::from_value(json!({
            "to": "xxx", "from": "yyy", "headers": "aaa", "mid": "mid123", "rmid": "rmid123",
            "timeout": 3000, "timestamp": "2018-03-11T16:52:42.060Z", "type": "type-http",
            "version": "UMF/1.4.6", "via": "uid:123", "forward": "yyy@aaa",
            "body": {"a": "a", "b": "b"}, "authorization": "secret"
        }))
        .unwrap()
    }

    #[test]
    fn signature_matches_node() {
        let mut m = fixture();
        assert_eq!(
            m.to_long_json(),
            r#"{"to":"xxx","from":"yyy","headers":"aaa","mid":"mid123","rmid":"rmid123","timeout":3000,"timestamp":"2018-03-11T16:52:42.060Z","type":"type-http","version":"UMF/1.4.6","via":"uid:123","forward":"yyy@aaa","body":{"a":"a","b":"b"},"authorization":"secret"}"#
        );
        m.sign("sha256", b"testing").unwrap();
        assert_eq!(
            m.signature.as_deref(),
            Some("4796729993fe18df531d16668505b4fd6741c94c0a9db5116df214d7277d587d")
        );
        assert!(m.verify("sha256", b"testing").unwrap());
        assert!(!m.verify("sha256", b"wrong").unwrap());
        m.body = json!({"a": "tampered"});
        assert!(!m.verify("sha256", b"testing").unwrap());
        assert!(m.sign("md4", b"x").is_err());
    }

    #[test]
    fn short_form_in_node_order() {
        let m = fixture();
        assert_eq!(
            m.to_short_json(),
            r#"{"to":"xxx","frm":"yyy","hdr":"aaa","mid":"mid123","rmid":"rmid123","tmo":3000,"ts":"2018-03-11T16:52:42.060Z","typ":"type-http","ver":"UMF/1.4.6","via":"uid:123","fwd":"yyy@aaa","bdy":{"a":"a","b":"b"},"aut":"secret"}"#
        );
        assert_eq!(Umf::parse(&m.to_short_json()).unwrap(), m);
        assert_eq!(Umf::parse(&m.to_long_json()).unwrap(), m);
    }

    #[test]
    fn long_name_wins_and_falsy_is_absent() {
        let m = Umf::parse(r#"{"to":"a:/","frm":"short","from":"long","bdy":{"x":1},"body":0,"rmid":"","typ":false}"#)
            .unwrap();
        assert_eq!(m.from, "long");
        assert_eq!(m.body, json!({"x": 1}), "a falsy long name falls back to the short one");
        assert_eq!(m.rmid, None);
        assert_eq!(m.message_type, None);
        assert_eq!(m.version, UMF_VERSION);
        assert_eq!(m.mid.len(), 36);
        assert_eq!(m.timestamp.len(), 24);
        m.validate().unwrap();
    }

    #[test]
    fn validation_uses_nodes_reason() {
        for text in [
            r#"{"from":"a:/","body":{}}"#,
            r#"{"to":"a:/","body":{}}"#,
            r#"{"to":"a:/","from":"b:/"}"#,
            r#"{"to":"a:/","from":"b:/","body":""}"#,
        ] {
            let err = Umf::parse(text).unwrap().validate().unwrap_err();
            assert_eq!(err.to_string(), format!("bad request: {INVALID_UMF_REASON}"));
        }
        // An empty object is a valid body (truthy in JavaScript).
        Umf::parse(r#"{"to":"a:/","from":"b:/","body":{}}"#)
            .unwrap()
            .validate()
            .unwrap();
        for bad in [
            "",
            "[]",
            "42",
            "\"s\"",
            r#"{"to":5}"#,
            r#"{"tmo":"soon"}"#,
            r#"{"tmo":[1]}"#,
        ] {
            assert!(Umf::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn bodies_and_headers_round_trip_without_loss() {
        let text = r#"{"to":"a:/","frm":"b:/","hdr":{"x-h":["1",2]},"mid":"m","ts":"t","ver":"v","bdy":{"big":123456789012345678901234567890,"f":0.1,"e":1e+300,"u":"ü\u0001\"\\/","n":null,"z":{"b":1,"a":2}}}"#;
        let m = Umf::parse(text).unwrap();
        assert_eq!(m.to_short_json(), text);
    }

    #[test]
    fn routes_parse_like_node() {
        let r = |s: &str| Route::parse(s).unwrap();
        let x = r("alpha-service:[get]/v1/x/y");
        assert_eq!(
            (
                x.instance.as_str(),
                x.service_name.as_str(),
                x.http_method.as_deref(),
                x.api_route.as_str()
            ),
            ("", "alpha-service", Some("get"), "/v1/x/y")
        );
        let x = r("abc123@alpha-service:[POST]/v1/a:b");
        assert_eq!(
            (
                x.instance.as_str(),
                x.service_name.as_str(),
                x.http_method.as_deref(),
                x.api_route.as_str()
            ),
            ("abc123", "alpha-service", Some("post"), "/v1/a:b")
        );
        let x = r("alpha-service:/");
        assert_eq!((x.http_method.as_deref(), x.api_route.as_str()), (None, "/"));
        let x = r("a-b@svc:/");
        assert_eq!(
            (x.instance.as_str(), x.sub_id.as_str(), x.service_name.as_str()),
            ("a", "b", "svc")
        );
        let x = r("test-subtest@service:xxx:yyy");
        assert_eq!(
            (x.instance.as_str(), x.sub_id.as_str(), x.api_route.as_str()),
            ("test", "subtest", "xxx:yyy")
        );
        let x = r("http:/V1/URL/xxx123:route");
        assert_eq!(
            (x.service_name.as_str(), x.api_route.as_str()),
            ("http:/V1/URL/xxx123", "route")
        );
        let x = r("uid:xxx123");
        assert_eq!((x.service_name.as_str(), x.api_route.as_str()), ("uid", "xxx123"));
        assert_eq!(r("svc:[]route").http_method.as_deref(), Some(""));
        assert_eq!(r("svc:[get]route").api_route, "route");
        // Not Node's http bug: httpbin is a service like any other.
        let x = r("httpbin:[get]/x");
        assert_eq!((x.service_name.as_str(), x.api_route.as_str()), ("httpbin", "/x"));
        let err = Route::parse("alpha-service").unwrap_err();
        assert_eq!(
            err.to_string(),
            "bad request: route field has invalid number of routable segments"
        );
        let err = Route::parse("http:/V1/URL/xxx123:[route").unwrap_err();
        assert_eq!(
            err.to_string(),
            "bad request: route field has ill-formed HTTP method verb in segment"
        );
    }

    #[test]
    fn replies_follow_node_semantics_without_leaking_fields() {
        let mut original = Umf::new("svc:/", "abc@caller:/", json!({"q": 1}));
        original.forward = Some("fwd-route".into());
        original.authorization = Some("Bearer t".into());
        let reply = original.reply(json!({"a": 2}));
        assert_eq!(reply.to, "abc@caller:/");
        assert_eq!(reply.from, "svc:/");
        assert_eq!(reply.rmid.as_deref(), Some(original.mid.as_str()));
        assert_ne!(reply.mid, original.mid);
        assert_eq!(reply.forward.as_deref(), Some("fwd-route"));
        assert_eq!(reply.authorization, None);
        assert_eq!(reply.via, None);
        assert_eq!(reply.body, json!({"a": 2}));
        original.via = Some("router-client7@hydra-router:/".into());
        let via_reply = original.reply(json!({}));
        assert_eq!(via_reply.to, "router-client7@hydra-router:/");
        assert_eq!(
            via_reply.via.as_deref(),
            Some("router-client7@hydra-router:/"),
            "Node keeps via"
        );
        assert_eq!(via_reply.authorization, None);
    }
}
