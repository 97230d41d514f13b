/* libFuzzer: proxy_proto_parse (common/proxy_proto.c).
 *
 * Besides memory safety, checks the incremental contract on every prefix of
 * the input: results go NEED_MORE... then either stay NEED_MORE, turn BAD for
 * good, or turn into the same byte count n at length n and stay there
 * (trailing bytes are the client's). A success is re-rendered in canonical
 * form and must parse back to the same addresses. */
#include <arpa/inet.h>
#include <assert.h>
#include <netinet/in.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proxy_proto.h"

static int parse_copy(const uint8_t *data, size_t len, struct proxy_proto_info *info, char *err,
                      size_t errlen)
{
    /* Exact-size heap copy so ASan flags any read past len. */
    unsigned char *copy = malloc(len ? len : 1);
    int rc;
    memcpy(copy, data, len);
    memset(err, 'x', errlen);
    rc = proxy_proto_parse(copy, len, info, err, errlen);
    free(copy);
    assert(memchr(err, '\0', errlen) != NULL);
    if (rc == PROXY_PROTO_BAD)
        assert(err[0] != '\0');
    return rc;
}

static void check_info(const struct proxy_proto_info *in)
{
    assert(in->version == 1 || in->version == 2);
    if (in->local) {
        assert(in->src_len == 0 && in->dst_len == 0);
        return;
    }
    assert(in->src.ss_family == in->dst.ss_family);
    if (in->src.ss_family == AF_INET)
        assert(in->src_len == sizeof(struct sockaddr_in) &&
               in->dst_len == sizeof(struct sockaddr_in));
    else
        assert(in->src.ss_family == AF_INET6 && in->src_len == sizeof(struct sockaddr_in6) &&
               in->dst_len == sizeof(struct sockaddr_in6));
}

/* v1 text for the same addresses; parses back to the same info. */
static void roundtrip(const struct proxy_proto_info *in)
{
    char line[160], a[INET6_ADDRSTRLEN], b[INET6_ADDRSTRLEN], err[128];
    struct proxy_proto_info back;
    unsigned sp, dp;
    int n, rc;

    if (in->local)
        return;
    if (in->src.ss_family == AF_INET) {
        const struct sockaddr_in *s = (const void *)&in->src;
        const struct sockaddr_in *d = (const void *)&in->dst;
        inet_ntop(AF_INET, &s->sin_addr, a, sizeof(a));
        inet_ntop(AF_INET, &d->sin_addr, b, sizeof(b));
        sp = ntohs(s->sin_port);
        dp = ntohs(d->sin_port);
    } else {
        const struct sockaddr_in6 *s = (const void *)&in->src;
        const struct sockaddr_in6 *d = (const void *)&in->dst;
        inet_ntop(AF_INET6, &s->sin6_addr, a, sizeof(a));
        inet_ntop(AF_INET6, &d->sin6_addr, b, sizeof(b));
        sp = ntohs(s->sin6_port);
        dp = ntohs(d->sin6_port);
    }
    n = snprintf(line, sizeof(line), "PROXY %s %s %s %u %u\r\n",
                 in->src.ss_family == AF_INET ? "TCP4" : "TCP6", a, b, sp, dp);
    rc = parse_copy((const uint8_t *)line, (size_t)n, &back, err, sizeof(err));
    if (n > 107) { /* long IPv4-mapped forms from a v2 header */
        assert(rc == PROXY_PROTO_BAD);
        return;
    }
    assert(rc == n);
    assert(back.src_len == in->src_len && back.dst_len == in->dst_len);
    assert(memcmp(&back.src, &in->src, in->src_len) == 0);
    assert(memcmp(&back.dst, &in->dst, in->dst_len) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct proxy_proto_info info, last = {0};
    char err[128];
    int state = PROXY_PROTO_NEED_MORE;
    size_t k;

    if (size > 1200)
        size = 1200;
    for (k = 0; k <= size; k++) {
        int rc = parse_copy(data, k, &info, err, sizeof(err));
        if (state == PROXY_PROTO_NEED_MORE) {
            if (rc > 0) {
                assert((size_t)rc == k); /* done exactly at its last byte */
                check_info(&info);
                last = info;
            }
            state = rc;
        } else if (state == PROXY_PROTO_BAD) {
            assert(rc == PROXY_PROTO_BAD);
        } else {
            assert(rc == state); /* trailing bytes do not change it */
            assert(memcmp(&info, &last, sizeof(info)) == 0);
        }
        /* Dense at the start, sampled after: O(n) per call keeps it cheap. */
        if (k > 128 && state == PROXY_PROTO_BAD)
            break;
    }
    if (state > 0) {
        roundtrip(&last);
        /* NULL out and err are allowed. */
        assert(proxy_proto_parse(data, (size_t)state, NULL, NULL, 0) == state);
    }
    return 0;
}
