/* Threads and errors on the clex C ABI: a generation cancelled from another thread, a
 * session refusing a second caller while it runs, bad arguments answered with status
 * codes and messages, a saved state refused by a session with other options.
 *
 *   cc -std=c11 -Iinclude examples/c/cancel.c -Ltarget/release -lclex \
 *      -Wl,-rpath,target/release -lpthread -o cancel
 *   ./cancel MODEL.gguf STATE_FILE
 *
 * Prints what it checks; exits 0 when everything holds, 1 otherwise.
 */
#include "clex.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

static int failures = 0;

#define CHECK(cond)                                                                     \
    do {                                                                                \
        if (!(cond)) {                                                                  \
            fprintf(stderr, "cancel.c:%d: check failed: %s (last error: %s)\n", __LINE__, \
                    #cond, clex_last_error());                                          \
            failures++;                                                                 \
        }                                                                               \
    } while (0)

static atomic_int produced;
static atomic_int at_cancel = -1;
static clex_status busy_status = CLEX_OK;

struct target {
    clex_session *session;
    clex_cancel_handle *cancel;
};

static int count_token(const char *text, size_t len, int32_t token, void *user_data) {
    (void)text, (void)len, (void)token, (void)user_data;
    atomic_fetch_add(&produced, 1);
    return 0;
}

/* The "UI thread": waits for 5 tokens, tries a second call, then cancels. */
static void *canceller(void *arg) {
    struct target *t = arg;
    while (atomic_load(&produced) < 5)
        sched_yield();
    busy_status = clex_session_prompt(t->session, "more");
    clex_cancel(t->cancel);
    atomic_store(&at_cancel, atomic_load(&produced));
    return NULL;
}

static float last_fraction = -1.0f;
static bool on_progress(float fraction, void *user_data) {
    (void)user_data;
    last_fraction = fraction;
    return true;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s MODEL.gguf STATE_FILE\n", argv[0]);
        return 2;
    }
    CHECK(clex_abi_version() == CLEX_ABI_VERSION);
    CHECK(strlen(clex_version()) > 0);

    /* Bad arguments: a status and a message, never a crash. */
    clex_model *model = (clex_model *)1;
    CHECK(clex_model_load(NULL, NULL, &model) == CLEX_ERR_INVALID_ARGUMENT);
    CHECK(model == NULL && strstr(clex_last_error(), "path") != NULL);
    clex_status st = clex_model_load("/nonexistent/model.gguf", NULL, &model);
    CHECK(st == CLEX_ERR_IO || st == CLEX_ERR_MODEL);
    CHECK(strstr(clex_last_error(), "/nonexistent/model.gguf") != NULL);
    CHECK(clex_model_load(argv[1], NULL, NULL) == CLEX_ERR_INVALID_ARGUMENT);
    clex_model_options mo;
    clex_model_options_default(&mo);
    mo.struct_size = 0;
    CHECK(clex_model_load(argv[1], &mo, &model) == CLEX_ERR_INVALID_ARGUMENT);

    clex_model_options_default(&mo);
    mo.progress = on_progress;
    st = clex_model_load(argv[1], &mo, &model);
    CHECK(st == CLEX_OK && model != NULL);
    if (st != CLEX_OK)
        return 1;
    CHECK(last_fraction == 1.0f);
    CHECK(strcmp(clex_last_error(), "") == 0);

    clex_session_options so;
    clex_session_options_default(&so);
    so.n_ctx = 8192; /* far more than the 5 tokens awaited: only the cancel ends it */
    so.clex_overflow_clamp = true;
    so.n_threads = 1;
    clex_session *s = NULL;
    CHECK(clex_session_new(model, &so, &s) == CLEX_OK);
    so.rope_scaling = "no-such-scaling";
    clex_session *bad = NULL;
    CHECK(clex_session_new(model, &so, &bad) == CLEX_ERR_INVALID_ARGUMENT && bad == NULL);
    so.rope_scaling = NULL;

    CHECK(clex_session_prompt(s, "\xff\xfe not UTF-8") == CLEX_ERR_INVALID_ARGUMENT);
    CHECK(clex_session_generate(s, NULL, NULL, NULL, NULL) == CLEX_ERR_INVALID_ARGUMENT);
    CHECK(clex_session_prompt(NULL, "x") == CLEX_ERR_INVALID_ARGUMENT);
    CHECK(clex_session_restore(s, "/nonexistent/state") == CLEX_ERR_IO);
    clex_message m = {"user", "hi"};
    CHECK(clex_session_chat(s, &m, 1, "no-such-template") != CLEX_OK);
    CHECK(clex_session_prompt(s, "Once upon a time") == CLEX_OK);
    size_t n_prompt = clex_session_n_past(s);
    CHECK(n_prompt > 1);

    /* Cancel from another thread: at most one token after the cancel is seen. */
    struct target t = {s, clex_session_cancel_handle(s)};
    pthread_t th;
    pthread_create(&th, NULL, canceller, &t);
    clex_generate_options go;
    clex_generate_options_default(&go);
    go.temperature = 0.0f;
    go.ignore_eos = true;
    clex_stop_reason why = CLEX_STOP_NONE;
    st = clex_session_generate(s, &go, count_token, NULL, &why);
    pthread_join(th, NULL);
    int total = atomic_load(&produced), seen = atomic_load(&at_cancel);
    printf("cancel: %d tokens, %d when cancelled, busy status %d\n", total, seen, (int)busy_status);
    CHECK(st == CLEX_OK && why == CLEX_STOP_CANCELLED);
    CHECK(seen >= 5 && total - seen <= 1);
    CHECK(busy_status == CLEX_ERR_BUSY);
    CHECK(clex_session_n_past(s) == n_prompt + (size_t)total);

    /* The cancel applied to that call only. */
    go.max_tokens = 3;
    atomic_store(&produced, 0);
    CHECK(clex_session_generate(s, &go, count_token, NULL, &why) == CLEX_OK);
    CHECK(why == CLEX_STOP_MAX_TOKENS && atomic_load(&produced) == 3);
    clex_free_cancel(t.cancel);

    /* A state restores only into a session with the same options. */
    CHECK(clex_session_save(s, argv[2]) == CLEX_OK);
    so.n_ctx = 256;
    clex_session *other = NULL;
    CHECK(clex_session_new(model, &so, &other) == CLEX_OK);
    CHECK(clex_session_restore(other, argv[2]) == CLEX_ERR_STATE);
    CHECK(strstr(clex_last_error(), "context") != NULL);
    CHECK(clex_session_n_past(other) == 0);

    clex_free_session(other);
    clex_free_session(s);
    clex_free_model(model);
    clex_free_session(NULL);
    clex_free_model(NULL);
    clex_free_cancel(NULL);
    printf("cancel: %s\n", failures ? "FAILED" : "all checks passed");
    return failures ? 1 : 0;
}
