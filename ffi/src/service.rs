//! The `hydra` handle: create, register, shut down, free; identity; discovery
//! and presence; health and the flight recorder; the config store.

use std::ffi::c_char;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

use crossbeam_channel::Receiver;
use hydra_rs::{Config, ConfigBuilder, Hydra, Umf};
use serde_json::{Map, Value, json};

use crate::args::{self, millis, owned_json, owned_string};
use crate::handles::Table;
use crate::status::{FfiError, FfiResult, HYDRA_INVALID_CONFIG, HYDRA_NOT_FOUND, call, note_error};

/// A Hydra service instance (Node's `hydra` object): one connection to Redis,
/// this instance's registration, its message handler and HTTP routes.
///
/// Thread safety: every function may be called on the same handle from any
/// number of threads at once, including from inside callbacks, and
/// `hydra_free` may race with them: calls already running finish safely, later
/// ones fail with `HYDRA_INVALID_HANDLE`.
pub struct hydra {
    _opaque: [u8; 0],
}

/// What a `hydra *` stands for.
pub(crate) struct HydraHandle {
    pub(crate) hydra: Hydra,
    shut_down: AtomicBool,
    pull: OnceLock<Receiver<Umf>>,
}

pub(crate) static HYDRAS: Table<HydraHandle> = Table::new("hydra");

impl HydraHandle {
    /// The Hydra, unless this handle has been shut down.
    pub(crate) fn live(&self) -> FfiResult<&Hydra> {
        if self.shut_down.load(Ordering::SeqCst) {
            return Err(FfiError::invalid_state("this hydra handle has been shut down"));
        }
        Ok(&self.hydra)
    }

    /// The pull receiver, created (which switches messages to it while no
    /// handler is set) on first use.
    pub(crate) fn receiver(&self) -> &Receiver<Umf> {
        self.pull.get_or_init(|| self.hydra.messages())
    }

    fn shutdown(&self) -> FfiResult {
        self.shut_down.store(true, Ordering::SeqCst);
        self.hydra.shutdown()?;
        Ok(())
    }
}

/// Looks up a `hydra *` argument.
pub(crate) fn handle(h: *const hydra) -> FfiResult<std::sync::Arc<HydraHandle>> {
    HYDRAS.get(h, "hydra")
}

/// What a callback gets as its `hydra *` argument: the handle it was
/// registered on.
pub(crate) fn as_ptr(id: usize) -> *mut hydra {
    id as *mut hydra
}

fn adopt(hydra: Hydra, out: &mut *mut hydra) {
    let object = std::sync::Arc::new(HydraHandle {
        hydra,
        shut_down: AtomicBool::new(false),
        pull: OnceLock::new(),
    });
    *out = as_ptr(HYDRAS.insert(object));
}

/// hydra-rs settings that are not part of Node's document, read from the
/// `hydra` branch when present (Node ignores them).
fn apply_tuning(mut builder: ConfigBuilder, branch: &Map<String, Value>) -> FfiResult<ConfigBuilder> {
    let number = |key: &str| -> FfiResult<Option<u64>> {
        match branch.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v.as_u64().map(Some).ok_or_else(|| FfiError {
                code: HYDRA_INVALID_CONFIG,
                message: format!("invalid config field {key}: must be a non-negative integer, got {v}"),
                named: false,
            }),
        }
    };
    if let Some(ms) = number("connectTimeout")? {
        builder = builder.connect_timeout(millis(ms));
    }
    if let Some(ms) = number("commandTimeout")? {
        builder = builder.command_timeout(millis(ms));
    }
    if let Some(ms) = number("presenceCacheTTL")? {
        builder = builder.presence_cache_ttl(millis(ms));
    }
    let count = |n: u64| usize::try_from(n).unwrap_or(usize::MAX);
    if let Some(n) = number("messageWorkers")? {
        builder = builder.message_workers(count(n));
    }
    if let Some(n) = number("messageQueueCapacity")? {
        builder = builder.message_queue_capacity(count(n));
    }
    if let Some(n) = number("maxQueuedMessageBytes")? {
        builder = builder.max_queued_message_bytes(count(n));
    }
    if let Some(n) = number("maxMessageBytes")? {
        builder = builder.max_message_bytes(count(n));
    }
    Ok(builder)
}

/// Creates a Hydra instance from a Node-format config document and connects
/// to Redis (Node's `hydra.init(config)`); registers nothing yet.
///
/// `config_json` is Node's document, `{"hydra": {"serviceName": "billing",
/// "servicePort": 0, "serviceIP": "", "redis": {"url": "redis://host:6379/15"},
/// ...}}`. `HYDRA_REDIS_URL` and `HYDRA_SERVICE` from the environment override
/// it, as in Node. hydra-rs settings may be added to the `hydra` branch:
/// `connectTimeout`, `commandTimeout`, `presenceCacheTTL` (milliseconds),
/// `messageWorkers`, `messageQueueCapacity`, `maxQueuedMessageBytes`, `maxMessageBytes`.
///
/// On success `*out_hydra` is a new handle, to be released with `hydra_free`;
/// on failure it is NULL. Fails with `HYDRA_INVALID_CONFIG` (naming the field)
/// or `HYDRA_REDIS` (within the connect timeout) when Redis is unreachable.
///
/// # Safety
/// `config_json` is NULL or a NUL-terminated string; `out_hydra` is NULL or
/// writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn hydra_new(config_json: *const c_char, out_hydra: *mut *mut hydra) -> i32 {
    call("hydra_new", || {
        // SAFETY: the caller's contract.
        let out = unsafe { args::out(out_hydra, "out_hydra", std::ptr::null_mut()) }?;
        // SAFETY: the caller's contract.
        let text = unsafe { args::text(config_json, "config_json") }?;
        let document: Value = serde_json::from_str(text).map_err(|e| FfiError {
            code: HYDRA_INVALID_CONFIG,
            message: format!("invalid config field hydra: not valid JSON: {e}"),
            named: false,
        })?;
        let branch = document
            .get("hydra")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        let builder = apply_tuning(ConfigBuilder::from_value(document)?, &branch)?;
        let hydra = Hydra::init(builder.apply_env()?.build()?)?;
        adopt(hydra, out);
        Ok(())
    })
}

/// Creates a Hydra instance from just a service name (Redis from
/// `HYDRA_REDIS_URL`, else Node's default `redis://127.0.0.1:6379/15`) and
/// connects to Redis. As `hydra_new` otherwise.
///
/// # Safety
/// `service_name` is NULL or a NUL-terminated string; `out_hydra` is NULL or
/// writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn hydra_new_with_name(service_name: *const c_char, out_hydra: *mut *mut hydra) -> i32 {
    call("hydra_new_with_name", || {
        // SAFETY: the caller's contract.
        let out = unsafe { args::out(out_hydra, "out_hydra", std::ptr::null_mut()) }?;
        // SAFETY: the caller's contract.
        let name = unsafe { args::text(service_name, "service_name") }?;
        let hydra = Hydra::init(Config::new(name)?)?;
        adopt(hydra, out);
        Ok(())
    })
}

/// Shuts the instance down (if `hydra_shutdown` has not) and releases the
/// handle. Waits for running callbacks to return (up to 5 s per thread).
/// NULL is a no-op; a stale handle (already freed) is ignored and only sets
/// the last error message. After it returns, the handle must not be used;
/// calls that still do get `HYDRA_INVALID_HANDLE`.
#[unsafe(no_mangle)]
pub extern "C" fn hydra_free(hydra: *mut hydra) {
    crate::status::call_or("hydra_free", (), || {
        if hydra.is_null() {
            return;
        }
        match HYDRAS.remove(hydra) {
            Some(object) => {
                if let Err(e) = object.shutdown() {
                    log::warn!("hydra_free: shutdown: {}", e.message);
                }
            }
            None => note_error("hydra_free", &HYDRAS.stale("hydra")),
        }
    })
}

/// Makes this instance exist (Node's `registerService`): service record,
/// presence, `nodes` entry and health in Redis, kept alive by a heartbeat
/// thread, and subscriptions to the service's and instance's channels.
///
/// When `out_info_json` is not NULL it receives
/// `{"serviceName","serviceIP","servicePort"}` (free with `hydra_string_free`).
///
/// # Safety
/// `out_info_json` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn hydra_register_service(hydra: *mut hydra, out_info_json: *mut *mut c_char) -> i32 {
    call("hydra_register_service", || {
        // SAFETY: the caller's contract.
        let out = unsafe { args::optional_out(out_info_json, std::ptr::null_mut()) };
        let info = handle(hydra)?.live()?.register_service()?;
        if let Some(out) = out {
            *out = owned_json(&info)?;
        }
        Ok(())
    })
}

/// Deregisters and stops the instance (Node's `shutdown`): stops the
/// heartbeat, removes presence, stops the HTTP server, message handlers and
/// listener. Idempotent. The handle stays valid (release it with `hydra_free`);
/// later calls that need Redis fail with `HYDRA_INVALID_STATE`, while the
/// identity and counter getters keep working.
#[unsafe(no_mangle)]
pub extern "C" fn hydra_shutdown(hydra: *mut hydra) -> i32 {
    call("hydra_shutdown", || handle(hydra)?.shutdown())
}

/// `*out_registered` = true between `hydra_register_service` and
/// `hydra_shutdown`.
///
/// # Safety
/// `out_registered` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn hydra_is_registered(hydra: *mut hydra, out_registered: *mut bool) -> i32 {
    call("hydra_is_registered", || {
        // SAFETY: the caller's contract.
        let out = unsafe { args::out(out_registered, "out_registered", false) }?;
        *out = handle(hydra)?.hydra.is_registered();
        Ok(())
    })
}

/// This instance's identity: `{"serviceName","serviceIP","servicePort",
/// "instanceID","serviceVersion","serviceType"}` (works after shutdown).
///
/// # Safety
/// `out_json` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn hydra_get_service_info(hydra: *mut hydra, out_json: *mut *mut c_char) -> i32 {
    call("hydra_get_service_info", || {
        // SAFETY: the caller's contract.
        let out = unsafe { args::out(out_json, "out_json", std::ptr::null_mut()) }?;
        let object = handle(hydra)?;
        let h = &object.hydra;
        let info = h.service_info();
        *out = owned_json(&json!({
            "serviceName": info.service_name,
            "serviceIP": info.service_ip,
            "servicePort": info.service_port,
            "instanceID": h.get_instance_id(),
            "serviceVersion": h.get_instance_version(),
            "serviceType": h.config().service_type(),
        }))?;
        Ok(())
    })
}

/// Own service name, lowercased (Node's `getServiceName`), as an owned string.
///
/// # Safety
/// `out_name` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn hydra_get_service_name(hydra: *mut hydra, out_name: *mut *mut c_char) -> i32 {
    call("hydra_get_service_name", || {
        // SAFETY: the caller's contract.
        let out = unsafe { args::out(out_name, "out_name", std::ptr::null_mut()) }?;
        *out = owned_string(handle(hydra)?.hydra.get_service_name().to_string())?;
        Ok(())
    })
}

/// Own instance ID, 32 hex characters (Node's `getInstanceID`), as an owned
/// string.
///
/// # Safety
/// `out_instance_id` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn hydra_get_instance_id(hydra: *mut hydra, out_instance_id: *mut *mut c_char) -> i32 {
    call("hydra_get_instance_id", || {
        // SAFETY: the caller's contract.
        let out = unsafe { args::out(out_instance_id, "out_instance_id", std::ptr::null_mut()) }?;
        *out = owned_string(handle(hydra)?.hydra.get_instance_id().to_string())?;
        Ok(())
    })
}

/// Runs `f` on a live handle and hands its JSON result to `out_json`.
///
/// # Safety
/// `out_json` is NULL or writable.
unsafe fn json_out<T: serde::Serialize>(
    hydra: *mut hydra,
    out_json: *mut *mut c_char,
    f: impl FnOnce(&Hydra) -> FfiResult<T>,
) -> FfiResult {
    // SAFETY: the caller's contract.
    let out = unsafe { args::out(out_json, "out_json", std::ptr::null_mut()) }?;
    let object = handle(hydra)?;
    let value = f(object.live()?)?;
    *out = owned_json(&value)?;
    Ok(())
}

/// Every registered service's record, a JSON array (Node's `getServices`).
///
/// # Safety
/// `out_json` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn hydra_get_services(hydra: *mut hydra, out_json: *mut *mut c_char) -> i32 {
    // SAFETY: forwarded contract.
    call("hydra_get_services", || unsafe {
        json_out(hydra, out_json, |h| Ok(h.get_services()?))
    })
}

/// Every instance record, live or dead, with `elapsed` seconds since its last
/// heartbeat, a JSON array (Node's `getServiceNodes`).
///
/// # Safety
/// `out_json` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn hydra_get_service_nodes(hydra: *mut hydra, out_json: *mut *mut c_char) -> i32 {
    // SAFETY: forwarded contract.
    call("hydra_get_service_nodes", || unsafe {
        json_out(hydra, out_json, |h| Ok(h.get_service_nodes()?))
    })
}

/// The registration record of `service_name` (Node's `findService`);
/// `HYDRA_NOT_FOUND` `Can't find <name> service` when there is none.
///
/// # Safety
/// `service_name` is NULL or a NUL-terminated string; `out_json` is NULL or
/// writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn hydra_find_service(
    hydra: *mut hydra,
    service_name: *const c_char,
    out_json: *mut *mut c_char,
) -> i32 {
    call("hydra_find_service", || {
        // SAFETY: the caller's contract.
        let name = unsafe { args::text(service_name, "service_name") }?;
        // SAFETY: forwarded contract.
        unsafe { json_out(hydra, out_json, |h| Ok(h.find_service(name)?)) }
    })
}

/// Present instances of `service_name`, in random order, a JSON array (empty
/// when none; Node's `getServicePresence`).
///
/// # Safety
/// `service_name` is NULL or a NUL-terminated string; `out_json` is NULL or
/// writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn hydra_get_service_presence(
    hydra: *mut hydra,
    service_name: *const c_char,
    out_json: *mut *mut c_char,
) -> i32 {
    call("hydra_get_service_presence", || {
        // SAFETY: the caller's contract.
        let name = unsafe { args::text(service_name, "service_name") }?;
        // SAFETY: forwarded contract.
        unsafe { json_out(hydra, out_json, |h| Ok(h.get_service_presence(name)?)) }
    })
}

/// `*out_present` = true iff an instance of `service_name` is present (Node's
/// `hasServicePresence`).
///
/// # Safety
/// `service_name` is NULL or a NUL-terminated string; `out_present` is NULL or
/// writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn hydra_has_service_presence(
    hydra: *mut hydra,
    service_name: *const c_char,
    out_present: *mut bool,
) -> i32 {
    call("hydra_has_service_presence", || {
        // SAFETY: the caller's contract.
        let out = unsafe { args::out(out_present, "out_present", false) }?;
        // SAFETY: the caller's contract.
        let name = unsafe { args::text(service_name, "service_name") }?;
        *out = handle(hydra)?.live()?.has_service_presence(name)?;
        Ok(())
    })
}

/// Removes `nodes` entries of instances that are gone and whose last
/// heartbeat is older than `older_than_ms`; `*out_removed` = how many
/// (hydra-cli's `refresh node list`).
///
/// # Safety
/// `out_removed` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn hydra_clear_stale_nodes(hydra: *mut hydra, older_than_ms: u64, out_removed: *mut u64) -> i32 {
    call("hydra_clear_stale_nodes", || {
        // SAFETY: the caller's contract.
        let out = unsafe { args::out(out_removed, "out_removed", 0) }?;
        let removed = handle(hydra)?.live()?.clear_stale_nodes(millis(older_than_ms))?;
        *out = removed as u64;
        Ok(())
    })
}

/// This instance's health object, sampled now (Node's `getHealth`); `null`
/// when not registered.
///
/// # Safety
/// `out_json` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn hydra_get_health(hydra: *mut hydra, out_json: *mut *mut c_char) -> i32 {
    // SAFETY: forwarded contract.
    call("hydra_get_health", || unsafe {
        json_out(hydra, out_json, |h| Ok(h.get_health()))
    })
}

/// Writes an entry to this instance's flight recorder (Node's
/// `sendToHealthLog`; `entry_type` is `info`, `error`, `fatal`, `debug`, ...)
/// and to the log. Only a registered instance writes to Redis.
///
/// # Safety
/// `entry_type` and `message` are NULL or NUL-terminated strings.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn hydra_send_to_health_log(
    hydra: *mut hydra,
    entry_type: *const c_char,
    message: *const c_char,
) -> i32 {
    call("hydra_send_to_health_log", || {
        // SAFETY: the caller's contract.
        let entry_type = unsafe { args::text(entry_type, "entry_type") }?;
        // SAFETY: the caller's contract.
        let message = unsafe { args::text(message, "message") }?;
        handle(hydra)?.live()?.send_to_health_log(entry_type, message)?;
        Ok(())
    })
}

/// Flight-recorder entries of every instance of `service_name`, newest first,
/// a JSON array (Node's `getServiceHealthLog`).
///
/// # Safety
/// `service_name` is NULL or a NUL-terminated string; `out_json` is NULL or
/// writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn hydra_get_service_health_log(
    hydra: *mut hydra,
    service_name: *const c_char,
    out_json: *mut *mut c_char,
) -> i32 {
    call("hydra_get_service_health_log", || {
        // SAFETY: the caller's contract.
        let name = unsafe { args::text(service_name, "service_name") }?;
        // SAFETY: forwarded contract.
        unsafe { json_out(hydra, out_json, |h| Ok(h.get_service_health_log(name)?)) }
    })
}

/// Health, log and present instances of every service, a JSON array (Node's
/// `getServiceHealthAll`).
///
/// # Safety
/// `out_json` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn hydra_get_service_health_all(hydra: *mut hydra, out_json: *mut *mut c_char) -> i32 {
    // SAFETY: forwarded contract.
    call("hydra_get_service_health_all", || unsafe {
        json_out(hydra, out_json, |h| Ok(h.get_service_health_all()?))
    })
}

/// Stores a config document under a `service:version` label (Node's
/// `putConfig`).
///
/// # Safety
/// `label` and `document_json` are NULL or NUL-terminated strings.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn hydra_put_config(
    hydra: *mut hydra,
    label: *const c_char,
    document_json: *const c_char,
) -> i32 {
    call("hydra_put_config", || {
        // SAFETY: the caller's contract.
        let label = unsafe { args::text(label, "label") }?;
        // SAFETY: the caller's contract.
        let document = unsafe { args::json(document_json, "document_json") }?;
        handle(hydra)?.live()?.put_config(label, &document)?;
        Ok(())
    })
}

/// The config document stored under `service:version` (Node's `getConfig`);
/// `HYDRA_NOT_FOUND` when there is none.
///
/// # Safety
/// `label` is NULL or a NUL-terminated string; `out_json` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn hydra_get_config(hydra: *mut hydra, label: *const c_char, out_json: *mut *mut c_char) -> i32 {
    call("hydra_get_config", || {
        // SAFETY: the caller's contract.
        let label = unsafe { args::text(label, "label") }?;
        // SAFETY: forwarded contract.
        unsafe {
            json_out(hydra, out_json, |h| {
                h.get_config(label)?.ok_or_else(|| FfiError {
                    code: HYDRA_NOT_FOUND,
                    message: format!("no config stored as {label}"),
                    named: false,
                })
            })
        }
    })
}

/// The `service:version` labels stored for `service_name`, sorted, a JSON
/// array (Node's `listConfig`).
///
/// # Safety
/// `service_name` is NULL or a NUL-terminated string; `out_json` is NULL or
/// writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn hydra_list_config(
    hydra: *mut hydra,
    service_name: *const c_char,
    out_json: *mut *mut c_char,
) -> i32 {
    call("hydra_list_config", || {
        // SAFETY: the caller's contract.
        let name = unsafe { args::text(service_name, "service_name") }?;
        // SAFETY: forwarded contract.
        unsafe { json_out(hydra, out_json, |h| Ok(h.list_config(name)?)) }
    })
}
