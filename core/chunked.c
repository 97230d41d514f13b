#include "chunked.h"

#include <event2/buffer.h>
#include <stdio.h>

#include "head.h"

size_t chunked_write(struct evbuffer *dst, struct evbuffer *src, size_t len)
{
    char line[24];
    int n = snprintf(line, sizeof(line), "%zx\r\n", len);
    evbuffer_add(dst, line, (size_t)n);
    evbuffer_remove_buffer(src, dst, len);
    evbuffer_add(dst, "\r\n", 2);
    return (size_t)n + len + 2;
}

size_t chunked_write_end(struct evbuffer *dst, const struct head *h, uint32_t from)
{
    size_t n = 3;
    evbuffer_add(dst, "0\r\n", 3);
    for (uint32_t i = from; h && i < h->nhdrs; i++) {
        const struct hdr *x = &h->hdrs[i];
        if (!head_trailer_allowed(h, x))
            continue;
        evbuffer_add(dst, head_str(h, x->name_off), x->name_len);
        evbuffer_add(dst, ": ", 2);
        evbuffer_add(dst, head_str(h, x->val_off), x->val_len);
        evbuffer_add(dst, "\r\n", 2);
        n += x->name_len + x->val_len + 4;
    }
    evbuffer_add(dst, "\r\n", 2);
    return n + 2;
}
