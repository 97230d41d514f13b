#include "tls.h"

#include <arpa/inet.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "config.h"
#include "errf.h"

#define TLS_MAX_NAMES 256

/* One name a certificate answers for: "a.example" or "*.example". */
struct tls_name {
    char *name; /* lower-case; for wildcards, the part after "*." */
    bool wildcard;
    SSL_CTX *ctx;
};

/* Shared by the generation that built it (one reference, dropped by
 * runtime_free on the main thread) and by every handshake that started on it
 * (one each, dropped by a worker when the handshake is done or the
 * connection goes): the SNI callback of a slow handshake may run long after
 * a reload retired its generation. */
struct tls_ctx {
    unsigned refs; /* atomic */
    SSL_CTX *ctxs[CONFIG_MAX_CERTS];
    size_t nctx;
    struct tls_name names[TLS_MAX_NAMES];
    size_t nnames;
};

/* TLS 1.2 suites: forward secrecy and AEAD only (Mozilla "intermediate").
 * TLS 1.3 suites are OpenSSL's defaults, all of them modern. */
static const char tls12_ciphers[] = "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
                                    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
                                    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305";

const char *tls_error_string(unsigned long e, char *buf, size_t len)
{
    if (!e)
        snprintf(buf, len, "unknown error");
    else
        ERR_error_string_n(e, buf, len);
    return buf;
}

static void add_name(struct tls_ctx *t, const char *name, size_t len, SSL_CTX *ctx)
{
    if (t->nnames >= TLS_MAX_NAMES || len == 0)
        return;
    struct tls_name *n = &t->names[t->nnames];
    n->wildcard = len > 2 && name[0] == '*' && name[1] == '.';
    if (n->wildcard) {
        name += 2;
        len -= 2;
    }
    n->name = strndup(name, len);
    if (!n->name)
        return;
    for (char *p = n->name; *p; p++)
        if (*p >= 'A' && *p <= 'Z')
            *p = (char)(*p - 'A' + 'a');
    n->ctx = ctx;
    t->nnames++;
}

/* The names a certificate is valid for: its DNS subjectAltNames, or its
 * common name when it has none (RFC 6125 section 6.4.4). */
static void collect_names(struct tls_ctx *t, SSL_CTX *ctx)
{
    X509 *x = SSL_CTX_get0_certificate(ctx);
    if (!x)
        return;
    GENERAL_NAMES *sans = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
    bool any = false;
    for (int i = 0; sans && i < sk_GENERAL_NAME_num(sans); i++) {
        const GENERAL_NAME *g = sk_GENERAL_NAME_value(sans, i);
        if (g->type != GEN_DNS)
            continue;
        const unsigned char *d = ASN1_STRING_get0_data(g->d.dNSName);
        add_name(t, (const char *)d, (size_t)ASN1_STRING_length(g->d.dNSName), ctx);
        any = true;
    }
    GENERAL_NAMES_free(sans);
    if (any)
        return;
    char cn[256];
    if (X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_commonName, cn, sizeof(cn)) > 0)
        add_name(t, cn, strlen(cn), ctx);
}

static SSL_CTX *match_name(const struct tls_ctx *t, const char *host)
{
    for (size_t i = 0; i < t->nnames; i++)
        if (!t->names[i].wildcard && strcasecmp(t->names[i].name, host) == 0)
            return t->names[i].ctx;
    /* "*.example" covers exactly one more label: "a.example", not
     * "a.b.example" (RFC 6125 section 6.4.3). */
    const char *dot = strchr(host, '.');
    if (!dot || dot == host)
        return NULL;
    for (size_t i = 0; i < t->nnames; i++)
        if (t->names[i].wildcard && strcasecmp(t->names[i].name, dot + 1) == 0)
            return t->names[i].ctx;
    return NULL;
}

void tls_ctx_unref(struct tls_ctx *t)
{
    if (!t || __atomic_sub_fetch(&t->refs, 1, __ATOMIC_ACQ_REL) != 0)
        return;
    for (size_t i = 0; i < t->nctx; i++)
        SSL_CTX_free(t->ctxs[i]); /* live SSLs hold their own references */
    for (size_t i = 0; i < t->nnames; i++)
        free(t->names[i].name);
    free(t);
}

/* The SSL's slot holding its handshake's reference (NULL once dropped). */
static int ssl_ref_index = -1;

static void ssl_ref_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl,
                         void *argp)
{
    tls_ctx_unref(ptr); /* SSL_free before the handshake finished */
}

static void ssl_ref_index_init(void)
{
    ssl_ref_index = SSL_get_ex_new_index(0, NULL, NULL, NULL, ssl_ref_free);
}

static void ssl_ref_drop(SSL *ssl)
{
    struct tls_ctx *t = SSL_get_ex_data(ssl, ssl_ref_index);
    if (t) {
        SSL_set_ex_data(ssl, ssl_ref_index, NULL);
        tls_ctx_unref(t);
    }
}

/* Once the handshake is done nothing looks at the tls_ctx again
 * (renegotiation is off): its certificates can go with their generation. */
static void info_cb(const SSL *ssl, int where, int ret)
{
    if (where & SSL_CB_HANDSHAKE_DONE)
        ssl_ref_drop((SSL *)ssl);
}

/* The tls_ctx comes from the SSL's own reference, not from the callback
 * argument: that is only the generation that set the callback up. */
static int sni_cb(SSL *ssl, int *alert, void *arg)
{
    const struct tls_ctx *t = SSL_get_ex_data(ssl, ssl_ref_index);
    const char *host = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
    if (!t || !host)
        return SSL_TLSEXT_ERR_OK; /* no SNI: the first certificate */
    SSL_CTX *ctx = match_name(t, host);
    if (ctx && ctx != SSL_get_SSL_CTX(ssl))
        SSL_set_SSL_CTX(ssl, ctx);
    return SSL_TLSEXT_ERR_OK; /* unknown names get the default certificate */
}

/* ALPN (RFC 7301): h2 first when the listener offers HTTP/2 (SPEC section
 * 8), then http/1.1; our order wins over the client's. `arg` is non-NULL
 * when h2 is on. */
static int alpn_cb(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                   const unsigned char *in, unsigned int inlen, void *arg)
{
    static const unsigned char with_h2[] = "\x02h2\x08http/1.1";
    static const unsigned char h1_only[] = "\x08http/1.1";
    const unsigned char *ours = arg ? with_h2 : h1_only;
    unsigned int ours_len = arg ? sizeof(with_h2) - 1 : sizeof(h1_only) - 1;
    unsigned char *sel;
    if (SSL_select_next_proto(&sel, outlen, ours, ours_len, in, inlen) != OPENSSL_NPN_NEGOTIATED)
        return SSL_TLSEXT_ERR_NOACK; /* let the client fall back to no ALPN */
    *out = sel;
    return SSL_TLSEXT_ERR_OK;
}

static SSL_CTX *load_ctx(const struct config_cert *c, bool http2, const char *where, char *err,
                         size_t errlen)
{
    char ebuf[256];
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx) {
        errf(err, errlen, "%s: cannot create TLS context", where);
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    /* No renegotiation, from either side (TLS 1.2; TLS 1.3 has none): a
     * client's is answered with a no_renegotiation alert. It only costs the
     * server (each one a full handshake, CVE-2011-1473) and would change
     * the certificate under a connection's streams. OpenSSL 3 refuses the
     * client's by default; this says so whatever the library's default. */
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE |
                                 SSL_OP_NO_COMPRESSION);
    SSL_CTX_set_cipher_list(ctx, tls12_ciphers);
    /* An idle connection keeps no record buffers (17 KiB each way): 12.5
     * KiB of RSS per idle TLS connection with it, 27.9 without (bench/
     * tls_idle.py, 2,000 connections); the price is a malloc/free per
     * burst. The I/O modes (partial writes, read-ahead) are core/stream.c's. */
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    /* Resumption: TLS 1.3 stateless tickets (OpenSSL sends two after each
     * full handshake), TLS 1.2 tickets, and for TLS 1.2 clients without
     * tickets the internal session-ID cache (20,480 sessions, 2 h). Only
     * the first context's cache and keys are used (see tls_ctx_new). */
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_SERVER);
    SSL_CTX_set_alpn_select_cb(ctx, alpn_cb, http2 ? (void *)ctx : NULL);
    if (SSL_CTX_use_certificate_chain_file(ctx, c->cert) != 1) {
        errf(err, errlen, "%s.cert: cannot load %s: %s", where, c->cert,
             tls_error_string(ERR_get_error(), ebuf, sizeof(ebuf)));
        goto fail;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, c->key, SSL_FILETYPE_PEM) != 1) {
        errf(err, errlen, "%s.key: cannot load %s: %s", where, c->key,
             tls_error_string(ERR_get_error(), ebuf, sizeof(ebuf)));
        goto fail;
    }
    if (SSL_CTX_check_private_key(ctx) != 1) {
        errf(err, errlen, "%s.key: %s does not match %s", where, c->key, c->cert);
        goto fail;
    }
    ERR_clear_error();
    return ctx;
fail:
    ERR_clear_error();
    SSL_CTX_free(ctx);
    return NULL;
}

struct tls_ctx *tls_ctx_new(const struct config_listener *l, size_t index, char *err, size_t errlen)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, ssl_ref_index_init);
    if (ssl_ref_index == -1) {
        errf(err, errlen, "cannot allocate SSL ex_data index");
        return NULL;
    }
    struct tls_ctx *t = calloc(1, sizeof(*t));
    if (!t) {
        errf(err, errlen, "out of memory");
        return NULL;
    }
    t->refs = 1;
    for (size_t i = 0; i < l->cert_count; i++) {
        char where[96];
        snprintf(where, sizeof(where), "listeners[%zu].tls.certificates[%zu]", index, i);
        t->ctxs[i] = load_ctx(&l->certs[i], l->http2, where, err, errlen);
        if (!t->ctxs[i])
            goto fail;
        t->nctx++;
        collect_names(t, t->ctxs[i]);
    }
    /* SNI is looked at on the context the handshake starts with. That one
     * stays the connection's session context whichever certificate SNI
     * picks, and OpenSSL 3 caches sessions and seals tickets with it; every
     * context still gets the first one's ticket keys, so a resumed session
     * works whichever context a future OpenSSL takes them from (test_tls:
     * resumption under both certificates). Keys are per generation: a
     * reload starts with new ones (as nginx without ssl_session_ticket_key). */
    unsigned char keys[80];
    if (SSL_CTX_get_tlsext_ticket_keys(t->ctxs[0], keys, sizeof(keys)) == 1)
        for (size_t i = 1; i < t->nctx; i++)
            SSL_CTX_set_tlsext_ticket_keys(t->ctxs[i], keys, sizeof(keys));
    SSL_CTX_set_tlsext_servername_callback(t->ctxs[0], sni_cb);
    return t;
fail:
    tls_ctx_unref(t);
    return NULL;
}

bool tls_alpn_is_h2(const SSL *ssl)
{
    const unsigned char *p;
    unsigned int n;
    SSL_get0_alpn_selected(ssl, &p, &n);
    return n == 2 && p[0] == 'h' && p[1] == '2';
}

bool tls_cert_covers(const SSL *ssl, const char *host)
{
    X509 *x = SSL_get_certificate(ssl);
    unsigned char ip[16];
    if (!x)
        return false;
    bool literal = inet_pton(AF_INET, host, ip) == 1 || inet_pton(AF_INET6, host, ip) == 1;
    int r = literal ? X509_check_ip_asc(x, host, 0)
                    : X509_check_host(x, host, strlen(host), X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS,
                                      NULL);
    ERR_clear_error();
    return r == 1;
}

SSL *tls_ssl_new(struct tls_ctx *t)
{
    SSL *ssl = SSL_new(t->ctxs[0]);
    if (!ssl)
        return NULL;
    __atomic_add_fetch(&t->refs, 1, __ATOMIC_RELAXED); /* the caller holds one */
    if (SSL_set_ex_data(ssl, ssl_ref_index, t) != 1) {
        tls_ctx_unref(t);
        SSL_free(ssl);
        return NULL;
    }
    SSL_set_info_callback(ssl, info_cb);
    return ssl;
}
