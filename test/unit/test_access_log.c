/* ingress/access_log.c: the lines access_log_request writes, read back from
 * the file (a memfd), for plain and hostile sessions. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <fcntl.h>

#include <cjson/cJSON.h>
#include <cmocka.h>
#include <event2/event.h>

#include "../json_strict.h"
#include "access_log.h"
#include "head.h"
#include "route_rec.h"
#include "runtime.h"
#include "exchange.h"
#include "worker.h"

/* README, "Access log": the keys in order, the line cap (newline included)
 * and the budgets of the client's free text, in bytes as written. */
static const char *const keys[] = {"time",        "client",     "method", "host",
                                   "path",        "protocol",   "status", "bytes",
                                   "duration_ms", "sandbox_id", "port",   "upstream"};
#define LINE_CAP 4096
#define METHOD_BUDGET 32
#define HOST_BUDGET 512
#define PATH_BUDGET 3000

struct fixture {
    struct worker w;
    struct runtime rt;
    struct head rh;
    struct client_info client;
    struct exchange s;
    char *file; /* what the log holds, after read_log() */
    size_t file_len;
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));

    assert_non_null(f);
    f->rt.access_log_fd = memfd_create("access.log", MFD_CLOEXEC);
    assert_true(f->rt.access_log_fd >= 0);
    assert_int_equal(fcntl(f->rt.access_log_fd, F_SETFL, O_APPEND), 0);
    f->w.base = event_base_new();
    f->w.rt = &f->rt;
    f->w.cfg = &f->rt.cfg;
    assert_int_equal(access_log_worker_init(&f->w), 0);

    struct exchange *s = &f->s;
    s->w = &f->w;
    s->client = &f->client;
    strcpy(f->client.peer_ip, "203.0.113.7");
    f->rh.url_len = 2;
    s->rh = &f->rh;
    s->method = HTTP_GET;
    s->authority = "8000-abc.sandbox.test";
    s->authority_len = strlen(s->authority);
    s->path = "/x?y=1";
    s->path_len = strlen(s->path);
    s->status = 200;
    s->bytes_out = 437;
    strcpy(s->target.sandbox_id, "abc");
    s->target.port = 8000;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;

    access_log_worker_free(&f->w);
    event_base_free(f->w.base);
    close(f->rt.access_log_fd);
    route_rec_unref(f->s.rr);
    free(f->file);
    free(f);
    return 0;
}

/* Flushes the worker buffer and reads the whole file into f->file. */
static void read_log(struct fixture *f)
{
    struct stat st;

    access_log_flush(&f->w);
    assert_int_equal(fstat(f->rt.access_log_fd, &st), 0);
    free(f->file);
    f->file = malloc((size_t)st.st_size + 1);
    f->file_len = (size_t)pread(f->rt.access_log_fd, f->file, (size_t)st.st_size, 0);
    assert_int_equal(f->file_len, (size_t)st.st_size);
    f->file[f->file_len] = '\0';
}

/* Line i of the file, checked: at most LINE_CAP bytes with its newline,
 * strict JSON, exactly the documented keys in order. Parsed, for values. */
static cJSON *line(struct fixture *f, size_t i, size_t *len)
{
    const char *p = f->file, *end = f->file + f->file_len;

    for (size_t k = 0; k < i; k++) {
        p = memchr(p, '\n', (size_t)(end - p));
        assert_non_null(p);
        p++;
    }
    const char *nl = memchr(p, '\n', (size_t)(end - p));
    assert_non_null(nl);
    *len = (size_t)(nl - p);
    assert_true(*len + 1 <= LINE_CAP);
    if (!json_strict_valid(p, *len))
        fail_msg("line %zu is not strict JSON: %.*s", i, (int)*len, p);
    cJSON *j = cJSON_ParseWithLength(p, *len);
    assert_non_null(j);
    const cJSON *it = j->child;
    for (size_t k = 0; k < sizeof(keys) / sizeof(keys[0]); k++, it = it->next) {
        assert_non_null(it);
        assert_string_equal(it->string, keys[k]);
    }
    assert_null(it);
    return j;
}

/* The request went to the upstream at this record's address. */
static void use_upstream(struct fixture *f, const char *record)
{
    f->s.rr = route_rec_parse("abc", record, strlen(record));
    assert_non_null(f->s.rr);
    f->s.upstream_used = true;
}

static const char *str_of(const cJSON *j, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, key);

    assert_true(cJSON_IsString(v));
    return v->valuestring;
}

static void test_plain_line(void **state)
{
    struct fixture *f = *state;
    size_t len;

    use_upstream(f, "{\"address\":\"127.0.0.1\"}");
    access_log_request(&f->s, 1204);
    read_log(f);
    cJSON_Delete(line(f, 0, &len));
    /* "time":"YYYY-MM-DDTHH:MM:SS.mmmZ", then the rest exactly */
    assert_memory_equal(f->file, "{\"time\":\"", 9);
    int y, mo, d, h, mi, s, ms;
    char z;
    assert_int_equal(
        sscanf(f->file + 9, "%4d-%2d-%2dT%2d:%2d:%2d.%3d%c", &y, &mo, &d, &h, &mi, &s, &ms, &z), 8);
    assert_int_equal(z, 'Z');
    assert_string_equal(
        f->file + 9 + 24,
        "\",\"client\":\"203.0.113.7\",\"method\":\"GET\","
        "\"host\":\"8000-abc.sandbox.test\",\"path\":\"/x?y=1\",\"protocol\":\"HTTP/1.1\","
        "\"status\":200,"
        "\"bytes\":437,\"duration_ms\":1.204,\"sandbox_id\":\"abc\",\"port\":8000,"
        "\"upstream\":\"127.0.0.1:8000\"}\n");
}

static void test_upstream_v6_and_none(void **state)
{
    struct fixture *f = *state;
    size_t len;

    use_upstream(f, "{\"address\":\"::1\"}");
    access_log_request(&f->s, 0);
    f->s.upstream_used = false; /* the proxy answered itself */
    f->s.rh = NULL;             /* no request line parsed */
    f->s.authority = f->s.path = NULL;
    access_log_request(&f->s, 999);
    read_log(f);
    cJSON *a = line(f, 0, &len), *b = line(f, 1, &len);
    assert_string_equal(str_of(a, "upstream"), "[::1]:8000");
    assert_true(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(b, "upstream")));
    assert_string_equal(str_of(b, "method"), "");
    assert_string_equal(str_of(b, "host"), "");
    assert_string_equal(str_of(b, "path"), "");
    assert_non_null(strstr(f->file, "\"duration_ms\":0.000,"));
    assert_non_null(strstr(f->file, "\"duration_ms\":0.999,"));
    cJSON_Delete(a);
    cJSON_Delete(b);
}

/* The protocol the client spoke, as the front end recorded it. */
static void test_protocol_named(void **state)
{
    struct fixture *f = *state;
    size_t len;

    f->s.http_version = 20;
    access_log_request(&f->s, 1);
    f->s.http_version = 10;
    access_log_request(&f->s, 1);
    f->s.http_version = 11;
    access_log_request(&f->s, 1);
    read_log(f);
    cJSON *a = line(f, 0, &len), *b = line(f, 1, &len), *c = line(f, 2, &len);
    assert_string_equal(str_of(a, "protocol"), "HTTP/2");
    assert_string_equal(str_of(b, "protocol"), "HTTP/1.0");
    assert_string_equal(str_of(c, "protocol"), "HTTP/1.1");
    cJSON_Delete(a);
    cJSON_Delete(b);
    cJSON_Delete(c);
}

/* Escapes and U+FFFD, exactly: what the client sent, made valid JSON. */
static void test_hostile_bytes_exact(void **state)
{
    struct fixture *f = *state;
    static const char host[] = "a\"b\\c\x01\x7f\xff\xc3(\xc3\xa9\xed\xa0\x80";
    static const char path[] = "/\"\\\t\x00z";
    size_t len;

    f->s.authority = host;
    f->s.authority_len = sizeof(host) - 1;
    f->s.path = path;
    f->s.path_len = sizeof(path) - 1; /* a NUL inside: written, not the end */
    access_log_request(&f->s, 5);
    read_log(f);
    cJSON_Delete(line(f, 0, &len));
    assert_non_null(strstr(f->file, "\"host\":\"a\\\"b\\\\c\\u0001\\u007f\\ufffd\\ufffd(\xc3\xa9"
                                    "\\ufffd\\ufffd\\ufffd\","));
    assert_non_null(strstr(f->file, "\"path\":\"/\\\"\\\\\\u0009\\u0000z\","));
}

/* The length of the JSON string value of key as written (escapes counted,
 * quotes not). */
static size_t written_len(const char *line_start, const char *key)
{
    char pat[32];
    snprintf(pat, sizeof(pat), "\"%s\":\"", key);
    const char *p = strstr(line_start, pat);
    assert_non_null(p);
    p += strlen(pat);
    const char *q = p;
    while (*q != '"')
        q += *q == '\\' ? 2 : 1;
    return (size_t)(q - p);
}

/* Long hostile fields in every combination: each cut within its budget,
 * the rest of the line intact, and 200 such lines in a row never run past
 * the worker buffer (ASan) and all come out whole. */
static void test_long_fields_cut_and_bounded(void **state)
{
    struct fixture *f = *state;
    static const char *const units[] = {
        "\"", "\\", "\x01", "\xff", "\xc3\xa9", "\xe2\x82\xac", "\xf0\x9f\x98\x80", "a"};
    enum { N = sizeof(units) / sizeof(units[0]), BIG = 20000, LINES = 200 };
    char *host = malloc(BIG), *path = malloc(BIG);
    size_t len;

    use_upstream(f, "{\"address\":\"127.0.0.1\"}");
    strcpy(f->s.target.sandbox_id,
           "zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz");
    strcpy(f->client.peer_ip, "ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255");
    f->s.status = -2147483647 - 1;
    f->s.bytes_out = UINT64_MAX;
    f->s.method = HTTP_MKCALENDAR;
    for (size_t i = 0; i < LINES; i++) {
        const char *hu = units[i % N], *pu = units[(i / N) % N];
        size_t hl = strlen(hu), pl = strlen(pu), k;
        /* the path starts odd so budgets fall at every alignment */
        for (k = 0; k + hl <= BIG; k += hl)
            memcpy(host + k, hu, hl);
        f->s.authority = host;
        f->s.authority_len = k - (i % 3);
        for (k = 0; k + pl <= BIG; k += pl)
            memcpy(path + k, pu, pl);
        f->s.path = path;
        f->s.path_len = k - (i % 5);
        access_log_request(&f->s, UINT64_MAX - i);
    }
    read_log(f);
    const char *p = f->file;
    for (size_t i = 0; i < LINES; i++) {
        cJSON *j = line(f, i, &len);
        size_t h = written_len(p, "host"), pa = written_len(p, "path");
        assert_true(h <= HOST_BUDGET && h + 6 > HOST_BUDGET);
        assert_true(pa <= PATH_BUDGET && pa + 6 > PATH_BUDGET);
        assert_string_equal(str_of(j, "method"), "MKCALENDAR");
        assert_string_equal(str_of(j, "upstream"), "127.0.0.1:8000");
        assert_string_equal(str_of(j, "sandbox_id"), f->s.target.sandbox_id);
        cJSON_Delete(j);
        p += len + 1;
    }
    assert_int_equal((size_t)(p - f->file), f->file_len);
    free(host);
    free(path);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_plain_line, setup, teardown),
        cmocka_unit_test_setup_teardown(test_upstream_v6_and_none, setup, teardown),
        cmocka_unit_test_setup_teardown(test_protocol_named, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hostile_bytes_exact, setup, teardown),
        cmocka_unit_test_setup_teardown(test_long_fields_cut_and_bounded, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
