//! The frames the router writes to WebSocket clients, in Node's shapes
//! (short-form UMF, spec §1.10), and what an inbound frame asks for.

use hydra::{Route, Umf};
use serde_json::{Value, json};

use crate::config::ROUTER_SERVICE;

/// `<routerInstanceID>@hydra-router:/`: the router as a sender.
pub fn router_route(router_id: &str) -> String {
    format!("{router_id}@{ROUTER_SERVICE}:/")
}

/// `<routerInstanceID>-<clientID>@hydra-router:/`: the `via` of a client's
/// message to a service, where the service's reply comes back to.
pub fn client_via(router_id: &str, client_id: &str) -> String {
    format!("{router_id}-{client_id}@{ROUTER_SERVICE}:/")
}

/// The welcome (`typ: connection`) a client gets on connecting, and again
/// after a `reconnect`.
pub fn welcome(router_id: &str, client_id: &str, ip: &str, auth_response: Option<&Value>) -> Umf {
    let mut body = json!({ "id": client_id, "ip": ip });
    if let Some(auth) = auth_response {
        body["authResponse"] = auth.clone();
    }
    let mut umf = Umf::new(format!("{client_id}@client:/"), router_route(router_id), body);
    umf.message_type = Some("connection".into());
    umf
}

/// Node's error frame `{to:'client:/', bdy:{error}}`.
pub fn error(router_id: &str, reason: &str) -> Umf {
    Umf::new("client:/", router_route(router_id), json!({ "error": reason }))
}

/// Node's reason for a frame that is not a UMF message.
pub fn invalid_reason(text: &str) -> String {
    format!("HR: Invalid UMF message: {text} closing connection")
}

/// A reply to `original` from the router (`to` = its sender, `rmid` = its `mid`).
pub fn reply(router_id: &str, original: &Umf, body: Value) -> Umf {
    let mut umf = Umf::new(original.from.clone(), router_route(router_id), body);
    umf.rmid = Some(original.mid.clone());
    umf
}

/// `ping` → `pong`.
pub fn pong(router_id: &str, ping: &Umf) -> Umf {
    let mut umf = reply(router_id, ping, json!({ "typ": "pong" }));
    umf.message_type = Some("pong".into());
    umf
}

/// The answer to an HTTP-style call, as Node builds it: from the call's
/// target back to its sender, `rmid` = the call's `mid`.
pub fn call_answer(call: &Umf, body: Value) -> Umf {
    let mut umf = Umf::new(call.from.clone(), call.to.clone(), body);
    umf.rmid = Some(call.mid.clone());
    umf
}

/// What an inbound frame asks for (spec §1.10, cases A–C).
#[derive(Debug, Clone, PartialEq)]
pub enum Request {
    /// Case A, to the router: its own API (`hydra-router:[get]/v1/router/…`).
    RouterApi(Route),
    /// Case A: an HTTP call to a service (`svc:[get]/path`).
    HttpCall(Route),
    /// Case B: `hydra-router:/…` by type (`ping`, `reconnect`, `forward`, …).
    Router(Route),
    /// Case C: a message to a service (`svc:/path`, `id@svc:/path`).
    Service(Route),
}

impl Request {
    /// Classifies a valid message; `Err` with the reason when `to` is not a route.
    pub fn of(umf: &Umf) -> Result<Request, String> {
        let route = Route::parse(&umf.to).map_err(|e| e.to_string())?;
        if route.service_name.is_empty() {
            return Err(format!("route {:?} names no service", umf.to));
        }
        let to_router = route.service_name == ROUTER_SERVICE;
        let http = umf.to.contains('[') && umf.to.contains(']');
        Ok(match (http, to_router) {
            (true, true) => Request::RouterApi(route),
            (true, false) => Request::HttpCall(route),
            (false, true) => Request::Router(route),
            (false, false) => Request::Service(route),
        })
    }

    /// The target service (what the stats count the frame under).
    pub fn service(&self) -> &str {
        match self {
            Request::RouterApi(r) | Request::HttpCall(r) | Request::Router(r) | Request::Service(r) => &r.service_name,
        }
    }
}

/// The client a `forward`/`fwd` route names (`<clientID>@client:/`).
pub fn forward_client(forward: &str) -> Option<String> {
    let route = Route::parse(forward).ok()?;
    let id = if route.sub_id.is_empty() {
        route.instance
    } else {
        format!("{}-{}", route.instance, route.sub_id)
    };
    (!id.is_empty()).then_some(id)
}

/// The client a reply's `via` names (`<routerID>-<clientID>@hydra-router:/`).
pub fn via_client(via: &str) -> Option<String> {
    let route = Route::parse(via).ok()?;
    (!route.sub_id.is_empty()).then_some(route.sub_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_welcome_is_nodes_short_form() {
        let text = welcome("r1", "abc", "10.0.0.1", None).to_short_json();
        let value: Value = serde_json::from_str(&text).unwrap();
        let keys: Vec<&str> = value.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(keys, ["to", "frm", "mid", "ts", "typ", "ver", "bdy"]);
        assert_eq!(value["to"], "abc@client:/");
        assert_eq!(value["frm"], "r1@hydra-router:/");
        assert_eq!(value["typ"], "connection");
        assert_eq!(value["ver"], "UMF/1.4.6");
        assert_eq!(value["bdy"], json!({"id": "abc", "ip": "10.0.0.1"}));
        let with_auth = welcome("r1", "abc", "ip", Some(&json!({"user": 7})));
        assert_eq!(with_auth.body["authResponse"], json!({"user": 7}));
    }

    #[test]
    fn frames_are_classified_as_node_does() {
        let of = |to: &str| Request::of(&Umf::new(to, "client:/", json!({"a": 1})));
        assert!(matches!(
            of("hydra-router:[get]/v1/router/version"),
            Ok(Request::RouterApi(_))
        ));
        assert!(matches!(of("svc:[post]/v1/x"), Ok(Request::HttpCall(_))));
        assert!(matches!(of("hydra-router:/"), Ok(Request::Router(_))));
        assert!(matches!(of("svc:/path"), Ok(Request::Service(_))));
        assert!(matches!(of("id1@svc:/"), Ok(Request::Service(r)) if r.instance == "id1"));
        assert!(of("nocolon").is_err());
    }

    #[test]
    fn clients_are_read_from_forward_and_via() {
        assert_eq!(forward_client("k3x9@client:/").as_deref(), Some("k3x9"));
        assert_eq!(forward_client("client:/"), None);
        assert_eq!(via_client("r1-k3x9@hydra-router:/").as_deref(), Some("k3x9"));
        assert_eq!(via_client("r1@hydra-router:/"), None);
    }
}
