/* libFuzzer: record_parse + record_mask_host + record_free (common/record.c).
 * Invariants: success means a usable address and a sane record; failure
 * means a NUL-terminated message and nothing to free; the mask expansion
 * never writes past cap and returns exactly what it wrote. */
#include <assert.h>
#include <netinet/in.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "record.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct record *r = NULL;
    char err[256];
    static const uint16_t ports[] = {1, 80, 3000, 49983, 65535};
    static const size_t caps[] = {0, 1, 8, 64, 300};

    memset(err, 'x', sizeof(err));
    if (record_parse((const char *)data, size, &r, err, sizeof(err)) != 0) {
        assert(memchr(err, '\0', sizeof(err)) != NULL);
        return 0;
    }
    assert(r != NULL);
    assert(r->addr.ss_family == AF_INET || r->addr.ss_family == AF_INET6);
    assert(r->addr_len == (r->addr.ss_family == AF_INET ? sizeof(struct sockaddr_in)
                                                        : sizeof(struct sockaddr_in6)));
    assert(memchr(r->address, '\0', sizeof(r->address)) != NULL);
    if (!r->allow_public)
        assert(r->token != NULL && r->token_len > 0);
    if (r->token != NULL)
        assert(r->token_len <= size);
    if (r->mask_host != NULL)
        for (const char *p = r->mask_host; *p; p++)
            assert(*p >= 0x21 && *p <= 0x7e);

    for (size_t i = 0; i < sizeof(ports) / sizeof(ports[0]); i++) {
        for (size_t j = 0; j < sizeof(caps) / sizeof(caps[0]); j++) {
            /* Exact-size heap buffer: ASan sees any write past cap. */
            char *buf = malloc(caps[j] ? caps[j] : 1);
            int n = record_mask_host(r, ports[i], buf, caps[j]);
            assert(n >= -1);
            if (n >= 0) {
                assert(r->mask_host != NULL);
                assert((size_t)n < caps[j]);
                assert(strlen(buf) == (size_t)n);
            }
            free(buf);
        }
    }
    record_free(r);
    return 0;
}
