/* The in-process proxy harness the request-path fuzzers share (fuzz_request_path
 * for HTTP/1.1, fuzz_h2 for HTTP/2): one worker and its event loop, every
 * proxy source linked in but core/main.c and the Redis cache
 * (redis/redis_link.c, redis/cache.c, ingress/lookup.c), the lookup.h API
 * from a static table of real records, the few redis_link.h calls the
 * worker and /readyz make (the worker here has no link), an upstream stub that checks with llhttp
 * (strict) every byte the proxy forwards, two self-signed certificates for
 * the TLS listeners, an access log on a memfd checked line by line, the
 * client's end of a socketpair (plain or TLS), the loop helpers (a turn,
 * settling, the busy-loop check) and the end-of-input teardown with its
 * invariants. See proxy_harness.h for what each fuzzer sets. */
#include "proxy_harness.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "access_log.h"
#include "conn_limit.h"
#include "egress.h"
#include "ev.h"
#include "list.h"
#include "log.h"
#include "redis_link.h"
#include "lookup.h"
#include "pool.h"
#include "record.h"
#include "session.h"
#include "timeutil.h"
#include "tls.h"
#include "websocket.h"

#include "../json_strict.h"

struct harness_hooks harness_hooks;
int harness_stub_port;
static const char *harness_name = "fuzz";

void harness_die(const char *what)
{
    fprintf(stderr, "%s: %s\n", harness_name, what);
    abort();
}
#define die harness_die

struct lookup {
    struct worker *w;
    struct list_node pending; /* async answers, newest first */
    struct event *answer_ev;
};

struct rec_row {
    const char *id;
    const char *json; /* NULL: LOOKUP_NOT_FOUND */
    struct route_rec *rr;
};

static struct rec_row rows[] = {
    {"pub", "{\"address\":\"127.0.0.1\"}", NULL},
    {"priv",
     "{\"address\":\"127.0.0.1\",\"allowPublicTraffic\":false,"
     "\"trafficAccessToken\":\"tok\",\"maskRequestHost\":\"localhost:${PORT}\"}",
     NULL},
    {"lim", "{\"address\":\"127.0.0.1\",\"maxConnections\":1}", NULL},
    {"exec",
     "{\"address\":\"127.0.0.1\",\"executionId\":\"ex|1\",\"allowPublicTraffic\":false,"
     "\"trafficAccessToken\":\"secret\"}",
     NULL},
    {"v6", "{\"address\":\"::1\"}", NULL},
    {"broken", "{\"address\":\"not-an-ip\"}", NULL},
    {NULL, NULL, NULL}, /* not found */
};
#define ROW_NOT_FOUND (sizeof(rows) / sizeof(rows[0]) - 1)

static struct route_rec *rr_build(const char *id, const char *json)
{
    struct route_rec *rr =
        json ? route_rec_parse(id, json, strlen(json)) : route_rec_new(LOOKUP_NOT_FOUND);
    if (!rr)
        die("out of memory");
    return rr;
}

/* 0 found a row (status, rr set), -1 unavailable. */
static int resolve(const char *id, int *status, struct route_rec **rr)
{
    if (strcmp(id, "down") == 0) {
        *status = LOOKUP_UNAVAILABLE;
        *rr = NULL;
        return -1;
    }
    size_t i;
    for (i = 0; rows[i].id; i++)
        if (strcmp(rows[i].id, id) == 0)
            break;
    *rr = route_rec_ref(rows[i].rr);
    *status = (*rr)->status;
    return 0;
}

/* The next loop turn: every pending waiter gets its answer. */
static void answer_cb(evutil_socket_t fd, short what, void *arg)
{
    struct lookup *lk = arg;
    struct list_node list;
    list_init(&list);
    list_splice_back(&list, &lk->pending);
    while (!list_empty(&list)) {
        struct lookup_waiter *wt = container_of(list_first(&list), struct lookup_waiter, cw.link);
        lookup_cancel(wt);
        struct exchange *s = container_of(wt, struct exchange, waiter);
        int status;
        struct route_rec *rr;
        const char *rest = s->target.sandbox_id + 4; /* after "slow" */
        resolve(*rest ? rest : "pub", &status, &rr);
        wt->cb(wt, status, rr);
    }
}

struct lookup *lookup_new(struct worker *w)
{
    struct lookup *lk = calloc(1, sizeof(*lk));
    if (!lk)
        die("out of memory");
    lk->w = w;
    list_init(&lk->pending);
    lk->answer_ev = event_new(w->base, -1, 0, answer_cb, lk);
    return lk;
}

void lookup_free(struct lookup *lk)
{
    if (!lk)
        return;
    event_free(lk->answer_ev);
    free(lk);
}

int lookup_get(struct lookup *lk, const char *id, struct lookup_waiter *wt, int *status,
               struct route_rec **rr)
{
    if (strncmp(id, "slow", 4) == 0) {
        list_insert_front(&lk->pending, &wt->cw.link);
        event_active(lk->answer_ev, EV_TIMEOUT, 0);
        return 1;
    }
    resolve(id, status, rr);
    return 0;
}

void lookup_config_changed(struct lookup *lk, const struct config *old)
{
}

/* ---- the link.h calls of worker.c and admin.c (W.redis stays NULL) ---- */

struct redis_link *redis_link_new(struct worker *w)
{
    die("redis_link_new: the harness runs no Redis link");
    return NULL;
}

void redis_link_free(struct redis_link *l)
{
}

void redis_link_config_changed(struct redis_link *l, const struct config *old)
{
}

void redis_link_topology_changed(struct redis_link *l)
{
}

/* ---- the limits sync (global scope is never on here) ---- */

struct limits_sync *limits_sync_new(struct worker *w)
{
    harness_die("limits_sync_new: the harness runs no Redis link");
    return NULL;
}

void limits_sync_free(struct limits_sync *s)
{
}

bool redis_link_connected(const struct redis_link *l)
{
    return true;
}

/* ---- per-input state ---- */

struct worker W;
struct runtime *rt_normal, *rt_short;
static struct conn_limit *lim_counter;

const uint8_t *raw_resp;
size_t raw_resp_len;
uint8_t up_mode;
unsigned up_requests; /* complete requests the stub parsed */
unsigned activity;    /* bumped whenever bytes move */
int client_fd = -1;
SSL *client_ssl; /* on TLS listeners, after the handshake */
static SSL_CTX *client_ctx;
static struct event *spin_ev; /* see check_not_spinning() */
static bool spin_fired;
static void spin_cb(evutil_socket_t fd, short what, void *arg);
bool trace; /* <NAME>_TRACE=1: what the client gets, on stderr */

/* ---- the upstream stub ---- */

struct stub_conn {
    struct list_node link;
    struct bufferevent *bev;
    llhttp_t p;
    unsigned reqno;
    bool answered; /* early answer given for the current request */
    bool echo;     /* after a 101 */
    bool discard;  /* stopped parsing */
    bool close_when_flushed;
    bool close_now;
    /* the request's Sec-WebSocket-Key, for the 101's Accept */
    bool in_key;
    char ws_key[64];
    size_t ws_key_len;
};

static struct list_node stub_conns = LIST_ANCHOR(stub_conns);
static int stub_fd = -1;
static struct event *stub_ev;
static llhttp_settings_t stub_settings;

static void stub_free(struct stub_conn *c)
{
    list_unlink(&c->link);
    if (up_mode & 0x80) {
        struct linger lg = {1, 0};
        setsockopt(bufferevent_getfd(c->bev), SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    }
    bufferevent_free(c->bev);
    free(c);
}

static void stub_write(struct stub_conn *c, const char *s, size_t n)
{
    bufferevent_write(c->bev, s, n);
}
#define STUB_LIT(c, lit) stub_write(c, lit, sizeof(lit) - 1)

/* One response, by kind; a HEAD gets no body. */
static void respond(struct stub_conn *c)
{
    int kind = up_mode & 7;
    if (up_mode & 0x20)
        kind = (kind + (int)c->reqno) & 7;
    bool head = c->p.method == HTTP_HEAD;
    switch (kind) {
    case 0:
        STUB_LIT(c, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Up: a\r\n\r\n");
        if (!head)
            STUB_LIT(c, "hello");
        break;
    case 1:
        STUB_LIT(c, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
        if (!head)
            STUB_LIT(c, "5\r\nhello\r\n3;ext=1\r\nabc\r\n0\r\nX-Trailer: t\r\n\r\n");
        break;
    case 2:
        STUB_LIT(c, "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n");
        if (!head)
            STUB_LIT(c, "until-eof");
        c->close_when_flushed = true;
        break;
    case 3:
        STUB_LIT(c, "HTTP/1.1 204 No Content\r\nConnection: keep-alive, X-Up\r\nX-Up: b\r\n\r\n");
        break;
    case 4:
        STUB_LIT(c, "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n");
        if (!head)
            STUB_LIT(c, "ok");
        break;
    case 5:
        STUB_LIT(c, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n");
        if (!head)
            STUB_LIT(c, "partial");
        c->close_when_flushed = true;
        break;
    case 6:
        c->close_now = true;
        break;
    default:
        if (raw_resp_len)
            stub_write(c, (const char *)raw_resp, raw_resp_len);
        else
            STUB_LIT(c, "HTTP/1.0 304 Not Modified\r\nETag: \"x\"\r\n\r\n");
        break;
    }
    if (up_mode & 0x40)
        c->close_when_flushed = true;
    c->reqno++;
}

/* The Sec-WebSocket-Key (the HTTP/2 front end draws it for an extended
 * CONNECT): captured so the 101 proves it read it, as a real server's does. */
static int stub_on_header_field(llhttp_t *p, const char *at, size_t len)
{
    struct stub_conn *c = p->data;
    c->in_key = len == 17 && strncasecmp(at, "sec-websocket-key", 17) == 0;
    return 0;
}

static int stub_on_header_value(llhttp_t *p, const char *at, size_t len)
{
    struct stub_conn *c = p->data;
    if (c->in_key) {
        c->ws_key_len = len < sizeof(c->ws_key) ? len : sizeof(c->ws_key);
        memcpy(c->ws_key, at, c->ws_key_len);
    }
    return 0;
}

static int stub_on_headers_complete(llhttp_t *p)
{
    struct stub_conn *c = p->data;
    c->answered = false;
    if ((up_mode & 0x08) && !p->upgrade) {
        respond(c);
        c->answered = true;
    }
    return 0;
}

static int stub_on_message_complete(llhttp_t *p)
{
    struct stub_conn *c = p->data;
    up_requests++;
    if (!p->upgrade && !c->answered)
        respond(c);
    return 0;
}

static void stub_upgrade(struct stub_conn *c)
{
    if (up_mode & 0x10) {
        STUB_LIT(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nno");
        c->discard = true;
        return;
    }
    if ((up_mode & 7) == 7 && raw_resp_len) {
        stub_write(c, (const char *)raw_resp, raw_resp_len);
    } else {
        /* The key's Accept (kind 6: another key's, which the proxy must
         * refuse for an HTTP/2 client; an HTTP/1.1 client checks itself). */
        char accept[WS_ACCEPT_LEN + 1];
        ws_accept_for(c->ws_key, c->ws_key_len - ((up_mode & 7) == 6 && c->ws_key_len), accept);
        STUB_LIT(c, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                    "Connection: Upgrade\r\nSec-WebSocket-Accept: ");
        stub_write(c, accept, strlen(accept));
        STUB_LIT(c, "\r\n\r\n");
    }
    c->ws_key_len = 0;
    c->echo = true;
}

static void stub_read_cb(struct bufferevent *bev, void *arg)
{
    struct stub_conn *c = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    activity++;
    while (evbuffer_get_length(in) > 0 && !c->close_now) {
        if (c->echo) {
            bufferevent_write_buffer(bev, in);
            break;
        }
        if (c->discard || c->close_when_flushed) {
            evbuffer_drain(in, evbuffer_get_length(in));
            break;
        }
        struct evbuffer_iovec v;
        if (evbuffer_peek(in, -1, NULL, &v, 1) < 1)
            break;
        llhttp_errno_t err = llhttp_execute(&c->p, v.iov_base, v.iov_len);
        if (err == HPE_OK) {
            evbuffer_drain(in, v.iov_len);
            continue;
        }
        size_t used = (size_t)(llhttp_get_error_pos(&c->p) - (const char *)v.iov_base);
        if (err == HPE_PAUSED_UPGRADE) {
            evbuffer_drain(in, used);
            stub_upgrade(c);
            continue;
        }
        fprintf(stderr, "upstream got bytes llhttp rejects: %s (%s) at offset %zu of:\n",
                llhttp_errno_name(err), llhttp_get_error_reason(&c->p), used);
        fwrite(v.iov_base, 1, v.iov_len, stderr);
        fputc('\n', stderr);
        die("the proxy forwarded an invalid request stream");
    }
    if (c->close_now)
        stub_free(c);
}

static void stub_write_cb(struct bufferevent *bev, void *arg)
{
    struct stub_conn *c = arg;
    if (c->close_when_flushed && evbuffer_get_length(bufferevent_get_output(bev)) == 0)
        stub_free(c);
}

static void stub_event_cb(struct bufferevent *bev, short what, void *arg)
{
    activity++;
    stub_free(arg);
}

static void stub_accept_cb(evutil_socket_t fd, short what, void *arg)
{
    for (;;) {
        int cfd = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (cfd == -1)
            return;
        activity++;
        struct stub_conn *c = calloc(1, sizeof(*c));
        if (!c)
            die("out of memory");
        c->bev = bufferevent_socket_new(W.base, cfd, BEV_OPT_CLOSE_ON_FREE);
        if (!c->bev)
            die("bufferevent_socket_new");
        llhttp_init(&c->p, HTTP_REQUEST, &stub_settings);
        c->p.data = c;
        list_insert_front(&stub_conns, &c->link);
        bufferevent_setcb(c->bev, stub_read_cb, stub_write_cb, stub_event_cb, c);
        bufferevent_enable(c->bev, EV_READ | EV_WRITE);
    }
}

static int alog_fd = -1; /* the access log: memfd, O_APPEND */

/* Two self-signed certificates for the TLS listeners, made at start in a
 * temporary directory (removed at exit). */
static const char *const cert_names[2] = {"*.sandbox.test", "*.e2b.local"};
static char cert_dir[80];
static char cert_file[2][96], key_file[2][96];

static void write_pem(const char *path, X509 *x, EVP_PKEY *key)
{
    FILE *f = fopen(path, "w");
    if (!f ||
        (x ? PEM_write_X509(f, x) : PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL)) != 1)
        die("writing a PEM file");
    fclose(f);
}

static void make_cert(const char *name, const char *cert_path, const char *key_path)
{
    EVP_PKEY *key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    X509 *x = X509_new();
    char san[128];
    X509V3_CTX v3;
    if (!key || !x)
        die("certificate: out of memory");
    ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
    X509_gmtime_adj(X509_getm_notBefore(x), -3600);
    X509_gmtime_adj(X509_getm_notAfter(x), 86400L * 365);
    X509_set_pubkey(x, key);
    X509_NAME *subject = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(subject, "CN", MBSTRING_ASC, (const unsigned char *)name, -1, -1, 0);
    X509_set_issuer_name(x, subject);
    snprintf(san, sizeof(san), "DNS:%s", name);
    X509V3_set_ctx_nodb(&v3);
    X509V3_set_ctx(&v3, x, x, NULL, NULL, 0);
    X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, &v3, NID_subject_alt_name, san);
    if (!ext || X509_add_ext(x, ext, -1) != 1 || X509_sign(x, key, EVP_sha256()) == 0)
        die("certificate: cannot sign");
    X509_EXTENSION_free(ext);
    write_pem(cert_path, x, NULL);
    write_pem(key_path, NULL, key);
    X509_free(x);
    EVP_PKEY_free(key);
}

static void make_certs(void)
{
    snprintf(cert_dir, sizeof(cert_dir), "/tmp/%s.XXXXXX", harness_name);
    if (!mkdtemp(cert_dir))
        die("mkdtemp");
    for (int i = 0; i < 2; i++) {
        snprintf(cert_file[i], sizeof(cert_file[i]), "%s/cert%d.pem", cert_dir, i);
        snprintf(key_file[i], sizeof(key_file[i]), "%s/key%d.pem", cert_dir, i);
        make_cert(cert_names[i], cert_file[i], key_file[i]);
    }
    client_ctx = SSL_CTX_new(TLS_client_method());
    if (!client_ctx)
        die("SSL_CTX_new");
    SSL_CTX_set_verify(client_ctx, SSL_VERIFY_NONE, NULL);
}

static void remove_certs(void)
{
    for (int i = 0; i < 2; i++) {
        unlink(cert_file[i]);
        unlink(key_file[i]);
    }
    rmdir(cert_dir);
    SSL_CTX_free(client_ctx);
}

/* The listeners: 0 plain, 1 PROXY protocol, 2 TLS, 3 PROXY then TLS;
 * HTTP/2 on them or not; `extra` adds members (",\"http2\":{...}"). */
static const char *config_json(bool short_timeouts, bool http2, const char *extra)
{
    static char buf[4096];
    char tls[512];
    snprintf(tls, sizeof(tls),
             "\"tls\":{\"certificates\":[{\"cert\":\"%s\",\"key\":\"%s\"},"
             "{\"cert\":\"%s\",\"key\":\"%s\"}]}",
             cert_file[0], key_file[0], cert_file[1], key_file[1]);
    const char *h2 = http2 ? "true" : "false";
    int t = short_timeouts ? 2 : 10000;
    int head = short_timeouts ? 2048 : 4096, line = short_timeouts ? 512 : 3600;
    snprintf(buf, sizeof(buf),
             "{\"workers\":1,\"domains\":[\"sandbox.test\",\"e2b.local\"],"
             "\"listeners\":[{\"address\":\"127.0.0.1:1\",\"http2\":%s},"
             "{\"address\":\"127.0.0.1:2\",\"proxy_protocol\":true,\"http2\":%s},"
             "{\"address\":\"127.0.0.1:3\",\"http2\":%s,%s},"
             "{\"address\":\"127.0.0.1:4\",\"proxy_protocol\":true,\"http2\":%s,%s}],"
             "\"admin\":null,"
             "\"redis\":{\"url\":\"redis://127.0.0.1:1/0\",\"timeout_ms\":100},"
             "\"policy\":{\"token_exempt_ports\":[49983,%d],"
             "\"trusted_proxies\":[\"127.0.0.0/8\",\"::1\"]},"
             "\"client\":{\"header_timeout_ms\":%d,\"keepalive_timeout_ms\":%d,"
             "\"body_timeout_ms\":%d,\"max_head_bytes\":%d,\"max_headers\":20,"
             "\"max_request_line\":%d,\"websocket_idle_timeout_ms\":%d},"
             "\"upstream\":{\"connect_timeout_ms\":%d,\"connect_retries\":2,"
             "\"retry_backoff_ms\":1,\"response_timeout_ms\":%d,\"idle_timeout_ms\":%d,"
             "\"pool_idle_timeout_ms\":%d,\"pool_max_idle\":2},"
             "\"log\":{\"level\":\"error\"}%s}",
             h2, h2, h2, tls, h2, tls, harness_stub_port + 1, t, t, t, head, line, t, t, t, t, t,
             extra ? extra : "");
    return buf;
}

static bool http2_on;

struct runtime *harness_runtime(bool short_timeouts, const char *extra, unsigned gen)
{
    struct runtime *rt = calloc(1, sizeof(*rt));
    char err[256];
    const char *j = config_json(short_timeouts, http2_on, extra);
    if (!rt || config_parse(j, strlen(j), &rt->cfg, err, sizeof(err)) == -1) {
        fprintf(stderr, "config: %s\n", err);
        die("cannot build the configuration");
    }
    rt->generation = gen;
    for (size_t i = 0; i < rt->cfg.listener_count; i++)
        if (rt->cfg.listeners[i].tls &&
            !(rt->tls[i] = tls_ctx_new(&rt->cfg.listeners[i], i, err, sizeof(err)))) {
            fprintf(stderr, "tls: %s\n", err);
            die("cannot load the certificates");
        }
    /* Both generations append to the one memfd check_access_log() reads. */
    rt->access_log_fd = dup(alog_fd);
    if (rt->access_log_fd == -1)
        die("dup");
    return rt;
}

struct runtime *harness_rt_extra;

static void filler_init(void);

static void teardown_all(void)
{
    if (!W.base)
        return;
    access_log_worker_free(&W);
    lookup_free(W.lookup);
    W.lookup = NULL;
    while (!list_empty(&stub_conns))
        stub_free(container_of(list_first(&stub_conns), struct stub_conn, link));
    ev_free(stub_ev);
    ev_free(spin_ev);
    if (stub_fd != -1)
        close(stub_fd);
    worker_free(&W);
    memset(&W, 0, sizeof(W));
    runtime_free(rt_normal);
    runtime_free(rt_short);
    runtime_free(harness_rt_extra);
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++)
        route_rec_unref(rows[i].rr);
    limits_unref(lim_counter);
    remove_certs();
}

void harness_init(const char *name, const char *env_prefix, int stub_port, bool http2)
{
    char var[64];
    harness_name = name;
    harness_stub_port = stub_port;
    http2_on = http2;
    signal(SIGPIPE, SIG_IGN); /* as main.c does: a closed peer is EPIPE */
    snprintf(var, sizeof(var), "%s_LOG", env_prefix);
    const char *lvl = getenv(var);
    log_level_current = lvl ? atoi(lvl) : LOG_ERROR - 1; /* silent */
    snprintf(var, sizeof(var), "%s_TRACE", env_prefix);
    trace = getenv(var) != NULL;
    alog_fd = memfd_create("access.log", MFD_CLOEXEC);
    if (alog_fd == -1 || fcntl(alog_fd, F_SETFL, O_APPEND) == -1)
        die("memfd_create");
    make_certs();
    rt_normal = harness_runtime(false, NULL, 1);
    rt_short = harness_runtime(true, NULL, 2);
    int fds[CONFIG_MAX_LISTENERS];
    for (size_t i = 0; i < CONFIG_MAX_LISTENERS; i++)
        fds[i] = -1;
    if (worker_init(&W, 0, rt_normal, fds) == -1)
        die("worker_init");
    W.lookup = lookup_new(&W);
    if (!W.lookup || access_log_worker_init(&W) == -1)
        die("lookup_new / access_log_worker_init");
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++)
        rows[i].rr = rr_build(rows[i].id, rows[i].json);
    lim_counter = limits_ref("lim");
    filler_init();

    llhttp_settings_init(&stub_settings);
    stub_settings.on_header_field = stub_on_header_field;
    stub_settings.on_header_value = stub_on_header_value;
    stub_settings.on_headers_complete = stub_on_headers_complete;
    stub_settings.on_message_complete = stub_on_message_complete;

    stub_fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(stub_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons((uint16_t)stub_port)};
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(stub_fd, (struct sockaddr *)&sin, sizeof(sin)) == -1 || listen(stub_fd, 64) == -1) {
        fprintf(stderr,
                "%s: cannot listen on 127.0.0.1:%d: %s (the seeds' "
                "Host headers name this port; is another %s running?)\n",
                name, stub_port, strerror(errno), name);
        exit(1);
    }
    spin_ev = evtimer_new(W.base, spin_cb, NULL);
    stub_ev = event_new(W.base, stub_fd, EV_READ | EV_PERSIST, stub_accept_cb, NULL);
    event_add(stub_ev, NULL);
    atexit(teardown_all);
}

/* ---- the access log ---- */

static void bad_line(const char *why, const char *line, size_t len)
{
    fprintf(stderr, "access log line (%zu bytes) %s:\n", len, why);
    fwrite(line, 1, len, stderr);
    fputc('\n', stderr);
    die("the access log wrote a line that is not valid JSON (or too long)");
}

/* Filler lines (valid, plain): an exchange with a path of up to 3000 'f'. */
#define ACCESS_LOG_BUF_BYTES (64 * 1024) /* README, "Access log" */
static struct exchange filler;
static struct client_info filler_client;
static char filler_path[3000];
static size_t filler_base; /* the filler line with an empty path */

void fill_access_log(size_t leave)
{
    size_t left = ACCESS_LOG_BUF_BYTES - leave;
    while (left >= filler_base) {
        size_t p = left - filler_base;
        filler.path_len = p < sizeof(filler_path) ? p : sizeof(filler_path);
        access_log_request(&filler, 0);
        left -= filler_base + filler.path_len;
    }
}

static void filler_init(void)
{
    struct stat st;
    memset(filler_path, 'f', sizeof(filler_path));
    filler.w = &W;
    filler.client = &filler_client;
    strcpy(filler_client.peer_ip, "192.0.2.1");
    filler.path = filler_path;
    filler.status = 200;
    access_log_request(&filler, 0); /* path_len 0 */
    access_log_flush(&W);
    if (fstat(alog_fd, &st) == -1 || st.st_size == 0 || ftruncate(alog_fd, 0) == -1)
        die("measuring the filler line");
    filler_base = (size_t)st.st_size;
}

/* FNV-1a: where the input's lines start in the log buffer. */
size_t fill_leave(const uint8_t *d, size_t n)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++)
        h = (h ^ d[i]) * 16777619u;
    return h % 8192;
}

/* Every line written since the last call (the input's whole exchange: its
 * sessions are gone by now), then the file is emptied for the next. */
static void check_access_log(void)
{
    struct stat st;
    access_log_flush(&W);
    if (fstat(alog_fd, &st) == -1)
        die("fstat");
    if (st.st_size == 0)
        return;
    size_t size = (size_t)st.st_size;
    char *buf = malloc(size);
    if (!buf || pread(alog_fd, buf, size, 0) != (ssize_t)size)
        die("reading the access log");
    for (size_t off = 0; off < size;) {
        const char *line = buf + off, *nl = memchr(line, '\n', size - off);
        size_t len = nl ? (size_t)(nl - line) : size - off;
        if (!nl)
            bad_line("without a newline", line, len);
        if (len + 1 > ACCESS_LOG_LINE_CAP)
            bad_line("over the line cap", line, len);
        if (!json_strict_valid(line, len))
            bad_line("not strict JSON", line, len);
        cJSON *j = cJSON_ParseWithLength(line, len);
        if (!cJSON_IsObject(j) || !cJSON_IsString(cJSON_GetObjectItemCaseSensitive(j, "path")))
            bad_line("not an object with a path", line, len);
        cJSON_Delete(j);
        off += len + 1;
    }
    free(buf);
    if (ftruncate(alog_fd, 0) == -1)
        die("ftruncate");
}

/* The client's end: read or write, through TLS when it is on. The client's
 * OpenSSL errors are cleared at once: the thread's error queue is the
 * proxy's too (core/stream.c reads it after each SSL call). */
ssize_t client_io(bool wr, void *buf, size_t n, bool *again)
{
    if (!client_ssl) {
        ssize_t k = wr ? write(client_fd, buf, n) : read(client_fd, buf, n);
        *again = k == -1 && errno == EAGAIN;
        return k;
    }
    int len = n > INT_MAX ? INT_MAX : (int)n;
    int k = wr ? SSL_write(client_ssl, buf, len) : SSL_read(client_ssl, buf, len);
    int e = k > 0 ? SSL_ERROR_NONE : SSL_get_error(client_ssl, k);
    ERR_clear_error();
    *again = e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE;
    return k > 0 ? k : -1;
}

void close_client(void)
{
    if (client_ssl) {
        SSL_free(client_ssl);
        client_ssl = NULL;
    }
    if (client_fd != -1)
        close(client_fd);
    client_fd = -1;
}

void end_client_output(void)
{
    if (client_fd == -1)
        return;
    if (client_ssl) {
        SSL_shutdown(client_ssl); /* close_notify */
        ERR_clear_error();
    }
    shutdown(client_fd, SHUT_WR);
}

void read_client(void)
{
    char buf[8192];
    bool again;
    if (client_fd == -1)
        return;
    for (;;) {
        ssize_t n = client_io(false, buf, sizeof(buf), &again);
        if (n <= 0)
            return;
        activity++;
        if (trace)
            fwrite(buf, 1, (size_t)n, stderr);
        harness_hooks.client_bytes(buf, (size_t)n);
    }
}

/* One turn of the loop: poll once, run what is ready. (EVLOOP_NONBLOCK
 * alone keeps turning while anything is active, forever if something is
 * always ready.) */
void turn(void)
{
    event_base_loop(W.base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
}

static void spin_cb(evutil_socket_t fd, short what, void *arg)
{
    spin_fired = true;
    event_base_loopbreak(W.base);
}

/* Once the harness sees nothing move: the loop must run dry. A callback
 * that is ready again on every turn without consuming anything is a busy
 * loop (a level-triggered read that never reads, ...). */
static void check_not_spinning(void)
{
    static const int window_ms[] = {300, 1000, 3000};
    for (size_t i = 0; i < sizeof(window_ms) / sizeof(window_ms[0]); i++) {
        if (W.session_count == 0)
            return;
        struct timeval tv = tv_from_ms(window_ms[i]);
        spin_fired = false;
        evtimer_add(spin_ev, &tv);
        event_base_loop(W.base, EVLOOP_NONBLOCK); /* returns when nothing is active */
        evtimer_del(spin_ev);
        if (!spin_fired)
            return;
    }
    struct list_node *n, *next;
    list_for_each_safe(n, next, &W.sessions)
        fprintf(stderr, "session in state %d\n", container_of(n, struct session, link)->state);
    event_base_dump_events(W.base, stderr);
    die("the event loop never goes idle: a callback spins (busy loop)");
}

/* A session waiting out a connect retry backoff (1 ms, 2 ms): worth a
 * short sleep, or the refused-connection path never ends. */
static bool backing_off(void)
{
    if (harness_hooks.backing_off && harness_hooks.backing_off())
        return true;
    struct list_node *n, *next;
    list_for_each_safe(n, next, &W.sessions)
    {
        struct session *s = container_of(n, struct session, link);
        if (s->state == SS_EXCHANGE && s->ex.state == EX_CONNECTING && !s->ex.up)
            return true;
    }
    return false;
}

/* Runs the loop until nothing moved for a few turns (at most `max`). */
void settle(int max, bool short_timeouts)
{
    int quiet = 0;
    for (int i = 0; i < max && quiet < 4; i++) {
        unsigned before = activity;
        if (quiet == 3 && (short_timeouts || backing_off())) {
            /* let the 2 ms timers (or the backoff) fire */
            struct timeval tv = {0, 5000};
            event_base_loopexit(W.base, &tv);
            event_base_dispatch(W.base);
        } else {
            turn();
        }
        read_client();
        quiet = activity == before ? quiet + 1 : 0;
    }
    check_not_spinning();
}

void write_client(const uint8_t *d, size_t n, bool short_timeouts)
{
    bool again;
    while (n > 0 && client_fd != -1) {
        ssize_t k = client_io(true, (void *)d, n, &again);
        if (k > 0) {
            d += k;
            n -= (size_t)k;
            activity++;
        } else if (again) {
            turn();
            read_client();
        } else {
            return; /* the proxy closed */
        }
    }
    settle(50, short_timeouts);
}

/* A TLS client on client_fd, handshake done with loop turns in between.
 * On failure (the proxy closed, or refused the hello) the client stays
 * plain-less: writes fail and the input goes on to teardown. */
void start_tls_client(uint8_t c5, const unsigned char *alpn, unsigned alpn_len)
{
    static const char *const sni[] = {NULL, "x.sandbox.test", "x.e2b.local", "other.example"};
    client_ssl = SSL_new(client_ctx);
    if (!client_ssl || SSL_set_fd(client_ssl, client_fd) != 1)
        die("SSL_new");
    SSL_set_connect_state(client_ssl);
    if (sni[(c5 >> 1) & 3])
        SSL_set_tlsext_host_name(client_ssl, sni[(c5 >> 1) & 3]);
    if (c5 & 8)
        SSL_set_max_proto_version(client_ssl, TLS1_2_VERSION);
    if (alpn)
        SSL_set_alpn_protos(client_ssl, alpn, alpn_len);
    for (int i = 0; i < 200; i++) {
        int r = SSL_do_handshake(client_ssl);
        int e = r == 1 ? SSL_ERROR_NONE : SSL_get_error(client_ssl, r);
        ERR_clear_error();
        if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE)
            return;
        activity++;
        turn();
    }
}

void make_peer(uint8_t kind, struct sockaddr_storage *ss, int *len)
{
    memset(ss, 0, sizeof(*ss));
    if (kind < 2) {
        struct sockaddr_in *a = (struct sockaddr_in *)ss;
        a->sin_family = AF_INET;
        a->sin_port = htons(40000);
        a->sin_addr.s_addr = kind == 0 ? htonl(INADDR_LOOPBACK) : htonl(0x0a010203);
        *len = sizeof(*a);
    } else {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)ss;
        a->sin6_family = AF_INET6;
        a->sin6_port = htons(40000);
        if (kind == 2) {
            a->sin6_addr = in6addr_loopback;
        } else {
            a->sin6_addr.s6_addr[10] = a->sin6_addr.s6_addr[11] = 0xff;
            a->sin6_addr.s6_addr[12] = 127;
            a->sin6_addr.s6_addr[15] = 1;
        }
        *len = sizeof(*a);
    }
}

void harness_begin_input(struct runtime *rt)
{
    W.rt = rt;
    W.cfg = &rt->cfg;
    worker_apply_head_limits(&W);
    up_requests = 0;
}

void harness_end_input(void)
{
    /* the client goes, then whatever is left is closed */
    close_client();
    settle(50, false);
    while (!list_empty(&W.sessions)) {
        struct session *s = container_of(list_first(&W.sessions), struct session, link);
        session_enter(s);
        session_close(s, false);
        session_leave(s);
    }
    pool_close_idle(W.pool);
    settle(20, false);
    while (!list_empty(&stub_conns))
        stub_free(container_of(list_first(&stub_conns), struct stub_conn, link));
    /* a drain ends with the worker's loop broken; undo it for the next */
    W.draining = false;
    W.drain_requested = false;
    turn(); /* eats a pending wake */

    /* An HTTP/2 connection has no reason to stay once its client is gone:
     * the EOF ends it (and every stream's upstream). */
    if (!list_empty(&W.h2_conns))
        die("an HTTP/2 connection outlived its client");
    if (W.session_count != 0)
        die("sessions left after teardown");
    if (W.metrics.upstream_connections != 0 || W.metrics.client_connections != 0 ||
        W.metrics.http2_connections != 0)
        die("connection gauges not back to 0 after teardown");
    if (!list_empty(&W.lookup->pending))
        die("a lookup waiter outlived its session");
    if (!limits_acquire(lim_counter, 1))
        die("maxConnections slot of sandbox lim leaked");
    limits_release(lim_counter);
    check_access_log();
}

/* ---- egress.h, which core/ calls (no egress listener here: W.egress stays
 * NULL and no connection comes to these) ---- */

int egress_init(struct worker *w)
{
    return 0;
}

void egress_free(struct egress *eg)
{
}

void egress_drain(struct egress *eg)
{
}

void egress_config_changed(struct egress *eg)
{
}

int egress_accept_http(struct worker *w, size_t index, int fd, const struct sockaddr *sa, int salen)
{
    harness_die("egress_accept_http: the harness has no egress listener");
    return -1;
}

int egress_accept_tls(struct worker *w, size_t index, int fd, const struct sockaddr *sa, int salen)
{
    harness_die("egress_accept_tls: the harness has no egress listener");
    return -1;
}

int egress_accept_tcp(struct worker *w, size_t index, int fd, const struct sockaddr *sa, int salen)
{
    harness_die("egress_accept_tcp: the harness has no egress listener");
    return -1;
}
