/*
 * A C service on the C ABI, talking to a Rust service ("rust-echo") and a
 * Node hydra 1.9.3 service ("node-svc") that the Rust harness runs, on
 * $HYDRA_REDIS_URL.
 *
 * Protocol with the harness (ffi/tests/c_abi.rs), one line each way:
 *   we print "ready <instanceID> <port>" once registered and serving HTTP;
 *   the harness then calls us (Rust and Node messages, requests, HTTP) and
 *   writes "go"; we then call them, print "ok <step>" lines, and "done".
 */
#define _POSIX_C_SOURCE 200809L
#include <arpa/inet.h>
#include <pthread.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "check.h"

static hydra *service;
static atomic_int messages_handled;
static atomic_int handler_freed;
static atomic_int routes_freed;
static atomic_int nested_ok;
static hydra_http_response *kept_response;
static uint16_t http_port;

/* Not UTF-8 (0xff, 0xfe, a lone continuation byte 0x80, a cut-off 0xc3), with NULs. */
static const uint8_t binary_body[] = {0x00, 0x01, 0xff, 0xfe, 'h', 'y', 0x80, 0xc3, '\n'};
static const char binary_base64[] = "AAH//mh5gMMK";
static const char text_body[] = "text \xe2\x9c\x93";

/* Replies {"by": "c", "original": <the whole message>}; on {"nested": ...} first asks
 * rust-echo from inside the callback and replies with its answer. */
static int32_t on_message(void *user_data, hydra *h, const char *message_json) {
    CHECK(user_data == (void *)&handler_freed);
    CHECK(h == service);
    atomic_fetch_add(&messages_handled, 1);
    if (strstr(message_json, "\"rmid\":") != NULL) {
        return HYDRA_OK; /* a reply (to our broadcast): never answer replies */
    }
    if (strstr(message_json, "\"fail_with_reason\"") != NULL) {
        CHECK(hydra_last_error_message()[0] == '\0'); /* cleared before each call */
        CHECK(hydra_set_last_error_message("the C handler cannot do this") == HYDRA_OK);
        return HYDRA_CALLBACK_FAILED; /* logged with the reason, counted as failed */
    }
    if (strstr(message_json, "\"nested\"") != NULL) {
        char *answer = NULL;
        int32_t status =
            hydra_request(h, "{\"to\": \"rust-echo:/\", \"body\": {\"from_callback\": true}}", 10000, &answer);
        if (status == HYDRA_OK && strstr(answer, "\"from_callback\":true") != NULL) {
            atomic_fetch_add(&nested_ok, 1);
        }
        hydra_string_free(answer);
        return hydra_reply(h, message_json, status == HYDRA_OK ? "{\"nested\": \"ok\"}" : "{\"nested\": \"failed\"}");
    }
    size_t size = strlen(message_json) + 64;
    char *body = malloc(size);
    CHECK(body != NULL);
    snprintf(body, size, "{\"by\": \"c\", \"original\": %s}", message_json);
    int32_t status = hydra_reply(h, message_json, body);
    if (status != HYDRA_OK) {
        fprintf(stderr, "on_message: hydra_reply: %s: %s\n", hydra_status_name(status), hydra_last_error_message());
    }
    free(body);
    return status;
}

static int32_t on_route(void *user_data, hydra *h, const char *request_json, hydra_http_response *response) {
    CHECK(user_data == (void *)&routes_freed);
    CHECK(h == service);
    if (strstr(request_json, "\"route\":\"[get]/v1/c/hello/:name\"") != NULL) {
        const char *name = strstr(request_json, "\"name\":\"");
        CHECK(name != NULL);
        name += strlen("\"name\":\"");
        char result[256];
        int len = (int)strcspn(name, "\"");
        snprintf(result, sizeof result, "{\"hello\": \"%.*s\", \"query\": %s}", len, name,
                 strstr(request_json, "\"query\":\"x=1\"") ? "\"x=1\"" : "null");
        EXPECT_OK(hydra_http_response_add_header(response, "x-served-by", "c"));
        return hydra_http_response_send(response, 200, result);
    }
    if (strstr(request_json, "\"route\":\"[post]/v1/c/echo\"") != NULL) {
        /* The request itself, as the result. */
        EXPECT(hydra_http_response_send(response, 200, "{bad json"), HYDRA_BAD_REQUEST, "result_json");
        EXPECT(hydra_http_response_set(response, 200, "text/plain", NULL, 3), HYDRA_NULL_ARGUMENT, "body");
        EXPECT(hydra_http_response_set(response, 42, "text/plain", NULL, 0), HYDRA_BAD_REQUEST, "status");
        EXPECT(hydra_http_response_add_header(response, "bad header", "x"), HYDRA_BAD_REQUEST, "");
        return hydra_http_response_send(response, 201, request_json);
    }
    if (strstr(request_json, "\"route\":\"[get]/v1/c/text\"") != NULL) {
        static const char text[] = "plain text from C";
        return hydra_http_response_set(response, 200, "text/plain", (const uint8_t *)text, strlen(text));
    }
    if (strstr(request_json, "\"route\":\"[get]/v1/c/proxy\"") != NULL) {
        /* Calls back into the library: HTTP to the Rust service, from here. */
        char *inner = NULL, *code = NULL;
        int32_t status = hydra_make_api_request(h, "{\"to\": \"rust-echo:[get]/v1/rust-echo/echo\", \"body\": {}}",
                                                NULL, &inner);
        if (status == HYDRA_OK) {
            status = hydra_json_get(inner, "/statusCode", &code);
        }
        char result[64];
        snprintf(result, sizeof result, "{\"rust_said\": %s}", status == HYDRA_OK ? code : "null");
        hydra_string_free(inner);
        hydra_string_free(code);
        return status == HYDRA_OK ? hydra_http_response_send(response, 200, result) : status;
    }
    if (strstr(request_json, "\"route\":\"[get]/v1/c/why\"") != NULL) {
        /* Fails with a reason: the 500 envelope carries it. */
        CHECK(hydra_last_error_message()[0] == '\0'); /* cleared before each call */
        CHECK(hydra_set_last_error_message("the widget \xe2\x9c\x93 is broken") == HYDRA_OK);
        return HYDRA_CALLBACK_FAILED;
    }
    if (strstr(request_json, "\"route\":\"[get]/v1/c/silent\"") != NULL) {
        kept_response = response; /* misuse: kept past the callback */
        return HYDRA_OK;          /* ... and no response written: 500 */
    }
    if (strstr(request_json, "\"route\":\"[post]/v1/c/upload\"") != NULL) {
        /* Binary: the exact bytes in "bodyBase64"; UTF-8 text: "body" alone. */
        char *text = NULL;
        if (strstr(request_json, "\"query\":\"kind=binary\"") != NULL) {
            EXPECT_OK(hydra_json_get_string(request_json, "/bodyBase64", &text));
            CHECK(strcmp(text, binary_base64) == 0);
        } else {
            EXPECT(hydra_json_get_string(request_json, "/bodyBase64", &text), HYDRA_NOT_FOUND, "");
            EXPECT_OK(hydra_json_get_string(request_json, "/body", &text));
            CHECK(strcmp(text, text_body) == 0);
        }
        hydra_string_free(text);
        return hydra_http_response_send(response, 200, "{\"checked\": true}");
    }
    if (strstr(request_json, "\"route\":\"[get]/v1/c/binary\"") != NULL) {
        return hydra_http_response_set(response, 200, NULL, binary_body, sizeof binary_body);
    }
    return HYDRA_NOT_FOUND; /* [get]/v1/c/fail: 500 envelope */
}

/* POSTs `len` bytes to our own port with a plain socket (hydra_make_api_request
 * sends JSON); the status line of the answer in `status_line`. */
static void post_raw(const char *target, const uint8_t *body, size_t len, char *status_line, size_t size) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    CHECK(fd >= 0);
    struct timeval timeout = {30, 0};
    CHECK(setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout) == 0);
    struct sockaddr_in address = {0};
    address.sin_family = AF_INET;
    address.sin_port = htons(http_port);
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    CHECK(connect(fd, (struct sockaddr *)&address, sizeof address) == 0);
    char head[256];
    int head_len = snprintf(head, sizeof head,
                            "POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/octet-stream\r\n"
                            "Content-Length: %zu\r\nConnection: close\r\n\r\n",
                            target, len);
    CHECK(head_len > 0 && (size_t)head_len < sizeof head);
    CHECK(write(fd, head, (size_t)head_len) == head_len);
    CHECK(write(fd, body, len) == (ssize_t)len);
    size_t got = 0;
    ssize_t n;
    while (got + 1 < size && (n = read(fd, status_line + got, size - 1 - got)) > 0) {
        got += (size_t)n;
    }
    status_line[got] = '\0';
    status_line[strcspn(status_line, "\r\n")] = '\0';
    close(fd);
}

/* Log records of message-handler failures that carry the handler's reason. */
static atomic_int reason_logged;

static void on_log(void *user_data, int32_t level, const char *target, const char *message) {
    (void)user_data;
    (void)target;
    if (level == HYDRA_LOG_WARN &&
        strstr(message, "message callback returned HYDRA_CALLBACK_FAILED: the C handler cannot do this") != NULL) {
        atomic_fetch_add(&reason_logged, 1);
    }
}

static void handler_failure(void) {
    char *json = NULL;
    EXPECT_OK(hydra_log_set_callback(HYDRA_LOG_WARN, on_log, NULL, NULL));
    EXPECT_OK(hydra_send_message(service, "{\"to\": \"c-svc:/\", \"body\": {\"fail_with_reason\": true}}"));
    CHECK(wait_for(&reason_logged, 1, 30000));
    EXPECT_OK(hydra_log_set_callback(HYDRA_LOG_OFF, NULL, NULL, NULL));
    EXPECT_OK(hydra_message_stats(service, &json));
    CHECK_JSON(json, "\"failed\":1,");
    STEP("handler failure");
}

static void read_go(void) {
    char line[64];
    CHECK(fgets(line, sizeof line, stdin) != NULL);
    CHECK(strncmp(line, "go", 2) == 0);
}

static void calls_rust(void) {
    char *reply = NULL;
    EXPECT_OK(hydra_request(service, "{\"to\": \"rust-echo:/\", \"body\": {\"n\": 1.5, \"text\": \"from C \\u2713\"}}",
                            10000, &reply));
    CHECK_JSON(reply, "\"echo\":{\"n\":1.5,\"text\":\"from C ✓\"}");

    char *message = NULL;
    EXPECT_OK(hydra_create_umf_message(service, "rust-echo:/", "{\"made\": true}", &message));
    CHECK(strstr(message, "\"from\":\"c-svc:/\"") != NULL);
    EXPECT_OK(hydra_request(service, message, 10000, &reply));
    hydra_string_free(message);
    CHECK_JSON(reply, "\"echo\":{\"made\":true}");

    /* Short form in, and a message to an instance that does not exist. */
    EXPECT_OK(hydra_request(service, "{\"to\": \"rust-echo:/\", \"frm\": \"c-svc:/\", \"bdy\": {\"short\": 1}}", 10000,
                            &reply));
    CHECK_JSON(reply, "\"echo\":{\"short\":1}");
    EXPECT(hydra_send_message(service, "{\"to\": \"nobody-home:/\", \"body\": {}}"), HYDRA_SERVICE_UNAVAILABLE,
           "Unavailable nobody-home instances");
    EXPECT(hydra_request(service, "{\"to\": \"nobody-home:/\", \"body\": {}}", 1000, &reply),
           HYDRA_SERVICE_UNAVAILABLE, "Unavailable nobody-home instances");
    EXPECT_OK(hydra_send_broadcast_message(service, "{\"to\": \"rust-echo:/\", \"body\": {\"broadcast\": true}}"));

    /* HTTP to the Rust service's route. */
    char *response = NULL;
    EXPECT_OK(hydra_make_api_request(service,
                                     "{\"to\": \"rust-echo:[post]/v1/rust-echo/echo\", \"body\": {\"via\": \"http\"},"
                                     " \"headers\": {\"x-from\": \"c\"}}",
                                     "{\"timeoutMs\": 10000, \"balance\": \"random\"}", &response));
    CHECK(strstr(response, "\"statusCode\":200") != NULL);
    CHECK(strstr(response, "\"via\":\"http\"") != NULL);
    CHECK_JSON(response, "\"x-from\":\"c\"");
    EXPECT_OK(hydra_make_api_request(service, "{\"to\": \"rust-echo:[get]/v1/rust-echo/missing\", \"body\": {}}",
                                     NULL, &response));
    CHECK_JSON(response, "\"statusCode\":404");
    EXPECT(hydra_make_api_request(service, "{\"to\": \"nobody-home:[get]/x\", \"body\": {}}", NULL, &response),
           HYDRA_SERVICE_UNAVAILABLE, "Unavailable nobody-home instances");
    STEP("calls rust");
}

static void calls_node(void) {
    /* The harness answers Node's messages that carry "ask". */
    char *reply = NULL;
    EXPECT_OK(hydra_request(service, "{\"to\": \"node-svc:/\", \"body\": {\"ask\": 7}}", 15000, &reply));
    CHECK_JSON(reply, "\"node_answer\":7");
    STEP("calls node");
}

static char blocked_tid[32];
static atomic_int blocked_tid_ready;

/* Blocks in hydra_receive_message for up to 30 s: shutdown must wake it at once. */
static void *receive_until_shutdown(void *puller) {
    char link[64] = {0};
    CHECK(readlink("/proc/thread-self", link, sizeof link - 1) > 0); /* "<pid>/task/<tid>" */
    const char *slash = strrchr(link, '/');
    CHECK(slash != NULL);
    snprintf(blocked_tid, sizeof blocked_tid, "%s", slash + 1);
    atomic_store(&blocked_tid_ready, 1);
    char *message = NULL;
    /* Before the fix this slept its 30 s and returned HYDRA_TIMEOUT. */
    EXPECT(hydra_receive_message((hydra *)puller, 30000, &message), HYDRA_INVALID_STATE, "shut down");
    CHECK(message == NULL);
    return NULL;
}

/* Waits until thread `tid` of this process sleeps in the kernel (it reached its blocking call). */
static void wait_until_sleeping(const char *tid) {
    char path[96];
    snprintf(path, sizeof path, "/proc/self/task/%s/stat", tid);
    for (int tries = 0; tries < 1000; tries++) {
        FILE *f = fopen(path, "r");
        CHECK(f != NULL);
        char stat[512] = {0};
        size_t n = fread(stat, 1, sizeof stat - 1, f);
        fclose(f);
        const char *state = strrchr(stat, ')');
        if (n > 0 && state != NULL && state[1] == ' ' && state[2] == 'S') {
            return;
        }
        sleep_ms(10);
    }
    CHECK(!"the receiving thread never blocked");
}

static void nested_and_pull(void) {
    /* Our own handler, asked from here, makes a request from its callback. */
    char *reply = NULL;
    EXPECT_OK(hydra_request(service, "{\"to\": \"c-svc:/\", \"body\": {\"nested\": true}}", 15000, &reply));
    CHECK_JSON(reply, "\"nested\":\"ok\"");
    CHECK(atomic_load(&nested_ok) == 1);

    /* A second instance reading messages with hydra_receive_message. */
    char config[512];
    hydra *puller = NULL;
    config_for(config, sizeof config, "c-pull");
    EXPECT_OK(hydra_new(config, &puller));
    char *message = NULL;
    EXPECT(hydra_receive_message(puller, 10, &message), HYDRA_TIMEOUT, "no message within 10 ms");
    EXPECT_OK(hydra_register_service(puller, NULL));
    EXPECT_OK(hydra_send_message(service, "{\"to\": \"c-pull:/\", \"body\": {\"pulled\": true}}"));
    EXPECT_OK(hydra_receive_message(puller, 10000, &message));
    CHECK(strstr(message, "\"from\":\"c-svc:/\"") != NULL);
    CHECK_JSON(message, "\"body\":{\"pulled\":true}");

    /* A thread blocked in hydra_receive_message wakes at shutdown with HYDRA_INVALID_STATE. */
    pthread_t receiver;
    CHECK(pthread_create(&receiver, NULL, receive_until_shutdown, puller) == 0);
    while (!atomic_load(&blocked_tid_ready)) {
        sleep_ms(1);
    }
    wait_until_sleeping(blocked_tid);
    EXPECT_OK(hydra_shutdown(puller));
    CHECK(pthread_join(receiver, NULL) == 0);
    hydra_free(puller);
    STEP("nested and pull");
}

static void http_misuse(void) {
    /* The route that kept its response handle: it is dead now. */
    char *response = NULL;
    EXPECT_OK(hydra_make_api_request(service, "{\"to\": \"c-svc:[get]/v1/c/silent\", \"body\": {}}", NULL, &response));
    CHECK_JSON(response, "the route handler sent no response");
    CHECK(kept_response != NULL);
    EXPECT(hydra_http_response_send(kept_response, 200, "{}"), HYDRA_INVALID_HANDLE, "hydra_http_response");
    EXPECT_OK(hydra_make_api_request(service, "{\"to\": \"c-svc:[get]/v1/c/text\", \"body\": {}}", NULL, &response));
    CHECK(strstr(response, "\"content-type\":\"text/plain\"") != NULL);
    CHECK_JSON(response, "\"body\":\"plain text from C\"");
    STEP("http misuse");
}

static void binary_bodies(void) {
    /* Uploads: the route callback checks what it got (see on_route). */
    char status_line[512];
    post_raw("/v1/c/upload?kind=binary", binary_body, sizeof binary_body, status_line, sizeof status_line);
    CHECK(strcmp(status_line, "HTTP/1.1 200 OK") == 0);
    post_raw("/v1/c/upload?kind=text", (const uint8_t *)text_body, strlen(text_body), status_line,
             sizeof status_line);
    CHECK(strcmp(status_line, "HTTP/1.1 200 OK") == 0);

    /* A binary answer comes back exactly; a text one without a copy. */
    char *response = NULL, *base64 = NULL;
    EXPECT_OK(hydra_make_api_request(service, "{\"to\": \"c-svc:[get]/v1/c/binary\", \"body\": {}}", NULL, &response));
    EXPECT_OK(hydra_json_get_string(response, "/bodyBase64", &base64));
    CHECK(strcmp(base64, binary_base64) == 0);
    hydra_string_free(base64);
    CHECK_JSON(response, "\"content-type\":\"application/octet-stream\"");
    EXPECT_OK(hydra_make_api_request(service, "{\"to\": \"c-svc:[get]/v1/c/text\", \"body\": {}}", NULL, &response));
    EXPECT(hydra_json_get_string(response, "/bodyBase64", &base64), HYDRA_NOT_FOUND, "");
    hydra_string_free(response);
    STEP("binary bodies");
}

static void discovery(void) {
    char *json = NULL;
    bool present = false;
    EXPECT_OK(hydra_get_services(service, &json));
    CHECK_JSON(json, "\"serviceName\":\"rust-echo\"");
    EXPECT_OK(hydra_get_service_presence(service, "node-svc", &json));
    CHECK_JSON(json, "\"serviceName\":\"node-svc\"");
    EXPECT_OK(hydra_has_service_presence(service, "rust-echo", &present));
    CHECK(present);
    EXPECT_OK(hydra_has_service_presence(service, "nobody-home", &present));
    CHECK(!present);
    EXPECT_OK(hydra_find_service(service, "c-svc", &json));
    CHECK_JSON(json, "\"serviceName\":\"c-svc\"");
    EXPECT(hydra_find_service(service, "nobody-home", &json), HYDRA_NOT_FOUND, "Can't find nobody-home service");
    EXPECT_OK(hydra_get_service_nodes(service, &json));
    CHECK_JSON(json, "\"elapsed\"");
    uint64_t removed = 99;
    EXPECT_OK(hydra_clear_stale_nodes(service, 60000, &removed));
    CHECK(removed == 0);
    EXPECT_OK(hydra_get_health(service, &json));
    CHECK_JSON(json, "\"serviceName\":\"c-svc\"");
    EXPECT_OK(hydra_get_service_info(service, &json));
    CHECK_JSON(json, "\"serviceIP\":\"127.0.0.1\"");
    EXPECT_OK(hydra_send_to_health_log(service, "error", "something C-ish happened"));
    EXPECT_OK(hydra_get_service_health_log(service, "c-svc", &json));
    CHECK_JSON(json, "something C-ish happened");
    EXPECT_OK(hydra_get_service_health_all(service, &json));
    CHECK_JSON(json, "\"presence\"");
    EXPECT_OK(hydra_get_all_service_routes(service, &json));
    CHECK_JSON(json, "\"[get]/v1/c/hello/:name\"");
    bool matched = false;
    EXPECT_OK(hydra_match_route(service, "[get]/v1/c/hello/bob", &matched));
    CHECK(matched);
    EXPECT_OK(hydra_match_route(service, "[get]/v1/other", &matched));
    CHECK(!matched);

    EXPECT_OK(hydra_put_config(service, "c-svc:1.0.0", "{\"hydra\": {\"serviceName\": \"c-svc\"}, \"app\": [1, 2]}"));
    EXPECT_OK(hydra_get_config(service, "c-svc:1.0.0", &json));
    CHECK_JSON(json, "\"app\":[1,2]");
    EXPECT(hydra_get_config(service, "c-svc:9.9.9", &json), HYDRA_NOT_FOUND, "no config stored as c-svc:9.9.9");
    EXPECT_OK(hydra_list_config(service, "c-svc", &json));
    CHECK_JSON(json, "[\"c-svc:1.0.0\"]");
    STEP("discovery");
}

static void counters(void) {
    char *json = NULL;
    EXPECT_OK(hydra_message_stats(service, &json));
    CHECK(strstr(json, "\"replies_matched\":") != NULL);
    CHECK_JSON(json, "\"failed\":1,\"panicked\":0");
    EXPECT_OK(hydra_http_stats(service, &json));
    CHECK_JSON(json, "\"requests\":");
    STEP("counters");
}

int main(void) {
    char config[512];
    config_for(config, sizeof config, "c-svc");
    EXPECT_OK(hydra_new(config, &service));
    EXPECT_OK(hydra_on_message(service, on_message, &handler_freed, count_free));
    EXPECT_OK(hydra_register_service(service, NULL));
    uint16_t port = 0;
    EXPECT_OK(hydra_serve_http(service,
                               "[\"[get]/v1/c/hello/:name\", \"[post]/v1/c/echo\", \"[get]/v1/c/text\","
                               " \"[get]/v1/c/silent\", \"[get]/v1/c/fail\", \"[get]/v1/c/why\", \"[get]/v1/c/proxy\","
                               " \"[post]/v1/c/upload\", \"[get]/v1/c/binary\"]",
                               "{\"workers\": 4, \"requestTimeoutMs\": 10000}", on_route, &routes_freed, count_free,
                               &port));
    CHECK(port != 0);
    http_port = port;
    char *id = NULL;
    EXPECT_OK(hydra_get_instance_id(service, &id));
    printf("ready %s %u\n", id, (unsigned)port);
    fflush(stdout);
    hydra_string_free(id);

    read_go();
    calls_rust();
    calls_node();
    nested_and_pull();
    handler_failure();
    http_misuse();
    binary_bodies();
    discovery();
    counters();
    printf("handled %d\n", atomic_load(&messages_handled));

    hydra_free(service);
    CHECK(atomic_load(&handler_freed) == 1);
    CHECK(atomic_load(&routes_freed) == 1);
    printf("done\n");
    return 0;
}
