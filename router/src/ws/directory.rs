//! The directory of WebSocket clients across routers (Node's `wsClients`,
//! PR #161): `{routerInstanceID: {clientID: 1}}`, kept in memory and shared
//! with the other routers over `hydra:service:mc:hydra-router` with the
//! `wsdir.*` messages Node's routers send, so Rust and Node routers can run
//! side by side:
//! - `wsdir.add` / `wsdir.del` `{routerID, clientID}`: a client came / went;
//! - `wsdir.rem` `{routerID}`: a router shut down;
//! - `wsdir.sha` `{routerID}`: a router started and asks for the others';
//! - `wsdir.dir` `{routerID, directory}`: the answer, one router's clients.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

use hydra::Umf;
use serde_json::{Map, Value, json};

use crate::config::ROUTER_SERVICE;

/// What the router knows of where WebSocket clients are connected.
pub struct Directory {
    own_id: String,
    routers: Mutex<BTreeMap<String, BTreeSet<String>>>,
}

impl Directory {
    /// An empty directory for the router whose instance id is `own_id`.
    pub fn new(own_id: &str) -> Directory {
        let mut routers = BTreeMap::new();
        routers.insert(own_id.to_string(), BTreeSet::new());
        Directory {
            own_id: own_id.to_string(),
            routers: Mutex::new(routers),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, BTreeSet<String>>> {
        self.routers.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// This router's instance id.
    pub fn own_id(&self) -> &str {
        &self.own_id
    }

    /// Notes a client connected to this router.
    pub fn add_local(&self, client_id: &str) {
        self.lock()
            .entry(self.own_id.clone())
            .or_default()
            .insert(client_id.to_string());
    }

    /// Notes a client of this router gone; false when it was not listed.
    pub fn remove_local(&self, client_id: &str) -> bool {
        self.lock()
            .get_mut(&self.own_id)
            .is_some_and(|clients| clients.remove(client_id))
    }

    /// The router holding `client_id` (this one first), if any.
    pub fn locate(&self, client_id: &str) -> Option<String> {
        let routers = self.lock();
        if routers.get(&self.own_id).is_some_and(|c| c.contains(client_id)) {
            return Some(self.own_id.clone());
        }
        routers
            .iter()
            .find(|(_, clients)| clients.contains(client_id))
            .map(|(router, _)| router.clone())
    }

    /// The whole directory, as `/v1/router/list/wsdir` shows it.
    pub fn to_json(&self) -> Value {
        let routers = self.lock();
        Value::Object(
            routers
                .iter()
                .map(|(router, clients)| (router.clone(), clients_json(clients)))
                .collect(),
        )
    }

    /// Applies a `wsdir.*` message from another router. Returns the answer
    /// to broadcast (`wsdir.dir` for a `wsdir.sha`), if any; messages of this
    /// router itself (its own broadcasts coming back) are ignored.
    pub fn apply(&self, message: &Umf) -> Option<Umf> {
        let kind = message.message_type.as_deref()?;
        let router = message.body.get("routerID")?.as_str()?;
        if router == self.own_id || router.is_empty() {
            return None;
        }
        let client = message.body.get("clientID").and_then(Value::as_str);
        let mut routers = self.lock();
        match kind {
            "wsdir.add" => {
                if let Some(client) = client {
                    routers
                        .entry(router.to_string())
                        .or_default()
                        .insert(client.to_string());
                }
            }
            "wsdir.del" => {
                if let (Some(client), Some(clients)) = (client, routers.get_mut(router)) {
                    clients.remove(client);
                }
            }
            "wsdir.rem" => {
                routers.remove(router);
            }
            "wsdir.dir" => {
                let clients = match message.body.get("directory") {
                    Some(Value::Object(map)) => map.keys().cloned().collect(),
                    _ => BTreeSet::new(),
                };
                routers.insert(router.to_string(), clients);
            }
            "wsdir.sha" => {
                routers.entry(router.to_string()).or_default();
                let own = routers.get(&self.own_id).map(clients_json).unwrap_or_else(|| json!({}));
                let mut answer = self.message("wsdir.dir", json!({ "routerID": self.own_id, "directory": own }));
                answer.to = format!("{router}@{ROUTER_SERVICE}:/");
                return Some(answer);
            }
            _ => {}
        }
        None
    }

    /// A `wsdir.*` message from this router, to every router (Node's shape).
    pub fn message(&self, kind: &str, body: Value) -> Umf {
        let mut umf = Umf::new(
            format!("{ROUTER_SERVICE}:/"),
            format!("{}@{ROUTER_SERVICE}:/", self.own_id),
            body,
        );
        umf.message_type = Some(kind.to_string());
        umf
    }

    /// `wsdir.add` / `wsdir.del` for one of this router's clients.
    pub fn client_message(&self, kind: &str, client_id: &str) -> Umf {
        self.message(kind, json!({ "routerID": self.own_id, "clientID": client_id }))
    }

    /// `wsdir.sha` / `wsdir.rem`: this router starting / stopping.
    pub fn router_message(&self, kind: &str) -> Umf {
        self.message(kind, json!({ "routerID": self.own_id }))
    }
}

fn clients_json(clients: &BTreeSet<String>) -> Value {
    Value::Object(clients.iter().map(|c| (c.clone(), json!(1))).collect::<Map<_, _>>())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from_other(kind: &str, body: Value) -> Umf {
        let mut umf = Umf::new("hydra-router:/", "r2@hydra-router:/", body);
        umf.message_type = Some(kind.into());
        umf
    }

    #[test]
    fn other_routers_messages_build_the_directory() {
        let dir = Directory::new("r1");
        dir.add_local("a");
        assert!(
            dir.apply(&from_other("wsdir.add", json!({"routerID": "r2", "clientID": "b"})))
                .is_none()
        );
        assert_eq!(dir.to_json(), json!({"r1": {"a": 1}, "r2": {"b": 1}}));
        assert_eq!(dir.locate("b").as_deref(), Some("r2"));
        assert_eq!(dir.locate("a").as_deref(), Some("r1"));
        assert_eq!(dir.locate("zz"), None);
        dir.apply(&from_other("wsdir.del", json!({"routerID": "r2", "clientID": "b"})));
        assert_eq!(dir.locate("b"), None);
        dir.apply(&from_other(
            "wsdir.dir",
            json!({"routerID": "r3", "directory": {"c": 1, "d": 1}}),
        ));
        assert_eq!(dir.locate("d").as_deref(), Some("r3"));
        dir.apply(&from_other("wsdir.rem", json!({"routerID": "r3"})));
        assert_eq!(dir.locate("d"), None);
        // Our own broadcasts come back on the service channel: ignored.
        dir.apply(&from_other("wsdir.del", json!({"routerID": "r1", "clientID": "a"})));
        assert_eq!(dir.locate("a").as_deref(), Some("r1"));
        assert!(dir.remove_local("a"));
        assert!(!dir.remove_local("a"));
    }

    #[test]
    fn a_share_request_is_answered_with_our_clients_in_nodes_shape() {
        let dir = Directory::new("r1");
        dir.add_local("a");
        let answer = dir
            .apply(&from_other("wsdir.sha", json!({"routerID": "r2"})))
            .expect("an answer");
        assert_eq!(answer.message_type.as_deref(), Some("wsdir.dir"));
        assert_eq!(answer.to, "r2@hydra-router:/");
        assert_eq!(answer.from, "r1@hydra-router:/");
        assert_eq!(answer.body, json!({"routerID": "r1", "directory": {"a": 1}}));
    }
}
