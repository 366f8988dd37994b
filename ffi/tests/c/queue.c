/*
 * Queues from C: put / take / mark, stats, dead letters and redrive, a queue
 * worker with a C callback, hostile use; and with the Rust harness, messages
 * queued by Node hydra 1.9.3 and by Rust for our worker, and a message we
 * queue for a Node consumer. Needs $HYDRA_REDIS_URL.
 *
 * Protocol: we print "ready" once our worker runs on queue "c-work"; the
 * harness queues one message from Node and one from Rust and writes "go";
 * we wait for both, queue one for "node-jobs", print "queued"; the harness
 * has Node take and complete it, and writes "go"; we check and print "done".
 */
#define _POSIX_C_SOURCE 200809L
#include "check.h"

static hydra *service;
static atomic_int worked;
static atomic_int from_node;
static atomic_int from_rust;
static atomic_int worker_freed;

static int32_t work(void *user_data, hydra *h, const char *queued_json) {
    CHECK(user_data == (void *)&worker_freed);
    CHECK(h == service);
    CHECK(strstr(queued_json, "\"queue\":\"c-work\"") != NULL);
    if (strstr(queued_json, "\"fail\"") != NULL) {
        /* A library call failing in the callback: its message is the reason. */
        char *s = NULL;
        CHECK(hydra_find_service(h, "no-such-service", &s) == HYDRA_NOT_FOUND);
        return HYDRA_NOT_FOUND;
    }
    if (strstr(queued_json, "\"from_node\"") != NULL) {
        CHECK(strstr(queued_json, "\"from\":\"node-jobs:/\"") != NULL);
        atomic_fetch_add(&from_node, 1);
    }
    if (strstr(queued_json, "\"from_rust\"") != NULL) {
        atomic_fetch_add(&from_rust, 1);
    }
    atomic_fetch_add(&worked, 1);
    return HYDRA_OK;
}

/* The "c-reasons" worker (one thread, so one thread-local last error): a
 * message that leaves a last error and succeeds, one that fails without a
 * reason (the stale text must not pass for it), one that fails with its own. */
static int32_t fail_with_reason(void *user_data, hydra *h, const char *queued_json) {
    CHECK(user_data == NULL);
    CHECK(h == service);
    CHECK(hydra_last_error_message()[0] == '\0'); /* cleared before each call */
    if (strstr(queued_json, "\"leave\"") != NULL) {
        CHECK(hydra_set_last_error_message("stale text from a callback that succeeded") == HYDRA_OK);
        return HYDRA_OK;
    }
    if (strstr(queued_json, "\"bare\"") != NULL) {
        return HYDRA_CALLBACK_FAILED;
    }
    CHECK(hydra_set_last_error_message("disk full while writing job 7 \xe2\x9c\x93") == HYDRA_OK);
    return HYDRA_CALLBACK_FAILED;
}

static void reasons(void) {
    hydra_queue_worker *worker = NULL;
    EXPECT_OK(hydra_queue_worker_new(service, "c-reasons", 1, "{\"maxDeliveries\": 1}", fail_with_reason, NULL,
                                     NULL, &worker));
    EXPECT_OK(hydra_queue_message(service, "{\"to\": \"c-reasons:/\", \"body\": {\"leave\": 1}}"));
    EXPECT_OK(hydra_queue_message(service, "{\"to\": \"c-reasons:/\", \"body\": {\"bare\": 2}}"));
    EXPECT_OK(hydra_queue_message(service, "{\"to\": \"c-reasons:/\", \"body\": {\"reason\": 3}}"));
    char *json = NULL;
    for (int i = 0;; i++) {
        EXPECT_OK(hydra_queue_worker_stats(worker, &json));
        int done = strstr(json, "\"completed\":1,") != NULL && strstr(json, "\"dead_lettered\":2,") != NULL;
        if (done || i == 3000) {
            if (!done) {
                fprintf(stderr, "c-reasons worker stats: %s\n", json);
            }
            hydra_string_free(json);
            CHECK(done);
            break;
        }
        hydra_string_free(json);
        sleep_ms(10);
    }
    hydra_queue_worker_free(worker);
    uint64_t moved = 0;
    EXPECT_OK(hydra_redrive_dead_letters(service, "c-reasons", &moved));
    CHECK(moved == 2);
    const char *expected[2] = {
        "\"reason\":\"queue callback returned HYDRA_CALLBACK_FAILED\"",
        "\"reason\":\"queue callback returned HYDRA_CALLBACK_FAILED: disk full while writing job 7 \xe2\x9c\x93\"",
    };
    for (int i = 0; i < 2; i++) {
        hydra_queued_message *dead = NULL;
        EXPECT_OK(hydra_get_queued_message(service, "c-reasons", 0, &dead));
        CHECK(dead != NULL);
        EXPECT_OK(hydra_queued_message_json(dead, &json));
        CHECK_JSON(json, expected[i]);
        EXPECT_OK(hydra_mark_queue_message(service, dead, true, NULL, NULL));
        hydra_queued_message_free(dead);
    }
    STEP("reasons");
}

static void read_go(void) {
    char line[64];
    CHECK(fgets(line, sizeof line, stdin) != NULL);
    CHECK(strncmp(line, "go", 2) == 0);
}

static void take_and_mark(void) {
    hydra_queued_message *queued = (hydra_queued_message *)0x1;
    char *json = NULL;
    bool was = false;

    EXPECT_OK(hydra_get_queued_message(service, "c-manual", 0, &queued));
    CHECK(queued == NULL); /* empty: OK and NULL */
    EXPECT_OK(hydra_get_queued_message(service, "c-manual", 100, &queued));
    CHECK(queued == NULL);

    EXPECT_OK(hydra_queue_message(service, "{\"to\": \"c-manual:/\", \"body\": {\"job\": 1}}"));
    EXPECT_OK(hydra_queue_message(service, "{\"to\": \"c-manual:/\", \"body\": {\"job\": 2}}"));
    EXPECT_OK(hydra_queue_stats(service, "c-manual", &json));
    CHECK_JSON(json, "\"waiting\":2");

    EXPECT_OK(hydra_get_queued_message(service, "c-manual", 0, &queued));
    CHECK(queued != NULL);
    EXPECT_OK(hydra_queued_message_json(queued, &json));
    CHECK(strstr(json, "\"from\":\"c-svc:/\"") != NULL);
    CHECK(strstr(json, "\"deliveryCount\":1") != NULL);
    CHECK_JSON(json, "\"body\":{\"job\":1}"); /* FIFO */
    EXPECT_OK(hydra_mark_queue_message(service, queued, true, NULL, &was));
    CHECK(was);
    EXPECT_OK(hydra_mark_queue_message(service, queued, true, NULL, &was));
    CHECK(!was);
    hydra_queued_message_free(queued);
    EXPECT(hydra_queued_message_json(queued, &json), HYDRA_INVALID_HANDLE, "hydra_queued_message");
    EXPECT(hydra_mark_queue_message(service, queued, true, NULL, NULL), HYDRA_INVALID_HANDLE, "");
    hydra_queued_message_free(queued); /* stale: ignored */

    /* Incomplete with a reason, then back into the queue. */
    EXPECT_OK(hydra_get_queued_message(service, "c-manual", 5000, &queued));
    CHECK(queued != NULL);
    EXPECT_OK(hydra_mark_queue_message(service, queued, false, "could not do it", NULL));
    hydra_queued_message_free(queued);
    EXPECT_OK(hydra_queue_stats(service, "c-manual", &json));
    CHECK_JSON(json, "\"incomplete\":1");
    uint64_t moved = 0;
    EXPECT_OK(hydra_redrive_dead_letters(service, "c-manual", &moved));
    CHECK(moved == 1);
    EXPECT_OK(hydra_get_queued_message(service, "c-manual", 0, &queued));
    EXPECT_OK(hydra_queued_message_json(queued, &json));
    CHECK_JSON(json, "\"reason\":\"could not do it\"");
    EXPECT_OK(hydra_mark_queue_message(service, queued, true, "", NULL));
    hydra_queued_message_free(queued);
    EXPECT_OK(hydra_queue_stats(service, "c-manual", &json));
    CHECK_JSON(json, "\"waiting\":0,\"in_progress\":0,\"incomplete\":0");
    STEP("take and mark");
}

static void hostile(hydra_queue_worker *worker) {
    char *s = NULL;
    hydra_queued_message *q = NULL;
    hydra_queue_worker *w = NULL;
    EXPECT(hydra_queue_message(NULL, "{}"), HYDRA_NULL_ARGUMENT, "hydra");
    EXPECT(hydra_queue_message(service, NULL), HYDRA_NULL_ARGUMENT, "message_json");
    EXPECT(hydra_queue_message(service, "{\"to\": \"c-x:/\"}"), HYDRA_BAD_REQUEST, "\"body\"");
    EXPECT(hydra_queue_message(service, "{\"to\": \"c-x:/\", \"body\": {} "), HYDRA_BAD_REQUEST, "not valid JSON");
    EXPECT(hydra_get_queued_message(NULL, "c-x", 0, &q), HYDRA_NULL_ARGUMENT, "hydra");
    EXPECT(hydra_get_queued_message(service, NULL, 0, &q), HYDRA_NULL_ARGUMENT, "service");
    EXPECT(hydra_get_queued_message(service, "c-x", 0, NULL), HYDRA_NULL_ARGUMENT, "out_queued");
    EXPECT(hydra_queued_message_json(NULL, &s), HYDRA_NULL_ARGUMENT, "queued");
    EXPECT(hydra_queued_message_json((hydra_queued_message *)0x11, NULL), HYDRA_NULL_ARGUMENT, "out_json");
    EXPECT(hydra_mark_queue_message(service, NULL, true, NULL, NULL), HYDRA_NULL_ARGUMENT, "queued");
    EXPECT(hydra_mark_queue_message(NULL, (hydra_queued_message *)0x11, true, NULL, NULL), HYDRA_INVALID_HANDLE,
           "queued");
    EXPECT(hydra_queue_stats(service, NULL, &s), HYDRA_NULL_ARGUMENT, "service");
    EXPECT(hydra_queue_stats(service, "c-x", NULL), HYDRA_NULL_ARGUMENT, "out_json");
    EXPECT(hydra_redrive_dead_letters(service, NULL, NULL), HYDRA_NULL_ARGUMENT, "service");
    EXPECT(hydra_queue_worker_new(service, "c-x", 1, NULL, NULL, NULL, NULL, &w), HYDRA_NULL_ARGUMENT, "callback");
    EXPECT(hydra_queue_worker_new(service, NULL, 1, NULL, work, NULL, NULL, &w), HYDRA_NULL_ARGUMENT, "service");
    EXPECT(hydra_queue_worker_new(service, "c-x", 1, NULL, work, NULL, NULL, NULL), HYDRA_NULL_ARGUMENT,
           "out_worker");
    EXPECT(hydra_queue_worker_new(service, "c-x", 0, NULL, work, NULL, NULL, &w), HYDRA_BAD_REQUEST, "concurrency");
    EXPECT(hydra_queue_worker_new(service, "bad:name", 1, NULL, work, NULL, NULL, &w), HYDRA_BAD_REQUEST,
           "not a queue name");
    EXPECT(hydra_queue_worker_new(service, "c-x", 1, "{\"visibilityTimeout\": 5}", work, NULL, NULL, &w),
           HYDRA_BAD_REQUEST, "unknown key");
    EXPECT(hydra_queue_worker_new(service, "c-x", 1, "{\"visibilityTimeoutMs\": 5}", work, NULL, NULL, &w),
           HYDRA_BAD_REQUEST, "visibility timeout");
    CHECK(w == NULL);
    EXPECT(hydra_queue_worker_stop(NULL), HYDRA_NULL_ARGUMENT, "worker");
    EXPECT(hydra_queue_worker_stats(NULL, &s), HYDRA_NULL_ARGUMENT, "worker");
    EXPECT(hydra_queue_worker_stats(worker, NULL), HYDRA_NULL_ARGUMENT, "out_json");
    EXPECT(hydra_queue_worker_stop((hydra_queue_worker *)service), HYDRA_INVALID_HANDLE, "hydra_queue_worker");
    hydra_queue_worker_free(NULL);
    hydra_queued_message_free(NULL);
    CHECK(s == NULL && q == NULL);
    STEP("hostile");
}

/* Polls the worker's counters until `needle` appears. */
static void wait_stats(hydra_queue_worker *worker, const char *needle) {
    for (int i = 0; i < 3000; i++) {
        char *json = NULL;
        EXPECT_OK(hydra_queue_worker_stats(worker, &json));
        int found = strstr(json, needle) != NULL;
        if (found || i == 2999) {
            if (!found) {
                fprintf(stderr, "worker stats never had %s: %s\n", needle, json);
            }
            hydra_string_free(json);
            CHECK(found);
            return;
        }
        hydra_string_free(json);
        sleep_ms(10);
    }
}

int main(void) {
    char config[512];
    config_for(config, sizeof config, "c-svc");
    EXPECT_OK(hydra_new(config, &service));
    take_and_mark();

    hydra_queue_worker *worker = NULL;
    EXPECT_OK(hydra_queue_worker_new(service, "c-work", 2, "{\"visibilityTimeoutMs\": 10000, \"maxDeliveries\": 2}",
                                     work, &worker_freed, count_free, &worker));
    CHECK(worker != NULL);
    hostile(worker);

    /* Three good messages and one that fails twice and becomes a dead letter. */
    for (int i = 0; i < 3; i++) {
        EXPECT_OK(hydra_queue_message(service, "{\"to\": \"c-work:/\", \"body\": {\"good\": true}}"));
    }
    EXPECT_OK(hydra_queue_message(service, "{\"to\": \"c-work:/\", \"body\": {\"fail\": true}}"));
    wait_stats(worker, "\"dead_lettered\":1");
    wait_stats(worker, "\"completed\":3");
    char *json = NULL;
    EXPECT_OK(hydra_queue_stats(service, "c-work", &json));
    CHECK(strstr(json, "\"consumers\":2") != NULL);
    CHECK_JSON(json, "\"incomplete\":1");
    hydra_queued_message *dead = NULL;
    uint64_t moved = 0;
    EXPECT_OK(hydra_queue_worker_stop(worker));
    EXPECT_OK(hydra_redrive_dead_letters(service, "c-work", &moved));
    CHECK(moved == 1);
    EXPECT_OK(hydra_get_queued_message(service, "c-work", 0, &dead));
    EXPECT_OK(hydra_queued_message_json(dead, &json));
    CHECK_JSON(json, "queue callback returned HYDRA_NOT_FOUND: Can't find no-such-service service");
    EXPECT_OK(hydra_mark_queue_message(service, dead, true, NULL, NULL));
    hydra_queued_message_free(dead);
    hydra_queue_worker_free(worker);
    EXPECT(hydra_queue_worker_stop(worker), HYDRA_INVALID_HANDLE, "");
    STEP("worker");
    reasons();

    /* A new worker for the harness's Node and Rust producers. */
    EXPECT_OK(hydra_queue_worker_new(service, "c-work", 1, NULL, work, &worker_freed, count_free, &worker));
    printf("ready\n");
    fflush(stdout);
    read_go();
    CHECK(wait_for(&from_node, 1, 30000));
    CHECK(wait_for(&from_rust, 1, 30000));
    STEP("consumed node and rust");

    EXPECT_OK(hydra_queue_message(service, "{\"to\": \"node-jobs:/\", \"body\": {\"for_node\": 1}}"));
    printf("queued\n");
    fflush(stdout);
    read_go();
    EXPECT_OK(hydra_queue_stats(service, "node-jobs", &json));
    CHECK_JSON(json, "\"waiting\":0,\"in_progress\":0,\"incomplete\":0");
    STEP("node consumed ours");

    /* The worker is stopped by the shutdown of its hydra; its finalizer runs
     * when both are released. */
    hydra_free(service);
    CHECK(atomic_load(&worker_freed) == 1);
    hydra_queue_worker_free(worker);
    CHECK(atomic_load(&worker_freed) == 2);
    printf("done\n");
    return 0;
}
