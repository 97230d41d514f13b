/* hsload: new TLS connections per second, one full handshake per request.
 *
 *   hsload [-c CONNS] [-d SECONDS] [-s SNI] [-H HOST] [-p PATH] [-a ALPN]
 *          [-C CIPHERSUITES] [-G GROUPS] IPv4:PORT
 *
 * Keeps CONNS connections in flight. Each one: TCP connect, a TLS 1.3
 * handshake on a fresh SSL object that is offered no session (no PSK, no
 * ticket), one "GET PATH HTTP/1.1" with "Connection: close", the response
 * read until the server closes (whole: its Content-Length of body bytes).
 * Then the next connection starts.
 *
 * Why not h2load or wrk: both keep the SSL object across reconnects, so
 * every connection after a client's first resumes its session (nginx's
 * $ssl_session_reused said "r" for 36 of 40 h2load and 414 of 418 wrk
 * connections), and h2load -D with "Connection: close" does not stop.
 * openssl s_time -new does full handshakes but sends no SNI, runs one
 * connection at a time and cost its client ~1.7 ms of CPU per connection
 * here, three times what the server spent: it measures itself.
 *
 * Prints key: value lines (bench/report.py reads them): connections
 * completed in the measured time, their statuses, errors, resumed
 * handshakes (must be 0), and what the first connection negotiated
 * (protocol, cipher, group, ALPN) with the count of connections that
 * negotiated anything else. Build: cc -O2 -o hsload hsload.c -lssl -lcrypto
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum state { ST_CONNECT, ST_HANDSHAKE, ST_WRITE, ST_READ };

struct conn {
    int fd;
    SSL *ssl;
    enum state st;
    size_t sent;
    char head[4096]; /* the response head (and the body's first bytes) */
    size_t head_len;
    size_t got; /* response bytes, head and body */
    double started;
};

static SSL_CTX *ctx;
static struct sockaddr_in addr;
static const char *sni = NULL;
static char req[1024];
static size_t req_len;
static int ep;
static double stop_at;

static unsigned long done_ok, done_non2xx, errors, resumed, handshakes, mismatched;
static unsigned long err_connect, err_handshake, err_io, err_short, err_timeout;
static char first_tls[256];

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int want(struct conn *c, unsigned ev)
{
    struct epoll_event e = {.events = ev, .data.ptr = c};
    return epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &e);
}

/* start: a new TCP connection for slot c (the SSL object comes after connect) */
static int start(struct conn *c)
{
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0)
        return -1;
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    c->ssl = NULL;
    c->st = ST_CONNECT;
    c->sent = 0;
    c->head_len = 0;
    c->got = 0;
    c->started = now();
    if (connect(c->fd, (struct sockaddr *)&addr, sizeof(addr)) < 0 && errno != EINPROGRESS) {
        close(c->fd);
        return -1;
    }
    struct epoll_event e = {.events = EPOLLOUT, .data.ptr = c};
    return epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &e);
}

/* complete: the response in c is whole: a head, and as many body bytes as
 * its Content-Length says (the bench's responses all carry one) */
static int complete(struct conn *c)
{
    char *end = memmem(c->head, c->head_len, "\r\n\r\n", 4);
    if (!end)
        return 0;
    size_t head = (size_t)(end - c->head) + 4;
    for (char *p = c->head; p < end; p++) {
        if (*p == '\n' && end - p > 16 && strncasecmp(p + 1, "content-length:", 15) == 0)
            return c->got - head == strtoul(p + 16, NULL, 10);
    }
    return 1;
}

/* finish: close slot c, count it (when it ended inside the measured time),
 * and start the next connection unless the time is up */
static void finish(struct conn *c, int ok, unsigned long *err)
{
    int in_time = now() <= stop_at;
    if (c->ssl)
        SSL_free(c->ssl); /* no close_notify: the server closed first */
    close(c->fd);
    c->fd = -1;
    if (ok && !complete(c)) {
        ok = 0;
        err = &err_short;
    }
    if (in_time) {
        if (ok) {
            if (c->head_len >= 12 && memcmp(c->head, "HTTP/1.", 7) == 0 && c->head[9] == '2')
                done_ok++;
            else
                done_non2xx++;
        } else {
            errors++;
            (*err)++;
        }
        while (start(c) < 0) {
            errors++;
            err_connect++;
            if (now() > stop_at)
                return;
        }
    }
}

/* tls_summary: what this connection negotiated, one line */
static void tls_summary(SSL *ssl, char *out, size_t len)
{
    const unsigned char *alpn = NULL;
    unsigned alpn_len = 0;
    SSL_get0_alpn_selected(ssl, &alpn, &alpn_len);
    int group = SSL_get_negotiated_group(ssl);
    const char *gname = SSL_group_to_name(ssl, group);
    snprintf(out, len, "protocol: %s\ncipher: %s\ngroup: %s\nalpn: %.*s\n", SSL_get_version(ssl),
             SSL_CIPHER_get_name(SSL_get_current_cipher(ssl)), gname ? gname : "?", (int)alpn_len,
             alpn_len ? (const char *)alpn : "");
}

static void step(struct conn *c)
{
    int r;
    switch (c->st) {
    case ST_CONNECT: {
        int err = 0;
        socklen_t l = sizeof(err);
        getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &l);
        if (err) {
            finish(c, 0, &err_connect);
            return;
        }
        c->ssl = SSL_new(ctx);
        SSL_set_fd(c->ssl, c->fd);
        if (sni)
            SSL_set_tlsext_host_name(c->ssl, sni);
        SSL_set_connect_state(c->ssl);
        c->st = ST_HANDSHAKE;
    }
        /* fall through */
    case ST_HANDSHAKE:
        ERR_clear_error();
        r = SSL_do_handshake(c->ssl);
        if (r != 1) {
            int e = SSL_get_error(c->ssl, r);
            if (e == SSL_ERROR_WANT_READ)
                want(c, EPOLLIN);
            else if (e == SSL_ERROR_WANT_WRITE)
                want(c, EPOLLOUT);
            else
                finish(c, 0, &err_handshake);
            return;
        }
        handshakes++;
        if (SSL_session_reused(c->ssl))
            resumed++;
        {
            char s[256];
            tls_summary(c->ssl, s, sizeof(s));
            if (!first_tls[0])
                memcpy(first_tls, s, sizeof(s));
            else if (strcmp(s, first_tls) != 0)
                mismatched++;
        }
        c->st = ST_WRITE;
        /* fall through */
    case ST_WRITE:
        while (c->sent < req_len) {
            ERR_clear_error();
            r = SSL_write(c->ssl, req + c->sent, (int)(req_len - c->sent));
            if (r <= 0) {
                int e = SSL_get_error(c->ssl, r);
                if (e == SSL_ERROR_WANT_WRITE)
                    want(c, EPOLLOUT);
                else if (e == SSL_ERROR_WANT_READ)
                    want(c, EPOLLIN);
                else
                    finish(c, 0, &err_io);
                return;
            }
            c->sent += (size_t)r;
        }
        c->st = ST_READ;
        want(c, EPOLLIN);
        /* fall through */
    case ST_READ:
        for (;;) {
            char buf[16384];
            ERR_clear_error();
            r = SSL_read(c->ssl, buf, sizeof(buf));
            if (r > 0) {
                size_t n = sizeof(c->head) - c->head_len;
                if (n > (size_t)r)
                    n = (size_t)r;
                memcpy(c->head + c->head_len, buf, n);
                c->head_len += n;
                c->got += (size_t)r;
                continue;
            }
            int e = SSL_get_error(c->ssl, r);
            if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
                want(c, e == SSL_ERROR_WANT_READ ? EPOLLIN : EPOLLOUT);
                return;
            }
            /* close_notify, or EOF without it (SSL_OP_IGNORE_UNEXPECTED_EOF
             * makes both ZERO_RETURN): the server closed after the response,
             * as "Connection: close" asked; finish() checks it is whole */
            finish(c, e == SSL_ERROR_ZERO_RETURN && c->head_len > 0, &err_io);
            return;
        }
    }
}

static void usage(void)
{
    fprintf(stderr, "usage: hsload [-c CONNS] [-d SECONDS] [-s SNI] [-H HOST] [-p PATH] [-a ALPN] "
                    "[-C CIPHERSUITES] [-G GROUPS] IPv4:PORT\n");
    exit(2);
}

int main(int argc, char **argv)
{
    int conns = 64, opt;
    double seconds = 10;
    const char *host = NULL, *path = "/", *alpn = "http/1.1";
    const char *suites = "TLS_AES_128_GCM_SHA256", *groups = "X25519";
    while ((opt = getopt(argc, argv, "c:d:s:H:p:a:C:G:")) != -1) {
        switch (opt) {
        case 'c':
            conns = atoi(optarg);
            break;
        case 'd':
            seconds = atof(optarg);
            break;
        case 's':
            sni = optarg;
            break;
        case 'H':
            host = optarg;
            break;
        case 'p':
            path = optarg;
            break;
        case 'a':
            alpn = optarg;
            break;
        case 'C':
            suites = optarg;
            break;
        case 'G':
            groups = optarg;
            break;
        default:
            usage();
        }
    }
    if (optind != argc - 1 || conns < 1 || seconds <= 0)
        usage();
    char ip[64];
    int port;
    if (sscanf(argv[optind], "%63[0-9.]:%d", ip, &port) != 2 ||
        inet_pton(AF_INET, ip, &addr.sin_addr) != 1)
        usage();
    addr.sin_family = AF_INET;
    addr.sin_port = htons((unsigned short)port);
    if (!host)
        host = sni ? sni : ip;
    req_len = (size_t)snprintf(req, sizeof(req),
                               "GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: hsload\r\n"
                               "Connection: close\r\n\r\n",
                               path, host);

    ctx = SSL_CTX_new(TLS_client_method());
    SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION);
    SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    /* a server may close without close_notify after "Connection: close" */
    SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET | SSL_OP_IGNORE_UNEXPECTED_EOF);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL); /* as h2load and wrk */
    SSL_CTX_set_read_ahead(ctx, 1);                 /* a record in one read(), not two */
    if (SSL_CTX_set_ciphersuites(ctx, suites) != 1 || SSL_CTX_set1_groups_list(ctx, groups) != 1) {
        fprintf(stderr, "hsload: bad -C or -G\n");
        return 2;
    }
    unsigned char wire[256];
    size_t wl = strlen(alpn);
    if (wl == 0 || wl > 255)
        usage();
    wire[0] = (unsigned char)wl;
    memcpy(wire + 1, alpn, wl);
    SSL_CTX_set_alpn_protos(ctx, wire, (unsigned)wl + 1);

    ep = epoll_create1(EPOLL_CLOEXEC);
    struct conn *cs = calloc((size_t)conns, sizeof(*cs));
    struct rusage ru0, ru1;
    getrusage(RUSAGE_SELF, &ru0);
    double t0 = now();
    stop_at = t0 + seconds;
    for (int i = 0; i < conns; i++)
        if (start(&cs[i]) < 0) {
            cs[i].fd = -1;
            errors++;
            err_connect++;
        }

    /* run until the time is up; connections in flight then get 2 s to end
     * (not counted) so the server is not left with half-done work */
    struct epoll_event evs[256];
    for (;;) {
        double t = now();
        int live = 0;
        for (int i = 0; i < conns; i++) {
            if (cs[i].fd < 0)
                continue;
            live++;
            if (t - cs[i].started > 10) /* one connection stuck: count, move on */
                finish(&cs[i], 0, &err_timeout);
        }
        if (live == 0 || t > stop_at + 2)
            break;
        int n = epoll_wait(ep, evs, 256, 50);
        for (int i = 0; i < n; i++) {
            struct conn *c = evs[i].data.ptr;
            if (c->fd >= 0)
                step(c);
        }
    }
    getrusage(RUSAGE_SELF, &ru1);
    double cpu = (ru1.ru_utime.tv_sec - ru0.ru_utime.tv_sec) +
                 (ru1.ru_stime.tv_sec - ru0.ru_stime.tv_sec) +
                 ((ru1.ru_utime.tv_usec - ru0.ru_utime.tv_usec) +
                  (ru1.ru_stime.tv_usec - ru0.ru_stime.tv_usec)) /
                     1e6;
    unsigned long done = done_ok + done_non2xx;
    printf("seconds: %.3f\n", seconds);
    printf("connections: %lu done, %lu 2xx, %lu non-2xx, %lu errors\n", done, done_ok, done_non2xx,
           errors);
    printf("errors: %lu connect, %lu handshake, %lu io, %lu short, %lu timeout\n", err_connect,
           err_handshake, err_io, err_short, err_timeout);
    printf("handshakes: %lu, resumed: %lu, negotiated otherwise than the first: %lu\n", handshakes,
           resumed, mismatched);
    printf("connections/s: %.2f\n", done / seconds);
    printf("client CPU us/connection: %.1f\n", done ? cpu * 1e6 / done : 0.0);
    fputs(first_tls, stdout);
    return 0;
}
