/*
 * Tiny assertion helpers for the C tests of hydra-rs's C ABI. A failed check
 * prints where and why (with hydra_last_error_message()) and exits 1.
 */
#ifndef HYDRA_TEST_CHECK_H
#define HYDRA_TEST_CHECK_H

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "hydra.h"

#define CHECK(cond)                                                                  \
    do {                                                                             \
        if (!(cond)) {                                                               \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
            exit(1);                                                                 \
        }                                                                            \
    } while (0)

/* `call` must return `expected`; the last error message must contain `needle`
 * (pass "" to skip) and be empty exactly when the call succeeded. */
#define EXPECT(call, expected, needle)                                                       \
    do {                                                                                     \
        int32_t status_ = (call);                                                            \
        const char *message_ = hydra_last_error_message();                                   \
        if (status_ != (expected)) {                                                         \
            fprintf(stderr, "%s:%d: %s returned %s (%d), expected %s: \"%s\"\n", __FILE__, \
                    __LINE__, #call, hydra_status_name(status_), status_,                  \
                    hydra_status_name(expected), message_);                                 \
            exit(1);                                                                         \
        }                                                                                    \
        if (strstr(message_, (needle)) == NULL || ((expected) == HYDRA_OK) != (message_[0] == '\0')) { \
            fprintf(stderr, "%s:%d: %s: message \"%s\" does not fit \"%s\"\n", __FILE__,   \
                    __LINE__, #call, message_, (needle));                                   \
            exit(1);                                                                         \
        }                                                                                    \
    } while (0)

#define EXPECT_OK(call) EXPECT(call, HYDRA_OK, "")

/* The JSON text `json` contains `needle`; frees `json`. */
#define CHECK_JSON(json, needle)                                                        \
    do {                                                                                \
        char *json_ = (json);                                                           \
        if (json_ == NULL || strstr(json_, (needle)) == NULL) {                         \
            fprintf(stderr, "%s:%d: %s does not contain %s: %s\n", __FILE__, __LINE__, \
                    #json, (needle), json_ ? json_ : "(null)");                        \
            exit(1);                                                                    \
        }                                                                               \
        hydra_string_free(json_);                                                       \
    } while (0)

static inline void sleep_ms(long ms) {
    struct timespec t = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&t, NULL);
}

/* Polls `*counter` until it reaches `at_least` or `timeout_ms` passes. */
static inline int wait_for(atomic_int *counter, int at_least, long timeout_ms) {
    for (long waited = 0; waited < timeout_ms; waited += 10) {
        if (atomic_load(counter) >= at_least) {
            return 1;
        }
        sleep_ms(10);
    }
    return atomic_load(counter) >= at_least;
}

/* A free_user_data that counts: user_data is an atomic_int. */
static inline void count_free(void *user_data) { atomic_fetch_add((atomic_int *)user_data, 1); }

/* Prints a progress line the Rust harness reads. */
#define STEP(name)                         \
    do {                                   \
        printf("ok %s\n", (name));         \
        fflush(stdout);                    \
    } while (0)

/* A config document for `name` on $HYDRA_REDIS_URL, loopback address, with
 * timeouts that allow for valgrind's slowness. */
static inline void config_for(char *out, size_t size, const char *name) {
    const char *url = getenv("HYDRA_REDIS_URL");
    CHECK(url != NULL);
    snprintf(out, size,
             "{\"hydra\": {\"serviceName\": \"%s\", \"serviceIP\": \"127.0.0.1\", "
             "\"servicePort\": 0, \"redis\": {\"url\": \"%s\"}, "
             "\"connectTimeout\": 10000, \"commandTimeout\": 10000}}",
             name, url);
}

#endif
