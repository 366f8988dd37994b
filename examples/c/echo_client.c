/*
 * A client of the echo service in C: asks it over messaging (request with a
 * timeout) and over HTTP (make_api_request), prints what came back.
 *
 *   HYDRA_REDIS_URL=redis://127.0.0.1:6379/15 build/echo_client c-echo
 *
 * Exits 0 when both answers came.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hydra.h"

static int check(int32_t status, const char *what) {
    if (status != HYDRA_OK) {
        fprintf(stderr, "%s failed: %s: %s\n", what, hydra_status_name(status), hydra_last_error_message());
    }
    return status == HYDRA_OK;
}

int main(int argc, char **argv) {
    const char *service = argc > 1 ? argv[1] : "c-echo";
    printf("hydra-rs %s\n", hydra_version());

    hydra *h = NULL;
    if (!check(hydra_new_with_name("c-echo-client", &h), "hydra_new_with_name")) {
        return 1;
    }
    int ok = 0;
    char to[256], message[512];
    char *reply = NULL, *echo = NULL, *response = NULL, *status = NULL;

    /* Replies come to this instance's channel: register first. */
    if (check(hydra_register_service(h, NULL), "hydra_register_service")) {
        snprintf(message, sizeof message, "{\"to\": \"%s:/\", \"body\": {\"greeting\": \"hello from C\", \"n\": 42}}",
                 service);
        if (check(hydra_request(h, message, 5000, &reply), "hydra_request") &&
            check(hydra_json_get(reply, "/body/echo", &echo), "reading the reply")) {
            printf("echo: %s\n", echo);
            ok++;
        }
    }

    snprintf(to, sizeof to, "%s:[post]/v1/%s/echo", service, service);
    snprintf(message, sizeof message, "{\"to\": \"%s\", \"body\": {\"via\": \"http\"}}", to);
    if (check(hydra_make_api_request(h, message, "{\"timeoutMs\": 5000}", &response), "hydra_make_api_request") &&
        check(hydra_json_get_string(response, "/statusCode", &status), "reading the response")) {
        printf("http: %s %s\n", status, to);
        ok += strcmp(status, "200") == 0;
    }

    hydra_string_free(reply);
    hydra_string_free(echo);
    hydra_string_free(response);
    hydra_string_free(status);
    hydra_free(h);
    return ok == 2 ? 0 : 1;
}
