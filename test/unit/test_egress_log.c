/* egress/log.c: the egress lines of the access log (README, "Egress
 * lines"), read back from the file (a memfd): keys in order, strict JSON,
 * within the line cap whatever a sandbox or the control plane writes. */
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

#include <arpa/inet.h>
#include <cjson/cJSON.h>
#include <cmocka.h>
#include <event2/event.h>

#include "../json_strict.h"
#include "access_log.h"
#include "exchange.h"
#include "flow.h"
#include "head.h"
#include "policy.h"
#include "runtime.h"
#include "worker.h"

static const char *const conn_keys[] = {
    "time",     "egress", "sandbox_id", "source",  "destination", "name",     "ech",
    "decision", "rule",   "connected",  "revoked", "bytes_out",   "bytes_in", "duration_ms"};
static const char *const http_keys[] = {"time",        "egress",  "sandbox_id", "source",
                                        "destination", "name",    "decision",   "rule",
                                        "connected",   "revoked", "method",     "host",
                                        "path",        "status",  "bytes",      "duration_ms"};
#define LINE_CAP 4096

struct fixture {
    struct worker w;
    struct runtime rt;
    struct egress eg;
    struct egress_flow f;
    struct egress_rec rec;
    struct head rh;
    struct client_info client;
    struct exchange ex;
    char *file;
    size_t file_len;
};

static struct sockaddr_storage addr(const char *ip, int port)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof(ss));
    if (strchr(ip, ':')) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
        a->sin6_family = AF_INET6;
        a->sin6_port = htons(port);
        inet_pton(AF_INET6, ip, &a->sin6_addr);
    } else {
        struct sockaddr_in *a = (struct sockaddr_in *)&ss;
        a->sin_family = AF_INET;
        a->sin_port = htons(port);
        inet_pton(AF_INET, ip, &a->sin_addr);
    }
    return ss;
}

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
    f->eg.w = &f->w;
    struct sockaddr_storage peer = addr("::ffff:198.18.0.2", 40000),
                            dst = addr("2001:db8::20", 443);
    egress_flow_init(&f->f, &f->eg, EGRESS_KIND_TLS, NULL, (struct sockaddr *)&peer,
                     (struct sockaddr *)&dst, sizeof(struct sockaddr_in6));
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    access_log_worker_free(&f->w);
    event_base_free(f->w.base);
    close(f->rt.access_log_fd);
    egress_policy_free(f->rec.p);
    free(f->file);
    free(f);
    return 0;
}

static void read_log(struct fixture *f)
{
    struct stat st;
    access_log_flush(&f->w);
    assert_int_equal(fstat(f->rt.access_log_fd, &st), 0);
    free(f->file);
    f->file = malloc((size_t)st.st_size + 1);
    f->file_len = (size_t)pread(f->rt.access_log_fd, f->file, (size_t)st.st_size, 0);
    f->file[f->file_len] = '\0';
}

/* The file's one line, checked against the keys; parsed. */
static cJSON *the_line(struct fixture *f, const char *const *keys, size_t nkeys)
{
    read_log(f);
    assert_true(f->file_len > 0 && f->file[f->file_len - 1] == '\n');
    assert_null(memchr(f->file, '\n', f->file_len - 1));
    assert_true(f->file_len <= LINE_CAP);
    if (!json_strict_valid(f->file, f->file_len - 1))
        fail_msg("not strict JSON: %s", f->file);
    cJSON *j = cJSON_ParseWithLength(f->file, f->file_len);
    assert_non_null(j);
    const cJSON *it = j->child;
    for (size_t k = 0; k < nkeys; k++, it = it->next) {
        assert_non_null(it);
        assert_string_equal(it->string, keys[k]);
    }
    assert_null(it);
    return j;
}

static const char *str_of(const cJSON *j, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static void test_conn_line(void **state)
{
    struct fixture *f = *state;
    const char *json = "{\"sandboxId\":\"sbx1\",\"allowOut\":[\"allowed.test\"]}";
    char err[200];
    assert_int_equal(egress_policy_parse(json, strlen(json), &f->rec.p, err, sizeof(err)), 0);
    f->f.rec = &f->rec;
    strcpy(f->f.name, "allowed.test");
    f->f.decided = f->f.allowed = true;
    strcpy(f->f.d.rule, "allowOut[0] allowed.test");
    strcpy(f->f.dial_text, "[2001:db8::10]:443");
    egress_log_conn(&f->f, 517, 4301, 41207);
    cJSON *j = the_line(f, conn_keys, sizeof(conn_keys) / sizeof(conn_keys[0]));
    assert_string_equal(str_of(j, "egress"), "tls");
    assert_string_equal(str_of(j, "sandbox_id"), "sbx1");
    assert_string_equal(str_of(j, "source"), "198.18.0.2"); /* mapped: IPv4 */
    assert_string_equal(str_of(j, "destination"), "[2001:db8::20]:443");
    assert_string_equal(str_of(j, "decision"), "allow");
    assert_string_equal(str_of(j, "connected"), "[2001:db8::10]:443");
    assert_true(cJSON_IsNull(cJSON_GetObjectItem(j, "revoked")));
    assert_true(cJSON_IsFalse(cJSON_GetObjectItem(j, "ech")));
    assert_int_equal(cJSON_GetObjectItem(j, "bytes_out")->valuedouble, 517);
    assert_memory_equal(strstr(f->file, "\"duration_ms\":"), "\"duration_ms\":41.207}", 21);
    f->f.rec = NULL;
    cJSON_Delete(j);
}

/* Undecided (the client left while peeking), TCP: no "ech", nulls. */
static void test_undecided_tcp(void **state)
{
    struct fixture *f = *state;
    f->f.kind = EGRESS_KIND_TCP;
    static const char *const keys[] = {
        "time", "egress",    "sandbox_id", "source",    "destination", "name",       "decision",
        "rule", "connected", "revoked",    "bytes_out", "bytes_in",    "duration_ms"};
    egress_log_conn(&f->f, 0, 0, 5);
    cJSON *j = the_line(f, keys, sizeof(keys) / sizeof(keys[0]));
    for (const char *const *k = (const char *const[]){"sandbox_id", "name", "decision", "rule",
                                                      "connected", "revoked", NULL};
         *k; k++)
        assert_true(cJSON_IsNull(cJSON_GetObjectItem(j, *k)));
    cJSON_Delete(j);
}

/* Everything at its longest and ugliest: a control plane's sandboxId of
 * quotes and control bytes, a 253-byte name, rules at their cap, a Host
 * and a path of 16 KiB of bytes that are not UTF-8: one strict JSON line
 * within the cap. */
static void test_hostile_request_line(void **state)
{
    struct fixture *f = *state;
    size_t n = 4000;
    char *json = malloc(n + 64), *big = malloc(16384);
    int o = sprintf(json, "{\"sandboxId\":\"");
    for (size_t i = 0; i < 1000; i++)
        o += sprintf(json + o, i % 2 ? "\\\"" : "\\u0001");
    sprintf(json + o, "\"}");
    char err[200];
    assert_int_equal(egress_policy_parse(json, strlen(json), &f->rec.p, err, sizeof(err)), 0);
    f->f.rec = &f->rec;
    f->f.kind = EGRESS_KIND_HTTP;
    memset(f->f.name, 'a', EGRESS_NAME_MAX);
    f->f.name[EGRESS_NAME_MAX] = '\0';
    f->f.decided = true;
    memset(f->f.d.rule, '"', sizeof(f->f.d.rule) - 1);
    memset(f->f.revoked, '\\', sizeof(f->f.revoked) - 1);
    for (size_t i = 0; i < 16384; i++)
        big[i] = (char)(0x80 + i % 0x7f);
    f->ex.w = &f->w;
    f->ex.client = &f->client;
    f->rh.url_len = 1;
    f->ex.rh = &f->rh;
    f->ex.method = HTTP_POST;
    f->ex.authority = big;
    f->ex.authority_len = 16384;
    f->ex.path = big;
    f->ex.path_len = 16384;
    f->ex.status = -2147483647 - 1;
    f->ex.bytes_out = UINT64_MAX;
    egress_log_request(&f->f, &f->ex, UINT64_MAX);
    cJSON *j = the_line(f, http_keys, sizeof(http_keys) / sizeof(http_keys[0]));
    assert_string_equal(str_of(j, "method"), "POST");
    assert_string_equal(str_of(j, "decision"), "deny");
    cJSON_Delete(j);
    f->f.rec = NULL;
    free(json);
    free(big);
}

/* A request that never reached the route (400 for a malformed head): no
 * flow; source and destination from the connection. */
static void test_request_without_flow(void **state)
{
    struct fixture *f = *state;
    strcpy(f->client.peer_ip, "198.18.0.2");
    struct sockaddr_storage dst = addr("192.0.2.10", 80);
    memcpy(&f->client.dst, &dst, sizeof(struct sockaddr_in));
    f->client.dst_len = sizeof(struct sockaddr_in);
    f->ex.w = &f->w;
    f->ex.client = &f->client;
    f->ex.status = 400;
    egress_log_request(NULL, &f->ex, 12);
    cJSON *j = the_line(f, http_keys, sizeof(http_keys) / sizeof(http_keys[0]));
    assert_string_equal(str_of(j, "source"), "198.18.0.2");
    assert_string_equal(str_of(j, "destination"), "192.0.2.10:80");
    assert_true(cJSON_IsNull(cJSON_GetObjectItem(j, "method")));
    assert_true(cJSON_IsNull(cJSON_GetObjectItem(j, "host")));
    cJSON_Delete(j);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_conn_line, setup, teardown),
        cmocka_unit_test_setup_teardown(test_undecided_tcp, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hostile_request_line, setup, teardown),
        cmocka_unit_test_setup_teardown(test_request_without_flow, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
