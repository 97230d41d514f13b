/* TLS ClientHello parser for the egress TLS listener (SPEC section 9): the
 * SNI it decides on before splicing, whether ECH is in use, the versions on
 * offer. Reassembles the handshake message across TLS records and reads
 * (RFC 8446 section 5.1: a handshake message may be fragmented over any
 * number of records; post-quantum key shares make it ~1.8 KB, two TCP
 * segments).
 *
 * Pure: bytes in, result out, nothing allocated, nothing copied but the
 * name. The fuzzers point here. */
#ifndef EDGEPROXY_CLIENTHELLO_H
#define EDGEPROXY_CLIENTHELLO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Cap on the whole handshake message (4-byte header included). Real
 * ClientHellos are 0.2 to 2 KB; 16 KiB is also one record's limit. */
#define CLIENTHELLO_MAX_MSG 16384
/* Cap on the input the parser will ever ask for: the message plus record
 * headers worth no more than the message again (a 1.8 KB hello still fits
 * when sent in 1-byte records). Given this many bytes the answer is never
 * NEED_MORE, so a caller's buffer of this size always gets a decision. */
#define CLIENTHELLO_MAX_INPUT (2 * CLIENTHELLO_MAX_MSG)
/* RFC 1035 section 2.3.4: a name is at most 255 bytes on the wire; a longer
 * host_name is BAD by its length alone. Once normalised it is at most 253
 * (EGRESS_NAME_MAX). */
#define CLIENTHELLO_SNI_MAX 255

enum clienthello_result {
    CLIENTHELLO_NEED_MORE = -2, /* a valid prefix: read more bytes */
    CLIENTHELLO_BAD = -1,       /* not a TLS ClientHello, or a broken one */
};

struct clienthello_info {
    uint16_t record_version; /* legacy_record_version of the first record */
    uint16_t legacy_version; /* ClientHello.legacy_version (0x0303 for 1.3) */
    uint16_t max_version;    /* highest non-GREASE supported_versions entry,
                                else legacy_version */
    bool tls13;              /* supported_versions offers 0x0304 */
    bool has_sni;            /* false: no server_name extension (a valid
                                hello, decided by address) */
    bool ech;                /* encrypted_client_hello (0xfe0d) present: sni
                                is the outer, public name, not the real one */
    bool has_alpn;           /* application_layer_protocol_negotiation */
    uint16_t alpn_count;     /* protocol names in it */
    uint16_t ext_count;      /* extensions in the hello */
    size_t msg_len;          /* handshake message bytes, header included */
    size_t records;          /* TLS records it took */
    size_t sni_len;
    /* host_name as egress_name_normalize writes it (the policy's one rule):
     * lower-cased, one trailing dot stripped, NUL-terminated, [a-z0-9_-]
     * labels of 1..63 bytes joined by dots, at most 253, the last label not
     * all digits (no IPv4 literal). */
    char sni[CLIENTHELLO_SNI_MAX + 1];
};

/* Parses the ClientHello at the start of buf, the bytes the client sent so
 * far. Returns the bytes of the records that carry it (the caller forwards
 * exactly those, then whatever follows), CLIENTHELLO_NEED_MORE, or
 * CLIENTHELLO_BAD (err names the field and byte offset at fault). Every
 * prefix of a valid hello answers NEED_MORE; a prefix that answers BAD
 * stays BAD with the same message whatever follows. out is filled only on
 * success and may be NULL, as may err. Borrows buf for the call only. */
int clienthello_parse(const unsigned char *buf, size_t len, struct clienthello_info *out, char *err,
                      size_t errlen);

#endif
