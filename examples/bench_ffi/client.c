/*
 * The C client of examples/bench_ffi: request-reply against the Rust echo
 * service through the C ABI, driven over stdin/stdout by the benchmark.
 *
 *   env:    HYDRA_REDIS_URL, BENCH_SERVICE (the echo's name)
 *   stdout: "ready" once registered and warmed up (BENCH_WARMUP requests, 300 by default)
 *   stdin:  "run <threads> <millis>" -> stdout: "done <requests> <elapsed_us>
 *           <errors> <latency_us>..." (every request's latency)
 *
 * Every request is {"to": "<service>:/", "body": {"n": <i>, "pad": <64 x>}}
 * and its reply's body must be {"echo": <that body>}: checked by comparing
 * hydra_json_get(reply, "/body/echo") with the body's compact JSON text.
 */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "hydra.h"

#define MAX_THREADS 64
#define TIMEOUT_MS 5000

static hydra *h;
static const char *service;
static const char PAD[] = "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx";

static uint64_t now_us(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000u + (uint64_t)t.tv_nsec / 1000u;
}

static void die(const char *what, int32_t status) {
    fprintf(stderr, "bench client: %s: %s (%s)\n", what, hydra_last_error_message(), hydra_status_name(status));
    exit(1);
}

/* One request; 0 when the reply is right. */
static int request_once(uint64_t n) {
    char body[160], message[320];
    snprintf(body, sizeof body, "{\"n\":%llu,\"pad\":\"%s\"}", (unsigned long long)n, PAD);
    snprintf(message, sizeof message, "{\"to\":\"%s:/\",\"body\":%s}", service, body);
    char *reply = NULL, *echoed = NULL;
    int32_t status = hydra_request(h, message, TIMEOUT_MS, &reply);
    if (status != HYDRA_OK) {
        fprintf(stderr, "bench client: request: %s\n", hydra_last_error_message());
        return 1;
    }
    int wrong = hydra_json_get(reply, "/body/echo", &echoed) != HYDRA_OK || strcmp(echoed, body) != 0;
    if (wrong) {
        fprintf(stderr, "bench client: wrong reply %s\n", reply);
    }
    hydra_string_free(echoed);
    hydra_string_free(reply);
    return wrong;
}

struct worker {
    pthread_t thread;
    unsigned index;
    uint64_t deadline_us;
    uint64_t requests, errors;
    uint32_t *latencies;
    size_t capacity;
};

static void *work(void *arg) {
    struct worker *w = arg;
    uint64_t n = (uint64_t)w->index << 40;
    for (;;) {
        uint64_t start = now_us();
        if (start >= w->deadline_us) {
            break;
        }
        w->errors += (uint64_t)request_once(n++);
        uint64_t took = now_us() - start;
        if (w->requests == w->capacity) {
            w->capacity = w->capacity ? w->capacity * 2 : 4096;
            w->latencies = realloc(w->latencies, w->capacity * sizeof *w->latencies);
            if (w->latencies == NULL) {
                exit(1);
            }
        }
        w->latencies[w->requests++] = (uint32_t)(took > UINT32_MAX ? UINT32_MAX : took);
    }
    return NULL;
}

static void run(unsigned threads, unsigned millis) {
    struct worker workers[MAX_THREADS];
    memset(workers, 0, sizeof workers);
    uint64_t start = now_us();
    for (unsigned i = 0; i < threads; i++) {
        workers[i].index = i;
        workers[i].deadline_us = start + (uint64_t)millis * 1000u;
        if (pthread_create(&workers[i].thread, NULL, work, &workers[i]) != 0) {
            exit(1);
        }
    }
    uint64_t requests = 0, errors = 0;
    for (unsigned i = 0; i < threads; i++) {
        pthread_join(workers[i].thread, NULL);
        requests += workers[i].requests;
        errors += workers[i].errors;
    }
    uint64_t elapsed = now_us() - start;
    printf("done %llu %llu %llu", (unsigned long long)requests, (unsigned long long)elapsed,
           (unsigned long long)errors);
    for (unsigned i = 0; i < threads; i++) {
        for (uint64_t j = 0; j < workers[i].requests; j++) {
            printf(" %u", workers[i].latencies[j]);
        }
        free(workers[i].latencies);
    }
    printf("\n");
    fflush(stdout);
}

int main(void) {
    service = getenv("BENCH_SERVICE");
    if (service == NULL) {
        service = "bench-echo";
    }
    int32_t status = hydra_new("{\"hydra\": {\"serviceName\": \"bench-c\", \"serviceIP\": \"127.0.0.1\"}}", &h);
    if (status != HYDRA_OK) {
        die("hydra_new", status);
    }
    if ((status = hydra_register_service(h, NULL)) != HYDRA_OK) {
        die("hydra_register_service", status);
    }
    /* BENCH_WARMUP: requests before "ready" (the benchmark's smoke run asks for few). */
    const char *warmup_text = getenv("BENCH_WARMUP");
    int warmup = warmup_text != NULL ? atoi(warmup_text) : 300;
    for (int i = 0; i < warmup; i++) {
        if (request_once((uint64_t)i) != 0) {
            exit(1);
        }
    }
    printf("ready\n");
    fflush(stdout);
    char line[128];
    while (fgets(line, sizeof line, stdin) != NULL) {
        unsigned threads = 0, millis = 0;
        if (sscanf(line, "run %u %u", &threads, &millis) == 2 && threads >= 1 && threads <= MAX_THREADS) {
            run(threads, millis);
        }
    }
    hydra_free(h);
    return 0;
}
