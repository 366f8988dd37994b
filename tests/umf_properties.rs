//! Property tests of UMF parsing and the route grammar: no input panics, and
//! every message survives serialization in both forms.

use hydra::{Route, Umf};
use proptest::prelude::*;
use serde_json::{Map, Number, Value};

fn json_leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| Value::Number(n.into())),
        (-1e15f64..1e15).prop_map(|f| Number::from_f64(f).map_or(Value::Null, Value::Number)),
        "\\PC{0,12}".prop_map(Value::String),
        any::<String>().prop_map(Value::String),
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    json_leaf().prop_recursive(3, 24, 5, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::vec(("\\PC{0,8}", inner), 0..5)
                .prop_map(|pairs| Value::Object(pairs.into_iter().collect::<Map<String, Value>>())),
        ]
    })
}

fn text() -> impl Strategy<Value = String> {
    "[a-z0-9@:/\\[\\]\\-_.é✓ ]{1,24}"
}

fn optional_text() -> impl Strategy<Value = Option<String>> {
    prop::option::of(text())
}

prop_compose! {
    fn message()(
        to in text(), from in text(), mid in text(), timestamp in text(), version in text(),
        headers in prop::option::of(json_value().prop_filter("truthy", is_truthy)),
        rmid in optional_text(), signature in optional_text(), message_type in optional_text(),
        via in optional_text(), forward in optional_text(), authorization in optional_text(),
        timeout in prop::option::of(1u32..100_000),
        body in json_value().prop_filter("truthy", is_truthy),
    ) -> Umf {
        Umf {
            to, from, headers, mid, rmid, signature,
            timeout: timeout.map(Number::from),
            timestamp, message_type, version, via, forward, body, authorization,
        }
    }
}

fn is_truthy(value: &Value) -> bool {
    match value {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        _ => true,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn parse_of_any_text_never_panics(text in any::<String>()) {
        let _ = Umf::parse(&text);
        let _ = Route::parse(&text);
    }

    #[test]
    fn parse_of_any_json_never_panics(value in json_value()) {
        let _ = Umf::from_value(value.clone());
        if let Ok(umf) = Umf::from_value(value) {
            let _ = umf.validate();
            let _ = umf.to_route();
            let _ = umf.to_short_json();
        }
    }

    #[test]
    fn objects_with_umf_keys_of_any_type_never_panic(
        fields in prop::collection::vec((prop::sample::select(vec![
            "to", "frm", "from", "hdr", "headers", "mid", "rmid", "sig", "signature", "tmo", "timeout",
            "ts", "timestamp", "typ", "type", "ver", "version", "via", "fwd", "forward", "bdy", "body",
            "aut", "authorization", "extra",
        ]), json_value()), 0..10)
    ) {
        let object: Map<String, Value> = fields.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
        let _ = Umf::from_value(Value::Object(object));
    }

    #[test]
    fn messages_survive_both_forms(m in message()) {
        prop_assert_eq!(&Umf::parse(&m.to_short_json()).unwrap(), &m);
        prop_assert_eq!(&Umf::parse(&m.to_long_json()).unwrap(), &m);
    }

    #[test]
    fn signatures_verify_after_a_round_trip(mut m in message(), secret in any::<Vec<u8>>()) {
        m.sign("sha256", &secret).unwrap();
        let back = Umf::parse(&m.to_short_json()).unwrap();
        prop_assert!(back.verify("sha256", &secret).unwrap());
    }

    #[test]
    fn routes_round_trip_their_parts(
        instance in "[a-f0-9]{1,12}", service in "[a-z][a-z0-9-]{0,15}",
        method in prop::option::of("(get|post|put|delete|patch)"), path in "(/[a-z0-9:]{0,8}){0,4}",
    ) {
        let verb = method.as_ref().map(|m| format!("[{m}]")).unwrap_or_default();
        let route = Route::parse(&format!("{instance}@{service}:{verb}{path}")).unwrap();
        prop_assert_eq!(route.instance, instance);
        prop_assert_eq!(route.service_name, service);
        prop_assert_eq!(route.http_method, method);
        prop_assert_eq!(route.api_route, path);
    }
}
