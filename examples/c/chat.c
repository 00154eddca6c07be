/* A chat on the clex C ABI: one user message per line of standard input, the
 * assistant's reply streamed to standard output (one line per reply, greedy, so the same
 * every run). Errors go to standard error with clex's message; the exit status is 1.
 *
 *   cargo build --release -p clex-capi
 *   cc -Iinclude examples/c/chat.c target/release/libclex.a \
 *      -lgomp -lstdc++ -lm -lpthread -ldl -lrt -lutil -o chat
 *   echo "Hello!" | ./chat MODEL.gguf [TEMPLATE] [MAX_TOKENS]
 *
 * TEMPLATE: a built-in chat template ("chatml", "llama3", ...) for a model without one of
 * its own; "-" or absent: the model's. MAX_TOKENS: per reply (default 256).
 */
#include "clex.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The reply being streamed, kept to send back as the assistant's message. */
struct reply {
    char *text;
    size_t len, cap;
};

static int on_token(const char *text, size_t len, int32_t token, void *user_data) {
    struct reply *r = user_data;
    (void)token;
    fwrite(text, 1, len, stdout);
    fflush(stdout);
    if (r->len + len + 1 > r->cap) {
        size_t cap = (r->len + len + 1) * 2;
        char *p = realloc(r->text, cap);
        if (!p)
            return 1; /* out of memory: stop generating */
        r->text = p;
        r->cap = cap;
    }
    memcpy(r->text + r->len, text, len);
    r->len += len;
    r->text[r->len] = '\0';
    return 0;
}

static char *dup(const char *s) {
    char *p = malloc(strlen(s) + 1);
    return p ? strcpy(p, s) : NULL;
}

static int fail(const char *what, clex_status st) {
    fprintf(stderr, "chat: %s failed (status %d): %s\n", what, (int)st, clex_last_error());
    return 1;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s MODEL.gguf [TEMPLATE] [MAX_TOKENS]\n", argv[0]);
        return 2;
    }
    if (clex_abi_version() != CLEX_ABI_VERSION) {
        fprintf(stderr, "chat: library ABI %u, header ABI %u\n", clex_abi_version(), CLEX_ABI_VERSION);
        return 1;
    }
    const char *template_name = (argc > 2 && strcmp(argv[2], "-") != 0) ? argv[2] : NULL;
    int max_tokens = argc > 3 ? atoi(argv[3]) : 256;

    clex_model *model = NULL;
    clex_status st = clex_model_load(argv[1], NULL, &model);
    if (st != CLEX_OK)
        return fail("clex_model_load", st);

    clex_session_options so;
    clex_session_options_default(&so);
    so.n_ctx = clex_model_n_ctx_train(model) < 2048 ? clex_model_n_ctx_train(model) : 2048;
    clex_session *session = NULL;
    st = clex_session_new(model, &so, &session);
    clex_free_model(model); /* the session keeps the model alive */
    if (st != CLEX_OK)
        return fail("clex_session_new", st);

    clex_generate_options go;
    clex_generate_options_default(&go);
    go.max_tokens = max_tokens;
    go.temperature = 0.0f;

    clex_message *msgs = NULL;
    size_t n = 0, cap = 0;
    char line[4096];
    int rc = 0;
    while (rc == 0 && fgets(line, sizeof line, stdin)) {
        line[strcspn(line, "\r\n")] = '\0';
        if (line[0] == '\0')
            continue;
        if (n + 2 > cap) {
            cap = (n + 2) * 2;
            clex_message *p = realloc(msgs, cap * sizeof *msgs);
            if (!p) {
                rc = 1;
                break;
            }
            msgs = p;
        }
        msgs[n].role = "user";
        msgs[n].content = dup(line);
        n++;
        /* The whole conversation each turn: only what is new is evaluated. */
        st = clex_session_chat(session, msgs, n, template_name);
        if (st != CLEX_OK) {
            rc = fail("clex_session_chat", st);
            break;
        }
        struct reply r = {0};
        clex_stop_reason why;
        st = clex_session_generate(session, &go, on_token, &r, &why);
        putchar('\n');
        fflush(stdout);
        if (st != CLEX_OK) {
            free(r.text);
            rc = fail("clex_session_generate", st);
            break;
        }
        msgs[n].role = "assistant";
        msgs[n].content = r.text ? r.text : dup("");
        n++;
    }
    for (size_t i = 0; i < n; i++)
        free((char *)msgs[i].content);
    free(msgs);
    clex_free_session(session);
    return rc;
}
