//! The `Hydra` handle: what Node's `hydra` singleton is, as a cheap `Clone +
//! Send + Sync` value. `init` connects; `register_service` makes the instance
//! exist; discovery calls work with or without registering; `shutdown` (or
//! dropping the last clone) removes the instance again.

use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crossbeam_channel::Receiver;
use serde::Serialize;
use serde_json::Value;

use crate::config::{Config, PortSpec, parse_label};
use crate::error::{Error, Result};
use crate::heartbeat::{Heartbeat, Registration};
use crate::host;
use crate::http::HttpState;
use crate::keys;
use crate::mailbox::Mailboxes;
use crate::messaging::{HandlerError, Identity, MessageStats, Messaging, MessagingSettings, instance_route};
use crate::records::{HealthLogEntry, Instance, NodeTemplate, ServiceRecord};
use crate::registry::{Registry, ServiceHealth};
use crate::store::Store;
use crate::umf::Umf;

/// A connection to Hydra: discovery, presence and (after
/// [`register_service`](Hydra::register_service)) this instance's registration.
///
/// Cloning is cheap and clones share everything. The instance is shut down by
/// [`shutdown`](Hydra::shutdown) or when the last clone is dropped.
#[derive(Clone)]
pub struct Hydra {
    inner: Arc<Inner>,
}

/// What [`Hydra::register_service`] registered (Node resolves the same three).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceInfo {
    /// Service name.
    pub service_name: String,
    /// Published address.
    #[serde(rename = "serviceIP")]
    pub service_ip: String,
    /// Published port.
    pub service_port: u16,
}

pub(crate) struct Inner {
    config: Config,
    store: Arc<Store>,
    registry: Arc<Registry>,
    messaging: Arc<Messaging>,
    instance_id: String,
    service_ip: String,
    service_port: AtomicU16,
    state: Mutex<State>,
    /// Routes stored by `register_routes`, re-created by the heartbeat when
    /// Redis lost them.
    routes: Arc<Mutex<Vec<String>>>,
    tasks: Mutex<Vec<Box<dyn BackgroundTask>>>,
    http: HttpState,
}

/// A weak reference to a `Hydra` handle, for runtime parts that must not keep
/// the instance alive (handlers get a handle from it per call).
#[derive(Clone)]
pub(crate) struct WeakHydra(std::sync::Weak<Inner>);

impl WeakHydra {
    pub(crate) fn upgrade(&self) -> Option<Hydra> {
        self.0.upgrade().map(|inner| Hydra { inner })
    }
}

/// Something running in the background on behalf of a `Hydra` handle (a queue
/// worker, an HTTP server, …): stopped and joined by `shutdown`, after the
/// instance has been deregistered and before the message runtime stops.
pub(crate) trait BackgroundTask: Send {
    /// Stops the task and joins its threads, within a deadline.
    fn stop(self: Box<Self>);
}

enum State {
    Initialized,
    /// `register_service` is subscribing and writing (without the lock held).
    Registering,
    /// Registered, heartbeat running, listening on the service's channels.
    Registered {
        registration: Arc<Registration>,
        heartbeat: Heartbeat,
    },
    ShutDown,
}

impl Hydra {
    /// Connects to Redis and prepares the instance (Node's `init`): resolves the
    /// service IP and port and creates the instance ID. Writes nothing.
    ///
    /// When `HYDRA_SERVICE` named a stored config (`svc:version`), that config is
    /// loaded from Redis and used instead, keeping the Redis settings.
    ///
    /// Fails within the connect timeout when Redis is unreachable, and with
    /// [`Error::InvalidConfig`] (field `redis`) when it is older than 6.2.
    ///
    /// ```no_run
    /// use hydra::{Config, Hydra};
    ///
    /// # fn main() -> hydra::Result<()> {
    /// let config = Config::builder()
    ///     .service_name("billing")
    ///     .service_version("1.0.0")
    ///     .redis_url("redis://127.0.0.1:6379/15")
    ///     .build()?;
    /// let hydra = Hydra::init(config)?; // connects; writes nothing yet
    /// println!("instance {} of {}", hydra.get_instance_id(), hydra.get_service_name());
    /// # Ok(())
    /// # }
    /// ```
    pub fn init(config: Config) -> Result<Hydra> {
        let config = match config.stored_config_label() {
            Some(label) => load_stored_config(&config, label)?,
            None => config,
        };
        let store = Arc::new(Store::new(
            config.redis(),
            config.connect_timeout,
            config.command_timeout,
        )?);
        store.check_server()?;
        let service_ip = host::resolve_service_ip(&config.service_ip, &config.service_dns)?;
        let service_port = host::choose_port(&config.service_port)?;
        let registry = Arc::new(Registry::new(store.clone(), config.presence_cache_ttl));
        let settings = MessagingSettings {
            workers: config.messaging.message_workers,
            queue_capacity: config.messaging.message_queue_capacity,
            max_queued_bytes: config.messaging.max_queued_message_bytes,
            max_message_bytes: config.messaging.max_message_bytes,
        };
        let instance_id = match &config.instance_id {
            Some(id) => id.clone(),
            None => uuid::Uuid::new_v4().simple().to_string(),
        };
        let identity = Identity {
            instance_id: instance_id.clone(),
            service_name: config.service_name.clone(),
        };
        let inner = Arc::new_cyclic(|weak: &std::sync::Weak<Inner>| {
            // Handlers get a handle built from a weak reference, so the
            // runtime never keeps the instance alive on its own.
            let weak = weak.clone();
            let make_handle = Box::new(move || weak.upgrade().map(|inner| Hydra { inner }));
            Inner {
                instance_id,
                messaging: Arc::new(Messaging::new(
                    identity,
                    store.clone(),
                    registry.clone(),
                    settings,
                    config.signing.clone(),
                    make_handle,
                )),
                config,
                store,
                registry,
                service_ip,
                service_port: AtomicU16::new(service_port),
                http: HttpState::new(),
                state: Mutex::new(State::Initialized),
                routes: Arc::new(Mutex::new(Vec::new())),
                tasks: Mutex::new(Vec::new()),
            }
        });
        Ok(Hydra { inner })
    }

    /// Makes this instance exist (Node's `registerService`): writes the service
    /// record, presence, the `nodes` entry and health in one round trip, then
    /// keeps them alive from the `hydra-heartbeat` thread.
    ///
    /// ```no_run
    /// use hydra::{Config, Hydra};
    ///
    /// # fn main() -> hydra::Result<()> {
    /// let hydra = Hydra::init(Config::new("billing")?)?;
    /// let me = hydra.register_service()?;
    /// println!("{} at {}:{}", me.service_name, me.service_ip, me.service_port);
    /// // Other instances (Rust or Node) now find it:
    /// assert!(!hydra.get_service_presence("billing")?.is_empty());
    /// hydra.shutdown()?; // removes the presence and stops the heartbeat
    /// # Ok(())
    /// # }
    /// ```
    pub fn register_service(&self) -> Result<ServiceInfo> {
        let inner = &self.inner;
        {
            // Claim the transition, then do the I/O without holding the lock,
            // so other calls on the handle are not kept waiting by Redis.
            let mut state = inner.lock_state();
            match *state {
                State::Initialized => *state = State::Registering,
                State::Registering => {
                    return Err(Error::InvalidState(
                        "service registration is already in progress".into(),
                    ));
                }
                State::Registered { .. } => {
                    return Err(Error::InvalidState("service is already registered".into()));
                }
                State::ShutDown => {
                    return Err(Error::InvalidState("this Hydra instance has been shut down".into()));
                }
            }
        }
        let running = match self.start_registration() {
            Ok(running) => running,
            Err(e) => {
                let mut state = inner.lock_state();
                if matches!(*state, State::Registering) {
                    *state = State::Initialized;
                }
                return Err(e);
            }
        };
        let (registration, heartbeat) = running;
        {
            let mut state = inner.lock_state();
            if !matches!(*state, State::Registering) {
                // Shut down while registering: undo what was just set up.
                drop(state);
                heartbeat.stop();
                let _ = registration.deregister();
                inner.messaging.stop_listening();
                return Err(Error::InvalidState(
                    "this Hydra instance was shut down while registering".into(),
                ));
            }
            *state = State::Registered {
                registration,
                heartbeat,
            };
        }
        // Logged after the lock: a logger may call back into this handle.
        log::info!(
            "registered {} instance {} at {}:{} on {}",
            inner.config.service_name,
            inner.instance_id,
            inner.service_ip,
            inner.service_port.load(Ordering::SeqCst),
            inner.store.target()
        );
        Ok(self.service_info())
    }

    /// Subscribes, writes the registration and starts the heartbeat.
    fn start_registration(&self) -> Result<(Arc<Registration>, Heartbeat)> {
        let inner = &self.inner;
        let node = NodeTemplate {
            service_name: inner.config.service_name.clone(),
            service_description: inner.config.service_description.clone(),
            version: inner.config.service_version.clone(),
            instance_id: inner.instance_id.clone(),
            process_id: std::process::id(),
            ip: inner.service_ip.clone(),
            port: inner.service_port.load(Ordering::SeqCst).into(),
            port_is_fixed: matches!(inner.config.service_port, PortSpec::Fixed(_)),
            host_name: host::hostname(),
        };
        // Subscribe before becoming visible, so a message sent as soon as
        // presence appears is not lost (Node subscribes after).
        self.start_listener()?;
        let registration = Arc::new(Registration::new(
            inner.store.clone(),
            &inner.config.service_type,
            node,
            inner.routes.clone(),
        ));
        if let Err(e) = registration.register() {
            inner.messaging.stop_listening();
            return Err(e);
        }
        match Heartbeat::spawn(registration.clone()) {
            Ok(heartbeat) => Ok((registration, heartbeat)),
            Err(e) => {
                inner.messaging.stop_listening();
                Err(Error::InvalidState(format!("cannot start the heartbeat thread: {e}")))
            }
        }
    }

    fn start_listener(&self) -> Result<()> {
        let inner = &self.inner;
        let svc = &inner.config.service_name;
        let channels = vec![
            keys::service_channel(svc),
            keys::instance_channel(svc, &inner.instance_id),
        ];
        let deadline = inner.config.connect_timeout + inner.config.command_timeout;
        inner.messaging.listen(channels, deadline)
    }

    /// Stops the heartbeat and removes this instance like Node does: logs
    /// "Service is shutting down." to the flight recorder, deletes presence,
    /// lets health expire in 3 s, and also removes its own `nodes` entry.
    /// Idempotent; also run when the last clone is dropped.
    pub fn shutdown(&self) -> Result<()> {
        self.inner.shutdown()
    }

    /// Name, IP and port this instance publishes.
    pub fn service_info(&self) -> ServiceInfo {
        ServiceInfo {
            service_name: self.inner.config.service_name.clone(),
            service_ip: self.inner.service_ip.clone(),
            service_port: self.inner.service_port.load(Ordering::SeqCst),
        }
    }

    /// Own service name, lowercased (`getServiceName`).
    pub fn get_service_name(&self) -> &str {
        &self.inner.config.service_name
    }

    /// Own instance ID: 32 lowercase hex characters, new for every `init`
    /// (`getInstanceID`).
    pub fn get_instance_id(&self) -> &str {
        &self.inner.instance_id
    }

    /// Own `serviceVersion` (`getInstanceVersion`).
    pub fn get_instance_version(&self) -> &str {
        &self.inner.config.service_version
    }

    /// The configuration in use.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// True between `register_service` and `shutdown`.
    pub fn is_registered(&self) -> bool {
        matches!(*self.inner.lock_state(), State::Registered { .. })
    }

    /// Runs `handler` on the message threads for every message that reaches this
    /// instance (on the service channel or the instance channel), replacing any
    /// previous handler (Node's `hydra.on('message', …)`). The handler gets a
    /// handle for replying. An `Err` or a panic is logged and counted; the
    /// thread lives on. When the handlers are saturated, new messages wait
    /// (bounded by `maxQueuedMessageBytes`); at the bound the listener stops
    /// reading, so Redis buffers them, and only after 5 s without room are
    /// messages dropped and counted ([`MessageStats::overflow`]). Messages that
    /// loop back to this instance are dropped ([`MessageStats::looped`]).
    ///
    /// Up to `messageWorkers` handler calls run at once, so messages sent one
    /// after another may be handled in a different order; a handler that needs
    /// order must restore it itself (e.g. from a sequence number in the body).
    ///
    /// ```no_run
    /// use hydra::{Config, Hydra};
    /// use serde_json::json;
    ///
    /// # fn main() -> hydra::Result<()> {
    /// let hydra = Hydra::init(Config::new("invoices")?)?;
    /// hydra.on_message(|h, msg| {
    ///     let amount = msg.body["amount"].as_f64().unwrap_or(0.0);
    ///     // `?` turns any error into a HandlerError, which is logged and counted.
    ///     h.reply(&msg, json!({"total": amount * 1.2}))?;
    ///     Ok(())
    /// })?;
    /// hydra.register_service()?; // now messages to `invoices:/` arrive
    /// # Ok(())
    /// # }
    /// ```
    pub fn on_message<F>(&self, handler: F) -> Result<()>
    where
        F: Fn(&Hydra, Umf) -> std::result::Result<(), HandlerError> + Send + Sync + 'static,
    {
        self.inner.messaging.set_handler(Arc::new(handler))
    }

    /// The pull alternative to [`on_message`](Hydra::on_message): messages
    /// arrive on this receiver while no handler is set. It is bounded like the
    /// handler queue (`maxQueuedMessageBytes`, `messageQueueCapacity`): when
    /// full, the listener stops reading for up to 5 s, then drops and counts.
    /// At [`shutdown`](Hydra::shutdown) it disconnects (after the messages
    /// already in it), waking a thread blocked in `recv` at once.
    pub fn messages(&self) -> Receiver<Umf> {
        self.inner.messaging.receiver()
    }

    /// A message from this service (`from` = `<service>:/`) to `to`.
    pub fn create_umf_message(&self, to: &str, body: Value) -> Umf {
        Umf::new(to, format!("{}:/", self.inner.config.service_name), body)
    }

    /// Publishes `message` to one instance (`sendMessage`): the one named in
    /// `to` (`<id>@<svc>:/…`), or a random present one.
    /// [`Error::ServiceUnavailable`] with Node's reason when there is none:
    /// `Unavailable <svc> instances`, `Unavailable <svc> instance named <id>`.
    pub fn send_message(&self, message: &Umf) -> Result<()> {
        self.inner.messaging.send_message(message)
    }

    /// Publishes `message` to every instance of its service
    /// (`sendBroadcastMessage`). To `hydra-router` it succeeds quietly when
    /// none is present, as in Node.
    pub fn send_broadcast_message(&self, message: &Umf) -> Result<()> {
        self.inner.messaging.send_broadcast_message(message)
    }

    /// Sends `response` as the reply to `original` (`sendReplyMessage`): to
    /// `original.via`, else `original.from`, with `rmid` = `original.mid` and
    /// `forward` copied. See [`Umf::reply_with`].
    pub fn send_reply_message(&self, original: &Umf, response: Umf) -> Result<()> {
        self.send_message(&original.reply_with(response))
    }

    /// Replies to `original` with `body` (see [`send_reply_message`](Hydra::send_reply_message)).
    pub fn reply(&self, original: &Umf, body: Value) -> Result<()> {
        self.send_message(&original.reply(body))
    }

    /// Sends `message` with `from` set to this instance (`<id>@<svc>:/`) and
    /// waits for the reply whose `rmid` is its `mid`; [`Error::Timeout`] when
    /// none comes in time. Any number of requests may wait at once, from any
    /// threads; a reply that comes after its request timed out is discarded
    /// and counted. Needs a registered service (replies come to its channel).
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use hydra::{Config, Error, Hydra};
    /// use serde_json::json;
    ///
    /// # fn main() -> hydra::Result<()> {
    /// let hydra = Hydra::init(Config::new("billing")?)?;
    /// hydra.register_service()?;
    /// let question = hydra.create_umf_message("invoices:/", json!({"amount": 100}));
    /// match hydra.request(&question, Duration::from_secs(2)) {
    ///     Ok(answer) => println!("invoices answered {}", answer.body),
    ///     Err(Error::Timeout(_)) => println!("no answer in 2 s"),
    ///     Err(other) => return Err(other),
    /// }
    /// # Ok(())
    /// # }
    /// ```
    pub fn request(&self, message: &Umf, timeout: Duration) -> Result<Umf> {
        if !self.is_registered() {
            return Err(Error::InvalidState(
                "request needs a registered service: replies are delivered to its instance channel".into(),
            ));
        }
        let mut message = message.clone();
        message.from = instance_route(&self.inner.instance_id, &self.inner.config.service_name);
        self.inner.messaging.request(message, timeout)
    }

    /// Message counters since `init`.
    pub fn message_stats(&self) -> MessageStats {
        self.inner.messaging.stats()
    }

    pub(crate) fn messaging(&self) -> &Messaging {
        &self.inner.messaging
    }

    pub(crate) fn http(&self) -> &HttpState {
        &self.inner.http
    }

    pub(crate) fn downgrade(&self) -> WeakHydra {
        WeakHydra(Arc::downgrade(&self.inner))
    }

    /// Moves the published port (the HTTP server had to listen elsewhere) and
    /// republishes at once when registered.
    pub(crate) fn set_service_port(&self, port: u16) {
        self.inner.service_port.store(port, Ordering::SeqCst);
        let registration = match &*self.inner.lock_state() {
            State::Registered { registration, .. } => Some(registration.clone()),
            _ => None,
        };
        if let Some(registration) = registration {
            registration.set_port(port);
            if let Err(e) = registration.beat(false) {
                log::warn!("could not publish the new port {port} at once ({e}); the next heartbeat will");
            }
        }
    }

    /// Remembers the routes just stored by `register_routes`, so that the
    /// heartbeat re-creates them should Redis lose them.
    pub(crate) fn remember_routes(&self, routes: &[String]) {
        *self.inner.routes.lock().unwrap_or_else(|p| p.into_inner()) = routes.to_vec();
    }

    /// The mailboxes (offline message lists, see [`Mailboxes`]) in Redis
    /// database `db` of this handle's server: hydra-router's `queuerDB`.
    /// Another database gets connections of its own, with the same timeouts.
    pub fn mailboxes(&self, db: i64) -> Result<Mailboxes> {
        let redis = self.inner.config.redis();
        if db == redis.db() {
            return Ok(Mailboxes::new(self.inner.store.clone()));
        }
        if !(0..=i64::from(u16::MAX)).contains(&db) {
            return Err(Error::invalid_config(
                "queuerDB",
                format!("{db} is not a Redis database number"),
            ));
        }
        let store = Store::new(
            &redis.with_db(db),
            self.inner.store.connect_timeout(),
            self.inner.store.command_timeout(),
        )?;
        Ok(Mailboxes::new(Arc::new(store)))
    }

    pub(crate) fn store(&self) -> &Arc<Store> {
        &self.inner.store
    }

    pub(crate) fn registry(&self) -> &Arc<Registry> {
        &self.inner.registry
    }

    /// True once `shutdown` has begun.
    pub(crate) fn is_shut_down(&self) -> bool {
        matches!(*self.inner.lock_state(), State::ShutDown)
    }

    /// Hands a background task to this handle; `shutdown` stops it. Refused
    /// (and the task stopped) when the handle has already been shut down.
    pub(crate) fn add_task(&self, task: Box<dyn BackgroundTask>) -> Result<()> {
        if matches!(*self.inner.lock_state(), State::ShutDown) {
            task.stop();
            return Err(Error::InvalidState("this Hydra instance has been shut down".into()));
        }
        self.inner.tasks.lock().unwrap_or_else(|p| p.into_inner()).push(task);
        Ok(())
    }

    /// Every registered service's record (`getServices`).
    pub fn get_services(&self) -> Result<Vec<ServiceRecord>> {
        self.inner.registry.get_services()
    }

    /// Every instance record, live or dead, with `elapsed` seconds since its last
    /// heartbeat (`getServiceNodes`).
    pub fn get_service_nodes(&self) -> Result<Vec<Instance>> {
        self.inner.registry.get_service_nodes()
    }

    /// Removes `nodes` entries of instances that are gone (no presence) and
    /// whose last heartbeat is older than `older_than`; returns how many.
    /// Node Hydra never removes them, so they pile up; this is hydra-cli's
    /// `refresh node list` (60 s) and hydra-router's `clear` (5 s). An entry
    /// that is refreshed while being judged is kept. Registered instances
    /// already do this by themselves (one at a time, every 30 s, for entries
    /// gone 60 s); the hash is walked in short batches (`HSCAN`), so Redis is
    /// never blocked for long however many entries there are.
    pub fn clear_stale_nodes(&self, older_than: std::time::Duration) -> Result<usize> {
        self.inner.registry.clear_stale_nodes(older_than)
    }

    /// The registration record of `name`, or [`Error::NotFound`]
    /// `Can't find <name> service` (`findService`).
    pub fn find_service(&self, name: &str) -> Result<ServiceRecord> {
        self.inner.registry.find_service(name)
    }

    /// Present instances of `name` in random order, read from Redis now; empty
    /// when none (`getServicePresence`). One round trip whatever the size of
    /// the database and however many instances ever ran, reading only the
    /// instances of `name`; after a Node instance first appears (or Redis lost
    /// its data) one lookup walks the `nodes` hash in short batches instead. (Message and request routing use a short cache instead,
    /// see [`ConfigBuilder::presence_cache_ttl`](crate::ConfigBuilder::presence_cache_ttl).)
    pub fn get_service_presence(&self, name: &str) -> Result<Vec<Instance>> {
        self.inner.registry.get_service_presence(name)
    }

    /// Present instances of `name` from the short cache that message and
    /// request routing use (see
    /// [`ConfigBuilder::presence_cache_ttl`](crate::ConfigBuilder::presence_cache_ttl)),
    /// read from Redis when the cache is stale; random order. What a gateway
    /// asks on every request without a round trip each time.
    pub fn get_service_presence_cached(&self, name: &str) -> Result<Vec<Instance>> {
        self.inner.registry.cached_presence(name)
    }

    /// Appends `message` (short form) to the Redis stream `hydra:stream:<stream>`
    /// as the field `message`, and returns the entry ID Redis gave it
    /// (hydra-router's `POST /v1/router/stream/:name`).
    pub fn stream_message(&self, stream: &str, message: &Umf) -> Result<String> {
        if stream.is_empty() || stream.bytes().any(|b| b.is_ascii_control() || b == b' ') {
            return Err(Error::BadRequest(format!("{stream:?} is not a stream name")));
        }
        message.validate()?;
        let key = crate::keys::stream(stream);
        let body = crate::signing::wire_form(self.inner.config.signing.as_ref(), message)?;
        self.inner.store.run(|c| {
            redis::cmd("XADD")
                .arg(&key)
                .arg("*")
                .arg("message")
                .arg(&body)
                .query::<String>(c)
        })
    }

    /// True iff an instance of `name` is present, read from Redis now
    /// (`hasServicePresence`).
    pub fn has_service_presence(&self, name: &str) -> Result<bool> {
        self.inner.registry.has_service_presence(name)
    }

    /// This instance's health object, sampled now (`getHealth`).
    pub fn get_health(&self) -> Value {
        match &*self.inner.lock_state() {
            State::Registered { registration, .. } => registration.health_snapshot(false),
            _ => Value::Null,
        }
    }

    /// Writes an entry to this instance's flight recorder and to the `log`
    /// crate (`sendToHealthLog`). Like Node, only a registered service writes to
    /// Redis; otherwise the entry is only logged.
    pub fn send_to_health_log(&self, entry_type: &str, message: &str) -> Result<()> {
        let level = match entry_type {
            "fatal" | "error" => log::Level::Error,
            "warn" | "warning" => log::Level::Warn,
            "debug" => log::Level::Debug,
            _ => log::Level::Info,
        };
        log::log!(level, "[{}] {message}", self.inner.config.service_name);
        let registration = match &*self.inner.lock_state() {
            State::Registered { registration, .. } => registration.clone(),
            _ => return Ok(()),
        };
        registration.log(entry_type, message)
    }

    /// Flight-recorder entries of every instance of `name`, newest first
    /// (`getServiceHealthLog`; Node returns only one instance's).
    pub fn get_service_health_log(&self, name: &str) -> Result<Vec<HealthLogEntry>> {
        self.inner.registry.get_service_health_log(name)
    }

    /// Health, log and present instances of every service (`getServiceHealthAll`).
    pub fn get_service_health_all(&self) -> Result<Vec<ServiceHealth>> {
        self.inner.registry.get_service_health_all()
    }

    /// Stores a config document under a `svc:version` label (`putConfig`).
    pub fn put_config(&self, label: &str, document: &Value) -> Result<()> {
        self.inner.registry.put_config(label, document)
    }

    /// The config stored under `svc:version`, if any (`getConfig`).
    pub fn get_config(&self, label: &str) -> Result<Option<Value>> {
        self.inner.registry.get_config(label)
    }

    /// The `svc:version` labels stored for `svc`, sorted (`listConfig`).
    pub fn list_config(&self, service_name: &str) -> Result<Vec<String>> {
        self.inner.registry.list_config(service_name)
    }

    /// Removes the config stored under `svc:version` (`HDEL`, what Node's
    /// `hydra-cli cfg remove` does; Node Hydra has no call for it). Returns
    /// false when nothing was stored there; [`Error::BadRequest`] for a label
    /// that is not `svc:version`.
    pub fn remove_config(&self, label: &str) -> Result<bool> {
        self.inner.registry.remove_config(label)
    }
}

impl std::fmt::Debug for Hydra {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hydra")
            .field("service_name", &self.inner.config.service_name)
            .field("instance_id", &self.inner.instance_id)
            .field("redis", &self.inner.store.target())
            .field("registered", &self.is_registered())
            .finish()
    }
}

impl Inner {
    fn lock_state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn shutdown(&self) -> Result<()> {
        let previous = std::mem::replace(&mut *self.lock_state(), State::ShutDown);
        let tasks = std::mem::take(&mut *self.tasks.lock().unwrap_or_else(|p| p.into_inner()));
        let State::Registered {
            registration,
            heartbeat,
        } = previous
        else {
            tasks.into_iter().for_each(|task| task.stop());
            self.messaging.shutdown();
            return Ok(());
        };
        // Stop beating first, or the heartbeat would bring presence back.
        heartbeat.stop();
        let result = registration.deregister();
        tasks.into_iter().for_each(|task| task.stop());
        self.messaging.shutdown();
        match &result {
            Ok(()) => log::info!("{} instance {} shut down", self.config.service_name, self.instance_id),
            Err(e) => log::warn!(
                "{} instance {} shut down, but its keys could not be removed ({e}); presence expires in 3 s",
                self.config.service_name,
                self.instance_id
            ),
        }
        self.store.clear();
        result
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        let _ = self.shutdown();
    }
}

/// `HYDRA_SERVICE=svc:version`: load that config document from Redis and use
/// it, keeping the Redis settings used to fetch it (spec §11.3).
fn load_stored_config(config: &Config, label: &str) -> Result<Config> {
    let (svc, version) = parse_label(label).map_err(|r| Error::invalid_config("HYDRA_SERVICE", r))?;
    let store = Store::new(config.redis(), config.connect_timeout, config.command_timeout)?;
    let key = keys::configs(svc);
    let text: Option<String> = store.run(|c| redis::cmd("HGET").arg(&key).arg(version).query(c))?;
    let text = text.ok_or_else(|| {
        Error::invalid_config(
            "HYDRA_SERVICE",
            format!("no config stored as {label} (HGET {key} {version})"),
        )
    })?;
    let stored: Value = serde_json::from_str(&text)
        .map_err(|e| Error::invalid_config("HYDRA_SERVICE", format!("stored config {label} is not JSON: {e}")))?;
    let redis_branch = config.document().get("hydra").and_then(|h| h.get("redis")).cloned();
    config.to_builder().with_stored_document(stored, redis_branch)?.build()
}
