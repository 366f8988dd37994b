//! The C ABI of hydra-rs (`libhydra_ffi.so` / `libhydra_ffi.a`, header
//! `include/hydra.h`, generated from this crate by cbindgen).
//!
//! Conventions (see the header's preamble for the C user's version):
//! - Functions are `hydra_<noun>_<verb>` or `hydra_<Node method in snake
//!   case>` on the `hydra` handle; the handle comes first, inputs next, `out_*`
//!   pointers last.
//! - They return an `int32_t` status: `HYDRA_OK`, a `hydra_rs::ErrorCode` value,
//!   or one of the ABI's own codes (NULL argument, invalid UTF-8, invalid
//!   handle, panic, callback failed); `hydra_last_error_message()` says why,
//!   per thread. Callbacks say why they fail with
//!   `hydra_set_last_error_message()`.
//! - Structured data crosses as JSON text: owned strings returned in `out_*`
//!   are freed with `hydra_string_free`.
//! - Handles are table keys, not addresses (`handles.rs`): stale or forged
//!   ones are refused, never dereferenced.
//! - Every export runs behind `catch_unwind`; callbacks get `user_data`
//!   first and a `free_user_data` finalizer.
#![allow(non_camel_case_types)]
#![deny(missing_docs)]

// Declared in the header's order (cbindgen follows it), one per group so
// rustfmt keeps it: status codes, strings, reading JSON, callbacks, the hydra handle and its
// discovery, messaging, HTTP, queues, logging.
mod status;

mod args;

mod json;

mod callbacks;

mod handles;

mod service;

mod messaging;

mod http;

mod queue;

mod logging;

pub use args::hydra_string_free;
pub use callbacks::hydra_free_callback;
pub use http::{
    hydra_get_all_service_routes, hydra_http_callback, hydra_http_response, hydra_http_response_add_header,
    hydra_http_response_send, hydra_http_response_set, hydra_http_stats, hydra_make_api_request, hydra_match_route,
    hydra_register_routes, hydra_serve_http,
};
pub use json::{hydra_json_get, hydra_json_get_string};
pub use logging::{
    HYDRA_LOG_DEBUG, HYDRA_LOG_ERROR, HYDRA_LOG_INFO, HYDRA_LOG_OFF, HYDRA_LOG_TRACE, HYDRA_LOG_WARN,
    hydra_log_callback, hydra_log_set_callback,
};
pub use messaging::{
    hydra_create_umf_message, hydra_message_callback, hydra_message_stats, hydra_on_message, hydra_receive_message,
    hydra_reply, hydra_request, hydra_send_broadcast_message, hydra_send_message, hydra_send_reply_message,
};
pub use queue::{
    hydra_get_queued_message, hydra_mark_queue_message, hydra_queue_callback, hydra_queue_message, hydra_queue_stats,
    hydra_queue_worker, hydra_queue_worker_free, hydra_queue_worker_new, hydra_queue_worker_stats,
    hydra_queue_worker_stop, hydra_queued_message, hydra_queued_message_free, hydra_queued_message_json,
    hydra_redrive_dead_letters,
};
pub use service::{
    hydra, hydra_clear_stale_nodes, hydra_find_service, hydra_free, hydra_get_config, hydra_get_health,
    hydra_get_instance_id, hydra_get_service_health_all, hydra_get_service_health_log, hydra_get_service_info,
    hydra_get_service_name, hydra_get_service_nodes, hydra_get_service_presence, hydra_get_services,
    hydra_has_service_presence, hydra_is_registered, hydra_list_config, hydra_new, hydra_new_with_name,
    hydra_put_config, hydra_register_service, hydra_send_to_health_log, hydra_shutdown,
};
pub use status::{
    HYDRA_BAD_REQUEST, HYDRA_CALLBACK_FAILED, HYDRA_INVALID_CONFIG, HYDRA_INVALID_HANDLE, HYDRA_INVALID_STATE,
    HYDRA_INVALID_UTF8, HYDRA_MALFORMED, HYDRA_NOT_FOUND, HYDRA_NULL_ARGUMENT, HYDRA_OK, HYDRA_PANIC, HYDRA_REDIS,
    HYDRA_SERVICE_UNAVAILABLE, HYDRA_TIMEOUT, hydra_last_error_message, hydra_set_last_error_message,
    hydra_status_name, hydra_version,
};
