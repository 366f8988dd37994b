/*
 * Hostile use of the C ABI: NULL for every pointer argument, invalid UTF-8,
 * invalid JSON, forged and freed handles, calls after shutdown, free +
 * shutdown in every order, callbacks that are slow or call back into the
 * library (even freeing their own handle). Every case must give a status and
 * a message, never a crash, a leak or a hang (the harness runs this under
 * valgrind). Needs $HYDRA_REDIS_URL.
 */
#define _POSIX_C_SOURCE 200809L
#include "check.h"

static const char BAD_UTF8[] = {'a', (char)0xff, (char)0xfe, 'b', 0};

/* ---- NULL, UTF-8 and JSON checks on a live, unregistered handle ---- */

static void null_arguments(hydra *h) {
    char *s = (char *)0x1;
    bool b = true;
    uint64_t n = 7;
    hydra *out = (hydra *)0x1;

    EXPECT(hydra_new(NULL, &out), HYDRA_NULL_ARGUMENT, "hydra_new: argument config_json is NULL");
    CHECK(out == NULL);
    EXPECT(hydra_new("{}", NULL), HYDRA_NULL_ARGUMENT, "out_hydra");
    EXPECT(hydra_new_with_name(NULL, &out), HYDRA_NULL_ARGUMENT, "service_name");
    EXPECT(hydra_new_with_name("x", NULL), HYDRA_NULL_ARGUMENT, "out_hydra");
    hydra_free(NULL);
    hydra_string_free(NULL);

    /* A NULL handle, everywhere. */
    EXPECT(hydra_register_service(NULL, NULL), HYDRA_NULL_ARGUMENT, "argument hydra is NULL");
    EXPECT(hydra_shutdown(NULL), HYDRA_NULL_ARGUMENT, "hydra");
    EXPECT(hydra_is_registered(NULL, &b), HYDRA_NULL_ARGUMENT, "hydra");
    EXPECT(hydra_get_service_info(NULL, &s), HYDRA_NULL_ARGUMENT, "hydra");
    CHECK(s == NULL);
    EXPECT(hydra_get_service_name(NULL, &s), HYDRA_NULL_ARGUMENT, "hydra");
    EXPECT(hydra_get_instance_id(NULL, &s), HYDRA_NULL_ARGUMENT, "hydra");
    EXPECT(hydra_get_services(NULL, &s), HYDRA_NULL_ARGUMENT, "hydra");
    EXPECT(hydra_get_service_nodes(NULL, &s), HYDRA_NULL_ARGUMENT, "hydra");
    EXPECT(hydra_find_service(NULL, "x", &s), HYDRA_NULL_ARGUMENT, "hydra");
    EXPECT(hydra_get_service_presence(NULL, "x", &s), HYDRA_NULL_ARGUMENT, "hydra");
    EXPECT(hydra_has_service_presence(NULL, "x", &b), HYDRA_NULL_ARGUMENT, "hydra");
    EXPECT(hydra_clear_stale_nodes(NULL, 0, &n), HYDRA_NULL_ARGUMENT, "hydra");
    EXPECT(hydra_get_health(NULL, &s), HYDRA_NULL_ARGUMENT, "hydra");
    EXPECT(hydra_send_to_health_log(NULL, "info", "m"), HYDRA_NULL_ARGUMENT, "hydra");
    EXPECT(hydra_get_service_health_log(NULL, "x", &s), HYDRA_NULL_ARGUMENT, "hydra");
    EXPECT(hydra_get_service_health_all(NULL, &s), HYDRA_NULL_ARGUMENT, "hydra");
    EXPECT(hydra_put_config(NULL, "a:1", "{}"), HYDRA_NULL_ARGUMENT, "hydra");
    EXPECT(hydra_get_config(NULL, "a:1", &s), HYDRA_NULL_ARGUMENT, "hydra");
    EXPECT(hydra_list_config(NULL, "a", &s), HYDRA_NULL_ARGUMENT, "hydra");
    EXPECT(hydra_create_umf_message(NULL, "a:/", "{}", &s), HYDRA_NULL_ARGUMENT, "hydra");
    EXPECT(hydra_send_message(NULL, "{}"), HYDRA_NULL_ARGUMENT, "hydra");
    EXPECT(hydra_send_broadcast_message(NULL, "{}"), HYDRA_NULL_ARGUMENT, "hydra");
    EXPECT(hydra_send_reply_message(NULL, "{}", "{}"), HYDRA_NULL_ARGUMENT, "hydra");
    EXPECT(hydra_reply(NULL, "{}", "{}"), HYDRA_NULL_ARGUMENT, "hydra");
    EXPECT(hydra_request(NULL, "{}", 10, &s), HYDRA_NULL_ARGUMENT, "hydra");
    EXPECT(hydra_on_message(NULL, NULL, NULL, NULL), HYDRA_NULL_ARGUMENT, "callback");
    EXPECT(hydra_receive_message(NULL, 0, &s), HYDRA_NULL_ARGUMENT, "hydra");
    EXPECT(hydra_message_stats(NULL, &s), HYDRA_NULL_ARGUMENT, "hydra");
    EXPECT(hydra_make_api_request(NULL, "{}", NULL, &s), HYDRA_NULL_ARGUMENT, "hydra");
    EXPECT(hydra_http_stats(NULL, &s), HYDRA_NULL_ARGUMENT, "hydra");
    EXPECT(hydra_register_routes(NULL, "[]"), HYDRA_NULL_ARGUMENT, "hydra");
    EXPECT(hydra_get_all_service_routes(NULL, &s), HYDRA_NULL_ARGUMENT, "hydra");
    EXPECT(hydra_match_route(NULL, "[get]/", &b), HYDRA_NULL_ARGUMENT, "hydra");
    EXPECT(hydra_http_response_send(NULL, 200, "{}"), HYDRA_NULL_ARGUMENT, "response");
    EXPECT(hydra_http_response_set(NULL, 200, NULL, NULL, 0), HYDRA_NULL_ARGUMENT, "response");
    EXPECT(hydra_http_response_add_header(NULL, "a", "b"), HYDRA_NULL_ARGUMENT, "response");
    CHECK(s == NULL && b == false && n == 0);

    /* A live handle, NULL everywhere else. */
    EXPECT(hydra_is_registered(h, NULL), HYDRA_NULL_ARGUMENT, "out_registered");
    EXPECT(hydra_get_service_info(h, NULL), HYDRA_NULL_ARGUMENT, "out_json");
    EXPECT(hydra_get_service_name(h, NULL), HYDRA_NULL_ARGUMENT, "out_name");
    EXPECT(hydra_get_instance_id(h, NULL), HYDRA_NULL_ARGUMENT, "out_instance_id");
    EXPECT(hydra_get_services(h, NULL), HYDRA_NULL_ARGUMENT, "out_json");
    EXPECT(hydra_get_service_nodes(h, NULL), HYDRA_NULL_ARGUMENT, "out_json");
    EXPECT(hydra_find_service(h, NULL, &s), HYDRA_NULL_ARGUMENT, "service_name");
    EXPECT(hydra_find_service(h, "x", NULL), HYDRA_NULL_ARGUMENT, "out_json");
    EXPECT(hydra_get_service_presence(h, NULL, &s), HYDRA_NULL_ARGUMENT, "service_name");
    EXPECT(hydra_get_service_presence(h, "x", NULL), HYDRA_NULL_ARGUMENT, "out_json");
    EXPECT(hydra_has_service_presence(h, NULL, &b), HYDRA_NULL_ARGUMENT, "service_name");
    EXPECT(hydra_has_service_presence(h, "x", NULL), HYDRA_NULL_ARGUMENT, "out_present");
    EXPECT(hydra_clear_stale_nodes(h, 0, NULL), HYDRA_NULL_ARGUMENT, "out_removed");
    EXPECT(hydra_get_health(h, NULL), HYDRA_NULL_ARGUMENT, "out_json");
    EXPECT(hydra_send_to_health_log(h, NULL, "m"), HYDRA_NULL_ARGUMENT, "entry_type");
    EXPECT(hydra_send_to_health_log(h, "info", NULL), HYDRA_NULL_ARGUMENT, "message");
    EXPECT(hydra_get_service_health_log(h, NULL, &s), HYDRA_NULL_ARGUMENT, "service_name");
    EXPECT(hydra_get_service_health_log(h, "x", NULL), HYDRA_NULL_ARGUMENT, "out_json");
    EXPECT(hydra_get_service_health_all(h, NULL), HYDRA_NULL_ARGUMENT, "out_json");
    EXPECT(hydra_put_config(h, NULL, "{}"), HYDRA_NULL_ARGUMENT, "label");
    EXPECT(hydra_put_config(h, "a:1", NULL), HYDRA_NULL_ARGUMENT, "document_json");
    EXPECT(hydra_get_config(h, NULL, &s), HYDRA_NULL_ARGUMENT, "label");
    EXPECT(hydra_get_config(h, "a:1", NULL), HYDRA_NULL_ARGUMENT, "out_json");
    EXPECT(hydra_list_config(h, NULL, &s), HYDRA_NULL_ARGUMENT, "service_name");
    EXPECT(hydra_list_config(h, "a", NULL), HYDRA_NULL_ARGUMENT, "out_json");
    EXPECT(hydra_create_umf_message(h, NULL, "{}", &s), HYDRA_NULL_ARGUMENT, "argument to is NULL");
    EXPECT(hydra_create_umf_message(h, "a:/", NULL, &s), HYDRA_NULL_ARGUMENT, "body_json");
    EXPECT(hydra_create_umf_message(h, "a:/", "{}", NULL), HYDRA_NULL_ARGUMENT, "out_message_json");
    EXPECT(hydra_send_message(h, NULL), HYDRA_NULL_ARGUMENT, "message_json");
    EXPECT(hydra_send_broadcast_message(h, NULL), HYDRA_NULL_ARGUMENT, "message_json");
    EXPECT(hydra_send_reply_message(h, NULL, "{}"), HYDRA_NULL_ARGUMENT, "original_json");
    EXPECT(hydra_send_reply_message(h, "{}", NULL), HYDRA_NULL_ARGUMENT, "response_json");
    EXPECT(hydra_reply(h, NULL, "{}"), HYDRA_NULL_ARGUMENT, "original_json");
    EXPECT(hydra_reply(h, "{}", NULL), HYDRA_NULL_ARGUMENT, "body_json");
    EXPECT(hydra_request(h, NULL, 10, &s), HYDRA_NULL_ARGUMENT, "message_json");
    EXPECT(hydra_request(h, "{}", 10, NULL), HYDRA_NULL_ARGUMENT, "out_reply_json");
    EXPECT(hydra_on_message(h, NULL, NULL, NULL), HYDRA_NULL_ARGUMENT, "callback");
    EXPECT(hydra_receive_message(h, 0, NULL), HYDRA_NULL_ARGUMENT, "out_message_json");
    EXPECT(hydra_message_stats(h, NULL), HYDRA_NULL_ARGUMENT, "out_json");
    EXPECT(hydra_make_api_request(h, NULL, NULL, &s), HYDRA_NULL_ARGUMENT, "message_json");
    EXPECT(hydra_make_api_request(h, "{}", NULL, NULL), HYDRA_NULL_ARGUMENT, "out_response_json");
    EXPECT(hydra_serve_http(h, NULL, NULL, NULL, NULL, NULL, NULL), HYDRA_NULL_ARGUMENT, "routes_json");
    EXPECT(hydra_serve_http(h, "[]", NULL, NULL, NULL, NULL, NULL), HYDRA_NULL_ARGUMENT, "callback");
    EXPECT(hydra_http_stats(h, NULL), HYDRA_NULL_ARGUMENT, "out_json");
    EXPECT(hydra_register_routes(h, NULL), HYDRA_NULL_ARGUMENT, "routes_json");
    EXPECT(hydra_get_all_service_routes(h, NULL), HYDRA_NULL_ARGUMENT, "out_json");
    EXPECT(hydra_match_route(h, NULL, &b), HYDRA_NULL_ARGUMENT, "route");
    EXPECT(hydra_match_route(h, "[get]/", NULL), HYDRA_NULL_ARGUMENT, "out_matched");
    CHECK(s == NULL);
    STEP("null arguments");
}

static void bad_strings_and_json(hydra *h) {
    char *s = NULL;
    bool b = false;
    hydra *out = NULL;

    EXPECT(hydra_new(BAD_UTF8, &out), HYDRA_INVALID_UTF8, "argument config_json is not valid UTF-8 (at byte 1)");
    EXPECT(hydra_new_with_name(BAD_UTF8, &out), HYDRA_INVALID_UTF8, "service_name");
    EXPECT(hydra_find_service(h, BAD_UTF8, &s), HYDRA_INVALID_UTF8, "service_name");
    EXPECT(hydra_send_to_health_log(h, "info", BAD_UTF8), HYDRA_INVALID_UTF8, "message");
    EXPECT(hydra_put_config(h, BAD_UTF8, "{}"), HYDRA_INVALID_UTF8, "label");
    EXPECT(hydra_create_umf_message(h, BAD_UTF8, "{}", &s), HYDRA_INVALID_UTF8, "to");
    EXPECT(hydra_send_message(h, BAD_UTF8), HYDRA_INVALID_UTF8, "message_json");
    EXPECT(hydra_request(h, BAD_UTF8, 10, &s), HYDRA_INVALID_UTF8, "message_json");
    EXPECT(hydra_make_api_request(h, "{}", BAD_UTF8, &s), HYDRA_INVALID_UTF8, "options_json");
    EXPECT(hydra_match_route(h, BAD_UTF8, &b), HYDRA_INVALID_UTF8, "route");
    EXPECT(hydra_register_routes(h, BAD_UTF8), HYDRA_INVALID_UTF8, "routes_json");

    /* Invalid JSON and invalid documents. */
    EXPECT(hydra_new("{not json", &out), HYDRA_INVALID_CONFIG, "not valid JSON");
    EXPECT(hydra_new("[1, 2]", &out), HYDRA_INVALID_CONFIG, "hydra");
    EXPECT(hydra_new("{\"hydra\": {\"serviceName\": \"\"}}", &out), HYDRA_INVALID_CONFIG, "serviceName");
    EXPECT(hydra_new("{\"hydra\": {\"serviceName\": \"a\", \"servicePort\": \"70000\"}}", &out),
           HYDRA_INVALID_CONFIG, "servicePort");
    EXPECT(hydra_new("{\"hydra\": {\"serviceName\": \"a\", \"connectTimeout\": -5}}", &out),
           HYDRA_INVALID_CONFIG, "connectTimeout");
    EXPECT(hydra_new_with_name("hydra", &out), HYDRA_INVALID_CONFIG, "reserved");
    CHECK(out == NULL);
    EXPECT(hydra_send_message(h, "{nope"), HYDRA_BAD_REQUEST, "argument message_json is not valid JSON");
    EXPECT(hydra_send_message(h, "[]"), HYDRA_BAD_REQUEST, "must be a JSON object");
    EXPECT(hydra_send_message(h, "{\"to\": 5, \"body\": {}}"), HYDRA_BAD_REQUEST, "\"to\" must be a string");
    EXPECT(hydra_put_config(h, "a:1", "["), HYDRA_BAD_REQUEST, "document_json");
    EXPECT(hydra_put_config(h, "no-version", "{}"), HYDRA_BAD_REQUEST, "");
    EXPECT(hydra_create_umf_message(h, "a:/", "nope", &s), HYDRA_BAD_REQUEST, "body_json");
    EXPECT(hydra_reply(h, "{\"to\": \"a:/\"}", "{x"), HYDRA_BAD_REQUEST, "body_json");
    EXPECT(hydra_make_api_request(h, "{\"to\": \"a:[get]/x\", \"body\": {}}", "{\"timeoutMs\": -1}", &s),
           HYDRA_BAD_REQUEST, "options_json.timeoutMs");
    EXPECT(hydra_make_api_request(h, "{\"to\": \"a:[get]/x\", \"body\": {}}", "{\"balnce\": 1}", &s),
           HYDRA_BAD_REQUEST, "unknown key");
    EXPECT(hydra_make_api_request(h, "{\"to\": \"a:/x\", \"body\": {}}", NULL, &s), HYDRA_BAD_REQUEST,
           "HTTP method not specified");
    EXPECT(hydra_register_routes(h, "{\"a\": 1}"), HYDRA_BAD_REQUEST, "array of strings");
    EXPECT(hydra_register_routes(h, "[\"get /x\"]"), HYDRA_BAD_REQUEST, "[method]/path");
    EXPECT(hydra_log_set_callback(9, NULL, NULL, NULL), HYDRA_BAD_REQUEST, "max_level 9");
    CHECK(s == NULL);

    /* Reading JSON. */
    const char *doc = "{\"a\": [1, {\"b\": \"c\\\"d\"}], \"t\": true}";
    EXPECT(hydra_json_get(NULL, "", &s), HYDRA_NULL_ARGUMENT, "argument json is NULL");
    EXPECT(hydra_json_get(doc, NULL, &s), HYDRA_NULL_ARGUMENT, "pointer");
    EXPECT(hydra_json_get(doc, "", NULL), HYDRA_NULL_ARGUMENT, "out_value_json");
    EXPECT(hydra_json_get("{x", "", &s), HYDRA_BAD_REQUEST, "argument json is not valid JSON");
    EXPECT(hydra_json_get(BAD_UTF8, "", &s), HYDRA_INVALID_UTF8, "json");
    EXPECT(hydra_json_get(doc, "a", &s), HYDRA_BAD_REQUEST, "not a JSON Pointer");
    EXPECT(hydra_json_get(doc, "/a/7", &s), HYDRA_NOT_FOUND, "nothing at \"/a/7\"");
    EXPECT_OK(hydra_json_get(doc, "/a/1", &s));
    CHECK(strcmp(s, "{\"b\":\"c\\\"d\"}") == 0);
    hydra_string_free(s);
    EXPECT_OK(hydra_json_get_string(doc, "/a/1/b", &s));
    CHECK(strcmp(s, "c\"d") == 0);
    hydra_string_free(s);
    EXPECT_OK(hydra_json_get_string(doc, "/t", &s));
    CHECK(strcmp(s, "true") == 0);
    hydra_string_free(s);
    EXPECT(hydra_json_get_string(doc, "/a", &s), HYDRA_BAD_REQUEST, "not a string");
    EXPECT(hydra_json_get_string(doc, "/a/1/b", NULL), HYDRA_NULL_ARGUMENT, "out_text");
    CHECK(s == NULL);

    /* A callback's reason: set, replaced, cleared; invalid UTF-8 is refused. */
    CHECK(hydra_set_last_error_message("first") == HYDRA_OK);
    CHECK(hydra_set_last_error_message("disk full \xe2\x9c\x93") == HYDRA_OK);
    CHECK(strcmp(hydra_last_error_message(), "disk full \xe2\x9c\x93") == 0);
    CHECK(hydra_set_last_error_message(NULL) == HYDRA_OK);
    CHECK(strcmp(hydra_last_error_message(), "") == 0);
    EXPECT(hydra_set_last_error_message(BAD_UTF8), HYDRA_INVALID_UTF8,
           "hydra_set_last_error_message: argument message is not valid UTF-8");
    STEP("bad strings and json");
}

/* ---- Forged handles and statuses ---- */

static void forged_handles(void) {
    hydra *forged = (hydra *)(uintptr_t)0x1231;
    char *s = NULL;
    EXPECT(hydra_shutdown(forged), HYDRA_INVALID_HANDLE, "not a live hydra handle");
    EXPECT(hydra_get_service_name(forged, &s), HYDRA_INVALID_HANDLE, "hydra");
    hydra_free(forged); /* ignored */
    EXPECT(hydra_http_response_send((hydra_http_response *)(uintptr_t)0x41, 200, "{}"), HYDRA_INVALID_HANDLE,
           "hydra_http_response");
    CHECK(strcmp(hydra_status_name(HYDRA_TIMEOUT), "HYDRA_TIMEOUT") == 0);
    CHECK(strcmp(hydra_status_name(HYDRA_CALLBACK_FAILED), "HYDRA_CALLBACK_FAILED") == 0);
    CHECK(strcmp(hydra_status_name(-1), "HYDRA_UNKNOWN_STATUS") == 0);
    CHECK(strlen(hydra_version()) >= 5);
    STEP("forged handles");
}

/* ---- Lifecycle: after shutdown, free + shutdown in every order ---- */

static int32_t unused_route(void *user_data, hydra *h, const char *request_json, hydra_http_response *response) {
    (void)user_data;
    (void)h;
    (void)request_json;
    (void)response;
    return HYDRA_BAD_REQUEST;
}

static void lifecycle(void) {
    char config[512];
    char *s = NULL;
    bool b = true;
    hydra *h = NULL;

    /* Nothing listens on port 1: fails fast with a Redis error, no handle.
     * (HYDRA_REDIS_URL would win over the document, as in Node.) */
    char saved_url[512];
    snprintf(saved_url, sizeof saved_url, "%s", getenv("HYDRA_REDIS_URL"));
    CHECK(unsetenv("HYDRA_REDIS_URL") == 0);
    h = (hydra *)0x1;
    EXPECT(hydra_new("{\"hydra\": {\"serviceName\": \"c-nowhere\", \"redis\": {\"url\": \"redis://127.0.0.1:1/0\"},"
                     " \"connectTimeout\": 500}}",
                     &h),
           HYDRA_REDIS, "");
    CHECK(h == NULL);
    CHECK(setenv("HYDRA_REDIS_URL", saved_url, 1) == 0);

    config_for(config, sizeof config, "c-life");
    EXPECT_OK(hydra_new(config, &h));
    char *info = NULL;
    EXPECT_OK(hydra_register_service(h, &info));
    CHECK_JSON(info, "\"serviceName\":\"c-life\"");
    EXPECT(hydra_register_service(h, NULL), HYDRA_INVALID_STATE, "already registered");
    EXPECT_OK(hydra_is_registered(h, &b));
    CHECK(b);
    EXPECT_OK(hydra_shutdown(h));
    EXPECT_OK(hydra_shutdown(h)); /* idempotent */
    EXPECT_OK(hydra_is_registered(h, &b));
    CHECK(!b);
    EXPECT(hydra_register_service(h, NULL), HYDRA_INVALID_STATE, "shut down");
    EXPECT(hydra_get_services(h, &s), HYDRA_INVALID_STATE, "shut down");
    EXPECT(hydra_send_message(h, "{\"to\": \"c-life:/\", \"body\": {}}"), HYDRA_INVALID_STATE, "shut down");
    EXPECT(hydra_request(h, "{\"to\": \"c-life:/\", \"body\": {}}", 100, &s), HYDRA_INVALID_STATE, "shut down");
    EXPECT(hydra_receive_message(h, 10, &s), HYDRA_INVALID_STATE, "shut down");
    EXPECT(hydra_serve_http(h, "[]", NULL, unused_route, NULL, NULL, NULL), HYDRA_INVALID_STATE, "shut down");
    CHECK(s == NULL);
    /* Identity and counters still answer. */
    EXPECT_OK(hydra_get_service_name(h, &s));
    CHECK(strcmp(s, "c-life") == 0);
    hydra_string_free(s);
    EXPECT_OK(hydra_message_stats(h, &s));
    CHECK_JSON(s, "\"received\"");
    hydra_free(h);
    /* Freed: every later use is refused, a second free is a no-op. */
    hydra_free(h);
    CHECK(strstr(hydra_last_error_message(), "hydra_free") != NULL);
    EXPECT(hydra_shutdown(h), HYDRA_INVALID_HANDLE, "already freed");
    EXPECT(hydra_get_service_name(h, &s), HYDRA_INVALID_HANDLE, "");

    /* Free without shutdown, then shutdown. */
    config_for(config, sizeof config, "c-life2");
    EXPECT_OK(hydra_new(config, &h));
    EXPECT_OK(hydra_register_service(h, NULL));
    hydra_free(h);
    EXPECT(hydra_shutdown(h), HYDRA_INVALID_HANDLE, "");
    STEP("lifecycle");
}

/* ---- Log callback that calls back into the library ---- */

static atomic_int log_records;
static atomic_int log_registered;
static atomic_int log_nested_ok;
static atomic_int log_freed;
static hydra *log_handle;

static void on_log(void *user_data, int32_t level, const char *target, const char *message) {
    CHECK(user_data == (void *)&log_records);
    CHECK(level >= HYDRA_LOG_ERROR && level <= HYDRA_LOG_INFO);
    CHECK(target != NULL && message != NULL);
    atomic_fetch_add(&log_records, 1);
    if (strstr(message, "registered c-logged") != NULL) {
        /* The library logged this while registering; calling it back must
         * not deadlock (records reach us on the hydra-log thread). */
        bool registered = false;
        if (hydra_is_registered(log_handle, &registered) == HYDRA_OK && registered) {
            atomic_fetch_add(&log_nested_ok, 1);
        }
        atomic_fetch_add(&log_registered, 1);
    }
}

static void free_log(void *user_data) {
    CHECK(user_data == (void *)&log_records);
    atomic_fetch_add(&log_freed, 1);
}

static void logging(void) {
    char config[512];
    EXPECT_OK(hydra_log_set_callback(HYDRA_LOG_INFO, on_log, &log_records, free_log));
    /* Replacing: the first finalizer runs once. */
    EXPECT_OK(hydra_log_set_callback(HYDRA_LOG_INFO, on_log, &log_records, free_log));
    CHECK(atomic_load(&log_freed) == 1);
    config_for(config, sizeof config, "c-logged");
    EXPECT_OK(hydra_new(config, &log_handle));
    EXPECT_OK(hydra_register_service(log_handle, NULL));
    CHECK(wait_for(&log_registered, 1, 10000));
    CHECK(atomic_load(&log_nested_ok) == 1);
    EXPECT_OK(hydra_send_to_health_log(log_handle, "error", "c wrote this"));
    hydra_free(log_handle);
    EXPECT_OK(hydra_log_set_callback(HYDRA_LOG_OFF, NULL, NULL, NULL));
    CHECK(atomic_load(&log_freed) == 2);
    int seen = atomic_load(&log_records);
    config_for(config, sizeof config, "c-unlogged");
    EXPECT_OK(hydra_new(config, &log_handle));
    EXPECT_OK(hydra_register_service(log_handle, NULL));
    hydra_free(log_handle);
    CHECK(atomic_load(&log_records) == seen);
    STEP("logging");
}

/* ---- Callbacks: slow, re-entrant, freeing their own handle ---- */

static atomic_int slow_started;
static atomic_int slow_done;
static atomic_int slow_reply_status;
static atomic_int slow_freed;

static int32_t slow_handler(void *user_data, hydra *h, const char *message_json) {
    (void)user_data;
    atomic_fetch_add(&slow_started, 1);
    sleep_ms(1500);
    /* By now the handle is being freed: the reply is refused, not a crash. */
    atomic_store(&slow_reply_status, hydra_reply(h, message_json, "{\"late\": true}"));
    atomic_fetch_add(&slow_done, 1);
    return HYDRA_OK;
}


static atomic_int self_stop_calls;
static atomic_int self_stop_freed;

static int32_t self_stopping_handler(void *user_data, hydra *h, const char *message_json) {
    (void)user_data;
    (void)message_json;
    if (atomic_fetch_add(&self_stop_calls, 1) == 0) {
        CHECK(hydra_shutdown(h) == HYDRA_OK);
        hydra_free(h);
        bool b;
        CHECK(hydra_is_registered(h, &b) == HYDRA_INVALID_HANDLE);
    }
    return HYDRA_OK;
}

static int32_t failing_handler(void *user_data, hydra *h, const char *message_json) {
    (void)user_data;
    (void)h;
    (void)message_json;
    return HYDRA_BAD_REQUEST;
}

static void callbacks(void) {
    char config[512];
    char *s = NULL;
    hydra *client = NULL, *slow = NULL, *stopper = NULL;

    config_for(config, sizeof config, "c-client");
    EXPECT_OK(hydra_new(config, &client));
    EXPECT_OK(hydra_register_service(client, NULL));

    /* A slow handler: the request times out; freeing the handle waits for
     * the running callback, which is then refused, and finalizes once. */
    config_for(config, sizeof config, "c-slow");
    EXPECT_OK(hydra_new(config, &slow));
    EXPECT_OK(hydra_on_message(slow, slow_handler, &slow_freed, count_free));
    EXPECT_OK(hydra_register_service(slow, NULL));
    EXPECT(hydra_request(client, "{\"to\": \"c-slow:/\", \"body\": {\"q\": 1}}", 300, &s), HYDRA_TIMEOUT,
           "no reply");
    CHECK(s == NULL);
    CHECK(wait_for(&slow_started, 1, 5000));
    hydra_free(slow);
    CHECK(atomic_load(&slow_done) == 1);
    CHECK(atomic_load(&slow_reply_status) == HYDRA_INVALID_HANDLE);
    CHECK(atomic_load(&slow_freed) == 1);

    /* A handler that shuts down and frees its own handle. */
    config_for(config, sizeof config, "c-stopper");
    EXPECT_OK(hydra_new(config, &stopper));
    EXPECT_OK(hydra_on_message(stopper, self_stopping_handler, &self_stop_freed, count_free));
    EXPECT_OK(hydra_register_service(stopper, NULL));
    EXPECT_OK(hydra_send_message(client, "{\"to\": \"c-stopper:/\", \"body\": {\"stop\": true}}"));
    CHECK(wait_for(&self_stop_freed, 1, 10000));
    CHECK(atomic_load(&self_stop_calls) == 1);
    EXPECT(hydra_shutdown(stopper), HYDRA_INVALID_HANDLE, "");
    hydra_free(stopper);

    /* A handler returning an error is counted as failed; replacing a
     * handler finalizes the old one's user_data once. */
    static atomic_int replaced_freed;
    EXPECT_OK(hydra_on_message(client, failing_handler, &replaced_freed, count_free));
    CHECK(atomic_load(&replaced_freed) == 0);
    EXPECT_OK(hydra_on_message(client, failing_handler, NULL, NULL));
    CHECK(wait_for(&replaced_freed, 1, 5000));
    EXPECT_OK(hydra_send_message(client, "{\"to\": \"c-client:/\", \"body\": {\"x\": 1}}"));
    for (int i = 0; i < 500; i++) {
        EXPECT_OK(hydra_message_stats(client, &s));
        int failed = strstr(s, "\"failed\":1") != NULL;
        hydra_string_free(s);
        s = NULL;
        if (failed) {
            break;
        }
        CHECK(i < 499);
        sleep_ms(10);
    }
    hydra_free(client);
    STEP("callbacks");
}

int main(void) {
    char config[512];
    hydra *h = NULL;
    config_for(config, sizeof config, "c-hostile");
    EXPECT_OK(hydra_new(config, &h));
    null_arguments(h);
    bad_strings_and_json(h);
    hydra_free(h);
    forged_handles();
    lifecycle();
    logging();
    callbacks();
    printf("done\n");
    return 0;
}
