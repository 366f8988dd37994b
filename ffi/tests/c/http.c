/*
 * The HTTP server's promises to a C caller: a failed hydra_serve_http never
 * runs free_user_data (the caller still owns user_data and frees it itself:
 * valgrind would report a double free), and a response's status must be an
 * HTTP status (100-599). Needs $HYDRA_REDIS_URL.
 */
#define _POSIX_C_SOURCE 200809L
#include "check.h"

/* user_data the caller owns: heap memory, freed by whoever owns it last. */
typedef struct {
    char tag[16];
} owned_data;

static atomic_int library_frees;

static void free_owned(void *user_data) {
    atomic_fetch_add(&library_frees, 1);
    free(user_data);
}

static owned_data *new_owned(void) {
    owned_data *data = malloc(sizeof *data);
    CHECK(data != NULL);
    snprintf(data->tag, sizeof data->tag, "mine");
    return data;
}

static int32_t unused_route(void *user_data, hydra *h, const char *request_json, hydra_http_response *response) {
    (void)user_data;
    (void)h;
    (void)request_json;
    return hydra_http_response_send(response, 200, "{}");
}

static atomic_int status_checks;

static int32_t status_route(void *user_data, hydra *h, const char *request_json, hydra_http_response *response) {
    (void)h;
    (void)request_json;
    CHECK(strcmp(((owned_data *)user_data)->tag, "mine") == 0);
    EXPECT(hydra_http_response_send(response, 600, "{}"), HYDRA_BAD_REQUEST, "status 600 is not an HTTP status (100-599)");
    EXPECT(hydra_http_response_send(response, 99, "{}"), HYDRA_BAD_REQUEST, "100-599");
    EXPECT(hydra_http_response_set(response, 1000, NULL, NULL, 0), HYDRA_BAD_REQUEST, "100-599");
    EXPECT_OK(hydra_http_response_send(response, 599, "{}"));
    atomic_fetch_add(&status_checks, 1);
    /* The last answer written wins: a 204, sent without a body. */
    return hydra_http_response_set(response, 204, "text/plain", (const uint8_t *)"gone", 4);
}

static void failed_serve_keeps_user_data(hydra *h) {
    /* A route that is not in Hydra's form: refused after user_data was taken in. */
    owned_data *data = new_owned();
    EXPECT(hydra_serve_http(h, "[\"[get]/v1/ok\", \"nope\"]", NULL, unused_route, data, free_owned, NULL),
           HYDRA_BAD_REQUEST, "nope");
    CHECK(atomic_load(&library_frees) == 0);
    free(data); /* still ours */

    /* Bad settings. */
    data = new_owned();
    EXPECT(hydra_serve_http(h, "[\"[get]/v1/ok\"]", "{\"workers\": -1}", unused_route, data, free_owned, NULL),
           HYDRA_BAD_REQUEST, "workers");
    CHECK(atomic_load(&library_frees) == 0);
    free(data);
    STEP("failed serve keeps user_data");
}

static void status_range(hydra *h) {
    owned_data *data = new_owned();
    uint16_t port = 0;
    EXPECT_OK(hydra_serve_http(h, "[\"[get]/v1/c-http/status\"]", NULL, status_route, data, free_owned, &port));
    CHECK(port != 0);
    char *response = NULL;
    EXPECT_OK(hydra_make_api_request(h, "{\"to\": \"c-http:[get]/v1/c-http/status\", \"body\": {}}", NULL, &response));
    CHECK(atomic_load(&status_checks) == 1);
    CHECK_JSON(response, "\"statusCode\":204");
    STEP("status range");

    /* Serving on a shut-down handle fails too, without taking user_data. */
    EXPECT_OK(hydra_shutdown(h));
    CHECK(atomic_load(&library_frees) == 1); /* the server that ran has let go */
    owned_data *late = new_owned();
    EXPECT(hydra_serve_http(h, "[\"[get]/v1/ok\"]", NULL, unused_route, late, free_owned, NULL), HYDRA_INVALID_STATE,
           "shut down");
    CHECK(atomic_load(&library_frees) == 1);
    free(late);
    STEP("serve after shutdown keeps user_data");
}

int main(void) {
    char config[512];
    hydra *h = NULL;
    config_for(config, sizeof config, "c-http");
    EXPECT_OK(hydra_new(config, &h));
    EXPECT_OK(hydra_register_service(h, NULL));
    failed_serve_keeps_user_data(h);
    status_range(h);
    hydra_free(h);
    printf("done\n");
    return 0;
}
