/* libFuzzer: config_parse + config_free (common/config.c), then the address
 * and CIDR helpers on a NUL-terminated copy of the input. Invariants: a
 * parsed config respects the documented bounds; an error leaves a message and
 * nothing to free (LeakSanitizer checks that). */
#include <assert.h>
#include <netinet/in.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct config cfg;
    char err[512];

    memset(err, 'x', sizeof(err));
    if (config_parse((const char *)data, size, &cfg, err, sizeof(err)) == 0) {
        assert(cfg.listener_count >= 1 && cfg.listener_count <= CONFIG_MAX_LISTENERS);
        assert(cfg.workers >= 0);
        assert(cfg.token_exempt_count <= CONFIG_MAX_EXEMPT_PORTS);
        assert(cfg.trusted_count <= CONFIG_MAX_TRUSTED);
        for (size_t i = 0; i < cfg.listener_count; i++) {
            const struct config_listener *l = &cfg.listeners[i];
            assert(l->address != NULL);
            assert(l->cert_count <= CONFIG_MAX_CERTS);
            assert(l->addr.ss_family == AF_INET || l->addr.ss_family == AF_INET6);
        }
        for (size_t i = 0; i < cfg.trusted_count; i++) {
            const struct cidr *c = &cfg.trusted_proxies[i];
            assert(c->family == AF_INET || c->family == AF_INET6);
            assert(c->prefix <= (c->family == AF_INET ? 32u : 128u));
            (void)config_cidr_match(cfg.trusted_proxies, cfg.trusted_count,
                                    (const struct sockaddr *)&cfg.listeners[0].addr);
        }
        for (size_t i = 0; i < cfg.domains.count; i++)
            assert(cfg.domains.names[i] != NULL);
        assert(config_reload_check(&cfg, &cfg, err, sizeof(err)) == 0);
        config_free(&cfg);
    } else {
        assert(memchr(err, '\0', sizeof(err)) != NULL && err[0] != '\0');
    }

    /* The listener address parser on its own, as a C string. */
    if (size < 256) {
        char s[256];
        struct sockaddr_storage ss;
        socklen_t len = 0;
        memcpy(s, data, size);
        s[size] = '\0';
        if (config_parse_address(s, &ss, &len) == 0) {
            assert(ss.ss_family == AF_INET || ss.ss_family == AF_INET6);
            assert(len == (ss.ss_family == AF_INET ? sizeof(struct sockaddr_in)
                                                   : sizeof(struct sockaddr_in6)));
        }
    }
    return 0;
}
