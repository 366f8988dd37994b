/*
 * An out-of-tree program using the INSTALLED library (ffi/tests/install.rs
 * copies it to a temporary directory and builds it with pkg-config and with
 * CMake's find_package(hydra)): asks the service named by argv[1] once and
 * prints "version <library version>" and "reply <reply body>".
 * Redis comes from HYDRA_REDIS_URL.
 */
#include <stdio.h>

#include <hydra.h>

static int fail(const char *what, int32_t status) {
    fprintf(stderr, "%s failed: %s: %s\n", what, hydra_status_name(status), hydra_last_error_message());
    return 1;
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: %s <service to ask> <my service name>\n", argv[0]);
        return 2;
    }
    char message[512];
    snprintf(message, sizeof message, "{\"to\": \"%s:/\", \"body\": {\"from\": \"%s\"}}", argv[1], argv[2]);
    printf("version %s\n", hydra_version());

    hydra *h = NULL;
    int32_t status = hydra_new_with_name(argv[2], &h);
    if (status != HYDRA_OK) {
        return fail("hydra_new_with_name", status);
    }
    char *reply = NULL, *body = NULL;
    if ((status = hydra_register_service(h, NULL)) != HYDRA_OK) {
        hydra_free(h);
        return fail("hydra_register_service", status);
    }
    if ((status = hydra_request(h, message, 10000, &reply)) != HYDRA_OK) {
        hydra_free(h);
        return fail("hydra_request", status);
    }
    if ((status = hydra_json_get(reply, "/body", &body)) != HYDRA_OK) {
        hydra_string_free(reply);
        hydra_free(h);
        return fail("hydra_json_get", status);
    }
    printf("reply %s\n", body);
    hydra_string_free(body);
    hydra_string_free(reply);
    hydra_free(h);
    return 0;
}
