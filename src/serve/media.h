/* Images named in a chat request (`image_url.url`): a data: URL (base64) or a local file under the
 * folder the server was allowed to read. Remote URLs are refused, never fetched. */
#ifndef QVL_SERVE_MEDIA_H
#define QVL_SERVE_MEDIA_H
#include <stddef.h>
#include <stdint.h>

typedef struct {
    const char *allowed_dir;   /* realpath of the folder local files may come from; NULL: none */
    long max_bytes;            /* encoded image size (bytes after base64, or the file's size): 413 beyond */
    long max_pixels;           /* width * height as the image header declares it, checked before any
                                  decoding: 413 beyond (0: no cap) */
} serve_media_policy;

/* The encoded image bytes of url (malloc'd, *n bytes). On failure returns NULL and writes
 * "<item>: <reason>" to err with the HTTP status in *status (400, or 413 for a too large image). */
uint8_t *serve_media_load(const char *url, const char *item, const serve_media_policy *p, size_t *n,
                          int *status, char *err, size_t errlen);

#endif
