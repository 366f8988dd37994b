//! The JSON records Hydra keeps in Redis, in Node's field names and key order
//! (spec §2.2–2.6, §8), with parsers that accept what Node writes (e.g. `port`
//! as a string or a number) and reject garbage with a reason instead of panicking.

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value, json};

use crate::timestamp;

/// `hydra:service:<svc>:service`: the registration record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceRecord {
    /// Service name.
    pub service_name: String,
    /// `serviceType` of the registrant (`type` on the wire).
    #[serde(rename = "type")]
    pub service_type: String,
    /// When it was (last) registered, ISO-8601.
    pub registered_on: String,
}

impl ServiceRecord {
    /// The wire JSON, in Node's key order.
    pub(crate) fn to_wire(&self) -> String {
        serde_json::to_string(self).expect("a record of strings serializes")
    }

    pub(crate) fn parse(text: &str) -> Result<ServiceRecord, String> {
        let map = parse_object(text)?;
        Ok(ServiceRecord {
            service_name: required_string(&map, "serviceName")?,
            service_type: optional_string(&map, "type"),
            registered_on: optional_string(&map, "registeredOn"),
        })
    }
}

/// One instance of a service: its `hydra:service:nodes` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Instance {
    /// Service name.
    pub service_name: String,
    /// `serviceDescription`.
    pub service_description: String,
    /// `serviceVersion`.
    pub version: String,
    /// 32 lowercase hex characters.
    #[serde(rename = "instanceID")]
    pub instance_id: String,
    /// Last heartbeat, ISO-8601.
    pub updated_on: String,
    /// OS process ID.
    #[serde(rename = "processID")]
    pub process_id: u64,
    /// Address (an IP, or a DNS name with `serviceDNS`).
    pub ip: String,
    /// Service port.
    pub port: u16,
    /// Host name.
    pub host_name: String,
    /// `updatedOn` in milliseconds since the epoch (Node's `updatedOnTS`).
    #[serde(rename = "updatedOnTS")]
    pub updated_on_ts: i64,
    /// Whole seconds since `updatedOn` when read (Node's `elapsed`).
    pub elapsed: u64,
}

impl Instance {
    /// Parses a `nodes` hash value. `port` may be a string or a number, as Node
    /// writes both.
    pub(crate) fn parse(text: &str) -> Result<Instance, String> {
        // Listings parse every entry of the hash (10,000 and more): the typed
        // fast path builds no JSON tree; anything unusual takes the general
        // path below, which also words the errors.
        if let Ok(entry) = serde_json::from_str::<NodeEntry<'_>>(text)
            && let Some(instance) = entry.into_instance()
        {
            return Ok(instance);
        }
        let map = parse_object(text)?;
        let updated_on = optional_string(&map, "updatedOn");
        let updated_on_ts = timestamp::parse_iso_ms(&updated_on).unwrap_or(0);
        let elapsed = if updated_on_ts > 0 {
            u64::try_from((timestamp::now_ms() - updated_on_ts).max(0) / 1000).unwrap_or(0)
        } else {
            0
        };
        let instance_id = required_string(&map, "instanceID")?;
        let port = match map.get("port") {
            Some(Value::Number(n)) => n.as_u64().and_then(|p| u16::try_from(p).ok()),
            Some(Value::String(s)) => s.trim().parse::<u16>().ok(),
            _ => None,
        }
        .ok_or_else(|| format!("field \"port\" is not a port number: {:?}", map.get("port")))?;
        let process_id = match map.get("processID") {
            Some(Value::Number(n)) => n.as_u64().unwrap_or(0),
            Some(Value::String(s)) => s.parse().unwrap_or(0),
            _ => 0,
        };
        Ok(Instance {
            service_name: required_string(&map, "serviceName")?,
            service_description: optional_string(&map, "serviceDescription"),
            version: optional_string(&map, "version"),
            instance_id,
            updated_on,
            process_id,
            ip: required_string(&map, "ip")?,
            port,
            host_name: optional_string(&map, "hostName"),
            updated_on_ts,
            elapsed,
        })
    }
}

/// A `nodes` entry as Node and we write it, read without a JSON tree and
/// without copying its strings (the fast path of [`Instance::parse`]; an
/// escaped string cannot be borrowed and takes the general path).
#[derive(Deserialize)]
struct NodeEntry<'a> {
    #[serde(rename = "serviceName")]
    service_name: &'a str,
    #[serde(rename = "serviceDescription", default)]
    service_description: Option<&'a str>,
    #[serde(default)]
    version: Option<&'a str>,
    #[serde(rename = "instanceID")]
    instance_id: &'a str,
    #[serde(rename = "updatedOn", default)]
    updated_on: Option<&'a str>,
    #[serde(rename = "processID", default)]
    process_id: Option<u64>,
    ip: &'a str,
    #[serde(deserialize_with = "port_number_or_text")]
    port: u16,
    #[serde(rename = "hostName", default)]
    host_name: Option<&'a str>,
}

impl NodeEntry<'_> {
    /// None when a required field is empty (the general path says why).
    fn into_instance(self) -> Option<Instance> {
        if self.service_name.is_empty() || self.instance_id.is_empty() || self.ip.is_empty() {
            return None;
        }
        let text = |field: Option<&str>| field.unwrap_or_default().to_string();
        let updated_on = text(self.updated_on);
        let updated_on_ts = timestamp::parse_iso_ms(&updated_on).unwrap_or(0);
        let elapsed = if updated_on_ts > 0 {
            u64::try_from((timestamp::now_ms() - updated_on_ts).max(0) / 1000).unwrap_or(0)
        } else {
            0
        };
        Some(Instance {
            service_name: self.service_name.to_string(),
            service_description: text(self.service_description),
            version: text(self.version),
            instance_id: self.instance_id.to_string(),
            updated_on,
            process_id: self.process_id.unwrap_or(0),
            ip: self.ip.to_string(),
            port: self.port,
            host_name: text(self.host_name),
            updated_on_ts,
            elapsed,
        })
    }
}

/// `port` as Node writes it: a number, or a string of digits.
fn port_number_or_text<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u16, D::Error> {
    struct PortVisitor;
    impl serde::de::Visitor<'_> for PortVisitor {
        type Value = u16;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a port number or a string of one")
        }
        fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<u16, E> {
            u16::try_from(v).map_err(|_| E::custom("port out of range"))
        }
        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<u16, E> {
            v.trim().parse().map_err(|_| E::custom("not a port"))
        }
    }
    deserializer.deserialize_any(PortVisitor)
}

/// What this instance writes into the `nodes` hash every second, in Node's key
/// order (spec §2.3). `port` is a string when it was configured as a fixed
/// port and a number when it was chosen, exactly as Node does.
pub(crate) struct NodeTemplate {
    pub service_name: String,
    pub service_description: String,
    pub version: String,
    pub instance_id: String,
    pub process_id: u32,
    pub ip: String,
    /// Atomic: the HTTP server may move to another port after registration.
    pub port: std::sync::atomic::AtomicU16,
    pub port_is_fixed: bool,
    pub host_name: String,
}

impl NodeTemplate {
    pub(crate) fn to_wire(&self, updated_on: &str) -> String {
        let port = self.port.load(std::sync::atomic::Ordering::Relaxed);
        let port = if self.port_is_fixed {
            json!(port.to_string())
        } else {
            json!(port)
        };
        json!({
            "serviceName": self.service_name,
            "serviceDescription": self.service_description,
            "version": self.version,
            "instanceID": self.instance_id,
            "updatedOn": updated_on,
            "processID": self.process_id,
            "ip": self.ip,
            "port": port,
            "hostName": self.host_name,
        })
        .to_string()
    }
}

/// One flight-recorder entry (spec §8).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HealthLogEntry {
    /// When, ISO-8601.
    pub ts: String,
    /// Writer's service name.
    pub service_name: String,
    /// `info`, `error`, `fatal`, `debug`, … (`type` on the wire).
    #[serde(rename = "type")]
    pub entry_type: String,
    /// Writer's process ID.
    #[serde(rename = "processID")]
    pub process_id: u64,
    /// The message.
    pub msg: String,
}

impl HealthLogEntry {
    pub(crate) fn to_wire(&self) -> String {
        serde_json::to_string(self).expect("a record of strings serializes")
    }

    pub(crate) fn parse(text: &str) -> Result<HealthLogEntry, String> {
        let map = parse_object(text)?;
        let msg = match map.get("msg") {
            Some(Value::String(s)) => s.clone(),
            Some(other) => other.to_string(),
            None => String::new(),
        };
        Ok(HealthLogEntry {
            ts: optional_string(&map, "ts"),
            service_name: optional_string(&map, "serviceName"),
            entry_type: optional_string(&map, "type"),
            process_id: map.get("processID").and_then(Value::as_u64).unwrap_or(0),
            msg,
        })
    }
}

fn parse_object(text: &str) -> Result<Map<String, Value>, String> {
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(other) => Err(format!("expected a JSON object, got {}", kind_of(&other))),
        Err(e) => Err(format!("not JSON ({e})")),
    }
}

fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn required_string(map: &Map<String, Value>, key: &str) -> Result<String, String> {
    match map.get(key) {
        Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
        other => Err(format!("field {key:?} must be a non-empty string, got {other:?}")),
    }
}

fn optional_string(map: &Map<String, Value>, key: &str) -> String {
    match map.get(key) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NODE_ENTRY: &str = r#"{"serviceName":"alpha-service","serviceDescription":"alpha desc","version":"2.3.4","instanceID":"0854153e6e78488f94dc5209441c9921","updatedOn":"2026-11-26T03:34:23.087Z","processID":8942,"ip":"127.0.0.1","port":"15555","hostName":"vm"}"#;

    #[test]
    fn parses_node_entries_with_string_or_number_ports() {
        let a = Instance::parse(NODE_ENTRY).unwrap();
        assert_eq!(a.port, 15555);
        assert_eq!(a.process_id, 8942);
        assert_eq!(a.updated_on_ts, 1_795_664_063_087);
        let b = Instance::parse(&NODE_ENTRY.replace("\"15555\"", "15555")).unwrap();
        assert_eq!(b.port, 15555);
    }

    #[test]
    fn the_fast_path_agrees_with_the_general_one() {
        let general = |text: &str| {
            let map = parse_object(text).unwrap();
            (
                required_string(&map, "serviceName").unwrap(),
                optional_string(&map, "version"),
                optional_string(&map, "hostName"),
            )
        };
        for text in [
            NODE_ENTRY.to_string(),
            NODE_ENTRY.replace("\"15555\"", "15555"),
            NODE_ENTRY.replace("\"version\":\"2.3.4\",", ""),
        ] {
            let fast = serde_json::from_str::<NodeEntry<'_>>(&text)
                .unwrap()
                .into_instance()
                .unwrap();
            let parsed = Instance::parse(&text).unwrap();
            // `elapsed` is read against the clock, which may tick between the two.
            assert_eq!(
                Instance { elapsed: 0, ..parsed },
                Instance {
                    elapsed: 0,
                    ..fast.clone()
                }
            );
            let (name, version, host) = general(&text);
            assert_eq!((fast.service_name, fast.version, fast.host_name), (name, version, host));
        }
        // Escaped strings and unusual types take the general path instead of failing.
        let escaped = NODE_ENTRY.replace("\"vm\"", "\"v\\u006d\"");
        assert!(serde_json::from_str::<NodeEntry<'_>>(&escaped).is_err());
        assert_eq!(Instance::parse(&escaped).unwrap().host_name, "vm");
        let odd = NODE_ENTRY.replace("\"processID\":8942", "\"processID\":\"8942\"");
        assert_eq!(Instance::parse(&odd).unwrap().process_id, 8942);
        let odd = NODE_ENTRY.replace("\"version\":\"2.3.4\"", "\"version\":7");
        assert_eq!(Instance::parse(&odd).unwrap().version, "7");
    }

    #[test]
    fn rejects_garbage_with_a_reason() {
        for bad in [
            "",
            "nope",
            "[1,2]",
            "{}",
            r#"{"serviceName":"a","instanceID":"b","ip":"c","port":"x"}"#,
        ] {
            assert!(Instance::parse(bad).is_err(), "{bad:?}");
        }
        assert!(ServiceRecord::parse("42").is_err());
        assert!(HealthLogEntry::parse("\"s\"").is_err());
    }

    #[test]
    fn templates_write_nodes_json_in_node_order() {
        let mut t = NodeTemplate {
            service_name: "alpha-service".into(),
            service_description: "alpha desc".into(),
            version: "2.3.4".into(),
            instance_id: "0854153e6e78488f94dc5209441c9921".into(),
            process_id: 8942,
            ip: "127.0.0.1".into(),
            port: 15555.into(),
            port_is_fixed: true,
            host_name: "vm".into(),
        };
        assert_eq!(t.to_wire("2026-11-26T03:34:23.087Z"), NODE_ENTRY);
        t.port_is_fixed = false;
        assert!(t.to_wire("x").contains(r#""port":15555,"#));
    }

    #[test]
    fn service_record_and_log_entry_key_order() {
        let r = ServiceRecord {
            service_name: "alpha-service".into(),
            service_type: "test".into(),
            registered_on: "2026-11-26T03:34:22.070Z".into(),
        };
        assert_eq!(
            r.to_wire(),
            r#"{"serviceName":"alpha-service","type":"test","registeredOn":"2026-11-26T03:34:22.070Z"}"#
        );
        let e = HealthLogEntry {
            ts: "t".into(),
            service_name: "alpha-service".into(),
            entry_type: "info".into(),
            process_id: 8942,
            msg: "hello health log".into(),
        };
        let wire = e.to_wire();
        assert_eq!(
            wire,
            r#"{"ts":"t","serviceName":"alpha-service","type":"info","processID":8942,"msg":"hello health log"}"#
        );
        assert_eq!(HealthLogEntry::parse(&wire).unwrap(), e);
    }
}
