/* The WebSocket handshake's key and accept: see websocket.h. */
#include "websocket.h"

#include <openssl/evp.h>
#include <openssl/rand.h>
#include <string.h>

/* RFC 6455 section 1.3: the same for every server. */
static const char ws_guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

int ws_key_new(char key[WS_KEY_LEN + 1])
{
    unsigned char nonce[16];
    if (RAND_bytes(nonce, sizeof(nonce)) != 1)
        return -1;
    EVP_EncodeBlock((unsigned char *)key, nonce, sizeof(nonce)); /* 24 chars and a NUL */
    return 0;
}

void ws_accept_for(const char *key, size_t klen, char out[WS_ACCEPT_LEN + 1])
{
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int dlen = 0;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    if (!ctx || EVP_DigestInit_ex(ctx, EVP_sha1(), NULL) != 1 ||
        EVP_DigestUpdate(ctx, key, klen) != 1 ||
        EVP_DigestUpdate(ctx, ws_guid, sizeof(ws_guid) - 1) != 1 ||
        EVP_DigestFinal_ex(ctx, digest, &dlen) != 1 || dlen != 20) {
        out[0] = 0; /* matches no server's answer */
        EVP_MD_CTX_free(ctx);
        return;
    }
    EVP_MD_CTX_free(ctx);
    EVP_EncodeBlock((unsigned char *)out, digest, 20); /* 28 chars and a NUL */
}

bool ws_accept_matches(const char *key, size_t klen, const char *accept, size_t alen)
{
    while (alen && (accept[0] == ' ' || accept[0] == '\t')) {
        accept++;
        alen--;
    }
    while (alen && (accept[alen - 1] == ' ' || accept[alen - 1] == '\t'))
        alen--;
    char want[WS_ACCEPT_LEN + 1];
    ws_accept_for(key, klen, want);
    return alen == WS_ACCEPT_LEN && memcmp(accept, want, WS_ACCEPT_LEN) == 0;
}
