/*
 * An echo service in C on hydra-rs's C ABI: answers every message with a
 * reply whose body is {"echo": <the message's body>}, and serves
 * GET and POST /v1/<name>/echo (the request it got, as `result`). It runs
 * until its standard input ends (Ctrl-D) or it gets SIGINT or SIGTERM.
 *
 *   make && HYDRA_REDIS_URL=redis://127.0.0.1:6379/15 build/echo_service c-echo
 *
 * Prints "ready <instanceID> <name> <port>" once it can receive messages.
 * HYDRA_SERVICE may carry Node-style settings, e.g.
 * HYDRA_SERVICE='serviceIP=127.0.0.1' to publish the loopback address.
 */
#define _POSIX_C_SOURCE 200809L
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hydra.h"

static volatile sig_atomic_t stop;

static void on_signal(int signal) {
    (void)signal;
    stop = 1;
}

/* Runs on a library worker thread for every message. */
static int32_t on_message(void *user_data, hydra *h, const char *message_json) {
    (void)user_data;
    char *body = NULL;
    if (hydra_json_get(message_json, "/rmid", &body) == HYDRA_OK) {
        hydra_string_free(body); /* a reply to something: never answer replies */
        return HYDRA_OK;
    }
    int32_t status = hydra_json_get(message_json, "/body", &body);
    if (status != HYDRA_OK) {
        return status;
    }
    size_t size = strlen(body) + sizeof "{\"echo\": }";
    char *reply = malloc(size);
    if (reply == NULL) {
        hydra_string_free(body);
        return HYDRA_INVALID_STATE;
    }
    snprintf(reply, size, "{\"echo\": %s}", body);
    status = hydra_reply(h, message_json, reply);
    free(reply);
    hydra_string_free(body);
    return status;
}

/* Runs on a library HTTP thread for every request to our routes. */
static int32_t on_request(void *user_data, hydra *h, const char *request_json, hydra_http_response *response) {
    (void)user_data;
    (void)h;
    return hydra_http_response_send(response, 200, request_json);
}

static int fail(const char *what, int32_t status) {
    fprintf(stderr, "%s failed: %s: %s\n", what, hydra_status_name(status), hydra_last_error_message());
    return 1;
}

int main(int argc, char **argv) {
    const char *name = argc > 1 ? argv[1] : "c-echo";
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_handler = on_signal; /* no SA_RESTART: the read below returns */
    sigaction(SIGINT, &action, NULL);
    sigaction(SIGTERM, &action, NULL);

    hydra *h = NULL;
    int32_t status = hydra_new_with_name(name, &h);
    if (status != HYDRA_OK) {
        return fail("hydra_new_with_name", status);
    }
    if ((status = hydra_on_message(h, on_message, NULL, NULL)) != HYDRA_OK ||
        (status = hydra_register_service(h, NULL)) != HYDRA_OK) {
        hydra_free(h);
        return fail("registering", status);
    }
    char routes[512];
    snprintf(routes, sizeof routes, "[\"[get]/v1/%s/echo\", \"[post]/v1/%s/echo\"]", name, name);
    uint16_t port = 0;
    if ((status = hydra_serve_http(h, routes, NULL, on_request, NULL, NULL, &port)) != HYDRA_OK) {
        hydra_free(h);
        return fail("hydra_serve_http", status);
    }
    char *id = NULL;
    hydra_get_instance_id(h, &id);
    printf("ready %s %s %u\n", id, name, (unsigned)port);
    fflush(stdout);
    hydra_string_free(id);

    char line[256];
    while (!stop && fgets(line, sizeof line, stdin) != NULL) {
        /* input is ignored; its end stops the service */
    }

    char *stats = NULL;
    if (hydra_message_stats(h, &stats) == HYDRA_OK) {
        printf("stopped; message counters: %s\n", stats);
        hydra_string_free(stats);
    }
    hydra_free(h); /* deregisters, stops the HTTP server and the handlers */
    return 0;
}
