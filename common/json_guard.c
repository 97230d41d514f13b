#include "json_guard.h"

#include <stdbool.h>
#include <string.h>

long json_guard_scan(const char *s, size_t len)
{
    bool in_string = false, escape = false;

    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];

        if (c < 0x20) {
            if (in_string || (c != '\t' && c != '\n' && c != '\r'))
                return (long)i;
            continue;
        }
        if (!in_string) {
            if (c == '"')
                in_string = true;
        } else if (escape) {
            escape = false;
            if (c == 'u' && len - i > 4 && memcmp(s + i + 1, "0000", 4) == 0)
                return (long)i;
        } else if (c == '\\') {
            escape = true;
        } else if (c == '"') {
            in_string = false;
        }
    }
    return -1;
}
