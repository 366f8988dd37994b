//! The routing layer of the WebSocket gateway (spec §1.10–1.11): what a
//! client's frame means, and how messages from services reach clients.
//!
//! As Node's router does, with its faults fixed (each noted where it is
//! done): `reconnection` is accepted besides `reconnect`; the offline queue
//! is replayed oldest first; `hydra-router:/queue` with `fwd` queues the
//! message for the service `fwd` names; `/v1/router/list/wsdir` answers over
//! WebSocket too; the router API over WebSocket obeys `routerToken` and
//! `disableRouterEndpoint` as over HTTP (pass `?token=` in the route); a
//! reconnected client's welcome carries its real address (Node: `unknown`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use hydra::{HttpRequest, Hydra, RequestOptions, Route, Umf};
use serde_json::{Value, json};

use super::directory::Directory;
use super::frames::{self, Request};
use super::offline::OfflineQueue;
use super::{ClientInfo, ClientSockets, Delivery, FrameHandler};
use crate::access::{self, Access, OwnPath};
use crate::api;
use crate::gateway::Shared;

/// The router API endpoints a WebSocket client may call (Node's list, plus
/// `list/wsdir`, which Node's code could not reach).
const WS_API: &[&str] = &[
    "/v1/router/list/routes",
    "/v1/router/list/services",
    "/v1/router/list/nodes",
    "/v1/router/list/wsdir",
    "/v1/router/clear",
    "/v1/router/health",
    "/v1/router/refresh",
    "/v1/router/version",
    "/v1/router/stats",
];

/// What the router remembers of a connected client.
#[derive(Debug, Clone)]
struct ClientState {
    ip: String,
    /// The auth service's `result` (`requireWebsocketAuth`), added to the
    /// client's later messages as `body.authResponse`.
    auth_response: Option<Value>,
}

/// The routing layer: a [`FrameHandler`] for the connection layer, and
/// [`on_service_message`](Routing::on_service_message) for the router's
/// Hydra channel.
pub struct Routing {
    hydra: Hydra,
    shared: Arc<Shared>,
    offline: OfflineQueue,
    sockets: OnceLock<Arc<dyn ClientSockets>>,
    clients: Mutex<HashMap<String, ClientState>>,
    router_id: String,
}

impl Routing {
    /// The routing layer of the router whose handle and state are given;
    /// the offline queue lives in `queuerDB`. Frames can be sent once
    /// [`attach`](Routing::attach) gave it the connection layer.
    pub fn new(hydra: Hydra, shared: Arc<Shared>) -> hydra::Result<Routing> {
        let offline = OfflineQueue::new(hydra.mailboxes(shared.config.queuer_db)?);
        Ok(Routing {
            router_id: hydra.get_instance_id().to_string(),
            hydra,
            shared,
            offline,
            sockets: OnceLock::new(),
            clients: Mutex::new(HashMap::new()),
        })
    }

    /// Gives the routing layer the connection layer's sockets (once; later
    /// calls are ignored).
    pub fn attach(&self, sockets: Arc<dyn ClientSockets>) {
        let _ = self.sockets.set(sockets);
    }

    /// The directory of clients across routers.
    pub fn directory(&self) -> &Directory {
        &self.shared.ws_directory
    }

    /// Asks the other routers for their directories (`wsdir.sha`): call once
    /// the router listens for messages.
    pub fn announce_start(&self) {
        self.broadcast(&self.directory().router_message("wsdir.sha"));
    }

    /// Tells the other routers this one is going (`wsdir.rem`).
    pub fn announce_stop(&self) {
        self.broadcast(&self.directory().router_message("wsdir.rem"));
    }

    /// A message on the router's Hydra channels that is not a route
    /// refresh: another router's `wsdir.*`, a service's reply to a client
    /// (`via` `<routerID>-<clientID>@hydra-router:/`), or a service's push
    /// (`forward` `<clientID>@client:/`). A client that is not connected
    /// here gets it in its offline queue (as in Node: the directory is not
    /// consulted, a service addresses the router that holds the client).
    pub fn on_service_message(&self, message: Umf) {
        // Node takes any message whose body has another router's `routerID`
        // for a directory message; a client's own body may hold that key too,
        // so the type must say `wsdir.` as well.
        let from_other_router = message.message_type.as_deref().is_some_and(|t| t.starts_with("wsdir."))
            && message
                .body
                .get("routerID")
                .and_then(Value::as_str)
                .is_some_and(|id| !id.is_empty() && id != self.router_id);
        if from_other_router {
            if let Some(answer) = self.directory().apply(&message) {
                self.broadcast(&answer);
            }
            return;
        }
        if let Some(via) = message.via.as_deref().filter(|v| !v.is_empty()) {
            let Some(client) = frames::via_client(via) else {
                log::debug!("HR: message {} has a via that names no client: {via}", message.mid);
                return;
            };
            let mut message = message;
            message.via = None;
            self.deliver_or_keep(&client, &message);
        } else if let Some(forward) = message.forward.as_deref().filter(|f| !f.is_empty()) {
            match frames::forward_client(forward) {
                Some(client) => self.deliver_or_keep(&client, &message),
                None => log::debug!("HR: message {} forwards to no client: {forward}", message.mid),
            }
        }
    }

    /// Which messages [`on_service_message`](Routing::on_service_message)
    /// must handle in the order received: those for one client (`via`, else
    /// `forward`, as it picks them) share a key, as do one other router's
    /// `wsdir.*` messages; anything else shares the empty key.
    pub fn order_key(&self, message: &Umf) -> String {
        if message.message_type.as_deref().is_some_and(|t| t.starts_with("wsdir.")) {
            let router = message.body.get("routerID").and_then(Value::as_str).unwrap_or("");
            return format!("router {router}");
        }
        let client = match message.via.as_deref().filter(|v| !v.is_empty()) {
            Some(via) => frames::via_client(via),
            None => message
                .forward
                .as_deref()
                .filter(|f| !f.is_empty())
                .and_then(frames::forward_client),
        };
        client.map(|id| format!("client {id}")).unwrap_or_default()
    }

    /// [`on_service_message`](Routing::on_service_message)'s cheap case,
    /// for the thread that reads the router's channel: a reply or push for
    /// a client connected here is queued on its socket (`None`); anything
    /// else (another router's `wsdir.*`, a client not here, a full queue)
    /// is given back untouched, for `on_service_message` (which may call
    /// Redis).
    pub fn deliver_now(&self, mut message: Umf) -> Option<Umf> {
        if message.message_type.as_deref().is_some_and(|t| t.starts_with("wsdir.")) {
            return Some(message);
        }
        match message.via.as_deref().filter(|v| !v.is_empty()) {
            Some(via) => {
                let Some(client) = frames::via_client(via) else {
                    return Some(message);
                };
                let via = message.via.take();
                if self.send(&client, &message) == Delivery::Queued {
                    return None;
                }
                message.via = via;
                Some(message)
            }
            None => {
                let client = message
                    .forward
                    .as_deref()
                    .filter(|f| !f.is_empty())
                    .and_then(frames::forward_client);
                match client {
                    Some(client) if self.send(&client, &message) == Delivery::Queued => None,
                    _ => Some(message),
                }
            }
        }
    }

    fn sockets(&self) -> Option<&Arc<dyn ClientSockets>> {
        self.sockets.get()
    }

    fn send(&self, client_id: &str, message: &Umf) -> Delivery {
        match self.sockets() {
            Some(sockets) => sockets.send(client_id, message.to_short_json()),
            None => Delivery::NotConnected,
        }
    }

    fn close(&self, client_id: &str, reason: &str) {
        if let Some(sockets) = self.sockets() {
            sockets.close(client_id, reason);
        }
    }

    /// Node's answer to a frame it refuses: the error frame, then close.
    fn refuse(&self, client_id: &str, reason: &str) {
        log::debug!("HR: closing WebSocket client {client_id}: {reason}");
        self.send(client_id, &frames::error(&self.router_id, reason));
        self.close(client_id, reason);
    }

    fn deliver_or_keep(&self, client_id: &str, message: &Umf) {
        if self.send(client_id, message) != Delivery::Queued {
            self.offline.keep(client_id, message);
        }
    }

    fn broadcast(&self, message: &Umf) {
        if let Err(e) = self.hydra.send_broadcast_message(message) {
            log::warn!(
                "HR: cannot broadcast {} to the routers: {e}",
                message.message_type.as_deref().unwrap_or("")
            );
        }
    }

    fn client_state(&self, client_id: &str) -> Option<ClientState> {
        self.clients
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(client_id)
            .cloned()
    }

    /// `requireWebsocketAuth`: the credential (the `Authorization` header
    /// after `Basic `, base64-decoded, else the upgrade URL) POSTed as
    /// `{key}` to the auth service; its `result` on a 200, else `Err`.
    fn authenticate(&self, client: &ClientInfo) -> Result<Value, String> {
        let config = &self.shared.config;
        let (Some(service), Some(api)) = (&config.websocket_auth_service, &config.websocket_auth_service_api) else {
            return Err("no auth service configured".into());
        };
        let key = credential(client);
        let call = Umf::new(
            format!("{service}:[post]/{}", api.trim_start_matches('/')),
            frames::router_route(&self.router_id),
            json!({ "key": key }),
        );
        match self
            .hydra
            .make_api_request(&call, RequestOptions::timeout(config.request_timeout))
        {
            Ok(answer) if answer.status == 200 => Ok(answer.result().unwrap_or(Value::Null)),
            Ok(answer) => Err(format!("the auth service answered {}", answer.status)),
            Err(e) => Err(e.to_string()),
        }
    }

    /// Case A to the router: its own API, answered from [`api::answer`].
    fn router_api(&self, client_id: &str, route: &Route, umf: &Umf) {
        let (path, query) = route.api_route.split_once('?').unwrap_or((&route.api_route, ""));
        let path = path.trim_end_matches('/');
        let supported = WS_API.contains(&path) || path.starts_with("/v1/router/refresh/");
        let kind = if path == "/v1/router/health" {
            OwnPath::Health
        } else {
            OwnPath::Api
        };
        let body = if !supported || access::check(&self.shared.config, kind, query) == Access::Refused {
            json!({ "error": format!("Route {} is not routable.", route.api_route) })
        } else {
            let request = HttpRequest {
                method: "GET".into(),
                path: path.to_string(),
                query: query.to_string(),
                params: HashMap::new(),
                headers: Vec::new(),
                body: Vec::new(),
                remote_addr: None,
            };
            let response = api::answer(&self.shared, &self.hydra, &request);
            match serde_json::from_slice::<Value>(&response.body) {
                Ok(mut envelope) => envelope.get_mut("result").map(Value::take).unwrap_or(envelope),
                // `clear` answers a redirect to the dashboard.
                Err(_) => json!({}),
            }
        };
        let mut answer = Umf::new(
            format!("{client_id}@client:/"),
            frames::router_route(&self.router_id),
            body,
        );
        answer.rmid = Some(umf.mid.clone());
        self.send(client_id, &answer);
    }

    /// Case A to a service: `makeAPIRequest` with the client's message; the
    /// answer's `result` (or its whole JSON when it has none, or its text)
    /// goes back with `rmid`.
    fn http_call(&self, client_id: &str, route: &Route, umf: &Umf) {
        let body = match self
            .hydra
            .make_api_request(umf, RequestOptions::timeout(self.shared.config.request_timeout))
        {
            Ok(answer) => match answer.json().ok().filter(|_| answer.is_json()) {
                Some(mut json) => match json.get_mut("result") {
                    Some(result) => result.take(),
                    None => json,
                },
                None => Value::String(String::from_utf8_lossy(&answer.body).into_owned()),
            },
            Err(e) => {
                self.shared.stats.record_ws_error(&route.service_name);
                log::warn!("HR: WebSocket call {} from {client_id} failed: {e}", umf.to);
                json!({ "error": true, "result": e.to_string() })
            }
        };
        self.send(client_id, &frames::call_answer(umf, body));
    }

    /// Case B: `hydra-router:/…`, by type.
    fn to_router(&self, client_id: &str, route: &Route, umf: Umf) {
        match umf.message_type.as_deref().unwrap_or("") {
            "log" => log::info!("HR: WebSocket client {client_id} logs {}", umf.to_short_json()),
            "ping" => {
                self.send(client_id, &frames::pong(&self.router_id, &umf));
            }
            // Node's docs say `reconnection`, its code matched only `reconnect`.
            "reconnect" | "reconnection" => self.reconnect(client_id, &umf),
            "wsdir.loc" => {
                let wanted = umf.body.get("clientID").and_then(Value::as_str).unwrap_or("");
                let router = self.directory().locate(wanted).unwrap_or_default();
                let body =
                    json!({ "routerID": router, "clientID": umf.body.get("clientID").cloned().unwrap_or(Value::Null) });
                self.send(client_id, &frames::reply(&self.router_id, &umf, body));
            }
            _ if umf.forward.as_deref().is_some_and(|f| !f.is_empty()) => {
                if route.api_route.trim_end_matches('/') == "/queue" {
                    self.queue_for_service(client_id, umf);
                } else {
                    self.forward_to_client(client_id, umf);
                }
            }
            _ => self.refuse(client_id, "Unrecognized Hydra Router request"),
        }
    }

    /// `hydra-router:/queue` with `fwd`: queued for the service `fwd` names
    /// (Node lost the destination here).
    fn queue_for_service(&self, client_id: &str, mut umf: Umf) {
        let mid = umf.mid.clone();
        if let Some(target) = umf.forward.take() {
            umf.to = target;
        }
        if let Err(e) = self.hydra.queue_message(&umf) {
            let service = Route::parse(&umf.to).map(|r| r.service_name).unwrap_or_default();
            self.shared.stats.record_ws_error(&service);
            let mut answer = frames::error(&self.router_id, &format!("cannot queue message {mid}: {e}"));
            answer.rmid = Some(mid);
            self.send(client_id, &answer);
        }
    }

    /// Client-to-client `forward`: to the client here, else through the
    /// router the directory names, else into its offline queue.
    fn forward_to_client(&self, client_id: &str, mut umf: Umf) {
        let forward = umf.forward.clone().unwrap_or_default();
        let Some(target) = frames::forward_client(&forward) else {
            let answer = frames::error(&self.router_id, &format!("forward {forward:?} names no client"));
            self.send(client_id, &answer);
            return;
        };
        let router = self.directory().locate(&target);
        if router.as_deref() == Some(self.router_id.as_str()) || router.is_none() {
            let mut local = umf.clone();
            local.to = forward.clone();
            local.via = Some(frames::router_route(&self.router_id));
            if self.send(&target, &local) == Delivery::Queued {
                return;
            }
        }
        if let Some(router) = router.filter(|r| *r != self.router_id) {
            umf.to = frames::router_route(&router);
            match self.hydra.send_message(&umf) {
                Ok(()) => return,
                Err(e) => log::debug!("HR: cannot relay to router {router} for {target}: {e}"),
            }
        }
        self.offline.keep(&target, &umf);
    }

    /// `reconnect` with `bdy.id`: the socket takes over its old id, gets
    /// the welcome again, then what was queued for it, oldest first.
    fn reconnect(&self, client_id: &str, umf: &Umf) {
        let Some(old_id) = umf.body.get("id").and_then(Value::as_str).filter(|id| !id.is_empty()) else {
            self.refuse(client_id, "reconnect message missing reconnect id");
            return;
        };
        if old_id != client_id {
            let renamed = self.sockets().is_some_and(|s| s.rename(client_id, old_id));
            if !renamed {
                let reason = format!("cannot reconnect as {old_id}: a client with that id is connected");
                self.send(client_id, &frames::error(&self.router_id, &reason));
                return;
            }
            let state = {
                let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
                let state = clients.remove(client_id);
                if let Some(state) = &state {
                    clients.insert(old_id.to_string(), state.clone());
                }
                state
            };
            if self.directory().remove_local(client_id) {
                self.broadcast(&self.directory().client_message("wsdir.del", client_id));
            }
            self.directory().add_local(old_id);
            self.broadcast(&self.directory().client_message("wsdir.add", old_id));
            let ip = state.as_ref().map_or("unknown", |s| s.ip.as_str()).to_string();
            let auth = state.and_then(|s| s.auth_response);
            self.send(old_id, &frames::welcome(&self.router_id, old_id, &ip, auth.as_ref()));
        } else if let Some(state) = self.client_state(old_id) {
            self.send(
                old_id,
                &frames::welcome(&self.router_id, old_id, &state.ip, state.auth_response.as_ref()),
            );
        }
        let replayed = self
            .offline
            .replay(old_id, |message| self.send(old_id, message) == Delivery::Queued);
        if replayed > 0 {
            log::debug!("HR: replayed {replayed} queued messages to {old_id}");
        }
    }

    /// Case C: a message to a service, through the instance named or a
    /// present one, with `via` naming this router and the client.
    fn to_service(&self, client_id: &str, route: &Route, mut umf: Umf) {
        umf.via = Some(frames::client_via(&self.router_id, client_id));
        if route.instance.is_empty() {
            let present = match self.hydra.get_service_presence_cached(&route.service_name) {
                Ok(present) => present,
                Err(e) => {
                    log::warn!("HR: cannot read the presence of {}: {e}", route.service_name);
                    Vec::new()
                }
            };
            if present.is_empty() {
                self.shared.stats.record_ws_error(&route.service_name);
                let reason = format!("No {} instances available", route.service_name);
                self.send(client_id, &frames::error(&self.router_id, &reason));
                return;
            }
            let chosen = &present[fastrand::usize(..present.len())];
            umf.to = format!("{}@{}:{}", chosen.instance_id, route.service_name, route.api_route);
        }
        if let Err(e) = self.hydra.send_message(&umf) {
            self.shared.stats.record_ws_error(&route.service_name);
            self.send(client_id, &frames::error(&self.router_id, &e.to_string()));
        }
    }
}

/// The credential of a connecting client: the `Authorization` header after
/// `Basic ` (6 characters, as Node cuts it), base64-decoded, else the URL.
fn credential(client: &ClientInfo) -> String {
    use base64::Engine;
    match client.headers.iter().find(|(name, _)| name == "authorization") {
        Some((_, value)) => {
            let encoded = value.get(6..).unwrap_or("").trim();
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(encoded)
                .unwrap_or_default();
            String::from_utf8_lossy(&decoded).into_owned()
        }
        None => client.url.clone(),
    }
}

impl FrameHandler for Routing {
    fn connected(&self, client: &ClientInfo) {
        let auth_response = if self.shared.config.require_websocket_auth {
            match self.authenticate(client) {
                Ok(result) => Some(result),
                Err(reason) => {
                    log::info!(
                        "HR: WebSocket client {} from {} refused: {reason}",
                        client.id,
                        client.ip
                    );
                    self.close(&client.id, "authentication failed");
                    return;
                }
            }
        } else {
            None
        };
        self.clients.lock().unwrap_or_else(|p| p.into_inner()).insert(
            client.id.clone(),
            ClientState {
                ip: client.ip.clone(),
                auth_response: auth_response.clone(),
            },
        );
        self.directory().add_local(&client.id);
        self.broadcast(&self.directory().client_message("wsdir.add", &client.id));
        self.send(
            &client.id,
            &frames::welcome(&self.router_id, &client.id, &client.ip, auth_response.as_ref()),
        );
    }

    fn frame(&self, client_id: &str, text: String) {
        let parsed = Umf::parse(&text).and_then(|umf| umf.validate().map(|()| umf));
        let mut umf = match parsed {
            Ok(umf) => umf,
            Err(_) => return self.refuse(client_id, &frames::invalid_reason(&text)),
        };
        let request = match Request::of(&umf) {
            Ok(request) => request,
            Err(_) => return self.refuse(client_id, &frames::invalid_reason(&text)),
        };
        self.shared.stats.record_ws(request.service());
        if self.shared.config.force_message_signature {
            let secret = self.shared.config.signature_shared_secret.as_deref().unwrap_or("");
            if umf.signature.is_none() {
                return self.refuse(client_id, "Not a signed UMF message");
            }
            if !umf.verify("sha256", secret.as_bytes()).unwrap_or(false) {
                return self.refuse(client_id, "Invalid signed UMF message");
            }
        }
        if let Some(auth) = self.client_state(client_id).and_then(|s| s.auth_response)
            && let Value::Object(body) = &mut umf.body
        {
            body.insert("authResponse".into(), auth);
        }
        match &request {
            Request::RouterApi(route) => self.router_api(client_id, route, &umf),
            Request::HttpCall(route) => self.http_call(client_id, route, &umf),
            Request::Router(route) => self.to_router(client_id, route, umf),
            Request::Service(route) => self.to_service(client_id, route, umf),
        }
    }

    fn disconnected(&self, client_id: &str) {
        self.clients.lock().unwrap_or_else(|p| p.into_inner()).remove(client_id);
        if self.directory().remove_local(client_id) {
            self.broadcast(&self.directory().client_message("wsdir.del", client_id));
        }
    }
}

#[cfg(test)]
mod tests {
    //! The routing layer against real routers, services and a private
    //! redis-server; the connection layer is replaced by a recording
    //! [`ClientSockets`] (frames are recorded, not written to sockets).

    use std::collections::{HashSet, VecDeque};
    use std::sync::{Condvar, Mutex};
    use std::time::{Duration, Instant};

    use hydra::{Config, HttpResponse, HttpRoutes, Hydra, Umf};
    use hydra_testkit::RedisServer;
    use serde_json::{Value, json};

    use super::*;
    use crate::config::RouterConfig;
    use crate::gateway::Router;
    use crate::log_ring::LogRing;

    const WAIT: Duration = Duration::from_secs(10);

    /// Frames sent and sockets closed, per client, in order.
    #[derive(Default)]
    struct Recorder {
        state: Mutex<RecorderState>,
        changed: Condvar,
    }

    #[derive(Default)]
    struct RecorderState {
        connected: HashSet<String>,
        frames: HashMap<String, VecDeque<String>>,
        closed: HashMap<String, String>,
    }

    impl Recorder {
        fn connect(&self, id: &str) {
            self.state.lock().unwrap().connected.insert(id.to_string());
        }

        /// The next frame sent to `id`, parsed; panics after `WAIT`.
        fn next(&self, id: &str) -> Value {
            let deadline = Instant::now() + WAIT;
            let mut state = self.state.lock().unwrap();
            loop {
                if let Some(text) = state.frames.get_mut(id).and_then(VecDeque::pop_front) {
                    return serde_json::from_str(&text).expect("frames are JSON");
                }
                let left = deadline.saturating_duration_since(Instant::now());
                assert!(!left.is_zero(), "no frame for {id} within {WAIT:?}");
                state = self.changed.wait_timeout(state, left).unwrap().0;
            }
        }

        fn pending(&self, id: &str) -> usize {
            self.state.lock().unwrap().frames.get(id).map_or(0, VecDeque::len)
        }

        fn closed(&self, id: &str) -> Option<String> {
            self.state.lock().unwrap().closed.get(id).cloned()
        }
    }

    impl ClientSockets for Recorder {
        fn send(&self, client_id: &str, frame: String) -> Delivery {
            let mut state = self.state.lock().unwrap();
            if !state.connected.contains(client_id) {
                return Delivery::NotConnected;
            }
            state.frames.entry(client_id.to_string()).or_default().push_back(frame);
            self.changed.notify_all();
            Delivery::Queued
        }

        fn close(&self, client_id: &str, reason: &str) {
            let mut state = self.state.lock().unwrap();
            state.connected.remove(client_id);
            state.closed.insert(client_id.to_string(), reason.to_string());
            self.changed.notify_all();
        }

        fn rename(&self, from: &str, to: &str) -> bool {
            let mut state = self.state.lock().unwrap();
            if !state.connected.contains(from) || state.connected.contains(to) {
                return false;
            }
            state.connected.remove(from);
            state.connected.insert(to.to_string());
            true
        }

        fn client_ids(&self) -> Vec<String> {
            self.state.lock().unwrap().connected.iter().cloned().collect()
        }
    }

    struct Ignore;

    impl FrameHandler for Ignore {
        fn connected(&self, _: &ClientInfo) {}
        fn frame(&self, _: &str, _: String) {}
        fn disconnected(&self, _: &str) {}
    }

    fn start_router(server: &RedisServer, extra: Value) -> (Router, Arc<Recorder>) {
        let mut document = json!({
            "hydra": { "serviceIP": "127.0.0.1", "servicePort": 0, "redis": { "url": server.url(0) } }
        });
        if let (Value::Object(document), Value::Object(extra)) = (&mut document, extra) {
            document.extend(extra);
        }
        let config = RouterConfig::from_document(document, &[]).expect("config");
        // The connection layer gets a handler that ignores everything; the
        // routing layer under test gets the recorder as its sockets.
        let ignore: crate::gateway::FrameHandlerFactory = Box::new(|_, _, _| Arc::new(Ignore));
        let settings = crate::ws::connections::WsSettings::default();
        let router = Router::start_with_ws(config, LogRing::new(), Some((settings, ignore))).expect("router starts");
        let recorder = Arc::new(Recorder::default());
        router.ws_routing().attach(recorder.clone());
        (router, recorder)
    }

    fn connect(router: &Router, recorder: &Recorder, id: &str) -> Value {
        recorder.connect(id);
        router.ws_routing().connected(&ClientInfo {
            id: id.to_string(),
            ip: "10.1.2.3".into(),
            url: "/".into(),
            headers: Vec::new(),
        });
        recorder.next(id)
    }

    fn frame(router: &Router, id: &str, message: Value) {
        router.ws_routing().frame(id, message.to_string());
    }

    fn service(server: &RedisServer, name: &str) -> Hydra {
        let config = Config::builder()
            .service_name(name)
            .service_ip("127.0.0.1")
            .redis_url(&server.url(0))
            .build()
            .expect("config");
        let hydra = Hydra::init(config).expect("init");
        hydra.register_service().expect("register");
        hydra
    }

    fn wait_for(mut check: impl FnMut() -> bool) -> bool {
        let deadline = Instant::now() + WAIT;
        while Instant::now() < deadline {
            if check() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    #[test]
    fn welcome_ping_router_api_and_invalid_frames() {
        let server = RedisServer::start();
        let (router, recorder) = start_router(&server, json!({}));
        let iid = router.hydra().get_instance_id().to_string();
        let welcome = connect(&router, &recorder, "c1");
        assert_eq!(welcome["to"], "c1@client:/");
        assert_eq!(welcome["frm"], format!("{iid}@hydra-router:/"));
        assert_eq!(welcome["typ"], "connection");
        assert_eq!(welcome["bdy"], json!({"id": "c1", "ip": "10.1.2.3"}));

        frame(
            &router,
            "c1",
            json!({"to": "hydra-router:/", "frm": "c1@client:/", "mid": "p1", "typ": "ping", "bdy": {}}),
        );
        // `bdy: {}` is a body (truthy in JS).
        let pong = recorder.next("c1");
        assert_eq!(
            (pong["to"].as_str(), pong["rmid"].as_str(), pong["typ"].as_str()),
            (Some("c1@client:/"), Some("p1"), Some("pong"))
        );
        assert_eq!(pong["bdy"], json!({"typ": "pong"}));

        frame(
            &router,
            "c1",
            json!({"to": "hydra-router:[get]/v1/router/version", "frm": "c1@client:/", "mid": "v1", "bdy": {}}),
        );
        let version = recorder.next("c1");
        assert_eq!(version["rmid"], "v1");
        assert_eq!(version["bdy"], json!({"version": env!("CARGO_PKG_VERSION")}));

        frame(
            &router,
            "c1",
            json!({"to": "hydra-router:[get]/v1/router/list/wsdir", "frm": "c1@client:/", "bdy": {}}),
        );
        assert_eq!(recorder.next("c1")["bdy"], json!({ iid.clone(): {"c1": 1} }));

        frame(
            &router,
            "c1",
            json!({"to": "hydra-router:[get]/v1/router/log", "frm": "c1@client:/", "bdy": {}}),
        );
        assert_eq!(
            recorder.next("c1")["bdy"]["error"],
            "Route /v1/router/log is not routable."
        );

        frame(
            &router,
            "c1",
            json!({"to": "hydra-router:/", "frm": "c1@client:/", "typ": "what", "bdy": {"a": 1}}),
        );
        assert_eq!(recorder.next("c1")["bdy"]["error"], "Unrecognized Hydra Router request");
        assert_eq!(
            recorder.closed("c1").as_deref(),
            Some("Unrecognized Hydra Router request")
        );

        connect(&router, &recorder, "c2");
        router.ws_routing().frame("c2", "{not json".into());
        let error = recorder.next("c2");
        assert_eq!(error["to"], "client:/");
        assert_eq!(
            error["bdy"]["error"],
            "HR: Invalid UMF message: {not json closing connection"
        );
        assert!(recorder.closed("c2").is_some());

        connect(&router, &recorder, "c3");
        frame(&router, "c3", json!({"to": "svc:/", "frm": "c3@client:/"}));
        assert!(
            recorder.next("c3")["bdy"]["error"]
                .as_str()
                .unwrap()
                .starts_with("HR: Invalid UMF message")
        );

        // Counted per target service.
        let stats = router.shared().stats.node_json();
        assert!(
            stats["wsStats"]["hydra-router"]
                .as_array()
                .unwrap()
                .iter()
                .any(|n| n.as_u64() > Some(0))
        );
        router.shutdown();
    }

    #[test]
    fn a_service_answers_a_client_through_via_and_http_calls_get_the_result() {
        let server = RedisServer::start();
        let (router, recorder) = start_router(&server, json!({}));
        let echo = service(&server, "echo-svc");
        echo.on_message(|hydra, message| {
            hydra.reply(&message, json!({ "echo": message.body }))?;
            Ok(())
        })
        .unwrap();
        let routes = HttpRoutes::new()
            .get("/v1/echo/hello", |_, _| {
                HttpResponse::send_response(200, json!({"hello": "world"}))
            })
            .get("/v1/echo/text", |_, _| {
                HttpResponse::bytes(200, "text/plain", b"plain words".to_vec())
            });
        echo.serve_http(routes).unwrap();
        connect(&router, &recorder, "c1");

        frame(
            &router,
            "c1",
            json!({"to": "echo-svc:/", "frm": "c1@client:/", "mid": "m1", "bdy": {"x": 1}}),
        );
        let answer = recorder.next("c1");
        assert_eq!(answer["rmid"], "m1");
        assert_eq!(answer["bdy"]["echo"]["x"], 1);
        assert!(answer.get("via").is_none(), "{answer}");

        frame(
            &router,
            "c1",
            json!({"to": "echo-svc:[get]/v1/echo/hello", "frm": "c1@client:/", "mid": "h1", "bdy": {}}),
        );
        let answer = recorder.next("c1");
        assert_eq!(
            (answer["to"].as_str(), answer["frm"].as_str(), answer["rmid"].as_str()),
            (Some("c1@client:/"), Some("echo-svc:[get]/v1/echo/hello"), Some("h1"))
        );
        assert_eq!(answer["bdy"], json!({"hello": "world"}));
        frame(
            &router,
            "c1",
            json!({"to": "echo-svc:[get]/v1/echo/text", "frm": "c1@client:/", "bdy": {}}),
        );
        assert_eq!(recorder.next("c1")["bdy"], "plain words");

        frame(
            &router,
            "c1",
            json!({"to": "nobody:/", "frm": "c1@client:/", "bdy": {"x": 1}}),
        );
        assert_eq!(recorder.next("c1")["bdy"]["error"], "No nobody instances available");
        assert!(recorder.closed("c1").is_none(), "the socket stays open");
        frame(
            &router,
            "c1",
            json!({"to": "nobody:[get]/x", "frm": "c1@client:/", "bdy": {}}),
        );
        assert_eq!(recorder.next("c1")["bdy"]["error"], true);

        // A service pushes to a client by `forward`.
        echo.send_message(&{
            let mut push = Umf::new(
                format!("{}@hydra-router:/", router.hydra().get_instance_id()),
                "echo-svc:/",
                json!({"news": 1}),
            );
            push.forward = Some("c1@client:/".into());
            push
        })
        .unwrap();
        assert_eq!(recorder.next("c1")["bdy"], json!({"news": 1}));
        echo.shutdown().unwrap();
        router.shutdown();
    }

    #[test]
    fn forwards_between_clients_and_the_offline_queue_replays_in_order() {
        let server = RedisServer::start();
        let (router, recorder) = start_router(&server, json!({}));
        let iid = router.hydra().get_instance_id().to_string();
        connect(&router, &recorder, "a");
        connect(&router, &recorder, "b");
        frame(
            &router,
            "a",
            json!({"to": "hydra-router:/", "frm": "a@client:/", "fwd": "b@client:/", "bdy": {"hi": 1}}),
        );
        let got = recorder.next("b");
        assert_eq!(got["to"], "b@client:/");
        assert_eq!(got["via"], format!("{iid}@hydra-router:/"));
        assert_eq!(got["bdy"], json!({"hi": 1}));

        // To a client nobody holds: queued, with replies from services too.
        for n in 1..=3 {
            frame(
                &router,
                "a",
                json!({"to": "hydra-router:/", "frm": "a@client:/", "fwd": "gone@client:/", "bdy": {"n": n}}),
            );
        }
        let svc = service(&server, "pusher");
        let mut reply = Umf::new(format!("{iid}-gone@hydra-router:/"), "pusher:/", json!({"n": 4}));
        reply.via = Some(format!("{iid}-gone@hydra-router:/"));
        svc.send_message(&reply).unwrap();
        let offline = OfflineQueue::new(router.hydra().mailboxes(0).unwrap());
        assert!(wait_for(|| offline.len("gone") == 4), "four messages queued");

        connect(&router, &recorder, "tmp");
        frame(
            &router,
            "tmp",
            json!({"to": "hydra-router:/", "frm": "tmp@client:/", "typ": "reconnection", "bdy": {"id": "gone"}}),
        );
        let welcome = recorder.next("gone");
        assert_eq!(welcome["typ"], "connection");
        assert_eq!(welcome["bdy"], json!({"id": "gone", "ip": "10.1.2.3"}));
        let order: Vec<Value> = (0..4).map(|_| recorder.next("gone")["bdy"]["n"].clone()).collect();
        assert_eq!(order, vec![json!(1), json!(2), json!(3), json!(4)]);
        assert_eq!(offline.len("gone"), 0);
        let dir = router.shared().ws_directory.to_json();
        assert_eq!(dir[&iid], json!({"a": 1, "b": 1, "gone": 1}));
        svc.shutdown().unwrap();
        router.shutdown();
    }

    #[test]
    fn signatures_are_required_when_configured() {
        let server = RedisServer::start();
        let (router, recorder) = start_router(
            &server,
            json!({"forceMessageSignature": true, "signatureSharedSecret": "s3cret"}),
        );
        connect(&router, &recorder, "c1");
        let mut ping = Umf::new("hydra-router:/", "c1@client:/", json!({"a": 1}));
        ping.message_type = Some("ping".into());
        ping.sign("sha256", b"s3cret").unwrap();
        router.ws_routing().frame("c1", ping.to_short_json());
        assert_eq!(recorder.next("c1")["typ"], "pong");
        ping.sign("sha256", b"wrong").unwrap();
        router.ws_routing().frame("c1", ping.to_short_json());
        assert_eq!(recorder.next("c1")["bdy"]["error"], "Invalid signed UMF message");
        assert!(recorder.closed("c1").is_some());
        connect(&router, &recorder, "c2");
        frame(
            &router,
            "c2",
            json!({"to": "hydra-router:/", "frm": "c2@client:/", "typ": "ping", "bdy": {"a": 1}}),
        );
        assert_eq!(recorder.next("c2")["bdy"]["error"], "Not a signed UMF message");
        router.shutdown();
    }

    #[test]
    fn routers_share_their_directories_and_relay_forwards() {
        let server = RedisServer::start();
        let (first, first_sockets) = start_router(&server, json!({}));
        let first_id = first.hydra().get_instance_id().to_string();
        connect(&first, &first_sockets, "early");
        // A router started later learns the first one's clients (wsdir.sha → wsdir.dir).
        let (second, second_sockets) = start_router(&server, json!({}));
        assert!(wait_for(
            || second.shared().ws_directory.locate("early").as_deref() == Some(first_id.as_str())
        ));
        connect(&second, &second_sockets, "late");
        let second_id = second.hydra().get_instance_id().to_string();
        assert!(wait_for(
            || first.shared().ws_directory.locate("late").as_deref() == Some(second_id.as_str())
        ));

        frame(
            &second,
            "late",
            json!({"to": "hydra-router:/", "frm": "late@client:/", "mid": "w1", "typ": "wsdir.loc", "bdy": {"clientID": "early"}}),
        );
        let located = second_sockets.next("late");
        assert_eq!(located["bdy"], json!({"routerID": first_id, "clientID": "early"}));

        frame(
            &second,
            "late",
            json!({"to": "hydra-router:/", "frm": "late@client:/", "fwd": "early@client:/", "bdy": {"across": true}}),
        );
        assert_eq!(first_sockets.next("early")["bdy"], json!({"across": true}));
        // A body that happens to hold `routerID` is still a message, not a directory update.
        let body = json!({"routerID": second_id, "clientID": "x"});
        frame(
            &second,
            "late",
            json!({"to": "hydra-router:/", "frm": "late@client:/", "fwd": "early@client:/", "bdy": body}),
        );
        assert_eq!(first_sockets.next("early")["bdy"], body);

        first.ws_routing().disconnected("early");
        assert!(wait_for(|| second.shared().ws_directory.locate("early").is_none()));
        first.shutdown();
        assert!(wait_for(|| second
            .shared()
            .ws_directory
            .to_json()
            .get(&first_id)
            .is_none()));
        assert_eq!(second_sockets.pending("late"), 0);
        second.shutdown();
    }

    #[test]
    fn websocket_auth_accepts_refuses_and_passes_the_auth_response_on() {
        use base64::Engine;
        let server = RedisServer::start();
        let auth = service(&server, "auth-svc");
        let routes = HttpRoutes::new().post("/v1/auth/ws", |_, request| {
            let body: Value = serde_json::from_slice(&request.body).unwrap_or(Value::Null);
            match body["key"].as_str() {
                Some("ann:pw") => HttpResponse::send_response(200, json!({"user": "ann"})),
                Some("/?token=t1") => HttpResponse::send_response(200, json!({"user": "url"})),
                _ => HttpResponse::send_response(401, json!({})),
            }
        });
        auth.serve_http(routes).unwrap();
        auth.on_message(|hydra, message| {
            hydra.reply(&message, json!({ "seen": message.body }))?;
            Ok(())
        })
        .unwrap();
        let (router, recorder) = start_router(
            &server,
            json!({"requireWebsocketAuth": true, "websocketAuthService": "auth-svc", "websocketAuthServiceAPI": "v1/auth/ws"}),
        );
        let client = |id: &str, url: &str, authorization: Option<&str>| {
            recorder.connect(id);
            let headers = authorization
                .map(|a| vec![("authorization".to_string(), a.to_string())])
                .unwrap_or_default();
            router.ws_routing().connected(&ClientInfo {
                id: id.into(),
                ip: "10.0.0.9".into(),
                url: url.into(),
                headers,
            });
        };
        let basic = |text: &str| format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(text));
        client("ok", "/", Some(&basic("ann:pw")));
        let welcome = recorder.next("ok");
        assert_eq!(welcome["bdy"]["authResponse"], json!({"user": "ann"}));
        frame(
            &router,
            "ok",
            json!({"to": "auth-svc:/", "frm": "ok@client:/", "bdy": {"q": 1}}),
        );
        assert_eq!(
            recorder.next("ok")["bdy"]["seen"],
            json!({"q": 1, "authResponse": {"user": "ann"}})
        );

        client("byurl", "/?token=t1", None);
        assert_eq!(recorder.next("byurl")["bdy"]["authResponse"], json!({"user": "url"}));

        client("bad", "/", Some(&basic("ann:nope")));
        assert!(wait_for(|| recorder.closed("bad").is_some()));
        assert_eq!(recorder.pending("bad"), 0, "no welcome for a refused client");
        assert!(router.shared().ws_directory.locate("bad").is_none());
        auth.shutdown().unwrap();
        router.shutdown();
    }

    #[test]
    fn a_queue_request_with_fwd_queues_for_that_service() {
        let server = RedisServer::start();
        let (router, recorder) = start_router(&server, json!({}));
        let worker = service(&server, "worker");
        connect(&router, &recorder, "c1");
        frame(
            &router,
            "c1",
            json!({"to": "hydra-router:/queue", "frm": "c1@client:/", "fwd": "worker:/jobs", "bdy": {"job": 7}}),
        );
        let mut taken = None;
        assert!(wait_for(|| {
            taken = worker.get_queued_message("worker").ok().flatten();
            taken.is_some()
        }));
        let taken = taken.unwrap().message;
        assert_eq!((taken.to.as_str(), &taken.body), ("worker:/jobs", &json!({"job": 7})));
        worker.shutdown().unwrap();
        router.shutdown();
    }

    /// Waits until a message to the Node service `name` can reach it: the
    /// router sees its presence (a fresh read, which also refreshes the
    /// router's routing cache) and the instance listens on its channel.
    /// Node's `registerService` resolves after writing presence but before
    /// its SUBSCRIBEs complete (a fresh connection each), so a message sent at
    /// once is published to nobody and the client gets `Unavailable <svc>
    /// instance named …` instead of the reply.
    fn wait_until_node_service_reachable(
        server: &RedisServer,
        router: &Router,
        node: &hydra_testkit::NodePeer,
        name: &str,
    ) {
        let instance = node.call("getInstanceID", json!([])).expect("Node getInstanceID");
        let instance = instance.as_str().expect("an instance ID").to_string();
        let channel = format!("hydra:service:mc:{name}:{instance}");
        let mut redis = redis::Client::open(server.url(0))
            .and_then(|client| client.get_connection_with_timeout(Duration::from_secs(2)))
            .expect("connect to redis");
        assert!(
            wait_for(|| {
                let present = router
                    .hydra()
                    .get_service_presence(name)
                    .is_ok_and(|found| found.iter().any(|i| i.instance_id == instance));
                let listeners: Vec<(String, u64)> = redis::cmd("PUBSUB")
                    .arg("NUMSUB")
                    .arg(&channel)
                    .query(&mut redis)
                    .unwrap_or_default();
                present && listeners.first().is_some_and(|(_, n)| *n >= 1)
            }),
            "the Node service {name} ({instance}) was not present and subscribed within {WAIT:?}"
        );
    }

    #[test]
    fn node_hydra_services_answer_and_push_to_clients_and_nodes_wsdir_shapes_are_read() {
        let server = RedisServer::start();
        let (router, recorder) = start_router(&server, json!({}));
        let iid = router.hydra().get_instance_id().to_string();
        let node = hydra_testkit::NodePeer::spawn().expect("start the Node hydra peer");
        let config = json!({"hydra": {"serviceName": "node-svc", "serviceIP": "127.0.0.1", "servicePort": 0,
            "redis": {"url": server.url(0)}}});
        node.call("init", json!([config])).expect("Node hydra init");
        node.call("registerService", json!([])).expect("Node registerService");
        node.call("echo", json!([])).expect("Node echoes messages");
        wait_until_node_service_reachable(&server, &router, &node, "node-svc");
        connect(&router, &recorder, "c1");

        // Node's sendReplyMessage addresses the reply to `via`.
        frame(
            &router,
            "c1",
            json!({"to": "node-svc:/", "frm": "c1@client:/", "mid": "n1", "bdy": {"x": 1}}),
        );
        let answer = recorder.next("c1");
        assert_eq!(answer["rmid"], "n1", "{answer}");
        assert_eq!(answer["bdy"]["echo"], json!({"x": 1}));
        assert!(answer.get("via").is_none(), "{answer}");

        // A Node service pushes with `forward`.
        let push = json!({"to": format!("{iid}@hydra-router:/"), "from": "node-svc:/", "forward": "c1@client:/", "body": {"news": 2}});
        node.call("sendMessage", json!([push])).expect("Node sendMessage");
        assert_eq!(recorder.next("c1")["bdy"], json!({"news": 2}));

        // A Node router's wsdir.add, as Node's hydra serializes it.
        let add = json!({"to": "hydra-router:/", "from": "noderouter@hydra-router:/", "type": "wsdir.add",
            "body": {"routerID": "noderouter", "clientID": "nc1"}});
        node.call("sendBroadcastMessage", json!([add]))
            .expect("Node sendBroadcastMessage");
        assert!(wait_for(
            || router.shared().ws_directory.locate("nc1").as_deref() == Some("noderouter")
        ));
        router.shutdown();
    }

    #[test]
    fn reconnect_needs_an_id_and_cannot_take_a_connected_clients_id() {
        let server = RedisServer::start();
        let (router, recorder) = start_router(&server, json!({}));
        connect(&router, &recorder, "live");
        connect(&router, &recorder, "tmp");
        frame(
            &router,
            "tmp",
            json!({"to": "hydra-router:/", "frm": "client:/", "typ": "reconnect", "bdy": {"id": "live"}}),
        );
        let refused = recorder.next("tmp");
        assert!(refused["bdy"]["error"].as_str().unwrap().contains("live"), "{refused}");
        assert!(
            recorder.closed("tmp").is_none(),
            "the socket stays open with its own id"
        );
        assert_eq!(recorder.pending("live"), 0, "the connected client is left alone");

        frame(
            &router,
            "tmp",
            json!({"to": "hydra-router:/", "frm": "client:/", "typ": "reconnect", "bdy": {"x": 1}}),
        );
        assert_eq!(
            recorder.next("tmp")["bdy"]["error"],
            "reconnect message missing reconnect id"
        );
        assert!(recorder.closed("tmp").is_some());
        router.ws_routing().disconnected("tmp");
        let iid = router.hydra().get_instance_id().to_string();
        assert_eq!(router.shared().ws_directory.to_json()[&iid], json!({"live": 1}));
        router.shutdown();
    }
}
